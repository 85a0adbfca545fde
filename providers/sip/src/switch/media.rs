//! Media: which dialog is bridged with which, what each may send, re-INVITEs both ways (glare
//! included), and the operations that wait for them.

use super::*;

impl Switch {
    pub(super) fn on_reoffer(
        &mut self,
        now: Instant,
        ch: ChannelId,
        tx: TxId,
        sdp: Option<Vec<u8>>,
    ) {
        let Some(c) = self.channels.get(&ch) else {
            self.sip(SipAction::AnswerReoffer {
                tx,
                status: 481,
                sdp: None,
            });
            return;
        };
        if c.reoffer.is_some() {
            // Both sides offered at once (RFC 3261 §14.1): refuse theirs; ours is answered first.
            self.sip(SipAction::AnswerReoffer {
                tx,
                status: 491,
                sdp: None,
            });
            return;
        }
        let offer = match sdp.as_deref().map(Sdp::parse) {
            Some(Ok(o)) => o,
            None => {
                // A re-INVITE without an offer (a session refresh asking for one): offer what was
                // sent last.
                let sdp = c.local.last().map(str::to_owned);
                self.sip(SipAction::AnswerReoffer {
                    tx,
                    status: if sdp.is_some() { 200 } else { 488 },
                    sdp,
                });
                return;
            }
            Some(Err(_)) => {
                self.sip(SipAction::AnswerReoffer {
                    tx,
                    status: 488,
                    sdp: None,
                });
                return;
            }
        };
        let holds = offer.is_hold();
        if let Some(c) = self.channels.get_mut(&ch) {
            c.offered(offer);
        }
        // Answer now with what the partner has; the partner is then brought in line.
        let partner = self.partner(ch);
        let media = partner.and_then(|p| {
            let c = self.channels.get(&p)?;
            Some((c.remote.clone()?, c.wants))
        });
        let hold = self.hold_flow(ch);
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        let offer = c.unanswered.take();
        let sdp = match (media, offer) {
            (Some((sdp, wants)), Some(offer)) => {
                let flow = offer.direction().answer().and(wants).and(hold);
                let r = c.local.relay(&sdp, Some(&offer), flow);
                Some(c.local.sent(r))
            }
            // Nothing bridged (dial tone): answer with what was sent last, flows narrowed.
            _ => c.local.last().map(str::to_owned),
        };
        self.sip(SipAction::AnswerReoffer {
            tx,
            status: if sdp.is_some() { 200 } else { 488 },
            sdp,
        });
        // The phone's own hold or unhold shows on its leg.
        if let Some(&Link::Phone(leg)) = self.links.get(&ch) {
            if let Some(l) = self.legs.get_mut(&leg) {
                let before = l.phone_holds;
                l.phone_holds = holds;
                if before != holds && !l.held {
                    let s = if holds {
                        CallState::OnHold
                    } else {
                        CallState::Connected(ConnectedMode::Active)
                    };
                    self.set_state(leg, s);
                }
            }
        }
        if let Some(p) = partner {
            self.sync(p, now);
        }
    }

    pub(super) fn on_reoffered(
        &mut self,
        now: Instant,
        ch: ChannelId,
        result: Result<Option<Vec<u8>>, u16>,
    ) {
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        let Some(Reoffer { flow }) = c.reoffer.take() else {
            return;
        };
        let ops = self.waiters.remove(&ch).unwrap_or_default();
        match result {
            Ok(sdp) => {
                if let Some(answer) = sdp.as_deref().and_then(|b| Sdp::parse(b).ok()) {
                    c.answered(answer, flow);
                }
                let again = std::mem::take(&mut c.stale);
                if again {
                    // The bridge moved on meanwhile: those waiting wait for the next offer.
                    self.waiters.insert(ch, ops);
                    self.sync(ch, now);
                } else {
                    for op in ops {
                        self.op_step(op, None);
                    }
                }
            }
            Err(491) => {
                // Glare: offer again after the back-off (RFC 3261 §14.1), same waiters.
                c.local.refused();
                let roll = self.id();
                let Some(c) = self.channels.get_mut(&ch) else {
                    return;
                };
                let at = now + c.glare_backoff(roll);
                c.retry_at = Some(at);
                c.stale = true;
                self.waiters.insert(ch, ops);
                self.at(at, Timer::Retry(ch));
            }
            Err(status) => {
                // Refused: the session stays as it was before the offer (RFC 3261 §14.1).
                c.local.refused();
                c.stale = false;
                for op in ops {
                    self.op_step(
                        op,
                        Some(format!("the far end refused the change ({status})")),
                    );
                }
            }
        }
    }

    /// The channel the media of `ch` is bridged with.
    pub(super) fn partner(&self, ch: ChannelId) -> Option<ChannelId> {
        match *self.links.get(&ch)? {
            Link::Far(leg) => match self.legs.get(&leg)?.phone[..] {
                [p] => Some(p),
                _ => None,
            },
            Link::Phone(leg) => match self.legs.get(&leg)?.far {
                Far::Outside(t) => Some(t),
                Far::Leg(other) => match self.legs.get(&other)?.phone[..] {
                    [p] => Some(p),
                    _ => None,
                },
                Far::None | Far::Parked => None,
            },
            Link::Relay(other) => Some(other),
            Link::Parked => None,
        }
    }

    /// Which ways media may flow towards and from `ch` because of holds: a holding leg's phone
    /// neither sends nor receives; the party it holds may only listen.
    pub(super) fn hold_flow(&self, ch: ChannelId) -> Flow {
        let held = |leg: CallLegId| self.legs.get(&leg).is_some_and(|l| l.held);
        match self.links.get(&ch) {
            Some(&Link::Phone(leg)) => {
                let mut f = if held(leg) { Flow::NONE } else { Flow::BOTH };
                if let Some(Far::Leg(other)) = self.legs.get(&leg).map(|l| l.far) {
                    if held(other) {
                        f = f.and(Flow::SEND);
                    }
                }
                f
            }
            Some(&Link::Far(leg)) if held(leg) => Flow::SEND,
            _ => Flow::BOTH,
        }
    }

    /// Brings what `ch` was sent in line with its bridge: re-offers if it differs (or marks the
    /// channel to re-offer once it may). A dialog bridged with nothing (a held original whose
    /// phone serves a consultation, a parked party, a phone in dial tone) is offered a placeholder:
    /// no media flows, and none goes to a party no longer there. Returns whether an offer is (or
    /// will be) outstanding.
    pub(super) fn sync(&mut self, ch: ChannelId, now: Instant) -> bool {
        let media = match self.partner(ch) {
            Some(p) => match self
                .channels
                .get(&p)
                .and_then(|p| Some((p.remote.clone()?, p.wants)))
            {
                Some(m) => Some(m),
                // The partner has no media yet (it still rings): nothing to change.
                None => return false,
            },
            None => None,
        };
        let flow = media
            .as_ref()
            .map(|(_, wants)| wants.and(self.hold_flow(ch)))
            .unwrap_or(Flow::NONE);
        let local = self.local;
        let Some(c) = self.channels.get_mut(&ch) else {
            return false;
        };
        if !c.is_up() {
            return false;
        }
        if !c.may_offer(now) {
            c.stale = true;
            return true;
        }
        let r = match &media {
            Some((sdp, _)) => c.local.relay(sdp, None, flow),
            None => c.local.placeholder(local, Flow::NONE),
        };
        if !r.changed {
            return false;
        }
        let sdp = c.local.sent(r);
        c.reoffer = Some(Reoffer { flow });
        c.stale = false;
        self.sip(SipAction::Reoffer { ch, sdp });
        true
    }

    /// Re-syncs `ch` on behalf of `op`, which then waits for it.
    pub(super) fn sync_for(&mut self, ch: ChannelId, now: Instant, op: OpId) {
        if self.sync(ch, now) {
            self.waiters.entry(ch).or_default().push(op);
            if let Some(o) = self.ops.get_mut(&op) {
                o.waiting += 1;
            }
        }
    }

    /// One re-INVITE `op` waited for is over (`failure` says why if it failed).
    pub(super) fn op_step(&mut self, op: OpId, failure: Option<String>) {
        let Some(o) = self.ops.get_mut(&op) else {
            return;
        };
        o.waiting = o.waiting.saturating_sub(1);
        if o.failure.is_none() {
            o.failure = failure;
        }
        if o.waiting == 0 {
            self.op_settled(op);
        }
    }

    /// Every re-INVITE of `op` is answered: finish it.
    pub(super) fn op_settled(&mut self, op: OpId) {
        let Some(o) = self.ops.get(&op) else { return };
        let (kind, failure) = (o.kind, o.failure.clone());
        if o.undoing {
            // What the operation changed is back as it was: now it may say it failed.
            let reason = failure.unwrap_or_else(|| "refused".into());
            return self.done(op, Err(Error::OperationFailed { reason }));
        }
        match (kind, failure) {
            (OpKind::Hold(leg), None) => {
                self.set_state(leg, CallState::OnHold);
                self.done(op, Ok(Done::Unit));
            }
            (OpKind::Unhold(leg), None) => {
                self.set_state(leg, CallState::Connected(ConnectedMode::Active));
                self.done(op, Ok(Done::Unit));
            }
            (OpKind::SwapHold { active, held }, None) => {
                self.set_state(active, CallState::OnHold);
                self.set_state(held, CallState::Connected(ConnectedMode::Active));
                self.done(op, Ok(Done::Unit));
            }
            (OpKind::SwapHold { active, held }, Some(_)) => {
                for (leg, was) in [(active, false), (held, true)] {
                    if let Some(l) = self.legs.get_mut(&leg) {
                        l.held = was;
                    }
                }
                let chans: Vec<ChannelId> = [active, held]
                    .into_iter()
                    .flat_map(|l| self.bridge_channels(l))
                    .collect();
                self.undo(op, chans);
            }
            (OpKind::SetupTransfer { original, consult }, None) => {
                self.set_state(original, CallState::OnHoldPendingTransfer);
                self.done(op, Ok(Done::Leg(consult)));
            }
            (OpKind::SetupTransfer { consult, .. }, Some(reason)) => {
                // The original could not be held: the consultation call goes, the phone dialog
                // returns, and the original is as it was.
                self.done(op, Err(Error::OperationFailed { reason }));
                self.end_phone(consult, 0);
                self.set_state(consult, CallState::Idle);
            }
            (OpKind::Hold(leg) | OpKind::Unhold(leg), Some(_)) => {
                // Put back what was there: the side that took the change is offered the old
                // session again; the call's state never changed.
                if let Some(l) = self.legs.get_mut(&leg) {
                    l.held = kind != OpKind::Hold(leg);
                }
                let chans = self.bridge_channels(leg);
                self.undo(op, chans);
            }
            (_, Some(reason)) => self.done(op, Err(Error::OperationFailed { reason })),
            (_, None) => self.done(op, Ok(Done::Unit)),
        }
    }

    /// `op` failed: re-offers `chans` what they had before, and fails once they have answered (the
    /// call is as it was when the error comes back).
    fn undo(&mut self, op: OpId, chans: Vec<ChannelId>) {
        if let Some(o) = self.ops.get_mut(&op) {
            o.undoing = true;
            o.waiting = 0;
        }
        let now = self.last_now;
        for c in chans {
            self.sync_for(c, now, op);
        }
        if self.ops.get(&op).is_some_and(|o| o.waiting == 0) {
            self.op_settled(op);
        }
    }

    /// The leg's phone dialog and its far side's dialog.
    pub(super) fn bridge_channels(&self, leg: CallLegId) -> Vec<ChannelId> {
        let mut out = Vec::new();
        if let Some(l) = self.legs.get(&leg) {
            if let [p] = l.phone[..] {
                out.push(p);
                if let Some(q) = self.partner(p) {
                    out.push(q);
                }
            }
        }
        out
    }

    pub(super) fn on_digit(&mut self, ch: ChannelId, digit: char) {
        // The digit is heard at the bridge partner: relay it there, and report it on the leg whose
        // phone that is.
        let Some(p) = self.partner(ch) else { return };
        self.sip(SipAction::Digits {
            ch: p,
            digits: digit.to_string(),
            op: None,
        });
        self.digit_heard(p, digit);
    }

    /// `digit` reached the phone dialog `ch`: its leg reports it if it monitors digits.
    pub(super) fn digit_heard(&mut self, ch: ChannelId, digit: char) {
        if let Some(&Link::Phone(leg)) = self.links.get(&ch) {
            if self.legs.get(&leg).is_some_and(|l| l.digits) {
                self.report(ProviderEvent::Digit {
                    leg,
                    digit,
                    mode: DigitMode::Dtmf,
                });
            }
        }
    }
}
