//! hakmem's own C interface (`hakmem-malloc/include/hakmem.h`) and glibc's
//! introspection calls (`malloc_trim`, `mallinfo2`, `mallinfo`,
//! `malloc_stats`) answered with hakmem's figures. `libhakmem.so` exports
//! them as one-line `extern "C"` forwards to the functions here.
//!
//! Every figure comes from [`stats`](crate::stats) (exact, process-wide);
//! nothing here keeps figures of its own. How glibc's `struct mallinfo2`
//! fields are filled is documented on [`MallInfo2`] and in the header.
//!
//! Invariants:
//! - [`HakmemStats`], [`MallInfo2`] and [`MallInfo`] have the layout of
//!   their C declarations (`#[repr(C)]`, fields in the header's order);
//! - none of these functions allocates (they may run inside `malloc`'s
//!   callers at any time, and the stats print formats on the stack).

use core::ffi::c_char;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::env::Config;
use crate::stats::{stats, write_stderr, GlobalStats};

/// `hakmem_stats_t`: the process-wide figures of [`stats`](crate::stats),
/// flattened for C. Every field is in bytes or a count, as named.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HakmemStats {
    /// Bytes mapped by the heaps (`Stats::mapped_bytes`, summed).
    pub mapped_bytes: usize,
    /// Bytes held by the program: block sizes of small blocks, requested
    /// sizes of large ones (`Stats::held_bytes`).
    pub held_bytes: usize,
    /// Blocks held by the program (`Stats::held_blocks`).
    pub held_blocks: usize,
    /// Carved blocks on slab free lists, ready for reuse.
    pub free_blocks: usize,
    /// Blocks freed by other threads, not yet collected by their owner.
    pub pending_remote: usize,
    /// SuperSlabs mapped now (retained ones included).
    pub superslabs_mapped: usize,
    /// Empty SuperSlabs kept mapped for reuse.
    pub superslabs_retained: usize,
    /// SuperSlabs mapped since the start (by heaps still counted).
    pub superslabs_created: usize,
    /// SuperSlabs returned to the system since the start.
    pub superslabs_released: usize,
    /// Large blocks not yet unmapped.
    pub large_count: usize,
    /// Requested bytes of live large blocks.
    pub large_bytes: usize,
    /// Bytes mapped for live large blocks.
    pub large_mapped_bytes: usize,
    /// Bytes of freed large blocks' regions kept mapped for reuse.
    pub large_cached_bytes: usize,
    /// Heaps owned by live threads.
    pub thread_heaps: usize,
    /// Heaps of exited threads still holding blocks.
    pub abandoned_heaps: usize,
    /// Heaps that could not be read (0 on any current Linux).
    pub unread_heaps: usize,
    /// Bytes mapped from the OS by the page source right now.
    pub os_mapped_bytes: usize,
    /// `madvise(MADV_DONTNEED)` calls the kernel refused since the start.
    pub decommit_failures: usize,
    /// `munmap` calls the kernel refused since the start.
    pub unmap_failures: usize,
}

impl From<&GlobalStats> for HakmemStats {
    fn from(g: &GlobalStats) -> Self {
        let p = &g.process;
        HakmemStats {
            mapped_bytes: p.mapped_bytes,
            held_bytes: p.held_bytes,
            held_blocks: p.held_blocks,
            free_blocks: p.free_blocks,
            pending_remote: p.pending_remote,
            superslabs_mapped: p.superslabs_mapped,
            superslabs_retained: p.superslabs_retained,
            superslabs_created: p.superslabs_created,
            superslabs_released: p.superslabs_released,
            large_count: p.large_count,
            large_bytes: p.large_bytes,
            large_mapped_bytes: p.large_mapped_bytes,
            large_cached_bytes: p.large_cached_bytes,
            thread_heaps: g.thread_heaps,
            abandoned_heaps: g.abandoned_heaps,
            unread_heaps: g.unread_heaps,
            os_mapped_bytes: g.os_mapped_bytes,
            decommit_failures: g.decommit_failures,
            unmap_failures: g.unmap_failures,
        }
    }
}

/// `hakmem_stats_get`: the process-wide figures now.
pub fn stats_get() -> HakmemStats {
    HakmemStats::from(&stats())
}

/// `hakmem_stats_print` and `malloc_stats`: the stats table (as
/// `HAKMEM_SHOW_STATS=1` prints it at exit) on stderr, without allocating.
pub fn stats_print() {
    write_stderr(format_args!("{}", stats()));
}

/// `hakmem_trim` and `malloc_trim`: [`trim`](crate::trim) — returns the
/// number of SuperSlabs given back to the system.
pub fn trim() -> usize {
    crate::trim()
}

/// `hakmem_option_t`: the options of `hakmem_option_get` /
/// `hakmem_option_set`, one per `HAKMEM_*` variable.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HakmemOption {
    /// `HAKMEM_RETAIN`.
    Retain = 0,
    /// `HAKMEM_LARGE_CACHE`.
    LargeCache = 1,
    /// `HAKMEM_PURGE_DELAY_MS`.
    PurgeDelayMs = 2,
    /// `HAKMEM_BACKGROUND` (0 or 1).
    Background = 3,
    /// `HAKMEM_SHOW_STATS` (0 or 1); the only one settable at run time.
    ShowStats = 4,
    /// `HAKMEM_VERBOSE` (0 or 1).
    Verbose = 5,
}

impl HakmemOption {
    /// The option numbered `n` in the header, if any.
    pub const fn from_raw(n: i32) -> Option<HakmemOption> {
        Some(match n {
            0 => HakmemOption::Retain,
            1 => HakmemOption::LargeCache,
            2 => HakmemOption::PurgeDelayMs,
            3 => HakmemOption::Background,
            4 => HakmemOption::ShowStats,
            5 => HakmemOption::Verbose,
            _ => return None,
        })
    }
}

/// What `hakmem_option_set` can fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionError {
    /// `EINVAL`: no such option, or a value out of range.
    Invalid,
    /// `EPERM`: the option is fixed once the allocator is set up.
    Fixed,
}

/// `HAKMEM_SHOW_STATS` as set at run time: 0 not set (the configuration
/// decides), 1 off, 2 on.
static SHOW_STATS: AtomicU8 = AtomicU8::new(0);

/// Whether the stats table is printed at exit: the run-time setting if
/// any, else the configuration's.
pub(crate) fn show_stats_at_exit(cfg: &Config) -> bool {
    match SHOW_STATS.load(Ordering::Relaxed) {
        0 => cfg.show_stats,
        v => v == 2,
    }
}

/// The configuration in force, or the one the first allocation would set
/// up (defaults and environment) if none happened yet.
fn config() -> Config {
    crate::config().unwrap_or_else(|| Config::DEFAULT.with_env())
}

/// `hakmem_option_get`: the value in force.
pub fn option_get(opt: HakmemOption) -> u64 {
    let c = config();
    match opt {
        HakmemOption::Retain => c.core.retain as u64,
        HakmemOption::LargeCache => c.core.large_cache as u64,
        HakmemOption::PurgeDelayMs => c.purge_delay_ms,
        HakmemOption::Background => c.background as u64,
        HakmemOption::ShowStats => show_stats_at_exit(&c) as u64,
        HakmemOption::Verbose => c.verbose as u64,
    }
}

/// `hakmem_option_set`. Only [`HakmemOption::ShowStats`] (0 or 1) changes
/// at run time. The others are fixed once the allocator is set up (the
/// first allocation, or the library constructor): each thread heap copies
/// `retain` and `large_cache` when it is made, and the background thread
/// is started (or not) and paced by `background` and `purge_delay_ms`
/// then; changing them later would leave heaps disagreeing. Those answer
/// [`OptionError::Fixed`]; set them with the `HAKMEM_*` variables.
pub fn option_set(opt: HakmemOption, value: u64) -> Result<(), OptionError> {
    match opt {
        HakmemOption::ShowStats => {
            let v = match value {
                0 => 1,
                1 => 2,
                _ => return Err(OptionError::Invalid),
            };
            SHOW_STATS.store(v, Ordering::Relaxed);
            Ok(())
        }
        _ => Err(OptionError::Fixed),
    }
}

/// `hakmem_version`: the crate version as a C string, `"0.1.0"`.
pub fn version() -> *const c_char {
    const V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    V.as_ptr().cast()
}

/// glibc's `struct mallinfo2`, filled from hakmem's figures:
///
/// | field | hakmem figure |
/// |---|---|
/// | `arena` | bytes of mapped SuperSlabs (`mapped_bytes - large_mapped_bytes - large_cached_bytes`) |
/// | `ordblks` | `free_blocks`: carved blocks on slab free lists |
/// | `smblks`, `fsmblks`, `usmblks` | 0 (no fastbins; no peak kept) |
/// | `hblks` | `large_count`: large blocks, each its own mapping |
/// | `hblkhd` | `large_mapped_bytes` |
/// | `uordblks` | `held_bytes`: bytes the program holds |
/// | `fordblks` | `mapped_bytes - held_bytes`: mapped, not held (free blocks, uncarved slabs, metadata, retained memory) |
/// | `keepcost` | bytes `malloc_trim` could give back now: retained SuperSlabs and cached large regions |
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MallInfo2 {
    /// Bytes of mapped SuperSlabs.
    pub arena: usize,
    /// Free blocks on slab free lists.
    pub ordblks: usize,
    /// Always 0.
    pub smblks: usize,
    /// Live large blocks.
    pub hblks: usize,
    /// Bytes mapped for live large blocks.
    pub hblkhd: usize,
    /// Always 0.
    pub usmblks: usize,
    /// Always 0.
    pub fsmblks: usize,
    /// Bytes held by the program.
    pub uordblks: usize,
    /// Bytes mapped but not held.
    pub fordblks: usize,
    /// Bytes a trim would return now.
    pub keepcost: usize,
}

/// `mallinfo2`: see [`MallInfo2`] for what each field holds.
pub fn mallinfo2() -> MallInfo2 {
    let g = stats();
    let p = &g.process;
    let ss_shift = config().core.superslab_shift;
    MallInfo2 {
        arena: p
            .mapped_bytes
            .saturating_sub(p.large_mapped_bytes + p.large_cached_bytes),
        ordblks: p.free_blocks,
        smblks: 0,
        hblks: p.large_count,
        hblkhd: p.large_mapped_bytes,
        usmblks: 0,
        fsmblks: 0,
        uordblks: p.held_bytes,
        fordblks: p.mapped_bytes.saturating_sub(p.held_bytes),
        keepcost: (p.superslabs_retained << ss_shift) + p.large_cached_bytes,
    }
}

/// glibc's obsolete `struct mallinfo`: [`MallInfo2`]'s fields as `int`,
/// each saturated at `INT_MAX` (glibc lets them wrap).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MallInfo {
    /// As [`MallInfo2::arena`].
    pub arena: i32,
    /// As [`MallInfo2::ordblks`].
    pub ordblks: i32,
    /// As [`MallInfo2::smblks`].
    pub smblks: i32,
    /// As [`MallInfo2::hblks`].
    pub hblks: i32,
    /// As [`MallInfo2::hblkhd`].
    pub hblkhd: i32,
    /// As [`MallInfo2::usmblks`].
    pub usmblks: i32,
    /// As [`MallInfo2::fsmblks`].
    pub fsmblks: i32,
    /// As [`MallInfo2::uordblks`].
    pub uordblks: i32,
    /// As [`MallInfo2::fordblks`].
    pub fordblks: i32,
    /// As [`MallInfo2::keepcost`].
    pub keepcost: i32,
}

/// `mallinfo`: [`mallinfo2`] saturated to `int`.
pub fn mallinfo() -> MallInfo {
    let m = mallinfo2();
    let c = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    MallInfo {
        arena: c(m.arena),
        ordblks: c(m.ordblks),
        smblks: c(m.smblks),
        hblks: c(m.hblks),
        hblkhd: c(m.hblkhd),
        usmblks: c(m.usmblks),
        fsmblks: c(m.fsmblks),
        uordblks: c(m.uordblks),
        fordblks: c(m.fordblks),
        keepcost: c(m.keepcost),
    }
}

/// `malloc_trim(pad)`: [`trim`]; 1 when a SuperSlab went back to the
/// system, 0 otherwise, as glibc answers (cached large regions are given
/// back too, but not counted). `pad` is ignored (hakmem keeps no top
/// chunk to pad).
pub fn malloc_trim(_pad: usize) -> i32 {
    (trim() > 0) as i32
}
