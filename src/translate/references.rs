//! The config maps, secrets and claims a virtual object needs on the host.
//!
//! A host pod only starts if every object it names exists in the host namespace under its
//! translated name, so the engine must copy them down first (and keep them while any pod uses
//! them). Missing one reference means a pod stuck in `ContainerCreating` with an error the
//! tenant cannot see, so the walk below covers every place the pod API lets a pod name one,
//! including the rarely used volume plugins' secret references.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    EnvFromSource, EnvVar, PersistentVolumeClaimSpec, Pod, Volume, VolumeProjection,
};

use super::{Context, NameRule};

/// Virtual names of the objects another object references, all in that object's own namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct References {
    /// Config map names.
    pub config_maps: BTreeSet<String>,
    /// Secret names.
    pub secrets: BTreeSet<String>,
    /// Persistent volume claim names.
    pub pvcs: BTreeSet<String>,
}

impl References {
    /// Whether nothing is referenced.
    pub fn is_empty(&self) -> bool {
        self.config_maps.is_empty() && self.secrets.is_empty() && self.pvcs.is_empty()
    }

    /// Add everything `other` references.
    pub fn extend(&mut self, other: References) {
        self.config_maps.extend(other.config_maps);
        self.secrets.extend(other.secrets);
        self.pvcs.extend(other.pvcs);
    }

    // Empty names appear in optional references the API left blank; they name nothing.
    fn config_map(&mut self, name: &str) {
        if !name.is_empty() {
            self.config_maps.insert(name.to_string());
        }
    }

    fn secret(&mut self, name: &str) {
        if !name.is_empty() {
            self.secrets.insert(name.to_string());
        }
    }

    fn pvc(&mut self, name: &str) {
        if !name.is_empty() {
            self.pvcs.insert(name.to_string());
        }
    }
}

/// Host name of virtual config map `name` in virtual namespace `ns`.
pub fn host_config_map_name(ctx: &Context, ns: &str, name: &str) -> String {
    ctx.host_name(ns, name, NameRule::Dns1123Subdomain)
}

/// Host name of virtual secret `name` in virtual namespace `ns`.
pub fn host_secret_name(ctx: &Context, ns: &str, name: &str) -> String {
    ctx.host_name(ns, name, NameRule::Dns1123Subdomain)
}

/// Host name of virtual persistent volume claim `name` in virtual namespace `ns`.
pub fn host_pvc_name(ctx: &Context, ns: &str, name: &str) -> String {
    ctx.host_name(ns, name, NameRule::Dns1123Subdomain)
}

/// Every config map, secret and persistent volume claim `pod` references by name: volumes
/// (including projected sources and the volume plugins' secret references), the env and envFrom
/// of containers, init containers and ephemeral containers, image pull secrets, and the claims a
/// generic ephemeral volume clones from.
///
/// The claim a generic ephemeral volume *creates* (`{pod}-{volume}`) is not listed: the pod does
/// not reference it, the ephemeral-volume controller makes it from the pod.
pub fn pod_references(pod: &Pod) -> References {
    let mut refs = References::default();
    let Some(spec) = &pod.spec else {
        return refs;
    };
    for volume in spec.volumes.iter().flatten() {
        volume_references(volume, &mut refs);
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        env_references(
            c.env.iter().flatten(),
            c.env_from.iter().flatten(),
            &mut refs,
        );
    }
    for c in spec.ephemeral_containers.iter().flatten() {
        env_references(
            c.env.iter().flatten(),
            c.env_from.iter().flatten(),
            &mut refs,
        );
    }
    for s in spec.image_pull_secrets.iter().flatten() {
        refs.secret(&s.name);
    }
    refs
}

fn env_references<'a>(
    env: impl Iterator<Item = &'a EnvVar>,
    env_from: impl Iterator<Item = &'a EnvFromSource>,
    refs: &mut References,
) {
    for var in env {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(r) = &from.config_map_key_ref {
            refs.config_map(&r.name);
        }
        if let Some(r) = &from.secret_key_ref {
            refs.secret(&r.name);
        }
    }
    for from in env_from {
        if let Some(r) = &from.config_map_ref {
            refs.config_map(&r.name);
        }
        if let Some(r) = &from.secret_ref {
            refs.secret(&r.name);
        }
    }
}

fn volume_references(v: &Volume, refs: &mut References) {
    if let Some(s) = &v.config_map {
        refs.config_map(&s.name);
    }
    if let Some(s) = &v.secret {
        refs.secret(s.secret_name.as_deref().unwrap_or(""));
    }
    if let Some(s) = &v.persistent_volume_claim {
        refs.pvc(&s.claim_name);
    }
    for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
        projection_references(p, refs);
    }
    if let Some(s) = &v.ephemeral
        && let Some(t) = &s.volume_claim_template
    {
        claim_source_references(&t.spec, refs);
    }
    // Volume plugins that read their credentials from a secret in the pod's namespace.
    let plugin_secrets = [
        v.csi
            .as_ref()
            .and_then(|s| s.node_publish_secret_ref.as_ref()),
        v.cephfs.as_ref().and_then(|s| s.secret_ref.as_ref()),
        v.cinder.as_ref().and_then(|s| s.secret_ref.as_ref()),
        v.flex_volume.as_ref().and_then(|s| s.secret_ref.as_ref()),
        v.iscsi.as_ref().and_then(|s| s.secret_ref.as_ref()),
        v.rbd.as_ref().and_then(|s| s.secret_ref.as_ref()),
        v.scale_io.as_ref().map(|s| &s.secret_ref),
        v.storageos.as_ref().and_then(|s| s.secret_ref.as_ref()),
    ];
    for r in plugin_secrets.into_iter().flatten() {
        refs.secret(&r.name);
    }
    if let Some(s) = &v.azure_file {
        refs.secret(&s.secret_name);
    }
}

fn projection_references(p: &VolumeProjection, refs: &mut References) {
    if let Some(s) = &p.config_map {
        refs.config_map(&s.name);
    }
    if let Some(s) = &p.secret {
        refs.secret(&s.name);
    }
}

/// A generic ephemeral volume may clone an existing claim of the pod's namespace.
fn claim_source_references(spec: &PersistentVolumeClaimSpec, refs: &mut References) {
    let core = |group: &Option<String>| group.as_deref().unwrap_or("").is_empty();
    if let Some(ds) = &spec.data_source
        && ds.kind == "PersistentVolumeClaim"
        && core(&ds.api_group)
    {
        refs.pvc(&ds.name);
    }
    // A dataSourceRef with a namespace of its own names an object outside the pod's namespace;
    // it is not a reference this list can express.
    if let Some(ds) = &spec.data_source_ref
        && ds.kind == "PersistentVolumeClaim"
        && core(&ds.api_group)
        && ds.namespace.is_none()
    {
        refs.pvc(&ds.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        AzureFileVolumeSource, CSIVolumeSource, CephFSVolumeSource, CinderVolumeSource,
        ConfigMapEnvSource, ConfigMapKeySelector, ConfigMapProjection, ConfigMapVolumeSource,
        Container, EnvVarSource, EphemeralContainer, EphemeralVolumeSource, FlexVolumeSource,
        ISCSIVolumeSource, LocalObjectReference, PersistentVolumeClaimTemplate,
        PersistentVolumeClaimVolumeSource, PodSpec, ProjectedVolumeSource, RBDVolumeSource,
        ScaleIOVolumeSource, SecretEnvSource, SecretKeySelector, SecretProjection,
        SecretVolumeSource, StorageOSVolumeSource, TypedLocalObjectReference, TypedObjectReference,
    };
    use proptest::prelude::*;
    use rstest::rstest;

    /// Every place a pod can name a config map, secret or claim.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Place {
        VolumeConfigMap,
        VolumeSecret,
        VolumePvc,
        ProjectedConfigMap,
        ProjectedSecret,
        Csi,
        CephFs,
        Cinder,
        FlexVolume,
        Iscsi,
        Rbd,
        ScaleIo,
        StorageOs,
        AzureFile,
        EphemeralDataSource,
        EphemeralDataSourceRef,
        EnvConfigMap,
        EnvSecret,
        EnvFromConfigMap,
        EnvFromSecret,
        InitEnvConfigMap,
        InitEnvFromSecret,
        EphemeralEnvSecret,
        EphemeralEnvFromConfigMap,
        ImagePullSecret,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        ConfigMap,
        Secret,
        Pvc,
    }

    const PLACES: &[Place] = &[
        Place::VolumeConfigMap,
        Place::VolumeSecret,
        Place::VolumePvc,
        Place::ProjectedConfigMap,
        Place::ProjectedSecret,
        Place::Csi,
        Place::CephFs,
        Place::Cinder,
        Place::FlexVolume,
        Place::Iscsi,
        Place::Rbd,
        Place::ScaleIo,
        Place::StorageOs,
        Place::AzureFile,
        Place::EphemeralDataSource,
        Place::EphemeralDataSourceRef,
        Place::EnvConfigMap,
        Place::EnvSecret,
        Place::EnvFromConfigMap,
        Place::EnvFromSecret,
        Place::InitEnvConfigMap,
        Place::InitEnvFromSecret,
        Place::EphemeralEnvSecret,
        Place::EphemeralEnvFromConfigMap,
        Place::ImagePullSecret,
    ];

    impl Place {
        fn kind(self) -> Kind {
            use Place::*;
            match self {
                VolumeConfigMap
                | ProjectedConfigMap
                | EnvConfigMap
                | EnvFromConfigMap
                | InitEnvConfigMap
                | EphemeralEnvFromConfigMap => Kind::ConfigMap,
                VolumePvc | EphemeralDataSource | EphemeralDataSourceRef => Kind::Pvc,
                _ => Kind::Secret,
            }
        }
    }

    fn lref(name: &str) -> Option<LocalObjectReference> {
        Some(LocalObjectReference { name: name.into() })
    }

    fn volume(name: &str, f: impl FnOnce(&mut Volume)) -> Volume {
        let mut v = Volume {
            name: format!("v-{name}"),
            ..Default::default()
        };
        f(&mut v);
        v
    }

    fn claim_template(spec: PersistentVolumeClaimSpec) -> Option<EphemeralVolumeSource> {
        Some(EphemeralVolumeSource {
            volume_claim_template: Some(PersistentVolumeClaimTemplate {
                spec,
                ..Default::default()
            }),
        })
    }

    fn env_cm(name: &str) -> EnvVar {
        EnvVar {
            name: "E".into(),
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: name.into(),
                    key: "k".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn env_secret(name: &str) -> EnvVar {
        EnvVar {
            name: "E".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: name.into(),
                    key: "k".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn env_from_cm(name: &str) -> EnvFromSource {
        EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: name.into(),
                optional: None,
            }),
            ..Default::default()
        }
    }

    fn env_from_secret(name: &str) -> EnvFromSource {
        EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: name.into(),
                optional: None,
            }),
            ..Default::default()
        }
    }

    /// Put a reference to `name` at `place` in `pod`.
    fn add(pod: &mut PodSpec, place: Place, name: &str) {
        use Place::*;
        let mut vol = |f: &dyn Fn(&mut Volume)| {
            pod.volumes
                .get_or_insert_with(Vec::new)
                .push(volume(name, f));
        };
        match place {
            VolumeConfigMap => vol(&|v| {
                v.config_map = Some(ConfigMapVolumeSource {
                    name: name.into(),
                    ..Default::default()
                })
            }),
            VolumeSecret => vol(&|v| {
                v.secret = Some(SecretVolumeSource {
                    secret_name: Some(name.into()),
                    ..Default::default()
                })
            }),
            VolumePvc => vol(&|v| {
                v.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
                    claim_name: name.into(),
                    read_only: None,
                })
            }),
            ProjectedConfigMap => vol(&|v| {
                v.projected = Some(ProjectedVolumeSource {
                    sources: Some(vec![VolumeProjection {
                        config_map: Some(ConfigMapProjection {
                            name: name.into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                })
            }),
            ProjectedSecret => vol(&|v| {
                v.projected = Some(ProjectedVolumeSource {
                    sources: Some(vec![VolumeProjection {
                        secret: Some(SecretProjection {
                            name: name.into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                })
            }),
            Csi => vol(&|v| {
                v.csi = Some(CSIVolumeSource {
                    driver: "d".into(),
                    node_publish_secret_ref: lref(name),
                    ..Default::default()
                })
            }),
            CephFs => vol(&|v| {
                v.cephfs = Some(CephFSVolumeSource {
                    secret_ref: lref(name),
                    ..Default::default()
                })
            }),
            Cinder => vol(&|v| {
                v.cinder = Some(CinderVolumeSource {
                    secret_ref: lref(name),
                    ..Default::default()
                })
            }),
            FlexVolume => vol(&|v| {
                v.flex_volume = Some(FlexVolumeSource {
                    secret_ref: lref(name),
                    ..Default::default()
                })
            }),
            Iscsi => vol(&|v| {
                v.iscsi = Some(ISCSIVolumeSource {
                    secret_ref: lref(name),
                    ..Default::default()
                })
            }),
            Rbd => vol(&|v| {
                v.rbd = Some(RBDVolumeSource {
                    secret_ref: lref(name),
                    ..Default::default()
                })
            }),
            ScaleIo => vol(&|v| {
                v.scale_io = Some(ScaleIOVolumeSource {
                    secret_ref: LocalObjectReference { name: name.into() },
                    ..Default::default()
                })
            }),
            StorageOs => vol(&|v| {
                v.storageos = Some(StorageOSVolumeSource {
                    secret_ref: lref(name),
                    ..Default::default()
                })
            }),
            AzureFile => vol(&|v| {
                v.azure_file = Some(AzureFileVolumeSource {
                    secret_name: name.into(),
                    share_name: "s".into(),
                    read_only: None,
                })
            }),
            EphemeralDataSource => vol(&|v| {
                v.ephemeral = claim_template(PersistentVolumeClaimSpec {
                    data_source: Some(TypedLocalObjectReference {
                        api_group: None,
                        kind: "PersistentVolumeClaim".into(),
                        name: name.into(),
                    }),
                    ..Default::default()
                })
            }),
            EphemeralDataSourceRef => vol(&|v| {
                v.ephemeral = claim_template(PersistentVolumeClaimSpec {
                    data_source_ref: Some(TypedObjectReference {
                        api_group: Some(String::new()),
                        kind: "PersistentVolumeClaim".into(),
                        name: name.into(),
                        namespace: None,
                    }),
                    ..Default::default()
                })
            }),
            EnvConfigMap => main(pod)
                .env
                .get_or_insert_with(Vec::new)
                .push(env_cm(name)),
            EnvSecret => main(pod)
                .env
                .get_or_insert_with(Vec::new)
                .push(env_secret(name)),
            EnvFromConfigMap => main(pod)
                .env_from
                .get_or_insert_with(Vec::new)
                .push(env_from_cm(name)),
            EnvFromSecret => main(pod)
                .env_from
                .get_or_insert_with(Vec::new)
                .push(env_from_secret(name)),
            InitEnvConfigMap => init(pod)
                .env
                .get_or_insert_with(Vec::new)
                .push(env_cm(name)),
            InitEnvFromSecret => init(pod)
                .env_from
                .get_or_insert_with(Vec::new)
                .push(env_from_secret(name)),
            EphemeralEnvSecret => debug(pod)
                .env
                .get_or_insert_with(Vec::new)
                .push(env_secret(name)),
            EphemeralEnvFromConfigMap => debug(pod)
                .env_from
                .get_or_insert_with(Vec::new)
                .push(env_from_cm(name)),
            ImagePullSecret => pod
                .image_pull_secrets
                .get_or_insert_with(Vec::new)
                .push(LocalObjectReference { name: name.into() }),
        }
    }

    // The env places reuse one container each, so several references share a container.
    fn main(pod: &mut PodSpec) -> &mut Container {
        if pod.containers.is_empty() {
            pod.containers.push(Container {
                name: "main".into(),
                ..Default::default()
            });
        }
        &mut pod.containers[0]
    }

    fn init(pod: &mut PodSpec) -> &mut Container {
        let v = pod.init_containers.get_or_insert_with(Vec::new);
        if v.is_empty() {
            v.push(Container {
                name: "init".into(),
                ..Default::default()
            });
        }
        &mut v[0]
    }

    fn debug(pod: &mut PodSpec) -> &mut EphemeralContainer {
        let v = pod.ephemeral_containers.get_or_insert_with(Vec::new);
        if v.is_empty() {
            v.push(EphemeralContainer {
                name: "debug".into(),
                ..Default::default()
            });
        }
        &mut v[0]
    }

    fn pod_with(refs: &[(Place, String)]) -> Pod {
        let mut spec = PodSpec::default();
        for (place, name) in refs {
            add(&mut spec, *place, name);
        }
        Pod {
            spec: Some(spec),
            ..Default::default()
        }
    }

    fn expected(refs: &[(Place, String)]) -> References {
        let mut want = References::default();
        for (place, name) in refs {
            let set = match place.kind() {
                Kind::ConfigMap => &mut want.config_maps,
                Kind::Secret => &mut want.secrets,
                Kind::Pvc => &mut want.pvcs,
            };
            set.insert(name.clone());
        }
        want
    }

    #[rstest]
    #[case::volume_config_map(Place::VolumeConfigMap)]
    #[case::volume_secret(Place::VolumeSecret)]
    #[case::volume_pvc(Place::VolumePvc)]
    #[case::projected_config_map(Place::ProjectedConfigMap)]
    #[case::projected_secret(Place::ProjectedSecret)]
    #[case::csi(Place::Csi)]
    #[case::cephfs(Place::CephFs)]
    #[case::cinder(Place::Cinder)]
    #[case::flex_volume(Place::FlexVolume)]
    #[case::iscsi(Place::Iscsi)]
    #[case::rbd(Place::Rbd)]
    #[case::scale_io(Place::ScaleIo)]
    #[case::storageos(Place::StorageOs)]
    #[case::azure_file(Place::AzureFile)]
    #[case::ephemeral_data_source(Place::EphemeralDataSource)]
    #[case::ephemeral_data_source_ref(Place::EphemeralDataSourceRef)]
    #[case::env_config_map(Place::EnvConfigMap)]
    #[case::env_secret(Place::EnvSecret)]
    #[case::env_from_config_map(Place::EnvFromConfigMap)]
    #[case::env_from_secret(Place::EnvFromSecret)]
    #[case::init_env_config_map(Place::InitEnvConfigMap)]
    #[case::init_env_from_secret(Place::InitEnvFromSecret)]
    #[case::ephemeral_env_secret(Place::EphemeralEnvSecret)]
    #[case::ephemeral_env_from_config_map(Place::EphemeralEnvFromConfigMap)]
    #[case::image_pull_secret(Place::ImagePullSecret)]
    fn each_place_is_found(#[case] place: Place) {
        let refs = [(place, "obj".to_string())];
        assert_eq!(pod_references(&pod_with(&refs)), expected(&refs));
    }

    #[rstest]
    #[case::no_spec(Pod::default())]
    #[case::empty_names(pod_with(&[
        (Place::VolumeSecret, String::new()),
        (Place::EnvFromConfigMap, String::new()),
        (Place::ImagePullSecret, String::new()),
    ]))]
    fn nothing_is_referenced(#[case] pod: Pod) {
        assert!(pod_references(&pod).is_empty());
    }

    #[rstest]
    #[case::snapshot_source(Some("snapshot.storage.k8s.io"), "VolumeSnapshot", None)]
    #[case::other_namespace(None, "PersistentVolumeClaim", Some("elsewhere"))]
    fn claim_sources_outside_the_namespace_are_not_claims(
        #[case] group: Option<&str>,
        #[case] kind: &str,
        #[case] namespace: Option<&str>,
    ) {
        let mut spec = PodSpec::default();
        add(&mut spec, Place::EphemeralDataSourceRef, "x");
        let vols = spec.volumes.as_mut().expect("volume added above");
        let ds = vols[0]
            .ephemeral
            .as_mut()
            .and_then(|e| e.volume_claim_template.as_mut())
            .and_then(|t| t.spec.data_source_ref.as_mut())
            .expect("data source ref added above");
        ds.api_group = group.map(Into::into);
        ds.kind = kind.into();
        ds.namespace = namespace.map(Into::into);
        let pod = Pod {
            spec: Some(spec),
            ..Default::default()
        };
        assert!(pod_references(&pod).is_empty());
    }

    #[test]
    fn host_names_use_the_subdomain_rule() {
        let ctx = Context {
            tenant: "acme".into(),
            host_namespace: "tenant-acme".into(),
        };
        assert_eq!(
            host_config_map_name(&ctx, "default", "cfg"),
            "cfg-default-acme-3-7"
        );
        assert_eq!(
            host_secret_name(&ctx, "default", "a.b"),
            "a.b-default-acme-3-7"
        );
        assert_eq!(
            host_pvc_name(&ctx, "default", "data"),
            "data-default-acme-4-7"
        );
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9]{0,3}"
    }

    proptest! {
        /// A pod referencing N objects from any mix of places yields exactly those N objects.
        #[test]
        fn finds_exactly_what_is_referenced(
            refs in prop::collection::vec((prop::sample::select(PLACES), name()), 0..40),
        ) {
            prop_assert_eq!(pod_references(&pod_with(&refs)), expected(&refs));
        }
    }

    #[test]
    fn all_places_at_once() {
        let refs: Vec<(Place, String)> = PLACES
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, format!("o{i}")))
            .collect();
        let got = pod_references(&pod_with(&refs));
        assert_eq!(got, expected(&refs));
        assert_eq!(
            got.config_maps.len() + got.secrets.len() + got.pvcs.len(),
            PLACES.len()
        );
    }
}
