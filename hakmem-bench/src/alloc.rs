//! The allocator table: which allocators each kind of workload runs on,
//! where they come from, their versions, and the builds and installs that
//! make them available. A missing optional allocator is a skipped column
//! with a note, never an error.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a workload is written as, and so how an allocator is put under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A C program (or a real program) run under `LD_PRELOAD`.
    C,
    /// A Rust program: one binary per `#[global_allocator]`.
    Rust,
    /// A bare-metal heap over a fixed region, in one process.
    Bare,
}

/// How an allocator is put under a workload.
#[derive(Clone, Debug)]
pub enum Exec {
    /// `LD_PRELOAD` of this library; `None`: the C library's own malloc.
    Preload(Option<PathBuf>),
    /// This `rs-*` binary.
    RustBin(PathBuf),
    /// This name of `hakmem_bench::bare::ALLOCATORS`.
    Bare(&'static str),
}

/// One column of the tables.
#[derive(Clone, Debug)]
pub struct Allocator {
    /// Column name, e.g. `mimalloc-3.3`.
    pub name: String,
    /// Workloads of this kind run on it.
    pub kind: Kind,
    /// Version and origin, for the report.
    pub version: String,
    /// How it is put under a workload.
    pub exec: Exec,
    /// Why it is skipped, if it is.
    pub skipped: Option<String>,
}

impl Allocator {
    /// Whether this allocator is hakmem (std, malloc or bare).
    pub fn is_hakmem(&self) -> bool {
        self.name.starts_with("hakmem")
    }
}

/// The reference columns of a kind: ratios are given to these, in order.
pub fn references(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::C => &["mimalloc-2.0", "mimalloc-3.3", "system"],
        Kind::Rust => &["mimalloc", "system"],
        Kind::Bare => &["talc"],
    }
}

/// Where things are: the workspace, the release binaries, built helpers.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The workspace root.
    pub root: PathBuf,
    /// `target/release`, where the `rs-*` and `bare` binaries are.
    pub release: PathBuf,
    /// `target/bench-bin`: the C workloads, the wrapper, mimalloc builds.
    pub bin: PathBuf,
}

impl Paths {
    /// Finds them from this executable's location.
    pub fn find() -> Paths {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_path_buf();
        let release = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| root.join("target/release"));
        let bin = release
            .parent()
            .map(|t| t.join("bench-bin"))
            .unwrap_or_else(|| root.join("target/bench-bin"));
        Paths { root, release, bin }
    }
}

const DEB_LIB: &str = "/usr/lib/x86_64-linux-gnu";
/// Debian packages of the C peers: (package, library file).
const DEBIAN: [(&str, &str); 3] = [
    ("libjemalloc2", "libjemalloc.so.2"),
    ("libmimalloc2.0", "libmimalloc.so.2"),
    ("libtcmalloc-minimal4", "libtcmalloc_minimal.so.4"),
];

/// Installs the missing Debian peers with apt-get (root only); returns notes.
pub fn install_missing() -> Vec<String> {
    let missing: Vec<&str> = DEBIAN
        .iter()
        .filter(|(_, f)| !Path::new(DEB_LIB).join(f).exists())
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() || !Path::new("/usr/bin/apt-get").exists() {
        return Vec::new();
    }
    eprintln!("installing {} with apt-get", missing.join(" "));
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {}",
            missing.join(" ")
        ))
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Vec::new()
    } else {
        vec![format!("apt-get could not install {}", missing.join(" "))]
    }
}

fn deb_version(pkg: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", pkg])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|| "?".into())
}

/// The version of crate `name` in the workspace's Cargo.lock.
pub fn lock_version(root: &Path, name: &str) -> Option<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).ok()?;
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l == format!("name = \"{name}\"") {
            let v = lines.next()?;
            return Some(
                v.trim_start_matches("version = ")
                    .trim_matches('"')
                    .to_string(),
            );
        }
    }
    None
}

/// The C sources of mimalloc 2.x and 3.x shipped by the `libmimalloc-sys`
/// crate at the version Cargo.lock picked.
fn mimalloc_sources(root: &Path) -> Result<(String, PathBuf), String> {
    let v = lock_version(root, "libmimalloc-sys").ok_or("libmimalloc-sys not in Cargo.lock")?;
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("no CARGO_HOME or HOME")?;
    let reg = home.join("registry/src");
    for entry in std::fs::read_dir(&reg).map_err(|e| format!("{}: {e}", reg.display()))? {
        let dir = entry
            .map_err(|e| e.to_string())?
            .path()
            .join(format!("libmimalloc-sys-{v}/c_src/mimalloc"));
        if dir.join("v2/src/static.c").exists() && dir.join("v3/src/static.c").exists() {
            return Ok((v, dir));
        }
    }
    Err(format!(
        "libmimalloc-sys {v} with c_src/mimalloc/v2 and v3 not found under {}",
        reg.display()
    ))
}

/// `MI_MALLOC_VERSION` 30302 as "3.3.2".
fn mimalloc_version(dir: &Path) -> Option<String> {
    let h = std::fs::read_to_string(dir.join("include/mimalloc.h")).ok()?;
    let n: u32 = h
        .lines()
        .find(|l| l.starts_with("#define MI_MALLOC_VERSION"))?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()?;
    Some(format!("{}.{}.{}", n / 10000, n / 100 % 100, n % 100))
}

/// Builds libmimalloc2.so and libmimalloc3.so into `paths.bin` (once);
/// returns, per major version, the library and its version or why not.
fn build_mimalloc(paths: &Paths) -> [Result<(PathBuf, String), String>; 2] {
    let src = match mimalloc_sources(&paths.root) {
        Ok(s) => s,
        Err(e) => return [Err(e.clone()), Err(e)],
    };
    if let Err(e) = std::fs::create_dir_all(&paths.bin) {
        let e = format!("{}: {e}", paths.bin.display());
        return [Err(e.clone()), Err(e)];
    }
    let jobs: Vec<_> = ["v2", "v3"]
        .iter()
        .map(|v| {
            let dir = src.1.join(v);
            let out = paths.bin.join(format!("libmimalloc{}.so", &v[1..]));
            let child = (!out.exists()).then(|| {
                eprintln!("building {} from libmimalloc-sys {}", out.display(), src.0);
                Command::new("cc")
                    .args([
                        "-O3",
                        "-DNDEBUG",
                        "-DMI_MALLOC_OVERRIDE",
                        "-shared",
                        "-fPIC",
                    ])
                    .args([
                        "-ftls-model=initial-exec",
                        "-Iinclude",
                        "src/static.c",
                        "-o",
                    ])
                    .arg(&out)
                    .arg("-lpthread")
                    .current_dir(&dir)
                    .spawn()
            });
            (dir, out, child)
        })
        .collect();
    let mut res = jobs.into_iter().map(|(dir, out, child)| {
        if let Some(c) = child {
            let ok = c
                .and_then(|c| c.wait_with_output())
                .is_ok_and(|o| o.status.success());
            if !ok {
                return Err(format!("cc could not build {}", out.display()));
            }
        }
        let v = mimalloc_version(&dir).unwrap_or_else(|| "?".into());
        Ok((out, format!("{v} (built from libmimalloc-sys {})", src.0)))
    });
    [res.next().expect("v2"), res.next().expect("v3")]
}

/// Every allocator of every kind, with the skipped ones marked.
pub fn discover(paths: &Paths) -> Vec<Allocator> {
    let mut v = Vec::new();
    let mut push = |name: &str, kind, version: String, exec, skipped: Option<String>| {
        v.push(Allocator {
            name: name.into(),
            kind,
            version,
            exec,
            skipped,
        });
    };
    let lock = |n: &str| lock_version(&paths.root, n).unwrap_or_else(|| "?".into());
    let hakmem_v = format!("{} (this tree)", env!("CARGO_PKG_VERSION"));
    // C: LD_PRELOAD.
    let lib = paths.release.join("libhakmem.so");
    let miss = (!lib.exists()).then(|| format!("{} not built", lib.display()));
    push(
        "hakmem",
        Kind::C,
        format!("libhakmem.so {hakmem_v}"),
        Exec::Preload(Some(lib)),
        miss,
    );
    // The hardened build, when one was built (by tests/catalogue.rs or
    // .ci/hardened.sh): its cost next to the default build's.
    let hardened = paths
        .root
        .join("target/preload-hardened/release/libhakmem.so");
    let miss = (!hardened.exists()).then(|| {
        format!(
            "{} not built (cargo build --release -p hakmem-malloc --features hardened --target-dir target/preload-hardened)",
            hardened.display()
        )
    });
    push(
        "hakmem-hardened",
        Kind::C,
        format!("libhakmem.so {hakmem_v}, --features hardened"),
        Exec::Preload(Some(hardened)),
        miss,
    );
    let glibc = Command::new("ldd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(String::from)
        })
        .unwrap_or_else(|| "?".into());
    push("system", Kind::C, glibc.clone(), Exec::Preload(None), None);
    let deb = |file: &str| {
        let p = Path::new(DEB_LIB).join(file);
        let miss = (!p.exists()).then(|| format!("{} not installed", p.display()));
        (p, miss)
    };
    let (p, miss) = deb("libmimalloc.so.2");
    let ver = format!("{} (Debian libmimalloc2.0)", deb_version("libmimalloc2.0"));
    push("mimalloc-2.0", Kind::C, ver, Exec::Preload(Some(p)), miss);
    let [m2, m3] = build_mimalloc(paths);
    for (name, r) in [("mimalloc-2.3", m2), ("mimalloc-3.3", m3)] {
        match r {
            Ok((p, ver)) => push(name, Kind::C, ver, Exec::Preload(Some(p)), None),
            Err(e) => push(name, Kind::C, "?".into(), Exec::Preload(None), Some(e)),
        }
    }
    let (p, miss) = deb("libjemalloc.so.2");
    let ver = format!("{} (Debian libjemalloc2)", deb_version("libjemalloc2"));
    push("jemalloc", Kind::C, ver, Exec::Preload(Some(p)), miss);
    let (p, miss) = deb("libtcmalloc_minimal.so.4");
    let ver = format!(
        "{} (Debian libtcmalloc-minimal4)",
        deb_version("libtcmalloc-minimal4")
    );
    push("tcmalloc", Kind::C, ver, Exec::Preload(Some(p)), miss);
    // Rust: one binary each.
    for (name, ver) in [
        ("hakmem", format!("hakmem-std {hakmem_v}")),
        ("system", format!("std::alloc::System, {glibc}")),
        (
            "mimalloc",
            format!(
                "mimalloc crate {} (libmimalloc-sys {})",
                lock("mimalloc"),
                lock("libmimalloc-sys")
            ),
        ),
        (
            "jemalloc",
            format!(
                "tikv-jemallocator {} ({})",
                lock("tikv-jemallocator"),
                lock("tikv-jemalloc-sys")
            ),
        ),
    ] {
        let bin = paths.release.join(format!("rs-{name}"));
        let miss = (!bin.exists()).then(|| format!("{} not built", bin.display()));
        push(name, Kind::Rust, ver, Exec::RustBin(bin), miss);
    }
    // Bare metal: in-process arenas.
    for (name, ver) in [
        ("hakmem-bare", format!("hakmem-bare {hakmem_v}")),
        ("talc", format!("talc {}", lock("talc"))),
        (
            "linked_list_allocator",
            format!("linked_list_allocator {}", lock("linked_list_allocator")),
        ),
    ] {
        let key = hakmem_bench::bare::ALLOCATORS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("?", |(n, _)| *n);
        push(name, Kind::Bare, ver, Exec::Bare(key), None);
    }
    v
}
