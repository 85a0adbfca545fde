//! Holding a call: the handles sessions have on it and the rules of ownership.
//!
//! A handle is two things kept in step here: a [`Holder`] in the call's record and an entry in the
//! session's [`CallIndex`]. The rules, each in one place:
//! - a handle is announced by `NewCall` before any other event names it (a handle a session's
//!   request is creating is held back until the request returns);
//! - a session that has ended is given no handle;
//! - the sole owner of a live call may not let it go by deallocating it or becoming a monitor;
//! - a live call left with no owner is the orphan policy's to drop ([`FollowUp::drop_orphan`]);
//! - an idle call nobody holds is forgotten ([`FollowUp::forget`]).

use std::sync::Arc;

use tapir_core::Error;
use tapir_core::info::InfoChange;
use tapir_core::privilege::CallPrivilege;
use thin_vec::ThinVec;

use super::{CallEntry, CallIndex, CallRecord, FollowUp, Holder, NewHolder, TakenUp};
use crate::event::Event;
use crate::handles::{CallHandle, HandleMint, LineHandle};
use crate::inbox::Inbox;
use crate::sync::lock;

impl CallIndex {
    /// The call behind `handle`.
    pub(crate) fn get(&self, handle: CallHandle) -> Option<Arc<CallEntry>> {
        self.0.get(&handle).map(|e| e.value().clone())
    }

    /// How many handles the session holds.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Every handle and its call, as they are now.
    pub(crate) fn entries(&self) -> Vec<(CallHandle, Arc<CallEntry>)> {
        self.0
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect()
    }

    /// The handles alone.
    pub(crate) fn handles(&self) -> Vec<CallHandle> {
        self.0.iter().map(|e| *e.key()).collect()
    }

    /// A fresh handle value this session does not hold.
    pub(crate) fn mint(&self, mint: &HandleMint) -> CallHandle {
        loop {
            let h = CallHandle(mint.next());
            if !self.0.contains_key(&h) {
                return h;
            }
        }
    }

    /// Adds `handle` unless the session of `inbox` has ended (checked under its queue's lock, which
    /// log-off takes to end it).
    fn adopt(&self, inbox: &Inbox, handle: CallHandle, entry: &Arc<CallEntry>) -> bool {
        let q = lock(&inbox.queue);
        if q.ended {
            return false;
        }
        self.0.insert(handle, entry.clone());
        true
    }

    fn remove(&self, handle: CallHandle) {
        self.0.remove(&handle);
    }
}

impl CallEntry {
    /// Gives a call that has just appeared its first holders, under its lock: `insert` puts it in
    /// the engine's table first (so events for it from other threads wait for this), then each
    /// holder's session — unless it has ended — gets the handle and `NewCall` (or has both held back,
    /// see [`NewHolder::published`]) and the call's first state. `made` says the call was made at a
    /// session's request: if that session has ended meanwhile, nobody owns the call and the follow-up
    /// drops it.
    pub(crate) fn admit(
        self: &Arc<Self>,
        insert: impl FnOnce(),
        holders: Vec<NewHolder<'_>>,
        made: bool,
    ) -> FollowUp {
        let mut rec = lock(&self.rec);
        insert();
        let state = rec.state;
        self.line.count(self.address, state.kind(), 1);
        rec.holders.reserve_exact(holders.len());
        for n in holders {
            if !n.index.adopt(&n.inbox, n.handle, self) {
                continue;
            }
            let mut h = Holder {
                inbox: n.inbox,
                handle: n.handle,
                line: n.line,
                privilege: n.privilege,
                published: n.published,
                digits: false,
                held_back: ThinVec::new(),
            };
            if h.published {
                h.inbox.push(self.new_call_event(&rec, &h));
            }
            h.deliver(Event::CallState {
                call: h.handle,
                state,
                privilege: h.privilege,
            });
            rec.holders.push(h);
        }
        let rec = &mut *rec;
        if let Some(d) = &mut rec.detail {
            for h in rec.holders.iter().filter(|h| h.is_owner()) {
                d.note_owner(&h.inbox.app);
            }
        }
        tracing::debug!(state = ?state, holders = rec.holders.len(), "new call");
        FollowUp {
            drop_orphan: made && rec.owners() == 0,
            ..FollowUp::default()
        }
    }

    /// Gives the session of `inbox` a monitor handle, through its open `open`, if the call is live
    /// and the session holds none (TAPI `lineGetNewCalls`).
    pub(crate) fn take_up(
        self: &Arc<Self>,
        inbox: &Arc<Inbox>,
        index: &CallIndex,
        open: LineHandle,
        mint: &HandleMint,
    ) -> TakenUp {
        let mut rec = lock(&self.rec);
        if rec.forgotten
            || rec.state.is_idle()
            || rec.holders.iter().any(|h| Arc::ptr_eq(&h.inbox, inbox))
        {
            return TakenUp::Skipped;
        }
        match self.hand_out(&mut rec, inbox, index, open, CallPrivilege::Monitor, mint) {
            Some(handle) => {
                rec.announce_privileges(handle, InfoChange::NUM_MONITORS);
                TakenUp::Handle(handle)
            }
            None => TakenUp::SessionEnded,
        }
    }

    /// Makes the session of `inbox` an owner of the call (hand-off): raises the handle it holds, or
    /// gives it a new one through its open `line`. Every other holder is told the owners grew.
    pub(crate) fn make_owner(
        self: &Arc<Self>,
        inbox: &Arc<Inbox>,
        index: &CallIndex,
        line: LineHandle,
        mint: &HandleMint,
    ) {
        let mut rec = lock(&self.rec);
        let state = rec.state;
        if let Some(d) = &mut rec.detail {
            d.note_owner(&inbox.app);
        }
        let handle = match rec
            .holders
            .iter_mut()
            .find(|h| Arc::ptr_eq(&h.inbox, inbox))
        {
            Some(h) if h.is_owner() => return,
            Some(h) => {
                h.privilege = CallPrivilege::Owner;
                let call = h.handle;
                h.deliver(Event::CallState {
                    call,
                    state,
                    privilege: CallPrivilege::Owner,
                });
                call
            }
            None => match self.hand_out(&mut rec, inbox, index, line, CallPrivilege::Owner, mint) {
                Some(handle) => handle,
                None => return,
            },
        };
        rec.announce_privileges(handle, InfoChange::NUM_OWNERS_INCREASED);
    }

    /// Gives the session of `inbox` the handle of a call its request created: the `NewCall` event,
    /// then every event held back for it, in order. Fails if the session ended (and so released the
    /// handle) meanwhile.
    pub(crate) fn publish(&self, inbox: &Arc<Inbox>, handle: CallHandle) -> Result<(), Error> {
        let mut rec = lock(&self.rec);
        let call_id = rec.info.call_id;
        let h = rec.holder_mut(inbox, handle).ok_or(Error::SessionEnded)?;
        if !h.published {
            h.published = true;
            inbox.push(Event::NewCall {
                call: handle,
                line: h.line,
                address: self.address,
                call_id,
                privilege: h.privilege,
            });
            // Taken, not drained: the buffer is not needed again, so its memory goes with it.
            for e in std::mem::take(&mut h.held_back) {
                inbox.push(e);
            }
        }
        Ok(())
    }

    /// Releases the session's `handle` (from the call's holders and the session's index); every
    /// other holder is told the owners or monitors shrank.
    pub(crate) fn release(
        &self,
        inbox: &Arc<Inbox>,
        index: &CallIndex,
        handle: CallHandle,
    ) -> FollowUp {
        let mut rec = lock(&self.rec);
        index.remove(handle);
        if let Some(i) = rec.holders.iter().position(|h| h.is(inbox, handle)) {
            let h = rec.holders.swap_remove(i);
            let changed = match h.privilege {
                CallPrivilege::Owner => InfoChange::NUM_OWNERS_DECREASED,
                CallPrivilege::Monitor => InfoChange::NUM_MONITORS,
            };
            rec.announce_privileges(handle, changed);
        }
        FollowUp {
            forget: rec.state.is_idle() && rec.holders.is_empty() && !rec.forgotten && rec.forget(),
            ..FollowUp::default()
        }
    }

    /// Whether the session's `handle` is the only owner of a call that is not idle, so that letting
    /// it go would orphan the call.
    pub(crate) fn sole_live_owner(&self, inbox: &Arc<Inbox>, handle: CallHandle) -> bool {
        let rec = lock(&self.rec);
        !rec.state.is_idle()
            && rec.owners() == 1
            && rec.holder(inbox, handle).is_some_and(Holder::is_owner)
    }

    /// Whether the call is live with nobody owning it: the orphan policy's to drop.
    pub(crate) fn is_orphan(&self) -> bool {
        let rec = lock(&self.rec);
        !rec.state.is_idle() && rec.owners() == 0
    }

    /// The session's line open the call is held through by `handle`.
    pub(crate) fn line_of(&self, inbox: &Arc<Inbox>, handle: CallHandle) -> Option<LineHandle> {
        lock(&self.rec).holder(inbox, handle).map(|h| h.line)
    }

    /// The handle through which the session of `inbox` holds the call, if it does.
    pub(crate) fn handle_of(&self, inbox: &Arc<Inbox>) -> Option<CallHandle> {
        lock(&self.rec)
            .holders
            .iter()
            .find(|h| Arc::ptr_eq(&h.inbox, inbox))
            .map(|h| h.handle)
    }

    /// Checks that the session owns the call through `handle`: `InvalidCallHandle` if it does not hold
    /// it, `NotOwner` if it only monitors it.
    pub(crate) fn owned_by(&self, inbox: &Arc<Inbox>, handle: CallHandle) -> Result<(), Error> {
        match lock(&self.rec).holder(inbox, handle) {
            None => Err(Error::InvalidCallHandle),
            Some(h) if !h.is_owner() => Err(Error::NotOwner),
            Some(_) => Ok(()),
        }
    }

    /// Changes the session's privilege on the call. A monitor may become an owner at any time; the
    /// sole owner of a live call may not become a monitor (`InvalidCallState`).
    pub(crate) fn set_privilege(
        &self,
        inbox: &Arc<Inbox>,
        handle: CallHandle,
        privilege: CallPrivilege,
    ) -> Result<(), Error> {
        let mut rec = lock(&self.rec);
        let owners = rec.owners();
        let state = rec.state;
        let h = rec
            .holder_mut(inbox, handle)
            .ok_or(Error::InvalidCallHandle)?;
        if h.privilege == privilege {
            return Ok(());
        }
        if privilege == CallPrivilege::Monitor && owners == 1 && !state.is_idle() {
            return Err(Error::InvalidCallState {
                state: state.kind(),
            });
        }
        h.privilege = privilege;
        if privilege == CallPrivilege::Owner
            && let Some(d) = &mut rec.detail
        {
            d.note_owner(&inbox.app);
        }
        let changed = match privilege {
            CallPrivilege::Owner => InfoChange::NUM_OWNERS_INCREASED | InfoChange::NUM_MONITORS,
            CallPrivilege::Monitor => InfoChange::NUM_OWNERS_DECREASED | InfoChange::NUM_MONITORS,
        };
        rec.announce_privileges(handle, changed);
        Ok(())
    }

    /// Records whether the session wants the digits detected on the call. Returns what it wanted
    /// before, and whether any holder wants digits now (so the provider should listen).
    pub(crate) fn want_digits(
        &self,
        inbox: &Arc<Inbox>,
        handle: CallHandle,
        wanted: bool,
    ) -> Result<(bool, bool), Error> {
        let mut rec = lock(&self.rec);
        let before = rec.holders.iter().any(|h| h.digits);
        let h = rec
            .holder_mut(inbox, handle)
            .ok_or(Error::InvalidCallHandle)?;
        let previous = std::mem::replace(&mut h.digits, wanted);
        Ok((previous, before || wanted))
    }

    /// Gives the session of `inbox` a new handle on the call (held locked in `rec`) through its open
    /// `line`: the call's `NewCall`, then its state now, pushed under the lock so no event about the
    /// call can come first. `None` once the session has ended.
    fn hand_out(
        self: &Arc<Self>,
        rec: &mut CallRecord,
        inbox: &Arc<Inbox>,
        index: &CallIndex,
        line: LineHandle,
        privilege: CallPrivilege,
        mint: &HandleMint,
    ) -> Option<CallHandle> {
        let handle = index.mint(mint);
        if !index.adopt(inbox, handle, self) {
            return None;
        }
        let h = Holder {
            inbox: inbox.clone(),
            handle,
            line,
            privilege,
            published: true,
            digits: false,
            held_back: ThinVec::new(),
        };
        inbox.push(self.new_call_event(rec, &h));
        inbox.push(Event::CallState {
            call: handle,
            state: rec.state,
            privilege,
        });
        rec.holders.push(h);
        Some(handle)
    }

    /// The `NewCall` event that announces holder `h`'s handle.
    fn new_call_event(&self, rec: &CallRecord, h: &Holder) -> Event {
        Event::NewCall {
            call: h.handle,
            line: h.line,
            address: self.address,
            call_id: rec.info.call_id,
            privilege: h.privilege,
        }
    }
}

impl CallRecord {
    /// Tells every holder but `except` that the number of owners or monitors changed.
    fn announce_privileges(&mut self, except: CallHandle, changed: InfoChange) {
        if self.state.is_idle() {
            return;
        }
        for h in &mut self.holders {
            if h.handle != except {
                let call = h.handle;
                h.deliver(Event::CallInfo { call, changed });
            }
        }
    }
}
