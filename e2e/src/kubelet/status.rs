//! Pure builders for what a kubelet writes: pod statuses, node objects and node statuses.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, DaemonEndpoint, HostIP, Node, NodeAddress,
    NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, Pod, PodCondition,
    PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use sha2::{Digest, Sha256};

use super::config::{PodOutcome, SimNode};
use super::resources::qos_class;

fn time(ts: Timestamp) -> Time {
    Time(ts)
}

fn hex_digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The image reference as containerd reports it: registry and tag made explicit
/// (`nginx` -> `docker.io/library/nginx:latest`).
pub fn normalize_image(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let first = name.split('/').next().unwrap_or("");
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = if has_registry {
        name.to_owned()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    let last = full.rsplit('/').next().unwrap_or("");
    if digest.is_none() && !last.contains(':') {
        full.push_str(":latest");
    }
    match digest {
        Some(d) => format!("{full}@{d}"),
        None => full,
    }
}

/// `imageID` for an image: `<repository>@sha256:<digest>` with a digest derived from the name.
pub fn image_id(image: &str) -> String {
    let normalized = normalize_image(image);
    if normalized.contains("@sha256:") {
        return normalized;
    }
    let repo = match normalized.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo.to_owned(),
        _ => normalized.clone(),
    };
    format!("{repo}@sha256:{}", hex_digest(&["image", &normalized]))
}

/// A stable `containerd://<64 hex>` ID for one container of one pod.
pub fn container_id(pod_uid: &str, container: &str) -> String {
    format!(
        "containerd://{}",
        hex_digest(&["container", pod_uid, container])
    )
}

fn condition(
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    at: &Time,
) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.map(str::to_owned),
        message,
        last_transition_time: Some(at.clone()),
        last_probe_time: None,
        ..Default::default()
    }
}

/// Keeps a condition's transition time when its status does not change.
fn keep_transition(pod: &Pod, mut cond: PodCondition) -> PodCondition {
    let old = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == cond.type_));
    if let Some(old) = old
        && old.status == cond.status
        && old.last_transition_time.is_some()
    {
        cond.last_transition_time = old.last_transition_time.clone();
    }
    cond
}

fn containers(pod: &Pod) -> (&[Container], &[Container]) {
    match pod.spec.as_ref() {
        Some(s) => (s.init_containers.as_deref().unwrap_or(&[]), &s.containers),
        None => (&[], &[]),
    }
}

fn start_time(pod: &Pod, now: &Time) -> Time {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .unwrap_or_else(|| now.clone())
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

fn image_of(c: &Container) -> &str {
    c.image.as_deref().unwrap_or("")
}

/// The status while containers are being created (only written when there is a start delay).
pub fn creating_status(pod: &Pod, host_ip: &str, now: Timestamp) -> PodStatus {
    let now = time(now);
    let (init, main) = containers(pod);
    let mut names: Vec<&str> = main.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    let unready = Some(format!(
        "containers with unready status: [{}]",
        names.join(" ")
    ));
    let waiting = |c: &Container, reason: &str| ContainerStatus {
        name: c.name.clone(),
        image: image_of(c).to_owned(),
        image_id: String::new(),
        ready: false,
        restart_count: 0,
        started: Some(false),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: None,
            }),
            ..Default::default()
        }),
        last_state: Some(ContainerState::default()),
        ..Default::default()
    };
    let mut statuses: Vec<ContainerStatus> = main
        .iter()
        .map(|c| waiting(c, "ContainerCreating"))
        .collect();
    statuses.sort_by(|a, b| a.name.cmp(&b.name));
    let init_statuses: Vec<ContainerStatus> =
        init.iter().map(|c| waiting(c, "PodInitializing")).collect();
    let initialized = if init.is_empty() {
        condition("Initialized", true, None, None, &now)
    } else {
        let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
        condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                names.join(" ")
            )),
            &now,
        )
    };
    PodStatus {
        phase: Some("Pending".into()),
        conditions: Some(
            [
                condition("PodReadyToStartContainers", false, None, None, &now),
                initialized,
                condition(
                    "Ready",
                    false,
                    Some("ContainersNotReady"),
                    unready.clone(),
                    &now,
                ),
                condition(
                    "ContainersReady",
                    false,
                    Some("ContainersNotReady"),
                    unready,
                    &now,
                ),
                condition("PodScheduled", true, None, None, &now),
            ]
            .into_iter()
            .map(|c| keep_transition(pod, c))
            .collect(),
        ),
        host_ip: Some(host_ip.to_owned()),
        host_ips: Some(vec![HostIP {
            ip: host_ip.to_owned(),
        }]),
        start_time: Some(start_time(pod, &now)),
        container_statuses: Some(statuses),
        init_container_statuses: (!init.is_empty()).then_some(init_statuses),
        qos_class: Some(qos_class(pod).as_str().into()),
        ..Default::default()
    }
}

/// The status once the kubelet has started the pod: `Running` and ready, or terminal when the
/// outcome says so.
pub fn started_status(
    pod: &Pod,
    host_ip: &str,
    pod_ip: &str,
    now: Timestamp,
    outcome: PodOutcome,
) -> PodStatus {
    let now = time(now);
    let started_at = start_time(pod, &now);
    let pod_uid = uid(pod);
    let (init, main) = containers(pod);
    let base = |c: &Container| ContainerStatus {
        name: c.name.clone(),
        image: normalize_image(image_of(c)),
        image_id: image_id(image_of(c)),
        container_id: Some(container_id(pod_uid, &c.name)),
        restart_count: 0,
        last_state: Some(ContainerState::default()),
        ..Default::default()
    };
    let running = |c: &Container| ContainerStatus {
        ready: true,
        started: Some(true),
        state: Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(now.clone()),
            }),
            ..Default::default()
        }),
        ..base(c)
    };
    let terminated = |c: &Container, exit_code: i32, reason: &str| ContainerStatus {
        ready: false,
        started: Some(false),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code,
                reason: Some(reason.into()),
                started_at: Some(now.clone()),
                finished_at: Some(now.clone()),
                container_id: Some(container_id(pod_uid, &c.name)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..base(c)
    };
    let init_statuses: Vec<ContainerStatus> = init
        .iter()
        .map(|c| {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            if sidecar && outcome == PodOutcome::Running {
                running(c)
            } else {
                ContainerStatus {
                    // A completed init container counts as ready.
                    ready: !sidecar,
                    ..terminated(c, 0, "Completed")
                }
            }
        })
        .collect();
    let mut statuses: Vec<ContainerStatus> = main
        .iter()
        .map(|c| match outcome {
            PodOutcome::Running => running(c),
            PodOutcome::Succeeded => terminated(c, 0, "Completed"),
            PodOutcome::Failed => terminated(c, 1, "Error"),
        })
        .collect();
    statuses.sort_by(|a, b| a.name.cmp(&b.name));
    let (phase, ready_cond, containers_ready) = match outcome {
        PodOutcome::Running => (
            "Running",
            condition("Ready", true, None, None, &now),
            condition("ContainersReady", true, None, None, &now),
        ),
        terminal => (
            if terminal == PodOutcome::Failed {
                "Failed"
            } else {
                "Succeeded"
            },
            condition("Ready", false, Some("PodCompleted"), None, &now),
            condition("ContainersReady", false, Some("PodCompleted"), None, &now),
        ),
    };
    let sandbox_up = outcome == PodOutcome::Running;
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(
            [
                condition("PodReadyToStartContainers", sandbox_up, None, None, &now),
                condition("Initialized", true, None, None, &now),
                ready_cond,
                containers_ready,
                condition("PodScheduled", true, None, None, &now),
            ]
            .into_iter()
            .map(|c| keep_transition(pod, c))
            .collect(),
        ),
        host_ip: Some(host_ip.to_owned()),
        host_ips: Some(vec![HostIP {
            ip: host_ip.to_owned(),
        }]),
        pod_ip: Some(pod_ip.to_owned()),
        pod_ips: Some(vec![PodIP {
            ip: pod_ip.to_owned(),
        }]),
        start_time: Some(started_at),
        container_statuses: Some(statuses),
        init_container_statuses: (!init.is_empty()).then_some(init_statuses),
        qos_class: Some(qos_class(pod).as_str().into()),
        ..Default::default()
    }
}

/// The Node object the kubelet registers (metadata and spec; status is patched separately).
pub fn node_object(node: &SimNode) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(node.name.clone()),
            labels: Some(node.all_labels()),
            annotations: Some(BTreeMap::from([
                ("node.alpha.kubernetes.io/ttl".to_owned(), "0".to_owned()),
                (
                    "volumes.kubernetes.io/controller-managed-attach-detach".to_owned(),
                    "true".to_owned(),
                ),
            ])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!node.taints.is_empty()).then(|| node.taints.clone()),
            unschedulable: node.unschedulable.then_some(true),
            ..Default::default()
        }),
        status: None,
    }
}

/// A Ready node status. `since` is when the conditions last changed, `now` the heartbeat;
/// `kubelet_port` goes to `daemonEndpoints.kubeletEndpoint.Port`.
pub fn node_status(
    node: &SimNode,
    internal_ip: &str,
    kubelet_port: u16,
    kubelet_version: &str,
    since: Timestamp,
    now: Timestamp,
) -> NodeStatus {
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", node.cpu.clone()),
        ("memory", node.memory.clone()),
        ("pods", node.pods.to_string()),
        ("ephemeral-storage", "100Gi".to_owned()),
        ("hugepages-1Gi", "0".to_owned()),
        ("hugepages-2Mi", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Quantity(v)))
    .collect();
    let cond = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(time(now)),
        last_transition_time: Some(time(since)),
    };
    let machine = hex_digest(&["machine", &node.name]);
    let system_uuid = uuid_from(&hex_digest(&["system", &node.name]));
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(vec![
            cond(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            cond(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            cond(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            cond(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            ),
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: internal_ip.to_owned(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: node.name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            boot_id: uuid_from(&hex_digest(&["boot", &node.name])),
            container_runtime_version: "containerd://1.7.24".into(),
            kernel_version: "6.1.0-28-amd64".into(),
            kube_proxy_version: kubelet_version.into(),
            kubelet_version: kubelet_version.into(),
            machine_id: machine[..32].to_owned(),
            operating_system: "linux".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            system_uuid,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Formats 32 hex digits as a UUID.
fn uuid_from(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use rstest::rstest;

    #[rstest]
    #[case("nginx", "docker.io/library/nginx:latest")]
    #[case("nginx:1.27", "docker.io/library/nginx:1.27")]
    #[case("bitnami/redis", "docker.io/bitnami/redis:latest")]
    #[case("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10")]
    #[case("localhost:5000/app", "localhost:5000/app:latest")]
    #[case("localhost/app", "localhost/app:latest")]
    #[case("busybox@sha256:abc", "docker.io/library/busybox@sha256:abc")]
    fn normalizes_images(#[case] image: &str, #[case] want: &str) {
        assert_eq!(normalize_image(image), want);
    }

    #[test]
    fn image_and_container_ids_look_real() {
        let id = image_id("nginx:1.27");
        assert!(id.starts_with("docker.io/library/nginx@sha256:"), "{id}");
        assert_eq!(id.len(), "docker.io/library/nginx@sha256:".len() + 64);
        let cid = container_id("uid-1", "app");
        assert!(cid.starts_with("containerd://"));
        assert_eq!(cid.len(), "containerd://".len() + 64);
        assert_eq!(cid, container_id("uid-1", "app"));
        assert_ne!(cid, container_id("uid-2", "app"));
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![
                    Container {
                        name: "b".into(),
                        image: Some("nginx".into()),
                        ..Default::default()
                    },
                    Container {
                        name: "a".into(),
                        image: Some("busybox".into()),
                        ..Default::default()
                    },
                ],
                init_containers: Some(vec![Container {
                    name: "init".into(),
                    image: Some("busybox".into()),
                    ..Default::default()
                }]),
                node_name: Some("n".into()),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    #[test]
    fn running_status_is_complete() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let s = started_status(&pod(), "127.0.0.10", "10.244.0.2", now, PodOutcome::Running);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.244.0.2"));
        assert_eq!(s.pod_ips.as_ref().unwrap()[0].ip, "10.244.0.2");
        assert_eq!(s.host_ip.as_deref(), Some("127.0.0.10"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        assert_eq!(s.start_time, Some(Time(now)));
        for t in [
            "PodScheduled",
            "Initialized",
            "ContainersReady",
            "Ready",
            "PodReadyToStartContainers",
        ] {
            assert_eq!(cond(&s, t).status, "True", "{t}");
        }
        let cs = s.container_statuses.as_ref().unwrap();
        assert_eq!(
            cs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        for c in cs {
            assert!(c.ready);
            assert_eq!(c.started, Some(true));
            assert!(
                c.state
                    .as_ref()
                    .unwrap()
                    .running
                    .as_ref()
                    .unwrap()
                    .started_at
                    .is_some()
            );
            assert!(
                c.container_id
                    .as_ref()
                    .unwrap()
                    .starts_with("containerd://")
            );
            assert!(c.image_id.contains("@sha256:"));
        }
        assert_eq!(cs[1].image, "docker.io/library/nginx:latest");
        let init = &s.init_container_statuses.as_ref().unwrap()[0];
        let term = init.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(
            (term.exit_code, term.reason.as_deref()),
            (0, Some("Completed"))
        );
        assert!(init.ready);
    }

    #[rstest]
    #[case(PodOutcome::Failed, "Failed", 1, "Error")]
    #[case(PodOutcome::Succeeded, "Succeeded", 0, "Completed")]
    fn terminal_outcomes(
        #[case] outcome: PodOutcome,
        #[case] phase: &str,
        #[case] exit: i32,
        #[case] reason: &str,
    ) {
        let s = started_status(
            &pod(),
            "127.0.0.10",
            "10.244.0.2",
            Timestamp::now(),
            outcome,
        );
        assert_eq!(s.phase.as_deref(), Some(phase));
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
        for c in s.container_statuses.as_ref().unwrap() {
            let t = c.state.as_ref().unwrap().terminated.as_ref().unwrap();
            assert_eq!((t.exit_code, t.reason.as_deref()), (exit, Some(reason)));
            assert!(!c.ready);
        }
    }

    #[test]
    fn keeps_start_time_and_transition_times() {
        let earlier = Timestamp::from_second(1_600_000_000).unwrap();
        let mut p = pod();
        p.status = Some(creating_status(&p, "127.0.0.10", earlier));
        let creating = p.status.as_ref().unwrap();
        assert_eq!(creating.phase.as_deref(), Some("Pending"));
        assert!(creating.pod_ip.is_none());
        assert_eq!(
            cond(creating, "Ready").message.as_deref(),
            Some("containers with unready status: [a b]")
        );
        let later = Timestamp::from_second(1_700_000_000).unwrap();
        let s = started_status(&p, "127.0.0.10", "10.244.0.9", later, PodOutcome::Running);
        assert_eq!(s.start_time, Some(Time(earlier)));
        assert_eq!(
            cond(&s, "PodScheduled").last_transition_time,
            Some(Time(earlier))
        );
        assert_eq!(cond(&s, "Ready").last_transition_time, Some(Time(later)));
    }

    #[test]
    fn node_objects() {
        let n = SimNode::new("n1")
            .label("tier", "edge")
            .taint("k", Some("v"), "NoSchedule");
        let obj = node_object(&n);
        let labels = obj.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["tier"], "edge");
        assert_eq!(obj.spec.unwrap().taints.unwrap().len(), 1);
        let now = Timestamp::now();
        let st = node_status(&n, "127.0.0.10", 10250, "v1.32.3", now, now);
        let ready = st
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(st.addresses.as_ref().unwrap()[0].address, "127.0.0.10");
        assert_eq!(st.allocatable.as_ref().unwrap()["pods"].0, "110");
        assert_eq!(st.node_info.as_ref().unwrap().kubelet_version, "v1.32.3");
    }
}
