//! Services, selector-less Endpoints and EndpointSlices: nothing a tenant writes may turn a
//! host Service into a way into the host network.
//!
//! - `externalIPs` make kube-proxy on every node capture traffic to those addresses
//!   (CVE-2020-8554): each must lie inside `services.allowedExternalIPCidrs`.
//! - NodePort and LoadBalancer Services open ports on every node or an external address; both
//!   need the policy's consent. A LoadBalancer without NodePort consent gets
//!   `allocateLoadBalancerNodePorts: false`.
//! - Selector-less Endpoints / EndpointSlices and ExternalName targets let a tenant aim a host
//!   Service (and everything that trusts it, such as an ingress controller) at any address:
//!   targets must be inside `services.allowedEndpointCidrs` / match
//!   `services.allowedExternalNames`.
//!
//! Whatever the allowlists say, loopback, link-local (cloud metadata), unspecified and multicast
//! addresses — also in their IPv4-mapped, IPv4-compatible and NAT64 IPv6 forms — the policy's
//! `deniedCidrs` and the host's API server and node addresses ([`super::HostFacts`]) are
//! refused, and so is every address inside the host's Service CIDRs
//! ([`super::HostFacts::service_cidrs`]): a Service virtual IP is no endpoint (Kubernetes does
//! not support one there), and the host `kubernetes` Service is one of them.

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::net::{self, Cidr, HostPattern};
use super::{Policy, Violation};

/// Every static rule name of this module.
pub const RULES: &[&str] = &[
    "service.node_port",
    "service.load_balancer",
    "service.external_ips",
    "service.load_balancer_ip",
    "service.external_name",
    "endpoints.address",
];

/// The ranges refused on top of the built-in ones, with why.
pub(super) fn denied(policy: &Policy) -> Vec<(Cidr, &'static str)> {
    let mut out: Vec<(Cidr, &'static str)> = policy
        .services
        .denied_cidrs
        .iter()
        .map(|c| (*c, "inside services.deniedCidrs"))
        .collect();
    out.extend(
        policy
            .host_facts
            .api_server
            .iter()
            .map(|ip| (Cidr::from(*ip), "the host API server")),
    );
    out.extend(
        policy
            .host_facts
            .nodes
            .iter()
            .map(|ip| (Cidr::from(*ip), "a host node")),
    );
    out.extend(
        policy
            .host_facts
            .service_cidrs
            .iter()
            .map(|c| (*c, "inside the host Service CIDR: a Service virtual IP")),
    );
    out
}

/// Check one target address: `Err(reason)` unless it parses, is not denied and lies inside
/// `allowed`.
fn check_address(
    policy: &Policy,
    addr: &str,
    allowed: &[Cidr],
    setting: &str,
) -> Result<(), String> {
    let Some(ip) = net::parse_ip(addr) else {
        return Err(format!("{addr:?} is not an IP address"));
    };
    let denied = denied(policy);
    if let Some(why) = net::denied_reason(ip, denied.iter().map(|(c, w)| (c, *w))) {
        return Err(format!("{why} and may never be a target"));
    }
    if !allowed.iter().any(|c| c.contains(ip)) {
        return Err(format!(
            "{ip} is not inside {setting} ({})",
            net::cidr_list(allowed)
        ));
    }
    Ok(())
}

fn check_hostname(patterns: &[HostPattern], name: &str) -> Result<(), String> {
    if patterns.iter().any(|p| p.matches(name)) {
        return Ok(());
    }
    let list = if patterns.is_empty() {
        "none".to_owned()
    } else {
        patterns
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(format!(
        "{name:?} does not match services.allowedExternalNames ({list})"
    ))
}

/// Check a virtual Service. `Ok`: the Service as it may reach the host (a LoadBalancer without
/// NodePort consent gets `allocateLoadBalancerNodePorts: false`); `Err`: every violation.
pub fn check_service(policy: &Policy, svc: &Service) -> Result<Service, Vec<Violation>> {
    let p = &policy.services;
    let mut out = svc.clone();
    let mut v = Vec::new();
    let Some(spec) = out.spec.as_mut() else {
        return Ok(out);
    };
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    match ty {
        "NodePort" if !p.allow_node_port => v.push(Violation::new(
            "service.node_port",
            "spec.type",
            "type NodePort is not allowed: it opens a port on every host node (services.allowNodePort)",
        )),
        "LoadBalancer" if !p.allow_load_balancer => v.push(Violation::new(
            "service.load_balancer",
            "spec.type",
            "type LoadBalancer is not allowed (services.allowLoadBalancer)",
        )),
        "LoadBalancer" if !p.allow_node_port => {
            if spec.allocate_load_balancer_node_ports == Some(true) {
                v.push(Violation::new(
                    "service.node_port",
                    "spec.allocateLoadBalancerNodePorts",
                    "node ports are not allowed (services.allowNodePort); leave allocateLoadBalancerNodePorts unset or false",
                ));
            }
            spec.allocate_load_balancer_node_ports = Some(false);
        }
        _ => {}
    }
    if !p.allow_node_port {
        for (i, port) in spec.ports.iter().flatten().enumerate() {
            if port.node_port.is_some_and(|n| n != 0) {
                v.push(Violation::new(
                    "service.node_port",
                    format!("spec.ports[{i}].nodePort"),
                    "node ports are not allowed (services.allowNodePort)",
                ));
            }
        }
    }
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        if let Err(why) = check_address(
            policy,
            ip,
            &p.allowed_external_ip_cidrs,
            "services.allowedExternalIPCidrs",
        ) {
            v.push(Violation::new(
                "service.external_ips",
                format!("spec.externalIPs[{i}]"),
                why,
            ));
        }
    }
    if let Some(ip) = spec.load_balancer_ip.as_deref().filter(|s| !s.is_empty())
        && let Err(why) = check_address(
            policy,
            ip,
            &p.allowed_load_balancer_ip_cidrs,
            "services.allowedLoadBalancerIPCidrs",
        )
    {
        v.push(Violation::new(
            "service.load_balancer_ip",
            "spec.loadBalancerIP",
            why,
        ));
    }
    if ty == "ExternalName" {
        let name = spec.external_name.as_deref().unwrap_or("");
        let normalized = net::normalize_host(name);
        let verdict = if net::parse_ip(&normalized).is_some() {
            check_address(
                policy,
                &normalized,
                &p.allowed_endpoint_cidrs,
                "services.allowedEndpointCidrs",
            )
        } else {
            check_hostname(&p.allowed_external_names, &normalized)
        };
        if let Err(why) = verdict {
            v.push(Violation::new(
                "service.external_name",
                "spec.externalName",
                why,
            ));
        }
    }
    if v.is_empty() { Ok(out) } else { Err(v) }
}

/// Check a virtual Endpoints object (of a selector-less Service): every address, ready or not,
/// must be an allowed target.
pub fn check_endpoints(policy: &Policy, eps: &Endpoints) -> Result<Endpoints, Vec<Violation>> {
    let mut v = Vec::new();
    for (s, subset) in eps.subsets.iter().flatten().enumerate() {
        for (list, addrs) in [
            ("addresses", subset.addresses.as_ref()),
            ("notReadyAddresses", subset.not_ready_addresses.as_ref()),
        ] {
            for (a, addr) in addrs.into_iter().flatten().enumerate() {
                if let Err(why) = check_address(
                    policy,
                    &addr.ip,
                    &policy.services.allowed_endpoint_cidrs,
                    "services.allowedEndpointCidrs",
                ) {
                    v.push(Violation::new(
                        "endpoints.address",
                        format!("subsets[{s}].{list}[{a}].ip"),
                        why,
                    ));
                }
            }
        }
    }
    if v.is_empty() {
        Ok(eps.clone())
    } else {
        Err(v)
    }
}

/// Check a virtual EndpointSlice (of a selector-less Service): IP addresses must be allowed
/// targets; FQDN addresses must match `services.allowedExternalNames`.
pub fn check_endpoint_slice(
    policy: &Policy,
    slice: &EndpointSlice,
) -> Result<EndpointSlice, Vec<Violation>> {
    let mut v = Vec::new();
    let fqdn = slice.address_type == "FQDN";
    for (e, ep) in slice.endpoints.iter().flatten().enumerate() {
        for (a, addr) in ep.addresses.iter().enumerate() {
            let verdict = if fqdn && net::parse_ip(addr).is_none() {
                check_hostname(
                    &policy.services.allowed_external_names,
                    &net::normalize_host(addr),
                )
            } else {
                check_address(
                    policy,
                    addr,
                    &policy.services.allowed_endpoint_cidrs,
                    "services.allowedEndpointCidrs",
                )
            };
            if let Err(why) = verdict {
                v.push(Violation::new(
                    "endpoints.address",
                    format!("endpoints[{e}].addresses[{a}]"),
                    why,
                ));
            }
        }
    }
    if v.is_empty() {
        Ok(slice.clone())
    } else {
        Err(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::{Value, json};

    fn policy(yaml: &str) -> Policy {
        Policy::from_yaml(yaml).unwrap()
    }

    fn svc(spec: Value) -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": "s", "namespace": "default"}, "spec": spec}),
        )
        .unwrap()
    }

    fn rules<T>(r: &Result<T, Vec<Violation>>) -> Vec<&'static str> {
        match r {
            Ok(_) => vec![],
            Err(v) => v.iter().map(|v| v.rule).collect(),
        }
    }

    const OPEN: &str = r#"
services:
  allowNodePort: true
  allowLoadBalancer: true
  allowedExternalIPCidrs: [203.0.113.0/24, "2001:db8:1::/48"]
  allowedLoadBalancerIPCidrs: [198.51.100.0/24]
  allowedEndpointCidrs: [10.20.0.0/16, 0.0.0.0/0, "::/0"]
  deniedCidrs: [10.20.30.0/24]
  allowedExternalNames: ["*.db.example.com", api.partner.example]
"#;

    #[rstest]
    #[case::cluster_ip("", json!({"ports": [{"port": 80}]}), vec![])]
    #[case::headless("", json!({"clusterIP": "None"}), vec![])]
    #[case::node_port("", json!({"type": "NodePort", "ports": [{"port": 80}]}), vec!["service.node_port"])]
    #[case::node_port_allowed("services: {allowNodePort: true}", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}), vec![])]
    #[case::load_balancer("", json!({"type": "LoadBalancer"}), vec!["service.load_balancer"])]
    #[case::load_balancer_allowed("services: {allowLoadBalancer: true}", json!({"type": "LoadBalancer"}), vec![])]
    #[case::lb_explicit_node_ports("services: {allowLoadBalancer: true}", json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": true}), vec!["service.node_port"])]
    #[case::lb_pinned_node_port("services: {allowLoadBalancer: true}", json!({"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 30080}]}), vec!["service.node_port"])]
    #[case::external_ips_default("", json!({"externalIPs": ["203.0.113.5"]}), vec!["service.external_ips"])]
    #[case::external_ips_allowed(OPEN, json!({"externalIPs": ["203.0.113.5", "2001:db8:1::5"]}), vec![])]
    #[case::external_ips_outside(OPEN, json!({"externalIPs": ["203.0.113.5", "8.8.8.8"]}), vec!["service.external_ips"])]
    #[case::external_ips_mapped_inside(OPEN, json!({"externalIPs": ["::ffff:203.0.113.5"]}), vec![])]
    #[case::external_ips_loopback(OPEN, json!({"externalIPs": ["127.0.0.1"]}), vec!["service.external_ips"])]
    #[case::external_ips_garbage(OPEN, json!({"externalIPs": ["203.0.113.5/32"]}), vec!["service.external_ips"])]
    #[case::lb_ip_default("services: {allowLoadBalancer: true}", json!({"type": "LoadBalancer", "loadBalancerIP": "198.51.100.7"}), vec!["service.load_balancer_ip"])]
    #[case::lb_ip_allowed(OPEN, json!({"type": "LoadBalancer", "loadBalancerIP": "198.51.100.7"}), vec![])]
    #[case::external_name_default("", json!({"type": "ExternalName", "externalName": "db.example.com"}), vec!["service.external_name"])]
    #[case::external_name_allowed(OPEN, json!({"type": "ExternalName", "externalName": "pg.db.example.com"}), vec![])]
    #[case::external_name_exact(OPEN, json!({"type": "ExternalName", "externalName": "API.partner.example."}), vec![])]
    #[case::external_name_host_api(OPEN, json!({"type": "ExternalName", "externalName": "kubernetes.default.svc.cluster.local"}), vec!["service.external_name"])]
    #[case::external_name_metadata_ip(OPEN, json!({"type": "ExternalName", "externalName": "169.254.169.254"}), vec!["service.external_name"])]
    #[case::external_name_ip_allowed(OPEN, json!({"type": "ExternalName", "externalName": "10.20.1.1"}), vec![])]
    fn services(#[case] yaml: &str, #[case] spec: Value, #[case] want: Vec<&str>) {
        assert_eq!(rules(&check_service(&policy(yaml), &svc(spec))), want);
    }

    #[test]
    fn load_balancers_without_node_port_consent_get_none() {
        let got = check_service(
            &policy("services: {allowLoadBalancer: true}"),
            &svc(json!({"type": "LoadBalancer"})),
        )
        .unwrap();
        assert_eq!(
            got.spec.unwrap().allocate_load_balancer_node_ports,
            Some(false)
        );
        let got = check_service(&policy(OPEN), &svc(json!({"type": "LoadBalancer"}))).unwrap();
        assert_eq!(got.spec.unwrap().allocate_load_balancer_node_ports, None);
    }

    fn eps(ips: &[&str]) -> Endpoints {
        serde_json::from_value(json!({
            "metadata": {"name": "s", "namespace": "default"},
            "subsets": [{"addresses": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(), "ports": [{"port": 80}]}]
        }))
        .unwrap()
    }

    fn policy_with_host() -> Policy {
        let mut p = policy(OPEN);
        p.host_facts.api_server = vec!["10.96.0.1".parse().unwrap(), "192.0.2.10".parse().unwrap()];
        p.host_facts.nodes = vec![
            "10.0.0.11".parse().unwrap(),
            "2001:db8:9::11".parse().unwrap(),
        ];
        p.host_facts.service_cidrs = vec![
            "10.96.0.0/16".parse().unwrap(),
            "fd00:96::/112".parse().unwrap(),
        ];
        p
    }

    #[rstest]
    #[case::pod_ip("10.20.1.5", None)]
    #[case::metadata("169.254.169.254", Some("link-local"))]
    #[case::metadata_mapped("::ffff:169.254.169.254", Some("link-local"))]
    #[case::metadata_v6_link_local("fe80::a9fe:a9fe", Some("link-local"))]
    #[case::loopback("127.0.0.1", Some("loopback"))]
    #[case::loopback_v6("::1", Some("loopback"))]
    #[case::loopback_mapped("::ffff:127.0.0.1", Some("loopback"))]
    #[case::unspecified("0.0.0.0", Some("unspecified"))]
    #[case::api_server_cluster_ip("10.96.0.1", Some("host API server"))]
    #[case::api_server_mapped("::ffff:192.0.2.10", Some("host API server"))]
    #[case::node("10.0.0.11", Some("host node"))]
    #[case::service_vip("10.96.7.7", Some("host Service CIDR"))]
    #[case::service_vip_v6("fd00:96::7", Some("host Service CIDR"))]
    #[case::service_vip_mapped("::ffff:10.96.7.7", Some("host Service CIDR"))]
    #[case::beside_service_cidr("10.97.0.1", None)]
    #[case::node_v6("2001:db8:9::11", Some("host node"))]
    #[case::denied_range("10.20.30.40", Some("services.deniedCidrs"))]
    #[case::not_an_ip("db.example.com", Some("not an IP address"))]
    fn endpoint_targets(#[case] ip: &str, #[case] want: Option<&str>) {
        let r = check_endpoints(&policy_with_host(), &eps(&["10.20.1.9", ip]));
        match want {
            None => assert!(r.is_ok(), "{r:?}"),
            Some(w) => {
                let v = r.unwrap_err();
                assert_eq!(v.len(), 1, "{v:?}");
                assert_eq!(v[0].rule, "endpoints.address");
                assert_eq!(v[0].field, "subsets[0].addresses[1].ip");
                assert!(v[0].message.contains(w), "{}", v[0].message);
            }
        }
    }

    #[test]
    fn default_policy_refuses_every_endpoint_and_checks_not_ready_addresses() {
        let r = check_endpoints(&Policy::default(), &eps(&["10.20.1.5"]));
        assert!(r.unwrap_err()[0].message.contains("(none)"));
        let e: Endpoints = serde_json::from_value(json!({
            "subsets": [{"notReadyAddresses": [{"ip": "169.254.169.254"}]}]
        }))
        .unwrap();
        let v = check_endpoints(&policy(OPEN), &e).unwrap_err();
        assert_eq!(v[0].field, "subsets[0].notReadyAddresses[0].ip");
    }

    fn slice(ty: &str, addrs: &[&str]) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": "s-1", "namespace": "default"},
            "addressType": ty,
            "endpoints": [{"addresses": addrs}]
        }))
        .unwrap()
    }

    #[rstest]
    #[case::ipv4("IPv4", "10.20.1.5", true)]
    #[case::ipv4_metadata("IPv4", "169.254.169.254", false)]
    #[case::ipv6_link_local("IPv6", "fe80::1", false)]
    #[case::ipv6_mapped_loopback("IPv6", "::ffff:7f00:1", false)]
    #[case::fqdn_allowed("FQDN", "pg.db.example.com", true)]
    #[case::fqdn_other("FQDN", "metadata.google.internal", false)]
    #[case::fqdn_ip_literal("FQDN", "169.254.169.254", false)]
    fn endpoint_slices(#[case] ty: &str, #[case] addr: &str, #[case] ok: bool) {
        let r = check_endpoint_slice(&policy_with_host(), &slice(ty, &[addr]));
        assert_eq!(r.is_ok(), ok, "{r:?}");
        if let Err(v) = r {
            assert_eq!(v[0].field, "endpoints[0].addresses[0]");
        }
    }
}
