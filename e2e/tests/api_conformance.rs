//! API-level conformance checks: each verb, error shapes, resourceVersion semantics, watch
//! ordering and 410, finalizers, namespace deletion, garbage collection and allocation.
//!
//! They run against the in-process test API server, or against a real cluster when
//! `VCSYNC_E2E_CONFORMANCE_KUBECONFIG` names a kubeconfig (checks that need fault injection
//! then say so and stop early: they cannot be done against a real server).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use vcsync_e2e::apiserver::Fault;
use vcsync_e2e::testutil::{Cluster, create_namespace, unique_name, wait_for};

const ENV: &str = "VCSYNC_E2E_CONFORMANCE_KUBECONFIG";
const WAIT: Duration = Duration::from_secs(30);

async fn setup(prefix: &str) -> (Cluster, String) {
    let cluster = Cluster::from_env_or_test_server(ENV).await;
    let ns = unique_name(prefix);
    create_namespace(&cluster.client, &ns).await;
    (cluster, ns)
}

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    let data: BTreeMap<String, String> = data
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    serde_json::from_value(json!({"metadata": {"name": name}, "data": data}))
        .expect("valid configmap")
}

/// The `Status` of a failed call.
fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn crud_status_codes_and_resource_versions() {
    let (c, ns) = setup("conf-crud").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &ns);
    let created = cms
        .create(&PostParams::default(), &cm("a", &[("k", "v")]))
        .await
        .expect("create");
    let rv1 = created.metadata.resource_version.clone().expect("rv");
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());

    let dup = api_err(
        cms.create(&PostParams::default(), &cm("a", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(dup.message, "configmaps \"a\" already exists");

    // Update with the current rv works and changes it; the stale rv then conflicts.
    let mut upd = created.clone();
    upd.data = Some(BTreeMap::from([("k".to_string(), "v2".to_string())]));
    let updated = cms
        .replace("a", &PostParams::default(), &upd)
        .await
        .expect("update");
    let rv2 = updated.metadata.resource_version.clone().expect("rv");
    assert_ne!(rv1, rv2);
    let stale = api_err(
        cms.replace("a", &PostParams::default(), &upd)
            .await
            .unwrap_err(),
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));

    // A no-op patch keeps the resourceVersion.
    let same = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "v2"}})),
        )
        .await
        .expect("patch");
    assert_eq!(
        same.metadata.resource_version.as_deref(),
        Some(rv2.as_str())
    );
    let changed = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "y"}})),
        )
        .await
        .expect("patch");
    assert_ne!(
        changed.metadata.resource_version.as_deref(),
        Some(rv2.as_str())
    );

    let missing = api_err(cms.get("nope").await.unwrap_err());
    assert_eq!(
        (
            missing.code,
            missing.reason.as_str(),
            missing.message.as_str()
        ),
        (404, "NotFound", "configmaps \"nope\" not found")
    );

    cms.delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    assert_eq!(api_err(cms.get("a").await.unwrap_err()).code, 404);
    assert_eq!(
        api_err(cms.delete("a", &DeleteParams::default()).await.unwrap_err()).code,
        404
    );
}

#[tokio::test]
async fn validation_errors_are_422_with_causes() {
    let (c, ns) = setup("conf-valid").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &ns);
    let bad = api_err(
        cms.create(&PostParams::default(), &cm("Bad_Name", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((bad.code, bad.reason.as_str()), (422, "Invalid"));
    let causes = bad.details.expect("details").causes;
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].field, "metadata.name");
    assert_eq!(causes[0].reason, "FieldValueInvalid");

    let pods: Api<Pod> = Api::namespaced(c.client.clone(), &ns);
    let no_containers: Pod =
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": []}}))
            .unwrap();
    let e = api_err(
        pods.create(&PostParams::default(), &no_containers)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (422, "Pod \"p\" is invalid: spec.containers: Required value")
    );
}

#[tokio::test]
async fn list_selectors_and_pagination() {
    let (c, ns) = setup("conf-list").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &ns);
    for (name, app) in [("a1", "web"), ("a2", "db"), ("a3", "web"), ("a4", "web")] {
        let mut o = cm(name, &[]);
        o.metadata.labels = Some(BTreeMap::from([("app".to_string(), app.to_string())]));
        cms.create(&PostParams::default(), &o)
            .await
            .expect("create");
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("app=web"))
                .await
                .unwrap()
        ),
        ["a1", "a3", "a4"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("app in (db)"))
                .await
                .unwrap()
        ),
        ["a2"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("app,app!=web"))
                .await
                .unwrap()
        ),
        ["a2"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=a3"))
                .await
                .unwrap()
        ),
        ["a3"]
    );

    // Pages of two: every object exactly once, in order.
    let mut seen = Vec::new();
    let mut lp = ListParams::default().labels("app").limit(2);
    loop {
        let page = cms.list(&lp).await.expect("page");
        let cont = page.metadata.continue_.clone();
        seen.extend(names(page));
        match cont {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(seen, ["a1", "a2", "a3", "a4"]);
}

#[tokio::test]
async fn watch_streams_changes_in_order() {
    let (c, ns) = setup("conf-watch").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &ns);
    let start_rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .expect("list rv");
    cms.create(&PostParams::default(), &cm("w1", &[("v", "1")]))
        .await
        .unwrap();
    cms.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    cms.delete("w1", &DeleteParams::default()).await.unwrap();
    let stream = cms
        .watch(&WatchParams::default().timeout(2), &start_rv)
        .await
        .expect("watch");
    let events: Vec<String> = stream
        .take(3)
        .map(|e| match e.expect("event") {
            WatchEvent::Added(o) => format!("ADDED {}", o.data.unwrap_or_default()["v"]),
            WatchEvent::Modified(o) => format!("MODIFIED {}", o.data.unwrap_or_default()["v"]),
            WatchEvent::Deleted(o) => format!("DELETED {}", o.data.unwrap_or_default()["v"]),
            other => format!("{other:?}"),
        })
        .collect()
        .await;
    assert_eq!(events, ["ADDED 1", "MODIFIED 2", "DELETED 2"]);
}

#[tokio::test]
async fn kube_runtime_watcher_works_unmodified() {
    let (c, ns) = setup("conf-watcher").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &ns);
    let labelled = |name: &str| {
        let mut o = cm(name, &[]);
        o.metadata.labels = Some(BTreeMap::from([("watched".to_string(), "yes".to_string())]));
        o
    };
    cms.create(&PostParams::default(), &labelled("before"))
        .await
        .unwrap();
    // The selector keeps out the kube-root-ca.crt configmap every namespace gets.
    let cfg = watcher::Config::default().labels("watched=yes");
    let mut stream = watcher(cms.clone(), cfg)
        .default_backoff()
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("initial object in time")
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("before"));
    cms.create(&PostParams::default(), &labelled("after"))
        .await
        .unwrap();
    let next = tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("new object in time")
        .unwrap()
        .unwrap();
    assert_eq!(next.metadata.name.as_deref(), Some("after"));
}

#[tokio::test]
async fn watch_from_compacted_version_is_410_and_watcher_recovers() {
    let (c, ns) = setup("conf-410").await;
    let Some(server) = &c.server else {
        eprintln!(
            "history compaction needs the test API server's fault injection: not checked against a real cluster"
        );
        return;
    };
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &ns);
    let old_rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    cms.create(&PostParams::default(), &cm("x", &[]))
        .await
        .unwrap();
    server.compact_history();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(2), &old_rv)
        .await
        .expect("watch answers 200")
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }

    // kube-runtime's watcher re-lists after drops and 410s and sees later objects.
    let mut w = watcher(cms.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    let _ = tokio::time::timeout(WAIT, w.try_next())
        .await
        .expect("initial")
        .unwrap();
    server.drop_watches();
    server.compact_history();
    cms.create(&PostParams::default(), &cm("y", &[]))
        .await
        .unwrap();
    let seen = tokio::time::timeout(WAIT, async {
        while let Some(o) = w.try_next().await.expect("watcher keeps going") {
            if o.metadata.name.as_deref() == Some("y") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        seen,
        Ok(true),
        "the watcher sees y after a drop + compaction"
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (c, ns) = setup("conf-fin").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &ns);
    let mut o = cm("held", &[]);
    o.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &o).await.unwrap();
    let res = cms.delete("held", &DeleteParams::default()).await.unwrap();
    let pending = res
        .left()
        .expect("the object comes back while finalizers hold it");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert!(
        cms.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_err(cms.get("held").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn namespace_deletion_removes_content_then_namespace() {
    let (c, ns) = setup("conf-nsdel").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &ns);
    // A finalizer keeps the namespace terminating until it is removed below, so the create in
    // a terminating namespace is checked whatever the namespace controller's pace.
    let mut inside = cm("inside", &[]);
    inside.metadata.finalizers = Some(vec!["vcsync.io/test-hold".into()]);
    cms.create(&PostParams::default(), &inside).await.unwrap();
    let nss: Api<Namespace> = Api::all(c.client.clone());
    nss.delete(&ns, &DeleteParams::default()).await.unwrap();
    let e = api_err(
        cms.create(&PostParams::default(), &cm("late", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    cms.patch(
        "inside",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_for(
        Duration::from_secs(60),
        "the namespace to disappear",
        || {
            let nss = nss.clone();
            let ns = ns.clone();
            async move {
                nss.get_opt(&ns)
                    .await
                    .ok()
                    .and_then(|o| o.is_none().then_some(()))
            }
        },
    )
    .await;
    let lp = ListParams::default();
    assert!(cms.list(&lp).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn garbage_collector_deletes_dependents() {
    let (c, ns) = setup("conf-gc").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &ns);
    let owner = cms
        .create(&PostParams::default(), &cm("owner", &[]))
        .await
        .unwrap();
    let mut child = cm("child", &[]);
    child.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "owner".into(),
            uid: owner.metadata.uid.clone().unwrap(),
            ..Default::default()
        },
    ]);
    cms.create(&PostParams::default(), &child).await.unwrap();
    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    wait_for(WAIT, "the dependent to be collected", || {
        let cms = cms.clone();
        async move {
            cms.get_opt("child")
                .await
                .ok()
                .and_then(|o| o.is_none().then_some(()))
        }
    })
    .await;
}

#[tokio::test]
async fn cluster_ips_and_node_ports_are_allocated_uniquely() {
    let (c, ns) = setup("conf-alloc").await;
    let svcs: Api<Service> = Api::namespaced(c.client.clone(), &ns);
    let mut ips = Vec::new();
    let mut ports = Vec::new();
    for i in 0..5 {
        let s: Service = serde_json::from_value(json!({
            "metadata": {"name": format!("s{i}")},
            "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [{"port": 80}]}
        }))
        .unwrap();
        let got = svcs
            .create(&PostParams::default(), &s)
            .await
            .expect("service");
        let spec = got.spec.unwrap();
        ips.push(spec.cluster_ip.expect("cluster ip"));
        ports.push(spec.ports.unwrap()[0].node_port.expect("node port"));
    }
    let mut uniq = ips.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), ips.len(), "duplicate ClusterIPs: {ips:?}");
    let mut uniq = ports.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), ports.len(), "duplicate NodePorts: {ports:?}");
    let headless: Service = serde_json::from_value(
        json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "selector": {"app": "x"}}}),
    )
    .unwrap();
    assert_eq!(
        svcs.create(&PostParams::default(), &headless)
            .await
            .unwrap()
            .spec
            .unwrap()
            .cluster_ip
            .as_deref(),
        Some("None")
    );
}

#[tokio::test]
async fn bound_pods_are_deleted_gracefully() {
    let (c, ns) = setup("conf-grace").await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), &ns);
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}})).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    let still = pods
        .get("p")
        .await
        .expect("a bound pod waits for its kubelet");
    assert!(still.metadata.deletion_timestamp.is_some());
    assert_eq!(still.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete("p", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert_eq!(api_err(pods.get("p").await.unwrap_err()).code, 404);

    // No scheduler answers to this name, so the pod is still unbound when deleted (a scheduler
    // binding it first would make the deletion graceful, rightly).
    let unbound: Pod = serde_json::from_value(json!({"metadata": {"name": "u"}, "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "busybox"}]}})).unwrap();
    pods.create(&PostParams::default(), &unbound).await.unwrap();
    pods.delete("u", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_err(pods.get("u").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn namespaced_token_is_limited_to_its_namespace() {
    if std::env::var(ENV).is_ok() {
        eprintln!(
            "the limited identity is a test API server feature: not checked against a real cluster"
        );
        return;
    }
    let config = vcsync_e2e::apiserver::ServerConfig {
        namespaced_token: Some(("limited-token".into(), "allowed".into())),
        ..Default::default()
    };
    let server = vcsync_e2e::apiserver::TestApiServer::start(config)
        .await
        .unwrap();
    create_namespace(&server.client(), "allowed").await;
    create_namespace(&server.client(), "other").await;
    let limited = server.client_for("limited-token").unwrap();
    let ok: Api<ConfigMap> = Api::namespaced(limited.clone(), "allowed");
    ok.create(&PostParams::default(), &cm("fine", &[]))
        .await
        .expect("allowed namespace");
    let denied: Api<ConfigMap> = Api::namespaced(limited.clone(), "other");
    let e = api_err(denied.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    let nss: Api<Namespace> = Api::all(limited);
    assert_eq!(
        api_err(nss.list(&ListParams::default()).await.unwrap_err()).code,
        403
    );
}

#[tokio::test]
async fn injected_faults_counters_and_restart() {
    let (mut c, ns) = setup("conf-faults").await;
    let Some(server) = c.server.as_mut() else {
        eprintln!(
            "fault injection is a test API server feature: not checked against a real cluster"
        );
        return;
    };
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &ns);
    server.reset_counts();
    server.inject(
        Some("create"),
        Some("configmaps"),
        1,
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
    );
    server.inject(
        Some("get"),
        Some("configmaps"),
        1,
        Fault::ServiceUnavailable,
    );
    assert_eq!(
        api_err(
            cms.create(&PostParams::default(), &cm("f", &[]))
                .await
                .unwrap_err()
        )
        .code,
        429
    );
    cms.create(&PostParams::default(), &cm("f", &[]))
        .await
        .expect("the fault is used up");
    assert_eq!(api_err(cms.get("f").await.unwrap_err()).code, 503);
    cms.get("f").await.expect("second get works");
    assert_eq!(server.count("create", Some("configmaps")), 2);
    assert_eq!(server.write_count(), 2);

    // Restart on the same port keeps the data.
    server.restart().await.expect("restart");
    let client = server.client();
    let cms: Api<ConfigMap> = Api::namespaced(client, &ns);
    wait_for(WAIT, "the restarted server to answer", || {
        let cms = cms.clone();
        async move { cms.get_opt("f").await.ok().flatten() }
    })
    .await;
}
