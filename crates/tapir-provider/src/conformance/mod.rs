//! A conformance kit every provider runs against itself.
//!
//! Give [`run`] a [`Harness`] — a way to create your provider and to make its far end do things — and it
//! checks, against the provider alone (no engine):
//! - the capabilities it describes are well formed;
//! - every call operation and address operation it does **not** advertise returns
//!   `OperationUnavailable` and reports nothing;
//! - the basic operations it advertises work and complete on effect: make call (the new call is reported
//!   with the request's ID before `make_call` returns, and reaches connected), dial, accept, answer,
//!   reject, hold, unhold, drop (the call is idle when `drop_call` returns);
//! - calls from outside are reported as offered calls without a request ID, and a far-end hang-up
//!   disconnects a connected call;
//! - every state sequence it reports is one `tapir_core`'s transition table allows, nothing is reported
//!   for a call before its new-call report, and nothing after it is idle;
//! - with two or more lines, each advertised supplementary operation works and leaves its calls in the
//!   states the TAPI model gives: blind transfer, redirect, consultation transfer (cancel and complete),
//!   conference (set up, add, remove, drop), park and unpark, pickup, forward, swap hold, secure, and
//!   digits crossing to a monitoring party.
//!
//! Call completion needs a party the harness can make busy, so the kit only checks that an unadvertised
//! one is refused.
//!
//! The other half of the kit needs the engine, since a call's features are the engine's gate reading the
//! provider's capabilities and the calls it can see: `tapir::conformance::walk` (the `tapir` crate's
//! `conformance` feature) takes the same [`Harness`] and checks, by a seeded random walk, that every
//! operation a call lists is carried out and every one it does not list is refused ([`invoke`] is how
//! it asks the provider directly).
//!
//! Each check is a [`Scenario`] on a fresh provider; what one finds is a [`Finding`]: the scenario and
//! a typed [`Problem`] (an operation that failed with the provider's error, a call in the wrong state,
//! an event the transition table does not allow, …), whose `Display` is the sentence to read.
//!
//! A provider's test implements [`Harness`] and asserts that [`run`] found nothing, e.g.
//! `assert!(run(&MyHarness::default()).await.is_empty())` inside a `#[tokio::test(start_paused = true)]`;
//! [`run_scenario`] runs one scenario while a provider author works on it.
//! The simulated PBX's `conformance` test (`providers/simswitch/tests/conformance.rs`) is a complete
//! example.

mod case;
mod checker;
mod finding;
mod harness;
mod invoke;
mod scenarios;

pub use self::checker::ReportModel;
pub use self::finding::{CapsFlaw, EventFlaw, Finding, Problem, Scenario};
pub use self::harness::Harness;
pub use self::invoke::{Arguments, invoke};

use self::case::Case;
use self::scenarios::{Row, SCENARIOS};

/// Runs every scenario, each on a fresh provider, and returns what they found (empty: the provider
/// conforms).
pub async fn run(harness: &dyn Harness) -> Vec<Finding> {
    let mut findings = Vec::new();
    for row in SCENARIOS {
        findings.extend(run_row(harness, row).await);
    }
    findings
}

/// Runs one scenario on a fresh provider and returns what it found. A scenario whose needs the
/// provider does not advertise (two lines, an operation) finds nothing.
pub async fn run_scenario(harness: &dyn Harness, scenario: Scenario) -> Vec<Finding> {
    match SCENARIOS.iter().find(|row| row.scenario == scenario) {
        Some(row) => run_row(harness, row).await,
        None => Vec::new(),
    }
}

async fn run_row(harness: &dyn Harness, row: &Row) -> Vec<Finding> {
    let mut case = match Case::start(harness, row.scenario).await {
        Ok(case) => case,
        Err(finding) => return vec![finding],
    };
    if row.applies(&case) {
        row.steps(&mut case, harness).await;
    }
    case.finish().await
}
