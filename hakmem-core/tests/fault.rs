//! The core's fault hook: corruption found inside an allocation reaches the
//! handler installed with `set_fault_handler` as a `Fault` naming the kind
//! and the block, and each fault's message is hakmem's one line. (A binary
//! of its own: the handler is process-wide.)

use std::sync::Mutex;

use hakmem_core::{
    set_fault_handler, sim::SimPages, Config, Fault, FaultKind, FreeError, FreeErrorKind, Heap,
};

static SEEN: Mutex<Vec<Fault>> = Mutex::new(Vec::new());

fn record_and_unwind(f: &Fault) -> ! {
    SEEN.lock().unwrap().push(*f);
    panic!("test handler: {f}")
}

#[test]
fn corruption_reaches_the_installed_handler() {
    set_fault_handler(record_and_unwind);
    let pages = SimPages::new();
    let mut heap = Heap::new(&pages, Config::DEFAULT).unwrap();
    let keep = heap.alloc(48, 8);
    let p = heap.alloc(48, 8);
    // SAFETY: `p` is live; then freed, then overwritten — the use after
    // free under test (its slab holds `keep`, so the memory stays mapped).
    unsafe {
        heap.dealloc(p).unwrap();
        p.write_bytes(0xAB, 16);
    }
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| heap.alloc(48, 8)));
    let msg = r.expect_err("the overwritten block was handed out again");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(
        seen,
        [Fault {
            kind: FaultKind::FreeBlockOverwritten,
            addr: p as usize
        }]
    );
    assert_eq!(
        msg,
        format!(
            "test handler: hakmem: heap corruption at {:#x}: a free block was overwritten \
             (use after free, or a double free after a write)",
            p as usize
        )
    );
    let _ = keep;
    // The heap stopped mid-allocation; it is not used (or dropped) again.
    std::mem::forget(heap);
}

#[test]
fn an_invalid_free_as_a_fault_keeps_its_message() {
    let e = FreeError {
        ptr: 0x1230,
        kind: FreeErrorKind::Interior,
    };
    let f = Fault::from(e);
    assert_eq!(f.kind, FaultKind::InvalidFree(FreeErrorKind::Interior));
    assert_eq!(f.addr, 0x1230);
    assert_eq!(f.to_string(), e.to_string());
    assert_eq!(
        f.to_string(),
        "hakmem: invalid free of 0x1230: pointer is inside a block, not at its start"
    );
}
