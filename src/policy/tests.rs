//! Loading, validation, printing and reporting of the policy.

use super::*;
use rstest::rstest;

#[test]
fn an_empty_document_is_the_secure_default() {
    for doc in ["", "\n", "# nothing\n", "{}"] {
        let p = Policy::from_yaml(doc).unwrap();
        assert_eq!(p, Policy::default(), "{doc:?}");
    }
    let p = Policy::default();
    assert_eq!(p.pod_security.level, Level::Baseline);
    assert!(!p.services.allow_node_port && !p.services.allow_load_balancer);
    assert!(p.services.allowed_external_ip_cidrs.is_empty());
    assert!(p.services.allowed_endpoint_cidrs.is_empty());
    assert!(p.pods.allowed_tolerations.is_empty());
    assert!(!p.pods.volume_types.iter().any(|t| t.0 == "hostPath"));
    assert_eq!(p.ingress.annotations.action, AnnotationAction::Refuse);
    assert_eq!(
        p.ingress.annotations.denied.len(),
        DEFAULT_DENIED_ANNOTATIONS.len()
    );
}

#[test]
fn the_effective_policy_round_trips() {
    let yaml = r#"
podSecurity:
  level: restricted
pods:
  nodeSelector:
    node.kubernetes.io/pool: tenant-a
  tolerations:
    - key: dedicated
      value: tenant-a
      effect: NoSchedule
  runtimeClass:
    forced: gvisor
services:
  allowedEndpointCidrs: [10.20.0.0/16, "fd00:20::/64"]
ingress:
  allowedHosts: ["*.tenant-a.apps.example.com"]
"#;
    let p = Policy::from_yaml(yaml).unwrap();
    let printed = p.to_yaml();
    assert!(printed.contains("level: restricted"), "{printed}");
    assert!(printed.contains("allowNodePort: false"), "{printed}");
    assert!(
        printed.contains("nginx.ingress.kubernetes.io/*-snippet"),
        "{printed}"
    );
    assert!(printed.contains("10.20.0.0/16"), "{printed}");
    assert_eq!(Policy::from_yaml(&printed).unwrap(), p, "{printed}");
    let default = Policy::default().to_yaml();
    assert_eq!(Policy::from_yaml(&default).unwrap(), Policy::default());
}

/// Unknown keys, wrong types and invalid values: the exact YAML path and the reason.
#[rstest]
#[case::unknown_top("pod_security: {level: baseline}\n", "pod_security", "unknown field")]
#[case::unknown_nested(
    "pods:\n  runtimeClass:\n    force: gvisor\n",
    "pods.runtimeClass.force",
    "unknown field `force`"
)]
#[case::typo_flow(
    "services: {allowNodePorts: true}\n",
    "services.allowNodePorts",
    "unknown field"
)]
#[case::bad_level(
    "podSecurity:\n  level: strict\n",
    "podSecurity.level",
    "unknown variant `strict`"
)]
#[case::level_case(
    "podSecurity: {level: Baseline}\n",
    "podSecurity.level",
    "unknown variant"
)]
#[case::bad_bool("services:\n  allowNodePort: yes\n", "services.allowNodePort", "")]
#[case::bad_cidr(
    "services:\n  allowedEndpointCidrs:\n    - 10.0.0.0/8\n    - 10.0.0.1/8\n",
    "services.allowedEndpointCidrs[1]",
    "host bits are set"
)]
#[case::bad_cidr_text(
    "services:\n  deniedCidrs: [metadata]\n",
    "services.deniedCidrs[0]",
    "not an IP address"
)]
#[case::bad_external_ip_cidr(
    "services: {allowedExternalIPCidrs: [1.2.3.0/33]}\n",
    "services.allowedExternalIPCidrs[0]",
    "prefix length"
)]
#[case::bad_pattern(
    "ingress:\n  allowedHosts: [\"foo.*.example.com\"]\n",
    "ingress.allowedHosts[0]",
    "invalid hostname pattern"
)]
#[case::bad_wildcard_tld(
    "ingress:\n  allowedHosts: [\"*.com\"]\n",
    "ingress.allowedHosts[0]",
    "top-level domain"
)]
#[case::bad_glob(
    "ingress:\n  annotations:\n    denied: [\"a b\"]\n",
    "ingress.annotations.denied[0]",
    "invalid annotation pattern"
)]
#[case::bad_action(
    "ingress:\n  annotations: {action: warn}\n",
    "ingress.annotations.action",
    "unknown variant"
)]
#[case::bad_volume_type(
    "pods:\n  volumeTypes: [configMap, hostpath]\n",
    "pods.volumeTypes[1]",
    "unknown volume type \"hostpath\""
)]
#[case::bad_operator(
    "pods:\n  tolerations:\n    - {key: a, operator: Maybe}\n",
    "pods.tolerations[0].operator",
    "unknown variant"
)]
#[case::unknown_toleration_key(
    "pods:\n  allowedTolerations:\n    - key: a\n      valeu: b\n",
    "pods.allowedTolerations[0].valeu",
    "unknown field"
)]
#[case::wrong_type("pods:\n  nodeSelector: [a, b]\n", "pods.nodeSelector", "")]
#[case::selector_key_path(
    "pods:\n  nodeSelector:\n    node.kubernetes.io/pool: [x]\n",
    "pods.nodeSelector[\"node.kubernetes.io/pool\"]",
    ""
)]
#[case::forced_and_allowed(
    "pods:\n  runtimeClass: {forced: gvisor, allowed: [kata]}\n",
    "pods.runtimeClass.allowed",
    "either forced or allowed"
)]
#[case::forced_and_default(
    "storage:\n  class: {forced: a, default: b}\n",
    "storage.class.default",
    "either forced or default"
)]
#[case::bad_class_name(
    "ingress:\n  class: {allowed: [Nginx]}\n",
    "ingress.class.allowed[0]",
    "not a valid class name"
)]
#[case::bad_selector_value(
    "pods:\n  nodeSelector: {pool: \"a b\"}\n",
    "pods.nodeSelector.pool",
    "not a valid label value"
)]
#[case::bad_selector_key(
    "pods:\n  nodeSelector: {\"-pool\": a}\n",
    "pods.nodeSelector[\"-pool\"]",
    "not a valid label key"
)]
#[case::wildcard_allowed_toleration(
    "pods:\n  allowedTolerations:\n    - operator: Exists\n",
    "pods.allowedTolerations[0].key",
    "needs a key"
)]
#[case::equal_without_key(
    "pods:\n  tolerations:\n    - value: x\n",
    "pods.tolerations[0].operator",
    "must be Exists"
)]
#[case::exists_with_value(
    "pods:\n  tolerations:\n    - {key: a, operator: Exists, value: b}\n",
    "pods.tolerations[0].value",
    "must be empty"
)]
#[case::seconds_without_no_execute(
    "pods:\n  tolerations:\n    - {key: a, effect: NoSchedule, tolerationSeconds: 5}\n",
    "pods.tolerations[0].tolerationSeconds",
    "NoExecute"
)]
#[case::not_a_mapping("- a\n- b\n", "", "")]
fn invalid_policies_name_path_and_reason(
    #[case] yaml: &str,
    #[case] path: &str,
    #[case] reason: &str,
) {
    let err = Policy::from_yaml(yaml).unwrap_err();
    assert_eq!(err.path, path, "{err}");
    assert!(err.reason.contains(reason), "{err}");
    let shown = err.to_string();
    let shown_path = if path.is_empty() { "(document)" } else { path };
    assert!(shown.starts_with(&format!("{shown_path}: ")), "{shown}");
}

#[test]
fn parse_errors_carry_the_line() {
    let err = Policy::from_yaml("pods:\n  runtimeClass:\n    force: gvisor\n").unwrap_err();
    assert_eq!(err.line_column, Some((3, 5)));
    assert!(err.to_string().ends_with("(line 3, column 5)"), "{err}");
}

#[test]
fn syntax_errors_are_reported() {
    let err = Policy::from_yaml("pods: [\n").unwrap_err();
    assert!(err.line_column.is_some(), "{err}");
}

#[test]
fn event_message_reads_like_pod_security_admission() {
    let v = vec![
        Violation::new(
            "pss.privileged",
            "spec.containers[0].securityContext.privileged",
            "container \"c\" must not set securityContext.privileged=true",
        ),
        Violation::new(
            "pss.host_path_volumes",
            "spec.volumes[0].hostPath",
            "volume \"h\"",
        ),
    ];
    assert_eq!(
        event_message("Pod", &v),
        "violates PodSecurity \"baseline:latest\": privileged (container \"c\" must not set securityContext.privileged=true), hostPath volumes (volume \"h\")"
    );
    let restricted = Policy::from_yaml("podSecurity: {level: restricted}").unwrap();
    assert!(
        restricted
            .event_message("Pod", &v)
            .starts_with("violates PodSecurity \"restricted:latest\": privileged")
    );
    let v = vec![Violation::new(
        "pss.run_as_non_root",
        "spec.securityContext.runAsNonRoot",
        "pod must not set securityContext.runAsNonRoot=false",
    )];
    assert!(event_message("Pod", &v).starts_with("violates PodSecurity \"restricted:latest\""));
}

#[test]
fn event_message_lists_isolation_rules_by_name() {
    let v = vec![
        Violation::new(
            "service.node_port",
            "spec.type",
            "type NodePort is not allowed",
        ),
        Violation::new(
            "service.external_ips",
            "spec.externalIPs[0]",
            "1.2.3.4 is outside",
        ),
    ];
    assert_eq!(
        event_message("Service", &v),
        "Service violates the isolation policy: service.node_port (spec.type: type NodePort is not allowed), service.external_ips (spec.externalIPs[0]: 1.2.3.4 is outside)"
    );
    assert_eq!(
        v[0].to_string(),
        "service.node_port (type NodePort is not allowed)"
    );
}

#[test]
fn every_rule_name_is_static_and_distinct() {
    let mut all: Vec<&str> = pss::rules()
        .chain(pods::RULES.iter().copied())
        .chain(services::RULES.iter().copied())
        .chain(ingress::RULES.iter().copied())
        .chain(storage::RULES.iter().copied())
        .chain(networkpolicy::RULES.iter().copied())
        .collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "duplicate rule names");
    assert_eq!(all, super::rules().collect::<Vec<_>>().tap_sort());
}

trait TapSort {
    fn tap_sort(self) -> Self;
}

impl TapSort for Vec<&'static str> {
    fn tap_sort(mut self) -> Self {
        self.sort();
        self
    }
}

#[test]
fn uncovered_service_ips_are_those_no_known_cidr_holds() {
    let facts = HostFacts {
        service_cidrs: vec!["10.96.0.0/16".parse().unwrap()],
        ..HostFacts::default()
    };
    let ips: Vec<IpAddr> = ["10.96.3.4", "10.43.0.10", "10.43.0.10", "fd00::1"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let got = facts.uncovered_service_ips(&ips);
    assert_eq!(got, vec![ips[1], ips[3]]);
}
