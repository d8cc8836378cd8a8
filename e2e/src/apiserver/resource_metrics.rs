//! What a host cluster's metrics-server and authorizer add to the API, for the metrics API
//! of vcsync (`kubectl top pods` in the virtual cluster):
//!
//! * `GET /apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods[/{name}]`: `PodMetrics` of the
//!   namespace's running pods, as metrics-server serves them (`labelSelector` honoured). The
//!   figures are deterministic: each container's usage is its resource requests (`cpu` `1m`
//!   and `memory` `1Mi` when it requests none), so tests know what `kubectl top` must show.
//! * `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`: answered by this server's own
//!   authorization model (the admin and [`super::ServerConfig::users`] may do anything; the
//!   namespaced identity `system:serviceaccount:{ns}:limited` only in `{ns}`; anyone else
//!   nothing), as kube-apiserver answers with its configured authorizers.

use serde_json::{Value, json};

use super::http::{Body, Caller, Query, json_response};
use super::selectors::LabelSelector;
use super::server::Shared;

fn status(code: u16, reason: &str, message: &str) -> hyper::Response<Body> {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}),
        &[],
    )
}

/// The requests this module serves; `None` for every other path.
pub fn handle(
    shared: &Shared,
    method: &hyper::Method,
    path: &str,
    query: &Query,
    caller: &Caller,
    body: &[u8],
) -> Option<hyper::Response<Body>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segs.as_slice()) {
        (&hyper::Method::POST, ["apis", "authorization.k8s.io", "v1", "subjectaccessreviews"]) => {
            Some(review(shared, caller, body))
        }
        (
            &hyper::Method::GET,
            [
                "apis",
                "metrics.k8s.io",
                "v1beta1",
                "namespaces",
                ns,
                "pods",
                rest @ ..,
            ],
        ) if rest.len() <= 1 => {
            if let Caller::Namespaced(allowed) = caller
                && allowed != ns
            {
                return Some(status(
                    403,
                    "Forbidden",
                    &format!(
                        "pods.metrics.k8s.io is forbidden: User \"system:serviceaccount:{allowed}:limited\" cannot list resource \"pods\" in API group \"metrics.k8s.io\" in the namespace \"{ns}\""
                    ),
                ));
            }
            Some(pod_metrics(shared, ns, rest.first().copied(), query))
        }
        _ => None,
    }
}

fn pod_metrics(
    shared: &Shared,
    ns: &str,
    name: Option<&str>,
    query: &Query,
) -> hyper::Response<Body> {
    let selector = match LabelSelector::parse(query.get("labelSelector").unwrap_or("")) {
        Ok(s) => s,
        Err(e) => return super::http::error_response(&e),
    };
    let st = shared.lock();
    let now = chrono_now();
    let items: Vec<Value> = st
        .store
        .list("pods", Some(ns))
        .filter(|p| p["status"]["phase"] == "Running")
        .filter(|p| name.is_none_or(|n| p["metadata"]["name"] == n))
        .filter(|p| selector.matches(p["metadata"]["labels"].as_object()))
        .map(|p| {
            let containers: Vec<Value> = p["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let req = &c["resources"]["requests"];
                    json!({"name": c["name"], "usage": {
                        "cpu": req["cpu"].as_str().unwrap_or("1m"),
                        "memory": req["memory"].as_str().unwrap_or("1Mi"),
                    }})
                })
                .collect();
            json!({
                "kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {"name": p["metadata"]["name"], "namespace": ns,
                    "labels": p["metadata"]["labels"], "creationTimestamp": now},
                "timestamp": now, "window": "10s", "containers": containers,
            })
        })
        .collect();
    drop(st);
    match name {
        None => json_response(
            200,
            &json!({"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items}),
            &[],
        ),
        Some(n) => match items.into_iter().next() {
            Some(i) => json_response(200, &i, &[]),
            None => status(
                404,
                "NotFound",
                &format!("podmetrics.metrics.k8s.io \"{ns}/{n}\" not found"),
            ),
        },
    }
}

fn chrono_now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn review(shared: &Shared, caller: &Caller, body: &[u8]) -> hyper::Response<Body> {
    if let Caller::Namespaced(ns) = caller {
        return status(
            403,
            "Forbidden",
            &format!(
                "subjectaccessreviews.authorization.k8s.io is forbidden: User \"system:serviceaccount:{ns}:limited\" cannot create resource \"subjectaccessreviews\" in API group \"authorization.k8s.io\" at the cluster scope"
            ),
        );
    }
    let Ok(mut sar) = serde_json::from_slice::<Value>(body) else {
        return status(
            400,
            "BadRequest",
            "the request body is not a SubjectAccessReview",
        );
    };
    let spec = &sar["spec"];
    let user = spec["user"].as_str().unwrap_or("");
    if user.is_empty() && spec["groups"].as_array().is_none_or(Vec::is_empty) {
        return status(
            422,
            "Invalid",
            "SubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.user: Invalid value: \"\": at least one of user or group must be specified",
        );
    }
    let ns = spec["resourceAttributes"]["namespace"]
        .as_str()
        .unwrap_or("");
    let full = user == "admin" || shared.config.users.iter().any(|(_, u)| u == user);
    let namespaced = shared
        .config
        .namespaced_token
        .as_ref()
        .is_some_and(|(_, n)| user == format!("system:serviceaccount:{n}:limited") && ns == n);
    let allowed = full || namespaced;
    sar["status"] = if allowed {
        json!({"allowed": true, "reason": "allowed by the test server's authorizer"})
    } else {
        json!({"allowed": false})
    };
    if sar["metadata"].is_null() {
        sar["metadata"] = json!({});
    }
    json_response(201, &sar, &[])
}
