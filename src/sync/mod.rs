//! The sync engine: thin I/O around the pure [`crate::translate`] functions.
//!
//! Each synced kind has a downward controller (kube-runtime `Controller` over the virtual
//! objects, also woken by changes of their host copies) that reads caches, computes the desired
//! host object, writes once, and syncs status back; and a host-side garbage collector that
//! deletes host objects whose virtual source is gone ([`gc`]). Reflector caches hold objects with
//! `managedFields` stripped, and host watches are limited to the host namespace and this tenant's
//! `managed-by` label.
//!
//! Errors are classified once ([`SyncError::is_permanent`]): conflicts and transient API faults
//! retry with per-object exponential backoff and jitter; refusals (403, 422, untranslatable or
//! foreign objects) become a Warning Event on the virtual object and wait for the next change, so
//! a bad object never hot-loops or blocks the others.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::markers;
use crate::translate::{Context, TranslateError};

pub mod events;
pub mod gc;
pub mod kinds;
pub mod networkpolicies;
pub mod nodes;
pub mod pods;
pub mod pvcs;
pub mod queue;
pub mod refs;
pub mod storageclasses;
pub mod waits;

/// Settings of the engine (from the command line).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Tenant name.
    pub tenant: String,
    /// The host namespace.
    pub host_namespace: String,
    /// Host ServiceAccount tenant pods run as.
    pub workload_service_account: String,
    /// Parallel reconciles per controller.
    pub concurrency: usize,
    /// Host Service (in the host namespace) that exposes the virtual API to tenant pods.
    pub api_service: String,
    /// Virtual Service `namespace/name` of the tenant's DNS.
    pub dns_service: (String, String),
    /// Cluster domain of the virtual cluster.
    pub cluster_domain: String,
    /// The kubelet endpoint the virtual nodes advertise (`None`: they advertise no address,
    /// so the virtual API server has no kubelet to call).
    pub kubelet: Option<crate::kubelet::NodeEndpoint>,
}

/// Why a reconcile failed. Variants name the failed action and carry the object key.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("creating host {kind} {name}: {}", brief(source))]
    CreateHost {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("updating host {kind} {name}: {}", brief(source))]
    UpdateHost {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("deleting host {kind} {name}: {}", brief(source))]
    DeleteHost {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("reading {what}: {}", brief(source))]
    Read { what: String, source: kube::Error },
    #[error("updating virtual {kind} {key} status: {}", brief(source))]
    UpdateVirtualStatus {
        kind: &'static str,
        key: String,
        source: kube::Error,
    },
    #[error("binding virtual pod {key} to node {node}: {}", brief(source))]
    BindVirtual {
        key: String,
        node: String,
        source: kube::Error,
    },
    #[error("deleting virtual {kind} {key}: {}", brief(source))]
    DeleteVirtual {
        kind: &'static str,
        key: String,
        source: kube::Error,
    },
    #[error("minting a service account token for pod {key}: {}", brief(source))]
    MintToken { key: String, source: kube::Error },
    #[error("virtual {kind} {key} cannot be synced: {reasons}")]
    Untranslatable {
        kind: &'static str,
        key: String,
        reasons: String,
    },
    #[error("host {kind} {name} exists but is not this tenant's copy of {key}: left untouched")]
    Foreign {
        kind: &'static str,
        name: String,
        key: String,
    },
    #[error("{message}")]
    PolicyViolation {
        kind: &'static str,
        key: String,
        message: String,
    },
    #[error("waiting for {what}")]
    Waiting {
        cause: waits::WaitCause,
        what: String,
    },
}

impl SyncError {
    /// The API error inside, if any.
    fn api_code(&self) -> Option<u16> {
        match self {
            SyncError::CreateHost { source, .. }
            | SyncError::UpdateHost { source, .. }
            | SyncError::DeleteHost { source, .. }
            | SyncError::Read { source, .. }
            | SyncError::UpdateVirtualStatus { source, .. }
            | SyncError::BindVirtual { source, .. }
            | SyncError::DeleteVirtual { source, .. }
            | SyncError::MintToken { source, .. } => match source {
                kube::Error::Api(s) => Some(s.code),
                _ => None,
            },
            _ => None,
        }
    }

    /// Permanent errors wait for the object to change; retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            SyncError::Untranslatable { .. }
                | SyncError::Foreign { .. }
                | SyncError::PolicyViolation { .. }
        ) || matches!(self.api_code(), Some(400 | 403 | 422))
    }

    /// A static, low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SyncError::Untranslatable { .. } => "untranslatable",
            SyncError::Foreign { .. } => "ownership_conflict",
            SyncError::PolicyViolation { .. } => "policy_violation",
            SyncError::Waiting { .. } => "waiting",
            _ => match self.api_code() {
                Some(409) => "conflict",
                Some(403) => "forbidden",
                Some(422) => "invalid",
                Some(429) => "throttled",
                Some(c) if c >= 500 => "server_error",
                Some(_) => "api_error",
                None => "transport",
            },
        }
    }

    /// The Event reason shown to the tenant.
    pub fn event_reason(&self) -> &'static str {
        match self {
            SyncError::Untranslatable { .. } => "SyncRefused",
            SyncError::Foreign { .. } => "OwnershipConflict",
            SyncError::PolicyViolation { .. } => "PolicyViolation",
            _ => "SyncFailed",
        }
    }
}

/// A one-line form of a client error: the API's own message for API errors (kube's `Display`
/// of those embeds the whole `Status`).
pub fn brief(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}

/// Join translation errors into one message.
pub fn reasons(errs: &[TranslateError]) -> String {
    errs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Per-object retry bookkeeping: exponential backoff with jitter, reset on success.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    const BASE: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(60);

    /// Record a failure of `key` and return how long to wait before the next attempt.
    pub fn next(&self, key: &str) -> Duration {
        let mut m = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key.to_string()).or_insert(0);
        *n = (*n + 1).min(16);
        let exp = Self::BASE
            .saturating_mul(1u32 << (*n - 1).min(10))
            .min(Self::MAX);
        // Full jitter between half and all of the delay spreads retries of many objects.
        let jitter = rand::random::<f64>() * 0.5 + 0.5;
        exp.mul_f64(jitter)
    }

    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Everything reconcilers share.
pub struct Shared {
    pub cfg: EngineConfig,
    pub ctx: Context,
    pub host: Client,
    pub virt: Client,
    /// Events on virtual objects.
    pub recorder: Recorder,
    pub backoff: Backoff,
    /// Virtual pods (filled by the pod controller's watch).
    pub virtual_pods: Store<crate::cache::VirtualPod>,
    /// Virtual ingresses (filled by the ingress controller's watch).
    pub virtual_ingresses: Store<k8s_openapi::api::networking::v1::Ingress>,
    /// Virtual services (filled by the service controller's watch; read by the endpoints and
    /// slice sync, which only sync those of selector-less services).
    pub virtual_services: Store<k8s_openapi::api::core::v1::Service>,
    /// Virtual namespaces (filled by the NetworkPolicy sync's watch: their labels decide what
    /// a `namespaceSelector` matches).
    pub virtual_namespaces: Store<k8s_openapi::api::core::v1::Namespace>,
    /// The config maps and secrets virtual pods and ingresses reference, kept up to date from
    /// their watches (read by the configmap and secret sync), and the pods the policy refused.
    pub references: refs::RefIndex,
    /// This tenant's host pods: one cache for the pod sync, the event back-sync and the node
    /// back-sync (filled by the pod controller's watch).
    pub host_pods: Store<crate::cache::HostPod>,
    /// Every host pod change, for the consumers of [`Shared::host_pods`] that react to them.
    pub host_pod_changes: tokio::sync::broadcast::Sender<Arc<crate::cache::HostPod>>,
    /// Wake the configmap / secret sync for objects a pod or ingress just referenced.
    pub triggers: Triggers,
    /// Metrics (reconciles, sync latency, caches); [`Shared::new`] starts with a private
    /// registry, [`Shared::with_metrics`] shares the one the health endpoint serves.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The tenant's isolation policy, checked before anything is written to the host; its
    /// host facts grow at run time ([`Shared::observe_service_ips`]), so read it through
    /// [`Shared::policy`].
    policy: std::sync::RwLock<Arc<crate::policy::Policy>>,
    /// What objects are held back for ([`waits`]).
    pub waits: waits::Waits,
    /// Open while this replica may write ([`crate::gate`]); reconcilers wait for it before
    /// deciding. [`Shared::new`] starts with an open gate of its own.
    pub gate: crate::gate::WriteGate,
    pending: Mutex<Pending>,
}

/// Senders that ask the configmap and secret controllers to look at an object.
#[derive(Clone)]
pub struct Triggers {
    pub config_maps:
        tokio::sync::mpsc::UnboundedSender<ObjectRef<k8s_openapi::api::core::v1::ConfigMap>>,
    pub secrets: tokio::sync::mpsc::UnboundedSender<ObjectRef<k8s_openapi::api::core::v1::Secret>>,
}

/// The receiving and writing halves handed to the controllers when they start.
#[derive(Default)]
struct Pending {
    config_maps: Option<
        tokio::sync::mpsc::UnboundedReceiver<ObjectRef<k8s_openapi::api::core::v1::ConfigMap>>,
    >,
    secrets:
        Option<tokio::sync::mpsc::UnboundedReceiver<ObjectRef<k8s_openapi::api::core::v1::Secret>>>,
    virtual_pods: Option<reflector::store::Writer<crate::cache::VirtualPod>>,
    virtual_ingresses: Option<reflector::store::Writer<k8s_openapi::api::networking::v1::Ingress>>,
    virtual_services: Option<reflector::store::Writer<k8s_openapi::api::core::v1::Service>>,
    virtual_namespaces: Option<reflector::store::Writer<k8s_openapi::api::core::v1::Namespace>>,
    host_pods: Option<reflector::store::Writer<crate::cache::HostPod>>,
    /// Subscribed up front so no change is missed before the consumers start.
    host_pod_changes: Vec<tokio::sync::broadcast::Receiver<Arc<crate::cache::HostPod>>>,
}

impl Shared {
    pub fn new(cfg: EngineConfig, host: Client, virt: Client) -> Shared {
        let ctx = Context {
            tenant: cfg.tenant.clone(),
            host_namespace: cfg.host_namespace.clone(),
        };
        let reporter = Reporter {
            controller: "vcsync".into(),
            instance: Some(format!("vcsync-{}", cfg.tenant)),
        };
        let (cm_tx, cm_rx) = tokio::sync::mpsc::unbounded_channel();
        let (secret_tx, secret_rx) = tokio::sync::mpsc::unbounded_channel();
        let (virtual_pods, pods_writer) = reflector::store();
        let (virtual_ingresses, ingresses_writer) = reflector::store();
        let (virtual_services, services_writer) = reflector::store();
        let (virtual_namespaces, namespaces_writer) = reflector::store();
        let (host_pods, host_pods_writer) = reflector::store();
        let (host_pod_changes, _) = tokio::sync::broadcast::channel(4096);
        let subscribers = (0..2).map(|_| host_pod_changes.subscribe()).collect();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        Shared {
            recorder: Recorder::new(virt.clone(), reporter),
            cfg,
            ctx,
            host,
            virt,
            backoff: Backoff::default(),
            virtual_pods,
            virtual_ingresses,
            virtual_services,
            virtual_namespaces,
            references: refs::RefIndex::default(),
            host_pods,
            host_pod_changes,
            triggers: Triggers {
                config_maps: cm_tx,
                secrets: secret_tx,
            },
            metrics: metrics.clone(),
            waits: waits::Waits::new(metrics),
            policy: std::sync::RwLock::new(Arc::new(crate::policy::Policy::default())),
            gate: crate::gate::WriteGate::open(),
            pending: Mutex::new(Pending {
                config_maps: Some(cm_rx),
                secrets: Some(secret_rx),
                virtual_pods: Some(pods_writer),
                virtual_ingresses: Some(ingresses_writer),
                virtual_services: Some(services_writer),
                virtual_namespaces: Some(namespaces_writer),
                host_pods: Some(host_pods_writer),
                host_pod_changes: subscribers,
            }),
        }
    }

    /// Check objects against `policy` (the default is the secure default policy).
    pub fn with_policy(self, policy: crate::policy::Policy) -> Shared {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
        self
    }

    /// The isolation policy as it stands (a snapshot: checks of one object see one policy).
    pub fn policy(&self) -> Arc<crate::policy::Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Learn host Service virtual IPs from a host Service's ClusterIPs: any the known Service
    /// CIDRs do not cover yet is refused as an endpoint target from now on. Cheap when nothing
    /// is new (the usual case once the CIDR is known), so it runs on every host Service seen.
    pub fn observe_service_ips<'a>(&self, ips: impl IntoIterator<Item = &'a str>) {
        let ips: Vec<std::net::IpAddr> = ips
            .into_iter()
            .filter_map(crate::policy::net::parse_ip)
            .collect();
        if self
            .policy()
            .host_facts
            .uncovered_service_ips(&ips)
            .is_empty()
        {
            return;
        }
        let mut slot = self.policy.write().unwrap_or_else(|e| e.into_inner());
        // Re-checked under the lock: another observer may have added them meanwhile.
        let new = slot.host_facts.uncovered_service_ips(&ips);
        if new.is_empty() {
            return;
        }
        let mut next = (**slot).clone();
        next.host_facts
            .service_cidrs
            .extend(new.iter().map(|ip| crate::policy::net::Cidr::from(*ip)));
        tracing::info!(
            service_ips = %crate::policy::net::cidr_list(&new.iter().map(|ip| crate::policy::net::Cidr::from(*ip)).collect::<Vec<_>>()),
            "a host Service ClusterIP outside the known Service CIDRs: refused as an endpoint target from now on"
        );
        *slot = Arc::new(next);
    }

    /// Whether the policy refused virtual pod `ns/name` (its references are not synced).
    pub fn pod_refused(&self, ns: &str, name: &str) -> bool {
        self.references.pod_refused(ns, name)
    }

    /// Record whether the policy refused a virtual pod.
    pub fn set_pod_refused(&self, ns: &str, name: &str, refused: bool) {
        self.references.set_pod_refused(ns, name, refused);
    }

    /// The `PolicyViolation` error for `kind` `key`, counted per rule.
    pub fn policy_error(
        &self,
        kind: &'static str,
        key: &str,
        violations: &[crate::policy::Violation],
    ) -> SyncError {
        for v in violations {
            self.metrics.policy_violation(kind, v.rule);
        }
        SyncError::PolicyViolation {
            kind,
            key: key.to_string(),
            message: self.policy().event_message(kind, violations),
        }
    }

    /// Wait for `gate` before deciding (the clients should be gated by it too).
    pub fn with_gate(mut self, gate: crate::gate::WriteGate) -> Shared {
        self.gate = gate;
        self
    }

    /// Record into `metrics` instead of a private registry.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Shared {
        self.waits = waits::Waits::new(metrics.clone());
        self.metrics = metrics;
        self
    }

    /// Records that the object behind `obj` (`key`: `kind/namespace/name`) waits, when `err`
    /// says so ([`waits`]), and records its Warning Event once the wait has lasted.
    pub async fn note_wait(&self, obj: &ObjectReference, key: &str, err: &SyncError) {
        if let SyncError::Waiting { cause, what } = err
            && self
                .waits
                .waiting(*cause, key, what, std::time::Instant::now())
        {
            self.warn(obj, "Waiting", format!("waiting for {what}"))
                .await;
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Host API of kind `K` in the host namespace.
    pub fn host_api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.host.clone(), &self.cfg.host_namespace)
    }

    /// Watcher config for host objects: only this tenant's.
    pub fn host_watch_config(&self) -> watcher::Config {
        watcher::Config::default().labels(&markers::tenant_selector(&self.cfg.tenant))
    }

    /// Record a Warning Event on a virtual object; failures to record are only logged.
    pub async fn warn(&self, obj: &ObjectReference, reason: &str, mut note: String) {
        // Event notes are limited to 1 KiB.
        if note.len() > 1000 {
            let mut cut = 1000;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
            note.push('…');
        }
        let ev = Event {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(note),
            action: "Sync".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, obj).await {
            tracing::warn!(error = %e, "recording a warning event failed");
        }
    }
}

/// `namespace/name` of an object.
pub fn key_of<K: Resource>(o: &K) -> String {
    format!(
        "{}/{}",
        o.meta().namespace.as_deref().unwrap_or(""),
        o.meta().name.as_deref().unwrap_or("")
    )
}

/// A reflector over `api` with managedFields stripped before caching.
pub fn cached_stream<K>(
    api: Api<K>,
    cfg: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send,
)
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    cached_stream_with(api, cfg, |o: &mut K| o.managed_fields_mut().clear())
}

/// A reflector over `api` that caches objects as `strip` leaves them: for caches whose readers
/// need only a few fields of large, numerous objects (events).
pub fn cached_stream_with<K>(
    api: Api<K>,
    cfg: watcher::Config,
    strip: impl FnMut(&mut K) + Send + 'static,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send,
)
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, cfg)
        .backoff(watch_backoff())
        .modify(strip)
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

/// The watchers' retry policy: kube-runtime's exponential backoff with jitter (as its
/// `DefaultBackoff`), from 500 ms but capped at [`WATCH_BACKOFF_MAX`] instead of 30 s, so a
/// watch resumes within a few seconds of an API coming back (a host upgrade, k3s restarting
/// inside the pod) rather than up to half a minute later. It resets after a minute without
/// errors.
pub fn watch_backoff() -> impl kube::runtime::utils::Backoff {
    kube::runtime::utils::ResetTimerBackoff::new(
        watcher::ExponentialBackoff::from(
            backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(WATCH_BACKOFF_MAX)
                .with_factor(2.0)
                .without_max_times()
                .with_jitter(),
        ),
        Duration::from_secs(60),
    )
}

/// The longest pause between two attempts of a failing watch.
pub const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(4);

/// Wait until `store` has finished its initial list; `false` if its writer went away.
///
/// kube-runtime 5's `Store::wait_until_ready` keeps only the most recent waiter's wakeup
/// (kube-rs#1243), and several tasks wait on the same caches here; so the wait is re-polled
/// every 100 ms instead of trusting one wakeup.
pub async fn cache_ready<K>(store: &Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()).await {
            Ok(r) => return r.is_ok(),
            Err(_) => continue,
        }
    }
}

/// The virtual object a host object was made from (by its markers), for `kind`.
pub fn source_ref<K, H>(tenant: &str, kind: &str, host: &H) -> Option<ObjectRef<K>>
where
    K: Resource<DynamicType = ()>,
    H: Resource,
{
    let (k, ns, name, _) = markers::source_of(host.meta(), tenant)?;
    (k == kind).then(|| ObjectRef::new(name).within(ns))
}

/// Create `obj` in the host namespace.
pub async fn create_host<K>(api: &Api<K>, kind: &'static str, obj: &K) -> Result<K, SyncError>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = obj.name_any();
    let pp = PostParams {
        field_manager: Some(markers::FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.create(&pp, obj).await {
        Ok(o) => Ok(o),
        // The name is taken by an object our (label-filtered) cache cannot see: someone else's,
        // unless a racing reconcile of ours just created it. Look before deciding.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api.get_opt(&name).await.map_err(|source| SyncError::Read {
                what: format!("host {kind} {name}"),
                source,
            })?;
            match existing {
                Some(e) if same_source(e.meta(), obj.meta()) => Ok(e),
                Some(_) => Err(SyncError::Foreign {
                    kind,
                    name: name.clone(),
                    key: source_key(obj.meta()),
                }),
                // Gone again in between: the next pass creates it.
                None => Err(SyncError::Waiting {
                    cause: waits::WaitCause::HostObject,
                    what: format!("host {kind} {name} to settle"),
                }),
            }
        }
        Err(source) => Err(SyncError::CreateHost { kind, name, source }),
    }
}

/// Whether two host objects carry the markers of the same virtual object.
fn same_source(a: &kube::api::ObjectMeta, b: &kube::api::ObjectMeta) -> bool {
    let get = |m: &kube::api::ObjectMeta| {
        let t = m
            .labels
            .as_ref()
            .and_then(|l| l.get(markers::MANAGED_BY))
            .cloned()
            .unwrap_or_default();
        (
            t.clone(),
            markers::source_of(m, &t)
                .map(|(k, ns, n, u)| (k.to_string(), ns.to_string(), n.to_string(), u.to_string())),
        )
    };
    let (ta, sa) = get(a);
    sa.is_some() && (ta, sa) == get(b)
}

/// `namespace/name` of the virtual source recorded in a host object's markers.
fn source_key(meta: &kube::api::ObjectMeta) -> String {
    let a = meta.annotations.as_ref();
    let get = |k: &str| a.and_then(|a| a.get(k)).cloned().unwrap_or_default();
    format!(
        "{}/{}",
        get(markers::VIRTUAL_NAMESPACE),
        get(markers::VIRTUAL_NAME)
    )
}

/// Replace `obj` (carries the resourceVersion it was read at: a conflict retries).
pub async fn replace_host<K>(api: &Api<K>, kind: &'static str, obj: &K) -> Result<K, SyncError>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = obj.name_any();
    api.replace(
        &name,
        &PostParams {
            field_manager: Some(markers::FIELD_MANAGER.into()),
            ..Default::default()
        },
        obj,
    )
    .await
    .map_err(|source| SyncError::UpdateHost { kind, name, source })
}

/// Delete a host object we own, with a uid precondition so a re-created object of the same
/// name is never hit. 404 is success.
pub async fn delete_host<K>(
    api: &Api<K>,
    kind: &'static str,
    name: &str,
    uid: Option<&str>,
    grace: Option<u32>,
) -> Result<(), SyncError>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let mut dp = DeleteParams::default();
    if let Some(uid) = uid {
        dp = dp.preconditions(kube::api::Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        });
    }
    if let Some(g) = grace {
        dp = dp.grace_period(g);
    }
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        // The uid precondition failed: a different object now has that name; not ours to delete.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(source) => Err(SyncError::DeleteHost {
            kind,
            name: name.to_string(),
            source,
        }),
    }
}

/// Run every controller until `shutdown` resolves, then let them finish in-flight work.
pub async fn run(shared: Arc<Shared>, shutdown: impl std::future::Future<Output = ()>) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stop = Stop(rx);
    let engine = async {
        futures::join!(
            pods::run(shared.clone(), stop.clone()),
            kinds::run(shared.clone(), stop.clone()),
            networkpolicies::run(shared.clone(), stop.clone()),
            events::run(shared.clone(), stop.clone()),
            nodes::run(shared.clone(), stop.clone()),
        );
    };
    tokio::pin!(engine);
    tokio::select! {
        _ = &mut engine => return,
        _ = shutdown => {}
    }
    let _ = tx.send(true);
    // Controllers stop taking work and finish what is in flight; bounded so a stuck API call
    // (or a cache that never filled) cannot hold the process.
    if tokio::time::timeout(SHUTDOWN_GRACE, engine).await.is_err() {
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "controllers did not stop in time; exiting anyway");
    }
}

/// How long in-flight reconciles get to finish after a shutdown request.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A cloneable shutdown signal for controllers.
#[derive(Clone)]
pub struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    /// Resolves once shutdown was requested.
    pub fn signal(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

/// Drain a controller's result stream, logging outcomes at debug level.
pub async fn drain<S, T, E>(name: &'static str, stream: S)
where
    S: Stream<Item = Result<T, E>>,
    T: Debug,
    E: std::fmt::Display,
{
    stream
        .for_each(|r| async move {
            match r {
                Ok(o) => tracing::debug!(controller = name, object = ?o, "reconciled"),
                Err(e) => tracing::debug!(controller = name, error = %e, "controller error"),
            }
        })
        .await;
}

impl Shared {
    /// The writer of [`Shared::virtual_pods`] (taken once, by the pod controller).
    pub fn take_virtual_pods_writer(&self) -> reflector::store::Writer<crate::cache::VirtualPod> {
        self.pending()
            .virtual_pods
            .take()
            .expect("the pod controller starts once")
    }

    /// The writer of [`Shared::virtual_ingresses`] (taken once, by the ingress controller).
    pub fn take_virtual_ingresses_writer(
        &self,
    ) -> reflector::store::Writer<k8s_openapi::api::networking::v1::Ingress> {
        self.pending()
            .virtual_ingresses
            .take()
            .expect("the ingress controller starts once")
    }

    /// The writer of [`Shared::virtual_services`] (taken once, by the service controller).
    pub fn take_virtual_services_writer(
        &self,
    ) -> reflector::store::Writer<k8s_openapi::api::core::v1::Service> {
        self.pending()
            .virtual_services
            .take()
            .expect("the service controller starts once")
    }

    /// The writer of [`Shared::virtual_namespaces`] (taken once, by the NetworkPolicy sync).
    pub fn take_virtual_namespaces_writer(
        &self,
    ) -> reflector::store::Writer<k8s_openapi::api::core::v1::Namespace> {
        self.pending()
            .virtual_namespaces
            .take()
            .expect("the network policy controller starts once")
    }

    /// The writer of [`Shared::host_pods`] (taken once, by the pod controller).
    pub fn take_host_pods_writer(&self) -> reflector::store::Writer<crate::cache::HostPod> {
        self.pending()
            .host_pods
            .take()
            .expect("the pod controller starts once")
    }

    /// A stream of host pod changes (two consumers: the event and node back-syncs). A consumer
    /// that falls behind skips ahead; it still reads the current state from the shared cache.
    pub fn host_pod_change_stream(
        &self,
    ) -> impl Stream<Item = Result<crate::cache::HostPod, watcher::Error>> + Send + 'static {
        let rx = self
            .pending()
            .host_pod_changes
            .pop()
            .expect("two consumers of host pod changes");
        futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(p) => return Some((Ok((*p).clone()), rx)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(skipped = n, "a host pod change consumer fell behind");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// The configmap trigger receiver (taken once).
    pub fn take_config_map_triggers(
        &self,
    ) -> tokio::sync::mpsc::UnboundedReceiver<ObjectRef<k8s_openapi::api::core::v1::ConfigMap>>
    {
        self.pending()
            .config_maps
            .take()
            .expect("the configmap controller starts once")
    }

    /// The secret trigger receiver (taken once).
    pub fn take_secret_triggers(
        &self,
    ) -> tokio::sync::mpsc::UnboundedReceiver<ObjectRef<k8s_openapi::api::core::v1::Secret>> {
        self.pending()
            .secrets
            .take()
            .expect("the secret controller starts once")
    }
}
