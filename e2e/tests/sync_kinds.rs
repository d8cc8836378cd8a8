//! End-to-end: services (ClusterIP equality, narrowed selectors), selector-less endpoints,
//! ingresses, and the configmaps/secrets pods reference.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::json;
use vcsync::markers;
use vcsync::translate::NameRule;
use vcsync_e2e::harness::Harness;
use vcsync_e2e::testutil::{create_namespace, wait_for};

const WAIT: Duration = Duration::from_secs(30);

fn obj<T: DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

async fn host_obj<K>(api: &Api<K>, name: &str) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    wait_for(WAIT, &format!("host object {name}"), || {
        let (api, name) = (api.clone(), name.to_string());
        async move { api.get_opt(&name).await.ok().flatten() }
    })
    .await
}

async fn host_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    wait_for(WAIT, &format!("host object {name} to be deleted"), || {
        let (api, name) = (api.clone(), name.to_string());
        async move {
            api.get_opt(&name)
                .await
                .ok()
                .and_then(|o| o.is_none().then_some(()))
        }
    })
    .await
}

#[tokio::test]
async fn services_keep_their_cluster_ip_and_select_only_the_tenants_pods() {
    let mut h = Harness::new("svc").await;
    create_namespace(&h.virt, "shop").await;
    h.start_engine();
    let vs: Api<Service> = h.virt_api("shop");
    let created = vs
        .create(&PostParams::default(), &obj(json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})))
        .await
        .unwrap();
    let vip = created.spec.unwrap().cluster_ip.unwrap();
    let host_name = vcsync::translate::host_name("svc", "shop", "web", NameRule::Dns1035Label);
    let hs: Api<Service> = h.host_api();
    let host = host_obj(&hs, &host_name).await;
    let spec = host.spec.unwrap();
    assert_eq!(
        spec.cluster_ip.as_deref(),
        Some(vip.as_str()),
        "host and virtual ClusterIPs are equal"
    );
    let sel = spec.selector.unwrap();
    assert_eq!(sel["app"], "web");
    assert_eq!(sel[markers::MANAGED_BY], "svc");
    assert_eq!(sel[markers::VIRTUAL_NAMESPACE_LABEL], "shop");

    // A selector change flows down; deleting the virtual service deletes the host one.
    vs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"selector": {"app": "web2"}}})),
    )
    .await
    .unwrap();
    wait_for(WAIT, "the new selector on the host", || {
        let (hs, host_name) = (hs.clone(), host_name.clone());
        async move {
            let s = hs.get(&host_name).await.ok()?;
            (s.spec?.selector?.get("app").map(String::as_str) == Some("web2")).then_some(())
        }
    })
    .await;
    vs.delete("web", &DeleteParams::default()).await.unwrap();
    host_gone(&hs, &host_name).await;
    h.stop_engine().await;
}

#[tokio::test]
async fn selectorless_endpoints_are_synced() {
    let mut h = Harness::new("eps").await;
    create_namespace(&h.virt, "db").await;
    h.start_engine();
    let vs: Api<Service> = h.virt_api("db");
    vs.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "ext"}, "spec": {"ports": [{"port": 5432}]}})),
    )
    .await
    .unwrap();
    let ve: Api<Endpoints> = h.virt_api("db");
    ve.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "ext"}, "subsets": [{"addresses": [{"ip": "10.1.2.3"}], "ports": [{"port": 5432}]}]})),
    )
    .await
    .unwrap();
    let host_name = vcsync::translate::host_name("eps", "db", "ext", NameRule::Dns1035Label);
    let he: Api<Endpoints> = h.host_api();
    let host = host_obj(&he, &host_name).await;
    assert_eq!(
        host.subsets.unwrap()[0].addresses.as_ref().unwrap()[0].ip,
        "10.1.2.3"
    );

    // A hand-made EndpointSlice of the same service follows, pointing at the host service.
    let vsl: Api<EndpointSlice> = h.virt_api("db");
    vsl.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "ext-1", "labels": {"kubernetes.io/service-name": "ext"}}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.1.2.4"]}], "ports": [{"port": 5432}]})),
    )
    .await
    .unwrap();
    let hsl: Api<EndpointSlice> = h.host_api();
    let slice = host_obj(&hsl, &h.host_name("db", "ext-1")).await;
    let labels = slice.metadata.labels.unwrap();
    assert_eq!(labels["kubernetes.io/service-name"], host_name);
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "vcsync.io"
    );
    assert_eq!(slice.endpoints.unwrap()[0].addresses, ["10.1.2.4"]);

    // Updates and deletes flow down too.
    ve.patch(
        "ext",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"subsets": [{"addresses": [{"ip": "10.1.2.9"}], "ports": [{"port": 5432}]}]}),
        ),
    )
    .await
    .unwrap();
    wait_for(WAIT, "the updated endpoints", || {
        let (he, n) = (he.clone(), host_name.clone());
        async move {
            (he.get(&n)
                .await
                .ok()?
                .subsets?
                .first()?
                .addresses
                .as_ref()?
                .first()?
                .ip
                == "10.1.2.9")
                .then_some(())
        }
    })
    .await;
    ve.delete("ext", &DeleteParams::default()).await.unwrap();
    host_gone(&he, &host_name).await;
    vsl.delete("ext-1", &DeleteParams::default()).await.unwrap();
    host_gone(&hsl, &h.host_name("db", "ext-1")).await;
    h.stop_engine().await;
}

#[tokio::test]
async fn referenced_configmaps_and_secrets_follow_their_pods() {
    let mut h = Harness::new("refs").await;
    create_namespace(&h.virt, "app").await;
    h.start_engine();
    let vcm: Api<ConfigMap> = h.virt_api("app");
    let vsec: Api<Secret> = h.virt_api("app");
    vcm.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "cfg"}, "data": {"mode": "fast"}})),
    )
    .await
    .unwrap();
    vcm.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "unused"}, "data": {"x": "y"}})),
    )
    .await
    .unwrap();
    vsec.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "creds"}, "stringData": {"password": "hunter2"}})),
    )
    .await
    .unwrap();
    let vp: Api<Pod> = h.virt_api("app");
    vp.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox",
            "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "creds"}}]}]}})),
    )
    .await
    .unwrap();
    let hcm: Api<ConfigMap> = h.host_api();
    let hsec: Api<Secret> = h.host_api();
    let cm_host = h.host_name("app", "cfg");
    let sec_host = h.host_name("app", "creds");
    assert_eq!(host_obj(&hcm, &cm_host).await.data.unwrap()["mode"], "fast");
    assert_eq!(
        host_obj(&hsec, &sec_host).await.data.unwrap()["password"].0,
        b"hunter2"
    );
    // The namespace's root CA configmap is referenced by every pod's token volume.
    host_obj(&hcm, &h.host_name("app", "kube-root-ca.crt")).await;
    assert!(
        hcm.get_opt(&h.host_name("app", "unused"))
            .await
            .unwrap()
            .is_none(),
        "unreferenced configmaps stay virtual"
    );

    // A change of the configmap flows down.
    vcm.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"mode": "slow"}})),
    )
    .await
    .unwrap();
    wait_for(WAIT, "the updated configmap on the host", || {
        let (hcm, n) = (hcm.clone(), cm_host.clone());
        async move { (hcm.get(&n).await.ok()?.data?.get("mode")? == "slow").then_some(()) }
    })
    .await;

    // Once no pod references them, the host copies go.
    vp.delete("p", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    host_gone(&hcm, &cm_host).await;
    host_gone(&hsec, &sec_host).await;
    h.stop_engine().await;
}

#[tokio::test]
async fn ingresses_point_at_host_services_and_secrets() {
    let mut h = Harness::new("ing").await;
    create_namespace(&h.virt, "web").await;
    h.start_engine();
    let vsec: Api<Secret> = h.virt_api("web");
    vsec.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "stringData": {"tls.crt": "c", "tls.key": "k"}})),
    )
    .await
    .unwrap();
    let vi: Api<Ingress> = h.virt_api("web");
    vi.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "site"}, "spec": {
            "tls": [{"hosts": ["a.example.com"], "secretName": "tls"}],
            "rules": [{"host": "a.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "frontend", "port": {"number": 80}}}}]}}]
        }})),
    )
    .await
    .unwrap();
    let hi: Api<Ingress> = h.host_api();
    let host = host_obj(&hi, &h.host_name("web", "site")).await;
    let spec = host.spec.unwrap();
    let backend = spec.rules.unwrap()[0].http.as_ref().unwrap().paths[0]
        .backend
        .service
        .clone()
        .unwrap();
    assert_eq!(
        backend.name,
        vcsync::translate::host_name("ing", "web", "frontend", NameRule::Dns1035Label)
    );
    let tls_name = spec.tls.unwrap()[0].secret_name.clone().unwrap();
    assert_eq!(tls_name, h.host_name("web", "tls"));
    let hsec: Api<Secret> = h.host_api();
    assert_eq!(
        host_obj(&hsec, &tls_name).await.type_.as_deref(),
        Some("kubernetes.io/tls")
    );

    // A host load balancer's address flows up; spec changes and deletes flow down.
    let host_name = h.host_name("web", "site");
    hi.patch_status(
        &host_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}})),
    )
    .await
    .unwrap();
    wait_for(
        WAIT,
        "the load balancer address on the virtual ingress",
        || {
            let vi = vi.clone();
            async move {
                (vi.get("site")
                    .await
                    .ok()?
                    .status?
                    .load_balancer?
                    .ingress?
                    .first()?
                    .ip
                    .as_deref()?
                    == "203.0.113.7")
                    .then_some(())
            }
        },
    )
    .await;
    vi.patch("site", &PatchParams::default(), &Patch::Merge(json!({"spec": {"rules": [{"host": "b.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "frontend", "port": {"number": 80}}}}]}}]}})))
        .await
        .unwrap();
    wait_for(WAIT, "the new host rule", || {
        let (hi, n) = (hi.clone(), host_name.clone());
        async move {
            (hi.get(&n)
                .await
                .ok()?
                .spec?
                .rules?
                .first()?
                .host
                .as_deref()?
                == "b.example.com")
                .then_some(())
        }
    })
    .await;
    vi.delete("site", &DeleteParams::default()).await.unwrap();
    host_gone(&hi, &host_name).await;
    h.stop_engine().await;
}

#[tokio::test]
async fn a_cluster_ip_the_host_refuses_is_replaced_by_the_hosts() {
    let mut h = Harness::new("ipfix").await;
    create_namespace(&h.virt, "shop").await;
    // On the host, the IP is already taken by someone else's service.
    let hs: Api<Service> = h.host_api();
    hs.create(&PostParams::default(), &obj(json!({"metadata": {"name": "squatter"}, "spec": {"clusterIP": "10.96.0.100", "ports": [{"port": 1}]}})))
        .await
        .unwrap();
    h.start_engine();
    let vs: Api<Service> = h.virt_api("shop");
    vs.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "web"}, "spec": {"clusterIP": "10.96.0.100", "selector": {"app": "web"}, "ports": [{"port": 80}]}})),
    )
    .await
    .unwrap();
    let host = host_obj(
        &hs,
        &vcsync::translate::host_name("ipfix", "shop", "web", NameRule::Dns1035Label),
    )
    .await;
    let host_ip = host.spec.unwrap().cluster_ip.unwrap();
    assert_ne!(host_ip, "10.96.0.100");
    wait_for(
        WAIT,
        "the virtual service to carry the host's ClusterIP",
        || {
            let (vs, host_ip) = (vs.clone(), host_ip.clone());
            async move { (vs.get("web").await.ok()?.spec?.cluster_ip? == host_ip).then_some(()) }
        },
    )
    .await;
    assert_eq!(
        hs.get("squatter")
            .await
            .unwrap()
            .spec
            .unwrap()
            .cluster_ip
            .as_deref(),
        Some("10.96.0.100"),
        "the other service is untouched"
    );
    h.stop_engine().await;
}
