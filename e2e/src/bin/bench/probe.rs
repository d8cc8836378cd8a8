//! What the bench reads from the vcsync process without its help: memory and CPU from /proc,
//! and its own metrics and readiness from the health endpoint.

use std::time::Duration;

/// Resident memory of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// `VmRSS`, bytes.
    pub rss: u64,
    /// `VmHWM` (peak RSS since start), bytes.
    pub peak: u64,
}

/// `VmRSS`/`VmHWM` of `pid`, from `/proc/<pid>/status` (kB there).
pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    Some(Memory {
        rss: field("VmRSS:")?,
        peak: field("VmHWM:")?,
    })
}

/// CPU time (user + system) `pid` has used so far, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, cpu)| cpu)
}

/// utime + stime from the text of a `stat` file (process or thread), and the command name.
fn parse_stat(stat: &str) -> Option<(String, Duration)> {
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let rest = stat.get(close + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((
        name,
        Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64),
    ))
}

/// CPU time used so far by each of this process's live threads, by thread id, with the thread's
/// name (from `/proc/self/task/*/stat`). A thread that has exited is no longer listed.
pub fn thread_cpu() -> std::collections::HashMap<u32, (String, Duration)> {
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(named) = parse_stat(&stat) {
            out.insert(tid, named);
        }
    }
    out
}

/// [`thread_cpu`] summed per thread name.
#[cfg(test)]
pub fn thread_cpu_by_name() -> std::collections::HashMap<String, Duration> {
    let mut out = std::collections::HashMap::<String, Duration>::new();
    for (name, cpu) in thread_cpu().into_values() {
        *out.entry(name).or_default() += cpu;
    }
    out
}

/// `sysconf(_SC_CLK_TCK)` without unsafe code: `getconf` answers it (100 on every Linux we know).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

pub use vcsync_e2e::testutil::http_get;

/// Sum of every sample of the metric family `name` (all label sets).
pub fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu() {
        let me = std::process::id();
        let m = memory(me).expect("own /proc status");
        assert!(m.rss > 0 && m.peak >= m.rss);
        assert!(cpu_time(me).is_some());
    }

    #[test]
    fn stat_lines_give_the_name_and_user_plus_system_time() {
        // Field 14 (utime) = 250 ticks, field 15 (stime) = 50 ticks; a name with ") (" in it.
        let line = "42 (a) (b c) S 1 1 1 0 -1 0 0 0 0 0 250 50 0 0 20 0 1 0 0 0 0";
        let (name, cpu) = parse_stat(line).expect("parses");
        assert_eq!(name, "a) (b c");
        let want = Duration::from_secs_f64(300.0 / clock_ticks() as f64);
        assert_eq!(cpu, want);
    }

    #[test]
    fn named_threads_are_counted_under_their_name() {
        // Spin until the spinning thread's own CPU shows under its name (busy machines give a
        // thread less CPU than wall time, so poll with a deadline instead of timing the spin).
        let spin = std::thread::Builder::new()
            .name("probe-spin".into())
            .spawn(|| {
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                let mut x = 0u64;
                loop {
                    for _ in 0..1_000_000 {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                    let seen = thread_cpu_by_name();
                    let cpu = seen.get("probe-spin").copied().unwrap_or_default();
                    if cpu >= Duration::from_millis(50) || std::time::Instant::now() > deadline {
                        return (cpu, seen);
                    }
                }
            })
            .expect("thread starts");
        let (cpu, seen) = spin.join().expect("thread ends");
        assert!(cpu >= Duration::from_millis(50), "{seen:?}");
        // Other threads' time is not counted under its name.
        let total = cpu_time(std::process::id()).expect("own stat");
        assert!(cpu <= total, "{cpu:?} > {total:?}");
    }

    #[test]
    fn metric_sums_cover_every_label_set_and_nothing_else() {
        let text =
            "# TYPE a counter\na_total{x=\"1\"} 2\na_total{x=\"2\"} 3\na_total_other 7\nb 1\n";
        assert_eq!(metric_sum(text, "a_total"), 5.0);
        assert_eq!(metric_sum(text, "b"), 1.0);
    }
}
