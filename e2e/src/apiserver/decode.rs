//! Request body decoding with kube-apiserver's error messages: media types (JSON, YAML,
//! protobuf), JSON syntax errors worded like Go's `encoding/json`, kind checks, type errors and
//! (strict or warning) unknown-field detection.
//!
//! Type checking walks the body through the typed k8s-openapi struct of the kind with a
//! purpose-built [`serde::Deserializer`] over the JSON value. k8s-openapi's generated visitors
//! skip unknown keys with `IgnoredAny`, so every `deserialize_ignored_any` the walker sees inside a
//! struct is an unknown field; a type mismatch is caught where the visitor asks for a type the
//! value does not have, with the Go struct name (from `deserialize_struct`) and field path Go's
//! `UnmarshalTypeError` reports. The stored object is the client's JSON minus unknown fields: it
//! is never re-serialised through the typed struct, whose empty-value rules differ from Go's.

use std::cell::RefCell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Expected, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::errors::ApiError;
use super::protobuf;
use super::resources::{RESOURCES, ResourceDef};

/// The media types a create or update body may have, as kube-apiserver lists them.
const ACCEPTED: &str = "application/json, application/yaml, application/vnd.kubernetes.protobuf";

/// Parse a create/update body by content type into JSON.
///
/// Protobuf bodies (`application/vnd.kubernetes.protobuf`, as client-go's typed clients send)
/// are converted to the JSON the same object would have had.
pub fn parse_body(content_type: &str, body: &[u8], def: &ResourceDef) -> Result<Value, ApiError> {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/json" | "" => parse_json(body, def),
        "application/yaml" => {
            let v: Value = serde_saphyr::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!("error converting YAML to JSON: {e}"))
            })?;
            if !v.is_object() {
                return Err(unrecognized(
                    def,
                    "couldn't get version/kind; json parse error: json: cannot unmarshal into Go value of type struct",
                    body,
                ));
            }
            Ok(v)
        }
        "application/vnd.kubernetes.protobuf" => protobuf::decode(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type {}): {e}",
                def.kind
            ))
        }),
        _ => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {ACCEPTED}"
            ),
            None,
        )),
    }
}

fn parse_json(body: &[u8], def: &ResourceDef) -> Result<Value, ApiError> {
    if let Err(msg) = go_json_syntax(body) {
        return Err(unrecognized(
            def,
            &format!("couldn't get version/kind; json parse error: {msg}"),
            body,
        ));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        unrecognized(
            def,
            &format!(
                "couldn't get version/kind; json parse error: {}",
                go_json_error(&e, body)
            ),
            body,
        )
    })?;
    if !v.is_object() {
        let what = go_value_kind(&v);
        return Err(unrecognized(
            def,
            &format!(
                "couldn't get version/kind; json parse error: json: cannot unmarshal {what} into Go value of type struct {{ APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }}"
            ),
            body,
        ));
    }
    Ok(v)
}

fn unrecognized(def: &ResourceDef, why: &str, body: &[u8]) -> ApiError {
    ApiError::bad_request(format!(
        "the object provided is unrecognized (must be of type {}): {why} ({})",
        def.kind,
        preview(body)
    ))
}

/// The first bytes of a body as apimachinery quotes them in errors (30 bytes, then ` ...`).
fn preview(body: &[u8]) -> String {
    if body.len() > 30 {
        format!("{} ...", String::from_utf8_lossy(&body[..30]))
    } else {
        String::from_utf8_lossy(body).into_owned()
    }
}

/// Go's `encoding/json` wording for a JSON error (syntax errors are re-derived from the body).
pub fn go_json_error(e: &serde_json::Error, body: &[u8]) -> String {
    match go_json_syntax(body) {
        Err(msg) => msg,
        Ok(()) if e.is_eof() => "unexpected end of JSON input".to_string(),
        Ok(()) => e.to_string(),
    }
}

/// Go's `quoteChar`.
fn quote_char(c: u8) -> String {
    match c {
        b'\'' => "'\\''".to_string(),
        b'"' => "'\"'".to_string(),
        c if c.is_ascii_graphic() || c == b' ' => format!("'{}'", c as char),
        b'\n' => "'\\n'".to_string(),
        b'\t' => "'\\t'".to_string(),
        b'\r' => "'\\r'".to_string(),
        c if c < 0x80 => format!("'\\x{c:02x}'"),
        _ => "'\\ufffd'".to_string(),
    }
}

/// A syntax check with the messages of Go's JSON scanner (`invalid character 'x' looking for
/// beginning of value`, `unexpected end of JSON input`, ...).
pub fn go_json_syntax(b: &[u8]) -> Result<(), String> {
    struct P<'a> {
        b: &'a [u8],
        i: usize,
    }
    type R = Result<(), String>;
    const EOF: &str = "unexpected end of JSON input";
    impl P<'_> {
        fn ws(&mut self) {
            while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            }
        }
        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }
        fn err(&self, c: u8, ctx: &str) -> String {
            format!("invalid character {} {ctx}", quote_char(c))
        }
        fn value(&mut self) -> R {
            self.ws();
            let Some(c) = self.peek() else {
                return Err(EOF.into());
            };
            match c {
                b'{' => self.object(),
                b'[' => self.array(),
                b'"' => self.string(),
                b'-' | b'0'..=b'9' => self.number(),
                b't' => self.literal("true"),
                b'f' => self.literal("false"),
                b'n' => self.literal("null"),
                c => Err(self.err(c, "looking for beginning of value")),
            }
        }
        fn literal(&mut self, lit: &str) -> R {
            for (k, want) in lit.bytes().enumerate() {
                match self.peek() {
                    None => return Err(EOF.into()),
                    Some(c) if c == want => self.i += 1,
                    Some(c) => {
                        return Err(self.err(
                            c,
                            &format!(
                                "in literal {lit} (expecting {})",
                                quote_char(lit.as_bytes()[k])
                            ),
                        ));
                    }
                }
            }
            Ok(())
        }
        fn number(&mut self) -> R {
            if self.peek() == Some(b'-') {
                self.i += 1;
                match self.peek() {
                    None => return Err(EOF.into()),
                    Some(b'0'..=b'9') => {}
                    Some(c) => return Err(self.err(c, "in numeric literal")),
                }
            }
            if self.peek() == Some(b'0') {
                self.i += 1;
            } else {
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
            }
            if self.peek() == Some(b'.') {
                self.i += 1;
                match self.peek() {
                    None => return Err(EOF.into()),
                    Some(b'0'..=b'9') => {}
                    Some(c) => return Err(self.err(c, "after decimal point in numeric literal")),
                }
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
            }
            if matches!(self.peek(), Some(b'e' | b'E')) {
                self.i += 1;
                if matches!(self.peek(), Some(b'+' | b'-')) {
                    self.i += 1;
                }
                match self.peek() {
                    None => return Err(EOF.into()),
                    Some(b'0'..=b'9') => {}
                    Some(c) => return Err(self.err(c, "in exponent of numeric literal")),
                }
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
            }
            Ok(())
        }
        fn string(&mut self) -> R {
            self.i += 1;
            loop {
                let Some(c) = self.peek() else {
                    return Err(EOF.into());
                };
                self.i += 1;
                match c {
                    b'"' => return Ok(()),
                    b'\\' => {
                        let Some(e) = self.peek() else {
                            return Err(EOF.into());
                        };
                        self.i += 1;
                        match e {
                            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                            b'u' => {
                                for _ in 0..4 {
                                    match self.peek() {
                                        None => return Err(EOF.into()),
                                        Some(h) if h.is_ascii_hexdigit() => self.i += 1,
                                        Some(h) => {
                                            return Err(
                                                self.err(h, "in \\u hexadecimal character escape")
                                            );
                                        }
                                    }
                                }
                            }
                            e => return Err(self.err(e, "in string escape code")),
                        }
                    }
                    c if c < 0x20 => return Err(self.err(c, "in string literal")),
                    _ => {}
                }
            }
        }
        fn object(&mut self) -> R {
            self.i += 1;
            self.ws();
            if self.peek() == Some(b'}') {
                self.i += 1;
                return Ok(());
            }
            loop {
                self.ws();
                match self.peek() {
                    None => return Err(EOF.into()),
                    Some(b'"') => self.string()?,
                    Some(c) => {
                        return Err(self.err(c, "looking for beginning of object key string"));
                    }
                }
                self.ws();
                match self.peek() {
                    None => return Err(EOF.into()),
                    Some(b':') => self.i += 1,
                    Some(c) => return Err(self.err(c, "after object key")),
                }
                self.value()?;
                self.ws();
                match self.peek() {
                    None => return Err(EOF.into()),
                    Some(b',') => self.i += 1,
                    Some(b'}') => {
                        self.i += 1;
                        return Ok(());
                    }
                    Some(c) => return Err(self.err(c, "after object key:value pair")),
                }
            }
        }
        fn array(&mut self) -> R {
            self.i += 1;
            self.ws();
            if self.peek() == Some(b']') {
                self.i += 1;
                return Ok(());
            }
            loop {
                self.value()?;
                self.ws();
                match self.peek() {
                    None => return Err(EOF.into()),
                    Some(b',') => self.i += 1,
                    Some(b']') => {
                        self.i += 1;
                        return Ok(());
                    }
                    Some(c) => return Err(self.err(c, "after array element")),
                }
            }
        }
    }
    let mut p = P { b, i: 0 };
    p.value()?;
    p.ws();
    match p.peek() {
        None => Ok(()),
        Some(c) => Err(p.err(c, "after top-level value")),
    }
}

/// How Go's `UnmarshalTypeError` names a JSON value.
fn go_value_kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

/// Go's internal (hub) package name of a group, as it appears in conversion errors.
fn internal_package(group: &str) -> &str {
    match group {
        "" | "events.k8s.io" => "core",
        g => g.split('.').next().unwrap_or(g),
    }
}

/// Check kind/apiVersion against the target, type-check the body against the kind's schema and
/// detect unknown fields according to `field_validation` (`Strict`, `Warn` (default) or
/// `Ignore`). Returns the object with unknown fields removed (kube-apiserver prunes them by
/// decoding into its typed struct) and the `Warning` header values to send.
pub fn check_typed(
    def: &ResourceDef,
    obj: Value,
    field_validation: &str,
) -> Result<(Value, Vec<String>), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {})",
            def.kind
        )));
    }
    let kind = obj["kind"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or(def.kind)
        .to_string();
    let api_version = obj["apiVersion"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| def.api_version());
    let (group, version) = match api_version.rsplit_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.clone()),
    };
    let cannot = |why: &str| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {}: {why}",
            def.kind
        ))
    };
    if kind != def.kind || api_version != def.api_version() {
        let body_def = RESOURCES
            .iter()
            .find(|r| r.kind == kind && r.api_version() == api_version);
        match body_def {
            // Two views of the same storage (core and events.k8s.io Events) convert into each other.
            Some(b) if b.storage == def.storage => {}
            Some(_) => {
                return Err(cannot(&format!(
                    "converting ({version}.{kind}) to ({}.{}): unknown conversion",
                    internal_package(def.group),
                    def.kind
                )));
            }
            None if RESOURCES.iter().any(|r| r.kind == kind && r.group == group) => {
                return Err(ApiError::bad_request(format!(
                    "no kind \"{kind}\" is registered for version \"{api_version}\" in scheme \"pkg/api/legacyscheme/scheme.go:30\""
                )));
            }
            None => {
                return Err(ApiError::bad_request(format!(
                    "no kind \"{kind}\" is registered for version \"{api_version}\" in scheme \"pkg/api/legacyscheme/scheme.go:30\""
                )));
            }
        }
    }
    let report = probe(def, &obj);
    if let Some(e) = report.error {
        return Err(cannot(&e));
    }
    let mut obj = obj;
    if report.unknown.is_empty() {
        return Ok((obj, Vec::new()));
    }
    let names: Vec<String> = report
        .unknown
        .iter()
        .map(|p| format!("unknown field \"{}\"", render_path(p)))
        .collect();
    if field_validation == "Strict" {
        return Err(cannot(&format!(
            "strict decoding error: {}",
            names.join(", ")
        )));
    }
    for p in &report.unknown {
        remove_path(&mut obj, p);
    }
    let warnings = if field_validation == "Ignore" {
        Vec::new()
    } else {
        names
            .iter()
            .map(|n| format!("299 - {}", serde_json::to_string(n).unwrap_or_default()))
            .collect()
    };
    Ok((obj, warnings))
}

/// One step of a path into a JSON document.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn render_path(p: &[Seg]) -> String {
    let mut s = String::new();
    for seg in p {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn remove_path(v: &mut Value, p: &[Seg]) {
    let Some((last, parents)) = p.split_last() else {
        return;
    };
    let mut cur = v;
    for seg in parents {
        let next = match seg {
            Seg::Key(k) => cur.get_mut(k.as_str()),
            Seg::Index(i) => cur.get_mut(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let (Seg::Key(k), Some(m)) = (last, cur.as_object_mut()) {
        m.shift_remove(k);
    }
}

/// What the typed walk found.
#[derive(Debug, Default)]
struct Report {
    unknown: Vec<Vec<Seg>>,
    /// The first type error, worded like Go's `UnmarshalTypeError` / base64 errors.
    error: Option<String>,
}

/// Walk `obj` through the k8s-openapi type of `def`.
fn probe(def: &ResourceDef, obj: &Value) -> Report {
    use k8s_openapi::api::{
        coordination, core, discovery, events, networking, node, scheduling, storage,
    };
    // Go treats `null` as "leave unset" for every field; k8s-openapi rejects it for required
    // fields, so the walk sees the body without nulls.
    let clean = strip_nulls(obj);
    let ctx = RefCell::new(Report::default());
    let de = De {
        v: &clean,
        ctx: &ctx,
        path: Vec::new(),
        go_struct: "",
        go_fields: Vec::new(),
        struct_field: false,
    };
    macro_rules! walk {
        ($t:ty) => {{
            let _ = <$t>::deserialize(de);
        }};
    }
    match (def.group, def.kind) {
        ("", "ConfigMap") => walk!(core::v1::ConfigMap),
        ("", "Endpoints") => walk!(core::v1::Endpoints),
        ("", "Event") => walk!(core::v1::Event),
        ("", "LimitRange") => walk!(core::v1::LimitRange),
        ("", "Namespace") => walk!(core::v1::Namespace),
        ("", "Node") => walk!(core::v1::Node),
        ("", "PersistentVolumeClaim") => walk!(core::v1::PersistentVolumeClaim),
        ("", "PersistentVolume") => walk!(core::v1::PersistentVolume),
        ("", "Pod") => walk!(core::v1::Pod),
        ("", "ResourceQuota") => walk!(core::v1::ResourceQuota),
        ("", "Secret") => walk!(core::v1::Secret),
        ("", "ServiceAccount") => walk!(core::v1::ServiceAccount),
        ("", "Service") => walk!(core::v1::Service),
        ("coordination.k8s.io", "Lease") => walk!(coordination::v1::Lease),
        ("discovery.k8s.io", "EndpointSlice") => walk!(discovery::v1::EndpointSlice),
        ("events.k8s.io", "Event") => walk!(events::v1::Event),
        ("networking.k8s.io", "IngressClass") => walk!(networking::v1::IngressClass),
        ("networking.k8s.io", "Ingress") => walk!(networking::v1::Ingress),
        ("networking.k8s.io", "NetworkPolicy") => walk!(networking::v1::NetworkPolicy),
        ("node.k8s.io", "RuntimeClass") => walk!(node::v1::RuntimeClass),
        ("scheduling.k8s.io", "PriorityClass") => walk!(scheduling::v1::PriorityClass),
        ("storage.k8s.io", "StorageClass") => walk!(storage::v1::StorageClass),
        _ => {}
    }
    ctx.into_inner()
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        v => v.clone(),
    }
}

/// Decode base64 exactly like Go's `base64.StdEncoding.Decode` (newlines skipped, padding
/// required, trailing bits ignored), with its `illegal base64 data at input byte N` errors.
pub fn go_base64_decode(src: &[u8]) -> Result<Vec<u8>, String> {
    fn val(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let corrupt = |n: usize| format!("illegal base64 data at input byte {n}");
    let mut out = Vec::with_capacity(src.len() * 3 / 4);
    let mut si = 0usize;
    while si < src.len() {
        let mut dbuf = [0u8; 4];
        let mut dlen = 4usize;
        let mut j = 0usize;
        let mut end = false;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(out);
                }
                // Standard encoding requires padding: a short final quantum is corrupt.
                return Err(corrupt(si - j));
            }
            let c = src[si];
            si += 1;
            if let Some(v) = val(c) {
                dbuf[j] = v;
                j += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != b'=' {
                return Err(corrupt(si - 1));
            }
            match j {
                0 | 1 => return Err(corrupt(si - 1)),
                2 => {
                    while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
                        si += 1;
                    }
                    if si == src.len() {
                        return Err(corrupt(src.len()));
                    }
                    if src[si] != b'=' {
                        return Err(corrupt(si - 1));
                    }
                    si += 1;
                }
                _ => {}
            }
            while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
                si += 1;
            }
            if si < src.len() {
                return Err(corrupt(si));
            }
            dlen = j;
            end = true;
            break;
        }
        let n = (u32::from(dbuf[0]) << 18)
            | (u32::from(dbuf[1]) << 12)
            | (u32::from(dbuf[2]) << 6)
            | u32::from(dbuf[3]);
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..dlen - 1]);
        if end {
            break;
        }
    }
    Ok(out)
}

/// Errors of the walk: a message for visitors' own errors; type errors are recorded in the
/// [`Report`] before one of these aborts the walk.
#[derive(Debug)]
struct WalkError(String);

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WalkError {}

impl de::Error for WalkError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WalkError(msg.to_string())
    }
}

/// A deserializer over a JSON value that records unknown fields and Go-worded type errors.
struct De<'a> {
    v: &'a Value,
    ctx: &'a RefCell<Report>,
    /// JSON path of `v` (for unknown-field names).
    path: Vec<Seg>,
    /// Innermost Go struct being decoded and the struct-field names leading to `v` (for
    /// `UnmarshalTypeError`, which skips map keys and slice indices).
    go_struct: &'static str,
    go_fields: Vec<String>,
    /// Whether `v` is the value of a field of a struct (an ignored value there is an unknown field).
    struct_field: bool,
}

impl<'a> De<'a> {
    fn child(
        &self,
        v: &'a Value,
        seg: Seg,
        go_struct: &'static str,
        go_field: Option<&str>,
        struct_field: bool,
    ) -> De<'a> {
        let mut path = self.path.clone();
        path.push(seg);
        let mut go_fields = self.go_fields.clone();
        if let Some(f) = go_field {
            go_fields.push(f.to_string());
        }
        De {
            v,
            ctx: self.ctx,
            path,
            go_struct,
            go_fields,
            struct_field,
        }
    }

    fn type_error(&self, go_type: &str) -> WalkError {
        let mut value = go_value_kind(self.v);
        if let (Value::Number(n), true) = (
            self.v,
            go_type.starts_with("int") || go_type.starts_with("uint"),
        ) {
            value = format!("number {n}");
        }
        let msg = if self.go_struct.is_empty() {
            format!("json: cannot unmarshal {value} into Go value of type {go_type}")
        } else {
            format!(
                "json: cannot unmarshal {value} into Go struct field {}.{} of type {go_type}",
                self.go_struct,
                self.go_fields.join(".")
            )
        };
        self.fail(msg)
    }

    fn fail(&self, msg: String) -> WalkError {
        let mut ctx = self.ctx.borrow_mut();
        if ctx.error.is_none() {
            ctx.error = Some(msg.clone());
        }
        WalkError(msg)
    }

    fn int<V: Visitor<'a>>(self, go_type: &str, visitor: V) -> Result<V::Value, WalkError> {
        match self.v {
            Value::Number(n) if n.is_i64() => visitor.visit_i64(n.as_i64().unwrap_or_default()),
            Value::Number(n) if n.is_u64() => visitor.visit_u64(n.as_u64().unwrap_or_default()),
            _ => Err(self.type_error(go_type)),
        }
    }
}

macro_rules! ints {
    ($($m:ident => $t:literal),*) => {
        $(fn $m<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, WalkError> {
            self.int($t, visitor)
        })*
    };
}

impl<'a> de::Deserializer<'a> for De<'a> {
    type Error = WalkError;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, WalkError> {
        match self.v {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_u64() {
                    visitor.visit_u64(i)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or_default())
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(_) => self.deserialize_seq(visitor),
            Value::Object(_) => self.deserialize_map(visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, WalkError> {
        match self.v {
            Value::Bool(b) => visitor.visit_bool(*b),
            _ => Err(self.type_error("bool")),
        }
    }

    ints!(deserialize_i8 => "int8", deserialize_i16 => "int16", deserialize_i32 => "int32", deserialize_i64 => "int64",
          deserialize_u8 => "uint8", deserialize_u16 => "uint16", deserialize_u32 => "uint32", deserialize_u64 => "uint64");

    fn deserialize_f32<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, WalkError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, WalkError> {
        match self.v {
            Value::Number(n) => visitor.visit_f64(n.as_f64().unwrap_or_default()),
            _ => Err(self.type_error("float64")),
        }
    }

    fn deserialize_char<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, WalkError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, WalkError> {
        let Value::String(s) = self.v else {
            let go_type = if format!("{}", &visitor as &dyn Expected) == "a base64-encoded string" {
                "[]uint8"
            } else {
                "string"
            };
            return Err(self.type_error(go_type));
        };
        if format!("{}", &visitor as &dyn Expected) == "a base64-encoded string" {
            // Go's decoder is laxer than the base64 crate (newlines, trailing bits): decode the Go
            // way and hand the visitor a canonical encoding.
            let bytes = go_base64_decode(s.as_bytes()).map_err(|e| self.fail(e))?;
            use base64::Engine;
            return visitor.visit_string(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
        visitor.visit_borrowed_str(s)
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, WalkError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, WalkError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, WalkError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, WalkError> {
        match self.v {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, WalkError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        match (name, self.v) {
            // Go's resource.Quantity also accepts JSON numbers.
            ("Quantity", Value::Number(n)) => {
                visitor.visit_newtype_struct(n.to_string().into_deserializer())
            }
            ("Quantity", Value::String(_)) => visitor.visit_newtype_struct(self),
            ("Quantity", _) => Err(self.type_error("resource.Quantity")),
            _ => visitor.visit_newtype_struct(self),
        }
    }

    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, WalkError> {
        match self.v {
            Value::Array(a) => visitor.visit_seq(Seq {
                de: &self,
                items: a.iter().enumerate(),
            }),
            _ => Err(self.type_error("[]string")),
        }
    }

    fn deserialize_tuple<V: Visitor<'a>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, WalkError> {
        match self.v {
            Value::Object(m) => visitor.visit_map(Map {
                de: &self,
                entries: m.iter(),
                pending: None,
                struct_name: None,
            }),
            _ => Err(self.type_error("map[string]string")),
        }
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        match self.v {
            Value::Object(m) => visitor.visit_map(Map {
                de: &self,
                entries: m.iter(),
                pending: None,
                struct_name: Some(name),
            }),
            _ => Err(self.type_error(&format!("v1.{name}"))),
        }
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, WalkError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, WalkError> {
        if self.struct_field {
            self.ctx.borrow_mut().unknown.push(self.path.clone());
        }
        visitor.visit_unit()
    }
}

struct Seq<'a, 'b> {
    de: &'b De<'a>,
    items: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
}

impl<'a> SeqAccess<'a> for Seq<'a, '_> {
    type Error = WalkError;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, WalkError> {
        match self.items.next() {
            Some((i, v)) => seed
                .deserialize(
                    self.de
                        .child(v, Seg::Index(i), self.de.go_struct, None, false),
                )
                .map(Some),
            None => Ok(None),
        }
    }
}

struct Map<'a, 'b> {
    de: &'b De<'a>,
    entries: serde_json::map::Iter<'a>,
    pending: Option<(&'a String, &'a Value)>,
    /// `Some` when the map is a struct (its keys are field names).
    struct_name: Option<&'static str>,
}

impl<'a> MapAccess<'a> for Map<'a, '_> {
    type Error = WalkError;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, WalkError> {
        match self.entries.next() {
            Some((k, v)) => {
                self.pending = Some((k, v));
                seed.deserialize(de::value::BorrowedStrDeserializer::new(k))
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, WalkError> {
        let (k, v) = self
            .pending
            .take()
            .ok_or_else(|| WalkError("value without key".into()))?;
        let child = match self.struct_name {
            Some(name) => self.de.child(v, Seg::Key(k.clone()), name, Some(k), true),
            None => self
                .de
                .child(v, Seg::Key(k.clone()), self.de.go_struct, None, false),
        };
        seed.deserialize(child)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn def(group: &str, kind: &str) -> &'static ResourceDef {
        RESOURCES
            .iter()
            .find(|r| r.group == group && r.kind == kind)
            .expect("served kind")
    }

    fn message(e: &ApiError) -> String {
        e.body["message"].as_str().unwrap_or_default().to_string()
    }

    #[test]
    fn malformed_json_is_worded_like_go_with_a_preview() {
        let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"#;
        let e = parse_body("application/json", body, def("", "ConfigMap")).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            message(&e),
            "the object provided is unrecognized (must be of type ConfigMap): couldn't get version/kind; json parse error: unexpected end of JSON input ({\"apiVersion\":\"v1\",\"kind\":\"Con ...)"
        );
    }

    #[rstest]
    #[case(b"{\"a\":}", "invalid character '}' looking for beginning of value")]
    #[case(b"{\"a\" 1}", "invalid character '1' after object key")]
    #[case(
        b"{\"a\":1 \"b\"}",
        "invalid character '\"' after object key:value pair"
    )]
    #[case(b"[1 2]", "invalid character '2' after array element")]
    #[case(
        b"{a:1}",
        "invalid character 'a' looking for beginning of object key string"
    )]
    #[case(b"tru", "unexpected end of JSON input")]
    #[case(b"trux", "invalid character 'x' in literal true (expecting 'e')")]
    #[case(b"{} x", "invalid character 'x' after top-level value")]
    #[case(b"-x", "invalid character 'x' in numeric literal")]
    fn go_syntax_errors(#[case] body: &[u8], #[case] want: &str) {
        assert_eq!(go_json_syntax(body).unwrap_err(), want);
    }

    #[test]
    fn valid_json_passes_the_syntax_check() {
        go_json_syntax(br#" {"a": [1, -2.5e3, "x\u00e9\n", true, false, null, {}]} "#).unwrap();
    }

    #[test]
    fn text_plain_is_415() {
        let e = parse_body("text/plain", b"name: x", def("", "ConfigMap")).unwrap_err();
        assert_eq!(e.code, 415);
        assert_eq!(e.body["reason"], "UnsupportedMediaType");
        assert_eq!(
            message(&e),
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"
        );
    }

    #[test]
    fn wrong_type_names_the_go_struct_field() {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "wt"}, "data": {"a": 1}});
        let e = check_typed(def("", "ConfigMap"), body, "Warn").unwrap_err();
        assert_eq!(
            message(&e),
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal number into Go struct field ConfigMap.data of type string"
        );
    }

    #[test]
    fn nested_type_errors_name_the_innermost_struct() {
        let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": 1, "image": "x"}]}});
        let e = check_typed(def("", "Pod"), body, "Warn").unwrap_err();
        assert_eq!(
            message(&e),
            "Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal number into Go struct field Container.spec.containers.name of type string"
        );
    }

    #[test]
    fn strict_rejects_unknown_fields() {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "uf", "bogus2": 2}, "bogus": 1});
        let e = check_typed(def("", "ConfigMap"), body, "Strict").unwrap_err();
        assert_eq!(
            message(&e),
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"metadata.bogus2\", unknown field \"bogus\""
        );
    }

    #[test]
    fn warn_drops_unknown_fields_with_a_warning() {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "uf-warn"}, "bogus": 1, "data": {"k": "v"}});
        let (obj, warnings) = check_typed(def("", "ConfigMap"), body, "Warn").unwrap();
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "uf-warn"}, "data": {"k": "v"}})
        );
        assert_eq!(
            warnings,
            vec!["299 - \"unknown field \\\"bogus\\\"\"".to_string()]
        );
    }

    #[test]
    fn unknown_fields_inside_lists_are_indexed_and_ignore_is_silent() {
        let body = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x", "zzz": true}]}});
        let (obj, warnings) = check_typed(def("", "Pod"), body.clone(), "Warn").unwrap();
        assert_eq!(
            warnings,
            vec!["299 - \"unknown field \\\"spec.containers[0].zzz\\\"\"".to_string()]
        );
        assert!(obj["spec"]["containers"][0].get("zzz").is_none());
        let (_, warnings) = check_typed(def("", "Pod"), body, "Ignore").unwrap();
        assert!(warnings.is_empty());
    }

    #[test]
    fn known_fields_nulls_and_quantities_pass() {
        let body = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "labels": null, "creationTimestamp": null},
            "spec": {"containers": [{"name": "a", "image": "x", "resources": {"limits": {"cpu": 1, "memory": "1Gi"}}, "ports": [{"containerPort": 80}]}]}});
        let (obj, warnings) = check_typed(def("", "Pod"), body.clone(), "Strict").unwrap();
        assert!(warnings.is_empty());
        assert_eq!(obj, body);
    }

    #[test]
    fn kind_mismatch_is_an_unknown_conversion() {
        let body =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf-kind"}});
        let e = check_typed(def("", "Namespace"), body, "Warn").unwrap_err();
        assert_eq!(
            message(&e),
            "ConfigMap in version \"v1\" cannot be handled as a Namespace: converting (v1.ConfigMap) to (core.Namespace): unknown conversion"
        );
    }

    #[test]
    fn secret_bad_base64_is_reported_at_the_go_offset() {
        let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s-bad"}, "data": {"k": "not base64!"}});
        let e = check_typed(def("", "Secret"), body, "Warn").unwrap_err();
        assert_eq!(
            message(&e),
            "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 3"
        );
    }

    #[rstest]
    #[case("aGVsbG8=", Ok(b"hello".to_vec()))]
    #[case("aGVs\nbG8=", Ok(b"hello".to_vec()))]
    #[case("aGVsbA==", Ok(b"hell".to_vec()))]
    #[case("", Ok(Vec::new()))]
    #[case("abc", Err(0))]
    #[case("a===", Err(1))]
    #[case("aGVsbG8=x", Err(8))]
    #[case("not base64!", Err(3))]
    fn go_base64(#[case] input: &str, #[case] want: Result<Vec<u8>, usize>) {
        let got = go_base64_decode(input.as_bytes());
        match want {
            Ok(bytes) => assert_eq!(got.unwrap(), bytes),
            Err(n) => assert_eq!(
                got.unwrap_err(),
                format!("illegal base64 data at input byte {n}")
            ),
        }
    }

    #[test]
    fn yaml_bodies_parse() {
        let v = parse_body(
            "application/yaml",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-y\n",
            def("", "ConfigMap"),
        )
        .unwrap();
        assert_eq!(v["metadata"]["name"], "cm-y");
    }
}
