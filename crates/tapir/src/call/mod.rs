//! A call as the engine keeps it: its entry in the engine's tables and its record — state,
//! information, the sessions holding it, its place in a conference or a consultation, the notes for
//! its detail record.
//!
//! The record is private to this module. Every change to a call is a method here that takes the
//! call's lock, applies the change, delivers the events it causes to the call's holders while the
//! lock is held (that is what gives every session one order per call) and returns what the engine
//! must do once the lock is let go ([`FollowUp`]). Holding a call — handing out handles, raising and
//! releasing them, the orphan policy's trigger — is in `holding.rs`; conference and consultation
//! links are in `relations.rs`.
//!
//! Lock order: a call's record, then its address's usage counts, then a session's queue. Two calls'
//! records are never locked at once.

mod holding;
mod relations;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};

use smallvec::SmallVec;
use tapir_core::caps::{AddressCaps, LineCaps};
use tapir_core::cdr::{CallDetailRecord, Disposition};
use tapir_core::gate::{self, CallContext, CallOperation, CallRole, FeatureSet};
use tapir_core::info::CallInfo;
use tapir_core::params::DigitMode;
use tapir_core::privilege::CallPrivilege;
use tapir_core::state::{CallState, CallStateKind, transition_allowed};
use tapir_core::{AddressId, CallId, CallLegId, Error, LineId, ProviderId};
use thin_vec::ThinVec;
use tokio::time::Instant;

use crate::detail::{Clock, Detail, Finished};
use crate::event::Event;
use crate::handles::{CallHandle, LineHandle};
use crate::inbox::Inbox;
use crate::line::LineSlot;
use crate::status::Refusal;
use crate::sync::{FastDashMap, lock};

/// One call leg as the engine tracks it.
pub(crate) struct CallEntry {
    /// The provider and its leg: the call's key in the engine's tables.
    pub(crate) key: (ProviderId, CallLegId),
    pub(crate) line: Arc<LineSlot>,
    pub(crate) address: AddressId,
    /// The call's tracing span, kept only when tracing records it (a disabled span is nothing to
    /// keep).
    span: Option<Box<tracing::Span>>,
    /// Every change to the call is applied, and delivered to every session, under this lock.
    rec: Mutex<CallRecord>,
    /// The record's state kind (its index in [`CallStateKind::ALL`]), kept beside the lock so that
    /// the gate judging the call's consultation partner reads it without taking a second call's lock.
    kind: AtomicU8,
}

/// What the engine knows about a call, behind its entry's lock.
struct CallRecord {
    state: CallState,
    /// Shared with the provider's own copy until either changes it.
    info: Arc<CallInfo>,
    /// The call's relation to others, as the engine's own operations made it (consultation call,
    /// conference parent or party). The gate reads it.
    role: CallRole,
    /// For a conference parent: its parties, in the order they were added.
    parties: ThinVec<Arc<CallEntry>>,
    /// For a conference party: its parent.
    conference: Option<Weak<CallEntry>>,
    /// The other call of a consultation the engine set up: for the held original (or the conference
    /// waiting for a party), its consultation call; for the consultation call, the original.
    partner: Option<Weak<CallEntry>>,
    /// The sessions holding the call (an owner and a monitor, usually: inline).
    holders: SmallVec<[Holder; 2]>,
    /// The engine no longer tracks the call (idle, no holders); late events are ignored.
    forgotten: bool,
    /// Notes for the call's detail record (only when the engine has a record sink).
    detail: Option<Box<Detail>>,
}

/// One session's handle on a call.
struct Holder {
    inbox: Arc<Inbox>,
    handle: CallHandle,
    /// The session's line open the call is held through.
    line: LineHandle,
    privilege: CallPrivilege,
    /// Whether the session has been given the handle. Until then its events wait in `held_back`.
    published: bool,
    /// Whether the session asked for the digits detected on the call.
    digits: bool,
    /// Events for a handle not given to its session yet, in order.
    held_back: ThinVec<Event>,
}

/// A session's handles to calls: the other half of each call's holders, kept in step with them by
/// this module.
#[derive(Default)]
pub(crate) struct CallIndex(FastDashMap<CallHandle, Arc<CallEntry>>);

/// A holder to give a new call (see [`CallEntry::admit`]).
pub(crate) struct NewHolder<'a> {
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) index: &'a CallIndex,
    pub(crate) handle: CallHandle,
    pub(crate) line: LineHandle,
    pub(crate) privilege: CallPrivilege,
    /// Given to its session at once (an offered call, a monitor's), or held back until the request
    /// that created the call returns (a call the session made).
    pub(crate) published: bool,
}

/// What the engine must do after a change to a call, once the call's lock is let go.
#[derive(Default)]
#[must_use]
pub(crate) struct FollowUp {
    /// The call has no owner and is live (its far end cleared it, or it was made for a session that
    /// ended): drop it — the orphan policy.
    pub(crate) drop_orphan: bool,
    /// The call is idle and nobody holds it: it is marked forgotten; take it out of the engine's
    /// table.
    pub(crate) forget: bool,
    /// The call left this conference: take it out of the conference's list.
    pub(crate) left_conference: Option<Arc<CallEntry>>,
    /// The call's detail record, finished. Boxed: a follow-up is returned for every change to every
    /// call, and nearly none carries a record.
    pub(crate) record: Option<Box<CallDetailRecord>>,
}

/// What [`CallEntry::take_up`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TakenUp {
    /// The session was given this new monitor handle.
    Handle(CallHandle),
    /// Nothing to take up: the call is idle or gone, or the session already holds it.
    Skipped,
    /// The session has ended.
    SessionEnded,
}

impl FollowUp {
    /// Whether there is nothing to do (nearly always).
    #[inline]
    pub(crate) fn is_nothing(&self) -> bool {
        !self.drop_orphan && !self.forget && self.left_conference.is_none() && self.record.is_none()
    }
}

/// A call's status as one session sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallStatus {
    /// The state and its mode.
    pub state: CallState,
    /// This session's privilege.
    pub privilege: CallPrivilege,
    /// The operations this session can perform on the call now (for a monitor, only those a monitor may
    /// perform). Computed by the same gate that decides the operations.
    pub features: FeatureSet,
    /// Sessions owning the call.
    pub num_owners: usize,
    /// Sessions monitoring the call.
    pub num_monitors: usize,
}

/// A call's information as one session sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallInfoView {
    /// The provider's information (call ID, parties, origin, reason, media).
    pub info: CallInfo,
    /// The provider of the call; `(provider, info.call_id)` identifies a call engine-wide.
    pub provider: ProviderId,
    /// The line the call is on.
    pub line: LineId,
    /// The address on the line.
    pub address: AddressId,
    /// The line open through which this session holds the call.
    pub line_handle: LineHandle,
    /// Sessions owning the call.
    pub num_owners: usize,
    /// Sessions monitoring the call.
    pub num_monitors: usize,
    /// The other call of a consultation the engine set up, while it lasts: for the held original (or
    /// the conference waiting for a party) its consultation call, for the consultation call its
    /// original. The provider's call ID, so it names the call in any session.
    pub consultation_partner: Option<CallId>,
}

impl CallInfoView {
    /// The provider's call ID, shared by every session.
    pub fn call_id(&self) -> CallId {
        self.info.call_id
    }
}

/// What the conformance walk reads of a call beyond the public API.
#[cfg(feature = "conformance")]
pub(crate) struct Inspected {
    pub(crate) leg: CallLegId,
    pub(crate) line: LineId,
    pub(crate) address: AddressId,
    pub(crate) role: CallRole,
}

/// The index of `kind` in [`CallStateKind::ALL`], which lists the states in declaration order.
fn kind_code(kind: CallStateKind) -> u8 {
    kind as u8
}

impl CallEntry {
    /// A call that appeared on `line`, with no holder yet; `notes` keeps notes for its detail
    /// record, from the time `now` reads.
    pub(crate) fn new(
        key: (ProviderId, CallLegId),
        line: Arc<LineSlot>,
        address: AddressId,
        state: CallState,
        info: Arc<CallInfo>,
        notes: bool,
        now: impl FnOnce() -> Instant,
    ) -> Arc<Self> {
        let span =
            tracing::info_span!("call", call_id = info.call_id.0, provider = %key.0, leg = key.1.0);
        let detail = notes.then(|| Box::new(Detail::new(state, &info, now())));
        Arc::new(Self {
            key,
            line,
            address,
            span: (!span.is_disabled()).then(|| Box::new(span)),
            kind: AtomicU8::new(kind_code(state.kind())),
            rec: Mutex::new(CallRecord {
                state,
                info,
                role: CallRole::Plain,
                parties: ThinVec::new(),
                conference: None,
                partner: None,
                holders: SmallVec::new(),
                forgotten: false,
                detail,
            }),
        })
    }

    /// The call's state kind, as last applied to its record.
    pub(crate) fn kind(&self) -> CallStateKind {
        CallStateKind::ALL
            .get(usize::from(self.kind.load(Ordering::Acquire)))
            .copied()
            .unwrap_or(CallStateKind::Unknown)
    }

    /// The call's state and mode.
    pub(crate) fn state(&self) -> CallState {
        lock(&self.rec).state
    }

    /// The provider's call ID.
    pub(crate) fn call_id(&self) -> CallId {
        lock(&self.rec).info.call_id
    }

    /// The capabilities of the address the call is on.
    pub(crate) fn address_caps(&self) -> Result<&AddressCaps, Error> {
        self.line.address(self.address)
    }

    /// The call's tracing span (a disabled one when tracing does not record it).
    pub(crate) fn span(&self) -> tracing::Span {
        self.span
            .as_deref()
            .cloned()
            .unwrap_or_else(tracing::Span::none)
    }

    /// Enters the call's span for as long as the guard lives.
    pub(crate) fn enter(&self) -> Option<tracing::span::Entered<'_>> {
        self.span.as_deref().map(tracing::Span::enter)
    }

    /// Applies `state`, reported by the provider: delivered to every holder, counted on the address,
    /// noted for the detail record at the time `now` reads (only read when the call keeps notes), the
    /// record finished with `clock` when the call goes idle. `Ok(None)` when the call is already in
    /// that state; refused, changing nothing, after the call went idle or when the transition is
    /// not in the table.
    pub(crate) fn apply_state(
        &self,
        state: CallState,
        now: impl FnOnce() -> Instant,
        clock: &Clock,
    ) -> Result<Option<FollowUp>, Refusal> {
        let mut rec = lock(&self.rec);
        let old = rec.state;
        if rec.forgotten || old.is_idle() {
            return Err(Refusal::AfterIdle);
        }
        if old == state {
            return Ok(None);
        }
        if !transition_allowed(old.kind(), state.kind()) {
            tracing::debug!(from = ?old, to = ?state, "not in the transition table");
            return Err(Refusal::Transition);
        }
        self.line.shift(self.address, old.kind(), state.kind());
        self.set_state(&mut rec, state);
        tracing::debug!(?state, "state");
        rec.deliver_all(|h| Event::CallState {
            call: h.handle,
            state,
            privilege: h.privilege,
        });
        let mut follow = FollowUp::default();
        let rec = &mut *rec;
        if let Some(d) = &mut rec.detail {
            d.changed(now(), old, state);
            if state.is_idle() {
                for h in rec.holders.iter().filter(|h| h.is_owner()) {
                    d.note_owner(&h.inbox.app);
                }
                follow.record = d
                    .finish(Finished {
                        clock,
                        info: &rec.info,
                        line: self.line.id,
                        line_name: &self.line.caps.name,
                        address: self.address,
                    })
                    .map(Box::new);
            }
        }
        // A party that hangs up, is dropped, transferred or parked away has left its conference,
        // whichever way it went.
        if rec.conference.is_some()
            && matches!(
                state.kind(),
                CallStateKind::Disconnected | CallStateKind::Idle
            )
        {
            follow.left_conference = rec.detach_party();
        }
        follow.forget = state.is_idle() && rec.holders.is_empty() && rec.forget();
        follow.drop_orphan = matches!(state, CallState::Disconnected(_)) && rec.owners() == 0;
        Ok(Some(follow))
    }

    /// Applies the provider's new information: every holder is told which fields changed.
    pub(crate) fn apply_info(&self, info: Arc<CallInfo>) -> Result<(), Refusal> {
        let mut rec = lock(&self.rec);
        if rec.forgotten || rec.state.is_idle() {
            return Err(Refusal::AfterIdle);
        }
        let changed = rec.info.diff(&info);
        if changed.is_empty() {
            return Ok(());
        }
        if let Some(d) = &mut rec.detail {
            d.note_info(&info);
        }
        rec.info = info;
        rec.deliver_all(|h| Event::CallInfo {
            call: h.handle,
            changed,
        });
        Ok(())
    }

    /// Delivers a digit detected on the call to the holders that asked for digits.
    pub(crate) fn deliver_digit(&self, digit: char, mode: DigitMode) -> Result<(), Refusal> {
        let mut rec = lock(&self.rec);
        if rec.forgotten || rec.state.is_idle() {
            return Err(Refusal::AfterIdle);
        }
        for h in rec.holders.iter_mut().filter(|h| h.digits) {
            let call = h.handle;
            h.deliver(Event::Digit { call, digit, mode });
        }
        Ok(())
    }

    /// Whether the session of `inbox` may perform `op` on the call through its `handle`: the gate's
    /// answer (handle, privilege, `params`, capability, state, limits, in that order).
    pub(crate) fn authorize(
        &self,
        inbox: &Arc<Inbox>,
        handle: CallHandle,
        op: CallOperation,
        params: impl FnOnce(&LineCaps, &AddressCaps) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let rec = lock(&self.rec);
        let holder = rec.holder(inbox, handle).ok_or(Error::InvalidCallHandle)?;
        let (caps, ctx) = self.gate_input(&rec)?;
        gate::check(
            op,
            holder.privilege,
            || params(&self.line.caps, caps),
            caps,
            &ctx,
        )
    }

    /// The call's status as the session of `inbox` sees it through `handle`, its features from the
    /// same gate that decides operations.
    pub(crate) fn status(
        &self,
        inbox: &Arc<Inbox>,
        handle: CallHandle,
    ) -> Result<CallStatus, Error> {
        let rec = lock(&self.rec);
        let holder = rec.holder(inbox, handle).ok_or(Error::InvalidCallHandle)?;
        let (caps, ctx) = self.gate_input(&rec)?;
        let mut features = gate::features(caps, &ctx);
        if holder.privilege == CallPrivilege::Monitor {
            features = features
                .iter()
                .filter(|op| !op.requires_owner())
                .fold(FeatureSet::EMPTY, FeatureSet::with);
        }
        Ok(CallStatus {
            state: rec.state,
            privilege: holder.privilege,
            features,
            num_owners: rec.owners(),
            num_monitors: rec.monitors(),
        })
    }

    /// The call's information as the session of `inbox` sees it through `handle`.
    pub(crate) fn info_view(
        &self,
        inbox: &Arc<Inbox>,
        handle: CallHandle,
    ) -> Result<CallInfoView, Error> {
        let rec = lock(&self.rec);
        let holder = rec.holder(inbox, handle).ok_or(Error::InvalidCallHandle)?;
        let view = CallInfoView {
            info: CallInfo::clone(&rec.info),
            provider: self.key.0,
            line: self.line.id,
            address: self.address,
            line_handle: holder.line,
            num_owners: rec.owners(),
            num_monitors: rec.monitors(),
            consultation_partner: None,
        };
        let partner = rec.partner.as_ref().and_then(Weak::upgrade);
        drop(rec);
        // The partner's lock is taken only once this call's is let go: one call lock at a time.
        let consultation_partner = partner.and_then(|p| {
            let p = lock(&p.rec);
            (!p.state.is_idle()).then_some(p.info.call_id)
        });
        Ok(CallInfoView {
            consultation_partner,
            ..view
        })
    }

    /// Notes for the detail record what an operation under way will make of the call when it goes
    /// idle (transferred, parked, …), or takes the note back (`None`) when the operation failed.
    pub(crate) fn intend(&self, outcome: Option<Disposition>) {
        if let Some(d) = &mut lock(&self.rec).detail {
            d.intent = outcome;
        }
    }

    /// Links call `other` to this one in its detail record.
    pub(crate) fn relate(&self, other: CallId) {
        if let Some(d) = &mut lock(&self.rec).detail {
            d.relate(other);
        }
    }

    /// The call's relation to others, as the engine's own operations made it.
    #[cfg(any(test, feature = "conformance"))]
    pub(crate) fn role(&self) -> CallRole {
        lock(&self.rec).role
    }

    /// What the conformance walk reads of the call.
    #[cfg(feature = "conformance")]
    pub(crate) fn inspect(&self) -> Inspected {
        Inspected {
            leg: self.key.1,
            line: self.line.id,
            address: self.address,
            role: self.role(),
        }
    }

    /// Applies `state` to the record (held locked by the caller) and its mirror.
    fn set_state(&self, rec: &mut CallRecord, state: CallState) {
        rec.state = state;
        self.kind.store(kind_code(state.kind()), Ordering::Release);
    }

    /// What the gate needs to judge an operation on this call: its address's capabilities and the
    /// call's context. The gate and the feature set an application reads both start here.
    fn gate_input(&self, rec: &CallRecord) -> Result<(&AddressCaps, CallContext), Error> {
        let caps = self.address_caps()?;
        Ok((
            caps,
            CallContext {
                state: rec.state,
                role: rec.role,
                usage: self.line.usage(self.address),
                // A partner the engine no longer tracks has gone idle.
                partner: rec
                    .partner
                    .as_ref()
                    .map(|p| p.upgrade().map_or(CallStateKind::Idle, |p| p.kind())),
                media: rec.info.media_mode,
            },
        ))
    }
}

impl CallRecord {
    fn owners(&self) -> usize {
        self.holders.iter().filter(|h| h.is_owner()).count()
    }

    fn monitors(&self) -> usize {
        self.holders.len() - self.owners()
    }

    /// The holder behind the session's `handle`.
    fn holder(&self, inbox: &Arc<Inbox>, handle: CallHandle) -> Option<&Holder> {
        self.holders.iter().find(|h| h.is(inbox, handle))
    }

    fn holder_mut(&mut self, inbox: &Arc<Inbox>, handle: CallHandle) -> Option<&mut Holder> {
        self.holders.iter_mut().find(|h| h.is(inbox, handle))
    }

    /// Delivers to every holder the event `make` writes for it.
    fn deliver_all(&mut self, make: impl Fn(&Holder) -> Event) {
        for h in &mut self.holders {
            let e = make(h);
            h.deliver(e);
        }
    }

    /// Marks the record forgotten (the engine no longer tracks the call) and lets go of its links.
    /// Returns true, for [`FollowUp::forget`].
    fn forget(&mut self) -> bool {
        self.forgotten = true;
        self.parties = ThinVec::new();
        self.conference = None;
        tracing::debug!("forgotten");
        true
    }
}

impl Holder {
    fn is_owner(&self) -> bool {
        self.privilege == CallPrivilege::Owner
    }

    /// The session's event for this handle: straight to the session once it has the handle, held
    /// back until then.
    fn deliver(&mut self, event: Event) {
        if self.published {
            self.inbox.push(event);
        } else {
            self.held_back.push(event);
        }
    }

    fn is(&self, inbox: &Arc<Inbox>, handle: CallHandle) -> bool {
        self.handle == handle && Arc::ptr_eq(&self.inbox, inbox)
    }
}
