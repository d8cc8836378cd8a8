//! Service validation (`ValidateService`, `ValidateServiceUpdate`, `ValidateServiceStatusUpdate`)
//! plus the messages of the cluster-IP / node-port allocators, which the server reports as field
//! errors of the same 422.

use serde_json::Value;

use super::endpoints::validate_non_special_ip;
use super::meta::{validate_labels, validate_object_meta, validate_object_meta_update};
use super::names::{self, is_valid_ip};
use super::{
    arr_at, child, duplicate, forbidden, get, go_quote, go_string_slice, index, int_at,
    invalid_raw, invalid_str, key, not_supported, opt_int, opt_str, required, str_at, strs_at,
};
use crate::apiserver::errors::FieldError;

const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];

fn is_headless(obj: &Value) -> bool {
    let ips = strs_at(obj, &["spec", "clusterIPs"]);
    ips.len() == 1 && ips[0] == "None"
}

fn externally_accessible(obj: &Value) -> bool {
    match str_at(obj, &["spec", "type"]) {
        "LoadBalancer" | "NodePort" => true,
        "ClusterIP" => !arr_at(obj, &["spec", "externalIPs"]).is_empty(),
        _ => false,
    }
}

fn needs_health_check(obj: &Value) -> bool {
    str_at(obj, &["spec", "type"]) == "LoadBalancer"
        && str_at(obj, &["spec", "externalTrafficPolicy"]) == "Local"
}

/// `ValidatePortNumOrName` for an int-or-string JSON value (absent reads as int 0).
pub(crate) fn validate_port_num_or_name(v: Option<&Value>, path: &str) -> Vec<FieldError> {
    match v {
        Some(Value::String(s)) => names::is_valid_port_name(s)
            .into_iter()
            .map(|m| invalid_str(path, s, m))
            .collect(),
        other => {
            let n = other.and_then(super::as_int).unwrap_or(0);
            names::is_valid_port_num(n)
                .into_iter()
                .map(|m| invalid_raw(path, n.to_string(), m))
                .collect()
        }
    }
}

/// `ValidateQualifiedName` on a plain string.
pub(crate) fn validate_qualified_name(v: &str, path: &str) -> Vec<FieldError> {
    names::is_qualified_name(v)
        .into_iter()
        .map(|m| invalid_str(path, v, m))
        .collect()
}

fn go_service_port_key(protocol: &str, port: i64) -> String {
    format!(
        "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
        go_quote(protocol)
    )
}

/// `ValidateService`.
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, true, names::name_is_dns1035_label, "metadata");
    let hints = opt_str(
        obj,
        &[
            "metadata",
            "annotations",
            "service.kubernetes.io/topology-aware-hints",
        ],
    );
    let mode = opt_str(
        obj,
        &[
            "metadata",
            "annotations",
            "service.kubernetes.io/topology-mode",
        ],
    );
    if let (Some(h), Some(m)) = (hints, mode)
        && h != m
    {
        errs.push(invalid_str(
            key("metadata.annotations", "service.kubernetes.io/topology-mode"),
            m,
            "must match annotations[service.kubernetes.io/topology-aware-hints] when both are specified",
        ));
    }
    let ty = str_at(obj, &["spec", "type"]);
    let ports = arr_at(obj, &["spec", "ports"]);
    if ports.is_empty() && !is_headless(obj) && ty != "ExternalName" {
        errs.push(required("spec.ports", ""));
    }
    let cluster_ips = strs_at(obj, &["spec", "clusterIPs"]);
    match ty {
        "LoadBalancer" | "NodePort" if is_headless(obj) => {
            errs.push(invalid_str(
                "spec.clusterIPs[0]",
                &cluster_ips[0],
                format!("may not be set to 'None' for {ty} services"),
            ));
        }
        "ExternalName" => {
            if !cluster_ips.is_empty() {
                errs.push(forbidden(
                    "spec.clusterIPs",
                    "may not be set for ExternalName services",
                ));
            }
            if !arr_at(obj, &["spec", "ipFamilies"]).is_empty() {
                errs.push(forbidden(
                    "spec.ipFamilies",
                    "may not be set for ExternalName services",
                ));
            }
            if get(obj, &["spec", "ipFamilyPolicy"]).is_some() {
                errs.push(forbidden(
                    "spec.ipFamilyPolicy",
                    "may not be set for ExternalName services",
                ));
            }
            let cname = str_at(obj, &["spec", "externalName"]);
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                errs.push(required("spec.externalName", ""));
            } else {
                for m in names::is_dns1123_subdomain(cname) {
                    errs.push(invalid_str("spec.externalName", cname, m));
                }
            }
        }
        _ => {}
    }
    let mut port_names: Vec<String> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        errs.extend(validate_service_port(
            p,
            ports.len() > 1,
            &mut port_names,
            &index("spec.ports", i),
        ));
    }
    if get(obj, &["spec", "selector"]).is_some() {
        errs.extend(validate_labels(obj, &["spec", "selector"], "spec.selector"));
    }
    let affinity = str_at(obj, &["spec", "sessionAffinity"]);
    match affinity {
        "" => errs.push(required("spec.sessionAffinity", "")),
        "ClientIP" | "None" => {}
        other => errs.push(not_supported(
            "spec.sessionAffinity",
            go_quote(other),
            &["ClientIP", "None"],
        )),
    }
    if affinity == "ClientIP" {
        errs.extend(validate_client_ip_affinity(obj));
    } else if affinity == "None" && get(obj, &["spec", "sessionAffinityConfig"]).is_some() {
        errs.push(forbidden(
            "spec.sessionAffinityConfig",
            "must not be set when session affinity is None",
        ));
    }
    errs.extend(validate_cluster_ips_related(obj));
    for (i, ip) in strs_at(obj, &["spec", "externalIPs"]).iter().enumerate() {
        let p = index("spec.externalIPs", i);
        let e = is_valid_ip(&p, ip);
        if e.is_empty() {
            errs.extend(validate_non_special_ip(ip, &p));
        } else {
            errs.extend(e);
        }
    }
    match ty {
        "" => errs.push(required("spec.type", "")),
        "ClusterIP" | "ExternalName" | "LoadBalancer" | "NodePort" => {}
        other => errs.push(not_supported(
            "spec.type",
            go_quote(other),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    if ty == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if int_at(p, &["nodePort"]) != 0 {
                errs.push(forbidden(
                    child(&index("spec.ports", i), "nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports: Vec<(String, i64)> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let np = int_at(p, &["nodePort"]);
        if np == 0 {
            continue;
        }
        let k = (str_at(p, &["protocol"]).to_string(), np);
        if node_ports.contains(&k) {
            errs.push(duplicate(
                child(&index("spec.ports", i), "nodePort"),
                np.to_string(),
            ));
        }
        node_ports.push(k);
    }
    let mut seen_ports: Vec<(String, i64)> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let k = (str_at(p, &["protocol"]).to_string(), int_at(p, &["port"]));
        if seen_ports.contains(&k) {
            errs.push(duplicate(
                index("spec.ports", i),
                go_service_port_key(&k.0, k.1),
            ));
        }
        seen_ports.push(k);
    }
    let ranges = strs_at(obj, &["spec", "loadBalancerSourceRanges"]);
    if !ranges.is_empty() {
        let path = "spec.LoadBalancerSourceRanges";
        if ty != "LoadBalancer" {
            errs.push(forbidden(
                path,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, r) in ranges.iter().enumerate() {
            errs.extend(names::is_valid_cidr(&index(path, i), r.trim()));
        }
    } else if let Some(val) = opt_str(
        obj,
        &[
            "metadata",
            "annotations",
            "service.beta.kubernetes.io/load-balancer-source-ranges",
        ],
    ) {
        let path = key(
            "metadata.annotations",
            "service.beta.kubernetes.io/load-balancer-source-ranges",
        );
        if ty != "LoadBalancer" {
            errs.push(forbidden(
                &path,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        let val = val.trim();
        if !val.is_empty() {
            for c in val.split(',') {
                errs.extend(names::is_valid_cidr(&path, c.trim()));
            }
        }
    }
    let alloc = get(obj, &["spec", "allocateLoadBalancerNodePorts"]);
    if alloc.is_some() && ty != "LoadBalancer" {
        errs.push(forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if ty == "LoadBalancer" && alloc.is_none() {
        errs.push(required("allocateLoadBalancerNodePorts", ""));
    }
    errs.extend(validate_lb_class(None, obj));
    errs.extend(validate_external_traffic_policy(obj));
    let itp = opt_str(obj, &["spec", "internalTrafficPolicy"]);
    match itp {
        None if matches!(ty, "NodePort" | "LoadBalancer" | "ClusterIP") => {
            errs.push(required("spec.internalTrafficPolicy", ""));
        }
        Some(v) if v != "Cluster" && v != "Local" => {
            errs.push(not_supported(
                "spec.internalTrafficPolicy",
                go_quote(v),
                &["Cluster", "Local"],
            ));
        }
        _ => {}
    }
    if let Some(td) = opt_str(obj, &["spec", "trafficDistribution"])
        && td != "PreferClose"
    {
        errs.push(not_supported(
            "spec.trafficDistribution",
            go_quote(td),
            &["PreferClose"],
        ));
    }
    errs
}

fn validate_service_port(
    p: &Value,
    require_name: bool,
    all: &mut Vec<String>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_at(p, &["name"]);
    if require_name && name.is_empty() {
        errs.push(required(child(path, "name"), ""));
    } else if !name.is_empty() {
        for m in names::is_dns1123_label(name) {
            errs.push(invalid_str(child(path, "name"), name, m));
        }
        if all.iter().any(|n| n == name) {
            errs.push(duplicate(child(path, "name"), go_quote(name)));
        } else {
            all.push(name.to_string());
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
    errs.extend(validate_port_num_or_name(
        get(p, &["targetPort"]),
        &child(path, "targetPort"),
    ));
    if let Some(ap) = opt_str(p, &["appProtocol"]) {
        errs.extend(validate_qualified_name(ap, &child(path, "appProtocol")));
    }
    errs
}

fn validate_client_ip_affinity(obj: &Value) -> Vec<FieldError> {
    let path = "spec.sessionAffinityConfig";
    let why = "when session affinity type is ClientIP";
    if get(obj, &["spec", "sessionAffinityConfig"]).is_none() {
        return vec![required(path, why)];
    }
    if get(obj, &["spec", "sessionAffinityConfig", "clientIP"]).is_none() {
        return vec![required(child(path, "clientIP"), why)];
    }
    let Some(t) = opt_int(
        obj,
        &[
            "spec",
            "sessionAffinityConfig",
            "clientIP",
            "timeoutSeconds",
        ],
    ) else {
        return vec![required(format!("{path}.clientIP.timeoutSeconds"), why)];
    };
    if t <= 0 || t > 86400 {
        return vec![invalid_raw(
            format!("{path}.clientIP.timeoutSeconds"),
            t.to_string(),
            "must be greater than 0 and less than 86400",
        )];
    }
    Vec::new()
}

/// `ValidateServiceClusterIPsRelatedFields`.
fn validate_cluster_ips_related(obj: &Value) -> Vec<FieldError> {
    if str_at(obj, &["spec", "type"]) == "ExternalName" {
        return Vec::new();
    }
    let mut errs = Vec::new();
    let ips = strs_at(obj, &["spec", "clusterIPs"]);
    let ips_v = || go_string_slice(&ips);
    let cluster_ip = str_at(obj, &["spec", "clusterIP"]);
    if !cluster_ip.is_empty() {
        if ips.is_empty() {
            errs.push(required("spec.clusterIPs", ""));
        } else if ips[0] != cluster_ip {
            errs.push(invalid_raw(
                "spec.clusterIPs",
                ips_v(),
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        errs.push(invalid_raw(
            "spec.clusterIPs",
            ips_v(),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let families = strs_at(obj, &["spec", "ipFamilies"]);
    for (i, f) in families.iter().enumerate() {
        if f != "IPv4" && f != "IPv6" {
            errs.push(not_supported(
                index("spec.ipFamilies", i),
                go_quote(f),
                &["IPv4", "IPv6"],
            ));
        }
        if families[..i].contains(f) {
            errs.push(duplicate(index("spec.ipFamilies", i), go_quote(f)));
        }
    }
    if let Some(p) = opt_str(obj, &["spec", "ipFamilyPolicy"])
        && !matches!(p, "SingleStack" | "PreferDualStack" | "RequireDualStack")
    {
        errs.push(not_supported(
            "spec.ipFamilyPolicy",
            go_quote(p),
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        ));
    }
    let mut bad = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if ips.len() > 1 {
                bad = true;
                errs.push(invalid_raw(
                    "spec.clusterIPs",
                    ips_v(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        let e = is_valid_ip(&index("spec.clusterIPs", i), ip);
        bad |= !e.is_empty();
        errs.extend(e);
    }
    if ips.len() > 2 {
        errs.push(invalid_raw(
            "spec.clusterIPs",
            ips_v(),
            "may only hold up to 2 values",
        ));
    }
    if bad {
        return errs;
    }
    let is_v6 = |s: &str| names::parse_ip_sloppy(s).is_some_and(|ip| ip.is_ipv6());
    if ips.len() > 1 {
        let v6 = ips.iter().filter(|ip| is_v6(ip)).count();
        if v6 != 1 || ips.len() != 2 {
            errs.push(invalid_raw(
                "spec.clusterIPs",
                ips_v(),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    if !is_headless(obj) && !ips.is_empty() && !families.is_empty() {
        for (i, ip) in ips.iter().enumerate().take(families.len()) {
            if families[i] == "IPv4" && is_v6(ip) {
                errs.push(invalid_str(
                    index("spec.clusterIPs", i),
                    ip,
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if families[i] == "IPv6" && !is_v6(ip) {
                errs.push(invalid_str(
                    index("spec.clusterIPs", i),
                    ip,
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
    errs
}

fn validate_lb_class(old: Option<&Value>, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let is_lb = |o: &Value| str_at(o, &["spec", "type"]) == "LoadBalancer";
    let class = opt_str(obj, &["spec", "loadBalancerClass"]);
    if let Some(old) = old
        && is_lb(old)
        && is_lb(obj)
        && opt_str(old, &["spec", "loadBalancerClass"]) != class
    {
        let rendered = class.map_or("null".to_string(), go_quote);
        errs.push(invalid_raw(
            "spec.loadBalancerClass",
            rendered,
            "may not change once set",
        ));
    }
    if is_lb(obj) {
        if let Some(c) = class {
            errs.extend(validate_qualified_name(c, "spec.loadBalancerClass"));
        }
    } else if class.is_some() {
        errs.push(forbidden(
            "spec.loadBalancerClass",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    errs
}

fn validate_external_traffic_policy(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let etp = str_at(obj, &["spec", "externalTrafficPolicy"]);
    if !externally_accessible(obj) {
        if !etp.is_empty() {
            errs.push(invalid_str(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(required("spec.externalTrafficPolicy", ""));
    } else if etp != "Cluster" && etp != "Local" {
        errs.push(not_supported(
            "spec.externalTrafficPolicy",
            go_quote(etp),
            &["Cluster", "Local"],
        ));
    }
    let hc = int_at(obj, &["spec", "healthCheckNodePort"]);
    if !needs_health_check(obj) {
        if hc != 0 {
            errs.push(invalid_raw(
                "spec.healthCheckNodePort",
                hc.to_string(),
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hc == 0 {
        errs.push(required("spec.healthCheckNodePort", ""));
    } else {
        for m in names::is_valid_port_num(hc) {
            errs.push(invalid_raw("spec.healthCheckNodePort", hc.to_string(), m));
        }
    }
    errs
}

/// `ValidateServiceUpdate`: cluster IPs and IP families are fixed once allocated.
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(new, old, "metadata");
    errs.extend(validate_upgrade_downgrade_cluster_ips(old, new));
    errs.extend(validate_upgrade_downgrade_ip_families(old, new));
    errs.extend(validate_lb_class(Some(old), new));
    if needs_health_check(old)
        && needs_health_check(new)
        && int_at(new, &["spec", "healthCheckNodePort"])
            != int_at(old, &["spec", "healthCheckNodePort"])
    {
        errs.push(forbidden("spec.healthCheckNodePort", "field is immutable"));
    }
    errs.extend(validate(new));
    errs
}

fn validate_upgrade_downgrade_cluster_ips(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ext = |o: &Value| str_at(o, &["spec", "type"]) == "ExternalName";
    if ext(new) || ext(old) || (is_headless(old) && is_headless(new)) {
        return errs;
    }
    let (o, n) = (
        strs_at(old, &["spec", "clusterIPs"]),
        strs_at(new, &["spec", "clusterIPs"]),
    );
    let nv = go_string_slice(&n);
    let changed = "may not change once set";
    if o.len() == n.len() {
        for (i, ip) in o.iter().enumerate() {
            if *ip != n[i] {
                errs.push(invalid_raw(
                    index("spec.clusterIPs", i),
                    nv.clone(),
                    changed,
                ));
            }
        }
    } else if o.len() > n.len() {
        if n.is_empty() {
            errs.push(invalid_raw(
                "spec.clusterIPs[0]",
                nv.clone(),
                "primary clusterIP can not be unset",
            ));
        }
        if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
            errs.push(invalid_raw("spec.clusterIPs[0]", nv.clone(), changed));
        }
        if n.len() == 1 && opt_str(new, &["spec", "ipFamilyPolicy"]) != Some("SingleStack") {
            let p = opt_str(new, &["spec", "ipFamilyPolicy"]).map_or("null".to_string(), go_quote);
            errs.push(invalid_raw(
                "spec.ipFamilyPolicy",
                p,
                "must be set to 'SingleStack' when releasing the secondary clusterIP",
            ));
        }
    } else if !o.is_empty() && n[0] != o[0] {
        errs.push(invalid_raw("spec.clusterIPs[0]", nv, changed));
    }
    errs
}

fn validate_upgrade_downgrade_ip_families(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ext = |o: &Value| str_at(o, &["spec", "type"]) == "ExternalName";
    if ext(new) || ext(old) || is_headless(old) != is_headless(new) || is_headless(new) {
        return errs;
    }
    let (o, n) = (
        strs_at(old, &["spec", "ipFamilies"]),
        strs_at(new, &["spec", "ipFamilies"]),
    );
    let n_ips = go_string_slice(&strs_at(new, &["spec", "clusterIPs"]));
    let changed = "may not change once set";
    if o.len() == n.len() {
        for (i, f) in o.iter().enumerate() {
            if *f != n[i] {
                errs.push(invalid_raw(
                    "spec.ipFamilies[0]",
                    go_string_slice(&n),
                    changed,
                ));
            }
        }
    } else if o.len() > n.len() {
        if arr_at(new, &["spec", "clusterIPs"]).is_empty() {
            errs.push(invalid_raw(
                "spec.ipFamilies[0]",
                go_string_slice(&n),
                "primary ipFamily can not be unset",
            ));
        }
        if !n.is_empty() && n[0] != o[0] {
            errs.push(invalid_raw("spec.ipFamilies[0]", n_ips.clone(), changed));
        }
        if n.len() == 1 && opt_str(new, &["spec", "ipFamilyPolicy"]) != Some("SingleStack") {
            let p = opt_str(new, &["spec", "ipFamilyPolicy"]).map_or("null".to_string(), go_quote);
            errs.push(invalid_raw(
                "spec.ipFamilyPolicy",
                p,
                "must be set to 'SingleStack' when releasing the secondary ipFamily",
            ));
        }
    } else if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
        errs.push(invalid_raw("spec.ipFamilies[0]", n_ips, changed));
    }
    errs
}

/// `ValidateServiceStatusUpdate`. The status strategy keeps the stored spec, so the type is read
/// from `old`.
pub fn validate_status_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(new, old, "metadata");
    let ty = str_at(old, &["spec", "type"]);
    errs.extend(validate_load_balancer_status(
        new,
        ty,
        "status.loadBalancer",
    ));
    errs
}

/// `ValidateLoadBalancerStatus` of `status.loadBalancer`. A missing `ipMode` next to an `ip` is
/// accepted: defaulting sets `VIP` there before validation.
fn validate_load_balancer_status(obj: &Value, ty: &str, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ingress = arr_at(obj, &["status", "loadBalancer", "ingress"]);
    let ingr_path = child(path, "ingress");
    if ty != "LoadBalancer" && !ingress.is_empty() {
        errs.push(forbidden(
            ingr_path,
            "may only be used when `spec.type` is 'LoadBalancer'",
        ));
        return errs;
    }
    for (i, ing) in ingress.iter().enumerate() {
        let p = index(&ingr_path, i);
        let ip = str_at(ing, &["ip"]);
        if !ip.is_empty() {
            errs.extend(is_valid_ip(&child(&p, "ip"), ip));
        }
        if let Some(mode) = opt_str(ing, &["ipMode"]) {
            if ip.is_empty() {
                errs.push(forbidden(
                    child(&p, "ipMode"),
                    "may not be specified when `ip` is not set",
                ));
            } else if mode != "VIP" && mode != "Proxy" {
                errs.push(not_supported(
                    child(&p, "ipMode"),
                    go_quote(mode),
                    &["Proxy", "VIP"],
                ));
            }
        }
        errs.extend(validate_lb_hostname(ing, &p));
    }
    errs
}

/// The `hostname` of a load-balancer ingress entry: a DNS name, not an IP.
pub(crate) fn validate_lb_hostname(ing: &Value, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let host = str_at(ing, &["hostname"]);
    if !host.is_empty() {
        for m in names::is_dns1123_subdomain(host) {
            errs.push(invalid_str(child(p, "hostname"), host, m));
        }
        if names::parse_ip_sloppy(host).is_some() {
            errs.push(invalid_str(
                child(p, "hostname"),
                host,
                "must be a DNS name, not an IP address",
            ));
        }
    }
    errs
}

/// The allocator's answer when a requested cluster IP cannot be had, reported on
/// `spec.clusterIPs` with the whole list as value, e.g. `failed to allocate IP 10.96.0.100:
/// provided IP is already allocated`.
pub fn cluster_ip_allocation_error(cluster_ips: &[String], ip: &str, reason: &str) -> FieldError {
    invalid_raw(
        "spec.clusterIPs",
        go_string_slice(cluster_ips),
        format!("failed to allocate IP {ip}: {reason}"),
    )
}

/// Reason for [`cluster_ip_allocation_error`] when the IP is taken.
pub const IP_ALREADY_ALLOCATED: &str = "provided IP is already allocated";

/// Reason for [`cluster_ip_allocation_error`] when the IP is outside the service range.
pub fn ip_out_of_range(ip: &str, cidr: &str) -> String {
    format!("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {cidr}")
}

/// The node-port allocator's error on `spec.ports[i].nodePort`.
pub fn node_port_error(port_index: usize, node_port: i64, detail: &str) -> FieldError {
    invalid_raw(
        child(&index("spec.ports", port_index), "nodePort"),
        node_port.to_string(),
        detail,
    )
}

/// Detail for [`node_port_error`] when the port is taken.
pub const NODE_PORT_ALREADY_ALLOCATED: &str = "provided port is already allocated";

/// Detail for [`node_port_error`] when the port is outside the node-port range.
pub fn node_port_out_of_range(lo: i64, hi: i64) -> String {
    format!("provided port is not in the valid range. The range of valid ports is {lo}-{hi}")
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{Value, json};

    use super::*;

    fn strings(v: Vec<FieldError>) -> Vec<String> {
        v.iter().map(FieldError::error_string).collect()
    }

    fn svc(spec: Value) -> Value {
        let mut s = json!({"metadata": {"name": "web", "namespace": "a"}, "spec": {
            "type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster",
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}});
        for (k, v) in spec.as_object().unwrap() {
            s["spec"][k] = v.clone();
        }
        s
    }

    #[rstest]
    #[case(json!({}), vec![])]
    #[case(json!({"ports": []}), vec!["spec.ports: Required value"])]
    #[case(json!({"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}, {"port": 81, "protocol": "TCP", "targetPort": 81}]}), vec!["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"])]
    #[case(json!({"ports": [{"port": 70000, "protocol": "TCP", "targetPort": 70000}]}), vec!["spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive", "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive"])]
    #[case(json!({"ports": [{"port": 80, "protocol": "HTTP", "targetPort": "web_port"}]}), vec!["spec.ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"", "spec.ports[0].targetPort: Invalid value: \"web_port\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"])]
    #[case(json!({"type": "Fancy"}), vec!["spec.type: Unsupported value: \"Fancy\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""])]
    #[case(json!({"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30000}]}), vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"])]
    #[case(json!({"ports": [{"name": "a", "port": 80, "protocol": "TCP", "targetPort": 80}, {"name": "b", "port": 80, "protocol": "TCP", "targetPort": 80}]}), vec!["spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}"])]
    #[case(json!({"clusterIPs": ["10.96.0.11"]}), vec!["spec.clusterIPs: Invalid value: []string{\"10.96.0.11\"}: first value must match `clusterIP`"])]
    #[case(json!({"externalIPs": ["127.0.0.1"], "externalTrafficPolicy": "Cluster"}), vec!["spec.externalIPs[0]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"])]
    #[case(json!({"type": "LoadBalancer"}), vec!["allocateLoadBalancerNodePorts: Required value", "spec.externalTrafficPolicy: Required value"])]
    #[case(json!({"type": "ExternalName", "externalName": "not a dns name", "clusterIP": null, "clusterIPs": null, "ipFamilies": null, "ipFamilyPolicy": null, "internalTrafficPolicy": null}), vec!["spec.externalName: Invalid value: \"not a dns name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"])]
    #[case(json!({"type": "ExternalName", "externalName": "example.com."}), vec!["spec.clusterIPs: Forbidden: may not be set for ExternalName services", "spec.ipFamilies: Forbidden: may not be set for ExternalName services", "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services"])]
    #[case(json!({"sessionAffinity": "ClientIP"}), vec!["spec.sessionAffinityConfig: Required value: when session affinity type is ClientIP"])]
    fn create(#[case] spec: Value, #[case] want: Vec<&str>) {
        assert_eq!(strings(validate(&svc(spec))), want);
    }

    #[test]
    fn bad_name_is_dns1035() {
        let mut s = svc(json!({}));
        s["metadata"]["name"] = json!("1web");
        assert_eq!(
            strings(validate(&s)),
            vec![
                "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
    }

    #[test]
    fn cluster_ip_is_immutable() {
        let old = svc(json!({}));
        let new = svc(json!({"clusterIP": "10.96.0.101", "clusterIPs": ["10.96.0.101"]}));
        assert_eq!(
            strings(validate_update(&new, &old)),
            vec![
                "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.101\"}: may not change once set"
            ]
        );
    }

    #[rstest]
    #[case("ClusterIP", json!([{"ip": "203.0.113.10"}]), vec!["status.loadBalancer.ingress: Forbidden: may only be used when `spec.type` is 'LoadBalancer'"])]
    #[case("LoadBalancer", json!([{"ip": "not-an-ip", "ipMode": "VIP"}]), vec!["status.loadBalancer.ingress[0].ip: Invalid value: \"not-an-ip\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"])]
    #[case("LoadBalancer", json!([{"ip": "203.0.113.10", "ipMode": "VIP"}, {"hostname": "lb.example.com"}]), vec![])]
    #[case("LoadBalancer", json!([{"hostname": "10.0.0.1", "ipMode": "VIP"}]), vec!["status.loadBalancer.ingress[0].ipMode: Forbidden: may not be specified when `ip` is not set", "status.loadBalancer.ingress[0].hostname: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address"])]
    fn status(#[case] ty: &str, #[case] ingress: Value, #[case] want: Vec<&str>) {
        let old = svc(json!({"type": ty}));
        let mut new = old.clone();
        new["status"] = json!({"loadBalancer": {"ingress": ingress}});
        assert_eq!(strings(validate_status_update(&new, &old)), want);
    }

    #[test]
    fn allocator_messages() {
        let e = cluster_ip_allocation_error(
            &["192.168.0.10".into()],
            "192.168.0.10",
            &ip_out_of_range("192.168.0.10", "10.96.0.0/16"),
        );
        assert_eq!(
            e.error_string(),
            "spec.clusterIPs: Invalid value: []string{\"192.168.0.10\"}: failed to allocate IP 192.168.0.10: the provided IP (192.168.0.10) is not in the valid range. The range of valid IPs is 10.96.0.0/16"
        );
        let e = node_port_error(0, 80, &node_port_out_of_range(30000, 32767));
        assert_eq!(
            e.error_string(),
            "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
    }
}
