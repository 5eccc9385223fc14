//! Configuration: [`Config`] and the `HAKMEM_*` environment variables.
//!
//! The variables are read once, at the first allocation, without
//! allocating, since hakmem may be the allocator serving that very call. On
//! Linux they come from `/proc/self/environ`, through a buffer on the stack
//! (so a variable set by the program itself after it started is not seen);
//! macOS and FreeBSD have no such file (FreeBSD's procfs is seldom
//! mounted), so there each name in [`VARS`] is asked of the C library's
//! `getenv`, which reads the live environment in place and does not
//! allocate (a variable the program set before its first allocation is
//! seen there).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HAKMEM_RETAIN` | 4 | empty SuperSlabs each heap keeps mapped for reuse (decommitted after the purge delay) |
//! | `HAKMEM_LARGE_CACHE` | 4 | freed large blocks (above 128 KiB) each heap keeps mapped for reuse, at most 8 (decommitted after the purge delay) |
//! | `HAKMEM_PURGE_DELAY_MS` | 500 | how long retained memory stays committed, and how often the background thread collects remote frees; 0 decommits at once |
//! | `HAKMEM_BACKGROUND` | 1 | run the background thread that returns memory of idle and dead threads |
//! | `HAKMEM_SHOW_STATS` | 0 | print the stats table to stderr at exit |
//! | `HAKMEM_VERBOSE` | 0 | print the configuration and background events to stderr |

use hakmem_core::Config as CoreConfig;

/// How a hakmem-std allocator behaves. Every field has a documented default
/// ([`Config::DEFAULT`]); the `HAKMEM_*` variables override the fields set
/// in code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The core's configuration for every thread heap (SuperSlab size,
    /// retain count).
    pub core: CoreConfig,
    /// Milliseconds an empty retained SuperSlab stays committed before the
    /// background thread decommits it; also the period at which it collects
    /// remote frees of idle threads. Default 500.
    pub purge_delay_ms: u64,
    /// Run the background thread (default true). Without it, memory freed
    /// while its owner thread is idle goes back only when that thread calls
    /// hakmem again, or when [`trim`](crate::trim) is called.
    pub background: bool,
    /// Print the stats table to stderr at exit (default false).
    pub show_stats: bool,
    /// Print the configuration and background events to stderr (default false).
    pub verbose: bool,
}

impl Config {
    /// The defaults: core defaults but 4 retained SuperSlabs and 4 cached
    /// large regions, 500 ms purge
    /// delay, background thread on.
    pub const DEFAULT: Config = Config {
        // Retained SuperSlabs cost address space only once the background
        // thread has decommitted them, so keep more than the core's default
        // 1: a workload whose live set moves between SuperSlabs (buffers
        // growing by realloc) would otherwise map and unmap one per cycle.
        core: CoreConfig {
            retain: 4,
            large_cache: 4,
            ..CoreConfig::DEFAULT
        },
        purge_delay_ms: 500,
        background: true,
        show_stats: false,
        verbose: false,
    };

    /// This configuration with the `HAKMEM_*` variables applied.
    pub fn with_env(mut self) -> Config {
        for_each_var(|name, value| {
            self.apply(name, value);
        });
        self
    }

    /// Applies one variable (`name` without the `HAKMEM_` prefix); whether
    /// it is one of hakmem's with a valid number.
    fn apply(&mut self, name: &[u8], value: &[u8]) -> bool {
        let Some(n) = parse_u64(value) else {
            return false;
        };
        match name {
            b"RETAIN" => self.core.retain = n as usize,
            b"LARGE_CACHE" => self.core.large_cache = n as usize,
            b"PURGE_DELAY_MS" => self.purge_delay_ms = n,
            b"BACKGROUND" => self.background = n != 0,
            b"SHOW_STATS" => self.show_stats = n != 0,
            b"VERBOSE" => self.verbose = n != 0,
            _ => return false,
        }
        true
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (c - b'0') as u64;
    }
    Some(n)
}

/// Every variable [`Config::apply`] knows, for systems where they are
/// asked for by name (`getenv`). A test checks the two agree.
#[cfg_attr(hakmem_std_linux, allow(dead_code))]
const VARS: [&core::ffi::CStr; 6] = [
    c"HAKMEM_RETAIN",
    c"HAKMEM_LARGE_CACHE",
    c"HAKMEM_PURGE_DELAY_MS",
    c"HAKMEM_BACKGROUND",
    c"HAKMEM_SHOW_STATS",
    c"HAKMEM_VERBOSE",
];

/// Calls `f(name_without_prefix, value)` for each variable of [`VARS`] that
/// is set, through `getenv` (no `/proc/self/environ` on these systems).
#[cfg(not(hakmem_std_linux))]
fn for_each_var(f: impl FnMut(&[u8], &[u8])) {
    for_each_getenv(&VARS, f);
}

/// Calls `f(name_without_prefix, value)` for each of `vars` (all starting
/// `HAKMEM_`) that `getenv` finds. The reader of macOS and FreeBSD; built
/// on Linux too, where a test runs it.
#[cfg_attr(hakmem_std_linux, allow(dead_code))]
fn for_each_getenv(vars: &[&core::ffi::CStr], mut f: impl FnMut(&[u8], &[u8])) {
    use core::ffi::{c_char, CStr};
    extern "C" {
        fn getenv(name: *const c_char) -> *const c_char;
    }
    for var in vars {
        // SAFETY: `var` is a NUL-terminated string; getenv only reads it.
        let value = unsafe { getenv(var.as_ptr()) };
        if value.is_null() {
            continue;
        }
        // SAFETY: a non-null getenv answer is a NUL-terminated string in
        // the environment; it is read here at once, before anything could
        // change the environment on this thread.
        let value = unsafe { CStr::from_ptr(value) }.to_bytes();
        let name = var.to_bytes();
        f(name.strip_prefix(b"HAKMEM_").unwrap_or(name), value);
    }
}

/// Calls `f(name_without_prefix, value)` for each `HAKMEM_*` variable whose
/// entry fits in 128 bytes, reading `/proc/self/environ` without allocating.
#[cfg(hakmem_std_linux)]
fn for_each_var(mut f: impl FnMut(&[u8], &[u8])) {
    const PREFIX: &[u8] = b"HAKMEM_";
    let Ok(fd) = rustix::fs::open(
        "/proc/self/environ",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) else {
        return;
    };
    let mut buf = [0u8; 4096];
    let mut entry = [0u8; 128];
    let mut len = 0usize; // bytes of the current entry kept in `entry`
    let mut overflow = false;
    loop {
        let n = match rustix::io::read(&fd, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &c in &buf[..n] {
            if c == 0 {
                let e = &entry[..len];
                if !overflow && e.starts_with(PREFIX) {
                    if let Some(eq) = e.iter().position(|&b| b == b'=') {
                        f(&e[PREFIX.len()..eq], &e[eq + 1..]);
                    }
                }
                len = 0;
                overflow = false;
            } else if len < entry.len() {
                entry[len] = c;
                len += 1;
            } else {
                overflow = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"500"), Some(500));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"5x"), None);
        assert_eq!(parse_u64(b"-1"), None);
    }

    /// Every name `getenv` is asked for (macOS, FreeBSD) is one `apply`
    /// knows, and its value reaches the configuration.
    #[test]
    fn vars_list_matches_apply() {
        for var in VARS {
            let name = &var.to_bytes()[b"HAKMEM_".len()..];
            let (mut zero, mut many) = (Config::DEFAULT, Config::DEFAULT);
            assert!(zero.apply(name, b"0"), "{var:?} unknown to apply");
            assert!(many.apply(name, b"777"), "{var:?} unknown to apply");
            assert_ne!(zero, many, "{var:?}'s value changed nothing");
        }
        let mut c = Config::DEFAULT;
        assert!(!c.apply(b"NOT_A_VAR", b"1"));
        assert!(!c.apply(b"RETAIN", b"x"));
        assert_eq!(c, Config::DEFAULT);
    }

    /// The `getenv` reader of macOS and FreeBSD finds a set variable with
    /// its value and the prefix cut, and skips an unset one. (Names of this
    /// test only, so no other test's configuration changes.)
    #[test]
    fn getenv_reader() {
        std::env::set_var("HAKMEM_ENV_RS_TEST_SET", "42");
        std::env::remove_var("HAKMEM_ENV_RS_TEST_UNSET");
        let mut seen = Vec::new();
        for_each_getenv(
            &[c"HAKMEM_ENV_RS_TEST_SET", c"HAKMEM_ENV_RS_TEST_UNSET"],
            |name, value| seen.push((name.to_vec(), value.to_vec())),
        );
        assert_eq!(seen, [(b"ENV_RS_TEST_SET".to_vec(), b"42".to_vec())]);
    }
}
