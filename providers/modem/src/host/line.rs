//! The modem's one line as the host sees it: the call on it, and what each thing the modem says (a
//! ring, a caller-ID item, a result code nobody was waiting for, a `<DLE>` event) and each request
//! means for that call.
//!
//! A value changed through `&mut self`: the time comes in with every input, the provider events it
//! produces queue up until [`Line::take_events`], and where the modem has to be told something (go on
//! hook, abort a dial) a method says so and the caller writes it. How a data dial or an answer ended
//! is polled with [`Line::take_attempt_outcome`], so whoever waits for it can be told.

use std::sync::Arc;
use std::time::Duration;

use tapir_core::dial::{DialString, is_dtmf_digit};
use tapir_core::info::{CallInfo, CallOrigin, PartyId, Presentation};
use tapir_core::media::MediaModes;
use tapir_core::params::{DigitMode, RequestId};
use tapir_core::state::{CallState, ConnectedMode, DialToneMode, DisconnectReason, OfferingMode};
use tapir_core::{AddressId, CallId, CallLegId, Error, LineId};
use tapir_provider::{LineEvent, NewCall, ProviderEvent};
use tokio::time::Instant;

use super::reader::Final;

/// The provider's only line.
pub(crate) const LINE: LineId = LineId(0);
/// The line's only address.
pub(crate) const ADDRESS: AddressId = AddressId(0);
/// The carrier wait (S7) the provider sets at the modem.
pub(crate) const CARRIER_WAIT: Duration = Duration::from_secs(60);

/// What the modem is doing for the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Ringing; the modem is on hook.
    Offered,
    /// Off hook in command state (dial tone, partial dial, voice call).
    OffHook,
    /// A data dial is running; its result code decides.
    Dialing,
    /// `ATA` is running.
    Answering,
    /// Connected as data; the modem is online.
    Online,
    /// The far end or the network ended it; the modem is on hook.
    Ended,
}

struct ActiveCall {
    leg: CallLegId,
    state: CallState,
    info: CallInfo,
    phase: Phase,
    voice: bool,
    monitor_digits: bool,
    rings: u32,
    /// An offered call is gone when no ring comes by then.
    ring_deadline: Option<Instant>,
}

/// A data dial or `ATA` waiting for its result code.
#[derive(Clone, Copy)]
struct Attempt {
    /// When the provider gives up waiting.
    deadline: Instant,
    /// When the dial or answer was sent (for telling "no answer" from "unreachable").
    started: Instant,
}

/// How to put the modem on hook, by what it is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HangUp {
    /// Nothing to tell the modem: the call is only ringing, or already on hook.
    Nothing,
    /// A call attempt is running: any byte aborts it (`NO CARRIER` follows).
    Abort,
    /// Online: leave data mode (DTR, or guard time and `+++`), then `ATH`.
    Escape,
    /// In command state: `ATH`.
    Ath,
}

/// How a voice or partial dial (`ATD…;`, which waits for `OK`) ended.
pub(crate) enum Dialled {
    /// `OK`.
    Ok,
    /// Another final result code.
    Failed(Final),
}

/// The host's view of the line and its call.
pub(crate) struct Line {
    number: String,
    /// An offered call is gone when no `RING` came for this long.
    ring_gone: Duration,
    /// How long a data dial or answer may take before the provider gives up.
    call_setup: Duration,
    /// The modem does voice (`+FCLASS=8`).
    voice_capable: bool,
    /// The modem reports caller ID.
    caller_id: bool,
    /// The media mode calls from outside are offered and answered with.
    incoming: MediaModes,
    call: Option<ActiveCall>,
    next_leg: u64,
    next_call_id: u64,
    /// A dropped offered call keeps ringing at the modem; its rings are ignored until they stop.
    ignore_rings_until: Option<Instant>,
    attempt: Option<Attempt>,
    /// How the last attempt ended, until taken.
    attempt_outcome: Option<Result<(), Error>>,
    /// Caller ID changed; reported once the bytes read so far are handled.
    caller_id_changed: bool,
    events: Vec<ProviderEvent>,
}

impl Line {
    pub(crate) fn new(
        number: String,
        ring_gone: Duration,
        call_setup: Duration,
        incoming: MediaModes,
    ) -> Self {
        Self {
            number,
            ring_gone,
            call_setup,
            voice_capable: false,
            caller_id: false,
            incoming,
            call: None,
            next_leg: 1,
            next_call_id: 1,
            ignore_rings_until: None,
            attempt: None,
            attempt_outcome: None,
            caller_id_changed: false,
            events: Vec::new(),
        }
    }

    /// What initialising the modem found out: voice, and caller ID.
    pub(crate) fn modem_found(&mut self, voice: bool, caller_id: bool) {
        self.voice_capable = voice;
        self.caller_id = caller_id;
    }

    pub(crate) fn voice_capable(&self) -> bool {
        self.voice_capable
    }

    pub(crate) fn has_call(&self) -> bool {
        self.call.is_some()
    }

    /// The provider events produced so far, in order.
    pub(crate) fn take_events(&mut self) -> Vec<ProviderEvent> {
        std::mem::take(&mut self.events)
    }

    /// How the last data dial or answer ended, once: `Ok` when it connected.
    pub(crate) fn take_attempt_outcome(&mut self) -> Option<Result<(), Error>> {
        self.attempt_outcome.take()
    }

    /// When [`timer`](Self::timer) is next needed.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [
            self.call.as_ref().and_then(|c| c.ring_deadline),
            self.attempt.map(|a| a.deadline),
            self.ignore_rings_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- reporting ----

    fn emit_line(&mut self, event: LineEvent) {
        self.events.push(ProviderEvent::Line { line: LINE, event });
    }

    fn set_state(&mut self, state: CallState) {
        let Some(c) = self.call.as_mut() else {
            return;
        };
        if c.state != state {
            c.state = state;
            self.events
                .push(ProviderEvent::CallState { leg: c.leg, state });
        }
        if state == CallState::Idle {
            self.call = None;
        }
    }

    fn set_phase(&mut self, phase: Phase) {
        if let Some(c) = self.call.as_mut() {
            c.phase = phase;
        }
    }

    fn end_attempt(&mut self, outcome: Result<(), Error>) {
        if self.attempt.take().is_some() {
            self.attempt_outcome = Some(outcome);
        }
    }

    /// The call is over: disconnected (if it was not already), then idle. A call attempt still
    /// waiting ends with an error.
    pub(crate) fn end_call(&mut self, reason: DisconnectReason) {
        self.end_attempt(Err(failed("the call ended")));
        if self
            .call
            .as_ref()
            .is_some_and(|c| !matches!(c.state, CallState::Disconnected(_)))
        {
            self.set_state(CallState::Disconnected(reason));
        }
        self.set_state(CallState::Idle);
    }

    /// The far end or the network ended the call; it stays disconnected until dropped.
    fn disconnected(&mut self, reason: DisconnectReason) {
        if let Some(c) = self.call.as_mut() {
            c.phase = Phase::Ended;
            c.ring_deadline = None;
        }
        self.set_state(CallState::Disconnected(reason));
    }

    fn new_leg(&mut self) -> CallLegId {
        let leg = CallLegId(self.next_leg);
        self.next_leg += 1;
        leg
    }

    fn new_call_id(&mut self) -> CallId {
        let id = CallId(self.next_call_id);
        self.next_call_id += 1;
        id
    }

    fn report_new(&mut self, call: ActiveCall, request: Option<RequestId>) {
        self.events.push(ProviderEvent::NewCall(NewCall {
            leg: call.leg,
            line: LINE,
            address: ADDRESS,
            state: call.state,
            info: Arc::new(call.info.clone()),
            request,
        }));
        self.call = Some(call);
    }

    // ---- what the modem says ----

    /// `RING` at `now`: a new offered call, or the next ring of the one offered.
    pub(crate) fn ring(&mut self, now: Instant) {
        if self.ignore_rings_until.is_some() {
            self.ignore_rings_until = Some(now + self.ring_gone);
            return;
        }
        let ring_gone = self.ring_gone;
        if let Some(c) = self.call.as_mut() {
            if c.phase == Phase::Offered {
                c.rings += 1;
                c.ring_deadline = Some(now + ring_gone);
                let count = c.rings;
                self.emit_line(LineEvent::Ringing {
                    address: ADDRESS,
                    count,
                });
            }
            return;
        }
        let leg = self.new_leg();
        let voice = self.voice_capable && self.incoming != MediaModes::DATA_MODEM;
        let info = CallInfo {
            call_id: self.new_call_id(),
            origin: CallOrigin::External,
            media_mode: if voice {
                self.incoming
            } else {
                MediaModes::DATA_MODEM
            },
            caller: PartyId {
                presentation: if self.caller_id {
                    Presentation::Unknown
                } else {
                    Presentation::Unavailable
                },
                ..PartyId::default()
            },
            called: PartyId::number(self.number.clone()),
            ..CallInfo::default()
        };
        self.report_new(
            ActiveCall {
                leg,
                state: CallState::Offering(OfferingMode::Active),
                info,
                phase: Phase::Offered,
                voice,
                monitor_digits: false,
                rings: 0,
                ring_deadline: Some(now + ring_gone),
            },
            None,
        );
        self.emit_line(LineEvent::Ringing {
            address: ADDRESS,
            count: 0,
        });
    }

    /// One caller-ID item (`NMBR`, `NAME`; `P` private, `O` out of area) for the offered call.
    pub(crate) fn caller_id_item(&mut self, tag: &str, value: &str) {
        let Some(c) = self.call.as_mut().filter(|c| c.phase == Phase::Offered) else {
            return;
        };
        let caller = &mut c.info.caller;
        match (tag, value) {
            ("NMBR", "P") => *caller = PartyId::blocked(),
            ("NMBR", "O") => *caller = PartyId::out_of_area(),
            ("NMBR", n) => {
                caller.number = Some(n.into());
                caller.presentation = Presentation::Allowed;
            }
            ("NAME", n) if caller.presentation != Presentation::Blocked => {
                caller.name = Some(n.into());
            }
            _ => return,
        }
        self.caller_id_changed = true;
    }

    /// Everything read so far is handled: caller-ID items come as a block of lines, reported as one
    /// change.
    pub(crate) fn read_done(&mut self) {
        if std::mem::take(&mut self.caller_id_changed) {
            if let Some(c) = &self.call {
                let event = ProviderEvent::CallInfo {
                    leg: c.leg,
                    info: Arc::new(c.info.clone()),
                };
                self.events.push(event);
            }
        }
    }

    /// A voice-mode `<DLE>` event: a digit (reported while monitored), or the far end gone.
    pub(crate) fn dle(&mut self, code: u8) {
        let Some(c) = self
            .call
            .as_ref()
            .filter(|c| c.voice && c.phase == Phase::OffHook)
        else {
            return;
        };
        let digit = char::from(code);
        match digit {
            d if is_dtmf_digit(d) && c.monitor_digits => {
                let leg = c.leg;
                self.events.push(ProviderEvent::Digit {
                    leg,
                    digit,
                    mode: DigitMode::Dtmf,
                });
            }
            // Busy (reorder) tone or loop-current break: the far end hung up.
            'b' | 'K' | 'l' => self.disconnected(DisconnectReason::Normal),
            _ => {}
        }
    }

    /// A final result code no command was waiting for, at `now`: the end of a data dial or answer,
    /// or the carrier lost on a data call.
    pub(crate) fn unsolicited_final(&mut self, now: Instant, f: Final) {
        let Some(phase) = self.call.as_ref().map(|c| c.phase) else {
            tracing::debug!(number = %self.number, ?f, "result code without a call");
            return;
        };
        match phase {
            Phase::Dialing | Phase::Answering => {
                let attempt = self.attempt;
                match f {
                    Final::Connect(_) => {
                        self.set_phase(Phase::Online);
                        self.set_state(CallState::Connected(ConnectedMode::Active));
                        self.end_attempt(Ok(()));
                    }
                    Final::Vcon | Final::Ok => {
                        self.set_phase(Phase::OffHook);
                        self.set_state(CallState::Connected(ConnectedMode::Active));
                        self.end_attempt(Ok(()));
                    }
                    other => {
                        // A data dial that rang for the whole S7 was not answered; sooner, the
                        // number could not be reached.
                        let rang_out = attempt.is_some_and(|a| {
                            now.saturating_duration_since(a.started) + Duration::from_secs(1)
                                >= CARRIER_WAIT
                        });
                        let answering = phase == Phase::Answering;
                        self.disconnected(failure_reason(other, answering, rang_out));
                        self.end_attempt(Err(failed(&format!("the modem answered {other:?}"))));
                    }
                }
            }
            Phase::Online if f == Final::NoCarrier => self.disconnected(DisconnectReason::Normal),
            _ => tracing::debug!(number = %self.number, ?f, ?phase, "result code ignored"),
        }
    }

    /// Runs what is due at `now`. True when a call attempt ran out of time: the modem must be told
    /// to abort it.
    pub(crate) fn timer(&mut self, now: Instant) -> bool {
        if self
            .call
            .as_ref()
            .and_then(|c| c.ring_deadline)
            .is_some_and(|d| d <= now)
        {
            tracing::debug!(number = %self.number, "rings stopped: the caller gave up");
            self.disconnected(DisconnectReason::Normal);
            self.set_state(CallState::Idle);
        }
        if self.ignore_rings_until.is_some_and(|d| d <= now) {
            self.ignore_rings_until = None;
        }
        if self.attempt.is_some_and(|a| a.deadline <= now) {
            tracing::warn!(number = %self.number, "no result code for the call attempt; hanging up");
            self.disconnected(DisconnectReason::NoAnswer);
            self.end_attempt(Err(failed("the modem gave no result code")));
            return true;
        }
        false
    }

    // ---- requests ----

    fn leg(&mut self, leg: CallLegId) -> Result<&mut ActiveCall, Error> {
        self.call
            .as_mut()
            .filter(|c| c.leg == leg)
            .ok_or(Error::CallUnavailable)
    }

    /// Whether a new call can be made now, on a line `in_service` or not.
    pub(crate) fn usable(&self, in_service: bool) -> Result<(), Error> {
        if !in_service {
            return Err(Error::ResourceUnavailable {
                what: "the modem line, which is out of service",
            });
        }
        if self.call.is_some() || self.ignore_rings_until.is_some() {
            return Err(Error::ResourceUnavailable {
                what: "the modem's only call",
            });
        }
        Ok(())
    }

    /// Whether a call in `media_mode` is a voice call on this modem (data otherwise), or not
    /// possible.
    pub(crate) fn voice_for(&self, media_mode: MediaModes) -> Result<bool, Error> {
        if media_mode == MediaModes::DATA_MODEM {
            Ok(false)
        } else if self.voice_capable
            && (media_mode == MediaModes::INTERACTIVE_VOICE
                || media_mode == MediaModes::AUTOMATED_VOICE)
        {
            Ok(true)
        } else {
            Err(Error::InvalidMediaMode)
        }
    }

    /// A call made by `request`: dial tone (the modem is off hook, for a later dial) or dialling
    /// `destination`. Reported before it returns.
    pub(crate) fn place(
        &mut self,
        request: RequestId,
        destination: Option<&DialString>,
        media_mode: MediaModes,
        voice: bool,
    ) -> CallLegId {
        let leg = self.new_leg();
        let info = CallInfo {
            call_id: self.new_call_id(),
            origin: CallOrigin::Outbound,
            media_mode,
            caller: PartyId::number(self.number.clone()),
            called: destination
                .map(|d| PartyId::number(d.digits()))
                .unwrap_or_default(),
            ..CallInfo::default()
        };
        let state = match destination {
            Some(_) => CallState::Dialing,
            None => CallState::DialTone(DialToneMode::Normal),
        };
        self.report_new(
            ActiveCall {
                leg,
                state,
                info,
                phase: Phase::OffHook,
                voice,
                monitor_digits: false,
                rings: 0,
                ring_deadline: None,
            },
            Some(request),
        );
        leg
    }

    /// Whether dialling on `leg` now is a voice dial (`ATD…;` waits for `OK`); refuses a call that is
    /// not waiting for digits.
    pub(crate) fn dial(&mut self, leg: CallLegId) -> Result<(), Error> {
        let c = self.leg(leg)?;
        if c.phase != Phase::OffHook
            || !matches!(c.state, CallState::DialTone(_) | CallState::Dialing)
        {
            return Err(wrong_state(c.state));
        }
        self.set_state(CallState::Dialing);
        Ok(())
    }

    /// Whether the call's dial waits for `OK` (a voice call, or `partial` digits) rather than
    /// running on as a data dial.
    pub(crate) fn dial_waits(&self, partial: bool) -> bool {
        partial || self.call.as_ref().is_some_and(|c| c.voice)
    }

    /// A dial that waited for `OK` ended.
    pub(crate) fn dialled(&mut self, partial: bool, result: Dialled) {
        match result {
            Dialled::Ok if partial => self.set_state(CallState::Dialing),
            Dialled::Ok => {
                // A voice modem cannot tell when the far end answers: connected once dialled.
                self.set_state(CallState::Proceeding);
                self.set_state(CallState::Connected(ConnectedMode::Active));
            }
            Dialled::Failed(f) => self.disconnected(failure_reason(f, false, false)),
        }
    }

    /// A data dial was sent at `now`; its result code comes later.
    pub(crate) fn data_dial_sent(&mut self, now: Instant) {
        self.set_phase(Phase::Dialing);
        self.attempt = Some(Attempt {
            deadline: now + self.call_setup,
            started: now,
        });
        self.set_state(CallState::Proceeding);
    }

    /// Accepting an offered call.
    pub(crate) fn accept(&mut self, leg: CallLegId) -> Result<(), Error> {
        let c = self.leg(leg)?;
        if c.phase != Phase::Offered || !matches!(c.state, CallState::Offering(_)) {
            return Err(wrong_state(c.state));
        }
        self.set_state(CallState::Accepted);
        Ok(())
    }

    /// Answering an offered call: whether it is a voice call. Its rings no longer count.
    pub(crate) fn answer(&mut self, leg: CallLegId) -> Result<bool, Error> {
        let c = self.leg(leg)?;
        if c.phase != Phase::Offered {
            return Err(wrong_state(c.state));
        }
        c.ring_deadline = None;
        Ok(c.voice)
    }

    /// A voice answer (`AT+VLS=1`) got `OK`.
    pub(crate) fn voice_answered(&mut self) {
        self.set_phase(Phase::OffHook);
        self.set_state(CallState::Connected(ConnectedMode::Active));
    }

    /// `ATA` was sent at `now`; its result code comes later.
    pub(crate) fn data_answer_sent(&mut self, now: Instant) {
        self.set_phase(Phase::Answering);
        self.attempt = Some(Attempt {
            deadline: now + self.call_setup,
            started: now,
        });
    }

    /// Refusing is for a call still ringing; an answered one is dropped, not refused.
    pub(crate) fn rejectable(&mut self, leg: CallLegId) -> Result<(), Error> {
        let c = self.leg(leg)?;
        if c.phase != Phase::Offered {
            return Err(wrong_state(c.state));
        }
        Ok(())
    }

    /// Dropping `leg` at `now`: what the modem must be told before the call ends with
    /// [`end_call`](Self::end_call).
    pub(crate) fn drop_call(&mut self, now: Instant, leg: CallLegId) -> Result<HangUp, Error> {
        let c = self.leg(leg)?;
        Ok(match (c.phase, c.voice) {
            (Phase::Offered, _) => {
                // The modem keeps ringing until the caller gives up; those rings are not a new call.
                self.ignore_rings_until = Some(now + self.ring_gone);
                HangUp::Nothing
            }
            (Phase::Ended, false) => HangUp::Nothing,
            _ => self.hang_up(),
        })
    }

    /// Putting the modem on hook, whatever it is doing: how. A running attempt ends.
    pub(crate) fn hang_up(&mut self) -> HangUp {
        match self.call.as_ref().map(|c| c.phase) {
            Some(Phase::Dialing | Phase::Answering) => {
                self.end_attempt(Err(failed("dropped while answering")));
                HangUp::Abort
            }
            Some(Phase::Online) => HangUp::Escape,
            _ => HangUp::Ath,
        }
    }

    /// Sending `digits` on `leg` (`AT+VTS`): only on a connected voice call, only DTMF digits.
    pub(crate) fn digits(&mut self, leg: CallLegId, digits: &str) -> Result<(), Error> {
        let c = self.leg(leg)?;
        if !c.voice || c.phase != Phase::OffHook || !matches!(c.state, CallState::Connected(_)) {
            return Err(wrong_state(c.state));
        }
        if digits.is_empty() || !digits.chars().all(is_dtmf_digit) {
            return Err(Error::InvalidParameter {
                reason: format!("{digits:?} is not a string of DTMF digits"),
            });
        }
        Ok(())
    }

    /// Turning digit monitoring on or off; a call that has ended carries no more digits.
    pub(crate) fn monitor(&mut self, leg: CallLegId, on: bool) -> Result<(), Error> {
        let c = self.leg(leg)?;
        if matches!(c.state, CallState::Disconnected(_)) {
            return Err(wrong_state(c.state));
        }
        c.monitor_digits = on;
        Ok(())
    }
}

/// The one mapping from the result code that ended a call attempt to the reason it was disconnected.
/// `rang_out`: a data dial that ended with NO CARRIER after ringing for the whole S7 was not answered;
/// sooner, the number could not be reached.
fn failure_reason(f: Final, answering: bool, rang_out: bool) -> DisconnectReason {
    match f {
        Final::Busy => DisconnectReason::Busy,
        Final::NoDialTone => DisconnectReason::NoDialTone,
        Final::NoAnswer => DisconnectReason::NoAnswer,
        Final::NoCarrier if answering => DisconnectReason::Unavailable,
        Final::NoCarrier if rang_out => DisconnectReason::NoAnswer,
        Final::NoCarrier => DisconnectReason::Unreachable,
        _ => DisconnectReason::Unknown,
    }
}

/// An operation the modem could not carry out.
pub(crate) fn failed(reason: &str) -> Error {
    Error::OperationFailed {
        reason: reason.to_owned(),
    }
}

fn wrong_state(state: CallState) -> Error {
    Error::InvalidCallState {
        state: state.kind(),
    }
}

#[cfg(test)]
mod tests;
