//! The switch's call model: legs on extensions, outside parties, and what each operation does to them.
//!
//! A *leg* is one call as seen on one extension. Two legs of an internal call point at each other; a leg
//! talking to the outside world points at an *outside party* record, which points back. Transfers and
//! redirects move a party from one leg to another, so parties are records of their own.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tapir_core::dial::DialString;
use tapir_core::info::{CallInfo, CallOrigin, CallReason, PartyId, Redirect};
use tapir_core::media::MediaModes;
use tapir_core::params::{DigitMode, ForwardCondition, Forwarding, RequestId};
use tapir_core::state::{
    BusyMode, CallState, CallStateKind, ConnectedMode, DisconnectReason, OfferingMode,
};
use tapir_core::{AddressId, CallId, CallLegId, Error, LineId};
use tapir_provider::{EventSink, LineEvent, NewCall, ProviderEvent};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::agenda::{Added, Agenda, Due, Timer};
use crate::script::{Answer, Extension, FarEnd, ParkLot, Timing};

/// Maps keyed by numbers the switch assigns itself: a fast seeded hash is enough.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

pub(crate) struct Shared {
    pub(crate) timing: Timing,
    pub(crate) state: std::sync::Mutex<State>,
    /// Operations switched off in this switch's configuration.
    pub(crate) disabled: tapir_core::gate::FeatureSet,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Who a leg is talking to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    None,
    /// Another extension's leg.
    Leg(CallLegId),
    /// An outside party.
    Outside(u64),
}

/// How a leg relates to the other legs on its extension.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) enum Relation {
    #[default]
    None,
    /// A consultation call made to transfer the held call.
    ConsultFor(CallLegId),
    /// A consultation call made to add a party to the conference.
    ConsultForConference(CallLegId),
    /// A party of the conference.
    Party(CallLegId),
    /// A conference parent with its parties, in the order they joined.
    Parent(Vec<CallLegId>),
    /// A call-completion callback: once answered, it calls this extension.
    CallBack(usize),
}

/// A call-completion request: call `requester` back once `target` is free.
struct Completion {
    id: u32,
    requester: usize,
    target: usize,
    /// Set once the target has been busy: a request made on an unanswered call waits for the target to
    /// be used and then freed.
    armed: bool,
}

pub(crate) struct Leg {
    pub(crate) line: usize,
    pub(crate) relation: Relation,
    pub(crate) state: CallState,
    /// Shared with the engine: a change replaces it (see `set_info`), so the two hold one copy.
    pub(crate) info: Arc<CallInfo>,
    pub(crate) peer: Peer,
    /// Changes whenever the state changes (accepting an offered call aside), so a timer set in one state
    /// does nothing in another.
    epoch: u64,
    /// Timers on the agenda for this epoch: they go stale together when it ends.
    armed: u32,
    /// Digits dialled so far.
    dialed: String,
    /// For outside calls: caller ID held back until the first ring is over.
    pub(crate) pending_caller: Option<Box<PartyId>>,
    /// Whether digits received on this leg are reported.
    monitoring_digits: Option<DigitMode>,
    /// How many times the call was forwarded on no answer to reach this leg: past
    /// [`MAX_NO_ANSWER_FORWARDS`] it rings here until the no-answer timeout instead.
    forwards: u8,
}

/// Forwards on no answer one call may take: a loop of extensions forwarding to each other ends
/// after this many hops in the last one's no-answer outcome, not in a call ringing forever.
pub(crate) const MAX_NO_ANSWER_FORWARDS: u8 = 5;

/// A party outside the switch, in a call with one of its legs.
pub(crate) struct Outside {
    party: PartyId,
    /// How it behaves while it has not answered yet (kept so a transfer can move the waiting).
    script: Option<Box<FarEnd>>,
    hang_up_after: Option<Duration>,
    pub(crate) leg: Option<CallLegId>,
    answered: bool,
}

/// Why and by whom a party is sent to a new destination.
struct Handover {
    reason: CallReason,
    by: PartyId,
    call_id: CallId,
    /// Forwards on no answer so far, this one included.
    forwards: u8,
}

/// What forwarding does to a call for an extension.
pub(crate) enum Forwarded {
    No,
    DoNotDisturb,
    To(String, CallReason),
}

/// Where a call can be sent.
enum Destination {
    Extension(usize),
    Outside(String, FarEnd),
}

/// A call waiting in a park orbit.
struct Parked {
    party: Peer,
    call_id: CallId,
    /// The extension that parked it, which it rings again after the timeout.
    parker: usize,
    /// Identifies this stay in the orbit, so a timeout set for an earlier one does nothing.
    stay: u64,
}

pub(crate) struct State {
    pub(crate) sink: Option<EventSink>,
    pub(crate) extensions: Vec<Extension>,
    /// Each extension's identity (by line), made once: every call it takes part in shares it.
    parties: Vec<PartyId>,
    pub(crate) far_ends: FastMap<String, FarEnd>,
    park_lot: ParkLot,
    parked: HashMap<String, Parked>,
    /// Forwarding set on each extension (by line).
    forwarding: HashMap<usize, Forwarding>,
    completions: Vec<Completion>,
    next_completion: u32,
    /// The switch itself, so that a change deep inside can schedule follow-up work.
    me: std::sync::Weak<Shared>,
    pickup_groups: HashMap<String, Vec<String>>,
    /// Boxed, so that the map's empty slots (up to half of them after it grows) cost a pointer each
    /// rather than a whole leg.
    pub(crate) legs: FastMap<CallLegId, Box<Leg>>,
    /// The legs on each extension (by line), oldest first: an extension has a handful at most, so
    /// per-extension questions never scan the whole switch.
    on_line: Vec<Vec<CallLegId>>,
    /// Extensions by directory number.
    by_number: FastMap<String, usize>,
    pub(crate) outside: FastMap<u64, Box<Outside>>,
    next_leg: u64,
    next_call: u64,
    next_epoch: u64,
    next_outside: u64,
    /// Timers, park timeouts and callbacks set for later.
    pub(crate) agenda: Agenda,
}

/// How many calls an extension may have at once: one active and one on hold.
pub(crate) const APPEARANCES: usize = 2;

fn is_held(state: CallState) -> bool {
    state.kind().is_held()
}

/// Conference parties are bridged through their parent and take no call appearance of their own.
fn occupies_appearance(state: CallState) -> bool {
    state.kind() != CallStateKind::Conferenced
}

impl State {
    pub(crate) fn new(
        extensions: Vec<Extension>,
        far_ends: HashMap<String, FarEnd>,
        park_lot: ParkLot,
        pickup_groups: HashMap<String, Vec<String>>,
        me: std::sync::Weak<Shared>,
    ) -> Self {
        let by_number = extensions
            .iter()
            .enumerate()
            .map(|(line, e)| (e.number.clone(), line))
            .collect();
        Self {
            sink: None,
            on_line: vec![Vec::new(); extensions.len()],
            parties: extensions
                .iter()
                .map(|e| PartyId::named(e.number.as_str(), e.name.as_str()))
                .collect(),
            by_number,
            extensions,
            far_ends: far_ends.into_iter().collect(),
            park_lot,
            parked: HashMap::new(),
            forwarding: HashMap::new(),
            completions: Vec::new(),
            next_completion: 1,
            me,
            pickup_groups,
            legs: FastMap::default(),
            outside: FastMap::default(),
            next_leg: 1,
            next_call: 1,
            next_epoch: 1,
            next_outside: 1,
            agenda: Agenda::default(),
        }
    }

    pub(crate) fn extension_index(&self, number: &str) -> Option<usize> {
        self.by_number.get(number).copied()
    }

    fn legs_on(&self, line: usize) -> impl Iterator<Item = (&CallLegId, &Leg)> {
        self.on_line
            .get(line)
            .into_iter()
            .flatten()
            .filter_map(|id| self.legs.get_key_value(id).map(|(id, leg)| (id, &**leg)))
    }

    /// The extension's active (not held, not conferenced) call, if any.
    fn active_on(&self, line: usize) -> Option<CallLegId> {
        self.legs_on(line)
            .find(|(_, l)| !is_held(l.state) && occupies_appearance(l.state))
            .map(|(id, _)| *id)
    }

    /// Call appearances in use on the extension, not counting `except`.
    fn appearances_used(&self, line: usize, except: &[CallLegId]) -> usize {
        self.legs_on(line)
            .filter(|(id, l)| occupies_appearance(l.state) && !except.contains(id))
            .count()
    }

    /// Whether the extension can take another call: nothing active and a free appearance.
    pub(crate) fn can_take_call(&self, line: usize) -> bool {
        self.active_on(line).is_none() && self.appearances_used(line, &[]) < APPEARANCES
    }

    pub(crate) fn party(&self, line: usize) -> PartyId {
        self.parties.get(line).cloned().unwrap_or_default()
    }

    /// Who `peer` is, as caller ID.
    fn identity(&self, peer: Peer) -> PartyId {
        match peer {
            Peer::Leg(l) => self
                .legs
                .get(&l)
                .map(|l| self.party(l.line))
                .unwrap_or_default(),
            Peer::Outside(o) => self
                .outside
                .get(&o)
                .map(|o| o.party.clone())
                .unwrap_or_default(),
            Peer::None => PartyId::default(),
        }
    }

    pub(crate) fn new_call_id(&mut self) -> CallId {
        let id = CallId(self.next_call);
        self.next_call += 1;
        id
    }

    fn epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    pub(crate) fn leg(&self, id: CallLegId) -> Result<&Leg, Error> {
        self.legs
            .get(&id)
            .map(|l| &**l)
            .ok_or(Error::InvalidCallHandle)
    }

    fn state_of(&self, id: CallLegId) -> Result<CallStateKind, Error> {
        Ok(self.leg(id)?.state.kind())
    }

    pub(crate) fn new_outside(
        &mut self,
        party: PartyId,
        hang_up_after: Option<Duration>,
        answered: bool,
    ) -> u64 {
        let id = self.next_outside;
        self.next_outside += 1;
        self.outside.insert(
            id,
            Box::new(Outside {
                party,
                script: None,
                hang_up_after,
                leg: None,
                answered,
            }),
        );
        id
    }

    /// Connects a leg and a party, both ways.
    fn link(&mut self, leg: CallLegId, peer: Peer) {
        if let Some(l) = self.legs.get_mut(&leg) {
            l.peer = peer;
        }
        match peer {
            Peer::Leg(p) => {
                if let Some(l) = self.legs.get_mut(&p) {
                    l.peer = Peer::Leg(leg);
                }
            }
            Peer::Outside(o) => {
                if let Some(o) = self.outside.get_mut(&o) {
                    o.leg = Some(leg);
                }
            }
            Peer::None => {}
        }
    }

    /// Disconnects a leg from its party, both ways, and returns the party.
    fn unlink(&mut self, leg: CallLegId) -> Peer {
        let Some(l) = self.legs.get_mut(&leg) else {
            return Peer::None;
        };
        let peer = std::mem::replace(&mut l.peer, Peer::None);
        match peer {
            Peer::Leg(p) => {
                if let Some(l) = self.legs.get_mut(&p)
                    && l.peer == Peer::Leg(leg)
                {
                    l.peer = Peer::None;
                }
            }
            Peer::Outside(o) => {
                if let Some(o) = self.outside.get_mut(&o) {
                    o.leg = None;
                }
            }
            Peer::None => {}
        }
        peer
    }

    pub(crate) fn new_leg(
        &mut self,
        sink: &EventSink,
        line: usize,
        state: CallState,
        info: CallInfo,
        peer: Peer,
        request: Option<RequestId>,
    ) -> CallLegId {
        let id = CallLegId(self.next_leg);
        self.next_leg += 1;
        let epoch = self.epoch();
        let info = Arc::new(info);
        sink.new_call(NewCall {
            leg: id,
            line: LineId(line as u32),
            address: AddressId(0),
            state,
            info: info.clone(),
            request,
        });
        self.legs.insert(
            id,
            Box::new(Leg {
                line,
                relation: Relation::None,
                state,
                info,
                peer: Peer::None,
                epoch,
                armed: 0,
                dialed: String::new(),
                pending_caller: None,
                monitoring_digits: None,
                forwards: 0,
            }),
        );
        if let Some(legs) = self.on_line.get_mut(line) {
            // Room for two (an active and a held call), not the four a first push makes room for.
            if legs.capacity() == 0 {
                legs.reserve_exact(2);
            }
            legs.push(id);
        }
        self.link(id, peer);
        // A completion waiting for an unanswered extension to be used arms once it is.
        for c in self.completions.iter_mut().filter(|c| c.target == line) {
            c.armed = true;
        }
        id
    }

    /// Moves a leg to `state` and reports it; an idle leg is removed.
    pub(crate) fn set_state(&mut self, sink: &EventSink, id: CallLegId, state: CallState) {
        let epoch = self.epoch();
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        if leg.state == state {
            return;
        }
        let accepting =
            leg.state.kind() == CallStateKind::Offering && state.kind() == CallStateKind::Accepted;
        if !accepting {
            // The leg's timers set so far do nothing now.
            leg.epoch = epoch;
            self.agenda.went_stale(std::mem::take(&mut leg.armed));
        }
        leg.state = state;
        // A party that is disconnected (its far end hung up) or gone (dropped, removed, sent or
        // parked away) has left its conference: its place is free for another. The one place the
        // parent's list shrinks.
        let left = match leg.relation {
            Relation::Party(parent)
                if matches!(
                    state.kind(),
                    CallStateKind::Disconnected | CallStateKind::Idle
                ) =>
            {
                leg.relation = Relation::None;
                Some(parent)
            }
            _ => None,
        };
        if let Some(parent) = left
            && let Some(Relation::Parent(parties)) =
                self.legs.get_mut(&parent).map(|l| &mut l.relation)
        {
            parties.retain(|p| *p != id);
        }
        sink.call_state(id, state);
        if state.is_idle() {
            self.unlink(id);
            if let Some(leg) = self.legs.remove(&id) {
                self.agenda.went_stale(leg.armed);
                if let Some(legs) = self.on_line.get_mut(leg.line) {
                    legs.retain(|l| *l != id);
                }
                self.line_freed(leg.line);
            }
        }
        self.tidy_agenda();
    }

    fn set_info(&mut self, sink: &EventSink, id: CallLegId, change: impl FnOnce(&mut CallInfo)) {
        if let Some(leg) = self.legs.get_mut(&id) {
            let mut info = CallInfo::clone(&leg.info);
            change(&mut info);
            if info != *leg.info {
                leg.info = Arc::new(info);
                sink.call_info(id, leg.info.clone());
            }
        }
    }

    /// Runs `timer` for `leg` after `delay`, unless the leg changes state (or goes away) first. A zero
    /// delay still runs later, once the caller has released the switch.
    pub(crate) fn schedule(
        &mut self,
        shared: &Arc<Shared>,
        delay: Duration,
        leg: CallLegId,
        timer: Timer,
    ) {
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        l.armed += 1;
        let due = Due::Leg {
            leg,
            epoch: l.epoch,
            timer,
        };
        self.later(shared, delay, due);
    }

    /// Puts `due` on the agenda for `delay` from now, starting the agenda's task if it is not running.
    fn later(&mut self, shared: &Arc<Shared>, delay: Duration, due: Due) {
        if let Added::Start(wake) = self.agenda.add(Instant::now() + delay, due) {
            let task = tokio::spawn(run_agenda(Arc::downgrade(shared), wake));
            self.agenda.started(task.abort_handle());
        }
        self.tidy_agenda();
    }

    /// Prunes the agenda once at least half of it is stale timers.
    fn tidy_agenda(&mut self) {
        if self.agenda.wants_pruning() {
            let (legs, parked) = (&self.legs, &self.parked);
            self.agenda.prune(|due| match due {
                Due::Leg { leg, epoch, .. } => legs.get(leg).is_some_and(|l| l.epoch == *epoch),
                Due::ParkTimeout { orbit, stay } => {
                    parked.get(orbit).is_some_and(|p| p.stay == *stay)
                }
                Due::Completions { .. } => true,
            });
        }
    }

    /// Runs everything on the agenda that is due, in order (what it sets for now runs too).
    fn run_due(&mut self, shared: &Arc<Shared>) {
        let now = Instant::now();
        while let Some(due) = self.agenda.pop_due(now) {
            match due {
                Due::Leg { leg, epoch, timer } => {
                    match self.legs.get_mut(&leg).filter(|l| l.epoch == epoch) {
                        Some(l) => {
                            l.armed = l.armed.saturating_sub(1);
                            self.fire(shared, leg, timer);
                        }
                        None => self.agenda.stale_one_gone(),
                    }
                }
                Due::ParkTimeout { orbit, stay } => {
                    if self.parked.get(&orbit).is_some_and(|p| p.stay == stay) {
                        self.park_timed_out(shared, orbit);
                    }
                }
                Due::Completions { line } => self.run_completions(shared, line),
            }
        }
    }

    /// Offers a call on extension `line`: a new leg, offering, that starts ringing at once.
    pub(crate) fn offer(
        &mut self,
        shared: &Arc<Shared>,
        sink: &EventSink,
        line: usize,
        info: CallInfo,
        party: Peer,
    ) -> CallLegId {
        let leg = self.new_leg(
            sink,
            line,
            CallState::Offering(OfferingMode::Active),
            info,
            party,
            None,
        );
        self.start_alerting(shared, leg);
        leg
    }

    /// An offered leg starts ringing (ring 0 now, then one per ring period) and is given up after the
    /// no-answer timeout.
    fn start_alerting(&mut self, shared: &Arc<Shared>, leg: CallLegId) {
        self.fire(shared, leg, Timer::Ring { count: 0 });
        self.schedule(
            shared,
            shared.timing.no_answer_timeout,
            leg,
            Timer::NoAnswer,
        );
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
            let after = shared.timing.ring_period.saturating_mul(rings);
            self.schedule(shared, after, leg, Timer::ForwardNoAnswer);
        }
    }

    /// The destination of the first forwarding rule of extension `line` whose condition matches.
    fn forward_rule(
        &self,
        line: usize,
        condition: impl Fn(&ForwardCondition) -> bool,
    ) -> Option<String> {
        self.forwarding
            .get(&line)?
            .rules
            .iter()
            .find(|(c, _)| condition(c))
            .map(|(_, d)| d.digits())
    }

    /// Where a call dialled to extension `line` really goes: do-not-disturb refuses it; forwarding
    /// unconditionally, or on busy when the extension cannot take the call, sends it on (one hop).
    pub(crate) fn forwarded(&self, line: usize) -> Forwarded {
        let Some(f) = self.forwarding.get(&line) else {
            return Forwarded::No;
        };
        if f.do_not_disturb {
            return Forwarded::DoNotDisturb;
        }
        if let Some(to) = self.forward_rule(line, |c| *c == ForwardCondition::Unconditional) {
            return Forwarded::To(to, CallReason::ForwardUnconditional);
        }
        if !self.can_take_call(line)
            && let Some(to) = self.forward_rule(line, |c| *c == ForwardCondition::Busy)
        {
            return Forwarded::To(to, CallReason::ForwardBusy);
        }
        Forwarded::No
    }

    /// Replaces extension `line`'s forwarding (an empty one cancels it). Destinations must be numbers
    /// the switch knows, other than the extension itself.
    pub(crate) fn set_forwarding(
        &mut self,
        sink: &EventSink,
        line: usize,
        forwarding: &Forwarding,
    ) -> Result<(), Error> {
        for (condition, to) in &forwarding.rules {
            let number = to.digits();
            let known = self.extension_index(&number).is_some_and(|l| l != line)
                || self.far_ends.contains_key(&number);
            if !known {
                return Err(Error::InvalidAddress {
                    reason: format!("cannot forward to {number}"),
                });
            }
            if let ForwardCondition::NoAnswer { rings } = condition
                && *rings == 0
            {
                return Err(Error::InvalidParameter {
                    reason: "forwarding on no answer needs at least one ring".into(),
                });
            }
        }
        if forwarding.rules.is_empty() && !forwarding.do_not_disturb {
            self.forwarding.remove(&line);
        } else {
            self.forwarding.insert(line, forwarding.clone());
        }
        sink.line(
            LineId(line as u32),
            LineEvent::ForwardingChanged {
                address: AddressId(0),
            },
        );
        Ok(())
    }

    fn fire(&mut self, shared: &Arc<Shared>, id: CallLegId, timer: Timer) {
        let Some(sink) = self.sink.clone() else {
            return;
        };
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
                sink.line(
                    LineId(leg.line as u32),
                    LineEvent::Ringing {
                        address: AddressId(0),
                        count,
                    },
                );
                self.schedule(
                    shared,
                    shared.timing.ring_period,
                    id,
                    Timer::Ring { count: count + 1 },
                );
            }
            Timer::CallerId => {
                if let Some(caller) = self.legs.get_mut(&id).and_then(|l| l.pending_caller.take()) {
                    self.set_info(&sink, id, |i| i.caller = *caller);
                }
            }
            // The called leg rang out: it goes idle and its caller hears no answer.
            Timer::NoAnswer if alerting => {
                let caller = self.unlink(id);
                self.set_state(
                    &sink,
                    id,
                    CallState::Disconnected(DisconnectReason::NoAnswer),
                );
                self.set_state(&sink, id, CallState::Idle);
                self.clear_party(&sink, caller, DisconnectReason::NoAnswer);
            }
            // An outside party never answered.
            Timer::NoAnswer if waiting_outside => {
                let party = self.unlink(id);
                self.clear_party(&sink, party, DisconnectReason::NoAnswer);
                self.set_state(
                    &sink,
                    id,
                    CallState::Disconnected(DisconnectReason::NoAnswer),
                );
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
                self.set_state(
                    &sink,
                    id,
                    CallState::Disconnected(DisconnectReason::Forwarded),
                );
                self.set_state(&sink, id, CallState::Idle);
                let by = self.party(line);
                self.deliver(
                    shared,
                    &sink,
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
                self.clear_party(&sink, party, DisconnectReason::Normal);
                self.peer_cleared(&sink, id, DisconnectReason::Normal);
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
                    self.set_state(&sink, id, CallState::Connected(ConnectedMode::Active));
                }
                self.set_info(&sink, id, |i| i.connected = party);
                if let Some(after) = hang_up_after {
                    self.schedule(shared, after, id, Timer::FarEndHangsUp);
                }
            }
            Timer::FarEndHangsUp => self.far_end_clears(&sink, id),
            _ => {}
        }
    }

    /// A parked party went away (hung up): its orbit is free again.
    pub(crate) fn forget_parked(&mut self, sink: &EventSink, party: Peer) {
        let Some(orbit) = self
            .parked
            .iter()
            .find(|(_, p)| p.party == party)
            .map(|(o, _)| o.clone())
        else {
            return;
        };
        if let Some(p) = self.parked.remove(&orbit) {
            sink.line(
                LineId(p.parker as u32),
                LineEvent::Unparked {
                    orbit,
                    call_id: p.call_id,
                },
            );
        }
    }

    /// The outside party of leg `id` hangs up (or gives up, if the leg was never answered).
    pub(crate) fn far_end_clears(&mut self, sink: &EventSink, id: CallLegId) {
        let Some(Peer::Outside(o)) = self.legs.get(&id).map(|l| l.peer) else {
            return;
        };
        self.unlink(id);
        self.outside.remove(&o);
        self.peer_cleared(sink, id, DisconnectReason::Normal);
    }

    /// The party on the other side of a leg went away, for `reason`.
    fn clear_party(&mut self, sink: &EventSink, party: Peer, reason: DisconnectReason) {
        match party {
            Peer::Leg(p) => {
                self.unlink(p);
                self.peer_cleared(sink, p, reason);
            }
            Peer::Outside(o) => {
                self.outside.remove(&o);
            }
            Peer::None => {}
        }
    }

    /// A leg lost its party: it disconnects, and if it was never answered it goes idle as well (the
    /// station never went off-hook).
    fn peer_cleared(&mut self, sink: &EventSink, id: CallLegId, reason: DisconnectReason) {
        let Ok(state) = self.state_of(id) else {
            return;
        };
        match state {
            CallStateKind::Idle | CallStateKind::Disconnected => {}
            CallStateKind::Offering | CallStateKind::Accepted => {
                self.set_state(sink, id, CallState::Disconnected(reason));
                self.set_state(sink, id, CallState::Idle);
            }
            _ => self.set_state(sink, id, CallState::Disconnected(reason)),
        }
    }

    /// Finds where a number goes; a destination that cannot take the call now is an error, and nothing
    /// has changed.
    fn destination(&self, number: &str) -> Result<Destination, Error> {
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
    fn deliver(
        &mut self,
        shared: &Arc<Shared>,
        sink: &EventSink,
        party: Peer,
        destination: Destination,
        handover: Handover,
    ) {
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
                    origin: match party {
                        Peer::Outside(_) => CallOrigin::External,
                        _ => CallOrigin::Internal,
                    },
                    reason,
                    media_mode: MediaModes::INTERACTIVE_VOICE,
                    caller: self.identity(party),
                    called: self.party(line),
                    redirect: Redirect::by(by),
                    ..CallInfo::default()
                };
                let leg = self.offer(shared, sink, line, info, party);
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
                    self.set_info(sink, p, |i| {
                        i.redirect_mut().redirection = PartyId::number(number);
                    });
                    self.ring_outside(shared, p, &far);
                }
                Peer::None => {}
            },
        }
    }

    /// Leg `id` waits for an outside party to answer.
    fn ring_outside(&mut self, shared: &Arc<Shared>, id: CallLegId, far: &FarEnd) {
        if let Some(Peer::Outside(o)) = self.legs.get(&id).map(|l| l.peer)
            && let Some(o) = self.outside.get_mut(&o)
        {
            o.script = Some(Box::new(far.clone()));
        }
        if let Answer::AfterRings(rings) = far.answer {
            let after = shared.timing.ring_period.saturating_mul(rings);
            if after < shared.timing.no_answer_timeout {
                self.schedule(shared, after, id, Timer::FarEndAnswers);
            }
        }
        self.schedule(shared, shared.timing.no_answer_timeout, id, Timer::NoAnswer);
    }

    pub(crate) fn dial(
        &mut self,
        shared: &Arc<Shared>,
        sink: &EventSink,
        id: CallLegId,
        digits: &DialString,
    ) -> Result<(), Error> {
        match self.state_of(id)? {
            CallStateKind::DialTone | CallStateKind::Dialing => {}
            // Digits on an established call go in-band to the far end.
            CallStateKind::Connected => {
                return self.generate_digits(sink, id, &digits.digits(), DigitMode::Dtmf);
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
        self.set_state(sink, id, CallState::Dialing);
        if !digits.is_partial() {
            self.route(shared, sink, id);
        }
        Ok(())
    }

    /// Dialling is complete: find the destination and start the call towards it.
    fn route(&mut self, shared: &Arc<Shared>, sink: &EventSink, id: CallLegId) {
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
        self.set_info(sink, id, |i| i.called = party);
        self.set_state(sink, id, CallState::Proceeding);
        let mut reason = CallReason::Direct;
        let mut redirecting = PartyId::default();
        if let Some(dialled) = self.extension_index(&number).filter(|l| *l != from_line) {
            match self.forwarded(dialled) {
                Forwarded::No => {}
                Forwarded::DoNotDisturb => {
                    self.set_state(
                        sink,
                        id,
                        CallState::Disconnected(DisconnectReason::DoNotDisturb),
                    );
                    return;
                }
                Forwarded::To(to, why) => {
                    redirecting = self.party(dialled);
                    reason = why;
                    self.set_info(sink, id, |i| {
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
                self.offer(shared, sink, target, info, Peer::Leg(id));
                self.set_state(sink, id, CallState::Ringback);
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
                self.set_state(sink, id, CallState::Ringback);
                self.ring_outside(shared, id, &far);
            }
            Ok(Destination::Extension(_)) | Err(Error::InUse) => {
                self.set_state(sink, id, CallState::Busy(BusyMode::Station))
            }
            Err(_) => {
                let reason = match self.far_ends.get(&number).map(|f| f.answer) {
                    Some(Answer::Reject) => DisconnectReason::Reject,
                    Some(Answer::Unreachable) => DisconnectReason::Unreachable,
                    _ => DisconnectReason::BadAddress,
                };
                self.set_state(sink, id, CallState::Disconnected(reason));
            }
        }
    }

    pub(crate) fn answer(
        &mut self,
        shared: &Arc<Shared>,
        sink: &EventSink,
        id: CallLegId,
    ) -> Result<(), Error> {
        match self.state_of(id)? {
            CallStateKind::Offering | CallStateKind::Accepted => {}
            state => return Err(Error::InvalidCallState { state }),
        }
        let leg = self.leg(id)?;
        let (peer, me, relation) = (leg.peer, self.party(leg.line), leg.relation.clone());
        self.set_state(sink, id, CallState::Connected(ConnectedMode::Active));
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
                self.offer(shared, sink, target, info, Peer::Leg(id));
            } else {
                self.set_state(sink, id, CallState::Disconnected(DisconnectReason::Busy));
            }
            return Ok(());
        }
        let them = self.identity(peer);
        self.set_info(sink, id, |i| i.connected = them);
        match peer {
            Peer::Leg(caller) => {
                if self.state_of(caller).ok() == Some(CallStateKind::Ringback) {
                    self.set_state(sink, caller, CallState::Connected(ConnectedMode::Active));
                }
                self.set_info(sink, caller, |i| i.connected = me);
            }
            Peer::Outside(o) => {
                if let Some(after) = self.outside.get(&o).and_then(|o| o.hang_up_after) {
                    self.schedule(shared, after, id, Timer::FarEndHangsUp);
                }
            }
            Peer::None => {}
        }
        Ok(())
    }

    pub(crate) fn accept(&mut self, sink: &EventSink, id: CallLegId) -> Result<(), Error> {
        match self.state_of(id)? {
            CallStateKind::Offering => {
                self.set_state(sink, id, CallState::Accepted);
                Ok(())
            }
            state => Err(Error::InvalidCallState { state }),
        }
    }

    /// Hangs up a leg; its party hears `reason`.
    pub(crate) fn drop_leg(
        &mut self,
        sink: &EventSink,
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
        self.set_state(sink, id, CallState::Idle);
        self.clear_party(sink, party, reason);
        self.after_leaving(sink, id, line, relation);
        // A party waiting in a park orbit that hangs up leaves the orbit free.
        self.forget_parked(sink, Peer::Leg(id));
        Ok(())
    }

    /// What happens to related legs when leg `id` on extension `line` (related as `relation`) has gone
    /// idle.
    fn after_leaving(&mut self, sink: &EventSink, id: CallLegId, line: usize, relation: Relation) {
        match relation {
            // Dropping a consultation call brings the held call back.
            Relation::ConsultFor(original) => {
                if self.state_of(original).ok() == Some(CallStateKind::OnHoldPendingTransfer) {
                    self.set_state(sink, original, CallState::Connected(ConnectedMode::Active));
                }
            }
            Relation::ConsultForConference(parent) => {
                if self.state_of(parent).ok() == Some(CallStateKind::OnHoldPendingConference) {
                    self.set_state(sink, parent, CallState::Connected(ConnectedMode::Active));
                }
            }
            // Dropping the conference drops every party, and their far ends hear the hang-up.
            Relation::Parent(parties) => {
                for p in parties {
                    let party = self.unlink(p);
                    self.set_state(sink, p, CallState::Idle);
                    self.clear_party(sink, party, DisconnectReason::Normal);
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

    pub(crate) fn reject(&mut self, sink: &EventSink, id: CallLegId) -> Result<(), Error> {
        match self.state_of(id)? {
            CallStateKind::Offering | CallStateKind::Accepted => {
                self.drop_leg(sink, id, DisconnectReason::Reject)
            }
            state => Err(Error::InvalidCallState { state }),
        }
    }

    pub(crate) fn hold(&mut self, sink: &EventSink, id: CallLegId) -> Result<(), Error> {
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
        self.set_state(sink, id, CallState::OnHold);
        Ok(())
    }

    pub(crate) fn unhold(&mut self, sink: &EventSink, id: CallLegId) -> Result<(), Error> {
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
            self.set_state(sink, c, CallState::Idle);
            self.clear_party(sink, party, DisconnectReason::Normal);
        }
        self.set_state(sink, id, CallState::Connected(ConnectedMode::Active));
        Ok(())
    }

    /// The consultation call made for `id` (a transfer original or a conference parent).
    fn consultation_of(&self, id: CallLegId, conference: bool) -> Option<CallLegId> {
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
    fn own_call(&mut self, line: usize, origin: CallOrigin) -> CallInfo {
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
    fn consultation_leg(
        &mut self,
        sink: &EventSink,
        line: usize,
        relation: Relation,
        request: RequestId,
    ) -> CallLegId {
        let info = self.own_call(line, CallOrigin::Outbound);
        let c = self.new_leg(
            sink,
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
        sink: &EventSink,
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
        self.set_state(sink, id, CallState::OnHoldPendingTransfer);
        let original_call = self.leg(id)?.info.call_id;
        let c = self.consultation_leg(sink, line, Relation::ConsultFor(id), request);
        self.set_info(sink, c, |i| i.related_call_id = Some(original_call));
        Ok(c)
    }

    pub(crate) fn complete_transfer(
        &mut self,
        shared: &Arc<Shared>,
        sink: &EventSink,
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
                sink,
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
                self.set_state(sink, p, CallState::Conferenced);
                self.set_info(sink, p, |i| i.related_call_id = Some(call_id));
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
            self.set_state(sink, l, CallState::Idle);
        }
        self.join(shared, sink, first, second);
        Ok(None)
    }

    /// Connects two parties whose legs on a transferring extension have gone.
    fn join(&mut self, shared: &Arc<Shared>, sink: &EventSink, a: Peer, b: Peer) {
        match (a, b) {
            (Peer::Leg(x), Peer::Leg(y)) => {
                self.link(x, Peer::Leg(y));
                self.update_parties(sink, x, y);
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
                    Some(script) => self.ring_outside(shared, x, &script),
                    None => self.set_info(sink, x, |i| i.connected = party),
                }
            }
            (Peer::Outside(o), Peer::Outside(p)) => {
                // Both parties are outside: the call leaves the switch.
                self.outside.remove(&o);
                self.outside.remove(&p);
            }
            (Peer::None, other) | (other, Peer::None) => {
                self.clear_party(sink, other, DisconnectReason::Normal)
            }
        }
    }

    /// After a transfer joined legs `x` and `y`, each learns who the other is.
    fn update_parties(&mut self, sink: &EventSink, x: CallLegId, y: CallLegId) {
        let (px, py) = (self.identity(Peer::Leg(x)), self.identity(Peer::Leg(y)));
        for (leg, other, other_party) in [(x, y, py), (y, x, px)] {
            match self.state_of(leg).ok() {
                // Still ringing: it is now the transferred party calling.
                Some(CallStateKind::Offering | CallStateKind::Accepted) => {
                    self.set_info(sink, leg, |i| {
                        i.caller = other_party;
                        i.reason = CallReason::Transfer;
                    })
                }
                Some(_) if self.state_of(other).ok() != Some(CallStateKind::Offering) => {
                    self.set_info(sink, leg, |i| i.connected = other_party)
                }
                _ => {}
            }
        }
    }

    pub(crate) fn setup_conference(
        &mut self,
        sink: &EventSink,
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
            sink,
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
        self.set_state(sink, id, CallState::Conferenced);
        self.set_info(sink, id, |i| i.related_call_id = Some(call_id));
        let c = self.consultation_leg(sink, line, Relation::ConsultForConference(parent), request);
        Ok((parent, c))
    }

    fn parties_of(&self, parent: CallLegId) -> Result<Vec<CallLegId>, Error> {
        match &self.leg(parent)?.relation {
            Relation::Parent(p) => Ok(p.clone()),
            _ => Err(Error::NoConference),
        }
    }

    pub(crate) fn prepare_add_to_conference(
        &mut self,
        sink: &EventSink,
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
        self.set_state(sink, parent, CallState::OnHoldPendingConference);
        Ok(self.consultation_leg(sink, line, Relation::ConsultForConference(parent), request))
    }

    pub(crate) fn add_to_conference(
        &mut self,
        sink: &EventSink,
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
        self.set_state(sink, consult, CallState::Conferenced);
        self.set_info(sink, consult, |i| i.related_call_id = Some(call_id));
        self.set_state(sink, parent, CallState::Connected(ConnectedMode::Active));
        Ok(())
    }

    /// Removes a party: it leaves the bridge and its far end is disconnected.
    pub(crate) fn remove_from_conference(
        &mut self,
        sink: &EventSink,
        id: CallLegId,
    ) -> Result<(), Error> {
        match self.state_of(id)? {
            CallStateKind::Conferenced => {}
            state => return Err(Error::InvalidCallState { state }),
        }
        self.drop_leg(sink, id, DisconnectReason::Normal)
    }

    pub(crate) fn swap_hold(
        &mut self,
        sink: &EventSink,
        active: CallLegId,
        held: CallLegId,
    ) -> Result<(), Error> {
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
        self.set_state(sink, active, CallState::OnHold);
        self.set_state(sink, held, CallState::Connected(ConnectedMode::Active));
        Ok(())
    }

    /// Sends a connected call's party to `destination`; the leg goes idle here.
    pub(crate) fn blind_transfer(
        &mut self,
        shared: &Arc<Shared>,
        sink: &EventSink,
        id: CallLegId,
        destination: &DialString,
    ) -> Result<(), Error> {
        match self.state_of(id)? {
            CallStateKind::Connected => {}
            state => return Err(Error::InvalidCallState { state }),
        }
        self.send_party_away(shared, sink, id, destination, CallReason::Transfer)
    }

    /// Deflects an offered call to `destination`; the leg goes idle here.
    pub(crate) fn redirect(
        &mut self,
        shared: &Arc<Shared>,
        sink: &EventSink,
        id: CallLegId,
        destination: &DialString,
    ) -> Result<(), Error> {
        match self.state_of(id)? {
            CallStateKind::Offering | CallStateKind::Accepted => {}
            state => return Err(Error::InvalidCallState { state }),
        }
        self.send_party_away(shared, sink, id, destination, CallReason::Redirect)
    }

    fn send_party_away(
        &mut self,
        shared: &Arc<Shared>,
        sink: &EventSink,
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
        self.set_state(sink, id, CallState::Idle);
        // The leg left as surely as if it were dropped: a call held for it comes back.
        self.after_leaving(sink, id, line, relation);
        let handover = Handover {
            reason,
            by,
            call_id,
            forwards: 0,
        };
        self.deliver(shared, sink, party, target, handover);
        Ok(())
    }

    pub(crate) fn secure(&mut self, sink: &EventSink, id: CallLegId) -> Result<(), Error> {
        // A call that has ended has nothing left to protect.
        if let state @ (CallStateKind::Idle | CallStateKind::Disconnected) = self.state_of(id)? {
            return Err(Error::InvalidCallState { state });
        }
        self.set_info(sink, id, |i| i.secure = true);
        Ok(())
    }

    pub(crate) fn generate_digits(
        &mut self,
        sink: &EventSink,
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
                sink.send(ProviderEvent::Digit {
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

    /// Parks a connected call: its party waits in an orbit and the leg goes idle here.
    pub(crate) fn park(
        &mut self,
        shared: &Arc<Shared>,
        sink: &EventSink,
        id: CallLegId,
        orbit: Option<&str>,
    ) -> Result<String, Error> {
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
        self.set_state(sink, id, CallState::Idle);
        self.after_leaving(sink, id, parker, relation);
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
        sink.line(
            LineId(parker as u32),
            LineEvent::Parked {
                orbit: orbit.clone(),
                call_id,
            },
        );
        self.schedule_park_timeout(shared, orbit.clone(), stay);
        Ok(orbit)
    }

    fn schedule_park_timeout(&mut self, shared: &Arc<Shared>, orbit: String, stay: u64) {
        let timeout = self.park_lot.timeout;
        self.later(shared, timeout, Due::ParkTimeout { orbit, stay });
    }

    /// A call parked too long rings its parker again (reason *reminder*); if the parker cannot take it
    /// now it stays parked for another timeout.
    fn park_timed_out(&mut self, shared: &Arc<Shared>, orbit: String) {
        let Some(sink) = self.sink.clone() else {
            return;
        };
        let Some(parker) = self.parked.get(&orbit).map(|p| p.parker) else {
            return;
        };
        if !self.can_take_call(parker) {
            let stay = self.epoch();
            if let Some(p) = self.parked.get_mut(&orbit) {
                p.stay = stay;
            }
            self.schedule_park_timeout(shared, orbit, stay);
            return;
        }
        let Some(p) = self.parked.remove(&orbit) else {
            return;
        };
        sink.line(
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
        self.offer(shared, &sink, p.parker, info, p.party);
    }

    /// Retrieves the call parked in `orbit` to extension `line`: a new, connected call, reason
    /// *unpark*.
    pub(crate) fn unpark(
        &mut self,
        sink: &EventSink,
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
        sink.line(
            LineId(p.parker as u32),
            LineEvent::Unparked {
                orbit: orbit.to_owned(),
                call_id: p.call_id,
            },
        );
        Ok(self.retrieve(sink, line, p.party, p.call_id, CallReason::Unpark, request))
    }

    /// Picks up a call ringing at `target` (an extension) or at any member of pickup group `group` for
    /// extension `line`: the ringing leg ends (disconnected, picked up) and a new, connected leg on
    /// `line` takes its party (reason *pickup*).
    pub(crate) fn pickup(
        &mut self,
        sink: &EventSink,
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
        self.set_state(
            sink,
            ringing,
            CallState::Disconnected(DisconnectReason::PickedUp),
        );
        self.set_state(sink, ringing, CallState::Idle);
        Ok(self.retrieve(sink, line, party, call_id, CallReason::Pickup, request))
    }

    /// A new, connected leg on `line` for `party` (unpark, pickup), reported with `request`; the party
    /// learns who it is talking to now.
    fn retrieve(
        &mut self,
        sink: &EventSink,
        line: usize,
        party: Peer,
        call_id: CallId,
        reason: CallReason,
        request: RequestId,
    ) -> CallLegId {
        let them = self.identity(party);
        let info = CallInfo {
            call_id,
            origin: match party {
                Peer::Outside(_) => CallOrigin::External,
                _ => CallOrigin::Internal,
            },
            reason,
            media_mode: MediaModes::INTERACTIVE_VOICE,
            caller: them.clone(),
            connected: them,
            ..CallInfo::default()
        };
        let leg = self.new_leg(
            sink,
            line,
            CallState::Connected(ConnectedMode::Active),
            info,
            party,
            Some(request),
        );
        if let Peer::Leg(other) = party {
            if self.state_of(other).ok() == Some(CallStateKind::Ringback) {
                self.set_state(sink, other, CallState::Connected(ConnectedMode::Active));
            }
            let me = self.party(line);
            self.set_info(sink, other, |i| i.connected = me);
        }
        leg
    }

    /// Records a call-completion request for a busy or unanswered internal call; the call goes idle.
    pub(crate) fn complete_call(
        &mut self,
        sink: &EventSink,
        id: CallLegId,
        mode: tapir_core::params::CompletionMode,
    ) -> Result<u32, Error> {
        use tapir_core::params::CompletionMode;
        let state = self.state_of(id)?;
        if !matches!(state, CallStateKind::Busy | CallStateKind::Ringback) {
            return Err(Error::InvalidCallState { state });
        }
        if !matches!(mode, CompletionMode::CampOn | CompletionMode::Callback) {
            return Err(Error::InvalidParameter {
                reason: format!("the switch cannot complete a call by {mode:?}"),
            });
        }
        let leg = self.leg(id)?;
        let requester = leg.line;
        let target = self
            .extension_index(&leg.dialed)
            .ok_or_else(|| Error::InvalidAddress {
                reason: "only calls to extensions can be completed".into(),
            })?;
        let completion = self.next_completion;
        self.next_completion += 1;
        self.completions.push(Completion {
            id: completion,
            requester,
            target,
            armed: state == CallStateKind::Busy,
        });
        self.drop_leg(sink, id, DisconnectReason::Normal)?;
        Ok(completion)
    }

    pub(crate) fn cancel_completion(&mut self, line: usize, completion: u32) -> Result<(), Error> {
        let before = self.completions.len();
        self.completions
            .retain(|c| !(c.id == completion && c.requester == line));
        if self.completions.len() == before {
            return Err(Error::InvalidParameter {
                reason: format!("no call-completion request {completion} from this extension"),
            });
        }
        Ok(())
    }

    /// A call on `line` ended: completions waiting for it may call back. Runs just after the change that
    /// freed the line, so that change completes first.
    fn line_freed(&mut self, line: usize) {
        if !self.completions.iter().any(|c| c.target == line && c.armed) {
            return;
        }
        if let Some(shared) = self.me.upgrade() {
            self.later(&shared, Duration::ZERO, Due::Completions { line });
        }
    }

    fn run_completions(&mut self, shared: &Arc<Shared>, target: usize) {
        let Some(sink) = self.sink.clone() else {
            return;
        };
        if !self.can_take_call(target) {
            return;
        }
        let Some(i) = self
            .completions
            .iter()
            .position(|c| c.target == target && c.armed && self.can_take_call(c.requester))
        else {
            return;
        };
        let c = self.completions.remove(i);
        let info = CallInfo {
            call_id: self.new_call_id(),
            origin: CallOrigin::Internal,
            reason: CallReason::CallCompletion,
            media_mode: MediaModes::INTERACTIVE_VOICE,
            caller: self.party(c.target),
            called: self.party(c.requester),
            ..CallInfo::default()
        };
        let leg = self.offer(shared, &sink, c.requester, info, Peer::None);
        if let Some(l) = self.legs.get_mut(&leg) {
            l.relation = Relation::CallBack(c.target);
        }
    }
}

/// A switch's agenda task: runs what is due, then sleeps until the next entry is due or an earlier one
/// is added. It holds the switch only while running, and ends with it.
///
/// One timer serves every sleep: it is set again only when the earliest entry changes, which is seldom
/// (the earliest is usually a no-answer timer set long ago), not on every wake-up.
async fn run_agenda(switch: Weak<Shared>, wake: Arc<Notify>) {
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    // The deadline the timer is set to, while it has not fired.
    let mut set_for = None;
    loop {
        let next = {
            let Some(shared) = switch.upgrade() else {
                return;
            };
            let mut st = shared.lock();
            st.run_due(&shared);
            st.agenda.sleep()
        };
        match next {
            Some(at) => {
                if set_for != Some(at) {
                    timer.as_mut().reset(at);
                    set_for = Some(at);
                }
                tokio::select! {
                    biased;
                    () = wake.notified() => {}
                    () = &mut timer => set_for = None,
                }
            }
            None => wake.notified().await,
        }
    }
}
