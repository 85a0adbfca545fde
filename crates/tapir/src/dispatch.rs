//! How provider events reach sessions: a new call is entered in the engine's table and given its
//! holders (its owner by the route table, a monitor handle for every monitoring opener); state,
//! information and digits go to the call's record, which delivers them; line events go to the line's
//! openers and keep the status table.
//!
//! A provider that reports it has failed has its calls ended by the engine and its lines taken out
//! of service until it reports it is restored.
//!
//! Reports the state table forbids, for calls or lines the engine does not know, repeated, or with
//! text too long are refused ([`Refusal`]): logged, counted in the provider's status row, never
//! applied and never delivered. A call reported for a request that has already ended is dropped at
//! the provider.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tapir_core::dial::is_dtmf_digit;
use tapir_core::info::CallInfo;
use tapir_core::privilege::CallPrivilege;
use tapir_core::state::{CallState, DisconnectReason, initial_state_allowed};
use tapir_core::{CallLegId, ProviderId};
use tapir_provider::{EventHandler, LineEvent, NewCall, ProviderEvent};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::call::{CallEntry, NewHolder};
use crate::event::Event;
use crate::inner::Inner;
use crate::line::LineSlot;
use crate::routing::{Routed, route};
use crate::status::{Refusal, ServiceState};
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
                let delivered = if is_dtmf_digit(digit) {
                    engine
                        .entry(provider, leg)
                        .and_then(|entry| entry.deliver_digit(digit, mode))
                } else {
                    Err(Refusal::BadDigit)
                };
                engine.refused(provider, delivered);
            }
            ProviderEvent::Line { line, event } => engine.on_line_event(provider, line, event),
            ProviderEvent::LineClosed { line } => match engine.provider_line(provider, line) {
                Some(slot) => {
                    let slot = slot.clone();
                    engine.on_line_closed(&slot);
                }
                None => engine.refused(provider, Err(Refusal::UnknownLine)),
            },
            ProviderEvent::Failed { reason } => engine.on_failed(provider, reason),
            ProviderEvent::Restored => engine.on_restored(provider),
        }
    }
}

impl Inner {
    /// Counts and logs a refused report of `provider`'s (an `Err`); nothing for an `Ok`. The log
    /// says so at the first refusal and then at every power of two, so a provider that reports
    /// nothing but nonsense does not flood it.
    #[inline]
    fn refused(&self, provider: ProviderId, outcome: Result<(), Refusal>) {
        if let Err(why) = outcome {
            self.refuse(provider, why);
        }
    }

    #[cold]
    fn refuse(&self, provider: ProviderId, why: Refusal) {
        let p = self.provider(provider);
        let count = {
            let mut status = lock(&p.status);
            status.refused_reports += 1;
            status.refused_reports
        };
        if count.is_power_of_two() {
            warn!(provider = %p.name, count, "refused {}", why.text());
        } else {
            debug!(provider = %p.name, count, "refused {}", why.text());
        }
    }

    /// The call behind a provider's leg, if the engine tracks it.
    fn entry(&self, provider: ProviderId, leg: CallLegId) -> Result<Arc<CallEntry>, Refusal> {
        self.calls_of(provider)
            .get(&leg)
            .map(|e| e.clone())
            .ok_or(Refusal::UnknownCall)
    }

    fn on_new_call(&self, provider: ProviderId, call: NewCall) {
        let admitted = self.admit_new_call(provider, call);
        self.refused(provider, admitted);
    }

    fn admit_new_call(&self, provider: ProviderId, call: NewCall) -> Result<(), Refusal> {
        if self.provider(provider).down.load(Ordering::Acquire) {
            return Err(Refusal::WhileFailed);
        }
        let line = self
            .provider_line(provider, call.line)
            .cloned()
            .ok_or(Refusal::UnknownLine)?;
        if line.address(call.address).is_err() || !initial_state_allowed(call.state.kind()) {
            return Err(Refusal::BadNewCall);
        }
        if !call.info.text_fits() {
            return Err(Refusal::Oversized);
        }
        if self.calls_of(provider).contains_key(&call.leg) {
            return Err(Refusal::NewCallTwice);
        }
        // A call made at a session's request: bound to a fresh handle of that session, held back
        // until the request returns. One reported for a request that has ended (it failed, or its
        // provider took too long) has nobody to go to: the provider is told to drop it.
        let creator = match call.request {
            Some(r) => match self.pending.get_mut(&r) {
                Some(mut p) => {
                    let handle = p.session.calls.mint(&self.mint);
                    p.bound.push((call.leg, handle));
                    Some((p.session.clone(), p.line, handle))
                }
                None => {
                    self.drop_at_provider(provider, call.leg);
                    return Err(Refusal::EndedRequest);
                }
            },
            None => None,
        };
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
        Ok(())
    }

    /// Asks `provider` to drop a call the engine does not take.
    fn drop_at_provider(&self, provider: ProviderId, leg: CallLegId) {
        let Some(p) = self.provider(provider).provider.upgrade() else {
            return;
        };
        self.spawn(async move {
            if let Err(e) = p.drop_call(leg).await {
                debug!(%leg, error = %e, "dropping a call nobody asked for failed");
            }
        });
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
        let applied = self.entry(provider, leg).and_then(|entry| {
            let _enter = entry.enter();
            if let Some(follow) = entry.apply_state(state, Instant::now, &self.clock)? {
                self.follow_up(&entry, follow);
            }
            Ok(())
        });
        self.refused(provider, applied);
    }

    fn on_call_info(&self, provider: ProviderId, leg: CallLegId, info: Arc<CallInfo>) {
        let applied = if info.text_fits() {
            self.entry(provider, leg)
                .and_then(|entry| entry.apply_info(info))
        } else {
            Err(Refusal::Oversized)
        };
        self.refused(provider, applied);
    }

    fn on_line_event(&self, provider: ProviderId, line: tapir_core::LineId, event: LineEvent) {
        // The status table first: a provider may report a line out of service while it starts,
        // before the engine knows its lines. Once it has started, its lines are the ones it
        // described.
        let out = match &event {
            LineEvent::OutOfService { reason } => Some(Some(reason.clone())),
            LineEvent::InService => Some(None),
            _ => None,
        };
        let p = self.provider(provider);
        let changed = {
            let mut status = lock(&p.status);
            if status.state != ServiceState::Starting && line.0 as usize >= status.lines {
                drop(status);
                self.refused(provider, Err(Refusal::UnknownLine));
                return;
            }
            out.is_some_and(|out| status.line(line, out))
        };
        if changed {
            self.announce_status(p);
        }
        // Not wired yet while the engine is still starting its other providers.
        if let Some(slot) = self.provider_line(provider, line) {
            self.tell_line(slot, &event);
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

    /// The provider lost its switch: from now on its guard refuses operations, every session is
    /// told its row, every opener of its lines that they are out of service, and every holder of
    /// its calls that they were disconnected (a temporary failure) and are idle. A repeated report
    /// changes nothing.
    fn on_failed(&self, provider: ProviderId, reason: String) {
        let p = self.provider(provider);
        if !lock(&p.status).set_down(Some(reason.clone())) {
            return;
        }
        p.down.store(true, Ordering::Release);
        warn!(provider = %p.name, %reason, "the provider failed: its calls are ended, its lines out of service");
        self.announce_status(p);
        self.tell_openers(provider, |_| {
            Some(LineEvent::OutOfService {
                reason: reason.clone(),
            })
        });
        let calls: Vec<Arc<CallEntry>> = self
            .calls_of(provider)
            .iter()
            .map(|e| e.value().clone())
            .collect();
        for entry in calls {
            let _enter = entry.enter();
            let ended = [
                CallState::Disconnected(DisconnectReason::TemporaryFailure),
                CallState::Idle,
            ];
            for state in ended {
                // A call already disconnected (or idle) skips what it has passed.
                if let Ok(Some(follow)) = entry.apply_state(state, Instant::now, &self.clock) {
                    self.follow_up(&entry, follow);
                }
            }
        }
    }

    /// The provider is back: its guard lets operations through again, every session is told its
    /// row, and the openers of each line it has not reported out of service on its own that the
    /// line is in service.
    fn on_restored(&self, provider: ProviderId) {
        let p = self.provider(provider);
        if !lock(&p.status).set_down(None) {
            return;
        }
        p.down.store(false, Ordering::Release);
        info!(provider = %p.name, "the provider is restored");
        self.announce_status(p);
        self.tell_openers(provider, |slot| {
            let out = lock(&p.status).out_of_service.contains_key(&slot.local);
            (!out).then_some(LineEvent::InService)
        });
    }

    /// Sends the event `what` gives for each line of `provider` to the line's openers.
    fn tell_openers(&self, provider: ProviderId, what: impl Fn(&LineSlot) -> Option<LineEvent>) {
        for slot in self.lines().iter().filter(|l| l.provider == provider) {
            if let Some(event) = what(slot) {
                self.tell_line(slot, &event);
            }
        }
    }

    /// Sends `event` to every opener of `slot`.
    fn tell_line(&self, slot: &LineSlot, event: &LineEvent) {
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
}
