//! Strategic merge patch, as apimachinery's `strategicpatch` applies it on the server.
//!
//! Lists merge by key when the schema says so ([`Shape::smp_list`]), everything else behaves like a
//! JSON merge patch. Directives: `$patch: replace|delete|merge`, `$retainKeys`,
//! `$deleteFromPrimitiveList/<f>`, `$setElementOrder/<f>`. The order of a merged list follows
//! apimachinery's `normalizeElementOrder` (patch items in patch order, server-only items
//! interleaved by their live positions), which decides e.g. where a new pod condition lands.

use serde_json::{Map, Value};

use super::super::errors::ApiError;
use super::schema::{Shape, root_shape};

const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";
const SET_ORDER: &str = "$setElementOrder/";

/// Apply a strategic merge patch to an object of `group`/`kind`.
pub fn strategic_merge_patch(
    group: &str,
    kind: &str,
    target: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    let Value::Object(p) = patch else {
        return Err(ApiError::bad_request(format!(
            "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
            if patch.is_array() { "array" } else { "string" }
        )));
    };
    let empty = Map::new();
    let t = target.as_object().unwrap_or(&empty);
    Ok(merge_map(t, p, root_shape(group, kind))?
        .map(Value::Object)
        .unwrap_or_else(|| Value::Object(Map::new())))
}

/// Merge `patch` into `orig`; `None` means the map is deleted (`$patch: delete`).
fn merge_map(
    orig: &Map<String, Value>,
    patch: &Map<String, Value>,
    shape: Shape,
) -> Result<Option<Map<String, Value>>, ApiError> {
    let mut patch = patch.clone();
    let mut orig = orig.clone();
    if let Some(d) = patch.shift_remove("$patch") {
        match d.as_str() {
            Some("replace") => return merge_map(&Map::new(), &patch, shape),
            Some("delete") => return Ok(None),
            Some("merge") => {}
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Unknown patch type: {}",
                    d.as_str().unwrap_or_default()
                )));
            }
        }
    }
    if let Some(rk) = patch.shift_remove("$retainKeys") {
        let Some(keys) = rk
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
        else {
            return Err(ApiError::bad_request("invalid patch format for retainKeys"));
        };
        for k in patch
            .keys()
            .filter(|k| !k.starts_with('$') && !patch[*k].is_null())
        {
            if !keys.contains(&k.as_str()) {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request",
                    Some(serde_json::json!({})),
                ));
            }
        }
        orig.retain(|k, _| keys.contains(&k.as_str()));
    }
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, v) in &patch {
        if let Some(field) = k.strip_prefix(DELETE_PRIMITIVE) {
            let Value::Array(del) = v else {
                return Err(ApiError::bad_request(
                    "invalid patch format for deleteFromPrimitiveList",
                ));
            };
            if let Some(Value::Array(items)) = orig.get_mut(field) {
                items.retain(|x| !del.contains(x));
            }
        } else if let Some(field) = k.strip_prefix(SET_ORDER) {
            let Value::Array(order) = v else {
                return Err(ApiError::bad_request(
                    "invalid patch format for setElementOrder list",
                ));
            };
            orders.push((field.to_string(), order.clone()));
        }
    }
    for (k, pv) in &patch {
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            orig.shift_remove(k);
            continue;
        }
        let cshape = shape.field(k).0;
        let order = orders
            .iter()
            .find(|(f, _)| f == k)
            .map(|(_, o)| o.as_slice());
        let merged = match (orig.get(k), pv) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                merge_map(o, p, cshape)?.map(Value::Object)
            }
            (None | Some(Value::Null), Value::Object(p)) => {
                merge_map(&Map::new(), p, cshape)?.map(Value::Object)
            }
            (Some(Value::Array(o)), Value::Array(p)) => {
                Some(Value::Array(merge_list(o, p, cshape, order)?))
            }
            (None | Some(Value::Null), Value::Array(p)) => {
                Some(Value::Array(merge_list(&[], p, cshape, order)?))
            }
            _ => Some(pv.clone()),
        };
        match merged {
            Some(v) => {
                orig.insert(k.clone(), v);
            }
            None => {
                orig.shift_remove(k);
            }
        }
    }
    // A `$setElementOrder` without a patch list only reorders the live list.
    for (field, order) in &orders {
        if patch.contains_key(field) {
            continue;
        }
        if let (Some(Value::Array(items)), Some(key)) =
            (orig.get(field), shape.field(field).0.smp_list())
        {
            let items = normalize(items.clone(), order, items, key);
            orig.insert(field.clone(), Value::Array(items));
        }
    }
    Ok(Some(orig))
}

fn ident(v: &Value, key: Option<&str>) -> Value {
    match key {
        Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
        None => v.clone(),
    }
}

fn merge_list(
    orig: &[Value],
    patch: &[Value],
    shape: Shape,
    order: Option<&[Value]>,
) -> Result<Vec<Value>, ApiError> {
    let Some(key) = shape.smp_list() else {
        // Replace: items are taken as they are, minus the nulls and directives of new maps.
        return patch
            .iter()
            .map(|v| match v {
                Value::Object(m) => Ok(Value::Object(
                    merge_map(&Map::new(), m, shape.item())?.unwrap_or_default(),
                )),
                other => Ok(other.clone()),
            })
            .collect();
    };
    let Some(key) = key else {
        let mut merged: Vec<Value> = Vec::new();
        for v in orig.iter().chain(patch) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        return Ok(normalize(merged, order.unwrap_or(patch), orig, None));
    };
    let mut merged: Vec<Value> = orig.to_vec();
    let mut plain: Vec<Value> = Vec::new();
    for p in patch {
        let Value::Object(pm) = p else {
            return Err(ApiError::bad_request(format!(
                "map: {p} does not contain declared merge key: {key}"
            )));
        };
        match pm.get("$patch").and_then(Value::as_str) {
            Some("replace") => {
                let rest: Vec<Value> = patch
                    .iter()
                    .filter(|x| x.get("$patch").is_none())
                    .cloned()
                    .collect();
                return merge_list(&[], &rest, shape, None);
            }
            Some("delete") => {
                let id = pm.get(key).cloned().unwrap_or(Value::Null);
                merged.retain(|x| ident(x, Some(key)) != id);
                continue;
            }
            Some("merge") | None => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Unknown patch type: {other}"
                )));
            }
        }
        if !pm.contains_key(key) {
            return Err(ApiError::bad_request(format!(
                "map: {} does not contain declared merge key: {key}",
                go_map(pm)
            )));
        }
        plain.push(p.clone());
    }
    for p in &plain {
        let id = ident(p, Some(key));
        let pm = p.as_object().expect("checked above");
        match merged.iter().position(|x| ident(x, Some(key)) == id) {
            Some(i) => {
                let o = merged[i].as_object().cloned().unwrap_or_default();
                match merge_map(&o, pm, shape.item())? {
                    Some(m) => merged[i] = Value::Object(m),
                    None => {
                        merged.remove(i);
                    }
                }
            }
            None => {
                if let Some(m) = merge_map(&Map::new(), pm, shape.item())? {
                    merged.push(Value::Object(m));
                }
            }
        }
    }
    Ok(normalize(merged, order.unwrap_or(&plain), orig, Some(key)))
}

/// Go's `%v` of a map, for the merge-key error.
fn go_map(m: &Map<String, Value>) -> String {
    let mut keys: Vec<_> = m.iter().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    let parts: Vec<String> = keys
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}:{}",
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            )
        })
        .collect();
    format!("map[{}]", parts.join(" "))
}

/// apimachinery's `normalizeElementOrder`: items named by `patch_order` come in that order, the
/// others keep their live order, and the two runs are interleaved by live position.
fn normalize(
    merged: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let pos = |list: &[Value], v: &Value| {
        let id = ident(v, key);
        list.iter().position(|x| ident(x, key) == id)
    };
    let (mut patch_items, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| pos(patch_order, v).is_some());
    patch_items.sort_by_key(|v| pos(patch_order, v).unwrap_or(usize::MAX));
    server_only.sort_by_key(|v| pos(server_order, v).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        patch_items.into_iter().peekable(),
    );
    loop {
        match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(left.next()),
            (None, Some(_)) => out.extend(right.next()),
            (Some(l), Some(r)) => {
                let less = match (pos(server_order, l), pos(server_order, r)) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                };
                if less {
                    out.extend(left.next());
                } else {
                    out.extend(right.next());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "p1", "labels": {"app": "web"}, "finalizers": ["a", "b"],
                         "ownerReferences": [{"uid": "u1", "name": "o1"}]},
            "spec": {
                "containers": [
                    {"name": "c", "image": "busybox:1.35", "env": [{"name": "A", "value": "1"}],
                     "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                    {"name": "d", "image": "nginx"}
                ],
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}],
                "volumes": [{"name": "v", "emptyDir": {}}]
            },
            "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}
        })
    }

    #[rstest]
    // pods/patch-image: containers merge by name
    #[case("", "Pod", json!({"spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}),
           &["spec", "containers"],
           json!([{"name": "c", "image": "busybox:1.36", "env": [{"name": "A", "value": "1"}],
                   "ports": [{"containerPort": 80, "protocol": "TCP"}]}, {"name": "d", "image": "nginx"}]))]
    // pods/patch-add-toleration: tolerations have no merge strategy, they are replaced
    #[case("", "Pod", json!({"spec": {"tolerations": [{"key": "conf", "operator": "Exists", "effect": "NoSchedule"}]}}),
           &["spec", "tolerations"], json!([{"key": "conf", "operator": "Exists", "effect": "NoSchedule"}]))]
    // pods/patch-status-running: a new condition goes first, the live one follows
    #[case("", "Pod", json!({"status": {"conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null}]}}),
           &["status", "conditions"],
           json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]))]
    #[case("", "Pod", json!({"spec": {"containers": [{"name": "c", "env": [{"name": "B", "value": "2"}]}]}}),
           &["spec", "containers", "0", "env"], json!([{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]))]
    #[case("", "Pod", json!({"spec": {"containers": [{"name": "d", "$patch": "delete"}]}}),
           &["spec", "containers", "1"], Value::Null)]
    #[case("", "Pod", json!({"spec": {"containers": [{"name": "x", "image": "y"}, {"$patch": "replace"}]}}),
           &["spec", "containers"], json!([{"name": "x", "image": "y"}]))]
    #[case("", "Pod", json!({"metadata": {"finalizers": ["c", "a"]}}), &["metadata", "finalizers"], json!(["c", "a", "b"]))]
    #[case("", "Pod", json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}), &["metadata", "finalizers"], json!(["b"]))]
    #[case("", "Pod", json!({"metadata": {"finalizers": null}}), &["metadata", "finalizers"], Value::Null)]
    #[case("", "Pod", json!({"metadata": {"labels": {"app": null, "x": "y"}}}), &["metadata", "labels"], json!({"x": "y"}))]
    #[case("", "Pod", json!({"metadata": {"ownerReferences": [{"uid": "u2", "name": "o2"}]}}),
           &["metadata", "ownerReferences"], json!([{"uid": "u2", "name": "o2"}, {"uid": "u1", "name": "o1"}]))]
    #[case("", "Pod", json!({"spec": {"$setElementOrder/containers": [{"name": "d"}, {"name": "c"}],
                                       "containers": [{"name": "d", "image": "nginx:2"}]}}),
           &["spec", "containers", "0", "image"], json!("nginx:2"))]
    #[case("", "Pod", json!({"spec": {"$setElementOrder/containers": [{"name": "d"}, {"name": "c"}]}}),
           &["spec", "containers", "0", "name"], json!("d"))]
    #[case("", "Pod", json!({"spec": {"volumes": [{"name": "v", "configMap": {"name": "cm"}, "$retainKeys": ["configMap", "name"]}]}}),
           &["spec", "volumes"], json!([{"name": "v", "configMap": {"name": "cm"}}]))]
    #[case("", "Pod", json!({"spec": {"$patch": "replace", "containers": []}}), &["spec"], json!({"containers": []}))]
    // unknown kinds: lists are replaced
    #[case("example.com", "Widget", json!({"spec": {"containers": [{"name": "z"}]}}), &["spec", "containers"], json!([{"name": "z"}]))]
    // configmaps/patch-strategic
    #[case("", "ConfigMap", json!({"data": {"k4": "v4"}}), &["data", "k4"], json!("v4"))]
    fn merges(
        #[case] group: &str,
        #[case] kind: &str,
        #[case] patch: Value,
        #[case] at: &[&str],
        #[case] want: Value,
    ) {
        let out = strategic_merge_patch(group, kind, &pod(), &patch).unwrap();
        let mut cur = &out;
        for p in at {
            cur = match p.parse::<usize>() {
                Ok(i) => cur.get(i).unwrap_or(&Value::Null),
                Err(_) => cur.get(*p).unwrap_or(&Value::Null),
            };
        }
        assert_eq!(cur, &want, "{out:#}");
    }

    #[test]
    fn node_status_conditions_merge_by_type() {
        let node = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "MemoryPressure", "status": "False"}]}});
        let out = strategic_merge_patch(
            "",
            "Node",
            &node,
            &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        )
        .unwrap();
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "False"}])
        );
    }

    #[test]
    fn missing_merge_key_is_bad_request() {
        let e = strategic_merge_patch(
            "",
            "Pod",
            &pod(),
            &json!({"spec": {"containers": [{"image": "x"}]}}),
        )
        .unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.body["message"],
            "map: map[image:x] does not contain declared merge key: name"
        );
    }
}
