//! The tenant's workload access through vcsync: real `kubectl logs`, `exec`, `cp` and
//! `port-forward` against the virtual API server, which calls the virtual node's kubelet
//! (vcsync's endpoint), which relays to the host API's pod subresources, which call the
//! simulated host kubelet. The pod name the host kubelet sees is the host copy's.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;
use vcsync_e2e::harness::Harness;
use vcsync_e2e::kubelet::logs;
use vcsync_e2e::testutil::wait_for;

const WAIT: Duration = Duration::from_secs(60);

fn kubectl(
    h: &Harness,
    home: &std::path::Path,
    args: &[&str],
    stdin: &[u8],
) -> (i32, String, String) {
    use std::io::Write as _;
    let vs = h.virtual_server.as_ref().expect("test servers");
    let kc = home.join("virtual.kubeconfig");
    if !kc.exists() {
        vs.write_kubeconfig(&kc).unwrap();
    }
    let mut child = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kc)
        .arg("--cache-dir")
        .arg(home.join("cache"))
        .args(args)
        .env("HOME", home)
        // The test API server relays SPDY; kubectl falls back to it from WebSocket anyway.
        .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
        .current_dir(home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn running_pod(h: &Harness, ns: &str, name: &str) {
    let pods: Api<Pod> = h.virt_api(ns);
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    wait_for(WAIT, "the virtual pod running", || async {
        let p = pods.get(name).await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
}

// kubectl runs as a blocking child process: the in-process servers need other threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_logs_exec_and_cp_reach_the_host_pod_through_vcsync() {
    let mut h = Harness::new("access").await;
    if h.virtual_server.is_none() {
        panic!("this test drives the in-process kubelet endpoint; it needs the test API servers");
    }
    h.start_engine();
    running_pod(&h, "default", "web").await;
    let host_pod = h.host_name("default", "web");
    let home = tempfile::tempdir().unwrap();

    // The virtual node names vcsync's endpoint, never the host node's address.
    let node_name = h
        .virt_api::<Pod>("default")
        .get("web")
        .await
        .unwrap()
        .spec
        .unwrap()
        .node_name
        .unwrap();
    let nodes: Api<Node> = Api::all(h.virt.clone());
    let node = wait_for(WAIT, "the virtual node's kubelet endpoint", || async {
        let n = nodes.get(&node_name).await.ok()?;
        let st = n.status.clone()?;
        (st.daemon_endpoints?.kubelet_endpoint?.port != 0).then_some(n)
    })
    .await;
    let addrs = node.status.unwrap().addresses.unwrap();
    assert_eq!(addrs.len(), 1, "{addrs:?}");
    assert_eq!(
        (addrs[0].type_.as_str(), addrs[0].address.as_str()),
        ("InternalIP", "127.0.0.1")
    );

    let (code, out, err) = kubectl(&h, home.path(), &["logs", "web", "--tail=2"], b"");
    assert_eq!(
        (code, out),
        (
            0,
            format!(
                "{}\n{}\n",
                logs::line(&host_pod, "app", 9),
                logs::line(&host_pod, "app", 10)
            )
        ),
        "{err}"
    );
    let (code, out, err) = kubectl(&h, home.path(), &["logs", "web", "-c", "app"], b"");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 10, "{out}");

    let (code, out, err) = kubectl(&h, home.path(), &["exec", "web", "--", "echo", "hi"], b"");
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{err}");
    let (code, _, err) = kubectl(
        &h,
        home.path(),
        &["exec", "web", "--", "sh", "-c", "exit 3"],
        b"",
    );
    assert_eq!(code, 3, "the exit code comes through: {err}");
    let (code, out, err) = kubectl(
        &h,
        home.path(),
        &["exec", "-i", "web", "--", "cat"],
        b"from stdin\n",
    );
    assert_eq!((code, out.as_str()), (0, "from stdin\n"), "{err}");

    // cp both ways (exec + tar).
    std::fs::write(home.path().join("local.txt"), b"copied\n").unwrap();
    let (code, _, err) = kubectl(
        &h,
        home.path(),
        &["cp", "local.txt", "web:/tmp/remote.txt"],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = kubectl(
        &h,
        home.path(),
        &["cp", "web:/tmp/remote.txt", "back.txt"],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(home.path().join("back.txt")).unwrap(),
        b"copied\n"
    );

    // An unknown pod is a clean error, not a host object.
    let (code, _, err) = kubectl(&h, home.path(), &["logs", "nothere"], b"");
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");
    h.stop_engine().await;
}

#[tokio::test]
async fn only_the_virtual_api_servers_certificate_may_call_the_kubelet_endpoint() {
    let mut h = Harness::new("kauth").await;
    if h.virtual_server.is_none() {
        panic!("this test needs the test API servers");
    }
    h.start_engine();
    running_pod(&h, "default", "web").await;
    let port = wait_for(WAIT, "the kubelet endpoint", || async {
        let n: Api<Node> = Api::all(h.virt.clone());
        let list = n.list(&Default::default()).await.ok()?;
        list.items
            .into_iter()
            .find_map(|n| n.status?.daemon_endpoints?.kubelet_endpoint.map(|e| e.port))
            .filter(|p| *p != 0)
    })
    .await;
    let vs = h.virtual_server.as_ref().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let path = "/containerLogs/default/web/app";
    let tls = vs.tls();
    let ca = vcsync_e2e::kubelet::CaPem {
        cert_pem: tls.client_ca_pem.clone(),
        key_pem: tls.client_ca_key_pem.clone(),
    };
    let get = |cert: Option<vcsync_e2e::kubelet::ClientCertPem>| async move {
        // The serving certificate chains to the virtual server's CA, as k3s verifies it.
        let client = vcsync_e2e::kubelet::api_server::client::KubeletClient::new(
            addr,
            vs.ca_pem(),
            cert.as_ref(),
        )
        .expect("client");
        client.get(path).await
    };
    // No client certificate: refused in the handshake.
    assert!(
        get(None).await.is_err(),
        "an anonymous caller got an answer"
    );
    // The virtual control plane's CA, but another identity (the tenant admin's): 403.
    let admin = vcsync_e2e::kubelet::generate_client_cert(&ca, "system:admin", &["system:masters"])
        .unwrap();
    let (code, body) = get(Some(admin)).await.expect("an answer");
    assert_eq!(code, 403, "{body}");
    // Another CA altogether: refused in the handshake.
    let other = vcsync_e2e::kubelet::generate_ca("someone-else").unwrap();
    let stranger =
        vcsync_e2e::kubelet::generate_client_cert(&other, "system:apiserver", &[]).unwrap();
    assert!(get(Some(stranger)).await.is_err());
    // The virtual API server's own identity: served.
    let apiserver = vcsync_e2e::kubelet::ClientCertPem {
        cert_pem: tls.kubelet_client_cert_pem.clone(),
        key_pem: tls.kubelet_client_key_pem.clone(),
    };
    let (code, body) = get(Some(apiserver)).await.expect("an answer");
    assert_eq!(code, 200, "{body}");
    h.stop_engine().await;
}

/// `kubectl` as a child the test reads while it runs (follow, attach, port-forward), killed on
/// drop.
fn kubectl_child(h: &Harness, home: &std::path::Path, args: &[&str]) -> tokio::process::Child {
    let vs = h.virtual_server.as_ref().expect("test servers");
    let kc = home.join("virtual.kubeconfig");
    if !kc.exists() {
        vs.write_kubeconfig(&kc).unwrap();
    }
    tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kc)
        .arg("--cache-dir")
        .arg(home.join("cache"))
        .args(args)
        .env("HOME", home)
        .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl runs")
}

/// Reads `out` until `done(all read so far)`, within [`WAIT`].
async fn read_until(
    out: &mut (impl tokio::io::AsyncRead + Unpin),
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut seen = Vec::new();
    let r = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            if done(&String::from_utf8_lossy(&seen)) {
                return;
            }
            let n = out.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "{what}: the stream ended early: {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(r.is_ok(), "{what}: not seen in time; got {text:?}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_follow_since_previous_attach_tty_and_port_forward_through_vcsync() {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
    let mut h = Harness::new("stream").await;
    if h.virtual_server.is_none() {
        panic!("this test drives the in-process kubelet endpoint; it needs the test API servers");
    }
    h.start_engine();
    running_pod(&h, "default", "web").await;
    let host_pod = h.host_name("default", "web");
    let home = tempfile::tempdir().unwrap();

    // --previous: the host kubelet's refusal, in the tenant's names.
    let (code, _, err) = kubectl(&h, home.path(), &["logs", "web", "--previous"], b"");
    assert_ne!(code, 0);
    assert!(
        err.contains(r#"previous terminated container "app" in pod "web" not found"#),
        "{err}"
    );
    assert!(!err.contains(&host_pod), "the host pod name leaked: {err}");

    // --since-time and --timestamps: line k was written k seconds after the host pod started.
    let start: jiff::Timestamp = h
        .host_api::<Pod>()
        .get(&host_pod)
        .await
        .unwrap()
        .status
        .unwrap()
        .start_time
        .unwrap()
        .0
        .to_string()
        .parse()
        .unwrap();
    let since = (start + jiff::SignedDuration::from_secs(5)).to_string();
    let (code, out, err) = kubectl(
        &h,
        home.path(),
        &["logs", "web", &format!("--since-time={since}")],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    let want: String = (5..=10)
        .map(|k| format!("{}\n", logs::line(&host_pod, "app", k)))
        .collect();
    assert_eq!(out, want);
    let (code, out, err) = kubectl(
        &h,
        home.path(),
        &["logs", "web", "--timestamps", "--tail=1"],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    let (stamp, line) = out.trim_end().split_once(' ').expect("a timestamp");
    let stamp: jiff::Timestamp = stamp.parse().unwrap();
    assert_eq!(stamp, start + jiff::SignedDuration::from_secs(10));
    assert_eq!(line, logs::line(&host_pod, "app", 10));

    // -f: the stream stays open and grows.
    let mut follow = kubectl_child(&h, home.path(), &["logs", "-f", "web"]);
    let mut lines = tokio::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    for k in 1..=13 {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("the followed log grows")
            .unwrap()
            .expect("the followed log is still open");
        assert_eq!(line, logs::line(&host_pod, "app", k));
    }
    follow.kill().await.unwrap();

    // attach -i: the container's banner, then stdin echoed.
    let mut attach = kubectl_child(&h, home.path(), &["attach", "-i", "web", "-c", "app"]);
    let mut stdin = attach.stdin.take().unwrap();
    let mut stdout = attach.stdout.take().unwrap();
    read_until(&mut stdout, "the attach banner", |s| {
        s.contains("attached to")
    })
    .await;
    stdin.write_all(b"typed through\n").await.unwrap();
    read_until(&mut stdout, "stdin echoed", |s| {
        s.contains("typed through\n")
    })
    .await;
    drop(stdin);
    let status = tokio::time::timeout(WAIT, attach.wait())
        .await
        .expect("attach ends when stdin closes")
        .unwrap();
    assert!(status.success(), "{status}");

    // exec -it in a terminal: the tty is negotiated (TERM is set), and resizes come through.
    let kc = home.path().join("virtual.kubeconfig");
    let cache = home.path().join("cache");
    let kubectl_cmd = format!(
        "kubectl --kubeconfig {} --cache-dir {}",
        kc.display(),
        cache.display()
    );
    let script = |cmd: String| {
        tokio::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("HOME", home.path())
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("script runs")
    };
    let env = script(format!("{kubectl_cmd} exec -it web -- env"));
    let out = tokio::time::timeout(WAIT, env.wait_with_output())
        .await
        .expect("exec -it env ends")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("TERM=xterm"),
        "no tty was negotiated: {text:?}"
    );
    let mut sized = script(format!(
        "stty cols 100 rows 30; {kubectl_cmd} exec -it web -- sleep infinity"
    ));
    let mut out = sized.stdout.take().unwrap();
    read_until(&mut out, "the terminal size", |s| {
        s.contains("resize 100x30")
    })
    .await;
    sized.kill().await.unwrap();

    // port-forward, two ports at once, two connections each.
    let mut pf = kubectl_child(
        &h,
        home.path(),
        &["port-forward", "pod/web", ":8080", ":9090"],
    );
    let mut pf_out = tokio::io::BufReader::new(pf.stdout.take().unwrap()).lines();
    let mut local = std::collections::BTreeMap::new();
    while local.len() < 2 {
        let line = tokio::time::timeout(WAIT, pf_out.next_line())
            .await
            .expect("kubectl listens")
            .unwrap()
            .expect("kubectl output");
        // "Forwarding from 127.0.0.1:PORT -> 8080"
        if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
            let (port, remote) = rest.split_once(" -> ").unwrap();
            local.insert(remote.to_owned(), port.parse::<u16>().unwrap());
        }
    }
    for (remote, port) in &local {
        for round in 0..2 {
            let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", *port))
                .await
                .unwrap();
            conn.write_all(format!("round {round}\n").as_bytes())
                .await
                .unwrap();
            let want = format!("{host_pod} port {remote}\nround {round}\n");
            let mut got = vec![0u8; want.len()];
            tokio::time::timeout(WAIT, conn.read_exact(&mut got))
                .await
                .expect("echo in time")
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&got), want);
        }
    }
    pf.kill().await.unwrap();
    h.stop_engine().await;
}
