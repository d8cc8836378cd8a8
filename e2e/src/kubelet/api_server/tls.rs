//! Certificates of the simulated kubelets' API: serving certificates for each node IP and the
//! optional client-certificate requirement.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// TLS of the kubelet API, as a k3s agent has it: a serving certificate signed by the cluster's
/// server CA, and client certificates (the API server's `system:apiserver` one) checked against
/// a client CA.
#[derive(Clone, Default)]
pub struct KubeletApiTls {
    /// CA certificate (PEM) that signs every node's serving certificate. Without it (or its key)
    /// the simulator makes a throw-away CA of its own; see `KubeletHandle::api_ca_pem`.
    pub serving_ca_cert_pem: Option<String>,
    /// Private key (PEM) of [`KubeletApiTls::serving_ca_cert_pem`].
    pub serving_ca_key_pem: Option<String>,
    /// When set, every request must come with a client certificate signed by this CA (PEM);
    /// without one the answer is `401 Unauthorized`, as from a kubelet with anonymous auth off.
    pub client_ca_pem: Option<String>,
}

impl std::fmt::Debug for KubeletApiTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletApiTls")
            .field("serving_ca", &self.serving_ca_cert_pem.is_some())
            .field("client_ca", &self.client_ca_pem.is_some())
            .finish()
    }
}

impl KubeletApiTls {
    /// Signs serving certificates with this CA (certificate and key in PEM).
    pub fn serving_ca(mut self, cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        self.serving_ca_cert_pem = Some(cert_pem.into());
        self.serving_ca_key_pem = Some(key_pem.into());
        self
    }

    /// Requires client certificates signed by this CA (PEM).
    pub fn client_ca(mut self, ca_pem: impl Into<String>) -> Self {
        self.client_ca_pem = Some(ca_pem.into());
        self
    }
}

/// A CA: certificate PEM, key PEM.
#[derive(Clone)]
pub struct CaPem {
    /// Certificate (PEM).
    pub cert_pem: String,
    /// Private key (PEM).
    pub key_pem: String,
}

impl std::fmt::Debug for CaPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaPem").finish_non_exhaustive()
    }
}

/// A certificate and key (PEM) for a TLS client.
#[derive(Clone)]
pub struct ClientCertPem {
    /// Certificate (PEM).
    pub cert_pem: String,
    /// Private key (PEM).
    pub key_pem: String,
}

impl std::fmt::Debug for ClientCertPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertPem").finish_non_exhaustive()
    }
}

/// Makes a CA certificate with common name `cn`.
pub fn generate_ca(cn: &str) -> Result<CaPem, rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok(CaPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Makes a client certificate signed by `ca`, with common name `cn` and organizations `orgs`
/// (the API server's own is CN=`system:apiserver`, O=`system:masters`).
pub fn generate_client_cert(
    ca: &CaPem,
    cn: &str,
    orgs: &[&str],
) -> Result<ClientCertPem, rcgen::Error> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    for o in orgs {
        params.distinguished_name.push(DnType::OrganizationName, *o);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer)?;
    Ok(ClientCertPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A serving certificate for node `name` at `ip`, signed by `ca` (chain: leaf then CA).
pub(crate) fn serving_cert(
    ca: &CaPem,
    name: &str,
    ip: IpAddr,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let err = |e: rcgen::Error| format!("kubelet serving certificate: {e}");
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(err)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(err)?;
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(vec![name.to_owned()]).map_err(err)?;
    params.subject_alt_names.push(SanType::IpAddress(ip));
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    let chain = vec![
        cert.der().clone(),
        CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())
            .map_err(|e| format!("kubelet serving CA: {e}"))?,
    ];
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())
        .map_err(|e| format!("kubelet serving key: {e}"))?;
    Ok((chain, key))
}

/// The rustls server configuration of one node's listener.
pub(crate) fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca_pem: Option<&str>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("kubelet client CA: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("kubelet client CA: {e}"))?;
            }
            // Anonymous TLS clients get through the handshake and are refused per request with
            // 401, as the kubelet does.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("kubelet client verifier: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("kubelet TLS: {e}"))?;
    // SPDY upgrades need HTTP/1.1.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
