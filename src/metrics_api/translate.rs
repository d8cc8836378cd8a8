//! Pure part of the resource metrics API: request paths, label selectors, and the translation
//! of the host namespace's `PodMetrics` into the tenant's.
//!
//! A host `PodMetrics` is shown to the tenant only when its pod is one vcsync synced for this
//! tenant: the host pod carries this tenant's managed-by label, and its virtual-uid annotation
//! names the virtual pod that exists now under the name the annotations give. Everything the
//! tenant sees in `metadata` comes from the virtual pod (name, namespace, labels, creation
//! time); only the figures (`timestamp`, `window`, `containers`) come from the host.

use std::collections::BTreeMap;

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
    /// `.../nodes[/{name}]`: not served (see the module docs of [`super`]).
    Nodes,
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
                ["nodes"] | ["nodes", _] => Route::Nodes,
                _ => Route::NotFound,
            },
            _ => Route::NotFound,
        }
    }

    /// The verb and namespace a SubjectAccessReview asks about, for resource routes.
    pub fn access(&self) -> Option<(&'static str, Option<&str>)> {
        match self {
            Route::ListPods { namespace } => Some(("list", namespace.as_ref().map(|n| n.as_str()))),
            Route::GetPod { namespace, .. } => Some(("get", Some(namespace.as_str()))),
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

/// `/apis/metrics.k8s.io/v1beta1`, as metrics-server serves it, less `nodes`, which vcsync
/// does not serve.
pub fn api_resource_list() -> serde_json::Value {
    serde_json::json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [{
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

    #[rstest]
    #[case("/apis", Route::ApiGroupList)]
    #[case("/apis/metrics.k8s.io/", Route::ApiGroup)]
    #[case("/apis/metrics.k8s.io/v1beta1", Route::ApiResourceList)]
    #[case("/apis/metrics.k8s.io/v1beta1/pods", Route::ListPods { namespace: None })]
    #[case("/apis/metrics.k8s.io/v1beta1/namespaces/a/pods", Route::ListPods { namespace: Some(DnsLabel::new("a").unwrap()) })]
    #[case("/apis/metrics.k8s.io/v1beta1/namespaces/a/pods/web", Route::GetPod { namespace: DnsLabel::new("a").unwrap(), name: DnsSubdomain::new("web").unwrap() })]
    #[case("/apis/metrics.k8s.io/v1beta1/namespaces/A_/pods", Route::NotFound)]
    #[case("/apis/metrics.k8s.io/v1beta1/namespaces/a/pods/..", Route::NotFound)]
    #[case("/apis/metrics.k8s.io/v1beta1/nodes", Route::Nodes)]
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
