//! Ingress and IngressClass validation (networking.k8s.io/v1).

use serde_json::Value;

use super::meta::{validate_object_meta, validate_object_meta_update};
use super::names::{self, is_valid_ip};
use super::service::validate_lb_hostname;
use super::{
    arr_at, child, get, go_quote, index, int_at, invalid_raw, invalid_str, not_supported, opt_str,
    required, str_at, strs_at,
};
use crate::apiserver::errors::FieldError;

/// `ValidateIngressCreate`.
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, true, names::name_is_dns_subdomain, "metadata");
    errs.extend(validate_spec(obj));
    let ann = opt_str(
        obj,
        &["metadata", "annotations", "kubernetes.io/ingress.class"],
    );
    let class = opt_str(obj, &["spec", "ingressClassName"]);
    if let (Some(a), Some(c)) = (ann, class)
        && a != c
    {
        errs.push(invalid_str(
            child("annotations", "kubernetes.io/ingress.class"),
            a,
            "must match `ingressClassName` when both are specified",
        ));
    }
    errs
}

/// `ValidateIngressUpdate`.
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(new, old, "metadata");
    errs.extend(validate_object_meta(
        new,
        true,
        names::name_is_dns_subdomain,
        "metadata",
    ));
    errs.extend(validate_spec(new));
    errs
}

fn validate_spec(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let rules = arr_at(obj, &["spec", "rules"]);
    let default_backend = get(obj, &["spec", "defaultBackend"]);
    if rules.is_empty() && default_backend.is_none() {
        errs.push(invalid_raw(
            "spec",
            "[]networking.IngressRule(nil)",
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = default_backend {
        errs.extend(validate_backend(b, "spec.defaultBackend"));
    }
    for (i, rule) in rules.iter().enumerate() {
        let p = index("spec.rules", i);
        let host = str_at(rule, &["host"]);
        if !host.is_empty() {
            if names::parse_ip_sloppy(host).is_some() {
                errs.push(invalid_str(
                    child(&p, "host"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            }
            let msgs = if host.contains('*') {
                names::is_wildcard_dns1123_subdomain(host)
            } else {
                names::is_dns1123_subdomain(host)
            };
            for m in msgs {
                errs.push(invalid_str(child(&p, "host"), host, m));
            }
        }
        if let Some(http) = get(rule, &["http"]) {
            let hp = child(&p, "http");
            let paths = arr_at(http, &["paths"]);
            if paths.is_empty() {
                errs.push(required(child(&hp, "paths"), ""));
            }
            for (j, path) in paths.iter().enumerate() {
                errs.extend(validate_http_path(path, &index(&child(&hp, "paths"), j)));
            }
        }
    }
    for (i, tls) in arr_at(obj, &["spec", "tls"]).iter().enumerate() {
        let p = index("spec.tls", i);
        for (j, host) in strs_at(tls, &["hosts"]).iter().enumerate() {
            let msgs = if host.contains('*') {
                names::is_wildcard_dns1123_subdomain(host)
            } else {
                names::is_dns1123_subdomain(host)
            };
            for m in msgs {
                errs.push(invalid_str(index(&child(&p, "hosts"), j), host, m));
            }
        }
        let secret = str_at(tls, &["secretName"]);
        if !secret.is_empty() {
            for m in names::name_is_dns_subdomain(secret, false) {
                errs.push(invalid_str(child(&p, "secretName"), secret, m));
            }
        }
    }
    if let Some(c) = opt_str(obj, &["spec", "ingressClassName"]) {
        for m in names::name_is_dns_subdomain(c, false) {
            errs.push(invalid_str("spec.ingressClassName", c, m));
        }
    }
    errs
}

fn validate_http_path(path: &Value, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(pt) = opt_str(path, &["pathType"]) else {
        return vec![required(child(p, "pathType"), "pathType must be specified")];
    };
    let value = str_at(path, &["path"]);
    match pt {
        "Exact" | "Prefix" => {
            if !value.starts_with('/') {
                errs.push(invalid_str(
                    child(p, "path"),
                    value,
                    "must be an absolute path",
                ));
            }
            if !value.is_empty() {
                for seq in ["//", "/./", "/../", "%2f", "%2F"] {
                    if value.contains(seq) {
                        errs.push(invalid_str(
                            child(p, "path"),
                            value,
                            format!("must not contain '{seq}'"),
                        ));
                    }
                }
                for suf in ["/..", "/."] {
                    if value.ends_with(suf) {
                        errs.push(invalid_str(
                            child(p, "path"),
                            value,
                            format!("cannot end with '{suf}'"),
                        ));
                    }
                }
            }
        }
        "ImplementationSpecific" => {
            if !value.is_empty() && !value.starts_with('/') {
                errs.push(invalid_str(
                    child(p, "path"),
                    value,
                    "must be an absolute path",
                ));
            }
        }
        other => errs.push(not_supported(
            child(p, "pathType"),
            go_quote(other),
            &["Exact", "ImplementationSpecific", "Prefix"],
        )),
    }
    errs.extend(validate_backend(
        get(path, &["backend"]).unwrap_or(&Value::Null),
        &child(p, "backend"),
    ));
    errs
}

fn validate_backend(b: &Value, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match (get(b, &["resource"]), get(b, &["service"])) {
        (Some(_), Some(_)) => errs.push(invalid_str(
            p,
            "",
            "cannot set both resource and service backends",
        )),
        (Some(r), None) => {
            let rp = child(p, "resource");
            if str_at(r, &["kind"]).is_empty() {
                errs.push(required(child(&rp, "kind"), ""));
            }
            if str_at(r, &["name"]).is_empty() {
                errs.push(required(child(&rp, "name"), ""));
            }
        }
        (None, Some(s)) => {
            let name = str_at(s, &["name"]);
            if name.is_empty() {
                errs.push(required(format!("{p}.service.name"), ""));
            } else {
                for m in names::name_is_dns1035_label(name, false) {
                    errs.push(invalid_str(format!("{p}.service.name"), name, m));
                }
            }
            let port_name = str_at(s, &["port", "name"]);
            let port_num = int_at(s, &["port", "number"]);
            if !port_name.is_empty() && port_num != 0 {
                errs.push(invalid_str(
                    p,
                    "",
                    "cannot set both port name & port number",
                ));
            } else if !port_name.is_empty() {
                for m in names::is_valid_port_name(port_name) {
                    errs.push(invalid_str(format!("{p}.service.port.name"), port_name, m));
                }
            } else if port_num != 0 {
                for m in names::is_valid_port_num(port_num) {
                    errs.push(invalid_raw(
                        format!("{p}.service.port.number"),
                        port_num.to_string(),
                        m,
                    ));
                }
            } else {
                errs.push(required(p, "port name or number is required"));
            }
        }
        (None, None) => errs.push(invalid_str(
            p,
            "",
            "resource or service backend is required",
        )),
    }
    errs
}

/// `ValidateIngressStatusUpdate`.
pub fn validate_status_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(new, old, "metadata");
    for (i, ing) in arr_at(new, &["status", "loadBalancer", "ingress"])
        .iter()
        .enumerate()
    {
        let p = index("status.loadBalancer.ingress", i);
        let ip = str_at(ing, &["ip"]);
        if !ip.is_empty() {
            errs.extend(is_valid_ip(&child(&p, "ip"), ip));
        }
        errs.extend(validate_lb_hostname(ing, &p));
    }
    errs
}

/// `ValidateIngressClass`: a controller name that is a domain-prefixed path.
pub fn validate_ingress_class(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, false, names::name_is_dns_subdomain, "metadata");
    let ctrl = str_at(obj, &["spec", "controller"]);
    let p = "spec.controller";
    if ctrl.is_empty() {
        errs.push(required(p, ""));
    } else if ctrl.len() > 250 {
        errs.push(super::too_long(p, 250));
    } else {
        match ctrl.split_once('/') {
            Some((host, path)) if !host.is_empty() && !path.is_empty() => {
                for m in names::is_dns1123_subdomain(host) {
                    errs.push(invalid_str(p, host, m));
                }
            }
            _ => errs.push(invalid_str(
                p,
                ctrl,
                "must be a domain-prefixed path (such as \"acme.io/foo\")",
            )),
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    fn strings(v: Vec<FieldError>) -> Vec<String> {
        v.iter().map(FieldError::error_string).collect()
    }

    fn ing(rule_host: &str, path: Value) -> Value {
        json!({"metadata": {"name": "i", "namespace": "a"}, "spec": {"ingressClassName": "conf-ic",
            "tls": [{"hosts": ["web.example.com"], "secretName": "web-tls"}],
            "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
            "rules": [{"host": rule_host, "http": {"paths": [path]}}]}})
    }

    fn path(pt: Value) -> Value {
        let mut p =
            json!({"path": "/", "backend": {"service": {"name": "web", "port": {"name": "http"}}}});
        if !pt.is_null() {
            p["pathType"] = pt;
        }
        p
    }

    #[rstest]
    #[case("web.example.com", json!("Prefix"), vec![])]
    #[case("*.example.com", json!("Prefix"), vec![])]
    #[case("foo.*.example.com", json!("Prefix"), vec!["spec.rules[0].host: Invalid value: \"foo.*.example.com\": a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"])]
    #[case("10.0.0.1", json!("Prefix"), vec!["spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address"])]
    #[case("web.example.com", json!("Regex"), vec!["spec.rules[0].http.paths[0].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""])]
    #[case("web.example.com", Value::Null, vec!["spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"])]
    fn create(#[case] host: &str, #[case] pt: Value, #[case] want: Vec<&str>) {
        assert_eq!(strings(validate(&ing(host, path(pt)))), want);
    }

    #[test]
    fn backend_rules() {
        let mut i = ing(
            "web.example.com",
            json!({"path": "a//b", "pathType": "Exact", "backend": {}}),
        );
        i["spec"]["defaultBackend"] = json!({"service": {"name": "web", "port": {}}});
        assert_eq!(
            strings(validate(&i)),
            vec![
                "spec.defaultBackend: Required value: port name or number is required",
                "spec.rules[0].http.paths[0].path: Invalid value: \"a//b\": must be an absolute path",
                "spec.rules[0].http.paths[0].path: Invalid value: \"a//b\": must not contain '//'",
                "spec.rules[0].http.paths[0].backend: Invalid value: \"\": resource or service backend is required",
            ]
        );
    }

    #[test]
    fn status() {
        let old = ing("web.example.com", path(json!("Prefix")));
        let mut new = old.clone();
        new["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.20", "ports": [{"port": 443, "protocol": "TCP"}]}, {"ip": "x"}]}});
        assert_eq!(
            strings(validate_status_update(&new, &old)),
            vec![
                "status.loadBalancer.ingress[1].ip: Invalid value: \"x\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
            ]
        );
    }

    #[test]
    fn ingress_class() {
        let c = json!({"metadata": {"name": "c"}, "spec": {"controller": "nginx"}});
        assert_eq!(
            strings(validate_ingress_class(&c)),
            vec![
                "spec.controller: Invalid value: \"nginx\": must be a domain-prefixed path (such as \"acme.io/foo\")"
            ]
        );
    }
}
