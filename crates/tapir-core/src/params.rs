//! Parameters of call-control requests, shared by the application API and the provider interface.

use crate::dial::DialString;
use crate::ids::{AddressId, LineId};
use crate::media::MediaModes;

/// Identifies one engine request that may create a call. The engine gives it to the provider with the
/// request; the provider echoes it when it reports the call the request created, so the engine can bind that call to the requesting application's handle before any
/// other event names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// A request to place a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MakeCall {
    /// The engine's request, to echo in the new-call report.
    pub request: RequestId,
    /// The provider's line.
    pub line: LineId,
    /// The address on the line to call from.
    pub address: AddressId,
    /// Where to call; `None` leaves the call in dial tone for a later dial.
    pub destination: Option<DialString>,
    /// The media mode of the call (exactly one mode).
    pub media_mode: MediaModes,
}

/// How a consultation transfer completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferMode {
    /// The other two parties are connected; both of the transferring party's calls go idle.
    Transfer,
    /// The three parties form a conference.
    Conference,
}

/// Where to park a call.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ParkMode {
    /// In the named orbit.
    Directed(String),
    /// In an orbit the switch chooses and returns.
    NonDirected,
}

/// Which ringing call to pick up.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PickupTarget {
    /// The call ringing at this station (directory number).
    Directed(String),
    /// Any call ringing in this pickup group.
    Group(String),
}

/// When a forwarding rule applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ForwardCondition {
    /// Always.
    Unconditional,
    /// When the address is busy.
    Busy,
    /// When a call is not answered after `rings` rings.
    NoAnswer {
        /// Rings before forwarding.
        rings: u32,
    },
}

/// Forwarding for an address. An empty rule list cancels forwarding.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Forwarding {
    /// Refuse every call (do not disturb). Takes precedence over the rules.
    pub do_not_disturb: bool,
    /// The rules: condition and destination.
    pub rules: Vec<(ForwardCondition, DialString)>,
}

/// How digits are signalled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigitMode {
    /// Dual-tone multi-frequency.
    Dtmf,
    /// Pulse (rotary) dialling.
    Pulse,
}

/// How the switch should complete a call to a busy or unanswered party.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompletionMode {
    /// Wait on the busy line, connecting when it is free.
    CampOn,
    /// Call back when the party is free.
    Callback,
    /// Intrude on the party's call.
    Intrude,
    /// Leave a message.
    Message,
}

/// Where a call created without a call (unpark, pickup, conference from nothing) lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The engine's request, to echo in the new-call report.
    pub request: RequestId,
    /// The provider's line.
    pub line: LineId,
    /// The address.
    pub address: AddressId,
}

wire_names!(DigitMode {
    Dtmf = "dtmf",
    Pulse = "pulse",
});
