//! The scenarios of the benchmark. Each builds a fresh [`Env`], runs its workload through the
//! virtual API with vcsync syncing it, runs the same workload straight against the host API (the
//! baseline) and returns the figures of one run.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use vcsync_e2e::apiserver::Fault;

use crate::cost::{self, Per, Snapshot};
use crate::env::{self, Env, EnvOptions, SELECTOR, create_all, create_one, pod, service};
use crate::report::{Run, percentile_ms};
use crate::track::{Stamps, TAG_LABEL, Tracker, own_key, virtual_key};

/// Everything a scenario may be told.
#[derive(Debug, Clone)]
pub struct Opts {
    pub env: EnvOptions,
    /// Pod counts (footprint steps, burst sizes, restart size: the last one).
    pub pods: Vec<usize>,
    pub duration: Duration,
    /// Changes per second (latency, churn).
    pub rate: f64,
    /// Parallel creates of a burst.
    pub concurrency: usize,
    /// Longest wait for any convergence.
    pub timeout: Duration,
}

const MIB: f64 = 1024.0 * 1024.0;

/// How long the test API servers must be quiet before a cost snapshot closes a workload.
const QUIET: Duration = Duration::from_secs(1);

/// Virtual namespaces bulk workloads are spread over (tenants rarely use just one).
const SPREAD: usize = 10;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Objects to create, each with its namespace.
type Items<K> = Vec<(String, K)>;

/// `n` pods (and one service per 10 pods) named after `prefix`, round robin over `namespaces`,
/// starting at index `from`.
fn workload(
    namespaces: &[String],
    prefix: &str,
    from: usize,
    to: usize,
) -> (Items<Pod>, Items<Service>) {
    let pods = (from..to)
        .map(|i| {
            let ns = namespaces[i % namespaces.len()].clone();
            (ns, pod(&format!("{prefix}-{i}"), i / 10))
        })
        .collect();
    // Group g lives in namespace (10g) % k, like its pods (pod i is in i % k; for i = 10g..10g+9
    // these are different namespaces unless k divides 10, so the service selects the ones in its
    // own namespace: still one service per 10 pods, which is the cost being measured).
    let svcs = (from.div_ceil(10)..to.div_ceil(10))
        .map(|g| {
            let ns = namespaces[(g * 10) % namespaces.len()].clone();
            (ns, service(&format!("{prefix}-svc-{g}"), g))
        })
        .collect();
    (pods, svcs)
}

async fn virtual_namespaces(env: &Env, prefix: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let ns = format!("{prefix}-{i}");
        env.virtual_namespace(&ns).await;
        out.push(ns);
    }
    out
}

/// Median RSS over `samples` readings 250 ms apart.
async fn steady_rss(env: &Env, samples: usize) -> f64 {
    let mut v = Vec::new();
    for _ in 0..samples {
        v.push(env.vcsync().memory().rss as f64);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Add the writes vcsync made per tenant change, and note them.
fn writes_per_change(run: &mut Run, env: &Env, changes: usize) {
    let Some(w) = env.writes() else {
        run.note("write counts need the test API servers");
        return;
    };
    let n = changes.max(1) as f64;
    run.add("host writes per change", "writes", w.host as f64 / n)
        .target("<= 1");
    run.add("virtual writes per change", "writes", w.virt as f64 / n);
    run.note(format!(
        "{changes} changes: {} host writes, {} virtual writes, {} lease renewals",
        w.host, w.virt, w.lease
    ));
    let (host, virt) = env.engine_write_breakdown();
    run.note(format!("host writes: {host:?}; virtual writes: {virt:?}"));
}

fn vcsync_problems(run: &mut Run, env: &Env) {
    let problems = env.vcsync().problems();
    if !problems.is_empty() {
        run.note(format!(
            "vcsync logged {} warning/error line(s); first: {}",
            problems.len(),
            problems[0]
        ));
    }
}

// ---------------------------------------------------------------- idle

pub async fn idle(o: &Opts) -> anyhow::Result<Run> {
    let mut env = Env::new(&o.env).await?;
    let mut run = Run::default();
    let ready = env.start_vcsync().await?;
    env.settle(Duration::from_secs(2), o.timeout).await?;
    env.reset_counts();
    let v = env.vcsync();
    let cpu0 = v.cpu();
    let t0 = Instant::now();
    let mut rss = Vec::new();
    while t0.elapsed() < o.duration {
        rss.push(v.memory().rss as f64);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let cpu = v.cpu() - cpu0;
    let wall = t0.elapsed();
    rss.sort_by(f64::total_cmp);
    run.add("start-up to ready", "ms", ms(ready));
    run.add("RSS idle (median)", "MiB", rss[rss.len() / 2] / MIB)
        .target("<= 15 MiB");
    run.add("peak RSS (VmHWM)", "MiB", v.memory().peak as f64 / MIB);
    run.add(
        "CPU idle",
        "% of a core",
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
    )
    .target("~0");
    if let Some(w) = env.writes() {
        run.add("host writes (excl. Lease)", "writes", w.host as f64)
            .target("0");
        run.add("virtual writes", "writes", w.virt as f64)
            .target("0");
        run.add(
            "Lease renewals per minute",
            "writes",
            w.lease as f64 * 60.0 / wall.as_secs_f64(),
        );
        if w.host + w.virt > 0 {
            run.note(format!("idle requests: {:?}", env.engine_requests()));
        }
    }
    vcsync_problems(&mut run, &env);
    Ok(run)
}

// ---------------------------------------------------------------- footprint

pub async fn footprint(o: &Opts) -> anyhow::Result<Run> {
    let mut env = Env::new(&o.env).await?;
    let mut run = Run::default();
    env.start_vcsync().await?;
    env.settle(Duration::from_secs(2), o.timeout).await?;
    let idle = steady_rss(&env, 8).await;
    run.add("RSS with 0 pods", "MiB", idle / MIB);
    let nss = virtual_namespaces(&env, "fp", SPREAD).await;
    let direct_nss = vec![env.direct_ns.clone()];
    let virt = Tracker::pods(env.virt.clone(), None, SELECTOR, own_key);
    let direct = Tracker::pods(env.host.clone(), Some(&env.direct_ns), SELECTOR, own_key);
    let mut have = 0;
    env.reset_counts();
    for &n in &o.pods {
        // Through vcsync.
        let (pods, svcs) = workload(&nss, "fp", have, n);
        let changes = pods.len() + svcs.len();
        let before = Snapshot::take(&env);
        let t0 = Instant::now();
        create_all(&env.virt, svcs, o.concurrency).await?;
        create_all(&env.virt, pods, o.concurrency).await?;
        virt.wait_count(n, o.timeout, "virtual pods Ready", |s| s.ready.is_some())
            .await?;
        let took = virt.latest(|s| s.ready).unwrap_or(t0) - t0;
        env.settle(Duration::from_secs(3), o.timeout).await?;
        env.quiet_servers(QUIET, o.timeout).await?;
        let c = before.until(&Snapshot::take(&env));
        let rss = steady_rss(&env, 12).await;
        // Straight to the host.
        let (pods, svcs) = workload(&direct_nss, "fp", have, n);
        let d_before = Snapshot::take(&env);
        let d0 = Instant::now();
        create_all(&env.host, svcs, o.concurrency).await?;
        create_all(&env.host, pods, o.concurrency).await?;
        direct
            .wait_count(n, o.timeout, "direct pods Ready", |s| s.ready.is_some())
            .await?;
        let dtook = direct.latest(|s| s.ready).unwrap_or(d0) - d0;
        env.quiet_servers(QUIET, o.timeout).await?;
        let d_cost = d_before.until(&Snapshot::take(&env));
        let label = format!("{have}..{n} pods: ");
        let per = Per {
            label: &label,
            unit: "pod",
            n: n - have,
            // Memory per pod is the step's own figure below (steady RSS over idle).
            memory: false,
        };
        cost::add(&mut run, &per, &c, Some(&d_cost));

        let target = if n >= 10_000 { "<= 150 MiB at 10k" } else { "" };
        run.add(format!("RSS at {n} pods"), "MiB", rss / MIB)
            .target(target);
        run.add(
            format!("bytes per pod at {n}"),
            "KB",
            (rss - idle) / n as f64 / 1000.0,
        )
        .target("<= 10 KB");
        run.add(
            format!("time to {} more pods Ready", n - have),
            "s",
            took.as_secs_f64(),
        )
        .direct(dtook.as_secs_f64());
        if let Some(w) = env.writes() {
            run.note(format!(
                "up to {n} pods: {changes} tenant objects, {} host writes, {} virtual writes",
                w.host, w.virt
            ));
        }
        env.reset_counts();
        have = n;
    }
    run.add(
        "peak RSS (VmHWM)",
        "MiB",
        env.vcsync().memory().peak as f64 / MIB,
    );
    vcsync_problems(&mut run, &env);
    Ok(run)
}

// ---------------------------------------------------------------- latency

/// Create pods at `rate` per second for `duration` in `ns` through `client`; returns the send
/// time of each (`ns/name`).
async fn paced_creates(
    client: &Client,
    ns: &str,
    prefix: &str,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<HashMap<String, Instant>> {
    let n = (rate * duration.as_secs_f64()).round() as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tick.tick().await;
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        let p = pod(&format!("{prefix}-{i}"), i / 10);
        let ns = ns.to_owned();
        tasks.push(tokio::spawn(async move { create_one(&api, &ns, &p).await }));
    }
    let mut sent = HashMap::new();
    for t in tasks {
        let (k, at) = t.await??;
        sent.insert(k, at);
    }
    Ok(sent)
}

fn diffs(
    keys: impl Iterator<Item = String>,
    from: impl Fn(&str) -> Option<Instant>,
    to: impl Fn(&str) -> Option<Instant>,
) -> Vec<Duration> {
    keys.filter_map(|k| Some(to(&k)?.saturating_duration_since(from(&k)?)))
        .collect()
}

pub async fn latency(o: &Opts) -> anyhow::Result<Run> {
    let mut env = Env::new(&o.env).await?;
    let mut run = Run::default();
    env.start_vcsync().await?;
    env.settle(Duration::from_secs(2), o.timeout).await?;
    env.virtual_namespace("lat").await;
    let virt = Tracker::pods(env.virt.clone(), Some("lat"), SELECTOR, own_key);
    let host = Tracker::pods(env.host.clone(), Some(&env.host_ns), SELECTOR, virtual_key);
    let direct = Tracker::pods(env.host.clone(), Some(&env.direct_ns), SELECTOR, own_key);
    env.reset_counts();
    let before = Snapshot::take(&env);

    let sent = paced_creates(&env.virt, "lat", "lat", o.rate, o.duration).await?;
    let n = sent.len();
    host.wait_count(n, o.timeout, "host pods", |s| s.seen.is_some())
        .await?;
    virt.wait_count(n, o.timeout, "virtual pods Ready", |s| s.ready.is_some())
        .await?;
    env.settle(Duration::from_secs(2), o.timeout).await?;
    let added = diffs(
        sent.keys().cloned(),
        g(&virt, |s| s.seen),
        g(&host, |s| s.seen),
    );
    let up = diffs(
        sent.keys().cloned(),
        g(&host, |s| s.ready),
        g(&virt, |s| s.ready),
    );
    let e2e = diffs(
        sent.keys().cloned(),
        |k| sent.get(k).copied(),
        g(&host, |s| s.seen),
    );
    let e2e_ready = diffs(
        sent.keys().cloned(),
        |k| sent.get(k).copied(),
        g(&virt, |s| s.ready),
    );
    env.quiet_servers(QUIET, o.timeout).await?;
    let c = before.until(&Snapshot::take(&env));
    writes_per_change(&mut run, &env, n);

    let d_before = Snapshot::take(&env);
    let dsent = paced_creates(&env.host, &env.direct_ns, "lat", o.rate, o.duration).await?;
    direct
        .wait_count(dsent.len(), o.timeout, "direct pods Ready", |s| {
            s.ready.is_some()
        })
        .await?;
    env.quiet_servers(QUIET, o.timeout).await?;
    let d_cost = d_before.until(&Snapshot::take(&env));
    let per = Per {
        label: "",
        unit: "pod",
        n,
        memory: true,
    };
    cost::add(&mut run, &per, &c, Some(&d_cost));
    let d_e2e = diffs(
        dsent.keys().cloned(),
        |k| dsent.get(k).copied(),
        g(&direct, |s| s.seen),
    );
    let d_ready = diffs(
        dsent.keys().cloned(),
        |k| dsent.get(k).copied(),
        g(&direct, |s| s.ready),
    );

    run.add(
        "virtual seen -> host seen p50",
        "ms",
        percentile_ms(&added, 50.0),
    );
    run.add(
        "virtual seen -> host seen p99",
        "ms",
        percentile_ms(&added, 99.0),
    )
    .target("<= 50 ms");
    run.add(
        "host Ready -> virtual Ready p50",
        "ms",
        percentile_ms(&up, 50.0),
    );
    run.add(
        "host Ready -> virtual Ready p99",
        "ms",
        percentile_ms(&up, 99.0),
    )
    .target("<= 50 ms");
    run.add(
        "create sent -> on host p99",
        "ms",
        percentile_ms(&e2e, 99.0),
    )
    .direct(percentile_ms(&d_e2e, 99.0));
    run.add(
        "create sent -> Ready seen by creator p50",
        "ms",
        percentile_ms(&e2e_ready, 50.0),
    )
    .direct(percentile_ms(&d_ready, 50.0));
    run.add(
        "create sent -> Ready seen by creator p99",
        "ms",
        percentile_ms(&e2e_ready, 99.0),
    )
    .direct(percentile_ms(&d_ready, 99.0));
    vcsync_problems(&mut run, &env);
    Ok(run)
}

/// A stamp of `key` on tracker `t`, as a lookup function for [`diffs`].
fn g<'a>(
    t: &'a Tracker,
    f: fn(&Stamps) -> Option<Instant>,
) -> impl Fn(&str) -> Option<Instant> + 'a {
    move |k: &str| t.get(k).and_then(|s| f(&s))
}

// ---------------------------------------------------------------- burst

pub async fn burst(o: &Opts) -> anyhow::Result<Run> {
    let mut run = Run::default();
    for &n in &o.pods {
        // A fresh environment per size: the second burst must not pay for the first one's state.
        let mut env = Env::new(&o.env).await?;
        // The baseline first, before vcsync exists, so it cannot slow the host down.
        let direct = Tracker::pods(env.host.clone(), Some(&env.direct_ns), SELECTOR, own_key);
        let direct_nss = vec![env.direct_ns.clone()];
        let (pods, _) = workload(&direct_nss, "b", 0, n);
        let d_before = Snapshot::take(&env);
        let d0 = Instant::now();
        create_all(&env.host, pods, o.concurrency).await?;
        direct
            .wait_count(n, o.timeout, "direct pods Ready", |s| s.ready.is_some())
            .await?;
        let d_seen = direct.latest(|s| s.seen).unwrap_or(d0) - d0;
        let d_ready = direct.latest(|s| s.ready).unwrap_or(d0) - d0;
        env.quiet_servers(QUIET, o.timeout).await?;
        let d_cost = d_before.until(&Snapshot::take(&env));
        drop(direct);

        env.start_vcsync().await?;
        env.settle(Duration::from_secs(2), o.timeout).await?;
        let nss = virtual_namespaces(&env, "burst", SPREAD).await;
        let virt = Tracker::pods(env.virt.clone(), None, SELECTOR, own_key);
        let host = Tracker::pods(env.host.clone(), Some(&env.host_ns), SELECTOR, virtual_key);
        env.reset_counts();
        let (pods, _) = workload(&nss, "b", 0, n);
        let before = Snapshot::take(&env);
        let t0 = Instant::now();
        create_all(&env.virt, pods, o.concurrency).await?;
        let created = t0.elapsed();
        host.wait_count(n, o.timeout, "host pods", |s| s.seen.is_some())
            .await?;
        virt.wait_count(n, o.timeout, "virtual pods Ready", |s| s.ready.is_some())
            .await?;
        let seen = host.latest(|s| s.seen).unwrap_or(t0) - t0;
        let ready = virt.latest(|s| s.ready).unwrap_or(t0) - t0;
        let cpu = env.vcsync().cpu();

        run.add(
            format!("{n} pods: all on the host"),
            "s",
            seen.as_secs_f64(),
        )
        .direct(d_seen.as_secs_f64());
        run.add(
            format!("{n} pods: all Ready for the creator"),
            "s",
            ready.as_secs_f64(),
        )
        .direct(d_ready.as_secs_f64());
        run.add(
            format!("{n} pods: throughput"),
            "pods/s",
            n as f64 / ready.as_secs_f64(),
        )
        .direct(n as f64 / d_ready.as_secs_f64())
        .target(">= 0.9 x direct");
        run.add(format!("{n} pods: vcsync CPU"), "s", cpu.as_secs_f64());
        run.note(format!(
            "{n} pods: the creates themselves took {:.2} s on the virtual API",
            created.as_secs_f64()
        ));
        env.settle(Duration::from_secs(2), o.timeout).await?;
        env.quiet_servers(QUIET, o.timeout).await?;
        let c = before.until(&Snapshot::take(&env));
        let label = format!("{n} pods: ");
        let per = Per {
            label: &label,
            unit: "pod",
            n,
            memory: true,
        };
        cost::add(&mut run, &per, &c, Some(&d_cost));
        writes_per_change(&mut run, &env, n);
        vcsync_problems(&mut run, &env);
    }
    Ok(run)
}

// ---------------------------------------------------------------- restart

/// Sync `n` pods (and their services) and wait until they are Ready and vcsync is quiet.
async fn populate(env: &Env, o: &Opts, n: usize) -> anyhow::Result<Vec<String>> {
    let nss = virtual_namespaces(env, "w", SPREAD).await;
    let virt = Tracker::pods(env.virt.clone(), None, SELECTOR, own_key);
    let (pods, svcs) = workload(&nss, "w", 0, n);
    create_all(&env.virt, svcs, o.concurrency).await?;
    create_all(&env.virt, pods, o.concurrency).await?;
    virt.wait_count(n, o.timeout, "virtual pods Ready", |s| s.ready.is_some())
        .await?;
    env.settle(Duration::from_secs(3), o.timeout).await?;
    Ok(nss)
}

pub async fn restart(o: &Opts) -> anyhow::Result<Run> {
    let n = *o.pods.last().unwrap_or(&10_000);
    let mut env = Env::new(&o.env).await?;
    let mut run = Run::default();
    env.start_vcsync().await?;
    populate(&env, o, n).await?;
    let steady = steady_rss(&env, 12).await;
    env.stop_vcsync().await?;
    env.reset_counts();
    let ready = env.start_vcsync().await?;
    let t0 = Instant::now();
    env.settle(Duration::from_secs(3), o.timeout).await?;
    let settled = t0.elapsed().saturating_sub(Duration::from_secs(3)) + ready;
    let peak = env.vcsync().memory().peak as f64;

    // The floor: listing the same host pods with a bare client, as any informer must at start.
    let api: Api<Pod> = Api::namespaced(env.host.clone(), &env.host_ns);
    let l0 = Instant::now();
    let mut lp = ListParams::default().limit(500);
    let mut listed = 0;
    loop {
        let page = api.list(&lp).await?;
        listed += page.items.len();
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => break,
        }
    }
    let list = l0.elapsed();
    run.add(
        format!("ready after restart ({n} pods)"),
        "s",
        ready.as_secs_f64(),
    )
    .direct(list.as_secs_f64())
    .target("<= 10 s");
    run.add("settled after restart", "s", settled.as_secs_f64());
    run.add("steady RSS before restart", "MiB", steady / MIB);
    run.add("peak RSS / steady RSS", "x", peak / steady)
        .target("<= 2x");
    if let Some(w) = env.writes() {
        run.add(
            "host writes during restart (excl. Lease)",
            "writes",
            w.host as f64,
        )
        .target("0");
        run.add("virtual writes during restart", "writes", w.virt as f64)
            .target("0");
        if w.host + w.virt > 0 {
            let (host, virt) = env.engine_write_breakdown();
            run.note(format!(
                "writes during restart: host {host:?}, virtual {virt:?}"
            ));
        }
    }
    run.note(format!(
        "the baseline lists the {listed} host pods in pages of 500"
    ));
    vcsync_problems(&mut run, &env);
    Ok(run)
}

// ---------------------------------------------------------------- drift

pub async fn drift(o: &Opts) -> anyhow::Result<Run> {
    // Half host Services deleted (vcsync must recreate them), half host pods with a tenant label
    // edited (vcsync must restore it). Host *pods* that disappear are not recreated: like a
    // kubelet eviction, that deletes the virtual pod, and the tenant's controllers make a new one.
    const N: usize = 100;
    let mut env = Env::new(&o.env).await?;
    let mut run = Run::default();
    env.start_vcsync().await?;
    populate(&env, o, N / 2).await?;
    let svcs: Vec<(String, Service)> = (0..N / 2)
        .map(|i| ("w-0".to_owned(), service(&format!("drift-{i}"), i)))
        .collect();
    create_all(&env.virt, svcs, o.concurrency).await?;
    let host = Tracker::pods(env.host.clone(), Some(&env.host_ns), SELECTOR, virtual_key);
    let host_svcs = Tracker::objects::<Service>(
        env.host.clone(),
        Some(&env.host_ns),
        SELECTOR,
        virtual_key,
        |_| true,
    );
    host.wait_count(N / 2, o.timeout, "host pods", |s| s.seen.is_some())
        .await?;
    host_svcs
        .wait_count(N / 2, o.timeout, "host services", |s| s.seen.is_some())
        .await?;
    env.settle(Duration::from_secs(2), o.timeout).await?;
    let pods: Api<Pod> = Api::namespaced(env.host.clone(), &env.host_ns);
    let services: Api<Service> = Api::namespaced(env.host.clone(), &env.host_ns);
    let lp = ListParams::default().labels(SELECTOR);
    let mut victims: Vec<(String, String, String, bool)> = Vec::new();
    for p in pods.list(&lp).await?.items.iter().take(N / 2) {
        victims.push((
            p.name_any(),
            virtual_key(p).unwrap_or_default(),
            p.uid().unwrap_or_default(),
            false,
        ));
    }
    for s in services
        .list(&lp)
        .await?
        .items
        .iter()
        .filter(|s| s.name_any().starts_with("drift-"))
        .take(N / 2)
    {
        victims.push((
            s.name_any(),
            virtual_key(s).unwrap_or_default(),
            s.uid().unwrap_or_default(),
            true,
        ));
    }
    anyhow::ensure!(
        victims.len() == N,
        "expected {N} host objects to tamper with, found {}",
        victims.len()
    );
    env.reset_counts();
    let mut acted: Vec<(String, String, bool, Instant)> = Vec::new();
    let futs = victims.into_iter().map(|(name, key, uid, delete)| {
        let (pods, services) = (pods.clone(), services.clone());
        async move {
            let at = Instant::now();
            if delete {
                services
                    .delete(&name, &DeleteParams::default())
                    .await
                    .map(|_| ())?;
            } else {
                let patch = json!({"metadata": {"labels": {TAG_LABEL: "tampered"}}});
                pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())?;
            }
            anyhow::Ok((key, uid, delete, at))
        }
    });
    for r in futures::future::join_all(futs).await {
        acted.push(r?);
    }
    // Repaired: a new uid (recreated) or the tag back at its virtual value.
    let repaired = |key: &str, uid: &str, delete: bool, at: Instant| -> Option<Instant> {
        let s = if delete {
            host_svcs.get(key)?
        } else {
            host.get(key)?
        };
        s.changes
            .iter()
            .filter(|(t, _, _)| *t >= at)
            .find(|(_, u, tag)| {
                if delete {
                    u != uid
                } else {
                    u == uid && tag.as_deref() == Some("v1")
                }
            })
            .map(|(t, _, _)| *t)
    };
    let deadline = Instant::now() + o.timeout;
    let times = loop {
        let times: Vec<Option<Duration>> = acted
            .iter()
            .map(|(k, u, d, at)| repaired(k, u, *d, *at).map(|t| t - *at))
            .collect();
        if times.iter().all(Option::is_some) || Instant::now() > deadline {
            break times;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let fixed: Vec<Duration> = times.iter().flatten().copied().collect();
    let (del, edit): (Vec<_>, Vec<_>) = acted.iter().zip(&times).partition(|((_, _, d, _), _)| *d);
    let dl: Vec<Duration> = del.iter().filter_map(|(_, t)| **t).collect();
    let el: Vec<Duration> = edit.iter().filter_map(|(_, t)| **t).collect();
    env.settle(Duration::from_secs(2), o.timeout).await?;

    // Baseline: the same label edit straight on the host, until a watch sees it.
    let direct = Tracker::pods(env.host.clone(), Some(&env.direct_ns), SELECTOR, own_key);
    let direct_nss = vec![env.direct_ns.clone()];
    let (pods, _) = workload(&direct_nss, "d", 0, N);
    create_all(&env.host, pods, o.concurrency).await?;
    direct
        .wait_count(N, o.timeout, "direct pods", |s| s.seen.is_some())
        .await?;
    let dapi: Api<Pod> = Api::namespaced(env.host.clone(), &env.direct_ns);
    let mut dsent = Vec::new();
    for i in 0..N {
        let name = format!("d-{i}");
        let at = Instant::now();
        let patch = json!({"metadata": {"labels": {TAG_LABEL: "edited"}}});
        dapi.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        dsent.push((format!("{}/{name}", env.direct_ns), at));
    }
    let deadline = Instant::now() + o.timeout;
    let dl_direct = loop {
        let seen: Vec<Duration> = dsent
            .iter()
            .filter_map(|(k, at)| {
                let s = direct.get(k)?;
                let t = s
                    .changes
                    .iter()
                    .find(|(t, _, tag)| *t >= *at && tag.as_deref() == Some("edited"))?;
                Some(t.0 - *at)
            })
            .collect();
        if seen.len() == N || Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    run.add("objects repaired", "of 100", fixed.len() as f64)
        .target("100");
    run.add("repair p50", "ms", percentile_ms(&fixed, 50.0))
        .direct(percentile_ms(&dl_direct, 50.0));
    run.add("repair p99", "ms", percentile_ms(&fixed, 99.0))
        .direct(percentile_ms(&dl_direct, 99.0))
        .target("<= 1000 ms");
    run.add(
        "deleted service recreated p99",
        "ms",
        percentile_ms(&dl, 99.0),
    );
    run.add(
        "edited pod label restored p99",
        "ms",
        percentile_ms(&el, 99.0),
    );
    if let Some(w) = env.writes() {
        run.add("host writes per repair", "writes", w.host as f64 / N as f64)
            .target("<= 1");
        run.note(format!("drift requests: {:?}", env.engine_requests()));
    }
    run.note(
        "the baseline is the time a watch takes to show a label edit made straight on the host",
    );
    vcsync_problems(&mut run, &env);
    Ok(run)
}

// ---------------------------------------------------------------- fairness

/// `n` creates one after another every `gap`, while `burst` is running.
async fn trickle(
    client: &Client,
    ns: &str,
    n: usize,
    gap: Duration,
) -> anyhow::Result<HashMap<String, Instant>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut sent = HashMap::new();
    for i in 0..n {
        let (k, at) = create_one(&api, ns, &pod(&format!("quiet-{i}"), i)).await?;
        sent.insert(k, at);
        tokio::time::sleep(gap).await;
    }
    Ok(sent)
}

pub async fn fairness(o: &Opts) -> anyhow::Result<Run> {
    let burst_n = *o.pods.last().unwrap_or(&5000);
    const QUIET: usize = 10;
    let gap = Duration::from_millis(200);
    let mut env = Env::new(&o.env).await?;
    let mut run = Run::default();
    env.start_vcsync().await?;
    env.settle(Duration::from_secs(2), o.timeout).await?;
    env.virtual_namespace("noisy").await;
    env.virtual_namespace("quiet").await;
    let virt = Tracker::pods(env.virt.clone(), None, SELECTOR, own_key);
    let host = Tracker::pods(env.host.clone(), Some(&env.host_ns), SELECTOR, virtual_key);
    let noisy = vec!["noisy".to_owned()];
    let (pods, _) = workload(&noisy, "n", 0, burst_n);
    let vc = env.virt.clone();
    let conc = o.concurrency;
    let burst = tokio::spawn(async move { create_all(&vc, pods, conc).await });
    // Start the quiet namespace once vcsync is busy with the burst.
    host.wait_count(100.min(burst_n), o.timeout, "the burst under way", |s| {
        s.seen.is_some()
    })
    .await?;
    let sent = trickle(&env.virt, "quiet", QUIET, gap).await?;
    let behind = burst_n - host.count(|s| s.seen.is_some()).min(burst_n);
    burst.await??;
    host.wait_count(burst_n + QUIET, o.timeout, "all host pods", |s| {
        s.seen.is_some()
    })
    .await?;
    let hop = diffs(
        sent.keys().cloned(),
        g(&virt, |s| s.seen),
        g(&host, |s| s.seen),
    );
    let e2e = diffs(
        sent.keys().cloned(),
        |k| sent.get(k).copied(),
        g(&host, |s| s.seen),
    );

    // Baseline: the same trickle straight to the host while another namespace bursts there.
    let quiet_ns = format!("{}-q", env.direct_ns);
    vcsync_e2e::testutil::create_namespace(&env.host, &quiet_ns).await;
    let direct = Tracker::pods(env.host.clone(), None, SELECTOR, own_key);
    let direct_nss = vec![env.direct_ns.clone()];
    let (pods, _) = workload(&direct_nss, "n", 0, burst_n);
    let hc = env.host.clone();
    let dburst = tokio::spawn(async move { create_all(&hc, pods, conc).await });
    direct
        .wait_count(
            100.min(burst_n),
            o.timeout,
            "the direct burst under way",
            |s| s.seen.is_some(),
        )
        .await?;
    let dsent = trickle(&env.host, &quiet_ns, QUIET, gap).await?;
    dburst.await??;
    let d_e2e = diffs(
        dsent.keys().cloned(),
        |k| dsent.get(k).copied(),
        g(&direct, |s| s.seen),
    );

    run.add(
        "quiet namespace: virtual seen -> host seen p99",
        "ms",
        percentile_ms(&hop, 99.0),
    )
    .target("<= 1000 ms");
    run.add(
        "quiet namespace: create sent -> on host p99",
        "ms",
        percentile_ms(&e2e, 99.0),
    )
    .direct(percentile_ms(&d_e2e, 99.0));
    run.note(format!(
        "when the quiet pods were done, {behind} of the {burst_n} burst pods were not on the host yet"
    ));
    vcsync_problems(&mut run, &env);
    Ok(run)
}

// ---------------------------------------------------------------- churn

/// One change of the churn mix: create, relabel or delete (in turn), over a pool of pods.
struct Churn {
    client: Client,
    ns: String,
    next: usize,
    live: std::collections::VecDeque<usize>,
    pool: usize,
    errors: usize,
}

impl Churn {
    async fn step(&mut self, i: usize) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let r = match i % 3 {
            0 => {
                let k = self.next;
                self.next += 1;
                self.live.push_back(k);
                api.create(&Default::default(), &pod(&format!("c-{k}"), k))
                    .await
                    .map(|_| ())
            }
            1 => match self.live.get(i % self.live.len().max(1)) {
                Some(k) => {
                    let patch = json!({"metadata": {"labels": {"churn": i.to_string()}}});
                    api.patch(
                        &format!("c-{k}"),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                    .map(|_| ())
                }
                None => Ok(()),
            },
            _ if self.live.len() > self.pool / 2 => {
                let k = self.live.pop_front().unwrap_or_default();
                api.delete(&format!("c-{k}"), &DeleteParams::default())
                    .await
                    .map(|_| ())
            }
            _ => Ok(()),
        };
        if let Err(e) = r {
            self.errors += 1;
            tracing::warn!("churn change failed: {e}");
        }
    }
}

async fn churn_for(
    client: Client,
    ns: &str,
    o: &Opts,
    mut sample: impl FnMut(Duration),
) -> anyhow::Result<(usize, usize)> {
    let mut c = Churn {
        client,
        ns: ns.to_owned(),
        next: 0,
        live: Default::default(),
        pool: 600,
        errors: 0,
    };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / o.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let t0 = Instant::now();
    let mut i = 0;
    let mut last_sample = Instant::now();
    while t0.elapsed() < o.duration {
        tick.tick().await;
        c.step(i).await;
        i += 1;
        if last_sample.elapsed() >= Duration::from_secs(5) {
            last_sample = Instant::now();
            sample(t0.elapsed());
        }
    }
    Ok((i, c.errors))
}

pub async fn churn(o: &Opts) -> anyhow::Result<Run> {
    let mut env = Env::new(&o.env).await?;
    let mut run = Run::default();
    env.start_vcsync().await?;
    env.settle(Duration::from_secs(2), o.timeout).await?;
    env.virtual_namespace("churn").await;
    env.reset_counts();
    let before = Snapshot::take(&env);
    let pid = env.vcsync().pid;
    let mut samples: Vec<(Duration, f64)> = Vec::new();
    let (changes, errors) = churn_for(env.virt.clone(), "churn", o, |t| {
        samples.push((t, crate::probe::memory(pid).unwrap_or_default().rss as f64));
    })
    .await?;
    env.settle(Duration::from_secs(3), o.timeout).await?;
    // Converged: the host holds exactly one copy of every virtual pod, nothing else.
    let vpods: HashSet<String> = Api::<Pod>::namespaced(env.virt.clone(), "churn")
        .list(&ListParams::default().labels(SELECTOR))
        .await?
        .items
        .iter()
        .filter_map(own_key)
        .collect();
    let hpods: Vec<String> = Api::<Pod>::namespaced(env.host.clone(), &env.host_ns)
        .list(&ListParams::default().labels(SELECTOR))
        .await?
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(virtual_key)
        .collect();
    let hset: HashSet<String> = hpods.iter().cloned().collect();
    let missing = vpods.difference(&hset).count();
    let orphans = hset.difference(&vpods).count();
    let dups = hpods.len() - hset.len();

    // RSS growth after warm-up: the first fifth of the run (at least the first sample).
    let warm = o.duration / 5;
    let after: Vec<f64> = samples
        .iter()
        .filter(|(t, _)| *t >= warm)
        .map(|(_, r)| *r)
        .collect();
    let (base, end) = match (after.first(), after.last()) {
        (Some(b), Some(e)) => (*b, *e),
        _ => (f64::NAN, f64::NAN),
    };
    let max = after.iter().copied().fold(f64::NAN, f64::max);
    let m = env.vcsync().metrics().await;
    let reconcile_errors =
        crate::probe::metric_sum(&m, "controller_runtime_reconcile_errors_total");
    env.quiet_servers(QUIET, o.timeout).await?;
    let c = before.until(&Snapshot::take(&env));
    writes_per_change(&mut run, &env, changes);

    // Baseline: the same churn straight on the host.
    let d_before = Snapshot::take(&env);
    let (dchanges, derrors) = churn_for(env.host.clone(), &env.direct_ns, o, |_| {}).await?;
    env.quiet_servers(QUIET, o.timeout).await?;
    let d_cost = d_before.until(&Snapshot::take(&env));
    let per = Per {
        label: "",
        unit: "change",
        n: changes,
        memory: false,
    };
    // Per change of each run's own count (the two runs make about as many).
    let mut d_scaled = d_cost.clone();
    let scale = changes.max(1) as f64 / dchanges.max(1) as f64;
    for d in [
        &mut d_scaled.host_api_cpu,
        &mut d_scaled.kubelet_cpu,
        &mut d_scaled.bench_cpu,
    ] {
        *d = d.mul_f64(scale);
    }
    for v in d_scaled.host.values_mut() {
        *v = (*v as f64 * scale).round() as u64;
    }
    cost::add(&mut run, &per, &c, Some(&d_scaled));

    run.add("changes made", "changes", changes as f64)
        .direct(dchanges as f64);
    run.add("RSS after warm-up", "MiB", base / MIB);
    run.add("RSS at the end", "MiB", end / MIB);
    run.add("RSS max after warm-up", "MiB", max / MIB);
    run.add("RSS growth after warm-up", "%", 100.0 * (end - base) / base)
        .target("<= 5 %");
    run.add("client errors", "errors", errors as f64)
        .direct(derrors as f64)
        .target("0");
    run.add("vcsync reconcile errors", "errors", reconcile_errors)
        .target("0");
    run.add(
        "missing / orphaned / duplicate host pods",
        "pods",
        (missing + orphans + dups) as f64,
    )
    .target("0");
    vcsync_problems(&mut run, &env);
    Ok(run)
}

// ---------------------------------------------------------------- faults

/// Which fault is injected when the host has seen this fraction of the burst.
const FAULT_PLAN: [(f64, &str); 4] = [
    (0.10, "drop every watch"),
    (0.25, "compact history (resumes get 410)"),
    (0.40, "429 then 503 on everything for 10 s"),
    (0.60, "restart the host API server"),
];

async fn inject(env: &mut Env, step: usize) -> anyhow::Result<()> {
    let (Some(_), Some(_)) = (&env.host_server, &env.virtual_server) else {
        anyhow::bail!("the faults scenario needs the test API servers");
    };
    match step {
        0 => {
            for s in [&env.host_server, &env.virtual_server]
                .into_iter()
                .flatten()
            {
                s.drop_watches();
            }
        }
        1 => {
            for s in [&env.host_server, &env.virtual_server]
                .into_iter()
                .flatten()
            {
                s.compact_history();
                s.drop_watches();
            }
        }
        2 => {
            let servers = || {
                [&env.host_server, &env.virtual_server]
                    .into_iter()
                    .flatten()
            };
            for s in servers() {
                s.inject(
                    None,
                    None,
                    u32::MAX,
                    Fault::TooManyRequests {
                        retry_after_secs: 1,
                    },
                );
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            for s in servers() {
                s.clear_faults();
                s.inject(None, None, u32::MAX, Fault::ServiceUnavailable);
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            for s in servers() {
                s.clear_faults();
            }
        }
        _ => {
            if let Some(s) = env.host_server.as_mut() {
                tokio::time::timeout(Duration::from_secs(30), s.restart())
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!("the host API server did not restart within 30 s")
                    })??;
            }
        }
    }
    Ok(())
}

/// Run a burst of `n` pods through `client` into `nss` while the fault plan plays; returns the
/// time until all are Ready for the creator.
/// Where a faulted burst goes and how its progress is seen.
struct Side<'a> {
    label: &'static str,
    client: Client,
    namespaces: Vec<String>,
    /// Pods of the burst arriving on the host.
    seen: &'a Tracker,
    /// Pods of the burst Ready for the creator.
    ready: &'a Tracker,
}

async fn burst_with_faults(
    env: &mut Env,
    side: Side<'_>,
    n: usize,
    o: &Opts,
    run: &mut Run,
) -> anyhow::Result<Duration> {
    let Side {
        label,
        client,
        namespaces,
        seen: tracker_seen,
        ready,
    } = side;
    let (pods, _) = workload(&namespaces, "f", 0, n);
    let conc = o.concurrency;
    let t0 = Instant::now();
    let burst = tokio::spawn(async move { create_all(&client, pods, conc).await });
    for (step, (frac, what)) in FAULT_PLAN.iter().enumerate() {
        let at = ((n as f64) * frac) as usize;
        supervised_wait(env, tracker_seen, at, o, run, |s| s.seen.is_some()).await?;
        run.note(format!(
            "{label}: {what} at {:.1} s",
            t0.elapsed().as_secs_f64()
        ));
        inject(env, step).await?;
    }
    burst.await??;
    supervised_wait(env, ready, n, o, run, |s| s.ready.is_some()).await?;
    Ok(ready.latest(|s| s.ready).unwrap_or(t0) - t0)
}

/// Wait until `n` pods satisfy `f`, restarting vcsync whenever it exits meanwhile (and noting it).
async fn supervised_wait(
    env: &mut Env,
    tracker: &Tracker,
    n: usize,
    o: &Opts,
    run: &mut Run,
    f: impl Fn(&Stamps) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + o.timeout;
    loop {
        let have = tracker.count(&f);
        if have >= n {
            return Ok(());
        }
        if let Some(last) = env.revive().await? {
            run.note(format!(
                "vcsync exited and was started again; its last log line: {last}"
            ));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out after {:?} with {have} of {n} pods there",
            o.timeout
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn faults(o: &Opts) -> anyhow::Result<Run> {
    let n = *o.pods.first().unwrap_or(&2000);
    let mut env = Env::new(&o.env).await?;
    anyhow::ensure!(
        env.host_server.is_some(),
        "the faults scenario needs the test API servers (it injects the faults)"
    );
    let mut run = Run::default();
    env.start_vcsync().await?;
    env.settle(Duration::from_secs(2), o.timeout).await?;
    let nss = virtual_namespaces(&env, "faults", SPREAD).await;
    let virt = Tracker::pods(env.virt.clone(), None, SELECTOR, own_key);
    let host = Tracker::pods(env.host.clone(), Some(&env.host_ns), SELECTOR, virtual_key);
    env.reset_counts();
    let side = Side {
        label: "vcsync",
        client: env.virt.clone(),
        namespaces: nss,
        seen: &host,
        ready: &virt,
    };
    let took = burst_with_faults(&mut env, side, n, o, &mut run).await?;
    env.settle(Duration::from_secs(3), o.timeout).await?;

    // Nothing lost, nothing doubled: compare live lists, and count vcsync's successful creates.
    let vpods: HashSet<String> = Api::<Pod>::all(env.virt.clone())
        .list(&ListParams::default().labels(SELECTOR))
        .await?
        .items
        .iter()
        .filter_map(own_key)
        .collect();
    let hpods: Vec<String> = Api::<Pod>::namespaced(env.host.clone(), &env.host_ns)
        .list(&ListParams::default().labels(SELECTOR))
        .await?
        .items
        .iter()
        .filter_map(virtual_key)
        .collect();
    let hset: HashSet<String> = hpods.iter().cloned().collect();
    let created_ok: u64 = env
        .host_server
        .as_ref()
        .map(|s| {
            s.request_counts()
                .into_iter()
                .filter(|(k, _)| {
                    k.user == env::ENGINE_USER
                        && k.verb == "create"
                        && k.resource == "pods"
                        && k.code == 201
                })
                .map(|(_, c)| c)
                .sum()
        })
        .unwrap_or(0);
    let conflicts: u64 = env
        .host_server
        .as_ref()
        .map(|s| {
            s.request_counts()
                .into_iter()
                .filter(|(k, _)| k.user == env::ENGINE_USER && k.verb == "create" && k.code == 409)
                .map(|(_, c)| c)
                .sum()
        })
        .unwrap_or(0);
    writes_per_change(&mut run, &env, n);

    // Baseline: the same burst and faults straight against the host.
    vcsync_problems(&mut run, &env);
    env.stop_vcsync().await?;
    let direct = Tracker::pods(env.host.clone(), Some(&env.direct_ns), SELECTOR, own_key);
    let side = Side {
        label: "direct",
        client: env.host.clone(),
        namespaces: vec![env.direct_ns.clone()],
        seen: &direct,
        ready: &direct,
    };
    let dtook = burst_with_faults(&mut env, side, n, o, &mut run).await?;

    run.add(
        format!("{n} pods under faults: all Ready"),
        "s",
        took.as_secs_f64(),
    )
    .direct(dtook.as_secs_f64());
    run.add(
        "virtual pods missing on the host",
        "pods",
        vpods.difference(&hset).count() as f64,
    )
    .target("0");
    run.add(
        "host pods without a virtual pod",
        "pods",
        hset.difference(&vpods).count() as f64,
    )
    .target("0");
    run.add(
        "duplicate host pods",
        "pods",
        (hpods.len() - hset.len()) as f64,
    )
    .target("0");
    run.add(
        "successful host pod creates per pod",
        "creates",
        created_ok as f64 / n as f64,
    )
    .target("1");
    run.note(format!(
        "vcsync create conflicts (409) on the host: {conflicts}"
    ));
    Ok(run)
}

// ---------------------------------------------------------------- outages

/// How long the host API is down in the outages scenario (an upgrade, an etcd failover).
const HOST_OUTAGE: Duration = Duration::from_secs(40);
/// How long the virtual API is down (k3s restarting inside the pod).
const VIRTUAL_OUTAGE: Duration = Duration::from_secs(10);
/// Pods created in the virtual API while the host API is down.
const DURING: usize = 10;

/// Host pods (by `virtual_key`) whose virtual name starts with `prefix`.
async fn host_copies(env: &Env, prefix: &str) -> usize {
    let Ok(list) = Api::<Pod>::namespaced(env.host.clone(), &env.host_ns)
        .list(&ListParams::default().labels(SELECTOR))
        .await
    else {
        return 0;
    };
    list.items
        .iter()
        .filter_map(virtual_key)
        .filter(|k| {
            k.split_once('/')
                .is_some_and(|(_, n)| n.starts_with(prefix))
        })
        .count()
}

/// Polls until `check` holds; the time it took.
async fn until<F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while !check().await {
        anyhow::ensure!(t0.elapsed() < timeout, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(t0.elapsed())
}

/// Keeps `down` going until `outage` passed; returns when `/readyz` first failed (since `down`).
async fn ride_out(env: &Env, down: Instant, outage: Duration) -> Option<Duration> {
    let mut unready = None;
    while down.elapsed() < outage {
        if unready.is_none() && !env.vcsync().ready().await {
            unready = Some(down.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unready
}

/// The last `--pods` count (default 1000) of synced pods through a 40 s host API outage (longer
/// than the 15 s lease: vcsync loses it) with pods created meanwhile, then a 10 s virtual API
/// restart; vcsync keeps its default Lease timings.
pub async fn outages(o: &Opts) -> anyhow::Result<Run> {
    let n = *o.pods.last().unwrap_or(&1000);
    let mut env = Env::new(&o.env).await?;
    anyhow::ensure!(
        env.host_server.is_some() && env.virtual_server.is_some(),
        "the outages scenario needs the test API servers (it stops them)"
    );
    let mut run = Run::default();
    env.start_vcsync().await?;
    let nss = populate(&env, o, n).await?;

    // The host API goes away for longer than the lease.
    env.reset_counts();
    env.host_server.as_mut().expect("test servers").stop().await;
    let down = Instant::now();
    let (pods, _) = workload(&nss, "hostdown", 0, DURING);
    create_all(&env.virt, pods, o.concurrency).await?;
    let unready = ride_out(&env, down, HOST_OUTAGE).await;
    env.host_server
        .as_mut()
        .expect("test servers")
        .restart()
        .await?;
    let up = Instant::now();
    let ready = until(o.timeout, "ready again after the host outage", || {
        env.vcsync().ready()
    })
    .await?;
    until(
        o.timeout,
        "the pods created meanwhile on the host",
        || async { host_copies(&env, "hostdown-").await >= DURING },
    )
    .await?;
    let converged = up.elapsed();
    env.settle(Duration::from_secs(3), o.timeout).await?;
    if let Some(last) = env.revive().await? {
        run.note(format!("vcsync exited during the host outage: {last}"));
    }
    run.add(
        format!("ready after a {} s host API outage", HOST_OUTAGE.as_secs()),
        "s",
        ready.as_secs_f64(),
    );
    run.add(
        format!("{DURING} pods created during it synced"),
        "s",
        converged.as_secs_f64(),
    );
    run.add(
        "not ready after the host API went away",
        "s",
        unready.map_or(f64::NAN, |d| d.as_secs_f64()),
    );
    let creates = |env: &Env| -> u64 {
        env.host_server
            .as_ref()
            .map(|s| {
                s.request_counts()
                    .into_iter()
                    .filter(|(k, _)| {
                        k.user == env::ENGINE_USER && k.verb == "create" && k.resource == "pods"
                    })
                    .map(|(_, c)| c)
                    .sum()
            })
            .unwrap_or(0)
    };
    run.add(
        "host pod creates across the outage",
        "creates",
        creates(&env) as f64,
    )
    .target("10");
    if let Some(w) = env.writes() {
        run.note(format!(
            "host outage: {} host writes (excl. Lease), {} virtual writes for {DURING} new pods",
            w.host, w.virt
        ));
        let (host, virt) = env.engine_write_breakdown();
        run.note(format!(
            "host outage writes: host {host:?}, virtual {virt:?}"
        ));
    }

    // The virtual API restarts; nothing changes meanwhile.
    env.reset_counts();
    env.virtual_server
        .as_mut()
        .expect("test servers")
        .stop()
        .await;
    let down = Instant::now();
    let unready = ride_out(&env, down, VIRTUAL_OUTAGE).await;
    env.virtual_server
        .as_mut()
        .expect("test servers")
        .restart()
        .await?;
    let ready = until(o.timeout, "ready again after the virtual restart", || {
        env.vcsync().ready()
    })
    .await?;
    env.settle(Duration::from_secs(3), o.timeout).await?;
    if let Some(last) = env.revive().await? {
        run.note(format!("vcsync exited during the virtual restart: {last}"));
    }
    let writes = env.writes().unwrap_or_default();
    let (host, virt) = env.engine_write_breakdown();
    run.note(format!(
        "virtual restart writes: host {host:?}, virtual {virt:?}"
    ));
    let t0 = Instant::now();
    let (pods, _) = workload(&nss, "virtback", 0, 1);
    create_all(&env.virt, pods, 1).await?;
    until(
        o.timeout,
        "a pod created after the restart on the host",
        || async { host_copies(&env, "virtback-").await >= 1 },
    )
    .await?;
    let first = t0.elapsed();
    run.add(
        format!(
            "ready after a {} s virtual API restart",
            VIRTUAL_OUTAGE.as_secs()
        ),
        "s",
        ready.as_secs_f64(),
    );
    run.add(
        "not ready after the virtual API went away",
        "s",
        unready.map_or(f64::NAN, |d| d.as_secs_f64()),
    );
    run.add(
        "a pod created after it on the host",
        "s",
        first.as_secs_f64(),
    );
    run.add(
        "writes across the virtual restart (excl. Lease)",
        "writes",
        (writes.host + writes.virt) as f64,
    )
    .target("0");
    run.note(format!(
        "readiness after the restart includes up to {} s of the watchers' backoff",
        vcsync::sync::WATCH_BACKOFF_MAX.as_secs()
    ));
    vcsync_problems(&mut run, &env);
    Ok(run)
}

// ---------------------------------------------------------------- access

/// Samples per figure of the access scenario.
const ACCESS_SAMPLES: usize = 20;

/// `kubectl` against `kubeconfig`, timed: wall time and whether it succeeded.
fn timed_kubectl(
    kubeconfig: &std::path::Path,
    home: &std::path::Path,
    args: &[&str],
) -> (Duration, bool) {
    let t0 = Instant::now();
    let ok = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(home.join("cache"))
        .args(args)
        .env("HOME", home)
        .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (t0.elapsed(), ok)
}

/// Time from a `pods/log?follow=true` request to its first byte.
async fn first_log_byte(api: &Api<Pod>, name: &str) -> anyhow::Result<Duration> {
    use futures::AsyncBufReadExt as _;
    let t0 = Instant::now();
    let lp = kube::api::LogParams {
        follow: true,
        ..Default::default()
    };
    let mut lines = api.log_stream(name, &lp).await?.lines();
    let first = futures::StreamExt::next(&mut lines).await;
    anyhow::ensure!(matches!(first, Some(Ok(_))), "no log line from {name}");
    Ok(t0.elapsed())
}

/// What vcsync's kubelet endpoint adds to tenant workload access: the first byte of a followed
/// log and a `kubectl exec … echo` round trip, through the virtual API (virtual API server ->
/// vcsync -> host API -> kubelet) against the same request on the host pod straight through
/// the host API. Runs the engine in-process (the harness of the e2e tests, which wires the
/// kubelet endpoint and both servers' PKI as k3s lays it out), so its CPU is not itemised.
pub async fn access(o: &Opts) -> anyhow::Result<Run> {
    let _ = o;
    let mut h = vcsync_e2e::harness::Harness::new("bench-access").await;
    let (Some(hs), Some(vs)) = (h.host_server.as_ref(), h.virtual_server.as_ref()) else {
        anyhow::bail!("the access scenario needs the test API servers (it wires their PKI)");
    };
    let home = tempfile::tempdir()?;
    let (host_kc, virt_kc) = (
        home.path().join("host.kubeconfig"),
        home.path().join("virtual.kubeconfig"),
    );
    hs.write_kubeconfig(&host_kc)?;
    vs.write_kubeconfig(&virt_kc)?;
    h.start_engine();
    let vpods: Api<Pod> = h.virt_api("default");
    vpods
        .create(
            &Default::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "web"},
                "spec": {"containers": [{"name": "app", "image": "busybox"}]}
            }))?,
        )
        .await?;
    until(o.timeout, "the virtual pod running", || async {
        vpods
            .get("web")
            .await
            .ok()
            .and_then(|p| p.status?.phase)
            .as_deref()
            == Some("Running")
    })
    .await?;
    let host_pod = h.host_name("default", "web");
    let hpods: Api<Pod> = h.host_api();

    let mut run = Run::default();
    let (mut via, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..ACCESS_SAMPLES {
        via.push(first_log_byte(&vpods, "web").await?);
        direct.push(first_log_byte(&hpods, &host_pod).await?);
    }
    run.add(
        "first byte of a followed log (median)",
        "ms",
        percentile_ms(&via, 50.0),
    )
    .direct(percentile_ms(&direct, 50.0));
    run.add(
        "first byte of a followed log (p90)",
        "ms",
        percentile_ms(&via, 90.0),
    )
    .direct(percentile_ms(&direct, 90.0));

    let host_ns = h.host_namespace.clone();
    let (mut via, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..ACCESS_SAMPLES {
        let (d, ok) = timed_kubectl(&virt_kc, home.path(), &["exec", "web", "--", "echo", "hi"]);
        anyhow::ensure!(ok, "kubectl exec through vcsync failed");
        via.push(d);
        let (d, ok) = timed_kubectl(
            &host_kc,
            home.path(),
            &["-n", &host_ns, "exec", &host_pod, "--", "echo", "hi"],
        );
        anyhow::ensure!(ok, "kubectl exec on the host failed");
        direct.push(d);
    }
    run.add(
        "kubectl exec echo round trip (median)",
        "ms",
        percentile_ms(&via, 50.0),
    )
    .direct(percentile_ms(&direct, 50.0));
    run.add(
        "kubectl exec echo round trip (p90)",
        "ms",
        percentile_ms(&via, 90.0),
    )
    .direct(percentile_ms(&direct, 90.0));
    run.note(format!(
        "{ACCESS_SAMPLES} samples each, alternating; kubectl's own start-up is in both exec figures"
    ));
    h.stop_engine().await;
    Ok(run)
}
