//! End-to-end: every escape a tenant can try through the virtual API is refused under the
//! secure default policy — the host namespace stays clean, the tenant gets a `PolicyViolation`
//! event naming the rule — while well-behaved objects in the same namespace still sync.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use vcsync::markers;
use vcsync_e2e::harness::Harness;
use vcsync_e2e::testutil::{create_namespace, wait_for};

const WAIT: Duration = Duration::from_secs(30);

fn obj<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

fn pod(name: &str, spec: Value) -> Pod {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
    }
    obj(json!({"metadata": {"name": name}, "spec": spec}))
}

/// The PolicyViolation event on virtual object `name`, once it exists.
async fn violation(h: &Harness, ns: &str, name: &str) -> String {
    let events: Api<Event> = h.virt_api(ns);
    wait_for(WAIT, &format!("a PolicyViolation event on {name}"), || {
        let (events, name) = (events.clone(), name.to_string());
        async move {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find_map(|e| {
                    let about = e.regarding.as_ref()?.name.as_deref()? == name;
                    (about && e.reason.as_deref() == Some("PolicyViolation"))
                        .then(|| e.note.unwrap_or_default())
                })
        }
    })
    .await
}

#[tokio::test]
async fn escapes_are_refused_and_the_host_stays_clean() {
    let mut h = Harness::new("escape").await;
    // The secure defaults, as a platform would run an untrusted tenant.
    h.policy = vcsync::policy::Policy::default();
    create_namespace(&h.virt, "evil").await;
    h.start_engine();
    let pods: Api<Pod> = h.virt_api("evil");
    let escapes: Vec<(&str, Value, &str)> = vec![
        (
            "privileged",
            json!({"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}]}),
            "privileged",
        ),
        (
            "hostpath",
            json!({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
            "hostPath",
        ),
        (
            "hostnetwork",
            json!({"hostNetwork": true}),
            "host namespaces",
        ),
        ("hostpid", json!({"hostPID": true}), "host namespaces"),
        ("hostipc", json!({"hostIPC": true}), "host namespaces"),
        (
            "hostport",
            json!({"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80, "hostPort": 80}]}]}),
            "hostPort",
        ),
        (
            "caps",
            json!({"containers": [{"name": "c", "image": "busybox", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]}),
            "capabilities",
        ),
        (
            "runtimeclass",
            json!({"runtimeClassName": "host-runc"}),
            "runtime",
        ),
        (
            "priorityclass",
            json!({"priorityClassName": "system-node-critical"}),
            "priority",
        ),
    ];
    for (name, spec, _) in &escapes {
        pods.create(&PostParams::default(), &pod(name, spec.clone()))
            .await
            .unwrap();
    }
    // Not escapes but rewrites: a wildcard toleration is dropped, a pinned node is ignored.
    pods.create(
        &PostParams::default(),
        &pod("wildcard", json!({"tolerations": [{"operator": "Exists"}]})),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("pinned", json!({"nodeName": "control-plane-1"})),
    )
    .await
    .unwrap();
    // A reference to a secret by a host secret's name only ever means the tenant's own copy.
    h.host_api::<Secret>()
        .create(&PostParams::default(), &obj(json!({"metadata": {"name": "host-credentials"}, "stringData": {"token": "host-only"}})))
        .await
        .unwrap();
    pods.create(
        &PostParams::default(),
        &pod(
            "hostsecret",
            json!({"volumes": [{"name": "s", "secret": {"secretName": "host-credentials"}}]}),
        ),
    )
    .await
    .unwrap();
    // And a well-behaved pod in the same namespace.
    pods.create(&PostParams::default(), &pod("good", json!({})))
        .await
        .unwrap();

    let svcs: Api<Service> = h.virt_api("evil");
    svcs.create(&PostParams::default(), &obj(json!({"metadata": {"name": "extip"}, "spec": {"selector": {"a": "b"}, "ports": [{"port": 80}], "externalIPs": ["1.2.3.4"]}})))
        .await
        .unwrap();
    svcs.create(&PostParams::default(), &obj(json!({"metadata": {"name": "nodeport"}, "spec": {"type": "NodePort", "selector": {"a": "b"}, "ports": [{"port": 80}]}})))
        .await
        .unwrap();
    svcs.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "metadata"}, "spec": {"ports": [{"port": 80}]}})),
    )
    .await
    .unwrap();
    let eps: Api<Endpoints> = h.virt_api("evil");
    // The virtual API refuses link-local addresses itself; a tenant can still name a private one,
    // and the default policy allows none.
    eps.create(&PostParams::default(), &obj(json!({"metadata": {"name": "metadata"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]})))
        .await
        .unwrap();
    let ings: Api<Ingress> = h.virt_api("evil");
    let rule = |host: &str| json!([{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "good", "port": {"number": 80}}}}]}}]);
    ings.create(&PostParams::default(), &obj(json!({"metadata": {"name": "foreign"}, "spec": {"ingressClassName": "nginx", "rules": rule("admin.platform.example.com")}})))
        .await
        .unwrap();
    ings.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "snippet", "annotations": {"nginx.ingress.kubernetes.io/server-snippet": "location / { proxy_pass http://169.254.169.254; }"}},
            "spec": {"ingressClassName": "nginx", "rules": rule("shop.example.com")}})),
    )
    .await
    .unwrap();

    // Every escape is refused with a reason the tenant can read...
    for (name, _, expect) in &escapes {
        let note = violation(&h, "evil", name).await;
        assert!(
            note.to_lowercase().contains(&expect.to_lowercase()),
            "{name}: {note}"
        );
    }
    for name in ["extip", "nodeport"] {
        violation(&h, "evil", name).await;
    }
    violation(&h, "evil", "metadata").await;
    violation(&h, "evil", "foreign").await;
    violation(&h, "evil", "snippet").await;

    // ...the well-behaved and rewritten pods run...
    let hp: Api<Pod> = h.host_api();
    for name in ["good", "wildcard", "pinned", "hostsecret"] {
        let hn = h.host_name("evil", name);
        let p = wait_for(WAIT, &format!("host pod {name}"), || {
            let (hp, hn) = (hp.clone(), hn.clone());
            async move { hp.get_opt(&hn).await.ok().flatten() }
        })
        .await;
        let spec = p.spec.unwrap();
        assert!(
            spec.tolerations
                .unwrap_or_default()
                .iter()
                .all(|t| t.key.is_some()),
            "{name}: no wildcard toleration reaches the host"
        );
        assert_ne!(
            spec.node_name.as_deref(),
            Some("control-plane-1"),
            "{name}: the tenant's nodeName is not passed through"
        );
        if name == "hostsecret" {
            let vol = &spec.volumes.unwrap()[0];
            assert_eq!(
                vol.secret.as_ref().unwrap().secret_name.as_deref(),
                Some(h.host_name("evil", "host-credentials").as_str())
            );
        }
    }

    // ...and nothing refused reached the host: only the good pods and what they reference.
    for name in escapes.iter().map(|e| e.0) {
        assert!(
            hp.get_opt(&h.host_name("evil", name))
                .await
                .unwrap()
                .is_none(),
            "{name} reached the host"
        );
    }
    let tenant = ListParams::default().labels(&markers::tenant_selector("escape"));
    let svc_names: Vec<String> = h
        .host_api::<Service>()
        .list(&tenant)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    for refused in ["extip", "nodeport"] {
        let hn = vcsync::translate::host_name(
            "escape",
            "evil",
            refused,
            vcsync::translate::NameRule::Dns1035Label,
        );
        assert!(
            !svc_names.contains(&hn),
            "{refused} reached the host: {svc_names:?}"
        );
    }
    // The selector-less service itself is harmless and synced; its endpoints are not.
    assert!(
        h.host_api::<Endpoints>()
            .list(&tenant)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        h.host_api::<Ingress>()
            .list(&tenant)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let host_secret = h
        .host_api::<Secret>()
        .get("host-credentials")
        .await
        .unwrap();
    assert_eq!(
        host_secret.data.unwrap()["token"].0,
        b"host-only",
        "the host's own secret is untouched"
    );
    h.stop_engine().await;
}

#[tokio::test]
async fn a_fixed_object_syncs() {
    let mut h = Harness::new("fixit").await;
    h.policy = vcsync::policy::Policy::default();
    create_namespace(&h.virt, "app").await;
    h.start_engine();
    let cms: Api<ConfigMap> = h.virt_api("app");
    cms.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "cfg"}, "data": {"k": "v"}})),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = h.virt_api("app");
    // Refused, and so is syncing what only it references.
    pods.create(
        &PostParams::default(),
        &pod("p", json!({"hostNetwork": true, "containers": [{"name": "c", "image": "busybox", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]})),
    )
    .await
    .unwrap();
    violation(&h, "app", "p").await;
    assert!(
        h.host_api::<ConfigMap>()
            .get_opt(&h.host_name("app", "cfg"))
            .await
            .unwrap()
            .is_none()
    );
    // Pod specs are immutable: the tenant fixes it by re-creating it.
    pods.delete("p", &kube::api::DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("p", json!({"containers": [{"name": "c", "image": "busybox", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]})))
        .await
        .unwrap();
    let hp: Api<Pod> = h.host_api();
    let hn = h.host_name("app", "p");
    wait_for(WAIT, "the fixed pod on the host", || {
        let (hp, hn) = (hp.clone(), hn.clone());
        async move { hp.get_opt(&hn).await.ok().flatten() }
    })
    .await;
    let hcm: Api<ConfigMap> = h.host_api();
    let cm = h.host_name("app", "cfg");
    wait_for(WAIT, "its configmap on the host", || {
        let (hcm, cm) = (hcm.clone(), cm.clone());
        async move { hcm.get_opt(&cm).await.ok().flatten() }
    })
    .await;
    h.stop_engine().await;
}
