//! Fault injection and request counters, so reliability tests can break the API on purpose and
//! assert exactly how many requests (and which writes) a client made.

use std::collections::BTreeMap;
use std::time::Duration;

/// What an injected fault answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429 TooManyRequests with `Retry-After: secs`.
    TooManyRequests { retry_after_secs: u32 },
    /// 500 InternalError.
    InternalError,
    /// 503 ServiceUnavailable.
    ServiceUnavailable,
    /// 409 Conflict (as if the object changed underneath).
    Conflict,
}

/// Fail the next `count` requests matching `verb` and `resource` (`None` = any).
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// Only requests of this user (see [`super::ServerConfig::users`]); `None` = anyone.
    pub user: Option<String>,
    pub verb: Option<String>,
    pub resource: Option<String>,
    pub remaining: u32,
    pub fault: Fault,
}

impl FaultRule {
    pub fn new(verb: Option<&str>, resource: Option<&str>, count: u32, fault: Fault) -> Self {
        FaultRule {
            user: None,
            verb: verb.map(str::to_string),
            resource: resource.map(str::to_string),
            remaining: count,
            fault,
        }
    }
}

/// One counter key: Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`,
/// `delete`, `deletecollection`), resource (plural, with `/subresource`) and status code.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestCount {
    /// Who asked (`admin`, `limited`, or a name from [`super::ServerConfig::users`]).
    pub user: String,
    pub verb: String,
    pub resource: String,
    pub code: u16,
}

/// Mutable fault and counter state.
#[derive(Debug, Default)]
pub struct Faults {
    pub rules: Vec<FaultRule>,
    pub latency: Option<Duration>,
    pub counts: BTreeMap<RequestCount, u64>,
}

impl Faults {
    /// Take the first matching rule, decrementing it.
    pub fn take(&mut self, user: &str, verb: &str, resource: &str) -> Option<Fault> {
        let idx = self.rules.iter().position(|r| {
            r.remaining > 0
                && r.user.as_deref().is_none_or(|u| u == user)
                && r.verb.as_deref().is_none_or(|v| v == verb)
                && r.resource.as_deref().is_none_or(|res| res == resource)
        })?;
        let rule = &mut self.rules[idx];
        rule.remaining -= 1;
        let fault = rule.fault;
        if rule.remaining == 0 {
            self.rules.remove(idx);
        }
        Some(fault)
    }

    pub fn count(&mut self, user: &str, verb: &str, resource: &str, code: u16) {
        *self
            .counts
            .entry(RequestCount {
                user: user.to_string(),
                verb: verb.to_string(),
                resource: resource.to_string(),
                code,
            })
            .or_default() += 1;
    }
}

/// Whether a verb writes.
pub fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}
