//! Conversion between a resource's wire form and its storage form. Only events differ:
//! core/v1 and events.k8s.io/v1 Events are two views of the same stored objects, kept in the
//! core/v1 form (as kube-apiserver stores the internal `core.Event`).

use serde_json::{Map, Value, json};

use super::errors::ApiError;
use super::resources::ResourceDef;

/// Field renames between events.k8s.io/v1 (left) and core/v1 (right).
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
];

/// core/v1 Event field order (Go struct order).
const CORE_ORDER: &[&str] = &[
    "kind",
    "apiVersion",
    "metadata",
    "involvedObject",
    "reason",
    "message",
    "source",
    "firstTimestamp",
    "lastTimestamp",
    "count",
    "type",
    "eventTime",
    "series",
    "action",
    "related",
    "reportingComponent",
    "reportingInstance",
];

/// events.k8s.io/v1 Event field order.
const EVENTS_ORDER: &[&str] = &[
    "kind",
    "apiVersion",
    "metadata",
    "eventTime",
    "series",
    "reportingController",
    "reportingInstance",
    "action",
    "reason",
    "regarding",
    "related",
    "note",
    "type",
    "deprecatedSource",
    "deprecatedFirstTimestamp",
    "deprecatedLastTimestamp",
    "deprecatedCount",
];

const OBJECT_REF_ORDER: &[&str] = &[
    "kind",
    "namespace",
    "name",
    "uid",
    "apiVersion",
    "resourceVersion",
    "fieldPath",
];

fn is_events_v1(def: &ResourceDef) -> bool {
    def.group == "events.k8s.io"
}

fn is_core_event(def: &ResourceDef) -> bool {
    def.group.is_empty() && def.plural == "events"
}

fn ordered(mut m: Map<String, Value>, order: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    for k in order {
        if let Some(v) = m.remove(*k) {
            out.insert((*k).to_string(), v);
        }
    }
    for (k, v) in m {
        out.insert(k, v);
    }
    out
}

fn order_ref(v: &mut Value) {
    if let Some(m) = v.as_object_mut() {
        let taken = std::mem::take(m);
        *m = ordered(taken, OBJECT_REF_ORDER);
    }
}

/// Normalise a core/v1 event: the fields Go always serialises, in struct order.
fn normalise_core(mut m: Map<String, Value>) -> Map<String, Value> {
    let defaults: [(&str, Value); 7] = [
        ("involvedObject", json!({})),
        ("source", json!({})),
        ("firstTimestamp", Value::Null),
        ("lastTimestamp", Value::Null),
        ("eventTime", Value::Null),
        ("reportingComponent", json!("")),
        ("reportingInstance", json!("")),
    ];
    for (k, v) in defaults {
        m.entry(k).or_insert(v);
    }
    // omitempty fields: a zero count is not serialised.
    if m.get("count")
        .is_some_and(|c| c.is_null() || *c == json!(0))
    {
        m.remove("count");
    }
    let mut m = ordered(m, CORE_ORDER);
    if let Some(r) = m.get_mut("involvedObject") {
        order_ref(r);
    }
    if let Some(r) = m.get_mut("related") {
        order_ref(r);
    }
    m
}

/// events.k8s.io/v1 -> core/v1.
pub fn event_v1_to_core(obj: Value) -> Value {
    let Value::Object(mut m) = obj else {
        return obj;
    };
    for (from, to) in RENAMES {
        if let Some(v) = m.remove(*from) {
            m.insert((*to).to_string(), v);
        }
    }
    m.insert("apiVersion".into(), json!("v1"));
    m.insert("kind".into(), json!("Event"));
    Value::Object(normalise_core(m))
}

/// core/v1 -> events.k8s.io/v1.
pub fn event_core_to_v1(obj: &Value) -> Value {
    let Some(src) = obj.as_object() else {
        return obj.clone();
    };
    let mut m = src.clone();
    for (to, from) in RENAMES {
        if let Some(v) = m.remove(*from) {
            m.insert((*to).to_string(), v);
        }
    }
    // Always serialised in events.k8s.io/v1: eventTime, regarding, deprecatedSource and the
    // two deprecated timestamps; the rest is omitempty.
    m.entry("eventTime").or_insert(Value::Null);
    m.entry("regarding").or_insert_with(|| json!({}));
    m.entry("deprecatedSource").or_insert_with(|| json!({}));
    m.entry("deprecatedFirstTimestamp").or_insert(Value::Null);
    m.entry("deprecatedLastTimestamp").or_insert(Value::Null);
    for k in [
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
        "note",
        "type",
    ] {
        if m.get(k)
            .is_some_and(|v| v.as_str().is_some_and(str::is_empty) || v.is_null())
        {
            m.remove(k);
        }
    }
    if m.get("deprecatedCount")
        .is_some_and(|c| c.is_null() || *c == json!(0))
    {
        m.remove("deprecatedCount");
    }
    let mut m = ordered(m, EVENTS_ORDER);
    if let Some(r) = m.get_mut("regarding") {
        order_ref(r);
    }
    Value::Object(m)
}

/// Wire -> storage (called on every write through `def`).
pub fn to_storage(def: &ResourceDef, obj: Value) -> Result<Value, ApiError> {
    if is_events_v1(def) {
        return Ok(event_v1_to_core(obj));
    }
    if is_core_event(def)
        && let Value::Object(m) = obj
    {
        return Ok(Value::Object(normalise_core(m)));
    }
    Ok(obj)
}

/// Storage -> wire for `def` (sets kind/apiVersion).
pub fn from_storage(def: &ResourceDef, obj: &Value) -> Value {
    let mut o = if is_events_v1(def) {
        event_core_to_v1(obj)
    } else {
        obj.clone()
    };
    if let Some(m) = o.as_object_mut() {
        m.insert("kind".into(), json!(def.kind));
        m.insert("apiVersion".into(), json!(def.api_version()));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources;

    fn core() -> &'static ResourceDef {
        resources::find("", "v1", "events").unwrap()
    }

    fn v1() -> &'static ResourceDef {
        resources::find("events.k8s.io", "v1", "events").unwrap()
    }

    #[test]
    fn core_event_read_as_events_v1() {
        let wire = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": "a", "name": "p", "uid": "u"},
            "reason": "Recorded", "message": "m", "type": "Normal", "source": {"component": "rec"},
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:00:00Z", "count": 1});
        let stored = to_storage(core(), wire).unwrap();
        assert_eq!(stored["eventTime"], Value::Null);
        assert_eq!(stored["reportingComponent"], "");
        let view = from_storage(v1(), &stored);
        assert_eq!(view["apiVersion"], "events.k8s.io/v1");
        assert_eq!(view["note"], "m");
        assert_eq!(view["regarding"]["name"], "p");
        assert_eq!(view["deprecatedSource"], json!({"component": "rec"}));
        assert_eq!(view["deprecatedCount"], 1);
        assert_eq!(view["deprecatedFirstTimestamp"], "2024-01-01T00:00:00Z");
        assert!(view.get("reportingController").is_none());
        assert!(view.get("message").is_none());
    }

    #[test]
    fn events_v1_round_trip() {
        let wire = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "eventTime": "2024-01-01T00:00:00.000000Z", "reportingController": "example.com/rec", "reportingInstance": "r1",
            "action": "Testing", "reason": "Recorded", "regarding": {"apiVersion": "v1", "kind": "Pod", "name": "p"},
            "note": "n", "type": "Normal", "series": {"count": 2, "lastObservedTime": "2024-01-01T00:00:00.000000Z"},
            "related": {"kind": "Node", "name": "n1"}});
        let stored = to_storage(v1(), wire.clone()).unwrap();
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["message"], "n");
        assert_eq!(stored["reportingComponent"], "example.com/rec");
        assert_eq!(stored["source"], json!({}));
        assert_eq!(stored["firstTimestamp"], Value::Null);
        let core_view = from_storage(core(), &stored);
        assert_eq!(core_view["involvedObject"]["kind"], "Pod");
        let back = from_storage(v1(), &stored);
        for k in [
            "eventTime",
            "reportingController",
            "reportingInstance",
            "action",
            "reason",
            "regarding",
            "note",
            "type",
            "series",
            "related",
        ] {
            assert_eq!(back[k], wire[k], "{k}");
        }
        assert_eq!(back["deprecatedSource"], json!({}));
        assert_eq!(back["deprecatedFirstTimestamp"], Value::Null);
        let keys: Vec<&String> = back.as_object().unwrap().keys().collect();
        assert_eq!(keys[3], "eventTime");
    }

    #[test]
    fn other_kinds_pass_through() {
        let cms = resources::find("", "v1", "configmaps").unwrap();
        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "b"}});
        assert_eq!(to_storage(cms, cm.clone()).unwrap(), cm);
        assert_eq!(from_storage(cms, &cm)["kind"], "ConfigMap");
    }
}
