//! End-to-end: tenant NetworkPolicies applied with the real `kubectl` reach the host namespace
//! narrowed to the tenant (pod selectors, namespace selectors resolved against the virtual
//! namespaces, ipBlocks with the refused ranges carved out), follow updates, namespace label
//! changes and deletes, are refused with `PolicyViolation` when they name what the tenant may
//! not reach, and a restart over synced policies writes nothing. No CNI runs here, so the
//! translated objects are what is checked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};
use vcsync::markers;
use vcsync_e2e::harness::{Harness, VIRTUAL_KUBECONFIG_ENV};
use vcsync_e2e::testutil::{create_namespace, wait_for};

const WAIT: Duration = Duration::from_secs(30);

/// Real kubectl against the virtual API, as the tenant would run it.
fn kubectl(h: &Harness, home: &Path, args: &[&str]) -> (bool, String) {
    let kc: PathBuf = match std::env::var(VIRTUAL_KUBECONFIG_ENV) {
        Ok(path) if !path.is_empty() => path.into(),
        _ => {
            let kc = home.join("virtual.kubeconfig");
            if !kc.exists() {
                let vs = h.virtual_server.as_ref().expect("test servers");
                vs.write_kubeconfig(&kc).expect("kubeconfig written");
            }
            kc
        }
    };
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kc)
        .arg("--cache-dir")
        .arg(home.join("cache"))
        .args(args)
        .env("HOME", home)
        .current_dir(home)
        .output()
        .expect("kubectl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `kubectl apply -f` of `doc` (JSON is YAML).
fn apply(h: &Harness, home: &Path, doc: &Value) {
    let file = home.join("policy.json");
    std::fs::write(&file, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    let (ok, out) = kubectl(h, home, &["apply", "-f", file.to_str().unwrap()]);
    assert!(ok, "kubectl apply: {out}");
}

fn policy_doc(ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec
    })
}

/// The host copy of virtual policy `ns/name` once `check` accepts it.
async fn host_policy(
    h: &Harness,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let api: Api<NetworkPolicy> = h.host_api();
    let host_name = h.host_name(ns, name);
    wait_for(WAIT, what, || {
        let (api, host_name) = (api.clone(), host_name.clone());
        let check = &check;
        async move {
            let p = api.get_opt(&host_name).await.ok()??;
            let v = serde_json::to_value(p).ok()?;
            check(&v).then_some(v)
        }
    })
    .await
}

/// The `PolicyViolation` event on virtual policy `ns/name`, once it exists.
async fn violation(h: &Harness, ns: &str, name: &str) -> String {
    let events: Api<Event> = h.virt_api(ns);
    wait_for(WAIT, &format!("a PolicyViolation event on {name}"), || {
        let (events, name) = (events.clone(), name.to_string());
        async move {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find_map(|e| {
                    let about = e.regarding.as_ref()?.name.as_deref()? == name;
                    (about && e.reason.as_deref() == Some("PolicyViolation"))
                        .then(|| e.note.unwrap_or_default())
                })
        }
    })
    .await
}

fn namespaces_in(peer: &Value) -> Vec<String> {
    peer["podSelector"]["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["key"] == markers::VIRTUAL_NAMESPACE_LABEL)
        .flat_map(|e| e["values"].as_array().cloned().unwrap_or_default())
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

// kubectl runs as a blocking child process: the in-process servers need other threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenant_policies_reach_the_host_narrowed_to_the_tenant() {
    let mut h = Harness::new("netpol").await;
    h.policy = vcsync::policy::Policy::from_yaml(
        "networkPolicies:\n  allowedCidrs: [0.0.0.0/0]\nservices:\n  deniedCidrs: [10.0.0.0/8]\n",
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    for ns in ["shop", "db", "dev"] {
        create_namespace(&h.virt, ns).await;
    }
    let (ok, out) = kubectl(&h, home.path(), &["label", "namespace", "db", "env=prod"]);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&h, home.path(), &["label", "namespace", "shop", "env=prod"]);
    assert!(ok, "{out}");
    h.start_engine();

    let spec = json!({
        "podSelector": {"matchLabels": {"app": "web"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{
            "from": [
                {"podSelector": {"matchLabels": {"app": "lb"}}},
                {"namespaceSelector": {"matchLabels": {"env": "prod"}}, "podSelector": {"matchLabels": {"app": "api"}}}
            ],
            "ports": [{"protocol": "TCP", "port": "http"}]
        }],
        "egress": [{
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
            "ports": [{"protocol": "TCP", "port": 443}]
        }]
    });
    apply(&h, home.path(), &policy_doc("shop", "web", spec.clone()));
    let host = host_policy(&h, "shop", "web", "the host copy", |_| true).await;
    let tenant = h.tenant.clone();
    // The policy applies to the tenant's pods of virtual namespace shop only.
    assert_eq!(
        host["spec"]["podSelector"]["matchLabels"],
        json!({"app": "web", markers::MANAGED_BY: tenant, markers::VIRTUAL_NAMESPACE_LABEL: "shop"})
    );
    let from = &host["spec"]["ingress"][0]["from"];
    assert_eq!(
        from[0]["podSelector"]["matchLabels"],
        json!({"app": "lb", markers::MANAGED_BY: tenant, markers::VIRTUAL_NAMESPACE_LABEL: "shop"})
    );
    assert_eq!(
        from[1]["podSelector"]["matchLabels"],
        json!({"app": "api", markers::MANAGED_BY: tenant})
    );
    assert_eq!(namespaces_in(&from[1]), ["db", "shop"]);
    for peer in from.as_array().unwrap() {
        assert!(peer.get("namespaceSelector").is_none(), "{peer}");
    }
    assert_eq!(
        host["spec"]["ingress"][0]["ports"],
        json!([{"protocol": "TCP", "port": "http"}])
    );
    // The internet, without the ranges no tenant may reach.
    let block = &host["spec"]["egress"][0]["to"][0]["ipBlock"];
    assert_eq!(block["cidr"], "0.0.0.0/0");
    let except: Vec<&str> = block["except"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for range in ["169.254.0.0/16", "127.0.0.0/8", "10.0.0.0/8"] {
        assert!(except.contains(&range), "{range} carved out: {except:?}");
    }

    // The tenant is told what was narrowed.
    let note = violation(&h, "shop", "web").await;
    assert!(
        note.contains("narrowed by the isolation policy")
            && note.contains("spec.egress[0].to[0].ipBlock: 0.0.0.0/0 excludes the refused ranges"),
        "{note}"
    );

    // A namespace gaining the label: the policy is translated again.
    let (ok, out) = kubectl(&h, home.path(), &["label", "namespace", "dev", "env=prod"]);
    assert!(ok, "{out}");
    host_policy(&h, "shop", "web", "dev among the peer namespaces", |v| {
        namespaces_in(&v["spec"]["ingress"][0]["from"][1]) == ["db", "dev", "shop"]
    })
    .await;
    let (ok, out) = kubectl(&h, home.path(), &["label", "namespace", "db", "env-"]);
    assert!(ok, "{out}");
    host_policy(&h, "shop", "web", "db no longer a peer namespace", |v| {
        namespaces_in(&v["spec"]["ingress"][0]["from"][1]) == ["dev", "shop"]
    })
    .await;

    // An update.
    let mut updated = spec.clone();
    updated["egress"][0]["ports"] = json!([{"protocol": "TCP", "port": 8443}]);
    apply(&h, home.path(), &policy_doc("shop", "web", updated));
    host_policy(&h, "shop", "web", "the updated port", |v| {
        v["spec"]["egress"][0]["ports"][0]["port"] == 8443
    })
    .await;

    // Refused: the metadata service and another tenant's pods. Nothing reaches the host.
    apply(
        &h,
        home.path(),
        &policy_doc(
            "shop",
            "metadata",
            json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}]}]}),
        ),
    );
    let note = violation(&h, "shop", "metadata").await;
    assert!(
        note.contains("networkpolicy.ip_block") && note.contains("169.254.169.254/32"),
        "{note}"
    );
    apply(
        &h,
        home.path(),
        &policy_doc(
            "shop",
            "other-tenant",
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"vcsync.io/managed-by": "victim"}}}]}]}),
        ),
    );
    let note = violation(&h, "shop", "other-tenant").await;
    assert!(note.contains("networkpolicy.selector"), "{note}");
    let hosts: Api<NetworkPolicy> = h.host_api();
    for name in ["metadata", "other-tenant"] {
        assert!(
            hosts
                .get_opt(&h.host_name("shop", name))
                .await
                .unwrap()
                .is_none(),
            "refused {name} must not reach the host"
        );
    }

    // A restart over synced policies writes nothing.
    h.wait_quiet(Duration::from_millis(500), WAIT).await;
    h.stop_engine().await;
    h.reset_counts();
    h.start_engine();
    h.wait_quiet(Duration::from_secs(2), WAIT).await;
    match h.engine_writes() {
        Some((host_writes, _)) => {
            assert_eq!(host_writes, 0, "a restart writes nothing to the host")
        }
        None => eprintln!(
            "request counters need the test API servers: restart writes not checked against real clusters"
        ),
    }

    // Deleted with kubectl: the host copy goes.
    let (ok, out) = kubectl(
        &h,
        home.path(),
        &["delete", "networkpolicy", "web", "-n", "shop"],
    );
    assert!(ok, "{out}");
    let host_name = h.host_name("shop", "web");
    wait_for(WAIT, "the host copy deleted", || {
        let (hosts, host_name) = (hosts.clone(), host_name.clone());
        async move {
            hosts
                .get_opt(&host_name)
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn with_sync_off_no_policy_reaches_the_host() {
    let mut h = Harness::new("netpol-off").await;
    h.policy = vcsync::policy::Policy::from_yaml("networkPolicies:\n  sync: false\n").unwrap();
    create_namespace(&h.virt, "shop").await;
    h.start_engine();
    let pp = PostParams::default();
    let policies: Api<NetworkPolicy> = h.virt_api("shop");
    policies
        .create(
            &pp,
            &serde_json::from_value(
                json!({"metadata": {"name": "web"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    // A service created after it syncs: the engine has been through its work by then.
    let services: Api<Service> = h.virt_api("shop");
    services
        .create(
            &pp,
            &serde_json::from_value(
                json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let host_services: Api<Service> = h.host_api();
    let svc_name = vcsync::translate::host_name(
        &h.tenant,
        "shop",
        "web",
        vcsync::translate::NameRule::Dns1035Label,
    );
    wait_for(WAIT, "the service on the host", || {
        let (api, name) = (host_services.clone(), svc_name.clone());
        async move { api.get_opt(&name).await.ok()? }
    })
    .await;
    h.wait_quiet(Duration::from_millis(500), WAIT).await;
    let hosts: Api<NetworkPolicy> = h.host_api();
    let listed = hosts.list(&ListParams::default()).await.unwrap();
    assert!(
        listed.items.iter().all(|p| !p
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(markers::MANAGED_BY))),
        "no tenant policy on the host: {listed:?}"
    );
}
