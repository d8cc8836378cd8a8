//! Prometheus metrics, and the operational state the readiness probe reads.
//!
//! Metric families carry controller-runtime's names where the meaning matches, so dashboards
//! and alerts written for Go controllers work unchanged:
//! `controller_runtime_reconcile_total{controller,result}`,
//! `controller_runtime_reconcile_errors_total{controller}`,
//! `controller_runtime_reconcile_time_seconds{controller}`,
//! `controller_runtime_active_workers{controller}`,
//! `controller_runtime_max_concurrent_reconciles{controller}` and `workqueue_depth{name}`.
//! vcsync's own families start with `vcsync_`. `workqueue_depth` exists only for controllers
//! that run on vcsync's own queue ([`crate::sync::queue::FairQueue`], read at scrape time):
//! kube-runtime's scheduler does not expose how many objects wait, and a number derived from
//! watch events would count duplicates the scheduler merges, so it could not be honest.
//!
//! Every label value is a `&'static str` from a fixed set (controller and kind names, verbs,
//! status codes, error classes), never an object name, so cardinality stays bounded however
//! many objects a tenant creates.
//!
//! [`instrument_client`] wraps a [`kube::Client`] so every API request is counted by API,
//! verb, kind and status code, and so the readiness probe knows when each API last answered.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;

use crate::markers;
use crate::sync::SyncError;

/// What the last check found of one host-namespace guardrail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardrailState {
    /// In place.
    Present,
    /// Known to be absent (or too weak).
    Missing,
    /// Could not be read (no permission, API error): neither present nor missing.
    Unknown,
}

/// Which API server a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiLabel {
    /// The host cluster.
    Host,
    /// The tenant's virtual API.
    Virtual,
}

impl ApiLabel {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiLabel::Host => "host",
            ApiLabel::Virtual => "virtual",
        }
    }

    fn index(self) -> usize {
        match self {
            ApiLabel::Host => 0,
            ApiLabel::Virtual => 1,
        }
    }
}

/// Which way a change flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A virtual object's change written to the host.
    Down,
    /// A host object's status written back to the virtual object.
    Up,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Down => "down",
            Direction::Up => "up",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    name: &'static str,
}

/// Reads a queue's depth at scrape time.
type DepthSource = Box<dyn Fn() -> usize + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    controller: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    controller: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    direction: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    api: &'static str,
    verb: &'static str,
    kind: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KubeletLabels {
    endpoint: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    kind: &'static str,
    rule: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ItemLabels {
    item: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    api: &'static str,
    cache: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// controller-runtime's buckets for `controller_runtime_reconcile_time_seconds`, so its
/// dashboards' quantiles mean the same here.
const RECONCILE_BUCKETS: [f64; 40] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
    1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0,
    25.0, 30.0, 40.0, 50.0, 60.0,
];

fn reconcile_histogram() -> Histogram {
    Histogram::new(RECONCILE_BUCKETS)
}

/// 5 ms to about 82 s, doubling: a sync is a watch event plus one or two API round trips, but
/// retries after errors stretch it to minutes.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Changes observed but not yet written, beyond which new ones are not timed (deleted objects
/// leave entries behind that no reconcile clears).
const PENDING_CAP: usize = 10_000;
/// Entries older than this are dropped when the map is full.
const PENDING_MAX_AGE: Duration = Duration::from_secs(600);
/// How often the objects-synced gauges are refreshed from the host caches.
const OBJECTS_EVERY: Duration = Duration::from_secs(5);

/// Every metric vcsync exports, plus the operational facts the health endpoint reads
/// (when each API last answered, which caches are synced).
pub struct Metrics {
    registry: Registry,
    reconcile_total: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ControllerLabels, Counter>,
    reconcile_error_reasons: Family<ReasonLabels, Counter>,
    reconcile_time: HistogramFamily<ControllerLabels>,
    active_workers: Family<ControllerLabels, Gauge>,
    max_concurrent: Family<ControllerLabels, Gauge>,
    sync_latency: HistogramFamily<LatencyLabels>,
    api_requests: Family<RequestLabels, Counter>,
    objects_synced: Family<KindLabels, Gauge>,
    policy_violations: Family<RuleLabels, Counter>,
    ownership_conflicts: Family<KindLabels, Counter>,
    leader: Gauge,
    leader_losses: Counter,
    guardrails_missing: Family<ItemLabels, Gauge>,
    guardrails_unknown: Family<ItemLabels, Gauge>,
    cache_synced: Family<CacheLabels, Gauge>,
    workqueue_depth: Family<QueueLabels, Gauge>,
    kubelet_requests: Family<KubeletLabels, Counter>,
    metrics_api_requests: Family<CodeLabels, Counter>,
    waiting_objects: Family<CauseLabels, Gauge>,
    /// Causes objects wait for past the grace period: cause -> (what, how many).
    waits: Mutex<BTreeMap<&'static str, (String, usize)>>,
    kubelet_streams: Family<EndpointLabels, Gauge>,
    depth_sources: Mutex<Vec<(&'static str, DepthSource)>>,
    /// When each API last answered any request (any status), indexed by [`ApiLabel::index`].
    last_contact: Mutex<[Option<Instant>; 2]>,
    /// Since when each API has failed every request (no response at all), if it does.
    failing_since: Mutex<[Option<Instant>; 2]>,
    /// Registered caches and whether each has synced.
    caches: Mutex<BTreeMap<(ApiLabel, &'static str), bool>>,
    /// Guardrails checked so far and the state of each.
    guardrails: Mutex<BTreeMap<&'static str, GuardrailState>>,
    /// First unhandled change per object: (direction, kind, `namespace/name`) -> when seen.
    pending: Mutex<HashMap<(Direction, &'static str, String), Instant>>,
}

impl Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// A registry with every family registered (families without samples still print their
    /// `# HELP` and `# TYPE` lines, so a scrape shows what exists).
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let reconcile_total = Family::<ResultLabels, Counter>::default();
        // prometheus-client appends `_total` to counters.
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            reconcile_total.clone(),
        );
        let reconcile_errors = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            reconcile_errors.clone(),
        );
        let reconcile_error_reasons = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "vcsync_reconcile_errors",
            "Reconciliation errors per controller and error class",
            reconcile_error_reasons.clone(),
        );
        let reconcile_time: HistogramFamily<ControllerLabels> =
            Family::new_with_constructor(reconcile_histogram);
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            reconcile_time.clone(),
        );
        let active_workers = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            active_workers.clone(),
        );
        let max_concurrent = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            max_concurrent.clone(),
        );
        let sync_latency: HistogramFamily<LatencyLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "vcsync_sync_latency_seconds",
            "Time from observing a change (virtual object for down, host object for up) to the write on the other side being acknowledged",
            sync_latency.clone(),
        );
        let api_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "vcsync_api_requests",
            "API requests by API (host or virtual), verb, kind and HTTP status code (error: no response)",
            api_requests.clone(),
        );
        let objects_synced = Family::<KindLabels, Gauge>::default();
        registry.register(
            "vcsync_objects_synced",
            "Host objects this tenant's vcsync manages, per kind",
            objects_synced.clone(),
        );
        let policy_violations = Family::<RuleLabels, Counter>::default();
        registry.register(
            "vcsync_policy_violations",
            "Virtual objects refused because they break a sync rule, per kind and rule",
            policy_violations.clone(),
        );
        let ownership_conflicts = Family::<KindLabels, Counter>::default();
        registry.register(
            "vcsync_ownership_conflicts",
            "Reconciles that found the host name taken by an object this tenant does not own",
            ownership_conflicts.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "vcsync_leader",
            "1 while this replica holds the leader lease (or leader election is off), else 0",
            leader.clone(),
        );
        let leader_losses = Counter::default();
        registry.register(
            "vcsync_leader_losses",
            "Times this replica lost the leader lease without being asked to stop (it stops writing and campaigns again)",
            leader_losses.clone(),
        );
        let guardrails_missing = Family::<ItemLabels, Gauge>::default();
        registry.register(
            "vcsync_guardrails_missing",
            "1 for each host-namespace guardrail found missing at the last check, else 0",
            guardrails_missing.clone(),
        );
        let guardrails_unknown = Family::<ItemLabels, Gauge>::default();
        registry.register(
            "vcsync_guardrails_unknown",
            "1 for each host-namespace guardrail that could not be read at the last check (no permission), else 0",
            guardrails_unknown.clone(),
        );
        let cache_synced = Family::<CacheLabels, Gauge>::default();
        registry.register(
            "vcsync_cache_synced",
            "1 once a watch cache has completed its initial list, else 0",
            cache_synced.clone(),
        );
        let workqueue_depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "workqueue_depth",
            "Current depth of workqueue (keys waiting, not those being processed)",
            workqueue_depth.clone(),
        );
        let waiting_objects = Family::<CauseLabels, Gauge>::default();
        registry.register(
            "vcsync_waiting_objects",
            "Objects held back past the grace period, by what they wait for",
            waiting_objects.clone(),
        );
        let kubelet_requests = Family::<KubeletLabels, Counter>::default();
        registry.register(
            "vcsync_kubelet_requests",
            "Requests to the virtual nodes' kubelet API by endpoint and status code",
            kubelet_requests.clone(),
        );
        let metrics_api_requests = Family::<CodeLabels, Counter>::default();
        registry.register(
            "vcsync_metrics_api_requests",
            "Requests to the virtual cluster's metrics.k8s.io API by status code",
            metrics_api_requests.clone(),
        );
        let kubelet_streams = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            "vcsync_kubelet_active_streams",
            "Log streams and upgraded exec, attach and port-forward sessions in progress",
            kubelet_streams.clone(),
        );
        Metrics {
            registry,
            kubelet_requests,
            metrics_api_requests,
            kubelet_streams,
            waiting_objects,
            waits: Mutex::new(BTreeMap::new()),
            reconcile_total,
            reconcile_errors,
            reconcile_error_reasons,
            reconcile_time,
            active_workers,
            max_concurrent,
            sync_latency,
            api_requests,
            objects_synced,
            policy_violations,
            ownership_conflicts,
            leader,
            leader_losses,
            guardrails_missing,
            guardrails_unknown,
            cache_synced,
            workqueue_depth,
            depth_sources: Mutex::new(Vec::new()),
            last_contact: Mutex::new([None, None]),
            failing_since: Mutex::new([None, None]),
            caches: Mutex::new(BTreeMap::new()),
            guardrails: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// `n` objects have waited for `cause` (described by `what`) past the grace period.
    pub fn set_waiting(&self, cause: &'static str, what: &str, n: usize) {
        self.waiting_objects
            .get_or_create(&CauseLabels { cause })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
        let mut waits = lock(&self.waits);
        if n == 0 {
            waits.remove(cause);
        } else {
            waits.insert(cause, (what.to_owned(), n));
        }
    }

    /// Causes objects wait for past the grace period: (cause, what, how many).
    pub fn waiting(&self) -> Vec<(&'static str, String, usize)> {
        lock(&self.waits)
            .iter()
            .map(|(c, (what, n))| (*c, what.clone(), *n))
            .collect()
    }

    /// Counts one kubelet API request (`endpoint` and `code` are static label values).
    pub fn kubelet_request(&self, endpoint: &'static str, code: &'static str) {
        self.kubelet_requests
            .get_or_create(&KubeletLabels { endpoint, code })
            .inc();
    }

    /// Counts one request to the metrics API (`code` is a static label value).
    pub fn metrics_api_request(&self, code: &'static str) {
        self.metrics_api_requests
            .get_or_create(&CodeLabels { code })
            .inc();
    }

    /// A kubelet API session of `endpoint` started (`+1`) or ended (`-1`).
    pub fn kubelet_stream(&self, endpoint: &'static str, delta: i64) {
        self.kubelet_streams
            .get_or_create(&EndpointLabels { endpoint })
            .inc_by(delta);
    }

    /// The registry in the OpenMetrics text format (what `/metrics` serves).
    pub fn encode(&self) -> String {
        for (name, depth) in lock(&self.depth_sources).iter() {
            self.workqueue_depth
                .get_or_create(&QueueLabels { name })
                .set(i64::try_from(depth()).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Starts timing one reconcile of the controller for `kind`; finish it with
    /// [`ReconcileTimer::finish`]. Dropping it unfinished (a reconcile cancelled at shutdown)
    /// only releases the worker.
    pub fn start_reconcile(self: &Arc<Self>, kind: &'static str) -> ReconcileTimer {
        let controller = controller_label(kind);
        self.active_workers
            .get_or_create(&ControllerLabels { controller })
            .inc();
        ReconcileTimer {
            metrics: self.clone(),
            kind,
            controller,
            started: Instant::now(),
        }
    }

    /// Exports `workqueue_depth{name}` as `depth()` reads it at each scrape (a queue
    /// registered again under the same name replaces the earlier one).
    pub fn track_queue_depth(
        &self,
        name: &'static str,
        depth: impl Fn() -> usize + Send + Sync + 'static,
    ) {
        let mut sources = lock(&self.depth_sources);
        sources.retain(|(n, _)| *n != name);
        sources.push((name, Box::new(depth)));
    }

    /// A controller for `kind` started with `concurrency` workers: records the concurrency
    /// and creates its series at zero, as controller-runtime does, so rates and absent-series
    /// alerts work before the first reconcile (a family prints nothing until it has a series).
    pub fn controller_started(&self, kind: &'static str, concurrency: usize) {
        let controller = controller_label(kind);
        let labels = ControllerLabels { controller };
        self.max_concurrent
            .get_or_create(&labels)
            .set(i64::try_from(concurrency).unwrap_or(i64::MAX));
        for result in ["success", "error", "requeue", "requeue_after"] {
            let _ = self
                .reconcile_total
                .get_or_create(&ResultLabels { controller, result });
        }
        let _ = self.reconcile_errors.get_or_create(&labels);
        let _ = self.reconcile_time.get_or_create(&labels);
        let _ = self.active_workers.get_or_create(&labels);
        let _ = self.sync_latency.get_or_create(&LatencyLabels {
            direction: Direction::Down.as_str(),
            kind,
        });
        let _ = self.ownership_conflicts.get_or_create(&KindLabels { kind });
        let _ = self.policy_violations.get_or_create(&RuleLabels {
            kind,
            rule: "untranslatable",
        });
    }

    fn record_reconcile(
        &self,
        kind: &'static str,
        controller: &'static str,
        elapsed: Duration,
        result: Result<bool, &SyncError>,
    ) {
        let label = match result {
            Ok(false) => "success",
            Ok(true) => "requeue_after",
            // Waiting for a dependency is a planned retry, not a failure.
            Err(SyncError::Waiting { .. }) => "requeue",
            Err(_) => "error",
        };
        self.reconcile_total
            .get_or_create(&ResultLabels {
                controller,
                result: label,
            })
            .inc();
        self.reconcile_time
            .get_or_create(&ControllerLabels { controller })
            .observe(elapsed.as_secs_f64());
        if let Err(err) = result
            && !matches!(err, SyncError::Waiting { .. })
        {
            self.reconcile_errors
                .get_or_create(&ControllerLabels { controller })
                .inc();
            self.reconcile_error_reasons
                .get_or_create(&ReasonLabels {
                    controller,
                    reason: err.metric_label(),
                })
                .inc();
            match err {
                SyncError::Foreign { .. } => self.ownership_conflict(kind),
                SyncError::Untranslatable { .. } => self.policy_violation(kind, "untranslatable"),
                _ => {}
            }
        }
    }

    /// Counts a host name found taken by an object this tenant does not own.
    pub fn ownership_conflict(&self, kind: &'static str) {
        self.ownership_conflicts
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// Counts a virtual object refused by sync rule `rule` (a fixed name such as
    /// `untranslatable`; the isolation policy adds its own rule names).
    pub fn policy_violation(&self, kind: &'static str, rule: &'static str) {
        self.policy_violations
            .get_or_create(&RuleLabels { kind, rule })
            .inc();
    }

    /// Sets the leader gauge.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Counts one loss of the leader lease.
    pub fn leader_lost(&self) {
        self.leader_losses.inc();
    }

    /// Whether the leader gauge says this replica leads.
    pub fn is_leader(&self) -> bool {
        self.leader.get() == 1
    }

    /// Records the state of guardrail `item` (e.g. `network-policy`): the gauge
    /// `vcsync_guardrails_missing` is 1 only when it is known to be missing, and
    /// `vcsync_guardrails_unknown` is 1 while it cannot be read.
    pub fn set_guardrail(&self, item: &'static str, state: GuardrailState) {
        self.guardrails_missing
            .get_or_create(&ItemLabels { item })
            .set(i64::from(state == GuardrailState::Missing));
        self.guardrails_unknown
            .get_or_create(&ItemLabels { item })
            .set(i64::from(state == GuardrailState::Unknown));
        lock(&self.guardrails).insert(item, state);
    }

    /// Guardrails checked so far, with the state of each.
    pub fn guardrails(&self) -> Vec<(&'static str, GuardrailState)> {
        lock(&self.guardrails)
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    /// Sets how many host objects of `kind` this tenant manages.
    pub fn set_objects_synced(&self, kind: &'static str, n: usize) {
        self.objects_synced
            .get_or_create(&KindLabels { kind })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts one API request and notes that the API answered (any HTTP status means it is
    /// reachable; `code` is `error` when no response came back).
    pub fn api_request(
        &self,
        api: ApiLabel,
        verb: &'static str,
        kind: &'static str,
        code: &'static str,
    ) {
        self.api_requests
            .get_or_create(&RequestLabels {
                api: api.as_str(),
                verb,
                kind,
                code,
            })
            .inc();
        if code == "error" {
            self.failure(api, Instant::now());
        } else {
            self.contact(api, Instant::now());
        }
    }

    /// Notes that a request to `api` got no response at all (refused, reset, timed out).
    pub fn failure(&self, api: ApiLabel, at: Instant) {
        let mut failing = lock(&self.failing_since);
        let slot = &mut failing[api.index()];
        if slot.is_none() {
            *slot = Some(at);
        }
    }

    /// Since when every request to `api` has failed without a response (`None` once it
    /// answers again).
    pub fn failing_since(&self, api: ApiLabel) -> Option<Instant> {
        lock(&self.failing_since)[api.index()]
    }

    /// Notes that `api` answered at `at`.
    pub fn contact(&self, api: ApiLabel, at: Instant) {
        let mut last = lock(&self.last_contact);
        let slot = &mut last[api.index()];
        if slot.is_none_or(|prev| prev < at) {
            *slot = Some(at);
        }
        drop(last);
        lock(&self.failing_since)[api.index()] = None;
    }

    /// When `api` last answered a request.
    pub fn last_contact(&self, api: ApiLabel) -> Option<Instant> {
        lock(&self.last_contact)[api.index()]
    }

    /// Registers a cache the readiness probe waits for, not yet synced.
    fn expect_cache(&self, api: ApiLabel, cache: &'static str) {
        lock(&self.caches).insert((api, cache), false);
        self.cache_synced
            .get_or_create(&CacheLabels {
                api: api.as_str(),
                cache,
            })
            .set(0);
    }

    /// Whether the cache registered as `(api, cache)` has synced.
    pub fn cache_synced(&self, api: ApiLabel, cache: &'static str) -> bool {
        lock(&self.caches)
            .get(&(api, cache))
            .copied()
            .unwrap_or(false)
    }

    /// [`crate::sync::cached_stream`] that also reports, for readiness and
    /// `vcsync_cache_synced{api,cache}`, when the cache's initial list is complete.
    ///
    /// The signal is the watcher's `InitDone` event rather than
    /// [`Store::wait_until_ready`]: kube-runtime 5 wakes only the most recent of several
    /// concurrent waiters of one store, so an extra waiter could stall a controller's.
    pub fn cached_stream<K>(
        self: &Arc<Self>,
        api: ApiLabel,
        cache: &'static str,
        list: kube::Api<K>,
        cfg: watcher::Config,
    ) -> (
        Store<K>,
        impl Stream<Item = Result<K, watcher::Error>> + Send + use<K>,
    )
    where
        K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
        K::DynamicType: Default + Eq + Hash + Clone,
    {
        let (reader, writer) = reflector::store();
        (
            reader,
            self.cached_stream_into(api, cache, list, cfg, writer),
        )
    }

    /// Like [`Metrics::cached_stream`], filling a store created elsewhere.
    pub fn cached_stream_into<K>(
        self: &Arc<Self>,
        api: ApiLabel,
        cache: &'static str,
        list: kube::Api<K>,
        cfg: watcher::Config,
        writer: reflector::store::Writer<K>,
    ) -> impl Stream<Item = Result<K, watcher::Error>> + Send + use<K>
    where
        K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
        K::DynamicType: Default + Eq + Hash + Clone,
    {
        self.cached_stream_observed(api, cache, list, cfg, writer, |_| {})
    }

    /// Like [`Metrics::cached_stream_into`], also handing every raw watch event (after
    /// stripping, before the store sees it) to `observe`: for indexes that must follow the
    /// store exactly, re-lists included.
    pub fn cached_stream_observed<K, F>(
        self: &Arc<Self>,
        api: ApiLabel,
        cache: &'static str,
        list: kube::Api<K>,
        cfg: watcher::Config,
        writer: reflector::store::Writer<K>,
        observe: F,
    ) -> impl Stream<Item = Result<K, watcher::Error>> + Send + use<K, F>
    where
        F: Fn(&watcher::Event<K>) + Send + 'static,
        K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
        K::DynamicType: Default + Eq + Hash + Clone,
    {
        self.stream(api, cache, list, cfg, writer, |_| {}, observe)
    }

    /// Like [`Metrics::cached_stream`], caching objects as `strip` leaves them: for caches
    /// whose readers need only the metadata of large, numerous objects (token Secrets).
    pub fn cached_stream_stripped<K, S>(
        self: &Arc<Self>,
        api: ApiLabel,
        cache: &'static str,
        list: kube::Api<K>,
        cfg: watcher::Config,
        strip: S,
    ) -> (
        Store<K>,
        impl Stream<Item = Result<K, watcher::Error>> + Send + use<K, S>,
    )
    where
        S: FnMut(&mut K) + Send + 'static,
        K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
        K::DynamicType: Default + Eq + Hash + Clone,
    {
        let (reader, writer) = reflector::store();
        (
            reader,
            self.stream(api, cache, list, cfg, writer, strip, |_| {}),
        )
    }

    #[allow(clippy::too_many_arguments)] // private: the public constructors above name them
    fn stream<K, S, F>(
        self: &Arc<Self>,
        api: ApiLabel,
        cache: &'static str,
        list: kube::Api<K>,
        cfg: watcher::Config,
        writer: reflector::store::Writer<K>,
        mut strip: S,
        observe: F,
    ) -> impl Stream<Item = Result<K, watcher::Error>> + Send + use<K, S, F>
    where
        S: FnMut(&mut K) + Send + 'static,
        F: Fn(&watcher::Event<K>) + Send + 'static,
        K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
        K::DynamicType: Default + Eq + Hash + Clone,
    {
        self.expect_cache(api, cache);
        let metrics = self.clone();
        watcher(list, cfg)
            .backoff(crate::sync::watch_backoff())
            .modify(move |o: &mut K| {
                o.managed_fields_mut().clear();
                strip(o);
            })
            .inspect(move |e| {
                if let Ok(e) = e {
                    observe(e);
                }
                if let Ok(watcher::Event::InitDone) = e {
                    metrics.cache_ready(api, cache);
                }
            })
            .reflect(writer)
            .touched_objects()
    }

    fn cache_ready(&self, api: ApiLabel, cache: &'static str) {
        lock(&self.caches).insert((api, cache), true);
        self.cache_synced
            .get_or_create(&CacheLabels {
                api: api.as_str(),
                cache,
            })
            .set(1);
    }

    /// Registered caches that have not synced yet, as `api/cache`; `None` when no cache is
    /// registered at all (the engine has not started).
    pub fn unsynced_caches(&self) -> Option<Vec<String>> {
        let caches = lock(&self.caches);
        if caches.is_empty() {
            return None;
        }
        Some(
            caches
                .iter()
                .filter(|(_, synced)| !**synced)
                .map(|((api, cache), _)| format!("{}/{cache}", api.as_str()))
                .collect(),
        )
    }

    /// Keeps `vcsync_objects_synced{kind}` equal to the host objects of `kind` in `store`
    /// that carry this tenant's markers, until `stop`. `store` must be filled by a stream from
    /// [`Metrics::cached_stream`] registered as `(ApiLabel::Host, kind)`.
    pub async fn track_host_objects<K>(
        self: Arc<Self>,
        kind: &'static str,
        tenant: String,
        store: Store<K>,
        stop: impl std::future::Future<Output = ()>,
    ) where
        K: Resource + Clone + Send + Sync + 'static,
        K::DynamicType: Eq + Hash + Clone + Send + Sync,
    {
        let refresh = async {
            loop {
                // Before its initial list the cache would under-count.
                if !self.cache_synced(ApiLabel::Host, kind) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                let n = store
                    .state()
                    .iter()
                    .filter(|o| {
                        markers::source_of(o.meta(), &tenant).is_some_and(|(k, ..)| k == kind)
                    })
                    .count();
                self.set_objects_synced(kind, n);
                tokio::time::sleep(OBJECTS_EVERY).await;
            }
        };
        tokio::select! {
            _ = refresh => {}
            _ = stop => {}
        }
    }

    /// Notes that a change of the object `key` (`namespace/name` of the virtual object) of
    /// `kind` was observed; the first unhandled observation is kept.
    pub fn change_observed(&self, direction: Direction, kind: &'static str, key: String) {
        self.change_observed_at(direction, kind, key, Instant::now());
    }

    fn change_observed_at(
        &self,
        direction: Direction,
        kind: &'static str,
        key: String,
        at: Instant,
    ) {
        let mut pending = lock(&self.pending);
        if pending.len() >= PENDING_CAP && !pending.contains_key(&(direction, kind, key.clone())) {
            pending.retain(|_, seen| at.saturating_duration_since(*seen) < PENDING_MAX_AGE);
            if pending.len() >= PENDING_CAP {
                return;
            }
        }
        pending.entry((direction, kind, key)).or_insert(at);
    }

    /// The write for the pending change of `key` was acknowledged: observe its latency.
    pub fn change_applied(&self, direction: Direction, kind: &'static str, key: &str) {
        self.change_applied_at(direction, kind, key, Instant::now());
    }

    fn change_applied_at(&self, direction: Direction, kind: &'static str, key: &str, at: Instant) {
        let seen = lock(&self.pending).remove(&(direction, kind, key.to_owned()));
        if let Some(seen) = seen {
            self.sync_latency
                .get_or_create(&LatencyLabels {
                    direction: direction.as_str(),
                    kind,
                })
                .observe(at.saturating_duration_since(seen).as_secs_f64());
        }
    }

    /// A reconcile of `key` succeeded: changes it saw that needed no write are settled.
    pub fn settled(&self, kind: &'static str, key: &str) {
        let mut pending = lock(&self.pending);
        for d in [Direction::Down, Direction::Up] {
            pending.remove(&(d, kind, key.to_owned()));
        }
    }

    /// Passes `stream` through, noting each virtual object it yields as a downward change.
    pub fn observe_virtual<K, E, S>(
        self: &Arc<Self>,
        kind: &'static str,
        stream: S,
    ) -> impl Stream<Item = Result<K, E>> + Send + use<K, E, S>
    where
        K: Resource + Send,
        E: Send,
        S: Stream<Item = Result<K, E>> + Send,
    {
        let metrics = self.clone();
        stream.inspect(move |r| {
            if let Ok(o) = r {
                metrics.change_observed(Direction::Down, kind, crate::sync::key_of(o));
            }
        })
    }

    /// Passes `stream` through, noting each host object it yields as an upward change of the
    /// virtual object its markers name.
    pub fn observe_host<K, E, S>(
        self: &Arc<Self>,
        kind: &'static str,
        tenant: String,
        stream: S,
    ) -> impl Stream<Item = Result<K, E>> + Send + use<K, E, S>
    where
        K: Resource + Send,
        E: Send,
        S: Stream<Item = Result<K, E>> + Send,
    {
        let metrics = self.clone();
        stream.inspect(move |r| {
            if let Ok(o) = r
                && let Some((k, ns, name, _)) = markers::source_of(o.meta(), &tenant)
                && k == kind
            {
                metrics.change_observed(Direction::Up, kind, format!("{ns}/{name}"));
            }
        })
    }
}

/// Times one reconcile; see [`Metrics::start_reconcile`].
#[must_use = "a reconcile timer records nothing unless finished"]
pub struct ReconcileTimer {
    metrics: Arc<Metrics>,
    kind: &'static str,
    controller: &'static str,
    started: Instant,
}

impl ReconcileTimer {
    /// Records the outcome: `controller_runtime_reconcile_total{result}` (`success`,
    /// `requeue_after`, `requeue` for waiting on a dependency, `error`), the duration, and for
    /// errors the error counters (ownership conflicts and refusals also by kind).
    pub fn finish(self, result: Result<&Action, &SyncError>) {
        let requeue = result.map(|a| *a != Action::await_change());
        self.record(requeue);
    }

    /// [`ReconcileTimer::finish`] for reconcilers that return when to look again.
    pub fn finish_after(self, result: Result<Option<Duration>, &SyncError>) {
        self.record(result.map(|next| next.is_some()));
    }

    fn record(&self, requeue: Result<bool, &SyncError>) {
        self.metrics
            .record_reconcile(self.kind, self.controller, self.started.elapsed(), requeue);
    }
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.metrics
            .active_workers
            .get_or_create(&ControllerLabels {
                controller: self.controller,
            })
            .dec();
    }
}

/// The `controller` label for a kind: lower case, as controller-runtime names controllers.
pub fn controller_label(kind: &str) -> &'static str {
    match kind {
        "Pod" => "pod",
        "ConfigMap" => "configmap",
        "Secret" => "secret",
        "Service" => "service",
        "Endpoints" => "endpoints",
        "EndpointSlice" => "endpointslice",
        "Ingress" => "ingress",
        "NetworkPolicy" => "networkpolicy",
        "Event" => "event",
        "Node" => "node",
        _ => "other",
    }
}

/// Kinds by resource (and subresource) path segment; anything else is `other`.
const RESOURCES: [(&str, &str); 13] = [
    ("pods", "Pod"),
    ("services", "Service"),
    ("endpoints", "Endpoints"),
    ("endpointslices", "EndpointSlice"),
    ("ingresses", "Ingress"),
    ("configmaps", "ConfigMap"),
    ("secrets", "Secret"),
    ("events", "Event"),
    ("nodes", "Node"),
    ("leases", "Lease"),
    ("serviceaccounts", "ServiceAccount"),
    ("namespaces", "Namespace"),
    ("networkpolicies", "NetworkPolicy"),
];

const SUBRESOURCES: [(&str, &str, &str); 6] = [
    ("pods", "status", "Pod/status"),
    ("pods", "binding", "Pod/binding"),
    ("pods", "eviction", "Pod/eviction"),
    ("services", "status", "Service/status"),
    ("ingresses", "status", "Ingress/status"),
    ("serviceaccounts", "token", "ServiceAccount/token"),
];

/// The `verb` and `kind` labels of a request, from its method, path and query.
pub fn classify(method: &http::Method, uri: &http::Uri) -> (&'static str, &'static str) {
    let segs: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // Past `/api/v1` or `/apis/{group}/{version}`.
    let rest = match segs.as_slice() {
        ["api", _version, rest @ ..] if !rest.is_empty() => rest,
        ["apis", _group, _version, rest @ ..] if !rest.is_empty() => rest,
        ["version"] => return (simple_verb(method), "version"),
        ["api" | "apis", ..] | ["openapi", ..] => return (simple_verb(method), "discovery"),
        _ => return (simple_verb(method), "other"),
    };
    // `namespaces/{ns}/{resource}/...`, unless the path is about a namespace itself.
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let (resource, name, sub) = (rest[0], rest.get(1), rest.get(2));
    let kind = match sub {
        None => RESOURCES
            .iter()
            .find(|(r, _)| *r == resource)
            .map_or("other", |(_, k)| *k),
        Some(sub) => SUBRESOURCES
            .iter()
            .find(|(r, s, _)| *r == resource && s == sub)
            .map_or("other", |(_, _, k)| *k),
    };
    let watch = uri.query().is_some_and(|q| {
        q.split('&')
            .any(|p| matches!(p, "watch=true" | "watch=1" | "watch=True"))
    });
    let verb = match *method {
        http::Method::GET if watch => "watch",
        http::Method::GET if name.is_some() => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if name.is_some() => "delete",
        http::Method::DELETE => "deletecollection",
        _ => "other",
    };
    (verb, kind)
}

fn simple_verb(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "get",
        _ => "other",
    }
}

/// The `code` label of an HTTP status: the code itself for the ones the API uses, else its
/// class.
pub fn code_label(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        101 => "101",
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        410 => "410",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        501 => "501",
        502 => "502",
        503 => "503",
        504 => "504",
        c if c < 200 => "1xx",
        c if c < 300 => "2xx",
        c if c < 400 => "3xx",
        c if c < 500 => "4xx",
        _ => "5xx",
    }
}

/// A client that sends through `client` and counts every request in
/// `vcsync_api_requests_total{api}` (and notes that `api` answered).
///
/// Wrapping the finished client rather than its tower stack keeps kube's own layers
/// (authentication, token refresh, base URL) exactly as kube builds them; errors come back
/// as the same `kube::Error` values.
pub fn instrument_client(client: Client, api: ApiLabel, metrics: Arc<Metrics>) -> Client {
    let default_ns = client.default_namespace().to_owned();
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let (client, metrics) = (client.clone(), metrics.clone());
        async move {
            let (verb, kind) = classify(req.method(), req.uri());
            let res = client.send(req).await;
            let code = match &res {
                Ok(r) => code_label(r.status()),
                Err(_) => "error",
            };
            metrics.api_request(api, verb, kind, code);
            res
        }
    });
    Client::new(service, default_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[rstest]
    #[case("GET", "/api/v1/pods?watch=true&resourceVersion=1", "watch", "Pod")]
    #[case("GET", "/api/v1/pods?labelSelector=a", "list", "Pod")]
    #[case("GET", "/api/v1/namespaces/a/pods/web", "get", "Pod")]
    #[case("PATCH", "/api/v1/namespaces/a/pods/web/status", "patch", "Pod/status")]
    #[case(
        "POST",
        "/api/v1/namespaces/a/pods/web/binding",
        "create",
        "Pod/binding"
    )]
    #[case(
        "POST",
        "/api/v1/namespaces/a/serviceaccounts/default/token",
        "create",
        "ServiceAccount/token"
    )]
    #[case("PUT", "/api/v1/namespaces/h/secrets/s", "update", "Secret")]
    #[case("DELETE", "/api/v1/namespaces/h/configmaps/c", "delete", "ConfigMap")]
    #[case(
        "DELETE",
        "/api/v1/namespaces/h/configmaps",
        "deletecollection",
        "ConfigMap"
    )]
    #[case(
        "GET",
        "/apis/coordination.k8s.io/v1/namespaces/h/leases/vcsync",
        "get",
        "Lease"
    )]
    #[case(
        "GET",
        "/apis/networking.k8s.io/v1/ingresses?watch=1",
        "watch",
        "Ingress"
    )]
    #[case("GET", "/api/v1/namespaces/h", "get", "Namespace")]
    #[case("GET", "/api/v1/namespaces", "list", "Namespace")]
    #[case("GET", "/apis/example.com/v1/widgets", "list", "other")]
    #[case("GET", "/api/v1/namespaces/a/pods/web/log", "get", "other")]
    #[case("GET", "/version", "get", "version")]
    #[case("GET", "/apis", "get", "discovery")]
    #[case("GET", "/api/v1", "get", "discovery")]
    #[case("GET", "/healthz", "get", "other")]
    fn requests_are_classified(
        #[case] method: &str,
        #[case] uri: &str,
        #[case] verb: &str,
        #[case] kind: &str,
    ) {
        let method: http::Method = method.parse().unwrap();
        let uri: http::Uri = uri.parse().unwrap();
        assert_eq!(classify(&method, &uri), (verb, kind));
    }

    #[rstest]
    #[case(200, "200")]
    #[case(422, "422")]
    #[case(418, "4xx")]
    #[case(599, "5xx")]
    #[case(226, "2xx")]
    fn codes_are_bounded(#[case] code: u16, #[case] want: &str) {
        assert_eq!(code_label(http::StatusCode::from_u16(code).unwrap()), want);
    }

    #[test]
    fn every_family_is_exported_with_controller_runtime_names() {
        let m = Arc::new(Metrics::new());
        m.controller_started("Pod", 4);
        m.track_queue_depth("pod", || 0);
        m.api_request(ApiLabel::Host, "get", "Pod", "200");
        m.set_objects_synced("Pod", 0);
        m.set_guardrail("resourcequota", GuardrailState::Present);
        m.cache_ready(ApiLabel::Host, "Pod");
        m.start_reconcile("Pod")
            .finish(Err(&SyncError::Untranslatable {
                kind: "Pod",
                key: "a/b".into(),
                reasons: "r".into(),
            }));
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                "controller_runtime_reconcile_total{controller=\"pod\",result=\"success\"}"
            ),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "controller_runtime_max_concurrent_reconciles{controller=\"pod\"}"
            ),
            Some(4.0)
        );
        for family in [
            "# TYPE controller_runtime_reconcile counter",
            "# TYPE controller_runtime_reconcile_errors counter",
            "# TYPE controller_runtime_reconcile_time_seconds histogram",
            "# TYPE controller_runtime_active_workers gauge",
            "# TYPE controller_runtime_max_concurrent_reconciles gauge",
            "# TYPE vcsync_sync_latency_seconds histogram",
            "# TYPE vcsync_api_requests counter",
            "# TYPE vcsync_objects_synced gauge",
            "# TYPE vcsync_policy_violations counter",
            "# TYPE vcsync_ownership_conflicts counter",
            "# TYPE vcsync_leader gauge",
            "# TYPE vcsync_guardrails_missing gauge",
            "# TYPE vcsync_cache_synced gauge",
            "# TYPE vcsync_reconcile_errors counter",
            "# TYPE workqueue_depth gauge",
        ] {
            assert!(text.contains(family), "{family} missing:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn reconciles_are_counted_by_result() {
        let m = Arc::new(Metrics::new());
        m.start_reconcile("Pod").finish(Ok(&Action::await_change()));
        m.start_reconcile("Pod")
            .finish(Ok(&Action::requeue(Duration::from_secs(1))));
        m.start_reconcile("Pod").finish(Err(&SyncError::Waiting {
            cause: crate::sync::waits::WaitCause::Cache,
            what: "x".into(),
        }));
        m.start_reconcile("Pod").finish(Err(&SyncError::Foreign {
            kind: "Pod",
            name: "n".into(),
            key: "a/b".into(),
        }));
        m.start_reconcile("ConfigMap")
            .finish(Err(&SyncError::Untranslatable {
                kind: "ConfigMap",
                key: "a/c".into(),
                reasons: "r".into(),
            }));
        // Cancelled: no outcome, but the worker is released.
        drop(m.start_reconcile("Pod"));
        let t = m.encode();
        let get = |p: &str| sample(&t, p);
        for (result, n) in [
            ("success", 1.0),
            ("requeue_after", 1.0),
            ("requeue", 1.0),
            ("error", 1.0),
        ] {
            assert_eq!(
                get(&format!(
                    "controller_runtime_reconcile_total{{controller=\"pod\",result=\"{result}\"}}"
                )),
                Some(n),
                "{result}:\n{t}"
            );
        }
        assert_eq!(
            get("controller_runtime_reconcile_errors_total{controller=\"pod\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("vcsync_reconcile_errors_total{controller=\"pod\",reason=\"ownership_conflict\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("vcsync_ownership_conflicts_total{kind=\"Pod\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("vcsync_policy_violations_total{kind=\"ConfigMap\",rule=\"untranslatable\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("controller_runtime_reconcile_time_seconds_count{controller=\"pod\"}"),
            Some(4.0)
        );
        assert_eq!(
            get("controller_runtime_active_workers{controller=\"pod\"}"),
            Some(0.0)
        );
    }

    #[test]
    fn latency_runs_from_the_first_unhandled_change_to_the_write() {
        let m = Metrics::new();
        let t0 = Instant::now();
        m.change_observed_at(Direction::Down, "Pod", "a/web".into(), t0);
        // A second change before the write keeps the first observation.
        m.change_observed_at(
            Direction::Down,
            "Pod",
            "a/web".into(),
            t0 + Duration::from_millis(50),
        );
        m.change_applied_at(
            Direction::Down,
            "Pod",
            "a/web",
            t0 + Duration::from_millis(300),
        );
        // Nothing pending: a second write is not timed.
        m.change_applied_at(Direction::Down, "Pod", "a/web", t0 + Duration::from_secs(9));
        // A change that needed no write is settled and never timed.
        m.change_observed_at(Direction::Up, "Pod", "a/web".into(), t0);
        m.settled("Pod", "a/web");
        m.change_applied_at(Direction::Up, "Pod", "a/web", t0 + Duration::from_secs(9));
        let t = m.encode();
        let count = |d: &str| {
            sample(
                &t,
                &format!("vcsync_sync_latency_seconds_count{{direction=\"{d}\",kind=\"Pod\"}}"),
            )
        };
        assert_eq!(count("down"), Some(1.0), "{t}");
        assert_eq!(count("up"), None, "{t}");
        let sum = sample(
            &t,
            "vcsync_sync_latency_seconds_sum{direction=\"down\",kind=\"Pod\"}",
        )
        .unwrap();
        assert!((sum - 0.3).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn pending_changes_are_bounded() {
        let m = Metrics::new();
        let t0 = Instant::now();
        for i in 0..PENDING_CAP + 10 {
            m.change_observed_at(Direction::Down, "Pod", format!("a/{i}"), t0);
        }
        assert_eq!(lock(&m.pending).len(), PENDING_CAP);
        // Old entries make room once they are stale.
        m.change_observed_at(
            Direction::Down,
            "Pod",
            "a/new".into(),
            t0 + PENDING_MAX_AGE + Duration::from_secs(1),
        );
        assert_eq!(lock(&m.pending).len(), 1);
    }

    #[test]
    fn queue_depth_is_read_at_scrape_time() {
        let m = Metrics::new();
        let depth = Arc::new(std::sync::atomic::AtomicUsize::new(3));
        let d = depth.clone();
        m.track_queue_depth("pod", move || d.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(
            sample(&m.encode(), "workqueue_depth{name=\"pod\"}"),
            Some(3.0)
        );
        depth.store(0, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            sample(&m.encode(), "workqueue_depth{name=\"pod\"}"),
            Some(0.0)
        );
    }

    #[test]
    fn gauges_and_contact() {
        let m = Metrics::new();
        m.set_leader(true);
        assert!(m.is_leader());
        m.set_guardrail("resourcequota", GuardrailState::Missing);
        m.set_guardrail("namespace", GuardrailState::Unknown);
        m.set_objects_synced("Pod", 3);
        assert_eq!(m.last_contact(ApiLabel::Host), None);
        m.api_request(ApiLabel::Host, "get", "Pod", "404");
        m.api_request(ApiLabel::Virtual, "get", "Pod", "error");
        assert!(m.last_contact(ApiLabel::Host).is_some());
        assert_eq!(m.last_contact(ApiLabel::Virtual), None);
        let t = m.encode();
        assert_eq!(sample(&t, "vcsync_leader "), Some(1.0), "{t}");
        assert_eq!(
            sample(&t, "vcsync_guardrails_missing{item=\"resourcequota\"}"),
            Some(1.0)
        );
        assert_eq!(sample(&t, "vcsync_objects_synced{kind=\"Pod\"}"), Some(3.0));
        assert_eq!(
            sample(
                &t,
                "vcsync_api_requests_total{api=\"host\",verb=\"get\",kind=\"Pod\",code=\"404\"}"
            ),
            Some(1.0),
            "{t}"
        );
        assert_eq!(
            sample(&t, "vcsync_guardrails_unknown{item=\"namespace\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&t, "vcsync_guardrails_missing{item=\"namespace\"}"),
            Some(0.0)
        );
        assert_eq!(
            m.guardrails(),
            vec![
                ("namespace", GuardrailState::Unknown),
                ("resourcequota", GuardrailState::Missing)
            ]
        );
    }

    #[test]
    fn caches_count_once_their_initial_list_is_done() {
        let m = Arc::new(Metrics::new());
        assert_eq!(m.unsynced_caches(), None);
        m.expect_cache(ApiLabel::Virtual, "Pod");
        m.expect_cache(ApiLabel::Host, "Pod");
        assert_eq!(
            m.unsynced_caches(),
            Some(vec!["host/Pod".to_owned(), "virtual/Pod".to_owned()])
        );
        m.cache_ready(ApiLabel::Virtual, "Pod");
        assert!(m.cache_synced(ApiLabel::Virtual, "Pod"));
        assert!(!m.cache_synced(ApiLabel::Host, "Pod"));
        assert_eq!(m.unsynced_caches(), Some(vec!["host/Pod".to_owned()]));
        let t = m.encode();
        assert_eq!(
            sample(&t, "vcsync_cache_synced{api=\"virtual\",cache=\"Pod\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&t, "vcsync_cache_synced{api=\"host\",cache=\"Pod\"}"),
            Some(0.0)
        );
    }
}
