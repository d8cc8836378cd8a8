//! The namespace controller's content deletion and status conditions, and the per-namespace
//! defaults (ServiceAccount `default`, ConfigMap `kube-root-ca.crt`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::apiserver::admission::put_direct;
use crate::apiserver::ops::{DeleteOpts, State, WriteCtx, now_rfc3339};
use crate::apiserver::resources::{self, ResourceDef};

const ROOT_CA: &str = "kube-root-ca.crt";
const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

fn def(plural: &str) -> &'static ResourceDef {
    resources::find("", "v1", plural).expect("core resource is served")
}

fn is_terminating(ns: &Value) -> bool {
    !ns["metadata"]["deletionTimestamp"].is_null() || ns["status"]["phase"] == "Terminating"
}

/// Ensure the default ServiceAccount and the root CA ConfigMap exist in an active namespace.
pub fn ensure_defaults(st: &mut State, ns: &str) {
    let Some(nsobj) = st.store.get("namespaces", "", ns) else {
        return;
    };
    if is_terminating(&nsobj) {
        return;
    }
    if st.store.get("serviceaccounts", ns, "default").is_none() {
        let ctx = WriteCtx::system("kube-controller-manager");
        let sa =
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
        if let Err(e) = st.create(def("serviceaccounts"), ns, sa, &ctx) {
            tracing::debug!(
                "serviceaccount controller: {ns}/default: {}",
                e.body["message"]
            );
        }
    }
    let want_data = json!({"ca.crt": st.ca_pem.clone()});
    match st.store.get("configmaps", ns, ROOT_CA) {
        None => {
            let ctx = WriteCtx::system("kube-controller-manager");
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": ROOT_CA, "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION}},
                "data": want_data});
            if let Err(e) = st.create(def("configmaps"), ns, cm, &ctx) {
                tracing::debug!("root-ca-cert-publisher: {ns}: {}", e.body["message"]);
            }
        }
        Some(cm) if cm["data"] != want_data && cm["metadata"]["deletionTimestamp"].is_null() => {
            let mut new = (*cm).clone();
            new["data"] = want_data;
            let ctx = WriteCtx::system("kube-controller-manager");
            let _ = st.update_from(def("configmaps"), ns, ROOT_CA, &cm, new, None, &ctx);
        }
        Some(_) => {}
    }
}

/// Namespaced resources with their own storage (events.k8s.io events share core's).
fn namespaced_defs() -> Vec<&'static ResourceDef> {
    let mut seen = BTreeSet::new();
    resources::RESOURCES
        .iter()
        .filter(|d| d.namespaced && seen.insert(d.storage))
        .collect()
}

fn condition(ty: &str, status: &str, reason: &str, message: &str, old: &Value, now: &str) -> Value {
    let prev = old["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == ty));
    let ltt = match prev {
        Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    json!({"type": ty, "status": status, "lastTransitionTime": ltt, "reason": reason, "message": message})
}

/// One pass of the namespace controller for a terminating namespace.
pub fn sync_terminating(st: &mut State, name: &str) {
    let Some(nsobj) = st.store.get("namespaces", "", name) else {
        return;
    };
    if nsobj["metadata"]["deletionTimestamp"].is_null() {
        return;
    }
    let has_kubernetes = nsobj["spec"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "kubernetes"));
    if has_kubernetes {
        let ctx = WriteCtx::system("kube-controller-manager");
        let defs = namespaced_defs();
        for d in &defs {
            let victims: Vec<String> = st
                .store
                .list(d.storage, Some(name))
                .filter(|o| o["metadata"]["deletionTimestamp"].is_null())
                .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
                .collect();
            for v in victims {
                let _ = st.delete(d, name, &v, &DeleteOpts::default(), &ctx);
            }
        }
        let mut remaining: Vec<String> = Vec::new();
        let mut finalizers: BTreeMap<String, usize> = BTreeMap::new();
        for d in &defs {
            let mut n = 0usize;
            for o in st.store.list(d.storage, Some(name)) {
                n += 1;
                for f in o["metadata"]["finalizers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    *finalizers.entry(f.to_string()).or_default() += 1;
                }
            }
            if n > 0 {
                remaining.push(format!(
                    "{}.{} has {n} resource instances",
                    d.plural, d.group
                ));
            }
        }
        if !remaining.is_empty() {
            remaining.sort();
            let now = now_rfc3339();
            let content = condition(
                "NamespaceContentRemaining",
                "True",
                "SomeResourcesRemain",
                &format!("Some resources are remaining: {}", remaining.join(", ")),
                &nsobj,
                &now,
            );
            let fin = if finalizers.is_empty() {
                condition(
                    "NamespaceFinalizersRemaining",
                    "False",
                    "ContentHasNoFinalizers",
                    "All content-preserving finalizers finished",
                    &nsobj,
                    &now,
                )
            } else {
                let parts: Vec<String> = finalizers
                    .iter()
                    .map(|(f, n)| format!("{f} in {n} resource instances"))
                    .collect();
                condition(
                    "NamespaceFinalizersRemaining",
                    "True",
                    "SomeFinalizersRemain",
                    &format!(
                        "Some content in the namespace has finalizers remaining: {}",
                        parts.join(", ")
                    ),
                    &nsobj,
                    &now,
                )
            };
            let conditions = json!([
                condition(
                    "NamespaceDeletionDiscoveryFailure",
                    "False",
                    "ResourcesDiscovered",
                    "All resources successfully discovered",
                    &nsobj,
                    &now
                ),
                condition(
                    "NamespaceDeletionGroupVersionParsingFailure",
                    "False",
                    "ParsedGroupVersions",
                    "All legacy kube types successfully parsed",
                    &nsobj,
                    &now
                ),
                condition(
                    "NamespaceDeletionContentFailure",
                    "False",
                    "ContentDeleted",
                    "All content successfully deleted, may be waiting on finalization",
                    &nsobj,
                    &now
                ),
                content,
                fin,
            ]);
            let Some(current) = st.store.get("namespaces", "", name) else {
                return;
            };
            if current["status"]["conditions"] != conditions {
                let mut new = (*current).clone();
                new["status"]["conditions"] = conditions;
                put_direct(st, "namespaces", "", name, new);
            }
            return;
        }
        // Empty: take the `kubernetes` finalizer off (the finalize subresource).
        let Some(current) = st.store.get("namespaces", "", name) else {
            return;
        };
        let mut new = (*current).clone();
        let rest: Vec<Value> = new["spec"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| *f != "kubernetes")
            .cloned()
            .collect();
        match new["spec"].as_object_mut() {
            Some(spec) if rest.is_empty() => {
                spec.remove("finalizers");
            }
            Some(spec) => {
                spec.insert("finalizers".into(), Value::Array(rest));
            }
            None => {}
        }
        put_direct(st, "namespaces", "", name, new);
    }
    let Some(current) = st.store.get("namespaces", "", name) else {
        return;
    };
    if current["spec"]["finalizers"]
        .as_array()
        .is_none_or(|f| f.is_empty())
    {
        st.finalize_if_done(def("namespaces"), "", name);
    }
}
