//! The host Service CIDR, end to end: the `vcsync` binary runs between the two test API
//! servers with `--host-kubeconfig` and no `KUBERNETES_SERVICE_HOST` (as outside the host
//! cluster), learns the host's Service range from a dry-run allocation probe, and refuses
//! every selector-less endpoint aimed inside it (the host `kubernetes` Service's ClusterIP
//! among them), or inside a range given with `--host-service-cidr`, even though the policy
//! allows the addresses otherwise.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use vcsync_e2e::harness::{ENGINE_TOKEN, Harness};
use vcsync_e2e::testutil::{create_namespace, wait_for};
mod support;
use support::{Process, vcsync_command};

const WAIT: Duration = Duration::from_secs(45);

fn spawn(h: &Harness, dir: &Path, extra: &[&str]) -> Process {
    let (Some(hs), Some(vs)) = (h.host_server.as_ref(), h.virtual_server.as_ref()) else {
        panic!("these tests need the test API servers");
    };
    let host_kc = dir.join("host.kubeconfig");
    let virt_kc = dir.join("virtual.kubeconfig");
    let policy = dir.join("policy.yaml");
    std::fs::write(&host_kc, hs.kubeconfig_yaml_for(ENGINE_TOKEN)).unwrap();
    std::fs::write(&virt_kc, vs.kubeconfig_yaml_for(ENGINE_TOKEN)).unwrap();
    // Wide open on purpose: only the Service CIDR stands between a tenant and a virtual IP.
    std::fs::write(&policy, "services:\n  allowedEndpointCidrs: [10.0.0.0/8]\n").unwrap();
    let mut cmd = vcsync_command();
    cmd.args(["run", "--tenant", &h.tenant])
        .args(["--host-namespace", &h.host_namespace])
        .arg("--virtual-kubeconfig")
        .arg(&virt_kc)
        .arg("--host-kubeconfig")
        .arg(&host_kc)
        .arg("--policy")
        .arg(&policy)
        .args(["--metrics-addr", "127.0.0.1:0", "--leader-elect=false"])
        .args(extra);
    Process::spawn(cmd, "vcsync")
}

/// A selector-less virtual Service `name` with Endpoints at `ip`.
async fn selectorless(h: &Harness, ns: &str, name: &str, ip: &str) {
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": name}, "spec": {"ports": [{"port": 5432}]}
    }))
    .unwrap();
    h.virt_api::<Service>(ns)
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    let eps: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": name},
        "subsets": [{"addresses": [{"ip": ip}], "ports": [{"port": 5432}]}]
    }))
    .unwrap();
    h.virt_api::<Endpoints>(ns)
        .create(&PostParams::default(), &eps)
        .await
        .unwrap();
}

async fn violation(h: &Harness, ns: &str, name: &str, vcsync: &Process) -> String {
    let events: Api<Event> = h.virt_api(ns);
    let found = tokio::time::timeout(
        WAIT,
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
                        let r = e.regarding.as_ref()?;
                        let about =
                            r.name.as_deref()? == name && r.kind.as_deref() == Some("Endpoints");
                        (about && e.reason.as_deref() == Some("PolicyViolation"))
                            .then(|| e.note.unwrap_or_default())
                    })
            }
        }),
    )
    .await;
    found.unwrap_or_else(|_| panic!("no PolicyViolation on {name}; logs:\n{}", vcsync.logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_inside_the_host_service_cidr_are_refused() {
    let h = Harness::new("svccidr").await;
    let dir = tempfile::tempdir().unwrap();
    create_namespace(&h.virt, "db").await;
    let vcsync = spawn(&h, dir.path(), &["--host-service-cidr", "10.77.0.0/16"]);

    // The host `kubernetes` Service's ClusterIP: the test server allocates it first in
    // 10.96.0.0/16, like kube-apiserver.
    let kubernetes = Api::<Service>::namespaced(h.host.clone(), "default")
        .get("kubernetes")
        .await
        .unwrap();
    let api_vip = kubernetes.spec.unwrap().cluster_ip.unwrap();
    assert!(api_vip.starts_with("10.96."), "{api_vip}");
    selectorless(&h, "db", "apiserver", &api_vip).await;
    selectorless(&h, "db", "vip", "10.96.200.7").await;
    selectorless(&h, "db", "flagged", "10.77.1.1").await;
    selectorless(&h, "db", "real", "10.20.1.5").await;

    // The allowed one syncs...
    let host_real = h.host_name("db", "real");
    wait_for(WAIT, "the allowed endpoints on the host", || async {
        h.host_api::<Endpoints>().get_opt(&host_real).await.ok()?
    })
    .await;
    // ...the virtual IPs never do, and the tenant reads why.
    for (name, range) in [
        ("apiserver", "10.96.0.0/16"),
        ("vip", "10.96.0.0/16"),
        ("flagged", "10.77.0.0/16"),
    ] {
        let note = violation(&h, "db", name, &vcsync).await;
        assert!(
            note.contains("host Service CIDR") && note.contains(range),
            "{name}: {note}"
        );
        assert!(
            h.host_api::<Endpoints>()
                .get_opt(&h.host_name("db", name))
                .await
                .unwrap()
                .is_none(),
            "{name} reached the host"
        );
    }
    // What was learned, and from where, is in the start-up log.
    assert!(
        vcsync.logged("10.96.0.0/16 (allocation-probe)") && vcsync.logged("10.77.0.0/16 (flag)"),
        "logs:\n{}",
        vcsync.logs()
    );
    // The probe was a dry run: nothing was created.
    assert!(
        h.host_api::<Service>()
            .get_opt("vcsync-service-cidr-probe")
            .await
            .unwrap()
            .is_none()
    );
}
