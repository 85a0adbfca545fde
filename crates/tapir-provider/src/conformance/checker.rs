//! Records a provider's events and holds each to the model as it arrives.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Mutex, PoisonError};

use tapir_core::params::RequestId;
use tapir_core::state::{CallState, initial_state_allowed, transition_allowed};
use tapir_core::{CallLegId, LineId, ProviderId};

use super::finding::EventFlaw;
use crate::{EventHandler, ProviderEvent};

/// The event handler a scenario starts its provider with.
#[derive(Default)]
pub(super) struct Checker {
    inner: Mutex<Seen>,
}

/// What the provider reported so far.
#[derive(Default)]
pub(super) struct Seen {
    pub(super) events: Vec<ProviderEvent>,
    pub(super) model: ReportModel,
    pub(super) flaws: Vec<EventFlaw>,
}

/// A provider's reports held to the call model one at a time: a call announced once, in a state a
/// call may start in, then changed only as the transition table allows, reported on nothing after
/// idle; a provider's failure ends every call. The conformance kit's scenarios check every report
/// with it; a provider's own tests and fuzz targets can too.
#[derive(Debug, Default)]
pub struct ReportModel {
    states: HashMap<CallLegId, CallState>,
}

impl ReportModel {
    /// Each call's state as last reported.
    pub fn state(&self, leg: CallLegId) -> Option<CallState> {
        self.states.get(&leg).copied()
    }

    /// The flaw in `event`, if it has one; a state change is taken only if it has none.
    pub fn check(&mut self, event: &ProviderEvent) -> Option<EventFlaw> {
        match event {
            ProviderEvent::NewCall(c) => match self.states.entry(c.leg) {
                Entry::Occupied(_) => Some(EventFlaw::NewTwice(c.leg)),
                Entry::Vacant(v) => {
                    v.insert(c.state);
                    (!initial_state_allowed(c.state.kind())).then_some(EventFlaw::BadInitialState {
                        leg: c.leg,
                        state: c.state,
                    })
                }
            },
            ProviderEvent::CallState { leg, state } => match self.states.get(leg).copied() {
                None => Some(EventFlaw::BeforeNewCall(*leg)),
                Some(old) if old.is_idle() => Some(EventFlaw::AfterIdle(*leg)),
                Some(old) if !transition_allowed(old.kind(), state.kind()) => {
                    Some(EventFlaw::NotInTable {
                        leg: *leg,
                        from: old,
                        to: *state,
                    })
                }
                Some(_) => {
                    self.states.insert(*leg, *state);
                    None
                }
            },
            ProviderEvent::CallInfo { leg, .. } | ProviderEvent::Digit { leg, .. } => {
                match self.states.get(leg) {
                    None => Some(EventFlaw::BeforeNewCall(*leg)),
                    Some(s) if s.is_idle() => Some(EventFlaw::AfterIdle(*leg)),
                    Some(_) => None,
                }
            }
            // Every call is gone with a failure: reports about them after it are flaws.
            ProviderEvent::Failed { .. } => {
                for state in self.states.values_mut() {
                    *state = CallState::Idle;
                }
                None
            }
            ProviderEvent::Line { .. }
            | ProviderEvent::LineClosed { .. }
            | ProviderEvent::Restored => None,
        }
    }
}

impl EventHandler for Checker {
    fn on_event(&self, _provider: ProviderId, event: ProviderEvent) {
        let mut seen = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(flaw) = seen.model.check(&event) {
            seen.flaws.push(flaw);
        }
        seen.events.push(event);
    }
}

impl Checker {
    pub(super) fn with<T>(&self, f: impl FnOnce(&mut Seen) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The call's state as last reported.
    pub(super) fn state(&self, leg: CallLegId) -> Option<CallState> {
        self.with(|s| s.model.state(leg))
    }

    pub(super) fn event_count(&self) -> usize {
        self.with(|s| s.events.len())
    }

    /// The newest call the provider reported on its own (no request), with its first state.
    pub(super) fn newest_unrequested_call(&self) -> Option<(CallLegId, CallState)> {
        self.with(|s| {
            s.events.iter().rev().find_map(|e| match e {
                ProviderEvent::NewCall(c) if c.request.is_none() => Some((c.leg, c.state)),
                _ => None,
            })
        })
    }

    /// The newest call the provider reported on its own (no request) on `line`.
    pub(super) fn newest_call_on(&self, line: LineId) -> Option<CallLegId> {
        self.with(|s| {
            s.events.iter().rev().find_map(|e| match e {
                ProviderEvent::NewCall(c) if c.request.is_none() && c.line == line => Some(c.leg),
                _ => None,
            })
        })
    }

    /// The calls reported as created by `request`.
    pub(super) fn reported_with(&self, request: RequestId) -> Vec<CallLegId> {
        self.with(|s| {
            s.events
                .iter()
                .filter_map(|e| match e {
                    ProviderEvent::NewCall(c) if c.request == Some(request) => Some(c.leg),
                    _ => None,
                })
                .collect()
        })
    }
}
