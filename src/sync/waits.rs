//! What objects are held back for, made visible.
//!
//! A reconcile that cannot proceed yet ([`super::SyncError::Waiting`]: the tenant API Service
//! is missing, a cache has not filled, a host object is settling) retries with backoff. A wait
//! that lasts is a problem someone has to see, so once an object has waited for one cause
//! longer than [`GRACE`] (short start-up waits stay quiet, and a restart writes nothing):
//!
//! - the virtual object gets one Warning Event, reason `Waiting`, saying what it waits for
//!   (once per wait, not per retry);
//! - the cause is logged once at `warn` when its first object passes the grace period, and once
//!   at `info` when nothing waits for it any more (not per object, not per retry);
//! - `vcsync_waiting_objects{cause}` counts the objects waiting past the grace period;
//! - `/readyz` lists each such cause as detail (it never fails readiness: the probe also
//!   gates the tenant API Service, which must not go away because of what it waits for).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// How long an object may wait before it is reported.
pub const GRACE: Duration = Duration::from_secs(10);

/// Why an object is held back (a static metric label each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WaitCause {
    /// The host Service fronting the tenant API (`--api-service`) is missing or has no IP.
    ApiService,
    /// A watch cache has not completed its first list.
    Cache,
    /// A host object vcsync just wrote has not settled (e.g. deleted again after a conflict).
    HostObject,
}

impl WaitCause {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitCause::ApiService => "api_service",
            WaitCause::Cache => "cache",
            WaitCause::HostObject => "host_object",
        }
    }
}

#[derive(Default)]
struct Cause {
    /// Waiting object -> (since, whether its Event was recorded).
    objects: HashMap<String, (Instant, bool)>,
    /// The last description of what is awaited.
    what: String,
    /// Whether the cause was logged as holding objects back.
    announced: bool,
}

/// The objects currently waiting, by cause.
pub struct Waits {
    causes: Mutex<HashMap<WaitCause, Cause>>,
    metrics: Arc<Metrics>,
}

impl Waits {
    /// No object waits yet.
    pub fn new(metrics: Arc<Metrics>) -> Waits {
        Waits {
            causes: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// `key` (a `kind/namespace/name`) waits for `cause`, described by `what`, as of `now`.
    /// Returns true when the Warning Event of this wait is due: the object has waited past
    /// [`GRACE`] and none was recorded for this wait yet.
    pub fn waiting(&self, cause: WaitCause, key: &str, what: &str, now: Instant) -> bool {
        let mut causes = self.causes.lock().unwrap_or_else(|e| e.into_inner());
        let c = causes.entry(cause).or_default();
        c.what = what.to_owned();
        let (since, evented) = c.objects.entry(key.to_owned()).or_insert((now, false));
        let due = now.saturating_duration_since(*since) >= GRACE;
        let event = due && !*evented;
        if event {
            *evented = true;
        }
        let past = past_grace(c, now);
        if past > 0 && !c.announced {
            c.announced = true;
            tracing::warn!(
                cause = cause.as_str(),
                objects = past,
                "objects are held back: waiting for {what}"
            );
        }
        self.metrics.set_waiting(cause.as_str(), &c.what, past);
        event
    }

    /// `key` waits for nothing any more (it reconciled, or it is gone).
    pub fn done(&self, key: &str) {
        let mut causes = self.causes.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        for (cause, c) in causes.iter_mut() {
            if c.objects.remove(key).is_none() {
                continue;
            }
            if c.objects.is_empty() && c.announced {
                c.announced = false;
                tracing::info!(
                    cause = cause.as_str(),
                    "no object waits for {} any more",
                    c.what
                );
            }
            self.metrics
                .set_waiting(cause.as_str(), &c.what, past_grace(c, now));
        }
    }
}

fn past_grace(c: &Cause, now: Instant) -> usize {
    c.objects
        .values()
        .filter(|(since, _)| now.saturating_duration_since(*since) >= GRACE)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_due_once_per_wait_after_the_grace_period() {
        let metrics = Arc::new(Metrics::new());
        let w = Waits::new(metrics.clone());
        let t0 = Instant::now();
        let what = "the tenant API service vcsync-api in the host namespace";
        assert!(!w.waiting(WaitCause::ApiService, "Pod/a/p", what, t0));
        assert!(!w.waiting(WaitCause::ApiService, "Pod/a/p", what, t0 + GRACE / 2));
        assert!(
            metrics.waiting().is_empty(),
            "quiet within the grace period"
        );
        assert!(w.waiting(WaitCause::ApiService, "Pod/a/p", what, t0 + GRACE));
        assert!(
            !w.waiting(WaitCause::ApiService, "Pod/a/p", what, t0 + GRACE * 3),
            "one event per wait, not per retry"
        );
        assert_eq!(metrics.waiting(), [("api_service", what.to_owned(), 1)]);
        let t = metrics.encode();
        assert!(
            t.contains("vcsync_waiting_objects{cause=\"api_service\"} 1"),
            "{t}"
        );

        w.done("Pod/a/p");
        assert!(metrics.waiting().is_empty());
        // A new wait of the same object is a new story: a new event after the grace period.
        let t1 = t0 + GRACE * 4;
        assert!(!w.waiting(WaitCause::ApiService, "Pod/a/p", what, t1));
        assert!(w.waiting(WaitCause::ApiService, "Pod/a/p", what, t1 + GRACE));
    }
}
