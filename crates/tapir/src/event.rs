//! What an application session receives, and the bounded, ordered queue it receives it through.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::Notify;

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
    /// A provider's row in the status table changed (a line went out of service or came back). Boxed:
    /// it is rare and large, and every event is the size of the largest kind.
    Status(Box<crate::status::StatusRow>),
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

/// A session's event queues: one bounded queue per reader (a shared session has one reader per
/// application using it; an individual session has one). Sequence numbers are assigned here, under the
/// queues' lock, once per event for every reader, so the order of numbers is the order of delivery and a
/// number means the same event to every reader.
pub(crate) struct EventQueue {
    readers: Vec<ReaderQueue>,
    capacity: usize,
    next_seq: u64,
    pub(crate) ended: bool,
}

/// The queue memory a reader keeps once it has caught up (events); more is given back.
const KEEP_CAPACITY: usize = 1024;

/// One reader's queue, and how to wake it.
struct ReaderQueue {
    reader: u64,
    events: VecDeque<SessionEvent>,
    notify: Arc<Notify>,
}

impl ReaderQueue {
    /// Appends an event. When the queue is full the event is discarded and counted into an
    /// `EventsLost` marker at the back of the queue (one marker for a run of lost events).
    fn push(&mut self, capacity: usize, seq: u64, event: Event) {
        if self.events.len() < capacity {
            self.events.push_back(SessionEvent { seq, event });
        } else if let Some(SessionEvent {
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
        self.notify.notify_one();
    }
}

impl EventQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            readers: Vec::new(),
            capacity: capacity.max(1),
            next_seq: 1,
            ended: false,
        }
    }

    /// Adds a reader; it receives the events pushed from now on.
    pub(crate) fn add_reader(&mut self, reader: u64, notify: Arc<Notify>) {
        self.readers.push(ReaderQueue {
            reader,
            events: VecDeque::new(),
            notify,
        });
    }

    /// Removes a reader; returns how many remain.
    pub(crate) fn remove_reader(&mut self, reader: u64) -> usize {
        self.readers.retain(|r| r.reader != reader);
        self.readers.len()
    }

    /// Appends an event for every reader and wakes them.
    pub(crate) fn push(&mut self, event: Event) {
        if self.ended {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let capacity = self.capacity;
        if let Some((last, others)) = self.readers.split_last_mut() {
            for r in others {
                r.push(capacity, seq, event.clone());
            }
            last.push(capacity, seq, event);
        }
    }

    /// Marks the end of the stream and wakes every reader, so that waiting reads see it.
    pub(crate) fn end(&mut self) {
        self.ended = true;
        for r in &self.readers {
            r.notify.notify_waiters();
            r.notify.notify_one();
        }
    }

    /// Whether the stream goes on for `reader`: the session has not ended and the reader has not left.
    pub(crate) fn open_for(&self, reader: u64) -> bool {
        !self.ended && self.readers.iter().any(|r| r.reader == reader)
    }

    pub(crate) fn pop(&mut self, reader: u64) -> Option<SessionEvent> {
        let events = &mut self.readers.iter_mut().find(|r| r.reader == reader)?.events;
        let event = events.pop_front();
        // A backlog that has been read gives its memory back: a burst must not keep a reader's queue
        // at its largest size for the rest of the session.
        if events.is_empty() && events.capacity() > KEEP_CAPACITY {
            events.shrink_to(KEEP_CAPACITY);
        }
        event
    }

    /// Events waiting across every reader, and the longest single backlog.
    pub(crate) fn depth(&self) -> (usize, usize) {
        self.readers.iter().fold((0, 0), |(total, max), r| {
            (total + r.events.len(), max.max(r.events.len()))
        })
    }

    #[cfg(test)]
    pub(crate) fn len(&self, reader: u64) -> usize {
        self.readers
            .iter()
            .find(|r| r.reader == reader)
            .map_or(0, |r| r.events.len())
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

    fn queue(capacity: usize, readers: &[u64]) -> EventQueue {
        let mut q = EventQueue::new(capacity);
        for r in readers {
            q.add_reader(*r, Arc::new(Notify::new()));
        }
        q
    }

    #[test]
    fn a_read_backlog_gives_its_memory_back() {
        let mut q = queue(1 << 20, &[0]);
        for n in 0..(KEEP_CAPACITY as u64 * 8) {
            q.push(lc(n));
        }
        let grown = q.readers[0].events.capacity();
        assert!(grown >= KEEP_CAPACITY * 8);
        while q.pop(0).is_some() {}
        assert!(q.readers[0].events.capacity() <= KEEP_CAPACITY);
        // The queue still works after giving memory back, numbering on.
        q.push(lc(0));
        assert_eq!(q.pop(0).map(|e| e.seq), Some(KEEP_CAPACITY as u64 * 8 + 1));
    }

    #[test]
    fn overflow_is_reported_with_exact_numbers() {
        let mut q = queue(2, &[0]);
        for n in 0..5 {
            q.push(lc(n));
        }
        assert_eq!(q.pop(0).map(|e| e.seq), Some(1));
        assert_eq!(q.pop(0).map(|e| e.seq), Some(2));
        assert_eq!(
            q.pop(0),
            Some(SessionEvent {
                seq: 3,
                event: Event::EventsLost { first: 3, last: 5 }
            })
        );
        assert_eq!(q.pop(0), None);
        q.push(lc(9));
        assert_eq!(q.pop(0).map(|e| e.seq), Some(6));
    }

    #[test]
    fn nothing_is_queued_after_the_end() {
        let mut q = queue(4, &[0]);
        q.end();
        q.push(lc(1));
        assert_eq!(q.len(0), 0);
    }

    #[test]
    fn every_reader_gets_every_event_with_the_same_number_and_its_own_backlog() {
        let mut q = queue(2, &[1, 2]);
        q.push(lc(10));
        assert_eq!(q.pop(1).map(|e| e.seq), Some(1));
        q.push(lc(11));
        q.push(lc(12));
        // Reader 1 kept up; reader 2 is one event over its capacity.
        assert_eq!(q.pop(1).map(|e| e.event), Some(lc(11)));
        assert_eq!(q.pop(1).map(|e| e.seq), Some(3));
        assert_eq!(q.pop(2).map(|e| e.event), Some(lc(10)));
        assert_eq!(q.pop(2).map(|e| e.event), Some(lc(11)));
        assert_eq!(
            q.pop(2).map(|e| e.event),
            Some(Event::EventsLost { first: 3, last: 3 })
        );
        // A reader that joins later sees only what comes after it joined.
        q.add_reader(3, Arc::new(Notify::new()));
        assert_eq!(q.remove_reader(1), 2);
        q.push(lc(13));
        assert_eq!(q.pop(3).map(|e| e.seq), Some(4));
        assert_eq!(q.pop(1), None);
    }
}
