//! What the engine keeps for each application session: its inbox, what its profile lets it use, the
//! lines it has open and the calls it holds.

use std::sync::{Arc, Mutex};

use tapir_core::{LineId, ProviderId};

use crate::call::CallIndex;
use crate::handles::LineHandle;
use crate::inbox::Inbox;
use crate::line::LineSlot;
use crate::profile::DisabledService;
use crate::sync::FastDashMap;
use crate::translate::Location;

/// A session's state inside the engine.
pub(crate) struct SessionState {
    /// Who the session is and where its events go.
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) profile: String,
    /// The providers it uses (counted against their session limits until it ends).
    pub(crate) providers: Vec<ProviderId>,
    /// Per engine line: whether the session may see and open it.
    pub(crate) allowed: Vec<bool>,
    /// The profile's services disabled for it, and why.
    pub(crate) disabled: Vec<DisabledService>,
    /// Its line opens.
    pub(crate) lines: FastDashMap<LineHandle, Arc<LineSlot>>,
    /// Its call handles.
    pub(crate) calls: CallIndex,
    /// Where the session dials from, for address translation.
    pub(crate) location: Mutex<Option<Location>>,
}

impl SessionState {
    /// Whether the session may see and open engine line `line`.
    pub(crate) fn may_use(&self, line: LineId) -> bool {
        self.allowed.get(line.0 as usize).copied().unwrap_or(false)
    }
}
