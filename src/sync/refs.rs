//! Which virtual config maps and secrets something references: an index kept up to date from
//! the virtual pod and ingress watches, so the configmap and secret sync answer "is this still
//! referenced?" without walking every cached pod.
//!
//! The index follows the raw watch events exactly as the reflector store does: `Apply` and
//! `Delete` change one referrer, and a (re-)list (`Init`, `InitApply`…, `InitDone`) is buffered
//! and then replaces everything known about that referrer kind, so objects deleted while the
//! watch was down disappear from the index too. Until the first list of a referrer kind is done
//! the index is not [ready](RefIndex::wait_ready) for it: a configmap or secret is never judged
//! unreferenced from a half-filled index (that would delete host copies pods still mount).
//!
//! References of pods the isolation policy refused do not count (their host pods are never
//! created, so what only they reference stays virtual); the pod sync reports refusals through
//! [`RefIndex::set_pod_refused`].

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use kube::runtime::watcher;

use crate::translate;

/// The kind of a referenced object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefKind {
    /// A config map.
    ConfigMap,
    /// A secret.
    Secret,
}

/// A referenced virtual object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Config map or secret.
    pub kind: RefKind,
    /// Virtual namespace (always the referrer's own).
    pub namespace: String,
    /// Virtual name.
    pub name: String,
}

impl Target {
    /// Virtual object `namespace/name` of `kind`.
    pub fn new(kind: RefKind, namespace: &str, name: &str) -> Target {
        Target {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// The kinds of objects that reference config maps and secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Referrer {
    /// Virtual pods (config maps and secrets).
    Pod,
    /// Virtual ingresses (their TLS secrets).
    Ingress,
}

/// An object kind whose references the index tracks.
pub trait Referring: ResourceExt {
    /// Which referrer kind this is.
    const REFERRER: Referrer;
    /// Everything the object references.
    fn targets(&self) -> Vec<Target>;
}

impl Referring for Pod {
    const REFERRER: Referrer = Referrer::Pod;

    fn targets(&self) -> Vec<Target> {
        let ns = self.namespace().unwrap_or_default();
        let refs = translate::references::pod_references(self);
        let cms = refs
            .config_maps
            .iter()
            .map(|n| Target::new(RefKind::ConfigMap, &ns, n));
        let secrets = refs
            .secrets
            .iter()
            .map(|n| Target::new(RefKind::Secret, &ns, n));
        cms.chain(secrets).collect()
    }
}

impl Referring for crate::cache::VirtualPod {
    const REFERRER: Referrer = Referrer::Pod;

    fn targets(&self) -> Vec<Target> {
        match self.pod() {
            Ok(p) => p.targets(),
            Err(e) => {
                // The pod sync reports the same error on the pod; it syncs nothing of it.
                tracing::warn!(error = %e, "a cached virtual pod does not decode");
                Vec::new()
            }
        }
    }
}

impl Referring for Ingress {
    const REFERRER: Referrer = Referrer::Ingress;

    fn targets(&self) -> Vec<Target> {
        let ns = self.namespace().unwrap_or_default();
        translate::ingress::ingress_references(self)
            .secrets
            .iter()
            .map(|n| Target::new(RefKind::Secret, &ns, n))
            .collect()
    }
}

/// A referrer: its kind, namespace and name.
type Key = (Referrer, String, String);

/// What the referrers of one kind reference, as listed.
type Listing = HashMap<Key, Vec<Target>>;

#[derive(Debug, Default)]
struct Inner {
    /// What each referrer references (referrers that reference nothing are left out).
    refs: HashMap<Key, Vec<Target>>,
    /// Virtual pods (`namespace`, `name`) the policy refused: their references do not count.
    refused: HashSet<(String, String)>,
    /// How many counted referrers reference each target (absent means none).
    counts: HashMap<Target, usize>,
    /// A list in progress, per referrer kind: it replaces that kind's entries when done.
    listing: HashMap<Referrer, Listing>,
}

impl Inner {
    fn counted(&self, key: &Key) -> bool {
        !(key.0 == Referrer::Pod && self.refused.contains(&(key.1.clone(), key.2.clone())))
    }

    fn add_counts(&mut self, targets: &[Target]) {
        for t in targets {
            *self.counts.entry(t.clone()).or_insert(0) += 1;
        }
    }

    fn remove_counts(&mut self, targets: &[Target]) {
        for t in targets {
            if let Some(n) = self.counts.get_mut(t) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.counts.remove(t);
                }
            }
        }
    }

    fn apply(&mut self, key: Key, targets: Vec<Target>) {
        if self
            .refs
            .get(&key)
            .map_or(targets.is_empty(), |old| *old == targets)
        {
            return;
        }
        self.delete(&key, false);
        if targets.is_empty() {
            return;
        }
        if self.counted(&key) {
            self.add_counts(&targets);
        }
        self.refs.insert(key, targets);
    }

    /// Forget what `key` references; `gone` also forgets its refusal (the object was deleted).
    fn delete(&mut self, key: &Key, gone: bool) {
        let counted = self.counted(key);
        if let Some(old) = self.refs.remove(key)
            && counted
        {
            self.remove_counts(&old);
        }
        if gone && key.0 == Referrer::Pod {
            self.refused.remove(&(key.1.clone(), key.2.clone()));
        }
    }

    /// Replace every entry of `kind` with a complete listing.
    fn replace(&mut self, kind: Referrer, listing: Listing) {
        let stale: Vec<Key> = self.refs.keys().filter(|k| k.0 == kind).cloned().collect();
        for key in stale {
            self.delete(&key, false);
        }
        if kind == Referrer::Pod {
            // Refusals of pods that no longer exist would otherwise linger.
            let listed: HashSet<(&str, &str)> = listing
                .keys()
                .map(|k| (k.1.as_str(), k.2.as_str()))
                .collect();
            self.refused
                .retain(|(ns, name)| listed.contains(&(ns.as_str(), name.as_str())));
        }
        for (key, targets) in listing {
            self.apply(key, targets);
        }
    }
}

/// Readiness of the two referrer kinds, (pods, ingresses).
type Ready = (bool, bool);

/// The reference index (see the module docs).
#[derive(Debug)]
pub struct RefIndex {
    inner: Mutex<Inner>,
    ready: tokio::sync::watch::Sender<Ready>,
}

impl Default for RefIndex {
    fn default() -> Self {
        RefIndex {
            inner: Mutex::new(Inner::default()),
            ready: tokio::sync::watch::Sender::new((false, false)),
        }
    }
}

impl RefIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follow one event of the watch of referrer kind `K` (call it before the event reaches the
    /// reflector, so the index is never behind the store).
    pub fn observe<K: Referring>(&self, event: &watcher::Event<K>) {
        let key = |o: &K| (K::REFERRER, o.namespace().unwrap_or_default(), o.name_any());
        match event {
            watcher::Event::Apply(o) => self.lock().apply(key(o), o.targets()),
            watcher::Event::Delete(o) => self.lock().delete(&key(o), true),
            watcher::Event::Init => {
                self.lock().listing.insert(K::REFERRER, Listing::new());
            }
            watcher::Event::InitApply(o) => {
                let targets = o.targets();
                let mut inner = self.lock();
                match inner.listing.get_mut(&K::REFERRER) {
                    Some(listing) => {
                        if !targets.is_empty() {
                            listing.insert(key(o), targets);
                        }
                    }
                    // Not announced by `Init` (never happens with kube's watcher): apply at once.
                    None => inner.apply(key(o), targets),
                }
            }
            watcher::Event::InitDone => {
                {
                    let mut inner = self.lock();
                    let listing = inner.listing.remove(&K::REFERRER).unwrap_or_default();
                    inner.replace(K::REFERRER, listing);
                }
                self.ready.send_modify(|r| match K::REFERRER {
                    Referrer::Pod => r.0 = true,
                    Referrer::Ingress => r.1 = true,
                });
            }
        }
    }

    /// Record whether the policy refused virtual pod `ns/name` (its references do not count
    /// while it is refused).
    pub fn set_pod_refused(&self, ns: &str, name: &str, refused: bool) {
        let mut inner = self.lock();
        let id = (ns.to_string(), name.to_string());
        if inner.refused.contains(&id) == refused {
            return;
        }
        let key = (Referrer::Pod, id.0.clone(), id.1.clone());
        let targets = inner.refs.get(&key).cloned().unwrap_or_default();
        if refused {
            inner.remove_counts(&targets);
            inner.refused.insert(id);
        } else {
            inner.refused.remove(&id);
            inner.add_counts(&targets);
        }
    }

    /// Whether the policy refused virtual pod `ns/name`.
    pub fn pod_refused(&self, ns: &str, name: &str) -> bool {
        self.lock()
            .refused
            .contains(&(ns.to_string(), name.to_string()))
    }

    /// Whether any (not refused) virtual pod or ingress references `target`.
    pub fn is_referenced(&self, target: &Target) -> bool {
        self.lock().counts.contains_key(target)
    }

    /// Whether every referrer kind that can reference objects of `kind` has been listed: pods
    /// for config maps, pods and ingresses for secrets.
    pub fn is_ready(&self, kind: RefKind) -> bool {
        Self::complete(kind, &self.ready.borrow())
    }

    /// Wait until the index is [ready](RefIndex::is_ready) for `kind`.
    pub async fn wait_ready(&self, kind: RefKind) {
        let mut rx = self.ready.subscribe();
        // The sender lives as long as `self`, so this only ends once ready.
        let _ = rx.wait_for(|r| Self::complete(kind, r)).await;
    }

    fn complete(kind: RefKind, ready: &Ready) -> bool {
        match kind {
            RefKind::ConfigMap => ready.0,
            RefKind::Secret => ready.0 && ready.1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;
    use watcher::Event as E;

    /// A pod in `ns` mounting config maps `cms` and using secrets `secrets` in its env.
    fn pod(ns: &str, name: &str, cms: &[&str], secrets: &[&str]) -> Pod {
        let volumes: Vec<_> = cms
            .iter()
            .map(|c| json!({"name": format!("v-{c}"), "configMap": {"name": c}}))
            .collect();
        let env: Vec<_> = secrets
            .iter()
            .map(|s| json!({"name": format!("E_{s}"), "valueFrom": {"secretKeyRef": {"name": s, "key": "k"}}}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"volumes": volumes, "containers": [{"name": "c", "image": "i", "env": env}]}
        }))
        .expect("valid pod")
    }

    fn ingress(ns: &str, name: &str, secrets: &[&str]) -> Ingress {
        let tls: Vec<_> = secrets.iter().map(|s| json!({"secretName": s})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"tls": tls}
        }))
        .expect("valid ingress")
    }

    fn cm(ns: &str, name: &str) -> Target {
        Target::new(RefKind::ConfigMap, ns, name)
    }

    fn secret(ns: &str, name: &str) -> Target {
        Target::new(RefKind::Secret, ns, name)
    }

    /// An index whose pods and ingresses were listed as `pods` and `ingresses`.
    fn listed(pods: Vec<Pod>, ingresses: Vec<Ingress>) -> RefIndex {
        let idx = RefIndex::default();
        idx.observe::<Pod>(&E::Init);
        for p in pods {
            idx.observe(&E::InitApply(p));
        }
        idx.observe::<Pod>(&E::InitDone);
        idx.observe::<Ingress>(&E::Init);
        for i in ingresses {
            idx.observe(&E::InitApply(i));
        }
        idx.observe::<Ingress>(&E::InitDone);
        idx
    }

    #[rstest]
    #[case::mounted_config_map(cm("a", "conf"), true)]
    #[case::env_secret(secret("a", "pw"), true)]
    #[case::ingress_tls_secret(secret("a", "tls"), true)]
    #[case::config_map_named_like_a_secret(cm("a", "pw"), false)]
    #[case::secret_named_like_a_config_map(secret("a", "conf"), false)]
    #[case::other_namespace(cm("b", "conf"), false)]
    #[case::nobody(cm("a", "other"), false)]
    fn listed_references_count(#[case] target: Target, #[case] want: bool) {
        let idx = listed(
            vec![pod("a", "p", &["conf"], &["pw"])],
            vec![ingress("a", "i", &["tls"])],
        );
        assert_eq!(idx.is_referenced(&target), want);
    }

    #[test]
    fn changes_and_deletions_are_followed() {
        let idx = listed(vec![], vec![]);
        idx.observe(&E::Apply(pod("a", "p", &["one"], &[])));
        assert!(idx.is_referenced(&cm("a", "one")));
        // The pod now mounts another config map: the first is free.
        idx.observe(&E::Apply(pod("a", "p", &["two"], &[])));
        assert!(!idx.is_referenced(&cm("a", "one")));
        assert!(idx.is_referenced(&cm("a", "two")));
        idx.observe(&E::Delete(pod("a", "p", &["two"], &[])));
        assert!(!idx.is_referenced(&cm("a", "two")));
        assert!(idx.lock().counts.is_empty() && idx.lock().refs.is_empty());
    }

    #[test]
    fn a_target_stays_referenced_while_any_referrer_is_left() {
        let idx = listed(
            vec![pod("a", "p1", &[], &["s"]), pod("a", "p2", &[], &["s"])],
            vec![ingress("a", "i", &["s"])],
        );
        idx.observe(&E::Delete(pod("a", "p1", &[], &["s"])));
        assert!(idx.is_referenced(&secret("a", "s")));
        idx.observe(&E::Delete(pod("a", "p2", &[], &["s"])));
        assert!(
            idx.is_referenced(&secret("a", "s")),
            "the ingress still names it"
        );
        idx.observe(&E::Apply(ingress("a", "i", &[])));
        assert!(!idx.is_referenced(&secret("a", "s")));
    }

    #[test]
    fn refused_pods_do_not_count() {
        let idx = listed(vec![pod("a", "bad", &["c"], &[])], vec![]);
        idx.set_pod_refused("a", "bad", true);
        assert!(idx.pod_refused("a", "bad"));
        assert!(!idx.is_referenced(&cm("a", "c")));
        // Still refused after a change of the pod; counted again once allowed.
        idx.observe(&E::Apply(pod("a", "bad", &["c", "d"], &[])));
        assert!(!idx.is_referenced(&cm("a", "d")));
        idx.set_pod_refused("a", "bad", false);
        assert!(idx.is_referenced(&cm("a", "c")) && idx.is_referenced(&cm("a", "d")));
        // A refusal recorded twice is undone by one allowance.
        idx.set_pod_refused("a", "bad", true);
        idx.set_pod_refused("a", "bad", true);
        idx.set_pod_refused("a", "bad", false);
        assert!(idx.is_referenced(&cm("a", "c")));
        // A deleted pod's refusal is forgotten: a new pod of that name counts.
        idx.set_pod_refused("a", "bad", true);
        idx.observe(&E::Delete(pod("a", "bad", &["c"], &[])));
        assert!(!idx.pod_refused("a", "bad"));
        idx.observe(&E::Apply(pod("a", "bad", &["c"], &[])));
        assert!(idx.is_referenced(&cm("a", "c")));
    }

    #[test]
    fn a_relist_replaces_what_was_known() {
        let idx = listed(
            vec![pod("a", "kept", &["k"], &[]), pod("a", "gone", &["g"], &[])],
            vec![],
        );
        idx.set_pod_refused("a", "gone", true);
        // The watch restarts; meanwhile "gone" was deleted and "new" created.
        idx.observe::<Pod>(&E::Init);
        idx.observe(&E::InitApply(pod("a", "kept", &["k"], &[])));
        idx.observe(&E::InitApply(pod("a", "new", &["n"], &[])));
        assert!(
            !idx.is_referenced(&cm("a", "n")),
            "a list in progress is not applied"
        );
        assert!(idx.is_referenced(&cm("a", "k")));
        idx.observe::<Pod>(&E::InitDone);
        assert!(idx.is_referenced(&cm("a", "k")));
        assert!(idx.is_referenced(&cm("a", "n")));
        assert!(!idx.is_referenced(&cm("a", "g")));
        assert!(!idx.pod_refused("a", "gone"));
    }

    #[test]
    fn a_relist_of_pods_leaves_ingresses_alone() {
        let idx = listed(vec![], vec![ingress("a", "i", &["tls"])]);
        idx.observe::<Pod>(&E::Init);
        idx.observe::<Pod>(&E::InitDone);
        assert!(idx.is_referenced(&secret("a", "tls")));
    }

    #[rstest]
    #[case::nothing_listed(false, false, false, false)]
    #[case::pods_listed(true, false, true, false)]
    #[case::ingresses_listed(false, true, false, false)]
    #[case::both_listed(true, true, true, true)]
    fn ready_once_the_referrers_are_listed(
        #[case] pods: bool,
        #[case] ingresses: bool,
        #[case] config_maps_ready: bool,
        #[case] secrets_ready: bool,
    ) {
        let idx = RefIndex::default();
        if pods {
            idx.observe::<Pod>(&E::Init);
            idx.observe::<Pod>(&E::InitDone);
        }
        if ingresses {
            idx.observe::<Ingress>(&E::Init);
            idx.observe::<Ingress>(&E::InitDone);
        }
        assert_eq!(idx.is_ready(RefKind::ConfigMap), config_maps_ready);
        assert_eq!(idx.is_ready(RefKind::Secret), secrets_ready);
    }

    #[tokio::test]
    async fn waiting_for_readiness_ends_when_listed() {
        let idx = std::sync::Arc::new(RefIndex::default());
        let waiter = tokio::spawn({
            let idx = idx.clone();
            async move { idx.wait_ready(RefKind::Secret).await }
        });
        idx.observe::<Pod>(&E::Init);
        idx.observe::<Pod>(&E::InitDone);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        idx.observe::<Ingress>(&E::Init);
        idx.observe::<Ingress>(&E::InitDone);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("ready")
            .expect("no panic");
    }
}
