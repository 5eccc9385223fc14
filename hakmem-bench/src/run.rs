//! Running one workload on one allocator in a child process, and reading
//! what it printed (the lines of `hakmem_bench::out`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use hakmem_bench::out::Better;

use crate::alloc::{Allocator, Exec, Paths};
use crate::programs;
use crate::spec::Workload;

/// What every run needs to know.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// Where things are.
    pub paths: Paths,
    /// Work multiplier passed to the children (1 = full run).
    pub scale: f64,
    /// `--quick`: fewer cases where a workload has cases.
    pub quick: bool,
    /// Thread counts of the threaded workloads.
    pub threads: Vec<usize>,
    /// Scratch folder (redis's dir, SQL and Python scripts).
    pub work: PathBuf,
}

/// One measured figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// Name, e.g. `hot.16B`, `t2`.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// Which way is better.
    pub better: Better,
}

/// Everything one child process reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Run {
    /// Its metrics, in printed order.
    pub metrics: Vec<Metric>,
    /// Its check line (`None`: none printed).
    pub check: Option<String>,
    /// RSS growth right after free-all, bytes (the last one printed).
    pub rss_free: Option<f64>,
    /// Peak RSS, KiB.
    pub peak_kb: Option<u64>,
    /// RSS samples after free-all: label, ms, bytes.
    pub samples: Vec<(String, u64, i64)>,
}

/// Parses a child's stdout; lines that are none of ours are ignored.
pub fn parse(stdout: &str) -> Run {
    let mut r = Run::default();
    for line in stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["metric", name, value, unit, better] => {
                if let Ok(value) = value.parse() {
                    r.metrics.push(Metric {
                        name: name.to_string(),
                        value,
                        unit: unit.to_string(),
                        better: if *better == "higher" {
                            Better::Higher
                        } else {
                            Better::Lower
                        },
                    });
                }
            }
            ["check", rest @ ..] => r.check = Some(rest.join(" ")),
            ["rss_free", v] => r.rss_free = v.parse().ok(),
            ["peak_rss_kb", v] => r.peak_kb = v.parse().ok(),
            ["sample", label, ms, v] => {
                if let (Ok(ms), Ok(v)) = (ms.parse(), v.parse()) {
                    r.samples.push((label.to_string(), ms, v));
                }
            }
            _ => {}
        }
    }
    r
}

/// Runs `cmd` to the end; its stdout, or an error with its stderr's tail.
pub fn output(mut cmd: Command) -> Result<String, String> {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "{:?} exited with {}: {}",
            cmd.get_program(),
            o.status,
            tail.join(" / ")
        ));
    }
    Ok(stdout)
}

/// The `peakrss` wrapper around `prog`, with `alloc`'s LD_PRELOAD if any.
pub fn wrapped(ctx: &Ctx, alloc: &Allocator, prog: impl Into<PathBuf>) -> Command {
    let mut c = Command::new(ctx.paths.bin.join("peakrss"));
    match &alloc.exec {
        Exec::Preload(Some(lib)) => c.arg(lib),
        _ => c.arg("-"),
    };
    c.arg(prog.into());
    c
}

fn threads_arg(ctx: &Ctx) -> String {
    ctx.threads
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs workload `w` on `alloc` once.
pub fn run_one(ctx: &Ctx, w: &Workload, alloc: &Allocator) -> Result<Run, String> {
    let scale = format!("{}", ctx.scale);
    let cmd = match (w.name, &alloc.exec) {
        ("sqlite" | "python" | "redis", _) => return programs::run(ctx, w.name, alloc),
        ("scaling" | "scaling-fork", Exec::Preload(_)) => {
            let mut c = wrapped(ctx, alloc, ctx.paths.bin.join("scaling"));
            if w.name == "scaling-fork" {
                c.arg("--fork");
            }
            c.arg("1200");
            // The forked variant runs only the 1M cases (only 16 B in --quick).
            let fork = w.name == "scaling-fork";
            let ns: &[&str] = if ctx.quick || fork {
                &["1000000"]
            } else {
                &["100000", "500000", "1000000"]
            };
            let kinds: &[&str] = if ctx.quick && fork {
                &["16"]
            } else {
                &["16", "mixed"]
            };
            for k in kinds {
                for n in ns {
                    c.arg(format!("{k}:{n}"));
                }
            }
            c
        }
        (name, Exec::Preload(_)) => {
            let mut c = wrapped(ctx, alloc, ctx.paths.bin.join("workloads"));
            let name = if name == "thread-churn" {
                "threads"
            } else {
                name
            };
            c.args([name, &scale, &threads_arg(ctx)]);
            c
        }
        (name, Exec::RustBin(bin)) => {
            let mut c = wrapped(ctx, alloc, bin);
            c.args([name.trim_start_matches("rs-"), &scale, &threads_arg(ctx)]);
            c
        }
        (name, Exec::Bare(key)) => {
            let mut c = wrapped(ctx, alloc, ctx.paths.release.join("bare"));
            c.args([name.trim_start_matches("bare-"), key, &scale]);
            c
        }
    };
    let r = parse(&output(cmd)?);
    if r.metrics.is_empty() {
        return Err("printed no metric".into());
    }
    Ok(r)
}

/// Wall-clock seconds of `f`, with its result.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_line_kind() {
        let r = parse(
            "hello\nmetric hot.16B 12.5 ns lower\nmetric t2 3 Mops/s higher\n\
             check 42 x\nrss_free 4096\nsample 16B-1000K 50 -8192\npeak_rss_kb 2048\n",
        );
        assert_eq!(r.metrics.len(), 2);
        assert_eq!(r.metrics[0].name, "hot.16B");
        assert_eq!(r.metrics[0].value, 12.5);
        assert_eq!(r.metrics[1].better, Better::Higher);
        assert_eq!(r.check.as_deref(), Some("42 x"));
        assert_eq!(r.rss_free, Some(4096.0));
        assert_eq!(r.peak_kb, Some(2048));
        assert_eq!(r.samples, vec![("16B-1000K".to_string(), 50, -8192)]);
    }

    #[test]
    fn ignores_malformed_metrics() {
        let r = parse("metric x notanumber ns lower\nmetric y 1 ns\n");
        assert!(r.metrics.is_empty());
    }
}
