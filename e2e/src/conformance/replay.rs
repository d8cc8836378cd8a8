//! Replays a [`Recording`] against any API server through a [`kube::Client`] and collects every
//! difference from the recorded answers into a [`ReplayReport`].
//!
//! All steps run, in order, whatever the selection: later steps depend on the objects and
//! captures of earlier ones. [`ReplayOptions::only`] only filters what is *reported* (and lets the
//! run stop after the last selected step).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};

use super::matcher::{Outcome, ReplayedAnswer, compare_response, show};
use super::normalise::{WatchShape, is_watch_request, normalise_body, watch_body};
use super::recording::{RecordedRequest, RecordedResponse, Recording, Step, json_path};

/// The User-Agent of the recorder; the server derives field-manager names from it.
pub const USER_AGENT: &str = "conformance-recorder";

/// The step whose polling is driven by updates of `conf-b/filler` (see the README).
const TOO_OLD_STEP: &str = "watch/too-old";

/// How many filler updates are sent between two attempts of [`TOO_OLD_STEP`].
const FILLER_UPDATES_PER_ATTEMPT: usize = 100;

/// What to replay and how patiently.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Report only steps whose id starts with one of these prefixes (all when empty).
    pub only: Vec<String>,
    /// Multiplies every step's `poll.timeout_s`.
    pub poll_timeout_scale: f64,
    /// Delay between two attempts of a polled step.
    pub poll_interval: Duration,
    /// Upper bound for one non-watch request (a watch gets its `timeoutSeconds` on top).
    pub request_timeout: Duration,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            only: Vec::new(),
            poll_timeout_scale: 1.0,
            poll_interval: Duration::from_millis(250),
            request_timeout: Duration::from_secs(60),
        }
    }
}

impl ReplayOptions {
    /// Whether the step `id` is reported.
    pub fn selects(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| id.starts_with(p.as_str()))
    }
}

/// The outcome of one step.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// The step id.
    pub id: String,
    /// Whether the replayed answer matched.
    pub passed: bool,
    /// Human-readable failures.
    pub differences: Vec<String>,
    /// Remarks that do not fail the step (extra fields, …).
    pub notes: Vec<String>,
    /// How many times the request was sent (polled steps send it more than once).
    pub attempts: u32,
    /// Wall time of the step, polling included.
    pub elapsed: Duration,
}

/// The outcome of a replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// The reported steps, in replay order.
    pub steps: Vec<StepResult>,
    /// Wall time of the whole replay.
    pub elapsed: Duration,
}

impl ReplayReport {
    /// Number of reported steps that matched.
    pub fn passed(&self) -> usize {
        self.steps.iter().filter(|s| s.passed).count()
    }

    /// Ids of the reported steps that did not match.
    pub fn failed_ids(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|s| !s.passed)
            .map(|s| s.id.as_str())
            .collect()
    }

    /// `conformance: 300/334 steps match`.
    pub fn summary(&self) -> String {
        format!(
            "conformance: {}/{} steps match",
            self.passed(),
            self.steps.len()
        )
    }

    /// The full report: summary, failing ids, then every step with its differences and notes.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{} ({:.1}s)", self.summary(), self.elapsed.as_secs_f64());
        let failed = self.failed_ids();
        if !failed.is_empty() {
            let _ = writeln!(s, "failing steps:");
            for id in failed {
                let _ = writeln!(s, "  {id}");
            }
        }
        for step in &self.steps {
            let _ = writeln!(
                s,
                "\n{} {} ({} attempt{}, {:.2}s)",
                if step.passed { "PASS" } else { "FAIL" },
                step.id,
                step.attempts,
                if step.attempts == 1 { "" } else { "s" },
                step.elapsed.as_secs_f64()
            );
            for d in &step.differences {
                let _ = writeln!(s, "  - {d}");
            }
            for n in &step.notes {
                let _ = writeln!(s, "  note: {n}");
            }
        }
        s
    }
}

/// Replays every step of `rec` in order against `client` and reports the selected ones.
///
/// The client should have `default_retry = false`: the transcript records `504` answers that
/// kube's retry layer would otherwise resend.
pub async fn replay(client: &kube::Client, rec: &Recording, opts: &ReplayOptions) -> ReplayReport {
    let started = Instant::now();
    let mut report = ReplayReport::default();
    let Some(last) = rec.steps.iter().rposition(|s| opts.selects(&s.id)) else {
        return report;
    };
    let mut runner = Runner {
        client,
        opts,
        vars: HashMap::new(),
        filler_counter: 0,
    };
    for step in &rec.steps[..=last] {
        let result = runner.run_step(step).await;
        if opts.selects(&step.id) {
            report.steps.push(result);
        }
    }
    report.elapsed = started.elapsed();
    report
}

/// The raw answer of one request.
struct RawAnswer {
    status: u16,
    content_type: Option<String>,
    warnings: Vec<String>,
    body: Bytes,
}

impl RawAnswer {
    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

struct Runner<'a> {
    client: &'a kube::Client,
    opts: &'a ReplayOptions,
    vars: HashMap<String, Value>,
    filler_counter: u64,
}

impl Runner<'_> {
    async fn run_step(&mut self, step: &Step) -> StepResult {
        let started = Instant::now();
        let deadline = step.poll.as_ref().map(|p| {
            started + Duration::from_secs_f64((p.timeout_s * self.opts.poll_timeout_scale).max(0.0))
        });
        let mut attempts = 0;
        let (mut outcome, raw) = loop {
            attempts += 1;
            let (outcome, raw) = self.attempt(step).await;
            let Some(deadline) = deadline else {
                break (outcome, raw);
            };
            if outcome.is_match() {
                break (outcome, raw);
            }
            if Instant::now() >= deadline {
                let mut outcome = outcome;
                let poll = step.poll.as_ref().expect("deadline implies poll");
                outcome.diff(
                    "poll",
                    format!(
                        "timed out after {:.1}s ({attempts} attempts) waiting until {}",
                        started.elapsed().as_secs_f64(),
                        poll.until
                    ),
                );
                break (outcome, raw);
            }
            if step.id == TOO_OLD_STEP {
                self.filler_updates(&mut Outcome::default()).await;
            } else {
                tokio::time::sleep(self.opts.poll_interval).await;
            }
        };
        if let Some(raw) = &raw {
            self.capture_and_relate(step, raw, &mut outcome);
        } else {
            for var in step.capture.keys() {
                outcome.diff(&format!("capture {var}"), "no answer to capture from");
            }
        }
        StepResult {
            id: step.id.clone(),
            passed: outcome.is_match(),
            differences: outcome.differences,
            notes: outcome.notes,
            attempts,
            elapsed: started.elapsed(),
        }
    }

    /// One attempt: the request (with its `during` requests) and the comparison.
    async fn attempt(&self, step: &Step) -> (Outcome, Option<RawAnswer>) {
        let mut out = Outcome::default();
        let watch = is_watch_request(&step.request.path);
        let sent = match self.send(&step.request, &mut out).await {
            Some(sent) => sent,
            None => return (out, None),
        };
        let (parts, body) = sent;
        let opened = Instant::now();
        let body_deadline = opened + self.body_timeout(&step.request.path);
        let (body, during) = tokio::join!(read_body(body, body_deadline), async {
            let mut results = Vec::new();
            for d in &step.during {
                tokio::time::sleep_until(
                    (opened + Duration::from_secs_f64(d.after_s.max(0.0))).into(),
                )
                .await;
                let mut dout = Outcome::default();
                if let Some(raw) = self.exchange(&d.request, &mut dout).await {
                    let answer =
                        replayed_answer(&raw, false, &d.request.path, &d.response, &mut dout);
                    let cmp = compare_response(&d.response, &answer);
                    dout.absorb("", cmp);
                }
                results.push(dout);
            }
            results
        });
        let (bytes, body_err) = body;
        if let Some(e) = body_err {
            out.diff("body", e);
        }
        let raw = raw_answer(&parts, bytes);
        let answer = replayed_answer(&raw, watch, &step.request.path, &step.response, &mut out);
        let cmp = compare_response(&step.response, &answer);
        out.absorb("", cmp);
        for (i, (d, dout)) in step.during.iter().zip(during).enumerate() {
            out.absorb(
                &format!("during[{i}] {} {}: ", d.request.method, d.request.path),
                dout,
            );
        }
        (out, Some(raw))
    }

    fn body_timeout(&self, path: &str) -> Duration {
        let watch_seconds = path
            .split_once('?')
            .and_then(|(_, q)| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("timeoutSeconds="))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .filter(|_| is_watch_request(path))
            .unwrap_or(0);
        self.opts.request_timeout + Duration::from_secs(watch_seconds)
    }

    /// Sends a request and reads its whole answer.
    async fn exchange(&self, req: &RecordedRequest, out: &mut Outcome) -> Option<RawAnswer> {
        let (parts, body) = self.send(req, out).await?;
        let (bytes, err) = read_body(body, Instant::now() + self.body_timeout(&req.path)).await;
        if let Some(e) = err {
            out.diff("body", e);
        }
        Some(raw_answer(&parts, bytes))
    }

    /// Sends a request (variables substituted) and returns the response head and body stream.
    async fn send(
        &self,
        req: &RecordedRequest,
        out: &mut Outcome,
    ) -> Option<(http::response::Parts, Body)> {
        let mut missing = Vec::new();
        let path = substitute_text(&req.path, &self.vars, true, &mut missing);
        let body = req.body.as_ref().map(|b| match b {
            Value::String(s) => substitute_text(s, &self.vars, false, &mut missing).into_bytes(),
            other => substitute_json(other, &self.vars, &mut missing)
                .to_string()
                .into_bytes(),
        });
        for var in missing {
            out.diff(
                "request",
                format!("variable {{{{{var}}}}} was never captured"),
            );
        }
        let request = match build_request(&req.method, &path, &req.headers, body) {
            Ok(r) => r,
            Err(e) => {
                out.diff(
                    "request",
                    format!("cannot build {} {path}: {e}", req.method),
                );
                return None;
            }
        };
        match tokio::time::timeout(self.opts.request_timeout, self.client.send(request)).await {
            Ok(Ok(resp)) => Some(resp.into_parts()),
            Ok(Err(e)) => {
                out.diff("request", format!("{} {path} failed: {e}", req.method));
                None
            }
            Err(_) => {
                out.diff(
                    "request",
                    format!(
                        "{} {path}: no response head within {:?}",
                        req.method, self.opts.request_timeout
                    ),
                );
                None
            }
        }
    }

    /// Pushes resourceVersions forward between attempts of `watch/too-old`, as the recorder did.
    async fn filler_updates(&mut self, out: &mut Outcome) {
        for _ in 0..FILLER_UPDATES_PER_ATTEMPT {
            self.filler_counter += 1;
            let req = RecordedRequest {
                method: "PUT".into(),
                path: "/api/v1/namespaces/conf-b/configmaps/filler".into(),
                headers: [("Content-Type".to_string(), "application/json".to_string())].into(),
                body: Some(json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "filler", "namespace": "conf-b"},
                    "data": {"n": self.filler_counter.to_string()},
                })),
            };
            match self.exchange(&req, out).await {
                Some(raw) if raw.status == 200 => {}
                Some(raw) => {
                    out.diff("filler update", format!("answered {}", raw.status));
                    return;
                }
                None => return,
            }
        }
    }

    fn capture_and_relate(&mut self, step: &Step, raw: &RawAnswer, out: &mut Outcome) {
        let json = raw.json();
        for (var, path) in &step.capture {
            match json.as_ref().and_then(|j| json_path(j, path)) {
                Some(v) => {
                    self.vars.insert(var.clone(), v.clone());
                }
                None => out.diff(
                    &format!("capture {var}"),
                    format!("{path} not found in the answer"),
                ),
            }
        }
        for rel in &step.relations {
            let here = json.as_ref().and_then(|j| json_path(j, &rel.path));
            let Some(captured) = self.vars.get(&rel.capture) else {
                out.diff(
                    &format!("relation {}", rel.path),
                    format!("variable {{{{{}}}}} was never captured", rel.capture),
                );
                continue;
            };
            let equal = here == Some(captured);
            if equal != rel.equal {
                out.diff(
                    &format!("relation {}", rel.path),
                    format!(
                        "expected {} {{{{{}}}}} ({}), got {}",
                        if rel.equal {
                            "equal to"
                        } else {
                            "different from"
                        },
                        rel.capture,
                        show(captured),
                        here.map_or("nothing".to_string(), show)
                    ),
                );
            }
        }
    }
}

/// Builds the HTTP request: recorder's User-Agent, default `Accept`, the step's headers.
fn build_request(
    method: &str,
    path: &str,
    headers: &std::collections::BTreeMap<String, String>,
    body: Option<Vec<u8>>,
) -> Result<http::Request<Body>, http::Error> {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::USER_AGENT, USER_AGENT);
    if !headers.keys().any(|k| k.eq_ignore_ascii_case("accept")) {
        builder = builder.header(http::header::ACCEPT, "application/json");
    }
    for (k, v) in headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder.body(body.map_or_else(Body::empty, Body::from))
}

/// Reads a body to its end or the deadline; what arrived before an error or the deadline is kept.
async fn read_body(mut body: Body, deadline: Instant) -> (Bytes, Option<String>) {
    let mut buf = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline.into(), body.frame()).await {
            Err(_) => {
                return (
                    buf.into(),
                    Some("the body did not end in time (stream kept open?)".into()),
                );
            }
            Ok(None) => return (buf.into(), None),
            Ok(Some(Err(e))) => return (buf.into(), Some(format!("reading the body failed: {e}"))),
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    buf.extend_from_slice(data);
                }
            }
        }
    }
}

fn raw_answer(parts: &http::response::Parts, body: Bytes) -> RawAnswer {
    let text = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    RawAnswer {
        status: parts.status.as_u16(),
        content_type: parts.headers.get(http::header::CONTENT_TYPE).map(text),
        warnings: parts
            .headers
            .get_all(http::header::WARNING)
            .iter()
            .map(text)
            .collect(),
        body,
    }
}

/// Normalises a raw answer into what the matcher compares.
fn replayed_answer(
    raw: &RawAnswer,
    watch: bool,
    path: &str,
    recorded: &RecordedResponse,
    out: &mut Outcome,
) -> ReplayedAnswer {
    let json = if watch && raw.status == 200 {
        Some(watch_body(
            &raw.body,
            WatchShape::for_request(path, recorded.body.as_ref()),
            out,
        ))
    } else {
        raw.json().map(|mut j| {
            normalise_body(&mut j, out);
            j
        })
    };
    ReplayedAnswer {
        status: raw.status,
        content_type: raw.content_type.clone(),
        warnings: raw.warnings.clone(),
        text: String::from_utf8_lossy(&raw.body).into_owned(),
        json,
    }
}

/// Replaces every `{{var}}` in `text`; `encode` percent-encodes the value (request paths).
fn substitute_text(
    text: &str,
    vars: &HashMap<String, Value>,
    encode: bool,
    missing: &mut Vec<String>,
) -> String {
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        let name = &rest[start + 2..start + 2 + len];
        result.push_str(&rest[..start]);
        match vars.get(name) {
            Some(v) => {
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if encode {
                    result.push_str(&percent_encode(&value));
                } else {
                    result.push_str(&value);
                }
            }
            None => {
                missing.push(name.to_string());
                result.push_str(&rest[start..start + len + 4]);
            }
        }
        rest = &rest[start + len + 4..];
    }
    result.push_str(rest);
    result
}

/// Substitutes inside a JSON body: a string that is exactly `{{var}}` becomes the captured value.
fn substitute_json(
    value: &Value,
    vars: &HashMap<String, Value>,
    missing: &mut Vec<String>,
) -> Value {
    match value {
        Value::String(s) => {
            let exact = s
                .strip_prefix("{{")
                .and_then(|r| r.strip_suffix("}}"))
                .filter(|name| !name.contains("{{") && !name.contains("}}"));
            match exact.and_then(|name| vars.get(name)) {
                Some(v) => v.clone(),
                None => Value::String(substitute_text(s, vars, false, missing)),
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| substitute_json(v, vars, missing))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute_json(v, vars, missing)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters: captured values (continue
/// tokens) go into a query string, and the recorder's real-server tokens needed no encoding.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    fn vars() -> HashMap<String, Value> {
        [
            ("rv".to_string(), json!("42")),
            ("cont".to_string(), json!("a+b/c=")),
            (
                "uid".to_string(),
                json!("0b1e6f3a-2c4d-4e5f-8a9b-0c1d2e3f4a5b"),
            ),
            ("n".to_string(), json!(3)),
        ]
        .into()
    }

    #[test]
    fn paths_substitute_and_encode() {
        let mut missing = Vec::new();
        assert_eq!(
            substitute_text(
                "/x?rv={{rv}}&continue={{cont}}&n={{n}}&m={{nope}}",
                &vars(),
                true,
                &mut missing
            ),
            "/x?rv=42&continue=a%2Bb%2Fc%3D&n=3&m={{nope}}"
        );
        assert_eq!(missing, vec!["nope"]);
    }

    #[test]
    fn bodies_substitute_exact_values_and_text() {
        let mut missing = Vec::new();
        let body = json!({
            "metadata": {"resourceVersion": "{{rv}}", "uid": "{{uid}}"},
            "n": "{{n}}",
            "msg": "rv={{rv}} n={{n}}",
            "list": ["{{cont}}"]
        });
        assert_eq!(
            substitute_json(&body, &vars(), &mut missing),
            json!({
                "metadata": {"resourceVersion": "42", "uid": "0b1e6f3a-2c4d-4e5f-8a9b-0c1d2e3f4a5b"},
                "n": 3,
                "msg": "rv=42 n=3",
                "list": ["a+b/c="]
            })
        );
        assert!(missing.is_empty());
        assert_eq!(
            substitute_text("a: {{rv}}", &vars(), false, &mut missing),
            "a: 42"
        );
    }

    #[test]
    fn report_renders_summary_and_failures() {
        let report = ReplayReport {
            steps: vec![
                StepResult {
                    id: "a/ok".into(),
                    passed: true,
                    differences: vec![],
                    notes: vec!["$.x: extra field 1".into()],
                    attempts: 1,
                    elapsed: Duration::ZERO,
                },
                StepResult {
                    id: "a/bad".into(),
                    passed: false,
                    differences: vec!["status: expected 200, got 404".into()],
                    notes: vec![],
                    attempts: 3,
                    elapsed: Duration::ZERO,
                },
            ],
            elapsed: Duration::ZERO,
        };
        assert_eq!(report.summary(), "conformance: 1/2 steps match");
        assert_eq!(report.failed_ids(), vec!["a/bad"]);
        let text = report.render();
        assert!(text.contains("FAIL a/bad (3 attempts"), "{text}");
        assert!(text.contains("  - status: expected 200, got 404"), "{text}");
        assert!(text.contains("  note: $.x: extra field 1"), "{text}");
    }

    /// What the fake server saw.
    #[derive(Default)]
    struct Seen {
        requests: Vec<(String, String, http::HeaderMap, String)>,
        polls: u32,
    }

    /// A tiny HTTP server with canned answers, to exercise the runner through a real
    /// `kube::Client`.
    async fn fake_server(seen: Arc<Mutex<Seen>>) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let path = parts.uri.path_and_query().unwrap().to_string();
                            let mut s = seen.lock().unwrap();
                            s.requests.push((
                                parts.method.to_string(),
                                path.clone(),
                                parts.headers.clone(),
                                String::from_utf8_lossy(&body).into_owned(),
                            ));
                            let (status, ct, text): (u16, Option<&str>, String) = match (parts.method.as_str(), path.as_str()) {
                                ("POST", "/api/v1/namespaces/a/configmaps") => (
                                    201,
                                    Some("application/json"),
                                    json!({"kind": "ConfigMap", "metadata": {"name": "x", "uid": "0b1e6f3a-2c4d-4e5f-8a9b-0c1d2e3f4a5b", "resourceVersion": "7", "managedFields": [{}]}}).to_string(),
                                ),
                                ("GET", "/api/v1/namespaces/a/configmaps/x?rv=7") => (
                                    200,
                                    Some("application/json"),
                                    json!({"kind": "ConfigMap", "metadata": {"name": "x", "resourceVersion": "7"}, "data": {"uid": String::from_utf8_lossy(&body)}}).to_string(),
                                ),
                                ("GET", p) if p.contains("watch=1") => (
                                    200,
                                    Some("application/json"),
                                    format!(
                                        "{}\n{}\n{}\n",
                                        json!({"type": "ADDED", "object": {"metadata": {"name": "x"}}}),
                                        json!({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}),
                                        json!({"type": "MODIFIED", "object": {"metadata": {"name": "x"}}}),
                                    ),
                                ),
                                ("GET", "/poll") => {
                                    s.polls += 1;
                                    if s.polls < 3 { (404, Some("application/json"), "{}".into()) } else { (200, Some("application/json"), "{\"ready\":true}".into()) }
                                }
                                ("PATCH", _) => (200, Some("application/json"), "{\"patched\":true}".into()),
                                _ => (204, None, String::new()),
                            };
                            let mut resp = http::Response::builder().status(status);
                            if let Some(ct) = ct {
                                resp = resp.header("Content-Type", ct);
                            }
                            Ok::<_, std::convert::Infallible>(
                                resp.body(Full::new(Bytes::from(text))).unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        addr
    }

    const MINI: &str = r#"{"steps": [
        {"id": "a/create", "request": {"method": "POST", "path": "/api/v1/namespaces/a/configmaps",
            "headers": {"Content-Type": "application/json"}, "body": {"metadata": {"name": "x"}}},
         "response": {"status": 201, "headers": {"Content-Type": "application/json"},
            "body": {"kind": "ConfigMap", "metadata": {"name": "x", "uid": "<uid>", "resourceVersion": "<resourceVersion>"}}},
         "capture": {"rv": "$.metadata.resourceVersion", "uid": "$.metadata.uid"}},
        {"id": "a/get", "request": {"method": "GET", "path": "/api/v1/namespaces/a/configmaps/x?rv={{rv}}",
            "headers": {"Accept": "application/yaml"}, "body": "{{uid}}"},
         "relations": [{"path": "$.metadata.resourceVersion", "capture": "rv", "equal": true}],
         "response": {"status": 200, "headers": {"Content-Type": "application/json"},
            "body": {"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"uid": "<uid>"}}}},
        {"id": "b/watch", "request": {"method": "GET", "path": "/api/v1/namespaces/a/configmaps?watch=1&allowWatchBookmarks=true&timeoutSeconds=1"},
         "during": [{"after_s": 0.05, "request": {"method": "PATCH", "path": "/other", "headers": {"Content-Type": "application/merge-patch+json"}, "body": {}},
                     "response": {"status": 200, "headers": {"Content-Type": "application/json"}, "body": {"patched": true}}}],
         "response": {"status": 200, "headers": {"Content-Type": "application/json"},
            "body": {"events": [{"type": "ADDED", "object": {"metadata": {"name": "x"}}}, {"type": "MODIFIED", "object": {"metadata": {"name": "x"}}}], "bookmarks_received": true}}},
        {"id": "b/poll", "request": {"method": "GET", "path": "/poll"}, "poll": {"until": "ready", "timeout_s": 30},
         "response": {"status": 200, "headers": {"Content-Type": "application/json"}, "body": {"ready": true}}},
        {"id": "b/empty", "request": {"method": "GET", "path": "/empty"},
         "response": {"status": 204, "headers": {}}},
        {"id": "b/wrong", "request": {"method": "GET", "path": "/empty"},
         "response": {"status": 200, "headers": {"Content-Type": "application/json"}, "body": {"a": 1}}}
    ]}"#;

    #[tokio::test]
    async fn replays_through_a_kube_client() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let addr = fake_server(seen.clone()).await;
        let mut config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        config.default_retry = false;
        let client = kube::Client::try_from(config).unwrap();
        let rec = Recording::from_json_str(MINI).unwrap();
        let opts = ReplayOptions {
            poll_interval: Duration::from_millis(10),
            ..Default::default()
        };
        let report = replay(&client, &rec, &opts).await;
        let text = report.render();
        assert_eq!(report.summary(), "conformance: 5/6 steps match", "{text}");
        assert_eq!(report.failed_ids(), vec!["b/wrong"], "{text}");
        let poll = report.steps.iter().find(|s| s.id == "b/poll").unwrap();
        assert_eq!(poll.attempts, 3, "{text}");
        let create = &report.steps[0];
        assert!(create.notes.is_empty(), "managedFields are dropped: {text}");

        let requests = std::mem::take(&mut seen.lock().unwrap().requests);
        let (method, path, headers, body) = &requests[1];
        assert_eq!(
            (method.as_str(), path.as_str()),
            ("GET", "/api/v1/namespaces/a/configmaps/x?rv=7")
        );
        assert_eq!(body, "0b1e6f3a-2c4d-4e5f-8a9b-0c1d2e3f4a5b");
        assert_eq!(
            headers.get_all("user-agent").iter().collect::<Vec<_>>(),
            vec![USER_AGENT]
        );
        assert_eq!(
            headers.get_all("accept").iter().collect::<Vec<_>>(),
            vec!["application/yaml"]
        );
        let (_, _, headers, _) = &requests[0];
        assert_eq!(
            headers.get_all("user-agent").iter().collect::<Vec<_>>(),
            vec![USER_AGENT]
        );
        assert_eq!(headers.get("accept").unwrap(), "application/json");
        assert_eq!(headers.get("content-type").unwrap(), "application/json");
        assert!(
            requests
                .iter()
                .any(|(m, p, _, _)| m == "PATCH" && p == "/other")
        );

        // Only filters what is reported: captures of unreported steps still feed later ones.
        let only = ReplayOptions {
            only: vec!["a/get".into()],
            ..opts
        };
        let report = replay(&client, &rec, &only).await;
        assert_eq!(
            report.summary(),
            "conformance: 1/1 steps match",
            "{}",
            report.render()
        );
    }

    #[tokio::test]
    async fn polls_time_out_with_a_difference() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let addr = fake_server(seen.clone()).await;
        let client =
            kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap()))
                .unwrap();
        let rec = Recording::from_json_str(
            r#"{"steps": [{"id": "p", "request": {"method": "GET", "path": "/empty"}, "poll": {"until": "never", "timeout_s": 10},
                "response": {"status": 200, "headers": {}}}]}"#,
        )
        .unwrap();
        let opts = ReplayOptions {
            poll_timeout_scale: 0.02,
            poll_interval: Duration::from_millis(20),
            ..Default::default()
        };
        let report = replay(&client, &rec, &opts).await;
        let step = &report.steps[0];
        assert!(!step.passed);
        assert!(step.attempts > 1, "{step:?}");
        assert!(
            step.differences
                .iter()
                .any(|d| d.starts_with("poll: timed out")),
            "{step:?}"
        );
    }
}
