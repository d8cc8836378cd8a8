//! Pods: virtual -> host, status and node binding host -> virtual, deletion both ways, and the
//! service-account token Secret each host pod mounts.
//!
//! The virtual API has no kubelet: vcsync plays that part for virtual pods. A virtual pod
//! deleted gracefully keeps its deletionTimestamp until vcsync has deleted the host pod (with the
//! same grace period) and then finalizes the virtual pod with a grace-0 delete, exactly as a
//! kubelet does. A host pod that disappears on its own (eviction, node loss) deletes its virtual
//! pod once that pod had been running.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, PodStatus, Secret, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::queue::FairQueue;
use super::{
    Shared, SyncError, create_host, delete_host, key_of, reasons, replace_host, source_ref,
};
use crate::cache::{HostPod, VirtualPod};
use crate::markers::{self, Ownership};
use crate::metrics::{ApiLabel, Direction};
use crate::translate::pod::{
    PodEnv, TokenSource, host_pod, host_pod_patch, token_secret_name, token_sources,
};

/// Label on token Secrets, so the secret sync never mistakes them for tenant secrets.
pub const TOKEN_ROLE_LABEL: &str = "vcsync.io/role";
/// Value of [`TOKEN_ROLE_LABEL`] on token Secrets.
pub const TOKEN_ROLE: &str = "pod-token";
/// Annotation on token Secrets: unix time after which the tokens are minted again.
pub const TOKEN_REFRESH_AT: &str = "vcsync.io/token-refresh-at";

const KIND: &str = "Pod";

/// Size at which the record of token Secrets written but not yet cached is pruned.
const WRITTEN_CAP: usize = 1024;

/// How long a pod environment without the tenant DNS service is reused before asking again.
const INCOMPLETE_ENV_TTL: Duration = Duration::from_secs(30);

/// What the pod reconciler reads.
pub struct PodSync {
    pub shared: Arc<Shared>,
    /// Virtual pods (all namespaces; spec and status as JSON: [`VirtualPod`]).
    pub virtual_pods: Store<VirtualPod>,
    /// This tenant's host pods (projections: [`HostPod`]).
    pub host_pods: Store<HostPod>,
    /// This tenant's token Secrets.
    pub token_secrets: Store<Secret>,
    /// Service addresses pods are pointed at, found once and kept (ClusterIPs never change);
    /// an answer without the tenant DNS service is kept only until the instant beside it.
    env: RwLock<Option<(PodEnv, Option<std::time::Instant>)>>,
    /// Token Secrets this process wrote that the cache may not show yet: name -> (owning host
    /// pod uid, refresh time). Without it, the reconcile that the new host pod's own watch event
    /// triggers would mint the tokens again and fail to create the Secret with 409.
    written: Mutex<HashMap<String, (String, i64)>>,
    /// Host pods this process created that the host cache may not show yet (host name -> the
    /// created pod and when): a reconcile before the cache catches up (after a host API outage
    /// its watch may lag by the watcher's backoff) must not create the pod again (a 409 and a
    /// GET), nor take the missing pod for one that vanished.
    created: Mutex<HashMap<String, (Arc<HostPod>, std::time::Instant)>>,
    /// The highest resourceVersion the host pod watch has delivered (0 until one parses as a
    /// number): once it reaches a created pod's own, the cache has seen that pod (and, if it
    /// is missing now, its deletion too).
    host_rv_seen: std::sync::atomic::AtomicU64,
}

/// How long a created host pod stands in for the cache when the watch's progress cannot tell
/// (resourceVersions that are not numbers): longer than the watchers' backoff.
const CREATED_TTL: Duration = Duration::from_secs(30);
/// The longest a created host pod stands in for the cache at all: a watch lagging by more
/// under a burst on an overloaded machine is still waited for, but not forever.
const CREATED_MAX: Duration = Duration::from_secs(600);

fn numeric_rv(meta: &ObjectMeta) -> Option<u64> {
    meta.resource_version.as_deref()?.parse().ok()
}

/// Whether a host pod created `age` ago may still be missing from the cache only because its
/// watch has not delivered it yet, given the highest resourceVersion delivered (`seen`).
fn still_pending(created: &HostPod, age: Duration, seen: u64) -> bool {
    match numeric_rv(&created.metadata) {
        Some(rv) if seen > 0 => seen < rv && age < CREATED_MAX,
        _ => age < CREATED_TTL,
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl PodSync {
    /// The host pod `name` as far as this process knows: the cache's copy, else one it created
    /// that the cache has not caught up with yet. Its watch may lag by far more than a fixed
    /// time under a burst (a 10k-pod burst on 2 shared cores saw minutes), so "caught up" is
    /// judged by the watch's progress where resourceVersions are numbers (etcd revisions, as
    /// kube-apiserver's are), and by [`CREATED_TTL`] otherwise.
    fn host_pod(&self, name: &str, namespace: &str) -> Option<Arc<HostPod>> {
        let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = self.host_pods.get(&ObjectRef::new(name).within(namespace)) {
            created.remove(name);
            return Some(h);
        }
        let seen = self.host_rv_seen();
        match created.get(name) {
            Some((p, at)) if still_pending(p, at.elapsed(), seen) => Some(p.clone()),
            Some(_) => {
                created.remove(name);
                // The watch may have delivered it between the two looks.
                self.host_pods.get(&ObjectRef::new(name).within(namespace))
            }
            None => None,
        }
    }

    fn host_rv_seen(&self) -> u64 {
        self.host_rv_seen.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn forget_created(&self, name: &str) {
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    fn remember_created(&self, name: &str, pod: HostPod) {
        let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        if created.len() >= WRITTEN_CAP {
            let seen = self.host_rv_seen();
            created.retain(|_, (p, at)| still_pending(p, at.elapsed(), seen));
        }
        created.insert(name.to_string(), (Arc::new(pod), std::time::Instant::now()));
    }

    /// The pod environment: the tenant API service's ClusterIP (required) and the tenant DNS
    /// service's ClusterIP (optional: without a DNS service pods keep the host's DNS).
    async fn env(&self) -> Result<PodEnv, SyncError> {
        if let Some((env, until)) = self.env.read().unwrap_or_else(|e| e.into_inner()).clone()
            && until.is_none_or(|t| std::time::Instant::now() < t)
        {
            return Ok(env);
        }
        let cfg = &self.shared.cfg;
        let svcs: Api<Service> = self.shared.host_api();
        let api_ip = svcs
            .get_opt(&cfg.api_service)
            .await
            .map_err(|source| SyncError::Read {
                what: format!("host service {}", cfg.api_service),
                source,
            })?
            .and_then(|s| s.spec.and_then(|s| s.cluster_ip))
            .filter(|ip| !ip.is_empty() && ip != "None")
            .ok_or_else(|| SyncError::Waiting {
                cause: super::waits::WaitCause::ApiService,
                what: format!(
                    "the tenant API service {} in the host namespace",
                    cfg.api_service
                ),
            })?;
        let (dns_ns, dns_name) = &cfg.dns_service;
        let dns: Api<Service> = Api::namespaced(self.shared.virt.clone(), dns_ns);
        let dns_ip = dns
            .get_opt(dns_name)
            .await
            .map_err(|source| SyncError::Read {
                what: format!("virtual service {dns_ns}/{dns_name}"),
                source,
            })?
            .and_then(|s| s.spec.and_then(|s| s.cluster_ip))
            .filter(|ip| !ip.is_empty() && ip != "None");
        let env = PodEnv {
            workload_service_account: cfg.workload_service_account.clone(),
            api_service_ip: Some(api_ip),
            api_service_port: 443,
            dns_ip: dns_ip.clone(),
            cluster_domain: cfg.cluster_domain.clone(),
        };
        // The complete answer is kept; without a DNS service the answer is kept only briefly,
        // so a DNS service created later is picked up without two GETs per pod reconcile.
        let until = if dns_ip.is_some() {
            None
        } else {
            tracing::debug!("no tenant DNS service {dns_ns}/{dns_name}: pods keep the host's DNS");
            Some(std::time::Instant::now() + INCOMPLETE_ENV_TTL)
        };
        *self.env.write().unwrap_or_else(|e| e.into_inner()) = Some((env.clone(), until));
        Ok(env)
    }
}

/// Run the pod controller and its garbage collector until `shutdown`.
pub async fn run(shared: Arc<Shared>, stop: super::Stop) {
    let writer = shared.take_virtual_pods_writer();
    let virtual_pods = shared.virtual_pods.clone();
    // The reference index follows the same events as the store, so the configmap and secret
    // sync see a pod's references no later than the pod sync sees the pod.
    let vstream = shared.metrics.cached_stream_observed(
        ApiLabel::Virtual,
        KIND,
        Api::<VirtualPod>::all(shared.virt.clone()),
        watcher::Config::default(),
        writer,
        {
            let shared = shared.clone();
            move |e: &watcher::Event<VirtualPod>| shared.references.observe(e)
        },
    );
    let host_pods = shared.host_pods.clone();
    let hstream = shared.metrics.cached_stream_into(
        ApiLabel::Host,
        KIND,
        shared.host_api::<HostPod>(),
        shared.host_watch_config(),
        shared.take_host_pods_writer(),
    );
    let token_cfg = watcher::Config::default().labels(&format!(
        "{},{TOKEN_ROLE_LABEL}={TOKEN_ROLE}",
        markers::tenant_selector(&shared.cfg.tenant)
    ));
    // The sync reads only a token Secret's annotations and owner: the tokens and CA (a few KB
    // per pod) stay out of memory.
    let (token_secrets, sstream) = shared.metrics.cached_stream_stripped(
        ApiLabel::Host,
        "PodTokenSecret",
        shared.host_api::<Secret>(),
        token_cfg,
        |s: &mut Secret| {
            s.data = None;
            s.string_data = None;
        },
    );
    let metrics = shared.metrics.clone();
    let vstream = metrics.observe_virtual(KIND, vstream);
    let hstream = metrics.observe_host(KIND, shared.cfg.tenant.clone(), hstream);
    metrics.controller_started(KIND, shared.cfg.concurrency);
    let sync = Arc::new(PodSync {
        shared: shared.clone(),
        virtual_pods: virtual_pods.clone(),
        host_pods: host_pods.clone(),
        token_secrets: token_secrets.clone(),
        env: RwLock::new(None),
        written: Mutex::default(),
        created: Mutex::default(),
        host_rv_seen: std::sync::atomic::AtomicU64::new(0),
    });

    // Every change of a virtual pod, its host pod or its token Secret queues the virtual pod.
    let queue = FairQueue::new();
    metrics.track_queue_depth("pod", {
        let queue = queue.clone();
        move || queue.depth()
    });
    let tenant = shared.cfg.tenant.clone();
    let feed_virtual = vstream.take_until(stop.signal()).for_each(|r| {
        if let Ok(p) = r {
            queue.add((p.namespace().unwrap_or_default(), p.name_any()));
        }
        futures::future::ready(())
    });
    let feed_host = hstream.take_until(stop.signal()).for_each(|r| {
        if let Ok(h) = &r {
            if let Some(rv) = numeric_rv(&h.metadata) {
                sync.host_rv_seen
                    .fetch_max(rv, std::sync::atomic::Ordering::Relaxed);
            }
            // The event and node back-syncs react to host pod changes too.
            let _ = shared.host_pod_changes.send(Arc::new(h.clone()));
        }
        if let Ok(h) = r
            && let Some(src) = source_ref::<Pod, HostPod>(&tenant, KIND, &h)
        {
            queue.add((src.namespace.unwrap_or_default(), src.name));
        }
        futures::future::ready(())
    });
    let feed_tokens = sstream.take_until(stop.signal()).for_each(|r| {
        if let Ok(s) = &r {
            // The cache has this Secret's latest state now (present or deleted).
            sync.written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&s.name_any());
        }
        if let Ok(s) = r
            && let Some(src) = source_ref::<Pod, Secret>(&tenant, KIND, &s)
        {
            queue.add((src.namespace.unwrap_or_default(), src.name));
        }
        futures::future::ready(())
    });
    let workers = work(sync.clone(), queue.clone(), stop.clone());
    let objects = metrics.track_host_objects(
        KIND,
        shared.cfg.tenant.clone(),
        host_pods.clone(),
        stop.signal(),
    );
    let gc = super::gc::run(shared.clone(), KIND, host_pods, virtual_pods, stop.signal());
    futures::join!(feed_virtual, feed_host, feed_tokens, workers, gc, objects);
}

/// Run reconciles from the fair queue, `concurrency` at a time, until `stop`; then let the
/// in-flight ones finish.
async fn work(sync: Arc<PodSync>, queue: FairQueue, stop: super::Stop) {
    let ready = async {
        super::cache_ready(&sync.virtual_pods).await;
        super::cache_ready(&sync.host_pods).await;
        super::cache_ready(&sync.token_secrets).await;
    };
    tokio::select! {
        _ = ready => {}
        _ = stop.signal() => return,
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(
        sync.shared.cfg.concurrency.max(1),
    ));
    let mut running = tokio::task::JoinSet::new();
    loop {
        // A free slot first, then the key: the key is chosen when it can run, which is what
        // makes the round-robin order matter.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p,
            _ = stop.signal() => break,
        };
        let Ok(permit) = permit else { break };
        // While standing by, keys stay in the queue (deduplicated) rather than in tasks.
        tokio::select! {
            _ = sync.shared.gate.opened() => {}
            _ = stop.signal() => break,
        }
        let key = tokio::select! {
            k = queue.next() => k,
            _ = stop.signal() => break,
        };
        let Some(key) = key else { break };
        let (sync, queue) = (sync.clone(), queue.clone());
        running.spawn(async move {
            let next = process(&sync, &key).await;
            queue.done(&key);
            if let Some(delay) = next {
                queue.add_after(key, delay);
            }
            drop(permit);
        });
        while running.try_join_next().is_some() {}
    }
    queue.close();
    while running.join_next().await.is_some() {}
}

/// Reconcile one virtual pod; returns when to look at it again.
async fn process(sync: &PodSync, (ns, name): &(String, String)) -> Option<Duration> {
    // Standing by (not leading): queue here, decide from the caches once leading again.
    sync.shared.gate.opened().await;
    // A pod gone from the cache was deleted at once: the collector removes its host pod.
    let Some(cached) = sync.virtual_pods.get(&ObjectRef::new(name).within(ns)) else {
        sync.shared.waits.done(&format!("{KIND}/{ns}/{name}"));
        return None;
    };
    let key = format!("{ns}/{name}");
    let span = tracing::info_span!(
        "reconcile",
        controller = "pod",
        namespace = ns.as_str(),
        name = name.as_str()
    );
    let timer = sync.shared.metrics.start_reconcile(KIND);
    // The cache holds spec and status as JSON; a pod whose JSON does not decode (a type
    // k8s-openapi refuses) is refused like an untranslatable one, never half synced.
    let vp = match cached.pod() {
        Ok(p) => p,
        Err(e) => {
            let err = SyncError::Untranslatable {
                kind: KIND,
                key: key.clone(),
                reasons: e.source.to_string(),
            };
            timer.finish_after(Err(&err));
            return Some(on_error(sync, &cached.object_ref(&()), &key, &err).await);
        }
    };
    let result = reconcile_inner(&vp, sync).instrument_span(span).await;
    timer.finish_after(result.as_ref().copied());
    match result {
        Ok(next) => {
            sync.shared.backoff.reset(&key);
            sync.shared.metrics.settled(KIND, &key);
            sync.shared.waits.done(&format!("{KIND}/{key}"));
            next
        }
        Err(err) => Some(on_error(sync, &vp.object_ref(&()), &key, &err).await),
    }
}

/// Retry transient errors with backoff; tell the tenant about permanent ones and wait.
async fn on_error(
    sync: &PodSync,
    obj: &k8s_openapi::api::core::v1::ObjectReference,
    key: &str,
    err: &SyncError,
) -> Duration {
    let shared = &sync.shared;
    if err.is_permanent() {
        tracing::warn!(controller = "pod", key, error = %err, reason = err.metric_label(), "refused");
        shared.warn(obj, err.event_reason(), err.to_string()).await;
        // The pod's next change queues it again; this is only a safety net.
        return Duration::from_secs(300);
    }
    if matches!(err, SyncError::Waiting { .. }) {
        shared.note_wait(obj, &format!("{KIND}/{key}"), err).await;
    } else {
        tracing::info!(controller = "pod", key, error = %err, reason = err.metric_label(), "retrying");
    }
    shared.backoff.next(key)
}

/// `tracing::Instrument` without importing the trait into every caller.
trait InstrumentSpan: Sized {
    fn instrument_span(self, span: tracing::Span) -> tracing::instrument::Instrumented<Self>;
}
impl<F: std::future::Future> InstrumentSpan for F {
    fn instrument_span(self, span: tracing::Span) -> tracing::instrument::Instrumented<Self> {
        tracing::Instrument::instrument(self, span)
    }
}

async fn reconcile_inner(vp: &Pod, sync: &PodSync) -> Result<Option<Duration>, SyncError> {
    let shared = &sync.shared;
    // Decisions need the host caches: an empty one would make every host pod look missing.
    let waiting = |what: &str| SyncError::Waiting {
        cause: super::waits::WaitCause::Cache,
        what: what.to_string(),
    };
    if !super::cache_ready(&sync.host_pods).await {
        return Err(waiting("the host pod cache"));
    }
    if !super::cache_ready(&sync.token_secrets).await {
        return Err(waiting("the token secret cache"));
    }
    let ns = vp.namespace().unwrap_or_default();
    let vname = vp.name_any();
    let key = format!("{ns}/{vname}");
    let host_name = shared
        .ctx
        .host_name(&ns, &vname, crate::translate::NameRule::Dns1123Subdomain);
    let host_api: Api<Pod> = shared.host_api();
    // A pod being deleted is judged from the cache alone (as before a create could race it:
    // the orphan sweep collects a host pod the cache had not shown yet).
    let host = if vp.metadata.deletion_timestamp.is_some() {
        sync.forget_created(&host_name);
        sync.host_pods
            .get(&ObjectRef::new(&host_name).within(&shared.cfg.host_namespace))
    } else {
        sync.host_pod(&host_name, &shared.cfg.host_namespace)
    };
    let src = shared.ctx.source(KIND, &vp.metadata);
    let ownership = host.as_ref().map(|h| markers::ownership(&h.metadata, &src));

    // Deletion of the virtual pod: delete the host pod, then finalize the virtual one.
    if vp.metadata.deletion_timestamp.is_some() {
        match (&host, &ownership) {
            (Some(h), Some(Ownership::Ours | Ownership::Stale)) => {
                if h.metadata.deletion_timestamp.is_none() {
                    let grace = vp
                        .metadata
                        .deletion_grace_period_seconds
                        .map(|g| g.max(0) as u32);
                    delete_host(
                        &host_api,
                        KIND,
                        &host_name,
                        h.metadata.uid.as_deref(),
                        grace,
                    )
                    .await?;
                }
                // The host pod's disappearance wakes us again.
                return Ok(None);
            }
            _ => {
                finalize_virtual(shared, &ns, &vname, vp.metadata.uid.as_deref()).await?;
                return Ok(None);
            }
        }
    }

    // The isolation policy first: a refused pod (and what only it references) never reaches the
    // host.
    let allowed = match crate::policy::check_pod(&shared.policy(), vp) {
        Ok(p) => {
            shared.set_pod_refused(&ns, &vname, false);
            p
        }
        Err(violations) => {
            shared.set_pod_refused(&ns, &vname, true);
            return Err(shared.policy_error(KIND, &key, &violations));
        }
    };
    // The configmaps and secrets the pod mounts are synced on demand.
    let refs = crate::translate::references::pod_references(&allowed);
    for cm in &refs.config_maps {
        let _ = shared
            .triggers
            .config_maps
            .send(ObjectRef::new(cm).within(&ns));
    }
    for secret in &refs.secrets {
        let _ = shared
            .triggers
            .secrets
            .send(ObjectRef::new(secret).within(&ns));
    }

    let desired = host_pod(&shared.ctx, &sync.env().await?, &allowed).map_err(|errs| {
        SyncError::Untranslatable {
            kind: KIND,
            key: key.clone(),
            reasons: reasons(&errs),
        }
    })?;

    let host = match (host, ownership) {
        (None, _) => {
            if was_running(vp) {
                // The host pod went away on its own (eviction, node loss): so does the virtual pod.
                tracing::info!(key, "host pod disappeared; deleting the virtual pod");
                finalize_virtual(shared, &ns, &vname, vp.metadata.uid.as_deref()).await?;
                return Ok(None);
            }
            // The tokens are minted while the pod is created: they do not depend on it (only
            // the Secret does, for its owner), and the pod waits for its Secret volume anyway.
            let sources = token_sources(vp);
            let (created, minted) = tokio::join!(create_host(&host_api, KIND, &desired), async {
                if sources.is_empty() {
                    Ok(None)
                } else {
                    mint(shared, vp, &sources).await.map(Some)
                }
            });
            let created = HostPod::from(&created?);
            shared.metrics.change_applied(Direction::Down, KIND, &key);
            tracing::info!(key, host = host_name, "created host pod");
            let tokens = match minted {
                Ok(minted) => ensure_tokens(sync, vp, &created.metadata, minted).await,
                Err(e) => Err(e),
            };
            sync.remember_created(&host_name, created);
            tokens?;
            return Ok(None);
        }
        (Some(_), Some(Ownership::Foreign)) => {
            return Err(SyncError::Foreign {
                kind: KIND,
                name: host_name,
                key,
            });
        }
        (Some(h), Some(Ownership::Stale)) => {
            // Left over from an earlier virtual pod of the same name.
            sync.forget_created(&host_name);
            delete_host(
                &host_api,
                KIND,
                &host_name,
                h.metadata.uid.as_deref(),
                Some(0),
            )
            .await?;
            return Ok(None);
        }
        (Some(h), _) => h,
    };

    if host.metadata.deletion_timestamp.is_none()
        && let Some(patch) = host_pod_patch(&host, &desired)
    {
        let params = PatchParams {
            field_manager: Some(markers::FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        host_api
            .patch(&host_name, &params, &Patch::Strategic(&patch))
            .await
            .map_err(|source| SyncError::UpdateHost {
                kind: KIND,
                name: host_name.clone(),
                source,
            })?;
        shared.metrics.change_applied(Direction::Down, KIND, &key);
    }
    let refresh = ensure_tokens(sync, vp, &host.metadata, None).await?;
    sync_up(shared, vp, &host).await?;
    Ok(refresh)
}

/// Whether the virtual pod has been running on the host (its status came from there).
fn was_running(vp: &Pod) -> bool {
    vp.status
        .as_ref()
        .is_some_and(|s| s.host_ip.as_deref().is_some_and(|ip| !ip.is_empty()))
}

/// Delete the virtual pod at once (what a kubelet does once containers are gone).
async fn finalize_virtual(
    shared: &Shared,
    ns: &str,
    name: &str,
    uid: Option<&str>,
) -> Result<(), SyncError> {
    let api: Api<Pod> = Api::namespaced(shared.virt.clone(), ns);
    let mut dp = DeleteParams::default().grace_period(0);
    if let Some(uid) = uid {
        dp = dp.preconditions(kube::api::Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        });
    }
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(source) => Err(SyncError::DeleteVirtual {
            kind: KIND,
            key: format!("{ns}/{name}"),
            source,
        }),
    }
}

/// Status fields that flow up; the virtual pod keeps its own qosClass (immutable there).
fn upward_status(host: &PodStatus, virt: Option<&PodStatus>) -> PodStatus {
    PodStatus {
        qos_class: virt
            .and_then(|v| v.qos_class.clone())
            .or_else(|| host.qos_class.clone()),
        ..host.clone()
    }
}

/// Bind the virtual pod to the host pod's node and copy the host status up.
async fn sync_up(shared: &Shared, vp: &Pod, host: &HostPod) -> Result<(), SyncError> {
    let ns = vp.namespace().unwrap_or_default();
    let name = vp.name_any();
    let key = format!("{ns}/{name}");
    let api: Api<Pod> = Api::namespaced(shared.virt.clone(), &ns);
    let host_node = host.node_name().map(str::to_owned);
    let virt_node = vp
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty());
    if let (Some(node), None) = (&host_node, &virt_node) {
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        let body = serde_json::to_vec(&binding).unwrap_or_default();
        let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/binding"))
            .header("Content-Type", "application/json")
            .body(body)
            .map_err(|e| SyncError::Waiting {
                cause: super::waits::WaitCause::HostObject,
                what: format!("a valid binding request: {e}"),
            })?;
        match shared.virt.request::<serde_json::Value>(req).await {
            Ok(_) => {}
            // Already bound (a racing reconcile): fine.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(source) => {
                return Err(SyncError::BindVirtual {
                    key,
                    node: node.clone(),
                    source,
                });
            }
        }
    }
    let Some(hs) = &host.status else {
        return Ok(());
    };
    let want = upward_status(hs, vp.status.as_ref());
    if vp.status.as_ref() != Some(&want) {
        let patch = json!({"status": want});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| SyncError::UpdateVirtualStatus {
                kind: KIND,
                key: key.clone(),
                source,
            })?;
        shared.metrics.change_applied(Direction::Up, KIND, &key);
    }
    Ok(())
}

/// Tokens minted for a pod: the Secret data and when to mint again.
type Minted = (BTreeMap<String, ByteString>, i64);

/// Make sure the host pod's token Secret exists and is fresh; returns when to look again.
/// `minted`: tokens already minted for this pod, used if new ones are needed.
async fn ensure_tokens(
    sync: &PodSync,
    vp: &Pod,
    host: &ObjectMeta,
    minted: Option<Minted>,
) -> Result<Option<Duration>, SyncError> {
    let sources = token_sources(vp);
    if sources.is_empty() {
        return Ok(None);
    }
    let shared = &sync.shared;
    let host_name = host.name.clone().unwrap_or_default();
    let secret_name = token_secret_name(&host_name);
    let existing = sync
        .token_secrets
        .get(&ObjectRef::new(&secret_name).within(&shared.cfg.host_namespace));
    let now = now_secs();
    let host_uid = host.uid.clone().unwrap_or_default();
    // Until the cache shows the Secret (its watch feed then forgets the entry), trust what this
    // process wrote.
    if existing.is_none()
        && let Some((uid, refresh_at)) = sync
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&secret_name)
            .cloned()
        && uid == host_uid
        && refresh_at > now
    {
        return Ok(Some(Duration::from_secs((refresh_at - now) as u64)));
    }
    if let Some(s) = &existing {
        let refresh_at = s
            .annotations()
            .get(TOKEN_REFRESH_AT)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        let owner_ok = s
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == host.uid.as_ref());
        if refresh_at > now && owner_ok {
            return Ok(Some(Duration::from_secs((refresh_at - now) as u64)));
        }
    }
    let (data, refresh_at) = match minted {
        Some(m) => m,
        None => mint(shared, vp, &sources).await?,
    };
    let mut labels = shared.ctx.source(KIND, &vp.metadata).labels();
    labels.insert(TOKEN_ROLE_LABEL.into(), TOKEN_ROLE.into());
    let mut annotations = shared.ctx.source(KIND, &vp.metadata).annotations();
    annotations.insert(TOKEN_REFRESH_AT.into(), refresh_at.to_string());
    let mut secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.clone()),
            namespace: Some(shared.cfg.host_namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            // Owned by the host pod: the host's garbage collector removes it with the pod.
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: host_name.clone(),
                uid: host_uid.clone(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    let api: Api<Secret> = shared.host_api();
    match existing {
        Some(old) => {
            secret.metadata.resource_version = old.metadata.resource_version.clone();
            replace_host(&api, "Secret", &secret).await?;
        }
        None => match api
            .create(
                &PostParams {
                    field_manager: Some(markers::FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &secret,
            )
            .await
        {
            Ok(_) => {}
            // Created by a racing reconcile: the next pass refreshes it if needed.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(source) => {
                return Err(SyncError::CreateHost {
                    kind: "Secret",
                    name: secret_name,
                    source,
                });
            }
        },
    }
    let mut written = sync.written.lock().unwrap_or_else(|e| e.into_inner());
    if written.len() >= WRITTEN_CAP {
        // Entries of pods deleted before their Secret reached the cache: drop the stale ones.
        written.retain(|_, (_, at)| *at > now);
    }
    written.insert(secret_name, (host_uid, refresh_at));
    Ok(Some(Duration::from_secs((refresh_at - now).max(1) as u64)))
}

/// Mint one token per source from the virtual API, bound to the virtual pod. Returns the Secret
/// data and when to refresh (at 80% of the shortest lifetime, as the kubelet does).
async fn mint(shared: &Shared, vp: &Pod, sources: &[TokenSource]) -> Result<Minted, SyncError> {
    let ns = vp.namespace().unwrap_or_default();
    let key = key_of(vp);
    let sa = vp
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(shared.virt.clone(), &ns);
    let mut data = BTreeMap::new();
    let now = now_secs();
    let mut refresh_at = i64::MAX;
    for src in sources {
        let tr = TokenRequest {
            metadata: ObjectMeta::default(),
            spec: Some(TokenRequestSpec {
                audiences: src.audience.clone().map(|a| vec![a]),
                expiration_seconds: Some(src.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: vp.metadata.name.clone(),
                    uid: vp.metadata.uid.clone(),
                }),
                ..TokenRequestSpec::default()
            }),
            status: None,
        };
        let got = api
            .create_token_request(&sa, &PostParams::default(), &tr)
            .await
            .map_err(|source| SyncError::MintToken {
                key: key.clone(),
                source,
            })?;
        let status = got.status.unwrap_or_default();
        data.insert(
            src.key.clone(),
            ByteString(status.token.unwrap_or_default().into_bytes()),
        );
        let lifetime = src.expiration_seconds.max(1);
        refresh_at = refresh_at.min(now + lifetime * 8 / 10);
    }
    Ok((data, refresh_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn created(rv: Option<&str>) -> HostPod {
        HostPod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                resource_version: rv.map(str::to_string),
                ..ObjectMeta::default()
            },
            ..HostPod::default()
        }
    }

    #[rstest]
    // The watch has not reached the pod's own version: still pending, however long it lags.
    #[case::watch_behind(Some("100"), 99, 120, true)]
    #[case::watch_reached_it(Some("100"), 100, 0, false)]
    #[case::watch_past_it(Some("100"), 250, 0, false)]
    #[case::waited_too_long(Some("100"), 99, 700, false)]
    // Nothing parsed yet, or versions that are not numbers: a fixed time.
    #[case::no_progress_known(Some("100"), 0, 10, true)]
    #[case::opaque_version_fresh(Some("a1"), 50, 10, true)]
    #[case::opaque_version_old(Some("a1"), 50, 40, false)]
    fn a_created_pod_stands_in_until_the_watch_catches_up(
        #[case] rv: Option<&str>,
        #[case] seen: u64,
        #[case] age_secs: u64,
        #[case] pending: bool,
    ) {
        assert_eq!(
            still_pending(&created(rv), Duration::from_secs(age_secs), seen),
            pending
        );
    }
}
