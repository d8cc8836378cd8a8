//! Loading a policy file: YAML through `serde-saphyr`, with every error located by its YAML
//! path (`pods.runtimeClass.forced`, `services.allowedEndpointCidrs[1]`) as well as its line.
//!
//! `serde-saphyr` reports where an error happened (line, column, byte offset) but not the path.
//! On an error, the document is parsed a second time into a tree of spanned nodes, and the path
//! is the chain of keys and indices whose nodes start at or before the error's offset: the error
//! lies in the last such entry of each mapping or sequence, since entries appear in document
//! order.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A policy file that cannot be used: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// YAML path of the offending key or value (`pods.runtimeClass.forced`); empty for the
    /// document itself (a syntax error before any key, or an empty file).
    pub path: String,
    /// 1-based line and column, when known.
    pub line_column: Option<(u64, u64)>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(document)"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.reason)?;
        if let Some((line, column)) = self.line_column {
            write!(f, " (line {line}, column {column})")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

impl PolicyError {
    /// An error found after parsing, at a path the caller names.
    pub(crate) fn at(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            line_column: None,
            reason: reason.into(),
        }
    }
}

/// Parse YAML into `T`, locating any error by path.
pub(crate) fn from_yaml<T: for<'de> Deserialize<'de>>(yaml: &str) -> Result<T, PolicyError> {
    let options = serde_saphyr::options! {
        // `yes`/`on` as booleans is a classic YAML trap in security settings.
        strict_booleans: true,
    };
    serde_saphyr::from_str_with_options::<T>(yaml, options).map_err(|err| {
        let err = err.without_snippet();
        let location = err.location();
        let reason = strip_location(&err.to_string());
        let path = location
            .and_then(|loc| {
                let tree: Spanned<Node> = serde_saphyr::from_str(yaml).ok()?;
                let mut path = String::new();
                locate(&tree, loc.span().offset(), &mut path);
                Some(path)
            })
            .unwrap_or_default();
        PolicyError {
            path,
            line_column: location.map(|l| (l.line(), l.column())),
            reason,
        }
    })
}

/// `serde-saphyr` appends " at line L, column C" to plain messages; the line and column are
/// reported separately.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(", column ") => msg[..i].to_owned(),
        _ => msg.to_owned(),
    }
}

/// Append a key to a YAML path: `.key` for plain keys, `["key"]` for keys with dots, slashes or
/// other characters (`nodeSelector["node.kubernetes.io/pool"]`).
pub(crate) fn push_key(path: &mut String, key: &str) {
    let plain = key
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push_str(&format!("[{key:?}]"));
    }
}

fn locate(node: &Spanned<Node>, offset: u64, path: &mut String) {
    match &node.value {
        Node::Map(entries) => {
            let Some((key, value)) = entries
                .iter()
                .rev()
                .find(|(k, _)| k.referenced.span().offset() <= offset)
            else {
                return;
            };
            push_key(path, &key.value);
            if key.referenced.span().offset() != offset {
                locate(value, offset, path);
            }
        }
        Node::Seq(items) => {
            let Some((i, item)) = items
                .iter()
                .enumerate()
                .rev()
                .find(|(_, item)| item.referenced.span().offset() <= offset)
            else {
                return;
            };
            path.push_str(&format!("[{i}]"));
            locate(item, offset, path);
        }
        Node::Scalar => {}
    }
}

/// A YAML node with the location of every key and value.
#[derive(Debug)]
enum Node {
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

/// A mapping key of any scalar type, as text.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

struct SpannedKey(Spanned<String>);

impl<'de> Deserialize<'de> for SpannedKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let k = Spanned::<KeyText>::deserialize(d)?;
        Ok(SpannedKey(Spanned {
            value: k.value.0,
            referenced: k.referenced,
            defined: k.defined,
        }))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = m.next_key::<SpannedKey>()? {
                    let v = m.next_value::<Spanned<Node>>()?;
                    entries.push((k.0, v));
                }
                Ok(Node::Map(entries))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = s.next_element::<Spanned<Node>>()? {
                    items.push(v);
                }
                Ok(Node::Seq(items))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
        }
        d.deserialize_any(V)
    }
}
