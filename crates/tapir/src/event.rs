//! What an application session receives, and the bounded, ordered queue it receives it through.

use std::collections::VecDeque;

use tapir_core::info::InfoChange;
use tapir_core::params::DigitMode;
use tapir_core::privilege::CallPrivilege;
use tapir_core::state::CallState;
use tapir_core::{AddressId, CallId};
pub use tapir_provider::LineEvent;

use crate::handles::{CallHandle, LineHandle};

/// One event of a session's stream. Sequence numbers start at 1 and have no gaps; if the application
/// reads too slowly and events had to be discarded, an [`Event::EventsLost`] stands where they were and
/// names exactly which numbers were lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEvent {
    /// The session's sequence number. For [`Event::EventsLost`] it is the first lost number.
    pub seq: u64,
    /// What happened.
    pub event: Event,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The session has a new call handle. Always the first event that names the handle.
    NewCall {
        /// The session's handle to the call.
        call: CallHandle,
        /// The line open through which the session holds it.
        line: LineHandle,
        /// The address on the line.
        address: AddressId,
        /// The provider's call ID, shared by every session.
        call_id: CallId,
        /// What the session may do with it.
        privilege: CallPrivilege,
    },
    /// A call changed state.
    CallState {
        /// The call.
        call: CallHandle,
        /// The new state and its mode.
        state: CallState,
        /// The session's privilege on the call.
        privilege: CallPrivilege,
    },
    /// A call's information changed; read it with [`Session::call_info`](crate::Session::call_info).
    CallInfo {
        /// The call.
        call: CallHandle,
        /// Which fields changed.
        changed: InfoChange,
    },
    /// A digit was detected on a call whose provider is monitoring digits
    /// ([`Session::monitor_digits`](crate::Session::monitor_digits)). Delivered to every session holding
    /// the call.
    Digit {
        /// The call.
        call: CallHandle,
        /// The digit.
        digit: char,
        /// How it was signalled.
        mode: DigitMode,
    },
    /// Something happened on a line the session has open.
    Line {
        /// The line open.
        line: LineHandle,
        /// What happened.
        event: LineEvent,
    },
    /// The line open was closed by the provider; the handle and the call handles held through it are
    /// gone.
    LineClosed {
        /// The line open.
        line: LineHandle,
    },
    /// A provider's row in the status table changed (a line went out of service or came back).
    Status(crate::status::StatusRow),
    /// The session read too slowly: events `first..=last` were discarded. Fetch call status to catch up.
    EventsLost {
        /// The first lost sequence number.
        first: u64,
        /// The last lost sequence number.
        last: u64,
    },
}

impl Event {
    /// The call handle the event names, if any.
    pub fn call(&self) -> Option<CallHandle> {
        match self {
            Self::NewCall { call, .. }
            | Self::CallState { call, .. }
            | Self::CallInfo { call, .. }
            | Self::Digit { call, .. } => Some(*call),
            _ => None,
        }
    }
}

/// A session's bounded event queue. Sequence numbers are assigned here, under the queue's lock, so the
/// order of numbers is the order of delivery.
pub(crate) struct EventQueue {
    events: VecDeque<SessionEvent>,
    capacity: usize,
    next_seq: u64,
    pub(crate) ended: bool,
}

impl EventQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            events: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 1,
            ended: false,
        }
    }

    /// Appends an event. When the queue is full the event is discarded and counted into an
    /// `EventsLost` marker at the back of the queue (one marker for a run of lost events).
    pub(crate) fn push(&mut self, event: Event) {
        if self.ended {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.events.len() < self.capacity {
            self.events.push_back(SessionEvent { seq, event });
            return;
        }
        if let Some(SessionEvent {
            event: Event::EventsLost { last, .. },
            ..
        }) = self.events.back_mut()
        {
            *last = seq;
        } else {
            self.events.push_back(SessionEvent {
                seq,
                event: Event::EventsLost {
                    first: seq,
                    last: seq,
                },
            });
        }
    }

    pub(crate) fn pop(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lc(n: u64) -> Event {
        Event::LineClosed {
            line: LineHandle(n),
        }
    }

    #[test]
    fn overflow_is_reported_with_exact_numbers() {
        let mut q = EventQueue::new(2);
        for n in 0..5 {
            q.push(lc(n));
        }
        assert_eq!(q.pop().map(|e| e.seq), Some(1));
        assert_eq!(q.pop().map(|e| e.seq), Some(2));
        assert_eq!(
            q.pop(),
            Some(SessionEvent {
                seq: 3,
                event: Event::EventsLost { first: 3, last: 5 }
            })
        );
        assert_eq!(q.pop(), None);
        q.push(lc(9));
        assert_eq!(q.pop().map(|e| e.seq), Some(6));
    }

    #[test]
    fn nothing_is_queued_after_the_end() {
        let mut q = EventQueue::new(4);
        q.ended = true;
        q.push(lc(1));
        assert_eq!(q.len(), 0);
    }
}
