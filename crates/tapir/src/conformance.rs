//! The features walk: the half of the conformance kit that needs the engine.
//!
//! [`tapir_provider::conformance::run`] checks a provider alone. What an application reads as a call's
//! features, though, is computed by the engine's gate from the provider's capabilities and the calls it
//! can see, so "every operation a call lists is one its provider carries out" can only be checked with
//! the engine in front. [`walk`] does that for any provider that has a
//! [`Harness`]: one application owns every line, and a seeded
//! random walk, one step at a time, lets time pass, makes the far end act (a call rings in, a far end
//! hangs up), places calls, and picks a call and an operation:
//!
//! - an operation the call **lists** is carried out through the [`Session`], with arguments that are
//!   valid (a reachable number, the right partner call), and must not be refused for a reason the
//!   gate could have seen — the call's state, a capability, a limit — while the call is still in the
//!   state its features were read in;
//! - an operation it does **not** list is handed straight to the provider (the gate would stop it),
//!   which must refuse it.
//!
//! The same seed walks the same way on a provider that runs on the paused clock, so a failure is
//! reproduced by its seed and step. A provider author's test walks a few seeds, on the paused clock
//! where the provider allows it, and asserts that the [`WalkReport`] has no failures;
//! `providers/simswitch/tests/conformance.rs` is a complete example.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tapir_core::gate::{CallOperation, CallRole, FeatureSet};
use tapir_core::params::{CompletionMode, DigitMode, ParkMode, TransferMode};
use tapir_core::state::{CallState, CallStateKind};
use tapir_core::{AddressId, CallLegId, Error, LineId};
use tapir_provider::Provider;
use tapir_provider::conformance::{Arguments, Harness, invoke};

use crate::{CallHandle, Engine, EngineStats, LineHandle, OpenOptions, Session};

/// How long and where a walk goes.
#[derive(Clone, Copy, Debug)]
pub struct WalkOptions {
    /// The seed of every choice the walk makes.
    pub seed: u64,
    /// Steps to take.
    pub steps: usize,
    /// The longest time a step lets pass before it acts (a step lets none, a tenth of it, or all of
    /// it pass), so calls reach ringback, connected and the far end's hang-up.
    pub settle: Duration,
    /// At most this many calls are kept; with more, the walk hangs one up.
    pub max_calls: usize,
}

impl WalkOptions {
    /// 300 steps of up to ten seconds, at most six calls.
    pub fn seeded(seed: u64) -> Self {
        Self {
            seed,
            steps: 300,
            settle: Duration::from_secs(10),
            max_calls: 6,
        }
    }
}

/// What a walk did and found.
#[derive(Clone, Debug, Default)]
pub struct WalkReport {
    /// Steps taken.
    pub steps: usize,
    /// For each operation: how often it was listed and carried out, how often it was listed and
    /// refused by the world (a far end that cannot be reached), and how often it was not listed and
    /// the provider refused it.
    pub tried: BTreeMap<CallOperation, Tally>,
    /// The states the walk's calls were in when an operation was tried on them.
    pub states: BTreeMap<CallStateKind, usize>,
    /// Every disagreement between the features and the provider, with the step it happened at.
    pub failures: Vec<WalkFinding>,
}

/// Counts for one operation in a [`WalkReport`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Listed, and it worked.
    pub listed_done: usize,
    /// Listed, and it failed for a reason outside the gate's sight (e.g. the far end).
    pub listed_failed: usize,
    /// Not listed, and the provider refused it.
    pub unlisted_refused: usize,
}

/// What a walk found wrong: where (the seed, and the step unless it was found setting up or
/// finishing) and what.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("seed {seed}{}: {problem}", .step.map(|s| format!(" step {s}")).unwrap_or_default())]
pub struct WalkFinding {
    /// The walk's seed: the same seed walks the same way.
    pub seed: u64,
    /// The step, for what a step found.
    pub step: Option<usize>,
    /// What is wrong.
    pub problem: WalkProblem,
}

/// What is wrong, as found by a [`walk`].
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WalkProblem {
    /// The engine, the log-on or opening a line failed before the walk began.
    #[error("{what} failed: {error}")]
    Setup {
        /// Which of them.
        what: &'static str,
        /// Its error.
        error: Error,
    },
    /// A call listed an operation that was then refused for a reason the gate could have seen,
    /// while the call stayed in the state it was listed in.
    #[error("{operation} listed on {} ({role:?}, {leg}) but refused: {error}", .state.name())]
    ListedRefused {
        /// The operation.
        operation: CallOperation,
        /// The call's state.
        state: CallStateKind,
        /// The call's role.
        role: CallRole,
        /// The call.
        leg: CallLegId,
        /// The refusal.
        error: Error,
    },
    /// A call did not list an operation that the provider, asked directly, carried out.
    #[error("{operation} not listed on {} ({role:?}) but the provider carried it out", .state.name())]
    UnlistedCarriedOut {
        /// The operation.
        operation: CallOperation,
        /// The call's state.
        state: CallStateKind,
        /// The call's role.
        role: CallRole,
    },
    /// A call listed a two-call operation with no other call on its address to pair it with.
    #[error("{operation} listed on {} ({role:?}) with no call to pair it with", .state.name())]
    Unpaired {
        /// The operation.
        operation: CallOperation,
        /// The call's state.
        state: CallStateKind,
        /// The call's role.
        role: CallRole,
    },
    /// A number the harness or a line gave is not a dial string.
    #[error("{0:?} is not a dial string")]
    NotADialString(String),
    /// Calls were still there after the walk hung everything up.
    #[error("calls left after hanging up: {}", left_names(.0))]
    CallsLeft(Vec<(CallStateKind, CallRole)>),
    /// After log-off the engine still held calls, handles or requests.
    #[error("after log-off the engine still tracks {0:?}")]
    EngineNotEmpty(EngineStats),
}

fn left_names(left: &[(CallStateKind, CallRole)]) -> String {
    left.iter()
        .map(|(state, role)| format!("{} ({role:?})", state.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl WalkReport {
    /// Adds another walk's counts and failures to this one (to report several seeds as one).
    pub fn merge(&mut self, other: WalkReport) {
        self.steps += other.steps;
        for (op, t) in other.tried {
            let mine = self.tried.entry(op).or_default();
            mine.listed_done += t.listed_done;
            mine.listed_failed += t.listed_failed;
            mine.unlisted_refused += t.unlisted_refused;
        }
        for (state, n) in other.states {
            *self.states.entry(state).or_default() += n;
        }
        self.failures.extend(other.failures);
    }
}

impl fmt::Display for WalkReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} steps", self.steps)?;
        writeln!(
            f,
            "{:<26} {:>7} {:>7} {:>9}",
            "operation", "listed", "failed", "unlisted"
        )?;
        for (op, t) in &self.tried {
            writeln!(
                f,
                "{:<26} {:>7} {:>7} {:>9}",
                op.name(),
                t.listed_done,
                t.listed_failed,
                t.unlisted_refused
            )?;
        }
        let states: Vec<String> = self
            .states
            .iter()
            .map(|(s, n)| format!("{} {n}", s.name()))
            .collect();
        writeln!(f, "states: {}", states.join(", "))?;
        if self.failures.is_empty() {
            writeln!(f, "no listed operation refused, no unlisted one accepted")
        } else {
            writeln!(f, "{} failures:", self.failures.len())?;
            for x in &self.failures {
                writeln!(f, "  {x}")?;
            }
            Ok(())
        }
    }
}

/// The walk's choices, all drawn from its seed.
struct Rng(fastrand::Rng);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(fastrand::Rng::with_seed(seed))
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.usize(..n.max(1))
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

/// One of the walk's calls as the engine sees it.
#[derive(Clone)]
struct Seen {
    call: CallHandle,
    leg: CallLegId,
    line: LineId,
    address: AddressId,
    role: CallRole,
    state: CallState,
    features: FeatureSet,
}

impl Seen {
    fn kind(&self) -> CallStateKind {
        self.state.kind()
    }
    fn same_address(&self, other: &Seen) -> bool {
        self.call != other.call && self.line == other.line && self.address == other.address
    }
}

/// Whether refusing listed operation `op` with `e` is a feature that lied: the gate could have seen it
/// coming (the call's state, a capability, a limit of the call's own address). The rest is the world's
/// answer, which no feature can know in advance: a destination that is busy (`InUse`) or cannot be
/// reached, a far end that fails, and the switch's shared resources — its park orbits, taken by calls
/// of every line.
fn foreseeable(op: CallOperation, e: &Error) -> bool {
    match (op, e) {
        (CallOperation::Park, Error::ResourceUnavailable { .. }) => false,
        (
            _,
            Error::InvalidCallState { .. }
            | Error::OperationUnavailable { .. }
            | Error::ResourceUnavailable { .. }
            | Error::CallUnavailable
            | Error::ConferenceFull
            | Error::NoConference
            | Error::InvalidParameter { .. }
            | Error::InvalidCallHandle
            | Error::NotOwner,
        ) => true,
        _ => false,
    }
}

struct Walk<'h> {
    harness: &'h dyn Harness,
    provider: Arc<dyn Provider>,
    session: Session,
    /// Every line, opened as owner, with its provider-side ID and first address's number.
    lines: Vec<(LineHandle, LineId, String)>,
    rng: Rng,
    /// Orbits the walk parked calls in, not yet retrieved.
    parked: Vec<String>,
    options: WalkOptions,
    report: WalkReport,
    step: usize,
}

/// Walks `harness`'s provider behind an engine as [`WalkOptions`] says, and reports what it found.
pub async fn walk(harness: &dyn Harness, options: WalkOptions) -> WalkReport {
    let provider = harness.provider().await;
    let engine = match Engine::builder()
        .provider_arc(provider.clone())
        .build()
        .await
    {
        Ok(e) => e,
        Err(error) => return failed(options, "starting the engine", error),
    };
    let session = match engine.logon("conformance-walk").await {
        Ok(s) => s,
        Err(error) => return failed(options, "log-on", error),
    };
    let mut lines = Vec::new();
    for info in session.lines() {
        match session.open_line(info.id, OpenOptions::owner()).await {
            Ok(h) => {
                let number = info
                    .caps
                    .addresses
                    .first()
                    .map(|a| a.address.clone())
                    .unwrap_or_default();
                lines.push((h, info.id, number));
            }
            Err(error) => return failed(options, "opening a line", error),
        }
    }
    let mut w = Walk {
        harness,
        provider,
        session,
        lines,
        rng: Rng::new(options.seed),
        parked: Vec::new(),
        options,
        report: WalkReport::default(),
        step: 0,
    };
    for step in 0..options.steps {
        w.step = step;
        w.one_step().await;
    }
    w.report.steps = options.steps;
    let report = w.finish(&engine).await;
    engine.shutdown().await;
    report
}

fn failed(options: WalkOptions, what: &'static str, error: Error) -> WalkReport {
    WalkReport {
        failures: vec![WalkFinding {
            seed: options.seed,
            step: None,
            problem: WalkProblem::Setup { what, error },
        }],
        ..WalkReport::default()
    }
}

impl Walk<'_> {
    fn fail(&mut self, problem: WalkProblem) {
        self.report.failures.push(WalkFinding {
            seed: self.options.seed,
            step: Some(self.step),
            problem,
        });
    }

    /// The walk's calls now, idle ones released.
    fn calls(&mut self) -> Vec<Seen> {
        while self.session.try_next_event().is_some() {}
        let mut seen = Vec::new();
        for call in self.session.calls() {
            let Ok(status) = self.session.call_status(call) else {
                continue;
            };
            if status.state.is_idle() {
                let _ = self.session.deallocate(call);
                continue;
            }
            if let Ok(i) = self.session.inspect(call) {
                seen.push(Seen {
                    call,
                    leg: i.leg,
                    line: i.line,
                    address: i.address,
                    role: i.role,
                    state: status.state,
                    features: status.features,
                });
            }
        }
        seen
    }

    /// A number to call: another line's, the harness's answering one, or — unless `except` names a
    /// line — any line's, its own included (which is busy).
    fn number(&mut self, except: Option<LineId>) -> String {
        let answering = self.harness.answering_number();
        let mut numbers: Vec<String> = self
            .lines
            .iter()
            .filter(|(_, id, _)| Some(*id) != except)
            .map(|(_, _, n)| n.clone())
            .collect();
        numbers.push(answering.clone());
        self.rng.pick(&numbers).cloned().unwrap_or(answering)
    }

    async fn one_step(&mut self) {
        let pause = match self.rng.below(3) {
            0 => Duration::ZERO,
            1 => self.options.settle / 10,
            _ => self.options.settle,
        };
        tokio::time::sleep(pause).await;
        let calls = self.calls();
        if calls.len() >= self.options.max_calls {
            if let Some(c) = self.rng.pick(&calls).cloned() {
                let _ = self.session.drop_call(c.call).await;
            }
            return;
        }
        match self.rng.below(12) {
            0 => {
                let _ = self.harness.ring_in().await;
            }
            1 => {
                if let Some(c) = self.rng.pick(&calls) {
                    self.harness.far_end_hangs_up(c.leg).await;
                }
            }
            2 | 3 => {
                if let Some((line, _, _)) = self.rng.pick(&self.lines).cloned() {
                    let to = self.number(None);
                    let _ = self.session.make_call(line, Some(&to)).await;
                }
            }
            4 => self.address_operation(&calls).await,
            _ => {
                if let Some(c) = self.rng.pick(&calls).cloned() {
                    self.try_operation(&c, &calls).await;
                }
            }
        }
    }

    /// Retrieves a parked call, or picks up a call ringing on another line, where the lines can.
    async fn address_operation(&mut self, calls: &[Seen]) {
        let Some((line, id, _)) = self.rng.pick(&self.lines).cloned() else {
            return;
        };
        if !self.parked.is_empty() && self.rng.below(2) == 0 {
            let orbit = self.parked.swap_remove(self.rng.below(self.parked.len()));
            let _ = self.session.unpark(line, &orbit).await;
            return;
        }
        let ringing: Vec<&Seen> = calls
            .iter()
            .filter(|c| c.line != id && c.kind() == CallStateKind::Offering)
            .collect();
        if let Some(c) = self.rng.pick(&ringing) {
            let number = self
                .lines
                .iter()
                .find(|(_, l, _)| *l == c.line)
                .map(|(_, _, n)| n.clone())
                .unwrap_or_default();
            let _ = self
                .session
                .pickup(line, tapir_core::params::PickupTarget::Directed(number))
                .await;
        }
    }

    async fn try_operation(&mut self, c: &Seen, calls: &[Seen]) {
        // Mostly what the call lists (so that calls go somewhere), often anything at all.
        let listed_only = self.rng.below(3) != 0;
        let ops: Vec<CallOperation> = CallOperation::ALL
            .into_iter()
            .filter(|op| *op != CallOperation::Handoff)
            .filter(|op| !listed_only || c.features.contains(*op))
            .collect();
        let Some(op) = self.rng.pick(&ops).copied() else {
            return;
        };
        *self.report.states.entry(c.kind()).or_default() += 1;
        self.tally(op);
        let listed = c.features.contains(op);
        tracing::debug!(step = self.step, %op, leg = %c.leg, state = c.kind().name(), listed, "walk");
        if listed {
            match self.carry_out(op, c, calls).await {
                Ok(()) => self.tally(op).listed_done += 1,
                Err(e) if foreseeable(op, &e) => {
                    let now = self.session.call_status(c.call).map(|s| s.state).ok();
                    // Refused after the call moved on by itself: the features were true when read.
                    if now == Some(c.state) {
                        self.fail(WalkProblem::ListedRefused {
                            operation: op,
                            state: c.kind(),
                            role: c.role,
                            leg: c.leg,
                            error: e,
                        });
                    } else {
                        self.tally(op).listed_failed += 1;
                    }
                }
                Err(_) => self.tally(op).listed_failed += 1,
            }
        } else {
            let with = calls
                .iter()
                .find(|o| o.same_address(c))
                .map_or(c.leg, |o| o.leg);
            let to = self.number(Some(c.line));
            let Ok(destination) = tapir_core::dial::DialString::parse_destination(&to) else {
                self.fail(WalkProblem::NotADialString(to));
                return;
            };
            let args = Arguments {
                digits: destination.clone(),
                destination,
                park: ParkMode::NonDirected,
                origin: tapir_core::params::Origin {
                    request: tapir_core::params::RequestId(u64::MAX),
                    line: self.local_line(c),
                    address: c.address,
                },
                request: tapir_core::params::RequestId(u64::MAX),
            };
            match invoke(&*self.provider, op, c.leg, with, &args).await {
                Ok(()) => self.fail(WalkProblem::UnlistedCarriedOut {
                    operation: op,
                    state: c.kind(),
                    role: c.role,
                }),
                Err(_) => self.tally(op).unlisted_refused += 1,
            }
        }
    }

    fn local_line(&self, c: &Seen) -> LineId {
        self.session.provider_line(c.line).unwrap_or(c.line)
    }

    fn tally(&mut self, op: CallOperation) -> &mut Tally {
        self.report.tried.entry(op).or_default()
    }

    /// The other call of a two-call operation: a call of `calls` on `c`'s address that lists `op`
    /// too (the gate lists such an operation on both) and that `accepts` picks; failing that, a
    /// failure of the features (`op` was listed with no call to pair it with).
    fn partner<'a>(
        &mut self,
        op: CallOperation,
        c: &Seen,
        calls: &'a [Seen],
        accepts: impl Fn(&Seen) -> bool,
    ) -> Result<&'a Seen, Error> {
        let found = calls
            .iter()
            .find(|o| o.same_address(c) && o.features.contains(op) && accepts(o));
        if found.is_none() {
            self.fail(WalkProblem::Unpaired {
                operation: op,
                state: c.kind(),
                role: c.role,
            });
        }
        found.ok_or(Error::InvalidCallHandle)
    }

    /// Carries out listed operation `op` on `c` through the session, with valid arguments.
    async fn carry_out(
        &mut self,
        op: CallOperation,
        c: &Seen,
        calls: &[Seen],
    ) -> Result<(), Error> {
        use CallOperation as Op;
        use CallStateKind as S;
        let s = &self.session;
        let call = c.call;
        match op {
            Op::Accept => s.accept(call).await,
            Op::Answer => s.answer(call).await,
            Op::Reject => s.reject(call).await,
            Op::Drop => s.drop_call(call).await,
            Op::Hold => s.hold(call).await,
            Op::Unhold => s.unhold(call).await,
            Op::Dial => {
                let digits = if matches!(c.kind(), S::DialTone | S::Dialing) {
                    self.number(None)
                } else {
                    "1".to_owned()
                };
                self.session.dial(call, &digits).await
            }
            Op::Redirect => {
                let to = self.number(Some(c.line));
                self.session.redirect(call, &to).await
            }
            Op::BlindTransfer => {
                let to = self.number(Some(c.line));
                self.session.blind_transfer(call, &to).await
            }
            Op::SwapHold => {
                let held = c.kind().is_held();
                let p = self.partner(op, c, calls, |o| o.kind().is_held() != held)?;
                let (active, on_hold) = if held { (p.call, call) } else { (call, p.call) };
                self.session.swap_hold(active, on_hold).await
            }
            Op::SetupTransfer => s.setup_transfer(call).await.map(drop),
            Op::CompleteTransfer => {
                let modes = self.address_caps(c).map(|a| a.transfer_modes);
                let mode = match modes {
                    Some(m) if !m.transfer && m.conference => TransferMode::Conference,
                    _ => TransferMode::Transfer,
                };
                let held = c.kind().is_held();
                let p = self.partner(op, c, calls, |o| o.kind().is_held() != held)?;
                let (held, consultation) = if held { (call, p.call) } else { (p.call, call) };
                self.session
                    .complete_transfer(held, consultation, mode)
                    .await
                    .map(drop)
            }
            Op::SetupConference => s.setup_conference(call).await.map(drop),
            Op::PrepareAddToConference => s.prepare_add_to_conference(call).await.map(drop),
            Op::AddToConference => {
                let consulting = matches!(c.role, CallRole::Consultation { .. });
                let p = self.partner(op, c, calls, |o| {
                    matches!(o.role, CallRole::Consultation { .. }) != consulting
                })?;
                let (parent, consultation) = if consulting {
                    (p.call, call)
                } else {
                    (call, p.call)
                };
                self.session.add_to_conference(parent, consultation).await
            }
            Op::RemoveFromConference => s.remove_from_conference(call).await,
            Op::Park => {
                let orbit = s.park(call, ParkMode::NonDirected).await?;
                self.parked.push(orbit);
                Ok(())
            }
            Op::CompleteCall => s
                .complete_call(call, CompletionMode::CampOn)
                .await
                .map(drop),
            Op::GenerateDigits => s.generate_digits(call, "1", DigitMode::Dtmf).await,
            Op::MonitorDigits => s.monitor_digits(call, Some(DigitMode::Dtmf)).await,
            Op::SecureCall => s.secure_call(call).await,
            Op::Handoff => Ok(()),
        }
    }

    fn address_caps(&self, c: &Seen) -> Option<tapir_core::caps::AddressCaps> {
        self.session
            .lines()
            .into_iter()
            .find(|l| l.id == c.line)
            .and_then(|l| l.caps.addresses.get(c.address.0 as usize).cloned())
    }

    /// Hangs up everything, logs off and checks that nothing is left.
    async fn finish(mut self, engine: &Engine) -> WalkReport {
        // Calls still on their way (a callback, a forwarded call) arrive while the others end.
        for _ in 0..10 {
            let calls = self.calls();
            if calls.is_empty() {
                break;
            }
            for c in calls {
                let _ = self.session.drop_call(c.call).await;
            }
            tokio::time::sleep(self.options.settle).await;
        }
        let left: Vec<(CallStateKind, CallRole)> =
            self.calls().iter().map(|c| (c.kind(), c.role)).collect();
        if !left.is_empty() {
            self.fail(WalkProblem::CallsLeft(left));
        }
        let Walk {
            session,
            mut report,
            options,
            ..
        } = self;
        session.logoff().await;
        let stats = engine.stats();
        if stats.calls != 0 || stats.call_handles != 0 || stats.pending_requests != 0 {
            report.failures.push(WalkFinding {
                seed: options.seed,
                step: None,
                problem: WalkProblem::EngineNotEmpty(stats),
            });
        }
        report
    }
}
