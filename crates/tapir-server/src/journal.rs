//! A log-on's event journal: every event of the session's stream, numbered, kept (up to a bound) so that
//! a client that reconnects gets every event after the last one it saw.
//!
//! This is the live copy, in memory, that clients of a running log-on read from; every event is also
//! written to the store (`store.rs`), which is what survives a restart.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// Reading from a position that has been trimmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trimmed {
    /// The first sequence number still kept.
    pub first_kept: u64,
}

/// The journal of one log-on.
pub struct Journal {
    inner: Mutex<Inner>,
    /// The last sequence number appended, and whether the stream has ended.
    tail: watch::Sender<(u64, bool)>,
}

struct Inner {
    events: VecDeque<(u64, Arc<str>)>,
    capacity: usize,
    /// Sequence numbers up to this one have been trimmed.
    trimmed_to: u64,
}

impl Journal {
    /// A journal keeping at most `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                capacity: capacity.max(1),
                trimmed_to: 0,
            }),
            tail: watch::Sender::new((0, false)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends events in order (numbers increase), under one lock and with one wake-up for readers.
    pub fn append(&self, events: &[(u64, Arc<str>)]) {
        let Some((last, _)) = events.last() else {
            return;
        };
        {
            let mut j = self.lock();
            for (seq, json) in events {
                if j.events.len() == j.capacity
                    && let Some((old, _)) = j.events.pop_front()
                {
                    j.trimmed_to = old;
                }
                j.events.push_back((*seq, json.clone()));
            }
        }
        let last = *last;
        self.tail.send_modify(|t| t.0 = last);
    }

    /// Marks the end of the stream (the log-on ended).
    pub fn end(&self) {
        self.tail.send_modify(|t| t.1 = true);
    }

    /// The last sequence number appended.
    pub fn last_seq(&self) -> u64 {
        self.tail.borrow().0
    }

    /// Up to `max` events after `after`, or where the journal now starts if events after `after` have
    /// been trimmed.
    pub fn read_after(&self, after: u64, max: usize) -> Result<Vec<(u64, Arc<str>)>, Trimmed> {
        let j = self.lock();
        if after < j.trimmed_to {
            return Err(Trimmed {
                first_kept: j.trimmed_to + 1,
            });
        }
        let start = j.events.partition_point(|(s, _)| *s <= after);
        Ok(j.events.iter().skip(start).take(max).cloned().collect())
    }

    /// Watches the tail: (last sequence number, ended).
    pub fn subscribe(&self) -> watch::Receiver<(u64, bool)> {
        self.tail.subscribe()
    }
}

/// Most events the pump takes from its session at once.
const PUMP_BATCH: usize = 64;

/// Starts the pump of a log-on: its session's events, in order, into its journal and (as log-on
/// `stored`) the store, until the session's stream ends; then the journal is ended too.
pub(crate) fn pump(
    session: tapir::Session,
    journal: Arc<Journal>,
    store: crate::store::Store,
    stored: i64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Every event queued when the pump wakes goes on as one batch: one journal lock and one
        // wake-up of the log-on's event sockets, one entry in the store's queue.
        while let Some(first) = session.next_event().await {
            let mut events = Vec::new();
            let mut next = Some(first);
            while let Some(e) = next {
                let json: Arc<str> = serde_json::to_string(&crate::api::event(&e))
                    .unwrap_or_default()
                    .into();
                events.push((e.seq, json));
                next = if events.len() < PUMP_BATCH {
                    session.try_next_event()
                } else {
                    None
                };
            }
            journal.append(&events);
            store.append(stored, events).await;
        }
        journal.end();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_resume_after_a_position_and_report_trimming_exactly() {
        let j = Journal::new(3);
        j.append(&[(1, "{\"seq\":1}".into())]);
        // A batch that trims as it goes.
        let batch: Vec<(u64, Arc<str>)> = (2..=5)
            .map(|seq| (seq, format!("{{\"seq\":{seq}}}").into()))
            .collect();
        j.append(&batch);
        j.append(&[]);
        // 1 and 2 are gone; 3, 4, 5 are kept.
        assert_eq!(j.read_after(0, 10), Err(Trimmed { first_kept: 3 }));
        assert_eq!(j.read_after(1, 10), Err(Trimmed { first_kept: 3 }));
        let seqs = |r: Vec<(u64, Arc<str>)>| r.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
        assert_eq!(j.read_after(2, 10).map(seqs), Ok(vec![3, 4, 5]));
        assert_eq!(j.read_after(4, 10).map(seqs), Ok(vec![5]));
        assert_eq!(j.read_after(5, 10).map(seqs), Ok(vec![]));
        assert_eq!(j.read_after(2, 2).map(seqs), Ok(vec![3, 4]));
        assert_eq!(j.last_seq(), 5);
    }
}
