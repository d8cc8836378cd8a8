//! `bench`: how vcsync's cost grows with work, against the same workload sent straight to the
//! host API (the baseline, measured in the same run).
//!
//! ```text
//! cargo run --release -p vcsync-e2e --bin bench -- <scenario> [--runs 3] [options]
//! ```
//!
//! By default it starts two in-process test API servers (host and virtual) and the kubelet
//! simulator on the host, and runs the `vcsync` binary as shipped (the `dist` profile) between
//! them as a child process, so its memory and CPU come from `/proc` and its writes from the
//! servers' per-user counters.
//! With `--host-kubeconfig` and `--virtual-kubeconfig` it runs against real clusters instead
//! (write counts and fault injection need the test servers). Latencies come from the bench's own
//! watches, stamped with one monotonic clock when each event arrives.
//!
//! A benchmark, not a test: it prints a table and writes JSON, and fails only when the workload
//! could not run (a timeout, an API error it could not retry).
#![forbid(unsafe_code)]

mod cost;
mod env;
mod probe;
mod report;
mod scenarios;
mod track;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};

use env::EnvOptions;
use report::Report;
use scenarios::Opts;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// RSS, CPU and writes with 0 objects (default 60 s).
    Idle,
    /// Steady RSS at each `--pods` count (default 1000,10000) plus 1 service per 10 pods.
    Footprint,
    /// `--rate` creates per second for `--duration` (default 20/s for 60 s): both sync directions.
    Latency,
    /// `--pods` pods (default 2000,10000) as fast as possible: throughput against direct.
    Burst,
    /// Restart vcsync over the last `--pods` count (default 10000) of synced pods.
    Restart,
    /// Delete or edit 100 host pods out of band: time to repair.
    Drift,
    /// One namespace bursts the last `--pods` count (default 5000) while another adds 10 pods.
    Fairness,
    /// `--rate` changes per second for `--duration` (default 20/s for 30 min).
    Churn,
    /// A burst of the first `--pods` count (default 2000) through watch drops, 410s, 429/503
    /// and a host API restart.
    Faults,
    /// The last `--pods` count (default 1000) through a 40 s host API outage (longer than the
    /// lease) and a 10 s virtual API restart: recovery times and writes.
    Outages,
    /// `kubectl logs -f` first byte and `kubectl exec` round trip through vcsync's kubelet
    /// endpoint, against the same on the host pod.
    Access,
}

impl Scenario {
    fn default_pods(self) -> Vec<usize> {
        match self {
            Scenario::Footprint => vec![1000, 10_000],
            Scenario::Burst => vec![2000, 10_000],
            Scenario::Restart => vec![10_000],
            Scenario::Fairness => vec![5000],
            Scenario::Faults => vec![2000],
            Scenario::Outages => vec![1000],
            _ => vec![],
        }
    }

    fn default_duration(self) -> Duration {
        match self {
            Scenario::Churn => Duration::from_secs(30 * 60),
            _ => Duration::from_secs(60),
        }
    }

    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

#[derive(Debug, Parser)]
#[command(about = "Benchmark vcsync against the same workload sent straight to the host API")]
struct Args {
    /// The scenario to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Runs (each in a fresh environment); figures are reported as min / median / max.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Pod counts, comma-separated (the scenario's default when absent, see above).
    #[arg(long, value_delimiter = ',')]
    pods: Vec<usize>,
    /// Length of the timed workload, in seconds (idle, latency, churn).
    #[arg(long)]
    duration: Option<u64>,
    /// Changes per second (latency, churn).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Parallel creates during bursts.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Longest wait for anything to converge, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Host cluster kubeconfig (with --virtual-kubeconfig: real clusters instead of test servers).
    #[arg(long)]
    host_kubeconfig: Option<PathBuf>,
    /// Virtual cluster kubeconfig.
    #[arg(long)]
    virtual_kubeconfig: Option<PathBuf>,
    /// The vcsync binary (default: build and use target/dist/vcsync, the shipped profile).
    #[arg(long)]
    vcsync_bin: Option<PathBuf>,
    /// Simulated host nodes.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Pods that fit on each simulated node.
    #[arg(long, default_value_t = 1000)]
    pods_per_node: u32,
    /// vcsync's `--concurrency`.
    #[arg(long, default_value_t = 8)]
    vcsync_concurrency: usize,
    /// vcsync's log level (logs go to the run directory).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Where the JSON result is written (`<scenario>-<unix time>.json`).
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

/// Build the vcsync binary as shipped (a no-op when it is current) and return its path.
fn build_vcsync() -> anyhow::Result<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the e2e crate sits in the workspace")?
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = std::process::Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--profile",
            "dist",
            "-p",
            "vcsync",
            "--bin",
            "vcsync",
        ])
        .status()
        .context("running cargo build")?;
    anyhow::ensure!(status.success(), "building the vcsync binary failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("dist").join("vcsync"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let vcsync_bin = match &args.vcsync_bin {
        Some(p) => p.clone(),
        None => build_vcsync()?,
    };
    let opts = Opts {
        env: EnvOptions {
            host_kubeconfig: args.host_kubeconfig.clone(),
            virtual_kubeconfig: args.virtual_kubeconfig.clone(),
            vcsync_bin,
            nodes: args.nodes,
            pods_per_node: args.pods_per_node,
            vcsync_concurrency: args.vcsync_concurrency,
            log_level: args.log_level.clone(),
        },
        pods: if args.pods.is_empty() {
            args.scenario.default_pods()
        } else {
            args.pods.clone()
        },
        duration: args
            .duration
            .map_or_else(|| args.scenario.default_duration(), Duration::from_secs),
        rate: args.rate,
        concurrency: args.concurrency,
        timeout: Duration::from_secs(args.timeout),
    };
    let mode = if args.host_kubeconfig.is_some() {
        "real clusters"
    } else {
        "test API servers"
    };
    let name = args.scenario.name();
    let mut runs = Vec::new();
    for i in 1..=args.runs.max(1) {
        println!("{name}: run {i} of {}", args.runs.max(1));
        let run = match args.scenario {
            Scenario::Idle => scenarios::idle(&opts).await,
            Scenario::Footprint => scenarios::footprint(&opts).await,
            Scenario::Latency => scenarios::latency(&opts).await,
            Scenario::Burst => scenarios::burst(&opts).await,
            Scenario::Restart => scenarios::restart(&opts).await,
            Scenario::Drift => scenarios::drift(&opts).await,
            Scenario::Fairness => scenarios::fairness(&opts).await,
            Scenario::Churn => scenarios::churn(&opts).await,
            Scenario::Faults => scenarios::faults(&opts).await,
            Scenario::Outages => scenarios::outages(&opts).await,
            Scenario::Access => scenarios::access(&opts).await,
        }
        .with_context(|| format!("{name} run {i}"))?;
        for f in &run.figures {
            println!(
                "  {}: {:.2} {}{}",
                f.name,
                f.vcsync,
                f.unit,
                f.direct
                    .map(|d| format!(" (direct {d:.2})"))
                    .unwrap_or_default()
            );
        }
        runs.push(run);
    }
    let options = serde_json::json!({
        "pods": opts.pods,
        "duration_s": opts.duration.as_secs(),
        "rate": opts.rate,
        "concurrency": opts.concurrency,
        "nodes": args.nodes,
        "pods_per_node": args.pods_per_node,
        "vcsync_concurrency": args.vcsync_concurrency,
    });
    let report = Report::new(&name, mode, options, runs);
    print!("{}", report.table());
    let path = args.out.join(format!(
        "{name}-{}.json",
        jiff::Timestamp::now().as_second()
    ));
    report.write_json(&path)?;
    println!("JSON: {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }
}
