//! The health and metrics endpoint (`--metrics-addr`), plain HTTP/1.1:
//!
//! - `/livez` (alias `/healthz`): 200 while the process serves at all. It never checks the
//!   APIs: an unreachable API server is not cured by restarting vcsync.
//! - `/readyz`: 200 when this replica is doing its job, else 503. The body lists each check
//!   in kube-apiserver's `[+]name ok` / `[-]name failed: reason` form, so `kubectl get
//!   --raw`-style tooling and humans read it alike. Checks: both APIs answered within
//!   [`REACHABLE_WITHIN`] and neither has failed every request for [`UNREACHABLE_AFTER`];
//!   not campaigning blind (a replica that lost the lease or cannot read it is not ready,
//!   with the reason: `not leading: host API unreachable`); the leader's watch caches have
//!   synced (a standby replica has none and is ready as long as the APIs answer, so rolling
//!   updates of several replicas proceed); not shutting down. Guardrail status is detail only and never fails the probe.
//! - `/metrics`: the Prometheus registry in the OpenMetrics text format.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use kube::Client;
use tokio::net::TcpListener;

use crate::metrics::{ApiLabel, GuardrailState, Metrics};

/// An API that has not answered for longer than this fails readiness.
pub const REACHABLE_WITHIN: Duration = Duration::from_secs(20);
/// An API whose every request has failed without a response (connection refused or reset,
/// timed out) for this long fails readiness, without waiting for [`REACHABLE_WITHIN`]: an API
/// server restarting is noticed within seconds, a single dropped connection is not.
pub const UNREACHABLE_AFTER: Duration = Duration::from_secs(3);
/// How often each API is asked for `/version` when nothing else talked to it.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);

/// What this replica is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Started, not yet leading or following.
    Starting,
    /// Waiting for the leader lease; the current holder if known.
    Standby(Option<String>),
    /// Running the sync engine.
    Leading,
    /// Campaigning for the lease without knowing who holds it (the lease cannot be read, or
    /// this replica just lost it): not ready, with the reason. A former leader keeps its
    /// engine and caches meanwhile, with writes stopped ([`crate::gate`]).
    NotLeading(String),
    /// Shutting down.
    Stopping,
}

/// State the endpoints read.
#[derive(Debug)]
pub struct Health {
    metrics: Arc<Metrics>,
    role: Mutex<Role>,
}

/// The outcome of the readiness checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Whether every check passed.
    pub ready: bool,
    /// One line per check, then detail lines.
    pub lines: Vec<String>,
}

impl Readiness {
    fn body(&self) -> String {
        let mut body = self.lines.join("\n");
        body.push('\n');
        body.push_str(if self.ready {
            "readyz check passed\n"
        } else {
            "readyz check failed\n"
        });
        body
    }
}

impl Health {
    /// Health state over `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Health> {
        Arc::new(Health {
            metrics,
            role: Mutex::new(Role::Starting),
        })
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Records what this replica is doing (and the leader gauge with it).
    pub fn set_role(&self, role: Role) {
        self.metrics.set_leader(role == Role::Leading);
        *self.role.lock().unwrap_or_else(|e| e.into_inner()) = role;
    }

    /// What this replica is doing.
    pub fn role(&self) -> Role {
        self.role.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs the readiness checks as of `now`.
    pub fn readiness(&self, now: Instant) -> Readiness {
        let mut lines = Vec::new();
        let mut ready = true;
        let mut check = |name: &str, result: Result<String, String>| match result {
            Ok(detail) if detail.is_empty() => lines.push(format!("[+]{name} ok")),
            Ok(detail) => lines.push(format!("[+]{name} ok: {detail}")),
            Err(reason) => {
                ready = false;
                lines.push(format!("[-]{name} failed: {reason}"));
            }
        };
        for api in [ApiLabel::Host, ApiLabel::Virtual] {
            let failing = self
                .metrics
                .failing_since(api)
                .map(|since| now.saturating_duration_since(since))
                .filter(|d| *d >= UNREACHABLE_AFTER);
            let result = match self.metrics.last_contact(api) {
                _ if failing.is_some() => Err(format!(
                    "unreachable for {}s",
                    failing.unwrap_or_default().as_secs()
                )),
                Some(at) if now.saturating_duration_since(at) <= REACHABLE_WITHIN => {
                    Ok(String::new())
                }
                Some(at) => Err(format!(
                    "no answer for {}s",
                    now.saturating_duration_since(at).as_secs()
                )),
                None => Err("no answer yet".to_owned()),
            };
            check(&format!("{}-api", api.as_str()), result);
        }
        let role = self.role();
        let role_result = match &role {
            Role::Starting => Err("starting".to_owned()),
            Role::Standby(Some(holder)) => Ok(format!("standby, leader is {holder}")),
            Role::Standby(None) => Ok("standby".to_owned()),
            Role::Leading => Ok("leading".to_owned()),
            Role::NotLeading(reason) => Err(format!("not leading: {reason}")),
            Role::Stopping => Err("shutting down".to_owned()),
        };
        check("leader-election", role_result);
        if role == Role::Leading {
            let caches = match self.metrics.unsynced_caches() {
                None => Err("the sync engine has not started".to_owned()),
                Some(waiting) if waiting.is_empty() => Ok(String::new()),
                Some(waiting) => Err(format!("waiting for {}", waiting.join(", "))),
            };
            check("caches", caches);
        }
        let guardrails = self.metrics.guardrails();
        let with = |state: GuardrailState| -> Vec<&str> {
            guardrails
                .iter()
                .filter(|(_, s)| *s == state)
                .map(|(item, _)| *item)
                .collect()
        };
        let (missing, unknown) = (with(GuardrailState::Missing), with(GuardrailState::Unknown));
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("missing {}", missing.join(", ")));
        }
        if !unknown.is_empty() {
            parts.push(format!("unknown (not readable) {}", unknown.join(", ")));
        }
        for (_, what, n) in self.metrics.waiting() {
            lines.push(format!(
                "waiting: {n} object(s) held back, waiting for {what}"
            ));
        }
        lines.push(if guardrails.is_empty() {
            "guardrails: not checked".to_owned()
        } else if parts.is_empty() {
            "guardrails: all present".to_owned()
        } else {
            format!("guardrails: {}", parts.join("; "))
        });
        Readiness { ready, lines }
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let text = |status: StatusCode, body: String| {
            Response::builder()
                .status(status)
                .header("Content-Type", "text/plain; charset=utf-8")
                .header("Cache-Control", "no-store")
                .body(Full::new(Bytes::from(body)))
                .expect("a static response")
        };
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed\n".to_owned(),
            );
        }
        match req.uri().path() {
            "/livez" | "/healthz" => text(StatusCode::OK, "ok\n".to_owned()),
            "/readyz" => {
                let r = self.readiness(Instant::now());
                let status = if r.ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                text(status, r.body())
            }
            "/metrics" => Response::builder()
                .status(StatusCode::OK)
                .header(
                    "Content-Type",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .body(Full::new(Bytes::from(self.metrics.encode())))
                .expect("a static response"),
            _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
        }
    }
}

/// The health server could not start.
#[derive(Debug, thiserror::Error)]
#[error("failed to serve health and metrics on {addr} (--metrics-addr)")]
pub struct ServeError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// Why binding failed.
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr` and serves the endpoints on a background task until `shutdown`; returns the
/// bound address (useful with port 0) and the task.
///
/// # Errors
/// [`ServeError`] when the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError { addr, source })?;
    let task = tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                _ = &mut shutdown => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accepting a health connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let health = health.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let resp = health.respond(&req);
                    async move { Ok::<_, Infallible>(resp) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    // Probes are tiny; a client that never sends its headers is dropped.
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "health connection ended with an error");
                }
            });
        }
    });
    Ok((bound, task))
}

/// Asks each API for `/version` whenever it has been quiet for [`PROBE_EVERY`], so readiness
/// notices an unreachable API even while the engine has nothing to do (or is not running).
/// The clients must be instrumented ([`crate::metrics::instrument_client`]) so answers count.
pub async fn probe_apis(health: Arc<Health>, host: Client, virt: Client) {
    loop {
        for (api, client) in [(ApiLabel::Host, &host), (ApiLabel::Virtual, &virt)] {
            // A failing API is asked again even if it answered recently, so readiness recovers
            // as soon as it answers.
            let quiet = health.metrics.failing_since(api).is_some()
                || health
                    .metrics
                    .last_contact(api)
                    .is_none_or(|at| at.elapsed() >= PROBE_EVERY);
            if quiet {
                // The answer (or its absence) is recorded by the instrumented client.
                let _ = tokio::time::timeout(PROBE_EVERY, client.apiserver_version()).await;
            }
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy(role: Role) -> (Arc<Health>, Instant) {
        let h = Health::new(Arc::new(Metrics::new()));
        let now = Instant::now();
        h.metrics.contact(ApiLabel::Host, now);
        h.metrics.contact(ApiLabel::Virtual, now);
        h.set_role(role);
        (h, now)
    }

    #[test]
    fn a_standby_replica_is_ready_while_the_apis_answer() {
        let (h, now) = healthy(Role::Standby(Some("other".into())));
        let r = h.readiness(now);
        assert!(r.ready, "{r:?}");
        assert!(
            r.lines
                .contains(&"[+]leader-election ok: standby, leader is other".to_owned()),
            "{r:?}"
        );
        assert!(!h.metrics.is_leader());
    }

    #[test]
    fn a_leader_waits_for_its_caches() {
        let (h, now) = healthy(Role::Leading);
        assert!(h.metrics.is_leader());
        let r = h.readiness(now);
        assert!(!r.ready);
        assert!(
            r.lines
                .contains(&"[-]caches failed: the sync engine has not started".to_owned()),
            "{r:?}"
        );
    }

    #[test]
    fn a_silent_api_fails_readiness_with_a_reason() {
        let (h, now) = healthy(Role::Standby(None));
        let later = now + REACHABLE_WITHIN + Duration::from_secs(5);
        h.metrics.contact(ApiLabel::Virtual, later);
        let r = h.readiness(later);
        assert!(!r.ready);
        assert!(
            r.lines
                .contains(&"[-]host-api failed: no answer for 25s".to_owned()),
            "{r:?}"
        );
        assert!(r.lines.contains(&"[+]virtual-api ok".to_owned()), "{r:?}");
        assert!(r.body().ends_with("readyz check failed\n"));
    }

    #[test]
    fn a_replica_that_cannot_read_the_lease_is_not_ready() {
        let (h, now) = healthy(Role::NotLeading("host API unreachable".into()));
        let r = h.readiness(now);
        assert!(!r.ready);
        assert!(
            r.lines.contains(
                &"[-]leader-election failed: not leading: host API unreachable".to_owned()
            ),
            "{r:?}"
        );
        assert!(!h.metrics.is_leader());
    }

    #[test]
    fn an_api_failing_every_request_is_unreachable_before_it_goes_silent() {
        let (h, now) = healthy(Role::Standby(None));
        h.metrics.failure(ApiLabel::Virtual, now);
        let soon = now + Duration::from_secs(1);
        assert!(
            h.readiness(soon).ready,
            "one failed request is not an outage"
        );
        let later = now + UNREACHABLE_AFTER;
        let r = h.readiness(later);
        assert!(!r.ready);
        assert!(
            r.lines
                .contains(&"[-]virtual-api failed: unreachable for 3s".to_owned()),
            "{r:?}"
        );
        // Any answer ends it.
        h.metrics.contact(ApiLabel::Virtual, later);
        assert!(h.readiness(later).ready);
    }

    #[test]
    fn stopping_and_starting_are_not_ready_and_guardrails_are_detail() {
        let (h, now) = healthy(Role::Stopping);
        h.metrics
            .set_guardrail("resourcequota", GuardrailState::Missing);
        h.metrics
            .set_guardrail("pod-security-labels", GuardrailState::Unknown);
        let r = h.readiness(now);
        assert!(!r.ready);
        assert!(
            r.lines
                .contains(&"[-]leader-election failed: shutting down".to_owned())
        );
        assert!(
            r.lines.contains(
                &"guardrails: missing resourcequota; unknown (not readable) pod-security-labels"
                    .to_owned()
            ),
            "{:?}",
            h.readiness(now).lines
        );
        h.set_role(Role::Standby(None));
        assert!(
            h.readiness(now).ready,
            "a missing guardrail never fails readiness"
        );
        h.set_role(Role::Starting);
        assert!(!h.readiness(now).ready);
    }

    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        let code = head.split(' ').nth(1).unwrap().parse().unwrap();
        (code, head.to_owned(), body.to_owned())
    }

    #[tokio::test]
    async fn the_server_answers_every_endpoint() {
        let (h, _) = healthy(Role::Standby(None));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), h.clone(), async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
        for path in ["/livez", "/healthz"] {
            let (code, _, body) = get(addr, path).await;
            assert_eq!((code, body.as_str()), (200, "ok\n"), "{path}");
        }
        let (code, _, body) = get(addr, "/readyz").await;
        assert_eq!(code, 200, "{body}");
        assert!(body.ends_with("readyz check passed\n"), "{body}");
        h.set_role(Role::Stopping);
        let (code, _, body) = get(addr, "/readyz").await;
        assert_eq!(code, 503, "{body}");
        let (code, head, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(
            head.to_lowercase().contains("application/openmetrics-text"),
            "{head}"
        );
        assert!(body.contains("# TYPE vcsync_leader gauge"), "{body}");
        assert_eq!(get(addr, "/nope").await.0, 404);
        let _ = tx.send(());
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the server stops")
            .unwrap();
    }

    #[tokio::test]
    async fn a_taken_address_names_the_flag() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let h = Health::new(Arc::new(Metrics::new()));
        let err = serve(addr, h, std::future::pending()).await.unwrap_err();
        assert!(err.to_string().contains("--metrics-addr"), "{err}");
    }
}
