//! Pod validation (`ValidatePodCreate`, `ValidatePodUpdate`, `ValidatePodStatusUpdate`) with the
//! common parts of the pod spec: volumes, containers (ports, env, mounts, probes, resources,
//! security context), scheduling fields and the pod security context.

use serde_json::{Map, Value};

use super::meta::{
    FIELD_IMMUTABLE, IS_NEGATIVE, validate_label_name, validate_label_selector, validate_labels,
    validate_object_meta, validate_object_meta_update,
};
use super::names::{self, is_valid_ip};
use super::service::{validate_port_num_or_name, validate_qualified_name};
use super::{
    arr_at, bool_at, child, duplicate, forbidden, get, go_quote, index, int_at, invalid_raw,
    invalid_str, key, map_at, not_found, not_supported, opt_int, opt_str, required, str_at,
    strs_at,
};
use crate::apiserver::errors::FieldError;

const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const FILE_MODE_ERR: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const NOT_POSITIVE: &str = "must be greater than zero";
const UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodCreate`.
pub fn validate_create(pod: &Value) -> Vec<FieldError> {
    let mut errs = validate_pod_metadata_and_spec(pod);
    if !arr_at(pod, &["spec", "ephemeralContainers"]).is_empty() {
        errs.push(forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create",
        ));
    }
    if !str_at(pod, &["spec", "nodeName"]).is_empty()
        && !arr_at(pod, &["spec", "schedulingGates"]).is_empty()
    {
        errs.push(forbidden(
            "spec.nodeName",
            "cannot be set until all schedulingGates have been cleared",
        ));
    }
    errs
}

fn validate_pod_metadata_and_spec(pod: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(pod, true, names::name_is_dns_subdomain, "metadata");
    errs.extend(validate_pod_specific_annotations(pod));
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    errs.extend(validate_pod_spec(spec, "spec"));
    if str_at(spec, &["serviceAccountName"]).is_empty() {
        for (vi, vol) in arr_at(spec, &["volumes"]).iter().enumerate() {
            for (si, src) in arr_at(vol, &["projected", "sources"]).iter().enumerate() {
                if get(src, &["serviceAccountToken"]).is_some() {
                    errs.push(forbidden(
                        format!("spec.volumes[{vi}].projected.sources[{si}].serviceAccountToken"),
                        "must not be specified when serviceAccountName is not set",
                    ));
                }
            }
        }
    }
    for list in ["containers", "initContainers"] {
        for (i, c) in arr_at(spec, &[list]).iter().enumerate() {
            let image = str_at(c, &["image"]);
            if image.len() != image.trim().len() {
                errs.push(invalid_str(
                    format!("spec.{list}[{i}].image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    errs
}

fn validate_pod_specific_annotations(pod: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(v) = opt_str(
        pod,
        &["metadata", "annotations", "kubernetes.io/config.mirror"],
    ) && str_at(pod, &["spec", "nodeName"]).is_empty()
    {
        errs.push(invalid_str(
            key("metadata.annotations", "kubernetes.io/config.mirror"),
            v,
            "must set spec.nodeName if mirror pod annotation is set",
        ));
    }
    if let Some(v) = opt_str(
        pod,
        &[
            "metadata",
            "annotations",
            "controller.kubernetes.io/pod-deletion-cost",
        ],
    ) && v.parse::<i32>().is_err()
    {
        errs.push(invalid_str(
            key(
                "metadata.annotations",
                "controller.kubernetes.io/pod-deletion-cost",
            ),
            v,
            "must be a 32bit integer",
        ));
    }
    errs
}

/// `ValidatePodSpec` for a pod (not a template).
pub fn validate_pod_spec(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let grace = opt_int(spec, &["terminationGracePeriodSeconds"]);
    if grace.is_none() {
        errs.push(required(child(path, "terminationGracePeriodSeconds"), ""));
    }
    let host_users = get(spec, &["securityContext", "hostUsers"])
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let (vols, verrs) = validate_volumes(spec, &child(path, "volumes"));
    errs.extend(verrs);
    let ctx = Ctx {
        vols: &vols,
        grace,
        host_users,
    };
    errs.extend(validate_containers(spec, &ctx, &child(path, "containers")));
    errs.extend(validate_init_containers(
        spec,
        &ctx,
        &child(path, "initContainers"),
    ));
    errs.extend(validate_ephemeral_containers(
        spec,
        &ctx,
        &child(path, "ephemeralContainers"),
    ));
    if bool_at(spec, &["hostNetwork"]) {
        for (i, c) in arr_at(spec, &["containers"]).iter().enumerate() {
            for (j, p) in arr_at(c, &["ports"]).iter().enumerate() {
                let (hp, cp) = (int_at(p, &["hostPort"]), int_at(p, &["containerPort"]));
                if hp != cp {
                    errs.push(invalid_raw(
                        format!("{path}.containers[{i}].ports[{j}].hostPort"),
                        hp.to_string(),
                        "must match `containerPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }
    match str_at(spec, &["restartPolicy"]) {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(required(child(path, "restartPolicy"), "")),
        other => errs.push(not_supported(
            child(path, "restartPolicy"),
            go_quote(other),
            &["Always", "OnFailure", "Never"],
        )),
    }
    let dns_policy = str_at(spec, &["dnsPolicy"]);
    match dns_policy {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.push(required(child(path, "dnsPolicy"), "")),
        other => errs.push(not_supported(
            child(path, "dnsPolicy"),
            go_quote(other),
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    errs.extend(validate_labels(
        spec,
        &["nodeSelector"],
        &child(path, "nodeSelector"),
    ));
    errs.extend(validate_pod_security_context(
        spec,
        &child(path, "securityContext"),
    ));
    for (i, s) in arr_at(spec, &["imagePullSecrets"]).iter().enumerate() {
        if s.as_object().is_some_and(|m| m.keys().any(|k| k != "name")) {
            errs.push(invalid_raw(
                index(&child(path, "imagePullSecrets"), i),
                format!(
                    "core.LocalObjectReference{{Name:{}}}",
                    go_quote(str_at(s, &["name"]))
                ),
                "only name may be set",
            ));
        }
    }
    errs.extend(validate_affinity(spec, &child(path, "affinity")));
    errs.extend(validate_dns_config(
        spec,
        dns_policy,
        &child(path, "dnsConfig"),
    ));
    for (i, g) in arr_at(spec, &["readinessGates"]).iter().enumerate() {
        errs.extend(validate_qualified_name(
            str_at(g, &["conditionType"]),
            &child(&index(&child(path, "readinessGates"), i), "conditionType"),
        ));
    }
    let gates_path = child(path, "schedulingGates");
    let mut seen: Vec<&str> = Vec::new();
    for (i, g) in arr_at(spec, &["schedulingGates"]).iter().enumerate() {
        let name = str_at(g, &["name"]);
        errs.extend(validate_qualified_name(name, &index(&gates_path, i)));
        if seen.contains(&name) {
            errs.push(duplicate(index(&gates_path, i), go_quote(name)));
        }
        seen.push(name);
    }
    errs.extend(validate_topology_spread(
        spec,
        &child(path, "topologySpreadConstraints"),
    ));
    if !host_users {
        for (f, p) in [
            ("hostNetwork", "hostNetwork"),
            ("hostPID", "HostPID"),
            ("hostIPC", "HostIPC"),
        ] {
            if bool_at(spec, &[f]) {
                errs.push(forbidden(
                    child(path, p),
                    "when `pod.Spec.HostUsers` is false",
                ));
            }
        }
    }
    let sa = str_at(spec, &["serviceAccountName"]);
    if !sa.is_empty() {
        for m in names::name_is_dns_subdomain(sa, false) {
            errs.push(invalid_str(child(path, "serviceAccountName"), sa, m));
        }
    }
    let node = str_at(spec, &["nodeName"]);
    if !node.is_empty() {
        for m in names::name_is_dns_subdomain(node, false) {
            errs.push(invalid_str(child(path, "nodeName"), node, m));
        }
    }
    if let Some(ads) = opt_int(spec, &["activeDeadlineSeconds"])
        && !(1..=i64::from(i32::MAX)).contains(&ads)
    {
        errs.push(invalid_raw(
            child(path, "activeDeadlineSeconds"),
            ads.to_string(),
            names::inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }
    for f in ["hostname", "subdomain"] {
        let v = str_at(spec, &[f]);
        if !v.is_empty() {
            for m in names::is_dns1123_label(v) {
                errs.push(invalid_str(child(path, f), v, m));
            }
        }
    }
    errs.extend(validate_tolerations(
        arr_at(spec, &["tolerations"]),
        &child(path, "tolerations"),
    ));
    for (i, ha) in arr_at(spec, &["hostAliases"]).iter().enumerate() {
        let p = index(&child(path, "hostAliases"), i);
        errs.extend(is_valid_ip(&child(&p, "ip"), str_at(ha, &["ip"])));
        for (j, h) in strs_at(ha, &["hostnames"]).iter().enumerate() {
            for m in names::is_dns1123_subdomain(h) {
                errs.push(invalid_str(index(&child(&p, "hostnames"), j), h, m));
            }
        }
    }
    let pc = str_at(spec, &["priorityClassName"]);
    if !pc.is_empty() {
        for m in names::name_is_dns_subdomain(pc, false) {
            errs.push(invalid_str(child(path, "priorityClassName"), pc, m));
        }
    }
    if let Some(rc) = opt_str(spec, &["runtimeClassName"]) {
        for m in names::name_is_dns_subdomain(rc, false) {
            errs.push(invalid_str(child(path, "runtimeClassName"), rc, m));
        }
    }
    if let Some(pp) = get(spec, &["preemptionPolicy"]).and_then(Value::as_str) {
        match pp {
            "PreemptLowerPriority" | "Never" => {}
            "" => errs.push(required(child(path, "preemptionPolicy"), "")),
            other => errs.push(not_supported(
                child(path, "preemptionPolicy"),
                go_quote(other),
                &["PreemptLowerPriority", "Never"],
            )),
        }
    }
    if get(spec, &["os"]).is_some() {
        let os = str_at(spec, &["os", "name"]);
        if os.is_empty() {
            errs.push(required(child(path, "os.name"), "cannot be empty"));
        } else if os != "linux" && os != "windows" {
            errs.push(not_supported(
                child(path, "os"),
                go_quote(os),
                &["linux", "windows"],
            ));
        }
    }
    errs
}

struct Ctx<'a> {
    vols: &'a [(String, Value)],
    grace: Option<i64>,
    host_users: bool,
}

// ---- volumes --------------------------------------------------------------------------------

/// Volume source keys in the order kube-apiserver checks them, with the path used in the
/// "more than 1 volume type" error (Go's own spelling, typos included).
const VOLUME_SOURCES: [(&str, &str); 30] = [
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

/// `ValidateVolumes`: returns the valid volumes by name and the errors.
fn validate_volumes(spec: &Value, path: &str) -> (Vec<(String, Value)>, Vec<FieldError>) {
    let mut errs = Vec::new();
    let mut vols: Vec<(String, Value)> = Vec::new();
    for (i, vol) in arr_at(spec, &["volumes"]).iter().enumerate() {
        let p = index(path, i);
        let name = str_at(vol, &["name"]);
        let mut el = validate_volume_source(vol, &p);
        if name.is_empty() {
            el.push(required(child(&p, "name"), ""));
        } else {
            for m in names::is_dns1123_label(name) {
                el.push(invalid_str(child(&p, "name"), name, m));
            }
        }
        if vols.iter().any(|(n, _)| n == name) {
            el.push(duplicate(child(&p, "name"), go_quote(name)));
        }
        if el.is_empty() {
            vols.push((name.to_string(), vol.clone()));
        } else {
            errs.extend(el);
        }
    }
    (vols, errs)
}

fn validate_volume_source(vol: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut n = 0;
    for (k, forbidden_path) in VOLUME_SOURCES {
        let Some(src) = get(vol, &[k]) else { continue };
        if n > 0 && k != "emptyDir" {
            errs.push(forbidden(
                child(path, forbidden_path),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        n += 1;
        let p = child(path, k);
        match k {
            "hostPath" => errs.extend(validate_host_path(src, &p)),
            "secret" => {
                if str_at(src, &["secretName"]).is_empty() {
                    errs.push(required(child(&p, "secretName"), ""));
                }
                errs.extend(validate_mode(src, "defaultMode", &p));
                errs.extend(validate_items(src, &p));
            }
            "configMap" => {
                if str_at(src, &["name"]).is_empty() {
                    errs.push(required(child(&p, "name"), ""));
                }
                errs.extend(validate_mode(src, "defaultMode", &p));
                errs.extend(validate_items(src, &p));
            }
            "persistentVolumeClaim" if str_at(src, &["claimName"]).is_empty() => {
                errs.push(required(child(&p, "claimName"), ""));
            }
            "nfs" => {
                let np = str_at(src, &["path"]);
                if str_at(src, &["server"]).is_empty() {
                    errs.push(required(child(&p, "server"), ""));
                }
                if np.is_empty() {
                    errs.push(required(child(&p, "path"), ""));
                }
                if !np.starts_with('/') {
                    errs.push(invalid_str(
                        child(&p, "path"),
                        np,
                        "must be an absolute path",
                    ));
                }
            }
            "downwardAPI" => {
                errs.extend(validate_mode(src, "defaultMode", &p));
                for f in arr_at(src, &["items"]) {
                    errs.extend(validate_downward_api_file(f, &p));
                }
            }
            "projected" => {
                errs.extend(validate_mode(src, "defaultMode", &p));
                errs.extend(validate_projected(src, &p));
            }
            "csi" => {
                let d = str_at(src, &["driver"]);
                if d.is_empty() {
                    errs.push(required(child(&p, "driver"), ""));
                }
                if d.len() > 63 {
                    errs.push(super::too_long(child(&p, "driver"), 63));
                }
                for m in names::is_dns1123_subdomain(&d.to_lowercase()) {
                    errs.push(invalid_str(child(&p, "driver"), d, m));
                }
            }
            "ephemeral" if get(src, &["volumeClaimTemplate"]).is_none() => {
                errs.push(required(child(&p, "volumeClaimTemplate"), ""));
            }
            "image" => {
                if str_at(src, &["reference"]).is_empty() {
                    errs.push(required(child(&p, "reference"), ""));
                }
                errs.extend(validate_pull_policy(
                    str_at(src, &["pullPolicy"]),
                    &child(&p, "pullPolicy"),
                ));
            }
            _ => {}
        }
    }
    if n == 0 {
        errs.push(required(path, "must specify a volume type"));
    }
    errs
}

fn validate_host_path(src: &Value, p: &str) -> Vec<FieldError> {
    let hp = str_at(src, &["path"]);
    if hp.is_empty() {
        return vec![required(child(p, "path"), "")];
    }
    let mut errs = no_backsteps(hp, &child(p, "path"));
    if let Some(t) = opt_str(src, &["type"]) {
        const TYPES: [&str; 8] = [
            "",
            "BlockDevice",
            "CharDevice",
            "Directory",
            "DirectoryOrCreate",
            "File",
            "FileOrCreate",
            "Socket",
        ];
        if !TYPES.contains(&t) {
            errs.push(not_supported(child(p, "type"), go_quote(t), &TYPES));
        }
    }
    errs
}

fn validate_mode(src: &Value, field: &str, p: &str) -> Vec<FieldError> {
    match opt_int(src, &[field]) {
        Some(m) if !(0..=0o777).contains(&m) => {
            vec![invalid_raw(child(p, field), m.to_string(), FILE_MODE_ERR)]
        }
        _ => Vec::new(),
    }
}

fn validate_items(src: &Value, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, kp) in arr_at(src, &["items"]).iter().enumerate() {
        errs.extend(validate_key_to_path(kp, &index(&child(p, "items"), i)));
    }
    errs
}

fn validate_key_to_path(kp: &Value, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if str_at(kp, &["key"]).is_empty() {
        errs.push(required(child(p, "key"), ""));
    }
    let path = str_at(kp, &["path"]);
    if path.is_empty() {
        errs.push(required(child(p, "path"), ""));
    }
    errs.extend(local_non_reserved_path(path, &child(p, "path")));
    errs.extend(validate_mode(kp, "mode", p));
    errs
}

fn no_backsteps(target: &str, p: &str) -> Vec<FieldError> {
    if target.replace('\\', "/").split('/').any(|s| s == "..") {
        vec![invalid_str(p, target, "must not contain '..'")]
    } else {
        Vec::new()
    }
}

fn local_descending_path(target: &str, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if target.starts_with('/') {
        errs.push(invalid_str(p, target, "must be a relative path"));
    }
    errs.extend(no_backsteps(target, p));
    errs
}

fn local_non_reserved_path(target: &str, p: &str) -> Vec<FieldError> {
    let mut errs = local_descending_path(target, p);
    if target.starts_with("..") && !target.starts_with("../") {
        errs.push(invalid_str(p, target, "must not start with '..'"));
    }
    errs
}

const VOLUME_FIELD_PATHS: [&str; 5] = [
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];
const ENV_FIELD_PATHS: [&str; 9] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const RESOURCE_FIELD_PATHS: [&str; 6] = [
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn validate_downward_api_file(f: &Value, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let path = str_at(f, &["path"]);
    if path.is_empty() {
        errs.push(required(child(p, "path"), ""));
    }
    errs.extend(local_non_reserved_path(path, &child(p, "path")));
    if let Some(fr) = get(f, &["fieldRef"]) {
        errs.extend(validate_object_field_selector(
            fr,
            &VOLUME_FIELD_PATHS,
            &child(p, "fieldRef"),
        ));
        if get(f, &["resourceFieldRef"]).is_some() {
            errs.push(invalid_str(
                p,
                "resource",
                "fieldRef and resourceFieldRef can not be specified simultaneously",
            ));
        }
    } else if let Some(rf) = get(f, &["resourceFieldRef"]) {
        errs.extend(validate_resource_field_selector(
            rf,
            &child(p, "resourceFieldRef"),
            true,
        ));
    } else {
        errs.push(required(
            p,
            "one of fieldRef and resourceFieldRef is required",
        ));
    }
    errs.extend(validate_mode(f, "mode", p));
    errs
}

fn validate_projected(src: &Value, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut all_paths: Vec<String> = Vec::new();
    let mut note_path = |errs: &mut Vec<FieldError>, path: &str, value: &str| {
        if all_paths.iter().any(|x| x == path) {
            errs.push(invalid_str(p, value, "conflicting duplicate paths"));
        } else {
            all_paths.push(path.to_string());
        }
    };
    for (i, s) in arr_at(src, &["sources"]).iter().enumerate() {
        let sp = index(&child(p, "sources"), i);
        let mut n = 0;
        for kind in ["secret", "configMap"] {
            let Some(x) = get(s, &[kind]) else { continue };
            n += 1;
            let pp = child(&sp, kind);
            let name = str_at(x, &["name"]);
            if name.is_empty() {
                errs.push(required(child(&pp, "name"), ""));
            }
            for (j, kp) in arr_at(x, &["items"]).iter().enumerate() {
                errs.extend(validate_key_to_path(kp, &index(&child(&pp, "items"), j)));
                let path = str_at(kp, &["path"]);
                if !path.is_empty() {
                    note_path(&mut errs, path, name);
                }
            }
        }
        if let Some(x) = get(s, &["downwardAPI"]) {
            n += 1;
            let pp = child(&sp, "downwardAPI");
            for f in arr_at(x, &["items"]) {
                errs.extend(validate_downward_api_file(f, &pp));
                let path = str_at(f, &["path"]);
                if !path.is_empty() {
                    note_path(&mut errs, path, path);
                }
            }
        }
        if let Some(x) = get(s, &["serviceAccountToken"]) {
            n += 1;
            let pp = child(&sp, "serviceAccountToken");
            let exp = int_at(x, &["expirationSeconds"]);
            if exp < 600 {
                errs.push(invalid_raw(
                    child(&pp, "expirationSeconds"),
                    exp.to_string(),
                    "may not specify a duration less than 10 minutes",
                ));
            }
            if exp > 1 << 32 {
                errs.push(invalid_raw(
                    child(&pp, "expirationSeconds"),
                    exp.to_string(),
                    "may not specify a duration larger than 2^32 seconds",
                ));
            }
            let path = str_at(x, &["path"]);
            if path.is_empty() {
                errs.push(required(child(p, "path"), ""));
            } else {
                errs.extend(local_non_reserved_path(path, &child(p, "path")));
            }
        }
        if get(s, &["clusterTrustBundle"]).is_some() {
            n += 1;
        }
        if n > 1 {
            errs.push(forbidden(
                &sp,
                "may not specify more than 1 volume type per source",
            ));
        }
    }
    errs
}

/// `validateObjectFieldSelector` for downward-API field references.
fn validate_object_field_selector(fs: &Value, allowed: &[&str], p: &str) -> Vec<FieldError> {
    let api_version = str_at(fs, &["apiVersion"]);
    if api_version.is_empty() {
        return vec![required(child(p, "apiVersion"), "")];
    }
    let fp = str_at(fs, &["fieldPath"]);
    if fp.is_empty() {
        return vec![required(child(p, "fieldPath"), "")];
    }
    if api_version != "v1" {
        return vec![invalid_str(
            child(p, "fieldPath"),
            fp,
            format!("error converting fieldPath: unsupported pod version: {api_version}"),
        )];
    }
    let (base, subscript) = split_subscript(fp);
    const CONVERTIBLE: [&str; 14] = [
        "metadata.annotations",
        "metadata.labels",
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.serviceAccountName",
        "spec.schedulerName",
        "status.phase",
        "status.hostIP",
        "status.hostIPs",
        "status.podIP",
        "status.podIPs",
    ];
    let convertible = match subscript {
        Some(_) => base == "metadata.annotations" || base == "metadata.labels",
        None => CONVERTIBLE.contains(&base),
    };
    if !convertible {
        return vec![invalid_str(
            child(p, "fieldPath"),
            fp,
            format!("error converting fieldPath: field label not supported: {fp}"),
        )];
    }
    match subscript {
        Some(sub) => match base {
            "metadata.annotations" => validate_qualified_name(&sub.to_lowercase(), p),
            "metadata.labels" => validate_qualified_name(&sub, p),
            _ => vec![invalid_str(p, base, "does not support subscript")],
        },
        None if !allowed.contains(&base) => {
            let mut sorted = allowed.to_vec();
            sorted.sort_unstable();
            vec![not_supported(
                child(p, "fieldPath"),
                go_quote(base),
                &sorted,
            )]
        }
        None => Vec::new(),
    }
}

/// `metadata.labels['key']` → (`metadata.labels`, `key`).
fn split_subscript(fp: &str) -> (&str, Option<String>) {
    if let Some(open) = fp.find("['")
        && fp.ends_with("']")
        && open + 2 <= fp.len() - 2
    {
        return (&fp[..open], Some(fp[open + 2..fp.len() - 2].to_string()));
    }
    (fp, None)
}

fn validate_resource_field_selector(rf: &Value, p: &str, volume: bool) -> Vec<FieldError> {
    let resource = str_at(rf, &["resource"]);
    if volume && str_at(rf, &["containerName"]).is_empty() {
        vec![required(child(p, "containerName"), "")]
    } else if resource.is_empty() {
        vec![required(child(p, "resource"), "")]
    } else if !RESOURCE_FIELD_PATHS.contains(&resource)
        && !resource.starts_with("requests.hugepages-")
        && !resource.starts_with("limits.hugepages-")
    {
        vec![not_supported(
            child(p, "resource"),
            go_quote(resource),
            &RESOURCE_FIELD_PATHS,
        )]
    } else {
        Vec::new()
    }
}

// ---- containers -----------------------------------------------------------------------------

fn validate_containers(spec: &Value, ctx: &Ctx<'_>, path: &str) -> Vec<FieldError> {
    let containers = arr_at(spec, &["containers"]);
    if containers.is_empty() {
        return vec![required(path, "")];
    }
    let mut errs = Vec::new();
    let mut names_seen: Vec<&str> = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        let p = index(path, i);
        errs.extend(validate_container_common(c, spec, ctx, &p));
        let name = str_at(c, &["name"]);
        if names_seen.contains(&name) {
            errs.push(duplicate(child(&p, "name"), go_quote(name)));
        } else {
            names_seen.push(name);
        }
        if let Some(lc) = get(c, &["lifecycle"]) {
            errs.extend(validate_lifecycle(lc, ctx.grace, &child(&p, "lifecycle")));
        }
        errs.extend(validate_probes(c, ctx.grace, &p));
        if get(c, &["restartPolicy"]).is_some() {
            errs.push(forbidden(
                child(&p, "restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    errs.extend(host_port_conflicts(containers, path, 0));
    errs
}

fn validate_probes(c: &Value, grace: Option<i64>, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, kind) in [
        ("livenessProbe", 0),
        ("readinessProbe", 1),
        ("startupProbe", 2),
    ] {
        let Some(probe) = get(c, &[k]) else { continue };
        let pp = child(p, k);
        errs.extend(validate_probe(probe, grace, &pp));
        if kind != 1 && int_at(probe, &["successThreshold"]) != 1 {
            errs.push(invalid_raw(
                child(&pp, "successThreshold"),
                int_at(probe, &["successThreshold"]).to_string(),
                "must be 1",
            ));
        }
        if kind == 1
            && let Some(t) = opt_int(probe, &["terminationGracePeriodSeconds"])
        {
            errs.push(invalid_raw(
                child(&pp, "terminationGracePeriodSeconds"),
                t.to_string(),
                "must not be set for readinessProbes",
            ));
        }
    }
    errs
}

fn validate_init_containers(spec: &Value, ctx: &Ctx<'_>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut all: Vec<String> = strs_of(arr_at(spec, &["containers"]), "name");
    for (i, c) in arr_at(spec, &["initContainers"]).iter().enumerate() {
        let p = index(path, i);
        errs.extend(validate_container_common(c, spec, ctx, &p));
        let mut restart_always = false;
        if let Some(rp) = opt_str(c, &["restartPolicy"]) {
            if rp != "Always" {
                errs.push(not_supported(
                    child(&p, "restartPolicy"),
                    go_quote(rp),
                    &["Always"],
                ));
            }
            restart_always = rp == "Always";
        }
        let name = str_at(c, &["name"]);
        if all.iter().any(|n| n == name) {
            errs.push(duplicate(child(&p, "name"), go_quote(name)));
        } else if !name.is_empty() {
            all.push(name.to_string());
        }
        errs.extend(host_port_conflicts(std::slice::from_ref(c), path, i));
        if restart_always {
            if let Some(lc) = get(c, &["lifecycle"]) {
                errs.extend(validate_lifecycle(lc, ctx.grace, &child(&p, "lifecycle")));
            }
            errs.extend(validate_probes(c, ctx.grace, &p));
        } else {
            for k in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if get(c, &[k]).is_some() {
                    errs.push(forbidden(
                        child(&p, k),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
    errs
}

fn validate_ephemeral_containers(spec: &Value, ctx: &Ctx<'_>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let others: Vec<String> = strs_of(arr_at(spec, &["containers"]), "name")
        .into_iter()
        .chain(strs_of(arr_at(spec, &["initContainers"]), "name"))
        .collect();
    let mut all = others.clone();
    const NOT_ALLOWED: [&str; 7] = [
        "ports",
        "resources",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
        "resizePolicy",
    ];
    for (i, c) in arr_at(spec, &["ephemeralContainers"]).iter().enumerate() {
        let p = index(path, i);
        errs.extend(validate_container_common(c, spec, ctx, &p));
        let image = str_at(c, &["image"]);
        if image.len() != image.trim().len() {
            errs.push(invalid_str(
                child(&p, "image"),
                image,
                "must not have leading or trailing whitespace",
            ));
        }
        let name = str_at(c, &["name"]);
        if all.iter().any(|n| n == name) {
            errs.push(duplicate(child(&p, "name"), go_quote(name)));
        } else {
            all.push(name.to_string());
        }
        let target = str_at(c, &["targetContainerName"]);
        if !target.is_empty() && !others.iter().any(|n| n == target) {
            errs.push(not_found(
                child(&p, "targetContainerName"),
                go_quote(target),
            ));
        }
        for k in NOT_ALLOWED {
            if get(c, &[k]).is_some_and(|v| v.as_object().is_none_or(|m| !m.is_empty())) {
                errs.push(forbidden(
                    child(&p, k),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        for (j, vm) in arr_at(c, &["volumeMounts"]).iter().enumerate() {
            for k in ["subPath", "subPathExpr"] {
                if !str_at(vm, &[k]).is_empty() {
                    errs.push(forbidden(
                        format!("{p}.volumeMounts[{j}].{k}"),
                        "cannot be set for an Ephemeral Container",
                    ));
                }
            }
        }
    }
    errs
}

fn strs_of(items: &[Value], field: &str) -> Vec<String> {
    items
        .iter()
        .map(|c| str_at(c, &[field]).to_string())
        .collect()
}

fn host_port_conflicts(containers: &[Value], path: &str, offset: usize) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, p) in arr_at(c, &["ports"]).iter().enumerate() {
            let hp = int_at(p, &["hostPort"]);
            if hp == 0 {
                continue;
            }
            let k = format!(
                "{}/{}/{hp}",
                str_at(p, &["protocol"]),
                str_at(p, &["hostIP"])
            );
            if seen.contains(&k) {
                errs.push(duplicate(
                    format!("{path}[{}].ports[{pi}].hostPort", ci + offset),
                    go_quote(&k),
                ));
            } else {
                seen.push(k);
            }
        }
    }
    errs
}

fn validate_container_common(c: &Value, _spec: &Value, ctx: &Ctx<'_>, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_at(c, &["name"]);
    if name.is_empty() {
        errs.push(required(child(p, "name"), ""));
    } else {
        for m in names::is_dns1123_label(name) {
            errs.push(invalid_str(child(p, "name"), name, m));
        }
    }
    if str_at(c, &["image"]).is_empty() {
        errs.push(required(child(p, "image"), ""));
    }
    match str_at(c, &["terminationMessagePolicy"]) {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(required(child(p, "terminationMessagePolicy"), "")),
        other => errs.push(not_supported(
            child(p, "terminationMessagePolicy"),
            go_quote(other),
            &["File", "FallbackToLogsOnError"],
        )),
    }
    errs.extend(validate_container_ports(c, &child(p, "ports")));
    errs.extend(validate_env(c, &child(p, "env")));
    errs.extend(validate_env_from(c, &child(p, "envFrom")));
    errs.extend(validate_volume_mounts(c, ctx, &child(p, "volumeMounts")));
    errs.extend(validate_volume_devices(c, ctx, &child(p, "volumeDevices")));
    errs.extend(validate_pull_policy(
        str_at(c, &["imagePullPolicy"]),
        &child(p, "imagePullPolicy"),
    ));
    errs.extend(validate_resources(c, &child(p, "resources")));
    errs.extend(validate_security_context(
        c,
        ctx.host_users,
        &child(p, "securityContext"),
    ));
    errs
}

fn validate_pull_policy(policy: &str, p: &str) -> Vec<FieldError> {
    match policy {
        "Always" | "IfNotPresent" | "Never" => Vec::new(),
        "" => vec![required(p, "")],
        other => vec![not_supported(
            p,
            go_quote(other),
            &["Always", "IfNotPresent", "Never"],
        )],
    }
}

fn validate_container_ports(c: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (i, port) in arr_at(c, &["ports"]).iter().enumerate() {
        let p = index(path, i);
        let name = str_at(port, &["name"]);
        if !name.is_empty() {
            let msgs = names::is_valid_port_name(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(invalid_str(child(&p, "name"), name, m));
                }
            } else if seen.contains(&name) {
                errs.push(duplicate(child(&p, "name"), go_quote(name)));
            } else {
                seen.push(name);
            }
        }
        let cp = int_at(port, &["containerPort"]);
        if cp == 0 {
            errs.push(required(child(&p, "containerPort"), ""));
        } else {
            for m in names::is_valid_port_num(cp) {
                errs.push(invalid_raw(child(&p, "containerPort"), cp.to_string(), m));
            }
        }
        let hp = int_at(port, &["hostPort"]);
        if hp != 0 {
            for m in names::is_valid_port_num(hp) {
                errs.push(invalid_raw(child(&p, "hostPort"), hp.to_string(), m));
            }
        }
        match str_at(port, &["protocol"]) {
            "" => errs.push(required(child(&p, "protocol"), "")),
            pr if PROTOCOLS.contains(&pr) => {}
            pr => errs.push(not_supported(
                child(&p, "protocol"),
                go_quote(pr),
                &PROTOCOLS,
            )),
        }
    }
    errs
}

/// Env var names follow the relaxed rule (RelaxedEnvironmentVariableValidation is on in v1.32).
fn env_name_errors(name: &str) -> Vec<String> {
    if name
        .bytes()
        .any(|b| !(0x20..0x7f).contains(&b) || b == b'=')
        || !name.is_ascii()
    {
        vec!["a valid environment variable name must consist only of printable ASCII characters other than '='".into()]
    } else {
        Vec::new()
    }
}

fn validate_env(c: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, ev) in arr_at(c, &["env"]).iter().enumerate() {
        let p = index(path, i);
        let name = str_at(ev, &["name"]);
        if name.is_empty() {
            errs.push(required(child(&p, "name"), ""));
        } else {
            for m in env_name_errors(name) {
                errs.push(invalid_str(child(&p, "name"), name, m));
            }
        }
        let Some(vf) = get(ev, &["valueFrom"]) else {
            continue;
        };
        let vp = child(&p, "valueFrom");
        let mut n = 0;
        if let Some(fr) = get(vf, &["fieldRef"]) {
            n += 1;
            errs.extend(validate_object_field_selector(
                fr,
                &ENV_FIELD_PATHS,
                &child(&vp, "fieldRef"),
            ));
        }
        if let Some(rf) = get(vf, &["resourceFieldRef"]) {
            n += 1;
            errs.extend(validate_resource_field_selector(
                rf,
                &child(&vp, "resourceFieldRef"),
                false,
            ));
        }
        for k in ["configMapKeyRef", "secretKeyRef"] {
            let Some(sel) = get(vf, &[k]) else { continue };
            n += 1;
            let sp = child(&vp, k);
            let name = str_at(sel, &["name"]);
            for m in names::name_is_dns_subdomain(name, false) {
                errs.push(invalid_str(child(&sp, "name"), name, m));
            }
            let key = str_at(sel, &["key"]);
            if key.is_empty() {
                errs.push(required(child(&sp, "key"), ""));
            } else {
                for m in names::is_config_map_key(key) {
                    errs.push(invalid_str(child(&sp, "key"), key, m));
                }
            }
        }
        if n == 0 {
            errs.push(invalid_str(
                &vp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !str_at(ev, &["value"]).is_empty() {
            errs.push(invalid_str(
                &vp,
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if n > 1 {
            errs.push(invalid_str(
                &vp,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
    errs
}

fn validate_env_from(c: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, ev) in arr_at(c, &["envFrom"]).iter().enumerate() {
        let p = index(path, i);
        let prefix = str_at(ev, &["prefix"]);
        if !prefix.is_empty() {
            for m in env_name_errors(prefix) {
                errs.push(invalid_str(child(&p, "prefix"), prefix, m));
            }
        }
        let mut n = 0;
        for k in ["configMapRef", "secretRef"] {
            let Some(r) = get(ev, &[k]) else { continue };
            n += 1;
            let name = str_at(r, &["name"]);
            if name.is_empty() {
                errs.push(required(child(&child(&p, k), "name"), ""));
            } else {
                for m in names::name_is_dns_subdomain(name, true) {
                    errs.push(invalid_str(child(&child(&p, k), "name"), name, m));
                }
            }
        }
        if n == 0 {
            errs.push(invalid_str(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if n > 1 {
            errs.push(invalid_str(
                path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
    errs
}

fn validate_volume_mounts(c: &Value, ctx: &Ctx<'_>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let devices = arr_at(c, &["volumeDevices"]);
    let mut mount_points: Vec<&str> = Vec::new();
    for (i, m) in arr_at(c, &["volumeMounts"]).iter().enumerate() {
        let p = index(path, i);
        let name = str_at(m, &["name"]);
        let mount_path = str_at(m, &["mountPath"]);
        if name.is_empty() {
            errs.push(required(child(&p, "name"), ""));
        }
        let vol = ctx.vols.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        if vol.is_none() {
            errs.push(not_found(child(&p, "name"), go_quote(name)));
        }
        if mount_path.is_empty() {
            errs.push(required(child(&p, "mountPath"), ""));
        }
        if mount_points.contains(&mount_path) {
            errs.push(invalid_str(
                child(&p, "mountPath"),
                mount_path,
                "must be unique",
            ));
        }
        mount_points.push(mount_path);
        if devices.iter().any(|d| str_at(d, &["name"]) == name) {
            errs.push(invalid_str(
                child(&p, "name"),
                name,
                "must not already exist in volumeDevices",
            ));
        }
        if devices
            .iter()
            .any(|d| str_at(d, &["devicePath"]) == mount_path)
        {
            errs.push(invalid_str(
                child(&p, "mountPath"),
                mount_path,
                "must not already exist as a path in volumeDevices",
            ));
        }
        let (sub, sub_expr) = (str_at(m, &["subPath"]), str_at(m, &["subPathExpr"]));
        if vol.is_some_and(|v| get(v, &["image"]).is_some()) {
            if !sub.is_empty() {
                errs.push(invalid_str(
                    child(&p, "subPath"),
                    sub,
                    "not allowed in image volume sources",
                ));
            }
            if !sub_expr.is_empty() {
                errs.push(invalid_str(
                    child(&p, "subPathExpr"),
                    sub_expr,
                    "not allowed in image volume sources",
                ));
            }
        }
        if !sub.is_empty() {
            errs.extend(local_descending_path(sub, &child(path, "subPath")));
        }
        if !sub_expr.is_empty() {
            if !sub.is_empty() {
                errs.push(invalid_str(
                    child(&p, "subPathExpr"),
                    sub_expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            errs.extend(local_descending_path(sub_expr, &child(path, "subPathExpr")));
        }
        if let Some(mp) = opt_str(m, &["mountPropagation"]) {
            let mp_path = child(path, "mountPropagation");
            if !matches!(mp, "Bidirectional" | "HostToContainer" | "None") {
                errs.push(not_supported(
                    &mp_path,
                    go_quote(mp),
                    &["Bidirectional", "HostToContainer", "None"],
                ));
            }
            if mp == "Bidirectional" && !bool_at(c, &["securityContext", "privileged"]) {
                errs.push(forbidden(
                    &mp_path,
                    "Bidirectional mount propagation is available only to privileged containers",
                ));
            }
        }
        if let Some(rro) = opt_str(m, &["recursiveReadOnly"]) {
            let rp = child(path, "recursiveReadOnly");
            match rro {
                "Disabled" => {}
                "Enabled" | "IfPossible" => {
                    if !bool_at(m, &["readOnly"]) {
                        errs.push(forbidden(
                            &rp,
                            "may only be specified when readOnly is true",
                        ));
                    }
                    if opt_str(m, &["mountPropagation"]).is_some_and(|x| x != "None") {
                        errs.push(forbidden(
                            &rp,
                            "may only be specified when mountPropagation is None or not specified",
                        ));
                    }
                }
                other => errs.push(not_supported(
                    &rp,
                    go_quote(other),
                    &["Disabled", "Enabled", "IfPossible"],
                )),
            }
        }
    }
    errs
}

fn validate_volume_devices(c: &Value, ctx: &Ctx<'_>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mounts = arr_at(c, &["volumeMounts"]);
    let (mut paths, mut dev_names): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    for (i, d) in arr_at(c, &["volumeDevices"]).iter().enumerate() {
        let p = index(path, i);
        let (name, dev_path) = (str_at(d, &["name"]), str_at(d, &["devicePath"]));
        let vol = ctx.vols.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let is_pvc = vol.is_some_and(|v| {
            get(v, &["persistentVolumeClaim"]).is_some() || get(v, &["ephemeral"]).is_some()
        });
        if name.is_empty() {
            errs.push(required(child(&p, "name"), ""));
        }
        if dev_names.contains(&name) {
            errs.push(invalid_str(child(&p, "name"), name, "must be unique"));
        }
        if vol.is_some() && !is_pvc {
            errs.push(invalid_str(
                child(&p, "name"),
                name,
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            ));
        }
        if vol.is_none() {
            errs.push(not_found(child(&p, "name"), go_quote(name)));
        }
        if dev_path.is_empty() {
            errs.push(required(child(&p, "devicePath"), ""));
        }
        if paths.contains(&dev_path) {
            errs.push(invalid_str(
                child(&p, "devicePath"),
                dev_path,
                "must be unique",
            ));
        }
        if !dev_path.is_empty() && !no_backsteps(dev_path, "").is_empty() {
            errs.push(invalid_str(
                child(&p, "devicePath"),
                dev_path,
                "can not contain backsteps ('..')",
            ));
        } else {
            paths.push(dev_path);
        }
        if mounts.iter().any(|m| str_at(m, &["name"]) == name) {
            errs.push(invalid_str(
                child(&p, "name"),
                name,
                "must not already exist in volumeMounts",
            ));
        }
        if mounts.iter().any(|m| str_at(m, &["mountPath"]) == dev_path) {
            errs.push(invalid_str(
                child(&p, "devicePath"),
                dev_path,
                "must not already exist as a path in volumeMounts",
            ));
        }
        if !name.is_empty() {
            dev_names.push(name);
        }
    }
    errs
}

// ---- probes and lifecycle ---------------------------------------------------------------------

fn validate_probe(probe: &Value, grace: Option<i64>, p: &str) -> Vec<FieldError> {
    let mut errs = validate_handler(probe, grace, p, false);
    for f in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        let v = int_at(probe, &[f]);
        if v < 0 {
            errs.push(invalid_raw(child(p, f), v.to_string(), IS_NEGATIVE));
        }
    }
    if let Some(t) = opt_int(probe, &["terminationGracePeriodSeconds"])
        && t <= 0
    {
        errs.push(invalid_raw(
            child(p, "terminationGracePeriodSeconds"),
            t.to_string(),
            "must be greater than 0",
        ));
    }
    errs
}

fn validate_lifecycle(lc: &Value, grace: Option<i64>, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for k in ["postStart", "preStop"] {
        if let Some(h) = get(lc, &[k]) {
            errs.extend(validate_handler(h, grace, &child(p, k), true));
        }
    }
    errs
}

fn validate_handler(h: &Value, grace: Option<i64>, p: &str, lifecycle: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut n = 0;
    let kinds: &[&str] = if lifecycle {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    } else {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    };
    for k in kinds {
        let Some(x) = get(h, &[k]) else { continue };
        let hp = child(p, k);
        if n > 0 {
            errs.push(forbidden(&hp, "may not specify more than 1 handler type"));
            continue;
        }
        n += 1;
        match *k {
            "exec" => {
                if arr_at(x, &["command"]).is_empty() {
                    errs.push(required(child(&hp, "command"), ""));
                }
            }
            "httpGet" => {
                if str_at(x, &["path"]).is_empty() {
                    errs.push(required(child(&hp, "path"), ""));
                }
                errs.extend(validate_port_num_or_name(
                    get(x, &["port"]),
                    &child(&hp, "port"),
                ));
                let scheme = str_at(x, &["scheme"]);
                if scheme != "HTTP" && scheme != "HTTPS" {
                    errs.push(not_supported(
                        child(&hp, "scheme"),
                        go_quote(scheme),
                        &["HTTP", "HTTPS"],
                    ));
                }
                for hdr in arr_at(x, &["httpHeaders"]) {
                    let name = str_at(hdr, &["name"]);
                    for m in names::is_http_header_name(name) {
                        errs.push(invalid_str(child(&hp, "httpHeaders"), name, m));
                    }
                }
            }
            "tcpSocket" => errs.extend(validate_port_num_or_name(
                get(x, &["port"]),
                &child(&hp, "port"),
            )),
            "grpc" => {
                let port = int_at(x, &["port"]);
                for m in names::is_valid_port_num(port) {
                    errs.push(invalid_raw(child(&hp, "port"), port.to_string(), m));
                }
            }
            _ => {
                let secs = int_at(x, &["seconds"]);
                if let Some(g) = grace
                    && (secs <= 0 || secs > g)
                {
                    errs.push(invalid_raw(
                        hp,
                        secs.to_string(),
                        format!("must be greater than 0 and less than terminationGracePeriodSeconds ({g}). Enable AllowPodLifecycleSleepActionZeroValue feature gate for zero sleep."),
                    ));
                }
            }
        }
    }
    if n == 0 {
        errs.push(required(p, "must specify a handler type"));
    }
    errs
}

// ---- resources ------------------------------------------------------------------------------

/// A Kubernetes quantity's value as f64 (enough to compare and to tell negatives / fractions).
pub(crate) fn parse_quantity(q: &Value) -> Option<f64> {
    if let Some(n) = q.as_f64() {
        return Some(n);
    }
    let s = q.as_str()?.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    Some(num * mult)
}

fn quantity_str(q: &Value) -> String {
    match q {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

fn is_overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_hugepages(name)
}

fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && names::is_qualified_name(&format!("requests.{name}")).is_empty()
}

fn is_standard_resource_name(name: &str) -> bool {
    const STANDARD: [&str; 21] = [
        "cpu",
        "memory",
        "ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
        "pods",
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "storage",
        "requests.storage",
        "services.nodeports",
        "services.loadbalancers",
        "count/pods",
    ];
    STANDARD.contains(&name) || is_hugepages(name) || name.starts_with("requests.hugepages-")
}

fn validate_container_resource_name(name: &str, p: &str) -> Vec<FieldError> {
    let mut errs: Vec<FieldError> = names::is_qualified_name(name)
        .into_iter()
        .map(|m| invalid_str(p, name, m))
        .collect();
    if errs.is_empty() && !name.contains('/') && !is_standard_resource_name(name) {
        errs.push(invalid_str(
            p,
            name,
            "must be a standard resource type or fully qualified",
        ));
    }
    if !name.contains('/') {
        if !matches!(name, "cpu" | "memory" | "ephemeral-storage") && !is_hugepages(name) {
            errs.push(invalid_str(
                p,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        errs.push(invalid_str(
            p,
            name,
            "doesn't follow extended resource name standard",
        ));
    }
    errs
}

fn validate_quantity_value(name: &str, q: &Value, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(v) = parse_quantity(q) else {
        return errs;
    };
    if v < 0.0 {
        errs.push(invalid_str(p, &quantity_str(q), IS_NEGATIVE));
    }
    if is_extended_resource(name) && v.fract() != 0.0 {
        errs.push(invalid_raw(p, quantity_str(q), "must be an integer"));
    }
    errs
}

fn validate_resources(c: &Value, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (lim_path, req_path) = (child(p, "limits"), child(p, "requests"));
    let limits = map_at(c, &["resources", "limits"]);
    let requests = map_at(c, &["resources", "requests"]);
    let (mut lim_cpu_mem, mut req_cpu_mem, mut huge) = (false, false, false);
    for (name, q) in &limits {
        let fp = key(&lim_path, name);
        errs.extend(validate_container_resource_name(name, &fp));
        errs.extend(validate_quantity_value(name, q, &fp));
        huge |= is_hugepages(name);
        lim_cpu_mem |= matches!(name.as_str(), "cpu" | "memory");
    }
    for (name, q) in &requests {
        let fp = key(&req_path, name);
        errs.extend(validate_container_resource_name(name, &fp));
        errs.extend(validate_quantity_value(name, q, &fp));
        if let Some((_, lq)) = limits.iter().find(|(n, _)| n == name) {
            let (rv, lv) = (parse_quantity(q), parse_quantity(lq));
            if let (Some(rv), Some(lv)) = (rv, lv) {
                if rv != lv && !is_overcommit_allowed(name) {
                    errs.push(invalid_str(
                        &req_path,
                        &quantity_str(q),
                        format!("must be equal to {name} limit of {}", quantity_str(lq)),
                    ));
                } else if rv > lv {
                    errs.push(invalid_str(
                        &req_path,
                        &quantity_str(q),
                        format!(
                            "must be less than or equal to {name} limit of {}",
                            quantity_str(lq)
                        ),
                    ));
                }
            }
        } else if !is_overcommit_allowed(name) {
            errs.push(required(
                &lim_path,
                "Limit must be set for non overcommitable resources",
            ));
        }
        huge |= is_hugepages(name);
        req_cpu_mem |= matches!(name.as_str(), "cpu" | "memory");
    }
    if !lim_cpu_mem && !req_cpu_mem && huge {
        errs.push(forbidden(p, "HugePages require cpu or memory"));
    }
    errs
}

// ---- security contexts ---------------------------------------------------------------------------

fn validate_unix_id(v: &Value, f: &str, p: &str) -> Vec<FieldError> {
    match opt_int(v, &[f]) {
        Some(id) => names::is_valid_unix_id(id)
            .into_iter()
            .map(|m| invalid_raw(child(p, f), id.to_string(), m))
            .collect(),
        None => Vec::new(),
    }
}

fn validate_seccomp(sc: &Value, p: &str) -> Vec<FieldError> {
    let Some(sp) = get(sc, &["seccompProfile"]) else {
        return Vec::new();
    };
    let p = child(p, "seccompProfile");
    let mut errs = Vec::new();
    let ty = str_at(sp, &["type"]);
    match ty {
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        "" => errs.push(required(
            child(&p, "type"),
            "type is required when seccompProfile is set",
        )),
        other => errs.push(not_supported(
            child(&p, "type"),
            go_quote(other),
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
    let lp = opt_str(sp, &["localhostProfile"]);
    if ty == "Localhost" {
        match lp {
            None => errs.push(required(
                child(&p, "localhostProfile"),
                "must be set when seccomp type is Localhost",
            )),
            Some(l) => errs.extend(local_descending_path(l, &child(&p, "localhostProfile"))),
        }
    } else if lp.is_some() {
        errs.push(invalid_raw(
            child(&p, "localhostProfile"),
            format!(
                "&core.SeccompProfile{{Type:{}, LocalhostProfile:(*string)(0x0)}}",
                go_quote(ty)
            ),
            "can only be set when seccomp type is Localhost",
        ));
    }
    errs
}

fn validate_apparmor(sc: &Value, p: &str) -> Vec<FieldError> {
    let Some(ap) = get(sc, &["appArmorProfile"]) else {
        return Vec::new();
    };
    let p = child(p, "appArmorProfile");
    let lp = opt_str(ap, &["localhostProfile"]);
    match str_at(ap, &["type"]) {
        "Localhost" => match lp {
            None => vec![required(
                child(&p, "localhostProfile"),
                "must be set when AppArmor type is Localhost",
            )],
            Some(l) if l.trim() != l => {
                vec![invalid_str(
                    child(&p, "localhostProfile"),
                    l,
                    "must not be padded with whitespace",
                )]
            }
            Some("") => vec![required(
                child(&p, "localhostProfile"),
                "must be set when AppArmor type is Localhost",
            )],
            Some(_) => Vec::new(),
        },
        "RuntimeDefault" | "Unconfined" => match lp {
            Some(l) => vec![invalid_str(
                child(&p, "localhostProfile"),
                l,
                "can only be set when AppArmor type is Localhost",
            )],
            None => Vec::new(),
        },
        "" => vec![required(
            child(&p, "type"),
            "type is required when appArmorProfile is set",
        )],
        other => vec![not_supported(
            child(&p, "type"),
            go_quote(other),
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )],
    }
}

fn validate_security_context(c: &Value, host_users: bool, p: &str) -> Vec<FieldError> {
    let Some(sc) = get(c, &["securityContext"]) else {
        return Vec::new();
    };
    let mut errs = validate_unix_id(sc, "runAsUser", p);
    errs.extend(validate_unix_id(sc, "runAsGroup", p));
    if let Some(pm) = opt_str(sc, &["procMount"]) {
        if pm != "Default" && pm != "Unmasked" {
            errs.push(not_supported(
                child(p, "procMount"),
                go_quote(pm),
                &["Default", "Unmasked"],
            ));
        }
        if host_users && pm == "Unmasked" {
            errs.push(invalid_str(
                child(p, "procMount"),
                pm,
                "`hostUsers` must be false to use `Unmasked`",
            ));
        }
    }
    errs.extend(validate_seccomp(sc, p));
    if get(sc, &["allowPrivilegeEscalation"]).and_then(Value::as_bool) == Some(false) {
        if bool_at(sc, &["privileged"]) {
            errs.push(invalid_raw(
                p,
                "&core.SecurityContext{...}",
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        if strs_at(sc, &["capabilities", "add"])
            .iter()
            .any(|c| c == "CAP_SYS_ADMIN")
        {
            errs.push(invalid_raw(
                p,
                "&core.SecurityContext{...}",
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            ));
        }
    }
    errs.extend(validate_apparmor(sc, p));
    errs
}

fn validate_pod_security_context(spec: &Value, p: &str) -> Vec<FieldError> {
    let Some(sc) = get(spec, &["securityContext"]) else {
        return Vec::new();
    };
    let mut errs = validate_unix_id(sc, "fsGroup", p);
    errs.extend(validate_unix_id(sc, "runAsUser", p));
    errs.extend(validate_unix_id(sc, "runAsGroup", p));
    for (i, g) in arr_at(sc, &["supplementalGroups"]).iter().enumerate() {
        let g = super::as_int(g).unwrap_or(0);
        for m in names::is_valid_unix_id(g) {
            errs.push(invalid_raw(
                index(&child(p, "supplementalGroups"), i),
                g.to_string(),
                m,
            ));
        }
    }
    if get(spec, &["shareProcessNamespace"]).and_then(Value::as_bool) == Some(true)
        && bool_at(spec, &["hostPID"])
    {
        errs.push(invalid_raw(
            child(p, "shareProcessNamespace"),
            "true",
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, s) in arr_at(sc, &["sysctls"]).iter().enumerate() {
        let np = child(&index(&child(p, "sysctls"), i), "name");
        let name = str_at(s, &["name"]);
        if name.is_empty() {
            errs.push(required(&np, ""));
        } else if !is_valid_sysctl(name) {
            errs.push(invalid_str(
                &np,
                name,
                "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
            ));
        } else if seen.contains(&name) {
            errs.push(duplicate(&np, go_quote(name)));
        }
        seen.push(name);
    }
    if let Some(p2) = opt_str(sc, &["fsGroupChangePolicy"])
        && p2 != "Always"
        && p2 != "OnRootMismatch"
    {
        errs.push(not_supported(
            child(p, "fsGroupChangePolicy"),
            go_quote(p2),
            &["Always", "OnRootMismatch"],
        ));
    }
    errs.extend(validate_seccomp(sc, p));
    errs.extend(validate_apparmor(sc, p));
    if let Some(sgp) = opt_str(sc, &["supplementalGroupsPolicy"])
        && sgp != "Merge"
        && sgp != "Strict"
    {
        errs.push(not_supported(
            child(p, "supplementalGroupsPolicy"),
            go_quote(sgp),
            &["Merge", "Strict"],
        ));
    }
    errs
}

fn is_valid_sysctl(name: &str) -> bool {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$")
            .expect("static regex")
    });
    name.len() <= 253 && RE.is_match(name)
}

// ---- scheduling -----------------------------------------------------------------------------

/// `ValidateTolerations`.
pub fn validate_tolerations(tols: &[Value], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, t) in tols.iter().enumerate() {
        let p = index(path, i);
        let (k, op, val, effect) = (
            str_at(t, &["key"]),
            str_at(t, &["operator"]),
            str_at(t, &["value"]),
            str_at(t, &["effect"]),
        );
        if !k.is_empty() {
            errs.extend(validate_label_name(k, &child(&p, "key")));
        }
        if k.is_empty() && op != "Exists" {
            errs.push(invalid_str(
                child(&p, "operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if get(t, &["tolerationSeconds"]).is_some() && effect != "NoExecute" {
            errs.push(invalid_str(
                child(&p, "effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "Equal" | "" => {
                let msgs = names::is_valid_label_value(val);
                if !msgs.is_empty() {
                    errs.push(invalid_str(child(&p, "operator"), val, msgs.join(";")));
                }
            }
            "Exists" => {
                if !val.is_empty() {
                    errs.push(invalid_str(
                        child(&p, "operator"),
                        val,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(not_supported(
                child(&p, "operator"),
                go_quote(other),
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            errs.push(not_supported(
                child(&p, "effect"),
                go_quote(effect),
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
    errs
}

fn validate_node_selector_requirement(r: &Value, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let values = arr_at(r, &["values"]);
    match str_at(r, &["operator"]) {
        "In" | "NotIn" => {
            if values.is_empty() {
                errs.push(required(
                    child(p, "values"),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                ));
            }
        }
        "Exists" | "DoesNotExist" => {
            if !values.is_empty() {
                errs.push(forbidden(
                    child(p, "values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ));
            }
        }
        "Gt" | "Lt" => {
            if values.len() != 1 {
                errs.push(required(
                    child(p, "values"),
                    "must be specified single value when `operator` is 'Lt' or 'Gt'",
                ));
            }
        }
        other => errs.push(invalid_str(
            child(p, "operator"),
            other,
            "not a valid selector operator",
        )),
    }
    errs.extend(validate_label_name(str_at(r, &["key"]), &child(p, "key")));
    errs
}

fn validate_node_selector_term(term: &Value, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (j, r) in arr_at(term, &["matchExpressions"]).iter().enumerate() {
        errs.extend(validate_node_selector_requirement(
            r,
            &index(&child(p, "matchExpressions"), j),
        ));
    }
    for (j, r) in arr_at(term, &["matchFields"]).iter().enumerate() {
        let rp = index(&child(p, "matchFields"), j);
        if str_at(r, &["key"]) != "metadata.name" {
            errs.push(invalid_str(
                child(&rp, "key"),
                str_at(r, &["key"]),
                "not a valid field selector key",
            ));
        }
    }
    errs
}

fn validate_affinity(spec: &Value, p: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(aff) = get(spec, &["affinity"]) else {
        return errs;
    };
    if let Some(na) = get(aff, &["nodeAffinity"]) {
        let np = child(p, "nodeAffinity");
        if let Some(req) = get(na, &["requiredDuringSchedulingIgnoredDuringExecution"]) {
            let rp = child(&np, "requiredDuringSchedulingIgnoredDuringExecution");
            let terms = arr_at(req, &["nodeSelectorTerms"]);
            if terms.is_empty() {
                errs.push(required(
                    child(&rp, "nodeSelectorTerms"),
                    "must have at least one node selector term",
                ));
            }
            for (i, t) in terms.iter().enumerate() {
                errs.extend(validate_node_selector_term(
                    t,
                    &index(&child(&rp, "nodeSelectorTerms"), i),
                ));
            }
        }
        for (i, t) in arr_at(na, &["preferredDuringSchedulingIgnoredDuringExecution"])
            .iter()
            .enumerate()
        {
            let tp = index(
                &child(&np, "preferredDuringSchedulingIgnoredDuringExecution"),
                i,
            );
            let w = int_at(t, &["weight"]);
            if !(1..=100).contains(&w) {
                errs.push(invalid_raw(
                    child(&tp, "weight"),
                    w.to_string(),
                    "must be in the range 1-100",
                ));
            }
            errs.extend(validate_node_selector_term(
                get(t, &["preference"]).unwrap_or(&Value::Null),
                &child(&tp, "preference"),
            ));
        }
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let Some(pa) = get(aff, &[kind]) else {
            continue;
        };
        let kp = child(p, kind);
        for (i, term) in arr_at(pa, &["requiredDuringSchedulingIgnoredDuringExecution"])
            .iter()
            .enumerate()
        {
            errs.extend(validate_pod_affinity_term(
                term,
                &index(
                    &child(&kp, "requiredDuringSchedulingIgnoredDuringExecution"),
                    i,
                ),
            ));
        }
        for (i, wt) in arr_at(pa, &["preferredDuringSchedulingIgnoredDuringExecution"])
            .iter()
            .enumerate()
        {
            let tp = index(
                &child(&kp, "preferredDuringSchedulingIgnoredDuringExecution"),
                i,
            );
            let w = int_at(wt, &["weight"]);
            if !(1..=100).contains(&w) {
                errs.push(invalid_raw(
                    child(&tp, "weight"),
                    w.to_string(),
                    "must be in the range 1-100",
                ));
            }
            errs.extend(validate_pod_affinity_term(
                get(wt, &["podAffinityTerm"]).unwrap_or(&Value::Null),
                &child(&tp, "podAffinityTerm"),
            ));
        }
    }
    errs
}

fn validate_pod_affinity_term(term: &Value, p: &str) -> Vec<FieldError> {
    let mut errs =
        validate_label_selector(get(term, &["labelSelector"]), &child(p, "labelSelector"));
    errs.extend(validate_label_selector(
        get(term, &["namespaceSelector"]),
        &child(p, "namespaceSelector"),
    ));
    for (i, ns) in strs_at(term, &["namespaces"]).iter().enumerate() {
        for m in names::validate_namespace_name(ns, false) {
            errs.push(invalid_str(index(&child(p, "namespace"), i), ns, m));
        }
    }
    let tk = str_at(term, &["topologyKey"]);
    if tk.is_empty() {
        errs.push(required(child(p, "topologyKey"), "can not be empty"));
    } else {
        errs.extend(validate_label_name(tk, &child(p, "topologyKey")));
    }
    errs
}

fn validate_dns_config(spec: &Value, policy: &str, p: &str) -> Vec<FieldError> {
    let cfg = get(spec, &["dnsConfig"]);
    if policy == "None" {
        match cfg {
            None => {
                return vec![required(
                    p,
                    "must provide `dnsConfig` when `dnsPolicy` is None",
                )];
            }
            Some(c) if arr_at(c, &["nameservers"]).is_empty() => {
                return vec![required(
                    child(p, "nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                )];
            }
            _ => {}
        }
    }
    let Some(cfg) = cfg else { return Vec::new() };
    let mut errs = Vec::new();
    let ns = strs_at(cfg, &["nameservers"]);
    if ns.len() > 3 {
        errs.push(invalid_raw(
            child(p, "nameservers"),
            super::go_string_slice(&ns),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, n) in ns.iter().enumerate() {
        errs.extend(is_valid_ip(&index(&child(p, "nameservers"), i), n));
    }
    let searches = strs_at(cfg, &["searches"]);
    if searches.len() > 32 {
        errs.push(invalid_raw(
            child(p, "searches"),
            super::go_string_slice(&searches),
            "must not have more than 32 search paths",
        ));
    }
    if searches.join(" ").len() > 2048 {
        errs.push(invalid_raw(
            child(p, "searches"),
            super::go_string_slice(&searches),
            "must not have more than 2048 characters (including spaces) in the search list",
        ));
    }
    for (i, s) in searches.iter().enumerate() {
        // RelaxedDNSSearchValidation is off by default in v1.32.
        let s = s.strip_suffix('.').unwrap_or(s);
        for m in names::is_dns1123_subdomain(s) {
            errs.push(invalid_str(index(&child(p, "searches"), i), s, m));
        }
    }
    for (i, o) in arr_at(cfg, &["options"]).iter().enumerate() {
        if str_at(o, &["name"]).is_empty() {
            errs.push(required(
                index(&child(p, "options"), i),
                "must not be empty",
            ));
        }
    }
    errs
}

fn validate_topology_spread(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let cs = arr_at(spec, &["topologySpreadConstraints"]);
    for (i, c) in cs.iter().enumerate() {
        let p = index(path, i);
        let skew = int_at(c, &["maxSkew"]);
        if skew <= 0 {
            errs.push(invalid_raw(
                child(&p, "maxSkew"),
                skew.to_string(),
                NOT_POSITIVE,
            ));
        }
        let tk = str_at(c, &["topologyKey"]);
        if tk.is_empty() {
            errs.push(required(child(&p, "topologyKey"), "can not be empty"));
        }
        let wu = str_at(c, &["whenUnsatisfiable"]);
        if wu != "DoNotSchedule" && wu != "ScheduleAnyway" {
            errs.push(not_supported(
                child(&p, "whenUnsatisfiable"),
                go_quote(wu),
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
        if cs[i + 1..]
            .iter()
            .any(|o| str_at(o, &["topologyKey"]) == tk && str_at(o, &["whenUnsatisfiable"]) == wu)
        {
            errs.push(duplicate(
                child(&p, "{topologyKey, whenUnsatisfiable}"),
                go_quote(&format!("{{{tk}, {wu}}}")),
            ));
        }
        if let Some(md) = opt_int(c, &["minDomains"]) {
            if md <= 0 {
                errs.push(invalid_raw(
                    child(&p, "minDomains"),
                    md.to_string(),
                    NOT_POSITIVE,
                ));
            }
            if wu != "DoNotSchedule" {
                errs.push(invalid_raw(
                    child(&p, "minDomains"),
                    md.to_string(),
                    format!("can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {wu}"),
                ));
            }
        }
        for f in ["nodeAffinityPolicy", "nodeTaintsPolicy"] {
            if let Some(v) = opt_str(c, &[f])
                && v != "Honor"
                && v != "Ignore"
            {
                errs.push(not_supported(
                    child(&p, f),
                    go_quote(v),
                    &["Honor", "Ignore"],
                ));
            }
        }
        errs.extend(validate_label_selector(
            get(c, &["labelSelector"]),
            &child(&p, "labelSelector"),
        ));
    }
    errs
}

// ---- update ---------------------------------------------------------------------------------

/// `ValidatePodUpdate`: besides metadata, only images, activeDeadlineSeconds (decreasing),
/// toleration additions, scheduling-gate removals and a negative grace period set to 1 may change.
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(new, old, "metadata");
    errs.extend(validate_pod_metadata_and_spec(new));
    let mirror = "kubernetes.io/config.mirror";
    let (n, o) = (
        opt_str(new, &["metadata", "annotations", mirror]),
        opt_str(old, &["metadata", "annotations", mirror]),
    );
    let p = key("metadata.annotations", mirror);
    if o.is_some() && n != o {
        errs.push(forbidden(
            &p,
            "may not remove or update mirror pod annotation",
        ));
    } else if o.is_none() && n.is_some() {
        errs.push(forbidden(&p, "may not add mirror pod annotation"));
    }
    let (ns, os) = (
        new.get("spec").unwrap_or(&Value::Null),
        old.get("spec").unwrap_or(&Value::Null),
    );
    for list in ["containers", "initContainers"] {
        let (nc, oc) = (arr_at(ns, &[list]), arr_at(os, &[list]));
        let p = format!("spec.{list}");
        if nc.len() != oc.len() {
            errs.push(forbidden(
                &p,
                "pod updates may not add or remove containers",
            ));
            return errs;
        }
        for (i, c) in nc.iter().enumerate() {
            let image = str_at(c, &["image"]);
            if image.is_empty() {
                errs.push(required(format!("{p}[{i}].image"), ""));
            }
            if image.trim().len() != image.len() {
                errs.push(invalid_str(
                    format!("{p}[{i}].image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    let (nads, oads) = (
        opt_int(ns, &["activeDeadlineSeconds"]),
        opt_int(os, &["activeDeadlineSeconds"]),
    );
    match (nads, oads) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(invalid_raw(
                "spec.activeDeadlineSeconds",
                n.to_string(),
                names::inclusive_range_error(0, i64::from(i32::MAX)),
            ));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(invalid_raw(
                "spec.activeDeadlineSeconds",
                n.to_string(),
                "must be less than or equal to previous value",
            ));
            return errs;
        }
        (None, Some(_)) => {
            errs.push(invalid_raw(
                "spec.activeDeadlineSeconds",
                "null",
                "must not update from a positive integer to nil value",
            ));
        }
        _ => {}
    }
    let (nt, ot) = (arr_at(ns, &["tolerations"]), arr_at(os, &["tolerations"]));
    let mut tol_errs = Vec::new();
    for o in ot {
        let found = nt.iter().any(|n| {
            let (mut a, mut b) = (strip_nulls(o), strip_nulls(n));
            if let (Some(a), Some(b)) = (a.as_object_mut(), b.as_object_mut()) {
                a.remove("tolerationSeconds");
                b.remove("tolerationSeconds");
            }
            a == b
        });
        if !found {
            tol_errs.push(forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            break;
        }
    }
    if tol_errs.is_empty() {
        tol_errs.extend(validate_tolerations(nt, "spec.tolerations"));
    }
    errs.extend(tol_errs);
    let old_gates: Vec<&str> = arr_at(os, &["schedulingGates"])
        .iter()
        .map(|g| str_at(g, &["name"]))
        .collect();
    for (i, g) in arr_at(ns, &["schedulingGates"]).iter().enumerate() {
        let name = str_at(g, &["name"]);
        if !old_gates.contains(&name) {
            errs.push(forbidden(
                format!("spec.schedulingGates[{i}].name"),
                format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }
    let (new_spec, old_spec) = (strip_nulls(ns), strip_nulls(os));
    if new_spec == old_spec {
        return errs;
    }
    let mut munged = new_spec.clone();
    if let Some(m) = munged.as_object_mut() {
        for list in ["containers", "initContainers"] {
            if let Some(Value::Array(cs)) = m.get_mut(list) {
                for (i, c) in cs.iter_mut().enumerate() {
                    match old_spec
                        .get(list)
                        .and_then(|l| l.get(i))
                        .and_then(|o| o.get("image"))
                    {
                        Some(img) => c["image"] = img.clone(),
                        None => {
                            if let Some(c) = c.as_object_mut() {
                                c.remove("image");
                            }
                        }
                    }
                }
            }
        }
        for f in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            copy_field(m, &old_spec, f);
        }
        if old_spec
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|g| g < 0)
            && m.get("terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                == Some(1)
        {
            copy_field(m, &old_spec, "terminationGracePeriodSeconds");
        }
        if !arr_at(&old_spec, &["schedulingGates"]).is_empty()
            && m.get("nodeSelector") != old_spec.get("nodeSelector")
        {
            let old_sel = map_at(&old_spec, &["nodeSelector"]);
            let new_sel = m.get("nodeSelector").cloned().unwrap_or(Value::Null);
            if old_sel
                .iter()
                .any(|(k, v)| new_sel.get(k.as_str()) != Some(*v))
            {
                errs.push(invalid_raw(
                    "spec.nodeSelector",
                    "map[string]string{...}",
                    "only additions to spec.nodeSelector are allowed (no mutations or deletions)",
                ));
            }
            copy_field(m, &old_spec, "nodeSelector");
        }
    }
    if munged != old_spec {
        errs.push(forbidden(
            "spec",
            format!(
                "pod updates may not change fields other than {UPDATABLE_FIELDS}\n{}",
                spec_diff(&old_spec, &munged)
            ),
        ));
    }
    errs
}

fn copy_field(m: &mut Map<String, Value>, from: &Value, f: &str) {
    match from.get(f) {
        Some(v) => {
            m.insert(f.to_string(), v.clone());
        }
        None => {
            m.remove(f);
        }
    }
}

/// JSON without nulls and empty containers, so that absent and zero values compare equal.
fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .filter(|(_, v)| {
                    !matches!(v, Value::Null) && !v.as_object().is_some_and(Map::is_empty)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// A short stand-in for Go's cmp.Diff: the top-level spec fields that differ.
fn spec_diff(old: &Value, new: &Value) -> String {
    let empty = Map::new();
    let (o, n) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = String::from("  core.PodSpec{\n");
    for k in keys {
        if o.get(k) != n.get(k) {
            out.push_str(&format!(
                "- \t{k}: {},\n",
                o.get(k).map_or("nil".into(), Value::to_string)
            ));
            out.push_str(&format!(
                "+ \t{k}: {},\n",
                n.get(k).map_or("nil".into(), Value::to_string)
            ));
        }
    }
    out.push_str("  }\n");
    out
}

/// `ValidatePodStatusUpdate`. The status strategy keeps the stored spec, so `new.spec` is
/// expected to equal `old.spec`.
pub fn validate_status_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(new, old, "metadata");
    const SYSTEM: [&str; 3] = ["PodScheduled", "Ready", "Initialized"];
    for (i, c) in arr_at(new, &["status", "conditions"]).iter().enumerate() {
        let t = str_at(c, &["type"]);
        if !SYSTEM.contains(&t) {
            errs.extend(validate_qualified_name(
                t,
                &format!("metadata.conditions[{i}].Type"),
            ));
        }
    }
    if str_at(new, &["spec", "nodeName"]) != str_at(old, &["spec", "nodeName"]) {
        errs.push(forbidden("status.nodeName", "may not be changed directly"));
    }
    let nom = str_at(new, &["status", "nominatedNodeName"]);
    if !nom.is_empty() && nom != str_at(old, &["status", "nominatedNodeName"]) {
        for m in names::name_is_dns_subdomain(nom, false) {
            errs.push(invalid_str("status.nominatedNodeName", nom, m));
        }
    }
    let (nq, oq) = (
        str_at(new, &["status", "qosClass"]),
        str_at(old, &["status", "qosClass"]),
    );
    if nq != oq {
        errs.push(invalid_str("status.qosClass", nq, FIELD_IMMUTABLE));
    }
    for (list, field) in [("podIPs", "status.podIPs"), ("hostIPs", "status.hostIPs")] {
        let ips: Vec<String> = arr_at(new, &["status", list])
            .iter()
            .map(|x| str_at(x, &["ip"]).to_string())
            .collect();
        if list == "hostIPs" && !ips.is_empty() && str_at(new, &["status", "hostIP"]) != ips[0] {
            errs.push(invalid_str(
                format!("{field}[0].ip"),
                &ips[0],
                "must be equal to `hostIP`",
            ));
        }
        let mut all_ok = true;
        for (i, ip) in ips.iter().enumerate() {
            let e = is_valid_ip(&index(field, i), ip);
            all_ok &= e.is_empty();
            errs.extend(e);
        }
        if ips.len() > 1 && all_ok {
            let v6 = ips
                .iter()
                .filter(|ip| names::parse_ip_sloppy(ip).is_some_and(|a| a.is_ipv6()))
                .count();
            if v6 != 1 || ips.len() > 2 {
                errs.push(invalid_raw(
                    field,
                    format!("{ips:?}"),
                    "may specify no more than one IP for each IP family",
                ));
            }
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

    fn pod(spec_patch: Value) -> Value {
        let mut p = json!({"metadata": {"name": "p", "namespace": "a"}, "spec": {
            "containers": [{"name": "c", "image": "busybox", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
                "volumeMounts": [{"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]}],
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "terminationGracePeriodSeconds": 30,
            "serviceAccountName": "default", "securityContext": {}, "schedulerName": "default-scheduler",
            "volumes": [{"name": "kube-api-access-x", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}]}});
        for (k, v) in spec_patch.as_object().unwrap() {
            p["spec"][k] = v.clone();
        }
        p
    }

    fn ctr(extra: Value) -> Value {
        let mut c = json!({"name": "c", "image": "busybox", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    #[rstest]
    #[case(json!({}), vec![])]
    #[case(json!({"containers": []}), vec!["spec.containers: Required value"])]
    #[case(json!({"containers": [ctr(json!({})), ctr(json!({"image": "nginx"}))]}), vec!["spec.containers[1].name: Duplicate value: \"c\""])]
    #[case(json!({"containers": [ctr(json!({"image": null}))]}), vec!["spec.containers[0].image: Required value"])]
    #[case(json!({"restartPolicy": "Sometimes"}), vec!["spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""])]
    #[case(json!({"containers": [ctr(json!({"ports": [{"containerPort": 0, "protocol": "TCP"}, {"name": "http", "containerPort": 80, "protocol": "TCP"}, {"name": "http", "containerPort": 81, "protocol": "XX"}]}))]}), vec![
        "spec.containers[0].ports[0].containerPort: Required value",
        "spec.containers[0].ports[2].name: Duplicate value: \"http\"",
        "spec.containers[0].ports[2].protocol: Unsupported value: \"XX\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
    ])]
    #[case(json!({"containers": [ctr(json!({"env": [{"name": ""}, {"name": "A=B", "value": "x"}, {"name": "X", "valueFrom": {}}]}))]}), vec![
        "spec.containers[0].env[0].name: Required value",
        "spec.containers[0].env[1].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
        "spec.containers[0].env[2].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
    ])]
    #[case(json!({"containers": [ctr(json!({"env": [{"name": "N", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.phase"}}}]}))]}), vec![
        "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: \"status.phase\": supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"spec.nodeName\", \"spec.serviceAccountName\", \"status.hostIP\", \"status.hostIPs\", \"status.podIP\", \"status.podIPs\"",
    ])]
    #[case(json!({"containers": [ctr(json!({"volumeMounts": [{"name": "missing", "mountPath": "/x"}]}))]}), vec!["spec.containers[0].volumeMounts[0].name: Not found: \"missing\""])]
    #[case(json!({"volumes": [{"name": "v"}, {"name": "Bad_Vol", "emptyDir": {}}]}), vec![
        "spec.volumes[0]: Required value: must specify a volume type",
        "spec.volumes[1].name: Invalid value: \"Bad_Vol\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        "spec.containers[0].volumeMounts[0].name: Not found: \"kube-api-access-x\"",
    ])]
    #[case(json!({"volumes": [{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}], "containers": [ctr(json!({}))]}), vec!["spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type"])]
    #[case(json!({"containers": [ctr(json!({"livenessProbe": {"httpGet": {"path": "/", "port": 0, "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 2, "failureThreshold": 3}}))]}), vec![
        "spec.containers[0].livenessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive",
        "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
    ])]
    #[case(json!({"containers": [ctr(json!({"readinessProbe": {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}}))]}), vec!["spec.containers[0].readinessProbe: Required value: must specify a handler type"])]
    #[case(json!({"containers": [ctr(json!({"resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "1"}}}))]}), vec!["spec.containers[0].resources.requests: Invalid value: \"1\": must be less than or equal to cpu limit of 500m"])]
    #[case(json!({"containers": [ctr(json!({"resources": {"requests": {"gpu": "1"}}}))]}), vec![
        "spec.containers[0].resources.requests[gpu]: Invalid value: \"gpu\": must be a standard resource type or fully qualified",
        "spec.containers[0].resources.requests[gpu]: Invalid value: \"gpu\": must be a standard resource for containers",
    ])]
    #[case(json!({"containers": [ctr(json!({"securityContext": {"runAsUser": -1}}))]}), vec!["spec.containers[0].securityContext.runAsUser: Invalid value: -1: must be between 0 and 4294967295, inclusive"])]
    #[case(json!({"tolerations": [{"operator": "Equal", "value": "x"}]}), vec!["spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\""])]
    #[case(json!({"tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]}), vec!["spec.tolerations[0].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set"])]
    #[case(json!({"dnsPolicy": "None"}), vec!["spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"])]
    #[case(json!({"activeDeadlineSeconds": 0}), vec!["spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"])]
    #[case(json!({"serviceAccountName": null}), vec!["spec.volumes[0].projected.sources[0].serviceAccountToken: Forbidden: must not be specified when serviceAccountName is not set"])]
    #[case(json!({"initContainers": [ctr(json!({"name": "c", "livenessProbe": {"exec": {"command": ["true"]}}}))]}), vec![
        "spec.initContainers[0].name: Duplicate value: \"c\"",
        "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
    ])]
    #[case(json!({"ephemeralContainers": [ctr(json!({"name": "dbg"}))]}), vec!["spec.ephemeralContainers: Forbidden: cannot be set on create"])]
    fn create(#[case] spec: Value, #[case] want: Vec<&str>) {
        assert_eq!(strings(validate_create(&pod(spec))), want);
    }

    #[test]
    fn update_restart_policy_is_forbidden() {
        let old = pod(json!({}));
        let new = pod(json!({"restartPolicy": "Never"}));
        let errs = strings(validate_update(&new, &old));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"), "{errs:?}");
    }

    #[rstest]
    #[case(json!({"containers": [ctr(json!({"image": "nginx", "volumeMounts": [{"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]}))]}), vec![])]
    #[case(json!({"activeDeadlineSeconds": 10}), vec![])]
    #[case(json!({"tolerations": [{"key": "k", "operator": "Exists"}]}), vec![])]
    #[case(json!({"containers": []}), vec!["spec.containers: Required value", "spec.containers: Forbidden: pod updates may not add or remove containers"])]
    fn allowed_and_rejected_updates(#[case] spec: Value, #[case] want: Vec<&str>) {
        let old = pod(json!({}));
        assert_eq!(strings(validate_update(&pod(spec), &old)), want);
    }

    #[test]
    fn tolerations_may_only_be_added() {
        let old = pod(json!({"tolerations": [{"key": "k", "operator": "Exists"}]}));
        let new = pod(json!({"tolerations": [{"key": "j", "operator": "Exists"}]}));
        assert_eq!(
            strings(validate_update(&new, &old)),
            vec![
                "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
            ]
        );
    }

    #[test]
    fn scheduling_gates_only_removed() {
        let old = pod(json!({"schedulingGates": [{"name": "a.io/x"}]}));
        assert!(validate_update(&pod(json!({"schedulingGates": []})), &old).is_empty());
        assert_eq!(
            strings(validate_update(
                &pod(json!({"schedulingGates": [{"name": "a.io/x"}, {"name": "a.io/y"}]})),
                &old
            )),
            vec![
                "spec.schedulingGates[1].name: Forbidden: only deletion is allowed, but found new scheduling gate 'a.io/y'"
            ]
        );
    }

    #[test]
    fn status_update() {
        let old = pod(json!({}));
        let mut new = old.clone();
        new["status"] = json!({"podIPs": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "hostIP": "192.0.2.1", "hostIPs": [{"ip": "192.0.2.1"}]});
        assert_eq!(
            strings(validate_status_update(&new, &old)),
            vec![
                "status.podIPs: Invalid value: [\"10.0.0.1\", \"10.0.0.2\"]: may specify no more than one IP for each IP family"
            ]
        );
    }

    #[rstest]
    #[case(json!("500m"), 0.5)]
    #[case(json!("1Gi"), 1073741824.0)]
    #[case(json!(2), 2.0)]
    #[case(json!("1e3"), 1000.0)]
    fn quantities(#[case] q: Value, #[case] want: f64) {
        assert_eq!(parse_quantity(&q), Some(want));
    }
}
