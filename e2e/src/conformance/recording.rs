//! Serde types for the recorded transcript (`../shared/conformance/*.json`) and the small JSON
//! path subset (`$`, `.name`, `[index]`) its `capture` and `relations` use.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A whole recording: the server description and the steps, to be replayed in order.
#[derive(Debug, Clone, Deserialize)]
pub struct Recording {
    /// The recorded server's description (`gitVersion`, `placeholders`, …), kept as JSON.
    #[serde(default)]
    pub server: Value,
    /// The scripted exchanges, in replay order.
    pub steps: Vec<Step>,
}

impl Recording {
    /// Reads and parses a recording file.
    pub fn load(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Self::from_json_str(&text).map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))
    }

    /// Parses a recording from its JSON text.
    pub fn from_json_str(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }
}

/// One recorded exchange.
#[derive(Debug, Clone, Deserialize)]
pub struct Step {
    /// Unique `section/name` id.
    pub id: String,
    /// What the step shows, if the recorder said.
    #[serde(default)]
    pub note: Option<String>,
    /// The request as sent (may contain `{{var}}`).
    pub request: RecordedRequest,
    /// The normalised answer.
    pub response: RecordedResponse,
    /// Variables taken from the raw answer: name → JSON path.
    #[serde(default)]
    pub capture: BTreeMap<String, String>,
    /// Equalities between raw answer values and earlier captures.
    #[serde(default)]
    pub relations: Vec<Relation>,
    /// Set when the request was repeated until a controller or the watch cache caught up.
    #[serde(default)]
    pub poll: Option<Poll>,
    /// Requests sent while a watch was open.
    #[serde(default)]
    pub during: Vec<During>,
}

/// A recorded request.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query, already percent-encoded, possibly with `{{var}}`.
    pub path: String,
    /// Headers set explicitly (`Content-Type`, `Accept`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body; a JSON string is a raw body sent as is.
    #[serde(default, deserialize_with = "present")]
    pub body: Option<Value>,
}

/// A recorded, normalised answer.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordedResponse {
    /// HTTP status code.
    pub status: u16,
    /// The headers the matching rules look at.
    #[serde(default)]
    pub headers: RecordedHeaders,
    /// `None` when the body was empty; a JSON string for a non-JSON body.
    #[serde(default, deserialize_with = "present")]
    pub body: Option<Value>,
}

/// The recorded response headers.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RecordedHeaders {
    /// `Content-Type` as sent; `None` when the server sent none.
    #[serde(rename = "Content-Type", default)]
    pub content_type: Option<String>,
    /// Every `Warning` header value.
    #[serde(rename = "Warning", default)]
    pub warning: Vec<String>,
}

/// Whether a raw answer value equals a captured variable.
#[derive(Debug, Clone, Deserialize)]
pub struct Relation {
    /// JSON path into the raw answer.
    pub path: String,
    /// The variable to compare with.
    pub capture: String,
    /// Whether they were equal in the recording.
    pub equal: bool,
}

/// Polling parameters of an asynchronous step.
#[derive(Debug, Clone, Deserialize)]
pub struct Poll {
    /// The condition, in words.
    pub until: String,
    /// How long the recorder was prepared to wait.
    pub timeout_s: f64,
}

/// A request sent while a watch was open.
#[derive(Debug, Clone, Deserialize)]
pub struct During {
    /// Delay after the watch was opened.
    pub after_s: f64,
    /// The request.
    pub request: RecordedRequest,
    /// Its recorded answer.
    pub response: RecordedResponse,
}

/// Keeps a present `null` apart from an absent field: serde only calls this when the field exists.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// One part of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathPart {
    Field(String),
    Index(usize),
}

/// Parses `$.a.b[0].c`; `None` for anything outside that subset.
fn parse_path(path: &str) -> Option<Vec<PathPart>> {
    let mut rest = path.strip_prefix('$')?;
    let mut parts = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            parts.push(PathPart::Field(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            parts.push(PathPart::Index(r[..end].parse().ok()?));
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(parts)
}

/// Evaluates a `$.name[index]` path; `None` when the path is malformed or leads nowhere.
pub fn json_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    parse_path(path)?
        .iter()
        .try_fold(value, |v, part| match part {
            PathPart::Field(name) => v.as_object()?.get(name),
            PathPart::Index(i) => v.as_array()?.get(*i),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    #[rstest]
    #[case("$", Some(json!({"metadata": {"resourceVersion": "7"}, "items": [1, {"a": 2}]})))]
    #[case("$.metadata.resourceVersion", Some(json!("7")))]
    #[case("$.items[1].a", Some(json!(2)))]
    #[case("$.items[2]", None)]
    #[case("$.metadata.missing", None)]
    #[case("metadata", None)]
    #[case("$..x", None)]
    #[case("$.items[x]", None)]
    fn json_path_subset(#[case] path: &str, #[case] expected: Option<Value>) {
        let doc = json!({"metadata": {"resourceVersion": "7"}, "items": [1, {"a": 2}]});
        assert_eq!(json_path(&doc, path).cloned(), expected);
    }

    #[test]
    fn absent_and_null_bodies_differ() {
        let rec = Recording::from_json_str(
            r#"{"steps": [
                {"id": "a/b", "request": {"method": "GET", "path": "/x"},
                 "response": {"status": 204, "headers": {}}},
                {"id": "a/c", "request": {"method": "GET", "path": "/x"},
                 "response": {"status": 200, "headers": {"Content-Type": "application/json", "Warning": ["w"]}, "body": null}}
            ]}"#,
        )
        .unwrap();
        assert_eq!(rec.steps[0].response.body, None);
        assert_eq!(rec.steps[1].response.body, Some(Value::Null));
        assert_eq!(rec.steps[1].response.headers.warning, vec!["w".to_string()]);
        assert_eq!(rec.steps[0].response.headers.content_type, None);
    }

    #[test]
    fn the_shared_recording_parses_when_present() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/conformance/kube-apiserver-v1.32.3.json");
        if !path.exists() {
            eprintln!("{} is absent: nothing to parse", path.display());
            return;
        }
        let rec = Recording::load(&path).unwrap();
        assert_eq!(rec.steps.len(), 334);
        assert!(rec.steps.iter().any(|s| !s.during.is_empty()));
        assert!(rec.steps.iter().any(|s| s.response.body.is_none()));
    }
}
