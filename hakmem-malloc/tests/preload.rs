//! libhakmem.so as the `malloc` of other programs, through `LD_PRELOAD`.
//!
//! The driver builds the library itself (`cargo build --release -p
//! hakmem-malloc` into `target/preload`, a target directory of its own, so
//! it never waits on the lock of the `cargo test` that runs it; or set
//! `HAKMEM_PRELOAD_LIB` to a library built already, such as a hardened one
//! from `cargo build --release -p hakmem-malloc --features hardened`),
//! compiles the C and C++ programs of `tests/c` with `cc -O1 -pthread` and
//! runs them under `LD_PRELOAD`: the API semantics, fork from multi- and single-threaded
//! parents, cross-thread frees, thread churn, dlopen/dlclose, C++, the
//! `HAKMEM_*` options, and bad input (invalid and double frees must print
//! `hakmem: invalid free of 0x…: <fault>` and abort).
//!
//! Then real programs from Debian packages: `python3` on an
//! allocation-heavy script, `sqlite3` inserting 500k rows and building an
//! index, `redis-server` driven by `redis-cli` and `redis-benchmark`. A
//! program that is not installed fails its test with the package to
//! install (`.ci/run` installs them).

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

mod common;

/// Every run of a program gets this long before it is killed.
const LIMIT: Duration = Duration::from_secs(120);

/// SIGABRT.
const SIGABRT: i32 = 6;

/// Scratch space of this test process (programs, outputs, databases):
/// `target/tmp/preload-<pid>`. Those of processes that are gone are
/// removed when it is made.
fn scratch() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for e in fs::read_dir(tmp).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("preload-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = tmp.join(format!("preload-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("create the scratch directory");
        dir
    })
    .clone()
}

/// The absolute path of libhakmem.so, built on first use.
fn libhakmem() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| common::library("HAKMEM_PRELOAD_LIB", "preload", &[]))
}

/// Compiles `tests/c/<name>.c` (or `.cc`) once per test binary and returns
/// the executable (or, with `shared`, the shared library).
fn compile(name: &str, shared: bool) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get_or_insert_with(HashMap::new).get(name) {
        return p.clone();
    }
    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("c");
    let c = src_dir.join(format!("{name}.c"));
    let (compiler, src) = if c.is_file() {
        ("cc", c)
    } else {
        ("c++", src_dir.join(format!("{name}.cc")))
    };
    let out_path = scratch().join(if shared {
        format!("{name}.so")
    } else {
        name.to_string()
    });
    let mut cmd = Command::new(compiler);
    cmd.args(["-O1", "-pthread", "-Wall", "-Wextra", "-g"]);
    if compiler == "c++" {
        cmd.arg("-std=c++17");
    }
    if shared {
        cmd.args(["-shared", "-fPIC"]);
    }
    cmd.arg("-I")
        .arg(&src_dir)
        .arg("-o")
        .arg(&out_path)
        .arg(&src);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {compiler} (install gcc/g++): {e}"));
    assert!(
        out.status.success(),
        "{compiler} {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    built
        .as_mut()
        .unwrap()
        .insert(name.to_string(), out_path.clone());
    out_path
}

/// A finished run.
struct Run {
    what: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
    secs: f64,
}

impl Run {
    fn report(&self) -> String {
        let tail = |s: &str| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "{}: {} after {:.1} s\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
            self.what,
            self.status,
            self.secs,
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }

    /// Exit status 0, `expect` in stdout, and no message from hakmem.
    fn assert_ok(&self, expect: &str) {
        assert!(self.status.success(), "failed: {}", self.report());
        assert!(
            self.stdout.contains(expect),
            "no {expect:?} in stdout: {}",
            self.report()
        );
        assert!(
            !self.stderr.contains("hakmem:"),
            "hakmem complained: {}",
            self.report()
        );
        self.assert_preloaded();
    }

    /// The dynamic loader did load the library (it only warns otherwise).
    fn assert_preloaded(&self) {
        assert!(
            !self.stderr.contains("cannot be preloaded"),
            "libhakmem.so was not loaded: {}",
            self.report()
        );
    }

    /// As `assert_ok`, for a run with `HAKMEM_SHOW_STATS=1`: the stats table
    /// is there (so hakmem served the program), and nothing else from
    /// hakmem.
    fn assert_ok_with_stats(&self, expect: &str) {
        assert!(self.status.success(), "failed: {}", self.report());
        assert!(
            self.stdout.contains(expect),
            "no {expect:?} in stdout: {}",
            self.report()
        );
        assert!(
            self.stderr.contains("\nhakmem stats\n"),
            "no stats table: hakmem did not serve the program? {}",
            self.report()
        );
        for line in self.stderr.lines().filter(|l| l.starts_with("hakmem:")) {
            assert!(
                line.contains(" thread heaps, "),
                "hakmem complained: {line:?}: {}",
                self.report()
            );
        }
        self.assert_preloaded();
    }
}

/// A command with `LD_PRELOAD` set to libhakmem.so and no `HAKMEM_*`
/// variable inherited.
fn preloaded(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HAKMEM_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("LD_PRELOAD", libhakmem());
    cmd
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Starts `cmd` with stdout and stderr going to fresh files.
fn spawn(cmd: &mut Command, stdin: Stdio) -> (Child, PathBuf, PathBuf) {
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir = scratch();
    let (out, err) = (
        dir.join(format!("run{n}.out")),
        dir.join(format!("run{n}.err")),
    );
    let child = cmd
        .stdin(stdin)
        .stdout(fs::File::create(&out).expect("stdout file"))
        .stderr(fs::File::create(&err).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    (child, out, err)
}

/// Waits for `child` up to `limit`; kills it (and fails) past that.
fn wait_for(mut child: Child, what: String, out: &Path, err: &Path, limit: Duration) -> Run {
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: still running after {} s (deadlock?), killed\n--- stderr ---\n{}",
                limit.as_secs(),
                fs::read_to_string(err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    Run {
        what,
        status,
        stdout: read(out),
        stderr: read(err),
        secs: start.elapsed().as_secs_f64(),
    }
}

/// Runs `cmd` to completion (stdin from `input`), with the time limit.
fn run_with(mut cmd: Command, input: Option<&[u8]>, limit: Duration) -> Run {
    let what = format!("{cmd:?}");
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let (mut child, out, err) = spawn(&mut cmd, stdin);
    if let Some(bytes) = input {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(bytes).expect("write stdin");
    }
    wait_for(child, what, &out, &err, limit)
}

fn run(cmd: Command) -> Run {
    run_with(cmd, None, LIMIT)
}

/// Runs the C program `name` with `args` under libhakmem.so, with extra
/// environment variables.
fn run_c(name: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = preloaded(compile(name, false));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd)
}

/// Builds `examples/c/<name>.c` against `include/hakmem.h` and links it
/// with libhakmem.so (`-lhakmem`, found through an rpath), as a program
/// using hakmem's own C interface is built.
fn compile_linked_example(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = dir.join("examples").join("c").join(format!("{name}.c"));
    let lib = libhakmem();
    let lib_dir = lib.parent().expect("the library lies in a directory");
    let out_path = scratch().join(format!("example-{name}"));
    let out = Command::new("cc")
        .args(["-O1", "-Wall", "-Wextra", "-Werror", "-g", "-I"])
        .arg(dir.join("include"))
        .arg("-o")
        .arg(&out_path)
        .arg(&src)
        .arg("-L")
        .arg(lib_dir)
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-lhakmem")
        .output()
        .unwrap_or_else(|e| panic!("run cc (install gcc): {e}"));
    assert!(
        out.status.success(),
        "cc {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out_path
}

// ---------------------------------------------------------------- hakmem.h

/// `examples/c/stats.c`, linked with `-lhakmem` (no `LD_PRELOAD`): the
/// figures of `hakmem_stats_get` cover what it allocated, `mallinfo2`
/// agrees with them field by field, after freeing everything the held
/// bytes are back where they were and `hakmem_trim` leaves nothing to
/// trim, `malloc_stats` and the exit table print, and the options answer
/// as documented. Without the background thread, whose start-up
/// allocations could land between two of its readings.
#[test]
fn c_header_stats_trim_mallinfo_options() {
    for retain in ["4", "0"] {
        let mut cmd = Command::new(compile_linked_example("stats"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HAKMEM_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("HAKMEM_BACKGROUND", "0")
            .env("HAKMEM_RETAIN", retain);
        let r = run(cmd);
        assert!(r.status.success(), "failed: {}", r.report());
        assert!(r.stdout.contains("stats ok"), "{}", r.report());
        // malloc_stats() and the exit table that hakmem_option_set turned on.
        assert_eq!(
            r.stderr.matches("\nhakmem stats\n").count(),
            2,
            "expected malloc_stats' table and the exit table: {}",
            r.report()
        );
        assert!(!r.stderr.contains("invalid free"), "{}", r.report());
    }
}

// ---------------------------------------------------------------- C API

#[test]
fn api_semantics() {
    run_c("api", &[], &[]).assert_ok("api ok");
}

#[test]
fn api_semantics_with_options() {
    // Every option changed at once: still the same semantics.
    let env = [
        ("HAKMEM_RETAIN", "0"),
        ("HAKMEM_PURGE_DELAY_MS", "0"),
        ("HAKMEM_BACKGROUND", "0"),
    ];
    run_c("api", &[], &env).assert_ok("api ok");
}

#[test]
fn show_stats_prints_the_table_at_exit() {
    let r = run_c("api", &[], &[("HAKMEM_SHOW_STATS", "1")]);
    assert!(r.status.success(), "failed: {}", r.report());
    assert!(r.stdout.contains("api ok"), "{}", r.report());
    assert!(
        r.stderr.contains("hakmem stats"),
        "no stats table: {}",
        r.report()
    );
    assert!(
        r.stderr.contains("mapped"),
        "no mapped line: {}",
        r.report()
    );
    assert!(!r.stderr.contains("invalid free"), "{}", r.report());
    let quiet = run_c("api", &[], &[]);
    assert!(
        !quiet.stderr.contains("hakmem stats"),
        "stats printed without HAKMEM_SHOW_STATS: {}",
        quiet.report()
    );
}

#[test]
fn cxx_new_delete_exceptions_thread_locals() {
    run_c("cxx", &[], &[]).assert_ok("cxx ok");
}

// ---------------------------------------------------------------- out of memory

#[test]
fn malloc_trims_the_caches_and_retries_before_returning_null() {
    run_c("oom", &[], &[]).assert_ok("oom ok");
}

// ---------------------------------------------------------------- fork

#[test]
fn fork_from_multithreaded_parent() {
    run_c("fork", &["mt", "60"], &[]).assert_ok("fork ok");
}

#[test]
fn fork_from_multithreaded_parent_with_busy_background_thread() {
    // A background pass every 10 ms: forks land in the middle of passes.
    run_c("fork", &["mt", "40"], &[("HAKMEM_PURGE_DELAY_MS", "0")]).assert_ok("fork ok");
}

#[test]
fn fork_children_print_stats_at_exit() {
    // Children with an odd index leave by exit() (the others by _exit()):
    // each of those and the parent prints the table, after visiting heaps
    // that other threads of the parent owned at the fork.
    let r = run_c("fork", &["mt", "20"], &[("HAKMEM_SHOW_STATS", "1")]);
    assert!(r.status.success(), "failed: {}", r.report());
    assert!(r.stdout.contains("fork ok"), "{}", r.report());
    assert_eq!(
        r.stderr.matches("\nhakmem stats\n").count(),
        11,
        "expected 10 children's tables and the parent's: {}",
        r.report()
    );
    assert!(!r.stderr.contains("invalid free"), "{}", r.report());
}

#[test]
fn fork_from_single_threaded_parent() {
    run_c("fork", &["st", "60"], &[]).assert_ok("fork ok");
}

#[test]
fn forked_child_returns_memory_after_free_all() {
    // The library constructor does not run again in a child: the child's
    // first call must bring the background thread back, or the retained
    // SuperSlabs stay committed (about 10 MiB) for good.
    let r = run_c("fork", &["rss"], &[]);
    r.assert_ok("fork rss ok");
    println!("{}", r.stdout);
}

// ---------------------------------------------------------------- threads

#[test]
fn threads_cross_thread_frees() {
    run_c("threads", &["xfree"], &[]).assert_ok("threads ok");
}

#[test]
fn threads_churn() {
    run_c("threads", &["churn"], &[]).assert_ok("threads ok");
}

#[test]
fn threads_churn_without_background_thread() {
    let env = [("HAKMEM_BACKGROUND", "0")];
    run_c("threads", &["churn"], &env).assert_ok("threads ok");
}

// ---------------------------------------------------------------- dlopen

#[test]
fn dlopen_dlclose() {
    let plugin = compile("plugin", true);
    let plugin = plugin.to_str().expect("utf-8 path");
    run_c("dlopen", &[plugin], &[]).assert_ok("dlopen ok");
}

// ---------------------------------------------------------------- bad input

/// Runs `bad <mode>` and expects the abort with hakmem's message naming the
/// pointer the program announced and one of `faults`.
/// The pointer a `bad` run announced on its `target` line.
fn bad_target(r: &Run) -> String {
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix("target "))
        .unwrap_or_else(|| panic!("no target line: {}", r.report()))
        .to_string()
}

/// The run died by SIGABRT.
fn assert_aborted(r: &Run) {
    assert_eq!(
        r.status.signal(),
        Some(SIGABRT),
        "expected death by SIGABRT: {}",
        r.report()
    );
}

fn expect_invalid_free(mode: &str, faults: &[&str]) {
    let r = run_c("bad", &[mode], &[]);
    let target = bad_target(&r);
    assert!(
        !r.stdout.contains("survived"),
        "the bad call returned: {}",
        r.report()
    );
    assert_aborted(&r);
    let prefix = format!("hakmem: invalid free of {target}: ");
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?}: {}", r.report()));
    let fault = &line[prefix.len()..];
    assert!(
        faults.contains(&fault),
        "fault {fault:?}, expected one of {faults:?}: {}",
        r.report()
    );
}

const DOUBLE: &str = "double free";
const NOT_OURS: &str = "pointer was not allocated by hakmem";
const NOT_BLOCK: &str = "pointer is inside hakmem memory but not an allocated block";
const INTERIOR: &str = "pointer is inside a block, not at its start";

#[test]
fn bad_double_free_small() {
    expect_invalid_free("double-small", &[DOUBLE]);
}

#[test]
fn bad_double_free_after_cache_flush() {
    expect_invalid_free("double-after-flush", &[DOUBLE]);
}

/// A use after free wrote into the block before the second free. The default
/// build's double-free tag is overwritten, so the second free is not caught
/// as such; but the block's link is then checked when it is next handed out,
/// and the process stops there with "heap corruption" (the hardened build
/// catches the double free itself). Either way the block is never handed
/// out twice.
#[test]
fn bad_double_free_after_write_into_freed_block() {
    let r = run_c("bad", &["double-after-write"], &[]);
    let target = bad_target(&r);
    assert!(
        !r.stdout.contains("a="),
        "the block was handed out twice: {}",
        r.report()
    );
    assert_aborted(&r);
    let caught_free = r
        .stderr
        .lines()
        .any(|l| l.starts_with(&format!("hakmem: invalid free of {target}: ")));
    let caught_reuse = r
        .stderr
        .contains(&format!("hakmem: heap corruption at {target}"));
    assert!(
        caught_free || caught_reuse,
        "no hakmem message naming {target}: {}",
        r.report()
    );
}

#[test]
fn bad_double_free_large() {
    // The block's region went back to the system at the first free, or
    // waits in the large cache, its header gone (the hardened lookup, which
    // knows region starts, says it is hakmem memory but no block).
    expect_invalid_free("double-large", &[DOUBLE, NOT_OURS, NOT_BLOCK]);
}

#[test]
fn bad_double_free_cross_thread() {
    expect_invalid_free("double-cross-thread", &[DOUBLE]);
}

#[test]
fn bad_double_free_from_other_thread() {
    expect_invalid_free("double-from-other-thread", &[DOUBLE]);
}

#[test]
fn bad_free_of_static_array() {
    expect_invalid_free("static", &[NOT_OURS]);
}

#[test]
fn bad_free_of_stack_pointer() {
    expect_invalid_free("stack", &[NOT_OURS]);
}

#[test]
fn bad_free_of_interior_pointer() {
    expect_invalid_free("interior", &[INTERIOR]);
}

#[test]
fn bad_free_of_glibc_block() {
    // As a block from before hakmem was loaded would be.
    expect_invalid_free("foreign", &[NOT_OURS]);
    expect_invalid_free("foreign-large", &[NOT_OURS]);
}

#[test]
fn bad_free_of_mmap_page() {
    expect_invalid_free("mmap", &[NOT_OURS]);
}

#[test]
fn bad_free_inside_metadata() {
    expect_invalid_free("metadata", &[NOT_BLOCK]);
}

#[test]
fn bad_realloc_and_size_query() {
    expect_invalid_free("realloc-static", &[NOT_OURS]);
    expect_invalid_free("usable-static", &[NOT_OURS]);
}

// ---------------------------------------------------------------- real programs

/// A program from a Debian package: `/usr/bin/<name>` first, else the PATH.
/// Fails the test (never skips it) when it is not installed.
fn debian_program(name: &str, package: &str) -> PathBuf {
    let usr = Path::new("/usr/bin").join(name);
    if usr.is_file() {
        return usr;
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed: install the Debian package `{package}` \
             (apt-get install -y {package}); .ci/run installs it"
        )
    })
}

#[test]
fn python3_allocation_heavy_script() {
    let python = debian_program("python3", "python3");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/alloc_heavy.py");
    let mut cmd = preloaded(&python);
    cmd.arg(&script).env("HAKMEM_SHOW_STATS", "1");
    let r = run(cmd);
    r.assert_ok_with_stats("python ok");
    assert!(
        r.stdout.contains("dict 20004800000 100000\n"),
        "{}",
        r.report()
    );
    assert!(r.stdout.contains("again 1000000\n"), "{}", r.report());
    // The same interpreter on its usual malloc prints the same.
    let mut plain = Command::new(&python);
    plain.arg(&script).env_remove("LD_PRELOAD");
    let reference = run(plain);
    assert!(reference.status.success(), "{}", reference.report());
    assert_eq!(
        r.stdout, reference.stdout,
        "output differs from the glibc run"
    );
}

#[test]
fn sqlite3_500k_rows_and_an_index() {
    let sqlite = debian_program("sqlite3", "sqlite3");
    let db = scratch().join("rows.db");
    let _ = fs::remove_file(&db);
    let sql = fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/sqlite.sql"))
        .expect("read sqlite.sql");
    let mut cmd = preloaded(sqlite);
    cmd.arg(&db).env("HAKMEM_SHOW_STATS", "1");
    let r = run_with(cmd, Some(&sql), LIMIT);
    r.assert_ok_with_stats("count|500000|125000250000|500000\n");
    for line in ["lookup|247255\n", "range|100000\n", "sorted|10\n", "\nok\n"] {
        assert!(r.stdout.contains(line), "no {line:?}: {}", r.report());
    }
    let _ = fs::remove_file(&db);
}

/// A redis-server of the test's own; killed if the test ends early.
struct Server {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn redis_cli(cli: &Path, port: u16, args: &[&str], input: Option<&[u8]>) -> String {
    let mut cmd = preloaded(cli);
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args);
    let r = run_with(cmd, input, Duration::from_secs(30));
    r.assert_ok("");
    r.stdout.trim_end().to_string()
}

#[test]
fn redis_server_under_redis_benchmark() {
    let server_bin = debian_program("redis-server", "redis-server");
    let cli = debian_program("redis-cli", "redis-tools");
    let bench = debian_program("redis-benchmark", "redis-tools");
    // A free high port, picked by the kernel.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port();
    let dir = scratch().join(format!("redis-{port}"));
    fs::create_dir_all(&dir).expect("redis dir");
    let mut cmd = preloaded(&server_bin);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&dir)
        .env("HAKMEM_SHOW_STATS", "1");
    let (child, out, err) = spawn(&mut cmd, Stdio::null());
    let mut server = Server {
        child: Some(child),
        out,
        err,
    };
    let pid = server.child.as_ref().unwrap().id();

    // Up within 15 s.
    let start = Instant::now();
    loop {
        if let Some(st) = server.child.as_mut().unwrap().try_wait().expect("wait") {
            panic!(
                "redis-server exited at start ({st}):\n{}{}",
                fs::read_to_string(&server.out).unwrap_or_default(),
                fs::read_to_string(&server.err).unwrap_or_default()
            );
        }
        let mut ping = preloaded(&cli);
        ping.args(["-h", "127.0.0.1", "-p", &port.to_string(), "ping"]);
        if run_with(ping, None, Duration::from_secs(10)).stdout.trim() == "PONG" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "redis-server never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    assert!(
        maps.contains("libhakmem"),
        "redis-server has no libhakmem.so mapped"
    );

    // A few commands with known answers.
    assert_eq!(
        redis_cli(&cli, port, &["SET", "greeting", "hello"], None),
        "OK"
    );
    assert_eq!(redis_cli(&cli, port, &["GET", "greeting"], None), "hello");
    let big: Vec<u8> = (0..1_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    assert_eq!(
        redis_cli(&cli, port, &["-x", "SET", "big"], Some(&big)),
        "OK"
    );
    assert_eq!(redis_cli(&cli, port, &["STRLEN", "big"], None), "1000000");
    assert_eq!(
        redis_cli(&cli, port, &["GETRANGE", "big", "26", "30"], None),
        "abcde"
    );
    assert_eq!(
        redis_cli(&cli, port, &["RPUSH", "l", "x", "y", "z"], None),
        "3"
    );
    assert_eq!(
        redis_cli(&cli, port, &["LRANGE", "l", "0", "-1"], None),
        "x\ny\nz"
    );
    assert_eq!(redis_cli(&cli, port, &["INCRBY", "n", "40"], None), "40");
    assert_eq!(redis_cli(&cli, port, &["INCRBY", "n", "2"], None), "42");

    // redis-benchmark, bounded: 100k requests per test, pipelined.
    let mut b = preloaded(&bench);
    b.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
        .args(["-n", "100000", "-P", "16", "-r", "100000"])
        .args(["-t", "set,get,incr,lpush,rpop,sadd,hset,lrange_100"]);
    let r = run_with(b, None, Duration::from_secs(120));
    r.assert_ok("requests per second");
    let stdout = r.stdout.replace('\r', "\n");
    for t in [
        "SET",
        "GET",
        "INCR",
        "LPUSH",
        "RPOP",
        "SADD",
        "HSET",
        "LRANGE_100",
    ] {
        let ok = stdout.lines().any(|l| {
            l.starts_with(&format!("{t}:")) || l.starts_with(&format!("{t} "))
        } && l.contains("requests per second"));
        assert!(ok, "no result for {t}: {}", r.report());
    }

    // Still consistent after the load.
    assert_eq!(redis_cli(&cli, port, &["GET", "greeting"], None), "hello");
    assert_eq!(redis_cli(&cli, port, &["STRLEN", "big"], None), "1000000");
    let keys: u64 = redis_cli(&cli, port, &["DBSIZE"], None)
        .parse()
        .expect("DBSIZE is a number");
    assert!(keys > 1000, "DBSIZE {keys}");
    assert_eq!(redis_cli(&cli, port, &["DEL", "big"], None), "1");

    // Stop it by its PID (SIGTERM) and wait: a clean exit.
    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -TERM {pid} failed");
    let child = server.child.take().unwrap();
    let (out, err) = (server.out.clone(), server.err.clone());
    let what = format!("redis-server (pid {pid})");
    let r = wait_for(child, what, &out, &err, Duration::from_secs(30));
    r.assert_ok_with_stats("ready to exit");
    let _ = fs::remove_dir_all(&dir);
}
