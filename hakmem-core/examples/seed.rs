//! The seed scenario on the core, over the simulated page source: allocate
//! N × 16 B, free them all (in allocation order, in reverse, in random
//! order), and print what was mapped while the data was live and after.
//!
//! `cargo run --release -p hakmem-core --example seed [N]`

use hakmem_core::{sim::SimPages, Config, Heap};

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let cfg = Config::DEFAULT;
    println!(
        "hakmem-core seed scenario: {n} x 16 B on SimPages ({} KiB SuperSlabs, retain {})",
        cfg.geometry().unwrap().superslab_size() / 1024,
        cfg.retain
    );
    println!(
        "{:<8} {:>10} {:>12} {:>9} {:>14} {:>10} {:>10}",
        "order", "data MiB", "mapped MiB", "overhead", "after free MiB", "released", "retained"
    );
    for order in ["forward", "reverse", "random"] {
        let pages = SimPages::new();
        let mut heap = Heap::new(&pages, cfg).expect("valid config");
        let mut blocks: Vec<*mut u8> = (0..n)
            .map(|i| {
                let p = heap.alloc(16, 8);
                assert!(!p.is_null(), "out of memory");
                // SAFETY: a fresh 16-byte block.
                unsafe { p.cast::<u64>().write(i as u64) };
                p
            })
            .collect();
        let live = heap.stats();
        match order {
            "reverse" => blocks.reverse(),
            "random" => {
                let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
                for i in (1..blocks.len()).rev() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    blocks.swap(i, (x % (i as u64 + 1)) as usize);
                }
            }
            _ => {}
        }
        for p in blocks {
            // SAFETY: each block is live and freed once.
            unsafe { heap.dealloc(p) }.expect("valid free");
        }
        let after = heap.stats();
        let data = n * 16;
        println!(
            "{:<8} {:>10.2} {:>12.2} {:>8.1}% {:>14.2} {:>10} {:>10}",
            order,
            mib(data),
            mib(live.mapped_bytes),
            (live.mapped_bytes as f64 / data as f64 - 1.0) * 100.0,
            mib(pages.mapped_bytes()),
            after.superslabs_released,
            after.superslabs_retained,
        );
        if order == "random" {
            println!("\nstats after free-all (random order):\n{after}");
            heap.trim();
            println!(
                "after trim(): {} bytes mapped, {} regions",
                pages.mapped_bytes(),
                pages.live_regions()
            );
        }
    }
}
