//! Host namespace guardrails: verifying what the platform must have set up around the tenant.
//!
//! vcsync's own checks ([`crate::policy`]) are one layer; the host namespace is expected to carry
//! a second, independent one that the platform creates (`manifests/base`): Pod Security
//! admission, a ResourceQuota, a LimitRange and a default-deny NetworkPolicy. vcsync cannot
//! create them (its Role grants no writes to them, on purpose: a compromised syncer must not be
//! able to lift its own limits), but it reads them at start-up and every
//! `--guardrails-interval-seconds` (60 s) after, and reports each of the four [`Item`]s:
//!
//! - in the metric `vcsync_guardrails_missing{item}` and the last line of `/readyz`
//!   ([`crate::metrics::Metrics::set_guardrail`]);
//! - in a log line whenever the set of missing or unreadable items changes (not every pass);
//! - with `--require-guardrails`, as a refusal to start ([`Report::refusal`]).
//!
//! What counts as present ([`check`], a pure function over the fetched objects):
//! - `pod-security-labels`: the Namespace's `pod-security.kubernetes.io/enforce` label is
//!   `baseline` or `restricted`, and at least as strict as the policy's `podSecurity.level`.
//!   Missing, `privileged`, an unknown value or a weaker level count as missing.
//! - `resource-quota`: at least one ResourceQuota in the namespace.
//! - `limit-range`: at least one LimitRange in the namespace.
//! - `network-policy`: at least one default-deny NetworkPolicy for tenant pods: its podSelector
//!   is empty (every pod) or exactly `vcsync.io/managed-by: <tenant>`, its policyTypes name both
//!   `Ingress` and `Egress`, and it has no ingress or egress rules. Other policies may allow
//!   traffic on top of it; judging what they allow is out of scope. Policies vcsync synced from
//!   the tenant (labelled `vcsync.io/managed-by`) never count.
//!
//! Namespaces are cluster-scoped, so the namespaced Role cannot grant reading the Namespace:
//! that is the optional ClusterRole of `manifests/components/host-nodes`. Without it the read
//! answers 403 and `pod-security-labels` is *unknown* (logged, not counted as missing, and it
//! does not block `--require-guardrails`). An item that cannot be read keeps its last metric
//! value.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::api::{Api, ListParams};
use tracing::{info, warn};

use crate::metrics::{GuardrailState, Metrics};
use crate::policy::Level;

/// The Pod Security admission label whose level is checked.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// How often the guardrails are checked after start-up, by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// One guardrail; [`Item::as_str`] is its metric label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Item {
    /// `pod-security.kubernetes.io/enforce` on the Namespace.
    PodSecurityLabels,
    /// A ResourceQuota.
    ResourceQuota,
    /// A LimitRange.
    LimitRange,
    /// A default-deny NetworkPolicy for tenant pods.
    NetworkPolicy,
}

impl Item {
    /// Every item, in report order.
    pub const ALL: [Item; 4] = [
        Item::PodSecurityLabels,
        Item::ResourceQuota,
        Item::LimitRange,
        Item::NetworkPolicy,
    ];

    /// The static name used in the metric label, `/readyz` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Item::PodSecurityLabels => "pod-security-labels",
            Item::ResourceQuota => "resource-quota",
            Item::LimitRange => "limit-range",
            Item::NetworkPolicy => "network-policy",
        }
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why something could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The API answered 403.
    pub forbidden: bool,
    /// The error, for logs.
    pub reason: String,
}

impl Unreadable {
    fn from_kube(e: &kube::Error) -> Unreadable {
        Unreadable {
            forbidden: matches!(e, kube::Error::Api(s) if s.code == 403),
            reason: crate::sync::brief(e),
        }
    }
}

/// A read's result: the value, or why it could not be read.
pub type Fetched<T> = Result<T, Unreadable>;

/// What one pass read from the host namespace.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The Namespace's labels; `Ok(None)` when the Namespace does not exist.
    pub namespace_labels: Fetched<Option<BTreeMap<String, String>>>,
    /// Whether any ResourceQuota exists.
    pub has_resource_quota: Fetched<bool>,
    /// Whether any LimitRange exists.
    pub has_limit_range: Fetched<bool>,
    /// Every NetworkPolicy in the namespace.
    pub network_policies: Fetched<Vec<NetworkPolicy>>,
}

/// The state of one item after a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The guardrail is in place.
    Present,
    /// It is not; the reason says what was found instead.
    Missing(String),
    /// It could not be read.
    Unknown(Unreadable),
}

impl Status {
    fn kind(&self) -> &'static str {
        match self {
            Status::Present => "present",
            Status::Missing(_) => "missing",
            Status::Unknown(_) => "unknown",
        }
    }
}

/// Every item's status after one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// In [`Item::ALL`] order.
    pub items: Vec<(Item, Status)>,
}

impl Report {
    /// The missing items with their reasons.
    pub fn missing(&self) -> Vec<(Item, &str)> {
        self.items
            .iter()
            .filter_map(|(item, s)| match s {
                Status::Missing(reason) => Some((*item, reason.as_str())),
                _ => None,
            })
            .collect()
    }

    /// The items that could not be read, with why.
    pub fn unknown(&self) -> Vec<(Item, &Unreadable)> {
        self.items
            .iter()
            .filter_map(|(item, s)| match s {
                Status::Unknown(u) => Some((*item, u)),
                _ => None,
            })
            .collect()
    }

    /// Why `--require-guardrails` refuses to start, if it does: every missing item, and every
    /// item that could not be verified, except the Namespace's labels when reading the
    /// Namespace is forbidden (that needs the optional ClusterRole, see the module docs).
    pub fn refusal(&self, namespace: &str) -> Option<GuardrailsMissing> {
        let missing: Vec<String> = self
            .missing()
            .into_iter()
            .map(|(item, reason)| format!("{item} ({reason})"))
            .collect();
        let unverified: Vec<String> = self
            .unknown()
            .into_iter()
            .filter(|(item, u)| !(*item == Item::PodSecurityLabels && u.forbidden))
            .map(|(item, u)| format!("{item} ({})", u.reason))
            .collect();
        (!missing.is_empty() || !unverified.is_empty()).then(|| GuardrailsMissing {
            namespace: namespace.to_owned(),
            missing,
            unverified,
        })
    }

    /// Each item as present, missing or unknown, without reasons: what a log line is due on.
    fn kinds(&self) -> Vec<(Item, &'static str)> {
        self.items.iter().map(|(i, s)| (*i, s.kind())).collect()
    }
}

/// `--require-guardrails` found guardrails missing (or unverifiable) at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct GuardrailsMissing {
    /// The host namespace.
    pub namespace: String,
    /// `item (reason)` of each missing item.
    pub missing: Vec<String>,
    /// `item (error)` of each item that could not be read.
    pub unverified: Vec<String>,
}

impl fmt::Display for GuardrailsMissing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--require-guardrails: host namespace {} lacks guardrails",
            self.namespace
        )?;
        if !self.missing.is_empty() {
            write!(f, "; missing: {}", self.missing.join(", "))?;
        }
        if !self.unverified.is_empty() {
            write!(f, "; cannot verify: {}", self.unverified.join(", "))?;
        }
        Ok(())
    }
}

/// Parses a Pod Security level label value as Kubernetes spells it.
fn parse_level(value: &str) -> Option<Level> {
    match value {
        "privileged" => Some(Level::Privileged),
        "baseline" => Some(Level::Baseline),
        "restricted" => Some(Level::Restricted),
        _ => None,
    }
}

fn pod_security(labels: &Fetched<Option<BTreeMap<String, String>>>, required: Level) -> Status {
    let labels = match labels {
        Err(u) => return Status::Unknown(u.clone()),
        Ok(None) => return Status::Missing("the namespace does not exist".to_owned()),
        Ok(Some(labels)) => labels,
    };
    let Some(value) = labels.get(ENFORCE_LABEL) else {
        return Status::Missing(format!("no {ENFORCE_LABEL} label"));
    };
    // Privileged enforces nothing, so it never counts, even under a privileged tenant policy.
    let floor = required.max(Level::Baseline);
    match parse_level(value) {
        None => Status::Missing(format!("{ENFORCE_LABEL}={value} is not a level")),
        Some(Level::Privileged) => Status::Missing(format!("{ENFORCE_LABEL}={value}")),
        Some(level) if level < floor => Status::Missing(format!(
            "{ENFORCE_LABEL}={value} is weaker than the policy's {}",
            floor.as_str()
        )),
        Some(_) => Status::Present,
    }
}

fn exists(found: &Fetched<bool>, kind: &str) -> Status {
    match found {
        Err(u) => Status::Unknown(u.clone()),
        Ok(true) => Status::Present,
        Ok(false) => Status::Missing(format!("no {kind}")),
    }
}

/// Whether `policy` denies all ingress and egress of every pod, or of exactly the tenant's
/// pods (`vcsync.io/managed-by: <tenant>`). A NetworkPolicy vcsync synced from a tenant (it
/// carries the `vcsync.io/managed-by` label) is never the platform's guardrail, whatever it
/// says: the tenant could delete it.
pub fn is_default_deny(policy: &NetworkPolicy, tenant: &str) -> bool {
    let Some(spec) = &policy.spec else {
        return false;
    };
    if policy
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(crate::markers::MANAGED_BY))
    {
        return false;
    }
    let selector = spec.pod_selector.clone().unwrap_or_default();
    let labels = selector.match_labels.unwrap_or_default();
    let selects = selector.match_expressions.unwrap_or_default().is_empty()
        && (labels.is_empty()
            || (labels.len() == 1
                && labels.get(crate::markers::MANAGED_BY).map(String::as_str) == Some(tenant)));
    let types = spec.policy_types.as_deref().unwrap_or_default();
    let both = ["Ingress", "Egress"]
        .iter()
        .all(|t| types.iter().any(|have| have == t));
    let no_rules = spec.ingress.as_ref().is_none_or(Vec::is_empty)
        && spec.egress.as_ref().is_none_or(Vec::is_empty);
    selects && both && no_rules
}

fn network_policy(policies: &Fetched<Vec<NetworkPolicy>>, tenant: &str) -> Status {
    match policies {
        Err(u) => Status::Unknown(u.clone()),
        Ok(list) if list.iter().any(|p| is_default_deny(p, tenant)) => Status::Present,
        Ok(list) if list.is_empty() => Status::Missing("no NetworkPolicy".to_owned()),
        Ok(list) => Status::Missing(format!(
            "none of {} NetworkPolicies denies all ingress and egress of every pod or of \
             the tenant's pods",
            list.len()
        )),
    }
}

/// Judges what one pass read: `required` is the tenant policy's `podSecurity.level`, `tenant`
/// the tenant name (for the NetworkPolicy selector).
pub fn check(observed: &Observed, required: Level, tenant: &str) -> Report {
    Report {
        items: vec![
            (
                Item::PodSecurityLabels,
                pod_security(&observed.namespace_labels, required),
            ),
            (
                Item::ResourceQuota,
                exists(&observed.has_resource_quota, "ResourceQuota"),
            ),
            (
                Item::LimitRange,
                exists(&observed.has_limit_range, "LimitRange"),
            ),
            (
                Item::NetworkPolicy,
                network_policy(&observed.network_policies, tenant),
            ),
        ],
    }
}

/// Reads everything [`check`] needs from `namespace`: a `get` of the Namespace and a `list` of
/// ResourceQuotas, LimitRanges and NetworkPolicies (see [`crate::permissions`]).
pub async fn observe(client: &Client, namespace: &str) -> Observed {
    let ns: Api<Namespace> = Api::all(client.clone());
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), namespace);
    let limits: Api<LimitRange> = Api::namespaced(client.clone(), namespace);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), namespace);
    // One item suffices to know that any exists.
    let one = ListParams::default().limit(1);
    let all = ListParams::default();
    let (ns, quotas, limits, policies) = tokio::join!(
        ns.get_opt(namespace),
        quotas.list(&one),
        limits.list(&one),
        policies.list(&all),
    );
    let read = |e: kube::Error| Unreadable::from_kube(&e);
    Observed {
        namespace_labels: ns
            .map(|n| n.map(|n| n.metadata.labels.unwrap_or_default()))
            .map_err(read),
        has_resource_quota: quotas.map(|l| !l.items.is_empty()).map_err(read),
        has_limit_range: limits.map(|l| !l.items.is_empty()).map_err(read),
        network_policies: policies.map(|l| l.items).map_err(read),
    }
}

/// Checks the guardrails of one host namespace, records the result in the metrics and logs
/// when it changes.
pub struct Checker {
    client: Client,
    namespace: String,
    tenant: String,
    required: Level,
    metrics: Arc<Metrics>,
    last: Option<Vec<(Item, &'static str)>>,
}

impl fmt::Debug for Checker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checker")
            .field("namespace", &self.namespace)
            .field("tenant", &self.tenant)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl Checker {
    /// A checker of `namespace` for `tenant` whose policy requires Pod Security `required`.
    pub fn new(
        client: Client,
        namespace: impl Into<String>,
        tenant: impl Into<String>,
        required: Level,
        metrics: Arc<Metrics>,
    ) -> Checker {
        Checker {
            client,
            namespace: namespace.into(),
            tenant: tenant.into(),
            required,
            metrics,
            last: None,
        }
    }

    /// One pass: read, judge, record, and log if anything changed since the last pass.
    pub async fn check_once(&mut self) -> Report {
        let observed = observe(&self.client, &self.namespace).await;
        let report = check(&observed, self.required, &self.tenant);
        let _ = self.record(&report);
        report
    }

    /// Passes every `interval`, forever (the caller aborts the task). The first pass comes
    /// after one interval: start-up already made one with [`Checker::check_once`].
    pub async fn run(mut self, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            self.check_once().await;
        }
    }

    /// Records `report`; true when it logged (the set of present/missing/unknown changed).
    fn record(&mut self, report: &Report) -> bool {
        for (item, status) in &report.items {
            match status {
                Status::Present => self
                    .metrics
                    .set_guardrail(item.as_str(), GuardrailState::Present),
                Status::Missing(_) => self
                    .metrics
                    .set_guardrail(item.as_str(), GuardrailState::Missing),
                // Its own state: an unreadable guardrail is neither present nor missing.
                Status::Unknown(_) => self
                    .metrics
                    .set_guardrail(item.as_str(), GuardrailState::Unknown),
            }
        }
        let kinds = report.kinds();
        if self.last.as_ref() == Some(&kinds) {
            return false;
        }
        let before = self.last.replace(kinds);
        let namespace = self.namespace.as_str();
        for (item, u) in report.unknown() {
            let was_unknown = before
                .as_ref()
                .is_some_and(|b| b.contains(&(item, "unknown")));
            if !was_unknown {
                warn!(namespace, item = %item, error = %u.reason,
                    "cannot read a host namespace guardrail; reporting it as unknown, not missing");
            }
        }
        let missing = report.missing();
        let unknown = report
            .unknown()
            .iter()
            .map(|(i, _)| i.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if missing.is_empty() {
            info!(namespace, unknown, "host namespace guardrails ok");
        } else {
            let list = missing
                .iter()
                .map(|(item, reason)| format!("{item} ({reason})"))
                .collect::<Vec<_>>()
                .join(", ");
            warn!(namespace, missing = %list, unknown, "host namespace guardrails missing");
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    const TENANT: &str = "team-a";

    fn labels(enforce: Option<&str>) -> Fetched<Option<BTreeMap<String, String>>> {
        Ok(Some(
            enforce
                .map(|v| (ENFORCE_LABEL.to_owned(), v.to_owned()))
                .into_iter()
                .chain([("vcsync.io/tenant".to_owned(), TENANT.to_owned())])
                .collect(),
        ))
    }

    fn netpol(spec: serde_json::Value) -> NetworkPolicy {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn deny_tenant() -> NetworkPolicy {
        netpol(json!({
            "podSelector": {"matchLabels": {"vcsync.io/managed-by": TENANT}},
            "policyTypes": ["Ingress", "Egress"],
        }))
    }

    fn complete() -> Observed {
        Observed {
            namespace_labels: labels(Some("baseline")),
            has_resource_quota: Ok(true),
            has_limit_range: Ok(true),
            network_policies: Ok(vec![deny_tenant()]),
        }
    }

    fn forbidden() -> Unreadable {
        Unreadable {
            forbidden: true,
            reason: "403 Forbidden: namespaces is forbidden".to_owned(),
        }
    }

    fn status(report: &Report, item: Item) -> &Status {
        &report.items.iter().find(|(i, _)| *i == item).unwrap().1
    }

    #[test]
    fn a_complete_namespace_has_every_guardrail() {
        let report = check(&complete(), Level::Baseline, TENANT);
        assert_eq!(
            report.items.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            Item::ALL
        );
        assert!(report.items.iter().all(|(_, s)| *s == Status::Present));
        assert_eq!(report.refusal("ns"), None);
    }

    #[test]
    fn item_names_are_the_documented_metric_labels() {
        assert_eq!(
            Item::ALL.map(Item::as_str),
            [
                "pod-security-labels",
                "resource-quota",
                "limit-range",
                "network-policy"
            ]
        );
    }

    #[rstest]
    #[case::baseline_for_baseline(Some("baseline"), Level::Baseline, true)]
    #[case::restricted_for_baseline(Some("restricted"), Level::Baseline, true)]
    #[case::restricted_for_restricted(Some("restricted"), Level::Restricted, true)]
    #[case::baseline_for_privileged_policy(Some("baseline"), Level::Privileged, true)]
    #[case::baseline_too_weak(Some("baseline"), Level::Restricted, false)]
    #[case::privileged(Some("privileged"), Level::Privileged, false)]
    #[case::privileged_for_baseline(Some("privileged"), Level::Baseline, false)]
    #[case::unset(None, Level::Baseline, false)]
    #[case::misspelt(Some("Restricted"), Level::Baseline, false)]
    #[case::empty(Some(""), Level::Baseline, false)]
    fn pod_security_level(
        #[case] enforce: Option<&str>,
        #[case] required: Level,
        #[case] present: bool,
    ) {
        let observed = Observed {
            namespace_labels: labels(enforce),
            ..complete()
        };
        let report = check(&observed, required, TENANT);
        let s = status(&report, Item::PodSecurityLabels);
        assert_eq!(*s == Status::Present, present, "{s:?}");
        assert_eq!(report.missing().is_empty(), present);
    }

    #[test]
    fn a_weaker_level_names_the_required_one() {
        let observed = complete();
        let report = check(&observed, Level::Restricted, TENANT);
        let Status::Missing(reason) = status(&report, Item::PodSecurityLabels) else {
            panic!("expected missing");
        };
        assert!(
            reason.contains("weaker than the policy's restricted"),
            "{reason}"
        );
    }

    #[test]
    fn a_missing_namespace_is_missing_labels() {
        let observed = Observed {
            namespace_labels: Ok(None),
            ..complete()
        };
        let report = check(&observed, Level::Baseline, TENANT);
        assert_eq!(
            report.missing(),
            [(Item::PodSecurityLabels, "the namespace does not exist")]
        );
    }

    #[test]
    fn a_forbidden_namespace_read_is_unknown_and_does_not_block_start_up() {
        let observed = Observed {
            namespace_labels: Err(forbidden()),
            ..complete()
        };
        let report = check(&observed, Level::Baseline, TENANT);
        assert!(report.missing().is_empty());
        assert_eq!(report.unknown(), [(Item::PodSecurityLabels, &forbidden())]);
        assert_eq!(report.refusal("ns"), None);
    }

    #[test]
    fn an_unreadable_namespaced_item_blocks_start_up() {
        let failed = Unreadable {
            forbidden: false,
            reason: "500 InternalError: boom".to_owned(),
        };
        let observed = Observed {
            namespace_labels: Err(failed.clone()),
            has_limit_range: Err(forbidden()),
            ..complete()
        };
        let report = check(&observed, Level::Baseline, TENANT);
        let refusal = report.refusal("vc-a").unwrap();
        assert!(refusal.missing.is_empty());
        assert_eq!(refusal.unverified.len(), 2, "{refusal}");
        assert!(
            refusal
                .to_string()
                .contains("cannot verify: pod-security-labels (500"),
            "{refusal}"
        );
    }

    #[rstest]
    #[case::no_quota(Item::ResourceQuota, "no ResourceQuota")]
    #[case::no_limits(Item::LimitRange, "no LimitRange")]
    #[case::no_policies(Item::NetworkPolicy, "no NetworkPolicy")]
    fn an_absent_object_is_missing(#[case] item: Item, #[case] reason: &str) {
        let mut observed = complete();
        match item {
            Item::ResourceQuota => observed.has_resource_quota = Ok(false),
            Item::LimitRange => observed.has_limit_range = Ok(false),
            Item::NetworkPolicy => observed.network_policies = Ok(vec![]),
            Item::PodSecurityLabels => unreachable!(),
        }
        let report = check(&observed, Level::Baseline, TENANT);
        assert_eq!(report.missing(), [(item, reason)]);
    }

    #[test]
    fn the_refusal_names_every_missing_item_in_one_line() {
        let observed = Observed {
            namespace_labels: labels(None),
            has_resource_quota: Ok(false),
            has_limit_range: Ok(false),
            network_policies: Ok(vec![]),
        };
        let refusal = check(&observed, Level::Baseline, TENANT)
            .refusal("vc-a")
            .unwrap()
            .to_string();
        assert!(!refusal.contains('\n'));
        assert!(
            refusal.starts_with(
                "--require-guardrails: host namespace vc-a lacks guardrails; missing: "
            )
        );
        for item in Item::ALL {
            assert!(refusal.contains(item.as_str()), "{refusal}");
        }
    }

    #[rstest]
    #[case::tenant_selector(json!({"podSelector": {"matchLabels": {"vcsync.io/managed-by": TENANT}}, "policyTypes": ["Ingress", "Egress"]}), true)]
    #[case::every_pod(json!({"podSelector": {}, "policyTypes": ["Egress", "Ingress"]}), true)]
    #[case::no_selector(json!({"policyTypes": ["Ingress", "Egress"]}), true)]
    #[case::empty_rule_lists(json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": []}), true)]
    #[case::ingress_only(json!({"podSelector": {}, "policyTypes": ["Ingress"]}), false)]
    #[case::egress_only(json!({"podSelector": {}, "policyTypes": ["Egress"]}), false)]
    #[case::no_types(json!({"podSelector": {}}), false)]
    #[case::other_tenant(json!({"podSelector": {"matchLabels": {"vcsync.io/managed-by": "team-b"}}, "policyTypes": ["Ingress", "Egress"]}), false)]
    #[case::subset_of_tenant(json!({"podSelector": {"matchLabels": {"vcsync.io/managed-by": TENANT, "app": "web"}}, "policyTypes": ["Ingress", "Egress"]}), false)]
    #[case::other_label(json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress", "Egress"]}), false)]
    #[case::expressions(json!({"podSelector": {"matchExpressions": [{"key": "vcsync.io/managed-by", "operator": "Exists"}]}, "policyTypes": ["Ingress", "Egress"]}), false)]
    #[case::allows_ingress(json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{}]}), false)]
    #[case::allows_egress(json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}), false)]
    #[case::lower_case_types(json!({"podSelector": {}, "policyTypes": ["ingress", "egress"]}), false)]
    fn default_deny(#[case] spec: serde_json::Value, #[case] deny: bool) {
        assert_eq!(is_default_deny(&netpol(spec), TENANT), deny);
    }

    #[test]
    fn a_tenant_policy_synced_by_vcsync_is_never_the_guardrail() {
        // A tenant's own default-deny, as vcsync would copy it (even one whose selector looked
        // like the platform's): the tenant can delete it, so it guards nothing.
        let mut synced = deny_tenant();
        synced.metadata.labels = Some(BTreeMap::from([(
            crate::markers::MANAGED_BY.to_owned(),
            TENANT.to_owned(),
        )]));
        assert!(is_default_deny(&deny_tenant(), TENANT));
        assert!(!is_default_deny(&synced, TENANT));
        let observed = Observed {
            network_policies: Ok(vec![synced]),
            ..complete()
        };
        assert!(matches!(
            status(
                &check(&observed, Level::Baseline, TENANT),
                Item::NetworkPolicy
            ),
            Status::Missing(_)
        ));
    }

    #[test]
    fn allow_policies_alone_are_not_a_default_deny() {
        let allow = netpol(json!({
            "podSelector": {"matchLabels": {"vcsync.io/managed-by": TENANT}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}]}],
        }));
        let observed = Observed {
            network_policies: Ok(vec![allow.clone(), allow.clone()]),
            ..complete()
        };
        let report = check(&observed, Level::Baseline, TENANT);
        let Status::Missing(reason) = status(&report, Item::NetworkPolicy) else {
            panic!("expected missing");
        };
        assert!(reason.starts_with("none of 2 NetworkPolicies"), "{reason}");
        let observed = Observed {
            network_policies: Ok(vec![allow, deny_tenant()]),
            ..complete()
        };
        assert!(
            check(&observed, Level::Baseline, TENANT)
                .missing()
                .is_empty()
        );
    }

    fn offline_checker(metrics: Arc<Metrics>) -> Checker {
        // Never contacted: `record` only touches the metrics.
        let config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        Checker::new(client, "vc-a", TENANT, Level::Baseline, metrics)
    }

    #[tokio::test]
    async fn records_metrics_and_logs_only_on_change() {
        let metrics = Arc::new(Metrics::new());
        let mut checker = offline_checker(metrics.clone());
        let mut observed = Observed {
            has_limit_range: Ok(false),
            ..complete()
        };
        let report = check(&observed, Level::Baseline, TENANT);
        assert!(checker.record(&report), "the first pass logs");
        assert_eq!(
            metrics.guardrails(),
            [
                ("limit-range", GuardrailState::Missing),
                ("network-policy", GuardrailState::Present),
                ("pod-security-labels", GuardrailState::Present),
                ("resource-quota", GuardrailState::Present),
            ]
        );
        assert!(!checker.record(&report), "an unchanged pass is quiet");

        // Unreadable: its own state (not present, not missing), and the change is logged.
        observed.has_limit_range = Err(forbidden());
        let report = check(&observed, Level::Baseline, TENANT);
        assert!(checker.record(&report));
        assert!(
            metrics
                .guardrails()
                .contains(&("limit-range", GuardrailState::Unknown))
        );

        observed.has_limit_range = Ok(true);
        let report = check(&observed, Level::Baseline, TENANT);
        assert!(checker.record(&report));
        assert!(
            metrics
                .guardrails()
                .iter()
                .all(|(_, s)| *s == GuardrailState::Present)
        );
        assert!(!checker.record(&report));
    }
}
