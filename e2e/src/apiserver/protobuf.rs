//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), as client-go's typed clients
//! (e.g. `kubectl create configmap`) send them: the `k8s\0` magic, then a `runtime.Unknown`
//! envelope whose `raw` holds the object in Kubernetes' gogo-protobuf encoding.
//!
//! The object is converted to the JSON the same object would have had if the client had sent
//! JSON. The wire schema (field number -> JSON name and type) of every message reachable from the
//! served kinds is embedded below; it was generated from the `k8s-pb` crate's prost types
//! (field numbers) and k8s-openapi's serde names (JSON names), so no protobuf dependency is needed.
//!
//! Go's JSON encoder drops empty values of `omitempty` fields, while gogo-protobuf writes every
//! non-pointer scalar; the decoder therefore drops empty strings, zeros and `false`, except for
//! the fields (mostly pointers) where a zero is meaningful ([`KEEP_ZERO`]).

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use serde_json::{Map, Value, json};

/// Fields whose zero / `false` value is kept (pointer fields, or required ones without
/// `omitempty`).
const KEEP_ZERO: &[&str] = &[
    "port",
    "containerPort",
    "value",
    "weight",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "deletionGracePeriodSeconds",
    "gracePeriodSeconds",
    "runAsUser",
    "runAsGroup",
    "fsGroup",
    "defaultMode",
    "mode",
    "expirationSeconds",
    "priority",
    "exitCode",
    "restartCount",
    "tolerationSeconds",
    "leaseDurationSeconds",
    "leaseTransitions",
    "count",
    "automountServiceAccountToken",
    "immutable",
    "enableServiceLinks",
    "hostUsers",
    "allowPrivilegeEscalation",
    "privileged",
    "readOnlyRootFilesystem",
    "runAsNonRoot",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "allocateLoadBalancerNodePorts",
    "ready",
    "serving",
    "terminating",
    "optional",
    "controller",
    "blockOwnerDeletion",
    "orphanDependents",
    "allowVolumeExpansion",
];

/// Decode a protobuf body into the JSON object it stands for.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let raw = body.strip_prefix(b"k8s\0").ok_or_else(|| {
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
            .to_string()
    })?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut object: &[u8] = &[];
    for f in fields(raw)? {
        match (f.0, f.1) {
            (1, Wire::Bytes(tm)) => {
                for g in fields(tm)? {
                    match g {
                        (1, Wire::Bytes(b)) => {
                            api_version = String::from_utf8_lossy(b).into_owned()
                        }
                        (2, Wire::Bytes(b)) => kind = String::from_utf8_lossy(b).into_owned(),
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => object = b,
            _ => {}
        }
    }
    let (group, version) = api_version
        .rsplit_once('/')
        .unwrap_or(("", api_version.as_str()));
    let package = if group.is_empty() {
        "core".to_string()
    } else {
        group.split('.').next().unwrap_or(group).to_string()
    };
    let message = format!("{package}.{version}.{kind}");
    if !schema().contains_key(message.as_str()) {
        return Err(format!(
            "no kind \"{kind}\" is registered for version \"{api_version}\" in scheme \"pkg/api/legacyscheme/scheme.go:30\""
        ));
    }
    let mut out = Map::new();
    out.insert("kind".into(), json!(kind));
    out.insert("apiVersion".into(), json!(api_version));
    decode_into(&message, object, &mut out)?;
    Ok(Value::Object(out))
}

/// A field's value on the wire.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

fn varint(b: &[u8], i: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i).ok_or("unexpected EOF")?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("proto: integer overflow".into())
}

fn fields(b: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i)?;
        let tag = u32::try_from(key >> 3).map_err(|_| "proto: illegal tag")?;
        let w = match key & 7 {
            0 => Wire::Varint(varint(b, &mut i)?),
            1 => {
                let s = b.get(i..i + 8).ok_or("unexpected EOF")?;
                i += 8;
                Wire::Fixed64(u64::from_le_bytes(
                    s.try_into().map_err(|_| "unexpected EOF")?,
                ))
            }
            2 => {
                let n =
                    usize::try_from(varint(b, &mut i)?).map_err(|_| "proto: negative length")?;
                let s = b.get(i..i + n).ok_or("unexpected EOF")?;
                i += n;
                Wire::Bytes(s)
            }
            5 => {
                b.get(i..i + 4).ok_or("unexpected EOF")?;
                i += 4;
                Wire::Fixed32
            }
            t => return Err(format!("proto: illegal wireType {t}")),
        };
        out.push((tag, w));
    }
    Ok(out)
}

/// One field of a message schema.
#[derive(Debug)]
struct Field {
    json: &'static str,
    kind: &'static str,
    message: &'static str,
}

type Schema = HashMap<&'static str, HashMap<u32, Field>>;

fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| {
        let mut m = HashMap::new();
        for line in SCHEMA.lines().filter(|l| !l.trim().is_empty()) {
            let mut parts = line.split(' ');
            let name = parts.next().unwrap_or_default();
            let mut fs = HashMap::new();
            for p in parts {
                let mut it = p.split(':');
                let (Some(tag), Some(json), Some(kind)) = (it.next(), it.next(), it.next()) else {
                    continue;
                };
                let Ok(tag) = tag.parse() else { continue };
                fs.insert(
                    tag,
                    Field {
                        json,
                        kind,
                        message: it.next().unwrap_or(""),
                    },
                );
            }
            m.insert(name, fs);
        }
        m
    })
}

fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn int_of(w: Wire<'_>) -> Option<i64> {
    match w {
        // int32 and int64 both travel as (two's complement) varints.
        Wire::Varint(v) => Some(v as i64),
        _ => None,
    }
}

/// The JSON of a message field whose type has a special JSON form, or `None` for a plain message.
fn special(message: &str, b: &[u8]) -> Result<Option<Value>, String> {
    let v = match message {
        "meta.v1.Time" | "meta.v1.MicroTime" => {
            let (mut secs, mut nanos) = (0i64, 0i64);
            for f in fields(b)? {
                match f {
                    (1, w) => secs = int_of(w).unwrap_or(0),
                    (2, w) => nanos = int_of(w).unwrap_or(0),
                    _ => {}
                }
            }
            // The zero time (empty message, or year 1) is `null` in Go's JSON.
            if (secs == 0 && nanos == 0) || secs == -62_135_596_800 {
                return Ok(Some(Value::Null));
            }
            let ts = jiff::Timestamp::new(secs, i32::try_from(nanos).unwrap_or(0))
                .map_err(|e| e.to_string())?;
            if message == "meta.v1.Time" {
                Value::String(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            } else {
                Value::String(ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string())
            }
        }
        "api.resource.Quantity" => {
            let mut s = String::new();
            for f in fields(b)? {
                if let (1, Wire::Bytes(x)) = f {
                    s = utf8(x);
                }
            }
            Value::String(s)
        }
        "util.intstr.IntOrString" => {
            let (mut ty, mut i, mut s) = (0i64, 0i64, String::new());
            for f in fields(b)? {
                match f {
                    (1, w) => ty = int_of(w).unwrap_or(0),
                    (2, w) => i = int_of(w).unwrap_or(0) as i32 as i64,
                    (3, Wire::Bytes(x)) => s = utf8(x),
                    _ => {}
                }
            }
            if ty == 1 { Value::String(s) } else { json!(i) }
        }
        "meta.v1.FieldsV1" | "runtime.RawExtension" => {
            let mut raw: &[u8] = &[];
            for f in fields(b)? {
                if let (1, Wire::Bytes(x)) = f {
                    raw = x;
                }
            }
            serde_json::from_slice(raw).unwrap_or(Value::Null)
        }
        "meta.v1.Duration" => {
            let mut d = 0i64;
            for f in fields(b)? {
                if let (1, w) = f {
                    d = int_of(w).unwrap_or(0);
                }
            }
            Value::String(format!("{}s", d / 1_000_000_000))
        }
        _ => return Ok(None),
    };
    Ok(Some(v))
}

fn message_value(message: &str, b: &[u8]) -> Result<Value, String> {
    if let Some(v) = special(message, b)? {
        return Ok(v);
    }
    let mut m = Map::new();
    decode_into(message, b, &mut m)?;
    Ok(Value::Object(m))
}

fn map_entry(f: &Field, b: &[u8]) -> Result<(String, Value), String> {
    let mut key = String::new();
    let mut val = match f.kind {
        "mm" => Value::Object(Map::new()),
        _ => Value::String(String::new()),
    };
    for e in fields(b)? {
        match e {
            (1, Wire::Bytes(k)) => key = utf8(k),
            (2, Wire::Bytes(v)) => {
                val = match f.kind {
                    "ms" => Value::String(utf8(v)),
                    "mb" => Value::String(base64::engine::general_purpose::STANDARD.encode(v)),
                    _ => message_value(f.message, v)?,
                }
            }
            _ => {}
        }
    }
    Ok((key, val))
}

fn decode_into(message: &str, b: &[u8], out: &mut Map<String, Value>) -> Result<(), String> {
    let schema = schema()
        .get(message)
        .ok_or_else(|| format!("no protobuf schema for {message}"))?;
    for (tag, w) in fields(b)? {
        let Some(f) = schema.get(&tag) else { continue };
        let keep = KEEP_ZERO.contains(&f.json);
        let scalar = |w: Wire<'_>| -> Option<Value> {
            match (f.kind.trim_start_matches('r'), w) {
                ("s", Wire::Bytes(x)) => Some(Value::String(utf8(x))),
                ("y", Wire::Bytes(x)) => Some(Value::String(
                    base64::engine::general_purpose::STANDARD.encode(x),
                )),
                ("b", Wire::Varint(v)) => Some(Value::Bool(v != 0)),
                ("i", Wire::Varint(v)) => Some(json!(v as i64)),
                ("d", Wire::Fixed64(v)) => Some(json!(f64::from_bits(v))),
                _ => None,
            }
        };
        match f.kind {
            "s" | "y" | "b" | "i" | "d" => {
                let Some(v) = scalar(w) else { continue };
                let empty = matches!(&v, Value::String(s) if s.is_empty())
                    || v == json!(false)
                    || v == json!(0)
                    || v == json!(0.0);
                if empty && !keep {
                    out.remove(f.json);
                } else {
                    out.insert(f.json.to_string(), v);
                }
            }
            "rs" | "ry" | "rb" | "ri" | "rd" => {
                let arr = out
                    .entry(f.json.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()));
                match (w, f.kind) {
                    // Packed repeated numbers.
                    (Wire::Bytes(x), "ri") => {
                        let mut i = 0;
                        while i < x.len() {
                            let v = varint(x, &mut i)?;
                            if let Value::Array(a) = arr {
                                a.push(json!(v as i64));
                            }
                        }
                    }
                    _ => {
                        if let (Some(v), Value::Array(a)) = (scalar(w), arr) {
                            a.push(v);
                        }
                    }
                }
            }
            "m" | "n" | "rm" => {
                let Wire::Bytes(x) = w else { continue };
                if f.kind == "n" {
                    decode_into(f.message, x, out)?;
                    continue;
                }
                let v = message_value(f.message, x)?;
                if f.kind == "rm" {
                    if let Value::Array(a) = out
                        .entry(f.json.to_string())
                        .or_insert_with(|| Value::Array(Vec::new()))
                    {
                        a.push(v);
                    }
                } else if v.is_null() {
                    out.remove(f.json);
                } else {
                    out.insert(f.json.to_string(), v);
                }
            }
            "ms" | "mb" | "mm" => {
                let Wire::Bytes(x) = w else { continue };
                let (k, v) = map_entry(f, x)?;
                if let Value::Object(m) = out
                    .entry(f.json.to_string())
                    .or_insert_with(|| Value::Object(Map::new()))
                {
                    m.insert(k, v);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Wire schema: `Message tag:jsonName:kind[:Message] ...` (kinds: `s` string, `b` bool, `i` varint
/// integer, `d` double, `y` bytes, `m` message, `n` message inlined into its parent, `ms`/`mb`/`mm`
/// maps of string/bytes/message values, `r*` repeated). Generated from k8s-pb 0.9 and k8s-openapi 0.29.
const SCHEMA: &str = r#"
authentication.v1.BoundObjectReference 1:kind:s 2:apiVersion:s 3:name:s 4:uid:s
authentication.v1.TokenRequest 1:metadata:m:meta.v1.ObjectMeta 2:spec:m:authentication.v1.TokenRequestSpec 3:status:m:authentication.v1.TokenRequestStatus
authentication.v1.TokenRequestSpec 1:audiences:rs 4:expirationSeconds:i 3:boundObjectRef:m:authentication.v1.BoundObjectReference
authentication.v1.TokenRequestStatus 1:token:s 2:expirationTimestamp:m:meta.v1.Time
coordination.v1.Lease 1:metadata:m:meta.v1.ObjectMeta 2:spec:m:coordination.v1.LeaseSpec
coordination.v1.LeaseSpec 1:holderIdentity:s 2:leaseDurationSeconds:i 3:acquireTime:m:meta.v1.MicroTime 4:renewTime:m:meta.v1.MicroTime 5:leaseTransitions:i 6:strategy:s 7:preferredHolder:s
core.v1.Affinity 1:nodeAffinity:m:core.v1.NodeAffinity 2:podAffinity:m:core.v1.PodAffinity 3:podAntiAffinity:m:core.v1.PodAntiAffinity
core.v1.AppArmorProfile 1:type:s 2:localhostProfile:s
core.v1.AttachedVolume 1:name:s 2:devicePath:s
core.v1.AwsElasticBlockStoreVolumeSource 1:volumeID:s 2:fsType:s 3:partition:i 4:readOnly:b
core.v1.AzureDiskVolumeSource 1:diskName:s 2:diskURI:s 3:cachingMode:s 4:fsType:s 5:readOnly:b 6:kind:s
core.v1.AzureFilePersistentVolumeSource 1:secretName:s 2:shareName:s 3:readOnly:b 4:secretNamespace:s
core.v1.AzureFileVolumeSource 1:secretName:s 2:shareName:s 3:readOnly:b
core.v1.Binding 1:metadata:m:meta.v1.ObjectMeta 2:target:m:core.v1.ObjectReference
core.v1.CSIPersistentVolumeSource 1:driver:s 2:volumeHandle:s 3:readOnly:b 4:fsType:s 5:volumeAttributes:ms 6:controllerPublishSecretRef:m:core.v1.SecretReference 7:nodeStageSecretRef:m:core.v1.SecretReference 8:nodePublishSecretRef:m:core.v1.SecretReference 9:controllerExpandSecretRef:m:core.v1.SecretReference 10:nodeExpandSecretRef:m:core.v1.SecretReference
core.v1.CSIVolumeSource 1:driver:s 2:readOnly:b 3:fsType:s 4:volumeAttributes:ms 5:nodePublishSecretRef:m:core.v1.LocalObjectReference
core.v1.Capabilities 1:add:rs 2:drop:rs
core.v1.CephFsPersistentVolumeSource 1:monitors:rs 2:path:s 3:user:s 4:secretFile:s 5:secretRef:m:core.v1.SecretReference 6:readOnly:b
core.v1.CephFsVolumeSource 1:monitors:rs 2:path:s 3:user:s 4:secretFile:s 5:secretRef:m:core.v1.LocalObjectReference 6:readOnly:b
core.v1.CinderPersistentVolumeSource 1:volumeID:s 2:fsType:s 3:readOnly:b 4:secretRef:m:core.v1.SecretReference
core.v1.CinderVolumeSource 1:volumeID:s 2:fsType:s 3:readOnly:b 4:secretRef:m:core.v1.LocalObjectReference
core.v1.ClientIpConfig 1:timeoutSeconds:i
core.v1.ClusterTrustBundleProjection 1:name:s 2:signerName:s 3:labelSelector:m:meta.v1.LabelSelector 5:optional:b 4:path:s
core.v1.ConfigMap 1:metadata:m:meta.v1.ObjectMeta 4:immutable:b 2:data:ms 3:binaryData:mb
core.v1.ConfigMapEnvSource 1:-:n:core.v1.LocalObjectReference 2:optional:b
core.v1.ConfigMapKeySelector 1:-:n:core.v1.LocalObjectReference 2:key:s 3:optional:b
core.v1.ConfigMapNodeConfigSource 1:namespace:s 2:name:s 3:uid:s 4:resourceVersion:s 5:kubeletConfigKey:s
core.v1.ConfigMapProjection 1:-:n:core.v1.LocalObjectReference 2:items:rm:core.v1.KeyToPath 4:optional:b
core.v1.ConfigMapVolumeSource 1:-:n:core.v1.LocalObjectReference 2:items:rm:core.v1.KeyToPath 3:defaultMode:i 4:optional:b
core.v1.Container 1:name:s 2:image:s 3:command:rs 4:args:rs 5:workingDir:s 6:ports:rm:core.v1.ContainerPort 19:envFrom:rm:core.v1.EnvFromSource 7:env:rm:core.v1.EnvVar 8:resources:m:core.v1.ResourceRequirements 23:resizePolicy:rm:core.v1.ContainerResizePolicy 24:restartPolicy:s 25:restartPolicyRules:rm:core.v1.ContainerRestartRule 9:volumeMounts:rm:core.v1.VolumeMount 21:volumeDevices:rm:core.v1.VolumeDevice 10:livenessProbe:m:core.v1.Probe 11:readinessProbe:m:core.v1.Probe 22:startupProbe:m:core.v1.Probe 12:lifecycle:m:core.v1.Lifecycle 13:terminationMessagePath:s 20:terminationMessagePolicy:s 14:imagePullPolicy:s 15:securityContext:m:core.v1.SecurityContext 16:stdin:b 17:stdinOnce:b 18:tty:b
core.v1.ContainerExtendedResourceRequest 1:containerName:s 2:resourceName:s 3:requestName:s
core.v1.ContainerImage 1:names:rs 2:sizeBytes:i
core.v1.ContainerPort 1:name:s 2:hostPort:i 3:containerPort:i 4:protocol:s 5:hostIP:s
core.v1.ContainerResizePolicy 1:resourceName:s 2:restartPolicy:s
core.v1.ContainerRestartRule 1:action:s 2:exitCodes:m:core.v1.ContainerRestartRuleOnExitCodes
core.v1.ContainerRestartRuleOnExitCodes 1:operator:s 2:values:ri
core.v1.ContainerState 1:waiting:m:core.v1.ContainerStateWaiting 2:running:m:core.v1.ContainerStateRunning 3:terminated:m:core.v1.ContainerStateTerminated
core.v1.ContainerStateRunning 1:startedAt:m:meta.v1.Time
core.v1.ContainerStateTerminated 1:exitCode:i 2:signal:i 3:reason:s 4:message:s 5:startedAt:m:meta.v1.Time 6:finishedAt:m:meta.v1.Time 7:containerID:s
core.v1.ContainerStateWaiting 1:reason:s 2:message:s
core.v1.ContainerStatus 1:name:s 2:state:m:core.v1.ContainerState 3:lastState:m:core.v1.ContainerState 4:ready:b 5:restartCount:i 6:image:s 7:imageID:s 8:containerID:s 9:started:b 10:allocatedResources:mm:api.resource.Quantity 11:resources:m:core.v1.ResourceRequirements 12:volumeMounts:rm:core.v1.VolumeMountStatus 13:user:m:core.v1.ContainerUser 14:allocatedResourcesStatus:rm:core.v1.ResourceStatus 15:stopSignal:s
core.v1.ContainerUser 1:linux:m:core.v1.LinuxContainerUser
core.v1.DaemonEndpoint 1:Port:i
core.v1.DownwardAPIProjection 1:items:rm:core.v1.DownwardAPIVolumeFile
core.v1.DownwardAPIVolumeFile 1:path:s 2:fieldRef:m:core.v1.ObjectFieldSelector 3:resourceFieldRef:m:core.v1.ResourceFieldSelector 4:mode:i
core.v1.DownwardAPIVolumeSource 1:items:rm:core.v1.DownwardAPIVolumeFile 2:defaultMode:i
core.v1.EmptyDirVolumeSource 1:medium:s 2:sizeLimit:m:api.resource.Quantity
core.v1.EndpointAddress 1:ip:s 3:hostname:s 4:nodeName:s 2:targetRef:m:core.v1.ObjectReference
core.v1.EndpointPort 1:name:s 2:port:i 3:protocol:s 4:appProtocol:s
core.v1.EndpointSubset 1:addresses:rm:core.v1.EndpointAddress 2:notReadyAddresses:rm:core.v1.EndpointAddress 3:ports:rm:core.v1.EndpointPort
core.v1.Endpoints 1:metadata:m:meta.v1.ObjectMeta 2:subsets:rm:core.v1.EndpointSubset
core.v1.EnvFromSource 1:prefix:s 2:configMapRef:m:core.v1.ConfigMapEnvSource 3:secretRef:m:core.v1.SecretEnvSource
core.v1.EnvVar 1:name:s 2:value:s 3:valueFrom:m:core.v1.EnvVarSource
core.v1.EnvVarSource 1:fieldRef:m:core.v1.ObjectFieldSelector 2:resourceFieldRef:m:core.v1.ResourceFieldSelector 3:configMapKeyRef:m:core.v1.ConfigMapKeySelector 4:secretKeyRef:m:core.v1.SecretKeySelector 5:fileKeyRef:m:core.v1.FileKeySelector
core.v1.EphemeralContainer 1:-:n:core.v1.EphemeralContainerCommon 2:targetContainerName:s
core.v1.EphemeralContainerCommon 1:name:s 2:image:s 3:command:rs 4:args:rs 5:workingDir:s 6:ports:rm:core.v1.ContainerPort 19:envFrom:rm:core.v1.EnvFromSource 7:env:rm:core.v1.EnvVar 8:resources:m:core.v1.ResourceRequirements 23:resizePolicy:rm:core.v1.ContainerResizePolicy 24:restartPolicy:s 25:restartPolicyRules:rm:core.v1.ContainerRestartRule 9:volumeMounts:rm:core.v1.VolumeMount 21:volumeDevices:rm:core.v1.VolumeDevice 10:livenessProbe:m:core.v1.Probe 11:readinessProbe:m:core.v1.Probe 22:startupProbe:m:core.v1.Probe 12:lifecycle:m:core.v1.Lifecycle 13:terminationMessagePath:s 20:terminationMessagePolicy:s 14:imagePullPolicy:s 15:securityContext:m:core.v1.SecurityContext 16:stdin:b 17:stdinOnce:b 18:tty:b
core.v1.EphemeralVolumeSource 1:volumeClaimTemplate:m:core.v1.PersistentVolumeClaimTemplate
core.v1.Event 1:metadata:m:meta.v1.ObjectMeta 2:involvedObject:m:core.v1.ObjectReference 3:reason:s 4:message:s 5:source:m:core.v1.EventSource 6:firstTimestamp:m:meta.v1.Time 7:lastTimestamp:m:meta.v1.Time 8:count:i 9:type:s 10:eventTime:m:meta.v1.MicroTime 11:series:m:core.v1.EventSeries 12:action:s 13:related:m:core.v1.ObjectReference 14:reportingComponent:s 15:reportingInstance:s
core.v1.EventSeries 1:count:i 2:lastObservedTime:m:meta.v1.MicroTime
core.v1.EventSource 1:component:s 2:host:s
core.v1.ExecAction 1:command:rs
core.v1.FcVolumeSource 1:targetWWNs:rs 2:lun:i 3:fsType:s 4:readOnly:b 5:wwids:rs
core.v1.FileKeySelector 1:volumeName:s 2:path:s 3:key:s 4:optional:b
core.v1.FlexPersistentVolumeSource 1:driver:s 2:fsType:s 3:secretRef:m:core.v1.SecretReference 4:readOnly:b 5:options:ms
core.v1.FlexVolumeSource 1:driver:s 2:fsType:s 3:secretRef:m:core.v1.LocalObjectReference 4:readOnly:b 5:options:ms
core.v1.FlockerVolumeSource 1:datasetName:s 2:datasetUUID:s
core.v1.GcePersistentDiskVolumeSource 1:pdName:s 2:fsType:s 3:partition:i 4:readOnly:b
core.v1.GitRepoVolumeSource 1:repository:s 2:revision:s 3:directory:s
core.v1.GlusterfsPersistentVolumeSource 1:endpoints:s 2:path:s 3:readOnly:b 4:endpointsNamespace:s
core.v1.GlusterfsVolumeSource 1:endpoints:s 2:path:s 3:readOnly:b
core.v1.GrpcAction 1:port:i 2:service:s
core.v1.HostAlias 1:ip:s 2:hostnames:rs
core.v1.HostIp 1:ip:s
core.v1.HostPathVolumeSource 1:path:s 2:type:s
core.v1.HttpGetAction 1:path:s 2:port:m:util.intstr.IntOrString 3:host:s 4:scheme:s 5:httpHeaders:rm:core.v1.HttpHeader
core.v1.HttpHeader 1:name:s 2:value:s
core.v1.ImageVolumeSource 1:reference:s 2:pullPolicy:s
core.v1.IscsiPersistentVolumeSource 1:targetPortal:s 2:iqn:s 3:lun:i 4:iscsiInterface:s 5:fsType:s 6:readOnly:b 7:portals:rs 8:chapAuthDiscovery:b 11:chapAuthSession:b 10:secretRef:m:core.v1.SecretReference 12:initiatorName:s
core.v1.IscsiVolumeSource 1:targetPortal:s 2:iqn:s 3:lun:i 4:iscsiInterface:s 5:fsType:s 6:readOnly:b 7:portals:rs 8:chapAuthDiscovery:b 11:chapAuthSession:b 10:secretRef:m:core.v1.LocalObjectReference 12:initiatorName:s
core.v1.KeyToPath 1:key:s 2:path:s 3:mode:i
core.v1.Lifecycle 1:postStart:m:core.v1.LifecycleHandler 2:preStop:m:core.v1.LifecycleHandler 3:stopSignal:s
core.v1.LifecycleHandler 1:exec:m:core.v1.ExecAction 2:httpGet:m:core.v1.HttpGetAction 3:tcpSocket:m:core.v1.TcpSocketAction 4:sleep:m:core.v1.SleepAction
core.v1.LimitRange 1:metadata:m:meta.v1.ObjectMeta 2:spec:m:core.v1.LimitRangeSpec
core.v1.LimitRangeItem 1:type:s 2:max:mm:api.resource.Quantity 3:min:mm:api.resource.Quantity 4:default:mm:api.resource.Quantity 5:defaultRequest:mm:api.resource.Quantity 6:maxLimitRequestRatio:mm:api.resource.Quantity
core.v1.LimitRangeSpec 1:limits:rm:core.v1.LimitRangeItem
core.v1.LinuxContainerUser 1:uid:i 2:gid:i 3:supplementalGroups:ri
core.v1.LoadBalancerIngress 1:ip:s 2:hostname:s 3:ipMode:s 4:ports:rm:core.v1.PortStatus
core.v1.LoadBalancerStatus 1:ingress:rm:core.v1.LoadBalancerIngress
core.v1.LocalObjectReference 1:name:s
core.v1.LocalVolumeSource 1:path:s 2:fsType:s
core.v1.ModifyVolumeStatus 1:targetVolumeAttributesClassName:s 2:status:s
core.v1.Namespace 1:metadata:m:meta.v1.ObjectMeta 2:spec:m:core.v1.NamespaceSpec 3:status:m:core.v1.NamespaceStatus
core.v1.NamespaceCondition 1:type:s 2:status:s 4:lastTransitionTime:m:meta.v1.Time 5:reason:s 6:message:s
core.v1.NamespaceSpec 1:finalizers:rs
core.v1.NamespaceStatus 1:phase:s 2:conditions:rm:core.v1.NamespaceCondition
core.v1.NfsVolumeSource 1:server:s 2:path:s 3:readOnly:b
core.v1.Node 1:metadata:m:meta.v1.ObjectMeta 2:spec:m:core.v1.NodeSpec 3:status:m:core.v1.NodeStatus
core.v1.NodeAddress 1:type:s 2:address:s
core.v1.NodeAffinity 1:requiredDuringSchedulingIgnoredDuringExecution:m:core.v1.NodeSelector 2:preferredDuringSchedulingIgnoredDuringExecution:rm:core.v1.PreferredSchedulingTerm
core.v1.NodeCondition 1:type:s 2:status:s 3:lastHeartbeatTime:m:meta.v1.Time 4:lastTransitionTime:m:meta.v1.Time 5:reason:s 6:message:s
core.v1.NodeConfigSource 2:configMap:m:core.v1.ConfigMapNodeConfigSource
core.v1.NodeConfigStatus 1:assigned:m:core.v1.NodeConfigSource 2:active:m:core.v1.NodeConfigSource 3:lastKnownGood:m:core.v1.NodeConfigSource 4:error:s
core.v1.NodeDaemonEndpoints 1:kubeletEndpoint:m:core.v1.DaemonEndpoint
core.v1.NodeFeatures 1:supplementalGroupsPolicy:b
core.v1.NodeRuntimeHandler 1:name:s 2:features:m:core.v1.NodeRuntimeHandlerFeatures
core.v1.NodeRuntimeHandlerFeatures 1:recursiveReadOnlyMounts:b 2:userNamespaces:b
core.v1.NodeSelector 1:nodeSelectorTerms:rm:core.v1.NodeSelectorTerm
core.v1.NodeSelectorRequirement 1:key:s 2:operator:s 3:values:rs
core.v1.NodeSelectorTerm 1:matchExpressions:rm:core.v1.NodeSelectorRequirement 2:matchFields:rm:core.v1.NodeSelectorRequirement
core.v1.NodeSpec 1:podCIDR:s 7:podCIDRs:rs 3:providerID:s 4:unschedulable:b 5:taints:rm:core.v1.Taint 6:configSource:m:core.v1.NodeConfigSource 2:externalID:s
core.v1.NodeStatus 1:capacity:mm:api.resource.Quantity 2:allocatable:mm:api.resource.Quantity 3:phase:s 4:conditions:rm:core.v1.NodeCondition 5:addresses:rm:core.v1.NodeAddress 6:daemonEndpoints:m:core.v1.NodeDaemonEndpoints 7:nodeInfo:m:core.v1.NodeSystemInfo 8:images:rm:core.v1.ContainerImage 9:volumesInUse:rs 10:volumesAttached:rm:core.v1.AttachedVolume 11:config:m:core.v1.NodeConfigStatus 12:runtimeHandlers:rm:core.v1.NodeRuntimeHandler 13:features:m:core.v1.NodeFeatures 14:declaredFeatures:rs
core.v1.NodeSwapStatus 1:capacity:i
core.v1.NodeSystemInfo 1:machineID:s 2:systemUUID:s 3:bootID:s 4:kernelVersion:s 5:osImage:s 6:containerRuntimeVersion:s 7:kubeletVersion:s 8:kubeProxyVersion:s 9:operatingSystem:s 10:architecture:s 11:swap:m:core.v1.NodeSwapStatus
core.v1.ObjectFieldSelector 1:apiVersion:s 2:fieldPath:s
core.v1.ObjectReference 1:kind:s 2:namespace:s 3:name:s 4:uid:s 5:apiVersion:s 6:resourceVersion:s 7:fieldPath:s
core.v1.PersistentVolume 1:metadata:m:meta.v1.ObjectMeta 2:spec:m:core.v1.PersistentVolumeSpec 3:status:m:core.v1.PersistentVolumeStatus
core.v1.PersistentVolumeClaim 1:metadata:m:meta.v1.ObjectMeta 2:spec:m:core.v1.PersistentVolumeClaimSpec 3:status:m:core.v1.PersistentVolumeClaimStatus
core.v1.PersistentVolumeClaimCondition 1:type:s 2:status:s 3:lastProbeTime:m:meta.v1.Time 4:lastTransitionTime:m:meta.v1.Time 5:reason:s 6:message:s
core.v1.PersistentVolumeClaimSpec 1:accessModes:rs 4:selector:m:meta.v1.LabelSelector 2:resources:m:core.v1.VolumeResourceRequirements 3:volumeName:s 5:storageClassName:s 6:volumeMode:s 7:dataSource:m:core.v1.TypedLocalObjectReference 8:dataSourceRef:m:core.v1.TypedObjectReference 9:volumeAttributesClassName:s
core.v1.PersistentVolumeClaimStatus 1:phase:s 2:accessModes:rs 3:capacity:mm:api.resource.Quantity 4:conditions:rm:core.v1.PersistentVolumeClaimCondition 5:allocatedResources:mm:api.resource.Quantity 7:allocatedResourceStatuses:ms 8:currentVolumeAttributesClassName:s 9:modifyVolumeStatus:m:core.v1.ModifyVolumeStatus
core.v1.PersistentVolumeClaimTemplate 1:metadata:m:meta.v1.ObjectMeta 2:spec:m:core.v1.PersistentVolumeClaimSpec
core.v1.PersistentVolumeClaimVolumeSource 1:claimName:s 2:readOnly:b
core.v1.PersistentVolumeSource 1:gcePersistentDisk:m:core.v1.GcePersistentDiskVolumeSource 2:awsElasticBlockStore:m:core.v1.AwsElasticBlockStoreVolumeSource 3:hostPath:m:core.v1.HostPathVolumeSource 4:glusterfs:m:core.v1.GlusterfsPersistentVolumeSource 5:nfs:m:core.v1.NfsVolumeSource 6:rbd:m:core.v1.RbdPersistentVolumeSource 7:iscsi:m:core.v1.IscsiPersistentVolumeSource 8:cinder:m:core.v1.CinderPersistentVolumeSource 9:cephfs:m:core.v1.CephFsPersistentVolumeSource 10:fc:m:core.v1.FcVolumeSource 11:flocker:m:core.v1.FlockerVolumeSource 12:flexVolume:m:core.v1.FlexPersistentVolumeSource 13:azureFile:m:core.v1.AzureFilePersistentVolumeSource 14:vsphereVolume:m:core.v1.VsphereVirtualDiskVolumeSource 15:quobyte:m:core.v1.QuobyteVolumeSource 16:azureDisk:m:core.v1.AzureDiskVolumeSource 17:photonPersistentDisk:m:core.v1.PhotonPersistentDiskVolumeSource 18:portworxVolume:m:core.v1.PortworxVolumeSource 19:scaleIo:m:core.v1.ScaleIoPersistentVolumeSource 20:local:m:core.v1.LocalVolumeSource 21:storageos:m:core.v1.StorageOsPersistentVolumeSource 22:csi:m:core.v1.CSIPersistentVolumeSource
core.v1.PersistentVolumeSpec 1:capacity:mm:api.resource.Quantity 2:-:n:core.v1.PersistentVolumeSource 3:accessModes:rs 4:claimRef:m:core.v1.ObjectReference 5:persistentVolumeReclaimPolicy:s 6:storageClassName:s 7:mountOptions:rs 8:volumeMode:s 9:nodeAffinity:m:core.v1.VolumeNodeAffinity 10:volumeAttributesClassName:s
core.v1.PersistentVolumeStatus 1:phase:s 2:message:s 3:reason:s 4:lastPhaseTransitionTime:m:meta.v1.Time
core.v1.PhotonPersistentDiskVolumeSource 1:pdID:s 2:fsType:s
core.v1.Pod 1:metadata:m:meta.v1.ObjectMeta 2:spec:m:core.v1.PodSpec 3:status:m:core.v1.PodStatus
core.v1.PodAffinity 1:requiredDuringSchedulingIgnoredDuringExecution:rm:core.v1.PodAffinityTerm 2:preferredDuringSchedulingIgnoredDuringExecution:rm:core.v1.WeightedPodAffinityTerm
core.v1.PodAffinityTerm 1:labelSelector:m:meta.v1.LabelSelector 2:namespaces:rs 3:topologyKey:s 4:namespaceSelector:m:meta.v1.LabelSelector 5:matchLabelKeys:rs 6:mismatchLabelKeys:rs
core.v1.PodAntiAffinity 1:requiredDuringSchedulingIgnoredDuringExecution:rm:core.v1.PodAffinityTerm 2:preferredDuringSchedulingIgnoredDuringExecution:rm:core.v1.WeightedPodAffinityTerm
core.v1.PodCertificateProjection 1:signerName:s 2:keyType:s 3:maxExpirationSeconds:i 4:credentialBundlePath:s 5:keyPath:s 6:certificateChainPath:s 7:userAnnotations:ms
core.v1.PodCondition 1:type:s 7:observedGeneration:i 2:status:s 3:lastProbeTime:m:meta.v1.Time 4:lastTransitionTime:m:meta.v1.Time 5:reason:s 6:message:s
core.v1.PodDnsConfig 1:nameservers:rs 2:searches:rs 3:options:rm:core.v1.PodDnsConfigOption
core.v1.PodDnsConfigOption 1:name:s 2:value:s
core.v1.PodExtendedResourceClaimStatus 1:requestMappings:rm:core.v1.ContainerExtendedResourceRequest 2:resourceClaimName:s
core.v1.PodIp 1:ip:s
core.v1.PodOs 1:name:s
core.v1.PodReadinessGate 1:conditionType:s
core.v1.PodResourceClaim 1:name:s 3:resourceClaimName:s 4:resourceClaimTemplateName:s
core.v1.PodResourceClaimStatus 1:name:s 2:resourceClaimName:s
core.v1.PodSchedulingGate 1:name:s
core.v1.PodSecurityContext 1:seLinuxOptions:m:core.v1.SeLinuxOptions 8:windowsOptions:m:core.v1.WindowsSecurityContextOptions 2:runAsUser:i 6:runAsGroup:i 3:runAsNonRoot:b 4:supplementalGroups:ri 12:supplementalGroupsPolicy:s 5:fsGroup:i 7:sysctls:rm:core.v1.Sysctl 9:fsGroupChangePolicy:s 10:seccompProfile:m:core.v1.SeccompProfile 11:appArmorProfile:m:core.v1.AppArmorProfile 13:seLinuxChangePolicy:s
core.v1.PodSpec 1:volumes:rm:core.v1.Volume 20:initContainers:rm:core.v1.Container 2:containers:rm:core.v1.Container 34:ephemeralContainers:rm:core.v1.EphemeralContainer 3:restartPolicy:s 4:terminationGracePeriodSeconds:i 5:activeDeadlineSeconds:i 6:dnsPolicy:s 7:nodeSelector:ms 8:serviceAccountName:s 9:serviceAccount:s 21:automountServiceAccountToken:b 10:nodeName:s 11:hostNetwork:b 12:hostPID:b 13:hostIPC:b 27:shareProcessNamespace:b 14:securityContext:m:core.v1.PodSecurityContext 15:imagePullSecrets:rm:core.v1.LocalObjectReference 16:hostname:s 17:subdomain:s 18:affinity:m:core.v1.Affinity 19:schedulerName:s 22:tolerations:rm:core.v1.Toleration 23:hostAliases:rm:core.v1.HostAlias 24:priorityClassName:s 25:priority:i 26:dnsConfig:m:core.v1.PodDnsConfig 28:readinessGates:rm:core.v1.PodReadinessGate 29:runtimeClassName:s 30:enableServiceLinks:b 31:preemptionPolicy:s 32:overhead:mm:api.resource.Quantity 33:topologySpreadConstraints:rm:core.v1.TopologySpreadConstraint 35:setHostnameAsFQDN:b 36:os:m:core.v1.PodOs 37:hostUsers:b 38:schedulingGates:rm:core.v1.PodSchedulingGate 39:resourceClaims:rm:core.v1.PodResourceClaim 40:resources:m:core.v1.ResourceRequirements 41:hostnameOverride:s 42:workloadRef:m:core.v1.WorkloadReference
core.v1.PodStatus 17:observedGeneration:i 1:phase:s 2:conditions:rm:core.v1.PodCondition 3:message:s 4:reason:s 11:nominatedNodeName:s 5:hostIP:s 16:hostIPs:rm:core.v1.HostIp 6:podIP:s 12:podIPs:rm:core.v1.PodIp 7:startTime:m:meta.v1.Time 10:initContainerStatuses:rm:core.v1.ContainerStatus 8:containerStatuses:rm:core.v1.ContainerStatus 9:qosClass:s 13:ephemeralContainerStatuses:rm:core.v1.ContainerStatus 14:resize:s 15:resourceClaimStatuses:rm:core.v1.PodResourceClaimStatus 18:extendedResourceClaimStatus:m:core.v1.PodExtendedResourceClaimStatus 19:allocatedResources:mm:api.resource.Quantity 20:resources:m:core.v1.ResourceRequirements
core.v1.PortStatus 1:port:i 2:protocol:s 3:error:s
core.v1.PortworxVolumeSource 1:volumeID:s 2:fsType:s 3:readOnly:b
core.v1.PreferredSchedulingTerm 1:weight:i 2:preference:m:core.v1.NodeSelectorTerm
core.v1.Probe 1:-:n:core.v1.ProbeHandler 2:initialDelaySeconds:i 3:timeoutSeconds:i 4:periodSeconds:i 5:successThreshold:i 6:failureThreshold:i 7:terminationGracePeriodSeconds:i
core.v1.ProbeHandler 1:exec:m:core.v1.ExecAction 2:httpGet:m:core.v1.HttpGetAction 3:tcpSocket:m:core.v1.TcpSocketAction 4:grpc:m:core.v1.GrpcAction
core.v1.ProjectedVolumeSource 1:sources:rm:core.v1.VolumeProjection 2:defaultMode:i
core.v1.QuobyteVolumeSource 1:registry:s 2:volume:s 3:readOnly:b 4:user:s 5:group:s 6:tenant:s
core.v1.RbdPersistentVolumeSource 1:monitors:rs 2:image:s 3:fsType:s 4:pool:s 5:user:s 6:keyring:s 7:secretRef:m:core.v1.SecretReference 8:readOnly:b
core.v1.RbdVolumeSource 1:monitors:rs 2:image:s 3:fsType:s 4:pool:s 5:user:s 6:keyring:s 7:secretRef:m:core.v1.LocalObjectReference 8:readOnly:b
core.v1.ResourceClaim 1:name:s 2:request:s
core.v1.ResourceFieldSelector 1:containerName:s 2:resource:s 3:divisor:m:api.resource.Quantity
core.v1.ResourceHealth 1:resourceID:s 2:health:s
core.v1.ResourceQuota 1:metadata:m:meta.v1.ObjectMeta 2:spec:m:core.v1.ResourceQuotaSpec 3:status:m:core.v1.ResourceQuotaStatus
core.v1.ResourceQuotaSpec 1:hard:mm:api.resource.Quantity 2:scopes:rs 3:scopeSelector:m:core.v1.ScopeSelector
core.v1.ResourceQuotaStatus 1:hard:mm:api.resource.Quantity 2:used:mm:api.resource.Quantity
core.v1.ResourceRequirements 1:limits:mm:api.resource.Quantity 2:requests:mm:api.resource.Quantity 3:claims:rm:core.v1.ResourceClaim
core.v1.ResourceStatus 1:name:s 2:resources:rm:core.v1.ResourceHealth
core.v1.ScaleIoPersistentVolumeSource 1:gateway:s 2:system:s 3:secretRef:m:core.v1.SecretReference 4:sslEnabled:b 5:protectionDomain:s 6:storagePool:s 7:storageMode:s 8:volumeName:s 9:fsType:s 10:readOnly:b
core.v1.ScaleIoVolumeSource 1:gateway:s 2:system:s 3:secretRef:m:core.v1.LocalObjectReference 4:sslEnabled:b 5:protectionDomain:s 6:storagePool:s 7:storageMode:s 8:volumeName:s 9:fsType:s 10:readOnly:b
core.v1.ScopeSelector 1:matchExpressions:rm:core.v1.ScopedResourceSelectorRequirement
core.v1.ScopedResourceSelectorRequirement 1:scopeName:s 2:operator:s 3:values:rs
core.v1.SeLinuxOptions 1:user:s 2:role:s 3:type:s 4:level:s
core.v1.SeccompProfile 1:type:s 2:localhostProfile:s
core.v1.Secret 1:metadata:m:meta.v1.ObjectMeta 5:immutable:b 2:data:mb 4:stringData:ms 3:type:s
core.v1.SecretEnvSource 1:-:n:core.v1.LocalObjectReference 2:optional:b
core.v1.SecretKeySelector 1:-:n:core.v1.LocalObjectReference 2:key:s 3:optional:b
core.v1.SecretProjection 1:-:n:core.v1.LocalObjectReference 2:items:rm:core.v1.KeyToPath 4:optional:b
core.v1.SecretReference 1:name:s 2:namespace:s
core.v1.SecretVolumeSource 1:secretName:s 2:items:rm:core.v1.KeyToPath 3:defaultMode:i 4:optional:b
core.v1.SecurityContext 1:capabilities:m:core.v1.Capabilities 2:privileged:b 3:seLinuxOptions:m:core.v1.SeLinuxOptions 10:windowsOptions:m:core.v1.WindowsSecurityContextOptions 4:runAsUser:i 8:runAsGroup:i 5:runAsNonRoot:b 6:readOnlyRootFilesystem:b 7:allowPrivilegeEscalation:b 9:procMount:s 11:seccompProfile:m:core.v1.SeccompProfile 12:appArmorProfile:m:core.v1.AppArmorProfile
core.v1.Service 1:metadata:m:meta.v1.ObjectMeta 2:spec:m:core.v1.ServiceSpec 3:status:m:core.v1.ServiceStatus
core.v1.ServiceAccount 1:metadata:m:meta.v1.ObjectMeta 2:secrets:rm:core.v1.ObjectReference 3:imagePullSecrets:rm:core.v1.LocalObjectReference 4:automountServiceAccountToken:b
core.v1.ServiceAccountTokenProjection 1:audience:s 2:expirationSeconds:i 3:path:s
core.v1.ServicePort 1:name:s 2:protocol:s 6:appProtocol:s 3:port:i 4:targetPort:m:util.intstr.IntOrString 5:nodePort:i
core.v1.ServiceSpec 1:ports:rm:core.v1.ServicePort 2:selector:ms 3:clusterIP:s 18:clusterIPs:rs 4:type:s 5:externalIPs:rs 7:sessionAffinity:s 8:loadBalancerIP:s 9:loadBalancerSourceRanges:rs 10:externalName:s 11:externalTrafficPolicy:s 12:healthCheckNodePort:i 13:publishNotReadyAddresses:b 14:sessionAffinityConfig:m:core.v1.SessionAffinityConfig 19:ipFamilies:rs 17:ipFamilyPolicy:s 20:allocateLoadBalancerNodePorts:b 21:loadBalancerClass:s 22:internalTrafficPolicy:s 23:trafficDistribution:s
core.v1.ServiceStatus 1:loadBalancer:m:core.v1.LoadBalancerStatus 2:conditions:rm:meta.v1.Condition
core.v1.SessionAffinityConfig 1:clientIP:m:core.v1.ClientIpConfig
core.v1.SleepAction 1:seconds:i
core.v1.StorageOsPersistentVolumeSource 1:volumeName:s 2:volumeNamespace:s 3:fsType:s 4:readOnly:b 5:secretRef:m:core.v1.ObjectReference
core.v1.StorageOsVolumeSource 1:volumeName:s 2:volumeNamespace:s 3:fsType:s 4:readOnly:b 5:secretRef:m:core.v1.LocalObjectReference
core.v1.Sysctl 1:name:s 2:value:s
core.v1.Taint 1:key:s 2:value:s 3:effect:s 4:timeAdded:m:meta.v1.Time
core.v1.TcpSocketAction 1:port:m:util.intstr.IntOrString 2:host:s
core.v1.Toleration 1:key:s 2:operator:s 3:value:s 4:effect:s 5:tolerationSeconds:i
core.v1.TopologySelectorLabelRequirement 1:key:s 2:values:rs
core.v1.TopologySelectorTerm 1:matchLabelExpressions:rm:core.v1.TopologySelectorLabelRequirement
core.v1.TopologySpreadConstraint 1:maxSkew:i 2:topologyKey:s 3:whenUnsatisfiable:s 4:labelSelector:m:meta.v1.LabelSelector 5:minDomains:i 6:nodeAffinityPolicy:s 7:nodeTaintsPolicy:s 8:matchLabelKeys:rs
core.v1.TypedLocalObjectReference 1:apiGroup:s 2:kind:s 3:name:s
core.v1.TypedObjectReference 1:apiGroup:s 2:kind:s 3:name:s 4:namespace:s
core.v1.Volume 1:name:s 2:-:n:core.v1.VolumeSource
core.v1.VolumeDevice 1:name:s 2:devicePath:s
core.v1.VolumeMount 1:name:s 2:readOnly:b 7:recursiveReadOnly:s 3:mountPath:s 4:subPath:s 5:mountPropagation:s 6:subPathExpr:s
core.v1.VolumeMountStatus 1:name:s 2:mountPath:s 3:readOnly:b 4:recursiveReadOnly:s
core.v1.VolumeNodeAffinity 1:required:m:core.v1.NodeSelector
core.v1.VolumeProjection 1:secret:m:core.v1.SecretProjection 2:downwardAPI:m:core.v1.DownwardAPIProjection 3:configMap:m:core.v1.ConfigMapProjection 4:serviceAccountToken:m:core.v1.ServiceAccountTokenProjection 5:clusterTrustBundle:m:core.v1.ClusterTrustBundleProjection 6:podCertificate:m:core.v1.PodCertificateProjection
core.v1.VolumeResourceRequirements 1:limits:mm:api.resource.Quantity 2:requests:mm:api.resource.Quantity
core.v1.VolumeSource 1:hostPath:m:core.v1.HostPathVolumeSource 2:emptyDir:m:core.v1.EmptyDirVolumeSource 3:gcePersistentDisk:m:core.v1.GcePersistentDiskVolumeSource 4:awsElasticBlockStore:m:core.v1.AwsElasticBlockStoreVolumeSource 5:gitRepo:m:core.v1.GitRepoVolumeSource 6:secret:m:core.v1.SecretVolumeSource 7:nfs:m:core.v1.NfsVolumeSource 8:iscsi:m:core.v1.IscsiVolumeSource 9:glusterfs:m:core.v1.GlusterfsVolumeSource 10:persistentVolumeClaim:m:core.v1.PersistentVolumeClaimVolumeSource 11:rbd:m:core.v1.RbdVolumeSource 12:flexVolume:m:core.v1.FlexVolumeSource 13:cinder:m:core.v1.CinderVolumeSource 14:cephfs:m:core.v1.CephFsVolumeSource 15:flocker:m:core.v1.FlockerVolumeSource 16:downwardApi:m:core.v1.DownwardAPIVolumeSource 17:fc:m:core.v1.FcVolumeSource 18:azureFile:m:core.v1.AzureFileVolumeSource 19:configMap:m:core.v1.ConfigMapVolumeSource 20:vsphereVolume:m:core.v1.VsphereVirtualDiskVolumeSource 21:quobyte:m:core.v1.QuobyteVolumeSource 22:azureDisk:m:core.v1.AzureDiskVolumeSource 23:photonPersistentDisk:m:core.v1.PhotonPersistentDiskVolumeSource 26:projected:m:core.v1.ProjectedVolumeSource 24:portworxVolume:m:core.v1.PortworxVolumeSource 25:scaleIo:m:core.v1.ScaleIoVolumeSource 27:storageos:m:core.v1.StorageOsVolumeSource 28:csi:m:core.v1.CSIVolumeSource 29:ephemeral:m:core.v1.EphemeralVolumeSource 30:image:m:core.v1.ImageVolumeSource
core.v1.VsphereVirtualDiskVolumeSource 1:volumePath:s 2:fsType:s 3:storagePolicyName:s 4:storagePolicyID:s
core.v1.WeightedPodAffinityTerm 1:weight:i 2:podAffinityTerm:m:core.v1.PodAffinityTerm
core.v1.WindowsSecurityContextOptions 1:gmsaCredentialSpecName:s 2:gmsaCredentialSpec:s 3:runAsUserName:s 4:hostProcess:b
core.v1.WorkloadReference 1:name:s 2:podGroup:s 3:podGroupReplicaKey:s
discovery.v1.Endpoint 1:addresses:rs 2:conditions:m:discovery.v1.EndpointConditions 3:hostname:s 4:targetRef:m:core.v1.ObjectReference 5:deprecatedTopology:ms 6:nodeName:s 7:zone:s 8:hints:m:discovery.v1.EndpointHints
discovery.v1.EndpointConditions 1:ready:b 2:serving:b 3:terminating:b
discovery.v1.EndpointHints 1:forZones:rm:discovery.v1.ForZone 2:forNodes:rm:discovery.v1.ForNode
discovery.v1.EndpointPort 1:name:s 2:protocol:s 3:port:i 4:appProtocol:s
discovery.v1.EndpointSlice 1:metadata:m:meta.v1.ObjectMeta 4:addressType:s 2:endpoints:rm:discovery.v1.Endpoint 3:ports:rm:discovery.v1.EndpointPort
discovery.v1.ForNode 1:name:s
discovery.v1.ForZone 1:name:s
events.v1.Event 1:metadata:m:meta.v1.ObjectMeta 2:eventTime:m:meta.v1.MicroTime 3:series:m:events.v1.EventSeries 4:reportingController:s 5:reportingInstance:s 6:action:s 7:reason:s 8:regarding:m:core.v1.ObjectReference 9:related:m:core.v1.ObjectReference 10:note:s 11:type:s 12:deprecatedSource:m:core.v1.EventSource 13:deprecatedFirstTimestamp:m:meta.v1.Time 14:deprecatedLastTimestamp:m:meta.v1.Time 15:deprecatedCount:i
events.v1.EventSeries 1:count:i 2:lastObservedTime:m:meta.v1.MicroTime
networking.v1.HttpIngressPath 1:path:s 3:pathType:s 2:backend:m:networking.v1.IngressBackend
networking.v1.HttpIngressRuleValue 1:paths:rm:networking.v1.HttpIngressPath
networking.v1.Ingress 1:metadata:m:meta.v1.ObjectMeta 2:spec:m:networking.v1.IngressSpec 3:status:m:networking.v1.IngressStatus
networking.v1.IngressBackend 4:service:m:networking.v1.IngressServiceBackend 3:resource:m:core.v1.TypedLocalObjectReference
networking.v1.IngressClass 1:metadata:m:meta.v1.ObjectMeta 2:spec:m:networking.v1.IngressClassSpec
networking.v1.IngressClassParametersReference 1:apiGroup:s 2:kind:s 3:name:s 4:scope:s 5:namespace:s
networking.v1.IngressClassSpec 1:controller:s 2:parameters:m:networking.v1.IngressClassParametersReference
networking.v1.IngressLoadBalancerIngress 1:ip:s 2:hostname:s 4:ports:rm:networking.v1.IngressPortStatus
networking.v1.IngressLoadBalancerStatus 1:ingress:rm:networking.v1.IngressLoadBalancerIngress
networking.v1.IngressPortStatus 1:port:i 2:protocol:s 3:error:s
networking.v1.IngressRule 1:host:s 2:-:n:networking.v1.IngressRuleValue
networking.v1.IngressRuleValue 1:http:m:networking.v1.HttpIngressRuleValue
networking.v1.IngressServiceBackend 1:name:s 2:port:m:networking.v1.ServiceBackendPort
networking.v1.IngressSpec 4:ingressClassName:s 1:defaultBackend:m:networking.v1.IngressBackend 2:tls:rm:networking.v1.IngressTls 3:rules:rm:networking.v1.IngressRule
networking.v1.IngressStatus 1:loadBalancer:m:networking.v1.IngressLoadBalancerStatus
networking.v1.IngressTls 1:hosts:rs 2:secretName:s
networking.v1.IpBlock 1:cidr:s 2:except:rs
networking.v1.NetworkPolicy 1:metadata:m:meta.v1.ObjectMeta 2:spec:m:networking.v1.NetworkPolicySpec
networking.v1.NetworkPolicyEgressRule 1:ports:rm:networking.v1.NetworkPolicyPort 2:to:rm:networking.v1.NetworkPolicyPeer
networking.v1.NetworkPolicyIngressRule 1:ports:rm:networking.v1.NetworkPolicyPort 2:from:rm:networking.v1.NetworkPolicyPeer
networking.v1.NetworkPolicyPeer 1:podSelector:m:meta.v1.LabelSelector 2:namespaceSelector:m:meta.v1.LabelSelector 3:ipBlock:m:networking.v1.IpBlock
networking.v1.NetworkPolicyPort 1:protocol:s 2:port:m:util.intstr.IntOrString 3:endPort:i
networking.v1.NetworkPolicySpec 1:podSelector:m:meta.v1.LabelSelector 2:ingress:rm:networking.v1.NetworkPolicyIngressRule 3:egress:rm:networking.v1.NetworkPolicyEgressRule 4:policyTypes:rs
networking.v1.ServiceBackendPort 1:name:s 2:number:i
node.v1.Overhead 1:podFixed:mm:api.resource.Quantity
node.v1.RuntimeClass 1:metadata:m:meta.v1.ObjectMeta 2:handler:s 3:overhead:m:node.v1.Overhead 4:scheduling:m:node.v1.Scheduling
node.v1.Scheduling 1:nodeSelector:ms 2:tolerations:rm:core.v1.Toleration
policy.v1.Eviction 1:metadata:m:meta.v1.ObjectMeta 2:deleteOptions:m:meta.v1.DeleteOptions
scheduling.v1.PriorityClass 1:metadata:m:meta.v1.ObjectMeta 2:value:i 3:globalDefault:b 4:description:s 5:preemptionPolicy:s
storage.v1.StorageClass 1:metadata:m:meta.v1.ObjectMeta 2:provisioner:s 3:parameters:ms 4:reclaimPolicy:s 5:mountOptions:rs 6:allowVolumeExpansion:b 7:volumeBindingMode:s 8:allowedTopologies:rm:core.v1.TopologySelectorTerm
api.resource.Quantity 1:string:s
meta.v1.Condition 1:type:s 2:status:s 3:observedGeneration:i 4:lastTransitionTime:m:meta.v1.Time 5:reason:s 6:message:s
meta.v1.DeleteOptions 1:gracePeriodSeconds:i 2:preconditions:m:meta.v1.Preconditions 3:orphanDependents:b 4:propagationPolicy:s 5:dryRun:rs 6:ignoreStoreReadErrorWithClusterBreakingPotential:b
meta.v1.FieldsV1 1:raw:y
meta.v1.LabelSelector 1:matchLabels:ms 2:matchExpressions:rm:meta.v1.LabelSelectorRequirement
meta.v1.LabelSelectorRequirement 1:key:s 2:operator:s 3:values:rs
meta.v1.ManagedFieldsEntry 1:manager:s 2:operation:s 3:apiVersion:s 4:time:m:meta.v1.Time 6:fieldsType:s 7:fieldsV1:m:meta.v1.FieldsV1 8:subresource:s
meta.v1.MicroTime 1:seconds:i 2:nanos:i
meta.v1.ObjectMeta 1:name:s 2:generateName:s 3:namespace:s 4:selfLink:s 5:uid:s 6:resourceVersion:s 7:generation:i 8:creationTimestamp:m:meta.v1.Time 9:deletionTimestamp:m:meta.v1.Time 10:deletionGracePeriodSeconds:i 11:labels:ms 12:annotations:ms 13:ownerReferences:rm:meta.v1.OwnerReference 14:finalizers:rs 17:managedFields:rm:meta.v1.ManagedFieldsEntry
meta.v1.OwnerReference 5:apiVersion:s 1:kind:s 3:name:s 4:uid:s 6:controller:b 7:blockOwnerDeletion:b
meta.v1.Preconditions 1:uid:s 2:resourceVersion:s
meta.v1.Time 1:seconds:i 2:nanos:i
runtime.TypeMeta 1:apiVersion:s 2:kind:s
runtime.Unknown 1:typeMeta:m:runtime.TypeMeta 2:raw:y 3:contentEncoding:s 4:contentType:s
util.intstr.IntOrString 1:type:i 2:intVal:i 3:strVal:s
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tag: u32, wire: u8, out: &mut Vec<u8>) {
        put_varint(u64::from(tag << 3 | u32::from(wire)), out);
    }

    fn put_varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn bytes(tag: u32, b: &[u8], out: &mut Vec<u8>) {
        key(tag, 2, out);
        put_varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    fn map_entry(tag: u32, k: &str, v: &[u8], out: &mut Vec<u8>) {
        let mut e = Vec::new();
        bytes(1, k.as_bytes(), &mut e);
        bytes(2, v, &mut e);
        bytes(tag, &e, out);
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut tm = Vec::new();
        bytes(1, api_version.as_bytes(), &mut tm);
        bytes(2, kind.as_bytes(), &mut tm);
        let mut unknown = Vec::new();
        bytes(1, &tm, &mut unknown);
        bytes(2, raw, &mut unknown);
        bytes(3, b"", &mut unknown);
        bytes(4, b"", &mut unknown);
        let mut body = b"k8s\0".to_vec();
        body.extend_from_slice(&unknown);
        body
    }

    /// ObjectMeta as gogo writes it: every non-pointer field, even when empty.
    fn meta(name: &str, namespace: &str) -> Vec<u8> {
        let mut m = Vec::new();
        bytes(1, name.as_bytes(), &mut m);
        bytes(2, b"", &mut m);
        bytes(3, namespace.as_bytes(), &mut m);
        bytes(4, b"", &mut m);
        bytes(5, b"", &mut m);
        bytes(6, b"", &mut m);
        key(7, 0, &mut m);
        put_varint(0, &mut m);
        bytes(8, b"", &mut m);
        map_entry(11, "app", b"web", &mut m);
        m
    }

    #[test]
    fn decodes_a_configmap_like_kubectl_create_sends_it() {
        let mut cm = Vec::new();
        bytes(1, &meta("foo", "default"), &mut cm);
        map_entry(2, "a", b"b", &mut cm);
        map_entry(3, "bin", b"\x00\x01", &mut cm);
        let v = decode(&envelope("v1", "ConfigMap", &cm)).unwrap();
        assert_eq!(
            v,
            json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "foo", "namespace": "default", "labels": {"app": "web"}},
                   "data": {"a": "b"}, "binaryData": {"bin": "AAE="}})
        );
    }

    #[test]
    fn decodes_services_with_int_or_string_and_inline_fields() {
        let mut port = Vec::new();
        bytes(1, b"http", &mut port);
        bytes(2, b"TCP", &mut port);
        key(3, 0, &mut port);
        put_varint(80, &mut port);
        let mut target = Vec::new();
        key(1, 0, &mut target);
        put_varint(0, &mut target);
        key(2, 0, &mut target);
        put_varint(8080, &mut target);
        bytes(3, b"", &mut target);
        bytes(4, &target, &mut port);
        let mut spec = Vec::new();
        bytes(1, &port, &mut spec);
        map_entry(2, "app", b"web", &mut spec);
        bytes(4, b"ClusterIP", &mut spec);
        let mut svc = Vec::new();
        bytes(1, &meta("web", ""), &mut svc);
        bytes(2, &spec, &mut svc);
        bytes(3, &[], &mut svc);
        let v = decode(&envelope("v1", "Service", &svc)).unwrap();
        assert_eq!(
            v["spec"],
            json!({"ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}], "selector": {"app": "web"}, "type": "ClusterIP"})
        );
        assert_eq!(v["status"], json!({}));
        assert!(v["metadata"].get("namespace").is_none());
        assert!(v["metadata"].get("creationTimestamp").is_none());
    }

    #[test]
    fn decodes_times_and_secrets() {
        let mut m = Vec::new();
        bytes(1, b"s", &mut m);
        let mut ts = Vec::new();
        key(1, 0, &mut ts);
        put_varint(1_704_067_200, &mut ts);
        bytes(9, &ts, &mut m);
        let mut s = Vec::new();
        bytes(1, &m, &mut s);
        map_entry(2, "k", b"hello", &mut s);
        bytes(3, b"Opaque", &mut s);
        let v = decode(&envelope("v1", "Secret", &s)).unwrap();
        assert_eq!(v["metadata"]["deletionTimestamp"], "2024-01-01T00:00:00Z");
        assert_eq!(v["data"]["k"], "aGVsbG8=");
        assert_eq!(v["type"], "Opaque");
    }

    #[test]
    fn rejects_bodies_without_the_magic_or_of_unknown_kinds() {
        assert!(decode(b"{}").unwrap_err().contains("expected prefix"));
        assert!(
            decode(&envelope("v1", "Nope", &[]))
                .unwrap_err()
                .contains("no kind \"Nope\"")
        );
        assert!(decode(b"k8s\0\x0a\xff").is_err());
    }

    #[test]
    fn every_schema_reference_resolves() {
        for (name, fs) in schema() {
            for f in fs.values() {
                if !f.message.is_empty() {
                    assert!(
                        schema().contains_key(f.message),
                        "{name}.{} -> {}",
                        f.json,
                        f.message
                    );
                }
            }
        }
    }
}
