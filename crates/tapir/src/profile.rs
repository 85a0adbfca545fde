//! Services, profiles and log-on options: what an application session uses.
//!
//! A **service** is a named group of providers that are enabled or disabled together (a PBX link, a
//! bank of modems). A **profile** names the services a session uses, which of their lines it may see
//! and open, and where it dials from. An application logs on with a profile (the engine's default
//! profile when it names none), either to a new **individual** session or to the engine's **shared**
//! session, which every application asking to share gets — the same session identifier, the same
//! handles, each application with its own reading of the event stream.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tapir::Error> {
//! use tapir::profile::{LogonOptions, Profile};
//! let engine = tapir::Engine::builder()
//!     .profile("front-desk", Profile::new(["pbx"]).lines(["2001", "2002"]))
//!     .build()
//!     .await;
//! // No service called "pbx" was added, so the profile is refused when the engine is built.
//! assert!(matches!(engine, Err(tapir::Error::InvalidParameter { .. })));
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

use tapir_core::Error;
use tapir_core::caps::LineCaps;
use tapir_provider::Provider;

use crate::translate::Location;

/// The name of the profile an engine has when none is configured: every service, every line.
pub const DEFAULT_PROFILE: &str = "default";

/// A named group of providers, enabled or disabled together for a session.
pub struct Service {
    pub(crate) name: String,
    pub(crate) display_name: Option<String>,
    pub(crate) providers: Vec<Arc<dyn Provider>>,
    pub(crate) max_sessions: Option<u32>,
}

impl Service {
    /// A service without providers yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            display_name: None,
            providers: Vec::new(),
            max_sessions: None,
        }
    }

    /// A name for people, shown in the status table.
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// Adds a provider to the service.
    pub fn provider(self, provider: impl Provider) -> Self {
        self.provider_arc(Arc::new(provider))
    }

    /// Adds a provider that other code also holds (a test driving its far ends, say).
    pub fn provider_arc(mut self, provider: Arc<dyn Provider>) -> Self {
        self.providers.push(provider);
        self
    }

    /// At most this many sessions may use the service at once, on top of any limit its providers
    /// declare themselves ([`Provider::session_limit`]).
    pub fn max_sessions(mut self, limit: u32) -> Self {
        self.max_sessions = Some(limit);
        self
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("display_name", &self.display_name)
            .field(
                "providers",
                &self.providers.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .field("max_sessions", &self.max_sessions)
            .finish()
    }
}

/// What a session logged on with this profile uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    /// The services, by name.
    pub services: Vec<String>,
    /// Which lines of those services the session may see and open; empty means all. A pattern matches
    /// a line by its name or by one of its addresses' numbers, exactly or — ending in `*` — by prefix;
    /// `*` alone matches every line.
    pub lines: Vec<String>,
    /// Where the session dials from at first ([`Session::set_location`](crate::Session::set_location)
    /// changes it).
    pub location: Option<Location>,
}

impl Profile {
    /// A profile using these services and all their lines.
    pub fn new<S: Into<String>>(services: impl IntoIterator<Item = S>) -> Self {
        Self {
            services: services.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Restricts the lines (see [`Profile::lines`](Profile#structfield.lines)).
    pub fn lines<S: Into<String>>(mut self, patterns: impl IntoIterator<Item = S>) -> Self {
        self.lines = patterns.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the starting location.
    pub fn location(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    /// Checks the line patterns and the location.
    pub(crate) fn check(&self, name: &str) -> Result<(), Error> {
        if self.services.is_empty() {
            return Err(bad(format!("profile {name:?} names no service")));
        }
        for p in &self.lines {
            let body = p.strip_suffix('*').unwrap_or(p);
            if p.is_empty() || body.contains('*') {
                return Err(bad(format!(
                    "profile {name:?}: line pattern {p:?} must be a name or number, optionally ending in *"
                )));
            }
        }
        if let Some(l) = &self.location {
            l.check()?;
        }
        Ok(())
    }

    /// Whether the profile lets a session use this line.
    pub(crate) fn allows(&self, caps: &LineCaps) -> bool {
        self.lines.is_empty()
            || self.lines.iter().any(|p| {
                let matches = |s: &str| match p.strip_suffix('*') {
                    Some(prefix) => s.starts_with(prefix),
                    None => s == p,
                };
                matches(&caps.name) || caps.addresses.iter().any(|a| matches(&a.address))
            })
    }
}

/// Whether a log-on gets a session of its own or the engine's shared session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionMode {
    /// A new session, private to the application.
    #[default]
    Individual,
    /// The engine's shared session: established by the first log-on that asks for it, joined by later
    /// ones, ended when the last of its applications logs off.
    Shared,
}

/// How to log on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogonOptions {
    pub(crate) app: String,
    pub(crate) profile: Option<String>,
    pub(crate) mode: SessionMode,
}

impl LogonOptions {
    /// An individual session on the default profile for application `app` (1–256 characters).
    pub fn new(app: impl Into<String>) -> Self {
        Self {
            app: app.into(),
            profile: None,
            mode: SessionMode::Individual,
        }
    }

    /// Uses this profile. Joining the shared session needs no profile; naming one other than the
    /// shared session's is refused.
    pub fn profile(mut self, name: impl Into<String>) -> Self {
        self.profile = Some(name.into());
        self
    }

    /// Logs on to the shared session.
    pub fn shared(mut self) -> Self {
        self.mode = SessionMode::Shared;
        self
    }
}

/// A service a session does not use because its providers could not serve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisabledService {
    /// The service's name.
    pub service: String,
    /// Why, in words.
    pub reason: String,
}

fn bad(reason: String) -> Error {
    Error::InvalidParameter { reason }
}
