//! Virtual secrets as host secrets.
//!
//! Host pods mount and read secrets from the host namespace, so each secret a synced pod or
//! ingress references is copied there under its host name (see
//! [`super::references::host_secret_name`]). Service account token secrets are the exception:
//! their contents are tokens for the *virtual* API, and a secret of that type in the host
//! namespace is filled in by the *host's* token controller when its
//! `kubernetes.io/service-account.name` annotation names a host service account (`default`
//! always exists), which would hand the tenant a credential for the host API. Pods get their
//! virtual API credentials another way, so such secrets are never synced as they are.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::{Context, NameRule, TranslateError};

/// The secret type whose copies vcsync refuses to write.
pub const SERVICE_ACCOUNT_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";

/// The host copy of virtual secret `secret`: translated metadata, `data`, `immutable` and
/// `type` as they are. `stringData` (write-only, so only present on an object that did not
/// come from an API read) is merged into `data` the way the API server would, so the host copy
/// holds what the virtual secret holds. Refused: service account token secrets.
pub fn host_secret(ctx: &Context, secret: &Secret) -> Result<Secret, Vec<TranslateError>> {
    let meta = ctx.host_meta("Secret", &secret.metadata, NameRule::Dns1123Subdomain);
    let is_token = secret.type_.as_deref() == Some(SERVICE_ACCOUNT_TOKEN_TYPE);
    let metadata = match (meta, is_token) {
        (Ok(m), false) => m,
        (meta, is_token) => {
            let mut errs = meta.err().unwrap_or_default();
            if is_token {
                errs.push(TranslateError::ServiceAccountToken);
            }
            return Err(errs);
        }
    };
    let mut data = secret.data.clone();
    if let Some(string_data) = secret.string_data.as_ref().filter(|s| !s.is_empty()) {
        let data = data.get_or_insert_with(BTreeMap::new);
        for (k, v) in string_data {
            data.insert(k.clone(), ByteString(v.clone().into_bytes()));
        }
    }
    Ok(Secret {
        metadata,
        data,
        string_data: None,
        immutable: secret.immutable,
        type_: secret.type_.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use rstest::rstest;

    use crate::markers;

    use crate::translate::test_ctx as ctx;

    fn bytes(s: &str) -> ByteString {
        ByteString(s.as_bytes().to_vec())
    }

    fn secret(type_: Option<&str>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("shop-tls".into()),
                namespace: Some("shop".into()),
                uid: Some("u-secret".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([
                ("tls.crt".into(), bytes("-----BEGIN CERTIFICATE-----\n")),
                ("tls.key".into(), bytes("-----BEGIN PRIVATE KEY-----\n")),
            ])),
            type_: type_.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn tls_secret_snapshot() {
        let virt = Secret {
            immutable: Some(true),
            ..secret(Some("kubernetes.io/tls"))
        };
        let host = host_secret(&ctx(), &virt).expect("translates");
        insta::assert_yaml_snapshot!("secret_tls", host);
    }

    #[rstest]
    #[case::untyped(None)]
    #[case::opaque(Some("Opaque"))]
    #[case::tls(Some("kubernetes.io/tls"))]
    #[case::docker_config(Some("kubernetes.io/dockerconfigjson"))]
    #[case::custom(Some("example.com/thing"))]
    fn types_are_kept(#[case] type_: Option<&str>) {
        let virt = secret(type_);
        let host = host_secret(&ctx(), &virt).expect("translates");
        assert_eq!(host.type_.as_deref(), type_);
        assert_eq!(host.data, virt.data);
        assert_eq!(
            host.metadata.name.as_deref(),
            Some("shop-tls-shop-acme-8-4")
        );
    }

    #[test]
    fn service_account_tokens_are_refused() {
        let errs =
            host_secret(&ctx(), &secret(Some(SERVICE_ACCOUNT_TOKEN_TYPE))).expect_err("refused");
        assert_eq!(errs, vec![TranslateError::ServiceAccountToken]);
        assert_eq!(
            errs[0].to_string(),
            "type \"kubernetes.io/service-account-token\" is never synced: the host issues its own service account tokens"
        );
    }

    #[test]
    fn all_errors_are_reported() {
        let mut virt = secret(Some(SERVICE_ACCOUNT_TOKEN_TYPE));
        virt.metadata.annotations =
            Some(BTreeMap::from([(markers::VIRTUAL_UID.into(), "x".into())]));
        let errs = host_secret(&ctx(), &virt).expect_err("refused");
        assert_eq!(errs.len(), 2, "{errs:?}");
    }

    #[test]
    fn string_data_is_merged_into_data() {
        let mut virt = secret(Some("Opaque"));
        virt.string_data = Some(BTreeMap::from([
            ("tls.key".into(), "override".into()),
            ("extra".into(), "x".into()),
        ]));
        let host = host_secret(&ctx(), &virt).expect("translates");
        let data = host.data.expect("data");
        assert_eq!(data["tls.key"], bytes("override"));
        assert_eq!(data["extra"], bytes("x"));
        assert_eq!(data["tls.crt"], bytes("-----BEGIN CERTIFICATE-----\n"));
        assert_eq!(host.string_data, None);
    }
}
