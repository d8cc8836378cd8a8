//! Lease validation (coordination.k8s.io/v1).

use serde_json::Value;

use super::meta::{IS_NEGATIVE, validate_object_meta};
use super::names;
use super::{forbidden, invalid_raw, opt_int, str_at};
use crate::apiserver::errors::FieldError;

/// `ValidateLease`.
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, true, names::name_is_dns_subdomain, "metadata");
    if let Some(d) = opt_int(obj, &["spec", "leaseDurationSeconds"])
        && d <= 0
    {
        errs.push(invalid_raw(
            "spec.leaseDurationSeconds",
            d.to_string(),
            "must be greater than 0",
        ));
    }
    if let Some(t) = opt_int(obj, &["spec", "leaseTransitions"])
        && t < 0
    {
        errs.push(invalid_raw(
            "spec.leaseTransitions",
            t.to_string(),
            IS_NEGATIVE,
        ));
    }
    if !str_at(obj, &["spec", "preferredHolder"]).is_empty()
        && str_at(obj, &["spec", "strategy"]).is_empty()
    {
        errs.push(forbidden(
            "spec.preferredHolder",
            "may only be specified if `strategy` is defined",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    #[rstest]
    #[case(json!({"leaseDurationSeconds": 15, "holderIdentity": "a"}), vec![])]
    #[case(json!({"leaseDurationSeconds": 0}), vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"])]
    #[case(json!({"leaseTransitions": -1}), vec!["spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0"])]
    fn lease(#[case] spec: Value, #[case] want: Vec<&str>) {
        let l = json!({"metadata": {"name": "l", "namespace": "a"}, "spec": spec});
        assert_eq!(
            validate(&l)
                .iter()
                .map(FieldError::error_string)
                .collect::<Vec<_>>(),
            want
        );
    }
}
