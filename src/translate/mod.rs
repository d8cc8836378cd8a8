//! Pure translation of virtual objects into host objects: k8s-openapi types in, host objects
//! (or a list of reasons they cannot be synced) out. No client, no async. One file per synced
//! kind; [`Context`] holds what every translation needs to know about the tenant.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::markers::{self, Source};

pub mod configmap;
pub mod endpoints;
pub mod ingress;
pub mod name;
pub mod networkpolicy;
pub mod pod;
pub mod pvc;
pub mod references;
pub mod secret;
pub mod service;
pub mod storageclass;

pub use name::{NameRule, host_name};

/// Annotations a tenant may set that are never copied to the host (they describe the virtual
/// object, not the host one, and can be large).
const DROPPED_ANNOTATIONS: &[&str] = &["kubectl.kubernetes.io/last-applied-configuration"];

/// Why a virtual object cannot be translated. Each variant names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The tenant used a label or annotation key reserved for vcsync's ownership markers.
    #[error("{field} uses the reserved prefix {prefix:?}: {key:?}", prefix = markers::PREFIX)]
    ReservedKey { field: &'static str, key: String },
    /// A required field is missing.
    #[error("{field} is required")]
    Missing { field: String },
    /// A field holds a value vcsync cannot use.
    #[error("{field}: invalid value {value:?}: {reason}")]
    Invalid {
        field: String,
        value: String,
        reason: &'static str,
    },
    /// The object uses a feature vcsync cannot reproduce in the host namespace.
    #[error("{field} is not supported: {reason}")]
    Unsupported { field: String, reason: &'static str },
    /// A `kubernetes.io/service-account-token` secret: never synced (on the host, the host's
    /// token controller would fill it with a host API token).
    #[error(
        "type \"kubernetes.io/service-account-token\" is never synced: the host issues its own service account tokens"
    )]
    ServiceAccountToken,
}

/// Per-tenant facts every translation uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Tenant name (DNS label).
    pub tenant: String,
    /// The one host namespace every host object lives in.
    pub host_namespace: String,
}

impl Context {
    /// Host name of a virtual object.
    pub fn host_name(&self, namespace: &str, name: &str, rule: NameRule) -> String {
        host_name(&self.tenant, namespace, name, rule)
    }

    /// Marker source of a virtual object.
    pub fn source<'a>(&'a self, kind: &'a str, meta: &'a ObjectMeta) -> Source<'a> {
        Source {
            tenant: &self.tenant,
            kind,
            namespace: meta.namespace.as_deref().unwrap_or(""),
            name: meta.name.as_deref().unwrap_or(""),
            uid: meta.uid.as_deref().unwrap_or(""),
        }
    }

    /// Labels that every host selector adds so it only ever matches this tenant's objects from
    /// one virtual namespace.
    pub fn selector_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (markers::MANAGED_BY.to_string(), self.tenant.clone()),
            (
                markers::VIRTUAL_NAMESPACE_LABEL.to_string(),
                namespace.to_string(),
            ),
        ])
    }

    /// Host metadata for a virtual object: translated name in the host namespace, the tenant's
    /// labels and annotations (reserved keys refused), plus the ownership markers. Owner
    /// references, finalizers and server-set fields are not carried over.
    pub fn host_meta(
        &self,
        kind: &str,
        virt: &ObjectMeta,
        rule: NameRule,
    ) -> Result<ObjectMeta, Vec<TranslateError>> {
        let ns = virt.namespace.as_deref().unwrap_or("");
        let name = virt.name.as_deref().unwrap_or("");
        let mut errs = Vec::new();
        if name.is_empty() {
            errs.push(TranslateError::Missing {
                field: "metadata.name".into(),
            });
        }
        let mut labels = BTreeMap::new();
        for (k, v) in virt.labels.iter().flatten() {
            if markers::is_reserved(k) {
                errs.push(TranslateError::ReservedKey {
                    field: "metadata.labels",
                    key: k.clone(),
                });
            } else {
                labels.insert(k.clone(), v.clone());
            }
        }
        let mut annotations = BTreeMap::new();
        for (k, v) in virt.annotations.iter().flatten() {
            if markers::is_reserved(k) {
                errs.push(TranslateError::ReservedKey {
                    field: "metadata.annotations",
                    key: k.clone(),
                });
            } else if !DROPPED_ANNOTATIONS.contains(&k.as_str()) {
                annotations.insert(k.clone(), v.clone());
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let src = self.source(kind, virt);
        labels.extend(src.labels());
        annotations.extend(src.annotations());
        let record = markers::KeySet::record(&labels, &annotations);
        annotations.insert(markers::OWNED_KEYS.to_string(), record);
        Ok(ObjectMeta {
            name: Some(self.host_name(ns, name, rule)),
            namespace: Some(self.host_namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        })
    }
}

/// Copy vcsync's labels and annotations from `desired` into `actual`: every desired key is
/// set, and keys vcsync wrote before (per `actual`'s [`markers::OWNED_KEYS`] record) that are no
/// longer desired are removed; keys that host controllers added stay.
pub fn merge_owned_meta(actual: &mut ObjectMeta, desired: &ObjectMeta) {
    let previous = markers::KeySet::recorded(actual);
    merge_map(
        &mut actual.labels,
        desired.labels.as_ref(),
        &previous.labels,
    );
    merge_map(
        &mut actual.annotations,
        desired.annotations.as_ref(),
        &previous.annotations,
    );
}

fn merge_map(
    actual: &mut Option<BTreeMap<String, String>>,
    desired: Option<&BTreeMap<String, String>>,
    previous: &[String],
) {
    let m = actual.get_or_insert_with(BTreeMap::new);
    for k in previous {
        if desired.is_none_or(|d| !d.contains_key(k)) {
            m.remove(k);
        }
    }
    for (k, v) in desired.into_iter().flatten() {
        if m.get(k) != Some(v) {
            m.insert(k.clone(), v.clone());
        }
    }
    if m.is_empty() {
        *actual = None;
    }
}

/// The tenant context every translation test uses.
#[cfg(test)]
pub(crate) fn test_ctx() -> Context {
    Context {
        tenant: "acme".into(),
        host_namespace: "tenant-acme".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::translate::test_ctx as ctx;

    #[test]
    fn host_meta_copies_tenant_keys_and_adds_markers() {
        let virt = ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("u1".into()),
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            annotations: Some(BTreeMap::from([
                ("note".into(), "x".into()),
                (
                    "kubectl.kubernetes.io/last-applied-configuration".into(),
                    "{}".into(),
                ),
            ])),
            finalizers: Some(vec!["x/y".into()]),
            ..Default::default()
        };
        let m = ctx()
            .host_meta("Pod", &virt, NameRule::Dns1123Subdomain)
            .unwrap();
        assert_eq!(m.name.as_deref(), Some("web-default-acme-3-7"));
        assert_eq!(m.namespace.as_deref(), Some("tenant-acme"));
        assert_eq!(m.labels.as_ref().unwrap()["app"], "web");
        assert_eq!(m.labels.as_ref().unwrap()[markers::MANAGED_BY], "acme");
        let a = m.annotations.unwrap();
        assert_eq!(a["note"], "x");
        assert!(!a.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
        assert_eq!(a[markers::VIRTUAL_UID], "u1");
        assert!(m.finalizers.is_none() && m.uid.is_none());
    }

    #[test]
    fn forged_markers_are_refused() {
        let virt = ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            labels: Some(BTreeMap::from([(
                markers::MANAGED_BY.to_string(),
                "victim".to_string(),
            )])),
            annotations: Some(BTreeMap::from([(
                markers::VIRTUAL_UID.to_string(),
                "x".to_string(),
            )])),
            ..Default::default()
        };
        let errs = ctx()
            .host_meta("Pod", &virt, NameRule::Dns1123Subdomain)
            .unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(
            errs[0].to_string(),
            "metadata.labels uses the reserved prefix \"vcsync.io/\": \"vcsync.io/managed-by\""
        );
    }
}
