//! Just enough of the Kubernetes OpenAPI schema to merge lists the way the real server does.
//!
//! Server-side apply (structured-merge-diff) and strategic merge patch both need to know, per
//! field, whether a list is atomic, a set or associative (keyed), and whether a map is granular.
//! The table in `schema_table.rs` is generated from the k8s-openapi sources by `schema_gen.py`;
//! kinds not in it fall back to the "deduced" schema (maps granular, lists atomic), exactly as
//! structured-merge-diff treats unknown types.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::schema_table::{ROOTS, TYPES};

/// How a field merges: the `x-kubernetes-list-type` / `x-kubernetes-map-type` of the OpenAPI schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A scalar or a nested struct (the table's third column tells which).
    Plain,
    ListAtomic,
    ListSet,
    /// Associative list keyed by these fields.
    ListMap(&'static [&'static str]),
    MapAtomic,
    MapGranular,
}

/// The schema shape of one node of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A struct with declared fields (type id into the table).
    Struct(&'static str),
    /// `map[string]X`: every key is a member; values have the element shape.
    MapGranular(Option<&'static str>),
    MapAtomic,
    ListAtomic,
    ListSet,
    ListMap(&'static [&'static str], Option<&'static str>),
    Scalar,
    /// No schema: maps are granular, lists atomic.
    Deduced,
}

type FieldTable = HashMap<&'static str, (Kind, &'static str)>;

static TABLE: LazyLock<HashMap<&'static str, FieldTable>> = LazyLock::new(|| {
    TYPES
        .iter()
        .map(|(t, fields)| (*t, fields.iter().map(|(f, k, c)| (*f, (*k, *c))).collect()))
        .collect()
});

/// Default values of list-map key fields (structured-merge-diff fills them in when absent).
pub fn key_default(field: &str) -> Option<serde_json::Value> {
    match field {
        "protocol" => Some(serde_json::Value::String("TCP".into())),
        _ => None,
    }
}

/// The shape of a whole object of `group`/`kind`.
pub fn root_shape(group: &str, kind: &str) -> Shape {
    ROOTS
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
        .map(|(_, _, t)| Shape::Struct(t))
        .unwrap_or(Shape::Deduced)
}

fn child(c: &'static str) -> Option<&'static str> {
    if c.is_empty() { None } else { Some(c) }
}

impl Shape {
    /// The shape of map key `key` under this node, and whether it is a declared struct field
    /// (undeclared keys, i.e. entries of a `map[string]X`, are members of a field set).
    pub fn field(self, key: &str) -> (Shape, bool) {
        match self {
            Shape::Struct(t) => {
                let Some((kind, c)) = TABLE.get(t).and_then(|f| f.get(key)) else {
                    // apiVersion/kind are not in the generated structs but are declared fields.
                    if key == "apiVersion" || key == "kind" {
                        return (Shape::Scalar, true);
                    }
                    return (Shape::Deduced, false);
                };
                let s = match kind {
                    Kind::Plain => child(c).map(Shape::Struct).unwrap_or(Shape::Scalar),
                    Kind::ListAtomic => Shape::ListAtomic,
                    Kind::ListSet => Shape::ListSet,
                    Kind::ListMap(keys) => Shape::ListMap(keys, child(c)),
                    Kind::MapAtomic => Shape::MapAtomic,
                    Kind::MapGranular => Shape::MapGranular(child(c)),
                };
                (s, true)
            }
            Shape::MapGranular(elem) => (elem.map(Shape::Struct).unwrap_or(Shape::Scalar), false),
            _ => (Shape::Deduced, false),
        }
    }

    /// The shape of the items of a list.
    pub fn item(self) -> Shape {
        match self {
            Shape::ListMap(_, Some(t)) => Shape::Struct(t),
            Shape::ListMap(_, None) => Shape::Deduced,
            Shape::ListSet => Shape::Scalar,
            _ => Shape::Deduced,
        }
    }

    /// The strategic-merge-patch behaviour of a list: `Some(Some(key))` merges maps by `key`,
    /// `Some(None)` merges primitives, `None` replaces.
    pub fn smp_list(self) -> Option<Option<&'static str>> {
        match self {
            // patchMergeKey is the first list-map key in every type we serve.
            Shape::ListMap(keys, _) => Some(keys.first().copied()),
            Shape::ListSet => Some(None),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("", "Pod", &["spec", "containers"], Shape::ListMap(&["name"], Some("core/v1/Container")))]
    #[case("", "Pod", &["spec", "tolerations"], Shape::ListAtomic)]
    #[case("", "Pod", &["metadata", "finalizers"], Shape::ListSet)]
    #[case("", "Pod", &["metadata", "labels"], Shape::MapGranular(None))]
    #[case("", "Service", &["spec", "ports"], Shape::ListMap(&["port", "protocol"], Some("core/v1/ServicePort")))]
    #[case("", "Node", &["status", "conditions"], Shape::ListMap(&["type"], Some("core/v1/NodeCondition")))]
    #[case("", "ConfigMap", &["data"], Shape::MapGranular(None))]
    #[case("example.com", "Widget", &["spec"], Shape::Deduced)]
    fn shapes(#[case] group: &str, #[case] kind: &str, #[case] path: &[&str], #[case] want: Shape) {
        let mut s = root_shape(group, kind);
        for p in path {
            s = s.field(p).0;
        }
        assert_eq!(s, want);
    }
}
