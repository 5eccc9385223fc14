//! What the integration tests of hakmem-malloc share: the workspace root and
//! the libhakmem.so they run programs under.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The workspace root (the parent of this crate).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lies in the workspace")
        .to_path_buf()
}

/// Builds libhakmem.so (with `features`) in release into `target/<dir>`, a
/// target directory of its own, or takes the library named by the
/// environment variable `var` (relative to the workspace root). Returns its
/// absolute path.
pub fn library(var: &str, dir: &str, features: &[&str]) -> PathBuf {
    if let Some(lib) = std::env::var_os(var) {
        let lib = workspace().join(lib);
        return fs::canonicalize(&lib).unwrap_or_else(|e| panic!("{var}: {}: {e}", lib.display()));
    }
    // One cargo build at a time: several tests may ask at once.
    static BUILD: Mutex<()> = Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let ws = workspace();
    let target = ws.join("target").join(dir);
    let out = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "hakmem-malloc"])
        .args(features)
        .arg("--manifest-path")
        .arg(ws.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo to build libhakmem.so");
    assert!(
        out.status.success(),
        "building libhakmem.so {features:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lib = target.join("release").join("libhakmem.so");
    assert!(lib.is_file(), "{} was not built", lib.display());
    fs::canonicalize(&lib).unwrap_or_else(|e| panic!("{}: {e}", lib.display()))
}
