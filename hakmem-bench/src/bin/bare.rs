//! The bare-metal workloads on one allocator: `bare WORKLOAD ALLOCATOR
//! SCALE` (see `hakmem_bench::bare`).
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: {} WORKLOAD ALLOCATOR SCALE", args[0]);
        std::process::exit(2);
    }
    let scale: f64 = args[3].parse().unwrap_or(1.0);
    if !hakmem_bench::bare::run(&args[1], &args[2], scale) {
        eprintln!("unknown bare workload {}", args[1]);
        std::process::exit(2);
    }
}
