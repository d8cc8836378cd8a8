//! Real `kubectl` (Go's SPDY client) against the simulated kubelet API, through a minimal
//! test-only stand-in for the API server's streaming proxy: pod subresources `exec`, `attach`,
//! `portforward` and `log` go to the pod's node's kubelet API (HTTPS, client certificate), every
//! other request to the test API server. Skipped when `kubectl` is not installed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use vcsync_e2e::apiserver::{ServerConfig, TestApiServer};
use vcsync_e2e::kubelet::api_server::client::KubeletClient;
use vcsync_e2e::kubelet::{
    ClientCertPem, Kubelet, KubeletApiTls, KubeletConfig, KubeletHandle, generate_ca,
    generate_client_cert, logs,
};

const WAIT: Duration = Duration::from_secs(30);
type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ShimBody = UnsyncBoxBody<Bytes, BoxError>;

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

fn full(b: impl Into<Bytes>) -> ShimBody {
    Full::new(b.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

struct Shim {
    client: Client,
    kubelet: Arc<KubeletHandle>,
    cert: ClientCertPem,
}

impl Shim {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<ShimBody> {
        match self.route(req).await {
            Ok(r) => r,
            Err(e) => Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(full(e))
                .unwrap(),
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Result<Response<ShimBody>, String> {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if let ["api", "v1", "namespaces", ns, "pods", pod, sub] = segs.as_slice()
            && matches!(*sub, "exec" | "attach" | "portforward" | "log")
        {
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            let p = pods.get(pod).await.map_err(|e| e.to_string())?;
            let spec = p.spec.unwrap_or_default();
            let node = spec.node_name.clone().unwrap_or_default();
            let container = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("container="))
                .map(str::to_owned)
                .unwrap_or_else(|| spec.containers[0].name.clone());
            let target = match *sub {
                "exec" | "attach" => format!("/{sub}/{ns}/{pod}/{container}?{query}"),
                "portforward" => format!("/portForward/{ns}/{pod}?{query}"),
                _ => format!("/containerLogs/{ns}/{pod}/{container}?{query}"),
            };
            return self.to_kubelet(&node, &target, req).await;
        }
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        let mut fwd = Request::builder().method(parts.method).uri(parts.uri);
        for (k, v) in &parts.headers {
            if matches!(k.as_str(), "accept" | "content-type") {
                fwd = fwd.header(k, v);
            }
        }
        let fwd = fwd
            .body(kube::client::Body::from(body.to_vec()))
            .map_err(|e| e.to_string())?;
        let resp = self.client.send(fwd).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Response::from_parts(parts, full(body)))
    }

    async fn to_kubelet(
        &self,
        node: &str,
        target: &str,
        mut req: Request<Incoming>,
    ) -> Result<Response<ShimBody>, String> {
        let addr: SocketAddr = self.kubelet.api_addr(node).ok_or("no kubelet API")?;
        let kc = KubeletClient::new(addr, self.kubelet.api_ca_pem().unwrap(), Some(&self.cert))?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for (k, v) in req.headers() {
            if matches!(
                k.as_str(),
                "connection" | "upgrade" | "x-stream-protocol-version"
            ) {
                headers.push((k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()));
            }
        }
        let hdrs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let mut resp = kc.request(req.method().clone(), target, &hdrs).await?;
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
            for (k, v) in resp.headers() {
                out = out.header(k, v);
            }
            let down = hyper::upgrade::on(&mut req);
            let up = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                if let (Ok(a), Ok(b)) = (down.await, up.await) {
                    let _ =
                        tokio::io::copy_bidirectional(&mut TokioIo::new(a), &mut TokioIo::new(b))
                            .await;
                }
            });
            return Ok(out.body(full(Bytes::new())).unwrap());
        }
        let (parts, body) = resp.into_parts();
        Ok(Response::from_parts(
            parts,
            body.map_err(|e| Box::new(e) as BoxError).boxed_unsync(),
        ))
    }
}

struct Fixture {
    _server: TestApiServer,
    pods: Api<Pod>,
    kubeconfig: std::path::PathBuf,
    home: tempfile::TempDir,
    kubelet: Arc<KubeletHandle>,
    cert: ClientCertPem,
}

impl Fixture {
    async fn new(ns: &str) -> Option<Self> {
        if std::process::Command::new("kubectl")
            .arg("version")
            .arg("--client")
            .output()
            .is_err()
        {
            eprintln!("kubectl not installed; skipping");
            return None;
        }
        let server = TestApiServer::start(ServerConfig::default()).await.unwrap();
        let client = server.client();
        let nss: Api<Namespace> = Api::all(client.clone());
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        nss.create(&PostParams::default(), &obj).await.unwrap();
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        eventually("the default service account", || async {
            sas.get_opt("default").await.ok().flatten()
        })
        .await;
        let client_ca = generate_ca("client-ca").unwrap();
        let cert =
            generate_client_cert(&client_ca, "system:apiserver", &["system:masters"]).unwrap();
        let kubelet = Arc::new(
            Kubelet::start(
                client.clone(),
                KubeletConfig::default()
                    .namespace(ns)
                    .api_tls(KubeletApiTls::default().client_ca(client_ca.cert_pem)),
            )
            .unwrap(),
        );
        kubelet.wait_nodes_ready(WAIT).await.unwrap();
        let shim = Arc::new(Shim {
            client: client.clone(),
            kubelet: kubelet.clone(),
            cert: cert.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let shim = shim.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let shim = shim.clone();
                        async move { Ok::<_, Infallible>(shim.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        let home = tempfile::tempdir().unwrap();
        let kubeconfig = home.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: shim\n  cluster:\n    server: http://127.0.0.1:{port}\nusers:\n- name: shim\n  user: {{}}\ncontexts:\n- name: shim\n  context:\n    cluster: shim\n    user: shim\n    namespace: {ns}\ncurrent-context: shim\n"
            ),
        )
        .unwrap();
        Some(Self {
            _server: server,
            pods: Api::namespaced(client, ns),
            kubeconfig,
            home,
            kubelet,
            cert,
        })
    }

    async fn running_pod(&self, name: &str) -> Pod {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}}))
        .unwrap();
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
        let addr = self.kubelet.api_addr(&node).unwrap();
        let kc =
            KubeletClient::new(addr, self.kubelet.api_ca_pem().unwrap(), Some(&self.cert)).unwrap();
        eventually("the kubelet API to know the pod", || async {
            let (s, body) = kc.get("/pods").await.ok()?;
            (s == StatusCode::OK && body.contains(&format!("\"name\":\"{name}\""))).then_some(())
        })
        .await;
        pod
    }

    /// Runs kubectl with `args` (SPDY forced), feeding `stdin`; returns (exit code, stdout, stderr).
    async fn kubectl(&self, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.home.path().join("cache"))
            .args(args)
            .env("HOME", self.home.path())
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
            .current_dir(self.home.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin).await.unwrap();
        drop(input);
        let out = tokio::time::timeout(WAIT, child.wait_with_output())
            .await
            .expect("kubectl finished in time")
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test]
async fn kubectl_exec_logs_and_cp_reach_the_simulated_kubelet() {
    let Some(f) = Fixture::new("kctl").await else {
        return;
    };
    f.running_pod("box").await;

    let (code, out, err) = f
        .kubectl(&["exec", "box", "--", "echo", "hi", "there"], b"")
        .await;
    assert_eq!((code, out.as_str()), (0, "hi there\n"), "{err}");

    let (code, _, err) = f
        .kubectl(&["exec", "box", "--", "sh", "-c", "exit 3"], b"")
        .await;
    assert_eq!(code, 3, "{err}");

    let (code, out, err) = f
        .kubectl(&["exec", "-i", "box", "--", "cat"], b"from stdin\n")
        .await;
    assert_eq!((code, out.as_str()), (0, "from stdin\n"), "{err}");

    let (code, out, err) = f.kubectl(&["logs", "box", "--tail=2"], b"").await;
    assert_eq!(
        (code, out),
        (
            0,
            format!(
                "{}\n{}\n",
                logs::line("box", "app", 9),
                logs::line("box", "app", 10)
            )
        ),
        "{err}"
    );

    std::fs::write(f.home.path().join("local.txt"), b"copied\n").unwrap();
    let (code, _, err) = f
        .kubectl(&["cp", "local.txt", "box:/tmp/remote.txt"], b"")
        .await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = f
        .kubectl(&["exec", "box", "--", "cat", "/tmp/remote.txt"], b"")
        .await;
    assert_eq!((code, out.as_str()), (0, "copied\n"), "{err}");
    let (code, _, err) = f
        .kubectl(&["cp", "box:/tmp/remote.txt", "back.txt"], b"")
        .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(f.home.path().join("back.txt")).unwrap(),
        b"copied\n"
    );
}

#[tokio::test]
async fn kubectl_port_forward_reaches_the_echo_service() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let Some(f) = Fixture::new("kctl-pf").await else {
        return;
    };
    f.running_pod("web").await;
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&f.kubeconfig)
        .arg("--cache-dir")
        .arg(f.home.path().join("cache"))
        .args(["port-forward", "pod/web", ":8080"])
        .env("HOME", f.home.path())
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let local: u16 = tokio::time::timeout(WAIT, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("kubectl output");
            // "Forwarding from 127.0.0.1:PORT -> 8080"
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                return rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        }
    })
    .await
    .expect("kubectl listens");
    for round in 0..2 {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", local))
            .await
            .unwrap();
        conn.write_all(format!("round {round}\n").as_bytes())
            .await
            .unwrap();
        let want = format!("web port 8080\nround {round}\n");
        let mut got = vec![0u8; want.len()];
        tokio::time::timeout(WAIT, conn.read_exact(&mut got))
            .await
            .expect("echo in time")
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&got), want);
    }
    child.kill().await.unwrap();
}
