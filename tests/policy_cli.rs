//! End-to-end tests of `vcsync policy check FILE`: the effective policy on stdout (exit 0), or
//! one error line naming the file, the YAML path and the reason (exit 1).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use vcsync::policy::Policy;

const BIN: &str = env!("CARGO_BIN_EXE_vcsync");

fn check(file: &Path) -> (Output, String, String) {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("VCSYNC_") {
            cmd.env_remove(key);
        }
    }
    let output = cmd
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .args(["policy", "check"])
        .arg(file)
        .output()
        .expect("vcsync starts");
    let stdout = String::from_utf8(output.stdout.clone()).expect("utf-8 stdout");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_valid_policy_prints_the_effective_policy() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "tenant-a.yaml",
        "podSecurity:\n  level: restricted\npods:\n  runtimeClass:\n    forced: gvisor\n",
    );
    let (output, stdout, stderr) = check(&file);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    for expected in [
        "level: restricted",
        "forced: gvisor",
        "allowNodePort: false",
        "allowLoadBalancer: false",
        "allowedExternalIPCidrs: []",
        "nginx.ingress.kubernetes.io/*-snippet",
        "action: refuse",
        "networkPolicies:",
        "sync: true",
        "allowedCidrs: []",
    ] {
        assert!(stdout.contains(expected), "{expected} missing:\n{stdout}");
    }
    // The printed policy is itself a valid policy file meaning the same thing.
    let printed = Policy::from_yaml(&stdout).expect("printed policy parses");
    let original = Policy::load(&file).unwrap();
    assert_eq!(printed, original);
}

#[test]
fn an_empty_file_is_the_default_policy() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "empty.yaml", "");
    let (output, stdout, stderr) = check(&file);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(Policy::from_yaml(&stdout).unwrap(), Policy::default());
    assert!(stdout.contains("level: baseline"), "{stdout}");
}

#[test]
fn an_unknown_key_is_named_with_its_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.yaml",
        "pods:\n  runtimeClass:\n    force: gvisor\n",
    );
    let (output, stdout, stderr) = check(&file);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let line = stderr.trim_end();
    assert!(line.starts_with("error: invalid policy "), "{line}");
    assert!(line.contains(&file.display().to_string()), "{line}");
    assert!(
        line.contains("pods.runtimeClass.force: unknown field `force`"),
        "{line}"
    );
    assert!(line.ends_with("(line 3, column 5)"), "{line}");
}

#[test]
fn an_invalid_value_is_named_with_its_path_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.yaml",
        "services:\n  allowedEndpointCidrs:\n    - 10.0.0.0/8\n    - 169.254.0.1/16\n",
    );
    let (output, _, stderr) = check(&file);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "services.allowedEndpointCidrs[1]: invalid CIDR \"169.254.0.1/16\": host bits are set"
        ),
        "{stderr}"
    );

    let file = write(
        dir.path(),
        "conflict.yaml",
        "ingress:\n  class:\n    forced: nginx\n    allowed: [traefik]\n",
    );
    let (output, _, stderr) = check(&file);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ingress.class.allowed: set either forced or allowed"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_is_a_runtime_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let (output, _, stderr) = check(&missing);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: cannot read "), "{stderr}");
    assert!(stderr.contains("nope.yaml"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn run_help_documents_the_policy_flag() {
    let output = Command::new(BIN)
        .args(["run", "--help"])
        .output()
        .expect("vcsync starts");
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("--policy <FILE>"), "{help}");
    assert!(help.contains("VCSYNC_POLICY"), "{help}");
}
