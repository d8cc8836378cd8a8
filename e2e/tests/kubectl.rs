//! kubectl compatibility: drives the real kubectl binary (v1.32, `/usr/bin/kubectl` or
//! `$KUBECTL`) against the in-process test API server through the commands vcsync's users and
//! tests rely on: get (tables, `-o json`, `-w`), create (YAML and generator/protobuf), apply,
//! label, annotate, patch, wait and delete.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use vcsync_e2e::apiserver::{ServerConfig, TestApiServer};

/// The kubectl binary: `$KUBECTL` or `/usr/bin/kubectl`. CI installs it; without it this test
/// cannot say anything, so it fails loudly instead of passing vacuously.
fn kubectl_binary() -> PathBuf {
    let p = std::env::var_os("KUBECTL")
        .map_or_else(|| PathBuf::from("/usr/bin/kubectl"), PathBuf::from);
    assert!(
        p.exists(),
        "kubectl not found at {} (install kubectl v1.32 or set KUBECTL=/path/to/kubectl)",
        p.display()
    );
    p
}

/// kubectl bound to one server, with its own discovery/OpenAPI cache directory.
struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    cache: tempfile::TempDir,
    /// Watch requests the server has seen so far (to know a `kubectl wait` is listening).
    watches: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl Kubectl {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("kubectl runs")
    }

    /// Run and require success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
        stdout
    }

    /// Run and require failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.ok(&a);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("kubectl {args:?} -o json gave invalid JSON ({e}): {out}"))
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl starts")
    }
}

/// Lines of a child's stdout, read on a thread so the test can wait with a deadline.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn of(child: &mut Child) -> Lines {
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Wait until a line satisfies `pred`; panics with everything seen after `timeout`.
    fn wait_for(&mut self, timeout: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "timed out waiting for {what}; output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

/// Wait for a child to exit within `timeout` (killing it otherwise) and return its output.
fn wait_child(mut child: Child, timeout: Duration, what: &str) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().expect("child status").is_some() {
            return child.wait_with_output().expect("child output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("child output");
            panic!(
                "{what} did not finish within {timeout:?}:\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Poll `f` until it returns `Some` or `timeout` passes.
fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write manifest");
    p
}

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drives_the_test_api_server() {
    let bin = kubectl_binary();
    let server = TestApiServer::start(ServerConfig::default())
        .await
        .expect("server starts");
    let kubeconfig = server.kubeconfig_path();
    if !kubeconfig.exists() {
        server
            .write_kubeconfig(&kubeconfig)
            .expect("kubeconfig written");
    }
    let server = std::sync::Arc::new(server);
    let counter = server.clone();
    let k = Kubectl {
        bin,
        kubeconfig,
        cache: tempfile::tempdir().expect("cache dir"),
        watches: Box::new(move || counter.count("watch", Some("configmaps"))),
    };
    // kubectl blocks; keep it off the runtime's worker threads.
    tokio::task::spawn_blocking(move || scenario(&k))
        .await
        .expect("scenario");
    drop(server);
}

fn scenario(k: &Kubectl) {
    let files = tempfile::tempdir().expect("manifest dir");

    // get: server-side tables.
    let out = k.ok(&["get", "namespaces"]);
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "STATUS", "AGE"], "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("default ") && l.contains("Active")),
        "{out}"
    );

    // create namespace: a typed client, protobuf body.
    assert_eq!(
        k.ok(&["create", "namespace", "kt"]).trim(),
        "namespace/kt created"
    );
    assert_eq!(
        k.json(&["get", "namespace", "kt"])["status"]["phase"],
        "Active"
    );

    // create -f: OpenAPI v3 download, fieldValidation=Strict.
    let cm = write(
        files.path(),
        "cm1.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm1\n  namespace: kt\ndata:\n  a: \"1\"\n",
    );
    assert_eq!(
        k.ok(&["create", "-f", cm.to_str().unwrap()]).trim(),
        "configmap/cm1 created"
    );
    let err = k.fails(&["create", "-f", cm.to_str().unwrap()]);
    assert!(
        err.contains("AlreadyExists") && err.contains("configmaps \"cm1\" already exists"),
        "{err}"
    );

    // Server-side field validation: an unknown field is rejected with Go's strict decoding error.
    let bogus = write(
        files.path(),
        "bogus.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bogus\n  namespace: kt\nbogus: 1\n",
    );
    let err = k.fails(&["create", "-f", bogus.to_str().unwrap()]);
    assert!(
        err.contains("strict decoding error: unknown field \"bogus\""),
        "{err}"
    );

    // create configmap: generator, protobuf body.
    assert_eq!(
        k.ok(&[
            "create",
            "configmap",
            "proto",
            "-n",
            "kt",
            "--from-literal=a=b",
            "--from-literal=c=d"
        ])
        .trim(),
        "configmap/proto created"
    );
    let proto = k.json(&["get", "configmap", "proto", "-n", "kt"]);
    assert_eq!(proto["data"], serde_json::json!({"a": "b", "c": "d"}));
    assert!(proto["metadata"]["uid"].is_string());

    // create secret generic: protobuf with bytes.
    k.ok(&[
        "create",
        "secret",
        "generic",
        "sec",
        "-n",
        "kt",
        "--from-literal=password=hunter2",
    ]);
    assert_eq!(
        k.json(&["get", "secret", "sec", "-n", "kt"])["data"]["password"],
        "aHVudGVyMg=="
    );

    // apply: create, then change (client-side apply computes a strategic merge patch).
    let applied = write(
        files.path(),
        "applied.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: kt\n  labels:\n    app: web\ndata:\n  k: v1\n",
    );
    assert_eq!(
        k.ok(&["apply", "-f", applied.to_str().unwrap()]).trim(),
        "configmap/applied created"
    );
    assert_eq!(
        k.ok(&["apply", "-f", applied.to_str().unwrap()]).trim(),
        "configmap/applied unchanged"
    );
    std::fs::write(&applied, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: kt\n  labels:\n    app: web\ndata:\n  k: v2\n  extra: x\n")
        .expect("rewrite manifest");
    assert_eq!(
        k.ok(&["apply", "-f", applied.to_str().unwrap()]).trim(),
        "configmap/applied configured"
    );
    let got = k.json(&["get", "configmap", "applied", "-n", "kt"]);
    assert_eq!(got["data"], serde_json::json!({"k": "v2", "extra": "x"}));
    assert!(
        got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string(),
        "{got}"
    );

    // Server-side apply.
    assert_eq!(
        k.ok(&["apply", "--server-side", "-f", applied.to_str().unwrap()])
            .trim(),
        "configmap/applied serverside-applied"
    );

    // label, annotate, patch --type merge.
    assert_eq!(
        k.ok(&["label", "configmap", "cm1", "-n", "kt", "env=test"])
            .trim(),
        "configmap/cm1 labeled"
    );
    assert_eq!(
        k.ok(&["annotate", "configmap", "cm1", "-n", "kt", "note=hello"])
            .trim(),
        "configmap/cm1 annotated"
    );
    assert_eq!(
        k.ok(&[
            "patch",
            "configmap",
            "cm1",
            "-n",
            "kt",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"b":"2"}}"#
        ])
        .trim(),
        "configmap/cm1 patched"
    );
    let cm1 = k.json(&["get", "configmap", "cm1", "-n", "kt"]);
    assert_eq!(cm1["metadata"]["labels"]["env"], "test");
    assert_eq!(cm1["metadata"]["annotations"]["note"], "hello");
    assert_eq!(cm1["data"], serde_json::json!({"a": "1", "b": "2"}));
    let out = k.ok(&["get", "configmaps", "-n", "kt", "-l", "env=test"]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "DATA", "AGE"], "{out}");
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(&rows[1][..2], ["cm1", "2"], "{out}");
    let err = k.fails(&["label", "configmap", "cm1", "-n", "kt", "env=other"]);
    assert!(err.contains("already has a value"), "{err}");

    // get -w: the initial table, then a row per change.
    let mut watch = k.spawn(&["get", "configmaps", "-n", "kt", "-w"]);
    let mut lines = Lines::of(&mut watch);
    lines.wait_for(TIMEOUT, "the initial listing", |l| l.starts_with("cm1 "));
    k.ok(&[
        "create",
        "configmap",
        "watched",
        "-n",
        "kt",
        "--from-literal=x=y",
    ]);
    lines.wait_for(TIMEOUT, "the watched configmap's row", |l| {
        l.starts_with("watched ")
    });
    k.ok(&[
        "patch",
        "configmap",
        "watched",
        "-n",
        "kt",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"z":"1"}}"#,
    ]);
    lines.wait_for(TIMEOUT, "the modified row (2 data keys)", |l| {
        let cells: Vec<&str> = l.split_whitespace().collect();
        cells.first() == Some(&"watched") && cells.get(1) == Some(&"2")
    });
    let _ = watch.kill();
    let _ = watch.wait();

    // wait --for=jsonpath.
    let waiter = k.spawn(&[
        "wait",
        "configmap/cm1",
        "-n",
        "kt",
        "--for=jsonpath={.data.ready}=yes",
        "--timeout=30s",
    ]);
    k.ok(&[
        "patch",
        "configmap",
        "cm1",
        "-n",
        "kt",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"ready":"yes"}}"#,
    ]);
    let out = wait_child(waiter, TIMEOUT, "kubectl wait --for=jsonpath");
    assert!(
        out.status.success(),
        "wait --for=jsonpath failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap/cm1 condition met"
    );

    // wait --for=condition on a pod whose status we set (there is no kubelet here).
    poll(TIMEOUT, "the default ServiceAccount in kt", || {
        k.output(&["get", "serviceaccount", "default", "-n", "kt"])
            .status
            .success()
            .then_some(())
    });
    let pod = write(
        files.path(),
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p1\n  namespace: kt\nspec:\n  containers:\n  - name: c\n    image: busybox\n",
    );
    assert_eq!(
        k.ok(&["create", "-f", pod.to_str().unwrap()]).trim(),
        "pod/p1 created"
    );
    let out = k.ok(&["get", "pods", "-n", "kt", "-o", "wide"]);
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or("")
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ],
        "{out}"
    );
    let row: Vec<&str> = out
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(&row[..4], ["p1", "0/1", "Pending", "0"], "{out}");
    let waiter = k.spawn(&[
        "wait",
        "pod/p1",
        "-n",
        "kt",
        "--for=condition=Ready",
        "--timeout=30s",
    ]);
    k.ok(&[
        "patch",
        "pod",
        "p1",
        "-n",
        "kt",
        "--subresource=status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
    ]);
    let out = wait_child(waiter, TIMEOUT, "kubectl wait --for=condition=Ready");
    assert!(
        out.status.success(),
        "wait --for=condition failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pod/p1 condition met"
    );

    // wait --for=delete: an object held by a finalizer goes once the finalizer is removed.
    let held = write(
        files.path(),
        "held.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: kt\n  finalizers:\n  - example.com/hold\n",
    );
    k.ok(&["create", "-f", held.to_str().unwrap()]);
    k.ok(&["delete", "configmap", "held", "-n", "kt", "--wait=false"]);
    assert!(
        k.json(&["get", "configmap", "held", "-n", "kt"])["metadata"]["deletionTimestamp"]
            .is_string()
    );
    let watches_before = (k.watches)();
    let waiter = k.spawn(&[
        "wait",
        "configmap/held",
        "-n",
        "kt",
        "--for=delete",
        "--timeout=30s",
    ]);
    // Remove the finalizer only once kubectl is watching, or it may find the object already gone.
    let deadline = std::time::Instant::now() + TIMEOUT;
    while (k.watches)() == watches_before {
        assert!(
            std::time::Instant::now() < deadline,
            "kubectl wait never started watching"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    k.ok(&[
        "patch",
        "configmap",
        "held",
        "-n",
        "kt",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    let out = wait_child(waiter, TIMEOUT, "kubectl wait --for=delete");
    assert!(
        out.status.success(),
        "wait --for=delete failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap/held condition met"
    );

    // delete.
    assert_eq!(
        k.ok(&["delete", "configmap", "cm1", "-n", "kt"]).trim(),
        "configmap \"cm1\" deleted"
    );
    let err = k.fails(&["get", "configmap", "cm1", "-n", "kt"]);
    assert!(
        err.contains("Error from server (NotFound): configmaps \"cm1\" not found"),
        "{err}"
    );
    assert!(
        k.ok(&[
            "delete",
            "configmap",
            "cm1",
            "-n",
            "kt",
            "--ignore-not-found"
        ])
        .trim()
        .is_empty()
    );
}
