//! Host-side garbage collection: a host object carrying this tenant's markers whose virtual
//! source no longer exists (deleted while vcsync was down, or deleted at once without a
//! graceful phase) is deleted. Objects without matching markers are never touched.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::{Shared, delete_host};
use crate::markers;

/// How often the collector sweeps (it also runs right after both caches are ready).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Sweep `host` for orphans of `kind` until `shutdown`.
pub async fn run<K, V>(
    shared: Arc<Shared>,
    kind: &'static str,
    host: Store<K>,
    virt: Store<V>,
    shutdown: impl std::future::Future<Output = ()>,
) where
    V: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    let sweep = async {
        // Never judge orphans from a half-filled cache: that would delete everything.
        if !super::cache_ready(&host).await || !super::cache_ready(&virt).await {
            return;
        }
        loop {
            shared.gate.opened().await;
            sweep_once(&shared, kind, &host, &virt).await;
            tokio::time::sleep(SWEEP_EVERY).await;
        }
    };
    tokio::select! {
        _ = sweep => {}
        _ = shutdown => {}
    }
}

/// Host objects of `kind` whose source is missing from the virtual cache (or has another uid).
/// The host cache may hold a projection of the virtual kind ([`crate::cache::HostPod`]).
pub fn orphans<K, V>(tenant: &str, kind: &str, host: &Store<K>, virt: &Store<V>) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone,
    V: Resource<DynamicType = ()> + Clone,
{
    host.state()
        .into_iter()
        .filter(|h| {
            let Some((k, ns, name, uid)) = markers::source_of(h.meta(), tenant) else {
                return false;
            };
            if k != kind {
                return false;
            }
            match virt.get(&ObjectRef::new(name).within(ns)) {
                None => true,
                Some(v) => !uid.is_empty() && v.meta().uid.as_deref() != Some(uid),
            }
        })
        .collect()
}

async fn sweep_once<K, V>(shared: &Shared, kind: &'static str, host: &Store<K>, virt: &Store<V>)
where
    V: Resource<DynamicType = ()> + Clone,
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let api: Api<K> = shared.host_api();
    for o in orphans(&shared.cfg.tenant, kind, host, virt) {
        if o.meta().deletion_timestamp.is_some() {
            continue;
        }
        let name = o.name_any();
        match delete_host(&api, kind, &name, o.meta().uid.as_deref(), None).await {
            Ok(()) => tracing::info!(kind, host = name, "deleted orphaned host object"),
            Err(e) => {
                tracing::warn!(kind, host = name, error = %e, "deleting an orphaned host object failed")
            }
        }
    }
}
