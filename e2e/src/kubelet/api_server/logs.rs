//! Made-up, deterministic container logs, served by `GET /containerLogs/{ns}/{pod}/{container}`.
//!
//! The scheme, so tests can assert exact output:
//!
//! * line `k` (counting from 1) of container `c` of pod `p` is [`line`]`(p, c, k)`, i.e.
//!   `"{p}/{c} line {k}"`, and it was "written" at the pod's `status.startTime` plus `k` seconds
//!   ([`timestamp`]);
//! * [`INITIAL_LINES`] lines exist as soon as the pod has started; with `follow=true` the stream
//!   goes on with line 11, 12, ... one every [`FOLLOW_INTERVAL`] until the pod is deleted (it gets
//!   a `deletionTimestamp` or goes away) or reaches `Succeeded`/`Failed`, or the client hangs up;
//! * `timestamps=true` prefixes each line with its timestamp in RFC 3339 with nanoseconds and
//!   trailing zeros trimmed, then one space (as the kubelet prints `time.RFC3339Nano`), see
//!   [`timestamped`];
//! * `tailLines=N` keeps the last N of the initial lines, `sinceTime`/`sinceSeconds` keep the lines
//!   whose timestamp is not before the limit (both filters apply to followed lines too, the tail
//!   only to the initial ones), `limitBytes=N` cuts the whole response after N bytes;
//! * the simulator never restarts containers (`restartCount` stays 0), so `previous=true` is
//!   answered like a kubelet without a previous instance: `400` with
//!   `previous terminated container "c" in pod "p" not found`. [`previous_line`] is the line a
//!   previous instance would have printed, kept for when restarts are simulated;
//! * a pod that has not started yet answers `400`
//!   `container "c" in pod "p" is waiting to start: ContainerCreating`; an unknown pod or container
//!   answers `404` (`pod "p" does not exist`, `container "c" not found in pod "p"`).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// Lines a container has logged once its pod started.
pub const INITIAL_LINES: u64 = 10;

/// How often a followed log grows by one line.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// Line `k` (from 1) of `container` in `pod`, without the newline.
pub fn line(pod: &str, container: &str, k: u64) -> String {
    format!("{pod}/{container} line {k}")
}

/// Line `k` of the previous instance of `container` (not served while restarts are not
/// simulated).
pub fn previous_line(pod: &str, container: &str, k: u64) -> String {
    format!("{pod}/{container} previous line {k}")
}

/// When line `k` was written: `start` plus `k` seconds.
pub fn timestamp(start: Timestamp, k: u64) -> Timestamp {
    start
        .checked_add(SignedDuration::from_secs(k as i64))
        .unwrap_or(start)
}

/// The kubelet's RFC3339Nano rendering of `ts` (UTC, fraction trimmed of trailing zeros).
pub fn format_timestamp(ts: Timestamp) -> String {
    let secs = ts.as_second();
    let nanos = ts.subsec_nanosecond();
    let whole = Timestamp::from_second(secs).unwrap_or(ts);
    let base = whole.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    if nanos == 0 {
        format!("{base}Z")
    } else {
        let frac = format!("{nanos:09}");
        format!("{base}.{}Z", frac.trim_end_matches('0'))
    }
}

/// Line `k` as `timestamps=true` prints it, without the newline.
pub fn timestamped(start: Timestamp, pod: &str, container: &str, k: u64) -> String {
    format!(
        "{} {}",
        format_timestamp(timestamp(start, k)),
        line(pod, container, k)
    )
}

/// The parsed `containerLogs` query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub limit_bytes: Option<u64>,
    pub since: Option<Since>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Since {
    Seconds(u64),
    Time(Timestamp),
}

fn boolean(v: &str) -> Result<bool, String> {
    match v {
        "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(format!("invalid boolean {other:?}")),
    }
}

impl LogOptions {
    pub(crate) fn parse(query: &[(String, String)]) -> Result<Self, String> {
        let mut o = LogOptions::default();
        let mut since_seconds = None;
        let mut since_time = None;
        for (k, v) in query {
            match k.as_str() {
                "follow" => o.follow = boolean(v)?,
                "previous" => o.previous = boolean(v)?,
                "timestamps" => o.timestamps = boolean(v)?,
                "tailLines" => {
                    let n: i64 = v.parse().map_err(|_| format!("invalid tailLines {v:?}"))?;
                    if n < 0 {
                        return Err("tailLines must be a non-negative integer".into());
                    }
                    o.tail_lines = Some(n as u64);
                }
                "limitBytes" => {
                    let n: i64 = v.parse().map_err(|_| format!("invalid limitBytes {v:?}"))?;
                    if n < 1 {
                        return Err("limitBytes must be a positive integer".into());
                    }
                    o.limit_bytes = Some(n as u64);
                }
                "sinceSeconds" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| format!("invalid sinceSeconds {v:?}"))?;
                    if n < 1 {
                        return Err("sinceSeconds must be a positive integer".into());
                    }
                    since_seconds = Some(n as u64);
                }
                "sinceTime" => {
                    let t: Timestamp = v.parse().map_err(|_| format!("invalid sinceTime {v:?}"))?;
                    since_time = Some(t);
                }
                _ => {}
            }
        }
        o.since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => {
                return Err("at most one of `sinceTime` or `sinceSeconds` may be specified".into());
            }
            (Some(s), None) => Some(Since::Seconds(s)),
            (None, Some(t)) => Some(Since::Time(t)),
            (None, None) => None,
        };
        Ok(o)
    }

    /// The earliest timestamp kept, evaluated at `now`.
    pub(crate) fn since_limit(&self, now: Timestamp) -> Option<Timestamp> {
        match &self.since {
            Some(Since::Seconds(s)) => now.checked_sub(SignedDuration::from_secs(*s as i64)).ok(),
            Some(Since::Time(t)) => Some(*t),
            None => None,
        }
    }

    /// Which of the initial lines are printed.
    pub(crate) fn initial_range(&self, start: Timestamp, now: Timestamp) -> Vec<u64> {
        let limit = self.since_limit(now);
        let lines: Vec<u64> = (1..=INITIAL_LINES)
            .filter(|k| limit.is_none_or(|l| timestamp(start, *k) >= l))
            .collect();
        match self.tail_lines {
            Some(n) => lines[lines.len().saturating_sub(n as usize)..].to_vec(),
            None => lines,
        }
    }

    /// Renders line `k`, with newline.
    pub(crate) fn render(&self, start: Timestamp, pod: &str, container: &str, k: u64) -> String {
        if self.timestamps {
            format!("{}\n", timestamped(start, pod, container, k))
        } else {
            format!("{}\n", line(pod, container, k))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn lines_and_timestamps() {
        let start: Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        assert_eq!(line("p", "c", 3), "p/c line 3");
        assert_eq!(
            timestamped(start, "p", "c", 3),
            "2026-01-02T03:04:08Z p/c line 3"
        );
        let frac: Timestamp = "2026-01-02T03:04:05.120Z".parse().unwrap();
        assert_eq!(format_timestamp(frac), "2026-01-02T03:04:05.12Z");
    }

    #[test]
    fn options_and_filters() {
        let start: Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        let o = LogOptions::parse(&q(&[("tailLines", "3")])).unwrap();
        assert_eq!(o.initial_range(start, start), vec![8, 9, 10]);
        let o = LogOptions::parse(&q(&[("sinceTime", "2026-01-02T03:04:12Z")])).unwrap();
        assert_eq!(o.initial_range(start, start), vec![7, 8, 9, 10]);
        let now = timestamp(start, 10);
        let o = LogOptions::parse(&q(&[("sinceSeconds", "2")])).unwrap();
        assert_eq!(o.initial_range(start, now), vec![8, 9, 10]);
        assert!(LogOptions::parse(&q(&[("sinceSeconds", "2"), ("sinceTime", "x")])).is_err());
        assert!(LogOptions::parse(&q(&[("limitBytes", "0")])).is_err());
        assert!(LogOptions::parse(&q(&[("follow", "maybe")])).is_err());
        let o = LogOptions::parse(&q(&[("follow", "true"), ("timestamps", "1")])).unwrap();
        assert!(o.follow && o.timestamps);
    }
}
