//! What the kubelet API knows about pods: the simulator's latest view of every pod bound to one
//! of its nodes, plus each container's in-memory filesystem.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;

use super::remotecommand::Fs;

/// Filesystems by (pod UID, container).
type FsMap = HashMap<(String, String), Arc<Mutex<Fs>>>;

/// Pods by UID, as the pod loop last saw them.
pub(crate) struct PodRegistry {
    nodes: HashSet<String>,
    pods: RwLock<HashMap<String, Pod>>,
    changed: watch::Sender<u64>,
    fs: Mutex<FsMap>,
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

impl PodRegistry {
    pub(crate) fn new(nodes: impl IntoIterator<Item = String>) -> Self {
        Self {
            nodes: nodes.into_iter().collect(),
            pods: RwLock::new(HashMap::new()),
            changed: watch::channel(0).0,
            fs: Mutex::new(HashMap::new()),
        }
    }

    /// Records the latest version of `pod` (kept only while bound to one of our nodes).
    pub(crate) fn update(&self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let ours = node_of(pod).is_some_and(|n| self.nodes.contains(n));
        {
            let mut pods = self.pods.write().unwrap();
            if ours {
                pods.insert(uid, pod.clone());
            } else if pods.remove(&uid).is_none() {
                return;
            }
        }
        self.changed.send_modify(|g| *g += 1);
    }

    /// Forgets a pod that went away.
    pub(crate) fn remove(&self, uid: &str) {
        let removed = self.pods.write().unwrap().remove(uid).is_some();
        self.fs.lock().unwrap().retain(|(u, _), _| u != uid);
        if removed {
            self.changed.send_modify(|g| *g += 1);
        }
    }

    /// The pod `namespace/name` if it is bound to `node` (the live one when a deleted pod and
    /// its replacement share the name).
    pub(crate) fn get(&self, node: &str, namespace: &str, name: &str) -> Option<Pod> {
        let pods = self.pods.read().unwrap();
        let mut found: Vec<&Pod> = pods
            .values()
            .filter(|p| {
                node_of(p) == Some(node)
                    && p.metadata.namespace.as_deref().unwrap_or("") == namespace
                    && p.metadata.name.as_deref() == Some(name)
            })
            .collect();
        found.sort_by_key(|p| p.metadata.deletion_timestamp.is_some());
        found.first().map(|p| (*p).clone())
    }

    /// The pod with `uid`, if known.
    pub(crate) fn by_uid(&self, uid: &str) -> Option<Pod> {
        self.pods.read().unwrap().get(uid).cloned()
    }

    /// Pods bound to `node`, sorted by namespace and name.
    pub(crate) fn on_node(&self, node: &str) -> Vec<Pod> {
        let mut pods: Vec<Pod> = self
            .pods
            .read()
            .unwrap()
            .values()
            .filter(|p| node_of(p) == Some(node))
            .cloned()
            .collect();
        pods.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        pods
    }

    /// Ticks on every change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The filesystem of `container` in the pod with `uid` (made on first use).
    pub(crate) fn fs(&self, uid: &str, container: &str, pod_name: &str) -> Arc<Mutex<Fs>> {
        self.fs
            .lock()
            .unwrap()
            .entry((uid.to_owned(), container.to_owned()))
            .or_insert_with(|| Arc::new(Mutex::new(Fs::new(pod_name))))
            .clone()
    }
}
