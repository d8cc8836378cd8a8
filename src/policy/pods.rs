//! Pods: Pod Security plus the isolation rules the PSS do not cover.
//!
//! [`check_pod`] returns the pod as it may reach the host, rewritten where the policy decides
//! rather than the tenant:
//! - **node pool**: the policy's `nodeSelector` and `tolerations` are added; tenant tolerations
//!   survive only if allowlisted, a wildcard toleration (empty key, `Exists`) never; a tenant
//!   `nodeName` is dropped (the host schedules). Tenant node affinity is ANDed with the pool's
//!   node selector, so it can only narrow placement; a required term that contradicts the pool
//!   is refused so the tenant learns why the pod would never schedule;
//! - **RuntimeClass / PriorityClass**: forced, defaulted or checked against the allowlist;
//! - **volumes**: only the policy's volume types; generic ephemeral volumes follow the storage
//!   policy like PVCs;
//! - **pod (anti-)affinity** may not look at other namespaces' pods (co-location probing).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, Pod, PodAffinityTerm, PodSpec, Toleration, WeightedPodAffinityTerm,
};

use super::{Policy, TaintEffect, TolerationOperator, TolerationSpec, Violation, pss, storage};

/// Every static rule name [`check_pod`] reports besides the PSS ones.
pub const RULES: &[&str] = &[
    "pod.spec",
    "pod.volume_type",
    "pod.node_selector",
    "pod.node_affinity",
    "pod.affinity_namespaces",
    "pod.runtime_class",
    "pod.priority_class",
];

/// Check a virtual pod against the policy. `Ok`: the pod to translate and write to the host
/// (node pool, tolerations and classes applied, `nodeName` dropped); `Err`: every violation.
///
/// Run it on every change of the virtual pod, ephemeral containers included (they are added
/// through the `ephemeralcontainers` subresource and need the same checks).
pub fn check_pod(policy: &Policy, pod: &Pod) -> Result<Pod, Vec<Violation>> {
    let Some(spec) = &pod.spec else {
        return Err(vec![Violation::new(
            "pod.spec",
            "spec",
            "a pod needs a spec",
        )]);
    };
    let level = policy.pod_security.level;
    let mut violations = pss::check(level, pod);
    let mut out = pod.clone();
    let s = out.spec.as_mut().expect("checked above");

    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let ty = pss::volume_type(v);
        if !policy.pods.volume_types.iter().any(|t| t.0 == ty)
            && !pss::level_refuses_volume_type(level, ty)
        {
            violations.push(Violation::new(
                "pod.volume_type",
                format!("spec.volumes[{i}]"),
                format!(
                    "volume {:?} uses volume type {ty:?}, which the policy does not allow (pods.volumeTypes: {})",
                    v.name,
                    policy
                        .pods
                        .volume_types
                        .iter()
                        .map(|t| t.0)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    for (i, v) in s.volumes.iter_mut().flatten().enumerate() {
        if let Some(t) = v
            .ephemeral
            .as_mut()
            .and_then(|e| e.volume_claim_template.as_mut())
        {
            let field = format!("spec.volumes[{i}].ephemeral.volumeClaimTemplate.spec");
            storage::check_claim_spec(policy, &mut t.spec, &field, &mut violations);
        }
    }

    node_selector(
        policy,
        s.node_selector.get_or_insert_with(BTreeMap::new),
        &mut violations,
    );
    if s.node_selector.as_ref().is_some_and(BTreeMap::is_empty) {
        s.node_selector = None;
    }
    node_affinity(policy, spec, &mut violations);
    affinity_namespaces(spec, &mut violations);
    s.tolerations = tolerations(policy, spec.tolerations.as_deref().unwrap_or_default());
    s.node_name = None;

    match policy
        .pods
        .runtime_class
        .resolve(spec.runtime_class_name.as_deref(), true)
    {
        Ok(c) => s.runtime_class_name = c,
        Err(why) => violations.push(Violation::new(
            "pod.runtime_class",
            "spec.runtimeClassName",
            format!("RuntimeClass {why}"),
        )),
    }
    match policy
        .pods
        .priority_class
        .resolve(spec.priority_class_name.as_deref(), true)
    {
        Ok(c) => s.priority_class_name = c,
        Err(why) => violations.push(Violation::new(
            "pod.priority_class",
            "spec.priorityClassName",
            format!("PriorityClass {why}"),
        )),
    }

    if violations.is_empty() {
        Ok(out)
    } else {
        Err(violations)
    }
}

fn node_selector(
    policy: &Policy,
    selector: &mut BTreeMap<String, String>,
    out: &mut Vec<Violation>,
) {
    for (k, pool) in &policy.pods.node_selector {
        match selector.get(k) {
            Some(v) if v != pool => out.push(Violation::new(
                "pod.node_selector",
                format!("spec.nodeSelector[{k:?}]"),
                format!(
                    "{k}={v} would leave the tenant's node pool ({k}={pool}); leave it out or set {pool:?}"
                ),
            )),
            _ => {
                selector.insert(k.clone(), pool.clone());
            }
        }
    }
}

/// Whether a node carrying `pool_value` for the requirement's key can satisfy it.
fn pool_satisfies(r: &NodeSelectorRequirement, pool_value: &str) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let num = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => values.iter().any(|v| v == pool_value),
        "NotIn" => !values.iter().any(|v| v == pool_value),
        "Exists" => true,
        "DoesNotExist" => false,
        "Gt" => {
            matches!((num(pool_value), values.first().and_then(|v| num(v))), (Some(p), Some(n)) if p > n)
        }
        "Lt" => {
            matches!((num(pool_value), values.first().and_then(|v| num(v))), (Some(p), Some(n)) if p < n)
        }
        _ => false,
    }
}

fn node_affinity(policy: &Policy, spec: &PodSpec, out: &mut Vec<Violation>) {
    let Some(required) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return;
    };
    for (t, term) in required.node_selector_terms.iter().enumerate() {
        for (e, r) in term.match_expressions.iter().flatten().enumerate() {
            if let Some(pool) = policy.pods.node_selector.get(&r.key)
                && !pool_satisfies(r, pool)
            {
                out.push(Violation::new(
                    "pod.node_affinity",
                    format!("spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{t}].matchExpressions[{e}]"),
                    format!(
                        "{} {} {:?} excludes the tenant's node pool ({}={pool}); node affinity may only narrow placement inside the pool",
                        r.key,
                        r.operator,
                        r.values.as_deref().unwrap_or_default(),
                        r.key
                    ),
                ));
            }
        }
    }
}

/// The (anti-)affinity terms of one kind with their paths.
fn affinity_terms<'a>(
    base: &str,
    req: Option<&'a Vec<PodAffinityTerm>>,
    pref: Option<&'a Vec<WeightedPodAffinityTerm>>,
) -> Vec<(String, &'a PodAffinityTerm)> {
    let mut terms = Vec::new();
    for (i, t) in req.into_iter().flatten().enumerate() {
        terms.push((
            format!("spec.affinity.{base}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"),
            t,
        ));
    }
    for (i, t) in pref.into_iter().flatten().enumerate() {
        terms.push((
            format!(
                "spec.affinity.{base}.preferredDuringSchedulingIgnoredDuringExecution[{i}].podAffinityTerm"
            ),
            &t.pod_affinity_term,
        ));
    }
    terms
}

fn affinity_namespaces(spec: &PodSpec, out: &mut Vec<Violation>) {
    let Some(a) = &spec.affinity else { return };
    let mut check = |kind: &str, terms: Vec<(String, &PodAffinityTerm)>| {
        for (path, term) in terms {
            if term.namespaces.as_ref().is_some_and(|n| !n.is_empty())
                || term.namespace_selector.is_some()
            {
                out.push(Violation::new(
                    "pod.affinity_namespaces",
                    path,
                    format!(
                        "{kind} terms may not name namespaces or a namespaceSelector: on the host they would match other tenants' pods"
                    ),
                ));
            }
        }
    };
    if let Some(p) = &a.pod_affinity {
        check(
            "podAffinity",
            affinity_terms(
                "podAffinity",
                p.required_during_scheduling_ignored_during_execution
                    .as_ref(),
                p.preferred_during_scheduling_ignored_during_execution
                    .as_ref(),
            ),
        );
    }
    if let Some(p) = &a.pod_anti_affinity {
        check(
            "podAntiAffinity",
            affinity_terms(
                "podAntiAffinity",
                p.required_during_scheduling_ignored_during_execution
                    .as_ref(),
                p.preferred_during_scheduling_ignored_during_execution
                    .as_ref(),
            ),
        );
    }
}

/// Whether a tenant toleration is a wildcard: no key and `Exists` tolerates every taint.
pub fn is_wildcard(t: &Toleration) -> bool {
    t.key.as_deref().unwrap_or("").is_empty() && t.operator.as_deref() == Some("Exists")
}

/// Whether the allowlist entry `allow` covers the tenant toleration `t`: same key; the
/// tenant's value within the entry's (`Exists` covers any value); the tenant's effect within the
/// entry's (an unset effect means every effect); no longer a `NoExecute` grace than the entry's.
pub fn toleration_allowed(t: &Toleration, allow: &TolerationSpec) -> bool {
    let key = t.key.as_deref().unwrap_or("");
    if key.is_empty() || key != allow.key {
        return false;
    }
    let t_exists = t.operator.as_deref() == Some("Exists");
    let value_ok = match allow.operator {
        TolerationOperator::Exists => true,
        TolerationOperator::Equal => {
            !t_exists
                && matches!(t.operator.as_deref(), None | Some("" | "Equal"))
                && t.value.as_deref().unwrap_or("") == allow.value
        }
    };
    let t_effect = t.effect.as_deref().filter(|e| !e.is_empty());
    let effect_ok = match allow.effect {
        None => true,
        Some(e) => t_effect == Some(e.as_str()),
    };
    let seconds_ok = match allow.toleration_seconds {
        None => true,
        Some(max) => {
            t_effect != Some(TaintEffect::NoExecute.as_str())
                || t.toleration_seconds.is_some_and(|s| s <= max)
        }
    };
    value_ok && effect_ok && seconds_ok
}

/// The host pod's tolerations: the tenant's allowlisted ones, then the pool's.
fn tolerations(policy: &Policy, tenant: &[Toleration]) -> Option<Vec<Toleration>> {
    let mut out: Vec<Toleration> = tenant
        .iter()
        .filter(|t| !is_wildcard(t))
        .filter(|t| {
            policy
                .pods
                .allowed_tolerations
                .iter()
                .any(|a| toleration_allowed(t, a))
        })
        .cloned()
        .collect();
    for t in &policy.pods.tolerations {
        let t = t.to_toleration();
        if !out.contains(&t) {
            out.push(t);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The tenant tolerations [`check_pod`] drops (for an informational event).
pub fn dropped_tolerations(policy: &Policy, pod: &Pod) -> Vec<Toleration> {
    pod.spec
        .iter()
        .flat_map(|s| s.tolerations.iter().flatten())
        .filter(|t| {
            is_wildcard(t)
                || !policy
                    .pods
                    .allowed_tolerations
                    .iter()
                    .any(|a| toleration_allowed(t, a))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::{Value, json};

    fn policy(yaml: &str) -> Policy {
        Policy::from_yaml(yaml).expect("valid policy")
    }

    fn pod(spec: Value) -> Pod {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c", "image": "i"}]);
        }
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec}),
        )
        .expect("valid pod")
    }

    fn rules(r: &Result<Pod, Vec<Violation>>) -> Vec<&'static str> {
        match r {
            Ok(_) => vec![],
            Err(v) => v.iter().map(|v| v.rule).collect(),
        }
    }

    const POOL: &str = r#"
pods:
  nodeSelector: {pool: tenant-a}
  tolerations:
    - {key: dedicated, operator: Equal, value: tenant-a, effect: NoSchedule}
  allowedTolerations:
    - {key: gpu, operator: Exists, effect: NoSchedule}
    - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 300}
"#;

    #[test]
    fn default_policy_admits_a_plain_pod_unchanged_but_for_node_name() {
        let p = pod(json!({"nodeName": "n1"}));
        let got = check_pod(&Policy::default(), &p).unwrap();
        let mut want = p.clone();
        want.spec.as_mut().unwrap().node_name = None;
        assert_eq!(got, want);
    }

    #[test]
    fn pool_selector_and_tolerations_are_added() {
        let got = check_pod(
            &policy(POOL),
            &pod(json!({"nodeSelector": {"disk": "ssd"}})),
        )
        .unwrap();
        let s = got.spec.unwrap();
        assert_eq!(
            s.node_selector.unwrap(),
            BTreeMap::from([
                ("disk".into(), "ssd".into()),
                ("pool".into(), "tenant-a".into())
            ])
        );
        let t = s.tolerations.unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].key.as_deref(), Some("dedicated"));
        assert_eq!(t[0].value.as_deref(), Some("tenant-a"));
    }

    #[rstest]
    #[case::same_value(json!({"pool": "tenant-a"}), None)]
    #[case::other_pool(json!({"pool": "tenant-b"}), Some("pod.node_selector"))]
    #[case::unrelated(json!({"zone": "a"}), None)]
    fn node_selector_cannot_leave_the_pool(#[case] sel: Value, #[case] want: Option<&str>) {
        let r = check_pod(&policy(POOL), &pod(json!({"nodeSelector": sel})));
        assert_eq!(rules(&r), want.into_iter().collect::<Vec<_>>());
    }

    #[rstest]
    #[case::in_pool(json!({"key": "pool", "operator": "In", "values": ["tenant-a", "x"]}), None)]
    #[case::in_other(json!({"key": "pool", "operator": "In", "values": ["tenant-b"]}), Some("pod.node_affinity"))]
    #[case::not_in_pool(json!({"key": "pool", "operator": "NotIn", "values": ["tenant-a"]}), Some("pod.node_affinity"))]
    #[case::not_in_other(json!({"key": "pool", "operator": "NotIn", "values": ["tenant-b"]}), None)]
    #[case::does_not_exist(json!({"key": "pool", "operator": "DoesNotExist"}), Some("pod.node_affinity"))]
    #[case::exists(json!({"key": "pool", "operator": "Exists"}), None)]
    #[case::narrowing_other_key(json!({"key": "zone", "operator": "In", "values": ["a"]}), None)]
    fn node_affinity_may_only_narrow(#[case] expr: Value, #[case] want: Option<&str>) {
        let r = check_pod(
            &policy(POOL),
            &pod(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [expr]}]
                }}}}),
            ),
        );
        assert_eq!(rules(&r), want.into_iter().collect::<Vec<_>>());
    }

    #[rstest]
    #[case::wildcard(json!({"operator": "Exists"}), false)]
    #[case::wildcard_with_effect(json!({"operator": "Exists", "effect": "NoSchedule"}), false)]
    #[case::not_listed(json!({"key": "dedicated", "operator": "Equal", "value": "tenant-b", "effect": "NoSchedule"}), false)]
    #[case::control_plane(json!({"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}), false)]
    #[case::gpu(json!({"key": "gpu", "operator": "Equal", "value": "a100", "effect": "NoSchedule"}), true)]
    #[case::gpu_exists(json!({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}), true)]
    #[case::gpu_every_effect(json!({"key": "gpu", "operator": "Exists"}), false)]
    #[case::gpu_no_execute(json!({"key": "gpu", "operator": "Exists", "effect": "NoExecute"}), false)]
    #[case::not_ready_300(json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}), true)]
    #[case::not_ready_forever(json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}), false)]
    #[case::not_ready_longer(json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 301}), false)]
    fn tenant_tolerations_are_dropped_unless_allowlisted(#[case] t: Value, #[case] kept: bool) {
        let p = pod(json!({"tolerations": [t.clone()]}));
        let got = check_pod(&policy(POOL), &p).unwrap();
        let tol: Toleration = serde_json::from_value(t).unwrap();
        let host = got.spec.unwrap().tolerations.unwrap();
        assert_eq!(host.contains(&tol), kept, "{host:?}");
        assert_eq!(dropped_tolerations(&policy(POOL), &p).is_empty(), kept);
    }

    #[rstest]
    #[case::unset_default_policy("", None, Ok(None))]
    #[case::set_default_policy("", Some("runc"), Err(()))]
    #[case::forced_unset("pods: {runtimeClass: {forced: gvisor}}", None, Ok(Some("gvisor")))]
    #[case::forced_same(
        "pods: {runtimeClass: {forced: gvisor}}",
        Some("gvisor"),
        Ok(Some("gvisor"))
    )]
    #[case::forced_other("pods: {runtimeClass: {forced: gvisor}}", Some("runc"), Err(()))]
    #[case::forced_empty_string(
        "pods: {runtimeClass: {forced: gvisor}}",
        Some(""),
        Ok(Some("gvisor"))
    )]
    #[case::allowed(
        "pods: {runtimeClass: {allowed: [kata, gvisor]}}",
        Some("kata"),
        Ok(Some("kata"))
    )]
    #[case::not_allowed("pods: {runtimeClass: {allowed: [kata]}}", Some("runc"), Err(()))]
    #[case::default_applies(
        "pods: {runtimeClass: {allowed: [kata], default: gvisor}}",
        None,
        Ok(Some("gvisor"))
    )]
    #[case::default_is_allowed(
        "pods: {runtimeClass: {default: gvisor}}",
        Some("gvisor"),
        Ok(Some("gvisor"))
    )]
    fn runtime_class(
        #[case] yaml: &str,
        #[case] tenant: Option<&str>,
        #[case] want: Result<Option<&str>, ()>,
    ) {
        let r = check_pod(&policy(yaml), &pod(json!({"runtimeClassName": tenant})));
        match want {
            Ok(c) => assert_eq!(r.unwrap().spec.unwrap().runtime_class_name.as_deref(), c),
            Err(()) => assert_eq!(rules(&r), vec!["pod.runtime_class"]),
        }
    }

    #[rstest]
    #[case::unset("", None, Ok(None))]
    #[case::system_critical("", Some("system-node-critical"), Err(()))]
    #[case::forced("pods: {priorityClass: {forced: tenant-low}}", Some("system-cluster-critical"), Err(()))]
    #[case::forced_unset(
        "pods: {priorityClass: {forced: tenant-low}}",
        None,
        Ok(Some("tenant-low"))
    )]
    #[case::allowed(
        "pods: {priorityClass: {allowed: [tenant-low, tenant-high]}}",
        Some("tenant-high"),
        Ok(Some("tenant-high"))
    )]
    fn priority_class(
        #[case] yaml: &str,
        #[case] tenant: Option<&str>,
        #[case] want: Result<Option<&str>, ()>,
    ) {
        let r = check_pod(&policy(yaml), &pod(json!({"priorityClassName": tenant})));
        match want {
            Ok(c) => assert_eq!(r.unwrap().spec.unwrap().priority_class_name.as_deref(), c),
            Err(()) => assert_eq!(rules(&r), vec!["pod.priority_class"]),
        }
    }

    #[rstest]
    #[case::nfs_baseline("", json!({"name": "n", "nfs": {"server": "10.0.0.1", "path": "/"}}), vec!["pod.volume_type"])]
    #[case::host_path_baseline("", json!({"name": "h", "hostPath": {"path": "/"}}), vec!["pss.host_path_volumes"])]
    #[case::host_path_privileged("podSecurity: {level: privileged}", json!({"name": "h", "hostPath": {"path": "/"}}), vec!["pod.volume_type"])]
    #[case::host_path_privileged_allowed("podSecurity: {level: privileged}\npods: {volumeTypes: [hostPath]}", json!({"name": "h", "hostPath": {"path": "/"}}), vec![])]
    #[case::nfs_restricted_once("podSecurity: {level: restricted}", json!({"name": "n", "nfs": {"server": "s", "path": "/"}}), vec!["pss.volume_types"])]
    #[case::git_repo_allowed("pods: {volumeTypes: [gitRepo]}", json!({"name": "g", "gitRepo": {"repository": "r"}}), vec![])]
    #[case::config_map_narrowed("pods: {volumeTypes: [secret]}", json!({"name": "c", "configMap": {"name": "x"}}), vec!["pod.volume_type"])]
    #[case::empty_dir("", json!({"name": "e", "emptyDir": {}}), vec![])]
    fn volume_types(#[case] yaml: &str, #[case] volume: Value, #[case] want: Vec<&str>) {
        let mut p = pod(json!({"volumes": [volume]}));
        if yaml.contains("restricted") {
            // Make the pod otherwise restricted-clean.
            let s = p.spec.as_mut().unwrap();
            s.security_context = Some(
                serde_json::from_value(
                    json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}}),
                )
                .unwrap(),
            );
            s.containers[0].security_context = Some(
                serde_json::from_value(
                    json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}),
                )
                .unwrap(),
            );
        }
        assert_eq!(rules(&check_pod(&policy(yaml), &p)), want);
    }

    #[rstest]
    #[case::no_default(json!({}), Some("storage.class"))]
    #[case::allowed(json!({"storageClassName": "fast"}), None)]
    #[case::volume_name(json!({"storageClassName": "fast", "volumeName": "pv-of-someone"}), Some("storage.volume_name"))]
    fn ephemeral_volumes_follow_the_storage_policy(
        #[case] claim: Value,
        #[case] want: Option<&str>,
    ) {
        let mut spec = claim;
        spec["accessModes"] = json!(["ReadWriteOnce"]);
        let p = pod(
            json!({"volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": spec}}}]}),
        );
        let r = check_pod(&policy("storage: {class: {allowed: [fast]}}"), &p);
        assert_eq!(rules(&r), want.into_iter().collect::<Vec<_>>());
    }

    #[rstest]
    #[case::same_namespace(json!({"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}), false)]
    #[case::other_namespaces(json!({"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname", "namespaces": ["tenant-b"]}), true)]
    #[case::namespace_selector(json!({"labelSelector": {}, "topologyKey": "kubernetes.io/hostname", "namespaceSelector": {}}), true)]
    fn pod_affinity_stays_in_the_namespace(#[case] term: Value, #[case] refused: bool) {
        for kind in ["podAffinity", "podAntiAffinity"] {
            let p = pod(
                json!({"affinity": {kind: {"requiredDuringSchedulingIgnoredDuringExecution": [term.clone()]}}}),
            );
            let r = check_pod(&Policy::default(), &p);
            assert_eq!(
                rules(&r) == vec!["pod.affinity_namespaces"],
                refused,
                "{kind}: {r:?}"
            );
        }
    }

    #[test]
    fn pss_and_isolation_violations_are_reported_together() {
        let p = pod(json!({
            "hostPID": true,
            "runtimeClassName": "runc",
            "containers": [{"name": "c", "image": "i", "securityContext": {"privileged": true}}]
        }));
        let v = check_pod(&policy("pods: {runtimeClass: {forced: gvisor}}"), &p).unwrap_err();
        assert_eq!(
            v.iter().map(|v| v.rule).collect::<Vec<_>>(),
            vec!["pss.host_namespaces", "pss.privileged", "pod.runtime_class"]
        );
        assert_eq!(
            crate::policy::event_message("Pod", &v),
            "violates PodSecurity \"baseline:latest\": host namespaces (hostPID=true), privileged (container \"c\" must not set securityContext.privileged=true); \
             Pod violates the isolation policy: pod.runtime_class (spec.runtimeClassName: RuntimeClass \"runc\" is not allowed: the policy forces \"gvisor\")"
        );
    }

    #[test]
    fn a_pod_without_spec_is_refused() {
        let p = Pod::default();
        assert_eq!(rules(&check_pod(&Policy::default(), &p)), vec!["pod.spec"]);
    }
}
