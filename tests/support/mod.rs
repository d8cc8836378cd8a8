//! Helpers for the tests that run the `vcsync` binary as a separate process: a clean command,
//! a process whose logs are captured (and that is killed on drop), and the health endpoint.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vcsync_e2e::testutil::wait_for;

pub const BIN: &str = env!("CARGO_BIN_EXE_vcsync");

/// `vcsync` with no configuration leaking in from the test's environment, logging JSON at
/// `info` (or `VCSYNC_E2E_LOG`).
pub fn vcsync_command() -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("VCSYNC_") || key.starts_with("KUBERNETES_SERVICE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("KUBECONFIG")
        .env_remove("POD_NAME")
        .env_remove("RUST_LOG")
        .env(
            "VCSYNC_LOG_LEVEL",
            std::env::var("VCSYNC_E2E_LOG").unwrap_or_else(|_| "info".to_owned()),
        )
        // Tests run side by side: each vcsync's kubelet endpoint takes a free port.
        .env("VCSYNC_KUBELET_PORT", "0")
        .args(["--log-format", "json"]);
    cmd
}

/// One running `vcsync`, its stderr collected line by line; killed on drop so a failed
/// assertion leaves nothing behind.
pub struct Process {
    pub child: Child,
    /// A name for messages (the leader identity, when there is one).
    pub name: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Process {
    pub fn spawn(mut cmd: Command, name: &str) -> Process {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("vcsync starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        // Read continuously: a full pipe would block the process.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push(line);
            }
        });
        Process {
            child,
            name: name.to_owned(),
            lines,
        }
    }

    pub fn logs(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    pub fn logged(&self, needle: &str) -> bool {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }

    /// How many log lines contain `needle`.
    pub fn count_logged(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// The health endpoint's address, from the log line announcing it.
    pub async fn addr(&self, within: Duration) -> SocketAddr {
        wait_for(within, "the health endpoint's log line", || async {
            self.lines.lock().unwrap().iter().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                v["metrics_addr"].as_str()?.parse().ok()
            })
        })
        .await
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "vcsync {} did not exit within {within:?}; logs:\n{}",
                self.name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on the health endpoint: status code and body.
#[allow(unused_imports)] // not every test file reads the health endpoint
pub use vcsync_e2e::testutil::http_get as get;

/// The value of the sample line starting with `series` (full name and labels).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
