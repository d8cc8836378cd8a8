//! The volume controllers of kube-controller-manager that need no storage backend:
//!
//! * **pvc-protection**: a claim being deleted keeps `kubernetes.io/pvc-protection` while a
//!   scheduled pod that is not terminated (phase neither `Succeeded` nor `Failed`) uses it, by
//!   `persistentVolumeClaim.claimName` or as the claim of one of its generic ephemeral volumes;
//!   then the finalizer goes and the claim with it.
//! * **pv-protection**: a volume being deleted keeps `kubernetes.io/pv-protection` while a claim
//!   names it in `spec.volumeName`.
//! * **ephemeral**: for each generic ephemeral volume of a pod, the claim `<pod>-<volume>` is
//!   created from the template, owned by the pod (controller, blocking owner deletion), so the
//!   garbage collector deletes it with the pod.
//!
//! Binding and provisioning (the PV controller, external provisioners) are not here: the test
//! substrate's provisioner simulator does them through the API, as on a real cluster.

use serde_json::{Value, json};

use super::{Controllers, Key, gc, name_of};
use crate::apiserver::admission::{PV_PROTECTION, PVC_PROTECTION};
use crate::apiserver::ops::{State, WriteCtx};
use crate::apiserver::resources;
use crate::apiserver::store::EventType;

/// The claims pod `pod` uses: (claim name, whether it is an ephemeral volume's claim).
fn claims_of(pod: &Value) -> Vec<(String, bool)> {
    let pod_name = name_of(pod);
    pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            if let Some(c) = v["persistentVolumeClaim"]["claimName"].as_str() {
                Some((c.to_string(), false))
            } else if v["ephemeral"].is_object() {
                let vol = v["name"].as_str().unwrap_or("");
                Some((format!("{pod_name}-{vol}"), true))
            } else {
                None
            }
        })
        .collect()
}

fn terminated(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// Record the work a change brings.
pub(super) fn observe(c: &mut Controllers, storage: &str, ns: &str, obj: &Value, etype: EventType) {
    match storage {
        "persistentvolumeclaims" => {
            if gc::deleting(obj) && etype != EventType::Deleted {
                c.pvc_check
                    .insert(("persistentvolumeclaims", ns.to_string(), name_of(obj)));
            }
            if let Some(pv) = obj["spec"]["volumeName"].as_str().filter(|v| !v.is_empty()) {
                c.pv_check.insert(pv.to_string());
            }
            // A claim of an ephemeral volume deleted under a live pod is made again.
            if etype == EventType::Deleted
                && let Some(owner) = obj["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|r| r["kind"] == "Pod" && r["controller"] == json!(true))
                && let Some(pod) = owner["name"].as_str()
            {
                c.ephemeral
                    .insert(("pods", ns.to_string(), pod.to_string()));
            }
        }
        "persistentvolumes" if gc::deleting(obj) && etype != EventType::Deleted => {
            c.pv_check.insert(name_of(obj));
        }
        "pods" => {
            for (claim, _) in claims_of(obj) {
                c.pvc_check
                    .insert(("persistentvolumeclaims", ns.to_string(), claim));
            }
            if etype != EventType::Deleted && !gc::deleting(obj) {
                c.ephemeral.insert(("pods", ns.to_string(), name_of(obj)));
            }
        }
        _ => {}
    }
}

/// Do the queued work.
pub(super) fn work(c: &mut Controllers, st: &mut State) {
    for key in std::mem::take(&mut c.ephemeral) {
        ensure_ephemeral_claims(st, &key);
    }
    for key in std::mem::take(&mut c.pvc_check) {
        let Some(pvc) = st.store.get(key.0, &key.1, &key.2) else {
            continue;
        };
        if !gc::deleting(&pvc) || !gc::has_finalizer(&pvc, PVC_PROTECTION) {
            continue;
        }
        let in_use = st.store.list("pods", Some(&key.1)).any(|p| {
            p["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
                && !terminated(p)
                && claims_of(p).iter().any(|(c, _)| *c == key.2)
        });
        if !in_use {
            gc::remove_finalizer(st, &key, PVC_PROTECTION);
        }
    }
    for pv in std::mem::take(&mut c.pv_check) {
        let Some(obj) = st.store.get("persistentvolumes", "", &pv) else {
            continue;
        };
        if !gc::deleting(&obj) || !gc::has_finalizer(&obj, PV_PROTECTION) {
            continue;
        }
        let bound = st
            .store
            .list("persistentvolumeclaims", None)
            .any(|c| c["spec"]["volumeName"] == pv.as_str());
        if !bound {
            gc::remove_finalizer(st, &("persistentvolumes", String::new(), pv), PV_PROTECTION);
        }
    }
}

/// The ephemeral volume controller for one pod.
fn ensure_ephemeral_claims(st: &mut State, key: &Key) {
    let Some(pod) = st.store.get("pods", &key.1, &key.2) else {
        return;
    };
    if gc::deleting(&pod) {
        return;
    }
    let def = resources::find("", "v1", "persistentvolumeclaims").expect("claims are served");
    for vol in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let Some(template) = vol["ephemeral"]["volumeClaimTemplate"].as_object() else {
            continue;
        };
        let claim = format!("{}-{}", key.2, vol["name"].as_str().unwrap_or(""));
        if st.store.get(def.storage, &key.1, &claim).is_some() {
            // Someone else's claim of that name is the pod's problem (it will not start), not
            // something to overwrite.
            continue;
        }
        let mut meta = template
            .get("metadata")
            .cloned()
            .unwrap_or_else(|| json!({}));
        meta["name"] = json!(claim);
        meta["namespace"] = json!(key.1);
        meta["ownerReferences"] = json!([{
            "apiVersion": "v1",
            "kind": "Pod",
            "name": key.2,
            "uid": pod["metadata"]["uid"],
            "controller": true,
            "blockOwnerDeletion": true,
        }]);
        let obj = json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": meta,
            "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
        });
        if let Err(e) = st.create(
            def,
            &key.1,
            obj,
            &WriteCtx::system("ephemeral-volume-controller"),
        ) {
            tracing::debug!(
                "ephemeral volume controller: {}/{claim}: {}",
                key.1,
                e.body["message"]
            );
        }
    }
}
