//! The table of resources the test API server serves: one row per (group, version, plural).
//!
//! Everything else (routing, discovery, storage keys, status-subresource semantics) is driven
//! from this table, so adding a kind is one row here plus, optionally, validation and
//! admission code.

/// Standard verbs of a collection resource.
const STD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces cannot be deleted as a collection.
const NS_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const GPU: &[&str] = &["get", "patch", "update"];

/// A subresource as discovery lists it.
#[derive(Debug, Clone, Copy)]
pub struct Subresource {
    pub name: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
    /// Group/version override for the subresource's kind (e.g. `pods/eviction` is policy/v1).
    pub group: Option<&'static str>,
    pub version: Option<&'static str>,
}

const fn sub(
    name: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource {
        name,
        kind,
        verbs,
        group: None,
        version: None,
    }
}

/// One served resource.
#[derive(Debug, Clone, Copy)]
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Storage bucket: resources that are views of the same objects (core and
    /// events.k8s.io events) share it.
    pub storage: &'static str,
}

impl ResourceDef {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|s| s.name == name)
    }
    /// Whether writes through the main resource ignore `status` (true when a status subresource exists).
    pub fn has_status(&self) -> bool {
        self.has_subresource("status")
    }
    /// `/api/v1` or `/apis/group/version`.
    pub fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }
}

macro_rules! res {
    ($g:expr, $v:expr, $plural:expr, $singular:expr, $kind:expr, $ns:expr, $verbs:expr, $short:expr, $cat:expr, $subs:expr) => {
        ResourceDef {
            group: $g,
            version: $v,
            plural: $plural,
            singular: $singular,
            kind: $kind,
            namespaced: $ns,
            verbs: $verbs,
            short_names: $short,
            categories: $cat,
            subresources: $subs,
            storage: $plural,
        }
    };
}

/// Every resource served, in discovery order (sorted by plural within a group version).
pub static RESOURCES: &[ResourceDef] = &[
    res!(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        STD,
        &["cm"],
        &[],
        &[]
    ),
    res!(
        "",
        "v1",
        "endpoints",
        "endpoints",
        "Endpoints",
        true,
        STD,
        &["ep"],
        &[],
        &[]
    ),
    res!(
        "",
        "v1",
        "events",
        "event",
        "Event",
        true,
        STD,
        &["ev"],
        &[],
        &[]
    ),
    res!(
        "",
        "v1",
        "limitranges",
        "limitrange",
        "LimitRange",
        true,
        STD,
        &["limits"],
        &[],
        &[]
    ),
    res!(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        NS_VERBS,
        &["ns"],
        &[],
        &[
            sub("finalize", "Namespace", &["update"]),
            sub("status", "Namespace", GPU)
        ]
    ),
    res!(
        "",
        "v1",
        "nodes",
        "node",
        "Node",
        false,
        STD,
        &["no"],
        &[],
        &[
            sub(
                "proxy",
                "NodeProxyOptions",
                &["create", "delete", "get", "patch", "update"]
            ),
            sub("status", "Node", GPU)
        ]
    ),
    res!(
        "",
        "v1",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
        STD,
        &["pvc"],
        &[],
        &[sub("status", "PersistentVolumeClaim", GPU)]
    ),
    res!(
        "",
        "v1",
        "persistentvolumes",
        "persistentvolume",
        "PersistentVolume",
        false,
        STD,
        &["pv"],
        &[],
        &[sub("status", "PersistentVolume", GPU)]
    ),
    res!(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        true,
        STD,
        &["po"],
        &["all"],
        &[
            sub("attach", "PodAttachOptions", &["create", "get"]),
            sub("binding", "Binding", &["create"]),
            sub("ephemeralcontainers", "Pod", GPU),
            Subresource {
                name: "eviction",
                kind: "Eviction",
                verbs: &["create"],
                group: Some("policy"),
                version: Some("v1")
            },
            sub("exec", "PodExecOptions", &["create", "get"]),
            sub("log", "Pod", &["get"]),
            sub("portforward", "PodPortForwardOptions", &["create", "get"]),
            sub(
                "proxy",
                "PodProxyOptions",
                &["create", "delete", "get", "patch", "update"]
            ),
            sub("status", "Pod", GPU),
        ]
    ),
    res!(
        "",
        "v1",
        "resourcequotas",
        "resourcequota",
        "ResourceQuota",
        true,
        STD,
        &["quota"],
        &[],
        &[sub("status", "ResourceQuota", GPU)]
    ),
    res!(
        "",
        "v1",
        "secrets",
        "secret",
        "Secret",
        true,
        STD,
        &[],
        &[],
        &[]
    ),
    res!(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        STD,
        &["sa"],
        &[],
        &[Subresource {
            name: "token",
            kind: "TokenRequest",
            verbs: &["create"],
            group: Some("authentication.k8s.io"),
            version: Some("v1")
        }]
    ),
    res!(
        "",
        "v1",
        "services",
        "service",
        "Service",
        true,
        STD,
        &["svc"],
        &["all"],
        &[
            sub(
                "proxy",
                "ServiceProxyOptions",
                &["create", "delete", "get", "patch", "update"]
            ),
            sub("status", "Service", GPU)
        ]
    ),
    res!(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        STD,
        &[],
        &[],
        &[]
    ),
    res!(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        true,
        STD,
        &[],
        &[],
        &[]
    ),
    ResourceDef {
        storage: "events",
        ..res!(
            "events.k8s.io",
            "v1",
            "events",
            "event",
            "Event",
            true,
            STD,
            &["ev"],
            &[],
            &[]
        )
    },
    res!(
        "networking.k8s.io",
        "v1",
        "ingressclasses",
        "ingressclass",
        "IngressClass",
        false,
        STD,
        &[],
        &[],
        &[]
    ),
    res!(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "ingress",
        "Ingress",
        true,
        STD,
        &["ing"],
        &[],
        &[sub("status", "Ingress", GPU)]
    ),
    res!(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "networkpolicy",
        "NetworkPolicy",
        true,
        STD,
        &["netpol"],
        &[],
        &[]
    ),
    res!(
        "node.k8s.io",
        "v1",
        "runtimeclasses",
        "runtimeclass",
        "RuntimeClass",
        false,
        STD,
        &[],
        &[],
        &[]
    ),
    res!(
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        "priorityclass",
        "PriorityClass",
        false,
        STD,
        &["pc"],
        &[],
        &[]
    ),
    res!(
        "apiregistration.k8s.io",
        "v1",
        "apiservices",
        "apiservice",
        "APIService",
        false,
        STD,
        &[],
        &["api-extensions"],
        &[sub("status", "APIService", GPU)]
    ),
    res!(
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "storageclass",
        "StorageClass",
        false,
        STD,
        &["sc"],
        &[],
        &[]
    ),
];

/// Find a resource by group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Find a resource by group and kind (first version).
pub fn find_kind(group: &str, kind: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind)
}

/// Whether the group/version is served at all (unknown ones answer a plain-text 404).
pub fn group_version_known(group: &str, version: &str) -> bool {
    RESOURCES
        .iter()
        .any(|r| r.group == group && r.version == version)
}

/// The API groups (non-core) in the order `/apis` lists them (kube-apiserver's priority order).
pub const GROUP_ORDER: &[&str] = &[
    "apiregistration.k8s.io",
    "events.k8s.io",
    "networking.k8s.io",
    "storage.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
];
