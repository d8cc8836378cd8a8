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
//! takes over at its next retry, and the process exits 0. Losing the Lease (no renewal within
//! the renew deadline, or another holder) stops the engine the same way and exits 1, so the
//! pod restarts with fresh caches.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use tracing::info;

use crate::config::{Config, HostApiSource};
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
    /// This replica stopped being the leader without being asked to stop.
    #[error("stopped syncing: {0}")]
    LostLease(#[from] LostLease),
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
    let probes = tokio::spawn(health::probe_apis(
        health.clone(),
        host.clone(),
        virt.clone(),
    ));
    let guardrail_checks = tokio::spawn(guardrails.run(config.guardrails_interval));
    let result = lead_and_sync(&config, &health, host, virt, policy, kubelet, shutdown).await;
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
async fn lead_and_sync(
    config: &Config,
    health: &Arc<Health>,
    host: Client,
    virt: Client,
    policy: crate::policy::Policy,
    kubelet: crate::kubelet::Bound,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    tokio::pin!(shutdown);
    let mut engine_cfg = engine_config(config);
    engine_cfg.kubelet = Some(kubelet.endpoint);
    let engine = Arc::new(
        crate::sync::Shared::new(engine_cfg, host.clone(), virt)
            .with_metrics(health.metrics().clone())
            .with_policy(policy),
    );
    // The kubelet endpoint reads the engine's caches; until they fill (a standby replica's
    // stay empty) it answers 404 for every pod.
    let _kubelet = AbortOnDrop(tokio::spawn(kubelet.serve(
        engine.clone(),
        health.metrics().clone(),
        futures::future::pending::<()>(),
    )));
    // The tenant kubeconfig Secret is the leader's job, like every other host write.
    let kubeconfig = crate::kubeconfig::maintain_secret(
        host.clone(),
        config.tenant_kubeconfig.clone(),
        crate::kubeconfig::SecretTarget {
            namespace: config.host_namespace.to_string(),
            name: config.kubeconfig_secret.to_string(),
        },
        crate::kubeconfig::RESYNC,
        futures::future::pending::<()>(),
    );
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
    health.set_role(Role::Standby(None));
    info!(lease = %lease.name, identity = %lease.identity, "waiting for the leader lease");
    let acquired = {
        let mut last_holder: Option<String> = None;
        let acquire = elector.acquire(|holder| {
            health.set_role(Role::Standby(holder.map(str::to_owned)));
            if let Some(holder) = holder
                && last_holder.as_deref() != Some(holder)
            {
                info!(lease = %lease.name, holder, "standing by: another replica leads");
                last_holder = Some(holder.to_owned());
            }
        });
        tokio::select! {
            _ = acquire => true,
            _ = &mut shutdown => false,
        }
    };
    if !acquired {
        info!("shutdown requested while waiting for the leader lease");
        return Ok(());
    }
    health.set_role(Role::Leading);
    info!(lease = %lease.name, identity = %lease.identity, "became the leader; starting the sync engine");

    let (stop_engine, engine_stopped) = tokio::sync::watch::channel(false);
    let engine = async move {
        tokio::select! {
            _ = crate::sync::run(engine, async move {
                let mut rx = engine_stopped;
                let _ = rx.wait_for(|stop| *stop).await;
            }) => {}
            _ = kubeconfig => {}
        }
    };
    tokio::pin!(engine);
    let mut lost = None;
    {
        let hold = elector.hold();
        tokio::pin!(hold);
        let mut engine_done = false;
        tokio::select! {
            _ = &mut engine => {
                engine_done = true;
                tracing::warn!("the sync engine stopped by itself");
            }
            _ = &mut shutdown => info!("shutdown requested; finishing in-flight writes"),
            l = &mut hold => lost = Some(l),
        }
        health.set_role(Role::Stopping);
        let _ = stop_engine.send(true);
        if !engine_done {
            if lost.is_none() {
                // Keep renewing while in-flight writes finish, so that no other replica starts
                // writing before this one has stopped.
                tokio::select! {
                    _ = &mut engine => {}
                    l = &mut hold => {
                        lost = Some(l);
                        (&mut engine).await;
                    }
                }
            } else {
                (&mut engine).await;
            }
        }
    }
    if let Some(lost) = lost {
        tracing::error!(error = %lost, "lost the leader lease; the engine stopped");
        return Err(lost.into());
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
