//! The Pod Security Standards, evaluated in-process.
//!
//! Every control of the Kubernetes PSS (version `latest` as of v1.32) for the baseline and
//! restricted levels, over regular, init and ephemeral containers alike, worded like the
//! PodSecurity admission (`privileged (container "c" must not set
//! securityContext.privileged=true)`), with the same overrides (at `restricted`, "restricted
//! volume types" replaces "hostPath volumes" and the restricted seccomp control the baseline one).
//!
//! Allowlists are compared exactly, as the admission does: a capability spelled `sys_admin`,
//! `CAP_SYS_ADMIN` or `all` matches nothing on the list, so it is refused when added and does
//! not count as dropping `ALL`. Container runtimes fold case and strip `CAP_`, so any looser
//! comparison here would admit what the runtime then grants; and since the host namespace
//! carries PodSecurity labels too, an object this module admits is one the host admits.

use k8s_openapi::api::core::v1::{
    Capabilities, ContainerPort, Pod, PodSecurityContext, PodSpec, SELinuxOptions, SeccompProfile,
    SecurityContext, Volume,
};

use super::{Level, Violation};

/// Every volume type, by its field name in `spec.volumes[]`.
pub const VOLUME_TYPES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "image",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageos",
    "vsphereVolume",
];

/// The volume types the restricted level allows.
pub const RESTRICTED_VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Capabilities the baseline level lets a container add (the container runtimes' defaults).
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Namespaced sysctls the baseline level allows.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ping_group_range",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_syncookies",
];

/// SELinux types the baseline level allows (besides unset).
const SELINUX_TYPES: &[&str] = &[
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// Rule name → the PodSecurity admission's name for the control, in the admission's order.
const CONTROLS: &[(&str, &str, Level)] = &[
    (
        "pss.allow_privilege_escalation",
        "allowPrivilegeEscalation != false",
        Level::Restricted,
    ),
    (
        "pss.apparmor",
        "forbidden AppArmor profile",
        Level::Baseline,
    ),
    (
        "pss.capabilities_baseline",
        "non-default capabilities",
        Level::Baseline,
    ),
    (
        "pss.capabilities_restricted",
        "unrestricted capabilities",
        Level::Restricted,
    ),
    ("pss.host_namespaces", "host namespaces", Level::Baseline),
    ("pss.host_path_volumes", "hostPath volumes", Level::Baseline),
    ("pss.host_ports", "hostPort", Level::Baseline),
    ("pss.host_process", "hostProcess", Level::Baseline),
    ("pss.privileged", "privileged", Level::Baseline),
    ("pss.proc_mount", "procMount", Level::Baseline),
    (
        "pss.volume_types",
        "restricted volume types",
        Level::Restricted,
    ),
    (
        "pss.run_as_non_root",
        "runAsNonRoot != true",
        Level::Restricted,
    ),
    ("pss.run_as_user", "runAsUser=0", Level::Restricted),
    ("pss.selinux", "seLinuxOptions", Level::Baseline),
    ("pss.seccomp_baseline", "seccompProfile", Level::Baseline),
    (
        "pss.seccomp_restricted",
        "seccompProfile",
        Level::Restricted,
    ),
    ("pss.sysctls", "forbidden sysctls", Level::Baseline),
];

/// The PodSecurity admission's name of a PSS rule's control; `None` for other rules.
pub fn control_name(rule: &str) -> Option<&'static str> {
    CONTROLS.iter().find(|c| c.0 == rule).map(|c| c.1)
}

/// Whether a rule is a control of the restricted level only.
pub fn is_restricted_only(rule: &str) -> bool {
    CONTROLS
        .iter()
        .any(|c| c.0 == rule && c.2 == Level::Restricted)
}

/// Every static rule name this module reports (for pre-registering metric series).
pub fn rules() -> impl Iterator<Item = &'static str> {
    CONTROLS.iter().map(|c| c.0)
}

/// The type of a volume: the name of its one source field, `"unknown"` if none is set.
pub fn volume_type(v: &Volume) -> &'static str {
    let set: [(bool, &'static str); 30] = [
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.azure_file.is_some(), "azureFile"),
        (v.cephfs.is_some(), "cephfs"),
        (v.cinder.is_some(), "cinder"),
        (v.config_map.is_some(), "configMap"),
        (v.csi.is_some(), "csi"),
        (v.downward_api.is_some(), "downwardAPI"),
        (v.empty_dir.is_some(), "emptyDir"),
        (v.ephemeral.is_some(), "ephemeral"),
        (v.fc.is_some(), "fc"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.flocker.is_some(), "flocker"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.host_path.is_some(), "hostPath"),
        (v.image.is_some(), "image"),
        (v.iscsi.is_some(), "iscsi"),
        (v.nfs.is_some(), "nfs"),
        (v.persistent_volume_claim.is_some(), "persistentVolumeClaim"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.projected.is_some(), "projected"),
        (v.quobyte.is_some(), "quobyte"),
        (v.rbd.is_some(), "rbd"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.secret.is_some(), "secret"),
        (v.storageos.is_some(), "storageos"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
    ];
    set.iter()
        .find(|(is, _)| *is)
        .map_or("unknown", |(_, name)| name)
}

/// Whether the PSS `level` already refuses volumes of type `ty` (so the policy's own volume
/// type rule need not report them a second time).
pub fn level_refuses_volume_type(level: Level, ty: &str) -> bool {
    match level {
        Level::Privileged => false,
        Level::Baseline => ty == "hostPath",
        Level::Restricted => !RESTRICTED_VOLUME_TYPES.contains(&ty),
    }
}

/// A regular, init or ephemeral container, as the controls see it.
struct C<'a> {
    name: &'a str,
    /// `spec.containers[0]`, `spec.initContainers[1]`, `spec.ephemeralContainers[0]`.
    path: String,
    sc: Option<&'a SecurityContext>,
    ports: &'a [ContainerPort],
}

impl C<'_> {
    fn sc_path(&self, field: &str) -> String {
        format!("{}.securityContext.{field}", self.path)
    }
}

fn containers(spec: &PodSpec) -> Vec<C<'_>> {
    let mut out = Vec::new();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        out.push(C {
            name: &c.name,
            path: format!("spec.initContainers[{i}]"),
            sc: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
        });
    }
    for (i, c) in spec.containers.iter().enumerate() {
        out.push(C {
            name: &c.name,
            path: format!("spec.containers[{i}]"),
            sc: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
        });
    }
    for (i, c) in spec.ephemeral_containers.iter().flatten().enumerate() {
        out.push(C {
            name: &c.name,
            path: format!("spec.ephemeralContainers[{i}]"),
            sc: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
        });
    }
    out
}

/// `container "a"` / `containers "a", "b"`.
fn containers_phrase(names: &[&str]) -> String {
    let noun = if names.len() == 1 {
        "container"
    } else {
        "containers"
    };
    format!("{noun} {}", join_quote(names))
}

fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(|s| format!("{:?}", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `pod`, `pod and container "a"`, `containers "a", "b"`.
fn setters_phrase(pod: bool, names: &[&str]) -> String {
    match (pod, names.is_empty()) {
        (true, true) => "pod".to_owned(),
        (true, false) => format!("pod and {}", containers_phrase(names)),
        (false, _) => containers_phrase(names),
    }
}

/// Collects the offenders of one control.
#[derive(Default)]
struct Offenders<'a> {
    pod: bool,
    names: Vec<&'a str>,
    fields: Vec<String>,
}

impl<'a> Offenders<'a> {
    fn pod(&mut self, field: &str) {
        self.pod = true;
        self.fields.push(field.to_owned());
    }
    fn container(&mut self, c: &C<'a>, field: String) {
        if !self.names.contains(&c.name) {
            self.names.push(c.name);
        }
        self.fields.push(field);
    }
    fn any(&self) -> bool {
        !self.fields.is_empty()
    }
    fn field(&self) -> String {
        self.fields.join(", ")
    }
}

/// Check a pod against the Pod Security Standards of `level`: every failed control, in the
/// admission's order; empty when the pod passes.
pub fn check(level: Level, pod: &Pod) -> Vec<Violation> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    if level == Level::Privileged {
        return Vec::new();
    }
    let restricted = level == Level::Restricted;
    let cs = containers(spec);
    let psc = spec.security_context.as_ref();
    // The restricted controls that predate the pod OS field exempt Windows pods, as upstream.
    let windows = spec
        .os
        .as_ref()
        .is_some_and(|os| os.name.eq_ignore_ascii_case("windows"));
    let mut out = Vec::new();

    if restricted && !windows {
        allow_privilege_escalation(&cs, &mut out);
    }
    apparmor(pod, psc, &cs, &mut out);
    capabilities_baseline(&cs, &mut out);
    if restricted && !windows {
        capabilities_restricted(&cs, &mut out);
    }
    host_namespaces(spec, &mut out);
    if !restricted {
        host_path_volumes(spec, &mut out);
    }
    host_ports(&cs, &mut out);
    host_process(psc, &cs, &mut out);
    privileged(&cs, &mut out);
    proc_mount(&cs, &mut out);
    if restricted {
        restricted_volumes(spec, &mut out);
        run_as_non_root(psc, &cs, &mut out);
        run_as_user(psc, &cs, &mut out);
    }
    selinux(psc, &cs, &mut out);
    if restricted {
        if !windows {
            seccomp_restricted(psc, &cs, &mut out);
        } else {
            seccomp_baseline(psc, &cs, &mut out);
        }
    } else {
        seccomp_baseline(psc, &cs, &mut out);
    }
    sysctls(psc, &mut out);
    out
}

fn allow_privilege_escalation(cs: &[C<'_>], out: &mut Vec<Violation>) {
    let mut bad = Offenders::default();
    for c in cs {
        if c.sc.and_then(|s| s.allow_privilege_escalation) != Some(false) {
            bad.container(c, c.sc_path("allowPrivilegeEscalation"));
        }
    }
    if bad.any() {
        out.push(Violation::new(
            "pss.allow_privilege_escalation",
            bad.field(),
            format!(
                "{} must set securityContext.allowPrivilegeEscalation=false",
                containers_phrase(&bad.names)
            ),
        ));
    }
}

fn apparmor_ok(t: &str) -> bool {
    matches!(t, "RuntimeDefault" | "Localhost")
}

fn apparmor(pod: &Pod, psc: Option<&PodSecurityContext>, cs: &[C<'_>], out: &mut Vec<Violation>) {
    let mut bad = Offenders::default();
    let mut bad_types = Vec::new();
    if let Some(p) = psc.and_then(|s| s.app_armor_profile.as_ref())
        && !apparmor_ok(&p.type_)
    {
        bad.pod("spec.securityContext.appArmorProfile.type");
        bad_types.push(p.type_.clone());
    }
    for c in cs {
        if let Some(p) = c.sc.and_then(|s| s.app_armor_profile.as_ref())
            && !apparmor_ok(&p.type_)
        {
            bad.container(c, c.sc_path("appArmorProfile.type"));
            bad_types.push(p.type_.clone());
        }
    }
    let mut details = Vec::new();
    let mut fields = bad.fields.clone();
    for (k, v) in pod.metadata.annotations.iter().flatten() {
        if k.starts_with(APPARMOR_ANNOTATION_PREFIX)
            && !(v.is_empty() || v == "runtime/default" || v.starts_with("localhost/"))
        {
            details.push(format!("{k}={v:?}"));
            fields.push(format!("metadata.annotations[{k:?}]"));
        }
    }
    if bad.any() {
        bad_types.sort();
        bad_types.dedup();
        details.push(format!(
            "{} must not set securityContext.appArmorProfile.type to {}",
            setters_phrase(bad.pod, &bad.names),
            join_quote(&bad_types)
        ));
    }
    if !details.is_empty() {
        out.push(Violation::new(
            "pss.apparmor",
            fields.join(", "),
            details.join(", "),
        ));
    }
}

/// A hint for capability names that are not upper case without `CAP_`, since the lists are
/// compared exactly.
fn capability_spelling_hint(names: &[String]) -> &'static str {
    let odd = names
        .iter()
        .any(|n| n.to_ascii_uppercase() != *n || n.to_ascii_uppercase().starts_with("CAP_"));
    if odd {
        " (capability names are compared exactly: upper case, without the CAP_ prefix)"
    } else {
        ""
    }
}

fn caps<'a>(c: &C<'a>) -> Option<&'a Capabilities> {
    c.sc.and_then(|s| s.capabilities.as_ref())
}

fn capabilities_baseline(cs: &[C<'_>], out: &mut Vec<Violation>) {
    let mut bad = Offenders::default();
    let mut forbidden: Vec<String> = Vec::new();
    for c in cs {
        for (i, cap) in caps(c)
            .and_then(|k| k.add.as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            if !BASELINE_CAPABILITIES.contains(&cap.as_str()) {
                bad.container(c, c.sc_path(&format!("capabilities.add[{i}]")));
                forbidden.push(cap.clone());
            }
        }
    }
    if bad.any() {
        forbidden.sort();
        forbidden.dedup();
        out.push(Violation::new(
            "pss.capabilities_baseline",
            bad.field(),
            format!(
                "{} must not include {} in securityContext.capabilities.add{}",
                containers_phrase(&bad.names),
                join_quote(&forbidden),
                capability_spelling_hint(&forbidden)
            ),
        ));
    }
}

fn capabilities_restricted(cs: &[C<'_>], out: &mut Vec<Violation>) {
    let mut missing_drop = Offenders::default();
    let mut adding = Offenders::default();
    let mut forbidden: Vec<String> = Vec::new();
    let mut dropped_spellings: Vec<String> = Vec::new();
    for c in cs {
        let k = caps(c);
        let drops = k.and_then(|k| k.drop.as_ref());
        if !drops.is_some_and(|d| d.iter().any(|x| x == "ALL")) {
            missing_drop.container(c, c.sc_path("capabilities.drop"));
            dropped_spellings.extend(drops.into_iter().flatten().cloned());
        }
        for (i, cap) in k
            .and_then(|k| k.add.as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            if cap != "NET_BIND_SERVICE" {
                adding.container(c, c.sc_path(&format!("capabilities.add[{i}]")));
                forbidden.push(cap.clone());
            }
        }
    }
    let mut details = Vec::new();
    if missing_drop.any() {
        let near_miss = dropped_spellings
            .iter()
            .any(|d| d.trim().eq_ignore_ascii_case("ALL") || d.eq_ignore_ascii_case("CAP_ALL"));
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]{}",
            containers_phrase(&missing_drop.names),
            if near_miss {
                " (exactly \"ALL\": other spellings are not recognised)"
            } else {
                ""
            }
        ));
    }
    if adding.any() {
        forbidden.sort();
        forbidden.dedup();
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add{}",
            containers_phrase(&adding.names),
            join_quote(&forbidden),
            capability_spelling_hint(&forbidden)
        ));
    }
    if !details.is_empty() {
        let mut fields = missing_drop.fields;
        fields.extend(adding.fields);
        out.push(Violation::new(
            "pss.capabilities_restricted",
            fields.join(", "),
            details.join("; "),
        ));
    }
}

fn host_namespaces(spec: &PodSpec, out: &mut Vec<Violation>) {
    let mut set = Vec::new();
    let mut fields = Vec::new();
    for (on, name) in [
        (spec.host_network, "hostNetwork"),
        (spec.host_pid, "hostPID"),
        (spec.host_ipc, "hostIPC"),
    ] {
        if on == Some(true) {
            set.push(format!("{name}=true"));
            fields.push(format!("spec.{name}"));
        }
    }
    if !set.is_empty() {
        out.push(Violation::new(
            "pss.host_namespaces",
            fields.join(", "),
            set.join(", "),
        ));
    }
}

fn volumes_phrase(names: &[&str]) -> String {
    let noun = if names.len() == 1 {
        "volume"
    } else {
        "volumes"
    };
    format!("{noun} {}", join_quote(names))
}

fn host_path_volumes(spec: &PodSpec, out: &mut Vec<Violation>) {
    let mut names = Vec::new();
    let mut fields = Vec::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        if v.host_path.is_some() {
            names.push(v.name.as_str());
            fields.push(format!("spec.volumes[{i}].hostPath"));
        }
    }
    if !names.is_empty() {
        out.push(Violation::new(
            "pss.host_path_volumes",
            fields.join(", "),
            volumes_phrase(&names),
        ));
    }
}

fn host_ports(cs: &[C<'_>], out: &mut Vec<Violation>) {
    let mut bad = Offenders::default();
    let mut ports = Vec::new();
    for c in cs {
        for (i, p) in c.ports.iter().enumerate() {
            if let Some(hp) = p.host_port
                && hp != 0
            {
                bad.container(c, format!("{}.ports[{i}].hostPort", c.path));
                ports.push(hp.to_string());
            }
        }
    }
    if bad.any() {
        let (verb, noun) = if bad.names.len() == 1 && ports.len() == 1 {
            ("uses", "hostPort")
        } else if bad.names.len() == 1 {
            ("uses", "hostPorts")
        } else {
            ("use", "hostPorts")
        };
        out.push(Violation::new(
            "pss.host_ports",
            bad.field(),
            format!(
                "{} {verb} {noun} {}",
                containers_phrase(&bad.names),
                ports.join(", ")
            ),
        ));
    }
}

fn host_process(psc: Option<&PodSecurityContext>, cs: &[C<'_>], out: &mut Vec<Violation>) {
    let mut bad = Offenders::default();
    if psc
        .and_then(|s| s.windows_options.as_ref())
        .and_then(|w| w.host_process)
        == Some(true)
    {
        bad.pod("spec.securityContext.windowsOptions.hostProcess");
    }
    for c in cs {
        if c.sc
            .and_then(|s| s.windows_options.as_ref())
            .and_then(|w| w.host_process)
            == Some(true)
        {
            bad.container(c, c.sc_path("windowsOptions.hostProcess"));
        }
    }
    if bad.any() {
        out.push(Violation::new(
            "pss.host_process",
            bad.field(),
            format!(
                "{} must not set securityContext.windowsOptions.hostProcess=true",
                setters_phrase(bad.pod, &bad.names)
            ),
        ));
    }
}

fn privileged(cs: &[C<'_>], out: &mut Vec<Violation>) {
    let mut bad = Offenders::default();
    for c in cs {
        if c.sc.and_then(|s| s.privileged) == Some(true) {
            bad.container(c, c.sc_path("privileged"));
        }
    }
    if bad.any() {
        out.push(Violation::new(
            "pss.privileged",
            bad.field(),
            format!(
                "{} must not set securityContext.privileged=true",
                containers_phrase(&bad.names)
            ),
        ));
    }
}

fn proc_mount(cs: &[C<'_>], out: &mut Vec<Violation>) {
    let mut bad = Offenders::default();
    let mut values = Vec::new();
    for c in cs {
        if let Some(pm) = c.sc.and_then(|s| s.proc_mount.as_deref())
            && pm != "Default"
        {
            bad.container(c, c.sc_path("procMount"));
            values.push(pm.to_owned());
        }
    }
    if bad.any() {
        values.sort();
        values.dedup();
        out.push(Violation::new(
            "pss.proc_mount",
            bad.field(),
            format!(
                "{} must not set securityContext.procMount to {}",
                containers_phrase(&bad.names),
                join_quote(&values)
            ),
        ));
    }
}

fn restricted_volumes(spec: &PodSpec, out: &mut Vec<Violation>) {
    let mut names = Vec::new();
    let mut types: Vec<&str> = Vec::new();
    let mut fields = Vec::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let ty = volume_type(v);
        if !RESTRICTED_VOLUME_TYPES.contains(&ty) {
            names.push(v.name.as_str());
            fields.push(format!("spec.volumes[{i}]"));
            if !types.contains(&ty) {
                types.push(ty);
            }
        }
    }
    if !names.is_empty() {
        types.sort();
        let (verb, noun) = if names.len() == 1 {
            ("uses", "type")
        } else {
            ("use", "types")
        };
        let noun = if types.len() > 1 { "types" } else { noun };
        out.push(Violation::new(
            "pss.volume_types",
            fields.join(", "),
            format!(
                "{} {verb} restricted volume {noun} {}",
                volumes_phrase(&names),
                join_quote(&types)
            ),
        ));
    }
}

fn run_as_non_root(psc: Option<&PodSecurityContext>, cs: &[C<'_>], out: &mut Vec<Violation>) {
    let pod_value = psc.and_then(|s| s.run_as_non_root);
    let mut explicit = Offenders::default();
    let mut implicit = Offenders::default();
    if pod_value == Some(false) {
        explicit.pod("spec.securityContext.runAsNonRoot");
    }
    for c in cs {
        // The container's own value wins over the pod's.
        match c.sc.and_then(|s| s.run_as_non_root) {
            Some(false) => explicit.container(c, c.sc_path("runAsNonRoot")),
            Some(true) => {}
            None if pod_value == Some(true) => {}
            None => implicit.container(c, c.sc_path("runAsNonRoot")),
        }
    }
    if explicit.any() {
        out.push(Violation::new(
            "pss.run_as_non_root",
            explicit.field(),
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters_phrase(explicit.pod, &explicit.names)
            ),
        ));
    } else if implicit.any() {
        out.push(Violation::new(
            "pss.run_as_non_root",
            implicit.field(),
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicit.names)
            ),
        ));
    }
}

fn run_as_user(psc: Option<&PodSecurityContext>, cs: &[C<'_>], out: &mut Vec<Violation>) {
    let mut bad = Offenders::default();
    if psc.and_then(|s| s.run_as_user) == Some(0) {
        bad.pod("spec.securityContext.runAsUser");
    }
    for c in cs {
        if c.sc.and_then(|s| s.run_as_user) == Some(0) {
            bad.container(c, c.sc_path("runAsUser"));
        }
    }
    if bad.any() {
        out.push(Violation::new(
            "pss.run_as_user",
            bad.field(),
            format!(
                "{} must not set runAsUser=0",
                setters_phrase(bad.pod, &bad.names)
            ),
        ));
    }
}

fn selinux_problems(o: &SELinuxOptions, acc: &mut Vec<String>) -> bool {
    let mut bad = false;
    if let Some(t) = o.type_.as_deref()
        && !t.is_empty()
        && !SELINUX_TYPES.contains(&t)
    {
        acc.push(format!("type {t:?}"));
        bad = true;
    }
    if let Some(u) = o.user.as_deref()
        && !u.is_empty()
    {
        acc.push(format!("user {u:?}"));
        bad = true;
    }
    if let Some(r) = o.role.as_deref()
        && !r.is_empty()
    {
        acc.push(format!("role {r:?}"));
        bad = true;
    }
    bad
}

fn selinux(psc: Option<&PodSecurityContext>, cs: &[C<'_>], out: &mut Vec<Violation>) {
    let mut bad = Offenders::default();
    let mut problems = Vec::new();
    if let Some(o) = psc.and_then(|s| s.se_linux_options.as_ref())
        && selinux_problems(o, &mut problems)
    {
        bad.pod("spec.securityContext.seLinuxOptions");
    }
    for c in cs {
        if let Some(o) = c.sc.and_then(|s| s.se_linux_options.as_ref())
            && selinux_problems(o, &mut problems)
        {
            bad.container(c, c.sc_path("seLinuxOptions"));
        }
    }
    if bad.any() {
        problems.sort();
        problems.dedup();
        out.push(Violation::new(
            "pss.selinux",
            bad.field(),
            format!(
                "{} set forbidden securityContext.seLinuxOptions: {}",
                setters_phrase(bad.pod, &bad.names),
                problems.join("; ")
            ),
        ));
    }
}

fn seccomp_type(p: Option<&SeccompProfile>) -> Option<&str> {
    p.map(|p| p.type_.as_str())
}

fn seccomp_baseline(psc: Option<&PodSecurityContext>, cs: &[C<'_>], out: &mut Vec<Violation>) {
    let mut bad = Offenders::default();
    if seccomp_type(psc.and_then(|s| s.seccomp_profile.as_ref())) == Some("Unconfined") {
        bad.pod("spec.securityContext.seccompProfile.type");
    }
    for c in cs {
        if seccomp_type(c.sc.and_then(|s| s.seccomp_profile.as_ref())) == Some("Unconfined") {
            bad.container(c, c.sc_path("seccompProfile.type"));
        }
    }
    if bad.any() {
        out.push(Violation::new(
            "pss.seccomp_baseline",
            bad.field(),
            format!(
                "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
                setters_phrase(bad.pod, &bad.names)
            ),
        ));
    }
}

fn seccomp_restricted(psc: Option<&PodSecurityContext>, cs: &[C<'_>], out: &mut Vec<Violation>) {
    let good = |t: &str| matches!(t, "RuntimeDefault" | "Localhost");
    let pod_type = seccomp_type(psc.and_then(|s| s.seccomp_profile.as_ref()));
    let mut explicit = Offenders::default();
    let mut implicit = Offenders::default();
    let mut bad_values = Vec::new();
    if let Some(t) = pod_type
        && !good(t)
    {
        explicit.pod("spec.securityContext.seccompProfile.type");
        bad_values.push(t.to_owned());
    }
    let pod_ok = pod_type.is_some_and(good);
    for c in cs {
        match seccomp_type(c.sc.and_then(|s| s.seccomp_profile.as_ref())) {
            Some(t) if !good(t) => {
                explicit.container(c, c.sc_path("seccompProfile.type"));
                bad_values.push(t.to_owned());
            }
            Some(_) => {}
            None if pod_ok => {}
            None => implicit.container(c, c.sc_path("seccompProfile.type")),
        }
    }
    if explicit.any() {
        bad_values.sort();
        bad_values.dedup();
        out.push(Violation::new(
            "pss.seccomp_restricted",
            explicit.field(),
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters_phrase(explicit.pod, &explicit.names),
                join_quote(&bad_values)
            ),
        ));
    } else if implicit.any() {
        out.push(Violation::new(
            "pss.seccomp_restricted",
            implicit.field(),
            format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&implicit.names)
            ),
        ));
    }
}

fn sysctls(psc: Option<&PodSecurityContext>, out: &mut Vec<Violation>) {
    let mut names = Vec::new();
    let mut fields = Vec::new();
    for (i, s) in psc
        .and_then(|s| s.sysctls.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        if !SAFE_SYSCTLS.contains(&s.name.as_str()) {
            names.push(s.name.clone());
            fields.push(format!("spec.securityContext.sysctls[{i}].name"));
        }
    }
    if !names.is_empty() {
        out.push(Violation::new(
            "pss.sysctls",
            fields.join(", "),
            names.join(", "),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::{Value, json};

    fn pod(spec: Value) -> Pod {
        pod_with(json!({"name": "p", "namespace": "default"}), spec)
    }

    fn pod_with(meta: Value, spec: Value) -> Pod {
        serde_json::from_value(json!({"metadata": meta, "spec": spec})).expect("valid pod")
    }

    /// A pod that passes `restricted`; cases change one thing.
    fn hardened() -> Value {
        json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "i", "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]}
            }}],
            "volumes": [{"name": "cfg", "configMap": {"name": "x"}}]
        })
    }

    /// Merge `patch` into `base` (objects recursively; anything else replaced).
    fn merge(base: &mut Value, patch: Value) {
        match (base, patch) {
            (Value::Object(b), Value::Object(p)) => {
                for (k, v) in p {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
            (b, p) => *b = p,
        }
    }

    fn hardened_with(patch: Value) -> Pod {
        let mut spec = hardened();
        merge(&mut spec, patch);
        pod(spec)
    }

    fn rules(level: Level, p: &Pod) -> Vec<&'static str> {
        check(level, p).into_iter().map(|v| v.rule).collect()
    }

    #[test]
    fn hardened_pod_passes_every_level() {
        for level in [Level::Privileged, Level::Baseline, Level::Restricted] {
            assert_eq!(check(level, &pod(hardened())), vec![], "{level:?}");
        }
    }

    #[test]
    fn minimal_pod_passes_baseline_but_not_restricted() {
        let p = pod(json!({"containers": [{"name": "c", "image": "i"}]}));
        assert!(check(Level::Baseline, &p).is_empty());
        assert_eq!(
            rules(Level::Restricted, &p),
            vec![
                "pss.allow_privilege_escalation",
                "pss.capabilities_restricted",
                "pss.run_as_non_root",
                "pss.seccomp_restricted"
            ]
        );
    }

    /// Each baseline control: a refused case and, where the control has one, a close allowed
    /// case; checked at both baseline and restricted (baseline controls apply to both).
    #[rstest]
    // host namespaces
    #[case::host_network(json!({"hostNetwork": true}), Some(("pss.host_namespaces", "hostNetwork=true")))]
    #[case::host_pid_ipc(json!({"hostPID": true, "hostIPC": true}), Some(("pss.host_namespaces", "hostPID=true, hostIPC=true")))]
    #[case::host_network_false(json!({"hostNetwork": false, "hostPID": false}), None)]
    // privileged
    #[case::privileged(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"privileged": true, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}), Some(("pss.privileged", "container \"c\" must not set securityContext.privileged=true")))]
    #[case::privileged_false(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"privileged": false, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}), None)]
    #[case::privileged_init(json!({"initContainers": [{"name": "init", "image": "i", "securityContext": {"privileged": true, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}), Some(("pss.privileged", "container \"init\" must not set securityContext.privileged=true")))]
    #[case::privileged_ephemeral(json!({"ephemeralContainers": [{"name": "debug", "image": "i", "securityContext": {"privileged": true, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}), Some(("pss.privileged", "container \"debug\" must not set securityContext.privileged=true")))]
    // capabilities (baseline)
    #[case::cap_sys_admin(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}}]}), Some(("pss.capabilities_baseline", "container \"c\" must not include \"SYS_ADMIN\" in securityContext.capabilities.add")))]
    #[case::cap_lower_case(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["sys_admin"]}}}]}), Some(("pss.capabilities_baseline", "\"sys_admin\"")))]
    #[case::cap_prefixed(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["CAP_SYS_ADMIN"]}}}]}), Some(("pss.capabilities_baseline", "without the CAP_ prefix")))]
    #[case::cap_add_all(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["ALL"]}}}]}), Some(("pss.capabilities_baseline", "\"ALL\"")))]
    #[case::cap_add_all_lower(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["all"]}}}]}), Some(("pss.capabilities_baseline", "\"all\"")))]
    #[case::cap_ephemeral(json!({"ephemeralContainers": [{"name": "dbg", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["SYS_PTRACE"]}}}]}), Some(("pss.capabilities_baseline", "container \"dbg\" must not include \"SYS_PTRACE\"")))]
    // hostPath volumes (reported as restricted volume types at restricted)
    #[case::host_path(json!({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}), Some(("pss.host_path_volumes", "volume \"h\"")))]
    // host ports
    #[case::host_port(json!({"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}], "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}), Some(("pss.host_ports", "container \"c\" uses hostPort 8080")))]
    #[case::host_port_zero(json!({"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 0}], "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}), None)]
    // hostProcess
    #[case::host_process_pod(json!({"securityContext": {"windowsOptions": {"hostProcess": true}}}), Some(("pss.host_process", "pod must not set securityContext.windowsOptions.hostProcess=true")))]
    #[case::host_process_container(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"windowsOptions": {"hostProcess": true}, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}), Some(("pss.host_process", "container \"c\" must not set")))]
    // AppArmor
    #[case::apparmor_pod(json!({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}}), Some(("pss.apparmor", "pod must not set securityContext.appArmorProfile.type to \"Unconfined\"")))]
    #[case::apparmor_container(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"appArmorProfile": {"type": "Unconfined"}, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}), Some(("pss.apparmor", "container \"c\" must not set")))]
    #[case::apparmor_runtime_default(json!({"securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}}}), None)]
    #[case::apparmor_localhost(json!({"securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "p"}}}), None)]
    // SELinux
    #[case::selinux_spc(json!({"securityContext": {"seLinuxOptions": {"type": "spc_t"}}}), Some(("pss.selinux", "pod set forbidden securityContext.seLinuxOptions: type \"spc_t\"")))]
    #[case::selinux_user_role(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"seLinuxOptions": {"user": "system_u", "role": "system_r"}, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}), Some(("pss.selinux", "role \"system_r\"; user \"system_u\"")))]
    #[case::selinux_container_t(json!({"securityContext": {"seLinuxOptions": {"type": "container_t", "level": "s0:c1,c2"}}}), None)]
    #[case::selinux_engine_t(json!({"securityContext": {"seLinuxOptions": {"type": "container_engine_t"}}}), None)]
    // /proc mount
    #[case::proc_unmasked(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"procMount": "Unmasked", "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}), Some(("pss.proc_mount", "container \"c\" must not set securityContext.procMount to \"Unmasked\"")))]
    #[case::proc_default(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"procMount": "Default", "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}), None)]
    // sysctls
    #[case::sysctl_unsafe(json!({"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.tcp_syncookies", "value": "1"}]}}), Some(("pss.sysctls", "kernel.msgmax")))]
    #[case::sysctl_slash_spelling(json!({"securityContext": {"sysctls": [{"name": "net/ipv4/ip_forward", "value": "1"}]}}), Some(("pss.sysctls", "net/ipv4/ip_forward")))]
    #[case::sysctl_safe(json!({"securityContext": {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}, {"name": "net.ipv4.tcp_keepalive_time", "value": "60"}]}}), None)]
    fn baseline_controls(#[case] patch: Value, #[case] want: Option<(&str, &str)>) {
        for level in [Level::Baseline, Level::Restricted] {
            let p = hardened_with(patch.clone());
            let mut got = check(level, &p);
            // At restricted, an added capability also fails "unrestricted capabilities"
            // (upstream reports both); that control has its own cases.
            got.retain(|v| v.rule != "pss.capabilities_restricted");
            let mut want = want;
            // At restricted, "restricted volume types" replaces "hostPath volumes".
            if level == Level::Restricted && want.is_some_and(|w| w.0 == "pss.host_path_volumes") {
                want = Some((
                    "pss.volume_types",
                    "volume \"h\" uses restricted volume type \"hostPath\"",
                ));
            }
            match want {
                None => assert_eq!(got, vec![], "{level:?}"),
                Some((rule, detail)) => {
                    assert_eq!(got.len(), 1, "{level:?}: {got:?}");
                    assert_eq!(got[0].rule, rule, "{level:?}: {got:?}");
                    assert!(
                        got[0].message.contains(detail),
                        "{level:?}: {}",
                        got[0].message
                    );
                }
            }
            assert!(check(Level::Privileged, &p).is_empty());
        }
    }

    #[rstest]
    #[case::annotation_unconfined("unconfined", true)]
    #[case::annotation_runtime_default("runtime/default", false)]
    #[case::annotation_localhost("localhost/my-profile", false)]
    fn apparmor_annotations(#[case] value: &str, #[case] refused: bool) {
        let p = pod_with(
            json!({"name": "p", "annotations": {"container.apparmor.security.beta.kubernetes.io/c": value}}),
            hardened(),
        );
        let got = check(Level::Baseline, &p);
        assert_eq!(!got.is_empty(), refused, "{got:?}");
        if refused {
            assert_eq!(
                got[0].message,
                "container.apparmor.security.beta.kubernetes.io/c=\"unconfined\""
            );
        }
    }

    /// Each restricted-only control: refused at restricted, passes baseline.
    #[rstest]
    // volume types
    #[case::nfs(json!({"volumes": [{"name": "n", "nfs": {"server": "10.0.0.1", "path": "/"}}]}), Some(("pss.volume_types", "volume \"n\" uses restricted volume type \"nfs\"")))]
    #[case::two_types(json!({"volumes": [{"name": "n", "nfs": {"server": "s", "path": "/"}}, {"name": "g", "gitRepo": {"repository": "r"}}]}), Some(("pss.volume_types", "volumes \"n\", \"g\" use restricted volume types \"gitRepo\", \"nfs\"")))]
    #[case::unknown_volume(json!({"volumes": [{"name": "u"}]}), Some(("pss.volume_types", "\"unknown\"")))]
    #[case::allowed_volumes(json!({"volumes": [{"name": "a", "emptyDir": {}}, {"name": "b", "secret": {"secretName": "s"}}, {"name": "c", "persistentVolumeClaim": {"claimName": "d"}}, {"name": "e", "projected": {"sources": []}}, {"name": "f", "downwardAPI": {}}, {"name": "g", "csi": {"driver": "d"}}, {"name": "h", "ephemeral": {}}]}), None)]
    // privilege escalation
    #[case::ape_unset(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"capabilities": {"drop": ["ALL"]}}}]}), Some(("pss.allow_privilege_escalation", "container \"c\" must set securityContext.allowPrivilegeEscalation=false")))]
    #[case::ape_true(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"allowPrivilegeEscalation": true, "capabilities": {"drop": ["ALL"]}}}]}), Some(("pss.allow_privilege_escalation", "container \"c\"")))]
    // runAsNonRoot and its pod/container precedence
    #[case::non_root_pod_false(json!({"securityContext": {"runAsNonRoot": false}}), Some(("pss.run_as_non_root", "pod must not set securityContext.runAsNonRoot=false")))]
    #[case::non_root_container_false_overrides_pod_true(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"runAsNonRoot": false, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}), Some(("pss.run_as_non_root", "container \"c\" must not set securityContext.runAsNonRoot=false")))]
    #[case::non_root_unset_everywhere(json!({"securityContext": {"runAsNonRoot": null}}), Some(("pss.run_as_non_root", "pod or container \"c\" must set securityContext.runAsNonRoot=true")))]
    #[case::non_root_container_true_without_pod(json!({"securityContext": {"runAsNonRoot": null}, "containers": [{"name": "c", "image": "i", "securityContext": {"runAsNonRoot": true, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}), None)]
    #[case::non_root_pod_false_container_true(json!({"securityContext": {"runAsNonRoot": false}, "containers": [{"name": "c", "image": "i", "securityContext": {"runAsNonRoot": true, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}), Some(("pss.run_as_non_root", "pod must not set securityContext.runAsNonRoot=false")))]
    // runAsUser
    #[case::run_as_root_pod(json!({"securityContext": {"runAsUser": 0}}), Some(("pss.run_as_user", "pod must not set runAsUser=0")))]
    #[case::run_as_root_container(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}), Some(("pss.run_as_user", "container \"c\" must not set runAsUser=0")))]
    #[case::run_as_root_pod_overridden(json!({"securityContext": {"runAsUser": 0}, "containers": [{"name": "c", "image": "i", "securityContext": {"runAsUser": 1000, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}), Some(("pss.run_as_user", "pod must not set runAsUser=0")))]
    #[case::run_as_user_1000(json!({"securityContext": {"runAsUser": 1000}}), None)]
    // seccomp and its precedence
    #[case::seccomp_unset(json!({"securityContext": {"seccompProfile": null}}), Some(("pss.seccomp_restricted", "pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"")))]
    #[case::seccomp_container_only(json!({"securityContext": {"seccompProfile": null}, "containers": [{"name": "c", "image": "i", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}), None)]
    #[case::seccomp_container_unconfined_overrides_pod(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"seccompProfile": {"type": "Unconfined"}, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}), Some(("pss.seccomp_restricted", "container \"c\" must not set securityContext.seccompProfile.type to \"Unconfined\"")))]
    // capabilities (restricted)
    #[case::drop_missing(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["NET_RAW"]}}}]}), Some(("pss.capabilities_restricted", "container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]")))]
    #[case::drop_all_lower(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["all"]}}}]}), Some(("pss.capabilities_restricted", "exactly \"ALL\"")))]
    #[case::drop_all_mixed(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["All"]}}}]}), Some(("pss.capabilities_restricted", "exactly \"ALL\"")))]
    #[case::drop_cap_all(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["CAP_ALL"]}}}]}), Some(("pss.capabilities_restricted", "exactly \"ALL\"")))]
    #[case::drop_all_padded(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": [" ALL"]}}}]}), Some(("pss.capabilities_restricted", "exactly \"ALL\"")))]
    #[case::add_net_bind(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]}), None)]
    #[case::add_net_bind_lower(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["net_bind_service"]}}}]}), Some(("pss.capabilities_restricted", "must not include \"net_bind_service\"")))]
    #[case::add_chown(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}}]}), Some(("pss.capabilities_restricted", "must not include \"CHOWN\"")))]
    #[case::init_missing_drop(json!({"initContainers": [{"name": "init", "image": "i", "securityContext": {"allowPrivilegeEscalation": false}}]}), Some(("pss.capabilities_restricted", "container \"init\"")))]
    #[case::ephemeral_missing_everything(json!({"ephemeralContainers": [{"name": "dbg", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": false}}]}), Some(("pss.run_as_non_root", "container \"dbg\"")))]
    fn restricted_controls(#[case] patch: Value, #[case] want: Option<(&str, &str)>) {
        let p = hardened_with(patch);
        let mut got = check(Level::Restricted, &p);
        // A non-default added capability fails the baseline control too (upstream reports both).
        if want.is_some_and(|w| w.0 == "pss.capabilities_restricted") {
            got.retain(|v| v.rule != "pss.capabilities_baseline");
        }
        match want {
            None => assert_eq!(got, vec![]),
            Some((rule, detail)) => {
                assert_eq!(got.len(), 1, "{got:?}");
                assert_eq!(got[0].rule, rule, "{got:?}");
                assert!(got[0].message.contains(detail), "{}", got[0].message);
            }
        }
        // Restricted-only controls never fire at baseline; a few cases also break baseline.
        let baseline_rules = rules(Level::Baseline, &p);
        assert!(
            baseline_rules.iter().all(|r| !is_restricted_only(r)),
            "{baseline_rules:?}"
        );
    }

    #[test]
    fn seccomp_unconfined_is_refused_at_baseline_on_pod_and_container() {
        let p = hardened_with(json!({
            "securityContext": {"seccompProfile": {"type": "Unconfined"}},
            "containers": [{"name": "c", "image": "i", "securityContext": {"seccompProfile": {"type": "Unconfined"}}}]
        }));
        let got = check(Level::Baseline, &p);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].rule, "pss.seccomp_baseline");
        assert_eq!(
            got[0].message,
            "pod and container \"c\" must not set securityContext.seccompProfile.type to \"Unconfined\""
        );
        assert_eq!(
            got[0].field,
            "spec.securityContext.seccompProfile.type, spec.containers[0].securityContext.seccompProfile.type"
        );
    }

    #[test]
    fn every_failed_control_is_reported_in_admission_order() {
        let p = pod(json!({
            "hostNetwork": true,
            "containers": [
                {"name": "a", "image": "i", "securityContext": {"privileged": true}, "ports": [{"containerPort": 1, "hostPort": 1}]},
                {"name": "b", "image": "i", "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN"]}}}
            ],
            "volumes": [{"name": "h", "hostPath": {"path": "/etc"}}]
        }));
        let got = check(Level::Baseline, &p);
        let shown: Vec<String> = got.iter().map(|v| v.to_string()).collect();
        assert_eq!(
            shown,
            vec![
                "non-default capabilities (container \"b\" must not include \"NET_ADMIN\" in securityContext.capabilities.add)",
                "host namespaces (hostNetwork=true)",
                "hostPath volumes (volume \"h\")",
                "hostPort (container \"a\" uses hostPort 1)",
                "privileged (containers \"a\", \"b\" must not set securityContext.privileged=true)",
            ]
        );
    }

    #[test]
    fn an_added_capability_fails_both_capability_controls_at_restricted() {
        let p = hardened_with(
            json!({"containers": [{"name": "c", "image": "i", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}
            }}]}),
        );
        assert_eq!(
            rules(Level::Restricted, &p),
            vec!["pss.capabilities_baseline", "pss.capabilities_restricted"]
        );
        assert_eq!(
            rules(Level::Baseline, &p),
            vec!["pss.capabilities_baseline"]
        );
    }

    #[test]
    fn windows_pods_are_exempt_from_the_linux_only_restricted_controls() {
        let p = pod(json!({
            "os": {"name": "windows"},
            "securityContext": {"runAsNonRoot": true},
            "containers": [{"name": "c", "image": "i"}]
        }));
        assert_eq!(check(Level::Restricted, &p), vec![]);
    }

    #[test]
    fn every_rule_has_a_control_name() {
        for r in rules_list() {
            assert!(control_name(r).is_some(), "{r}");
        }
    }

    fn rules_list() -> Vec<&'static str> {
        super::rules().collect()
    }

    #[test]
    fn volume_type_names_every_source() {
        let v: Volume =
            serde_json::from_value(json!({"name": "x", "hostPath": {"path": "/"}})).unwrap();
        assert_eq!(volume_type(&v), "hostPath");
        for t in VOLUME_TYPES {
            assert!(
                level_refuses_volume_type(Level::Restricted, t)
                    != RESTRICTED_VOLUME_TYPES.contains(t)
            );
        }
    }
}
