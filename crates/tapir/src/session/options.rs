//! How an application asks for a line open and a call: the options of
//! [`Session::open_line`](crate::Session::open_line) and
//! [`Session::make_call_with`](crate::Session::make_call_with).

use tapir_core::AddressId;
use tapir_core::media::MediaModes;
use tapir_core::privilege::LinePrivileges;

/// How to open a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// The privileges asked for.
    pub privileges: LinePrivileges,
    /// The media modes this session handles; owners are offered only calls of these modes. `None` means
    /// every mode the line supports.
    pub media_modes: Option<MediaModes>,
    /// Among owner openers of a line, the highest priority is offered new calls first; on a tie, the
    /// first to open. Default 0.
    pub priority: u32,
}

impl OpenOptions {
    /// Outgoing calls only.
    pub fn none() -> Self {
        Self::with(LinePrivileges::None)
    }
    /// Watch every call on the line.
    pub fn monitor() -> Self {
        Self::with(LinePrivileges::Monitor)
    }
    /// Own offered calls.
    pub fn owner() -> Self {
        Self::with(LinePrivileges::Owner)
    }
    /// Own offered calls and watch the others.
    pub fn owner_monitor() -> Self {
        Self::with(LinePrivileges::OwnerMonitor)
    }
    fn with(privileges: LinePrivileges) -> Self {
        Self {
            privileges,
            media_modes: None,
            priority: 0,
        }
    }
    /// Handle only these media modes.
    pub fn media_modes(mut self, modes: MediaModes) -> Self {
        self.media_modes = Some(modes);
        self
    }
    /// Set the owner priority.
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }
}

/// How to place a call.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MakeCallParams {
    /// Where to call; `None` leaves the call in dial tone for [`Session::dial`](crate::Session::dial).
    pub destination: Option<String>,
    /// The address on the line to call from. Default 0.
    pub address: AddressId,
    /// The media mode (exactly one). `None`: interactive voice if the line supports it, else the line's
    /// lowest mode.
    pub media_mode: Option<MediaModes>,
    /// Translate a canonical destination (`+1 (425) 555-0100`) with the session's location
    /// ([`Session::set_location`](crate::Session::set_location)) before dialling it.
    pub translate: bool,
}

impl MakeCallParams {
    /// A call to `destination`.
    pub fn to(destination: impl Into<String>) -> Self {
        Self {
            destination: Some(destination.into()),
            ..Self::default()
        }
    }
}
