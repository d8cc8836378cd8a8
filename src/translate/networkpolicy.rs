//! Virtual NetworkPolicies as host NetworkPolicies.
//!
//! Every host copy of a tenant pod lives in the one host namespace and carries the tenant's
//! labels unchanged plus `vcsync.io/managed-by=<tenant>` and `vcsync.io/namespace=<virtual
//! namespace>` (which tenants cannot set). So the host policy selects by those:
//!
//! - `spec.podSelector` and every peer `podSelector` without a `namespaceSelector` gain the
//!   tenant and the policy's virtual namespace ([`Context::selector_labels`]);
//! - a peer with a `namespaceSelector` is matched against the **virtual** Namespaces' labels
//!   here, and becomes a pod selector over the tenant label and `vcsync.io/namespace In (the
//!   matching virtual namespaces)`; an empty `namespaceSelector` is every namespace of the
//!   tenant (the tenant label alone); one that matches no namespace becomes a selector that
//!   matches no pod (dropping the peer could leave a rule without peers, which allows all);
//! - the host policy never has a `namespaceSelector`, so it can never name a host namespace.
//!
//! The isolation policy ([`crate::policy::check_network_policy`]) has already checked the
//! ipBlocks and spelled out rules without peers; they are copied as they are, like ports
//! (named ports too: container port names are copied to the host pods unchanged).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::core::{Selector, SelectorExt};

use super::{Context, NameRule, TranslateError};
use crate::markers;

/// The label kube-apiserver puts on every Namespace, naming it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The labels of each virtual namespace, by name.
pub type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

/// A virtual Namespace's labels as namespace selectors see them: with
/// `kubernetes.io/metadata.name`, which kube-apiserver always sets.
pub fn namespace_labels(ns: &Namespace) -> (String, BTreeMap<String, String>) {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let mut labels = ns.metadata.labels.clone().unwrap_or_default();
    labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
    (name, labels)
}

/// Whether `np` has a peer whose meaning depends on the virtual namespaces' labels (such a
/// policy is translated again when they change).
pub fn depends_on_namespaces(np: &NetworkPolicy) -> bool {
    let Some(spec) = &np.spec else { return false };
    let peers = spec
        .ingress
        .iter()
        .flatten()
        .flat_map(|r| r.from.iter().flatten())
        .chain(
            spec.egress
                .iter()
                .flatten()
                .flat_map(|r| r.to.iter().flatten()),
        );
    peers
        .filter_map(|p| p.namespace_selector.as_ref())
        .any(|s| !is_empty_selector(s))
}

fn is_empty_selector(s: &LabelSelector) -> bool {
    s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// The host NetworkPolicy for virtual `np` (already checked by the isolation policy), with
/// namespace selectors resolved against `namespaces`. Refused: a reserved key in a pod
/// selector, a peer with nothing in it, a selector that does not parse.
pub fn host_network_policy(
    ctx: &Context,
    np: &NetworkPolicy,
    namespaces: &NamespaceLabels,
) -> Result<NetworkPolicy, Vec<TranslateError>> {
    let ns = np.metadata.namespace.as_deref().unwrap_or("");
    let mut errs = Vec::new();
    let meta = ctx
        .host_meta("NetworkPolicy", &np.metadata, NameRule::Dns1123Subdomain)
        .map_err(|e| errs.extend(e))
        .ok();
    let spec = np.spec.clone().unwrap_or_default();
    let pod_selector = tenant_pods(
        ctx,
        ns,
        spec.pod_selector.as_ref(),
        "spec.podSelector",
        &mut errs,
    );
    let mut peers = |list: Option<Vec<NetworkPolicyPeer>>, field: String| {
        list.map(|list| {
            list.iter()
                .enumerate()
                .map(|(j, p)| {
                    host_peer(ctx, ns, p, namespaces, &format!("{field}[{j}]"), &mut errs)
                })
                .collect::<Vec<_>>()
        })
    };
    let ingress: Option<Vec<NetworkPolicyIngressRule>> = spec.ingress.clone().map(|rules| {
        rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| NetworkPolicyIngressRule {
                from: peers(r.from, format!("spec.ingress[{i}].from")),
                ports: r.ports,
            })
            .collect()
    });
    let egress: Option<Vec<NetworkPolicyEgressRule>> = spec.egress.clone().map(|rules| {
        rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| NetworkPolicyEgressRule {
                to: peers(r.to, format!("spec.egress[{i}].to")),
                ports: r.ports,
            })
            .collect()
    });
    // As kube-apiserver defaults them: Ingress always, Egress when there are egress rules.
    // Written explicitly so the host never has to guess.
    let policy_types = match spec.policy_types.filter(|t| !t.is_empty()) {
        Some(t) => t,
        None => {
            let mut t = vec!["Ingress".to_owned()];
            if egress.as_ref().is_some_and(|e| !e.is_empty()) {
                t.push("Egress".to_owned());
            }
            t
        }
    };
    match meta {
        Some(metadata) if errs.is_empty() => Ok(NetworkPolicy {
            metadata,
            spec: Some(NetworkPolicySpec {
                pod_selector,
                ingress,
                egress,
                policy_types: Some(policy_types),
            }),
        }),
        _ => Err(errs),
    }
}

/// Tenant selector `sel` narrowed to the tenant's pods of virtual namespace `ns`.
fn tenant_pods(
    ctx: &Context,
    ns: &str,
    sel: Option<&LabelSelector>,
    field: &str,
    errs: &mut Vec<TranslateError>,
) -> Option<LabelSelector> {
    let mut out = tenant_terms(sel, field, errs);
    out.match_labels
        .get_or_insert_with(BTreeMap::new)
        .extend(ctx.selector_labels(ns));
    Some(out)
}

/// A copy of tenant selector `sel` (reserved keys refused), never matching more than `sel`.
fn tenant_terms(
    sel: Option<&LabelSelector>,
    field: &str,
    errs: &mut Vec<TranslateError>,
) -> LabelSelector {
    let sel = sel.cloned().unwrap_or_default();
    for key in sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .chain(sel.match_expressions.iter().flatten().map(|e| &e.key))
    {
        if markers::is_reserved(key) {
            errs.push(TranslateError::ReservedKey {
                field: "a pod selector of the NetworkPolicy",
                key: format!("{field}: {key}"),
            });
        }
    }
    sel
}

fn host_peer(
    ctx: &Context,
    ns: &str,
    peer: &NetworkPolicyPeer,
    namespaces: &NamespaceLabels,
    field: &str,
    errs: &mut Vec<TranslateError>,
) -> NetworkPolicyPeer {
    if let Some(block) = &peer.ip_block {
        if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
            errs.push(TranslateError::Invalid {
                field: field.to_owned(),
                value: "ipBlock with a selector".to_owned(),
                reason: "an ipBlock peer may not have a podSelector or namespaceSelector",
            });
        }
        return NetworkPolicyPeer {
            ip_block: Some(block.clone()),
            ..Default::default()
        };
    }
    let pods = |errs: &mut Vec<TranslateError>| {
        tenant_terms(
            peer.pod_selector.as_ref(),
            &format!("{field}.podSelector"),
            errs,
        )
    };
    let selector = match &peer.namespace_selector {
        None if peer.pod_selector.is_none() => {
            errs.push(TranslateError::Missing {
                field: format!("{field}: podSelector, namespaceSelector or ipBlock"),
            });
            return NetworkPolicyPeer::default();
        }
        // Pods of the policy's own namespace.
        None => tenant_pods(ctx, ns, peer.pod_selector.as_ref(), field, errs).unwrap_or_default(),
        // Every namespace of the tenant: the tenant label alone.
        Some(nss) if is_empty_selector(nss) => {
            let mut sel = pods(errs);
            sel.match_labels
                .get_or_insert_with(BTreeMap::new)
                .insert(markers::MANAGED_BY.to_owned(), ctx.tenant.clone());
            sel
        }
        Some(nss) => {
            let matching = match Selector::try_from(nss.clone()) {
                Ok(s) => namespaces
                    .iter()
                    .filter(|(_, labels)| s.matches(labels))
                    .map(|(name, _)| name.clone())
                    .collect::<Vec<_>>(),
                Err(e) => {
                    errs.push(TranslateError::Invalid {
                        field: format!("{field}.namespaceSelector"),
                        value: e.to_string(),
                        reason: "not a valid label selector",
                    });
                    Vec::new()
                }
            };
            let mut sel = pods(errs);
            sel.match_labels
                .get_or_insert_with(BTreeMap::new)
                .insert(markers::MANAGED_BY.to_owned(), ctx.tenant.clone());
            let exprs = sel.match_expressions.get_or_insert_with(Vec::new);
            if matching.is_empty() {
                // With the tenant label required above, this matches no pod at all.
                exprs.push(LabelSelectorRequirement {
                    key: markers::MANAGED_BY.to_owned(),
                    operator: "DoesNotExist".to_owned(),
                    values: None,
                });
            } else {
                exprs.push(LabelSelectorRequirement {
                    key: markers::VIRTUAL_NAMESPACE_LABEL.to_owned(),
                    operator: "In".to_owned(),
                    values: Some(matching),
                });
            }
            sel
        }
    };
    NetworkPolicyPeer {
        pod_selector: Some(selector),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;
    use serde_json::{Value, json};

    use crate::translate::test_ctx as ctx;

    fn np(spec: Value) -> NetworkPolicy {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "labels": {"team": "a"}},
            "spec": spec
        }))
        .expect("a network policy")
    }

    fn namespaces() -> NamespaceLabels {
        [
            ("shop", json!({"env": "prod", "tier": "front"})),
            ("db", json!({"env": "prod", "tier": "data"})),
            ("dev", json!({"env": "dev"})),
        ]
        .into_iter()
        .map(|(name, labels)| {
            let ns: Namespace =
                serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
                    .unwrap();
            namespace_labels(&ns)
        })
        .collect()
    }

    fn translate(spec: Value) -> NetworkPolicy {
        host_network_policy(&ctx(), &np(spec), &namespaces()).expect("translates")
    }

    fn peer(p: &NetworkPolicy) -> Value {
        let spec = p.spec.as_ref().unwrap();
        let rule = spec.ingress.as_ref().unwrap()[0].from.as_ref().unwrap()[0].clone();
        serde_json::to_value(rule).unwrap()
    }

    #[test]
    fn network_policy_snapshot() {
        let host = translate(json!({
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{
                "from": [
                    {"podSelector": {"matchLabels": {"app": "shop"}}},
                    {"namespaceSelector": {"matchLabels": {"env": "prod"}}, "podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["api"]}]}},
                    {"namespaceSelector": {}}
                ],
                "ports": [{"protocol": "TCP", "port": "http"}, {"protocol": "TCP", "port": 8000, "endPort": 8080}]
            }],
            "egress": [{
                "to": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}}],
                "ports": [{"protocol": "UDP", "port": 53}]
            }]
        }));
        insta::assert_yaml_snapshot!("network_policy", host);
    }

    #[rstest]
    #[case::same_namespace(
        json!({"podSelector": {"matchLabels": {"app": "a"}}}),
        json!({"podSelector": {"matchLabels": {"app": "a", "vcsync.io/managed-by": "acme", "vcsync.io/namespace": "shop"}}})
    )]
    #[case::empty_pod_selector_is_the_whole_namespace(
        json!({"podSelector": {}}),
        json!({"podSelector": {"matchLabels": {"vcsync.io/managed-by": "acme", "vcsync.io/namespace": "shop"}}})
    )]
    #[case::every_tenant_namespace(
        json!({"namespaceSelector": {}}),
        json!({"podSelector": {"matchLabels": {"vcsync.io/managed-by": "acme"}}})
    )]
    #[case::matching_namespaces(
        json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}}),
        json!({"podSelector": {"matchLabels": {"vcsync.io/managed-by": "acme"}, "matchExpressions": [{"key": "vcsync.io/namespace", "operator": "In", "values": ["db", "shop"]}]}})
    )]
    #[case::by_metadata_name(
        json!({"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["shop", "db"]}]}, "podSelector": {"matchLabels": {"app": "x"}}}),
        json!({"podSelector": {"matchLabels": {"app": "x", "vcsync.io/managed-by": "acme"}, "matchExpressions": [{"key": "vcsync.io/namespace", "operator": "In", "values": ["dev"]}]}})
    )]
    #[case::no_namespace_matches(
        json!({"namespaceSelector": {"matchLabels": {"env": "staging"}}}),
        json!({"podSelector": {"matchLabels": {"vcsync.io/managed-by": "acme"}, "matchExpressions": [{"key": "vcsync.io/managed-by", "operator": "DoesNotExist"}]}})
    )]
    #[case::ip_block(
        json!({"ipBlock": {"cidr": "192.0.2.0/24"}}),
        json!({"ipBlock": {"cidr": "192.0.2.0/24"}})
    )]
    fn peers(#[case] virt: Value, #[case] host: Value) {
        let out = translate(json!({"podSelector": {}, "ingress": [{"from": [virt]}]}));
        assert_eq!(peer(&out), host);
    }

    #[rstest]
    #[case::ingress_only(json!({"podSelector": {}}), vec!["Ingress"])]
    #[case::egress_rules(json!({"podSelector": {}, "egress": [{"to": [{"namespaceSelector": {}}]}]}), vec!["Ingress", "Egress"])]
    #[case::explicit(json!({"podSelector": {}, "policyTypes": ["Egress"]}), vec!["Egress"])]
    fn policy_types_are_kept_or_derived(#[case] spec: Value, #[case] want: Vec<&str>) {
        let out = translate(spec);
        assert_eq!(out.spec.unwrap().policy_types.unwrap(), want);
    }

    #[rstest]
    #[case::reserved_policy_selector(json!({"podSelector": {"matchLabels": {"vcsync.io/managed-by": "x"}}}))]
    #[case::reserved_peer_expression(json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "vcsync.io/namespace", "operator": "Exists"}]}}]}]}))]
    #[case::empty_peer(json!({"podSelector": {}, "ingress": [{"from": [{}]}]}))]
    #[case::block_with_selector(json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}, "podSelector": {}}]}]}))]
    #[case::bad_operator(json!({"podSelector": {}, "egress": [{"to": [{"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}]}]}))]
    fn untranslatable(#[case] spec: Value) {
        assert!(host_network_policy(&ctx(), &np(spec), &namespaces()).is_err());
    }

    #[test]
    fn only_namespace_dependent_policies_follow_namespace_changes() {
        assert!(depends_on_namespaces(&np(
            json!({"podSelector": {}, "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"a": "b"}}}]}]})
        )));
        assert!(!depends_on_namespaces(&np(
            json!({"podSelector": {}, "egress": [{"to": [{"namespaceSelector": {}}]}]})
        )));
    }

    fn arb_selector() -> impl Strategy<Value = Option<LabelSelector>> {
        let key = prop::sample::select(vec!["app", "tier", "role", "x/y"]);
        let val = prop::sample::select(vec!["a", "b", "c"]);
        let op = prop::sample::select(vec!["In", "NotIn", "Exists", "DoesNotExist"]);
        let labels = prop::collection::btree_map(
            key.clone().prop_map(String::from),
            val.clone().prop_map(String::from),
            0..3,
        );
        let exprs = prop::collection::vec(
            (
                key,
                op,
                prop::collection::vec(val.prop_map(String::from), 1..3),
            )
                .prop_map(|(k, op, vals)| LabelSelectorRequirement {
                    key: k.into(),
                    operator: op.into(),
                    values: matches!(op, "In" | "NotIn").then_some(vals),
                }),
            0..2,
        );
        prop::option::of((labels, exprs).prop_map(|(l, e)| LabelSelector {
            match_labels: (!l.is_empty()).then_some(l),
            match_expressions: (!e.is_empty()).then_some(e),
        }))
    }

    fn arb_peer() -> impl Strategy<Value = NetworkPolicyPeer> {
        prop_oneof![
            (arb_selector(), arb_selector()).prop_map(|(p, n)| NetworkPolicyPeer {
                pod_selector: p
                    .clone()
                    .or_else(|| n.is_none().then(LabelSelector::default)),
                namespace_selector: n,
                ip_block: None,
            }),
            Just(NetworkPolicyPeer {
                ip_block: Some(k8s_openapi::api::networking::v1::IPBlock {
                    cidr: "192.0.2.0/24".into(),
                    except: None
                }),
                ..Default::default()
            }),
        ]
    }

    /// A selector that cannot match a pod without the tenant label.
    fn requires_tenant(sel: &LabelSelector) -> bool {
        sel.match_labels
            .as_ref()
            .and_then(|l| l.get(markers::MANAGED_BY))
            .is_some_and(|t| t == "acme")
    }

    proptest! {
        /// No widening: the host policy only ever applies to the tenant's pods of its own
        /// virtual namespace, and every pod peer needs the tenant label (no namespaceSelector
        /// that could name host namespaces); a host pod of another tenant or of the platform
        /// matches neither.
        #[test]
        fn translated_policies_only_select_tenant_pods(
            pod_selector in arb_selector(),
            ingress in prop::collection::vec(prop::collection::vec(arb_peer(), 1..4), 0..3),
            egress in prop::collection::vec(prop::collection::vec(arb_peer(), 1..4), 0..3),
            pod_labels in prop::collection::btree_map(
                prop::sample::select(vec!["app", "tier", "role", "x/y", markers::MANAGED_BY, markers::VIRTUAL_NAMESPACE_LABEL]).prop_map(String::from),
                prop::sample::select(vec!["a", "b", "c", "acme", "shop", "other"]).prop_map(String::from),
                0..5,
            ),
        ) {
            let virt = NetworkPolicy {
                metadata: np(json!({})).metadata,
                spec: Some(NetworkPolicySpec {
                    pod_selector,
                    ingress: Some(ingress.into_iter().map(|from| NetworkPolicyIngressRule { from: Some(from), ports: None }).collect()),
                    egress: Some(egress.into_iter().map(|to| NetworkPolicyEgressRule { to: Some(to), ports: None }).collect()),
                    policy_types: None,
                }),
            };
            let host = host_network_policy(&ctx(), &virt, &namespaces()).expect("translates");
            let spec = host.spec.unwrap();
            let sel = spec.pod_selector.unwrap();
            prop_assert!(requires_tenant(&sel));
            prop_assert_eq!(sel.match_labels.as_ref().unwrap().get(markers::VIRTUAL_NAMESPACE_LABEL), Some(&"shop".to_owned()));
            let peers = spec.ingress.iter().flatten().flat_map(|r| r.from.iter().flatten())
                .chain(spec.egress.iter().flatten().flat_map(|r| r.to.iter().flatten()));
            for p in peers {
                prop_assert!(p.namespace_selector.is_none());
                match (&p.pod_selector, &p.ip_block) {
                    (Some(s), None) => {
                        prop_assert!(requires_tenant(s));
                        // Semantically too: a pod without the tenant's label never matches.
                        let s = Selector::try_from(s.clone()).unwrap();
                        if pod_labels.get(markers::MANAGED_BY).map(String::as_str) != Some("acme") {
                            prop_assert!(!s.matches(&pod_labels));
                        }
                    }
                    (None, Some(_)) => {}
                    other => prop_assert!(false, "peer {:?}", other),
                }
            }
        }
    }
}
