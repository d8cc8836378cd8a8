//! Namespace validation: DNS-1123 label names, spec finalizers, status phase.

use serde_json::Value;

use super::meta::{validate_object_meta, validate_object_meta_update};
use super::names;
use super::{get, invalid_str, str_at, strs_at};
use crate::apiserver::errors::FieldError;

/// `ValidateNamespace`.
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, false, names::validate_namespace_name, "metadata");
    for f in strs_at(obj, &["spec", "finalizers"]) {
        errs.extend(validate_finalizer_name(&f, "spec.finalizers"));
    }
    errs
}

/// Core `validateFinalizerName`: a qualified name, and standard unless it has a `/`.
pub fn validate_finalizer_name(f: &str, path: &str) -> Vec<FieldError> {
    let mut errs: Vec<FieldError> = names::is_qualified_name(f)
        .into_iter()
        .map(|m| invalid_str(path, f, m))
        .collect();
    if !f.contains('/') && !["kubernetes", "orphan", "foregroundDeletion"].contains(&f) {
        errs.push(invalid_str(
            path,
            f,
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
    errs
}

/// `ValidateNamespaceUpdate`.
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    validate_object_meta_update(new, old, "metadata")
}

/// `ValidateNamespaceStatusUpdate`: the phase follows the deletion timestamp.
pub fn validate_status_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(new, old, "metadata");
    let phase = str_at(new, &["status", "phase"]);
    if get(new, &["metadata", "deletionTimestamp"]).is_none() {
        if phase != "Active" {
            errs.push(invalid_str(
                "status.Phase",
                phase,
                "may only be 'Active' if `deletionTimestamp` is empty",
            ));
        }
    } else if phase != "Terminating" {
        errs.push(invalid_str(
            "status.Phase",
            phase,
            "may only be 'Terminating' if `deletionTimestamp` is not empty",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    #[rstest]
    #[case(json!({"metadata": {"name": "ok"}, "spec": {"finalizers": ["kubernetes"]}}), vec![])]
    #[case(json!({"metadata": {"name": "Bad_Name"}}), vec!["metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"])]
    #[case(json!({"metadata": {"name": "a.b"}}), vec!["metadata.name: Invalid value: \"a.b\": must not contain dots"])]
    #[case(json!({"metadata": {"name": "ok"}, "spec": {"finalizers": ["custom"]}}), vec!["spec.finalizers: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"])]
    fn create(#[case] obj: Value, #[case] want: Vec<&str>) {
        assert_eq!(
            validate(&obj)
                .iter()
                .map(FieldError::error_string)
                .collect::<Vec<_>>(),
            want
        );
    }

    #[test]
    fn status_phase() {
        let old = json!({"metadata": {"name": "n"}, "status": {"phase": "Active"}});
        let new = json!({"metadata": {"name": "n"}, "status": {"phase": "Terminating"}});
        assert_eq!(
            validate_status_update(&new, &old)
                .iter()
                .map(FieldError::error_string)
                .collect::<Vec<_>>(),
            vec![
                "status.Phase: Invalid value: \"Terminating\": may only be 'Active' if `deletionTimestamp` is empty"
            ]
        );
    }
}
