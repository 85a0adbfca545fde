//! The park lot and pickup: parking a call in an orbit, its time-out, retrieving it; taking a
//! call ringing elsewhere.

use super::*;

impl State {
    /// A parked party went away (hung up): its orbit is free again.
    pub(crate) fn forget_parked(&mut self, party: Peer) {
        let Some(orbit) = self
            .parked
            .iter()
            .find(|(_, p)| p.party == party)
            .map(|(o, _)| o.clone())
        else {
            return;
        };
        if let Some(p) = self.parked.remove(&orbit) {
            self.out.line(
                LineId(p.parker as u32),
                LineEvent::Unparked {
                    orbit,
                    call_id: p.call_id,
                },
            );
        }
    }

    /// Parks a connected call: its party waits in an orbit and the leg goes idle here.
    pub(crate) fn park(&mut self, id: CallLegId, orbit: Option<&str>) -> Result<String, Error> {
        match self.state_of(id)? {
            CallStateKind::Connected => {}
            state => return Err(Error::InvalidCallState { state }),
        }
        let orbit = match orbit {
            Some(o) if !self.park_lot.orbits.iter().any(|x| x == o) => {
                return Err(Error::InvalidAddress {
                    reason: format!("{o} is not a park orbit"),
                });
            }
            Some(o) if self.parked.contains_key(o) => return Err(Error::InUse),
            Some(o) => o.to_owned(),
            None => self
                .park_lot
                .orbits
                .iter()
                .find(|o| !self.parked.contains_key(*o))
                .cloned()
                .ok_or(Error::ResourceUnavailable {
                    what: "every park orbit is taken",
                })?,
        };
        let leg = self.leg(id)?;
        let (parker, call_id, relation) = (leg.line, leg.info.call_id, leg.relation.clone());
        let party = self.unlink(id);
        self.set_state(id, CallState::Idle);
        self.after_leaving(id, parker, relation);
        let stay = self.epoch();
        self.parked.insert(
            orbit.clone(),
            Parked {
                party,
                call_id,
                parker,
                stay,
            },
        );
        self.out.line(
            LineId(parker as u32),
            LineEvent::Parked {
                orbit: orbit.clone(),
                call_id,
            },
        );
        self.schedule_park_timeout(orbit.clone(), stay);
        Ok(orbit)
    }

    pub(super) fn schedule_park_timeout(&mut self, orbit: String, stay: u64) {
        let timeout = self.park_lot.timeout;
        self.later(timeout, Due::ParkTimeout { orbit, stay });
    }

    /// A call parked too long rings its parker again (reason *reminder*); if the parker cannot take it
    /// now it stays parked for another timeout.
    pub(super) fn park_timed_out(&mut self, orbit: String) {
        let Some(parker) = self.parked.get(&orbit).map(|p| p.parker) else {
            return;
        };
        if !self.can_take_call(parker) {
            let stay = self.epoch();
            if let Some(p) = self.parked.get_mut(&orbit) {
                p.stay = stay;
            }
            self.schedule_park_timeout(orbit, stay);
            return;
        }
        let Some(p) = self.parked.remove(&orbit) else {
            return;
        };
        self.out.line(
            LineId(p.parker as u32),
            LineEvent::Unparked {
                orbit,
                call_id: p.call_id,
            },
        );
        let info = CallInfo {
            call_id: p.call_id,
            origin: CallOrigin::Internal,
            reason: CallReason::Reminder,
            media_mode: MediaModes::INTERACTIVE_VOICE,
            caller: self.identity(p.party),
            called: self.party(p.parker),
            ..CallInfo::default()
        };
        self.offer(p.parker, info, p.party);
    }

    /// Retrieves the call parked in `orbit` to extension `line`: a new, connected call, reason
    /// *unpark*.
    pub(crate) fn unpark(
        &mut self,
        line: usize,
        orbit: &str,
        request: RequestId,
    ) -> Result<CallLegId, Error> {
        if !self.parked.contains_key(orbit) {
            return Err(Error::InvalidAddress {
                reason: format!("no call is parked in {orbit}"),
            });
        }
        if !self.can_take_call(line) {
            return Err(Error::CallUnavailable);
        }
        let Some(p) = self.parked.remove(orbit) else {
            return Err(Error::InvalidAddress {
                reason: format!("no call is parked in {orbit}"),
            });
        };
        self.out.line(
            LineId(p.parker as u32),
            LineEvent::Unparked {
                orbit: orbit.to_owned(),
                call_id: p.call_id,
            },
        );
        Ok(self.retrieve(line, p.party, p.call_id, CallReason::Unpark, request))
    }

    /// Picks up a call ringing at `target` (an extension) or at any member of pickup group `group` for
    /// extension `line`: the ringing leg ends (disconnected, picked up) and a new, connected leg on
    /// `line` takes its party (reason *pickup*).
    pub(crate) fn pickup(
        &mut self,
        line: usize,
        target: &tapir_core::params::PickupTarget,
        request: RequestId,
    ) -> Result<CallLegId, Error> {
        use tapir_core::params::PickupTarget;
        let candidates: Vec<usize> = match target {
            PickupTarget::Directed(number) => {
                vec![
                    self.extension_index(number)
                        .ok_or_else(|| Error::InvalidAddress {
                            reason: format!("no extension {number}"),
                        })?,
                ]
            }
            PickupTarget::Group(group) => {
                let members =
                    self.pickup_groups
                        .get(group)
                        .ok_or_else(|| Error::InvalidParameter {
                            reason: format!("no pickup group {group}"),
                        })?;
                if !members.contains(&self.extensions[line].number) {
                    return Err(Error::InvalidParameter {
                        reason: format!("extension is not in pickup group {group}"),
                    });
                }
                members
                    .iter()
                    .filter_map(|m| self.extension_index(m))
                    .collect()
            }
        };
        let ringing = self
            .legs
            .iter()
            .filter(|(_, l)| {
                l.line != line
                    && candidates.contains(&l.line)
                    && matches!(
                        l.state.kind(),
                        CallStateKind::Offering | CallStateKind::Accepted
                    )
            })
            .map(|(id, _)| *id)
            .min()
            .ok_or_else(|| Error::InvalidAddress {
                reason: "no call is ringing there".into(),
            })?;
        if !self.can_take_call(line) {
            return Err(Error::CallUnavailable);
        }
        let call_id = self.leg(ringing)?.info.call_id;
        let party = self.unlink(ringing);
        self.set_state(ringing, CallState::Disconnected(DisconnectReason::PickedUp));
        self.set_state(ringing, CallState::Idle);
        Ok(self.retrieve(line, party, call_id, CallReason::Pickup, request))
    }

    /// A new, connected leg on `line` for `party` (unpark, pickup), reported with `request`; the party
    /// learns who it is talking to now.
    pub(super) fn retrieve(
        &mut self,
        line: usize,
        party: Peer,
        call_id: CallId,
        reason: CallReason,
        request: RequestId,
    ) -> CallLegId {
        let them = self.identity(party);
        let info = CallInfo {
            call_id,
            origin: party.origin(),
            reason,
            media_mode: MediaModes::INTERACTIVE_VOICE,
            caller: them.clone(),
            connected: them,
            ..CallInfo::default()
        };
        let leg = self.new_leg(
            line,
            CallState::Connected(ConnectedMode::Active),
            info,
            party,
            Some(request),
        );
        if let Peer::Leg(other) = party {
            if self.state_of(other).ok() == Some(CallStateKind::Ringback) {
                self.set_state(other, CallState::Connected(ConnectedMode::Active));
            }
            let me = self.party(line);
            self.set_info(other, |i| i.connected = me);
        }
        leg
    }
}
