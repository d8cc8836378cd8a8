//! Registration of the metrics API in the virtual cluster, as metrics-server's manifests do:
//! a selector-less Service (`kube-system/vcsync-metrics`, port 443), its Endpoints at the
//! metrics API's address and port, and the APIService `v1beta1.metrics.k8s.io` naming that
//! Service and the CA of vcsync's serving certificate.
//!
//! The objects are computed by pure functions ([`desired`]); [`maintain`] converges them
//! (created when missing, updated when they differ in what vcsync sets, never re-written when
//! unchanged) while the write gate is open, i.e. only on the leader. Objects of these names
//! that vcsync did not make (no `managed-by` label of this tenant, e.g. a metrics-server the
//! tenant installed) are left alone, with a log line.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::{
    APIService, APIServiceSpec, ServiceReference,
};
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::markers;

/// Namespace of the Service and Endpoints in the virtual cluster.
pub const SERVICE_NAMESPACE: &str = "kube-system";
/// Name of the Service and Endpoints in the virtual cluster.
pub const SERVICE_NAME: &str = "vcsync-metrics";
/// Name of the APIService (`<version>.<group>`).
pub const API_SERVICE_NAME: &str = "v1beta1.metrics.k8s.io";
/// Port of the Service (the one the APIService names; metrics-server's too).
pub const SERVICE_PORT: i32 = 443;
const PORT_NAME: &str = "https";
/// How often the objects are checked against the desired ones (a read each, no write unless
/// something differs).
pub const RESYNC: Duration = Duration::from_secs(30);

/// What the registration needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The tenant (the `managed-by` label value).
    pub tenant: String,
    /// The address the aggregator dials (the Endpoints address: the pod IP, never loopback).
    pub address: IpAddr,
    /// The metrics API's port.
    pub port: u16,
    /// PEM of the CA that signed the serving certificate; `None` registers with
    /// `insecureSkipTLSVerify` (no CA is known for a self-signed or file-given certificate).
    pub ca_bundle: Option<Vec<u8>>,
}

/// The three objects vcsync keeps in the virtual cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub service: Service,
    pub endpoints: Endpoints,
    pub api_service: APIService,
}

/// Why one registration object could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The serving CA (the APIService's `caBundle`) cannot be read.
    #[error("failed to read the metrics API's serving CA {path} for the APIService: {source}")]
    ReadCa {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// Reading the current object failed.
    #[error("failed to read {kind} {name} in the virtual cluster: {source}")]
    Read {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    /// Creating or updating the object failed.
    #[error("failed to write {kind} {name} in the virtual cluster: {source}")]
    Write {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
}

fn meta(tenant: &str, namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(str::to_string),
        labels: Some(BTreeMap::from([(
            markers::MANAGED_BY.to_string(),
            tenant.to_string(),
        )])),
        ..Default::default()
    }
}

/// The registration of a metrics API bound on `port` with `config`: the `caBundle` is the CA
/// that signs the serving certificate when vcsync mints it from one (k3s's `server-ca.crt`).
///
/// # Errors
/// [`RegisterError::ReadCa`] when that CA file cannot be read.
pub fn registration(
    tenant: &str,
    config: &super::MetricsApiConfig,
    port: u16,
) -> Result<Registration, RegisterError> {
    let ca_bundle = match &config.serving {
        crate::kubelet::ServingCert::SignedBy { ca_cert, .. } => Some(
            std::fs::read(ca_cert).map_err(|source| RegisterError::ReadCa {
                path: ca_cert.clone(),
                source,
            })?,
        ),
        crate::kubelet::ServingCert::Files { .. } | crate::kubelet::ServingCert::SelfSigned => None,
    };
    Ok(Registration {
        tenant: tenant.into(),
        address: config.bind.ip(),
        port,
        ca_bundle,
    })
}

/// The objects for `reg` (pure).
pub fn desired(reg: &Registration) -> Desired {
    let port = i32::from(reg.port);
    let service = Service {
        metadata: meta(&reg.tenant, Some(SERVICE_NAMESPACE), SERVICE_NAME),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.into()),
                port: SERVICE_PORT,
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::Int(port)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let endpoints = Endpoints {
        metadata: meta(&reg.tenant, Some(SERVICE_NAMESPACE), SERVICE_NAME),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: reg.address.to_string(),
                ..Default::default()
            }]),
            ports: Some(vec![EndpointPort {
                name: Some(PORT_NAME.into()),
                port,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }]),
    };
    let api_service = APIService {
        metadata: meta(&reg.tenant, None, API_SERVICE_NAME),
        spec: Some(APIServiceSpec {
            ca_bundle: reg.ca_bundle.clone().map(ByteString),
            group: Some("metrics.k8s.io".into()),
            group_priority_minimum: 100,
            insecure_skip_tls_verify: reg.ca_bundle.is_none().then_some(true),
            service: Some(ServiceReference {
                namespace: Some(SERVICE_NAMESPACE.into()),
                name: Some(SERVICE_NAME.into()),
                port: Some(SERVICE_PORT),
            }),
            version: Some("v1beta1".into()),
            version_priority: 100,
        }),
        status: None,
    };
    Desired {
        service,
        endpoints,
        api_service,
    }
}

/// What to do with one object (pure): `None` when it is as desired or not vcsync's.
pub fn service_update(tenant: &str, have: &Service, want: &Service) -> Option<Service> {
    let spec = have.spec.clone().unwrap_or_default();
    let want_spec = want.spec.as_ref()?;
    if !ours(tenant, have) || (spec.ports == want_spec.ports && spec.selector.is_none()) {
        return None;
    }
    let mut updated = have.clone();
    let s = updated.spec.get_or_insert_with(Default::default);
    s.ports.clone_from(&want_spec.ports);
    s.selector = None;
    Some(updated)
}

/// The Endpoints to write instead of `have`, if they differ from `want` and are vcsync's.
pub fn endpoints_update(tenant: &str, have: &Endpoints, want: &Endpoints) -> Option<Endpoints> {
    if !ours(tenant, have) || have.subsets == want.subsets {
        return None;
    }
    let mut updated = have.clone();
    updated.subsets.clone_from(&want.subsets);
    Some(updated)
}

/// The APIService to write instead of `have`, if its spec differs from `want`'s and it is
/// vcsync's.
pub fn api_service_update(
    tenant: &str,
    have: &APIService,
    want: &APIService,
) -> Option<APIService> {
    if !ours(tenant, have) || have.spec == want.spec {
        return None;
    }
    let mut updated = have.clone();
    updated.spec.clone_from(&want.spec);
    Some(updated)
}

fn ours<K: Resource>(tenant: &str, o: &K) -> bool {
    o.labels().get(markers::MANAGED_BY).map(String::as_str) == Some(tenant)
}

/// Keeps the registration converged until `stop`: waits for `gate` before each round, so only
/// the leader writes (`virt` should be gated by it too).
pub async fn maintain(
    virt: Client,
    gate: crate::gate::WriteGate,
    reg: Registration,
    stop: impl Future<Output = ()>,
) {
    let want = desired(&reg);
    let work = async {
        loop {
            gate.opened().await;
            for e in converge(&virt, &reg.tenant, &want).await {
                tracing::warn!(error = %e, "registering the metrics API in the virtual cluster failed");
            }
            tokio::time::sleep(RESYNC).await;
        }
    };
    tokio::select! {
        () = work => {}
        () = stop => {}
    }
}

/// One round: every object created or updated as needed. Returns the failures.
pub async fn converge(virt: &Client, tenant: &str, want: &Desired) -> Vec<RegisterError> {
    let mut errors = Vec::new();
    let services: Api<Service> = Api::namespaced(virt.clone(), SERVICE_NAMESPACE);
    let endpoints: Api<Endpoints> = Api::namespaced(virt.clone(), SERVICE_NAMESPACE);
    let api_services: Api<APIService> = Api::all(virt.clone());
    let results = [
        one(&services, "Service", tenant, &want.service, service_update).await,
        one(
            &endpoints,
            "Endpoints",
            tenant,
            &want.endpoints,
            endpoints_update,
        )
        .await,
        one(
            &api_services,
            "APIService",
            tenant,
            &want.api_service,
            api_service_update,
        )
        .await,
    ];
    for r in results {
        if let Err(e) = r {
            errors.push(e);
        }
    }
    errors
}

async fn one<K>(
    api: &Api<K>,
    kind: &'static str,
    tenant: &str,
    want: &K,
    update: fn(&str, &K, &K) -> Option<K>,
) -> Result<(), RegisterError>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = want.name_any();
    let pp = PostParams {
        field_manager: Some(markers::FIELD_MANAGER.into()),
        ..Default::default()
    };
    let write = |source| RegisterError::Write {
        kind,
        name: name.clone(),
        source,
    };
    let have = api
        .get_opt(&name)
        .await
        .map_err(|source| RegisterError::Read {
            kind,
            name: name.clone(),
            source,
        })?;
    match have {
        None => match api.create(&pp, want).await {
            Ok(_) => tracing::info!(kind, name, "registered the metrics API: created"),
            // Someone made it in between: the next round compares.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(write(e)),
        },
        Some(have) if !ours(tenant, &have) => {
            tracing::info!(
                kind,
                name,
                "not registering the metrics API over an object vcsync did not make"
            );
        }
        Some(have) => {
            if let Some(updated) = update(tenant, &have, want) {
                api.replace(&name, &pp, &updated).await.map_err(write)?;
                tracing::info!(kind, name, "registered the metrics API: updated");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(ca: Option<&str>) -> Registration {
        Registration {
            tenant: "team-a".into(),
            address: "10.0.0.7".parse().expect("ip"),
            port: 4443,
            ca_bundle: ca.map(|c| c.as_bytes().to_vec()),
        }
    }

    #[test]
    fn desired_objects_name_the_service_port_and_ca() {
        let d = desired(&reg(Some("PEM")));
        let spec = d.api_service.spec.as_ref().expect("spec");
        assert_eq!(d.api_service.name_any(), "v1beta1.metrics.k8s.io");
        assert_eq!(spec.group.as_deref(), Some("metrics.k8s.io"));
        assert_eq!(spec.version.as_deref(), Some("v1beta1"));
        assert_eq!(spec.ca_bundle, Some(ByteString(b"PEM".to_vec())));
        assert_eq!(spec.insecure_skip_tls_verify, None);
        let svc = spec.service.as_ref().expect("service");
        assert_eq!(
            (svc.namespace.as_deref(), svc.name.as_deref(), svc.port),
            (Some("kube-system"), Some("vcsync-metrics"), Some(443))
        );
        let sp = &d
            .service
            .spec
            .as_ref()
            .expect("spec")
            .ports
            .as_ref()
            .expect("ports")[0];
        assert_eq!(
            (sp.port, sp.target_port.clone()),
            (443, Some(IntOrString::Int(4443)))
        );
        assert_eq!(d.service.spec.as_ref().expect("spec").selector, None);
        let subset = &d.endpoints.subsets.as_ref().expect("subsets")[0];
        assert_eq!(
            subset.addresses.as_ref().expect("addresses")[0].ip,
            "10.0.0.7"
        );
        assert_eq!(subset.ports.as_ref().expect("ports")[0].port, 4443);
        for labels in [
            d.service.labels(),
            d.endpoints.labels(),
            d.api_service.labels(),
        ] {
            assert_eq!(
                labels.get(markers::MANAGED_BY).map(String::as_str),
                Some("team-a")
            );
        }
    }

    #[test]
    fn without_a_ca_the_api_service_skips_verification() {
        let d = desired(&reg(None));
        let spec = d.api_service.spec.expect("spec");
        assert_eq!(
            (spec.ca_bundle, spec.insecure_skip_tls_verify),
            (None, Some(true))
        );
    }

    #[test]
    fn unchanged_objects_are_not_rewritten_and_changed_ones_are() {
        let d = desired(&reg(Some("PEM")));
        // The server defaults fields vcsync does not set; they do not count as a difference.
        let mut have = d.service.clone();
        have.metadata.resource_version = Some("5".into());
        have.spec.as_mut().expect("spec").cluster_ip = Some("10.43.0.9".into());
        have.spec.as_mut().expect("spec").type_ = Some("ClusterIP".into());
        assert!(service_update("team-a", &have, &d.service).is_none());
        assert!(endpoints_update("team-a", &d.endpoints, &d.endpoints).is_none());
        assert!(api_service_update("team-a", &d.api_service, &d.api_service).is_none());

        let moved = desired(&Registration {
            address: "10.0.0.8".parse().expect("ip"),
            port: 4444,
            ..reg(Some("NEW"))
        });
        let s = service_update("team-a", &have, &moved.service).expect("port changed");
        assert_eq!(
            s.spec.as_ref().expect("spec").cluster_ip.as_deref(),
            Some("10.43.0.9")
        );
        assert_eq!(s.metadata.resource_version.as_deref(), Some("5"));
        assert!(endpoints_update("team-a", &d.endpoints, &moved.endpoints).is_some());
        let a = api_service_update("team-a", &d.api_service, &moved.api_service).expect("ca");
        assert_eq!(
            a.spec.expect("spec").ca_bundle,
            Some(ByteString(b"NEW".to_vec()))
        );
    }

    #[test]
    fn objects_vcsync_did_not_make_are_left_alone() {
        let d = desired(&reg(Some("PEM")));
        let moved = desired(&reg(None));
        let mut foreign = d.api_service.clone();
        foreign.metadata.labels = None;
        assert!(api_service_update("team-a", &foreign, &moved.api_service).is_none());
        assert!(api_service_update("team-b", &d.api_service, &moved.api_service).is_none());
        let mut svc = d.service.clone();
        svc.metadata.labels = None;
        svc.spec.as_mut().expect("spec").selector = Some(BTreeMap::from([(
            "k8s-app".into(),
            "metrics-server".into(),
        )]));
        assert!(service_update("team-a", &svc, &d.service).is_none());
    }
}
