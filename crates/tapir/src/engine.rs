//! The engine: providers, lines, sessions and calls, and how provider events reach sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{
    Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak,
};
use std::time::SystemTime;

use dashmap::DashMap;
use smallvec::SmallVec;
use tapir_core::caps::LineCaps;
use tapir_core::cdr::CdrSink;
use tapir_core::gate::{AddressUsage, CallContext, CallRole};
use tapir_core::info::{CallInfo, InfoChange};
use tapir_core::media::MediaModes;
use tapir_core::params::RequestId;
use tapir_core::privilege::{CallPrivilege, LinePrivileges};
use tapir_core::route::{DefaultRoute, Route, RouteTable, call_class};
use tapir_core::state::{CallState, CallStateKind, initial_state_allowed, transition_allowed};
use tapir_core::{AddressId, CallLegId, Error, LineId, ProviderId};
use tapir_provider::{EventHandler, EventSink, LineEvent, NewCall, Provider, ProviderEvent};
use tracing::{Instrument, debug, info, warn};

use crate::detail::{Clock, Detail, Finished};
use crate::event::{Event, EventQueue};
use crate::handles::{CallHandle, HandleMint, LineHandle};
use crate::profile::{
    DEFAULT_PROFILE, DisabledService, LogonOptions, Profile, Service, SessionMode,
};
use crate::session::{LineInfo, Reader, Session, SessionId};
use crate::status::{ProviderStatus, ServiceState, StatusRow};

/// The engine's concurrent maps. Their keys are numbers the engine assigns itself (handles, session and
/// request numbers, provider leg IDs), so a fast seeded hash is enough; SipHash was a measurable part of
/// every event's delivery (docs/benchmarks.md).
pub(crate) type FastDashMap<K, V> = DashMap<K, V, foldhash::fast::RandomState>;

/// Locks a mutex, carrying on if a panicking thread poisoned it: every critical section in the engine
/// leaves its data consistent before doing anything that could panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

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
    /// [`Event::EventsLost`]. Default [`DEFAULT_EVENT_QUEUE_CAPACITY`].
    pub fn event_queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
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
        let mut services = Vec::new();
        for (index, service) in self.services.into_iter().enumerate() {
            let mut ids = Vec::new();
            for provider in service.providers {
                let id = ProviderId(providers.len() as u16);
                ids.push(id);
                providers.push(ProviderSlot {
                    id,
                    name: provider.name().to_owned(),
                    service: index,
                    provider: Arc::downgrade(&provider),
                    status: Mutex::new(ProviderStatus::starting()),
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
        let inner = Arc::new(Inner {
            usage: Mutex::new(vec![0; providers.len()]),
            providers,
            services,
            profiles,
            default_profile,
            shared: tokio::sync::Mutex::new(None),
            next_reader: AtomicU64::new(0),
            lines: OnceLock::new(),
            sessions: FastDashMap::default(),
            calls: owned.iter().map(|_| FastDashMap::default()).collect(),
            pending: FastDashMap::default(),
            next_request: AtomicU64::new(1),
            next_open: AtomicU64::new(0),
            mint: HandleMint::new(),
            queue_capacity: self.queue_capacity,
            routes: RwLock::new(RouteTable::default()),
            stopped: AtomicBool::new(false),
            runtime,
            cdr: self.cdr,
            clock: Clock::now(),
        });
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
                    lines
                        .ranges
                        .push((lines.all.len() as u32, caps.len() as u32));
                    lock(&slot.status).started(caps.len());
                    for (local, caps) in caps.into_iter().enumerate() {
                        let id = LineId(lines.all.len() as u32);
                        lines.all.push(Arc::new(LineSlot::new(
                            id,
                            slot.id,
                            LineId(local as u32),
                            caps,
                        )));
                    }
                }
                Err(e) => {
                    let reason = format!("{} failed to start twice: {e}", slot.name);
                    warn!(provider = %slot.name, %reason, "provider disabled");
                    lines.ranges.push((lines.all.len() as u32, 0));
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
        // Only `build` sets the lines, once; a second set cannot happen.
        let _ = inner.lines.set(lines);
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

/// The providers, in [`ProviderId`] order. The engine's public handles ([`Engine`], [`Session`]) own
/// them; the engine's core only refers to them. That breaks the cycle core → provider → event handler
/// → core without the event handler holding the core weakly (upgrading a weak reference per provider
/// event was a shared write on every event, the hottest spot of a call's life).
pub(crate) type Providers = Arc<[Arc<dyn Provider>]>;

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
            return engine
                .add_reader(&session, app, &self.providers)
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
            if let Some(joined) = engine.add_reader(session, app, &self.providers) {
                debug!(session = %session.id, app, "joined the shared session");
                return Ok(joined);
            }
        }
        let session = engine
            .open_session(app, &profile, true, &self.providers)
            .await?;
        *shared = Some(session.clone());
        engine
            .add_reader(&session, app, &self.providers)
            .ok_or(Error::SessionEnded)
    }

    /// Every line device of every provider, with its capabilities.
    pub fn lines(&self) -> Vec<LineInfo> {
        self.inner.line_infos()
    }

    /// What the engine holds now.
    pub fn stats(&self) -> EngineStats {
        let mut stats = EngineStats {
            sessions: self.inner.sessions.len(),
            calls: self.inner.calls.iter().map(|c| c.len()).sum(),
            pending_requests: self.inner.pending.len(),
            ..EngineStats::default()
        };
        // Locks are taken only after the maps are let go of: whoever holds a call's or a queue's lock
        // may be waiting to change a map.
        let sessions: Vec<Arc<SessionInner>> = self
            .inner
            .sessions
            .iter()
            .map(|s| s.value().clone())
            .collect();
        for s in sessions {
            stats.call_handles += s.calls.len();
            stats.line_handles += s.lines.len();
            let (queued, longest) = lock(&s.queue).depth();
            stats.queued_events += queued;
            stats.longest_queue = stats.longest_queue.max(longest);
        }
        let calls: Vec<Arc<CallEntry>> = self
            .inner
            .calls
            .iter()
            .flat_map(|p| p.iter().map(|c| c.value().clone()).collect::<Vec<_>>())
            .collect();
        let mut by_state = std::collections::BTreeMap::new();
        for c in calls {
            let kind = lock(&c.rec).state.kind();
            *by_state.entry(kind).or_insert(0) += 1;
        }
        stats.calls_by_state = by_state.into_iter().collect();
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
        let sessions: Vec<Arc<SessionInner>> = self
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

pub(crate) struct ProviderSlot {
    pub(crate) id: ProviderId,
    pub(crate) name: String,
    /// Index of its service.
    pub(crate) service: usize,
    /// Owned by the engine's public handles ([`Providers`]); gone once they all are.
    pub(crate) provider: Weak<dyn Provider>,
    pub(crate) status: Mutex<ProviderStatus>,
}

pub(crate) struct ServiceSlot {
    pub(crate) name: String,
    pub(crate) display_name: Option<String>,
    pub(crate) providers: Vec<ProviderId>,
    pub(crate) max_sessions: Option<u32>,
}

#[derive(Default)]
pub(crate) struct Lines {
    pub(crate) all: Vec<Arc<LineSlot>>,
    /// Per provider: (first engine line ID, number of lines).
    ranges: Vec<(u32, u32)>,
}

/// One line device as the engine sees it.
pub(crate) struct LineSlot {
    pub(crate) id: LineId,
    pub(crate) provider: ProviderId,
    /// The provider's own ID for the line.
    pub(crate) local: LineId,
    pub(crate) caps: LineCaps,
    pub(crate) openers: Mutex<Vec<Opener>>,
    pub(crate) usage: Vec<Mutex<AddressUsage>>,
    /// Serialises telling the provider that the line is opened or closed; holds whether it is open.
    pub(crate) provider_open: tokio::sync::Mutex<bool>,
}

impl LineSlot {
    fn new(id: LineId, provider: ProviderId, local: LineId, mut caps: LineCaps) -> Self {
        // Hand-off is the engine's own operation: every address has it.
        for a in &mut caps.addresses {
            a.call_features = a
                .call_features
                .with(tapir_core::gate::CallOperation::Handoff);
        }
        Self {
            id,
            provider,
            local,
            usage: caps
                .addresses
                .iter()
                .map(|_| Mutex::new(AddressUsage::default()))
                .collect(),
            caps,
            openers: Mutex::new(Vec::new()),
            provider_open: tokio::sync::Mutex::new(false),
        }
    }

    pub(crate) fn usage(&self, address: AddressId) -> AddressUsage {
        self.usage
            .get(address.0 as usize)
            .map(|u| *lock(u))
            .unwrap_or_default()
    }

    fn count(&self, address: AddressId, state: CallStateKind, delta: i32) {
        if let Some(u) = self.usage.get(address.0 as usize) {
            lock(u).count(state, delta);
        }
    }

    /// Moves one call of `address` from state `from` to `to` (one lock, not two).
    fn shift(&self, address: AddressId, from: CallStateKind, to: CallStateKind) {
        if let Some(u) = self.usage.get(address.0 as usize) {
            let mut u = lock(u);
            u.count(from, -1);
            u.count(to, 1);
        }
    }
}

/// One session's open of a line.
#[derive(Clone)]
pub(crate) struct Opener {
    pub(crate) session: Arc<SessionInner>,
    pub(crate) handle: LineHandle,
    pub(crate) privileges: LinePrivileges,
    pub(crate) media_modes: MediaModes,
    pub(crate) priority: u32,
    pub(crate) order: u64,
}

/// A session's state inside the engine.
pub(crate) struct SessionInner {
    pub(crate) id: SessionId,
    /// The application that established it.
    pub(crate) app: String,
    /// Every application using it (more than one only for the shared session).
    pub(crate) apps: Mutex<Vec<String>>,
    pub(crate) profile: String,
    pub(crate) shared: bool,
    /// The providers it uses (counted against their session limits until it ends).
    pub(crate) providers: Vec<ProviderId>,
    /// Per engine line: whether the session may see and open it.
    pub(crate) allowed: Vec<bool>,
    pub(crate) disabled: Vec<DisabledService>,
    /// The event queues, one per reader. Its lock also guards "has the session ended", so that a handle
    /// is never added to a session after its log-off collected the handles to release.
    pub(crate) queue: Mutex<EventQueue>,
    pub(crate) lines: FastDashMap<LineHandle, OpenLine>,
    pub(crate) calls: FastDashMap<CallHandle, Arc<CallEntry>>,
    /// Where the session dials from, for address translation.
    pub(crate) location: Mutex<Option<crate::translate::Location>>,
}

impl SessionInner {
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

    pub(crate) fn may_use(&self, line: LineId) -> bool {
        self.allowed.get(line.0 as usize).copied().unwrap_or(false)
    }

    /// Adds a call handle unless the session has ended.
    fn adopt(&self, handle: CallHandle, entry: &Arc<CallEntry>) -> bool {
        let q = lock(&self.queue);
        if q.ended {
            return false;
        }
        self.calls.insert(handle, entry.clone());
        true
    }
}

pub(crate) struct OpenLine {
    pub(crate) line: Arc<LineSlot>,
}

/// A request that may create calls (make call, setup transfer, setup conference …), in flight. Each call
/// the provider reports with the request's ID is bound to a fresh, not yet published handle of the
/// requesting session.
pub(crate) struct Pending {
    pub(crate) session: Arc<SessionInner>,
    pub(crate) line: LineHandle,
    pub(crate) bound: Vec<(CallLegId, CallHandle)>,
}

/// One call leg as the engine tracks it.
pub(crate) struct CallEntry {
    pub(crate) key: (ProviderId, CallLegId),
    pub(crate) line: Arc<LineSlot>,
    pub(crate) address: AddressId,
    /// The call's tracing span, kept only when tracing records it (most runs do not: a disabled span
    /// is 40 bytes of every call for nothing).
    span: Option<Box<tracing::Span>>,
    /// Every change to the call is applied, and delivered to every session, under this lock: that is
    /// what gives each call one order that all sessions see.
    pub(crate) rec: Mutex<CallRecord>,
    /// The record's state kind (its index in [`CallStateKind::ALL`]), kept beside the lock so that
    /// the gate judging the call's consultation partner reads it without taking a second call's lock.
    kind: AtomicU8,
}

impl CallEntry {
    /// The call's state kind, as last applied to its record.
    pub(crate) fn kind(&self) -> CallStateKind {
        CallStateKind::ALL
            .get(usize::from(self.kind.load(Ordering::Acquire)))
            .copied()
            .unwrap_or(CallStateKind::Unknown)
    }

    /// Applies `state` to the record (held locked by the caller) and its mirror.
    fn set_state(&self, rec: &mut CallRecord, state: CallState) {
        rec.state = state;
        self.kind.store(kind_code(state.kind()), Ordering::Release);
    }

    /// The capabilities of the address the call is on.
    pub(crate) fn address_caps(&self) -> Result<&tapir_core::caps::AddressCaps, Error> {
        self.line
            .caps
            .addresses
            .get(self.address.0 as usize)
            .ok_or(Error::InvalidAddressId)
    }

    /// The call's tracing span (a disabled one when tracing does not record it).
    pub(crate) fn span(&self) -> tracing::Span {
        self.span
            .as_deref()
            .cloned()
            .unwrap_or_else(tracing::Span::none)
    }

    /// What the gate needs to judge an operation on this call: its address's capabilities and the call's
    /// context. The gate and the feature set an application reads both start here.
    pub(crate) fn gate_input(
        &self,
        rec: &CallRecord,
    ) -> Result<(&tapir_core::caps::AddressCaps, CallContext), Error> {
        let caps = self.address_caps()?;
        Ok((
            caps,
            CallContext {
                state: rec.state,
                role: rec.role,
                usage: self.line.usage(self.address),
                // A partner the engine no longer tracks has gone idle.
                partner: rec
                    .partner
                    .as_ref()
                    .map(|p| p.upgrade().map_or(CallStateKind::Idle, |p| p.kind())),
                media: rec.info.media_mode,
            },
        ))
    }
}

pub(crate) struct CallRecord {
    pub(crate) state: CallState,
    /// Shared with the provider's own copy until either changes it.
    pub(crate) info: Arc<CallInfo>,
    /// The call's relation to others, as the engine's own operations made it (consultation call,
    /// conference parent or party). The gate reads it.
    pub(crate) role: CallRole,
    /// For a conference parent: its parties, in the order they were added.
    pub(crate) parties: Parties,
    /// For a conference party: its parent.
    pub(crate) conference: Option<Weak<CallEntry>>,
    /// The other call of a consultation the engine set up: for the held original (or the conference
    /// waiting for a party), its consultation call; for the consultation call, the original.
    pub(crate) partner: Option<Weak<CallEntry>>,
    /// Inline up to two (an owner and a monitor, the usual case): no block of its own per call.
    pub(crate) holders: SmallVec<[Holder; 2]>,
    /// The engine no longer tracks the call (idle, no holders); late events are ignored.
    pub(crate) forgotten: bool,
    /// Notes for the call's detail record (only when the engine has a record sink).
    pub(crate) detail: Option<Box<Detail>>,
}

/// A conference parent's parties, in the order they were added; for every other call (nearly all) a
/// pointer's worth rather than an empty list's.
#[derive(Default)]
#[allow(clippy::box_collection)]
pub(crate) struct Parties(Option<Box<Vec<Arc<CallEntry>>>>);

impl Parties {
    pub(crate) fn list(&self) -> &[Arc<CallEntry>] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }

    fn push(&mut self, party: Arc<CallEntry>) {
        self.0.get_or_insert_with(Box::default).push(party);
    }

    fn retain(&mut self, keep: impl FnMut(&Arc<CallEntry>) -> bool) {
        if let Some(list) = &mut self.0 {
            list.retain(keep);
        }
    }

    fn clear(&mut self) {
        self.0 = None;
    }
}

/// One session's handle on a call.
pub(crate) struct Holder {
    pub(crate) session: Arc<SessionInner>,
    pub(crate) handle: CallHandle,
    pub(crate) line: LineHandle,
    pub(crate) privilege: CallPrivilege,
    /// Whether the session has been given the handle. Until then its events wait in `held_back`.
    pub(crate) published: bool,
    /// Whether the session asked for the digits detected on the call.
    pub(crate) digits: bool,
    /// Boxed: almost every holder is published at once and never needs it, and a box is a third of
    /// an empty `Vec` in every holder of every call.
    #[allow(clippy::box_collection)]
    pub(crate) held_back: Option<Box<Vec<Event>>>,
}

/// The index of `kind` in [`CallStateKind::ALL`], which lists the states in declaration order.
fn kind_code(kind: CallStateKind) -> u8 {
    kind as u8
}

/// Ends a party's membership on its own record: its role is plain again; the conference it was in,
/// if that is still there, is returned for its list to be updated (with the party's lock let go).
fn detach_party(rec: &mut CallRecord) -> Option<Arc<CallEntry>> {
    rec.role = CallRole::Plain;
    rec.conference.take().and_then(|p| p.upgrade())
}

impl Holder {
    /// A handle the session has been given (its events go straight to the session).
    fn published(
        session: Arc<SessionInner>,
        handle: CallHandle,
        line: LineHandle,
        privilege: CallPrivilege,
    ) -> Self {
        Self {
            session,
            handle,
            line,
            privilege,
            published: true,
            digits: false,
            held_back: None,
        }
    }

    fn deliver(&mut self, event: Event) {
        if self.published {
            self.session.push(event);
        } else {
            self.held_back.get_or_insert_default().push(event);
        }
    }

    pub(crate) fn is(&self, session: &Arc<SessionInner>, handle: CallHandle) -> bool {
        self.handle == handle && Arc::ptr_eq(&self.session, session)
    }
}

impl CallRecord {
    pub(crate) fn owners(&self) -> usize {
        self.holders
            .iter()
            .filter(|h| h.privilege == CallPrivilege::Owner)
            .count()
    }

    pub(crate) fn monitors(&self) -> usize {
        self.holders.len() - self.owners()
    }

    pub(crate) fn holder(
        &self,
        session: &Arc<SessionInner>,
        handle: CallHandle,
    ) -> Option<&Holder> {
        self.holders.iter().find(|h| h.is(session, handle))
    }

    fn deliver_all(&mut self, make: impl Fn(&Holder) -> Event) {
        for h in &mut self.holders {
            let e = make(h);
            h.deliver(e);
        }
    }

    /// Tells every holder but `except` that the number of owners or monitors changed.
    pub(crate) fn announce_privileges(&mut self, except: CallHandle, changed: InfoChange) {
        if self.state.is_idle() {
            return;
        }
        for h in &mut self.holders {
            if h.handle != except {
                let call = h.handle;
                h.deliver(Event::CallInfo { call, changed });
            }
        }
    }
}

/// Receives provider events on the providers' tasks and hands them to the engine. It holds the core
/// strongly (the core does not own the providers, so there is no cycle): no reference count is touched
/// per event.
struct Dispatcher {
    engine: Arc<Inner>,
}

impl EventHandler for Dispatcher {
    fn on_event(&self, provider: ProviderId, event: ProviderEvent) {
        self.engine.on_provider_event(provider, event);
    }
}

pub(crate) struct Inner {
    pub(crate) providers: Vec<ProviderSlot>,
    pub(crate) lines: OnceLock<Lines>,
    pub(crate) sessions: FastDashMap<SessionId, Arc<SessionInner>>,
    /// Per provider (indexed by its ID): its call legs. A map per provider keys by the leg alone,
    /// a word less per entry than one map keyed by (provider, leg).
    pub(crate) calls: Vec<FastDashMap<CallLegId, Arc<CallEntry>>>,
    pub(crate) pending: FastDashMap<RequestId, Pending>,
    pub(crate) next_request: AtomicU64,
    pub(crate) next_open: AtomicU64,
    pub(crate) mint: HandleMint,
    pub(crate) queue_capacity: usize,
    pub(crate) services: Vec<ServiceSlot>,
    pub(crate) profiles: HashMap<String, Profile>,
    pub(crate) default_profile: String,
    /// The shared session, once established. Its lock serialises log-ons to it.
    pub(crate) shared: tokio::sync::Mutex<Option<Arc<SessionInner>>>,
    /// Per provider: how many sessions use it.
    pub(crate) usage: Mutex<Vec<u32>>,
    pub(crate) next_reader: AtomicU64,
    /// Which application owns offered calls of which class.
    pub(crate) routes: RwLock<RouteTable>,
    /// `shutdown` ran.
    pub(crate) stopped: AtomicBool,
    runtime: tokio::runtime::Handle,
    /// Where finished call detail records go, if anywhere.
    cdr: Option<Arc<dyn CdrSink>>,
    /// Wall-clock anchor for the records' times.
    clock: Clock,
}

impl Inner {
    /// Establishes a session on `profile`: counts it against the session limits, asks the providers,
    /// works out its lines. Leaves nothing behind when it fails.
    async fn open_session(
        &self,
        app: &str,
        profile_name: &str,
        shared: bool,
        providers: &Providers,
    ) -> Result<Arc<SessionInner>, Error> {
        let profile = self
            .profiles
            .get(profile_name)
            .ok_or_else(|| Error::UnknownProfile {
                name: profile_name.to_owned(),
            })?;
        let services: Vec<&ServiceSlot> = profile
            .services
            .iter()
            .filter_map(|name| self.services.iter().find(|s| &s.name == name))
            .collect();
        let mut reserved: Vec<ProviderId> = services
            .iter()
            .flat_map(|s| s.providers.iter().copied())
            .collect();
        // Count the session against every limit at once, or against none.
        {
            let mut usage = lock(&self.usage);
            for &id in &reserved {
                let p = self.provider(id);
                let limits = [
                    providers[id.0 as usize].session_limit(),
                    self.services[p.service].max_sessions,
                ];
                if let Some(limit) = limits.into_iter().flatten().min()
                    && usage[id.0 as usize] >= limit
                {
                    info!(app, provider = %p.name, limit, "log-on refused: session limit");
                    return Err(Error::SessionLimit {
                        provider: id,
                        name: p.name.clone(),
                        limit,
                    });
                }
            }
            for &id in &reserved {
                usage[id.0 as usize] += 1;
            }
        }
        let mut disabled = Vec::new();
        for service in &services {
            let mut failure = None;
            for &id in &service.providers {
                let p = self.provider(id);
                let st = {
                    let st = lock(&p.status);
                    (st.state, st.reason.clone())
                };
                if let (ServiceState::Disabled, reason) = st {
                    failure = Some(reason.unwrap_or_else(|| format!("{} is disabled", p.name)));
                    break;
                }
                let provider = &providers[id.0 as usize];
                let mut answer = provider.session_logon().await;
                if let Err(e) = &answer {
                    debug!(app, provider = %p.name, error = %e, "provider refused the session; asking once more");
                    answer = provider.session_logon().await;
                }
                if let Err(e) = answer {
                    lock(&p.status).last_error = Some(e.to_string());
                    failure = Some(format!("{} could not serve the session: {e}", p.name));
                    break;
                }
            }
            if let Some(reason) = failure {
                warn!(app, service = service.name, %reason, "service disabled for the session");
                disabled.push(DisabledService {
                    service: service.name.clone(),
                    reason,
                });
            }
        }
        let usable: Vec<ProviderId> = services
            .iter()
            .filter(|s| !disabled.iter().any(|d| d.service == s.name))
            .flat_map(|s| s.providers.iter().copied())
            .collect();
        {
            let mut usage = lock(&self.usage);
            for id in reserved.iter().filter(|id| !usable.contains(id)) {
                usage[id.0 as usize] = usage[id.0 as usize].saturating_sub(1);
            }
        }
        reserved.retain(|id| usable.contains(id));
        // (An engine without providers has a default profile without services; that is not a failure.)
        if usable.is_empty() && !services.is_empty() {
            let reason = disabled
                .iter()
                .map(|d| format!("{}: {}", d.service, d.reason))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::NoServiceAvailable { reason });
        }
        let allowed = self
            .lines()
            .iter()
            .map(|l| usable.contains(&l.provider) && profile.allows(&l.caps))
            .collect();
        let session = Arc::new(SessionInner {
            id: SessionId::new(),
            app: app.to_owned(),
            apps: Mutex::new(Vec::new()),
            profile: profile_name.to_owned(),
            shared,
            providers: reserved,
            allowed,
            disabled,
            queue: Mutex::new(EventQueue::new(self.queue_capacity)),
            lines: FastDashMap::default(),
            calls: FastDashMap::default(),
            location: Mutex::new(profile.location.clone()),
        });
        self.sessions.insert(session.id, session.clone());
        debug!(session = %session.id, app, profile = profile_name, shared, "session established");
        Ok(session)
    }

    /// Gives `app` its own reading of the session's events; `None` if the session has ended.
    fn add_reader(
        self: &Arc<Self>,
        session: &Arc<SessionInner>,
        app: &str,
        providers: &Providers,
    ) -> Option<Session> {
        let reader = Arc::new(Reader {
            id: self.next_reader.fetch_add(1, Ordering::Relaxed),
            app: app.to_owned(),
            notify: Arc::new(tokio::sync::Notify::new()),
        });
        {
            let mut q = lock(&session.queue);
            if q.ended {
                return None;
            }
            q.add_reader(reader.id, reader.notify.clone());
            lock(&session.apps).push(app.to_owned());
        }
        debug!(session = %session.id, app, "logged on");
        Some(Session::new(
            self.clone(),
            providers.clone(),
            session.clone(),
            reader,
        ))
    }

    /// The status table.
    pub(crate) fn status(&self) -> Vec<StatusRow> {
        let engine = StatusRow {
            id: "engine".into(),
            service: "engine".into(),
            display_name: "tapir engine".into(),
            state: if self.stopped.load(Ordering::SeqCst) {
                ServiceState::Stopped
            } else {
                ServiceState::Available
            },
            reason: None,
            lines: self.lines().len(),
            lines_out_of_service: 0,
            sessions: self.sessions.len(),
            last_error: None,
        };
        std::iter::once(engine)
            .chain(self.providers.iter().map(|p| self.status_row(p)))
            .collect()
    }

    /// One provider's row; its sessions are those using it.
    pub(crate) fn status_row(&self, p: &ProviderSlot) -> StatusRow {
        let sessions = lock(&self.usage).get(p.id.0 as usize).copied().unwrap_or(0);
        let mut row = lock(&p.status).row(&p.name, sessions as usize);
        let service = &self.services[p.service];
        let display = service.display_name.as_deref().unwrap_or(&service.name);
        // A provider of one line (a modem) is named by its line too; one of many lines by its
        // service alone.
        let mut own = self.lines().iter().filter(|l| l.provider == p.id);
        row.display_name = match (own.next(), own.next()) {
            (Some(l), None) if service.providers.len() == 1 => {
                format!("{display} ({})", l.caps.name)
            }
            _ => display.to_owned(),
        };
        row.service = service.name.clone();
        row
    }

    pub(crate) fn lines(&self) -> &[Arc<LineSlot>] {
        self.lines.get().map(|l| &l.all[..]).unwrap_or(&[])
    }

    pub(crate) fn line_infos(&self) -> Vec<LineInfo> {
        self.lines()
            .iter()
            .map(|l| LineInfo {
                id: l.id,
                provider: l.provider,
                provider_name: self.provider(l.provider).name.clone(),
                caps: l.caps.clone(),
            })
            .collect()
    }

    pub(crate) fn line(&self, id: LineId) -> Option<&Arc<LineSlot>> {
        self.lines().get(id.0 as usize)
    }

    fn provider_line(&self, provider: ProviderId, local: LineId) -> Option<&Arc<LineSlot>> {
        let lines = self.lines.get()?;
        let (first, count) = *lines.ranges.get(provider.0 as usize)?;
        if local.0 >= count {
            return None;
        }
        lines.all.get((first + local.0) as usize)
    }

    pub(crate) fn provider(&self, id: ProviderId) -> &ProviderSlot {
        &self.providers[id.0 as usize]
    }

    /// The call legs of provider `id` (an ID the engine assigned, so always in range).
    fn calls_of(&self, id: ProviderId) -> &FastDashMap<CallLegId, Arc<CallEntry>> {
        &self.calls[id.0 as usize]
    }

    pub(crate) fn next_request(&self) -> RequestId {
        RequestId(self.next_request.fetch_add(1, Ordering::Relaxed))
    }

    /// A fresh call handle value not already used in `session`.
    pub(crate) fn mint_call_handle(&self, session: &SessionInner) -> CallHandle {
        loop {
            let h = CallHandle(self.mint.next());
            if !session.calls.contains_key(&h) {
                return h;
            }
        }
    }

    fn on_provider_event(&self, provider: ProviderId, event: ProviderEvent) {
        match event {
            ProviderEvent::NewCall(call) => self.on_new_call(provider, call),
            ProviderEvent::CallState { leg, state } => self.on_call_state(provider, leg, state),
            ProviderEvent::CallInfo { leg, info } => self.on_call_info(provider, leg, info),
            ProviderEvent::Digit { leg, digit, mode } => {
                if let Some(entry) = self.entry(provider, leg) {
                    let mut rec = lock(&entry.rec);
                    if !rec.forgotten && !rec.state.is_idle() {
                        for h in rec.holders.iter_mut().filter(|h| h.digits) {
                            let call = h.handle;
                            h.deliver(Event::Digit { call, digit, mode });
                        }
                    }
                }
            }
            ProviderEvent::Line { line, event } => {
                // The status table first: a provider may report a line out of service while it
                // starts, before the engine knows its lines.
                let out = match &event {
                    LineEvent::OutOfService { reason } => Some(Some(reason.clone())),
                    LineEvent::InService => Some(None),
                    _ => None,
                };
                if let Some(out) = out {
                    let p = self.provider(provider);
                    if lock(&p.status).line(line, out) {
                        let row = self.status_row(p);
                        info!(provider = %p.name, state = ?row.state, reason = ?row.reason, "status");
                        for s in self.sessions.iter() {
                            s.push(Event::Status(Box::new(row.clone())));
                        }
                    }
                }
                let Some(slot) = self.provider_line(provider, line) else {
                    warn!(%provider, %line, "line event for an unknown line; ignored");
                    return;
                };
                let openers = lock(&slot.openers).clone();
                for o in openers {
                    o.session.push(Event::Line {
                        line: o.handle,
                        event: event.clone(),
                    });
                }
            }
            ProviderEvent::LineClosed { line } => {
                if let Some(slot) = self.provider_line(provider, line).cloned() {
                    self.on_line_closed(&slot);
                }
            }
        }
    }

    fn entry(&self, provider: ProviderId, leg: CallLegId) -> Option<Arc<CallEntry>> {
        let found = self.calls_of(provider).get(&leg).map(|e| e.clone());
        if found.is_none() {
            debug!(%provider, %leg, "event for a call the engine does not track; ignored");
        }
        found
    }

    /// Picks the owner of an offered call: the highest-priority opener with owner privilege whose media
    /// modes include the call's (any owner, if the call's media mode is not known yet); first opener on
    /// a tie.
    fn pick_owner<'a>(
        openers: impl IntoIterator<Item = &'a Opener>,
        media: MediaModes,
    ) -> Option<&'a Opener> {
        openers
            .into_iter()
            .filter(|o| o.privileges.owns())
            .filter(|o| {
                media.is_empty() || media == MediaModes::UNKNOWN || o.media_modes.intersects(media)
            })
            .min_by_key(|o| (std::cmp::Reverse(o.priority), o.order))
    }

    fn on_new_call(&self, provider: ProviderId, call: NewCall) {
        let Some(line) = self.provider_line(provider, call.line).cloned() else {
            warn!(%provider, line = %call.line, "new call on an unknown line; ignored");
            return;
        };
        if call.address.0 as usize >= line.caps.addresses.len()
            || !initial_state_allowed(call.state.kind())
        {
            warn!(%provider, leg = %call.leg, state = ?call.state, "new call with a bad address or first state; ignored");
            return;
        }
        let key = (provider, call.leg);
        if self.calls_of(provider).contains_key(&call.leg) {
            warn!(%provider, leg = %call.leg, "new call reported twice; ignored");
            return;
        }
        // A call made at a session's request: bind it to a fresh handle of that session.
        let creator = call.request.and_then(|r| {
            let mut p = self.pending.get_mut(&r)?;
            let handle = self.mint_call_handle(&p.session);
            p.bound.push((call.leg, handle));
            Some((p.session.clone(), p.line, handle))
        });
        let openers = lock(&line.openers).clone();

        let mut holders: Vec<Holder> = Vec::with_capacity(openers.len() + 1);
        let mut reject = None;
        let requested = creator.is_some();
        if let Some((session, line, handle)) = creator {
            holders.push(Holder {
                session,
                handle,
                line,
                privilege: CallPrivilege::Owner,
                published: false,
                digits: false,
                held_back: None,
            });
        } else if let Some(o) = self.route(&openers, &call.info, &mut reject) {
            holders.push(Holder {
                session: o.session.clone(),
                handle: self.mint_call_handle(&o.session),
                line: o.handle,
                privilege: CallPrivilege::Owner,
                published: true,
                digits: false,
                held_back: None,
            });
        }
        for o in openers.iter().filter(|o| o.privileges.monitors()) {
            if holders.iter().any(|h| Arc::ptr_eq(&h.session, &o.session)) {
                continue;
            }
            holders.push(Holder {
                session: o.session.clone(),
                handle: self.mint_call_handle(&o.session),
                line: o.handle,
                privilege: CallPrivilege::Monitor,
                published: true,
                digits: false,
                held_back: None,
            });
        }

        let span =
            tracing::info_span!("call", call_id = call.info.call_id.0, %provider, leg = call.leg.0);
        let detail = self
            .cdr
            .as_ref()
            .map(|_| Box::new(Detail::new(call.state, &call.info)));
        let entry = Arc::new(CallEntry {
            key,
            line: line.clone(),
            address: call.address,
            span: (!span.is_disabled()).then(|| Box::new(span)),
            kind: AtomicU8::new(kind_code(call.state.kind())),
            rec: Mutex::new(CallRecord {
                state: call.state,
                info: call.info,
                role: CallRole::Plain,
                parties: Parties::default(),
                conference: None,
                partner: None,
                holders: SmallVec::with_capacity(holders.len()),
                forgotten: false,
                detail,
            }),
        });
        let orphan;
        {
            let _enter = entry.span.as_deref().map(tracing::Span::enter);
            let mut rec = lock(&entry.rec);
            self.calls_of(provider).insert(call.leg, entry.clone());
            line.count(call.address, call.state.kind(), 1);
            for mut h in holders {
                if !h.session.adopt(h.handle, &entry) {
                    continue;
                }
                let new_call = Event::NewCall {
                    call: h.handle,
                    line: h.line,
                    address: call.address,
                    call_id: rec.info.call_id,
                    privilege: h.privilege,
                };
                if h.published {
                    h.session.push(new_call);
                }
                h.deliver(Event::CallState {
                    call: h.handle,
                    state: call.state,
                    privilege: h.privilege,
                });
                rec.holders.push(h);
            }
            let CallRecord {
                detail, holders, ..
            } = &mut *rec;
            if let Some(d) = detail {
                d.note_owners(holders);
            }
            debug!(state = ?call.state, holders = rec.holders.len(), "new call");
            // A call made for a session that has since ended has no one to own it.
            orphan = requested && rec.owners() == 0;
        }
        if orphan {
            self.drop_orphan(&entry);
        }
        if let Some(class) = reject {
            self.reject_unrouted(&entry, class);
        }
    }

    /// Picks the owner of an offered call by the route table: the longest route matching the call's
    /// class whose application has the line open as owner; else the default route. With no route and
    /// the default set to reject, returns `None` and sets `reject` to the call's class.
    fn route<'a>(
        &self,
        openers: &'a [Opener],
        info: &CallInfo,
        reject: &mut Option<String>,
    ) -> Option<&'a Opener> {
        let class = call_class(info.media_mode, info.called.number.as_deref());
        let table = read(&self.routes);
        let pick = |app: &str| {
            Self::pick_owner(
                openers.iter().filter(|o| o.session.serves(app)),
                info.media_mode,
            )
        };
        for route in table.matching(&class) {
            if let Some(o) = pick(&route.application) {
                debug!(
                    class,
                    route = route.class,
                    app = route.application,
                    "routed"
                );
                return Some(o);
            }
            debug!(
                class,
                route = route.class,
                app = route.application,
                "route's application has no owner open on the line; next"
            );
        }
        match table.default_route() {
            DefaultRoute::FirstOwner => Self::pick_owner(openers, info.media_mode),
            DefaultRoute::Application(app) => pick(app),
            DefaultRoute::Reject => {
                *reject = Some(class);
                None
            }
        }
    }

    /// Rejects an offered call that no route takes, saying why in the log.
    fn reject_unrouted(&self, entry: &Arc<CallEntry>, class: String) {
        let Some(provider) = self.provider(entry.key.0).provider.upgrade() else {
            return;
        };
        let leg = entry.key.1;
        let span = entry.span();
        self.runtime.spawn(
            async move {
                warn!(
                    class,
                    "no route for the call's class and the default route rejects: call rejected"
                );
                if let Err(e) = provider.reject(leg).await {
                    warn!(error = %e, "rejecting an unrouted call failed");
                }
            }
            .instrument(span),
        );
    }

    fn on_call_state(&self, provider: ProviderId, leg: CallLegId, state: CallState) {
        let Some(entry) = self.entry(provider, leg) else {
            return;
        };
        let _enter = entry.span.as_deref().map(tracing::Span::enter);
        let orphan;
        let mut record = None;
        let mut left = None;
        {
            let mut rec = lock(&entry.rec);
            let old = rec.state;
            if rec.forgotten || old == state {
                return;
            }
            if !transition_allowed(old.kind(), state.kind()) {
                warn!(from = ?old, to = ?state, "provider reported a transition the state table does not allow; ignored");
                return;
            }
            entry.line.shift(entry.address, old.kind(), state.kind());
            entry.set_state(&mut rec, state);
            debug!(?state, "state");
            rec.deliver_all(|h| Event::CallState {
                call: h.handle,
                state,
                privilege: h.privilege,
            });
            let CallRecord {
                detail,
                info,
                holders,
                ..
            } = &mut *rec;
            if let Some(d) = detail {
                d.changed(old, state);
                if state.is_idle() {
                    record = d.finish(Finished {
                        clock: &self.clock,
                        info,
                        holders,
                        line: entry.line.id,
                        line_name: &entry.line.caps.name,
                        address: entry.address,
                    });
                }
            }
            // A party that hangs up, is dropped, transferred or parked away has left its
            // conference, whichever way it went.
            if rec.conference.is_some()
                && matches!(
                    state.kind(),
                    CallStateKind::Disconnected | CallStateKind::Idle
                )
            {
                left = detach_party(&mut rec);
            }
            if state.is_idle() && rec.holders.is_empty() {
                self.forget(&entry, &mut rec);
            }
            orphan = matches!(state, CallState::Disconnected(_)) && rec.owners() == 0;
        }
        if let Some(parent) = left {
            self.remove_party(&parent, &entry);
        }
        if let (Some(record), Some(sink)) = (record, &self.cdr) {
            sink.record(record);
        }
        if orphan {
            self.drop_orphan(&entry);
        }
    }

    fn on_call_info(&self, provider: ProviderId, leg: CallLegId, info: Arc<CallInfo>) {
        let Some(entry) = self.entry(provider, leg) else {
            return;
        };
        let mut rec = lock(&entry.rec);
        if rec.forgotten || rec.state.is_idle() {
            return;
        }
        let changed = rec.info.diff(&info);
        if changed.is_empty() {
            return;
        }
        if let Some(d) = &mut rec.detail {
            d.note_info(&info);
        }
        rec.info = info;
        rec.deliver_all(|h| Event::CallInfo {
            call: h.handle,
            changed,
        });
    }

    fn on_line_closed(&self, line: &Arc<LineSlot>) {
        let openers = std::mem::take(&mut *lock(&line.openers));
        for o in openers {
            o.session.lines.remove(&o.handle);
            self.release_through_line(&o.session, o.handle);
            o.session.push(Event::LineClosed { line: o.handle });
        }
    }

    /// Removes the engine's record of an idle call nobody holds.
    fn forget(&self, entry: &Arc<CallEntry>, rec: &mut CallRecord) {
        rec.forgotten = true;
        rec.parties.clear();
        rec.conference = None;
        self.calls_of(entry.key.0).remove(&entry.key.1);
        debug!("forgotten");
    }

    /// The orphan policy: a call left with no owner that the far end has cleared (or that was made for a
    /// session that ended) is dropped by the engine, so it cannot linger.
    pub(crate) fn drop_orphan(&self, entry: &Arc<CallEntry>) {
        // (No provider: every handle of the engine is gone, and the provider with it.)
        let Some(provider) = self.provider(entry.key.0).provider.upgrade() else {
            return;
        };
        let leg = entry.key.1;
        let span = entry.span();
        self.runtime.spawn(
            async move {
                debug!("dropping a call without an owner");
                if let Err(e) = provider.drop_call(leg).await {
                    debug!(error = %e, "drop of an ownerless call failed");
                }
            }
            .instrument(span),
        );
    }

    /// Releases one session's handle on a call; forgets the call if it is idle and nobody holds it.
    pub(crate) fn release(
        &self,
        entry: &Arc<CallEntry>,
        session: &Arc<SessionInner>,
        handle: CallHandle,
    ) {
        let mut rec = lock(&entry.rec);
        if let Some(i) = rec.holders.iter().position(|h| h.is(session, handle)) {
            let h = rec.holders.swap_remove(i);
            session.calls.remove(&handle);
            let changed = match h.privilege {
                CallPrivilege::Owner => InfoChange::NUM_OWNERS_DECREASED,
                CallPrivilege::Monitor => InfoChange::NUM_MONITORS,
            };
            rec.announce_privileges(handle, changed);
        } else {
            session.calls.remove(&handle);
        }
        if rec.state.is_idle() && rec.holders.is_empty() && !rec.forgotten {
            self.forget(entry, &mut rec);
        }
    }

    /// Whether `session` is the only owner of a call that is not idle (so releasing it would orphan it).
    pub(crate) fn sole_live_owner(
        entry: &CallEntry,
        session: &Arc<SessionInner>,
        handle: CallHandle,
    ) -> bool {
        let rec = lock(&entry.rec);
        !rec.state.is_idle()
            && rec.owners() == 1
            && rec
                .holder(session, handle)
                .is_some_and(|h| h.privilege == CallPrivilege::Owner)
    }

    /// Releases a handle the way log-off and line close do: a call the session solely owns is dropped
    /// first (the orphan policy), then the handle goes.
    pub(crate) async fn release_dropping(
        &self,
        entry: &Arc<CallEntry>,
        session: &Arc<SessionInner>,
        handle: CallHandle,
    ) {
        if Self::sole_live_owner(entry, session, handle)
            && let Some(provider) = self.provider(entry.key.0).provider.upgrade()
        {
            if let Err(e) = provider
                .drop_call(entry.key.1)
                .instrument(entry.span())
                .await
            {
                debug!(parent: &entry.span(), error = %e, "drop on release failed");
            }
        }
        self.release(entry, session, handle);
    }

    /// Releases, without dropping, the call handles a session holds through one line open.
    fn release_through_line(&self, session: &Arc<SessionInner>, line: LineHandle) {
        for (handle, entry) in Self::handles_through(session, line) {
            self.release(&entry, session, handle);
        }
    }

    pub(crate) fn handles_through(
        session: &Arc<SessionInner>,
        line: LineHandle,
    ) -> Vec<(CallHandle, Arc<CallEntry>)> {
        let all: Vec<(CallHandle, Arc<CallEntry>)> = session
            .calls
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        all.into_iter()
            .filter(|(h, entry)| {
                lock(&entry.rec)
                    .holder(session, *h)
                    .is_some_and(|holder| holder.line == line)
            })
            .collect()
    }

    /// Gives a session the handle of a call it created: the `NewCall` event, then every event held back
    /// for it, in order. Fails if the session ended (and so released the handle) meanwhile.
    pub(crate) fn publish(
        &self,
        session: &Arc<SessionInner>,
        handle: CallHandle,
    ) -> Result<(), Error> {
        let entry = session
            .calls
            .get(&handle)
            .map(|e| e.clone())
            .ok_or(Error::SessionEnded)?;
        let mut rec = lock(&entry.rec);
        let call_id = rec.info.call_id;
        let h = rec
            .holders
            .iter_mut()
            .find(|h| h.is(session, handle))
            .ok_or(Error::SessionEnded)?;
        if !h.published {
            h.published = true;
            session.push(Event::NewCall {
                call: handle,
                line: h.line,
                address: entry.address,
                call_id,
                privilege: h.privilege,
            });
            // Taken, not drained: the buffer is not needed again, so its memory goes with it.
            for e in h.held_back.take().into_iter().flat_map(|b| *b) {
                session.push(e);
            }
        }
        Ok(())
    }

    /// Undoes a creator's handle after its request failed: releases it, and drops the call if that left
    /// it without an owner.
    pub(crate) fn abandon(&self, session: &Arc<SessionInner>, handle: CallHandle) {
        let Some(entry) = session.calls.get(&handle).map(|e| e.clone()) else {
            return;
        };
        self.release(&entry, session, handle);
        let rec = lock(&entry.rec);
        let orphan = !rec.state.is_idle() && rec.owners() == 0;
        drop(rec);
        if orphan {
            self.drop_orphan(&entry);
        }
    }

    /// Finishes a call-creating request: on success every call the provider reported for it is
    /// published to the session and the handles of `legs` are returned in order; on failure every
    /// bound handle is undone. A leg the provider returned but never reported is a provider error.
    pub(crate) async fn finish_request(
        &self,
        session: &Arc<SessionInner>,
        provider: &Arc<dyn Provider>,
        request: RequestId,
        result: Result<Vec<CallLegId>, Error>,
    ) -> Result<Vec<CallHandle>, Error> {
        let bound = self
            .pending
            .remove(&request)
            .map(|(_, p)| p.bound)
            .unwrap_or_default();
        let legs = match result {
            Ok(legs) => legs,
            Err(e) => {
                for (_, handle) in bound {
                    self.abandon(session, handle);
                }
                return Err(e);
            }
        };
        for (_, handle) in &bound {
            self.publish(session, *handle)?;
        }
        let mut handles = Vec::with_capacity(legs.len());
        for leg in legs {
            match bound.iter().find(|(l, _)| *l == leg) {
                Some((_, h)) => handles.push(*h),
                None => {
                    warn!(%leg, "provider returned a call it never reported; dropping it");
                    let _ = provider.drop_call(leg).await;
                    return Err(Error::OperationFailed {
                        reason: "the provider did not report a call it created".into(),
                    });
                }
            }
        }
        Ok(handles)
    }

    /// Makes `session` an owner of the call (hand-off): raises its handle, or gives it a new one.
    pub(crate) fn make_owner(
        &self,
        entry: &Arc<CallEntry>,
        session: &Arc<SessionInner>,
        line: LineHandle,
    ) {
        let mut rec = lock(&entry.rec);
        let state = rec.state;
        if let Some(d) = &mut rec.detail {
            d.note_owner(&session.app);
        }
        let handle = match rec
            .holders
            .iter_mut()
            .find(|h| Arc::ptr_eq(&h.session, session))
        {
            Some(h) if h.privilege == CallPrivilege::Owner => return,
            Some(h) => {
                h.privilege = CallPrivilege::Owner;
                let call = h.handle;
                h.deliver(Event::CallState {
                    call,
                    state,
                    privilege: CallPrivilege::Owner,
                });
                call
            }
            None => match self.hand_out(entry, &mut rec, session, line, CallPrivilege::Owner) {
                Some(handle) => handle,
                None => return,
            },
        };
        rec.announce_privileges(handle, InfoChange::NUM_OWNERS_INCREASED);
    }

    /// Gives `session` a monitor handle, through its open `open`, on each live call of `line` it
    /// holds no handle for (TAPI `lineGetNewCalls`): each announced by `NewCall`, then its state,
    /// before any other event names it. Returns the new handles in the order the calls arrived.
    pub(crate) fn take_up_calls(
        &self,
        line: &Arc<LineSlot>,
        session: &Arc<SessionInner>,
        open: LineHandle,
    ) -> Vec<CallHandle> {
        // Collected before any record is locked: a new call is put in the table with its record
        // locked, so locking records while walking the table could deadlock against it.
        let mut entries: Vec<Arc<CallEntry>> = self
            .calls_of(line.provider)
            .iter()
            .filter(|e| Arc::ptr_eq(&e.value().line, line))
            .map(|e| e.value().clone())
            .collect();
        entries.sort_unstable_by_key(|e| e.key.1.0);
        let mut handles = Vec::new();
        for entry in entries {
            let mut rec = lock(&entry.rec);
            if rec.forgotten
                || rec.state.is_idle()
                || rec.holders.iter().any(|h| Arc::ptr_eq(&h.session, session))
            {
                continue;
            }
            let Some(handle) =
                self.hand_out(&entry, &mut rec, session, open, CallPrivilege::Monitor)
            else {
                break;
            };
            rec.announce_privileges(handle, InfoChange::NUM_MONITORS);
            handles.push(handle);
        }
        handles
    }

    /// Gives `session` a new handle on a live call it holds none of, through its open `line`: the
    /// call's `NewCall`, then its state now, pushed with the record locked, so no event about the
    /// call can come first. `None` once the session has ended.
    fn hand_out(
        &self,
        entry: &Arc<CallEntry>,
        rec: &mut CallRecord,
        session: &Arc<SessionInner>,
        line: LineHandle,
        privilege: CallPrivilege,
    ) -> Option<CallHandle> {
        let handle = self.mint_call_handle(session);
        if !session.adopt(handle, entry) {
            return None;
        }
        session.push(Event::NewCall {
            call: handle,
            line,
            address: entry.address,
            call_id: rec.info.call_id,
            privilege,
        });
        session.push(Event::CallState {
            call: handle,
            state: rec.state,
            privilege,
        });
        rec.holders
            .push(Holder::published(session.clone(), handle, line, privilege));
        Some(handle)
    }

    /// Records that `party` joined the conference `parent` (parent and party locked one at a time).
    /// A consultation call that joins is a consultation no more: neither names the other as its
    /// partner from then on.
    pub(crate) fn join_conference(&self, parent: &Arc<CallEntry>, party: &Arc<CallEntry>) {
        let previous_last = {
            let mut rec = lock(&parent.rec);
            rec.partner = None;
            let previous = rec.parties.list().last().cloned();
            rec.parties.push(party.clone());
            rec.role = CallRole::ConferenceParent {
                parties: rec.parties.list().len() as u32,
            };
            previous
        };
        if let Some(p) = previous_last {
            lock(&p.rec).role = CallRole::ConferenceParty { last_added: false };
        }
        let mut rec = lock(&party.rec);
        rec.role = CallRole::ConferenceParty { last_added: true };
        rec.conference = Some(Arc::downgrade(parent));
        rec.partner = None;
    }

    /// Records that `party` left its conference.
    pub(crate) fn leave_conference(&self, party: &Arc<CallEntry>) {
        let parent = detach_party(&mut lock(&party.rec));
        if let Some(parent) = parent {
            self.remove_party(&parent, party);
        }
    }

    /// Takes `party` out of its conference's list (the party's record already let go of it).
    fn remove_party(&self, parent: &Arc<CallEntry>, party: &Arc<CallEntry>) {
        let new_last = {
            let mut rec = lock(&parent.rec);
            rec.parties.retain(|p| !Arc::ptr_eq(p, party));
            rec.role = CallRole::ConferenceParent {
                parties: rec.parties.list().len() as u32,
            };
            rec.parties.list().last().cloned()
        };
        if let Some(p) = new_last {
            lock(&p.rec).role = CallRole::ConferenceParty { last_added: true };
        }
    }

    /// Ends a session: no more events, every call handle released (solely owned calls dropped), every
    /// line closed.
    pub(crate) async fn end_session(&self, session: &Arc<SessionInner>) {
        {
            let mut q = lock(&session.queue);
            if q.ended {
                return;
            }
            q.end();
        }
        self.release_session(session).await;
    }

    /// Releases what an ended session holds.
    pub(crate) async fn release_session(&self, session: &Arc<SessionInner>) {
        self.sessions.remove(&session.id);
        {
            let mut usage = lock(&self.usage);
            for p in &session.providers {
                if let Some(n) = usage.get_mut(p.0 as usize) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        if session.shared {
            let mut shared = self.shared.lock().await;
            if shared.as_ref().is_some_and(|s| Arc::ptr_eq(s, session)) {
                *shared = None;
            }
        }
        let calls: Vec<(CallHandle, Arc<CallEntry>)> = session
            .calls
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        for (handle, entry) in calls {
            self.release_dropping(&entry, session, handle).await;
        }
        let lines: Vec<(LineHandle, Arc<LineSlot>)> = session
            .lines
            .iter()
            .map(|e| (*e.key(), e.value().line.clone()))
            .collect();
        for (handle, line) in lines {
            session.lines.remove(&handle);
            self.remove_opener(&line, handle).await;
        }
        // Pending requests of this session are cleaned up by the requests themselves when their
        // provider answers.
        debug!(session = %session.id, app = session.app, "logged off");
    }

    /// Removes one opener of a line; tells the provider when the last one goes.
    pub(crate) async fn remove_opener(&self, line: &Arc<LineSlot>, handle: LineHandle) {
        let mut provider_open = line.provider_open.lock().await;
        let now_unused = {
            let mut openers = lock(&line.openers);
            openers.retain(|o| o.handle != handle);
            openers.is_empty()
        };
        if now_unused && *provider_open {
            if let Some(provider) = self.provider(line.provider).provider.upgrade()
                && let Err(e) = provider.close_line(line.local).await
            {
                debug!(line = %line.id, error = %e, "provider close_line failed");
            }
            *provider_open = false;
        }
    }
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_kind_reads_back_from_the_code_a_call_entry_keeps() {
        for kind in CallStateKind::ALL {
            let code = kind_code(kind);
            assert_eq!(CallStateKind::ALL.get(usize::from(code)), Some(&kind));
        }
    }
}
