//! Server-side printing (`as=Table`, what `kubectl get` asks for) and metadata-only views
//! (`as=PartialObjectMetadata`).
//!
//! The columns and cells follow kube-apiserver's printers (`pkg/printers/internalversion`) for
//! the kinds served; kinds without a printer there get the default `Name` / `Created At` table.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::resources::ResourceDef;

/// `PartialObjectMetadata` of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"].clone()})
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const CM_DATA_DESC: &str = "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.";

/// A column: name, type, format, description, priority (1 = only with `-o wide`).
type Col = (&'static str, &'static str, &'static str, &'static str, u8);

fn col_json(c: &Col) -> Value {
    json!({"name": c.0, "type": c.1, "format": c.2, "description": c.3, "priority": c.4})
}

fn name_col() -> Col {
    ("Name", "string", "name", NAME_DESC, 0)
}

fn age_col() -> Col {
    ("Age", "string", "", AGE_DESC, 0)
}

/// Go's `duration.HumanDuration`, as `kubectl get` shows ages (`5s`, `2m3s`, `4h`, `3d5h`).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    if s < 120 {
        return format!("{s}s");
    }
    let minutes = s / 60;
    if minutes < 10 {
        return if s % 60 == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{}s", s % 60)
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = s / 3600;
    if hours < 8 {
        return if minutes % 60 == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{}m", minutes % 60)
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return if hours % 24 == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{}h", hours / 24, hours % 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Age of a timestamp like kube-apiserver's `translateTimestampSince`.
pub fn age(ts: &str) -> String {
    let Ok(t) = ts.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    human_duration(jiff::Timestamp::now().as_second() - t.as_second())
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("")
}

fn or_none(x: String) -> Value {
    if x.is_empty() {
        json!("<none>")
    } else {
        json!(x)
    }
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn created_age(o: &Value) -> Value {
    json!(age(s(o, &["metadata", "creationTimestamp"])))
}

fn labels_string(m: &Value) -> String {
    let sorted: BTreeMap<&String, &Value> = m
        .as_object()
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Pod STATUS column (`printPod`'s reason logic).
fn pod_status(o: &Value) -> String {
    let st = &o["status"];
    let mut reason = s(st, &["reason"]).to_string();
    if reason.is_empty() {
        reason = s(st, &["phase"]).to_string();
    }
    let init_total = arr(&o["spec"]["initContainers"]).len();
    let mut initializing = false;
    for (i, c) in arr(&st["initContainerStatuses"]).iter().enumerate() {
        let term = &c["state"]["terminated"];
        let waiting = &c["state"]["waiting"];
        if term.is_object() && term["exitCode"].as_i64() == Some(0) {
            continue;
        }
        if c["started"] == json!(true) && c["ready"] == json!(true) {
            continue;
        }
        reason = if term.is_object() {
            let r = s(term, &["reason"]);
            if !r.is_empty() {
                format!("Init:{r}")
            } else if term["signal"].as_i64().unwrap_or(0) != 0 {
                format!("Init:Signal:{}", term["signal"])
            } else {
                format!("Init:ExitCode:{}", term["exitCode"])
            }
        } else if waiting.is_object()
            && !s(waiting, &["reason"]).is_empty()
            && s(waiting, &["reason"]) != "PodInitializing"
        {
            format!("Init:{}", s(waiting, &["reason"]))
        } else {
            format!("Init:{i}/{init_total}")
        };
        initializing = true;
        break;
    }
    if !initializing {
        let mut has_running = false;
        for c in arr(&st["containerStatuses"]).iter().rev() {
            let term = &c["state"]["terminated"];
            let waiting = &c["state"]["waiting"];
            if waiting.is_object() && !s(waiting, &["reason"]).is_empty() {
                reason = s(waiting, &["reason"]).to_string();
            } else if term.is_object() && !s(term, &["reason"]).is_empty() {
                reason = s(term, &["reason"]).to_string();
            } else if term.is_object() && term["signal"].as_i64().unwrap_or(0) != 0 {
                reason = format!("Signal:{}", term["signal"]);
            } else if term.is_object() {
                reason = format!("ExitCode:{}", term["exitCode"]);
            } else if c["ready"] == json!(true) && c["state"]["running"].is_object() {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            let ready = arr(&st["conditions"])
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            reason = if ready {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    if o["metadata"]["deletionTimestamp"].is_string() {
        reason = if s(st, &["reason"]) == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    reason
}

fn pod_cells(o: &Value) -> Vec<Value> {
    let st = &o["status"];
    let total = arr(&o["spec"]["containers"]).len();
    let statuses = arr(&st["containerStatuses"]);
    let ready = statuses
        .iter()
        .filter(|c| c["ready"] == json!(true))
        .count();
    let restarts: i64 = statuses
        .iter()
        .map(|c| c["restartCount"].as_i64().unwrap_or(0))
        .sum();
    let gates = arr(&o["spec"]["readinessGates"]);
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conds = arr(&st["conditions"]);
        let ok = gates
            .iter()
            .filter(|g| {
                conds
                    .iter()
                    .any(|c| c["type"] == g["conditionType"] && c["status"] == "True")
            })
            .count();
        format!("{ok}/{}", gates.len())
    };
    vec![
        o["metadata"]["name"].clone(),
        json!(format!("{ready}/{total}")),
        json!(pod_status(o)),
        json!(restarts.to_string()),
        created_age(o),
        or_none(s(st, &["podIP"]).to_string()),
        or_none(s(o, &["spec", "nodeName"]).to_string()),
        or_none(s(st, &["nominatedNodeName"]).to_string()),
        json!(gates_cell),
    ]
}

fn service_cells(o: &Value) -> Vec<Value> {
    let spec = &o["spec"];
    let ty = s(spec, &["type"]);
    let ext: Vec<String> = arr(&spec["externalIPs"])
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    let external = match ty {
        "ExternalName" => s(spec, &["externalName"]).to_string(),
        "LoadBalancer" => {
            let mut ips: Vec<String> = arr(&o["status"]["loadBalancer"]["ingress"])
                .iter()
                .filter_map(|i| {
                    i["ip"]
                        .as_str()
                        .or_else(|| i["hostname"].as_str())
                        .map(str::to_string)
                })
                .collect();
            ips.extend(ext);
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        _ => ext.join(","),
    };
    let ports: Vec<String> = arr(&spec["ports"])
        .iter()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64().filter(|n| *n != 0) {
                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    vec![
        o["metadata"]["name"].clone(),
        json!(ty),
        or_none(s(spec, &["clusterIP"]).to_string()),
        or_none(external),
        or_none(ports.join(",")),
        created_age(o),
        or_none(labels_string(&spec["selector"])),
    ]
}

fn node_cells(o: &Value) -> Vec<Value> {
    let st = &o["status"];
    let mut status: Vec<String> = Vec::new();
    match arr(&st["conditions"]).iter().find(|c| c["type"] == "Ready") {
        Some(c) if c["status"] == "True" => status.push("Ready".into()),
        Some(_) => status.push("NotReady".into()),
        None => status.push("Unknown".into()),
    }
    if o["spec"]["unschedulable"] == json!(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = o["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            if let Some(r) = k.strip_prefix("node-role.kubernetes.io/") {
                if !r.is_empty() {
                    roles.push(r.to_string());
                }
            } else if k == "kubernetes.io/role"
                && let Some(r) = v.as_str().filter(|r| !r.is_empty())
            {
                roles.push(r.to_string());
            }
        }
    }
    roles.sort();
    roles.dedup();
    let addr = |ty: &str| {
        arr(&st["addresses"])
            .iter()
            .find(|a| a["type"] == ty)
            .and_then(|a| a["address"].as_str())
            .unwrap_or("<none>")
            .to_string()
    };
    let info = &st["nodeInfo"];
    vec![
        o["metadata"]["name"].clone(),
        json!(status.join(",")),
        or_none(roles.join(",")),
        created_age(o),
        json!(s(info, &["kubeletVersion"])),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        or_none(s(info, &["osImage"]).to_string()),
        or_none(s(info, &["kernelVersion"]).to_string()),
        or_none(s(info, &["containerRuntimeVersion"]).to_string()),
    ]
}

fn event_cells(o: &Value) -> Vec<Value> {
    // Core and events.k8s.io events share the printer; read either shape.
    let first = ["firstTimestamp", "eventTime"]
        .iter()
        .map(|k| s(o, &[k]))
        .find(|x| !x.is_empty())
        .unwrap_or("");
    let last = ["lastTimestamp", "eventTime"]
        .iter()
        .map(|k| s(o, &[k]))
        .find(|x| !x.is_empty())
        .unwrap_or(first);
    let regarding = if o["involvedObject"].is_object() {
        &o["involvedObject"]
    } else {
        &o["regarding"]
    };
    let source = if o["source"].is_object() {
        let c = s(o, &["source", "component"]);
        let h = s(o, &["source", "host"]);
        if h.is_empty() {
            c.to_string()
        } else {
            format!("{c}, {h}")
        }
    } else {
        s(o, &["reportingController"]).to_string()
    };
    let count = o["count"]
        .as_i64()
        .or_else(|| o["series"]["count"].as_i64())
        .unwrap_or(1);
    let message = ["message", "note"]
        .iter()
        .map(|k| s(o, &[k]))
        .find(|x| !x.is_empty())
        .unwrap_or("");
    vec![
        json!(if last.is_empty() {
            "<unknown>".to_string()
        } else {
            age(last)
        }),
        json!(s(o, &["type"])),
        json!(s(o, &["reason"])),
        json!(format!(
            "{}/{}",
            s(regarding, &["kind"]).to_ascii_lowercase(),
            s(regarding, &["name"])
        )),
        json!(s(regarding, &["fieldPath"])),
        json!(source),
        json!(message.trim()),
        json!(if first.is_empty() {
            "<unknown>".to_string()
        } else {
            age(first)
        }),
        json!(count),
        o["metadata"]["name"].clone(),
    ]
}

fn endpoints_cells(o: &Value) -> Vec<Value> {
    let mut eps: Vec<String> = Vec::new();
    for sub in arr(&o["subsets"]) {
        let ports: Vec<i64> = arr(&sub["ports"])
            .iter()
            .filter_map(|p| p["port"].as_i64())
            .collect();
        for a in arr(&sub["addresses"]) {
            let ip = s(a, &["ip"]);
            if ports.is_empty() {
                eps.push(ip.to_string());
            }
            for p in &ports {
                eps.push(format!("{ip}:{p}"));
            }
        }
    }
    let shown = if eps.len() > 3 {
        format!("{} + {} more...", eps[..3].join(","), eps.len() - 3)
    } else {
        eps.join(",")
    };
    vec![
        o["metadata"]["name"].clone(),
        or_none(shown),
        created_age(o),
    ]
}

fn ingress_cells(o: &Value) -> Vec<Value> {
    let spec = &o["spec"];
    let hosts: Vec<&str> = arr(&spec["rules"])
        .iter()
        .map(|r| r["host"].as_str().unwrap_or("*"))
        .collect();
    let hosts = if hosts.is_empty() {
        "*".to_string()
    } else {
        hosts.join(",")
    };
    let addrs: Vec<&str> = arr(&o["status"]["loadBalancer"]["ingress"])
        .iter()
        .filter_map(|i| i["ip"].as_str().or_else(|| i["hostname"].as_str()))
        .collect();
    let ports = if arr(&spec["tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        o["metadata"]["name"].clone(),
        or_none(s(spec, &["ingressClassName"]).to_string()),
        json!(hosts),
        json!(addrs.join(",")),
        json!(ports),
        created_age(o),
    ]
}

/// Renders one object's cells.
type Cells = fn(&Value) -> Vec<Value>;

fn columns_and_cells(def: &ResourceDef) -> (Vec<Col>, Cells) {
    match (def.group, def.plural) {
        ("", "configmaps") => (
            vec![
                name_col(),
                ("Data", "string", "", CM_DATA_DESC, 0),
                age_col(),
            ],
            |o| {
                let n = o["data"].as_object().map_or(0, |m| m.len())
                    + o["binaryData"].as_object().map_or(0, |m| m.len());
                vec![o["metadata"]["name"].clone(), json!(n), created_age(o)]
            },
        ),
        ("", "pods") => (
            vec![
                name_col(),
                (
                    "Ready",
                    "string",
                    "",
                    "The aggregate readiness state of this pod for accepting traffic.",
                    0,
                ),
                (
                    "Status",
                    "string",
                    "",
                    "The aggregate status of the containers in this pod.",
                    0,
                ),
                (
                    "Restarts",
                    "string",
                    "",
                    "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                    0,
                ),
                age_col(),
                (
                    "IP",
                    "string",
                    "",
                    "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                    1,
                ),
                (
                    "Node",
                    "string",
                    "",
                    "NodeName indicates in which node this pod is scheduled.",
                    1,
                ),
                (
                    "Nominated Node",
                    "string",
                    "",
                    "nominatedNodeName is set only when this pod preempts other pods on the node.",
                    1,
                ),
                (
                    "Readiness Gates",
                    "string",
                    "",
                    "If specified, all readiness gates will be evaluated for pod readiness.",
                    1,
                ),
            ],
            pod_cells,
        ),
        ("", "services") => (
            vec![
                name_col(),
                (
                    "Type",
                    "string",
                    "",
                    "type determines how the Service is exposed.",
                    0,
                ),
                (
                    "Cluster-IP",
                    "string",
                    "",
                    "clusterIP is the IP address of the service and is usually assigned randomly.",
                    0,
                ),
                (
                    "External-IP",
                    "string",
                    "",
                    "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
                    0,
                ),
                (
                    "Port(s)",
                    "string",
                    "",
                    "The list of ports that are exposed by this service.",
                    0,
                ),
                age_col(),
                (
                    "Selector",
                    "string",
                    "",
                    "Route service traffic to pods with label keys and values matching this selector.",
                    1,
                ),
            ],
            service_cells,
        ),
        ("", "nodes") => (
            vec![
                name_col(),
                ("Status", "string", "", "The status of the node", 0),
                ("Roles", "string", "", "The roles of the node", 0),
                age_col(),
                (
                    "Version",
                    "string",
                    "",
                    "Kubelet Version reported by the node.",
                    0,
                ),
                (
                    "Internal-IP",
                    "string",
                    "",
                    "List of addresses reachable to the node.",
                    1,
                ),
                (
                    "External-IP",
                    "string",
                    "",
                    "List of addresses reachable to the node.",
                    1,
                ),
                (
                    "OS-Image",
                    "string",
                    "",
                    "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                    1,
                ),
                (
                    "Kernel-Version",
                    "string",
                    "",
                    "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
                    1,
                ),
                (
                    "Container-Runtime",
                    "string",
                    "",
                    "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
                    1,
                ),
            ],
            node_cells,
        ),
        ("", "namespaces") => (
            vec![
                name_col(),
                ("Status", "string", "", "The status of the namespace", 0),
                age_col(),
            ],
            |o| {
                vec![
                    o["metadata"]["name"].clone(),
                    json!(s(o, &["status", "phase"])),
                    created_age(o),
                ]
            },
        ),
        ("", "secrets") => (
            vec![
                name_col(),
                (
                    "Type",
                    "string",
                    "",
                    "Used to facilitate programmatic handling of secret data.",
                    0,
                ),
                ("Data", "string", "", "Data contains the secret data.", 0),
                age_col(),
            ],
            |o| {
                let n = o["data"].as_object().map_or(0, |m| m.len());
                let ty = s(o, &["type"]);
                vec![
                    o["metadata"]["name"].clone(),
                    json!(if ty.is_empty() { "Opaque" } else { ty }),
                    json!(n),
                    created_age(o),
                ]
            },
        ),
        ("", "serviceaccounts") => (
            vec![
                name_col(),
                (
                    "Secrets",
                    "string",
                    "",
                    "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
                    0,
                ),
                age_col(),
            ],
            |o| {
                vec![
                    o["metadata"]["name"].clone(),
                    json!(arr(&o["secrets"]).len()),
                    created_age(o),
                ]
            },
        ),
        ("", "endpoints") => (
            vec![
                name_col(),
                ("Endpoints", "string", "", "Endpoints of the service", 0),
                age_col(),
            ],
            endpoints_cells,
        ),
        ("", "events") | ("events.k8s.io", "events") => (
            vec![
                (
                    "Last Seen",
                    "string",
                    "",
                    "The last time this event was seen",
                    0,
                ),
                (
                    "Type",
                    "string",
                    "",
                    "Type of this event (Normal, Warning), new types could be added in the future.",
                    0,
                ),
                (
                    "Reason",
                    "string",
                    "",
                    "This should be a short, machine understandable string that gives the reason for this event being generated.",
                    0,
                ),
                ("Object", "string", "", "The object this Event is about.", 0),
                (
                    "Subobject",
                    "string",
                    "",
                    "The subobject this Event is about.",
                    1,
                ),
                (
                    "Source",
                    "string",
                    "",
                    "The component reporting this event.",
                    1,
                ),
                (
                    "Message",
                    "string",
                    "",
                    "A human-readable description of the status of this operation.",
                    0,
                ),
                (
                    "First Seen",
                    "string",
                    "",
                    "The first time this event was seen.",
                    1,
                ),
                (
                    "Count",
                    "string",
                    "",
                    "The number of times this event has occurred.",
                    1,
                ),
                ("Name", "string", "name", NAME_DESC, 1),
            ],
            event_cells,
        ),
        ("", "resourcequotas") => (
            vec![
                name_col(),
                age_col(),
                (
                    "Request",
                    "string",
                    "",
                    "Request represents a minimum amount of cpu/memory that a container may consume.",
                    0,
                ),
                (
                    "Limit",
                    "string",
                    "",
                    "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
                    0,
                ),
            ],
            |o| {
                let mut req = Vec::new();
                let mut lim = Vec::new();
                let hard: BTreeMap<&String, &Value> = o["status"]["hard"]
                    .as_object()
                    .map(|m| m.iter().collect())
                    .unwrap_or_default();
                for (k, v) in hard {
                    let used = o["status"]["used"][k.as_str()].as_str().unwrap_or("0");
                    let cell = format!("{k}: {used}/{}", v.as_str().unwrap_or(""));
                    if k.starts_with("limits.") {
                        lim.push(cell)
                    } else {
                        req.push(cell)
                    }
                }
                vec![
                    o["metadata"]["name"].clone(),
                    created_age(o),
                    json!(req.join(", ")),
                    json!(lim.join(", ")),
                ]
            },
        ),
        ("", "persistentvolumeclaims") => (
            vec![
                name_col(),
                ("Status", "string", "", "status.phase", 0),
                ("Volume", "string", "", "spec.volumeName", 0),
                ("Capacity", "string", "", "status.capacity.storage", 0),
                ("Access Modes", "string", "", "status.accessModes", 0),
                ("StorageClass", "string", "", "spec.storageClassName", 0),
                (
                    "VolumeAttributesClass",
                    "string",
                    "",
                    "spec.volumeAttributesClassName",
                    0,
                ),
                age_col(),
                ("VolumeMode", "string", "", "spec.volumeMode", 1),
            ],
            |o| {
                vec![
                    o["metadata"]["name"].clone(),
                    json!(s(o, &["status", "phase"])),
                    json!(s(o, &["spec", "volumeName"])),
                    json!(s(o, &["status", "capacity", "storage"])),
                    json!(access_modes(&o["status"]["accessModes"])),
                    or_none(s(o, &["spec", "storageClassName"]).to_string()),
                    json!(or_unset(s(o, &["spec", "volumeAttributesClassName"]))),
                    created_age(o),
                    json!(or_unset(s(o, &["spec", "volumeMode"]))),
                ]
            },
        ),
        ("", "persistentvolumes") => (
            vec![
                name_col(),
                ("Capacity", "string", "", "spec.capacity.storage", 0),
                ("Access Modes", "string", "", "spec.accessModes", 0),
                (
                    "Reclaim Policy",
                    "string",
                    "",
                    "spec.persistentVolumeReclaimPolicy",
                    0,
                ),
                ("Status", "string", "", "status.phase", 0),
                ("Claim", "string", "", "spec.claimRef", 0),
                ("StorageClass", "string", "", "spec.storageClassName", 0),
                (
                    "VolumeAttributesClass",
                    "string",
                    "",
                    "spec.volumeAttributesClassName",
                    0,
                ),
                ("Reason", "string", "", "status.reason", 0),
                age_col(),
                ("VolumeMode", "string", "", "spec.volumeMode", 1),
            ],
            |o| {
                let claim = match (
                    s(o, &["spec", "claimRef", "namespace"]),
                    s(o, &["spec", "claimRef", "name"]),
                ) {
                    (_, "") => String::new(),
                    (ns, n) => format!("{ns}/{n}"),
                };
                vec![
                    o["metadata"]["name"].clone(),
                    json!(s(o, &["spec", "capacity", "storage"])),
                    json!(access_modes(&o["spec"]["accessModes"])),
                    json!(s(o, &["spec", "persistentVolumeReclaimPolicy"])),
                    json!(s(o, &["status", "phase"])),
                    json!(claim),
                    json!(s(o, &["spec", "storageClassName"])),
                    json!(or_unset(s(o, &["spec", "volumeAttributesClassName"]))),
                    json!(s(o, &["status", "reason"])),
                    created_age(o),
                    json!(or_unset(s(o, &["spec", "volumeMode"]))),
                ]
            },
        ),
        ("coordination.k8s.io", "leases") => (
            vec![
                name_col(),
                ("Holder", "string", "", "The holder of the lease", 0),
                age_col(),
            ],
            |o| {
                vec![
                    o["metadata"]["name"].clone(),
                    json!(s(o, &["spec", "holderIdentity"])),
                    created_age(o),
                ]
            },
        ),
        ("discovery.k8s.io", "endpointslices") => (
            vec![
                name_col(),
                (
                    "AddressType",
                    "string",
                    "",
                    "addressType specifies the type of address carried by this EndpointSlice.",
                    0,
                ),
                (
                    "Ports",
                    "string",
                    "",
                    "ports specifies the list of network ports exposed by each endpoint in this slice.",
                    0,
                ),
                (
                    "Endpoints",
                    "string",
                    "",
                    "endpoints is a list of unique endpoints in this slice.",
                    0,
                ),
                age_col(),
            ],
            |o| {
                let ports: Vec<String> = arr(&o["ports"])
                    .iter()
                    .filter_map(|p| p["port"].as_i64().map(|n| n.to_string()))
                    .collect();
                let addrs: Vec<&str> = arr(&o["endpoints"])
                    .iter()
                    .flat_map(|e| arr(&e["addresses"]).iter().filter_map(Value::as_str))
                    .collect();
                let shown = if addrs.len() > 3 {
                    format!("{} + {} more...", addrs[..3].join(","), addrs.len() - 3)
                } else {
                    addrs.join(",")
                };
                vec![
                    o["metadata"]["name"].clone(),
                    json!(s(o, &["addressType"])),
                    json!(if ports.is_empty() {
                        "<unset>".to_string()
                    } else {
                        ports.join(",")
                    }),
                    json!(if shown.is_empty() {
                        "<unset>".to_string()
                    } else {
                        shown
                    }),
                    created_age(o),
                ]
            },
        ),
        ("networking.k8s.io", "ingresses") => (
            vec![
                name_col(),
                (
                    "Class",
                    "string",
                    "",
                    "The name of the IngressClass resource that should be used for ingress.",
                    0,
                ),
                (
                    "Hosts",
                    "string",
                    "",
                    "Hosts that incoming requests are matched against before the ingress rule",
                    0,
                ),
                (
                    "Address",
                    "string",
                    "",
                    "Address is a list containing ingress points for the load-balancer",
                    0,
                ),
                (
                    "Ports",
                    "string",
                    "",
                    "Ports of TLS configurations that open",
                    0,
                ),
                age_col(),
            ],
            ingress_cells,
        ),
        ("networking.k8s.io", "ingressclasses") => (
            vec![
                name_col(),
                (
                    "Controller",
                    "string",
                    "",
                    "Controller that is responsible for handling this class",
                    0,
                ),
                (
                    "Parameters",
                    "string",
                    "",
                    "A reference to a resource with additional parameters",
                    0,
                ),
                age_col(),
            ],
            |o| {
                let p = &o["spec"]["parameters"];
                let params = if p.is_object() {
                    let g = s(p, &["apiGroup"]);
                    let kind = if g.is_empty() {
                        s(p, &["kind"]).to_string()
                    } else {
                        format!("{}.{g}", s(p, &["kind"]))
                    };
                    format!("{kind}/{}", s(p, &["name"]))
                } else {
                    "<none>".to_string()
                };
                vec![
                    o["metadata"]["name"].clone(),
                    json!(s(o, &["spec", "controller"])),
                    json!(params),
                    created_age(o),
                ]
            },
        ),
        ("networking.k8s.io", "networkpolicies") => (
            vec![
                name_col(),
                (
                    "Pod-Selector",
                    "string",
                    "",
                    "podSelector selects the pods to which this NetworkPolicy object applies.",
                    0,
                ),
                age_col(),
            ],
            |o| {
                let sel = &o["spec"]["podSelector"];
                let mut parts = vec![labels_string(&sel["matchLabels"])];
                for e in arr(&sel["matchExpressions"]) {
                    let vals: Vec<&str> =
                        arr(&e["values"]).iter().filter_map(Value::as_str).collect();
                    parts.push(match s(e, &["operator"]) {
                        "In" => format!("{} in ({})", s(e, &["key"]), vals.join(",")),
                        "NotIn" => format!("{} notin ({})", s(e, &["key"]), vals.join(",")),
                        "Exists" => s(e, &["key"]).to_string(),
                        _ => format!("!{}", s(e, &["key"])),
                    });
                }
                parts.retain(|p| !p.is_empty());
                vec![
                    o["metadata"]["name"].clone(),
                    json!(if parts.is_empty() {
                        "<none>".to_string()
                    } else {
                        parts.join(",")
                    }),
                    created_age(o),
                ]
            },
        ),
        ("node.k8s.io", "runtimeclasses") => (
            vec![
                name_col(),
                (
                    "Handler",
                    "string",
                    "",
                    "Handler is the name of the underlying CRI handler.",
                    0,
                ),
                age_col(),
            ],
            |o| {
                vec![
                    o["metadata"]["name"].clone(),
                    json!(s(o, &["handler"])),
                    created_age(o),
                ]
            },
        ),
        ("scheduling.k8s.io", "priorityclasses") => (
            vec![
                name_col(),
                (
                    "Value",
                    "integer",
                    "",
                    "The value of this priority class.",
                    0,
                ),
                (
                    "Global-Default",
                    "boolean",
                    "",
                    "globalDefault specifies whether this PriorityClass should be considered as the default priority.",
                    0,
                ),
                age_col(),
                (
                    "PreemptionPolicy",
                    "string",
                    "",
                    "PreemptionPolicy is the Policy for preempting pods with lower priority.",
                    0,
                ),
            ],
            |o| {
                vec![
                    o["metadata"]["name"].clone(),
                    json!(o["value"].as_i64().unwrap_or(0)),
                    json!(o["globalDefault"] == json!(true)),
                    created_age(o),
                    json!(s(o, &["preemptionPolicy"])),
                ]
            },
        ),
        ("storage.k8s.io", "storageclasses") => (
            vec![
                name_col(),
                (
                    "Provisioner",
                    "string",
                    "",
                    "Indicates the type of the provisioner.",
                    0,
                ),
                (
                    "ReclaimPolicy",
                    "string",
                    "",
                    "Dynamically provisioned PersistentVolumes of this storage class are created with this reclaimPolicy.",
                    0,
                ),
                (
                    "VolumeBindingMode",
                    "string",
                    "",
                    "VolumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.",
                    0,
                ),
                (
                    "AllowVolumeExpansion",
                    "string",
                    "",
                    "AllowVolumeExpansion shows whether the storage class allow volume expand.",
                    0,
                ),
                age_col(),
            ],
            |o| {
                let mut name = s(o, &["metadata", "name"]).to_string();
                let ann = &o["metadata"]["annotations"];
                if ann["storageclass.kubernetes.io/is-default-class"] == "true"
                    || ann["storageclass.beta.kubernetes.io/is-default-class"] == "true"
                {
                    name.push_str(" (default)");
                }
                let or = |v: &str, d: &str| {
                    if v.is_empty() {
                        d.to_string()
                    } else {
                        v.to_string()
                    }
                };
                vec![
                    json!(name),
                    json!(s(o, &["provisioner"])),
                    json!(or(s(o, &["reclaimPolicy"]), "Delete")),
                    json!(or(s(o, &["volumeBindingMode"]), "Immediate")),
                    json!(o["allowVolumeExpansion"] == json!(true)),
                    created_age(o),
                ]
            },
        ),
        _ => (
            vec![name_col(), ("Created At", "date", "", AGE_DESC, 0)],
            |o| {
                vec![
                    o["metadata"]["name"].clone(),
                    o["metadata"]["creationTimestamp"].clone(),
                ]
            },
        ),
    }
}

fn or_unset(v: &str) -> String {
    if v.is_empty() {
        "<unset>".into()
    } else {
        v.into()
    }
}

/// `RWO,ROX` short forms of access modes.
fn access_modes(v: &Value) -> String {
    arr(v)
        .iter()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A `Table` of `items` for `def`.
pub fn table_for(def: &ResourceDef, items: &[Value], metadata: Option<Value>) -> Value {
    let (cols, cells) = columns_and_cells(def);
    let rows: Vec<Value> = items
        .iter()
        .map(|o| json!({"cells": cells(o), "object": partial_metadata(o)}))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata.unwrap_or_else(|| json!({})),
        "columnDefinitions": cols.iter().map(col_json).collect::<Vec<_>>(),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::super::resources::find;
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(0, "0s")]
    #[case(119, "119s")]
    #[case(120, "2m")]
    #[case(125, "2m5s")]
    #[case(600, "10m")]
    #[case(3 * 3600 + 5 * 60, "3h5m")]
    #[case(10 * 3600, "10h")]
    #[case(50 * 3600, "2d2h")]
    #[case(30 * 86400, "30d")]
    #[case(3 * 365 * 86400, "3y")]
    fn human_durations(#[case] secs: i64, #[case] want: &str) {
        assert_eq!(human_duration(secs), want);
    }

    #[test]
    fn configmap_table_matches_the_recording() {
        let cm = json!({"metadata": {"name": "sel-1", "namespace": "conf-a", "creationTimestamp": jiff::Timestamp::now().to_string(), "labels": {"app": "web"}}, "data": {"a": "1"}});
        let t = table_for(
            find("", "v1", "configmaps").unwrap(),
            &[cm],
            Some(json!({"resourceVersion": "5"})),
        );
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Data", "Age"]);
        assert_eq!(t["columnDefinitions"][1]["description"], CM_DATA_DESC);
        assert_eq!(t["rows"][0]["cells"][0], "sel-1");
        assert_eq!(t["rows"][0]["cells"][1], 1);
        assert!(t["rows"][0]["cells"][2].as_str().unwrap().ends_with('s'));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["metadata"]["resourceVersion"], "5");
    }

    #[test]
    fn pod_rows_show_readiness_status_and_wide_columns() {
        let pod = json!({
            "metadata": {"name": "p", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        });
        let t = table_for(find("", "v1", "pods").unwrap(), &[pod], None);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[1], "1/2");
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], "3");
        assert_eq!(cells[5], "10.0.0.5");
        assert_eq!(cells[6], "n1");
        assert_eq!(cells[7], "<none>");
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
    }

    #[test]
    fn pending_and_terminating_pods() {
        let def = find("", "v1", "pods").unwrap();
        let pending = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}});
        assert_eq!(
            table_for(def, &[pending], None)["rows"][0]["cells"][2],
            "Pending"
        );
        let gone = json!({"metadata": {"name": "p", "deletionTimestamp": "2024-01-01T00:00:00Z"}, "spec": {"containers": []}, "status": {"phase": "Running"}});
        assert_eq!(
            table_for(def, &[gone], None)["rows"][0]["cells"][2],
            "Terminating"
        );
    }

    #[test]
    fn service_rows() {
        let svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
            "ports": [{"port": 80, "nodePort": 30007, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}], "selector": {"b": "2", "a": "1"}}});
        let t = table_for(find("", "v1", "services").unwrap(), &[svc], None);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[1], "NodePort");
        assert_eq!(cells[2], "10.96.0.10");
        assert_eq!(cells[3], "<none>");
        assert_eq!(cells[4], "80:30007/TCP,53/UDP");
        assert_eq!(cells[6], "a=1,b=2");
    }

    #[test]
    fn node_and_namespace_rows() {
        let node = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}}, "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.32.3"}, "addresses": [{"type": "InternalIP", "address": "10.1.1.1"}]}});
        let cells =
            table_for(find("", "v1", "nodes").unwrap(), &[node], None)["rows"][0]["cells"].clone();
        assert_eq!(cells[1], "Ready,SchedulingDisabled");
        assert_eq!(cells[2], "control-plane");
        assert_eq!(cells[4], "v1.32.3");
        assert_eq!(cells[5], "10.1.1.1");
        let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        assert_eq!(
            table_for(find("", "v1", "namespaces").unwrap(), &[ns], None)["rows"][0]["cells"][1],
            "Active"
        );
    }

    #[test]
    fn every_kind_has_as_many_cells_as_columns() {
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2024-01-01T00:00:00Z"}});
        for r in super::super::resources::RESOURCES {
            let t = table_for(r, std::slice::from_ref(&obj), None);
            assert_eq!(
                t["columnDefinitions"].as_array().unwrap().len(),
                t["rows"][0]["cells"].as_array().unwrap().len(),
                "{}",
                r.plural
            );
        }
    }
}
