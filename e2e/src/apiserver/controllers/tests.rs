//! Controller passes driven by hand over a bare [`State`]: each test writes, then lets the
//! controllers settle (passes until one writes nothing) and checks the end state.

use serde_json::{Value, json};

use super::Controllers;
use crate::apiserver::ops::{DeleteOpts, State, WriteCtx};
use crate::apiserver::resources::{self, ResourceDef};
use crate::apiserver::server::ServerConfig;
use crate::apiserver::tls::TlsMaterial;

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

fn def(plural: &str) -> &'static ResourceDef {
    resources::RESOURCES
        .iter()
        .find(|d| d.plural == plural && d.group.is_empty())
        .unwrap()
}

fn ctx() -> WriteCtx {
    WriteCtx::system("test")
}

fn state() -> State {
    let tls = TlsMaterial {
        ca_pem: PEM.into(),
        ..Default::default()
    };
    let mut st = State::new(&ServerConfig::default(), &tls);
    for ns in ["default", "a"] {
        st.create(
            def("namespaces"),
            "",
            json!({"metadata": {"name": ns}}),
            &ctx(),
        )
        .unwrap();
    }
    st
}

/// Run passes until one writes nothing; panics if the controllers never settle.
fn settle(ctl: &mut Controllers, st: &mut State) {
    for _ in 0..20 {
        if !ctl.pass(st, false) {
            return;
        }
    }
    panic!("controllers did not settle");
}

fn get(st: &State, plural: &str, ns: &str, name: &str) -> Option<Value> {
    st.store
        .get(def(plural).storage, ns, name)
        .map(|v| (*v).clone())
}

fn cm(name: &str, extra: Value) -> Value {
    let mut m = json!({"name": name});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": m})
}

#[test]
fn namespace_defaults_appear() {
    let mut st = state();
    let mut ctl = Controllers::default();
    settle(&mut ctl, &mut st);
    assert!(get(&st, "serviceaccounts", "a", "default").is_some());
    let ca = get(&st, "configmaps", "a", "kube-root-ca.crt").unwrap();
    assert_eq!(ca["data"]["ca.crt"], PEM);
    assert!(
        ca["metadata"]["annotations"]["kubernetes.io/description"]
            .as_str()
            .unwrap()
            .starts_with("Contains a CA bundle")
    );
    // Deleting the default ServiceAccount brings it back.
    st.delete(
        def("serviceaccounts"),
        "a",
        "default",
        &DeleteOpts::default(),
        &ctx(),
    )
    .unwrap();
    settle(&mut ctl, &mut st);
    assert!(get(&st, "serviceaccounts", "a", "default").is_some());
}

#[test]
fn background_gc_collects_dependents() {
    let mut st = state();
    let mut ctl = Controllers::default();
    let owner = st
        .create(def("configmaps"), "a", cm("owner", json!({})), &ctx())
        .unwrap();
    let uid = owner["metadata"]["uid"].clone();
    st.create(def("configmaps"), "a", cm("child", json!({"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]})), &ctx())
        .unwrap();
    settle(&mut ctl, &mut st);
    assert!(get(&st, "configmaps", "a", "child").is_some());
    st.delete(
        def("configmaps"),
        "a",
        "owner",
        &DeleteOpts::default(),
        &ctx(),
    )
    .unwrap();
    settle(&mut ctl, &mut st);
    assert!(get(&st, "configmaps", "a", "child").is_none());
}

#[test]
fn foreground_waits_for_blocking_dependents() {
    let mut st = state();
    let mut ctl = Controllers::default();
    let owner = st
        .create(def("configmaps"), "a", cm("fg", json!({})), &ctx())
        .unwrap();
    let uid = owner["metadata"]["uid"].clone();
    st.create(
        def("configmaps"),
        "a",
        cm("fg-child", json!({"finalizers": ["conf.example.com/hold"], "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "fg", "uid": uid, "blockOwnerDeletion": true}]})),
        &ctx(),
    )
    .unwrap();
    settle(&mut ctl, &mut st);
    let opts = DeleteOpts {
        propagation: Some("Foreground".into()),
        ..DeleteOpts::default()
    };
    st.delete(def("configmaps"), "a", "fg", &opts, &ctx())
        .unwrap();
    settle(&mut ctl, &mut st);
    let child = get(&st, "configmaps", "a", "fg-child").unwrap();
    assert!(!child["metadata"]["deletionTimestamp"].is_null());
    let owner = get(&st, "configmaps", "a", "fg").unwrap();
    assert_eq!(
        owner["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    // Release the child: it goes, then the owner.
    let old = st.store.get("configmaps", "a", "fg-child").unwrap();
    let mut new = (*old).clone();
    new["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("finalizers");
    st.update_from(def("configmaps"), "a", "fg-child", &old, new, None, &ctx())
        .unwrap();
    settle(&mut ctl, &mut st);
    assert!(get(&st, "configmaps", "a", "fg-child").is_none());
    assert!(get(&st, "configmaps", "a", "fg").is_none());
}

#[test]
fn orphan_strips_references() {
    let mut st = state();
    let mut ctl = Controllers::default();
    let owner = st
        .create(def("configmaps"), "a", cm("or", json!({})), &ctx())
        .unwrap();
    let uid = owner["metadata"]["uid"].clone();
    st.create(def("configmaps"), "a", cm("or-child", json!({"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "or", "uid": uid}]})), &ctx())
        .unwrap();
    settle(&mut ctl, &mut st);
    let opts = DeleteOpts {
        propagation: Some("Orphan".into()),
        ..DeleteOpts::default()
    };
    st.delete(def("configmaps"), "a", "or", &opts, &ctx())
        .unwrap();
    settle(&mut ctl, &mut st);
    assert!(get(&st, "configmaps", "a", "or").is_none());
    let child = get(&st, "configmaps", "a", "or-child").unwrap();
    assert!(child["metadata"].get("ownerReferences").is_none());
}

#[test]
fn terminating_namespace_reports_then_goes() {
    let mut st = state();
    let mut ctl = Controllers::default();
    st.create(
        def("namespaces"),
        "",
        json!({"metadata": {"name": "c"}}),
        &ctx(),
    )
    .unwrap();
    settle(&mut ctl, &mut st);
    st.create(
        def("configmaps"),
        "c",
        cm("held", json!({"finalizers": ["conf.example.com/hold"]})),
        &ctx(),
    )
    .unwrap();
    st.delete(def("namespaces"), "", "c", &DeleteOpts::default(), &ctx())
        .unwrap();
    settle(&mut ctl, &mut st);
    let ns = get(&st, "namespaces", "", "c").unwrap();
    let conds = ns["status"]["conditions"].as_array().unwrap();
    let types: Vec<&str> = conds.iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        vec![
            "NamespaceDeletionDiscoveryFailure",
            "NamespaceDeletionGroupVersionParsingFailure",
            "NamespaceDeletionContentFailure",
            "NamespaceContentRemaining",
            "NamespaceFinalizersRemaining"
        ]
    );
    assert_eq!(
        conds[3]["message"],
        "Some resources are remaining: configmaps. has 1 resource instances"
    );
    assert_eq!(
        conds[4]["message"],
        "Some content in the namespace has finalizers remaining: conf.example.com/hold in 1 resource instances"
    );
    assert!(get(&st, "serviceaccounts", "c", "default").is_none());
    let old = st.store.get("configmaps", "c", "held").unwrap();
    let mut new = (*old).clone();
    new["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("finalizers");
    st.update_from(def("configmaps"), "c", "held", &old, new, None, &ctx())
        .unwrap();
    settle(&mut ctl, &mut st);
    assert!(get(&st, "namespaces", "", "c").is_none());
}

#[test]
fn node_gets_ttl_and_loses_not_ready_taint() {
    let mut st = state();
    let mut ctl = Controllers::default();
    let node = st
        .create(
            def("nodes"),
            "",
            json!({"metadata": {"name": "n1"}}),
            &ctx(),
        )
        .unwrap();
    assert_eq!(
        node["spec"]["taints"],
        json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])
    );
    settle(&mut ctl, &mut st);
    let node = get(&st, "nodes", "", "n1").unwrap();
    assert_eq!(
        node["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"],
        "0"
    );
    assert_eq!(node["spec"], json!({}));
}

#[test]
fn quota_status_is_filled() {
    let mut st = state();
    let mut ctl = Controllers::default();
    settle(&mut ctl, &mut st);
    let q = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "2", "secrets": "10", "count/leases.coordination.k8s.io": "3"}}});
    let created = st.create(def("resourcequotas"), "a", q, &ctx()).unwrap();
    assert_eq!(created["status"], json!({}));
    settle(&mut ctl, &mut st);
    let q = get(&st, "resourcequotas", "a", "q").unwrap();
    assert_eq!(
        q["status"]["hard"],
        json!({"pods": "2", "secrets": "10", "count/leases.coordination.k8s.io": "3"})
    );
    assert_eq!(
        q["status"]["used"],
        json!({"pods": "0", "secrets": "0", "count/leases.coordination.k8s.io": "0"})
    );
}

#[tokio::test]
async fn controllers_stop_promptly() {
    let mut server = crate::apiserver::TestApiServer::start(ServerConfig::default())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let ready = server
            .shared()
            .lock()
            .store
            .get("serviceaccounts", "default", "default")
            .is_some();
        if ready {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "default ServiceAccount never appeared"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::timeout(std::time::Duration::from_secs(5), server.stop())
        .await
        .expect("stop returns promptly");
}

fn claim(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

fn pod_using(name: &str, volume: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}], "volumes": [volume]}})
}

#[test]
fn pvc_protection_waits_for_the_pod_using_the_claim() {
    let mut st = state();
    let mut ctl = Controllers::default();
    settle(&mut ctl, &mut st);
    let created = st
        .create(def("persistentvolumeclaims"), "a", claim("data"), &ctx())
        .unwrap();
    assert_eq!(
        created["metadata"]["finalizers"],
        json!(["kubernetes.io/pvc-protection"]),
        "StorageObjectInUseProtection adds the finalizer"
    );
    st.create(
        def("pods"),
        "a",
        pod_using(
            "p",
            json!({"name": "v", "persistentVolumeClaim": {"claimName": "data"}}),
        ),
        &ctx(),
    )
    .unwrap();
    settle(&mut ctl, &mut st);
    st.delete(
        def("persistentvolumeclaims"),
        "a",
        "data",
        &DeleteOpts::default(),
        &ctx(),
    )
    .unwrap();
    settle(&mut ctl, &mut st);
    let held = get(&st, "persistentvolumeclaims", "a", "data").expect("kept while in use");
    assert!(!held["metadata"]["deletionTimestamp"].is_null());
    // A terminated pod no longer protects the claim.
    let mut pod = get(&st, "pods", "a", "p").unwrap();
    pod["status"]["phase"] = json!("Succeeded");
    let old = st.store.get("pods", "a", "p").unwrap();
    st.update_from(def("pods"), "a", "p", &old, pod, Some("status"), &ctx())
        .unwrap();
    settle(&mut ctl, &mut st);
    assert!(get(&st, "persistentvolumeclaims", "a", "data").is_none());
}

#[test]
fn ephemeral_volumes_get_one_owned_claim_each() {
    let mut st = state();
    let mut ctl = Controllers::default();
    settle(&mut ctl, &mut st);
    let pod = st
        .create(
            def("pods"),
            "a",
            pod_using(
                "web",
                json!({"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
                    "metadata": {"labels": {"x": "y"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}}),
            ),
            &ctx(),
        )
        .unwrap();
    settle(&mut ctl, &mut st);
    let c = get(&st, "persistentvolumeclaims", "a", "web-scratch").expect("the claim");
    assert_eq!(c["metadata"]["labels"]["x"], "y");
    let owner = &c["metadata"]["ownerReferences"][0];
    assert_eq!(owner["uid"], pod["metadata"]["uid"]);
    assert_eq!(owner["controller"], json!(true));
    assert_eq!(st.store.count("persistentvolumeclaims", Some("a")), 1);
}
