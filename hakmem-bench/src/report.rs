//! The collected runs and the Markdown report written from them.

use std::collections::BTreeMap;
use std::fmt::Write;

use hakmem_bench::out::Better;

use crate::alloc::{references, Allocator, Kind};
use crate::run::Run;
use crate::spec::Workload;
use crate::stats::{geomean, median, min_max, ratio};

/// Every run, by (workload, allocator), in repetition order.
pub type Runs = BTreeMap<(String, String), Vec<Run>>;

/// What the report is written from.
pub struct Report<'a> {
    /// Every allocator, skipped ones included.
    pub allocs: &'a [Allocator],
    /// The workloads that ran, in order.
    pub workloads: Vec<&'static Workload>,
    /// Their runs.
    pub runs: &'a Runs,
    /// Failed runs and differing checks.
    pub errors: &'a [String],
    /// Notes (skipped allocators and workloads, installs).
    pub notes: &'a [String],
    /// The command line that made it.
    pub command: String,
    /// Repetitions asked for.
    pub reps: usize,
    /// Wall time of the whole run, s.
    pub wall_s: f64,
    /// Thread counts used.
    pub threads: Vec<usize>,
    /// Machine description lines.
    pub machine: Vec<String>,
    /// Chart files written beside the report (file name, caption).
    pub charts: Vec<(String, String)>,
}

/// A number in 3–4 significant digits.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Metric names of a workload's runs, in first-printed order, with unit
/// and direction.
pub fn metric_names<'r>(runs: impl Iterator<Item = &'r Run>) -> Vec<(String, String, Better)> {
    let mut names: Vec<(String, String, Better)> = Vec::new();
    for r in runs {
        for m in &r.metrics {
            if !names.iter().any(|(n, _, _)| *n == m.name) {
                names.push((m.name.clone(), m.unit.clone(), m.better));
            }
        }
    }
    names
}

/// The values of metric `name` over `runs`.
pub fn values(runs: &[Run], name: &str) -> Vec<f64> {
    runs.iter()
        .flat_map(|r| r.metrics.iter().filter(|m| m.name == name).map(|m| m.value))
        .collect()
}

/// Whether a unit measures time or throughput (not memory or a share).
pub fn is_speed(unit: &str) -> bool {
    !matches!(unit, "%" | "MB")
}

impl Report<'_> {
    fn runs_of(&self, w: &str, a: &str) -> Option<&Vec<Run>> {
        self.runs
            .get(&(w.to_string(), a.to_string()))
            .filter(|v| !v.is_empty())
    }

    /// Allocators of `kind` that have runs of `w`, hakmem first.
    pub fn columns(&self, w: &Workload) -> Vec<&Allocator> {
        self.allocs
            .iter()
            .filter(|a| a.kind == w.kind && self.runs_of(w.name, &a.name).is_some())
            .collect()
    }

    /// Median of metric `m` of workload `w` on allocator `a`.
    pub fn med(&self, w: &str, a: &str, m: &str) -> Option<f64> {
        median(&values(self.runs_of(w, a)?, m))
    }

    /// Time ratio of `a` to `reference` on `w`: geometric mean over its
    /// speed metrics of value ÷ reference (inverted for throughputs), so
    /// above 1 is slower.
    pub fn time_ratio(&self, w: &Workload, a: &str, reference: &str) -> Option<f64> {
        let names = metric_names(self.runs_of(w.name, a)?.iter());
        let rs: Vec<f64> = names
            .iter()
            .filter(|(_, u, _)| is_speed(u))
            .filter_map(|(n, _, b)| {
                let (v, r) = (self.med(w.name, a, n)?, self.med(w.name, reference, n)?);
                match b {
                    Better::Lower => ratio(v, r),
                    Better::Higher => ratio(r, v),
                }
            })
            .collect();
        geomean(&rs)
    }

    /// The whole Markdown document.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# hakmem benchmarks\n");
        let _ = writeln!(
            s,
            "Written by `hakmem-bench` (a benchmark, never a test). Each workload runs in a child \
             process per allocator and per repetition, interleaved (repetition 1 on every allocator, \
             then repetition 2, …) so that drift on the machine hits all alike. Figures are medians \
             over {} repetition(s), with the min–max range. Where hakmem loses, the tables say so: \
             no workload is left out.\n",
            self.reps
        );
        let _ = writeln!(s, "## Machine and command\n");
        for l in &self.machine {
            let _ = writeln!(s, "- {l}");
        }
        let threads: Vec<String> = self.threads.iter().map(|t| t.to_string()).collect();
        let _ = writeln!(s, "- thread counts: {}", threads.join(", "));
        let _ = writeln!(s, "- command: `{}`", self.command);
        let _ = writeln!(s, "- wall time: {:.0} s\n", self.wall_s);
        let _ = writeln!(
            s,
            "Reproduce: `cargo run --release -p hakmem-bench` (full, writes docs/), \
             `cargo run --release -p hakmem-bench -- --quick` (writes target/bench/), \
             `--only NAME[,NAME]`, `--reps N`, `--threads N`, `--out DIR`, `--list`.\n"
        );
        let _ = writeln!(s, "## Allocators\n");
        let _ = writeln!(s, "| kind | column | version | note |\n|---|---|---|---|");
        for a in self.allocs {
            let kind = match a.kind {
                Kind::C => "C / LD_PRELOAD",
                Kind::Rust => "Rust / #[global_allocator]",
                Kind::Bare => "bare-metal region",
            };
            let note = a
                .skipped
                .as_deref()
                .map_or(String::new(), |n| format!("skipped: {n}"));
            let _ = writeln!(s, "| {kind} | {} | {} | {note} |", a.name, a.version);
        }
        if !self.notes.is_empty() || !self.errors.is_empty() {
            let _ = writeln!(s, "\n## Notes and errors\n");
            for n in self.notes {
                let _ = writeln!(s, "- note: {n}");
            }
            for e in self.errors {
                let _ = writeln!(s, "- **error**: {e}");
            }
        }
        self.summary(&mut s);
        self.memory_summary(&mut s);
        if !self.charts.is_empty() {
            let _ = writeln!(s, "\n## Charts\n");
            for (file, caption) in &self.charts {
                let _ = writeln!(s, "{caption}\n\n![{caption}]({file})\n");
            }
        }
        let _ = writeln!(
            s,
            "\n## Workloads\n\nIn each table, ↓ marks a metric where lower is better, ↑ one \
             where higher is better; a × column is this allocator's median ÷ the reference's \
             median (so for ↓ metrics below 1 beats the reference, for ↑ metrics above 1 does). \
             Peak RSS is the child's maximum resident set (wait4's ru_maxrss; VmHWM for redis); \
             RSS after free-all is the growth over the level before the workload, read right after \
             it freed everything (redis: 1.5 s after FLUSHALL)."
        );
        for w in &self.workloads {
            self.workload(&mut s, w);
        }
        s
    }

    fn summary(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "\n## Summary: hakmem's time ratio\n\nPer workload, the geometric mean over its time \
             and throughput metrics of hakmem's median ÷ the reference's (throughputs inverted), \
             so **above 1 means hakmem is slower**. Memory figures are in the workload tables.\n"
        );
        let _ = writeln!(
            s,
            "| workload | kind | vs | ratio | verdict |\n|---|---|---|---|---|"
        );
        for w in &self.workloads {
            let Some(h) = self.columns(w).into_iter().find(|a| a.is_hakmem()) else {
                continue;
            };
            for r in references(w.kind) {
                let Some(x) = self.time_ratio(w, &h.name, r) else {
                    continue;
                };
                let verdict = if x > 1.05 {
                    "hakmem slower"
                } else if x < 0.95 {
                    "hakmem faster"
                } else {
                    "within 5 %"
                };
                let kind = format!("{:?}", w.kind);
                let _ = writeln!(s, "| {} | {kind} | {r} | {} | {verdict} |", w.name, num(x));
            }
        }
    }

    /// Median peak RSS (MB) and RSS after free-all (MB) of `a` on `w`.
    pub fn memory(&self, w: &str, a: &str) -> (Option<f64>, Option<f64>) {
        let Some(runs) = self.runs_of(w, a) else {
            return (None, None);
        };
        let peak: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.peak_kb)
            .map(|k| k as f64 * 1024.0 / 1e6)
            .collect();
        let free: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.rss_free)
            .map(|b| b / 1e6)
            .collect();
        (median(&peak), median(&free))
    }

    fn memory_summary(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "\n## Summary: memory\n\nhakmem's peak RSS ÷ the reference's (above 1: hakmem \
             used more), and RSS after free-all, hakmem vs the reference (MB over the level \
             before the workload; – where the workload does not free everything).\n"
        );
        let _ = writeln!(
            s,
            "| workload | vs | peak RSS ratio | after free-all: hakmem | reference |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|");
        for w in &self.workloads {
            let Some(h) = self.columns(w).into_iter().find(|a| a.is_hakmem()) else {
                continue;
            };
            let (hp, hf) = self.memory(w.name, &h.name);
            for r in references(w.kind) {
                let (rp, rf) = self.memory(w.name, r);
                if rp.is_none() && rf.is_none() {
                    continue;
                }
                let pr = hp.zip(rp).and_then(|(a, b)| ratio(a, b));
                let f = |v: Option<f64>| v.map_or("–".into(), num);
                let _ = writeln!(
                    s,
                    "| {} | {r} | {} | {} | {} |",
                    w.name,
                    f(pr),
                    f(hf),
                    f(rf)
                );
            }
        }
    }

    fn workload(&self, s: &mut String, w: &Workload) {
        let _ = writeln!(s, "\n### {}\n\n{}\n", w.name, w.about);
        let cols = self.columns(w);
        if cols.is_empty() {
            let _ = writeln!(s, "No runs.");
            return;
        }
        let refs: Vec<&str> = references(w.kind)
            .iter()
            .copied()
            .filter(|r| cols.iter().any(|a| a.name == *r))
            .collect();
        let all: Vec<&Run> = cols
            .iter()
            .filter_map(|a| self.runs_of(w.name, &a.name))
            .flatten()
            .collect();
        let names = metric_names(all.into_iter());
        let _ = write!(s, "| metric | allocator | median | min–max |");
        for r in &refs {
            let _ = write!(s, " × {r} |");
        }
        let _ = writeln!(s, "\n|---|---|---|---|{}", "---|".repeat(refs.len()));
        for (n, unit, better) in &names {
            let arrow = if *better == Better::Lower {
                "↓"
            } else {
                "↑"
            };
            for (i, a) in cols.iter().enumerate() {
                let runs = self.runs_of(w.name, &a.name).expect("columns have runs");
                let v = values(runs, n);
                let label = if i == 0 {
                    format!("{n} ({unit}) {arrow}")
                } else {
                    String::new()
                };
                let (med, range) = match (median(&v), min_max(&v)) {
                    (Some(m), Some((lo, hi))) => (num(m), format!("{}–{}", num(lo), num(hi))),
                    _ => ("–".into(), "–".into()),
                };
                let name = if a.is_hakmem() {
                    format!("**{}**", a.name)
                } else {
                    a.name.clone()
                };
                let _ = write!(s, "| {label} | {name} | {med} | {range} |");
                for r in &refs {
                    let x = median(&v)
                        .zip(self.med(w.name, r, n))
                        .and_then(|(m, rv)| ratio(m, rv));
                    let _ = write!(s, " {} |", x.map_or("–".into(), num));
                }
                let _ = writeln!(s);
            }
        }
        if let Some(c) = cols
            .iter()
            .find(|a| a.is_hakmem())
            .and_then(|a| self.runs_of(w.name, &a.name)?.first())
            .filter(|r| !r.cmd.is_empty())
        {
            let _ = writeln!(
                s,
                "\nCommand of hakmem's run (the others differ in the library or binary): `{}`",
                c.cmd
            );
        }
        let _ = writeln!(
            s,
            "\n| allocator | peak RSS (MB) | RSS after free-all (MB) | check |"
        );
        let _ = writeln!(s, "|---|---|---|---|");
        for a in &cols {
            let runs = self.runs_of(w.name, &a.name).expect("columns have runs");
            let (peak, free) = self.memory(w.name, &a.name);
            let check = runs
                .first()
                .and_then(|r| r.check.clone())
                .unwrap_or_default();
            let check = if check.chars().count() > 40 {
                format!("{}…", check.chars().take(40).collect::<String>())
            } else {
                check
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | `{check}` |",
                a.name,
                peak.map_or("–".into(), num),
                free.map_or("–".into(), num)
            );
        }
    }
}

/// Errors for checks that differ between the runs of a workload.
pub fn check_mismatches(runs: &Runs, workload: &str) -> Vec<String> {
    let mut seen: Vec<(String, &str)> = Vec::new();
    for ((w, a), rs) in runs {
        if w != workload {
            continue;
        }
        for r in rs {
            if let Some(c) = &r.check {
                seen.push((a.clone(), c.as_str()));
            }
        }
    }
    let Some((first_alloc, first)) = seen.first().cloned() else {
        return Vec::new();
    };
    seen.iter()
        .filter(|(_, c)| *c != first)
        .map(|(a, c)| format!("{workload}: check on {a} is `{c}`, on {first_alloc} `{first}`"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Metric;

    fn run(v: f64, check: &str) -> Run {
        Run {
            metrics: vec![Metric {
                name: "t".into(),
                value: v,
                unit: "ns".into(),
                better: Better::Lower,
            }],
            check: Some(check.into()),
            ..Run::default()
        }
    }

    #[test]
    fn numbers_keep_three_or_four_digits() {
        assert_eq!(num(12345.6), "12346");
        assert_eq!(num(123.45), "123.5");
        assert_eq!(num(12.345), "12.35");
        assert_eq!(num(1.23456), "1.235");
    }

    #[test]
    fn differing_checks_are_errors() {
        let mut runs = Runs::new();
        runs.insert(("w".into(), "a".into()), vec![run(1.0, "1"), run(2.0, "1")]);
        runs.insert(("w".into(), "b".into()), vec![run(1.0, "1")]);
        assert!(check_mismatches(&runs, "w").is_empty());
        runs.insert(("w".into(), "c".into()), vec![run(1.0, "2")]);
        let e = check_mismatches(&runs, "w");
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("on c is `2`"));
    }

    #[test]
    fn speed_units() {
        assert!(is_speed("ns") && is_speed("Mops/s"));
        assert!(!is_speed("%") && !is_speed("MB"));
    }
}
