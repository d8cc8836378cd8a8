//! The bench's own clock: a watch per side that stamps, with a monotonic `Instant` taken when the
//! event arrives, when each pod was first seen, first Ready, deleted, and every change of its uid
//! or of the tracked label. All latencies are differences of these stamps, taken in one process,
//! so the two API servers' clocks never matter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

/// Label whose value changes are recorded (the drift scenario edits it out of band).
pub const TAG_LABEL: &str = "bench-tag";

/// What one pod went through, as seen by one watch.
#[derive(Debug, Clone, Default)]
pub struct Stamps {
    pub seen: Option<Instant>,
    pub ready: Option<Instant>,
    pub gone: Option<Instant>,
    /// Every change of (uid, tag label value), oldest first.
    pub changes: Vec<(Instant, String, Option<String>)>,
}

/// How a watched object maps to the key the bench knows it by (`namespace/name` of the virtual
/// object).
pub type KeyFn<K> = fn(&K) -> Option<String>;

/// `namespace/name` of the object itself.
pub fn own_key<K: Resource>(p: &K) -> Option<String> {
    Some(format!(
        "{}/{}",
        p.meta().namespace.as_ref()?,
        p.meta().name.as_ref()?
    ))
}

/// `namespace/name` of the virtual object a host object mirrors, from vcsync's markers.
pub fn virtual_key<K: Resource>(p: &K) -> Option<String> {
    let a = p.meta().annotations.as_ref()?;
    Some(format!(
        "{}/{}",
        a.get(vcsync::markers::VIRTUAL_NAMESPACE)?,
        a.get(vcsync::markers::VIRTUAL_NAME)?
    ))
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A running watch and what it recorded.
pub struct Tracker {
    stamps: Arc<Mutex<HashMap<String, Stamps>>>,
    task: JoinHandle<()>,
}

impl Tracker {
    /// Watch pods matching `selector` in `namespace` (all namespaces when `None`).
    pub fn pods(
        client: Client,
        namespace: Option<&str>,
        selector: &str,
        key: KeyFn<Pod>,
    ) -> Tracker {
        Tracker::objects(client, namespace, selector, key, is_ready)
    }

    /// Watch objects of kind `K` like [`Tracker::pods`]; `ready` says when one counts as Ready.
    pub fn objects<K>(
        client: Client,
        namespace: Option<&str>,
        selector: &str,
        key: KeyFn<K>,
        ready: fn(&K) -> bool,
    ) -> Tracker
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
    {
        let api: Api<K> = match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let stamps: Arc<Mutex<HashMap<String, Stamps>>> = Arc::default();
        let sink = stamps.clone();
        let cfg = watcher::Config::default().labels(selector);
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, cfg).default_backoff().boxed();
            while let Some(ev) = stream.next().await {
                let now = Instant::now();
                let Ok(ev) = ev else { continue };
                match ev {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        let Some(k) = key(&p) else { continue };
                        let mut map = sink.lock().expect("tracker lock");
                        let s = map.entry(k).or_default();
                        s.seen.get_or_insert(now);
                        if ready(&p) {
                            s.ready.get_or_insert(now);
                        }
                        let uid = p.uid().unwrap_or_default();
                        let tag = p.labels().get(TAG_LABEL).cloned();
                        if s.changes
                            .last()
                            .is_none_or(|(_, u, t)| *u != uid || *t != tag)
                        {
                            s.changes.push((now, uid, tag));
                        }
                    }
                    watcher::Event::Delete(p) => {
                        let Some(k) = key(&p) else { continue };
                        let mut map = sink.lock().expect("tracker lock");
                        map.entry(k).or_default().gone = Some(now);
                    }
                    watcher::Event::Init | watcher::Event::InitDone => {}
                }
            }
        });
        Tracker { stamps, task }
    }

    /// A copy of what was recorded for `key`.
    pub fn get(&self, key: &str) -> Option<Stamps> {
        self.stamps.lock().expect("tracker lock").get(key).cloned()
    }

    /// How many tracked pods satisfy `f`.
    pub fn count(&self, f: impl Fn(&Stamps) -> bool) -> usize {
        self.stamps
            .lock()
            .expect("tracker lock")
            .values()
            .filter(|s| f(s))
            .count()
    }

    /// Poll until at least `n` tracked pods satisfy `f`; the time it happened, or an error naming
    /// `what` after `timeout`.
    pub async fn wait_count(
        &self,
        n: usize,
        timeout: Duration,
        what: &str,
        f: impl Fn(&Stamps) -> bool,
    ) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let have = self.count(&f);
            if have >= n {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                anyhow::bail!("timed out after {timeout:?} waiting for {what}: {have} of {n}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The latest `ready` (or `seen`) stamp among the pods satisfying `f`: when the last one
    /// got there, by the watch's own clock.
    pub fn latest(&self, f: impl Fn(&Stamps) -> Option<Instant>) -> Option<Instant> {
        self.stamps
            .lock()
            .expect("tracker lock")
            .values()
            .filter_map(f)
            .max()
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}
