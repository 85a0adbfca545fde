//! The engine's side of sessions holding calls: releasing handles (with the orphan policy on log-off
//! and line close), publishing the handles a request created, handing a call to another session and
//! taking up the calls already on a line. The rules themselves are the call's (`call/holding.rs`);
//! this is where they meet the engine's tables and its providers.

use std::sync::Arc;

use tapir_core::{CallLegId, Error};
use tapir_provider::Provider;
use tracing::{Instrument, debug, warn};

use crate::call::{CallEntry, TakenUp};
use crate::handles::{CallHandle, LineHandle};
use crate::inner::Inner;
use crate::line::LineSlot;
use crate::session_state::SessionState;

impl Inner {
    /// Releases one session's handle on a call; forgets the call if it is idle and nobody holds it.
    pub(crate) fn release(
        &self,
        entry: &Arc<CallEntry>,
        session: &SessionState,
        handle: CallHandle,
    ) {
        let follow = entry.release(&session.inbox, &session.calls, handle);
        self.follow_up(entry, follow);
    }

    /// Releases a handle the way log-off and line close do: a call the session solely owns is dropped
    /// first (the orphan policy), then the handle goes.
    pub(crate) async fn release_dropping(
        &self,
        entry: &Arc<CallEntry>,
        session: &SessionState,
        handle: CallHandle,
    ) {
        if entry.sole_live_owner(&session.inbox, handle)
            && let Some(provider) = self.provider(entry.key.0).provider.upgrade()
        {
            if let Err(e) = provider
                .drop_call(entry.key.1)
                .instrument(entry.span())
                .await
            {
                debug!(parent: &entry.span(), error = %e, "drop on release failed");
            }
        }
        self.release(entry, session, handle);
    }

    /// Releases, without dropping, the call handles a session holds through one line open.
    pub(crate) fn release_through_line(&self, session: &SessionState, line: LineHandle) {
        for (handle, entry) in Self::handles_through(session, line) {
            self.release(&entry, session, handle);
        }
    }

    /// The session's call handles held through line open `line`.
    pub(crate) fn handles_through(
        session: &SessionState,
        line: LineHandle,
    ) -> Vec<(CallHandle, Arc<CallEntry>)> {
        let mut all = session.calls.entries();
        all.retain(|(h, entry)| entry.line_of(&session.inbox, *h) == Some(line));
        all
    }

    /// Undoes a creator's handle after its request failed: releases it, and drops the call if that
    /// left it without an owner.
    fn abandon(&self, session: &SessionState, handle: CallHandle) {
        let Some(entry) = session.calls.get(handle) else {
            return;
        };
        self.release(&entry, session, handle);
        if entry.is_orphan() {
            self.drop_orphan(&entry);
        }
    }

    /// Finishes a call-creating request: on success every call the provider reported for it is
    /// published to the session and the handles of `legs` are returned in order; on failure every
    /// bound handle is undone. A leg the provider returned but never reported is a provider error.
    pub(crate) async fn finish_request(
        &self,
        session: &SessionState,
        provider: &Arc<dyn Provider>,
        request: tapir_core::params::RequestId,
        result: Result<Vec<CallLegId>, Error>,
    ) -> Result<Vec<CallHandle>, Error> {
        let bound = self
            .pending
            .remove(&request)
            .map(|(_, p)| p.bound)
            .unwrap_or_default();
        let legs = match result {
            Ok(legs) => legs,
            Err(e) => {
                for (_, handle) in bound {
                    self.abandon(session, handle);
                }
                return Err(e);
            }
        };
        for (_, handle) in &bound {
            let entry = session.calls.get(*handle).ok_or(Error::SessionEnded)?;
            entry.publish(&session.inbox, *handle)?;
        }
        let mut handles = Vec::with_capacity(legs.len());
        for leg in legs {
            match bound.iter().find(|(l, _)| *l == leg) {
                Some((_, h)) => handles.push(*h),
                None => {
                    warn!(%leg, "provider returned a call it never reported; dropping it");
                    let _ = provider.drop_call(leg).await;
                    return Err(Error::OperationFailed {
                        reason: "the provider did not report a call it created".into(),
                    });
                }
            }
        }
        Ok(handles)
    }

    /// Makes `session` an owner of the call (hand-off) through its open `line`.
    pub(crate) fn make_owner(
        &self,
        entry: &Arc<CallEntry>,
        session: &SessionState,
        line: LineHandle,
    ) {
        entry.make_owner(&session.inbox, &session.calls, line, &self.mint);
    }

    /// Gives `session` a monitor handle, through its open `open`, on each live call of `line` it
    /// holds no handle for (TAPI `lineGetNewCalls`): each announced by `NewCall`, then its state,
    /// before any other event names it. Returns the new handles in the order the calls arrived.
    pub(crate) fn take_up_calls(
        &self,
        line: &Arc<LineSlot>,
        session: &SessionState,
        open: LineHandle,
    ) -> Vec<CallHandle> {
        // Collected before any record is locked: a new call is put in the table with its record
        // locked, so locking records while walking the table could deadlock against it.
        let mut entries: Vec<Arc<CallEntry>> = self
            .calls_of(line.provider)
            .iter()
            .filter(|e| Arc::ptr_eq(&e.value().line, line))
            .map(|e| e.value().clone())
            .collect();
        entries.sort_unstable_by_key(|e| e.key.1.0);
        let mut handles = Vec::new();
        for entry in entries {
            match entry.take_up(&session.inbox, &session.calls, open, &self.mint) {
                TakenUp::Handle(h) => handles.push(h),
                TakenUp::Skipped => {}
                TakenUp::SessionEnded => break,
            }
        }
        handles
    }
}
