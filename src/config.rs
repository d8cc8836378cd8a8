//! Command line and environment configuration.
//!
//! [`Args`] is the one clap definition of every flag; each flag can also be
//! set through a `VCSYNC_*` environment variable (shown in `--help`), which is
//! how the Helm-less manifests in `manifests/` configure the pod. Values are
//! parsed into validated types right at the command line (a bad tenant name is
//! a usage error, exit code 2), and [`RunArgs::into_config`] turns them once
//! into the typed [`Config`] the rest of the program reads.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::names::{DnsLabel, DnsSubdomain};

/// vcsync: serves a tenant a virtual Kubernetes API backed by one host namespace.
#[derive(Debug, Parser)]
#[command(name = "vcsync", version, about, propagate_version = true)]
pub struct Args {
    /// Log line format.
    #[arg(
        long,
        env = "VCSYNC_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        global = true,
        display_order = 100
    )]
    pub log_format: LogFormat,

    /// Log filter in `RUST_LOG` syntax, e.g. `info` or `vcsync=debug,kube=warn`.
    #[arg(
        long,
        env = "VCSYNC_LOG_LEVEL",
        default_value = "info",
        global = true,
        display_order = 101
    )]
    pub log_level: LogFilter,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the syncer for one tenant.
    Run(Box<RunArgs>),
    /// Print a kubeconfig for a tenant's virtual API (not implemented yet).
    Kubeconfig,
    /// Work with sync policies.
    Policy {
        /// The policy subcommand.
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

/// `vcsync policy ...` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a sync policy file (not implemented yet).
    Check {
        /// The policy file to validate.
        file: PathBuf,
    },
}

/// Flags of `vcsync run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Tenant name (an RFC 1123 label); prefixes every object vcsync creates in the host namespace.
    #[arg(long, env = "VCSYNC_TENANT")]
    pub tenant: DnsLabel,

    /// Host namespace that receives the tenant's workloads (an RFC 1123 label).
    #[arg(long, env = "VCSYNC_HOST_NAMESPACE")]
    pub host_namespace: DnsLabel,

    /// Kubeconfig file for the tenant's virtual API server.
    #[arg(long, env = "VCSYNC_VIRTUAL_KUBECONFIG", value_name = "PATH")]
    pub virtual_kubeconfig: PathBuf,

    /// Kubeconfig file for the host cluster; when absent the in-cluster service account is used.
    #[arg(long, env = "VCSYNC_HOST_KUBECONFIG", value_name = "PATH")]
    pub host_kubeconfig: Option<PathBuf>,

    /// Host service account that mirrored pods run as.
    #[arg(
        long,
        env = "VCSYNC_WORKLOAD_SERVICE_ACCOUNT",
        default_value = "vcsync-workload"
    )]
    pub workload_service_account: DnsSubdomain,

    /// How many objects are reconciled in parallel.
    #[arg(long, env = "VCSYNC_CONCURRENCY", default_value_t = NonZeroUsize::new(8).expect("8 is not zero"))]
    pub concurrency: NonZeroUsize,

    /// Address for the metrics and health endpoint.
    #[arg(long, env = "VCSYNC_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Host Service (in the host namespace) that exposes the virtual API server to tenant pods;
    /// tenant pods reach `kubernetes.default` through it.
    #[arg(long, env = "VCSYNC_API_SERVICE", default_value = "vcsync-api")]
    pub api_service: DnsLabel,

    /// Virtual Service `namespace/name` of the tenant's DNS; ClusterFirst pods use its ClusterIP.
    #[arg(long, env = "VCSYNC_DNS_SERVICE", default_value = "kube-system/kube-dns", value_parser = parse_namespaced_name)]
    pub dns_service: (DnsLabel, DnsLabel),

    /// Cluster domain of the virtual cluster.
    #[arg(long, env = "VCSYNC_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: DnsSubdomain,

    /// Seconds to wait for each API server to answer the start-up reachability check.
    #[arg(
        long,
        env = "VCSYNC_API_TIMEOUT_SECONDS",
        value_name = "SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub api_timeout_seconds: u64,
}

/// Where the host API's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostApiSource {
    /// The pod's service account (`KUBERNETES_SERVICE_HOST` and the mounted token).
    InCluster,
    /// An explicit kubeconfig file.
    Kubeconfig(PathBuf),
}

/// Validated configuration of `vcsync run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Tenant name.
    pub tenant: DnsLabel,
    /// Host namespace that receives the tenant's objects.
    pub host_namespace: DnsLabel,
    /// Kubeconfig of the virtual API server.
    pub virtual_kubeconfig: PathBuf,
    /// How to reach the host API server.
    pub host_api: HostApiSource,
    /// Host service account that mirrored pods run as.
    pub workload_service_account: DnsSubdomain,
    /// Parallel reconciles.
    pub concurrency: NonZeroUsize,
    /// Metrics endpoint address.
    pub metrics_addr: SocketAddr,
    /// Deadline for one API server's answer to the start-up check.
    pub api_timeout: Duration,
    /// Host Service that exposes the virtual API to tenant pods.
    pub api_service: DnsLabel,
    /// Virtual Service of the tenant's DNS.
    pub dns_service: (DnsLabel, DnsLabel),
    /// Cluster domain of the virtual cluster.
    pub cluster_domain: DnsSubdomain,
}

/// Parse `namespace/name` into two DNS labels.
fn parse_namespaced_name(s: &str) -> Result<(DnsLabel, DnsLabel), String> {
    let (ns, name) = s
        .split_once('/')
        .ok_or_else(|| format!("expected namespace/name, got {s:?}"))?;
    let ns = DnsLabel::new(ns).map_err(|e| format!("namespace {ns:?}: {e}"))?;
    let name = DnsLabel::new(name).map_err(|e| format!("name {name:?}: {e}"))?;
    Ok((ns, name))
}

impl RunArgs {
    /// Converts the parsed flags into the typed [`Config`].
    ///
    /// Infallible because every field was validated when it was parsed.
    pub fn into_config(self) -> Config {
        Config {
            tenant: self.tenant,
            host_namespace: self.host_namespace,
            virtual_kubeconfig: self.virtual_kubeconfig,
            host_api: match self.host_kubeconfig {
                Some(path) => HostApiSource::Kubeconfig(path),
                None => HostApiSource::InCluster,
            },
            workload_service_account: self.workload_service_account,
            concurrency: self.concurrency,
            metrics_addr: self.metrics_addr,
            api_timeout: Duration::from_secs(self.api_timeout_seconds),
            api_service: self.api_service,
            dns_service: self.dns_service,
            cluster_domain: self.cluster_domain,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A log filter in `RUST_LOG` (`tracing_subscriber::EnvFilter`) syntax,
/// checked when parsed so a typo is a usage error instead of silently
/// logging nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter(String);

/// A log filter that `tracing_subscriber` cannot parse.
///
/// The parser's reason is part of the message (not a `source`) because clap
/// prints only the message of a value parser's error.
#[derive(Debug, thiserror::Error)]
#[error("invalid log filter {filter:?}: {reason}")]
pub struct ParseLogFilterError {
    filter: String,
    reason: tracing_subscriber::filter::ParseError,
}

impl LogFilter {
    /// The filter directives as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LogFilter {
    type Err = ParseLogFilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        tracing_subscriber::EnvFilter::builder()
            .parse(s)
            .map_err(|reason| ParseLogFilterError {
                filter: s.to_owned(),
                reason,
            })?;
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for LogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::error::ErrorKind;
    use rstest::rstest;

    /// The required flags of `run`; an `extra` flag of the same name replaces
    /// its value, since clap rejects a flag given twice.
    const REQUIRED: [(&str, &str); 3] = [
        ("--tenant", "tenant-a"),
        ("--host-namespace", "host-ns"),
        ("--virtual-kubeconfig", "/etc/vcsync/virtual.kubeconfig"),
    ];

    fn argv(global: &[&str], extra: &[&str]) -> Vec<String> {
        let mut argv: Vec<String> = ["vcsync"]
            .iter()
            .chain(global)
            .map(|s| s.to_string())
            .collect();
        argv.push("run".to_owned());
        for (flag, value) in REQUIRED {
            if !extra.contains(&flag) {
                argv.extend([flag.to_owned(), value.to_owned()]);
            }
        }
        argv.extend(extra.iter().map(|s| s.to_string()));
        argv
    }

    fn parse_run(extra: &[&str]) -> Result<(Args, Config), clap::Error> {
        let args = Args::try_parse_from(argv(&[], extra))?;
        let Command::Run(run) = &args.command else {
            panic!("expected run, got {:?}", args.command);
        };
        let config = run.clone().into_config();
        Ok((args, config))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let (args, config) = parse_run(&[]).unwrap();
        assert_eq!(args.log_format, LogFormat::Text);
        assert_eq!(args.log_level.as_str(), "info");
        assert_eq!(config.tenant.as_str(), "tenant-a");
        assert_eq!(config.host_namespace.as_str(), "host-ns");
        assert_eq!(
            config.virtual_kubeconfig,
            PathBuf::from("/etc/vcsync/virtual.kubeconfig")
        );
        assert_eq!(config.host_api, HostApiSource::InCluster);
        assert_eq!(config.workload_service_account.as_str(), "vcsync-workload");
        assert_eq!(config.concurrency.get(), 8);
        assert_eq!(config.metrics_addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.api_timeout, Duration::from_secs(10));
    }

    #[test]
    fn every_flag_overrides_its_default() {
        let (args, config) = parse_run(&[
            "--host-kubeconfig",
            "/h.kubeconfig",
            "--workload-service-account",
            "runner.sa",
            "--concurrency",
            "3",
            "--metrics-addr",
            "127.0.0.1:9090",
            "--api-timeout-seconds",
            "2",
            "--log-format",
            "json",
            "--log-level",
            "vcsync=debug,kube=warn",
        ])
        .unwrap();
        assert_eq!(args.log_format, LogFormat::Json);
        assert_eq!(args.log_level.as_str(), "vcsync=debug,kube=warn");
        assert_eq!(
            config.host_api,
            HostApiSource::Kubeconfig(PathBuf::from("/h.kubeconfig"))
        );
        assert_eq!(config.workload_service_account.as_str(), "runner.sa");
        assert_eq!(config.concurrency.get(), 3);
        assert_eq!(config.metrics_addr, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(config.api_timeout, Duration::from_secs(2));
    }

    #[test]
    fn global_flags_may_come_before_the_subcommand() {
        let args = Args::try_parse_from(argv(&["--log-format", "json"], &[])).unwrap();
        assert_eq!(args.log_format, LogFormat::Json);
    }

    #[rstest]
    #[case::tenant_uppercase(&["--tenant", "Tenant"], "--tenant", "lowercase RFC 1123 label")]
    #[case::tenant_underscore(&["--tenant", "a_b"], "--tenant", "lowercase RFC 1123 label")]
    #[case::tenant_too_long(&["--tenant", &"a".repeat(64)], "--tenant", "no more than 63")]
    #[case::tenant_empty(&["--tenant", ""], "--tenant", "must not be empty")]
    #[case::namespace_dot(&["--host-namespace", "a.b"], "--host-namespace", "RFC 1123 label")]
    #[case::service_account(&["--workload-service-account", "Bad"], "--workload-service-account", "RFC 1123 subdomain")]
    #[case::concurrency_zero(&["--concurrency", "0"], "--concurrency", "")]
    #[case::concurrency_text(&["--concurrency", "many"], "--concurrency", "")]
    #[case::metrics_addr(&["--metrics-addr", "8080"], "--metrics-addr", "")]
    #[case::timeout_zero(&["--api-timeout-seconds", "0"], "--api-timeout-seconds", "")]
    #[case::log_format(&["--log-format", "xml"], "--log-format", "")]
    #[case::log_level(&["--log-level", "vcsync=loud"], "--log-level", "invalid log filter")]
    fn invalid_values_are_usage_errors(
        #[case] extra: &[&str],
        #[case] flag: &str,
        #[case] reason: &str,
    ) {
        let err = parse_run(extra).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::ValueValidation | ErrorKind::InvalidValue
            ),
            "{:?}: {err}",
            err.kind()
        );
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        assert!(msg.contains(flag), "{msg}");
        assert!(msg.contains(reason), "{msg}");
    }

    #[rstest]
    #[case::tenant(&["vcsync", "run", "--host-namespace", "h", "--virtual-kubeconfig", "v"], "--tenant")]
    #[case::namespace(&["vcsync", "run", "--tenant", "t", "--virtual-kubeconfig", "v"], "--host-namespace")]
    #[case::virtual_kubeconfig(&["vcsync", "run", "--tenant", "t", "--host-namespace", "h"], "--virtual-kubeconfig")]
    fn missing_required_flags_are_named(#[case] argv: &[&str], #[case] flag: &str) {
        // A VCSYNC_* variable in the test's environment would satisfy the flag.
        if std::env::vars().any(|(k, _)| k.starts_with("VCSYNC_")) {
            return;
        }
        let err = Args::try_parse_from(argv).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        assert!(err.to_string().contains(flag), "{err}");
    }

    #[rstest]
    #[case::kubeconfig(&["vcsync", "kubeconfig"])]
    #[case::policy_check(&["vcsync", "policy", "check", "p.yaml"])]
    fn placeholder_subcommands_parse(#[case] argv: &[&str]) {
        let args = Args::try_parse_from(argv).unwrap();
        assert!(matches!(
            args.command,
            Command::Kubeconfig | Command::Policy { .. }
        ));
    }
}
