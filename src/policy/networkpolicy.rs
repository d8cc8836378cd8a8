//! Tenant NetworkPolicies: what a tenant policy may allow on the host.
//!
//! NetworkPolicies are a union of allowances: a tenant policy on the host can never take away
//! what the platform's policies allow, but it can add to it. So the checks make sure it adds
//! nothing outside the tenant:
//!
//! - Pod selectors may not use the reserved `vcsync.io/` keys (a selector on
//!   `vcsync.io/managed-by` could name another tenant's pods). Translation then narrows every pod
//!   selector to the tenant ([`crate::translate::networkpolicy`]).
//! - `ipBlock` peers must lie inside `networkPolicies.allowedCidrs`. The ranges no tenant may
//!   ever target (loopback, link-local and metadata, the host API server and nodes, the host's
//!   Service CIDRs, `services.deniedCidrs`, and for IPv6 the ranges that embed IPv4 addresses)
//!   are **carved out** with `except` when they lie inside the block, so `0.0.0.0/0` stays a
//!   usable "the internet" rule; a block that lies inside such a range is **refused**.
//! - A rule without peers means "everything" in Kubernetes; here it becomes everything the tenant
//!   may reach: all of its own pods (`namespaceSelector: {}`) plus one block per allowed CIDR,
//!   with the same carve-outs. It never means other tenants' or the host's pods.

use k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicy, NetworkPolicyPeer};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::net::{self, Cidr};
use super::{Policy, Violation};
use crate::markers;

/// Every static rule name of this module.
pub const RULES: &[&str] = &[
    "networkpolicy.ip_block",
    "networkpolicy.selector",
    "networkpolicy.narrowed",
];

/// The ranges carved out of (or refusing) every ipBlock, with why.
fn denied(policy: &Policy) -> Vec<(Cidr, String)> {
    let mut out: Vec<(Cidr, String)> = net::always_denied()
        .iter()
        .chain(net::IPV4_EMBEDDING)
        .map(|(c, why)| (*c, (*why).to_owned()))
        .collect();
    out.extend(
        super::services::denied(policy)
            .into_iter()
            .map(|(c, why)| (c, why.to_owned())),
    );
    out
}

fn cidr_list(cidrs: &[Cidr]) -> String {
    if cidrs.is_empty() {
        "none".to_owned()
    } else {
        cidrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// An allowed block `cidr`: the tenant's own `except`, plus every denied range inside it.
fn carve(cidr: Cidr, except: &[Cidr], denied: &[(Cidr, String)]) -> IPBlock {
    let mut out: Vec<Cidr> = except.to_vec();
    for (d, _) in denied {
        if cidr.covers(d) && *d != cidr && !out.iter().any(|e| e.covers(d)) {
            out.push(*d);
        }
    }
    IPBlock {
        cidr: cidr.to_string(),
        except: (!out.is_empty()).then(|| out.iter().map(ToString::to_string).collect()),
    }
}

/// Check one ipBlock at `field`: the block as it may reach the host (refused ranges carved out)
/// or why not.
fn check_ip_block(
    policy: &Policy,
    block: &IPBlock,
    denied: &[(Cidr, String)],
) -> Result<IPBlock, String> {
    let cidr: Cidr = block.cidr.parse()?;
    let mut except = Vec::new();
    for e in block.except.iter().flatten() {
        let e: Cidr = e.parse()?;
        if !cidr.covers(&e) || e == cidr {
            return Err(format!("except {e} is not a strict subset of {cidr}"));
        }
        except.push(e);
    }
    if let Some((d, why)) = denied.iter().find(|(d, _)| d.covers(&cidr)) {
        // Some reasons say "inside …" themselves (services.deniedCidrs, the Service CIDR).
        let why = why.strip_prefix("inside ").unwrap_or(why);
        return Err(format!(
            "{cidr} lies inside {why} ({d}) and may never be a target"
        ));
    }
    let allowed = &policy.network_policies.allowed_cidrs;
    if !allowed.iter().any(|a| a.covers(&cidr)) {
        return Err(format!(
            "{cidr} is not inside networkPolicies.allowedCidrs ({})",
            cidr_list(allowed)
        ));
    }
    Ok(carve(cidr, &except, denied))
}

/// Reserved keys in a pod selector at `field`.
fn check_selector(sel: Option<&LabelSelector>, field: &str, v: &mut Vec<Violation>) {
    let Some(sel) = sel else { return };
    let keys = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .chain(sel.match_expressions.iter().flatten().map(|e| &e.key));
    for k in keys {
        if markers::is_reserved(k) {
            v.push(Violation::new(
                "networkpolicy.selector",
                field.to_owned(),
                format!(
                    "{k:?} uses the reserved prefix {:?}: it could select pods outside the tenant",
                    markers::PREFIX
                ),
            ));
        }
    }
}

/// The peers a rule without peers stands for: every pod of the tenant and every allowed CIDR.
fn everything_allowed(policy: &Policy, denied: &[(Cidr, String)]) -> Vec<NetworkPolicyPeer> {
    let mut peers = vec![NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        ..Default::default()
    }];
    peers.extend(
        policy
            .network_policies
            .allowed_cidrs
            .iter()
            // An allowed CIDR that is itself refused adds nothing.
            .filter(|a| !denied.iter().any(|(d, _)| d.covers(a)))
            .map(|a| NetworkPolicyPeer {
                ip_block: Some(carve(*a, &[], denied)),
                ..Default::default()
            }),
    );
    peers
}

/// Check the peers of one rule at `field` (`spec.ingress[0].from`), rewriting them in place.
fn check_peers(
    policy: &Policy,
    peers: &mut Option<Vec<NetworkPolicyPeer>>,
    field: &str,
    denied: &[(Cidr, String)],
    v: &mut Vec<Violation>,
) {
    let list = match peers {
        Some(list) if !list.is_empty() => list,
        _ => {
            *peers = Some(everything_allowed(policy, denied));
            return;
        }
    };
    for (j, peer) in list.iter_mut().enumerate() {
        let at = format!("{field}[{j}]");
        check_selector(peer.pod_selector.as_ref(), &format!("{at}.podSelector"), v);
        if let Some(block) = &peer.ip_block {
            match check_ip_block(policy, block, denied) {
                Ok(b) => peer.ip_block = Some(b),
                Err(why) => v.push(Violation::new(
                    "networkpolicy.ip_block",
                    format!("{at}.ipBlock"),
                    why,
                )),
            }
        }
    }
}

/// Check a virtual NetworkPolicy. `Ok`: the policy as it may reach the host (ipBlocks with the
/// refused ranges carved out, rules without peers spelled out as everything the tenant may
/// reach); `Err`: every violation.
pub fn check_network_policy(
    policy: &Policy,
    np: &NetworkPolicy,
) -> Result<NetworkPolicy, Vec<Violation>> {
    let mut out = np.clone();
    let mut v = Vec::new();
    let denied = denied(policy);
    if let Some(spec) = out.spec.as_mut() {
        check_selector(spec.pod_selector.as_ref(), "spec.podSelector", &mut v);
        for (i, rule) in spec.ingress.iter_mut().flatten().enumerate() {
            let field = format!("spec.ingress[{i}].from");
            check_peers(policy, &mut rule.from, &field, &denied, &mut v);
        }
        for (i, rule) in spec.egress.iter_mut().flatten().enumerate() {
            let field = format!("spec.egress[{i}].to");
            check_peers(policy, &mut rule.to, &field, &denied, &mut v);
        }
    }
    if v.is_empty() { Ok(out) } else { Err(v) }
}

/// What [`check_network_policy`] narrowed in `virt` to get `allowed`: one line per term (rules
/// without peers, ipBlocks that lost refused ranges), for the tenant's Warning Event.
pub fn narrowings(virt: &NetworkPolicy, allowed: &NetworkPolicy) -> Vec<String> {
    let (Some(v), Some(a)) = (&virt.spec, &allowed.spec) else {
        return Vec::new();
    };
    let ingress = v.ingress.iter().flatten().map(|r| r.from.as_ref());
    let egress = v.egress.iter().flatten().map(|r| r.to.as_ref());
    let allowed_ingress = a.ingress.iter().flatten().map(|r| r.from.as_ref());
    let allowed_egress = a.egress.iter().flatten().map(|r| r.to.as_ref());
    let mut out = Vec::new();
    let mut compare = |field: String,
                       before: Option<&Vec<NetworkPolicyPeer>>,
                       after: Option<&Vec<NetworkPolicyPeer>>| {
        let before = before.map(Vec::as_slice).unwrap_or_default();
        if before.is_empty() {
            out.push(format!(
                "{field}: a rule without peers allows only the tenant's pods and networkPolicies.allowedCidrs"
            ));
            return;
        }
        for (j, (b, a)) in before.iter().zip(after.into_iter().flatten()).enumerate() {
            if let (Some(b), Some(a)) = (&b.ip_block, &a.ip_block) {
                let had = b.except.as_ref().map_or(0, Vec::len);
                let added: Vec<&str> = a
                    .except
                    .iter()
                    .flatten()
                    .skip(had)
                    .map(String::as_str)
                    .collect();
                if !added.is_empty() {
                    out.push(format!(
                        "{field}[{j}].ipBlock: {} excludes the refused ranges {}",
                        b.cidr,
                        added.join(", ")
                    ));
                }
            }
        }
    };
    for (i, (b, a)) in ingress.zip(allowed_ingress).enumerate() {
        compare(format!("spec.ingress[{i}].from"), b, a);
    }
    for (i, (b, a)) in egress.zip(allowed_egress).enumerate() {
        compare(format!("spec.egress[{i}].to"), b, a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::{Value, json};

    fn np(spec: Value) -> NetworkPolicy {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec}),
        )
        .expect("a network policy")
    }

    fn policy(yaml: &str) -> Policy {
        let mut p = Policy::from_yaml(yaml).expect("valid policy");
        p.host_facts.api_server = vec!["203.0.113.1".parse().unwrap()];
        p.host_facts.nodes = vec!["198.51.100.7".parse().unwrap()];
        p.host_facts.service_cidrs = vec!["10.96.0.0/12".parse().unwrap()];
        p
    }

    fn egress_block(block: Value) -> NetworkPolicy {
        np(json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": block}]}]}))
    }

    fn block_of(p: &NetworkPolicy) -> Value {
        serde_json::to_value(
            p.spec.as_ref().unwrap().egress.as_ref().unwrap()[0]
                .to
                .as_ref()
                .unwrap()[0]
                .ip_block
                .clone(),
        )
        .unwrap()
    }

    #[test]
    fn the_internet_is_allowed_with_every_refused_range_carved_out() {
        let p = policy("networkPolicies:\n  allowedCidrs: [0.0.0.0/0]\n");
        let out = check_network_policy(&p, &egress_block(json!({"cidr": "0.0.0.0/0"}))).unwrap();
        let block = block_of(&out);
        assert_eq!(block["cidr"], "0.0.0.0/0");
        let except: Vec<&str> = block["except"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        for range in [
            "0.0.0.0/8",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "100.100.100.200/32",
            "224.0.0.0/4",
            "240.0.0.0/4",
            "203.0.113.1/32",
            "198.51.100.7/32",
            "10.96.0.0/12",
        ] {
            assert!(except.contains(&range), "{range} carved out: {except:?}");
        }
        assert!(
            except.iter().all(|e| !e.contains(':')),
            "no IPv6 except in an IPv4 block: {except:?}"
        );
    }

    #[test]
    fn ipv6_blocks_lose_the_ranges_that_embed_ipv4() {
        let p = policy("networkPolicies:\n  allowedCidrs: [\"::/0\"]\n");
        let out = check_network_policy(&p, &egress_block(json!({"cidr": "::/0"}))).unwrap();
        let except = block_of(&out)["except"].clone();
        for range in [
            // How Rust (and Go) print ::ffff:0:0/96.
            "::ffff:0.0.0.0/96",
            "::/96",
            "64:ff9b::/96",
            "64:ff9b:1::/48",
            "fe80::/10",
            "::1/128",
        ] {
            assert!(
                except.as_array().unwrap().iter().any(|e| e == range),
                "{range} carved out: {except}"
            );
        }
    }

    #[rstest]
    #[case::metadata("169.254.169.254/32", "link-local")]
    #[case::loopback("127.0.0.1/32", "loopback")]
    #[case::api_server("203.0.113.1/32", "the host API server")]
    #[case::node("198.51.100.7/32", "a host node")]
    #[case::service_cidr("10.96.4.0/24", "lies inside the host Service CIDR")]
    #[case::mapped_v6("::ffff:a9fe:a9fe/128", "IPv4-mapped IPv6")]
    #[case::outside_allowed(
        "192.0.2.0/24",
        "is not inside networkPolicies.allowedCidrs (10.0.0.0/8, 172.16.0.0/12, ::/0)"
    )]
    #[case::wider_than_allowed("0.0.0.0/0", "is not inside networkPolicies.allowedCidrs")]
    #[case::host_bits("10.0.0.1/8", "host bits are set")]
    #[case::not_a_cidr("ten/8", "is not an IP address")]
    fn refused_blocks(#[case] cidr: &str, #[case] why: &str) {
        let p = policy("networkPolicies:\n  allowedCidrs: [10.0.0.0/8, 172.16.0.0/12, \"::/0\"]\n");
        let v = check_network_policy(&p, &egress_block(json!({"cidr": cidr}))).unwrap_err();
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].rule, "networkpolicy.ip_block");
        assert_eq!(v[0].field, "spec.egress[0].to[0].ipBlock");
        assert!(v[0].message.contains(why), "{}", v[0].message);
    }

    #[test]
    fn the_default_policy_allows_no_ip_block() {
        let v = check_network_policy(
            &Policy::default(),
            &egress_block(json!({"cidr": "8.8.8.8/32"})),
        )
        .unwrap_err();
        assert_eq!(
            v[0].message,
            "8.8.8.8/32 is not inside networkPolicies.allowedCidrs (none)"
        );
    }

    #[test]
    fn an_except_outside_the_block_is_refused_and_one_inside_is_kept() {
        let p = policy("networkPolicies:\n  allowedCidrs: [10.0.0.0/8]\n");
        let v = check_network_policy(
            &p,
            &egress_block(json!({"cidr": "10.1.0.0/16", "except": ["10.2.0.0/24"]})),
        )
        .unwrap_err();
        assert!(v[0].message.contains("not a strict subset"), "{v:?}");
        let ok = check_network_policy(
            &p,
            &egress_block(json!({"cidr": "10.1.0.0/16", "except": ["10.1.2.0/24"]})),
        )
        .unwrap();
        assert_eq!(
            block_of(&ok),
            json!({"cidr": "10.1.0.0/16", "except": ["10.1.2.0/24"]})
        );
    }

    #[rstest]
    #[case::policy_selector(json!({"podSelector": {"matchLabels": {"vcsync.io/managed-by": "other"}}}), "spec.podSelector")]
    #[case::peer_labels(json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"vcsync.io/namespace": "x"}}}]}]}), "spec.ingress[0].from[0].podSelector")]
    #[case::peer_expressions(json!({"podSelector": {}, "egress": [{"to": [{"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "vcsync.io/managed-by", "operator": "Exists"}]}}]}]}), "spec.egress[0].to[0].podSelector")]
    fn reserved_selector_keys_are_refused(#[case] spec: Value, #[case] field: &str) {
        let v = check_network_policy(&Policy::default(), &np(spec)).unwrap_err();
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].rule, "networkpolicy.selector");
        assert_eq!(v[0].field, field);
    }

    #[test]
    fn narrowings_name_every_narrowed_term() {
        let p = policy("networkPolicies:\n  allowedCidrs: [0.0.0.0/0]\n");
        let virt = np(json!({"podSelector": {}, "ingress": [{}],
            "egress": [{"to": [{"namespaceSelector": {}}, {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["192.0.2.0/24"]}}]}]}));
        let allowed = check_network_policy(&p, &virt).unwrap();
        let notes = narrowings(&virt, &allowed);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert_eq!(
            notes[0],
            "spec.ingress[0].from: a rule without peers allows only the tenant's pods and networkPolicies.allowedCidrs"
        );
        assert!(
            notes[1].starts_with("spec.egress[0].to[1].ipBlock: 0.0.0.0/0 excludes the refused ranges 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16"),
            "{}",
            notes[1]
        );
        assert!(
            !notes[1].contains("192.0.2.0/24"),
            "the tenant's own except is not news"
        );
        let plain = np(json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}));
        assert!(narrowings(&plain, &check_network_policy(&p, &plain).unwrap()).is_empty());
    }

    #[test]
    fn a_rule_without_peers_means_everything_the_tenant_may_reach() {
        let p = policy("networkPolicies:\n  allowedCidrs: [0.0.0.0/0, 169.254.0.0/16]\n");
        let out = check_network_policy(
            &p,
            &np(json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}], "egress": [{"to": []}]})),
        )
        .unwrap();
        let spec = out.spec.unwrap();
        for peers in [
            spec.ingress.unwrap()[0].from.clone().unwrap(),
            spec.egress.unwrap()[0].to.clone().unwrap(),
        ] {
            // The tenant's pods, and the one allowed CIDR that is not itself refused.
            assert_eq!(peers.len(), 2, "{peers:?}");
            assert_eq!(peers[0].namespace_selector, Some(LabelSelector::default()));
            assert!(peers[0].pod_selector.is_none() && peers[0].ip_block.is_none());
            let block = peers[1].ip_block.as_ref().unwrap();
            assert_eq!(block.cidr, "0.0.0.0/0");
            assert!(
                block
                    .except
                    .as_ref()
                    .unwrap()
                    .contains(&"169.254.0.0/16".to_owned())
            );
        }
    }
}
