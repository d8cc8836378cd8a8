//! The simulated nodes' kubelet API, driven directly with an HTTPS client and the crate's own
//! SPDY client: node endpoint, TLS client-certificate checks, logs, exec, attach, copy and
//! port-forward.

use std::future::Future;
use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use vcsync_e2e::apiserver::{ServerConfig, TestApiServer};
use vcsync_e2e::kubelet::api_server::client::{CommandStreams, KubeletClient, run_remote_command};
use vcsync_e2e::kubelet::api_server::remotecommand::decode_v4_status;
use vcsync_e2e::kubelet::api_server::spdy::Headers;
use vcsync_e2e::kubelet::{
    ClientCertPem, Kubelet, KubeletApiTls, KubeletConfig, KubeletHandle, generate_ca,
    generate_client_cert, logs,
};

const WAIT: Duration = Duration::from_secs(30);

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Fixture {
    _server: TestApiServer,
    client: Client,
    kubelet: KubeletHandle,
    pods: Api<Pod>,
    client_cert: ClientCertPem,
}

impl Fixture {
    async fn new(ns: &str) -> Self {
        let server = TestApiServer::start(ServerConfig::default())
            .await
            .expect("start server");
        let client = server.client();
        let nss: Api<Namespace> = Api::all(client.clone());
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        nss.create(&PostParams::default(), &obj).await.unwrap();
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        eventually("the default service account", || async {
            sas.get_opt("default").await.ok().flatten()
        })
        .await;
        let serving = generate_ca("server-ca").unwrap();
        let client_ca = generate_ca("client-ca").unwrap();
        let client_cert =
            generate_client_cert(&client_ca, "system:apiserver", &["system:masters"]).unwrap();
        let tls = KubeletApiTls::default()
            .serving_ca(serving.cert_pem.clone(), serving.key_pem.clone())
            .client_ca(client_ca.cert_pem.clone());
        let kubelet = Kubelet::start(
            client.clone(),
            KubeletConfig::default().namespace(ns).api_tls(tls),
        )
        .expect("start kubelet");
        assert_eq!(kubelet.api_ca_pem(), Some(serving.cert_pem.as_str()));
        kubelet.wait_nodes_ready(WAIT).await.expect("nodes ready");
        Self {
            _server: server,
            pods: Api::namespaced(client.clone(), ns),
            client,
            kubelet,
            client_cert,
        }
    }

    /// Creates a pod and waits for it to run; returns the pod and its node's kubelet client.
    async fn running_pod(&self, name: &str, spec: serde_json::Value) -> (Pod, KubeletClient) {
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
        self.pods
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
        let pod = eventually("the pod to run", || async {
            let p = self.pods.get_opt(name).await.ok().flatten()?;
            (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
        })
        .await;
        let node = pod.spec.as_ref().unwrap().node_name.clone().unwrap();
        let addr = self.kubelet.api_addr(&node).expect("node serves the API");
        let kc = KubeletClient::new(
            addr,
            self.kubelet.api_ca_pem().unwrap(),
            Some(&self.client_cert),
        )
        .unwrap();
        // The simulator's own view may lag the watch a little.
        eventually("the kubelet API to know the pod", || async {
            let (s, body) = kc.get("/pods").await.ok()?;
            (s == StatusCode::OK && body.contains(&format!("\"name\":\"{name}\""))).then_some(())
        })
        .await;
        (pod, kc)
    }
}

fn app() -> serde_json::Value {
    json!({"containers": [{"name": "app", "image": "busybox:1.36"}]})
}

#[tokio::test]
async fn node_endpoint_tls_and_plain_routes() {
    let f = Fixture::new("kapi-basic").await;
    let (pod, kc) = f.running_pod("web", app()).await;
    let node = pod.spec.as_ref().unwrap().node_name.clone().unwrap();
    let addr = f.kubelet.api_addr(&node).unwrap();

    // The node reports the listener as its kubelet endpoint, on its InternalIP.
    let nodes: Api<Node> = Api::all(f.client.clone());
    let n = nodes.get(&node).await.unwrap();
    let st = n.status.unwrap();
    assert_eq!(
        st.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port,
        i32::from(addr.port())
    );
    let internal = st
        .addresses
        .unwrap()
        .into_iter()
        .find(|a| a.type_ == "InternalIP")
        .unwrap();
    assert_eq!(internal.address, addr.ip().to_string());

    assert_eq!(
        kc.get("/healthz").await.unwrap(),
        (StatusCode::OK, "ok".into())
    );
    let (s, body) = kc.get("/pods").await.unwrap();
    assert_eq!(s, StatusCode::OK);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["items"][0]["metadata"]["name"], "web");
    assert_eq!(
        kc.get("/nope").await.unwrap(),
        (StatusCode::NOT_FOUND, "404 page not found\n".into())
    );
    let resp = kc.request(Method::POST, "/healthz", &[]).await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);

    // Without a client certificate: 401, as from a kubelet with anonymous auth off.
    let anon = KubeletClient::new(addr, f.kubelet.api_ca_pem().unwrap(), None).unwrap();
    assert_eq!(
        anon.get("/healthz").await.unwrap(),
        (StatusCode::UNAUTHORIZED, "Unauthorized".into())
    );
    // A certificate from another CA does not get through the handshake.
    let other = generate_ca("other").unwrap();
    let stranger = generate_client_cert(&other, "x", &[]).unwrap();
    let bad = KubeletClient::new(addr, f.kubelet.api_ca_pem().unwrap(), Some(&stranger)).unwrap();
    assert!(bad.get("/healthz").await.is_err());
    // The serving certificate is checked against the node IP: another IP on the same
    // listener is refused by the client.
    let wrong_ca = KubeletClient::new(addr, &other.cert_pem, Some(&f.client_cert)).unwrap();
    assert!(wrong_ca.get("/healthz").await.is_err());
}

#[tokio::test]
async fn serving_api_can_be_turned_off() {
    let server = TestApiServer::start(ServerConfig::default()).await.unwrap();
    let kubelet =
        Kubelet::start(server.client(), KubeletConfig::default().serve_api(false)).unwrap();
    kubelet.wait_nodes_ready(WAIT).await.unwrap();
    assert!(kubelet.api_addr("sim-node-0").is_none());
    let nodes: Api<Node> = Api::all(server.client());
    let n = nodes.get("sim-node-0").await.unwrap();
    let port = n
        .status
        .unwrap()
        .daemon_endpoints
        .unwrap()
        .kubelet_endpoint
        .unwrap()
        .port;
    assert_eq!(port, 10250);
}

#[tokio::test]
async fn container_logs_are_deterministic() {
    let f = Fixture::new("kapi-logs").await;
    let (pod, kc) = f.running_pod("logger", app()).await;
    let start = pod.status.as_ref().unwrap().start_time.as_ref().unwrap().0;
    let all: String = (1..=logs::INITIAL_LINES)
        .map(|k| format!("{}\n", logs::line("logger", "app", k)))
        .collect();
    let base = "/containerLogs/kapi-logs/logger/app";
    assert_eq!(kc.get(base).await.unwrap(), (StatusCode::OK, all.clone()));
    assert_eq!(
        kc.get(&format!("{base}?tailLines=2")).await.unwrap().1,
        "logger/app line 9\nlogger/app line 10\n"
    );
    assert_eq!(
        kc.get(&format!("{base}?tailLines=1&timestamps=true"))
            .await
            .unwrap()
            .1,
        format!("{}\n", logs::timestamped(start, "logger", "app", 10))
    );
    assert_eq!(
        kc.get(&format!("{base}?limitBytes=20")).await.unwrap().1,
        &all[..20]
    );
    let since = logs::format_timestamp(logs::timestamp(start, 8));
    assert_eq!(
        kc.get(&format!("{base}?sinceTime={since}"))
            .await
            .unwrap()
            .1,
        "logger/app line 8\nlogger/app line 9\nlogger/app line 10\n"
    );
    let (s, body) = kc.get(&format!("{base}?previous=true")).await.unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("previous terminated container"), "{body}");
    let (s, body) = kc
        .get("/containerLogs/kapi-logs/logger/nope")
        .await
        .unwrap();
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body, "container \"nope\" not found in pod \"logger\"\n");
    let (s, body) = kc.get("/containerLogs/kapi-logs/ghost/app").await.unwrap();
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body, "pod \"ghost\" does not exist\n");

    // Follow: lines keep coming until the pod is deleted, then the stream ends.
    let resp = kc
        .request(Method::GET, &format!("{base}?follow=true&tailLines=1"), &[])
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut got = String::new();
    let want_next = format!("{}\n", logs::line("logger", "app", 12));
    let deadline = tokio::time::Instant::now() + WAIT;
    while !got.contains(&want_next) {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("followed lines in time")
            .expect("stream open")
            .unwrap();
        if let Ok(d) = frame.into_data() {
            got.push_str(&String::from_utf8_lossy(&d));
        }
    }
    assert!(
        got.starts_with("logger/app line 10\nlogger/app line 11\nlogger/app line 12\n"),
        "{got}"
    );
    f.pods
        .delete("logger", &DeleteParams::default())
        .await
        .unwrap();
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "follow stream ends when the pod is deleted");
}

async fn exec(
    kc: &KubeletClient,
    path: &str,
    streams: CommandStreams,
) -> (
    String,
    vcsync_e2e::kubelet::api_server::client::CommandOutput,
) {
    let (protocol, session) = kc
        .upgrade(
            Method::POST,
            path,
            &["v4.channel.k8s.io", "v3.channel.k8s.io"],
        )
        .await
        .unwrap()
        .expect("upgrade accepted");
    let out = tokio::time::timeout(WAIT, run_remote_command(session, streams))
        .await
        .expect("command finished in time")
        .unwrap();
    (protocol, out)
}

fn exec_path(pod: &str, cmd: &[&str], flags: &str) -> String {
    let mut p = format!("/exec/kapi-exec/{pod}/app?{flags}");
    for c in cmd {
        p.push_str("&command=");
        p.push_str(
            &c.replace('%', "%25")
                .replace(' ', "%20")
                .replace('&', "%26"),
        );
    }
    p
}

fn out_err() -> CommandStreams {
    CommandStreams {
        stdout: true,
        stderr: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn exec_runs_builtin_commands() {
    let f = Fixture::new("kapi-exec").await;
    let (_pod, kc) = f.running_pod("box", app()).await;

    let (protocol, out) = exec(
        &kc,
        &exec_path("box", &["echo", "hello", "world"], "output=1&error=1"),
        out_err(),
    )
    .await;
    assert_eq!(protocol, "v4.channel.k8s.io");
    assert_eq!(out.stdout_text(), "hello world\n");
    assert_eq!(decode_v4_status(&out.error), Ok(0));

    let (_, out) = exec(
        &kc,
        &exec_path("box", &["sh", "-c", "exit 3"], "output=1&error=1"),
        out_err(),
    )
    .await;
    assert_eq!(decode_v4_status(&out.error), Ok(3));

    let (_, out) = exec(
        &kc,
        &exec_path("box", &["frobnicate"], "output=1&error=1"),
        out_err(),
    )
    .await;
    assert_eq!(out.stderr_text(), "frobnicate: command not found\n");
    assert_eq!(decode_v4_status(&out.error), Ok(127));

    let (_, out) = exec(
        &kc,
        &exec_path("box", &["env"], "output=1&error=1"),
        out_err(),
    )
    .await;
    assert!(
        out.stdout_text().contains("HOSTNAME=box\n"),
        "{}",
        out.stdout_text()
    );

    let (_, out) = exec(
        &kc,
        &exec_path("box", &["cat"], "input=1&output=1&error=1"),
        CommandStreams {
            stdin: Some(b"piped through\n".to_vec()),
            ..out_err()
        },
    )
    .await;
    assert_eq!(out.stdout_text(), "piped through\n");
    assert_eq!(decode_v4_status(&out.error), Ok(0));

    // A tty: no stderr stream, resize messages echoed, newlines cooked.
    let (_, session) = kc
        .upgrade(
            Method::POST,
            &exec_path("box", &["sleep", "infinity"], "input=1&output=1&tty=1"),
            &["v4.channel.k8s.io"],
        )
        .await
        .unwrap()
        .unwrap();
    let open = |kind: &str| session.open(vec![("streamtype".into(), kind.into())], false);
    let mut error = open("error");
    let mut stdin = open("stdin");
    let mut stdout = open("stdout");
    let mut resize = open("resize");
    for s in [&mut error, &mut stdin, &mut stdout, &mut resize] {
        s.wait_reply().await.unwrap();
    }
    resize
        .writer()
        .write(br#"{"Width":80,"Height":24}{"Width":100,"#);
    resize.writer().write(br#""Height":30}"#);
    let mut seen = Vec::new();
    let want = b"resize 80x24\r\nresize 100x30\r\n";
    while seen.len() < want.len() {
        let chunk = tokio::time::timeout(WAIT, stdout.recv())
            .await
            .unwrap()
            .expect("stdout open");
        seen.extend_from_slice(&chunk);
    }
    assert_eq!(seen, want);
    stdin.writer().close();
    let rest = tokio::time::timeout(WAIT, stdout.read_to_end())
        .await
        .unwrap();
    assert!(rest.is_empty());
    let status = tokio::time::timeout(WAIT, error.read_to_end())
        .await
        .unwrap();
    assert_eq!(decode_v4_status(&status), Ok(0));
    session.go_away();

    let (_, out) = exec(
        &kc,
        &exec_path("box", &["echo", "a"], "output=1&tty=1"),
        CommandStreams {
            stdout: true,
            resize: Some(vec![]),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(out.stdout_text(), "a\r\n");

    // Older protocols are negotiated too; failures are text on the error stream.
    let (protocol, session) = kc
        .upgrade(
            Method::GET,
            &exec_path("box", &["exit", "2"], "output=1"),
            &["v2.channel.k8s.io"],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(protocol, "v2.channel.k8s.io");
    let out = run_remote_command(
        session,
        CommandStreams {
            stdout: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(
        String::from_utf8_lossy(&out.error).contains("non-zero exit code"),
        "{:?}",
        out.error
    );

    // Refusals.
    let refused = kc
        .upgrade(
            Method::POST,
            &exec_path("box", &["echo"], "output=1"),
            &["v9.channel.k8s.io"],
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let (s, body) = kc
        .get(&exec_path("box", &["echo"], "output=1"))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("missing upgrade headers"), "{body}");
    let refused = kc
        .upgrade(
            Method::POST,
            &exec_path("box", &["echo"], ""),
            &["v4.channel.k8s.io"],
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let refused = kc
        .upgrade(
            Method::POST,
            "/exec/kapi-exec/box/nope?output=1&command=echo",
            &["v4.channel.k8s.io"],
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn copy_in_and_out_like_kubectl_cp() {
    let f = Fixture::new("kapi-exec").await;
    let (_pod, kc) = f.running_pod("files", app()).await;

    // Upload: kubectl cp local.txt files:/tmp/up.txt runs `tar -xmf - -C /tmp`.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o644);
    b.append_data(&mut h, "up.txt", &b"hello\n"[..]).unwrap();
    let archive = b.into_inner().unwrap();
    let (_, out) = exec(
        &kc,
        &exec_path(
            "files",
            &["tar", "-xmf", "-", "-C", "/tmp"],
            "input=1&output=1&error=1",
        ),
        CommandStreams {
            stdin: Some(archive),
            ..out_err()
        },
    )
    .await;
    assert_eq!(decode_v4_status(&out.error), Ok(0), "{}", out.stderr_text());

    let (_, out) = exec(
        &kc,
        &exec_path("files", &["test", "-d", "/tmp"], "output=1"),
        CommandStreams {
            stdout: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(decode_v4_status(&out.error), Ok(0));
    let (_, out) = exec(
        &kc,
        &exec_path("files", &["ls", "/tmp"], "output=1&error=1"),
        out_err(),
    )
    .await;
    assert_eq!(out.stdout_text(), "up.txt\n");
    let (_, out) = exec(
        &kc,
        &exec_path("files", &["cat", "/tmp/up.txt"], "output=1&error=1"),
        out_err(),
    )
    .await;
    assert_eq!(out.stdout_text(), "hello\n");

    // Download: kubectl cp files:/tmp/up.txt ./x runs `tar cf - /tmp/up.txt`.
    let (_, out) = exec(
        &kc,
        &exec_path(
            "files",
            &["tar", "cf", "-", "/tmp/up.txt"],
            "output=1&error=1",
        ),
        out_err(),
    )
    .await;
    assert_eq!(decode_v4_status(&out.error), Ok(0));
    let mut ar = tar::Archive::new(&out.stdout[..]);
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        entries.push((name, data));
    }
    assert_eq!(
        entries,
        vec![("tmp/up.txt".to_owned(), b"hello\n".to_vec())]
    );

    let (_, out) = exec(
        &kc,
        &exec_path("files", &["cat", "/tmp/missing"], "output=1&error=1"),
        out_err(),
    )
    .await;
    assert_eq!(decode_v4_status(&out.error), Ok(1));
    assert!(out.stderr_text().contains("No such file"));
}

#[tokio::test]
async fn attach_echoes_stdin_after_a_banner() {
    let f = Fixture::new("kapi-exec").await;
    let (_pod, kc) = f.running_pod("main", app()).await;
    let (_, session) = kc
        .upgrade(
            Method::POST,
            "/attach/kapi-exec/main/app?input=1&output=1&error=1",
            &["v4.channel.k8s.io"],
        )
        .await
        .unwrap()
        .unwrap();
    let out = tokio::time::timeout(
        WAIT,
        run_remote_command(
            session,
            CommandStreams {
                stdin: Some(b"typed\n".to_vec()),
                ..out_err()
            },
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out.stdout_text(), "attached to main/app\ntyped\n");
    assert_eq!(decode_v4_status(&out.error), Ok(0));
}

fn pf_headers(kind: &str, port: u16, id: u32) -> Headers {
    vec![
        ("streamtype".into(), kind.into()),
        ("port".into(), port.to_string()),
        ("requestid".into(), id.to_string()),
    ]
}

#[tokio::test]
async fn port_forward_reaches_an_echo_service() {
    let f = Fixture::new("kapi-pf").await;
    let (_pod, kc) = f
        .running_pod(
            "svc",
            json!({"containers": [{"name": "app", "image": "nginx:1.27",
                "ports": [{"containerPort": 8080}, {"containerPort": 9090}]}]}),
        )
        .await;
    let (protocol, session) = kc
        .upgrade(
            Method::POST,
            "/portForward/kapi-pf/svc",
            &["portforward.k8s.io"],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(protocol, "portforward.k8s.io");

    for (id, port) in [(0u32, 8080u16), (1, 9090)] {
        let mut err = session.open(pf_headers("error", port, id), false);
        err.writer().close();
        let mut data = session.open(pf_headers("data", port, id), false);
        err.wait_reply().await.unwrap();
        data.wait_reply().await.unwrap();
        data.writer().write(b"ping\n");
        data.writer().close();
        let got = tokio::time::timeout(WAIT, data.read_to_end())
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            format!("svc port {port}\nping\n")
        );
        let e = tokio::time::timeout(WAIT, err.read_to_end()).await.unwrap();
        assert!(e.is_empty(), "{}", String::from_utf8_lossy(&e));
    }

    // A port the pod does not listen on: the failure comes on the error stream.
    let mut err = session.open(pf_headers("error", 7000, 2), false);
    err.writer().close();
    let mut data = session.open(pf_headers("data", 7000, 2), false);
    err.wait_reply().await.unwrap();
    data.wait_reply().await.unwrap();
    let e = tokio::time::timeout(WAIT, err.read_to_end()).await.unwrap();
    let e = String::from_utf8_lossy(&e);
    assert!(
        e.contains("localhost:7000") && e.contains("connection refused"),
        "{e}"
    );
    assert!(
        tokio::time::timeout(WAIT, data.read_to_end())
            .await
            .unwrap()
            .is_empty()
    );
    session.go_away();
}
