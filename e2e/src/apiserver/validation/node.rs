//! Node validation: names, taints, resources, pod CIDRs and the update rules.

use serde_json::Value;

use super::meta::{
    IS_NEGATIVE, validate_label_name, validate_object_meta, validate_object_meta_update,
};
use super::names;
use super::pod::parse_quantity;
use super::{
    arr_at, duplicate, forbidden, get, go_quote, index, invalid_raw, invalid_str, map_at,
    not_supported, required, str_at, strs_at,
};
use crate::apiserver::errors::{FieldError, FieldErrorKind};

/// `ValidateNode`.
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, false, names::name_is_dns_subdomain, "metadata");
    errs.extend(validate_taints(obj, "metadata.taints"));
    errs.extend(validate_resources(obj));
    let cidrs = strs_at(obj, &["spec", "podCIDRs"]);
    for (i, c) in cidrs.iter().enumerate() {
        errs.extend(names::is_valid_cidr(&index("spec.podCIDRs", i), c));
    }
    if cidrs.len() > 1 {
        let v6 = cidrs
            .iter()
            .filter(|c| names::parse_cidr_sloppy(c).is_some_and(|(ip, _)| ip.is_ipv6()))
            .count();
        if v6 != 1 || cidrs.len() > 2 {
            errs.push(invalid_raw(
                "spec.podCIDRs",
                super::go_string_slice(&cidrs),
                "may specify no more than one CIDR for each IP family",
            ));
        }
        for (i, c) in cidrs.iter().enumerate() {
            if cidrs[..i].contains(c) {
                errs.push(duplicate(index("spec.podCIDRs", i), go_quote(c)));
            }
        }
    }
    errs
}

fn validate_taints(obj: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    for (i, t) in arr_at(obj, &["spec", "taints"]).iter().enumerate() {
        let p = index(path, i);
        let (k, v, effect) = (
            str_at(t, &["key"]),
            str_at(t, &["value"]),
            str_at(t, &["effect"]),
        );
        errs.extend(validate_label_name(k, &format!("{p}.key")));
        let msgs = names::is_valid_label_value(v);
        if !msgs.is_empty() {
            errs.push(invalid_str(format!("{p}.value"), v, msgs.join(";")));
        }
        match effect {
            "" => errs.push(required(format!("{p}.effect"), "")),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
            other => errs.push(not_supported(
                format!("{p}.effect"),
                go_quote(other),
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            )),
        }
        let pair = (effect.to_string(), k.to_string());
        if seen.contains(&pair) {
            let added = str_at(t, &["timeAdded"]);
            let rendered = format!(
                "core.Taint{{Key:{}, Value:{}, Effect:{}, TimeAdded:{}}}",
                go_quote(k),
                go_quote(v),
                go_quote(effect),
                if added.is_empty() {
                    "<nil>".to_string()
                } else {
                    added.to_string()
                }
            );
            errs.push(FieldError::new(
                FieldErrorKind::Duplicate,
                &p,
                Some(rendered),
                "taints must be unique by key and effect pair",
            ));
            continue;
        }
        seen.push(pair);
    }
    errs
}

fn validate_resources(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for list in ["capacity", "allocatable"] {
        for (k, q) in map_at(obj, &["status", list]) {
            let Some(v) = parse_quantity(q) else { continue };
            let p = format!("status.{list}.{k}");
            let shown = q.as_str().map_or_else(|| q.to_string(), str::to_string);
            if v < 0.0 {
                errs.push(invalid_str(&p, &shown, IS_NEGATIVE));
            }
            if (k == "pods" || !k.contains('/') && k.starts_with("count/")) && v.fract() != 0.0 {
                errs.push(invalid_raw(&p, shown, "must be an integer"));
            }
        }
    }
    errs
}

/// `ValidateNodeUpdate` (also used for `nodes/status`).
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(new, old, "metadata");
    errs.extend(validate_resources(new));
    let addrs = arr_at(new, &["status", "addresses"]);
    for (i, a) in addrs.iter().enumerate() {
        if addrs[..i].contains(a) {
            errs.push(duplicate(
                index("status.addresses", i),
                format!(
                    "core.NodeAddress{{Type:{}, Address:{}}}",
                    go_quote(str_at(a, &["type"])),
                    go_quote(str_at(a, &["address"]))
                ),
            ));
        }
    }
    let (oc, nc) = (
        strs_at(old, &["spec", "podCIDRs"]),
        strs_at(new, &["spec", "podCIDRs"]),
    );
    if !oc.is_empty() {
        let msg = "node updates may not change podCIDR except from \"\" to valid";
        if oc.len() != nc.len() {
            errs.push(forbidden("spec.podCIDRs", msg));
        } else {
            for (i, c) in oc.iter().enumerate() {
                if *c != nc[i] {
                    errs.push(forbidden("spec.podCIDRs", msg));
                }
            }
        }
    }
    let op = str_at(old, &["spec", "providerID"]);
    if !op.is_empty() && op != str_at(new, &["spec", "providerID"]) {
        errs.push(forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    errs.extend(validate_taints(new, "metadata.taints"));
    if get(new, &["spec", "externalID"]) != get(old, &["spec", "externalID"]) {
        errs.push(forbidden("spec.externalID", "may not be updated"));
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

    #[rstest]
    #[case(json!({"metadata": {"name": "node-1"}, "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}}), vec![])]
    #[case(json!({"metadata": {"name": "Conf_Bad"}}), vec!["metadata.name: Invalid value: \"Conf_Bad\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"])]
    #[case(json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "k", "effect": "Sometimes"}, {"key": "k", "effect": ""}]}}), vec![
        "metadata.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
        "metadata.taints[1].effect: Required value",
    ])]
    #[case(json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}, {"key": "k", "effect": "NoSchedule"}]}}), vec![
        "metadata.taints[1]: Duplicate value: core.Taint{Key:\"k\", Value:\"\", Effect:\"NoSchedule\", TimeAdded:<nil>}: taints must be unique by key and effect pair",
    ])]
    #[case(json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "-1"}}}), vec!["status.capacity.cpu: Invalid value: \"-1\": must be greater than or equal to 0"])]
    fn create(#[case] obj: Value, #[case] want: Vec<&str>) {
        assert_eq!(strings(validate(&obj)), want);
    }

    #[test]
    fn provider_id_is_fixed() {
        let old = json!({"metadata": {"name": "n"}, "spec": {"providerID": "a"}});
        let new =
            json!({"metadata": {"name": "n"}, "spec": {"providerID": "b", "unschedulable": true}});
        assert_eq!(
            strings(validate_update(&new, &old)),
            vec![
                "spec.providerID: Forbidden: node updates may not change providerID except from \"\" to valid"
            ]
        );
    }
}
