//! Applies the recorder's normalisation to a replayed answer, so that it can be compared with the
//! recorded one: `managedFields` dropped, OpenShift-only objects removed, discovery cut down to
//! the scenario's resources, watch streams split into events with the README's BOOKMARK
//! filtering.

use serde_json::{Map, Value, json};

use super::matcher::Outcome;

/// The configmap (and projected source) an OpenShift controller adds, removed by the recorder.
const OPENSHIFT_CA: &str = "openshift-service-ca.crt";

/// The resources the recorded discovery answers were cut down to (with their subresources).
const SCENARIO_RESOURCES: &[&str] = &[
    "configmaps",
    "endpoints",
    "events",
    "limitranges",
    "namespaces",
    "nodes",
    "pods",
    "resourcequotas",
    "secrets",
    "serviceaccounts",
    "services",
    "endpointslices",
    "ingresses",
    "ingressclasses",
    "networkpolicies",
    "leases",
    "priorityclasses",
    "runtimeclasses",
    "storageclasses",
];

/// The API groups of [`SCENARIO_RESOURCES`] (`""` is the core group).
const SCENARIO_GROUPS: &[&str] = &[
    "",
    "networking.k8s.io",
    "discovery.k8s.io",
    "coordination.k8s.io",
    "events.k8s.io",
    "scheduling.k8s.io",
    "node.k8s.io",
    "storage.k8s.io",
];

/// The fields the recorder kept of each `APIResourceList` entry.
const RESOURCE_FIELDS: &[&str] = &[
    "name",
    "singularName",
    "namespaced",
    "group",
    "version",
    "kind",
    "verbs",
    "shortNames",
    "categories",
];

/// Normalises a replayed (non-watch) JSON body in place; what was dropped from discovery goes to
/// `out` as notes, since the in-memory server serving more than the scenario uses is no failure.
pub fn normalise_body(body: &mut Value, out: &mut Outcome) {
    strip_object_noise(body);
    let kind = body
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match kind.as_str() {
        "ConfigMapList" => {
            if let Some(items) = body.get_mut("items").and_then(Value::as_array_mut) {
                items.retain(|i| object_name(i) != Some(OPENSHIFT_CA));
            }
        }
        "APIResourceList" => cut_resource_list(body, out),
        "APIGroupList" => {
            if let Some(groups) = body.get_mut("groups").and_then(Value::as_array_mut) {
                let dropped = retain_noting(groups, |g| {
                    let name = g.get("name").and_then(Value::as_str).unwrap_or_default();
                    SCENARIO_GROUPS
                        .contains(&name)
                        .then_some(())
                        .ok_or(name.to_string())
                });
                note_dropped(out, "$.groups", &dropped);
            }
        }
        "APIGroupDiscoveryList" => cut_aggregated_discovery(body, out),
        _ => {}
    }
}

/// How a watch stream is turned into the recorded `{"events": […]}` shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchShape {
    /// The request set `allowWatchBookmarks`: periodic BOOKMARKs are dropped (the
    /// end-of-initial-events one is kept).
    pub bookmarks_allowed: bool,
    /// Add `bookmarks_received` (the recording has it).
    pub report_bookmarks_received: bool,
    /// Sort events by object name (`resourceVersion=0` synthetic ADDED events).
    pub sort_by_name: bool,
}

impl WatchShape {
    /// Derives the shape from the request's query string and the recorded body.
    pub fn for_request(path: &str, recorded_body: Option<&Value>) -> Self {
        let query = path.split_once('?').map_or("", |(_, q)| q);
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v)
        };
        WatchShape {
            bookmarks_allowed: matches!(param("allowWatchBookmarks"), Some("true" | "1")),
            report_bookmarks_received: recorded_body
                .and_then(|b| b.get("bookmarks_received"))
                .is_some(),
            sort_by_name: param("resourceVersion") == Some("0"),
        }
    }
}

/// Whether the request path asks for a watch (`watch=1` / `watch=true`).
pub fn is_watch_request(path: &str) -> bool {
    path.split_once('?').is_some_and(|(_, q)| {
        q.split('&')
            .any(|kv| matches!(kv, "watch=1" | "watch=true"))
    })
}

/// Splits a watch stream into `{"events": […]}` (normalised, filtered, maybe sorted). Bytes that
/// do not decode at the end are a difference (a real server never sends them).
pub fn watch_body(raw: &[u8], shape: WatchShape, out: &mut Outcome) -> Value {
    let mut stream = serde_json::Deserializer::from_slice(raw).into_iter::<Value>();
    let mut events = Vec::new();
    let mut bookmarks_received = false;
    loop {
        match stream.next() {
            None => break,
            Some(Ok(mut event)) => {
                if let Some(object) = event.get_mut("object") {
                    strip_object_noise(object);
                }
                let ty = event
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let object = event.get("object").unwrap_or(&Value::Null);
                if object_name(object) == Some(OPENSHIFT_CA) {
                    continue;
                }
                if shape.bookmarks_allowed && ty == "BOOKMARK" {
                    let end_marker = object
                        .pointer("/metadata/annotations/k8s.io~1initial-events-end")
                        .and_then(Value::as_str)
                        == Some("true");
                    if !end_marker {
                        bookmarks_received = true;
                        continue;
                    }
                }
                events.push(event);
            }
            Some(Err(e)) => {
                let rest = String::from_utf8_lossy(&raw[stream.byte_offset()..]);
                out.diff(
                    "$.trailing",
                    format!("undecodable bytes at the end of the stream ({e}): {rest:?}"),
                );
                break;
            }
        }
    }
    if shape.sort_by_name {
        events.sort_by(|a, b| {
            let name = |e: &Value| {
                e.get("object")
                    .and_then(object_name)
                    .unwrap_or_default()
                    .to_string()
            };
            name(a).cmp(&name(b))
        });
    }
    let mut body = json!({ "events": events });
    if shape.report_bookmarks_received {
        body["bookmarks_received"] = json!(bookmarks_received);
    }
    body
}

fn object_name(object: &Value) -> Option<&str> {
    object.get("metadata")?.get("name")?.as_str()
}

/// Drops `metadata.managedFields` everywhere and the OpenShift projected source of pods.
fn strip_object_noise(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(md)) = map.get_mut("metadata") {
                md.remove("managedFields");
            }
            if let Some(Value::Array(sources)) = map.get_mut("sources") {
                sources.retain(|s| {
                    s.pointer("/configMap/name").and_then(Value::as_str) != Some(OPENSHIFT_CA)
                });
            }
            map.values_mut().for_each(strip_object_noise);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_object_noise),
        _ => {}
    }
}

/// Keeps the elements `keep` accepts; returns the names of the others.
fn retain_noting(
    items: &mut Vec<Value>,
    keep: impl Fn(&Value) -> Result<(), String>,
) -> Vec<String> {
    let mut dropped = Vec::new();
    items.retain(|item| match keep(item) {
        Ok(()) => true,
        Err(name) => {
            dropped.push(name);
            false
        }
    });
    dropped
}

fn note_dropped(out: &mut Outcome, path: &str, dropped: &[String]) {
    if !dropped.is_empty() {
        out.note(
            path,
            format!(
                "not compared (not used by the scenario): {}",
                dropped.join(", ")
            ),
        );
    }
}

fn scenario_resource(name: &str) -> Result<(), String> {
    let base = name.split('/').next().unwrap_or(name);
    SCENARIO_RESOURCES
        .contains(&base)
        .then_some(())
        .ok_or(name.to_string())
}

fn cut_resource_list(body: &mut Value, out: &mut Outcome) {
    let Some(resources) = body.get_mut("resources").and_then(Value::as_array_mut) else {
        return;
    };
    let dropped = retain_noting(resources, |r| {
        scenario_resource(r.get("name").and_then(Value::as_str).unwrap_or_default())
    });
    note_dropped(out, "$.resources", &dropped);
    for r in resources.iter_mut() {
        if let Value::Object(map) = r {
            let kept: Map<String, Value> = std::mem::take(map)
                .into_iter()
                .filter(|(k, _)| RESOURCE_FIELDS.contains(&k.as_str()))
                .collect();
            *map = kept;
        }
    }
}

fn cut_aggregated_discovery(body: &mut Value, out: &mut Outcome) {
    let Some(items) = body.get_mut("items").and_then(Value::as_array_mut) else {
        return;
    };
    let dropped = retain_noting(items, |g| {
        let name = g
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        SCENARIO_GROUPS
            .contains(&name)
            .then_some(())
            .ok_or(name.to_string())
    });
    note_dropped(out, "$.items", &dropped);
    for group in items.iter_mut() {
        let name = group
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(versions) = group.get_mut("versions").and_then(Value::as_array_mut) else {
            continue;
        };
        for version in versions.iter_mut() {
            let v = version
                .get("version")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if let Some(resources) = version.get_mut("resources").and_then(Value::as_array_mut) {
                let dropped = retain_noting(resources, |r| {
                    scenario_resource(
                        r.get("resource")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                    )
                });
                note_dropped(
                    out,
                    &format!("$.items[{name}].versions[{v}].resources"),
                    &dropped,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn managed_fields_and_openshift_noise_are_dropped() {
        let mut body = json!({
            "kind": "ConfigMapList",
            "metadata": {"resourceVersion": "5"},
            "items": [
                {"metadata": {"name": "a", "managedFields": [{"manager": "x"}]}},
                {"metadata": {"name": "openshift-service-ca.crt"}},
                {"metadata": {"name": "p"}, "spec": {"volumes": [{"projected": {"sources": [
                    {"configMap": {"name": "kube-root-ca.crt"}},
                    {"configMap": {"name": "openshift-service-ca.crt"}}
                ]}}]}}
            ]
        });
        let mut out = Outcome::default();
        normalise_body(&mut body, &mut out);
        assert_eq!(
            body,
            json!({
                "kind": "ConfigMapList",
                "metadata": {"resourceVersion": "5"},
                "items": [
                    {"metadata": {"name": "a"}},
                    {"metadata": {"name": "p"}, "spec": {"volumes": [{"projected": {"sources": [
                        {"configMap": {"name": "kube-root-ca.crt"}}
                    ]}}]}}
                ]
            })
        );
        assert!(out.notes.is_empty());
    }

    #[test]
    fn discovery_is_cut_down_like_the_recording() {
        let mut list = json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            {"name": "bindings", "kind": "Binding"},
            {"name": "pods", "kind": "Pod", "storageVersionHash": "xyz", "verbs": ["get"]},
            {"name": "pods/status", "kind": "Pod"}
        ]});
        let mut out = Outcome::default();
        normalise_body(&mut list, &mut out);
        assert_eq!(
            list["resources"],
            json!([{"name": "pods", "kind": "Pod", "verbs": ["get"]}, {"name": "pods/status", "kind": "Pod"}])
        );
        assert_eq!(
            out.notes,
            vec!["$.resources: not compared (not used by the scenario): bindings"]
        );

        let mut agg = json!({"kind": "APIGroupDiscoveryList", "items": [
            {"metadata": {"name": "apps"}, "versions": []},
            {"metadata": {"creationTimestamp": null}, "versions": [{"version": "v1", "resources": [
                {"resource": "componentstatuses"}, {"resource": "pods", "subresources": [{"subresource": "log"}]}
            ]}]}
        ]});
        let mut out = Outcome::default();
        normalise_body(&mut agg, &mut out);
        assert_eq!(
            agg["items"],
            json!([{"metadata": {"creationTimestamp": null}, "versions": [{"version": "v1", "resources": [
                {"resource": "pods", "subresources": [{"subresource": "log"}]}
            ]}]}])
        );
        assert_eq!(out.notes.len(), 2, "{out:?}");

        let mut groups = json!({"kind": "APIGroupList", "groups": [{"name": "apps"}, {"name": "events.k8s.io"}]});
        normalise_body(&mut groups, &mut Outcome::default());
        assert_eq!(groups["groups"], json!([{"name": "events.k8s.io"}]));
    }

    fn stream(events: &[Value]) -> Vec<u8> {
        events
            .iter()
            .map(|e| format!("{e}\n"))
            .collect::<String>()
            .into_bytes()
    }

    fn ev(ty: &str, name: &str) -> Value {
        json!({"type": ty, "object": {"kind": "ConfigMap", "metadata": {"name": name, "managedFields": []}}})
    }

    fn clean(ty: &str, name: &str) -> Value {
        json!({"type": ty, "object": {"kind": "ConfigMap", "metadata": {"name": name}}})
    }

    #[test]
    fn watch_streams_keep_everything_without_bookmarks_allowed() {
        let raw = stream(&[
            ev("ADDED", "b"),
            ev("BOOKMARK", ""),
            ev("ADDED", "openshift-service-ca.crt"),
        ]);
        let mut out = Outcome::default();
        let body = watch_body(&raw, WatchShape::default(), &mut out);
        assert_eq!(
            body,
            json!({"events": [clean("ADDED", "b"), clean("BOOKMARK", "")]})
        );
        assert!(out.is_match());
    }

    #[test]
    fn periodic_bookmarks_are_dropped_and_reported() {
        let end = json!({"type": "BOOKMARK", "object": {"kind": "ConfigMap", "metadata": {"resourceVersion": "9", "annotations": {"k8s.io/initial-events-end": "true"}}}});
        let raw = stream(&[
            ev("ADDED", "a"),
            end.clone(),
            ev("MODIFIED", "a"),
            ev("BOOKMARK", ""),
        ]);
        let shape = WatchShape::for_request(
            "/api/v1/namespaces/x/configmaps?watch=1&allowWatchBookmarks=true&timeoutSeconds=5",
            Some(&json!({"events": [], "bookmarks_received": true})),
        );
        assert!(shape.bookmarks_allowed && shape.report_bookmarks_received && !shape.sort_by_name);
        let body = watch_body(&raw, shape, &mut Outcome::default());
        assert_eq!(
            body,
            json!({"events": [clean("ADDED", "a"), end, clean("MODIFIED", "a")], "bookmarks_received": true})
        );
        let body = watch_body(&stream(&[ev("ADDED", "a")]), shape, &mut Outcome::default());
        assert_eq!(body["bookmarks_received"], json!(false));
    }

    #[test]
    fn resource_version_zero_watches_are_sorted_and_trailing_bytes_fail() {
        let shape = WatchShape::for_request("/x?watch=1&resourceVersion=0&labelSelector=w", None);
        assert!(shape.sort_by_name && !shape.report_bookmarks_received);
        let mut raw = stream(&[ev("ADDED", "w-3"), ev("ADDED", "w-2")]);
        raw.extend_from_slice(b"{\"type\":");
        let mut out = Outcome::default();
        let body = watch_body(&raw, shape, &mut out);
        assert_eq!(
            body,
            json!({"events": [clean("ADDED", "w-2"), clean("ADDED", "w-3")]})
        );
        assert_eq!(out.differences.len(), 1);
        assert!(out.differences[0].starts_with("$.trailing: "), "{out:?}");
    }

    #[rstest]
    #[case("/api/v1/configmaps?watch=1&timeoutSeconds=2", true)]
    #[case("/api/v1/configmaps?labelSelector=a&watch=true", true)]
    #[case("/api/v1/configmaps?watch=0", false)]
    #[case("/api/v1/configmaps?limit=1", false)]
    #[case("/api/v1/watch", false)]
    fn watch_requests(#[case] path: &str, #[case] watch: bool) {
        assert_eq!(is_watch_request(path), watch);
    }
}
