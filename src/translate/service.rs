//! Virtual services as host services.
//!
//! The tenant's pods resolve services through the virtual API's DNS, which answers with the
//! *virtual* cluster IP; traffic then goes through the host's data plane. So the host service
//! must have exactly the virtual cluster IP (production runs the virtual API with the host's
//! service CIDR, which makes that possible), and its selector must be narrowed so a tenant's
//! service can only ever pick the host pods of the same tenant and virtual namespace. Node ports
//! are host resources: the host allocates them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};

use super::{Context, NameRule, TranslateError};
use crate::markers;

/// Host name of virtual service `name` in virtual namespace `ns` (services need RFC 1035 labels).
pub fn host_service_name(ctx: &Context, ns: &str, name: &str) -> String {
    ctx.host_name(ns, name, NameRule::Dns1035Label)
}

/// The host service for virtual service `svc`: translated metadata, the selector narrowed to
/// the tenant's pods of the service's namespace, the virtual cluster IPs requested on the host,
/// node ports left to the host. Status is not carried over.
///
/// Refused: a reserved key in the selector, or a service that should have a cluster IP but has
/// none (the host would pick a different one than the tenant's DNS hands out).
pub fn host_service(ctx: &Context, svc: &Service) -> Result<Service, Vec<TranslateError>> {
    let ns = svc.metadata.namespace.as_deref().unwrap_or("");
    let meta = ctx.host_meta("Service", &svc.metadata, NameRule::Dns1035Label);
    let spec = host_spec(
        ctx,
        ns,
        svc.spec.as_ref().unwrap_or(&ServiceSpec::default()),
    );
    match (meta, spec) {
        (Ok(metadata), Ok(spec)) => Ok(Service {
            metadata,
            spec: Some(spec),
            status: None,
        }),
        (meta, spec) => Err(meta.err().into_iter().chain(spec.err()).flatten().collect()),
    }
}

fn host_spec(
    ctx: &Context,
    ns: &str,
    virt: &ServiceSpec,
) -> Result<ServiceSpec, Vec<TranslateError>> {
    let mut errs = Vec::new();
    let external_name = virt.type_.as_deref() == Some("ExternalName");

    // A selector-less service keeps no selector: its endpoints are synced separately, and an
    // empty selector on the host would still be selector-less, never "select everything".
    let selector = match &virt.selector {
        Some(sel) if !sel.is_empty() => {
            let mut host = BTreeMap::new();
            for (k, v) in sel {
                if markers::is_reserved(k) {
                    errs.push(TranslateError::ReservedKey {
                        field: "spec.selector",
                        key: k.clone(),
                    });
                } else {
                    host.insert(k.clone(), v.clone());
                }
            }
            host.extend(ctx.selector_labels(ns));
            Some(host)
        }
        _ => None,
    };

    let (cluster_ip, cluster_ips) = if external_name {
        (None, None)
    } else {
        match virt.cluster_ip.as_deref() {
            Some(ip) if !ip.is_empty() => (Some(ip.to_string()), virt.cluster_ips.clone()),
            _ => {
                errs.push(TranslateError::Missing {
                    field: "spec.clusterIP".into(),
                });
                (None, None)
            }
        }
    };

    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(ServiceSpec {
        type_: virt.type_.clone(),
        selector,
        ports: virt
            .ports
            .as_ref()
            .map(|ports| ports.iter().map(host_port).collect()),
        cluster_ip,
        cluster_ips,
        external_name: if external_name {
            virt.external_name.clone()
        } else {
            None
        },
        session_affinity: virt.session_affinity.clone(),
        session_affinity_config: virt.session_affinity_config.clone(),
        external_traffic_policy: virt.external_traffic_policy.clone(),
        internal_traffic_policy: virt.internal_traffic_policy.clone(),
        publish_not_ready_addresses: virt.publish_not_ready_addresses,
        ip_families: virt.ip_families.clone(),
        ip_family_policy: virt.ip_family_policy.clone(),
        load_balancer_class: virt.load_balancer_class.clone(),
        load_balancer_source_ranges: virt.load_balancer_source_ranges.clone(),
        external_ips: virt.external_ips.clone(),
        allocate_load_balancer_node_ports: virt.allocate_load_balancer_node_ports,
        // A routing preference only; it cannot reach beyond what the host already routes.
        traffic_distribution: virt.traffic_distribution.clone(),
        // Host resources, allocated by the host.
        health_check_node_port: None,
        // Deprecated way to ask for a specific external address: not the tenant's to pick.
        load_balancer_ip: None,
    })
}

fn host_port(p: &ServicePort) -> ServicePort {
    ServicePort {
        node_port: None,
        ..p.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ClientIPConfig, ServiceStatus, SessionAffinityConfig};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use rstest::rstest;

    use crate::translate::test_ctx as ctx;

    fn meta(name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            uid: Some("3f1c0d4e-0000-4000-8000-000000000001".into()),
            resource_version: Some("42".into()),
            labels: Some(BTreeMap::from([("app".into(), name.into())])),
            ..Default::default()
        }
    }

    fn port(name: &str, port: i32, node_port: Option<i32>) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            protocol: Some("TCP".into()),
            target_port: Some(IntOrString::String(name.into())),
            node_port,
            app_protocol: None,
        }
    }

    fn svc(spec: ServiceSpec) -> Service {
        Service {
            metadata: meta("web"),
            spec: Some(spec),
            status: None,
        }
    }

    fn cluster_ip() -> ServiceSpec {
        ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(BTreeMap::from([("app".into(), "web".into())])),
            cluster_ip: Some("10.96.12.7".into()),
            cluster_ips: Some(vec!["10.96.12.7".into()]),
            ip_families: Some(vec!["IPv4".into()]),
            ip_family_policy: Some("SingleStack".into()),
            ports: Some(vec![port("http", 80, None)]),
            session_affinity: Some("ClientIP".into()),
            session_affinity_config: Some(SessionAffinityConfig {
                client_ip: Some(ClientIPConfig {
                    timeout_seconds: Some(600),
                }),
            }),
            internal_traffic_policy: Some("Cluster".into()),
            ..Default::default()
        }
    }

    #[test]
    fn cluster_ip_service() {
        let host = host_service(&ctx(), &svc(cluster_ip())).expect("translates");
        insta::assert_yaml_snapshot!("service_cluster_ip", host);
    }

    #[test]
    fn load_balancer_service() {
        let spec = ServiceSpec {
            type_: Some("LoadBalancer".into()),
            cluster_ip: Some("10.96.0.20".into()),
            cluster_ips: Some(vec!["10.96.0.20".into(), "fd00::20".into()]),
            ip_families: Some(vec!["IPv4".into(), "IPv6".into()]),
            ip_family_policy: Some("PreferDualStack".into()),
            selector: Some(BTreeMap::from([("app".into(), "web".into())])),
            ports: Some(vec![
                port("http", 80, Some(30080)),
                port("https", 443, Some(30443)),
            ]),
            external_traffic_policy: Some("Local".into()),
            health_check_node_port: Some(31234),
            load_balancer_class: Some("example.com/lb".into()),
            load_balancer_ip: Some("203.0.113.9".into()),
            load_balancer_source_ranges: Some(vec!["198.51.100.0/24".into()]),
            allocate_load_balancer_node_ports: Some(true),
            external_ips: Some(vec!["192.0.2.1".into()]),
            publish_not_ready_addresses: Some(true),
            traffic_distribution: Some("PreferClose".into()),
            ..Default::default()
        };
        let mut virt = svc(spec);
        virt.status = Some(ServiceStatus::default());
        let host = host_service(&ctx(), &virt).expect("translates");
        insta::assert_yaml_snapshot!("service_load_balancer", host);
    }

    #[test]
    fn headless_selectorless_service() {
        let spec = ServiceSpec {
            cluster_ip: Some("None".into()),
            cluster_ips: Some(vec!["None".into()]),
            ports: Some(vec![port("db", 5432, None)]),
            ..Default::default()
        };
        let host = host_service(&ctx(), &svc(spec)).expect("translates");
        insta::assert_yaml_snapshot!("service_headless_selectorless", host);
    }

    #[test]
    fn external_name_service() {
        let spec = ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some("db.example.com".into()),
            cluster_ip: Some("10.96.0.1".into()),
            ..Default::default()
        };
        let host = host_service(&ctx(), &svc(spec)).expect("translates");
        insta::assert_yaml_snapshot!("service_external_name", host);
    }

    #[rstest]
    #[case::absent(None)]
    #[case::empty(Some(BTreeMap::new()))]
    fn selector_less_stays_selector_less(#[case] selector: Option<BTreeMap<String, String>>) {
        let host = host_service(
            &ctx(),
            &svc(ServiceSpec {
                selector,
                ..cluster_ip()
            }),
        )
        .expect("ok");
        assert_eq!(host.spec.and_then(|s| s.selector), None);
    }

    #[rstest]
    #[case::plain("ClusterIP", "10.96.1.1", Some("10.96.1.1"))]
    #[case::node_port("NodePort", "10.96.1.2", Some("10.96.1.2"))]
    #[case::headless("ClusterIP", "None", Some("None"))]
    #[case::external_name("ExternalName", "10.96.1.3", None)]
    fn cluster_ip_is_the_virtual_one(
        #[case] type_: &str,
        #[case] virt_ip: &str,
        #[case] want: Option<&str>,
    ) {
        let spec = ServiceSpec {
            type_: Some(type_.into()),
            cluster_ip: Some(virt_ip.into()),
            cluster_ips: Some(vec![virt_ip.into()]),
            ..cluster_ip()
        };
        let host = host_service(&ctx(), &svc(spec))
            .expect("ok")
            .spec
            .expect("spec");
        assert_eq!(host.cluster_ip.as_deref(), want);
        assert_eq!(host.cluster_ips, want.map(|ip| vec![ip.to_string()]));
    }

    #[test]
    fn selector_is_narrowed_to_the_tenant_namespace() {
        let host = host_service(&ctx(), &svc(cluster_ip())).expect("ok");
        let sel = host.spec.and_then(|s| s.selector).expect("selector");
        assert_eq!(sel["app"], "web");
        assert_eq!(sel[markers::MANAGED_BY], "acme");
        assert_eq!(sel[markers::VIRTUAL_NAMESPACE_LABEL], "shop");
        assert_eq!(sel.len(), 3);
    }

    #[rstest]
    #[case::forged_selector(
        ServiceSpec {
            selector: Some(BTreeMap::from([(markers::MANAGED_BY.into(), "victim".into())])),
            ..cluster_ip()
        },
        vec!["spec.selector uses the reserved prefix \"vcsync.io/\": \"vcsync.io/managed-by\""],
    )]
    #[case::no_cluster_ip(
        ServiceSpec { cluster_ip: None, cluster_ips: None, ..cluster_ip() },
        vec!["spec.clusterIP is required"],
    )]
    #[case::empty_cluster_ip(
        ServiceSpec { cluster_ip: Some(String::new()), ..cluster_ip() },
        vec!["spec.clusterIP is required"],
    )]
    fn refused(#[case] spec: ServiceSpec, #[case] want: Vec<&str>) {
        let errs = host_service(&ctx(), &svc(spec)).expect_err("refused");
        let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn metadata_and_spec_errors_are_reported_together() {
        let mut virt = svc(ServiceSpec {
            cluster_ip: None,
            ..cluster_ip()
        });
        virt.metadata.labels = Some(BTreeMap::from([(markers::VIRTUAL_UID.into(), "x".into())]));
        let errs = host_service(&ctx(), &virt).expect_err("refused");
        assert_eq!(errs.len(), 2, "{errs:?}");
    }

    #[test]
    fn no_spec_is_a_service_without_cluster_ip() {
        let virt = Service {
            metadata: meta("web"),
            ..Default::default()
        };
        let errs = host_service(&ctx(), &virt).expect_err("refused");
        assert_eq!(
            errs,
            vec![TranslateError::Missing {
                field: "spec.clusterIP".into()
            }]
        );
    }

    #[test]
    fn service_names_are_dns_1035_labels() {
        assert_eq!(
            host_service_name(&ctx(), "shop", "web"),
            "web-shop-acme-3-4"
        );
        let long = host_service_name(&ctx(), "shop", &"s".repeat(63));
        assert_eq!(long.len(), 63);
    }
}
