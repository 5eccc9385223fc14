//! `hakmem_std::trim()` leaves nothing pending: a heap's collection first
//! hands the frees it batched for other heaps to their owners — owners
//! that the same pass may already have visited. Found under
//! ThreadSanitizer (`tls_teardown.rs` saw one block still pending after
//! `trim()` when its thread-local destructors ran on the shared heap); here
//! the same order is made on purpose: a dead thread's heap (abandoned,
//! visited first) whose block sits in a live, idle thread's batch (visited
//! after).

use std::sync::mpsc;
use std::sync::Mutex;

#[global_allocator]
static GLOBAL: hakmem_std::HakMem = hakmem_std::HakMem::new();

/// A block handed from the thread that made it to the one that frees it.
struct Sent(*mut u8);
// SAFETY: the block is owned by exactly one thread at a time.
unsafe impl Send for Sent {}

static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn trim_collects_frees_batched_for_heaps_it_visited_before() {
    let _g = SERIAL.lock().unwrap();
    let layout = std::alloc::Layout::from_size_align(48, 8).unwrap();
    for round in 0..4 {
        // The owner: allocates a block, hands it out, and exits while it is
        // held (its heap is abandoned). Created first, so its heap's slot
        // comes before the freer's in the registry.
        let (exit, wait_exit) = mpsc::channel::<()>();
        let (sent, block) = mpsc::channel::<Sent>();
        let owner = std::thread::spawn(move || {
            // SAFETY: a non-zero layout.
            let p = unsafe { std::alloc::alloc(layout) };
            assert!(!p.is_null());
            sent.send(Sent(p)).unwrap();
            wait_exit.recv().unwrap();
        });
        let made = block.recv().unwrap();
        // The freer: a live thread with a heap of its own, which frees the
        // dead thread's block (batched in its heap, counted pending at
        // once) and then waits, idle, while the main thread trims.
        let (give, take) = mpsc::channel::<Sent>();
        let (done, freed) = mpsc::channel::<()>();
        let (go, wait) = mpsc::channel::<()>();
        let freer = std::thread::spawn(move || {
            let own: Vec<u64> = (0..100).collect();
            let p = take.recv().unwrap();
            // SAFETY: the block is live and ours now; freed once.
            unsafe { std::alloc::dealloc(p.0, layout) };
            done.send(()).unwrap();
            wait.recv().unwrap();
            drop(own);
        });
        exit.send(()).unwrap();
        owner.join().unwrap();
        give.send(made).unwrap();
        freed.recv().unwrap();
        hakmem_std::trim();
        let s = hakmem_std::stats();
        go.send(()).unwrap();
        freer.join().unwrap();
        assert_eq!(
            s.process.pending_remote, 0,
            "round {round}: pending after trim()\n{s}"
        );
    }
}
