//! Event validation: core/v1 events get the legacy checks only; events.k8s.io/v1 events get the
//! strict ones too (metadata, eventTime, type, no deprecated fields).

use serde_json::Value;

use super::meta::{FIELD_IMMUTABLE, validate_object_meta};
use super::names;
use super::service::validate_qualified_name;
use super::{get, int_at, invalid_raw, invalid_str, opt_int, render, required, same, str_at};
use crate::apiserver::errors::FieldError;

const LENGTH_LIMIT: usize = 128;
const NOTE_LENGTH_LIMIT: usize = 1024;

/// The fields of an event in whichever API it came through.
struct Ev<'a> {
    namespace: &'a str,
    involved_namespace: &'a str,
    event_time: bool,
    reporting_controller: &'a str,
    reporting_field: &'static str,
    reporting_instance: &'a str,
    action: &'a str,
    reason: &'a str,
    message: &'a str,
}

fn legacy(ev: &Ev<'_>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mismatch = || {
        invalid_str(
            "involvedObject.namespace",
            ev.involved_namespace,
            "does not match event.namespace",
        )
    };
    if !ev.event_time {
        if ev.involved_namespace.is_empty() {
            if !ev.namespace.is_empty() && ev.namespace != "default" {
                errs.push(mismatch());
            }
        } else if ev.namespace != ev.involved_namespace {
            errs.push(mismatch());
        }
    } else {
        if ev.involved_namespace.is_empty()
            && ev.namespace != "default"
            && ev.namespace != "kube-system"
        {
            errs.push(mismatch());
        }
        if ev.reporting_controller.is_empty() {
            errs.push(required(ev.reporting_field, ""));
        }
        errs.extend(validate_qualified_name(
            ev.reporting_controller,
            ev.reporting_field,
        ));
        if ev.reporting_instance.is_empty() {
            errs.push(required("reportingInstance", ""));
        }
        if ev.reporting_instance.len() > LENGTH_LIMIT {
            errs.push(invalid_str(
                "reportingInstance",
                "",
                format!("can have at most {LENGTH_LIMIT} characters"),
            ));
        }
        if ev.action.is_empty() {
            errs.push(required("action", ""));
        }
        if ev.action.len() > LENGTH_LIMIT {
            errs.push(invalid_str(
                "action",
                "",
                format!("can have at most {LENGTH_LIMIT} characters"),
            ));
        }
        if ev.reason.is_empty() {
            errs.push(required("reason", ""));
        }
        if ev.reason.len() > LENGTH_LIMIT {
            errs.push(invalid_str(
                "reason",
                "",
                format!("can have at most {LENGTH_LIMIT} characters"),
            ));
        }
        if ev.message.len() > NOTE_LENGTH_LIMIT {
            errs.push(invalid_str(
                "message",
                "",
                format!("can have at most {NOTE_LENGTH_LIMIT} characters"),
            ));
        }
    }
    for m in names::is_dns1123_subdomain(ev.namespace) {
        errs.push(invalid_str("namespace", ev.namespace, m));
    }
    errs
}

fn core_ev(obj: &Value) -> Ev<'_> {
    Ev {
        namespace: str_at(obj, &["metadata", "namespace"]),
        involved_namespace: str_at(obj, &["involvedObject", "namespace"]),
        event_time: get(obj, &["eventTime"]).is_some(),
        reporting_controller: str_at(obj, &["reportingComponent"]),
        reporting_field: "reportingComponent",
        reporting_instance: str_at(obj, &["reportingInstance"]),
        action: str_at(obj, &["action"]),
        reason: str_at(obj, &["reason"]),
        message: str_at(obj, &["message"]),
    }
}

fn v1_ev(obj: &Value) -> Ev<'_> {
    Ev {
        namespace: str_at(obj, &["metadata", "namespace"]),
        involved_namespace: str_at(obj, &["regarding", "namespace"]),
        event_time: get(obj, &["eventTime"]).is_some(),
        reporting_controller: str_at(obj, &["reportingController"]),
        reporting_field: "reportingController",
        reporting_instance: str_at(obj, &["reportingInstance"]),
        action: str_at(obj, &["action"]),
        reason: str_at(obj, &["reason"]),
        message: str_at(obj, &["note"]),
    }
}

/// core/v1 `ValidateEventCreate`: legacy checks only (metadata is left to the generic pass).
pub fn validate_core(obj: &Value) -> Vec<FieldError> {
    legacy(&core_ev(obj))
}

/// core/v1 `ValidateEventUpdate`: the same legacy checks.
pub fn validate_core_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = super::meta::validate_object_meta_update(new, old, "metadata");
    errs.extend(legacy(&core_ev(new)));
    errs
}

/// events.k8s.io/v1 `ValidateEventCreate`.
pub fn validate_events_v1(obj: &Value) -> Vec<FieldError> {
    let ev = v1_ev(obj);
    let mut errs = legacy(&ev);
    errs.extend(validate_object_meta(
        obj,
        true,
        names::name_is_dns_subdomain,
        "metadata",
    ));
    if get(obj, &["series"]).is_some() {
        if int_at(obj, &["series", "count"]) < 2 {
            errs.push(invalid_str("series.count", "", "should be at least 2"));
        }
        if get(obj, &["series", "lastObservedTime"]).is_none() {
            errs.push(required("series.lastObservedTime", ""));
        }
    }
    if !ev.event_time {
        errs.push(required("eventTime", ""));
    }
    let ty = str_at(obj, &["type"]);
    if ty != "Normal" && ty != "Warning" {
        errs.push(invalid_str("type", "", format!("has invalid value: {ty}")));
    }
    if get(obj, &["deprecatedFirstTimestamp"]).is_some() {
        errs.push(invalid_str("firstTimestamp", "", "needs to be unset"));
    }
    if get(obj, &["deprecatedLastTimestamp"]).is_some() {
        errs.push(invalid_str("lastTimestamp", "", "needs to be unset"));
    }
    if opt_int(obj, &["deprecatedCount"]).unwrap_or(0) != 0 {
        errs.push(invalid_str("count", "", "needs to be unset"));
    }
    if !str_at(obj, &["deprecatedSource", "component"]).is_empty()
        || !str_at(obj, &["deprecatedSource", "host"]).is_empty()
    {
        errs.push(invalid_str("source", "", "needs to be unset"));
    }
    errs
}

/// events.k8s.io/v1 `ValidateEventUpdate`: legacy checks plus immutable fields.
pub fn validate_events_v1_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = super::meta::validate_object_meta_update(new, old, "metadata");
    errs.extend(legacy(&v1_ev(new)));
    for (json, field) in [
        ("regarding", "involvedObject"),
        ("reason", "reason"),
        ("note", "message"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
        ("type", "type"),
        ("eventTime", "eventTime"),
        ("action", "action"),
        ("related", "related"),
        ("reportingController", "reportingController"),
        ("reportingInstance", "reportingInstance"),
    ] {
        let (n, o) = (get(new, &[json]), get(old, &[json]));
        if !same(n, o) {
            errs.push(invalid_raw(
                field,
                n.map_or("null".to_string(), render),
                FIELD_IMMUTABLE,
            ));
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

    fn v1(extra: Value) -> Value {
        let mut e = json!({"metadata": {"name": "ev", "namespace": "conf-a"}, "eventTime": "2024-01-01T00:00:00.000000Z",
            "reportingController": "example.com/recorder", "reportingInstance": "r", "action": "A", "reason": "R",
            "type": "Normal", "regarding": {"kind": "Pod", "name": "p", "namespace": "conf-a"}});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    }

    #[rstest]
    #[case(json!({}), vec![])]
    #[case(json!({"eventTime": null}), vec!["eventTime: Required value"])]
    #[case(json!({"type": "Fancy"}), vec!["type: Invalid value: \"\": has invalid value: Fancy"])]
    #[case(json!({"action": "", "deprecatedCount": 3}), vec!["action: Required value", "count: Invalid value: \"\": needs to be unset"])]
    #[case(json!({"series": {"count": 1}}), vec!["series.count: Invalid value: \"\": should be at least 2", "series.lastObservedTime: Required value"])]
    fn events_v1(#[case] extra: Value, #[case] want: Vec<&str>) {
        assert_eq!(strings(validate_events_v1(&v1(extra))), want);
    }

    #[rstest]
    #[case(json!({"metadata": {"name": "e", "namespace": "conf-a"}, "involvedObject": {"namespace": "conf-b"}}), vec!["involvedObject.namespace: Invalid value: \"conf-b\": does not match event.namespace"])]
    #[case(json!({"metadata": {"name": "e", "namespace": "conf-a"}, "involvedObject": {"namespace": "conf-a"}, "reason": "R"}), vec![])]
    #[case(json!({"metadata": {"name": "e", "namespace": "default"}, "involvedObject": {}}), vec![])]
    #[case(json!({"metadata": {"name": "e", "namespace": "conf-a"}, "involvedObject": {}, "eventTime": "2024-01-01T00:00:00.000000Z", "reportingComponent": "c", "reportingInstance": "i", "action": "a", "reason": "r"}), vec!["involvedObject.namespace: Invalid value: \"\": does not match event.namespace"])]
    fn core(#[case] obj: Value, #[case] want: Vec<&str>) {
        assert_eq!(strings(validate_core(&obj)), want);
    }
}
