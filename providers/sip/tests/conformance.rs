//! The SIP provider passes the provider conformance kit, against phones on loopback: each line's
//! device is a test phone at a fixed contact, and the trunk is one too (it answers, and it calls in).
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::phone::{Answering, Phone, Seen};
use common::*;
use tapir_core::{CallLegId, Error};
use tapir_provider::Provider;
use tapir_provider::conformance::{Harness, run};
use tapir_sip::{SipLine, SipProvider, SipSettings};

struct SipHarness {
    alice: Phone,
    bob: Phone,
    trunk: Phone,
    tapir: Mutex<u16>,
}

impl SipHarness {
    async fn new() -> Self {
        log();
        Self {
            alice: Phone::new(free_port(), Answering::WhenAsked).await,
            bob: Phone::new(free_port(), Answering::WhenAsked).await,
            trunk: Phone::new(free_port(), Answering::Auto).await,
            tapir: Mutex::new(0),
        }
    }
}

#[async_trait]
impl Harness for SipHarness {
    async fn provider(&self) -> Arc<dyn Provider> {
        // A new port each time: the kit starts a fresh provider for every check.
        let port = free_port();
        *self.tapir.lock().unwrap() = port;
        let settings = SipSettings::new(addr(port))
            .line(
                SipLine::fixed(
                    "2001",
                    "Alice",
                    format!("sip:127.0.0.1:{}", self.alice.port()),
                )
                .auto_answer(),
            )
            .line(
                SipLine::fixed("2002", "Bob", format!("sip:127.0.0.1:{}", self.bob.port()))
                    .auto_answer(),
            )
            .trunk(format!("sip:127.0.0.1:{}", self.trunk.port()))
            .park_orbits(["701", "702"]);
        Arc::new(SipProvider::new(settings).unwrap())
    }

    fn answering_number(&self) -> String {
        "5551234".into()
    }

    async fn ring_in(&self) -> Result<(), Error> {
        let tapir = *self.tapir.lock().unwrap();
        let phones = [self.alice.clone(), self.bob.clone()];
        let before: Vec<usize> = phones.iter().map(|p| p.seen().len()).collect();
        self.trunk.dial(addr(tapir), "5550100", "", "2002").await;
        // Offered once a phone rings (Bob's, or where his line forwards): tapir reports the call
        // before it rings the phone.
        until(10, "a phone to ring", move || {
            phones.iter().zip(&before).any(|(p, n)| {
                p.seen()[*n..]
                    .iter()
                    .any(|s| matches!(s, Seen::Incoming(..)))
            })
        })
        .await;
        Ok(())
    }

    async fn far_end_hangs_up(&self, _leg: CallLegId) {
        // The kit hangs up calls from outside, whose far end is the trunk.
        // It hangs up with a BYE: wait for the 200 to have reached it.
        if let Some(call) = self.trunk.live_calls().last().copied() {
            self.trunk
                .wait(5, "the call to be established", |s| {
                    (*s == Seen::Established(call)).then_some(())
                })
                .await;
            self.trunk.hang_up(call).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sip_provider_conforms() {
    let harness = SipHarness::new().await;
    let failures = run(&harness).await;
    assert!(failures.is_empty(), "{failures:#?}");
    // The kit did place, answer, hold and end calls on these phones (it is not vacuous).
    let (alice, bob, trunk) = (
        harness.alice.seen(),
        harness.bob.seen(),
        harness.trunk.seen(),
    );
    assert!(
        alice
            .iter()
            .any(|s| matches!(s, Seen::Reoffer(_, d) if d == "inactive")),
        "held"
    );
    assert!(
        bob.iter().any(|s| matches!(s, Seen::Digit(_, '#'))),
        "digits reached Bob"
    );
    assert!(
        trunk
            .iter()
            .filter(|s| matches!(s, Seen::Established(_)))
            .count()
            >= 2
    );
}

/// The features walk against phones on loopback, in real time: through the engine, every operation a
/// SIP call lists is one the provider carries out, and every one it does not list is one it refuses.
/// The far end acts without waiting on itself (a call in that finds every line busy is just refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listed_operation_is_carried_out_and_every_unlisted_one_refused() {
    struct Walking(SipHarness);
    #[async_trait]
    impl Harness for Walking {
        async fn provider(&self) -> Arc<dyn Provider> {
            self.0.provider().await
        }
        fn answering_number(&self) -> String {
            self.0.answering_number()
        }
        async fn ring_in(&self) -> Result<(), Error> {
            let tapir = *self.0.tapir.lock().unwrap();
            self.0.trunk.dial(addr(tapir), "5550100", "", "2002").await;
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            Ok(())
        }
        async fn far_end_hangs_up(&self, _leg: CallLegId) {
            if let Some(call) = self.0.trunk.live_calls().last().copied() {
                self.0.trunk.hang_up(call).await;
            }
        }
    }
    let harness = Walking(SipHarness::new().await);
    let mut total = tapir::conformance::WalkReport::default();
    let seeds: Vec<u64> = match std::env::var("WALK_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => vec![1, 2],
    };
    for seed in seeds {
        let options = tapir::conformance::WalkOptions {
            steps: 60,
            settle: std::time::Duration::from_millis(600),
            max_calls: 4,
            ..tapir::conformance::WalkOptions::seeded(seed)
        };
        total.merge(tapir::conformance::walk(&harness, options).await);
    }
    println!("{total}");
    assert!(total.failures.is_empty(), "{total}");
}
