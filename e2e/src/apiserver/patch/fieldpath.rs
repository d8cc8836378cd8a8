//! Field paths and field sets in structured-merge-diff's model, serialised as FieldsV1.
//!
//! A path element is kept in its FieldsV1 spelling (`f:name`, `k:{"name":"c"}`, `v:"x"`), so a
//! set is just a sorted set of element vectors and FieldsV1 encoding is a tree build. A set holds
//! *members*: leaves, list items, map entries, empty maps, and (for Update ownership) nodes that
//! were added as a whole.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::schema::{Shape, key_default};

pub(super) type Path = Vec<String>;
pub(super) type FieldSet = BTreeSet<Path>;

/// Where a child lives in its parent value.
#[derive(Debug, Clone)]
pub(super) enum Acc {
    Key(String),
    Idx(usize),
}

/// Whether a value is a leaf for this shape (scalars, atomic lists/maps, type mismatches).
pub(super) fn is_leaf(v: &Value, shape: Shape) -> bool {
    !matches!(
        (shape, v),
        (
            Shape::Struct(_) | Shape::MapGranular(_) | Shape::Deduced,
            Value::Object(_)
        ) | (Shape::ListMap(..) | Shape::ListSet, Value::Array(_))
    )
}

/// The key element of an associative-list item, or `None` when it lacks a key field.
pub(super) fn key_elem(item: &Value, keys: &[&str]) -> Option<String> {
    let obj = item.as_object()?;
    let mut sorted: BTreeMap<&str, Value> = BTreeMap::new();
    for k in keys {
        let v = obj
            .get(*k)
            .filter(|v| !v.is_null())
            .cloned()
            .or_else(|| key_default(k))?;
        sorted.insert(k, v);
    }
    let m: Map<String, Value> = sorted
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    Some(format!("k:{}", Value::Object(m)))
}

/// The children of a non-leaf node: accessor, path element, shape, and whether the element is a
/// declared struct field.
pub(super) fn children(v: &Value, shape: Shape) -> Vec<(Acc, String, Shape, bool)> {
    if is_leaf(v, shape) {
        return Vec::new();
    }
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, _)| {
                let (s, declared) = shape.field(k);
                (Acc::Key(k.clone()), format!("f:{k}"), s, declared)
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let pe = match shape {
                    Shape::ListMap(keys, _) => key_elem(item, keys)?,
                    _ => format!("v:{item}"),
                };
                Some((Acc::Idx(i), pe, shape.item(), false))
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn child<'a>(v: &'a Value, acc: &Acc) -> &'a Value {
    match acc {
        Acc::Key(k) => &v[k.as_str()],
        Acc::Idx(i) => &v[*i],
    }
}

/// Children indexed by path element (first occurrence wins on duplicate keys).
pub(super) fn child_map(v: &Value, shape: Shape) -> BTreeMap<String, (Acc, Shape, bool)> {
    let mut out = BTreeMap::new();
    for (acc, pe, s, d) in children(v, shape) {
        out.entry(pe).or_insert((acc, s, d));
    }
    out
}

fn extend(path: &Path, pe: &str) -> Path {
    let mut p = path.clone();
    p.push(pe.to_string());
    p
}

/// structured-merge-diff's `ToFieldSet`: the fields an apply configuration specifies.
pub(super) fn to_field_set(v: &Value, shape: Shape) -> FieldSet {
    let mut set = FieldSet::new();
    walk_set(v, shape, &Vec::new(), &mut set);
    set
}

fn walk_set(v: &Value, shape: Shape, path: &Path, set: &mut FieldSet) {
    if is_leaf(v, shape) {
        if !path.is_empty() {
            set.insert(path.clone());
        }
        return;
    }
    let is_list = v.is_array();
    for (acc, pe, s, declared) in children(v, shape) {
        let c = child(v, &acc);
        let p = extend(path, &pe);
        walk_set(c, s, &p, set);
        let empty_map = c.as_object().is_some_and(Map::is_empty);
        if is_list || c.is_null() || empty_map || !declared {
            set.insert(p);
        }
    }
}

/// Every node path under `v` (members and intermediate nodes), not the root itself.
pub(super) fn all_nodes(v: &Value, shape: Shape, path: &Path, out: &mut FieldSet) {
    for (acc, pe, s, _) in children(v, shape) {
        let p = extend(path, &pe);
        all_nodes(child(v, &acc), s, &p, out);
        out.insert(p);
    }
}

/// The result of structured-merge-diff's `Compare`.
#[derive(Debug, Default)]
pub(super) struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    pub fn is_same(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

/// Compare two objects: added and removed are whole subtrees, modified are changed leaves.
pub(super) fn compare(lhs: &Value, rhs: &Value, shape: Shape) -> Comparison {
    let mut c = Comparison::default();
    compare_at(Some(lhs), Some(rhs), shape, &Vec::new(), &mut c);
    c
}

fn compare_at(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    shape: Shape,
    path: &Path,
    c: &mut Comparison,
) {
    match (lhs, rhs) {
        (Some(l), Some(r)) => {
            if is_leaf(l, shape) || is_leaf(r, shape) || l.is_array() != r.is_array() {
                if l != r && !path.is_empty() {
                    c.modified.insert(path.clone());
                }
                return;
            }
            let lc = child_map(l, shape);
            let rc = child_map(r, shape);
            let keys: BTreeSet<&String> = lc.keys().chain(rc.keys()).collect();
            for pe in keys {
                let lv = lc.get(pe).map(|(a, _, _)| child(l, a));
                let rv = rc.get(pe).map(|(a, _, _)| child(r, a));
                let s = lc
                    .get(pe)
                    .or(rc.get(pe))
                    .map(|(_, s, _)| *s)
                    .unwrap_or(Shape::Deduced);
                compare_at(lv, rv, s, &extend(path, pe), c);
            }
        }
        (None, Some(r)) => {
            c.added.insert(path.clone());
            all_nodes(r, shape, path, &mut c.added);
        }
        (Some(l), None) => {
            c.removed.insert(path.clone());
            all_nodes(l, shape, path, &mut c.removed);
        }
        (None, None) => {}
    }
}

/// The set plus every ancestor of its members.
pub(super) fn closure(set: &FieldSet) -> FieldSet {
    let mut out = FieldSet::new();
    for p in set {
        for i in 1..=p.len() {
            out.insert(p[..i].to_vec());
        }
    }
    out
}

/// Members of `set` that are neither in `remove` nor below one of its members.
pub(super) fn recursive_difference(set: &FieldSet, remove: &FieldSet) -> FieldSet {
    set.iter()
        .filter(|p| !(1..=p.len()).any(|i| remove.contains(&p[..i])))
        .cloned()
        .collect()
}

/// Encode a set as a FieldsV1 object.
pub(super) fn to_fields_v1(set: &FieldSet) -> Value {
    #[derive(Default)]
    struct Node {
        member: bool,
        children: BTreeMap<String, Node>,
    }
    fn render(n: &Node) -> Value {
        let mut m = Map::new();
        if n.member && !n.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, c) in &n.children {
            m.insert(k.clone(), render(c));
        }
        Value::Object(m)
    }
    let mut root = Node::default();
    for p in set {
        let mut cur = &mut root;
        for pe in p {
            cur = cur.children.entry(pe.clone()).or_default();
        }
        cur.member = true;
    }
    render(&root)
}

/// Decode a FieldsV1 object (unknown shapes are ignored).
pub(super) fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: &Path, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        if m.is_empty() && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, c) in m {
            if k == "." {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
            } else {
                walk(c, &extend(path, k), out);
            }
        }
    }
    let mut out = FieldSet::new();
    walk(v, &Vec::new(), &mut out);
    out
}

/// The human form of a path, as in conflict messages: `.data.shared`, `.spec.containers[name="c"]`.
pub(super) fn path_string(p: &Path) -> String {
    let mut s = String::new();
    for pe in p {
        if let Some(f) = pe.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = pe.strip_prefix("k:") {
            let parts: Vec<String> = match serde_json::from_str::<Value>(k) {
                Ok(Value::Object(m)) => m.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                _ => vec![k.to_string()],
            };
            s.push('[');
            s.push_str(&parts.join(","));
            s.push(']');
        } else if let Some(v) = pe.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        } else if let Some(i) = pe.strip_prefix("i:") {
            s.push_str(&format!("[{i}]"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::schema::root_shape;
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn p(s: &[&str]) -> Path {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn pod_apply_field_set() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}});
        let set = to_field_set(&pod, root_shape("", "Pod"));
        let fv = to_fields_v1(&set);
        assert_eq!(
            fv,
            json!({"f:apiVersion": {}, "f:kind": {}, "f:metadata": {"f:labels": {"f:a": {}}, "f:name": {}},
                   "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {},
                       "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}})
        );
        assert_eq!(from_fields_v1(&fv), set);
    }

    #[rstest]
    #[case(json!({"data": {"a": "1"}}), json!({"data": {"a": "2", "b": "3"}}), &[&["f:data", "f:b"][..]], &[&["f:data", "f:a"][..]], &[])]
    #[case(json!({"data": {"a": "1"}}), json!({}), &[], &[], &[&["f:data"][..], &["f:data", "f:a"]])]
    #[case(json!({"metadata": {"finalizers": ["x"]}}), json!({"metadata": {"finalizers": ["y"]}}),
           &[&["f:metadata", "f:finalizers", "v:\"y\""][..]], &[], &[&["f:metadata", "f:finalizers", "v:\"x\""][..]])]
    fn compares(
        #[case] l: Value,
        #[case] r: Value,
        #[case] added: &[&[&str]],
        #[case] modified: &[&[&str]],
        #[case] removed: &[&[&str]],
    ) {
        let c = compare(&l, &r, root_shape("", "ConfigMap"));
        let set = |x: &[&[&str]]| x.iter().map(|s| p(s)).collect::<FieldSet>();
        assert_eq!(c.added, set(added));
        assert_eq!(c.modified, set(modified));
        assert_eq!(c.removed, set(removed));
    }

    #[rstest]
    #[case(&["f:data", "f:shared"], ".data.shared")]
    #[case(&["f:spec", "f:containers", "k:{\"name\":\"c\"}", "f:image"], ".spec.containers[name=\"c\"].image")]
    #[case(&["f:metadata", "f:finalizers", "v:\"x\""], ".metadata.finalizers[=\"x\"]")]
    fn renders_paths(#[case] path: &[&str], #[case] want: &str) {
        assert_eq!(path_string(&p(path)), want);
    }
}
