//! Call detail records: what the engine writes down about each call when it ends.
//!
//! One record per call *leg* — a call as one line saw it (see [`crate::ids`]). An internal call from
//! 100 to 200 leaves two records, one per line, sharing one [`CallId`]; a transfer, a conference, a park
//! or a pickup leaves records whose call IDs and related call IDs link them into a chain.
//!
//! The engine hands each finished record to a [`CdrSink`]; where it goes from there (a database, a file,
//! a test's vector) is the sink's business. The names used by stores and the network API for the enums
//! here come from one table each ([`Disposition::name`], [`CallOrigin::name`], [`CallReason::name`],
//! [`DisconnectReason::name`]) and parse back with the matching `from_name`.

use std::time::{Duration, SystemTime};

use crate::ids::{AddressId, CallId, LineId};
use crate::info::{CallOrigin, CallReason};
use crate::state::DisconnectReason;

/// One party as a record keeps it: number and name, either possibly unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CdrParty {
    /// The number (canonical `+15550100`, or an extension).
    pub number: Option<String>,
    /// The display name.
    pub name: Option<String>,
}

impl CdrParty {
    /// Whether neither number nor name is known.
    pub fn is_empty(&self) -> bool {
        self.number.is_none() && self.name.is_none()
    }
}

impl From<&crate::info::PartyId> for CdrParty {
    fn from(p: &crate::info::PartyId) -> Self {
        Self {
            number: p.number.as_deref().map(str::to_owned),
            name: p.name.as_deref().map(str::to_owned),
        }
    }
}

/// How a call leg ended, as one word an operator can filter on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// It was connected (answered) at some point and then ended normally.
    Answered,
    /// The far end was busy (or in do-not-disturb).
    Busy,
    /// Nobody answered: the far end gave up, the caller gave up, or the switch's no-answer timer fired.
    NoAnswer,
    /// Refused: the far end rejected the call, or this line's owner did.
    Rejected,
    /// The network could not complete it (bad number, unreachable, congestion, …).
    Failed,
    /// It rang here and was picked up at another station.
    PickedUpElsewhere,
    /// It rang here and the switch forwarded it on (forward on no answer).
    Forwarded,
    /// This line's owner deflected it before answering.
    Redirected,
    /// This line's owner transferred it (blind or consultation); it left this line.
    Transferred,
    /// This line's owner parked it; it left this line. Where it went next is in the records sharing its
    /// call ID (an unpark, a pickup, or a recall with reason [`CallReason::Reminder`] after the timeout).
    Parked,
}

impl Disposition {
    /// Every disposition, in declaration order.
    pub const ALL: [Disposition; 10] = [
        Self::Answered,
        Self::Busy,
        Self::NoAnswer,
        Self::Rejected,
        Self::Failed,
        Self::PickedUpElsewhere,
        Self::Forwarded,
        Self::Redirected,
        Self::Transferred,
        Self::Parked,
    ];

    /// The disposition's name in stores, the API and the CLI (`no_answer`, `picked_up_elsewhere`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Busy => "busy",
            Self::NoAnswer => "no_answer",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::PickedUpElsewhere => "picked_up_elsewhere",
            Self::Forwarded => "forwarded",
            Self::Redirected => "redirected",
            Self::Transferred => "transferred",
            Self::Parked => "parked",
        }
    }

    /// Parses a name made by [`Disposition::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }
}

impl std::fmt::Display for Disposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

wire_names!(CallOrigin {
    Outbound = "outbound",
    Internal = "internal",
    External = "external",
    Inbound = "inbound",
    Conference = "conference",
    Unknown = "unknown",
    Unavailable = "unavailable",
});

wire_names!(CallReason {
    Direct = "direct",
    ForwardBusy = "forward_busy",
    ForwardNoAnswer = "forward_no_answer",
    ForwardUnconditional = "forward_unconditional",
    Pickup = "pickup",
    Unpark = "unpark",
    Redirect = "redirect",
    CallCompletion = "call_completion",
    Transfer = "transfer",
    Reminder = "reminder",
    Unknown = "unknown",
    Unavailable = "unavailable",
    Intrude = "intrude",
    Parked = "parked",
    CampedOn = "camped_on",
    RouteRequest = "route_request",
});

/// What the engine writes down about one call leg when it ends.
///
/// Times: `started` is when the call appeared on the line (offered here, or dialled from here);
/// `answered` when it was first connected; `ended` when it was first disconnected or went idle. The
/// three durations split `ended - started`: `ringing` until the answer (or the end, if unanswered), then
/// `on_hold` and `talking` (time connected, in a conference included, not on hold).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallDetailRecord {
    /// The switch's call identity (shared by the legs of one call, and kept by a parked or picked-up
    /// call on its next line).
    pub call_id: CallId,
    /// Other calls this one is linked to: the call a consultation was made for, the conference it
    /// joined, the other call of a completed transfer. Sorted, without repeats.
    pub related_call_ids: Vec<CallId>,
    /// The engine's line.
    pub line: LineId,
    /// The line's display name.
    pub line_name: String,
    /// The address on the line.
    pub address: AddressId,
    /// Where the call came from.
    pub origin: CallOrigin,
    /// Why it arrived here (direct, transfer, pickup, unpark, forward, …).
    pub reason: CallReason,
    /// Who originated it.
    pub caller: CdrParty,
    /// Who was dialled.
    pub called: CdrParty,
    /// Who was reached (the last connected party).
    pub connected: CdrParty,
    /// Who redirected or forwarded it here, if anyone.
    pub redirecting: CdrParty,
    /// When it appeared on the line.
    pub started: SystemTime,
    /// When it was first connected.
    pub answered: Option<SystemTime>,
    /// When it was first disconnected or went idle.
    pub ended: SystemTime,
    /// From `started` to `answered` (or to `ended`, if never answered).
    pub ringing: Duration,
    /// Connected time after the answer, hold excluded.
    pub talking: Duration,
    /// Time on hold (held, or held pending a transfer or conference).
    pub on_hold: Duration,
    /// How it ended.
    pub disposition: Disposition,
    /// The switch's disconnect reason, when the call passed through the disconnected state.
    pub disconnect: Option<DisconnectReason>,
    /// The applications that owned it, in the order they became owners.
    pub owners: Vec<String>,
}

impl CallDetailRecord {
    /// The whole time the call existed on the line (`ended - started`).
    pub fn duration(&self) -> Duration {
        self.ringing + self.talking + self.on_hold
    }
}

/// Where the engine hands finished records. Called on the thread that ended the call, with no engine
/// lock held; it must return quickly (queue the record, do not write it here).
pub trait CdrSink: Send + Sync + 'static {
    /// Takes one finished record.
    fn record(&self, record: CallDetailRecord);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_names_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for d in Disposition::ALL {
            assert_eq!(Disposition::from_name(d.name()), Some(d));
            assert!(seen.insert(d.name()));
        }
        for (v, n) in CallOrigin::VALUES.iter().zip(CallOrigin::NAMES) {
            assert_eq!(CallOrigin::from_name(n), Some(*v));
            assert_eq!(v.name(), *n);
        }
        for (v, n) in CallReason::VALUES.iter().zip(CallReason::NAMES) {
            assert_eq!(CallReason::from_name(n), Some(*v));
            assert_eq!(v.name(), *n);
        }
        for (v, n) in DisconnectReason::VALUES.iter().zip(DisconnectReason::NAMES) {
            assert_eq!(DisconnectReason::from_name(n), Some(*v));
            assert_eq!(v.name(), *n);
        }
        assert_eq!(Disposition::from_name("Answered"), None);
        assert_eq!(CallReason::from_name(""), None);
    }
}
