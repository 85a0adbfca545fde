//! A simulated PBX for tapir.
//!
//! Extensions are lines with one address each; an outside network of **scripted far ends** answers,
//! rings out, is busy, rejects or cannot be reached, and a test can ring an extension from outside with
//! caller ID. Calls go through realistic state sequences — dial tone, dialing, proceeding, ringback,
//! connected; busy; no answer after a timeout; remote hang-up — with ring cadence on the called line.
//! All timing runs on tokio's clock, so under `tokio::time::pause()` a 30-second no-answer timeout takes
//! no real time.
//!
//! The switch advertises exactly what it implements: make call, dial (with partial dialling), accept,
//! answer, reject and drop. Everything else returns `OperationUnavailable`.
//!
//! ```
//! use tapir_simswitch::{FarEnd, SimSwitch};
//!
//! let switch = SimSwitch::builder()
//!     .extension("100", "Alice")
//!     .extension("200", "Bob")
//!     .far_end("5551234", FarEnd::answers_after_rings(2))
//!     .far_end("5550000", FarEnd::busy())
//!     .build()
//!     .unwrap();
//! assert_eq!(switch.extensions().len(), 2);
//! ```

mod script;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tapir_core::caps::{AddressCaps, DialCaps, LineCaps};
use tapir_core::dial::DialString;
use tapir_core::info::{CallInfo, CallOrigin, CallReason, PartyId, Presentation};
use tapir_core::media::MediaModes;
use tapir_core::params::{MakeCall, RequestId};
use tapir_core::state::{
    BusyMode, CallState, CallStateKind, ConnectedMode, DialToneMode, DisconnectReason, OfferingMode,
};
use tapir_core::{AddressId, CallId, CallLegId, Error, LineId};
use tapir_provider::{EventSink, LineEvent, NewCall, Provider};

pub use script::{Answer, CallerId, CallerIdTiming, Extension, FarEnd, RingIn, Timing};

/// Builds a [`SimSwitch`].
#[derive(Clone, Debug, Default)]
pub struct SimSwitchBuilder {
    extensions: Vec<Extension>,
    far_ends: HashMap<String, FarEnd>,
    timing: Timing,
}

impl SimSwitchBuilder {
    /// Adds an extension (a line) with directory number `number` and display name `name`.
    pub fn extension(mut self, number: impl Into<String>, name: impl Into<String>) -> Self {
        self.extensions.push(Extension {
            number: number.into(),
            name: name.into(),
        });
        self
    }
    /// Scripts an outside number.
    pub fn far_end(mut self, number: impl Into<String>, far_end: FarEnd) -> Self {
        self.far_ends.insert(number.into(), far_end);
        self
    }
    /// Sets all timing at once.
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }
    /// Time from one ring to the next.
    pub fn ring_period(mut self, period: Duration) -> Self {
        self.timing.ring_period = period;
        self
    }
    /// How long an unanswered call rings before it is given up.
    pub fn no_answer_timeout(mut self, timeout: Duration) -> Self {
        self.timing.no_answer_timeout = timeout;
        self
    }
    /// When caller ID of outside calls arrives.
    pub fn caller_id_timing(mut self, timing: CallerIdTiming) -> Self {
        self.timing.caller_id = timing;
        self
    }

    /// Checks the configuration and builds the switch. Numbers must be non-empty digit strings (a leading
    /// `+` is allowed for outside numbers), unique, and an outside number may not be an extension.
    pub fn build(self) -> Result<SimSwitch, Error> {
        let bad = |reason: String| Err(Error::InvalidParameter { reason });
        let is_number = |n: &str, plus: bool| {
            let digits = if plus {
                n.strip_prefix('+').unwrap_or(n)
            } else {
                n
            };
            !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
        };
        if self.extensions.is_empty() {
            return bad("a switch needs at least one extension".into());
        }
        let mut seen = std::collections::HashSet::new();
        for e in &self.extensions {
            if !is_number(&e.number, false) {
                return bad(format!("extension number {:?} is not digits", e.number));
            }
            if !seen.insert(e.number.clone()) {
                return bad(format!("extension {} is configured twice", e.number));
            }
        }
        for n in self.far_ends.keys() {
            if !is_number(n, true) {
                return bad(format!("outside number {n:?} is not digits"));
            }
            if seen.contains(n) {
                return bad(format!("outside number {n} is also an extension"));
            }
        }
        if self.timing.ring_period.is_zero() {
            return bad("the ring period must be longer than zero".into());
        }
        Ok(SimSwitch {
            shared: Arc::new(Shared {
                timing: self.timing,
                state: Mutex::new(State {
                    sink: None,
                    extensions: self.extensions,
                    far_ends: self.far_ends,
                    legs: HashMap::new(),
                    next_leg: 1,
                    next_call: 1,
                    next_epoch: 1,
                }),
            }),
        })
    }
}

/// The simulated PBX. Cheap to clone: clones are the same switch, so a test can keep one to script the
/// outside world while the engine drives another.
#[derive(Clone)]
pub struct SimSwitch {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SimSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimSwitch")
            .field("timing", &self.shared.timing)
            .finish_non_exhaustive()
    }
}

/// A call from outside placed with [`SimSwitch::ring_in`]; the test's handle on the far end.
#[derive(Clone, Debug)]
pub struct RemoteCall {
    switch: SimSwitch,
    leg: CallLegId,
}

impl RemoteCall {
    /// The leg of the call on the extension.
    pub fn leg(&self) -> CallLegId {
        self.leg
    }
    /// The far end hangs up (or gives up, if the call was not answered yet).
    pub fn hang_up(&self) {
        let mut st = self.switch.shared.lock();
        if let Some(sink) = st.sink.clone() {
            st.far_end_clears(&sink, self.leg, DisconnectReason::Normal);
        }
    }
}

struct Shared {
    timing: Timing,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a timer does when it fires, if its leg has not changed state since it was set.
#[derive(Clone, Copy, Debug)]
enum Timer {
    /// The called line rings (ring `count`, from 0).
    Ring { count: u32 },
    /// Caller ID of an outside call arrives.
    CallerId,
    /// An unanswered call is given up.
    NoAnswer,
    /// The outside party gives up ringing.
    GiveUp,
    /// The outside party answers.
    FarEndAnswers,
    /// The outside party hangs up.
    FarEndHangsUp,
}

#[derive(Clone, Debug)]
enum Peer {
    None,
    /// Another extension's leg of the same call.
    Leg(CallLegId),
    /// An outside number.
    Outside {
        number: String,
        name: Option<String>,
        hang_up_after: Option<Duration>,
    },
}

struct Leg {
    line: usize,
    state: CallState,
    info: CallInfo,
    peer: Peer,
    /// Changes whenever the state changes (accepting an offered call aside), so a timer set in one state
    /// does nothing in another.
    epoch: u64,
    /// Digits dialled so far.
    dialed: String,
    /// For outside calls: caller ID held back until the first ring is over.
    pending_caller: Option<PartyId>,
}

struct State {
    sink: Option<EventSink>,
    extensions: Vec<Extension>,
    far_ends: HashMap<String, FarEnd>,
    legs: HashMap<CallLegId, Leg>,
    next_leg: u64,
    next_call: u64,
    next_epoch: u64,
}

fn not_started() -> Error {
    Error::OperationFailed {
        reason: "the simulated switch is not started".into(),
    }
}

fn line_caps(ext: &Extension) -> LineCaps {
    LineCaps {
        name: format!("Extension {} ({})", ext.number, ext.name),
        addresses: vec![AddressCaps::basic(ext.number.clone())],
        media_modes: MediaModes::INTERACTIVE_VOICE,
        dial: DialCaps {
            partial_dial: true,
            ..DialCaps::default()
        },
        answer_mode: Default::default(),
    }
}

impl SimSwitch {
    /// Starts configuring a switch.
    pub fn builder() -> SimSwitchBuilder {
        SimSwitchBuilder::default()
    }

    /// The extensions, in line order (line 0 is the first).
    pub fn extensions(&self) -> Vec<Extension> {
        self.shared.lock().extensions.clone()
    }

    /// The switch's timing.
    pub fn timing(&self) -> Timing {
        self.shared.timing
    }

    /// Scripts (or re-scripts) an outside number while the switch runs.
    pub fn set_far_end(&self, number: impl Into<String>, far_end: FarEnd) {
        self.shared.lock().far_ends.insert(number.into(), far_end);
    }

    /// How many call legs are live in the switch (for leak checks).
    pub fn live_legs(&self) -> usize {
        self.shared.lock().legs.len()
    }

    /// A call from outside rings an extension. Fails with `InvalidAddress` for an unknown extension and
    /// `InUse` if the extension already has a call (the outside caller would hear busy).
    pub fn ring_in(&self, ring: RingIn) -> Result<RemoteCall, Error> {
        let mut st = self.shared.lock();
        let sink = st.sink.clone().ok_or_else(not_started)?;
        let line = st
            .extension_index(&ring.to)
            .ok_or_else(|| Error::InvalidAddress {
                reason: format!("no extension {}", ring.to),
            })?;
        if st.line_busy(line) {
            return Err(Error::InUse);
        }
        let (caller, number, name) = match &ring.from {
            CallerId::Number { number, name } => (
                PartyId {
                    number: Some(number.clone()),
                    name: name.clone(),
                    presentation: Presentation::Allowed,
                },
                number.clone(),
                name.clone(),
            ),
            CallerId::Withheld => (PartyId::blocked(), String::new(), None),
            CallerId::OutOfArea => (PartyId::out_of_area(), String::new(), None),
        };
        let late = self.shared.timing.caller_id == CallerIdTiming::AfterFirstRing;
        let called = PartyId::named(
            st.extensions[line].number.clone(),
            st.extensions[line].name.clone(),
        );
        let call_id = st.new_call_id();
        let info = CallInfo {
            call_id,
            origin: CallOrigin::External,
            reason: CallReason::Direct,
            media_mode: MediaModes::INTERACTIVE_VOICE,
            caller: if late {
                PartyId {
                    presentation: Presentation::Unknown,
                    ..PartyId::default()
                }
            } else {
                caller.clone()
            },
            called,
            ..CallInfo::default()
        };
        let leg = st.new_leg(
            &sink,
            line,
            CallState::Offering(OfferingMode::Active),
            info,
            Peer::Outside {
                number,
                name,
                hang_up_after: ring.hang_up_after,
            },
            None,
        );
        if let Some(l) = st.legs.get_mut(&leg) {
            l.pending_caller = late.then_some(caller);
        }
        let give_up = ring
            .give_up_after
            .unwrap_or(self.shared.timing.no_answer_timeout);
        st.start_alerting(&self.shared, leg);
        st.schedule(&self.shared, give_up, leg, Timer::GiveUp);
        if late {
            st.schedule(
                &self.shared,
                self.shared.timing.ring_period / 2,
                leg,
                Timer::CallerId,
            );
        }
        Ok(RemoteCall {
            switch: self.clone(),
            leg,
        })
    }

    fn sink_and_state(&self) -> Result<(EventSink, MutexGuard<'_, State>), Error> {
        let st = self.shared.lock();
        let sink = st.sink.clone().ok_or_else(not_started)?;
        Ok((sink, st))
    }
}

impl State {
    fn extension_index(&self, number: &str) -> Option<usize> {
        self.extensions.iter().position(|e| e.number == number)
    }

    fn line_busy(&self, line: usize) -> bool {
        self.legs.values().any(|l| l.line == line)
    }

    fn party(&self, line: usize) -> PartyId {
        let e = &self.extensions[line];
        PartyId::named(e.number.clone(), e.name.clone())
    }

    fn new_call_id(&mut self) -> CallId {
        let id = CallId(self.next_call);
        self.next_call += 1;
        id
    }

    fn epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    fn new_leg(
        &mut self,
        sink: &EventSink,
        line: usize,
        state: CallState,
        info: CallInfo,
        peer: Peer,
        request: Option<RequestId>,
    ) -> CallLegId {
        let id = CallLegId(self.next_leg);
        self.next_leg += 1;
        let epoch = self.epoch();
        sink.new_call(NewCall {
            leg: id,
            line: LineId(line as u32),
            address: AddressId(0),
            state,
            info: info.clone(),
            request,
        });
        self.legs.insert(
            id,
            Leg {
                line,
                state,
                info,
                peer,
                epoch,
                dialed: String::new(),
                pending_caller: None,
            },
        );
        id
    }

    /// Moves a leg to `state` and reports it; an idle leg is removed.
    fn set_state(&mut self, sink: &EventSink, id: CallLegId, state: CallState) {
        let epoch = self.epoch();
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        if leg.state == state {
            return;
        }
        let accepting =
            leg.state.kind() == CallStateKind::Offering && state.kind() == CallStateKind::Accepted;
        if !accepting {
            leg.epoch = epoch;
        }
        leg.state = state;
        sink.call_state(id, state);
        if state.is_idle() {
            self.legs.remove(&id);
        }
    }

    fn set_info(&mut self, sink: &EventSink, id: CallLegId, change: impl FnOnce(&mut CallInfo)) {
        if let Some(leg) = self.legs.get_mut(&id) {
            change(&mut leg.info);
            sink.call_info(id, leg.info.clone());
        }
    }

    fn schedule(&self, shared: &Arc<Shared>, delay: Duration, leg: CallLegId, timer: Timer) {
        let Some(epoch) = self.legs.get(&leg).map(|l| l.epoch) else {
            return;
        };
        let shared = Arc::downgrade(shared);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(shared) = shared.upgrade() {
                let mut st = shared.lock();
                if st.legs.get(&leg).is_some_and(|l| l.epoch == epoch) {
                    st.fire(&shared, leg, timer);
                }
            }
        });
    }

    /// An offered leg starts ringing: ring 0 now, then one per ring period.
    fn start_alerting(&mut self, shared: &Arc<Shared>, leg: CallLegId) {
        self.fire(shared, leg, Timer::Ring { count: 0 });
    }

    fn fire(&mut self, shared: &Arc<Shared>, id: CallLegId, timer: Timer) {
        let Some(sink) = self.sink.clone() else {
            return;
        };
        let Some(leg) = self.legs.get(&id) else {
            return;
        };
        match timer {
            Timer::Ring { count } => {
                if matches!(
                    leg.state.kind(),
                    CallStateKind::Offering | CallStateKind::Accepted
                ) {
                    sink.line(
                        LineId(leg.line as u32),
                        LineEvent::Ringing {
                            address: AddressId(0),
                            count,
                        },
                    );
                    self.schedule(
                        shared,
                        shared.timing.ring_period,
                        id,
                        Timer::Ring { count: count + 1 },
                    );
                }
            }
            Timer::CallerId => {
                if let Some(caller) = self.legs.get_mut(&id).and_then(|l| l.pending_caller.take()) {
                    self.set_info(&sink, id, |i| i.caller = caller);
                }
            }
            Timer::NoAnswer => {
                // The called leg (internal call) or the calling leg (call to outside) times out.
                let peer = match &leg.peer {
                    Peer::Leg(p) => Some(*p),
                    _ => None,
                };
                match leg.state.kind() {
                    CallStateKind::Offering | CallStateKind::Accepted => {
                        self.set_state(
                            &sink,
                            id,
                            CallState::Disconnected(DisconnectReason::NoAnswer),
                        );
                        self.set_state(&sink, id, CallState::Idle);
                        if let Some(p) = peer {
                            self.unlink(p);
                            self.set_state(
                                &sink,
                                p,
                                CallState::Disconnected(DisconnectReason::NoAnswer),
                            );
                        }
                    }
                    CallStateKind::Ringback => {
                        self.unlink(id);
                        self.set_state(
                            &sink,
                            id,
                            CallState::Disconnected(DisconnectReason::NoAnswer),
                        );
                    }
                    _ => {}
                }
            }
            Timer::GiveUp => {
                if matches!(
                    leg.state.kind(),
                    CallStateKind::Offering | CallStateKind::Accepted
                ) {
                    self.far_end_clears(&sink, id, DisconnectReason::Normal);
                }
            }
            Timer::FarEndAnswers => {
                if leg.state.kind() == CallStateKind::Ringback {
                    let (connected, hang_up_after) = match &leg.peer {
                        Peer::Outside {
                            number,
                            name,
                            hang_up_after,
                        } => (
                            PartyId {
                                number: Some(number.clone()),
                                name: name.clone(),
                                presentation: Presentation::Allowed,
                            },
                            *hang_up_after,
                        ),
                        _ => return,
                    };
                    self.set_state(&sink, id, CallState::Connected(ConnectedMode::Active));
                    self.set_info(&sink, id, |i| i.connected = connected);
                    if let Some(after) = hang_up_after {
                        self.schedule(shared, after, id, Timer::FarEndHangsUp);
                    }
                }
            }
            Timer::FarEndHangsUp => self.far_end_clears(&sink, id, DisconnectReason::Normal),
        }
    }

    /// An outside party clears: a connected leg is disconnected (its owner drops it); a leg that was
    /// still being offered disconnects and goes idle, as the station never went off-hook.
    fn far_end_clears(&mut self, sink: &EventSink, id: CallLegId, reason: DisconnectReason) {
        let Some(leg) = self.legs.get(&id) else {
            return;
        };
        if !matches!(leg.peer, Peer::Outside { .. }) {
            return;
        }
        self.unlink(id);
        self.peer_cleared(sink, id, reason);
    }

    /// The other side of a leg went away: the leg disconnects, and if it was never answered it goes idle.
    fn peer_cleared(&mut self, sink: &EventSink, id: CallLegId, reason: DisconnectReason) {
        let Some(state) = self.legs.get(&id).map(|l| l.state.kind()) else {
            return;
        };
        match state {
            CallStateKind::Idle | CallStateKind::Disconnected => {}
            CallStateKind::Offering | CallStateKind::Accepted => {
                self.set_state(sink, id, CallState::Disconnected(reason));
                self.set_state(sink, id, CallState::Idle);
            }
            _ => self.set_state(sink, id, CallState::Disconnected(reason)),
        }
    }

    fn unlink(&mut self, id: CallLegId) {
        if let Some(l) = self.legs.get_mut(&id) {
            l.peer = Peer::None;
        }
    }

    /// Takes a leg's peer leg (and unlinks both).
    fn take_peer_leg(&mut self, id: CallLegId) -> Option<CallLegId> {
        let leg = self.legs.get_mut(&id)?;
        match std::mem::replace(&mut leg.peer, Peer::None) {
            Peer::Leg(p) => {
                self.unlink(p);
                Some(p)
            }
            other => {
                leg.peer = other;
                None
            }
        }
    }

    fn dial(
        &mut self,
        shared: &Arc<Shared>,
        sink: &EventSink,
        id: CallLegId,
        digits: &DialString,
    ) -> Result<(), Error> {
        let leg = self.legs.get_mut(&id).ok_or(Error::InvalidCallHandle)?;
        match leg.state.kind() {
            CallStateKind::DialTone | CallStateKind::Dialing => {}
            // Digits on an established call go in-band to the far end; nothing changes here.
            CallStateKind::Connected => return Ok(()),
            state => return Err(Error::InvalidCallState { state }),
        }
        leg.dialed.push_str(&digits.digits());
        if leg.dialed.is_empty() && digits.is_partial() {
            return Ok(());
        }
        self.set_state(sink, id, CallState::Dialing);
        if !digits.is_partial() {
            self.route(shared, sink, id);
        }
        Ok(())
    }

    /// Dialling is complete: find the destination and start the call towards it.
    fn route(&mut self, shared: &Arc<Shared>, sink: &EventSink, id: CallLegId) {
        let Some(leg) = self.legs.get(&id) else {
            return;
        };
        let number = leg.dialed.clone();
        let from_line = leg.line;
        let call_id = leg.info.call_id;
        self.set_info(sink, id, |i| i.called = PartyId::number(number.clone()));
        self.set_state(sink, id, CallState::Proceeding);
        if let Some(target) = self.extension_index(&number) {
            if target == from_line || self.line_busy(target) {
                self.set_state(sink, id, CallState::Busy(BusyMode::Station));
                return;
            }
            let info = CallInfo {
                call_id,
                origin: CallOrigin::Internal,
                reason: CallReason::Direct,
                media_mode: MediaModes::INTERACTIVE_VOICE,
                caller: self.party(from_line),
                called: self.party(target),
                ..CallInfo::default()
            };
            let callee = self.new_leg(
                sink,
                target,
                CallState::Offering(OfferingMode::Active),
                info,
                Peer::Leg(id),
                None,
            );
            if let Some(l) = self.legs.get_mut(&id) {
                l.peer = Peer::Leg(callee);
            }
            self.set_state(sink, id, CallState::Ringback);
            self.start_alerting(shared, callee);
            self.schedule(
                shared,
                shared.timing.no_answer_timeout,
                callee,
                Timer::NoAnswer,
            );
            return;
        }
        let Some(far) = self.far_ends.get(&number).cloned() else {
            self.set_state(
                sink,
                id,
                CallState::Disconnected(DisconnectReason::BadAddress),
            );
            return;
        };
        match far.answer {
            Answer::Busy => self.set_state(sink, id, CallState::Busy(BusyMode::Station)),
            Answer::Reject => {
                self.set_state(sink, id, CallState::Disconnected(DisconnectReason::Reject))
            }
            Answer::Unreachable => self.set_state(
                sink,
                id,
                CallState::Disconnected(DisconnectReason::Unreachable),
            ),
            Answer::AfterRings(_) | Answer::Never => {
                if let Some(l) = self.legs.get_mut(&id) {
                    l.peer = Peer::Outside {
                        number,
                        name: far.name.clone(),
                        hang_up_after: far.hang_up_after,
                    };
                }
                self.set_state(sink, id, CallState::Ringback);
                if let Answer::AfterRings(rings) = far.answer {
                    let after = shared.timing.ring_period.saturating_mul(rings);
                    if after < shared.timing.no_answer_timeout {
                        self.schedule(shared, after, id, Timer::FarEndAnswers);
                    }
                }
                self.schedule(shared, shared.timing.no_answer_timeout, id, Timer::NoAnswer);
            }
        }
    }

    fn answer(
        &mut self,
        shared: &Arc<Shared>,
        sink: &EventSink,
        id: CallLegId,
    ) -> Result<(), Error> {
        let leg = self.legs.get(&id).ok_or(Error::InvalidCallHandle)?;
        match leg.state.kind() {
            CallStateKind::Offering | CallStateKind::Accepted => {}
            state => return Err(Error::InvalidCallState { state }),
        }
        let peer = leg.peer.clone();
        let me = self.party(leg.line);
        self.set_state(sink, id, CallState::Connected(ConnectedMode::Active));
        match peer {
            Peer::Leg(caller) => {
                let caller_party = self.legs.get(&caller).map(|l| self.party(l.line));
                self.set_state(sink, caller, CallState::Connected(ConnectedMode::Active));
                self.set_info(sink, caller, |i| i.connected = me);
                if let Some(p) = caller_party {
                    self.set_info(sink, id, |i| i.connected = p);
                }
            }
            Peer::Outside {
                hang_up_after: Some(after),
                ..
            } => self.schedule(shared, after, id, Timer::FarEndHangsUp),
            _ => {}
        }
        Ok(())
    }

    fn drop_leg(
        &mut self,
        sink: &EventSink,
        id: CallLegId,
        peer_reason: DisconnectReason,
    ) -> Result<(), Error> {
        let leg = self.legs.get(&id).ok_or(Error::InvalidCallHandle)?;
        if leg.state.is_idle() {
            return Err(Error::InvalidCallState {
                state: CallStateKind::Idle,
            });
        }
        let peer = self.take_peer_leg(id);
        self.set_state(sink, id, CallState::Idle);
        if let Some(p) = peer {
            self.peer_cleared(sink, p, peer_reason);
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for SimSwitch {
    fn name(&self) -> &str {
        "simswitch"
    }

    async fn start(&self, sink: EventSink) -> Result<Vec<LineCaps>, Error> {
        let mut st = self.shared.lock();
        st.sink = Some(sink);
        Ok(st.extensions.iter().map(line_caps).collect())
    }

    async fn stop(&self) {
        let mut st = self.shared.lock();
        if let Some(sink) = st.sink.clone() {
            let legs: Vec<CallLegId> = st.legs.keys().copied().collect();
            for id in legs {
                st.set_state(&sink, id, CallState::Idle);
            }
        }
        st.sink = None;
    }

    async fn make_call(&self, request: MakeCall) -> Result<CallLegId, Error> {
        let (sink, mut st) = self.sink_and_state()?;
        let line = request.line.0 as usize;
        if line >= st.extensions.len() || request.address != AddressId(0) {
            return Err(Error::InvalidAddressId);
        }
        if st.line_busy(line) {
            return Err(Error::CallUnavailable);
        }
        let call_id = st.new_call_id();
        let info = CallInfo {
            call_id,
            origin: CallOrigin::Outbound,
            reason: CallReason::Direct,
            media_mode: request.media_mode,
            caller: st.party(line),
            ..CallInfo::default()
        };
        let leg = st.new_leg(
            &sink,
            line,
            CallState::DialTone(DialToneMode::Internal),
            info,
            Peer::None,
            Some(request.request),
        );
        if let Some(destination) = &request.destination {
            st.dial(&self.shared, &sink, leg, destination)?;
        }
        Ok(leg)
    }

    async fn dial(&self, leg: CallLegId, digits: &DialString) -> Result<(), Error> {
        let (sink, mut st) = self.sink_and_state()?;
        st.dial(&self.shared, &sink, leg, digits)
    }

    async fn accept(&self, leg: CallLegId) -> Result<(), Error> {
        let (sink, mut st) = self.sink_and_state()?;
        let state = st
            .legs
            .get(&leg)
            .ok_or(Error::InvalidCallHandle)?
            .state
            .kind();
        if state != CallStateKind::Offering {
            return Err(Error::InvalidCallState { state });
        }
        st.set_state(&sink, leg, CallState::Accepted);
        Ok(())
    }

    async fn answer(&self, leg: CallLegId) -> Result<(), Error> {
        let (sink, mut st) = self.sink_and_state()?;
        st.answer(&self.shared, &sink, leg)
    }

    async fn reject(&self, leg: CallLegId) -> Result<(), Error> {
        let (sink, mut st) = self.sink_and_state()?;
        let state = st
            .legs
            .get(&leg)
            .ok_or(Error::InvalidCallHandle)?
            .state
            .kind();
        if !matches!(state, CallStateKind::Offering | CallStateKind::Accepted) {
            return Err(Error::InvalidCallState { state });
        }
        st.drop_leg(&sink, leg, DisconnectReason::Reject)
    }

    async fn drop_call(&self, leg: CallLegId) -> Result<(), Error> {
        let (sink, mut st) = self.sink_and_state()?;
        st.drop_leg(&sink, leg, DisconnectReason::Normal)
    }
}

#[cfg(test)]
mod tests;
