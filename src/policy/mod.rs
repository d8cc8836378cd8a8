//! The tenant's isolation policy: what a tenant may ask the host for, checked before anything
//! is written to the host.
//!
//! vcsync is the security boundary between untrusted tenants and a shared host cluster. The
//! [`Policy`] is one declarative YAML file per tenant (`--policy FILE`, `vcsync policy check
//! FILE`); every setting has a secure default, so an empty file (or no file) is the strictest
//! useful policy. The checks are pure functions, one module per kind — k8s-openapi objects in,
//! the allowed (possibly rewritten) object or every [`Violation`] out:
//!
//! - [`pss`]: the Pod Security Standards (baseline, restricted) evaluated in-process;
//! - [`pods`]: [`check_pod`] — PSS plus node placement, RuntimeClass / PriorityClass and volume
//!   types;
//! - [`services`]: [`check_service`], [`check_endpoints`], [`check_endpoint_slice`];
//! - [`ingress`]: the Ingress checks, [`check_ingress`];
//! - [`storage`]: the PersistentVolumeClaim checks, [`check_pvc`];
//! - [`networkpolicy`]: the NetworkPolicy checks, [`check_network_policy`];
//! - [`net`]: CIDRs, hostname patterns and the addresses no tenant may ever target.
//!
//! Facts only known at run time (the host API server's and nodes' addresses, hostnames other
//! namespaces already claim) live in [`HostFacts`], which the caller fills in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub mod ingress;
mod load;
pub mod net;
pub mod networkpolicy;
pub mod pods;
pub mod pss;
pub mod services;
pub mod storage;

pub use ingress::check_ingress;
pub use load::PolicyError;
pub use net::{Cidr, HostPattern, KeyGlob};
pub use networkpolicy::check_network_policy;
pub use pods::check_pod;
pub use services::{check_endpoint_slice, check_endpoints, check_service};
pub use storage::check_pvc;

use load::push_key;

/// One tenant's isolation policy. Field docs name the YAML key; the README's "Isolation policy" section explains each
/// setting, its default, and the attack it closes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Policy {
    /// `podSecurity`: the Pod Security Standards level.
    pub pod_security: PodSecurity,
    /// `pods`: node placement, runtime and priority classes, volume types.
    pub pods: PodsPolicy,
    /// `services`: Service types, external IPs, selector-less endpoints, ExternalName targets.
    pub services: ServicesPolicy,
    /// `ingress`: IngressClass, hostnames, annotations.
    pub ingress: IngressPolicy,
    /// `storage`: StorageClasses of PersistentVolumeClaims and generic ephemeral volumes.
    pub storage: StoragePolicy,
    /// `networkPolicies`: whether tenant NetworkPolicies are synced, and the ipBlocks they may name.
    pub network_policies: NetworkPoliciesPolicy,
    /// Run-time facts about the host (not part of the file).
    #[serde(skip)]
    pub host_facts: HostFacts,
}

/// Facts about the host cluster that the policy file cannot know; the caller keeps them current.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostFacts {
    /// Addresses of the host API server: the `kubernetes` Service ClusterIP, its endpoints, the
    /// address in the host kubeconfig. Never a valid endpoint, external IP or ExternalName target.
    pub api_server: Vec<IpAddr>,
    /// Addresses of the host's nodes (`status.addresses`): never a valid target either, or a
    /// tenant Service reaches the kubelet and every host-network pod.
    pub nodes: Vec<IpAddr>,
    /// Hostnames (lower case) claimed by Ingresses of other host namespaces, when vcsync may
    /// read Ingresses cluster-wide; an Ingress of this tenant claiming one of them is refused.
    pub claimed_ingress_hosts: BTreeSet<String>,
    /// The host's Service CIDRs (ServiceCIDR API, `--host-service-cidr`, observed ClusterIPs):
    /// never a valid target.
    pub service_cidrs: Vec<net::Cidr>,
}

impl HostFacts {
    /// The addresses of `ips` no known Service CIDR covers (each once, in order).
    pub fn uncovered_service_ips(&self, ips: &[IpAddr]) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for ip in ips {
            if !self.service_cidrs.iter().any(|c| c.contains(*ip)) && !out.contains(ip) {
                out.push(*ip);
            }
        }
        out
    }
}

/// Pod Security Standards level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// No Pod Security checks (the isolation rules of [`PodsPolicy`] still apply).
    Privileged,
    /// Prevents known privilege escalations.
    #[default]
    Baseline,
    /// Baseline plus current pod hardening best practice.
    Restricted,
}

impl Level {
    /// The level as Kubernetes spells it (`baseline`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// `podSecurity`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PodSecurity {
    /// `level`: `privileged`, `baseline` (default) or `restricted`.
    pub level: Level,
}

/// A class reference (RuntimeClass, PriorityClass, IngressClass, StorageClass) the tenant may
/// set: one forced class, or an allowlist plus what an unset class becomes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ClassPolicy {
    /// `forced`: every object gets this class; a tenant value other than it is refused.
    pub forced: Option<String>,
    /// `allowed`: classes a tenant may name.
    pub allowed: Vec<String>,
    /// `default`: the class an unset tenant value becomes (also allowed). For IngressClass and
    /// StorageClass this names what the host's default class is, so an empty class is checked
    /// (and written explicitly) instead of resolving to whatever the host default is later.
    pub default: Option<String>,
}

/// `pods`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PodsPolicy {
    /// `nodeSelector`: the tenant's node pool; added to every host pod.
    pub node_selector: BTreeMap<String, String>,
    /// `tolerations`: added to every host pod (the pool's taints).
    pub tolerations: Vec<TolerationSpec>,
    /// `allowedTolerations`: tenant tolerations passed through; all others are dropped.
    pub allowed_tolerations: Vec<TolerationSpec>,
    /// `runtimeClass`: RuntimeClass forced or allowlisted.
    pub runtime_class: ClassPolicy,
    /// `priorityClass`: PriorityClass forced or allowlisted.
    pub priority_class: ClassPolicy,
    /// `volumeTypes`: volume types a pod may use (default: the restricted level's set).
    pub volume_types: Vec<VolumeType>,
}

impl Default for PodsPolicy {
    fn default() -> Self {
        Self {
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            allowed_tolerations: Vec::new(),
            runtime_class: ClassPolicy::default(),
            priority_class: ClassPolicy::default(),
            volume_types: pss::RESTRICTED_VOLUME_TYPES
                .iter()
                .map(|t| VolumeType(t))
                .collect(),
        }
    }
}

/// A toleration as the policy writes it (the Kubernetes shape, checked when loaded).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TolerationSpec {
    /// `key`: the taint key (empty only with `Exists`, meaning every taint).
    pub key: String,
    /// `operator`: `Equal` (default) or `Exists`.
    pub operator: TolerationOperator,
    /// `value`: the taint value (`Equal` only).
    pub value: String,
    /// `effect`: `NoSchedule`, `PreferNoSchedule`, `NoExecute`; unset means every effect.
    pub effect: Option<TaintEffect>,
    /// `tolerationSeconds` (`NoExecute` only).
    pub toleration_seconds: Option<i64>,
}

/// Toleration operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TolerationOperator {
    /// The taint's value must equal the toleration's.
    #[default]
    Equal,
    /// Any value.
    Exists,
}

/// Taint effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaintEffect {
    /// `NoSchedule`.
    NoSchedule,
    /// `PreferNoSchedule`.
    PreferNoSchedule,
    /// `NoExecute`.
    NoExecute,
}

impl TaintEffect {
    /// As Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// A pod volume type by its field name in `spec.volumes[]` (`configMap`, `hostPath`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeType(pub &'static str);

impl Serialize for VolumeType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for VolumeType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        pss::VOLUME_TYPES
            .iter()
            .find(|t| **t == s)
            .map(|t| VolumeType(t))
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown volume type {s:?}, expected one of {}",
                    pss::VOLUME_TYPES.join(", ")
                ))
            })
    }
}

/// `services`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ServicesPolicy {
    /// `allowNodePort`: Services of type NodePort (and node ports of LoadBalancers).
    pub allow_node_port: bool,
    /// `allowLoadBalancer`: Services of type LoadBalancer.
    pub allow_load_balancer: bool,
    /// `allowedExternalIPCidrs`: every `spec.externalIPs` address must be inside one.
    #[serde(rename = "allowedExternalIPCidrs")]
    pub allowed_external_ip_cidrs: Vec<Cidr>,
    /// `allowedLoadBalancerIPCidrs`: a requested `spec.loadBalancerIP` must be inside one.
    #[serde(rename = "allowedLoadBalancerIPCidrs")]
    pub allowed_load_balancer_ip_cidrs: Vec<Cidr>,
    /// `allowedEndpointCidrs`: addresses of selector-less Endpoints / EndpointSlices (and
    /// ExternalName IP literals) must be inside one.
    pub allowed_endpoint_cidrs: Vec<Cidr>,
    /// `deniedCidrs`: never a target even inside an allowed CIDR (host node, pod and service
    /// networks, the API server); on top of the built-in loopback / link-local / metadata ranges.
    pub denied_cidrs: Vec<Cidr>,
    /// `allowedExternalNames`: hostname patterns an ExternalName Service may point at.
    pub allowed_external_names: Vec<HostPattern>,
}

/// `ingress`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct IngressPolicy {
    /// `class`: IngressClass forced or allowlisted; `default` names the host's default class.
    pub class: ClassPolicy,
    /// `allowedHosts`: hostname patterns every rule and TLS host must match.
    pub allowed_hosts: Vec<HostPattern>,
    /// `allowCatchAll`: rules without a host and `spec.defaultBackend`, which answer for every
    /// hostname the controller serves.
    pub allow_catch_all: bool,
    /// `annotations`: the annotation denylist.
    pub annotations: AnnotationPolicy,
}

/// `ingress.annotations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AnnotationPolicy {
    /// `denied`: annotation-key globs (`*` matches anything); replaces the default list.
    pub denied: Vec<KeyGlob>,
    /// `action`: `refuse` (default) the Ingress, or `strip` the annotations and sync the rest.
    pub action: AnnotationAction,
}

/// What to do with a denied annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnnotationAction {
    /// Refuse the whole object (the tenant sees why).
    #[default]
    Refuse,
    /// Remove the annotation from the host copy.
    Strip,
}

/// The default annotation denylist: ingress-nginx configuration snippets (arbitrary nginx
/// configuration, CVE-2021-25742, CVE-2023-5044), annotations that name Secrets or ConfigMaps
/// as `namespace/name` (reading other namespaces' objects through the controller,
/// CVE-2025-1097/-1098/-24514 family), annotations that make the controller fetch an arbitrary
/// URL or host (SSRF into the host network), `server-alias` (claims hostnames outside the
/// allowlist), and the equivalents of other common controllers.
pub const DEFAULT_DENIED_ANNOTATIONS: &[&str] = &[
    "nginx.ingress.kubernetes.io/*-snippet",
    "nginx.ingress.kubernetes.io/auth-tls-secret",
    "nginx.ingress.kubernetes.io/auth-secret",
    "nginx.ingress.kubernetes.io/auth-url",
    "nginx.ingress.kubernetes.io/auth-proxy-set-headers",
    "nginx.ingress.kubernetes.io/proxy-ssl-secret",
    "nginx.ingress.kubernetes.io/custom-headers",
    "nginx.ingress.kubernetes.io/fastcgi-params-configmap",
    "nginx.ingress.kubernetes.io/server-alias",
    "nginx.ingress.kubernetes.io/mirror-target",
    "nginx.ingress.kubernetes.io/mirror-host",
    "haproxy.org/*snippet*",
    "traefik.ingress.kubernetes.io/router.middlewares",
];

impl Default for AnnotationPolicy {
    fn default() -> Self {
        Self {
            denied: DEFAULT_DENIED_ANNOTATIONS
                .iter()
                .map(|g| g.parse().expect("default globs are valid"))
                .collect(),
            action: AnnotationAction::Refuse,
        }
    }
}

/// `storage`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct StoragePolicy {
    /// `class`: StorageClass forced or allowlisted; `default` names the host's default class.
    pub class: ClassPolicy,
}

/// `networkPolicies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct NetworkPoliciesPolicy {
    /// `sync`: tenant NetworkPolicies are synced into the host namespace (default `true`).
    pub sync: bool,
    /// `allowedCidrs`: every `ipBlock` of a tenant NetworkPolicy must lie inside one (default
    /// none: the platform's policies decide what tenant pods reach outside the tenant).
    pub allowed_cidrs: Vec<Cidr>,
}

impl Default for NetworkPoliciesPolicy {
    fn default() -> Self {
        Self {
            sync: true,
            allowed_cidrs: Vec::new(),
        }
    }
}

/// Why loading a policy file failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid policy.
    #[error("invalid policy {path}: {error}")]
    Invalid {
        /// The file.
        path: String,
        /// Where and why.
        error: PolicyError,
    },
}

impl Policy {
    /// Read and validate a policy file.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|error| LoadError::Invalid {
            path: path.display().to_string(),
            error,
        })
    }

    /// Parse and validate a policy document. Unknown keys, wrong types and invalid values are
    /// refused with their YAML path; an empty document is the default policy.
    pub fn from_yaml(yaml: &str) -> Result<Self, PolicyError> {
        let policy: Policy = if yaml.trim().is_empty() {
            Policy::default()
        } else {
            load::from_yaml(yaml)?
        };
        policy.validate()?;
        Ok(policy)
    }

    /// The effective policy (every default filled in) as YAML.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).expect("a policy always serializes")
    }

    /// The PodSecurity profile name used in messages (`baseline:latest`).
    pub fn pss_profile(&self) -> String {
        format!("{}:latest", self.pod_security.level.as_str())
    }

    /// [`event_message`] with the configured Pod Security level.
    pub fn event_message(&self, kind: &str, violations: &[Violation]) -> String {
        render_event(kind, self.pod_security.level, violations)
    }

    /// Checks across fields that the types alone cannot express.
    fn validate(&self) -> Result<(), PolicyError> {
        self.pods
            .runtime_class
            .validate("pods.runtimeClass", NameKind::Subdomain)?;
        self.pods
            .priority_class
            .validate("pods.priorityClass", NameKind::Subdomain)?;
        self.ingress
            .class
            .validate("ingress.class", NameKind::Subdomain)?;
        self.storage
            .class
            .validate("storage.class", NameKind::Subdomain)?;
        for (k, v) in &self.pods.node_selector {
            let mut path = "pods.nodeSelector".to_owned();
            push_key(&mut path, k);
            if !is_qualified_name(k) {
                return Err(PolicyError::at(
                    path,
                    format!("{k:?} is not a valid label key"),
                ));
            }
            if !is_label_value(v) {
                return Err(PolicyError::at(
                    path,
                    format!("{v:?} is not a valid label value"),
                ));
            }
        }
        for (i, t) in self.pods.tolerations.iter().enumerate() {
            t.validate(&format!("pods.tolerations[{i}]"))?;
        }
        for (i, t) in self.pods.allowed_tolerations.iter().enumerate() {
            let path = format!("pods.allowedTolerations[{i}]");
            t.validate(&path)?;
            if t.key.is_empty() {
                return Err(PolicyError::at(
                    format!("{path}.key"),
                    "an allowed toleration needs a key: one without would let a tenant tolerate every taint",
                ));
            }
        }
        Ok(())
    }
}

enum NameKind {
    Subdomain,
}

impl ClassPolicy {
    fn validate(&self, path: &str, kind: NameKind) -> Result<(), PolicyError> {
        let NameKind::Subdomain = kind;
        let check = |p: String, name: &str| {
            if is_dns_subdomain(name) {
                Ok(())
            } else {
                Err(PolicyError::at(
                    p,
                    format!("{name:?} is not a valid class name (a lower-case RFC 1123 subdomain)"),
                ))
            }
        };
        if let Some(f) = &self.forced {
            check(format!("{path}.forced"), f)?;
            if !self.allowed.is_empty() {
                return Err(PolicyError::at(
                    format!("{path}.allowed"),
                    "set either forced or allowed: a forced class admits no other",
                ));
            }
            if self.default.is_some() {
                return Err(PolicyError::at(
                    format!("{path}.default"),
                    "set either forced or default: a forced class is also the default",
                ));
            }
        }
        for (i, a) in self.allowed.iter().enumerate() {
            check(format!("{path}.allowed[{i}]"), a)?;
        }
        if let Some(d) = &self.default {
            check(format!("{path}.default"), d)?;
        }
        Ok(())
    }

    /// Whether `name` is forced, allowed or the default.
    pub fn admits(&self, name: &str) -> bool {
        match &self.forced {
            Some(f) => f == name,
            None => self.allowed.iter().any(|a| a == name) || self.default.as_deref() == Some(name),
        }
    }

    /// What an object's class becomes: `Ok(new value)` or `Err(reason)`. `unset_ok`: whether
    /// leaving it unset is acceptable when the policy names no default (true for RuntimeClass and
    /// PriorityClass, whose unset value is the host's plain runtime / default priority).
    pub fn resolve(&self, tenant: Option<&str>, unset_ok: bool) -> Result<Option<String>, String> {
        let tenant = tenant.filter(|t| !t.is_empty());
        match (&self.forced, tenant) {
            (Some(f), None) => Ok(Some(f.clone())),
            (Some(f), Some(t)) if t == f => Ok(Some(f.clone())),
            (Some(f), Some(t)) => Err(format!("{t:?} is not allowed: the policy forces {f:?}")),
            (None, Some(t)) if self.admits(t) => Ok(Some(t.to_owned())),
            (None, Some(t)) => Err(format!(
                "{t:?} is not allowed (allowed: {})",
                self.allowed_list()
            )),
            (None, None) => match &self.default {
                Some(d) => Ok(Some(d.clone())),
                None if unset_ok => Ok(None),
                None => Err(format!(
                    "a class must be set: the policy does not say what the host's default class is (allowed: {})",
                    self.allowed_list()
                )),
            },
        }
    }

    fn allowed_list(&self) -> String {
        let all: Vec<String> = self
            .allowed
            .iter()
            .chain(self.default.iter())
            .map(|a| format!("{a:?}"))
            .collect();
        if all.is_empty() {
            "none".to_owned()
        } else {
            all.join(", ")
        }
    }
}

impl TolerationSpec {
    fn validate(&self, path: &str) -> Result<(), PolicyError> {
        match self.operator {
            TolerationOperator::Exists if !self.value.is_empty() => Err(PolicyError::at(
                format!("{path}.value"),
                "must be empty when operator is Exists",
            )),
            TolerationOperator::Equal if self.key.is_empty() => Err(PolicyError::at(
                format!("{path}.operator"),
                "must be Exists when key is empty",
            )),
            _ if !self.key.is_empty() && !is_qualified_name(&self.key) => Err(PolicyError::at(
                format!("{path}.key"),
                format!("{:?} is not a valid taint key", self.key),
            )),
            _ if self.toleration_seconds.is_some()
                && self.effect != Some(TaintEffect::NoExecute) =>
            {
                Err(PolicyError::at(
                    format!("{path}.tolerationSeconds"),
                    "only valid with effect NoExecute",
                ))
            }
            _ => Ok(()),
        }
    }

    /// As a Kubernetes toleration.
    pub fn to_toleration(&self) -> k8s_openapi::api::core::v1::Toleration {
        k8s_openapi::api::core::v1::Toleration {
            key: (!self.key.is_empty()).then(|| self.key.clone()),
            operator: Some(
                match self.operator {
                    TolerationOperator::Equal => "Equal",
                    TolerationOperator::Exists => "Exists",
                }
                .to_owned(),
            ),
            value: (!self.value.is_empty()).then(|| self.value.clone()),
            effect: self.effect.map(|e| e.as_str().to_owned()),
            toleration_seconds: self.toleration_seconds,
        }
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A Kubernetes qualified name (`prefix/name` or `name`), as label and taint keys are.
fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_subdomain)
        && !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric())
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Static, low-cardinality rule name (`pss.privileged`, `service.external_ips`): the
    /// `rule` label of `vcsync_policy_violations_total`.
    pub rule: &'static str,
    /// The offending field(s) of the object (`spec.containers[0].securityContext.privileged`).
    pub field: String,
    /// What is wrong, for the tenant.
    pub message: String,
}

impl Violation {
    pub(crate) fn new(
        rule: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            rule,
            field: field.into(),
            message: message.into(),
        }
    }

    /// Whether this is a Pod Security Standards control (reported like the PodSecurity
    /// admission does).
    pub fn is_pod_security(&self) -> bool {
        self.rule.starts_with("pss.")
    }

    /// The name of the control, as the PodSecurity admission names it for PSS rules
    /// (`host namespaces`), the rule name otherwise.
    pub fn control(&self) -> &'static str {
        pss::control_name(self.rule).unwrap_or(self.rule)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.control(), self.message)
    }
}

/// Every static rule name any check reports (the possible `rule` labels of
/// `vcsync_policy_violations_total`).
pub fn rules() -> impl Iterator<Item = &'static str> {
    pss::rules()
        .chain(pods::RULES.iter().copied())
        .chain(services::RULES.iter().copied())
        .chain(ingress::RULES.iter().copied())
        .chain(storage::RULES.iter().copied())
        .chain(networkpolicy::RULES.iter().copied())
}

/// The message of the Warning Event (reason `PolicyViolation`) on a refused object: every failed
/// control, Pod Security ones as the Kubernetes PodSecurity admission words them, e.g.
/// `violates PodSecurity "baseline:latest": privileged (container "c" must not set
/// securityContext.privileged=true), hostPath volumes (volume "h")`.
///
/// Without the policy at hand, the level in the profile name is the lowest one that contains
/// every failed control; [`Policy::event_message`] names the configured level.
pub fn event_message(kind: &str, violations: &[Violation]) -> String {
    let level = if violations.iter().any(|v| pss::is_restricted_only(v.rule)) {
        Level::Restricted
    } else {
        Level::Baseline
    };
    render_event(kind, level, violations)
}

fn render_event(kind: &str, level: Level, violations: &[Violation]) -> String {
    let (pss, other): (Vec<_>, Vec<_>) = violations.iter().partition(|v| v.is_pod_security());
    let mut parts = Vec::new();
    if !pss.is_empty() {
        let list: Vec<String> = pss.iter().map(|v| v.to_string()).collect();
        parts.push(format!(
            "violates PodSecurity \"{}:latest\": {}",
            level.as_str(),
            list.join(", ")
        ));
    }
    if !other.is_empty() {
        let list: Vec<String> = other
            .iter()
            .map(|v| format!("{} ({}: {})", v.rule, v.field, v.message))
            .collect();
        parts.push(format!(
            "{kind} violates the isolation policy: {}",
            list.join(", ")
        ));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests;
