//! The kubelet API of the virtual nodes: what makes `kubectl logs/exec/attach/port-forward/cp`
//! work for the tenant.
//!
//! Virtual Nodes advertise this endpoint ([`NodeEndpoint`]: `--kubelet-address` as their only
//! address, an `InternalIP`, and `--kubelet-port` as `daemonEndpoints.kubeletEndpoint.Port`),
//! so the virtual API server calls vcsync exactly as kube-apiserver calls a kubelet; it never
//! learns, or dials, a host node's address (a tenant control plane talking to host kubelets
//! would be an escape path). Every virtual node shares the one endpoint: requests name the
//! pod, and the pod names its host copy.
//!
//! Each request is translated ([`route`], pure) to the host API's pod subresource for the
//! host copy of the pod and relayed ([`proxy`]): logs are streamed, upgraded connections
//! spliced. Only pods of this tenant that vcsync synced resolve; anything else is 404, never a
//! host object. On the host side this needs `create`/`get` on `pods/log`, `pods/exec`,
//! `pods/attach` and `pods/portforward` in the host namespace, and never `nodes/proxy`.
//!
//! Who may call it, and the certificate it serves, are in [`tls`].

pub mod proxy;
pub mod route;
pub mod tls;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use proxy::Caller;
pub use tls::ServingCert;

use crate::metrics::Metrics;
use crate::sync::Shared;

/// Where the virtual nodes say their kubelet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeEndpoint {
    /// The virtual nodes' `InternalIP`.
    pub address: IpAddr,
    /// Their `daemonEndpoints.kubeletEndpoint.Port`.
    pub port: u16,
}

/// Settings of the endpoint (from `--kubelet-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Address advertised on the virtual nodes.
    pub advertise: IpAddr,
    /// Address and port listened on (port 0: any free port, advertised as bound).
    pub bind: SocketAddr,
    /// CA whose client certificates may call; `None` refuses every request.
    pub client_ca: Option<PathBuf>,
    /// Common names of the client certificates allowed.
    pub client_names: Vec<String>,
    /// The serving certificate.
    pub serving: ServingCert,
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// The TLS material is missing or invalid.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The address cannot be listened on.
    #[error(
        "failed to listen on {addr} for the kubelet endpoint (--kubelet-bind-address, --kubelet-port): {source}"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound endpoint, not yet serving: its [`NodeEndpoint`] is known, so the virtual nodes
/// can advertise it before the first request can arrive.
pub struct Bound {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    config: EndpointConfig,
    /// What the virtual nodes advertise.
    pub endpoint: NodeEndpoint,
}

/// Reads the TLS material and listens.
///
/// # Errors
/// [`KubeletError`] naming the file or address that failed.
pub async fn bind(config: EndpointConfig) -> Result<Bound, KubeletError> {
    let tls = tls::server_config(
        &config.serving,
        config.advertise,
        config.client_ca.as_deref(),
    )?;
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|source| KubeletError::Bind {
            addr: config.bind,
            source,
        })?;
    let port = listener
        .local_addr()
        .map_err(|source| KubeletError::Bind {
            addr: config.bind,
            source,
        })?
        .port();
    if config.client_ca.is_none() {
        tracing::warn!(
            "--kubelet-client-ca is not set: the kubelet endpoint refuses every request, so kubectl logs, exec, attach and port-forward fail for the tenant"
        );
    }
    Ok(Bound {
        listener,
        acceptor: TlsAcceptor::from(Arc::new(tls)),
        endpoint: NodeEndpoint {
            address: config.advertise,
            port,
        },
        config,
    })
}

/// How long a caller gets for the TLS handshake and the request headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Bound {
    /// The address actually listened on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `stop` completes. Sessions in flight when it does are cut.
    pub async fn serve(
        self,
        shared: Arc<Shared>,
        host: kube::Client,
        metrics: Arc<Metrics>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let addr = self.local_addr();
        tracing::info!(
            kubelet_addr = ?addr,
            advertised = %self.endpoint.address,
            "serving the kubelet API of the virtual nodes"
        );
        let ctx = Arc::new(proxy::Ctx {
            shared,
            host,
            metrics,
        });
        let config = Arc::new(self.config);
        let mut sessions = tokio::task::JoinSet::new();
        tokio::pin!(stop);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut stop => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a kubelet connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (acceptor, ctx, config) = (self.acceptor.clone(), ctx.clone(), config.clone());
            sessions.spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::info!(%peer, error = %e, "refused a kubelet API connection: TLS handshake failed");
                        ctx.metrics.kubelet_request("handshake", "401");
                        return;
                    }
                    Err(_) => return,
                };
                let caller = caller(&config, tls.get_ref().1.peer_certificates());
                if let Caller::Refused(_, why) = &caller {
                    tracing::info!(%peer, reason = %why, "refused a kubelet API caller");
                }
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let (ctx, caller) = (ctx.clone(), caller.clone());
                    async move { Ok::<_, Infallible>(proxy::handle(ctx, caller, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HANDSHAKE_TIMEOUT)
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades();
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "kubelet API connection ended with an error");
                }
            });
            // Reap finished connections so the set does not grow with every request.
            while sessions.try_join_next().is_some() {}
        }
        sessions.abort_all();
    }
}

/// Who a connection's client certificate says the caller is, and whether it may call.
pub fn caller(
    config: &EndpointConfig,
    certs: Option<&[rustls::pki_types::CertificateDer<'_>]>,
) -> Caller {
    if config.client_ca.is_none() {
        return Caller::Refused(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: vcsync has no --kubelet-client-ca to authenticate callers with".into(),
        );
    }
    let Some(cn) = certs
        .and_then(|c| c.first())
        .and_then(|c| tls::common_name(c))
    else {
        return Caller::Refused(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: a client certificate is required".into(),
        );
    };
    if config.client_names.contains(&cn) {
        Caller::Allowed(cn)
    } else {
        Caller::Refused(
            StatusCode::FORBIDDEN,
            format!(
                "Forbidden: {cn:?} may not call the kubelet API of virtual nodes (allowed: {})",
                config.client_names.join(", ")
            ),
        )
    }
}
