//! Virtual Nodes for the host nodes that run this tenant's pods.
//!
//! Every host node named in the `spec.nodeName` of one of this tenant's host pods (terminating
//! and finished pods included: their virtual pods still point at the node) appears in the
//! virtual cluster as a Node of the same name, and is deleted once no such pod is left. The
//! virtual node shows the host node's conditions, capacity, allocatable and node info (without
//! machine, system and boot ids), and only the labels in [`ALLOWED_LABELS`]: other host labels
//! describe the provider's infrastructure, not the tenant's.
//!
//! **Addresses.** A virtual node's only address is vcsync's kubelet endpoint
//! ([`crate::kubelet`]): an `InternalIP` of `--kubelet-address`, with `--kubelet-port` as
//! `daemonEndpoints.kubeletEndpoint.Port`. The virtual API server dials a node's address for
//! logs, exec and port-forward, so a host node's address there would make the tenant's control
//! plane call the host's kubelets. No `Hostname` address either: kube-apiserver prefers it and
//! it would not resolve. The host node's IP stays visible where a pod sees it on a real cluster:
//! the pod's `status.hostIP`.
//!
//! **Permissions.** Reading host Nodes needs a cluster-scoped `get nodes` grant on the host,
//! which a namespace-scoped install may not have; it is optional. When the GET answers 403 (or
//! 404), the node is synthesized: `Ready=True` (reason [`ASSUMED_READY_REASON`]), the `hostIP`
//! of one of the tenant's pods on it as InternalIP, a `kubernetes.io/hostname` label equal to its
//! name, and no capacity, allocatable or node info. After a 403 the host is not asked again for
//! [`FORBIDDEN_RETRY`].
//!
//! **Ownership.** Virtual nodes vcsync creates carry `vcsync.io/managed-by=<tenant>`; only nodes
//! with that label are ever updated or deleted (deletes carry a uid precondition). A virtual node
//! of the same name without the label is left alone and reported.
//!
//! **Writes.** The desired node is compared with the cached virtual node field by field (only
//! the fields vcsync sets: the API server defaults the rest); nothing is written when they match,
//! so a restart in sync writes nothing. The conditions' `lastHeartbeatTime` is refreshed when the
//! conditions change or the last heartbeat is [`HEARTBEAT`] old, so a node-lifecycle controller
//! in the virtual control plane keeps seeing a live node. Status goes through `nodes/status`
//! (a replace carrying the cached resourceVersion); labels through a merge patch of only the
//! label keys vcsync owns, so labels others add are kept.
//!
//! Host node reads are cached for [`HEARTBEAT`]; a failed write is retried with the shared
//! per-object backoff (403/422 and ownership conflicts after [`REFUSED_RETRY`]) on the next
//! [`TICK`], never in a hot loop.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::{Shared, Stop, cached_stream};
use crate::cache::HostPod;
use crate::markers;

/// Host node labels that are copied to virtual nodes; every other label stays on the host.
pub const ALLOWED_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];

/// Condition heartbeats are refreshed at most this often (unless the conditions change).
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// The shortest time between two passes woken by host pod changes: each pass walks every
/// host pod (10k in a large tenant), so a burst's changes are taken together.
const MIN_PASS_INTERVAL: Duration = Duration::from_millis(500);
/// How often the loop looks again without a cache change (heartbeats, retries).
pub const TICK: Duration = Duration::from_secs(5);

/// After a 403 on a host node GET, nodes are synthesized for this long before asking again.
pub const FORBIDDEN_RETRY: Duration = Duration::from_secs(600);

/// A node whose write was refused (403, 422, foreign node) is looked at again after this long.
pub const REFUSED_RETRY: Duration = Duration::from_secs(300);

/// `reason` of the Ready condition of a synthesized node.
pub const ASSUMED_READY_REASON: &str = "TenantPodsRunning";
const ASSUMED_READY_MESSAGE: &str =
    "the host node is not readable by vcsync; reported Ready while this tenant's pods run on it";

/// Host nodes in use by `pods` (this tenant's host pods), each with the host IP of one pod on it
/// (the pods of one node share its address; should they disagree, one of theirs), for
/// synthesized nodes.
pub fn nodes_in_use(pods: &[Arc<HostPod>]) -> BTreeMap<String, Option<String>> {
    // One pass, no sort (this runs on every batch of host pod changes, over all pods); names
    // are compared only between pods that report different addresses.
    let mut best: BTreeMap<&str, Option<(&str, &str)>> = BTreeMap::new();
    for p in pods {
        let Some(node) = p.node_name() else {
            continue;
        };
        let slot = best.entry(node).or_default();
        let name = p.metadata.name.as_deref().unwrap_or_default();
        // Pods on one node share its address, so names are compared only when they differ.
        if let Some(ip) = p
            .status
            .as_ref()
            .and_then(|s| s.host_ip.as_deref())
            .filter(|ip| !ip.is_empty())
            && slot.is_none_or(|(n, have)| have != ip && name < n)
        {
            *slot = Some((name, ip));
        }
    }
    best.into_iter()
        .map(|(node, first)| (node.to_string(), first.map(|(_, ip)| ip.to_string())))
        .collect()
}

/// Whether a virtual node is this tenant's to update and delete.
pub fn is_managed(node: &Node, tenant: &str) -> bool {
    node.labels().get(markers::MANAGED_BY).map(String::as_str) == Some(tenant)
}

/// The labels vcsync sets on virtual node `name`: the allowlisted host labels (or, for a
/// synthesized node, only the hostname) and the ownership marker.
pub fn desired_labels(tenant: &str, name: &str, host: Option<&Node>) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = match host {
        Some(h) => h
            .labels()
            .iter()
            .filter(|(k, _)| ALLOWED_LABELS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        None => BTreeMap::from([("kubernetes.io/hostname".to_string(), name.to_string())]),
    };
    labels.insert(markers::MANAGED_BY.to_string(), tenant.to_string());
    labels
}

/// The merge patch that brings the vcsync-owned label keys of `existing` to `desired`; `None`
/// when they already match. Keys vcsync does not own are left out (kept as they are).
pub fn label_patch(
    existing: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> Option<Value> {
    let mut changes = serde_json::Map::new();
    for key in ALLOWED_LABELS.iter().copied().chain([markers::MANAGED_BY]) {
        let (have, want) = (existing.get(key), desired.get(key));
        if have != want {
            changes.insert(key.to_string(), json!(want));
        }
    }
    (!changes.is_empty()).then(|| json!({"metadata": {"labels": changes}}))
}

/// `t` cut to whole seconds, as the API server stores it (so a written time reads back equal).
fn seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// A condition without its heartbeat, for comparisons.
fn without_heartbeat(c: &NodeCondition) -> NodeCondition {
    NodeCondition {
        last_heartbeat_time: None,
        ..c.clone()
    }
}

/// The status vcsync wants on virtual node: from `host` when readable, else synthesized; its
/// address is the kubelet `endpoint`. Times come from `existing` where nothing changed: the
/// conditions' heartbeat is renewed only when they changed or the last one is [`HEARTBEAT`]
/// old at `now`.
pub fn desired_status(
    host: Option<&Node>,
    endpoint: Option<&crate::kubelet::NodeEndpoint>,
    existing: Option<&NodeStatus>,
    now: Timestamp,
) -> NodeStatus {
    let now = seconds(now);
    let old_conditions: &[NodeCondition] = existing
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[]);
    let old = |t: &str| old_conditions.iter().find(|c| c.type_ == t);
    let hs = host.and_then(|h| h.status.as_ref());
    let mut conditions: Vec<NodeCondition> = match host {
        Some(_) => hs
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or(&[])
            .iter()
            .map(without_heartbeat)
            .collect(),
        None => {
            let since = old("Ready")
                .filter(|c| c.status == "True")
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some(ASSUMED_READY_REASON.into()),
                message: Some(ASSUMED_READY_MESSAGE.into()),
                last_transition_time: Some(since),
                last_heartbeat_time: None,
            }]
        }
    };
    let unchanged = conditions.len() == old_conditions.len()
        && conditions
            .iter()
            .zip(old_conditions)
            .all(|(c, o)| *c == without_heartbeat(o));
    let fresh = old("Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .is_some_and(|t| {
            let age = now.as_second().saturating_sub(t.0.as_second());
            (0..i64::try_from(HEARTBEAT.as_secs()).unwrap_or(i64::MAX)).contains(&age)
        });
    for c in &mut conditions {
        c.last_heartbeat_time = if unchanged && fresh {
            old(&c.type_).and_then(|o| o.last_heartbeat_time.clone())
        } else {
            Some(Time(now))
        };
    }
    NodeStatus {
        conditions: Some(conditions),
        capacity: hs.and_then(|s| s.capacity.clone()),
        allocatable: hs.and_then(|s| s.allocatable.clone()),
        addresses: endpoint.map(|e| {
            vec![NodeAddress {
                type_: "InternalIP".into(),
                address: e.address.to_string(),
            }]
        }),
        daemon_endpoints: endpoint.map(|e| NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(e.port),
            }),
        }),
        node_info: hs
            .and_then(|s| s.node_info.as_ref())
            .map(|i| NodeSystemInfo {
                // Identifiers of the host machine are not the tenant's business.
                machine_id: String::new(),
                system_uuid: String::new(),
                boot_id: String::new(),
                ..i.clone()
            }),
        ..NodeStatus::default()
    }
}

/// Whether `existing` differs from `desired` in a field vcsync sets (fields the API server
/// defaults, such as `daemonEndpoints`, and a `nodeInfo` vcsync does not set are ignored).
pub fn status_differs(existing: Option<&NodeStatus>, desired: &NodeStatus) -> bool {
    let empty = NodeStatus::default();
    let e = existing.unwrap_or(&empty);
    let map_eq = |a: &Option<BTreeMap<_, _>>, b: &Option<BTreeMap<_, _>>| {
        a.as_ref().filter(|m| !m.is_empty()) == b.as_ref().filter(|m| !m.is_empty())
    };
    let list_eq = |a: &Option<Vec<NodeAddress>>, b: &Option<Vec<NodeAddress>>| {
        a.as_deref().unwrap_or(&[]) == b.as_deref().unwrap_or(&[])
    };
    e.conditions.as_deref().unwrap_or(&[]) != desired.conditions.as_deref().unwrap_or(&[])
        || !map_eq(&e.capacity, &desired.capacity)
        || !map_eq(&e.allocatable, &desired.allocatable)
        || !list_eq(&e.addresses, &desired.addresses)
        || (desired.daemon_endpoints.is_some() && e.daemon_endpoints != desired.daemon_endpoints)
        || (desired.node_info.is_some() && e.node_info != desired.node_info)
}

/// `existing` with the fields vcsync sets replaced by `desired`'s.
pub fn merged_status(existing: Option<&NodeStatus>, desired: &NodeStatus) -> NodeStatus {
    let mut out = existing.cloned().unwrap_or_default();
    out.conditions = desired.conditions.clone();
    out.capacity = desired.capacity.clone();
    out.allocatable = desired.allocatable.clone();
    out.addresses = desired.addresses.clone();
    if desired.daemon_endpoints.is_some() {
        out.daemon_endpoints = desired.daemon_endpoints.clone();
    }
    if desired.node_info.is_some() {
        out.node_info = desired.node_info.clone();
    }
    out
}

/// A new virtual node.
pub fn new_virtual_node(name: &str, labels: BTreeMap<String, String>, status: NodeStatus) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(status),
    }
}

/// Why syncing one node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeSyncError {
    #[error("{action} virtual node {name}: {source}")]
    Api {
        action: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("virtual node {name} exists without {label}={tenant}: left untouched", label = markers::MANAGED_BY)]
    Foreign { name: String, tenant: String },
}

impl NodeSyncError {
    /// Refusals retrying soon cannot fix.
    pub fn is_permanent(&self) -> bool {
        match self {
            NodeSyncError::Foreign { .. } => true,
            NodeSyncError::Api { source, .. } => {
                matches!(source, kube::Error::Api(s) if matches!(s.code, 400 | 403 | 422))
            }
        }
    }
}

fn api_err(action: &'static str, name: &str) -> impl FnOnce(kube::Error) -> NodeSyncError {
    let name = name.to_string();
    move |source| NodeSyncError::Api {
        action,
        name,
        source,
    }
}

/// A host node as last read: `None` inside means unreadable (synthesize).
struct HostRead {
    at: Instant,
    node: Option<Node>,
}

/// The node loop's state.
struct NodeSync {
    shared: Arc<Shared>,
    host_pods: Store<HostPod>,
    virtual_nodes: Store<Node>,
    host_nodes: HashMap<String, HostRead>,
    forbidden_until: Option<Instant>,
    retry_at: HashMap<String, Instant>,
    /// What the last write of each node returned, until the watch cache shows it: a pass
    /// started by the next pod change must not write from an older cached copy (a 409 and a
    /// retry per node in a burst).
    written: HashMap<String, Node>,
    /// Writes refused for good (403, 422, foreign nodes).
    refused: u64,
    /// The nodes in use at the last pass, with whether an address was known for each.
    in_use: HashMap<String, bool>,
}

/// What one host pod change tells the node loop: the node the pod runs on, and whether the pod
/// reports that node's address.
type Hint = Option<(String, bool)>;

fn hint(p: &HostPod) -> Hint {
    let has_ip = p
        .status
        .as_ref()
        .and_then(|s| s.host_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty());
    p.node_name().map(|n| (n.to_string(), has_ip))
}

/// Whether a change must be acted on at once rather than with the next coalesced pass: it
/// brings a node the tenant does not see yet, or the first address of one. A pod bound to a
/// node the virtual API lacks breaks `kubectl logs` (the API server looks the node up), so
/// only the passes that change nothing visible wait.
fn urgent(in_use: &HashMap<String, bool>, hint: &Hint) -> bool {
    match hint {
        None => false,
        Some((node, has_ip)) => match in_use.get(node) {
            None => true,
            Some(had_ip) => *has_ip && !had_ip,
        },
    }
}

fn write_params() -> PostParams {
    PostParams {
        field_manager: Some(markers::FIELD_MANAGER.into()),
        ..Default::default()
    }
}

impl NodeSync {
    /// The host node `name` (`Some(None)`: unreadable, synthesize), or `None` when it could not
    /// be read for a transient reason and nothing is known yet.
    async fn host_node(&mut self, name: &str) -> Option<Option<Node>> {
        let now = Instant::now();
        if let Some(r) = self.host_nodes.get(name)
            && now.duration_since(r.at) < HEARTBEAT
        {
            return Some(r.node.clone());
        }
        let node = if self.forbidden_until.is_some_and(|t| now < t) {
            None
        } else {
            let api: Api<Node> = Api::all(self.shared.host.clone());
            match api.get_opt(name).await {
                Ok(n) => n.map(|mut n| {
                    n.metadata.managed_fields = None;
                    n
                }),
                Err(kube::Error::Api(s)) if s.code == 403 => {
                    tracing::info!(
                        node = name,
                        "host nodes are not readable (403): virtual nodes are synthesized"
                    );
                    self.forbidden_until = Some(now + FORBIDDEN_RETRY);
                    None
                }
                Err(e) => {
                    tracing::info!(node = name, error = %e, "reading the host node failed");
                    return self.host_nodes.get(name).map(|r| r.node.clone());
                }
            }
        };
        self.host_nodes.insert(
            name.to_string(),
            HostRead {
                at: now,
                node: node.clone(),
            },
        );
        Some(node)
    }

    /// One pass: create or refresh every node in use, delete the managed ones no longer in use.
    async fn reconcile_all(&mut self) {
        let in_use = nodes_in_use(&self.host_pods.state());
        self.in_use = in_use
            .iter()
            .map(|(n, ip)| (n.clone(), ip.is_some()))
            .collect();
        self.host_nodes.retain(|n, _| in_use.contains_key(n));
        self.retry_at.retain(|n, _| in_use.contains_key(n));
        self.written.retain(|n, _| in_use.contains_key(n));
        for name in in_use.keys() {
            if self.retry_at.get(name).is_some_and(|t| Instant::now() < *t) {
                continue;
            }
            let span = tracing::info_span!(
                "reconcile",
                controller = "node",
                namespace = "",
                name = name.as_str()
            );
            let result = tracing::Instrument::instrument(self.reconcile(name), span).await;
            self.settle(name, result);
        }
        let tenant = self.shared.cfg.tenant.clone();
        let unused: Vec<Arc<Node>> = self
            .virtual_nodes
            .state()
            .into_iter()
            .filter(|n| is_managed(n, &tenant) && !in_use.contains_key(&n.name_any()))
            .collect();
        for node in unused {
            let name = node.name_any();
            let span = tracing::info_span!(
                "reconcile",
                controller = "node",
                namespace = "",
                name = name.as_str()
            );
            let result = tracing::Instrument::instrument(self.delete(&node), span).await;
            self.settle(&name, result);
        }
    }

    fn settle(&mut self, name: &str, result: Result<(), NodeSyncError>) {
        let key = format!("node/{name}");
        match result {
            Ok(()) => {
                self.retry_at.remove(name);
                self.shared.backoff.reset(&key);
            }
            Err(e) if e.is_permanent() => {
                self.refused += 1;
                tracing::warn!(controller = "node", node = name, error = %e, refused_total = self.refused, "refused");
                self.retry_at
                    .insert(name.to_string(), Instant::now() + REFUSED_RETRY);
            }
            Err(e) => {
                tracing::info!(controller = "node", node = name, error = %e, "retrying");
                let wait = self.shared.backoff.next(&key);
                self.retry_at
                    .insert(name.to_string(), Instant::now() + wait);
            }
        }
    }

    async fn reconcile(&mut self, name: &str) -> Result<(), NodeSyncError> {
        let Some(host) = self.host_node(name).await else {
            // Nothing known about the host node yet; the next tick asks again.
            return Ok(());
        };
        let tenant = self.shared.cfg.tenant.clone();
        let endpoint = self.shared.cfg.kubelet;
        let api: Api<Node> = Api::all(self.shared.virt.clone());
        let labels = desired_labels(&tenant, name, host.as_ref());
        let cached = self.virtual_nodes.get(&ObjectRef::new(name));
        let mut current = newest(cached.as_deref(), self.written.get(name)).cloned();
        if cached.is_some()
            && current.as_ref().map(|c| &c.metadata.resource_version)
                == cached.as_ref().map(|c| &c.metadata.resource_version)
        {
            // The cache caught up with the last write.
            self.written.remove(name);
        }
        if current.is_none() {
            let status = desired_status(host.as_ref(), endpoint.as_ref(), None, Timestamp::now());
            let node = new_virtual_node(name, labels.clone(), status);
            match api.create(&write_params(), &node).await {
                Ok(created) => {
                    tracing::info!(node = name, "created virtual node");
                    self.written.insert(name.to_string(), created.clone());
                    current = Some(created);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    current = api.get_opt(name).await.map_err(api_err("reading", name))?;
                }
                Err(e) => return Err(api_err("creating", name)(e)),
            }
        }
        let Some(mut current) = current else {
            // Deleted again right after the conflict: the next pass creates it.
            return Ok(());
        };
        if !is_managed(&current, &tenant) {
            return Err(NodeSyncError::Foreign {
                name: name.to_string(),
                tenant,
            });
        }
        if let Some(patch) = label_patch(current.labels(), &labels) {
            let pp = PatchParams {
                field_manager: Some(markers::FIELD_MANAGER.into()),
                ..Default::default()
            };
            current = api
                .patch(name, &pp, &Patch::Merge(&patch))
                .await
                .map_err(api_err("labelling", name))?;
            self.written.insert(name.to_string(), current.clone());
        }
        let status = desired_status(
            host.as_ref(),
            endpoint.as_ref(),
            current.status.as_ref(),
            Timestamp::now(),
        );
        if status_differs(current.status.as_ref(), &status) {
            current.status = Some(merged_status(current.status.as_ref(), &status));
            // Absent (not empty) managedFields leave the server's record as it is.
            current.metadata.managed_fields = None;
            match api.replace_status(name, &write_params(), &current).await {
                Ok(written) => {
                    self.written.insert(name.to_string(), written);
                }
                Err(e) => {
                    // Someone else wrote since: the cache's copy is the one to start from.
                    self.written.remove(name);
                    return Err(api_err("updating the status of", name)(e));
                }
            }
            tracing::debug!(node = name, "updated virtual node status");
        }
        Ok(())
    }

    async fn delete(&mut self, node: &Node) -> Result<(), NodeSyncError> {
        let name = node.name_any();
        let api: Api<Node> = Api::all(self.shared.virt.clone());
        let dp = DeleteParams::default().preconditions(Preconditions {
            uid: node.uid(),
            resource_version: None,
        });
        match api.delete(&name, &dp).await {
            Ok(_) => {
                tracing::info!(
                    node = name,
                    "deleted virtual node: no tenant pod runs there"
                );
                Ok(())
            }
            // Gone already, or replaced by another node of that name (not ours to delete).
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(api_err("deleting", &name)(e)),
        }
    }
}

/// The copy of a virtual node to write from: the cached one, unless this replica's last write
/// returned a copy the cache does not show yet. resourceVersions are opaque, so "not yet" is
/// "different": a foreign write after ours costs one 409, after which the cache's copy is used.
fn newest<'a>(cached: Option<&'a Node>, written: Option<&'a Node>) -> Option<&'a Node> {
    match (cached, written) {
        (Some(c), Some(w)) if c.metadata.resource_version == w.metadata.resource_version => Some(c),
        (_, Some(w)) => Some(w),
        (c, None) => c,
    }
}

/// Run the node back-sync until `stop`.
pub async fn run(shared: Arc<Shared>, stop: Stop) {
    let host_pods = shared.host_pods.clone();
    let pstream = shared.host_pod_change_stream();
    let (virtual_nodes, vstream) = cached_stream(
        Api::<Node>::all(shared.virt.clone()),
        watcher::Config::default().labels(&markers::tenant_selector(&shared.cfg.tenant)),
    );
    let log = |r: Result<Hint, watcher::Error>| match r {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(controller = "node", error = %e, "watch error");
            None
        }
    };
    let changes = futures::stream::select(
        pstream.map(|r| r.map(|p| hint(&p))),
        vstream.map(|r| r.map(|_| None)),
    );
    let mut changes = std::pin::pin!(changes);
    let mut stopped = std::pin::pin!(stop.signal());
    let mut tick = tokio::time::interval(TICK);
    let mut last_pass = Instant::now()
        .checked_sub(MIN_PASS_INTERVAL)
        .unwrap_or_else(Instant::now);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sync = NodeSync {
        shared,
        host_pods,
        virtual_nodes,
        host_nodes: HashMap::new(),
        forbidden_until: None,
        retry_at: HashMap::new(),
        written: HashMap::new(),
        refused: 0,
        in_use: HashMap::new(),
    };
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            item = changes.next() => {
                let Some(item) = item else { return };
                let mut now = urgent(&sync.in_use, &log(item));
                while let Some(Some(item)) = changes.next().now_or_never() {
                    now |= urgent(&sync.in_use, &log(item));
                }
                // A pass looks at every host pod: during a burst, one per
                // MIN_PASS_INTERVAL at most unless a change is urgent, taking every change
                // that came meanwhile.
                let since = last_pass.elapsed();
                if !now && since < MIN_PASS_INTERVAL {
                    let wait = tokio::time::sleep(MIN_PASS_INTERVAL - since);
                    let mut wait = std::pin::pin!(wait);
                    loop {
                        tokio::select! {
                            _ = &mut stopped => return,
                            _ = &mut wait => break,
                            item = changes.next() => {
                                let Some(item) = item else { return };
                                if urgent(&sync.in_use, &log(item)) {
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            _ = tick.tick() => {}
        }
        // Never judge "no pod left" from a half-filled cache: that would delete every node.
        let ready = |r: Option<Result<(), _>>| matches!(r, Some(Ok(())));
        if !ready(sync.host_pods.wait_until_ready().now_or_never())
            || !ready(sync.virtual_nodes.wait_until_ready().now_or_never())
        {
            continue;
        }
        let gate = sync.shared.gate.clone();
        tokio::select! {
            _ = &mut stopped => return,
            _ = async {
                gate.opened().await;
                sync.reconcile_all().await;
            } => {}
        }
        last_pass = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use rstest::rstest;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn endpoint() -> crate::kubelet::NodeEndpoint {
        crate::kubelet::NodeEndpoint {
            address: "127.0.0.1".parse().unwrap(),
            port: 10250,
        }
    }

    fn pod(name: &str, node: Option<&str>, ip: Option<&str>) -> Arc<HostPod> {
        Arc::new(HostPod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(crate::cache::HostPodSpec {
                node_name: node.map(str::to_string),
                ..Default::default()
            }),
            status: Some(PodStatus {
                host_ip: ip.map(str::to_string),
                ..Default::default()
            }),
        })
    }

    fn cond(type_: &str, status: &str, heartbeat: &str) -> NodeCondition {
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(format!("{type_}Reason")),
            message: Some("m".into()),
            last_heartbeat_time: Some(Time(ts(heartbeat))),
            last_transition_time: Some(Time(ts("2025-01-01T00:00:00Z"))),
        }
    }

    fn host_node() -> Node {
        let q = |s: &str| Quantity(s.into());
        let resources = BTreeMap::from([
            ("cpu".to_string(), q("4")),
            ("memory".to_string(), q("16Gi")),
        ]);
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                uid: Some("host-uid".into()),
                labels: Some(
                    [
                        ("kubernetes.io/hostname", "n1"),
                        ("kubernetes.io/os", "linux"),
                        ("kubernetes.io/arch", "amd64"),
                        ("beta.kubernetes.io/arch", "amd64"),
                        ("topology.kubernetes.io/zone", "z1"),
                        ("node-role.kubernetes.io/control-plane", ""),
                        ("cloud.example.com/account", "secret"),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ),
                ..Default::default()
            },
            spec: None,
            status: Some(NodeStatus {
                capacity: Some(resources.clone()),
                allocatable: Some(resources),
                conditions: Some(vec![
                    cond("MemoryPressure", "False", "2025-01-01T00:10:00Z"),
                    cond("Ready", "True", "2025-01-01T00:10:00Z"),
                ]),
                addresses: Some(vec![
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: "10.0.0.1".into(),
                    },
                    NodeAddress {
                        type_: "ExternalIP".into(),
                        address: "1.2.3.4".into(),
                    },
                    NodeAddress {
                        type_: "Hostname".into(),
                        address: "n1".into(),
                    },
                ]),
                node_info: Some(NodeSystemInfo {
                    kubelet_version: "v1.32.3".into(),
                    machine_id: "m".into(),
                    system_uuid: "s".into(),
                    boot_id: "b".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn nodes_in_use_come_from_bound_pods() {
        let pods = vec![
            pod("b", Some("n1"), Some("10.0.0.2")),
            pod("a", Some("n1"), None),
            pod("c", Some("n2"), Some("10.0.0.3")),
            pod("pending", None, None),
            pod("empty", Some(""), None),
        ];
        let got = nodes_in_use(&pods);
        assert_eq!(
            got,
            BTreeMap::from([
                ("n1".to_string(), Some("10.0.0.2".to_string())),
                ("n2".to_string(), Some("10.0.0.3".to_string())),
            ])
        );
        assert!(nodes_in_use(&[]).is_empty());
    }

    #[test]
    fn only_allowlisted_labels_are_copied() {
        let labels = desired_labels("acme", "n1", Some(&host_node()));
        let keys: Vec<&str> = labels.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "kubernetes.io/arch",
                "kubernetes.io/hostname",
                "kubernetes.io/os",
                "topology.kubernetes.io/zone",
                markers::MANAGED_BY
            ]
        );
        assert_eq!(labels[markers::MANAGED_BY], "acme");
        let synthesized = desired_labels("acme", "n9", None);
        assert_eq!(
            synthesized,
            BTreeMap::from([
                ("kubernetes.io/hostname".to_string(), "n9".to_string()),
                (markers::MANAGED_BY.to_string(), "acme".to_string()),
            ])
        );
    }

    #[rstest]
    #[case::same(&[("kubernetes.io/os", "linux")], &[("kubernetes.io/os", "linux")], None)]
    #[case::foreign_keys_kept(&[("kubernetes.io/os", "linux"), ("team", "a")], &[("kubernetes.io/os", "linux")], None)]
    #[case::changed(&[("kubernetes.io/os", "linux")], &[("kubernetes.io/os", "windows")], Some(json!({"metadata": {"labels": {"kubernetes.io/os": "windows"}}})))]
    #[case::removed(&[("topology.kubernetes.io/zone", "z1")], &[], Some(json!({"metadata": {"labels": {"topology.kubernetes.io/zone": null}}})))]
    #[case::marker_added(&[], &[(markers::MANAGED_BY, "acme")], Some(json!({"metadata": {"labels": {markers::MANAGED_BY: "acme"}}})))]
    fn label_patches_touch_owned_keys_only(
        #[case] have: &[(&str, &str)],
        #[case] want: &[(&str, &str)],
        #[case] patch: Option<Value>,
    ) {
        let m = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(label_patch(&m(have), &m(want)), patch);
    }

    #[test]
    fn status_mirrors_the_host_node() {
        let now = ts("2025-01-01T00:20:00.700Z");
        let s = desired_status(Some(&host_node()), Some(&endpoint()), None, now);
        let conds = s.conditions.as_ref().unwrap();
        assert_eq!(conds.len(), 2);
        assert_eq!(conds[1].type_, "Ready");
        assert_eq!(conds[1].status, "True");
        // The host's transition time, our own heartbeat (whole seconds).
        assert_eq!(
            conds[1].last_transition_time,
            Some(Time(ts("2025-01-01T00:00:00Z")))
        );
        assert_eq!(
            conds[1].last_heartbeat_time,
            Some(Time(ts("2025-01-01T00:20:00Z")))
        );
        assert_eq!(s.capacity.as_ref().unwrap()["cpu"].0, "4");
        assert_eq!(s.allocatable.as_ref().unwrap()["memory"].0, "16Gi");
        // The kubelet endpoint, never the host node's own addresses.
        assert_eq!(
            s.addresses,
            Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: "127.0.0.1".into()
            }])
        );
        assert_eq!(
            s.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port,
            10250
        );
        let info = s.node_info.unwrap();
        assert_eq!(info.kubelet_version, "v1.32.3");
        assert!(
            info.machine_id.is_empty() && info.system_uuid.is_empty() && info.boot_id.is_empty()
        );
    }

    #[test]
    fn an_unreadable_host_node_is_synthesized_ready() {
        let now = ts("2025-01-01T00:20:00Z");
        let s = desired_status(None, Some(&endpoint()), None, now);
        let conds = s.conditions.unwrap();
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].type_, "Ready");
        assert_eq!(conds[0].status, "True");
        assert_eq!(conds[0].reason.as_deref(), Some(ASSUMED_READY_REASON));
        assert_eq!(conds[0].last_transition_time, Some(Time(now)));
        assert_eq!(s.addresses.unwrap()[0].address, "127.0.0.1");
        assert!(s.capacity.is_none() && s.allocatable.is_none() && s.node_info.is_none());
        let none = desired_status(None, None, None, now);
        assert!(none.addresses.is_none() && none.daemon_endpoints.is_none());
    }

    #[rstest]
    #[case::fresh_heartbeat("2025-01-01T00:20:29Z", false)]
    #[case::heartbeat_due("2025-01-01T00:20:30Z", true)]
    #[case::clock_behind("2025-01-01T00:19:00Z", true)]
    fn heartbeats_are_written_at_most_every_30s(#[case] now: &str, #[case] write: bool) {
        let written = desired_status(Some(&host_node()), None, None, ts("2025-01-01T00:20:00Z"));
        // What the API server answers: our fields plus its defaults.
        let mut existing = written.clone();
        existing.daemon_endpoints = Some(Default::default());
        let again = desired_status(Some(&host_node()), None, Some(&existing), ts(now));
        assert_eq!(status_differs(Some(&existing), &again), write);
        if write {
            let hb = &again.conditions.as_ref().unwrap()[1].last_heartbeat_time;
            assert_eq!(hb, &Some(Time(ts(now))));
        }
    }

    #[test]
    fn a_condition_change_is_written_at_once_and_synthesized_nodes_stay_stable() {
        let t0 = ts("2025-01-01T00:20:00Z");
        let written = desired_status(Some(&host_node()), None, None, t0);
        let mut sick = host_node();
        sick.status.as_mut().unwrap().conditions.as_mut().unwrap()[1].status = "False".into();
        let later = ts("2025-01-01T00:20:05Z");
        let s = desired_status(Some(&sick), None, Some(&written), later);
        assert!(status_differs(Some(&written), &s));
        assert_eq!(
            s.conditions.as_ref().unwrap()[0].last_heartbeat_time,
            Some(Time(later))
        );

        // A synthesized node keeps its transition time and writes nothing while fresh.
        let synth = desired_status(None, Some(&endpoint()), None, t0);
        let next = desired_status(None, Some(&endpoint()), Some(&synth), later);
        assert!(!status_differs(Some(&synth), &next));
        let due = desired_status(
            None,
            Some(&endpoint()),
            Some(&synth),
            ts("2025-01-01T00:21:00Z"),
        );
        assert!(status_differs(Some(&synth), &due));
        assert_eq!(
            due.conditions.unwrap()[0].last_transition_time,
            Some(Time(t0))
        );
    }

    #[test]
    fn defaulted_node_info_does_not_count_as_a_difference() {
        let synth = desired_status(None, Some(&endpoint()), None, ts("2025-01-01T00:20:00Z"));
        let mut existing = synth.clone();
        existing.node_info = Some(NodeSystemInfo::default());
        existing.capacity = Some(BTreeMap::new());
        assert!(!status_differs(Some(&existing), &synth));
        let merged = merged_status(Some(&existing), &synth);
        assert_eq!(merged.node_info, Some(NodeSystemInfo::default()));
        assert!(!status_differs(Some(&merged), &synth));
        assert!(status_differs(None, &synth));
    }

    #[test]
    fn new_nodes_carry_the_marker_and_only_marked_nodes_are_ours() {
        let n = new_virtual_node(
            "n1",
            desired_labels("acme", "n1", Some(&host_node())),
            NodeStatus::default(),
        );
        assert!(is_managed(&n, "acme"));
        assert!(!is_managed(&n, "other"));
        assert!(n.metadata.uid.is_none());
        assert!(!is_managed(&host_node(), "acme"));
    }

    #[test]
    fn a_write_the_cache_does_not_show_yet_is_the_copy_to_write_from() {
        let at = |rv: &str| {
            let mut n = new_virtual_node("n", BTreeMap::new(), NodeStatus::default());
            n.metadata.resource_version = Some(rv.into());
            n
        };
        let (old, ours) = (at("10"), at("11"));
        assert_eq!(newest(Some(&old), Some(&ours)), Some(&ours));
        assert_eq!(newest(Some(&ours), Some(&ours)), Some(&ours));
        assert_eq!(newest(Some(&old), None), Some(&old));
        assert_eq!(newest(None, Some(&ours)), Some(&ours));
        assert_eq!(newest(None, None), None);
    }

    #[rstest]
    #[case::unscheduled_pod(None, false)]
    #[case::a_new_node(Some(("n2", false)), true)]
    #[case::a_new_node_with_its_address(Some(("n2", true)), true)]
    #[case::the_first_address_of_a_node(Some(("n0", true)), true)]
    #[case::a_known_node_without_address(Some(("n0", false)), false)]
    #[case::a_known_address(Some(("n1", true)), false)]
    #[case::a_known_node_losing_no_address(Some(("n1", false)), false)]
    fn changes_that_show_a_node_or_its_address_are_urgent(
        #[case] h: Option<(&str, bool)>,
        #[case] expected: bool,
    ) {
        let in_use = HashMap::from([("n0".to_string(), false), ("n1".to_string(), true)]);
        let h = h.map(|(n, ip)| (n.to_string(), ip));
        assert_eq!(urgent(&in_use, &h), expected);
    }

    #[test]
    fn a_hint_names_the_node_and_whether_the_pod_has_its_address() {
        assert_eq!(hint(&pod("a", None, Some("10.0.0.1"))), None);
        assert_eq!(hint(&pod("a", Some("n"), None)), Some(("n".into(), false)));
        assert_eq!(
            hint(&pod("a", Some("n"), Some(""))),
            Some(("n".into(), false))
        );
        assert_eq!(
            hint(&pod("a", Some("n"), Some("10.0.0.1"))),
            Some(("n".into(), true))
        );
    }
}
