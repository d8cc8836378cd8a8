//! The other half of `tests/manifests.rs`: there, the Role must equal
//! [`HOST_PERMISSIONS`]; here, the sync engine runs a workload through its
//! whole life (create, status, update, delete) between two test API servers,
//! and every request it made to the host must be one [`HOST_PERMISSIONS`]
//! (or the optional [`OPTIONAL_CLUSTER_PERMISSIONS`]) lists. A new kind of
//! host request in `src/sync/` without a matching entry fails here.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::json;
use vcsync::permissions::{HOST_PERMISSIONS, OPTIONAL_CLUSTER_PERMISSIONS, Permission};
use vcsync_e2e::harness::{ENGINE_USER, Harness};
use vcsync_e2e::testutil::{create_namespace, wait_for};

const WAIT: Duration = Duration::from_secs(60);

fn obj<T: DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

async fn create<K>(api: &Api<K>, v: serde_json::Value)
where
    K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), &obj(v)).await.unwrap();
}

async fn host_count<K>(h: &Harness) -> usize
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    h.host_api::<K>()
        .list(&Default::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|o| {
                    o.meta()
                        .labels
                        .as_ref()
                        .is_some_and(|l| l.contains_key(vcsync::markers::MANAGED_BY))
                })
                .count()
        })
        .unwrap_or(0)
}

fn granted(list: &[Permission], resource: &str, verb: &str) -> bool {
    list.iter()
        .any(|p| p.resource == resource && p.verbs.contains(&verb))
}

#[tokio::test]
async fn every_host_request_of_the_engine_is_granted() {
    let mut h = Harness::new("perm").await;
    if h.host_server.is_none() {
        // Against real clusters there are no request counters.
        return;
    }
    create_namespace(&h.virt, "shop").await;
    h.start_engine();

    let ns = "shop";
    create::<ConfigMap>(
        &h.virt_api(ns),
        json!({"metadata": {"name": "conf"}, "data": {"k": "v"}}),
    )
    .await;
    create::<Secret>(
        &h.virt_api(ns),
        json!({"metadata": {"name": "creds"}, "stringData": {"k": "v"}}),
    )
    .await;
    create::<Secret>(
        &h.virt_api(ns),
        json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
               "stringData": {"tls.crt": "c", "tls.key": "k"}}),
    )
    .await;
    create::<Pod>(
        &h.virt_api(ns),
        json!({"metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"containers": [{"name": "c", "image": "nginx",
                   "envFrom": [{"configMapRef": {"name": "conf"}}, {"secretRef": {"name": "creds"}}]}]}}),
    )
    .await;
    create::<Service>(
        &h.virt_api(ns),
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .await;
    create::<Service>(
        &h.virt_api(ns),
        json!({"metadata": {"name": "ext"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    create::<Endpoints>(
        &h.virt_api(ns),
        json!({"metadata": {"name": "ext"}, "subsets": [{"addresses": [{"ip": "203.0.113.7"}], "ports": [{"port": 80}]}]}),
    )
    .await;
    create::<Ingress>(
        &h.virt_api(ns),
        json!({"metadata": {"name": "web"}, "spec": {
            "tls": [{"hosts": ["web.example.com"], "secretName": "tls"}],
            "rules": [{"host": "web.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
    )
    .await;
    create::<NetworkPolicy>(
        &h.virt_api(ns),
        json!({"metadata": {"name": "web"}, "spec": {"podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {}}]}]}}),
    )
    .await;

    // Mirrored down, and running (status flows up).
    wait_for(WAIT, "the workload on the host", || async {
        let ready = host_count::<Pod>(&h).await == 1
            && host_count::<Service>(&h).await == 2
            && host_count::<Ingress>(&h).await == 1
            && host_count::<NetworkPolicy>(&h).await == 1
            // The pod's projected token volume also references kube-root-ca.crt.
            && host_count::<ConfigMap>(&h).await >= 1;
        let vp: Api<Pod> = h.virt_api(ns);
        let running = vp
            .get("web")
            .await
            .ok()
            .and_then(|p| p.status?.phase)
            .is_some_and(|p| p == "Running");
        (ready && running).then_some(())
    })
    .await;

    // An update, then everything deleted.
    let vc: Api<ConfigMap> = h.virt_api(ns);
    vc.patch(
        "conf",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v2"}})),
    )
    .await
    .unwrap();
    let dp = DeleteParams::default();
    h.virt_api::<Ingress>(ns).delete("web", &dp).await.unwrap();
    h.virt_api::<NetworkPolicy>(ns)
        .delete("web", &dp)
        .await
        .unwrap();
    h.virt_api::<Service>(ns).delete("web", &dp).await.unwrap();
    h.virt_api::<Service>(ns).delete("ext", &dp).await.unwrap();
    h.virt_api::<Pod>(ns)
        .delete("web", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_for(WAIT, "the host namespace to empty", || async {
        let left = host_count::<Pod>(&h).await
            + host_count::<Service>(&h).await
            + host_count::<Ingress>(&h).await
            + host_count::<NetworkPolicy>(&h).await
            + host_count::<ConfigMap>(&h).await;
        (left == 0).then_some(())
    })
    .await;
    h.wait_quiet(Duration::from_millis(500), Duration::from_secs(20))
        .await;
    h.stop_engine().await;

    let host_server = h.host_server.as_ref().unwrap();
    let mut seen = BTreeSet::new();
    let mut ungranted = Vec::new();
    for (count, n) in host_server.request_counts() {
        if count.user != ENGINE_USER || count.verb == "unknown" {
            continue;
        }
        // Discovery and /version carry no RBAC resource.
        if count.resource == "discovery" {
            continue;
        }
        seen.insert(format!("{} {}", count.verb, count.resource));
        if !granted(HOST_PERMISSIONS, &count.resource, &count.verb)
            && !granted(OPTIONAL_CLUSTER_PERMISSIONS, &count.resource, &count.verb)
        {
            ungranted.push(format!("{} {} (x{n})", count.verb, count.resource));
        }
    }
    assert!(
        ungranted.is_empty(),
        "host requests not in permissions::HOST_PERMISSIONS: {ungranted:?}"
    );
    // The run really exercised the engine's writes (this test can fail).
    for want in [
        "create pods",
        "delete pods",
        "watch pods",
        "create services",
    ] {
        assert!(seen.contains(want), "{want} not seen in {seen:?}");
    }
}
