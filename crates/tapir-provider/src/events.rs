//! What a provider reports about its switch, and the sink it reports through.

use std::sync::{Arc, Mutex, PoisonError};

use tapir_core::caps::LineCaps;
use tapir_core::info::CallInfo;
use tapir_core::params::{DigitMode, RequestId};
use tapir_core::state::CallState;
use tapir_core::{AddressId, CallId, CallLegId, LineId, ProviderId};

/// A call that appeared on one of the provider's lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCall {
    /// The provider's object for the call on this line. Unique within the provider, never reused.
    pub leg: CallLegId,
    /// The provider's line.
    pub line: LineId,
    /// The address on the line.
    pub address: AddressId,
    /// The first state. Any live state may come first; never `Idle`.
    pub state: CallState,
    /// What is known about the call so far (more may follow as [`ProviderEvent::CallInfo`]).
    ///
    /// Shared: the engine keeps this very value as its record of the call, so a provider that keeps
    /// its own copy as an `Arc` (and changes it by replacing it) holds one copy between them, not two.
    pub info: Arc<CallInfo>,
    /// The engine request that created the call (make call, setup transfer, unpark …), or `None` for a
    /// call the switch created on its own (an incoming call, a recall from park).
    pub request: Option<RequestId>,
}

/// A change on a line or one of its addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineEvent {
    /// The line rings for a call on `address`; `count` starts at 0 for the first ring.
    Ringing {
        /// The address the ring is for.
        address: AddressId,
        /// Which ring this is, from 0.
        count: u32,
    },
    /// The line is usable again.
    InService,
    /// The line cannot be used (device unplugged, trunk down).
    OutOfService {
        /// Why, in words.
        reason: String,
    },
    /// An address's forwarding changed; the new state is readable from the provider.
    ForwardingChanged {
        /// The address.
        address: AddressId,
    },
    /// A call from this line was parked in `orbit`.
    Parked {
        /// The orbit (park address).
        orbit: String,
        /// The parked call.
        call_id: CallId,
    },
    /// The call this line parked in `orbit` left it: retrieved, recalled after the park timeout, or
    /// abandoned by its far end.
    Unparked {
        /// The orbit.
        orbit: String,
        /// The call that was parked.
        call_id: CallId,
    },
    /// The line's capabilities changed.
    CapsChanged(Box<LineCaps>),
    /// The devices the line reaches changed (a phone registered, refreshed to another contact,
    /// unregistered or lapsed); read them with [`Provider::line_devices`](crate::Provider::line_devices).
    DevicesChanged,
}

/// A device a line reaches, as its provider knows it: a registered phone, a fixed contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineDevice {
    /// How the provider reaches it (for SIP, the contact URI).
    pub contact: String,
    /// Where it registered from (the source address of its registration), or where a fixed device is.
    pub source: Option<String>,
    /// Seconds until its registration lapses unless refreshed; `None` for a device that does not
    /// register (a fixed contact).
    pub expires_in: Option<u32>,
}

/// Everything a provider reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderEvent {
    /// A call appeared on a line.
    NewCall(NewCall),
    /// A call changed state.
    CallState {
        /// The call.
        leg: CallLegId,
        /// Its new state.
        state: CallState,
    },
    /// A call's information changed (caller ID arrived late, a transfer changed the connected party).
    /// Carries the whole new information; the engine works out which fields changed.
    CallInfo {
        /// The call.
        leg: CallLegId,
        /// The information as it is now (shared, like [`NewCall::info`]).
        info: Arc<CallInfo>,
    },
    /// A digit was detected on a call whose digits are being monitored.
    Digit {
        /// The call.
        leg: CallLegId,
        /// The digit (`0-9 A-D * #`).
        digit: char,
        /// How it was signalled.
        mode: DigitMode,
    },
    /// Something happened on a line.
    Line {
        /// The provider's line.
        line: LineId,
        /// What happened.
        event: LineEvent,
    },
    /// The provider closed a line on its own; every call on it is gone.
    LineClosed {
        /// The provider's line.
        line: LineId,
    },
    /// The provider lost its switch (the link to the PBX went down, the transport failed) and
    /// every call it had is gone with it. The engine ends each of them (disconnected with
    /// [`TemporaryFailure`](tapir_core::state::DisconnectReason::TemporaryFailure), then idle), tells
    /// their holders, takes every line of the provider out of service with `reason`, and asks the
    /// provider nothing until [`Restored`](Self::Restored): operations on its lines are refused
    /// with `ProviderUnavailable`, and a new call it reports meanwhile is refused. Reports about
    /// calls of before the failure are refused as reports after idle.
    Failed {
        /// Why, in words (shown in the status table and the lines' out-of-service events).
        reason: String,
    },
    /// The provider is back after [`Failed`](Self::Failed): its lines are in service again (those
    /// it has not reported out of service on their own), with no call of before; calls from now on
    /// are reported as new.
    Restored,
}

/// Receives provider events. The engine implements it; so does [`EventLog`] for provider tests.
///
/// `on_event` is called on the provider's own task, in the order the provider reports. It returns quickly
/// and never calls back into the provider, so a provider may report while holding its own locks — and
/// should, so that the order it reports in is the order its switch changed in.
pub trait EventHandler: Send + Sync + 'static {
    /// Handles one event from `provider`.
    fn on_event(&self, provider: ProviderId, event: ProviderEvent);
}

/// The provider's handle for reporting events. Cheap to clone.
#[derive(Clone)]
pub struct EventSink {
    provider: ProviderId,
    handler: Arc<dyn EventHandler>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl EventSink {
    /// A sink that delivers `provider`'s events to `handler`.
    pub fn new(provider: ProviderId, handler: Arc<dyn EventHandler>) -> Self {
        Self { provider, handler }
    }
    /// The provider this sink reports for.
    pub fn provider(&self) -> ProviderId {
        self.provider
    }
    /// Reports an event.
    pub fn send(&self, event: ProviderEvent) {
        self.handler.on_event(self.provider, event);
    }
    /// Reports a new call.
    pub fn new_call(&self, call: NewCall) {
        self.send(ProviderEvent::NewCall(call));
    }
    /// Reports a state change.
    pub fn call_state(&self, leg: CallLegId, state: CallState) {
        self.send(ProviderEvent::CallState { leg, state });
    }
    /// Reports new call information.
    pub fn call_info(&self, leg: CallLegId, info: impl Into<Arc<CallInfo>>) {
        self.send(ProviderEvent::CallInfo {
            leg,
            info: info.into(),
        });
    }
    /// Reports a line event.
    pub fn line(&self, line: LineId, event: LineEvent) {
        self.send(ProviderEvent::Line { line, event });
    }
}

/// An [`EventHandler`] that records every event, for testing a provider without the engine.
///
/// ```
/// use std::sync::Arc;
/// use tapir_core::{CallLegId, ProviderId};
/// use tapir_core::state::CallState;
/// use tapir_provider::{EventLog, EventSink, ProviderEvent};
///
/// let log = Arc::new(EventLog::default());
/// let sink = EventSink::new(ProviderId(0), log.clone());
/// sink.call_state(CallLegId(1), CallState::Idle);
/// assert_eq!(log.take(), vec![ProviderEvent::CallState { leg: CallLegId(1), state: CallState::Idle }]);
/// ```
#[derive(Debug, Default)]
pub struct EventLog {
    events: Mutex<Vec<ProviderEvent>>,
}

impl EventLog {
    /// Takes every event recorded so far.
    pub fn take(&self) -> Vec<ProviderEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(PoisonError::into_inner))
    }
    /// The states reported for `leg` so far, in order (its first state included).
    pub fn states_of(&self, leg: CallLegId) -> Vec<CallState> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|e| match e {
                ProviderEvent::NewCall(c) if c.leg == leg => Some(c.state),
                ProviderEvent::CallState { leg: l, state } if *l == leg => Some(*state),
                _ => None,
            })
            .collect()
    }
    /// The new-call reports so far.
    pub fn new_calls(&self) -> Vec<NewCall> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|e| match e {
                ProviderEvent::NewCall(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }
}

impl EventHandler for EventLog {
    fn on_event(&self, _provider: ProviderId, event: ProviderEvent) {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    }
}
