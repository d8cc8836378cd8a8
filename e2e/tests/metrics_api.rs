//! vcsync's `metrics.k8s.io` API for the virtual cluster, called directly as the virtual API
//! server's aggregator would: over TLS with the front-proxy client certificate of the virtual
//! server's PKI (k3s `client-auth-proxy.crt`) and the end user in `X-Remote-User`. The host
//! test server serves `PodMetrics` like metrics-server, with each container's usage equal to
//! its requests, so the figures shown are known.
//!
//! Also: vcsync's registration (Service, Endpoints, APIService) in the virtual cluster.
//!
//! `kubectl top` through the virtual API server's aggregator is `kubectl_top.rs`.

use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use vcsync_e2e::apiserver::ServerConfig;
use vcsync_e2e::harness::Harness;
use vcsync_e2e::kubelet::ClientCertPem;
use vcsync_e2e::kubelet::api_server::client::KubeletClient;
use vcsync_e2e::testutil::wait_for;

const WAIT: Duration = Duration::from_secs(60);
const LIMITED_TOKEN: &str = "limited-team-b-token";

fn pod(name: &str, labels: Value, cpu: &str, memory: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "busybox",
            "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}
    }))
    .unwrap()
}

async fn call(
    client: &KubeletClient,
    path: &str,
    user: Option<&str>,
) -> Result<(StatusCode, Value), String> {
    let headers: Vec<(&str, &str)> = user
        .map(|u| {
            vec![
                ("X-Remote-User", u),
                ("X-Remote-Group", "system:authenticated"),
            ]
        })
        .unwrap_or_default();
    let resp = client.request(Method::GET, path, &headers).await?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let v = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "{status}: not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    Ok((status, v))
}

/// `(namespace, name, cpu, memory)` of each item of a `PodMetricsList`.
fn items(list: &Value) -> Vec<(String, String, String, String)> {
    assert_eq!(list["kind"], "PodMetricsList", "{list}");
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let u = &i["containers"][0]["usage"];
            (
                i["metadata"]["namespace"].as_str().unwrap().to_owned(),
                i["metadata"]["name"].as_str().unwrap().to_owned(),
                u["cpu"].as_str().unwrap().to_owned(),
                u["memory"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn row(ns: &str, name: &str, cpu: &str, mem: &str) -> (String, String, String, String) {
    (ns.into(), name.into(), cpu.into(), mem.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_api_shows_only_this_tenants_pods_to_authorized_users() {
    let mut h = Harness::with_virtual_config(
        "top",
        ServerConfig {
            namespaced_token: Some((LIMITED_TOKEN.into(), "team-b".into())),
            ..ServerConfig::default()
        },
    )
    .await;
    let Some(vs) = h.virtual_server.as_ref() else {
        panic!(
            "this test calls the in-process engine's metrics API; it needs the test API servers"
        );
    };
    let tls = vs.tls().clone();
    let server_ca = h
        .k3s_tls()
        .map(|p| std::fs::read_to_string(&p.server_ca_crt).unwrap())
        .unwrap();
    h.start_engine();

    // The tenant's pods, in two virtual namespaces.
    let nss: Api<Namespace> = Api::all(h.virt.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "team-b"}})).unwrap(),
    )
    .await
    .unwrap();
    for api in [
        h.virt_api::<ServiceAccount>("team-b"),
        h.host_api::<ServiceAccount>(),
    ] {
        wait_for(WAIT, "the default service account", || async {
            api.get_opt("default").await.ok().flatten()
        })
        .await;
    }
    h.virt_api::<Pod>("default")
        .create(
            &PostParams::default(),
            &pod("web", json!({"app": "web"}), "150m", "20Mi"),
        )
        .await
        .unwrap();
    h.virt_api::<Pod>("team-b")
        .create(
            &PostParams::default(),
            &pod("db", json!({"app": "db"}), "250m", "30Mi"),
        )
        .await
        .unwrap();
    // Host pods that are not this tenant's: an unmanaged one, and one claiming the tenant's
    // virtual pod under another tenant's label.
    let host_pods: Api<Pod> = h.host_api();
    host_pods
        .create(
            &PostParams::default(),
            &pod("intruder", json!({"app": "web"}), "900m", "90Mi"),
        )
        .await
        .unwrap();
    let mut impostor = pod(
        "impostor",
        json!({"vcsync.io/managed-by": "other"}),
        "800m",
        "80Mi",
    );
    impostor.metadata.annotations = Some(
        [
            ("vcsync.io/namespace", "default"),
            ("vcsync.io/name", "web"),
            ("vcsync.io/uid", "not-the-uid"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    );
    host_pods
        .create(&PostParams::default(), &impostor)
        .await
        .unwrap();

    // The substrate shows all four on the host, so hiding two is vcsync's doing.
    let host_metrics = format!(
        "/apis/metrics.k8s.io/v1beta1/namespaces/{}/pods",
        h.host_namespace
    );
    wait_for(WAIT, "host PodMetrics of all four pods", || async {
        let req = http::Request::get(&host_metrics).body(Vec::new()).unwrap();
        let list: Value = h.host.request(req).await.ok()?;
        (list["items"].as_array()?.len() == 4).then_some(())
    })
    .await;

    let addr = h.metrics_api_addr().expect("the metrics API is bound");
    let proxy_cert = ClientCertPem {
        cert_pem: tls.auth_proxy_cert_pem.clone(),
        key_pem: tls.auth_proxy_key_pem.clone(),
    };
    let proxy = KubeletClient::new(addr, &server_ca, Some(&proxy_cert)).unwrap();

    // Discovery, as metrics-server serves it.
    let (s, v) = call(&proxy, "/apis/metrics.k8s.io/v1beta1", Some("admin"))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["resources"][0]["name"], "nodes", "{v}");
    assert_eq!(v["resources"][1]["name"], "pods", "{v}");

    // The tenant's pods under their virtual names, with the substrate's figures.
    let all = wait_for(WAIT, "both tenant pods in the metrics API", || async {
        let (s, v) = call(&proxy, "/apis/metrics.k8s.io/v1beta1/pods", Some("admin"))
            .await
            .ok()?;
        (s == StatusCode::OK && items(&v).len() == 2).then_some(v)
    })
    .await;
    assert_eq!(
        items(&all),
        [
            row("default", "web", "150m", "20Mi"),
            row("team-b", "db", "250m", "30Mi")
        ]
    );
    assert_eq!(all["items"][0]["metadata"]["labels"], json!({"app": "web"}));
    let (s, v) = call(
        &proxy,
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods",
        Some("admin"),
    )
    .await
    .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(items(&v), [row("default", "web", "150m", "20Mi")]);
    let (s, v) = call(
        &proxy,
        "/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Ddb",
        Some("admin"),
    )
    .await
    .unwrap();
    assert_eq!(
        (s, items(&v)),
        (StatusCode::OK, vec![row("team-b", "db", "250m", "30Mi")])
    );
    let (s, v) = call(
        &proxy,
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web",
        Some("admin"),
    )
    .await
    .unwrap();
    assert_eq!(
        (s, &v["kind"], &v["metadata"]["name"]),
        (StatusCode::OK, &json!("PodMetrics"), &json!("web"))
    );
    // Host names never resolve, not even the unmanaged pod's.
    for name in ["intruder", "impostor", &h.host_name("default", "web")] {
        let (s, v) = call(
            &proxy,
            &format!("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/{name}"),
            Some("admin"),
        )
        .await
        .unwrap();
        assert_eq!(
            (s, &v["reason"]),
            (StatusCode::NOT_FOUND, &json!("NotFound")),
            "{name}: {v}"
        );
    }
    // Node metrics: the tenant's virtual nodes, never a node name the tenant has no pod on.
    let (s, v) = call(&proxy, "/apis/metrics.k8s.io/v1beta1/nodes", Some("admin"))
        .await
        .unwrap();
    assert_eq!(
        (s, &v["kind"]),
        (StatusCode::OK, &json!("NodeMetricsList")),
        "{v}"
    );
    let (s, v) = call(
        &proxy,
        "/apis/metrics.k8s.io/v1beta1/nodes/no-such-node",
        Some("admin"),
    )
    .await
    .unwrap();
    assert_eq!(
        (s, &v["reason"]),
        (StatusCode::NOT_FOUND, &json!("NotFound")),
        "{v}"
    );

    // Authorization is the virtual API's: a user limited to team-b sees team-b only.
    let limited = "system:serviceaccount:team-b:limited";
    let (s, v) = call(
        &proxy,
        "/apis/metrics.k8s.io/v1beta1/namespaces/team-b/pods",
        Some(limited),
    )
    .await
    .unwrap();
    assert_eq!(
        (s, items(&v)),
        (StatusCode::OK, vec![row("team-b", "db", "250m", "30Mi")])
    );
    for path in [
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods",
        "/apis/metrics.k8s.io/v1beta1/pods",
    ] {
        let (s, v) = call(&proxy, path, Some(limited)).await.unwrap();
        assert_eq!(
            (s, &v["kind"], &v["reason"]),
            (StatusCode::FORBIDDEN, &json!("Status"), &json!("Forbidden")),
            "{path}: {v}"
        );
    }
    let (s, v) = call(&proxy, "/apis/metrics.k8s.io/v1beta1/pods", Some("mallory"))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v["message"].as_str().unwrap().contains("mallory"), "{v}");
    // The front proxy must name a user.
    let (s, v) = call(&proxy, "/apis/metrics.k8s.io/v1beta1/pods", None)
        .await
        .unwrap();
    assert_eq!(
        (s, &v["reason"]),
        (StatusCode::UNAUTHORIZED, &json!("Unauthorized"))
    );

    // Callers that are not the front proxy: their X-Remote-User is not believed.
    let anonymous = KubeletClient::new(addr, &server_ca, None).unwrap();
    let (s, v) = call(
        &anonymous,
        "/apis/metrics.k8s.io/v1beta1/pods",
        Some("admin"),
    )
    .await
    .unwrap();
    assert_eq!(
        (s, &v["code"]),
        (StatusCode::UNAUTHORIZED, &json!(401)),
        "{v}"
    );
    let (cert_pem, key_pem) = tls.sign_request_header_client_cert("someone-else").unwrap();
    let wrong_name =
        KubeletClient::new(addr, &server_ca, Some(&ClientCertPem { cert_pem, key_pem })).unwrap();
    let (s, _) = call(
        &wrong_name,
        "/apis/metrics.k8s.io/v1beta1/pods",
        Some("admin"),
    )
    .await
    .unwrap();
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The right name from another CA (the client CA that signs every other k3s identity)
    // fails the handshake.
    let (cert_pem, key_pem) = tls.sign_client_cert("system:auth-proxy", &[]).unwrap();
    let other_ca =
        KubeletClient::new(addr, &server_ca, Some(&ClientCertPem { cert_pem, key_pem })).unwrap();
    assert!(
        call(
            &other_ca,
            "/apis/metrics.k8s.io/v1beta1/pods",
            Some("admin")
        )
        .await
        .is_err()
    );

    h.stop_engine().await;
}

/// vcsync registers its metrics API in the virtual cluster as metrics-server's manifests do
/// (selector-less Service, Endpoints at the listener, APIService with the serving CA), keeps
/// it converged, and does not re-write it when it is as desired.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_api_is_registered_in_the_virtual_cluster() {
    use k8s_openapi::api::core::v1::{Endpoints, Service};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
    use vcsync::metrics_api::register;

    let mut h = Harness::new("reg").await;
    assert!(
        h.virtual_server.is_some(),
        "this test runs the in-process engine's metrics API; it needs the test API servers"
    );
    let server_ca = std::fs::read(&h.k3s_tls().unwrap().server_ca_crt).unwrap();
    h.start_engine();
    let addr = wait_for(WAIT, "the metrics API to be bound", || async {
        h.metrics_api_addr()
    })
    .await;

    let api_services: Api<APIService> = Api::all(h.virt.clone());
    // Read once the virtual server's aggregator has found it available: its status write
    // changes the resourceVersion compared below.
    let a = wait_for(
        WAIT,
        "the APIService v1beta1.metrics.k8s.io, available",
        || async {
            let a = api_services
                .get_opt("v1beta1.metrics.k8s.io")
                .await
                .unwrap()?;
            let available = a
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Available" && c.status == "True");
            available.then_some(a)
        },
    )
    .await;
    let spec = a.spec.clone().unwrap();
    assert_eq!(spec.group.as_deref(), Some("metrics.k8s.io"));
    assert_eq!(spec.version.as_deref(), Some("v1beta1"));
    assert_eq!(
        (spec.group_priority_minimum, spec.version_priority),
        (100, 100)
    );
    assert_eq!(spec.ca_bundle.map(|b| b.0), Some(server_ca));
    assert_eq!(spec.insecure_skip_tls_verify, None);
    let svc_ref = spec.service.unwrap();
    assert_eq!(
        (
            svc_ref.namespace.as_deref(),
            svc_ref.name.as_deref(),
            svc_ref.port
        ),
        (Some("kube-system"), Some("vcsync-metrics"), Some(443))
    );

    let services = h.virt_api::<Service>("kube-system");
    let s = wait_for(WAIT, "the Service kube-system/vcsync-metrics", || async {
        services.get_opt("vcsync-metrics").await.unwrap()
    })
    .await;
    let sspec = s.spec.clone().unwrap();
    assert_eq!(sspec.selector, None, "selector-less, like metrics-server's");
    let port = &sspec.ports.unwrap()[0];
    assert_eq!(
        (port.port, port.target_port.clone()),
        (443, Some(IntOrString::Int(i32::from(addr.port()))))
    );
    let endpoints = h.virt_api::<Endpoints>("kube-system");
    let e = wait_for(WAIT, "the Endpoints kube-system/vcsync-metrics", || async {
        endpoints.get_opt("vcsync-metrics").await.unwrap()
    })
    .await;
    let subset = &e.subsets.clone().unwrap()[0];
    assert_eq!(
        subset.addresses.as_ref().unwrap()[0].ip,
        addr.ip().to_string()
    );
    assert_eq!(
        subset.ports.as_ref().unwrap()[0].port,
        i32::from(addr.port())
    );

    // Another round over converged objects writes nothing.
    let reg = register::registration(&h.tenant, &h.metrics_api_config().unwrap(), addr.port())
        .map(|mut r| {
            r.address = addr.ip();
            r
        })
        .unwrap();
    let want = register::desired(&reg);
    let versions = |a: &APIService, s: &Service, e: &Endpoints| {
        (
            a.metadata.resource_version.clone(),
            s.metadata.resource_version.clone(),
            e.metadata.resource_version.clone(),
        )
    };
    let before = versions(&a, &s, &e);
    let errors = register::converge(&h.virt, &h.tenant, &want).await;
    assert!(errors.is_empty(), "{errors:?}");
    let now = (
        api_services.get("v1beta1.metrics.k8s.io").await.unwrap(),
        services.get("vcsync-metrics").await.unwrap(),
        endpoints.get("vcsync-metrics").await.unwrap(),
    );
    assert_eq!(
        versions(&now.0, &now.1, &now.2),
        before,
        "nothing re-written"
    );

    // A changed APIService is put back.
    let mut drifted = now.0.clone();
    let dspec = drifted.spec.as_mut().unwrap();
    dspec.ca_bundle = None;
    dspec.insecure_skip_tls_verify = Some(true);
    api_services
        .replace("v1beta1.metrics.k8s.io", &PostParams::default(), &drifted)
        .await
        .unwrap();
    let errors = register::converge(&h.virt, &h.tenant, &want).await;
    assert!(errors.is_empty(), "{errors:?}");
    let back = api_services.get("v1beta1.metrics.k8s.io").await.unwrap();
    assert_eq!(back.spec, want.api_service.spec);
    h.stop_engine().await;
}
