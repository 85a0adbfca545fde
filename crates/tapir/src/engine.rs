//! The engine: providers, lines, sessions and calls, and how provider events reach sessions.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{
    Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak,
};
use std::time::SystemTime;

use dashmap::DashMap;
use tapir_core::caps::LineCaps;
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

use crate::event::{Event, EventQueue};
use crate::handles::{CallHandle, HandleMint, LineHandle};
use crate::session::{LineInfo, Session, SessionId};
use crate::status::{ProviderStatus, ServiceState, StatusRow};

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
/// let session = engine.logon("my-app")?;
/// # Ok(()) }
/// ```
pub struct EngineBuilder {
    providers: Vec<Arc<dyn Provider>>,
    queue_capacity: usize,
}

impl EngineBuilder {
    /// Adds a provider. Providers are numbered in the order they are added.
    pub fn provider(self, provider: impl Provider) -> Self {
        self.provider_arc(Arc::new(provider))
    }

    /// Adds a provider that is shared with other code (a test harness driving its far ends, say).
    pub fn provider_arc(mut self, provider: Arc<dyn Provider>) -> Self {
        self.providers.push(provider);
        self
    }

    /// How many events a session's queue holds before it starts discarding and reporting
    /// [`Event::EventsLost`]. Default [`DEFAULT_EVENT_QUEUE_CAPACITY`].
    pub fn event_queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Starts every provider and returns the running engine. It must run inside a tokio runtime (the
    /// engine spawns its clean-up work there); elsewhere it fails with `OperationFailed`. If a provider
    /// fails to start, the ones already started are stopped and its error is returned.
    pub async fn build(self) -> Result<Engine, Error> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| Error::OperationFailed {
                reason: "the engine must be built inside a tokio runtime".into(),
            })?;
        let inner = Arc::new(Inner {
            providers: self
                .providers
                .into_iter()
                .enumerate()
                .map(|(i, provider)| ProviderSlot {
                    id: ProviderId(i as u16),
                    name: provider.name().to_owned(),
                    provider,
                    status: Mutex::new(ProviderStatus::starting()),
                })
                .collect(),
            lines: OnceLock::new(),
            sessions: DashMap::new(),
            calls: DashMap::new(),
            pending: DashMap::new(),
            next_request: AtomicU64::new(1),
            next_open: AtomicU64::new(0),
            mint: HandleMint::new(),
            queue_capacity: self.queue_capacity,
            routes: RwLock::new(RouteTable::default()),
            stopped: AtomicBool::new(false),
            runtime,
        });
        let mut lines = Lines::default();
        for slot in &inner.providers {
            let sink = EventSink::new(
                slot.id,
                Arc::new(Dispatcher {
                    engine: Arc::downgrade(&inner),
                }),
            );
            // A provider that fails to start is tried once more; then it is disabled, with the reason in
            // the status table, and the engine comes up with the others.
            let mut started = slot.provider.start(sink.clone()).await;
            if let Err(e) = &started {
                warn!(provider = %slot.name, error = %e, "provider failed to start; trying once more");
                started = slot.provider.start(sink).await;
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
        Ok(Engine { inner })
    }
}

/// The call-control engine. Cheap to clone; every clone is the same engine.
///
/// Applications [`logon`](Engine::logon) to get a [`Session`], and do everything else through it.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

/// Counts of what the engine holds, for leak checks and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
}

impl Engine {
    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            providers: Vec::new(),
            queue_capacity: DEFAULT_EVENT_QUEUE_CAPACITY,
        }
    }

    /// Logs an application on: a new, individual session with its own handles and event stream.
    /// `app_name` identifies the application in logs and to other applications (1–256 characters).
    pub fn logon(&self, app_name: &str) -> Result<Session, Error> {
        if app_name.is_empty() || app_name.chars().count() > 256 {
            return Err(Error::InvalidParameter {
                reason: "an application name has 1 to 256 characters".into(),
            });
        }
        let inner = Arc::new(SessionInner {
            id: SessionId::new(),
            app: app_name.to_owned(),
            queue: Mutex::new(EventQueue::new(self.inner.queue_capacity)),
            notify: tokio::sync::Notify::new(),
            lines: DashMap::new(),
            calls: DashMap::new(),
            location: Mutex::new(None),
        });
        self.inner.sessions.insert(inner.id, inner.clone());
        debug!(session = %inner.id, app = app_name, "logged on");
        Ok(Session::new(self.inner.clone(), inner))
    }

    /// Every line device of every provider, with its capabilities.
    pub fn lines(&self) -> Vec<LineInfo> {
        self.inner.line_infos()
    }

    /// What the engine holds now.
    pub fn stats(&self) -> EngineStats {
        let mut stats = EngineStats {
            sessions: self.inner.sessions.len(),
            calls: self.inner.calls.len(),
            pending_requests: self.inner.pending.len(),
            ..EngineStats::default()
        };
        for s in self.inner.sessions.iter() {
            stats.call_handles += s.calls.len();
            stats.line_handles += s.lines.len();
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
        let sessions: Vec<Arc<SessionInner>> = self
            .inner
            .sessions
            .iter()
            .map(|s| s.value().clone())
            .collect();
        for s in sessions {
            self.inner.end_session(&s).await;
        }
        for p in &self.inner.providers {
            if lock(&p.status).state != ServiceState::Disabled {
                p.provider.stop().await;
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
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) status: Mutex<ProviderStatus>,
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
    pub(crate) app: String,
    /// The event queue. Its lock also guards "has the session ended", so that a handle is never added to
    /// a session after its log-off collected the handles to release.
    pub(crate) queue: Mutex<EventQueue>,
    pub(crate) notify: tokio::sync::Notify,
    pub(crate) lines: DashMap<LineHandle, OpenLine>,
    pub(crate) calls: DashMap<CallHandle, Arc<CallEntry>>,
    /// Where the session dials from, for address translation.
    pub(crate) location: Mutex<Option<crate::translate::Location>>,
}

impl SessionInner {
    pub(crate) fn push(&self, event: Event) {
        lock(&self.queue).push(event);
        self.notify.notify_one();
    }

    pub(crate) fn ended(&self) -> bool {
        lock(&self.queue).ended
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
    pub(crate) span: tracing::Span,
    /// Every change to the call is applied, and delivered to every session, under this lock: that is
    /// what gives each call one order that all sessions see.
    pub(crate) rec: Mutex<CallRecord>,
}

impl CallEntry {
    /// What the gate needs to judge an operation on this call: its address's capabilities and the call's
    /// context. The gate and the feature set an application reads both start here.
    pub(crate) fn gate_input(
        &self,
        rec: &CallRecord,
    ) -> Result<(&tapir_core::caps::AddressCaps, CallContext), Error> {
        let caps = self
            .line
            .caps
            .addresses
            .get(self.address.0 as usize)
            .ok_or(Error::InvalidAddressId)?;
        Ok((
            caps,
            CallContext {
                state: rec.state,
                role: rec.role,
                usage: self.line.usage(self.address),
            },
        ))
    }
}

pub(crate) struct CallRecord {
    pub(crate) state: CallState,
    pub(crate) info: CallInfo,
    /// The call's relation to others, as the engine's own operations made it (consultation call,
    /// conference parent or party). The gate reads it.
    pub(crate) role: CallRole,
    /// For a conference parent: its parties, in the order they were added.
    pub(crate) parties: Vec<Arc<CallEntry>>,
    /// For a conference party: its parent.
    pub(crate) conference: Option<Weak<CallEntry>>,
    pub(crate) holders: Vec<Holder>,
    /// The engine no longer tracks the call (idle, no holders); late events are ignored.
    pub(crate) forgotten: bool,
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
    pub(crate) held_back: Vec<Event>,
}

impl Holder {
    fn deliver(&mut self, event: Event) {
        if self.published {
            self.session.push(event);
        } else {
            self.held_back.push(event);
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

/// Receives provider events on the providers' tasks and hands them to the engine.
struct Dispatcher {
    engine: Weak<Inner>,
}

impl EventHandler for Dispatcher {
    fn on_event(&self, provider: ProviderId, event: ProviderEvent) {
        if let Some(engine) = self.engine.upgrade() {
            engine.on_provider_event(provider, event);
        }
    }
}

pub(crate) struct Inner {
    pub(crate) providers: Vec<ProviderSlot>,
    pub(crate) lines: OnceLock<Lines>,
    pub(crate) sessions: DashMap<SessionId, Arc<SessionInner>>,
    pub(crate) calls: DashMap<(ProviderId, CallLegId), Arc<CallEntry>>,
    pub(crate) pending: DashMap<RequestId, Pending>,
    pub(crate) next_request: AtomicU64,
    pub(crate) next_open: AtomicU64,
    pub(crate) mint: HandleMint,
    pub(crate) queue_capacity: usize,
    /// Which application owns offered calls of which class.
    pub(crate) routes: RwLock<RouteTable>,
    /// `shutdown` ran.
    pub(crate) stopped: AtomicBool,
    runtime: tokio::runtime::Handle,
}

impl Inner {
    /// The status table.
    pub(crate) fn status(&self) -> Vec<StatusRow> {
        let engine = StatusRow {
            id: "engine".into(),
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

    /// One provider's row; its sessions are those with one of its lines open.
    pub(crate) fn status_row(&self, p: &ProviderSlot) -> StatusRow {
        let sessions = self
            .sessions
            .iter()
            .filter(|s| s.lines.iter().any(|l| l.line.provider == p.id))
            .count();
        let mut row = lock(&p.status).row(&p.name, sessions);
        row.display_name = match self.lines().iter().find(|l| l.provider == p.id) {
            Some(l) => format!("{} ({})", p.name, l.caps.name),
            None => p.name.clone(),
        };
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
                            s.push(Event::Status(row.clone()));
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
        let found = self.calls.get(&(provider, leg)).map(|e| e.clone());
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
        if self.calls.contains_key(&key) {
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
                held_back: Vec::new(),
            });
        } else if let Some(o) = self.route(&openers, &call.info, &mut reject) {
            holders.push(Holder {
                session: o.session.clone(),
                handle: self.mint_call_handle(&o.session),
                line: o.handle,
                privilege: CallPrivilege::Owner,
                published: true,
                digits: false,
                held_back: Vec::new(),
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
                held_back: Vec::new(),
            });
        }

        let span =
            tracing::info_span!("call", call_id = call.info.call_id.0, %provider, leg = call.leg.0);
        let entry = Arc::new(CallEntry {
            key,
            line: line.clone(),
            address: call.address,
            span,
            rec: Mutex::new(CallRecord {
                state: call.state,
                info: call.info,
                role: CallRole::Plain,
                parties: Vec::new(),
                conference: None,
                holders: Vec::new(),
                forgotten: false,
            }),
        });
        let orphan;
        {
            let _enter = entry.span.enter();
            let mut rec = lock(&entry.rec);
            self.calls.insert(key, entry.clone());
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
                openers.iter().filter(|o| o.session.app == app),
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
        let provider = self.provider(entry.key.0).provider.clone();
        let leg = entry.key.1;
        let span = entry.span.clone();
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
        let _enter = entry.span.enter();
        let orphan;
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
            entry.line.count(entry.address, old.kind(), -1);
            entry.line.count(entry.address, state.kind(), 1);
            rec.state = state;
            debug!(?state, "state");
            rec.deliver_all(|h| Event::CallState {
                call: h.handle,
                state,
                privilege: h.privilege,
            });
            if state.is_idle() && rec.holders.is_empty() {
                self.forget(&entry, &mut rec);
            }
            orphan = matches!(state, CallState::Disconnected(_)) && rec.owners() == 0;
        }
        if orphan {
            self.drop_orphan(&entry);
        }
    }

    fn on_call_info(&self, provider: ProviderId, leg: CallLegId, info: CallInfo) {
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
        self.calls.remove(&entry.key);
        debug!("forgotten");
    }

    /// The orphan policy: a call left with no owner that the far end has cleared (or that was made for a
    /// session that ended) is dropped by the engine, so it cannot linger.
    pub(crate) fn drop_orphan(&self, entry: &Arc<CallEntry>) {
        let provider = self.provider(entry.key.0).provider.clone();
        let leg = entry.key.1;
        let span = entry.span.clone();
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
        if Self::sole_live_owner(entry, session, handle) {
            let provider = self.provider(entry.key.0).provider.clone();
            if let Err(e) = provider
                .drop_call(entry.key.1)
                .instrument(entry.span.clone())
                .await
            {
                debug!(parent: &entry.span, error = %e, "drop on release failed");
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
            for e in h.held_back.drain(..) {
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
        let call_id = rec.info.call_id;
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
            None => {
                let handle = self.mint_call_handle(session);
                if !session.adopt(handle, entry) {
                    return;
                }
                session.push(Event::NewCall {
                    call: handle,
                    line,
                    address: entry.address,
                    call_id,
                    privilege: CallPrivilege::Owner,
                });
                session.push(Event::CallState {
                    call: handle,
                    state,
                    privilege: CallPrivilege::Owner,
                });
                rec.holders.push(Holder {
                    session: session.clone(),
                    handle,
                    line,
                    privilege: CallPrivilege::Owner,
                    published: true,
                    digits: false,
                    held_back: Vec::new(),
                });
                handle
            }
        };
        rec.announce_privileges(handle, InfoChange::NUM_OWNERS_INCREASED);
    }

    /// Records that `party` joined the conference `parent` (parent and party locked one at a time).
    pub(crate) fn join_conference(&self, parent: &Arc<CallEntry>, party: &Arc<CallEntry>) {
        let previous_last = {
            let mut rec = lock(&parent.rec);
            let previous = rec.parties.last().cloned();
            rec.parties.push(party.clone());
            rec.role = CallRole::ConferenceParent {
                parties: rec.parties.len() as u32,
            };
            previous
        };
        if let Some(p) = previous_last {
            lock(&p.rec).role = CallRole::ConferenceParty { last_added: false };
        }
        let mut rec = lock(&party.rec);
        rec.role = CallRole::ConferenceParty { last_added: true };
        rec.conference = Some(Arc::downgrade(parent));
    }

    /// Records that `party` left its conference.
    pub(crate) fn leave_conference(&self, party: &Arc<CallEntry>) {
        let parent = {
            let mut rec = lock(&party.rec);
            rec.role = CallRole::Plain;
            rec.conference.take().and_then(|p| p.upgrade())
        };
        let Some(parent) = parent else {
            return;
        };
        let new_last = {
            let mut rec = lock(&parent.rec);
            rec.parties.retain(|p| !Arc::ptr_eq(p, party));
            rec.role = CallRole::ConferenceParent {
                parties: rec.parties.len() as u32,
            };
            rec.parties.last().cloned()
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
            q.ended = true;
        }
        session.notify.notify_waiters();
        session.notify.notify_one();
        self.sessions.remove(&session.id);
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
            let provider = &self.provider(line.provider).provider;
            if let Err(e) = provider.close_line(line.local).await {
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
