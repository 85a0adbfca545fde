//! Privileges: what an application may do with a line it opened and with a call it holds.

/// The privileges an application asks for when it opens a line.
///
/// - `None`: the application only places calls; it gets no handles to calls others make or receive.
/// - `Monitor`: a monitor handle for every new call on the line.
/// - `Owner`: a candidate owner for offered calls whose media mode it opened for.
/// - `OwnerMonitor`: both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinePrivileges {
    /// Outgoing calls only.
    None,
    /// Watch every call on the line.
    Monitor,
    /// Own offered calls.
    Owner,
    /// Own offered calls and watch the others.
    OwnerMonitor,
}

impl LinePrivileges {
    /// Whether this opener may become the owner of offered calls.
    pub const fn owns(self) -> bool {
        matches!(self, Self::Owner | Self::OwnerMonitor)
    }
    /// Whether this opener is given a handle to every call on the line.
    pub const fn monitors(self) -> bool {
        matches!(self, Self::Monitor | Self::OwnerMonitor)
    }
}

/// What one application session may do with one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallPrivilege {
    /// May control the call.
    Owner,
    /// May watch the call, read its information and monitor digits; may not change it.
    Monitor,
}

wire_names!(CallPrivilege {
    Owner = "owner",
    Monitor = "monitor",
});

wire_names!(LinePrivileges {
    None = "none",
    Monitor = "monitor",
    Owner = "owner",
    OwnerMonitor = "owner_monitor",
});
