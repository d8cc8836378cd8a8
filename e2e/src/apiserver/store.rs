//! The in-memory object store: objects as JSON, one global resourceVersion counter (like etcd's
//! revision), and a bounded event history that watches replay from.
//!
//! All mutation goes through [`Store`] methods while the caller holds the server's state lock,
//! which keeps resourceVersion order and event order identical.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use serde_json::Value;

/// Watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the history.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub storage: &'static str,
    pub namespace: String,
    pub etype: EventType,
    /// The object after the change (for DELETED: the last state, with the deletion's rv).
    pub object: Arc<Value>,
    /// The object before the change (None for ADDED): selector-filtered watches need it to turn
    /// "stopped matching" into DELETED and "started matching" into ADDED.
    pub previous: Option<Arc<Value>>,
    /// Watch event lines already encoded for this change, by (resource definition, event
    /// type): every plain-JSON watcher of the resource sends the same bytes, so the object is
    /// copied and serialized once per change, not once per watcher.
    pub encoded: Mutex<Vec<(usize, &'static str, Bytes)>>,
}

impl Change {
    /// The encoded event line for `(def_id, etype)`, made by `encode` on first use.
    pub fn encoded_or(
        &self,
        def_id: usize,
        etype: &'static str,
        encode: impl FnOnce() -> Bytes,
    ) -> Bytes {
        let mut cache = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, b)) = cache.iter().find(|(d, t, _)| *d == def_id && *t == etype) {
            return b.clone();
        }
        let b = encode();
        cache.push((def_id, etype, b.clone()));
        b
    }
}

/// How many of the newest changes keep their encoded watch events.
const ENCODED_KEPT: usize = 4096;

/// Key of an object within its storage bucket. Ordering gives kube-apiserver's list order
/// (namespace, then name).
pub type ObjKey = (String, String);

/// The store.
#[derive(Debug)]
pub struct Store {
    rv: u64,
    buckets: BTreeMap<&'static str, BTreeMap<ObjKey, Arc<Value>>>,
    history: VecDeque<Arc<Change>>,
    /// Every change with rv <= this has left the history: watches from an older rv get 410.
    compacted: u64,
    /// Maximum number of changes kept.
    window: usize,
}

impl Store {
    pub fn new(window: usize) -> Self {
        Store {
            rv: 1,
            buckets: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            window: window.max(1),
        }
    }

    /// The current resourceVersion (revision of the last write).
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// Reserve the next resourceVersion.
    pub fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub fn get(&self, storage: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.buckets
            .get(storage)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// All objects of a bucket, optionally within one namespace, in (namespace, name) order.
    pub fn list<'a>(
        &'a self,
        storage: &str,
        ns: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = &'a Arc<Value>> + 'a> {
        let Some(bucket) = self.buckets.get(storage) else {
            return Box::new(std::iter::empty());
        };
        match ns {
            Some(ns) => Box::new(
                bucket
                    .range((ns.to_string(), String::new())..)
                    .take_while(move |((n, _), _)| n == ns)
                    .map(|(_, v)| v),
            ),
            None => Box::new(bucket.values()),
        }
    }

    /// Objects after `start` (exclusive) in list order, for pagination.
    pub fn list_after<'a>(
        &'a self,
        storage: &str,
        ns: Option<&'a str>,
        start: &ObjKey,
    ) -> Box<dyn Iterator<Item = &'a Arc<Value>> + 'a> {
        let Some(bucket) = self.buckets.get(storage) else {
            return Box::new(std::iter::empty());
        };
        let it = bucket
            .range((
                std::ops::Bound::Excluded(start.clone()),
                std::ops::Bound::Unbounded,
            ))
            .filter(move |((n, _), _)| ns.is_none_or(|ns| n == ns))
            .map(|(_, v)| v);
        Box::new(it)
    }

    /// Count of objects in a bucket (optionally one namespace).
    pub fn count(&self, storage: &str, ns: Option<&str>) -> usize {
        self.list(storage, ns).count()
    }

    /// Store `obj` (its metadata.resourceVersion must already be `rv`) and record the change.
    pub fn put(
        &mut self,
        storage: &'static str,
        ns: &str,
        name: &str,
        obj: Value,
        rv: u64,
    ) -> Arc<Value> {
        let obj = Arc::new(obj);
        let bucket = self.buckets.entry(storage).or_default();
        let previous = bucket.insert((ns.to_string(), name.to_string()), obj.clone());
        let etype = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Change {
            rv,
            storage,
            namespace: ns.to_string(),
            etype,
            object: obj.clone(),
            previous,
            encoded: Mutex::default(),
        });
        obj
    }

    /// Remove an object; `last` is its final state (resourceVersion = the deletion's rv).
    pub fn remove(
        &mut self,
        storage: &'static str,
        ns: &str,
        name: &str,
        last: Value,
        rv: u64,
    ) -> Option<Arc<Value>> {
        let bucket = self.buckets.get_mut(storage)?;
        let previous = bucket.remove(&(ns.to_string(), name.to_string()))?;
        let last = Arc::new(last);
        self.record(Change {
            rv,
            storage,
            namespace: ns.to_string(),
            etype: EventType::Deleted,
            object: last.clone(),
            previous: Some(previous),
            encoded: Mutex::default(),
        });
        Some(last)
    }

    fn record(&mut self, change: Change) {
        self.history.push_back(Arc::new(change));
        // Watchers are normally current: keep encoded events of the recent changes only, so the
        // cache costs a bounded amount of memory however long the history is.
        if let Some(old) = self
            .history
            .len()
            .checked_sub(ENCODED_KEPT + 1)
            .and_then(|i| self.history.get(i))
        {
            *old.encoded.lock().unwrap_or_else(|e| e.into_inner()) = Vec::new();
        }
        while self.history.len() > self.window {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
    }

    /// Drop the whole history (fault injection: forces 410 on every resume).
    pub fn compact(&mut self) {
        if let Some(last) = self.history.back() {
            self.compacted = last.rv;
        }
        self.compacted = self.compacted.max(self.rv);
        self.history.clear();
    }

    /// Whether a watch starting after `rv` can still be served from history.
    pub fn can_resume(&self, rv: u64) -> bool {
        rv >= self.compacted
    }

    /// Oldest resourceVersion a watch can start from.
    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    /// Changes with resourceVersion > `after`, in order.
    pub fn changes_after(&self, after: u64) -> impl Iterator<Item = &Arc<Change>> {
        let idx = self.history.partition_point(|c| c.rv <= after);
        self.history.range(idx..)
    }

    /// Names of all buckets that hold objects (for namespace cleanup).
    pub fn buckets(&self) -> Vec<&'static str> {
        self.buckets.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn history_window_compacts_and_resume_checks() {
        let mut s = Store::new(2);
        for i in 0..4 {
            let rv = s.next_rv();
            s.put("configmaps", "a", &format!("c{i}"), json!({"i": i}), rv);
        }
        // 4 changes at rv 2..=5, window 2: rv 4 and 5 are kept.
        assert_eq!(s.changes_after(0).count(), 2);
        assert!(!s.can_resume(2));
        assert!(s.can_resume(3));
        assert_eq!(
            s.changes_after(4).map(|c| c.rv).collect::<Vec<_>>(),
            vec![5]
        );
        s.compact();
        assert!(!s.can_resume(4));
        assert!(s.can_resume(5));
    }

    #[test]
    fn list_is_namespace_scoped_and_ordered() {
        let mut s = Store::new(10);
        for (ns, n) in [("b", "x"), ("a", "z"), ("a", "y"), ("ab", "w")] {
            let rv = s.next_rv();
            s.put("configmaps", ns, n, json!({"n": n}), rv);
        }
        let names: Vec<_> = s
            .list("configmaps", Some("a"))
            .map(|v| v["n"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, vec!["y", "z"]);
        assert_eq!(s.count("configmaps", None), 4);
        let after: Vec<_> = s
            .list_after("configmaps", None, &("a".into(), "z".into()))
            .map(|v| v["n"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(after, vec!["w", "x"]);
    }
}
