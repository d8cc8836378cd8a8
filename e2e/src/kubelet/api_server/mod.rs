//! The kubelet API of the simulated nodes: one HTTPS listener per node, on the node's
//! InternalIP and an ephemeral port that the node reports as
//! `status.daemonEndpoints.kubeletEndpoint.Port`, so an API server proxies `pods/log`,
//! `pods/exec`, `pods/attach` and `pods/portforward` to it as to a real kubelet.
//!
//! Routes (paths and queries as in the kubelet's `pkg/kubelet/server/server.go`):
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /healthz` | `ok` |
//! | `GET /pods` | a v1 `PodList` of the pods bound to this node |
//! | `GET /containerLogs/{ns}/{pod}/{container}` | made-up logs, see [`logs`] |
//! | `GET`/`POST /exec/{ns}/{pod}[/{uid}]/{container}?command=..&stdin=1&stdout=1&stderr=1&tty=1` | SPDY/3.1 remote command, built-in commands, see [`remotecommand`](self#exec-and-attach) |
//! | `GET`/`POST /attach/{ns}/{pod}[/{uid}]/{container}?stdin=1&stdout=1&...` | SPDY/3.1, the container's "main process" |
//! | `GET`/`POST /portForward/{ns}/{pod}[/{uid}]` | SPDY/3.1 `portforward.k8s.io`, see [below](self#port-forward) |
//!
//! Errors are plain text like the kubelet's: unknown path `404 page not found`, wrong method
//! `405 Method Not Allowed`, a streaming route without `Connection: Upgrade` /
//! `Upgrade: SPDY/3.1` `400 unable to upgrade: missing upgrade headers in request`, no common
//! `X-Stream-Protocol-Version` `403 unable to upgrade: unable to negotiate protocol`, an unknown
//! pod or container `404`, and with a client CA configured a request without a client
//! certificate signed by it `401 Unauthorized`.
//!
//! # Exec and attach
//!
//! Protocols `v4.channel.k8s.io`, `v3.channel.k8s.io`, `v2.channel.k8s.io` and `channel.k8s.io`
//! (preferred in that order). The client opens `error`, `stdin`, `stdout`, `stderr` (not with a
//! tty) and `resize` (tty, v3+) streams as the query asks; each is answered with SYN_REPLY and the
//! command runs once all expected streams are there. The exit status goes on the error stream:
//! with v4 a `metav1.Status` (`Success`, or `Failure`/`NonZeroExitCode` with an `ExitCode`
//! cause), with older protocols a text message for failures only. Commands (argv, no real shell):
//!
//! * `echo ARGS...`: the arguments joined by spaces, newline;
//! * `cat` (stdin to stdout until stdin closes), `cat FILE...`, `ls [DIR]`, `test -d|-e|-f PATH`,
//!   `mkdir -p DIR`, `rm FILE`;
//! * `env`: `PATH`, `HOSTNAME={pod}`, `HOME=/root` (and `TERM=xterm` with a tty);
//! * `hostname`, `exit N`, `true`, `false`, `sleep infinity` (until stdin closes or the client
//!   goes), `sh -c 'CMD ARGS'` (simple quoting, one command);
//! * `tar cf - PATH` and `tar xmf - [-C DIR]` (the commands `kubectl cp` runs) over an in-memory
//!   filesystem per container (`/etc/hostname` exists from the start);
//! * with a tty, each `{"Width":W,"Height":H}` on the resize stream prints `resize WxH\r\n`,
//!   and output newlines become `\r\n`;
//! * anything else: `{cmd}: command not found` on stderr, exit code 127.
//!
//! `attach` prints `attached to {pod}/{container}` and a newline, then echoes stdin until it
//! closes (exit 0); without stdin it stays until the client hangs up or the pod is deleted.
//!
//! # Port forward
//!
//! Each forwarded connection is a pair of streams (`streamtype` `error` and `data`, with the same
//! `port` and `requestid` headers). The data stream talks to an echo service "inside" the pod:
//! it first sends `{pod} port {port}\n`, then echoes every byte until the client closes its
//! side. A pod that declares `containerPorts` only listens on those; any other port reports
//! `failed to connect to localhost:{port} inside namespace "{pod uid}": connection refused`
//! on the error stream. A pod declaring no ports listens on every port.

pub mod client;
pub mod logs;
mod portforward;
pub(crate) mod registry;
pub mod remotecommand;
pub mod spdy;
pub mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::debug;

use registry::PodRegistry;
pub use tls::KubeletApiTls;

/// Response body of every route.
pub type Body = BoxBody<Bytes, Infallible>;

/// An error response, boxed to keep `Result`s small.
pub(crate) type Refusal = Box<Response<Body>>;

/// The running listeners of all nodes.
pub(crate) struct ApiServers {
    pub(crate) registry: Arc<PodRegistry>,
    pub(crate) addrs: HashMap<String, SocketAddr>,
    pub(crate) ca_pem: String,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ApiServers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub(crate) struct NodeState {
    node: String,
    registry: Arc<PodRegistry>,
    require_client_cert: bool,
    shutdown: watch::Receiver<bool>,
}

/// Binds one listener per node (on the current tokio runtime) and starts serving.
pub(crate) fn start(
    nodes: &[(String, String)],
    tls: &KubeletApiTls,
    registry: Arc<PodRegistry>,
    shutdown: watch::Receiver<bool>,
) -> Result<ApiServers, String> {
    let ca = match (&tls.serving_ca_cert_pem, &tls.serving_ca_key_pem) {
        (Some(cert), Some(key)) => tls::CaPem {
            cert_pem: cert.clone(),
            key_pem: key.clone(),
        },
        _ => tls::generate_ca("kubelet-sim-ca").map_err(|e| e.to_string())?,
    };
    let mut addrs = HashMap::new();
    let mut tasks = Vec::new();
    for (name, ip) in nodes {
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("node {name:?}: invalid ip {ip:?}"))?;
        let (chain, key) = tls::serving_cert(&ca, name, ip)?;
        let cfg = tls::server_config(chain, key, tls.client_ca_pem.as_deref())?;
        let std_listener = std::net::TcpListener::bind((ip, 0))
            .map_err(|e| format!("node {name:?}: binding the kubelet API on {ip}: {e}"))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        let addr = std_listener.local_addr().map_err(|e| e.to_string())?;
        let listener =
            tokio::net::TcpListener::from_std(std_listener).map_err(|e| e.to_string())?;
        let state = Arc::new(NodeState {
            node: name.clone(),
            registry: registry.clone(),
            require_client_cert: tls.client_ca_pem.is_some(),
            shutdown: shutdown.clone(),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        tasks.push(tokio::spawn(accept_loop(listener, acceptor, state)));
        addrs.insert(name.clone(), addr);
    }
    Ok(ApiServers {
        registry,
        addrs,
        ca_pem: ca.cert_pem,
        tasks,
    })
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<NodeState>,
) {
    let mut shutdown = state.shutdown.clone();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(_) => continue,
            },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    debug!(%peer, error = %e, "kubelet API TLS handshake failed");
                    return;
                }
            };
            let authenticated = !state.require_client_cert
                || tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty());
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(state, authenticated, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .with_upgrades()
                .await;
        });
    }
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("X-Content-Type-Options", "nosniff")
        .body(Full::new(Bytes::from(body.into())).boxed())
        .expect("valid response")
}

fn json_response(value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .expect("valid response")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or(""),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query string as ordered (name, value) pairs, percent-decoded.
pub fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

async fn handle(
    state: Arc<NodeState>,
    authenticated: bool,
    req: Request<Incoming>,
) -> Response<Body> {
    if !authenticated {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let path = req.uri().path().to_owned();
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let method = req.method().clone();
    let streaming = matches!(segs[0].as_str(), "exec" | "attach" | "portForward");
    let allowed = if streaming {
        method == Method::GET || method == Method::POST
    } else {
        method == Method::GET || method == Method::HEAD
    };
    let known = matches!(
        (segs[0].as_str(), segs.len()),
        ("healthz", 1)
            | ("pods", 1)
            | ("containerLogs", 4)
            | ("exec" | "attach", 4 | 5)
            | ("portForward", 3 | 4)
    );
    if !known {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    if !allowed {
        return text(StatusCode::METHOD_NOT_ALLOWED, "405: Method Not Allowed");
    }
    let query = parse_query(req.uri().query());
    match segs[0].as_str() {
        "healthz" => text(StatusCode::OK, "ok"),
        "pods" => {
            let items = state.registry.on_node(&state.node);
            json_response(&serde_json::json!({
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {},
                "items": items,
            }))
        }
        "containerLogs" => container_logs(&state, &segs[1], &segs[2], &segs[3], &query),
        "exec" | "attach" => {
            let (ns, pod, uid, container) = if segs.len() == 5 {
                (&segs[1], &segs[2], Some(segs[3].as_str()), &segs[4])
            } else {
                (&segs[1], &segs[2], None, &segs[3])
            };
            let pod = match find_pod(&state, ns, pod, uid) {
                Ok(p) => p,
                Err(r) => return *r,
            };
            if let Err(r) = find_container(&pod, container) {
                return *r;
            }
            remotecommand::handle(
                state.registry.clone(),
                pod,
                container.clone(),
                segs[0] == "attach",
                &query,
                req,
            )
        }
        "portForward" => {
            let uid = (segs.len() == 4).then(|| segs[3].as_str());
            let pod = match find_pod(&state, &segs[1], &segs[2], uid) {
                Ok(p) => p,
                Err(r) => return *r,
            };
            portforward::handle(state.registry.clone(), pod, req)
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

fn find_pod(state: &NodeState, ns: &str, name: &str, uid: Option<&str>) -> Result<Pod, Refusal> {
    let pod = state
        .registry
        .get(&state.node, ns, name)
        .filter(|p| uid.is_none_or(|u| p.metadata.uid.as_deref() == Some(u)));
    pod.ok_or_else(|| {
        Box::new(text(
            StatusCode::NOT_FOUND,
            format!("pod {name:?} does not exist\n"),
        ))
    })
}

fn find_container(pod: &Pod, container: &str) -> Result<(), Refusal> {
    let known = pod.spec.as_ref().is_some_and(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .any(|c| c.name == container)
    });
    if known {
        Ok(())
    } else {
        Err(Box::new(text(
            StatusCode::NOT_FOUND,
            format!(
                "container {container:?} not found in pod {:?}\n",
                pod.metadata.name.as_deref().unwrap_or("")
            ),
        )))
    }
}

fn finished(pod: Option<&Pod>) -> bool {
    match pod {
        None => true,
        Some(p) => {
            p.metadata.deletion_timestamp.is_some()
                || matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        }
    }
}

/// When the pod's containers started (`status.startTime`), if they have.
pub(crate) fn start_time(pod: &Pod) -> Option<Timestamp> {
    let st = pod.status.as_ref()?.start_time.as_ref()?;
    let running = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p != "Pending");
    running.then_some(st.0)
}

fn container_logs(
    state: &NodeState,
    ns: &str,
    name: &str,
    container: &str,
    query: &[(String, String)],
) -> Response<Body> {
    let opts = match logs::LogOptions::parse(query) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let pod = match find_pod(state, ns, name, None) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    if let Err(r) = find_container(&pod, container) {
        return *r;
    }
    if opts.previous {
        return text(
            StatusCode::BAD_REQUEST,
            format!("previous terminated container {container:?} in pod {name:?} not found"),
        );
    }
    let Some(start) = start_time(&pod) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "container {container:?} in pod {name:?} is waiting to start: ContainerCreating"
            ),
        );
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut limit = opts.limit_bytes.map(|n| n as usize);
    let cut = |s: String, limit: &mut Option<usize>| -> Option<Bytes> {
        match limit {
            None => Some(Bytes::from(s)),
            Some(0) => None,
            Some(left) => {
                let take = s.len().min(*left);
                *left -= take;
                Some(Bytes::copy_from_slice(&s.as_bytes()[..take]))
            }
        }
    };
    let mut initial = Vec::new();
    for k in opts.initial_range(start, Timestamp::now()) {
        if let Some(b) = cut(opts.render(start, name, container, k), &mut limit) {
            initial.extend_from_slice(&b);
        }
    }
    let body_head = Bytes::from(initial);
    if !opts.follow || finished(Some(&pod)) || limit == Some(0) {
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Full::new(body_head).boxed())
            .expect("valid response");
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let registry = state.registry.clone();
    let (name, container) = (name.to_owned(), container.to_owned());
    let mut shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        if !body_head.is_empty() && tx.send(body_head).await.is_err() {
            return;
        }
        let mut changes = registry.subscribe();
        let mut tick = tokio::time::interval(logs::FOLLOW_INTERVAL);
        tick.tick().await;
        let mut k = logs::INITIAL_LINES;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = changes.changed() => {
                    if finished(registry.by_uid(&uid).as_ref()) { return; }
                    continue;
                }
                _ = tx.closed() => return,
                _ = shutdown.wait_for(|s| *s) => return,
            }
            if finished(registry.by_uid(&uid).as_ref()) {
                return;
            }
            k += 1;
            let keep = opts
                .since_limit(Timestamp::now())
                .is_none_or(|l| logs::timestamp(start, k) >= l);
            if !keep {
                continue;
            }
            let Some(b) = cut(opts.render(start, &name, &container, k), &mut limit) else {
                return;
            };
            if tx.send(b).await.is_err() || limit == Some(0) {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("valid response")
}

/// Checks the SPDY upgrade request and negotiates `X-Stream-Protocol-Version` among `supported`
/// (in preference order); on success returns the chosen protocol (empty when the client named
/// none) and the 101 response to send.
pub(crate) fn negotiate_upgrade(
    req: &Request<Incoming>,
    supported: &[&str],
) -> Result<(String, Response<Body>), Refusal> {
    let has_token = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "SPDY/3.1") {
        return Err(Box::new(text(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request: \
             Connection: Upgrade, Upgrade: SPDY/3.1 required\n",
        )));
    }
    let client: Vec<String> = req
        .headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .flat_map(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        })
        .collect();
    let chosen = if client.is_empty() {
        String::new()
    } else {
        match supported.iter().find(|s| client.iter().any(|c| c == *s)) {
            Some(s) => (*s).to_owned(),
            None => {
                return Err(Box::new(text(
                    StatusCode::FORBIDDEN,
                    format!(
                        "unable to upgrade: unable to negotiate protocol: client supports {client:?}, \
                         server accepts {supported:?}"
                    ),
                )));
            }
        }
    };
    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1");
    if !chosen.is_empty() {
        resp = resp.header("X-Stream-Protocol-Version", chosen.as_str());
    }
    Ok((
        chosen,
        resp.body(Full::new(Bytes::new()).boxed())
            .expect("valid response"),
    ))
}

/// Runs `serve` with a server-side SPDY session once hyper hands over the upgraded connection.
pub(crate) fn on_upgrade<F, Fut>(req: Request<Incoming>, serve: F)
where
    F: FnOnce(spdy::Session) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut req = req;
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => serve(spdy::Session::new(TokioIo::new(upgraded), true)).await,
            Err(e) => debug!(error = %e, "kubelet API upgrade failed"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query(Some("command=sh&command=-c&command=echo%20a+b&tty&x=%zz"));
        assert_eq!(
            q,
            vec![
                ("command".into(), "sh".into()),
                ("command".into(), "-c".into()),
                ("command".into(), "echo a b".into()),
                ("tty".into(), String::new()),
                ("x".into(), "%zz".into()),
            ]
        );
    }
}
