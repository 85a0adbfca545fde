//! Calls coming together and coming apart: INVITEs in and out, ringing, answering, failures and
//! hang-ups, and a leg's state and reports.

use super::*;

impl Switch {
    pub(super) fn new_channel(&mut self, ch: Channel) -> ChannelId {
        let id = ChannelId(self.id());
        self.channels.insert(id, ch);
        id
    }

    pub(super) fn origin_id(&mut self) -> u64 {
        // Origin session IDs only need to be unique per dialog; the switch's counter is.
        self.id()
    }

    pub(super) fn on_invite(&mut self, now: Instant, tx: TxId, inv: Invite) {
        let from_trunk = self.trunk.as_ref().is_some_and(|t| t.addr == inv.source);
        let caller_line = if from_trunk {
            None
        } else {
            match self.by_number.get(inv.from_user.as_str()).copied() {
                Some(line) => {
                    let trusted = self.lines[line].fixed == Some(inv.source);
                    if !trusted
                        && self
                            .authenticate(now, tx, line, "INVITE", inv.auth.as_ref())
                            .is_err()
                    {
                        return;
                    }
                    Some(line)
                }
                None => {
                    // Only the trunk and the lines may place calls.
                    self.respond(tx, 403);
                    return;
                }
            }
        };
        let offer = match inv.sdp.as_deref().map(Sdp::parse) {
            Some(Ok(o)) => o,
            // A call without an offer (or with one tapir cannot read) cannot be bridged.
            _ => {
                self.respond(tx, 488);
                return;
            }
        };
        let target_line = self.by_number.get(inv.to_user.as_str()).copied();
        match (caller_line, target_line) {
            (None, None) => self.respond(tx, 404),
            (None, Some(line)) => {
                // From outside to a line.
                if !self.registrar.reachable(line) {
                    self.respond(tx, 480);
                    return;
                }
                let origin = self.origin_id();
                let ch = self.new_channel(Channel::inbound(offer, origin));
                self.sip(SipAction::Adopt { tx, ch });
                let caller = party_of(&inv);
                let call_id = CallId(self.id());
                let info = CallInfo {
                    call_id,
                    origin: CallOrigin::External,
                    media_mode: MediaModes::INTERACTIVE_VOICE,
                    caller,
                    called: self.lines[line].party(),
                    ..CallInfo::default()
                };
                let leg = self.offer_leg(now, line, info, Far::Outside(ch));
                self.links.insert(ch, (leg, Role::Far));
            }
            (Some(from), to) => {
                // From a line's phone: an internal call, or out through the trunk.
                if to.is_none() && self.trunk.is_none() {
                    self.respond(tx, 404);
                    return;
                }
                let origin = self.origin_id();
                let ch = self.new_channel(Channel::inbound(offer, origin));
                self.sip(SipAction::Adopt { tx, ch });
                let call_id = CallId(self.id());
                let info = CallInfo {
                    call_id,
                    origin: CallOrigin::Outbound,
                    media_mode: MediaModes::INTERACTIVE_VOICE,
                    caller: self.lines[from].party(),
                    called: PartyId::number(inv.to_user.as_str()),
                    ..CallInfo::default()
                };
                let leg = CallLegId(self.id());
                self.legs.insert(
                    leg,
                    Leg {
                        line: from,
                        state: CallState::Dialing,
                        info: Arc::new(info),
                        phone: vec![ch],
                        far: Far::None,
                        held: false,
                        phone_holds: false,
                        digits: false,
                        reported: false,
                        request: None,
                        setup: None,
                        dialled: String::new(),
                    },
                );
                self.links.insert(ch, (leg, Role::Phone));
                self.announce(leg);
                self.place(now, leg, &inv.to_user);
            }
        }
    }

    /// Creates a leg offered on `line` and rings its phone's contacts.
    pub(super) fn offer_leg(
        &mut self,
        now: Instant,
        line: usize,
        info: CallInfo,
        far: Far,
    ) -> CallLegId {
        let leg = CallLegId(self.id());
        self.legs.insert(
            leg,
            Leg {
                line,
                state: CallState::Offering(OfferingMode::Active),
                info: Arc::new(info),
                phone: Vec::new(),
                far,
                held: false,
                phone_holds: false,
                digits: false,
                reported: false,
                request: None,
                setup: None,
                dialled: String::new(),
            },
        );
        self.announce(leg);
        self.ring(leg, false);
        self.at(now + self.timing.no_answer, Timer::NoAnswer(leg));
        leg
    }

    /// Sends INVITEs to every contact of the leg's line (the first to answer wins), offering the
    /// far side's media.
    pub(super) fn ring(&mut self, leg: CallLegId, auto_answer: bool) {
        let Some(l) = self.legs.get(&leg) else { return };
        let line = l.line;
        let caller = l.info.caller.clone();
        let far_sdp = self.far_media(leg);
        let contacts = self.registrar.contacts(line).to_vec();
        let from = Party {
            user: caller.number.as_deref().unwrap_or("anonymous").to_owned(),
            name: caller.name.as_deref().map(str::to_owned),
        };
        let to = self.lines[line].sip();
        for b in contacts {
            let origin = self.origin_id();
            let mut c = Channel::outbound(origin);
            c.auto_answer = auto_answer;
            let rendered = match &far_sdp {
                Some((sdp, flow)) => c.local.relay(sdp, None, *flow),
                None => {
                    c.placeholder = true;
                    c.local.placeholder(self.local)
                }
            };
            let sdp = c.local.sent(rendered);
            let ch = self.new_channel(c);
            self.links.insert(ch, (leg, Role::Phone));
            if let Some(l) = self.legs.get_mut(&leg) {
                l.phone.push(ch);
            }
            self.sip(SipAction::Invite {
                ch,
                uri: b.contact.clone(),
                addr: b.addr,
                tcp: b.tcp,
                from: from.clone(),
                to: to.clone(),
                sdp,
                auto_answer,
            });
        }
    }

    /// The media of the far side of `leg` and the flow to offer with it, if the far side has any.
    pub(super) fn far_media(&self, leg: CallLegId) -> Option<(Sdp, Flow)> {
        let l = self.legs.get(&leg)?;
        let ch = match l.far {
            Far::Outside(ch) => ch,
            Far::Leg(other) => *self.legs.get(&other)?.phone.first()?,
            Far::None => return None,
        };
        let c = self.channels.get(&ch)?;
        Some((c.remote.clone()?, c.wants))
    }

    /// Dials `number` for `leg` (whose phone is there): another line, or the trunk.
    pub(super) fn place(&mut self, now: Instant, leg: CallLegId, number: &str) {
        let Some(l) = self.legs.get(&leg) else { return };
        let from_line = l.line;
        let call_id = l.info.call_id;
        if let Some(&to_line) = self.by_number.get(number) {
            if to_line == from_line {
                // A line calling itself hears busy.
                self.fail_setup(leg, CallState::Busy(tapir_core::state::BusyMode::Station));
                return;
            }
            if !self.registrar.reachable(to_line) {
                self.fail_setup(leg, CallState::Disconnected(DisconnectReason::Unavailable));
                return;
            }
            let info = CallInfo {
                call_id,
                origin: CallOrigin::Internal,
                media_mode: MediaModes::INTERACTIVE_VOICE,
                caller: self.lines[from_line].party(),
                called: self.lines[to_line].party(),
                ..CallInfo::default()
            };
            self.set_called(leg, self.lines[to_line].party());
            let other = self.offer_leg(now, to_line, info, Far::Leg(leg));
            if let Some(l) = self.legs.get_mut(&leg) {
                l.far = Far::Leg(other);
            }
            self.set_state(leg, CallState::Proceeding);
            return;
        }
        let Some(trunk) = self.trunk.clone() else {
            self.fail_setup(leg, CallState::Disconnected(DisconnectReason::BadAddress));
            return;
        };
        self.set_called(leg, PartyId::number(number));
        let (sdp, flow) = match self.legs.get(&leg).and_then(|l| l.phone.first()) {
            Some(p) => match self.channels.get(p) {
                Some(c) => match &c.remote {
                    Some(r) => (r.clone(), c.wants),
                    None => return,
                },
                None => return,
            },
            None => return,
        };
        let origin = self.origin_id();
        let mut c = Channel::outbound(origin);
        let rendered = c.local.relay(&sdp, None, flow);
        let sdp = c.local.sent(rendered);
        let ch = self.new_channel(c);
        self.links.insert(ch, (leg, Role::Far));
        if let Some(l) = self.legs.get_mut(&leg) {
            l.far = Far::Outside(ch);
        }
        let host = trunk.addr;
        self.sip(SipAction::Invite {
            ch,
            uri: format!("sip:{number}@{host}"),
            addr: trunk.addr,
            tcp: trunk.tcp,
            from: self.lines[from_line].sip(),
            to: Party {
                user: number.to_owned(),
                name: None,
            },
            sdp,
            auto_answer: false,
        });
        self.set_state(leg, CallState::Proceeding);
    }

    pub(super) fn set_called(&mut self, leg: CallLegId, called: PartyId) {
        if let Some(l) = self.legs.get_mut(&leg) {
            let mut info = (*l.info).clone();
            info.called = called;
            self.update_info(leg, info);
        }
    }

    pub(super) fn on_progress(&mut self, ch: ChannelId, status: u16, sdp: Option<Vec<u8>>) {
        let Some(&(leg, role)) = self.links.get(&ch) else {
            return;
        };
        if let Some(c) = self.channels.get_mut(&ch) {
            if c.phase == Phase::Setup {
                c.phase = Phase::Early;
            }
        }
        if status < 180 {
            return;
        }
        let early = sdp.as_deref().and_then(|b| Sdp::parse(b).ok());
        match role {
            Role::Phone => {
                // The leg's phone rings: tell its far side.
                let Some(l) = self.legs.get(&leg) else { return };
                if l.setup.is_some() {
                    // A call tapir places: its own phone rings; nothing to relay.
                    return;
                }
                match l.far {
                    Far::Leg(caller) => {
                        self.relay_ringing(caller, early.as_ref());
                    }
                    Far::Outside(t) => {
                        self.early_to(t, early.as_ref());
                    }
                    Far::None => {}
                }
            }
            Role::Far => {
                // The outside rings for this leg.
                self.set_state(leg, CallState::Ringback);
                let phone = self.legs.get(&leg).and_then(|l| l.phone.first().copied());
                if let Some(p) = phone {
                    self.early_to(p, early.as_ref());
                }
            }
        }
    }

    /// The caller's leg hears ringback; its phone (if it called in) is told.
    pub(super) fn relay_ringing(&mut self, caller: CallLegId, early: Option<&Sdp>) {
        if self
            .legs
            .get(&caller)
            .is_some_and(|l| l.state.kind() == CallStateKind::Ringback)
        {
            return;
        }
        self.set_state(caller, CallState::Ringback);
        let phone = self
            .legs
            .get(&caller)
            .and_then(|l| l.phone.first().copied());
        if let Some(p) = phone {
            self.early_to(p, early);
        }
    }

    /// 180 (or 183 with early media) on an inbound dialog still waiting for its answer.
    pub(super) fn early_to(&mut self, ch: ChannelId, early: Option<&Sdp>) {
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        if c.way != Way::In || c.is_up() || c.is_ended() {
            return;
        }
        c.phase = Phase::Early;
        let sdp = match (early, c.unanswered.as_ref()) {
            (Some(e), Some(offer)) => {
                let flow = c.wants.answer().and(e.direction());
                let r = c.local.relay(e, Some(offer), flow);
                Some(c.local.sent(r))
            }
            _ => None,
        };
        self.sip(SipAction::Ring { ch, sdp });
    }

    pub(super) fn on_answered(&mut self, now: Instant, ch: ChannelId, sdp: Option<Vec<u8>>) {
        let Some(&(leg, role)) = self.links.get(&ch) else {
            return;
        };
        let answer = sdp.as_deref().and_then(|b| Sdp::parse(b).ok());
        let Some(answer) = answer else {
            // A 2xx without a usable answer: the dialog cannot carry media; end it.
            self.end_channel(ch, 488);
            self.on_failed(ch, 488);
            return;
        };
        if let Some(c) = self.channels.get_mut(&ch) {
            c.phase = Phase::Up;
            let offered = c.wants;
            c.answered(answer, offered);
        }
        match role {
            Role::Phone => self.phone_answered(now, leg, ch),
            Role::Far => {
                // The outside answered this leg's call.
                let mut info = self
                    .legs
                    .get(&leg)
                    .map(|l| (*l.info).clone())
                    .unwrap_or_default();
                info.connected = info.called.clone();
                self.update_info(leg, info);
                self.set_state(leg, CallState::Connected(ConnectedMode::Active));
                self.complete_far(now, leg);
            }
        }
    }

    /// The leg's far side answered: its phone gets the far side's media — as the answer to the
    /// phone's own INVITE, or (a call tapir placed) as a new offer.
    pub(super) fn complete_far(&mut self, now: Instant, leg: CallLegId) {
        let Some(phone) = self.legs.get(&leg).and_then(|l| l.phone.first().copied()) else {
            return;
        };
        let inbound_unanswered = self
            .channels
            .get(&phone)
            .is_some_and(|c| c.way == Way::In && !c.is_up());
        if inbound_unanswered {
            self.answer_inbound(phone);
        } else {
            self.sync(phone, now);
        }
    }

    /// Answers the inbound dialog `ch` with its bridge partner's media.
    pub(super) fn answer_inbound(&mut self, ch: ChannelId) {
        let partner = self.partner(ch);
        let media = partner.and_then(|p| {
            let c = self.channels.get(&p)?;
            Some((c.remote.clone()?, c.wants))
        });
        let hold = self.hold_flow(ch);
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        let (Some((sdp, wants)), Some(offer)) = (media, c.unanswered.take()) else {
            return;
        };
        let flow = offer.direction().answer().and(wants).and(hold);
        let r = c.local.relay(&sdp, Some(&offer), flow);
        let sdp = c.local.sent(r);
        c.phase = Phase::Up;
        self.sip(SipAction::Answer { ch, sdp });
    }

    /// The phone of `leg` answered on `ch`.
    pub(super) fn phone_answered(&mut self, now: Instant, leg: CallLegId, ch: ChannelId) {
        // The first to answer wins; the other contacts stop ringing.
        let others: Vec<ChannelId> = match self.legs.get_mut(&leg) {
            Some(l) => {
                let others = l.phone.iter().copied().filter(|c| *c != ch).collect();
                l.phone = vec![ch];
                others
            }
            None => return,
        };
        for o in others {
            self.end_channel(o, 0);
        }
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        if let Some(op) = l.setup.take() {
            // A call tapir placed: the line's phone is off hook.
            l.state = CallState::DialTone(DialToneMode::Normal);
            self.announce(leg);
            if let Some(d) = self.pending_dest.remove(&op) {
                self.dial_number(now, leg, &d);
            }
            self.done(op, Ok(Done::Leg(leg)));
            return;
        }
        // An offered call answered at the phone.
        let mut info = (*l.info).clone();
        info.connected = info.caller.clone();
        let far = l.far;
        let line = l.line;
        self.update_info(leg, info);
        self.set_state(leg, CallState::Connected(ConnectedMode::Active));
        for (op, kind) in self.ops_of(leg) {
            if kind == OpKind::Answer(leg) {
                self.done(op, Ok(Done::Unit));
            }
        }
        match far {
            Far::Outside(t) => self.answer_inbound(t),
            Far::Leg(caller) => {
                let mut info = self
                    .legs
                    .get(&caller)
                    .map(|l| (*l.info).clone())
                    .unwrap_or_default();
                info.connected = self.lines[line].party();
                self.update_info(caller, info);
                self.set_state(caller, CallState::Connected(ConnectedMode::Active));
                self.complete_far(now, caller);
            }
            Far::None => {}
        }
    }

    pub(super) fn ops_of(&self, leg: CallLegId) -> Vec<(OpId, OpKind)> {
        self.ops
            .iter()
            .filter(|(_, o)| match o.kind {
                OpKind::MakeCall(l) | OpKind::Hold(l) | OpKind::Unhold(l) | OpKind::Answer(l) => {
                    l == leg
                }
                OpKind::Digits => false,
            })
            .map(|(id, o)| (*id, o.kind))
            .collect()
    }

    pub(super) fn on_failed(&mut self, ch: ChannelId, status: u16) {
        let Some(&(leg, role)) = self.links.get(&ch) else {
            self.channels.remove(&ch);
            return;
        };
        self.forget_channel(ch);
        match role {
            Role::Phone => {
                let Some(l) = self.legs.get_mut(&leg) else {
                    return;
                };
                l.phone.retain(|c| *c != ch);
                if !l.phone.is_empty() {
                    return; // other contacts still ring
                }
                if let Some(op) = l.setup {
                    let number = self.lines[l.line].number.clone();
                    self.forget_leg(leg);
                    self.done(
                        op,
                        Err(Error::OperationFailed {
                            reason: format!("the phone of line {number} did not answer ({status})"),
                        }),
                    );
                    return;
                }
                if self
                    .ops_of(leg)
                    .iter()
                    .any(|(_, k)| *k == OpKind::Answer(leg))
                {
                    // Asking the phone to answer failed: let it ring again as before.
                    for (op, kind) in self.ops_of(leg) {
                        if kind == OpKind::Answer(leg) {
                            self.done(
                                op,
                                Err(Error::OperationFailed {
                                    reason: format!(
                                        "the phone did not answer when asked ({status})"
                                    ),
                                }),
                            );
                        }
                    }
                    self.ring(leg, false);
                    return;
                }
                // Every contact refused or stopped: the call is not answered here.
                let outcome = match cause::outcome(status) {
                    CallState::Disconnected(DisconnectReason::Cancelled) => {
                        CallState::Disconnected(DisconnectReason::NoAnswer)
                    }
                    other => other,
                };
                self.unanswered(leg, outcome);
            }
            Role::Far => {
                // The outside did not take the leg's call.
                let outcome = cause::outcome(status);
                self.fail_setup(leg, outcome);
            }
        }
    }

    /// An offered leg was not answered (its phones refused, or it rang too long): it ends, and its
    /// caller learns why.
    pub(super) fn unanswered(&mut self, leg: CallLegId, outcome: CallState) {
        self.end_phone(leg, 0);
        let far = match self.legs.get_mut(&leg) {
            Some(l) => std::mem::replace(&mut l.far, Far::None),
            None => return,
        };
        // The caller hears why first; then the leg ends (its own clean-up finds nothing left).
        match far {
            Far::Outside(t) => self.end_channel(t, cause::status(outcome)),
            Far::Leg(caller) => {
                if let Some(c) = self.legs.get_mut(&caller) {
                    c.far = Far::None;
                }
                self.fail_setup(caller, outcome);
            }
            Far::None => {}
        }
        self.set_state(leg, CallState::Idle);
    }

    /// The call `leg` was placing did not go through: it shows why; a phone that called in is told
    /// and the leg ends with it.
    pub(super) fn fail_setup(&mut self, leg: CallLegId, outcome: CallState) {
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        l.far = Far::None;
        self.set_state(leg, outcome);
        let phone = self.legs.get(&leg).and_then(|l| l.phone.first().copied());
        let inbound = phone
            .and_then(|p| self.channels.get(&p))
            .is_some_and(|c| c.way == Way::In && !c.is_up());
        if inbound {
            // The phone dialled this call itself: it hears why, and its call is over.
            self.end_phone(leg, cause::status(outcome));
            self.set_state(leg, CallState::Idle);
        }
    }

    pub(super) fn on_ended(&mut self, ch: ChannelId) {
        let Some(&(leg, role)) = self.links.get(&ch) else {
            self.channels.remove(&ch);
            return;
        };
        let ringing = self
            .channels
            .get(&ch)
            .is_some_and(|c| c.way == Way::Out && !c.is_up());
        if ringing {
            // An outbound INVITE that ended without an answer is a failure.
            return self.on_failed(ch, 487);
        }
        self.forget_channel(ch);
        match role {
            Role::Phone => {
                // The line's phone hung up: the station is on hook.
                if let Some(l) = self.legs.get_mut(&leg) {
                    l.phone.retain(|c| *c != ch);
                }
                self.hang_up_far(leg);
                if let Some(l) = self.legs.get(&leg) {
                    if let Some(op) = l.setup {
                        self.forget_leg(leg);
                        self.done(
                            op,
                            Err(Error::OperationFailed {
                                reason: "the phone hung up".into(),
                            }),
                        );
                        return;
                    }
                }
                self.set_state(leg, CallState::Idle);
            }
            Role::Far => {
                if let Some(l) = self.legs.get_mut(&leg) {
                    l.far = Far::None;
                }
                self.far_hung_up(leg);
            }
        }
    }

    /// The far side of `leg` hung up.
    pub(super) fn far_hung_up(&mut self, leg: CallLegId) {
        let Some(l) = self.legs.get(&leg) else { return };
        match l.state.kind() {
            CallStateKind::Offering | CallStateKind::Accepted => {
                // The caller gave up before anyone answered.
                self.end_phone(leg, 0);
                self.set_state(leg, CallState::Disconnected(DisconnectReason::Normal));
                self.set_state(leg, CallState::Idle);
            }
            CallStateKind::Idle => {}
            _ => {
                self.set_state(leg, CallState::Disconnected(DisconnectReason::Normal));
                // The phone is not left in a dead call; the leg waits for its owner to drop it.
                self.end_phone(leg, 480);
            }
        }
    }

    /// Ends the far side of `leg` because its own phone hung up (or an application dropped it).
    pub(super) fn hang_up_far(&mut self, leg: CallLegId) {
        let far = match self.legs.get_mut(&leg) {
            Some(l) => std::mem::replace(&mut l.far, Far::None),
            None => return,
        };
        match far {
            Far::None => {}
            Far::Outside(t) => {
                let status = if self.channels.get(&t).is_some_and(|c| c.way == Way::In) {
                    487
                } else {
                    0
                };
                self.end_channel(t, status);
                self.links.remove(&t);
            }
            Far::Leg(other) => {
                if let Some(o) = self.legs.get_mut(&other) {
                    o.far = Far::None;
                }
                self.far_hung_up(other);
            }
        }
    }

    /// Ends every dialog with the leg's phone: BYE, CANCEL, or the final `status` to its INVITE.
    pub(super) fn end_phone(&mut self, leg: CallLegId, status: u16) {
        let phones = match self.legs.get_mut(&leg) {
            Some(l) => std::mem::take(&mut l.phone),
            None => return,
        };
        for p in phones {
            self.end_channel(p, status);
            self.links.remove(&p);
        }
    }

    /// Ends one dialog from tapir's side. `status` is what an unanswered inbound INVITE hears (0:
    /// 480).
    pub(super) fn end_channel(&mut self, ch: ChannelId, status: u16) {
        let Some(c) = self.channels.get(&ch) else {
            return;
        };
        let action = match (c.way, c.phase) {
            (_, Phase::Ended) => None,
            (_, Phase::Up) => Some(SipAction::Bye { ch }),
            (Way::Out, _) => Some(SipAction::Cancel { ch }),
            (Way::In, _) => Some(SipAction::Refuse {
                ch,
                status: if status == 0 { 480 } else { status },
            }),
        };
        if let Some(a) = action {
            self.sip(a);
        }
        self.forget_channel(ch);
    }

    /// Removes a channel; operations waiting on its re-INVITE fail.
    pub(super) fn forget_channel(&mut self, ch: ChannelId) {
        self.channels.remove(&ch);
        self.links.remove(&ch);
        if let Some(ops) = self.waiters.remove(&ch) {
            for op in ops {
                self.op_step(op, Some("the dialog ended".into()));
            }
        }
    }

    /// Removes a leg that was never reported (a call tapir placed whose phone did not answer).
    pub(super) fn forget_leg(&mut self, leg: CallLegId) {
        self.end_phone(leg, 0);
        self.hang_up_far(leg);
        self.legs.remove(&leg);
        self.links.retain(|_, (l, _)| *l != leg);
    }

    /// Tells the engine of `leg`, once: the first state it is in.
    pub(super) fn announce(&mut self, leg: CallLegId) {
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        if l.reported || l.setup.is_some() {
            return;
        }
        l.reported = true;
        let call = NewCall {
            leg,
            line: LineId(l.line as u32),
            address: AddressId(0),
            state: l.state,
            info: l.info.clone(),
            request: l.request,
        };
        self.report(ProviderEvent::NewCall(call));
    }

    pub(super) fn update_info(&mut self, leg: CallLegId, info: CallInfo) {
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        if *l.info == info {
            return;
        }
        l.info = Arc::new(info);
        if l.reported {
            let info = l.info.clone();
            self.report(ProviderEvent::CallInfo { leg, info });
        }
    }

    /// Moves `leg` to `state`, and reports it. Idle ends the leg: whatever dialogs it still has
    /// are ended, operations waiting on it fail, and it is forgotten.
    pub(super) fn set_state(&mut self, leg: CallLegId, state: CallState) {
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        if l.state == state {
            return;
        }
        if !transition_allowed(l.state.kind(), state.kind()) {
            tracing::warn!(%leg, from = ?l.state, to = ?state, "a transition the model does not have; not applied");
            return;
        }
        l.state = state;
        if l.reported {
            self.report(ProviderEvent::CallState { leg, state });
        }
        if state.is_idle() {
            self.end_phone(leg, 480);
            self.hang_up_far(leg);
            for (op, _) in self.ops_of(leg) {
                self.ops.remove(&op);
                self.pending_dest.remove(&op);
                self.out.push_back(Output::Done(
                    op,
                    Err(Error::InvalidCallState {
                        state: CallStateKind::Idle,
                    }),
                ));
            }
            self.legs.remove(&leg);
            self.links.retain(|_, (l, _)| *l != leg);
        }
    }
}

/// The caller a SIP INVITE names.
fn party_of(inv: &Invite) -> PartyId {
    if inv.from_user.eq_ignore_ascii_case("anonymous") || inv.from_user.is_empty() {
        return PartyId::blocked();
    }
    let mut p = PartyId::number(inv.from_user.as_str());
    p.name = inv
        .from_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .map(Into::into);
    p
}
