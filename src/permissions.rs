//! The host API permissions vcsync needs, in one place.
//!
//! The namespace-scoped Role in `manifests/base/rbac.yaml` must grant exactly
//! [`HOST_PERMISSIONS`], no more and no less; `tests/manifests.rs` renders the
//! manifests and compares the two as sets of (group, resource, verb). So when
//! code under `src/sync/` (or leader election, or the kubeconfig Secret) starts
//! making a new kind of host request, add it here *and* to the Role, or the
//! test fails; when a request goes away, remove it from both.
//!
//! How each verb arises:
//! - `list`, `watch`: the kube-runtime reflectors over host objects
//!   (`sync::cached_stream`), always limited to the host namespace.
//! - `create`, `update`, `delete`: `sync::create_host`, `sync::replace_host`
//!   (a PUT: vcsync never patches host objects), `sync::delete_host`.
//! - `get`: the ownership check after a create answered 409 (`sync::create_host`),
//!   the tenant API Service lookup (`sync::pods`), leader election and the
//!   kubeconfig Secret ([`crate::kubeconfig::ensure_kubeconfig_secret`]).
//! - `list` of ResourceQuotas, LimitRanges and NetworkPolicies: the guardrail
//!   check ([`crate::guardrails`]); quotas and limit ranges are never written.
//!   NetworkPolicies are also mirrored (tenant policies, `sync::networkpolicies`):
//!   vcsync only ever updates or deletes those carrying its ownership markers.
//! - `pods/log`, `pods/exec`, `pods/attach`, `pods/portforward`: the kubelet
//!   endpoint of the virtual nodes ([`crate::kubelet`]), for the host copies of
//!   the tenant's pods. Never `nodes/proxy`: it would reach every pod on a node.
//! - `list` of `pods.metrics.k8s.io`: the metrics API of the virtual cluster
//!   ([`crate::metrics_api`]) reads the host namespace's PodMetrics. Never
//!   `nodes.metrics.k8s.io`: host nodes' figures are host-only data.
//!
//! Host status subresources are never written (status only flows up to the
//! virtual API), and host Events are only read (events vcsync records go to
//! the virtual API), so neither appears here.
//!
//! The virtual API is used with the k3s admin kubeconfig and needs no list
//! (the metrics API also creates SubjectAccessReviews there, which admin may).

use std::collections::BTreeSet;

/// Requests vcsync makes for one resource: its API group (`""` is the core
/// group), resource name, and verbs in RBAC terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// API group, `""` for the core group.
    pub group: &'static str,
    /// Resource (plural, lower case; `a/b` for a subresource).
    pub resource: &'static str,
    /// RBAC verbs.
    pub verbs: &'static [&'static str],
    /// Which code makes these requests (for the docs and reviewers).
    pub used_by: &'static str,
}

/// Verbs of a kind vcsync mirrors into the host namespace.
const MIRRORED: &[&str] = &["get", "list", "watch", "create", "update", "delete"];

/// Every request vcsync makes to the host API, all in the host namespace.
///
/// Keep in sync with `src/sync/` (and leader election and
/// [`crate::kubeconfig`]) and with the Role in `manifests/base/rbac.yaml`.
pub const HOST_PERMISSIONS: &[Permission] = &[
    Permission {
        group: "",
        resource: "pods",
        verbs: MIRRORED,
        used_by: "sync::pods (host pods; status is only read)",
    },
    Permission {
        group: "",
        resource: "secrets",
        verbs: MIRRORED,
        used_by: "sync::kinds (referenced secrets), sync::pods (token secrets), kubeconfig Secret",
    },
    Permission {
        group: "",
        resource: "configmaps",
        verbs: MIRRORED,
        used_by: "sync::kinds (referenced config maps)",
    },
    Permission {
        group: "",
        resource: "services",
        verbs: MIRRORED,
        used_by: "sync::kinds (services), sync::pods (get of the tenant API service), service_cidr (a dry-run create naming the Service range)",
    },
    Permission {
        group: "",
        resource: "endpoints",
        verbs: MIRRORED,
        used_by: "sync::kinds (endpoints of selector-less services)",
    },
    Permission {
        group: "discovery.k8s.io",
        resource: "endpointslices",
        verbs: MIRRORED,
        used_by: "sync::kinds (endpoint slices of selector-less services)",
    },
    Permission {
        group: "networking.k8s.io",
        resource: "ingresses",
        verbs: MIRRORED,
        used_by: "sync::kinds (ingresses; status is only read)",
    },
    Permission {
        group: "",
        resource: "persistentvolumeclaims",
        verbs: MIRRORED,
        used_by: "sync::pvcs (claims; status and volumeName are only read, host volumes never)",
    },
    Permission {
        group: "",
        resource: "events",
        verbs: &["list", "watch"],
        used_by: "sync::events (host events copied up)",
    },
    Permission {
        group: "",
        resource: "resourcequotas",
        verbs: &["list"],
        used_by: "guardrails (is there a ResourceQuota?)",
    },
    Permission {
        group: "",
        resource: "limitranges",
        verbs: &["list"],
        used_by: "guardrails (is there a LimitRange?)",
    },
    Permission {
        group: "networking.k8s.io",
        resource: "networkpolicies",
        verbs: MIRRORED,
        used_by: "sync::networkpolicies (tenant NetworkPolicies), guardrails (list: is there a default-deny NetworkPolicy?)",
    },
    Permission {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update"],
        used_by: "leader election (one Lease in the host namespace)",
    },
    Permission {
        group: "",
        resource: "pods/log",
        verbs: &["get"],
        used_by: "kubelet (kubectl logs of a tenant pod)",
    },
    // The kubelet endpoint forwards the caller's method: POST (kubectl, RBAC `create`) or GET
    // (RBAC `get`), so both are granted, on these subresources only.
    Permission {
        group: "",
        resource: "pods/exec",
        verbs: &["get", "create"],
        used_by: "kubelet (kubectl exec and cp)",
    },
    Permission {
        group: "",
        resource: "pods/attach",
        verbs: &["get", "create"],
        used_by: "kubelet (kubectl attach)",
    },
    Permission {
        group: "",
        resource: "pods/portforward",
        verbs: &["get", "create"],
        used_by: "kubelet (kubectl port-forward)",
    },
    Permission {
        group: "metrics.k8s.io",
        resource: "pods",
        verbs: &["list"],
        used_by: "metrics_api (kubectl top pods: the host namespace's PodMetrics, read only)",
    },
];

/// Cluster-scoped requests that an optional ClusterRole may grant
/// (`manifests/components/host-nodes`). Without it vcsync still works:
/// `sync::nodes` synthesizes virtual nodes when the host answers 403, and the
/// guardrail check reports the Namespace's Pod Security labels as unknown.
pub const OPTIONAL_CLUSTER_PERMISSIONS: &[Permission] = &[
    Permission {
        group: "",
        resource: "nodes",
        verbs: &["get"],
        used_by: "sync::nodes (capacity, conditions and labels of the nodes tenant pods run on)",
    },
    Permission {
        group: "",
        resource: "namespaces",
        verbs: &["get"],
        used_by: "guardrails (the host namespace's Pod Security labels; a Role cannot grant it)",
    },
];

/// `permissions` flattened to a set of (group, resource, verb).
pub fn triples(permissions: &[Permission]) -> BTreeSet<(String, String, String)> {
    permissions
        .iter()
        .flat_map(|p| {
            p.verbs
                .iter()
                .map(|v| (p.group.to_owned(), p.resource.to_owned(), (*v).to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_resource_is_listed_twice() {
        for list in [HOST_PERMISSIONS, OPTIONAL_CLUSTER_PERMISSIONS] {
            let mut seen = BTreeSet::new();
            for p in list {
                assert!(seen.insert((p.group, p.resource)), "{p:?} listed twice");
                assert!(!p.verbs.is_empty(), "{p:?} has no verbs");
            }
        }
    }

    #[test]
    fn vcsync_never_patches_escalates_or_writes_status_on_the_host() {
        for (_, resource, verb) in triples(HOST_PERMISSIONS) {
            assert!(
                ![
                    "patch",
                    "deletecollection",
                    "escalate",
                    "bind",
                    "impersonate",
                    "*"
                ]
                .contains(&verb.as_str()),
                "{resource}: {verb}"
            );
            // The only subresources: the kubelet endpoint's pod streams (no status writes).
            if let Some((parent, sub)) = resource.split_once('/') {
                assert_eq!(parent, "pods", "{resource}");
                assert!(
                    ["log", "exec", "attach", "portforward"].contains(&sub),
                    "{resource}: no other subresources"
                );
            }
        }
    }

    #[test]
    fn nothing_node_wide_is_ever_asked_for() {
        // nodes/proxy reaches every pod on a node (and the kubelet's own API): an escape path.
        for list in [HOST_PERMISSIONS, OPTIONAL_CLUSTER_PERMISSIONS] {
            for (_, resource, verb) in triples(list) {
                assert!(
                    !resource.starts_with("nodes/"),
                    "{resource}: {verb} must never be granted"
                );
                if resource == "nodes" {
                    assert_eq!(verb, "get", "nodes: only get");
                }
            }
        }
    }

    #[test]
    fn triples_flatten_every_verb() {
        let t = triples(&[Permission {
            group: "g",
            resource: "r",
            verbs: &["get", "list"],
            used_by: "",
        }]);
        assert_eq!(
            t.into_iter().collect::<Vec<_>>(),
            [
                ("g".into(), "r".into(), "get".into()),
                ("g".into(), "r".into(), "list".into())
            ]
        );
    }
}
