//! Configuration of the simulator: which nodes exist, which pods it looks after, and its timing.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Taint};

use super::api_server::KubeletApiTls;

/// Label (or annotation) that, set to `"true"` on a pod, makes it end up `Failed`.
pub const FAIL_KEY: &str = "kubelet-sim/fail";
/// Label (or annotation) that, set to `"true"` on a pod, makes it run to `Succeeded`.
pub const SUCCEED_KEY: &str = "kubelet-sim/succeed";
/// Label put on every node the simulator creates, so they can be told apart on a real cluster.
pub const SIMULATED_NODE_LABEL: &str = "kubelet-sim/simulated";

/// How the scheduler picks among the nodes a pod fits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchedulingStrategy {
    /// Cycle through the nodes in configuration order.
    #[default]
    RoundRobin,
    /// The feasible node with the fewest non-terminated pods (ties: configuration order).
    LeastLoaded,
}

/// What the kubelet makes of a pod once it has started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodOutcome {
    /// Containers keep running (`phase: Running`, ready).
    Running,
    /// Containers exit 0 (`phase: Succeeded`).
    Succeeded,
    /// Containers exit 1 (`phase: Failed`).
    Failed,
}

/// Decides a pod's outcome; `None` falls back to the label/annotation knobs.
pub type OutcomeHook = Arc<dyn Fn(&Pod) -> Option<PodOutcome> + Send + Sync>;

/// One simulated node.
#[derive(Debug, Clone, PartialEq)]
pub struct SimNode {
    /// `metadata.name` (also the `kubernetes.io/hostname` label and Hostname address).
    pub name: String,
    /// Extra labels on top of the standard `kubernetes.io/*` ones.
    pub labels: BTreeMap<String, String>,
    /// Capacity (and allocatable) cpu, as a quantity string.
    pub cpu: String,
    /// Capacity (and allocatable) memory, as a quantity string.
    pub memory: String,
    /// How many pods fit.
    pub pods: u32,
    /// InternalIP address; `None` gets `127.0.0.<10+index>`.
    pub internal_ip: Option<String>,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
}

impl SimNode {
    /// A node with 4 cpus, 16Gi memory and room for 110 pods.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            labels: BTreeMap::new(),
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: 110,
            internal_ip: None,
            taints: Vec::new(),
            unschedulable: false,
        }
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets cpu capacity.
    pub fn cpu(mut self, cpu: impl Into<String>) -> Self {
        self.cpu = cpu.into();
        self
    }

    /// Sets memory capacity.
    pub fn memory(mut self, memory: impl Into<String>) -> Self {
        self.memory = memory.into();
        self
    }

    /// Sets the pod capacity.
    pub fn pods(mut self, pods: u32) -> Self {
        self.pods = pods;
        self
    }

    /// Sets the InternalIP.
    pub fn internal_ip(mut self, ip: impl Into<String>) -> Self {
        self.internal_ip = Some(ip.into());
        self
    }

    /// Adds a taint (`effect` is `NoSchedule`, `PreferNoSchedule` or `NoExecute`).
    pub fn taint(
        mut self,
        key: impl Into<String>,
        value: Option<&str>,
        effect: impl Into<String>,
    ) -> Self {
        self.taints.push(Taint {
            key: key.into(),
            value: value.map(str::to_owned),
            effect: effect.into(),
            time_added: None,
        });
        self
    }

    /// The labels the node carries: the kubelet's standard ones plus [`SimNode::labels`]
    /// (which win on conflict).
    pub fn all_labels(&self) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = [
            ("beta.kubernetes.io/arch", "amd64"),
            ("beta.kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
            ("kubernetes.io/hostname", self.name.as_str()),
            ("kubernetes.io/os", "linux"),
            (SIMULATED_NODE_LABEL, "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        labels.extend(self.labels.clone());
        labels
    }

    /// Marks the node cordoned.
    pub fn unschedulable(mut self, yes: bool) -> Self {
        self.unschedulable = yes;
        self
    }
}

/// Bounded retries with exponential backoff for single API calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, including the first.
    pub attempts: u32,
    /// Delay before the second try.
    pub initial: Duration,
    /// Upper bound of a delay.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            initial: Duration::from_millis(50),
            max: Duration::from_secs(2),
        }
    }
}

/// Everything the simulator can be told. Build with `KubeletConfig::default()` and the
/// chained setters; every field is public too.
#[derive(Clone)]
pub struct KubeletConfig {
    /// Nodes to register and keep Ready.
    pub nodes: Vec<SimNode>,
    /// Namespace whose pods are handled; `None` means all namespaces.
    pub namespace: Option<String>,
    /// Only pods matching this label selector are handled.
    pub label_selector: Option<String>,
    /// Whether to act as the scheduler (bind pods without `spec.nodeName`).
    pub schedule: bool,
    /// `spec.schedulerName` values this scheduler answers to (empty name counts as default).
    pub scheduler_names: Vec<String>,
    /// Node choice among feasible nodes.
    pub strategy: SchedulingStrategy,
    /// Pod IPs come from here.
    pub pod_cidr: String,
    /// Wait between a pod being bound and it running (the pod shows `ContainerCreating` meanwhile
    /// when non-zero).
    pub start_delay: Duration,
    /// Wait between a pod getting `deletionTimestamp` and the kubelet force-deleting it.
    pub deletion_delay: Duration,
    /// How often node conditions' heartbeat times are refreshed.
    pub heartbeat_interval: Duration,
    /// How often pods that could not be handled (unschedulable, failed calls) are looked at again.
    pub resync_interval: Duration,
    /// Whether to record Scheduled/Pulled/Created/Started/Killing events.
    pub record_events: bool,
    /// Label/annotation key whose value `"true"` makes a pod fail.
    pub fail_key: String,
    /// Label/annotation key whose value `"true"` makes a pod succeed.
    pub succeed_key: String,
    /// Overrides the outcome per pod.
    pub outcome_hook: Option<OutcomeHook>,
    /// Retries for each API call.
    pub retry: RetryPolicy,
    /// `nodeInfo.kubeletVersion` (and kubeProxyVersion).
    pub kubelet_version: String,
    /// Whether each node serves the kubelet API (logs, exec, attach, port-forward) on its
    /// InternalIP; see [`crate::kubelet::api_server`].
    pub serve_api: bool,
    /// Certificates of the kubelet API.
    pub api_tls: KubeletApiTls,
}

impl fmt::Debug for KubeletConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeletConfig")
            .field("nodes", &self.nodes)
            .field("namespace", &self.namespace)
            .field("label_selector", &self.label_selector)
            .field("schedule", &self.schedule)
            .field("scheduler_names", &self.scheduler_names)
            .field("strategy", &self.strategy)
            .field("pod_cidr", &self.pod_cidr)
            .field("start_delay", &self.start_delay)
            .field("deletion_delay", &self.deletion_delay)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("resync_interval", &self.resync_interval)
            .field("record_events", &self.record_events)
            .field("fail_key", &self.fail_key)
            .field("succeed_key", &self.succeed_key)
            .field("outcome_hook", &self.outcome_hook.as_ref().map(|_| "<fn>"))
            .field("retry", &self.retry)
            .field("kubelet_version", &self.kubelet_version)
            .field("serve_api", &self.serve_api)
            .field("api_tls", &self.api_tls)
            .finish()
    }
}

impl Default for KubeletConfig {
    /// Two nodes (`sim-node-0`, `sim-node-1`), all namespaces, round robin, `10.244.0.0/16`,
    /// no delays, events on.
    fn default() -> Self {
        Self {
            nodes: vec![SimNode::new("sim-node-0"), SimNode::new("sim-node-1")],
            namespace: None,
            label_selector: None,
            schedule: true,
            scheduler_names: vec!["default-scheduler".into()],
            strategy: SchedulingStrategy::RoundRobin,
            pod_cidr: "10.244.0.0/16".into(),
            start_delay: Duration::ZERO,
            deletion_delay: Duration::ZERO,
            heartbeat_interval: Duration::from_secs(10),
            resync_interval: Duration::from_millis(500),
            record_events: true,
            fail_key: FAIL_KEY.into(),
            succeed_key: SUCCEED_KEY.into(),
            outcome_hook: None,
            retry: RetryPolicy::default(),
            kubelet_version: "v1.32.3".into(),
            serve_api: true,
            api_tls: KubeletApiTls::default(),
        }
    }
}

impl KubeletConfig {
    /// Replaces the node list.
    pub fn nodes(mut self, nodes: impl IntoIterator<Item = SimNode>) -> Self {
        self.nodes = nodes.into_iter().collect();
        self
    }

    /// Adds one node.
    pub fn node(mut self, node: SimNode) -> Self {
        self.nodes.push(node);
        self
    }

    /// Only handle pods in `namespace`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Handle pods in every namespace (the default).
    pub fn all_namespaces(mut self) -> Self {
        self.namespace = None;
        self
    }

    /// Only handle pods matching a label selector.
    pub fn label_selector(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    /// Turn the scheduler part on or off.
    pub fn schedule(mut self, yes: bool) -> Self {
        self.schedule = yes;
        self
    }

    /// Sets the node choice strategy.
    pub fn strategy(mut self, strategy: SchedulingStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets the pod CIDR.
    pub fn pod_cidr(mut self, cidr: impl Into<String>) -> Self {
        self.pod_cidr = cidr.into();
        self
    }

    /// Sets the bound-to-running delay.
    pub fn start_delay(mut self, delay: Duration) -> Self {
        self.start_delay = delay;
        self
    }

    /// Sets the graceful-deletion-to-force-delete delay.
    pub fn deletion_delay(mut self, delay: Duration) -> Self {
        self.deletion_delay = delay;
        self
    }

    /// Sets the node heartbeat period.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Sets the resync period.
    pub fn resync_interval(mut self, interval: Duration) -> Self {
        self.resync_interval = interval;
        self
    }

    /// Turns event recording on or off.
    pub fn record_events(mut self, yes: bool) -> Self {
        self.record_events = yes;
        self
    }

    /// Decides pod outcomes with a function.
    pub fn outcome_hook(
        mut self,
        hook: impl Fn(&Pod) -> Option<PodOutcome> + Send + Sync + 'static,
    ) -> Self {
        self.outcome_hook = Some(Arc::new(hook));
        self
    }

    /// Sets the per-call retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Turns the per-node kubelet API on (the default) or off. Off, nodes report the standard
    /// port 10250 and nothing listens. On, every node's InternalIP must be an address of this
    /// machine (the default `127.0.0.<10+i>` are), or [`Kubelet::start`](crate::kubelet::Kubelet::start)
    /// fails with `KubeletError::Api`.
    pub fn serve_api(mut self, yes: bool) -> Self {
        self.serve_api = yes;
        self
    }

    /// Sets the kubelet API's certificates (serving CA, client CA).
    pub fn api_tls(mut self, tls: KubeletApiTls) -> Self {
        self.api_tls = tls;
        self
    }

    /// The outcome for `pod`: the hook first, then the fail/succeed knobs, else Running.
    pub fn outcome_for(&self, pod: &Pod) -> PodOutcome {
        if let Some(outcome) = self.outcome_hook.as_ref().and_then(|hook| hook(pod)) {
            return outcome;
        }
        let flag = |key: &str| {
            let meta = &pod.metadata;
            [meta.labels.as_ref(), meta.annotations.as_ref()]
                .into_iter()
                .flatten()
                .any(|m| m.get(key).is_some_and(|v| v.eq_ignore_ascii_case("true")))
        };
        if flag(&self.fail_key) {
            PodOutcome::Failed
        } else if flag(&self.succeed_key) {
            PodOutcome::Succeeded
        } else {
            PodOutcome::Running
        }
    }

    /// Whether this scheduler should bind a pod asking for `scheduler_name`.
    pub fn answers_to(&self, scheduler_name: Option<&str>) -> bool {
        let name = scheduler_name
            .filter(|n| !n.is_empty())
            .unwrap_or("default-scheduler");
        self.scheduler_names.iter().any(|n| n == name)
    }

    /// The InternalIP of the node at `index`.
    pub fn node_ip(&self, index: usize) -> String {
        match self.nodes.get(index).and_then(|n| n.internal_ip.clone()) {
            Some(ip) => ip,
            None => format!("127.0.0.{}", 10 + index),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use rstest::rstest;

    fn pod_with(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Pod {
        let map = |p: &[(&str, &str)]| {
            Some(
                p.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        Pod {
            metadata: ObjectMeta {
                labels: map(labels),
                annotations: map(annotations),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[rstest]
    #[case(&[], &[], PodOutcome::Running)]
    #[case(&[(FAIL_KEY, "true")], &[], PodOutcome::Failed)]
    #[case(&[], &[(FAIL_KEY, "True")], PodOutcome::Failed)]
    #[case(&[(FAIL_KEY, "false")], &[], PodOutcome::Running)]
    #[case(&[], &[(SUCCEED_KEY, "true")], PodOutcome::Succeeded)]
    fn outcome_knobs(
        #[case] labels: &[(&str, &str)],
        #[case] annotations: &[(&str, &str)],
        #[case] want: PodOutcome,
    ) {
        let cfg = KubeletConfig::default();
        assert_eq!(cfg.outcome_for(&pod_with(labels, annotations)), want);
    }

    #[test]
    fn hook_wins_over_knobs() {
        let cfg = KubeletConfig::default().outcome_hook(|_| Some(PodOutcome::Succeeded));
        assert_eq!(
            cfg.outcome_for(&pod_with(&[(FAIL_KEY, "true")], &[])),
            PodOutcome::Succeeded
        );
    }

    #[rstest]
    #[case(None, true)]
    #[case(Some(""), true)]
    #[case(Some("default-scheduler"), true)]
    #[case(Some("volcano"), false)]
    fn scheduler_names(#[case] name: Option<&str>, #[case] want: bool) {
        assert_eq!(KubeletConfig::default().answers_to(name), want);
    }

    #[test]
    fn node_ips_default_by_index() {
        let cfg = KubeletConfig::default().nodes([
            SimNode::new("a"),
            SimNode::new("b").internal_ip("127.0.0.99"),
        ]);
        assert_eq!(cfg.node_ip(0), "127.0.0.10");
        assert_eq!(cfg.node_ip(1), "127.0.0.99");
    }
}
