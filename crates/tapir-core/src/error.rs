//! The one error type of tapir's public boundary.

use crate::dial::{DialModifier, DialStringError, ModifierUnsupported};
use crate::ids::{LineId, ProviderId};
use crate::state::CallStateKind;

/// Why an operation was refused or failed.
///
/// Providers return the same type, so an error keeps its meaning from the switch to the application.
/// The variants an application most often needs to tell apart are the "never / not now / not yours"
/// triple: [`OperationUnavailable`](Error::OperationUnavailable),
/// [`InvalidCallState`](Error::InvalidCallState) and [`NotOwner`](Error::NotOwner).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The call handle is unknown to this session: never issued, already deallocated, or issued to another
    /// session. The three cases are deliberately indistinguishable.
    #[error("invalid call handle")]
    InvalidCallHandle,
    /// The line handle is unknown to this session (never issued, closed, or another session's).
    #[error("invalid line handle")]
    InvalidLineHandle,
    /// No line device has this ID.
    #[error("no such line: {0}")]
    InvalidLine(LineId),
    /// The line has no address with this ID.
    #[error("no such address on the line")]
    InvalidAddressId,
    /// The caller holds the call as a monitor and tried to change it.
    #[error("the session is not an owner of the call")]
    NotOwner,
    /// The operation is supported, but not in the call's current state (`state`). "Not now."
    #[error("not possible while the call is {}", state.name())]
    InvalidCallState {
        /// The state the call was in when the operation was refused.
        state: CallStateKind,
    },
    /// The provider can never perform `operation` on this address (its capabilities do not include it).
    /// "Never."
    #[error("{operation} is not supported here")]
    OperationUnavailable {
        /// The operation's name, e.g. `"hold"`.
        operation: &'static str,
    },
    /// The request was valid but the switch or device failed to carry it out.
    #[error("operation failed: {reason}")]
    OperationFailed {
        /// What went wrong, in words.
        reason: String,
    },
    /// A transient limit (hold slots, DSP resources) was reached; retrying later may work.
    #[error("resource unavailable: {what}")]
    ResourceUnavailable {
        /// Which resource.
        what: &'static str,
    },
    /// No call appearance is free on the address (it already has as many calls as it can).
    #[error("no call appearance is free")]
    CallUnavailable,
    /// The line or address is in use by another station.
    #[error("in use by another station")]
    InUse,
    /// A parameter is malformed or out of range.
    #[error("invalid parameter: {reason}")]
    InvalidParameter {
        /// What is wrong with it.
        reason: String,
    },
    /// The destination address is not valid on this switch.
    #[error("invalid address: {reason}")]
    InvalidAddress {
        /// What is wrong with it.
        reason: String,
    },
    /// The dial string is malformed. Nothing was dialled.
    #[error("invalid dial string: {0}")]
    InvalidDialString(DialStringError),
    /// The dial string uses a modifier the line cannot honour. Nothing was dialled.
    #[error("the line cannot honour the dial modifier {0}")]
    DialModifierUnsupported(DialModifier),
    /// The media mode is not one the line supports, or not exactly one mode where one is required.
    #[error("invalid media mode")]
    InvalidMediaMode,
    /// The privilege combination is not valid for this request.
    #[error("invalid privilege")]
    InvalidPrivilege,
    /// The conference has as many parties as it can.
    #[error("the conference is full")]
    ConferenceFull,
    /// The call is not part of a conference.
    #[error("the call is not in a conference")]
    NoConference,
    /// No other application with that name has the call's line open (hand-off).
    #[error("no other application of that name has the line open")]
    TargetNotFound,
    /// The hand-off target is the calling application itself.
    #[error("a call cannot be handed off to its own session")]
    TargetSelf,
    /// The application session has ended (logged off, or the engine shut down).
    #[error("the application session has ended")]
    SessionEnded,
    /// The provider is not running.
    #[error("{provider} is unavailable: {reason}")]
    ProviderUnavailable {
        /// Which provider.
        provider: ProviderId,
        /// Why, in words.
        reason: String,
    },
    /// The provider panicked while carrying out `operation`. As far as the engine knows nothing
    /// happened; the provider's status row counts the fault, and every other call, session and
    /// provider carries on.
    #[error("{name} failed inside {operation}: it panicked")]
    ProviderFault {
        /// Which provider.
        provider: ProviderId,
        /// The provider's name.
        name: String,
        /// The provider method, e.g. `"hold"`.
        operation: &'static str,
    },
    /// The provider did not finish `operation` within the engine's deadline. The call keeps the
    /// state its provider last reported.
    #[error("{name} did not finish {operation} within {after_ms} ms")]
    ProviderTimeout {
        /// Which provider.
        provider: ProviderId,
        /// The provider's name.
        name: String,
        /// The provider method, e.g. `"hold"`.
        operation: &'static str,
        /// The deadline, in milliseconds.
        after_ms: u64,
    },
    /// Log-on refused: a provider of the profile already serves as many sessions as it can.
    #[error("provider {name} ({provider}) already serves its limit of {limit} sessions")]
    SessionLimit {
        /// Which provider.
        provider: ProviderId,
        /// The provider's name.
        name: String,
        /// How many sessions it serves at most.
        limit: u32,
    },
    /// Log-on refused: no profile of that name is configured.
    #[error("no profile named {name:?}")]
    UnknownProfile {
        /// The name asked for.
        name: String,
    },
    /// Log-on refused: every service of the profile is disabled for the session.
    #[error("no service of the profile is usable: {reason}")]
    NoServiceAvailable {
        /// Which services were disabled, and why.
        reason: String,
    },
}

impl Error {
    /// A stable, machine-readable name for the variant (`"invalid_call_state"`, …), used by the network
    /// API and the command-line tool.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidCallHandle => "invalid_call_handle",
            Self::InvalidLineHandle => "invalid_line_handle",
            Self::InvalidLine(_) => "invalid_line",
            Self::InvalidAddressId => "invalid_address_id",
            Self::NotOwner => "not_owner",
            Self::InvalidCallState { .. } => "invalid_call_state",
            Self::OperationUnavailable { .. } => "operation_unavailable",
            Self::OperationFailed { .. } => "operation_failed",
            Self::ResourceUnavailable { .. } => "resource_unavailable",
            Self::CallUnavailable => "call_unavailable",
            Self::InUse => "in_use",
            Self::InvalidParameter { .. } => "invalid_parameter",
            Self::InvalidAddress { .. } => "invalid_address",
            Self::InvalidDialString(_) => "invalid_dial_string",
            Self::DialModifierUnsupported(_) => "dial_modifier_unsupported",
            Self::InvalidMediaMode => "invalid_media_mode",
            Self::InvalidPrivilege => "invalid_privilege",
            Self::ConferenceFull => "conference_full",
            Self::NoConference => "no_conference",
            Self::TargetNotFound => "target_not_found",
            Self::TargetSelf => "target_self",
            Self::SessionEnded => "session_ended",
            Self::ProviderUnavailable { .. } => "provider_unavailable",
            Self::ProviderFault { .. } => "provider_fault",
            Self::ProviderTimeout { .. } => "provider_timeout",
            Self::SessionLimit { .. } => "session_limit",
            Self::UnknownProfile { .. } => "unknown_profile",
            Self::NoServiceAvailable { .. } => "no_service_available",
        }
    }
}

impl From<DialStringError> for Error {
    fn from(e: DialStringError) -> Self {
        Self::InvalidDialString(e)
    }
}

impl From<ModifierUnsupported> for Error {
    fn from(e: ModifierUnsupported) -> Self {
        Self::DialModifierUnsupported(e.0)
    }
}
