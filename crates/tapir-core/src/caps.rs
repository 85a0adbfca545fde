//! Capabilities a provider advertises for its lines and addresses.
//!
//! Capabilities say what a provider can **ever** do. An operation whose capability is missing is
//! refused with [`Error::OperationUnavailable`](crate::Error::OperationUnavailable) in every state;
//! what is possible **now** is the feature table in [`gate`](crate::gate).

use crate::media::MediaModes;
pub use crate::ops::AddressFeatureSet;
use crate::ops::{AddressOperation, CallOperation, FeatureSet};

/// Capabilities of one line device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineCaps {
    /// A display name for the line, e.g. `"Extension 100"`.
    pub name: String,
    /// The line's addresses, indexed by [`AddressId`](crate::AddressId).
    pub addresses: Vec<AddressCaps>,
    /// The media modes calls on this line can carry.
    pub media_modes: MediaModes,
    /// Which dial-string modifiers the line honours.
    pub dial: DialCaps,
    /// What answering a call does to another active call on the line.
    pub answer_mode: AnswerMode,
}

/// Which dial-string features a line honours. Anything not honoured is refused before anything is dialled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DialCaps {
    /// A dial string may end in `;` and be continued with dial.
    pub partial_dial: bool,
    /// `W`: wait for dial tone.
    pub wait_for_dial_tone: bool,
    /// `@`: wait for quiet answer.
    pub wait_for_quiet: bool,
    /// `$`: wait for the billing (credit card) tone.
    pub wait_for_billing: bool,
    /// `!`: hook flash.
    pub flash: bool,
    /// `P`: pulse dialling.
    pub pulse: bool,
}

/// What happens to an active call when another is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AnswerMode {
    /// The line cannot have two calls; answering with one active is refused.
    #[default]
    None,
    /// The active call is dropped.
    Drop,
    /// The active call is held.
    Hold,
}

/// How an address is shared between stations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AddressSharing {
    /// Only this station.
    #[default]
    Private,
    /// Bridged: exclusive.
    BridgedExclusive,
    /// Bridged: a new call for each station.
    BridgedNew,
    /// Bridged: shared.
    BridgedShared,
    /// Monitored.
    Monitored,
}

/// How a party leaves a conference when removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RemoveFromConference {
    /// Parties cannot be removed.
    #[default]
    None,
    /// Only the party added last.
    Last,
    /// Any party.
    Any,
}

/// Which ways a consultation transfer can complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TransferModes {
    /// Complete as a transfer: the other two parties are connected.
    pub transfer: bool,
    /// Complete as a three-way conference.
    pub conference: bool,
}

/// Which park modes an address supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ParkModes {
    /// The application names the orbit.
    pub directed: bool,
    /// The switch picks the orbit and returns it.
    pub non_directed: bool,
}

/// Which forwarding modes an address supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ForwardModes {
    /// Forward every call.
    pub unconditional: bool,
    /// Forward when busy.
    pub busy: bool,
    /// Forward when not answered after a number of rings.
    pub no_answer: bool,
    /// Do not disturb (refuse calls).
    pub do_not_disturb: bool,
}

/// Which pickup variants an address supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PickupModes {
    /// Pick up a call ringing at a named station.
    pub directed: bool,
    /// Pick up any call ringing in the station's pickup group.
    pub group: bool,
}

/// Capabilities of one address (directory number) on a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressCaps {
    /// The directory number, e.g. `"100"`.
    pub address: String,
    /// How the address is shared.
    pub sharing: AddressSharing,
    /// Call operations the provider implements on this address, in any state.
    pub call_features: FeatureSet,
    /// Address operations (make call, pickup …) the provider implements.
    pub address_features: AddressFeatureSet,
    /// Calls that may be active (not idle, not held) at once.
    pub max_active_calls: u32,
    /// Calls that may be on hard hold at once.
    pub max_on_hold: u32,
    /// Calls that may be on hold pending a transfer or conference at once.
    pub max_on_hold_pending: u32,
    /// Call appearances of the address, when the provider declares them: every call on it that is
    /// not idle and not a conference's party occupies one, held and disconnected calls included.
    /// Setting up a transfer or conference, or preparing to add a party, needs two besides the
    /// others' (the held call and its consultation call). `None`: not a limit the engine checks.
    pub appearances: Option<u32>,
    /// Parties a conference may have.
    pub max_conference: u32,
    /// Parties a conference made by completing a transfer may have.
    pub max_transfer_conference: u32,
    /// How a consultation transfer may complete.
    pub transfer_modes: TransferModes,
    /// Park modes.
    pub park_modes: ParkModes,
    /// Forwarding modes.
    pub forward_modes: ForwardModes,
    /// Pickup variants.
    pub pickup_modes: PickupModes,
    /// Removing parties from a conference.
    pub remove_from_conference: RemoveFromConference,
    /// A hard-held call may be the held side of a completed transfer.
    pub transfer_held: bool,
    /// Dial on a connected call sends the digits on (as tones, to whatever the call reached). Without
    /// it, dial is for a call in dial tone or dialing only.
    pub dial_connected: bool,
    /// A transfer may complete to a consultation call that is busy (the original then hears the
    /// busy party, or the switch camps on). Without it, only to one connected, ringing back or
    /// proceeding.
    pub transfer_busy: bool,
    /// A hard-held call may be added to a conference.
    pub conference_held: bool,
    /// Swap hold also pairs what the model allows beyond a connected call and a hard-held one: a
    /// consultation call not yet connected (dial tone, dialing, proceeding, ringback, busy) and calls
    /// held pending a transfer or conference. Without it, only a connected call swaps with a call on
    /// hold.
    pub swap_consultation: bool,
    /// Dropping a consultation call reconnects the held original on its own.
    pub auto_reconnect: bool,
    /// Dropping a conference drops every party.
    pub conference_drop: bool,
}

impl AddressCaps {
    /// An address with basic call control only: make call, dial, accept, answer, reject, drop.
    /// One call at a time, nothing held. Providers widen what they implement.
    pub fn basic(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            sharing: AddressSharing::Private,
            call_features: FeatureSet::from_slice(&[
                CallOperation::Accept,
                CallOperation::Answer,
                CallOperation::Reject,
                CallOperation::Drop,
                CallOperation::Dial,
            ]),
            address_features: AddressFeatureSet::from_slice(&[AddressOperation::MakeCall]),
            max_active_calls: 1,
            max_on_hold: 0,
            max_on_hold_pending: 0,
            appearances: None,
            max_conference: 0,
            max_transfer_conference: 0,
            transfer_modes: TransferModes::default(),
            park_modes: ParkModes::default(),
            forward_modes: ForwardModes::default(),
            pickup_modes: PickupModes::default(),
            remove_from_conference: RemoveFromConference::None,
            transfer_held: false,
            dial_connected: false,
            transfer_busy: false,
            conference_held: false,
            swap_consultation: false,
            auto_reconnect: false,
            conference_drop: false,
        }
    }
}
