//! Secret validation (`ValidateSecret`, `ValidateSecretUpdate`). `stringData` must already be
//! merged into `data` (base64) by the caller, as the registry's strategy does.

use serde_json::Value;

use super::configmap::{MAX_SIZE, b64_len, immutable_checks};
use super::meta::{FIELD_IMMUTABLE, validate_object_meta, validate_object_meta_update};
use super::names::{self, is_config_map_key};
use super::{get, go_quote, invalid_raw, invalid_str, key, map_at, required, str_at, too_long};
use crate::apiserver::errors::FieldError;

fn has(obj: &Value, k: &str) -> bool {
    get(obj, &["data", k]).is_some()
}

/// `ValidateSecret`, including the per-type required keys.
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, true, names::name_is_dns_subdomain, "metadata");
    let mut total = 0usize;
    for (k, v) in map_at(obj, &["data"]) {
        for msg in is_config_map_key(k) {
            errs.push(invalid_str(key("data", k), k, msg));
        }
        total += b64_len(v);
    }
    if total > MAX_SIZE {
        errs.push(too_long("data", MAX_SIZE));
    }
    let data_key = |k: &str| key("data", k);
    match str_at(obj, &["type"]) {
        "kubernetes.io/service-account-token"
            if str_at(
                obj,
                &[
                    "metadata",
                    "annotations",
                    "kubernetes.io/service-account.name",
                ],
            )
            .is_empty() =>
        {
            errs.push(required(
                key("metadata.annotations", "kubernetes.io/service-account.name"),
                "",
            ));
        }
        "kubernetes.io/dockercfg" => errs.extend(docker_json(obj, ".dockercfg")),
        "kubernetes.io/dockerconfigjson" => errs.extend(docker_json(obj, ".dockerconfigjson")),
        "kubernetes.io/basic-auth" if !has(obj, "username") && !has(obj, "password") => {
            errs.push(required(data_key("username"), ""));
            errs.push(required(data_key("password"), ""));
        }
        "kubernetes.io/ssh-auth"
            if get(obj, &["data", "ssh-privatekey"])
                .and_then(Value::as_str)
                .is_none_or(str::is_empty) =>
        {
            errs.push(required(data_key("ssh-privatekey"), ""));
        }
        "kubernetes.io/tls" => {
            if !has(obj, "tls.crt") {
                errs.push(required(data_key("tls.crt"), ""));
            }
            if !has(obj, "tls.key") {
                errs.push(required(data_key("tls.key"), ""));
            }
        }
        _ => {}
    }
    errs
}

fn docker_json(obj: &Value, k: &str) -> Vec<FieldError> {
    use base64::Engine;
    let Some(v) = get(obj, &["data", k]) else {
        return vec![required(key("data", k), "")];
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or(""))
        .unwrap_or_default();
    match serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes) {
        Ok(_) => Vec::new(),
        Err(e) => vec![invalid_raw(
            key("data", k),
            go_quote("<secret contents redacted>"),
            e.to_string(),
        )],
    }
}

/// `ValidateSecretUpdate`: `type` is immutable, and everything once `immutable: true`.
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(new, old, "metadata");
    let (nt, ot) = (str_at(new, &["type"]), str_at(old, &["type"]));
    if nt != ot {
        errs.push(invalid_str("type", nt, FIELD_IMMUTABLE));
    }
    errs.extend(immutable_checks(new, old, &["data"]));
    errs.extend(validate(new));
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
    #[case(json!({"metadata": {"name": "s", "namespace": "a"}, "type": "Opaque", "data": {"a": "YQ=="}}), vec![])]
    #[case(json!({"metadata": {"name": "s", "namespace": "a"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "YQ=="}}), vec!["data[tls.key]: Required value"])]
    #[case(json!({"metadata": {"name": "s", "namespace": "a"}, "type": "kubernetes.io/basic-auth"}), vec!["data[username]: Required value", "data[password]: Required value"])]
    #[case(json!({"metadata": {"name": "s", "namespace": "a"}, "type": "kubernetes.io/service-account-token"}), vec!["metadata.annotations[kubernetes.io/service-account.name]: Required value"])]
    #[case(json!({"metadata": {"name": "s", "namespace": "a"}, "data": {"bad key": "YQ=="}}), vec!["data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"])]
    fn create(#[case] obj: Value, #[case] want: Vec<&str>) {
        assert_eq!(strings(validate(&obj)), want);
    }

    #[rstest]
    #[case(json!({"metadata": {"name": "s", "namespace": "a"}, "immutable": true, "type": "Opaque", "data": {"a": "Yw=="}}), vec!["data: Forbidden: field is immutable when `immutable` is set"])]
    #[case(json!({"metadata": {"name": "s", "namespace": "a"}, "immutable": true, "type": "kubernetes.io/basic-auth", "data": {"a": "Yg=="}}), vec![
        "type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable",
        "data[username]: Required value",
        "data[password]: Required value",
    ])]
    fn update(#[case] new: Value, #[case] want: Vec<&str>) {
        let old = json!({"metadata": {"name": "s", "namespace": "a"}, "immutable": true, "type": "Opaque", "data": {"a": "Yg=="}});
        assert_eq!(strings(validate_update(&new, &old)), want);
    }
}
