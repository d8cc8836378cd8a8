//! The kubelet simulator against the in-process test API server: nodes register Ready, pods get
//! bound, run, fail on request, report unschedulable, and finish graceful deletion.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod, ServiceAccount};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use vcsync_e2e::apiserver::{ServerConfig, TestApiServer};
use vcsync_e2e::kubelet::{Kubelet, KubeletConfig, KubeletHandle, SimNode};

const WAIT: Duration = Duration::from_secs(30);

/// Polls `check` until it yields a value or the deadline passes.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    eventually("the default service account", || async {
        sas.get_opt("default").await.ok().flatten()
    })
    .await;
}

fn pod(name: &str, extra: serde_json::Value) -> Pod {
    let mut base = json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    });
    merge(&mut base, extra);
    serde_json::from_value(base).unwrap()
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

async fn phase_of(api: &Api<Pod>, name: &str) -> Option<Pod> {
    api.get_opt(name).await.ok().flatten()
}

struct Fixture {
    server: TestApiServer,
    client: Client,
    kubelet: KubeletHandle,
    pods: Api<Pod>,
    ns: String,
}

async fn fixture(ns: &str, config: KubeletConfig) -> Fixture {
    let server = TestApiServer::start(ServerConfig::default())
        .await
        .expect("start server");
    let client = server.client();
    namespace(&client, ns).await;
    let kubelet = Kubelet::start(client.clone(), config.namespace(ns)).expect("start kubelet");
    kubelet.wait_nodes_ready(WAIT).await.expect("nodes ready");
    let pods = Api::namespaced(client.clone(), ns);
    Fixture {
        server,
        client,
        kubelet,
        pods,
        ns: ns.to_owned(),
    }
}

#[tokio::test]
async fn pod_runs_and_graceful_deletion_completes() {
    let f = fixture("sim-run", KubeletConfig::default()).await;

    let nodes: Api<Node> = Api::all(f.client.clone());
    for name in f.kubelet.node_names() {
        let node = nodes.get(&name).await.expect("node exists");
        let ready = node
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready condition");
        assert_eq!(ready.status, "True", "node {name}");
    }

    f.pods
        .create(&PostParams::default(), &pod("web", json!({})))
        .await
        .expect("create pod");
    let running = eventually("pod web running with an IP", || async {
        phase_of(&f.pods, "web").await.filter(|p| {
            let s = p.status.as_ref();
            s.and_then(|s| s.phase.as_deref()) == Some("Running")
                && s.and_then(|s| s.pod_ip.as_deref()).is_some()
        })
    })
    .await;
    let spec = running.spec.as_ref().unwrap();
    assert!(
        f.kubelet
            .node_names()
            .contains(spec.node_name.as_ref().unwrap())
    );
    let status = running.status.as_ref().unwrap();
    assert!(status.pod_ip.as_ref().unwrap().starts_with("10.244."));
    assert!(status.host_ip.as_ref().unwrap().starts_with("127.0.0."));
    assert_eq!(status.qos_class.as_deref(), Some("Burstable"));
    let ready = status
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    let cs = &status.container_statuses.as_ref().unwrap()[0];
    assert!(cs.ready && cs.container_id.is_some());
    assert_eq!(f.kubelet.stats().bound, 1);

    let events: Api<Event> = Api::namespaced(f.client.clone(), &f.ns);
    let reasons = eventually("scheduler and kubelet events", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let reasons: Vec<String> = list.items.into_iter().filter_map(|e| e.reason).collect();
        (reasons.iter().any(|r| r == "Scheduled") && reasons.iter().any(|r| r == "Started"))
            .then_some(reasons)
    })
    .await;
    assert!(reasons.iter().any(|r| r == "Pulled"), "{reasons:?}");

    f.pods
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete pod");
    eventually("pod web gone", || async {
        match f.pods.get_opt("web").await {
            Ok(None) => Some(()),
            _ => None,
        }
    })
    .await;
    f.kubelet
        .wait_until(WAIT, "the deletion to be counted", |s| s.deleted == 1)
        .await
        .expect("deleted counter");
    assert_eq!(f.kubelet.stats().api_errors, 0, "{:?}", f.kubelet.stats());
    f.kubelet.stop().await.expect("stop");
    drop(f.server);
}

#[tokio::test]
async fn deletion_delay_keeps_the_terminating_pod_for_a_while() {
    let config = KubeletConfig::default().deletion_delay(Duration::from_secs(1));
    let f = fixture("sim-linger", config).await;
    f.pods
        .create(&PostParams::default(), &pod("linger", json!({})))
        .await
        .expect("create");
    eventually("linger running", || async {
        phase_of(&f.pods, "linger")
            .await
            .and_then(|p| p.status?.pod_ip)
    })
    .await;
    f.pods
        .delete("linger", &DeleteParams::default())
        .await
        .expect("delete");
    let terminating = f
        .pods
        .get("linger")
        .await
        .expect("still there right after delete");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    eventually("linger gone", || async {
        matches!(f.pods.get_opt("linger").await, Ok(None)).then_some(())
    })
    .await;
    f.kubelet.stop().await.expect("stop");
}

#[tokio::test]
async fn start_delay_shows_container_creating_first() {
    let config = KubeletConfig::default().start_delay(Duration::from_millis(300));
    let f = fixture("sim-slow", config).await;
    let created = f
        .pods
        .create(&PostParams::default(), &pod("slow", json!({})))
        .await
        .expect("create");
    let rv = created.metadata.resource_version.unwrap();
    let wp = WatchParams::default()
        .fields("metadata.name=slow")
        .timeout(25);
    let mut stream = f.pods.watch(&wp, &rv).await.expect("watch").boxed();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, stream.next()).await {
        let Ok(WatchEvent::Modified(p)) = event else {
            continue;
        };
        let status = p.status.unwrap_or_default();
        let waiting = status
            .container_statuses
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| c.state?.waiting?.reason)
            .next();
        let phase = status.phase.unwrap_or_default();
        seen.push(format!("{phase}/{}", waiting.unwrap_or_default()));
        if phase == "Running" {
            break;
        }
    }
    assert!(
        seen.contains(&"Pending/ContainerCreating".to_owned()),
        "{seen:?}"
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("Running/"),
        "{seen:?}"
    );
    f.kubelet.stop().await.expect("stop");
}

#[tokio::test]
async fn failing_and_unschedulable_pods() {
    let config = KubeletConfig::default().nodes([SimNode::new("only").label("disk", "ssd")]);
    let f = fixture("sim-fail", config).await;

    let failing = pod(
        "crash",
        json!({"metadata": {"labels": {"kubelet-sim/fail": "true"}}}),
    );
    f.pods
        .create(&PostParams::default(), &failing)
        .await
        .expect("create failing pod");
    let nowhere = pod(
        "nowhere",
        json!({"spec": {"nodeSelector": {"disk": "hdd"}}}),
    );
    f.pods
        .create(&PostParams::default(), &nowhere)
        .await
        .expect("create pod");

    eventually("pod crash failed", || async {
        phase_of(&f.pods, "crash")
            .await
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
    })
    .await;
    let pending = eventually("pod nowhere marked unschedulable", || async {
        phase_of(&f.pods, "nowhere").await.filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.type_ == "PodScheduled" && c.reason.as_deref() == Some("Unschedulable")
                    })
                })
        })
    })
    .await;
    assert!(pending.spec.unwrap().node_name.is_none());
    let stats = f
        .kubelet
        .wait_until(WAIT, "the failure to be counted", |s| s.failed == 1)
        .await
        .expect("failed counter");
    assert_eq!(stats.bound, 1, "{stats:?}");
    f.kubelet.stop().await.expect("stop");
}

#[tokio::test]
async fn restart_does_not_rebind_or_reuse_ips() {
    let f = fixture("sim-restart", KubeletConfig::default()).await;
    f.pods
        .create(&PostParams::default(), &pod("first", json!({})))
        .await
        .expect("create");
    let first = eventually("first running", || async {
        phase_of(&f.pods, "first")
            .await
            .and_then(|p| p.status?.pod_ip)
    })
    .await;
    f.kubelet.stop().await.expect("stop");

    let again = Kubelet::start(f.client.clone(), KubeletConfig::default().namespace(&f.ns))
        .expect("restart kubelet");
    again.wait_nodes_ready(WAIT).await.expect("nodes ready");
    f.pods
        .create(&PostParams::default(), &pod("second", json!({})))
        .await
        .expect("create");
    let second = eventually("second running", || async {
        phase_of(&f.pods, "second")
            .await
            .and_then(|p| p.status?.pod_ip)
    })
    .await;
    assert_ne!(first, second);
    let stats = again
        .wait_until(WAIT, "the second pod to be counted", |s| s.running == 1)
        .await
        .expect("running counter");
    assert_eq!(stats.bound, 1, "{stats:?}");
    again.stop().await.expect("stop");
}

/// The node loads the scheduler fits against follow every pod change: a full node refuses the
/// next pod ("Too many pods"), and takes it once a pod on it is gone (the back-off resync
/// retries it without a watch event for the pending pod).
#[tokio::test]
async fn a_full_node_takes_a_pending_pod_once_one_is_deleted() {
    let config = KubeletConfig::default()
        .nodes([SimNode::new("small").pods(2)])
        .resync_interval(Duration::from_millis(100));
    let f = fixture("sim-full", config).await;
    let node_of = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone());
    for name in ["a", "b"] {
        f.pods
            .create(&PostParams::default(), &pod(name, json!({})))
            .await
            .expect("create pod");
    }
    for name in ["a", "b"] {
        eventually("the first two pods bound", || async {
            phase_of(&f.pods, name)
                .await
                .filter(|p| node_of(p).is_some())
        })
        .await;
    }
    f.pods
        .create(&PostParams::default(), &pod("c", json!({})))
        .await
        .expect("create pod");
    let pending = eventually("pod c unschedulable", || async {
        phase_of(&f.pods, "c").await.filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.reason.as_deref() == Some("Unschedulable")
                            && c.message
                                .as_deref()
                                .is_some_and(|m| m.contains("Too many pods"))
                    })
                })
        })
    })
    .await;
    assert_eq!(node_of(&pending), None);
    f.pods
        .delete("a", &DeleteParams::default())
        .await
        .expect("delete pod a");
    let placed = eventually("pod c bound after a is gone", || async {
        phase_of(&f.pods, "c")
            .await
            .filter(|p| node_of(p).is_some())
    })
    .await;
    assert_eq!(node_of(&placed).as_deref(), Some("small"));
    assert!(phase_of(&f.pods, "a").await.is_none(), "a is gone");
    f.kubelet.stop().await.expect("stop");
}
