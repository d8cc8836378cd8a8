//! The `vcsync run` command.
//!
//! Connects to both API servers, proves they answer, checks the host namespace guardrails
//! ([`crate::guardrails`]; with `--require-guardrails` a missing one stops start-up), serves
//! health and metrics ([`crate::health`]) while re-checking the guardrails, then waits for
//! the leader Lease ([`crate::leader`]) and runs the sync engine ([`crate::sync`]) while it
//! holds it, until asked to stop.
//!
//! On SIGTERM: readiness fails at once, the engine stops taking work and gets
//! [`crate::sync::SHUTDOWN_GRACE`] to finish in-flight writes (the Lease is still renewed
//! meanwhile, so no other replica starts writing), then the Lease is released so a follower
//! takes over at its next retry, and the process exits 0.
//!
//! Losing the Lease (no renewal within the renew deadline, as in a host API outage, or
//! another holder) is not fatal: the engine's writes stop at once ([`crate::gate`]), while
//! the process, its health endpoint and the engine's watch caches stay up, and the replica
//! campaigns again. Restarting instead would, on an outage of the host control plane,
//! restart every tenant's vcsync at once and put them in CrashLoopBackOff for as long as the
//! outage lasts, and then re-list everything. Once the Lease is back the engine resumes from
//! its caches, so what is still in sync costs no write. Only SIGTERM / ctrl-c or a
//! configuration error ends the process.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use tracing::info;

use crate::config::{Config, HostApiSource};
use crate::gate::WriteGate;
use crate::health::{self, Health, Role, ServeError};
use crate::kube_clients::{CheckReachableError, KubeClients, KubeClientsError};
use crate::leader::{LeaderElector, LostLease, TimingError};
use crate::metrics::{ApiLabel, Metrics, instrument_client};

/// How long releasing the Lease may take at shutdown.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why `vcsync run` stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Loading a kubeconfig or building a client failed.
    #[error(transparent)]
    BuildClients(#[from] KubeClientsError),
    /// An API server did not answer.
    #[error(transparent)]
    CheckReachable(#[from] CheckReachableError),
    /// Installing the signal handler failed.
    #[error("failed to install the SIGTERM handler")]
    InstallSignalHandler(#[source] std::io::Error),
    /// The health and metrics endpoint could not be served.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The leader election timings contradict each other.
    #[error("invalid leader election timings: {0}")]
    LeaderTimings(#[from] TimingError),
    /// The isolation policy file is invalid.
    #[error(transparent)]
    LoadPolicy(#[from] crate::policy::LoadError),
    /// `--require-guardrails` and the host namespace lacks a guardrail.
    #[error(transparent)]
    Guardrails(#[from] crate::guardrails::GuardrailsMissing),
    /// The kubelet endpoint of the virtual nodes could not start.
    #[error(transparent)]
    Kubelet(#[from] crate::kubelet::KubeletError),
    /// The metrics API could not start.
    #[error(transparent)]
    MetricsApi(#[from] crate::metrics_api::MetricsApiError),
}

/// Runs until `shutdown` completes.
///
/// # Errors
/// [`RunError`] when either API cannot be configured or reached.
pub async fn run_until(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    info!(
        tenant = %config.tenant,
        host_namespace = %config.host_namespace,
        virtual_kubeconfig = %config.virtual_kubeconfig.display(),
        host_kubeconfig = %match &config.host_api {
            HostApiSource::Kubeconfig(path) => path.display().to_string(),
            HostApiSource::InCluster => "(in-cluster)".to_owned(),
        },
        workload_service_account = %config.workload_service_account,
        concurrency = config.concurrency.get(),
        leader_elect = config.leader_election.enabled,
        lease = %config.leader_election.lease.name,
        identity = %config.leader_election.lease.identity,
        "starting vcsync"
    );
    if config.leader_election.enabled {
        config.leader_election.lease.check_timings()?;
    }
    // An invalid policy stops start-up, naming the path and reason.
    let mut policy = match &config.policy {
        Some(path) => crate::policy::Policy::load(path)?,
        None => crate::policy::Policy::default(),
    };
    let clients = KubeClients::from_config(&config).await?;
    // The host API server's own address is never a valid target of a tenant endpoint.
    if let Some(ip) = url_ip(&clients.host.url) {
        policy.host_facts.api_server.push(ip);
    }
    if let Some(ip) = std::env::var("KUBERNETES_SERVICE_HOST")
        .ok()
        .and_then(|h| h.parse().ok())
    {
        policy.host_facts.api_server.push(ip);
    }
    let versions = clients.check_reachable(config.api_timeout).await?;
    info!(
        virtual_url = %clients.virtual_.url,
        virtual_version = %versions.virtual_.git_version,
        host_url = %clients.host.url,
        host_version = %versions.host.git_version,
        "both APIs reachable"
    );
    // Service virtual IPs are never endpoint targets either; learned before the engine starts
    // so no endpoint is checked without them.
    let learned = match tokio::time::timeout(
        config.api_timeout,
        crate::service_cidr::learn(
            &clients.host.client,
            config.host_namespace.as_str(),
            &config.host_service_cidrs,
        ),
    )
    .await
    {
        Ok(learned) => learned,
        Err(_) => {
            tracing::warn!(
                "learning the host Service CIDRs timed out; using --host-service-cidr alone"
            );
            let mut l = crate::service_cidr::Learned::default();
            for c in &config.host_service_cidrs {
                l.add(*c, crate::service_cidr::Source::Flag);
            }
            l
        }
    };
    if learned.is_empty() {
        tracing::warn!(
            "no host Service CIDR known (set --host-service-cidr): endpoint addresses inside it are refused only once observed as ClusterIPs"
        );
    } else {
        info!(service_cidrs = %learned, "host Service CIDRs: refused as endpoint targets");
    }
    policy.host_facts.service_cidrs = learned.cidrs();
    let metrics = Arc::new(Metrics::new());
    let host = instrument_client(clients.host.client, ApiLabel::Host, metrics.clone());
    let virt = instrument_client(clients.virtual_.client, ApiLabel::Virtual, metrics.clone());
    // The start-up check was their first answer.
    let now = Instant::now();
    metrics.contact(ApiLabel::Host, now);
    metrics.contact(ApiLabel::Virtual, now);
    // Checked before serving, electing or writing, so `--require-guardrails` stops a replica
    // before it does anything.
    let mut guardrails = crate::guardrails::Checker::new(
        host.clone(),
        config.host_namespace.to_string(),
        config.tenant.to_string(),
        policy.pod_security.level,
        metrics.clone(),
    );
    let report = guardrails.check_once().await;
    if config.require_guardrails
        && let Some(refusal) = report.refusal(config.host_namespace.as_str())
    {
        return Err(refusal.into());
    }
    let health = Health::new(metrics);
    let (server_stop, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, server) = health::serve(config.metrics_addr, health.clone(), async move {
        let _ = server_stopped.await;
    })
    .await?;
    info!(metrics_addr = %addr, "serving /livez, /readyz and /metrics");
    let kubelet = match crate::kubelet::bind(config.kubelet.clone()).await {
        Ok(k) => k,
        Err(e) => {
            let _ = server_stop.send(());
            return Err(e.into());
        }
    };
    let metrics_api = match &config.metrics_api {
        Some(m) => match crate::metrics_api::bind(m.clone()).await {
            Ok(b) => Some(b),
            Err(e) => {
                let _ = server_stop.send(());
                return Err(e.into());
            }
        },
        None => None,
    };
    let probes = tokio::spawn(health::probe_apis(
        health.clone(),
        host.clone(),
        virt.clone(),
    ));
    let guardrail_checks = tokio::spawn(guardrails.run(config.guardrails_interval));
    let result = lead_and_sync(
        &config,
        &health,
        host,
        virt,
        policy,
        (kubelet, metrics_api),
        shutdown,
    )
    .await;
    health.set_role(Role::Stopping);
    probes.abort();
    guardrail_checks.abort();
    let _ = server_stop.send(());
    let _ = server.await;
    if result.is_ok() {
        info!("shutdown complete; exiting");
    }
    result
}

/// Waits for the Lease (unless leader election is off), runs the engine while holding it,
/// and releases it after a requested shutdown.
///
/// The engine starts the first time this replica leads and then runs until shutdown; its
/// clients go through a [`WriteGate`] that is open only while the Lease is held. Losing the
/// Lease closes the gate (before any other replica may take over: the renew deadline is
/// shorter than the lease duration) and this replica campaigns again with warm caches.
async fn lead_and_sync(
    config: &Config,
    health: &Arc<Health>,
    host: Client,
    virt: Client,
    policy: crate::policy::Policy,
    (kubelet, metrics_api): (crate::kubelet::Bound, Option<crate::metrics_api::Bound>),
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    tokio::pin!(shutdown);
    let mut engine_cfg = engine_config(config);
    engine_cfg.kubelet = Some(kubelet.endpoint);
    let gate = if config.leader_election.enabled {
        WriteGate::closed()
    } else {
        WriteGate::open()
    };
    let engine_host = gate.client(host.clone());
    let raw_virt = virt.clone();
    let engine = Arc::new(
        crate::sync::Shared::new(engine_cfg, engine_host.clone(), gate.client(virt))
            .with_metrics(health.metrics().clone())
            .with_policy(policy)
            .with_gate(gate.clone()),
    );
    // The kubelet endpoint reads the engine's caches and relays through the ungated host
    // client: streams write no objects, so they need no leadership.
    let _kubelet = AbortOnDrop(tokio::spawn(kubelet.serve(
        engine.clone(),
        host.clone(),
        health.metrics().clone(),
        futures::future::pending::<()>(),
    )));
    // The metrics API reads the same caches; it writes nothing but access reviews, which
    // persist nothing, so it needs no leadership either.
    // Registering it (Service, Endpoints, APIService in the virtual cluster) is a write, so it
    // is the leader's, through the gated client.
    let registration = match (&config.metrics_api, metrics_api.as_ref()) {
        (Some(m), Some(bound)) => {
            let port = bound.local_addr().map_or(m.bind.port(), |a| a.port());
            match crate::metrics_api::register::registration(config.tenant.as_str(), m, port) {
                Ok(reg) => Some(reg),
                Err(e) => {
                    tracing::warn!(error = %e, "the metrics API is not registered in the virtual cluster");
                    None
                }
            }
        }
        _ => None,
    };
    let registration = {
        let (virt, gate) = (gate.client(raw_virt.clone()), gate.clone());
        async move {
            match registration {
                Some(reg) => {
                    crate::metrics_api::register::maintain(
                        virt,
                        gate,
                        reg,
                        futures::future::pending::<()>(),
                    )
                    .await;
                }
                None => futures::future::pending::<()>().await,
            }
        }
    };
    let _metrics_api = metrics_api.map(|m| {
        AbortOnDrop(tokio::spawn(m.serve(
            engine.clone(),
            host.clone(),
            raw_virt,
            health.metrics().clone(),
            futures::future::pending::<()>(),
        )))
    });
    // The tenant kubeconfig Secret is the leader's job, like every other host write.
    let kubeconfig = crate::kubeconfig::maintain_secret(
        engine_host,
        config.tenant_kubeconfig.clone(),
        crate::kubeconfig::SecretTarget {
            namespace: config.host_namespace.to_string(),
            name: config.kubeconfig_secret.to_string(),
        },
        crate::kubeconfig::RESYNC,
        futures::future::pending::<()>(),
    );
    let kubeconfig = async move {
        futures::join!(kubeconfig, registration);
    };
    if !config.leader_election.enabled {
        health.set_role(Role::Leading);
        info!("leader election is off; starting the sync engine");
        tokio::select! {
            _ = crate::sync::run(engine, shutdown) => {}
            _ = kubeconfig => {}
        }
        info!("shutdown requested; the engine stopped");
        return Ok(());
    }

    let lease = &config.leader_election.lease;
    let mut elector = LeaderElector::new(host, lease.clone());
    let (stop_engine, engine_stopped) = tokio::sync::watch::channel(false);
    let mut not_started = Some(async move {
        tokio::select! {
            _ = crate::sync::run(engine, async move {
                let mut rx = engine_stopped;
                let _ = rx.wait_for(|stop| *stop).await;
            }) => {}
            _ = kubeconfig => {}
        }
    });
    let mut engine: Option<tokio::task::JoinHandle<()>> = None;
    let mut lost_at: Option<Instant> = None;
    health.set_role(Role::Standby(None));
    info!(lease = %lease.name, identity = %lease.identity, "waiting for the leader lease");
    loop {
        if !campaign(&mut elector, health, &mut shutdown).await {
            info!("shutdown requested while not leading");
            // The gate is closed: nothing the engine still has in hand can write.
            if let Some(engine) = engine {
                engine.abort();
                let _ = engine.await;
            }
            return Ok(());
        }
        gate.set(true);
        health.set_role(Role::Leading);
        match lost_at.take() {
            None => {
                info!(lease = %lease.name, identity = %lease.identity, "became the leader; starting the sync engine");
            }
            Some(at) => info!(
                lease = %lease.name,
                not_leading_ms = u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX),
                "regained the leader lease; the engine resumes from its caches"
            ),
        }
        let engine = engine.get_or_insert_with(|| {
            tokio::spawn(not_started.take().expect("the engine starts once"))
        });
        let hold = elector.hold();
        tokio::pin!(hold);
        let lost = tokio::select! {
            _ = &mut *engine => {
                tracing::warn!("the sync engine stopped by itself");
                None
            }
            _ = &mut shutdown => {
                info!("shutdown requested; finishing in-flight writes");
                health.set_role(Role::Stopping);
                let _ = stop_engine.send(true);
                // Keep renewing while in-flight writes finish, so that no other replica starts
                // writing before this one has stopped.
                tokio::select! {
                    _ = &mut *engine => None,
                    l = &mut hold => {
                        gate.set(false);
                        let _ = (&mut *engine).await;
                        Some(l)
                    }
                }
            }
            l = &mut hold => {
                gate.set(false);
                health.metrics().leader_lost();
                health.set_role(match &l {
                    LostLease::TakenOver { holder, .. } => Role::Standby(Some(holder.clone())),
                    LostLease::RenewDeadline { .. } => {
                        Role::NotLeading("lost the leader lease; campaigning again".to_owned())
                    }
                });
                tracing::error!(error = %l, "lost the leader lease; writes stopped, the caches stay warm; campaigning again");
                lost_at = Some(Instant::now());
                continue;
            }
        };
        health.set_role(Role::Stopping);
        if let Some(l) = lost {
            tracing::warn!(error = %l, "lost the leader lease while stopping; not releasing it");
            return Ok(());
        }
        break;
    }
    match tokio::time::timeout(RELEASE_TIMEOUT, elector.release()).await {
        Ok(Ok(())) => info!(lease = %lease.name, "released the leader lease"),
        Ok(Err(e)) => {
            tracing::warn!(lease = %lease.name, error = %crate::sync::brief(&e), "releasing the leader lease failed; followers take over when it expires")
        }
        Err(_) => {
            tracing::warn!(lease = %lease.name, "releasing the leader lease timed out; followers take over when it expires")
        }
    }
    Ok(())
}

/// Campaigns until this replica holds the Lease (`true`) or `shutdown` completes (`false`),
/// keeping the role current: standing by behind a live holder is ready; not knowing
/// (the Lease cannot be read) is not.
async fn campaign(
    elector: &mut LeaderElector,
    health: &Health,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> bool {
    let name = elector.config().name.clone();
    let mut last_holder: Option<String> = None;
    let acquire = elector.acquire(|attempt| match attempt {
        Ok(holder) => {
            health.set_role(Role::Standby(holder.map(str::to_owned)));
            if let Some(holder) = holder
                && last_holder.as_deref() != Some(holder)
            {
                info!(lease = %name, holder, "standing by: another replica leads");
                last_holder = Some(holder.to_owned());
            }
        }
        Err(e) => health.set_role(Role::NotLeading(match e {
            kube::Error::Api(s) => {
                format!("reading the leader lease failed: {} {}", s.code, s.reason)
            }
            _ => "host API unreachable".to_owned(),
        })),
    });
    tokio::select! {
        _ = acquire => true,
        _ = shutdown.as_mut() => false,
    }
}

/// The IP address in an API server URL, if it is one (not a host name).
fn url_ip(url: &str) -> Option<std::net::IpAddr> {
    let host = url
        .parse::<http::Uri>()
        .ok()?
        .host()?
        .trim_matches(['[', ']'])
        .to_string();
    host.parse().ok()
}

/// The engine's settings from the validated configuration.
pub fn engine_config(config: &Config) -> crate::sync::EngineConfig {
    crate::sync::EngineConfig {
        tenant: config.tenant.to_string(),
        host_namespace: config.host_namespace.to_string(),
        workload_service_account: config.workload_service_account.to_string(),
        concurrency: config.concurrency.get(),
        api_service: config.api_service.to_string(),
        dns_service: (
            config.dns_service.0.to_string(),
            config.dns_service.1.to_string(),
        ),
        cluster_domain: config.cluster_domain.to_string(),
        kubelet: None,
    }
}

/// Aborts a background task when dropped (on every way out of the function holding it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Installs the SIGTERM and ctrl-c handlers and returns a future that
/// completes on the first of them.
///
/// The handlers are installed before returning so that a signal arriving
/// while the start-up checks run is not lost.
///
/// # Errors
/// [`RunError::InstallSignalHandler`] if the SIGTERM handler cannot be set.
pub fn shutdown_signal() -> Result<impl Future<Output = ()>, RunError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::InstallSignalHandler)?;
    Ok(async move {
        tokio::select! {
            _ = sigterm.recv() => info!("received SIGTERM"),
            result = tokio::signal::ctrl_c() => match result {
                Ok(()) => info!("received ctrl-c"),
                // Without a ctrl-c handler, SIGTERM is still honoured.
                Err(err) => {
                    tracing::warn!(error = %err, "failed to listen for ctrl-c; waiting for SIGTERM only");
                    sigterm.recv().await;
                }
            },
        }
    })
}
