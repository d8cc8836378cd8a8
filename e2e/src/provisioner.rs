//! A dynamic volume provisioner simulator that drives any API server through a kube client,
//! the storage counterpart of the kubelet simulator ([`crate::kubelet`]).
//!
//! For the StorageClasses it is given (created at start when missing, with provisioner
//! [`PROVISIONER`]), it does what an external provisioner, kube-scheduler's volume binding,
//! the PV controller's binder, the resizer and the kubelet's file-system resize do, through the
//! public API only:
//!
//! * **provisioning**: a pending claim of an `Immediate` class gets a PersistentVolume
//!   `pvc-<claim uid>` (capacity = the storage request, access modes, class, reclaim policy,
//!   `claimRef` to the claim, a `csi` source of driver [`PROVISIONER`]); a claim of a
//!   `WaitForFirstConsumer` class waits until a pod using it is bound to a node: then the claim
//!   gets `volume.kubernetes.io/selected-node` (as the scheduler sets it) and is provisioned.
//!   The simulated scheduler binds such pods without waiting for their claims (the real one
//!   binds only after the claim is bound); a test cannot tell the difference through the claim.
//! * **binding**: the volume's status becomes `Bound`; the claim gets `spec.volumeName`,
//!   the binder's annotations and `status` `Bound` with capacity and access modes.
//! * **expansion**: a bound claim of a class with `allowVolumeExpansion` whose storage request
//!   exceeds its capacity: the volume grows, the claim's status goes through
//!   `allocatedResources` + `FileSystemResizePending`, then to the new capacity.
//! * **reclaim**: a volume whose claim is gone is deleted (`Delete`) or marked `Released`
//!   (`Retain`).
//!
//! Level-triggered like the kubelet simulator: each watch event re-derives what is left to do
//! from the caches, so lost calls are retried and a restart never provisions twice (the volume
//! name derives from the claim's uid).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::kubelet::quantity::parse_milli;

/// The provisioner (and CSI driver) name of the simulated volumes.
pub const PROVISIONER: &str = "provisioner.vcsync-e2e.test";
/// The annotation kube-scheduler sets on a claim of a `WaitForFirstConsumer` class.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The annotation provisioners set on the volumes they made.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// When a claim of a class is provisioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingMode {
    Immediate,
    WaitForFirstConsumer,
}

/// A StorageClass the simulator provisions.
#[derive(Debug, Clone)]
pub struct SimClass {
    pub name: String,
    pub binding: BindingMode,
    /// `Delete` or `Retain`.
    pub reclaim: String,
    pub allow_expansion: bool,
}

impl SimClass {
    /// An `Immediate`, expandable class that deletes its volumes.
    pub fn immediate(name: &str) -> SimClass {
        SimClass {
            name: name.to_string(),
            binding: BindingMode::Immediate,
            reclaim: "Delete".into(),
            allow_expansion: true,
        }
    }

    /// A `WaitForFirstConsumer`, expandable class that deletes its volumes.
    pub fn wait_for_first_consumer(name: &str) -> SimClass {
        SimClass {
            binding: BindingMode::WaitForFirstConsumer,
            ..SimClass::immediate(name)
        }
    }

    /// The same class without volume expansion.
    pub fn no_expansion(mut self) -> SimClass {
        self.allow_expansion = false;
        self
    }

    fn object(&self) -> StorageClass {
        serde_json::from_value(json!({
            "metadata": {"name": self.name},
            "provisioner": PROVISIONER,
            "reclaimPolicy": self.reclaim,
            "volumeBindingMode": match self.binding {
                BindingMode::Immediate => "Immediate",
                BindingMode::WaitForFirstConsumer => "WaitForFirstConsumer",
            },
            "allowVolumeExpansion": self.allow_expansion,
        }))
        .expect("a valid StorageClass")
    }
}

/// What can go wrong starting the simulator.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionerError {
    /// A StorageClass could not be created.
    #[error("creating storage class {name}: {source}")]
    CreateClass { name: String, source: kube::Error },
}

/// A running simulator; dropping it stops it.
pub struct ProvisionerHandle {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl ProvisionerHandle {
    /// Stop and wait.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for ProvisionerHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Start the simulator for claims in `namespace` (all namespaces when `None`).
pub async fn start(
    client: Client,
    namespace: Option<String>,
    classes: Vec<SimClass>,
) -> Result<ProvisionerHandle, ProvisionerError> {
    let scs: Api<StorageClass> = Api::all(client.clone());
    for c in &classes {
        match scs.create(&PostParams::default(), &c.object()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(source) => {
                return Err(ProvisionerError::CreateClass {
                    name: c.name.clone(),
                    source,
                });
            }
        }
    }
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(run(client, namespace, classes, rx));
    Ok(ProvisionerHandle {
        stop,
        task: Some(task),
    })
}

struct Caches {
    claims: Store<PersistentVolumeClaim>,
    pods: Store<Pod>,
    volumes: Store<PersistentVolume>,
}

async fn run(
    client: Client,
    namespace: Option<String>,
    classes: Vec<SimClass>,
    mut stop: watch::Receiver<bool>,
) {
    let (claims_api, pods_api): (Api<PersistentVolumeClaim>, Api<Pod>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let wake = Arc::new(Notify::new());
    let (claims, cw) = reflector::store();
    let (pods, pw) = reflector::store();
    let (volumes, vw) = reflector::store();
    let t1 = spawn_watch(claims_api, cw, wake.clone());
    let t2 = spawn_watch(pods_api, pw, wake.clone());
    let t3 = spawn_watch(pvs, vw, wake.clone());
    let caches = Caches {
        claims,
        pods,
        volumes,
    };
    let classes: BTreeMap<String, SimClass> =
        classes.into_iter().map(|c| (c.name.clone(), c)).collect();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = wake.notified() => {}
            // A failed call is tried again at the latest on this tick.
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        if caches.claims.wait_until_ready().await.is_err() {
            break;
        }
        pass(&client, &caches, &classes).await;
    }
    for t in [t1, t2, t3] {
        t.abort();
    }
}

/// Keep a reflector of `api` and wake the pass on every event.
fn spawn_watch<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    wake: Arc<Notify>,
) -> JoinHandle<()>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while stream.next().await.is_some() {
            wake.notify_one();
        }
    })
}

fn storage_request(c: &PersistentVolumeClaim) -> Option<String> {
    c.spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|q| q.0.clone())
}

fn capacity(c: &PersistentVolumeClaim) -> Option<String> {
    c.status
        .as_ref()?
        .capacity
        .as_ref()?
        .get("storage")
        .map(|q| q.0.clone())
}

fn milli(q: Option<&str>) -> i128 {
    q.and_then(parse_milli).unwrap_or(0)
}

fn pv_name(c: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", c.uid().unwrap_or_default())
}

/// One level-triggered pass over every claim and volume.
async fn pass(client: &Client, caches: &Caches, classes: &BTreeMap<String, SimClass>) {
    for c in caches.claims.state() {
        let class = c
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref())
            .and_then(|n| classes.get(n));
        let Some(class) = class else { continue };
        if c.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let ns = c.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let bound_to = c
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|v| !v.is_empty());
        let result = match bound_to {
            None => provision(client, caches, &api, &c, class).await,
            Some(pv) => {
                let phase = c.status.as_ref().and_then(|s| s.phase.as_deref());
                if phase != Some("Bound") {
                    mark_bound(&api, &c, &pv).await
                } else if class.allow_expansion
                    && milli(storage_request(&c).as_deref()) > milli(capacity(&c).as_deref())
                {
                    expand(client, &api, &c, &pv).await
                } else {
                    Ok(())
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(claim = %format!("{ns}/{}", c.name_any()), error = %e, "provisioner simulator: retrying");
        }
    }
    reclaim(client, caches).await;
}

async fn provision(
    client: &Client,
    caches: &Caches,
    api: &Api<PersistentVolumeClaim>,
    c: &PersistentVolumeClaim,
    class: &SimClass,
) -> Result<(), kube::Error> {
    let ns = c.namespace().unwrap_or_default();
    let selected = c.annotations().get(SELECTED_NODE).cloned();
    let node = if class.binding == BindingMode::WaitForFirstConsumer {
        match selected {
            Some(n) => Some(n),
            None => {
                // The scheduler picks the node of the first pod that uses the claim.
                let consumer = caches.pods.state().into_iter().find(|p| {
                    p.namespace().as_deref() == Some(ns.as_str())
                        && p.metadata.deletion_timestamp.is_none()
                        && p.spec.as_ref().is_some_and(|s| {
                            s.node_name.is_some()
                                && s.volumes.iter().flatten().any(|v| {
                                    v.persistent_volume_claim
                                        .as_ref()
                                        .is_some_and(|p| p.claim_name == c.name_any())
                                        || (v.ephemeral.is_some()
                                            && format!("{}-{}", p.name_any(), v.name)
                                                == c.name_any())
                                })
                        })
                });
                let Some(pod) = consumer else { return Ok(()) };
                let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
                api.patch(
                    &c.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {SELECTED_NODE: node}}})),
                )
                .await?;
                // The annotation's watch event brings the next pass.
                return Ok(());
            }
        }
    } else {
        None
    };
    let spec = c.spec.clone().unwrap_or_default();
    let size = storage_request(c).unwrap_or_else(|| "1Gi".into());
    let name = pv_name(c);
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let mut pv = json!({
        "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.access_modes.clone().unwrap_or_default(),
            "storageClassName": class.name,
            "persistentVolumeReclaimPolicy": class.reclaim,
            "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": ns, "name": c.name_any(), "uid": c.uid(),
            },
            "csi": {"driver": PROVISIONER, "volumeHandle": name},
        }
    });
    if let Some(node) = node {
        pv["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
        ]}]}});
    }
    let pv: PersistentVolume = serde_json::from_value(pv).expect("a valid PersistentVolume");
    match pvs.create(&PostParams::default(), &pv).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e),
    }
    pvs.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Bound"}})),
    )
    .await?;
    api.patch(
        &c.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({
            "metadata": {"annotations": {
                "pv.kubernetes.io/bind-completed": "yes",
                "pv.kubernetes.io/bound-by-controller": "yes",
                "volume.kubernetes.io/storage-provisioner": PROVISIONER,
            }},
            "spec": {"volumeName": name},
        })),
    )
    .await?;
    mark_bound(api, c, &name).await
}

async fn mark_bound(
    api: &Api<PersistentVolumeClaim>,
    c: &PersistentVolumeClaim,
    _pv: &str,
) -> Result<(), kube::Error> {
    let spec = c.spec.clone().unwrap_or_default();
    let size = storage_request(c).unwrap_or_else(|| "1Gi".into());
    api.patch_status(
        &c.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "phase": "Bound",
            "accessModes": spec.access_modes.unwrap_or_default(),
            "capacity": {"storage": size},
        }})),
    )
    .await?;
    Ok(())
}

/// Two steps, as the resizer and then the kubelet take them: the volume grows and the claim
/// shows the pending file-system resize; the next pass finishes it.
async fn expand(
    client: &Client,
    api: &Api<PersistentVolumeClaim>,
    c: &PersistentVolumeClaim,
    pv: &str,
) -> Result<(), kube::Error> {
    let want = storage_request(c).unwrap_or_default();
    let allocated = c
        .status
        .as_ref()
        .and_then(|s| s.allocated_resources.as_ref())
        .and_then(|a| a.get("storage"))
        .map(|q| q.0.clone());
    if milli(allocated.as_deref()) < milli(Some(&want)) {
        let pvs: Api<PersistentVolume> = Api::all(client.clone());
        pvs.patch(
            pv,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"capacity": {"storage": want}}})),
        )
        .await?;
        api.patch_status(
            &c.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "allocatedResources": {"storage": want},
                "allocatedResourceStatuses": {"storage": "NodeResizePending"},
                "conditions": [{
                    "type": "FileSystemResizePending", "status": "True",
                    "message": "Waiting for user to (re-)start a pod to finish file system resize of volume on node.",
                }],
            }})),
        )
        .await?;
        return Ok(());
    }
    api.patch_status(
        &c.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "capacity": {"storage": want},
            "allocatedResourceStatuses": null,
            "conditions": null,
        }})),
    )
    .await?;
    Ok(())
}

/// Volumes whose claim is gone: deleted or released by their reclaim policy.
async fn reclaim(client: &Client, caches: &Caches) {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for pv in caches.volumes.state() {
        if pv.annotations().get(PROVISIONED_BY).map(String::as_str) != Some(PROVISIONER)
            || pv.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let Some(spec) = &pv.spec else { continue };
        let Some(r) = &spec.claim_ref else { continue };
        let ns = r.namespace.clone().unwrap_or_default();
        let name = r.name.clone().unwrap_or_default();
        // Only claims of the watched scope are judged: a claim outside it is not "gone".
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let cached = caches
            .claims
            .get(&reflector::ObjectRef::new(&name).within(&ns));
        let claim = match cached {
            Some(c) => Some((*c).clone()),
            None => match api.get_opt(&name).await {
                Ok(c) => c,
                Err(_) => continue,
            },
        };
        if claim.is_some_and(|c| c.uid() == r.uid) {
            continue;
        }
        let result = if spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete") {
            match pvs.delete(&pv.name_any(), &Default::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(e),
            }
        } else if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Released") {
            pvs.patch_status(
                &pv.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Released"}})),
            )
            .await
            .map(|_| ())
        } else {
            Ok(())
        };
        if let Err(e) = result {
            tracing::debug!(pv = pv.name_any(), error = %e, "provisioner simulator: reclaim retrying");
        }
    }
}
