//! Server lifecycle: TLS listener, shared state, and the [`TestApiServer`] handle tests use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch as tokio_watch;
use tokio::task::JoinHandle;

use super::aggregator::AggregatorState;
use super::faults::{Fault, FaultRule, Faults, RequestCount, is_write};
use super::ops::State;
use super::tls::{self, K3sTlsPaths, TlsMaterial};

/// Configuration of one server instance.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Service ClusterIP range (IPv4 CIDR).
    pub service_cidr: String,
    /// NodePort range, inclusive.
    pub node_port_range: (u16, u16),
    /// How many changes the watch history keeps before older resourceVersions answer 410.
    pub history_window: usize,
    /// A second bearer token limited to one namespace: `(token, namespace)`.
    pub namespaced_token: Option<(String, String)>,
    /// More full-access identities as `(token, user name)`, counted separately so a test can
    /// tell the product's requests from its own (e.g. `vcsync` vs the kubelet simulator).
    pub users: Vec<(String, String)>,
    /// Run the controller-manager loops (namespace lifecycle, GC, default SA, ...).
    pub controllers: bool,
    /// How often the controller loops resync (they also react to every change).
    pub controller_interval: Duration,
    /// Node address types tried in order to reach a kubelet (kube-apiserver's
    /// `--kubelet-preferred-address-types`; default `Hostname,InternalDNS,InternalIP,ExternalDNS,ExternalIP`).
    /// Tests of simulated nodes put `InternalIP` first: their Hostname addresses do not resolve.
    pub kubelet_preferred_address_types: Vec<String>,
    /// Port used when a node reports no `daemonEndpoints.kubeletEndpoint.Port` (`--kubelet-port`).
    pub kubelet_port: u16,
    /// Skip verifying kubelets' serving certificates (kube-apiserver without
    /// `--kubelet-certificate-authority`). Default: verify.
    pub kubelet_insecure_skip_tls_verify: bool,
    /// PEM of the CA kubelet serving certificates must chain to; `None` = this server's serving
    /// CA ([`TestApiServer::ca_pem`]), as k3s passes `server-ca.crt`.
    pub kubelet_certificate_authority: Option<String>,
    /// Serve `metrics.k8s.io` PodMetrics and SubjectAccessReviews itself, as a cluster with
    /// metrics-server does (default). The harness turns it off for the virtual server: a
    /// tenant's k3s has no metrics-server, its `metrics.k8s.io` is vcsync's APIService.
    pub resource_metrics: bool,
    /// How often the aggregator recomputes the `Available` condition of APIServices that name
    /// a Service (kube-aggregator re-checks on changes and every 30 s; tests want it sooner).
    pub aggregator_interval: Duration,
}

/// kube-apiserver's default `--kubelet-preferred-address-types`.
pub const DEFAULT_KUBELET_PREFERRED_ADDRESS_TYPES: [&str; 5] = [
    "Hostname",
    "InternalDNS",
    "InternalIP",
    "ExternalDNS",
    "ExternalIP",
];

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            port: 0,
            service_cidr: "10.96.0.0/16".into(),
            node_port_range: (30000, 32767),
            history_window: 5000,
            namespaced_token: None,
            users: Vec::new(),
            controllers: true,
            controller_interval: Duration::from_millis(200),
            kubelet_preferred_address_types: DEFAULT_KUBELET_PREFERRED_ADDRESS_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            kubelet_port: 10250,
            kubelet_insecure_skip_tls_verify: false,
            kubelet_certificate_authority: None,
            resource_metrics: true,
            aggregator_interval: Duration::from_secs(1),
        }
    }
}

/// State shared by the listener, the request handlers, watches and controllers.
#[derive(Debug)]
pub struct Shared {
    pub config: ServerConfig,
    pub tls: TlsMaterial,
    pub admin_token: String,
    state: Mutex<State>,
    /// Latest resourceVersion: watches wait on it.
    pub rv_tx: tokio_watch::Sender<u64>,
    /// Bumped to end every open watch (fault injection).
    pub watch_epoch: tokio_watch::Sender<u64>,
    pub faults: Mutex<Faults>,
    /// The aggregator's discovery cache (see [`super::aggregator`]).
    pub aggregator: Mutex<AggregatorState>,
}

impl Shared {
    /// Lock the state. Poisoning only happens after a panic in a handler; the state is still
    /// the best we have, so keep serving.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tell watches about the current resourceVersion (call after releasing the lock).
    pub fn notify(&self, rv: u64) {
        self.rv_tx.send_if_modified(|cur| {
            if *cur < rv {
                *cur = rv;
                true
            } else {
                false
            }
        });
    }

    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn aggregator(&self) -> MutexGuard<'_, AggregatorState> {
        self.aggregator.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("generating the test CA failed: {0}")]
    GenerateCa(#[from] rcgen::Error),
    #[error("binding 127.0.0.1:{port} failed: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("configuring tls failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("writing kubeconfig {path} failed: {source}")]
    WriteKubeconfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("building the kube client failed: {0}")]
    Client(String),
}

/// A running test API server.
pub struct TestApiServer {
    shared: Arc<Shared>,
    /// The runtime `start` ran on: the listener, connections, watches and controllers of every
    /// (re)start run there, so a benchmark can give the server a runtime of its own and
    /// attribute its CPU by thread.
    runtime: tokio::runtime::Handle,
    addr: SocketAddr,
    listener: Option<JoinHandle<()>>,
    controllers: Option<JoinHandle<()>>,
    aggregator: Option<JoinHandle<()>>,
    stop_tx: tokio_watch::Sender<bool>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestApiServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TestApiServer {
    /// Start a server with a fresh CA, empty store and the `default`/`kube-system`/`kube-public`/
    /// `kube-node-lease` namespaces.
    pub async fn start(config: ServerConfig) -> Result<TestApiServer, StartError> {
        ensure_crypto_provider();
        let tls = tls::generate()?;
        let admin_token = format!("admin-{}", uuid::Uuid::new_v4().simple());
        let (rv_tx, _) = tokio_watch::channel(0u64);
        let (watch_epoch, _) = tokio_watch::channel(0u64);
        let state = State::new(&config, &tls);
        let shared = Arc::new(Shared {
            config: config.clone(),
            tls,
            admin_token,
            state: Mutex::new(state),
            rv_tx,
            watch_epoch,
            faults: Mutex::new(Faults::default()),
            aggregator: Mutex::new(AggregatorState::default()),
        });
        super::ops::bootstrap(&shared);
        let dir = tempfile::tempdir().map_err(|e| StartError::WriteKubeconfig {
            path: "tempdir".into(),
            source: e,
        })?;
        let (stop_tx, _) = tokio_watch::channel(false);
        let mut server = TestApiServer {
            shared,
            runtime: tokio::runtime::Handle::current(),
            addr: ([127, 0, 0, 1], config.port).into(),
            listener: None,
            controllers: None,
            aggregator: None,
            stop_tx,
            dir,
        };
        server.listen(config.port).await?;
        let path = server.dir.path().join("kubeconfig");
        server.write_kubeconfig(&path)?;
        Ok(server)
    }

    async fn listen(&mut self, port: u16) -> Result<(), StartError> {
        // Bound here, registered with the reactor inside the server's runtime (below): a
        // restart called from another runtime must not tie the socket to that one.
        let bind = |e| StartError::Bind { port, source: e };
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", port)).map_err(bind)?;
        std_listener.set_nonblocking(true).map_err(bind)?;
        self.addr = std_listener.local_addr().map_err(bind)?;
        let acceptor = tls_acceptor(&self.shared.tls)?;
        let shared = self.shared.clone();
        let _ = self.stop_tx.send(false);
        let mut stop_rx = self.stop_tx.subscribe();
        self.listener = Some(self.runtime.spawn(async move {
            let listener = match TcpListener::from_std(std_listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("test api server: registering the listener failed: {e}");
                    return;
                }
            };
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => break,
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        let _ = tcp.set_nodelay(true);
                        let acceptor = acceptor.clone();
                        let shared = shared.clone();
                        let mut stop = stop_rx.clone();
                        conns.spawn(async move {
                            let Ok(tls) = acceptor.accept(tcp).await else { return };
                            let svc = service_fn(move |req| {
                                let shared = shared.clone();
                                async move { Ok::<_, std::convert::Infallible>(super::http::handle(shared, req).await) }
                            });
                            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                            tokio::select! {
                                _ = conn => {}
                                _ = stop.changed() => {}
                            }
                        });
                    }
                }
            }
            // Dropping the set aborts every connection: a stopped server answers nothing.
            conns.abort_all();
        }));
        if self.shared.config.controllers {
            let shared = self.shared.clone();
            let stop_rx = self.stop_tx.subscribe();
            self.controllers = Some(self.runtime.spawn(super::controllers::run(shared, stop_rx)));
        }
        // The aggregator is part of kube-apiserver, not of the controller manager.
        let (shared, stop_rx) = (self.shared.clone(), self.stop_tx.subscribe());
        self.aggregator = Some(tokio::spawn(super::aggregator::run(shared, stop_rx)));
        Ok(())
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// PEM of the CA that signed the serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.shared.tls.ca_pem
    }

    /// PEM of the serving CA's private key, so kubelets can get serving certificates signed by
    /// it (as k3s agents do); see also [`TlsMaterial::sign_serving_cert`].
    pub fn ca_key_pem(&self) -> &str {
        &self.shared.tls.ca_key_pem
    }

    /// PEM of the client CA that signed the kubelet-client certificate (kubelets trust it for
    /// client authentication, k3s `client-ca.crt`).
    pub fn client_ca_pem(&self) -> &str {
        &self.shared.tls.client_ca_pem
    }

    /// All PEM material (CAs, keys, the kubelet-client certificate).
    pub fn tls(&self) -> &TlsMaterial {
        &self.shared.tls
    }

    /// Write the k3s-like `server/tls` layout: `server-ca.crt`, `server-ca.key`,
    /// `client-ca.crt`, `client-kube-apiserver.crt`, `client-kube-apiserver.key`.
    pub fn write_k3s_tls_dir(&self, dir: &Path) -> std::io::Result<K3sTlsPaths> {
        self.shared.tls.write_k3s_tls_dir(dir)
    }

    pub fn admin_token(&self) -> &str {
        &self.shared.admin_token
    }

    /// Path of an admin kubeconfig for this server (in a temp dir owned by the server).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Kubeconfig YAML for `token`.
    pub fn kubeconfig_yaml_for(&self, token: &str) -> String {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: test\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\ncurrent-context: test\n",
            url = self.url()
        )
    }

    /// Write an admin kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), StartError> {
        std::fs::write(path, self.kubeconfig_yaml_for(&self.shared.admin_token)).map_err(|e| {
            StartError::WriteKubeconfig {
                path: path.to_path_buf(),
                source: e,
            }
        })
    }

    /// A kube client authenticated as admin.
    pub fn client(&self) -> kube::Client {
        self.client_for(&self.shared.admin_token.clone())
            .expect("a client for a server we just started")
    }

    /// A kube client with the given bearer token. Its built-in retries are off so tests see
    /// exactly what the server answered.
    pub fn client_for(&self, token: &str) -> Result<kube::Client, StartError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let url: http::Uri = self
            .url()
            .parse()
            .map_err(|e: http::uri::InvalidUri| StartError::Client(e.to_string()))?;
        let mut config = kube::Config::new(url);
        let ca: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(self.ca_pem().as_bytes())
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<_, _>>()
            .map_err(|e| StartError::Client(e.to_string()))?;
        config.root_cert = Some(ca);
        config.auth_info.token = Some(token.to_string().into());
        config.default_retry = false;
        kube::Client::try_from(config).map_err(|e| StartError::Client(e.to_string()))
    }

    /// Internal state (tests of the fixture itself).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    // ----- fault injection -----

    /// End every open watch stream (clients see the stream close and must resume).
    pub fn drop_watches(&self) {
        self.shared.watch_epoch.send_modify(|e| *e += 1);
    }

    /// Forget the watch history: resuming from any older resourceVersion answers 410.
    pub fn compact_history(&self) {
        self.shared.lock().store.compact();
    }

    /// Fail the next `count` requests matching `verb`/`resource` (plural, `None` = any).
    pub fn inject(&self, verb: Option<&str>, resource: Option<&str>, count: u32, fault: Fault) {
        self.shared
            .faults()
            .rules
            .push(FaultRule::new(verb, resource, count, fault));
    }

    /// Delay every request by `latency` (None to clear).
    pub fn set_latency(&self, latency: Option<Duration>) {
        self.shared.faults().latency = latency;
    }

    /// Stop serving (connections closed, port released); data is kept.
    pub async fn stop(&mut self) {
        let _ = self.stop_tx.send(true);
        self.drop_watches();
        if let Some(h) = self.listener.take() {
            let _ = h.await;
        }
        if let Some(h) = self.controllers.take() {
            let _ = h.await;
        }
        if let Some(h) = self.aggregator.take() {
            h.abort();
            let _ = h.await;
        }
    }

    /// Serve again on the same port with the same data, CA and tokens.
    pub async fn restart(&mut self) -> Result<(), StartError> {
        self.stop().await;
        let port = self.addr.port();
        // The port was just released; another process could grab it, but on loopback in a test
        // that is rare enough that retrying briefly is the honest fix.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match self.listen(port).await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!("restart bind retry: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    // ----- counters -----

    /// Every request counted so far.
    pub fn request_counts(&self) -> Vec<(RequestCount, u64)> {
        self.shared
            .faults()
            .counts
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Number of requests with this verb (and resource, if given).
    pub fn count(&self, verb: &str, resource: Option<&str>) -> u64 {
        self.shared
            .faults()
            .counts
            .iter()
            .filter(|(k, _)| k.verb == verb && resource.is_none_or(|r| k.resource == r))
            .map(|(_, v)| v)
            .sum()
    }

    /// Number of write requests by `user`, any outcome.
    pub fn write_count_by(&self, user: &str) -> u64 {
        self.shared
            .faults()
            .counts
            .iter()
            .filter(|(k, _)| k.user == user && is_write(&k.verb))
            .map(|(_, v)| v)
            .sum()
    }

    /// Every request of `user`, as `verb resource code` strings (for assertion messages).
    pub fn requests_by(&self, user: &str) -> Vec<String> {
        self.shared
            .faults()
            .counts
            .iter()
            .filter(|(k, _)| k.user == user)
            .map(|(k, v)| format!("{} {} {} x{v}", k.verb, k.resource, k.code))
            .collect()
    }

    /// Total requests so far (all users), to wait for quiet.
    pub fn total_requests(&self) -> u64 {
        self.shared.faults().counts.values().sum()
    }

    /// Fail the next `count` requests of `user` matching `verb`/`resource`.
    pub fn inject_for(
        &self,
        user: &str,
        verb: Option<&str>,
        resource: Option<&str>,
        count: u32,
        fault: Fault,
    ) {
        let mut rule = FaultRule::new(verb, resource, count, fault);
        rule.user = Some(user.to_string());
        self.shared.faults().rules.push(rule);
    }

    /// Number of write requests (create/update/patch/delete/deletecollection), any outcome.
    pub fn write_count(&self) -> u64 {
        self.shared
            .faults()
            .counts
            .iter()
            .filter(|(k, _)| is_write(&k.verb))
            .map(|(_, v)| v)
            .sum()
    }

    /// Forget every injected fault that has not fired yet (ends a time-boxed outage).
    pub fn clear_faults(&self) {
        self.shared.faults().rules.clear();
    }

    pub fn reset_counts(&self) {
        self.shared.faults().counts.clear();
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        let _ = self.stop_tx.send(true);
        if let Some(h) = self.listener.take() {
            h.abort();
        }
        if let Some(h) = self.controllers.take() {
            h.abort();
        }
        if let Some(h) = self.aggregator.take() {
            h.abort();
        }
    }
}

fn tls_acceptor(tls: &TlsMaterial) -> Result<tokio_rustls::TlsAcceptor, StartError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
            .chain(CertificateDer::pem_slice_iter(tls.ca_pem.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes())
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// kube's client needs a process-wide rustls provider; tests have no `main` to install it.
fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
