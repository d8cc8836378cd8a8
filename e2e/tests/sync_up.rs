//! End-to-end: what happens on the host flows up. Events about a tenant's host pods become events
//! on its virtual pods (and never another tenant's), and the host nodes running its pods appear
//! as virtual Nodes for as long as they do. A restart in sync writes nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use vcsync::markers;
use vcsync_e2e::harness::Harness;
use vcsync_e2e::testutil::{create_namespace, wait_for};

const WAIT: Duration = Duration::from_secs(30);

/// What the kubelet simulator records for a pod that starts.
const POD_REASONS: [&str; 4] = ["Scheduled", "Pulled", "Created", "Started"];

fn mk_pod(ns: &str, name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
    }))
    .expect("valid pod")
}

/// Virtual events in `ns` about the object named `name`.
async fn events_about(api: &Api<Event>, name: &str) -> Vec<Event> {
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .collect()
}

/// Wait until the virtual pod `name` has one event of every reason in [`POD_REASONS`].
async fn wait_pod_events(api: &Api<Event>, name: &str) -> Vec<Event> {
    wait_for(WAIT, &format!("the events of virtual pod {name}"), || {
        let api = api.clone();
        async move {
            let evs = events_about(&api, name).await;
            POD_REASONS
                .iter()
                .all(|r| evs.iter().any(|e| e.reason.as_deref() == Some(*r)))
                .then_some(evs)
        }
    })
    .await
}

/// Wait for the host copy of a virtual pod to be bound; returns its node.
async fn wait_host_node(h: &Harness, host_name: &str) -> String {
    let hpods = h.host_api::<Pod>();
    wait_for(WAIT, "the host pod to be bound", || {
        let (hpods, host_name) = (hpods.clone(), host_name.to_string());
        async move {
            let p = hpods.get_opt(&host_name).await.ok()??;
            p.spec?.node_name.filter(|n| !n.is_empty())
        }
    })
    .await
}

#[tokio::test]
async fn host_pod_events_show_on_the_virtual_pod_with_virtual_names() {
    let mut h = Harness::new("acme").await;
    create_namespace(&h.virt, "shop").await;
    h.start_engine();
    let vpods = h.virt_api::<Pod>("shop");
    let created = vpods
        .create(&PostParams::default(), &mk_pod("shop", "web"))
        .await
        .expect("virtual pod");
    let host_name = h.host_name("shop", "web");
    let node = wait_host_node(&h, &host_name).await;

    let vevents = h.virt_api::<Event>("shop");
    let evs = wait_pod_events(&vevents, "web").await;
    for e in &evs {
        let io = &e.involved_object;
        assert_eq!(io.kind.as_deref(), Some("Pod"), "{e:?}");
        assert_eq!(io.namespace.as_deref(), Some("shop"));
        assert_eq!(io.uid, created.metadata.uid, "{e:?}");
        assert_eq!(e.metadata.namespace.as_deref(), Some("shop"));
        let msg = e.message.as_deref().unwrap_or("");
        assert!(
            !msg.contains(&host_name) && !msg.contains(&h.host_namespace),
            "a host name leaked into {msg:?}"
        );
        assert!(
            e.metadata.name.as_deref().unwrap().starts_with("web."),
            "{:?}",
            e.metadata.name
        );
    }
    let by_reason = |r: &str| {
        evs.iter()
            .filter(|e| e.reason.as_deref() == Some(r))
            .collect::<Vec<_>>()
    };
    for r in POD_REASONS {
        assert_eq!(by_reason(r).len(), 1, "exactly one {r} event: {evs:?}");
    }
    assert_eq!(
        by_reason("Scheduled")[0].message.as_deref(),
        Some(format!("Successfully assigned shop/web to {node}").as_str())
    );
    let started = by_reason("Started")[0];
    assert_eq!(started.message.as_deref(), Some("Started container app"));
    assert_eq!(
        started.involved_object.field_path.as_deref(),
        Some("spec.containers{app}")
    );
    assert_eq!(started.count, Some(1));
    let source = started.source.clone().unwrap_or_default();
    assert_eq!(source.component.as_deref(), Some("kubelet"));
    assert_eq!(source.host.as_deref(), Some(node.as_str()));
    h.stop_engine().await;
}

#[tokio::test]
async fn nodes_running_tenant_pods_appear_in_the_virtual_cluster_and_go_away() {
    let mut h = Harness::new("nodes").await;
    create_namespace(&h.virt, "apps").await;
    let vnodes: Api<Node> = Api::all(h.virt.clone());
    // A virtual node vcsync did not create: never touched.
    let bystander: Node =
        serde_json::from_value(json!({"metadata": {"name": "bystander", "labels": {"team": "x"}}}))
            .unwrap();
    vnodes
        .create(&PostParams::default(), &bystander)
        .await
        .expect("bystander node");
    h.start_engine();
    let vpods = h.virt_api::<Pod>("apps");
    vpods
        .create(&PostParams::default(), &mk_pod("apps", "job"))
        .await
        .expect("virtual pod");
    let node = wait_host_node(&h, &h.host_name("apps", "job")).await;

    let vn = wait_for(WAIT, "the virtual node to be Ready", || {
        let (vnodes, node) = (vnodes.clone(), node.clone());
        async move {
            let n = vnodes.get_opt(&node).await.ok()??;
            let ready = n
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(n)
        }
    })
    .await;
    let labels = vn.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels,
        BTreeMap::from([
            ("kubernetes.io/arch".to_string(), "amd64".to_string()),
            ("kubernetes.io/hostname".to_string(), node.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            (markers::MANAGED_BY.to_string(), "nodes".to_string()),
        ]),
        "only allowlisted labels and the marker"
    );
    let status = vn.status.clone().unwrap();
    assert_eq!(status.capacity.as_ref().unwrap()["cpu"].0, "4");
    assert_eq!(status.allocatable.as_ref().unwrap()["memory"].0, "16Gi");
    let addresses = status.addresses.unwrap_or_default();
    assert!(
        addresses.iter().any(|a| a.type_ == "InternalIP"),
        "{addresses:?}"
    );
    assert!(addresses.iter().all(|a| a.type_ != "ExternalIP"));
    let info = status.node_info.unwrap();
    assert_eq!(info.kubelet_version, "v1.32.3");
    assert!(info.machine_id.is_empty() && info.boot_id.is_empty());
    // Only the node that runs a tenant pod.
    let names: Vec<String> = vnodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.metadata.name.clone().unwrap())
        .collect();
    let mut want = vec!["bystander".to_string(), node.clone()];
    want.sort();
    assert_eq!(names, want);

    vpods
        .delete("job", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for(WAIT, "the virtual node to be deleted", || {
        let (vnodes, node) = (vnodes.clone(), node.clone());
        async move {
            vnodes
                .get_opt(&node)
                .await
                .ok()
                .and_then(|n| n.is_none().then_some(()))
        }
    })
    .await;
    assert!(
        vnodes.get_opt("bystander").await.unwrap().is_some(),
        "an unmarked virtual node was deleted"
    );
    h.stop_engine().await;
}

#[tokio::test]
async fn another_tenants_host_events_are_not_copied() {
    let mut h = Harness::new("acme").await;
    create_namespace(&h.virt, "shop").await;
    // Tenant "other" shares the host namespace; its host pod's markers even name the same
    // virtual namespace and pod name as ours.
    let hpods = h.host_api::<Pod>();
    let intruder: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": "web-shop-other-3-4",
            "labels": {markers::MANAGED_BY: "other", markers::VIRTUAL_NAMESPACE_LABEL: "shop"},
            "annotations": {
                markers::VIRTUAL_KIND: "Pod",
                markers::VIRTUAL_NAMESPACE: "shop",
                markers::VIRTUAL_NAME: "web",
                markers::VIRTUAL_UID: "uid-of-the-other-tenant",
            },
        },
        "spec": {
            "serviceAccountName": "vcsync-workload",
            "automountServiceAccountToken": false,
            "containers": [{"name": "app", "image": "busybox:1.36"}],
        },
    }))
    .unwrap();
    let intruder = hpods
        .create(&PostParams::default(), &intruder)
        .await
        .expect("the other tenant's host pod");
    let hevents = h.host_api::<Event>();
    // A hand-made event on it, next to the ones the kubelet simulator records.
    let secret_event: Event = serde_json::from_value(json!({
        "metadata": {"name": "web-shop-other-3-4.secret"},
        "involvedObject": {
            "apiVersion": "v1", "kind": "Pod", "name": "web-shop-other-3-4",
            "namespace": h.host_namespace, "uid": intruder.metadata.uid,
        },
        "reason": "Started", "type": "Normal", "count": 1,
        "message": "the other tenant's secret business",
        "source": {"component": "kubelet"},
    }))
    .unwrap();
    hevents
        .create(&PostParams::default(), &secret_event)
        .await
        .expect("the other tenant's event");
    let intruder_node = wait_host_node(&h, "web-shop-other-3-4").await;
    wait_for(WAIT, "the other tenant's pod to be started", || {
        let hevents = hevents.clone();
        async move {
            let evs = events_about(&hevents, "web-shop-other-3-4").await;
            evs.iter()
                .any(|e| e.reason.as_deref() == Some("Pulled"))
                .then_some(())
        }
    })
    .await;

    h.start_engine();
    let vpods = h.virt_api::<Pod>("shop");
    vpods
        .create(&PostParams::default(), &mk_pod("shop", "web"))
        .await
        .expect("virtual pod");
    let our_node = wait_host_node(&h, &h.host_name("shop", "web")).await;
    // The other tenant's events were listed before ours were even recorded: once ours are
    // copied, theirs have been looked at.
    let vevents = h.virt_api::<Event>("shop");
    let evs = wait_pod_events(&vevents, "web").await;
    for r in POD_REASONS {
        let n = evs
            .iter()
            .filter(|e| e.reason.as_deref() == Some(r))
            .count();
        assert_eq!(n, 1, "one {r} event, ours only: {evs:?}");
    }
    let all: Api<Event> = Api::all(h.virt.clone());
    let leaked: Vec<Event> = all
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.message
                .as_deref()
                .is_some_and(|m| m.contains("secret business"))
                || e.involved_object.uid.as_deref() == Some("uid-of-the-other-tenant")
                || e.message.as_deref().is_some_and(|m| m.contains("busybox"))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "copied another tenant's events: {leaked:?}"
    );
    // Nor does the other tenant's pod make its node appear.
    if intruder_node != our_node {
        let vnodes: Api<Node> = Api::all(h.virt.clone());
        assert!(vnodes.get_opt(&intruder_node).await.unwrap().is_none());
    }
    h.stop_engine().await;
}

#[tokio::test]
async fn a_restart_in_sync_writes_no_event_or_node() {
    let mut h = Harness::new("again").await;
    create_namespace(&h.virt, "shop").await;
    h.start_engine();
    let vpods = h.virt_api::<Pod>("shop");
    vpods
        .create(&PostParams::default(), &mk_pod("shop", "web"))
        .await
        .expect("virtual pod");
    let node = wait_host_node(&h, &h.host_name("shop", "web")).await;
    let vevents = h.virt_api::<Event>("shop");
    let vnodes: Api<Node> = Api::all(h.virt.clone());
    wait_pod_events(&vevents, "web").await;
    let before_node = wait_for(WAIT, "the virtual node to be Ready", || {
        let (vnodes, node) = (vnodes.clone(), node.clone());
        async move {
            let n = vnodes.get_opt(&node).await.ok()??;
            let ready = n
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Ready");
            ready.then_some(n)
        }
    })
    .await;
    let node_seen = Instant::now();
    h.stop_engine().await;
    let snapshot = |evs: Vec<Event>| {
        evs.into_iter()
            .map(|e| {
                (
                    e.metadata.name.unwrap_or_default(),
                    e.metadata.resource_version.unwrap_or_default(),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    let before = snapshot(events_about(&vevents, "web").await);

    h.start_engine();
    // A second pod proves the restarted engine has caught up.
    vpods
        .create(&PostParams::default(), &mk_pod("shop", "api"))
        .await
        .expect("second virtual pod");
    wait_pod_events(&vevents, "api").await;
    let after = snapshot(events_about(&vevents, "web").await);
    assert_eq!(before, after, "events were written again after a restart");
    // The heartbeat may legitimately be renewed once it is 30 s old.
    if node_seen.elapsed() < Duration::from_secs(20) {
        let now = vnodes.get(&node).await.unwrap();
        assert_eq!(
            now.metadata.resource_version, before_node.metadata.resource_version,
            "the virtual node was written again after a restart"
        );
    }
    h.stop_engine().await;
}
