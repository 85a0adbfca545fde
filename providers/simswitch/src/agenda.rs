//! The switch's agenda: everything it has set for later — a leg's timer, a park timeout, call-completion
//! callbacks — kept in due order. A value like the rest of the switch: entries are set for instants
//! it is given, and come out when it is told the time; one timer in the switch's shell sleeps until
//! the earliest entry (`lib.rs`).
//!
//! One heap instead of one tokio task (and one timer) per timer: setting a timer is a heap push
//! under the switch's lock, which the caller holds anyway. Nothing is ever cancelled in the heap: a
//! leg's timer carries the leg's epoch and does nothing if the leg has changed state since (see
//! `State::run_due`). The switch counts the entries that went stale and prunes once they are half of the
//! heap, so the heap stays within twice what is still due (or a small floor).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tapir_core::CallLegId;
use tokio::time::Instant;

/// What a timer does when it fires, if its leg has not changed state since it was set.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Timer {
    /// The called line rings (ring `count`, from 0).
    Ring { count: u32 },
    /// Caller ID of an outside call arrives.
    CallerId,
    /// An unanswered call is given up.
    NoAnswer,
    /// The outside caller gives up ringing.
    GiveUp,
    /// The outside party answers.
    FarEndAnswers,
    /// The outside party hangs up.
    FarEndHangsUp,
    /// An offered call rang as many times as forward-on-no-answer allows.
    ForwardNoAnswer,
}

/// Work the switch has set for later.
#[derive(Clone, Debug)]
pub(crate) enum Due {
    /// `timer` for `leg`, if the leg is still in the epoch it was set in.
    Leg {
        leg: CallLegId,
        epoch: u64,
        timer: Timer,
    },
    /// The call parked in `orbit` has waited too long, if it is still the same stay.
    ParkTimeout { orbit: String, stay: u64 },
    /// Call-completion requests waiting for `line` may call back now.
    Completions { line: usize },
}

struct Entry {
    at: Instant,
    /// Ties in `at` run in the order they were set.
    seq: u64,
    due: Due,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest entry must come out first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Fewest entries before pruning is considered.
const PRUNE_FLOOR: usize = 1024;

#[derive(Default)]
pub(crate) struct Agenda {
    queue: BinaryHeap<Entry>,
    next_seq: u64,
    /// When the timer wakes next, as last told; `None` when it waits for work.
    wakes_at: Option<Instant>,
    /// An entry earlier than `wakes_at` was added since the timer was last told: it must wake sooner.
    earlier: bool,
    /// Leg timers known to be stale (their leg changed state or ended) still in the queue.
    stale: usize,
}

impl Agenda {
    /// Sets `due` for `at`; entries due at the same instant run in the order they were set.
    pub(crate) fn add(&mut self, at: Instant, due: Due) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Entry { at, seq, due });
        if self.wakes_at.is_none_or(|w| at < w) {
            self.earlier = true;
        }
    }

    /// Whether something was set for earlier than the timer wakes (asked once: it resets).
    pub(crate) fn take_earlier(&mut self) -> bool {
        std::mem::take(&mut self.earlier)
    }

    /// The next entry due at `now` or before, earliest first.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Due> {
        if self.queue.peek().is_some_and(|e| e.at <= now) {
            self.queue.pop().map(|e| e.due)
        } else {
            None
        }
    }

    /// Records when the timer will wake next (the earliest entry left) and returns it.
    pub(crate) fn sleep(&mut self) -> Option<Instant> {
        self.wakes_at = self.queue.peek().map(|e| e.at);
        self.earlier = false;
        self.wakes_at
    }

    /// `n` leg timers in the queue have gone stale.
    pub(crate) fn went_stale(&mut self, n: u32) {
        self.stale += n as usize;
    }

    /// A stale leg timer came out of the queue.
    pub(crate) fn stale_one_gone(&mut self) {
        self.stale = self.stale.saturating_sub(1);
    }

    /// Whether pruning is worth it: at least half of a queue of some size is stale.
    pub(crate) fn wants_pruning(&self) -> bool {
        self.queue.len() >= PRUNE_FLOOR && self.stale * 2 >= self.queue.len()
    }

    /// Drops the entries `live` says are stale (at least half of the queue, so pruning costs O(1) per
    /// entry ever added).
    pub(crate) fn prune(&mut self, live: impl Fn(&Due) -> bool) {
        self.queue.retain(|e| live(&e.due));
        self.stale = 0;
        // A burst of timers (many calls ringing at once) does not keep its memory once it is over.
        if self.queue.capacity() > 4 * self.queue.len().max(PRUNE_FLOOR) {
            self.queue.shrink_to(2 * self.queue.len().max(PRUNE_FLOOR));
        }
    }

    /// Entries in the queue, stale ones included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}
