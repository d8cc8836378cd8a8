//! Pod admission plugins: ServiceAccount (lookup + the projected `kube-api-access-*` volume),
//! DefaultTolerationSeconds, LimitRanger (defaults and min/max), Priority, and `pods/binding`.

use serde_json::{Value, json};

use super::quantity::Quantity;
use crate::apiserver::ops::random_suffix;
use crate::apiserver::store::Store;

const SA_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// ServiceAccount admission. `Err` is the forbidden reason.
pub fn service_account(store: &Store, ns: &str, pod: &mut Value) -> Result<(), String> {
    // Mirror pods (static pods reported by kubelets) are exempt.
    if pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string() {
        return Ok(());
    }
    let spec = &mut pod["spec"];
    let name = spec["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();
    spec["serviceAccountName"] = json!(name);
    spec["serviceAccount"] = json!(name);
    let Some(sa) = store.get("serviceaccounts", ns, &name) else {
        return Err(format!(
            "error looking up service account {ns}/{name}: serviceaccount \"{name}\" not found"
        ));
    };
    let automount = match spec["automountServiceAccountToken"].as_bool() {
        Some(b) => b,
        None => sa["automountServiceAccountToken"].as_bool().unwrap_or(true),
    };
    if !automount {
        return Ok(());
    }
    let containers_have_mount = |spec: &Value| {
        ["initContainers", "containers"].iter().any(|l| {
            spec[*l].as_array().into_iter().flatten().any(|c| {
                c["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|m| m["mountPath"] == SA_MOUNT_PATH)
            })
        })
    };
    if containers_have_mount(spec) {
        return Ok(());
    }
    let vol_name = format!("kube-api-access-{}", random_suffix());
    let volume = json!({
        "name": vol_name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ],
            "defaultMode": 420
        }
    });
    match spec["volumes"].as_array_mut() {
        Some(v) => v.push(volume),
        None => spec["volumes"] = json!([volume]),
    }
    let mount = json!({"name": vol_name, "readOnly": true, "mountPath": SA_MOUNT_PATH});
    for list in ["initContainers", "containers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                match c["volumeMounts"].as_array_mut() {
                    Some(m) => m.push(mount.clone()),
                    None => {
                        if let Some(obj) = c.as_object_mut() {
                            obj.insert("volumeMounts".into(), json!([mount.clone()]));
                        }
                    }
                }
                super::defaults::reorder(c, CONTAINER_ORDER_HINT);
            }
        }
    }
    Ok(())
}

/// Where `volumeMounts` goes relative to its neighbours (the full order is in defaults).
const CONTAINER_ORDER_HINT: &[&str] = &[
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "ports",
    "envFrom",
    "env",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "volumeMounts",
    "volumeDevices",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "imagePullPolicy",
    "securityContext",
    "stdin",
    "stdinOnce",
    "tty",
];

/// DefaultTolerationSeconds: tolerate not-ready / unreachable for 300s unless already tolerated.
pub fn default_tolerations(pod: &mut Value) {
    let tol: Vec<Value> = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let tolerates = |key: &str| {
        tol.iter().any(|t| {
            let k = t["key"].as_str().unwrap_or("");
            let e = t["effect"].as_str().unwrap_or("");
            (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
        })
    };
    let mut out = tol.clone();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !tolerates(key) {
            out.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    if out.len() != tol.len() {
        pod["spec"]["tolerations"] = Value::Array(out);
    }
}

/// LimitRanger defaults from every `Container` limit of the namespace's LimitRanges.
pub fn limit_ranger_defaults(store: &Store, ns: &str, pod: &mut Value) {
    let mut def_limits = serde_json::Map::new();
    let mut def_requests = serde_json::Map::new();
    let mut any = false;
    for lr in store.list("limitranges", Some(ns)) {
        for item in lr["spec"]["limits"].as_array().into_iter().flatten() {
            if item["type"] != "Container" {
                continue;
            }
            any = true;
            for (k, v) in item["default"].as_object().into_iter().flatten() {
                def_limits.insert(k.clone(), v.clone());
            }
            for (k, v) in item["defaultRequest"].as_object().into_iter().flatten() {
                def_requests.insert(k.clone(), v.clone());
            }
        }
    }
    if !any || (def_limits.is_empty() && def_requests.is_empty()) {
        return;
    }
    let mut notes: Vec<String> = Vec::new();
    for (list, prefix) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(cs) = pod["spec"].get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs {
            let cname = c["name"].as_str().unwrap_or("").to_string();
            if !c["resources"].is_object() {
                c["resources"] = json!({});
            }
            let res = &mut c["resources"];
            let mut set_limits: Vec<String> = Vec::new();
            let mut set_requests: Vec<String> = Vec::new();
            for (k, v) in &def_limits {
                if res["limits"].get(k).is_none() {
                    if !res["limits"].is_object() {
                        res["limits"] = json!({});
                    }
                    res["limits"][k] = v.clone();
                    set_limits.push(k.clone());
                }
            }
            for (k, v) in &def_requests {
                if res["requests"].get(k).is_none() {
                    if !res["requests"].is_object() {
                        res["requests"] = json!({});
                    }
                    res["requests"][k] = v.clone();
                    set_requests.push(k.clone());
                }
            }
            super::defaults::reorder(res, &["limits", "requests", "claims"]);
            set_requests.sort();
            set_limits.sort();
            if !set_requests.is_empty() {
                notes.push(format!(
                    "{} request for {prefix} {cname}",
                    set_requests.join(", ")
                ));
            }
            if !set_limits.is_empty() {
                notes.push(format!(
                    "{} limit for {prefix} {cname}",
                    set_limits.join(", ")
                ));
            }
        }
    }
    if !notes.is_empty() {
        if !pod["metadata"]["annotations"].is_object() {
            pod["metadata"]["annotations"] = json!({});
        }
        pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] =
            json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
    }
}

fn q(v: &Value) -> Option<Quantity> {
    v.as_str().and_then(Quantity::parse)
}

/// LimitRanger validation (min/max/ratio per Container and per Pod). `Err` is the reason.
pub fn limit_ranger_validate(store: &Store, ns: &str, pod: &Value) -> Result<(), String> {
    let mut errs: Vec<String> = Vec::new();
    let containers: Vec<&Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            pod["spec"]["initContainers"]
                .as_array()
                .into_iter()
                .flatten(),
        )
        .collect();
    for lr in store.list("limitranges", Some(ns)) {
        for item in lr["spec"]["limits"].as_array().into_iter().flatten() {
            let ty = item["type"].as_str().unwrap_or("");
            let subjects: Vec<(Value, Value)> = match ty {
                "Container" => containers
                    .iter()
                    .map(|c| {
                        (
                            c["resources"]["requests"].clone(),
                            c["resources"]["limits"].clone(),
                        )
                    })
                    .collect(),
                "Pod" => {
                    let mut req = json!({});
                    let mut lim = json!({});
                    for (which, target) in [("requests", &mut req), ("limits", &mut lim)] {
                        for c in &containers {
                            for (k, v) in c["resources"][which].as_object().into_iter().flatten() {
                                if let Some(qv) = q(v) {
                                    let cur = q(&target[k]).unwrap_or_else(Quantity::zero);
                                    target[k] = json!(cur.add(&qv).canonical());
                                }
                            }
                        }
                    }
                    vec![(req, lim)]
                }
                _ => continue,
            };
            for (req, lim) in &subjects {
                for (k, min) in item["min"].as_object().into_iter().flatten() {
                    let Some(min) = q(min) else { continue };
                    match q(&req[k]) {
                        None => errs.push(format!(
                            "minimum {k} usage per {ty} is {min}.  No request is specified"
                        )),
                        Some(r) if r < min => errs.push(format!(
                            "minimum {k} usage per {ty} is {min}, but request is {r}"
                        )),
                        _ => {}
                    }
                }
                for (k, max) in item["max"].as_object().into_iter().flatten() {
                    let Some(max) = q(max) else { continue };
                    match q(&lim[k]) {
                        None => errs.push(format!(
                            "maximum {k} usage per {ty} is {max}.  No limit is specified"
                        )),
                        Some(l) if l > max => errs.push(format!(
                            "maximum {k} usage per {ty} is {max}, but limit is {l}"
                        )),
                        _ => {}
                    }
                }
            }
        }
    }
    match errs.len() {
        0 => Ok(()),
        1 => Err(errs.remove(0)),
        _ => Err(format!("[{}]", errs.join(", "))),
    }
}

/// Built-in priority classes kube-apiserver creates at startup.
fn builtin_priority(name: &str) -> Option<i64> {
    match name {
        "system-node-critical" => Some(2_000_001_000),
        "system-cluster-critical" => Some(2_000_000_000),
        _ => None,
    }
}

/// Priority admission: resolve `priorityClassName` into `priority` and `preemptionPolicy`.
pub fn priority(store: &Store, pod: &mut Value) -> Result<(), String> {
    let name = pod["spec"]["priorityClassName"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let (value, policy) = if name.is_empty() {
        let default = store
            .list("priorityclasses", None)
            .filter(|pc| pc["globalDefault"] == json!(true))
            .max_by_key(|pc| pc["value"].as_i64().unwrap_or(0))
            .cloned();
        match default {
            Some(pc) => {
                pod["spec"]["priorityClassName"] = pc["metadata"]["name"].clone();
                (
                    pc["value"].as_i64().unwrap_or(0),
                    pc["preemptionPolicy"].as_str().map(str::to_string),
                )
            }
            None => (0, None),
        }
    } else if let Some(pc) = store.get("priorityclasses", "", &name) {
        (
            pc["value"].as_i64().unwrap_or(0),
            pc["preemptionPolicy"].as_str().map(str::to_string),
        )
    } else if let Some(v) = builtin_priority(&name) {
        (v, None)
    } else {
        return Err(format!("no PriorityClass with name {name} was found"));
    };
    if let Some(given) = pod["spec"]["priority"].as_i64()
        && given != value
    {
        return Err(format!(
            "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
        ));
    }
    pod["spec"]["priority"] = json!(value);
    if pod["spec"]["preemptionPolicy"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        pod["spec"]["preemptionPolicy"] =
            json!(policy.unwrap_or_else(|| "PreemptLowerPriority".into()));
    }
    Ok(())
}

/// Apply a binding to a stored pod: nodeName, the PodScheduled condition, binding annotations.
pub fn apply_binding(
    pod: &mut Value,
    node: &str,
    annotations: Option<&serde_json::Map<String, Value>>,
    now: &str,
) {
    pod["spec"]["nodeName"] = json!(node);
    if let Some(a) = annotations.filter(|a| !a.is_empty()) {
        if !pod["metadata"]["annotations"].is_object() {
            pod["metadata"]["annotations"] = json!({});
        }
        for (k, v) in a {
            pod["metadata"]["annotations"][k] = v.clone();
        }
    }
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    match pod["status"]["conditions"].as_array_mut() {
        Some(conds) => match conds.iter_mut().find(|c| c["type"] == "PodScheduled") {
            Some(c) => {
                if c["status"] != "True" {
                    *c = cond;
                }
            }
            None => conds.push(cond),
        },
        None => pod["status"]["conditions"] = json!([cond]),
    }
    super::defaults::order_pod(pod);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        let mut s = Store::new(100);
        let rv = s.next_rv();
        s.put(
            "serviceaccounts",
            "ns",
            "default",
            json!({"metadata": {"name": "default"}}),
            rv,
        );
        s
    }

    #[test]
    fn service_account_adds_volume_and_mounts() {
        let s = store();
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        service_account(&s, "ns", &mut pod).unwrap();
        let vol = pod["spec"]["volumes"][0]["name"].as_str().unwrap();
        assert!(vol.starts_with("kube-api-access-") && vol.len() == "kube-api-access-".len() + 5);
        for c in pod["spec"]["containers"].as_array().unwrap() {
            assert_eq!(
                c["volumeMounts"][0],
                json!({"name": vol, "readOnly": true, "mountPath": SA_MOUNT_PATH})
            );
        }
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
    }

    #[test]
    fn service_account_missing_and_opt_out() {
        let s = store();
        let mut pod = json!({"spec": {"serviceAccountName": "nope", "containers": []}});
        assert_eq!(
            service_account(&s, "ns", &mut pod).unwrap_err(),
            "error looking up service account ns/nope: serviceaccount \"nope\" not found"
        );
        let mut pod =
            json!({"spec": {"automountServiceAccountToken": false, "containers": [{"name": "c"}]}});
        service_account(&s, "ns", &mut pod).unwrap();
        assert!(pod["spec"]["volumes"].is_null());
    }

    #[test]
    fn tolerations_added_once() {
        let mut pod = json!({"spec": {"tolerations": [{"key": "conf", "operator": "Exists", "effect": "NoSchedule"}]}});
        default_tolerations(&mut pod);
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 3);
        default_tolerations(&mut pod);
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 3);
    }

    fn lr_store() -> Store {
        let mut s = store();
        let rv = s.next_rv();
        s.put(
            "limitranges",
            "ns",
            "d",
            json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m", "memory": "64Mi"}}]}}),
            rv,
        );
        s
    }

    #[test]
    fn limit_ranger_sets_and_annotates() {
        let s = lr_store();
        let mut pod = json!({"metadata": {}, "spec": {"containers": [{"name": "c", "image": "x", "resources": {}}]}});
        limit_ranger_defaults(&s, "ns", &mut pod);
        assert_eq!(
            pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
            "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c"
        );
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}})
        );
        assert!(limit_ranger_validate(&s, "ns", &pod).is_ok());
    }

    #[test]
    fn limit_ranger_max() {
        let s = lr_store();
        let mut pod = json!({"metadata": {}, "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "4"}, "requests": {"cpu": "4"}}}]}});
        limit_ranger_defaults(&s, "ns", &mut pod);
        assert_eq!(
            limit_ranger_validate(&s, "ns", &pod).unwrap_err(),
            "maximum cpu usage per Container is 2, but limit is 4"
        );
    }

    #[test]
    fn priority_resolution() {
        let mut s = store();
        let rv = s.next_rv();
        s.put("priorityclasses", "", "high", json!({"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "PreemptLowerPriority"}), rv);
        let mut pod = json!({"spec": {"priorityClassName": "high"}});
        priority(&s, &mut pod).unwrap();
        assert_eq!(pod["spec"]["priority"], 1000);
        let mut pod = json!({"spec": {}});
        priority(&s, &mut pod).unwrap();
        assert_eq!(pod["spec"]["priority"], 0);
        let mut pod = json!({"spec": {"priorityClassName": "nope"}});
        assert_eq!(
            priority(&s, &mut pod).unwrap_err(),
            "no PriorityClass with name nope was found"
        );
    }
}
