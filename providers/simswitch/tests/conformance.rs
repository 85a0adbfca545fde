//! The simulated PBX passes the provider conformance kit.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tapir_core::gate::CallOperation;
use tapir_core::state::CallStateKind;
use tapir_core::{CallLegId, Error};
use tapir_provider::Provider;
use tapir_provider::conformance::{Harness, Problem, Scenario, run};
use tapir_simswitch::{CallerId, FarEnd, RemoteCall, RingIn, SimSwitch};

#[derive(Default)]
struct SimHarness {
    switch: Mutex<Option<SimSwitch>>,
    callers: Mutex<Vec<RemoteCall>>,
}

impl SimHarness {
    fn switch(&self) -> SimSwitch {
        self.switch
            .lock()
            .unwrap()
            .clone()
            .expect("a switch was created")
    }
}

#[async_trait]
impl Harness for SimHarness {
    async fn provider(&self) -> Arc<dyn Provider> {
        let switch = SimSwitch::builder()
            .extension("100", "Alice")
            .extension("200", "Bob")
            .far_end("5551234", FarEnd::answers_after_rings(1))
            .build()
            .unwrap();
        *self.switch.lock().unwrap() = Some(switch.clone());
        self.callers.lock().unwrap().clear();
        Arc::new(switch)
    }

    fn answering_number(&self) -> String {
        "5551234".into()
    }

    async fn ring_in(&self) -> Result<(), Error> {
        let call = self
            .switch()
            .ring_in(RingIn::new("200", CallerId::number("5550100")))?;
        self.callers.lock().unwrap().push(call);
        Ok(())
    }

    async fn far_end_hangs_up(&self, leg: CallLegId) {
        let callers = self.callers.lock().unwrap().clone();
        if let Some(c) = callers.iter().find(|c| c.leg() == Some(leg)) {
            c.hang_up();
        }
    }
}

/// The features walk: through the engine, on the paused clock, every operation a call lists is one the
/// switch carries out and every one it does not list is one the switch refuses. Several seeds, each
/// walk the same every run (`WALK_SEEDS=300` walks more of them).
#[tokio::test(start_paused = true)]
async fn every_listed_operation_is_carried_out_and_every_unlisted_one_refused() {
    let seeds: u64 = std::env::var("WALK_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let mut total = tapir::conformance::WalkReport::default();
    for seed in 1..=seeds {
        let options = tapir::conformance::WalkOptions::seeded(seed);
        total.merge(tapir::conformance::walk(&SimHarness::default(), options).await);
    }
    println!("{total}");
    assert!(total.failures.is_empty(), "{total}");
}

#[tokio::test(start_paused = true)]
async fn the_simulated_pbx_conforms() {
    let failures = run(&SimHarness::default()).await;
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The simulated PBX with two lies: it advertises hold (and the rest of the switch's operations) but
/// leaves them at the trait's default, "never"; and it secures calls without advertising it.
struct Liar(SimSwitch);

#[async_trait]
impl Provider for Liar {
    fn name(&self) -> &str {
        "liar"
    }
    async fn start(
        &self,
        sink: tapir_provider::EventSink,
    ) -> Result<Vec<tapir_core::caps::LineCaps>, Error> {
        let mut caps = self.0.start(sink).await?;
        for address in caps.iter_mut().flat_map(|l| l.addresses.iter_mut()) {
            address.call_features = address.call_features.without(CallOperation::SecureCall);
        }
        Ok(caps)
    }
    async fn stop(&self) {
        self.0.stop().await
    }
    async fn make_call(&self, r: tapir_core::params::MakeCall) -> Result<CallLegId, Error> {
        self.0.make_call(r).await
    }
    async fn drop_call(&self, leg: CallLegId) -> Result<(), Error> {
        self.0.drop_call(leg).await
    }
    async fn answer(&self, leg: CallLegId) -> Result<(), Error> {
        self.0.answer(leg).await
    }
    async fn secure_call(&self, leg: CallLegId) -> Result<(), Error> {
        self.0.secure_call(leg).await
    }
}

#[derive(Default)]
struct LiarHarness(SimHarness);

#[async_trait]
impl Harness for LiarHarness {
    async fn provider(&self) -> Arc<dyn Provider> {
        self.0.provider().await;
        Arc::new(Liar(self.0.switch()))
    }
    fn answering_number(&self) -> String {
        self.0.answering_number()
    }
    async fn ring_in(&self) -> Result<(), Error> {
        self.0.ring_in().await
    }
    async fn far_end_hangs_up(&self, leg: CallLegId) {
        self.0.far_end_hangs_up(leg).await
    }
}

/// The kit is not a rubber stamp: a provider that advertises hold but never holds, and one that
/// secures calls it does not say it secures, are caught.
#[tokio::test(start_paused = true)]
async fn the_kit_catches_a_provider_that_lies() {
    let failures = run(&LiarHarness::default()).await;
    let refused = |scenario: Scenario, operation: &str| {
        failures.iter().any(|f| {
            f.scenario == scenario
                && matches!(&f.problem, Problem::Failed { operation: o, error: Error::OperationUnavailable { .. } } if *o == operation)
        })
    };
    for (scenario, operation) in [
        (Scenario::Hold, "hold"),
        (Scenario::IncomingCall, "accept"),
        (Scenario::BlindTransfer, "blind transfer"),
        (Scenario::ConsultationTransfer, "setup transfer"),
        (Scenario::Conference, "setup conference"),
        (Scenario::Park, "park"),
        (Scenario::Pickup, "pickup"),
        (Scenario::Forward, "forward"),
    ] {
        assert!(
            refused(scenario, operation),
            "{operation} in {scenario:?}: {failures:#?}"
        );
    }
    assert!(
        failures
            .iter()
            .any(|f| f.scenario == Scenario::Digits && matches!(f.problem, Problem::Digits { .. })),
        "{failures:#?}"
    );
    assert!(
        failures.iter().any(|f| matches!(
            &f.problem,
            Problem::UnadvertisedAnswered { operation, answer: Err(Error::InvalidCallHandle) }
                if *operation == CallOperation::SecureCall.name()
        )),
        "{failures:#?}"
    );
    // Each finding reads as the scenario and what went wrong.
    assert!(
        failures
            .iter()
            .any(|f| f.to_string().starts_with("hold: hold failed: ")),
        "{failures:#?}"
    );
}

/// The walk is not a rubber stamp either: through the engine, the liar's listed hold is refused and
/// its unlisted secure is carried out, and the walk says so with the operation, state and error.
#[tokio::test(start_paused = true)]
async fn the_walk_catches_a_provider_that_lies() {
    use tapir::conformance::{WalkOptions, WalkProblem, WalkReport, walk};
    let mut total = WalkReport::default();
    for seed in 1..=4 {
        total.merge(walk(&LiarHarness::default(), WalkOptions::seeded(seed)).await);
    }
    let found =
        |wanted: &dyn Fn(&WalkProblem) -> bool| total.failures.iter().any(|f| wanted(&f.problem));
    assert!(
        found(&|p| matches!(
            p,
            WalkProblem::ListedRefused {
                operation: CallOperation::Hold,
                state: CallStateKind::Connected,
                error: Error::OperationUnavailable { .. },
                ..
            }
        )),
        "{total}"
    );
    assert!(
        found(&|p| matches!(
            p,
            WalkProblem::UnlistedCarriedOut {
                operation: CallOperation::SecureCall,
                ..
            }
        )),
        "{total}"
    );
    // Each finding reads as where the walk was and what went wrong.
    assert!(
        total.failures.iter().any(|f| f.step.is_some()
            && f.to_string().contains(" step ")
            && f.to_string().contains(": hold listed on connected")),
        "{total}"
    );
}
