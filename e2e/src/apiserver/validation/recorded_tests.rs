//! Replays every recorded 422 answer to a full-body create through [`super::validate`] and
//! compares the resulting `Status` with the recorded one using the conformance matcher.
//!
//! The request bodies are what the client sent; the test applies the defaulting and admission the
//! real server did before validating (namespace from the URL, generated names, service cluster IPs,
//! pod defaults and the ServiceAccount volume, ...).

use std::path::Path;

use serde_json::{Value, json};

use super::{Op, invalid_error, validate};
use crate::conformance::matcher::{Outcome, compare_values};

/// Steps left out, with why: they depend on server state or are not an object's validation.
const SKIPPED: [(&str, &str); 7] = [
    (
        "services/requested-ip-taken",
        "needs the IP allocator's state (see service::cluster_ip_allocation_error)",
    ),
    (
        "services/nodeport-requested-taken",
        "needs the node-port allocator's state (see service::node_port_error)",
    ),
    (
        "services/requested-ip-out-of-range",
        "decided by the IP allocator's range, not by validation",
    ),
    (
        "services/nodeport-out-of-range",
        "decided by the node-port allocator's range, not by validation",
    ),
    (
        "services/status-on-clusterip",
        "a status subresource write (validate_status, unit-tested in service.rs)",
    ),
    (
        "secrets/token-request-too-short",
        "a TokenRequest subresource, not an object kind",
    ),
    (
        "errors/bad-dry-run",
        "CreateOptions (query parameter) validation",
    ),
];

const CLUSTER_SCOPED: [&str; 3] = ["Namespace", "Node", "PriorityClass"];

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

fn namespace_of(path: &str) -> Option<&str> {
    let rest = path.split("/namespaces/").nth(1)?;
    let ns = rest.split(['/', '?']).next()?;
    rest.contains('/').then_some(ns)
}

fn merge(target: &mut Value, defaults: Value) {
    if let (Some(t), Value::Object(d)) = (target.as_object_mut(), defaults) {
        for (k, v) in d {
            t.entry(k).or_insert(v);
        }
    }
}

/// Defaulting and admission as the recorded server applied them before validation.
fn with_defaults(kind: &str, path: &str, body: &Value) -> Value {
    let mut obj = body.clone();
    if obj.get("metadata").is_none() {
        obj["metadata"] = json!({});
    }
    if !CLUSTER_SCOPED.contains(&kind)
        && let Some(ns) = namespace_of(path)
        && obj["metadata"].get("namespace").is_none()
    {
        obj["metadata"]["namespace"] = json!(ns);
    }
    if let Some(prefix) = obj["metadata"].get("generateName").and_then(Value::as_str) {
        obj["metadata"]["name"] = json!(format!("{prefix}x7k2q"));
    }
    match kind {
        "Secret" => merge(&mut obj, json!({"type": "Opaque"})),
        "Pod" => {
            let spec = &mut obj["spec"];
            merge(
                spec,
                json!({"restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "terminationGracePeriodSeconds": 30,
                    "schedulerName": "default-scheduler", "securityContext": {}, "serviceAccountName": "default"}),
            );
            let mut volumes = spec.get("volumes").cloned().unwrap_or(json!([]));
            volumes.as_array_mut().unwrap().push(json!({"name": "kube-api-access-x7k2q", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}));
            spec["volumes"] = volumes;
            if let Some(cs) = spec.get_mut("containers").and_then(Value::as_array_mut) {
                for c in cs {
                    merge(
                        c,
                        json!({"terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                            "imagePullPolicy": "IfNotPresent", "volumeMounts": [{"name": "kube-api-access-x7k2q", "readOnly": true,
                            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}),
                    );
                }
            }
        }
        "Service" => {
            let spec = &mut obj["spec"];
            merge(
                spec,
                json!({"type": "ClusterIP", "sessionAffinity": "None"}),
            );
            let ty = spec["type"].as_str().unwrap_or_default().to_string();
            if ty != "ExternalName" {
                merge(
                    spec,
                    json!({"clusterIP": "10.96.0.50", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"], "internalTrafficPolicy": "Cluster"}),
                );
                let ip = spec["clusterIP"].clone();
                merge(spec, json!({"clusterIPs": [ip]}));
            }
            if ty == "NodePort" || ty == "LoadBalancer" {
                merge(spec, json!({"externalTrafficPolicy": "Cluster"}));
            }
            if ty == "LoadBalancer" {
                merge(spec, json!({"allocateLoadBalancerNodePorts": true}));
            }
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    let port = p["port"].clone();
                    merge(p, json!({"protocol": "TCP", "targetPort": port}));
                }
            }
        }
        "Endpoints" => {
            if let Some(subsets) = obj.get_mut("subsets").and_then(Value::as_array_mut) {
                for ss in subsets {
                    if let Some(ports) = ss.get_mut("ports").and_then(Value::as_array_mut) {
                        for p in ports {
                            merge(p, json!({"protocol": "TCP"}));
                        }
                    }
                }
            }
        }
        "EndpointSlice" => {
            if let Some(ports) = obj.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    merge(p, json!({"name": "", "protocol": "TCP"}));
                }
            }
        }
        "NetworkPolicy" => merge(&mut obj["spec"], json!({"policyTypes": ["Ingress"]})),
        "PriorityClass" => merge(
            &mut obj,
            json!({"preemptionPolicy": "PreemptLowerPriority"}),
        ),
        _ => {}
    }
    obj
}

#[test]
fn recorded_422_creates_match() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/conformance/kube-apiserver-v1.32.3.json");
    if !file.exists() {
        eprintln!("{} is absent: nothing to replay", file.display());
        return;
    }
    let rec: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for step in rec["steps"].as_array().unwrap() {
        let id = step["id"].as_str().unwrap();
        let method = step["request"]["method"].as_str().unwrap_or_default();
        let path = step["request"]["path"].as_str().unwrap_or_default();
        let body = &step["request"]["body"];
        if step["response"]["status"] != 422
            || !(method == "POST" || method == "PUT")
            || body.get("kind").is_none()
        {
            continue;
        }
        if SKIPPED.iter().any(|(s, _)| *s == id) {
            continue;
        }
        let kind = body["kind"].as_str().unwrap();
        let group = group_of(body["apiVersion"].as_str().unwrap_or_default());
        let obj = with_defaults(kind, path, body);
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let errs = validate(group, kind, Op::Create, &obj);
        let got = invalid_error(group, kind, &name, &errs).body;
        let mut out = Outcome::default();
        compare_values(&step["response"]["body"], &got, "$", &mut out);
        if !out.is_match() {
            failures.push(format!("{id}:\n  {}", out.differences.join("\n  ")));
        }
        checked.push(id.to_string());
    }
    assert!(
        checked.len() >= 30,
        "only {} recorded steps were checked: {checked:?}",
        checked.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} recorded steps differ:\n{}",
        failures.len(),
        checked.len(),
        failures.join("\n")
    );
}

#[test]
fn finalizer_added_while_deleting_matches_the_recording() {
    let old = json!({"metadata": {"name": "cm-fin", "namespace": "conf-a", "uid": "u", "resourceVersion": "5",
        "creationTimestamp": "2024-01-01T00:00:00Z", "deletionTimestamp": "2024-01-01T00:00:01Z",
        "deletionGracePeriodSeconds": 0, "finalizers": ["conf.example.com/hold"]}});
    let mut new = old.clone();
    new["metadata"]["finalizers"] = json!(["conf.example.com/hold", "conf.example.com/another"]);
    let errs = validate("", "ConfigMap", Op::Update { old: &old }, &new);
    let err = invalid_error("", "ConfigMap", "cm-fin", &errs);
    let msg = "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"conf.example.com/another\"}";
    assert_eq!(
        err.body["message"],
        format!("ConfigMap \"cm-fin\" is invalid: metadata.finalizers: {msg}")
    );
    let cause =
        json!({"reason": "FieldValueForbidden", "message": msg, "field": "metadata.finalizers"});
    assert_eq!(err.body["details"]["causes"], json!([cause.clone(), cause]));
}

#[test]
fn update_paths_match_the_recording() {
    let svc = json!({"metadata": {"name": "web", "namespace": "conf-a"}, "spec": {"type": "ClusterIP",
        "clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
        "sessionAffinity": "None", "internalTrafficPolicy": "Cluster", "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}});
    let mut changed = svc.clone();
    changed["spec"]["clusterIP"] = json!("10.96.0.101");
    changed["spec"]["clusterIPs"] = json!(["10.96.0.101"]);
    let err = invalid_error(
        "",
        "Service",
        "web",
        &validate("", "Service", Op::Update { old: &svc }, &changed),
    );
    assert_eq!(
        err.body["message"],
        "Service \"web\" is invalid: spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.101\"}: may not change once set"
    );

    let secret = json!({"metadata": {"name": "s-imm", "namespace": "conf-a"}, "type": "Opaque", "immutable": true, "data": {"a": "Yg=="}});
    let mut changed = secret.clone();
    changed["data"]["a"] = json!("Yw==");
    let err = invalid_error(
        "",
        "Secret",
        "s-imm",
        &validate("", "Secret", Op::Update { old: &secret }, &changed),
    );
    assert_eq!(
        err.body["message"],
        "Secret \"s-imm\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
    );

    let svc_status = invalid_error(
        "",
        "Service",
        "fixed-ip",
        &super::validate_status("", "Service", &svc, &{
            let mut n = svc.clone();
            n["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}});
            n
        }),
    );
    assert_eq!(
        svc_status.body["message"],
        "Service \"fixed-ip\" is invalid: status.loadBalancer.ingress: Forbidden: may only be used when `spec.type` is 'LoadBalancer'"
    );
}

#[test]
fn skipped_steps_are_listed_with_reasons() {
    assert!(
        SKIPPED
            .iter()
            .all(|(id, why)| id.contains('/') && !why.is_empty())
    );
}
