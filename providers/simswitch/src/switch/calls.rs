//! Basic calls: dialling and routing, answering, hanging up from either end, hold, digits.

use super::*;

impl State {
    /// The outside party of leg `id` hangs up (or gives up, if the leg was never answered).
    pub(crate) fn far_end_clears(&mut self, id: CallLegId) {
        let Some(Peer::Outside(o)) = self.legs.get(&id).map(|l| l.peer) else {
            return;
        };
        self.unlink(id);
        self.outside.remove(&o);
        self.peer_cleared(id, DisconnectReason::Normal);
    }

    /// The party on the other side of a leg went away, for `reason`.
    pub(super) fn clear_party(&mut self, party: Peer, reason: DisconnectReason) {
        match party {
            Peer::Leg(p) => {
                self.unlink(p);
                self.peer_cleared(p, reason);
            }
            Peer::Outside(o) => {
                self.outside.remove(&o);
            }
            Peer::None => {}
        }
    }

    /// A leg lost its party: it disconnects, and if it was never answered it goes idle as well (the
    /// station never went off-hook).
    pub(super) fn peer_cleared(&mut self, id: CallLegId, reason: DisconnectReason) {
        let Ok(state) = self.state_of(id) else {
            return;
        };
        match state {
            CallStateKind::Idle | CallStateKind::Disconnected => {}
            CallStateKind::Offering | CallStateKind::Accepted => {
                self.set_state(id, CallState::Disconnected(reason));
                self.set_state(id, CallState::Idle);
            }
            _ => self.set_state(id, CallState::Disconnected(reason)),
        }
    }

    /// Finds where a number goes; a destination that cannot take the call now is an error, and nothing
    /// has changed.
    pub(super) fn destination(&self, number: &str) -> Result<Destination, Error> {
        if let Some(line) = self.extension_index(number) {
            return if self.can_take_call(line) {
                Ok(Destination::Extension(line))
            } else {
                Err(Error::InUse)
            };
        }
        let far = self
            .far_ends
            .get(number)
            .ok_or_else(|| Error::InvalidAddress {
                reason: format!("{number} is neither an extension nor a known outside number"),
            })?;
        match far.answer {
            Answer::Busy => Err(Error::InUse),
            Answer::Reject | Answer::Unreachable => Err(Error::InvalidAddress {
                reason: format!("{number} cannot be reached"),
            }),
            Answer::AfterRings(_) | Answer::Never => {
                Ok(Destination::Outside(number.to_owned(), far.clone()))
            }
        }
    }

    /// Sends `party` (who stays in whatever state it is in) to `destination`, as a transfer or a redirect
    /// by `by`.
    pub(super) fn deliver(&mut self, party: Peer, destination: Destination, handover: Handover) {
        let Handover {
            reason,
            by,
            call_id,
            forwards,
        } = handover;
        match destination {
            Destination::Extension(line) => {
                let info = CallInfo {
                    call_id,
                    origin: party.origin(),
                    reason,
                    media_mode: MediaModes::INTERACTIVE_VOICE,
                    caller: self.identity(party),
                    called: self.party(line),
                    redirect: Redirect::by(by),
                    ..CallInfo::default()
                };
                let leg = self.offer(line, info, party);
                if let Some(l) = self.legs.get_mut(&leg) {
                    l.forwards = forwards;
                }
            }
            Destination::Outside(number, far) => match party {
                // Outside to outside: the call leaves the switch.
                Peer::Outside(o) => {
                    self.outside.remove(&o);
                }
                Peer::Leg(p) => {
                    let o = self.new_outside(
                        PartyId {
                            number: Some(number.as_str().into()),
                            name: far.name.as_deref().map(Arc::from),
                            ..PartyId::default()
                        },
                        far.hang_up_after,
                        false,
                    );
                    self.link(p, Peer::Outside(o));
                    self.set_info(p, |i| {
                        i.redirect_mut().redirection = PartyId::number(number);
                    });
                    self.ring_outside(p, &far);
                }
                Peer::None => {}
            },
        }
    }

    /// Leg `id` waits for an outside party to answer.
    pub(super) fn ring_outside(&mut self, id: CallLegId, far: &FarEnd) {
        if let Some(Peer::Outside(o)) = self.legs.get(&id).map(|l| l.peer)
            && let Some(o) = self.outside.get_mut(&o)
        {
            o.script = Some(Box::new(far.clone()));
        }
        if let Answer::AfterRings(rings) = far.answer {
            let after = self.timing.ring_period.saturating_mul(rings);
            if after < self.timing.no_answer_timeout {
                self.schedule(after, id, Timer::FarEndAnswers);
            }
        }
        self.schedule(self.timing.no_answer_timeout, id, Timer::NoAnswer);
    }

    pub(crate) fn dial(&mut self, id: CallLegId, digits: &DialString) -> Result<(), Error> {
        match self.state_of(id)? {
            CallStateKind::DialTone | CallStateKind::Dialing => {}
            // Digits on an established call go in-band to the far end.
            CallStateKind::Connected => {
                return self.generate_digits(id, &digits.digits(), DigitMode::Dtmf);
            }
            state => return Err(Error::InvalidCallState { state }),
        }
        let Some(leg) = self.legs.get_mut(&id) else {
            return Err(Error::InvalidCallHandle);
        };
        leg.dialed.push_str(&digits.digits());
        if leg.dialed.is_empty() && digits.is_partial() {
            return Ok(());
        }
        self.set_state(id, CallState::Dialing);
        if !digits.is_partial() {
            self.route(id);
        }
        Ok(())
    }

    /// Dialling is complete: find the destination and start the call towards it.
    pub(super) fn route(&mut self, id: CallLegId) {
        let Some(leg) = self.legs.get(&id) else {
            return;
        };
        let mut number = leg.dialed.clone();
        let from_line = leg.line;
        let call_id = leg.info.call_id;
        // One copy of the number for the call's information and the outside party it reaches.
        let called: Arc<str> = number.as_str().into();
        // The called party as the switch knows it: an extension's name too, not just the digits.
        let party = match self.extension_index(&number) {
            Some(line) => self.party(line),
            None => PartyId::number(called.clone()),
        };
        self.set_info(id, |i| i.called = party);
        self.set_state(id, CallState::Proceeding);
        let mut reason = CallReason::Direct;
        let mut redirecting = PartyId::default();
        if let Some(dialled) = self.extension_index(&number).filter(|l| *l != from_line) {
            match self.forwarded(dialled) {
                Forwarded::No => {}
                Forwarded::DoNotDisturb => {
                    self.set_state(id, CallState::Disconnected(DisconnectReason::DoNotDisturb));
                    return;
                }
                Forwarded::To(to, why) => {
                    redirecting = self.party(dialled);
                    reason = why;
                    self.set_info(id, |i| {
                        i.redirect_mut().redirection = PartyId::number(to.clone());
                    });
                    number = to;
                }
            }
        }
        match self.destination(&number) {
            Ok(Destination::Extension(target)) if target != from_line => {
                let info = CallInfo {
                    call_id,
                    origin: CallOrigin::Internal,
                    reason,
                    media_mode: MediaModes::INTERACTIVE_VOICE,
                    caller: self.party(from_line),
                    called: self.party(target),
                    redirect: Redirect::by(redirecting),
                    ..CallInfo::default()
                };
                self.offer(target, info, Peer::Leg(id));
                self.set_state(id, CallState::Ringback);
            }
            Ok(Destination::Outside(number, far)) => {
                let number = if *number == *called {
                    called
                } else {
                    number.into()
                };
                let o = self.new_outside(
                    PartyId {
                        number: Some(number),
                        name: far.name.as_deref().map(Arc::from),
                        ..PartyId::default()
                    },
                    far.hang_up_after,
                    false,
                );
                self.link(id, Peer::Outside(o));
                self.set_state(id, CallState::Ringback);
                self.ring_outside(id, &far);
            }
            Ok(Destination::Extension(_)) | Err(Error::InUse) => {
                self.set_state(id, CallState::Busy(BusyMode::Station))
            }
            Err(_) => {
                let reason = match self.far_ends.get(&number).map(|f| f.answer) {
                    Some(Answer::Reject) => DisconnectReason::Reject,
                    Some(Answer::Unreachable) => DisconnectReason::Unreachable,
                    _ => DisconnectReason::BadAddress,
                };
                self.set_state(id, CallState::Disconnected(reason));
            }
        }
    }

    pub(crate) fn answer(&mut self, id: CallLegId) -> Result<(), Error> {
        match self.state_of(id)? {
            CallStateKind::Offering | CallStateKind::Accepted => {}
            state => return Err(Error::InvalidCallState { state }),
        }
        let leg = self.leg(id)?;
        let (peer, me, relation) = (leg.peer, self.party(leg.line), leg.relation.clone());
        self.set_state(id, CallState::Connected(ConnectedMode::Active));
        if let Relation::CallBack(target) = relation {
            // The requester answered its callback: now the switch calls the party it wanted.
            if let Some(l) = self.legs.get_mut(&id) {
                l.relation = Relation::None;
            }
            if self.can_take_call(target) {
                let call_id = self.leg(id)?.info.call_id;
                let info = CallInfo {
                    call_id,
                    origin: CallOrigin::Internal,
                    reason: CallReason::Direct,
                    media_mode: MediaModes::INTERACTIVE_VOICE,
                    caller: me,
                    called: self.party(target),
                    ..CallInfo::default()
                };
                self.offer(target, info, Peer::Leg(id));
            } else {
                self.set_state(id, CallState::Disconnected(DisconnectReason::Busy));
            }
            return Ok(());
        }
        let them = self.identity(peer);
        self.set_info(id, |i| i.connected = them);
        match peer {
            Peer::Leg(caller) => {
                if self.state_of(caller).ok() == Some(CallStateKind::Ringback) {
                    self.set_state(caller, CallState::Connected(ConnectedMode::Active));
                }
                self.set_info(caller, |i| i.connected = me);
            }
            Peer::Outside(o) => {
                if let Some(after) = self.outside.get(&o).and_then(|o| o.hang_up_after) {
                    self.schedule(after, id, Timer::FarEndHangsUp);
                }
            }
            Peer::None => {}
        }
        Ok(())
    }

    pub(crate) fn accept(&mut self, id: CallLegId) -> Result<(), Error> {
        match self.state_of(id)? {
            CallStateKind::Offering => {
                self.set_state(id, CallState::Accepted);
                Ok(())
            }
            state => Err(Error::InvalidCallState { state }),
        }
    }

    /// Hangs up a leg; its party hears `reason`.
    pub(crate) fn drop_leg(
        &mut self,
        id: CallLegId,
        reason: DisconnectReason,
    ) -> Result<(), Error> {
        if self.state_of(id)? == CallStateKind::Idle {
            return Err(Error::InvalidCallState {
                state: CallStateKind::Idle,
            });
        }
        let (line, relation) = {
            let leg = self.leg(id)?;
            (leg.line, leg.relation.clone())
        };
        let party = self.unlink(id);
        self.set_state(id, CallState::Idle);
        self.clear_party(party, reason);
        self.after_leaving(id, line, relation);
        // A party waiting in a park orbit that hangs up leaves the orbit free.
        self.forget_parked(Peer::Leg(id));
        Ok(())
    }

    /// What happens to related legs when leg `id` on extension `line` (related as `relation`) has gone
    /// idle.
    pub(super) fn after_leaving(&mut self, id: CallLegId, line: usize, relation: Relation) {
        match relation {
            // Dropping a consultation call brings the held call back.
            Relation::ConsultFor(original) => {
                if self.state_of(original).ok() == Some(CallStateKind::OnHoldPendingTransfer) {
                    self.set_state(original, CallState::Connected(ConnectedMode::Active));
                }
            }
            Relation::ConsultForConference(parent) => {
                if self.state_of(parent).ok() == Some(CallStateKind::OnHoldPendingConference) {
                    self.set_state(parent, CallState::Connected(ConnectedMode::Active));
                }
            }
            // Dropping the conference drops every party, and their far ends hear the hang-up.
            Relation::Parent(parties) => {
                for p in parties {
                    let party = self.unlink(p);
                    self.set_state(p, CallState::Idle);
                    self.clear_party(party, DisconnectReason::Normal);
                }
            }
            // Its parent's list let go of it in `set_state`.
            Relation::Party(_) | Relation::None | Relation::CallBack(_) => {}
        }
        // A call whose original or conference went away is a plain call now. Relations only ever join
        // legs on one extension.
        for other in self.on_line.get(line).into_iter().flatten() {
            let Some(leg) = self.legs.get_mut(other) else {
                continue;
            };
            if matches!(leg.relation, Relation::ConsultFor(o) | Relation::ConsultForConference(o) | Relation::Party(o) if o == id)
            {
                leg.relation = Relation::None;
            }
        }
    }

    pub(crate) fn reject(&mut self, id: CallLegId) -> Result<(), Error> {
        match self.state_of(id)? {
            CallStateKind::Offering | CallStateKind::Accepted => {
                self.drop_leg(id, DisconnectReason::Reject)
            }
            state => Err(Error::InvalidCallState { state }),
        }
    }

    pub(crate) fn hold(&mut self, id: CallLegId) -> Result<(), Error> {
        match self.state_of(id)? {
            CallStateKind::Connected => {}
            state => return Err(Error::InvalidCallState { state }),
        }
        // One call on hard hold; a call held pending a transfer or conference is counted apart.
        let line = self.leg(id)?.line;
        if self
            .legs_on(line)
            .any(|(_, l)| l.state.kind() == CallStateKind::OnHold)
        {
            return Err(Error::ResourceUnavailable {
                what: "the extension already has a call on hold",
            });
        }
        self.set_state(id, CallState::OnHold);
        Ok(())
    }

    pub(crate) fn unhold(&mut self, id: CallLegId) -> Result<(), Error> {
        let state = self.state_of(id)?;
        // Unholding a call held for a transfer or conference cancels the consultation call.
        let consultation = match state {
            CallStateKind::OnHold => None,
            CallStateKind::OnHoldPendingTransfer => self.consultation_of(id, false),
            CallStateKind::OnHoldPendingConference => self.consultation_of(id, true),
            state => return Err(Error::InvalidCallState { state }),
        };
        let line = self.leg(id)?.line;
        let active = self.active_on(line);
        if active.is_some() && active != consultation {
            return Err(Error::ResourceUnavailable {
                what: "another call is active on the extension",
            });
        }
        if let Some(c) = consultation {
            let party = self.unlink(c);
            self.set_state(c, CallState::Idle);
            self.clear_party(party, DisconnectReason::Normal);
        }
        self.set_state(id, CallState::Connected(ConnectedMode::Active));
        Ok(())
    }

    pub(crate) fn swap_hold(&mut self, active: CallLegId, held: CallLegId) -> Result<(), Error> {
        let (a, h) = (self.leg(active)?, self.leg(held)?);
        if a.line != h.line || active == held {
            return Err(Error::InvalidParameter {
                reason: "swap hold needs two different calls on the same extension".into(),
            });
        }
        if a.state.kind() != CallStateKind::Connected {
            return Err(Error::InvalidCallState {
                state: a.state.kind(),
            });
        }
        if h.state.kind() != CallStateKind::OnHold {
            return Err(Error::InvalidCallState {
                state: h.state.kind(),
            });
        }
        self.set_state(active, CallState::OnHold);
        self.set_state(held, CallState::Connected(ConnectedMode::Active));
        Ok(())
    }

    pub(crate) fn secure(&mut self, id: CallLegId) -> Result<(), Error> {
        // A call that has ended has nothing left to protect.
        if let state @ (CallStateKind::Idle | CallStateKind::Disconnected) = self.state_of(id)? {
            return Err(Error::InvalidCallState { state });
        }
        self.set_info(id, |i| i.secure = true);
        Ok(())
    }

    pub(crate) fn generate_digits(
        &mut self,
        id: CallLegId,
        digits: &str,
        mode: DigitMode,
    ) -> Result<(), Error> {
        let leg = self.leg(id)?;
        if leg.state.kind() != CallStateKind::Connected {
            return Err(Error::InvalidCallState {
                state: leg.state.kind(),
            });
        }
        if let Peer::Leg(p) = leg.peer
            && self
                .legs
                .get(&p)
                .is_some_and(|l| l.monitoring_digits.is_some())
        {
            for digit in digits
                .chars()
                .filter(|c| tapir_core::dial::is_dtmf_digit(*c))
            {
                self.out.send(ProviderEvent::Digit {
                    leg: p,
                    digit,
                    mode,
                });
            }
        }
        Ok(())
    }

    pub(crate) fn monitor_digits(
        &mut self,
        id: CallLegId,
        mode: Option<DigitMode>,
    ) -> Result<(), Error> {
        let leg = self.legs.get_mut(&id).ok_or(Error::InvalidCallHandle)?;
        match leg.state.kind() {
            CallStateKind::Idle | CallStateKind::Disconnected => Err(Error::InvalidCallState {
                state: leg.state.kind(),
            }),
            _ => {
                leg.monitoring_digits = mode;
                Ok(())
            }
        }
    }
}
