//! `tapir-soak`: the seeded soak for as long as asked, on the paused clock.
//!
//! `cargo run --release -p tapir-tests --bin tapir-soak -- [STEPS] [FIRST_SEED] [SEEDS]`
//! (default 1,000,000 steps from seed 1, in seeds of 10,000 steps). Prints what it did and exits 1
//! at the first broken contract, naming the seed and the step that reproduce it.
#![allow(missing_docs)]

use tapir_tests::soak::{SoakOptions, SoakReport, soak};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn main() {
    let steps = arg(1, 1_000_000);
    let first = arg(2, 1);
    let per_seed = 10_000;
    let seeds = steps.div_ceil(per_seed).max(1);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tapir-soak: no runtime: {e}");
            std::process::exit(2);
        }
    };
    let started = std::time::Instant::now();
    let mut total = SoakReport::default();
    for seed in first..first + seeds {
        let options = SoakOptions::seeded(seed, per_seed as usize);
        match runtime.block_on(soak(options)) {
            Ok(report) => total.merge(&report),
            Err(violation) => {
                println!("{total}");
                eprintln!("tapir-soak: {violation}");
                std::process::exit(1);
            }
        }
    }
    println!("{total}");
    println!(
        "{} seeds from {first}, no contract broken, {:.1} s",
        seeds,
        started.elapsed().as_secs_f64()
    );
}
