//! Allocation and free during and after thread-local destruction: the path
//! forced is the exit guard having already handed the thread's heap back,
//! so the shared heap (and remote frees) must serve these calls.

use std::cell::RefCell;
use std::sync::mpsc;

#[global_allocator]
static GLOBAL: hakmem_std::HakMem = hakmem_std::HakMem::new();

/// Allocates and frees in its destructor, and sends a fresh allocation out.
struct Late {
    data: Vec<u64>,
    out: Option<mpsc::Sender<Vec<u64>>>,
}

impl Drop for Late {
    fn drop(&mut self) {
        // Content allocated earlier is intact.
        assert!(self.data.iter().enumerate().all(|(i, &v)| v == i as u64));
        // Allocate, use and free during destruction.
        let mut v: Vec<String> = (0..1000).map(|i| format!("late {i}")).collect();
        v.retain(|s| s.ends_with('7'));
        assert_eq!(v.len(), 100);
        drop(v);
        // Hand a block allocated now to another thread, which frees it.
        let fresh: Vec<u64> = (0..4096).collect();
        if let Some(tx) = self.out.take() {
            tx.send(fresh).unwrap();
        }
    }
}

thread_local! {
    /// Registered before the thread's first allocation: its destructor runs
    /// after hakmem's exit guard (destructors run in reverse order of
    /// registration), when the thread's heap is gone.
    static AFTER: RefCell<Option<Late>> = const { RefCell::new(None) };
    /// Registered after: its destructor runs while the heap is still there.
    static BEFORE: RefCell<Option<Late>> = const { RefCell::new(None) };
}

#[test]
fn alloc_and_free_in_thread_local_destructors() {
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for _ in 0..8 {
        let tx = tx.clone();
        handles.push(std::thread::spawn(move || {
            // Register AFTER's destructor before anything allocates here.
            AFTER.with(|_| {});
            let warm: Vec<u64> = (0..100).collect();
            AFTER.with(|l| {
                *l.borrow_mut() = Some(Late {
                    data: (0..10_000).collect(),
                    out: Some(tx.clone()),
                });
            });
            BEFORE.with(|l| {
                *l.borrow_mut() = Some(Late {
                    data: (0..10_000).collect(),
                    out: Some(tx),
                });
            });
            drop(warm);
        }));
    }
    drop(tx);
    for h in handles {
        h.join().unwrap();
    }
    let mut got = 0;
    for v in rx {
        assert_eq!(v.len(), 4096);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
        got += 1;
    }
    assert_eq!(got, 16);
    // Everything those threads allocated is accounted for and freed.
    hakmem_std::trim();
    let s = hakmem_std::stats();
    assert_eq!(s.process.pending_remote, 0, "{s}");
}
