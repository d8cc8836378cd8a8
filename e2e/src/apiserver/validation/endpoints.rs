//! Endpoints (core) and EndpointSlice (discovery.k8s.io) validation, including the rule that
//! endpoints may not point at loopback, link-local or link-local-multicast addresses.

use std::net::IpAddr;

use serde_json::Value;

use super::meta::{FIELD_IMMUTABLE, validate_labels, validate_object_meta};
use super::names::{self, is_valid_ip};
use super::service::validate_qualified_name;
use super::{
    arr_at, child, duplicate, get, go_quote, index, int_at, invalid_raw, invalid_str,
    not_supported, opt_str, required, str_at, strs_at, too_many,
};
use crate::apiserver::errors::FieldError;

const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];

/// `ValidateNonSpecialIP`: rejects unparsable, unspecified, loopback and link-local addresses.
pub fn validate_non_special_ip(ip: &str, path: &str) -> Vec<FieldError> {
    let Some(addr) = names::parse_ip_sloppy(ip) else {
        return vec![invalid_str(path, ip, "must be a valid IP address")];
    };
    let mut errs = Vec::new();
    let (unspecified, loopback, ll_unicast, ll_multicast) = match addr {
        IpAddr::V4(a) => (
            a.is_unspecified(),
            a.is_loopback(),
            a.is_link_local(),
            a.octets()[..3] == [224, 0, 0],
        ),
        IpAddr::V6(a) => {
            let seg = a.segments();
            if let Some(v4) = a.to_ipv4_mapped() {
                (
                    v4.is_unspecified(),
                    v4.is_loopback(),
                    v4.is_link_local(),
                    v4.octets()[..3] == [224, 0, 0],
                )
            } else {
                (
                    a.is_unspecified(),
                    a.is_loopback(),
                    seg[0] & 0xffc0 == 0xfe80,
                    seg[0] & 0xff0f == 0xff02,
                )
            }
        }
    };
    if unspecified {
        errs.push(invalid_str(
            path,
            ip,
            format!("may not be unspecified ({ip})"),
        ));
    }
    if loopback {
        errs.push(invalid_str(
            path,
            ip,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    if ll_unicast {
        errs.push(invalid_str(
            path,
            ip,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    if ll_multicast {
        errs.push(invalid_str(
            path,
            ip,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
    errs
}

/// `ValidateEndpoints` (create and, after the metadata update check, update).
pub fn validate_endpoints(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, true, names::name_is_dns_subdomain, "metadata");
    for (i, ss) in arr_at(obj, &["subsets"]).iter().enumerate() {
        let p = index("subsets", i);
        let (addrs, not_ready) = (
            arr_at(ss, &["addresses"]),
            arr_at(ss, &["notReadyAddresses"]),
        );
        if addrs.is_empty() && not_ready.is_empty() {
            errs.push(required(
                &p,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (j, a) in addrs.iter().enumerate() {
            errs.extend(validate_endpoint_address(
                a,
                &index(&child(&p, "addresses"), j),
            ));
        }
        for (j, a) in not_ready.iter().enumerate() {
            errs.extend(validate_endpoint_address(
                a,
                &index(&child(&p, "notReadyAddresses"), j),
            ));
        }
        let ports = arr_at(ss, &["ports"]);
        for (j, port) in ports.iter().enumerate() {
            errs.extend(validate_endpoint_port(
                port,
                ports.len() > 1,
                &index(&child(&p, "ports"), j),
            ));
        }
    }
    errs
}

fn validate_endpoint_address(a: &Value, path: &str) -> Vec<FieldError> {
    let ip = str_at(a, &["ip"]);
    let mut errs = is_valid_ip(&child(path, "ip"), ip);
    let host = str_at(a, &["hostname"]);
    if !host.is_empty() {
        for m in names::is_dns1123_label(host) {
            errs.push(invalid_str(child(path, "hostname"), host, m));
        }
    }
    if let Some(node) = opt_str(a, &["nodeName"]) {
        for m in names::name_is_dns_subdomain(node, false) {
            errs.push(invalid_str(child(path, "nodeName"), node, m));
        }
    }
    errs.extend(validate_non_special_ip(ip, &child(path, "ip")));
    errs
}

fn validate_endpoint_port(p: &Value, require_name: bool, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_at(p, &["name"]);
    if require_name && name.is_empty() {
        errs.push(required(child(path, "name"), ""));
    } else if !name.is_empty() {
        for m in names::is_dns1123_label(name) {
            errs.push(invalid_str(child(path, "name"), name, m));
        }
    }
    let port = int_at(p, &["port"]);
    for m in names::is_valid_port_num(port) {
        errs.push(invalid_raw(child(path, "port"), port.to_string(), m));
    }
    match str_at(p, &["protocol"]) {
        "" => errs.push(required(child(path, "protocol"), "")),
        pr if PROTOCOLS.contains(&pr) => {}
        pr => errs.push(not_supported(
            child(path, "protocol"),
            go_quote(pr),
            &PROTOCOLS,
        )),
    }
    if let Some(ap) = opt_str(p, &["appProtocol"]) {
        errs.extend(validate_qualified_name(ap, &child(path, "appProtocol")));
    }
    errs
}

/// `IsFullyQualifiedDomainName`.
fn is_fqdn(path: &str, name: &str) -> Vec<FieldError> {
    if name.is_empty() {
        return vec![required(path, "")];
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let errs = names::is_dns1123_subdomain(name);
    if !errs.is_empty() {
        return vec![invalid_str(path, name, errs.join(","))];
    }
    if name.split('.').count() < 2 {
        return vec![invalid_str(
            path,
            name,
            "should be a domain with at least two segments separated by dots",
        )];
    }
    for label in name.split('.') {
        let errs = names::is_dns1123_label(label);
        if !errs.is_empty() {
            return vec![invalid_str(path, label, errs.join(","))];
        }
    }
    Vec::new()
}

/// `ValidateEndpointSlice`.
pub fn validate_endpoint_slice(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, true, names::name_is_dns_subdomain, "metadata");
    let addr_type = str_at(obj, &["addressType"]);
    match addr_type {
        "" => errs.push(required("addressType", "")),
        "FQDN" | "IPv4" | "IPv6" => {}
        other => errs.push(not_supported(
            "addressType",
            go_quote(other),
            &["FQDN", "IPv4", "IPv6"],
        )),
    }
    let eps = arr_at(obj, &["endpoints"]);
    if eps.len() > 1000 {
        errs.push(too_many("endpoints", eps.len(), 1000));
    }
    for (i, ep) in eps.iter().enumerate() {
        let p = index("endpoints", i);
        let ap = child(&p, "addresses");
        let addrs = strs_at(ep, &["addresses"]);
        if addrs.is_empty() {
            errs.push(required(&ap, "must contain at least 1 address"));
        } else if addrs.len() > 100 {
            errs.push(too_many(&ap, addrs.len(), 100));
        }
        for (j, a) in addrs.iter().enumerate() {
            let path = index(&ap, j);
            match addr_type {
                "IPv4" => {
                    errs.extend(names::is_valid_ipv4(&path, a));
                    errs.extend(validate_non_special_ip(a, &path));
                }
                "IPv6" => {
                    errs.extend(names::is_valid_ipv6(&path, a));
                    errs.extend(validate_non_special_ip(a, &path));
                }
                "FQDN" => errs.extend(is_fqdn(&path, a)),
                _ => {}
            }
        }
        if let Some(node) = opt_str(ep, &["nodeName"]) {
            for m in names::name_is_dns_subdomain(node, false) {
                errs.push(invalid_str(child(&p, "nodeName"), node, m));
            }
        }
        let topo = child(&p, "deprecatedTopology");
        let n_topo = get(ep, &["deprecatedTopology"])
            .and_then(Value::as_object)
            .map_or(0, |m| m.len());
        if n_topo > 16 {
            errs.push(too_many(&topo, n_topo, 16));
        }
        errs.extend(validate_labels(ep, &["deprecatedTopology"], &topo));
        if let Some(h) = opt_str(ep, &["hostname"]) {
            for m in names::is_dns1123_label(h) {
                errs.push(invalid_str(child(&p, "hostname"), h, m));
            }
        }
    }
    let ports = arr_at(obj, &["ports"]);
    if ports.len() > 20000 {
        errs.push(too_many("ports", ports.len(), 20000));
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let p = index("ports", i);
        let name = str_at(port, &["name"]);
        if !name.is_empty() {
            for m in names::is_dns1123_label(name) {
                errs.push(invalid_str(child(&p, "name"), name, m));
            }
        }
        if seen.contains(&name) {
            errs.push(duplicate(child(&p, "name"), go_quote(name)));
        } else {
            seen.push(name);
        }
        match opt_str(port, &["protocol"]) {
            None => errs.push(required(child(&p, "protocol"), "")),
            Some(pr) if PROTOCOLS.contains(&pr) => {}
            Some(pr) => errs.push(not_supported(
                child(&p, "protocol"),
                go_quote(pr),
                &PROTOCOLS,
            )),
        }
        if let Some(ap) = opt_str(port, &["appProtocol"]) {
            errs.extend(validate_qualified_name(ap, &child(&p, "appProtocol")));
        }
    }
    errs
}

/// `ValidateEndpointSliceUpdate`: the address type is fixed.
pub fn validate_endpoint_slice_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_endpoint_slice(new);
    let (n, o) = (str_at(new, &["addressType"]), str_at(old, &["addressType"]));
    if n != o {
        errs.push(invalid_str("addressType", n, FIELD_IMMUTABLE));
    }
    errs
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{Value, json};

    use super::*;

    fn strings(v: Vec<FieldError>) -> Vec<String> {
        v.iter().map(FieldError::error_string).collect()
    }

    fn ep(ip: &str) -> Value {
        json!({"metadata": {"name": "e", "namespace": "a"}, "subsets": [{"addresses": [{"ip": ip}], "ports": [{"port": 80, "protocol": "TCP"}]}]})
    }

    #[rstest]
    #[case("10.1.2.3", vec![])]
    #[case("169.254.169.254", vec!["subsets[0].addresses[0].ip: Invalid value: \"169.254.169.254\": may not be in the link-local range (169.254.0.0/16, fe80::/10)"])]
    #[case("127.0.0.1", vec!["subsets[0].addresses[0].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"])]
    #[case("224.0.0.1", vec!["subsets[0].addresses[0].ip: Invalid value: \"224.0.0.1\": may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"])]
    #[case("0.0.0.0", vec!["subsets[0].addresses[0].ip: Invalid value: \"0.0.0.0\": may not be unspecified (0.0.0.0)"])]
    #[case("fe80::1", vec!["subsets[0].addresses[0].ip: Invalid value: \"fe80::1\": may not be in the link-local range (169.254.0.0/16, fe80::/10)"])]
    #[case("10.0.0", vec!["subsets[0].addresses[0].ip: Invalid value: \"10.0.0\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)", "subsets[0].addresses[0].ip: Invalid value: \"10.0.0\": must be a valid IP address"])]
    fn endpoints(#[case] ip: &str, #[case] want: Vec<&str>) {
        assert_eq!(strings(validate_endpoints(&ep(ip))), want);
    }

    #[test]
    fn endpoints_ports_need_names_when_several() {
        let mut e = ep("10.0.0.1");
        e["subsets"][0]["ports"] =
            json!([{"port": 80, "protocol": "TCP"}, {"port": 0, "protocol": "XX"}]);
        assert_eq!(
            strings(validate_endpoints(&e)),
            vec![
                "subsets[0].ports[0].name: Required value",
                "subsets[0].ports[1].name: Required value",
                "subsets[0].ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "subsets[0].ports[1].protocol: Unsupported value: \"XX\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            ]
        );
    }

    #[rstest]
    #[case(json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"name": "", "port": 80, "protocol": "TCP"}]}), vec![])]
    #[case(json!({"endpoints": []}), vec!["addressType: Required value"])]
    #[case(json!({"addressType": "IPv4", "endpoints": [{"addresses": ["not-an-ip"]}]}), vec!["endpoints[0].addresses[0]: Invalid value: \"not-an-ip\": must be a valid IPv4 address", "endpoints[0].addresses[0]: Invalid value: \"not-an-ip\": must be a valid IP address"])]
    #[case(json!({"addressType": "IPv4", "endpoints": [{"addresses": []}]}), vec!["endpoints[0].addresses: Required value: must contain at least 1 address"])]
    #[case(json!({"addressType": "FQDN", "endpoints": [{"addresses": ["localhost"]}]}), vec!["endpoints[0].addresses[0]: Invalid value: \"localhost\": should be a domain with at least two segments separated by dots"])]
    #[case(json!({"addressType": "IP", "endpoints": [], "ports": [{"name": "a", "protocol": "TCP"}, {"name": "a"}]}), vec!["addressType: Unsupported value: \"IP\": supported values: \"FQDN\", \"IPv4\", \"IPv6\"", "ports[1].name: Duplicate value: \"a\"", "ports[1].protocol: Required value"])]
    fn slices(#[case] body: Value, #[case] want: Vec<&str>) {
        let mut s = body;
        s["metadata"] = json!({"name": "s", "namespace": "a"});
        assert_eq!(strings(validate_endpoint_slice(&s)), want);
    }
}
