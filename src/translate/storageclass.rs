//! The StorageClasses a tenant sees: one virtual StorageClass per class the storage policy lets
//! the tenant use (`forced`, or `allowed` plus `default`), the default one marked with
//! `storageclass.kubernetes.io/is-default-class`.
//!
//! They are made from the policy, not copied from the host: host StorageClasses are
//! cluster-scoped and the host Role is namespaced, so vcsync cannot read them. Their
//! provisioner is the placeholder [`super::pvc::VIRTUAL_PV_DRIVER`] (the real one is the
//! host's), and `kubectl get storageclass` in the virtual cluster lists exactly what the tenant
//! may use.

use std::collections::BTreeMap;

use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::markers;
use crate::policy::Policy;

/// The annotation that marks the default StorageClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

/// The virtual StorageClasses for `policy`, sorted by name.
pub fn virtual_storage_classes(tenant: &str, policy: &Policy) -> Vec<StorageClass> {
    let c = &policy.storage.class;
    let default = c.forced.clone().or_else(|| c.default.clone());
    let mut names: Vec<String> = match &c.forced {
        Some(f) => vec![f.clone()],
        None => c.allowed.iter().cloned().chain(c.default.clone()).collect(),
    };
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let is_default = default.as_deref() == Some(name.as_str());
            StorageClass {
                metadata: ObjectMeta {
                    name: Some(name),
                    labels: Some(BTreeMap::from([(
                        markers::MANAGED_BY.to_string(),
                        tenant.to_string(),
                    )])),
                    annotations: Some(BTreeMap::from([(
                        DEFAULT_CLASS_ANNOTATION.to_string(),
                        is_default.to_string(),
                    )])),
                    ..Default::default()
                },
                provisioner: super::pvc::VIRTUAL_PV_DRIVER.to_string(),
                reclaim_policy: Some("Delete".into()),
                volume_binding_mode: Some("Immediate".into()),
                allow_volume_expansion: Some(true),
                ..Default::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::allowed_and_default("storage: {class: {allowed: [fast, slow], default: standard}}", &[("fast", false), ("slow", false), ("standard", true)])]
    #[case::forced("storage: {class: {forced: tenant-a}}", &[("tenant-a", true)])]
    #[case::none("", &[])]
    #[case::default_listed_once("storage: {class: {allowed: [fast], default: fast}}", &[("fast", true)])]
    fn classes_follow_the_policy(#[case] yaml: &str, #[case] want: &[(&str, bool)]) {
        let policy = Policy::from_yaml(yaml).unwrap();
        let got: Vec<(String, bool)> = virtual_storage_classes("acme", &policy)
            .into_iter()
            .map(|c| {
                let d =
                    c.metadata.annotations.as_ref().unwrap()[DEFAULT_CLASS_ANNOTATION] == "true";
                (c.metadata.name.unwrap(), d)
            })
            .collect();
        let want: Vec<(String, bool)> = want.iter().map(|(n, d)| (n.to_string(), *d)).collect();
        assert_eq!(got, want);
    }
}
