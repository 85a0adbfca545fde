//! Calls arriving and ringing: an offered leg, its ring cadence, and what each of a leg's timers
//! does when it comes due.

use super::*;

impl State {
    /// Offers a call on extension `line`: a new leg, offering, that starts ringing at once.
    pub(crate) fn offer(&mut self, line: usize, info: CallInfo, party: Peer) -> CallLegId {
        let leg = self.new_leg(
            line,
            CallState::Offering(OfferingMode::Active),
            info,
            party,
            None,
        );
        self.start_alerting(leg);
        leg
    }

    /// An offered leg starts ringing (ring 0 now, then one per ring period) and is given up after the
    /// no-answer timeout.
    pub(super) fn start_alerting(&mut self, leg: CallLegId) {
        self.fire(leg, Timer::Ring { count: 0 });
        self.schedule(self.timing.no_answer_timeout, leg, Timer::NoAnswer);
        let rings = self.legs.get(&leg).and_then(|l| {
            self.forwarding
                .get(&l.line)?
                .rules
                .iter()
                .find_map(|(c, _)| match c {
                    ForwardCondition::NoAnswer { rings } => Some(*rings),
                    _ => None,
                })
        });
        if let Some(rings) = rings {
            let after = self.timing.ring_period.saturating_mul(rings);
            self.schedule(after, leg, Timer::ForwardNoAnswer);
        }
    }

    pub(super) fn fire(&mut self, id: CallLegId, timer: Timer) {
        let Some(leg) = self.legs.get(&id) else {
            return;
        };
        let alerting = matches!(
            leg.state.kind(),
            CallStateKind::Offering | CallStateKind::Accepted
        );
        let waiting_outside = match leg.peer {
            Peer::Outside(o) => self.outside.get(&o).is_some_and(|o| !o.answered),
            _ => false,
        };
        match timer {
            Timer::Ring { count } if alerting => {
                self.out.line(
                    LineId(leg.line as u32),
                    LineEvent::Ringing {
                        address: AddressId(0),
                        count,
                    },
                );
                self.schedule(
                    self.timing.ring_period,
                    id,
                    Timer::Ring { count: count + 1 },
                );
            }
            Timer::CallerId => {
                if let Some(caller) = self.legs.get_mut(&id).and_then(|l| l.pending_caller.take()) {
                    self.set_info(id, |i| i.caller = *caller);
                }
            }
            // The called leg rang out: it goes idle and its caller hears no answer.
            Timer::NoAnswer if alerting => {
                let caller = self.unlink(id);
                self.set_state(id, CallState::Disconnected(DisconnectReason::NoAnswer));
                self.set_state(id, CallState::Idle);
                self.clear_party(caller, DisconnectReason::NoAnswer);
            }
            // An outside party never answered.
            Timer::NoAnswer if waiting_outside => {
                let party = self.unlink(id);
                self.clear_party(party, DisconnectReason::NoAnswer);
                self.set_state(id, CallState::Disconnected(DisconnectReason::NoAnswer));
            }
            Timer::ForwardNoAnswer if alerting && leg.forwards < MAX_NO_ANSWER_FORWARDS => {
                let line = leg.line;
                let call_id = leg.info.call_id;
                let forwards = leg.forwards + 1;
                let Some(to) =
                    self.forward_rule(line, |c| matches!(c, ForwardCondition::NoAnswer { .. }))
                else {
                    return;
                };
                // A destination that cannot take the call now: keep ringing here.
                let Ok(target) = self.destination(&to) else {
                    return;
                };
                let party = self.unlink(id);
                self.set_state(id, CallState::Disconnected(DisconnectReason::Forwarded));
                self.set_state(id, CallState::Idle);
                let by = self.party(line);
                self.deliver(
                    party,
                    target,
                    Handover {
                        reason: CallReason::ForwardNoAnswer,
                        by,
                        call_id,
                        forwards,
                    },
                );
            }
            Timer::GiveUp if alerting => {
                let party = self.unlink(id);
                self.clear_party(party, DisconnectReason::Normal);
                self.peer_cleared(id, DisconnectReason::Normal);
            }
            Timer::FarEndAnswers if waiting_outside => {
                let Peer::Outside(o) = leg.peer else {
                    return;
                };
                let Some(outside) = self.outside.get_mut(&o) else {
                    return;
                };
                outside.answered = true;
                outside.script = None;
                let party = outside.party.clone();
                let hang_up_after = outside.hang_up_after;
                if self.state_of(id).ok() == Some(CallStateKind::Ringback) {
                    self.set_state(id, CallState::Connected(ConnectedMode::Active));
                }
                self.set_info(id, |i| i.connected = party);
                if let Some(after) = hang_up_after {
                    self.schedule(after, id, Timer::FarEndHangsUp);
                }
            }
            Timer::FarEndHangsUp => self.far_end_clears(id),
            _ => {}
        }
    }
}
