//! The switch's call model: legs on extensions, outside parties, and what each operation does to them.
//!
//! A *leg* is one call as seen on one extension. Two legs of an internal call point at each other; a leg
//! talking to the outside world points at an *outside party* record, which points back. Transfers and
//! redirects move a party from one leg to another, so parties are records of their own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tapir_core::dial::DialString;
use tapir_core::info::{CallInfo, CallOrigin, CallReason, PartyId, Redirect};
use tapir_core::media::MediaModes;
use tapir_core::params::{DigitMode, ForwardCondition, Forwarding, RequestId};
use tapir_core::state::{
    BusyMode, CallState, CallStateKind, ConnectedMode, DisconnectReason, OfferingMode,
};
use tapir_core::{AddressId, CallId, CallLegId, Error, LineId};
use tapir_provider::{LineEvent, NewCall, ProviderEvent};

use tokio::time::Instant;

use crate::agenda::{Agenda, Due, Timer};
use crate::outbox::Reports;
use crate::script::{Answer, Extension, FarEnd, ParkLot, Timing};

/// Maps keyed by numbers the switch assigns itself: a fast seeded hash is enough.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Who a leg is talking to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    None,
    /// Another extension's leg.
    Leg(CallLegId),
    /// An outside party.
    Outside(u64),
}

impl Peer {
    /// Where a call from this party comes from: outside, or inside the PBX.
    pub(crate) fn origin(self) -> CallOrigin {
        match self {
            Peer::Outside(_) => CallOrigin::External,
            _ => CallOrigin::Internal,
        }
    }
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
    /// The time of the input being handled: everything set for later is set from it.
    pub(crate) now: Instant,
    /// What the switch reported in the current turn, in order.
    pub(crate) out: Reports,
    pub(crate) timing: Timing,
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
    /// A switch as configured, its clock starting at `now`.
    pub(crate) fn new(
        extensions: Vec<Extension>,
        far_ends: HashMap<String, FarEnd>,
        park_lot: ParkLot,
        pickup_groups: HashMap<String, Vec<String>>,
        timing: Timing,
        now: Instant,
    ) -> Self {
        let by_number = extensions
            .iter()
            .enumerate()
            .map(|(line, e)| (e.number.clone(), line))
            .collect();
        Self {
            now,
            out: Reports::default(),
            timing,
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
        self.out.new_call(NewCall {
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
    pub(crate) fn set_state(&mut self, id: CallLegId, state: CallState) {
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
        self.out.call_state(id, state);
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

    fn set_info(&mut self, id: CallLegId, change: impl FnOnce(&mut CallInfo)) {
        if let Some(leg) = self.legs.get_mut(&id) {
            let mut info = CallInfo::clone(&leg.info);
            change(&mut info);
            if info != *leg.info {
                leg.info = Arc::new(info);
                self.out.call_info(id, leg.info.clone());
            }
        }
    }

    /// Runs `timer` for `leg` after `delay`, unless the leg changes state (or goes away) first. A zero
    /// delay still runs later, once the caller has released the switch.
    pub(crate) fn schedule(&mut self, delay: Duration, leg: CallLegId, timer: Timer) {
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        l.armed += 1;
        let due = Due::Leg {
            leg,
            epoch: l.epoch,
            timer,
        };
        self.later(delay, due);
    }

    /// Puts `due` on the agenda for `delay` from now (the time of the input being handled).
    fn later(&mut self, delay: Duration, due: Due) {
        self.agenda.add(self.now + delay, due);
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

    /// When the earliest thing set for later is due (the timer sleeps until then).
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.agenda.sleep()
    }

    /// Runs everything on the agenda that is due at `now`, in order (what it sets for now runs too).
    pub(crate) fn run_due(&mut self, now: Instant) {
        self.now = now;
        while let Some(due) = self.agenda.pop_due(now) {
            match due {
                Due::Leg { leg, epoch, timer } => {
                    match self.legs.get_mut(&leg).filter(|l| l.epoch == epoch) {
                        Some(l) => {
                            l.armed = l.armed.saturating_sub(1);
                            self.fire(leg, timer);
                        }
                        None => self.agenda.stale_one_gone(),
                    }
                }
                Due::ParkTimeout { orbit, stay } => {
                    if self.parked.get(&orbit).is_some_and(|p| p.stay == stay) {
                        self.park_timed_out(orbit);
                    }
                }
                Due::Completions { line } => self.run_completions(line),
            }
        }
    }
}

mod calls;
mod completion;
mod consult;
mod forward;
mod park;
mod ring;
#[cfg(test)]
mod tests;
