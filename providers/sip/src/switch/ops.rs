//! The provider's operations, as the engine asks for them.

use tapir_core::gate::AddressUsage;

use super::*;

impl Switch {
    /// Starts the provider operation `op`; its result comes out as [`Output::Done`], now or later.
    pub(crate) fn command(&mut self, now: Instant, op: OpId, cmd: Command) {
        self.last_now = now;
        let r = match cmd {
            Command::MakeCall(m) => self.make_call(now, op, m),
            Command::Dial(leg, d) => self.dial(now, op, leg, &d),
            Command::Accept(leg) => self.accept(leg),
            Command::Answer(leg) => self.answer(op, leg),
            Command::Reject(leg) => self.reject(leg),
            Command::Drop(leg) => self.drop_leg(leg),
            Command::Hold(leg) => self.hold(now, op, leg, true),
            Command::Unhold(leg) => self.hold(now, op, leg, false),
            Command::GenerateDigits(leg, digits, mode) => self.generate(op, leg, &digits, mode),
            Command::MonitorDigits(leg, on) => self.live(leg).map(|l| {
                l.digits = on;
                Some(Done::Unit)
            }),
            Command::SwapHold(active, held) => self.swap_hold(now, op, active, held),
            Command::BlindTransfer(leg, d) => self.blind_transfer(now, leg, &d.digits()),
            Command::Redirect(leg, d) => self.redirect(now, leg, &d.digits()),
            Command::SetupTransfer(leg, request) => self.setup_transfer(now, op, leg, request),
            Command::CompleteTransfer(held, consult, mode) => {
                self.complete_transfer(now, op, held, consult, mode)
            }
            Command::Park(leg, mode) => self.park_call(now, leg, &mode),
            Command::Unpark(origin, orbit) => self.unpark(now, op, origin, &orbit),
            Command::Pickup(origin, target) => self.pickup(now, op, origin, &target),
            Command::Forward(line, address, f) => self.forward(line, address, f),
        };
        match r {
            Ok(Some(d)) => self.done(op, Ok(d)),
            Ok(None) => {} // finishes later
            Err(e) => {
                self.ops.remove(&op);
                self.out.push_back(Output::Done(op, Err(e)));
            }
        }
    }

    pub(super) fn live(&mut self, leg: CallLegId) -> Result<&mut Leg, Error> {
        match self.legs.get_mut(&leg) {
            Some(l) if l.reported => Ok(l),
            // An unknown leg, or one the engine was never told of: it has gone idle.
            _ => Err(Error::InvalidCallState {
                state: CallStateKind::Idle,
            }),
        }
    }

    pub(super) fn state_of(&self, leg: CallLegId) -> CallStateKind {
        self.legs
            .get(&leg)
            .filter(|l| l.reported)
            .map(|l| l.state.kind())
            .unwrap_or(CallStateKind::Idle)
    }

    /// Refuses taking a call back while another call than `except` is active on `line`: the line
    /// declares one active call (`max_active_calls`), as the engine's gate counts them.
    fn no_other_active(&self, line: usize, except: &[CallLegId]) -> Result<(), Error> {
        let other = self.legs.iter().any(|(id, l)| {
            l.line == line
                && l.reported
                && !except.contains(id)
                && AddressUsage::is_active(l.state.kind())
        });
        if other {
            return Err(Error::ResourceUnavailable {
                what: "another call is active on the line",
            });
        }
        Ok(())
    }

    pub(super) fn busy_with_op(&self, leg: CallLegId) -> bool {
        !self.ops_of(leg).is_empty()
    }

    /// Whether `number` can be dialled at all: a line, or anything when there is a trunk.
    pub(super) fn routable(&self, number: &str) -> Result<(), Error> {
        if number.is_empty() {
            return Err(Error::InvalidAddress {
                reason: "nothing to dial".into(),
            });
        }
        if self.by_number.contains_key(number) || self.trunk.is_some() {
            Ok(())
        } else {
            Err(Error::InvalidAddress {
                reason: format!("{number} is no line and there is no trunk"),
            })
        }
    }

    pub(super) fn make_call(
        &mut self,
        now: Instant,
        op: OpId,
        m: MakeCall,
    ) -> Result<Option<Done>, Error> {
        let line = m.line.0 as usize;
        if line >= self.lines.len() {
            return Err(Error::InvalidLine(m.line));
        }
        if m.address != AddressId(0) {
            return Err(Error::InvalidAddressId);
        }
        if !m.media_mode.is_empty() && !m.media_mode.intersects(MediaModes::INTERACTIVE_VOICE) {
            return Err(Error::InvalidMediaMode);
        }
        if let Some(d) = &m.destination {
            if !d.is_partial() {
                self.routable(&d.digits())?;
            }
        }
        if !self.registrar.reachable(line) {
            return Err(Error::OperationFailed {
                reason: format!(
                    "no phone is registered for line {}",
                    self.lines[line].number
                ),
            });
        }
        let called = m
            .destination
            .as_ref()
            .map(|d| PartyId::number(d.digits()))
            .unwrap_or_default();
        let info = CallInfo {
            call_id: CallId(self.id()),
            origin: CallOrigin::Outbound,
            media_mode: MediaModes::INTERACTIVE_VOICE,
            caller: self.lines[line].party(),
            called,
            ..CallInfo::default()
        };
        let mut l = Leg::new(line, CallState::DialTone(DialToneMode::Normal), info);
        l.request = Some(m.request);
        l.setup = Some(op);
        let leg = self.add_leg(l);
        self.ops.insert(op, Op::new(OpKind::MakeCall(leg)));
        if let Some(d) = m.destination {
            self.pending_dest.insert(op, d);
        }
        let auto = self.lines[line].auto_answer;
        self.ring(leg, auto, None);
        self.at(now + self.timing.phone_answer, Timer::PhoneAnswer(op));
        Ok(None)
    }

    /// Dials on a leg in dial tone (or one part-way through a partial dial).
    pub(super) fn dial_number(&mut self, now: Instant, leg: CallLegId, d: &DialString) {
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        l.dialled.push_str(&d.digits());
        if d.is_partial() {
            self.set_state(leg, CallState::Dialing);
            return;
        }
        let number = std::mem::take(&mut l.dialled);
        if number.is_empty() {
            return;
        }
        self.set_state(leg, CallState::Dialing);
        self.place(now, leg, &number);
    }

    pub(super) fn dial(
        &mut self,
        now: Instant,
        op: OpId,
        leg: CallLegId,
        d: &DialString,
    ) -> Result<Option<Done>, Error> {
        let l = self.live(leg)?;
        if l.state.kind() == CallStateKind::Connected {
            // Dialling on a connected call sends the digits down it, as a phone's keypad does.
            let digits: String = d.digits().chars().filter(|c| *c != '+').collect();
            return self.generate(op, leg, &digits, DigitMode::Dtmf);
        }
        if !matches!(
            l.state.kind(),
            CallStateKind::DialTone | CallStateKind::Dialing
        ) {
            return Err(Error::InvalidCallState {
                state: l.state.kind(),
            });
        }
        if !d.is_partial() {
            let whole = format!("{}{}", l.dialled, d.digits());
            self.routable(&whole)?;
        }
        self.dial_number(now, leg, d);
        Ok(Some(Done::Unit))
    }

    pub(super) fn accept(&mut self, leg: CallLegId) -> Result<Option<Done>, Error> {
        match self.state_of(leg) {
            CallStateKind::Offering => {
                self.set_state(leg, CallState::Accepted);
                Ok(Some(Done::Unit))
            }
            state => Err(Error::InvalidCallState { state }),
        }
    }

    pub(super) fn answer(&mut self, op: OpId, leg: CallLegId) -> Result<Option<Done>, Error> {
        let state = self.state_of(leg);
        if !matches!(state, CallStateKind::Offering | CallStateKind::Accepted) {
            return Err(Error::InvalidCallState { state });
        }
        let line = self.legs.get(&leg).map(|l| l.line).unwrap_or_default();
        if !self.lines[line].auto_answer {
            return Err(Error::OperationUnavailable {
                operation: "answer",
            });
        }
        if self.busy_with_op(leg) {
            return Err(Error::InvalidCallState { state });
        }
        // Ask the phone again, this time to answer by itself.
        self.end_phone(leg, 0);
        self.ops.insert(op, Op::new(OpKind::Answer(leg)));
        let media = self.far_media(leg);
        self.ring(leg, true, media);
        Ok(None)
    }

    pub(super) fn reject(&mut self, leg: CallLegId) -> Result<Option<Done>, Error> {
        match self.state_of(leg) {
            CallStateKind::Offering | CallStateKind::Accepted => {
                self.unanswered(leg, CallState::Disconnected(DisconnectReason::Reject));
                Ok(Some(Done::Unit))
            }
            // Refusing is for a call not yet answered; an answered one is dropped.
            state => Err(Error::InvalidCallState { state }),
        }
    }

    pub(super) fn drop_leg(&mut self, leg: CallLegId) -> Result<Option<Done>, Error> {
        match self.state_of(leg) {
            CallStateKind::Idle => Err(Error::InvalidCallState {
                state: CallStateKind::Idle,
            }),
            CallStateKind::Offering | CallStateKind::Accepted => {
                self.unanswered(leg, CallState::Disconnected(DisconnectReason::Reject));
                Ok(Some(Done::Unit))
            }
            _ => {
                self.end_phone(leg, 480);
                self.hang_up_far(leg, DisconnectReason::Normal);
                self.set_state(leg, CallState::Idle);
                Ok(Some(Done::Unit))
            }
        }
    }

    pub(super) fn hold(
        &mut self,
        now: Instant,
        op: OpId,
        leg: CallLegId,
        hold: bool,
    ) -> Result<Option<Done>, Error> {
        let state = self.state_of(leg);
        let l = self.live(leg)?;
        if !hold && state == CallStateKind::OnHoldPendingTransfer {
            // Taking the original off hold cancels its consultation (auto-reconnect).
            let Some(consult) = l.lent_to else {
                return Err(Error::InvalidCallState { state });
            };
            let line = l.line;
            self.no_other_active(line, &[leg, consult])?;
            if self.busy_with_op(leg) {
                return Err(Error::InvalidCallState { state });
            }
            self.ops.insert(op, Op::new(OpKind::Unhold(leg)));
            self.hang_up_far(consult, DisconnectReason::Normal);
            self.end_phone(consult, 0);
            self.set_state(consult, CallState::Idle);
            // The phone dialog is back with the original; wait for both sides to be re-offered.
            for ch in self.bridge_channels(leg) {
                if self
                    .channels
                    .get(&ch)
                    .is_some_and(|c| c.reoffer.is_some() || c.stale)
                {
                    self.waiters.entry(ch).or_default().push(op);
                    if let Some(o) = self.ops.get_mut(&op) {
                        o.waiting += 1;
                    }
                }
            }
            if self.ops.get(&op).is_some_and(|o| o.waiting == 0) {
                self.op_settled(op);
            }
            return Ok(None);
        }
        let ok = if hold {
            state == CallStateKind::Connected && !l.held && l.lent_to.is_none()
        } else {
            state == CallStateKind::OnHold && l.held
        };
        let (line, phone_holds) = (l.line, l.phone_holds);
        if ok && !hold {
            // The line has one call appearance for an active call.
            self.no_other_active(line, &[leg])?;
        }
        if !ok {
            if !hold && state == CallStateKind::OnHold && phone_holds {
                return Err(Error::OperationFailed {
                    reason: "the phone holds the call itself; it takes it off hold".into(),
                });
            }
            return Err(Error::InvalidCallState { state });
        }
        if self.busy_with_op(leg) {
            return Err(Error::InvalidCallState { state });
        }
        let chans = self.bridge_channels(leg);
        if chans.len() < 2 {
            // Nothing to hold against (no far side yet).
            return Err(Error::InvalidCallState { state });
        }
        if let Some(l) = self.legs.get_mut(&leg) {
            l.held = hold;
        }
        self.ops.insert(
            op,
            Op::new(if hold {
                OpKind::Hold(leg)
            } else {
                OpKind::Unhold(leg)
            }),
        );
        // The held party first: it is what a hold is for (RFC 3264 §8.4), then the holder's phone.
        for ch in chans.into_iter().rev() {
            self.sync_for(ch, now, op);
        }
        if self.ops.get(&op).is_some_and(|o| o.waiting == 0) {
            self.op_settled(op);
        }
        Ok(None)
    }

    pub(super) fn generate(
        &mut self,
        op: OpId,
        leg: CallLegId,
        digits: &str,
        mode: DigitMode,
    ) -> Result<Option<Done>, Error> {
        if mode != DigitMode::Dtmf {
            return Err(Error::InvalidParameter {
                reason: "SIP lines send digits as DTMF only".into(),
            });
        }
        if let Some(c) = digits
            .chars()
            .find(|c| !tapir_core::dial::is_dtmf_digit(*c))
        {
            return Err(Error::InvalidParameter {
                reason: format!("{c:?} is not a DTMF digit"),
            });
        }
        let state = self.state_of(leg);
        if state != CallStateKind::Connected {
            return Err(Error::InvalidCallState { state });
        }
        let phone = self.legs.get(&leg).and_then(|l| l.phone.first().copied());
        let Some(far) = phone.and_then(|p| self.partner(p)) else {
            return Err(Error::InvalidCallState { state });
        };
        if digits.is_empty() {
            return Ok(Some(Done::Unit));
        }
        for d in digits.chars() {
            self.digit_heard(far, d);
        }
        // Done when the stack reports the digits delivered.
        self.ops.insert(op, Op::new(OpKind::Digits));
        self.sip(SipAction::Digits {
            ch: far,
            digits: digits.to_owned(),
            op: Some(op),
        });
        Ok(None)
    }
}
