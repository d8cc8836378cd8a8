//! End-to-end tests of the host namespace guardrail check: the `vcsync` binary runs between two
//! test API servers (host and virtual). Without guardrails, `--require-guardrails` refuses to
//! start and names every missing item; with them it starts, and removing one afterwards shows
//! up in `/metrics` and `/readyz` at the next check. A host identity that may not read the
//! Namespace (no optional ClusterRole) reports the Pod Security labels as unknown and starts.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use vcsync_e2e::apiserver::{ServerConfig, TestApiServer};
use vcsync_e2e::testutil::{create_namespace, unique_name, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_vcsync");
const WAIT: Duration = Duration::from_secs(45);
const TENANT: &str = "guarded";

/// One `vcsync run` process, killed on drop.
struct Vcsync {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Vcsync {
    /// `vcsync run --require-guardrails` with a 1 s check interval and leader election off.
    fn spawn(host_kc: &Path, virt_kc: &Path, namespace: &str) -> Vcsync {
        let mut cmd = Command::new(BIN);
        for (key, _) in std::env::vars() {
            if key.starts_with("VCSYNC_") || key.starts_with("KUBERNETES_SERVICE_") {
                cmd.env_remove(key);
            }
        }
        cmd.env_remove("KUBECONFIG")
            .env_remove("POD_NAME")
            .env_remove("RUST_LOG")
            .env("VCSYNC_LOG_LEVEL", "info")
            .args(["--log-format", "json", "run", "--tenant", TENANT])
            .args(["--host-namespace", namespace])
            .arg("--virtual-kubeconfig")
            .arg(virt_kc)
            .arg("--host-kubeconfig")
            .arg(host_kc)
            .args(["--metrics-addr", "127.0.0.1:0", "--leader-elect=false"])
            .args(["--require-guardrails", "--guardrails-interval-seconds", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("vcsync starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        // Read continuously: a full pipe would block the process.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push(line);
            }
        });
        Vcsync { child, lines }
    }

    fn logs(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn logged(&self, needle: &str) -> bool {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }

    async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "vcsync did not exit; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The health endpoint's address, from the log line announcing it.
    async fn addr(&self) -> SocketAddr {
        wait_for(WAIT, "the health endpoint's log line", || async {
            self.lines.lock().unwrap().iter().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                v["metrics_addr"].as_str()?.parse().ok()
            })
        })
        .await
    }

    /// Polls `path` until its body satisfies `want`; on timeout shows the last body and logs.
    async fn poll(&self, addr: SocketAddr, path: &str, what: &str, want: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + WAIT;
        let mut last = None;
        loop {
            if let Some((_, body)) = get(addr, path).await {
                if want(&body) {
                    return;
                }
                last = Some(body);
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {path} never matched; last answer {last:?}; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Vcsync {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on the health endpoint: status code and body.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
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

/// The value of the sample line starting with `series` (full name and labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn obj<T: DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

/// Two test API servers, the host namespace (no guardrails yet) and kubeconfigs in `dir`.
struct Env {
    host: TestApiServer,
    _virt: TestApiServer,
    namespace: String,
    _dir: tempfile::TempDir,
    host_kc: std::path::PathBuf,
    virt_kc: std::path::PathBuf,
}

impl Env {
    async fn new(host_config: impl FnOnce(&str) -> ServerConfig) -> Env {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let namespace = unique_name("guardrails");
        let host = TestApiServer::start(host_config(&namespace))
            .await
            .expect("host test API server");
        let virt = TestApiServer::start(ServerConfig::default())
            .await
            .expect("virtual test API server");
        create_namespace(&host.client(), &namespace).await;
        let dir = tempfile::tempdir().unwrap();
        let host_kc = dir.path().join("host.kubeconfig");
        let virt_kc = dir.path().join("virtual.kubeconfig");
        host.write_kubeconfig(&host_kc).unwrap();
        virt.write_kubeconfig(&virt_kc).unwrap();
        Env {
            host,
            _virt: virt,
            namespace,
            _dir: dir,
            host_kc,
            virt_kc,
        }
    }

    fn spawn(&self) -> Vcsync {
        Vcsync::spawn(&self.host_kc, &self.virt_kc, &self.namespace)
    }

    /// Creates the quota, limit range and default-deny policy (not the namespace labels).
    async fn create_namespaced_guardrails(&self) {
        let client = self.host.client();
        let ns = &self.namespace;
        let pp = PostParams::default();
        Api::<ResourceQuota>::namespaced(client.clone(), ns)
            .create(
                &pp,
                &obj(json!({"metadata": {"name": "quota"}, "spec": {"hard": {"pods": "20"}}})),
            )
            .await
            .unwrap();
        Api::<LimitRange>::namespaced(client.clone(), ns)
            .create(
                &pp,
                &obj(json!({"metadata": {"name": "limits"}, "spec": {"limits": [
                    {"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}}]}})),
            )
            .await
            .unwrap();
        Api::<NetworkPolicy>::namespaced(client, ns)
            .create(
                &pp,
                &obj(
                    json!({"metadata": {"name": "tenant-default-deny"}, "spec": {
                    "podSelector": {"matchLabels": {"vcsync.io/managed-by": TENANT}},
                    "policyTypes": ["Ingress", "Egress"]}}),
                ),
            )
            .await
            .unwrap();
    }

    async fn label_namespace(&self) {
        Api::<Namespace>::all(self.host.client())
            .patch(
                &self.namespace,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {
                    "pod-security.kubernetes.io/enforce": "baseline",
                    "pod-security.kubernetes.io/warn": "restricted"}}})),
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn require_guardrails_refuses_to_start_then_starts_and_watches() {
    let env = Env::new(|_| ServerConfig::default()).await;

    // Nothing in place: exit 1, one line naming every item.
    let mut refused = env.spawn();
    let status = refused.wait_exit().await;
    assert_eq!(status.code(), Some(1), "logs:\n{}", refused.logs());
    let logs = refused.logs();
    let line = logs
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in:\n{logs}"));
    assert!(
        line.contains(&format!(
            "--require-guardrails: host namespace {} lacks guardrails; missing: ",
            env.namespace
        )),
        "{line}"
    );
    for (item, reason) in [
        (
            "pod-security-labels",
            "no pod-security.kubernetes.io/enforce label",
        ),
        ("resource-quota", "no ResourceQuota"),
        ("limit-range", "no LimitRange"),
        ("network-policy", "no NetworkPolicy"),
    ] {
        assert!(line.contains(&format!("{item} ({reason})")), "{line}");
    }
    assert!(
        !logs.contains("serving /livez"),
        "refused before serving:\n{logs}"
    );

    // Everything in place: it starts, and says so.
    env.create_namespaced_guardrails().await;
    env.label_namespace().await;
    let running = env.spawn();
    let addr = running.addr().await;
    wait_for(WAIT, "the guardrails ok log line", || async {
        running.logged("host namespace guardrails ok").then_some(())
    })
    .await;
    assert!(running.logged("both APIs reachable"));
    running
        .poll(addr, "/readyz", "all present", |b| {
            b.contains("guardrails: all present")
        })
        .await;

    // One removed: the next check reports it.
    Api::<LimitRange>::namespaced(env.host.client(), &env.namespace)
        .delete("limits", &DeleteParams::default())
        .await
        .unwrap();
    running
        .poll(addr, "/metrics", "limit-range missing", |b| {
            sample(b, "vcsync_guardrails_missing{item=\"limit-range\"}") == Some(1.0)
                && sample(b, "vcsync_guardrails_missing{item=\"resource-quota\"}") == Some(0.0)
        })
        .await;
    running
        .poll(addr, "/readyz", "readyz names it", |b| {
            b.contains("guardrails: missing limit-range")
        })
        .await;
    wait_for(WAIT, "the missing log line", || async {
        running
            .logged("host namespace guardrails missing")
            .then_some(())
    })
    .await;
    // Logged once per change, not every pass: two more passes add no line.
    let lists = env.host.count("list", Some("limitranges"));
    wait_for(WAIT, "two more passes", || async {
        (env.host.count("list", Some("limitranges")) >= lists + 2).then_some(())
    })
    .await;
    let passes = running
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("host namespace guardrails missing"))
        .count();
    assert_eq!(passes, 1, "logs:\n{}", running.logs());
}

#[tokio::test]
async fn a_forbidden_namespace_read_is_unknown_and_does_not_block() {
    let token = "limited-guardrails".to_owned();
    let env = Env::new(|ns| ServerConfig {
        namespaced_token: Some((token.clone(), ns.to_owned())),
        ..ServerConfig::default()
    })
    .await;
    env.create_namespaced_guardrails().await;
    // vcsync talks to the host with the token limited to its namespace, as with the Role alone.
    std::fs::write(&env.host_kc, env.host.kubeconfig_yaml_for(&token)).unwrap();
    let running = env.spawn();
    let addr = running.addr().await;
    wait_for(WAIT, "the unknown log line", || async {
        running
            .logged("cannot read a host namespace guardrail")
            .then_some(())
    })
    .await;
    let logs = running.logs();
    assert!(logs.contains("pod-security-labels"), "{logs}");
    assert!(logs.contains("403"), "{logs}");
    running
        .poll(addr, "/metrics", "namespaced items present", |b| {
            sample(b, "vcsync_guardrails_missing{item=\"network-policy\"}") == Some(0.0)
                && !b.contains("item=\"pod-security-labels\"")
        })
        .await;
}
