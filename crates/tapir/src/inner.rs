//! The engine's shared state: its providers and services, lines, sessions, calls and requests in
//! flight, and the few things it does for a call after the call's lock is let go (forgetting it,
//! writing its record, dropping an orphan).
//!
//! Who keeps whom alive: the public handles ([`Engine`](crate::Engine) and every
//! [`Session`](crate::Session)) own the providers ([`Providers`]); [`Inner`] refers to them weakly,
//! and each provider's event handler holds `Inner` strongly. So there is no cycle, and delivering an
//! event touches no shared reference count.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use tapir_core::cdr::CdrSink;
use tapir_core::params::RequestId;
use tapir_core::route::RouteTable;
use tapir_core::{CallLegId, LineId, ProviderId};
use tapir_provider::Provider;
use tracing::{Instrument, debug, info};

use crate::call::{CallEntry, FollowUp};
use crate::detail::Clock;
use crate::handles::{HandleMint, SessionId};
use crate::line::{LineInfo, LineSlot, Lines};
use crate::opens::LineOpens;
use crate::profile::Profile;
use crate::requests::Pending;
use crate::session_state::SessionState;
use crate::status::{ProviderStatus, ServiceState, StatusRow};
use crate::sync::{FastDashMap, lock};

/// The providers, in [`ProviderId`] order, owned by the engine's public handles.
pub(crate) type Providers = Arc<[Arc<dyn Provider>]>;

/// A provider as the engine keeps it.
pub(crate) struct ProviderSlot {
    pub(crate) id: ProviderId,
    pub(crate) name: String,
    /// Index of its service.
    pub(crate) service: usize,
    /// Owned by the engine's public handles ([`Providers`]); gone once they all are.
    pub(crate) provider: Weak<dyn Provider>,
    pub(crate) status: Mutex<ProviderStatus>,
    /// Set while the provider has failed: its guard refuses operations ([`crate::guard`]).
    pub(crate) down: Arc<std::sync::atomic::AtomicBool>,
}

/// A service: providers enabled or disabled together for a session.
pub(crate) struct ServiceSlot {
    pub(crate) name: String,
    pub(crate) display_name: Option<String>,
    pub(crate) providers: Vec<ProviderId>,
    pub(crate) max_sessions: Option<u32>,
}

/// The lines, known once every provider has started, and who has each open.
struct Wiring {
    lines: Lines,
    /// Per engine line, in line order.
    opens: Vec<LineOpens>,
}

/// How a session is set up, as the engine was built.
pub(crate) struct Setup {
    pub(crate) providers: Vec<ProviderSlot>,
    pub(crate) services: Vec<ServiceSlot>,
    pub(crate) profiles: HashMap<String, Profile>,
    pub(crate) default_profile: String,
    pub(crate) queue_capacity: usize,
    pub(crate) cdr: Option<Arc<dyn CdrSink>>,
    pub(crate) runtime: tokio::runtime::Handle,
}

/// The engine's shared state.
pub(crate) struct Inner {
    pub(crate) providers: Vec<ProviderSlot>,
    pub(crate) services: Vec<ServiceSlot>,
    pub(crate) profiles: HashMap<String, Profile>,
    pub(crate) default_profile: String,
    /// How many events a session's queue holds.
    pub(crate) queue_capacity: usize,
    wiring: OnceLock<Wiring>,
    pub(crate) sessions: FastDashMap<SessionId, Arc<SessionState>>,
    /// Per provider (indexed by its ID): its call legs.
    calls: Vec<FastDashMap<CallLegId, Arc<CallEntry>>>,
    pub(crate) pending: FastDashMap<RequestId, Pending>,
    next_request: AtomicU64,
    /// Orders line opens engine-wide (the first opener wins a tie for an offered call).
    pub(crate) next_open: AtomicU64,
    pub(crate) next_reader: AtomicU64,
    pub(crate) mint: HandleMint,
    /// The shared session, once established. Its lock serialises log-ons to it.
    pub(crate) shared: tokio::sync::Mutex<Option<Arc<SessionState>>>,
    /// Per provider: how many sessions use it.
    pub(crate) usage: Mutex<Vec<u32>>,
    /// Which application owns offered calls of which class.
    pub(crate) routes: RwLock<RouteTable>,
    /// `shutdown` ran.
    pub(crate) stopped: AtomicBool,
    runtime: tokio::runtime::Handle,
    /// Where finished call detail records go, if anywhere.
    cdr: Option<Arc<dyn CdrSink>>,
    /// Wall-clock anchor for the records' times.
    pub(crate) clock: Clock,
}

impl Inner {
    /// The engine's state before its providers have reported their lines.
    pub(crate) fn new(setup: Setup) -> Self {
        Self {
            usage: Mutex::new(vec![0; setup.providers.len()]),
            calls: setup
                .providers
                .iter()
                .map(|_| FastDashMap::default())
                .collect(),
            providers: setup.providers,
            services: setup.services,
            profiles: setup.profiles,
            default_profile: setup.default_profile,
            queue_capacity: setup.queue_capacity,
            wiring: OnceLock::new(),
            sessions: FastDashMap::default(),
            pending: FastDashMap::default(),
            next_request: AtomicU64::new(1),
            next_open: AtomicU64::new(0),
            next_reader: AtomicU64::new(0),
            mint: HandleMint::new(),
            shared: tokio::sync::Mutex::new(None),
            routes: RwLock::new(RouteTable::default()),
            stopped: AtomicBool::new(false),
            runtime: setup.runtime,
            cdr: setup.cdr,
            clock: Clock::now(),
        }
    }

    /// Sets the lines once every provider has reported them (only `build` does, once).
    pub(crate) fn set_lines(&self, lines: Lines) {
        let opens = lines.all().iter().map(|_| LineOpens::default()).collect();
        let _ = self.wiring.set(Wiring { lines, opens });
    }

    pub(crate) fn lines(&self) -> &[Arc<LineSlot>] {
        self.wiring.get().map_or(&[], |w| w.lines.all())
    }

    pub(crate) fn line(&self, id: LineId) -> Option<&Arc<LineSlot>> {
        self.wiring.get()?.lines.get(id)
    }

    /// The line `provider` calls `local`.
    pub(crate) fn provider_line(
        &self,
        provider: ProviderId,
        local: LineId,
    ) -> Option<&Arc<LineSlot>> {
        self.wiring.get()?.lines.of_provider(provider, local)
    }

    /// Who has `line` open.
    pub(crate) fn opens(&self, line: &LineSlot) -> Option<&LineOpens> {
        self.wiring.get()?.opens.get(line.id.0 as usize)
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

    /// Provider `id` (an ID the engine assigned, so always in range).
    pub(crate) fn provider(&self, id: ProviderId) -> &ProviderSlot {
        &self.providers[id.0 as usize]
    }

    /// The call legs of provider `id` (an ID the engine assigned, so always in range).
    pub(crate) fn calls_of(&self, id: ProviderId) -> &FastDashMap<CallLegId, Arc<CallEntry>> {
        &self.calls[id.0 as usize]
    }

    /// How many calls the engine tracks.
    pub(crate) fn call_count(&self) -> usize {
        self.calls.iter().map(|c| c.len()).sum()
    }

    /// Every call the engine tracks, collected before any is locked.
    pub(crate) fn all_calls(&self) -> Vec<Arc<CallEntry>> {
        self.calls
            .iter()
            .flat_map(|p| p.iter().map(|c| c.value().clone()).collect::<Vec<_>>())
            .collect()
    }

    /// Whether calls keep notes for detail records (the engine was given a sink for them).
    pub(crate) fn keeps_records(&self) -> bool {
        self.cdr.is_some()
    }

    pub(crate) fn next_request(&self) -> RequestId {
        RequestId(self.next_request.fetch_add(1, Ordering::Relaxed))
    }

    /// Runs `work` on the engine's runtime.
    pub(crate) fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(work.in_current_span());
    }

    /// Runs `work` on the engine's runtime, inside the call's span.
    pub(crate) fn spawn_for(
        &self,
        entry: &CallEntry,
        work: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.runtime.spawn(work.instrument(entry.span()));
    }

    /// Does what a change to `entry` left to do once its lock was let go, in this order: forgets it,
    /// takes it out of the conference it left, hands over its detail record, drops it as an orphan.
    pub(crate) fn follow_up(&self, entry: &Arc<CallEntry>, follow: FollowUp) {
        if follow.is_nothing() {
            return;
        }
        if follow.forget {
            self.calls_of(entry.key.0).remove(&entry.key.1);
        }
        if let Some(parent) = follow.left_conference {
            CallEntry::remove_party(&parent, entry);
        }
        if let (Some(record), Some(sink)) = (follow.record, &self.cdr) {
            sink.record(*record);
        }
        if follow.drop_orphan {
            self.drop_orphan(entry);
        }
    }

    /// The orphan policy: a live call left with no owner is dropped by the engine, so it cannot
    /// linger.
    pub(crate) fn drop_orphan(&self, entry: &CallEntry) {
        // (No provider: every handle of the engine is gone, and the provider with it.)
        let Some(provider) = self.provider(entry.key.0).provider.upgrade() else {
            return;
        };
        let leg = entry.key.1;
        self.spawn_for(entry, async move {
            debug!("dropping a call without an owner");
            if let Err(e) = provider.drop_call(leg).await {
                debug!(error = %e, "drop of an ownerless call failed");
            }
        });
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
            faults: 0,
            refused_reports: 0,
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

    /// Provider `id` panicked or hung in an operation (`what`): its row counts the fault and says
    /// what it was, and every session is told.
    pub(crate) fn provider_fault(&self, id: ProviderId, what: String) {
        let p = self.provider(id);
        {
            let mut status = lock(&p.status);
            status.faults += 1;
            status.last_error = Some(what);
        }
        self.announce_status(p);
    }

    /// Reports `p`'s row to every session, as it is now.
    pub(crate) fn announce_status(&self, p: &ProviderSlot) {
        let row = self.status_row(p);
        info!(provider = %p.name, state = ?row.state, reason = ?row.reason, "status");
        for s in self.sessions.iter() {
            s.inbox
                .push(crate::event::Event::Status(Box::new(row.clone())));
        }
    }
}
