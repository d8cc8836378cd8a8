//! Command line and environment configuration.
//!
//! [`Args`] is the one clap definition of every flag; each flag can also be
//! set through a `VCSYNC_*` environment variable (shown in `--help`), which is
//! how the Helm-less manifests in `manifests/` configure the pod. Values are
//! parsed into validated types right at the command line (a bad tenant name is
//! a usage error, exit code 2), and [`RunArgs::into_config`] turns them once
//! into the typed [`Config`] the rest of the program reads.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
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
    /// Print the tenant's kubeconfig for the virtual API (the content of the kubeconfig Secret).
    Kubeconfig(Box<KubeconfigArgs>),
    /// Work with isolation policies.
    Policy {
        /// The policy subcommand.
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

/// `vcsync policy ...` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate an isolation policy file and print the effective policy (defaults filled in).
    Check {
        /// The policy file to validate.
        file: PathBuf,
    },
}

/// How the tenant kubeconfig is made (shared by `vcsync run` and `vcsync kubeconfig`).
#[derive(Debug, Clone, clap::Args)]
pub struct TenantKubeconfigFlags {
    /// Server URL in the tenant kubeconfig (an https:// URL); default the in-cluster address
    /// of --api-service, https://<api-service>.<host-namespace>.svc:443.
    #[arg(long, env = "VCSYNC_KUBECONFIG_SERVER", value_name = "URL")]
    pub kubeconfig_server: Option<crate::kubeconfig::ServerUrl>,

    /// Kubeconfig whose current user (client certificate or token) is the tenant's identity;
    /// default the user of --virtual-kubeconfig.
    #[arg(long, env = "VCSYNC_KUBECONFIG_CREDENTIALS", value_name = "PATH")]
    pub kubeconfig_credentials: Option<PathBuf>,
}

impl TenantKubeconfigFlags {
    /// What the tenant kubeconfig is made from.
    pub fn source(
        &self,
        tenant: &DnsLabel,
        host_namespace: &DnsLabel,
        api_service: &DnsLabel,
        virtual_kubeconfig: &std::path::Path,
    ) -> crate::kubeconfig::TenantKubeconfigSource {
        crate::kubeconfig::TenantKubeconfigSource {
            tenant: tenant.to_string(),
            server: self.kubeconfig_server.clone().unwrap_or_else(|| {
                crate::kubeconfig::ServerUrl::in_cluster(
                    api_service.as_str(),
                    host_namespace.as_str(),
                )
            }),
            virtual_kubeconfig: virtual_kubeconfig.to_owned(),
            credentials: self.kubeconfig_credentials.clone(),
        }
    }
}

/// Flags of `vcsync kubeconfig`: the same names and variables as `vcsync run`'s, so that
/// `kubectl exec <vcsync pod> -- vcsync kubeconfig` needs none.
#[derive(Debug, Clone, clap::Args)]
pub struct KubeconfigArgs {
    /// Tenant name (an RFC 1123 label); names the kubeconfig's cluster, context and user.
    #[arg(long, env = "VCSYNC_TENANT")]
    pub tenant: DnsLabel,

    /// Host namespace of the tenant (an RFC 1123 label); part of the default server URL.
    #[arg(long, env = "VCSYNC_HOST_NAMESPACE")]
    pub host_namespace: DnsLabel,

    /// Kubeconfig file for the tenant's virtual API server (its CA, and its user unless
    /// --kubeconfig-credentials).
    #[arg(long, env = "VCSYNC_VIRTUAL_KUBECONFIG", value_name = "PATH")]
    pub virtual_kubeconfig: PathBuf,

    /// Host Service (in the host namespace) that exposes the virtual API server.
    #[arg(long, env = "VCSYNC_API_SERVICE", default_value = "vcsync-api")]
    pub api_service: DnsLabel,

    /// Server and credentials of the tenant kubeconfig.
    #[command(flatten)]
    pub kubeconfig: TenantKubeconfigFlags,
}

impl KubeconfigArgs {
    /// What the tenant kubeconfig is made from.
    pub fn source(&self) -> crate::kubeconfig::TenantKubeconfigSource {
        self.kubeconfig.source(
            &self.tenant,
            &self.host_namespace,
            &self.api_service,
            &self.virtual_kubeconfig,
        )
    }
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

    /// Host Secret (in the host namespace) that vcsync keeps holding the tenant's kubeconfig,
    /// under the key `kubeconfig`.
    #[arg(
        long,
        env = "VCSYNC_KUBECONFIG_SECRET",
        default_value = "vcsync-kubeconfig"
    )]
    pub kubeconfig_secret: DnsSubdomain,

    /// Server and credentials of the tenant kubeconfig.
    #[command(flatten)]
    pub tenant_kubeconfig: TenantKubeconfigFlags,

    /// Seconds to wait for each API server to answer the start-up reachability check.
    #[arg(
        long,
        env = "VCSYNC_API_TIMEOUT_SECONDS",
        value_name = "SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub api_timeout_seconds: u64,

    /// Isolation policy file (YAML, see `vcsync policy check`); absent means the secure
    /// default policy.
    #[arg(long, env = "VCSYNC_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// The host cluster's Service CIDRs (comma-separated). No endpoint address inside them is
    /// synced; vcsync adds what it learns itself (a dry-run allocation probe, the ServiceCIDR
    /// API and the `kubernetes` Service where readable, the ClusterIPs it observes).
    #[arg(
        long = "host-service-cidr",
        env = "VCSYNC_HOST_SERVICE_CIDR",
        value_name = "CIDRS",
        value_delimiter = ','
    )]
    pub host_service_cidrs: Vec<crate::policy::net::Cidr>,

    /// Refuse to start (exit 1) when the host namespace lacks a guardrail: Pod Security labels,
    /// a ResourceQuota, a LimitRange or a default-deny NetworkPolicy.
    #[arg(long, env = "VCSYNC_REQUIRE_GUARDRAILS")]
    pub require_guardrails: bool,

    /// Seconds between checks of the host namespace guardrails (for tests).
    #[arg(
        long,
        env = "VCSYNC_GUARDRAILS_INTERVAL_SECONDS",
        value_name = "SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=86400),
        hide = true
    )]
    pub guardrails_interval_seconds: u64,

    /// Leader election.
    #[command(flatten)]
    pub leader_election: LeaderElectionFlags,

    /// The kubelet API of the virtual nodes.
    #[command(flatten)]
    pub kubelet: KubeletFlags,

    /// The virtual cluster's metrics.k8s.io API.
    #[command(flatten)]
    pub metrics_api: MetricsApiFlags,
}

/// The `metrics.k8s.io` API vcsync serves to the virtual API server (`kubectl top pods`), see
/// [`crate::metrics_api`].
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsApiFlags {
    /// Port of the metrics API; without it the metrics API is not served.
    #[arg(
        long = "metrics-api-port",
        env = "VCSYNC_METRICS_API_PORT",
        value_name = "PORT"
    )]
    pub metrics_api_port: Option<u16>,

    /// Address the metrics API listens on (the manifests pass the pod IP from the downward
    /// API: the address the virtual API server's aggregator dials).
    #[arg(
        long = "metrics-api-address",
        env = "VCSYNC_METRICS_API_ADDRESS",
        value_name = "IP",
        default_value = "127.0.0.1"
    )]
    pub metrics_api_address: IpAddr,

    /// CA bundle (PEM) of the front-proxy client certificate the virtual API server's
    /// aggregator calls with (k3s: <data-dir>/server/tls/request-header-ca.crt). Without it
    /// every request is refused.
    #[arg(
        long = "metrics-api-client-ca",
        env = "VCSYNC_METRICS_API_CLIENT_CA",
        value_name = "FILE"
    )]
    pub metrics_api_client_ca: Option<PathBuf>,

    /// Common names of the front-proxy client certificates allowed (k3s: system:auth-proxy,
    /// kubeadm: front-proxy-client).
    #[arg(
        long = "metrics-api-client-names",
        env = "VCSYNC_METRICS_API_CLIENT_NAMES",
        value_name = "NAMES",
        value_delimiter = ',',
        default_value = "system:auth-proxy,front-proxy-client"
    )]
    pub metrics_api_client_names: Vec<String>,
}

impl MetricsApiFlags {
    /// The typed listener settings; `None` when the metrics API is not served.
    pub fn settings(
        self,
        serving: crate::kubelet::ServingCert,
    ) -> Option<crate::metrics_api::MetricsApiConfig> {
        let port = self.metrics_api_port?;
        Some(crate::metrics_api::config(
            self.metrics_api_address,
            port,
            self.metrics_api_client_ca,
            self.metrics_api_client_names,
            serving,
        ))
    }
}

/// The kubelet endpoint vcsync serves for its virtual nodes (`kubectl logs`, `exec`,
/// `attach`, `port-forward`), see [`crate::kubelet`].
#[derive(Debug, Clone, clap::Args)]
pub struct KubeletFlags {
    /// Address the virtual nodes advertise as their InternalIP: where the virtual API server
    /// dials their kubelet. The shipped manifests run k3s in vcsync's pod, so loopback.
    #[arg(
        long = "kubelet-address",
        env = "VCSYNC_KUBELET_ADDRESS",
        value_name = "IP",
        default_value = "127.0.0.1"
    )]
    pub address: IpAddr,

    /// Port of the kubelet endpoint, advertised as the virtual nodes'
    /// daemonEndpoints.kubeletEndpoint.Port (0: any free port).
    #[arg(
        long = "kubelet-port",
        env = "VCSYNC_KUBELET_PORT",
        value_name = "PORT",
        default_value_t = 10250
    )]
    pub port: u16,

    /// Address to listen on for the kubelet endpoint [default: --kubelet-address].
    #[arg(
        long = "kubelet-bind-address",
        env = "VCSYNC_KUBELET_BIND_ADDRESS",
        value_name = "IP"
    )]
    pub bind_address: Option<IpAddr>,

    /// CA bundle (PEM) whose client certificates may call the kubelet endpoint: the virtual
    /// control plane's client CA (k3s: <data-dir>/server/tls/client-ca.crt). Without it every
    /// request is refused.
    #[arg(
        long = "kubelet-client-ca",
        env = "VCSYNC_KUBELET_CLIENT_CA",
        value_name = "FILE"
    )]
    pub client_ca: Option<PathBuf>,

    /// Common names of the client certificates allowed to call (the virtual API server's
    /// kubelet client identity; k3s: system:apiserver, kubeadm: kube-apiserver-kubelet-client).
    #[arg(
        long = "kubelet-client-names",
        env = "VCSYNC_KUBELET_CLIENT_NAMES",
        value_name = "NAMES",
        value_delimiter = ',',
        default_value = "system:apiserver,kube-apiserver-kubelet-client"
    )]
    pub client_names: Vec<String>,

    /// CA certificate (PEM) that signs the kubelet serving certificate vcsync mints at
    /// start-up: the one the virtual API server verifies kubelets against (k3s:
    /// <data-dir>/server/tls/server-ca.crt).
    #[arg(
        long = "kubelet-serving-ca-cert",
        env = "VCSYNC_KUBELET_SERVING_CA_CERT",
        value_name = "FILE",
        requires = "serving_ca_key",
        conflicts_with = "tls_cert"
    )]
    pub serving_ca_cert: Option<PathBuf>,

    /// Private key (PEM) of --kubelet-serving-ca-cert (k3s: <data-dir>/server/tls/server-ca.key).
    #[arg(
        long = "kubelet-serving-ca-key",
        env = "VCSYNC_KUBELET_SERVING_CA_KEY",
        value_name = "FILE",
        requires = "serving_ca_cert"
    )]
    pub serving_ca_key: Option<PathBuf>,

    /// A ready serving certificate (PEM chain) for the kubelet endpoint, instead of minting
    /// one; with neither, a self-signed certificate is served.
    #[arg(
        long = "kubelet-tls-cert",
        env = "VCSYNC_KUBELET_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --kubelet-tls-cert.
    #[arg(
        long = "kubelet-tls-key",
        env = "VCSYNC_KUBELET_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
}

impl KubeletFlags {
    /// The typed endpoint settings.
    pub fn endpoint(self) -> crate::kubelet::EndpointConfig {
        let serving = match (
            self.tls_cert,
            self.tls_key,
            self.serving_ca_cert,
            self.serving_ca_key,
        ) {
            (Some(cert), Some(key), _, _) => crate::kubelet::ServingCert::Files { cert, key },
            (_, _, Some(ca_cert), Some(ca_key)) => {
                crate::kubelet::ServingCert::SignedBy { ca_cert, ca_key }
            }
            _ => crate::kubelet::ServingCert::SelfSigned,
        };
        crate::kubelet::EndpointConfig {
            advertise: self.address,
            bind: SocketAddr::new(self.bind_address.unwrap_or(self.address), self.port),
            client_ca: self.client_ca,
            client_names: self
                .client_names
                .into_iter()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
            serving,
        }
    }
}

/// Leader election flags of `vcsync run`.
#[derive(Debug, Clone, clap::Args)]
pub struct LeaderElectionFlags {
    /// Run only while holding the Lease in the host namespace, so several replicas can run
    /// with one writing; `--leader-elect=false` runs at once (exactly one replica!).
    #[arg(
        long,
        env = "VCSYNC_LEADER_ELECT",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub leader_elect: bool,

    /// Name of the coordination.k8s.io/v1 Lease in the host namespace; default `vcsync-<tenant>`.
    #[arg(long, env = "VCSYNC_LEASE_NAME", value_name = "NAME")]
    pub lease_name: Option<DnsSubdomain>,

    /// Seconds a Lease that stopped being renewed stays valid: followers take over after it.
    #[arg(
        long,
        env = "VCSYNC_LEASE_DURATION_SECONDS",
        value_name = "SECONDS",
        default_value_t = 15,
        value_parser = clap::value_parser!(u64).range(2..=3600)
    )]
    pub lease_duration_seconds: u64,

    /// Seconds the leader keeps failing to renew before it stops (less than the lease duration).
    #[arg(
        long,
        env = "VCSYNC_RENEW_DEADLINE_SECONDS",
        value_name = "SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub renew_deadline_seconds: u64,

    /// Seconds between attempts to acquire or renew the Lease (less than the renew deadline).
    #[arg(
        long,
        env = "VCSYNC_RETRY_PERIOD_SECONDS",
        value_name = "SECONDS",
        default_value_t = 2,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub retry_period_seconds: u64,

    /// Identity written into the Lease; default `$POD_NAME`, else `<hostname>_<pid>`.
    #[arg(long, env = "VCSYNC_POD_NAME", value_name = "NAME")]
    pub pod_name: Option<String>,
}

impl LeaderElectionFlags {
    /// The election settings for `tenant` in `host_namespace`.
    pub fn settings(&self, tenant: &DnsLabel, host_namespace: &DnsLabel) -> LeaderElection {
        let identity = self
            .pod_name
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(crate::leader::default_identity);
        LeaderElection {
            enabled: self.leader_elect,
            lease: crate::leader::LeaseConfig {
                namespace: host_namespace.to_string(),
                name: self
                    .lease_name
                    .as_ref()
                    .map_or_else(|| format!("vcsync-{tenant}"), ToString::to_string),
                identity,
                lease_duration: Duration::from_secs(self.lease_duration_seconds),
                renew_deadline: Duration::from_secs(self.renew_deadline_seconds),
                retry_period: Duration::from_secs(self.retry_period_seconds),
            },
        }
    }
}

/// Leader election settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElection {
    /// Whether to elect at all.
    pub enabled: bool,
    /// The Lease and its timings.
    pub lease: crate::leader::LeaseConfig,
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
    /// Leader election.
    pub leader_election: LeaderElection,
    /// Host Secret holding the tenant kubeconfig.
    pub kubeconfig_secret: DnsSubdomain,
    /// What the tenant kubeconfig is made from.
    pub tenant_kubeconfig: crate::kubeconfig::TenantKubeconfigSource,
    /// Isolation policy file; `None`: the default policy.
    pub policy: Option<PathBuf>,
    /// Host Service CIDRs given by the operator.
    pub host_service_cidrs: Vec<crate::policy::net::Cidr>,
    /// Refuse to start when a host namespace guardrail is missing.
    pub require_guardrails: bool,
    /// Time between guardrail checks after start-up.
    pub guardrails_interval: Duration,
    /// The kubelet endpoint of the virtual nodes.
    pub kubelet: crate::kubelet::EndpointConfig,
    /// The metrics API; `None`: not served.
    pub metrics_api: Option<crate::metrics_api::MetricsApiConfig>,
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
        let tenant_kubeconfig = self.tenant_kubeconfig.source(
            &self.tenant,
            &self.host_namespace,
            &self.api_service,
            &self.virtual_kubeconfig,
        );
        let leader_election = self
            .leader_election
            .settings(&self.tenant, &self.host_namespace);
        let kubelet = self.kubelet.endpoint();
        let metrics_api = self.metrics_api.settings(kubelet.serving.clone());
        Config {
            leader_election,
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
            kubeconfig_secret: self.kubeconfig_secret,
            tenant_kubeconfig,
            policy: self.policy,
            host_service_cidrs: self.host_service_cidrs,
            require_guardrails: self.require_guardrails,
            guardrails_interval: Duration::from_secs(self.guardrails_interval_seconds),
            kubelet,
            metrics_api,
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
        assert!(!config.require_guardrails);
        assert_eq!(config.guardrails_interval, Duration::from_secs(60));
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
            "--require-guardrails",
            "--guardrails-interval-seconds",
            "5",
        ])
        .unwrap();
        assert!(config.require_guardrails);
        assert_eq!(config.guardrails_interval, Duration::from_secs(5));
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
    fn leader_election_defaults_and_overrides() {
        let (_, config) = parse_run(&["--pod-name", "vcsync-0"]).unwrap();
        let le = &config.leader_election;
        assert!(le.enabled);
        assert_eq!(le.lease.name, "vcsync-tenant-a");
        assert_eq!(le.lease.namespace, "host-ns");
        assert_eq!(le.lease.identity, "vcsync-0");
        assert_eq!(le.lease.lease_duration, Duration::from_secs(15));
        assert_eq!(le.lease.renew_deadline, Duration::from_secs(10));
        assert_eq!(le.lease.retry_period, Duration::from_secs(2));
        le.lease.check_timings().unwrap();

        let (_, config) = parse_run(&[
            "--leader-elect=false",
            "--lease-name",
            "shared.lock",
            "--lease-duration-seconds",
            "6",
            "--renew-deadline-seconds",
            "4",
            "--retry-period-seconds",
            "1",
        ])
        .unwrap();
        let le = &config.leader_election;
        assert!(!le.enabled);
        assert_eq!(le.lease.name, "shared.lock");
        assert_eq!(le.lease.lease_duration, Duration::from_secs(6));
        assert_eq!(le.lease.renew_deadline, Duration::from_secs(4));
        assert_eq!(le.lease.retry_period, Duration::from_secs(1));
        assert!(!le.lease.identity.is_empty());
    }

    #[rstest]
    #[case::lease_name(&["--lease-name", "Bad_Name"], "--lease-name")]
    #[case::leader_elect(&["--leader-elect", "maybe"], "--leader-elect")]
    #[case::lease_duration(&["--lease-duration-seconds", "1"], "--lease-duration-seconds")]
    #[case::retry_zero(&["--retry-period-seconds", "0"], "--retry-period-seconds")]
    fn invalid_leader_election_flags_are_usage_errors(#[case] extra: &[&str], #[case] flag: &str) {
        let err = parse_run(extra).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains(flag), "{err}");
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
    #[case::policy_check(&["vcsync", "policy", "check", "p.yaml"])]
    fn placeholder_subcommands_parse(#[case] argv: &[&str]) {
        let args = Args::try_parse_from(argv).unwrap();
        assert!(matches!(args.command, Command::Policy { .. }));
    }

    #[test]
    fn tenant_kubeconfig_defaults_to_the_in_cluster_service() {
        let (_, config) = parse_run(&["--api-service", "api"]).unwrap();
        assert_eq!(config.kubeconfig_secret.as_str(), "vcsync-kubeconfig");
        let source = &config.tenant_kubeconfig;
        assert_eq!(source.server.as_str(), "https://api.host-ns.svc:443");
        assert_eq!(source.tenant, "tenant-a");
        assert_eq!(source.credentials, None);
        assert_eq!(
            source.virtual_kubeconfig,
            PathBuf::from("/etc/vcsync/virtual.kubeconfig")
        );
    }

    #[test]
    fn tenant_kubeconfig_flags_override() {
        let (_, config) = parse_run(&[
            "--kubeconfig-secret",
            "tenant.kubeconfig",
            "--kubeconfig-server",
            "https://api.tenant-a.example.com/",
            "--kubeconfig-credentials",
            "/etc/vcsync/tenant-admin.kubeconfig",
        ])
        .unwrap();
        assert_eq!(config.kubeconfig_secret.as_str(), "tenant.kubeconfig");
        let source = &config.tenant_kubeconfig;
        assert_eq!(source.server.as_str(), "https://api.tenant-a.example.com");
        assert_eq!(
            source.credentials,
            Some(PathBuf::from("/etc/vcsync/tenant-admin.kubeconfig"))
        );
        let err = parse_run(&["--kubeconfig-server", "http://api"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("https://"), "{err}");
    }

    #[test]
    fn kubeconfig_subcommand_takes_the_run_flags_it_needs() {
        let args = Args::try_parse_from([
            "vcsync",
            "kubeconfig",
            "--tenant",
            "tenant-a",
            "--host-namespace",
            "vc-tenant-a",
            "--virtual-kubeconfig",
            "/v.kubeconfig",
        ])
        .unwrap();
        let Command::Kubeconfig(k) = args.command else {
            panic!("expected kubeconfig");
        };
        let source = k.source();
        assert_eq!(
            source.server.as_str(),
            "https://vcsync-api.vc-tenant-a.svc:443"
        );
        assert_eq!(source.virtual_kubeconfig, PathBuf::from("/v.kubeconfig"));
    }
}
