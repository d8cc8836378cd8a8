//! Non-resource endpoints: `/version`, discovery (`/api`, `/apis`, group versions, aggregated
//! discovery v2), health, and the OpenAPI v3 documents of [`super::openapi`].

use hyper::{HeaderMap, Response};
use serde_json::{Value, json};

use super::aggregator;
use super::http::{Body, Caller, json_response, text_response};
use super::openapi;
use super::resources::{GROUP_ORDER, RESOURCES, ResourceDef};
use super::server::Shared;

/// Answer a non-resource path, or `None` when the path is a resource path. Groups of
/// APIServices that name a Service ([`aggregator::groups`]) are listed after the built-in ones.
pub fn handle(
    shared: &Shared,
    path: &str,
    headers: &HeaderMap,
    _caller: &Caller,
) -> Option<Response<Body>> {
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let aggregated = accept.contains("as=APIGroupDiscoveryList");
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let resp = match segs.as_slice() {
        ["version"] => json_response(200, &version(), &[]),
        ["healthz"] | ["livez"] | ["readyz"] => text_response(200, "ok"),
        ["api"] if aggregated => aggregated_response(&aggregated_discovery(true)),
        ["api"] => json_response(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address(headers)}]}),
            &[],
        ),
        ["apis"] if aggregated => {
            let mut v = aggregated_discovery(false);
            if let Some(items) = v["items"].as_array_mut() {
                items.extend(
                    aggregator::groups(shared)
                        .iter()
                        .map(|g| g.discovery_item()),
                );
            }
            aggregated_response(&v)
        }
        ["apis"] => {
            let mut v = group_list();
            if let Some(groups) = v["groups"].as_array_mut() {
                groups.extend(aggregator::groups(shared).iter().map(|g| g.api_group()));
            }
            json_response(200, &v, &[])
        }
        ["api", "v1"] => json_response(200, &resource_list("", "v1"), &[]),
        ["apis", g] if GROUP_ORDER.contains(g) => json_response(200, &group(g), &[]),
        ["apis", g] => {
            let found = aggregator::groups(shared)
                .into_iter()
                .find(|a| a.name == *g)?;
            let mut v = found.api_group();
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            json_response(200, &v, &[])
        }
        ["apis", g, v] if RESOURCES.iter().any(|r| r.group == *g && r.version == *v) => {
            json_response(200, &resource_list(g, v), &[])
        }
        ["openapi", "v3"] => json_response(200, &openapi::root(), &[]),
        ["openapi", "v3", gv @ ..] => match openapi::group_version_document(&gv.join("/")) {
            Some(doc) => json_response(200, &doc, &[]),
            None => text_response(404, "404 page not found\n"),
        },
        ["openapi", ..] => text_response(404, "404 page not found\n"),
        _ => return None,
    };
    Some(resp)
}

/// The address clients reached us on (kube-apiserver reports its advertise address and port).
fn server_address(headers: &HeaderMap) -> String {
    headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.contains(':'))
        .map_or_else(|| "127.0.0.1:443".to_string(), str::to_string)
}

fn aggregated_response(v: &Value) -> Response<Body> {
    let mut r = json_response(200, v, &[]);
    r.headers_mut().insert(
        "Content-Type",
        hyper::header::HeaderValue::from_static(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        ),
    );
    r
}

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.3-vcsync-e2e", "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean", "buildDate": "2025-03-11T00:00:00Z", "goVersion": "go1.23.6", "compiler": "gc", "platform": "linux/amd64"
    })
}

fn group_version(g: &str) -> Value {
    json!({"groupVersion": format!("{g}/v1"), "version": "v1"})
}

fn group(g: &str) -> Value {
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": [group_version(g)], "preferredVersion": group_version(g)})
}

fn group_list() -> Value {
    let groups: Vec<Value> = GROUP_ORDER
        .iter()
        .map(|g| json!({"name": g, "versions": [group_version(g)], "preferredVersion": group_version(g)}))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resources_of<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceDef> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

fn resource_list(group: &str, version: &str) -> Value {
    let mut out = Vec::new();
    for r in resources_of(group, version) {
        let mut e = json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind, "verbs": r.verbs});
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        out.push(e);
        for s in r.subresources {
            let mut e = json!({"name": format!("{}/{}", r.plural, s.name), "singularName": "", "namespaced": r.namespaced, "kind": s.kind, "verbs": s.verbs});
            if let Some(g) = s.group {
                e["group"] = json!(g);
            }
            if let Some(v) = s.version {
                e["version"] = json!(v);
            }
            out.push(e);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut v = json!({"kind": "APIResourceList", "groupVersion": gv, "resources": out});
    if !group.is_empty() {
        v["apiVersion"] = json!("v1");
    }
    v
}

fn aggregated_discovery(core: bool) -> Value {
    let groups: Vec<&str> = if core { vec![""] } else { GROUP_ORDER.to_vec() };
    let items: Vec<Value> = groups
        .iter()
        .map(|g| {
            let resources: Vec<Value> = resources_of(g, "v1")
                .map(|r| {
                    let mut e = json!({
                        "resource": r.plural, "responseKind": {"group": "", "version": "", "kind": r.kind},
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular, "verbs": r.verbs,
                    });
                    if !r.short_names.is_empty() {
                        e["shortNames"] = json!(r.short_names);
                    }
                    if !r.categories.is_empty() {
                        e["categories"] = json!(r.categories);
                    }
                    if !r.subresources.is_empty() {
                        e["subresources"] = Value::Array(
                            r.subresources
                                .iter()
                                .map(|s| {
                                    json!({"subresource": s.name, "responseKind": {"group": s.group.unwrap_or(""), "version": s.version.unwrap_or(""), "kind": s.kind}, "verbs": s.verbs})
                                })
                                .collect(),
                        );
                    }
                    e
                })
                .collect();
            let mut item = json!({"metadata": {"creationTimestamp": null}, "versions": [{"version": "v1", "resources": resources, "freshness": "Current"}]});
            if !g.is_empty() {
                item["metadata"]["name"] = json!(g);
            }
            item
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}
