//! Calls coming together and coming apart: INVITEs in and out, ringing, answering, failures and
//! hang-ups, which party a leg is connected with, and a leg's state and reports.

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

    pub(super) fn add_leg(&mut self, leg: Leg) -> CallLegId {
        let id = CallLegId(self.id());
        self.legs.insert(id, leg);
        id
    }

    // ---------------------------------------------------------------------------------------------
    // A new INVITE.

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
                // From outside to a line. One it cannot reach is refused before anything is made.
                if let Some(outcome) = self.refusal(line) {
                    // A line with no phone is "temporarily unavailable" (480) to SIP callers.
                    let status = match outcome {
                        CallState::Disconnected(DisconnectReason::Unavailable) => 480,
                        other => cause::status(other),
                    };
                    self.respond(tx, status);
                    return;
                }
                let origin = self.origin_id();
                let mut c = Channel::inbound(offer, origin);
                c.who = party_of(&inv);
                let ch = self.new_channel(c);
                self.sip(SipAction::Adopt { tx, ch });
                let info = CallInfo {
                    call_id: CallId(self.id()),
                    origin: CallOrigin::External,
                    media_mode: MediaModes::INTERACTIVE_VOICE,
                    caller: party_of(&inv),
                    called: self.lines[line].party(),
                    ..CallInfo::default()
                };
                if let Err(outcome) = self.arrive(now, line, PartyRef::Outside(ch), info) {
                    self.end_channel(ch, cause::status(outcome));
                }
            }
            (Some(from), to) => {
                // From a line's phone: an internal call, or out through the trunk.
                if to.is_none() && self.trunk.is_none() {
                    self.respond(tx, 404);
                    return;
                }
                let origin = self.origin_id();
                let mut c = Channel::inbound(offer, origin);
                c.who = self.lines[from].party();
                let ch = self.new_channel(c);
                self.sip(SipAction::Adopt { tx, ch });
                let info = CallInfo {
                    call_id: CallId(self.id()),
                    origin: CallOrigin::Outbound,
                    media_mode: MediaModes::INTERACTIVE_VOICE,
                    caller: self.lines[from].party(),
                    called: PartyId::number(inv.to_user.as_str()),
                    ..CallInfo::default()
                };
                let mut l = Leg::new(from, CallState::Dialing, info);
                l.phone = vec![ch];
                let leg = self.add_leg(l);
                self.links.insert(ch, Link::Phone(leg));
                self.announce(leg);
                self.place(now, leg, &inv.to_user);
            }
        }
    }

    /// Why `line` cannot take a call dialled to it now, if it cannot (the same rules as
    /// [`Switch::arrive`]).
    fn refusal(&self, line: usize) -> Option<CallState> {
        let fwd = &self.lines[line].forwarding;
        if fwd.do_not_disturb {
            return Some(CallState::Disconnected(DisconnectReason::DoNotDisturb));
        }
        let elsewhere = fwd.rules.iter().any(|(c, d)| {
            matches!(c, ForwardCondition::Unconditional | ForwardCondition::Busy)
                && self.destination(&d.digits(), Some(line)).is_ok()
        });
        (!self.registrar.reachable(line) && !elsewhere)
            .then_some(CallState::Disconnected(DisconnectReason::Unavailable))
    }

    /// A call dialled to `line` arrives: do-not-disturb refuses it, unconditional forwarding sends
    /// it on (one hop), a line with no phone cannot take it, else it is offered there. The error is
    /// the outcome its caller hears.
    pub(super) fn arrive(
        &mut self,
        now: Instant,
        line: usize,
        party: PartyRef,
        info: CallInfo,
    ) -> Result<(), CallState> {
        let fwd = self.lines[line].forwarding.clone();
        if fwd.do_not_disturb {
            return Err(CallState::Disconnected(DisconnectReason::DoNotDisturb));
        }
        let rule = |c: fn(&ForwardCondition) -> bool| -> Option<String> {
            fwd.rules
                .iter()
                .find(|(cond, _)| c(cond))
                .map(|(_, d)| d.digits())
        };
        let by = self.lines[line].party();
        if let Some(dest) = rule(|c| matches!(c, ForwardCondition::Unconditional)) {
            if let Ok(d) = self.destination(&dest, Some(line)) {
                self.deliver(
                    now,
                    party,
                    d,
                    CallReason::ForwardUnconditional,
                    by,
                    info.call_id,
                    true,
                );
                return Ok(());
            }
        }
        if !self.registrar.reachable(line) {
            if let Some(dest) = rule(|c| matches!(c, ForwardCondition::Busy)) {
                if let Ok(d) = self.destination(&dest, Some(line)) {
                    self.deliver(
                        now,
                        party,
                        d,
                        CallReason::ForwardBusy,
                        by,
                        info.call_id,
                        true,
                    );
                    return Ok(());
                }
            }
            return Err(CallState::Disconnected(DisconnectReason::Unavailable));
        }
        self.offer_leg(now, line, info, party, false);
        Ok(())
    }

    /// Creates a leg offered on `line`, connected with `party`, and rings its phone's contacts.
    pub(super) fn offer_leg(
        &mut self,
        now: Instant,
        line: usize,
        info: CallInfo,
        party: PartyRef,
        forwarded: bool,
    ) -> CallLegId {
        let mut l = Leg::new(line, CallState::Offering(OfferingMode::Active), info);
        l.forwarded = forwarded;
        let leg = self.add_leg(l);
        self.attach(leg, party);
        self.announce(leg);
        let media = self.party_media(party);
        self.ring(leg, false, media);
        self.at(now + self.timing.no_answer, Timer::NoAnswer(leg));
        let no_answer = self.lines[line]
            .forwarding
            .rules
            .iter()
            .find_map(|(c, _)| match c {
                ForwardCondition::NoAnswer { rings } => Some(*rings),
                _ => None,
            });
        if let (Some(rings), false) = (no_answer, forwarded) {
            self.at(
                now + RING_PERIOD * rings.max(1),
                Timer::ForwardNoAnswer(leg),
            );
        }
        leg
    }

    /// Sends INVITEs to every contact of the leg's line (the first to answer wins), offering
    /// `media` — a far side's — or, with none yet, a placeholder.
    pub(super) fn ring(&mut self, leg: CallLegId, auto_answer: bool, media: Option<(Sdp, Flow)>) {
        let Some(l) = self.legs.get(&leg) else { return };
        let line = l.line;
        let caller = l.info.caller.clone();
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
            c.who = self.lines[line].party();
            let rendered = match &media {
                Some((sdp, flow)) => c.local.relay(sdp, None, *flow),
                None => {
                    c.placeholder = true;
                    c.local.placeholder(self.local, Flow::BOTH)
                }
            };
            let sdp = c.local.sent(rendered);
            let ch = self.new_channel(c);
            self.links.insert(ch, Link::Phone(leg));
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

    /// The media of `party` (its dialog's description) and the ways it wants media to flow.
    pub(super) fn party_media(&self, party: PartyRef) -> Option<(Sdp, Flow)> {
        let ch = self.party_channel(party)?;
        let c = self.channels.get(&ch)?;
        Some((c.remote.clone()?, c.wants))
    }

    /// The dialog through which `party` takes part: a leg's one phone dialog, or the outside one.
    pub(super) fn party_channel(&self, party: PartyRef) -> Option<ChannelId> {
        match party {
            PartyRef::Outside(c) => Some(c),
            PartyRef::Leg(l) => match self.legs.get(&l)?.phone[..] {
                [p] => Some(p),
                _ => None,
            },
        }
    }

    /// Who `party` is.
    pub(super) fn party_identity(&self, party: PartyRef) -> PartyId {
        match party {
            PartyRef::Leg(l) => self
                .legs
                .get(&l)
                .map(|l| self.lines[l.line].party())
                .unwrap_or_default(),
            PartyRef::Outside(c) => self
                .channels
                .get(&c)
                .map(|c| c.who.clone())
                .unwrap_or_default(),
        }
    }

    /// Connects `leg` with `party`: each points at the other.
    pub(super) fn attach(&mut self, leg: CallLegId, party: PartyRef) {
        if let Some(l) = self.legs.get_mut(&leg) {
            l.far = party.into();
        }
        match party {
            PartyRef::Leg(other) => {
                if let Some(o) = self.legs.get_mut(&other) {
                    o.far = Far::Leg(leg);
                }
            }
            PartyRef::Outside(c) => {
                self.links.insert(c, Link::Far(leg));
            }
        }
    }

    /// Disconnects `leg` from its party, which is returned (still up, connected with nothing).
    pub(super) fn detach(&mut self, leg: CallLegId) -> Option<PartyRef> {
        let far = match self.legs.get_mut(&leg) {
            Some(l) => std::mem::replace(&mut l.far, Far::None),
            None => return None,
        };
        let party = far.party()?;
        match party {
            PartyRef::Leg(other) => {
                if let Some(o) = self.legs.get_mut(&other) {
                    o.far = Far::None;
                }
            }
            PartyRef::Outside(c) => {
                self.links.remove(&c);
            }
        }
        Some(party)
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
            let info = CallInfo {
                call_id,
                origin: CallOrigin::Internal,
                media_mode: MediaModes::INTERACTIVE_VOICE,
                caller: self.lines[from_line].party(),
                called: self.lines[to_line].party(),
                ..CallInfo::default()
            };
            self.set_called(leg, self.lines[to_line].party());
            self.set_state(leg, CallState::Proceeding);
            if let Err(outcome) = self.arrive(now, to_line, PartyRef::Leg(leg), info) {
                self.fail_setup(leg, outcome);
            }
            return;
        }
        let Some(trunk) = self.trunk.clone() else {
            self.fail_setup(leg, CallState::Disconnected(DisconnectReason::BadAddress));
            return;
        };
        self.set_called(leg, PartyId::number(number));
        let Some(media) = self.party_media(PartyRef::Leg(leg)) else {
            return;
        };
        let from = self.lines[from_line].sip();
        let ch = self.invite_trunk(&trunk, number, from, &media);
        self.attach(leg, PartyRef::Outside(ch));
        self.set_state(leg, CallState::Proceeding);
    }

    /// A new dialog to `number` through the trunk, offering `media`.
    pub(super) fn invite_trunk(
        &mut self,
        trunk: &SipTarget,
        number: &str,
        from: Party,
        (sdp, flow): &(Sdp, Flow),
    ) -> ChannelId {
        let origin = self.origin_id();
        let mut c = Channel::outbound(origin);
        c.who = PartyId::number(number);
        let rendered = c.local.relay(sdp, None, *flow);
        let sdp = c.local.sent(rendered);
        let ch = self.new_channel(c);
        self.sip(SipAction::Invite {
            ch,
            uri: format!("sip:{number}@{}", trunk.addr),
            addr: trunk.addr,
            tcp: trunk.tcp,
            from,
            to: Party {
                user: number.to_owned(),
                name: None,
            },
            sdp,
            auto_answer: false,
        });
        ch
    }

    pub(super) fn set_called(&mut self, leg: CallLegId, called: PartyId) {
        if let Some(l) = self.legs.get(&leg) {
            let mut info = (*l.info).clone();
            info.called = called;
            self.update_info(leg, info);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Answers to tapir's INVITEs.

    pub(super) fn on_progress(&mut self, ch: ChannelId, status: u16, sdp: Option<Vec<u8>>) {
        let Some(&link) = self.links.get(&ch) else {
            return;
        };
        match self.channels.get_mut(&ch) {
            // A provisional response after the final one (reordered on the way) changes nothing.
            Some(c) if c.is_up() || c.is_ended() => return,
            Some(c) => c.phase = Phase::Early,
            None => return,
        }
        if status < 180 {
            return;
        }
        let early = sdp.as_deref().and_then(|b| Sdp::parse(b).ok());
        match link {
            Link::Phone(leg) => {
                // The leg's phone rings: tell its far side.
                let Some(l) = self.legs.get(&leg) else { return };
                if l.setup.is_some() {
                    // tapir calls the line's own phone: nothing to relay.
                    return;
                }
                match l.far {
                    Far::Leg(caller) => self.relay_ringing(caller, early.as_ref()),
                    Far::Outside(t) => self.early_to(t, early.as_ref()),
                    Far::None | Far::Parked => {}
                }
            }
            Link::Far(leg) => {
                // The outside rings for this leg.
                if self.legs.get(&leg).is_some_and(|l| {
                    matches!(
                        l.state.kind(),
                        CallStateKind::Proceeding | CallStateKind::Dialing
                    )
                }) {
                    self.set_state(leg, CallState::Ringback);
                }
                let phone = self.legs.get(&leg).and_then(|l| l.phone.first().copied());
                if let Some(p) = phone {
                    self.early_to(p, early.as_ref());
                }
            }
            Link::Relay(other) => self.early_to(other, early.as_ref()),
            Link::Parked => {}
        }
    }

    /// The caller's leg hears ringback; its phone (if it called in) is told.
    fn relay_ringing(&mut self, caller: CallLegId, early: Option<&Sdp>) {
        let calling = self.legs.get(&caller).is_some_and(|l| {
            matches!(
                l.state.kind(),
                CallStateKind::Proceeding | CallStateKind::Dialing
            )
        });
        if calling {
            self.set_state(caller, CallState::Ringback);
        }
        let phone = self
            .legs
            .get(&caller)
            .and_then(|l| l.phone.first().copied());
        if let Some(p) = phone {
            self.early_to(p, early);
        }
    }

    /// 180 (or 183 with early media) on an inbound dialog still waiting for its answer.
    fn early_to(&mut self, ch: ChannelId, early: Option<&Sdp>) {
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        if c.way != Way::In || c.is_up() || c.is_ended() {
            return;
        }
        if c.phase == Phase::Early && early.is_none() {
            // The caller hears ringing already: a second ringing contact or a retransmitted 180
            // tells it nothing (and some callers take a repeated 180 for a protocol error).
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
        let Some(&link) = self.links.get(&ch) else {
            return;
        };
        if self.channels.get(&ch).is_none_or(|c| c.is_up()) {
            // A retransmitted 2xx: the stack acknowledged it again; nothing changed.
            return;
        }
        let answer = sdp.as_deref().and_then(|b| Sdp::parse(b).ok());
        let Some(answer) = answer else {
            // A 2xx without a usable answer: the dialog cannot carry media; end it.
            if let Some(c) = self.channels.get_mut(&ch) {
                c.phase = Phase::Up;
            }
            self.end_channel_keep_link(ch);
            return self.on_failed(ch, 488);
        };
        if let Some(c) = self.channels.get_mut(&ch) {
            c.phase = Phase::Up;
            let offered = c.wants;
            c.answered(answer, offered);
        }
        if matches!(link, Link::Phone(_)) {
            self.at(now + self.timing.keepalive, Timer::Keepalive(ch));
        }
        match link {
            Link::Phone(leg) => self.phone_answered(now, leg, ch),
            Link::Far(leg) => {
                // The outside answered this leg's call.
                let who = self
                    .channels
                    .get(&ch)
                    .map(|c| c.who.clone())
                    .unwrap_or_default();
                if let Some(l) = self.legs.get(&leg) {
                    let mut info = (*l.info).clone();
                    info.connected = who;
                    self.update_info(leg, info);
                }
                if self.legs.get(&leg).is_some_and(|l| {
                    !matches!(
                        l.state.kind(),
                        CallStateKind::OnHold | CallStateKind::OnHoldPendingTransfer
                    )
                }) {
                    self.set_state(leg, CallState::Connected(ConnectedMode::Active));
                }
                self.complete_far(now, leg);
            }
            Link::Relay(other) => self.join_up(now, other),
            Link::Parked => {}
        }
    }

    /// The leg's far side answered: its phone gets the far side's media.
    pub(super) fn complete_far(&mut self, now: Instant, leg: CallLegId) {
        if let Some(phone) = self.legs.get(&leg).and_then(|l| l.phone.first().copied()) {
            self.join_up(now, phone);
        }
    }

    /// `ch`'s bridge partner now has media: answer `ch`'s INVITE with it, or re-offer.
    pub(super) fn join_up(&mut self, now: Instant, ch: ChannelId) {
        let inbound_unanswered = self
            .channels
            .get(&ch)
            .is_some_and(|c| c.way == Way::In && !c.is_up() && !c.is_ended());
        if inbound_unanswered {
            self.answer_inbound(now, ch);
        } else {
            self.sync(ch, now);
        }
    }

    /// Answers the inbound dialog `ch` with its bridge partner's media.
    pub(super) fn answer_inbound(&mut self, now: Instant, ch: ChannelId) {
        let media = self.partner(ch).and_then(|p| {
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
        if matches!(self.links.get(&ch), Some(Link::Phone(_))) {
            self.at(now + self.timing.keepalive, Timer::Keepalive(ch));
        }
    }

    /// The phone of `leg` answered on `ch`.
    fn phone_answered(&mut self, now: Instant, leg: CallLegId, ch: ChannelId) {
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
            return self.setup_answered(now, leg, op);
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
            Far::Outside(t) => self.join_up(now, t),
            Far::Leg(caller) => {
                let party = self.lines[line].party();
                self.connected_to(now, caller, party);
            }
            Far::None | Far::Parked => {}
        }
    }

    /// `leg`'s party answered (it is `who`): it is connected, and its phone gets the media.
    pub(super) fn connected_to(&mut self, now: Instant, leg: CallLegId, who: PartyId) {
        let Some(l) = self.legs.get(&leg) else { return };
        let held = l.state.kind().is_held();
        let mut info = (*l.info).clone();
        info.connected = who;
        self.update_info(leg, info);
        if !held {
            self.set_state(leg, CallState::Connected(ConnectedMode::Active));
        }
        self.complete_far(now, leg);
    }

    /// The phone of a leg tapir set up (make call, unpark, pickup) answered.
    fn setup_answered(&mut self, now: Instant, leg: CallLegId, op: OpId) {
        let Some(kind) = self.ops.get(&op).map(|o| o.kind) else {
            return;
        };
        match kind {
            OpKind::MakeCall(_) => {
                if let Some(l) = self.legs.get_mut(&leg) {
                    l.state = CallState::DialTone(DialToneMode::Normal);
                }
                self.announce(leg);
                if let Some(d) = self.pending_dest.remove(&op) {
                    self.dial_number(now, leg, &d);
                }
                self.done(op, Ok(Done::Leg(leg)));
            }
            OpKind::Unpark { orbit, .. } => {
                let Some((number, parked)) = self.park.take(orbit) else {
                    return self.setup_failed(leg, "answered, but the parked call is gone".into());
                };
                self.report_line(
                    parked.parker,
                    LineEvent::Unparked {
                        orbit: number,
                        call_id: parked.call_id,
                    },
                );
                self.unpark_party(parked.party);
                self.bring_in(now, leg, parked.party);
                self.done(op, Ok(Done::Leg(leg)));
            }
            OpKind::Pickup { ringing, .. } => {
                let still = self.legs.get(&ringing).is_some_and(|r| {
                    matches!(
                        r.state.kind(),
                        CallStateKind::Offering | CallStateKind::Accepted
                    )
                });
                let party = if still { self.detach(ringing) } else { None };
                let Some(party) = party else {
                    return self.setup_failed(leg, "answered, but the call no longer rings".into());
                };
                self.end_phone(ringing, 0);
                self.set_state(ringing, CallState::Disconnected(DisconnectReason::PickedUp));
                self.set_state(ringing, CallState::Idle);
                self.bring_in(now, leg, party);
                let line = self.legs.get(&leg).map(|l| l.line).unwrap_or_default();
                if let PartyRef::Leg(caller) = party {
                    let who = self.lines[line].party();
                    self.connected_to(now, caller, who);
                }
                self.done(op, Ok(Done::Leg(leg)));
            }
            _ => {}
        }
    }

    /// A leg whose phone has answered takes `party`: connected, reported, media joined.
    fn bring_in(&mut self, now: Instant, leg: CallLegId, party: PartyRef) {
        self.attach(leg, party);
        let who = self.party_identity(party);
        if let Some(l) = self.legs.get_mut(&leg) {
            let mut info = (*l.info).clone();
            info.connected = who;
            l.info = Arc::new(info);
            l.state = CallState::Connected(ConnectedMode::Active);
        }
        self.announce(leg);
        if let Some(c) = self.party_channel(party) {
            self.join_up(now, c);
        }
        if let Some(p) = self.legs.get(&leg).and_then(|l| l.phone.first().copied()) {
            self.sync(p, now);
        }
    }

    /// A leg tapir set up could not be: it is forgotten (never reported) and its operation fails.
    pub(super) fn setup_failed(&mut self, leg: CallLegId, why: String) {
        let Some(l) = self.legs.get(&leg) else { return };
        let number = self.lines[l.line].number.clone();
        let op = l.setup.or_else(|| {
            self.ops
                .iter()
                .find(|(_, o)| o.kind.about(leg))
                .map(|(id, _)| *id)
        });
        self.forget_leg(leg);
        if let Some(op) = op {
            self.pending_dest.remove(&op);
            self.done(
                op,
                Err(Error::OperationFailed {
                    reason: format!("the phone of line {number} {why}"),
                }),
            );
        }
    }

    pub(super) fn ops_of(&self, leg: CallLegId) -> Vec<(OpId, OpKind)> {
        self.ops
            .iter()
            .filter(|(_, o)| o.kind.about(leg))
            .map(|(id, o)| (*id, o.kind))
            .collect()
    }

    pub(super) fn on_failed(&mut self, ch: ChannelId, status: u16) {
        let link = self.links.get(&ch).copied();
        self.forget_channel(ch);
        let Some(link) = link else { return };
        match link {
            Link::Phone(leg) => {
                let Some(l) = self.legs.get_mut(&leg) else {
                    return;
                };
                l.phone.retain(|c| *c != ch);
                if !l.phone.is_empty() {
                    return; // other contacts still ring
                }
                if l.setup.is_some() {
                    return self.setup_failed(leg, format!("did not answer ({status})"));
                }
                let asked = self
                    .ops_of(leg)
                    .into_iter()
                    .filter(|(_, k)| *k == OpKind::Answer(leg))
                    .collect::<Vec<_>>();
                if !asked.is_empty() {
                    // Asking the phone to answer failed: it rings again as before.
                    for (op, _) in asked {
                        self.done(
                            op,
                            Err(Error::OperationFailed {
                                reason: format!("the phone did not answer when asked ({status})"),
                            }),
                        );
                    }
                    let media = self.far_media(leg);
                    self.ring(leg, false, media);
                    return;
                }
                let outcome = match cause::outcome(status) {
                    CallState::Disconnected(DisconnectReason::Cancelled) => {
                        CallState::Disconnected(DisconnectReason::NoAnswer)
                    }
                    other => other,
                };
                if outcome.kind() == CallStateKind::Busy && self.forward_busy(leg) {
                    return;
                }
                // Every contact refused or stopped: the call is not answered here.
                self.unanswered(leg, outcome);
            }
            Link::Far(leg) => {
                // The outside did not take the leg's call.
                if let Some(l) = self.legs.get_mut(&leg) {
                    l.far = Far::None;
                }
                self.fail_setup(leg, cause::outcome(status));
            }
            Link::Relay(other) => {
                // The second outside party of a transfer did not answer: the first is told.
                self.links.remove(&other);
                self.end_channel(other, status);
            }
            Link::Parked => {}
        }
    }

    /// The media of the far side of `leg`.
    pub(super) fn far_media(&self, leg: CallLegId) -> Option<(Sdp, Flow)> {
        self.party_media(self.legs.get(&leg)?.far.party()?)
    }

    /// An offered leg was not answered (its phones refused, or it rang too long): it ends, and its
    /// caller learns why.
    pub(super) fn unanswered(&mut self, leg: CallLegId, outcome: CallState) {
        self.end_phone(leg, 0);
        let party = self.detach(leg);
        // The caller hears why first; then the leg ends (its own clean-up finds nothing left).
        match party {
            Some(PartyRef::Outside(t)) => self.end_channel(t, cause::status(outcome)),
            Some(PartyRef::Leg(caller)) => self.fail_setup(caller, outcome),
            None => {}
        }
        self.set_state(leg, CallState::Idle);
    }

    /// The call `leg` was placing did not go through: it shows why; a phone that called in is told
    /// and the leg ends with it.
    pub(super) fn fail_setup(&mut self, leg: CallLegId, outcome: CallState) {
        if !self.legs.contains_key(&leg) {
            return;
        }
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
        self.gone(ch, DisconnectReason::Normal);
    }

    /// The peer of `ch` did not answer a keep-alive: it vanished. Its dialog is ended and its calls
    /// end with that cause.
    pub(super) fn vanished(&mut self, ch: ChannelId) {
        if self.channels.get(&ch).is_some_and(|c| c.is_up()) {
            self.sip(SipAction::Bye { ch });
        }
        self.gone(ch, DisconnectReason::Unreachable);
    }

    /// The dialog `ch` is over from the peer's side.
    fn gone(&mut self, ch: ChannelId, reason: DisconnectReason) {
        let Some(&link) = self.links.get(&ch) else {
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
        match link {
            Link::Phone(leg) => {
                // The line's phone hung up: the station is on hook.
                if let Some(l) = self.legs.get_mut(&leg) {
                    l.phone.retain(|c| *c != ch);
                    if l.setup.is_some() {
                        return self.setup_failed(leg, "hung up".into());
                    }
                    if let Some(original) = l.borrowed_from.take() {
                        // It hung up during a consultation: the held call ends with it.
                        if let Some(o) = self.legs.get_mut(&original) {
                            o.lent_to = None;
                        }
                        self.hang_up_far(original, reason);
                        self.set_state(original, CallState::Idle);
                    }
                }
                self.hang_up_far(leg, reason);
                self.set_state(leg, CallState::Idle);
            }
            Link::Far(leg) => {
                if let Some(l) = self.legs.get_mut(&leg) {
                    l.far = Far::None;
                }
                self.far_hung_up(leg, reason);
            }
            Link::Relay(other) => {
                self.links.remove(&other);
                self.end_channel(other, 0);
            }
            Link::Parked => {
                if let Some(i) = self.park.orbit_of(&PartyRef::Outside(ch)) {
                    self.unpark_report(i);
                }
            }
        }
    }

    /// The far side of `leg` hung up.
    pub(super) fn far_hung_up(&mut self, leg: CallLegId, reason: DisconnectReason) {
        let Some(l) = self.legs.get(&leg) else { return };
        if l.setup.is_some() {
            return self.setup_failed(leg, "answered too late: the caller hung up".into());
        }
        match l.state.kind() {
            CallStateKind::Offering | CallStateKind::Accepted => {
                // The caller gave up before anyone answered.
                self.end_phone(leg, 0);
                self.set_state(leg, CallState::Disconnected(reason));
                self.set_state(leg, CallState::Idle);
            }
            CallStateKind::Idle => {}
            _ => {
                self.set_state(leg, CallState::Disconnected(reason));
                // The phone is not left in a dead call; the leg waits for its owner to drop it.
                self.end_phone(leg, 480);
            }
        }
    }

    /// Ends the far side of `leg` because its own phone hung up (or an application dropped it).
    pub(super) fn hang_up_far(&mut self, leg: CallLegId, reason: DisconnectReason) {
        match self.detach(leg) {
            None => {}
            Some(PartyRef::Outside(t)) => {
                let status = if self.channels.get(&t).is_some_and(|c| c.way == Way::In) {
                    487
                } else {
                    0
                };
                self.end_channel(t, status);
            }
            Some(PartyRef::Leg(other)) => self.far_hung_up(other, reason),
        }
    }

    /// Ends every dialog with the leg's phone: BYE, CANCEL, or the final `status` to its INVITE. A
    /// consultation call's phone dialog is the original's: it goes back to it instead.
    pub(super) fn end_phone(&mut self, leg: CallLegId, status: u16) {
        let (phones, original) = match self.legs.get_mut(&leg) {
            Some(l) => (std::mem::take(&mut l.phone), l.borrowed_from.take()),
            None => return,
        };
        if let Some(original) = original.filter(|o| self.legs.contains_key(o)) {
            return self.give_back(original, phones);
        }
        for p in phones {
            self.end_channel(p, status);
        }
    }

    /// The phone dialog a consultation call borrowed returns to its original, which is connected
    /// again (the consultation was cancelled or is over).
    pub(super) fn give_back(&mut self, original: CallLegId, phones: Vec<ChannelId>) {
        let now = self.last_now;
        for p in &phones {
            self.links.insert(*p, Link::Phone(original));
        }
        let Some(o) = self.legs.get_mut(&original) else {
            return;
        };
        o.phone = phones;
        o.lent_to = None;
        o.held = false;
        self.set_state(original, CallState::Connected(ConnectedMode::Active));
        for ch in self.bridge_channels(original) {
            self.sync(ch, now);
        }
    }

    /// Ends one dialog from tapir's side. `status` is what an unanswered inbound INVITE hears (0:
    /// 480).
    pub(super) fn end_channel(&mut self, ch: ChannelId, status: u16) {
        self.end_channel_with(ch, status);
        self.forget_channel(ch);
    }

    fn end_channel_keep_link(&mut self, ch: ChannelId) {
        self.end_channel_with(ch, 488);
    }

    fn end_channel_with(&mut self, ch: ChannelId, status: u16) {
        let Some(c) = self.channels.get_mut(&ch) else {
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
        c.phase = Phase::Ended;
        if let Some(a) = action {
            self.sip(a);
        }
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

    /// Removes a leg that was never reported (a call tapir set up whose phone did not answer).
    pub(super) fn forget_leg(&mut self, leg: CallLegId) {
        self.end_phone(leg, 0);
        if self.legs.get(&leg).is_some_and(|l| l.far != Far::None) {
            self.hang_up_far(leg, DisconnectReason::Normal);
        }
        self.legs.remove(&leg);
        self.links
            .retain(|_, l| !matches!(l, Link::Phone(x) | Link::Far(x) if *x == leg));
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

    pub(super) fn report_line(&mut self, line: usize, event: LineEvent) {
        self.report(ProviderEvent::Line {
            line: LineId(line as u32),
            event,
        });
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
            if self.legs.get(&leg).is_some_and(|l| l.far == Far::Parked) {
                if let Some(i) = self.park.orbit_of(&PartyRef::Leg(leg)) {
                    self.unpark_report(i);
                }
            }
            self.hang_up_far(leg, DisconnectReason::Normal);
            if let Some(consult) = self.legs.get(&leg).and_then(|l| l.lent_to) {
                // Its phone dialog stays with the consultation call.
                if let Some(c) = self.legs.get_mut(&consult) {
                    c.borrowed_from = None;
                }
            }
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
            self.links
                .retain(|_, l| !matches!(l, Link::Phone(x) | Link::Far(x) if *x == leg));
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
