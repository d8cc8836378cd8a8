//! Replays the recorded kube-apiserver v1.32.3 transcript (`../shared/conformance/`) against the
//! in-memory test API server (or, with `VCSYNC_E2E_CONFORMANCE_KUBECONFIG`, against a real
//! cluster) and fails on every difference not listed in `conformance_known_gaps.txt`.
//!
//! * `VCSYNC_E2E_CONFORMANCE_KUBECONFIG=path`: replay against that cluster instead.
//! * `VCSYNC_CONFORMANCE_ONLY=prefix[,prefix…]`: report only steps whose id starts with a prefix
//!   (every step still runs up to the last selected one; later steps depend on earlier ones).
//! * `VCSYNC_CONFORMANCE_POLL_SCALE=x`: multiply the recorded poll timeouts.
//!
//! The full report goes to `target/conformance-report.txt`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use vcsync_e2e::conformance::{Recording, ReplayOptions, ReplayReport, replay};

const RECORDING: &str = "kube-apiserver-v1.32.3.json";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_path_buf()
}

/// Step ids listed in `conformance_known_gaps.txt` (`#` starts a comment).
fn known_gaps() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance_known_gaps.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn options() -> ReplayOptions {
    let only = std::env::var("VCSYNC_CONFORMANCE_ONLY")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let poll_timeout_scale = std::env::var("VCSYNC_CONFORMANCE_POLL_SCALE")
        .ok()
        .map(|v| {
            v.parse::<f64>()
                .unwrap_or_else(|e| panic!("VCSYNC_CONFORMANCE_POLL_SCALE={v:?}: {e}"))
        })
        .unwrap_or(1.0);
    ReplayOptions {
        only,
        poll_timeout_scale,
        ..ReplayOptions::default()
    }
}

async fn cluster_client(kubeconfig: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("reading kubeconfig {kubeconfig}: {e}"));
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("loading kubeconfig {kubeconfig}: {e}"));
    // The transcript records 504s; kube's retries would resend them.
    config.default_retry = false;
    kube::Client::try_from(config).expect("a kube client for the conformance cluster")
}

/// Failing ids outside the known gaps, and known gaps that now pass or do not exist.
fn verdict(report: &ReplayReport, rec: &Recording, gaps: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for id in report.failed_ids() {
        if !gaps.contains(id) {
            problems.push(format!("{id}: differs from the recording"));
        }
    }
    for gap in gaps {
        if !rec.steps.iter().any(|s| &s.id == gap) {
            problems.push(format!(
                "{gap}: listed in conformance_known_gaps.txt but no such step"
            ));
        } else if report.steps.iter().any(|s| &s.id == gap && s.passed) {
            problems.push(format!(
                "{gap}: passes now, remove it from the known gaps list (e2e/tests/conformance_known_gaps.txt)"
            ));
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_the_recorded_kube_apiserver_transcript() {
    let dir = workspace_root().join("../shared/conformance");
    let path = dir.join(RECORDING);
    if !path.exists() {
        eprintln!(
            "conformance: {} is absent (../shared is not beside the clone): skipping the replay",
            path.display()
        );
        return;
    }
    let rec = Recording::load(&path).expect("the recording parses");
    let opts = options();

    let (report, target) = match std::env::var("VCSYNC_E2E_CONFORMANCE_KUBECONFIG") {
        Ok(kubeconfig) => {
            let client = cluster_client(&kubeconfig).await;
            (replay(&client, &rec, &opts).await, kubeconfig)
        }
        Err(_) => {
            // A short history window: the recording's `watch/too-old` step resends updates until
            // resourceVersion 1 leaves the window (about 3,200 on the real server).
            let server =
                vcsync_e2e::apiserver::TestApiServer::start(vcsync_e2e::apiserver::ServerConfig {
                    history_window: 1000,
                    ..Default::default()
                })
                .await
                .unwrap();
            let report = replay(&server.client(), &rec, &opts).await;
            drop(server);
            (report, "the in-memory test API server".to_string())
        }
    };

    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let report_path = target_dir.join("conformance-report.txt");
    let text = format!("replayed against {target}\n{}", report.render());
    if let Err(e) =
        std::fs::create_dir_all(&target_dir).and_then(|()| std::fs::write(&report_path, &text))
    {
        eprintln!("conformance: cannot write {}: {e}", report_path.display());
    }
    println!("{}", report.summary());
    println!("full report: {}", report_path.display());

    let gaps = known_gaps();
    let problems = verdict(&report, &rec, &gaps);
    assert!(
        problems.is_empty(),
        "{} against {target}\n{}\n(full report: {})",
        report.summary(),
        problems.join("\n"),
        report_path.display()
    );
}
