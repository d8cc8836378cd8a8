//! Services, endpoints, ingresses, and the configmaps and secrets that pods and ingresses
//! reference: one generic downward controller ([`SyncKind`]), specialised per kind.
//!
//! Each kind says how to translate (pure, in [`crate::translate`]), which fields vcsync owns
//! on the host copy ([`SyncKind::merge`]: everything else, e.g. what host controllers default
//! or add, is left alone), whether the virtual object is wanted on the host at all (configmaps
//! and secrets only while something references them), and what flows back up (service and
//! ingress load-balancer status).

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::refs::{RefKind, Target};
use super::{
    Shared, Stop, SyncError, create_host, delete_host, drain, key_of, reasons, replace_host,
    source_ref,
};
use crate::markers::{self, Ownership};
use crate::metrics::{ApiLabel, Direction};
use crate::translate::{self, Context, NameRule, TranslateError, merge_owned_meta};

/// What the generic controller needs to know about a synced kind.
pub trait SyncKind:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Kind name in markers, logs and metrics.
    const KIND: &'static str;
    /// Naming rule of the host copy.
    const RULE: NameRule;

    /// The desired host object.
    fn translate(ctx: &Context, v: &Self) -> Result<Self, Vec<TranslateError>>;

    /// The desired host object with what the engine knows beyond the object itself (network
    /// policies read the virtual namespaces); [`SyncKind::translate`] for every other kind.
    fn translate_in(shared: &Shared, v: &Self) -> Result<Self, Vec<TranslateError>> {
        Self::translate(&shared.ctx, v)
    }

    /// Copy the fields vcsync owns from `desired` into a copy of `actual`; `None` when the host
    /// object already has them (no write).
    fn merge(actual: &Self, desired: &Self) -> Option<Self>;

    /// Whether the host copy must be replaced by a new object (an immutable field changed).
    fn needs_recreate(_actual: &Self, _desired: &Self) -> bool {
        false
    }

    /// Whether the virtual object should exist on the host now.
    fn wanted(_shared: &Shared, _v: &Self) -> impl Future<Output = Result<bool, SyncError>> + Send {
        async { Ok(true) }
    }

    /// Create the host copy (services override this to fall back when the host refuses the
    /// virtual ClusterIP).
    fn create(
        shared: &Shared,
        v: &Self,
        desired: &Self,
    ) -> impl Future<Output = Result<Self, SyncError>> + Send {
        let _ = v;
        let api: Api<Self> = shared.host_api();
        let desired = desired.clone();
        async move { create_host(&api, Self::KIND, &desired).await }
    }

    /// The isolation policy's verdict: the allowed (possibly rewritten) object, or every
    /// violated rule.
    fn check(
        _policy: &crate::policy::Policy,
        v: &Self,
    ) -> Result<Self, Vec<crate::policy::Violation>> {
        Ok(v.clone())
    }

    /// The `rule` label [`SyncKind::narrowed`] terms are counted under in
    /// `vcsync_policy_violations_total`.
    const NARROWED_RULE: &'static str = "narrowed";

    /// What the policy narrowed in `v` to allow it as `allowed` (one line per term), told to
    /// the tenant in a Warning Event whenever the host copy is written.
    fn narrowed(_v: &Self, _allowed: &Self) -> Vec<String> {
        Vec::new()
    }

    /// The policy's verdict knowing the host copy (claims accept the `volumeName` vcsync set).
    fn check_with_host(
        policy: &crate::policy::Policy,
        v: &Self,
        _host: Option<&Self>,
    ) -> Result<Self, Vec<crate::policy::Violation>> {
        Self::check(policy, v)
    }

    /// Why the host copy cannot follow the desired object (an immutable field differs and the
    /// kind is not re-created), if it cannot: reported to the tenant, never retried in a loop.
    fn immutable_change(_actual: &Self, _desired: &Self) -> Option<String> {
        None
    }

    /// Clean-up in the virtual API once the object is no longer wanted on the host (claims
    /// delete their virtual volume).
    fn on_unwanted(
        _shared: &Shared,
        _v: &Self,
    ) -> impl Future<Output = Result<(), SyncError>> + Send {
        async { Ok(()) }
    }

    /// Copy host state up to the virtual object (status).
    fn sync_up(
        _shared: &Shared,
        _v: &Self,
        _host: &Self,
    ) -> impl Future<Output = Result<(), SyncError>> + Send {
        async { Ok(()) }
    }
}

/// Whether virtual config map or secret `v` is referenced now. Waits until the reference
/// index has listed every kind that can reference it: "unreferenced" from a half-filled index
/// would delete host copies that pods still mount.
async fn is_referenced<K: SyncKind>(shared: &Shared, kind: RefKind, v: &K) -> bool {
    shared.references.wait_ready(kind).await;
    let target = Target::new(
        kind,
        v.meta().namespace.as_deref().unwrap_or(""),
        v.meta().name.as_deref().unwrap_or(""),
    );
    shared.references.is_referenced(&target)
}

/// The virtual API's own `default/kubernetes` service (and its endpoints): its ClusterIP is the
/// first of the range, which the host's own `kubernetes` service holds; tenant pods reach the
/// virtual API through `--api-service` instead.
fn is_virtual_api_service<K: SyncKind>(v: &K) -> bool {
    let svc_name = match K::KIND {
        "Service" | "Endpoints" => v.meta().name.clone(),
        "EndpointSlice" => v
            .meta()
            .labels
            .as_ref()
            .and_then(|l| l.get(translate::endpoints::SERVICE_NAME_LABEL))
            .cloned(),
        _ => None,
    };
    v.meta().namespace.as_deref() == Some("default") && svc_name.as_deref() == Some("kubernetes")
}

/// Whether `v` is one vcsync itself keeps in the virtual cluster for this tenant (the metrics
/// API's Service and Endpoints carry its managed-by label): those describe vcsync to the
/// virtual API server and are never mirrored to the host.
fn is_vcsync_virtual_object<K: SyncKind>(shared: &Shared, v: &K) -> bool {
    v.meta()
        .labels
        .as_ref()
        .and_then(|l| l.get(markers::MANAGED_BY))
        .is_some_and(|t| *t == shared.cfg.tenant)
}

// ----- ConfigMap -----

impl SyncKind for ConfigMap {
    const KIND: &'static str = "ConfigMap";
    const RULE: NameRule = NameRule::Dns1123Subdomain;

    fn translate(ctx: &Context, v: &Self) -> Result<Self, Vec<TranslateError>> {
        translate::configmap::host_config_map(ctx, v)
    }

    fn merge(actual: &Self, desired: &Self) -> Option<Self> {
        let mut out = actual.clone();
        merge_owned_meta(&mut out.metadata, &desired.metadata);
        out.data = desired.data.clone();
        out.binary_data = desired.binary_data.clone();
        out.immutable = desired.immutable;
        (out != *actual).then_some(out)
    }

    fn needs_recreate(actual: &Self, desired: &Self) -> bool {
        actual.immutable == Some(true)
            && (actual.data != desired.data
                || actual.binary_data != desired.binary_data
                || desired.immutable != Some(true))
    }

    async fn wanted(shared: &Shared, v: &Self) -> Result<bool, SyncError> {
        Ok(is_referenced(shared, RefKind::ConfigMap, v).await)
    }
}

// ----- Secret -----

impl SyncKind for Secret {
    const KIND: &'static str = "Secret";
    const RULE: NameRule = NameRule::Dns1123Subdomain;

    fn translate(ctx: &Context, v: &Self) -> Result<Self, Vec<TranslateError>> {
        translate::secret::host_secret(ctx, v)
    }

    fn merge(actual: &Self, desired: &Self) -> Option<Self> {
        let mut out = actual.clone();
        merge_owned_meta(&mut out.metadata, &desired.metadata);
        out.data = desired.data.clone();
        out.string_data = None;
        out.immutable = desired.immutable;
        (out != *actual).then_some(out)
    }

    fn needs_recreate(actual: &Self, desired: &Self) -> bool {
        // The type is immutable, and so is the content of an immutable secret.
        actual.type_ != desired.type_
            || (actual.immutable == Some(true)
                && (actual.data != desired.data || desired.immutable != Some(true)))
    }

    fn wanted(shared: &Shared, v: &Self) -> impl Future<Output = Result<bool, SyncError>> + Send {
        // Service-account token secrets are never synced as such (translation refuses them too).
        let token = v.type_.as_deref() == Some(translate::secret::SERVICE_ACCOUNT_TOKEN_TYPE);
        async move { Ok(!token && is_referenced(shared, RefKind::Secret, v).await) }
    }
}

// ----- Service -----

impl SyncKind for Service {
    const KIND: &'static str = "Service";
    const RULE: NameRule = NameRule::Dns1035Label;

    fn check(
        policy: &crate::policy::Policy,
        v: &Self,
    ) -> Result<Self, Vec<crate::policy::Violation>> {
        crate::policy::services::check_service(policy, v)
    }

    fn translate(ctx: &Context, v: &Self) -> Result<Self, Vec<TranslateError>> {
        translate::service::host_service(ctx, v)
    }

    fn merge(actual: &Self, desired: &Self) -> Option<Self> {
        let mut out = actual.clone();
        merge_owned_meta(&mut out.metadata, &desired.metadata);
        let (Some(o), Some(d)) = (out.spec.as_mut(), desired.spec.as_ref()) else {
            return (out != *actual).then_some(out);
        };
        o.selector = d.selector.clone();
        o.type_ = d.type_.clone();
        o.external_name = d.external_name.clone();
        o.external_ips = d.external_ips.clone();
        o.session_affinity = d.session_affinity.clone().or(o.session_affinity.take());
        o.session_affinity_config = d.session_affinity_config.clone();
        o.publish_not_ready_addresses = d.publish_not_ready_addresses;
        o.load_balancer_source_ranges = d.load_balancer_source_ranges.clone();
        o.load_balancer_class = d.load_balancer_class.clone();
        if d.external_traffic_policy.is_some() {
            o.external_traffic_policy = d.external_traffic_policy.clone();
        }
        if d.internal_traffic_policy.is_some() {
            o.internal_traffic_policy = d.internal_traffic_policy.clone();
        }
        // Ports: the desired list, keeping the node ports the host allocated (matched by port
        // and protocol) and the host's defaults for what the tenant left unset.
        let ports = d.ports.clone().map(|ports| {
            ports
                .into_iter()
                .map(|mut p| {
                    let same = o.ports.iter().flatten().find(|a| {
                        a.port == p.port
                            && a.protocol.as_deref().unwrap_or("TCP")
                                == p.protocol.as_deref().unwrap_or("TCP")
                    });
                    if let Some(a) = same {
                        if p.node_port.is_none() {
                            p.node_port = a.node_port;
                        }
                        if p.target_port.is_none() {
                            p.target_port = a.target_port.clone();
                        }
                        if p.protocol.is_none() {
                            p.protocol = a.protocol.clone();
                        }
                    }
                    p
                })
                .collect()
        });
        o.ports = ports;
        (out != *actual).then_some(out)
    }

    fn needs_recreate(actual: &Self, desired: &Self) -> bool {
        // The ClusterIP is immutable: a host service with another IP than the virtual one is
        // replaced (the tenant's DNS hands out the virtual IP).
        let ip = |s: &Service| {
            s.spec
                .as_ref()
                .and_then(|s| s.cluster_ip.clone())
                .filter(|ip| !ip.is_empty())
        };
        matches!((ip(actual), ip(desired)), (Some(a), Some(d)) if a != d)
    }

    fn create(
        shared: &Shared,
        v: &Self,
        desired: &Self,
    ) -> impl Future<Output = Result<Self, SyncError>> + Send {
        let api: Api<Service> = shared.host_api();
        let virt: Api<Service> =
            Api::namespaced(shared.virt.clone(), &v.namespace().unwrap_or_default());
        let (v, desired) = (v.clone(), desired.clone());
        async move {
            match create_host(&api, "Service", &desired).await {
                Err(SyncError::CreateHost {
                    source: kube::Error::Api(s),
                    ..
                }) if s.code == 422 && s.message.contains("clusterIP") => {
                    // The host refused the virtual IP (taken, or outside its range): let the host
                    // pick one and re-create the virtual service with it, so both agree.
                    let mut fallback = desired.clone();
                    if let Some(spec) = fallback.spec.as_mut() {
                        spec.cluster_ip = None;
                        spec.cluster_ips = None;
                    }
                    let created = create_host(&api, "Service", &fallback).await?;
                    let host_ip = created
                        .spec
                        .as_ref()
                        .and_then(|s| s.cluster_ip.clone())
                        .unwrap_or_default();
                    recreate_virtual_with_ip(&virt, &v, &host_ip).await?;
                    Ok(created)
                }
                other => other,
            }
        }
    }

    fn sync_up(
        shared: &Shared,
        v: &Self,
        host: &Self,
    ) -> impl Future<Output = Result<(), SyncError>> + Send {
        // A host ClusterIP is a Service virtual IP: never an endpoint target.
        if let Some(spec) = &host.spec {
            shared.observe_service_ips(
                spec.cluster_ips
                    .iter()
                    .flatten()
                    .chain(spec.cluster_ip.iter())
                    .map(String::as_str)
                    .filter(|ip| *ip != "None"),
            );
        }
        let want = host.status.as_ref().and_then(|s| s.load_balancer.clone());
        let have = v.status.as_ref().and_then(|s| s.load_balancer.clone());
        let (ingress_empty, have_empty) = (
            want.as_ref()
                .is_none_or(|l| l.ingress.as_ref().is_none_or(Vec::is_empty)),
            have.as_ref()
                .is_none_or(|l| l.ingress.as_ref().is_none_or(Vec::is_empty)),
        );
        let unchanged = want == have || (ingress_empty && have_empty);
        sync_load_balancer::<Self>(shared, v, (!unchanged).then(|| json!(want)))
    }
}

/// Delete and re-create a virtual service with the ClusterIP the host gave its copy.
async fn recreate_virtual_with_ip(
    virt: &Api<Service>,
    v: &Service,
    ip: &str,
) -> Result<(), SyncError> {
    let key = key_of(v);
    let mut copy = v.clone();
    copy.metadata = kube::api::ObjectMeta {
        name: v.metadata.name.clone(),
        namespace: v.metadata.namespace.clone(),
        labels: v.metadata.labels.clone(),
        annotations: v.metadata.annotations.clone(),
        ..Default::default()
    };
    copy.status = None;
    if let Some(spec) = copy.spec.as_mut() {
        spec.cluster_ip = Some(ip.to_string());
        spec.cluster_ips = Some(vec![ip.to_string()]);
        // Node ports were allocated by the virtual API; let it allocate again.
        for p in spec.ports.iter_mut().flatten() {
            p.node_port = None;
        }
        spec.health_check_node_port = None;
    }
    let dp = DeleteParams::default().preconditions(kube::api::Preconditions {
        uid: v.metadata.uid.clone(),
        resource_version: None,
    });
    match virt.delete(&v.name_any(), &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(source) => {
            return Err(SyncError::DeleteVirtual {
                kind: "Service",
                key,
                source,
            });
        }
    }
    let pp = PostParams {
        field_manager: Some(markers::FIELD_MANAGER.into()),
        ..Default::default()
    };
    match virt.create(&pp, &copy).await {
        Ok(_) => Ok(()),
        Err(source) => {
            // The virtual API refused the host's IP: put the tenant's service back as it was
            // rather than lose it, and report.
            let mut original = copy.clone();
            if let Some(spec) = original.spec.as_mut() {
                spec.cluster_ip = v.spec.as_ref().and_then(|s| s.cluster_ip.clone());
                spec.cluster_ips = v.spec.as_ref().and_then(|s| s.cluster_ips.clone());
            }
            if let Err(e) = virt.create(&pp, &original).await {
                tracing::error!(key, error = %super::brief(&e), "restoring the virtual service failed");
            }
            Err(SyncError::UpdateVirtualStatus {
                kind: "Service",
                key,
                source,
            })
        }
    }
}

// ----- Endpoints (of selector-less services) -----

impl SyncKind for Endpoints {
    const KIND: &'static str = "Endpoints";
    const RULE: NameRule = NameRule::Dns1035Label;

    fn check(
        policy: &crate::policy::Policy,
        v: &Self,
    ) -> Result<Self, Vec<crate::policy::Violation>> {
        crate::policy::services::check_endpoints(policy, v)
    }

    fn translate(ctx: &Context, v: &Self) -> Result<Self, Vec<TranslateError>> {
        translate::endpoints::host_endpoints(ctx, v)
    }

    fn merge(actual: &Self, desired: &Self) -> Option<Self> {
        let mut out = actual.clone();
        merge_owned_meta(&mut out.metadata, &desired.metadata);
        out.subsets = desired.subsets.clone();
        (out != *actual).then_some(out)
    }

    fn wanted(shared: &Shared, v: &Self) -> impl Future<Output = Result<bool, SyncError>> + Send {
        // Only the endpoints of selector-less services: the host computes the others itself.
        selectorless_service(
            shared,
            &v.namespace().unwrap_or_default(),
            Some(v.name_any()),
        )
    }
}

/// Whether virtual service `ns/name` exists and has no selector (its endpoints are the tenant's
/// to give, so they are synced; the host computes the others itself).
///
/// Read from the service controller's cache: endpoints change with every pod that becomes
/// ready, and a GET per change would cost the virtual API one request each. A service missing
/// from the cache (not listed yet, or created a moment ago) is asked of the API instead, so an
/// endpoints object created right after its service is still synced; a service that
/// changes later wakes its endpoints and slices again (see [`run`]).
fn selectorless_service(
    shared: &Shared,
    ns: &str,
    name: Option<String>,
) -> impl Future<Output = Result<bool, SyncError>> + Send + use<> {
    let api: Api<Service> = Api::namespaced(shared.virt.clone(), ns);
    let cached = name
        .as_ref()
        .and_then(|n| shared.virtual_services.get(&ObjectRef::new(n).within(ns)));
    async move {
        let Some(name) = name else { return Ok(false) };
        let svc = match cached {
            Some(svc) => Some(svc),
            None => api
                .get_opt(&name)
                .await
                .map_err(|source| SyncError::Read {
                    what: format!("virtual service {name}"),
                    source,
                })?
                .map(Arc::new),
        };
        Ok(svc.is_some_and(|s| {
            s.spec
                .as_ref()
                .is_none_or(|sp| sp.selector.as_ref().is_none_or(|sel| sel.is_empty()))
        }))
    }
}

// ----- EndpointSlice (hand-made, of selector-less services) -----

/// Controllers whose slices the host computes itself; only hand-made slices are synced.
const CONTROLLER_MANAGED_SLICES: &[&str] = &[
    "endpointslice-controller.k8s.io",
    "endpointslicemirroring-controller.k8s.io",
];

impl SyncKind for EndpointSlice {
    const KIND: &'static str = "EndpointSlice";
    const RULE: NameRule = NameRule::Dns1123Subdomain;

    fn check(
        policy: &crate::policy::Policy,
        v: &Self,
    ) -> Result<Self, Vec<crate::policy::Violation>> {
        crate::policy::services::check_endpoint_slice(policy, v)
    }

    fn translate(ctx: &Context, v: &Self) -> Result<Self, Vec<TranslateError>> {
        translate::endpoints::host_endpoint_slice(ctx, v)
    }

    fn merge(actual: &Self, desired: &Self) -> Option<Self> {
        let mut out = actual.clone();
        merge_owned_meta(&mut out.metadata, &desired.metadata);
        out.endpoints = desired.endpoints.clone();
        out.ports = desired.ports.clone();
        (out != *actual).then_some(out)
    }

    fn needs_recreate(actual: &Self, desired: &Self) -> bool {
        // addressType is immutable.
        actual.address_type != desired.address_type
    }

    fn wanted(shared: &Shared, v: &Self) -> impl Future<Output = Result<bool, SyncError>> + Send {
        let labels = v.labels();
        let managed = labels
            .get(translate::endpoints::MANAGED_BY_LABEL)
            .is_some_and(|m| CONTROLLER_MANAGED_SLICES.contains(&m.as_str()));
        let service = labels
            .get(translate::endpoints::SERVICE_NAME_LABEL)
            .cloned();
        // Slices the virtual API's controllers made mirror what the host makes itself.
        selectorless_service(
            shared,
            &v.namespace().unwrap_or_default(),
            service.filter(|_| !managed),
        )
    }
}

// ----- Ingress -----

impl SyncKind for Ingress {
    const KIND: &'static str = "Ingress";
    const RULE: NameRule = NameRule::Dns1123Subdomain;

    fn check(
        policy: &crate::policy::Policy,
        v: &Self,
    ) -> Result<Self, Vec<crate::policy::Violation>> {
        crate::policy::check_ingress(policy, v)
    }

    fn translate(ctx: &Context, v: &Self) -> Result<Self, Vec<TranslateError>> {
        translate::ingress::host_ingress(ctx, v)
    }

    fn merge(actual: &Self, desired: &Self) -> Option<Self> {
        let mut out = actual.clone();
        merge_owned_meta(&mut out.metadata, &desired.metadata);
        out.spec = desired.spec.clone();
        (out != *actual).then_some(out)
    }

    fn sync_up(
        shared: &Shared,
        v: &Self,
        host: &Self,
    ) -> impl Future<Output = Result<(), SyncError>> + Send {
        let want = host.status.as_ref().and_then(|s| s.load_balancer.clone());
        let have = v.status.as_ref().and_then(|s| s.load_balancer.clone());
        let (ingress_empty, have_empty) = (
            want.as_ref()
                .is_none_or(|l| l.ingress.as_ref().is_none_or(Vec::is_empty)),
            have.as_ref()
                .is_none_or(|l| l.ingress.as_ref().is_none_or(Vec::is_empty)),
        );
        let unchanged = want == have || (ingress_empty && have_empty);
        sync_load_balancer::<Self>(shared, v, (!unchanged).then(|| json!(want)))
    }
}

/// Copy a host object's `status.loadBalancer` (`want`, `None` when already equal) up to its
/// virtual object: services and ingresses alike.
fn sync_load_balancer<K: SyncKind>(
    shared: &Shared,
    v: &K,
    want: Option<serde_json::Value>,
) -> impl Future<Output = Result<(), SyncError>> + Send + use<K> {
    let virt: Api<K> = Api::namespaced(shared.virt.clone(), &v.namespace().unwrap_or_default());
    let (name, key) = (v.name_any(), key_of(v));
    let metrics = shared.metrics.clone();
    async move {
        let Some(want) = want else { return Ok(()) };
        virt.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": want}})),
        )
        .await
        .map_err(|source| SyncError::UpdateVirtualStatus {
            kind: K::KIND,
            key: key.clone(),
            source,
        })?;
        metrics.change_applied(Direction::Up, K::KIND, &key);
        Ok(())
    }
}

// ----- the generic controller -----

struct KindSync<K: SyncKind> {
    shared: Arc<Shared>,
    host: Store<K>,
}

async fn reconcile<K: SyncKind>(v: Arc<K>, s: Arc<KindSync<K>>) -> Result<Action, SyncError> {
    // Standing by (not leading): wait, then decide from the caches as they are by then.
    s.shared.gate.opened().await;
    let span = tracing::info_span!(
        "reconcile",
        controller = K::KIND,
        namespace = v.namespace().unwrap_or_default(),
        name = v.name_any()
    );
    let key = key_of(v.as_ref());
    let timer = s.shared.metrics.start_reconcile(K::KIND);
    let r = tracing::Instrument::instrument(reconcile_inner(v.as_ref(), &s), span).await;
    timer.finish(r.as_ref());
    if r.is_ok() {
        s.shared.backoff.reset(&format!("{}/{key}", K::KIND));
        s.shared.metrics.settled(K::KIND, &key);
        s.shared.waits.done(&format!("{}/{key}", K::KIND));
    }
    r
}

async fn reconcile_inner<K: SyncKind>(v: &K, s: &KindSync<K>) -> Result<Action, SyncError> {
    let shared = &s.shared;
    // Decisions need the host cache: an empty one would make every host copy look missing.
    if !super::cache_ready(&s.host).await {
        return Err(SyncError::Waiting {
            cause: super::waits::WaitCause::Cache,
            what: format!("the host {} cache", K::KIND),
        });
    }
    let ns = v.namespace().unwrap_or_default();
    let key = key_of(v);
    let host_name = shared.ctx.host_name(&ns, &v.name_any(), K::RULE);
    let api: Api<K> = shared.host_api();
    let host = s
        .host
        .get(&ObjectRef::new(&host_name).within(&shared.cfg.host_namespace));
    let src = shared.ctx.source(K::KIND, v.meta());
    let ownership = host.as_ref().map(|h| markers::ownership(h.meta(), &src));

    let wanted = v.meta().deletion_timestamp.is_none()
        && !is_virtual_api_service::<K>(v)
        && !is_vcsync_virtual_object(shared, v)
        && K::wanted(shared, v).await?;
    if !wanted {
        // A host copy already being deleted (a claim held by pvc-protection) needs no second
        // delete on each of its events.
        if let (Some(h), Some(Ownership::Ours | Ownership::Stale)) = (&host, &ownership)
            && h.meta().deletion_timestamp.is_none()
        {
            delete_host(&api, K::KIND, &host_name, h.meta().uid.as_deref(), None).await?;
            tracing::info!(
                key,
                host = host_name,
                "deleted host copy that is no longer wanted"
            );
        }
        K::on_unwanted(shared, v).await?;
        return Ok(Action::await_change());
    }

    let owned_host = host
        .as_deref()
        .filter(|_| matches!(ownership, Some(Ownership::Ours | Ownership::Stale)));
    let allowed = K::check_with_host(&shared.policy(), v, owned_host)
        .map_err(|violations| shared.policy_error(K::KIND, &key, &violations))?;
    let narrowed = K::narrowed(v, &allowed);
    let v = &allowed;
    let desired = K::translate_in(shared, v).map_err(|errs| SyncError::Untranslatable {
        kind: K::KIND,
        key: key.clone(),
        reasons: reasons(&errs),
    })?;
    match (host, ownership) {
        (None, _) => {
            K::create(shared, v, &desired).await?;
            shared
                .metrics
                .change_applied(Direction::Down, K::KIND, &key);
            tracing::info!(key, host = host_name, "created host copy");
            tell_narrowed::<K>(shared, v, &key, narrowed);
        }
        (Some(_), Some(Ownership::Foreign)) => {
            return Err(SyncError::Foreign {
                kind: K::KIND,
                name: host_name,
                key,
            });
        }
        (Some(h), _) => {
            if K::needs_recreate(&h, &desired) {
                delete_host(&api, K::KIND, &host_name, h.meta().uid.as_deref(), None).await?;
                // The deletion event brings us back to create it anew.
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            if let Some(updated) = K::merge(&h, &desired) {
                replace_host(&api, K::KIND, &updated).await?;
                shared
                    .metrics
                    .change_applied(Direction::Down, K::KIND, &key);
                tracing::info!(key, host = host_name, "updated host copy");
                tell_narrowed::<K>(shared, v, &key, narrowed);
            }
            K::sync_up(shared, v, &h).await?;
            if let Some(reason) = K::immutable_change(&h, &desired) {
                return Err(SyncError::Untranslatable {
                    kind: K::KIND,
                    key,
                    reasons: reason,
                });
            }
        }
    }
    Ok(Action::await_change())
}

/// A Warning Event (reason `PolicyViolation`), a log line and a metric for what the policy
/// narrowed, after a write (so neither a restart nor an unchanged object repeats it).
fn tell_narrowed<K: SyncKind>(shared: &Arc<Shared>, v: &K, key: &str, narrowed: Vec<String>) {
    if narrowed.is_empty() {
        return;
    }
    let msg = format!(
        "{} narrowed by the isolation policy: {}",
        K::KIND,
        narrowed.join("; ")
    );
    tracing::info!(controller = K::KIND, key, note = %msg, "narrowed");
    shared.metrics.policy_violation(K::KIND, K::NARROWED_RULE);
    let (shared, obj_ref) = (shared.clone(), v.object_ref(&()));
    tokio::spawn(async move {
        shared.warn(&obj_ref, "PolicyViolation", msg).await;
    });
}

fn error_policy<K: SyncKind>(v: Arc<K>, err: &SyncError, s: Arc<KindSync<K>>) -> Action {
    let shared = s.shared.clone();
    let key = format!("{}/{}", K::KIND, key_of(v.as_ref()));
    if !err.is_permanent() {
        if matches!(err, SyncError::Waiting { .. }) {
            let (obj_ref, err) = (v.object_ref(&()), clone_wait(err));
            let (shared, key) = (shared.clone(), key.clone());
            tokio::spawn(async move { shared.note_wait(&obj_ref, &key, &err).await });
        } else {
            tracing::info!(controller = K::KIND, key, error = %err, reason = err.metric_label(), "retrying");
        }
        return Action::requeue(shared.backoff.next(&key));
    }
    let obj_ref = v.object_ref(&());
    let (msg, label, reason) = (err.to_string(), err.metric_label(), err.event_reason());
    tracing::warn!(controller = K::KIND, key, error = %msg, reason = label, "refused");
    tokio::spawn(async move {
        shared.warn(&obj_ref, reason, msg).await;
    });
    Action::requeue(Duration::from_secs(300))
}

/// A copy of a [`SyncError::Waiting`] (the only kind passed on to a task).
fn clone_wait(err: &SyncError) -> SyncError {
    match err {
        SyncError::Waiting { cause, what } => SyncError::Waiting {
            cause: *cause,
            what: what.clone(),
        },
        other => SyncError::Waiting {
            cause: super::waits::WaitCause::HostObject,
            what: other.to_string(),
        },
    }
}

/// Run the controller of kind `K`: virtual objects from `vstream`/`virt`, host copies watched,
/// optional extra triggers, and the host-side orphan collector.
pub(super) async fn run_kind<K, S>(
    shared: Arc<Shared>,
    stop: Stop,
    virt: Store<K>,
    vstream: S,
    triggers: Option<tokio::sync::mpsc::UnboundedReceiver<ObjectRef<K>>>,
    unwanted_sweep: bool,
) where
    K: SyncKind,
    S: futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
{
    let (host, hstream) = shared.metrics.cached_stream(
        ApiLabel::Host,
        K::KIND,
        shared.host_api::<K>(),
        shared.host_watch_config(),
    );
    let tenant = shared.cfg.tenant.clone();
    let metrics = shared.metrics.clone();
    let vstream = metrics.observe_virtual(K::KIND, vstream);
    let hstream = metrics.observe_host(K::KIND, tenant.clone(), hstream);
    metrics.controller_started(K::KIND, shared.cfg.concurrency);
    let objects = metrics.track_host_objects(K::KIND, tenant.clone(), host.clone(), stop.signal());
    let mut c = Controller::for_stream(vstream, virt.clone())
        .with_config(controller::Config::default().concurrency(shared.cfg.concurrency as u16))
        .watches_stream(hstream, move |h: K| {
            source_ref::<K, K>(&tenant, K::KIND, &h)
        });
    if let Some(rx) = triggers {
        c = c.reconcile_on(UnboundedReceiverStream::new(rx));
    }
    let state = Arc::new(KindSync {
        shared: shared.clone(),
        host: host.clone(),
    });
    let controller =
        c.graceful_shutdown_on(stop.signal())
            .run(reconcile::<K>, error_policy::<K>, state);
    let gc = super::gc::run::<K, K>(shared.clone(), K::KIND, host.clone(), virt, stop.signal());
    let sweep = async {
        if unwanted_sweep {
            sweep_unreferenced::<K>(&shared, &host, stop.signal()).await;
        }
    };
    futures::join!(drain(K::KIND, controller), gc, sweep, objects);
}

/// Delete host configmaps/secrets that nothing references any more (a pod referencing them was
/// deleted): swept periodically, since a deleted pod triggers nothing on the configmap side.
/// Each pass looks up every host copy in the reference index: proportional to the host copies,
/// not to the pods.
async fn sweep_unreferenced<K: SyncKind>(
    shared: &Shared,
    host: &Store<K>,
    stop: impl Future<Output = ()>,
) {
    let kind = if K::KIND == "Secret" {
        RefKind::Secret
    } else {
        RefKind::ConfigMap
    };
    let sweep = async {
        if !super::cache_ready(host).await {
            return;
        }
        // Never judge "unreferenced" before every referrer was listed.
        shared.references.wait_ready(kind).await;
        let api: Api<K> = shared.host_api();
        loop {
            for h in host.state() {
                let Some((src_kind, ns, name, _)) =
                    markers::source_of(h.meta(), &shared.cfg.tenant)
                else {
                    continue;
                };
                if src_kind != K::KIND
                    || h.meta().deletion_timestamp.is_some()
                    || shared
                        .references
                        .is_referenced(&Target::new(kind, ns, name))
                {
                    continue;
                }
                let host_name = h.name_any();
                match delete_host(&api, K::KIND, &host_name, h.meta().uid.as_deref(), None).await {
                    Ok(()) => tracing::info!(
                        kind = K::KIND,
                        host = host_name,
                        "deleted host copy nothing references any more"
                    ),
                    Err(e) => {
                        tracing::warn!(kind = K::KIND, host = host_name, error = %e, "deleting an unreferenced host copy failed")
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    tokio::select! {
        _ = sweep => {}
        _ = stop => {}
    }
}

/// Run the controllers of every non-pod kind until `stop`.
pub async fn run(shared: Arc<Shared>, stop: Stop) {
    let vcfg = watcher::Config::default;
    let all = |shared: &Shared| shared.virt.clone();

    let (cms, cms_stream) = shared.metrics.cached_stream(
        ApiLabel::Virtual,
        "ConfigMap",
        Api::<ConfigMap>::all(all(&shared)),
        vcfg(),
    );
    let (secrets, secrets_stream) = shared.metrics.cached_stream(
        ApiLabel::Virtual,
        "Secret",
        Api::<Secret>::all(all(&shared)),
        vcfg(),
    );
    // The service cache is shared: the endpoints and slice sync read it.
    let svcs = shared.virtual_services.clone();
    let svcs_stream = shared.metrics.cached_stream_into(
        ApiLabel::Virtual,
        "Service",
        Api::<Service>::all(all(&shared)),
        vcfg(),
        shared.take_virtual_services_writer(),
    );
    let (eps, eps_stream) = shared.metrics.cached_stream(
        ApiLabel::Virtual,
        "Endpoints",
        Api::<Endpoints>::all(all(&shared)),
        vcfg(),
    );
    let (slices, slices_stream) = shared.metrics.cached_stream(
        ApiLabel::Virtual,
        "EndpointSlice",
        Api::<EndpointSlice>::all(all(&shared)),
        vcfg(),
    );
    let (pvcs, pvcs_stream) = shared.metrics.cached_stream(
        ApiLabel::Virtual,
        "PersistentVolumeClaim",
        Api::<PersistentVolumeClaim>::all(all(&shared)),
        vcfg(),
    );
    let ing_writer = shared.take_virtual_ingresses_writer();
    let ings = shared.virtual_ingresses.clone();
    // The reference index follows the ingress watch (TLS secrets are references).
    let ings_stream = shared.metrics.cached_stream_observed(
        ApiLabel::Virtual,
        "Ingress",
        Api::<Ingress>::all(all(&shared)),
        vcfg(),
        ing_writer,
        {
            let shared = shared.clone();
            move |e: &watcher::Event<Ingress>| shared.references.observe(e)
        },
    );
    // An ingress names its TLS secrets: sync them when the ingress changes.
    let triggers = shared.triggers.clone();
    let ings_stream = ings_stream.map(move |r| {
        if let Ok(i) = &r {
            let ns = i.namespace().unwrap_or_default();
            for s in translate::ingress::ingress_references(i).secrets {
                let _ = triggers.secrets.send(ObjectRef::new(&s).within(&ns));
            }
        }
        r
    });

    // Whether a service has a selector decides whether its endpoints and hand-made slices are
    // synced, and they read it from the service cache: wake them when the service changes.
    let (eps_tx, eps_rx) = tokio::sync::mpsc::unbounded_channel();
    let (slices_tx, slices_rx) = tokio::sync::mpsc::unbounded_channel();
    let slice_index = slices.clone();
    let svcs_stream = svcs_stream.map(move |r| {
        if let Ok(svc) = &r {
            let (ns, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
            let _ = eps_tx.send(ObjectRef::<Endpoints>::new(&name).within(&ns));
            for slice in slice_index.state() {
                if slice.namespace().as_deref() == Some(ns.as_str())
                    && slice
                        .labels()
                        .get(translate::endpoints::SERVICE_NAME_LABEL)
                        .is_some_and(|n| *n == name)
                {
                    let _ = slices_tx.send(ObjectRef::from_obj(slice.as_ref()));
                }
            }
        }
        r
    });

    futures::join!(
        run_kind::<ConfigMap, _>(
            shared.clone(),
            stop.clone(),
            cms,
            cms_stream,
            Some(shared.take_config_map_triggers()),
            true
        ),
        run_kind::<Secret, _>(
            shared.clone(),
            stop.clone(),
            secrets,
            secrets_stream,
            Some(shared.take_secret_triggers()),
            true
        ),
        run_kind::<Service, _>(shared.clone(), stop.clone(), svcs, svcs_stream, None, false),
        run_kind::<Endpoints, _>(
            shared.clone(),
            stop.clone(),
            eps,
            eps_stream,
            Some(eps_rx),
            false
        ),
        run_kind::<EndpointSlice, _>(
            shared.clone(),
            stop.clone(),
            slices,
            slices_stream,
            Some(slices_rx),
            false
        ),
        run_kind::<Ingress, _>(shared.clone(), stop.clone(), ings, ings_stream, None, false),
        run_kind::<PersistentVolumeClaim, _>(
            shared.clone(),
            stop.clone(),
            pvcs.clone(),
            pvcs_stream,
            None,
            false
        ),
        super::pvcs::sweep_virtual_volumes(&shared, pvcs, stop.signal()),
        super::storageclasses::run(shared.clone(), stop.signal()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("valid service")
    }

    #[test]
    fn service_merge_keeps_host_node_ports_and_defaults() {
        let desired = svc(
            json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "selector": {"a": "b"}, "ports": [{"port": 80}]}}),
        );
        let actual = svc(
            json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "selector": {"a": "b"}, "clusterIP": "10.96.0.5",
            "sessionAffinity": "None", "externalTrafficPolicy": "Cluster",
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30001}]}}),
        );
        assert_eq!(Service::merge(&actual, &desired), None, "in sync");
        let mut changed = desired.clone();
        changed.spec.as_mut().unwrap().selector = Some([("a".to_string(), "c".to_string())].into());
        let merged = Service::merge(&actual, &changed).expect("an update");
        let spec = merged.spec.unwrap();
        assert_eq!(spec.ports.unwrap()[0].node_port, Some(30001));
        assert_eq!(spec.selector.unwrap()["a"], "c");
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.5"));
    }

    #[test]
    fn a_different_cluster_ip_needs_a_new_host_service() {
        let a = svc(json!({"spec": {"clusterIP": "10.96.0.5"}}));
        let d = svc(json!({"spec": {"clusterIP": "10.96.0.6"}}));
        assert!(Service::needs_recreate(&a, &d));
        assert!(!Service::needs_recreate(&a, &a));
    }

    #[test]
    fn configmap_merge_replaces_data_and_immutable_changes_recreate() {
        let d: ConfigMap = serde_json::from_value(json!({"data": {"k": "v2"}})).unwrap();
        let a: ConfigMap = serde_json::from_value(json!({"data": {"k": "v1"}})).unwrap();
        assert_eq!(ConfigMap::merge(&a, &d).unwrap().data.unwrap()["k"], "v2");
        let imm: ConfigMap =
            serde_json::from_value(json!({"data": {"k": "v1"}, "immutable": true})).unwrap();
        assert!(ConfigMap::needs_recreate(&imm, &d));
        assert!(!ConfigMap::needs_recreate(&a, &d));
    }

    #[test]
    fn secret_type_change_recreates() {
        let a: Secret = serde_json::from_value(json!({"type": "Opaque"})).unwrap();
        let d: Secret = serde_json::from_value(json!({"type": "kubernetes.io/tls"})).unwrap();
        assert!(Secret::needs_recreate(&a, &d));
    }
}
