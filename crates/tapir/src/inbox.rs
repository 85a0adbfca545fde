//! A session as its calls and lines see it: who it is and where its events go.
//!
//! A call's holders and a line's openers reach their session through its [`Inbox`]: they push events
//! into it (under the call's lock, which is what gives every session one order per call) and compare
//! inboxes to tell sessions apart. What else a session holds — its handles, its line opens, its
//! profile — is the engine's business (`session_state.rs`), not theirs.

use std::sync::Mutex;

use crate::event::{Event, EventQueue};
use crate::handles::SessionId;
use crate::sync::lock;

/// A session's identity and event queues.
pub(crate) struct Inbox {
    pub(crate) id: SessionId,
    /// The application that established the session.
    pub(crate) app: String,
    /// Every application using it now (more than one only for the shared session).
    pub(crate) apps: Mutex<Vec<String>>,
    /// Whether this is the engine's shared session.
    pub(crate) shared: bool,
    /// The event queues, one per reader. Its lock also guards "has the session ended", so that a
    /// handle is never added to a session after its log-off collected the handles to release.
    pub(crate) queue: Mutex<EventQueue>,
}

impl Inbox {
    /// An inbox for a session `app` establishes, its queues holding `capacity` events each.
    pub(crate) fn new(app: &str, shared: bool, capacity: usize) -> Self {
        Self {
            id: SessionId::new(),
            app: app.to_owned(),
            apps: Mutex::new(Vec::new()),
            shared,
            queue: Mutex::new(EventQueue::new(capacity)),
        }
    }

    /// Queues `event` for every reader of the session (nothing once it has ended).
    pub(crate) fn push(&self, event: Event) {
        lock(&self.queue).push(event);
    }

    /// Whether `app` is one of the applications using the session now (the one that established a
    /// shared session may have left it).
    pub(crate) fn serves(&self, app: &str) -> bool {
        if self.shared {
            lock(&self.apps).iter().any(|a| a == app)
        } else {
            self.app == app
        }
    }
}
