//! The operations, by name: what an application can ask of a call ([`CallOperation`]), of a line's
//! address ([`AddressOperation`]) and of the engine for its session ([`SessionOperation`]), and the
//! sets of them that capabilities and a call's features are made of. The gate (`gate.rs`) decides
//! which of them a call may do; the names here are the API's, written once.

use std::fmt;

/// An operation on an existing call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum CallOperation {
    /// Claim an offered call so that it alerts.
    Accept,
    /// Answer an offered or accepted call.
    Answer,
    /// Refuse an offered call.
    Reject,
    /// Deflect an offered call elsewhere before answering.
    Redirect,
    /// Hang up.
    Drop,
    /// Dial (more) digits on a call in dial tone or dialing.
    Dial,
    /// Put a connected call on hold.
    Hold,
    /// Take a held call off hold.
    Unhold,
    /// Swap the active and a held call.
    SwapHold,
    /// Transfer a connected call to a number without consultation.
    BlindTransfer,
    /// Hold a call pending transfer and make a consultation call.
    SetupTransfer,
    /// Complete a consultation transfer (as transfer or conference).
    CompleteTransfer,
    /// Turn a connected call into a conference.
    SetupConference,
    /// Hold a conference and make a consultation call to add a party.
    PrepareAddToConference,
    /// Add a consultation call to a conference.
    AddToConference,
    /// Remove a party from a conference.
    RemoveFromConference,
    /// Park a connected call in an orbit.
    Park,
    /// Ask the switch to complete a call to a busy or unanswered party later.
    CompleteCall,
    /// Send digits in-band on a connected call.
    GenerateDigits,
    /// Report digits received on the call. Allowed to monitors.
    MonitorDigits,
    /// Secure the call against interruption.
    SecureCall,
    /// Give the call to another application.
    Handoff,
}

impl CallOperation {
    /// Every call operation.
    pub const ALL: [CallOperation; 22] = [
        Self::Accept,
        Self::Answer,
        Self::Reject,
        Self::Redirect,
        Self::Drop,
        Self::Dial,
        Self::Hold,
        Self::Unhold,
        Self::SwapHold,
        Self::BlindTransfer,
        Self::SetupTransfer,
        Self::CompleteTransfer,
        Self::SetupConference,
        Self::PrepareAddToConference,
        Self::AddToConference,
        Self::RemoveFromConference,
        Self::Park,
        Self::CompleteCall,
        Self::GenerateDigits,
        Self::MonitorDigits,
        Self::SecureCall,
        Self::Handoff,
    ];

    /// Whether only an owner may perform the operation. Monitoring digits is the one operation a
    /// monitor may perform.
    pub const fn requires_owner(self) -> bool {
        !matches!(self, Self::MonitorDigits)
    }

    /// A stable lower-case name, e.g. `"blind-transfer"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Answer => "answer",
            Self::Reject => "reject",
            Self::Redirect => "redirect",
            Self::Drop => "drop",
            Self::Dial => "dial",
            Self::Hold => "hold",
            Self::Unhold => "unhold",
            Self::SwapHold => "swap-hold",
            Self::BlindTransfer => "blind-transfer",
            Self::SetupTransfer => "setup-transfer",
            Self::CompleteTransfer => "complete-transfer",
            Self::SetupConference => "setup-conference",
            Self::PrepareAddToConference => "prepare-add-to-conference",
            Self::AddToConference => "add-to-conference",
            Self::RemoveFromConference => "remove-from-conference",
            Self::Park => "park",
            Self::CompleteCall => "complete-call",
            Self::GenerateDigits => "generate-digits",
            Self::MonitorDigits => "monitor-digits",
            Self::SecureCall => "secure-call",
            Self::Handoff => "handoff",
        }
    }
}

impl fmt::Display for CallOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no operation's (the text it was).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no operation is named {0:?}")]
pub struct UnknownOperation(pub String);

/// The one of `all` whose name is `s`: the inverse of each operation table's `name`.
fn by_name<T: Copy>(
    all: &[T],
    name: fn(T) -> &'static str,
    s: &str,
) -> Result<T, UnknownOperation> {
    all.iter()
        .copied()
        .find(|op| name(*op) == s)
        .ok_or_else(|| UnknownOperation(s.to_owned()))
}

impl std::str::FromStr for CallOperation {
    type Err = UnknownOperation;

    /// The operation of a [`name`](CallOperation::name): the inverse of `Display`, from the same table.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(&Self::ALL, Self::name, s)
    }
}

/// An operation on a line's address that creates or affects calls without naming one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum AddressOperation {
    /// Place a new call.
    MakeCall,
    /// Retrieve a parked call.
    Unpark,
    /// Pick up a call ringing elsewhere.
    Pickup,
    /// Set or cancel forwarding.
    Forward,
    /// Set up a conference without an existing call.
    SetupConference,
}

impl AddressOperation {
    /// Every address operation.
    pub const ALL: [AddressOperation; 5] = [
        Self::MakeCall,
        Self::Unpark,
        Self::Pickup,
        Self::Forward,
        Self::SetupConference,
    ];

    /// A stable lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::MakeCall => "make-call",
            Self::Unpark => "unpark",
            Self::Pickup => "pickup",
            Self::Forward => "forward",
            Self::SetupConference => "setup-conference",
        }
    }
}

impl fmt::Display for AddressOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for AddressOperation {
    type Err = UnknownOperation;

    /// The operation of a [`name`](AddressOperation::name).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(&Self::ALL, Self::name, s)
    }
}

/// The other operations of the application API: not gated by a call's or an address's features
/// (each checks its own rule), but named on the wire from here like the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SessionOperation {
    /// Cancel a call-completion request a line made.
    CancelCallCompletion,
    /// Change this session's privilege on a call (monitor ↔ owner).
    SetCallPrivilege,
    /// List the calls of a conference.
    ConferenceCalls,
    /// Take up the calls on a line this session has no handle for (TAPI `lineGetNewCalls`).
    NewCalls,
    /// A line's status: service, opens and each address's calls.
    LineStatus,
    /// Release a call handle.
    Deallocate,
}

impl SessionOperation {
    /// Every one of them.
    pub const ALL: [SessionOperation; 6] = [
        Self::CancelCallCompletion,
        Self::SetCallPrivilege,
        Self::ConferenceCalls,
        Self::NewCalls,
        Self::LineStatus,
        Self::Deallocate,
    ];

    /// A stable lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::CancelCallCompletion => "cancel-call-completion",
            Self::SetCallPrivilege => "set-call-privilege",
            Self::ConferenceCalls => "conference-calls",
            Self::NewCalls => "new-calls",
            Self::LineStatus => "line-status",
            Self::Deallocate => "deallocate",
        }
    }
}

impl fmt::Display for SessionOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SessionOperation {
    type Err = UnknownOperation;

    /// The operation of a [`name`](SessionOperation::name).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(&Self::ALL, Self::name, s)
    }
}

/// A set of [`CallOperation`]s: a capability set or the features available on a call now.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FeatureSet(u32);

impl FeatureSet {
    /// The empty set.
    pub const EMPTY: Self = Self(0);
    /// Every operation.
    pub const ALL: Self = Self((1 << CallOperation::ALL.len()) - 1);

    /// A set of the given operations.
    pub fn from_slice(ops: &[CallOperation]) -> Self {
        ops.iter().fold(Self::EMPTY, |s, op| s.with(*op))
    }
    /// This set plus `op`.
    pub const fn with(self, op: CallOperation) -> Self {
        Self(self.0 | (1 << op as u32))
    }
    /// This set without `op`.
    pub const fn without(self, op: CallOperation) -> Self {
        Self(self.0 & !(1 << op as u32))
    }
    /// This set plus `op` if `condition` holds.
    pub const fn with_if(self, op: CallOperation, condition: bool) -> Self {
        if condition { self.with(op) } else { self }
    }
    /// Whether `op` is in the set.
    pub const fn contains(self, op: CallOperation) -> bool {
        self.0 & (1 << op as u32) != 0
    }
    /// The operations in both sets.
    pub const fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }
    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The operations in the set, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = CallOperation> {
        CallOperation::ALL
            .into_iter()
            .filter(move |op| self.contains(*op))
    }
}

impl fmt::Debug for FeatureSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(|op| op.name()))
            .finish()
    }
}

/// A set of [`AddressOperation`]s.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AddressFeatureSet(u32);

impl AddressFeatureSet {
    /// The empty set.
    pub const EMPTY: Self = Self(0);

    /// A set of the given operations.
    pub fn from_slice(ops: &[AddressOperation]) -> Self {
        ops.iter().fold(Self::EMPTY, |s, op| s.with(*op))
    }
    /// This set plus `op`.
    pub const fn with(self, op: AddressOperation) -> Self {
        Self(self.0 | (1 << op as u32))
    }
    /// Whether `op` is in the set.
    pub const fn contains(self, op: AddressOperation) -> bool {
        self.0 & (1 << op as u32) != 0
    }
    /// The operations in the set.
    pub fn iter(self) -> impl Iterator<Item = AddressOperation> {
        AddressOperation::ALL
            .into_iter()
            .filter(move |op| self.contains(*op))
    }
}

impl fmt::Debug for AddressFeatureSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}
