//! The engine's public handle: [`Engine`], built by [`EngineBuilder`] from providers, services and
//! profiles; logging applications on; routes, status and shutdown.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tapir_core::cdr::CdrSink;
use tapir_core::route::{DefaultRoute, Route};
use tapir_core::state::CallStateKind;
use tapir_core::{Error, ProviderId};
use tapir_provider::{EventSink, Intercept, Provider};
use tracing::{debug, info, warn};

use crate::dispatch::Dispatcher;
use crate::guard::{DEFAULT_PROVIDER_DEADLINE, Guard};
use crate::inner::{Inner, ProviderSlot, Providers, ServiceSlot, Setup};
use crate::line::{LineInfo, Lines};
use crate::profile::{DEFAULT_PROFILE, LogonOptions, Profile, Service, SessionMode};
use crate::session::Session;
use crate::status::{ProviderStatus, ServiceState, StatusRow};
use crate::sync::{lock, read, write};

/// The default capacity of a session's event queue.
pub const DEFAULT_EVENT_QUEUE_CAPACITY: usize = 16_384;

/// Builds an [`Engine`] from its providers.
///
/// ```no_run
/// # async fn demo(provider: impl tapir_provider::Provider) -> Result<(), tapir::Error> {
/// let engine = tapir::Engine::builder().provider(provider).build().await?;
/// let session = engine.logon("my-app").await?;
/// # Ok(()) }
/// ```
pub struct EngineBuilder {
    services: Vec<Service>,
    profiles: Vec<(String, Profile)>,
    default_profile: Option<String>,
    queue_capacity: usize,
    cdr: Option<Arc<dyn CdrSink>>,
    provider_deadline: Duration,
}

impl EngineBuilder {
    /// Adds a provider, as a service of its own named after it. Providers are numbered in the order
    /// they are added.
    pub fn provider(self, provider: impl Provider) -> Self {
        self.provider_arc(Arc::new(provider))
    }

    /// Adds a provider that is shared with other code (a test harness driving its far ends, say).
    pub fn provider_arc(self, provider: Arc<dyn Provider>) -> Self {
        let base = provider.name().to_owned();
        let mut name = base.clone();
        let mut n = 1;
        while self.services.iter().any(|s| s.name == name) {
            n += 1;
            name = format!("{base}-{n}");
        }
        self.service(Service::new(name).provider_arc(provider))
    }

    /// Adds a service: providers enabled or disabled together for a session.
    pub fn service(mut self, service: Service) -> Self {
        self.services.push(service);
        self
    }

    /// Adds a profile. Without any, the engine has one called [`DEFAULT_PROFILE`] with every service
    /// and every line.
    pub fn profile(mut self, name: impl Into<String>, profile: Profile) -> Self {
        self.profiles.push((name.into(), profile));
        self
    }

    /// Where the engine hands a [call detail record](tapir_core::cdr) for every call leg when it ends
    /// (goes idle). Without a sink the engine keeps no notes for records at all.
    pub fn cdr_sink(mut self, sink: Arc<dyn CdrSink>) -> Self {
        self.cdr = Some(sink);
        self
    }

    /// Which profile a log-on that names none uses. Default [`DEFAULT_PROFILE`].
    pub fn default_profile(mut self, name: impl Into<String>) -> Self {
        self.default_profile = Some(name.into());
        self
    }

    /// Checks services and profiles before anything starts; returns the profiles and the default's
    /// name.
    fn check(&self) -> Result<(HashMap<String, Profile>, String), Error> {
        let bad = |reason: String| Error::InvalidParameter { reason };
        for (i, s) in self.services.iter().enumerate() {
            if s.name.is_empty() || s.providers.is_empty() {
                return Err(bad(format!(
                    "service {:?} needs a name and at least one provider",
                    s.name
                )));
            }
            if self.services[..i].iter().any(|o| o.name == s.name) {
                return Err(bad(format!("two services are called {:?}", s.name)));
            }
            if s.max_sessions == Some(0) {
                return Err(bad(format!(
                    "service {:?}: max_sessions must be at least 1",
                    s.name
                )));
            }
        }
        let mut profiles = HashMap::new();
        for (name, p) in &self.profiles {
            p.check(name)?;
            if let Some(unknown) = p
                .services
                .iter()
                .find(|u| !self.services.iter().any(|s| &s.name == *u))
            {
                return Err(bad(format!(
                    "profile {name:?} names service {unknown:?}, which is not configured"
                )));
            }
            if profiles.insert(name.clone(), p.clone()).is_some() {
                return Err(bad(format!("two profiles are called {name:?}")));
            }
        }
        if profiles.is_empty() {
            profiles.insert(
                DEFAULT_PROFILE.to_owned(),
                Profile::new(self.services.iter().map(|s| s.name.clone())),
            );
        }
        let default = self
            .default_profile
            .clone()
            .unwrap_or_else(|| DEFAULT_PROFILE.to_owned());
        if !profiles.contains_key(&default) {
            return Err(bad(format!(
                "the default profile {default:?} is not configured"
            )));
        }
        Ok((profiles, default))
    }

    /// How many events a session's queue holds before it starts discarding and reporting
    /// [`Event::EventsLost`](crate::Event::EventsLost). Default [`DEFAULT_EVENT_QUEUE_CAPACITY`].
    pub fn event_queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// How long the engine waits for any provider method (an operation, start, stop, a log-on
    /// check) before the operation fails with [`Error::ProviderTimeout`]. Default
    /// [`DEFAULT_PROVIDER_DEADLINE`]. A provider method that panics fails with
    /// [`Error::ProviderFault`] whatever the deadline; either way the provider's status row counts
    /// the fault and nothing else is affected.
    pub fn provider_deadline(mut self, deadline: Duration) -> Self {
        self.provider_deadline = deadline;
        self
    }

    /// Checks the services and profiles, starts every provider and returns the running engine. It must
    /// run inside a tokio runtime (the engine spawns its clean-up work there); elsewhere it fails with
    /// `OperationFailed`. Services or profiles that do not fit together are refused with
    /// `InvalidParameter` before any provider starts. A provider that fails to start is tried once
    /// more, then disabled with the reason in the status table; only if every provider is disabled
    /// does `build` fail.
    pub async fn build(self) -> Result<Engine, Error> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| Error::OperationFailed {
                reason: "the engine must be built inside a tokio runtime".into(),
            })?;
        let (profiles, default_profile) = self.check()?;
        let mut providers = Vec::new();
        let mut owned: Vec<Arc<dyn Provider>> = Vec::new();
        let mut guards: Vec<Arc<Intercept<Guard>>> = Vec::new();
        let mut services = Vec::new();
        for (index, service) in self.services.into_iter().enumerate() {
            let mut ids = Vec::new();
            for provider in service.providers {
                let id = ProviderId(providers.len() as u16);
                ids.push(id);
                let name = provider.name().to_owned();
                // Every call the engine makes of a provider goes through its guard.
                let guarded = Arc::new(Intercept::new(
                    provider,
                    Guard::new(id, name.clone(), self.provider_deadline),
                ));
                let provider: Arc<dyn Provider> = guarded.clone();
                let down = guarded.hook().down_flag();
                guards.push(guarded);
                providers.push(ProviderSlot {
                    id,
                    name,
                    service: index,
                    provider: Arc::downgrade(&provider),
                    status: Mutex::new(ProviderStatus::starting()),
                    down,
                });
                owned.push(provider);
            }
            services.push(ServiceSlot {
                name: service.name,
                display_name: service.display_name,
                providers: ids,
                max_sessions: service.max_sessions,
            });
        }
        let inner = Arc::new(Inner::new(Setup {
            providers,
            services,
            profiles,
            default_profile,
            queue_capacity: self.queue_capacity,
            cdr: self.cdr,
            runtime,
        }));
        for guard in &guards {
            guard.hook().report_to(Arc::downgrade(&inner));
        }
        let providers: Providers = owned.into();
        let mut lines = Lines::default();
        for (slot, provider) in inner.providers.iter().zip(providers.iter()) {
            let sink = EventSink::new(
                slot.id,
                Arc::new(Dispatcher {
                    engine: inner.clone(),
                }),
            );
            // A provider that fails to start is tried once more; then it is disabled, with the reason in
            // the status table, and the engine comes up with the others.
            let mut started = provider.start(sink.clone()).await;
            if let Err(e) = &started {
                warn!(provider = %slot.name, error = %e, "provider failed to start; trying once more");
                started = provider.start(sink).await;
            }
            match started {
                Ok(caps) => {
                    lock(&slot.status).started(caps.len());
                    lines.add_provider(slot.id, caps);
                }
                Err(e) => {
                    let reason = format!("{} failed to start twice: {e}", slot.name);
                    warn!(provider = %slot.name, %reason, "provider disabled");
                    lines.add_provider(slot.id, Vec::new());
                    let mut st = lock(&slot.status);
                    st.state = ServiceState::Disabled;
                    st.last_error = Some(reason.clone());
                    st.reason = Some(reason);
                }
            }
        }
        if let Some(first) = inner.providers.first() {
            let disabled = |p: &ProviderSlot| lock(&p.status).state == ServiceState::Disabled;
            if inner.providers.iter().all(disabled) {
                let reasons: Vec<String> = inner
                    .providers
                    .iter()
                    .filter_map(|p| lock(&p.status).reason.clone())
                    .collect();
                return Err(Error::ProviderUnavailable {
                    provider: first.id,
                    reason: format!("no provider could start: {}", reasons.join("; ")),
                });
            }
        }
        inner.set_lines(lines);
        Ok(Engine { inner, providers })
    }
}

/// The call-control engine. Cheap to clone; every clone is the same engine.
///
/// Applications [`logon`](Engine::logon) to get a [`Session`], and do everything else through it.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
    /// The providers, owned here and by every session (see [`Providers`]).
    providers: Providers,
}

/// Counts of what the engine holds, for leak checks and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Application sessions logged on.
    pub sessions: usize,
    /// Calls the engine tracks (live calls, and idle calls some session still holds).
    pub calls: usize,
    /// Call handles held by all sessions.
    pub call_handles: usize,
    /// Line handles (opens) held by all sessions.
    pub line_handles: usize,
    /// Make-call requests waiting for their provider.
    pub pending_requests: usize,
    /// Calls by state (only states with calls), in state order.
    pub calls_by_state: Vec<(CallStateKind, usize)>,
    /// Events waiting in sessions' queues, all readers together.
    pub queued_events: usize,
    /// The longest queue of one reader (the slowest consumer's backlog).
    pub longest_queue: usize,
    /// Provider operations that panicked or did not finish in time, all providers together, since
    /// the engine started.
    pub provider_faults: u64,
    /// Provider reports the engine refused, all providers together, since the engine started.
    pub refused_reports: u64,
}

impl EngineStats {
    /// Whether the engine holds nothing: no session, call, handle, request or queued event (the
    /// fault totals, which only grow, do not count).
    pub fn holds_nothing(&self) -> bool {
        self.sessions == 0
            && self.calls == 0
            && self.call_handles == 0
            && self.line_handles == 0
            && self.pending_requests == 0
            && self.queued_events == 0
    }
}

impl Engine {
    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            services: Vec::new(),
            profiles: Vec::new(),
            default_profile: None,
            queue_capacity: DEFAULT_EVENT_QUEUE_CAPACITY,
            cdr: None,
            provider_deadline: DEFAULT_PROVIDER_DEADLINE,
        }
    }

    /// Logs an application on: a new, individual session on the default profile, with its own handles
    /// and event stream. `app_name` identifies the application in logs, routes and hand-offs (1–256
    /// characters). See [`Engine::logon_with`] for profiles and the shared session.
    pub async fn logon(&self, app_name: &str) -> Result<Session, Error> {
        self.logon_with(LogonOptions::new(app_name)).await
    }

    /// Logs an application on with a profile, to an individual or to the shared session.
    ///
    /// The profile's providers are asked whether they can serve one more session
    /// ([`Provider::session_logon`]), each once more if it says no; a provider that says no twice (or
    /// that failed to start with the engine) disables its whole service for this session, and
    /// [`Session::disabled_services`] says which and why. Errors, each leaving the engine as it was:
    /// [`Error::InvalidParameter`] for a bad application name or a profile other than the shared
    /// session's, [`Error::UnknownProfile`], [`Error::SessionLimit`] when a provider already serves as
    /// many sessions as it can, [`Error::NoServiceAvailable`] when every service is disabled.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tapir::Error> {
    /// use tapir::profile::LogonOptions;
    /// let engine = tapir::Engine::builder().build().await?;
    /// let a = engine.logon_with(LogonOptions::new("dialer").shared()).await?;
    /// let b = engine.logon_with(LogonOptions::new("monitor").shared()).await?;
    /// assert_eq!(a.id(), b.id());
    /// # Ok(()) }
    /// ```
    pub async fn logon_with(&self, options: LogonOptions) -> Result<Session, Error> {
        let app = options.app.as_str();
        if app.is_empty() || app.chars().count() > 256 {
            return Err(Error::InvalidParameter {
                reason: "an application name has 1 to 256 characters".into(),
            });
        }
        let engine = &self.inner;
        let profile = options
            .profile
            .clone()
            .unwrap_or_else(|| engine.default_profile.clone());
        if options.mode == SessionMode::Individual {
            let session = engine
                .open_session(app, &profile, false, &self.providers)
                .await?;
            // Only an engine shutting down meanwhile can have ended it.
            return Session::join(engine, &self.providers, &session, app)
                .ok_or(Error::SessionEnded);
        }
        // One log-on at a time decides whether the shared session exists.
        let mut shared = engine.shared.lock().await;
        if let Some(session) = shared.as_ref() {
            if options
                .profile
                .as_ref()
                .is_some_and(|p| *p != session.profile)
            {
                return Err(Error::InvalidParameter {
                    reason: format!("the shared session uses profile {:?}", session.profile),
                });
            }
            if let Some(joined) = Session::join(engine, &self.providers, session, app) {
                debug!(session = %session.inbox.id, app, "joined the shared session");
                return Ok(joined);
            }
        }
        let session = engine
            .open_session(app, &profile, true, &self.providers)
            .await?;
        *shared = Some(session.clone());
        Session::join(engine, &self.providers, &session, app).ok_or(Error::SessionEnded)
    }

    /// Every line device of every provider, with its capabilities.
    pub fn lines(&self) -> Vec<LineInfo> {
        self.inner.line_infos()
    }

    /// What the engine holds now.
    pub fn stats(&self) -> EngineStats {
        let mut stats = EngineStats {
            sessions: self.inner.sessions.len(),
            calls: self.inner.call_count(),
            pending_requests: self.inner.pending.len(),
            ..EngineStats::default()
        };
        // Locks are taken only after the maps are let go of: whoever holds a call's or a queue's lock
        // may be waiting to change a map.
        let sessions: Vec<Arc<crate::session_state::SessionState>> = self
            .inner
            .sessions
            .iter()
            .map(|s| s.value().clone())
            .collect();
        for s in sessions {
            stats.call_handles += s.calls.len();
            stats.line_handles += s.lines.len();
            let (queued, longest) = lock(&s.inbox.queue).depth();
            stats.queued_events += queued;
            stats.longest_queue = stats.longest_queue.max(longest);
        }
        let mut by_state = std::collections::BTreeMap::new();
        for c in self.inner.all_calls() {
            *by_state.entry(c.state().kind()).or_insert(0) += 1;
        }
        stats.calls_by_state = by_state.into_iter().collect();
        for p in self.inner.providers.iter() {
            let status = lock(&p.status);
            stats.provider_faults += status.faults;
            stats.refused_reports += status.refused_reports;
        }
        stats
    }

    /// Routes offered calls of `class` (and of longer classes no longer route matches) to the application
    /// that logs on as `application`. Replaces an earlier route for the same class; takes effect for the
    /// next offered call. See [`tapir_core::route`] for the class scheme.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tapir::Error> {
    /// let engine = tapir::Engine::builder().build().await?;
    /// engine.set_route("voice.5551", "sales")?;
    /// engine.set_route("voice", "reception")?;
    /// assert_eq!(engine.routes().0.len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn set_route(&self, class: &str, application: &str) -> Result<(), Error> {
        write(&self.inner.routes).set(class, application, SystemTime::now())?;
        info!(class, application, "route set");
        Ok(())
    }

    /// Removes the route for exactly `class`; calls fall back to the next-longest matching route.
    /// Returns whether there was one.
    pub fn clear_route(&self, class: &str) -> bool {
        let removed = write(&self.inner.routes).clear(class).is_some();
        info!(class, removed, "route cleared");
        removed
    }

    /// Replaces the default route (where calls that match no route go). [`DefaultRoute::Reject`]
    /// rejects them: it loses calls.
    pub fn set_default_route(&self, default: DefaultRoute) {
        info!(?default, "default route set");
        write(&self.inner.routes).set_default(default);
    }

    /// The routes (in class order) and the default route.
    pub fn routes(&self) -> (Vec<Route>, DefaultRoute) {
        let table = read(&self.inner.routes);
        (table.routes(), table.default_route().clone())
    }

    /// Logs every session off (dropping the calls they solely own) and stops every provider.
    pub async fn shutdown(&self) {
        let sessions: Vec<Arc<crate::session_state::SessionState>> = self
            .inner
            .sessions
            .iter()
            .map(|s| s.value().clone())
            .collect();
        for s in sessions {
            self.inner.end_session(&s).await;
        }
        for (p, provider) in self.inner.providers.iter().zip(self.providers.iter()) {
            if lock(&p.status).state != ServiceState::Disabled {
                provider.stop().await;
            }
            lock(&p.status).state = ServiceState::Stopped;
        }
        self.inner.stopped.store(true, Ordering::SeqCst);
    }

    /// The status table: the engine's row, then one row per provider.
    pub fn status(&self) -> Vec<StatusRow> {
        self.inner.status()
    }
}
