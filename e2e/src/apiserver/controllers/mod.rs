//! What kube-controller-manager does around the store: the serviceaccount controller and
//! root-ca-cert-publisher (per-namespace defaults), the namespace controller, the garbage
//! collector, the resource-quota controller, the ttl and node-lifecycle controllers (node
//! annotation and condition taints), the pod GC (terminating pods of vanished nodes), and the
//! volume controllers that need no storage backend (pvc- and pv-protection, ephemeral volumes).
//!
//! One loop, woken by every store change (`rv_tx`) and by `controller_interval`. Each pass
//! reads the changes since the previous pass from the store history (a full resync when the
//! history no longer reaches back, and periodically), turns them into work queues, and does
//! the work through the same [`State`] methods the verbs use, so controller writes produce
//! watch events and resourceVersions. Every write is idempotent: the changes a pass makes are
//! seen by the next pass, which finds nothing left to do, so the loop settles.

mod gc;
mod namespace;
mod volumes;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::admission::{put_direct, quota};
use super::ops::{DeleteOpts, State, WriteCtx};
use super::resources;
use super::server::Shared;
use super::store::{Change, EventType};

/// An object: (storage bucket, namespace, name).
pub type Key = (&'static str, String, String);

/// Passes between full resyncs triggered by the interval alone.
const RESYNC_EVERY_TICKS: u32 = 25;

/// Run the controller loops until `stop` flips.
pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut rv_rx = shared.rv_tx.subscribe();
    let interval = shared
        .config
        .controller_interval
        .max(Duration::from_millis(5));
    // Coalesce bursts of writes into one pass (bounded by the interval).
    let settle = interval.min(Duration::from_millis(5));
    let mut ctl = Controllers::default();
    let mut ticks: u32 = 0;
    let mut full = true;
    loop {
        if *stop.borrow() {
            return;
        }
        let wrote = {
            let mut st = shared.lock();
            let w = ctl.pass(&mut st, full);
            w.then(|| st.store.rv())
        };
        full = false;
        if let Some(rv) = wrote {
            shared.notify(rv);
        }
        tokio::select! {
            _ = stop.changed() => return,
            r = rv_rx.changed() => {
                if r.is_err() {
                    return;
                }
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(settle) => {}
                }
            }
            _ = tokio::time::sleep(interval) => {
                ticks += 1;
                ctl.retry_terminating();
                if ticks.is_multiple_of(RESYNC_EVERY_TICKS) {
                    full = true;
                }
            }
        }
    }
}

/// Controller state: the ownership index and work queues.
#[derive(Debug, Default)]
struct Controllers {
    last_rv: u64,
    /// Owner uid -> dependents.
    dependents: HashMap<String, BTreeSet<Key>>,
    /// Dependent -> owner uids (to keep `dependents` current).
    owners_of: HashMap<Key, Vec<String>>,
    ns_defaults: BTreeSet<String>,
    terminating: BTreeSet<String>,
    ns_dirty: BTreeSet<String>,
    nodes: BTreeSet<String>,
    gc_check: BTreeSet<Key>,
    gc_owners: BTreeSet<Key>,
    pods_gc: BTreeSet<Key>,
    quota_ns: BTreeSet<String>,
    /// Claims being deleted whose protection finalizer may be released.
    pvc_check: BTreeSet<Key>,
    /// Volumes being deleted whose protection finalizer may be released.
    pv_check: BTreeSet<String>,
    /// Pods whose generic ephemeral volumes may need their claims.
    ephemeral: BTreeSet<Key>,
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str().map(str::to_string))
        .collect()
}

fn name_of(obj: &Value) -> String {
    obj["metadata"]["name"].as_str().unwrap_or("").to_string()
}

impl Controllers {
    /// One pass. Returns whether it wrote anything.
    fn pass(&mut self, st: &mut State, full: bool) -> bool {
        let current = st.store.rv();
        if full || self.last_rv == 0 || !st.store.can_resume(self.last_rv) {
            self.resync(st);
        } else {
            let changes: Vec<Arc<Change>> = st.store.changes_after(self.last_rv).cloned().collect();
            for c in &changes {
                self.observe(st, c);
            }
        }
        self.last_rv = current;
        self.work(st);
        st.store.rv() != current
    }

    fn retry_terminating(&mut self) {
        self.ns_dirty.extend(self.terminating.iter().cloned());
    }

    fn resync(&mut self, st: &State) {
        self.dependents.clear();
        self.owners_of.clear();
        for storage in st.store.buckets() {
            let objs: Vec<Arc<Value>> = st.store.list(storage, None).cloned().collect();
            for obj in objs {
                let ns = obj["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                self.observe_object(st, storage, &ns, &obj, EventType::Added);
            }
        }
    }

    fn index(&mut self, key: &Key, uids: Vec<String>) {
        if let Some(old) = self.owners_of.remove(key) {
            for u in old {
                if let Some(set) = self.dependents.get_mut(&u) {
                    set.remove(key);
                    if set.is_empty() {
                        self.dependents.remove(&u);
                    }
                }
            }
        }
        if !uids.is_empty() {
            for u in &uids {
                self.dependents
                    .entry(u.clone())
                    .or_default()
                    .insert(key.clone());
            }
            self.owners_of.insert(key.clone(), uids);
        }
    }

    fn observe(&mut self, st: &State, c: &Change) {
        self.observe_object(st, c.storage, &c.namespace, &c.object, c.etype);
    }

    fn observe_object(
        &mut self,
        st: &State,
        storage: &'static str,
        ns: &str,
        obj: &Value,
        etype: EventType,
    ) {
        let name = name_of(obj);
        let key: Key = (storage, ns.to_string(), name.clone());
        let deleting = gc::deleting(obj);
        match etype {
            EventType::Deleted => {
                self.index(&key, Vec::new());
                if let Some(uid) = obj["metadata"]["uid"].as_str()
                    && let Some(deps) = self.dependents.get(uid)
                {
                    self.gc_check.extend(deps.iter().cloned());
                }
                // Foreground owners waiting on this dependent may be done now.
                for r in obj["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if let Some((def, ons, oname)) = gc::resolve(r, ns) {
                        self.gc_owners.insert((def.storage, ons, oname));
                    }
                }
                match storage {
                    "namespaces" => {
                        self.terminating.remove(&name);
                    }
                    "serviceaccounts" if name == "default" => {
                        self.ns_defaults.insert(ns.to_string());
                    }
                    "configmaps" if name == "kube-root-ca.crt" => {
                        self.ns_defaults.insert(ns.to_string());
                    }
                    "nodes" => {
                        // Terminating pods bound to it may wait forever for a kubelet.
                        let bound: Vec<Key> = st
                            .store
                            .list("pods", None)
                            .filter(|p| p["spec"]["nodeName"] == name.as_str() && gc::deleting(p))
                            .map(|p| {
                                (
                                    "pods",
                                    p["metadata"]["namespace"]
                                        .as_str()
                                        .unwrap_or("")
                                        .to_string(),
                                    name_of(p),
                                )
                            })
                            .collect();
                        self.pods_gc.extend(bound);
                    }
                    _ => {}
                }
            }
            EventType::Added | EventType::Modified => {
                let uids = owner_uids(obj);
                let changed = self.owners_of.get(&key) != Some(&uids) || etype == EventType::Added;
                if !uids.is_empty() && changed {
                    self.gc_check.insert(key.clone());
                }
                self.index(&key, uids);
                if deleting
                    && (gc::has_finalizer(obj, "orphan")
                        || gc::has_finalizer(obj, "foregroundDeletion"))
                {
                    self.gc_owners.insert(key.clone());
                }
                match storage {
                    "namespaces" => {
                        if deleting {
                            self.terminating.insert(name.clone());
                            self.ns_dirty.insert(name.clone());
                        } else {
                            self.ns_defaults.insert(name.clone());
                        }
                    }
                    "nodes" => {
                        self.nodes.insert(name.clone());
                    }
                    "pods" if deleting => {
                        self.pods_gc.insert(key.clone());
                    }
                    "configmaps" if name == "kube-root-ca.crt" => {
                        self.ns_defaults.insert(ns.to_string());
                    }
                    _ => {}
                }
            }
        }
        volumes::observe(self, storage, ns, obj, etype);
        if !ns.is_empty() {
            if self.terminating.contains(ns) {
                self.ns_dirty.insert(ns.to_string());
            }
            if storage == "resourcequotas" || st.store.count("resourcequotas", Some(ns)) > 0 {
                self.quota_ns.insert(ns.to_string());
            }
        }
    }

    fn work(&mut self, st: &mut State) {
        for ns in std::mem::take(&mut self.ns_defaults) {
            namespace::ensure_defaults(st, &ns);
        }
        for node in std::mem::take(&mut self.nodes) {
            reconcile_node(st, &node);
        }
        for key in std::mem::take(&mut self.pods_gc) {
            gc_orphaned_pod(st, &key);
        }
        // Owners being deleted with a GC finalizer.
        let owners = std::mem::take(&mut self.gc_owners);
        let mut foreground: Vec<Key> = Vec::new();
        for key in &owners {
            let Some(obj) = st.store.get(key.0, &key.1, &key.2) else {
                continue;
            };
            if !gc::deleting(&obj) {
                continue;
            }
            let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_string();
            let deps: Vec<Key> = self
                .dependents
                .get(&uid)
                .map(|d| d.iter().cloned().collect())
                .unwrap_or_default();
            if gc::has_finalizer(&obj, "orphan") {
                for d in &deps {
                    if let Some(def) = gc::def_of(d.0) {
                        gc::strip_refs(st, def, &d.1, &d.2, &|r: &Value| r["uid"] == uid.as_str());
                    }
                }
                gc::remove_finalizer(st, key, "orphan");
            } else if gc::has_finalizer(&obj, "foregroundDeletion") {
                self.gc_check.extend(deps);
                foreground.push(key.clone());
            }
        }
        for key in std::mem::take(&mut self.gc_check) {
            let has_dependents = st
                .store
                .get(key.0, &key.1, &key.2)
                .and_then(|o| {
                    o["metadata"]["uid"]
                        .as_str()
                        .map(|u| self.dependents.contains_key(u))
                })
                .unwrap_or(false);
            gc::attempt_to_delete(st, &key, has_dependents);
        }
        for key in foreground {
            let Some(obj) = st.store.get(key.0, &key.1, &key.2) else {
                continue;
            };
            let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_string();
            let blocking = self.dependents.get(&uid).is_some_and(|deps| {
                deps.iter().any(|d| {
                    st.store.get(d.0, &d.1, &d.2).is_some_and(|o| {
                        o["metadata"]["ownerReferences"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|r| {
                                r["uid"] == uid.as_str() && r["blockOwnerDeletion"] == json!(true)
                            })
                    })
                })
            });
            if !blocking {
                gc::remove_finalizer(st, &key, "foregroundDeletion");
            }
        }
        for ns in std::mem::take(&mut self.ns_dirty) {
            namespace::sync_terminating(st, &ns);
            if st.store.get("namespaces", "", &ns).is_none() {
                self.terminating.remove(&ns);
            }
        }
        volumes::work(self, st);
        for ns in std::mem::take(&mut self.quota_ns) {
            sync_quotas(st, &ns);
        }
    }
}

/// ttl controller + node-lifecycle NoSchedule taints from conditions.
fn reconcile_node(st: &mut State, name: &str) {
    let Some(old) = st.store.get("nodes", "", name) else {
        return;
    };
    if gc::deleting(&old) {
        return;
    }
    let mut new = (*old).clone();
    if new["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"] != "0" {
        if !new["metadata"]["annotations"].is_object() {
            new["metadata"]["annotations"] = json!({});
        }
        new["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"] = json!("0");
    }
    let cond = |t: &str| -> String {
        old["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == t)
            .and_then(|c| c["status"].as_str())
            .unwrap_or("")
            .to_string()
    };
    let managed = [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/network-unavailable",
        "node.kubernetes.io/unschedulable",
    ];
    let mut desired: Vec<&str> = Vec::new();
    match cond("Ready").as_str() {
        "False" => desired.push(managed[0]),
        "Unknown" => desired.push(managed[1]),
        _ => {}
    }
    for (c, t) in [
        ("MemoryPressure", managed[2]),
        ("DiskPressure", managed[3]),
        ("PIDPressure", managed[4]),
        ("NetworkUnavailable", managed[5]),
    ] {
        if cond(c) == "True" {
            desired.push(t);
        }
    }
    if old["spec"]["unschedulable"] == json!(true) {
        desired.push(managed[6]);
    }
    let taints: Vec<Value> = old["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<Value> = taints
        .iter()
        .filter(|t| {
            let k = t["key"].as_str().unwrap_or("");
            !(t["effect"] == "NoSchedule" && managed.contains(&k) && !desired.contains(&k))
        })
        .cloned()
        .collect();
    for d in desired {
        if !out
            .iter()
            .any(|t| t["key"] == d && t["effect"] == "NoSchedule")
        {
            out.push(json!({"key": d, "effect": "NoSchedule"}));
        }
    }
    if !new["spec"].is_object() {
        new["spec"] = json!({});
    }
    if out.is_empty() {
        if let Some(s) = new["spec"].as_object_mut() {
            s.remove("taints");
        }
    } else {
        new["spec"]["taints"] = Value::Array(out);
    }
    if new != *old {
        let def = resources::find("", "v1", "nodes").expect("nodes are served");
        if let Err(e) = st.update_from(
            def,
            "",
            name,
            &old,
            new,
            None,
            &WriteCtx::system("kube-controller-manager"),
        ) {
            tracing::debug!("node controllers: {name}: {}", e.body["message"]);
        }
    }
}

/// podgc: a terminating pod bound to a node that does not exist has no kubelet to finish it.
fn gc_orphaned_pod(st: &mut State, key: &Key) {
    let Some(pod) = st.store.get("pods", &key.1, &key.2) else {
        return;
    };
    if !gc::deleting(&pod) {
        return;
    }
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if node.is_empty() || st.store.get("nodes", "", node).is_some() {
        return;
    }
    let def = resources::find("", "v1", "pods").expect("pods are served");
    let opts = DeleteOpts {
        grace_period_seconds: Some(0),
        ..DeleteOpts::default()
    };
    let _ = st.delete(
        def,
        &key.1,
        &key.2,
        &opts,
        &WriteCtx::system("pod-garbage-collector"),
    );
}

/// resource-quota controller: recount every quota of a namespace.
fn sync_quotas(st: &mut State, ns: &str) {
    let quotas: Vec<Arc<Value>> = st.store.list("resourcequotas", Some(ns)).cloned().collect();
    for q in quotas {
        let status = quota::recompute_status(&st.store, &q);
        if q["status"] != status {
            let mut new = (*q).clone();
            new["status"] = status;
            let name = name_of(&q);
            put_direct(st, "resourcequotas", ns, &name, new);
        }
    }
}

#[cfg(test)]
mod tests;
