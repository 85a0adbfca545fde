//! Calls of more than one leg: consultation, transfer (blind and after consulting), conferences,
//! and sending a party away (transfer, redirect).

use super::*;

impl State {
    /// The consultation call made for `id` (a transfer original or a conference parent).
    pub(super) fn consultation_of(&self, id: CallLegId, conference: bool) -> Option<CallLegId> {
        let line = self.legs.get(&id)?.line;
        self.legs_on(line)
            .find(|(_, l)| {
                l.relation
                    == if conference {
                        Relation::ConsultForConference(id)
                    } else {
                        Relation::ConsultFor(id)
                    }
            })
            .map(|(c, _)| *c)
    }

    /// Information for a new call extension `line` originates itself (a consultation call, a
    /// conference parent), with a call ID of its own.
    pub(super) fn own_call(&mut self, line: usize, origin: CallOrigin) -> CallInfo {
        CallInfo {
            call_id: self.new_call_id(),
            origin,
            reason: CallReason::Direct,
            media_mode: MediaModes::INTERACTIVE_VOICE,
            caller: self.party(line),
            ..CallInfo::default()
        }
    }

    /// A consultation call in dial tone on `line`, related as `relation`.
    pub(super) fn consultation_leg(
        &mut self,
        line: usize,
        relation: Relation,
        request: RequestId,
    ) -> CallLegId {
        let info = self.own_call(line, CallOrigin::Outbound);
        let c = self.new_leg(
            line,
            CallState::DialTone(tapir_core::state::DialToneMode::Internal),
            info,
            Peer::None,
            Some(request),
        );
        if let Some(l) = self.legs.get_mut(&c) {
            l.relation = relation;
        }
        c
    }

    pub(crate) fn setup_transfer(
        &mut self,
        id: CallLegId,
        request: RequestId,
    ) -> Result<CallLegId, Error> {
        match self.state_of(id)? {
            CallStateKind::Connected => {}
            state => return Err(Error::InvalidCallState { state }),
        }
        // A conference takes a new party by prepare-add, not by a transfer of itself.
        if matches!(self.leg(id)?.relation, Relation::Parent(_)) {
            return Err(Error::InvalidCallState {
                state: CallStateKind::Connected,
            });
        }
        let line = self.leg(id)?.line;
        if self.appearances_used(line, &[id]) + 2 > APPEARANCES {
            return Err(Error::CallUnavailable);
        }
        self.set_state(id, CallState::OnHoldPendingTransfer);
        let original_call = self.leg(id)?.info.call_id;
        let c = self.consultation_leg(line, Relation::ConsultFor(id), request);
        self.set_info(c, |i| i.related_call_id = Some(original_call));
        Ok(c)
    }

    pub(crate) fn complete_transfer(
        &mut self,
        held: CallLegId,
        consult: CallLegId,
        conference: bool,
        request: RequestId,
    ) -> Result<Option<CallLegId>, Error> {
        match self.state_of(held)? {
            CallStateKind::OnHoldPendingTransfer => {}
            state => return Err(Error::InvalidCallState { state }),
        }
        match self.state_of(consult)? {
            CallStateKind::Connected | CallStateKind::Ringback | CallStateKind::Proceeding => {}
            state => return Err(Error::InvalidCallState { state }),
        }
        let line = self.leg(held)?.line;
        if self.leg(consult)?.line != line || held == consult {
            return Err(Error::InvalidCallHandle);
        }
        if conference {
            let info = self.own_call(line, CallOrigin::Conference);
            let call_id = info.call_id;
            let parent = self.new_leg(
                line,
                CallState::Connected(ConnectedMode::Active),
                info,
                Peer::None,
                Some(request),
            );
            for p in [held, consult] {
                if let Some(l) = self.legs.get_mut(&p) {
                    l.relation = Relation::Party(parent);
                }
                self.set_state(p, CallState::Conferenced);
                self.set_info(p, |i| i.related_call_id = Some(call_id));
            }
            if let Some(l) = self.legs.get_mut(&parent) {
                l.relation = Relation::Parent(vec![held, consult]);
            }
            return Ok(Some(parent));
        }
        // Transfer: the two far parties are connected to each other; both of our legs go idle.
        let first = self.unlink(held);
        let second = self.unlink(consult);
        for l in [held, consult] {
            if let Some(leg) = self.legs.get_mut(&l) {
                leg.relation = Relation::None;
            }
            self.set_state(l, CallState::Idle);
        }
        self.join(first, second);
        Ok(None)
    }

    /// Connects two parties whose legs on a transferring extension have gone.
    pub(super) fn join(&mut self, a: Peer, b: Peer) {
        match (a, b) {
            (Peer::Leg(x), Peer::Leg(y)) => {
                self.link(x, Peer::Leg(y));
                self.update_parties(x, y);
            }
            (Peer::Leg(x), Peer::Outside(o)) | (Peer::Outside(o), Peer::Leg(x)) => {
                self.link(x, Peer::Outside(o));
                let (party, waiting) = match self.outside.get(&o) {
                    Some(out) => (
                        out.party.clone(),
                        (!out.answered).then(|| out.script.clone()).flatten(),
                    ),
                    None => return,
                };
                match waiting {
                    Some(script) => self.ring_outside(x, &script),
                    None => self.set_info(x, |i| i.connected = party),
                }
            }
            (Peer::Outside(o), Peer::Outside(p)) => {
                // Both parties are outside: the call leaves the switch.
                self.outside.remove(&o);
                self.outside.remove(&p);
            }
            (Peer::None, other) | (other, Peer::None) => {
                self.clear_party(other, DisconnectReason::Normal)
            }
        }
    }

    /// After a transfer joined legs `x` and `y`, each learns who the other is.
    pub(super) fn update_parties(&mut self, x: CallLegId, y: CallLegId) {
        let (px, py) = (self.identity(Peer::Leg(x)), self.identity(Peer::Leg(y)));
        for (leg, other, other_party) in [(x, y, py), (y, x, px)] {
            match self.state_of(leg).ok() {
                // Still ringing: it is now the transferred party calling.
                Some(CallStateKind::Offering | CallStateKind::Accepted) => {
                    self.set_info(leg, |i| {
                        i.caller = other_party;
                        i.reason = CallReason::Transfer;
                    })
                }
                Some(_) if self.state_of(other).ok() != Some(CallStateKind::Offering) => {
                    self.set_info(leg, |i| i.connected = other_party)
                }
                _ => {}
            }
        }
    }

    pub(crate) fn setup_conference(
        &mut self,
        id: CallLegId,
        request: RequestId,
    ) -> Result<(CallLegId, CallLegId), Error> {
        match self.state_of(id)? {
            CallStateKind::Connected => {}
            state => return Err(Error::InvalidCallState { state }),
        }
        if self.leg(id)?.relation != Relation::None {
            return Err(Error::InvalidCallState {
                state: CallStateKind::Connected,
            });
        }
        let line = self.leg(id)?.line;
        if self.appearances_used(line, &[id]) + 2 > APPEARANCES {
            return Err(Error::CallUnavailable);
        }
        let info = self.own_call(line, CallOrigin::Conference);
        let call_id = info.call_id;
        let parent = self.new_leg(
            line,
            CallState::OnHoldPendingConference,
            info,
            Peer::None,
            Some(request),
        );
        if let Some(l) = self.legs.get_mut(&parent) {
            l.relation = Relation::Parent(vec![id]);
        }
        if let Some(l) = self.legs.get_mut(&id) {
            l.relation = Relation::Party(parent);
        }
        self.set_state(id, CallState::Conferenced);
        self.set_info(id, |i| i.related_call_id = Some(call_id));
        let c = self.consultation_leg(line, Relation::ConsultForConference(parent), request);
        Ok((parent, c))
    }

    pub(super) fn parties_of(&self, parent: CallLegId) -> Result<Vec<CallLegId>, Error> {
        match &self.leg(parent)?.relation {
            Relation::Parent(p) => Ok(p.clone()),
            _ => Err(Error::NoConference),
        }
    }

    pub(crate) fn prepare_add_to_conference(
        &mut self,
        parent: CallLegId,
        request: RequestId,
        max_parties: usize,
    ) -> Result<CallLegId, Error> {
        match self.state_of(parent)? {
            CallStateKind::Connected => {}
            state => return Err(Error::InvalidCallState { state }),
        }
        if self.parties_of(parent)?.len() >= max_parties {
            return Err(Error::ConferenceFull);
        }
        let line = self.leg(parent)?.line;
        if self.appearances_used(line, &[parent]) + 2 > APPEARANCES {
            return Err(Error::CallUnavailable);
        }
        self.set_state(parent, CallState::OnHoldPendingConference);
        Ok(self.consultation_leg(line, Relation::ConsultForConference(parent), request))
    }

    pub(crate) fn add_to_conference(
        &mut self,
        parent: CallLegId,
        consult: CallLegId,
        max_parties: usize,
    ) -> Result<(), Error> {
        match self.state_of(parent)? {
            CallStateKind::OnHoldPendingConference => {}
            state => return Err(Error::InvalidCallState { state }),
        }
        if self.leg(consult)?.relation != Relation::ConsultForConference(parent) {
            return Err(Error::InvalidCallHandle);
        }
        match self.state_of(consult)? {
            CallStateKind::Connected
            | CallStateKind::Ringback
            | CallStateKind::Proceeding
            | CallStateKind::OnHold => {}
            state => return Err(Error::InvalidCallState { state }),
        }
        if self.parties_of(parent)?.len() >= max_parties {
            return Err(Error::ConferenceFull);
        }
        let call_id = self.leg(parent)?.info.call_id;
        if let Some(l) = self.legs.get_mut(&consult) {
            l.relation = Relation::Party(parent);
        }
        if let Some(Relation::Parent(parties)) = self.legs.get_mut(&parent).map(|l| &mut l.relation)
        {
            parties.push(consult);
        }
        self.set_state(consult, CallState::Conferenced);
        self.set_info(consult, |i| i.related_call_id = Some(call_id));
        self.set_state(parent, CallState::Connected(ConnectedMode::Active));
        Ok(())
    }

    /// Removes a party: it leaves the bridge and its far end is disconnected.
    pub(crate) fn remove_from_conference(&mut self, id: CallLegId) -> Result<(), Error> {
        match self.state_of(id)? {
            CallStateKind::Conferenced => {}
            state => return Err(Error::InvalidCallState { state }),
        }
        self.drop_leg(id, DisconnectReason::Normal)
    }

    /// Sends a connected call's party to `destination`; the leg goes idle here.
    pub(crate) fn blind_transfer(
        &mut self,
        id: CallLegId,
        destination: &DialString,
    ) -> Result<(), Error> {
        match self.state_of(id)? {
            CallStateKind::Connected => {}
            state => return Err(Error::InvalidCallState { state }),
        }
        self.send_party_away(id, destination, CallReason::Transfer)
    }

    /// Deflects an offered call to `destination`; the leg goes idle here.
    pub(crate) fn redirect(
        &mut self,
        id: CallLegId,
        destination: &DialString,
    ) -> Result<(), Error> {
        match self.state_of(id)? {
            CallStateKind::Offering | CallStateKind::Accepted => {}
            state => return Err(Error::InvalidCallState { state }),
        }
        self.send_party_away(id, destination, CallReason::Redirect)
    }

    pub(super) fn send_party_away(
        &mut self,
        id: CallLegId,
        destination: &DialString,
        reason: CallReason,
    ) -> Result<(), Error> {
        let leg = self.leg(id)?;
        let (line, call_id) = (leg.line, leg.info.call_id);
        let number = destination.digits();
        if self.extension_index(&number) == Some(line) {
            return Err(Error::InvalidAddress {
                reason: "a call cannot be sent to the extension it is on".into(),
            });
        }
        // Checked before anything changes: a destination that cannot take the call leaves it here.
        let target = self.destination(&number)?;
        let by = self.party(line);
        let relation = self.leg(id)?.relation.clone();
        let party = self.unlink(id);
        self.set_state(id, CallState::Idle);
        // The leg left as surely as if it were dropped: a call held for it comes back.
        self.after_leaving(id, line, relation);
        let handover = Handover {
            reason,
            by,
            call_id,
            forwards: 0,
        };
        self.deliver(party, target, handover);
        Ok(())
    }
}
