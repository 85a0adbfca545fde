//! Moving parties: blind and consultation transfer, redirect, a transfer a phone asks for (REFER),
//! park and unpark, pickup, and forwarding. Every one is the same few steps on the call model —
//! take the party from one leg, give it to another (or to the outside), and let the media follow —
//! done by re-bridging inside tapir, so phones need no transfer support of their own.

use super::*;

/// Where a party is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Dest {
    Line(usize),
    Trunk(String),
}

impl Switch {
    /// Where `number` goes, checked before anything changes: a line that cannot take a call now
    /// (do-not-disturb) is `InUse`; one with no phone `ResourceUnavailable`; the sender's own
    /// line, or a number that is neither a line nor reachable through a trunk, `InvalidAddress`.
    pub(super) fn destination(&self, number: &str, from: Option<usize>) -> Result<Dest, Error> {
        if number.is_empty() {
            return Err(Error::InvalidAddress {
                reason: "nothing to send the call to".into(),
            });
        }
        if let Some(&line) = self.by_number.get(number) {
            if Some(line) == from {
                return Err(Error::InvalidAddress {
                    reason: "a call cannot be sent to the line it is on".into(),
                });
            }
            if self.lines[line].forwarding.do_not_disturb {
                return Err(Error::InUse);
            }
            if !self.registrar.reachable(line) {
                return Err(Error::ResourceUnavailable {
                    what: "a registered phone at the destination",
                });
            }
            return Ok(Dest::Line(line));
        }
        if self.trunk.is_some() {
            Ok(Dest::Trunk(number.to_owned()))
        } else {
            Err(Error::InvalidAddress {
                reason: format!("{number} is no line and there is no trunk"),
            })
        }
    }

    /// Sends `party` (who stays as it is: connected, or still calling) to `dest`, as a transfer,
    /// redirect, forward or recall by `by`: a new leg offered at a line, or a new dialog out through
    /// the trunk.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn deliver(
        &mut self,
        now: Instant,
        party: PartyRef,
        dest: Dest,
        reason: CallReason,
        by: PartyId,
        call_id: CallId,
        forwarded: bool,
    ) {
        match dest {
            Dest::Line(line) => {
                let mut redirect = Redirect::by(by);
                if let Some(r) = redirect.as_mut() {
                    r.redirection = self.lines[line].party();
                }
                let info = CallInfo {
                    call_id,
                    origin: match party {
                        PartyRef::Leg(_) => CallOrigin::Internal,
                        PartyRef::Outside(_) => CallOrigin::External,
                    },
                    reason,
                    media_mode: MediaModes::INTERACTIVE_VOICE,
                    caller: self.party_identity(party),
                    called: self.lines[line].party(),
                    redirect,
                    ..CallInfo::default()
                };
                self.offer_leg(now, line, info, party, forwarded);
            }
            Dest::Trunk(number) => {
                let Some(trunk) = self.trunk.clone() else {
                    return;
                };
                let Some(media) = self.party_media(party) else {
                    return;
                };
                let who = self.party_identity(party);
                let from = Party {
                    user: who.number.as_deref().unwrap_or("anonymous").to_owned(),
                    name: who.name.as_deref().map(str::to_owned),
                };
                let ch = self.invite_trunk(&trunk, &number, from, &media);
                match party {
                    PartyRef::Leg(leg) => self.attach(leg, PartyRef::Outside(ch)),
                    PartyRef::Outside(t) => {
                        self.links.insert(t, Link::Relay(ch));
                        self.links.insert(ch, Link::Relay(t));
                    }
                }
            }
        }
    }

    /// Blind transfer: the connected party is sent to `number`; this leg ends.
    pub(super) fn blind_transfer(
        &mut self,
        now: Instant,
        leg: CallLegId,
        number: &str,
    ) -> Result<Option<Done>, Error> {
        let state = self.state_of(leg);
        if state != CallStateKind::Connected || self.busy_with_op(leg) {
            return Err(Error::InvalidCallState { state });
        }
        self.send_away(now, leg, number, CallReason::Transfer)?;
        Ok(Some(Done::Unit))
    }

    /// Redirect: an offered call is sent on to `number` unanswered; this leg ends.
    pub(super) fn redirect(
        &mut self,
        now: Instant,
        leg: CallLegId,
        number: &str,
    ) -> Result<Option<Done>, Error> {
        let state = self.state_of(leg);
        if !matches!(state, CallStateKind::Offering | CallStateKind::Accepted) {
            return Err(Error::InvalidCallState { state });
        }
        self.send_away(now, leg, number, CallReason::Redirect)?;
        Ok(Some(Done::Unit))
    }

    fn send_away(
        &mut self,
        now: Instant,
        leg: CallLegId,
        number: &str,
        reason: CallReason,
    ) -> Result<(), Error> {
        let Some(l) = self.legs.get(&leg) else {
            return Err(Error::InvalidCallState {
                state: CallStateKind::Idle,
            });
        };
        let (line, call_id) = (l.line, l.info.call_id);
        if l.far.party().is_none() {
            return Err(Error::InvalidCallState {
                state: l.state.kind(),
            });
        }
        // Checked before anything changes: a destination that cannot take the call leaves it here.
        let dest = self.destination(number, Some(line))?;
        let by = self.lines[line].party();
        self.end_phone(leg, 0);
        let Some(party) = self.detach(leg) else {
            return Ok(());
        };
        self.set_state(leg, CallState::Idle);
        self.deliver(now, party, dest, reason, by, call_id, false);
        Ok(())
    }

    /// Consultation: the original is held, and its phone dialog serves a new call in dial tone
    /// (no second call to the phone, so any phone can consult).
    pub(super) fn setup_transfer(
        &mut self,
        now: Instant,
        op: OpId,
        leg: CallLegId,
        request: RequestId,
    ) -> Result<Option<Done>, Error> {
        let state = self.state_of(leg);
        let Some(l) = self.legs.get(&leg) else {
            return Err(Error::InvalidCallState { state });
        };
        let ok = state == CallStateKind::Connected
            && !l.held
            && l.lent_to.is_none()
            && l.borrowed_from.is_none()
            && l.phone.len() == 1
            && l.far.party().is_some();
        if !ok || self.busy_with_op(leg) {
            return Err(Error::InvalidCallState { state });
        }
        if self
            .legs
            .values()
            .any(|o| o.line == l.line && o.lent_to.is_some())
        {
            // One consultation per line (max_on_hold_pending).
            return Err(Error::CallUnavailable);
        }
        let (line, call_id, phone) = (l.line, l.info.call_id, l.phone[0]);
        let info = CallInfo {
            call_id: CallId(self.id()),
            related_call_id: Some(call_id),
            origin: CallOrigin::Outbound,
            media_mode: MediaModes::INTERACTIVE_VOICE,
            caller: self.lines[line].party(),
            ..CallInfo::default()
        };
        let mut c = Leg::new(line, CallState::DialTone(DialToneMode::Normal), info);
        c.request = Some(request);
        c.phone = vec![phone];
        c.borrowed_from = Some(leg);
        let consult = self.add_leg(c);
        self.links.insert(phone, Link::Phone(consult));
        if let Some(l) = self.legs.get_mut(&leg) {
            l.phone.clear();
            l.lent_to = Some(consult);
            l.held = true;
        }
        self.announce(consult);
        self.ops.insert(
            op,
            Op::new(OpKind::SetupTransfer {
                original: leg,
                consult,
            }),
        );
        let far = self.legs.get(&leg).and_then(|l| l.far.party());
        if let Some(ch) = far.and_then(|p| self.party_channel(p)) {
            self.sync_for(ch, now, op);
        }
        self.sync_for(phone, now, op);
        if self.ops.get(&op).is_some_and(|o| o.waiting == 0) {
            self.op_settled(op);
        }
        Ok(None)
    }

    /// Completes a consultation transfer: the held original's party and the consultation's party
    /// are connected with each other; both of the line's calls end.
    pub(super) fn complete_transfer(
        &mut self,
        now: Instant,
        op: OpId,
        held: CallLegId,
        consult: CallLegId,
        mode: TransferMode,
    ) -> Result<Option<Done>, Error> {
        if mode == TransferMode::Conference {
            return Err(Error::InvalidParameter {
                reason: "a conference needs its media mixed, which this provider does not do"
                    .into(),
            });
        }
        let state = self.state_of(held);
        let pending = self.legs.get(&held).is_some_and(|l| {
            state == CallStateKind::OnHoldPendingTransfer && l.lent_to == Some(consult)
        });
        if !pending {
            return Err(Error::InvalidCallState { state });
        }
        let cstate = self.state_of(consult);
        let far = self.legs.get(&consult).and_then(|l| l.far.party());
        if !matches!(
            cstate,
            CallStateKind::Connected | CallStateKind::Ringback | CallStateKind::Proceeding
        ) || far.is_none()
        {
            return Err(Error::InvalidCallState { state: cstate });
        }
        let by = self
            .legs
            .get(&held)
            .map(|l| self.lines[l.line].party())
            .unwrap_or_default();
        let (Some(f), Some(g)) = (self.detach(held), self.detach(consult)) else {
            return Err(Error::InvalidCallState { state });
        };
        self.ops.insert(op, Op::new(OpKind::CompleteTransfer));
        let chans = self.join(f, g, &by);
        // The transferring station is done: its phone dialog ends, and both its calls.
        if let Some(c) = self.legs.get_mut(&consult) {
            c.borrowed_from = None;
        }
        if let Some(h) = self.legs.get_mut(&held) {
            h.lent_to = None;
        }
        self.end_phone(consult, 0);
        self.set_state(consult, CallState::Idle);
        self.set_state(held, CallState::Idle);
        for ch in chans {
            self.sync_for(ch, now, op);
        }
        if self.ops.get(&op).is_some_and(|o| o.waiting == 0) {
            self.op_settled(op);
        }
        Ok(None)
    }

    /// Connects two parties with each other (a transfer): each learns the other as its connected
    /// party. Returns the dialogs whose media must follow.
    pub(super) fn join(&mut self, f: PartyRef, g: PartyRef, by: &PartyId) -> Vec<ChannelId> {
        let (fw, gw) = (self.party_identity(f), self.party_identity(g));
        match (f, g) {
            (PartyRef::Leg(a), PartyRef::Leg(b)) => {
                self.attach(a, PartyRef::Leg(b));
            }
            (PartyRef::Leg(a), PartyRef::Outside(u)) => self.attach(a, PartyRef::Outside(u)),
            (PartyRef::Outside(t), PartyRef::Leg(b)) => self.attach(b, PartyRef::Outside(t)),
            (PartyRef::Outside(t), PartyRef::Outside(u)) => {
                self.links.insert(t, Link::Relay(u));
                self.links.insert(u, Link::Relay(t));
            }
        }
        for (p, other) in [(f, gw), (g, fw)] {
            if let PartyRef::Leg(l) = p {
                if let Some(leg) = self.legs.get(&l) {
                    let mut info = (*leg.info).clone();
                    if matches!(
                        leg.state.kind(),
                        CallStateKind::Offering | CallStateKind::Accepted
                    ) {
                        // Still ringing: the one it will be connected with calls it, transferred.
                        info.caller = other;
                        info.reason = CallReason::Transfer;
                    } else {
                        info.connected = other;
                    }
                    info.redirect = Redirect::by(by.clone());
                    self.update_info(l, info);
                }
            }
        }
        [f, g]
            .into_iter()
            .filter_map(|p| self.party_channel(p))
            .collect()
    }

    /// Swap hold: the active call is held and the held one taken off hold, as one operation.
    pub(super) fn swap_hold(
        &mut self,
        now: Instant,
        op: OpId,
        active: CallLegId,
        held: CallLegId,
    ) -> Result<Option<Done>, Error> {
        let (sa, sh) = (self.state_of(active), self.state_of(held));
        let plain =
            |l: &Leg| l.lent_to.is_none() && l.borrowed_from.is_none() && l.phone.len() == 1;
        let (Some(a), Some(h)) = (self.legs.get(&active), self.legs.get(&held)) else {
            return Err(Error::InvalidCallState {
                state: CallStateKind::Idle,
            });
        };
        if sa != CallStateKind::Connected || a.held || !plain(a) || a.far.party().is_none() {
            return Err(Error::InvalidCallState { state: sa });
        }
        if sh != CallStateKind::OnHold || !h.held || !plain(h) || a.line != h.line {
            return Err(Error::InvalidCallState { state: sh });
        }
        if self.busy_with_op(active) || self.busy_with_op(held) {
            return Err(Error::InvalidCallState { state: sa });
        }
        for (leg, hold) in [(active, true), (held, false)] {
            if let Some(l) = self.legs.get_mut(&leg) {
                l.held = hold;
            }
        }
        self.ops
            .insert(op, Op::new(OpKind::SwapHold { active, held }));
        for leg in [active, held] {
            for ch in self.bridge_channels(leg).into_iter().rev() {
                self.sync_for(ch, now, op);
            }
        }
        if self.ops.get(&op).is_some_and(|o| o.waiting == 0) {
            self.op_settled(op);
        }
        Ok(None)
    }

    // ---------------------------------------------------------------------------------------------
    // Park.

    /// Parks the connected party in an orbit; this leg ends. The party waits, hearing nothing,
    /// until it is unparked, recalled to the parker after the time-out, or hangs up.
    pub(super) fn park_call(
        &mut self,
        now: Instant,
        leg: CallLegId,
        mode: &ParkMode,
    ) -> Result<Option<Done>, Error> {
        if self.park.is_empty() {
            return Err(Error::OperationUnavailable { operation: "park" });
        }
        let state = self.state_of(leg);
        if state != CallStateKind::Connected || self.busy_with_op(leg) {
            return Err(Error::InvalidCallState { state });
        }
        let Some(l) = self.legs.get(&leg) else {
            return Err(Error::InvalidCallState { state });
        };
        if l.far.party().is_none() {
            return Err(Error::InvalidCallState { state });
        }
        let (line, call_id) = (l.line, l.info.call_id);
        let i = self.park.free(mode)?;
        let Some(party) = self.detach(leg) else {
            return Err(Error::InvalidCallState { state });
        };
        let orbit = self.park.park(
            i,
            Parked {
                party,
                parker: line,
                call_id,
                recall_at: now + self.park_timeout,
            },
        );
        match party {
            PartyRef::Outside(t) => {
                self.links.insert(t, Link::Parked);
            }
            PartyRef::Leg(l2) => {
                if let Some(l) = self.legs.get_mut(&l2) {
                    l.far = Far::Parked;
                }
            }
        }
        if let Some(ch) = self.party_channel(party) {
            self.sync(ch, now);
        }
        self.report_line(
            line,
            LineEvent::Parked {
                orbit: orbit.clone(),
                call_id,
            },
        );
        self.at(now + self.park_timeout, Timer::ParkRecall(i));
        self.end_phone(leg, 0);
        self.set_state(leg, CallState::Idle);
        Ok(Some(Done::Orbit(orbit)))
    }

    /// A parked party leaves its orbit's bookkeeping (it is unparked, or gone).
    pub(super) fn unpark_party(&mut self, party: PartyRef) {
        match party {
            PartyRef::Outside(t) => {
                self.links.remove(&t);
            }
            PartyRef::Leg(l) => {
                if let Some(l) = self.legs.get_mut(&l) {
                    l.far = Far::None;
                }
            }
        }
    }

    /// The party in orbit `i` is gone (it hung up): the orbit is free, and its parker told.
    pub(super) fn unpark_report(&mut self, i: usize) {
        if let Some((orbit, parked)) = self.park.take(i) {
            self.report_line(
                parked.parker,
                LineEvent::Unparked {
                    orbit,
                    call_id: parked.call_id,
                },
            );
        }
    }

    /// A call parked too long rings its parker again (reason *reminder*); if the parker's line
    /// cannot take it now, it stays parked another time-out.
    pub(super) fn park_recall(&mut self, now: Instant, i: usize) {
        let timeout = self.park_timeout;
        let Some(p) = self.park.get_mut(i) else {
            return;
        };
        if p.recall_at > now {
            return; // an older timer: the call was parked again since
        }
        let (parker, party, call_id) = (p.parker, p.party, p.call_id);
        if !self.registrar.reachable(parker) || self.lines[parker].forwarding.do_not_disturb {
            if let Some(p) = self.park.get_mut(i) {
                p.recall_at = now + timeout;
            }
            self.at(now + timeout, Timer::ParkRecall(i));
            return;
        }
        let orbit = self.park.number(i).to_owned();
        self.park.take(i);
        self.report_line(parker, LineEvent::Unparked { orbit, call_id });
        self.unpark_party(party);
        let by = self.lines[parker].party();
        self.deliver(
            now,
            party,
            Dest::Line(parker),
            CallReason::Reminder,
            by,
            call_id,
            true,
        );
    }

    /// Unpark: the retriever's phone is called with the parked party's media; the call is its once
    /// it answers.
    pub(super) fn unpark(
        &mut self,
        now: Instant,
        op: OpId,
        origin: Origin,
        orbit: &str,
    ) -> Result<Option<Done>, Error> {
        if self.park.is_empty() {
            return Err(Error::OperationUnavailable {
                operation: "unpark",
            });
        }
        let line = self.origin_line(origin)?;
        let (i, parked) = self.park.find(orbit)?;
        let (party, call_id) = (parked.party, parked.call_id);
        let info = CallInfo {
            call_id,
            origin: match party {
                PartyRef::Leg(_) => CallOrigin::Internal,
                PartyRef::Outside(_) => CallOrigin::External,
            },
            reason: CallReason::Unpark,
            media_mode: MediaModes::INTERACTIVE_VOICE,
            caller: self.party_identity(party),
            called: self.lines[line].party(),
            ..CallInfo::default()
        };
        self.retrieve(
            now,
            op,
            line,
            origin.request,
            info,
            party,
            OpKind::Unpark {
                leg: CallLegId(0),
                orbit: i,
            },
        )
    }

    /// Pickup: the picker's phone is called with the ringing call's caller; when it answers, the
    /// call rings no more where it rang (picked up) and is the picker's.
    pub(super) fn pickup(
        &mut self,
        now: Instant,
        op: OpId,
        origin: Origin,
        target: &PickupTarget,
    ) -> Result<Option<Done>, Error> {
        let line = self.origin_line(origin)?;
        let lines: Vec<usize> = match target {
            PickupTarget::Directed(n) => {
                vec![
                    *self
                        .by_number
                        .get(n.as_str())
                        .ok_or_else(|| Error::InvalidAddress {
                            reason: format!("{n} is no line"),
                        })?,
                ]
            }
            PickupTarget::Group(g) => {
                let members = self.groups.get(g).ok_or_else(|| Error::InvalidParameter {
                    reason: format!("there is no pickup group {g:?}"),
                })?;
                if !members.contains(&line) {
                    return Err(Error::InvalidParameter {
                        reason: format!(
                            "line {} is not in pickup group {g:?}",
                            self.lines[line].number
                        ),
                    });
                }
                members.clone()
            }
        };
        // The oldest call ringing there that nobody is picking up yet.
        let taken: Vec<CallLegId> = self
            .ops
            .values()
            .filter_map(|o| match o.kind {
                OpKind::Pickup { ringing, .. } => Some(ringing),
                _ => None,
            })
            .collect();
        let ringing = self
            .legs
            .iter()
            .filter(|(id, l)| {
                lines.contains(&l.line)
                    && l.line != line
                    && l.reported
                    && l.setup.is_none()
                    && matches!(
                        l.state.kind(),
                        CallStateKind::Offering | CallStateKind::Accepted
                    )
                    && l.far.party().is_some()
                    && !taken.contains(id)
            })
            .map(|(id, _)| *id)
            .next()
            .ok_or_else(|| Error::InvalidAddress {
                reason: "no call is ringing there".into(),
            })?;
        let Some(r) = self.legs.get(&ringing) else {
            return Err(Error::InvalidAddress {
                reason: "no call is ringing there".into(),
            });
        };
        let Some(party) = r.far.party() else {
            return Err(Error::InvalidAddress {
                reason: "no call is ringing there".into(),
            });
        };
        let mut info = (*r.info).clone();
        info.reason = CallReason::Pickup;
        info.called = self.lines[line].party();
        self.retrieve(
            now,
            op,
            line,
            origin.request,
            info,
            party,
            OpKind::Pickup {
                leg: CallLegId(0),
                ringing,
            },
        )
    }

    fn origin_line(&self, origin: Origin) -> Result<usize, Error> {
        let line = origin.line.0 as usize;
        if line >= self.lines.len() {
            return Err(Error::InvalidLine(origin.line));
        }
        if origin.address != AddressId(0) {
            return Err(Error::InvalidAddressId);
        }
        if !self.registrar.reachable(line) {
            return Err(Error::OperationFailed {
                reason: format!(
                    "no phone is registered for line {}",
                    self.lines[line].number
                ),
            });
        }
        Ok(line)
    }

    /// Calls `line`'s phone for a call it takes over (unpark, pickup): a leg set up like a call it
    /// makes, offering the party's media; the operation finishes when the phone answers.
    #[allow(clippy::too_many_arguments)]
    fn retrieve(
        &mut self,
        now: Instant,
        op: OpId,
        line: usize,
        request: RequestId,
        info: CallInfo,
        party: PartyRef,
        kind: OpKind,
    ) -> Result<Option<Done>, Error> {
        let mut l = Leg::new(line, CallState::Connected(ConnectedMode::Active), info);
        l.request = Some(request);
        l.setup = Some(op);
        let leg = self.add_leg(l);
        let kind = match kind {
            OpKind::Unpark { orbit, .. } => OpKind::Unpark { leg, orbit },
            OpKind::Pickup { ringing, .. } => OpKind::Pickup { leg, ringing },
            other => other,
        };
        self.ops.insert(op, Op::new(kind));
        let media = self.party_media(party);
        let auto = self.lines[line].auto_answer;
        self.ring(leg, auto, media);
        self.at(now + self.timing.phone_answer, Timer::PhoneAnswer(op));
        Ok(None)
    }

    // ---------------------------------------------------------------------------------------------
    // Forwarding.

    /// Replaces the forwarding of a line (empty: none). Each destination is checked first; a bad
    /// one changes nothing.
    pub(super) fn forward(
        &mut self,
        line: LineId,
        address: AddressId,
        forwarding: Forwarding,
    ) -> Result<Option<Done>, Error> {
        let i = line.0 as usize;
        if i >= self.lines.len() {
            return Err(Error::InvalidLine(line));
        }
        if address != AddressId(0) {
            return Err(Error::InvalidAddressId);
        }
        for (_, d) in &forwarding.rules {
            let n = d.digits();
            if n.is_empty() || n == *self.lines[i].number {
                return Err(Error::InvalidAddress {
                    reason: "a line cannot forward to itself or to nothing".into(),
                });
            }
            if !self.by_number.contains_key(n.as_str()) && self.trunk.is_none() {
                return Err(Error::InvalidAddress {
                    reason: format!("{n} is no line and there is no trunk"),
                });
            }
        }
        self.lines[i].forwarding = forwarding;
        self.report_line(i, LineEvent::ForwardingChanged { address });
        Ok(Some(Done::Unit))
    }

    /// The rule of `line` for `cond`, if a destination it names can take the call now.
    fn forward_rule(&self, line: usize, cond: fn(&ForwardCondition) -> bool) -> Option<Dest> {
        let (_, d) = self.lines[line]
            .forwarding
            .rules
            .iter()
            .find(|(c, _)| cond(c))?;
        self.destination(&d.digits(), Some(line)).ok()
    }

    /// An offered call rang its line's forward-on-no-answer time: it moves on.
    pub(super) fn forward_unanswered(&mut self, now: Instant, leg: CallLegId) {
        let Some(l) = self.legs.get(&leg) else { return };
        if !matches!(
            l.state.kind(),
            CallStateKind::Offering | CallStateKind::Accepted
        ) || l.forwarded
        {
            return;
        }
        let Some(dest) =
            self.forward_rule(l.line, |c| matches!(c, ForwardCondition::NoAnswer { .. }))
        else {
            return;
        };
        self.forward_leg(now, leg, dest, CallReason::ForwardNoAnswer);
    }

    /// Every phone of an offered call's line said busy: a forward-on-busy rule sends it on.
    /// Returns whether it did.
    pub(super) fn forward_busy(&mut self, leg: CallLegId) -> bool {
        let Some(l) = self.legs.get(&leg) else {
            return false;
        };
        if l.forwarded {
            return false;
        }
        let Some(dest) = self.forward_rule(l.line, |c| matches!(c, ForwardCondition::Busy)) else {
            return false;
        };
        let now = self.last_now;
        self.forward_leg(now, leg, dest, CallReason::ForwardBusy);
        true
    }

    fn forward_leg(&mut self, now: Instant, leg: CallLegId, dest: Dest, reason: CallReason) {
        let Some(l) = self.legs.get(&leg) else { return };
        let (line, call_id) = (l.line, l.info.call_id);
        self.end_phone(leg, 0);
        let Some(party) = self.detach(leg) else {
            return;
        };
        self.set_state(leg, CallState::Disconnected(DisconnectReason::Forwarded));
        self.set_state(leg, CallState::Idle);
        let by = self.lines[line].party();
        self.deliver(now, party, dest, reason, by, call_id, true);
    }

    // ---------------------------------------------------------------------------------------------
    // REFER from a phone.

    /// A phone asks for a transfer (its own transfer key): blind, to a number, or attended, to the
    /// party of another of its calls (`Replaces`). Carried out by re-bridging, as an application's
    /// transfer would be; the phone is told how it went (RFC 3515) and its call ends.
    pub(super) fn on_refer(
        &mut self,
        now: Instant,
        ch: ChannelId,
        tx: TxId,
        to: &str,
        replaces: Option<ChannelId>,
    ) {
        let leg = match self.links.get(&ch) {
            Some(&Link::Phone(leg))
                if self.legs.get(&leg).is_some_and(|l| {
                    matches!(
                        l.state.kind(),
                        CallStateKind::Connected | CallStateKind::OnHold
                    ) && l.far.party().is_some()
                }) =>
            {
                leg
            }
            Some(_) => {
                self.sip(SipAction::AnswerRefer { tx, status: 603 });
                return;
            }
            None => {
                self.sip(SipAction::AnswerRefer { tx, status: 481 });
                return;
            }
        };
        let line = self.legs.get(&leg).map(|l| l.line).unwrap_or_default();
        let by = self.lines[line].party();
        match replaces {
            None => {
                let dest = match self.destination(to, Some(line)) {
                    Ok(d) => d,
                    Err(e) => {
                        let status = match e {
                            Error::InUse => 486,
                            Error::InvalidAddress { .. } => 404,
                            _ => 480,
                        };
                        self.sip(SipAction::AnswerRefer { tx, status });
                        return;
                    }
                };
                self.sip(SipAction::AnswerRefer { tx, status: 202 });
                let call_id = self
                    .legs
                    .get(&leg)
                    .map(|l| l.info.call_id)
                    .unwrap_or_default();
                let Some(party) = self.detach(leg) else {
                    return;
                };
                self.deliver(now, party, dest, CallReason::Transfer, by, call_id, false);
            }
            Some(other) => {
                let other_leg = match self.links.get(&other) {
                    Some(&Link::Phone(l))
                        if l != leg
                            && self
                                .legs
                                .get(&l)
                                .is_some_and(|o| o.line == line && o.far.party().is_some()) =>
                    {
                        l
                    }
                    _ => {
                        self.sip(SipAction::AnswerRefer { tx, status: 481 });
                        return;
                    }
                };
                self.sip(SipAction::AnswerRefer { tx, status: 202 });
                let (Some(f), Some(g)) = (self.detach(leg), self.detach(other_leg)) else {
                    return;
                };
                let chans = self.join(f, g, &by);
                for c in chans {
                    self.sync(c, now);
                }
                self.end_phone(other_leg, 0);
                self.set_state(other_leg, CallState::Idle);
            }
        }
        // The transfer is carried out: the phone hears so, and its call here is over.
        self.sip(SipAction::Notify { ch, status: 200 });
        self.end_phone(leg, 0);
        self.set_state(leg, CallState::Idle);
    }
}
