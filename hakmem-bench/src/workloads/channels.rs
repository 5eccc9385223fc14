//! Channel batches across threads: T producer/consumer pairs; each producer
//! sends batches of 1000 boxed 16..512 B buffers to its consumer, which
//! reads and drops them (blocks allocated on one thread freed on another).

use std::sync::mpsc::sync_channel;
use std::time::Instant;

use crate::out::{self, Better};
use crate::rng::Rng;

/// One run per thread count: million blocks per second over all pairs.
pub fn run(scale: f64, threads: &[usize]) {
    let mut check = 0u64;
    for &t in threads {
        let per = super::scaled(2e6, scale) / t;
        let batches = per.div_ceil(1000);
        let start = Instant::now();
        let handles: Vec<_> = (0..t)
            .map(|p| {
                let (tx, rx) = sync_channel::<Vec<Box<[u8]>>>(16);
                let consumer = std::thread::spawn(move || {
                    let mut c = 0u64;
                    for batch in rx {
                        for b in batch {
                            c += u64::from(b[0]) + b.len() as u64;
                        }
                    }
                    c
                });
                let producer = std::thread::spawn(move || {
                    let mut r = Rng(p as u64 + 1);
                    for k in 0..batches {
                        let batch = (0..1000)
                            .map(|i| vec![(k + i) as u8; r.range(16, 512)].into_boxed_slice())
                            .collect();
                        if tx.send(batch).is_err() {
                            break;
                        }
                    }
                });
                (producer, consumer)
            })
            .collect();
        for (producer, consumer) in handles {
            producer.join().expect("producer");
            check += consumer.join().expect("consumer");
        }
        let blocks = (batches * 1000 * t) as f64;
        out::metric(
            &format!("t{t}"),
            blocks / start.elapsed().as_secs_f64() / 1e6,
            "Mblocks/s",
            Better::Higher,
        );
    }
    out::check(check);
}
