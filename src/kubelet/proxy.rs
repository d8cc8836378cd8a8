//! The request handler: resolve the virtual pod to its host copy, then relay.
//!
//! Logs are a streamed `GET` of the host `pods/log`. `exec`, `attach` and `portForward` are
//! upgraded connections (SPDY/3.1 as kube-apiserver speaks to kubelets, or WebSocket): the
//! upgrade request goes to the host API's `pods/exec`, `pods/attach` or `pods/portforward`
//! with the caller's `Upgrade`, `Connection`, `X-Stream-Protocol-Version` and `Sec-WebSocket-*`
//! headers; when the host answers `101 Switching Protocols`, the caller gets the host's
//! answer and the two upgraded connections are spliced byte for byte. Nothing of the
//! streaming protocol is parsed: stream headers carry stream types, ports and request ids,
//! never pod names, so there is nothing to translate inside them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::route::{Endpoint, PodKey, Route};
use crate::cache::VirtualPod;
use crate::markers;
use crate::metrics::{Metrics, code_label};
use crate::sync::Shared;
use crate::translate::{NameRule, host_name};

/// A response body: whole for answers vcsync makes, streamed for logs.
pub type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The caller of one connection, as the TLS handshake established it.
#[derive(Debug, Clone)]
pub enum Caller {
    /// An allowed client certificate with this common name.
    Allowed(String),
    /// Refused for every request: status and reason.
    Refused(StatusCode, String),
}

/// What every request needs.
pub struct Ctx {
    pub shared: Arc<Shared>,
    /// The host client streams go through.
    pub host: kube::Client,
    pub metrics: Arc<Metrics>,
}

/// Request headers that make an upgrade, passed to the host as they are.
const UPGRADE_REQUEST_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "x-stream-protocol-version",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

/// Response headers of a `101` that the caller needs to complete its side.
const UPGRADE_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "x-stream-protocol-version",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut body = body.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(body))
        .expect("a valid response")
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed_unsync()
}

/// Serves one request.
pub async fn handle(ctx: Arc<Ctx>, caller: Caller, req: Request<Incoming>) -> Response<Body> {
    let route = Route::parse(req.uri().path());
    let endpoint = route.as_ref().map_or(Endpoint::Other, Route::endpoint);
    let resp = match (&caller, route) {
        (Caller::Refused(code, why), _) => text(*code, why.clone()),
        (_, Err(e)) => text(StatusCode::BAD_REQUEST, e.to_string()),
        (Caller::Allowed(_), Ok(route)) => dispatch(&ctx, route, req).await,
    };
    ctx.metrics
        .kubelet_request(endpoint.as_str(), code_label(resp.status()));
    resp
}

async fn dispatch(ctx: &Arc<Ctx>, route: Route, req: Request<Incoming>) -> Response<Body> {
    match &route {
        Route::Healthz => return text(StatusCode::OK, "ok"),
        Route::Pods => return pods(ctx),
        Route::NotImplemented(what) => {
            return text(
                StatusCode::NOT_IMPLEMENTED,
                format!("vcsync does not serve /{what} for virtual nodes"),
            );
        }
        Route::NotFound => return text(StatusCode::NOT_FOUND, "404 page not found"),
        Route::Container { .. } | Route::PortForward { .. } => {}
    }
    let endpoint = route.endpoint();
    let pod = route.pod().expect("pod routes name a pod");
    let container = match &route {
        Route::Container { container, .. } => Some(container.as_str()),
        _ => None,
    };
    let host_pod = match resolve(&ctx.shared, pod, container) {
        Ok(name) => name,
        Err(resp) => return *resp,
    };
    let host_ns = ctx.shared.cfg.host_namespace.clone();
    let path = super::route::host_path(&route, &host_ns, &host_pod, req.uri().query())
        .expect("pod routes have a host path");
    let session = Session::start(ctx, endpoint, pod, container);
    let renames = [
        (host_pod.as_str(), pod.name.as_str()),
        (host_ns.as_str(), pod.namespace.as_str()),
    ];
    match endpoint {
        Endpoint::Logs => logs(ctx, path, session, &renames).await,
        _ => upgrade(ctx, path, req, session, &renames).await,
    }
}

/// The host name of `pod`'s copy, or the answer explaining why there is none. Only pods in
/// this tenant's caches resolve: the virtual pod must exist, name the container, and have a
/// host copy that carries this tenant's label and the virtual pod's uid.
fn resolve(
    shared: &Shared,
    pod: &PodKey,
    container: Option<&str>,
) -> Result<String, Box<Response<Body>>> {
    let (ns, name) = (pod.namespace.as_str(), pod.name.as_str());
    let not_found = |msg: String| Box::new(text(StatusCode::NOT_FOUND, msg));
    let Some(vpod) = shared
        .virtual_pods
        .get(&ObjectRef::<VirtualPod>::new(name).within(ns))
    else {
        return Err(not_found(format!("pod \"{ns}/{name}\" not found")));
    };
    if let Some(c) = container
        && !vpod.pod().is_ok_and(|p| has_container(&p, c))
    {
        return Err(not_found(format!(
            "container \"{c}\" not found in pod \"{ns}/{name}\""
        )));
    }
    let host = host_name(&shared.cfg.tenant, ns, name, NameRule::Dns1123Subdomain);
    let owned = shared
        .host_pods
        .get(&ObjectRef::<crate::cache::HostPod>::new(&host).within(&shared.cfg.host_namespace))
        .filter(|h| {
            h.labels().get(markers::MANAGED_BY) == Some(&shared.cfg.tenant)
                && h.annotations().get(markers::VIRTUAL_UID) == vpod.uid().as_ref()
        });
    if owned.is_none() {
        return Err(not_found(format!(
            "pod \"{ns}/{name}\" is not running on the host (not synced yet, or refused by the isolation policy)"
        )));
    }
    Ok(host)
}

fn has_container(pod: &Pod, name: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.containers.iter().any(|c| c.name == name)
        || spec
            .init_containers
            .iter()
            .flatten()
            .any(|c| c.name == name)
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| c.name == name)
}

/// `/pods`: the tenant's synced pods, as the virtual API knows them. The endpoint serves every
/// virtual node at one address, so it cannot tell which node was asked; it lists the tenant's
/// pods on all of them, and never a host object or another tenant's pod.
fn pods(ctx: &Ctx) -> Response<Body> {
    let shared = &ctx.shared;
    let mut items: Vec<VirtualPod> = shared
        .virtual_pods
        .state()
        .into_iter()
        .filter(|p| {
            let host = host_name(
                &shared.cfg.tenant,
                p.namespace().as_deref().unwrap_or_default(),
                &p.name_any(),
                NameRule::Dns1123Subdomain,
            );
            shared
                .host_pods
                .get(
                    &ObjectRef::<crate::cache::HostPod>::new(&host)
                        .within(&shared.cfg.host_namespace),
                )
                .is_some()
        })
        .map(|p| {
            let mut p = (*p).clone();
            p.metadata.managed_fields = None;
            p
        })
        .collect();
    items.sort_by_key(|a| (a.namespace(), a.name_any()));
    let body =
        serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items});
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body.to_string()))
        .expect("a valid response")
}

/// One proxied session: counted as an active stream while it lasts, logged once when it
/// ends (tenant, virtual pod, duration, bytes; never the contents).
pub struct Session {
    metrics: Arc<Metrics>,
    endpoint: Endpoint,
    tenant: String,
    namespace: String,
    pod: String,
    container: String,
    started: Instant,
    bytes_down: Arc<AtomicU64>,
    bytes_up: Arc<AtomicU64>,
    outcome: std::sync::Mutex<&'static str>,
}

impl Session {
    fn start(ctx: &Ctx, endpoint: Endpoint, pod: &PodKey, container: Option<&str>) -> Session {
        ctx.metrics.kubelet_stream(endpoint.as_str(), 1);
        Session {
            metrics: ctx.metrics.clone(),
            endpoint,
            tenant: ctx.shared.cfg.tenant.clone(),
            namespace: pod.namespace.to_string(),
            pod: pod.name.to_string(),
            container: container.unwrap_or_default().to_owned(),
            started: Instant::now(),
            bytes_down: Arc::default(),
            bytes_up: Arc::default(),
            outcome: std::sync::Mutex::new("ended"),
        }
    }

    fn set_outcome(&self, outcome: &'static str) {
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = outcome;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.metrics.kubelet_stream(self.endpoint.as_str(), -1);
        let outcome = *self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        tracing::info!(
            tenant = %self.tenant,
            endpoint = self.endpoint.as_str(),
            namespace = %self.namespace,
            pod = %self.pod,
            container = %self.container,
            duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            bytes_to_caller = self.bytes_down.load(Ordering::Relaxed),
            bytes_from_caller = self.bytes_up.load(Ordering::Relaxed),
            outcome,
            "kubelet session {outcome}"
        );
    }
}

fn host_error(e: &kube::Error) -> Response<Body> {
    text(
        StatusCode::BAD_GATEWAY,
        format!("the host API did not answer: {}", crate::sync::brief(e)),
    )
}

/// Relays a non-success host answer with its status code, as plain text in the tenant's names
/// ([`super::route::refusal_text`]).
async fn relay_failure(
    resp: Response<kube::client::Body>,
    session: &Session,
    renames: &[(&str, &str)],
) -> Response<Body> {
    session.set_outcome("refused by the host");
    let status = resp.status();
    let text = match resp.into_body().collect().await {
        Ok(b) => super::route::refusal_text(&b.to_bytes(), renames),
        Err(e) => format!("the host API's answer was cut off: {e}"),
    };
    self::text(status, text)
}

async fn logs(
    ctx: &Ctx,
    path: String,
    session: Session,
    renames: &[(&str, &str)],
) -> Response<Body> {
    let req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .body(kube::client::Body::empty())
        .expect("a valid request");
    let resp = match ctx.host.send(req).await {
        Ok(r) => r,
        Err(e) => {
            session.set_outcome("failed");
            return host_error(&e);
        }
    };
    if !resp.status().is_success() {
        return relay_failure(resp, &session, renames).await;
    }
    let (parts, body) = resp.into_parts();
    let counter = session.bytes_down.clone();
    // The session lives as long as the body: it ends (and is logged) when either side closes.
    let body = body
        .map_frame(move |f| {
            let _keep = &session;
            if let Some(d) = f.data_ref() {
                counter.fetch_add(d.len() as u64, Ordering::Relaxed);
            }
            f
        })
        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        .boxed_unsync();
    let mut out = Response::builder().status(parts.status);
    for name in [header::CONTENT_TYPE, header::TRANSFER_ENCODING] {
        if let Some(v) = parts.headers.get(&name) {
            out = out.header(name, v);
        }
    }
    out.body(body).expect("a valid response")
}

fn copy_headers(from: &HeaderMap, names: &[&'static str], to: &mut HeaderMap) {
    for name in names {
        for v in from.get_all(*name) {
            to.append(header::HeaderName::from_static(name), HeaderValue::from(v));
        }
    }
}

async fn upgrade(
    ctx: &Ctx,
    path: String,
    mut req: Request<Incoming>,
    session: Session,
    renames: &[(&str, &str)],
) -> Response<Body> {
    if !req.headers().contains_key(header::UPGRADE) {
        session.set_outcome("refused");
        return text(StatusCode::BAD_REQUEST, "Upgrade request required");
    }
    let caller_upgrade = hyper::upgrade::on(&mut req);
    let mut host_req = Request::builder()
        .method(req.method().clone())
        .uri(path)
        .body(kube::client::Body::empty())
        .expect("a valid request");
    copy_headers(
        req.headers(),
        UPGRADE_REQUEST_HEADERS,
        host_req.headers_mut(),
    );
    let mut resp = match ctx.host.send(host_req).await {
        Ok(r) => r,
        Err(e) => {
            session.set_outcome("failed");
            return host_error(&e);
        }
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return relay_failure(resp, &session, renames).await;
    }
    let host_upgrade = hyper::upgrade::on(&mut resp);
    let mut out = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .body(full(Bytes::new()))
        .expect("a valid response");
    copy_headers(resp.headers(), UPGRADE_RESPONSE_HEADERS, out.headers_mut());
    tokio::spawn(async move {
        let (caller, host) = futures::join!(caller_upgrade, host_upgrade);
        let (caller, host) = match (caller, host) {
            (Ok(c), Ok(h)) => (c, h),
            (c, h) => {
                session.set_outcome("failed");
                tracing::debug!(caller = ?c.err(), host = ?h.err(), "an upgrade did not complete");
                return;
            }
        };
        let (mut caller, mut host) = (TokioIo::new(caller), TokioIo::new(host));
        match tokio::io::copy_bidirectional(&mut caller, &mut host).await {
            Ok((up, down)) => {
                session.bytes_up.store(up, Ordering::Relaxed);
                session.bytes_down.store(down, Ordering::Relaxed);
            }
            // A peer that resets instead of closing ends the session all the same.
            Err(e) => {
                tracing::debug!(error = %e, "a spliced stream ended with an error");
                session.set_outcome("reset");
            }
        }
    });
    out
}
