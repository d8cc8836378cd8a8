//! `serviceaccounts/token`: TokenRequest answers with a JWT-shaped token.
//!
//! The token is not verifiable by anything but its shape and claims: header and payload are the
//! ones kube-apiserver issues, the signature is a SHA-256 over them with a per-process key.

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::apiserver::errors::{ApiError, FieldError};
use crate::apiserver::resources;
use crate::apiserver::store::Store;

/// The issuer and default audience.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Build the JWT for `claims`.
pub fn sign(claims: &Value) -> String {
    let header = json!({"alg": "RS256", "kid": "vcsync-e2e"});
    let h = b64(header.to_string().as_bytes());
    let p = b64(claims.to_string().as_bytes());
    let mut d = Sha256::new();
    d.update(b"vcsync-e2e-token-key");
    d.update(h.as_bytes());
    d.update(b".");
    d.update(p.as_bytes());
    format!("{h}.{p}.{}", b64(&d.finalize()))
}

/// Answer a TokenRequest for service account `name` in `ns`.
pub fn token_request(
    store: &Store,
    ns: &str,
    name: &str,
    body: &Value,
    now_secs: i64,
) -> Result<Value, ApiError> {
    let spec = &body["spec"];
    let exp = spec["expirationSeconds"].as_i64().unwrap_or(3600);
    let invalid = |detail: &str| {
        ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            "",
            &[FieldError::invalid(
                "spec.expirationSeconds",
                &json!(exp),
                detail,
            )],
        )
    };
    if exp < 600 {
        return Err(invalid("may not specify a duration less than 10 minutes"));
    }
    if exp > 1 << 32 {
        return Err(invalid(
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let sa = store
        .get("serviceaccounts", ns, name)
        .ok_or_else(|| ApiError::not_found("", "serviceaccounts", name))?;
    let audiences: Vec<Value> = match spec["audiences"].as_array() {
        Some(a) if !a.is_empty() => a.clone(),
        _ => vec![json!(ISSUER)],
    };
    let mut k8s = json!({
        "namespace": ns,
        "serviceaccount": {"name": name, "uid": sa["metadata"]["uid"].clone()}
    });
    let bound = &spec["boundObjectRef"];
    if bound.is_object() {
        let kind = bound["kind"].as_str().unwrap_or("");
        let bname = bound["name"].as_str().unwrap_or("");
        let (group, _) = match bound["apiVersion"].as_str().unwrap_or("v1").split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", "v1"),
        };
        let def = resources::find_kind(group, kind)
            .filter(|d| matches!(d.plural, "pods" | "secrets" | "nodes"));
        let Some(def) = def else {
            return Err(ApiError::invalid(
                "authentication.k8s.io",
                "TokenRequest",
                "",
                &[FieldError::new(
                    crate::apiserver::errors::FieldErrorKind::NotSupported,
                    "spec.boundObjectRef.kind",
                    Some(format!("{kind:?}")),
                    "supported values: \"Node\", \"Pod\", \"Secret\"",
                )],
            ));
        };
        let obj_ns = if def.namespaced { ns } else { "" };
        let obj = store
            .get(def.storage, obj_ns, bname)
            .ok_or_else(|| ApiError::not_found(def.group, def.plural, bname))?;
        let uid = obj["metadata"]["uid"].as_str().unwrap_or("");
        if let Some(want) = bound["uid"].as_str().filter(|u| !u.is_empty())
            && want != uid
        {
            return Err(ApiError::conflict(
                def.group,
                def.plural,
                bname,
                &format!(
                    "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
        k8s[def.singular] = json!({"name": bname, "uid": uid});
    }
    let claims = json!({
        "aud": audiences,
        "exp": now_secs + exp,
        "iat": now_secs,
        "iss": ISSUER,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": k8s,
        "nbf": now_secs,
        "sub": format!("system:serviceaccount:{ns}:{name}")
    });
    let token = sign(&claims);
    let ts = |s: i64| {
        jiff::Timestamp::from_second(s)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default()
    };
    let mut out_spec =
        json!({"audiences": audiences, "expirationSeconds": exp, "boundObjectRef": null});
    if bound.is_object() {
        out_spec["boundObjectRef"] = bound.clone();
    }
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": ts(now_secs)},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": ts(now_secs + exp)}
    }))
}

/// Decode a token's payload (tests and debugging).
pub fn claims_of(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn store() -> Store {
        let mut s = Store::new(100);
        let rv = s.next_rv();
        s.put(
            "serviceaccounts",
            "ns",
            "default",
            json!({"metadata": {"name": "default", "uid": "sa-uid"}}),
            rv,
        );
        let rv = s.next_rv();
        s.put(
            "pods",
            "ns",
            "p",
            json!({"metadata": {"name": "p", "uid": "pod-uid"}}),
            rv,
        );
        s
    }

    #[test]
    fn token_shape_and_claims() {
        let body = json!({"spec": {"audiences": ["https://conf.example.com"], "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"}}});
        let out = token_request(&store(), "ns", "default", &body, 1_700_000_000).unwrap();
        let token = out["status"]["token"].as_str().unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        }));
        let c = claims_of(token).unwrap();
        assert_eq!(c["sub"], "system:serviceaccount:ns:default");
        assert_eq!(c["aud"], json!(["https://conf.example.com"]));
        assert_eq!(
            c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
            3600
        );
        assert_eq!(
            c["kubernetes.io"]["pod"],
            json!({"name": "p", "uid": "pod-uid"})
        );
        assert_eq!(c["kubernetes.io"]["serviceaccount"]["uid"], "sa-uid");
        assert_eq!(out["spec"]["expirationSeconds"], 3600);
        assert_eq!(out["metadata"]["name"], "default");
    }

    #[rstest]
    #[case("default", json!({"spec": {"expirationSeconds": 60}}), 422)]
    #[case("nope", json!({"spec": {}}), 404)]
    #[case("default", json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "gone"}}}), 404)]
    fn errors(#[case] sa: &str, #[case] body: Value, #[case] code: u16) {
        assert_eq!(
            token_request(&store(), "ns", sa, &body, 0)
                .unwrap_err()
                .code,
            code
        );
    }

    #[test]
    fn too_short_message() {
        let e = token_request(
            &store(),
            "ns",
            "default",
            &json!({"spec": {"expirationSeconds": 60}}),
            0,
        )
        .unwrap_err();
        assert_eq!(
            e.body["message"],
            "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
        );
        assert_eq!(e.body["details"]["group"], "authentication.k8s.io");
    }
}
