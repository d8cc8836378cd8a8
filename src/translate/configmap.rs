//! Virtual config maps as host config maps.
//!
//! Host pods mount and read config maps from the host namespace, so each config map a synced
//! pod references is copied there under its host name (see
//! [`super::references::host_config_map_name`]). The contents are copied verbatim: a config map
//! is data for the tenant's own pods and means nothing to the host.

use k8s_openapi::api::core::v1::ConfigMap;

use super::{Context, NameRule, TranslateError};

/// The host copy of virtual config map `cm`: translated metadata, `data`, `binaryData` and
/// `immutable` as they are.
pub fn host_config_map(ctx: &Context, cm: &ConfigMap) -> Result<ConfigMap, Vec<TranslateError>> {
    Ok(ConfigMap {
        metadata: ctx.host_meta("ConfigMap", &cm.metadata, NameRule::Dns1123Subdomain)?,
        data: cm.data.clone(),
        binary_data: cm.binary_data.clone(),
        immutable: cm.immutable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use rstest::rstest;

    use crate::markers;

    use crate::translate::test_ctx as ctx;

    fn cm(immutable: Option<bool>) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("settings".into()),
                namespace: Some("shop".into()),
                uid: Some("u-cm".into()),
                resource_version: Some("9".into()),
                labels: Some(BTreeMap::from([("app".into(), "shop".into())])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([
                ("app.properties".into(), "color=blue\nsize=3\n".into()),
                ("LOG_LEVEL".into(), "debug".into()),
            ])),
            binary_data: Some(BTreeMap::from([(
                "logo.png".into(),
                ByteString(vec![0x89, b'P', b'N', b'G', 0]),
            )])),
            immutable,
        }
    }

    #[test]
    fn config_map_snapshot() {
        let host = host_config_map(&ctx(), &cm(Some(true))).expect("translates");
        insta::assert_yaml_snapshot!("config_map", host);
    }

    #[rstest]
    #[case::unset(None)]
    #[case::mutable(Some(false))]
    #[case::immutable(Some(true))]
    fn contents_are_copied(#[case] immutable: Option<bool>) {
        let virt = cm(immutable);
        let host = host_config_map(&ctx(), &virt).expect("translates");
        assert_eq!(
            (host.data, host.binary_data, host.immutable),
            (virt.data, virt.binary_data, immutable)
        );
        assert_eq!(
            host.metadata.name.as_deref(),
            Some("settings-shop-acme-8-4")
        );
    }

    #[test]
    fn reserved_keys_are_refused() {
        let mut virt = cm(None);
        virt.metadata.labels = Some(BTreeMap::from([(markers::VIRTUAL_NAME.into(), "x".into())]));
        let errs = host_config_map(&ctx(), &virt).expect_err("refused");
        assert_eq!(errs.len(), 1);
    }
}
