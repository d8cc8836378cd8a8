//! The README's main command works: the sandbox starts, syncs its sample workload and prints
//! the table of virtual objects and their host counterparts, and `kubectl top` of the sample pod.

use std::process::Command;

#[test]
fn sandbox_syncs_the_sample_workload() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .args(["--once", "--dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("sandbox runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sandbox failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pod_row = stdout
        .lines()
        .find(|l| l.starts_with("Pod ") && l.contains("shop/web"))
        .unwrap_or_else(|| panic!("no pod row in:\n{stdout}"));
    assert!(
        pod_row.contains("Running") && pod_row.contains("web-shop-demo-3-4"),
        "{pod_row}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ConfigMap") && l.contains("web-config-shop-demo-10-4")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("NetworkPolicy") && l.contains("web-shop-demo-3-4")),
        "{stdout}"
    );
    // The host copy selects only the tenant's pods.
    assert!(
        stdout.contains("host copy of NetworkPolicy shop/web")
            && stdout.contains("\"vcsync.io/managed-by\":\"demo\""),
        "{stdout}"
    );
    // The real `kubectl top pods` through the virtual server's aggregator: the sample pod's
    // figures from vcsync's metrics API, under its virtual name.
    let top = stdout
        .split("$ kubectl top pods -n shop")
        .nth(1)
        .unwrap_or_else(|| panic!("no pod metrics in:\n{stdout}"));
    let mut lines = top.lines().skip_while(|l| l.trim().is_empty());
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with("NAME")
            && header.contains("CPU(cores)")
            && header.contains("MEMORY(bytes)"),
        "kubectl's table: {top}"
    );
    assert!(lines.next().is_some_and(|l| l.starts_with("web ")), "{top}");
    // The metrics API's registration in the virtual cluster.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("v1beta1.metrics.k8s.io")
                && l.contains("kube-system/vcsync-metrics")
                && l.contains("k3s server CA")),
        "{stdout}"
    );
    let claim_row = stdout
        .lines()
        .find(|l| l.starts_with("PersistentVolumeClaim") && l.contains("shop/web-data"))
        .unwrap_or_else(|| panic!("no claim row in:\n{stdout}"));
    assert!(
        claim_row.matches("Bound 1Gi").count() == 2 && claim_row.contains("web-data-shop-demo-8-4"),
        "the claim is Bound on both sides: {claim_row}"
    );
    for kc in ["host.kubeconfig", "virtual.kubeconfig"] {
        assert!(dir.path().join(kc).exists(), "{kc} written");
    }
}
