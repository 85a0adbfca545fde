//! Who has each line open: the openers of a line, in the order they opened it, and whether its
//! provider has been told the line is open.

use std::sync::{Arc, Mutex};

use tapir_core::media::MediaModes;
use tapir_core::privilege::LinePrivileges;

use crate::handles::LineHandle;
use crate::session_state::SessionState;

/// One session's open of a line.
#[derive(Clone)]
pub(crate) struct Opener {
    pub(crate) session: Arc<SessionState>,
    pub(crate) handle: LineHandle,
    pub(crate) privileges: LinePrivileges,
    pub(crate) media_modes: MediaModes,
    /// Among owners, the highest is offered new calls first.
    pub(crate) priority: u32,
    /// When it opened, engine-wide: the first opener wins a tie.
    pub(crate) order: u64,
}

/// The opens of one line. Aligned to its own cache lines: every call offered on a line locks its
/// opener list, and lines taking calls on different threads must not share a line of memory.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct LineOpens {
    pub(crate) openers: Mutex<Vec<Opener>>,
    /// Serialises telling the provider that the line is opened or closed; holds whether it is open.
    pub(crate) provider_open: tokio::sync::Mutex<bool>,
}
