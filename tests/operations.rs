//! End-to-end tests of operating vcsync: the `vcsync` binary runs as separate processes
//! between two test API servers (host and virtual, with the kubelet simulator on the host).
//! Probes and metrics are scraped over HTTP, leader failover is tested by SIGKILLing the
//! leader process, and SIGTERM must exit 0 in bounded time having released the Lease.
//! The Lease logic itself is also tested in-process against a test API server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;
use vcsync::leader::{Attempt, LeaderElector, LeaseConfig};
use vcsync_e2e::apiserver::{ServerConfig, TestApiServer};
use vcsync_e2e::harness::Harness;
mod support;
use support::{Process, get, sample, vcsync_command};
use vcsync_e2e::testutil::{create_namespace, unique_name, wait_for};

const WAIT: Duration = Duration::from_secs(45);

/// Short Lease timings so failover is quick to test.
const LEASE_SECONDS: u64 = 4;
const RENEW_SECONDS: u64 = 3;
const RETRY_SECONDS: u64 = 1;

type Vcsync = Process;

/// `vcsync run` with short Lease timings, as replica `identity`.
fn spawn(h: &Harness, dir: &Path, identity: &str) -> Vcsync {
    let (host_kc, virt_kc) = kubeconfigs(h, dir);
    let mut cmd = vcsync_command();
    cmd.args(["run", "--tenant", &h.tenant])
        .args(["--host-namespace", &h.host_namespace])
        .arg("--virtual-kubeconfig")
        .arg(&virt_kc)
        .arg("--host-kubeconfig")
        .arg(&host_kc)
        .args(["--metrics-addr", "127.0.0.1:0", "--pod-name", identity])
        .args(["--lease-duration-seconds", &LEASE_SECONDS.to_string()])
        .args(["--renew-deadline-seconds", &RENEW_SECONDS.to_string()])
        .args(["--retry-period-seconds", &RETRY_SECONDS.to_string()]);
    Process::spawn(cmd, identity)
}

/// Admin kubeconfigs of both test servers, written into `dir`.
fn kubeconfigs(h: &Harness, dir: &Path) -> (PathBuf, PathBuf) {
    let host = dir.join("host.kubeconfig");
    let virt = dir.join("virtual.kubeconfig");
    h.host_server
        .as_ref()
        .expect("these tests need the test API servers")
        .write_kubeconfig(&host)
        .unwrap();
    h.virtual_server
        .as_ref()
        .expect("these tests need the test API servers")
        .write_kubeconfig(&virt)
        .unwrap();
    (host, virt)
}

/// The `/readyz` body once it passes with `role` in its leader-election line; on timeout the
/// failure shows the last body and the process's logs.
async fn ready_body(addr: SocketAddr, role: &str, vcsync: &Vcsync) -> String {
    let want = format!("[+]leader-election ok: {role}\n");
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    loop {
        if let Some((code, body)) = get(addr, "/readyz").await {
            if code == 200 && body.contains(&want) {
                return body;
            }
            last = Some((code, body));
        }
        assert!(
            Instant::now() < deadline,
            "/readyz of {} never passed as {role}; last answer {last:?}; logs:\n{}",
            vcsync.name,
            vcsync.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn mk_pod(ns: &str, name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
    }))
    .expect("valid pod")
}

async fn lease_holder(h: &Harness) -> Option<String> {
    let leases: Api<Lease> = h.host_api();
    leases
        .get_opt(&format!("vcsync-{}", h.tenant))
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

async fn wait_host_pod(h: &Harness, ns: &str, name: &str) {
    let hpods = h.host_api::<Pod>();
    let host_name = h.host_name(ns, name);
    wait_for(WAIT, &format!("host pod {host_name}"), || {
        let (hpods, host_name) = (hpods.clone(), host_name.clone());
        async move { hpods.get_opt(&host_name).await.ok().flatten() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_metrics_are_served_and_sigterm_releases_the_lease() {
    let h = Harness::new("ops").await;
    create_namespace(&h.virt, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let mut vcsync = spawn(&h, dir.path(), "replica-a");
    let addr = vcsync.addr(WAIT).await;

    for path in ["/livez", "/healthz"] {
        let (code, body) = get(addr, path).await.expect("an answer");
        assert_eq!((code, body.as_str()), (200, "ok\n"), "{path}");
    }
    let ready = ready_body(addr, "leading", &vcsync).await;
    for line in [
        "[+]host-api ok",
        "[+]virtual-api ok",
        "[+]leader-election ok: leading",
        "[+]caches ok",
        "readyz check passed",
    ] {
        assert!(ready.contains(line), "{line} missing:\n{ready}");
    }
    assert_eq!(lease_holder(&h).await.as_deref(), Some("replica-a"));

    h.virt_api::<Pod>("shop")
        .create(&PostParams::default(), &mk_pod("shop", "web"))
        .await
        .unwrap();
    wait_host_pod(&h, "shop", "web").await;

    // Families named like controller-runtime's, and vcsync's own, with the pod counted.
    let metrics = wait_for(
        WAIT,
        "the pod's reconcile and objects in /metrics",
        || async {
            let (code, text) = get(addr, "/metrics").await?;
            assert_eq!(code, 200);
            let reconciled = sample(
                &text,
                "controller_runtime_reconcile_total{controller=\"pod\",result=\"success\"}",
            )?;
            let objects = sample(&text, "vcsync_objects_synced{kind=\"Pod\"}")?;
            (reconciled >= 1.0 && objects >= 1.0).then_some(text)
        },
    )
    .await;
    for family in [
        "# TYPE controller_runtime_reconcile counter",
        "# TYPE controller_runtime_reconcile_errors counter",
        "# TYPE controller_runtime_reconcile_time_seconds histogram",
        "# TYPE controller_runtime_active_workers gauge",
        "# TYPE controller_runtime_max_concurrent_reconciles gauge",
        "# TYPE workqueue_depth gauge",
        "# TYPE vcsync_sync_latency_seconds histogram",
        "# TYPE vcsync_api_requests counter",
        "# TYPE vcsync_objects_synced gauge",
        "# TYPE vcsync_policy_violations counter",
        "# TYPE vcsync_ownership_conflicts counter",
        "# TYPE vcsync_leader gauge",
        "# TYPE vcsync_cache_synced gauge",
    ] {
        assert!(metrics.contains(family), "{family} missing:\n{metrics}");
    }
    let at_least_one = |series: &str| {
        let v = sample(&metrics, series).unwrap_or(0.0);
        assert!(v >= 1.0, "{series} = {v}:\n{metrics}");
    };
    at_least_one("vcsync_leader");
    at_least_one(
        "vcsync_api_requests_total{api=\"host\",verb=\"create\",kind=\"Pod\",code=\"201\"}",
    );
    at_least_one(
        "vcsync_api_requests_total{api=\"virtual\",verb=\"watch\",kind=\"Pod\",code=\"200\"}",
    );
    at_least_one("vcsync_sync_latency_seconds_count{direction=\"down\",kind=\"Pod\"}");
    at_least_one("controller_runtime_reconcile_time_seconds_count{controller=\"pod\"}");
    at_least_one("vcsync_cache_synced{api=\"host\",cache=\"Pod\"}");
    assert!(
        sample(&metrics, "workqueue_depth{name=\"pod\"}").is_some(),
        "{metrics}"
    );

    // SIGTERM: exit 0 in bounded time (5 s engine drain + 5 s lease release at most), and
    // the Lease is released so a successor need not wait it out.
    let started = Instant::now();
    vcsync.signal("-TERM");
    let status = vcsync.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}; logs:\n{}", vcsync.logs());
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(
        vcsync.logs().contains("released the leader lease"),
        "{}",
        vcsync.logs()
    );
    assert_eq!(lease_holder(&h).await.as_deref(), Some(""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_takes_over_when_the_leader_is_killed() {
    let h = Harness::new("failover").await;
    create_namespace(&h.virt, "shop").await;
    let dir = tempfile::tempdir().unwrap();
    let a = spawn(&h, dir.path(), "replica-a");
    let b = spawn(&h, dir.path(), "replica-b");
    let (addr_a, addr_b) = (a.addr(WAIT).await, b.addr(WAIT).await);

    let leader = wait_for(WAIT, "a leader", || async {
        lease_holder(&h).await.filter(|h| !h.is_empty())
    })
    .await;
    let (mut leader, follower, follower_addr) = if leader == "replica-a" {
        (a, b, addr_b)
    } else {
        (b, a, addr_a)
    };

    // The follower is ready (standing by), not leading, and writes nothing.
    ready_body(
        follower_addr,
        &format!("standby, leader is {}", leader.name),
        &follower,
    )
    .await;
    let (_, text) = get(follower_addr, "/metrics").await.unwrap();
    assert_eq!(sample(&text, "vcsync_leader"), Some(0.0), "{text}");

    h.virt_api::<Pod>("shop")
        .create(&PostParams::default(), &mk_pod("shop", "before"))
        .await
        .unwrap();
    wait_host_pod(&h, "shop", "before").await;

    // SIGKILL: no chance to release; the follower must wait the lease out, then take over.
    leader.signal("-KILL");
    let killed = Instant::now();
    let _ = leader.wait_exit(Duration::from_secs(10)).await;
    wait_for(
        Duration::from_secs(30),
        "the follower to hold the lease",
        || async {
            (lease_holder(&h).await.as_deref() == Some(follower.name.as_str())).then_some(())
        },
    )
    .await;
    let took = killed.elapsed();
    // The follower saw the leader's last renewal at most one retry (plus jitter) before the
    // kill, waits the lease duration, and retries every retry period (plus 20% jitter).
    let bound = Duration::from_secs(LEASE_SECONDS + 3 * RETRY_SECONDS + 2);
    assert!(
        took <= bound,
        "takeover took {took:?} (bound {bound:?}); follower logs:\n{}",
        follower.logs()
    );

    h.virt_api::<Pod>("shop")
        .create(&PostParams::default(), &mk_pod("shop", "after"))
        .await
        .unwrap();
    wait_host_pod(&h, "shop", "after").await;
    let (_, text) = get(follower_addr, "/metrics").await.unwrap();
    assert_eq!(sample(&text, "vcsync_leader"), Some(1.0), "{text}");
    drop(follower);
}

fn lease_config(ns: &str, identity: &str, lease: u64) -> LeaseConfig {
    LeaseConfig {
        namespace: ns.to_owned(),
        name: "vcsync-test".to_owned(),
        identity: identity.to_owned(),
        lease_duration: Duration::from_secs(lease),
        renew_deadline: Duration::from_secs(lease - 1),
        retry_period: Duration::from_millis(200),
    }
}

#[tokio::test]
async fn the_lease_is_exclusive_expires_and_is_released() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = TestApiServer::start(ServerConfig::default()).await.unwrap();
    let ns = unique_name("lease");
    create_namespace(&server.client(), &ns).await;
    let mut a = LeaderElector::new(server.client(), lease_config(&ns, "a", 2));
    let mut b = LeaderElector::new(server.client(), lease_config(&ns, "b", 2));

    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Attempt::Leading);
    assert_eq!(
        b.try_acquire_or_renew().await.unwrap(),
        Attempt::Standby(Some("a".into()))
    );
    // Renewing keeps it: b sees the record change and restarts its clock.
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Attempt::Leading);
    assert_eq!(
        b.try_acquire_or_renew().await.unwrap(),
        Attempt::Standby(Some("a".into()))
    );
    let leases: Api<Lease> = Api::namespaced(server.client(), &ns);
    let spec = leases.get("vcsync-test").await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.lease_duration_seconds, Some(2));
    assert_eq!(spec.lease_transitions, Some(0));

    // a stops renewing: b takes over once the lease has not changed for its duration.
    let stopped = Instant::now();
    b.acquire(|_| {}).await;
    let waited = stopped.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    let spec = leases.get("vcsync-test").await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
    assert_eq!(
        a.try_acquire_or_renew().await.unwrap(),
        Attempt::Standby(Some("b".into()))
    );

    // Released: a takes it at once, without waiting out the duration.
    b.release().await.unwrap();
    let spec = leases.get("vcsync-test").await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(""));
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Attempt::Leading);
    // Releasing a lease someone else holds does nothing.
    b.release().await.unwrap();
    let spec = leases.get("vcsync-test").await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
}

#[tokio::test]
async fn a_leader_that_cannot_renew_gives_up_within_the_renew_deadline() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut server = TestApiServer::start(ServerConfig::default()).await.unwrap();
    let ns = unique_name("lease");
    create_namespace(&server.client(), &ns).await;
    let mut a = LeaderElector::new(server.client(), lease_config(&ns, "a", 3));
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Attempt::Leading);
    server.stop().await;
    let started = Instant::now();
    let lost = tokio::time::timeout(Duration::from_secs(10), a.hold())
        .await
        .expect("gives up");
    assert!(
        matches!(lost, vcsync::leader::LostLease::RenewDeadline { .. }),
        "{lost:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
