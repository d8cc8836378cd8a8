//! TLS of the kubelet endpoint: who may call it, and the certificate it serves.
//!
//! **Callers.** The virtual API server authenticates to kubelets with a client certificate
//! (`--kubelet-client-certificate`); k3s issues it from its client CA
//! (`<data-dir>/server/tls/client-ca.crt`, common name `system:apiserver`). The endpoint
//! requires a client certificate chaining to `--kubelet-client-ca` and, because the same CA
//! also signs every other k3s identity (the tenant's admin kubeconfig included), one whose
//! common name is in `--kubelet-client-names`. Without `--kubelet-client-ca` nothing can be
//! authenticated and every request is refused (401).
//!
//! **Serving certificate.** k3s runs kube-apiserver with
//! `--kubelet-certificate-authority=<data-dir>/server/tls/server-ca.crt`: it verifies a
//! kubelet's serving certificate against its server CA, for the node address it dials. With
//! `--kubelet-serving-ca-cert/-key` (that CA), vcsync mints its own serving certificate for
//! `--kubelet-address` at start-up, in memory, as a k3s agent gets one from the server;
//! `--kubelet-tls-cert/-key` serve a ready-made one instead; with neither, a self-signed
//! certificate (enough for an API server that does not verify kubelets, kube-apiserver's
//! default).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the serving certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServingCert {
    /// A certificate and key in PEM files.
    Files { cert: PathBuf, key: PathBuf },
    /// Minted at start-up, signed by this CA (PEM certificate and key).
    SignedBy { ca_cert: PathBuf, ca_key: PathBuf },
    /// Self-signed at start-up.
    SelfSigned,
}

/// Why the endpoint's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("failed to read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} holds no usable PEM {kind}")]
    Parse {
        what: &'static str,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("failed to mint the kubelet serving certificate: {0}")]
    Mint(#[from] rcgen::Error),
    #[error("invalid kubelet TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("invalid kubelet client CA {path}: {reason}")]
    ClientCa { path: PathBuf, reason: String },
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Parse {
            what,
            path: path.to_owned(),
            kind: "certificate",
        });
    }
    Ok(certs)
}

fn key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(what, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::Parse {
        what,
        path: path.to_owned(),
        kind: "private key",
    })
}

/// The certificate chain and key the endpoint serves for `address`; a minted certificate also
/// names `dns_names` (besides `localhost`).
///
/// # Errors
/// [`TlsError`] naming the file or step that failed.
pub fn serving_identity(
    serving: &ServingCert,
    address: IpAddr,
    dns_names: &[&str],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let params = || -> Result<rcgen::CertificateParams, TlsError> {
        let names = std::iter::once("localhost")
            .chain(dns_names.iter().copied())
            .map(str::to_string)
            .collect::<Vec<_>>();
        let mut p = rcgen::CertificateParams::new(names)?;
        p.subject_alt_names.push(rcgen::SanType::IpAddress(address));
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "vcsync-kubelet");
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        Ok(p)
    };
    match serving {
        ServingCert::Files { cert, key: k } => Ok((
            certs("kubelet serving certificate", cert)?,
            key("kubelet serving key", k)?,
        )),
        ServingCert::SignedBy { ca_cert, ca_key } => {
            let ca_pem =
                String::from_utf8_lossy(&read("kubelet serving CA", ca_cert)?).into_owned();
            let ca_key_pem =
                String::from_utf8_lossy(&read("kubelet serving CA key", ca_key)?).into_owned();
            let ca_kp = rcgen::KeyPair::from_pem(&ca_key_pem).map_err(|_| TlsError::Parse {
                what: "kubelet serving CA key",
                path: ca_key.clone(),
                kind: "private key",
            })?;
            let issuer =
                rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_kp).map_err(|_| TlsError::Parse {
                    what: "kubelet serving CA",
                    path: ca_cert.clone(),
                    kind: "CA certificate",
                })?;
            let kp = rcgen::KeyPair::generate()?;
            let cert = params()?.signed_by(&kp, &issuer)?;
            Ok((
                vec![cert.der().clone()],
                PrivateKeyDer::try_from(kp.serialize_der()).map_err(|_| TlsError::Parse {
                    what: "minted kubelet key",
                    path: PathBuf::new(),
                    kind: "private key",
                })?,
            ))
        }
        ServingCert::SelfSigned => {
            let kp = rcgen::KeyPair::generate()?;
            let cert = params()?.self_signed(&kp)?;
            Ok((
                vec![cert.der().clone()],
                PrivateKeyDer::try_from(kp.serialize_der()).map_err(|_| TlsError::Parse {
                    what: "minted kubelet key",
                    path: PathBuf::new(),
                    kind: "private key",
                })?,
            ))
        }
    }
}

/// The rustls server configuration: the serving identity, HTTP/1.1 only (the streaming
/// protocols upgrade HTTP/1.1 connections), and client certificates verified against
/// `client_ca` when given (required then; without it the handshake accepts anyone and the
/// request handler refuses every request).
///
/// # Errors
/// [`TlsError`] when a file cannot be read or the material does not fit together.
pub fn server_config(
    serving: &ServingCert,
    address: IpAddr,
    client_ca: Option<&Path>,
) -> Result<rustls::ServerConfig, TlsError> {
    build_server_config(serving, address, &[], client_ca, false)
}

/// Like [`server_config`], but a client without a certificate completes the handshake (a
/// certificate it does present must still chain to `client_ca`), so the request handler can
/// answer it with a 401 `Status` instead of a failed handshake. A minted serving certificate
/// also names `dns_names`.
///
/// # Errors
/// [`TlsError`] when a file cannot be read or the material does not fit together.
pub fn server_config_optional_client_cert(
    serving: &ServingCert,
    address: IpAddr,
    dns_names: &[&str],
    client_ca: Option<&Path>,
) -> Result<rustls::ServerConfig, TlsError> {
    build_server_config(serving, address, dns_names, client_ca, true)
}

fn build_server_config(
    serving: &ServingCert,
    address: IpAddr,
    dns_names: &[&str],
    client_ca: Option<&Path>,
    allow_anonymous: bool,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs("kubelet client CA", path)? {
                roots.add(c).map_err(|e| TlsError::ClientCa {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?;
            }
            let mut verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
            if allow_anonymous {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|e| TlsError::ClientCa {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let (chain, key) = serving_identity(serving, address, dns_names)?;
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The subject common name of a DER certificate (the identity a kubelet authenticates).
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_certificates_carry_the_address_and_the_issuer() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let ca_kp = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "k3s-server-ca");
        let ca = ca_params.self_signed(&ca_kp).unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("ca.key"), ca_kp.serialize_pem()).unwrap();
        let serving = ServingCert::SignedBy {
            ca_cert: dir.path().join("ca.crt"),
            ca_key: dir.path().join("ca.key"),
        };
        let addr: IpAddr = "127.0.0.1".parse().unwrap();
        let (chain, _) =
            serving_identity(&serving, addr, &["vcsync-metrics.kube-system.svc"]).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
        assert_eq!(
            cert.issuer()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "k3s-server-ca"
        );
        let sans = cert.subject_alternative_name().unwrap().unwrap();
        assert!(
            sans.value
                .general_names
                .iter()
                .any(|n| matches!(n, x509_parser::extensions::GeneralName::IPAddress(b) if *b == [127, 0, 0, 1])),
            "{:?}",
            sans.value.general_names
        );
        // The aggregator verifies an APIService's backend for `<service>.<namespace>.svc`.
        assert!(
            sans.value.general_names.iter().any(|n| matches!(
                n,
                x509_parser::extensions::GeneralName::DNSName("vcsync-metrics.kube-system.svc")
            )),
            "{:?}",
            sans.value.general_names
        );
        assert_eq!(common_name(&chain[0]).as_deref(), Some("vcsync-kubelet"));
        // And it makes a working server config with a client CA.
        server_config(&serving, addr, Some(&dir.path().join("ca.crt"))).unwrap();
    }

    #[test]
    fn missing_files_name_the_path() {
        let err = server_config(
            &ServingCert::Files {
                cert: "/nonexistent/kubelet.crt".into(),
                key: "/nonexistent/kubelet.key".into(),
            },
            "127.0.0.1".parse().unwrap(),
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/kubelet.crt"),
            "{err}"
        );
        let err = server_config(
            &ServingCert::SelfSigned,
            "127.0.0.1".parse().unwrap(),
            Some(Path::new("/nonexistent/client-ca.crt")),
        )
        .unwrap_err();
        assert!(err.to_string().contains("client-ca.crt"), "{err}");
    }
}
