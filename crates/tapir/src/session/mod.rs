//! An application session: the application's view of the engine.
//!
//! The public API only. Each operation finds the call behind the session's handle and asks the
//! call's record (`call/`) whether the gate lets it through, then hands it to the provider; what the
//! engine does with calls and handles meanwhile is in `holds.rs`, `logon.rs` and `dispatch.rs`.
//! Basic calls and address operations are in `calls.rs`, consultations, transfers, conferences and
//! park in `consult.rs`.

mod calls;
mod consult;
mod options;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tapir_core::caps::{AddressCaps, LineCaps};
use tapir_core::cdr::Disposition;
use tapir_core::dial::DialString;
use tapir_core::gate::CallOperation;
use tapir_core::params::RequestId;
use tapir_core::privilege::CallPrivilege;
use tapir_core::state::CallStateKind;
use tapir_core::{AddressId, CallLegId, Error, LineId, ProviderId};
use tapir_provider::Provider;
use tracing::{Instrument, debug};

pub use self::options::{MakeCallParams, OpenOptions};
use crate::call::{CallEntry, CallInfoView, CallStatus};
use crate::event::SessionEvent;
use crate::handles::{CallHandle, LineHandle, SessionId};
use crate::inner::{Inner, Providers};
use crate::line::{LineInfo, LineSlot};
use crate::opens::Opener;
use crate::profile::DisabledService;
use crate::requests::Pending;
use crate::session_state::SessionState;
use crate::sync::lock;
use crate::translate::{Location, TranslateOptions, Translated, translate_address};

/// What a provider operation method returns (an `async_trait` future borrowing the provider).
type ProviderFuture<'p, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, Error>> + Send + 'p>>;

/// A call that passed the gate, ready to hand to its provider.
struct Authorized {
    entry: Arc<CallEntry>,
    provider: Arc<dyn Provider>,
    leg: CallLegId,
}

/// A provider's work on an authorized call: run in the call's span, its "no such call" read.
trait OnCall<T>: std::future::Future<Output = Result<T, Error>> + Sized {
    /// Runs the work in the span of `a`'s call. A provider that no longer knows the call (it ended
    /// while the provider worked) answers "no such call"; but the application's handle is still
    /// good, so it hears "not now" with the state the call ended in.
    fn on_call(self, a: &Authorized) -> impl std::future::Future<Output = Result<T, Error>> {
        let entry = a.entry.clone();
        async move {
            match self.await {
                Err(Error::InvalidCallHandle) => {
                    let state = entry.kind();
                    Err(
                        if matches!(state, CallStateKind::Idle | CallStateKind::Disconnected) {
                            Error::InvalidCallState { state }
                        } else {
                            Error::InvalidCallHandle
                        },
                    )
                }
                other => other,
            }
        }
        .instrument(a.entry.span())
    }
}

impl<T, F: std::future::Future<Output = Result<T, Error>>> OnCall<T> for F {}

/// Runs an operation that takes calls off their line, having noted for each call's detail record what
/// it will make of them (the call goes idle while the operation runs); the notes are taken back if the
/// operation fails.
async fn intending<T>(
    calls: &[&Arc<CallEntry>],
    outcome: Disposition,
    op: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let note = |intent: Option<Disposition>| {
        for c in calls {
            c.intend(intent);
        }
    };
    note(Some(outcome));
    let result = op.await;
    if result.is_err() {
        note(None);
    }
    result
}

/// An application's session with the engine. Cheap to clone; clones are the same session.
///
/// Everything an application does goes through its session: the handles it is given are valid only here.
pub struct Session {
    engine: Arc<Inner>,
    /// Kept alive by the session, so it can go on using them after the [`Engine`](crate::Engine)
    /// handle is dropped.
    providers: Providers,
    inner: Arc<SessionState>,
    reader: Arc<Reader>,
}

/// One application's use of a session: its name and its reading of the event stream.
struct Reader {
    id: u64,
    app: String,
    notify: Arc<tokio::sync::Notify>,
}

impl Clone for Session {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
            providers: self.providers.clone(),
            inner: self.inner.clone(),
            reader: self.reader.clone(),
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.inner.inbox.id)
            .field("app", &self.inner.inbox.app)
            .finish_non_exhaustive()
    }
}

fn no_params(_: &LineCaps, _: &AddressCaps) -> Result<(), Error> {
    Ok(())
}

fn parse_destination(destination: &str, caps: &LineCaps) -> Result<DialString, Error> {
    let d = DialString::parse_destination(destination)?;
    d.check(&caps.dial)?;
    Ok(d)
}

/// The address a line's own operations (unpark, pickup, forwarding, a conference set up without a
/// call) act on: the API names no address for them, and they take the line's first.
fn line_address(slot: &LineSlot) -> Result<(AddressId, &AddressCaps), Error> {
    let address = AddressId(0);
    Ok((address, slot.address(address)?))
}

fn missing_destination() -> Error {
    Error::InvalidParameter {
        reason: "no destination".into(),
    }
}

impl Session {
    /// Gives `app` its own reading of `session`'s events; `None` if the session has ended.
    pub(crate) fn join(
        engine: &Arc<Inner>,
        providers: &Providers,
        session: &Arc<SessionState>,
        app: &str,
    ) -> Option<Session> {
        let reader = Arc::new(Reader {
            id: engine.next_reader.fetch_add(1, Ordering::Relaxed),
            app: app.to_owned(),
            notify: Arc::new(tokio::sync::Notify::new()),
        });
        {
            let mut q = lock(&session.inbox.queue);
            if q.ended {
                return None;
            }
            q.add_reader(reader.id, reader.notify.clone());
            lock(&session.inbox.apps).push(app.to_owned());
        }
        debug!(session = %session.inbox.id, app, "logged on");
        Some(Session {
            engine: engine.clone(),
            providers: providers.clone(),
            inner: session.clone(),
            reader,
        })
    }

    /// The provider with ID `id` (an ID the engine assigned, so always in range).
    fn provider(&self, id: ProviderId) -> &Arc<dyn Provider> {
        &self.providers[id.0 as usize]
    }

    /// The session's identity (the same for every application using the shared session).
    pub fn id(&self) -> SessionId {
        self.inner.inbox.id
    }

    /// The application name this log-on gave.
    pub fn app_name(&self) -> &str {
        &self.reader.app
    }

    /// The profile the session was established with.
    pub fn profile(&self) -> &str {
        &self.inner.profile
    }

    /// Whether this is the engine's shared session.
    pub fn is_shared(&self) -> bool {
        self.inner.inbox.shared
    }

    /// The applications using the session (more than one only for the shared session).
    pub fn applications(&self) -> Vec<String> {
        lock(&self.inner.inbox.apps).clone()
    }

    /// The profile's services that are disabled for this session, and why.
    pub fn disabled_services(&self) -> &[DisabledService] {
        &self.inner.disabled
    }

    fn alive(&self) -> Result<(), Error> {
        if !lock(&self.inner.inbox.queue).open_for(self.reader.id) {
            Err(Error::SessionEnded)
        } else {
            Ok(())
        }
    }

    /// The line devices the session may use — its profile's lines of the services not disabled —
    /// with their capabilities.
    pub fn lines(&self) -> Vec<LineInfo> {
        let mut lines = self.engine.line_infos();
        lines.retain(|l| self.inner.may_use(l.id));
        lines
    }

    /// Opens a line. With owner privilege the session may be offered the line's new calls; with monitor
    /// privilege it gets a monitor handle for every new call on the line.
    pub async fn open_line(&self, line: LineId, options: OpenOptions) -> Result<LineHandle, Error> {
        self.alive()?;
        // A line outside the session's profile is as unknown as one that does not exist.
        let slot = self
            .engine
            .line(line)
            .filter(|_| self.inner.may_use(line))
            .cloned()
            .ok_or(Error::InvalidLine(line))?;
        let opens = self.engine.opens(&slot).ok_or(Error::InvalidLine(line))?;
        let media = options.media_modes.unwrap_or(slot.caps.media_modes);
        if !slot.caps.media_modes.contains(media) || (options.privileges.owns() && media.is_empty())
        {
            return Err(Error::InvalidMediaMode);
        }
        let handle = LineHandle(self.engine.mint.next());
        let mut provider_open = opens.provider_open.lock().await;
        if !*provider_open {
            self.provider(slot.provider)
                .open_line(slot.local, slot.caps.media_modes)
                .await?;
            *provider_open = true;
        }
        // Registered under the session's queue lock, so that a concurrent log-off either sees this open
        // and closes it, or refuses it here.
        let registered = {
            let q = lock(&self.inner.inbox.queue);
            if !q.ended {
                lock(&opens.openers).push(Opener {
                    session: self.inner.clone(),
                    handle,
                    privileges: options.privileges,
                    media_modes: media,
                    priority: options.priority,
                    order: self.engine.next_open.fetch_add(1, Ordering::Relaxed),
                });
                self.inner.lines.insert(handle, slot.clone());
            }
            !q.ended
        };
        drop(provider_open);
        if !registered {
            // Closes the provider's line again if this open was to be its only user.
            self.engine.remove_opener(&slot, handle).await;
            return Err(Error::SessionEnded);
        }
        debug!(session = %self.inner.inbox.id, line = %line, ?options, "line opened");
        Ok(handle)
    }

    /// Closes a line open. Call handles held through it are released; calls this session solely owns are
    /// dropped first (the orphan policy, see `docs/ARCHITECTURE.md`).
    pub async fn close_line(&self, line: LineHandle) -> Result<(), Error> {
        let (_, slot) = self
            .inner
            .lines
            .remove(&line)
            .ok_or(Error::InvalidLineHandle)?;
        for (handle, entry) in Inner::handles_through(&self.inner, line) {
            self.engine
                .release_dropping(&entry, &self.inner, handle)
                .await;
        }
        self.engine.remove_opener(&slot, line).await;
        Ok(())
    }

    fn open_line_slot(&self, line: LineHandle) -> Result<Arc<LineSlot>, Error> {
        self.inner
            .lines
            .get(&line)
            .map(|o| o.value().clone())
            .ok_or(Error::InvalidLineHandle)
    }

    /// The status table: the engine's row, then one row per provider. Changes arrive as
    /// [`Event::Status`](crate::Event::Status).
    pub fn status(&self) -> Vec<crate::StatusRow> {
        self.engine.status()
    }

    /// Sets where this session dials from; canonical numbers are translated for it
    /// ([`MakeCallParams::translate`], [`Session::translate_address`]).
    pub fn set_location(&self, location: Location) -> Result<(), Error> {
        location.check()?;
        *lock(&self.inner.location) = Some(location);
        Ok(())
    }

    /// Translates `input` for dialling from the session's location (see [`crate::translate`]).
    pub fn translate_address(
        &self,
        input: &str,
        options: TranslateOptions,
    ) -> Result<Translated, Error> {
        let location =
            lock(&self.inner.location)
                .clone()
                .ok_or_else(|| Error::InvalidParameter {
                    reason: "the session has no location".into(),
                })?;
        translate_address(input, &location, options)
    }

    /// Runs a request that creates calls for this session through line open `line`: registers it so the
    /// calls the provider reports are bound to handles held back from the session, runs it, then
    /// publishes those handles (or undoes them on failure).
    async fn create<F, Fut>(&self, line: LineHandle, run: F) -> Result<Vec<CallHandle>, Error>
    where
        F: FnOnce(RequestId) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<CallLegId>, Error>>,
    {
        self.alive()?;
        let slot = self.open_line_slot(line)?;
        let provider = self.provider(slot.provider).clone();
        let request = self.engine.next_request();
        self.engine.pending.insert(
            request,
            Pending {
                session: self.inner.clone(),
                line,
                bound: Vec::new(),
            },
        );
        let result = run(request)
            .instrument(tracing::debug_span!("request", request = request.0))
            .await;
        self.engine
            .finish_request(&self.inner, &provider, request, result)
            .await
    }

    /// The call behind one of this session's handles.
    fn entry(&self, call: CallHandle) -> Result<Arc<CallEntry>, Error> {
        self.inner.calls.get(call).ok_or(Error::InvalidCallHandle)
    }

    /// Finds the call, checks the gate, and returns what is needed to hand the operation to the provider.
    fn authorize(
        &self,
        call: CallHandle,
        op: CallOperation,
        params: impl FnOnce(&LineCaps, &AddressCaps) -> Result<(), Error>,
    ) -> Result<Authorized, Error> {
        let entry = self.entry(call)?;
        entry.authorize(&self.inner.inbox, call, op, params)?;
        Ok(Authorized {
            provider: self.provider(entry.key.0).clone(),
            leg: entry.key.1,
            entry,
        })
    }

    /// Checks that this session holds both calls of a two-call operation, before anything else is
    /// looked at: a handle it does not hold is `InvalidCallHandle` whatever the other call's state.
    fn both_held(&self, first: CallHandle, second: CallHandle) -> Result<(), Error> {
        self.entry(first)?;
        self.entry(second)?;
        Ok(())
    }

    /// Authorizes `op` on `call` and hands it to the provider method `run`, inside the call's span.
    async fn dispatch<T>(
        &self,
        call: CallHandle,
        op: CallOperation,
        params: impl FnOnce(&LineCaps, &AddressCaps) -> Result<(), Error>,
        run: impl for<'p> FnOnce(&'p dyn Provider, CallLegId) -> ProviderFuture<'p, T>,
    ) -> Result<T, Error> {
        let a = self.authorize(call, op, params)?;
        run(&*a.provider, a.leg).on_call(&a).await
    }

    /// The line open through which this session holds `call`.
    fn line_of(&self, entry: &CallEntry, call: CallHandle) -> Result<LineHandle, Error> {
        entry
            .line_of(&self.inner.inbox, call)
            .ok_or(Error::InvalidCallHandle)
    }

    /// Gives the call to another application: the first other session logged on as `app_name` that has
    /// the call's line open becomes an owner (a monitor handle it holds is raised; otherwise it is given
    /// a new handle). This session keeps its own privilege. Errors: [`Error::TargetSelf`] when only this
    /// session has that name, [`Error::TargetNotFound`] when no session of that name has the line open.
    pub fn handoff(&self, call: CallHandle, app_name: &str) -> Result<(), Error> {
        let a = self.authorize(call, CallOperation::Handoff, no_params)?;
        let target = self
            .engine
            .sessions
            .iter()
            .filter(|s| s.inbox.serves(app_name) && !Arc::ptr_eq(s.value(), &self.inner))
            .find_map(|s| {
                s.lines
                    .iter()
                    .find(|o| Arc::ptr_eq(o.value(), &a.entry.line))
                    .map(|o| (s.value().clone(), *o.key()))
            });
        let Some((target, line)) = target else {
            return Err(if self.inner.inbox.serves(app_name) {
                Error::TargetSelf
            } else {
                Error::TargetNotFound
            });
        };
        self.engine.make_owner(&a.entry, &target, line);
        Ok(())
    }

    /// Releases this session's handle. The call itself is not changed.
    ///
    /// The sole owner of a call that is not idle cannot deallocate it (drop it first, or hand it to
    /// another owner): that would leave a live call nobody can control. It gets
    /// [`Error::InvalidCallState`].
    pub fn deallocate(&self, call: CallHandle) -> Result<(), Error> {
        let entry = self.entry(call)?;
        if entry.sole_live_owner(&self.inner.inbox, call) {
            return Err(Error::InvalidCallState {
                state: entry.state().kind(),
            });
        }
        self.engine.release(&entry, &self.inner, call);
        Ok(())
    }

    /// Changes this session's privilege on a call. A monitor may become an owner at any time; the sole
    /// owner of a call that is not idle may not become a monitor ([`Error::InvalidCallState`]).
    pub fn set_call_privilege(
        &self,
        call: CallHandle,
        privilege: CallPrivilege,
    ) -> Result<(), Error> {
        self.entry(call)?
            .set_privilege(&self.inner.inbox, call, privilege)
    }

    /// The call's status: state, this session's privilege, the features available to it now.
    pub fn call_status(&self, call: CallHandle) -> Result<CallStatus, Error> {
        self.entry(call)?.status(&self.inner.inbox, call)
    }

    /// What the conformance walk reads of a call beyond the public API: the provider's leg, the
    /// engine line and address it is on, and the role the engine's own operations gave it.
    #[cfg(feature = "conformance")]
    pub(crate) fn inspect(&self, call: CallHandle) -> Result<crate::call::Inspected, Error> {
        Ok(self.entry(call)?.inspect())
    }

    /// The provider's own ID for engine line `line`.
    #[cfg(feature = "conformance")]
    pub(crate) fn provider_line(&self, line: LineId) -> Option<LineId> {
        self.engine.line(line).map(|l| l.local)
    }

    /// The call's information: call ID, parties, origin, reason, where it is, and its consultation
    /// partner while it has one.
    pub fn call_info(&self, call: CallHandle) -> Result<CallInfoView, Error> {
        self.entry(call)?.info_view(&self.inner.inbox, call)
    }

    /// The lines this session has open: each open's handle and the line.
    pub fn line_opens(&self) -> Vec<(LineHandle, LineId)> {
        self.inner
            .lines
            .iter()
            .map(|e| (*e.key(), e.value().id))
            .collect()
    }

    /// The call handles this session holds.
    pub fn calls(&self) -> Vec<CallHandle> {
        self.inner.calls.handles()
    }

    /// Takes up the calls already on a line this session has open and holds no handle for (TAPI
    /// `lineGetNewCalls`, JTAPI `getConnections`): a monitor handle on each live call, each announced
    /// by [`Event::NewCall`](crate::Event::NewCall) and then its current state before any other event
    /// names it. Opening a line does not do this by itself — calls that arrive after the open are
    /// announced as they come (to monitors, and to the owner the call is offered to); the calls
    /// already there are the application's to ask for. Raise a handle with
    /// [`set_call_privilege`](Session::set_call_privilege) to control the call.
    pub fn new_calls(&self, line: LineHandle) -> Result<Vec<CallHandle>, Error> {
        self.alive()?;
        let slot = self.open_line_slot(line)?;
        Ok(self.engine.take_up_calls(&slot, &self.inner, line))
    }

    /// A line's status: whether it is in service (and why not), the devices it reaches (registered
    /// phones, as its provider reports them), how many opens it has, and each address's calls by
    /// class.
    pub async fn line_status(&self, line: LineHandle) -> Result<crate::LineStatus, Error> {
        self.alive()?;
        let slot = self.open_line_slot(line)?;
        let reason = lock(&self.engine.provider(slot.provider).status).line_unusable(slot.local);
        // A provider that has lost its switch reaches no device.
        let devices = if self
            .engine
            .provider(slot.provider)
            .down
            .load(Ordering::Acquire)
        {
            Vec::new()
        } else {
            self.provider(slot.provider)
                .line_devices(slot.local)
                .await?
        };
        let opens = self
            .engine
            .opens(&slot)
            .map_or(0, |o| lock(&o.openers).len());
        Ok(crate::LineStatus {
            devices,
            line: slot.id,
            in_service: reason.is_none(),
            reason,
            opens,
            addresses: (0..slot.caps.addresses.len())
                .map(|i| {
                    let address = AddressId(i as u32);
                    crate::AddressStatus {
                        address,
                        number: slot.caps.addresses[i].address.clone(),
                        usage: slot.usage(address),
                    }
                })
                .collect(),
        })
    }

    /// The next event, waiting for one if need be. `None` once the session has ended and every event
    /// queued before the end has been read.
    pub async fn next_event(&self) -> Option<SessionEvent> {
        loop {
            let notified = self.reader.notify.notified();
            {
                let mut q = lock(&self.inner.inbox.queue);
                if let Some(e) = q.pop(self.reader.id) {
                    return Some(e);
                }
                if !q.open_for(self.reader.id) {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// The next event if one is queued.
    pub fn try_next_event(&self) -> Option<SessionEvent> {
        lock(&self.inner.inbox.queue).pop(self.reader.id)
    }

    /// Logs this application off. An individual session ends: calls it solely owns are dropped, every
    /// handle is released, every line closed. The shared session ends that way when its last
    /// application logs off; until then only this application's event stream ends.
    pub async fn logoff(self) {
        let last = {
            let mut q = lock(&self.inner.inbox.queue);
            if q.ended {
                return;
            }
            let remaining = q.remove_reader(self.reader.id);
            let mut apps = lock(&self.inner.inbox.apps);
            if let Some(i) = apps.iter().position(|a| *a == self.reader.app) {
                apps.remove(i);
            }
            if remaining == 0 {
                q.end();
            }
            remaining == 0
        };
        self.reader.notify.notify_waiters();
        if last {
            self.engine.release_session(&self.inner).await;
        } else {
            debug!(session = %self.inner.inbox.id, app = self.reader.app, "left the shared session");
        }
    }
}
