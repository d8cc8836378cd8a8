//! HTTP front: authentication, path routing, query parsing, content negotiation, fault
//! injection and request counting, then dispatch to [`super::ops`] / [`super::watch`].

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Request, Response};
use serde_json::{Value, json};

use super::errors::ApiError;
use super::faults::Fault;
use super::ops::{self, DeleteOpts, Deleted, WriteCtx};
use super::patchops as patch;
use super::resources::{self, ResourceDef};
use super::server::Shared;
use super::{convert, decode, discovery, pod_streams, selectors, table, watch};

/// Response body type: full bodies and watch streams.
pub type Body = BoxBody<Bytes, std::convert::Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A JSON response.
pub fn json_response(code: u16, body: &Value, warnings: &[String]) -> Response<Body> {
    let mut b = Response::builder()
        .status(code)
        .header("Content-Type", "application/json");
    for w in warnings {
        b = b.header("Warning", w);
    }
    b.body(full(serde_json::to_vec(body).unwrap_or_default()))
        .expect("valid response")
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.body, &[]);
    for (k, v) in &e.headers {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::try_from(k.as_str()),
            hyper::header::HeaderValue::try_from(v.as_str()),
        ) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

pub fn text_response(code: u16, text: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("X-Content-Type-Options", "nosniff")
        .body(full(text.to_string()))
        .expect("valid response")
}

fn not_found_text() -> Response<Body> {
    text_response(404, "404 page not found\n")
}

fn resource_not_found() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Full access; the name is `admin` or one of [`super::ServerConfig::users`].
    Admin(String),
    /// Limited to one namespace.
    Namespaced(String),
}

/// The parsed request target for resource paths.
#[derive(Debug, Clone)]
pub struct Target {
    pub def: &'static ResourceDef,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// How the client wants the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    Json,
    Yaml,
    Table,
    PartialMetadata,
}

/// Query parameters, percent-decoded (last value wins, as Go's `Get`).
#[derive(Debug, Default, Clone)]
pub struct Query(pub HashMap<String, Vec<String>>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        if let Some(q) = q {
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                m.entry(pct_decode(k)).or_default().push(pct_decode(v));
            }
        }
        Query(m)
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).and_then(|v| v.first()).map(String::as_str)
    }
    pub fn all(&self, k: &str) -> &[String] {
        self.0.get(k).map(Vec::as_slice).unwrap_or(&[])
    }
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("1" | "true" | "True"))
    }
}

/// Decode `%XX` and `+` (form encoding, as Go's `url.ParseQuery`).
pub fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Everything a verb handler needs.
pub struct Req {
    pub shared: Arc<Shared>,
    pub method: hyper::Method,
    pub target: Target,
    pub query: Query,
    pub content_type: String,
    pub user_agent: String,
    pub repr: Representation,
    pub body: Bytes,
}

impl Req {
    fn ns(&self) -> &str {
        self.target.namespace.as_deref().unwrap_or("")
    }

    fn write_ctx(&self) -> Result<WriteCtx, ApiError> {
        let dry = self.query.all("dryRun");
        if let Some(bad) = dry.iter().find(|d| d.as_str() != "All") {
            let _ = bad;
            let kind = match self.method {
                hyper::Method::POST => "CreateOptions",
                hyper::Method::PUT => "UpdateOptions",
                hyper::Method::PATCH => "PatchOptions",
                _ => "DeleteOptions",
            };
            let list: Vec<String> = dry.iter().map(|d| format!("{d:?}")).collect();
            return Err(options_invalid(
                kind,
                "dryRun",
                "FieldValueNotSupported",
                &format!(
                    "Unsupported value: []string{{{}}}: supported values: \"All\"",
                    list.join(", ")
                ),
            ));
        }
        Ok(WriteCtx {
            manager: patch::manager_from_request(
                self.query.get("fieldManager"),
                Some(&self.user_agent),
            ),
            dry_run: !dry.is_empty(),
            apply: false,
        })
    }
}

/// 422 on an options kind (`CreateOptions`, `ListOptions`, ...).
pub fn options_invalid(kind: &str, field: &str, reason: &str, msg: &str) -> ApiError {
    ApiError::new(
        422,
        "Invalid",
        format!("{kind}.meta.k8s.io \"\" is invalid: {field}: {msg}"),
        Some(
            json!({"group": "meta.k8s.io", "kind": kind, "causes": [{"reason": reason, "message": msg, "field": field}]}),
        ),
    )
}

/// Entry point for every request.
pub async fn handle(shared: Arc<Shared>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let latency = shared.faults().latency;
    if let Some(d) = latency {
        tokio::time::sleep(d).await;
    }
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = Query::parse(parts.uri.query());

    // Authentication.
    let caller = match authenticate(&shared, &parts.headers) {
        Some(c) => c,
        None => {
            return json_response(
                401,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401}),
                &[],
            );
        }
    };

    // API aggregation: an APIService that names a Service owns its group-version, before
    // anything this server serves itself for the group (kube-aggregator's proxy handler).
    if let Some(api_service) = super::aggregator::api_service_for(&shared, &path) {
        let watch = query.flag("watch");
        let (verb, resource) = super::aggregator::counted_as(&parts.method, &path, watch);
        let resp =
            super::aggregator::proxy(shared.clone(), &api_service, parts, body, &caller, watch)
                .await;
        shared
            .faults()
            .count(caller.user(), verb, &resource, resp.status().as_u16());
        return resp;
    }

    // metrics-server's group (where this server plays a cluster that has one) and the
    // authorizer's reviews (not stored resources).
    if (shared.config.resource_metrics && path.starts_with("/apis/metrics.k8s.io/"))
        || path.trim_end_matches('/') == "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    {
        let bytes = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let resp =
            super::resource_metrics::handle(&shared, &parts.method, &path, &query, &caller, &bytes)
                .unwrap_or_else(|| error_response(&resource_not_found()));
        shared.faults().count(
            caller.user(),
            if parts.method == hyper::Method::POST {
                "create"
            } else {
                "list"
            },
            if path.starts_with("/apis/metrics.k8s.io/") {
                "pods.metrics.k8s.io"
            } else {
                "subjectaccessreviews"
            },
            resp.status().as_u16(),
        );
        return resp;
    }

    // Non-resource paths.
    if let Some(resp) = discovery::handle(&shared, &path, &parts.headers, &caller) {
        let code = resp.status().as_u16();
        shared
            .faults()
            .count(caller.user(), "get", "discovery", code);
        return resp;
    }

    let target = match route(&path) {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let verb = kube_verb(&parts.method, &target, &query);
    let counter_resource = match &target.subresource {
        Some(s) => format!("{}/{}", target.def.plural, s),
        None => target.def.plural.to_string(),
    };

    // Authorization of the namespaced identity.
    if let Caller::Namespaced(allowed) = &caller
        && target.namespace.as_deref() != Some(allowed.as_str())
    {
        let e = forbidden_for(&target, verb, allowed);
        shared
            .faults()
            .count(caller.user(), verb, &counter_resource, 403);
        return error_response(&e);
    }

    // Injected faults.
    let fault = shared.faults().take(caller.user(), verb, &counter_resource);
    if let Some(f) = fault {
        let e = match f {
            Fault::TooManyRequests { retry_after_secs } => {
                let mut e = ApiError::new(
                    429,
                    "TooManyRequests",
                    "the server has received too many requests and has asked us to try again later",
                    Some(json!({"retryAfterSeconds": retry_after_secs})),
                );
                e.headers
                    .push(("Retry-After".into(), retry_after_secs.to_string()));
                e
            }
            Fault::InternalError => ApiError::internal("injected internal error"),
            Fault::ServiceUnavailable => ApiError::new(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
                None,
            ),
            Fault::Conflict => ApiError::stale(
                target.def.group,
                target.def.plural,
                target.name.as_deref().unwrap_or(""),
            ),
        };
        shared
            .faults()
            .count(caller.user(), verb, &counter_resource, e.code);
        return error_response(&e);
    }

    // Streaming subresources of pods: proxied to the kubelet, before any body is read.
    if target.def.plural == "pods"
        && target.def.group.is_empty()
        && let (Some(ns), Some(name), Some(sub)) = (
            target.namespace.clone(),
            target.name.clone(),
            target.subresource.clone(),
        )
    {
        let is_get = parts.method == hyper::Method::GET;
        let is_post = parts.method == hyper::Method::POST;
        let log = sub == "log" && is_get;
        let connect =
            matches!(sub.as_str(), "exec" | "attach" | "portforward") && (is_get || is_post);
        if log || connect {
            let resp = if log {
                pod_streams::log(shared.clone(), &ns, &name, &query).await
            } else {
                pod_streams::connect(shared.clone(), parts, &ns, &name, &sub, &query).await
            };
            shared.faults().count(
                caller.user(),
                verb,
                &counter_resource,
                resp.status().as_u16(),
            );
            return resp;
        }
    }

    let repr = match negotiate(parts.headers.get("accept").and_then(|v| v.to_str().ok())) {
        Ok(r) => r,
        Err(e) => {
            shared
                .faults()
                .count(caller.user(), verb, &counter_resource, e.code);
            return error_response(&e);
        }
    };
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let user_agent = parts
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let r = Req {
        shared: shared.clone(),
        method: parts.method.clone(),
        target,
        query,
        content_type,
        user_agent,
        repr,
        body,
    };
    let resp = dispatch(r, verb).await;
    shared.faults().count(
        caller.user(),
        verb,
        &counter_resource,
        resp.status().as_u16(),
    );
    resp
}

impl Caller {
    /// The user name requests are counted under.
    pub fn user(&self) -> &str {
        match self {
            Caller::Admin(u) => u,
            Caller::Namespaced(_) => "limited",
        }
    }
}

fn authenticate(shared: &Shared, headers: &hyper::HeaderMap) -> Option<Caller> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let token = auth.strip_prefix("Bearer ")?.trim();
    if token == shared.admin_token {
        return Some(Caller::Admin("admin".into()));
    }
    if let Some((_, user)) = shared.config.users.iter().find(|(t, _)| t == token) {
        return Some(Caller::Admin(user.clone()));
    }
    match &shared.config.namespaced_token {
        Some((t, ns)) if t == token => Some(Caller::Namespaced(ns.clone())),
        _ => None,
    }
}

fn forbidden_for(t: &Target, verb: &str, ns: &str) -> ApiError {
    let user = format!("system:serviceaccount:{ns}:limited");
    let res = match &t.subresource {
        Some(s) => format!("{}/{}", t.def.plural, s),
        None => t.def.plural.to_string(),
    };
    let scope = match &t.namespace {
        Some(n) => format!("in the namespace \"{n}\""),
        None => "at the cluster scope".to_string(),
    };
    let what = match &t.name {
        Some(n) => format!("{} \"{n}\"", t.def.plural),
        None => t.def.plural.to_string(),
    };
    let mut details = json!({"kind": t.def.plural});
    if let Some(n) = &t.name {
        details["name"] = json!(n);
    }
    if !t.def.group.is_empty() {
        details["group"] = json!(t.def.group);
    }
    ApiError::forbidden(
        format!(
            "{what} is forbidden: User \"{user}\" cannot {verb} resource \"{res}\" in API group \"{}\" {scope}",
            t.def.group
        ),
        Some(details),
    )
}

/// The Kubernetes verb of a request (for counters, faults and RBAC messages).
fn kube_verb(method: &hyper::Method, t: &Target, q: &Query) -> &'static str {
    match *method {
        hyper::Method::GET if t.name.is_none() => {
            if q.flag("watch") {
                "watch"
            } else {
                "list"
            }
        }
        hyper::Method::GET => "get",
        hyper::Method::POST => "create",
        hyper::Method::PUT => "update",
        hyper::Method::PATCH => "patch",
        hyper::Method::DELETE if t.name.is_none() => "deletecollection",
        hyper::Method::DELETE => "delete",
        _ => "unknown",
    }
}

/// Map a resource path to its target, or the exact 404 kube-apiserver answers.
#[allow(clippy::result_large_err)]
fn route(path: &str) -> Result<Target, Response<Body>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found_text()),
    };
    if !resources::group_version_known(group, version) {
        if group.is_empty() && !rest.is_empty() {
            return Err(error_response(&resource_not_found()));
        }
        return Err(not_found_text());
    }
    let find = |plural: &str| resources::find(group, version, plural);
    let nf = || error_response(&resource_not_found());
    let t = |def: &'static ResourceDef,
             ns: Option<&str>,
             name: Option<&str>,
             sub: Option<&str>|
     -> Result<Target, Response<Body>> {
        if let Some(s) = sub
            && !def.has_subresource(s)
        {
            return Err(nf());
        }
        Ok(Target {
            def,
            namespace: ns.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        })
    };
    match rest {
        ["namespaces", ns, plural, tail @ ..]
            if !(group.is_empty()
                && matches!(*plural, "status" | "finalize")
                && tail.is_empty()) =>
        {
            let def = find(plural).ok_or_else(nf)?;
            if !def.namespaced {
                return Err(nf());
            }
            match tail {
                [] => t(def, Some(ns), None, None),
                [name] => t(def, Some(ns), Some(name), None),
                [name, sub] => t(def, Some(ns), Some(name), Some(sub)),
                _ => Err(nf()),
            }
        }
        [plural, tail @ ..] => {
            let def = find(plural).ok_or_else(nf)?;
            match tail {
                [] => t(def, None, None, None),
                [name] if !def.namespaced => t(def, None, Some(name), None),
                [name, sub] if !def.namespaced => t(def, None, Some(name), Some(sub)),
                _ => Err(nf()),
            }
        }
        _ => Err(not_found_text()),
    }
}

/// Pick the representation from `Accept`, or 406.
fn negotiate(accept: Option<&str>) -> Result<Representation, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Representation::Json);
    };
    for part in accept.split(',') {
        let mut it = part.split(';').map(str::trim);
        let media = it.next().unwrap_or("").to_ascii_lowercase();
        let params: HashMap<String, String> = it
            .filter_map(|p| {
                p.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            })
            .collect();
        match media.as_str() {
            "application/json" | "*/*" | "application/*" | "application/json;stream=watch" => {
                match params.get("as").map(String::as_str) {
                    None => return Ok(Representation::Json),
                    Some("Table") if params.get("g").is_none_or(|g| g == "meta.k8s.io") => {
                        return Ok(Representation::Table);
                    }
                    Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                        if params.get("g").is_none_or(|g| g == "meta.k8s.io") =>
                    {
                        return Ok(Representation::PartialMetadata);
                    }
                    Some(_) => continue,
                }
            }
            "application/yaml" => return Ok(Representation::Yaml),
            _ => continue,
        }
    }
    Err(ApiError::new(
        406,
        "NotAcceptable",
        "406: Not Acceptable\n\nAvailable representations: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        Some(json!({})),
    ))
}

/// Render a single object for the client.
pub fn render_object(def: &ResourceDef, obj: &Value, repr: Representation) -> Value {
    let obj = convert::from_storage(def, obj);
    match repr {
        Representation::PartialMetadata => table::partial_metadata(&obj),
        Representation::Table => table::table_for(def, &[obj], None),
        _ => obj,
    }
}

fn respond(
    code: u16,
    def: &ResourceDef,
    obj: &Value,
    repr: Representation,
    warnings: &[String],
) -> Response<Body> {
    let v = render_object(def, obj, repr);
    if repr == Representation::Yaml {
        let yaml = serde_saphyr::to_string(&v).unwrap_or_default();
        return Response::builder()
            .status(code)
            .header("Content-Type", "application/yaml")
            .body(full(yaml))
            .expect("valid response");
    }
    json_response(code, &v, warnings)
}

async fn dispatch(r: Req, verb: &str) -> Response<Body> {
    let res = match verb {
        "watch" => return watch::serve(r).await,
        "list" => list(&r),
        "get" => get(&r),
        "create" => create(&r),
        "update" => update(&r),
        "patch" => patch_handler(&r),
        "delete" => delete(&r),
        "deletecollection" => delete_collection(&r),
        _ => Err(ApiError::method_not_allowed()),
    };
    match res {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    }
}

fn get(r: &Req) -> Result<Response<Body>, ApiError> {
    let def = r.target.def;
    let name = r.target.name.as_deref().unwrap_or("");
    match r.target.subresource.as_deref() {
        None | Some("status") | Some("ephemeralcontainers") => {
            let obj = r.shared.lock().get(def, r.ns(), name)?;
            Ok(respond(200, def, &obj, r.repr, &[]))
        }
        Some(_) => Err(ApiError::method_not_allowed()),
    }
}

/// `limit`/`continue` handling plus selectors.
fn list(r: &Req) -> Result<Response<Body>, ApiError> {
    let def = r.target.def;
    let label = selectors::LabelSelector::parse(r.query.get("labelSelector").unwrap_or(""))?;
    let field = selectors::FieldSelector::parse(
        r.query.get("fieldSelector").unwrap_or(""),
        def.group,
        def.plural,
    )?;
    check_list_rv(r)?;
    let limit: usize = r
        .query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let start = match r.query.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => Some(decode_continue(c)?),
        None => None,
    };
    let st = r.shared.lock();
    let rv = st.store.rv();
    let ns = r.target.namespace.as_deref();
    let iter: Box<dyn Iterator<Item = &Arc<Value>>> = match &start {
        Some((_, key)) => st.store.list_after(def.storage, ns, key),
        None => st.store.list(def.storage, ns),
    };
    // Under the lock only references are taken (the stored objects are immutable `Arc`s):
    // copying them into the response happens after it is released.
    let mut picked: Vec<Arc<Value>> = Vec::new();
    let mut remaining = 0usize;
    let mut more = false;
    let selective = !label.is_empty() || !field.is_empty();
    for obj in iter {
        if !label.matches(obj["metadata"]["labels"].as_object()) || !field.matches(obj) {
            continue;
        }
        if limit > 0 && picked.len() >= limit {
            more = true;
            remaining += 1;
            if selective {
                // remainingItemCount is only sent without selectors: one more match is all
                // that needs knowing.
                break;
            }
            continue;
        }
        picked.push(obj.clone());
    }
    drop(st);
    let last_key: Option<(String, String)> = picked.last().map(|obj| {
        (
            ops::meta_str(obj, "namespace").to_string(),
            ops::meta_str(obj, "name").to_string(),
        )
    });
    let items: Vec<Value> = picked
        .iter()
        .map(|obj| convert::from_storage(def, obj))
        .collect();
    let list_rv = start.as_ref().map(|(rv, _)| *rv).unwrap_or(rv);
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if more && let Some(k) = last_key {
        metadata["continue"] = json!(encode_continue(list_rv, &k));
        if label.is_empty() && field.is_empty() {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    let body = match r.repr {
        Representation::Table => table::table_for(def, &items, Some(metadata)),
        Representation::PartialMetadata => {
            let items: Vec<Value> = items.iter().map(table::partial_metadata).collect();
            json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
                   "items": if items.is_empty() { Value::Null } else { Value::Array(items) }})
        }
        _ => {
            let items: Vec<Value> = items.into_iter().map(strip_type_meta).collect();
            // Built by hand: `json!` would copy every item once more (it serializes the
            // expressions it is given into new values).
            let mut list = serde_json::Map::new();
            list.insert("kind".into(), json!(def.list_kind()));
            list.insert("apiVersion".into(), json!(def.api_version()));
            list.insert("metadata".into(), metadata);
            list.insert("items".into(), Value::Array(items));
            Value::Object(list)
        }
    };
    Ok(json_response(200, &body, &[]))
}

/// List items carry no kind/apiVersion on the wire.
fn strip_type_meta(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove("kind");
        m.remove("apiVersion");
    }
    v
}

/// resourceVersion / resourceVersionMatch checks for list.
fn check_list_rv(r: &Req) -> Result<(), ApiError> {
    let rv = r.query.get("resourceVersion").unwrap_or("");
    let m = r.query.get("resourceVersionMatch").unwrap_or("");
    if !m.is_empty() && rv.is_empty() {
        return Err(options_invalid(
            "ListOptions",
            "resourceVersionMatch",
            "FieldValueForbidden",
            "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    if rv.is_empty() || rv == "0" {
        return Ok(());
    }
    let n: u64 = rv.parse().map_err(|_| {
        ApiError::new(500, "", format!("resourceVersion: Invalid value: \"{rv}\": strconv.ParseUint: parsing \"{rv}\": invalid syntax"), None)
    })?;
    let current = r.shared.lock().store.rv();
    if n > current {
        let mut e = ApiError::new(
            504,
            "Timeout",
            format!("Timeout: Too large resource version: {n}, current: {current}"),
            Some(
                json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
            ),
        );
        e.headers.push(("Retry-After".into(), "1".into()));
        return Err(e);
    }
    Ok(())
}

/// Continue tokens look like kube-apiserver's: base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":"key"}`.
fn encode_continue(rv: u64, key: &(String, String)) -> String {
    use base64::Engine;
    let start = if key.0.is_empty() {
        format!("{}\u{0}", key.1)
    } else {
        format!("{}/{}\u{0}", key.0, key.1)
    };
    let j = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start});
    continue_engine().encode(j.to_string())
}

/// Go's `base64.RawURLEncoding` (no padding, lenient about trailing bits).
fn continue_engine() -> base64::engine::GeneralPurpose {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let cfg = GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    GeneralPurpose::new(&base64::alphabet::URL_SAFE, cfg)
}

fn decode_continue(token: &str) -> Result<(u64, (String, String)), ApiError> {
    use base64::Engine;
    let bad = |why: String| ApiError::bad_request(format!("invalid continue token: {why}"));
    let raw = continue_engine()
        .decode(token)
        .map_err(|e| bad(format!("continue key is not valid: {e}")))?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| {
        let first = raw.first().copied().unwrap_or(0);
        // Go quotes the offending byte as a rune: printable ASCII as is, the rest as \uXXXX.
        let quoted = if first.is_ascii_graphic() {
            (first as char).to_string()
        } else {
            format!("\\u{first:04x}")
        };
        bad(format!(
            "continue key is not valid: invalid character '{quoted}' looking for beginning of value"
        ))
    })?;
    let rv = v["rv"]
        .as_u64()
        .ok_or_else(|| bad("continue key is not valid: missing rv".into()))?;
    let start = v["start"].as_str().unwrap_or("").trim_end_matches('\u{0}');
    let key = match start.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (String::new(), start.to_string()),
    };
    Ok((rv, key))
}

/// Decode the request body into an object of the target kind (create/update).
fn decode_object(r: &Req) -> Result<(Value, Vec<String>), ApiError> {
    let def = r.target.def;
    let strict = r.query.get("fieldValidation").unwrap_or("Warn");
    let value = decode::parse_body(&r.content_type, &r.body, def)?;
    // Type checks apply to the wire form, before any conversion to storage.
    let (value, warnings) = decode::check_typed(def, value, strict)?;
    Ok((convert::to_storage(def, value)?, warnings))
}

fn create(r: &Req) -> Result<Response<Body>, ApiError> {
    let def = r.target.def;
    if r.target.name.is_some() {
        return match r.target.subresource.as_deref() {
            Some("binding") => admission_binding(r),
            Some("token") => admission_token(r),
            Some("eviction") => Err(ApiError::method_not_allowed()),
            _ => Err(ApiError::method_not_allowed()),
        };
    }
    let ctx = r.write_ctx()?;
    let (obj, warnings) = decode_object(r)?;
    let ns = r.ns().to_string();
    let body_ns = ops::meta_str(&obj, "namespace");
    if def.namespaced && !body_ns.is_empty() && body_ns != ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let (stored, rv) = {
        let mut st = r.shared.lock();
        let o = st.create(def, &ns, obj, &ctx)?;
        (o, st.store.rv())
    };
    r.shared.notify(rv);
    Ok(respond(201, def, &stored, r.repr, &warnings))
}

fn admission_binding(r: &Req) -> Result<Response<Body>, ApiError> {
    let body: Value = decode::parse_body(&r.content_type, &r.body, r.target.def)?;
    let name = r.target.name.as_deref().unwrap_or("");
    let ctx = r.write_ctx()?;
    let (status, rv) = {
        let mut st = r.shared.lock();
        let s = admission::bind(&mut st, r.target.def, r.ns(), name, &body, &ctx)?;
        (s, st.store.rv())
    };
    r.shared.notify(rv);
    Ok(json_response(201, &status, &[]))
}

fn admission_token(r: &Req) -> Result<Response<Body>, ApiError> {
    let body: Value = decode::parse_body(&r.content_type, &r.body, r.target.def)?;
    let name = r.target.name.as_deref().unwrap_or("");
    let st = r.shared.lock();
    let out = admission::token_request(&st, r.ns(), name, &body)?;
    drop(st);
    Ok(json_response(201, &out, &[]))
}

fn update(r: &Req) -> Result<Response<Body>, ApiError> {
    let def = r.target.def;
    let name = r
        .target
        .name
        .clone()
        .ok_or_else(ApiError::method_not_allowed)?;
    match r.target.subresource.as_deref() {
        None | Some("status") => {}
        Some("finalize") if def.plural == "namespaces" => {}
        _ => return Err(ApiError::method_not_allowed()),
    }
    let ctx = r.write_ctx()?;
    let (obj, warnings) = decode_object(r)?;
    let ns = r.ns().to_string();
    let body_ns = ops::meta_str(&obj, "namespace");
    if def.namespaced && !body_ns.is_empty() && body_ns != ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let sub = r.target.subresource.as_deref();
    let ((stored, created), rv) = {
        let mut st = r.shared.lock();
        let o = st.update(def, &ns, &name, obj, sub, &ctx)?;
        (o, st.store.rv())
    };
    r.shared.notify(rv);
    Ok(respond(
        if created { 201 } else { 200 },
        def,
        &stored,
        r.repr,
        &warnings,
    ))
}

fn patch_handler(r: &Req) -> Result<Response<Body>, ApiError> {
    let def = r.target.def;
    let name = r
        .target
        .name
        .clone()
        .ok_or_else(ApiError::method_not_allowed)?;
    match r.target.subresource.as_deref() {
        None | Some("status") => {}
        _ => return Err(ApiError::method_not_allowed()),
    }
    let ns = r.ns().to_string();
    let ct = r
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let now = ops::now_rfc3339();
    let force = r.query.flag("force");
    let mut st = r.shared.lock();
    let live = st.store.get(def.storage, &ns, &name);
    let (result, created) = match ct.as_str() {
        "application/apply-patch+yaml" | "application/apply-patch+json" => {
            let manager = r.query.get("fieldManager");
            let applied = patch::decode_apply_body(&r.body)?;
            patch::validate_apply(
                manager,
                &applied,
                &def.api_version(),
                def.kind,
                &name,
                r.target.namespace.as_deref(),
            )?;
            let ctx = WriteCtx {
                manager: manager.unwrap_or("").to_string(),
                dry_run: r.write_ctx()?.dry_run,
                apply: true,
            };
            let live_view = live.as_ref().map(|l| convert::from_storage(def, l));
            let merged = patch::server_side_apply(
                live_view.as_ref(),
                &applied,
                &ctx.manager,
                force,
                def.group,
                def.kind,
                &def.api_version(),
                &now,
            )?;
            let merged = convert::to_storage(def, merged)?;
            match &live {
                Some(old) => (
                    st.update_from(
                        def,
                        &ns,
                        &name,
                        old,
                        merged,
                        r.target.subresource.as_deref(),
                        &ctx,
                    )?,
                    false,
                ),
                None => {
                    let mut m = merged;
                    if ops::meta_str(&m, "name").is_empty() {
                        m["metadata"]["name"] = json!(name);
                    }
                    (st.create(def, &ns, m, &ctx)?, true)
                }
            }
        }
        "application/merge-patch+json"
        | "application/json-patch+json"
        | "application/strategic-merge-patch+json" => {
            let ctx = r.write_ctx()?;
            let patch_body = if ct == "application/json-patch+json" {
                patch::decode_json_patch(&r.body)?
            } else {
                patch::decode_patch_body(&r.body)?
            };
            let old = live.ok_or_else(|| ApiError::not_found(def.group, def.plural, &name))?;
            let view = convert::from_storage(def, &old);
            let patched = match ct.as_str() {
                "application/merge-patch+json" => patch::merge_patch(&view, &patch_body),
                "application/json-patch+json" => patch::json_patch(&view, &patch_body)?,
                _ => patch::strategic_merge_patch(def.group, def.kind, &view, &patch_body)?,
            };
            // A patch may carry a resourceVersion precondition.
            let prv = patched["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("");
            if !prv.is_empty() && prv != ops::meta_str(&old, "resourceVersion") {
                return Err(ApiError::stale(def.group, def.plural, &name));
            }
            let patched = convert::to_storage(def, patched)?;
            let (patched, _) = decode::check_typed(def, patched, "Ignore")?;
            (
                st.update_from(
                    def,
                    &ns,
                    &name,
                    &old,
                    patched,
                    r.target.subresource.as_deref(),
                    &ctx,
                )?,
                false,
            )
        }
        _ => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "415: Unsupported Media Type",
                Some(json!({})),
            ));
        }
    };
    let rv = st.store.rv();
    drop(st);
    r.shared.notify(rv);
    Ok(respond(
        if created { 201 } else { 200 },
        def,
        &result,
        r.repr,
        &[],
    ))
}

/// DeleteOptions from the query and the body.
fn delete_opts(r: &Req) -> Result<DeleteOpts, ApiError> {
    let mut o = DeleteOpts::default();
    if !r.body.is_empty()
        && let Ok(b) = serde_json::from_slice::<Value>(&r.body)
    {
        o.grace_period_seconds = b["gracePeriodSeconds"].as_i64();
        o.propagation = b["propagationPolicy"].as_str().map(str::to_string);
        o.precondition_uid = b["preconditions"]["uid"].as_str().map(str::to_string);
        o.precondition_rv = b["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        if b["orphanDependents"] == json!(true) && o.propagation.is_none() {
            o.propagation = Some("Orphan".into());
        }
    }
    if let Some(g) = r
        .query
        .get("gracePeriodSeconds")
        .and_then(|g| g.parse().ok())
    {
        o.grace_period_seconds = Some(g);
    }
    if let Some(p) = r.query.get("propagationPolicy") {
        o.propagation = Some(p.to_string());
    }
    if let Some(p) = &o.propagation
        && !matches!(p.as_str(), "Foreground" | "Background" | "Orphan")
    {
        return Err(options_invalid(
            "DeleteOptions",
            "propagationPolicy",
            "FieldValueNotSupported",
            &format!(
                "Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
            ),
        ));
    }
    Ok(o)
}

fn delete(r: &Req) -> Result<Response<Body>, ApiError> {
    let def = r.target.def;
    if r.target.subresource.is_some() {
        return Err(ApiError::method_not_allowed());
    }
    let name = r.target.name.clone().unwrap_or_default();
    let opts = delete_opts(r)?;
    let ctx = r.write_ctx()?;
    let (res, rv) = {
        let mut st = r.shared.lock();
        let res = st.delete(def, r.ns(), &name, &opts, &ctx)?;
        (res, st.store.rv())
    };
    r.shared.notify(rv);
    match res {
        Deleted::Pending(obj) => Ok(respond(200, def, &obj, r.repr, &[])),
        Deleted::Gone(obj) if ops::returns_object(def) => Ok(respond(200, def, &obj, r.repr, &[])),
        Deleted::Gone(obj) => {
            let mut details = ApiError::details(def.group, def.plural, &name);
            details["uid"] = obj["metadata"]["uid"].clone();
            Ok(json_response(
                200,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
                &[],
            ))
        }
    }
}

fn delete_collection(r: &Req) -> Result<Response<Body>, ApiError> {
    let def = r.target.def;
    if !def.verbs.contains(&"deletecollection") {
        return Err(ApiError::method_not_allowed());
    }
    let label = selectors::LabelSelector::parse(r.query.get("labelSelector").unwrap_or(""))?;
    let field = selectors::FieldSelector::parse(
        r.query.get("fieldSelector").unwrap_or(""),
        def.group,
        def.plural,
    )?;
    let opts = delete_opts(r)?;
    let ctx = r.write_ctx()?;
    let mut st = r.shared.lock();
    let ns = r.target.namespace.clone();
    let victims: Vec<(String, String)> = st
        .store
        .list(def.storage, ns.as_deref())
        .filter(|o| label.matches(o["metadata"]["labels"].as_object()) && field.matches(o))
        .map(|o| {
            (
                ops::meta_str(o, "namespace").to_string(),
                ops::meta_str(o, "name").to_string(),
            )
        })
        .collect();
    let mut items = Vec::new();
    for (ons, name) in victims {
        match st.delete(def, &ons, &name, &opts, &ctx) {
            Ok(Deleted::Gone(o)) | Ok(Deleted::Pending(o)) => {
                items.push(strip_type_meta(convert::from_storage(def, &o)))
            }
            Err(_) => {}
        }
    }
    let rv = st.store.rv();
    drop(st);
    r.shared.notify(rv);
    Ok(json_response(
        200,
        &json!({"kind": def.list_kind(), "apiVersion": def.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
        &[],
    ))
}

use super::admission;
