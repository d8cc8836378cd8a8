//! ResourceQuota: what an object uses (the quota evaluators), the admission check with
//! kube-apiserver's messages, and the full recount the quota controller does.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::quantity::Quantity;
use crate::apiserver::resources::{self, ResourceDef};
use crate::apiserver::store::Store;

/// Usage by resource name.
pub type Usage = BTreeMap<String, Quantity>;

/// Resource names that force every container to declare the matching request/limit.
const VALIDATION_SET: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// Legacy (unprefixed) names of the object-count resources.
fn legacy_count_name(def: &ResourceDef) -> Option<&'static str> {
    if !def.group.is_empty() {
        return None;
    }
    match def.plural {
        "pods"
        | "services"
        | "secrets"
        | "configmaps"
        | "persistentvolumeclaims"
        | "replicationcontrollers"
        | "resourcequotas" => Some(def.plural),
        _ => None,
    }
}

/// `count/<resource>[.<group>]`.
pub fn count_name(def: &ResourceDef) -> String {
    if def.group.is_empty() {
        format!("count/{}", def.plural)
    } else {
        format!("count/{}.{}", def.plural, def.group)
    }
}

fn pod_is_terminal(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

fn add_to(u: &mut Usage, k: &str, q: Quantity) {
    let cur = u.get(k).copied().unwrap_or_else(Quantity::zero);
    u.insert(k.to_string(), cur.add(&q));
}

/// Requests or limits of a pod: max(sum of containers, each init container) + overhead.
fn pod_resources(pod: &Value, which: &str) -> Usage {
    let mut sum = Usage::new();
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        for (k, v) in c["resources"][which].as_object().into_iter().flatten() {
            if let Some(q) = v.as_str().and_then(Quantity::parse) {
                add_to(&mut sum, k, q);
            }
        }
    }
    for c in pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for (k, v) in c["resources"][which].as_object().into_iter().flatten() {
            if let Some(q) = v.as_str().and_then(Quantity::parse)
                && sum.get(k).is_none_or(|cur| q > *cur)
            {
                sum.insert(k.clone(), q);
            }
        }
    }
    for (k, v) in pod["spec"]["overhead"].as_object().into_iter().flatten() {
        if let Some(q) = v.as_str().and_then(Quantity::parse) {
            add_to(&mut sum, k, q);
        }
    }
    sum
}

/// What one object charges (empty for a terminal pod).
pub fn usage_of(def: &ResourceDef, obj: &Value) -> Usage {
    let mut u = Usage::new();
    let one = Quantity::count(1);
    match (def.group, def.plural) {
        ("", "pods") => {
            if pod_is_terminal(obj) {
                return u;
            }
            u.insert("pods".into(), one);
            u.insert("count/pods".into(), one);
            for (k, q) in pod_resources(obj, "requests") {
                if k == "cpu" || k == "memory" || k == "ephemeral-storage" {
                    u.insert(k.clone(), q);
                }
                u.insert(format!("requests.{k}"), q);
            }
            for (k, q) in pod_resources(obj, "limits") {
                u.insert(format!("limits.{k}"), q);
            }
        }
        ("", "services") => {
            u.insert("services".into(), one);
            u.insert("count/services".into(), one);
            let ty = obj["spec"]["type"].as_str().unwrap_or("ClusterIP");
            if ty == "LoadBalancer" {
                u.insert("services.loadbalancers".into(), one);
            }
            let ports = obj["spec"]["ports"]
                .as_array()
                .map(|p| {
                    p.iter()
                        .filter(|p| p["nodePort"].as_i64().unwrap_or(0) != 0)
                        .count()
                })
                .unwrap_or(0);
            if (ty == "NodePort" || ty == "LoadBalancer") && ports > 0 {
                u.insert("services.nodeports".into(), Quantity::count(ports as i64));
            } else {
                u.insert("services.nodeports".into(), Quantity::zero());
            }
        }
        _ => {
            u.insert(count_name(def), one);
            if let Some(l) = legacy_count_name(def) {
                u.insert(l.into(), one);
            }
            if def.plural == "persistentvolumeclaims"
                && let Some(q) = obj["spec"]["resources"]["requests"]["storage"]
                    .as_str()
                    .and_then(Quantity::parse)
            {
                u.insert("requests.storage".into(), q);
            }
        }
    }
    u
}

/// Whether quota resource `name` is tracked by the evaluator of `def`.
pub fn matches_resource(def: &ResourceDef, name: &str) -> bool {
    match (def.group, def.plural) {
        ("", "pods") => {
            matches!(
                name,
                "pods" | "count/pods" | "cpu" | "memory" | "ephemeral-storage"
            ) || name.starts_with("requests.")
                || name.starts_with("limits.")
        }
        ("", "services") => matches!(
            name,
            "services" | "count/services" | "services.loadbalancers" | "services.nodeports"
        ),
        ("", "persistentvolumeclaims") => matches!(
            name,
            "persistentvolumeclaims" | "count/persistentvolumeclaims" | "requests.storage"
        ),
        _ => name == count_name(def) || legacy_count_name(def) == Some(name),
    }
}

fn parse_list(v: &Value) -> Usage {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            Some((
                k.clone(),
                v.as_str()
                    .and_then(Quantity::parse)
                    .or_else(|| v.as_i64().map(Quantity::count))?,
            ))
        })
        .collect()
}

fn pretty(u: &Usage) -> String {
    u.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a quota's scopes select the object (only pods have scopes worth evaluating).
fn scopes_match(quota: &Value, def: &ResourceDef, obj: &Value) -> bool {
    let scopes: Vec<&str> = quota["spec"]["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for s in scopes {
        if def.plural != "pods" || !def.group.is_empty() {
            return false;
        }
        let best_effort = super::defaults::qos_class(obj) == "BestEffort";
        let terminating = obj["spec"]["activeDeadlineSeconds"].as_i64().is_some();
        let ok = match s {
            "BestEffort" => best_effort,
            "NotBestEffort" => !best_effort,
            "Terminating" => terminating,
            "NotTerminating" => !terminating,
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// `podEvaluator.Constraints`: containers must declare what quota restricts.
fn pod_constraints(required: &BTreeSet<String>, pod: &Value) -> Option<String> {
    let req: BTreeSet<&str> = required
        .iter()
        .map(String::as_str)
        .filter(|r| VALIDATION_SET.contains(r))
        .collect();
    if req.is_empty() {
        return None;
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let containers = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            pod["spec"]["initContainers"]
                .as_array()
                .into_iter()
                .flatten(),
        );
    for c in containers {
        let mut have: BTreeSet<String> = BTreeSet::new();
        for (k, _) in c["resources"]["requests"].as_object().into_iter().flatten() {
            if k == "cpu" || k == "memory" {
                have.insert(k.clone());
            }
            have.insert(format!("requests.{k}"));
        }
        for (k, _) in c["resources"]["limits"].as_object().into_iter().flatten() {
            have.insert(format!("limits.{k}"));
        }
        for r in &req {
            if !have.contains(*r) {
                missing
                    .entry(r)
                    .or_default()
                    .insert(c["name"].as_str().unwrap_or("").to_string());
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Some(format!("must specify {}", parts.join("; ")))
}

/// Result of a quota admission check: the quotas to write back with their new `status.used`.
pub type Charges = Vec<(String, Value)>;

/// The ResourceQuota admission check for a create. `Err` is the forbidden reason (without the
/// `<plural> "<name>" is forbidden: ` prefix).
pub fn check_create(
    store: &Store,
    def: &ResourceDef,
    ns: &str,
    obj: &Value,
) -> Result<Charges, String> {
    let quotas: Vec<_> = store.list("resourcequotas", Some(ns)).cloned().collect();
    if quotas.is_empty() {
        return Ok(Vec::new());
    }
    let mut interesting = Vec::new();
    for q in &quotas {
        if !scopes_match(q, def, obj) {
            continue;
        }
        let hard = parse_list(&q["status"]["hard"]);
        let restricted: BTreeSet<String> = hard
            .keys()
            .filter(|k| matches_resource(def, k))
            .cloned()
            .collect();
        if restricted.is_empty() {
            continue;
        }
        let qname = q["metadata"]["name"].as_str().unwrap_or("");
        if def.plural == "pods"
            && def.group.is_empty()
            && let Some(msg) = pod_constraints(&restricted, obj)
        {
            return Err(format!("failed quota: {qname}: {msg}"));
        }
        let used = q["status"]["used"].as_object();
        let missing: Vec<&str> = restricted
            .iter()
            .map(String::as_str)
            .filter(|r| used.is_none_or(|u| !u.contains_key(*r)))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "status unknown for quota: {qname}, resources: {}",
                missing.join(",")
            ));
        }
        interesting.push(q);
    }
    if interesting.is_empty() {
        return Ok(Vec::new());
    }
    let delta: Usage = usage_of(def, obj)
        .into_iter()
        .filter(|(_, v)| !v.is_zero())
        .collect();
    if delta.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for q in interesting {
        let qname = q["metadata"]["name"].as_str().unwrap_or("").to_string();
        let hard = parse_list(&q["status"]["hard"]);
        let used = parse_list(&q["status"]["used"]);
        let requested: Usage = delta
            .iter()
            .filter(|(k, _)| hard.contains_key(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if requested.is_empty() {
            continue;
        }
        let mut new_used = used.clone();
        for (k, v) in &requested {
            add_to(&mut new_used, k, *v);
        }
        let exceeded: Vec<&String> = requested
            .keys()
            .filter(|k| new_used[*k] > hard[*k])
            .collect();
        if !exceeded.is_empty() {
            let mask = |u: &Usage| -> Usage {
                u.iter()
                    .filter(|(k, _)| exceeded.contains(k))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect()
            };
            return Err(format!(
                "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                pretty(&mask(&requested)),
                pretty(&mask(&used)),
                pretty(&mask(&hard))
            ));
        }
        let mut status = q["status"].clone();
        status["used"] = to_list(&new_used);
        out.push((qname, status));
    }
    Ok(out)
}

/// A usage map as a JSON resource list.
pub fn to_list(u: &Usage) -> Value {
    let m: Map<String, Value> = u
        .iter()
        .map(|(k, v)| (k.clone(), json!(v.canonical())))
        .collect();
    Value::Object(m)
}

/// The quota controller's recount: `status` for `quota` from everything in its namespace.
pub fn recompute_status(store: &Store, quota: &Value) -> Value {
    let ns = quota["metadata"]["namespace"].as_str().unwrap_or("");
    let hard_v = quota["spec"]["hard"].clone();
    let hard = parse_list(&hard_v);
    let mut used = Usage::new();
    let mut seen_storage: BTreeSet<&str> = BTreeSet::new();
    for name in hard.keys() {
        let defs: Vec<&'static ResourceDef> = resources::RESOURCES
            .iter()
            .filter(|d| d.namespaced && matches_resource(d, name))
            .collect();
        let Some(def) = defs.first().copied() else {
            if name.starts_with("count/") {
                used.insert(name.clone(), Quantity::zero());
            }
            continue;
        };
        let _ = seen_storage.insert(def.storage);
        let mut total = Quantity::zero();
        for obj in store.list(def.storage, Some(ns)) {
            if !scopes_match(quota, def, obj) {
                continue;
            }
            if let Some(q) = usage_of(def, obj).get(name) {
                total = total.add(q);
            }
        }
        used.insert(name.clone(), total);
    }
    json!({"hard": hard_v, "used": to_list(&used)})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> &'static ResourceDef {
        resources::find("", "v1", "pods").unwrap()
    }

    fn store_with_quota(status: Value) -> Store {
        let mut s = Store::new(100);
        let rv = s.next_rv();
        s.put(
            "resourcequotas",
            "ns",
            "q",
            json!({"metadata": {"name": "q", "namespace": "ns"}, "spec": {"hard": status["hard"].clone()}, "status": status}),
            rv,
        );
        s
    }

    fn pod(requests: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": requests}}]}})
    }

    #[test]
    fn must_specify_requests() {
        let s = store_with_quota(
            json!({"hard": {"pods": "2", "requests.cpu": "1", "requests.memory": "1Gi"}, "used": {"pods": "0", "requests.cpu": "0", "requests.memory": "0"}}),
        );
        let e = check_create(
            &s,
            pods(),
            "ns",
            &json!({"spec": {"containers": [{"name": "c", "resources": {}}]}}),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "failed quota: q: must specify requests.cpu for: c; requests.memory for: c"
        );
    }

    #[test]
    fn charges_and_exceeds() {
        let s = store_with_quota(
            json!({"hard": {"pods": "2", "requests.cpu": "1", "requests.memory": "1Gi"}, "used": {"pods": "0", "requests.cpu": "0", "requests.memory": "0"}}),
        );
        let charges = check_create(
            &s,
            pods(),
            "ns",
            &pod(json!({"cpu": "600m", "memory": "100Mi"})),
        )
        .unwrap();
        assert_eq!(
            charges[0].1["used"],
            json!({"pods": "1", "requests.cpu": "600m", "requests.memory": "100Mi"})
        );
        let s = store_with_quota(
            json!({"hard": {"pods": "2", "requests.cpu": "1", "requests.memory": "1Gi"}, "used": {"pods": "1", "requests.cpu": "600m", "requests.memory": "100Mi"}}),
        );
        let e = check_create(
            &s,
            pods(),
            "ns",
            &pod(json!({"cpu": "600m", "memory": "100Mi"})),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "exceeded quota: q, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1"
        );
    }

    #[test]
    fn status_unknown_before_the_controller_ran() {
        let s = store_with_quota(json!({"hard": {"services": "1"}}));
        let svc = resources::find("", "v1", "services").unwrap();
        let e = check_create(&s, svc, "ns", &json!({"spec": {"type": "ClusterIP"}})).unwrap_err();
        assert_eq!(e, "status unknown for quota: q, resources: services");
    }

    #[test]
    fn recount() {
        let mut s = store_with_quota(json!({}));
        let rv = s.next_rv();
        s.put(
            "pods",
            "ns",
            "a",
            pod(json!({"cpu": "600m", "memory": "100Mi"})),
            rv,
        );
        let rv = s.next_rv();
        s.put("secrets", "ns", "s", json!({}), rv);
        let q = json!({"metadata": {"namespace": "ns"}, "spec": {"hard": {"pods": "2", "requests.cpu": "1", "secrets": "10", "count/leases.coordination.k8s.io": "3"}}});
        let st = recompute_status(&s, &q);
        assert_eq!(
            st["used"],
            json!({"count/leases.coordination.k8s.io": "0", "pods": "1", "requests.cpu": "600m", "secrets": "1"})
        );
    }
}
