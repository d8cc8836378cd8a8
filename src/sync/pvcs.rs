//! PersistentVolumeClaims: down through the generic controller of [`super::kinds`], status and
//! binding up, and the virtual PersistentVolumes that stand for bound host volumes.
//!
//! The virtual cluster runs no PersistentVolume controller, so vcsync is its binder: once the
//! host copy of a claim is bound, vcsync creates the virtual volume named like the host volume
//! ([`translate::pvc::virtual_pv`], built from the host claim alone: vcsync cannot read host
//! PersistentVolumes), sets the virtual claim's `spec.volumeName` (allowed once by the API), and
//! copies the host claim's status, so the virtual claim is `Bound` exactly when its host copy
//! is. The virtual volume is deleted with its claim; a sweep over a label-selected watch of the
//! virtual volumes removes any whose claim is gone (a claim deleted while vcsync was down).

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::kinds::SyncKind;
use super::{Shared, SyncError, key_of};
use crate::markers;
use crate::metrics::Direction;
use crate::translate::{self, Context, NameRule, TranslateError};

/// Annotations the PV controller's binder sets on a bound claim (kubectl and controllers read
/// them).
const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";

impl SyncKind for PersistentVolumeClaim {
    const KIND: &'static str = "PersistentVolumeClaim";
    const RULE: NameRule = NameRule::Dns1123Subdomain;

    fn check(
        policy: &crate::policy::Policy,
        v: &Self,
    ) -> Result<Self, Vec<crate::policy::Violation>> {
        crate::policy::storage::check_pvc(policy, v)
    }

    fn check_with_host(
        policy: &crate::policy::Policy,
        v: &Self,
        host: Option<&Self>,
    ) -> Result<Self, Vec<crate::policy::Violation>> {
        // vcsync itself sets `volumeName` on the virtual claim once the host copy is bound (to
        // the virtual volume named like the host one); only that value is accepted, and only
        // while that host copy exists. A tenant-chosen volume is refused by the policy.
        let ours = |n: &str| {
            host.and_then(|h| h.spec.as_ref())
                .and_then(|s| s.volume_name.as_deref())
                .is_some_and(|h| translate::pvc::virtual_pv_name(h) == n)
        };
        let set = v.spec.as_ref().and_then(|s| s.volume_name.as_deref());
        if set.is_some_and(ours) {
            let mut copy = v.clone();
            if let Some(s) = copy.spec.as_mut() {
                s.volume_name = None;
            }
            // The checked claim keeps its volumeName: the status copy reads it.
            return Self::check(policy, &copy).map(|mut c| {
                if let Some(s) = c.spec.as_mut() {
                    s.volume_name = set.map(str::to_string);
                }
                c
            });
        }
        Self::check(policy, v)
    }

    fn translate(ctx: &Context, v: &Self) -> Result<Self, Vec<TranslateError>> {
        translate::pvc::host_pvc(ctx, v)
    }

    fn merge(actual: &Self, desired: &Self) -> Option<Self> {
        translate::pvc::merge(actual, desired)
    }

    fn immutable_change(actual: &Self, desired: &Self) -> Option<String> {
        translate::pvc::immutable_change(actual, desired)
    }

    fn sync_up(
        shared: &Shared,
        v: &Self,
        host: &Self,
    ) -> impl Future<Output = Result<(), SyncError>> + Send {
        sync_up(shared, v.clone(), host.clone())
    }

    fn on_unwanted(
        shared: &Shared,
        v: &Self,
    ) -> impl Future<Output = Result<(), SyncError>> + Send {
        let pv = v
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|n| !n.is_empty());
        let api: Api<PersistentVolume> = Api::all(shared.virt.clone());
        let (tenant, uid) = (shared.cfg.tenant.clone(), v.uid());
        async move {
            match pv {
                Some(pv) => delete_virtual_pv(&api, &tenant, &pv, uid.as_deref()).await,
                None => Ok(()),
            }
        }
    }
}

/// Delete virtual volume `name` if it is this tenant's and stands for the claim `uid`.
async fn delete_virtual_pv(
    api: &Api<PersistentVolume>,
    tenant: &str,
    name: &str,
    claim_uid: Option<&str>,
) -> Result<(), SyncError> {
    let pv = api.get_opt(name).await.map_err(|source| SyncError::Read {
        what: format!("virtual persistent volume {name}"),
        source,
    })?;
    let Some(pv) = pv else { return Ok(()) };
    let ours = pv.labels().get(markers::MANAGED_BY).map(String::as_str) == Some(tenant);
    let claim = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .and_then(|r| r.uid.as_deref());
    if !ours
        || pv.metadata.deletion_timestamp.is_some()
        || (claim_uid.is_some() && claim != claim_uid)
    {
        return Ok(());
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            tracing::info!(pv = name, "deleted virtual persistent volume");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(SyncError::DeleteVirtual {
            kind: "PersistentVolume",
            key: name.to_string(),
            source,
        }),
    }
}

/// The status fields of `status` as JSON, with every field `current` has and `status` lacks set
/// to null (a merge patch then clears it).
fn status_patch(status: &Value, current: &Value) -> Value {
    let mut out = status.clone();
    if let (Some(o), Some(c)) = (out.as_object_mut(), current.as_object()) {
        for k in c.keys() {
            if !o.contains_key(k) {
                o.insert(k.clone(), Value::Null);
            }
        }
    }
    out
}

async fn sync_up(
    shared: &Shared,
    v: PersistentVolumeClaim,
    host: PersistentVolumeClaim,
) -> Result<(), SyncError> {
    let ns = v.namespace().unwrap_or_default();
    let key = key_of(&v);
    let virt: Api<PersistentVolumeClaim> = Api::namespaced(shared.virt.clone(), &ns);
    let host_pv = host
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty());
    let virtual_volume = v
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty());
    if let (Some(_), None) = (&host_pv, &virtual_volume)
        && let Some(pv) = translate::pvc::virtual_pv(&shared.cfg.tenant, &v, &host)
    {
        bind_virtual(shared, &virt, &v, pv).await?;
        // The claim's own watch event brings the status copy next.
        return Ok(());
    }
    let want = translate::pvc::virtual_status(host.status.as_ref());
    // The phase follows the binding: never `Bound` before the virtual claim names its volume.
    let mut want = serde_json::to_value(&want).unwrap_or(Value::Null);
    if virtual_volume.is_none() && want["phase"] == "Bound" {
        want["phase"] = json!("Pending");
    }
    let have = serde_json::to_value(v.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
    if want == have {
        return Ok(());
    }
    virt.patch_status(
        &v.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status_patch(&want, &have)})),
    )
    .await
    .map_err(|source| SyncError::UpdateVirtualStatus {
        kind: "PersistentVolumeClaim",
        key: key.clone(),
        source,
    })?;
    shared
        .metrics
        .change_applied(Direction::Up, "PersistentVolumeClaim", &key);
    Ok(())
}

/// Create the virtual volume (or find this tenant's for this claim) and set the claim's
/// `volumeName`.
async fn bind_virtual(
    shared: &Shared,
    virt: &Api<PersistentVolumeClaim>,
    v: &PersistentVolumeClaim,
    pv: PersistentVolume,
) -> Result<(), SyncError> {
    let key = key_of(v);
    let pvs: Api<PersistentVolume> = Api::all(shared.virt.clone());
    let name = pv.name_any();
    let pp = PostParams {
        field_manager: Some(markers::FIELD_MANAGER.into()),
        ..Default::default()
    };
    match pvs.create(&pp, &pv).await {
        Ok(_) => {
            tracing::info!(key, pv = name, "created virtual persistent volume");
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = pvs.get(&name).await.map_err(|source| SyncError::Read {
                what: format!("virtual persistent volume {name}"),
                source,
            })?;
            let claim_uid = existing
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .and_then(|r| r.uid.clone());
            let ours = existing.labels().get(markers::MANAGED_BY) == Some(&shared.cfg.tenant);
            if !ours || claim_uid != v.uid() {
                return Err(SyncError::Foreign {
                    kind: "PersistentVolume",
                    name,
                    key,
                });
            }
        }
        Err(source) => {
            return Err(SyncError::UpdateVirtualStatus {
                kind: "PersistentVolume",
                key,
                source,
            });
        }
    }
    // The volume's status (vcsync is its binder too).
    pvs.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Bound"}})),
    )
    .await
    .map_err(|source| SyncError::UpdateVirtualStatus {
        kind: "PersistentVolume",
        key: key.clone(),
        source,
    })?;
    virt.patch(
        &v.name_any(),
        &PatchParams {
            field_manager: Some(markers::FIELD_MANAGER.into()),
            ..Default::default()
        },
        &Patch::Merge(json!({
            "metadata": {
                "resourceVersion": v.resource_version(),
                "annotations": {BIND_COMPLETED: "yes", BOUND_BY_CONTROLLER: "yes"},
            },
            "spec": {"volumeName": name},
        })),
    )
    .await
    .map_err(|source| SyncError::UpdateVirtualStatus {
        kind: "PersistentVolumeClaim",
        key: key.clone(),
        source,
    })?;
    shared
        .metrics
        .change_applied(Direction::Up, "PersistentVolumeClaim", &key);
    Ok(())
}

/// Delete the virtual volumes of this tenant whose claim is gone (deleted while vcsync was not
/// running, or a delete that failed): a label-selected watch, checked against the claim cache
/// every few seconds without API requests while nothing is to be done.
pub(super) async fn sweep_virtual_volumes(
    shared: &Shared,
    claims: Store<PersistentVolumeClaim>,
    stop: impl Future<Output = ()>,
) {
    let api: Api<PersistentVolume> = Api::all(shared.virt.clone());
    let selector = markers::tenant_selector(&shared.cfg.tenant);
    let (volumes, stream) = shared.metrics.cached_stream(
        crate::metrics::ApiLabel::Virtual,
        "PersistentVolume",
        api.clone(),
        watcher::Config::default().labels(&selector),
    );
    let watch = futures::StreamExt::for_each(stream, |_| async {});
    let sweep = async {
        if !super::cache_ready(&claims).await || !super::cache_ready(&volumes).await {
            return;
        }
        loop {
            for pv in volumes.state() {
                if pv.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
                    continue;
                };
                let (ns, name) = (
                    r.namespace.clone().unwrap_or_default(),
                    r.name.clone().unwrap_or_default(),
                );
                let claim = claims.get(&ObjectRef::new(&name).within(&ns));
                if claim.is_some_and(|c| c.uid() == r.uid) {
                    continue;
                }
                if let Err(e) =
                    delete_virtual_pv(&api, &shared.cfg.tenant, &pv.name_any(), r.uid.as_deref())
                        .await
                {
                    tracing::warn!(pv = pv.name_any(), error = %e, "deleting an orphaned virtual persistent volume failed");
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    tokio::select! {
        _ = watch => {}
        _ = sweep => {}
        _ = stop => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_patch_clears_what_the_host_dropped() {
        let want = json!({"phase": "Bound", "capacity": {"storage": "2Gi"}});
        let have = json!({"phase": "Bound", "capacity": {"storage": "1Gi"}, "conditions": [{"type": "FileSystemResizePending"}]});
        assert_eq!(
            status_patch(&want, &have),
            json!({"phase": "Bound", "capacity": {"storage": "2Gi"}, "conditions": null})
        );
    }

    fn claim(volume: Option<&str>) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "shop", "uid": "u"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                "storageClassName": "fast", "volumeName": volume}
        }))
        .unwrap()
    }

    #[test]
    fn only_the_volume_vcsync_bound_passes_the_policy() {
        let policy =
            crate::policy::Policy::from_yaml("storage: {class: {allowed: [fast], default: fast}}")
                .unwrap();
        let host = claim(Some("pvc-1"));
        let bound = claim(Some("pvc-1"));
        let checked = PersistentVolumeClaim::check_with_host(&policy, &bound, Some(&host)).unwrap();
        assert_eq!(
            checked.spec.unwrap().volume_name.as_deref(),
            Some("pvc-1"),
            "kept for the status copy"
        );
        let chosen = claim(Some("someone-elses"));
        assert!(PersistentVolumeClaim::check_with_host(&policy, &chosen, Some(&host)).is_err());
        assert!(PersistentVolumeClaim::check_with_host(&policy, &bound, None).is_err());
    }
}
