//! Real programs under `LD_PRELOAD`: sqlite3, python3 and redis-server.
//! Their outputs are the check: equal under every allocator.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hakmem_bench::out::Better;
use hakmem_bench::rss::status_kb;

use crate::alloc::{Allocator, Exec};
use crate::run::{output, parse, show, timed, wrapped, Ctx, Metric, Run};

/// Runs real program `name` (sqlite, python, redis) on `alloc` once.
pub fn run(ctx: &Ctx, name: &str, alloc: &Allocator) -> Result<Run, String> {
    match name {
        "sqlite" => sqlite(ctx, alloc),
        "python" => python(ctx, alloc),
        _ => redis(ctx, alloc),
    }
}

fn metric(name: &str, value: f64, unit: &str, better: Better) -> Metric {
    Metric {
        name: name.into(),
        value,
        unit: unit.into(),
        better,
    }
}

fn find_program(names: &[&str]) -> Result<PathBuf, String> {
    for n in names {
        let p = Path::new(n);
        if p.is_absolute() && p.exists() {
            return Ok(p.to_path_buf());
        }
        if !p.is_absolute() {
            for dir in std::env::var("PATH").unwrap_or_default().split(':') {
                let c = Path::new(dir).join(n);
                if c.exists() {
                    return Ok(c);
                }
            }
        }
    }
    Err(format!("{} not installed", names.join(" or ")))
}

/// Which of the real programs are missing (for skipping with a note).
pub fn missing(name: &str) -> Option<String> {
    let need: &[&[&str]] = match name {
        "sqlite" => &[&["sqlite3"]],
        "python" => &[&["/usr/bin/python3", "python3"]],
        "redis" => &[&["redis-server"], &["redis-cli"], &["redis-benchmark"]],
        _ => &[],
    };
    need.iter().find_map(|n| find_program(n).err())
}

const SQL: &str = "\
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, c INTEGER);
WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < @N)
INSERT INTO t SELECT x, printf('%08d-%s', (x * 7919) % @N,
  substr('abcdefghijklmnopqrstuvwxyz', x % 26 + 1, x % 13 + 1)), (x * 31) % 1000 FROM s;
CREATE INDEX tb ON t(b);
CREATE INDEX tc ON t(c);
SELECT count(*), sum(length(b)), sum(c) FROM t WHERE b > '00050000';
SELECT c, count(*) FROM t GROUP BY c ORDER BY count(*) DESC, c LIMIT 3;
UPDATE t SET b = b || 'x' WHERE a % 3 = 0;
DELETE FROM t WHERE a % 5 = 0;
SELECT count(*), sum(length(b)), max(b) FROM t;
";

fn sqlite(ctx: &Ctx, alloc: &Allocator) -> Result<Run, String> {
    let n = ((500_000.0 * ctx.scale) as usize).max(50_000);
    let sql = ctx.work.join("bench.sql");
    std::fs::write(&sql, SQL.replace("@N", &n.to_string())).map_err(|e| e.to_string())?;
    let mut c = wrapped(ctx, alloc, find_program(&["sqlite3"])?);
    c.arg(":memory:").arg(format!(".read {}", sql.display()));
    let shown = show(&ctx.paths.root, &c);
    let (out, secs) = timed(|| output(c));
    let out = out?;
    let mut r = parse(&out);
    r.cmd = shown;
    let text: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with("peak_rss_kb"))
        .collect();
    r.check = Some(text.join(" "));
    r.metrics.push(metric("time", secs, "s", Better::Lower));
    Ok(r)
}

const PY: &str = r#"
import json, sys, time
n = int(sys.argv[1])
t = time.perf_counter()
d = {}
for i in range(n):
    d["k%d" % i] = [i, str(i) * (i % 7 + 1), {"x": i, "y": [i] * (i % 5)}]
s = sorted(d.items(), key=lambda kv: kv[1][1])
j = json.dumps(s[: n // 4])
back = json.loads(j)
objs = [tuple(range(i % 50)) for i in range(n)]
check = len(j) + len(back) + sum(len(o) for o in objs) + sum(len(v[1]) for v in d.values())
del d, s, j, back, objs
print("metric time %.6f s lower" % (time.perf_counter() - t))
print("check %d" % check)
"#;

fn python(ctx: &Ctx, alloc: &Allocator) -> Result<Run, String> {
    let n = ((400_000.0 * ctx.scale) as usize).max(40_000);
    let script = ctx.work.join("bench.py");
    std::fs::write(&script, PY).map_err(|e| e.to_string())?;
    let mut c = wrapped(ctx, alloc, find_program(&["/usr/bin/python3", "python3"])?);
    c.arg(&script).arg(n.to_string());
    c.env("PYTHONMALLOC", "malloc").env("PYTHONHASHSEED", "0");
    let shown = show(&ctx.paths.root, &c);
    let mut r = parse(&output(c)?);
    r.cmd = shown;
    if r.check.is_none() {
        return Err("python printed no check".into());
    }
    Ok(r)
}

/// Kills the server when dropped, whatever happened.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cli(port: u16, args: &[&str]) -> Result<String, String> {
    let mut c = Command::new("redis-cli");
    c.arg("-p").arg(port.to_string()).args(args);
    output(c).map(|s| s.trim().to_string())
}

fn redis(ctx: &Ctx, alloc: &Allocator) -> Result<Run, String> {
    let preload = match &alloc.exec {
        Exec::Preload(Some(lib)) => lib.clone(),
        // Debian's redis-server links jemalloc: force glibc's malloc.
        _ => [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or("libc.so.6 not found")?,
    };
    let dir = ctx.work.join("redis");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    let mut server = None;
    let mut port = 0;
    for attempt in 0..5u64 {
        port = 20_000 + ((seed.wrapping_mul(2_654_435_761) + attempt * 7919) % 40_000) as u16;
        let child = Command::new(find_program(&["redis-server"])?)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--daemonize", "no", "--logfile"])
            .arg(dir.join(format!("redis-{port}.log")))
            .arg("--dir")
            .arg(&dir)
            .env("LD_PRELOAD", &preload)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e}"))?;
        let mut s = Server(child);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if cli(port, &["ping"]).is_ok_and(|p| p == "PONG") {
                server = Some(s);
                break;
            }
            if s.0.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if server.is_some() {
            break;
        }
    }
    let server = server.ok_or("redis-server would not start")?;
    let pid = server.0.id();
    if let Exec::Preload(Some(lib)) = &alloc.exec {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        let file = lib
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !maps.contains(&file) {
            return Err(format!("{file} is not mapped into redis-server"));
        }
    }
    let base_kb = status_kb(pid, "VmRSS").unwrap_or(0);
    let n = ((50_000.0 * ctx.scale) as usize).max(10_000).to_string();
    let mut run = Run {
        cmd: format!(
            "LD_PRELOAD={} redis-server --port PORT --save '' --appendonly no; \
             redis-benchmark -p PORT -q -n {n} -r 100000 -d 100 -c 50 -t set,get,lpush,lpop [-P 16]",
            show(&ctx.paths.root, &Command::new(&preload))
        ),
        ..Run::default()
    };
    for (suffix, extra) in [("", None), (".P16", Some("16"))] {
        let mut c = Command::new(find_program(&["redis-benchmark"])?);
        c.args([
            "-p",
            &port.to_string(),
            "-q",
            "-n",
            &n,
            "-r",
            "100000",
            "-d",
            "100",
            "-c",
            "50",
        ]);
        c.args(["-t", "set,get,lpush,lpop"]);
        if let Some(p) = extra {
            c.args(["-P", p]);
        }
        let out = output(c)?;
        for piece in out.split(['\r', '\n']) {
            let Some((test, rest)) = piece.split_once(": ") else {
                continue;
            };
            let Some(rps) = rest
                .strip_suffix(" requests per second")
                .or_else(|| rest.split_once(" requests per second,").map(|(v, _)| v))
            else {
                continue;
            };
            if let Ok(v) = rps.trim().parse::<f64>() {
                let name = format!("{}{suffix}", test.trim().to_lowercase());
                run.metrics.retain(|m| m.name != name);
                run.metrics
                    .push(metric(&name, v / 1e3, "kreq/s", Better::Higher));
            }
        }
    }
    let script = "for i=1,20000 do redis.call('SET','chk'..i,string.rep('x',i%200)) end \
                  local s=0 for i=1,20000 do s=s+redis.call('STRLEN','chk'..i) end return s";
    run.check = Some(cli(port, &["eval", script, "0"])?);
    run.peak_kb = status_kb(pid, "VmHWM");
    let live_kb = status_kb(pid, "VmRSS").unwrap_or(0);
    run.metrics.push(metric(
        "rss_loaded",
        live_kb as f64 / 1e3,
        "MB",
        Better::Lower,
    ));
    cli(port, &["flushall"])?;
    let t = Instant::now();
    let mut last = live_kb;
    for ms in (0..=1500u64).step_by(100) {
        while t.elapsed() < Duration::from_millis(ms) {
            std::thread::sleep(Duration::from_millis(5));
        }
        last = status_kb(pid, "VmRSS").unwrap_or(0);
        run.samples
            .push(("flushall".into(), ms, (last as i64 - base_kb as i64) * 1024));
    }
    run.rss_free = Some((last.saturating_sub(base_kb) * 1024) as f64);
    if run.metrics.len() < 9 {
        return Err(format!(
            "redis-benchmark printed {} results, not 8",
            run.metrics.len() - 1
        ));
    }
    drop(server);
    Ok(run)
}
