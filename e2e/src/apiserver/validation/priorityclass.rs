//! PriorityClass validation (scheduling.k8s.io/v1): reserved `system-` names, the user maximum,
//! and an immutable value.

use serde_json::Value;

use super::meta::{FIELD_IMMUTABLE, validate_object_meta, validate_object_meta_update};
use super::names;
use super::{
    bool_at, forbidden, get, go_quote, int_at, invalid_raw, not_supported, opt_str, required,
    str_at,
};
use crate::apiserver::errors::FieldError;

const HIGHEST_USER_DEFINABLE: i64 = 1_000_000_000;
const SYSTEM_CLASSES: [(&str, i64); 2] = [
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

/// `ValidatePriorityClass`.
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, false, names::name_is_dns_subdomain, "metadata");
    let name = str_at(obj, &["metadata", "name"]);
    let value = int_at(obj, &["value"]);
    if name.starts_with("system-") {
        let problem = match SYSTEM_CLASSES.iter().find(|(n, _)| *n == name) {
            None => Some(format!("{name} is not a known system priority class")),
            Some((n, v)) if *v != value => Some(format!("value of {n} PriorityClass must be {v}")),
            Some((n, _)) if bool_at(obj, &["globalDefault"]) => {
                Some(format!("globalDefault of {n} PriorityClass must be false"))
            }
            Some(_) => None,
        };
        if let Some(p) = problem {
            errs.push(forbidden(
                "metadata.name",
                format!("priority class names with 'system-' prefix are reserved for system use only. error: {p}"),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE {
        errs.push(forbidden(
            "value",
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE}"),
        ));
    }
    if let Some(pp) = get(obj, &["preemptionPolicy"]).and_then(Value::as_str) {
        match pp {
            "PreemptLowerPriority" | "Never" => {}
            "" => errs.push(required("preemptionPolicy", "")),
            other => errs.push(not_supported(
                "preemptionPolicy",
                go_quote(other),
                &["PreemptLowerPriority", "Never"],
            )),
        }
    }
    errs
}

/// `ValidatePriorityClassUpdate`: value and preemptionPolicy are fixed.
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(new, old, "metadata");
    if int_at(new, &["value"]) != int_at(old, &["value"]) {
        errs.push(forbidden("value", "may not be changed in an update."));
    }
    let (n, o) = (
        opt_str(new, &["preemptionPolicy"]),
        opt_str(old, &["preemptionPolicy"]),
    );
    if n != o {
        errs.push(invalid_raw(
            "preemptionPolicy",
            n.map_or("null".to_string(), go_quote),
            FIELD_IMMUTABLE,
        ));
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
    #[case(json!({"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "PreemptLowerPriority"}), vec![])]
    #[case(json!({"metadata": {"name": "high"}, "value": 2000000000}), vec!["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"])]
    #[case(json!({"metadata": {"name": "system-x"}, "value": 1}), vec!["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-x is not a known system priority class"])]
    #[case(json!({"metadata": {"name": "high"}, "value": 1, "preemptionPolicy": "Sometimes"}), vec!["preemptionPolicy: Unsupported value: \"Sometimes\": supported values: \"PreemptLowerPriority\", \"Never\""])]
    fn create(#[case] obj: Value, #[case] want: Vec<&str>) {
        assert_eq!(strings(validate(&obj)), want);
    }

    #[test]
    fn value_is_immutable() {
        let old = json!({"metadata": {"name": "conf-high"}, "value": 1000, "preemptionPolicy": "PreemptLowerPriority"});
        let new = json!({"metadata": {"name": "conf-high"}, "value": 5, "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            strings(validate_update(&new, &old)),
            vec!["value: Forbidden: may not be changed in an update."]
        );
    }
}
