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
//!   for a call before its new-call report, and nothing after it is idle.
//!
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
//! A provider's test implements [`Harness`] and asserts that [`run`] found nothing, e.g.
//! `assert!(run(&MyHarness::default()).await.is_empty())` inside a `#[tokio::test(start_paused = true)]`.
//! The simulated PBX's `conformance` test (`providers/simswitch/tests/conformance.rs`) is a complete
//! example.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tapir_core::caps::LineCaps;
use tapir_core::dial::DialString;
use tapir_core::gate::{AddressOperation, CallOperation};
use tapir_core::media::MediaModes;
use tapir_core::params::{
    CompletionMode, DigitMode, Forwarding, MakeCall, Origin, ParkMode, PickupTarget, RequestId,
    TransferMode,
};
use tapir_core::state::{CallState, CallStateKind, initial_state_allowed, transition_allowed};
use tapir_core::{AddressId, CallLegId, Error, LineId, ProviderId};

use crate::{EventHandler, EventSink, Provider, ProviderEvent};

/// What the kit needs from a provider author's test. The kit runs its checks one after another, each
/// on a fresh provider from [`Harness::provider`]; the other methods act on the one created last.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A new, not yet started instance of the provider under test.
    async fn provider(&self) -> Arc<dyn Provider>;
    /// A number that a call from line 0 can reach and that answers within a minute.
    fn answering_number(&self) -> String;
    /// Makes a call from outside ring the provider's **last** line; returns once it has been offered.
    async fn ring_in(&self) -> Result<(), Error>;
    /// Makes the far end of the call on `leg` hang up.
    async fn far_end_hangs_up(&self, leg: CallLegId);
}

/// Records a provider's events and checks each against the transition table as it arrives.
#[derive(Default)]
struct Checker {
    inner: Mutex<CheckerState>,
}

#[derive(Default)]
struct CheckerState {
    events: Vec<ProviderEvent>,
    states: std::collections::HashMap<CallLegId, CallState>,
    failures: Vec<String>,
}

impl EventHandler for Checker {
    fn on_event(&self, _provider: ProviderId, event: ProviderEvent) {
        let mut st = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let fail = match &event {
            ProviderEvent::NewCall(c) => match st.states.entry(c.leg) {
                std::collections::hash_map::Entry::Occupied(_) => {
                    Some(format!("{} reported as new twice", c.leg))
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(c.state);
                    (!initial_state_allowed(c.state.kind()))
                        .then(|| format!("{} reported as new in state {:?}", c.leg, c.state))
                }
            },
            ProviderEvent::CallState { leg, state } => match st.states.get(leg).copied() {
                None => Some(format!(
                    "state {state:?} for {leg} before its new-call report"
                )),
                Some(old) if old.is_idle() => Some(format!("state {state:?} for {leg} after idle")),
                Some(old) if !transition_allowed(old.kind(), state.kind()) => Some(format!(
                    "{leg}: {old:?} -> {state:?} is not in the transition table"
                )),
                Some(_) => {
                    st.states.insert(*leg, *state);
                    None
                }
            },
            ProviderEvent::CallInfo { leg, .. } | ProviderEvent::Digit { leg, .. } => {
                match st.states.get(leg) {
                    None => Some(format!(
                        "call information for {leg} before its new-call report"
                    )),
                    Some(s) if s.is_idle() => {
                        Some(format!("call information for {leg} after idle"))
                    }
                    Some(_) => None,
                }
            }
            ProviderEvent::Line { .. } | ProviderEvent::LineClosed { .. } => None,
        };
        if let Some(f) = fail {
            st.failures.push(f);
        }
        st.events.push(event);
    }
}

impl Checker {
    fn with<T>(&self, f: impl FnOnce(&mut CheckerState) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }
    fn state(&self, leg: CallLegId) -> Option<CallState> {
        self.with(|s| s.states.get(&leg).copied())
    }
    fn event_count(&self) -> usize {
        self.with(|s| s.events.len())
    }
    fn newest_unrequested_call(&self) -> Option<(CallLegId, CallState)> {
        self.with(|s| {
            s.events.iter().rev().find_map(|e| match e {
                ProviderEvent::NewCall(c) if c.request.is_none() => Some((c.leg, c.state)),
                _ => None,
            })
        })
    }
    /// The newest call the switch reported on its own (no request) on `line`.
    fn newest_call_on(&self, line: LineId) -> Option<CallLegId> {
        self.with(|s| {
            s.events.iter().rev().find_map(|e| match e {
                ProviderEvent::NewCall(c) if c.request.is_none() && c.line == line => Some(c.leg),
                _ => None,
            })
        })
    }
    fn reported_with(&self, request: RequestId) -> Vec<CallLegId> {
        self.with(|s| {
            s.events
                .iter()
                .filter_map(|e| match e {
                    ProviderEvent::NewCall(c) if c.request == Some(request) => Some(c.leg),
                    _ => None,
                })
                .collect()
        })
    }
}

/// One check's context: a started provider and its checker.
struct Case {
    provider: Arc<dyn Provider>,
    checker: Arc<Checker>,
    caps: Vec<LineCaps>,
    failures: Vec<String>,
    name: &'static str,
}

impl Case {
    async fn new(harness: &dyn Harness, name: &'static str) -> Result<Self, String> {
        let provider = harness.provider().await;
        let checker = Arc::new(Checker::default());
        let caps = provider
            .start(EventSink::new(ProviderId(0), checker.clone()))
            .await
            .map_err(|e| format!("{name}: start failed: {e}"))?;
        Ok(Self {
            provider,
            checker,
            caps,
            failures: Vec::new(),
            name,
        })
    }

    fn fail(&mut self, what: String) {
        self.failures.push(format!("{}: {what}", self.name));
    }

    fn call_ops(&self) -> tapir_core::gate::FeatureSet {
        self.caps[0].addresses[0].call_features
    }

    fn expect(&mut self, what: &str, r: Result<(), Error>) -> bool {
        match r {
            Ok(()) => true,
            Err(e) => {
                self.fail(format!("{what} failed: {e}"));
                false
            }
        }
    }

    fn expect_state(&mut self, leg: CallLegId, kind: CallStateKind, when: &str) -> bool {
        let got = self.checker.state(leg).map(|s| s.kind());
        if got == Some(kind) {
            true
        } else {
            self.fail(format!("{when}: {leg} is {got:?}, expected {kind:?}"));
            false
        }
    }

    /// Waits (up to two minutes of the clock the provider runs on) for `leg` to reach `kind`.
    async fn wait_for(&mut self, leg: CallLegId, kind: CallStateKind, what: &str) -> bool {
        for _ in 0..1200 {
            if self.checker.state(leg).map(|s| s.kind()) == Some(kind) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.fail(format!(
            "{what}: {leg} never reached {kind:?} (last {:?})",
            self.checker.state(leg)
        ));
        false
    }

    async fn make_call(&mut self, to: Option<&str>) -> Option<CallLegId> {
        let request = RequestId(77);
        let destination = match to.map(DialString::parse_destination) {
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                self.fail(format!("the harness's number does not parse: {e}"));
                return None;
            }
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
                    self.fail(format!(
                        "make_call returned {leg} without reporting it with the request's ID"
                    ));
                }
                Some(leg)
            }
            Err(e) => {
                self.fail(format!("make_call failed: {e}"));
                None
            }
        }
    }

    async fn finish(mut self) -> Vec<String> {
        self.provider.stop().await;
        let problems = self.checker.with(|s| std::mem::take(&mut s.failures));
        for p in problems {
            self.fail(p);
        }
        self.failures
    }
}

/// Runs every check and returns what failed (empty: the provider conforms).
pub async fn run(harness: &dyn Harness) -> Vec<String> {
    let mut failures = check_caps(harness).await;
    failures.extend(check_unadvertised(harness).await);
    failures.extend(check_outgoing(harness).await);
    failures.extend(check_incoming(harness).await);
    failures.extend(check_hold(harness).await);
    failures.extend(check_supplementary(harness).await);
    failures
}

/// What [`invoke`] passes to the operations that take more than a call.
#[derive(Clone, Debug)]
pub struct Arguments {
    /// Digits to dial or send.
    pub digits: DialString,
    /// Where a redirect or blind transfer sends the call.
    pub destination: DialString,
    /// How to park.
    pub park: ParkMode,
    /// Where a call set up from nothing (a conference) lives.
    pub origin: Origin,
    /// The request ID for operations that create calls.
    pub request: RequestId,
}

/// Asks `provider` for call operation `op` on `leg`, the way the engine would: `with` is the second
/// call of the operations that take two (the held call of swap hold, the consultation call of complete
/// transfer and add to conference). Calls an operation creates are reported by the provider; only
/// success or the error is returned. Hand-off is the engine's own and always succeeds here.
pub async fn invoke(
    provider: &dyn Provider,
    op: CallOperation,
    leg: CallLegId,
    with: CallLegId,
    args: &Arguments,
) -> Result<(), Error> {
    let p = provider;
    match op {
        CallOperation::Accept => p.accept(leg).await,
        CallOperation::Answer => p.answer(leg).await,
        CallOperation::Reject => p.reject(leg).await,
        CallOperation::Redirect => p.redirect(leg, &args.destination).await,
        CallOperation::Drop => p.drop_call(leg).await,
        CallOperation::Dial => p.dial(leg, &args.digits).await,
        CallOperation::Hold => p.hold(leg).await,
        CallOperation::Unhold => p.unhold(leg).await,
        CallOperation::SwapHold => p.swap_hold(leg, with).await,
        CallOperation::BlindTransfer => p.blind_transfer(leg, &args.destination).await,
        CallOperation::SetupTransfer => p.setup_transfer(leg, args.request).await.map(|_| ()),
        CallOperation::CompleteTransfer => p
            .complete_transfer(leg, with, TransferMode::Transfer, args.request)
            .await
            .map(|_| ()),
        CallOperation::SetupConference => {
            p.setup_conference(Some(leg), args.origin).await.map(|_| ())
        }
        CallOperation::PrepareAddToConference => p
            .prepare_add_to_conference(leg, args.request)
            .await
            .map(|_| ()),
        CallOperation::AddToConference => p.add_to_conference(leg, with).await,
        CallOperation::RemoveFromConference => p.remove_from_conference(leg).await,
        CallOperation::Park => p.park(leg, &args.park).await.map(|_| ()),
        CallOperation::CompleteCall => p
            .complete_call(leg, CompletionMode::CampOn)
            .await
            .map(|_| ()),
        CallOperation::GenerateDigits => p.generate_digits(leg, "1", DigitMode::Dtmf).await,
        CallOperation::MonitorDigits => p.monitor_digits(leg, Some(DigitMode::Dtmf)).await,
        CallOperation::SecureCall => p.secure_call(leg).await,
        CallOperation::Handoff => Ok(()),
    }
}

async fn check_caps(h: &dyn Harness) -> Vec<String> {
    let case = match Case::new(h, "capabilities").await {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    if case.caps.is_empty() {
        problems.push("the provider describes no line".to_owned());
    }
    for (i, line) in case.caps.iter().enumerate() {
        if line.addresses.is_empty() {
            problems.push(format!("line {i} has no address"));
        }
        if line.media_modes.is_empty() {
            problems.push(format!("line {i} supports no media mode"));
        }
        for a in &line.addresses {
            let f = a.call_features;
            if a.max_active_calls == 0 && a.address_features.contains(AddressOperation::MakeCall) {
                problems.push(format!(
                    "line {i} can make calls but has no active-call slot"
                ));
            }
            if f.contains(CallOperation::Hold) && a.max_on_hold == 0 {
                problems.push(format!("line {i} advertises hold with no hold slot"));
            }
            if f.contains(CallOperation::Park)
                && !(a.park_modes.directed || a.park_modes.non_directed)
            {
                problems.push(format!("line {i} advertises park with no park mode"));
            }
            if f.contains(CallOperation::CompleteTransfer)
                && !(a.transfer_modes.transfer || a.transfer_modes.conference)
            {
                problems.push(format!(
                    "line {i} advertises complete-transfer with no mode"
                ));
            }
        }
    }
    let mut out = case.finish().await;
    out.extend(problems.into_iter().map(|p| format!("capabilities: {p}")));
    out
}

async fn check_unadvertised(h: &dyn Harness) -> Vec<String> {
    let mut case = match Case::new(h, "unadvertised operations").await {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    // A made-up call: a provider must say "never" before it looks the call up.
    let leg = CallLegId(u64::MAX - 1);
    let digits = DialString::parse("1").unwrap_or_else(|_| unreachable!("a valid dial string"));
    let ops = case.call_ops();
    let address = case.caps[0].addresses[0].address_features;
    let origin = Origin {
        request: RequestId(99),
        line: LineId(0),
        address: AddressId(0),
    };
    let before = case.checker.event_count();
    for op in CallOperation::ALL {
        if ops.contains(op) || op == CallOperation::Handoff || op == CallOperation::Reject {
            // Hand-off is the engine's; reject defaults to drop.
            continue;
        }
        let args = Arguments {
            digits: digits.clone(),
            destination: digits.clone(),
            park: ParkMode::NonDirected,
            origin,
            request: RequestId(98),
        };
        let r = invoke(&*case.provider, op, leg, leg, &args).await;
        if !matches!(r, Err(Error::OperationUnavailable { .. })) {
            case.fail(format!("{op} is not advertised but answered {r:?}"));
        }
    }
    for op in AddressOperation::ALL {
        if address.contains(op) {
            continue;
        }
        let p = &case.provider;
        let r: Result<(), Error> = match op {
            AddressOperation::MakeCall => p
                .make_call(MakeCall {
                    request: RequestId(95),
                    line: LineId(0),
                    address: AddressId(0),
                    destination: None,
                    media_mode: MediaModes::INTERACTIVE_VOICE,
                })
                .await
                .map(|_| ()),
            AddressOperation::Unpark => p.unpark(origin, "1").await.map(|_| ()),
            AddressOperation::Pickup => p
                .pickup(origin, &PickupTarget::Directed("1".into()))
                .await
                .map(|_| ()),
            AddressOperation::Forward => {
                p.forward(LineId(0), AddressId(0), &Forwarding::default())
                    .await
            }
            AddressOperation::SetupConference => p.setup_conference(None, origin).await.map(|_| ()),
        };
        if !matches!(r, Err(Error::OperationUnavailable { .. })) {
            case.fail(format!(
                "address operation {op} is not advertised but answered {r:?}"
            ));
        }
    }
    if case.checker.event_count() != before {
        case.fail("refused operations reported events".into());
    }
    case.finish().await
}

async fn check_outgoing(h: &dyn Harness) -> Vec<String> {
    let mut case = match Case::new(h, "outgoing call").await {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    if !case.caps[0].addresses[0]
        .address_features
        .contains(AddressOperation::MakeCall)
    {
        return case.finish().await;
    }
    let number = h.answering_number();
    let ops = case.call_ops();
    // Dial tone first, then dial, where the provider can dial on an existing call.
    let leg = if ops.contains(CallOperation::Dial) {
        let Some(leg) = case.make_call(None).await else {
            return case.finish().await;
        };
        match DialString::parse_destination(&number) {
            Ok(d) => {
                let r = case.provider.dial(leg, &d).await;
                case.expect("dial", r);
            }
            Err(e) => case.fail(format!("the harness's number does not parse: {e}")),
        }
        leg
    } else {
        match case.make_call(Some(&number)).await {
            Some(leg) => leg,
            None => return case.finish().await,
        }
    };
    if case
        .wait_for(leg, CallStateKind::Connected, "outgoing call")
        .await
    {
        let r = case.provider.drop_call(leg).await;
        if case.expect("drop", r) {
            case.expect_state(leg, CallStateKind::Idle, "when drop returned");
        }
    }
    case.finish().await
}

async fn check_incoming(h: &dyn Harness) -> Vec<String> {
    let mut case = match Case::new(h, "incoming call").await {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let ops = case.call_ops();
    // Answered, then the far end hangs up.
    if let Err(e) = h.ring_in().await {
        case.fail(format!("the harness could not ring in: {e}"));
        return case.finish().await;
    }
    let Some((leg, state)) = case.checker.newest_unrequested_call() else {
        case.fail("a call from outside was not reported".into());
        return case.finish().await;
    };
    if state.kind() != CallStateKind::Offering {
        case.fail(format!(
            "a call from outside was first reported as {state:?}"
        ));
    }
    if ops.contains(CallOperation::Accept) {
        let r = case.provider.accept(leg).await;
        if case.expect("accept", r) {
            case.expect_state(leg, CallStateKind::Accepted, "when accept returned");
        }
    }
    if ops.contains(CallOperation::Answer) {
        let r = case.provider.answer(leg).await;
        if case.expect("answer", r)
            && case.expect_state(leg, CallStateKind::Connected, "when answer returned")
        {
            h.far_end_hangs_up(leg).await;
            if case
                .wait_for(leg, CallStateKind::Disconnected, "far-end hang-up")
                .await
            {
                let r = case.provider.drop_call(leg).await;
                if case.expect("drop of a disconnected call", r) {
                    case.expect_state(leg, CallStateKind::Idle, "when drop returned");
                }
            }
        }
    }
    // Rejected.
    if ops.contains(CallOperation::Reject) || ops.contains(CallOperation::Drop) {
        if let Err(e) = h.ring_in().await {
            case.fail(format!("the harness could not ring in a second time: {e}"));
            return case.finish().await;
        }
        match case.checker.newest_unrequested_call() {
            Some((second, _)) if second != leg => {
                let r = case.provider.reject(second).await;
                if case.expect("reject", r) {
                    case.expect_state(second, CallStateKind::Idle, "when reject returned");
                }
            }
            _ => case.fail("a second call from outside was not reported".into()),
        }
    }
    case.finish().await
}

async fn check_hold(h: &dyn Harness) -> Vec<String> {
    let mut case = match Case::new(h, "hold").await {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let ops = case.call_ops();
    if !ops.contains(CallOperation::Hold) {
        return case.finish().await;
    }
    let number = h.answering_number();
    let Some(leg) = case.make_call(Some(&number)).await else {
        return case.finish().await;
    };
    if case
        .wait_for(leg, CallStateKind::Connected, "call to hold")
        .await
    {
        let r = case.provider.hold(leg).await;
        if case.expect("hold", r)
            && case.expect_state(leg, CallStateKind::OnHold, "when hold returned")
        {
            let again = case.provider.hold(leg).await;
            if !matches!(again, Err(Error::InvalidCallState { .. })) {
                case.fail(format!("hold of a held call answered {again:?}"));
            }
            if ops.contains(CallOperation::Unhold) {
                let r = case.provider.unhold(leg).await;
                if case.expect("unhold", r) {
                    case.expect_state(leg, CallStateKind::Connected, "when unhold returned");
                }
            }
        }
        let r = case.provider.drop_call(leg).await;
        case.expect("drop", r);
    }
    case.finish().await
}

impl Case {
    /// The directory number of `line`'s first address.
    fn address_of(&self, line: usize) -> String {
        self.caps[line].addresses[0].address.clone()
    }

    fn last_line(&self) -> LineId {
        LineId(self.caps.len() as u32 - 1)
    }

    fn origin(&self, line: LineId, request: u64) -> Origin {
        Origin {
            request: RequestId(request),
            line,
            address: AddressId(0),
        }
    }

    /// A call from line 0 to the harness's answering number, connected.
    async fn connected_call(&mut self, h: &dyn Harness) -> Option<CallLegId> {
        let leg = self.make_call(Some(&h.answering_number())).await?;
        self.wait_for(leg, CallStateKind::Connected, "outgoing call")
            .await
            .then_some(leg)
    }

    /// Waits for the switch to offer a call on `line` that was not there before (`not`).
    async fn offered_on(
        &mut self,
        line: LineId,
        not: Option<CallLegId>,
        what: &str,
    ) -> Option<CallLegId> {
        for _ in 0..100 {
            if let Some(leg) = self
                .checker
                .newest_call_on(line)
                .filter(|l| Some(*l) != not)
            {
                return Some(leg);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.fail(format!("{what}: no call was offered on {line}"));
        None
    }

    fn dial_string(&mut self, number: &str) -> Option<DialString> {
        match DialString::parse_destination(number) {
            Ok(d) => Some(d),
            Err(e) => {
                self.fail(format!("{number:?} does not parse as a dial string: {e}"));
                None
            }
        }
    }

    fn has(&self, op: CallOperation) -> bool {
        self.call_ops().contains(op)
    }
}

/// Runs `scenario` on a fresh provider if it has two lines and advertises `needs`.
async fn scenario<'h, F>(
    h: &'h dyn Harness,
    name: &'static str,
    needs: &[CallOperation],
    scenario: impl FnOnce(Case, &'h dyn Harness) -> F,
) -> Vec<String>
where
    F: Future<Output = Case>,
{
    let case = match Case::new(h, name).await {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let makes = case.caps[0].addresses[0]
        .address_features
        .contains(AddressOperation::MakeCall);
    if case.caps.len() < 2 || !makes || !needs.iter().all(|op| case.has(*op)) {
        return case.finish().await;
    }
    scenario(case, h).await.finish().await
}

async fn check_supplementary(h: &dyn Harness) -> Vec<String> {
    use CallOperation as Op;
    use CallStateKind as S;
    let mut out = Vec::new();

    out.extend(
        scenario(
            h,
            "blind transfer",
            &[Op::BlindTransfer],
            |mut c, h| async move {
                let target = c.address_of(1);
                if let (Some(leg), Some(to)) = (c.connected_call(h).await, c.dial_string(&target)) {
                    let r = c.provider.blind_transfer(leg, &to).await;
                    if c.expect("blind transfer", r) {
                        c.expect_state(leg, S::Idle, "when blind transfer returned");
                        if let Some(t) = c.offered_on(LineId(1), None, "blind transfer").await {
                            c.expect_state(t, S::Offering, "at the transfer target");
                        }
                    }
                }
                c
            },
        )
        .await,
    );

    out.extend(
        scenario(h, "redirect", &[Op::Redirect], |mut c, h| async move {
            let last = c.last_line();
            if let Err(e) = h.ring_in().await {
                c.fail(format!("the harness could not ring in: {e}"));
                return c;
            }
            let Some(leg) = c.offered_on(last, None, "ring in").await else {
                return c;
            };
            let target = c.address_of(0);
            if let Some(to) = c.dial_string(&target) {
                let r = c.provider.redirect(leg, &to).await;
                if c.expect("redirect", r) {
                    c.expect_state(leg, S::Idle, "when redirect returned");
                    c.offered_on(LineId(0), None, "redirect").await;
                }
            }
            c
        })
        .await,
    );

    out.extend(
        scenario(
            h,
            "consultation transfer",
            &[Op::SetupTransfer, Op::CompleteTransfer, Op::Dial],
            |mut c, h| async move {
                let Some(leg) = c.connected_call(h).await else {
                    return c;
                };
                // Cancel once by unholding (where the provider can), then set up again and complete.
                if c.has(Op::Unhold) {
                    match c.provider.setup_transfer(leg, RequestId(11)).await {
                        Ok(consult) => {
                            c.expect_state(leg, S::OnHoldPendingTransfer, "after setup transfer");
                            c.expect_state(consult, S::DialTone, "the consultation call");
                            let r = c.provider.unhold(leg).await;
                            if c.expect("unhold to cancel a transfer", r) {
                                c.expect_state(leg, S::Connected, "after cancelling");
                                c.expect_state(consult, S::Idle, "the cancelled consultation call");
                            }
                        }
                        Err(e) => c.fail(format!("setup transfer failed: {e}")),
                    }
                }
                let consult = match c.provider.setup_transfer(leg, RequestId(12)).await {
                    Ok(consult) => consult,
                    Err(e) => {
                        c.fail(format!("setup transfer failed: {e}"));
                        return c;
                    }
                };
                if !c.checker.reported_with(RequestId(12)).contains(&consult) {
                    c.fail("the consultation call was not reported with the request's ID".into());
                }
                let target = c.address_of(1);
                if let Some(to) = c.dial_string(&target) {
                    let r = c.provider.dial(consult, &to).await;
                    c.expect("dial the consultation call", r);
                }
                let r = c
                    .provider
                    .complete_transfer(leg, consult, TransferMode::Transfer, RequestId(13))
                    .await;
                match r {
                    Ok(None) => {
                        c.expect_state(leg, S::Idle, "the transferred call");
                        c.expect_state(consult, S::Idle, "the consultation call after transfer");
                    }
                    Ok(Some(conf)) => c.fail(format!("a transfer created a conference {conf}")),
                    Err(e) => c.fail(format!("complete transfer failed: {e}")),
                }
                c
            },
        )
        .await,
    );

    out.extend(
        scenario(
            h,
            "conference",
            &[Op::SetupConference, Op::AddToConference, Op::Dial],
            |mut c, h| async move {
                let Some(leg) = c.connected_call(h).await else {
                    return c;
                };
                let origin = c.origin(LineId(0), 21);
                let (parent, consult) = match c.provider.setup_conference(Some(leg), origin).await {
                    Ok(p) => p,
                    Err(e) => {
                        c.fail(format!("setup conference failed: {e}"));
                        return c;
                    }
                };
                c.expect_state(
                    parent,
                    S::OnHoldPendingConference,
                    "the conference after setup",
                );
                c.expect_state(leg, S::Conferenced, "the first party after setup");
                c.expect_state(consult, S::DialTone, "the consultation call");
                let number = h.answering_number();
                if let Some(to) = c.dial_string(&number) {
                    let r = c.provider.dial(consult, &to).await;
                    c.expect("dial the consultation call", r);
                }
                if !c.wait_for(consult, S::Connected, "consultation call").await {
                    return c;
                }
                let r = c.provider.add_to_conference(parent, consult).await;
                if c.expect("add to conference", r) {
                    c.expect_state(consult, S::Conferenced, "the added party");
                    c.expect_state(parent, S::Connected, "the conference after adding");
                }
                if c.has(Op::RemoveFromConference) {
                    let r = c.provider.remove_from_conference(consult).await;
                    if c.expect("remove from conference", r) {
                        let s = c.checker.state(consult).map(|s| s.kind());
                        if !matches!(s, Some(S::Idle | S::Connected | S::OnHold)) {
                            c.fail(format!("a removed party is {s:?}"));
                        }
                    }
                }
                let r = c.provider.drop_call(parent).await;
                if c.expect("drop the conference", r) {
                    c.expect_state(parent, S::Idle, "the dropped conference");
                    if c.caps[0].addresses[0].conference_drop {
                        c.expect_state(leg, S::Idle, "a party of a dropped conference");
                    }
                }
                c
            },
        )
        .await,
    );

    out.extend(
        scenario(h, "park", &[Op::Park], |mut c, h| async move {
            let Some(leg) = c.connected_call(h).await else {
                return c;
            };
            let modes = c.caps[0].addresses[0].park_modes;
            let mode = if modes.non_directed {
                ParkMode::NonDirected
            } else {
                c.fail("directed-only park needs an orbit the kit cannot know".into());
                return c;
            };
            let orbit = match c.provider.park(leg, &mode).await {
                Ok(o) => o,
                Err(e) => {
                    c.fail(format!("park failed: {e}"));
                    return c;
                }
            };
            c.expect_state(leg, S::Idle, "the parked call's leg");
            if orbit.is_empty() {
                c.fail("a non-directed park returned no orbit".into());
            }
            if c.caps[1].addresses[0]
                .address_features
                .contains(AddressOperation::Unpark)
            {
                let origin = c.origin(LineId(1), 31);
                match c.provider.unpark(origin, &orbit).await {
                    Ok(u) => {
                        c.expect_state(u, S::Connected, "the unparked call");
                        if !c.checker.reported_with(RequestId(31)).contains(&u) {
                            c.fail(
                                "the unparked call was not reported with the request's ID".into(),
                            );
                        }
                    }
                    Err(e) => c.fail(format!("unpark failed: {e}")),
                }
            }
            c
        })
        .await,
    );

    out.extend(
        scenario(h, "pickup", &[], |mut c, h| async move {
            if !c.caps[0].addresses[0]
                .address_features
                .contains(AddressOperation::Pickup)
                || !c.caps[0].addresses[0].pickup_modes.directed
            {
                return c;
            }
            let last = c.last_line();
            if let Err(e) = h.ring_in().await {
                c.fail(format!("the harness could not ring in: {e}"));
                return c;
            }
            let Some(ringing) = c.offered_on(last, None, "ring in").await else {
                return c;
            };
            let target = c.address_of(last.0 as usize);
            let origin = c.origin(LineId(0), 41);
            match c
                .provider
                .pickup(origin, &PickupTarget::Directed(target))
                .await
            {
                Ok(p) => {
                    c.expect_state(p, S::Connected, "the picked-up call");
                    c.expect_state(ringing, S::Idle, "the call that was ringing");
                }
                Err(e) => c.fail(format!("pickup failed: {e}")),
            }
            c
        })
        .await,
    );

    out.extend(
        scenario(h, "forward", &[], |mut c, h| async move {
            let last = c.last_line();
            let caps = &c.caps[last.0 as usize].addresses[0];
            if !caps.address_features.contains(AddressOperation::Forward)
                || !caps.forward_modes.unconditional
            {
                return c;
            }
            let target = c.address_of(0);
            let Some(to) = c.dial_string(&target) else {
                return c;
            };
            let forwarding = Forwarding {
                do_not_disturb: false,
                rules: vec![(tapir_core::params::ForwardCondition::Unconditional, to)],
            };
            let r = c.provider.forward(last, AddressId(0), &forwarding).await;
            if !c.expect("forward", r) {
                return c;
            }
            if let Err(e) = h.ring_in().await {
                c.fail(format!("the harness could not ring a forwarded line: {e}"));
                return c;
            }
            let first = c.offered_on(LineId(0), None, "a forwarded call").await;
            let r = c
                .provider
                .forward(last, AddressId(0), &Forwarding::default())
                .await;
            if c.expect("cancel forwarding", r) {
                if let Some(f) = first {
                    let r = c.provider.drop_call(f).await;
                    c.expect("drop the forwarded call", r);
                }
                if let Err(e) = h.ring_in().await {
                    c.fail(format!(
                        "the harness could not ring in after cancelling: {e}"
                    ));
                    return c;
                }
                c.offered_on(last, None, "a call after cancelling forwarding")
                    .await;
            }
            c
        })
        .await,
    );

    out.extend(
        scenario(
            h,
            "swap hold",
            &[Op::Hold, Op::SwapHold],
            |mut c, h| async move {
                let Some(a) = c.connected_call(h).await else {
                    return c;
                };
                let r = c.provider.hold(a).await;
                if !c.expect("hold", r) {
                    return c;
                }
                let Some(b) = c.connected_call(h).await else {
                    return c;
                };
                let r = c.provider.swap_hold(b, a).await;
                if c.expect("swap hold", r) {
                    c.expect_state(b, S::OnHold, "the call swapped to hold");
                    c.expect_state(a, S::Connected, "the call swapped back");
                }
                c
            },
        )
        .await,
    );

    out.extend(
        scenario(h, "secure", &[Op::SecureCall], |mut c, h| async move {
            let Some(leg) = c.connected_call(h).await else {
                return c;
            };
            let r = c.provider.secure_call(leg).await;
            if c.expect("secure call", r) {
                let secured = c.checker.with(|s| {
                    s.events.iter().any(|e| {
                        matches!(e, ProviderEvent::CallInfo { leg: l, info } if *l == leg && info.secure)
                    })
                });
                if !secured {
                    c.fail("secure call reported no secured call information".into());
                }
            }
            c
        })
        .await,
    );

    out.extend(
        scenario(
            h,
            "digits",
            &[Op::GenerateDigits, Op::MonitorDigits, Op::Answer],
            |mut c, _h| async move {
                let target = c.address_of(1);
                let Some(a) = c.make_call(Some(&target)).await else {
                    return c;
                };
                let Some(b) = c.offered_on(LineId(1), None, "internal call").await else {
                    return c;
                };
                let r = c.provider.answer(b).await;
                if !c.expect("answer", r) || !c.wait_for(a, S::Connected, "internal call").await {
                    return c;
                }
                let r = c.provider.monitor_digits(b, Some(DigitMode::Dtmf)).await;
                c.expect("monitor digits", r);
                let r = c.provider.generate_digits(a, "19#", DigitMode::Dtmf).await;
                c.expect("generate digits", r);
                let got: String = c.checker.with(|s| {
                    s.events
                        .iter()
                        .filter_map(|e| match e {
                            ProviderEvent::Digit { leg, digit, .. } if *leg == b => Some(*digit),
                            _ => None,
                        })
                        .collect()
                });
                if got != "19#" {
                    c.fail(format!(
                        "the monitoring party saw digits {got:?}, not \"19#\""
                    ));
                }
                c
            },
        )
        .await,
    );
    out
}
