//! A minimal client of a kubelet API (HTTPS, optional client certificate, SPDY upgrades), for
//! tests and for translating other streaming transports to the kubelet's SPDY.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::spdy::{Headers, Session, Stream};
use super::tls::ClientCertPem;

/// Talks HTTPS to one kubelet endpoint.
#[derive(Clone)]
pub struct KubeletClient {
    addr: SocketAddr,
    connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletClient")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// A refused upgrade: the HTTP status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Status code.
    pub status: StatusCode,
    /// Body text.
    pub body: String,
}

impl KubeletClient {
    /// Trusts `ca_pem` for the serving certificate (checked against the address's IP) and
    /// presents `client_cert` if given.
    pub fn new(
        addr: SocketAddr,
        ca_pem: &str,
        client_cert: Option<&ClientCertPem>,
    ) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots
                .add(c.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let mut cfg = match client_cert {
            Some(cc) => {
                let chain = CertificateDer::pem_slice_iter(cc.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                let key = PrivateKeyDer::from_pem_slice(cc.key_pem.as_bytes())
                    .map_err(|e| e.to_string())?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| e.to_string())?
            }
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            addr,
            connector: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        })
    }

    /// Sends one request on a fresh connection and returns the response head and body stream.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<http::Response<Incoming>, String> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(http::header::HOST, self.addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))
    }

    /// `GET` and read the whole body as text.
    pub async fn get(&self, path_and_query: &str) -> Result<(StatusCode, String), String> {
        let resp = self.request(Method::GET, path_and_query, &[]).await?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Upgrades `path_and_query` to SPDY/3.1 offering `protocols`; returns the chosen
    /// `X-Stream-Protocol-Version` and the client session, or the refusal.
    pub async fn upgrade(
        &self,
        method: Method,
        path_and_query: &str,
        protocols: &[&str],
    ) -> Result<Result<(String, Session), Refused>, String> {
        let mut headers = vec![("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")];
        for p in protocols {
            headers.push(("X-Stream-Protocol-Version", p));
        }
        let resp = self.request(method, path_and_query, &headers).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            return Ok(Err(Refused { status, body }));
        }
        let protocol = resp
            .headers()
            .get("x-stream-protocol-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let upgraded = hyper::upgrade::on(resp)
            .await
            .map_err(|e| format!("upgrade: {e}"))?;
        Ok(Ok((protocol, Session::new(TokioIo::new(upgraded), false))))
    }
}

/// What a remote command printed and its error-stream payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Everything on stdout.
    pub stdout: Vec<u8>,
    /// Everything on stderr.
    pub stderr: Vec<u8>,
    /// The error stream's content (a `metav1.Status` with v4).
    pub error: Vec<u8>,
}

impl CommandOutput {
    /// stdout as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Which streams a remote command uses, and what to send.
#[derive(Debug, Clone, Default)]
pub struct CommandStreams {
    /// Sent on stdin, then stdin is closed; `None`: no stdin stream.
    pub stdin: Option<Vec<u8>>,
    /// Open a stdout stream.
    pub stdout: bool,
    /// Open a stderr stream.
    pub stderr: bool,
    /// Open a resize stream (with a tty) and send these (width, height) sizes.
    pub resize: Option<Vec<(u16, u16)>>,
}

fn stream_headers(kind: &str) -> Headers {
    vec![("streamtype".into(), kind.into())]
}

/// Drives a remote-command session like client-go's v4 protocol: opens the error, stdin, stdout,
/// stderr and resize streams, waits for each reply, sends stdin and closes it, then reads
/// stdout, stderr and the error stream to their ends and closes the session.
pub async fn run_remote_command(
    session: Session,
    streams: CommandStreams,
) -> Result<CommandOutput, String> {
    let open = |kind: &str| session.open(stream_headers(kind), false);
    let mut error = open("error");
    let mut stdin = streams.stdin.as_ref().map(|_| open("stdin"));
    let mut stdout = streams.stdout.then(|| open("stdout"));
    let mut stderr = streams.stderr.then(|| open("stderr"));
    let mut resize = streams.resize.as_ref().map(|_| open("resize"));
    for s in [
        Some(&mut error),
        stdin.as_mut(),
        stdout.as_mut(),
        stderr.as_mut(),
        resize.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        s.wait_reply()
            .await
            .map_err(|e| format!("stream {}: {e}", s.id()))?;
    }
    if let (Some(r), Some(sizes)) = (&resize, &streams.resize) {
        for (w, h) in sizes {
            r.writer()
                .write(format!("{{\"Width\":{w},\"Height\":{h}}}").as_bytes());
        }
    }
    if let (Some(s), Some(data)) = (&stdin, &streams.stdin) {
        if !data.is_empty() {
            s.writer().write(data);
        }
        s.writer().close();
    }
    async fn drain(s: Option<Stream>) -> Vec<u8> {
        match s {
            Some(mut s) => s.read_to_end().await,
            None => Vec::new(),
        }
    }
    let (out, err, errs) = tokio::join!(drain(stdout), drain(stderr), error.read_to_end());
    session.go_away();
    Ok(CommandOutput {
        stdout: out,
        stderr: err,
        error: errs,
    })
}
