//! The pod loop: scheduler, kubelet start-up and deletion completion, level-triggered over a
//! watch of the pods, with every API call running in its own task.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Binding, Event, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::api::{KUBELET, SCHEDULER, api_code, event_manager, post_params, with_retries};
use super::events::{self, ContainerEvent};
use super::ipam::IpAllocator;
use super::scheduling::{self, NodeLoad};
use super::{KubeletConfig, PodOutcome, Shared, SimEvent, nodes, resources, status};

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn ns_name(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskKind {
    Bind,
    Unschedulable,
    Start,
    Delete,
}

struct TaskDone {
    uid: String,
    kind: TaskKind,
    /// `false`: look at the pod again only after the resync interval.
    ok: bool,
}

/// The pod loop. Owns all mutable state; API calls run in `tasks` and report back.
pub(crate) struct Runner {
    client: Client,
    cfg: Arc<KubeletConfig>,
    shared: Arc<Shared>,
    ipam: IpAllocator,
    node_ips: Vec<String>,
    /// Node index by name (a pod's node is looked up on every reconcile).
    node_by_name: HashMap<String, usize>,
    /// Latest version of every watched pod, by UID. Shared (`Arc`) with the tasks and the
    /// kubelet API registry, so handing a pod on never deep-copies it.
    pods: HashMap<String, Arc<Pod>>,
    /// What each non-terminal pod placed (or being placed) on one of our nodes counts against
    /// it: `(node, requests)`, by UID. Kept current on every change so scheduling a pod costs
    /// O(nodes), not O(all pods).
    placed: HashMap<String, (usize, resources::Requests)>,
    /// The sum of `placed` per node.
    loads: Vec<NodeLoad>,
    /// Pods this scheduler chose a node for whose binding the watch has not shown yet.
    assumed: HashMap<String, usize>,
    /// Pods with an API task in flight (at most one per pod).
    inflight: HashSet<String>,
    /// Pods whose final status has been written.
    started: HashSet<String>,
    /// Pods already force-deleted.
    deleted: HashSet<String>,
    /// Pods to leave alone until the instant passes (after a failure).
    retry_after: HashMap<String, Instant>,
    /// Last unschedulable message reported per pod.
    unschedulable: HashMap<String, String>,
    cursor: usize,
    tasks: JoinSet<TaskDone>,
    /// Pods of a (re)list in progress; applied at once on `InitDone`.
    init_buffer: Option<Vec<Pod>>,
}

impl Runner {
    pub(crate) fn new(
        client: Client,
        cfg: Arc<KubeletConfig>,
        shared: Arc<Shared>,
        ipam: IpAllocator,
    ) -> Self {
        let node_ips = (0..cfg.nodes.len()).map(|i| cfg.node_ip(i)).collect();
        let node_by_name = cfg
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let loads = vec![NodeLoad::default(); cfg.nodes.len()];
        Self {
            client,
            cfg,
            shared,
            ipam,
            node_ips,
            node_by_name,
            pods: HashMap::new(),
            placed: HashMap::new(),
            loads,
            assumed: HashMap::new(),
            inflight: HashSet::new(),
            started: HashSet::new(),
            deleted: HashSet::new(),
            retry_after: HashMap::new(),
            unschedulable: HashMap::new(),
            cursor: 0,
            tasks: JoinSet::new(),
            init_buffer: None,
        }
    }

    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let nodes = tokio::spawn(nodes::run_nodes(
            self.client.clone(),
            self.cfg.clone(),
            self.shared.clone(),
            shutdown.clone(),
        ));
        let pods: Api<Pod> = match &self.cfg.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let mut wc = watcher::Config::default();
        if let Some(sel) = &self.cfg.label_selector {
            wc = wc.labels(sel);
        }
        let mut stream = watcher(pods, wc).default_backoff().boxed();
        let mut tick = tokio::time::interval(self.cfg.resync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        info!(nodes = ?self.cfg.nodes.iter().map(|n| &n.name).collect::<Vec<_>>(),
              namespace = ?self.cfg.namespace, "kubelet simulator started");
        loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                event = stream.next() => match event {
                    Some(Ok(event)) => self.on_watch_event(event),
                    Some(Err(e)) => {
                        warn!(error = %e, "pod watch failed; backing off");
                        self.shared.bump(|c| &c.api_errors);
                    }
                    None => {
                        warn!("pod watch ended unexpectedly");
                        break;
                    }
                },
                Some(done) = self.tasks.join_next() => {
                    if let Ok(done) = done {
                        self.on_task_done(done);
                    }
                }
                _ = tick.tick() => self.resync(),
            }
        }
        self.tasks.shutdown().await;
        nodes.abort();
        let _ = nodes.await;
        info!("kubelet simulator stopped");
    }

    fn on_watch_event(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => self.init_buffer = Some(Vec::new()),
            watcher::Event::InitApply(pod) => match &mut self.init_buffer {
                Some(buf) => buf.push(pod),
                None => self.apply(pod),
            },
            watcher::Event::InitDone => {
                let listed = self.init_buffer.take().unwrap_or_default();
                let live: HashSet<String> = listed
                    .iter()
                    .filter_map(|p| p.metadata.uid.clone())
                    .collect();
                let gone: Vec<String> = self
                    .pods
                    .keys()
                    .filter(|uid| !live.contains(*uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    self.forget(&uid);
                }
                // Learn every IP in use before allocating any, so a restart never hands out
                // an address a pod further down the list already has.
                let uids: Vec<String> = listed
                    .iter()
                    .filter_map(|p| p.metadata.uid.clone())
                    .collect();
                for pod in listed {
                    self.remember(Arc::new(pod));
                }
                for uid in uids {
                    self.reconcile(&uid);
                }
            }
            watcher::Event::Apply(pod) => self.apply(pod),
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    self.forget(uid);
                }
            }
        }
    }

    fn apply(&mut self, pod: Pod) {
        if let Some(uid) = pod.metadata.uid.clone() {
            self.remember(Arc::new(pod));
            self.reconcile(&uid);
        }
    }

    /// Stores the pod and reserves its IP.
    fn remember(&mut self, pod: Arc<Pod>) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        if !host_network
            && let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref())
            && let Ok(ip) = ip.parse::<Ipv4Addr>()
            && self.ipam.contains(ip)
            && !self.ipam.reserve(&uid, ip)
        {
            warn!(pod = ?ns_name(&pod), %ip, "pod ip already held by another pod");
        }
        if node_name(&pod).is_some() {
            self.assumed.remove(&uid);
        }
        if let Some(registry) = &self.shared.registry {
            registry.update(&pod);
        }
        self.pods.insert(uid.clone(), pod);
        self.refresh_load(&uid);
    }

    /// Re-derives what `uid` counts against a node (after any change of the pod or of its
    /// assumed node), keeping `loads` equal to a fresh count over all pods.
    fn refresh_load(&mut self, uid: &str) {
        if let Some((i, r)) = self.placed.remove(uid)
            && let Some(load) = self.loads.get_mut(i)
        {
            load.pods -= 1;
            load.requested.cpu_milli -= r.cpu_milli;
            load.requested.memory_milli -= r.memory_milli;
        }
        let Some(pod) = self.pods.get(uid) else {
            return;
        };
        if is_terminal(pod) {
            return;
        }
        let index = match node_name(pod) {
            Some(n) => self.node_index(n),
            None => self.assumed.get(uid).copied(),
        };
        if let Some(i) = index
            && let Some(load) = self.loads.get_mut(i)
        {
            let r = resources::pod_requests(pod);
            load.pods += 1;
            load.requested.cpu_milli += r.cpu_milli;
            load.requested.memory_milli += r.memory_milli;
            self.placed.insert(uid.to_owned(), (i, r));
        }
    }

    fn forget(&mut self, uid: &str) {
        self.pods.remove(uid);
        self.refresh_load(uid);
        if let Some(registry) = &self.shared.registry {
            registry.remove(uid);
        }
        self.ipam.release(uid);
        self.assumed.remove(uid);
        self.started.remove(uid);
        self.deleted.remove(uid);
        self.retry_after.remove(uid);
        self.unschedulable.remove(uid);
    }

    /// Looks again at the pods whose back-off ran out. Only those: every other pod is either
    /// settled (running, bound elsewhere, force-deleted) or has a task in flight whose
    /// completion reconciles it, and any change to it arrives as a watch event; so a resync
    /// costs O(pods backing off), not O(all pods) every interval.
    fn resync(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .retry_after
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in &due {
            self.retry_after.remove(uid);
        }
        for uid in due {
            self.reconcile(&uid);
        }
    }

    fn on_task_done(&mut self, done: TaskDone) {
        self.inflight.remove(&done.uid);
        match (done.kind, done.ok) {
            (TaskKind::Start, true) => {
                self.started.insert(done.uid.clone());
            }
            (TaskKind::Delete, true) => {
                self.deleted.insert(done.uid.clone());
            }
            (TaskKind::Bind, false) => {
                self.assumed.remove(&done.uid);
                self.refresh_load(&done.uid);
            }
            _ => {}
        }
        if !done.ok || done.kind == TaskKind::Unschedulable {
            self.retry_after
                .insert(done.uid.clone(), Instant::now() + self.cfg.resync_interval);
        }
        self.reconcile(&done.uid);
    }

    fn node_index(&self, name: &str) -> Option<usize> {
        self.node_by_name.get(name).copied()
    }

    /// Works out what `uid` needs next and starts it, unless something is already in flight.
    fn reconcile(&mut self, uid: &str) {
        if self.inflight.contains(uid) || self.retry_after.contains_key(uid) {
            return;
        }
        let Some(pod) = self.pods.get(uid).cloned() else {
            return;
        };
        let node = node_name(&pod).and_then(|n| self.node_index(n));
        if pod.metadata.deletion_timestamp.is_some() {
            if let Some(i) = node
                && !self.deleted.contains(uid)
            {
                self.spawn_delete(uid, pod, i);
            }
            return;
        }
        match (node_name(&pod), node) {
            (None, _) => self.schedule(uid, pod),
            (Some(_), Some(i)) => {
                if self.started.contains(uid) {
                    return;
                }
                let status = pod.status.as_ref();
                let already = is_terminal(&pod)
                    || (status.and_then(|s| s.phase.as_deref()) == Some("Running")
                        && status.and_then(|s| s.pod_ip.as_deref()).is_some());
                if already {
                    self.started.insert(uid.to_owned());
                    return;
                }
                self.spawn_start(uid, pod, i);
            }
            // Bound to a node that is not ours (a real node on a real cluster).
            (Some(_), None) => {}
        }
    }

    fn schedule(&mut self, uid: &str, pod: Arc<Pod>) {
        let spec = pod.spec.as_ref();
        if !self.cfg.schedule
            || is_terminal(&pod)
            || self.assumed.contains_key(uid)
            || !self
                .cfg
                .answers_to(spec.and_then(|s| s.scheduler_name.as_deref()))
        {
            return;
        }
        match scheduling::select_node(
            &pod,
            &self.cfg.nodes,
            &self.loads,
            self.cfg.strategy,
            &mut self.cursor,
        ) {
            Ok(i) => {
                self.unschedulable.remove(uid);
                self.assumed.insert(uid.to_owned(), i);
                self.refresh_load(uid);
                self.spawn(
                    uid,
                    TaskKind::Bind,
                    bind(self.ctx(), pod, self.cfg.nodes[i].name.clone()),
                );
            }
            Err(u) => {
                if self.unschedulable.get(uid) == Some(&u.message) {
                    // Already reported; look again after the resync interval.
                    self.retry_after
                        .insert(uid.to_owned(), Instant::now() + self.cfg.resync_interval);
                    return;
                }
                self.unschedulable.insert(uid.to_owned(), u.message.clone());
                self.spawn(
                    uid,
                    TaskKind::Unschedulable,
                    report_unschedulable(self.ctx(), pod, u.message),
                );
            }
        }
    }

    fn spawn_start(&mut self, uid: &str, pod: Arc<Pod>, node: usize) {
        let host_ip = self.node_ips[node].clone();
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let pod_ip = if host_network {
            host_ip.clone()
        } else {
            match self.ipam.allocate(uid) {
                Some(ip) => ip.to_string(),
                None => {
                    warn!(pod = ?ns_name(&pod), cidr = %self.cfg.pod_cidr, "pod cidr exhausted");
                    self.retry_after
                        .insert(uid.to_owned(), Instant::now() + self.cfg.resync_interval);
                    return;
                }
            }
        };
        let outcome = self.cfg.outcome_for(&pod);
        let node_name = self.cfg.nodes[node].name.clone();
        let fut = start_pod(self.ctx(), pod, node_name, host_ip, pod_ip, outcome);
        self.spawn(uid, TaskKind::Start, fut);
    }

    fn spawn_delete(&mut self, uid: &str, pod: Arc<Pod>, node: usize) {
        let node_name = self.cfg.nodes[node].name.clone();
        let fut = finish_deletion(self.ctx(), pod, node_name);
        self.spawn(uid, TaskKind::Delete, fut);
    }

    fn spawn(
        &mut self,
        uid: &str,
        kind: TaskKind,
        fut: impl Future<Output = bool> + Send + 'static,
    ) {
        self.inflight.insert(uid.to_owned());
        let uid = uid.to_owned();
        self.tasks.spawn(async move {
            let ok = fut.await;
            TaskDone { uid, kind, ok }
        });
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            client: self.client.clone(),
            cfg: self.cfg.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// What a spawned API task needs.
struct Ctx {
    client: Client,
    cfg: Arc<KubeletConfig>,
    shared: Arc<Shared>,
}

impl Ctx {
    fn pods(&self, pod: &Pod) -> Api<Pod> {
        Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        )
    }

    fn failed(&self, action: &str, pod: &Pod, e: &kube::Error) {
        warn!(pod = ?ns_name(pod), %action, error = %e, "api call failed");
        self.shared.bump(|c| &c.api_errors);
    }

    /// Records events, best effort: a lost event never blocks the pod's progress.
    async fn record(&self, events: Vec<Event>) {
        if !self.cfg.record_events {
            return;
        }
        for event in events {
            let ns = event.metadata.namespace.clone().unwrap_or_default();
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            let pp = post_params(event_manager(&event));
            match with_retries(self.cfg.retry, "create event", || api.create(&pp, &event)).await {
                Ok(_) => self.shared.bump(|c| &c.events_recorded),
                Err(e) => {
                    warn!(namespace = %ns, reason = ?event.reason, error = %e, "could not record event");
                    self.shared.bump(|c| &c.api_errors);
                }
            }
        }
    }

    async fn patch_status(
        &self,
        pod: &Pod,
        status: &impl serde::Serialize,
        manager: &str,
    ) -> kube::Result<Pod> {
        let api = self.pods(pod);
        let name = pod.metadata.name.clone().unwrap_or_default();
        // The UID makes the patch fail instead of touching a same-named successor pod.
        let body = json!({"metadata": {"uid": pod.metadata.uid}, "status": status});
        let pp = PatchParams {
            field_manager: Some(manager.to_owned()),
            ..Default::default()
        };
        let merge = Patch::Merge(&body);
        with_retries(self.cfg.retry, "patch pod status", || {
            api.patch_status(&name, &pp, &merge)
        })
        .await
    }
}

async fn bind(ctx: Ctx, pod: Arc<Pod>, node: String) -> bool {
    let (namespace, name) = ns_name(&pod);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.clone()),
            ..Default::default()
        },
    };
    let api = ctx.pods(&pod);
    let pp = post_params(SCHEDULER);
    let result = with_retries(ctx.cfg.retry, "bind pod", || {
        api.create_subresource::<_, serde_json::Value>("binding", &name, &pp, &binding)
    })
    .await;
    match result {
        Ok(_) => {
            info!(%namespace, %name, %node, "bound pod");
            ctx.shared.bump(|c| &c.bound);
            ctx.shared.emit(SimEvent::Bound {
                namespace,
                name,
                node: node.clone(),
            });
            ctx.record(vec![events::scheduled(&pod, &node, Timestamp::now())])
                .await;
            true
        }
        // 409: already bound (by us before a restart, or by someone else); 404: gone.
        Err(e) if matches!(api_code(&e), Some(409 | 404)) => {
            debug!(%namespace, %name, error = %e, "pod not bound: already bound or gone");
            true
        }
        Err(e) => {
            ctx.failed("bind pod", &pod, &e);
            false
        }
    }
}

async fn report_unschedulable(ctx: Ctx, pod: Arc<Pod>, message: String) -> bool {
    let (namespace, name) = ns_name(&pod);
    info!(%namespace, %name, %message, "pod is unschedulable");
    ctx.shared.bump(|c| &c.unschedulable);
    ctx.shared.emit(SimEvent::Unschedulable {
        namespace,
        name,
        message: message.clone(),
    });
    let now = Timestamp::now();
    let status = json!({"conditions": [{
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": Time(now),
    }]});
    if let Err(e) = ctx.patch_status(&pod, &status, SCHEDULER).await
        && api_code(&e) != Some(404)
    {
        ctx.failed("mark pod unschedulable", &pod, &e);
    }
    ctx.record(vec![events::failed_scheduling(&pod, &message, now)])
        .await;
    true
}

fn container_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
                .map(|c| c.name.clone())
                .collect()
        })
        .unwrap_or_default()
}

async fn start_pod(
    ctx: Ctx,
    mut pod: Arc<Pod>,
    node: String,
    host_ip: String,
    pod_ip: String,
    outcome: PodOutcome,
) -> bool {
    let (namespace, name) = ns_name(&pod);
    if !ctx.cfg.start_delay.is_zero() {
        let creating = status::creating_status(&pod, &host_ip, Timestamp::now());
        match ctx.patch_status(&pod, &creating, KUBELET).await {
            Ok(updated) => pod = Arc::new(updated),
            Err(e) if matches!(api_code(&e), Some(404 | 409)) => return true,
            Err(e) => {
                ctx.failed("patch pod status (creating)", &pod, &e);
                return false;
            }
        }
        tokio::time::sleep(ctx.cfg.start_delay).await;
    }
    let now = Timestamp::now();
    let mut evs = Vec::new();
    for c in container_names(&pod) {
        for kind in [
            ContainerEvent::Pulled,
            ContainerEvent::Created,
            ContainerEvent::Started,
        ] {
            evs.push(events::kubelet_container_event(&pod, &node, &c, kind, now));
        }
    }
    ctx.record(evs).await;
    let status = status::started_status(&pod, &host_ip, &pod_ip, Timestamp::now(), outcome);
    match ctx.patch_status(&pod, &status, KUBELET).await {
        Ok(_) => {
            info!(%namespace, %name, %node, %pod_ip, ?outcome, "pod started");
            ctx.shared.bump(|c| match outcome {
                PodOutcome::Running => &c.running,
                PodOutcome::Failed => &c.failed,
                PodOutcome::Succeeded => &c.succeeded,
            });
            ctx.shared.emit(SimEvent::Started {
                namespace,
                name,
                outcome,
                pod_ip,
            });
            true
        }
        // Gone, or replaced by a pod with the same name: nothing left to run.
        Err(e) if matches!(api_code(&e), Some(404 | 409)) => true,
        Err(e) => {
            ctx.failed("patch pod status (started)", &pod, &e);
            false
        }
    }
}

async fn finish_deletion(ctx: Ctx, pod: Arc<Pod>, node: String) -> bool {
    let (namespace, name) = ns_name(&pod);
    if !ctx.cfg.deletion_delay.is_zero() {
        tokio::time::sleep(ctx.cfg.deletion_delay).await;
    }
    let running = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| {
            cs.iter()
                .filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let now = Timestamp::now();
    ctx.record(
        running
            .iter()
            .map(|c| events::kubelet_container_event(&pod, &node, c, ContainerEvent::Killing, now))
            .collect(),
    )
    .await;
    let api = ctx.pods(&pod);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match with_retries(ctx.cfg.retry, "delete pod", || api.delete(&name, &dp)).await {
        Ok(_) => {
            info!(%namespace, %name, %node, "pod deleted");
            ctx.shared.bump(|c| &c.deleted);
            ctx.shared.emit(SimEvent::Deleted { namespace, name });
            true
        }
        // Already gone, or the name now belongs to a new pod.
        Err(e) if matches!(api_code(&e), Some(404 | 409)) => true,
        Err(e) => {
            ctx.failed("delete pod", &pod, &e);
            false
        }
    }
}
