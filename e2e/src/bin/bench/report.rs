//! Figures of one run, their min/median/max over runs, the printed table and the JSON file.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

/// One measured figure of one run, with the direct-to-host baseline when the scenario has one.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: &'static str,
    pub vcsync: f64,
    /// The same workload straight against the host API (no vcsync).
    pub direct: Option<f64>,
    /// The goal, as text (empty when there is none).
    pub target: &'static str,
}

/// What one run produced.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Run {
    pub figures: Vec<Figure>,
    /// Free-text observations (errors seen, what was checked).
    pub notes: Vec<String>,
}

impl Run {
    pub fn add(&mut self, name: impl Into<String>, unit: &'static str, vcsync: f64) -> &mut Figure {
        self.figures.push(Figure {
            name: name.into(),
            unit,
            vcsync,
            direct: None,
            target: "",
        });
        self.figures.last_mut().expect("just pushed")
    }

    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        println!("  note: {text}");
        self.notes.push(text);
    }
}

impl Figure {
    pub fn direct(&mut self, v: f64) -> &mut Figure {
        self.direct = Some(v);
        self
    }

    pub fn target(&mut self, t: &'static str) -> &mut Figure {
        self.target = t;
        self
    }
}

/// min / median / max of a set of values.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Spread {
            min: v[0],
            median: v[v.len() / 2],
            max: v[v.len() - 1],
        })
    }
}

/// Percentile `p` (0..=100) of durations, in milliseconds (nearest rank).
pub fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// The aggregated result of a scenario, as printed and written to JSON.
#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub date: String,
    pub machine: String,
    pub mode: &'static str,
    pub options: serde_json::Value,
    pub summary: Vec<Summary>,
    pub runs: Vec<Run>,
}

/// One figure over all runs.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub name: String,
    pub unit: &'static str,
    pub vcsync: Option<Spread>,
    pub direct: Option<Spread>,
    /// vcsync's median over the baseline's median.
    pub ratio: Option<f64>,
    pub target: &'static str,
}

impl Report {
    pub fn new(
        scenario: &str,
        mode: &'static str,
        options: serde_json::Value,
        runs: Vec<Run>,
    ) -> Report {
        // Keep the order in which figures were first reported.
        let mut order: Vec<String> = Vec::new();
        let mut by_name: BTreeMap<String, Vec<&Figure>> = BTreeMap::new();
        for f in runs.iter().flat_map(|r| &r.figures) {
            if !by_name.contains_key(&f.name) {
                order.push(f.name.clone());
            }
            by_name.entry(f.name.clone()).or_default().push(f);
        }
        let summary = order
            .into_iter()
            .map(|name| {
                let fs = &by_name[&name];
                let vcsync = Spread::of(&fs.iter().map(|f| f.vcsync).collect::<Vec<_>>());
                let direct = Spread::of(&fs.iter().filter_map(|f| f.direct).collect::<Vec<_>>());
                let ratio = match (vcsync, direct) {
                    (Some(v), Some(d)) if d.median != 0.0 => Some(v.median / d.median),
                    _ => None,
                };
                Summary {
                    unit: fs[0].unit,
                    target: fs[0].target,
                    name,
                    vcsync,
                    direct,
                    ratio,
                }
            })
            .collect();
        Report {
            scenario: scenario.to_owned(),
            date: jiff::Timestamp::now().to_string(),
            machine: machine(),
            mode,
            options,
            summary,
            runs,
        }
    }

    /// The table, one line per figure.
    pub fn table(&self) -> String {
        let fmt = |v: f64| {
            if v.abs() >= 100.0 || v == v.trunc() {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        };
        let spread = |s: &Option<Spread>, runs: usize| match s {
            None => "-".to_owned(),
            Some(s) if runs > 1 => format!("{} / {} / {}", fmt(s.min), fmt(s.median), fmt(s.max)),
            Some(s) => fmt(s.median),
        };
        let runs = self.runs.len();
        let head = if runs > 1 {
            format!("vcsync (min / median / max of {runs})")
        } else {
            "vcsync".to_owned()
        };
        let mut rows = vec![[
            "figure".to_owned(),
            "unit".to_owned(),
            head,
            "direct to host".to_owned(),
            "ratio".to_owned(),
            "target".to_owned(),
        ]];
        for s in &self.summary {
            rows.push([
                s.name.clone(),
                s.unit.to_owned(),
                spread(&s.vcsync, runs),
                spread(&s.direct, runs),
                s.ratio.map_or("-".to_owned(), |r| format!("{r:.2}")),
                s.target.to_owned(),
            ]);
        }
        let widths: Vec<usize> = (0..6)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = format!(
            "\n{} — {} run(s), {}, {}\n",
            self.scenario, runs, self.mode, self.machine
        );
        for (n, r) in rows.iter().enumerate() {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
            if n == 0 {
                out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 10));
                out.push('\n');
            }
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)?)?;
        Ok(())
    }
}

/// CPU model and count, for the report header.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown cpu".to_owned());
    format!("{cpus} cpu(s), {model}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&v, 50.0), 50.0);
        assert_eq!(percentile_ms(&v, 99.0), 99.0);
        assert_eq!(percentile_ms(&v, 100.0), 100.0);
        assert!(percentile_ms(&[], 50.0).is_nan());
    }

    #[test]
    fn runs_are_summarised_per_figure_with_the_baseline_ratio() {
        let mut runs = Vec::new();
        for (v, d) in [(3.0, 1.0), (1.0, 1.0), (2.0, 1.0)] {
            let mut r = Run::default();
            r.add("x", "ms", v).direct(d).target("<= 5");
            runs.push(r);
        }
        let rep = Report::new("s", "test", serde_json::json!({}), runs);
        let s = &rep.summary[0];
        let sp = s.vcsync.unwrap();
        assert_eq!((sp.min, sp.median, sp.max), (1.0, 2.0, 3.0));
        assert_eq!(s.ratio, Some(2.0));
        assert!(rep.table().contains("1 / 2 / 3"));
    }
}
