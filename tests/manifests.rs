//! The deployment manifests: every kustomization under `manifests/` is
//! rendered with the installed `kubectl kustomize`, every document must be a
//! Kubernetes object whose k8s-openapi type reads it back without losing a
//! field (so a misspelt field fails), and the rendered objects must fit the
//! code: the Role grants exactly [`vcsync::permissions::HOST_PERMISSIONS`],
//! every `VCSYNC_*` variable is a flag of `vcsync run`, the probes hit the
//! metrics port, and so on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory as _;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, LimitRange, Namespace, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use vcsync::permissions::{HOST_PERMISSIONS, OPTIONAL_CLUSTER_PERMISSIONS, triples};

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

/// Every directory under `manifests/` with a kustomization that can be built
/// on its own (components cannot).
fn kustomizations() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let file = dir.join("kustomization.yaml");
        if file.is_file() {
            let text = std::fs::read_to_string(&file).unwrap();
            let k: Value =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if k["kind"] != "Component" {
                out.push(dir.to_owned());
            }
        }
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        entries.sort();
        for e in entries {
            walk(&e, out);
        }
    }
    let mut out = Vec::new();
    walk(&manifests_dir(), &mut out);
    out
}

fn render(dir: &Path) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("running kubectl (needed by this test): {e}"));
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn documents(yaml: &str, what: &str) -> Vec<Value> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(yaml).unwrap_or_else(|e| panic!("{what}: not YAML: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Drops what serialization may leave out without meaning anything else:
/// nulls, and empty maps and lists.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), normalize(v)))
                .filter(|(_, v)| !matches!(v, Value::Object(m) if m.is_empty()))
                .filter(|(_, v)| !matches!(v, Value::Array(a) if a.is_empty()))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

/// Reads `doc` as `K` and checks that writing it back gives the same
/// document: a field the type does not know (a typo, a wrong nesting) would
/// be dropped and make the two differ.
fn typed<K: DeserializeOwned + Serialize>(doc: &Value, what: &str) -> K {
    let obj: K = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{what}: does not deserialize: {e}\n{doc:#}"));
    let back = serde_json::to_value(&obj).unwrap();
    let (want, got) = (normalize(doc), normalize(&back));
    // Only what the manifest says counts: the type may add what it always
    // writes (apiVersion and kind of embedded claim templates).
    let lost = diff(&want, &got, "");
    if !lost.is_empty() {
        panic!("{what}: fields lost reading it as its k8s-openapi type:\n{lost}");
    }
    obj
}

fn diff(want: &Value, got: &Value, path: &str) -> String {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .map(|(k, v)| diff(v, b.get(k).unwrap_or(&Value::Null), &format!("{path}.{k}")))
            .collect(),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .map(|(i, (x, y))| diff(x, y, &format!("{path}[{i}]")))
            .collect(),
        (a, b) if a == b => String::new(),
        (a, b) => format!("  {path}: manifest has {a}, the type read {b}\n"),
    }
}

/// One rendered kustomization, typed.
#[derive(Default)]
struct Rendered {
    dir: String,
    namespaces: Vec<Namespace>,
    service_accounts: Vec<ServiceAccount>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    quotas: Vec<ResourceQuota>,
    limit_ranges: Vec<LimitRange>,
    network_policies: Vec<NetworkPolicy>,
    stateful_sets: Vec<StatefulSet>,
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    config_maps: Vec<ConfigMap>,
    secrets: Vec<Secret>,
}

impl Rendered {
    fn add(&mut self, doc: &Value, origin: &str) {
        let api_version = doc["apiVersion"].as_str().unwrap_or_default();
        let kind = doc["kind"].as_str().unwrap_or_default();
        let what = format!(
            "{origin}: {api_version} {kind} {}",
            doc["metadata"]["name"].as_str().unwrap_or("(no name)")
        );
        match (api_version, kind) {
            ("v1", "Namespace") => self.namespaces.push(typed(doc, &what)),
            ("v1", "ServiceAccount") => self.service_accounts.push(typed(doc, &what)),
            ("v1", "ResourceQuota") => self.quotas.push(typed(doc, &what)),
            ("v1", "LimitRange") => self.limit_ranges.push(typed(doc, &what)),
            ("v1", "Service") => self.services.push(typed(doc, &what)),
            ("v1", "ConfigMap") => self.config_maps.push(typed(doc, &what)),
            ("v1", "Secret") => self.secrets.push(typed(doc, &what)),
            ("rbac.authorization.k8s.io/v1", "Role") => self.roles.push(typed(doc, &what)),
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
                self.role_bindings.push(typed(doc, &what))
            }
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
                self.cluster_roles.push(typed(doc, &what))
            }
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                self.cluster_role_bindings.push(typed(doc, &what))
            }
            ("networking.k8s.io/v1", "NetworkPolicy") => {
                self.network_policies.push(typed(doc, &what))
            }
            ("apps/v1", "StatefulSet") => self.stateful_sets.push(typed(doc, &what)),
            ("apps/v1", "Deployment") => self.deployments.push(typed(doc, &what)),
            _ => panic!("{what}: a kind this test does not know; add it to Rendered::add"),
        }
    }

    fn load(dir: &Path) -> Rendered {
        let name = dir
            .strip_prefix(manifests_dir())
            .unwrap()
            .display()
            .to_string();
        let mut r = Rendered {
            dir: name.clone(),
            ..Rendered::default()
        };
        let docs = documents(&render(dir), &name);
        assert!(!docs.is_empty(), "{name}: renders nothing");
        for doc in &docs {
            r.add(doc, &name);
        }
        r
    }

    fn namespace(&self) -> &str {
        assert_eq!(
            self.namespaces.len(),
            1,
            "{}: exactly one Namespace",
            self.dir
        );
        self.namespaces[0].metadata.name.as_deref().unwrap()
    }

    fn config_map(&self, prefix: &str) -> &ConfigMap {
        // Generated config maps carry a content hash suffix.
        let found: Vec<_> = self
            .config_maps
            .iter()
            .filter(|c| {
                c.metadata
                    .name
                    .as_deref()
                    .and_then(|n| n.strip_prefix(prefix))
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
            })
            .collect();
        assert_eq!(found.len(), 1, "{}: one ConfigMap {prefix}", self.dir);
        found[0]
    }

    fn vcsync_setting(&self, key: &str) -> &str {
        self.config_map("vcsync-config")
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .unwrap_or_else(|| panic!("{}: vcsync-config has no {key}", self.dir))
    }

    fn tenant(&self) -> &str {
        self.vcsync_setting("VCSYNC_TENANT")
    }

    fn stateful_set(&self) -> &StatefulSet {
        assert_eq!(self.stateful_sets.len(), 1, "{}: one StatefulSet", self.dir);
        &self.stateful_sets[0]
    }
}

fn rendered() -> Vec<Rendered> {
    let dirs = kustomizations();
    let names: Vec<String> = dirs
        .iter()
        .map(|d| {
            d.strip_prefix(manifests_dir())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    for want in ["base", "overlays/tenant-a"] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    dirs.iter().map(|d| Rendered::load(d)).collect()
}

fn rule_triples(rules: &[PolicyRule], what: &str) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules {
        assert!(
            rule.resource_names.as_ref().is_none_or(Vec::is_empty),
            "{what}: resourceNames would need a list of their own in permissions.rs"
        );
        assert!(
            rule.non_resource_urls.as_ref().is_none_or(Vec::is_empty),
            "{what}: vcsync needs no non-resource URLs"
        );
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert!(
                        group != "*" && resource != "*" && verb != "*",
                        "{what}: wildcards grant more than vcsync uses"
                    );
                    out.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    out
}

fn show(set: &BTreeSet<(String, String, String)>) -> Vec<String> {
    set.iter().map(|(g, r, v)| format!("{g}/{r} {v}")).collect()
}

#[test]
fn every_document_is_a_known_kubernetes_object() {
    for r in rendered() {
        let ns = r.namespace().to_owned();
        // Namespaced objects all land in the tenant's namespace.
        let namespaced: Vec<(&str, Option<&String>)> = r
            .service_accounts
            .iter()
            .map(|o| ("ServiceAccount", o.metadata.namespace.as_ref()))
            .chain(
                r.roles
                    .iter()
                    .map(|o| ("Role", o.metadata.namespace.as_ref())),
            )
            .chain(
                r.role_bindings
                    .iter()
                    .map(|o| ("RoleBinding", o.metadata.namespace.as_ref())),
            )
            .chain(
                r.network_policies
                    .iter()
                    .map(|o| ("NetworkPolicy", o.metadata.namespace.as_ref())),
            )
            .chain(
                r.services
                    .iter()
                    .map(|o| ("Service", o.metadata.namespace.as_ref())),
            )
            .chain(
                r.config_maps
                    .iter()
                    .map(|o| ("ConfigMap", o.metadata.namespace.as_ref())),
            )
            .chain(
                r.stateful_sets
                    .iter()
                    .map(|o| ("StatefulSet", o.metadata.namespace.as_ref())),
            )
            .collect();
        for (kind, got) in namespaced {
            assert_eq!(got, Some(&ns), "{}: {kind} outside {ns}", r.dir);
        }
    }
}

#[test]
fn the_role_grants_exactly_what_the_code_uses() {
    let want = triples(HOST_PERMISSIONS);
    for r in rendered() {
        let ns = r.namespace().to_owned();
        assert_eq!(r.roles.len(), 1, "{}: one Role", r.dir);
        let role = &r.roles[0];
        let got = rule_triples(&role.rules.clone().unwrap_or_default(), &r.dir);
        assert!(
            got == want,
            "{}: Role vcsync differs from permissions::HOST_PERMISSIONS\n  \
             granted but not used: {:?}\n  used but not granted: {:?}",
            r.dir,
            show(&got.difference(&want).cloned().collect()),
            show(&want.difference(&got).cloned().collect()),
        );

        // Bound to vcsync's ServiceAccount, and nothing else is bound.
        assert_eq!(r.role_bindings.len(), 1, "{}: one RoleBinding", r.dir);
        let binding = &r.role_bindings[0];
        assert_eq!(binding.role_ref.kind, "Role");
        assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
        let subjects = binding.subjects.clone().unwrap_or_default();
        assert_eq!(subjects.len(), 1, "{}", r.dir);
        assert_eq!(subjects[0].kind, "ServiceAccount");
        assert_eq!(subjects[0].name, "vcsync");
        assert_eq!(subjects[0].namespace.as_deref(), Some(ns.as_str()));
        let pod = r.stateful_set().spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("vcsync"));

        // The only ClusterRole is the optional one for host nodes.
        for cr in &r.cluster_roles {
            assert_eq!(
                cr.metadata.name.as_deref(),
                Some("vcsync-host-nodes"),
                "{}: unexpected ClusterRole",
                r.dir
            );
            let got = rule_triples(&cr.rules.clone().unwrap_or_default(), &r.dir);
            assert_eq!(got, triples(OPTIONAL_CLUSTER_PERMISSIONS), "{}", r.dir);
        }
        for crb in &r.cluster_role_bindings {
            assert_eq!(crb.role_ref.name, "vcsync-host-nodes", "{}", r.dir);
            let name = crb.metadata.name.as_deref().unwrap();
            assert!(
                name.ends_with(&ns),
                "{}: ClusterRoleBinding {name} must be unique per tenant namespace",
                r.dir
            );
            let subjects = crb.subjects.clone().unwrap_or_default();
            assert_eq!(subjects.len(), 1);
            assert_eq!(subjects[0].name, "vcsync");
            assert_eq!(subjects[0].namespace.as_deref(), Some(ns.as_str()));
        }
        assert_eq!(
            r.cluster_roles.len(),
            r.cluster_role_bindings.len(),
            "{}",
            r.dir
        );
    }
}

#[test]
fn the_workload_service_account_has_no_permissions_and_no_token() {
    for r in rendered() {
        let name = r.vcsync_setting("VCSYNC_WORKLOAD_SERVICE_ACCOUNT");
        let sa = r
            .service_accounts
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{}: no ServiceAccount {name}", r.dir));
        assert_eq!(sa.automount_service_account_token, Some(false), "{}", r.dir);
        let bound = r
            .role_bindings
            .iter()
            .flat_map(|b| b.subjects.iter().flatten())
            .chain(
                r.cluster_role_bindings
                    .iter()
                    .flat_map(|b| b.subjects.iter().flatten()),
            )
            .any(|s| s.name == name);
        assert!(!bound, "{}: {name} must not be bound to any role", r.dir);
    }
}

/// `VCSYNC_*` variables of `vcsync run`'s flags.
fn run_flag_envs() -> BTreeSet<String> {
    let cmd = vcsync::config::Args::command();
    let run = cmd.find_subcommand("run").expect("run subcommand");
    run.get_arguments()
        .chain(cmd.get_arguments())
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

fn container<'a>(containers: &'a [Container], name: &str) -> &'a Container {
    containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn flag_value<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.iter()
        .filter_map(|a| a.strip_prefix(flag)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_statefulset_runs_k3s_and_vcsync_as_the_code_expects() {
    let known = run_flag_envs();
    for r in rendered() {
        let sts = r.stateful_set();
        let spec = &sts.spec;
        assert_eq!(spec.replicas, Some(1), "{}: k3s on SQLite", r.dir);
        let pod = spec.template.spec.as_ref().unwrap();
        let init = pod.init_containers.clone().unwrap_or_default();
        let k3s = container(&init, "k3s");
        assert_eq!(
            k3s.restart_policy.as_deref(),
            Some("Always"),
            "{}: k3s is a native sidecar",
            r.dir
        );
        assert!(k3s.startup_probe.is_some(), "{}", r.dir);
        let args = k3s.args.clone().unwrap_or_default();
        assert_eq!(args.first().map(String::as_str), Some("server"));
        for flag in [
            "--disable-agent",
            "--disable-scheduler",
            "--disable-cloud-controller",
        ] {
            assert!(args.iter().any(|a| a == flag), "{}: k3s {flag}", r.dir);
        }
        let disabled: BTreeSet<&str> = flag_value(&args, "--disable")
            .iter()
            .flat_map(|v| v.split(','))
            .collect();
        for addon in [
            "traefik",
            "servicelb",
            "metrics-server",
            "local-storage",
            "coredns",
        ] {
            assert!(disabled.contains(addon), "{}: k3s --disable={addon}", r.dir);
        }
        assert_eq!(
            flag_value(&args, "--service-cidr"),
            ["$(SERVICE_CIDR)"],
            "{}",
            r.dir
        );
        let data_dir = flag_value(&args, "--data-dir")[0];
        let written = flag_value(&args, "--write-kubeconfig")[0];
        let tls_sans = flag_value(&args, "--tls-san");
        let api_service = r.vcsync_setting("VCSYNC_API_SERVICE");
        assert!(
            tls_sans.contains(&format!("{api_service}.$(POD_NAMESPACE).svc").as_str()),
            "{}: k3s's certificate must name the tenant kubeconfig's default server",
            r.dir
        );
        if let Some(server) = r
            .config_map("vcsync-config")
            .data
            .as_ref()
            .unwrap()
            .get("VCSYNC_KUBECONFIG_SERVER")
        {
            let host = server
                .parse::<http::Uri>()
                .unwrap()
                .host()
                .unwrap()
                .to_owned();
            assert!(
                tls_sans.contains(&host.as_str()),
                "{}: --tls-san={host} for VCSYNC_KUBECONFIG_SERVER",
                r.dir
            );
        }

        // SQLite data on a claim from the template, mounted at --data-dir.
        let claims = spec.volume_claim_templates.clone().unwrap_or_default();
        assert_eq!(claims.len(), 1, "{}", r.dir);
        let claim = claims[0].metadata.name.clone().unwrap();
        let mount = |c: &Container, volume: &str| -> Option<String> {
            c.volume_mounts
                .iter()
                .flatten()
                .find(|m| m.name == volume && m.sub_path.is_none())
                .map(|m| m.mount_path.clone())
        };
        assert_eq!(mount(k3s, &claim).as_deref(), Some(data_dir), "{}", r.dir);

        // The CoreDNS manifest lands in k3s's auto-deploy directory.
        let manifests_dir = format!("{data_dir}/server/manifests/");
        assert!(
            k3s.volume_mounts.iter().flatten().any(
                |m| m.mount_path.starts_with(&manifests_dir) && m.mount_path.ends_with(".yaml")
            ),
            "{}: nothing mounted into {manifests_dir}",
            r.dir
        );

        // vcsync reads the kubeconfig k3s writes, through a shared volume.
        let vcsync = container(&pod.containers, "vcsync");
        assert_eq!(
            vcsync.command.as_deref(),
            Some(&["vcsync".to_owned(), "run".to_owned()][..])
        );
        let env: BTreeMap<String, Option<String>> = vcsync
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        let virtual_kubeconfig = env["VCSYNC_VIRTUAL_KUBECONFIG"].clone().unwrap();
        assert_eq!(virtual_kubeconfig, written, "{}", r.dir);
        let shared = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| mount(k3s, &v.name).is_some_and(|p| written.starts_with(&format!("{p}/"))))
            .unwrap_or_else(|| panic!("{}: {written} is on no volume", r.dir));
        assert!(shared.empty_dir.is_some(), "{}", r.dir);
        let vmount = vcsync
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == shared.name)
            .unwrap_or_else(|| panic!("{}: vcsync does not mount {}", r.dir, shared.name));
        assert_eq!(Some(vmount.mount_path.clone()), mount(k3s, &shared.name));
        assert_eq!(vmount.read_only, Some(true), "{}", r.dir);
        assert!(
            env.contains_key("VCSYNC_HOST_NAMESPACE"),
            "{}: from the pod's namespace",
            r.dir
        );

        // Every VCSYNC_* variable is one `vcsync run` reads (a typo would be ignored).
        let from_config_map: Vec<String> = r
            .config_map("vcsync-config")
            .data
            .iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect();
        assert!(
            vcsync.env_from.iter().flatten().any(|e| e
                .config_map_ref
                .as_ref()
                .is_some_and(|c| c.name.starts_with("vcsync-config-"))),
            "{}",
            r.dir
        );
        for name in env.keys().chain(&from_config_map) {
            assert!(
                name.starts_with("VCSYNC_") && known.contains(name),
                "{}: {name} is not a `vcsync run` variable ({known:?})",
                r.dir
            );
        }
        for required in [
            "VCSYNC_TENANT",
            "VCSYNC_HOST_NAMESPACE",
            "VCSYNC_VIRTUAL_KUBECONFIG",
        ] {
            assert!(
                env.contains_key(required) || from_config_map.iter().any(|k| k == required),
                "{}: {required} unset",
                r.dir
            );
        }
        assert!(
            vcsync::names::DnsLabel::new(r.tenant()).is_ok(),
            "{}: tenant",
            r.dir
        );

        // The kubelet endpoint's CAs are the ones k3s writes under its data dir
        // (`<data-dir>/server/tls/`), mounted read-only from the same claim.
        let data_dir = flag_value(k3s.args.as_deref().unwrap_or_default(), "--data-dir")
            .first()
            .map(|d| (*d).to_owned())
            .unwrap_or_else(|| panic!("{}: k3s has no --data-dir", r.dir));
        let data_volume = k3s
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == data_dir)
            .map(|m| m.name.clone())
            .unwrap_or_else(|| panic!("{}: {data_dir} is on no volume", r.dir));
        for (var, file) in [
            ("VCSYNC_KUBELET_CLIENT_CA", "client-ca.crt"),
            ("VCSYNC_KUBELET_SERVING_CA_CERT", "server-ca.crt"),
            ("VCSYNC_KUBELET_SERVING_CA_KEY", "server-ca.key"),
            ("VCSYNC_METRICS_API_CLIENT_CA", "request-header-ca.crt"),
        ] {
            let path = env
                .get(var)
                .cloned()
                .flatten()
                .unwrap_or_else(|| panic!("{}: {var} unset", r.dir));
            let m = vcsync
                .volume_mounts
                .iter()
                .flatten()
                .find(|m| path.starts_with(&format!("{}/", m.mount_path)))
                .unwrap_or_else(|| panic!("{}: {path} ({var}) is on no volume", r.dir));
            assert_eq!(m.name, data_volume, "{}: {var}", r.dir);
            assert_eq!(m.read_only, Some(true), "{}: {var}", r.dir);
            let in_claim = format!(
                "{}/{}",
                m.sub_path.as_deref().unwrap_or(""),
                &path[m.mount_path.len() + 1..]
            );
            assert_eq!(in_claim, format!("server/tls/{file}"), "{}: {var}", r.dir);
        }

        // The metrics API listens on the pod IP (what an Endpoints address may be), from the
        // downward API.
        let address = vcsync
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "VCSYNC_METRICS_API_ADDRESS")
            .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
            .map(|f| f.field_path.clone());
        assert_eq!(address.as_deref(), Some("status.podIP"), "{}", r.dir);

        // Probes on vcsync's health endpoints, on the port it listens on.
        let port: u16 = r
            .vcsync_setting("VCSYNC_METRICS_ADDR")
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .port();
        let named_port = vcsync
            .ports
            .iter()
            .flatten()
            .find(|p| p.container_port == i32::from(port))
            .and_then(|p| p.name.clone())
            .unwrap_or_else(|| panic!("{}: vcsync does not expose {port}", r.dir));
        for (probe, path) in [
            (&vcsync.liveness_probe, "/livez"),
            (&vcsync.readiness_probe, "/readyz"),
        ] {
            let get = probe
                .as_ref()
                .and_then(|p| p.http_get.clone())
                .unwrap_or_else(|| panic!("{}: no {path} probe", r.dir));
            assert_eq!(get.path.as_deref(), Some(path));
            assert_eq!(
                serde_json::to_value(&get.port).unwrap(),
                named_port.as_str(),
                "{}",
                r.dir
            );
        }

        // Non-root, no privilege, requests and limits everywhere.
        let pod_sc = pod.security_context.clone().unwrap_or_default();
        assert_eq!(pod_sc.run_as_non_root, Some(true), "{}", r.dir);
        assert_ne!(pod_sc.run_as_user, Some(0));
        assert_eq!(
            pod_sc.seccomp_profile.map(|p| p.type_).as_deref(),
            Some("RuntimeDefault")
        );
        for c in init.iter().chain(&pod.containers) {
            let sc = c.security_context.clone().unwrap_or_default();
            let what = format!("{}: container {}", r.dir, c.name);
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{what}");
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{what}");
            assert_ne!(sc.privileged, Some(true), "{what}");
            assert_ne!(sc.run_as_user, Some(0), "{what}");
            let drop = sc.capabilities.and_then(|c| c.drop).unwrap_or_default();
            assert_eq!(drop, ["ALL"], "{what}");
            let res = c.resources.clone().unwrap_or_default();
            for (kind, map) in [("requests", res.requests), ("limits", res.limits)] {
                let map = map.unwrap_or_default();
                assert!(
                    map.contains_key("cpu") && map.contains_key("memory"),
                    "{what}: {kind}"
                );
            }
        }
    }
}

#[test]
fn the_api_service_fronts_k3s() {
    for r in rendered() {
        let name = r.vcsync_setting("VCSYNC_API_SERVICE");
        let svc = r
            .services
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{}: no Service {name}", r.dir));
        let spec = svc.spec.as_ref().unwrap();
        let ports = spec.ports.clone().unwrap_or_default();
        assert_eq!(ports.len(), 1, "{}", r.dir);
        assert_eq!(ports[0].port, 443, "{}: pods are told port 443", r.dir);
        let pod = r.stateful_set().spec.template.clone();
        let labels = pod.metadata.unwrap().labels.unwrap_or_default();
        for (k, v) in spec.selector.iter().flatten() {
            assert_eq!(labels.get(k), Some(v), "{}: selector {k}", r.dir);
        }
        let target = serde_json::to_value(ports[0].target_port.as_ref().unwrap()).unwrap();
        let k3s_ports = pod
            .spec
            .unwrap()
            .init_containers
            .unwrap()
            .into_iter()
            .find(|c| c.name == "k3s")
            .unwrap()
            .ports
            .unwrap();
        assert!(
            k3s_ports.iter().any(|p| p.container_port == 6443
                && (target == 6443 || p.name.as_deref() == target.as_str())),
            "{}: targetPort {target} is not k3s's 6443",
            r.dir
        );
    }
}

#[test]
fn the_namespace_has_its_guardrails() {
    for r in rendered() {
        let ns = &r.namespaces[0];
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        let level = |mode: &str| {
            labels
                .get(&format!("pod-security.kubernetes.io/{mode}"))
                .map(String::as_str)
        };
        assert!(
            matches!(level("enforce"), Some("baseline" | "restricted")),
            "{}: enforce",
            r.dir
        );
        assert!(
            level("audit").is_some() && level("warn").is_some(),
            "{}",
            r.dir
        );
        assert_eq!(
            labels.get("vcsync.io/tenant").map(String::as_str),
            Some(r.tenant())
        );
        assert_eq!(r.quotas.len(), 1, "{}: ResourceQuota", r.dir);
        let hard = r.quotas[0]
            .spec
            .as_ref()
            .unwrap()
            .hard
            .clone()
            .unwrap_or_default();
        assert_eq!(hard["services.nodeports"].0, "0", "{}", r.dir);
        assert_eq!(hard["services.loadbalancers"].0, "0", "{}", r.dir);
        assert!(hard.contains_key("requests.cpu") && hard.contains_key("pods"));
        assert_eq!(r.limit_ranges.len(), 1, "{}: LimitRange", r.dir);
    }
}

fn selects_tenant(p: &NetworkPolicy, tenant: &str) -> bool {
    p.spec
        .as_ref()
        .and_then(|s| s.pod_selector.as_ref())
        .and_then(|s| s.match_labels.as_ref())
        .and_then(|l| l.get(vcsync::markers::MANAGED_BY))
        .is_some_and(|t| t == tenant)
}

#[test]
fn network_policies_isolate_the_tenant() {
    const NEVER: [&str; 5] = [
        "169.254.0.0/16",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
    ];
    for r in rendered() {
        let tenant = r.tenant();
        for p in &r.network_policies {
            // Every tenant label the policies name is this tenant's (the
            // overlay's replacements reached every one).
            let text = serde_json::to_string(p).unwrap();
            let name = p.metadata.name.clone().unwrap();
            for (i, _) in text.match_indices(&format!("\"{}\":", vcsync::markers::MANAGED_BY)) {
                let rest = &text[i..];
                let value = rest.split('"').nth(3).unwrap_or_default();
                assert!(
                    value == tenant || rest.contains("DoesNotExist"),
                    "{}: {name} names tenant {value:?}, not {tenant:?}",
                    r.dir
                );
            }
        }
        let deny = r
            .network_policies
            .iter()
            .find(|p| {
                let s = p.spec.as_ref().unwrap();
                selects_tenant(p, tenant)
                    && s.ingress.as_ref().is_none_or(Vec::is_empty)
                    && s.egress.as_ref().is_none_or(Vec::is_empty)
                    && s.policy_types.as_deref()
                        == Some(&["Ingress".to_owned(), "Egress".to_owned()][..])
            })
            .unwrap_or_else(|| panic!("{}: no default deny for tenant pods", r.dir));
        assert!(deny.metadata.name.is_some());
        let optional_egress = r
            .network_policies
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some("tenant-allow-public-egress"));
        for p in &r.network_policies {
            let name = p.metadata.name.clone().unwrap();
            let spec = p.spec.as_ref().unwrap();
            for rule in spec.egress.iter().flatten() {
                for peer in rule.to.iter().flatten() {
                    let Some(block) = &peer.ip_block else {
                        continue;
                    };
                    assert_eq!(
                        name, "tenant-allow-public-egress",
                        "{}: only the optional public egress policy has address blocks",
                        r.dir
                    );
                    if block.cidr == "0.0.0.0/0" {
                        let except = block.except.clone().unwrap_or_default();
                        for never in NEVER {
                            assert!(
                                except.iter().any(|e| e == never),
                                "{}: {name} must except {never}",
                                r.dir
                            );
                        }
                    } else {
                        assert_eq!(block.cidr, "::/0", "{}: {name}", r.dir);
                        let except = block.except.clone().unwrap_or_default();
                        for never in ["fe80::/10", "fc00::/7", "::1/128"] {
                            assert!(except.iter().any(|e| e == never), "{}: {never}", r.dir);
                        }
                    }
                }
                // Only the DNS upstream rule may leave `to` open, and only for DNS.
                if rule.to.as_ref().is_none_or(Vec::is_empty) {
                    let ports: Vec<_> = rule
                        .ports
                        .iter()
                        .flatten()
                        .map(|p| serde_json::to_value(&p.port).unwrap())
                        .collect();
                    assert!(
                        !ports.is_empty() && ports.iter().all(|p| p == 53),
                        "{}: {name} allows egress anywhere on {ports:?}",
                        r.dir
                    );
                }
            }
        }
        if r.dir == "base" || r.dir == "overlays/tenant-a" {
            assert!(!optional_egress, "{}: public egress is opt-in", r.dir);
        }
        // Tenant pods may reach the tenant API (k3s's port, after the Service).
        let to_api = r.network_policies.iter().any(|p| {
            selects_tenant(p, tenant)
                && p.spec
                    .as_ref()
                    .unwrap()
                    .egress
                    .iter()
                    .flatten()
                    .any(|rule| {
                        rule.ports
                            .iter()
                            .flatten()
                            .any(|port| serde_json::to_value(&port.port).unwrap() == 6443)
                            && rule.to.iter().flatten().any(|peer| {
                                peer.pod_selector
                                    .as_ref()
                                    .and_then(|s| s.match_labels.as_ref())
                                    .is_some_and(|l| l.contains_key("vcsync.io/control-plane"))
                            })
                    })
        });
        assert!(to_api, "{}: no egress to the tenant API", r.dir);
    }
}

#[test]
fn the_tenant_dns_is_deployed_into_the_virtual_cluster() {
    for r in rendered() {
        let cm = r.config_map("vcsync-coredns");
        let data = cm.data.clone().unwrap_or_default();
        assert_eq!(data.len(), 1, "{}", r.dir);
        let (key, yaml) = data.into_iter().next().unwrap();
        let mut virtual_ = Rendered {
            dir: format!("{}: {key}", r.dir),
            ..Rendered::default()
        };
        for doc in documents(&yaml, &virtual_.dir) {
            virtual_.add(&doc, &format!("{} (virtual)", r.dir));
        }
        let (ns, name) = r
            .vcsync_setting("VCSYNC_DNS_SERVICE")
            .split_once('/')
            .unwrap();
        let svc = virtual_
            .services
            .iter()
            .find(|s| {
                s.metadata.namespace.as_deref() == Some(ns)
                    && s.metadata.name.as_deref() == Some(name)
            })
            .unwrap_or_else(|| panic!("{}: no virtual Service {ns}/{name}", r.dir));
        let ports = svc.spec.as_ref().unwrap().ports.clone().unwrap_or_default();
        assert!(ports.iter().any(|p| p.port == 53), "{}", r.dir);
        assert_eq!(virtual_.deployments.len(), 1, "{}", r.dir);
        let corefile = virtual_
            .config_maps
            .iter()
            .find_map(|c| c.data.as_ref()?.get("Corefile").cloned())
            .unwrap_or_else(|| panic!("{}: no Corefile", r.dir));
        let domain = r.vcsync_setting("VCSYNC_CLUSTER_DOMAIN");
        assert!(
            corefile.contains(&format!("kubernetes {domain} ")),
            "{}: the Corefile serves another domain than VCSYNC_CLUSTER_DOMAIN",
            r.dir
        );
        // The mirrored DNS pod must pass the host namespace's enforced level.
        let pod = virtual_.deployments[0].spec.template.spec.clone().unwrap();
        for c in &pod.containers {
            let sc = c.security_context.clone().unwrap_or_default();
            assert_ne!(sc.privileged, Some(true));
            assert!(sc.capabilities.and_then(|c| c.add).is_none());
        }
    }
}
