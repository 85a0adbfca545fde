//! How calls are tied to each other by the engine's own operations: a conference's parent and its
//! parties, an original and its consultation call. The gate reads these ties (a call's role, its
//! partner's state); applications read them as a conference's calls and a consultation partner.
//!
//! Two records are never locked at once: a change to both ends of a tie locks one, lets it go, then
//! locks the other.

use std::sync::{Arc, Weak};

use tapir_core::Error;
use tapir_core::gate::CallRole;

use super::{CallEntry, CallRecord};
use crate::handles::CallHandle;
use crate::inbox::Inbox;
use crate::sync::lock;

impl CallEntry {
    /// Records that `party` joined the conference `parent`. A consultation call that joins is a
    /// consultation no more: neither end names the other as its partner from then on.
    pub(crate) fn join_conference(parent: &Arc<CallEntry>, party: &Arc<CallEntry>) {
        let previous_last = {
            let mut rec = lock(&parent.rec);
            rec.partner = None;
            let previous = rec.parties.last().cloned();
            rec.parties.push(party.clone());
            rec.role = CallRole::ConferenceParent {
                parties: rec.parties.len() as u32,
            };
            previous
        };
        if let Some(p) = previous_last {
            lock(&p.rec).role = CallRole::ConferenceParty { last_added: false };
        }
        let mut rec = lock(&party.rec);
        rec.role = CallRole::ConferenceParty { last_added: true };
        rec.conference = Some(Arc::downgrade(parent));
        rec.partner = None;
    }

    /// Records that the call left its conference (removed from it).
    pub(crate) fn leave_conference(self: &Arc<Self>) {
        let parent = lock(&self.rec).detach_party();
        if let Some(parent) = parent {
            Self::remove_party(&parent, self);
        }
    }

    /// Takes `party` out of its conference's list (the party's record already let go of it).
    pub(crate) fn remove_party(parent: &Arc<CallEntry>, party: &Arc<CallEntry>) {
        let new_last = {
            let mut rec = lock(&parent.rec);
            rec.parties.retain(|p| !Arc::ptr_eq(p, party));
            rec.role = CallRole::ConferenceParent {
                parties: rec.parties.len() as u32,
            };
            rec.parties.last().cloned()
        };
        if let Some(p) = new_last {
            lock(&p.rec).role = CallRole::ConferenceParty { last_added: true };
        }
    }

    /// Makes `consult` the consultation call of `original` (a call held pending a transfer, or a
    /// conference waiting for a party): its role says so, and each names the other as its partner.
    pub(crate) fn pair_consultation(
        original: &Arc<CallEntry>,
        consult: &Arc<CallEntry>,
        for_conference: bool,
    ) {
        {
            let mut rec = lock(&consult.rec);
            rec.role = CallRole::Consultation { for_conference };
            rec.partner = Some(Arc::downgrade(original));
        }
        lock(&original.rec).partner = Some(Arc::downgrade(consult));
    }

    /// Sets the call's role (a conference set up without a call is a parent with no parties yet).
    pub(crate) fn set_role(&self, role: CallRole) {
        lock(&self.rec).role = role;
    }

    /// Whether the call is a consultation call now.
    pub(crate) fn is_consultation(&self) -> bool {
        matches!(lock(&self.rec).role, CallRole::Consultation { .. })
    }

    /// How many parties the conference whose parent this is has now.
    pub(crate) fn party_count(&self) -> u32 {
        lock(&self.rec).parties.len() as u32
    }

    /// The calls of the conference the call belongs to (or is the parent of), as the session of
    /// `inbox` reaches it through `handle`: the parent first, then the parties in the order they
    /// joined. `NoConference` for a call in none.
    pub(crate) fn conference_members(
        self: &Arc<Self>,
        inbox: &Arc<Inbox>,
        handle: CallHandle,
    ) -> Result<Vec<Arc<CallEntry>>, Error> {
        let parent = {
            let rec = lock(&self.rec);
            rec.holder(inbox, handle).ok_or(Error::InvalidCallHandle)?;
            match (&rec.role, &rec.conference) {
                (CallRole::ConferenceParent { .. }, _) => self.clone(),
                (CallRole::ConferenceParty { .. }, Some(p)) => {
                    p.upgrade().ok_or(Error::NoConference)?
                }
                _ => return Err(Error::NoConference),
            }
        };
        let parties = lock(&parent.rec).parties.to_vec();
        Ok(std::iter::once(parent).chain(parties).collect())
    }
}

impl CallRecord {
    /// Ends a party's membership on its own record: its role is plain again; the conference it was
    /// in, if that is still there, is returned for its list to be updated (with this lock let go).
    pub(super) fn detach_party(&mut self) -> Option<Arc<CallEntry>> {
        self.role = CallRole::Plain;
        self.conference
            .take()
            .and_then(|p: Weak<CallEntry>| p.upgrade())
    }
}
