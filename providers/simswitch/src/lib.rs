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
//! answer, reject, drop, hold, unhold, swap hold, blind transfer, redirect, secure, and generating and
//! monitoring digits. Each extension has two call appearances: one active call and one on hold.
//! Everything else returns `OperationUnavailable`.
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

mod agenda;
mod outbox;
mod script;
mod shell;
mod switch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agenda::Timer;
use async_trait::async_trait;
use outbox::Outbox;
use shell::{Shared, Turn};
use switch::{Forwarded, Peer, State};
use tapir_core::caps::{
    AddressCaps, AddressFeatureSet, DialCaps, ForwardModes, LineCaps, ParkModes, PickupModes,
    RemoveFromConference, TransferModes,
};
use tapir_core::dial::DialString;
use tapir_core::gate::{AddressOperation, CallOperation, FeatureSet};
use tapir_core::info::{CallInfo, CallOrigin, CallReason, PartyId, Presentation, Redirect};
use tapir_core::media::MediaModes;
use tapir_core::params::{
    CompletionMode, DigitMode, Forwarding, MakeCall, Origin, ParkMode, PickupTarget, RequestId,
    TransferMode,
};
use tapir_core::state::{CallState, DialToneMode, DisconnectReason};
use tapir_core::{AddressId, CallLegId, Error, LineId};
use tapir_provider::{EventSink, Provider};
use tokio::sync::Notify;
use tokio::time::Instant;

pub use script::{Answer, CallerId, CallerIdTiming, Extension, FarEnd, ParkLot, RingIn, Timing};

/// Builds a [`SimSwitch`].
#[derive(Clone, Debug, Default)]
pub struct SimSwitchBuilder {
    extensions: Vec<Extension>,
    far_ends: HashMap<String, FarEnd>,
    timing: Timing,
    park_lot: ParkLot,
    pickup_groups: HashMap<String, Vec<String>>,
    disabled: FeatureSet,
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
    /// Switches an operation off, to simulate a less capable switch: it leaves the capabilities and the
    /// switch refuses it with `OperationUnavailable`.
    pub fn disable(mut self, operation: CallOperation) -> Self {
        self.disabled = self.disabled.with(operation);
        self
    }
    /// The park lot (default: orbits 701–710, 60 s before a parked call comes back).
    pub fn park_lot(mut self, lot: ParkLot) -> Self {
        self.park_lot = lot;
        self
    }
    /// A pickup group: any member may pick up a call ringing at another member.
    pub fn pickup_group(
        mut self,
        name: impl Into<String>,
        members: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.pickup_groups
            .insert(name.into(), members.into_iter().map(Into::into).collect());
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
        for orbit in &self.park_lot.orbits {
            if !is_number(orbit, false) {
                return bad(format!("park orbit {orbit:?} is not digits"));
            }
            if !seen.insert(orbit.clone()) || self.far_ends.contains_key(orbit) {
                return bad(format!("park orbit {orbit} is also another number"));
            }
        }
        for (group, members) in &self.pickup_groups {
            if let Some(m) = members
                .iter()
                .find(|m| !self.extensions.iter().any(|e| &e.number == *m))
            {
                return bad(format!(
                    "pickup group {group} names {m}, which is not an extension"
                ));
            }
        }
        Ok(SimSwitch {
            shared: Arc::new(Shared {
                timing: self.timing,
                disabled: self.disabled,
                state: Mutex::new(State::new(
                    self.extensions,
                    self.far_ends,
                    self.park_lot,
                    self.pickup_groups,
                    self.timing,
                    Instant::now(),
                )),
                outbox: Outbox::default(),
                wake: Arc::new(Notify::new()),
                timer: Mutex::new(None),
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

/// A call from outside placed with [`SimSwitch::ring_in`]; the test's handle on the far end. It follows
/// the outside party through transfers and redirects.
#[derive(Clone, Debug)]
pub struct RemoteCall {
    switch: SimSwitch,
    party: u64,
}

impl RemoteCall {
    /// The leg the outside party is in a call with now, if it is still in one.
    pub fn leg(&self) -> Option<CallLegId> {
        self.switch
            .shared
            .lock()
            .outside
            .get(&self.party)
            .and_then(|o| o.leg)
    }
    /// The far end hangs up (or gives up, if the call was not answered yet).
    pub fn hang_up(&self) {
        let shared = &self.switch.shared;
        let started = shared.outbox.is_attached();
        let mut st = shared.turn();
        let leg = st.outside.get(&self.party).and_then(|o| o.leg);
        match (started, leg) {
            (true, Some(leg)) => st.far_end_clears(leg),
            (true, None) => {
                // Not in a call with any leg: it may be waiting in a park orbit.
                st.forget_parked(Peer::Outside(self.party));
                st.outside.remove(&self.party);
            }
            (false, _) => {
                st.outside.remove(&self.party);
            }
        }
    }
}

/// Parties a conference on the simulated switch can have.
pub const MAX_CONFERENCE_PARTIES: usize = 3;

fn not_started() -> Error {
    Error::OperationFailed {
        reason: "the simulated switch is not started".into(),
    }
}

fn line_caps(ext: &Extension, disabled: FeatureSet) -> LineCaps {
    LineCaps {
        name: format!("Extension {} ({})", ext.number, ext.name),
        addresses: vec![AddressCaps {
            call_features: FeatureSet::from_slice(&[
                CallOperation::Accept,
                CallOperation::Answer,
                CallOperation::Reject,
                CallOperation::Drop,
                CallOperation::Dial,
                CallOperation::Hold,
                CallOperation::Unhold,
                CallOperation::SwapHold,
                CallOperation::BlindTransfer,
                CallOperation::Redirect,
                CallOperation::SecureCall,
                CallOperation::GenerateDigits,
                CallOperation::MonitorDigits,
                CallOperation::SetupTransfer,
                CallOperation::CompleteTransfer,
                CallOperation::SetupConference,
                CallOperation::PrepareAddToConference,
                CallOperation::AddToConference,
                CallOperation::RemoveFromConference,
                CallOperation::Park,
                CallOperation::CompleteCall,
            ])
            .iter()
            .filter(|op| !disabled.contains(*op))
            .fold(FeatureSet::EMPTY, FeatureSet::with),
            address_features: AddressFeatureSet::from_slice(&[
                AddressOperation::MakeCall,
                AddressOperation::Unpark,
                AddressOperation::Pickup,
                AddressOperation::Forward,
            ]),
            forward_modes: ForwardModes {
                unconditional: true,
                busy: true,
                no_answer: true,
                do_not_disturb: true,
            },
            park_modes: ParkModes {
                directed: true,
                non_directed: true,
            },
            pickup_modes: PickupModes {
                directed: true,
                group: true,
            },
            max_active_calls: 1,
            max_on_hold: (switch::APPEARANCES - 1) as u32,
            max_on_hold_pending: 1,
            appearances: Some(switch::APPEARANCES as u32),
            max_conference: MAX_CONFERENCE_PARTIES as u32,
            max_transfer_conference: MAX_CONFERENCE_PARTIES as u32,
            transfer_modes: TransferModes {
                transfer: true,
                conference: true,
            },
            remove_from_conference: RemoveFromConference::Any,
            // Digits dialled on a connected call go on as tones.
            dial_connected: true,
            // A consultation call put on hold still joins its conference.
            conference_held: true,
            auto_reconnect: true,
            conference_drop: true,
            ..AddressCaps::basic(ext.number.clone())
        }],
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
        let mut st = self.started()?;
        let line = st
            .extension_index(&ring.to)
            .ok_or_else(|| Error::InvalidAddress {
                reason: format!("no extension {}", ring.to),
            })?;
        // Forwarding applies to calls from outside too (to another extension; an outside destination
        // would take the call off the switch, so it rings here instead).
        let mut reason = CallReason::Direct;
        let mut redirecting = PartyId::default();
        let line = match st.forwarded(line) {
            Forwarded::DoNotDisturb => return Err(Error::InUse),
            Forwarded::To(to, why) => match st.extension_index(&to) {
                Some(target) => {
                    reason = why;
                    redirecting = st.party(line);
                    target
                }
                None => line,
            },
            Forwarded::No => line,
        };
        if !st.can_take_call(line) {
            return Err(Error::InUse);
        }
        let caller = match &ring.from {
            CallerId::Number { number, name } => PartyId {
                number: Some(number.as_str().into()),
                name: name.as_deref().map(Into::into),
                presentation: Presentation::Allowed,
            },
            CallerId::Withheld => PartyId::blocked(),
            CallerId::OutOfArea => PartyId::out_of_area(),
        };
        let late = self.shared.timing.caller_id == CallerIdTiming::AfterFirstRing;
        let called = st.party(line);
        let call_id = st.new_call_id();
        let info = CallInfo {
            call_id,
            origin: CallOrigin::External,
            reason,
            redirect: Redirect::by(redirecting),
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
        // The outside party is already "answered": it is the caller.
        let party = st.new_outside(caller.clone(), ring.hang_up_after, true);
        let leg = st.offer(line, info, Peer::Outside(party));
        if let Some(l) = st.legs.get_mut(&leg) {
            l.pending_caller = late.then(|| Box::new(caller));
        }
        if let Some(give_up) = ring.give_up_after {
            st.schedule(give_up, leg, Timer::GiveUp);
        }
        if late {
            st.schedule(self.shared.timing.ring_period / 2, leg, Timer::CallerId);
        }
        Ok(RemoteCall {
            switch: self.clone(),
            party,
        })
    }

    /// The extension an engine request names, checked.
    fn local_line(&self, st: &State, origin: Origin) -> Result<usize, Error> {
        let line = origin.line.0 as usize;
        if line >= st.extensions.len() || origin.address != AddressId(0) {
            return Err(Error::InvalidAddressId);
        }
        Ok(line)
    }

    /// Refuses an operation switched off with [`SimSwitchBuilder::disable`], else locks the switch.
    fn op(&self, op: CallOperation) -> Result<Turn<'_>, Error> {
        if self.shared.disabled.contains(op) {
            return Err(Error::OperationUnavailable {
                operation: op.name(),
            });
        }
        self.started()
    }

    /// A turn of the switch, once it is started.
    fn started(&self) -> Result<Turn<'_>, Error> {
        if !self.shared.outbox.is_attached() {
            return Err(not_started());
        }
        Ok(self.shared.turn())
    }
}

#[async_trait]
impl Provider for SimSwitch {
    fn name(&self) -> &str {
        "simswitch"
    }

    async fn start(&self, sink: EventSink) -> Result<Vec<LineCaps>, Error> {
        self.shared.outbox.attach(Some(sink));
        Ok(self
            .shared
            .lock()
            .extensions
            .iter()
            .map(|e| line_caps(e, self.shared.disabled))
            .collect())
    }

    async fn stop(&self) {
        {
            let mut st = self.shared.turn();
            let legs: Vec<CallLegId> = st.legs.keys().copied().collect();
            for id in legs {
                st.set_state(id, CallState::Idle);
            }
            st.outside.clear();
        }
        self.shared.outbox.attach(None);
    }

    async fn make_call(&self, request: MakeCall) -> Result<CallLegId, Error> {
        let mut st = self.started()?;
        let line = request.line.0 as usize;
        if line >= st.extensions.len() || request.address != AddressId(0) {
            return Err(Error::InvalidAddressId);
        }
        if !st.can_take_call(line) {
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
            line,
            CallState::DialTone(DialToneMode::Internal),
            info,
            Peer::None,
            Some(request.request),
        );
        if let Some(destination) = &request.destination {
            st.dial(leg, destination)?;
        }
        Ok(leg)
    }

    async fn dial(&self, leg: CallLegId, digits: &DialString) -> Result<(), Error> {
        let mut st = self.op(CallOperation::Dial)?;
        st.dial(leg, digits)
    }

    async fn accept(&self, leg: CallLegId) -> Result<(), Error> {
        let mut st = self.op(CallOperation::Accept)?;
        st.accept(leg)
    }

    async fn answer(&self, leg: CallLegId) -> Result<(), Error> {
        let mut st = self.op(CallOperation::Answer)?;
        st.answer(leg)
    }

    async fn reject(&self, leg: CallLegId) -> Result<(), Error> {
        let mut st = self.op(CallOperation::Reject)?;
        st.reject(leg)
    }

    async fn drop_call(&self, leg: CallLegId) -> Result<(), Error> {
        let mut st = self.op(CallOperation::Drop)?;
        st.drop_leg(leg, DisconnectReason::Normal)
    }

    async fn hold(&self, leg: CallLegId) -> Result<(), Error> {
        let mut st = self.op(CallOperation::Hold)?;
        st.hold(leg)
    }

    async fn unhold(&self, leg: CallLegId) -> Result<(), Error> {
        let mut st = self.op(CallOperation::Unhold)?;
        st.unhold(leg)
    }

    async fn swap_hold(&self, active: CallLegId, held: CallLegId) -> Result<(), Error> {
        let mut st = self.op(CallOperation::SwapHold)?;
        st.swap_hold(active, held)
    }

    async fn blind_transfer(&self, leg: CallLegId, destination: &DialString) -> Result<(), Error> {
        let mut st = self.op(CallOperation::BlindTransfer)?;
        st.blind_transfer(leg, destination)
    }

    async fn redirect(&self, leg: CallLegId, destination: &DialString) -> Result<(), Error> {
        let mut st = self.op(CallOperation::Redirect)?;
        st.redirect(leg, destination)
    }

    async fn secure_call(&self, leg: CallLegId) -> Result<(), Error> {
        let mut st = self.op(CallOperation::SecureCall)?;
        st.secure(leg)
    }

    async fn generate_digits(
        &self,
        leg: CallLegId,
        digits: &str,
        mode: DigitMode,
    ) -> Result<(), Error> {
        let mut st = self.op(CallOperation::GenerateDigits)?;
        st.generate_digits(leg, digits, mode)
    }

    async fn setup_transfer(&self, leg: CallLegId, request: RequestId) -> Result<CallLegId, Error> {
        let mut st = self.op(CallOperation::SetupTransfer)?;
        st.setup_transfer(leg, request)
    }

    async fn complete_transfer(
        &self,
        held: CallLegId,
        consultation: CallLegId,
        mode: TransferMode,
        request: RequestId,
    ) -> Result<Option<CallLegId>, Error> {
        let mut st = self.op(CallOperation::CompleteTransfer)?;
        st.complete_transfer(
            held,
            consultation,
            mode == TransferMode::Conference,
            request,
        )
    }

    async fn setup_conference(
        &self,
        leg: Option<CallLegId>,
        origin: Origin,
    ) -> Result<(CallLegId, CallLegId), Error> {
        let mut st = self.op(CallOperation::SetupConference)?;
        // A conference is always set up from an existing call here (no "setup conference null").
        let leg = leg.ok_or(Error::OperationUnavailable {
            operation: "setup-conference",
        })?;
        st.setup_conference(leg, origin.request)
    }

    async fn prepare_add_to_conference(
        &self,
        conference: CallLegId,
        request: RequestId,
    ) -> Result<CallLegId, Error> {
        let mut st = self.op(CallOperation::PrepareAddToConference)?;
        st.prepare_add_to_conference(conference, request, MAX_CONFERENCE_PARTIES)
    }

    async fn add_to_conference(
        &self,
        conference: CallLegId,
        consultation: CallLegId,
    ) -> Result<(), Error> {
        let mut st = self.op(CallOperation::AddToConference)?;
        st.add_to_conference(conference, consultation, MAX_CONFERENCE_PARTIES)
    }

    async fn remove_from_conference(&self, leg: CallLegId) -> Result<(), Error> {
        let mut st = self.op(CallOperation::RemoveFromConference)?;
        st.remove_from_conference(leg)
    }

    async fn park(&self, leg: CallLegId, mode: &ParkMode) -> Result<String, Error> {
        let mut st = self.op(CallOperation::Park)?;
        let orbit = match mode {
            ParkMode::Directed(o) => Some(o.as_str()),
            ParkMode::NonDirected => None,
        };
        st.park(leg, orbit)
    }

    async fn unpark(&self, origin: Origin, orbit: &str) -> Result<CallLegId, Error> {
        let mut st = self.started()?;
        let line = self.local_line(&st, origin)?;
        st.unpark(line, orbit, origin.request)
    }

    async fn pickup(&self, origin: Origin, target: &PickupTarget) -> Result<CallLegId, Error> {
        let mut st = self.started()?;
        let line = self.local_line(&st, origin)?;
        st.pickup(line, target, origin.request)
    }

    async fn forward(
        &self,
        line: LineId,
        address: AddressId,
        forwarding: &Forwarding,
    ) -> Result<(), Error> {
        let mut st = self.started()?;
        let line = self.local_line(
            &st,
            Origin {
                request: RequestId(0),
                line,
                address,
            },
        )?;
        st.set_forwarding(line, forwarding)
    }

    async fn complete_call(&self, leg: CallLegId, mode: CompletionMode) -> Result<u32, Error> {
        let mut st = self.op(CallOperation::CompleteCall)?;
        st.complete_call(leg, mode)
    }

    async fn cancel_call_completion(&self, line: LineId, completion: u32) -> Result<(), Error> {
        let mut st = self.op(CallOperation::CompleteCall)?;
        let line = self.local_line(
            &st,
            Origin {
                request: RequestId(0),
                line,
                address: AddressId(0),
            },
        )?;
        st.cancel_completion(line, completion)
    }

    async fn monitor_digits(&self, leg: CallLegId, mode: Option<DigitMode>) -> Result<(), Error> {
        let mut st = self.op(CallOperation::MonitorDigits)?;
        st.monitor_digits(leg, mode)
    }
}

#[cfg(test)]
mod tests;
