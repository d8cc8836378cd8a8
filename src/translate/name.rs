//! Host names of synced objects.
//!
//! Every object vcsync writes into the host namespace is named from the triple
//! (tenant, virtual namespace, virtual name). The mapping is **injective by construction** for
//! every valid input and stable across releases:
//!
//! 1. Readable form: `{name}-{namespace}-{tenant}-{len(name)}-{len(namespace)}`, lengths in
//!    decimal. The two trailing lengths say where the name ends and the namespace ends, so the
//!    triple can be read back (see [`parse_readable`]): two different triples never share a
//!    readable name. vcluster's `NAME-x-NAMESPACE-x-VCLUSTER` lacks this and collides, e.g.
//!    (`a`, `b-x-c`) and (`a-x-b`, `c`).
//! 2. When the readable form exceeds the kind's limit (63 for DNS labels, 253 for DNS
//!    subdomains): the readable prefix `{name}-{namespace}-{tenant}` cut to fit, trailing `-` and
//!    `.` removed, then `-x` and the first 20 hex digits of
//!    SHA-256(`vcsync/v1` NUL tenant NUL namespace NUL name). NUL cannot occur in a name, so the
//!    hash input is unambiguous.
//!
//! A readable name always ends in a decimal token and a hashed name always ends in a token that
//! starts with `x`, so the two forms never collide with each other. Hashed names can only collide
//! through an 80-bit SHA-256 prefix collision, and even then the ownership markers (see
//! [`crate::markers`]) stop vcsync from touching the other object.

use sha2::{Digest, Sha256};

/// The naming rule a kind's names follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1035 label, at most 63 characters (services).
    Dns1035Label,
    /// RFC 1123 subdomain, at most 253 characters (pods, configmaps, secrets, ingresses, ...).
    Dns1123Subdomain,
}

impl NameRule {
    /// Longest name the rule allows.
    pub fn max_len(self) -> usize {
        match self {
            NameRule::Dns1035Label => 63,
            NameRule::Dns1123Subdomain => 253,
        }
    }
}

/// Hex digits of the hash suffix (80 bits).
const HASH_HEX: usize = 20;

/// The host name of virtual object `name` in virtual namespace `namespace` for `tenant`.
///
/// Inputs must be valid Kubernetes names (the virtual API server validated them): `tenant` and
/// `namespace` DNS labels, `name` valid for `rule`.
pub fn host_name(tenant: &str, namespace: &str, name: &str, rule: NameRule) -> String {
    let readable = format!(
        "{name}-{namespace}-{tenant}-{}-{}",
        name.len(),
        namespace.len()
    );
    if readable.len() <= rule.max_len() {
        return readable;
    }
    let mut h = Sha256::new();
    for part in ["vcsync/v1", tenant, namespace, name] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let hex: String = digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..HASH_HEX]
        .to_string();
    let suffix = format!("-x{hex}");
    let base = format!("{name}-{namespace}-{tenant}");
    // Names are ASCII, so byte truncation is character truncation.
    let mut prefix = &base[..rule.max_len() - suffix.len()];
    prefix = prefix.trim_end_matches(['-', '.']);
    format!("{prefix}{suffix}")
}

/// Read a readable host name back into `(name, namespace, tenant)`; `None` for hashed names or
/// strings that are not host names. Only used to prove injectivity: vcsync looks objects up by
/// their markers, never by parsing names.
pub fn parse_readable(host: &str) -> Option<(&str, &str, &str)> {
    let (rest, ns_len) = host.rsplit_once('-')?;
    let (body, name_len) = rest.rsplit_once('-')?;
    let digits = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
    };
    if !digits(ns_len) || !digits(name_len) {
        return None;
    }
    let (name_len, ns_len): (usize, usize) = (name_len.parse().ok()?, ns_len.parse().ok()?);
    let name = body.get(..name_len)?;
    let rest = body.get(name_len..)?.strip_prefix('-')?;
    let namespace = rest.get(..ns_len)?;
    let tenant = rest.get(ns_len..)?.strip_prefix('-')?;
    Some((name, namespace, tenant))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    fn is_label(s: &str) -> bool {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    }

    fn is_1035(s: &str) -> bool {
        is_label(s) && s.as_bytes()[0].is_ascii_lowercase()
    }

    fn is_subdomain(s: &str) -> bool {
        s.len() <= 253
            && s.split('.').all(|l| {
                let b = l.as_bytes();
                !b.is_empty()
                    && b[0].is_ascii_alphanumeric()
                    && b[b.len() - 1].is_ascii_alphanumeric()
                    && b.iter()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            })
    }

    /// vcluster's scheme collides on these pairs; ours must not.
    #[rstest]
    #[case(("t", "b-x-c", "a"), ("t", "c", "a-x-b"))]
    #[case(("t", "b", "a-x"), ("t", "x-b", "a"))]
    #[case(("t", "ns", "a-1"), ("t", "1-ns", "a"))]
    #[case(("t-a", "b", "c"), ("t", "a-b", "c"))]
    fn known_vcluster_collisions_are_distinct(
        #[case] a: (&str, &str, &str),
        #[case] b: (&str, &str, &str),
    ) {
        for rule in [NameRule::Dns1035Label, NameRule::Dns1123Subdomain] {
            assert_ne!(
                host_name(a.0, a.1, a.2, rule),
                host_name(b.0, b.1, b.2, rule)
            );
        }
    }

    #[test]
    fn readable_names_stay_readable() {
        assert_eq!(
            host_name("acme", "default", "web", NameRule::Dns1035Label),
            "web-default-acme-3-7"
        );
        assert_eq!(
            parse_readable("web-default-acme-3-7"),
            Some(("web", "default", "acme"))
        );
    }

    #[test]
    fn long_names_fall_back_to_a_stable_hash() {
        let name = "a".repeat(60);
        let h = host_name("acme", "default", &name, NameRule::Dns1035Label);
        assert_eq!(h.len(), 63);
        assert!(is_1035(&h), "{h}");
        // Pinned: the algorithm is part of the on-cluster contract and must never change.
        assert_eq!(
            h,
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-xf9f7a1e0daf675ee3bdc"
        );
        assert_eq!(parse_readable(&h), None);
    }

    /// Names built from the pieces that break naive schemes: `x`, `-`, digits, short segments.
    fn tricky_label(max: usize) -> impl Strategy<Value = String> {
        let seg = prop_oneof![
            Just("x"),
            Just("a"),
            Just("0"),
            Just("1"),
            Just("ab"),
            Just("x0"),
            Just("9x")
        ];
        let sep = prop_oneof![Just(""), Just("-"), Just("--")];
        (
            seg.clone(),
            prop::collection::vec((sep, seg), 0..12),
            0usize..3,
        )
            .prop_map(move |(first, rest, pad)| {
                let mut s = first.to_string();
                for (sep, seg) in rest {
                    s.push_str(sep);
                    s.push_str(seg);
                }
                if pad > 0 {
                    s.push_str(&"z".repeat(max)); // sometimes force maximum lengths
                }
                s.truncate(max);
                let s = s.trim_end_matches('-').to_string();
                if s.is_empty() { "x".to_string() } else { s }
            })
    }

    fn tricky_1035(max: usize) -> impl Strategy<Value = String> {
        tricky_label(max).prop_map(|s| {
            if s.as_bytes()[0].is_ascii_digit() {
                format!("x{}", &s[..s.len().min(62)])
                    .trim_end_matches('-')
                    .to_string()
            } else {
                s
            }
        })
    }

    fn tricky_subdomain() -> impl Strategy<Value = String> {
        prop::collection::vec(tricky_label(63), 1..5).prop_map(|parts| {
            let mut s = parts.join(".");
            s.truncate(253);
            s.trim_end_matches(['-', '.']).to_string()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Readable names decode back to their triple: no two triples share one.
        #[test]
        fn readable_form_is_injective(t in tricky_label(63), ns in tricky_label(63), n in tricky_subdomain()) {
            let h = host_name(&t, &ns, &n, NameRule::Dns1123Subdomain);
            if let Some(back) = parse_readable(&h) {
                prop_assert_eq!(back, (n.as_str(), ns.as_str(), t.as_str()));
            } else {
                prop_assert!(h.rsplit('-').next().is_some_and(|last| last.starts_with('x')));
            }
        }

        /// Every host name is valid for its kind, whatever the input.
        #[test]
        fn names_are_valid_for_their_kind(t in tricky_label(63), ns in tricky_label(63), svc in tricky_1035(63), n in tricky_subdomain()) {
            let s = host_name(&t, &ns, &svc, NameRule::Dns1035Label);
            prop_assert!(is_1035(&s), "service name {s:?}");
            let p = host_name(&t, &ns, &n, NameRule::Dns1123Subdomain);
            prop_assert!(is_subdomain(&p), "subdomain {p:?}");
        }

        /// Distinct triples give distinct names (readable and hashed forms alike).
        #[test]
        fn distinct_inputs_give_distinct_names(
            a in (tricky_label(63), tricky_label(63), tricky_1035(63)),
            b in (tricky_label(63), tricky_label(63), tricky_1035(63)),
        ) {
            prop_assume!(a != b);
            prop_assert_ne!(host_name(&a.0, &a.1, &a.2, NameRule::Dns1035Label), host_name(&b.0, &b.1, &b.2, NameRule::Dns1035Label));
        }
    }
}
