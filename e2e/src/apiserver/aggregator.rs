//! API aggregation, as kube-apiserver's kube-aggregator does it, for APIServices that name a
//! Service (`spec.service`): what makes `kubectl top` reach an aggregated API server (vcsync's
//! metrics API) through this test server.
//!
//! * **Proxy** ([`proxy`]): a request under `/apis/<group>/<version>[/...]` with an APIService
//!   `<version>.<group>` is sent to the Service's Endpoints address and port (the Service port
//!   named by the APIService resolved to the endpoint port by its name, as with
//!   `--enable-aggregator-routing`, which k3s sets), over TLS verifying `caBundle` for the name
//!   `<service>.<namespace>.svc` (or nothing with `insecureSkipTLSVerify`), presenting the
//!   front-proxy client certificate (k3s `client-auth-proxy.crt`) and naming the caller in
//!   `X-Remote-User` and `X-Remote-Group` (this server's identities have no extra attributes,
//!   so no `X-Remote-Extra-*`). The caller's `Authorization`,
//!   impersonation and own `X-Remote-*` headers never reach the backend. The answer (status,
//!   headers, body) is streamed back. This takes priority over anything the server itself
//!   serves for the group. Like kube-aggregator's `proxyError`/`responder.Error`, an APIService
//!   that is not `Available`, an unresolvable Service and a failed backend connection answer
//!   503 with a plain-text body (`service unavailable`, or the connection error), not a
//!   `Status`: kubectl then reports `the server is currently unable to handle the request`.
//! * **Authorization** happens before proxying, as in kube-apiserver's handler chain: the
//!   namespaced identity is refused outside its namespace with RBAC's 403 `Status`.
//! * **Availability** ([`run`]): every [`super::ServerConfig::aggregator_interval`] the
//!   `Available` condition of each such APIService is recomputed as kube-aggregator's
//!   available-condition controller does (Service present, port served, Endpoints with an
//!   address for that port name, then a GET of `/apis/<group>/<version>` as
//!   `system:kube-aggregator` answered with a 2xx); it is written only when it changes.
//! * **Discovery**: the backend's discovery document (`/discovery/v2`, else the legacy
//!   `/apis/<group>/<version>` converted) is fetched through the proxy when the APIService
//!   becomes available and every minute, as the aggregated-discovery manager does; `/apis`
//!   (both forms) and `/apis/<group>` then list the group ([`groups`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::http::{Body, Caller, json_response, text_response};
use super::kubelet_client::{NoVerify, go_dial_error, go_tls_error};
use super::ops::WriteCtx;
use super::pod_streams::EndOnError;
use super::server::Shared;

/// How long the availability check waits for the backend (kube-aggregator: 5 s client timeout).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How often discovery documents are refreshed (kube-aggregator: every minute).
const DISCOVERY_REFRESH: Duration = Duration::from_secs(60);

/// What the aggregator remembers between passes.
#[derive(Debug, Default)]
pub struct AggregatorState {
    /// The last discovery of each APIService: `(fetched at, APIVersionDiscovery)`.
    discovery: HashMap<String, (Instant, Value)>,
}

/// The APIService `<version>.<group>` that routes `path`, when it names a Service.
pub fn api_service_for(shared: &Shared, path: &str) -> Option<Arc<Value>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ["apis", group, version, ..] = segs.as_slice() else {
        return None;
    };
    if group.is_empty() || version.is_empty() {
        return None;
    }
    let a = shared
        .lock()
        .store
        .get("apiservices", "", &format!("{version}.{group}"))?;
    a["spec"]["service"].is_object().then_some(a)
}

/// The authenticated user as kube-apiserver would name it to an aggregated server.
pub fn user_info(caller: &Caller) -> (String, Vec<String>) {
    match caller {
        Caller::Admin(u) if u == "admin" => (
            u.clone(),
            vec!["system:masters".into(), "system:authenticated".into()],
        ),
        Caller::Admin(u) => (u.clone(), vec!["system:authenticated".into()]),
        Caller::Namespaced(ns) => (
            format!("system:serviceaccount:{ns}:limited"),
            vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
        ),
    }
}

/// The resource attributes of an aggregated path (kube-apiserver's `RequestInfo`):
/// `(verb, resource, namespace, name)`; `None` for the group-version discovery document.
fn request_info<'a>(
    method: &hyper::Method,
    segs: &'a [&'a str],
    watch: bool,
) -> Option<(&'static str, String, Option<&'a str>, Option<&'a str>)> {
    let (ns, rest): (Option<&str>, &[&str]) = match segs {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(*ns), rest),
        rest => (None, rest),
    };
    let (resource, name, sub) = match rest {
        [] => return None,
        [r] => (*r, None, None),
        [r, n] => (*r, Some(*n), None),
        [r, n, s, ..] => (*r, Some(*n), Some(*s)),
    };
    let verb = match *method {
        hyper::Method::GET if name.is_none() && watch => "watch",
        hyper::Method::GET | hyper::Method::HEAD if name.is_none() => "list",
        hyper::Method::GET | hyper::Method::HEAD => "get",
        hyper::Method::POST => "create",
        hyper::Method::PUT => "update",
        hyper::Method::PATCH => "patch",
        hyper::Method::DELETE if name.is_none() => "deletecollection",
        hyper::Method::DELETE => "delete",
        _ => "proxy",
    };
    let resource = match sub {
        Some(s) => format!("{resource}/{s}"),
        None => resource.to_string(),
    };
    Some((verb, resource, ns, name))
}

/// kube-apiserver's authorization of the namespaced identity before proxying: its RBAC 403
/// when refused.
fn authorize(
    caller: &Caller,
    group: &str,
    method: &hyper::Method,
    rest: &[&str],
    watch: bool,
) -> Option<Response<Body>> {
    let Caller::Namespaced(allowed) = caller else {
        return None;
    };
    let Some((verb, resource, ns, name)) = request_info(method, rest, watch) else {
        // Discovery documents are open to every authenticated user (system:discovery).
        return None;
    };
    if ns == Some(allowed.as_str()) {
        return None;
    }
    let (user, _) = user_info(caller);
    let base = resource.split('/').next().unwrap_or(&resource).to_string();
    let what = match name {
        Some(n) => format!("{base}.{group} \"{n}\""),
        None => format!("{base}.{group}"),
    };
    let scope = match ns {
        Some(n) => format!("in the namespace \"{n}\""),
        None => "at the cluster scope".into(),
    };
    let mut details = json!({"group": group, "kind": base});
    if let Some(n) = name {
        details["name"] = json!(n);
    }
    Some(json_response(
        403,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{what} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}"),
            "reason": "Forbidden", "details": details, "code": 403}),
        &[],
    ))
}

/// The verb and resource a proxied request is counted under.
pub fn counted_as(method: &hyper::Method, path: &str, watch: bool) -> (&'static str, String) {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["apis", g, _, rest @ ..] => (*g, rest),
        _ => return ("get", "discovery".into()),
    };
    match request_info(method, rest, watch) {
        Some((verb, resource, _, _)) => (verb, format!("{resource}.{group}")),
        None => ("get", "discovery".into()),
    }
}

fn is_available(api_service: &Value) -> bool {
    api_service["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Available" && c["status"] == "True")
}

/// The Service an APIService names: `(namespace, name, port)` (port 443 when unset).
fn service_ref(api_service: &Value) -> (String, String, i64) {
    let s = &api_service["spec"]["service"];
    (
        s["namespace"].as_str().unwrap_or("").to_string(),
        s["name"].as_str().unwrap_or("").to_string(),
        s["port"].as_i64().unwrap_or(443),
    )
}

/// kube-apiserver's endpoint routing (`ResolveEndpoint`): the service port with the APIService's
/// port number, then an Endpoints address and the endpoint port of the same name.
fn resolve(shared: &Shared, api_service: &Value) -> Result<(String, u16), String> {
    let (ns, name, port) = service_ref(api_service);
    let st = shared.lock();
    let svc = st
        .store
        .get("services", &ns, &name)
        .ok_or_else(|| format!("service \"{name}\" not found"))?;
    let port_name = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["port"].as_i64() == Some(port))
        .map(|p| p["name"].as_str().unwrap_or("").to_string())
        .ok_or_else(|| format!("no service port {port} found for service \"{name}\""))?;
    let eps = st
        .store
        .get("endpoints", &ns, &name)
        .ok_or_else(|| format!("endpoints \"{name}\" not found"))?;
    for subset in eps["subsets"].as_array().into_iter().flatten() {
        let Some(ep_port) = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or("") == port_name)
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        if let Some(ip) = subset["addresses"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|a| a["ip"].as_str())
        {
            return Ok((ip.to_string(), ep_port));
        }
    }
    Err(format!("no endpoints available for service \"{name}\""))
}

/// The TLS client towards the backend. `verify` follows the APIService (`caBundle`, or none
/// with `insecureSkipTLSVerify`); the availability check never verifies, as kube-aggregator's.
fn tls_config(
    shared: &Shared,
    api_service: &Value,
    verify: bool,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let insecure = api_service["spec"]["insecureSkipTLSVerify"] == json!(true);
    let builder = if !verify || insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        use base64::Engine;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(api_service["spec"]["caBundle"].as_str().unwrap_or(""))
            .map_err(|e| format!("invalid caBundle: {e}"))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&pem) {
            roots
                .add(c.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        builder.with_root_certificates(roots)
    };
    let tls = &shared.tls;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(tls.auth_proxy_cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(tls.auth_proxy_key_pem.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut cfg = builder
        .with_client_auth_cert(certs, key)
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Why a backend request failed.
enum BackendError {
    /// The transport could not be built (kube-aggregator: 500 with the error).
    Transport(String),
    /// Dialing, the handshake or the exchange failed (Go's error text).
    Connect(String),
}

/// Sends `req` to `host:port` over TLS for the APIService's Service name.
async fn send(
    shared: &Shared,
    api_service: &Value,
    verify: bool,
    host: &str,
    port: u16,
    req: Request<Body>,
) -> Result<Response<Incoming>, BackendError> {
    let cfg = tls_config(shared, api_service, verify).map_err(BackendError::Transport)?;
    let (ns, name, _) = service_ref(api_service);
    let server_name = format!("{name}.{ns}.svc");
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let tcp = match tokio::time::timeout(CHECK_TIMEOUT * 2, TcpStream::connect((host, port))).await
    {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(BackendError::Connect(go_dial_error(&addr, host, &e))),
        Err(_) => {
            return Err(BackendError::Connect(format!(
                "dial tcp {addr}: i/o timeout"
            )));
        }
    };
    let _ = tcp.set_nodelay(true);
    let sni = ServerName::try_from(server_name.clone())
        .map_err(|e| BackendError::Transport(e.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(sni, tcp)
        .await
        .map_err(|e| BackendError::Connect(go_tls_error(&e, &server_name)))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| BackendError::Connect(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(|e| {
        BackendError::Connect(if e.is_incomplete_message() || e.is_closed() {
            "EOF".into()
        } else {
            e.to_string()
        })
    })
}

/// Hop-by-hop headers (Go's `httputil.ReverseProxy` drops them both ways).
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "proxy-connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Headers of the caller that must not reach the backend: its credentials, its impersonation
/// and any `X-Remote-*` it made up (client-go's auth-proxy round tripper replaces those).
fn stripped(name: &str) -> bool {
    name == "authorization"
        || name == "host"
        || name.starts_with("impersonate-")
        || name.starts_with("x-remote-")
        || hop_by_hop(name)
}

/// A request for the backend: the caller's headers less [`stripped`] ones, and the user in
/// `X-Remote-User`/`X-Remote-Group` (this server's identities carry no extra attributes, so
/// no `X-Remote-Extra-*` is ever sent).
#[allow(clippy::too_many_arguments)]
fn request_to_backend(
    method: hyper::Method,
    path_and_query: &str,
    host: &str,
    port: u16,
    headers: &hyper::HeaderMap,
    user: &str,
    groups: &[String],
    body: Body,
) -> Result<Request<Body>, String> {
    let mut b = Request::builder().method(method).uri(path_and_query);
    for (k, v) in headers {
        if !stripped(k.as_str()) {
            b = b.header(k, v);
        }
    }
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    b = b.header("Host", authority).header("X-Remote-User", user);
    for g in groups {
        b = b.header("X-Remote-Group", g);
    }
    b.body(body).map_err(|e| e.to_string())
}

fn service_unavailable(text: &str) -> Response<Body> {
    text_response(503, &format!("{text}\n"))
}

/// Proxies one request to the APIService's backend (see the module docs).
pub async fn proxy(
    shared: Arc<Shared>,
    api_service: &Value,
    parts: hyper::http::request::Parts,
    body: Incoming,
    caller: &Caller,
    watch: bool,
) -> Response<Body> {
    let path = parts.uri.path();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let group = segs.get(1).copied().unwrap_or("");
    if let Some(resp) = authorize(
        caller,
        group,
        &parts.method,
        segs.get(3..).unwrap_or(&[]),
        watch,
    ) {
        return resp;
    }
    if !is_available(api_service) {
        return service_unavailable("service unavailable");
    }
    let (host, port) = match resolve(&shared, api_service) {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!("aggregator: {e}");
            return service_unavailable("service unavailable");
        }
    };
    let (user, groups) = user_info(caller);
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(path.to_string(), |p| p.as_str().to_string());
    let req = match request_to_backend(
        parts.method.clone(),
        &path_and_query,
        &host,
        port,
        &parts.headers,
        &user,
        &groups,
        EndOnError(body).boxed(),
    ) {
        Ok(r) => r,
        Err(e) => return text_response(500, &format!("{e}\n")),
    };
    match send(&shared, api_service, true, &host, port, req).await {
        Ok(resp) => {
            let (rparts, rbody) = resp.into_parts();
            let mut out = Response::builder().status(rparts.status);
            for (k, v) in &rparts.headers {
                if !hop_by_hop(k.as_str()) {
                    out = out.header(k, v);
                }
            }
            out.body(EndOnError(rbody).boxed())
                .unwrap_or_else(|e| text_response(500, &format!("{e}\n")))
        }
        Err(BackendError::Transport(e)) => text_response(500, &format!("{e}\n")),
        Err(BackendError::Connect(e)) => service_unavailable(&e),
    }
}

// ----- availability and discovery -----

/// One GET to the backend as `system:kube-aggregator` (group `system:masters`); `(status,
/// body)` or Go's error text.
async fn backend_get(
    shared: &Shared,
    api_service: &Value,
    verify: bool,
    path: &str,
) -> Result<(u16, Bytes), String> {
    let (host, port) = resolve(shared, api_service)?;
    let mut headers = hyper::HeaderMap::new();
    headers.insert(
        "accept",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    let req = request_to_backend(
        hyper::Method::GET,
        path,
        &host,
        port,
        &headers,
        "system:kube-aggregator",
        &["system:masters".to_string()],
        super::http::full(Bytes::new()),
    )?;
    let url = format!(
        "https://{}{path}",
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    );
    let fut = async {
        let resp = send(shared, api_service, verify, &host, port, req)
            .await
            .map_err(|e| match e {
                BackendError::Transport(e) | BackendError::Connect(e) => {
                    format!("Get \"{url}\": {e}")
                }
            })?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok((status, body))
    };
    match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

/// The `Available` condition kube-aggregator's available-condition controller computes:
/// `(status, reason, message)`.
async fn availability(shared: &Shared, api_service: &Value) -> (String, String, String) {
    let (ns, name, port) = service_ref(api_service);
    let false_ = |reason: &str, message: String| ("False".to_string(), reason.to_string(), message);
    let (svc, eps) = {
        let st = shared.lock();
        (
            st.store.get("services", &ns, &name),
            st.store.get("endpoints", &ns, &name),
        )
    };
    let Some(svc) = svc else {
        return false_(
            "ServiceNotFound",
            format!("service/{name} in \"{ns}\" is not present"),
        );
    };
    let cluster_ip = svc["spec"]["type"].as_str().unwrap_or("ClusterIP") == "ClusterIP";
    if cluster_ip {
        let Some(port_name) = svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["port"].as_i64() == Some(port))
            .map(|p| p["name"].as_str().unwrap_or("").to_string())
        else {
            return false_(
                "ServicePortError",
                format!("service/{name} in \"{ns}\" is not listening on port {port}"),
            );
        };
        let Some(eps) = eps else {
            return false_(
                "EndpointsNotFound",
                format!("cannot find endpoints for service/{name} in \"{ns}\""),
            );
        };
        let active = eps["subsets"].as_array().into_iter().flatten().any(|s| {
            s["addresses"].as_array().is_some_and(|a| !a.is_empty())
                && s["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"].as_str().unwrap_or("") == port_name)
        });
        if !active {
            return false_(
                "MissingEndpoints",
                format!(
                    "endpoints for service/{name} in \"{ns}\" have no addresses with port name \"{port_name}\""
                ),
            );
        }
    }
    let (group, version) = (
        api_service["spec"]["group"].as_str().unwrap_or(""),
        api_service["spec"]["version"].as_str().unwrap_or(""),
    );
    let path = format!("/apis/{group}/{version}");
    let url = resolve(shared, api_service)
        .map(|(h, p)| format!("https://{h}:{p}{path}"))
        .unwrap_or_else(|_| path.clone());
    match backend_get(shared, api_service, false, &path).await {
        Ok((code, _)) if (200..300).contains(&code) => {
            ("True".into(), "Passed".into(), "all checks passed".into())
        }
        Ok((code, _)) => false_(
            "FailedDiscoveryCheck",
            format!("failing or missing response from {url}: bad status from {url}: {code}"),
        ),
        Err(e) => false_(
            "FailedDiscoveryCheck",
            format!("failing or missing response from {url}: {e}"),
        ),
    }
}

/// Writes the `Available` condition when it differs (the transition time moves only when the
/// status does, as `SetAPIServiceCondition` keeps it).
fn set_available(shared: &Shared, name: &str, cond: &(String, String, String)) {
    let Some(def) = super::resources::find("apiregistration.k8s.io", "v1", "apiservices") else {
        return;
    };
    let rv = {
        let mut st = shared.lock();
        let Some(old) = st.store.get("apiservices", "", name) else {
            return;
        };
        let mut conditions: Vec<Value> = old["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let current = conditions.iter().position(|c| c["type"] == "Available");
        let (status, reason, message) = cond;
        let transition = match current.map(|i| &conditions[i]) {
            Some(c) if c["status"] == json!(status) => c["lastTransitionTime"].clone(),
            _ => json!(super::ops::now_rfc3339()),
        };
        let new_cond = json!({"type": "Available", "status": status, "lastTransitionTime": transition,
            "reason": reason, "message": message});
        match current {
            Some(i) if conditions[i] == new_cond => return,
            Some(i) => conditions[i] = new_cond,
            None => conditions.push(new_cond),
        }
        let mut new = (*old).clone();
        new["status"] = json!({"conditions": conditions});
        if let Err(e) = st.update_from(
            def,
            "",
            name,
            &old,
            new,
            Some("status"),
            &WriteCtx::system("kube-apiserver"),
        ) {
            tracing::debug!("aggregator: {name}: {}", e.body["message"]);
            return;
        }
        st.store.rv()
    };
    shared.notify(rv);
}

/// `metav1.APIResourceList` converted to one `APIVersionDiscovery` (kube-apiserver's
/// `ConvertGroupVersionIntoToDiscovery`): subresources under their resource.
pub fn to_version_discovery(version: &str, list: &Value) -> Value {
    let resources = list["resources"].as_array().cloned().unwrap_or_default();
    let mut out: Vec<Value> = Vec::new();
    for r in resources
        .iter()
        .filter(|r| !r["name"].as_str().unwrap_or("").contains('/'))
    {
        let mut e = json!({
            "resource": r["name"],
            "responseKind": {"group": r["group"].as_str().unwrap_or(""), "version": r["version"].as_str().unwrap_or(""), "kind": r["kind"]},
            "scope": if r["namespaced"] == json!(true) { "Namespaced" } else { "Cluster" },
            "singularResource": r["singularName"].as_str().unwrap_or(""),
            "verbs": r["verbs"].clone(),
        });
        for k in ["shortNames", "categories"] {
            if r[k].as_array().is_some_and(|a| !a.is_empty()) {
                e[k] = r[k].clone();
            }
        }
        out.push(e);
    }
    for r in resources.iter() {
        let name = r["name"].as_str().unwrap_or("");
        let Some((parent, sub)) = name.split_once('/') else {
            continue;
        };
        if let Some(p) = out.iter_mut().find(|p| p["resource"] == parent) {
            let s = json!({"subresource": sub,
                "responseKind": {"group": r["group"].as_str().unwrap_or(""), "version": r["version"].as_str().unwrap_or(""), "kind": r["kind"]},
                "verbs": r["verbs"].clone()});
            match p["subresources"].as_array_mut() {
                Some(a) => a.push(s),
                None => p["subresources"] = json!([s]),
            }
        }
    }
    json!({"version": version, "resources": out, "freshness": "Current"})
}

/// Fetches the backend's discovery for one group-version, through the same verified transport
/// as proxied requests (`/discovery/v2` first, the legacy document on 404).
async fn fetch_discovery(shared: &Shared, api_service: &Value) -> Result<Value, String> {
    let (group, version) = (
        api_service["spec"]["group"].as_str().unwrap_or(""),
        api_service["spec"]["version"].as_str().unwrap_or(""),
    );
    let (code, body) = backend_get(shared, api_service, true, "/discovery/v2").await?;
    if code == 200
        && let Ok(v) = serde_json::from_slice::<Value>(&body)
        && v["kind"] == "APIGroupDiscoveryList"
    {
        let found = v["items"].as_array().into_iter().flatten().find_map(|g| {
            (g["metadata"]["name"] == group).then(|| {
                g["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|x| x["version"] == version)
                    .cloned()
            })?
        });
        return found.ok_or_else(|| format!("{version}.{group} is not in the backend's discovery"));
    }
    if code != 404 && code != 200 {
        return Err(format!("returned non-success response code: {code}"));
    }
    let path = format!("/apis/{group}/{version}");
    let (code, body) = backend_get(shared, api_service, true, &path).await?;
    if code != 200 {
        return Err(format!(
            "failed to download discovery for {path}: ResponseCode: {code}"
        ));
    }
    let list: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(to_version_discovery(version, &list))
}

/// The aggregator's loop: availability of every APIService with a Service, and their discovery.
pub async fn run(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let interval = shared
        .config
        .aggregator_interval
        .max(Duration::from_millis(50));
    loop {
        if *stop.borrow() {
            return;
        }
        pass(&shared).await;
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

async fn pass(shared: &Shared) {
    let services: Vec<Arc<Value>> = shared
        .lock()
        .store
        .list("apiservices", None)
        .filter(|a| a["spec"]["service"].is_object())
        .cloned()
        .collect();
    let names: Vec<String> = services
        .iter()
        .map(|a| a["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    shared
        .aggregator()
        .discovery
        .retain(|n, _| names.contains(n));
    for (a, name) in services.iter().zip(&names) {
        let cond = availability(shared, a).await;
        let was_available = is_available(a);
        set_available(shared, name, &cond);
        let available = cond.0 == "True";
        let due = match shared.aggregator().discovery.get(name) {
            Some((at, doc)) => {
                at.elapsed() >= DISCOVERY_REFRESH
                    || (available && !was_available)
                    || (available && doc["freshness"] != "Current")
            }
            None => true,
        };
        if !due {
            continue;
        }
        let Some(fresh) = shared.lock().store.get("apiservices", "", name) else {
            continue;
        };
        let version = fresh["spec"]["version"].as_str().unwrap_or("").to_string();
        // Discovery goes through the proxy path, which refuses an unavailable APIService.
        let doc = if is_available(&fresh) {
            fetch_discovery(shared, &fresh).await
        } else {
            Err("service unavailable".into())
        };
        let doc = doc.unwrap_or_else(|e| {
            tracing::debug!("aggregator: discovery of {name}: {e}");
            // kube-aggregator publishes the group-version without resources.
            json!({"version": version, "resources": [], "freshness": "Stale"})
        });
        shared
            .aggregator()
            .discovery
            .insert(name.clone(), (Instant::now(), doc));
    }
}

/// One aggregated group: its name, its versions by priority, and the discovered versions.
#[derive(Debug, Clone)]
pub struct AggregatedGroup {
    pub name: String,
    /// `(version, APIVersionDiscovery)`, preferred first.
    pub versions: Vec<(String, Value)>,
    priority: i64,
}

/// The groups of APIServices with a Service that the server does not serve itself, ordered as
/// kube-aggregator orders them (group priority, highest first, then name).
pub fn groups(shared: &Shared) -> Vec<AggregatedGroup> {
    let services: Vec<Arc<Value>> = shared
        .lock()
        .store
        .list("apiservices", None)
        .filter(|a| a["spec"]["service"].is_object())
        .cloned()
        .collect();
    let agg = shared.aggregator();
    let mut by_group: HashMap<String, Vec<(i64, String, Value)>> = HashMap::new();
    let mut prio: HashMap<String, i64> = HashMap::new();
    for a in &services {
        let g = a["spec"]["group"].as_str().unwrap_or("").to_string();
        let v = a["spec"]["version"].as_str().unwrap_or("").to_string();
        if g.is_empty() || super::resources::GROUP_ORDER.contains(&g.as_str()) {
            continue;
        }
        let name = a["metadata"]["name"].as_str().unwrap_or("");
        let doc = agg
            .discovery
            .get(name)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| json!({"version": v, "resources": [], "freshness": "Stale"}));
        let p = a["spec"]["groupPriorityMinimum"].as_i64().unwrap_or(0);
        let e = prio.entry(g.clone()).or_insert(p);
        *e = (*e).max(p);
        by_group.entry(g).or_default().push((
            a["spec"]["versionPriority"].as_i64().unwrap_or(0),
            v,
            doc,
        ));
    }
    let mut out: Vec<AggregatedGroup> = by_group
        .into_iter()
        .map(|(name, mut vs)| {
            vs.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            AggregatedGroup {
                priority: prio[&name],
                name,
                versions: vs.into_iter().map(|(_, v, d)| (v, d)).collect(),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

impl AggregatedGroup {
    /// The legacy `APIGroup` entry (`/apis` and `/apis/<group>`).
    pub fn api_group(&self) -> Value {
        let gvs: Vec<Value> = self
            .versions
            .iter()
            .map(|(v, _)| json!({"groupVersion": format!("{}/{v}", self.name), "version": v}))
            .collect();
        json!({"name": self.name, "versions": gvs, "preferredVersion": gvs.first().cloned().unwrap_or(Value::Null)})
    }

    /// The `APIGroupDiscovery` item of aggregated discovery.
    pub fn discovery_item(&self) -> Value {
        json!({"metadata": {"name": self.name, "creationTimestamp": null},
            "versions": self.versions.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>()})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_info_of_aggregated_paths() {
        let get = hyper::Method::GET;
        assert_eq!(request_info(&get, &[], false), None);
        assert_eq!(
            request_info(&get, &["namespaces", "a", "pods"], false),
            Some(("list", "pods".into(), Some("a"), None))
        );
        assert_eq!(
            request_info(&get, &["namespaces", "a", "pods", "web"], false),
            Some(("get", "pods".into(), Some("a"), Some("web")))
        );
        assert_eq!(
            request_info(&get, &["pods"], true),
            Some(("watch", "pods".into(), None, None))
        );
        assert_eq!(
            request_info(&get, &["nodes", "n1"], false),
            Some(("get", "nodes".into(), None, Some("n1")))
        );
    }

    #[test]
    fn namespaced_callers_are_refused_outside_their_namespace() {
        let c = Caller::Namespaced("team-b".into());
        let get = hyper::Method::GET;
        assert!(
            authorize(
                &c,
                "metrics.k8s.io",
                &get,
                &["namespaces", "team-b", "pods"],
                false
            )
            .is_none()
        );
        assert!(authorize(&c, "metrics.k8s.io", &get, &[], false).is_none());
        let r = authorize(&c, "metrics.k8s.io", &get, &["pods"], false).unwrap();
        assert_eq!(r.status(), 403);
        assert!(
            authorize(
                &Caller::Admin("admin".into()),
                "metrics.k8s.io",
                &get,
                &["pods"],
                false
            )
            .is_none()
        );
    }

    #[test]
    fn legacy_discovery_converts_like_kube_apiserver() {
        let list = json!({"kind": "APIResourceList", "groupVersion": "metrics.k8s.io/v1beta1", "resources": [
            {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
            {"name": "pods/status", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get"]},
        ]});
        let d = to_version_discovery("v1beta1", &list);
        assert_eq!(d["resources"][0]["scope"], "Cluster");
        assert_eq!(d["resources"][1]["resource"], "pods");
        assert_eq!(
            d["resources"][1]["subresources"][0]["subresource"],
            "status"
        );
        assert_eq!(d["freshness"], "Current");
    }
}
