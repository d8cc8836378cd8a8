//! PersistentVolumeClaim and PersistentVolume validation (`ValidatePersistentVolumeClaim`,
//! `ValidatePersistentVolumeClaimUpdate`, `ValidatePersistentVolume`), the parts clients meet:
//! required access modes and storage request, and the claim's immutable spec.
//!
//! kube-apiserver v1.32 allows, on update of a claim, only: `spec.volumeName` set once (the
//! binder), `spec.resources.requests` of a **bound** claim (the storage request may not go
//! down), and `spec.volumeAttributesClassName`. Anything else is
//! `spec: Forbidden: spec is immutable after creation except resources.requests and
//! volumeAttributesClassName for bound claims`.

use serde_json::Value;

use super::meta::{validate_object_meta, validate_object_meta_update};
use super::{arr_at, forbidden, get, names, not_supported, required, str_at};
use crate::apiserver::admission::quantity::Quantity;
use crate::apiserver::errors::FieldError;

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

const IMMUTABLE: &str = "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims";

fn access_modes(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let modes = arr_at(spec, &["accessModes"]);
    if modes.is_empty() {
        errs.push(required(
            format!("{path}.accessModes"),
            "at least 1 access mode is required",
        ));
    }
    for m in modes {
        let s = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&s) {
            errs.push(not_supported(
                format!("{path}.accessModes"),
                super::render(m),
                ACCESS_MODES,
            ));
        }
    }
    if modes.iter().any(|m| m == "ReadWriteOncePod") && modes.len() > 1 {
        errs.push(forbidden(
            format!("{path}.accessModes"),
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

/// `ValidatePersistentVolumeClaim`.
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, true, names::name_is_dns_subdomain, "metadata");
    let spec = get(obj, &["spec"]).cloned().unwrap_or(Value::Null);
    access_modes(&spec, "spec", &mut errs);
    match get(&spec, &["resources", "requests", "storage"]) {
        None => errs.push(required("spec.resources[storage]", "")),
        Some(q) => match q.as_str().and_then(Quantity::parse) {
            Some(q) if q > Quantity::zero() => {}
            _ => errs.push(FieldError::invalid(
                "spec.resources[storage]",
                q,
                "must be greater than zero",
            )),
        },
    }
    errs
}

/// `ValidatePersistentVolumeClaimUpdate`.
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(new, old, "metadata");
    let mut new_spec = get(new, &["spec"]).cloned().unwrap_or(Value::Null);
    let mut old_spec = get(old, &["spec"]).cloned().unwrap_or(Value::Null);
    // The binder sets volumeName once.
    if str_at(&old_spec, &["volumeName"]).is_empty() {
        old_spec["volumeName"] = new_spec["volumeName"].clone();
    }
    old_spec["volumeAttributesClassName"] = new_spec["volumeAttributesClassName"].clone();
    let bound = str_at(old, &["status", "phase"]) == "Bound";
    let storage = |s: &Value| {
        get(s, &["resources", "requests", "storage"])
            .and_then(Value::as_str)
            .and_then(Quantity::parse)
    };
    let (old_size, new_size) = (storage(&old_spec), storage(&new_spec));
    if bound {
        // Requests may change on a bound claim (only the storage request matters here).
        old_spec["resources"]["requests"] = new_spec["resources"]["requests"].clone();
    }
    for s in [&mut new_spec, &mut old_spec] {
        if let Some(m) = s.as_object_mut() {
            m.retain(|_, v| !v.is_null());
        }
    }
    if new_spec != old_spec {
        errs.push(forbidden("spec", IMMUTABLE));
    }
    if bound
        && let (Some(o), Some(n)) = (old_size, new_size)
        && n < o
    {
        errs.push(forbidden(
            "spec.resources.requests.storage",
            "field can not be less than status.capacity",
        ));
    }
    errs.extend(validate(new));
    errs
}

/// `ValidatePersistentVolume` (the required fields; sources are not inspected beyond "one").
pub fn validate_pv(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, false, names::name_is_dns_subdomain, "metadata");
    let spec = get(obj, &["spec"]).cloned().unwrap_or(Value::Null);
    access_modes(&spec, "spec", &mut errs);
    if get(&spec, &["capacity", "storage"]).is_none() {
        errs.push(required("spec.capacity", ""));
    }
    const NOT_SOURCES: &[&str] = &[
        "capacity",
        "accessModes",
        "claimRef",
        "persistentVolumeReclaimPolicy",
        "storageClassName",
        "mountOptions",
        "volumeMode",
        "nodeAffinity",
        "volumeAttributesClassName",
    ];
    let sources = spec
        .as_object()
        .map(|m| {
            m.keys()
                .filter(|k| !NOT_SOURCES.contains(&k.as_str()))
                .count()
        })
        .unwrap_or(0);
    if sources == 0 {
        errs.push(required("spec", "must specify a volume type"));
    } else if sources > 1 {
        errs.push(forbidden("spec", "may not specify more than 1 volume type"));
    }
    errs
}

/// `ValidatePersistentVolumeUpdate`: the volume mode and source stay; the rest may change.
pub fn validate_pv_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(new, old, "metadata");
    if get(new, &["spec", "volumeMode"]) != get(old, &["spec", "volumeMode"]) {
        errs.push(FieldError::invalid(
            "spec.volumeMode",
            get(new, &["spec", "volumeMode"]).unwrap_or(&Value::Null),
            "field is immutable",
        ));
    }
    errs.extend(validate_pv(new));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pvc(spec: Value, phase: &str) -> Value {
        json!({"metadata": {"name": "c", "namespace": "d", "resourceVersion": "1"}, "spec": spec, "status": {"phase": phase}})
    }

    fn base() -> Value {
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "fast", "volumeMode": "Filesystem"})
    }

    #[test]
    fn create_needs_modes_and_storage() {
        let errs = validate(&pvc(json!({}), "Pending"));
        let msgs: Vec<String> = errs.iter().map(FieldError::error_string).collect();
        assert_eq!(
            msgs,
            [
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value"
            ]
        );
        assert!(validate(&pvc(base(), "Pending")).is_empty());
    }

    #[test]
    fn update_rules() {
        let old = pvc(base(), "Bound");
        let mut grow = base();
        grow["resources"]["requests"]["storage"] = json!("2Gi");
        assert!(validate_update(&pvc(grow.clone(), "Bound"), &old).is_empty());
        // Not on a pending claim.
        let pending = pvc(base(), "Pending");
        assert_eq!(
            validate_update(&pvc(grow, "Pending"), &pending)[0].error_string(),
            format!("spec: Forbidden: {IMMUTABLE}")
        );
        let mut shrink = base();
        shrink["resources"]["requests"]["storage"] = json!("512Mi");
        assert_eq!(validate_update(&pvc(shrink, "Bound"), &old).len(), 1);
        let mut class = base();
        class["storageClassName"] = json!("slow");
        assert_eq!(validate_update(&pvc(class, "Bound"), &old).len(), 1);
        // volumeName once.
        let mut named = base();
        named["volumeName"] = json!("pv-1");
        assert!(validate_update(&pvc(named.clone(), "Pending"), &pending).is_empty());
        let mut renamed = base();
        renamed["volumeName"] = json!("pv-2");
        assert_eq!(
            validate_update(&pvc(renamed, "Bound"), &pvc(named, "Bound")).len(),
            1
        );
    }

    #[test]
    fn pv_needs_one_source() {
        let pv = |spec: Value| json!({"metadata": {"name": "pv"}, "spec": spec});
        let ok = json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "csi": {"driver": "d", "volumeHandle": "h"}});
        assert!(validate_pv(&pv(ok)).is_empty());
        let none = json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]});
        assert_eq!(
            validate_pv(&pv(none))[0].error_string(),
            "spec: Required value: must specify a volume type"
        );
    }
}
