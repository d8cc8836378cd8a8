//! A kubelet + scheduler simulator that drives any API server through a kube client.
//!
//! Tests (and vcsync's end-to-end suite) need a "host cluster" whose pods actually get
//! scheduled, run, and go away when deleted. This module stands in for kube-scheduler and a set
//! of kubelets, speaking only the public Kubernetes API, so it works the same against the
//! in-process test API server and against a real cluster:
//!
//! * keeps the configured [`SimNode`]s registered and `Ready` (heartbeats through `nodes/status`);
//! * binds pending pods through `pods/binding` (round robin or least loaded, honouring
//!   nodeSelector, required node affinity, taints/tolerations, cordons and capacity);
//! * moves bound pods to `Running` (or `Failed`/`Succeeded` on request) through `pods/status`,
//!   with a pod IP from the configured CIDR, container statuses and QoS class;
//! * finishes graceful deletions by deleting with `gracePeriodSeconds=0`, as a kubelet does once
//!   the containers are stopped;
//! * records `Scheduled`, `Pulled`, `Created`, `Started` and `Killing` events.
//!
//! API failures never stop it: each call is retried a bounded number of times, then logged,
//! counted in [`KubeletStats::api_errors`] and tried again on the next resync.
//!
//! On a real cluster the real scheduler may also place pods on the simulated nodes, and only pods
//! in the configured namespace are ever started; taint the nodes ([`SimNode::taint`]) and give
//! the test pods a toleration to keep the two apart.
//!
//! The pod loop is level-triggered: every watch event and every resync tick re-derives what a
//! pod still needs from its current state, so restarting the simulator (or losing a call) never
//! double-binds or skips a pod.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), vcsync_e2e::kubelet::KubeletError> {
//! use std::time::Duration;
//! use vcsync_e2e::kubelet::{Kubelet, KubeletConfig};
//! let kubelet = Kubelet::start(client, KubeletConfig::default().namespace("host-ns"))?;
//! kubelet.wait_nodes_ready(Duration::from_secs(10)).await?;
//! // ... create pods, watch them run ...
//! kubelet.stop().await?;
//! # Ok(()) }
//! ```

mod api;
pub mod api_server;
pub mod config;
pub mod events;
pub mod ipam;
mod nodes;
mod pods;
pub mod quantity;
pub mod resources;
pub mod scheduling;
pub mod status;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kube::Client;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use api_server::tls::{CaPem, ClientCertPem, generate_ca, generate_client_cert};
pub use api_server::{KubeletApiTls, logs};
pub use config::{
    FAIL_KEY, KubeletConfig, OutcomeHook, PodOutcome, RetryPolicy, SIMULATED_NODE_LABEL,
    SUCCEED_KEY, SchedulingStrategy, SimNode,
};
pub use ipam::{CidrError, IpAllocator};
pub use resources::{QosClass, qos_class};

/// Everything that can go wrong starting, waiting on or stopping the simulator.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// The configuration cannot work.
    #[error("invalid kubelet simulator config: {0}")]
    Config(String),
    /// The pod CIDR does not parse.
    #[error(transparent)]
    Cidr(#[from] CidrError),
    /// A wait ran out of time.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// How long we waited.
        waited: Duration,
        /// What we waited for.
        what: String,
    },
    /// The background task panicked or was cancelled.
    #[error("kubelet simulator task failed: {0}")]
    Task(String),
    /// The kubelet API could not be set up (certificates, binding the node address).
    #[error("kubelet API: {0}")]
    Api(String),
}

/// Counters of what the simulator did, for tests to poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KubeletStats {
    /// Successful `pods/binding` calls (a 409 "already bound" is not counted).
    pub bound: u64,
    /// Pods moved to Running.
    pub running: u64,
    /// Pods moved to Failed.
    pub failed: u64,
    /// Pods moved to Succeeded.
    pub succeeded: u64,
    /// Pods force-deleted after graceful deletion.
    pub deleted: u64,
    /// Times a pod was found unschedulable (a new message each time).
    pub unschedulable: u64,
    /// Events created.
    pub events_recorded: u64,
    /// Node status patches (registration and heartbeats).
    pub node_heartbeats: u64,
    /// API calls that failed for good, plus watch errors.
    pub api_errors: u64,
}

/// Something the simulator just did; see [`KubeletHandle::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimEvent {
    /// A node was created (or found) and got its first Ready status.
    NodeReady {
        /// Node name.
        node: String,
    },
    /// A pod was bound to a node.
    Bound {
        /// Pod namespace.
        namespace: String,
        /// Pod name.
        name: String,
        /// Target node.
        node: String,
    },
    /// A pod could not be placed.
    Unschedulable {
        /// Pod namespace.
        namespace: String,
        /// Pod name.
        name: String,
        /// The scheduler's message.
        message: String,
    },
    /// A pod's status was set to its outcome.
    Started {
        /// Pod namespace.
        namespace: String,
        /// Pod name.
        name: String,
        /// Running, Succeeded or Failed.
        outcome: PodOutcome,
        /// The pod IP it got.
        pod_ip: String,
    },
    /// A gracefully deleted pod was force-deleted.
    Deleted {
        /// Pod namespace.
        namespace: String,
        /// Pod name.
        name: String,
    },
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) bound: AtomicU64,
    pub(crate) running: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) succeeded: AtomicU64,
    pub(crate) deleted: AtomicU64,
    pub(crate) unschedulable: AtomicU64,
    pub(crate) events_recorded: AtomicU64,
    pub(crate) node_heartbeats: AtomicU64,
    pub(crate) api_errors: AtomicU64,
}

/// State shared between the handle and the background tasks.
pub(crate) struct Shared {
    pub(crate) counters: Counters,
    /// Bumped on every counter change so waiters wake up.
    pub(crate) generation: watch::Sender<u64>,
    pub(crate) nodes_ready: watch::Sender<bool>,
    pub(crate) events: broadcast::Sender<SimEvent>,
    /// `daemonEndpoints.kubeletEndpoint.Port` of each node, by index.
    pub(crate) kubelet_ports: Vec<u16>,
    /// What the kubelet API serves, when it runs.
    pub(crate) registry: Option<Arc<api_server::registry::PodRegistry>>,
}

impl Shared {
    pub(crate) fn bump(&self, counter: impl Fn(&Counters) -> &AtomicU64) {
        counter(&self.counters).fetch_add(1, Ordering::Relaxed);
        self.generation.send_modify(|g| *g += 1);
    }

    pub(crate) fn emit(&self, event: SimEvent) {
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }

    fn stats(&self) -> KubeletStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        KubeletStats {
            bound: get(&c.bound),
            running: get(&c.running),
            failed: get(&c.failed),
            succeeded: get(&c.succeeded),
            deleted: get(&c.deleted),
            unschedulable: get(&c.unschedulable),
            events_recorded: get(&c.events_recorded),
            node_heartbeats: get(&c.node_heartbeats),
            api_errors: get(&c.api_errors),
        }
    }
}

/// Entry point; see the module docs.
pub struct Kubelet;

impl Kubelet {
    /// Validates `config` and starts the simulator on the current tokio runtime.
    pub fn start(client: Client, config: KubeletConfig) -> Result<KubeletHandle, KubeletError> {
        validate(&config)?;
        let ipam = IpAllocator::new(&config.pod_cidr)?;
        let (generation, _) = watch::channel(0);
        let (nodes_ready, _) = watch::channel(false);
        let (events, _) = broadcast::channel(1024);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let api = if config.serve_api {
            let nodes: Vec<(String, String)> = (0..config.nodes.len())
                .map(|i| (config.nodes[i].name.clone(), config.node_ip(i)))
                .collect();
            let registry = Arc::new(api_server::registry::PodRegistry::new(
                nodes.iter().map(|(n, _)| n.clone()),
            ));
            Some(
                api_server::start(&nodes, &config.api_tls, registry, shutdown_rx.clone())
                    .map_err(KubeletError::Api)?,
            )
        } else {
            None
        };
        let kubelet_ports = config
            .nodes
            .iter()
            .map(|n| api.as_ref().map_or(10250, |a| a.addrs[&n.name].port()))
            .collect();
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            generation,
            nodes_ready,
            events,
            kubelet_ports,
            registry: api.as_ref().map(|a| a.registry.clone()),
        });
        let config = Arc::new(config);
        let runner = pods::Runner::new(client, config.clone(), shared.clone(), ipam);
        let task = tokio::spawn(runner.run(shutdown_rx));
        Ok(KubeletHandle {
            shutdown,
            task: Some(task),
            shared,
            config,
            api,
        })
    }
}

fn validate(config: &KubeletConfig) -> Result<(), KubeletError> {
    if config.nodes.is_empty() {
        return Err(KubeletError::Config("at least one node is required".into()));
    }
    let mut names = HashSet::new();
    for (i, node) in config.nodes.iter().enumerate() {
        if node.name.is_empty() {
            return Err(KubeletError::Config(format!("node {i} has an empty name")));
        }
        if !names.insert(node.name.as_str()) {
            return Err(KubeletError::Config(format!(
                "duplicate node name {:?}",
                node.name
            )));
        }
        for (what, q) in [("cpu", &node.cpu), ("memory", &node.memory)] {
            if quantity::parse_milli(q).is_none() {
                return Err(KubeletError::Config(format!(
                    "node {:?} has an invalid {what} quantity {q:?}",
                    node.name
                )));
            }
        }
        if config.node_ip(i).parse::<Ipv4Addr>().is_err() {
            return Err(KubeletError::Config(format!(
                "node {:?} has an invalid internal ip {:?}",
                node.name,
                config.node_ip(i)
            )));
        }
    }
    if config.resync_interval.is_zero() || config.heartbeat_interval.is_zero() {
        return Err(KubeletError::Config(
            "resync and heartbeat intervals must be non-zero".into(),
        ));
    }
    Ok(())
}

/// Controls a running simulator. Dropping it also stops the simulator (without waiting).
pub struct KubeletHandle {
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    config: Arc<KubeletConfig>,
    api: Option<api_server::ApiServers>,
}

impl std::fmt::Debug for KubeletHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletHandle")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl KubeletHandle {
    /// A snapshot of the counters.
    pub fn stats(&self) -> KubeletStats {
        self.shared.stats()
    }

    /// A stream of what the simulator does from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SimEvent> {
        self.shared.events.subscribe()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &KubeletConfig {
        &self.config
    }

    /// Names of the simulated nodes.
    pub fn node_names(&self) -> Vec<String> {
        self.config.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Where node `node` serves the kubelet API (its InternalIP and the port it reports);
    /// `None` for an unknown node or with [`KubeletConfig::serve_api`] off.
    pub fn api_addr(&self, node: &str) -> Option<std::net::SocketAddr> {
        self.api.as_ref()?.addrs.get(node).copied()
    }

    /// The CA certificate (PEM) that signed the nodes' kubelet serving certificates: the one
    /// given in [`KubeletApiTls::serving_ca_cert_pem`], or the simulator's own throw-away CA.
    pub fn api_ca_pem(&self) -> Option<&str> {
        self.api.as_ref().map(|a| a.ca_pem.as_str())
    }

    /// Waits until every node exists and has reported Ready once.
    pub async fn wait_nodes_ready(&self, timeout: Duration) -> Result<(), KubeletError> {
        let mut rx = self.shared.nodes_ready.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|ready| *ready))
            .await
            .map_err(|_| KubeletError::Timeout {
                waited: timeout,
                what: "nodes to be ready".into(),
            })?
            .map(|_| ())
            .map_err(|_| KubeletError::Task("stopped".into()))
    }

    /// Waits until `predicate` holds for the counters; returns the snapshot that satisfied it.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        predicate: impl Fn(&KubeletStats) -> bool,
    ) -> Result<KubeletStats, KubeletError> {
        let mut rx = self.shared.generation.subscribe();
        let wait = async {
            loop {
                let stats = self.stats();
                if predicate(&stats) {
                    return Ok(stats);
                }
                if rx.changed().await.is_err() {
                    return Err(KubeletError::Task("stopped".into()));
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| KubeletError::Timeout {
                waited: timeout,
                what: what.to_owned(),
            })?
    }

    /// Stops all simulator tasks and waits for them to finish.
    pub async fn stop(mut self) -> Result<(), KubeletError> {
        let _ = self.shutdown.send(true);
        match self.task.take() {
            Some(task) => task.await.map_err(|e| KubeletError::Task(e.to_string())),
            None => Ok(()),
        }
    }
}

impl Drop for KubeletHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::no_nodes(KubeletConfig::default().nodes([]), "at least one node")]
    #[case::dup(KubeletConfig::default().nodes([SimNode::new("a"), SimNode::new("a")]), "duplicate node name")]
    #[case::bad_cpu(KubeletConfig::default().nodes([SimNode::new("a").cpu("lots")]), "invalid cpu")]
    #[case::bad_ip(KubeletConfig::default().nodes([SimNode::new("a").internal_ip("x")]), "invalid internal ip")]
    fn config_validation(#[case] cfg: KubeletConfig, #[case] want: &str) {
        let err = validate(&cfg).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }

    #[test]
    fn default_config_is_valid() {
        validate(&KubeletConfig::default()).unwrap();
        assert!(IpAllocator::new(&KubeletConfig::default().pod_cidr).is_ok());
    }
}
