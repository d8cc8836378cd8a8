//! ConfigMap validation (`ValidateConfigMap`, `ValidateConfigMapUpdate`).

use serde_json::Value;

use super::meta::{validate_object_meta, validate_object_meta_update};
use super::names::{self, is_config_map_key};
use super::{child, forbidden, get, invalid_str, key, map_at, same, too_long};
use crate::apiserver::errors::FieldError;

/// `core.MaxSecretSize`, shared by configmaps and secrets.
pub const MAX_SIZE: usize = 1024 * 1024;

/// Decoded length of a base64 value, without decoding it.
pub(crate) fn b64_len(v: &Value) -> usize {
    let s = v.as_str().unwrap_or("");
    let pad = s.bytes().rev().take_while(|b| *b == b'=').count();
    (s.len() / 4) * 3 - pad.min(2)
        + match s.len() % 4 {
            2 => 1,
            3 => 2,
            _ => 0,
        }
}

/// `ValidateConfigMap`.
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, true, names::name_is_dns_subdomain, "metadata");
    let binary = map_at(obj, &["binaryData"]);
    let mut total = 0usize;
    for (k, v) in map_at(obj, &["data"]) {
        for msg in is_config_map_key(k) {
            errs.push(invalid_str(key("data", k), k, msg));
        }
        if binary.iter().any(|(bk, _)| *bk == k) {
            errs.push(invalid_str(
                key("data", k),
                k,
                "duplicate of key present in binaryData",
            ));
        }
        total += v.as_str().map_or(0, str::len);
    }
    for (k, v) in &binary {
        for msg in is_config_map_key(k) {
            errs.push(invalid_str(key("binaryData", k), k, msg));
        }
        total += b64_len(v);
    }
    if total > MAX_SIZE {
        errs.push(too_long("", MAX_SIZE));
    }
    errs
}

/// `ValidateConfigMapUpdate`: nothing but metadata may change once `immutable: true`.
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(new, old, "metadata");
    errs.extend(immutable_checks(new, old, &["data", "binaryData"]));
    errs.extend(validate(new));
    errs
}

/// The `immutable: true` rules shared with secrets.
pub(crate) fn immutable_checks(new: &Value, old: &Value, fields: &[&str]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if get(old, &["immutable"]).and_then(Value::as_bool) == Some(true) {
        if get(new, &["immutable"]).and_then(Value::as_bool) != Some(true) {
            errs.push(forbidden(
                child("", "immutable"),
                "field is immutable when `immutable` is set",
            ));
        }
        for f in fields {
            if !same(get(new, &[f]), get(old, &[f])) {
                errs.push(forbidden(*f, "field is immutable when `immutable` is set"));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    fn strings(v: Vec<FieldError>) -> Vec<String> {
        v.iter().map(FieldError::error_string).collect()
    }

    #[rstest]
    #[case(json!({"metadata": {"name": "cm", "namespace": "a"}, "data": {"k": "v"}}), vec![])]
    #[case(json!({"metadata": {"name": "cm", "namespace": "a"}, "data": {"k": "v"}, "binaryData": {"k": "AAE="}}), vec!["data[k]: Invalid value: \"k\": duplicate of key present in binaryData"])]
    #[case(json!({"metadata": {"name": "cm", "namespace": "a"}, "binaryData": {"..x": "AAE="}}), vec!["binaryData[..x]: Invalid value: \"..x\": must not start with '..'"])]
    #[case(json!({"metadata": {"name": "cm", "namespace": "a"}, "data": {"big": "x".repeat(MAX_SIZE + 1)}}), vec![": Too long: may not be more than 1048576 bytes"])]
    fn create(#[case] obj: Value, #[case] want: Vec<&str>) {
        assert_eq!(strings(validate(&obj)), want);
    }

    #[test]
    fn immutable() {
        let old = json!({"metadata": {"name": "cm", "namespace": "a"}, "immutable": true, "data": {"a": "b"}});
        let new = json!({"metadata": {"name": "cm", "namespace": "a"}, "data": {"a": "c"}});
        assert_eq!(
            strings(validate_update(&new, &old)),
            vec![
                "immutable: Forbidden: field is immutable when `immutable` is set",
                "data: Forbidden: field is immutable when `immutable` is set"
            ]
        );
    }

    #[test]
    fn base64_length() {
        assert_eq!(b64_len(&json!("AAE=")), 2);
        assert_eq!(b64_len(&json!("YQ==")), 1);
        assert_eq!(b64_len(&json!("YWJj")), 3);
    }
}
