//! The `vcsync run` command.
//!
//! Connects to both API servers, proves they answer, then runs the sync
//! engine ([`crate::sync`]) until asked to stop.

use std::future::Future;

use tracing::info;

use crate::config::{Config, HostApiSource};
use crate::kube_clients::{CheckReachableError, KubeClients, KubeClientsError};

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
        "starting vcsync"
    );
    let clients = KubeClients::from_config(&config).await?;
    let versions = clients.check_reachable(config.api_timeout).await?;
    info!(
        virtual_url = %clients.virtual_.url,
        virtual_version = %versions.virtual_.git_version,
        host_url = %clients.host.url,
        host_version = %versions.host.git_version,
        "both APIs reachable"
    );
    info!(metrics_addr = %config.metrics_addr, "the metrics endpoint is not implemented yet");
    let engine = crate::sync::Shared::new(
        engine_config(&config),
        clients.host.client,
        clients.virtual_.client,
    );
    crate::sync::run(std::sync::Arc::new(engine), shutdown).await;
    info!("shutdown requested; exiting");
    Ok(())
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
