//! Requests that create calls (make call, set up a transfer or conference, unpark, pickup …) while
//! they are with their provider: each call the provider reports with the request's ID is bound to a
//! fresh handle of the requesting session, held back from it until the request returns.

use std::sync::Arc;

use tapir_core::CallLegId;

use crate::handles::{CallHandle, LineHandle};
use crate::session_state::SessionState;

/// A request in flight.
pub(crate) struct Pending {
    pub(crate) session: Arc<SessionState>,
    /// The line open the request came through; its calls are held through it.
    pub(crate) line: LineHandle,
    /// The calls reported for it so far, and the handles they were bound to.
    pub(crate) bound: Vec<(CallLegId, CallHandle)>,
}
