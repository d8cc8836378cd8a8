//! Pure part of the resource metrics API: request paths, label selectors, and the translation
//! of the host namespace's `PodMetrics` into the tenant's.
//!
//! A host `PodMetrics` is shown to the tenant only when its pod is one vcsync synced for this
//! tenant: the host pod carries this tenant's managed-by label, and its virtual-uid annotation
//! names the virtual pod that exists now under the name the annotations give. Everything the
//! tenant sees in `metadata` comes from the virtual pod (name, namespace, labels, creation
//! time); only the figures (`timestamp`, `window`, `containers`) come from the host.
//!
//! A virtual node's `NodeMetrics` ([`node_metrics`]) is the sum of the usage of this tenant's
//! pods (as above) that run on it, never the host node's own figures: those include other
//! tenants' and the provider's workloads, host-only data.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::markers;
use crate::names::{DnsLabel, DnsSubdomain};

/// The group/version served.
pub const GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";

/// `metrics.k8s.io/v1beta1` `PodMetrics`, as metrics-server serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMetrics {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// When the figures were taken (RFC 3339).
    #[serde(default)]
    pub timestamp: String,
    /// The interval the figures cover (a duration such as `10s`).
    #[serde(default)]
    pub window: String,
    /// Per-container usage.
    #[serde(default)]
    pub containers: Vec<ContainerMetrics>,
}

/// The usage of one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerMetrics {
    /// Container name.
    pub name: String,
    /// `cpu` and `memory` quantities.
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

/// A `PodMetricsList` as the host serves it (only the items matter).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodMetricsList {
    /// The items.
    #[serde(default)]
    pub items: Vec<PodMetrics>,
}

/// A parsed request path of the metrics API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/apis`: the group list.
    ApiGroupList,
    /// `/apis/metrics.k8s.io`: the group.
    ApiGroup,
    /// `/apis/metrics.k8s.io/v1beta1`: the resource list.
    ApiResourceList,
    /// `.../pods` (all namespaces) or `.../namespaces/{ns}/pods`.
    ListPods {
        /// `None`: every namespace.
        namespace: Option<DnsLabel>,
    },
    /// `.../namespaces/{ns}/pods/{name}`.
    GetPod {
        /// The virtual namespace.
        namespace: DnsLabel,
        /// The virtual pod.
        name: DnsSubdomain,
    },
    /// `.../nodes`: every virtual node's metrics.
    ListNodes,
    /// `.../nodes/{name}`.
    GetNode {
        /// The virtual node.
        name: DnsSubdomain,
    },
    /// Anything else.
    NotFound,
}

impl Route {
    /// Parses a request path (without the query). Invalid names are simply not found, as
    /// for kube-apiserver: nothing can exist under them.
    pub fn parse(path: &str) -> Route {
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        match segs.as_slice() {
            ["apis"] => Route::ApiGroupList,
            ["apis", "metrics.k8s.io"] => Route::ApiGroup,
            ["apis", "metrics.k8s.io", "v1beta1"] => Route::ApiResourceList,
            ["apis", "metrics.k8s.io", "v1beta1", rest @ ..] => match rest {
                ["pods"] => Route::ListPods { namespace: None },
                ["namespaces", ns, "pods"] => match DnsLabel::new(*ns) {
                    Ok(ns) => Route::ListPods {
                        namespace: Some(ns),
                    },
                    Err(_) => Route::NotFound,
                },
                ["namespaces", ns, "pods", name] => {
                    match (DnsLabel::new(*ns), DnsSubdomain::new(*name)) {
                        (Ok(namespace), Ok(name)) => Route::GetPod { namespace, name },
                        _ => Route::NotFound,
                    }
                }
                ["nodes"] => Route::ListNodes,
                ["nodes", name] => match DnsSubdomain::new(*name) {
                    Ok(name) => Route::GetNode { name },
                    Err(_) => Route::NotFound,
                },
                _ => Route::NotFound,
            },
            _ => Route::NotFound,
        }
    }

    /// The verb, resource and namespace a SubjectAccessReview asks about, for resource
    /// routes.
    pub fn access(&self) -> Option<(&'static str, &'static str, Option<&str>)> {
        match self {
            Route::ListPods { namespace } => {
                Some(("list", "pods", namespace.as_ref().map(|n| n.as_str())))
            }
            Route::GetPod { namespace, .. } => Some(("get", "pods", Some(namespace.as_str()))),
            Route::ListNodes => Some(("list", "nodes", None)),
            Route::GetNode { .. } => Some(("get", "nodes", None)),
            _ => None,
        }
    }

    /// The object name a `get` route asks for.
    pub fn name(&self) -> Option<&str> {
        match self {
            Route::GetPod { name, .. } | Route::GetNode { name } => Some(name.as_str()),
            _ => None,
        }
    }
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector (`a=b,c!=d,e in (f,g),h notin (i),j,!k`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector(Vec<Requirement>);

/// Why a label selector is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement {requirement:?}: {reason}")]
pub struct SelectorError {
    requirement: String,
    reason: &'static str,
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn valid_key(k: &str) -> bool {
    let name = k.rsplit_once('/').map_or(k, |(_, n)| n);
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl LabelSelector {
    /// Parses the `labelSelector` query parameter.
    ///
    /// # Errors
    /// [`SelectorError`] naming the requirement that does not parse.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut reqs = Vec::new();
        for raw in split_top(s) {
            let r = raw.trim();
            if r.is_empty() {
                continue;
            }
            let err = |reason| SelectorError {
                requirement: r.to_string(),
                reason,
            };
            let set = |rest: &str| -> Result<Vec<String>, SelectorError> {
                let inner = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|x| x.strip_suffix(')'))
                    .ok_or_else(|| err("expected a parenthesised set of values"))?;
                let vals: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
                if vals.iter().any(|v| !valid_value(v)) {
                    return Err(err("invalid label value"));
                }
                Ok(vals)
            };
            let req = if let Some(k) = r.strip_prefix('!') {
                Requirement::DoesNotExist(k.trim().to_string())
            } else if let Some((k, v)) = r.split_once("!=") {
                Requirement::NotIn(k.trim().to_string(), vec![v.trim().to_string()])
            } else if let Some((k, v)) = r.split_once("==").or_else(|| r.split_once('=')) {
                Requirement::In(k.trim().to_string(), vec![v.trim().to_string()])
            } else if let Some((k, rest)) = r.split_once(" notin ") {
                Requirement::NotIn(k.trim().to_string(), set(rest)?)
            } else if let Some((k, rest)) = r.split_once(" in ") {
                Requirement::In(k.trim().to_string(), set(rest)?)
            } else {
                Requirement::Exists(r.to_string())
            };
            let (key, values): (&str, &[String]) = match &req {
                Requirement::In(k, v) | Requirement::NotIn(k, v) => (k, v),
                Requirement::Exists(k) | Requirement::DoesNotExist(k) => (k, &[]),
            };
            if !valid_key(key) {
                return Err(err("invalid label key"));
            }
            if values.iter().any(|v| !valid_value(v)) {
                return Err(err("invalid label value"));
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

/// What the translation needs to know of this tenant.
pub struct Scope<'a> {
    /// The tenant (the managed-by label value).
    pub tenant: &'a str,
    /// The host namespace the figures come from.
    pub host_namespace: &'a str,
}

/// The virtual pod a host `PodMetrics` belongs to, when it belongs to this tenant at all.
///
/// `host_pod` looks a host pod (whole or as cached, [`crate::cache::HostPod`]) up by name in the
/// host namespace; `virtual_pod` looks a virtual pod up by namespace and name.
pub fn owner<'p, H: kube::Resource + 'p, V: kube::Resource<DynamicType = ()> + 'p>(
    scope: &Scope<'_>,
    metrics: &PodMetrics,
    host_pod: impl Fn(&str) -> Option<&'p H>,
    virtual_pod: impl Fn(&str, &str) -> Option<&'p V>,
) -> Option<&'p V> {
    if metrics.metadata.namespace.as_deref() != Some(scope.host_namespace) {
        return None;
    }
    let host = host_pod(metrics.metadata.name.as_deref()?)?;
    if host.labels().get(markers::MANAGED_BY).map(String::as_str) != Some(scope.tenant) {
        return None;
    }
    let ann = host.annotations();
    let (ns, name, uid) = (
        ann.get(markers::VIRTUAL_NAMESPACE)?,
        ann.get(markers::VIRTUAL_NAME)?,
        ann.get(markers::VIRTUAL_UID)?,
    );
    let vpod = virtual_pod(ns, name)?;
    (vpod.meta().uid.as_ref() == Some(uid)).then_some(vpod)
}

/// The tenant's view of one host `PodMetrics` of its virtual pod `vpod`.
pub fn to_virtual<V: kube::Resource>(metrics: &PodMetrics, vpod: &V) -> PodMetrics {
    let meta = vpod.meta();
    PodMetrics {
        metadata: ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            labels: meta.labels.clone(),
            creation_timestamp: meta.creation_timestamp.clone(),
            ..ObjectMeta::default()
        },
        timestamp: metrics.timestamp.clone(),
        window: metrics.window.clone(),
        containers: metrics.containers.clone(),
    }
}

/// The tenant's `PodMetrics` among `host_items`, in `namespace` (all when `None`) and matching
/// `selector`, sorted by namespace and name.
pub fn translate_list<'p, H: kube::Resource + 'p, V: kube::Resource<DynamicType = ()> + 'p>(
    scope: &Scope<'_>,
    host_items: &[PodMetrics],
    namespace: Option<&str>,
    selector: &LabelSelector,
    host_pod: impl Fn(&str) -> Option<&'p H>,
    virtual_pod: impl Fn(&str, &str) -> Option<&'p V>,
) -> Vec<PodMetrics> {
    let mut out: Vec<PodMetrics> = host_items
        .iter()
        .filter_map(|m| Some((m, owner(scope, m, &host_pod, &virtual_pod)?)))
        .filter(|(_, v)| namespace.is_none() || v.meta().namespace.as_deref() == namespace)
        .filter(|(_, v)| selector.matches(v.labels()))
        .map(|(m, v)| to_virtual(m, v))
        .collect();
    out.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    out
}

/// `metrics.k8s.io/v1beta1` `NodeMetrics`, as metrics-server serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeMetrics {
    /// Object metadata (the virtual node's name, labels and creation time).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// When the figures were taken: the latest of the summed pods'.
    #[serde(default)]
    pub timestamp: String,
    /// The interval the figures cover (the summed pods').
    #[serde(default)]
    pub window: String,
    /// `cpu` and `memory` quantities.
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

/// A quantity in nano-units (`150m` -> 150_000_000, `1Ki` -> 1024 * 10^9); `None` when it does
/// not parse (Kubernetes quantity syntax: decimal or binary suffixes, or an `e`/`E` exponent).
pub fn parse_nanos(s: &str) -> Option<i128> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let pow10 = |e: u32| 10i128.checked_pow(e);
    let mult: i128 = match suffix {
        "n" => 1,
        "u" => 1_000,
        "m" => 1_000_000,
        "" => 1_000_000_000,
        "k" => pow10(12)?,
        "M" => pow10(15)?,
        "G" => pow10(18)?,
        "T" => pow10(21)?,
        "P" => pow10(24)?,
        "E" => pow10(27)?,
        "Ki" => 1_000_000_000 << 10,
        "Mi" => 1_000_000_000 << 20,
        "Gi" => 1_000_000_000 << 30,
        "Ti" => 1_000_000_000 << 40,
        "Pi" => 1_000_000_000 << 50,
        "Ei" => 1_000_000_000 << 60,
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().ok()?;
            let total = exp.checked_add(9)?;
            pow10(u32::try_from(total).ok()?)?
        }
        _ => return None,
    };
    let (neg, num) = match num.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, num.strip_prefix('+').unwrap_or(num)),
    };
    let value = match num.split_once('.') {
        None => num.parse::<i128>().ok()?.checked_mul(mult)?,
        Some((int, frac)) => {
            let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
            let digits = frac.len().min(18) as u32;
            let frac: i128 = if digits == 0 {
                0
            } else {
                frac.get(..digits as usize)?.parse().ok()?
            };
            int.checked_mul(mult)?
                .checked_add(frac.checked_mul(mult)? / pow10(digits)?)?
        }
    };
    Some(if neg { -value } else { value })
}

/// A nano-unit amount written as Kubernetes would: CPU in millicores (`350m`, or nanocores when
/// finer), everything else in bytes with the largest exact binary suffix (`20Mi`, `1536Ki`).
pub fn format_nanos(resource: &str, nanos: i128) -> Quantity {
    const NANO: i128 = 1_000_000_000;
    if resource == "cpu" {
        return Quantity(if nanos % 1_000_000 == 0 {
            format!("{}m", nanos / 1_000_000)
        } else {
            format!("{nanos}n")
        });
    }
    if nanos % NANO != 0 {
        return Quantity(format!("{}m", nanos / 1_000_000));
    }
    let bytes = nanos / NANO;
    for (suffix, shift) in [("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if bytes != 0 && bytes % (1i128 << shift) == 0 {
            return Quantity(format!("{}{suffix}", bytes >> shift));
        }
    }
    Quantity(bytes.to_string())
}

/// The `NodeMetrics` of `nodes` (the tenant's virtual nodes a request asks about): each is the
/// sum of the usage of this tenant's pods ([`owner`]) whose host pod runs on the node of that
/// name. A node without any such pod figures is left out, as metrics-server leaves out nodes
/// The node a host pod runs on: read from a whole pod or from the cached projection.
pub trait HostPodNode: kube::Resource {
    fn node(&self) -> Option<&str>;
}

impl HostPodNode for Pod {
    fn node(&self) -> Option<&str> {
        self.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
    }
}

impl HostPodNode for crate::cache::HostPod {
    fn node(&self) -> Option<&str> {
        self.node_name()
    }
}

/// it has no figures for. Sorted by name.
pub fn node_metrics<'p, H: HostPodNode + 'p, V: kube::Resource<DynamicType = ()> + 'p>(
    scope: &Scope<'_>,
    host_items: &[PodMetrics],
    nodes: &[&Node],
    host_pod: impl Fn(&str) -> Option<&'p H>,
    virtual_pod: impl Fn(&str, &str) -> Option<&'p V>,
) -> Vec<NodeMetrics> {
    let mut sums: BTreeMap<String, (BTreeMap<String, i128>, String, String)> = BTreeMap::new();
    for m in host_items {
        if owner(scope, m, &host_pod, &virtual_pod).is_none() {
            continue;
        }
        let Some(node) = m
            .metadata
            .name
            .as_deref()
            .and_then(&host_pod)
            .and_then(|p| p.node().map(str::to_owned))
        else {
            continue;
        };
        if !nodes
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(&node))
        {
            continue;
        }
        let entry = sums
            .entry(node)
            .or_insert_with(|| (BTreeMap::new(), String::new(), m.window.clone()));
        if m.timestamp > entry.1 {
            entry.1 = m.timestamp.clone();
        }
        for c in &m.containers {
            for (res, q) in &c.usage {
                if let Some(n) = parse_nanos(&q.0) {
                    *entry.0.entry(res.clone()).or_default() += n;
                }
            }
        }
    }
    sums.into_iter()
        .filter_map(|(name, (usage, timestamp, window))| {
            let node = nodes
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(&name))?;
            Some(NodeMetrics {
                metadata: ObjectMeta {
                    name: Some(name),
                    labels: node.metadata.labels.clone(),
                    creation_timestamp: node.metadata.creation_timestamp.clone(),
                    ..ObjectMeta::default()
                },
                timestamp,
                window,
                usage: usage
                    .into_iter()
                    .map(|(r, n)| {
                        let q = format_nanos(&r, n);
                        (r, q)
                    })
                    .collect(),
            })
        })
        .collect()
}

/// The JSON of one `NodeMetrics` as served (with its type meta).
pub fn node_json(m: &NodeMetrics) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    out.insert("kind".into(), "NodeMetrics".into());
    out.insert("apiVersion".into(), GROUP_VERSION.into());
    if let serde_json::Value::Object(o) = serde_json::to_value(m).unwrap_or_default() {
        out.extend(o);
    }
    serde_json::Value::Object(out)
}

/// The JSON of a `NodeMetricsList` as served.
pub fn node_list_json(items: &[NodeMetrics]) -> serde_json::Value {
    serde_json::json!({
        "kind": "NodeMetricsList",
        "apiVersion": GROUP_VERSION,
        "metadata": {},
        "items": items.iter().map(node_json).collect::<Vec<_>>(),
    })
}

/// The JSON of one `PodMetrics` as served (with its type meta).
pub fn item_json(m: &PodMetrics) -> serde_json::Value {
    let mut v = serde_json::to_value(m).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        let mut out = serde_json::Map::new();
        out.insert("kind".into(), "PodMetrics".into());
        out.insert("apiVersion".into(), GROUP_VERSION.into());
        out.extend(std::mem::take(obj));
        return serde_json::Value::Object(out);
    }
    v
}

/// The JSON of a `PodMetricsList` as served.
pub fn list_json(items: &[PodMetrics]) -> serde_json::Value {
    serde_json::json!({
        "kind": "PodMetricsList",
        "apiVersion": GROUP_VERSION,
        "metadata": {},
        "items": items.iter().map(item_json).collect::<Vec<_>>(),
    })
}

/// `/apis/metrics.k8s.io/v1beta1`, as metrics-server serves it.
pub fn api_resource_list() -> serde_json::Value {
    serde_json::json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [{
            "name": "nodes",
            "singularName": "",
            "namespaced": false,
            "kind": "NodeMetrics",
            "verbs": ["get", "list"],
        }, {
            "name": "pods",
            "singularName": "",
            "namespaced": true,
            "kind": "PodMetrics",
            "verbs": ["get", "list"],
        }],
    })
}

/// `/apis/metrics.k8s.io`.
pub fn api_group() -> serde_json::Value {
    let gv = serde_json::json!({"groupVersion": GROUP_VERSION, "version": "v1beta1"});
    serde_json::json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": "metrics.k8s.io",
        "versions": [gv.clone()],
        "preferredVersion": gv,
    })
}

/// `/apis`: the one group this server serves.
pub fn api_group_list() -> serde_json::Value {
    let mut g = api_group();
    if let Some(o) = g.as_object_mut() {
        o.remove("kind");
        o.remove("apiVersion");
    }
    serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [g]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use rstest::rstest;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn host_pod(name: &str, tenant: &str, vns: &str, vname: &str, uid: &str) -> Pod {
        pod(json!({"metadata": {
            "name": name, "namespace": "host-ns",
            "labels": {markers::MANAGED_BY: tenant, "app": "host-label"},
            "annotations": {markers::VIRTUAL_NAMESPACE: vns, markers::VIRTUAL_NAME: vname, markers::VIRTUAL_UID: uid},
        }}))
    }

    fn vpod(ns: &str, name: &str, uid: &str, labels: serde_json::Value) -> Pod {
        pod(json!({"metadata": {
            "name": name, "namespace": ns, "uid": uid, "labels": labels,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        }}))
    }

    fn metrics(name: &str, ns: &str, cpu: &str) -> PodMetrics {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "labels": {markers::MANAGED_BY: "t1"}},
            "timestamp": "2026-01-01T00:01:00Z",
            "window": "10s",
            "containers": [{"name": "app", "usage": {"cpu": cpu, "memory": "12Mi"}}],
        }))
        .unwrap()
    }

    struct World {
        host: Vec<Pod>,
        virt: Vec<Pod>,
        items: Vec<PodMetrics>,
    }

    fn world() -> World {
        World {
            host: vec![
                host_pod("web-x-team-a-t1", "t1", "team-a", "web", "u-web"),
                host_pod("db-x-team-b-t1", "t1", "team-b", "db", "u-db"),
                // Another tenant's pod in the same host namespace.
                host_pod("web-x-team-a-t2", "t2", "team-a", "web", "u-web"),
                // A host copy whose virtual pod was recreated (uid differs): stale.
                host_pod("old-x-team-a-t1", "t1", "team-a", "old", "u-gone"),
                // An unmanaged host pod that claims to be a tenant pod by annotation only.
                pod(
                    json!({"metadata": {"name": "intruder", "namespace": "host-ns",
                    "annotations": {markers::VIRTUAL_NAMESPACE: "team-a", markers::VIRTUAL_NAME: "web", markers::VIRTUAL_UID: "u-web"}}}),
                ),
            ],
            virt: vec![
                vpod(
                    "team-a",
                    "web",
                    "u-web",
                    json!({"app": "web", "tier": "front"}),
                ),
                vpod("team-b", "db", "u-db", json!({"app": "db"})),
                vpod("team-a", "old", "u-new", json!({"app": "old"})),
            ],
            items: vec![
                metrics("web-x-team-a-t1", "host-ns", "100m"),
                metrics("db-x-team-b-t1", "host-ns", "250m"),
                metrics("web-x-team-a-t2", "host-ns", "999m"),
                metrics("old-x-team-a-t1", "host-ns", "1"),
                metrics("intruder", "host-ns", "2"),
                metrics("no-such-host-pod", "host-ns", "3"),
                // Figures of another host namespace never count.
                metrics("web-x-team-a-t1", "other-ns", "4"),
            ],
        }
    }

    fn run(w: &World, ns: Option<&str>, sel: &str) -> Vec<(String, String, String)> {
        let scope = Scope {
            tenant: "t1",
            host_namespace: "host-ns",
        };
        let sel = LabelSelector::parse(sel).unwrap();
        translate_list(
            &scope,
            &w.items,
            ns,
            &sel,
            |n| {
                w.host
                    .iter()
                    .find(|p| p.metadata.name.as_deref() == Some(n))
            },
            |ns, n| {
                w.virt.iter().find(|p| {
                    p.metadata.namespace.as_deref() == Some(ns)
                        && p.metadata.name.as_deref() == Some(n)
                })
            },
        )
        .into_iter()
        .map(|m| {
            (
                m.metadata.namespace.unwrap(),
                m.metadata.name.unwrap(),
                m.containers[0].usage["cpu"].0.clone(),
            )
        })
        .collect()
    }

    fn t(ns: &str, name: &str, cpu: &str) -> (String, String, String) {
        (ns.into(), name.into(), cpu.into())
    }

    #[rstest]
    #[case::all_namespaces(None, "", vec![t("team-a", "web", "100m"), t("team-b", "db", "250m")])]
    #[case::one_namespace(Some("team-a"), "", vec![t("team-a", "web", "100m")])]
    #[case::other_namespace(Some("team-b"), "", vec![t("team-b", "db", "250m")])]
    #[case::unknown_namespace(Some("team-z"), "", vec![])]
    #[case::selector_on_virtual_labels(None, "app=web", vec![t("team-a", "web", "100m")])]
    #[case::selector_set(None, "app in (db, web),tier!=back", vec![t("team-a", "web", "100m"), t("team-b", "db", "250m")])]
    #[case::host_labels_are_not_seen(None, "app=host-label", vec![])]
    #[case::exists(None, "tier", vec![t("team-a", "web", "100m")])]
    #[case::not_exists(None, "!tier", vec![t("team-b", "db", "250m")])]
    fn only_this_tenants_synced_pods_are_shown(
        #[case] ns: Option<&str>,
        #[case] sel: &str,
        #[case] want: Vec<(String, String, String)>,
    ) {
        assert_eq!(run(&world(), ns, sel), want);
    }

    #[test]
    fn translated_pod_metrics() {
        let w = world();
        let m = to_virtual(&w.items[0], &w.virt[0]);
        insta::assert_json_snapshot!(item_json(&m));
    }

    fn node(name: &str, labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels,
            "creationTimestamp": "2026-01-01T00:00:00Z"}}))
        .unwrap()
    }

    #[test]
    fn node_metrics_sum_only_this_tenants_pods_on_each_virtual_node() {
        let mut w = world();
        // Every host pod, the other tenant's and the unmanaged one included, runs on n1; a
        // second pod of this tenant runs on n2.
        for p in &mut w.host {
            p.spec =
                Some(serde_json::from_value(json!({"nodeName": "n1", "containers": []})).unwrap());
        }
        let mut second = host_pod("api-x-team-a-t1", "t1", "team-a", "api", "u-api");
        second.spec =
            Some(serde_json::from_value(json!({"nodeName": "n2", "containers": []})).unwrap());
        w.host.push(second);
        w.virt.push(vpod("team-a", "api", "u-api", json!({})));
        let mut m = metrics("api-x-team-a-t1", "host-ns", "1500u");
        m.timestamp = "2026-01-01T00:02:00Z".into();
        w.items.push(m);
        let scope = Scope {
            tenant: "t1",
            host_namespace: "host-ns",
        };
        let (n1, n2, n3) = (
            node("n1", json!({"zone": "a"})),
            node("n2", json!({})),
            node("n3", json!({})),
        );
        let run = |nodes: &[&Node]| {
            node_metrics(
                &scope,
                &w.items,
                nodes,
                |n| {
                    w.host
                        .iter()
                        .find(|p| p.metadata.name.as_deref() == Some(n))
                },
                |ns, n| {
                    w.virt.iter().find(|p| {
                        p.metadata.namespace.as_deref() == Some(ns)
                            && p.metadata.name.as_deref() == Some(n)
                    })
                },
            )
        };
        let all = run(&[&n1, &n2, &n3]);
        let got: Vec<(String, String, String, String)> = all
            .iter()
            .map(|m| {
                (
                    m.metadata.name.clone().unwrap(),
                    m.usage["cpu"].0.clone(),
                    m.usage["memory"].0.clone(),
                    m.timestamp.clone(),
                )
            })
            .collect();
        // n1: web (100m) + db (250m) only: not the other tenant's 999m, the stale copy, the
        // unmanaged pod or figures without a host pod. n3 runs none of the tenant's pods.
        assert_eq!(
            got,
            [
                (
                    "n1".into(),
                    "350m".into(),
                    "24Mi".into(),
                    "2026-01-01T00:01:00Z".into()
                ),
                (
                    "n2".into(),
                    "1500000n".into(),
                    "12Mi".into(),
                    "2026-01-01T00:02:00Z".into()
                ),
            ]
        );
        assert_eq!(
            all[0].metadata.labels,
            Some(BTreeMap::from([("zone".to_string(), "a".to_string())]))
        );
        // Only the nodes asked about.
        assert_eq!(run(&[&n2]).len(), 1);
        insta::assert_json_snapshot!(node_json(&all[0]));
    }

    #[rstest]
    #[case("150m", 150_000_000)]
    #[case("1", 1_000_000_000)]
    #[case("0.5", 500_000_000)]
    #[case("250u", 250_000)]
    #[case("12n", 12)]
    #[case("1Ki", 1024 * 1_000_000_000)]
    #[case("20Mi", 20 * 1_048_576 * 1_000_000_000)]
    #[case("1k", 1_000_000_000_000)]
    #[case("1e3", 1_000_000_000_000)]
    #[case("1.5Gi", 1_610_612_736 * 1_000_000_000)]
    fn quantities_parse_to_nanos(#[case] q: &str, #[case] want: i128) {
        assert_eq!(parse_nanos(q), Some(want));
    }

    #[rstest]
    #[case("cpu", "350m", "350m")]
    #[case("cpu", "2", "2000m")]
    #[case("cpu", "1500u", "1500000n")]
    #[case("memory", "24Mi", "24Mi")]
    #[case("memory", "1536Ki", "1536Ki")]
    #[case("memory", "2048Mi", "2Gi")]
    #[case("memory", "1000", "1000")]
    fn quantities_format_like_kubernetes(#[case] r: &str, #[case] q: &str, #[case] want: &str) {
        assert_eq!(format_nanos(r, parse_nanos(q).unwrap()).0, want);
    }

    #[test]
    fn bad_quantities_do_not_parse() {
        for q in ["", "abc", "1x", "1.2.3"] {
            assert_eq!(parse_nanos(q), None, "{q}");
        }
    }

    #[rstest]
    #[case("/apis", Route::ApiGroupList)]
    #[case("/apis/metrics.k8s.io/", Route::ApiGroup)]
    #[case("/apis/metrics.k8s.io/v1beta1", Route::ApiResourceList)]
    #[case("/apis/metrics.k8s.io/v1beta1/pods", Route::ListPods { namespace: None })]
    #[case("/apis/metrics.k8s.io/v1beta1/namespaces/a/pods", Route::ListPods { namespace: Some(DnsLabel::new("a").unwrap()) })]
    #[case("/apis/metrics.k8s.io/v1beta1/namespaces/a/pods/web", Route::GetPod { namespace: DnsLabel::new("a").unwrap(), name: DnsSubdomain::new("web").unwrap() })]
    #[case("/apis/metrics.k8s.io/v1beta1/namespaces/A_/pods", Route::NotFound)]
    #[case("/apis/metrics.k8s.io/v1beta1/namespaces/a/pods/..", Route::NotFound)]
    #[case("/apis/metrics.k8s.io/v1beta1/nodes", Route::ListNodes)]
    #[case("/apis/metrics.k8s.io/v1beta1/nodes/n1", Route::GetNode { name: DnsSubdomain::new("n1").unwrap() })]
    #[case("/apis/metrics.k8s.io/v1beta1/nodes/N_1", Route::NotFound)]
    #[case(
        "/apis/metrics.k8s.io/v1beta1/namespaces/a/pods/web/x",
        Route::NotFound
    )]
    #[case("/api/v1/pods", Route::NotFound)]
    #[case("/apis/apps/v1", Route::NotFound)]
    fn routes(#[case] path: &str, #[case] want: Route) {
        assert_eq!(Route::parse(path), want);
    }

    #[rstest]
    #[case("a=b,", true)]
    #[case("a in (b", false)]
    #[case("a=b c", false)]
    #[case("=b", false)]
    #[case("a notin (x, y)", true)]
    #[case("example.com/a==b", true)]
    fn selector_syntax(#[case] s: &str, #[case] ok: bool) {
        assert_eq!(LabelSelector::parse(s).is_ok(), ok, "{s}");
    }

    proptest::proptest! {
        /// Whatever the host namespace holds, nothing shown names a host pod, and everything
        /// shown is a virtual pod of the asked namespace.
        #[test]
        fn never_shows_host_names(names in proptest::collection::vec("[a-z]{1,5}", 0..6), ns in "team-[ab]") {
            let mut w = world();
            for n in &names {
                w.items.push(metrics(n, "host-ns", "1m"));
            }
            for (vns, vname, _) in run(&w, Some(&ns), "") {
                proptest::prop_assert_eq!(&vns, &ns);
                proptest::prop_assert!(w.virt.iter().any(|p| p.metadata.name.as_deref() == Some(vname.as_str())));
            }
        }
    }
}
