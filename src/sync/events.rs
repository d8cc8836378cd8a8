//! Events about synced host objects, copied up as Events on their virtual objects.
//!
//! Host events carry no tenant labels, so every core/v1 Event in the host namespace is watched
//! and matched by its `involvedObject`: the event is copied only when that object is in this
//! tenant's host caches (pods, services and ingresses, watched with the tenant's `managed-by`
//! selector), its markers name this tenant, and its uid is the one the event is about. Another
//! tenant's events in a shared host namespace are never copied.
//!
//! The virtual event lives in the virtual object's namespace, points at the virtual object
//! (kind, name, namespace and uid from the markers) and has every host name and the host
//! namespace in its message rewritten to the virtual ones.
//!
//! **Idempotence.** The virtual event's name is derived from the host event's name
//! ([`virtual_event_name`]): `{virtual name}.{suffix}` when the host event follows the usual
//! `{host object name}.{suffix}` scheme, else a hash of the host event name. Virtual events
//! vcsync wrote carry the `managed-by` label and are cached; nothing is processed before that
//! cache is filled, an event whose copy already has the same (or a higher) count is skipped, and
//! a growing count patches `count`, `lastTimestamp`, `series` and `message`. A restart in sync
//! therefore writes nothing, and a duplicate can never be created (a racing create gets 409).
//! A virtual event of that name without the label (made by the tenant) is never overwritten.
//! An event that arrives before its host object is cached waits: the object's arrival in the
//! cache wakes the events about it.
//!
//! **Age.** Events whose last occurrence is older than [`MAX_EVENT_AGE`] (the API server's
//! default event TTL) are not copied. Younger events that happened while vcsync was down are
//! copied: they are the tenant's history (evictions, failed mounts, ...), and the deterministic
//! name keeps them from being copied twice. The age limit only stops a restart from resurrecting
//! copies that the virtual API already expired while the host still keeps them.
//!
//! **Errors.** 400/403/404/422 (namespace gone or terminating, refused by policy) are logged and
//! counted and wait for the next change of the host event; other errors retry with the shared
//! per-object backoff. Nothing panics.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, ObjectReference, Service};

use crate::cache::HostPod;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Shared, Stop, cached_stream, cached_stream_with, drain};
use crate::markers;
use crate::names::DnsSubdomain;

/// Events last seen longer ago than this are not copied (the API server's default `--event-ttl`).
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(3600);

/// Longest message of an event that has `eventTime` (the API server refuses longer ones).
const NOTE_LENGTH_LIMIT: usize = 1024;

/// Hex digits of the hash in fallback event names.
const HASH_HEX: usize = 16;

/// The virtual object a host event is about, as the host object's markers record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualTarget {
    /// Kind of the virtual object (`Pod`, `Service`, `Ingress`).
    pub kind: String,
    /// Virtual namespace.
    pub namespace: String,
    /// Virtual name.
    pub name: String,
    /// Virtual uid (may be empty if the markers lack it).
    pub uid: String,
    /// Name of the host object the event is about.
    pub host_name: String,
}

/// The `(kind, name)` of the host object a host event in `host_ns` is about, if it is an object
/// in `host_ns` of a kind vcsync syncs.
pub fn involved_host_object<'a>(ev: &'a Event, host_ns: &str) -> Option<(&'a str, &'a str)> {
    let io = &ev.involved_object;
    let kind = io.kind.as_deref()?;
    let name = io.name.as_deref().filter(|n| !n.is_empty())?;
    // An empty namespace means the event's own namespace.
    if io.namespace.as_deref().is_some_and(|ns| ns != host_ns) {
        return None;
    }
    matches!(kind, "Pod" | "Service" | "Ingress").then_some((kind, name))
}

/// The virtual target of a host event, given the metadata of the host object it names (from this
/// tenant's caches). `None` unless the object carries this tenant's markers for the same kind
/// and is the very object the event is about (same uid, when the event records one).
pub fn resolve_target(
    ev: &Event,
    tenant: &str,
    host: Option<&ObjectMeta>,
) -> Option<VirtualTarget> {
    let host = host?;
    let (kind, ns, name, uid) = markers::source_of(host, tenant)?;
    if Some(kind) != ev.involved_object.kind.as_deref() || ns.is_empty() || name.is_empty() {
        return None;
    }
    // An event about an earlier object of the same name is not about this one.
    if let Some(ev_uid) = ev.involved_object.uid.as_deref().filter(|u| !u.is_empty())
        && host.uid.as_deref() != Some(ev_uid)
    {
        return None;
    }
    Some(VirtualTarget {
        kind: kind.to_string(),
        namespace: ns.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
        host_name: host.name.clone().unwrap_or_default(),
    })
}

/// The name of the virtual copy of host event `host_event` about host object `host_obj`, whose
/// virtual name is `vname`. Deterministic, a valid DNS-1123 subdomain of at most 253 characters.
pub fn virtual_event_name(vname: &str, host_obj: &str, host_event: &str) -> String {
    if let Some(suffix) = host_event
        .strip_prefix(host_obj)
        .and_then(|s| s.strip_prefix('.'))
        .filter(|s| !s.is_empty())
    {
        let name = format!("{vname}.{suffix}");
        if DnsSubdomain::new(name.as_str()).is_ok() {
            return name;
        }
    }
    let digest = Sha256::digest(host_event.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let hex = &hex[..HASH_HEX];
    // Names are ASCII, so byte truncation is character truncation.
    let keep = vname.len().min(253 - 1 - HASH_HEX);
    let base = vname[..keep].trim_end_matches(['-', '.']);
    if base.is_empty() {
        format!("e{hex}")
    } else {
        format!("{base}.{hex}")
    }
}

/// Whether `c` may continue a namespace-like token (so a match next to it is part of a longer
/// word and must not be replaced).
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Replace the occurrences of `from` in `s` that stand alone (not inside a longer word).
fn replace_token(s: &str, from: &str, to: &str) -> String {
    if from.is_empty() {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut prev: Option<char> = None;
    while let Some(i) = rest.find(from) {
        let before = rest[..i].chars().next_back().or(prev);
        let after = rest[i + from.len()..].chars().next();
        out.push_str(&rest[..i]);
        if before.is_some_and(is_word_char) || after.is_some_and(is_word_char) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        prev = from.chars().next_back();
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
}

/// The message of a host event as the tenant sees it: the host object's name becomes the virtual
/// name and the host namespace the virtual namespace.
pub fn translate_message(msg: &str, host_ns: &str, target: &VirtualTarget) -> String {
    let mut s = msg.to_string();
    if !target.host_name.is_empty() {
        s = s.replace(
            &format!("{host_ns}/{}", target.host_name),
            &format!("{}/{}", target.namespace, target.name),
        );
        // Host names are long and tenant-unique: every occurrence is the object's name,
        // including inside names derived from it.
        s = s.replace(&target.host_name, &target.name);
    }
    // A namespace name may be a common word: replace whole tokens only.
    replace_token(&s, host_ns, &target.namespace)
}

/// Cut `s` to at most `max` bytes on a character boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The virtual copy of host event `ev` about `target`.
pub fn virtual_event(tenant: &str, host_ns: &str, ev: &Event, target: &VirtualTarget) -> Event {
    let host_event_name = ev.metadata.name.as_deref().unwrap_or("");
    let mut message = ev
        .message
        .as_deref()
        .map(|m| translate_message(m, host_ns, target));
    if ev.event_time.is_some() {
        message = message.map(|m| truncate(m, NOTE_LENGTH_LIMIT));
    }
    Event {
        metadata: ObjectMeta {
            name: Some(virtual_event_name(
                &target.name,
                &target.host_name,
                host_event_name,
            )),
            namespace: Some(target.namespace.clone()),
            labels: Some(BTreeMap::from([(
                markers::MANAGED_BY.to_string(),
                tenant.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: ev.involved_object.api_version.clone(),
            kind: Some(target.kind.clone()),
            name: Some(target.name.clone()),
            namespace: Some(target.namespace.clone()),
            uid: Some(target.uid.clone()).filter(|u| !u.is_empty()),
            field_path: ev.involved_object.field_path.clone(),
            resource_version: None,
        },
        reason: ev.reason.clone(),
        message,
        type_: ev.type_.clone(),
        count: ev.count,
        first_timestamp: ev.first_timestamp.clone(),
        last_timestamp: ev.last_timestamp.clone(),
        event_time: ev.event_time.clone(),
        series: ev.series.clone(),
        action: ev.action.clone(),
        source: ev.source.clone(),
        reporting_component: ev.reporting_component.clone(),
        reporting_instance: ev.reporting_instance.clone(),
        // A host object reference means nothing in the virtual cluster.
        related: None,
    }
}

/// When an event last occurred, from the most precise field it has.
pub fn last_seen(ev: &Event) -> Option<Timestamp> {
    ev.series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0)
        .or_else(|| ev.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| ev.event_time.as_ref().map(|t| t.0))
        .or_else(|| ev.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| ev.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Whether `ev` is young enough to copy at `now`. Events without any time are copied.
pub fn is_recent(ev: &Event, now: Timestamp, max_age: Duration) -> bool {
    let Some(seen) = last_seen(ev) else {
        return true;
    };
    let age = now.as_second().saturating_sub(seen.as_second());
    age <= i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX)
}

/// How far an event has progressed: occurrences, then the time of the last one.
fn progress(ev: &Event) -> (i32, i32, i64) {
    (
        ev.count.unwrap_or(0),
        ev.series.as_ref().and_then(|s| s.count).unwrap_or(0),
        last_seen(ev).map(|t| t.as_second()).unwrap_or(0),
    )
}

/// The merge patch that brings an existing virtual event up to `desired`, or `None` when the
/// copy already shows as many occurrences (then nothing is written).
pub fn update_patch(existing: &Event, desired: &Event) -> Option<serde_json::Value> {
    let (have, want) = (progress(existing), progress(desired));
    let behind = want.0 > have.0
        || want.1 > have.1
        || (want.0 == have.0 && want.1 == have.1 && want.2 > have.2);
    behind.then(|| {
        json!({
            "count": desired.count,
            "lastTimestamp": desired.last_timestamp,
            "series": desired.series,
            "message": desired.message,
        })
    })
}

/// Whether a virtual event is a copy vcsync wrote for `tenant` (only those are ever updated).
pub fn is_ours(ev: &Event, tenant: &str) -> bool {
    ev.labels().get(markers::MANAGED_BY).map(String::as_str) == Some(tenant)
}

/// Drop what the event sync never reads from a cached host event. Every event in the host
/// namespace is cached (the kubelet alone writes several per pod), so this is the largest cache:
/// only the name, what the copy is made of ([`virtual_event`]), what finds its target
/// ([`involved_host_object`], [`resolve_target`]) and its age ([`last_seen`]) are kept.
pub fn strip_host_event(ev: &mut Event) {
    let m = std::mem::take(&mut ev.metadata);
    ev.metadata = ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        creation_timestamp: m.creation_timestamp,
        ..ObjectMeta::default()
    };
    ev.involved_object.resource_version = None;
    ev.related = None;
}

/// Reduce a cached virtual event to what deciding whether to write it needs: its name, whether
/// it is ours ([`is_ours`]) and how far it has progressed ([`update_patch`]). The copy's message,
/// source and target are only ever written, never read back.
pub fn strip_virtual_event(ev: &mut Event) {
    let e = std::mem::take(ev);
    let labels = e.metadata.labels.and_then(|l| {
        let ours: BTreeMap<String, String> = l
            .into_iter()
            .filter(|(k, _)| k == markers::MANAGED_BY)
            .collect();
        (!ours.is_empty()).then_some(ours)
    });
    *ev = Event {
        metadata: ObjectMeta {
            name: e.metadata.name,
            namespace: e.metadata.namespace,
            uid: e.metadata.uid,
            resource_version: e.metadata.resource_version,
            creation_timestamp: e.metadata.creation_timestamp,
            labels,
            ..ObjectMeta::default()
        },
        count: e.count,
        first_timestamp: e.first_timestamp,
        last_timestamp: e.last_timestamp,
        event_time: e.event_time,
        series: e.series,
        ..Event::default()
    };
}

/// Names of the cached host events, by the host object (`kind`, `name`) they are about: a host
/// object that arrives in the cache wakes the events about it without a walk over every cached
/// event. Follows the host event watch as the reflector store does (a re-list replaces it).
#[derive(Debug, Default)]
pub struct EventsByObject {
    inner: std::sync::Mutex<AboutInner>,
}

type About = HashMap<(String, String), HashSet<String>>;

#[derive(Debug, Default)]
struct AboutInner {
    by_object: About,
    /// A list in progress: replaces `by_object` when done.
    listing: Option<About>,
    /// Events whose object was not in this tenant's caches when they were last reconciled: the
    /// only ones the object's arrival wakes ([`EventsByObject::take_waiting`]). Without this,
    /// every change of a host pod would reconcile every event about it again.
    waiting: About,
}

impl EventsByObject {
    fn lock(&self) -> std::sync::MutexGuard<'_, AboutInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follow one event of the host event watch (before the store sees it). Only events about an
    /// object in `host_ns` of a synced kind are indexed: no other is ever copied.
    pub fn observe(&self, host_ns: &str, event: &watcher::Event<Event>) {
        let key = |ev: &Event| {
            let (kind, name) = involved_host_object(ev, host_ns)?;
            Some(((kind.to_string(), name.to_string()), ev.name_any()))
        };
        let mut inner = self.lock();
        match event {
            watcher::Event::Apply(ev) => {
                // An event's involvedObject does not change; were it to, the stale entry would
                // only wake a reconcile that finds nothing to do.
                if let Some((obj, name)) = key(ev) {
                    inner.by_object.entry(obj).or_default().insert(name);
                }
            }
            watcher::Event::Delete(ev) => {
                if let Some((obj, name)) = key(ev) {
                    let AboutInner {
                        by_object, waiting, ..
                    } = &mut *inner;
                    for map in [by_object, waiting] {
                        if let Some(names) = map.get_mut(&obj) {
                            names.remove(&name);
                            if names.is_empty() {
                                map.remove(&obj);
                            }
                        }
                    }
                }
            }
            watcher::Event::Init => inner.listing = Some(About::new()),
            watcher::Event::InitApply(ev) => {
                if let Some((obj, name)) = key(ev) {
                    let AboutInner {
                        by_object, listing, ..
                    } = &mut *inner;
                    listing
                        .as_mut()
                        .unwrap_or(by_object)
                        .entry(obj)
                        .or_default()
                        .insert(name);
                }
            }
            watcher::Event::InitDone => {
                if let Some(listing) = inner.listing.take() {
                    inner.by_object = listing;
                    // Events gone while the watch was down wait for nothing any more.
                    let AboutInner {
                        by_object, waiting, ..
                    } = &mut *inner;
                    waiting.retain(|obj, names| {
                        let live = by_object.get(obj);
                        names.retain(|n| live.is_some_and(|l| l.contains(n)));
                        !names.is_empty()
                    });
                }
            }
        }
    }

    /// Record that host event `event` waits for host object `kind/name` to be cached.
    pub fn wait(&self, kind: &str, name: &str, event: &str) {
        self.lock()
            .waiting
            .entry((kind.to_string(), name.to_string()))
            .or_default()
            .insert(event.to_string());
    }

    /// Record that host event `event` no longer waits for host object `kind/name`.
    pub fn resolved(&self, kind: &str, name: &str, event: &str) {
        let mut inner = self.lock();
        let obj = (kind.to_string(), name.to_string());
        if let Some(names) = inner.waiting.get_mut(&obj) {
            names.remove(event);
            if names.is_empty() {
                inner.waiting.remove(&obj);
            }
        }
    }

    /// Names of the host events waiting for host object `kind/name`, which no longer wait.
    pub fn take_waiting(&self, kind: &str, name: &str) -> Vec<String> {
        self.lock()
            .waiting
            .remove(&(kind.to_string(), name.to_string()))
            .map(|names| names.into_iter().collect())
            .unwrap_or_default()
    }

    /// Names of the host events about host object `kind/name`.
    pub fn about(&self, kind: &str, name: &str) -> Vec<String> {
        self.lock()
            .by_object
            .get(&(kind.to_string(), name.to_string()))
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Why copying one event failed.
#[derive(Debug, thiserror::Error)]
pub enum EventSyncError {
    #[error("creating virtual event {key}: {source}")]
    Create { key: String, source: kube::Error },
    #[error("updating virtual event {key}: {source}")]
    Update { key: String, source: kube::Error },
    #[error("reading virtual event {key}: {source}")]
    Read { key: String, source: kube::Error },
}

impl EventSyncError {
    fn code(&self) -> Option<u16> {
        let (EventSyncError::Create { source, .. }
        | EventSyncError::Update { source, .. }
        | EventSyncError::Read { source, .. }) = self;
        match source {
            kube::Error::Api(s) => Some(s.code),
            _ => None,
        }
    }

    /// Refusals that retrying cannot fix: the virtual namespace is gone or terminating, or the
    /// virtual API does not accept the event.
    pub fn is_permanent(&self) -> bool {
        matches!(self.code(), Some(400 | 403 | 404 | 422))
    }
}

/// What the event reconciler reads, and what it counts.
pub struct EventSync {
    pub shared: Arc<Shared>,
    /// This tenant's host pods, services and ingresses.
    pub host_pods: Store<HostPod>,
    pub host_services: Store<Service>,
    pub host_ingresses: Store<Ingress>,
    /// Virtual events vcsync wrote (by the `managed-by` label), all namespaces.
    pub virtual_events: Store<Event>,
    /// Virtual events created.
    pub created: AtomicU64,
    /// Virtual events whose count was brought up to date.
    pub updated: AtomicU64,
    /// Copies the virtual API refused for good (403, 422, ...).
    pub refused: AtomicU64,
    /// Which host events wait for their object.
    pub index: Arc<EventsByObject>,
    /// Copies this process created that the virtual events cache may not show yet (by
    /// namespace and name, as cached, with when): a second pass before the cache catches up
    /// must not create them again (a 409 and a GET).
    pub created_copies: std::sync::Mutex<HashMap<(String, String), (Event, std::time::Instant)>>,
}

/// How long a created copy stands in for the virtual events cache.
const CREATED_COPY_TTL: std::time::Duration = std::time::Duration::from_secs(30);
/// Size at which the record of created copies is pruned.
const CREATED_COPIES_CAP: usize = 4096;

impl EventSync {
    fn created_copies(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), (Event, std::time::Instant)>> {
        self.created_copies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The copy `ns/name` as this process knows it: the cache's, else one it created within
    /// [`CREATED_COPY_TTL`].
    fn known_copy(&self, ns: &str, name: &str) -> Option<Event> {
        if let Some(e) = self.virtual_events.get(&ObjectRef::new(name).within(ns)) {
            return Some(e.as_ref().clone());
        }
        let mut created = self.created_copies();
        let key = (ns.to_string(), name.to_string());
        match created.get(&key) {
            Some((e, at)) if at.elapsed() < CREATED_COPY_TTL => Some(e.clone()),
            Some(_) => {
                created.remove(&key);
                None
            }
            None => None,
        }
    }

    fn remember_copy(&self, ns: &str, mut copy: Event) {
        strip_virtual_event(&mut copy);
        let mut created = self.created_copies();
        if created.len() >= CREATED_COPIES_CAP {
            created.retain(|_, (_, at)| at.elapsed() < CREATED_COPY_TTL);
        }
        let name = copy.metadata.name.clone().unwrap_or_default();
        created.insert((ns.to_string(), name), (copy, std::time::Instant::now()));
    }
}

impl EventSync {
    /// Metadata of host object `kind/name` from this tenant's caches.
    fn host_meta(&self, kind: &str, name: &str) -> Option<ObjectMeta> {
        let ns = &self.shared.cfg.host_namespace;
        match kind {
            "Pod" => self
                .host_pods
                .get(&ObjectRef::new(name).within(ns))
                .map(|o| o.metadata.clone()),
            "Service" => self
                .host_services
                .get(&ObjectRef::new(name).within(ns))
                .map(|o| o.metadata.clone()),
            "Ingress" => self
                .host_ingresses
                .get(&ObjectRef::new(name).within(ns))
                .map(|o| o.metadata.clone()),
            _ => None,
        }
    }
}

/// Host events waiting for the host object `obj` of `kind`: a newly cached object wakes the
/// events that arrived before it (and only those: its other changes wake none).
fn events_about<K: Resource>(
    index: &EventsByObject,
    host_ns: &str,
    kind: &str,
    obj: &K,
) -> Vec<ObjectRef<Event>> {
    let name = obj.meta().name.as_deref().unwrap_or("");
    index
        .take_waiting(kind, name)
        .into_iter()
        .map(|e| ObjectRef::new(&e).within(host_ns))
        .collect()
}

/// Run the event back-sync until `stop`.
pub async fn run(shared: Arc<Shared>, stop: Stop) {
    let tenant = shared.cfg.tenant.clone();
    let host_ns = shared.cfg.host_namespace.clone();
    let index = Arc::new(EventsByObject::default());
    let (host_events, writer) = reflector::store();
    let estream = watcher(shared.host_api::<Event>(), watcher::Config::default())
        .backoff(crate::sync::watch_backoff())
        .modify(strip_host_event)
        .inspect({
            let (index, host_ns) = (index.clone(), host_ns.clone());
            move |e| {
                if let Ok(e) = e {
                    index.observe(&host_ns, e);
                }
            }
        })
        .reflect(writer)
        .touched_objects();
    let host_pods = shared.host_pods.clone();
    let pstream = shared.host_pod_change_stream();
    let (host_services, sstream) =
        cached_stream(shared.host_api::<Service>(), shared.host_watch_config());
    let (host_ingresses, istream) =
        cached_stream(shared.host_api::<Ingress>(), shared.host_watch_config());
    let (virtual_events, vstream) = cached_stream_with(
        Api::<Event>::all(shared.virt.clone()),
        watcher::Config::default().labels(&markers::tenant_selector(&tenant)),
        strip_virtual_event,
    );
    let sync = Arc::new(EventSync {
        shared: shared.clone(),
        host_pods,
        host_services,
        host_ingresses,
        virtual_events,
        created: AtomicU64::new(0),
        updated: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        index: index.clone(),
        created_copies: std::sync::Mutex::default(),
    });
    let ((i1, n1), (i2, n2), (i3, n3)) = (
        (index.clone(), host_ns.clone()),
        (index.clone(), host_ns.clone()),
        (index, host_ns),
    );
    let controller = Controller::for_stream(estream, host_events)
        .with_config(controller::Config::default().concurrency(shared.cfg.concurrency as u16))
        .watches_stream(pstream, move |p: HostPod| events_about(&i1, &n1, "Pod", &p))
        .watches_stream(sstream, move |s: Service| {
            events_about(&i2, &n2, "Service", &s)
        })
        .watches_stream(istream, move |i: Ingress| {
            events_about(&i3, &n3, "Ingress", &i)
        })
        .graceful_shutdown_on(stop.signal())
        .run(reconcile, error_policy, sync.clone());
    // The virtual events cache is only read, so its stream is just drained; it never ends, and
    // the controller ends on `stop` once in-flight copies are done.
    let virtual_cache = futures::StreamExt::for_each(vstream, {
        let sync = sync.clone();
        move |e| {
            // The cache shows this copy now: it no longer needs standing in for.
            if let Ok(e) = e {
                sync.created_copies()
                    .remove(&(e.namespace().unwrap_or_default(), e.name_any()));
            }
            futures::future::ready(())
        }
    });
    tokio::select! {
        _ = drain("event", controller) => {}
        _ = virtual_cache => {}
    }
}

fn error_policy(ev: Arc<Event>, err: &EventSyncError, sync: Arc<EventSync>) -> Action {
    let key = format!("event/{}", ev.name_any());
    if err.is_permanent() {
        let n = sync.refused.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(controller = "event", key, error = %err, refused_total = n, "refused; waiting for the host event to change");
        return Action::await_change();
    }
    tracing::info!(controller = "event", key, error = %err, "retrying");
    Action::requeue(sync.shared.backoff.next(&key))
}

async fn reconcile(ev: Arc<Event>, sync: Arc<EventSync>) -> Result<Action, EventSyncError> {
    sync.shared.gate.opened().await;
    let span = tracing::info_span!(
        "reconcile",
        controller = "event",
        namespace = ev.namespace().unwrap_or_default(),
        name = ev.name_any()
    );
    let result = tracing::Instrument::instrument(reconcile_inner(&ev, &sync), span).await;
    if result.is_ok() {
        sync.shared
            .backoff
            .reset(&format!("event/{}", ev.name_any()));
    }
    result
}

async fn reconcile_inner(ev: &Event, sync: &EventSync) -> Result<Action, EventSyncError> {
    let shared = &sync.shared;
    let host_ns = &shared.cfg.host_namespace;
    // Judging "already copied" from a half-filled cache would write again after a restart.
    if !super::cache_ready(&sync.virtual_events).await {
        return Ok(Action::await_change());
    }
    let Some((kind, name)) = involved_host_object(ev, host_ns) else {
        return Ok(Action::await_change());
    };
    // Not (yet) in this tenant's caches: another tenant's object, or one whose cache entry
    // arrives later, which wakes this event again (see `events_about`). Marked before the
    // cache is read, so an arrival in between still finds the mark.
    let ev_name = ev.name_any();
    sync.index.wait(kind, name, &ev_name);
    let meta = sync.host_meta(kind, name);
    let Some(target) = resolve_target(ev, &shared.cfg.tenant, meta.as_ref()) else {
        return Ok(Action::await_change());
    };
    sync.index.resolved(kind, name, &ev_name);
    if !is_recent(ev, Timestamp::now(), MAX_EVENT_AGE) {
        return Ok(Action::await_change());
    }
    let desired = virtual_event(&shared.cfg.tenant, host_ns, ev, &target);
    let vname = desired.metadata.name.clone().unwrap_or_default();
    let key = format!("{}/{vname}", target.namespace);
    let api: Api<Event> = Api::namespaced(shared.virt.clone(), &target.namespace);
    let existing = match sync.known_copy(&target.namespace, &vname) {
        Some(e) => Some(e),
        None => match api
            .create(
                &PostParams {
                    field_manager: Some(markers::FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &desired,
            )
            .await
        {
            Ok(_) => {
                sync.remember_copy(&target.namespace, desired.clone());
                sync.created.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(key, reason = ?desired.reason, "copied host event");
                return Ok(Action::await_change());
            }
            // Written by an earlier pass the cache has not shown yet.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                api.get_opt(&vname)
                    .await
                    .map_err(|source| EventSyncError::Read {
                        key: key.clone(),
                        source,
                    })?
            }
            Err(source) => return Err(EventSyncError::Create { key, source }),
        },
    };
    if let Some(existing) = &existing
        && !is_ours(existing, &shared.cfg.tenant)
    {
        // The tenant made an event of that name: never overwrite it.
        let n = sync.refused.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            key,
            refused_total = n,
            "a virtual event of that name exists without vcsync's label: not copied"
        );
        return Ok(Action::await_change());
    }
    if let Some(existing) = existing
        && let Some(patch) = update_patch(&existing, &desired)
    {
        api.patch(
            &vname,
            &PatchParams {
                field_manager: Some(markers::FIELD_MANAGER.into()),
                ..Default::default()
            },
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|source| EventSyncError::Update {
            key: key.clone(),
            source,
        })?;
        sync.updated.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(key, count = ?desired.count, "updated copied event");
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EventSeries, EventSource};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
    use rstest::rstest;

    const HOST_NS: &str = "host-acme";
    const HOST_POD: &str = "web-shop-acme-3-4";

    fn target() -> VirtualTarget {
        VirtualTarget {
            kind: "Pod".into(),
            namespace: "shop".into(),
            name: "web".into(),
            uid: "vuid".into(),
            host_name: HOST_POD.into(),
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn host_event(name: &str, message: &str) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(HOST_NS.into()),
                resource_version: Some("77".into()),
                uid: Some("host-event-uid".into()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(HOST_POD.into()),
                namespace: Some(HOST_NS.into()),
                uid: Some("huid".into()),
                resource_version: Some("12".into()),
                field_path: Some("spec.containers{app}".into()),
            },
            reason: Some("Started".into()),
            message: Some(message.into()),
            type_: Some("Normal".into()),
            count: Some(1),
            first_timestamp: Some(Time(ts("2025-01-01T00:00:00Z"))),
            last_timestamp: Some(Time(ts("2025-01-01T00:00:00Z"))),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some("node-1".into()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some("node-1".into()),
            ..Default::default()
        }
    }

    fn host_pod_meta(tenant: &str, uid: &str) -> ObjectMeta {
        let src = markers::Source {
            tenant,
            kind: "Pod",
            namespace: "shop",
            name: "web",
            uid: "vuid",
        };
        ObjectMeta {
            name: Some(HOST_POD.into()),
            namespace: Some(HOST_NS.into()),
            uid: Some(uid.into()),
            labels: Some(src.labels()),
            annotations: Some(src.annotations()),
            ..Default::default()
        }
    }

    #[test]
    fn a_host_event_becomes_an_event_on_the_virtual_object() {
        let ev = host_event(
            &format!("{HOST_POD}.181a2b3c4d5e6f70"),
            "Started container app",
        );
        let v = virtual_event("acme", HOST_NS, &ev, &target());
        assert_eq!(v.metadata.name.as_deref(), Some("web.181a2b3c4d5e6f70"));
        assert_eq!(v.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(v.metadata.labels.unwrap()[markers::MANAGED_BY], "acme");
        assert!(v.metadata.resource_version.is_none() && v.metadata.uid.is_none());
        let io = v.involved_object;
        assert_eq!(io.kind.as_deref(), Some("Pod"));
        assert_eq!(io.api_version.as_deref(), Some("v1"));
        assert_eq!(io.name.as_deref(), Some("web"));
        assert_eq!(io.namespace.as_deref(), Some("shop"));
        assert_eq!(io.uid.as_deref(), Some("vuid"));
        assert_eq!(io.field_path.as_deref(), Some("spec.containers{app}"));
        assert!(io.resource_version.is_none());
        assert_eq!(v.reason.as_deref(), Some("Started"));
        assert_eq!(v.type_.as_deref(), Some("Normal"));
        assert_eq!(v.count, Some(1));
        assert_eq!(v.first_timestamp, ev.first_timestamp);
        assert_eq!(v.last_timestamp, ev.last_timestamp);
        assert_eq!(v.source, ev.source);
        assert_eq!(v.reporting_component.as_deref(), Some("kubelet"));
    }

    #[rstest]
    #[case::assigned(
        "Successfully assigned host-acme/web-shop-acme-3-4 to node-1",
        "Successfully assigned shop/web to node-1"
    )]
    #[case::bare_name("Pod web-shop-acme-3-4 was evicted", "Pod web was evicted")]
    #[case::derived_name(
        "secret \"web-shop-acme-3-4-sa-token\" not found",
        "secret \"web-sa-token\" not found"
    )]
    #[case::namespace_token(
        "namespace \"host-acme\" is terminating",
        "namespace \"shop\" is terminating"
    )]
    #[case::namespace_in_dns("lookup db.host-acme.svc failed", "lookup db.shop.svc failed")]
    #[case::namespace_inside_word(
        "host-acme-other and xhost-acme stay",
        "host-acme-other and xhost-acme stay"
    )]
    #[case::twice(
        "host-acme host-acme/web-shop-acme-3-4 host-acme",
        "shop shop/web shop"
    )]
    #[case::nothing("Pulling image \"nginx\"", "Pulling image \"nginx\"")]
    fn messages_show_virtual_names(#[case] host: &str, #[case] want: &str) {
        assert_eq!(translate_message(host, HOST_NS, &target()), want);
    }

    #[rstest]
    #[case::usual("web", "web-shop-acme-3-4", "web-shop-acme-3-4.181a2b", "web.181a2b")]
    #[case::dotted_virtual_name("a.b", "a.b-shop-acme-3-4", "a.b-shop-acme-3-4.ff", "a.b.ff")]
    fn event_names_follow_the_host_suffix(
        #[case] vname: &str,
        #[case] host_obj: &str,
        #[case] host_event: &str,
        #[case] want: &str,
    ) {
        assert_eq!(virtual_event_name(vname, host_obj, host_event), want);
    }

    #[rstest]
    #[case::other_scheme("web", "web-shop-acme-3-4", "something-else")]
    #[case::invalid_suffix("web", "web-shop-acme-3-4", "web-shop-acme-3-4.UPPER")]
    #[case::empty_suffix("web", "web-shop-acme-3-4", "web-shop-acme-3-4.")]
    #[case::too_long(&"a".repeat(250), "h", "h.0123456789abcdef")]
    fn other_event_names_are_hashed(
        #[case] vname: &str,
        #[case] host_obj: &str,
        #[case] host_event: &str,
    ) {
        let n = virtual_event_name(vname, host_obj, host_event);
        assert!(n.len() <= 253, "{n}");
        assert!(DnsSubdomain::new(n.as_str()).is_ok(), "{n}");
        assert_eq!(n.rsplit('.').next().unwrap().len(), HASH_HEX);
        // Deterministic, and different host events get different names.
        assert_eq!(n, virtual_event_name(vname, host_obj, host_event));
        assert_ne!(
            n,
            virtual_event_name(vname, host_obj, &format!("{host_event}x"))
        );
    }

    #[test]
    fn only_this_tenants_objects_are_targets() {
        let ev = host_event("e.1", "m");
        assert_eq!(
            resolve_target(&ev, "acme", Some(&host_pod_meta("acme", "huid"))),
            Some(target())
        );
        // Another tenant's pod in the same host namespace.
        assert_eq!(
            resolve_target(&ev, "acme", Some(&host_pod_meta("other", "huid"))),
            None
        );
        // An earlier pod of the same name.
        assert_eq!(
            resolve_target(&ev, "acme", Some(&host_pod_meta("acme", "older"))),
            None
        );
        // Not in the caches at all.
        assert_eq!(resolve_target(&ev, "acme", None), None);
        // Unmarked.
        let plain = ObjectMeta {
            name: Some(HOST_POD.into()),
            uid: Some("huid".into()),
            ..Default::default()
        };
        assert_eq!(resolve_target(&ev, "acme", Some(&plain)), None);
        // The marker kind must match the event's kind.
        let mut svc_ev = ev.clone();
        svc_ev.involved_object.kind = Some("Service".into());
        assert_eq!(
            resolve_target(&svc_ev, "acme", Some(&host_pod_meta("acme", "huid"))),
            None
        );
    }

    #[rstest]
    #[case::pod("Pod", Some(HOST_NS), Some(("Pod", HOST_POD)))]
    #[case::service("Service", None, Some(("Service", HOST_POD)))]
    #[case::ingress("Ingress", Some(HOST_NS), Some(("Ingress", HOST_POD)))]
    #[case::node("Node", Some(""), None)]
    #[case::other_namespace("Pod", Some("elsewhere"), None)]
    fn which_events_are_looked_at(
        #[case] kind: &str,
        #[case] ns: Option<&str>,
        #[case] want: Option<(&str, &str)>,
    ) {
        let mut ev = host_event("e.1", "m");
        ev.involved_object.kind = Some(kind.into());
        ev.involved_object.namespace = ns.map(str::to_string);
        assert_eq!(involved_host_object(&ev, HOST_NS), want);
    }

    #[test]
    fn copies_in_sync_are_not_written_again() {
        let ev = host_event("e.1", "m");
        let v = virtual_event("acme", HOST_NS, &ev, &target());
        assert_eq!(update_patch(&v, &v), None);
        // A newer count on the host patches count and lastTimestamp.
        let mut again = ev.clone();
        again.count = Some(3);
        again.last_timestamp = Some(Time(ts("2025-01-01T00:05:00Z")));
        let want = virtual_event("acme", HOST_NS, &again, &target());
        let patch = update_patch(&v, &want).unwrap();
        assert_eq!(patch["count"], 3);
        assert_eq!(patch["lastTimestamp"], "2025-01-01T00:05:00Z");
        // An older view of the host event never moves the copy back.
        assert_eq!(update_patch(&want, &v), None);
    }

    #[test]
    fn only_labelled_virtual_events_are_ours() {
        let v = virtual_event("acme", HOST_NS, &host_event("e.1", "m"), &target());
        assert!(is_ours(&v, "acme"));
        assert!(!is_ours(&v, "other"));
        assert!(!is_ours(&host_event("e.1", "m"), "acme"));
    }

    #[test]
    fn series_events_update_by_series_count() {
        let mut ev = host_event("e.1", "m");
        ev.count = None;
        ev.event_time = Some(MicroTime(ts("2025-01-01T00:00:00Z")));
        let v = virtual_event("acme", HOST_NS, &ev, &target());
        ev.series = Some(EventSeries {
            count: Some(2),
            last_observed_time: Some(MicroTime(ts("2025-01-01T00:01:00Z"))),
        });
        let want = virtual_event("acme", HOST_NS, &ev, &target());
        assert!(update_patch(&v, &want).unwrap()["series"]["count"] == 2);
    }

    #[test]
    fn long_messages_of_new_style_events_are_cut() {
        let mut ev = host_event("e.1", &"é".repeat(600));
        ev.event_time = Some(MicroTime(ts("2025-01-01T00:00:00Z")));
        let v = virtual_event("acme", HOST_NS, &ev, &target());
        assert!(v.message.unwrap().len() <= NOTE_LENGTH_LIMIT);
    }

    #[rstest]
    #[case::fresh("2025-01-01T00:59:00Z", true)]
    #[case::at_the_limit("2025-01-01T01:00:00Z", true)]
    #[case::expired("2025-01-01T01:00:01Z", false)]
    fn old_events_are_not_copied(#[case] now: &str, #[case] want: bool) {
        let ev = host_event("e.1", "m");
        assert_eq!(is_recent(&ev, ts(now), MAX_EVENT_AGE), want);
        let timeless = Event::default();
        assert!(is_recent(&timeless, ts(now), MAX_EVENT_AGE));
    }

    /// A host event with every field the API may fill, including those the cache drops.
    fn full_host_event() -> Event {
        let mut ev = host_event(&format!("{HOST_POD}.181a2b"), "Started container app");
        ev.metadata.labels = Some(BTreeMap::from([("a".into(), "b".into())]));
        ev.metadata.annotations = Some(BTreeMap::from([("big".into(), "x".repeat(4096))]));
        ev.metadata.creation_timestamp = Some(Time(ts("2025-01-01T00:00:00Z")));
        ev.related = Some(ev.involved_object.clone());
        ev.action = Some("Binding".into());
        ev
    }

    #[rstest]
    #[case::old_style(full_host_event())]
    #[case::series({
        let mut ev = full_host_event();
        ev.count = None;
        ev.event_time = Some(MicroTime(ts("2025-01-01T00:00:00Z")));
        ev.series = Some(EventSeries {
            count: Some(4),
            last_observed_time: Some(MicroTime(ts("2025-01-01T00:03:00Z"))),
        });
        ev
    })]
    #[case::timeless({
        let mut ev = full_host_event();
        ev.first_timestamp = None;
        ev.last_timestamp = None;
        ev
    })]
    fn stripped_host_events_sync_as_before(#[case] ev: Event) {
        let mut cached = ev.clone();
        strip_host_event(&mut cached);
        assert!(cached.metadata.annotations.is_none() && cached.related.is_none());
        assert_eq!(
            involved_host_object(&cached, HOST_NS),
            involved_host_object(&ev, HOST_NS)
        );
        let meta = host_pod_meta("acme", "huid");
        assert_eq!(
            resolve_target(&cached, "acme", Some(&meta)),
            resolve_target(&ev, "acme", Some(&meta))
        );
        assert_eq!(last_seen(&cached), last_seen(&ev));
        assert_eq!(
            virtual_event("acme", HOST_NS, &cached, &target()),
            virtual_event("acme", HOST_NS, &ev, &target())
        );
    }

    #[rstest]
    #[case::same(1, 1, "2025-01-01T00:00:00Z")]
    #[case::more(3, 1, "2025-01-01T00:05:00Z")]
    #[case::fewer(1, 3, "2025-01-01T00:05:00Z")]
    #[case::later(1, 1, "2025-01-01T00:05:00Z")]
    fn stripped_virtual_events_decide_as_before(
        #[case] have: i32,
        #[case] want: i32,
        #[case] last: &str,
    ) {
        let mut host = full_host_event();
        host.count = Some(have);
        let existing = virtual_event("acme", HOST_NS, &host, &target());
        host.count = Some(want);
        host.last_timestamp = Some(Time(ts(last)));
        let desired = virtual_event("acme", HOST_NS, &host, &target());
        let mut cached = existing.clone();
        strip_virtual_event(&mut cached);
        assert!(cached.message.is_none() && cached.involved_object.name.is_none());
        assert_eq!(
            update_patch(&cached, &desired),
            update_patch(&existing, &desired)
        );
        for tenant in ["acme", "other"] {
            assert_eq!(is_ours(&cached, tenant), is_ours(&existing, tenant));
        }
    }

    #[test]
    fn a_tenants_virtual_event_keeps_only_the_ownership_label() {
        let mut ev = virtual_event("acme", HOST_NS, &full_host_event(), &target());
        ev.metadata
            .labels
            .get_or_insert_default()
            .insert("extra".into(), "x".into());
        strip_virtual_event(&mut ev);
        assert_eq!(
            ev.metadata.labels,
            Some(BTreeMap::from([(
                markers::MANAGED_BY.into(),
                "acme".into()
            )]))
        );
        let mut tenants = full_host_event();
        strip_virtual_event(&mut tenants);
        assert_eq!(tenants.metadata.labels, None);
    }

    fn about(idx: &EventsByObject, name: &str) -> Vec<String> {
        let mut names = idx.about("Pod", name);
        names.sort();
        names
    }

    fn pod_event(name: &str, pod: &str) -> Event {
        let mut ev = host_event(name, "m");
        ev.involved_object.name = Some(pod.into());
        ev
    }

    #[test]
    fn events_are_found_by_the_object_they_are_about() {
        use watcher::Event as W;
        let idx = EventsByObject::default();
        idx.observe(HOST_NS, &W::Init);
        idx.observe(HOST_NS, &W::InitApply(pod_event("a.1", "a")));
        idx.observe(HOST_NS, &W::InitApply(pod_event("b.1", "b")));
        idx.observe(HOST_NS, &W::InitDone);
        idx.observe(HOST_NS, &W::Apply(pod_event("a.2", "a")));
        idx.observe(HOST_NS, &W::Apply(pod_event("a.2", "a")));
        assert_eq!(about(&idx, "a"), ["a.1", "a.2"]);
        assert!(idx.about("Service", "a").is_empty());
        idx.observe(HOST_NS, &W::Delete(pod_event("a.1", "a")));
        assert_eq!(about(&idx, "a"), ["a.2"]);
        // Events about objects in another namespace are never copied, so never indexed.
        let mut elsewhere = pod_event("c.1", "c");
        elsewhere.involved_object.namespace = Some("elsewhere".into());
        idx.observe(HOST_NS, &W::Apply(elsewhere));
        assert!(about(&idx, "c").is_empty());
        // A re-list replaces everything once done: "b.1" was deleted meanwhile.
        idx.observe(HOST_NS, &W::Init);
        idx.observe(HOST_NS, &W::InitApply(pod_event("a.2", "a")));
        assert_eq!(
            about(&idx, "b"),
            ["b.1"],
            "a list in progress is not applied"
        );
        idx.observe(HOST_NS, &W::InitDone);
        assert!(about(&idx, "b").is_empty());
        assert_eq!(about(&idx, "a"), ["a.2"]);
    }

    #[test]
    fn only_waiting_events_are_woken_by_their_object() {
        use watcher::Event as W;
        let idx = EventsByObject::default();
        idx.observe(HOST_NS, &W::Init);
        idx.observe(HOST_NS, &W::InitDone);
        for e in ["a.1", "a.2", "b.1"] {
            idx.observe(HOST_NS, &W::Apply(pod_event(e, &e[..1])));
        }
        // a.1 found its pod; a.2 and b.1 did not.
        idx.wait("Pod", "a", "a.1");
        idx.resolved("Pod", "a", "a.1");
        idx.wait("Pod", "a", "a.2");
        idx.wait("Pod", "b", "b.1");
        assert_eq!(idx.take_waiting("Pod", "a"), ["a.2"]);
        assert!(
            idx.take_waiting("Pod", "a").is_empty(),
            "woken once: later changes of the pod wake nothing"
        );
        assert!(idx.take_waiting("Service", "b").is_empty());
        // A deleted event waits for nothing; nor does one gone across a re-list.
        idx.wait("Pod", "a", "a.1");
        idx.observe(HOST_NS, &W::Delete(pod_event("a.1", "a")));
        assert!(idx.take_waiting("Pod", "a").is_empty());
        idx.observe(HOST_NS, &W::Init);
        idx.observe(HOST_NS, &W::InitApply(pod_event("a.2", "a")));
        idx.observe(HOST_NS, &W::InitDone);
        assert!(idx.take_waiting("Pod", "b").is_empty(), "b.1 is gone");
    }
}
