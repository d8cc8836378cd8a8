//! `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`: validated like kube-apiserver
//! v1.32 (`pkg/registry/core/pod/strategy.go`: `LogLocation`, `streamLocation`,
//! `PortForwardLocation`, `validateContainer`; `pkg/registry/core/pod/rest`), then proxied to
//! the node's kubelet (see [`super::kubelet_client`]).
//!
//! * `log` streams the kubelet's `/containerLogs/{ns}/{pod}/{container}` body back (a `follow`
//!   stays open until either side closes); a kubelet error status is mapped the way
//!   `GenericHttpResponseChecker` does.
//! * `exec`/`attach`/`portforward` act as the upgrade-aware proxy: the client's request (its
//!   `Connection`/`Upgrade`/`X-Stream-Protocol-Version`/... headers, not its credentials) goes to
//!   the kubelet's `/exec|/attach/{ns}/{pod}/{container}?...` or `/portForward/{ns}/{pod}`; a
//!   101 answer is relayed with the kubelet's headers and the two upgraded connections are
//!   spliced byte for byte; an error status (>= 400) is relayed as the kubelet sent it; any other
//!   status answers `invalid upgrade response: status code N`.
//!
//! **Known gap: no WebSocket translation.** kube-apiserver 1.32 translates a WebSocket
//! `v5.channel.k8s.io` exec/attach (and `SPDY/3.1+portforward.k8s.io` port-forward tunnel) into
//! SPDY towards the kubelet (`TranslateStreamCloseWebsocketRequests`, `PortForwardWebsockets`).
//! This server has no translator: like a kube-apiserver with those gates off, it forwards a
//! WebSocket upgrade to the kubelet unchanged. A kubelet that does not answer it with a 101 for
//! the offered subprotocol makes client-go's WebSocket dialer return an
//! `httpstream.UpgradeFailureError`, and kubectl's `FallbackExecutor` / fallback port-forward
//! dialer then retries over SPDY (`httpstream.IsUpgradeFailure`).
//!
//! Also not done: `X-Forwarded-For` on the proxied request (the handler does not see the peer
//! address), `stream=` for logs (the `PodLogsQuerySplitStreams` alpha gate is off in 1.32), and
//! the per-connection bandwidth limit.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::errors::{ApiError, FieldError};
use super::http::{Body, Query, error_response, full};
use super::kubelet_client::{self, ConnectionInfo};
use super::server::Shared;

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `url.Values.Encode`: keys sorted, values in order.
fn encode_params(mut params: Vec<(&str, String)>) -> String {
    params.sort_by(|a, b| a.0.cmp(b.0));
    params
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// apimachinery's `Convert_Slice_string_To_bool`: absent, `0` and `false` (any case) are false,
/// everything else is true.
fn query_bool(q: &Query, k: &str) -> bool {
    match q.get(k) {
        None => false,
        Some(v) => !(v == "0" || v.eq_ignore_ascii_case("false")),
    }
}

/// An optional int64 query parameter (`Convert_Slice_string_To_Pointer_int64`).
fn query_i64(q: &Query, k: &str) -> Result<Option<i64>, ApiError> {
    match q.get(k) {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
            ApiError::bad_request(format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))
        }),
    }
}

/// kube-apiserver's `validateContainer`: an empty name picks the only container; several
/// containers need a name (listing init, regular and ephemeral containers as
/// `podutil.VisitContainers` does); a given name must be one of them.
pub fn validate_container(pod: &Value, container: &str) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let names_of = |field: &str| -> Vec<String> {
        pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let containers = names_of("containers");
    let mut all = names_of("initContainers");
    all.extend(containers.iter().cloned());
    all.extend(names_of("ephemeralContainers"));
    if container.is_empty() {
        return match containers.len() {
            1 => Ok(containers[0].clone()),
            0 => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}"
            ))),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                all.join(" ")
            ))),
        };
    }
    if !all.iter().any(|c| c == container) {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    Ok(container.to_string())
}

/// A kubelet response body re-typed for our responses: a transport error ends the stream
/// (the client sees the body end, as when kube-apiserver's copy stops).
pub struct EndOnError(pub Incoming);

impl HttpBody for EndOnError {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match Pin::new(&mut self.0).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// kube-apiserver's `GenericHttpResponseChecker` for `pods/log`: 500 becomes an internal
/// error carrying the kubelet's text, 400 a bad request, anything else a generic server
/// response naming `pods/log NAME`.
fn kubelet_log_error(code: u16, body: &str, name: &str) -> ApiError {
    match code {
        500 => ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {body}"),
            Some(json!({"causes": [{"message": body}]})),
        ),
        400 => ApiError::bad_request(body),
        _ => generic_server_response(code, body, "pods/log", name),
    }
}

/// apimachinery's `NewGenericServerResponse` with an empty verb (hence the `( pods/log x)`).
pub fn generic_server_response(
    code: u16,
    server_message: &str,
    resource: &str,
    name: &str,
) -> ApiError {
    let (reason, message) = match code {
        409 => ("Conflict", "the server reported a conflict".to_string()),
        404 => (
            "NotFound",
            "the server could not find the requested resource".to_string(),
        ),
        400 => (
            "BadRequest",
            "the server rejected our request for an unknown reason".to_string(),
        ),
        401 => (
            "Unauthorized",
            "the server has asked for the client to provide credentials".to_string(),
        ),
        403 => ("Forbidden", server_message.to_string()),
        406 => ("NotAcceptable", server_message.to_string()),
        415 => ("UnsupportedMediaType", server_message.to_string()),
        405 => (
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".to_string(),
        ),
        422 => (
            "Invalid",
            "the server rejected our request due to an error in our request".to_string(),
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request".to_string(),
        ),
        504 => (
            "Timeout",
            "the server was unable to return a response in the time allotted, but may still be processing the request".to_string(),
        ),
        429 => (
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later"
                .to_string(),
        ),
        c if c >= 500 => (
            "InternalError",
            format!(
                "an error on the server ({server_message:?}) has prevented the request from succeeding"
            ),
        ),
        c => (
            "",
            format!("the server responded with the status code {c} but did not return more information"),
        ),
    };
    let mut details = serde_json::Map::new();
    if !name.is_empty() {
        details.insert("name".into(), json!(name));
    }
    details.insert("kind".into(), json!(resource));
    ApiError::new(
        code,
        reason,
        format!("{message} ( {resource} {name})"),
        Some(Value::Object(details)),
    )
}

/// A plain Go error turned into a Status by `ErrorToAPIStatus`: 500, no reason.
fn plain_error(msg: impl Into<String>) -> ApiError {
    ApiError::new(500, "", msg, None)
}

fn get_pod(shared: &Shared, ns: &str, name: &str) -> Result<Value, ApiError> {
    shared
        .lock()
        .store
        .get("pods", ns, name)
        .map(|p| (*p).clone())
        .ok_or_else(|| ApiError::not_found("", "pods", name))
}

/// Send one request on a fresh TLS connection to the kubelet. Upgrades stay possible on the
/// returned response (the connection task is spawned with upgrades enabled).
async fn kubelet_request(
    shared: &Shared,
    info: &ConnectionInfo,
    skip_verify: bool,
    req: hyper::Request<Body>,
) -> Result<Response<Incoming>, KubeletError> {
    let tls = kubelet_client::dial(shared, info, skip_verify)
        .await
        .map_err(KubeletError::Dial)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| KubeletError::Send(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| KubeletError::Send(go_http_error(&e)))
}

enum KubeletError {
    /// Connecting or the TLS handshake failed.
    Dial(String),
    /// Writing the request or reading the response failed.
    Send(String),
}

fn go_http_error(e: &hyper::Error) -> String {
    if e.is_incomplete_message() || e.is_closed() {
        "EOF".into()
    } else {
        e.to_string()
    }
}

// ----- log -----

/// `GET pods/{name}/log`.
pub async fn log(shared: Arc<Shared>, ns: &str, name: &str, q: &Query) -> Response<Body> {
    match log_inner(&shared, ns, name, q).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn log_inner(
    shared: &Shared,
    ns: &str,
    name: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let follow = query_bool(q, "follow");
    let previous = query_bool(q, "previous");
    let timestamps = query_bool(q, "timestamps");
    let skip_verify = query_bool(q, "insecureSkipTLSVerifyBackend");
    let tail_lines = query_i64(q, "tailLines")?;
    let since_seconds = query_i64(q, "sinceSeconds")?;
    let limit_bytes = query_i64(q, "limitBytes")?;
    let since_time = match q.get("sinceTime").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            let ts: jiff::Timestamp = s.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "parsing time {s:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {s:?} as \"2006\""
                ))
            })?;
            // metav1.Time is second-precision on the wire (RFC3339).
            Some(
                jiff::Timestamp::from_second(ts.as_second())
                    .unwrap_or(ts)
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string(),
            )
        }
    };

    // ValidatePodLogOptions.
    let mut errs = Vec::new();
    if let Some(t) = tail_lines.filter(|t| *t < 0) {
        errs.push(FieldError::invalid(
            "tailLines",
            &json!(t),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(l) = limit_bytes.filter(|l| *l < 1) {
        errs.push(FieldError::invalid(
            "limitBytes",
            &json!(l),
            "must be greater than 0",
        ));
    }
    match (since_seconds, &since_time) {
        (Some(_), Some(_)) => errs.push(FieldError::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        )),
        (Some(s), None) if s < 1 => errs.push(FieldError::invalid(
            "sinceSeconds",
            &json!(s),
            "must be greater than 0",
        )),
        _ => {}
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid("", "PodLogOptions", name, &errs));
    }

    let pod = get_pod(shared, ns, name)?;
    let container = validate_container(&pod, q.get("container").unwrap_or(""))?;
    let Some(node) = kubelet_client::node_name(&pod) else {
        // LogLocation returns no location: an empty stream, which is written as 204.
        return Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(full(Bytes::new()))
            .expect("valid response"));
    };
    let info = kubelet_client::connection_info(shared, node)?;

    let mut params: Vec<(&str, String)> = Vec::new();
    if follow {
        params.push(("follow", "true".into()));
    }
    if previous {
        params.push(("previous", "true".into()));
    }
    if timestamps {
        params.push(("timestamps", "true".into()));
    }
    if let Some(s) = since_seconds {
        params.push(("sinceSeconds", s.to_string()));
    }
    if let Some(t) = since_time {
        params.push(("sinceTime", t));
    }
    if let Some(t) = tail_lines {
        params.push(("tailLines", t.to_string()));
    }
    if let Some(l) = limit_bytes {
        params.push(("limitBytes", l.to_string()));
    }
    let mut path = format!("/containerLogs/{ns}/{name}/{container}");
    let query = encode_params(params);
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query);
    }
    let url = info.url(&path);
    let req = hyper::Request::get(&path)
        .header("Host", info.host_port())
        .header("User-Agent", "kube-apiserver")
        .body(full(Bytes::new()))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let resp = match kubelet_request(shared, &info, skip_verify, req).await {
        Ok(r) => r,
        Err(KubeletError::Dial(e)) | Err(KubeletError::Send(e)) => {
            return Err(plain_error(format!("Get {url:?}: {e}")));
        }
    };
    let code = resp.status().as_u16();
    if !(200..=206).contains(&code) {
        let body = http_body_util::Limited::new(resp.into_body(), 50_000)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(kubelet_log_error(
            code,
            &String::from_utf8_lossy(&body),
            name,
        ));
    }
    Ok(Response::builder()
        .status(200)
        .header("Content-Type", "text/plain")
        .body(EndOnError(resp.into_body()).boxed())
        .expect("valid response"))
}

// ----- exec / attach / portforward -----

/// Go's `httpstream.IsUpgradeRequest`: a `Connection` header mentioning `upgrade`.
pub fn is_upgrade_request(headers: &hyper::HeaderMap) -> bool {
    headers.get_all(hyper::header::CONNECTION).iter().any(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .to_ascii_lowercase()
            .contains("upgrade")
    })
}

/// Where the kubelet serves a connect subresource: its path and query.
fn connect_location(
    pod: &Value,
    ns: &str,
    name: &str,
    sub: &str,
    q: &Query,
) -> Result<String, ApiError> {
    let mut params: Vec<(&str, String)> = Vec::new();
    let kubelet_path = match sub {
        "exec" | "attach" => {
            let container = validate_container(pod, q.get("container").unwrap_or(""))?;
            if query_bool(q, "stdin") {
                params.push(("input", "1".into()));
            }
            if query_bool(q, "stdout") {
                params.push(("output", "1".into()));
            }
            if query_bool(q, "stderr") {
                params.push(("error", "1".into()));
            }
            if query_bool(q, "tty") {
                params.push(("tty", "1".into()));
            }
            if sub == "exec" {
                for c in q.all("command") {
                    params.push(("command", c.clone()));
                }
            }
            format!("/{sub}/{ns}/{name}/{container}")
        }
        _ => {
            let mut ports = Vec::new();
            for p in q.all("ports") {
                for part in p.split(',').filter(|s| !s.is_empty()) {
                    let n: i32 = part.trim().parse().map_err(|_| {
                        ApiError::bad_request(format!(
                            "strconv.ParseInt: parsing {part:?}: invalid syntax"
                        ))
                    })?;
                    ports.push(n.to_string());
                }
            }
            if !ports.is_empty() {
                params.push(("port", ports.join(",")));
            }
            format!("/portForward/{ns}/{name}")
        }
    };
    let query = encode_params(params);
    Ok(if query.is_empty() {
        kubelet_path
    } else {
        format!("{kubelet_path}?{query}")
    })
}

/// `GET|POST pods/{name}/exec|attach|portforward`.
pub async fn connect(
    shared: Arc<Shared>,
    parts: hyper::http::request::Parts,
    ns: &str,
    name: &str,
    sub: &str,
    q: &Query,
) -> Response<Body> {
    match connect_inner(&shared, parts, ns, name, sub, q).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

/// Request headers not passed to the kubelet: the caller's credentials (kube-apiserver's
/// authentication filter strips them) and what the new connection sets itself.
fn forwarded_header(name: &hyper::header::HeaderName) -> bool {
    let n = name.as_str();
    !(n == "authorization"
        || n == "host"
        || n == "content-length"
        || n == "transfer-encoding"
        || n.starts_with("impersonate-"))
}

async fn connect_inner(
    shared: &Shared,
    mut parts: hyper::http::request::Parts,
    ns: &str,
    name: &str,
    sub: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let pod = get_pod(shared, ns, name)?;
    let location = connect_location(&pod, ns, name, sub, q)?;
    let Some(node) = kubelet_client::node_name(&pod) else {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    };
    let info = kubelet_client::connection_info(shared, node)?;
    if !is_upgrade_request(&parts.headers) {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let on_client_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();

    let mut b = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(&location)
        .header("Host", info.host_port());
    for (k, v) in parts.headers.iter() {
        if forwarded_header(k) {
            b = b.header(k, v);
        }
    }
    let req = b
        .body(full(Bytes::new()))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut resp = match kubelet_request(shared, &info, false, req).await {
        Ok(r) => r,
        Err(KubeletError::Dial(e)) => {
            return Err(plain_error(format!("error dialing backend: {e}")));
        }
        Err(KubeletError::Send(e)) => return Err(plain_error(e)),
    };
    let status = resp.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        if status.as_u16() < 400 {
            return Err(plain_error(format!(
                "invalid upgrade response: status code {}",
                status.as_u16()
            )));
        }
        // Echo the kubelet's error answer as it is.
        let headers = resp.headers().clone();
        let body = http_body_util::Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut out = Response::builder().status(status);
        for (k, v) in headers.iter() {
            if k != hyper::header::CONTENT_LENGTH && k != hyper::header::TRANSFER_ENCODING {
                out = out.header(k, v);
            }
        }
        return Ok(out.body(full(body)).expect("valid response"));
    }
    let Some(on_client_upgrade) = on_client_upgrade else {
        return Err(plain_error(
            "request connection cannot be hijacked: HTTP/2 connection",
        ));
    };
    let backend = hyper::upgrade::on(&mut resp)
        .await
        .map_err(|e| plain_error(format!("error proxying upgrade: {e}")))?;
    let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (k, v) in resp.headers().iter() {
        out = out.header(k, v);
    }
    tokio::spawn(async move {
        let Ok(client) = on_client_upgrade.await else {
            return;
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        // Each direction is shut down once its reader ends; the task ends when both have (or on
        // the first error), dropping both connections.
        let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
    });
    Ok(out.body(full(Bytes::new())).expect("valid response"))
}
