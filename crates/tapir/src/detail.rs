//! What the engine notes about a call while it lives, to write its detail record when it ends.
//!
//! Kept inside the call's record (so under the call's lock, in the call's one order) and only when the
//! engine was given a [`CdrSink`](tapir_core::cdr::CdrSink). Times come from tokio's clock, so tests
//! under a paused clock get exact durations; they are turned into wall-clock times against one anchor
//! taken when the engine was built.

use std::time::{Duration, SystemTime};

use tapir_core::cdr::{CallDetailRecord, CdrParty, Disposition};
use tapir_core::info::CallInfo;
use tapir_core::state::{CallState, DisconnectReason};
use tapir_core::{AddressId, CallId, LineId};
use tokio::time::Instant;

/// Wall-clock time for tokio instants: one pair taken when the engine was built.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    wall: SystemTime,
    at: Instant,
}

impl Clock {
    /// The anchor: the wall clock and tokio's clock read together now.
    pub(crate) fn now() -> Self {
        Self {
            wall: SystemTime::now(),
            at: Instant::now(),
        }
    }

    fn wall(&self, t: Instant) -> SystemTime {
        self.wall + t.saturating_duration_since(self.at)
    }
}

/// A call's notes for its detail record.
#[derive(Debug)]
pub(crate) struct Detail {
    started: Instant,
    answered: Option<Instant>,
    ended: Option<Instant>,
    held_since: Option<Instant>,
    on_hold: Duration,
    disconnect: Option<DisconnectReason>,
    saw_busy: bool,
    saw_special_info: bool,
    /// Set by an engine operation that takes the call off this line (transfer, park, redirect, reject)
    /// before it is handed to the provider, and cleared if the provider refuses.
    pub(crate) intent: Option<Disposition>,
    related: Vec<CallId>,
    owners: Vec<String>,
    written: bool,
}

impl Detail {
    /// The notes of a call that appeared at `now` in state `first`.
    pub(crate) fn new(first: CallState, info: &CallInfo, now: Instant) -> Self {
        let mut d = Self {
            started: now,
            answered: None,
            ended: None,
            held_since: None,
            on_hold: Duration::ZERO,
            disconnect: None,
            saw_busy: false,
            saw_special_info: false,
            intent: None,
            related: Vec::new(),
            owners: Vec::new(),
            written: false,
        };
        d.note_info(info);
        d.note_state(now, CallState::Unknown, first);
        d
    }

    /// Notes a state change from `old` to `new` at `now`.
    pub(crate) fn changed(&mut self, now: Instant, old: CallState, new: CallState) {
        self.note_state(now, old, new);
    }

    fn note_state(&mut self, now: Instant, old: CallState, new: CallState) {
        if self.ended.is_some() {
            return;
        }
        let (was_held, held) = (old.kind().is_held(), new.kind().is_held());
        if was_held && !held {
            if let Some(since) = self.held_since.take() {
                self.on_hold += now.saturating_duration_since(since);
            }
        } else if held && !was_held {
            self.held_since = Some(now);
        }
        match new {
            CallState::Connected(_) | CallState::Conferenced if self.answered.is_none() => {
                self.answered = Some(now);
            }
            CallState::Busy(_) => self.saw_busy = true,
            CallState::SpecialInfo(_) => self.saw_special_info = true,
            CallState::Disconnected(reason) => {
                self.disconnect = Some(reason);
                self.end(now);
            }
            CallState::Idle => self.end(now),
            _ => {}
        }
    }

    fn end(&mut self, now: Instant) {
        if let Some(since) = self.held_since.take() {
            self.on_hold += now.saturating_duration_since(since);
        }
        self.ended = Some(now);
    }

    /// Notes the call's information (a related call ID, as it arrives).
    pub(crate) fn note_info(&mut self, info: &CallInfo) {
        if let Some(id) = info.related_call_id {
            self.relate(id);
        }
    }

    /// Links another call to this one.
    pub(crate) fn relate(&mut self, id: CallId) {
        if let Err(at) = self.related.binary_search(&id) {
            self.related.insert(at, id);
        }
    }

    /// Notes one application as an owner.
    pub(crate) fn note_owner(&mut self, app: &str) {
        if !self.owners.iter().any(|o| o == app) {
            self.owners.push(app.to_owned());
        }
    }

    fn disposition(&self) -> Disposition {
        use DisconnectReason as R;
        if let Some(d) = self.intent {
            return d;
        }
        match self.disconnect {
            Some(R::PickedUp) => return Disposition::PickedUpElsewhere,
            Some(R::Forwarded) => return Disposition::Forwarded,
            _ => {}
        }
        if self.answered.is_some() {
            return Disposition::Answered;
        }
        match self.disconnect {
            Some(R::Busy) => Disposition::Busy,
            _ if self.saw_busy => Disposition::Busy,
            Some(R::Reject | R::DoNotDisturb | R::Blocked) => Disposition::Rejected,
            Some(
                R::BadAddress
                | R::Unreachable
                | R::Congestion
                | R::Incompatible
                | R::Unavailable
                | R::NoDialTone
                | R::NumberChanged
                | R::OutOfOrder
                | R::TemporaryFailure
                | R::QosUnavailable,
            ) => Disposition::Failed,
            _ if self.saw_special_info => Disposition::Failed,
            _ => Disposition::NoAnswer,
        }
    }

    /// The record, once the call has ended (call it when the call goes idle, having noted its owners);
    /// `None` before that, or if it was already written.
    pub(crate) fn finish(&mut self, what: Finished<'_>) -> Option<CallDetailRecord> {
        let ended = self.ended?;
        if self.written {
            return None;
        }
        self.written = true;
        let ringing = self.answered.unwrap_or(ended) - self.started;
        let talking = self
            .answered
            .map(|a| {
                ended
                    .saturating_duration_since(a)
                    .saturating_sub(self.on_hold)
            })
            .unwrap_or_default();
        let info = what.info;
        let mut related = std::mem::take(&mut self.related);
        related.retain(|id| *id != info.call_id);
        Some(CallDetailRecord {
            call_id: info.call_id,
            related_call_ids: related,
            line: what.line,
            line_name: what.line_name.to_owned(),
            address: what.address,
            origin: info.origin,
            reason: info.reason,
            caller: CdrParty::from(&info.caller),
            called: CdrParty::from(&info.called),
            connected: CdrParty::from(&info.connected),
            redirecting: CdrParty::from(info.redirecting()),
            started: what.clock.wall(self.started),
            answered: self.answered.map(|a| what.clock.wall(a)),
            ended: what.clock.wall(ended),
            ringing,
            talking,
            on_hold: if self.answered.is_some() {
                self.on_hold
            } else {
                Duration::ZERO
            },
            disposition: self.disposition(),
            disconnect: self.disconnect,
            owners: std::mem::take(&mut self.owners),
        })
    }
}

/// What [`Detail::finish`] needs from the call besides its notes.
pub(crate) struct Finished<'a> {
    pub(crate) clock: &'a Clock,
    pub(crate) info: &'a CallInfo,
    pub(crate) line: LineId,
    pub(crate) line_name: &'a str,
    pub(crate) address: AddressId,
}
