//! Endpoints and endpoint slices of selector-less virtual services.
//!
//! A service with a selector gets its endpoints from the host's controllers, which see the host
//! pods. A selector-less service's endpoints are whatever the tenant (or a tenant controller)
//! wrote into the virtual API, so they are copied down. Addresses are copied as they are: pod
//! IPs are host pod IPs already. References to virtual pods become references to their host
//! pods, and a synced slice is marked as vcsync's so the host's EndpointSlice controller leaves
//! it alone instead of fighting over it.

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset, Endpoints, ObjectReference};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

use super::service::host_service_name;
use super::{Context, NameRule, TranslateError};

/// Label naming the service an endpoint slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller that owns an endpoint slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`] on every slice vcsync writes.
pub const MANAGED_BY_VCSYNC: &str = "vcsync.io";

/// The host Endpoints for the virtual Endpoints `ep` of a selector-less service: named like the
/// host service (the API ties the two by name), subsets kept, pod references rewritten to the
/// host pods.
pub fn host_endpoints(ctx: &Context, ep: &Endpoints) -> Result<Endpoints, Vec<TranslateError>> {
    let ns = ep.metadata.namespace.as_deref().unwrap_or("");
    let metadata = ctx.host_meta("Endpoints", &ep.metadata, NameRule::Dns1035Label)?;
    let subsets = ep.subsets.as_ref().map(|subsets| {
        subsets
            .iter()
            .map(|s| EndpointSubset {
                addresses: host_addresses(ctx, ns, s.addresses.as_deref()),
                not_ready_addresses: host_addresses(ctx, ns, s.not_ready_addresses.as_deref()),
                ports: s.ports.clone(),
            })
            .collect()
    });
    Ok(Endpoints { metadata, subsets })
}

fn host_addresses(
    ctx: &Context,
    ns: &str,
    addrs: Option<&[EndpointAddress]>,
) -> Option<Vec<EndpointAddress>> {
    addrs.map(|addrs| {
        addrs
            .iter()
            .map(|a| EndpointAddress {
                target_ref: host_target_ref(ctx, ns, a.target_ref.as_ref()),
                ..a.clone()
            })
            .collect()
    })
}

/// The host endpoint slice for virtual slice `slice`: translated name, the service-name label
/// pointing at the host service, managed by vcsync, pod references rewritten to the host pods.
///
/// Refused: a slice without a `kubernetes.io/service-name` label (it belongs to no service, so
/// there is nothing on the host it could serve) or with one that is not a service name.
pub fn host_endpoint_slice(
    ctx: &Context,
    slice: &EndpointSlice,
) -> Result<EndpointSlice, Vec<TranslateError>> {
    let ns = slice.metadata.namespace.as_deref().unwrap_or("");
    let service = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL));
    let service_err = match service {
        None => Some(TranslateError::Missing {
            field: format!("metadata.labels[{SERVICE_NAME_LABEL}]"),
        }),
        Some(s) if !is_dns1035_label(s) => Some(TranslateError::Invalid {
            field: format!("metadata.labels[{SERVICE_NAME_LABEL}]"),
            value: s.clone(),
            reason: "must be a service name (an RFC 1035 label)",
        }),
        Some(_) => None,
    };
    let mut metadata = match (
        ctx.host_meta("EndpointSlice", &slice.metadata, NameRule::Dns1123Subdomain),
        service_err,
    ) {
        (Ok(m), None) => m,
        (meta, service_err) => {
            return Err(meta
                .err()
                .into_iter()
                .flatten()
                .chain(service_err)
                .collect());
        }
    };
    if let (Some(labels), Some(service)) = (metadata.labels.as_mut(), service) {
        labels.insert(
            SERVICE_NAME_LABEL.to_string(),
            host_service_name(ctx, ns, service),
        );
        labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VCSYNC.to_string());
    }
    let endpoints = slice.endpoints.as_ref().map(|eps| {
        eps.iter()
            .map(|e| Endpoint {
                target_ref: host_target_ref(ctx, ns, e.target_ref.as_ref()),
                ..e.clone()
            })
            .collect()
    });
    Ok(EndpointSlice {
        metadata,
        address_type: slice.address_type.clone(),
        endpoints,
        ports: slice.ports.clone(),
    })
}

/// A reference to a virtual pod becomes one to its host pod (uid and resourceVersion are the
/// virtual pod's, meaningless on the host). References to anything else are dropped: they would
/// name virtual objects the host does not have, or host objects the tenant has no business
/// pointing at, and `targetRef` is informational only.
fn host_target_ref(
    ctx: &Context,
    ns: &str,
    r: Option<&ObjectReference>,
) -> Option<ObjectReference> {
    let r = r?;
    let is_pod = r.kind.as_deref() == Some("Pod")
        && r.api_version
            .as_deref()
            .is_none_or(|v| v.is_empty() || v == "v1");
    let name = r.name.as_deref().filter(|n| !n.is_empty());
    match (is_pod, name) {
        (true, Some(name)) => {
            let pod_ns = r
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(ns);
            Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some(ctx.host_namespace.clone()),
                name: Some(ctx.host_name(pod_ns, name, NameRule::Dns1123Subdomain)),
                ..ObjectReference::default()
            })
        }
        _ => None,
    }
}

fn is_dns1035_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::EndpointPort;
    use k8s_openapi::api::discovery::v1::{self as discovery, EndpointConditions};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use rstest::rstest;

    use crate::markers;

    use crate::translate::test_ctx as ctx;

    fn pod_ref(ns: Option<&str>, name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("Pod".into()),
            namespace: ns.map(Into::into),
            name: Some(name.into()),
            uid: Some("0b5d2c9e-0000-4000-8000-000000000002".into()),
            resource_version: Some("17".into()),
            ..Default::default()
        }
    }

    fn address(ip: &str, target_ref: Option<ObjectReference>) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            target_ref,
            ..Default::default()
        }
    }

    fn endpoints() -> Endpoints {
        Endpoints {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("shop".into()),
                uid: Some("u-ep".into()),
                labels: Some(BTreeMap::from([("app".into(), "db".into())])),
                ..Default::default()
            },
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![
                    EndpointAddress {
                        hostname: Some("db-0".into()),
                        node_name: Some("node-a".into()),
                        ..address("10.244.1.5", Some(pod_ref(Some("shop"), "db-0")))
                    },
                    address("192.0.2.10", None),
                ]),
                not_ready_addresses: Some(vec![address("10.244.2.6", Some(pod_ref(None, "db-1")))]),
                ports: Some(vec![EndpointPort {
                    name: Some("pg".into()),
                    port: 5432,
                    protocol: Some("TCP".into()),
                    app_protocol: None,
                }]),
            }]),
        }
    }

    fn slice(labels: BTreeMap<String, String>) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some("db-abc12".into()),
                namespace: Some("shop".into()),
                uid: Some("u-slice".into()),
                labels: Some(labels),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: Some(vec![
                Endpoint {
                    addresses: vec!["10.244.1.5".into()],
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        serving: Some(true),
                        terminating: Some(false),
                    }),
                    hostname: Some("db-0".into()),
                    node_name: Some("node-a".into()),
                    zone: Some("zone-1".into()),
                    target_ref: Some(pod_ref(Some("shop"), "db-0")),
                    ..Default::default()
                },
                Endpoint {
                    addresses: vec!["192.0.2.10".into()],
                    ..Default::default()
                },
            ]),
            ports: Some(vec![discovery::EndpointPort {
                name: Some("pg".into()),
                port: Some(5432),
                protocol: Some("TCP".into()),
                app_protocol: None,
            }]),
        }
    }

    fn service_labels() -> BTreeMap<String, String> {
        BTreeMap::from([
            (SERVICE_NAME_LABEL.into(), "db".into()),
            (MANAGED_BY_LABEL.into(), "my-controller".into()),
        ])
    }

    #[test]
    fn endpoints_snapshot() {
        let host = host_endpoints(&ctx(), &endpoints()).expect("translates");
        insta::assert_yaml_snapshot!("endpoints", host);
    }

    #[test]
    fn endpoints_are_named_like_the_host_service() {
        let host = host_endpoints(&ctx(), &endpoints()).expect("translates");
        assert_eq!(
            host.metadata.name,
            Some(host_service_name(&ctx(), "shop", "db"))
        );
        let ann = host.metadata.annotations.expect("markers");
        assert_eq!(ann[markers::VIRTUAL_KIND], "Endpoints");
    }

    #[test]
    fn endpoint_slice_snapshot() {
        let host = host_endpoint_slice(&ctx(), &slice(service_labels())).expect("translates");
        insta::assert_yaml_snapshot!("endpoint_slice", host);
    }

    #[test]
    fn endpoint_slice_labels() {
        let host = host_endpoint_slice(&ctx(), &slice(service_labels())).expect("translates");
        let labels = host.metadata.labels.expect("labels");
        assert_eq!(labels[SERVICE_NAME_LABEL], "db-shop-acme-2-4");
        assert_eq!(labels[MANAGED_BY_LABEL], "vcsync.io");
        assert_eq!(labels[markers::MANAGED_BY], "acme");
        assert_eq!(
            host.metadata.name.as_deref(),
            Some("db-abc12-shop-acme-8-4")
        );
    }

    #[rstest]
    #[case::missing(
        BTreeMap::new(),
        "metadata.labels[kubernetes.io/service-name] is required"
    )]
    #[case::not_a_service_name(
        BTreeMap::from([(SERVICE_NAME_LABEL.into(), "Db_1".into())]),
        "metadata.labels[kubernetes.io/service-name]: invalid value \"Db_1\": must be a service name (an RFC 1035 label)"
    )]
    #[case::empty(
        BTreeMap::from([(SERVICE_NAME_LABEL.into(), String::new())]),
        "metadata.labels[kubernetes.io/service-name]: invalid value \"\": must be a service name (an RFC 1035 label)"
    )]
    fn slices_without_a_service_are_refused(
        #[case] labels: BTreeMap<String, String>,
        #[case] want: &str,
    ) {
        let errs = host_endpoint_slice(&ctx(), &slice(labels)).expect_err("refused");
        let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(got, vec![want.to_string()]);
    }

    #[test]
    fn slice_errors_are_reported_together() {
        let labels = BTreeMap::from([(markers::MANAGED_BY.to_string(), "x".to_string())]);
        let errs = host_endpoint_slice(&ctx(), &slice(labels)).expect_err("refused");
        assert_eq!(errs.len(), 2, "{errs:?}");
    }

    #[rstest]
    #[case::same_namespace(Some(pod_ref(Some("shop"), "p")), Some("p-shop-acme-1-4"))]
    #[case::implicit_namespace(Some(pod_ref(None, "p")), Some("p-shop-acme-1-4"))]
    #[case::other_namespace(Some(pod_ref(Some("web"), "p")), Some("p-web-acme-1-3"))]
    #[case::explicit_v1(
        Some(ObjectReference { api_version: Some("v1".into()), ..pod_ref(None, "p") }),
        Some("p-shop-acme-1-4")
    )]
    #[case::not_a_pod(
        Some(ObjectReference { kind: Some("Node".into()), ..pod_ref(None, "p") }),
        None
    )]
    #[case::pod_of_another_group(
        Some(ObjectReference { api_version: Some("example.com/v1".into()), ..pod_ref(None, "p") }),
        None
    )]
    #[case::nameless(Some(ObjectReference { name: None, ..pod_ref(None, "p") }), None)]
    #[case::absent(None, None)]
    fn target_refs(#[case] r: Option<ObjectReference>, #[case] want: Option<&str>) {
        let got = host_target_ref(&ctx(), "shop", r.as_ref());
        let want = want.map(|name| ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some("tenant-acme".into()),
            name: Some(name.into()),
            ..Default::default()
        });
        assert_eq!(got, want);
    }
}
