//! One scenario's run: a started provider, its checker, and what the scenario found.

use std::sync::Arc;
use std::time::Duration;

use tapir_core::caps::LineCaps;
use tapir_core::dial::DialString;
use tapir_core::gate::{AddressOperation, CallOperation, FeatureSet};
use tapir_core::media::MediaModes;
use tapir_core::params::{MakeCall, Origin, RequestId};
use tapir_core::state::{CallState, CallStateKind};
use tapir_core::{AddressId, CallLegId, Error, LineId, ProviderId};

use super::checker::Checker;
use super::finding::{Finding, Problem, Scenario};
use super::harness::Harness;
use crate::{EventSink, Provider};

/// How long (of the clock the provider runs on) the kit waits for a call to get somewhere.
const PATIENCE: Duration = Duration::from_secs(120);
/// How often it looks while it waits.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// A started provider, the checker it reports to, and the findings so far.
pub(super) struct Case {
    pub(super) provider: Arc<dyn Provider>,
    pub(super) checker: Arc<Checker>,
    pub(super) caps: Vec<LineCaps>,
    scenario: Scenario,
    findings: Vec<Finding>,
}

impl Case {
    /// Starts a fresh provider from `harness` for `scenario`.
    pub(super) async fn start(harness: &dyn Harness, scenario: Scenario) -> Result<Self, Finding> {
        let provider = harness.provider().await;
        let checker = Arc::new(Checker::default());
        match provider
            .start(EventSink::new(ProviderId(0), checker.clone()))
            .await
        {
            Ok(caps) => Ok(Self {
                provider,
                checker,
                caps,
                scenario,
                findings: Vec::new(),
            }),
            Err(e) => Err(Finding {
                scenario,
                problem: Problem::StartFailed(e),
            }),
        }
    }

    pub(super) fn fail(&mut self, problem: Problem) {
        self.findings.push(Finding {
            scenario: self.scenario,
            problem,
        });
    }

    /// Stops the provider and returns what the scenario found, the event checker's findings last.
    pub(super) async fn finish(mut self) -> Vec<Finding> {
        self.provider.stop().await;
        let flaws = self.checker.with(|s| std::mem::take(&mut s.flaws));
        for flaw in flaws {
            self.fail(Problem::Events(flaw));
        }
        self.findings
    }

    /// The call operations line 0's first address advertises.
    pub(super) fn call_ops(&self) -> FeatureSet {
        self.caps[0].addresses[0].call_features
    }

    pub(super) fn has(&self, op: CallOperation) -> bool {
        self.call_ops().contains(op)
    }

    /// Whether line 0's first address makes calls.
    pub(super) fn makes_calls(&self) -> bool {
        self.caps[0].addresses[0]
            .address_features
            .contains(AddressOperation::MakeCall)
    }

    /// The directory number of `line`'s first address.
    pub(super) fn address_of(&self, line: usize) -> String {
        self.caps[line].addresses[0].address.clone()
    }

    pub(super) fn last_line(&self) -> LineId {
        LineId(self.caps.len() as u32 - 1)
    }

    pub(super) fn origin(&self, line: LineId, request: u64) -> Origin {
        Origin {
            request: RequestId(request),
            line,
            address: AddressId(0),
        }
    }

    /// Whether `r` succeeded; a finding if not.
    pub(super) fn expect(&mut self, operation: &'static str, r: Result<(), Error>) -> bool {
        match r {
            Ok(()) => true,
            Err(error) => {
                self.fail(Problem::Failed { operation, error });
                false
            }
        }
    }

    /// Whether `leg` is in `expected` now; a finding if not.
    pub(super) fn expect_state(
        &mut self,
        leg: CallLegId,
        expected: CallStateKind,
        when: &'static str,
    ) -> bool {
        let got = self.checker.state(leg).map(|s| s.kind());
        if got == Some(expected) {
            true
        } else {
            self.fail(Problem::WrongState {
                leg,
                when,
                got,
                expected,
            });
            false
        }
    }

    /// Waits (up to [`PATIENCE`] of the clock the provider runs on) for `leg` to reach `expected`.
    pub(super) async fn wait_for(
        &mut self,
        leg: CallLegId,
        expected: CallStateKind,
        what: &'static str,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let last: Option<CallState> = self.checker.state(leg);
            if last.map(|s| s.kind()) == Some(expected) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                self.fail(Problem::NeverReached {
                    leg,
                    what,
                    expected,
                    last,
                });
                return false;
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }

    /// Waits (up to ten seconds) for the provider to offer a call on `line`.
    pub(super) async fn offered_on(
        &mut self,
        line: LineId,
        what: &'static str,
    ) -> Option<CallLegId> {
        let deadline = tokio::time::Instant::now() + PATIENCE / 12;
        loop {
            if let Some(leg) = self.checker.newest_call_on(line) {
                return Some(leg);
            }
            if tokio::time::Instant::now() >= deadline {
                self.fail(Problem::NotOffered { what, line });
                return None;
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }

    pub(super) fn dial_string(&mut self, number: &str) -> Option<DialString> {
        match DialString::parse_destination(number) {
            Ok(d) => Some(d),
            Err(error) => {
                self.fail(Problem::BadNumber {
                    number: number.to_owned(),
                    error,
                });
                None
            }
        }
    }

    /// Makes a call from line 0 (to `to`, or with dial tone), checking it was reported with the
    /// request's ID before `make_call` returned.
    pub(super) async fn make_call(&mut self, to: Option<&str>) -> Option<CallLegId> {
        let request = RequestId(77);
        let destination = match to {
            Some(number) => Some(self.dial_string(number)?),
            None => None,
        };
        let media_mode = if self.caps[0]
            .media_modes
            .contains(MediaModes::INTERACTIVE_VOICE)
        {
            MediaModes::INTERACTIVE_VOICE
        } else {
            MediaModes::DATA_MODEM
        };
        let r = self
            .provider
            .make_call(MakeCall {
                request,
                line: LineId(0),
                address: AddressId(0),
                destination,
                media_mode,
            })
            .await;
        match r {
            Ok(leg) => {
                if !self.checker.reported_with(request).contains(&leg) {
                    self.fail(Problem::NotReportedWithRequest {
                        what: "the call make_call returned",
                        leg,
                    });
                }
                Some(leg)
            }
            Err(error) => {
                self.fail(Problem::Failed {
                    operation: "make call",
                    error,
                });
                None
            }
        }
    }

    /// A call from line 0 to the harness's answering number, connected.
    pub(super) async fn connected_call(&mut self, h: &dyn Harness) -> Option<CallLegId> {
        let leg = self.make_call(Some(&h.answering_number())).await?;
        self.wait_for(leg, CallStateKind::Connected, "outgoing call")
            .await
            .then_some(leg)
    }

    /// Rings the last line from outside through the harness.
    pub(super) async fn ring_in(&mut self, h: &dyn Harness, what: &'static str) -> bool {
        match h.ring_in().await {
            Ok(()) => true,
            Err(error) => {
                self.fail(Problem::Harness { what, error });
                false
            }
        }
    }
}
