//! `test-apiserver`: run the in-process test Kubernetes API server as a standalone process, so
//! kubectl and the vcsync binary can talk to it.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::Parser;
use vcsync_e2e::apiserver::{ServerConfig, TestApiServer};

/// Serve the Kubernetes API from memory on 127.0.0.1 (test fixture).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Where to write the admin kubeconfig.
    #[arg(long, default_value = "test-apiserver.kubeconfig")]
    kubeconfig_out: PathBuf,
    /// Service ClusterIP range.
    #[arg(long, default_value = "10.96.0.0/16")]
    service_cidr: String,
    /// Changes kept for watch resumption; older resourceVersions answer 410.
    #[arg(long, default_value_t = 5000)]
    history_window: usize,
    /// A second bearer token limited to one namespace, as TOKEN:NAMESPACE.
    #[arg(long)]
    namespaced_token: Option<String>,
    /// Do not run the controller-manager loops.
    #[arg(long)]
    no_controllers: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let namespaced_token = match &args.namespaced_token {
        Some(s) => {
            let (t, ns) = s
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("--namespaced-token must be TOKEN:NAMESPACE"))?;
            Some((t.to_string(), ns.to_string()))
        }
        None => None,
    };
    let config = ServerConfig {
        port: args.port,
        service_cidr: args.service_cidr,
        history_window: args.history_window,
        namespaced_token,
        controllers: !args.no_controllers,
        ..ServerConfig::default()
    };
    let server = TestApiServer::start(config).await?;
    server.write_kubeconfig(&args.kubeconfig_out)?;
    println!(
        "serving on {} (kubeconfig: {})",
        server.url(),
        args.kubeconfig_out.display()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
