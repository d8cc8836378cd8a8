//! Defaulting and admission, as kube-apiserver's registry strategies and admission plugins do
//! them: ServiceAccount, DefaultTolerationSeconds, LimitRanger, Priority, ResourceQuota (pods and
//! any counted kind), TaintNodesByCondition, Service ClusterIP/NodePort allocation, plus
//! `pods/binding` and `serviceaccounts/token`.
//!
//! The hooks run under the state lock, called by [`super::ops`]:
//! [`admit_create`] (mutating admission + defaults, before validation), [`admit_create_checked`]
//! (validating admission, allocation and quota charge, after validation and the existence
//! check), [`after_create`], [`admit_update`] and [`after_delete`].

pub mod alloc;
pub mod defaults;
pub mod pods;
pub mod quantity;
pub mod quota;
pub mod token;

use std::sync::Arc;

use serde_json::{Value, json};

use super::errors::ApiError;
use super::ops::{State, WriteCtx, now_rfc3339};
use super::resources::ResourceDef;

pub use alloc::Allocators;

/// `<plural> "<name>" is forbidden: <reason>` as admission plugins answer.
pub fn forbidden(def: &ResourceDef, name: &str, reason: &str) -> ApiError {
    let qualified = if def.group.is_empty() {
        def.plural.to_string()
    } else {
        format!("{}.{}", def.plural, def.group)
    };
    ApiError::forbidden(
        format!("{qualified} \"{name}\" is forbidden: {reason}"),
        Some(ApiError::details(def.group, def.plural, name)),
    )
}

fn obj_name(obj: &Value) -> String {
    obj["metadata"]["name"].as_str().unwrap_or("").to_string()
}

/// Store `obj` as is with a fresh resourceVersion (server-side writes that skip the verb
/// machinery: quota charges, bindings).
pub fn put_direct(
    st: &mut State,
    storage: &'static str,
    ns: &str,
    name: &str,
    mut obj: Value,
) -> Arc<Value> {
    let rv = st.store.next_rv();
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    st.store.put(storage, ns, name, obj, rv)
}

/// TaintNodesByCondition: new nodes start tainted not-ready until the node lifecycle
/// controller sees them Ready.
fn taint_new_node(node: &mut Value) {
    let taint = json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"});
    let spec = &mut node["spec"];
    let has = spec["taints"].as_array().is_some_and(|t| {
        t.iter()
            .any(|t| t["key"] == taint["key"] && t["effect"] == taint["effect"])
    });
    if has {
        return;
    }
    match spec["taints"].as_array_mut() {
        Some(t) => t.push(taint),
        None => spec["taints"] = json!([taint]),
    }
}

/// Defaulting and admission before validation (create).
pub fn admit_create(
    st: &mut State,
    def: &ResourceDef,
    ns: &str,
    obj: &mut Value,
    _ctx: &WriteCtx,
) -> Result<(), ApiError> {
    match (def.group, def.plural) {
        ("", "pods") => {
            defaults::default_pod(obj);
            let name = obj_name(obj);
            pods::limit_ranger_defaults(&st.store, ns, obj);
            pods::service_account(&st.store, ns, obj).map_err(|r| forbidden(def, &name, &r))?;
            pods::default_tolerations(obj);
            pods::priority(&st.store, obj).map_err(|r| forbidden(def, &name, &r))?;
            defaults::pod_prepare_create(obj);
            defaults::order_pod(obj);
        }
        ("", "services") => {
            defaults::default_service(obj);
            obj["status"] = json!({"loadBalancer": {}});
            defaults::order_service(obj);
        }
        ("", "namespaces") => defaults::default_namespace(obj, true),
        ("", "nodes") => {
            defaults::default_node(obj);
            taint_new_node(obj);
        }
        (g, _) => defaults::default_other(g, def.kind, obj, true),
    }
    if def.group.is_empty() && def.plural == "persistentvolumeclaims" {
        default_storage_class(&st.store, obj);
    }
    storage_protection(def, obj);
    defaults::order_object(obj);
    Ok(())
}

/// The claim finalizer that the pvc-protection controller releases once no pod uses the claim.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// The volume finalizer that the pv-protection controller releases once no claim is bound.
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";
/// The annotation that marks the default StorageClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

/// StorageObjectInUseProtection: new claims and volumes get their protection finalizer.
fn storage_protection(def: &ResourceDef, obj: &mut Value) {
    let f = match (def.group, def.plural) {
        ("", "persistentvolumeclaims") => PVC_PROTECTION,
        ("", "persistentvolumes") => PV_PROTECTION,
        _ => return,
    };
    match obj["metadata"]["finalizers"].as_array_mut() {
        Some(a) if a.iter().any(|x| x == f) => {}
        Some(a) => a.push(json!(f)),
        None => obj["metadata"]["finalizers"] = json!([f]),
    }
}

/// DefaultStorageClass: a claim without `storageClassName` (absent, not empty) gets the default
/// class (the newest one when several are marked, as kube-apiserver picks).
fn default_storage_class(store: &super::store::Store, obj: &mut Value) {
    if !obj["spec"].is_object() || obj["spec"].get("storageClassName").is_some() {
        return;
    }
    let default = store
        .list("storageclasses", None)
        .filter(|c| c["metadata"]["annotations"][DEFAULT_CLASS_ANNOTATION] == "true")
        .max_by(|a, b| {
            let t = |c: &Value| {
                c["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            };
            t(a).cmp(&t(b))
        })
        .and_then(|c| c["metadata"]["name"].as_str().map(str::to_string));
    if let Some(name) = default {
        obj["spec"]["storageClassName"] = json!(name);
    }
}

/// Allocate the ClusterIP and node ports of a service being created.
fn allocate_service(
    st: &mut State,
    ns: &str,
    obj: &mut Value,
    reserve: bool,
) -> Result<(), ApiError> {
    let me = alloc::owner(ns, &obj_name(obj));
    if alloc::needs_cluster_ip(obj) {
        let requested = obj["spec"]["clusterIP"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let ip = st
            .alloc
            .allocate_ip(&st.store, &me, requested.as_deref(), reserve)?;
        obj["spec"]["clusterIP"] = json!(ip);
        obj["spec"]["clusterIPs"] = json!([ip]);
    }
    if alloc::needs_node_ports(obj) {
        allocate_node_ports(st, &me, obj, &[], reserve)?;
    }
    defaults::order_service(obj);
    Ok(())
}

/// Give every port of `obj` a node port; ports in `held` are already this service's.
fn allocate_node_ports(
    st: &mut State,
    me: &str,
    obj: &mut Value,
    held: &[u16],
    reserve: bool,
) -> Result<(), ApiError> {
    let n = obj["spec"]["ports"].as_array().map(Vec::len).unwrap_or(0);
    for i in 0..n {
        let requested = obj["spec"]["ports"][i]["nodePort"]
            .as_i64()
            .filter(|p| *p != 0);
        if let Some(r) = requested
            && u16::try_from(r).is_ok_and(|r| held.contains(&r))
        {
            continue;
        }
        let field = format!("spec.ports[{i}].nodePort");
        let p = st
            .alloc
            .allocate_port(&st.store, me, &field, requested, reserve)?;
        obj["spec"]["ports"][i]["nodePort"] = json!(p);
    }
    Ok(())
}

/// Admission after validation and the existence check (allocations, quota charge).
pub fn admit_create_checked(
    st: &mut State,
    def: &ResourceDef,
    ns: &str,
    obj: &mut Value,
    ctx: &WriteCtx,
) -> Result<(), ApiError> {
    let name = obj_name(obj);
    if def.group.is_empty() && def.plural == "pods" {
        pods::limit_ranger_validate(&st.store, ns, obj).map_err(|r| forbidden(def, &name, &r))?;
    }
    if def.group.is_empty() && def.plural == "services" {
        allocate_service(st, ns, obj, !ctx.dry_run)?;
    }
    if def.namespaced {
        let charges =
            quota::check_create(&st.store, def, ns, obj).map_err(|r| forbidden(def, &name, &r))?;
        if !ctx.dry_run {
            for (qname, status) in charges {
                if let Some(old) = st.store.get("resourcequotas", ns, &qname) {
                    let mut q = (*old).clone();
                    q["status"] = status;
                    put_direct(st, "resourcequotas", ns, &qname, q);
                }
            }
        }
    }
    Ok(())
}

/// Bookkeeping once a create is stored.
pub fn after_create(st: &mut State, def: &ResourceDef, ns: &str, obj: &Value) {
    if def.group.is_empty() && def.plural == "services" {
        st.alloc
            .claim_service(&alloc::owner(ns, &obj_name(obj)), obj);
    }
}

/// Service update: keep what was allocated, allocate what the new type needs, drop what it
/// no longer needs (only values the client did not change).
fn admit_service_update(
    st: &mut State,
    ns: &str,
    old: &Value,
    obj: &mut Value,
    reserve: bool,
) -> Result<(), ApiError> {
    let me = alloc::owner(ns, &obj_name(obj));
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    let old_spec = &old["spec"];
    let new_type = obj["spec"]["type"]
        .as_str()
        .filter(|t| !t.is_empty())
        .unwrap_or("ClusterIP")
        .to_string();
    let old_type = old_spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    if new_type != "ExternalName" {
        let empty = |v: &Value| {
            v.is_null()
                || v.as_str().is_some_and(str::is_empty)
                || v.as_array().is_some_and(|a| a.is_empty())
        };
        if empty(&obj["spec"]["clusterIP"])
            && empty(&obj["spec"]["clusterIPs"])
            && !empty(&old_spec["clusterIP"])
        {
            obj["spec"]["clusterIP"] = old_spec["clusterIP"].clone();
            obj["spec"]["clusterIPs"] = old_spec["clusterIPs"].clone();
        }
        for f in ["ipFamilies", "ipFamilyPolicy"] {
            if empty(&obj["spec"][f]) && !empty(&old_spec[f]) {
                obj["spec"][f] = old_spec[f].clone();
            }
        }
    }
    let old_ports: Vec<u16> = alloc::service_node_ports(old);
    obj["spec"]["type"] = json!(new_type);
    if alloc::needs_node_ports(old) && alloc::needs_node_ports(obj) {
        let by_name: Vec<(String, i64)> = old_spec["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or("").to_string(),
                    p["nodePort"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        let used: Vec<i64> = obj["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["nodePort"].as_i64())
            .collect();
        if let Some(ports) = obj["spec"].get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports {
                if p["nodePort"].as_i64().unwrap_or(0) == 0 {
                    let pname = p["name"].as_str().unwrap_or("");
                    if let Some((_, v)) = by_name.iter().find(|(n, _)| n == pname)
                        && *v != 0
                        && !used.contains(v)
                    {
                        p["nodePort"] = json!(v);
                    }
                }
            }
        }
    }
    defaults::default_service(obj);
    if new_type == "ExternalName"
        && old_type != "ExternalName"
        && let Some(spec) = obj["spec"].as_object_mut()
    {
        if spec.get("clusterIP") == old_spec.get("clusterIP") {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        spec.remove("ipFamilies");
        spec.remove("ipFamilyPolicy");
        spec.remove("internalTrafficPolicy");
    }
    if !alloc::needs_node_ports(obj) {
        let external_ips = obj["spec"]["externalIPs"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        let keep_etp = new_type == "NodePort" || new_type == "LoadBalancer" || external_ips;
        if let Some(spec) = obj["spec"].as_object_mut() {
            if !keep_etp {
                spec.remove("externalTrafficPolicy");
            }
            if new_type != "LoadBalancer" {
                spec.remove("allocateLoadBalancerNodePorts");
            }
        }
        if let Some(ports) = obj["spec"].get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports {
                let np = p["nodePort"].as_i64().and_then(|v| u16::try_from(v).ok());
                if np.is_some_and(|v| old_ports.contains(&v))
                    && let Some(m) = p.as_object_mut()
                {
                    m.remove("nodePort");
                }
            }
        }
    }
    if alloc::needs_cluster_ip(obj) {
        let cip = obj["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
        let old_cip = old_spec["clusterIP"].as_str().unwrap_or("");
        if cip.is_empty() || cip != old_cip {
            let requested = if cip.is_empty() {
                None
            } else {
                Some(cip.as_str())
            };
            // A changed IP on a service that already had one is validation's to refuse.
            if old_cip.is_empty() || old_cip == "None" || old_type == "ExternalName" {
                let ip = st.alloc.allocate_ip(&st.store, &me, requested, reserve)?;
                obj["spec"]["clusterIP"] = json!(ip);
                obj["spec"]["clusterIPs"] = json!([ip]);
            }
        }
    }
    if alloc::needs_node_ports(obj) {
        allocate_node_ports(st, &me, obj, &old_ports, reserve)?;
    }
    defaults::order_service(obj);
    Ok(())
}

/// Defaulting and admission before validation (update through the main resource).
pub fn admit_update(
    st: &mut State,
    def: &ResourceDef,
    ns: &str,
    old: &Value,
    obj: &mut Value,
    ctx: &WriteCtx,
) -> Result<(), ApiError> {
    match (def.group, def.plural) {
        ("", "pods") => {
            defaults::default_pod(obj);
            // DefaultTolerationSeconds admits updates too.
            pods::default_tolerations(obj);
            defaults::default_pod_conditions(obj);
            defaults::order_pod(obj);
        }
        ("", "services") => admit_service_update(st, ns, old, obj, !ctx.dry_run)?,
        ("", "namespaces") => {
            defaults::default_namespace(obj, false);
            // spec.finalizers only change through the finalize subresource.
            match old["spec"].get("finalizers") {
                Some(f) => {
                    if !obj["spec"].is_object() {
                        obj["spec"] = json!({});
                    }
                    obj["spec"]["finalizers"] = f.clone();
                }
                None => {
                    if let Some(s) = obj["spec"].as_object_mut() {
                        s.remove("finalizers");
                    }
                }
            }
        }
        ("", "nodes") => defaults::default_node(obj),
        ("", "persistentvolumeclaims") => {
            defaults::default_other("", def.kind, obj, false);
            resize_allowed(&st.store, old, obj).map_err(|r| forbidden(def, &obj_name(obj), &r))?;
        }
        (g, _) => defaults::default_other(g, def.kind, obj, false),
    }
    defaults::order_object(obj);
    Ok(())
}

/// PersistentVolumeClaimResize: a larger storage request needs a bound, dynamically provisioned
/// claim whose StorageClass has `allowVolumeExpansion: true`.
fn resize_allowed(store: &super::store::Store, old: &Value, new: &Value) -> Result<(), String> {
    let size = |o: &Value| {
        o["spec"]["resources"]["requests"]["storage"]
            .as_str()
            .and_then(quantity::Quantity::parse)
    };
    let (Some(before), Some(after)) = (size(old), size(new)) else {
        return Ok(());
    };
    if after <= before || old["status"]["phase"] != "Bound" {
        return Ok(());
    }
    let class = old["spec"]["storageClassName"].as_str().unwrap_or("");
    let expandable = !class.is_empty()
        && store
            .get("storageclasses", "", class)
            .is_some_and(|c| c["allowVolumeExpansion"] == json!(true));
    if expandable {
        Ok(())
    } else {
        Err("only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize".into())
    }
}

/// Release what the object held (IPs, ports).
pub fn after_delete(st: &mut State, def: &ResourceDef, ns: &str, obj: &Value) {
    if def.group.is_empty() && def.plural == "services" {
        st.alloc
            .release_service(&alloc::owner(ns, &obj_name(obj)), obj);
    }
}

/// `pods/binding`: set spec.nodeName once (and the PodScheduled condition).
pub fn bind(
    st: &mut State,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    body: &Value,
    ctx: &WriteCtx,
) -> Result<Value, ApiError> {
    let pod = st
        .store
        .get(def.storage, ns, name)
        .ok_or_else(|| ApiError::not_found(def.group, def.plural, name))?;
    let node = body["target"]["name"].as_str().unwrap_or("");
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            name,
            &[super::errors::FieldError::required("target.name", "")],
        ));
    }
    if !pod["metadata"]["deletionTimestamp"].is_null() {
        return Err(ApiError::conflict(
            "",
            "pods/binding",
            name,
            &format!("pod {name} is being deleted, cannot be assigned to a host"),
        ));
    }
    if let Some(uid) = body["metadata"]["uid"].as_str().filter(|u| !u.is_empty())
        && uid != pod["metadata"]["uid"].as_str().unwrap_or("")
    {
        return Err(ApiError::conflict(
            "",
            "pods/binding",
            name,
            "the UID in the precondition does not match the UID in record",
        ));
    }
    if let Some(current) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Err(ApiError::conflict(
            "",
            "pods/binding",
            name,
            &format!("pod {name} is already assigned to node {current:?}"),
        ));
    }
    if !ctx.dry_run {
        let mut updated = (*pod).clone();
        pods::apply_binding(
            &mut updated,
            node,
            body["metadata"]["annotations"].as_object(),
            &now_rfc3339(),
        );
        put_direct(st, def.storage, ns, name, updated);
    }
    Ok(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

/// `serviceaccounts/token`: a TokenRequest answer.
pub fn token_request(st: &State, ns: &str, name: &str, body: &Value) -> Result<Value, ApiError> {
    token::token_request(
        &st.store,
        ns,
        name,
        body,
        jiff::Timestamp::now().as_second(),
    )
}

/// Status-subresource writes: what the status strategies backfill (a pod's immutable
/// `qosClass`, a node's zero-valued status structs).
pub fn admit_status_update(def: &ResourceDef, old: &Value, obj: &mut Value) {
    match (def.group, def.plural) {
        ("", "pods") => {
            if obj["status"]["qosClass"].as_str().is_none_or(str::is_empty)
                && old["status"]["qosClass"].is_string()
            {
                if !obj["status"].is_object() {
                    obj["status"] = json!({});
                }
                obj["status"]["qosClass"] = old["status"]["qosClass"].clone();
            }
            defaults::default_pod_conditions(obj);
            defaults::order_pod(obj);
        }
        ("", "nodes") => defaults::default_node(obj),
        _ => {}
    }
}
