//! A fair work queue: keys are grouped by virtual namespace and dispatched round-robin across
//! namespaces, so one namespace bursting thousands of objects cannot starve a quiet one.
//!
//! kube-runtime's `Controller` schedules first-in first-out, which is exactly the starvation
//! this avoids; so the pod sync, where bursts happen, runs on this queue with kube-runtime's
//! watchers and reflector stores feeding it. Semantics follow client-go's workqueue: a key is
//! queued at most once; a key added while it is being processed is processed again afterwards
//! (never concurrently with itself).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// A queued object: (namespace, name).
pub type Key = (String, String);

#[derive(Default)]
struct Inner {
    /// Pending names per namespace, in arrival order.
    queues: HashMap<String, VecDeque<String>>,
    /// Namespaces with pending names, in round-robin order.
    turn: VecDeque<String>,
    queued: HashSet<Key>,
    active: HashSet<Key>,
    /// Added again while active: re-queue when done.
    dirty: HashSet<Key>,
    closed: bool,
}

/// The queue (cheap to clone).
#[derive(Clone, Default)]
pub struct FairQueue {
    inner: Arc<Mutex<Inner>>,
    notify: Arc<Notify>,
}

impl FairQueue {
    pub fn new() -> FairQueue {
        FairQueue::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `key` (no-op if already queued; deferred if being processed).
    pub fn add(&self, key: Key) {
        let mut g = self.lock();
        if g.closed || g.queued.contains(&key) {
            return;
        }
        if g.active.contains(&key) {
            g.dirty.insert(key);
            return;
        }
        let (ns, name) = key.clone();
        g.queued.insert(key);
        let q = g.queues.entry(ns.clone()).or_default();
        let was_empty = q.is_empty();
        q.push_back(name);
        if was_empty {
            g.turn.push_back(ns);
        }
        drop(g);
        self.notify.notify_one();
    }

    /// Queue `key` after `delay`.
    pub fn add_after(&self, key: Key, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(key);
        });
    }

    /// Take the next key: the oldest of the namespace whose turn it is. `None` once closed.
    pub async fn next(&self) -> Option<Key> {
        loop {
            // Registered before looking, so an add between the look and the wait is not lost.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut g = self.lock();
                if g.closed {
                    return None;
                }
                if let Some(key) = Self::pop(&mut g) {
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    fn pop(g: &mut Inner) -> Option<Key> {
        let ns = g.turn.pop_front()?;
        let q = g.queues.get_mut(&ns)?;
        let name = q.pop_front()?;
        if q.is_empty() {
            g.queues.remove(&ns);
        } else {
            // Back of the line: every other namespace with work goes first.
            g.turn.push_back(ns.clone());
        }
        let key = (ns, name);
        g.queued.remove(&key);
        g.active.insert(key.clone());
        Some(key)
    }

    /// Mark `key` processed; re-queue it if it was added meanwhile.
    pub fn done(&self, key: &Key) {
        let again = {
            let mut g = self.lock();
            g.active.remove(key);
            g.dirty.remove(key)
        };
        if again {
            self.add(key.clone());
        }
    }

    /// Keys waiting (not counting those being processed): the honest `workqueue_depth`.
    pub fn depth(&self) -> usize {
        self.lock().queued.len()
    }

    /// Stop handing out keys; `next` returns `None` from now on.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(ns: &str, n: &str) -> Key {
        (ns.to_string(), n.to_string())
    }

    #[tokio::test]
    async fn namespaces_take_turns() {
        let q = FairQueue::new();
        for i in 0..100 {
            q.add(k("busy", &format!("p{i}")));
        }
        q.add(k("quiet", "a"));
        q.add(k("quiet", "b"));
        let first: Vec<Key> = futures::future::join_all((0..4).map(|_| q.next()))
            .await
            .into_iter()
            .flatten()
            .collect();
        // The quiet namespace's first object is served second, not after 100 busy ones.
        assert_eq!(first[0], k("busy", "p0"));
        assert_eq!(first[1], k("quiet", "a"));
        assert_eq!(first[2], k("busy", "p1"));
        assert_eq!(first[3], k("quiet", "b"));
        assert_eq!(q.depth(), 98);
    }

    #[tokio::test]
    async fn a_key_is_queued_once_and_never_runs_twice_at_a_time() {
        let q = FairQueue::new();
        q.add(k("ns", "a"));
        q.add(k("ns", "a"));
        assert_eq!(q.depth(), 1);
        let key = q.next().await.unwrap();
        // Added while active: deferred, not handed out concurrently.
        q.add(k("ns", "a"));
        assert_eq!(q.depth(), 0);
        q.done(&key);
        assert_eq!(q.depth(), 1, "processed again after it was done");
        assert_eq!(q.next().await, Some(k("ns", "a")));
    }

    #[tokio::test]
    async fn closing_wakes_waiters() {
        let q = FairQueue::new();
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.close();
        assert_eq!(waiter.await.unwrap(), None);
    }
}
