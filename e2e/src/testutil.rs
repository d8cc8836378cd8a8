//! Helpers for tests that run against the test API server or a real cluster: polling with a
//! deadline (never fixed sleeps), unique namespaces, picking the target cluster, and plain-HTTP
//! GETs of vcsync's health endpoint.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::{Client, Config};

use crate::apiserver::{ServerConfig, TestApiServer};

/// Poll `check` every 50 ms until it returns `Some`, or fail with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A namespace name unique to this process and call.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id() % 100_000)
}

/// Create a namespace and wait until its `default` ServiceAccount exists (pods need it).
pub async fn create_namespace(client: &Client, name: &str) {
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
        .expect("valid namespace");
    nss.create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    wait_for(
        Duration::from_secs(20),
        "the default ServiceAccount",
        || {
            let sas = sas.clone();
            async move { sas.get_opt("default").await.ok().flatten() }
        },
    )
    .await;
}

/// Where a test runs: our test API server, or a real cluster from a kubeconfig.
pub struct Cluster {
    pub client: Client,
    /// Present when the test runs against the in-process server (fault injection available).
    pub server: Option<TestApiServer>,
}

impl Cluster {
    /// A real cluster if `env_var` names a kubeconfig, else a fresh test API server.
    pub async fn from_env_or_test_server(env_var: &str) -> Cluster {
        match std::env::var(env_var) {
            Ok(path) if !path.is_empty() => Cluster {
                client: client_from_kubeconfig(&path).await,
                server: None,
            },
            _ => {
                let server = TestApiServer::start(ServerConfig::default())
                    .await
                    .expect("test API server starts");
                Cluster {
                    client: server.client(),
                    server: Some(server),
                }
            }
        }
    }
}

/// A client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &str) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = kube::config::Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("reading kubeconfig {path}: {e}"));
    let config = Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("loading kubeconfig {path}: {e}"));
    Client::try_from(config).expect("client from kubeconfig")
}

/// `GET path` on a plain-HTTP endpoint (vcsync's health and metrics server): status code and
/// body, or `None` when nothing answers.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: vcsync\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}
