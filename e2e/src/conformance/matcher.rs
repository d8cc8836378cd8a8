//! Pure comparison of a replayed answer with a recorded one, following the matching rules of
//! `../shared/conformance/README.md`:
//!
//! * status must be equal; `Content-Type` must be equal; every recorded `Warning` must be present;
//! * every recorded field must be present with an equal value; placeholders (`<uid>`,
//!   `<generated-name:PREFIX>`, …) match any value of their shape, also inside longer strings;
//! * fields only the replayed body has are *notes*, not failures;
//! * arrays compare in order, except `items` of a `…List` and `rows` of a `Table`, which are
//!   keyed by `metadata.name` (+ `metadata.namespace`);
//! * go-cmp diffs embedded in messages compare only up to their first newline.
//!
//! Normalising the replayed answer the way the recorder normalised the real one lives in
//! [`super::normalise`].

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use regex::Regex;
use serde_json::Value;

use super::recording::RecordedResponse;

/// The differences (failures) and notes (reported, not failed) of one comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Human-readable failures, e.g. `$.details.causes[0].message: expected "…", got "…"`.
    pub differences: Vec<String>,
    /// Human-readable remarks that do not fail the step (extra fields, dropped discovery entries).
    pub notes: Vec<String>,
}

impl Outcome {
    /// Whether nothing failed.
    pub fn is_match(&self) -> bool {
        self.differences.is_empty()
    }

    /// Records a failure at `path`.
    pub fn diff(&mut self, path: &str, msg: impl AsRef<str>) {
        self.differences.push(format!("{path}: {}", msg.as_ref()));
    }

    /// Records a non-failing remark at `path`.
    pub fn note(&mut self, path: &str, msg: impl AsRef<str>) {
        self.notes.push(format!("{path}: {}", msg.as_ref()));
    }

    /// Appends `other`, prefixing each line (used for `during` requests).
    pub fn absorb(&mut self, prefix: &str, other: Outcome) {
        self.differences.extend(
            other
                .differences
                .into_iter()
                .map(|d| format!("{prefix}{d}")),
        );
        self.notes
            .extend(other.notes.into_iter().map(|n| format!("{prefix}{n}")));
    }
}

/// A replayed answer, reduced to what the matching rules look at.
#[derive(Debug, Clone, Default)]
pub struct ReplayedAnswer {
    /// HTTP status code.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// Every `Warning` header value.
    pub warnings: Vec<String>,
    /// The raw body text (lossy UTF-8).
    pub text: String,
    /// The normalised JSON body (for watches: `{"events": […]}`), when the body was JSON.
    pub json: Option<Value>,
}

/// Compares a replayed answer with the recorded one (rules 1–3, 8).
pub fn compare_response(expected: &RecordedResponse, actual: &ReplayedAnswer) -> Outcome {
    let mut out = Outcome::default();
    if expected.status != actual.status {
        out.diff(
            "status",
            format!("expected {}, got {}", expected.status, actual.status),
        );
    }
    match (&expected.headers.content_type, &actual.content_type) {
        (e, a) if e == a => {}
        (e, a) => out.diff(
            "header Content-Type",
            format!("expected {}, got {}", show_opt(e), show_opt(a)),
        ),
    }
    for w in &expected.headers.warning {
        if !actual.warnings.contains(w) {
            out.diff(
                "header Warning",
                format!("expected {w:?}, got {:?}", actual.warnings),
            );
        }
    }
    for w in &actual.warnings {
        if !expected.headers.warning.contains(w) {
            out.note("header Warning", format!("extra value {w:?}"));
        }
    }
    match &expected.body {
        None => {
            if !actual.text.is_empty() {
                out.diff(
                    "body",
                    format!("expected an empty body, got {}", show_str(&actual.text)),
                );
            }
        }
        Some(Value::String(s)) => {
            if !string_matches(s, &actual.text) {
                out.diff(
                    "body",
                    format!(
                        "expected {}, got {}{}",
                        show_str(s),
                        show_str(&actual.text),
                        first_divergence(s, &actual.text)
                    ),
                );
            }
        }
        Some(body) => match &actual.json {
            Some(json) => compare_values(body, json, "$", &mut out),
            None if actual.text.is_empty() => out.diff(
                "body",
                format!("expected {}, got an empty body", show(body)),
            ),
            None => out.diff(
                "body",
                format!(
                    "expected JSON {}, got non-JSON {}",
                    show(body),
                    show_str(&actual.text)
                ),
            ),
        },
    }
    out
}

/// Compares `actual` with the recorded `expected` at `path` (rules 3 and 4), recursively.
pub fn compare_values(expected: &Value, actual: &Value, path: &str, out: &mut Outcome) {
    match expected {
        Value::String(s) => compare_string(s, actual, path, out),
        Value::Number(e) => {
            let equal = match actual {
                Value::Number(a) => {
                    e == a || matches!((e.as_f64(), a.as_f64()), (Some(x), Some(y)) if x == y)
                }
                _ => false,
            };
            if !equal {
                out.diff(path, format!("expected {e}, got {}", show(actual)));
            }
        }
        Value::Null | Value::Bool(_) => {
            if expected != actual {
                out.diff(
                    path,
                    format!("expected {}, got {}", show(expected), show(actual)),
                );
            }
        }
        Value::Array(e) => match actual.as_array() {
            Some(a) => compare_in_order(e, a, path, out),
            None => out.diff(
                path,
                format!("expected {}, got {}", show(expected), show(actual)),
            ),
        },
        Value::Object(e) => {
            let Some(a) = actual.as_object() else {
                out.diff(
                    path,
                    format!("expected {}, got {}", show(expected), show(actual)),
                );
                return;
            };
            let kind = e.get("kind").and_then(Value::as_str).unwrap_or_default();
            for (key, ev) in e {
                let child = format!("{path}.{key}");
                let Some(av) = a.get(key) else {
                    out.diff(&child, format!("missing, expected {}", show(ev)));
                    continue;
                };
                match (key.as_str(), ev, av) {
                    ("items", Value::Array(ei), Value::Array(ai)) if kind.ends_with("List") => {
                        compare_keyed(ei, ai, &child, item_metadata, out)
                    }
                    ("rows", Value::Array(er), Value::Array(ar)) if kind == "Table" => {
                        compare_keyed(er, ar, &child, row_metadata, out)
                    }
                    _ => compare_values(ev, av, &child, out),
                }
            }
            for (key, av) in a {
                if !e.contains_key(key) {
                    out.note(
                        &format!("{path}.{key}"),
                        format!("extra field {}", show(av)),
                    );
                }
            }
        }
    }
}

fn compare_in_order(expected: &[Value], actual: &[Value], path: &str, out: &mut Outcome) {
    for (i, ev) in expected.iter().enumerate() {
        let child = format!("{path}[{i}]");
        match actual.get(i) {
            Some(av) => compare_values(ev, av, &child, out),
            None => out.diff(&child, format!("missing element, expected {}", show(ev))),
        }
    }
    for (i, av) in actual.iter().enumerate().skip(expected.len()) {
        out.diff(
            &format!("{path}[{i}]"),
            format!("extra element {}", show(av)),
        );
    }
}

fn item_metadata(item: &Value) -> Option<&Value> {
    item.get("metadata")
}

fn row_metadata(row: &Value) -> Option<&Value> {
    row.get("object")?.get("metadata")
}

/// `(namespace, name)` of an element; a missing name is the empty string (the core group of an
/// aggregated discovery list has none).
fn element_key(element: &Value, metadata: fn(&Value) -> Option<&Value>) -> (Option<&str>, &str) {
    let md = metadata(element);
    let field = |f: &str| md.and_then(|m| m.get(f)).and_then(Value::as_str);
    (field("namespace"), field("name").unwrap_or_default())
}

/// Rule 4: every recorded element needs a replayed one with the same name (and namespace, when
/// the recording has one); extra elements and a different relative order are failures.
fn compare_keyed(
    expected: &[Value],
    actual: &[Value],
    path: &str,
    metadata: fn(&Value) -> Option<&Value>,
    out: &mut Outcome,
) {
    let mut used = vec![false; actual.len()];
    let mut order = Vec::new();
    for ev in expected {
        let (ens, ename) = element_key(ev, metadata);
        let label = match ens {
            Some(ns) => format!("{ns}/{ename}"),
            None => ename.to_string(),
        };
        let child = format!("{path}[{label}]");
        let found = actual.iter().enumerate().position(|(i, av)| {
            let (ans, aname) = element_key(av, metadata);
            !used[i]
                && string_matches(ename, aname)
                && ens.is_none_or(|ns| ans.is_some_and(|a| string_matches(ns, a)))
        });
        match found {
            Some(i) => {
                used[i] = true;
                order.push((i, label));
                compare_values(ev, &actual[i], &child, out);
            }
            None => out.diff(&child, format!("missing item, expected {}", show(ev))),
        }
    }
    for (i, av) in actual.iter().enumerate() {
        if !used[i] {
            let (ns, name) = element_key(av, metadata);
            let label = ns.map_or(name.to_string(), |ns| format!("{ns}/{name}"));
            out.diff(
                &format!("{path}[{label}]"),
                format!("extra item {}", show(av)),
            );
        }
    }
    if order.windows(2).any(|w| w[0].0 > w[1].0) {
        let expected_order: Vec<&str> = order.iter().map(|(_, l)| l.as_str()).collect();
        let mut by_actual = order.clone();
        by_actual.sort_by_key(|(i, _)| *i);
        let actual_order: Vec<&str> = by_actual.iter().map(|(_, l)| l.as_str()).collect();
        out.diff(
            path,
            format!("order differs: expected {expected_order:?}, got {actual_order:?}"),
        );
    }
}

fn compare_string(expected: &str, actual: &Value, path: &str, out: &mut Outcome) {
    if expected == "<nodePort>" {
        let port = match actual {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        if !port.is_some_and(|p| (30000..=32767).contains(&p)) {
            out.diff(
                path,
                format!("expected a node port in 30000-32767, got {}", show(actual)),
            );
        }
        return;
    }
    match actual {
        Value::String(a) if string_matches(expected, a) => {}
        Value::String(a) => out.diff(
            path,
            format!(
                "expected {}, got {}{}",
                show_str(expected),
                show_str(a),
                first_divergence(expected, a)
            ),
        ),
        other => out.diff(
            path,
            format!("expected {}, got {}", show_str(expected), show(other)),
        ),
    }
}

/// A placeholder token: `<uid>`, `<generated-name:PREFIX>`, ….
static TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"<(uid|resourceVersion|timestamp|microtime|ip|port|nodePort|token|pem|continue|version|age|generated-name:[^<>]*)>",
    )
    .expect("placeholder token regex")
});

/// A go-cmp diff line (`"- \t…"`, `"+ \t…"`, `"  \t…"`) after the first line of a message.
static GO_CMP_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\n[-+ ] \t").expect("go-cmp regex"));

/// Anchored regexes built from recorded strings with placeholders, by recorded string.
static TEMPLATES: LazyLock<Mutex<HashMap<String, Regex>>> = LazyLock::new(Default::default);

/// The regex (unanchored) of one placeholder name (the text between `<` and `>`).
fn shape(name: &str) -> String {
    if let Some(prefix) = name.strip_prefix("generated-name:") {
        return format!(
            "{}[bcdfghjklmnpqrstvwxz2456789]{{5}}",
            regex::escape(prefix)
        );
    }
    match name {
        "uid" => "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "resourceVersion" => "[0-9]+",
        "timestamp" => "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z",
        "microtime" => r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z",
        "ip" => r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*",
        "port" => "[0-9]{1,5}",
        "nodePort" => "30[0-9]{3}|31[0-9]{3}|32[0-6][0-9]{2}|327[0-5][0-9]|3276[0-7]",
        "token" => r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+",
        "pem" => "-----BEGIN CERTIFICATE-----(?s:.)*",
        "continue" => "(?s:.)+",
        "version" => "(?s:.)*",
        "age" => "[0-9]+[smhdy](?:[0-9]+[smhdy])?",
        _ => unreachable!("TOKEN only matches known placeholder names"),
    }
    .to_string()
}

/// Turns a recorded string into an anchored regex: literal text escaped, each placeholder
/// replaced by its shape.
fn template_regex(expected: &str) -> Regex {
    let mut pattern = String::from(r"\A");
    let mut last = 0;
    for cap in TOKEN.captures_iter(expected) {
        let whole = cap.get(0).expect("group 0");
        pattern.push_str(&regex::escape(&expected[last..whole.start()]));
        pattern.push_str("(?:");
        pattern.push_str(&shape(&cap[1]));
        pattern.push(')');
        last = whole.end();
    }
    pattern.push_str(&regex::escape(&expected[last..]));
    pattern.push_str(r"\z");
    Regex::new(&pattern).expect("escaped template is a valid regex")
}

/// Whether a recorded message embeds a go-cmp diff, which only compares up to its first newline.
pub fn is_go_cmp_message(s: &str) -> bool {
    GO_CMP_LINE.is_match(s)
}

/// Whether the replayed string `actual` matches the recorded `expected` (placeholders, U+00A0,
/// go-cmp diffs).
pub fn string_matches(expected: &str, actual: &str) -> bool {
    let actual = actual.replace('\u{a0}', " ");
    let (expected, actual) = if is_go_cmp_message(expected) {
        (first_line(expected), first_line(&actual))
    } else {
        (expected, actual.as_str())
    };
    if !TOKEN.is_match(expected) {
        return expected == actual;
    }
    let mut cache = TEMPLATES.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(expected.to_string())
        .or_insert_with(|| template_regex(expected))
        .is_match(actual)
}

fn first_line(s: &str) -> &str {
    s.split('\n').next().unwrap_or(s)
}

/// Where two literal strings first differ, to help read long messages; empty with placeholders.
fn first_divergence(expected: &str, actual: &str) -> String {
    if TOKEN.is_match(expected) {
        return String::new();
    }
    let common = expected
        .chars()
        .zip(actual.chars())
        .take_while(|(e, a)| e == a)
        .count();
    let tail: String = expected.chars().skip(common).take(40).collect();
    format!(" (first difference at character {common}, expected there: {tail:?})")
}

const MAX_SHOWN: usize = 1500;

/// Compact JSON, shortened past [`MAX_SHOWN`] characters.
pub fn show(v: &Value) -> String {
    shorten(v.to_string())
}

fn show_str(s: &str) -> String {
    shorten(format!("{s:?}"))
}

fn show_opt(s: &Option<String>) -> String {
    s.as_deref().map_or("none".to_string(), show_str)
}

fn shorten(s: String) -> String {
    if s.chars().count() <= MAX_SHOWN {
        return s;
    }
    let head: String = s.chars().take(MAX_SHOWN).collect();
    format!("{head}… ({} characters)", s.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::recording::RecordedHeaders;
    use rstest::rstest;
    use serde_json::json;

    fn cmp(expected: Value, actual: Value) -> Outcome {
        let mut out = Outcome::default();
        compare_values(&expected, &actual, "$", &mut out);
        out
    }

    #[rstest]
    #[case("<uid>", "0b1e6f3a-2c4d-4e5f-8a9b-0c1d2e3f4a5b", true)]
    #[case("<uid>", "not-a-uid", false)]
    #[case("<resourceVersion>", "12345", true)]
    #[case("<resourceVersion>", "", false)]
    #[case("<timestamp>", "2025-03-01T10:11:12Z", true)]
    #[case("<timestamp>", "2025-03-01T10:11:12.123Z", false)]
    #[case("<microtime>", "2025-03-01T10:11:12.123456Z", true)]
    #[case("<ip>", "10.96.12.7", true)]
    #[case("<ip>", "fd00::1", true)]
    #[case("<ip>", "", false)]
    #[case("<ip>:<port>", "192.168.1.10:6443", true)]
    #[case("<ip>:<port>", "192.168.1.10", false)]
    #[case("<token>", "eyJhbGciOi.eyJpc3Mi.c2lnbmF0dXJl", true)]
    #[case("<token>", "abc", false)]
    #[case(
        "<pem>",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        true
    )]
    #[case("<pem>", "MIIB", false)]
    #[case("<continue>", "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ", true)]
    #[case("<continue>", "", false)]
    #[case("<version>", "", true)]
    #[case("<age>", "2m3s", true)]
    #[case("<age>", "5s", true)]
    #[case("<age>", "<unknown>", false)]
    #[case("<generated-name:gen->", "gen-x7k2q", true)]
    #[case("<generated-name:gen->", "gen-x7k2", false)]
    #[case("<generated-name:gen->", "gen-aeiou", false)]
    #[case("<generated-name:gen->", "other-x7k2q", false)]
    #[case("<generated-name:Bad_>", "Bad_x7k2q", true)]
    #[case("plain <nil> text", "plain <nil> text", true)]
    #[case("plain", "plain ", false)]
    fn placeholders_match_their_shape(
        #[case] expected: &str,
        #[case] actual: &str,
        #[case] matches: bool,
    ) {
        assert_eq!(
            string_matches(expected, actual),
            matches,
            "{expected} vs {actual}"
        );
    }

    #[rstest]
    #[case(
        "too old resource version: 1 (<resourceVersion>)",
        "too old resource version: 1 (4567)",
        true
    )]
    #[case(
        "too old resource version: 1 (<resourceVersion>)",
        "too old resource version: 2 (4567)",
        false
    )]
    #[case(
        "Precondition failed: UID in precondition: <uid>, UID in object meta: <uid>",
        "Precondition failed: UID in precondition: 0b1e6f3a-2c4d-4e5f-8a9b-0c1d2e3f4a5b, UID in object meta: 1b1e6f3a-2c4d-4e5f-8a9b-0c1d2e3f4a5b",
        true
    )]
    #[case(
        "ConfigMap \"<generated-name:Bad_>\" is invalid: (e.g. 'example.com', regex '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        "ConfigMap \"Bad_b2c4d\" is invalid: (e.g. 'example.com', regex '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        true
    )]
    #[case(
        "ConfigMap \"<generated-name:Bad_>\" is invalid: (e.g. 'example.com')",
        "ConfigMap \"Bad_b2c4d\" is invalid: (e.g. 'example_com')",
        false
    )]
    fn placeholders_inside_strings(
        #[case] expected: &str,
        #[case] actual: &str,
        #[case] matches: bool,
    ) {
        assert_eq!(string_matches(expected, actual), matches);
    }

    #[test]
    fn go_cmp_diffs_compare_up_to_the_first_newline_after_nbsp_replacement() {
        let recorded = "Pod \"p1\" is invalid: spec: Forbidden: pod updates may not change fields\n  core.PodSpec{\n- \tRestartPolicy: \"Always\",\n+ \tRestartPolicy: \"Never\",\n  }\n";
        assert!(is_go_cmp_message(recorded));
        let ours = "Pod \"p1\" is invalid: spec: Forbidden: pod updates may not change\u{a0}fields\n  something else entirely";
        assert!(string_matches(recorded, ours));
        assert!(!string_matches(
            recorded,
            "Pod \"p1\" is invalid: spec: Forbidden: pod updates may not change\n"
        ));
        // A message with newlines but no diff is compared whole.
        let plain = "406: Not Acceptable\n\nAvailable representations: application/json";
        assert!(!is_go_cmp_message(plain));
        assert!(!string_matches(
            plain,
            "406: Not Acceptable\n\nsomething else"
        ));
    }

    #[test]
    fn extra_fields_are_notes_not_failures() {
        let out = cmp(
            json!({"metadata": {"name": "a"}}),
            json!({"metadata": {"name": "a", "generation": 1}, "status": {}}),
        );
        assert!(out.is_match(), "{out:?}");
        assert_eq!(
            out.notes,
            vec![
                "$.metadata.generation: extra field 1",
                "$.status: extra field {}"
            ]
        );
    }

    #[test]
    fn missing_and_different_fields_fail_with_their_path() {
        let out = cmp(
            json!({"details": {"causes": [{"message": "Required value"}]}, "code": 422}),
            json!({"details": {"causes": [{"message": "required"}]}}),
        );
        assert_eq!(out.differences.len(), 2, "{out:?}");
        assert!(
            out.differences[0].starts_with(
                "$.details.causes[0].message: expected \"Required value\", got \"required\""
            ),
            "{}",
            out.differences[0]
        );
        assert_eq!(out.differences[1], "$.code: missing, expected 422");
    }

    #[rstest]
    #[case(json!({"a": null}), json!({"a": null}), true)]
    #[case(json!({"a": null}), json!({}), false)]
    #[case(json!({"a": null}), json!({"a": []}), false)]
    #[case(json!({"items": null, "kind": "PartialObjectMetadataList"}), json!({"items": [], "kind": "PartialObjectMetadataList"}), false)]
    #[case(json!({"a": []}), json!({"a": null}), false)]
    fn recorded_null_requires_a_present_null(
        #[case] expected: Value,
        #[case] actual: Value,
        #[case] matches: bool,
    ) {
        assert_eq!(cmp(expected, actual).is_match(), matches);
    }

    #[rstest]
    #[case(json!(3607), json!(3607), true)]
    #[case(json!(1), json!(1.0), true)]
    #[case(json!(1), json!("1"), false)]
    #[case(json!(true), json!(false), false)]
    #[case(json!("<nodePort>"), json!(30007), true)]
    #[case(json!("<nodePort>"), json!(32768), false)]
    #[case(json!("<nodePort>"), json!("31000"), true)]
    #[case(json!([1, 2]), json!([1, 2, 3]), false)]
    #[case(json!([1, 2]), json!([2, 1]), false)]
    #[case(json!([1, 2]), json!([1]), false)]
    fn scalars_and_plain_arrays(
        #[case] expected: Value,
        #[case] actual: Value,
        #[case] matches: bool,
    ) {
        assert_eq!(cmp(expected, actual).is_match(), matches);
    }

    fn cm(ns: &str, name: &str, v: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": ns}, "data": {"v": v}})
    }

    #[test]
    fn list_items_are_matched_by_name() {
        let expected =
            json!({"kind": "ConfigMapList", "items": [cm("a", "x", "1"), cm("a", "y", "2")]});
        let ok = cmp(
            expected.clone(),
            json!({"kind": "ConfigMapList", "items": [cm("a", "x", "1"), cm("a", "y", "2")]}),
        );
        assert!(ok.is_match(), "{ok:?}");

        let wrong_value = cmp(
            expected.clone(),
            json!({"kind": "ConfigMapList", "items": [cm("a", "x", "1"), cm("a", "y", "3")]}),
        );
        assert_eq!(
            wrong_value.differences,
            vec![
                "$.items[a/y].data.v: expected \"2\", got \"3\" (first difference at character 0, expected there: \"2\")"
            ]
        );

        let reordered = cmp(
            expected.clone(),
            json!({"kind": "ConfigMapList", "items": [cm("a", "y", "2"), cm("a", "x", "1")]}),
        );
        assert_eq!(
            reordered.differences,
            vec!["$.items: order differs: expected [\"a/x\", \"a/y\"], got [\"a/y\", \"a/x\"]"]
        );

        let extra_and_missing = cmp(
            expected,
            json!({"kind": "ConfigMapList", "items": [cm("a", "x", "1"), cm("b", "y", "2")]}),
        );
        assert_eq!(
            extra_and_missing.differences.len(),
            2,
            "{extra_and_missing:?}"
        );
        assert!(extra_and_missing.differences[0].starts_with("$.items[a/y]: missing item"));
        assert!(extra_and_missing.differences[1].starts_with("$.items[b/y]: extra item"));
    }

    #[test]
    fn items_outside_lists_are_compared_in_order() {
        let out = cmp(
            json!({"kind": "Thing", "items": [{"metadata": {"name": "x"}}, {"metadata": {"name": "y"}}]}),
            json!({"kind": "Thing", "items": [{"metadata": {"name": "y"}}, {"metadata": {"name": "x"}}]}),
        );
        assert_eq!(out.differences.len(), 2, "{out:?}");
    }

    #[test]
    fn discovery_items_without_a_name_are_keyed_by_the_empty_name() {
        let out = cmp(
            json!({"kind": "APIGroupDiscoveryList", "items": [{"metadata": {"creationTimestamp": null}}, {"metadata": {"name": "apps", "creationTimestamp": null}}]}),
            json!({"kind": "APIGroupDiscoveryList", "items": [{"metadata": {"creationTimestamp": null}}, {"metadata": {"name": "apps", "creationTimestamp": null}}]}),
        );
        assert!(out.is_match(), "{out:?}");
    }

    #[test]
    fn table_rows_are_matched_by_object_name() {
        let row = |name: &str, age: &str| json!({"cells": [name, 1, age], "object": {"kind": "PartialObjectMetadata", "metadata": {"name": name, "namespace": "a", "uid": "0b1e6f3a-2c4d-4e5f-8a9b-0c1d2e3f4a5b"}}});
        let recorded = json!({"kind": "Table", "rows": [
            {"cells": ["s1", 1, "<age>"], "object": {"kind": "PartialObjectMetadata", "metadata": {"name": "s1", "namespace": "a", "uid": "<uid>"}}},
            {"cells": ["s4", 1, "<age>"], "object": {"kind": "PartialObjectMetadata", "metadata": {"name": "s4", "namespace": "a", "uid": "<uid>"}}}
        ]});
        let ok = cmp(
            recorded.clone(),
            json!({"kind": "Table", "rows": [row("s1", "3s"), row("s4", "2m1s")]}),
        );
        assert!(ok.is_match(), "{ok:?}");
        let missing = cmp(
            recorded,
            json!({"kind": "Table", "rows": [row("s1", "3s"), row("s2", "3s")]}),
        );
        assert_eq!(missing.differences.len(), 2, "{missing:?}");
        assert!(missing.differences[0].starts_with("$.rows[a/s4]: missing item"));
        assert!(missing.differences[1].starts_with("$.rows[a/s2]: extra item"));
    }

    #[test]
    fn generated_names_key_list_items() {
        let out = cmp(
            json!({"kind": "ConfigMapList", "items": [{"metadata": {"name": "<generated-name:gen->", "namespace": "a"}}]}),
            json!({"kind": "ConfigMapList", "items": [{"metadata": {"name": "gen-abcde", "namespace": "a"}}]}),
        );
        assert!(!out.is_match(), "'a', 'e' are not in the alphabet: {out:?}");
        let out = cmp(
            json!({"kind": "ConfigMapList", "items": [{"metadata": {"name": "<generated-name:gen->", "namespace": "a"}}]}),
            json!({"kind": "ConfigMapList", "items": [{"metadata": {"name": "gen-bcd2f", "namespace": "a"}}]}),
        );
        assert!(out.is_match(), "{out:?}");
    }

    #[test]
    fn watch_events_compare_in_order_and_extra_events_fail() {
        let ev = |t: &str, name: &str| json!({"type": t, "object": {"metadata": {"name": name}}});
        let recorded = json!({"events": [ev("ADDED", "w-1"), ev("MODIFIED", "w-1")], "bookmarks_received": true});
        assert!(cmp(recorded.clone(), json!({"events": [ev("ADDED", "w-1"), ev("MODIFIED", "w-1")], "bookmarks_received": true})).is_match());
        let extra = cmp(
            recorded.clone(),
            json!({"events": [ev("ADDED", "w-1"), ev("MODIFIED", "w-1"), ev("DELETED", "w-1")], "bookmarks_received": true}),
        );
        assert_eq!(extra.differences.len(), 1);
        assert!(extra.differences[0].starts_with("$.events[2]: extra element"));
        let no_bookmark = cmp(
            recorded,
            json!({"events": [ev("ADDED", "w-1"), ev("MODIFIED", "w-1")], "bookmarks_received": false}),
        );
        assert_eq!(
            no_bookmark.differences,
            vec!["$.bookmarks_received: expected true, got false"]
        );
    }

    /// A concrete value of each placeholder's shape, to turn a recorded body into a plausible
    /// real answer.
    fn instantiate(v: &Value) -> Value {
        match v {
            Value::String(s) if s == "<nodePort>" => json!(30001),
            Value::String(s) => Value::String(
                TOKEN
                    .replace_all(s, |c: &regex::Captures| match &c[1] {
                        "uid" => "0b1e6f3a-2c4d-4e5f-8a9b-0c1d2e3f4a5b".to_string(),
                        "resourceVersion" => "123".into(),
                        "timestamp" => "2025-01-02T03:04:05Z".into(),
                        "microtime" => "2025-01-02T03:04:05.000006Z".into(),
                        "ip" => "10.96.0.1".into(),
                        "port" => "6443".into(),
                        "nodePort" => "30001".into(),
                        "token" => "aaa.bbb.ccc".into(),
                        "pem" => {
                            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()
                        }
                        "continue" => "eyJ2Ijoi".into(),
                        "version" => "v1.32.3".into(),
                        "age" => "5s".into(),
                        other => format!("{}x7k2q", other.trim_start_matches("generated-name:")),
                    })
                    .into_owned(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(instantiate).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), instantiate(v))).collect())
            }
            other => other.clone(),
        }
    }

    #[test]
    fn every_recorded_body_matches_a_concrete_instance_of_itself() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/conformance/kube-apiserver-v1.32.3.json");
        if !path.exists() {
            eprintln!("{} is absent: nothing to check", path.display());
            return;
        }
        let rec = crate::conformance::Recording::load(&path).unwrap();
        let responses = rec
            .steps
            .iter()
            .flat_map(|s| std::iter::once(&s.response).chain(s.during.iter().map(|d| &d.response)));
        for (i, response) in responses.enumerate() {
            let text = match &response.body {
                None => String::new(),
                Some(Value::String(s)) => instantiate(&json!(s)).as_str().unwrap().to_string(),
                Some(b) => instantiate(b).to_string(),
            };
            let answer = ReplayedAnswer {
                status: response.status,
                content_type: response.headers.content_type.clone(),
                warnings: response.headers.warning.clone(),
                json: serde_json::from_str(&text).ok(),
                text,
            };
            let out = compare_response(response, &answer);
            assert!(
                out.is_match() && out.notes.is_empty(),
                "response {i}: {out:?}"
            );
        }
    }

    fn recorded(
        status: u16,
        ct: Option<&str>,
        warnings: &[&str],
        body: Option<Value>,
    ) -> RecordedResponse {
        RecordedResponse {
            status,
            headers: RecordedHeaders {
                content_type: ct.map(str::to_string),
                warning: warnings.iter().map(|w| w.to_string()).collect(),
            },
            body,
        }
    }

    #[test]
    fn response_status_headers_and_bodies() {
        let text_404 = recorded(
            404,
            Some("text/plain; charset=utf-8"),
            &[],
            Some(json!("404 page not found\n")),
        );
        let ok = ReplayedAnswer {
            status: 404,
            content_type: Some("text/plain; charset=utf-8".into()),
            text: "404 page not found\n".into(),
            ..Default::default()
        };
        assert!(compare_response(&text_404, &ok).is_match());
        let json_404 = ReplayedAnswer {
            content_type: Some("application/json".into()),
            text: "{\"kind\":\"Status\"}".into(),
            json: Some(json!({"kind": "Status"})),
            ..ok.clone()
        };
        assert_eq!(compare_response(&text_404, &json_404).differences.len(), 2);

        let empty = recorded(204, None, &[], None);
        let ok = ReplayedAnswer {
            status: 204,
            ..Default::default()
        };
        assert!(compare_response(&empty, &ok).is_match());
        let not_empty = ReplayedAnswer {
            text: "x".into(),
            ..ok.clone()
        };
        assert!(!compare_response(&empty, &not_empty).is_match());
        let with_ct = ReplayedAnswer {
            content_type: Some("application/json".into()),
            ..ok
        };
        assert!(!compare_response(&empty, &with_ct).is_match());

        let warned = recorded(
            201,
            Some("application/json"),
            &["299 - \"unknown field \\\"bogus\\\"\""],
            Some(json!({"a": 1})),
        );
        let mut answer = ReplayedAnswer {
            status: 201,
            content_type: Some("application/json".into()),
            warnings: vec![
                "299 - \"unknown field \\\"bogus\\\"\"".into(),
                "299 - \"other\"".into(),
            ],
            text: "{\"a\":1}".into(),
            json: Some(json!({"a": 1})),
        };
        let out = compare_response(&warned, &answer);
        assert!(out.is_match(), "{out:?}");
        assert_eq!(out.notes.len(), 1);
        answer.warnings.clear();
        assert!(!compare_response(&warned, &answer).is_match());
        answer.warnings = vec!["299 - \"unknown field \\\"bogus\\\"\"".into()];
        answer.status = 200;
        assert_eq!(
            compare_response(&warned, &answer).differences,
            vec!["status: expected 201, got 200"]
        );
    }
}
