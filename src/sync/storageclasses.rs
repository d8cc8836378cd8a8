//! Virtual StorageClasses from the storage policy ([`translate::storageclass`]): created when
//! missing, the default marker kept right, and this tenant's classes the policy no longer
//! names deleted. Reconciled from a watch cache on every change and every 10 s (no API request
//! unless something differs). Classes vcsync did not make (no `managed-by` label) are left alone.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use super::Shared;
use crate::markers;
use crate::metrics::ApiLabel;
use crate::translate::storageclass::{DEFAULT_CLASS_ANNOTATION, virtual_storage_classes};

/// Run until `stop`.
pub(super) async fn run(shared: Arc<Shared>, stop: impl Future<Output = ()>) {
    let api: Api<StorageClass> = Api::all(shared.virt.clone());
    let (store, stream) = shared.metrics.cached_stream(
        ApiLabel::Virtual,
        "StorageClass",
        api.clone(),
        watcher::Config::default(),
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watch = stream.for_each(move |_| {
        let _ = tx.send(());
        async {}
    });
    let work = async {
        if !super::cache_ready(&store).await {
            return;
        }
        loop {
            reconcile(&shared, &api, &store).await;
            tokio::select! {
                _ = rx.recv() => {}
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
        }
    };
    tokio::select! {
        _ = watch => {}
        _ = work => {}
        _ = stop => {}
    }
}

fn is_default(c: &StorageClass) -> bool {
    c.annotations()
        .get(DEFAULT_CLASS_ANNOTATION)
        .map(String::as_str)
        == Some("true")
}

async fn reconcile(shared: &Shared, api: &Api<StorageClass>, store: &Store<StorageClass>) {
    let tenant = &shared.cfg.tenant;
    let desired = virtual_storage_classes(tenant, &shared.policy());
    let ours = |c: &StorageClass| c.labels().get(markers::MANAGED_BY) == Some(tenant);
    let pp = PostParams {
        field_manager: Some(markers::FIELD_MANAGER.into()),
        ..Default::default()
    };
    for d in &desired {
        let name = d.name_any();
        let result = match store.get(&ObjectRef::new(&name)) {
            None => api.create(&pp, d).await.map(|_| "created"),
            Some(have) if ours(&have) && is_default(&have) != is_default(d) => {
                let mut updated = (*have).clone();
                updated
                    .metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(DEFAULT_CLASS_ANNOTATION.into(), is_default(d).to_string());
                api.replace(&name, &pp, &updated).await.map(|_| "updated")
            }
            Some(_) => continue,
        };
        match result {
            Ok(what) => tracing::info!(storage_class = name, "{what} virtual storage class"),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                tracing::warn!(storage_class = name, error = %super::brief(&e), "writing a virtual storage class failed")
            }
        }
    }
    for have in store.state() {
        let name = have.name_any();
        if !ours(&have) || desired.iter().any(|d| d.name_any() == name) {
            continue;
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(storage_class = name, "deleted virtual storage class"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::warn!(storage_class = name, error = %super::brief(&e), "deleting a virtual storage class failed")
            }
        }
    }
}
