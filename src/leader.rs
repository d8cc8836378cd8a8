//! Leader election over a `coordination.k8s.io/v1` Lease in the host namespace.
//!
//! Any number of replicas may run; only the one holding the Lease runs the sync engine (and
//! so writes). The algorithm is client-go's `leaderelection` with a Lease lock:
//!
//! - A candidate takes the Lease when it does not exist, is released (empty holder), or has
//!   not changed for `lease_duration`. Expiry is judged by *when this replica saw the record
//!   change*, not by the `renewTime` written in it, so clock skew between replicas cannot
//!   make a live leader look dead.
//! - The leader renews every `retry_period`; if no renewal succeeds for `renew_deadline`
//!   (shorter than `lease_duration`), it gives up leadership before anyone else may take it.
//! - Every write carries the resourceVersion read just before, so two candidates racing for
//!   an expired Lease cannot both win: the loser gets 409 Conflict.
//! - On graceful shutdown the leader releases the Lease (empty holder, 1 s duration) so a
//!   follower takes over at its next retry instead of waiting out the lease.
//!
//! A follower therefore takes over at most `lease_duration + retry_period` after the leader's
//! last renewal (plus one API round trip).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};

use crate::markers;

/// Lease settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Host namespace holding the Lease.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This replica's identity (written as `holderIdentity`).
    pub identity: String,
    /// How long a Lease that stopped changing stays valid.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up leadership.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    pub retry_period: Duration,
}

/// Defaults of client-go and controller-runtime.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// See [`DEFAULT_LEASE_DURATION`].
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// See [`DEFAULT_LEASE_DURATION`].
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Lease timings that cannot work together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    /// The leader would renew no earlier than followers may take over.
    #[error(
        "--renew-deadline-seconds ({renew}) must be less than --lease-duration-seconds ({lease})"
    )]
    RenewDeadline {
        /// Renew deadline in seconds.
        renew: u64,
        /// Lease duration in seconds.
        lease: u64,
    },
    /// The leader would not retry within its renew deadline.
    #[error(
        "--retry-period-seconds ({retry}) must be less than --renew-deadline-seconds ({renew})"
    )]
    RetryPeriod {
        /// Retry period in seconds.
        retry: u64,
        /// Renew deadline in seconds.
        renew: u64,
    },
}

impl LeaseConfig {
    /// Checks `retry_period < renew_deadline < lease_duration`.
    ///
    /// # Errors
    /// [`TimingError`] naming the flags.
    pub fn check_timings(&self) -> Result<(), TimingError> {
        if self.renew_deadline >= self.lease_duration {
            return Err(TimingError::RenewDeadline {
                renew: self.renew_deadline.as_secs(),
                lease: self.lease_duration.as_secs(),
            });
        }
        if self.retry_period >= self.renew_deadline {
            return Err(TimingError::RetryPeriod {
                retry: self.retry_period.as_secs(),
                renew: self.renew_deadline.as_secs(),
            });
        }
        Ok(())
    }
}

/// This process's identity when no pod name is given: `hostname_pid`.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "vcsync".to_owned());
    format!("{host}_{}", std::process::id())
}

/// What an attempt to acquire or renew found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// This replica holds the Lease now.
    Leading,
    /// Another replica holds a live Lease (its identity), or lost a race for it (`None`).
    Standby(Option<String>),
}

/// Why the leader stopped leading on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LostLease {
    /// No renewal succeeded within the renew deadline.
    #[error("could not renew the leader lease {name} within {deadline:?}")]
    RenewDeadline {
        /// Lease name.
        name: String,
        /// The renew deadline.
        deadline: Duration,
    },
    /// Another replica holds the Lease now.
    #[error("the leader lease {name} is now held by {holder}")]
    TakenOver {
        /// Lease name.
        name: String,
        /// The new holder.
        holder: String,
    },
}

/// The record last seen and when it was seen to change.
#[derive(Debug, Clone)]
struct Observed {
    resource_version: Option<String>,
    holder: String,
    lease_duration: Duration,
    at: Instant,
}

/// One replica's side of the election.
pub struct LeaderElector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    observed: Option<Observed>,
    last_renew: Option<Instant>,
}

impl LeaderElector {
    /// An elector for `cfg.name` in `cfg.namespace` on the host API.
    pub fn new(host: Client, cfg: LeaseConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(host, &cfg.namespace),
            cfg,
            observed: None,
            last_renew: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }

    /// The holder the Lease named when last read (empty when released).
    pub fn observed_holder(&self) -> Option<&str> {
        self.observed.as_ref().map(|o| o.holder.as_str())
    }

    fn observe(&mut self, lease: &Lease, now: Instant) {
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.unwrap_or_default();
        let rv = lease.resource_version();
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.resource_version != rv || o.holder != holder);
        let lease_duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.cfg.lease_duration, Duration::from_secs);
        if changed {
            self.observed = Some(Observed {
                resource_version: rv,
                holder,
                lease_duration,
                at: now,
            });
        }
    }

    fn desired(&self, old: Option<&Lease>) -> Lease {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let old_spec = old.and_then(|l| l.spec.clone()).unwrap_or_default();
        let ours = old_spec.holder_identity.as_deref() == Some(self.cfg.identity.as_str());
        let transitions = old_spec.lease_transitions.unwrap_or(0);
        let mut labels = std::collections::BTreeMap::new();
        labels.insert(
            "app.kubernetes.io/managed-by".to_owned(),
            "vcsync".to_owned(),
        );
        Lease {
            metadata: ObjectMeta {
                name: Some(self.cfg.name.clone()),
                namespace: Some(self.cfg.namespace.clone()),
                resource_version: old.and_then(|l| l.metadata.resource_version.clone()),
                labels: old.map_or(Some(labels), |l| l.metadata.labels.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.cfg.identity.clone()),
                lease_duration_seconds: Some(
                    i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i32::MAX),
                ),
                acquire_time: if ours {
                    old_spec.acquire_time.clone()
                } else {
                    Some(now.clone())
                },
                renew_time: Some(now),
                lease_transitions: Some(if ours || old.is_none() {
                    transitions
                } else {
                    transitions + 1
                }),
                ..LeaseSpec::default()
            }),
        }
    }

    /// One attempt to take or renew the Lease.
    ///
    /// # Errors
    /// The API error of reading or writing the Lease (409 Conflict is a lost race, reported as
    /// [`Attempt::Standby`]).
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let pp = PostParams {
            field_manager: Some(markers::FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let Some(lease) = self.api.get_opt(&self.cfg.name).await? else {
            return match self.api.create(&pp, &self.desired(None)).await {
                Ok(created) => Ok(self.won(&created)),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Standby(None)),
                Err(e) => Err(e),
            };
        };
        let now = Instant::now();
        self.observe(&lease, now);
        let observed = self.observed.clone().expect("observed just now");
        let ours = observed.holder == self.cfg.identity;
        let expired = now.saturating_duration_since(observed.at) >= observed.lease_duration;
        if !ours && !observed.holder.is_empty() && !expired {
            return Ok(Attempt::Standby(Some(observed.holder)));
        }
        match self
            .api
            .replace(&self.cfg.name, &pp, &self.desired(Some(&lease)))
            .await
        {
            Ok(updated) => {
                if !ours {
                    tracing::info!(
                        lease = self.cfg.name,
                        previous = observed.holder,
                        "took over the leader lease"
                    );
                }
                Ok(self.won(&updated))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Standby(None)),
            Err(e) => Err(e),
        }
    }

    fn won(&mut self, lease: &Lease) -> Attempt {
        let now = Instant::now();
        self.observe(lease, now);
        self.last_renew = Some(now);
        Attempt::Leading
    }

    /// Tries every `retry_period` until this replica leads. `on_standby` hears each attempt
    /// that did not win: `Ok` with who holds the Lease (`None` after a lost race), or `Err`
    /// when the Lease could not be read or written (the host API is unreachable, say). Only
    /// the first failure of a run of failures is logged as a warning.
    pub async fn acquire(
        &mut self,
        mut on_standby: impl FnMut(Result<Option<&str>, &kube::Error>),
    ) {
        let mut failing = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => return,
                Ok(Attempt::Standby(holder)) => {
                    failing = false;
                    on_standby(Ok(holder.as_deref()));
                }
                Err(e) => {
                    if failing {
                        tracing::debug!(lease = self.cfg.name, error = %crate::sync::brief(&e), "reading the leader lease failed again");
                    } else {
                        tracing::warn!(lease = self.cfg.name, error = %crate::sync::brief(&e), "reading the leader lease failed; retrying");
                        failing = true;
                    }
                    on_standby(Err(&e));
                }
            }
            tokio::time::sleep(jittered(self.cfg.retry_period)).await;
        }
    }

    /// Renews every `retry_period` while leading; returns when leadership is lost. Only the
    /// first failed renewal of a run is logged as a warning.
    pub async fn hold(&mut self) -> LostLease {
        let mut failing = false;
        loop {
            tokio::time::sleep(self.cfg.retry_period).await;
            let since = self.last_renew.unwrap_or_else(Instant::now);
            let left = self
                .cfg
                .renew_deadline
                .saturating_sub(since.elapsed())
                .max(Duration::from_millis(1));
            match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                Ok(Ok(Attempt::Leading)) => {
                    if failing {
                        tracing::info!(lease = self.cfg.name, "renewed the leader lease again");
                    }
                    failing = false;
                    continue;
                }
                Ok(Ok(Attempt::Standby(Some(holder)))) => {
                    return LostLease::TakenOver {
                        name: self.cfg.name.clone(),
                        holder,
                    };
                }
                Ok(Ok(Attempt::Standby(None))) => {}
                Ok(Err(e)) => {
                    if failing {
                        tracing::debug!(lease = self.cfg.name, error = %crate::sync::brief(&e), "renewing the leader lease failed again");
                    } else {
                        tracing::warn!(lease = self.cfg.name, error = %crate::sync::brief(&e), "renewing the leader lease failed; retrying until the renew deadline");
                        failing = true;
                    }
                }
                Err(_elapsed) => {}
            }
            if since.elapsed() >= self.cfg.renew_deadline {
                return LostLease::RenewDeadline {
                    name: self.cfg.name.clone(),
                    deadline: self.cfg.renew_deadline,
                };
            }
        }
    }

    /// Gives the Lease up (empty holder, 1 s duration) if this replica still holds it.
    ///
    /// # Errors
    /// The API error of reading or writing the Lease.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        spec.holder_identity = Some(String::new());
        spec.lease_duration_seconds = Some(1);
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        let pp = PostParams {
            field_manager: Some(markers::FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        self.api.replace(&self.cfg.name, &pp, &lease).await?;
        self.last_renew = None;
        Ok(())
    }
}

/// `d` stretched by up to 20%, as client-go's `JitterFactor`, so candidates that started
/// together do not keep colliding.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(1.0 + rand::random::<f64>() * 0.2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn cfg(lease: u64, renew: u64, retry: u64) -> LeaseConfig {
        LeaseConfig {
            namespace: "h".into(),
            name: "vcsync-a".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_secs(renew),
            retry_period: Duration::from_secs(retry),
        }
    }

    #[rstest]
    #[case(15, 10, 2, None)]
    #[case(
        10,
        10,
        2,
        Some("--renew-deadline-seconds (10) must be less than --lease-duration-seconds (10)")
    )]
    #[case(
        15,
        10,
        10,
        Some("--retry-period-seconds (10) must be less than --renew-deadline-seconds (10)")
    )]
    fn timings(
        #[case] lease: u64,
        #[case] renew: u64,
        #[case] retry: u64,
        #[case] err: Option<&str>,
    ) {
        assert_eq!(
            cfg(lease, renew, retry)
                .check_timings()
                .err()
                .map(|e| e.to_string()),
            err.map(str::to_owned)
        );
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..100 {
            let j = jittered(Duration::from_secs(10));
            assert!(
                j >= Duration::from_secs(10) && j <= Duration::from_secs(12),
                "{j:?}"
            );
        }
    }

    #[test]
    fn identity_names_the_process() {
        let id = default_identity();
        assert!(id.ends_with(&format!("_{}", std::process::id())), "{id}");
    }
}
