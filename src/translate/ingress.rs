//! Virtual ingresses as host ingresses.
//!
//! The host's ingress controller only sees the host namespace, so every name an ingress uses
//! must be the host name of the synced object: backend services and TLS secrets. `resource`
//! backends point at arbitrary objects (of any API group) that vcsync does not sync, so they
//! cannot be translated and are refused rather than passed through to name a host object.
//! The ingress class and annotations are kept as they are; which of them a tenant may use is a
//! policy question answered elsewhere.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS,
};

use super::references::{References, host_secret_name};
use super::service::host_service_name;
use super::{Context, NameRule, TranslateError};

/// The host ingress for virtual ingress `ing`: translated metadata, backend services and TLS
/// secrets renamed to their host names. Refused: `resource` backends. Status is not carried over.
pub fn host_ingress(ctx: &Context, ing: &Ingress) -> Result<Ingress, Vec<TranslateError>> {
    let ns = ing.metadata.namespace.as_deref().unwrap_or("");
    let mut errs = Vec::new();
    let metadata = ctx.host_meta("Ingress", &ing.metadata, NameRule::Dns1123Subdomain);
    let spec = ing.spec.as_ref().map(|spec| IngressSpec {
        default_backend: spec
            .default_backend
            .as_ref()
            .map(|b| host_backend(ctx, ns, b, "spec.defaultBackend", &mut errs)),
        ingress_class_name: spec.ingress_class_name.clone(),
        rules: spec.rules.as_ref().map(|rules| {
            rules
                .iter()
                .enumerate()
                .map(|(i, rule)| IngressRule {
                    host: rule.host.clone(),
                    http: rule.http.as_ref().map(|http| HTTPIngressRuleValue {
                        paths: http
                            .paths
                            .iter()
                            .enumerate()
                            .map(|(j, path)| HTTPIngressPath {
                                backend: host_backend(
                                    ctx,
                                    ns,
                                    &path.backend,
                                    &format!("spec.rules[{i}].http.paths[{j}].backend"),
                                    &mut errs,
                                ),
                                ..path.clone()
                            })
                            .collect(),
                    }),
                })
                .collect()
        }),
        tls: spec.tls.as_ref().map(|tls| {
            tls.iter()
                .map(|t| IngressTLS {
                    hosts: t.hosts.clone(),
                    secret_name: t
                        .secret_name
                        .as_deref()
                        .filter(|s| !s.is_empty())
                        .map(|s| host_secret_name(ctx, ns, s)),
                })
                .collect()
        }),
    });
    match metadata {
        Ok(metadata) if errs.is_empty() => Ok(Ingress {
            metadata,
            spec,
            status: None,
        }),
        Ok(_) => Err(errs),
        Err(mut meta_errs) => {
            meta_errs.extend(errs);
            Err(meta_errs)
        }
    }
}

fn host_backend(
    ctx: &Context,
    ns: &str,
    b: &IngressBackend,
    field: &str,
    errs: &mut Vec<TranslateError>,
) -> IngressBackend {
    if b.resource.is_some() {
        errs.push(TranslateError::Unsupported {
            field: format!("{field}.resource"),
            reason: "resource backends name objects vcsync does not sync; use a service backend",
        });
    }
    IngressBackend {
        resource: None,
        service: b.service.as_ref().map(|s| IngressServiceBackend {
            name: host_service_name(ctx, ns, &s.name),
            port: s.port.clone(),
        }),
    }
}

/// The secrets virtual ingress `ing` references: its TLS secrets. (Its backend services are
/// synced as services in their own right.)
pub fn ingress_references(ing: &Ingress) -> References {
    let mut refs = References::default();
    let tls = ing.spec.iter().flat_map(|s| s.tls.iter().flatten());
    refs.secrets.extend(
        tls.filter_map(|t| t.secret_name.clone())
            .filter(|s| !s.is_empty()),
    );
    refs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::TypedLocalObjectReference;
    use k8s_openapi::api::networking::v1::{IngressStatus, ServiceBackendPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use rstest::rstest;

    use crate::translate::test_ctx as ctx;

    fn service(name: &str, port: ServiceBackendPort) -> IngressBackend {
        IngressBackend {
            service: Some(IngressServiceBackend {
                name: name.into(),
                port: Some(port),
            }),
            resource: None,
        }
    }

    fn resource() -> IngressBackend {
        IngressBackend {
            resource: Some(TypedLocalObjectReference {
                api_group: Some("k8s.example.com".into()),
                kind: "StorageBucket".into(),
                name: "static-assets".into(),
            }),
            service: None,
        }
    }

    fn number(n: i32) -> ServiceBackendPort {
        ServiceBackendPort {
            number: Some(n),
            name: None,
        }
    }

    fn path(p: &str, backend: IngressBackend) -> HTTPIngressPath {
        HTTPIngressPath {
            path: Some(p.into()),
            path_type: "Prefix".into(),
            backend,
        }
    }

    fn ingress(default_backend: Option<IngressBackend>, paths: Vec<HTTPIngressPath>) -> Ingress {
        Ingress {
            metadata: ObjectMeta {
                name: Some("shop".into()),
                namespace: Some("shop".into()),
                uid: Some("u-ing".into()),
                annotations: Some(BTreeMap::from([(
                    "nginx.ingress.kubernetes.io/rewrite-target".into(),
                    "/".into(),
                )])),
                ..Default::default()
            },
            spec: Some(IngressSpec {
                ingress_class_name: Some("nginx".into()),
                default_backend,
                rules: Some(vec![
                    IngressRule {
                        host: Some("shop.example.com".into()),
                        http: Some(HTTPIngressRuleValue { paths }),
                    },
                    IngressRule {
                        host: Some("bare.example.com".into()),
                        http: None,
                    },
                ]),
                tls: Some(vec![
                    IngressTLS {
                        hosts: Some(vec!["shop.example.com".into()]),
                        secret_name: Some("shop-tls".into()),
                    },
                    IngressTLS {
                        hosts: Some(vec!["bare.example.com".into()]),
                        secret_name: None,
                    },
                ]),
            }),
            status: Some(IngressStatus::default()),
        }
    }

    #[test]
    fn ingress_snapshot() {
        let ing = ingress(
            Some(service("fallback", number(8080))),
            vec![
                path("/", service("web", number(80))),
                path(
                    "/api",
                    service(
                        "api",
                        ServiceBackendPort {
                            name: Some("http".into()),
                            number: None,
                        },
                    ),
                ),
            ],
        );
        let host = host_ingress(&ctx(), &ing).expect("translates");
        insta::assert_yaml_snapshot!("ingress", host);
    }

    #[test]
    fn service_names_and_secrets_are_host_names() {
        let ing = ingress(
            Some(service("fallback", number(1))),
            vec![path("/", service("web", number(80)))],
        );
        let spec = host_ingress(&ctx(), &ing).expect("ok").spec.expect("spec");
        let name = |b: &IngressBackend| b.service.as_ref().map(|s| s.name.clone());
        assert_eq!(
            name(spec.default_backend.as_ref().expect("default")).as_deref(),
            Some("fallback-shop-acme-8-4")
        );
        let rules = spec.rules.expect("rules");
        let paths = &rules[0].http.as_ref().expect("http").paths;
        assert_eq!(
            name(&paths[0].backend).as_deref(),
            Some("web-shop-acme-3-4")
        );
        let tls = spec.tls.expect("tls");
        assert_eq!(
            tls[0].secret_name.as_deref(),
            Some("shop-tls-shop-acme-8-4")
        );
        assert_eq!(tls[1].secret_name, None);
    }

    #[rstest]
    #[case::default_backend(Some(resource()), vec![], vec!["spec.defaultBackend.resource"])]
    #[case::path(
        None,
        vec![path("/", service("web", number(80))), path("/static", resource())],
        vec!["spec.rules[0].http.paths[1].backend.resource"],
    )]
    #[case::both(
        Some(resource()),
        vec![path("/static", resource())],
        vec!["spec.defaultBackend.resource", "spec.rules[0].http.paths[0].backend.resource"],
    )]
    fn resource_backends_are_refused(
        #[case] default_backend: Option<IngressBackend>,
        #[case] paths: Vec<HTTPIngressPath>,
        #[case] fields: Vec<&str>,
    ) {
        let errs = host_ingress(&ctx(), &ingress(default_backend, paths)).expect_err("refused");
        let want: Vec<String> = fields
            .iter()
            .map(|f| format!("{f} is not supported: resource backends name objects vcsync does not sync; use a service backend"))
            .collect();
        let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn no_spec_stays_no_spec() {
        let ing = Ingress {
            spec: None,
            ..ingress(None, vec![])
        };
        let host = host_ingress(&ctx(), &ing).expect("ok");
        assert_eq!(host.spec, None);
        assert!(ingress_references(&ing).is_empty());
    }

    #[test]
    fn references_are_the_tls_secrets() {
        let mut ing = ingress(None, vec![path("/", service("web", number(80)))]);
        if let Some(tls) = ing.spec.as_mut().and_then(|s| s.tls.as_mut()) {
            tls.push(IngressTLS {
                hosts: None,
                secret_name: Some("other-tls".into()),
            });
            tls.push(IngressTLS {
                hosts: None,
                secret_name: Some(String::new()),
            });
        }
        let refs = ingress_references(&ing);
        assert_eq!(
            refs.secrets.into_iter().collect::<Vec<_>>(),
            vec!["other-tls", "shop-tls"]
        );
        assert!(refs.config_maps.is_empty() && refs.pvcs.is_empty());
    }
}
