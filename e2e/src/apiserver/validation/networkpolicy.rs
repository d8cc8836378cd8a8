//! NetworkPolicy validation (networking.k8s.io/v1).

use serde_json::Value;

use super::meta::{validate_label_selector, validate_object_meta};
use super::names::{self, parse_cidr_sloppy};
use super::{
    arr_at, child, forbidden, get, go_quote, index, invalid_raw, invalid_str, not_supported,
    opt_int, opt_str, required, str_at, strs_at,
};
use crate::apiserver::errors::FieldError;

/// `ValidateNetworkPolicy`.
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, true, names::name_is_dns_subdomain, "metadata");
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    errs.extend(validate_label_selector(
        get(spec, &["podSelector"]),
        "spec.podSelector",
    ));
    for (dir, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in arr_at(spec, &[dir]).iter().enumerate() {
            let rp = index(&format!("spec.{dir}"), i);
            for (j, port) in arr_at(rule, &["ports"]).iter().enumerate() {
                errs.extend(validate_port(port, &index(&child(&rp, "ports"), j)));
            }
            for (j, peer) in arr_at(rule, &[peers]).iter().enumerate() {
                errs.extend(validate_peer(peer, &index(&child(&rp, peers), j)));
            }
        }
    }
    let types = strs_at(spec, &["policyTypes"]);
    if types.len() > 2 {
        errs.push(invalid_raw(
            "spec.policyTypes",
            format!("&{}", super::go_string_slice(&types)),
            "may not specify more than two policyTypes",
        ));
        return errs;
    }
    for (i, t) in types.iter().enumerate() {
        if t != "Ingress" && t != "Egress" {
            errs.push(not_supported(
                index("spec.policyTypes", i),
                go_quote(t),
                &["Ingress", "Egress"],
            ));
        }
    }
    errs
}

fn validate_port(port: &Value, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(pr) = opt_str(port, &["protocol"])
        && !matches!(pr, "TCP" | "UDP" | "SCTP")
    {
        errs.push(not_supported(
            child(p, "protocol"),
            go_quote(pr),
            &["TCP", "UDP", "SCTP"],
        ));
    }
    let end = opt_int(port, &["endPort"]);
    match get(port, &["port"]) {
        Some(Value::String(name)) => {
            if let Some(e) = end {
                errs.push(invalid_raw(
                    child(p, "endPort"),
                    e.to_string(),
                    "may not be specified when `port` is non-numeric",
                ));
            }
            for m in names::is_valid_port_name(name) {
                errs.push(invalid_str(child(p, "port"), name, m));
            }
        }
        Some(v) => {
            let n = super::as_int(v).unwrap_or(0);
            for m in names::is_valid_port_num(n) {
                errs.push(invalid_raw(child(p, "port"), n.to_string(), m));
            }
            if let Some(e) = end {
                if e < n {
                    errs.push(invalid_raw(
                        child(p, "endPort"),
                        n.to_string(),
                        "must be greater than or equal to `port`",
                    ));
                }
                for m in names::is_valid_port_num(e) {
                    errs.push(invalid_raw(child(p, "endPort"), e.to_string(), m));
                }
            }
        }
        None => {
            if let Some(e) = end {
                errs.push(invalid_raw(
                    child(p, "endPort"),
                    e.to_string(),
                    "may not be specified when `port` is not specified",
                ));
            }
        }
    }
    errs
}

fn validate_peer(peer: &Value, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut n = 0;
    for k in ["podSelector", "namespaceSelector"] {
        if let Some(sel) = get(peer, &[k]) {
            n += 1;
            errs.extend(validate_label_selector(Some(sel), &child(p, k)));
        }
    }
    let ip_block = get(peer, &["ipBlock"]);
    if let Some(ipb) = ip_block {
        n += 1;
        errs.extend(validate_ip_block(ipb, &child(p, "ipBlock")));
    }
    if n == 0 {
        errs.push(required(p, "must specify a peer"));
    } else if n > 1 && ip_block.is_some() {
        errs.push(forbidden(
            p,
            "may not specify both ipBlock and another peer",
        ));
    }
    errs
}

fn validate_ip_block(ipb: &Value, p: &str) -> Vec<FieldError> {
    let cidr = str_at(ipb, &["cidr"]);
    if cidr.is_empty() {
        return vec![required(child(p, "cidr"), "")];
    }
    let mut errs = names::is_valid_cidr(&child(p, "cidr"), cidr);
    let Some((net_ip, net_bits)) = parse_cidr_sloppy(cidr) else {
        return errs;
    };
    for (i, ex) in strs_at(ipb, &["except"]).iter().enumerate() {
        let ep = index(&child(p, "except"), i);
        errs.extend(names::is_valid_cidr(&ep, ex));
        let Some((ex_ip, ex_bits)) = parse_cidr_sloppy(ex) else {
            continue;
        };
        if !cidr_contains(net_ip, net_bits, ex_ip) || net_bits >= ex_bits {
            errs.push(invalid_str(&ep, ex, "must be a strict subset of `cidr`"));
        }
    }
    errs
}

fn cidr_contains(net: std::net::IpAddr, bits: u8, ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr::{V4, V6};
    match (net, ip) {
        (V4(n), V4(i)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (V6(n), V6(i)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    fn strings(v: Vec<FieldError>) -> Vec<String> {
        v.iter().map(FieldError::error_string).collect()
    }

    #[rstest]
    #[case(json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}], "ports": [{"protocol": "TCP", "port": 80}]}]}), vec![])]
    #[case(json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/99"}}]}]}), vec!["spec.ingress[0].from[0].ipBlock.cidr: Invalid value: \"10.0.0.0/99\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"])]
    #[case(json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["11.0.0.0/24"]}}]}]}), vec!["spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: \"11.0.0.0/24\": must be a strict subset of `cidr`"])]
    #[case(json!({"podSelector": {}, "egress": [{"to": [{}], "ports": [{"protocol": "ICMP", "port": "http", "endPort": 90}]}]}), vec![
        "spec.egress[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
        "spec.egress[0].ports[0].endPort: Invalid value: 90: may not be specified when `port` is non-numeric",
        "spec.egress[0].to[0]: Required value: must specify a peer",
    ])]
    #[case(json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}, "policyTypes": ["Sideways"]}), vec![
        "spec.podSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
        "spec.policyTypes[0]: Unsupported value: \"Sideways\": supported values: \"Ingress\", \"Egress\"",
    ])]
    fn create(#[case] spec: Value, #[case] want: Vec<&str>) {
        let np = json!({"metadata": {"name": "np", "namespace": "a"}, "spec": spec});
        assert_eq!(strings(validate(&np)), want);
    }
}
