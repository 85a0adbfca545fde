//! The seeded soak, bounded: every contract checked after every step of several seeds
//! (`tapir-soak` runs it as long as asked: `docs/reliability.md`).
#![allow(missing_docs)]

use tapir_tests::soak::{SoakOptions, SoakReport, soak};

#[tokio::test(start_paused = true)]
async fn applications_doing_everything_with_faults_on_break_no_contract() {
    let seeds: u64 = std::env::var("SOAK_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let mut total = SoakReport::default();
    for seed in 1..=seeds {
        match soak(SoakOptions::seeded(seed, 1_500)).await {
            Ok(report) => total.merge(&report),
            Err(violation) => panic!("{violation}"),
        }
    }
    println!("{total}");
    // Not a rubber stamp: the soak did carry operations out, refused unlisted ones, met faults.
    let done: u64 = total.ops.values().map(|t| t.0).sum();
    let unlisted: u64 = total.ops.values().map(|t| t.1).sum();
    assert!(done > 500 && unlisted > 1_000, "{total}");
    assert!(
        total.injected.panics > 0 && total.injected.hangs > 0,
        "{total}"
    );
    assert!(
        total.injected.nonsense > 0 && total.foreign > 500,
        "{total}"
    );
    assert!(total.outages > 0, "the provider never failed: {total}");
}

/// The same seed soaks the same way: a broken contract can be replayed from its seed.
#[tokio::test(start_paused = true)]
async fn the_same_seed_soaks_the_same_way() {
    for seed in [3, 4] {
        let a = soak(SoakOptions::seeded(seed, 1_000))
            .await
            .unwrap_or_else(|v| panic!("{v}"));
        let b = soak(SoakOptions::seeded(seed, 1_000))
            .await
            .unwrap_or_else(|v| panic!("{v}"));
        assert_eq!(
            (a.events, a.foreign, &a.ops, a.injected, a.outages),
            (b.events, b.foreign, &b.ops, b.injected, b.outages),
            "seed {seed}"
        );
    }
}
