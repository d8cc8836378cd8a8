//! Pure defaulting, as the `SetDefaults_*` functions and the registry strategies'
//! `PrepareForCreate` do it (plus the zero-value fields Go always serialises), and the field
//! order Go's structs give, so stored objects read like kube-apiserver's.

use serde_json::{Map, Value, json};

use super::quantity::Quantity;

/// Put the keys of `m` in `order`; keys not listed keep their relative order at the end.
pub fn reorder(v: &mut Value, order: &[&str]) {
    let Some(m) = v.as_object_mut() else { return };
    if m.len() < 2 {
        return;
    }
    let old = std::mem::take(m);
    let mut rest: Vec<(String, Value)> = Vec::with_capacity(old.len());
    let mut slots: Vec<Option<Value>> = vec![None; order.len()];
    for (k, val) in old {
        match order.iter().position(|o| *o == k) {
            Some(i) => slots[i] = Some(val),
            None => rest.push((k, val)),
        }
    }
    for (i, s) in slots.into_iter().enumerate() {
        if let Some(val) = s {
            m.insert(order[i].to_string(), val);
        }
    }
    for (k, val) in rest {
        m.insert(k, val);
    }
}

fn set_if_missing(v: &mut Value, key: &str, default: Value) {
    if let Some(m) = v.as_object_mut()
        && (!m.contains_key(key) || m[key].is_null())
    {
        m.insert(key.to_string(), default);
    }
}

fn is_empty_str(v: &Value) -> bool {
    v.is_null() || v.as_str().is_some_and(str::is_empty)
}

fn ensure_object<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v[key].is_object() {
        v[key] = json!({});
    }
    v[key].as_object_mut().expect("just made an object")
}

const OBJECT_ORDER: &[&str] = &["kind", "apiVersion", "metadata", "spec", "status"];
const META_ORDER: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];
const POD_SPEC_ORDER: &[&str] = &[
    "volumes",
    "initContainers",
    "containers",
    "ephemeralContainers",
    "restartPolicy",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "dnsPolicy",
    "nodeSelector",
    "serviceAccountName",
    "serviceAccount",
    "automountServiceAccountToken",
    "nodeName",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "shareProcessNamespace",
    "securityContext",
    "imagePullSecrets",
    "hostname",
    "subdomain",
    "affinity",
    "schedulerName",
    "tolerations",
    "hostAliases",
    "priorityClassName",
    "priority",
    "dnsConfig",
    "readinessGates",
    "runtimeClassName",
    "enableServiceLinks",
    "preemptionPolicy",
    "overhead",
    "topologySpreadConstraints",
    "setHostnameAsFQDN",
    "os",
    "hostUsers",
    "schedulingGates",
    "resourceClaims",
    "resources",
];
const CONTAINER_ORDER: &[&str] = &[
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "ports",
    "envFrom",
    "env",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "volumeMounts",
    "volumeDevices",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "imagePullPolicy",
    "securityContext",
    "stdin",
    "stdinOnce",
    "tty",
];
const POD_STATUS_ORDER: &[&str] = &[
    "observedGeneration",
    "phase",
    "conditions",
    "message",
    "reason",
    "nominatedNodeName",
    "hostIP",
    "hostIPs",
    "podIP",
    "podIPs",
    "startTime",
    "initContainerStatuses",
    "containerStatuses",
    "qosClass",
    "ephemeralContainerStatuses",
    "resize",
    "resourceClaimStatuses",
];
const SERVICE_SPEC_ORDER: &[&str] = &[
    "ports",
    "selector",
    "clusterIP",
    "clusterIPs",
    "type",
    "externalIPs",
    "sessionAffinity",
    "loadBalancerIP",
    "loadBalancerSourceRanges",
    "externalName",
    "externalTrafficPolicy",
    "healthCheckNodePort",
    "publishNotReadyAddresses",
    "sessionAffinityConfig",
    "ipFamilies",
    "ipFamilyPolicy",
    "allocateLoadBalancerNodePorts",
    "loadBalancerClass",
    "internalTrafficPolicy",
    "trafficDistribution",
];
const SERVICE_PORT_ORDER: &[&str] = &[
    "name",
    "protocol",
    "appProtocol",
    "port",
    "targetPort",
    "nodePort",
];

/// Order the top level and metadata of any object.
pub fn order_object(obj: &mut Value) {
    reorder(obj, OBJECT_ORDER);
    if let Some(m) = obj.get_mut("metadata") {
        reorder(m, META_ORDER);
    }
}

/// Image pull policy default: `Always` for `:latest` or untagged images, else `IfNotPresent`.
pub fn image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

fn default_probe(p: &mut Value) {
    if !p.is_object() {
        return;
    }
    set_if_missing(p, "timeoutSeconds", json!(1));
    set_if_missing(p, "periodSeconds", json!(10));
    set_if_missing(p, "successThreshold", json!(1));
    set_if_missing(p, "failureThreshold", json!(3));
    if p["httpGet"].is_object() {
        set_if_missing(&mut p["httpGet"], "path", json!("/"));
        set_if_missing(&mut p["httpGet"], "scheme", json!("HTTP"));
    }
}

fn default_container(c: &mut Value) {
    if !c.is_object() {
        return;
    }
    set_if_missing(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_if_missing(c, "terminationMessagePolicy", json!("File"));
    if is_empty_str(&c["imagePullPolicy"]) {
        let policy = image_pull_policy(c["image"].as_str().unwrap_or(""));
        c["imagePullPolicy"] = json!(policy);
    }
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            set_if_missing(p, "protocol", json!("TCP"));
        }
    }
    if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
        for e in env {
            if e["valueFrom"]["fieldRef"].is_object() {
                set_if_missing(&mut e["valueFrom"]["fieldRef"], "apiVersion", json!("v1"));
            }
        }
    }
    ensure_object(c, "resources");
    // Requests default to limits (SetDefaults_Pod).
    if let Some(limits) = c["resources"]["limits"].as_object().cloned()
        && !limits.is_empty()
    {
        let req = ensure_object(&mut c["resources"], "requests");
        for (k, v) in limits {
            req.entry(k).or_insert(v);
        }
        reorder(&mut c["resources"], &["limits", "requests", "claims"]);
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe) {
            default_probe(p);
        }
    }
    reorder(c, CONTAINER_ORDER);
}

fn default_volume(v: &mut Value) {
    for (src, field) in [
        ("secret", "defaultMode"),
        ("configMap", "defaultMode"),
        ("projected", "defaultMode"),
        ("downwardAPI", "defaultMode"),
    ] {
        if v[src].is_object() {
            set_if_missing(&mut v[src], field, json!(420));
        }
    }
    if v["hostPath"].is_object() {
        set_if_missing(&mut v["hostPath"], "type", json!(""));
    }
    if let Some(items) = v
        .get_mut("downwardAPI")
        .and_then(|d| d.get_mut("items"))
        .and_then(Value::as_array_mut)
    {
        for i in items {
            if i["fieldRef"].is_object() {
                set_if_missing(&mut i["fieldRef"], "apiVersion", json!("v1"));
            }
        }
    }
}

/// `SetDefaults_Pod` / `SetDefaults_PodSpec` and friends (create and update).
pub fn default_pod(pod: &mut Value) {
    if !pod["spec"].is_object() {
        pod["spec"] = json!({});
    }
    let spec = &mut pod["spec"];
    set_if_missing(spec, "restartPolicy", json!("Always"));
    set_if_missing(spec, "terminationGracePeriodSeconds", json!(30));
    set_if_missing(spec, "dnsPolicy", json!("ClusterFirst"));
    set_if_missing(spec, "securityContext", json!({}));
    set_if_missing(spec, "schedulerName", json!("default-scheduler"));
    set_if_missing(spec, "enableServiceLinks", json!(true));
    let host_network = spec["hostNetwork"] == json!(true);
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                default_container(c);
                if host_network
                    && let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut)
                {
                    for p in ports {
                        if p["hostPort"].is_null() {
                            p["hostPort"] = p["containerPort"].clone();
                        }
                    }
                }
            }
        }
    }
    if let Some(vols) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols {
            default_volume(v);
        }
    }
    // `serviceAccount` is the deprecated mirror of `serviceAccountName`.
    if !is_empty_str(&spec["serviceAccountName"]) {
        spec["serviceAccount"] = spec["serviceAccountName"].clone();
    } else if !is_empty_str(&spec["serviceAccount"]) {
        spec["serviceAccountName"] = spec["serviceAccount"].clone();
    }
}

/// Pod conditions always carry both timestamps (Go's zero `metav1.Time` serialises as null).
pub fn default_pod_conditions(pod: &mut Value) {
    let Some(conds) = pod
        .get_mut("status")
        .and_then(|s| s.get_mut("conditions"))
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for c in conds {
        if let Some(m) = c.as_object_mut() {
            m.entry("lastProbeTime").or_insert(Value::Null);
            m.entry("lastTransitionTime").or_insert(Value::Null);
        }
        reorder(
            c,
            &[
                "type",
                "observedGeneration",
                "status",
                "lastProbeTime",
                "lastTransitionTime",
                "reason",
                "message",
            ],
        );
    }
}

/// Final ordering of a pod after admission.
pub fn order_pod(pod: &mut Value) {
    if let Some(s) = pod.get_mut("spec") {
        reorder(s, POD_SPEC_ORDER);
    }
    if let Some(s) = pod.get_mut("status") {
        reorder(s, POD_STATUS_ORDER);
    }
}

/// Whether a resource list has cpu or memory.
fn qos_resources(rl: &Value) -> Vec<(String, Quantity)> {
    rl.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() == "cpu" || k.as_str() == "memory")
        .filter_map(|(k, v)| Some((k.clone(), Quantity::parse(v.as_str()?)?)))
        .filter(|(_, q)| !q.is_zero())
        .collect()
}

/// `qos.GetPodQOS`.
pub fn qos_class(pod: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let containers = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            pod["spec"]["initContainers"]
                .as_array()
                .into_iter()
                .flatten(),
        );
    for c in containers {
        let req = qos_resources(&c["resources"]["requests"]);
        let lim = qos_resources(&c["resources"]["limits"]);
        if !req.is_empty() || !lim.is_empty() {
            any = true;
        }
        for name in ["cpu", "memory"] {
            let l = lim.iter().find(|(k, _)| k == name);
            let r = req.iter().find(|(k, _)| k == name);
            match (l, r) {
                (Some((_, l)), Some((_, r))) if l == r => {}
                (Some(_), None) => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Pod `PrepareForCreate`: the status is the server's.
pub fn pod_prepare_create(pod: &mut Value) {
    let qos = qos_class(pod);
    pod["status"] = json!({"phase": "Pending", "qosClass": qos});
}

/// `SetDefaults_Service` plus the allocator's IP family fields (single-stack IPv4 cluster).
pub fn default_service(svc: &mut Value) {
    if !svc["spec"].is_object() {
        svc["spec"] = json!({});
    }
    let spec = &mut svc["spec"];
    if is_empty_str(&spec["type"]) {
        spec["type"] = json!("ClusterIP");
    }
    let ty = spec["type"].as_str().unwrap_or("").to_string();
    if is_empty_str(&spec["sessionAffinity"]) {
        spec["sessionAffinity"] = json!("None");
    }
    if spec["sessionAffinity"] == "ClientIP" {
        let cfg = ensure_object(spec, "sessionAffinityConfig");
        let cip = cfg.entry("clientIP").or_insert_with(|| json!({}));
        if cip.is_object() && cip["timeoutSeconds"].is_null() {
            cip["timeoutSeconds"] = json!(10800);
        }
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut() {
            if is_empty_str(&p["protocol"]) {
                p["protocol"] = json!("TCP");
            }
            let tp = &p["targetPort"];
            if tp.is_null() || *tp == json!(0) || *tp == json!("") {
                p["targetPort"] = p["port"].clone();
            }
            reorder(p, SERVICE_PORT_ORDER);
        }
    }
    // External IPs route like node ports: kube-apiserver defaults the policy for them too.
    let has_external_ips = spec["externalIPs"]
        .as_array()
        .is_some_and(|a| !a.is_empty());
    if (ty == "NodePort" || ty == "LoadBalancer" || has_external_ips)
        && is_empty_str(&spec["externalTrafficPolicy"])
    {
        spec["externalTrafficPolicy"] = json!("Cluster");
    }
    if ty == "LoadBalancer" && spec["allocateLoadBalancerNodePorts"].is_null() {
        spec["allocateLoadBalancerNodePorts"] = json!(true);
    }
    if ty != "ExternalName" {
        if is_empty_str(&spec["internalTrafficPolicy"]) {
            spec["internalTrafficPolicy"] = json!("Cluster");
        }
        // clusterIP and clusterIPs mirror each other.
        let cip = spec["clusterIP"].as_str().unwrap_or("").to_string();
        let has_ips = spec["clusterIPs"].as_array().is_some_and(|a| !a.is_empty());
        if !cip.is_empty() && !has_ips {
            spec["clusterIPs"] = json!([cip]);
        } else if cip.is_empty() && has_ips {
            spec["clusterIP"] = spec["clusterIPs"][0].clone();
        }
        if spec["ipFamilies"].as_array().is_none_or(|a| a.is_empty()) {
            spec["ipFamilies"] = json!(["IPv4"]);
        }
        if is_empty_str(&spec["ipFamilyPolicy"]) {
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
    }
}

pub fn order_service(svc: &mut Value) {
    if let Some(s) = svc.get_mut("spec") {
        reorder(s, SERVICE_SPEC_ORDER);
    }
}

/// Namespace: the name label always; on create the `kubernetes` finalizer and phase Active.
pub fn default_namespace(ns: &mut Value, create: bool) {
    let name = ns["metadata"]["name"].as_str().unwrap_or("").to_string();
    if !name.is_empty() {
        let labels = ensure_object(&mut ns["metadata"], "labels");
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    if create {
        let spec = ensure_object(ns, "spec");
        if spec
            .get("finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty())
        {
            spec.insert("finalizers".into(), json!(["kubernetes"]));
        }
        ns["status"] = json!({"phase": "Active"});
    }
}

/// Node: the zero-valued status structs Go always serialises.
pub fn default_node(node: &mut Value) {
    ensure_object(node, "spec");
    let status = ensure_object(node, "status");
    let de = status.entry("daemonEndpoints").or_insert_with(|| json!({}));
    if de.is_object() {
        let ke = de
            .as_object_mut()
            .expect("object")
            .entry("kubeletEndpoint")
            .or_insert_with(|| json!({}));
        if ke.is_object() && ke["Port"].is_null() {
            ke["Port"] = json!(0);
        }
    }
    let ni = status.entry("nodeInfo").or_insert_with(|| json!({}));
    if let Some(m) = ni.as_object_mut() {
        for f in [
            "machineID",
            "systemUUID",
            "bootID",
            "kernelVersion",
            "osImage",
            "containerRuntimeVersion",
            "kubeletVersion",
            "kubeProxyVersion",
            "operatingSystem",
            "architecture",
        ] {
            m.entry(f).or_insert_with(|| json!(""));
        }
    }
}

/// Secret: `stringData` folds into `data` (base64), type defaults to `Opaque`.
pub fn default_secret(s: &mut Value) {
    use base64::Engine;
    if let Some(sd) = s.as_object_mut().and_then(|m| m.remove("stringData"))
        && let Some(sd) = sd.as_object()
        && !sd.is_empty()
    {
        let data = ensure_object(s, "data");
        for (k, v) in sd {
            let raw = v.as_str().unwrap_or("");
            data.insert(
                k.clone(),
                json!(base64::engine::general_purpose::STANDARD.encode(raw)),
            );
        }
    }
    if is_empty_str(&s["type"]) {
        s["type"] = json!("Opaque");
    }
}

fn default_ports_protocol(ports: &mut Value) {
    if let Some(ps) = ports.as_array_mut() {
        for p in ps {
            if p.is_object() && is_empty_str(&p["protocol"]) {
                p["protocol"] = json!("TCP");
            }
        }
    }
}

pub fn default_network_policy(np: &mut Value) {
    if !np["spec"].is_object() {
        return;
    }
    for dir in ["ingress", "egress"] {
        if let Some(rules) = np["spec"].get_mut(dir).and_then(Value::as_array_mut) {
            for r in rules {
                if let Some(p) = r.get_mut("ports") {
                    default_ports_protocol(p);
                }
                reorder(r, &["ports", "from", "to"]);
            }
        }
    }
    if np["spec"]["policyTypes"]
        .as_array()
        .is_none_or(|a| a.is_empty())
    {
        let mut types = vec![json!("Ingress")];
        // kube-apiserver: `len(spec.Egress) != 0`, so `egress: []` adds no Egress.
        if np["spec"]["egress"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            types.push(json!("Egress"));
        }
        np["spec"]["policyTypes"] = Value::Array(types);
    }
}

pub fn default_limit_range(lr: &mut Value) {
    let Some(items) = lr
        .get_mut("spec")
        .and_then(|s| s.get_mut("limits"))
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for item in items {
        if item["type"] != "Container" {
            continue;
        }
        let max = item["max"].as_object().cloned().unwrap_or_default();
        let min = item["min"].as_object().cloned().unwrap_or_default();
        let mut default = item["default"].as_object().cloned().unwrap_or_default();
        for (k, v) in max {
            default.entry(k).or_insert(v);
        }
        let mut default_request = item["defaultRequest"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (k, v) in default.iter().chain(min.iter()) {
            default_request.entry(k.clone()).or_insert(v.clone());
        }
        if !default.is_empty() {
            item["default"] = Value::Object(default);
        }
        if !default_request.is_empty() {
            item["defaultRequest"] = Value::Object(default_request);
        }
        reorder(
            item,
            &[
                "type",
                "max",
                "min",
                "default",
                "defaultRequest",
                "maxLimitRequestRatio",
            ],
        );
    }
}

/// Defaults of the remaining kinds by (group, kind); `create` adds the create-only parts.
pub fn default_other(group: &str, kind: &str, obj: &mut Value, create: bool) {
    match (group, kind) {
        ("", "Secret") => default_secret(obj),
        ("", "Endpoints") => {
            if let Some(subsets) = obj.get_mut("subsets").and_then(Value::as_array_mut) {
                for s in subsets {
                    if let Some(p) = s.get_mut("ports") {
                        default_ports_protocol(p);
                    }
                }
            }
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            if let Some(p) = obj.get_mut("ports") {
                default_ports_protocol(p);
            }
        }
        ("", "LimitRange") => default_limit_range(obj),
        ("", "ResourceQuota") if create => obj["status"] = json!({}),
        ("", "PersistentVolumeClaim") => {
            if obj["spec"].is_object() {
                set_if_missing(&mut obj["spec"], "volumeMode", json!("Filesystem"));
            }
            if create {
                obj["status"] = json!({"phase": "Pending"});
            }
        }
        ("", "PersistentVolume") => {
            if obj["spec"].is_object() {
                set_if_missing(
                    &mut obj["spec"],
                    "persistentVolumeReclaimPolicy",
                    json!("Retain"),
                );
                set_if_missing(&mut obj["spec"], "volumeMode", json!("Filesystem"));
            }
            if create {
                obj["status"] = json!({"phase": "Pending"});
            }
        }
        ("networking.k8s.io", "NetworkPolicy") => default_network_policy(obj),
        ("networking.k8s.io", "Ingress") if create => obj["status"] = json!({"loadBalancer": {}}),
        ("scheduling.k8s.io", "PriorityClass") if is_empty_str(&obj["preemptionPolicy"]) => {
            obj["preemptionPolicy"] = json!("PreemptLowerPriority");
        }
        ("storage.k8s.io", "StorageClass") => {
            set_if_missing(obj, "reclaimPolicy", json!("Delete"));
            set_if_missing(obj, "volumeBindingMode", json!("Immediate"));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("busybox", "Always")]
    #[case("busybox:latest", "Always")]
    #[case("nginx:1.27", "IfNotPresent")]
    #[case("registry:5000/app", "Always")]
    #[case("registry:5000/app:v1", "IfNotPresent")]
    #[case("app@sha256:abcd", "IfNotPresent")]
    fn pull_policy(#[case] image: &str, #[case] want: &str) {
        assert_eq!(image_pull_policy(image), want);
    }

    #[test]
    fn pod_defaults_match_the_recording() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}});
        default_pod(&mut pod);
        pod_prepare_create(&mut pod);
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["resources"], json!({}));
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["spec"]["schedulerName"], "default-scheduler");
        assert_eq!(
            pod["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
    }

    fn has_null(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Array(a) => a.iter().any(has_null),
            Value::Object(m) => m.values().any(has_null),
            _ => false,
        }
    }

    #[test]
    fn defaulting_adds_no_nulls() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}], "volumes": [{"name": "v", "emptyDir": {}}]}});
        default_pod(&mut pod);
        pod_prepare_create(&mut pod);
        order_pod(&mut pod);
        order_object(&mut pod);
        assert!(!has_null(&pod), "{pod}");
        let mut svc = json!({"metadata": {"name": "s"}, "spec": {"type": "ExternalName", "externalName": "a.b"}});
        default_service(&mut svc);
        order_service(&mut svc);
        assert!(!has_null(&svc), "{svc}");
        for (g, k) in [
            ("", "Endpoints"),
            ("discovery.k8s.io", "EndpointSlice"),
            ("networking.k8s.io", "NetworkPolicy"),
            ("", "LimitRange"),
        ] {
            let mut o = json!({"metadata": {"name": "x"}, "spec": {}});
            default_other(g, k, &mut o, true);
            assert!(!has_null(&o), "{k}: {o}");
        }
    }

    #[rstest]
    #[case(json!([{"resources": {}}]), "BestEffort")]
    #[case(json!([{"resources": {"requests": {"cpu": "100m"}}}]), "Burstable")]
    #[case(json!([{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}}]), "Guaranteed")]
    #[case(json!([{"resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}}]), "Burstable")]
    fn qos(#[case] containers: Value, #[case] want: &str) {
        let pod = json!({"spec": {"containers": containers}});
        assert_eq!(qos_class(&pod), want);
    }

    #[test]
    fn limits_default_requests() {
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "x", "resources": {"limits": {"cpu": "4"}}}]}});
        default_pod(&mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "4"})
        );
    }

    #[rstest]
    #[case(json!({"spec": {"ports": [{"port": 80}]}}), "ClusterIP", Some("Cluster"))]
    #[case(json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": "http"}]}}), "NodePort", Some("Cluster"))]
    #[case(json!({"spec": {"type": "ExternalName", "externalName": "a.b"}}), "ExternalName", None)]
    fn service_defaults(#[case] mut svc: Value, #[case] ty: &str, #[case] itp: Option<&str>) {
        default_service(&mut svc);
        let spec = &svc["spec"];
        assert_eq!(spec["type"], ty);
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["internalTrafficPolicy"].as_str(), itp);
        if ty == "ExternalName" {
            assert!(spec.get("ipFamilies").is_none());
        } else {
            assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
            assert_eq!(spec["ports"][0]["protocol"], "TCP");
            assert!(!spec["ports"][0]["targetPort"].is_null());
        }
        if ty == "NodePort" {
            assert_eq!(spec["externalTrafficPolicy"], "Cluster");
            assert_eq!(spec["ports"][0]["targetPort"], "http");
        }
    }

    #[test]
    fn secret_string_data_folds_into_data() {
        let mut s = json!({"stringData": {"password": "s3cret"}});
        default_secret(&mut s);
        assert_eq!(
            s,
            json!({"data": {"password": "czNjcmV0"}, "type": "Opaque"})
        );
    }

    #[test]
    fn limit_range_defaults_from_max() {
        let mut lr = json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}}]}});
        default_limit_range(&mut lr);
        assert_eq!(lr["spec"]["limits"][0]["default"], json!({"cpu": "2"}));
        assert_eq!(
            lr["spec"]["limits"][0]["defaultRequest"],
            json!({"cpu": "2"})
        );
    }

    #[test]
    fn network_policy_types_follow_the_egress_rules() {
        for (egress, want) in [
            (None, json!(["Ingress"])),
            (Some(json!([])), json!(["Ingress"])),
            (Some(json!([{}])), json!(["Ingress", "Egress"])),
        ] {
            let mut np = json!({"spec": {"podSelector": {}}});
            if let Some(e) = egress {
                np["spec"]["egress"] = e;
            }
            default_network_policy(&mut np);
            assert_eq!(np["spec"]["policyTypes"], want, "{np}");
        }
    }

    #[test]
    fn reorder_keeps_unknown_keys_last() {
        let mut v = json!({"z": 1, "b": 2, "a": 3});
        reorder(&mut v, &["a", "b"]);
        assert_eq!(
            v.as_object().unwrap().keys().collect::<Vec<_>>(),
            vec!["a", "b", "z"]
        );
    }
}
