//! Errors of bad input — frees (and size queries) of pointers that are not
//! live blocks of a heap — and faults: what the core stops on (heap
//! corruption), reported through the platform's [`FaultHandler`].

use core::fmt;
use core::sync::atomic::{AtomicPtr, Ordering};

/// What is wrong with a pointer handed to `dealloc`, `realloc` or
/// `usable_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeErrorKind {
    /// The pointer lies in no memory this heap's page source handed out.
    NotOurs,
    /// The pointer lies in hakmem memory that is not an allocated block
    /// (metadata, a free slab unit, memory never carved).
    NotAllocated,
    /// The pointer lies inside a block but not at its start.
    Interior,
    /// The block is already free.
    DoubleFree,
    /// Bytes just past the block's requested size were overwritten (a
    /// buffer overflow). Found by `hardened` builds only.
    Overflow,
    /// Bytes just before the block were overwritten (a buffer underflow, or
    /// an overflow of the block below). Found by `hardened` builds only.
    Underflow,
}

/// A rejected pointer, with what is wrong with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeError {
    /// The address passed in.
    pub ptr: usize,
    /// The fault.
    pub kind: FreeErrorKind,
}

impl FreeErrorKind {
    /// A short description of the fault.
    pub const fn describe(self) -> &'static str {
        match self {
            FreeErrorKind::NotOurs => "pointer was not allocated by hakmem",
            FreeErrorKind::NotAllocated => {
                "pointer is inside hakmem memory but not an allocated block"
            }
            FreeErrorKind::Interior => "pointer is inside a block, not at its start",
            FreeErrorKind::DoubleFree => "double free",
            FreeErrorKind::Overflow => {
                "the bytes just past the block were overwritten (heap buffer overflow)"
            }
            FreeErrorKind::Underflow => {
                "the bytes just before the block were overwritten (heap buffer underflow, or an overflow of the block below)"
            }
        }
    }
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hakmem: invalid free of {:#x}: {}",
            self.ptr,
            self.kind.describe()
        )
    }
}

/// What kind of fault hakmem stopped on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultKind {
    /// A free block was written after it was freed (its free tag is gone,
    /// so the link beside it cannot be trusted): a use after free, or a
    /// double free after such a write. Found by the core inside an
    /// allocation or a collection, and reported through the handler of
    /// [`set_fault_handler`].
    FreeBlockOverwritten,
    /// A pointer handed to free, realloc or a size query is not a live
    /// block. The core returns these as [`FreeError`]; a platform that
    /// cannot return an error (a `GlobalAlloc`, the C ABI) reports them as
    /// this fault.
    InvalidFree(FreeErrorKind),
}

/// A fault: heap corruption, or a free of something that is not a live
/// block. Its `Display` is hakmem's one-line message:
/// `hakmem: heap corruption at 0x…: …` or `hakmem: invalid free of 0x…: …`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// What went wrong.
    pub kind: FaultKind,
    /// The address involved: the overwritten free block, or the pointer
    /// passed in.
    pub addr: usize,
}

impl FaultKind {
    /// A short description of the fault.
    pub const fn describe(self) -> &'static str {
        match self {
            FaultKind::FreeBlockOverwritten => {
                "a free block was overwritten (use after free, or a double free after a write)"
            }
            FaultKind::InvalidFree(k) => k.describe(),
        }
    }
}

impl From<FreeError> for Fault {
    fn from(e: FreeError) -> Fault {
        Fault {
            kind: FaultKind::InvalidFree(e.kind),
            addr: e.ptr,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            FaultKind::InvalidFree(_) => "invalid free of",
            _ => "heap corruption at",
        };
        write!(
            f,
            "hakmem: {what} {:#x}: {}",
            self.addr,
            self.kind.describe()
        )
    }
}

/// The function a platform installs to stop on a fault: it reports
/// `fault` its own way (hakmem-std writes the message to stderr without
/// allocating and aborts; hakmem-bare marks its heaps poisoned and calls its
/// user's handler) and never returns.
pub type FaultHandler = fn(&Fault) -> !;

/// The handler [`fault`] calls; null: panic with the message.
static FAULT_HANDLER: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Installs the function called when the core finds heap corruption (one
/// for the process; the last call wins). Without one the core panics with
/// the fault's message — which formats, and may allocate: a backend
/// serving the global allocator installs its own.
///
/// The handler runs on the thread that found the fault, inside the heap
/// operation that found it (an allocation or a collection), with that
/// heap's platform state as it was: a platform that holds a lock around
/// heap calls must make sure nothing waits on it forever (hakmem-bare
/// poisons its heaps first).
pub fn set_fault_handler(handler: FaultHandler) {
    FAULT_HANDLER.store(handler as *mut (), Ordering::Release);
}

/// Stops on a fault: calls the installed handler, or panics. Never returns.
#[cold]
#[inline(never)]
pub(crate) fn fault(kind: FaultKind, addr: usize) -> ! {
    let f = Fault { kind, addr };
    let h = FAULT_HANDLER.load(Ordering::Acquire);
    if !h.is_null() {
        // SAFETY: only `set_fault_handler` stores here, from a
        // `FaultHandler`.
        let handler = unsafe { core::mem::transmute::<*mut (), FaultHandler>(h) };
        handler(&f);
    }
    panic!("{f}")
}
