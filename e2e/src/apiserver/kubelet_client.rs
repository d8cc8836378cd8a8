//! How the API server reaches kubelets, as kube-apiserver's `pkg/kubelet/client` does:
//! the node's address by [`super::ServerConfig::kubelet_preferred_address_types`], the port
//! from `status.daemonEndpoints.kubeletEndpoint.Port` (else
//! [`super::ServerConfig::kubelet_port`]), HTTPS presenting the kubelet-client certificate
//! (CN `system:apiserver`, O `system:masters`) and verifying the kubelet's serving certificate
//! against the serving CA, unless configured (or asked per request) to skip verification.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::errors::ApiError;
use super::server::Shared;

/// Where a node's kubelet listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub host: String,
    pub port: u16,
}

impl ConnectionInfo {
    /// `host:port` as Go's `net.JoinHostPort` writes it (IPv6 in brackets).
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `https://host:port{path_and_query}`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("https://{}{}", self.host_port(), path_and_query)
    }
}

/// Look up the node and pick its kubelet address (kube-apiserver's `GetConnectionInfo`).
/// A missing node answers the node registry's 404; no address of a preferred type answers
/// `no preferred addresses found; known addresses: [...]` (a plain error: 500, no reason).
pub fn connection_info(shared: &Shared, node_name: &str) -> Result<ConnectionInfo, ApiError> {
    let node = shared.lock().store.get("nodes", "", node_name);
    let Some(node) = node else {
        return Err(ApiError::not_found("", "nodes", node_name));
    };
    let addresses: Vec<(&str, &str)> = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["type"].as_str().unwrap_or(""),
                a["address"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let preferred = &shared.config.kubelet_preferred_address_types;
    let host = preferred.iter().find_map(|t| {
        addresses
            .iter()
            .find(|(at, _)| at == t)
            .map(|(_, a)| a.to_string())
    });
    let Some(host) = host else {
        // Go prints []v1.NodeAddress with %v: `[{Type Address} ...]`.
        let known: Vec<String> = addresses
            .iter()
            .map(|(t, a)| format!("{{{t} {a}}}"))
            .collect();
        return Err(ApiError::new(
            500,
            "",
            format!(
                "no preferred addresses found; known addresses: [{}]",
                known.join(" ")
            ),
            None,
        ));
    };
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_i64()
        .filter(|p| *p > 0 && *p <= i64::from(u16::MAX))
        .map(|p| p as u16)
        .unwrap_or(shared.config.kubelet_port);
    Ok(ConnectionInfo { host, port })
}

/// Accepts any server certificate (kube-apiserver's insecure kubelet transport). Signatures
/// are still checked so the handshake is a real one.
#[derive(Debug)]
pub struct NoVerify(pub Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS client configuration towards kubelets. `skip_verify` (the request's
/// `insecureSkipTLSVerifyBackend` or [`super::ServerConfig::kubelet_insecure_skip_tls_verify`])
/// accepts any serving certificate; otherwise it must chain to
/// [`super::ServerConfig::kubelet_certificate_authority`] or, by default, the serving CA.
pub fn tls_config(shared: &Shared, skip_verify: bool) -> Result<rustls::ClientConfig, String> {
    let tls = &shared.tls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if skip_verify || shared.config.kubelet_insecure_skip_tls_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let ca = shared
            .config
            .kubelet_certificate_authority
            .as_deref()
            .unwrap_or(&tls.ca_pem);
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots
                .add(c.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        builder.with_root_certificates(roots)
    };
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(tls.kubelet_client_cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(tls.kubelet_client_key_pem.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut cfg = builder
        .with_client_auth_cert(certs, key)
        .map_err(|e| e.to_string())?;
    // Upgrades (SPDY, WebSocket) only exist in HTTP/1.1.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Open a TLS connection to the kubelet. The error text reads like Go's `net`/`crypto/tls`
/// errors (`dial tcp 127.0.0.10:10250: connect: connection refused`, `tls: failed to verify
/// certificate: x509: certificate signed by unknown authority`) since kube-apiserver relays
/// those in its messages.
pub async fn dial(
    shared: &Shared,
    info: &ConnectionInfo,
    skip_verify: bool,
) -> Result<TlsStream<TcpStream>, String> {
    let cfg = tls_config(shared, skip_verify)?;
    let addr = info.host_port();
    let tcp = match TcpStream::connect((info.host.as_str(), info.port)).await {
        Ok(t) => t,
        Err(e) => return Err(go_dial_error(&addr, &info.host, &e)),
    };
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(info.host.clone()).map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| go_tls_error(&e, &info.host))
}

pub fn go_dial_error(addr: &str, host: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => format!("dial tcp {addr}: connect: connection refused"),
        ErrorKind::TimedOut => format!("dial tcp {addr}: i/o timeout"),
        _ if host.parse::<std::net::IpAddr>().is_err() => {
            format!("dial tcp: lookup {host}: no such host")
        }
        _ => format!("dial tcp {addr}: {e}"),
    }
}

pub fn go_tls_error(e: &std::io::Error, host: &str) -> String {
    let inner = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .cloned();
    match inner {
        Some(rustls::Error::InvalidCertificate(c)) => {
            let why = match c {
                // A same-named issuer with another key is still an unknown authority to Go.
                rustls::CertificateError::UnknownIssuer
                | rustls::CertificateError::BadSignature => {
                    "x509: certificate signed by unknown authority".to_string()
                }
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. } => {
                    format!("x509: certificate is not valid for {host}")
                }
                rustls::CertificateError::Expired
                | rustls::CertificateError::ExpiredContext { .. } => {
                    "x509: certificate has expired or is not yet valid".to_string()
                }
                other => format!("x509: {other:?}"),
            };
            format!("tls: failed to verify certificate: {why}")
        }
        Some(rustls::Error::AlertReceived(a)) => format!("remote error: tls: {a:?}"),
        Some(other) => format!("tls: {other}"),
        None => e.to_string(),
    }
}

/// The node of a pod, or `None` when unscheduled.
pub fn node_name(pod: &Value) -> Option<&str> {
    pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
}
