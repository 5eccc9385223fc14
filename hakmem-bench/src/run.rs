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
    /// The command line that ran it (paths relative to the workspace).
    pub cmd: String,
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
            let fork = w.name == "scaling-fork";
            let cases = scaling_cases(ctx, fork).into_iter().map(|(k, n)| {
                let mut c = wrapped(ctx, alloc, ctx.paths.bin.join("scaling"));
                if fork {
                    c.arg("--fork");
                }
                c.args(["1200", &format!("{k}:{n}")]);
                c
            });
            return run_cases(ctx, cases);
        }
        ("rs-scaling", Exec::RustBin(bin)) => {
            let cases = scaling_cases(ctx, false).into_iter().map(|(k, n)| {
                let mut c = wrapped(ctx, alloc, bin);
                c.args([&format!("scaling:{k}:{n}"), &scale, &threads_arg(ctx)]);
                c
            });
            return run_cases(ctx, cases);
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
    run_cases(ctx, std::iter::once(cmd))
}

/// The seed scaling cases (kind, N), each run in a process of its own so
/// that no case starts from memory another one left: N = 100K, 500K, 1M
/// (1M only in --quick and in the forked variant), 16 B and mixed (16 B
/// only for the forked variant in --quick).
fn scaling_cases(ctx: &Ctx, fork: bool) -> Vec<(&'static str, &'static str)> {
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
    kinds
        .iter()
        .flat_map(|&k| ns.iter().map(move |&n| (k, n)))
        .collect()
}

/// Runs the commands one after the other and merges what they printed
/// into one run: all metrics and samples, the checks joined with `+`, the
/// largest peak, the last RSS after free-all.
fn run_cases(ctx: &Ctx, cmds: impl Iterator<Item = Command>) -> Result<Run, String> {
    let mut all = Run::default();
    for cmd in cmds {
        let shown = show(&ctx.paths.root, &cmd);
        let r = parse(&output(cmd)?);
        if r.metrics.is_empty() {
            return Err(format!("`{shown}` printed no metric"));
        }
        merge(&mut all, r, shown);
    }
    Ok(all)
}

/// Adds run `r` of command `cmd` to `all` (see [`run_cases`]).
pub fn merge(all: &mut Run, r: Run, cmd: String) {
    all.metrics.extend(r.metrics);
    all.samples.extend(r.samples);
    all.check = match (all.check.take(), r.check) {
        (Some(a), Some(b)) => Some(format!("{a}+{b}")),
        (a, b) => a.or(b),
    };
    all.peak_kb = all.peak_kb.max(r.peak_kb);
    all.rss_free = r.rss_free.or(all.rss_free);
    all.cmd = if all.cmd.is_empty() {
        cmd
    } else {
        format!("{}; {cmd}", all.cmd)
    };
}

/// `cmd` as a shell line, with the workspace prefix taken off its paths.
pub fn show(root: &std::path::Path, cmd: &Command) -> String {
    let root = format!("{}/", root.display());
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            words.insert(
                0,
                format!("{}={}", k.to_string_lossy(), v.to_string_lossy()),
            );
        }
    }
    words
        .iter()
        .map(|w| {
            let w = w.replace(&root, "");
            if w.is_empty() || w.contains(' ') {
                format!("'{w}'")
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
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
    fn shows_commands_relative_to_the_workspace() {
        let mut c = Command::new("/w/target/bench-bin/peakrss");
        c.args(["-", "/w/target/release/rs-hakmem", "churn", "a b"]);
        assert_eq!(
            show(std::path::Path::new("/w"), &c),
            "target/bench-bin/peakrss - target/release/rs-hakmem churn 'a b'"
        );
    }

    #[test]
    fn merges_cases() {
        let mut all = Run::default();
        merge(
            &mut all,
            parse("metric a 1 ms lower\ncheck 1\npeak_rss_kb 10\nrss_free 5\n"),
            "x".into(),
        );
        merge(
            &mut all,
            parse("metric b 2 ms lower\ncheck 2\npeak_rss_kb 7\n"),
            "y".into(),
        );
        assert_eq!(all.metrics.len(), 2);
        assert_eq!(all.check.as_deref(), Some("1+2"));
        assert_eq!(all.peak_kb, Some(10));
        assert_eq!(all.rss_free, Some(5.0));
        assert_eq!(all.cmd, "x; y");
    }

    #[test]
    fn ignores_malformed_metrics() {
        let r = parse("metric x notanumber ns lower\nmetric y 1 ns\n");
        assert!(r.metrics.is_empty());
    }
}
