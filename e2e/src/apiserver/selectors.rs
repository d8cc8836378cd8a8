//! Label and field selectors: parsing (with kube-apiserver's error messages) and matching.
//!
//! Label selectors follow apimachinery's `labels.Parse` (v1.32): a byte lexer, a recursive
//! descent parser with the same lookahead quirks (`in`/`notin` are plain identifiers where a
//! value is expected), the same key/value validation and the same error strings, including the
//! odd `<nil>:` field path of a key error.
//!
//! Field selectors follow `fields.ParseSelector` (comma split with `\` escapes, `!=`/`==`/`=`,
//! value unescaping) plus the per-kind field label conversion kube-apiserver runs on every term
//! (`AddFieldLabelConversionFunc` in `pkg/apis/*/*/conversion.go`). Matching reads the value a
//! kind's `ToSelectableFields` (`pkg/registry/*/strategy.go`) would report, computed from the
//! served JSON; a label the kind accepts but never reports (pods' `status.podIPs`) reads as
//! `""`, exactly like `fields.Set.Get`.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use super::errors::ApiError;

// ---------------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------------

/// A label selector operator (apimachinery's `selection.Operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelOp {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One parsed requirement: `key op values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    /// The label key (a validated qualified name).
    pub key: String,
    /// How the label's value is compared with `values`.
    pub op: LabelOp,
    /// Sorted and deduplicated, as `sets.String.List()` returns them.
    pub values: Vec<String>,
}

impl LabelRequirement {
    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        // Labels are validated as strings on write; anything else is treated as an empty value.
        let got = labels
            .and_then(|l| l.get(&self.key))
            .map(|v| v.as_str().unwrap_or(""));
        match self.op {
            LabelOp::In | LabelOp::Equals | LabelOp::DoubleEquals => {
                got.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            // A missing label satisfies `!=` and `notin`.
            LabelOp::NotIn | LabelOp::NotEquals => {
                got.is_none_or(|v| !self.values.iter().any(|x| x == v))
            }
            LabelOp::Exists => got.is_some(),
            LabelOp::DoesNotExist => got.is_none(),
            LabelOp::GreaterThan | LabelOp::LessThan => {
                let Some(Ok(have)) = got.map(str::parse::<i64>) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.op == LabelOp::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for LabelRequirement {
    /// apimachinery's `Requirement.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.op == LabelOp::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let (op, parens) = match self.op {
            LabelOp::Exists | LabelOp::DoesNotExist => return Ok(()),
            LabelOp::Equals => ("=", false),
            LabelOp::DoubleEquals => ("==", false),
            LabelOp::NotEquals => ("!=", false),
            LabelOp::In => (" in ", true),
            LabelOp::NotIn => (" notin ", true),
            LabelOp::GreaterThan => (">", false),
            LabelOp::LessThan => ("<", false),
        };
        f.write_str(op)?;
        if parens {
            f.write_str("(")?;
        }
        f.write_str(&self.values.join(","))?;
        if parens {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed label selector: the AND of its requirements (sorted by key, as apimachinery does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<LabelRequirement>,
}

impl LabelSelector {
    /// Parse like `labels.Parse`; errors are the 400 `BadRequest` kube-apiserver answers.
    pub fn parse(s: &str) -> Result<LabelSelector, ApiError> {
        parse_labels(s).map_err(ApiError::bad_request)
    }

    /// Whether every requirement holds for `labels` (`None` = the object has no labels).
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.reqs.iter().all(|r| r.matches(labels))
    }

    /// True when the selector does not restrict anything (empty or blank string).
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// The parsed requirements, sorted by key.
    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.reqs
    }
}

impl fmt::Display for LabelSelector {
    /// apimachinery's canonical `Selector.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.reqs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn literal_token(s: &[u8]) -> Option<Tok> {
    Some(match s {
        b")" => Tok::ClosedPar,
        b"," => Tok::Comma,
        b"!" => Tok::DoesNotExist,
        b"==" => Tok::DoubleEquals,
        b"=" => Tok::Equals,
        b">" => Tok::GreaterThan,
        b"in" => Tok::In,
        b"<" => Tok::LessThan,
        b"!=" => Tok::NotEquals,
        b"notin" => Tok::NotIn,
        b"(" => Tok::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Byte lexer mirroring apimachinery's: byte 0 doubles as "end of input", so a NUL in the
/// selector behaves there exactly as it does in Go.
struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn read(&mut self) -> u8 {
        match self.s.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0,
        }
    }

    fn unread(&mut self) {
        self.pos -= 1;
    }

    fn scan_id_or_keyword(&mut self) -> (Tok, String) {
        let mut buf = Vec::new();
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if is_special(ch) || is_whitespace(ch) {
                self.unread();
                break;
            }
            buf.push(ch);
        }
        let tok = literal_token(&buf).unwrap_or(Tok::Identifier);
        // Splits only happen at ASCII bytes, so the pieces of valid UTF-8 stay valid.
        (tok, String::from_utf8_lossy(&buf).into_owned())
    }

    fn scan_special(&mut self) -> (Tok, String) {
        let mut buf = Vec::new();
        let mut last: Option<(Tok, usize)> = None;
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if !is_special(ch) {
                self.unread();
                break;
            }
            buf.push(ch);
            if let Some(t) = literal_token(&buf) {
                last = Some((t, buf.len()));
            } else if last.is_some() {
                self.unread();
                break;
            }
        }
        match last {
            Some((t, n)) => (t, String::from_utf8_lossy(&buf[..n]).into_owned()),
            None => (
                Tok::Error,
                format!(
                    "error expected: keyword found '{}'",
                    String::from_utf8_lossy(&buf)
                ),
            ),
        }
    }

    fn lex(&mut self) -> (Tok, String) {
        let mut ch = self.read();
        while is_whitespace(ch) {
            ch = self.read();
        }
        if ch == 0 {
            return (Tok::EndOfString, String::new());
        }
        self.unread();
        if is_special(ch) {
            self.scan_special()
        } else {
            self.scan_id_or_keyword()
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Tok, String)>,
    pos: usize,
}

impl Parser {
    fn new(s: &str) -> Self {
        let mut lexer = Lexer {
            s: s.as_bytes(),
            pos: 0,
        };
        let mut items = Vec::new();
        loop {
            let (t, l) = lexer.lex();
            items.push((t, l));
            if t == Tok::EndOfString {
                break;
            }
        }
        Parser { items, pos: 0 }
    }

    fn item(&self, i: usize, ctx: Ctx) -> (Tok, String) {
        // The grammar never reads past EndOfString; clamp anyway instead of panicking.
        let (t, l) = self
            .items
            .get(i)
            .cloned()
            .unwrap_or((Tok::EndOfString, String::new()));
        // Where a value is expected, `in` and `notin` are ordinary identifiers.
        match (ctx, t) {
            (Ctx::Values, Tok::In | Tok::NotIn) => (Tok::Identifier, l),
            _ => (t, l),
        }
    }

    fn lookahead(&self, ctx: Ctx) -> (Tok, String) {
        self.item(self.pos, ctx)
    }

    fn consume(&mut self, ctx: Ctx) -> (Tok, String) {
        let r = self.item(self.pos, ctx);
        self.pos += 1;
        r
    }

    fn parse(&mut self) -> Result<Vec<LabelRequirement>, String> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Ctx::Values);
            match tok {
                Tok::Identifier | Tok::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    let (t, l) = self.consume(Ctx::Values);
                    match t {
                        Tok::EndOfString => return Ok(reqs),
                        Tok::Comma => {
                            let (t2, l2) = self.lookahead(Ctx::Values);
                            if t2 != Tok::Identifier && t2 != Tok::DoesNotExist {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => return Err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Tok::EndOfString => return Ok(reqs),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<LabelRequirement, String> {
        let (key, op) = self.parse_key_and_infer_operator()?;
        if let Some(op @ (LabelOp::Exists | LabelOp::DoesNotExist)) = op {
            return new_requirement(key, op, Vec::new());
        }
        let op = self.parse_operator()?;
        let values = match op {
            LabelOp::In | LabelOp::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        new_requirement(key, op, values.into_iter().collect())
    }

    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<LabelOp>), String> {
        let mut op = None;
        let (mut tok, mut lit) = self.consume(Ctx::Values);
        if tok == Tok::DoesNotExist {
            op = Some(LabelOp::DoesNotExist);
            (tok, lit) = self.consume(Ctx::Values);
        }
        if tok != Tok::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        if let Err(e) = validate_label_key(&lit) {
            return Err(field_invalid(NIL_PATH, &lit, &e));
        }
        let (t, _) = self.lookahead(Ctx::Values);
        if matches!(t, Tok::EndOfString | Tok::Comma) && op != Some(LabelOp::DoesNotExist) {
            op = Some(LabelOp::Exists);
        }
        Ok((lit, op))
    }

    fn parse_operator(&mut self) -> Result<LabelOp, String> {
        let (tok, lit) = self.consume(Ctx::KeyAndOperator);
        Ok(match tok {
            Tok::In => LabelOp::In,
            Tok::Equals => LabelOp::Equals,
            Tok::DoubleEquals => LabelOp::DoubleEquals,
            Tok::GreaterThan => LabelOp::GreaterThan,
            Tok::LessThan => LabelOp::LessThan,
            Tok::NotIn => LabelOp::NotIn,
            Tok::NotEquals => LabelOp::NotEquals,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        })
    }

    fn parse_values(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, lit) = self.consume(Ctx::Values);
        if tok != Tok::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Ctx::Values);
        match tok {
            Tok::Identifier | Tok::Comma => {
                let s = self.parse_identifiers_list()?;
                // Go reports the literal seen before the list here; kept for fidelity.
                if self.consume(Ctx::Values).0 != Tok::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(s)
            }
            Tok::ClosedPar => {
                self.consume(Ctx::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut s = BTreeSet::new();
        loop {
            let (tok, lit) = self.consume(Ctx::Values);
            match tok {
                Tok::Identifier => {
                    s.insert(lit);
                    let (t2, l2) = self.lookahead(Ctx::Values);
                    match t2 {
                        Tok::Comma => continue,
                        Tok::ClosedPar => return Ok(s),
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                // `(,`, `,)` and `,,` all denote the empty value.
                Tok::Comma => {
                    if s.is_empty() {
                        s.insert(String::new());
                    }
                    let (t2, _) = self.lookahead(Ctx::Values);
                    if t2 == Tok::ClosedPar {
                        s.insert(String::new());
                        return Ok(s);
                    }
                    if t2 == Tok::Comma {
                        s.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, _) = self.lookahead(Ctx::Values);
        if matches!(tok, Tok::EndOfString | Tok::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (tok, lit) = self.consume(Ctx::Values);
        if tok == Tok::Identifier {
            return Ok(BTreeSet::from([lit]));
        }
        Err(format!("found '{lit}', expected: identifier"))
    }
}

/// `labels.Parse` calls `validateLabelKey` with a nil `*field.Path`, which prints as `<nil>`.
const NIL_PATH: &str = "<nil>";

/// `NewRequirement`'s checks (only those the parser can trip), aggregated like `ToAggregate`.
fn new_requirement(
    key: String,
    op: LabelOp,
    values: Vec<String>,
) -> Result<LabelRequirement, String> {
    let mut errs = Vec::new();
    if let Err(e) = validate_label_key(&key) {
        errs.push(field_invalid("key", &key, &e));
    }
    if matches!(op, LabelOp::GreaterThan | LabelOp::LessThan) {
        for (i, v) in values.iter().enumerate() {
            if v.parse::<i64>().is_err() {
                errs.push(field_invalid(
                    &format!("values[{i}]"),
                    v,
                    "for 'Gt', 'Lt' operators, the value must be an integer",
                ));
            }
        }
    }
    for (i, v) in values.iter().enumerate() {
        let msgs = label_value_errors(v);
        if !msgs.is_empty() {
            errs.push(field_invalid(
                &format!("values[{i}][{key}]"),
                v,
                &msgs.join("; "),
            ));
        }
    }
    match aggregate(errs) {
        Some(e) => Err(e),
        None => Ok(LabelRequirement { key, op, values }),
    }
}

fn parse_labels(s: &str) -> Result<LabelSelector, String> {
    let mut reqs = Parser::new(s).parse()?;
    reqs.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(LabelSelector { reqs })
}

/// `field.Invalid(path, stringValue, detail).Error()`.
fn field_invalid(path: &str, value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {}: {detail}", go_quote(value))
}

/// `utilerrors.NewAggregate(errs).Error()`: duplicates dropped, brackets only for several.
fn aggregate(errs: Vec<String>) -> Option<String> {
    let mut seen: Vec<String> = Vec::new();
    for e in errs {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    match seen.len() {
        0 => None,
        1 => seen.pop(),
        _ => Some(format!("[{}]", seen.join(", "))),
    }
}

fn regex_error(msg: &str, re: &str, examples: &[&str]) -> String {
    let mut out = format!("{msg} (e.g. ");
    for (i, ex) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(ex);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(re);
    out.push_str("')");
    out
}

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

/// `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
fn is_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let b = label.as_bytes();
        let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        match (b.first(), b.last()) {
            (Some(f), Some(l)) => alnum(f) && alnum(l) && b.iter().all(|c| alnum(c) || *c == b'-'),
            _ => false,
        }
    })
}

/// `validation.IsQualifiedName` (v1.32 wording), as used for label keys.
fn validate_label_key(k: &str) -> Result<(), String> {
    let mut errs: Vec<String> = Vec::new();
    let parts: Vec<&str> = k.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".into());
            } else {
                if prefix.len() > 253 {
                    errs.push("prefix part must be no more than 253 characters".into());
                }
                if !is_dns1123_subdomain(prefix) {
                    errs.push(format!(
                        "prefix part {}",
                        regex_error(
                            DNS1123_SUBDOMAIN_ERR,
                            DNS1123_SUBDOMAIN_FMT,
                            &["example.com"]
                        )
                    ));
                }
            }
            *name
        }
        _ => {
            return Err(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".into());
    }
    if !is_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

/// `validation.IsValidLabelValue` (v1.32 wording).
fn label_value_errors(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !v.is_empty() && !is_qualified_name_part(v) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Go's `%q` (`strconv.Quote`) for the characters a selector can carry. Printability follows
/// `unicode.IsPrint` closely enough: controls, non-ASCII spaces and the common format
/// characters are escaped.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if go_is_print(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn go_is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

// ---------------------------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------------------------

/// One field term after label conversion: `field = value` or `field != value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The canonical label (after aliases such as pods' `spec.host` -> `spec.nodeName`).
    pub field: String,
    /// The unescaped value to compare with.
    pub value: String,
    /// `!=` rather than `=`/`==`.
    pub negated: bool,
}

/// A parsed, converted field selector bound to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSelector {
    group: String,
    plural: String,
    reqs: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parse like `fields.ParseSelector`, then convert each term with the resource's field
    /// label conversion; any failure is the 400 `BadRequest` kube-apiserver answers.
    /// Parse errors win over conversion errors, and terms are checked in sorted order.
    pub fn parse(s: &str, group: &str, plural: &str) -> Result<FieldSelector, ApiError> {
        let terms = parse_field_terms(s).map_err(ApiError::bad_request)?;
        let spec = conversion_spec(group, plural);
        let mut reqs = Vec::with_capacity(terms.len());
        for (label, value, negated) in terms {
            let field = spec.convert(&label).map_err(ApiError::bad_request)?;
            reqs.push(FieldRequirement {
                field: field.to_string(),
                value,
                negated,
            });
        }
        Ok(FieldSelector {
            group: group.to_string(),
            plural: plural.to_string(),
            reqs,
        })
    }

    /// Only the syntax check of [`FieldSelector::parse`]. kube-apiserver parses the selector
    /// while decoding the query, validates the ListOptions (422s) and only then converts field
    /// labels (the unsupported-label 400), so a caller that needs that order checks syntax first.
    pub fn check_syntax(s: &str) -> Result<(), ApiError> {
        parse_field_terms(s)
            .map(|_| ())
            .map_err(ApiError::bad_request)
    }

    /// Whether `obj` satisfies every term; a field the kind does not report reads as `""`.
    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|r| {
            let have = field_value(obj, &self.group, &self.plural, &r.field).unwrap_or_default();
            (have == r.value) != r.negated
        })
    }

    /// True when the selector does not restrict anything.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// If the selector pins metadata.name=X, return X (lets a watch/list shortcut).
    /// Mirrors `RequiresExactMatch("metadata.name")`: the first `=`/`==` term on the name.
    pub fn single_name(&self) -> Option<&str> {
        self.reqs
            .iter()
            .find(|r| !r.negated && r.field == "metadata.name")
            .map(|r| r.value.as_str())
    }

    /// The converted terms, in the (sorted) order they were parsed.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.reqs
    }
}

/// `splitTerms`: split on commas not preceded by a backslash (the backslash is kept).
fn split_field_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// `splitTerm`: the first `!=`, `==` or `=` (tried in that order at each position) splits.
fn split_field_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        for op in ["!=", "==", "="] {
            if term[i..].starts_with(op) {
                return Some((&term[..i], op, &term[i + op.len()..]));
            }
        }
    }
    None
}

/// `UnescapeValue`: `\\`, `\,` and `\=` are the only escapes; bare `,`/`=` are errors.
fn unescape_field_value(s: &str) -> Result<String, String> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                ));
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Go prints the rune with %v, i.e. as its code point number.
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                ));
            }
            c => out.push(c),
        }
    }
    if in_slash {
        return Err("invalid field selector: invalid escape sequence: \\".to_string());
    }
    Ok(out)
}

/// `(label, unescaped value, negated)` per term, sorted like `parseSelector` sorts them.
fn parse_field_terms(s: &str) -> Result<Vec<(String, String, bool)>, String> {
    let mut parts = split_field_terms(s);
    parts.sort_unstable();
    let mut out = Vec::new();
    for part in parts {
        if part.is_empty() {
            continue;
        }
        let Some((lhs, op, rhs)) = split_field_term(part) else {
            return Err(format!(
                "invalid selector: '{s}'; can't understand '{part}'"
            ));
        };
        let value = unescape_field_value(rhs)?;
        out.push((lhs.to_string(), value, op == "!="));
    }
    Ok(out)
}

/// How a kind's conversion func words a rejected label.
#[derive(Clone, Copy)]
enum Reject {
    /// `field label not supported: X` (most registered conversion funcs).
    NotSupported,
    /// `runtime.DefaultMetaV1FieldSelectorConversion`, for kinds without a conversion func.
    DefaultMeta,
    /// batch/v1 Job's own wording.
    Job,
}

struct ConversionSpec {
    accepted: &'static [&'static str],
    /// Client label -> canonical label, for the labels that are rewritten.
    aliases: &'static [(&'static str, &'static str)],
    reject: Reject,
}

impl ConversionSpec {
    fn convert<'a>(&self, label: &'a str) -> Result<&'a str, String> {
        if !self.accepted.contains(&label) {
            return Err(match self.reject {
                Reject::NotSupported => format!("field label not supported: {label}"),
                Reject::DefaultMeta => format!(
                    "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                    go_quote(label)
                ),
                Reject::Job => format!(
                    "field label {} not supported for batchv1.Job",
                    go_quote(label)
                ),
            });
        }
        Ok(self
            .aliases
            .iter()
            .find(|(from, _)| *from == label)
            .map_or(label, |(_, to)| to))
    }
}

const META_ONLY: &[&str] = &["metadata.name", "metadata.namespace"];

const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
    // Legacy alias of spec.nodeName.
    "spec.host",
];

const CORE_EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];

const EVENTS_V1_ALIASES: &[(&str, &str)] = &[
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    (
        "regarding.resourceVersion",
        "involvedObject.resourceVersion",
    ),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
    ("reportingController", "reportingComponent"),
];

const EVENTS_V1_FIELDS: &[&str] = &[
    "reason",
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reportingController",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];

fn conversion_spec(group: &str, plural: &str) -> ConversionSpec {
    let (accepted, aliases, reject): (
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
        Reject,
    ) = match (group, plural) {
        ("", "pods") => (
            POD_FIELDS,
            &[("spec.host", "spec.nodeName")],
            Reject::NotSupported,
        ),
        ("", "nodes") => (
            &["metadata.name", "spec.unschedulable"],
            &[],
            Reject::NotSupported,
        ),
        ("", "replicationcontrollers") => (
            &["metadata.name", "metadata.namespace", "status.replicas"],
            &[],
            Reject::NotSupported,
        ),
        ("", "events") => (CORE_EVENT_FIELDS, &[], Reject::NotSupported),
        ("", "namespaces") => (
            &["status.phase", "metadata.name"],
            &[],
            Reject::NotSupported,
        ),
        ("", "secrets") => (
            &["type", "metadata.namespace", "metadata.name"],
            &[],
            Reject::NotSupported,
        ),
        ("", "services") => (
            &[
                "metadata.namespace",
                "metadata.name",
                "spec.clusterIP",
                "spec.type",
            ],
            &[],
            Reject::NotSupported,
        ),
        ("events.k8s.io", "events") => (EVENTS_V1_FIELDS, EVENTS_V1_ALIASES, Reject::NotSupported),
        ("batch", "jobs") => (
            &["metadata.name", "metadata.namespace", "status.successful"],
            &[],
            Reject::Job,
        ),
        ("certificates.k8s.io", "certificatesigningrequests") => (
            &["metadata.name", "spec.signerName"],
            &[],
            Reject::NotSupported,
        ),
        _ => (META_ONLY, &[], Reject::DefaultMeta),
    };
    ConversionSpec {
        accepted,
        aliases,
        reject,
    }
}

/// The field labels kube-apiserver accepts in a `fieldSelector` for this resource (what its
/// conversion func lets through, aliases included). Kinds without a conversion func accept
/// only `metadata.name` and `metadata.namespace`; nodes, namespaces and CSRs reject
/// `metadata.namespace`.
pub fn supported_fields(group: &str, plural: &str) -> &'static [&'static str] {
    conversion_spec(group, plural).accepted
}

fn path<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(obj, |v, k| v.get(k))
}

fn str_at(obj: &Value, dotted: &str) -> String {
    path(obj, dotted)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn bool_at(obj: &Value, dotted: &str) -> String {
    path(obj, dotted)
        .and_then(Value::as_bool)
        .unwrap_or(false)
        .to_string()
}

fn int_at(obj: &Value, dotted: &str) -> String {
    path(obj, dotted)
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .to_string()
}

fn first_non_empty(a: String, b: impl FnOnce() -> String) -> String {
    if a.is_empty() { b() } else { a }
}

/// Extract a canonical field label's value from an object, as the kind's `ToSelectableFields`
/// reports it (e.g. "spec.nodeName" -> the string, missing -> ""; booleans as "true"/"false",
/// counts as decimal with a missing one read as "0"). `None` when the kind does not report
/// that label at all (matching then treats it as ""). Labels are the canonical ones: use
/// `spec.nodeName`, not `spec.host`; `involvedObject.*`/`reportingComponent` for both event
/// APIs. Event objects may be in either API's shape: the `apiVersion` decides.
pub fn field_value(obj: &Value, group: &str, plural: &str, label: &str) -> Option<String> {
    match label {
        "metadata.name" => return Some(str_at(obj, "metadata.name")),
        "metadata.namespace" => return Some(str_at(obj, "metadata.namespace")),
        _ => {}
    }
    let v = match (group, plural, label) {
        (
            "",
            "pods",
            "spec.nodeName"
            | "spec.restartPolicy"
            | "spec.schedulerName"
            | "status.phase"
            | "status.nominatedNodeName",
        ) => str_at(obj, label),
        // The internal type has only ServiceAccountName; v1's deprecated twin fills it in.
        ("", "pods", "spec.serviceAccountName") => {
            first_non_empty(str_at(obj, "spec.serviceAccountName"), || {
                str_at(obj, "spec.serviceAccount")
            })
        }
        ("", "pods", "spec.hostNetwork") => bool_at(obj, "spec.hostNetwork"),
        // Upstream reads Status.PodIPs[0].IP; the v1 podIP is its mirror.
        ("", "pods", "status.podIP") => {
            let first = obj
                .pointer("/status/podIPs/0/ip")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            first_non_empty(first, || str_at(obj, "status.podIP"))
        }
        ("", "nodes", "spec.unschedulable") => bool_at(obj, "spec.unschedulable"),
        ("", "namespaces", "status.phase") => str_at(obj, "status.phase"),
        // Kept upstream for backward compatibility; no conversion func lets a client reach it.
        ("", "namespaces", "name") => str_at(obj, "metadata.name"),
        ("", "secrets", "type") => str_at(obj, "type"),
        ("", "services", "spec.clusterIP" | "spec.type") => str_at(obj, label),
        ("", "replicationcontrollers", "status.replicas") => int_at(obj, "status.replicas"),
        ("batch", "jobs", "status.successful") => int_at(obj, "status.succeeded"),
        ("certificates.k8s.io", "certificatesigningrequests", "spec.signerName") => {
            str_at(obj, "spec.signerName")
        }
        ("" | "events.k8s.io", "events", _) => return event_field(obj, label),
        _ => return None,
    };
    Some(v)
}

/// Core Event's `ToSelectableFields`, read from either the core/v1 or the events.k8s.io/v1 JSON.
fn event_field(obj: &Value, label: &str) -> Option<String> {
    // A storage form without apiVersion is recognised by the fields only events.k8s.io/v1 has.
    let new_api = match obj.get("apiVersion").and_then(Value::as_str) {
        Some(a) => a.starts_with("events.k8s.io/"),
        None => [
            "regarding",
            "reportingController",
            "deprecatedSource",
            "note",
        ]
        .iter()
        .any(|k| obj.get(k).is_some()),
    };
    let (reference, reporting, source) = if new_api {
        (
            "regarding",
            "reportingController",
            "deprecatedSource.component",
        )
    } else {
        ("involvedObject", "reportingComponent", "source.component")
    };
    let v = match label {
        "involvedObject.kind"
        | "involvedObject.namespace"
        | "involvedObject.name"
        | "involvedObject.uid"
        | "involvedObject.apiVersion"
        | "involvedObject.resourceVersion"
        | "involvedObject.fieldPath" => {
            let field = label.strip_prefix("involvedObject.").unwrap_or(label);
            str_at(obj, &format!("{reference}.{field}"))
        }
        "reason" | "type" => str_at(obj, label),
        "reportingComponent" => str_at(obj, reporting),
        // Source.Component, falling back to ReportingController for events.k8s.io writers.
        "source" => first_non_empty(str_at(obj, source), || str_at(obj, reporting)),
        _ => return None,
    };
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    const NAME_PART_REGEX: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const VALUE_REGEX: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    fn label_err(s: &str) -> String {
        let e = LabelSelector::parse(s).expect_err("expected a parse error");
        assert_eq!(e.code, 400);
        assert_eq!(e.body["reason"], "BadRequest");
        assert!(e.body.get("details").is_none());
        e.body["message"].as_str().unwrap().to_string()
    }

    #[rstest]
    #[case("", "")]
    #[case("   ", "")]
    #[case("x=a,y=b,z=c", "x=a,y=b,z=c")]
    #[case("x!=a,y=b", "x!=a,y=b")]
    #[case("x=", "x=")]
    #[case("x= ", "x=")]
    #[case("x=,z= ", "x=,z=")]
    #[case("x= ,z= ", "x=,z=")]
    #[case("!x", "!x")]
    #[case("x>1", "x>1")]
    #[case("x>1,z<5", "x>1,z<5")]
    #[case("app==web", "app==web")]
    #[case("a=x,x=a", "a=x,x=a")]
    #[case("x=a,a=x", "a=x,x=a")]
    #[case("\rx", "x")]
    #[case(
        "this-is-a-dns.domain.com/key-with-dash",
        "this-is-a-dns.domain.com/key-with-dash"
    )]
    #[case(
        "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
        "0.1.2.domain/99 notin (10.10.100.1,tick.tack.clock)"
    )]
    #[case("foo  in\t (abc)", "foo in (abc)")]
    #[case("x notin\n (abc)", "x notin (abc)")]
    #[case("x in (def,abc,abc)", "x in (abc,def)")]
    #[case("x in (abc,)", "x in (,abc)")]
    #[case("x in ()", "x in ()")]
    #[case("x in (,,)", "x in ()")]
    #[case("x notin (abc,def),bar,z in (),w", "bar,w,x notin (abc,def),z in ()")]
    #[case("notin=in", "notin=in")]
    #[case("in in (in,notin)", "in in (in,notin)")]
    #[case(
        "kubernetes.io/metadata.name=conf-a",
        "kubernetes.io/metadata.name=conf-a"
    )]
    #[case("app,tier notin (fe)", "app,tier notin (fe)")]
    #[case("app!=web,app", "app!=web,app")]
    fn label_parse_ok(#[case] input: &str, #[case] canonical: &str) {
        let sel = LabelSelector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {}", e.body));
        assert_eq!(sel.to_string(), canonical);
        assert_eq!(sel.is_empty(), canonical.is_empty());
    }

    #[rstest]
    // Recorded: configmaps/list-bad-selector and configmaps/list-bad-selector-value.
    #[case("app in web", "unable to parse requirement: found 'web' expected: '('")]
    #[case("app=a b", "found 'b', expected: ',' or 'end of string'")]
    #[case("x=a||y=b", &format!("unable to parse requirement: values[0][x]: Invalid value: \"a||y\": {VALUE_REGEX}"))]
    #[case("x==a==b", "found '==', expected: ',' or 'end of string'")]
    #[case("!x=a", "found '=', expected: ',' or 'end of string'")]
    #[case(
        "x<a",
        "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer"
    )]
    #[case(
        "x>",
        "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' operators, the value must be an integer"
    )]
    #[case(
        "x y",
        "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt"
    )]
    #[case("x,", "found '', expected: identifier after ','")]
    #[case(",x", "found ',', expected: !, identifier, or 'end of string'")]
    #[case("=x", "found '=', expected: !, identifier, or 'end of string'")]
    #[case("!", "unable to parse requirement: found '', expected: identifier")]
    #[case("x=(", "unable to parse requirement: found '(', expected: identifier")]
    #[case(
        "x in (a b)",
        "unable to parse requirement: found 'b', expected: ',' or ')'"
    )]
    #[case(
        "x in (a",
        "unable to parse requirement: found '', expected: ',' or ')'"
    )]
    #[case(
        "x in (a,",
        "unable to parse requirement: found '', expected: ',', or identifier"
    )]
    #[case("x in =", "unable to parse requirement: found '=' expected: '('")]
    #[case(
        "x in (=)",
        "unable to parse requirement: found '=', expected: ',', ')' or identifier"
    )]
    #[case("x in", "unable to parse requirement: found '' expected: '('")]
    #[case(
        "Bad_Key!",
        "unable to parse requirement: found '!', expected: in, notin, =, ==, !=, gt, lt"
    )]
    #[case("-x", &format!("unable to parse requirement: <nil>: Invalid value: \"-x\": {NAME_PART_REGEX}"))]
    #[case(
        "a/b/c",
        "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
    )]
    #[case(
        "/x",
        "unable to parse requirement: <nil>: Invalid value: \"/x\": prefix part must be non-empty"
    )]
    #[case("x/", &format!("unable to parse requirement: <nil>: Invalid value: \"x/\": name part must be non-empty; {NAME_PART_REGEX}"))]
    #[case(
        "Example.com/x",
        "unable to parse requirement: <nil>: Invalid value: \"Example.com/x\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )]
    #[case(&"k".repeat(64), &format!("unable to parse requirement: <nil>: Invalid value: \"{}\": name part must be no more than 63 characters", "k".repeat(64)))]
    #[case("app=a@b", &format!("unable to parse requirement: values[0][app]: Invalid value: \"a@b\": {VALUE_REGEX}"))]
    #[case("app=-", &format!("unable to parse requirement: values[0][app]: Invalid value: \"-\": {VALUE_REGEX}"))]
    #[case(&format!("app={}", "v".repeat(64)), &format!("unable to parse requirement: values[0][app]: Invalid value: \"{}\": must be no more than 63 characters", "v".repeat(64)))]
    #[case("app in (ok,b@,a@)", &format!("unable to parse requirement: [values[0][app]: Invalid value: \"a@\": {VALUE_REGEX}, values[1][app]: Invalid value: \"b@\": {VALUE_REGEX}]"))]
    #[case("x>a@", &format!("unable to parse requirement: [values[0]: Invalid value: \"a@\": for 'Gt', 'Lt' operators, the value must be an integer, values[0][x]: Invalid value: \"a@\": {VALUE_REGEX}]"))]
    #[case("k\"=v", &format!("unable to parse requirement: <nil>: Invalid value: \"k\\\"\": {NAME_PART_REGEX}"))]
    // A negative bound is an integer but not a valid label value.
    #[case("x>-3", &format!("unable to parse requirement: values[0][x]: Invalid value: \"-3\": {VALUE_REGEX}"))]
    fn label_parse_err(#[case] input: &str, #[case] message: &str) {
        assert_eq!(label_err(input), message);
    }

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// The label sets of the recorded configmaps sel-1..sel-4 (namespace conf-a).
    fn recorded_configmaps() -> Vec<(&'static str, Map<String, Value>)> {
        vec![
            ("sel-1", labels(json!({"app": "web", "tier": "fe"}))),
            ("sel-2", labels(json!({"app": "api", "tier": "be"}))),
            ("sel-3", labels(json!({"app": "db"}))),
            (
                "sel-4",
                labels(json!({"app": "web", "tier": "be", "canary": "true"})),
            ),
        ]
    }

    #[rstest]
    // configmaps/list-eq, list-eq-double, list-neq, list-in, list-notin, list-not-exists,
    // list-exists, list-multi, list-nomatch (selectors as decoded from the recorded paths).
    #[case("app=web", &["sel-1", "sel-4"])]
    #[case("app==web", &["sel-1", "sel-4"])]
    #[case("app!=web,app", &["sel-2", "sel-3"])]
    #[case("app in (web,db)", &["sel-1", "sel-3", "sel-4"])]
    #[case("app,tier notin (fe)", &["sel-2", "sel-3", "sel-4"])]
    #[case("app,!tier", &["sel-3"])]
    #[case("canary", &["sel-4"])]
    #[case("app=web,tier=be", &["sel-4"])]
    #[case("app=none", &[])]
    #[case("app", &["sel-1", "sel-2", "sel-3", "sel-4"])]
    #[case("", &["sel-1", "sel-2", "sel-3", "sel-4"])]
    // `!=` and `notin` match objects that lack the label.
    #[case("tier!=fe", &["sel-2", "sel-3", "sel-4"])]
    #[case("canary notin (true)", &["sel-1", "sel-2", "sel-3"])]
    #[case("tier in (fe,be)", &["sel-1", "sel-2", "sel-4"])]
    #[case("tier=", &[])]
    #[case("tier in ()", &[])]
    fn label_matches_recorded(#[case] selector: &str, #[case] expected: &[&str]) {
        let sel = LabelSelector::parse(selector).unwrap();
        let got: Vec<&str> = recorded_configmaps()
            .iter()
            .filter(|(_, l)| sel.matches(Some(l)))
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(got, expected, "selector {selector:?}");
    }

    #[rstest]
    #[case("", None, true)]
    #[case("x", None, false)]
    #[case("!x", None, true)]
    #[case("x!=y", None, true)]
    #[case("x notin (y)", None, true)]
    #[case("x=", None, false)]
    #[case("x=", Some(json!({"x": ""})), true)]
    #[case("x in (,a)", Some(json!({"x": ""})), true)]
    #[case("x>1", Some(json!({"x": "2"})), true)]
    #[case("x>1", Some(json!({"x": "1"})), false)]
    #[case("x<1", Some(json!({"x": "0"})), true)]
    #[case("x<1", Some(json!({"x": "v2"})), false)]
    #[case("x>0", Some(json!({"x": "10"})), true)]
    #[case("x<10", Some(json!({"x": "-2"})), true)]
    #[case("x>1", None, false)]
    #[case("kubernetes.io/metadata.name=conf-a", Some(json!({"kubernetes.io/metadata.name": "conf-a"})), true)]
    #[case("kubernetes.io/metadata.name=conf-a", Some(json!({"kubernetes.io/metadata.name": "conf-b"})), false)]
    #[case("w=yes", Some(json!({"w": "no"})), false)]
    fn label_matches(#[case] selector: &str, #[case] set: Option<Value>, #[case] want: bool) {
        let sel = LabelSelector::parse(selector).unwrap();
        let map = set.map(labels);
        assert_eq!(sel.matches(map.as_ref()), want);
    }

    fn cm(name: &str, ns: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}})
    }

    fn field_err(s: &str, group: &str, plural: &str) -> String {
        let e = FieldSelector::parse(s, group, plural).expect_err("expected a parse error");
        assert_eq!(e.code, 400);
        assert_eq!(e.body["reason"], "BadRequest");
        assert_eq!(e.body["status"], "Failure");
        assert!(e.body.get("details").is_none());
        e.body["message"].as_str().unwrap().to_string()
    }

    #[rstest]
    // configmaps/list-field-unsupported
    #[case(
        "data.n=sel-1",
        "",
        "configmaps",
        "\"data.n\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    )]
    #[case(
        "spec.replicas=1",
        "apps",
        "deployments",
        "\"spec.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    )]
    #[case(
        "status.replicas=1",
        "apps",
        "replicasets",
        "\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    )]
    #[case("spec.foo=x", "", "pods", "field label not supported: spec.foo")]
    #[case(
        "involvedObject.name=x",
        "events.k8s.io",
        "events",
        "field label not supported: involvedObject.name"
    )]
    #[case(
        "regarding.name=x",
        "",
        "events",
        "field label not supported: regarding.name"
    )]
    #[case(
        "metadata.namespace=x",
        "",
        "nodes",
        "field label not supported: metadata.namespace"
    )]
    #[case(
        "metadata.namespace=x",
        "",
        "namespaces",
        "field label not supported: metadata.namespace"
    )]
    #[case("data=x", "", "secrets", "field label not supported: data")]
    #[case(
        "status.succeeded=1",
        "batch",
        "jobs",
        "field label \"status.succeeded\" not supported for batchv1.Job"
    )]
    #[case(
        "=x",
        "",
        "configmaps",
        "\"\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    )]
    // Terms are sorted before conversion: the first failing one in sorted order is reported.
    #[case(
        "z.z=1,a.a=1",
        "",
        "configmaps",
        "\"a.a\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    )]
    // Parse errors.
    #[case(
        "metadata.name",
        "",
        "configmaps",
        "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
    )]
    #[case(
        "a.b=1,foo",
        "",
        "configmaps",
        "invalid selector: 'a.b=1,foo'; can't understand 'foo'"
    )]
    #[case(
        "metadata.name=a=b",
        "",
        "configmaps",
        "invalid field selector: unescaped character in value: 61"
    )]
    #[case(
        "metadata.name==a=b",
        "",
        "configmaps",
        "invalid field selector: unescaped character in value: 61"
    )]
    #[case(
        "metadata.name=a\\x",
        "",
        "configmaps",
        "invalid field selector: invalid escape sequence: \\x"
    )]
    #[case(
        "metadata.name=a\\",
        "",
        "configmaps",
        "invalid field selector: invalid escape sequence: \\"
    )]
    // A parse error in any term wins over a conversion error in an earlier sorted term.
    #[case(
        "a.a=1,zz",
        "",
        "configmaps",
        "invalid selector: 'a.a=1,zz'; can't understand 'zz'"
    )]
    fn field_parse_err(
        #[case] s: &str,
        #[case] group: &str,
        #[case] plural: &str,
        #[case] message: &str,
    ) {
        assert_eq!(field_err(s, group, plural), message);
        let syntax_only = FieldSelector::check_syntax(s);
        if message.starts_with("invalid") {
            assert_eq!(syntax_only.unwrap_err().body["message"], message);
        } else {
            assert!(syntax_only.is_ok());
        }
    }

    #[rstest]
    #[case("", &[])]
    #[case(",,", &[])]
    #[case("metadata.name=sel-2", &[("metadata.name", "sel-2", false)])]
    #[case("metadata.name==sel-2", &[("metadata.name", "sel-2", false)])]
    #[case("metadata.name!=sel-2", &[("metadata.name", "sel-2", true)])]
    #[case("metadata.name=", &[("metadata.name", "", false)])]
    #[case("metadata.namespace=b,metadata.name=a", &[("metadata.name", "a", false), ("metadata.namespace", "b", false)])]
    #[case("metadata.name=a\\,b\\=c\\\\d", &[("metadata.name", "a,b=c\\d", false)])]
    #[case("metadata.name=!x", &[("metadata.name", "!x", false)])]
    fn field_parse_ok(#[case] s: &str, #[case] want: &[(&str, &str, bool)]) {
        let sel = FieldSelector::parse(s, "", "configmaps").unwrap();
        let got: Vec<(&str, &str, bool)> = sel
            .requirements()
            .iter()
            .map(|r| (r.field.as_str(), r.value.as_str(), r.negated))
            .collect();
        assert_eq!(got, want);
        assert_eq!(sel.is_empty(), want.is_empty());
    }

    #[rstest]
    // configmaps/list-field-name, list-field-name-neq (+ labelSelector=app), list-field-namespace
    #[case("metadata.name=sel-2", "", &["sel-2"])]
    #[case("metadata.name!=sel-2", "app", &["sel-1", "sel-3", "sel-4"])]
    #[case("metadata.namespace=conf-a", "app=db", &["sel-3"])]
    #[case("metadata.namespace=conf-b", "", &[])]
    #[case("metadata.namespace!=conf-b", "", &["sel-1", "sel-2", "sel-3", "sel-4"])]
    fn field_matches_recorded_configmaps(
        #[case] fs: &str,
        #[case] ls: &str,
        #[case] expected: &[&str],
    ) {
        let fsel = FieldSelector::parse(fs, "", "configmaps").unwrap();
        let lsel = LabelSelector::parse(ls).unwrap();
        let got: Vec<&str> = recorded_configmaps()
            .into_iter()
            .filter(|(n, l)| {
                let mut obj = cm(n, "conf-a");
                obj["metadata"]["labels"] = Value::Object(l.clone());
                fsel.matches(&obj) && lsel.matches(obj["metadata"]["labels"].as_object())
            })
            .map(|(n, _)| n)
            .collect();
        assert_eq!(got, expected);
    }

    fn recorded_events() -> Vec<Value> {
        vec![
            // events/core-create, as served by core/v1.
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "ev-pod.core", "namespace": "conf-a"},
                "involvedObject": {"kind": "Pod", "namespace": "conf-a", "name": "ev-pod", "uid": "u1", "apiVersion": "v1"},
                "reason": "Recorded", "source": {"component": "conformance-recorder"}, "type": "Normal",
                "reportingComponent": "", "reportingInstance": ""}),
            // events/eventsv1-create, as served by events.k8s.io/v1.
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "ev-pod.new", "namespace": "conf-a"},
                "reportingController": "example.com/recorder", "reason": "Recorded",
                "regarding": {"kind": "Pod", "namespace": "conf-a", "name": "ev-pod", "uid": "u1", "apiVersion": "v1"},
                "type": "Normal", "deprecatedSource": {}}),
            // The same event as core/v1 serves it (events/eventsv1-via-core).
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "ev-pod.new-core", "namespace": "conf-a"},
                "involvedObject": {"kind": "Pod", "namespace": "conf-a", "name": "ev-pod", "uid": "u1", "apiVersion": "v1"},
                "reason": "Recorded", "source": {}, "type": "Normal", "reportingComponent": "example.com/recorder"}),
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "other", "namespace": "conf-a"},
                "involvedObject": {"kind": "Pod", "namespace": "conf-a", "name": "other-pod"},
                "reason": "Recorded", "type": "Warning"}),
        ]
    }

    #[rstest]
    // events/list-field-selector
    #[case("", "events", "involvedObject.name=ev-pod,reason=Recorded", &["ev-pod.core", "ev-pod.new", "ev-pod.new-core"])]
    #[case("", "events", "source=conformance-recorder", &["ev-pod.core"])]
    // `source` falls back to the reporting controller.
    #[case("", "events", "source=example.com/recorder", &["ev-pod.new", "ev-pod.new-core"])]
    #[case("", "events", "reportingComponent=example.com/recorder", &["ev-pod.new", "ev-pod.new-core"])]
    #[case("", "events", "type!=Normal", &["other"])]
    #[case("", "events", "involvedObject.uid=", &["other"])]
    #[case("events.k8s.io", "events", "regarding.name=ev-pod,reason=Recorded", &["ev-pod.core", "ev-pod.new", "ev-pod.new-core"])]
    #[case("events.k8s.io", "events", "reportingController=example.com/recorder", &["ev-pod.new", "ev-pod.new-core"])]
    #[case("events.k8s.io", "events", "regarding.kind=Pod,type=Warning", &["other"])]
    fn field_matches_events(
        #[case] group: &str,
        #[case] plural: &str,
        #[case] fs: &str,
        #[case] expected: &[&str],
    ) {
        let sel = FieldSelector::parse(fs, group, plural).unwrap();
        let got: Vec<String> = recorded_events()
            .iter()
            .filter(|e| sel.matches(e))
            .map(|e| e["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, expected);
    }

    fn pod(name: &str, spec: Value, status: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns"}, "spec": spec, "status": status})
    }

    #[rstest]
    #[case("spec.nodeName=node-1", &["bound"])]
    #[case("spec.host=node-1", &["bound"])]
    #[case("spec.nodeName=", &["unbound"])]
    #[case("spec.nodeName!=", &["bound"])]
    #[case("status.phase=Pending", &["unbound"])]
    #[case("status.phase!=Running", &["unbound"])]
    #[case("spec.hostNetwork=false", &["unbound"])]
    #[case("spec.hostNetwork=true", &["bound"])]
    #[case("status.podIP=10.0.0.1", &["bound"])]
    // Accepted, but never reported by PodToSelectableFields.
    #[case("status.podIPs=10.0.0.1", &[])]
    #[case("status.podIPs=", &["bound", "unbound"])]
    #[case("spec.serviceAccountName=default", &["bound", "unbound"])]
    #[case("spec.restartPolicy=Always,spec.schedulerName=default-scheduler", &["unbound"])]
    fn field_matches_pods(#[case] fs: &str, #[case] expected: &[&str]) {
        let pods = [
            pod(
                "bound",
                json!({"nodeName": "node-1", "hostNetwork": true, "serviceAccountName": "default"}),
                json!({"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}]}),
            ),
            pod(
                "unbound",
                json!({"serviceAccount": "default", "restartPolicy": "Always", "schedulerName": "default-scheduler"}),
                json!({"phase": "Pending"}),
            ),
        ];
        let sel = FieldSelector::parse(fs, "", "pods").unwrap();
        let got: Vec<&str> = pods
            .iter()
            .filter(|p| sel.matches(p))
            .map(|p| p["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(got, expected);
    }

    #[rstest]
    #[case(json!({"metadata": {"name": "n"}}), "", "nodes", "spec.unschedulable", Some("false"))]
    #[case(json!({"spec": {"unschedulable": true}}), "", "nodes", "spec.unschedulable", Some("true"))]
    #[case(json!({"status": {"phase": "Active"}}), "", "namespaces", "status.phase", Some("Active"))]
    #[case(json!({"type": "Opaque"}), "", "secrets", "type", Some("Opaque"))]
    #[case(json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.10"}}), "", "services", "spec.clusterIP", Some("10.96.0.10"))]
    #[case(json!({}), "", "replicationcontrollers", "status.replicas", Some("0"))]
    #[case(json!({"status": {"succeeded": 3}}), "batch", "jobs", "status.successful", Some("3"))]
    #[case(json!({"spec": {"signerName": "x/y"}}), "certificates.k8s.io", "certificatesigningrequests", "spec.signerName", Some("x/y"))]
    #[case(json!({"metadata": {"name": "n"}}), "", "configmaps", "metadata.namespace", Some(""))]
    #[case(json!({"regarding": {"name": "p"}}), "", "events", "involvedObject.name", Some("p"))]
    #[case(json!({"involvedObject": {"name": "p"}}), "events.k8s.io", "events", "involvedObject.name", Some("p"))]
    #[case(json!({"reportingController": "c", "deprecatedSource": {}}), "", "events", "source", Some("c"))]
    #[case(json!({"reason": "r"}), "", "events", "regarding.name", None)]
    #[case(json!({"data": {"n": "1"}}), "", "configmaps", "data.n", None)]
    #[case(json!({"status": {"podIPs": [{"ip": "1.2.3.4"}]}}), "", "pods", "status.podIPs", None)]
    fn field_values(
        #[case] obj: Value,
        #[case] group: &str,
        #[case] plural: &str,
        #[case] label: &str,
        #[case] want: Option<&str>,
    ) {
        assert_eq!(field_value(&obj, group, plural, label).as_deref(), want);
    }

    #[rstest]
    #[case("metadata.name=w-2", Some("w-2"))]
    #[case("metadata.name==w-2,metadata.namespace=conf-b", Some("w-2"))]
    #[case("metadata.name!=w-2", None)]
    #[case("metadata.namespace=conf-b", None)]
    #[case("", None)]
    fn field_single_name(#[case] s: &str, #[case] want: Option<&str>) {
        assert_eq!(
            FieldSelector::parse(s, "", "configmaps")
                .unwrap()
                .single_name(),
            want
        );
    }

    #[test]
    fn supported_fields_tables() {
        assert_eq!(
            supported_fields("", "configmaps"),
            &["metadata.name", "metadata.namespace"]
        );
        assert!(supported_fields("", "pods").contains(&"status.nominatedNodeName"));
        assert!(supported_fields("", "events").contains(&"involvedObject.fieldPath"));
        assert!(supported_fields("events.k8s.io", "events").contains(&"regarding.name"));
        assert!(!supported_fields("", "nodes").contains(&"metadata.namespace"));
        assert!(supported_fields("", "services").contains(&"spec.type"));
    }

    #[test]
    fn watch_label_selector_transitions() {
        // watch/label-selector: w-2 leaving `w=yes` must not match; re-entering must.
        let sel = LabelSelector::parse("w=yes").unwrap();
        assert!(sel.matches(Some(&labels(json!({"w": "yes"})))));
        assert!(!sel.matches(None));
        assert!(!sel.matches(Some(&labels(json!({"w": "no"})))));
    }

    #[rstest]
    #[case("abc", "\"abc\"")]
    #[case("a\"b\\c", "\"a\\\"b\\\\c\"")]
    #[case("tab\there", "\"tab\\there\"")]
    #[case("nul\u{0}", "\"nul\\x00\"")]
    #[case("ümlaut", "\"ümlaut\"")]
    #[case("nb\u{a0}sp", "\"nb\\u00a0sp\"")]
    fn go_quoting(#[case] s: &str, #[case] want: &str) {
        assert_eq!(go_quote(s), want);
    }
}
