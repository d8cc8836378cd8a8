//! What a workload cost, per pod (or per change): CPU of vcsync, of each test API server, of
//! the kubelet simulator and of the bench's own clients; memory; and the requests each server
//! answered, itemised by user, verb and resource.
//!
//! CPU is attributed by thread: vcsync is a child process (`/proc/<pid>/stat`); the servers and
//! the simulator run in the bench process on runtimes of their own with named threads, so their
//! share is the sum over `/proc/self/task/*/stat` of the threads with that name. Whatever the
//! process used beyond those (its main runtime: the workload's clients and the trackers'
//! watches) is reported as the bench's clients. A figure is the difference of two
//! [`Snapshot`]s around the workload.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::env::{
    ENGINE_USER, Env, HOST_API_THREADS, KUBELET_THREADS, KUBELET_USER, VIRTUAL_API_THREADS,
};
use crate::probe;
use crate::report::Run;

/// Request counts by (user, verb, resource), all response codes together.
pub type Requests = BTreeMap<(String, String, String), u64>;

/// Counters at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    vcsync_cpu: Duration,
    /// CPU by thread id, with the thread's name.
    threads: HashMap<u32, (String, Duration)>,
    process_cpu: Duration,
    vcsync_rss: u64,
    bench_rss: u64,
    host: Requests,
    virt: Requests,
}

/// The difference of two snapshots.
#[derive(Debug, Clone, Default)]
pub struct Cost {
    pub vcsync_cpu: Duration,
    pub host_api_cpu: Duration,
    pub virtual_api_cpu: Duration,
    pub kubelet_cpu: Duration,
    /// The rest of the bench process: its clients and watches.
    pub bench_cpu: Duration,
    /// RSS growth of vcsync, bytes (negative when it shrank).
    pub vcsync_rss: f64,
    /// RSS growth of the bench process (servers, simulator and clients together), bytes.
    pub bench_rss: f64,
    pub host: Requests,
    pub virt: Requests,
}

fn counts(server: Option<&vcsync_e2e::apiserver::TestApiServer>) -> Requests {
    let mut out = Requests::new();
    for (k, n) in server.map(|s| s.request_counts()).unwrap_or_default() {
        *out.entry((k.user, k.verb, k.resource)).or_default() += n;
    }
    out
}

impl Snapshot {
    /// Read every counter now.
    pub fn take(env: &Env) -> Snapshot {
        let me = std::process::id();
        Snapshot {
            vcsync_cpu: env.vcsync.as_ref().map(|v| v.cpu()).unwrap_or_default(),
            vcsync_rss: env.vcsync.as_ref().map_or(0, |v| v.memory().rss),
            threads: probe::thread_cpu(),
            process_cpu: probe::cpu_time(me).unwrap_or_default(),
            bench_rss: probe::memory(me).unwrap_or_default().rss,
            host: counts(env.host_server.as_ref()),
            virt: counts(env.virtual_server.as_ref()),
        }
    }

    /// CPU the threads named `name` used between `self` and `after`, thread by thread: a
    /// thread gone by `after` (say, of the previous run's servers, shutting down) counts for
    /// nothing rather than taking its whole past off the sum, and a new one counts whole.
    fn thread_cpu_until(&self, after: &Snapshot, name: &str) -> Duration {
        after
            .threads
            .iter()
            .filter(|(_, (n, _))| n == name)
            .map(|(tid, (_, cpu))| {
                let before = self
                    .threads
                    .get(tid)
                    .filter(|(n, _)| n == name)
                    .map_or(Duration::ZERO, |(_, c)| *c);
                cpu.saturating_sub(before)
            })
            .sum()
    }

    /// What happened between `self` (before) and `after`. Counters reset in between
    /// ([`Env::reset_counts`]) read as the counts since the reset.
    pub fn until(&self, after: &Snapshot) -> Cost {
        let d = |name: &str| self.thread_cpu_until(after, name);
        let (host_api_cpu, virtual_api_cpu, kubelet_cpu) = (
            d(HOST_API_THREADS),
            d(VIRTUAL_API_THREADS),
            d(KUBELET_THREADS),
        );
        let process = after.process_cpu.saturating_sub(self.process_cpu);
        let requests = |before: &Requests, after: &Requests| -> Requests {
            after
                .iter()
                .map(|(k, n)| {
                    let b = before.get(k).copied().unwrap_or(0);
                    // A reset in between: everything counted now is new.
                    (k.clone(), if *n >= b { n - b } else { *n })
                })
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        Cost {
            vcsync_cpu: after.vcsync_cpu.saturating_sub(self.vcsync_cpu),
            host_api_cpu,
            virtual_api_cpu,
            kubelet_cpu,
            bench_cpu: process.saturating_sub(host_api_cpu + virtual_api_cpu + kubelet_cpu),
            vcsync_rss: after.vcsync_rss as f64 - self.vcsync_rss as f64,
            bench_rss: after.bench_rss as f64 - self.bench_rss as f64,
            host: requests(&self.host, &after.host),
            virt: requests(&self.virt, &after.virt),
        }
    }
}

/// Requests of `user` (all users when `None`), watches excluded.
fn total(reqs: &Requests, user: Option<&str>) -> u64 {
    reqs.iter()
        .filter(|((u, v, _), _)| user.is_none_or(|w| u == w) && v != "watch")
        .map(|(_, n)| n)
        .sum()
}

fn watches(reqs: &Requests, user: &str) -> u64 {
    reqs.iter()
        .filter(|((u, v, _), _)| u == user && v == "watch")
        .map(|(_, n)| n)
        .sum()
}

/// How the figures of one workload are named and divided.
pub struct Per<'a> {
    /// Prefix of every figure name (e.g. `"2000 pods: "`), may be empty.
    pub label: &'a str,
    /// What one unit is: `"pod"` or `"change"`.
    pub unit: &'a str,
    /// How many units the workload had.
    pub n: usize,
    /// Whether memory per unit means anything (not when pods come and go).
    pub memory: bool,
}

/// Add the cost figures of a workload through vcsync, with the direct-to-host baseline's where
/// the scenario ran one (with as many units).
pub fn add(run: &mut Run, per: &Per, c: &Cost, direct: Option<&Cost>) {
    let n = per.n.max(1) as f64;
    let (label, unit) = (per.label, per.unit);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0 / n;
    run.add(
        format!("{label}vcsync CPU per {unit}"),
        "ms",
        ms(c.vcsync_cpu),
    );
    let f = run.add(
        format!("{label}host API CPU per {unit}"),
        "ms",
        ms(c.host_api_cpu),
    );
    if let Some(d) = direct {
        f.direct(ms(d.host_api_cpu));
    }
    let f = run.add(
        format!("{label}virtual API CPU per {unit}"),
        "ms",
        ms(c.virtual_api_cpu),
    );
    if direct.is_some() {
        // Straight to the host there is no virtual API.
        f.direct(0.0);
    }
    let f = run.add(
        format!("{label}kubelet sim CPU per {unit}"),
        "ms",
        ms(c.kubelet_cpu),
    );
    if let Some(d) = direct {
        f.direct(ms(d.kubelet_cpu));
    }
    let f = run.add(
        format!("{label}bench clients CPU per {unit}"),
        "ms",
        ms(c.bench_cpu),
    );
    if let Some(d) = direct {
        f.direct(ms(d.bench_cpu));
    }
    if per.memory {
        run.add(
            format!("{label}vcsync RSS growth per {unit}"),
            "KB",
            c.vcsync_rss / n / 1000.0,
        );
        let f = run.add(
            format!("{label}bench process RSS growth per {unit}"),
            "KB",
            c.bench_rss / n / 1000.0,
        );
        if let Some(d) = direct {
            f.direct(d.bench_rss / n / 1000.0);
        }
    }
    if c.host.is_empty() && c.virt.is_empty() {
        return;
    }
    // All users, so the baseline (the creator and the kubelet alone) compares.
    let f = run.add(
        format!("{label}host API requests per {unit} (all users, excl. watches)"),
        "req",
        total(&c.host, None) as f64 / n,
    );
    if let Some(d) = direct {
        f.direct(total(&d.host, None) as f64 / n);
    }
    run.add(
        format!("{label}virtual API requests per {unit} (all users, excl. watches)"),
        "req",
        total(&c.virt, None) as f64 / n,
    );
    for (server, reqs) in [("host", &c.host), ("virtual", &c.virt)] {
        run.add(
            format!("{label}{server} API: vcsync requests per {unit} (excl. watches)"),
            "req",
            total(reqs, Some(ENGINE_USER)) as f64 / n,
        );
        run.add(
            format!("{label}{server} API: vcsync watches (re)opened"),
            "watches",
            watches(reqs, ENGINE_USER) as f64,
        );
        for ((user, verb, resource), count) in reqs {
            if user != ENGINE_USER || verb == "watch" {
                continue;
            }
            run.add(
                format!("{label}{server} API: vcsync {verb} {resource} per {unit}"),
                "req",
                *count as f64 / n,
            );
        }
    }
    // Who else asked, in one line per server (the creator is `admin`).
    for (server, reqs) in [("host", &c.host), ("virtual", &c.virt)] {
        let mut by_user: BTreeMap<&str, u64> = BTreeMap::new();
        for ((u, v, _), k) in reqs {
            if v != "watch" {
                *by_user.entry(u.as_str()).or_default() += k;
            }
        }
        run.note(format!(
            "{label}{server} API requests by user (excl. watches): {by_user:?}"
        ));
    }
    if let Some(d) = direct {
        let kubelet: u64 = d
            .host
            .iter()
            .filter(|((u, v, _), _)| u == KUBELET_USER && v != "watch")
            .map(|(_, k)| k)
            .sum();
        run.note(format!(
            "{label}direct: {} host requests, {kubelet} of them by the kubelet simulator",
            total(&d.host, None)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reqs(items: &[(&str, &str, &str, u64)]) -> Requests {
        items
            .iter()
            .map(|(u, v, r, n)| ((u.to_string(), v.to_string(), r.to_string()), *n))
            .collect()
    }

    #[test]
    fn a_cost_is_the_difference_and_the_process_rest_is_the_bench() {
        let ms = Duration::from_millis;
        let before = Snapshot {
            vcsync_cpu: ms(100),
            threads: HashMap::from([
                (1, (HOST_API_THREADS.to_owned(), ms(50))),
                // The previous run's server thread, gone by `after`.
                (2, (HOST_API_THREADS.to_owned(), ms(900))),
            ]),
            process_cpu: ms(200),
            host: reqs(&[("vcsync", "create", "pods", 3)]),
            ..Snapshot::default()
        };
        let after = Snapshot {
            vcsync_cpu: ms(400),
            threads: HashMap::from([
                (1, (HOST_API_THREADS.to_owned(), ms(130))),
                (3, (HOST_API_THREADS.to_owned(), ms(20))),
                (4, (KUBELET_THREADS.to_owned(), ms(30))),
            ]),
            process_cpu: ms(500),
            host: reqs(&[
                ("vcsync", "create", "pods", 13),
                ("vcsync", "watch", "pods", 2),
            ]),
            ..Snapshot::default()
        };
        let c = before.until(&after);
        assert_eq!(c.vcsync_cpu, ms(300));
        // 80 ms of thread 1 and 20 of the new thread 3; the exited thread 2 takes nothing off.
        assert_eq!(c.host_api_cpu, ms(100));
        assert_eq!(c.kubelet_cpu, ms(30));
        assert_eq!(c.bench_cpu, ms(300 - 100 - 30));
        assert_eq!(total(&c.host, Some("vcsync")), 10);
        assert_eq!(watches(&c.host, "vcsync"), 2);
    }

    #[test]
    fn figures_are_per_unit_and_itemised() {
        let c = Cost {
            vcsync_cpu: Duration::from_millis(1000),
            host: reqs(&[
                ("vcsync", "create", "pods", 20),
                ("vcsync", "get", "pods", 10),
                ("vcsync", "watch", "pods", 1),
                ("kubelet-sim", "create", "pods/binding", 10),
            ]),
            ..Cost::default()
        };
        let mut run = Run::default();
        let per = Per {
            label: "",
            unit: "pod",
            n: 10,
            memory: false,
        };
        add(&mut run, &per, &c, None);
        let get = |name: &str| {
            run.figures
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.vcsync)
                .unwrap_or_else(|| panic!("no figure {name:?}"))
        };
        assert_eq!(get("vcsync CPU per pod"), 100.0);
        assert_eq!(get("host API: vcsync create pods per pod"), 2.0);
        assert_eq!(get("host API: vcsync get pods per pod"), 1.0);
        assert_eq!(
            get("host API: vcsync requests per pod (excl. watches)"),
            3.0
        );
        assert_eq!(get("host API: vcsync watches (re)opened"), 1.0);
        assert_eq!(
            get("host API requests per pod (all users, excl. watches)"),
            4.0
        );
    }
}
