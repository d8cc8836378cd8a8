//! Pure translation of kubelet API requests into host API requests.
//!
//! The virtual API server calls the kubelet of a virtual node exactly as kube-apiserver calls
//! a real one (`pkg/kubelet/server/server.go` paths and query parameters). [`Route::parse`]
//! turns the path into a typed route whose names are validated Kubernetes names, and
//! [`host_request`] builds the request for the host copy of the pod: the same subresource
//! kube-apiserver itself offers (`pods/log`, `pods/exec`, `pods/attach`, `pods/portforward`),
//! with the kubelet's query parameters renamed to the API server's (`input` -> `stdin`,
//! `port` -> `ports`, ...). Parameters that are not in the allowlist are dropped, so nothing a
//! caller adds reaches the host.

use crate::names::{DnsLabel, DnsSubdomain};

/// A virtual pod named by a kubelet path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodKey {
    /// Virtual namespace.
    pub namespace: DnsLabel,
    /// Virtual pod name.
    pub name: DnsSubdomain,
}

/// The streaming endpoints, as metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/healthz`.
    Healthz,
    /// `/pods`.
    Pods,
    /// `/containerLogs/...`.
    Logs,
    /// `/exec/...`.
    Exec,
    /// `/attach/...`.
    Attach,
    /// `/portForward/...`.
    PortForward,
    /// Anything else.
    Other,
}

impl Endpoint {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Healthz => "healthz",
            Endpoint::Pods => "pods",
            Endpoint::Logs => "containerLogs",
            Endpoint::Exec => "exec",
            Endpoint::Attach => "attach",
            Endpoint::PortForward => "portForward",
            Endpoint::Other => "other",
        }
    }

    /// The host pod subresource the endpoint maps to.
    pub fn subresource(self) -> Option<&'static str> {
        match self {
            Endpoint::Logs => Some("log"),
            Endpoint::Exec => Some("exec"),
            Endpoint::Attach => Some("attach"),
            Endpoint::PortForward => Some("portforward"),
            _ => None,
        }
    }
}

/// A parsed kubelet API path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`.
    Healthz,
    /// `GET /pods`: the tenant's pods, in virtual terms.
    Pods,
    /// Logs, exec or attach of one container.
    Container {
        /// Which of the three.
        endpoint: Endpoint,
        /// The virtual pod.
        pod: PodKey,
        /// The container name (validated as an RFC 1123 label, as the API server does).
        container: DnsLabel,
    },
    /// Port forwarding to a pod.
    PortForward {
        /// The virtual pod.
        pod: PodKey,
    },
    /// A kubelet endpoint vcsync does not serve (`/stats`, `/metrics`, `/run`, `/spec`, ...).
    NotImplemented(&'static str),
    /// Not a kubelet path at all.
    NotFound,
}

/// Why a kubelet path names no valid pod or container.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A namespace, pod or container segment is not a valid name.
    #[error("invalid {what} {value:?} in the request path: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: String,
    },
}

/// Kubelet endpoints that exist but are not served for virtual nodes.
const NOT_IMPLEMENTED: &[&str] = &[
    "stats",
    "metrics",
    "run",
    "runningpods",
    "spec",
    "configz",
    "debug",
    "logs",
    "checkpoint",
    "cri",
];

impl Route {
    /// Parses a kubelet request path (without the query).
    ///
    /// # Errors
    /// [`RouteError::InvalidName`] when a path segment that names a namespace, pod or
    /// container is not a valid Kubernetes name.
    pub fn parse(path: &str) -> Result<Route, RouteError> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let endpoint = match segments[0] {
            "healthz" if segments.len() == 1 => return Ok(Route::Healthz),
            "pods" if segments.len() == 1 || (segments.len() == 2 && segments[1].is_empty()) => {
                return Ok(Route::Pods);
            }
            "containerLogs" => Endpoint::Logs,
            "exec" => Endpoint::Exec,
            "attach" => Endpoint::Attach,
            "portForward" => Endpoint::PortForward,
            other => {
                return Ok(NOT_IMPLEMENTED
                    .iter()
                    .find(|n| **n == other)
                    .map_or(Route::NotFound, |n| Route::NotImplemented(n)));
            }
        };
        let rest = &segments[1..];
        let pod = |ns: &str, name: &str| -> Result<PodKey, RouteError> {
            Ok(PodKey {
                namespace: DnsLabel::new(ns).map_err(|e| invalid("namespace", ns, e))?,
                name: DnsSubdomain::new(name).map_err(|e| invalid("pod name", name, e))?,
            })
        };
        match (endpoint, rest) {
            // `/portForward/{ns}/{pod}` and `/portForward/{ns}/{pod}/{uid}`.
            (Endpoint::PortForward, [ns, name]) | (Endpoint::PortForward, [ns, name, _]) => {
                Ok(Route::PortForward {
                    pod: pod(ns, name)?,
                })
            }
            // `/{exec,attach}/{ns}/{pod}/{uid}/{container}` is the kubelet's form with a uid.
            (Endpoint::Exec | Endpoint::Attach, [ns, name, _, container])
            | (_, [ns, name, container])
                if endpoint != Endpoint::PortForward =>
            {
                Ok(Route::Container {
                    endpoint,
                    pod: pod(ns, name)?,
                    container: DnsLabel::new(*container)
                        .map_err(|e| invalid("container name", container, e))?,
                })
            }
            _ => Ok(Route::NotFound),
        }
    }

    /// The endpoint, for metrics.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Route::Healthz => Endpoint::Healthz,
            Route::Pods => Endpoint::Pods,
            Route::Container { endpoint, .. } => *endpoint,
            Route::PortForward { .. } => Endpoint::PortForward,
            Route::NotImplemented(_) | Route::NotFound => Endpoint::Other,
        }
    }

    /// The virtual pod the route is about, if any.
    pub fn pod(&self) -> Option<&PodKey> {
        match self {
            Route::Container { pod, .. } | Route::PortForward { pod } => Some(pod),
            _ => None,
        }
    }
}

fn invalid(what: &'static str, value: &str, e: impl std::fmt::Display) -> RouteError {
    RouteError::InvalidName {
        what,
        value: value.to_string(),
        reason: e.to_string(),
    }
}

/// Log options kube-apiserver passes to the kubelet, under the same names on `pods/log`.
const LOG_PARAMS: &[&str] = &[
    "follow",
    "previous",
    "timestamps",
    "sinceSeconds",
    "sinceTime",
    "tailLines",
    "limitBytes",
];

/// Kubelet stream flags and the `pods/exec` / `pods/attach` parameter each one becomes.
const STREAM_PARAMS: &[(&str, &str)] = &[
    ("input", "stdin"),
    ("output", "stdout"),
    ("error", "stderr"),
    ("tty", "tty"),
];

/// The path and query of the host request for `route` (`None` for routes that are not
/// proxied). `query` is the kubelet request's raw query string; `host_pod` the host copy's
/// name in `host_namespace`.
pub fn host_path(
    route: &Route,
    host_namespace: &str,
    host_pod: &str,
    query: Option<&str>,
) -> Option<String> {
    let (endpoint, container) = match route {
        Route::Container {
            endpoint,
            container,
            ..
        } => (*endpoint, Some(container.as_str())),
        Route::PortForward { .. } => (Endpoint::PortForward, None),
        _ => return None,
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut out = form_urlencoded::Serializer::new(String::new());
    if let Some(c) = container {
        out.append_pair("container", c);
    }
    for (k, v) in &params {
        match endpoint {
            Endpoint::Logs if LOG_PARAMS.contains(&k.as_str()) => {
                out.append_pair(k, v);
            }
            Endpoint::Exec if k == "command" => {
                out.append_pair("command", v);
            }
            Endpoint::Exec | Endpoint::Attach => {
                if let Some((_, to)) = STREAM_PARAMS.iter().find(|(from, _)| from == k) {
                    out.append_pair(to, v);
                }
            }
            Endpoint::PortForward if k == "port" => {
                out.append_pair("ports", v);
            }
            _ => {}
        }
    }
    let query = out.finish();
    let sub = endpoint.subresource()?;
    let mut path = format!("/api/v1/namespaces/{host_namespace}/pods/{host_pod}/{sub}");
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query);
    }
    Some(path)
}

/// A host API refusal, worded as a kubelet words it to the virtual API server: the `Status`
/// message alone (a kubelet answers plain text, which kube-apiserver puts into its own error),
/// with the host's names for the pod and namespace put back into the tenant's (`renames`:
/// host name -> virtual name), so the tenant reads `pod "web"` and never the host copy's name.
pub fn refusal_text(body: &[u8], renames: &[(&str, &str)]) -> String {
    let raw = String::from_utf8_lossy(body);
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .filter(|v| v.get("kind").and_then(|k| k.as_str()) == Some("Status"))
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| raw.trim_end().to_owned());
    let mut out = text;
    // Longest first: a host pod name contains the tenant prefix, maybe the namespace too.
    let mut renames = renames.to_vec();
    renames.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    for (from, to) in renames {
        out = replace_name(&out, from, to);
    }
    out
}

/// `text` with every occurrence of the name `from` that stands alone (not inside a longer
/// name: the characters around it are not letters, digits or `-`) replaced by `to`.
fn replace_name(text: &str, from: &str, to: &str) -> String {
    if from.is_empty() {
        return text.to_owned();
    }
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '-';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + from.len()..].chars().next();
        let alone = !before.is_some_and(is_name) && !after.is_some_and(is_name);
        out.push_str(&rest[..at]);
        out.push_str(if alone { to } else { from });
        rest = &rest[at + from.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn key(ns: &str, name: &str) -> PodKey {
        PodKey {
            namespace: DnsLabel::new(ns).unwrap(),
            name: DnsSubdomain::new(name).unwrap(),
        }
    }

    fn container(endpoint: Endpoint, ns: &str, name: &str, c: &str) -> Route {
        Route::Container {
            endpoint,
            pod: key(ns, name),
            container: DnsLabel::new(c).unwrap(),
        }
    }

    #[rstest]
    #[case("/healthz", Route::Healthz)]
    #[case("/pods", Route::Pods)]
    #[case("/pods/", Route::Pods)]
    #[case(
        "/containerLogs/default/web/nginx",
        container(Endpoint::Logs, "default", "web", "nginx")
    )]
    #[case(
        "/exec/team/db-0/postgres",
        container(Endpoint::Exec, "team", "db-0", "postgres")
    )]
    #[case(
        "/exec/team/db-0/0b7e-uid/postgres",
        container(Endpoint::Exec, "team", "db-0", "postgres")
    )]
    #[case(
        "/attach/team/db-0/postgres",
        container(Endpoint::Attach, "team", "db-0", "postgres")
    )]
    #[case("/portForward/team/db-0", Route::PortForward { pod: key("team", "db-0") })]
    #[case("/portForward/team/db-0/some-uid", Route::PortForward { pod: key("team", "db-0") })]
    #[case("/stats/summary", Route::NotImplemented("stats"))]
    #[case("/metrics/cadvisor", Route::NotImplemented("metrics"))]
    #[case("/run/ns/pod/c", Route::NotImplemented("run"))]
    #[case("/", Route::NotFound)]
    #[case("/containerLogs/default/web", Route::NotFound)]
    #[case("/portForward/default", Route::NotFound)]
    #[case("/healthz/extra", Route::NotFound)]
    #[case("/nodes/x/proxy", Route::NotFound)]
    fn kubelet_paths_parse(#[case] path: &str, #[case] want: Route) {
        assert_eq!(Route::parse(path).unwrap(), want);
    }

    #[rstest]
    #[case("/containerLogs/Default/web/nginx", "namespace")]
    #[case("/containerLogs/default/web..x/nginx", "pod name")]
    #[case("/exec/default/web/..", "container name")]
    #[case("/exec/default/web/a%2Fb", "container name")]
    #[case("/portForward/kube_system/web", "namespace")]
    fn invalid_names_are_refused(#[case] path: &str, #[case] what: &str) {
        let err = Route::parse(path).unwrap_err();
        assert!(err.to_string().contains(what), "{err}");
    }

    #[rstest]
    #[case::logs(
        container(Endpoint::Logs, "default", "web", "nginx"),
        Some(
            "follow=true&tailLines=5&sinceSeconds=60&timestamps=true&limitBytes=100&previous=false&sinceTime=2025-01-01T00%3A00%3A00Z&insecureSkipTLSVerifyBackend=true&x=y"
        ),
        "/api/v1/namespaces/h/pods/hp/log?container=nginx&follow=true&tailLines=5&sinceSeconds=60&timestamps=true&limitBytes=100&previous=false&sinceTime=2025-01-01T00%3A00%3A00Z"
    )]
    #[case::exec(
        container(Endpoint::Exec, "default", "web", "nginx"),
        Some(
            "command=sh&command=-c&command=echo+hi+%26%26+exit+3&input=1&output=1&error=1&tty=1&container=other"
        ),
        "/api/v1/namespaces/h/pods/hp/exec?container=nginx&command=sh&command=-c&command=echo+hi+%26%26+exit+3&stdin=1&stdout=1&stderr=1&tty=1"
    )]
    #[case::attach(
        container(Endpoint::Attach, "default", "web", "nginx"),
        Some("input=1&output=1&tty=0&command=ignored"),
        "/api/v1/namespaces/h/pods/hp/attach?container=nginx&stdin=1&stdout=1&tty=0"
    )]
    #[case::port_forward(
        Route::PortForward { pod: key("default", "web") },
        Some("port=80&port=8443"),
        "/api/v1/namespaces/h/pods/hp/portforward?ports=80&ports=8443"
    )]
    #[case::port_forward_plain(
        Route::PortForward { pod: key("default", "web") },
        None,
        "/api/v1/namespaces/h/pods/hp/portforward"
    )]
    fn requests_map_to_host_subresources(
        #[case] route: Route,
        #[case] query: Option<&str>,
        #[case] want: &str,
    ) {
        assert_eq!(host_path(&route, "h", "hp", query).unwrap(), want);
    }

    #[test]
    fn only_pod_routes_are_proxied() {
        for r in [
            Route::Healthz,
            Route::Pods,
            Route::NotFound,
            Route::NotImplemented("stats"),
        ] {
            assert_eq!(host_path(&r, "h", "p", None), None);
        }
    }

    proptest::proptest! {
        /// Whatever the path, parsing never panics, and a pod route always carries names the
        /// host path can embed without escaping (no `/`, `?`, `%`, `..`).
        #[test]
        fn any_path_parses_to_safe_names(path in "(/[a-zA-Z0-9._%?-]{0,12}){0,6}") {
            if let Ok(route) = Route::parse(&path)
                && let Some(p) = host_path(&route, "h", "hp", None)
            {
                let pod = route.pod().unwrap();
                for s in [pod.namespace.as_str(), pod.name.as_str()] {
                    proptest::prop_assert!(!s.contains(['/', '?', '%']) && !s.contains(".."));
                }
                proptest::prop_assert!(p.starts_with("/api/v1/namespaces/h/pods/hp/"));
            }
        }
    }

    #[rstest]
    #[case::status_message(
        br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"previous terminated container \"app\" in pod \"acme-x-shop-web\" not found","reason":"BadRequest","code":400}"#,
        "previous terminated container \"app\" in pod \"web\" not found"
    )]
    #[case::plain_text(b"pod acme-x-shop-web in host-ns is gone\n", "pod web in shop is gone")]
    #[case::inside_a_longer_name(
        b"acme-x-shop-web-2 and host-ns-b stay",
        "acme-x-shop-web-2 and host-ns-b stay"
    )]
    #[case::json_but_no_status(br#"{"message":"acme-x-shop-web"}"#, r#"{"message":"web"}"#)]
    fn refusals_speak_the_tenants_names(#[case] body: &[u8], #[case] want: &str) {
        let renames = [("acme-x-shop-web", "web"), ("host-ns", "shop")];
        assert_eq!(refusal_text(body, &renames), want);
    }
}
