//! An end-to-end environment for vcsync: a host and a virtual API (two test API servers, or two
//! real clusters when `VCSYNC_E2E_HOST_KUBECONFIG` and `VCSYNC_E2E_VIRTUAL_KUBECONFIG` are
//! set), the kubelet simulator on the host, the host namespace with what the platform would
//! create there (workload ServiceAccount, tenant API Service), and the vcsync engine running
//! in-process so tests can stop and restart it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::apiserver::{ServerConfig, TestApiServer};
use crate::kubelet::{Kubelet, KubeletConfig, KubeletHandle};
use crate::testutil::{client_from_kubeconfig, unique_name};

/// Host kubeconfig for running the suite against a real host cluster.
pub const HOST_KUBECONFIG_ENV: &str = "VCSYNC_E2E_HOST_KUBECONFIG";
/// Virtual kubeconfig for running the suite against a real virtual cluster.
pub const VIRTUAL_KUBECONFIG_ENV: &str = "VCSYNC_E2E_VIRTUAL_KUBECONFIG";

/// Name of the host Service that fronts the virtual API in every harness.
pub const API_SERVICE: &str = "vcsync-api";

/// The user the engine's requests are counted under on the test API servers.
pub const ENGINE_USER: &str = "vcsync";
/// The bearer token of [`ENGINE_USER`] (for kubeconfigs of a vcsync process under test).
pub const ENGINE_TOKEN: &str = "vcsync-engine-token";

/// The environment of one test.
pub struct Harness {
    pub tenant: String,
    pub host_namespace: String,
    pub host: Client,
    pub virt: Client,
    /// Clients the engine uses (a separate identity on the test servers, so its requests can
    /// be counted apart from the test's and the kubelet simulator's).
    pub engine_host: Client,
    pub engine_virt: Client,
    /// The in-process servers (absent against real clusters).
    pub host_server: Option<TestApiServer>,
    pub virtual_server: Option<TestApiServer>,
    pub kubelet: Option<KubeletHandle>,
    /// The volume provisioner simulator on the host ([`STORAGE_CLASSES`]).
    pub provisioner: Option<crate::provisioner::ProvisionerHandle>,
    /// The isolation policy the engine runs with ([`test_policy`] unless a test sets another).
    pub policy: vcsync::policy::Policy,
    engine: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    /// The virtual server's k3s-like `server/tls` files (the kubelet endpoint's CAs).
    kubelet_tls: Option<(tempfile::TempDir, crate::apiserver::K3sTlsPaths)>,
    /// The kubelet endpoint's port, kept across engine restarts so the virtual nodes'
    /// `daemonEndpoints` stay as written (0 until the first start).
    kubelet_port: Arc<std::sync::Mutex<u16>>,
    /// Where the engine's metrics API listens (set once it is bound).
    metrics_api_addr: Arc<std::sync::Mutex<Option<std::net::SocketAddr>>>,
}

/// The host StorageClasses the provisioner simulator serves in every harness: an `Immediate`
/// one (the test policy's default), a `WaitForFirstConsumer` one, and one without expansion.
pub const STORAGE_CLASSES: [&str; 3] = [
    "vcsync-e2e-immediate",
    "vcsync-e2e-wffc",
    "vcsync-e2e-fixed",
];

/// The provisioner simulator's classes ([`STORAGE_CLASSES`]).
pub fn sim_classes() -> Vec<crate::provisioner::SimClass> {
    use crate::provisioner::SimClass;
    vec![
        SimClass::immediate(STORAGE_CLASSES[0]),
        SimClass::wait_for_first_consumer(STORAGE_CLASSES[1]),
        SimClass::immediate(STORAGE_CLASSES[2]).no_expansion(),
    ]
}

/// The policy of the sync tests: the secure defaults, opened just enough for the objects those
/// tests create (an ingress class and `*.example.com` hosts, endpoints in 10.0.0.0/8, the
/// simulated storage classes). The policy's own e2e tests start from the defaults instead.
pub fn test_policy() -> vcsync::policy::Policy {
    vcsync::policy::Policy::from_yaml(&format!(
        "services:\n  allowedEndpointCidrs: [10.0.0.0/8]\ningress:\n  class:\n    allowed: [nginx]\n    default: nginx\n  allowedHosts: [\"*.example.com\"]\nstorage:\n  class:\n    allowed: [{}, {}, {}]\n    default: {}\n",
        STORAGE_CLASSES[0], STORAGE_CLASSES[1], STORAGE_CLASSES[2], STORAGE_CLASSES[0]
    ))
    .expect("the test policy is valid")
}

impl Harness {
    /// Start the environment (without the engine: call [`Harness::start_engine`]).
    pub async fn new(tenant: &str) -> Harness {
        Self::with_virtual_config(tenant, ServerConfig::default()).await
    }

    /// Like [`Harness::new`], with settings for the virtual test API server (e.g. another
    /// service CIDR than the host's).
    pub async fn with_virtual_config(tenant: &str, virtual_config: ServerConfig) -> Harness {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // `RUST_LOG=vcsync=debug cargo test ...` shows the engine's logs.
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let (host, virt, engine_host, engine_virt, host_server, virtual_server) = match (
            std::env::var(HOST_KUBECONFIG_ENV),
            std::env::var(VIRTUAL_KUBECONFIG_ENV),
        ) {
            (Ok(h), Ok(v)) if !h.is_empty() && !v.is_empty() => {
                let (h, v) = (
                    client_from_kubeconfig(&h).await,
                    client_from_kubeconfig(&v).await,
                );
                (h.clone(), v.clone(), h, v, None, None)
            }
            _ => {
                let config = || ServerConfig {
                    users: vec![(ENGINE_TOKEN.to_string(), ENGINE_USER.to_string())],
                    ..ServerConfig::default()
                };
                let hs = TestApiServer::start(ServerConfig {
                    // The simulated nodes' Hostname addresses do not resolve.
                    kubelet_preferred_address_types: vec!["InternalIP".into(), "Hostname".into()],
                    ..config()
                })
                .await
                .expect("host test API server");
                let vs = TestApiServer::start(ServerConfig {
                    users: config().users,
                    // A tenant's k3s has no metrics-server: its metrics.k8s.io is vcsync's
                    // APIService, reached through the aggregator.
                    resource_metrics: false,
                    ..virtual_config
                })
                .await
                .expect("virtual test API server");
                let eh = hs.client_for(ENGINE_TOKEN).expect("engine host client");
                let ev = vs.client_for(ENGINE_TOKEN).expect("engine virtual client");
                (hs.client(), vs.client(), eh, ev, Some(hs), Some(vs))
            }
        };
        let host_namespace = unique_name(&format!("host-{tenant}"));
        let nss: Api<Namespace> = Api::all(host.clone());
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": host_namespace}}))
                .expect("namespace"),
        )
        .await
        .expect("host namespace");
        let sas: Api<ServiceAccount> = Api::namespaced(host.clone(), &host_namespace);
        sas.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "vcsync-workload"}, "automountServiceAccountToken": false})).expect("sa"),
        )
        .await
        .expect("workload service account");
        let svcs: Api<Service> = Api::namespaced(host.clone(), &host_namespace);
        svcs.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": API_SERVICE}, "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}], "selector": {"app": "vcsync-api"}}}))
                .expect("service"),
        )
        .await
        .expect("tenant API service");
        // The simulated host kubelets trust the host server as k3s agents trust theirs: a
        // serving certificate from its CA, its kubelet-client certificate required.
        let mut kubelet_config = KubeletConfig::default().namespace(host_namespace.clone());
        if let Some(hs) = &host_server {
            kubelet_config = kubelet_config.api_tls(crate::kubelet::KubeletApiTls {
                serving_ca_cert_pem: Some(hs.ca_pem().to_owned()),
                serving_ca_key_pem: Some(hs.ca_key_pem().to_owned()),
                client_ca_pem: Some(hs.client_ca_pem().to_owned()),
            });
        }
        let kubelet_tls = virtual_server.as_ref().map(|vs| {
            let dir = tempfile::tempdir().expect("temp dir");
            let paths = vs.write_k3s_tls_dir(dir.path()).expect("k3s tls files");
            (dir, paths)
        });
        let kubelet = Kubelet::start(host.clone(), kubelet_config).expect("kubelet simulator");
        let provisioner =
            crate::provisioner::start(host.clone(), Some(host_namespace.clone()), sim_classes())
                .await
                .expect("provisioner simulator");
        Harness {
            tenant: tenant.to_string(),
            host_namespace,
            host,
            virt,
            engine_host,
            engine_virt,
            host_server,
            virtual_server,
            kubelet: Some(kubelet),
            provisioner: Some(provisioner),
            policy: test_policy(),
            engine: None,
            kubelet_tls,
            kubelet_port: Arc::new(std::sync::Mutex::new(0)),
            metrics_api_addr: Arc::default(),
        }
    }

    /// The kubelet endpoint settings of the in-process engine (`None` against real clusters,
    /// where the virtual API server cannot reach a test process): the virtual server's client
    /// CA authenticates callers, its server CA signs the serving certificate, as with k3s.
    pub fn kubelet_endpoint_config(&self) -> Option<vcsync::kubelet::EndpointConfig> {
        let (_, paths) = self.kubelet_tls.as_ref()?;
        let port = *self.kubelet_port.lock().unwrap_or_else(|e| e.into_inner());
        let loopback: std::net::IpAddr = "127.0.0.1".parse().expect("an IP");
        Some(vcsync::kubelet::EndpointConfig {
            advertise: loopback,
            bind: std::net::SocketAddr::new(loopback, port),
            client_ca: Some(paths.client_ca_crt.clone()),
            client_names: vec!["system:apiserver".into()],
            serving: vcsync::kubelet::ServingCert::SignedBy {
                ca_cert: paths.server_ca_crt.clone(),
                ca_key: paths.server_ca_key.clone(),
            },
        })
    }

    /// The metrics API settings of the in-process engine (`None` against real clusters): the
    /// virtual server's request-header CA authenticates the front proxy, its server CA signs
    /// the serving certificate, as with k3s.
    pub fn metrics_api_config(&self) -> Option<vcsync::metrics_api::MetricsApiConfig> {
        let (_, paths) = self.kubelet_tls.as_ref()?;
        // The port of the first start is kept across restarts (as in production, where it is
        // a flag), so the registration in the virtual cluster stays as written.
        let port = self.metrics_api_addr().map_or(0, |a| a.port());
        Some(vcsync::metrics_api::config(
            metrics_api_ip(),
            port,
            Some(paths.request_header_ca_crt.clone()),
            vec!["system:auth-proxy".into()],
            vcsync::kubelet::ServingCert::SignedBy {
                ca_cert: paths.server_ca_crt.clone(),
                ca_key: paths.server_ca_key.clone(),
            },
        ))
    }

    /// Where the running engine's metrics API listens (`None` before it is bound, or against
    /// real clusters).
    pub fn metrics_api_addr(&self) -> Option<std::net::SocketAddr> {
        *self
            .metrics_api_addr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The virtual server's k3s-like `server/tls` files (`None` against real clusters).
    pub fn k3s_tls(&self) -> Option<&crate::apiserver::K3sTlsPaths> {
        self.kubelet_tls.as_ref().map(|(_, p)| p)
    }

    /// The engine's settings for this environment.
    pub fn engine_config(&self) -> vcsync::sync::EngineConfig {
        vcsync::sync::EngineConfig {
            tenant: self.tenant.clone(),
            host_namespace: self.host_namespace.clone(),
            workload_service_account: "vcsync-workload".into(),
            concurrency: 4,
            api_service: API_SERVICE.into(),
            dns_service: ("kube-system".into(), "kube-dns".into()),
            cluster_domain: "cluster.local".into(),
            kubelet: None,
        }
    }

    /// Start the engine in-process, with the kubelet endpoint of the virtual nodes.
    pub fn start_engine(&mut self) {
        assert!(self.engine.is_none(), "the engine is already running");
        let (cfg, host, virt) = (
            self.engine_config(),
            self.engine_host.clone(),
            self.engine_virt.clone(),
        );
        let (policy, kubelet, port) = (
            self.policy.clone(),
            self.kubelet_endpoint_config(),
            self.kubelet_port.clone(),
        );
        let (metrics_api, metrics_api_addr) =
            (self.metrics_api_config(), self.metrics_api_addr.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut cfg = cfg;
            let (metrics_api_cfg, tenant) = (metrics_api.clone(), cfg.tenant.clone());
            let metrics_api = match metrics_api {
                Some(m) => Some(vcsync::metrics_api::bind(m).await.expect("metrics API")),
                None => None,
            };
            *metrics_api_addr.lock().unwrap_or_else(|e| e.into_inner()) =
                metrics_api.as_ref().and_then(|m| m.local_addr());
            let bound = match kubelet {
                Some(k) => Some(vcsync::kubelet::bind(k).await.expect("kubelet endpoint")),
                None => None,
            };
            if let Some(b) = &bound {
                cfg.kubelet = Some(b.endpoint);
                *port.lock().unwrap_or_else(|e| e.into_inner()) = b.endpoint.port;
            }
            let shared = Arc::new(
                vcsync::sync::Shared::new(cfg, host.clone(), virt.clone()).with_policy(policy),
            );
            let registration = match (&metrics_api_cfg, metrics_api.as_ref()) {
                (Some(c), Some(m)) => {
                    let port = m.local_addr().map_or(0, |a| a.port());
                    let reg = vcsync::metrics_api::register::registration(&tenant, c, port)
                        .expect("the serving CA is readable");
                    Some(tokio::spawn(vcsync::metrics_api::register::maintain(
                        virt.clone(),
                        vcsync::gate::WriteGate::open(),
                        reg,
                        futures::future::pending::<()>(),
                    )))
                }
                _ => None,
            };
            let serve_metrics = metrics_api.map(|m| {
                tokio::spawn(m.serve(
                    shared.clone(),
                    host.clone(),
                    virt.clone(),
                    shared.metrics.clone(),
                    futures::future::pending::<()>(),
                ))
            });
            let serve = bound.map(|b| {
                tokio::spawn(b.serve(
                    shared.clone(),
                    host,
                    shared.metrics.clone(),
                    futures::future::pending::<()>(),
                ))
            });
            vcsync::sync::run(shared, async move {
                let _ = rx.await;
            })
            .await;
            if let Some(r) = registration {
                r.abort();
                let _ = r.await;
            }
            if let Some(m) = serve_metrics {
                m.abort();
                let _ = m.await;
            }
            if let Some(serve) = serve {
                serve.abort();
                // The listener is closed before a restart binds the same port again.
                let _ = serve.await;
            }
        });
        self.engine = Some((tx, task));
    }

    /// Stop the engine gracefully and wait for it.
    pub async fn stop_engine(&mut self) {
        if let Some((tx, task)) = self.engine.take() {
            let _ = tx.send(());
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }

    /// Host objects of kind `K` in the host namespace.
    pub fn host_api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.host.clone(), &self.host_namespace)
    }

    /// Virtual objects of kind `K` in `ns`.
    pub fn virt_api<K>(&self, ns: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.virt.clone(), ns)
    }

    /// Host name of a virtual object (the product's translation).
    pub fn host_name(&self, ns: &str, name: &str) -> String {
        vcsync::translate::host_name(
            &self.tenant,
            ns,
            name,
            vcsync::translate::NameRule::Dns1123Subdomain,
        )
    }
}

impl Harness {
    /// Writes the engine made so far on (host, virtual); `None` against real clusters.
    pub fn engine_writes(&self) -> Option<(u64, u64)> {
        Some((
            self.host_server.as_ref()?.write_count_by(ENGINE_USER),
            self.virtual_server.as_ref()?.write_count_by(ENGINE_USER),
        ))
    }

    /// Forget all request counts.
    pub fn reset_counts(&self) {
        for s in [&self.host_server, &self.virtual_server]
            .into_iter()
            .flatten()
        {
            s.reset_counts();
        }
    }

    /// Wait until neither server has seen a request from anyone for `quiet` (bounded by
    /// `deadline`): the engine has settled.
    pub async fn wait_quiet(&self, quiet: Duration, deadline: Duration) {
        let (Some(hs), Some(vs)) = (&self.host_server, &self.virtual_server) else {
            return;
        };
        let total = || hs.total_requests() + vs.total_requests();
        let end = tokio::time::Instant::now() + deadline;
        let mut last = total();
        let mut since = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = total();
            if now != last {
                last = now;
                since = tokio::time::Instant::now();
            } else if since.elapsed() >= quiet {
                return;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "the servers never went quiet within {deadline:?}"
            );
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some((tx, task)) = self.engine.take() {
            let _ = tx.send(());
            task.abort();
        }
    }
}

/// The address the in-process metrics API listens on: the machine's own non-loopback address
/// (the one its default route uses), because the registration's Endpoints may not be loopback
/// (kube-apiserver's validation, which the test API server implements, refuses 127.0.0.0/8).
/// Nothing is sent: connecting a UDP socket only picks the route. Falls back to 127.0.0.1 on
/// a machine without such an address; the Endpoints write is then refused and the tests
/// that need it fail.
pub fn metrics_api_ip() -> std::net::IpAddr {
    let routed = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("203.0.113.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    routed.unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]))
}
