//! Virtual PersistentVolumeClaims as host claims, their status back up, and the virtual
//! PersistentVolume that stands for the host volume a claim is bound to.
//!
//! The host copy is named like every claim reference a pod makes ([`super::references::host_pvc_name`]),
//! so host pods mount it. Its spec carries what the tenant asks for: access modes, resources,
//! volume mode, the StorageClass the isolation policy resolved (always written explicitly) and
//! a clone source translated to the host copy of the source claim. `volumeName` and `selector`
//! are never written (the policy refuses them); the binding annotations of the host's volume
//! controllers (`pv.kubernetes.io/…`, `volume.kubernetes.io/…`, `volume.beta.kubernetes.io/…`)
//! are not copied down, so a tenant cannot pick the provisioner or the node of a volume.
//!
//! Up: the host claim's status as it is, and, once the host claim is bound, a virtual
//! PersistentVolume named like the host volume ([`virtual_pv`]) built only from what the host
//! claim says (vcsync cannot read host PersistentVolumes: they are cluster-scoped). It has no
//! host paths, node names or secrets: its source is a `csi` placeholder of driver
//! [`VIRTUAL_PV_DRIVER`] whose handle is the host volume's name.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, PersistentVolumeSpec,
    PersistentVolumeStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Context, NameRule, TranslateError};
use crate::markers;

/// Driver name of the placeholder source of virtual PersistentVolumes.
pub const VIRTUAL_PV_DRIVER: &str = "vcsync.io/host";

/// Annotation prefixes of the host's volume controllers, never copied down.
const BINDER_PREFIXES: &[&str] = &[
    "pv.kubernetes.io/",
    "volume.kubernetes.io/",
    "volume.beta.kubernetes.io/",
];

fn is_binder_key(k: &str) -> bool {
    BINDER_PREFIXES.iter().any(|p| k.starts_with(p))
}

/// The host copy of virtual claim `v`, whose StorageClass the policy already resolved.
pub fn host_pvc(
    ctx: &Context,
    v: &PersistentVolumeClaim,
) -> Result<PersistentVolumeClaim, Vec<TranslateError>> {
    let mut meta = v.metadata.clone();
    if let Some(a) = meta.annotations.as_mut() {
        a.retain(|k, _| !is_binder_key(k));
    }
    let metadata = ctx.host_meta("PersistentVolumeClaim", &meta, NameRule::Dns1123Subdomain)?;
    let ns = v.metadata.namespace.as_deref().unwrap_or("");
    let spec = v.spec.clone().unwrap_or_default();
    let mut errs = Vec::new();
    if spec
        .volume_attributes_class_name
        .as_deref()
        .is_some_and(|c| !c.is_empty())
    {
        errs.push(TranslateError::Unsupported {
            field: "spec.volumeAttributesClassName".into(),
            reason: "VolumeAttributesClasses are host objects and not offered to tenants",
        });
    }
    let pvc_name = |n: &str| ctx.host_name(ns, n, NameRule::Dns1123Subdomain);
    let is_claim = |kind: &str, group: Option<&str>| {
        kind == "PersistentVolumeClaim" && group.unwrap_or("").is_empty()
    };
    let mut data_source = spec.data_source.clone();
    if let Some(ds) = data_source.as_mut() {
        if is_claim(&ds.kind, ds.api_group.as_deref()) {
            ds.name = pvc_name(&ds.name);
        } else {
            errs.push(TranslateError::Unsupported {
                field: "spec.dataSource".into(),
                reason: "only a PersistentVolumeClaim of the same namespace can be cloned",
            });
        }
    }
    let mut data_source_ref = spec.data_source_ref.clone();
    if let Some(ds) = data_source_ref.as_mut() {
        if is_claim(&ds.kind, ds.api_group.as_deref()) && ds.namespace.is_none() {
            ds.name = pvc_name(&ds.name);
        } else {
            errs.push(TranslateError::Unsupported {
                field: "spec.dataSourceRef".into(),
                reason: "only a PersistentVolumeClaim of the same namespace can be cloned",
            });
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: spec.access_modes,
            resources: spec.resources,
            storage_class_name: spec.storage_class_name,
            volume_mode: spec.volume_mode,
            data_source,
            data_source_ref,
            volume_name: None,
            selector: None,
            volume_attributes_class_name: None,
        }),
        status: None,
    })
}

/// The storage request of a claim spec.
pub fn storage_request(spec: Option<&PersistentVolumeClaimSpec>) -> Option<&Quantity> {
    spec?.resources.as_ref()?.requests.as_ref()?.get("storage")
}

/// Why host claim `actual` cannot become `desired` (an immutable field differs), if it cannot.
/// Only the storage request may change, and only upwards; both sides' API servers refuse the
/// rest, so the difference can only come from vcsync's side (a new policy default class).
pub fn immutable_change(
    actual: &PersistentVolumeClaim,
    desired: &PersistentVolumeClaim,
) -> Option<String> {
    let (a, d) = (
        actual.spec.clone().unwrap_or_default(),
        desired.spec.clone().unwrap_or_default(),
    );
    let mut fields = Vec::new();
    if a.storage_class_name != d.storage_class_name {
        fields.push("spec.storageClassName");
    }
    if a.access_modes != d.access_modes {
        fields.push("spec.accessModes");
    }
    if d.volume_mode.is_some() && a.volume_mode != d.volume_mode {
        fields.push("spec.volumeMode");
    }
    if a.data_source != d.data_source {
        fields.push("spec.dataSource");
    }
    if let (Some(aq), Some(dq)) = (storage_request(Some(&a)), storage_request(Some(&d)))
        && quantity_cmp(dq, aq) == Some(std::cmp::Ordering::Less)
    {
        fields.push("spec.resources.requests.storage (a claim cannot shrink)");
    }
    (!fields.is_empty()).then(|| {
        format!(
            "the host claim cannot follow a change of {}: claims are immutable except for a larger storage request; delete and re-create the claim",
            fields.join(", ")
        )
    })
}

/// Compare two quantities by value (`1Gi` vs `1024Mi`); `None` when one does not parse.
pub fn quantity_cmp(a: &Quantity, b: &Quantity) -> Option<std::cmp::Ordering> {
    Some(parse_quantity(&a.0)?.cmp(&parse_quantity(&b.0)?))
}

/// A quantity in milli-units, for the suffixes storage sizes use.
fn parse_quantity(s: &str) -> Option<i128> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let mult: i128 = match suffix {
        "" => 1000,
        "m" => 1,
        "k" => 1000 * 1000,
        "M" => 1000 * 1_000_000,
        "G" => 1000 * 1_000_000_000,
        "T" => 1000 * 1_000_000_000_000,
        "P" => 1000 * 1_000_000_000_000_000,
        "Ki" => 1000 * (1 << 10),
        "Mi" => 1000 * (1 << 20),
        "Gi" => 1000 * (1 << 30),
        "Ti" => 1000 * (1 << 40),
        "Pi" => 1000 * (1 << 50),
        _ => return None,
    };
    match num.split_once('.') {
        None => num.parse::<i128>().ok()?.checked_mul(mult),
        Some((int, frac)) => {
            let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
            let digits = frac.len().min(18) as u32;
            let frac: i128 = frac.get(..digits as usize)?.parse().ok()?;
            let scale = 10i128.pow(digits);
            Some(int.checked_mul(mult)? + frac.checked_mul(mult)? / scale)
        }
    }
}

/// The host claim after merging `desired` into `actual`: vcsync's labels and annotations and a
/// larger storage request; `None` when nothing changes.
pub fn merge(
    actual: &PersistentVolumeClaim,
    desired: &PersistentVolumeClaim,
) -> Option<PersistentVolumeClaim> {
    let mut out = actual.clone();
    super::merge_owned_meta(&mut out.metadata, &desired.metadata);
    if let (Some(want), Some(spec)) = (storage_request(desired.spec.as_ref()), out.spec.as_mut()) {
        let have = storage_request(Some(spec)).cloned();
        let grow = have
            .as_ref()
            .is_none_or(|h| quantity_cmp(want, h) == Some(std::cmp::Ordering::Greater));
        if grow {
            spec.resources
                .get_or_insert_with(Default::default)
                .requests
                .get_or_insert_with(BTreeMap::new)
                .insert("storage".into(), want.clone());
        }
    }
    (out != *actual).then_some(out)
}

/// The virtual claim's status for host claim status `host` (the host's, field by field, with
/// every field the host leaves unset cleared).
pub fn virtual_status(host: Option<&PersistentVolumeClaimStatus>) -> PersistentVolumeClaimStatus {
    let h = host.cloned().unwrap_or_default();
    PersistentVolumeClaimStatus {
        phase: h.phase.or(Some("Pending".into())),
        ..h
    }
}

/// Name of the virtual PersistentVolume for host volume `host_pv`: the same name, so
/// `kubectl get pv` in the virtual cluster and on the host agree.
pub fn virtual_pv_name(host_pv: &str) -> String {
    host_pv.to_string()
}

/// The virtual PersistentVolume standing for the host volume `host` is bound to, for virtual
/// claim `v`: capacity, access modes, class and volume mode as the host claim reports them, a
/// `claimRef` to the virtual claim, the host's reclaim behaviour described as `Delete` (the
/// virtual object goes with its claim), markers naming the claim, status `Bound`.
pub fn virtual_pv(
    tenant: &str,
    v: &PersistentVolumeClaim,
    host: &PersistentVolumeClaim,
) -> Option<PersistentVolume> {
    let host_pv = host
        .spec
        .as_ref()?
        .volume_name
        .clone()
        .filter(|n| !n.is_empty())?;
    let hs = host.spec.clone().unwrap_or_default();
    let status = host.status.clone().unwrap_or_default();
    let capacity = status
        .capacity
        .clone()
        .or_else(|| hs.resources.as_ref().and_then(|r| r.requests.clone()));
    let ns = v.metadata.namespace.clone().unwrap_or_default();
    let name = v.metadata.name.clone().unwrap_or_default();
    Some(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(virtual_pv_name(&host_pv)),
            labels: Some(BTreeMap::from([(
                markers::MANAGED_BY.to_string(),
                tenant.to_string(),
            )])),
            annotations: Some(BTreeMap::from([
                (markers::VIRTUAL_NAMESPACE.to_string(), ns.clone()),
                (markers::VIRTUAL_NAME.to_string(), name.clone()),
            ])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity,
            access_modes: status.access_modes.clone().or(hs.access_modes.clone()),
            storage_class_name: hs.storage_class_name.clone(),
            volume_mode: hs.volume_mode.clone(),
            persistent_volume_reclaim_policy: Some("Delete".into()),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(ns),
                name: Some(name),
                uid: v.metadata.uid.clone(),
                ..Default::default()
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: VIRTUAL_PV_DRIVER.into(),
                volume_handle: host_pv,
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: Some(PersistentVolumeStatus {
            phase: Some("Bound".into()),
            ..Default::default()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::test_ctx as ctx;
    use rstest::rstest;
    use serde_json::{Value, json};

    fn pvc(v: Value) -> PersistentVolumeClaim {
        serde_json::from_value(v).unwrap()
    }

    fn claim() -> PersistentVolumeClaim {
        pvc(json!({
            "metadata": {"name": "data-db-0", "namespace": "shop", "uid": "u-1", "resourceVersion": "7",
                "labels": {"app": "db"},
                "annotations": {"note": "x", "volume.kubernetes.io/selected-node": "host-node-3",
                    "volume.beta.kubernetes.io/storage-provisioner": "evil"},
                "finalizers": ["kubernetes.io/pvc-protection"]},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                "storageClassName": "fast", "volumeMode": "Filesystem",
                "dataSource": {"kind": "PersistentVolumeClaim", "name": "seed"}},
            "status": {"phase": "Pending"}
        }))
    }

    #[test]
    fn host_claim_snapshot() {
        let host = host_pvc(&ctx(), &claim()).unwrap();
        insta::assert_yaml_snapshot!(host);
    }

    #[test]
    fn binder_annotations_never_go_down() {
        let host = host_pvc(&ctx(), &claim()).unwrap();
        let a = host.metadata.annotations.unwrap();
        assert!(a.keys().all(|k| !is_binder_key(k)), "{a:?}");
        assert_eq!(a["note"], "x");
    }

    #[rstest]
    #[case::snapshot(json!({"dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "s"}}), "spec.dataSource")]
    #[case::cross_ns(json!({"dataSourceRef": {"kind": "PersistentVolumeClaim", "name": "s", "namespace": "other"}}), "spec.dataSourceRef")]
    #[case::vac(json!({"volumeAttributesClassName": "gold"}), "spec.volumeAttributesClassName")]
    fn refused(#[case] spec: Value, #[case] field: &str) {
        let mut c = claim();
        let mut s = serde_json::to_value(c.spec.take().unwrap()).unwrap();
        s.as_object_mut().unwrap().remove("dataSource");
        for (k, v) in spec.as_object().unwrap() {
            s[k] = v.clone();
        }
        c.spec = Some(serde_json::from_value(s).unwrap());
        let errs = host_pvc(&ctx(), &c).unwrap_err();
        assert!(errs[0].to_string().contains(field), "{}", errs[0]);
    }

    #[rstest]
    #[case("1Gi", "1024Mi", std::cmp::Ordering::Equal)]
    #[case("2Gi", "1Gi", std::cmp::Ordering::Greater)]
    #[case("1G", "1Gi", std::cmp::Ordering::Less)]
    #[case("1.5Gi", "1536Mi", std::cmp::Ordering::Equal)]
    #[case("500M", "0.5G", std::cmp::Ordering::Equal)]
    fn quantities(#[case] a: &str, #[case] b: &str, #[case] want: std::cmp::Ordering) {
        assert_eq!(
            quantity_cmp(&Quantity(a.into()), &Quantity(b.into())),
            Some(want)
        );
    }

    #[test]
    fn only_a_larger_request_is_merged() {
        let desired = host_pvc(&ctx(), &claim()).unwrap();
        let mut actual = desired.clone();
        actual.spec.as_mut().unwrap().volume_name = Some("pvc-9".into());
        assert_eq!(merge(&actual, &desired), None, "in sync");
        let mut bigger = desired.clone();
        bigger
            .spec
            .as_mut()
            .unwrap()
            .resources
            .as_mut()
            .unwrap()
            .requests = Some(BTreeMap::from([("storage".into(), Quantity("2Gi".into()))]));
        let merged = merge(&actual, &bigger).expect("an update");
        assert_eq!(storage_request(merged.spec.as_ref()).unwrap().0, "2Gi");
        assert_eq!(merged.spec.unwrap().volume_name.as_deref(), Some("pvc-9"));
        assert_eq!(immutable_change(&actual, &bigger), None);
        // Smaller or another class: not merged, reported.
        let mut smaller = desired.clone();
        smaller
            .spec
            .as_mut()
            .unwrap()
            .resources
            .as_mut()
            .unwrap()
            .requests = Some(BTreeMap::from([(
            "storage".into(),
            Quantity("512Mi".into()),
        )]));
        assert_eq!(merge(&actual, &smaller), None);
        assert!(immutable_change(&actual, &smaller).is_some());
        let mut class = desired.clone();
        class.spec.as_mut().unwrap().storage_class_name = Some("slow".into());
        assert!(
            immutable_change(&actual, &class)
                .unwrap()
                .contains("spec.storageClassName")
        );
    }

    #[test]
    fn virtual_pv_snapshot() {
        let v = claim();
        let mut host = host_pvc(&ctx(), &v).unwrap();
        assert!(
            virtual_pv("acme", &v, &host).is_none(),
            "unbound: no volume"
        );
        host.spec.as_mut().unwrap().volume_name = Some("pvc-3f2a".into());
        host.status = Some(
            serde_json::from_value(json!({"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}))
                .unwrap(),
        );
        let pv = virtual_pv("acme", &v, &host).unwrap();
        insta::assert_yaml_snapshot!(pv);
    }
}
