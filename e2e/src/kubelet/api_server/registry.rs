//! What the kubelet API knows about pods: the simulator's latest view of every pod bound to one
//! of its nodes, plus each container's in-memory filesystem.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;

use super::remotecommand::Fs;

/// Filesystems by (pod UID, container).
type FsMap = HashMap<(String, String), Arc<Mutex<Fs>>>;

/// Pods by UID, as the pod loop last saw them, with an index by node so a node's requests
/// cost O(pods on that node), not O(all pods).
pub(crate) struct PodRegistry {
    nodes: HashSet<String>,
    pods: RwLock<Pods>,
    changed: watch::Sender<u64>,
    fs: Mutex<FsMap>,
}

/// The pods and their index, under one lock so they never disagree.
#[derive(Default)]
struct Pods {
    /// Shared with the pod loop's own copy: recording a pod is a reference count, not a clone.
    by_uid: HashMap<String, Arc<Pod>>,
    /// node -> (namespace, name, uid), in list order.
    by_node: HashMap<String, BTreeSet<(String, String, String)>>,
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

fn index_key(pod: &Pod, uid: &str) -> (String, String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
        uid.to_owned(),
    )
}

impl Pods {
    fn insert(&mut self, uid: String, pod: Arc<Pod>) {
        self.remove(&uid);
        if let Some(node) = node_of(&pod) {
            self.by_node
                .entry(node.to_owned())
                .or_default()
                .insert(index_key(&pod, &uid));
        }
        self.by_uid.insert(uid, pod);
    }

    fn remove(&mut self, uid: &str) -> Option<Arc<Pod>> {
        let old = self.by_uid.remove(uid)?;
        if let Some(node) = node_of(&old)
            && let Some(set) = self.by_node.get_mut(node)
        {
            set.remove(&index_key(&old, uid));
            if set.is_empty() {
                self.by_node.remove(node);
            }
        }
        Some(old)
    }
}

impl PodRegistry {
    pub(crate) fn new(nodes: impl IntoIterator<Item = String>) -> Self {
        Self {
            nodes: nodes.into_iter().collect(),
            pods: RwLock::new(Pods::default()),
            changed: watch::channel(0).0,
            fs: Mutex::new(HashMap::new()),
        }
    }

    /// Records the latest version of `pod` (kept only while bound to one of our nodes).
    pub(crate) fn update(&self, pod: &Arc<Pod>) {
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
        if removed {
            self.fs.lock().unwrap().retain(|(u, _), _| u != uid);
            self.changed.send_modify(|g| *g += 1);
        }
    }

    /// The pod `namespace/name` if it is bound to `node` (the live one when a deleted pod and
    /// its replacement share the name).
    pub(crate) fn get(&self, node: &str, namespace: &str, name: &str) -> Option<Pod> {
        let pods = self.pods.read().unwrap();
        let set = pods.by_node.get(node)?;
        let from = (namespace.to_owned(), name.to_owned(), String::new());
        let mut found: Vec<&Pod> = set
            .range(from..)
            .take_while(|(ns, n, _)| ns == namespace && n == name)
            .filter_map(|(_, _, uid)| pods.by_uid.get(uid).map(|p| &**p))
            .collect();
        found.sort_by_key(|p| p.metadata.deletion_timestamp.is_some());
        found.first().map(|p| (*p).clone())
    }

    /// The pod with `uid`, if known.
    pub(crate) fn by_uid(&self, uid: &str) -> Option<Pod> {
        self.pods
            .read()
            .unwrap()
            .by_uid
            .get(uid)
            .map(|p| (**p).clone())
    }

    /// Pods bound to `node`, sorted by namespace and name.
    pub(crate) fn on_node(&self, node: &str) -> Vec<Pod> {
        let pods = self.pods.read().unwrap();
        pods.by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|(_, _, uid)| pods.by_uid.get(uid).map(|p| (**p).clone()))
            .collect()
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
