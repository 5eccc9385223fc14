//! The hakmem-bench driver: builds what the workloads need, runs every
//! workload in a child process per allocator and per repetition,
//! interleaved, checks that every allocator computed the same results, and
//! writes `benchmarks.md` with SVG charts beside it.
//!
//! ```sh
//! cargo run --release -p hakmem-bench              # full: writes docs/
//! cargo run --release -p hakmem-bench -- --quick   # writes target/bench/
//! cargo run --release -p hakmem-bench -- --list
//! ```

mod alloc;
mod chart;
mod programs;
mod report;
mod run;
mod spec;
mod stats;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use alloc::{Allocator, Kind, Paths};
use report::{Report, Runs};
use run::Ctx;
use spec::{Workload, WORKLOADS};

const USAGE: &str = "\
usage: cargo run --release -p hakmem-bench -- [OPTIONS]
  --quick            small work, 1 repetition (under 2 minutes on 2 cores); writes target/bench/
  --only A[,B...]    run only these workloads (see --list)
  --reps N           repetitions (default 3; 1 with --quick)
  --threads N        largest thread count (default: available_parallelism)
  --out DIR          where benchmarks.md and the SVGs go (default docs/, or target/bench/ with --quick)
  --no-install       do not apt-get install missing Debian allocators
  --list             list the workloads and allocators, and exit";

/// Parsed command line.
struct Opts {
    quick: bool,
    only: Option<Vec<String>>,
    reps: Option<usize>,
    threads: Option<usize>,
    out: Option<PathBuf>,
    install: bool,
    list: bool,
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        quick: false,
        only: None,
        reps: None,
        threads: None,
        out: None,
        install: true,
        list: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |what: &str| it.next().cloned().ok_or(format!("{a} needs {what}"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--list" => o.list = true,
            "--no-install" => o.install = false,
            "--only" => o.only = Some(val("names")?.split(',').map(String::from).collect()),
            "--reps" => o.reps = Some(val("N")?.parse().map_err(|_| "--reps N")?),
            "--threads" => o.threads = Some(val("N")?.parse().map_err(|_| "--threads N")?),
            "--out" => o.out = Some(PathBuf::from(val("DIR")?)),
            "-h" | "--help" => return Err(String::new()),
            _ => return Err(format!("unknown option {a}")),
        }
    }
    if o.reps == Some(0) || o.threads == Some(0) {
        return Err("--reps and --threads must be at least 1".into());
    }
    Ok(o)
}

/// 1, 2, 4, … below `max`, then `max`.
fn thread_counts(max: usize) -> Vec<usize> {
    let mut v: Vec<usize> = std::iter::successors(Some(1usize), |t| Some(t * 2))
        .take_while(|&t| t < max)
        .collect();
    v.push(max.max(1));
    v
}

/// Builds the release binaries (rs-*, bare, libhakmem.so) and the C
/// workloads.
fn build(paths: &Paths) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building the workload binaries and libhakmem.so (cargo build --release)");
    let ok = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "hakmem-malloc",
            "-p",
            "hakmem-bench",
            // `--lib` too: libhakmem.so is hakmem-malloc's (cdylib) library
            // target, which `--bins` alone would not build.
            "--lib",
            "--bins",
        ])
        .current_dir(&paths.root)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err("cargo build --release -p hakmem-malloc -p hakmem-bench failed".into());
    }
    if !paths.release.join("libhakmem.so").exists() {
        return Err("cargo build gave no libhakmem.so: hakmem's own C column cannot run".into());
    }
    std::fs::create_dir_all(&paths.bin).map_err(|e| e.to_string())?;
    let c = paths.root.join("hakmem-bench/c");
    let newer = |src: &Path, out: &Path| {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let header = m(&c.join("common.h"));
        match m(out) {
            Some(o) => m(src).is_some_and(|s| s > o) || header.is_some_and(|h| h > o),
            None => true,
        }
    };
    let mut jobs = Vec::new();
    for name in ["peakrss", "scaling", "workloads"] {
        let (src, out) = (c.join(format!("{name}.c")), paths.bin.join(name));
        if newer(&src, &out) {
            let child = Command::new("cc")
                .args(["-O2", "-pthread", "-Wall", "-o"])
                .arg(&out)
                .arg(&src)
                .spawn()
                .map_err(|e| format!("cc: {e}"))?;
            jobs.push((name, child));
        }
    }
    for (name, mut child) in jobs {
        if !child.wait().is_ok_and(|s| s.success()) {
            return Err(format!("cc -O2 -pthread could not build c/{name}.c"));
        }
    }
    Ok(())
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            let s = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&s).lines().next().map(String::from)
        })
        .unwrap_or_else(|| "?".into())
}

fn machine() -> Vec<String> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|k| k.parse::<f64>().ok())
        .map_or("?".into(), |k| format!("{:.1} GiB", k / 1024.0 / 1024.0));
    vec![
        format!("cpu: {cpu}, {cores} cores available, {mem} of memory"),
        format!("kernel: Linux {}", kernel.trim()),
        format!("rustc: {}", first_line("rustc", &["--version"])),
        format!("cc: {}", first_line("cc", &["--version"])),
    ]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("hakmem-bench: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    let paths = Paths::find();
    let selected: Vec<&'static Workload> = match &opts.only {
        None => WORKLOADS.iter().collect(),
        Some(names) => {
            let mut v = Vec::new();
            for n in names {
                match spec::find(n) {
                    Some(w) => v.push(w),
                    None => {
                        let all: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
                        eprintln!(
                            "hakmem-bench: no workload {n}; there are: {}",
                            all.join(", ")
                        );
                        std::process::exit(2);
                    }
                }
            }
            v
        }
    };
    let mut notes = Vec::new();
    if !opts.list {
        if let Err(e) = build(&paths) {
            eprintln!("hakmem-bench: {e}");
            std::process::exit(1);
        }
        if opts.install {
            notes.extend(alloc::install_missing());
        }
    }
    let allocs = alloc::discover(&paths);
    if opts.list {
        println!("workloads:");
        for w in WORKLOADS {
            println!(
                "  {:<20} {:?}{}",
                w.name,
                w.kind,
                if w.threaded { ", threaded" } else { "" }
            );
        }
        println!("allocators:");
        for a in &allocs {
            let skip = a
                .skipped
                .as_deref()
                .map_or(String::new(), |s| format!("  [skipped: {s}]"));
            println!("  {:<22} {:?}  {}{skip}", a.name, a.kind, a.version);
        }
        return;
    }
    for a in allocs.iter().filter(|a| a.skipped.is_some()) {
        notes.push(format!(
            "{} ({:?}) skipped: {}",
            a.name,
            a.kind,
            a.skipped.as_deref().unwrap_or("")
        ));
    }
    let max_threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let work = paths.bin.join("work");
    let _ = std::fs::create_dir_all(&work);
    let ctx = Ctx {
        paths: paths.clone(),
        scale: if opts.quick { 0.1 } else { 1.0 },
        quick: opts.quick,
        threads: thread_counts(max_threads),
        work,
    };
    let reps = opts.reps.unwrap_or(if opts.quick { 1 } else { 3 });
    let mut workloads = Vec::new();
    for w in selected {
        if let Some(m) = programs::missing(w.name) {
            notes.push(format!("workload {} skipped: {m}", w.name));
        } else {
            workloads.push(w);
        }
    }
    let usable = |w: &Workload| -> Vec<&Allocator> {
        allocs
            .iter()
            .filter(|a| a.kind == w.kind && a.skipped.is_none())
            .collect()
    };
    let total: usize = reps * workloads.iter().map(|w| usable(w).len()).sum::<usize>();
    let mut runs = Runs::new();
    let mut errors = Vec::new();
    let mut i = 0;
    for rep in 1..=reps {
        for w in &workloads {
            for a in usable(w) {
                i += 1;
                eprintln!("[{i}/{total}] {} × {} rep {rep}", w.name, a.name);
                match run::run_one(&ctx, w, a) {
                    Ok(r) => runs
                        .entry((w.name.to_string(), a.name.clone()))
                        .or_default()
                        .push(r),
                    Err(e) => {
                        eprintln!("  error: {e}");
                        errors.push(format!("{} × {} rep {rep}: {e}", w.name, a.name));
                    }
                }
            }
        }
    }
    for w in &workloads {
        errors.extend(report::check_mismatches(&runs, w.name));
    }
    let out = opts.out.clone().unwrap_or_else(|| {
        paths
            .root
            .join(if opts.quick { "target/bench" } else { "docs" })
    });
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("hakmem-bench: cannot create {}: {e}", out.display());
        std::process::exit(1);
    }
    let mut rep = Report {
        allocs: &allocs,
        workloads,
        runs: &runs,
        errors: &errors,
        notes: &notes,
        command: format!("cargo run --release -p hakmem-bench -- {}", args.join(" "))
            .trim()
            .to_string(),
        reps,
        wall_s: 0.0,
        threads: ctx.threads.clone(),
        machine: machine(),
        charts: Vec::new(),
    };
    rep.charts = charts(&rep, &out);
    rep.wall_s = start.elapsed().as_secs_f64();
    let md = rep.markdown();
    let file = out.join("benchmarks.md");
    if let Err(e) = std::fs::write(&file, &md) {
        eprintln!("hakmem-bench: cannot write {}: {e}", file.display());
        std::process::exit(1);
    }
    // The summary table on stdout.
    if let Some(start) = md.find("## Summary") {
        let end = md[start..].find("\n## ").map_or(md.len(), |e| start + e);
        let _ = md[start + 1..end].find('\n');
        println!("{}", md[start..end].trim());
    }
    println!("\nwrote {} in {:.0} s", file.display(), rep.wall_s);
    if !errors.is_empty() {
        eprintln!("hakmem-bench: {} error(s):", errors.len());
        for e in &errors {
            eprintln!("  {e}");
        }
        std::process::exit(1);
    }
}

/// The reference of the ratio chart for each kind (the current mimalloc,
/// talc for bare metal).
fn chart_ref(kind: Kind) -> &'static str {
    match kind {
        Kind::C => "mimalloc-3.3",
        Kind::Rust => "mimalloc",
        Kind::Bare => "talc",
    }
}

/// Draws the charts into `out`; returns (file, caption) of those drawn.
fn charts(rep: &Report, out: &Path) -> Vec<(String, String)> {
    let mut drawn = Vec::new();
    let mut draw = |file: String, caption: String, r: Result<(), String>| match r {
        Ok(()) => drawn.push((file, caption)),
        Err(e) => eprintln!("hakmem-bench: {file}: {e}"),
    };
    let groups: Vec<chart::BarGroup> = rep
        .workloads
        .iter()
        .filter_map(|w| {
            let r = chart_ref(w.kind);
            let bars: Vec<(String, f64)> = rep
                .columns(w)
                .iter()
                .filter(|a| a.name != r)
                .filter_map(|a| Some((a.name.clone(), rep.time_ratio(w, &a.name, r)?)))
                .collect();
            (!bars.is_empty()).then(|| chart::BarGroup {
                label: format!("{} (vs {r})", w.name),
                bars,
            })
        })
        .collect();
    if !groups.is_empty() {
        let f = "benchmarks-ratio.svg".to_string();
        let r = chart::ratio_bars(
            &out.join(&f),
            "Time ratio to mimalloc (talc for bare metal), median",
            &groups,
        );
        draw(f, "Time ratio to the current mimalloc per workload (bare metal: to talc); left of 1 is faster.".into(), r);
    }
    for w in &rep.workloads {
        let cols = rep.columns(w);
        // RSS after free-all, from the first repetition's samples.
        let mut labels: Vec<String> = Vec::new();
        for a in &cols {
            if let Some(r) = rep
                .runs
                .get(&(w.name.to_string(), a.name.clone()))
                .and_then(|v| v.first())
            {
                for (l, _, _) in &r.samples {
                    if !labels.contains(l) {
                        labels.push(l.clone());
                    }
                }
            }
        }
        for l in labels
            .iter()
            .filter(|l| l.ends_with("1000K") || *l == "flushall")
        {
            let series: Vec<(String, Vec<(f64, f64)>)> = cols
                .iter()
                .filter_map(|a| {
                    let r = rep
                        .runs
                        .get(&(w.name.to_string(), a.name.clone()))?
                        .first()?;
                    let p: Vec<(f64, f64)> = r
                        .samples
                        .iter()
                        .filter(|(sl, _, _)| sl == l)
                        .map(|&(_, ms, b)| (ms as f64, b as f64 / 1e6))
                        .collect();
                    (!p.is_empty()).then(|| (a.name.clone(), p))
                })
                .collect();
            if series.is_empty() {
                continue;
            }
            let f = format!("benchmarks-rss-{}-{l}.svg", w.name);
            let title = format!("{} {l}: RSS growth after free-all", w.name);
            let r = chart::lines(
                &out.join(&f),
                &title,
                "ms after free-all",
                "MB over the baseline",
                &series,
            );
            draw(
                f,
                format!(
                    "RSS over time after free-all: {} ({l}), first repetition.",
                    w.name
                ),
                r,
            );
        }
        if w.threaded && rep.threads.len() > 1 {
            let series: Vec<(String, Vec<(f64, f64)>)> = cols
                .iter()
                .map(|a| {
                    let p = rep
                        .threads
                        .iter()
                        .filter_map(|&t| {
                            Some((t as f64, rep.med(w.name, &a.name, &format!("t{t}"))?))
                        })
                        .collect();
                    (a.name.clone(), p)
                })
                .collect();
            let unit = rep
                .runs
                .iter()
                .find(|((wn, _), _)| wn == w.name)
                .and_then(|(_, v)| v.first()?.metrics.first().map(|m| m.unit.clone()))
                .unwrap_or_default();
            let f = format!("benchmarks-threads-{}.svg", w.name);
            let r = chart::lines(
                &out.join(&f),
                &format!("{}: thread scaling", w.name),
                "threads",
                &unit,
                &series,
            );
            draw(f, format!("Thread scaling: {} (median {unit}).", w.name), r);
        }
    }
    drawn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_double_then_max() {
        assert_eq!(thread_counts(1), vec![1]);
        assert_eq!(thread_counts(2), vec![1, 2]);
        assert_eq!(thread_counts(6), vec![1, 2, 4, 6]);
        assert_eq!(thread_counts(8), vec![1, 2, 4, 8]);
    }

    #[test]
    fn options() {
        let a = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = parse_args(&a("--quick --only churn,pairs --reps 2 --out x")).unwrap();
        assert!(o.quick);
        assert_eq!(o.only.unwrap(), vec!["churn", "pairs"]);
        assert_eq!(o.reps, Some(2));
        assert_eq!(o.out, Some(PathBuf::from("x")));
        assert!(parse_args(&a("--reps 0")).is_err());
        assert!(parse_args(&a("--bogus")).is_err());
    }
}
