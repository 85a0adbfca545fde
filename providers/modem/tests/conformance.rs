//! The modem provider, driving a simulated modem, passes the provider conformance kit.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tapir_core::{CallLegId, Error};
use tapir_modem::{CallerId, FarEnd, ModemProvider, Network, RemoteCall, RingIn, SimModem};
use tapir_provider::Provider;
use tapir_provider::conformance::{Harness, run};

const ANSWERS: &str = "5551234";

#[derive(Default)]
struct ModemHarness {
    network: Mutex<Option<Network>>,
    callers: Mutex<Vec<RemoteCall>>,
}

#[async_trait]
impl Harness for ModemHarness {
    async fn provider(&self) -> Arc<dyn Provider> {
        let network = Network::new();
        network.far_end(ANSWERS, FarEnd::voice_after_rings(1));
        let (stream, _modem) = SimModem::builder().attach(&network, "5550100").unwrap();
        *self.network.lock().unwrap() = Some(network);
        self.callers.lock().unwrap().clear();
        Arc::new(ModemProvider::over(stream).number("5550100").build())
    }

    fn answering_number(&self) -> String {
        ANSWERS.into()
    }

    async fn ring_in(&self) -> Result<(), Error> {
        let network = self.network.lock().unwrap().clone().unwrap();
        let call = network
            .ring_in("5550100", RingIn::modem(CallerId::number("5559999")))
            .map_err(|e| Error::OperationFailed {
                reason: e.to_string(),
            })?;
        self.callers.lock().unwrap().push(call);
        // The provider reports the call when it reads RING.
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    }

    async fn far_end_hangs_up(&self, _leg: CallLegId) {
        // One call at a time: whichever far end there is hangs up.
        let network = self.network.lock().unwrap().clone().unwrap();
        network.hang_up_far_end(ANSWERS);
        for c in self.callers.lock().unwrap().iter() {
            c.hang_up();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_modem_provider_conforms() {
    let failures = run(&ModemHarness::default()).await;
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The features walk: through the engine, on the paused clock, every operation a modem call lists is
/// one the modem carries out, and every one it does not list is one it refuses (`WALK_SEEDS=200`
/// walks more seeds).
#[tokio::test(start_paused = true)]
async fn every_listed_operation_is_carried_out_and_every_unlisted_one_refused() {
    let mut total = tapir::conformance::WalkReport::default();
    let seeds: u64 = std::env::var("WALK_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    for seed in 1..=seeds {
        let options = tapir::conformance::WalkOptions {
            steps: 120,
            max_calls: 2,
            ..tapir::conformance::WalkOptions::seeded(seed)
        };
        total.merge(tapir::conformance::walk(&ModemHarness::default(), options).await);
    }
    println!("{total}");
    assert!(total.failures.is_empty(), "{total}");
}
