//! End-to-end tests of the `vcsync` binary's command line: help text, exit
//! codes and the one-line error messages an operator sees.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_vcsync");

/// Every `vcsync run` flag with its environment variable.
const RUN_FLAGS: [(&str, &str); 38] = [
    ("--tenant", "VCSYNC_TENANT"),
    ("--host-namespace", "VCSYNC_HOST_NAMESPACE"),
    ("--virtual-kubeconfig", "VCSYNC_VIRTUAL_KUBECONFIG"),
    ("--host-kubeconfig", "VCSYNC_HOST_KUBECONFIG"),
    (
        "--workload-service-account",
        "VCSYNC_WORKLOAD_SERVICE_ACCOUNT",
    ),
    ("--concurrency", "VCSYNC_CONCURRENCY"),
    ("--metrics-addr", "VCSYNC_METRICS_ADDR"),
    ("--api-timeout-seconds", "VCSYNC_API_TIMEOUT_SECONDS"),
    ("--log-format", "VCSYNC_LOG_FORMAT"),
    ("--log-level", "VCSYNC_LOG_LEVEL"),
    ("--api-service", "VCSYNC_API_SERVICE"),
    ("--dns-service", "VCSYNC_DNS_SERVICE"),
    ("--cluster-domain", "VCSYNC_CLUSTER_DOMAIN"),
    ("--policy", "VCSYNC_POLICY"),
    ("--require-guardrails", "VCSYNC_REQUIRE_GUARDRAILS"),
    ("--host-service-cidr", "VCSYNC_HOST_SERVICE_CIDR"),
    ("--kubeconfig-secret", "VCSYNC_KUBECONFIG_SECRET"),
    ("--kubeconfig-server", "VCSYNC_KUBECONFIG_SERVER"),
    ("--kubeconfig-credentials", "VCSYNC_KUBECONFIG_CREDENTIALS"),
    ("--leader-elect", "VCSYNC_LEADER_ELECT"),
    ("--lease-name", "VCSYNC_LEASE_NAME"),
    ("--lease-duration-seconds", "VCSYNC_LEASE_DURATION_SECONDS"),
    ("--renew-deadline-seconds", "VCSYNC_RENEW_DEADLINE_SECONDS"),
    ("--retry-period-seconds", "VCSYNC_RETRY_PERIOD_SECONDS"),
    ("--pod-name", "VCSYNC_POD_NAME"),
    ("--kubelet-address", "VCSYNC_KUBELET_ADDRESS"),
    ("--kubelet-port", "VCSYNC_KUBELET_PORT"),
    ("--kubelet-bind-address", "VCSYNC_KUBELET_BIND_ADDRESS"),
    ("--kubelet-client-ca", "VCSYNC_KUBELET_CLIENT_CA"),
    ("--kubelet-client-names", "VCSYNC_KUBELET_CLIENT_NAMES"),
    (
        "--kubelet-serving-ca-cert",
        "VCSYNC_KUBELET_SERVING_CA_CERT",
    ),
    ("--kubelet-serving-ca-key", "VCSYNC_KUBELET_SERVING_CA_KEY"),
    ("--kubelet-tls-cert", "VCSYNC_KUBELET_TLS_CERT"),
    ("--kubelet-tls-key", "VCSYNC_KUBELET_TLS_KEY"),
    ("--metrics-api-port", "VCSYNC_METRICS_API_PORT"),
    ("--metrics-api-address", "VCSYNC_METRICS_API_ADDRESS"),
    ("--metrics-api-client-ca", "VCSYNC_METRICS_API_CLIENT_CA"),
    (
        "--metrics-api-client-names",
        "VCSYNC_METRICS_API_CLIENT_NAMES",
    ),
];

/// A `vcsync` command with no configuration leaking in from the test's own
/// environment (a developer's `VCSYNC_*`, `KUBECONFIG` or an in-cluster CI).
fn vcsync() -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("VCSYNC_") || key.starts_with("KUBERNETES_SERVICE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("KUBECONFIG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

fn run_to_end(cmd: &mut Command) -> (Output, String) {
    let output = cmd.output().expect("vcsync starts");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stderr)
}

fn assert_no_panic(stderr: &str) {
    assert!(!stderr.contains("panicked"), "panic in stderr:\n{stderr}");
    assert!(
        !stderr.contains("backtrace"),
        "backtrace in stderr:\n{stderr}"
    );
    assert!(!stderr.contains("Stack backtrace"), "{stderr}");
}

/// The last stderr line, which is the operator-facing error.
fn error_line(stderr: &str) -> &str {
    let line = stderr.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("error: "),
        "last line is not an error:\n{stderr}"
    );
    line
}

fn write_kubeconfig(dir: &Path, name: &str, server: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n\
             contexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\n\
             current-context: ctx\nusers:\n- name: u\n  user:\n    token: t\n"
        ),
    )
    .unwrap();
    path
}

const VERSION_BODY: &str = r#"{"major":"1","minor":"32","gitVersion":"v1.32.3","gitCommit":"0","gitTreeState":"clean","buildDate":"2025-03-11T00:00:00Z","goVersion":"go1.23","compiler":"gc","platform":"linux/amd64"}"#;

/// Serves `GET /version` over plain HTTP on a loopback port, on a background
/// thread for the rest of the test process; returns its URL.
fn version_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{VERSION_BODY}",
                VERSION_BODY.len()
            );
        }
    });
    url
}

/// Kills the child on drop so a failed assertion leaves no process behind.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vcsync starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits until a stderr line contains `needle`, or fails after `within`.
    fn wait_for_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no stderr line containing {needle:?} within {within:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "vcsync did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn run_help_lists_every_flag_env_var_and_default() {
    let (output, _) = run_to_end(vcsync().args(["run", "--help"]));
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for (flag, env) in RUN_FLAGS {
        assert!(help.contains(flag), "{flag} missing from help:\n{help}");
        assert!(
            help.contains(&format!("[env: {env}")),
            "{env} missing from help:\n{help}"
        );
    }
    for default in [
        "[default: vcsync-workload]",
        "[default: 8]",
        "[default: 0.0.0.0:8080]",
        "[default: text]",
        "[default: info]",
        "[default: 10]",
    ] {
        assert!(
            help.contains(default),
            "{default} missing from help:\n{help}"
        );
    }
}

#[test]
fn top_level_help_lists_subcommands() {
    let (output, _) = run_to_end(vcsync().arg("--help"));
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for sub in ["run", "kubeconfig", "policy", "--log-format", "--log-level"] {
        assert!(help.contains(sub), "{sub} missing from help:\n{help}");
    }
}

#[test]
fn missing_virtual_kubeconfig_names_it_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("does-not-exist.kubeconfig");
    let (output, stderr) = run_to_end(vcsync().args([
        "run",
        "--tenant",
        "tenant-a",
        "--host-namespace",
        "host-ns",
        "--virtual-kubeconfig",
        missing.to_str().unwrap(),
    ]));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_no_panic(&stderr);
    let line = error_line(&stderr);
    assert!(line.contains("virtual kubeconfig"), "{line}");
    assert!(line.contains(missing.to_str().unwrap()), "{line}");
    assert!(line.contains("No such file or directory"), "{line}");
}

#[test]
fn flags_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("from-env.kubeconfig");
    let (output, stderr) = run_to_end(
        vcsync()
            .arg("run")
            .env("VCSYNC_TENANT", "tenant-a")
            .env("VCSYNC_HOST_NAMESPACE", "host-ns")
            .env("VCSYNC_VIRTUAL_KUBECONFIG", &missing),
    );
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let line = error_line(&stderr);
    assert!(line.contains(missing.to_str().unwrap()), "{line}");
}

#[test]
fn closed_virtual_port_names_virtual_and_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let virtual_kc = write_kubeconfig(dir.path(), "virtual.kubeconfig", "https://127.0.0.1:1");
    let host_kc = write_kubeconfig(dir.path(), "host.kubeconfig", &version_server());
    let (output, stderr) = run_to_end(vcsync().args([
        "run",
        "--tenant",
        "tenant-a",
        "--host-namespace",
        "host-ns",
        "--virtual-kubeconfig",
        virtual_kc.to_str().unwrap(),
        "--host-kubeconfig",
        host_kc.to_str().unwrap(),
    ]));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_no_panic(&stderr);
    let line = error_line(&stderr);
    assert!(
        line.starts_with(
            "error: virtual API at https://127.0.0.1:1/ is not reachable: connection refused"
        ),
        "{line}"
    );
    assert!(!line.contains("host API"), "host API answered, yet: {line}");
}

#[test]
fn absent_host_kubeconfig_outside_a_pod_says_in_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let virtual_kc = write_kubeconfig(dir.path(), "virtual.kubeconfig", &version_server());
    let (output, stderr) = run_to_end(vcsync().args([
        "run",
        "--tenant",
        "tenant-a",
        "--host-namespace",
        "host-ns",
        "--virtual-kubeconfig",
        virtual_kc.to_str().unwrap(),
    ]));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_no_panic(&stderr);
    let line = error_line(&stderr);
    assert!(
        line.contains("in-cluster config for the host API"),
        "{line}"
    );
    assert!(line.contains("--host-kubeconfig"), "{line}");
}

#[test]
fn invalid_tenant_is_a_usage_error() {
    let (output, stderr) = run_to_end(vcsync().args([
        "run",
        "--tenant",
        "Tenant_A",
        "--host-namespace",
        "host-ns",
        "--virtual-kubeconfig",
        "/v.kubeconfig",
    ]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_no_panic(&stderr);
    assert!(
        stderr.contains("invalid value 'Tenant_A' for '--tenant <TENANT>'"),
        "{stderr}"
    );
    assert!(stderr.contains("lowercase RFC 1123 label"), "{stderr}");
}

#[test]
fn reachable_apis_are_logged_as_json_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let url = version_server();
    let virtual_kc = write_kubeconfig(dir.path(), "virtual.kubeconfig", &url);
    let host_kc = write_kubeconfig(dir.path(), "host.kubeconfig", &url);
    let mut running = Running::spawn(vcsync().args([
        "--log-format",
        "json",
        "run",
        "--tenant",
        "tenant-a",
        "--host-namespace",
        "host-ns",
        "--virtual-kubeconfig",
        virtual_kc.to_str().unwrap(),
        "--host-kubeconfig",
        host_kc.to_str().unwrap(),
        "--metrics-addr",
        "127.0.0.1:0",
        "--kubelet-port",
        "0",
    ]));
    let line = running.wait_for_line("both APIs reachable", Duration::from_secs(30));
    let event: serde_json::Value = serde_json::from_str(&line).expect("log line is JSON");
    assert_eq!(event["level"], "INFO", "{line}");
    assert_eq!(event["virtual_version"], "v1.32.3", "{line}");
    running.wait_for_line(
        "serving /livez, /readyz and /metrics",
        Duration::from_secs(10),
    );

    let status = Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    assert!(running.wait_exit(Duration::from_secs(10)).success());
}
