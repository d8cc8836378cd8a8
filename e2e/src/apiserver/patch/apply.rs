//! Server-side apply: validation, merge, pruning of dropped fields, conflicts, ownership.
//!
//! Follows structured-merge-diff's `Updater.Apply`: merge the configuration into the live object
//! (associative lists by key), remove fields this manager applied last time and no longer
//! applies unless someone else owns them, then compare with the live object: other managers
//! owning a changed field conflict (409) unless `force`, in which case they lose it.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::super::errors::{ApiError, FieldError};
use super::fieldpath::{
    FieldSet, Path, child, child_map, children, closure, compare, is_leaf, path_string,
    to_field_set,
};
use super::managed_fields::{Entry, decode, encode, strip, without_managed_fields};
use super::schema::{Shape, root_shape};

/// Check an apply request before applying it, in kube-apiserver's order: the `fieldManager`
/// parameter (422 on `PatchOptions`), the managedFields of the body, the body's
/// apiVersion/kind against the endpoint (400 `invalid object type`), then name and namespace
/// against the URL (400).
pub fn validate_apply(
    field_manager: Option<&str>,
    applied: &Value,
    api_version: &str,
    kind: &str,
    url_name: &str,
    url_namespace: Option<&str>,
) -> Result<(), ApiError> {
    if field_manager.is_none_or(str::is_empty) {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            &[FieldError::required(
                "fieldManager",
                "is required for apply patch",
            )],
        ));
    }
    if !applied.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the applied configuration is not an object",
        ));
    }
    if applied
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let body_av = applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let body_kind = applied
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if body_av != api_version || body_kind != kind {
        let (g, v) = body_av.rsplit_once('/').unwrap_or(("", body_av));
        return Err(ApiError::bad_request(format!(
            "invalid object type: {g}/{v}, Kind={body_kind}"
        )));
    }
    let name = applied
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name != url_name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({url_name})"
        )));
    }
    let ns = applied
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !ns.is_empty() && Some(ns) != url_namespace {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

/// structured-merge-diff's merge: `rhs` wins on leaves, granular maps merge by key, associative
/// lists and sets merge by item identity keeping the live order around the applied order.
fn ssa_merge(lhs: &Value, rhs: &Value, shape: Shape) -> Value {
    if is_leaf(lhs, shape) || is_leaf(rhs, shape) || lhs.is_array() != rhs.is_array() {
        return rhs.clone();
    }
    match (lhs, rhs) {
        (Value::Object(l), Value::Object(r)) => {
            let mut out = l.clone();
            for (k, rv) in r {
                let s = shape.field(k).0;
                let merged = match out.get(k) {
                    Some(lv) => ssa_merge(lv, rv, s),
                    None => rv.clone(),
                };
                if merged.is_null() {
                    out.shift_remove(k);
                } else {
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        (Value::Array(_), Value::Array(_)) => Value::Array(merge_list(lhs, rhs, shape)),
        _ => rhs.clone(),
    }
}

/// The list interleaving of structured-merge-diff's `visitListItems`.
fn merge_list(lhs: &Value, rhs: &Value, shape: Shape) -> Vec<Value> {
    let item_shape = shape.item();
    let l: Vec<(String, &Value)> = children(lhs, shape)
        .into_iter()
        .map(|(a, pe, _, _)| (pe, child(lhs, &a)))
        .collect();
    let r: Vec<(String, &Value)> = children(rhs, shape)
        .into_iter()
        .map(|(a, pe, _, _)| (pe, child(rhs, &a)))
        .collect();
    let l_by: BTreeMap<&str, &Value> = l.iter().rev().map(|(pe, v)| (pe.as_str(), *v)).collect();
    let r_by: BTreeMap<&str, &Value> = r.iter().rev().map(|(pe, v)| (pe.as_str(), *v)).collect();
    let item = |pe: &str| match (l_by.get(pe), r_by.get(pe)) {
        (Some(lv), Some(rv)) => ssa_merge(lv, rv, item_shape),
        (Some(lv), None) => (*lv).clone(),
        (None, Some(rv)) => (*rv).clone(),
        (None, None) => Value::Null,
    };
    let mut shared = r
        .iter()
        .map(|(pe, _)| pe.as_str())
        .filter(|pe| l_by.contains_key(pe))
        .collect::<Vec<_>>()
        .into_iter();
    let mut next_shared = shared.next();
    let mut done: std::collections::BTreeSet<&str> = Default::default();
    let mut out = Vec::new();
    let (mut li, mut ri) = (0, 0);
    while li < l.len() || ri < r.len() {
        if li < l.len() && ri < r.len() {
            let pe = l[li].0.as_str();
            if pe == r[ri].0 {
                done.insert(pe);
                out.push(item(pe));
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if r_by.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < l.len() {
            let pe = l[li].0.as_str();
            if !r_by.contains_key(pe) {
                out.push(item(pe));
                li += 1;
                continue;
            } else if done.contains(pe) {
                li += 1;
                continue;
            }
        }
        if ri < r.len() {
            let pe = r[ri].0.as_str();
            done.insert(pe);
            out.push(item(pe));
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
        } else {
            // Only reachable with duplicate live keys: keep the item rather than loop forever.
            li += 1;
        }
    }
    out
}

/// Remove every node this manager applied before (`last`) that nobody owns any more.
fn prune(v: &mut Value, shape: Shape, path: &Path, last: &FieldSet, owned: &FieldSet) {
    let kids = child_map(v, shape);
    let mut drop_keys = Vec::new();
    let mut drop_idx = Vec::new();
    for (pe, (acc, s, _)) in kids {
        let mut p = path.clone();
        p.push(pe);
        if last.contains(&p) && !owned.contains(&p) {
            match acc {
                super::fieldpath::Acc::Key(k) => drop_keys.push(k),
                super::fieldpath::Acc::Idx(i) => drop_idx.push(i),
            }
        } else if last.contains(&p) {
            let c = match (&acc, &mut *v) {
                (super::fieldpath::Acc::Key(k), Value::Object(m)) => m.get_mut(k),
                (super::fieldpath::Acc::Idx(i), Value::Array(a)) => a.get_mut(*i),
                _ => None,
            };
            if let Some(c) = c {
                prune(c, s, &p, last, owned);
            }
        }
    }
    match v {
        Value::Object(m) => {
            for k in drop_keys {
                m.shift_remove(&k);
            }
        }
        Value::Array(a) => {
            drop_idx.sort_unstable();
            for i in drop_idx.into_iter().rev() {
                a.remove(i);
            }
        }
        _ => {}
    }
}

fn conflict_error(conflicts: &[(Entry, Path)]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(e, p)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", e.printed()), "field": path_string(p)})
        })
        .collect();
    let message = if let [(e, p)] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            e.printed(),
            path_string(p)
        )
    } else {
        let mut lines = Vec::new();
        let mut last_id = None;
        for (e, p) in conflicts {
            let id = e.identifier();
            if last_id.as_ref() != Some(&id) {
                lines.push(format!("conflicts with {}:", e.printed()));
                last_id = Some(id);
            }
            lines.push(format!("- {}", path_string(p)));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    ApiError::new(409, "Conflict", message, Some(json!({"causes": causes})))
}

/// Apply `applied` (already checked by [`validate_apply`]) as `manager` to `live` (`None`
/// creates). Returns the new object with its managedFields; when nothing changes the result
/// equals `live` (the caller keeps the resourceVersion). `api_version` is the endpoint's
/// (`v1`, `apps/v1`, ...), `now` an RFC 3339 time for the managedFields entry.
#[allow(clippy::too_many_arguments)]
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    group: &str,
    kind: &str,
    api_version: &str,
    now: &str,
) -> Result<Value, ApiError> {
    let shape = root_shape(group, kind);
    let mut entries = live.map(decode).unwrap_or_default();
    let live_plain = live
        .map(without_managed_fields)
        .unwrap_or_else(|| Value::Object(Map::new()));
    let config = without_managed_fields(applied);
    let me_id = Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: String::new(),
        time: None,
        subresource: String::new(),
        set: FieldSet::new(),
    }
    .identifier();
    let previous = entries
        .iter()
        .position(|e| e.identifier() == me_id)
        .map(|i| entries.remove(i));

    // The unstripped set keeps metadata.name & co. owned while pruning, as in the real server
    // where stripping happens only after the merge.
    let new_set = to_field_set(&config, shape);
    let mut merged = ssa_merge(&live_plain, &config, shape);
    if let Some(prev) = previous.as_ref().filter(|p| !p.set.is_empty()) {
        let mut owned: FieldSet = new_set.clone();
        for e in &entries {
            owned.extend(e.set.iter().cloned());
        }
        prune(
            &mut merged,
            shape,
            &Vec::new(),
            &closure(&prev.set),
            &closure(&owned),
        );
    }

    let cmp = compare(&live_plain, &merged, shape);
    let changed: FieldSet = cmp.added.union(&cmp.modified).cloned().collect();
    let mut conflicts: Vec<(Entry, Path)> = Vec::new();
    let mut others: Vec<&Entry> = entries.iter().collect();
    others.sort_by_key(|e| e.identifier());
    for e in others {
        conflicts.extend(e.set.intersection(&changed).map(|p| (e.clone(), p.clone())));
    }
    if !force && !conflicts.is_empty() {
        return Err(conflict_error(&conflicts));
    }
    for e in &mut entries {
        e.set = e
            .set
            .iter()
            .filter(|p| !changed.contains(*p) && !cmp.removed.contains(*p))
            .cloned()
            .collect();
    }
    let object_changed = !cmp.is_same();
    entries.push(Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version.to_string(),
        time: match (&previous, object_changed) {
            (Some(p), false) => p.time.clone(),
            _ => Some(now.to_string()),
        },
        subresource: String::new(),
        set: strip(&new_set),
    });
    if !object_changed && let Some(live) = live {
        // Nothing changed in the object: keep it byte for byte, only ownership may move.
        let mut out = live.clone();
        encode(&mut out, entries);
        return Ok(out);
    }
    encode(&mut merged, entries);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::super::managed_fields::track_update;
    use super::*;
    use rstest::rstest;

    const T0: &str = "2024-01-01T00:00:00Z";

    fn status_of(r: Result<Value, ApiError>) -> (u16, Value) {
        match r {
            Ok(v) => (200, v),
            Err(e) => (e.code, e.body),
        }
    }

    /// The recorded `configmaps/apply-*` sequence replayed against these functions.
    #[test]
    fn recorded_ssa_sequence() {
        let cm = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-ssa"}, "data": data});
        let ssa = |live: Option<&Value>, body: Value, mgr: &str, force: bool| {
            validate_apply(
                Some(mgr),
                &body,
                "v1",
                "ConfigMap",
                "cm-ssa",
                Some("conf-a"),
            )?;
            server_side_apply(live, &body, mgr, force, "", "ConfigMap", "v1", T0)
        };
        // apply-create
        let mut obj = ssa(
            None,
            cm(json!({"owned": "by-rec", "shared": "rec"})),
            "rec",
            true,
        )
        .unwrap();
        obj["metadata"]["namespace"] = json!("conf-a");
        obj["metadata"]["uid"] = json!("u");
        assert_eq!(obj["data"], json!({"owned": "by-rec", "shared": "rec"}));
        assert_eq!(
            obj["metadata"]["managedFields"],
            json!([{"manager": "rec", "operation": "Apply", "apiVersion": "v1", "time": T0, "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:data": {"f:owned": {}, "f:shared": {}}}}])
        );
        // apply-same-again: a no-op, identical object
        let again = ssa(
            Some(&obj),
            cm(json!({"owned": "by-rec", "shared": "rec"})),
            "rec",
            false,
        )
        .unwrap();
        assert_eq!(again, obj);
        // apply-conflict
        let (code, body) = status_of(ssa(
            Some(&obj),
            cm(json!({"shared": "other"})),
            "other",
            false,
        ));
        assert_eq!(code, 409);
        assert_eq!(
            body,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "Apply failed with 1 conflict: conflict with \"rec\": .data.shared", "reason": "Conflict",
                   "details": {"causes": [{"reason": "FieldManagerConflict", "message": "conflict with \"rec\"", "field": ".data.shared"}]},
                   "code": 409})
        );
        // apply-force
        let obj = ssa(Some(&obj), cm(json!({"shared": "other"})), "other", true).unwrap();
        assert_eq!(obj["data"], json!({"owned": "by-rec", "shared": "other"}));
        // apply-drop-field
        let obj = ssa(Some(&obj), cm(json!({})), "rec", false).unwrap();
        assert_eq!(obj["data"], json!({"shared": "other"}));
        // apply-no-field-manager / apply-missing-kind / apply-name-mismatch
        let e = validate_apply(
            None,
            &cm(json!({})),
            "v1",
            "ConfigMap",
            "cm-ssa",
            Some("conf-a"),
        )
        .unwrap_err();
        assert_eq!(
            e.body,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                   "reason": "Invalid", "details": {"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [
                       {"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"}]},
                   "code": 422})
        );
        let e = validate_apply(
            Some("rec"),
            &json!({"metadata": {"name": "cm-ssa"}, "data": {"a": "b"}}),
            "v1",
            "ConfigMap",
            "cm-ssa",
            Some("conf-a"),
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.body["message"].clone()),
            (400, json!("invalid object type: /, Kind="))
        );
        let e = validate_apply(
            Some("rec"),
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}}),
            "v1",
            "ConfigMap",
            "cm-ssa",
            Some("conf-a"),
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.body["message"].clone()),
            (
                400,
                json!("the name of the object (other) does not match the name on the URL (cm-ssa)")
            )
        );
        // update-after-apply: a PUT by the user-agent manager
        let mut put = cm(json!({"shared": "put"}));
        put["metadata"] = obj["metadata"].clone();
        put["metadata"]
            .as_object_mut()
            .unwrap()
            .shift_remove("managedFields");
        track_update(Some(&obj), &mut put, "conformance-recorder", "v1", None, T0);
        assert_eq!(put["data"], json!({"shared": "put"}));
        // apply-conflict-with-update-manager
        let (code, body) = status_of(ssa(Some(&put), cm(json!({"shared": "rec"})), "rec", false));
        assert_eq!(code, 409);
        assert_eq!(
            body["message"],
            "Apply failed with 1 conflict: conflict with \"conformance-recorder\" using v1: .data.shared"
        );
        assert_eq!(
            body["details"],
            json!({"causes": [{"reason": "FieldManagerConflict", "message": "conflict with \"conformance-recorder\" using v1", "field": ".data.shared"}]})
        );
    }

    #[test]
    fn multiple_conflicts_message() {
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "1", "c": "1"}});
        let a = server_side_apply(
            Some(&live),
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "1"}}),
            "m1",
            false,
            "",
            "ConfigMap",
            "v1",
            T0,
        )
        .unwrap();
        let b = server_side_apply(
            Some(&a),
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"c": "1"}}),
            "m2",
            false,
            "",
            "ConfigMap",
            "v1",
            T0,
        )
        .unwrap();
        let e = server_side_apply(Some(&b), &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "2", "b": "2", "c": "2"}}), "m3", false, "", "ConfigMap", "v1", T0).unwrap_err();
        assert_eq!(
            e.body["message"],
            "Apply failed with 3 conflicts: conflicts with \"m1\":\n- .data.a\n- .data.b\nconflicts with \"m2\":\n- .data.c"
        );
        assert_eq!(e.body["details"]["causes"].as_array().unwrap().len(), 3);
    }

    fn pod(containers: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})
    }

    #[rstest]
    // a second applier adds a container: both kept, live order first
    #[case(json!([{"name": "a", "image": "x"}]), "m2", json!([{"name": "b", "image": "y"}]), json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]))]
    // the same applier drops a container: it goes
    #[case(json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]), "m1", json!([{"name": "b", "image": "y"}]), json!([{"name": "b", "image": "y"}]))]
    // a shared container field merges by key
    #[case(json!([{"name": "a", "image": "x"}]), "m2", json!([{"name": "a", "imagePullPolicy": "Always"}]), json!([{"name": "a", "image": "x", "imagePullPolicy": "Always"}]))]
    fn associative_lists(
        #[case] first: Value,
        #[case] mgr: &str,
        #[case] second: Value,
        #[case] want: Value,
    ) {
        let a = server_side_apply(None, &pod(first), "m1", false, "", "Pod", "v1", T0).unwrap();
        let b = server_side_apply(Some(&a), &pod(second), mgr, false, "", "Pod", "v1", T0).unwrap();
        assert_eq!(b["spec"]["containers"], want);
    }

    #[test]
    fn dropped_field_owned_by_another_manager_stays() {
        let a = server_side_apply(
            None,
            &pod(json!([{"name": "a", "image": "x"}])),
            "m1",
            false,
            "",
            "Pod",
            "v1",
            T0,
        )
        .unwrap();
        let b = server_side_apply(
            Some(&a),
            &pod(json!([{"name": "a", "image": "x"}])),
            "m2",
            false,
            "",
            "Pod",
            "v1",
            T0,
        )
        .unwrap();
        let c =
            server_side_apply(Some(&b), &pod(json!([])), "m1", false, "", "Pod", "v1", T0).unwrap();
        assert_eq!(
            c["spec"]["containers"],
            json!([{"name": "a", "image": "x"}])
        );
        let managers: Vec<&str> = c["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, vec!["m2"]);
    }

    #[test]
    fn merge_keeps_live_order_around_applied_items() {
        let list =
            |names: &[&str]| Value::Array(names.iter().map(|n| json!({"name": n})).collect());
        let out = merge_list(
            &list(&["a", "b", "c"]),
            &list(&["c", "d", "a"]),
            Shape::ListMap(&["name"], None),
        );
        assert_eq!(out, list(&["b", "c", "d", "a"]).as_array().unwrap().clone());
    }
}
