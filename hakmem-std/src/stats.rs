//! Process-wide statistics, the stats table at exit, and stderr output that
//! does not allocate.

use core::fmt::{self, Write};
use core::sync::atomic::Ordering;

use hakmem_core::Stats;

use crate::global;
use crate::heaps::{self, ABANDONED, CLAIMED, OWNED};

/// Exact figures for the whole process.
#[derive(Clone, Copy, Debug)]
pub struct GlobalStats {
    /// The sum over every heap that could be read (see `unread_heaps`).
    pub process: Stats,
    /// Heaps owned by live threads.
    pub thread_heaps: usize,
    /// Heaps of exited threads still holding blocks other threads use.
    pub abandoned_heaps: usize,
    /// Live threads' heaps that could not be read (the kernel refused
    /// `membarrier`); 0 on any current Linux.
    pub unread_heaps: usize,
    /// Bytes mapped by the page source right now (heaps' SuperSlabs and
    /// large blocks; not the slots holding the heaps themselves). Read
    /// before the heaps are visited: while other threads map or unmap, it
    /// may be below `process.mapped_bytes` or above it.
    pub os_mapped_bytes: usize,
    /// Decommits (`madvise(MADV_DONTNEED)`) the kernel refused since the
    /// start: those pages stayed in RSS. 0 unless something is wrong.
    pub decommit_failures: usize,
    /// `munmap` calls the kernel refused since the start: that address
    /// space stayed mapped. 0 unless something is wrong.
    pub unmap_failures: usize,
}

/// Exact statistics of every heap in the process. Each live thread's heap is
/// read while that thread is outside hakmem (waiting for it if needed).
pub fn stats() -> GlobalStats {
    let mut g = GlobalStats {
        process: Stats::ZERO,
        thread_heaps: 0,
        abandoned_heaps: 0,
        unread_heaps: 0,
        os_mapped_bytes: global::global().map_or(0, |g| g.pages.mapped_bytes()),
        decommit_failures: global::global().map_or(0, |g| g.pages.decommit_failures()),
        unmap_failures: global::global().map_or(0, |g| g.pages.unmap_failures()),
    };
    let can_visit = heaps::membarrier_ready();
    let _visitors = heaps::visitors();
    for s in heaps::registry() {
        match s.state.load(Ordering::Acquire) {
            OWNED => {
                g.thread_heaps += 1;
                let st = if can_visit {
                    heaps::visit_owned(s, true, |h| h.stats())
                } else if global::is_current(s) {
                    thread_stats()
                } else {
                    None
                };
                match st {
                    Some(st) => g.process.merge(&st),
                    None => g.unread_heaps += 1,
                }
            }
            ABANDONED => {
                g.abandoned_heaps += 1;
                let mut st = None;
                heaps::visit_abandoned(s, |h| {
                    st = Some(h.stats());
                    ((), false)
                });
                match st {
                    Some(st) => g.process.merge(&st),
                    None => g.unread_heaps += 1,
                }
            }
            CLAIMED => {}
            _ => {}
        }
    }
    if let Some((slot, lock)) = global::shared() {
        let _l = lock.lock();
        // SAFETY: the shared heap is used only under its lock.
        g.process.merge(&unsafe { slot.heap() }.stats());
    }
    g
}

/// Exact statistics of the calling thread's heap (`None` if it has none).
pub fn thread_stats() -> Option<Stats> {
    global::with_current_heap(|h| Some(h.stats()), None)
}

impl fmt::Display for GlobalStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "hakmem: {} thread heaps, {} abandoned, {} unread; {} bytes mapped from the OS; \
             {} decommit failures, {} unmap failures",
            self.thread_heaps,
            self.abandoned_heaps,
            self.unread_heaps,
            self.os_mapped_bytes,
            self.decommit_failures,
            self.unmap_failures
        )?;
        write!(f, "{}", self.process)
    }
}

/// A fixed buffer that formats without allocating; output past its end is
/// cut.
struct StackBuf {
    buf: [u8; 8192],
    len: usize,
}

impl Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Writes to stderr without allocating.
pub(crate) fn write_stderr(args: fmt::Arguments<'_>) {
    let mut b = StackBuf {
        buf: [0; 8192],
        len: 0,
    };
    let _ = b.write_fmt(args);
    let mut out = &b.buf[..b.len];
    // SAFETY: hakmem never closes fd 2; a program that closed it gets EBADF.
    let fd = unsafe { rustix::stdio::stderr() };
    while !out.is_empty() {
        match rustix::io::write(fd, out) {
            Ok(0) | Err(_) => break,
            Ok(n) => out = &out[n..],
        }
    }
}

/// Runs at process exit (from `.fini_array` on Linux and FreeBSD, from
/// `atexit` on macOS): prints the stats table when `HAKMEM_SHOW_STATS=1`
/// (or `hakmem_option_set` turned it on).
extern "C" fn at_exit() {
    if let Some(g) = global::global() {
        if crate::c_api::show_stats_at_exit(&g.cfg) {
            write_stderr(format_args!("{}", stats()));
        }
    }
}

/// ELF systems run it from `.fini_array`, registered at link time.
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
#[used]
#[link_section = ".fini_array"]
static AT_EXIT: extern "C" fn() = at_exit;

/// Registers [`at_exit`] where no ELF `.fini_array` exists (macOS: Mach-O's
/// termination sections are deprecated, `atexit` is the documented way).
/// Called once, when the process-wide state is set up. (`atexit` allocates
/// from the C library's `malloc`, which is not hakmem's here: hakmem-malloc
/// is Linux-only.)
pub(crate) fn register_at_exit() {
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    {
        extern "C" {
            fn atexit(f: extern "C" fn()) -> i32;
        }
        // SAFETY: `at_exit` is a plain function that lives as long as the
        // program.
        unsafe { atexit(at_exit) };
    }
}

#[cfg(test)]
mod tests {
    use core::ptr::NonNull;

    use hakmem_core::PageSource;

    /// A decommit the kernel refuses on the process-wide page source shows
    /// in `stats()` and its table. (The unit tests run on the system
    /// allocator; only the page source is hakmem's here.)
    #[test]
    fn decommit_failure_shows_in_stats() {
        crate::global::init_now(crate::Config {
            background: false,
            ..crate::Config::DEFAULT
        });
        let g = crate::global::global().expect("set up");
        let page = crate::page_size();
        let r: NonNull<u8> = g.pages.map(2 * page, page).expect("map");
        let before = super::stats().decommit_failures;
        // SAFETY: inside our fresh region, whose bytes nobody relies on; the
        // start is misaligned on purpose, so the kernel refuses it (EINVAL)
        // and touches nothing.
        unsafe { g.pages.decommit(r.byte_add(8), page) };
        let st = super::stats();
        assert_eq!(st.decommit_failures, before + 1);
        let table = st.to_string();
        assert!(
            table.contains(&format!("{} decommit failures", before + 1)),
            "{table}"
        );
        // SAFETY: the region is ours and unused.
        unsafe { g.pages.unmap(r, 2 * page) };
    }
}
