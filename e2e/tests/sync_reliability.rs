//! End-to-end reliability: restart idempotence, out-of-band drift, API faults, watch drops and
//! 410s, ownership, two tenants in one host namespace, adversarial names.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::json;
use vcsync::markers;
use vcsync::translate::NameRule;
use vcsync_e2e::apiserver::Fault;
use vcsync_e2e::harness::{ENGINE_USER, Harness};
use vcsync_e2e::testutil::{create_namespace, wait_for};

const WAIT: Duration = Duration::from_secs(30);

fn obj<T: DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

fn pod_using(name: &str, cm: &str) -> Pod {
    obj(
        json!({"metadata": {"name": name, "labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox",
        "envFrom": [{"configMapRef": {"name": cm}}]}]}}),
    )
}

async fn running(api: &Api<Pod>, name: &str) {
    wait_for(WAIT, &format!("virtual pod {name} Running"), || {
        let (api, name) = (api.clone(), name.to_string());
        async move { (api.get(&name).await.ok()?.status?.phase? == "Running").then_some(()) }
    })
    .await;
}

async fn exists<K>(api: &Api<K>, name: &str) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    wait_for(WAIT, &format!("object {name}"), || {
        let (api, name) = (api.clone(), name.to_string());
        async move { api.get_opt(&name).await.ok().flatten() }
    })
    .await
}

/// A workload in sync: a pod using a configmap, behind a service.
async fn workload(h: &Harness, ns: &str) {
    create_namespace(&h.virt, ns).await;
    let cms: Api<ConfigMap> = h.virt_api(ns);
    cms.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "cfg"}, "data": {"k": "v"}})),
    )
    .await
    .unwrap();
    let svcs: Api<Service> = h.virt_api(ns);
    svcs.create(&PostParams::default(), &obj(json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})))
        .await
        .unwrap();
    let pods: Api<Pod> = h.virt_api(ns);
    pods.create(&PostParams::default(), &pod_using("web", "cfg"))
        .await
        .unwrap();
    running(&pods, "web").await;
}

#[tokio::test]
async fn restarting_over_an_in_sync_pair_writes_nothing() {
    let mut h = Harness::new("idem").await;
    h.start_engine();
    workload(&h, "shop").await;
    exists(&h.host_api::<ConfigMap>(), &h.host_name("shop", "cfg")).await;
    exists(
        &h.host_api::<Service>(),
        &vcsync::translate::host_name("idem", "shop", "web", NameRule::Dns1035Label),
    )
    .await;
    h.wait_quiet(Duration::from_millis(600), WAIT).await;
    h.stop_engine().await;
    // The kubelet simulator would write heartbeats; it is not what this test measures.
    if let Some(k) = h.kubelet.take() {
        k.stop().await.unwrap();
    }
    h.reset_counts();
    h.start_engine();
    h.wait_quiet(Duration::from_secs(2), WAIT).await;
    let Some((host_writes, virtual_writes)) = h.engine_writes() else {
        eprintln!("request counters need the test API servers: not checked against real clusters");
        return;
    };
    let detail = format!(
        "host: {:?}\nvirtual: {:?}",
        h.host_server.as_ref().unwrap().requests_by(ENGINE_USER),
        h.virtual_server.as_ref().unwrap().requests_by(ENGINE_USER)
    );
    assert_eq!(
        (host_writes, virtual_writes),
        (0, 0),
        "a restart over an in-sync pair writes nothing\n{detail}"
    );
    // ...and it did look: both caches were listed.
    assert!(
        h.host_server.as_ref().unwrap().count("list", Some("pods")) > 0,
        "{detail}"
    );
    h.stop_engine().await;
}

#[tokio::test]
async fn out_of_band_host_edits_and_deletes_are_repaired() {
    let mut h = Harness::new("drift").await;
    h.start_engine();
    workload(&h, "shop").await;
    let hcm: Api<ConfigMap> = h.host_api();
    let cm_name = h.host_name("shop", "cfg");
    exists(&hcm, &cm_name).await;
    // Edit: data changed and a host controller's annotation added.
    hcm.patch(&cm_name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"host.example.com/note": "keep"}}, "data": {"k": "tampered"}})))
        .await
        .unwrap();
    wait_for(WAIT, "the configmap data to be restored", || {
        let (hcm, n) = (hcm.clone(), cm_name.clone());
        async move {
            let cm = hcm.get(&n).await.ok()?;
            (cm.data?.get("k")? == "v").then_some(cm.metadata.annotations?)
        }
    })
    .await
    .get("host.example.com/note")
    .expect("annotations that host controllers add are left alone");
    // Delete: the service comes back with the same ClusterIP.
    let hs: Api<Service> = h.host_api();
    let svc_name = vcsync::translate::host_name("drift", "shop", "web", NameRule::Dns1035Label);
    let before = exists(&hs, &svc_name).await;
    hs.delete(&svc_name, &DeleteParams::default())
        .await
        .unwrap();
    let after = wait_for(WAIT, "the service to be re-created", || {
        let (hs, n, uid) = (hs.clone(), svc_name.clone(), before.metadata.uid.clone());
        async move {
            hs.get_opt(&n)
                .await
                .ok()
                .flatten()
                .filter(|s| s.metadata.uid != uid)
        }
    })
    .await;
    assert_eq!(
        after.spec.unwrap().cluster_ip,
        before.spec.unwrap().cluster_ip
    );
    // A host pod deleted out of band (eviction) deletes its virtual pod.
    let hp: Api<Pod> = h.host_api();
    hp.delete(
        &h.host_name("shop", "web"),
        &DeleteParams::default().grace_period(0),
    )
    .await
    .unwrap();
    let vp: Api<Pod> = h.virt_api("shop");
    wait_for(
        WAIT,
        "the virtual pod to follow its evicted host pod",
        || {
            let vp = vp.clone();
            async move {
                vp.get_opt("web")
                    .await
                    .ok()
                    .and_then(|p| p.is_none().then_some(()))
            }
        },
    )
    .await;
    h.stop_engine().await;
}

#[tokio::test]
async fn api_faults_are_retried_until_converged() {
    let mut h = Harness::new("faults").await;
    let Some(hs) = &h.host_server else {
        eprintln!("fault injection needs the test API servers: not checked against real clusters");
        return;
    };
    hs.inject_for(
        ENGINE_USER,
        Some("create"),
        Some("pods"),
        2,
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
    );
    hs.inject_for(
        ENGINE_USER,
        Some("create"),
        Some("configmaps"),
        2,
        Fault::ServiceUnavailable,
    );
    hs.inject_for(
        ENGINE_USER,
        Some("create"),
        Some("services"),
        1,
        Fault::InternalError,
    );
    h.virtual_server.as_ref().unwrap().inject_for(
        ENGINE_USER,
        Some("patch"),
        Some("pods/status"),
        2,
        Fault::Conflict,
    );
    h.start_engine();
    workload(&h, "shop").await;
    exists(&h.host_api::<ConfigMap>(), &h.host_name("shop", "cfg")).await;
    exists(
        &h.host_api::<Service>(),
        &vcsync::translate::host_name("faults", "shop", "web", NameRule::Dns1035Label),
    )
    .await;
    h.stop_engine().await;
}

#[tokio::test]
async fn dropped_watches_and_expired_versions_resume() {
    let mut h = Harness::new("resume").await;
    h.start_engine();
    workload(&h, "shop").await;
    let (Some(hs), Some(vs)) = (&h.host_server, &h.virtual_server) else {
        eprintln!("watch faults need the test API servers: not checked against real clusters");
        return;
    };
    for s in [hs, vs] {
        s.drop_watches();
        s.compact_history();
    }
    let pods: Api<Pod> = h.virt_api("shop");
    pods.create(&PostParams::default(), &pod_using("after", "cfg"))
        .await
        .unwrap();
    running(&pods, "after").await;
    exists(&h.host_api::<Pod>(), &h.host_name("shop", "after")).await;
    h.stop_engine().await;
}

#[tokio::test]
async fn foreign_host_objects_are_never_touched() {
    let mut h = Harness::new("owner").await;
    create_namespace(&h.virt, "shop").await;
    // Someone else's configmap already has the name vcsync would use.
    let hcm: Api<ConfigMap> = h.host_api();
    let name = h.host_name("shop", "cfg");
    hcm.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": name}, "data": {"owner": "someone-else"}})),
    )
    .await
    .unwrap();
    h.start_engine();
    let cms: Api<ConfigMap> = h.virt_api("shop");
    cms.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "cfg"}, "data": {"k": "v"}})),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = h.virt_api("shop");
    pods.create(&PostParams::default(), &pod_using("web", "cfg"))
        .await
        .unwrap();
    // The tenant is told, on the virtual configmap.
    let events: Api<k8s_openapi::api::events::v1::Event> = h.virt_api("shop");
    let ev = wait_for(WAIT, "an OwnershipConflict event", || {
        let events = events.clone();
        async move {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("OwnershipConflict"))
        }
    })
    .await;
    assert_eq!(ev.regarding.unwrap().name.as_deref(), Some("cfg"));
    assert_eq!(
        hcm.get(&name).await.unwrap().data.unwrap()["owner"],
        "someone-else"
    );
    h.stop_engine().await;
    assert!(
        hcm.get_opt(&name).await.unwrap().is_some(),
        "not deleted either"
    );
}

#[tokio::test]
async fn two_tenants_share_a_host_namespace_without_touching_each_other() {
    let mut a = Harness::new("alpha").await;
    // Tenant beta: its own virtual API, the same host (namespace) as alpha.
    let mut b = Harness::new("beta").await;
    b.host = a.host.clone();
    b.engine_host = a.engine_host.clone();
    b.host_namespace = a.host_namespace.clone();
    a.start_engine();
    b.start_engine();
    for h in [&a, &b] {
        create_namespace(&h.virt, "shop").await;
        let cms: Api<ConfigMap> = h.virt_api("shop");
        cms.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "cfg"}, "data": {"tenant": h.tenant}})),
        )
        .await
        .unwrap();
        let pods: Api<Pod> = h.virt_api("shop");
        pods.create(&PostParams::default(), &pod_using("web", "cfg"))
            .await
            .unwrap();
    }
    let hcm: Api<ConfigMap> = a.host_api();
    for h in [&a, &b] {
        let cm = exists(&hcm, &h.host_name("shop", "cfg")).await;
        assert_eq!(cm.data.unwrap()["tenant"], h.tenant);
        assert_eq!(cm.metadata.labels.unwrap()[markers::MANAGED_BY], h.tenant);
    }
    // Beta's pod goes away; alpha's stays.
    let bp: Api<Pod> = b.virt_api("shop");
    bp.delete("web", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let hp: Api<Pod> = a.host_api();
    let beta_pod = b.host_name("shop", "web");
    wait_for(WAIT, "beta's host pod to go", || {
        let (hp, n) = (hp.clone(), beta_pod.clone());
        async move {
            hp.get_opt(&n)
                .await
                .ok()
                .and_then(|p| p.is_none().then_some(()))
        }
    })
    .await;
    assert!(
        hp.get_opt(&a.host_name("shop", "web"))
            .await
            .unwrap()
            .is_some(),
        "alpha's pod is untouched"
    );
    a.stop_engine().await;
    b.stop_engine().await;
}

#[tokio::test]
async fn names_that_collide_under_vclusters_scheme_stay_apart() {
    let mut h = Harness::new("names").await;
    h.start_engine();
    // (a, ns b-x-c) and (a-x-b, ns c) collide as vcluster names; here they are two objects.
    for (ns, name) in [("b-x-c", "a"), ("c", "a-x-b")] {
        create_namespace(&h.virt, ns).await;
        let cms: Api<ConfigMap> = h.virt_api(ns);
        cms.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "cfg"}, "data": {"from": ns}})),
        )
        .await
        .unwrap();
        let pods: Api<Pod> = h.virt_api(ns);
        pods.create(&PostParams::default(), &pod_using(name, "cfg"))
            .await
            .unwrap();
    }
    let hp: Api<Pod> = h.host_api();
    let p1 = exists(&hp, &h.host_name("b-x-c", "a")).await;
    let p2 = exists(&hp, &h.host_name("c", "a-x-b")).await;
    assert_ne!(p1.metadata.name, p2.metadata.name);
    // A maximum-length name falls back to a hashed, valid host name.
    let long = "x".repeat(63);
    let pods: Api<Pod> = h.virt_api("c");
    pods.create(&PostParams::default(), &pod_using(&long, "cfg"))
        .await
        .unwrap();
    let hn = h.host_name("c", &long);
    assert!(hn.len() <= 253);
    exists(&hp, &hn).await;
    h.stop_engine().await;
}
