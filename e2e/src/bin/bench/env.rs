//! One benchmark environment: a host and a virtual API (two in-process test API servers, or two
//! real clusters), the kubelet simulator on the host, the tenant's host namespace, a second host
//! namespace for the direct-to-host baseline, and the vcsync *binary* as a child process.
//!
//! Each test API server and the kubelet simulator run on a tokio runtime of their own whose
//! threads carry its name ([`HOST_API_THREADS`], ...), so the bench can tell their CPU apart by
//! thread (see [`crate::cost`]); the bench's own clients and watches run on the main runtime.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use vcsync_e2e::apiserver::{ServerConfig, TestApiServer};
use vcsync_e2e::kubelet::{Kubelet, KubeletConfig, KubeletHandle, SimNode};
use vcsync_e2e::testutil::{client_from_kubeconfig, create_namespace, unique_name};

use crate::probe;

/// The user vcsync's requests are counted under on the test API servers.
pub const ENGINE_USER: &str = "vcsync";
const ENGINE_TOKEN: &str = "vcsync-bench-token";
/// The user the kubelet simulator's requests are counted under on the host test API server.
pub const KUBELET_USER: &str = "kubelet-sim";
const KUBELET_TOKEN: &str = "kubelet-sim-bench-token";

/// Thread names of the runtimes the fixtures run on (at most 15 bytes: Linux truncates).
pub const HOST_API_THREADS: &str = "host-api";
pub const VIRTUAL_API_THREADS: &str = "virtual-api";
pub const KUBELET_THREADS: &str = "kubelet-sim";

/// A tokio runtime with named threads, shut down without blocking when dropped (the
/// environment is dropped inside the bench's own runtime, where a blocking shutdown panics).
pub struct NamedRuntime(Option<tokio::runtime::Runtime>);

impl NamedRuntime {
    fn new(name: &str) -> std::io::Result<NamedRuntime> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(name)
            // Blocking-pool threads that exit take their CPU time with them: keep them.
            .thread_keep_alive(Duration::from_secs(24 * 3600))
            .enable_all()
            .build()?;
        Ok(NamedRuntime(Some(rt)))
    }

    /// Run `fut` on this runtime and wait for it from the caller's.
    async fn run<F>(&self, fut: F) -> anyhow::Result<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let rt = self.0.as_ref().context("the runtime is running")?;
        Ok(rt.spawn(fut).await?)
    }
}

impl Drop for NamedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Label (and value) of every pod the bench creates; the kubelet simulator handles only these.
pub const APP: (&str, &str) = ("app", "vcsync-bench");
/// `APP` as a label selector.
pub const SELECTOR: &str = "app=vcsync-bench";

/// How the environment is set up (from the command line).
#[derive(Debug, Clone)]
pub struct EnvOptions {
    pub host_kubeconfig: Option<PathBuf>,
    pub virtual_kubeconfig: Option<PathBuf>,
    pub vcsync_bin: PathBuf,
    /// Simulated nodes and pods per node.
    pub nodes: usize,
    pub pods_per_node: u32,
    /// `--concurrency` of vcsync.
    pub vcsync_concurrency: usize,
    /// vcsync's log level (its logs are kept in the run directory).
    pub log_level: String,
}

/// Writes vcsync made, split the way the report needs them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Writes {
    /// Host writes, excluding the leader-election Lease.
    pub host: u64,
    /// Lease renewals (the cost of leader election, not of syncing).
    pub lease: u64,
    pub virt: u64,
}

/// One running vcsync process.
pub struct Vcsync {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Vcsync {
    /// Log lines at WARN or ERROR so far.
    pub fn problems(&self) -> Vec<String> {
        self.lines
            .lock()
            .expect("log lock")
            .iter()
            .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
            .cloned()
            .collect()
    }

    pub fn memory(&self) -> probe::Memory {
        probe::memory(self.pid).unwrap_or_default()
    }

    pub fn cpu(&self) -> Duration {
        probe::cpu_time(self.pid).unwrap_or_default()
    }

    pub async fn metrics(&self) -> String {
        probe::http_get(self.addr, "/metrics")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    pub async fn ready(&self) -> bool {
        matches!(probe::http_get(self.addr, "/readyz").await, Some((200, _)))
    }
}

impl Drop for Vcsync {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment of one run.
pub struct Env {
    /// Runs for as long as the environment lives; first, so it stops before the servers do.
    _kubelet: KubeletHandle,
    pub tenant: String,
    pub host_ns: String,
    /// Host namespace of the direct-to-host baseline.
    pub direct_ns: String,
    pub host: Client,
    pub virt: Client,
    pub host_server: Option<TestApiServer>,
    pub virtual_server: Option<TestApiServer>,
    dir: tempfile::TempDir,
    host_kc: PathBuf,
    virt_kc: PathBuf,
    opts: EnvOptions,
    pub vcsync: Option<Vcsync>,
    logs: usize,
    /// Last, so the servers and the simulator are gone before their runtimes stop.
    _runtimes: Vec<NamedRuntime>,
}

impl Env {
    /// Set everything up except vcsync (see [`Env::start_vcsync`]).
    pub async fn new(opts: &EnvOptions) -> anyhow::Result<Env> {
        let dir = tempfile::Builder::new().prefix("vcsync-bench").tempdir()?;
        let kubelet_rt = NamedRuntime::new(KUBELET_THREADS)?;
        let mut runtimes = Vec::new();
        let (host, virt, host_server, virtual_server, host_kc, virt_kc, kubelet_kc) =
            match (&opts.host_kubeconfig, &opts.virtual_kubeconfig) {
                (Some(h), Some(v)) => {
                    let hs = h.to_string_lossy();
                    let vs = v.to_string_lossy();
                    (
                        client_from_kubeconfig(&hs).await,
                        client_from_kubeconfig(&vs).await,
                        None,
                        None,
                        h.clone(),
                        v.clone(),
                        h.clone(),
                    )
                }
                (None, None) => {
                    let config = || ServerConfig {
                        users: vec![
                            (ENGINE_TOKEN.to_owned(), ENGINE_USER.to_owned()),
                            (KUBELET_TOKEN.to_owned(), KUBELET_USER.to_owned()),
                        ],
                        // Enough watch history that a resuming client never sees a 410 the
                        // scenario did not ask for.
                        history_window: 400_000,
                        ..ServerConfig::default()
                    };
                    // Started on their own runtimes: everything a server spawns stays there.
                    let host_rt = NamedRuntime::new(HOST_API_THREADS)?;
                    let virt_rt = NamedRuntime::new(VIRTUAL_API_THREADS)?;
                    let hs = host_rt.run(TestApiServer::start(config())).await??;
                    let vs = virt_rt.run(TestApiServer::start(config())).await??;
                    runtimes.push(host_rt);
                    runtimes.push(virt_rt);
                    let host_kc = dir.path().join("host.kubeconfig");
                    let virt_kc = dir.path().join("virtual.kubeconfig");
                    let kubelet_kc = dir.path().join("kubelet.kubeconfig");
                    std::fs::write(&host_kc, hs.kubeconfig_yaml_for(ENGINE_TOKEN))?;
                    std::fs::write(&virt_kc, vs.kubeconfig_yaml_for(ENGINE_TOKEN))?;
                    std::fs::write(&kubelet_kc, hs.kubeconfig_yaml_for(KUBELET_TOKEN))?;
                    (
                        hs.client(),
                        vs.client(),
                        Some(hs),
                        Some(vs),
                        host_kc,
                        virt_kc,
                        kubelet_kc,
                    )
                }
                _ => anyhow::bail!(
                    "give both --host-kubeconfig and --virtual-kubeconfig, or neither"
                ),
            };
        let tenant = "bench".to_owned();
        let host_ns = unique_name("bench-tenant");
        let direct_ns = unique_name("bench-direct");
        create_namespace(&host, &host_ns).await;
        create_namespace(&host, &direct_ns).await;
        let sas: Api<ServiceAccount> = Api::namespaced(host.clone(), &host_ns);
        sas.create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "vcsync-workload"}, "automountServiceAccountToken": false}),
            )?,
        )
        .await
        .context("creating the workload service account")?;
        let svcs: Api<Service> = Api::namespaced(host.clone(), &host_ns);
        svcs.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "vcsync-api"}, "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}], "selector": {"app": "vcsync-api"}}}))?,
        )
        .await
        .context("creating the tenant API service")?;
        // What every k3s has and pods are pointed at: the tenant DNS service.
        let dns: Api<Service> = Api::namespaced(virt.clone(), "kube-system");
        let dns_svc: Service = serde_json::from_value(
            json!({"metadata": {"name": "kube-dns"}, "spec": {"selector": {"k8s-app": "kube-dns"}, "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}),
        )?;
        match dns.create(&PostParams::default(), &dns_svc).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e).context("creating the virtual kube-dns service"),
        }
        let nodes: Vec<SimNode> = (0..opts.nodes)
            .map(|i| SimNode::new(format!("bench-node-{i}")).pods(opts.pods_per_node))
            .collect();
        // The simulator's client is made on its runtime too (a kube client spawns its buffer
        // task where it is built), under its own user so its requests are counted apart.
        let kc = kubelet_kc.to_string_lossy().into_owned();
        let kubelet = kubelet_rt
            .run(async move {
                let client = client_from_kubeconfig(&kc).await;
                Kubelet::start(
                    client,
                    KubeletConfig::default()
                        .nodes(nodes)
                        .all_namespaces()
                        .label_selector(SELECTOR),
                )
            })
            .await??;
        runtimes.push(kubelet_rt);
        kubelet.wait_nodes_ready(Duration::from_secs(60)).await?;
        Ok(Env {
            tenant,
            host_ns,
            direct_ns,
            host,
            virt,
            host_server,
            virtual_server,
            _kubelet: kubelet,
            dir,
            host_kc,
            virt_kc,
            opts: opts.clone(),
            vcsync: None,
            logs: 0,
            _runtimes: runtimes,
        })
    }

    /// Start vcsync and wait until `/readyz` answers 200; returns how long that took.
    pub async fn start_vcsync(&mut self) -> anyhow::Result<Duration> {
        anyhow::ensure!(self.vcsync.is_none(), "vcsync is already running");
        self.logs += 1;
        let log_path = self.dir.path().join(format!("vcsync-{}.log", self.logs));
        let mut cmd = Command::new(&self.opts.vcsync_bin);
        for (key, _) in std::env::vars() {
            if key.starts_with("VCSYNC_") || key.starts_with("KUBERNETES_SERVICE_") {
                cmd.env_remove(key);
            }
        }
        cmd.env_remove("KUBECONFIG")
            .env_remove("RUST_LOG")
            .env("VCSYNC_LOG_LEVEL", &self.opts.log_level)
            .args(["--log-format", "json", "run", "--tenant", &self.tenant])
            .args(["--host-namespace", &self.host_ns])
            .arg("--host-kubeconfig")
            .arg(&self.host_kc)
            .arg("--virtual-kubeconfig")
            .arg(&self.virt_kc)
            .args([
                "--metrics-addr",
                "127.0.0.1:0",
                "--pod-name",
                "bench",
                "--kubelet-port",
                "0",
            ])
            .args(["--concurrency", &self.opts.vcsync_concurrency.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let t0 = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.opts.vcsync_bin.display()))?;
        let stderr = child.stderr.take().context("piped stderr")?;
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(&log_path).ok();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if let Some(f) = file.as_mut() {
                    use std::io::Write as _;
                    let _ = writeln!(f, "{line}");
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let found = lines.lock().expect("log lock").iter().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                v["metrics_addr"].as_str()?.parse::<SocketAddr>().ok()
            });
            if let Some(a) = found {
                break a;
            }
            if let Some(status) = child.try_wait()? {
                anyhow::bail!(
                    "vcsync exited ({status}) before serving health: {}",
                    lines.lock().expect("log lock").join("\n")
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "vcsync never logged its metrics address"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let v = Vcsync {
            child,
            pid,
            addr,
            lines,
        };
        while !v.ready().await {
            anyhow::ensure!(Instant::now() < deadline, "vcsync not ready within 60 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = t0.elapsed();
        self.vcsync = Some(v);
        Ok(took)
    }

    /// SIGTERM vcsync and wait for it to exit.
    pub async fn stop_vcsync(&mut self) -> anyhow::Result<()> {
        let Some(mut v) = self.vcsync.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &v.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while v.child.try_wait()?.is_none() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "vcsync did not exit within 30 s of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// What a Deployment's restart policy does: start vcsync again if it exited (it should
    /// not: losing the Lease in an API outage keeps the process and campaigns again). Returns
    /// the exited process's last log line when it had to.
    pub async fn revive(&mut self) -> anyhow::Result<Option<String>> {
        let Some(v) = self.vcsync.as_mut() else {
            return Ok(None);
        };
        if v.child.try_wait()?.is_none() {
            return Ok(None);
        }
        let last = v
            .lines
            .lock()
            .expect("log lock")
            .last()
            .cloned()
            .unwrap_or_default();
        self.vcsync = None;
        self.start_vcsync().await?;
        Ok(Some(last))
    }

    pub fn vcsync(&self) -> &Vcsync {
        self.vcsync.as_ref().expect("vcsync is running")
    }

    /// Writes vcsync made since the last [`Env::reset_counts`]; `None` against real clusters.
    pub fn writes(&self) -> Option<Writes> {
        let (hs, vs) = (self.host_server.as_ref()?, self.virtual_server.as_ref()?);
        let mut w = Writes::default();
        for (k, n) in hs.request_counts() {
            if k.user == ENGINE_USER && is_write(&k.verb) {
                if k.resource == "leases" {
                    w.lease += n;
                } else {
                    w.host += n;
                }
            }
        }
        w.virt = vs.write_count_by(ENGINE_USER);
        Some(w)
    }

    /// vcsync's host requests as `verb resource code xN` (for notes when something is off).
    pub fn engine_requests(&self) -> Vec<String> {
        self.host_server
            .as_ref()
            .map(|s| s.requests_by(ENGINE_USER))
            .unwrap_or_default()
    }

    /// vcsync's writes on (host, virtual) API as `verb resource code xN`.
    pub fn engine_write_breakdown(&self) -> (Vec<String>, Vec<String>) {
        let writes = |s: &Option<TestApiServer>| -> Vec<String> {
            s.as_ref()
                .map(|s| {
                    s.request_counts()
                        .into_iter()
                        .filter(|(k, _)| k.user == ENGINE_USER && is_write(&k.verb))
                        .map(|(k, n)| format!("{} {} {} x{n}", k.verb, k.resource, k.code))
                        .collect()
                })
                .unwrap_or_default()
        };
        (writes(&self.host_server), writes(&self.virtual_server))
    }

    pub fn reset_counts(&self) {
        for s in [&self.host_server, &self.virtual_server]
            .into_iter()
            .flatten()
        {
            s.reset_counts();
        }
    }

    /// Wait until neither test API server has answered a request for `quiet` (the tail of a
    /// workload: the simulator's last events, status writes), so a cost snapshot taken next
    /// covers all of it. Long-lived watches are counted when they open, not while they stream.
    /// A no-op against real clusters.
    pub async fn quiet_servers(&self, quiet: Duration, timeout: Duration) -> anyhow::Result<()> {
        let total = || {
            [&self.host_server, &self.virtual_server]
                .into_iter()
                .flatten()
                .map(|s| s.total_requests())
                .sum::<u64>()
        };
        if self.host_server.is_none() {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        let mut last = total();
        let mut since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = total();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the test API servers never went quiet within {timeout:?}"
            );
        }
    }

    /// Wait until vcsync has had nothing to do for `quiet`: no reconcile finished and no pod
    /// queued (its own metrics, so this works against real clusters too).
    pub async fn settle(&self, quiet: Duration, timeout: Duration) -> anyhow::Result<()> {
        let v = self.vcsync();
        let deadline = Instant::now() + timeout;
        let mut last = f64::NAN;
        let mut since = Instant::now();
        loop {
            let m = v.metrics().await;
            let done = probe::metric_sum(&m, "controller_runtime_reconcile_total");
            let depth = probe::metric_sum(&m, "workqueue_depth");
            if done != last || depth > 0.0 {
                last = done;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "vcsync never settled within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Create a virtual namespace (and wait for its default ServiceAccount).
    pub async fn virtual_namespace(&self, name: &str) {
        let nss: Api<Namespace> = Api::all(self.virt.clone());
        if nss.get_opt(name).await.ok().flatten().is_none() {
            create_namespace(&self.virt, name).await;
        }
    }
}

fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

/// A pod every policy level admits (restricted Pod Security), labelled for the simulator.
pub fn pod(name: &str, group: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {APP.0: APP.1, "group": format!("g{group}"), crate::track::TAG_LABEL: "v1"}},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app",
                "image": "bench/app:1",
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
            }]
        }
    }))
    .expect("a valid pod")
}

/// A ClusterIP service over one group of pods.
pub fn service(name: &str, group: usize) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {APP.0: APP.1}},
        "spec": {"selector": {"group": format!("g{group}")}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .expect("a valid service")
}

/// Create `items` as fast as `concurrency` clients can; 409 (already there) counts as done, and
/// other failures are retried (the faults scenario makes some). Returns when each was sent.
pub async fn create_all<K>(
    client: &Client,
    items: Vec<(String, K)>,
    concurrency: usize,
) -> anyhow::Result<Vec<(String, Instant)>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let results: Vec<anyhow::Result<(String, Instant)>> = futures::stream::iter(items)
        .map(|(ns, obj)| {
            let api: Api<K> = Api::namespaced(client.clone(), &ns);
            async move { create_one(&api, &ns, &obj).await }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// Create one object, retrying transient failures for up to a minute.
pub async fn create_one<K>(api: &Api<K>, ns: &str, obj: &K) -> anyhow::Result<(String, Instant)>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sent = Instant::now();
        match api.create(&PostParams::default(), obj).await {
            Ok(_) => return Ok((format!("{ns}/{name}"), sent)),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return Ok((format!("{ns}/{name}"), sent));
            }
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("create {ns}/{name}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("creating {ns}/{name}")),
        }
    }
}
