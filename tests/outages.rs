//! API outages, end to end: the `vcsync` binary runs between two test API servers (host and
//! virtual, the kubelet simulator on the host), and one of them is stopped for longer than
//! the leader lease, then started again with the same data. vcsync must stay up (its
//! `/livez` answering throughout), report the outage on `/readyz`, converge what changed
//! meanwhile, and re-write nothing that was in sync: the servers count every request by
//! user, and vcsync runs as its own user.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use vcsync_e2e::apiserver::TestApiServer;
use vcsync_e2e::harness::{ENGINE_TOKEN, ENGINE_USER, Harness};
use vcsync_e2e::testutil::{create_namespace, wait_for};
mod support;
use support::{Process, get, sample, vcsync_command};

const WAIT: Duration = Duration::from_secs(45);

/// Short Lease timings, so that an outage longer than the lease is quick to stage.
const LEASE_SECONDS: u64 = 4;
const RENEW_SECONDS: u64 = 3;
const RETRY_SECONDS: u64 = 1;
/// How long each API stays down: longer than the lease.
const OUTAGE: Duration = Duration::from_secs(LEASE_SECONDS + 4);

/// `vcsync run` as the engine user of both servers, with short Lease timings.
fn spawn(h: &Harness, dir: &Path) -> Process {
    let host_kc = dir.join("host.kubeconfig");
    let virt_kc = dir.join("virtual.kubeconfig");
    let servers = (h.host_server.as_ref(), h.virtual_server.as_ref());
    let (Some(hs), Some(vs)) = servers else {
        panic!("these tests need the test API servers");
    };
    std::fs::write(&host_kc, hs.kubeconfig_yaml_for(ENGINE_TOKEN)).unwrap();
    std::fs::write(&virt_kc, vs.kubeconfig_yaml_for(ENGINE_TOKEN)).unwrap();
    let mut cmd = vcsync_command();
    cmd.args(["run", "--tenant", &h.tenant])
        .args(["--host-namespace", &h.host_namespace])
        .arg("--virtual-kubeconfig")
        .arg(&virt_kc)
        .arg("--host-kubeconfig")
        .arg(&host_kc)
        .args(["--metrics-addr", "127.0.0.1:0", "--pod-name", "replica-a"])
        .args(["--lease-duration-seconds", &LEASE_SECONDS.to_string()])
        .args(["--renew-deadline-seconds", &RENEW_SECONDS.to_string()])
        .args(["--retry-period-seconds", &RETRY_SECONDS.to_string()]);
    Process::spawn(cmd, "replica-a")
}

/// vcsync's writes on `server` other than the Lease's, as `verb resource code` -> count.
fn engine_writes(server: &TestApiServer) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (k, n) in server.request_counts() {
        let write = !matches!(k.verb.as_str(), "get" | "list" | "watch");
        if k.user == ENGINE_USER && write && k.resource != "leases" {
            *out.entry(format!("{} {} {}", k.verb, k.resource, k.code))
                .or_insert(0) += n;
        }
    }
    out
}

/// What `after` has more of than `before`.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Vec<String> {
    after
        .iter()
        .filter_map(|(k, n)| {
            let d = n - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| format!("{k} x{d}"))
        })
        .collect()
}

fn servers(h: &Harness) -> (&TestApiServer, &TestApiServer) {
    (
        h.host_server.as_ref().expect("test servers"),
        h.virtual_server.as_ref().expect("test servers"),
    )
}

/// Waits until vcsync has written nothing (on either API, Lease renewals aside) for 2 s.
async fn quiet(h: &Harness) {
    let mut last = None;
    let mut since = Instant::now();
    wait_for(WAIT, "vcsync to stop writing", || {
        let (hs, vs) = servers(h);
        let now = (engine_writes(hs), engine_writes(vs));
        if last.as_ref() != Some(&now) {
            last = Some(now);
            since = Instant::now();
        }
        let done = since.elapsed() >= Duration::from_secs(2);
        async move { done.then_some(()) }
    })
    .await;
}

/// The `/readyz` answer once `want(code, body)` holds.
async fn readyz_until(
    addr: SocketAddr,
    vcsync: &mut Process,
    what: &str,
    want: impl Fn(u16, &str) -> bool,
) -> String {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    loop {
        assert_alive(vcsync);
        if let Some((code, body)) = get(addr, "/readyz").await {
            if want(code, &body) {
                return body;
            }
            last = Some((code, body));
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never showed {what}; last answer {last:?}; logs:\n{}",
            vcsync.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_alive(vcsync: &mut Process) {
    if let Some(status) = vcsync.child.try_wait().unwrap() {
        panic!("vcsync exited ({status}); logs:\n{}", vcsync.logs());
    }
}

/// Keeps checking that vcsync lives (process up, `/livez` 200) until `outage` has passed
/// since `since`.
async fn stay_alive_until(
    addr: SocketAddr,
    vcsync: &mut Process,
    since: Instant,
    outage: Duration,
) {
    while since.elapsed() < outage {
        assert_alive(vcsync);
        let live = get(addr, "/livez").await;
        assert_eq!(
            live.as_ref().map(|(c, _)| *c),
            Some(200),
            "/livez during the outage: {live:?}; logs:\n{}",
            vcsync.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let (_, text) = get(addr, "/metrics").await?;
    sample(&text, series)
}

/// A virtual pod using config map `cfg`, both synced, vcsync quiet; returns the host names.
async fn synced_pod_and_config_map(h: &Harness) -> (String, String) {
    create_namespace(&h.virt, "shop").await;
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"v": "1"}})).unwrap();
    h.virt_api::<ConfigMap>("shop")
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27",
            "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}
    }))
    .unwrap();
    h.virt_api::<Pod>("shop")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let (host_pod, host_cm) = (h.host_name("shop", "web"), h.host_name("shop", "cfg"));
    wait_for(WAIT, "the host pod to run", || async {
        let p = h.host_api::<Pod>().get_opt(&host_pod).await.ok()??;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    wait_for(WAIT, "the virtual pod's status to say Running", || async {
        let p = h.virt_api::<Pod>("shop").get_opt("web").await.ok()??;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    host_config_map(h, &host_cm, "1").await;
    quiet(h).await;
    (host_pod, host_cm)
}

async fn host_config_map(h: &Harness, name: &str, v: &str) {
    wait_for(
        WAIT,
        &format!("host config map {name} with v={v}"),
        || async {
            let cm = h.host_api::<ConfigMap>().get_opt(name).await.ok()??;
            (cm.data?.get("v").map(String::as_str) == Some(v)).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_outage_longer_than_the_lease_pauses_writes_and_resumes_without_rewriting() {
    let mut h = Harness::new("hostdown").await;
    let dir = tempfile::tempdir().unwrap();
    let mut vcsync = spawn(&h, dir.path());
    let addr = vcsync.addr(WAIT).await;
    readyz_until(addr, &mut vcsync, "leading", |c, b| {
        c == 200 && b.contains("[+]leader-election ok: leading")
    })
    .await;
    let (_, host_cm) = synced_pod_and_config_map(&h).await;
    let (hs, vs) = servers(&h);
    let before = (engine_writes(hs), engine_writes(vs));

    h.host_server.as_mut().unwrap().stop().await;
    let down = Instant::now();
    let body = readyz_until(addr, &mut vcsync, "not leading", |c, b| {
        c == 503 && b.contains("[-]leader-election failed: not leading")
    })
    .await;
    assert!(
        down.elapsed() < OUTAGE,
        "the lease was given up only after {:?}:\n{body}",
        down.elapsed()
    );
    assert_eq!(metric(addr, "vcsync_leader").await, Some(0.0));
    // Changed while the host is down: converges once vcsync leads again.
    let mut cm = h.virt_api::<ConfigMap>("shop").get("cfg").await.unwrap();
    cm.data
        .get_or_insert_default()
        .insert("v".into(), "2".into());
    h.virt_api::<ConfigMap>("shop")
        .replace("cfg", &PostParams::default(), &cm)
        .await
        .unwrap();
    stay_alive_until(addr, &mut vcsync, down, OUTAGE).await;

    h.host_server.as_mut().unwrap().restart().await.unwrap();
    let up = Instant::now();
    readyz_until(addr, &mut vcsync, "leading again", |c, b| {
        c == 200 && b.contains("[+]leader-election ok: leading")
    })
    .await;
    let recovered = up.elapsed();
    host_config_map(&h, &host_cm, "2").await;
    quiet(&h).await;

    assert_alive(&mut vcsync);
    let (hs, vs) = servers(&h);
    assert_eq!(
        (
            delta(&before.0, &engine_writes(hs)),
            delta(&before.1, &engine_writes(vs))
        ),
        (vec!["update configmaps 200 x1".to_owned()], vec![]),
        "vcsync's writes across the outage (host, virtual); logs:\n{}",
        vcsync.logs()
    );
    assert_eq!(
        vcsync.count_logged("lost the leader lease"),
        1,
        "{}",
        vcsync.logs()
    );
    assert_eq!(
        vcsync.count_logged("regained the leader lease"),
        1,
        "{}",
        vcsync.logs()
    );
    assert_eq!(metric(addr, "vcsync_leader_losses_total").await, Some(1.0));
    assert_eq!(metric(addr, "vcsync_leader").await, Some(1.0));
    eprintln!("ready again {recovered:?} after the host API came back");

    // Still a working leader: a new pod is synced.
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "after"}, "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}),
    )
    .unwrap();
    h.virt_api::<Pod>("shop")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let host_after = h.host_name("shop", "after");
    wait_for(WAIT, "the new pod's host copy", || async {
        h.host_api::<Pod>().get_opt(&host_after).await.ok()?
    })
    .await;
    vcsync.signal("-TERM");
    let status = vcsync.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}; logs:\n{}", vcsync.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_api_restart_resumes_the_watches_without_rewriting() {
    let mut h = Harness::new("virtdown").await;
    let dir = tempfile::tempdir().unwrap();
    let mut vcsync = spawn(&h, dir.path());
    let addr = vcsync.addr(WAIT).await;
    readyz_until(addr, &mut vcsync, "leading", |c, b| {
        c == 200 && b.contains("[+]leader-election ok: leading")
    })
    .await;
    let (_, host_cm) = synced_pod_and_config_map(&h).await;
    let (hs, vs) = servers(&h);
    let before = (engine_writes(hs), engine_writes(vs));

    h.virtual_server.as_mut().unwrap().stop().await;
    let down = Instant::now();
    readyz_until(addr, &mut vcsync, "the virtual API unreachable", |c, b| {
        c == 503 && b.contains("[-]virtual-api failed: unreachable")
    })
    .await;
    // The host side still works, from the warm virtual caches: a host copy deleted meanwhile
    // is put back.
    h.host_api::<ConfigMap>()
        .delete(&host_cm, &DeleteParams::default())
        .await
        .unwrap();
    host_config_map(&h, &host_cm, "1").await;
    stay_alive_until(addr, &mut vcsync, down, OUTAGE).await;
    assert_eq!(metric(addr, "vcsync_leader").await, Some(1.0));

    h.virtual_server.as_mut().unwrap().restart().await.unwrap();
    let up = Instant::now();
    readyz_until(addr, &mut vcsync, "ready again", |c, b| {
        c == 200 && b.contains("[+]virtual-api ok")
    })
    .await;
    let recovered = up.elapsed();
    // The virtual watches resumed: a change made now is synced.
    let mut cm = h.virt_api::<ConfigMap>("shop").get("cfg").await.unwrap();
    cm.data
        .get_or_insert_default()
        .insert("v".into(), "2".into());
    h.virt_api::<ConfigMap>("shop")
        .replace("cfg", &PostParams::default(), &cm)
        .await
        .unwrap();
    host_config_map(&h, &host_cm, "2").await;
    quiet(&h).await;

    assert_alive(&mut vcsync);
    let (hs, vs) = servers(&h);
    assert_eq!(
        (
            delta(&before.0, &engine_writes(hs)),
            delta(&before.1, &engine_writes(vs))
        ),
        (
            vec![
                "create configmaps 201 x1".to_owned(),
                "update configmaps 200 x1".to_owned()
            ],
            vec![]
        ),
        "vcsync's writes across the restart (host, virtual); logs:\n{}",
        vcsync.logs()
    );
    assert_eq!(metric(addr, "vcsync_leader_losses_total").await, Some(0.0));
    eprintln!("ready again {recovered:?} after the virtual API came back");
    vcsync.signal("-TERM");
    let status = vcsync.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}; logs:\n{}", vcsync.logs());
}
