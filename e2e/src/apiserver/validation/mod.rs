//! Object validation, mirroring kube-apiserver's `validation` packages.
//!
//! Everything here is a pure function over JSON objects that already went through defaulting and
//! admission. The entry points mirror the generic registry:
//!
//! * create (`rest.BeforeCreate`): the kind's own validation (`strategy.Validate`); only when that
//!   passes, the generic `ObjectMeta` check with the path-segment name rule runs.
//! * update (`rest.BeforeUpdate`): the generic `ObjectMeta` update check (`validateCommonFields`)
//!   first, then the kind's `ValidateUpdate`, which itself re-runs the metadata update check. That
//!   is why some errors (e.g. adding a finalizer while deleting) appear twice in `causes`.
//!
//! Messages, field paths and the order of causes follow the Go code, since the matcher compares
//! them by index.

pub mod configmap;
pub mod endpoints;
pub mod event;
pub mod ingress;
pub mod lease;
pub mod meta;
pub mod names;
pub mod namespace;
pub mod networkpolicy;
pub mod node;
pub mod pod;
pub mod priorityclass;
pub mod pvc;
pub mod secret;
pub mod service;

#[cfg(test)]
mod recorded_tests;

use serde_json::Value;

use super::errors::{ApiError, FieldError, FieldErrorKind, render_value};

/// Whether an object is being created or replaces a stored one.
#[derive(Debug, Clone, Copy)]
pub enum Op<'a> {
    Create,
    Update { old: &'a Value },
}

/// Validate an object of `group`/`kind` about to be stored by the main resource (not a subresource).
pub fn validate(group: &str, kind: &str, op: Op<'_>, obj: &Value) -> Vec<FieldError> {
    // events.k8s.io events are stored in core/v1 form; validate them in the form they were sent.
    if group == "events.k8s.io" && kind == "Event" {
        let obj = super::convert::event_core_to_v1(obj);
        return match op {
            Op::Create => validate_inner(group, kind, Op::Create, &obj),
            Op::Update { old } => validate_inner(
                group,
                kind,
                Op::Update {
                    old: &super::convert::event_core_to_v1(old),
                },
                &obj,
            ),
        };
    }
    validate_inner(group, kind, op, obj)
}

fn validate_inner(group: &str, kind: &str, op: Op<'_>, obj: &Value) -> Vec<FieldError> {
    match op {
        Op::Create => {
            let errs = validate_create_kind(group, kind, obj);
            if !errs.is_empty() {
                return errs;
            }
            // The generic pass only adds something new for names that are fine for the kind but
            // unusable as a URL path segment.
            meta::validate_object_meta_generic(obj, is_namespaced(group, kind))
        }
        Op::Update { old } => {
            let mut errs = meta::validate_object_meta_update_generic(obj, old, "metadata");
            errs.extend(validate_update_kind(group, kind, obj, old));
            errs
        }
    }
}

/// Validate a write through a subresource (`status`), e.g. services/status, ingresses/status,
/// pods/status, nodes/status.
pub fn validate_status(group: &str, kind: &str, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = meta::validate_object_meta_update_generic(new, old, "metadata");
    match (group, kind) {
        ("", "Service") => errs.extend(service::validate_status_update(new, old)),
        ("", "Pod") => errs.extend(pod::validate_status_update(new, old)),
        ("", "Node") => errs.extend(node::validate_update(new, old)),
        ("", "Namespace") => errs.extend(namespace::validate_status_update(new, old)),
        ("networking.k8s.io", "Ingress") => errs.extend(ingress::validate_status_update(new, old)),
        _ => errs.extend(meta::validate_object_meta_update(new, old, "metadata")),
    }
    errs
}

/// The 422 error for `errs`, like `ApiError::invalid` but with apimachinery's aggregate message:
/// `ToAggregate()` drops repeated messages (the causes keep them), so e.g. a finalizer added while
/// deleting shows once in the message but twice in `causes`. events.k8s.io events are stored as
/// core events, so their errors name the core kind (`Event`, no group), as the recording shows.
pub fn invalid_error(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> ApiError {
    let group = if group == "events.k8s.io" && kind == "Event" {
        ""
    } else {
        group
    };
    let mut err = ApiError::invalid(group, kind, name, errs);
    let mut msgs: Vec<String> = Vec::new();
    for e in errs {
        let m = e.error_string();
        if !msgs.contains(&m) {
            msgs.push(m);
        }
    }
    let gk = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let message = if msgs.len() == 1 {
        format!("{gk} \"{name}\" is invalid: {}", msgs[0])
    } else {
        format!("{gk} \"{name}\" is invalid: [{}]", msgs.join(", "))
    };
    err.body["message"] = Value::String(message);
    err
}

fn validate_create_kind(group: &str, kind: &str, obj: &Value) -> Vec<FieldError> {
    match (group, kind) {
        ("", "ConfigMap") => configmap::validate(obj),
        ("", "Secret") => secret::validate(obj),
        ("", "Pod") => pod::validate_create(obj),
        ("", "PersistentVolumeClaim") => pvc::validate(obj),
        ("", "PersistentVolume") => pvc::validate_pv(obj),
        ("", "Service") => service::validate(obj),
        ("", "Endpoints") => endpoints::validate_endpoints(obj),
        ("discovery.k8s.io", "EndpointSlice") => endpoints::validate_endpoint_slice(obj),
        ("networking.k8s.io", "Ingress") => ingress::validate(obj),
        ("networking.k8s.io", "IngressClass") => ingress::validate_ingress_class(obj),
        ("networking.k8s.io", "NetworkPolicy") => networkpolicy::validate(obj),
        ("", "Event") => event::validate_core(obj),
        ("events.k8s.io", "Event") => event::validate_events_v1(obj),
        ("coordination.k8s.io", "Lease") => lease::validate(obj),
        ("", "Node") => node::validate(obj),
        ("", "Namespace") => namespace::validate(obj),
        ("scheduling.k8s.io", "PriorityClass") => priorityclass::validate(obj),
        ("", "ServiceAccount") => {
            meta::validate_object_meta(obj, true, names::name_is_dns_subdomain, "metadata")
        }
        _ => meta::validate_object_meta(
            obj,
            is_namespaced(group, kind),
            names::name_is_dns_subdomain,
            "metadata",
        ),
    }
}

fn validate_update_kind(group: &str, kind: &str, new: &Value, old: &Value) -> Vec<FieldError> {
    match (group, kind) {
        ("", "ConfigMap") => configmap::validate_update(new, old),
        ("", "Secret") => secret::validate_update(new, old),
        ("", "Pod") => pod::validate_update(new, old),
        ("", "PersistentVolumeClaim") => pvc::validate_update(new, old),
        ("", "PersistentVolume") => pvc::validate_pv_update(new, old),
        ("", "Service") => service::validate_update(new, old),
        ("", "Node") => node::validate_update(new, old),
        ("", "Namespace") => namespace::validate_update(new, old),
        ("scheduling.k8s.io", "PriorityClass") => priorityclass::validate_update(new, old),
        ("networking.k8s.io", "Ingress") => ingress::validate_update(new, old),
        ("discovery.k8s.io", "EndpointSlice") => {
            endpoints::validate_endpoint_slice_update(new, old)
        }
        ("", "Event") => event::validate_core_update(new, old),
        ("events.k8s.io", "Event") => event::validate_events_v1_update(new, old),
        _ => {
            let mut errs = meta::validate_object_meta_update(new, old, "metadata");
            errs.extend(validate_create_kind(group, kind, new));
            errs
        }
    }
}

/// Kinds stored without a namespace.
fn is_namespaced(group: &str, kind: &str) -> bool {
    !matches!(
        (group, kind),
        (
            "",
            "Namespace" | "Node" | "PersistentVolume" | "ComponentStatus"
        ) | ("scheduling.k8s.io", "PriorityClass")
            | ("node.k8s.io", "RuntimeClass")
            | (
                "storage.k8s.io",
                "StorageClass" | "CSIDriver" | "CSINode" | "VolumeAttachment"
            )
            | ("networking.k8s.io", "IngressClass")
            | (
                "rbac.authorization.k8s.io",
                "ClusterRole" | "ClusterRoleBinding"
            )
            | ("apiextensions.k8s.io", "CustomResourceDefinition")
            | ("admissionregistration.k8s.io", _)
            | ("certificates.k8s.io", "CertificateSigningRequest")
            | ("apiregistration.k8s.io", "APIService")
    )
}

// ---- field paths -------------------------------------------------------------------------

/// `parent.name`, as `field.Path.Child`.
pub(crate) fn child(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// `parent[i]`, as `field.Path.Index`.
pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// `parent[key]`, as `field.Path.Key`.
pub(crate) fn key(parent: &str, k: &str) -> String {
    format!("{parent}[{k}]")
}

// ---- field error constructors missing from errors.rs ---------------------------------------

/// `field.Invalid` with a string value.
pub(crate) fn invalid_str(
    field: impl Into<String>,
    value: &str,
    detail: impl Into<String>,
) -> FieldError {
    FieldError::new(
        FieldErrorKind::Invalid,
        field,
        Some(go_quote(value)),
        detail,
    )
}

/// `field.Invalid` with a value already rendered (numbers, Go literals such as `[]string{...}`).
pub(crate) fn invalid_raw(
    field: impl Into<String>,
    rendered: impl Into<String>,
    detail: impl Into<String>,
) -> FieldError {
    FieldError::new(
        FieldErrorKind::Invalid,
        field,
        Some(rendered.into()),
        detail,
    )
}

/// `field.NotSupported`: `Unsupported value: "x": supported values: "a", "b"`.
pub(crate) fn not_supported(
    field: impl Into<String>,
    rendered: impl Into<String>,
    supported: &[&str],
) -> FieldError {
    let detail = if supported.is_empty() {
        String::new()
    } else {
        format!(
            "supported values: {}",
            supported
                .iter()
                .map(|s| go_quote(s))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    FieldError::new(
        FieldErrorKind::NotSupported,
        field,
        Some(rendered.into()),
        detail,
    )
}

/// `field.Duplicate` with an already rendered value.
pub(crate) fn duplicate(field: impl Into<String>, rendered: impl Into<String>) -> FieldError {
    FieldError::new(FieldErrorKind::Duplicate, field, Some(rendered.into()), "")
}

/// `field.NotFound` with an already rendered value.
pub(crate) fn not_found(field: impl Into<String>, rendered: impl Into<String>) -> FieldError {
    FieldError::new(FieldErrorKind::NotFound, field, Some(rendered.into()), "")
}

/// `field.TooLong`: the value is never printed, only the limit.
pub(crate) fn too_long(field: impl Into<String>, max: usize) -> FieldError {
    let unit = if max == 1 { "byte" } else { "bytes" };
    FieldError::new(
        FieldErrorKind::TooLong,
        field,
        None,
        format!("may not be more than {max} {unit}"),
    )
}

/// `field.TooMany`: `Too many: 5: must have at most 3 items`.
pub(crate) fn too_many(field: impl Into<String>, actual: usize, max: usize) -> FieldError {
    let unit = if max == 1 { "item" } else { "items" };
    FieldError::new(
        FieldErrorKind::TooMany,
        field,
        Some(actual.to_string()),
        format!("must have at most {max} {unit}"),
    )
}

/// `field.Required` with a detail (possibly empty).
pub(crate) fn required(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
    FieldError::required(field, detail)
}

/// `field.Forbidden`.
pub(crate) fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
    FieldError::forbidden(field, detail)
}

// ---- rendering values the way Go prints them ----------------------------------------------

/// Go's `%q` for the ASCII-ish strings that occur in API objects.
pub(crate) fn go_quote(s: &str) -> String {
    render_value(&Value::String(s.to_string()))
}

/// `%#v` of a `[]string`: `[]string{"a", "b"}` (`[]string(nil)` when absent).
pub(crate) fn go_string_slice(items: &[String]) -> String {
    format!(
        "[]string{{{}}}",
        items
            .iter()
            .map(|s| go_quote(s))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A JSON scalar rendered as a field error value (strings quoted, numbers bare, null as `null`).
pub(crate) fn render(v: &Value) -> String {
    render_value(v)
}

// ---- JSON accessors ------------------------------------------------------------------------

pub(crate) fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    if cur.is_null() { None } else { Some(cur) }
}

/// A string field; absent or null reads as `""`, as a Go zero value.
pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn opt_str<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

/// An integer field; absent reads as 0.
pub(crate) fn int_at(v: &Value, path: &[&str]) -> i64 {
    get(v, path).and_then(as_int).unwrap_or(0)
}

pub(crate) fn opt_int(v: &Value, path: &[&str]) -> Option<i64> {
    get(v, path).and_then(as_int)
}

pub(crate) fn as_int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

pub(crate) fn bool_at(v: &Value, path: &[&str]) -> bool {
    get(v, path).and_then(Value::as_bool).unwrap_or(false)
}

/// An array field; absent reads as empty.
pub(crate) fn arr_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// An object field as (key, value) pairs in document order; absent reads as empty.
pub(crate) fn map_at<'a>(v: &'a Value, path: &[&str]) -> Vec<(&'a String, &'a Value)> {
    get(v, path)
        .and_then(Value::as_object)
        .map(|m| m.iter().collect())
        .unwrap_or_default()
}

/// Strings of an array field.
pub(crate) fn strs_at(v: &Value, path: &[&str]) -> Vec<String> {
    arr_at(v, path)
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

/// Go's `reflect.DeepEqual` on optional fields: absent, null and (for our purposes) empty maps /
/// arrays are the zero value.
pub(crate) fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    fn norm(v: Option<&Value>) -> Option<&Value> {
        match v {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) if m.is_empty() => None,
            Some(Value::Array(a)) if a.is_empty() => None,
            other => other,
        }
    }
    norm(a) == norm(b)
}
