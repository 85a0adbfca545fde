//! How provider events reach sessions: a new call is entered in the engine's table and given its
//! holders (its owner by the route table, a monitor handle for every monitoring opener); state,
//! information and digits go to the call's record, which delivers them; line events go to the line's
//! openers and keep the status table.
//!
//! Reports the state table forbids, for calls or lines the engine does not know, or repeated, are
//! logged and ignored: they change nothing.

use std::sync::Arc;

use tapir_core::info::CallInfo;
use tapir_core::privilege::CallPrivilege;
use tapir_core::state::{CallState, initial_state_allowed};
use tapir_core::{CallLegId, ProviderId};
use tapir_provider::{EventHandler, LineEvent, NewCall, ProviderEvent};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::call::{CallEntry, NewHolder};
use crate::event::Event;
use crate::inner::Inner;
use crate::line::LineSlot;
use crate::routing::{Routed, route};
use crate::sync::{lock, read};

/// Receives provider events on the providers' tasks and hands them to the engine. It holds the
/// engine's state strongly (which does not own the providers, so there is no cycle).
pub(crate) struct Dispatcher {
    pub(crate) engine: Arc<Inner>,
}

impl EventHandler for Dispatcher {
    fn on_event(&self, provider: ProviderId, event: ProviderEvent) {
        let engine = &self.engine;
        match event {
            ProviderEvent::NewCall(call) => engine.on_new_call(provider, call),
            ProviderEvent::CallState { leg, state } => engine.on_call_state(provider, leg, state),
            ProviderEvent::CallInfo { leg, info } => engine.on_call_info(provider, leg, info),
            ProviderEvent::Digit { leg, digit, mode } => {
                if let Some(entry) = engine.entry(provider, leg) {
                    entry.deliver_digit(digit, mode);
                }
            }
            ProviderEvent::Line { line, event } => engine.on_line_event(provider, line, event),
            ProviderEvent::LineClosed { line } => {
                if let Some(slot) = engine.provider_line(provider, line).cloned() {
                    engine.on_line_closed(&slot);
                }
            }
        }
    }
}

impl Inner {
    /// The call behind a provider's leg, if the engine tracks it.
    fn entry(&self, provider: ProviderId, leg: CallLegId) -> Option<Arc<CallEntry>> {
        let found = self.calls_of(provider).get(&leg).map(|e| e.clone());
        if found.is_none() {
            debug!(%provider, %leg, "event for a call the engine does not track; ignored");
        }
        found
    }

    fn on_new_call(&self, provider: ProviderId, call: NewCall) {
        let Some(line) = self.provider_line(provider, call.line).cloned() else {
            warn!(%provider, line = %call.line, "new call on an unknown line; ignored");
            return;
        };
        if line.address(call.address).is_err() || !initial_state_allowed(call.state.kind()) {
            warn!(%provider, leg = %call.leg, state = ?call.state, "new call with a bad address or first state; ignored");
            return;
        }
        if self.calls_of(provider).contains_key(&call.leg) {
            warn!(%provider, leg = %call.leg, "new call reported twice; ignored");
            return;
        }
        // A call made at a session's request: bound to a fresh handle of that session, held back
        // until the request returns.
        let creator = call.request.and_then(|r| {
            let mut p = self.pending.get_mut(&r)?;
            let handle = p.session.calls.mint(&self.mint);
            p.bound.push((call.leg, handle));
            Some((p.session.clone(), p.line, handle))
        });
        let openers = self
            .opens(&line)
            .map(|o| lock(&o.openers).clone())
            .unwrap_or_default();
        let mut owners = Vec::with_capacity(openers.len() + 1);
        let mut reject = None;
        let made = creator.is_some();
        if let Some((session, line, handle)) = creator {
            owners.push((session, line, handle, false));
        } else {
            match route(&read(&self.routes), &openers, &call.info) {
                Routed::Owner(o) => {
                    let handle = o.session.calls.mint(&self.mint);
                    owners.push((o.session.clone(), o.handle, handle, true));
                }
                Routed::Unowned => {}
                Routed::Reject(class) => reject = Some(class),
            }
        }
        let owner_count = owners.len();
        let mut sessions = owners;
        for o in openers.iter().filter(|o| o.privileges.monitors()) {
            if sessions.iter().any(|(s, ..)| Arc::ptr_eq(s, &o.session)) {
                continue;
            }
            let handle = o.session.calls.mint(&self.mint);
            sessions.push((o.session.clone(), o.handle, handle, true));
        }
        let holders = sessions
            .iter()
            .enumerate()
            .map(|(i, (session, line, handle, published))| NewHolder {
                inbox: session.inbox.clone(),
                index: &session.calls,
                handle: *handle,
                line: *line,
                privilege: if i < owner_count {
                    CallPrivilege::Owner
                } else {
                    CallPrivilege::Monitor
                },
                published: *published,
            })
            .collect();

        let entry = CallEntry::new(
            (provider, call.leg),
            line,
            call.address,
            call.state,
            call.info,
            self.keeps_records(),
            Instant::now,
        );
        let follow = {
            let _enter = entry.enter();
            entry.admit(
                || {
                    self.calls_of(provider).insert(call.leg, entry.clone());
                },
                holders,
                made,
            )
        };
        self.follow_up(&entry, follow);
        if let Some(class) = reject {
            self.reject_unrouted(&entry, class);
        }
    }

    /// Rejects an offered call that no route takes, saying why in the log.
    fn reject_unrouted(&self, entry: &CallEntry, class: String) {
        let Some(provider) = self.provider(entry.key.0).provider.upgrade() else {
            return;
        };
        let leg = entry.key.1;
        self.spawn_for(entry, async move {
            warn!(
                class,
                "no route for the call's class and the default route rejects: call rejected"
            );
            if let Err(e) = provider.reject(leg).await {
                warn!(error = %e, "rejecting an unrouted call failed");
            }
        });
    }

    fn on_call_state(&self, provider: ProviderId, leg: CallLegId, state: CallState) {
        let Some(entry) = self.entry(provider, leg) else {
            return;
        };
        let _enter = entry.enter();
        if let Some(follow) = entry.apply_state(state, Instant::now, &self.clock) {
            self.follow_up(&entry, follow);
        }
    }

    fn on_call_info(&self, provider: ProviderId, leg: CallLegId, info: Arc<CallInfo>) {
        if let Some(entry) = self.entry(provider, leg) {
            entry.apply_info(info);
        }
    }

    fn on_line_event(&self, provider: ProviderId, line: tapir_core::LineId, event: LineEvent) {
        // The status table first: a provider may report a line out of service while it starts,
        // before the engine knows its lines.
        let out = match &event {
            LineEvent::OutOfService { reason } => Some(Some(reason.clone())),
            LineEvent::InService => Some(None),
            _ => None,
        };
        if let Some(out) = out {
            let p = self.provider(provider);
            if lock(&p.status).line(line, out) {
                self.announce_status(p);
            }
        }
        let Some(slot) = self.provider_line(provider, line) else {
            warn!(%provider, %line, "line event for an unknown line; ignored");
            return;
        };
        let openers = self
            .opens(slot)
            .map(|o| lock(&o.openers).clone())
            .unwrap_or_default();
        for o in openers {
            o.session.inbox.push(Event::Line {
                line: o.handle,
                event: event.clone(),
            });
        }
    }

    fn on_line_closed(&self, line: &Arc<LineSlot>) {
        let Some(opens) = self.opens(line) else {
            return;
        };
        let openers = std::mem::take(&mut *lock(&opens.openers));
        for o in openers {
            o.session.lines.remove(&o.handle);
            self.release_through_line(&o.session, o.handle);
            o.session.inbox.push(Event::LineClosed { line: o.handle });
        }
    }
}
