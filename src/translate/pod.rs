//! Virtual pod -> host pod.
//!
//! The host pod runs the tenant's containers, but nothing that names the host may leak through
//! and nothing tenant-controlled may reach host credentials:
//! * every configmap / secret / PVC reference points at the host copy vcsync syncs;
//! * the pod runs as the configured workload ServiceAccount with no automounted token; projected
//!   service-account tokens come from a Secret vcsync fills with tokens minted by the *virtual*
//!   API ([`token_sources`] says which);
//! * downward-API fields resolve to the virtual values (name, namespace, uid, labels,
//!   annotations, service account), read from marker annotations;
//! * `KUBERNETES_SERVICE_*` env vars and `hostAliases` point at the tenant API service, and
//!   ClusterFirst DNS at the tenant's DNS with the virtual search path;
//! * the tenant's `nodeName` is dropped: the host schedules, and vcsync binds the virtual pod to
//!   whatever node the host chose.
//!
//! After creation only what Kubernetes lets change on a pod is updated ([`host_pod_patch`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, EnvVar, EphemeralContainer, HostAlias, KeyToPath,
    ObjectFieldSelector, PersistentVolumeClaimVolumeSource, Pod, PodDNSConfig, PodDNSConfigOption,
    PodSpec, SecretProjection, Volume,
};

use super::{Context, NameRule, TranslateError};
use crate::cache::{ContainerImage, HostPod};
use crate::markers;

/// Facts about the tenant's environment in the host namespace that pod translation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEnv {
    /// Host ServiceAccount every tenant pod runs as (no permissions, no token).
    pub workload_service_account: String,
    /// ClusterIP of the tenant API service in the host namespace, once known.
    pub api_service_ip: Option<String>,
    /// Port of the tenant API service.
    pub api_service_port: u16,
    /// ClusterIP of the tenant's DNS service, once known.
    pub dns_ip: Option<String>,
    /// Cluster domain of the virtual cluster (`cluster.local`).
    pub cluster_domain: String,
}

/// One projected service-account token the host pod needs: the key in the token Secret and what
/// to request from the virtual API's TokenRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSource {
    /// Key in the token Secret.
    pub key: String,
    /// Requested audience (`None`: the virtual API's default).
    pub audience: Option<String>,
    /// Requested lifetime.
    pub expiration_seconds: i64,
}

/// Default lifetime of a projected token (kube-apiserver's default for projections).
const DEFAULT_TOKEN_SECONDS: i64 = 3600;

/// Name of the host Secret holding a pod's projected tokens (and the virtual CA): derived from
/// the host pod's name, distinct from every synced secret name (those end in a decimal length
/// or an `x`-hash token, this one in `sa-token` or an `xt`-hash token).
pub fn token_secret_name(host_pod_name: &str) -> String {
    let readable = format!("{host_pod_name}-sa-token");
    if readable.len() <= 253 {
        return readable;
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("vcsync/v1/token\0{host_pod_name}").as_bytes());
    let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    let suffix = format!("-xt{hex}");
    let prefix = host_pod_name[..253 - suffix.len()].trim_end_matches(['-', '.']);
    format!("{prefix}{suffix}")
}

/// The projected service-account tokens of a pod, in volume order.
pub fn token_sources(pod: &Pod) -> Vec<TokenSource> {
    let mut out = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(t) = &src.service_account_token {
                out.push(TokenSource {
                    key: format!("token-{}", out.len()),
                    audience: t.audience.clone().filter(|a| !a.is_empty()),
                    expiration_seconds: t.expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS),
                });
            }
        }
    }
    out
}

/// Quote like Go's `%q` for the downward-API file format (`key="value"` lines).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A map in the downward-API file format, as the kubelet writes `metadata.labels`.
fn downward_format(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Rewrite a downward-API field path so it reads the virtual value.
fn virtual_field_path(path: &str) -> String {
    let anno = |k: &str| format!("metadata.annotations['{k}']");
    match path {
        "metadata.name" => anno(markers::VIRTUAL_NAME),
        "metadata.namespace" => anno(markers::VIRTUAL_NAMESPACE),
        "metadata.uid" => anno(markers::VIRTUAL_UID),
        "metadata.labels" => anno(markers::VIRTUAL_LABELS),
        "metadata.annotations" => anno(markers::VIRTUAL_ANNOTATIONS),
        "spec.serviceAccountName" => anno(markers::VIRTUAL_SERVICE_ACCOUNT),
        // metadata.labels['k'] / annotations['k'] are copied verbatim; status.podIP, hostIP and
        // spec.nodeName are the same on both sides.
        other => other.to_string(),
    }
}

fn rewrite_field_ref(f: &mut Option<ObjectFieldSelector>) {
    if let Some(f) = f {
        f.field_path = virtual_field_path(&f.field_path);
    }
}

/// The translation of one pod, carrying what the references resolve to.
struct Translator<'a> {
    ctx: &'a Context,
    ns: &'a str,
    /// The virtual pod's name (generic ephemeral volumes' claims are named after it).
    pod: &'a str,
    token_secret: String,
}

impl Translator<'_> {
    fn secret(&self, name: &str) -> String {
        self.ctx
            .host_name(self.ns, name, NameRule::Dns1123Subdomain)
    }
    fn config_map(&self, name: &str) -> String {
        self.ctx
            .host_name(self.ns, name, NameRule::Dns1123Subdomain)
    }
    fn pvc(&self, name: &str) -> String {
        self.ctx
            .host_name(self.ns, name, NameRule::Dns1123Subdomain)
    }

    fn env(
        &self,
        env: &mut Option<Vec<EnvVar>>,
        env_from: &mut Option<Vec<EnvFromSource>>,
        api_env: &[EnvVar],
    ) {
        for e in env.iter_mut().flatten() {
            if let Some(src) = &mut e.value_from {
                if let Some(r) = &mut src.config_map_key_ref {
                    r.name = self.config_map(&r.name);
                }
                if let Some(r) = &mut src.secret_key_ref {
                    r.name = self.secret(&r.name);
                }
                rewrite_field_ref(&mut src.field_ref);
            }
        }
        for e in env_from.iter_mut().flatten() {
            if let Some(r) = &mut e.config_map_ref {
                r.name = self.config_map(&r.name);
            }
            if let Some(r) = &mut e.secret_ref {
                r.name = self.secret(&r.name);
            }
        }
        if !api_env.is_empty() {
            // Ours first: a tenant-defined variable of the same name later in the list wins.
            let mut all = api_env.to_vec();
            all.extend(env.take().unwrap_or_default());
            *env = Some(all);
        }
    }

    fn container(&self, c: &mut Container, api_env: &[EnvVar]) {
        self.env(&mut c.env, &mut c.env_from, api_env);
    }

    fn ephemeral(&self, c: &mut EphemeralContainer, api_env: &[EnvVar]) {
        self.env(&mut c.env, &mut c.env_from, api_env);
    }

    fn volume(&self, v: &mut Volume, next_token: &mut usize, errs: &mut Vec<TranslateError>) {
        // Volume plugins read credentials from a secret of the pod's namespace: on the host that
        // must be the tenant's synced copy, never a host secret of the same name.
        let plugin_secrets = [
            v.csi
                .as_mut()
                .and_then(|s| s.node_publish_secret_ref.as_mut()),
            v.cephfs.as_mut().and_then(|s| s.secret_ref.as_mut()),
            v.cinder.as_mut().and_then(|s| s.secret_ref.as_mut()),
            v.flex_volume.as_mut().and_then(|s| s.secret_ref.as_mut()),
            v.iscsi.as_mut().and_then(|s| s.secret_ref.as_mut()),
            v.rbd.as_mut().and_then(|s| s.secret_ref.as_mut()),
            v.scale_io.as_mut().map(|s| &mut s.secret_ref),
            v.storageos.as_mut().and_then(|s| s.secret_ref.as_mut()),
        ];
        for r in plugin_secrets.into_iter().flatten() {
            r.name = self.secret(&r.name);
        }
        if let Some(s) = &mut v.azure_file {
            s.secret_name = self.secret(&s.secret_name);
        }
        if let Some(t) = v
            .ephemeral
            .as_mut()
            .and_then(|e| e.volume_claim_template.as_mut())
        {
            let spec = &mut t.spec;
            // A generic ephemeral volume may clone a claim; anything else it could name (a
            // snapshot, a claim of another namespace) would be a host object.
            let field = format!(
                "spec.volumes[{}].ephemeral.volumeClaimTemplate.spec",
                v.name
            );
            let is_claim = |kind: &str, group: &Option<String>| {
                kind == "PersistentVolumeClaim" && group.as_deref().unwrap_or("").is_empty()
            };
            if let Some(ds) = &mut spec.data_source {
                if is_claim(&ds.kind, &ds.api_group) {
                    ds.name = self.pvc(&ds.name);
                } else {
                    errs.push(TranslateError::Unsupported {
                        field: format!("{field}.dataSource"),
                        reason: "only a PersistentVolumeClaim of the same namespace can be cloned",
                    });
                }
            }
            if let Some(ds) = &mut spec.data_source_ref {
                if is_claim(&ds.kind, &ds.api_group) && ds.namespace.is_none() {
                    ds.name = self.pvc(&ds.name);
                } else {
                    errs.push(TranslateError::Unsupported {
                        field: format!("{field}.dataSourceRef"),
                        reason: "only a PersistentVolumeClaim of the same namespace can be cloned",
                    });
                }
            }
        }
        if v.ephemeral.is_some() {
            // The virtual control plane's ephemeral-volume controller creates the claim
            // `{pod}-{volume}` and vcsync syncs it like any claim; the host pod mounts that copy.
            // Passing the template down would make the host's controller create a second one.
            v.ephemeral = None;
            v.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
                claim_name: self.pvc(&format!("{}-{}", self.pod, v.name)),
                read_only: None,
            });
            return;
        }
        if let Some(cm) = &mut v.config_map {
            cm.name = self.config_map(&cm.name);
        }
        if let Some(s) = &mut v.secret
            && let Some(n) = &mut s.secret_name
        {
            *n = self.secret(n);
        }
        if let Some(p) = &mut v.persistent_volume_claim {
            p.claim_name = self.pvc(&p.claim_name);
        }
        if let Some(d) = &mut v.downward_api {
            for item in d.items.iter_mut().flatten() {
                rewrite_field_ref(&mut item.field_ref);
            }
        }
        if let Some(p) = &mut v.projected {
            for src in p.sources.iter_mut().flatten() {
                if let Some(cm) = &mut src.config_map {
                    cm.name = self.config_map(&cm.name);
                }
                if let Some(s) = &mut src.secret {
                    s.name = self.secret(&s.name);
                }
                if let Some(d) = &mut src.downward_api {
                    for item in d.items.iter_mut().flatten() {
                        rewrite_field_ref(&mut item.field_ref);
                    }
                }
                if let Some(t) = src.service_account_token.take() {
                    // The token comes from the Secret vcsync keeps filled from the virtual API.
                    src.secret = Some(SecretProjection {
                        name: self.token_secret.clone(),
                        items: Some(vec![KeyToPath {
                            key: format!("token-{next_token}"),
                            path: t.path,
                            ..KeyToPath::default()
                        }]),
                        optional: Some(false),
                    });
                    *next_token += 1;
                }
            }
        }
    }
}

/// Environment variables that point tenant pods at the tenant API service.
fn api_env(env: &PodEnv) -> Vec<EnvVar> {
    let Some(ip) = &env.api_service_ip else {
        return Vec::new();
    };
    let port = env.api_service_port.to_string();
    let var = |name: &str, value: String| EnvVar {
        name: name.to_string(),
        value: Some(value),
        value_from: None,
    };
    vec![
        var("KUBERNETES_SERVICE_HOST", ip.clone()),
        var("KUBERNETES_SERVICE_PORT", port.clone()),
        var("KUBERNETES_SERVICE_PORT_HTTPS", port.clone()),
        var("KUBERNETES_PORT", format!("tcp://{ip}:{port}")),
        var(
            &format!("KUBERNETES_PORT_{port}_TCP"),
            format!("tcp://{ip}:{port}"),
        ),
        var(&format!("KUBERNETES_PORT_{port}_TCP_PROTO"), "tcp".into()),
        var(&format!("KUBERNETES_PORT_{port}_TCP_PORT"), port.clone()),
        var(&format!("KUBERNETES_PORT_{port}_TCP_ADDR"), ip.clone()),
    ]
}

/// The hostname the kubelet would give the virtual pod: its name cut to 63 characters, if that
/// is a DNS label.
fn default_hostname(name: &str) -> Option<String> {
    let cut = name
        .get(..name.len().min(63))
        .unwrap_or(name)
        .trim_end_matches(['-', '.']);
    let ok = !cut.is_empty()
        && cut
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ok.then(|| cut.to_string())
}

/// Translate a virtual pod into the host pod vcsync creates.
pub fn host_pod(ctx: &Context, env: &PodEnv, pod: &Pod) -> Result<Pod, Vec<TranslateError>> {
    let mut meta = ctx.host_meta("Pod", &pod.metadata, NameRule::Dns1123Subdomain)?;
    let Some(spec) = &pod.spec else {
        return Err(vec![TranslateError::Missing {
            field: "spec".into(),
        }]);
    };
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let vname = pod.metadata.name.as_deref().unwrap_or("");
    let host_name = meta.name.clone().unwrap_or_default();
    let virtual_sa = spec
        .service_account_name
        .clone()
        .or_else(|| spec.service_account.clone())
        .unwrap_or_else(|| "default".into());

    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(
        markers::VIRTUAL_LABELS.into(),
        downward_format(pod.metadata.labels.as_ref()),
    );
    annotations.insert(
        markers::VIRTUAL_ANNOTATIONS.into(),
        downward_format(pod.metadata.annotations.as_ref()),
    );
    annotations.insert(markers::VIRTUAL_SERVICE_ACCOUNT.into(), virtual_sa);
    let record = markers::KeySet::record(
        meta.labels.as_ref().unwrap_or(&BTreeMap::new()),
        annotations,
    );
    annotations.insert(markers::OWNED_KEYS.into(), record);

    let tr = Translator {
        ctx,
        ns,
        pod: pod.metadata.name.as_deref().unwrap_or(""),
        token_secret: token_secret_name(&host_name),
    };
    let api = api_env(env);
    let mut s: PodSpec = spec.clone();

    let mut next_token = 0;
    let mut errs = Vec::new();
    for v in s.volumes.iter_mut().flatten() {
        tr.volume(v, &mut next_token, &mut errs);
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    for c in &mut s.containers {
        tr.container(c, &api);
    }
    for c in s.init_containers.iter_mut().flatten() {
        tr.container(c, &api);
    }
    for c in s.ephemeral_containers.iter_mut().flatten() {
        tr.ephemeral(c, &api);
    }
    for r in s.image_pull_secrets.iter_mut().flatten() {
        r.name = tr.secret(&r.name);
    }

    // Identity: the workload ServiceAccount, never a token of the host.
    s.service_account_name = Some(env.workload_service_account.clone());
    s.service_account = Some(env.workload_service_account.clone());
    s.automount_service_account_token = Some(false);
    // The host schedules; the host's own admission sets priority and preemption from the class.
    s.node_name = None;
    s.scheduler_name = None;
    s.priority = None;
    s.preemption_policy = None;
    // Service links would expose the host namespace's services (other tenants' among them).
    s.enable_service_links = Some(false);

    if s.hostname.is_none() {
        s.hostname = default_hostname(vname);
    }
    if let Some(sub) = &s.subdomain {
        s.subdomain = Some(ctx.host_name(ns, sub, NameRule::Dns1035Label));
    }

    if let Some(ip) = &env.api_service_ip {
        let domain = &env.cluster_domain;
        let mut aliases = vec![HostAlias {
            ip: ip.clone(),
            hostnames: Some(vec![
                "kubernetes".into(),
                "kubernetes.default".into(),
                "kubernetes.default.svc".into(),
                format!("kubernetes.default.svc.{domain}"),
            ]),
        }];
        aliases.extend(s.host_aliases.take().unwrap_or_default());
        s.host_aliases = Some(aliases);
    }

    let policy = s
        .dns_policy
        .clone()
        .unwrap_or_else(|| "ClusterFirst".into());
    if matches!(policy.as_str(), "ClusterFirst" | "ClusterFirstWithHostNet")
        && let Some(dns) = &env.dns_ip
    {
        let domain = &env.cluster_domain;
        let tenant = s.dns_config.take().unwrap_or_default();
        let mut searches = vec![
            format!("{ns}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.clone(),
        ];
        searches.extend(tenant.searches.unwrap_or_default());
        let mut options = vec![PodDNSConfigOption {
            name: Some("ndots".into()),
            value: Some("5".into()),
        }];
        for o in tenant.options.unwrap_or_default() {
            options.retain(|x| x.name != o.name);
            options.push(o);
        }
        let mut nameservers = vec![dns.clone()];
        nameservers.extend(tenant.nameservers.unwrap_or_default());
        s.dns_policy = Some("None".into());
        s.dns_config = Some(PodDNSConfig {
            nameservers: Some(nameservers),
            options: Some(options),
            searches: Some(searches),
        });
    }

    Ok(Pod {
        metadata: meta,
        spec: Some(s),
        status: None,
    })
}

/// The update that brings an existing host pod (as cached: [`HostPod`]) in step with
/// `desired`, touching only what Kubernetes lets change after creation: labels and annotations
/// (vcsync's keys; keys the host's own controllers added are left alone), container and
/// init-container images, activeDeadlineSeconds, and tolerations (additions only).
///
/// Returns a strategic merge patch, or `None` when nothing needs writing. The patch names the
/// cached resourceVersion, so it applies only to the pod it was computed from (409 otherwise, as
/// an update would), and containers merge by name, so nothing vcsync does not own is sent.
pub fn host_pod_patch(actual: &HostPod, desired: &Pod) -> Option<serde_json::Value> {
    use serde_json::{Map, Value, json};
    let mut patch = Map::new();

    let mut meta = actual.metadata.clone();
    super::merge_owned_meta(&mut meta, &desired.metadata);
    let mut meta_patch = Map::new();
    for (field, before, after) in [
        ("labels", &actual.metadata.labels, &meta.labels),
        (
            "annotations",
            &actual.metadata.annotations,
            &meta.annotations,
        ),
    ] {
        let diff = map_diff(before.as_ref(), after.as_ref());
        if !diff.is_empty() {
            meta_patch.insert(field.into(), Value::Object(diff));
        }
    }

    let mut spec_patch = Map::new();
    if let (Some(a), Some(d)) = (actual.spec.as_ref(), desired.spec.as_ref()) {
        let images = |actual: &[ContainerImage],
                      desired: &[k8s_openapi::api::core::v1::Container]| {
            actual
                .iter()
                .zip(desired)
                .filter(|(a, d)| a.name == d.name && d.image.is_some() && a.image != d.image)
                .map(|(_, d)| json!({"name": d.name, "image": d.image}))
                .collect::<Vec<_>>()
        };
        let changed = images(&a.containers, &d.containers);
        if !changed.is_empty() {
            spec_patch.insert("containers".into(), Value::Array(changed));
        }
        let changed = images(
            a.init_containers.as_deref().unwrap_or_default(),
            d.init_containers.as_deref().unwrap_or_default(),
        );
        if !changed.is_empty() {
            spec_patch.insert("initContainers".into(), Value::Array(changed));
        }
        if d.active_deadline_seconds.is_some()
            && d.active_deadline_seconds != a.active_deadline_seconds
        {
            spec_patch.insert(
                "activeDeadlineSeconds".into(),
                json!(d.active_deadline_seconds),
            );
        }
        let mut tolerations = a.tolerations.clone().unwrap_or_default();
        let before = tolerations.len();
        for t in d.tolerations.iter().flatten() {
            if !tolerations.contains(t) {
                tolerations.push(t.clone());
            }
        }
        // Tolerations are replaced as a whole (the list has no merge key): send them all.
        if tolerations.len() != before {
            spec_patch.insert("tolerations".into(), json!(tolerations));
        }
    }

    if meta_patch.is_empty() && spec_patch.is_empty() {
        return None;
    }
    if let Some(rv) = &actual.metadata.resource_version {
        meta_patch.insert("resourceVersion".into(), json!(rv));
    }
    patch.insert("metadata".into(), Value::Object(meta_patch));
    if !spec_patch.is_empty() {
        patch.insert("spec".into(), Value::Object(spec_patch));
    }
    Some(Value::Object(patch))
}

/// The merge-patch form of the change from `before` to `after`: changed keys with their new
/// value, removed keys as `null`.
fn map_diff(
    before: Option<&BTreeMap<String, String>>,
    after: Option<&BTreeMap<String, String>>,
) -> serde_json::Map<String, serde_json::Value> {
    let empty = BTreeMap::new();
    let (before, after) = (before.unwrap_or(&empty), after.unwrap_or(&empty));
    let mut out = serde_json::Map::new();
    for (k, v) in after {
        if before.get(k) != Some(v) {
            out.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
    }
    for k in before.keys() {
        if !after.contains_key(k) {
            out.insert(k.clone(), serde_json::Value::Null);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::translate::test_ctx as ctx;

    fn env() -> PodEnv {
        PodEnv {
            workload_service_account: "vcsync-workload".into(),
            api_service_ip: Some("10.96.0.10".into()),
            api_service_port: 443,
            dns_ip: Some("10.96.0.53".into()),
            cluster_domain: "cluster.local".into(),
        }
    }

    /// A virtual pod as the virtual API stores it after ServiceAccount admission.
    fn mk_pod(ns: &str, name: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "uid": "u-1", "labels": {"app": "web"}, "annotations": {"note": "n"}},
            "spec": {
                "nodeName": "tenant-picked-node",
                "serviceAccountName": "builder",
                "priority": 0,
                "volumes": [
                    {"name": "cfg", "configMap": {"name": "app-config"}},
                    {"name": "creds", "secret": {"secretName": "db-creds"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"name": "kube-api-access-abcde", "projected": {"sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                    ]}},
                    {"name": "vault", "projected": {"sources": [{"serviceAccountToken": {"audience": "vault", "path": "vault-token"}}]}}
                ],
                "containers": [{
                    "name": "app", "image": "nginx:1.27",
                    "env": [
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db-creds", "key": "password"}}},
                        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "mode"}}}
                    ],
                    "envFrom": [{"configMapRef": {"name": "app-env"}}, {"secretRef": {"name": "app-secret-env"}}]
                }],
                "initContainers": [{"name": "init", "image": "busybox", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
                "imagePullSecrets": [{"name": "registry"}]
            }
        }))
        .expect("valid pod")
    }

    #[test]
    fn host_pod_snapshot() {
        let host = host_pod(&ctx(), &env(), &mk_pod("default", "web")).expect("translates");
        insta::assert_yaml_snapshot!(host);
    }

    #[test]
    fn every_reference_points_at_host_copies() {
        let host = host_pod(&ctx(), &env(), &mk_pod("default", "web")).unwrap();
        let s = host.spec.unwrap();
        let vols: BTreeMap<_, _> = s
            .volumes
            .unwrap()
            .into_iter()
            .map(|v| (v.name.clone(), v))
            .collect();
        assert_eq!(
            vols["cfg"].config_map.as_ref().unwrap().name,
            "app-config-default-acme-10-7"
        );
        assert_eq!(
            vols["creds"]
                .secret
                .as_ref()
                .unwrap()
                .secret_name
                .as_deref(),
            Some("db-creds-default-acme-8-7")
        );
        assert_eq!(
            vols["data"]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "data-default-acme-4-7"
        );
        let api = vols["kube-api-access-abcde"]
            .projected
            .as_ref()
            .unwrap()
            .sources
            .as_ref()
            .unwrap();
        let token = api[0]
            .secret
            .as_ref()
            .expect("the token comes from a secret");
        assert_eq!(token.name, "web-default-acme-3-7-sa-token");
        assert_eq!(
            token.items.as_ref().unwrap()[0],
            KeyToPath {
                key: "token-0".into(),
                path: "token".into(),
                ..KeyToPath::default()
            }
        );
        assert!(api[0].service_account_token.is_none());
        assert_eq!(
            api[1].config_map.as_ref().unwrap().name,
            "kube-root-ca.crt-default-acme-16-7"
        );
        assert_eq!(
            api[2]
                .downward_api
                .as_ref()
                .unwrap()
                .items
                .as_ref()
                .unwrap()[0]
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.annotations['vcsync.io/namespace']"
        );
        let vault = vols["vault"]
            .projected
            .as_ref()
            .unwrap()
            .sources
            .as_ref()
            .unwrap()[0]
            .secret
            .as_ref()
            .unwrap();
        assert_eq!(vault.items.as_ref().unwrap()[0].key, "token-1");
        assert_eq!(
            s.image_pull_secrets.unwrap()[0].name,
            "registry-default-acme-8-7"
        );
        assert_eq!(s.service_account_name.as_deref(), Some("vcsync-workload"));
        assert_eq!(s.automount_service_account_token, Some(false));
        assert_eq!(s.node_name, None);
        assert_eq!(s.hostname.as_deref(), Some("web"));
    }

    #[test]
    fn plugin_secrets_and_clone_sources_point_at_host_copies() {
        let mut p = mk_pod("default", "web");
        let vols = p.spec.as_mut().unwrap().volumes.as_mut().unwrap();
        vols.push(serde_json::from_value(json!({"name": "csi", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "host-secret"}}})).unwrap());
        vols.push(
            serde_json::from_value(
                json!({"name": "az", "azureFile": {"secretName": "az", "shareName": "s"}}),
            )
            .unwrap(),
        );
        vols.push(serde_json::from_value(json!({"name": "eph", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"], "dataSource": {"kind": "PersistentVolumeClaim", "name": "src"}}}}})).unwrap());
        let host = host_pod(&ctx(), &env(), &p).unwrap();
        let vols: BTreeMap<_, _> = host
            .spec
            .unwrap()
            .volumes
            .unwrap()
            .into_iter()
            .map(|v| (v.name.clone(), v))
            .collect();
        assert_eq!(
            vols["csi"]
                .csi
                .as_ref()
                .unwrap()
                .node_publish_secret_ref
                .as_ref()
                .unwrap()
                .name,
            "host-secret-default-acme-11-7"
        );
        assert_eq!(
            vols["az"].azure_file.as_ref().unwrap().secret_name,
            "az-default-acme-2-7"
        );
        // The generic ephemeral volume mounts the synced copy of the claim the virtual control
        // plane made for it (`web-eph`), so the host makes no second claim.
        assert!(vols["eph"].ephemeral.is_none());
        assert_eq!(
            vols["eph"]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "web-eph-default-acme-7-7"
        );

        let mut snap = mk_pod("default", "web");
        snap.spec.as_mut().unwrap().volumes.as_mut().unwrap().push(serde_json::from_value(json!({"name": "eph", "ephemeral": {"volumeClaimTemplate": {"spec": {"dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "host-snap"}}}}})).unwrap());
        let errs = host_pod(&ctx(), &env(), &snap).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().contains("dataSource"), "{}", errs[0]);
    }

    #[test]
    fn downward_api_resolves_to_virtual_values() {
        let host = host_pod(&ctx(), &env(), &mk_pod("default", "web")).unwrap();
        let a = host.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[markers::VIRTUAL_NAME], "web");
        assert_eq!(a[markers::VIRTUAL_LABELS], "app=\"web\"");
        assert_eq!(a[markers::VIRTUAL_SERVICE_ACCOUNT], "builder");
        let env = host.spec.unwrap().containers[0].env.clone().unwrap();
        let pod_name = env.iter().find(|e| e.name == "POD_NAME").unwrap();
        assert_eq!(
            pod_name
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.annotations['vcsync.io/name']"
        );
        assert_eq!(env[0].name, "KUBERNETES_SERVICE_HOST");
        assert_eq!(env[0].value.as_deref(), Some("10.96.0.10"));
    }

    #[test]
    fn cluster_first_dns_uses_the_tenant_dns_and_virtual_search_path() {
        let s = host_pod(&ctx(), &env(), &mk_pod("shop", "web"))
            .unwrap()
            .spec
            .unwrap();
        assert_eq!(s.dns_policy.as_deref(), Some("None"));
        let dns = s.dns_config.unwrap();
        assert_eq!(dns.nameservers.unwrap(), ["10.96.0.53"]);
        assert_eq!(
            dns.searches.unwrap(),
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        let mut p = mk_pod("shop", "web");
        p.spec.as_mut().unwrap().dns_policy = Some("Default".into());
        assert_eq!(
            host_pod(&ctx(), &env(), &p)
                .unwrap()
                .spec
                .unwrap()
                .dns_policy
                .as_deref(),
            Some("Default")
        );
    }

    #[test]
    fn token_sources_match_the_secret_keys() {
        let t = token_sources(&mk_pod("default", "web"));
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[0],
            TokenSource {
                key: "token-0".into(),
                audience: None,
                expiration_seconds: 3607
            }
        );
        assert_eq!(
            t[1],
            TokenSource {
                key: "token-1".into(),
                audience: Some("vault".into()),
                expiration_seconds: 3600
            }
        );
        assert!(token_secret_name(&"a".repeat(253)).len() <= 253);
    }

    #[test]
    fn the_patch_only_touches_mutable_fields_and_keeps_host_keys() {
        let desired = host_pod(&ctx(), &env(), &mk_pod("default", "web")).unwrap();
        let mut actual = desired.clone();
        actual.metadata.resource_version = Some("42".into());
        // What the host added: an annotation of its own and default tolerations.
        actual
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("kubernetes.io/limit-ranger".into(), "x".into());
        actual.spec.as_mut().unwrap().tolerations = Some(vec![
            serde_json::from_value(
                json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists"}),
            )
            .unwrap(),
        ]);
        let actual = HostPod::from(&actual);
        assert_eq!(host_pod_patch(&actual, &desired), None, "in sync: no write");

        let mut changed = desired.clone();
        changed.spec.as_mut().unwrap().containers[0].image = Some("nginx:1.28".into());
        changed.metadata.labels.as_mut().unwrap().remove("app");
        changed.spec.as_mut().unwrap().active_deadline_seconds = Some(60);
        changed.spec.as_mut().unwrap().tolerations = Some(vec![
            serde_json::from_value(json!({"key": "gpu", "operator": "Exists"})).unwrap(),
        ]);
        let name = changed.spec.as_ref().unwrap().containers[0].name.clone();
        let patch = host_pod_patch(&actual, &changed).expect("an update");
        let mut want_annotations = serde_json::Map::new();
        // The record of vcsync's own keys changes with the labels (no longer `app`).
        for (k, v) in changed.metadata.annotations.iter().flatten() {
            if actual.metadata.annotations.as_ref().unwrap().get(k) != Some(v) {
                want_annotations.insert(k.clone(), json!(v));
            }
        }
        let mut metadata = json!({"labels": {"app": null}, "resourceVersion": "42"});
        if !want_annotations.is_empty() {
            metadata["annotations"] = serde_json::Value::Object(want_annotations);
        }
        assert_eq!(
            patch,
            json!({
                "metadata": metadata,
                "spec": {
                    "containers": [{"name": name, "image": "nginx:1.28"}],
                    "activeDeadlineSeconds": 60,
                    // The host's toleration stays; the tenant's is added.
                    "tolerations": [
                        {"key": "node.kubernetes.io/not-ready", "operator": "Exists"},
                        {"key": "gpu", "operator": "Exists"}
                    ]
                }
            })
        );
        assert!(
            patch["metadata"]
                .get("annotations")
                .is_none_or(|a| a.get("kubernetes.io/limit-ranger").is_none()),
            "host keys are never sent"
        );
    }
}
