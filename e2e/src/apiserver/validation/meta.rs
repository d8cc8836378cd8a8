//! `ObjectMeta` validation: apimachinery's `ValidateObjectMetaAccessor` /
//! `ValidateObjectMetaAccessorUpdate` plus the core API's extra finalizer-name rule.

use serde_json::Value;

use super::names::{self, NameFn};
use super::{
    arr_at, as_int, child, forbidden, get, go_quote, go_string_slice, index, invalid_raw,
    invalid_str, map_at, opt_int, required, str_at, strs_at, too_long,
};
use crate::apiserver::errors::FieldError;

/// `IsNegativeErrorMsg`.
pub const IS_NEGATIVE: &str = "must be greater than or equal to 0";
/// `FieldImmutableErrorMsg`.
pub const FIELD_IMMUTABLE: &str = "field is immutable";
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
const STANDARD_FINALIZERS: [&str; 3] = ["kubernetes", "orphan", "foregroundDeletion"];

/// Core `ValidateObjectMeta`: the apimachinery checks plus "standard or fully qualified"
/// finalizer names (indexed paths).
pub fn validate_object_meta(
    obj: &Value,
    namespaced: bool,
    name_fn: NameFn,
    path: &str,
) -> Vec<FieldError> {
    let meta = obj.get("metadata").unwrap_or(&Value::Null);
    let mut errs = validate_object_meta_accessor(meta, namespaced, name_fn, path);
    errs.extend(validate_kube_finalizers(meta, path));
    errs
}

/// apimachinery's `ValidateObjectMetaAccessor` with the URL path-segment name rule, as the generic
/// registry runs it after the kind's own validation passed.
pub fn validate_object_meta_generic(obj: &Value, namespaced: bool) -> Vec<FieldError> {
    let meta = obj.get("metadata").unwrap_or(&Value::Null);
    validate_object_meta_accessor(
        meta,
        namespaced,
        names::validate_path_segment_name,
        "metadata",
    )
}

/// Core `ValidateObjectMetaUpdate`: the apimachinery update checks plus the finalizer-name rule
/// on the new object.
pub fn validate_object_meta_update(new: &Value, old: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update_generic(new, old, path);
    errs.extend(validate_kube_finalizers(
        new.get("metadata").unwrap_or(&Value::Null),
        path,
    ));
    errs
}

/// apimachinery's `ValidateObjectMetaAccessorUpdate`. The `resourceVersion must be specified`
/// rule is left out: the server fills it in for unconditional updates before this runs.
pub fn validate_object_meta_update_generic(
    new: &Value,
    old: &Value,
    path: &str,
) -> Vec<FieldError> {
    let nm = new.get("metadata").unwrap_or(&Value::Null);
    let om = old.get("metadata").unwrap_or(&Value::Null);
    let mut errs = Vec::new();
    if get(om, &["deletionTimestamp"]).is_some() {
        let old_f = strs_at(om, &["finalizers"]);
        let mut extra: Vec<String> = strs_at(nm, &["finalizers"])
            .into_iter()
            .filter(|f| !old_f.contains(f))
            .collect();
        extra.sort();
        extra.dedup();
        if !extra.is_empty() {
            errs.push(forbidden(
                child(path, "finalizers"),
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    go_string_slice(&extra)
                ),
            ));
        }
    }
    let (ng, og) = (
        opt_int(nm, &["generation"]).unwrap_or(0),
        opt_int(om, &["generation"]).unwrap_or(0),
    );
    if ng < og {
        errs.push(invalid_raw(
            child(path, "generation"),
            ng.to_string(),
            "must not be decremented",
        ));
    }
    for f in ["name", "namespace", "uid"] {
        let (n, o) = (str_at(nm, &[f]), str_at(om, &[f]));
        if n != o {
            errs.push(invalid_str(child(path, f), n, FIELD_IMMUTABLE));
        }
    }
    for f in ["creationTimestamp", "deletionTimestamp"] {
        let (n, o) = (get(nm, &[f]), get(om, &[f]));
        if n != o {
            let rendered = match n.and_then(Value::as_str) {
                Some(t) => go_time(t),
                None if f == "creationTimestamp" => "0001-01-01 00:00:00 +0000 UTC".into(),
                None => "null".into(),
            };
            errs.push(invalid_raw(child(path, f), rendered, FIELD_IMMUTABLE));
        }
    }
    let (n, o) = (
        get(nm, &["deletionGracePeriodSeconds"]),
        get(om, &["deletionGracePeriodSeconds"]),
    );
    if n.and_then(as_int) != o.and_then(as_int) {
        let rendered = n.and_then(as_int).map_or("null".into(), |v| v.to_string());
        errs.push(invalid_raw(
            child(path, "deletionGracePeriodSeconds"),
            rendered,
            FIELD_IMMUTABLE,
        ));
    }
    errs.extend(validate_labels(nm, &["labels"], &child(path, "labels")));
    errs.extend(validate_annotations(nm, &child(path, "annotations")));
    errs.extend(validate_owner_references(
        nm,
        &child(path, "ownerReferences"),
    ));
    errs
}

fn validate_object_meta_accessor(
    meta: &Value,
    namespaced: bool,
    name_fn: NameFn,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let gen_name = str_at(meta, &["generateName"]);
    if !gen_name.is_empty() {
        for msg in name_fn(gen_name, true) {
            errs.push(invalid_str(child(path, "generateName"), gen_name, msg));
        }
    }
    let name = str_at(meta, &["name"]);
    if name.is_empty() {
        errs.push(required(
            child(path, "name"),
            "name or generateName is required",
        ));
    } else {
        for msg in name_fn(name, false) {
            errs.push(invalid_str(child(path, "name"), name, msg));
        }
    }
    let ns = str_at(meta, &["namespace"]);
    if namespaced {
        if ns.is_empty() {
            errs.push(required(child(path, "namespace"), ""));
        } else {
            for msg in names::validate_namespace_name(ns, false) {
                errs.push(invalid_str(child(path, "namespace"), ns, msg));
            }
        }
    } else if !ns.is_empty() {
        errs.push(forbidden(
            child(path, "namespace"),
            "not allowed on this type",
        ));
    }
    let generation = opt_int(meta, &["generation"]).unwrap_or(0);
    if generation < 0 {
        errs.push(invalid_raw(
            child(path, "generation"),
            generation.to_string(),
            IS_NEGATIVE,
        ));
    }
    errs.extend(validate_labels(meta, &["labels"], &child(path, "labels")));
    errs.extend(validate_annotations(meta, &child(path, "annotations")));
    errs.extend(validate_owner_references(
        meta,
        &child(path, "ownerReferences"),
    ));
    errs.extend(validate_finalizers(meta, &child(path, "finalizers")));
    errs
}

/// `metav1validation.ValidateLabels` of the map at `at` inside `v`: every key a qualified name,
/// every value a label value (errors on the map's path, not the key's).
pub fn validate_labels(v: &Value, at: &[&str], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, val) in map_at(v, at) {
        errs.extend(validate_label_name(k, path));
        let val = val.as_str().unwrap_or("");
        for msg in names::is_valid_label_value(val) {
            errs.push(invalid_str(path, val, msg));
        }
    }
    errs
}

/// `metav1validation.ValidateLabelName`.
pub fn validate_label_name(k: &str, path: &str) -> Vec<FieldError> {
    names::is_qualified_name(k)
        .into_iter()
        .map(|msg| invalid_str(path, k, msg))
        .collect()
}

/// `ValidateAnnotations`: keys are case-insensitive qualified names; total size at most 256 KiB.
pub fn validate_annotations(meta: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in map_at(meta, &["annotations"]) {
        for msg in names::is_qualified_name(&k.to_lowercase()) {
            errs.push(invalid_str(path, k, msg));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// Splits an apiVersion into (group, version) as `schema.ParseGroupVersion`; `None` on error.
fn parse_group_version(api_version: &str) -> Option<(String, String)> {
    if api_version.is_empty() || api_version == "/" {
        return Some((String::new(), String::new()));
    }
    match api_version.split('/').collect::<Vec<_>>().as_slice() {
        [v] => Some((String::new(), v.to_string())),
        [g, v] => Some((g.to_string(), v.to_string())),
        _ => None,
    }
}

fn go_owner_ref(r: &Value) -> String {
    let opt_bool = |k: &str| match get(r, &[k]).and_then(Value::as_bool) {
        Some(b) => format!("(*bool)({b})"),
        None => "(*bool)(nil)".into(),
    };
    format!(
        "v1.OwnerReference{{APIVersion:{}, Kind:{}, Name:{}, UID:{}, Controller:{}, BlockOwnerDeletion:{}}}",
        go_quote(str_at(r, &["apiVersion"])),
        go_quote(str_at(r, &["kind"])),
        go_quote(str_at(r, &["name"])),
        go_quote(str_at(r, &["uid"])),
        opt_bool("controller"),
        opt_bool("blockOwnerDeletion"),
    )
}

/// `ValidateOwnerReferences`: apiVersion/kind/name/uid set, events may not own, one controller.
pub fn validate_owner_references(meta: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let refs = arr_at(meta, &["ownerReferences"]);
    let mut first_controller = String::new();
    for r in refs {
        let api_version = str_at(r, &["apiVersion"]);
        let kind = str_at(r, &["kind"]);
        let (group, version) = parse_group_version(api_version).unwrap_or_default();
        if version.is_empty() {
            errs.push(invalid_str(
                child(path, "apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        if kind.is_empty() {
            errs.push(invalid_str(
                child(path, "kind"),
                kind,
                "kind must not be empty",
            ));
        }
        let name = str_at(r, &["name"]);
        if name.is_empty() {
            errs.push(invalid_str(
                child(path, "name"),
                name,
                "name must not be empty",
            ));
        }
        let uid = str_at(r, &["uid"]);
        if uid.is_empty() {
            errs.push(invalid_str(
                child(path, "uid"),
                uid,
                "uid must not be empty",
            ));
        }
        if group.is_empty() && version == "v1" && kind == "Event" {
            errs.push(invalid_raw(
                path,
                go_owner_ref(r),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if get(r, &["controller"]).and_then(Value::as_bool) == Some(true) {
            let cur = format!("{kind}/{name}");
            if first_controller.is_empty() {
                first_controller = cur;
            } else {
                let all = refs.iter().map(go_owner_ref).collect::<Vec<_>>().join(", ");
                errs.push(invalid_raw(
                    path,
                    format!("[]v1.OwnerReference{{{all}}}"),
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first_controller} and {cur}"
                    ),
                ));
            }
        }
    }
    errs
}

/// apimachinery's `ValidateFinalizers`: qualified names, not both orphan and foregroundDeletion.
pub fn validate_finalizers(meta: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let fins = strs_at(meta, &["finalizers"]);
    for f in &fins {
        for msg in names::is_qualified_name(f) {
            errs.push(invalid_str(path, f, msg));
        }
    }
    if fins.iter().any(|f| f == "orphan") && fins.iter().any(|f| f == "foregroundDeletion") {
        errs.push(invalid_raw(
            path,
            go_string_slice(&fins),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

/// Core's extra rule: a finalizer without `/` must be one of the standard ones.
fn validate_kube_finalizers(meta: &Value, path: &str) -> Vec<FieldError> {
    let base = child(path, "finalizers");
    strs_at(meta, &["finalizers"])
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.contains('/') && !STANDARD_FINALIZERS.contains(&f.as_str()))
        .map(|(i, f)| {
            invalid_str(
                index(&base, i),
                f,
                "name is neither a standard finalizer name nor is it fully qualified",
            )
        })
        .collect()
}

/// `metav1validation.ValidateLabelSelector` (label values must be valid).
pub fn validate_label_selector(sel: Option<&Value>, path: &str) -> Vec<FieldError> {
    let Some(sel) = sel else { return Vec::new() };
    let mut errs = validate_labels(sel, &["matchLabels"], &child(path, "matchLabels"));
    for (i, expr) in arr_at(sel, &["matchExpressions"]).iter().enumerate() {
        let p = index(&child(path, "matchExpressions"), i);
        let values = strs_at(expr, &["values"]);
        match str_at(expr, &["operator"]) {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(required(
                        child(&p, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(forbidden(
                        child(&p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            op => errs.push(invalid_str(
                child(&p, "operator"),
                op,
                "not a valid selector operator",
            )),
        }
        errs.extend(validate_label_name(
            str_at(expr, &["key"]),
            &child(&p, "key"),
        ));
        for (j, v) in values.iter().enumerate() {
            for msg in names::is_valid_label_value(v) {
                errs.push(invalid_str(index(&child(&p, "values"), j), v, msg));
            }
        }
    }
    errs
}

/// Go's `time.Time.String()` for an RFC 3339 UTC timestamp.
fn go_time(t: &str) -> String {
    let t = t.trim_end_matches('Z').replacen('T', " ", 1);
    format!("{t} +0000 UTC")
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    fn errs_of(v: Vec<FieldError>) -> Vec<String> {
        v.iter().map(FieldError::error_string).collect()
    }

    #[rstest]
    #[case(json!({"metadata": {"name": "ok", "namespace": "ns"}}), vec![])]
    #[case(json!({"metadata": {"namespace": "ns"}}), vec!["metadata.name: Required value: name or generateName is required"])]
    #[case(json!({"metadata": {"name": "ok"}}), vec!["metadata.namespace: Required value"])]
    #[case(json!({"metadata": {"name": "ok", "namespace": "ns", "labels": {"a/b/c": "x"}}}), vec!["metadata.labels: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"])]
    #[case(json!({"metadata": {"name": "ok", "namespace": "ns", "finalizers": ["hold"]}}), vec!["metadata.finalizers[0]: Invalid value: \"hold\": name is neither a standard finalizer name nor is it fully qualified"])]
    #[case(json!({"metadata": {"name": "ok", "namespace": "ns", "finalizers": ["orphan", "foregroundDeletion"]}}), vec!["metadata.finalizers: Invalid value: []string{\"orphan\", \"foregroundDeletion\"}: finalizer orphan and foregroundDeletion cannot be both set"])]
    #[case(json!({"metadata": {"name": "ok", "namespace": "ns", "ownerReferences": [{"apiVersion": "", "kind": "", "name": "", "uid": ""}]}}), vec![
        "metadata.ownerReferences.apiVersion: Invalid value: \"\": version must not be empty",
        "metadata.ownerReferences.kind: Invalid value: \"\": kind must not be empty",
        "metadata.ownerReferences.name: Invalid value: \"\": name must not be empty",
        "metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty",
    ])]
    #[case(json!({"metadata": {"name": "ok", "namespace": "ns", "generation": -1}}), vec!["metadata.generation: Invalid value: -1: must be greater than or equal to 0"])]
    fn create_meta(#[case] obj: Value, #[case] want: Vec<&str>) {
        assert_eq!(
            errs_of(validate_object_meta(
                &obj,
                true,
                names::name_is_dns_subdomain,
                "metadata"
            )),
            want
        );
    }

    #[test]
    fn cluster_scoped_forbids_namespace() {
        let obj = json!({"metadata": {"name": "n", "namespace": "x"}});
        assert_eq!(
            errs_of(validate_object_meta(
                &obj,
                false,
                names::name_is_dns_subdomain,
                "metadata"
            )),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
    }

    #[rstest]
    #[case(json!({"metadata": {"name": "a", "uid": "u2"}}), vec!["metadata.uid: Invalid value: \"u2\": field is immutable"])]
    #[case(json!({"metadata": {"name": "a", "uid": "u1", "generation": 1}}), vec!["metadata.generation: Invalid value: 1: must not be decremented"])]
    #[case(json!({"metadata": {"name": "a", "uid": "u1", "generation": 2, "creationTimestamp": "2024-01-02T00:00:00Z"}}), vec!["metadata.creationTimestamp: Invalid value: 2024-01-02 00:00:00 +0000 UTC: field is immutable"])]
    fn update_meta(#[case] new: Value, #[case] want: Vec<&str>) {
        let old = json!({"metadata": {"name": "a", "uid": "u1", "generation": 2, "creationTimestamp": "2024-01-01T00:00:00Z"}});
        let mut new = new;
        if new["metadata"].get("creationTimestamp").is_none() {
            new["metadata"]["creationTimestamp"] = json!("2024-01-01T00:00:00Z");
        }
        if new["metadata"].get("generation").is_none() {
            new["metadata"]["generation"] = json!(2);
        }
        assert_eq!(
            errs_of(validate_object_meta_update_generic(&new, &old, "metadata")),
            want
        );
    }

    #[test]
    fn no_new_finalizers_while_deleting() {
        let old = json!({"metadata": {"name": "a", "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["x.io/a"]}});
        let new = json!({"metadata": {"name": "a", "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["x.io/a", "x.io/c", "x.io/b"]}});
        assert_eq!(
            errs_of(validate_object_meta_update_generic(&new, &old, "metadata")),
            vec![
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"x.io/b\", \"x.io/c\"}"
            ]
        );
    }
}
