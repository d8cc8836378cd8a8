//! `metadata.managedFields`: decoding, encoding and ownership tracking for non-apply writes.
//!
//! Mirrors kube-apiserver's fieldmanager stack: managers are identified by (name, operation,
//! apiVersion for Update only, subresource); an Update takes the fields it added or changed from
//! everyone else and merges them into its own entry; removed fields lose their owners; empty
//! entries disappear; the identity fields of the object (`stripMeta`) are never owned.

use serde_json::{Map, Value, json};

use super::fieldpath::{FieldSet, compare, from_fields_v1, recursive_difference, to_fields_v1};
use super::schema::{Shape, root_shape};

/// One `managedFields` entry with its decoded field set.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: String,
    pub set: FieldSet,
}

impl Entry {
    /// kube-apiserver's `BuildManagerIdentifier`: the entry minus time and fields, and minus the
    /// apiVersion for appliers. Its JSON text is also what conflict messages sort by.
    pub fn identifier(&self) -> String {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        if self.operation != "Apply" && !self.api_version.is_empty() {
            m.insert("apiVersion".into(), json!(self.api_version));
        }
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m).to_string()
    }

    /// `printManager`: how a conflict message names this manager.
    pub fn printed(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), to_fields_v1(&self.set));
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m)
    }
}

fn str_of(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Decode `metadata.managedFields` of an object (entries that are not FieldsV1 are dropped).
pub(super) fn decode(obj: &Value) -> Vec<Entry> {
    let Some(list) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter(|e| {
            e.get("fieldsType")
                .and_then(Value::as_str)
                .unwrap_or("FieldsV1")
                == "FieldsV1"
        })
        .map(|e| Entry {
            manager: str_of(e, "manager"),
            operation: str_of(e, "operation"),
            api_version: str_of(e, "apiVersion"),
            time: e.get("time").and_then(Value::as_str).map(str::to_string),
            subresource: str_of(e, "subresource"),
            set: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
        })
        .collect()
}

/// Write entries into `metadata.managedFields`, sorted as kube-apiserver sorts them
/// (operation, time, manager, apiVersion, subresource); no entries removes the field.
pub(super) fn encode(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.set.is_empty());
    entries.sort_by(|a, b| {
        (
            &a.operation,
            a.time.as_deref().unwrap_or(""),
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                b.time.as_deref().unwrap_or(""),
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        meta.shift_remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(entries.iter().map(Entry::to_value).collect()),
        );
    }
}

/// The object without `metadata.managedFields`.
pub(super) fn without_managed_fields(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.shift_remove("managedFields");
    }
    o
}

/// Fields nobody owns (`stripMetaManager`).
pub(super) fn strip(set: &FieldSet) -> FieldSet {
    const STRIPPED: &[&[&str]] = &[
        &["f:apiVersion"],
        &["f:kind"],
        &["f:metadata"],
        &["f:metadata", "f:name"],
        &["f:metadata", "f:namespace"],
        &["f:metadata", "f:creationTimestamp"],
        &["f:metadata", "f:selfLink"],
        &["f:metadata", "f:uid"],
        &["f:metadata", "f:clusterName"],
        &["f:metadata", "f:generation"],
        &["f:metadata", "f:managedFields"],
        &["f:metadata", "f:resourceVersion"],
    ];
    set.iter()
        .filter(|p| {
            !STRIPPED
                .iter()
                .any(|s| p.iter().map(String::as_str).eq(s.iter().copied()))
        })
        .cloned()
        .collect()
}

/// The group of an `apiVersion` (`""` for the core group).
pub(super) fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

/// Kinds whose status is written only through `/status` (their strategies reset it on the main
/// resource, so the main resource never owns it).
const STATUS_KINDS: &[&str] = &[
    "Pod",
    "Service",
    "Node",
    "Namespace",
    "ResourceQuota",
    "Ingress",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
];

fn reset_fields(kind: &str, subresource: Option<&str>) -> FieldSet {
    let top = match subresource {
        Some("status") => "f:spec",
        None if STATUS_KINDS.contains(&kind) => "f:status",
        _ => return FieldSet::new(),
    };
    FieldSet::from([vec![top.to_string()]])
}

/// The empty object a create is compared against: Go's zero value has its (non-pointer) struct
/// fields present, so they are not "added" and get no `.` member.
fn empty_like(new: &Value, shape: Shape) -> Value {
    let mut m = Map::new();
    if let Some(obj) = new.as_object() {
        for (k, v) in obj {
            if v.is_object() && (matches!(shape.field(k).0, Shape::Struct(_)) || k == "metadata") {
                m.insert(k.clone(), Value::Object(Map::new()));
            }
        }
    }
    Value::Object(m)
}

/// Managed fields a write starts from: the request's own (a client may set them), else the live ones;
/// `[{}]` resets them; subresources always use the live ones.
fn starting_entries(old: Option<&Value>, new: &Value, subresource: Option<&str>) -> Vec<Entry> {
    let live = || old.map(decode).unwrap_or_default();
    if subresource.is_some() {
        return live();
    }
    if let Some(list) = new
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    {
        if list.len() == 1 && list[0].as_object().is_some_and(Map::is_empty) {
            return Vec::new();
        }
        let e = decode(new);
        if !e.is_empty() {
            return e;
        }
    }
    live()
}

/// Record a create/update/patch (any non-apply write) by `manager` in `new`'s managedFields.
///
/// `old` is the live object (`None` for a create). Call it with the object as it will be stored
/// (after the patch or update is applied and the status/spec reset of the subresource is done).
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    now: &str,
) {
    let kind = new
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let shape = root_shape(group_of(api_version), &kind);
    let mut entries = starting_entries(old, new, subresource);
    let new_plain = without_managed_fields(new);
    let old_plain = match old {
        Some(o) => without_managed_fields(o),
        None => empty_like(&new_plain, shape),
    };
    let cmp = compare(&old_plain, &new_plain, shape);
    let changed: FieldSet = cmp.added.union(&cmp.modified).cloned().collect();
    for e in &mut entries {
        e.set = e
            .set
            .iter()
            .filter(|p| !changed.contains(*p) && !cmp.removed.contains(*p))
            .cloned()
            .collect();
    }
    let taken = strip(&recursive_difference(
        &changed,
        &reset_fields(&kind, subresource),
    ));
    if !taken.is_empty() {
        let me = Entry {
            manager: manager.to_string(),
            operation: "Update".into(),
            api_version: api_version.to_string(),
            time: Some(now.to_string()),
            subresource: subresource.unwrap_or_default().to_string(),
            set: taken,
        };
        let id = me.identifier();
        match entries.iter_mut().find(|e| e.identifier() == id) {
            Some(prev) => {
                prev.set = prev.set.union(&me.set).cloned().collect();
                prev.time = me.time;
                prev.api_version = me.api_version;
            }
            None => entries.push(me),
        }
    }
    encode(new, entries);
}

/// The field manager of a non-apply request: the `fieldManager` parameter, else the User-Agent up
/// to its first `/`, printable characters only, at most 128 of them.
pub fn manager_from_request(field_manager_param: Option<&str>, user_agent: Option<&str>) -> String {
    if let Some(m) = field_manager_param.filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let ua = user_agent.unwrap_or_default();
    let prefix = ua.split('/').next().unwrap_or_default();
    let mut out = String::new();
    for c in prefix.chars().filter(|c| !c.is_control()) {
        if out.len() >= 128 {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const T0: &str = "2024-01-01T00:00:00Z";
    const T1: &str = "2024-01-01T00:01:00Z";

    #[rstest]
    #[case(Some("mgr"), Some("kubectl/v1.32.3 (linux/amd64)"), "mgr")]
    #[case(None, Some("kubectl/v1.32.3 (linux/amd64)"), "kubectl")]
    #[case(Some(""), Some("conformance-recorder"), "conformance-recorder")]
    #[case(None, None, "")]
    fn manager_names(#[case] fm: Option<&str>, #[case] ua: Option<&str>, #[case] want: &str) {
        assert_eq!(manager_from_request(fm, ua), want);
    }

    #[test]
    fn manager_name_is_capped() {
        let ua = "x".repeat(200);
        assert_eq!(manager_from_request(None, Some(&ua)).len(), 128);
    }

    #[test]
    fn create_then_update_moves_ownership() {
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"x": "1", "y": "2"}});
        track_update(None, &mut cm, "kubectl", "v1", None, T0);
        assert_eq!(
            cm["metadata"]["managedFields"],
            json!([{"manager": "kubectl", "operation": "Update", "apiVersion": "v1", "time": T0, "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:data": {".": {}, "f:x": {}, "f:y": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}}}])
        );
        let mut next = cm.clone();
        next["data"] = json!({"x": "changed"});
        track_update(Some(&cm), &mut next, "other", "v1", None, T1);
        assert_eq!(
            next["metadata"]["managedFields"],
            json!([
                {"manager": "kubectl", "operation": "Update", "apiVersion": "v1", "time": T0, "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:data": {}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}}},
                {"manager": "other", "operation": "Update", "apiVersion": "v1", "time": T1, "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:data": {"f:x": {}}}}
            ])
        );
        // A no-op write changes nothing, not even the time.
        let mut same = next.clone();
        track_update(
            Some(&next),
            &mut same,
            "third",
            "v1",
            None,
            "2024-01-01T00:02:00Z",
        );
        assert_eq!(same, next);
    }

    #[test]
    fn status_subresource_owns_only_status() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"nodeName": "n"}, "status": {}});
        let mut next = pod.clone();
        next["status"] = json!({"phase": "Running"});
        next["spec"]["nodeName"] = json!("m");
        track_update(Some(&pod), &mut next, "kubelet", "v1", Some("status"), T0);
        assert_eq!(
            next["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:status": {"f:phase": {}}})
        );
        assert_eq!(
            next["metadata"]["managedFields"][0]["subresource"],
            json!("status")
        );
    }

    #[test]
    fn request_can_reset_managed_fields() {
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"x": "1"}});
        track_update(None, &mut cm, "a", "v1", None, T0);
        let mut next = cm.clone();
        next["metadata"]["managedFields"] = json!([{}]);
        track_update(Some(&cm), &mut next, "b", "v1", None, T1);
        assert!(next["metadata"].get("managedFields").is_none());
    }
}
