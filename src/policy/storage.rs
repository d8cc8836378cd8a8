//! Storage: PersistentVolumeClaims and the claim templates of generic ephemeral volumes.
//!
//! A claim may only be provisioned dynamically from an allowed StorageClass. Everything that
//! binds a claim to a PersistentVolume that already exists on the host — an explicit empty
//! class, `volumeName`, a label `selector` — is refused: such volumes belong to the host or
//! another tenant (a `hostPath` or `local` PV among them). An unset class resolves to the
//! host's default class, which the policy must name (`storage.class.default`), and the host copy
//! gets it written explicitly so a later change of the host default cannot move the claim.
//! PersistentVolumes themselves are never synced from a tenant.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec};

use super::{Policy, Violation};

/// Every static rule name of this module.
pub const RULES: &[&str] = &[
    "storage.class",
    "storage.volume_name",
    "storage.selector",
    "storage.data_source",
];

/// Check a virtual PersistentVolumeClaim. `Ok`: the claim with its StorageClass resolved;
/// `Err`: every violation.
pub fn check_pvc(
    policy: &Policy,
    pvc: &PersistentVolumeClaim,
) -> Result<PersistentVolumeClaim, Vec<Violation>> {
    let mut out = pvc.clone();
    let mut violations = Vec::new();
    let spec = out.spec.get_or_insert_with(Default::default);
    check_claim_spec(policy, spec, "spec", &mut violations);
    if violations.is_empty() {
        Ok(out)
    } else {
        Err(violations)
    }
}

/// Check (and resolve the class of) a claim spec at `field`.
pub(crate) fn check_claim_spec(
    policy: &Policy,
    spec: &mut PersistentVolumeClaimSpec,
    field: &str,
    out: &mut Vec<Violation>,
) {
    match spec.storage_class_name.as_deref() {
        Some("") => out.push(Violation::new(
            "storage.class",
            format!("{field}.storageClassName"),
            "an empty StorageClass binds the claim to a pre-provisioned host PersistentVolume; name an allowed class",
        )),
        tenant => match policy.storage.class.resolve(tenant, false) {
            Ok(c) => spec.storage_class_name = c,
            Err(why) => out.push(Violation::new(
                "storage.class",
                format!("{field}.storageClassName"),
                format!("StorageClass {why}"),
            )),
        },
    }
    if spec.volume_name.as_deref().is_some_and(|v| !v.is_empty()) {
        out.push(Violation::new(
            "storage.volume_name",
            format!("{field}.volumeName"),
            "a claim may not name a PersistentVolume: host volumes are not the tenant's",
        ));
    }
    if spec.selector.is_some() {
        out.push(Violation::new(
            "storage.selector",
            format!("{field}.selector"),
            "a claim may not select existing PersistentVolumes by label",
        ));
    }
    let claim = |kind: &str, group: Option<&str>| {
        kind == "PersistentVolumeClaim" && group.unwrap_or("").is_empty()
    };
    if let Some(ds) = &spec.data_source
        && !claim(&ds.kind, ds.api_group.as_deref())
    {
        out.push(Violation::new(
            "storage.data_source",
            format!("{field}.dataSource"),
            format!(
                "only a PersistentVolumeClaim of the same namespace can be cloned, not a {}",
                ds.kind
            ),
        ));
    }
    if let Some(ds) = &spec.data_source_ref
        && (!claim(&ds.kind, ds.api_group.as_deref()) || ds.namespace.is_some())
    {
        out.push(Violation::new(
            "storage.data_source",
            format!("{field}.dataSourceRef"),
            "only a PersistentVolumeClaim of the same namespace can be cloned",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::{Value, json};

    fn pvc(spec: Value) -> PersistentVolumeClaim {
        serde_json::from_value(
            json!({"metadata": {"name": "data", "namespace": "default"}, "spec": spec}),
        )
        .unwrap()
    }

    fn policy(yaml: &str) -> Policy {
        Policy::from_yaml(yaml).unwrap()
    }

    const ALLOW: &str = "storage: {class: {allowed: [fast, slow], default: standard}}";

    #[rstest]
    #[case::allowed(ALLOW, json!({"storageClassName": "fast"}), Ok(Some("fast")))]
    #[case::unset_resolves_to_default(ALLOW, json!({}), Ok(Some("standard")))]
    #[case::default_by_name(ALLOW, json!({"storageClassName": "standard"}), Ok(Some("standard")))]
    #[case::not_allowed(ALLOW, json!({"storageClassName": "local-storage"}), Err("storage.class"))]
    #[case::explicit_empty(ALLOW, json!({"storageClassName": ""}), Err("storage.class"))]
    #[case::unset_without_default("storage: {class: {allowed: [fast]}}", json!({}), Err("storage.class"))]
    #[case::default_policy("", json!({"storageClassName": "fast"}), Err("storage.class"))]
    #[case::forced("storage: {class: {forced: tenant-a}}", json!({}), Ok(Some("tenant-a")))]
    #[case::forced_other("storage: {class: {forced: tenant-a}}", json!({"storageClassName": "fast"}), Err("storage.class"))]
    #[case::volume_name(ALLOW, json!({"storageClassName": "fast", "volumeName": "pv-1"}), Err("storage.volume_name"))]
    #[case::selector(ALLOW, json!({"storageClassName": "fast", "selector": {"matchLabels": {"a": "b"}}}), Err("storage.selector"))]
    #[case::clone_pvc(ALLOW, json!({"storageClassName": "fast", "dataSource": {"kind": "PersistentVolumeClaim", "name": "src"}}), Ok(Some("fast")))]
    #[case::snapshot(ALLOW, json!({"storageClassName": "fast", "dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "s"}}), Err("storage.data_source"))]
    #[case::cross_namespace_ref(ALLOW, json!({"storageClassName": "fast", "dataSourceRef": {"kind": "PersistentVolumeClaim", "name": "src", "namespace": "other"}}), Err("storage.data_source"))]
    fn claims(#[case] yaml: &str, #[case] spec: Value, #[case] want: Result<Option<&str>, &str>) {
        let r = check_pvc(&policy(yaml), &pvc(spec));
        match want {
            Ok(class) => assert_eq!(
                r.unwrap().spec.unwrap().storage_class_name.as_deref(),
                class
            ),
            Err(rule) => {
                let v = r.unwrap_err();
                assert_eq!(v.iter().map(|v| v.rule).collect::<Vec<_>>(), vec![rule]);
            }
        }
    }
}
