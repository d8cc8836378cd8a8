//! Ownership markers: the labels and annotations vcsync puts on every host object it creates,
//! all under one reserved prefix, and the checks that decide whether vcsync may touch a host
//! object.
//!
//! vcsync never updates or deletes a host object whose markers do not match the virtual object
//! it is syncing: a foreign object (created by someone else, or by another tenant sharing the
//! host namespace) or a name collision is reported, never overwritten. Reverse lookup (host to
//! virtual) reads these markers; it never parses host names.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Every key vcsync owns starts with this prefix; tenants may not use it.
pub const PREFIX: &str = "vcsync.io/";

/// Label: the tenant that owns the host object.
pub const MANAGED_BY: &str = "vcsync.io/managed-by";
/// Label: the virtual namespace of the source object (a DNS label, so it fits a label value).
pub const VIRTUAL_NAMESPACE_LABEL: &str = "vcsync.io/namespace";
/// Annotation: the virtual name of the source object (names can exceed label-value limits).
pub const VIRTUAL_NAME: &str = "vcsync.io/name";
/// Annotation: the virtual namespace of the source object.
pub const VIRTUAL_NAMESPACE: &str = "vcsync.io/namespace";
/// Annotation: the uid of the source object.
pub const VIRTUAL_UID: &str = "vcsync.io/uid";
/// Annotation: the kind of the source object (`Pod`, `Service`, ...).
pub const VIRTUAL_KIND: &str = "vcsync.io/kind";

/// Annotation on host pods: the virtual pod's labels in the downward-API file format, so a
/// `metadata.labels` downward-API volume shows the tenant's labels, not the host's.
pub const VIRTUAL_LABELS: &str = "vcsync.io/labels";
/// Annotation on host pods: the virtual pod's annotations in the downward-API file format.
pub const VIRTUAL_ANNOTATIONS: &str = "vcsync.io/annotations";
/// Annotation on host pods: the virtual pod's service account name (downward API
/// `spec.serviceAccountName`).
pub const VIRTUAL_SERVICE_ACCOUNT: &str = "vcsync.io/service-account";

/// Annotation: the label and annotation keys vcsync wrote (`labels:a,b;annotations:c,d`), so a
/// key the tenant removes is removed on the host too while keys that host controllers add are
/// left alone.
pub const OWNED_KEYS: &str = "vcsync.io/owned-keys";

/// Field manager of every write vcsync makes (server-side apply and updates).
pub const FIELD_MANAGER: &str = "vcsync";

/// Identity of a virtual source object, as the markers record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source<'a> {
    pub tenant: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
}

impl Source<'_> {
    /// The marker labels (merged into the host object's labels).
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY.to_string(), self.tenant.to_string()),
            (
                VIRTUAL_NAMESPACE_LABEL.to_string(),
                self.namespace.to_string(),
            ),
        ])
    }

    /// The marker annotations (merged into the host object's annotations).
    pub fn annotations(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (VIRTUAL_NAME.to_string(), self.name.to_string()),
            (VIRTUAL_NAMESPACE.to_string(), self.namespace.to_string()),
            (VIRTUAL_UID.to_string(), self.uid.to_string()),
            (VIRTUAL_KIND.to_string(), self.kind.to_string()),
        ])
    }
}

/// What the markers of an existing host object say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Ours and made from this very virtual object.
    Ours,
    /// Ours, for the same tenant/kind/namespace/name, but from an earlier virtual object with that
    /// name (deleted and re-created): safe to replace.
    Stale,
    /// Not ours to touch: no markers, another tenant's, or another virtual object's (a collision).
    Foreign,
}

fn get<'a>(m: &'a Option<BTreeMap<String, String>>, k: &str) -> Option<&'a str> {
    m.as_ref().and_then(|m| m.get(k)).map(String::as_str)
}

/// Decide whether the host object with `meta` may be written for `src`.
pub fn ownership(meta: &ObjectMeta, src: &Source<'_>) -> Ownership {
    let same = get(&meta.labels, MANAGED_BY) == Some(src.tenant)
        && get(&meta.labels, VIRTUAL_NAMESPACE_LABEL) == Some(src.namespace)
        && get(&meta.annotations, VIRTUAL_NAMESPACE) == Some(src.namespace)
        && get(&meta.annotations, VIRTUAL_NAME) == Some(src.name)
        && get(&meta.annotations, VIRTUAL_KIND) == Some(src.kind);
    if !same {
        return Ownership::Foreign;
    }
    if get(&meta.annotations, VIRTUAL_UID) == Some(src.uid) {
        Ownership::Ours
    } else {
        Ownership::Stale
    }
}

/// The virtual object a host object was made from, read from its markers, if it is this
/// tenant's: `(kind, namespace, name, uid)`.
pub fn source_of<'m>(
    meta: &'m ObjectMeta,
    tenant: &str,
) -> Option<(&'m str, &'m str, &'m str, &'m str)> {
    if get(&meta.labels, MANAGED_BY) != Some(tenant) {
        return None;
    }
    Some((
        get(&meta.annotations, VIRTUAL_KIND)?,
        get(&meta.annotations, VIRTUAL_NAMESPACE)?,
        get(&meta.annotations, VIRTUAL_NAME)?,
        get(&meta.annotations, VIRTUAL_UID).unwrap_or(""),
    ))
}

/// Label and annotation keys vcsync owns on a host object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    pub labels: Vec<String>,
    pub annotations: Vec<String>,
}

impl KeySet {
    /// The record of `labels` and `annotations` (the value of [`OWNED_KEYS`]).
    pub fn record(
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
    ) -> String {
        let join = |m: &BTreeMap<String, String>| {
            m.keys().map(String::as_str).collect::<Vec<_>>().join(",")
        };
        format!("labels:{};annotations:{}", join(labels), join(annotations))
    }

    /// Read the record back from a host object's metadata (empty when absent).
    pub fn recorded(meta: &ObjectMeta) -> KeySet {
        let Some(rec) = get(&meta.annotations, OWNED_KEYS) else {
            return KeySet::default();
        };
        let mut out = KeySet::default();
        for part in rec.split(';') {
            let split = |s: &str| {
                s.split(',')
                    .filter(|k| !k.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            };
            if let Some(l) = part.strip_prefix("labels:") {
                out.labels = split(l);
            } else if let Some(a) = part.strip_prefix("annotations:") {
                out.annotations = split(a);
            }
        }
        // The record itself is always ours.
        out.annotations.push(OWNED_KEYS.to_string());
        out
    }
}

/// Whether a label or annotation key is reserved for vcsync (tenants may not set it).
pub fn is_reserved(key: &str) -> bool {
    key.starts_with(PREFIX)
}

/// The label selector that limits host watches to one tenant's objects.
pub fn tenant_selector(tenant: &str) -> String {
    format!("{MANAGED_BY}={tenant}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn src() -> Source<'static> {
        Source {
            tenant: "acme",
            kind: "Pod",
            namespace: "default",
            name: "web",
            uid: "u1",
        }
    }

    fn meta_of(s: &Source<'_>) -> ObjectMeta {
        ObjectMeta {
            labels: Some(s.labels()),
            annotations: Some(s.annotations()),
            ..Default::default()
        }
    }

    #[test]
    fn own_markers_are_ours() {
        assert_eq!(ownership(&meta_of(&src()), &src()), Ownership::Ours);
        assert_eq!(
            source_of(&meta_of(&src()), "acme"),
            Some(("Pod", "default", "web", "u1"))
        );
        assert_eq!(source_of(&meta_of(&src()), "other"), None);
    }

    #[test]
    fn recreated_source_is_stale_not_foreign() {
        let older = Source { uid: "u0", ..src() };
        assert_eq!(ownership(&meta_of(&older), &src()), Ownership::Stale);
    }

    #[rstest]
    #[case::other_tenant(Source { tenant: "evil", ..src() })]
    #[case::other_namespace(Source { namespace: "kube-system", ..src() })]
    #[case::other_name(Source { name: "web2", ..src() })]
    #[case::other_kind(Source { kind: "Service", ..src() })]
    fn anything_else_is_foreign(#[case] host: Source<'static>) {
        assert_eq!(ownership(&meta_of(&host), &src()), Ownership::Foreign);
    }

    #[test]
    fn key_records_round_trip() {
        let labels = BTreeMap::from([
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "2".to_string()),
        ]);
        let annotations = BTreeMap::from([("c".to_string(), "3".to_string())]);
        let meta = ObjectMeta {
            annotations: Some(BTreeMap::from([(
                OWNED_KEYS.to_string(),
                KeySet::record(&labels, &annotations),
            )])),
            ..Default::default()
        };
        let ks = KeySet::recorded(&meta);
        assert_eq!(ks.labels, ["a", "b"]);
        assert_eq!(ks.annotations, ["c", OWNED_KEYS]);
        assert_eq!(
            KeySet::recorded(&ObjectMeta::default()).labels,
            Vec::<String>::new()
        );
    }

    #[test]
    fn unmarked_objects_are_foreign() {
        assert_eq!(
            ownership(&ObjectMeta::default(), &src()),
            Ownership::Foreign
        );
        assert!(is_reserved("vcsync.io/managed-by"));
        assert!(!is_reserved("app.kubernetes.io/name"));
    }
}
