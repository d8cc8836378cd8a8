//! End-to-end tests of the host namespace guardrail check: the `vcsync` binary runs between two
//! test API servers (host and virtual). Without guardrails, `--require-guardrails` refuses to
//! start and names every missing item; with them it starts, and removing one afterwards shows
//! up in `/metrics` and `/readyz` at the next check. A host identity that may not read the
//! Namespace (no optional ClusterRole) reports the Pod Security labels as unknown and starts.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::json;
use vcsync_e2e::apiserver::{ServerConfig, TestApiServer};
mod support;
use support::{Process, get, sample, vcsync_command};
use vcsync_e2e::testutil::{create_namespace, unique_name, wait_for};

const WAIT: Duration = Duration::from_secs(45);
const TENANT: &str = "guarded";

type Vcsync = Process;

/// `vcsync run --require-guardrails` with a 1 s check interval and leader election off.
fn spawn(host_kc: &Path, virt_kc: &Path, namespace: &str) -> Vcsync {
    let mut cmd = vcsync_command();
    cmd.args(["run", "--tenant", TENANT])
        .args(["--host-namespace", namespace])
        .arg("--virtual-kubeconfig")
        .arg(virt_kc)
        .arg("--host-kubeconfig")
        .arg(host_kc)
        .args(["--metrics-addr", "127.0.0.1:0", "--leader-elect=false"])
        .args(["--require-guardrails", "--guardrails-interval-seconds", "1"]);
    Process::spawn(cmd, TENANT)
}

/// Polls `path` on `vcsync`'s health endpoint until its body satisfies `want`; on timeout shows
/// the last body and the logs.
async fn poll(
    vcsync: &Vcsync,
    addr: SocketAddr,
    path: &str,
    what: &str,
    want: impl Fn(&str) -> bool,
) {
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
            vcsync.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
        spawn(&self.host_kc, &self.virt_kc, &self.namespace)
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
    let status = refused.wait_exit(WAIT).await;
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
    let addr = running.addr(WAIT).await;
    wait_for(WAIT, "the guardrails ok log line", || async {
        running.logged("host namespace guardrails ok").then_some(())
    })
    .await;
    assert!(running.logged("both APIs reachable"));
    poll(&running, addr, "/readyz", "all present", |b| {
        b.contains("guardrails: all present")
    })
    .await;

    // One removed: the next check reports it.
    Api::<LimitRange>::namespaced(env.host.client(), &env.namespace)
        .delete("limits", &DeleteParams::default())
        .await
        .unwrap();
    poll(&running, addr, "/metrics", "limit-range missing", |b| {
        sample(b, "vcsync_guardrails_missing{item=\"limit-range\"}") == Some(1.0)
            && sample(b, "vcsync_guardrails_missing{item=\"resource-quota\"}") == Some(0.0)
    })
    .await;
    poll(&running, addr, "/readyz", "readyz names it", |b| {
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
    let passes = running.count_logged("host namespace guardrails missing");
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
    let addr = running.addr(WAIT).await;
    wait_for(WAIT, "the unknown log line", || async {
        running
            .logged("cannot read a host namespace guardrail")
            .then_some(())
    })
    .await;
    let logs = running.logs();
    assert!(logs.contains("pod-security-labels"), "{logs}");
    assert!(logs.contains("403"), "{logs}");
    poll(
        &running,
        addr,
        "/metrics",
        "namespaced items present",
        |b| {
            sample(b, "vcsync_guardrails_missing{item=\"network-policy\"}") == Some(0.0)
                && sample(b, "vcsync_guardrails_missing{item=\"pod-security-labels\"}") == Some(0.0)
                && sample(b, "vcsync_guardrails_unknown{item=\"pod-security-labels\"}") == Some(1.0)
        },
    )
    .await;
    // Unknown is its own state on /readyz too, not read as present.
    poll(&running, addr, "/readyz", "readyz says unknown", |b| {
        b.contains("guardrails: unknown (not readable) pod-security-labels")
    })
    .await;
}
