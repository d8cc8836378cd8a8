//! The resource metrics API (`metrics.k8s.io/v1beta1`) of the virtual cluster: what makes
//! `kubectl top pods` work for the tenant.
//!
//! vcsync serves the group as an aggregated API server would (metrics-server's paths and
//! objects), for the virtual API server to proxy to: it reads the host namespace's
//! `PodMetrics` (only `get`/`list` on `pods.metrics.k8s.io` in that namespace) and shows the
//! tenant only those of pods it synced for this tenant, under their virtual names, namespaces
//! and labels ([`translate`], pure). `nodes.metrics.k8s.io` serves the tenant's virtual nodes
//! (those vcsync made for this tenant), each the sum of the tenant's pods running on it: a host
//! node's own figures are host-only data and are never shown.
//!
//! **Who may call.** kube-apiserver's aggregator calls aggregated API servers with its
//! front-proxy client certificate (k3s: `<data-dir>/server/tls/client-auth-proxy.crt`, common
//! name `system:auth-proxy`, signed by `request-header-ca.crt`) and names the end user in
//! `X-Remote-User`, `X-Remote-Group` and `X-Remote-Extra-*`. The listener requires a client
//! certificate chaining to `--metrics-api-client-ca` whose common name is in
//! `--metrics-api-client-names` (401 otherwise: the headers of anyone else are not believed),
//! then asks the virtual API with a SubjectAccessReview whether that user may `get`/`list`
//! `pods.metrics.k8s.io` in the namespace asked, or `nodes.metrics.k8s.io` (403 otherwise), as
//! metrics-server's delegated authorization does.

pub mod register;
pub mod translate;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::kubelet::tls::{self, ServingCert};
use crate::metrics::{Metrics, code_label};
use crate::sync::Shared;
use translate::{LabelSelector, PodMetricsList, Route, Scope};

/// Settings of the metrics API listener (from `--metrics-api-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsApiConfig {
    /// Address and port listened on.
    pub bind: SocketAddr,
    /// CA of the front-proxy client certificates (k3s: `request-header-ca.crt`); `None`
    /// refuses every request.
    pub client_ca: Option<PathBuf>,
    /// Common names of the front-proxy client certificates allowed.
    pub client_names: Vec<String>,
    /// The serving certificate (the kubelet endpoint's: minted from k3s's server CA, which the
    /// APIService's `caBundle` then names).
    pub serving: ServingCert,
}

/// Why the metrics API could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsApiError {
    /// The TLS material is missing or invalid.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The address cannot be listened on.
    #[error(
        "failed to listen on {addr} for the metrics API (--metrics-api-address, --metrics-api-port): {source}"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound listener, not yet serving.
pub struct Bound {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    config: MetricsApiConfig,
}

/// Reads the TLS material and listens.
///
/// # Errors
/// [`MetricsApiError`] naming the file or address that failed.
pub async fn bind(config: MetricsApiConfig) -> Result<Bound, MetricsApiError> {
    // kube-aggregator verifies the backend of an APIService for the name
    // `<service>.<namespace>.svc` (not the address it dials), so the minted certificate must
    // carry the registered Service's name.
    let service_name = format!(
        "{}.{}.svc",
        register::SERVICE_NAME,
        register::SERVICE_NAMESPACE
    );
    let tls = tls::server_config_optional_client_cert(
        &config.serving,
        config.bind.ip(),
        &[service_name.as_str()],
        config.client_ca.as_deref(),
    )?;
    let listener =
        TcpListener::bind(config.bind)
            .await
            .map_err(|source| MetricsApiError::Bind {
                addr: config.bind,
                source,
            })?;
    if config.client_ca.is_none() {
        tracing::warn!(
            "--metrics-api-client-ca is not set: the metrics API refuses every request, so kubectl top fails for the tenant"
        );
    }
    Ok(Bound {
        listener,
        acceptor: TlsAcceptor::from(Arc::new(tls)),
        config,
    })
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every request needs.
struct Ctx {
    shared: Arc<Shared>,
    host: kube::Client,
    virt: kube::Client,
    metrics: Arc<Metrics>,
}

impl Bound {
    /// The address actually listened on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `stop` completes. `host` reads the host namespace's `PodMetrics`; `virt`
    /// asks the virtual API the SubjectAccessReviews (neither needs leadership: nothing is
    /// written but reviews, which persist nothing).
    pub async fn serve(
        self,
        shared: Arc<Shared>,
        host: kube::Client,
        virt: kube::Client,
        metrics: Arc<Metrics>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tracing::info!(metrics_api_addr = ?self.local_addr(), "serving metrics.k8s.io/v1beta1 for the virtual cluster");
        let ctx = Arc::new(Ctx {
            shared,
            host,
            virt,
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
                        tracing::warn!(error = %e, "accepting a metrics API connection failed");
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
                        tracing::info!(%peer, error = %e, "refused a metrics API connection: TLS handshake failed");
                        ctx.metrics.metrics_api_request("401");
                        return;
                    }
                    Err(_) => return,
                };
                let proxy = front_proxy(&config, tls.get_ref().1.peer_certificates());
                if let Err((_, why)) = &proxy {
                    tracing::info!(%peer, reason = %why, "refused a metrics API caller");
                }
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (ctx, proxy) = (ctx.clone(), proxy.clone());
                    async move { Ok::<_, Infallible>(handle(&ctx, proxy, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HANDSHAKE_TIMEOUT)
                    .serve_connection(TokioIo::new(tls), service);
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "metrics API connection ended with an error");
                }
            });
            while sessions.try_join_next().is_some() {}
        }
        sessions.abort_all();
    }
}

/// Whether the connection's client certificate is an allowed front proxy.
fn front_proxy(
    config: &MetricsApiConfig,
    certs: Option<&[rustls::pki_types::CertificateDer<'_>]>,
) -> Result<String, (StatusCode, String)> {
    if config.client_ca.is_none() {
        return Err((
            StatusCode::UNAUTHORIZED,
            "vcsync has no --metrics-api-client-ca to authenticate the front proxy with".into(),
        ));
    }
    let Some(cn) = certs
        .and_then(|c| c.first())
        .and_then(|c| tls::common_name(c))
    else {
        return Err((
            StatusCode::UNAUTHORIZED,
            "a front-proxy client certificate is required".into(),
        ));
    };
    if config.client_names.contains(&cn) {
        Ok(cn)
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            format!(
                "client certificate {cn:?} is not an allowed front proxy (allowed: {})",
                config.client_names.join(", ")
            ),
        ))
    }
}

/// The end user the front proxy names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemoteUser {
    /// `X-Remote-User`.
    pub name: String,
    /// `X-Remote-Group` (repeated).
    pub groups: Vec<String>,
    /// `X-Remote-Extra-{key}` (repeated).
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

/// Reads the `X-Remote-*` headers (kube-apiserver's default request-header names, as k3s
/// configures them); `None` without a user.
pub fn remote_user(headers: &http::HeaderMap) -> Option<RemoteUser> {
    let name = headers.get("x-remote-user")?.to_str().ok()?.to_owned();
    if name.is_empty() {
        return None;
    }
    let groups = headers
        .get_all("x-remote-group")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    let mut extra = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (k, v) in headers {
        if let (Some(key), Ok(v)) = (k.as_str().strip_prefix("x-remote-extra-"), v.to_str()) {
            let key = percent_decode(key);
            extra.entry(key).or_default().push(v.to_owned());
        }
    }
    Some(RemoteUser {
        name,
        groups,
        extra,
    })
}

/// Extra keys are percent-encoded in header names (kube-apiserver's request-header rules).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The SubjectAccessReview asking whether `user` may `verb` `{resource}.metrics.k8s.io`
/// (`pods` or `nodes`) in `namespace` (all namespaces, or cluster-scoped, when `None`).
pub fn access_review(
    user: &RemoteUser,
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.name.clone()),
            groups: Some(user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                group: Some("metrics.k8s.io".into()),
                version: Some("v1beta1".into()),
                resource: Some(resource.into()),
                verb: Some(verb.into()),
                namespace: namespace.map(str::to_owned),
                name: name.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed_unsync())
        .expect("a valid response")
}

/// A `Status` failure body, as kube-apiserver answers.
fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json(
        code,
        &serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
        }),
    )
}

async fn handle(
    ctx: &Ctx,
    proxy: Result<String, (StatusCode, String)>,
    req: Request<Incoming>,
) -> Response<Body> {
    let resp = match proxy {
        Err((code, why)) => status(code, "Unauthorized", &format!("Unauthorized: {why}")),
        Ok(_) => answer(ctx, &req).await,
    };
    ctx.metrics.metrics_api_request(code_label(resp.status()));
    resp
}

async fn answer(ctx: &Ctx, req: &Request<Incoming>) -> Response<Body> {
    let Some(user) = remote_user(req.headers()) else {
        tracing::info!("refused a metrics API request: the front proxy named no X-Remote-User");
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized: no X-Remote-User",
        );
    };
    if req.method() != http::Method::GET {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!(
                "the server does not allow this method on the requested resource: {}",
                req.method()
            ),
        );
    }
    let route = Route::parse(req.uri().path());
    let (verb, resource, namespace) = match (&route, route.access()) {
        (Route::ApiGroupList, _) => return json(StatusCode::OK, &translate::api_group_list()),
        (Route::ApiGroup, _) => return json(StatusCode::OK, &translate::api_group()),
        (Route::ApiResourceList, _) => {
            return json(StatusCode::OK, &translate::api_resource_list());
        }
        (_, Some(a)) => a,
        (_, None) => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
    };
    let name = route.name();
    let selector = query_param(req.uri().query(), "labelSelector").unwrap_or_default();
    let selector = match LabelSelector::parse(&selector) {
        Ok(s) => s,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
    };
    let review = access_review(&user, verb, resource, namespace, name);
    match Api::<SubjectAccessReview>::all(ctx.virt.clone())
        .create(&PostParams::default(), &review)
        .await
    {
        Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => {}
        Ok(r) => {
            let reason = r.status.and_then(|s| s.reason).unwrap_or_default();
            tracing::info!(user = %user.name, verb, resource, namespace = namespace.unwrap_or(""), %reason, "refused a metrics API request: not authorized");
            let scope = namespace.map_or("at the cluster scope".to_string(), |n| {
                format!("in the namespace \"{n}\"")
            });
            return status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!(
                    "{resource}.metrics.k8s.io is forbidden: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"metrics.k8s.io\" {scope}",
                    user.name
                ),
            );
        }
        Err(e) => {
            tracing::warn!(user = %user.name, error = %crate::sync::brief(&e), "a metrics API request could not be authorized");
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                &format!(
                    "the virtual API did not answer the access review: {}",
                    crate::sync::brief(&e)
                ),
            );
        }
    }
    let host_ns = ctx.shared.cfg.host_namespace.clone();
    let host_req = Request::builder()
        .uri(format!(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{host_ns}/pods"
        ))
        .body(Vec::new())
        .expect("a valid request");
    let host_items = match ctx.host.request::<PodMetricsList>(host_req).await {
        Ok(l) => l.items,
        Err(e) => {
            tracing::warn!(error = %crate::sync::brief(&e), "reading the host namespace's pod metrics failed");
            return status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &format!(
                    "the host's resource metrics are unavailable: {}",
                    crate::sync::brief(&e)
                ),
            );
        }
    };
    // The virtual nodes, for node routes: only those vcsync made for this tenant count.
    let virtual_nodes = if resource == "nodes" {
        match Api::<Node>::all(ctx.virt.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(l) => l.items,
            Err(e) => {
                tracing::warn!(error = %crate::sync::brief(&e), "listing the virtual nodes failed");
                return status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    &format!(
                        "the virtual nodes cannot be listed: {}",
                        crate::sync::brief(&e)
                    ),
                );
            }
        }
    } else {
        Vec::new()
    };
    let (hosts, virts) = (
        ctx.shared.host_pods.state(),
        ctx.shared.virtual_pods.state(),
    );
    let hosts: HashMap<String, &crate::cache::HostPod> =
        hosts.iter().map(|p| (p.name_any(), &**p)).collect();
    let virts: HashMap<(String, String), &crate::cache::VirtualPod> = virts
        .iter()
        .map(|p| ((p.namespace().unwrap_or_default(), p.name_any()), &**p))
        .collect();
    let scope = Scope {
        tenant: &ctx.shared.cfg.tenant,
        host_namespace: &host_ns,
    };
    if resource == "nodes" {
        let tenant = &ctx.shared.cfg.tenant;
        let nodes: Vec<&Node> = virtual_nodes
            .iter()
            .filter(|n| crate::sync::nodes::is_managed(n, tenant))
            .filter(|n| name.is_none_or(|want| n.name_any() == want))
            .filter(|n| selector.matches(n.labels()))
            .collect();
        let items = translate::node_metrics(
            &scope,
            &host_items,
            &nodes,
            |n| hosts.get(n).copied(),
            |ns, n| virts.get(&(ns.to_owned(), n.to_owned())).copied(),
        );
        return match name {
            None => json(StatusCode::OK, &translate::node_list_json(&items)),
            Some(name) => match items.first() {
                Some(m) => json(StatusCode::OK, &translate::node_json(m)),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("nodemetrics.metrics.k8s.io \"{name}\" not found"),
                ),
            },
        };
    }
    let items = translate::translate_list(
        &scope,
        &host_items,
        namespace,
        &selector,
        |n| hosts.get(n).copied(),
        |ns, n| virts.get(&(ns.to_owned(), n.to_owned())).copied(),
    );
    match name {
        None => json(StatusCode::OK, &translate::list_json(&items)),
        Some(name) => match items
            .iter()
            .find(|m| m.metadata.name.as_deref() == Some(name))
        {
            Some(m) => json(StatusCode::OK, &translate::item_json(m)),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!(
                    "podmetrics.metrics.k8s.io \"{}/{name}\" not found",
                    namespace.unwrap_or("")
                ),
            ),
        },
    }
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The listener settings from the flags' values.
pub fn config(
    address: IpAddr,
    port: u16,
    client_ca: Option<PathBuf>,
    client_names: Vec<String>,
    serving: ServingCert,
) -> MetricsApiConfig {
    MetricsApiConfig {
        serving,
        bind: SocketAddr::new(address, port),
        client_ca,
        client_names: client_names
            .into_iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_user_headers() {
        let mut h = http::HeaderMap::new();
        h.insert("x-remote-user", "alice".parse().unwrap());
        h.append("x-remote-group", "dev".parse().unwrap());
        h.append("x-remote-group", "system:authenticated".parse().unwrap());
        h.append("x-remote-extra-scopes%2fa", "x".parse().unwrap());
        let u = remote_user(&h).unwrap();
        assert_eq!(u.name, "alice");
        assert_eq!(u.groups, ["dev", "system:authenticated"]);
        assert_eq!(u.extra["scopes/a"], ["x"]);
        let r = access_review(&u, "list", "pods", Some("team-a"), None);
        let a = r.spec.resource_attributes.unwrap();
        assert_eq!(
            (
                a.group.as_deref(),
                a.resource.as_deref(),
                a.verb.as_deref(),
                a.namespace.as_deref()
            ),
            (
                Some("metrics.k8s.io"),
                Some("pods"),
                Some("list"),
                Some("team-a")
            )
        );
        assert!(remote_user(&http::HeaderMap::new()).is_none());
    }

    #[test]
    fn front_proxy_needs_the_ca_and_an_allowed_name() {
        let cfg = config(
            "127.0.0.1".parse().unwrap(),
            0,
            None,
            vec!["system:auth-proxy".into()],
            ServingCert::SelfSigned,
        );
        assert_eq!(
            front_proxy(&cfg, None).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        let cfg = MetricsApiConfig {
            client_ca: Some("/ca.crt".into()),
            ..cfg
        };
        assert_eq!(
            front_proxy(&cfg, None).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
    }
}
