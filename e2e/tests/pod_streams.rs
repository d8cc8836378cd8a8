//! `pods/log`, `exec`, `attach` and `portforward` of the test API server against a fake kubelet:
//! a tiny HTTPS server in this file, registered as a Node (InternalIP + daemonEndpoints port),
//! that requires the API server's kubelet-client certificate. Checks the query translation,
//! streaming, every error shape (exact `Status` bodies, as kube-apiserver v1.32 writes them), the
//! upgrade splice in both directions and TLS verification failing closed.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use vcsync_e2e::apiserver::{ServerConfig, TestApiServer, tls};
use vcsync_e2e::testutil::{create_namespace, unique_name, wait_for};

const WAIT: Duration = Duration::from_secs(20);
type KBody = BoxBody<Bytes, Infallible>;

fn kfull(s: impl Into<Bytes>) -> KBody {
    Full::new(s.into()).boxed()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What the fake kubelet saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path_and_query: String,
    headers: hyper::HeaderMap,
    client_cert: Option<Vec<u8>>,
}

#[derive(Default)]
struct KubeletState {
    seen: Mutex<Vec<Seen>>,
    /// Sender of the current `follow` log stream.
    follow: Mutex<Option<mpsc::Sender<Bytes>>>,
    /// Upgraded echo sessions that ended.
    echo_closed: Mutex<u32>,
    /// TLS handshakes that failed.
    handshake_failures: Mutex<u32>,
}

struct FakeKubelet {
    addr: SocketAddr,
    state: Arc<KubeletState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKubelet {
    /// Serve with `(cert_pem, key_pem)`, requiring client certificates from `client_ca_pem`.
    async fn start(cert: (String, String), client_ca_pem: &str) -> FakeKubelet {
        let provider = provider();
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.0.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(KubeletState::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    let tls = match acceptor.accept(tcp).await {
                        Ok(t) => t,
                        Err(_) => {
                            *st.handshake_failures.lock().unwrap() += 1;
                            return;
                        }
                    };
                    let cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.to_vec());
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        let cert = cert.clone();
                        async move { Ok::<_, Infallible>(kubelet_handle(st, cert, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        FakeKubelet { addr, state, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    fn last(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .expect("the kubelet saw a request")
    }
}

async fn kubelet_handle(
    st: Arc<KubeletState>,
    client_cert: Option<Vec<u8>>,
    mut req: Request<Incoming>,
) -> Response<KBody> {
    st.seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        path_and_query: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: req.headers().clone(),
        client_cert,
    });
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let pod = segs.get(2).copied().unwrap_or("");
    let text = |code: u16, body: &str| {
        Response::builder()
            .status(code)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(kfull(body.to_string()))
            .unwrap()
    };
    match segs[0] {
        "containerLogs" => match pod {
            "kubelet-404" => text(404, "pod not found on this kubelet"),
            "kubelet-500" => text(500, "kaboom"),
            "kubelet-400" => text(400, "bad log request"),
            "follow" => {
                let (tx, rx) = mpsc::channel::<Bytes>(16);
                tx.send(Bytes::from_static(b"line 1\n")).await.unwrap();
                *st.follow.lock().unwrap() = Some(tx);
                let stream = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv()
                        .await
                        .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
                });
                Response::builder()
                    .status(200)
                    .header("Content-Type", "text/plain")
                    .body(BodyExt::boxed(StreamBody::new(stream)))
                    .unwrap()
            }
            _ => text(200, &format!("log of {}/{pod}/{}\n", segs[1], segs[3])),
        },
        "exec" | "attach" | "portForward" => {
            if pod == "kubelet-403" {
                return text(403, "forbidden by the kubelet");
            }
            if pod == "kubelet-200" {
                return text(200, "not an upgrade");
            }
            let upgrade = req
                .headers()
                .get("upgrade")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            if upgrade == "websocket" {
                // What a kubelet without WebSocket v5 support answers.
                return text(400, "websocket v5 is not supported here");
            }
            let on = hyper::upgrade::on(&mut req);
            let st2 = st.clone();
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let io = TokioIo::new(up);
                    let (mut r, mut w) = tokio::io::split(io);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                }
                *st2.echo_closed.lock().unwrap() += 1;
            });
            Response::builder()
                .status(101)
                .header("Connection", "Upgrade")
                .header("Upgrade", "SPDY/3.1")
                .header("X-Stream-Protocol-Version", "v4.channel.k8s.io")
                .body(kfull(Bytes::new()))
                .unwrap()
        }
        _ => text(404, "404 page not found"),
    }
}

/// One test's world: the API server, a namespace, a node pointing at a fake kubelet.
struct World {
    server: TestApiServer,
    ns: String,
    kubelet: FakeKubelet,
}

fn config() -> ServerConfig {
    ServerConfig {
        kubelet_preferred_address_types: vec!["InternalIP".into(), "Hostname".into()],
        ..Default::default()
    }
}

async fn world_with(config: ServerConfig, wrong_ca: bool) -> World {
    let server = TestApiServer::start(config).await.unwrap();
    let localhost = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let cert = if wrong_ca {
        tls::generate()
            .unwrap()
            .sign_serving_cert("kubelet", &["localhost".into()], &localhost)
            .unwrap()
    } else {
        server
            .tls()
            .sign_serving_cert("kubelet", &["localhost".into()], &localhost)
            .unwrap()
    };
    let kubelet = FakeKubelet::start(cert, server.client_ca_pem()).await;
    let ns = unique_name("streams");
    create_namespace(&server.client(), &ns).await;
    node(
        &server,
        "node-a",
        json!([{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "node-a"}]),
        kubelet.addr.port(),
    )
    .await;
    World {
        server,
        ns,
        kubelet,
    }
}

async fn world() -> World {
    world_with(config(), false).await
}

async fn node(server: &TestApiServer, name: &str, addresses: Value, port: u16) {
    let nodes: Api<Node> = Api::all(server.client());
    let n: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    nodes.create(&PostParams::default(), &n).await.unwrap();
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"addresses": addresses,
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}})),
        )
        .await
        .unwrap();
}

impl World {
    async fn pod(&self, name: &str, node: Option<&str>, containers: &[&str], init: &[&str]) {
        let c = |n: &&str| json!({"name": n, "image": "busybox"});
        let mut spec = json!({
            "containers": containers.iter().map(c).collect::<Vec<_>>(),
            "automountServiceAccountToken": false,
        });
        if !init.is_empty() {
            spec["initContainers"] = json!(init.iter().map(c).collect::<Vec<_>>());
        }
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        let pods: Api<Pod> = Api::namespaced(self.server.client(), &self.ns);
        let p: Pod =
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }

    fn pod_path(&self, pod: &str, sub: &str) -> String {
        format!("/api/v1/namespaces/{}/pods/{pod}/{sub}", self.ns)
    }

    /// A TLS connection to the API server (HTTP/1.1).
    async fn connect(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.server.ca_pem().as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(("127.0.0.1", self.server.port()))
            .await
            .unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap()
    }

    /// `GET path` through hyper: status, content type and the body stream.
    async fn get(&self, path: &str) -> (u16, String, Incoming) {
        let io = TokioIo::new(self.connect().await);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("Host", "127.0.0.1")
            .header(
                "Authorization",
                format!("Bearer {}", self.server.admin_token()),
            )
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (resp.status().as_u16(), ct, resp.into_body())
    }

    async fn get_full(&self, path: &str) -> (u16, String, String) {
        let (code, ct, body) = self.get(path).await;
        let b = body.collect().await.unwrap().to_bytes();
        (code, ct, String::from_utf8_lossy(&b).into_owned())
    }

    /// Assert a `Status` answer exactly.
    async fn expect_status(&self, path: &str, code: u16, status: Value) {
        let (got, ct, body) = self.get_full(path).await;
        assert_eq!(got, code, "{path}: {body}");
        assert_eq!(ct, "application/json", "{path}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v, status, "{path}");
    }

    /// Send a raw HTTP/1.1 request and read the response head; returns the connection too.
    async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (
        tokio_rustls::client::TlsStream<TcpStream>,
        u16,
        Vec<(String, String)>,
        Vec<u8>,
    ) {
        let mut conn = self.connect().await;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\n",
            self.server.admin_token()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let end = tokio::time::timeout(WAIT, async {
            loop {
                let mut chunk = [0u8; 1024];
                let n = conn.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed before a response head");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    return i;
                }
            }
        })
        .await
        .expect("a response head");
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let rest = buf[end + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        (conn, status, headers, rest)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message});
    if !reason.is_empty() {
        s["reason"] = json!(reason);
    }
    if let Some(d) = details {
        s["details"] = d;
    }
    s["code"] = json!(code);
    s
}

fn pem_der(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

const SPDY: [(&str, &str); 4] = [
    ("Connection", "Upgrade"),
    ("Upgrade", "SPDY/3.1"),
    ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
    ("X-Stream-Protocol-Version", "v3.channel.k8s.io"),
];

#[tokio::test]
async fn log_query_is_translated_and_the_client_certificate_presented() {
    let w = world().await;
    w.pod("p1", Some("node-a"), &["c1"], &[]).await;

    let q = "?previous=true&timestamps=1&tailLines=10&limitBytes=100&sinceTime=2024-01-01T00:00:00Z&follow=false";
    let (code, ct, body) = w.get_full(&format!("{}{q}", w.pod_path("p1", "log"))).await;
    assert_eq!((code, ct.as_str()), (200, "text/plain"), "{body}");
    assert_eq!(body, format!("log of {}/p1/c1\n", w.ns));
    let seen = w.kubelet.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(
        seen.path_and_query,
        format!(
            "/containerLogs/{}/p1/c1?limitBytes=100&previous=true&sinceTime=2024-01-01T00%3A00%3A00Z&tailLines=10&timestamps=true",
            w.ns
        )
    );
    // The API server's kubelet-client certificate (CN system:apiserver, O system:masters).
    assert_eq!(
        seen.client_cert.as_deref(),
        Some(pem_der(&w.server.tls().kubelet_client_cert_pem).as_slice())
    );
    assert!(seen.headers.get("authorization").is_none());

    // sinceSeconds and an explicit container; no parameters at all.
    w.get_full(&format!(
        "{}?sinceSeconds=5&container=c1",
        w.pod_path("p1", "log")
    ))
    .await;
    assert_eq!(
        w.kubelet.last().path_and_query,
        format!("/containerLogs/{}/p1/c1?sinceSeconds=5", w.ns)
    );
    w.get_full(&w.pod_path("p1", "log")).await;
    assert_eq!(
        w.kubelet.last().path_and_query,
        format!("/containerLogs/{}/p1/c1", w.ns)
    );
    assert_eq!(w.server.count("get", Some("pods/log")), 3);
}

async fn next_chunk(body: &mut Incoming) -> Bytes {
    let f = tokio::time::timeout(WAIT, body.frame())
        .await
        .expect("a log chunk in time")
        .expect("the stream is open")
        .unwrap();
    f.into_data().unwrap()
}

#[tokio::test]
async fn log_follow_streams_until_the_client_closes() {
    let w = world().await;
    w.pod("follow", Some("node-a"), &["c1"], &[]).await;
    let (code, ct, mut body) = w
        .get(&format!("{}?follow=true", w.pod_path("follow", "log")))
        .await;
    assert_eq!((code, ct.as_str()), (200, "text/plain"));
    assert_eq!(
        w.kubelet.last().path_and_query,
        format!("/containerLogs/{}/follow/c1?follow=true", w.ns)
    );
    assert_eq!(next_chunk(&mut body).await, Bytes::from_static(b"line 1\n"));
    let tx = w.kubelet.state.follow.lock().unwrap().clone().unwrap();
    tx.send(Bytes::from_static(b"line 2\n")).await.unwrap();
    assert_eq!(next_chunk(&mut body).await, Bytes::from_static(b"line 2\n"));

    // The client goes away: the API server drops its kubelet request, which the kubelet sees
    // as its log stream's receiver going away.
    drop(body);
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            if tx.send(Bytes::from_static(b"more\n")).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the kubelet stream stayed open");
}

#[tokio::test]
async fn log_errors_are_shaped_like_kube_apiserver() {
    let w = world().await;
    w.pod("multi", Some("node-a"), &["a", "b"], &["init"]).await;
    w.pod("unbound", None, &["c1"], &[]).await;
    w.pod("ghost", Some("no-such-node"), &["c1"], &[]).await;
    node(&w.server, "bare", json!([]), 0).await;
    w.pod("on-bare", Some("bare"), &["c1"], &[]).await;
    w.pod("kubelet-404", Some("node-a"), &["c1"], &[]).await;
    w.pod("kubelet-500", Some("node-a"), &["c1"], &[]).await;
    w.pod("kubelet-400", Some("node-a"), &["c1"], &[]).await;

    w.expect_status(
        &w.pod_path("multi", "log"),
        400,
        status(
            400,
            "BadRequest",
            "a container name must be specified for pod multi, choose one of: [init a b]",
            None,
        ),
    )
    .await;
    w.expect_status(
        &format!("{}?container=nope", w.pod_path("multi", "log")),
        400,
        status(
            400,
            "BadRequest",
            "container nope is not valid for pod multi",
            None,
        ),
    )
    .await;
    // An init container is a valid choice.
    let (code, _, body) = w
        .get_full(&format!("{}?container=init", w.pod_path("multi", "log")))
        .await;
    assert_eq!(
        (code, body.as_str()),
        (200, &*format!("log of {}/multi/init\n", w.ns))
    );
    w.expect_status(
        &w.pod_path("nope", "log"),
        404,
        status(
            404,
            "NotFound",
            "pods \"nope\" not found",
            Some(json!({"name": "nope", "kind": "pods"})),
        ),
    )
    .await;
    // Unscheduled: an empty 204.
    let (code, ct, body) = w.get_full(&w.pod_path("unbound", "log")).await;
    assert_eq!((code, ct.as_str(), body.as_str()), (204, "", ""));
    w.expect_status(
        &w.pod_path("ghost", "log"),
        404,
        status(
            404,
            "NotFound",
            "nodes \"no-such-node\" not found",
            Some(json!({"name": "no-such-node", "kind": "nodes"})),
        ),
    )
    .await;
    w.expect_status(
        &w.pod_path("on-bare", "log"),
        500,
        status(
            500,
            "",
            "no preferred addresses found; known addresses: []",
            None,
        ),
    )
    .await;
    // Validation (422) comes before the pod lookup.
    w.expect_status(
        &format!("{}?tailLines=-1", w.pod_path("nope", "log")),
        422,
        status(
            422,
            "Invalid",
            "PodLogOptions \"nope\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0",
            Some(json!({"name": "nope", "kind": "PodLogOptions", "causes": [
                {"reason": "FieldValueInvalid", "message": "Invalid value: -1: must be greater than or equal to 0", "field": "tailLines"}]})),
        ),
    )
    .await;
    w.expect_status(
        &format!("{}?tailLines=x", w.pod_path("multi", "log")),
        400,
        status(
            400,
            "BadRequest",
            "strconv.ParseInt: parsing \"x\": invalid syntax",
            None,
        ),
    )
    .await;
    // Kubelet errors, mapped by GenericHttpResponseChecker.
    w.expect_status(
        &w.pod_path("kubelet-404", "log"),
        404,
        status(
            404,
            "NotFound",
            "the server could not find the requested resource ( pods/log kubelet-404)",
            Some(json!({"name": "kubelet-404", "kind": "pods/log"})),
        ),
    )
    .await;
    w.expect_status(
        &w.pod_path("kubelet-500", "log"),
        500,
        status(
            500,
            "InternalError",
            "Internal error occurred: kaboom",
            Some(json!({"causes": [{"message": "kaboom"}]})),
        ),
    )
    .await;
    w.expect_status(
        &w.pod_path("kubelet-400", "log"),
        400,
        status(400, "BadRequest", "bad log request", None),
    )
    .await;
}

#[tokio::test]
async fn address_preference_and_an_unreachable_kubelet() {
    // kube-apiserver's default preference: Hostname first. A node with only an ExternalDNS
    // address under an InternalIP-only preference has no usable address.
    let server = TestApiServer::start(ServerConfig {
        kubelet_preferred_address_types: vec!["InternalIP".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        ServerConfig::default().kubelet_preferred_address_types,
        [
            "Hostname",
            "InternalDNS",
            "InternalIP",
            "ExternalDNS",
            "ExternalIP"
        ]
    );
    let kubelet = FakeKubelet::start(
        server
            .tls()
            .sign_serving_cert("k", &[], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .unwrap(),
        server.client_ca_pem(),
    )
    .await;
    let ns = unique_name("addr");
    create_namespace(&server.client(), &ns).await;
    node(
        &server,
        "ext",
        json!([{"type": "ExternalDNS", "address": "ext.example"}, {"type": "Hostname", "address": "ext"}]),
        kubelet.addr.port(),
    )
    .await;
    // A port nobody listens on: bind then drop.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    node(
        &server,
        "dead",
        json!([{"type": "InternalIP", "address": "127.0.0.1"}]),
        dead_port,
    )
    .await;
    let w = World {
        server,
        ns,
        kubelet,
    };
    w.pod("p-ext", Some("ext"), &["c"], &[]).await;
    w.pod("p-dead", Some("dead"), &["c"], &[]).await;
    w.expect_status(
        &w.pod_path("p-ext", "log"),
        500,
        status(
            500,
            "",
            "no preferred addresses found; known addresses: [{ExternalDNS ext.example} {Hostname ext}]",
            None,
        ),
    )
    .await;
    w.expect_status(
        &w.pod_path("p-dead", "log"),
        500,
        status(
            500,
            "",
            &format!(
                "Get \"https://127.0.0.1:{dead_port}/containerLogs/{}/p-dead/c\": dial tcp 127.0.0.1:{dead_port}: connect: connection refused",
                w.ns
            ),
            None,
        ),
    )
    .await;
    let (_c, code, _h, rest) = w
        .raw(
            "POST",
            &format!("{}?command=sh", w.pod_path("p-dead", "exec")),
            &SPDY,
        )
        .await;
    assert_eq!(code, 500);
    let body = String::from_utf8_lossy(&rest);
    assert!(
        body.contains(&format!(
            "\"message\":\"error dialing backend: dial tcp 127.0.0.1:{dead_port}: connect: connection refused\""
        )),
        "{body}"
    );
}

#[tokio::test]
async fn exec_upgrade_is_spliced_byte_for_byte() {
    let w = world().await;
    w.pod("p1", Some("node-a"), &["c1"], &[]).await;
    let path = format!(
        "{}?command=sh&command=-c&command=echo+hi&stdin=true&stdout=true&stderr=true&tty=false",
        w.pod_path("p1", "exec")
    );
    let (mut conn, code, headers, rest) = w.raw("POST", &path, &SPDY).await;
    assert_eq!(code, 101);
    assert_eq!(header(&headers, "upgrade"), Some("SPDY/3.1"));
    assert_eq!(
        header(&headers, "x-stream-protocol-version"),
        Some("v4.channel.k8s.io")
    );
    assert!(rest.is_empty());
    let seen = w.kubelet.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.path_and_query,
        format!(
            "/exec/{}/p1/c1?command=sh&command=-c&command=echo+hi&error=1&input=1&output=1",
            w.ns
        )
    );
    assert!(seen.headers.get("authorization").is_none());
    let versions: Vec<&str> = seen
        .headers
        .get_all("x-stream-protocol-version")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(versions, ["v4.channel.k8s.io", "v3.channel.k8s.io"]);
    assert_eq!(
        seen.client_cert.as_deref(),
        Some(pem_der(&w.server.tls().kubelet_client_cert_pem).as_slice())
    );

    // Bytes both ways, larger than one TLS record.
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (mut rd, mut wr) = tokio::io::split(conn);
    let send = payload.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&send).await.unwrap();
        wr.flush().await.unwrap();
        wr
    });
    let mut got = vec![0u8; payload.len()];
    tokio::time::timeout(WAIT, rd.read_exact(&mut got))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(got, payload);
    // The client closes: the kubelet sees its end close, and so does the client.
    let mut wr = writer.await.unwrap();
    wr.shutdown().await.unwrap();
    conn = rd.unsplit(wr);
    let mut tail = Vec::new();
    let eof = tokio::time::timeout(WAIT, conn.read_to_end(&mut tail)).await;
    assert!(eof.is_ok(), "the spliced stream did not close");
    wait_for(WAIT, "the kubelet session to end", || async {
        (*w.kubelet.state.echo_closed.lock().unwrap() == 1).then_some(())
    })
    .await;
    let counts = w.server.request_counts();
    assert!(
        counts.iter().any(|(k, n)| k.verb == "create"
            && k.resource == "pods/exec"
            && k.code == 101
            && *n == 1),
        "{counts:?}"
    );
}

#[tokio::test]
async fn attach_and_portforward_reach_their_kubelet_paths() {
    let w = world().await;
    w.pod("p1", Some("node-a"), &["c1", "c2"], &[]).await;
    let (mut conn, code, _, _) = w
        .raw(
            "GET",
            &format!("{}?container=c2&stdout=1&tty=1", w.pod_path("p1", "attach")),
            &SPDY,
        )
        .await;
    assert_eq!(code, 101);
    assert_eq!(
        w.kubelet.last().path_and_query,
        format!("/attach/{}/p1/c2?output=1&tty=1", w.ns)
    );
    conn.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    tokio::time::timeout(WAIT, conn.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"hello");
    drop(conn);

    let pf = [
        ("Connection", "Upgrade"),
        ("Upgrade", "SPDY/3.1"),
        ("X-Stream-Protocol-Version", "portforward.k8s.io"),
    ];
    let (mut conn, code, headers, _) = w
        .raw(
            "POST",
            &format!("{}?ports=8080&ports=9090", w.pod_path("p1", "portforward")),
            &pf,
        )
        .await;
    assert_eq!(code, 101);
    assert_eq!(
        header(&headers, "connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("upgrade")
    );
    assert_eq!(
        w.kubelet.last().path_and_query,
        format!("/portForward/{}/p1?port=8080%2C9090", w.ns)
    );
    conn.write_all(b"pf").await.unwrap();
    let mut buf = [0u8; 2];
    tokio::time::timeout(WAIT, conn.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"pf");
    assert_eq!(w.server.count("get", Some("pods/attach")), 1);
    assert_eq!(w.server.count("create", Some("pods/portforward")), 1);
}

#[tokio::test]
async fn connect_errors_are_shaped_like_kube_apiserver() {
    let w = world().await;
    w.pod("p1", Some("node-a"), &["c1"], &[]).await;
    w.pod("multi", Some("node-a"), &["a", "b"], &[]).await;
    w.pod("unbound", None, &["c1"], &[]).await;
    w.pod("kubelet-403", Some("node-a"), &["c1"], &[]).await;
    w.pod("kubelet-200", Some("node-a"), &["c1"], &[]).await;

    // Not an upgrade: validation passes, then the proxy insists on an upgrade.
    w.expect_status(
        &format!("{}?command=ls&stdout=1", w.pod_path("p1", "exec")),
        400,
        status(400, "BadRequest", "Upgrade request required", None),
    )
    .await;
    w.expect_status(
        &format!("{}?command=ls", w.pod_path("multi", "exec")),
        400,
        status(
            400,
            "BadRequest",
            "a container name must be specified for pod multi, choose one of: [a b]",
            None,
        ),
    )
    .await;
    w.expect_status(
        &format!("{}?container=zz", w.pod_path("p1", "attach")),
        400,
        status(
            400,
            "BadRequest",
            "container zz is not valid for pod p1",
            None,
        ),
    )
    .await;
    w.expect_status(
        &w.pod_path("unbound", "portforward"),
        400,
        status(
            400,
            "BadRequest",
            "pod unbound does not have a host assigned",
            None,
        ),
    )
    .await;
    w.expect_status(
        &w.pod_path("nope", "exec"),
        404,
        status(
            404,
            "NotFound",
            "pods \"nope\" not found",
            Some(json!({"name": "nope", "kind": "pods"})),
        ),
    )
    .await;

    // A kubelet error answer is relayed as it is.
    let (mut conn, code, headers, mut rest) = w
        .raw(
            "POST",
            &format!("{}?command=ls", w.pod_path("kubelet-403", "exec")),
            &SPDY,
        )
        .await;
    assert_eq!(code, 403);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    let len: usize = header(&headers, "content-length").unwrap().parse().unwrap();
    while rest.len() < len {
        let mut chunk = [0u8; 256];
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        rest.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(String::from_utf8_lossy(&rest), "forbidden by the kubelet");
    // Any other non-101 answer.
    let (_c, code, _, rest) = w
        .raw(
            "POST",
            &format!("{}?command=ls", w.pod_path("kubelet-200", "exec")),
            &SPDY,
        )
        .await;
    assert_eq!(code, 500);
    let body = String::from_utf8_lossy(&rest);
    assert!(
        body.contains("\"message\":\"invalid upgrade response: status code 200\""),
        "{body}"
    );
}

#[tokio::test]
async fn websocket_upgrades_go_to_the_kubelet_untranslated() {
    // No WebSocket->SPDY translator: the kubelet gets the WebSocket request and its non-101
    // answer reaches the client, which is what makes kubectl fall back to SPDY.
    let w = world().await;
    w.pod("p1", Some("node-a"), &["c1"], &[]).await;
    let ws = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Protocol", "v5.channel.k8s.io"),
    ];
    let (_c, code, _, _) = w
        .raw(
            "GET",
            &format!("{}?command=ls&stdout=true", w.pod_path("p1", "exec")),
            &ws,
        )
        .await;
    assert_eq!(code, 400);
    let seen = w.kubelet.last();
    assert_eq!(
        seen.headers.get("sec-websocket-protocol").unwrap(),
        "v5.channel.k8s.io"
    );
    assert_eq!(seen.headers.get("upgrade").unwrap(), "websocket");
}

#[tokio::test]
async fn kubelet_serving_certificate_is_verified() {
    // Signed by another CA: refused, for logs and for upgrades.
    let w = world_with(config(), true).await;
    w.pod("p1", Some("node-a"), &["c1"], &[]).await;
    let port = w.kubelet.addr.port();
    w.expect_status(
        &w.pod_path("p1", "log"),
        500,
        status(
            500,
            "",
            &format!(
                "Get \"https://127.0.0.1:{port}/containerLogs/{}/p1/c1\": tls: failed to verify certificate: x509: certificate signed by unknown authority",
                w.ns
            ),
            None,
        ),
    )
    .await;
    let (_c, code, _, rest) = w
        .raw(
            "POST",
            &format!("{}?command=ls", w.pod_path("p1", "exec")),
            &SPDY,
        )
        .await;
    assert_eq!(code, 500);
    assert!(
        String::from_utf8_lossy(&rest).contains(
            "error dialing backend: tls: failed to verify certificate: x509: certificate signed by unknown authority"
        ),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    assert!(w.kubelet.seen().is_empty());
    // insecureSkipTLSVerifyBackend skips it for logs.
    let (code, _, body) = w
        .get_full(&format!(
            "{}?insecureSkipTLSVerifyBackend=true",
            w.pod_path("p1", "log")
        ))
        .await;
    assert_eq!(
        (code, body.as_str()),
        (200, &*format!("log of {}/p1/c1\n", w.ns))
    );
    drop(w);

    // Configured to skip verification (kube-apiserver without --kubelet-certificate-authority).
    let w = world_with(
        ServerConfig {
            kubelet_insecure_skip_tls_verify: true,
            ..config()
        },
        true,
    )
    .await;
    w.pod("p1", Some("node-a"), &["c1"], &[]).await;
    let (_c, code, _, _) = w
        .raw(
            "POST",
            &format!("{}?command=ls", w.pod_path("p1", "exec")),
            &SPDY,
        )
        .await;
    assert_eq!(code, 101);
}

#[tokio::test]
async fn k3s_tls_dir_has_the_server_pki() {
    let server = TestApiServer::start(ServerConfig {
        controllers: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let paths = server.write_k3s_tls_dir(&dir.path().join("tls")).unwrap();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    assert_eq!(read(&paths.server_ca_crt), server.ca_pem());
    assert_eq!(read(&paths.server_ca_key), server.ca_key_pem());
    assert_eq!(read(&paths.client_ca_crt), server.client_ca_pem());
    assert_eq!(
        read(&paths.client_kube_apiserver_crt),
        server.tls().kubelet_client_cert_pem
    );
    assert_eq!(
        read(&paths.client_kube_apiserver_key),
        server.tls().kubelet_client_key_pem
    );
    use std::os::unix::fs::PermissionsExt;
    for key in [&paths.server_ca_key, &paths.client_kube_apiserver_key] {
        let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key:?}");
    }
    for (name, p) in [
        ("server-ca.crt", &paths.server_ca_crt),
        (
            "client-kube-apiserver.key",
            &paths.client_kube_apiserver_key,
        ),
    ] {
        assert_eq!(p.file_name().unwrap(), name);
    }
    // The serving CA key really signs certificates the server's CA verifies: a kubelet using
    // one is accepted (covered end to end above); here, that it parses as a key.
    assert!(
        rustls::pki_types::PrivateKeyDer::from_pem_slice(server.ca_key_pem().as_bytes()).is_ok()
    );
}
