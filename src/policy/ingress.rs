//! Ingresses: a shared ingress controller serves every tenant, so an Ingress must not claim
//! another tenant's hostnames, pick a controller the tenant was not given, or configure the
//! controller beyond routing.
//!
//! - **class**: `spec.ingressClassName` and the legacy `kubernetes.io/ingress.class` annotation
//!   are one setting (both set and different is refused, since controllers disagree on which
//!   wins); an empty class resolves to `ingress.class.default` (the host's default class), and
//!   the host copy carries the resolved class in `spec.ingressClassName` only.
//! - **hosts**: every rule host and TLS host must match `ingress.allowedHosts`; a rule without a
//!   host and `spec.defaultBackend` answer for every hostname and need `allowCatchAll`; a host
//!   another namespace already claims ([`super::HostFacts::claimed_ingress_hosts`]) is refused.
//! - **annotations**: keys matching `ingress.annotations.denied` are refused or stripped.

use k8s_openapi::api::networking::v1::Ingress;

use super::net;
use super::{AnnotationAction, Policy, Violation};

/// The legacy class annotation.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Every static rule name of this module.
pub const RULES: &[&str] = &[
    "ingress.class",
    "ingress.host",
    "ingress.host_claimed",
    "ingress.catch_all",
    "ingress.annotation",
];

/// Every hostname an Ingress claims (rules and TLS), normalised (lower case, no trailing dot),
/// for a cluster-wide claimed-hosts index.
pub fn claimed_hosts(ing: &Ingress) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(spec) = &ing.spec {
        for r in spec.rules.iter().flatten() {
            if let Some(h) = r.host.as_deref().filter(|h| !h.is_empty()) {
                out.push(net::normalize_host(h));
            }
        }
        for t in spec.tls.iter().flatten() {
            for h in t.hosts.iter().flatten() {
                out.push(net::normalize_host(h));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Check a virtual Ingress. `Ok`: the Ingress as it may reach the host (class resolved into
/// `spec.ingressClassName`, the legacy annotation and, with `action: strip`, denied
/// annotations removed); `Err`: every violation.
pub fn check_ingress(policy: &Policy, ing: &Ingress) -> Result<Ingress, Vec<Violation>> {
    let p = &policy.ingress;
    let mut out = ing.clone();
    let mut v = Vec::new();

    let spec_class = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .filter(|c| !c.is_empty());
    let annotation_class = ing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CLASS_ANNOTATION))
        .map(String::as_str)
        .filter(|c| !c.is_empty());
    match (spec_class, annotation_class) {
        (Some(s), Some(a)) if s != a => v.push(Violation::new(
            "ingress.class",
            format!("spec.ingressClassName, metadata.annotations[{CLASS_ANNOTATION:?}]"),
            format!(
                "spec.ingressClassName {s:?} and the {CLASS_ANNOTATION} annotation {a:?} disagree; set only spec.ingressClassName"
            ),
        )),
        (s, a) => match p.class.resolve(s.or(a), false) {
            Ok(class) => {
                out.spec.get_or_insert_with(Default::default).ingress_class_name = class;
                if let Some(anns) = out.metadata.annotations.as_mut() {
                    anns.remove(CLASS_ANNOTATION);
                }
            }
            Err(why) => v.push(Violation::new(
                "ingress.class",
                if s.is_none() && a.is_some() {
                    format!("metadata.annotations[{CLASS_ANNOTATION:?}]")
                } else {
                    "spec.ingressClassName".to_owned()
                },
                format!("IngressClass {why}"),
            )),
        },
    }

    let allowed_list = || {
        if p.allowed_hosts.is_empty() {
            "none".to_owned()
        } else {
            p.allowed_hosts
                .iter()
                .map(|h| h.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let check_host = |field: String, host: &str, v: &mut Vec<Violation>| {
        let normalized = net::normalize_host(host);
        if !p.allowed_hosts.iter().any(|pat| pat.matches(&normalized)) {
            v.push(Violation::new(
                "ingress.host",
                field,
                format!(
                    "host {host:?} does not match ingress.allowedHosts ({})",
                    allowed_list()
                ),
            ));
        } else if policy
            .host_facts
            .claimed_ingress_hosts
            .contains(&normalized)
        {
            v.push(Violation::new(
                "ingress.host_claimed",
                field,
                format!("host {host:?} is already claimed by an Ingress of another namespace"),
            ));
        }
    };
    if let Some(spec) = &ing.spec {
        if spec.default_backend.is_some() && !p.allow_catch_all {
            v.push(Violation::new(
                "ingress.catch_all",
                "spec.defaultBackend",
                "a default backend answers for every hostname the controller serves (ingress.allowCatchAll)",
            ));
        }
        for (i, r) in spec.rules.iter().flatten().enumerate() {
            match r.host.as_deref().filter(|h| !h.is_empty()) {
                Some(h) => check_host(format!("spec.rules[{i}].host"), h, &mut v),
                None if !p.allow_catch_all => v.push(Violation::new(
                    "ingress.catch_all",
                    format!("spec.rules[{i}].host"),
                    "a rule without a host answers for every hostname the controller serves; set a host (ingress.allowCatchAll)",
                )),
                None => {}
            }
        }
        for (i, t) in spec.tls.iter().flatten().enumerate() {
            for (j, h) in t.hosts.iter().flatten().enumerate() {
                check_host(format!("spec.tls[{i}].hosts[{j}]"), h, &mut v);
            }
        }
    }

    let denied: Vec<String> = ing
        .metadata
        .annotations
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| p.annotations.denied.iter().any(|g| g.matches(k)))
        .cloned()
        .collect();
    match p.annotations.action {
        AnnotationAction::Refuse => {
            for k in &denied {
                v.push(Violation::new(
                    "ingress.annotation",
                    format!("metadata.annotations[{k:?}]"),
                    format!("annotation {k:?} is not allowed (ingress.annotations.denied)"),
                ));
            }
        }
        AnnotationAction::Strip => {
            if let Some(anns) = out.metadata.annotations.as_mut() {
                for k in &denied {
                    anns.remove(k);
                }
            }
        }
    }
    if out
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.is_empty())
    {
        out.metadata.annotations = None;
    }

    if v.is_empty() { Ok(out) } else { Err(v) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::{Value, json};

    fn policy(yaml: &str) -> Policy {
        Policy::from_yaml(yaml).unwrap()
    }

    const TENANT: &str = r#"
ingress:
  class: {allowed: [nginx-tenants], default: nginx-tenants}
  allowedHosts: ["*.tenant-a.apps.example.com", shop.example.com]
"#;

    fn ing(annotations: Value, spec: Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "annotations": annotations},
            "spec": spec
        }))
        .unwrap()
    }

    fn rule(host: &str) -> Value {
        json!({"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}})
    }

    fn rules<T>(r: &Result<T, Vec<Violation>>) -> Vec<&'static str> {
        match r {
            Ok(_) => vec![],
            Err(v) => v.iter().map(|v| v.rule).collect(),
        }
    }

    #[rstest]
    #[case::empty_resolves_to_default(json!({}), json!(null), Ok("nginx-tenants"))]
    #[case::allowed(json!({}), json!("nginx-tenants"), Ok("nginx-tenants"))]
    #[case::foreign(json!({}), json!("nginx-internal"), Err("spec.ingressClassName"))]
    #[case::legacy_allowed(json!({"kubernetes.io/ingress.class": "nginx-tenants"}), json!(null), Ok("nginx-tenants"))]
    #[case::legacy_foreign(json!({"kubernetes.io/ingress.class": "nginx-internal"}), json!(null), Err("metadata.annotations"))]
    #[case::both_agree(json!({"kubernetes.io/ingress.class": "nginx-tenants"}), json!("nginx-tenants"), Ok("nginx-tenants"))]
    #[case::both_disagree(json!({"kubernetes.io/ingress.class": "nginx-internal"}), json!("nginx-tenants"), Err("disagree"))]
    fn ingress_class(
        #[case] annotations: Value,
        #[case] class: Value,
        #[case] want: Result<&str, &str>,
    ) {
        let i = ing(
            annotations,
            json!({"ingressClassName": class, "rules": [rule("a.tenant-a.apps.example.com")]}),
        );
        let r = check_ingress(&policy(TENANT), &i);
        match want {
            Ok(c) => {
                let got = r.unwrap();
                assert_eq!(got.spec.unwrap().ingress_class_name.as_deref(), Some(c));
                assert!(
                    got.metadata
                        .annotations
                        .is_none_or(|a| !a.contains_key(CLASS_ANNOTATION))
                );
            }
            Err(w) => {
                let v = r.unwrap_err();
                assert_eq!(v.len(), 1);
                assert_eq!(v[0].rule, "ingress.class");
                assert!(v[0].field.contains(w) || v[0].message.contains(w), "{v:?}");
            }
        }
    }

    #[rstest]
    #[case::no_default("ingress: {class: {allowed: [a]}, allowedHosts: [x.example.com]}", json!(null), false)]
    #[case::forced("ingress: {class: {forced: tenants}, allowedHosts: [x.example.com]}", json!(null), true)]
    #[case::forced_other("ingress: {class: {forced: tenants}, allowedHosts: [x.example.com]}", json!("internal"), false)]
    #[case::default_policy("ingress: {allowedHosts: [x.example.com]}", json!("nginx"), false)]
    fn class_policies(#[case] yaml: &str, #[case] class: Value, #[case] ok: bool) {
        let i = ing(
            json!({}),
            json!({"ingressClassName": class, "rules": [rule("x.example.com")]}),
        );
        assert_eq!(check_ingress(&policy(yaml), &i).is_ok(), ok);
    }

    #[rstest]
    #[case::inside("shop.tenant-a.apps.example.com", vec![])]
    #[case::deeper("a.b.tenant-a.apps.example.com", vec![])]
    #[case::exact("shop.example.com", vec![])]
    #[case::own_wildcard("*.tenant-a.apps.example.com", vec![])]
    #[case::upper_case("Shop.Tenant-A.apps.example.com", vec![])]
    #[case::foreign("shop.tenant-b.apps.example.com", vec!["ingress.host"])]
    #[case::wildcard_outside("*.apps.example.com", vec!["ingress.host"])]
    #[case::parent("tenant-a.apps.example.com", vec!["ingress.host"])]
    #[case::suffix_trick("eviltenant-a.apps.example.com", vec!["ingress.host"])]
    #[case::catch_all("", vec!["ingress.catch_all"])]
    fn hosts(#[case] host: &str, #[case] want: Vec<&str>) {
        let i = ing(json!({}), json!({"rules": [rule(host)]}));
        assert_eq!(rules(&check_ingress(&policy(TENANT), &i)), want);
    }

    #[test]
    fn tls_hosts_default_backend_and_claims_are_checked() {
        let i = ing(
            json!({}),
            json!({
                "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
                "rules": [rule("shop.example.com")],
                "tls": [{"hosts": ["shop.example.com", "bank.example.com"], "secretName": "t"}]
            }),
        );
        let mut p = policy(TENANT);
        p.host_facts
            .claimed_ingress_hosts
            .insert("shop.example.com".into());
        let v = check_ingress(&p, &i).unwrap_err();
        let got: Vec<(&str, &str)> = v.iter().map(|v| (v.rule, v.field.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("ingress.catch_all", "spec.defaultBackend"),
                ("ingress.host_claimed", "spec.rules[0].host"),
                ("ingress.host_claimed", "spec.tls[0].hosts[0]"),
                ("ingress.host", "spec.tls[0].hosts[1]"),
            ]
        );
        let open = policy(
            "ingress: {class: {default: c}, allowedHosts: [\"*.example.com\"], allowCatchAll: true}",
        );
        let i = ing(
            json!({}),
            json!({"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}, "rules": [rule("")]}),
        );
        assert!(check_ingress(&open, &i).is_ok());
    }

    #[rstest]
    #[case::config_snippet("nginx.ingress.kubernetes.io/configuration-snippet", true)]
    #[case::server_snippet("nginx.ingress.kubernetes.io/server-snippet", true)]
    #[case::auth_snippet_mixed_case("nginx.ingress.kubernetes.io/Auth-Snippet", true)]
    #[case::auth_tls_secret("nginx.ingress.kubernetes.io/auth-tls-secret", true)]
    #[case::auth_secret("nginx.ingress.kubernetes.io/auth-secret", true)]
    #[case::auth_url("nginx.ingress.kubernetes.io/auth-url", true)]
    #[case::proxy_ssl_secret("nginx.ingress.kubernetes.io/proxy-ssl-secret", true)]
    #[case::server_alias("nginx.ingress.kubernetes.io/server-alias", true)]
    #[case::traefik_middlewares("traefik.ingress.kubernetes.io/router.middlewares", true)]
    #[case::rewrite_target("nginx.ingress.kubernetes.io/rewrite-target", false)]
    #[case::ssl_redirect("nginx.ingress.kubernetes.io/ssl-redirect", false)]
    #[case::auth_type("nginx.ingress.kubernetes.io/auth-type", false)]
    fn default_annotation_denylist(#[case] key: &str, #[case] denied: bool) {
        let i = ing(
            json!({key: "x", "team": "a"}),
            json!({"rules": [rule("shop.example.com")]}),
        );
        let r = check_ingress(&policy(TENANT), &i);
        assert_eq!(r.is_err(), denied, "{r:?}");
        if let Err(v) = r {
            assert_eq!(v[0].rule, "ingress.annotation");
            assert_eq!(v[0].field, format!("metadata.annotations[{key:?}]"));
        }
        let strip = policy(&format!("{TENANT}  annotations: {{action: strip}}\n"));
        let got = check_ingress(&strip, &i).unwrap();
        let anns = got.metadata.annotations.unwrap();
        assert_eq!(anns.contains_key(key), !denied);
        assert_eq!(anns["team"], "a");
    }

    #[test]
    fn the_denylist_is_replaceable() {
        let p = policy(&format!(
            "{TENANT}  annotations: {{denied: [\"example.com/*\"]}}\n"
        ));
        let ok = ing(
            json!({"nginx.ingress.kubernetes.io/server-snippet": "x"}),
            json!({"rules": [rule("shop.example.com")]}),
        );
        assert!(check_ingress(&p, &ok).is_ok());
        let bad = ing(
            json!({"example.com/anything": "x"}),
            json!({"rules": [rule("shop.example.com")]}),
        );
        assert_eq!(rules(&check_ingress(&p, &bad)), vec!["ingress.annotation"]);
    }

    #[test]
    fn claimed_hosts_are_normalised() {
        let i = ing(
            json!({}),
            json!({"rules": [rule("A.example.com."), rule("")], "tls": [{"hosts": ["a.example.com", "b.example.com"]}]}),
        );
        assert_eq!(claimed_hosts(&i), vec!["a.example.com", "b.example.com"]);
    }
}
