//! An application session: the application's view of the engine.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use tapir_core::caps::{AddressCaps, LineCaps};
use tapir_core::cdr::Disposition;
use tapir_core::dial::DialString;
use tapir_core::gate::{self, AddressOperation, CallOperation, CallRole, FeatureSet};
use tapir_core::info::{CallInfo, InfoChange};
use tapir_core::media::MediaModes;
use tapir_core::params::{
    CompletionMode, DigitMode, ForwardCondition, Forwarding, MakeCall, Origin, ParkMode,
    PickupTarget, RequestId, TransferMode,
};
use tapir_core::privilege::{CallPrivilege, LinePrivileges};
use tapir_core::state::{CallState, CallStateKind};
use tapir_core::{AddressId, CallId, CallLegId, Error, LineId, ProviderId};
use tapir_provider::Provider;
use tracing::{Instrument, debug};

use crate::engine::{
    CallEntry, Inner, LineSlot, OpenLine, Opener, Pending, Providers, SessionInner, lock,
};
use crate::event::SessionEvent;
use crate::handles::{CallHandle, LineHandle};
use crate::profile::DisabledService;
use crate::translate::{Location, TranslateOptions, Translated, translate_address};

/// The identity of an application session: a random UUID, unguessable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(uuid::Uuid);

impl SessionId {
    pub(crate) fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }
    /// The UUID.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A line device as listed to an application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineInfo {
    /// The engine-wide line ID, to pass to [`Session::open_line`].
    pub id: LineId,
    /// The provider serving the line.
    pub provider: ProviderId,
    /// The provider's name.
    pub provider_name: String,
    /// The line's capabilities.
    pub caps: LineCaps,
}

/// See [`Session::inspect`].
#[cfg(feature = "conformance")]
pub(crate) struct Inspected {
    pub(crate) leg: CallLegId,
    pub(crate) line: LineId,
    pub(crate) address: AddressId,
    pub(crate) role: CallRole,
}

/// How to open a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// The privileges asked for.
    pub privileges: LinePrivileges,
    /// The media modes this session handles; owners are offered only calls of these modes. `None` means
    /// every mode the line supports.
    pub media_modes: Option<MediaModes>,
    /// Among owner openers of a line, the highest priority is offered new calls first; on a tie, the
    /// first to open. Default 0.
    pub priority: u32,
}

impl OpenOptions {
    /// Outgoing calls only.
    pub fn none() -> Self {
        Self::with(LinePrivileges::None)
    }
    /// Watch every call on the line.
    pub fn monitor() -> Self {
        Self::with(LinePrivileges::Monitor)
    }
    /// Own offered calls.
    pub fn owner() -> Self {
        Self::with(LinePrivileges::Owner)
    }
    /// Own offered calls and watch the others.
    pub fn owner_monitor() -> Self {
        Self::with(LinePrivileges::OwnerMonitor)
    }
    fn with(privileges: LinePrivileges) -> Self {
        Self {
            privileges,
            media_modes: None,
            priority: 0,
        }
    }
    /// Handle only these media modes.
    pub fn media_modes(mut self, modes: MediaModes) -> Self {
        self.media_modes = Some(modes);
        self
    }
    /// Set the owner priority.
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }
}

/// How to place a call.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MakeCallParams {
    /// Where to call; `None` leaves the call in dial tone for [`Session::dial`].
    pub destination: Option<String>,
    /// The address on the line to call from. Default 0.
    pub address: AddressId,
    /// The media mode (exactly one). `None`: interactive voice if the line supports it, else the line's
    /// lowest mode.
    pub media_mode: Option<MediaModes>,
    /// Translate a canonical destination (`+1 (425) 555-0100`) with the session's location
    /// ([`Session::set_location`]) before dialling it.
    pub translate: bool,
}

impl MakeCallParams {
    /// A call to `destination`.
    pub fn to(destination: impl Into<String>) -> Self {
        Self {
            destination: Some(destination.into()),
            ..Self::default()
        }
    }
}

/// A call's status as one session sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallStatus {
    /// The state and its mode.
    pub state: CallState,
    /// This session's privilege.
    pub privilege: CallPrivilege,
    /// The operations this session can perform on the call now (for a monitor, only those a monitor may
    /// perform). Computed by the same gate that decides the operations.
    pub features: FeatureSet,
    /// Sessions owning the call.
    pub num_owners: usize,
    /// Sessions monitoring the call.
    pub num_monitors: usize,
}

/// A call's information as one session sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallInfoView {
    /// The provider's information (call ID, parties, origin, reason, media).
    pub info: CallInfo,
    /// The provider of the call; `(provider, info.call_id)` identifies a call engine-wide.
    pub provider: ProviderId,
    /// The line the call is on.
    pub line: LineId,
    /// The address on the line.
    pub address: AddressId,
    /// The line open through which this session holds the call.
    pub line_handle: LineHandle,
    /// Sessions owning the call.
    pub num_owners: usize,
    /// Sessions monitoring the call.
    pub num_monitors: usize,
    /// The other call of a consultation the engine set up, while it lasts: for the held original (or
    /// the conference waiting for a party) its consultation call, for the consultation call its
    /// original. The provider's call ID, so it names the call in any session.
    pub consultation_partner: Option<CallId>,
}

impl CallInfoView {
    /// The provider's call ID, shared by every session.
    pub fn call_id(&self) -> CallId {
        self.info.call_id
    }
}

/// What a provider operation method returns (an `async_trait` future borrowing the provider).
type ProviderFuture<'p, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, Error>> + Send + 'p>>;

/// A call that passed the gate, ready to hand to its provider.
struct Authorized {
    entry: Arc<CallEntry>,
    provider: Arc<dyn Provider>,
    leg: CallLegId,
}

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
            if let Some(d) = &mut lock(&c.rec).detail {
                d.intent = intent;
            }
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
    /// Kept alive by the session, so it can go on using them after the [`Engine`] handle is dropped.
    providers: Providers,
    inner: Arc<SessionInner>,
    reader: Arc<Reader>,
}

/// One application's use of a session: its name and its reading of the event stream.
pub(crate) struct Reader {
    pub(crate) id: u64,
    pub(crate) app: String,
    pub(crate) notify: Arc<tokio::sync::Notify>,
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
            .field("id", &self.inner.id)
            .field("app", &self.inner.app)
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

fn missing_destination() -> Error {
    Error::InvalidParameter {
        reason: "no destination".into(),
    }
}

impl Session {
    pub(crate) fn new(
        engine: Arc<Inner>,
        providers: Providers,
        inner: Arc<SessionInner>,
        reader: Arc<Reader>,
    ) -> Self {
        Self {
            engine,
            providers,
            inner,
            reader,
        }
    }

    /// The provider with ID `id` (an ID the engine assigned, so always in range).
    fn provider(&self, id: ProviderId) -> &Arc<dyn Provider> {
        &self.providers[id.0 as usize]
    }

    /// The session's identity (the same for every application using the shared session).
    pub fn id(&self) -> SessionId {
        self.inner.id
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
        self.inner.shared
    }

    /// The applications using the session (more than one only for the shared session).
    pub fn applications(&self) -> Vec<String> {
        lock(&self.inner.apps).clone()
    }

    /// The profile's services that are disabled for this session, and why.
    pub fn disabled_services(&self) -> &[DisabledService] {
        &self.inner.disabled
    }

    fn alive(&self) -> Result<(), Error> {
        if !lock(&self.inner.queue).open_for(self.reader.id) {
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
        let media = options.media_modes.unwrap_or(slot.caps.media_modes);
        if !slot.caps.media_modes.contains(media) || (options.privileges.owns() && media.is_empty())
        {
            return Err(Error::InvalidMediaMode);
        }
        let handle = LineHandle(self.engine.mint.next());
        let mut provider_open = slot.provider_open.lock().await;
        if !*provider_open {
            self.provider(slot.provider)
                .open_line(slot.local, slot.caps.media_modes)
                .await?;
            *provider_open = true;
        }
        // Registered under the session's queue lock, so that a concurrent log-off either sees this open
        // and closes it, or refuses it here.
        let registered = {
            let q = lock(&self.inner.queue);
            if !q.ended {
                lock(&slot.openers).push(Opener {
                    session: self.inner.clone(),
                    handle,
                    privileges: options.privileges,
                    media_modes: media,
                    priority: options.priority,
                    order: self.engine.next_open.fetch_add(1, Ordering::Relaxed),
                });
                self.inner
                    .lines
                    .insert(handle, OpenLine { line: slot.clone() });
            }
            !q.ended
        };
        drop(provider_open);
        if !registered {
            // Closes the provider's line again if this open was to be its only user.
            self.engine.remove_opener(&slot, handle).await;
            return Err(Error::SessionEnded);
        }
        debug!(session = %self.inner.id, line = %line, ?options, "line opened");
        Ok(handle)
    }

    /// Closes a line open. Call handles held through it are released; calls this session solely owns are
    /// dropped first (the orphan policy, see `docs/ARCHITECTURE.md`).
    pub async fn close_line(&self, line: LineHandle) -> Result<(), Error> {
        let (_, open) = self
            .inner
            .lines
            .remove(&line)
            .ok_or(Error::InvalidLineHandle)?;
        for (handle, entry) in Inner::handles_through(&self.inner, line) {
            self.engine
                .release_dropping(&entry, &self.inner, handle)
                .await;
        }
        self.engine.remove_opener(&open.line, line).await;
        Ok(())
    }

    fn open_line_slot(&self, line: LineHandle) -> Result<Arc<LineSlot>, Error> {
        self.inner
            .lines
            .get(&line)
            .map(|o| o.line.clone())
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

    /// Places a call to `destination` (`None`: the call waits in dial tone for [`Session::dial`]).
    ///
    /// Returns the new call's handle once the provider has created the call and dialled. The handle is
    /// returned before this session receives any event for the call; the first event naming it is
    /// [`Event::NewCall`](crate::Event::NewCall).
    pub async fn make_call(
        &self,
        line: LineHandle,
        destination: Option<&str>,
    ) -> Result<CallHandle, Error> {
        self.make_call_with(
            line,
            MakeCallParams {
                destination: destination.map(str::to_owned),
                ..MakeCallParams::default()
            },
        )
        .await
    }

    /// Places a call with every parameter spelled out.
    pub async fn make_call_with(
        &self,
        line: LineHandle,
        params: MakeCallParams,
    ) -> Result<CallHandle, Error> {
        self.alive()?;
        let slot = self.open_line_slot(line)?;
        let address_caps = slot
            .caps
            .addresses
            .get(params.address.0 as usize)
            .ok_or(Error::InvalidAddressId)?;
        let line_modes = slot.caps.media_modes;
        let media_mode = params.media_mode.unwrap_or_else(|| {
            if line_modes.contains(MediaModes::INTERACTIVE_VOICE) {
                MediaModes::INTERACTIVE_VOICE
            } else {
                MediaModes::from_bits(line_modes.bits() & line_modes.bits().wrapping_neg())
                    .unwrap_or(MediaModes::NONE)
            }
        });
        let mut destination = None;
        let translated = match (&params.destination, params.translate) {
            (Some(d), true) => {
                let location =
                    lock(&self.inner.location)
                        .clone()
                        .ok_or_else(|| Error::InvalidParameter {
                            reason: "translation asked for, but the session has no location".into(),
                        })?;
                Some(translate_address(d, &location, TranslateOptions::default())?.dialable)
            }
            _ => None,
        };
        let wanted = translated.as_ref().or(params.destination.as_ref());
        gate::check_address(
            AddressOperation::MakeCall,
            || {
                if !media_mode.is_single() || !line_modes.contains(media_mode) {
                    return Err(Error::InvalidMediaMode);
                }
                if let Some(d) = wanted {
                    let d = DialString::parse_destination(d)?;
                    d.check(&slot.caps.dial)?;
                    destination = Some(d);
                }
                Ok(())
            },
            address_caps,
            &slot.usage(params.address),
        )?;

        let provider = self.provider(slot.provider).clone();
        let handles = self
            .create(line, |request| {
                let provider = provider.clone();
                async move {
                    let request = MakeCall {
                        request,
                        line: slot.local,
                        address: params.address,
                        destination,
                        media_mode,
                    };
                    provider.make_call(request).await.map(|leg| vec![leg])
                }
            })
            .await?;
        handles.into_iter().next().ok_or(Error::OperationFailed {
            reason: "the provider created no call".into(),
        })
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
        self.inner
            .calls
            .get(&call)
            .map(|e| e.clone())
            .ok_or(Error::InvalidCallHandle)
    }

    /// Gate and run an address operation that creates one call for this session through `line`.
    async fn create_on_address<F, Fut>(
        &self,
        line: LineHandle,
        op: AddressOperation,
        params: impl FnOnce(&AddressCaps) -> Result<(), Error>,
        run: F,
    ) -> Result<CallHandle, Error>
    where
        F: FnOnce(Arc<dyn Provider>, Origin) -> Fut,
        Fut: std::future::Future<Output = Result<CallLegId, Error>>,
    {
        let slot = self.open_line_slot(line)?;
        let address = AddressId(0);
        let caps = slot
            .caps
            .addresses
            .get(address.0 as usize)
            .ok_or(Error::InvalidAddressId)?;
        gate::check_address(op, || params(caps), caps, &slot.usage(address))?;
        let provider = self.provider(slot.provider).clone();
        let local = slot.local;
        self.create(line, |request| async move {
            let origin = Origin {
                request,
                line: local,
                address,
            };
            run(provider, origin).await.map(|leg| vec![leg])
        })
        .await?
        .into_iter()
        .next()
        .ok_or(Error::OperationFailed {
            reason: "the provider created no call".into(),
        })
    }

    /// Retrieves the call parked in `orbit` to this line: a new call, connected, reason *unpark*.
    pub async fn unpark(&self, line: LineHandle, orbit: &str) -> Result<CallHandle, Error> {
        let owned = orbit.to_owned();
        self.create_on_address(
            line,
            AddressOperation::Unpark,
            |_| {
                DialString::parse_destination(orbit)?;
                Ok(())
            },
            |provider, origin| async move { provider.unpark(origin, &owned).await },
        )
        .await
    }

    /// Picks up a call ringing elsewhere — at a named station, or anywhere in a pickup group — to this
    /// line: a new call, connected, reason *pickup*. The station that was ringing sees its call end,
    /// disconnected with reason *picked up*.
    pub async fn pickup(
        &self,
        line: LineHandle,
        target: PickupTarget,
    ) -> Result<CallHandle, Error> {
        self.create_on_address(
            line,
            AddressOperation::Pickup,
            |caps| {
                let modes = caps.pickup_modes;
                let any = modes.directed || modes.group;
                match &target {
                    PickupTarget::Directed(n) | PickupTarget::Group(n) if n.is_empty() => {
                        Err(Error::InvalidParameter {
                            reason: "a pickup needs a station or a group".into(),
                        })
                    }
                    PickupTarget::Directed(_) if any && !modes.directed => {
                        Err(Error::InvalidParameter {
                            reason: "the address does not support directed pickup".into(),
                        })
                    }
                    PickupTarget::Group(_) if any && !modes.group => Err(Error::InvalidParameter {
                        reason: "the address does not support group pickup".into(),
                    }),
                    _ => Ok(()),
                }
            },
            |provider, origin| {
                let target = target.clone();
                async move { provider.pickup(origin, &target).await }
            },
        )
        .await
    }

    /// Replaces the forwarding of this line's address (an empty [`Forwarding`] cancels it). Returns once
    /// the switch has applied it; openers of the line are told with
    /// [`LineEvent::ForwardingChanged`](crate::LineEvent::ForwardingChanged).
    pub async fn forward(&self, line: LineHandle, forwarding: Forwarding) -> Result<(), Error> {
        self.alive()?;
        let slot = self.open_line_slot(line)?;
        let address = AddressId(0);
        let caps = slot
            .caps
            .addresses
            .get(address.0 as usize)
            .ok_or(Error::InvalidAddressId)?;
        gate::check_address(
            AddressOperation::Forward,
            || {
                let modes = caps.forward_modes;
                let any = modes.unconditional || modes.busy || modes.no_answer;
                if forwarding.do_not_disturb && !modes.do_not_disturb {
                    return Err(Error::InvalidParameter {
                        reason: "the address does not support do-not-disturb".into(),
                    });
                }
                for (condition, to) in &forwarding.rules {
                    let supported = match condition {
                        ForwardCondition::Unconditional => modes.unconditional,
                        ForwardCondition::Busy => modes.busy,
                        ForwardCondition::NoAnswer { .. } => modes.no_answer,
                    };
                    if any && !supported {
                        return Err(Error::InvalidParameter {
                            reason: format!("the address cannot forward {condition:?}"),
                        });
                    }
                    if to.dialable().is_empty() || to.is_partial() {
                        return Err(Error::InvalidDialString(
                            tapir_core::dial::DialStringError::Empty,
                        ));
                    }
                    to.check(&slot.caps.dial)?;
                }
                Ok(())
            },
            caps,
            &slot.usage(address),
        )?;
        self.provider(slot.provider)
            .forward(slot.local, address, &forwarding)
            .await
    }

    /// Cancels a call-completion request this line made ([`Session::complete_call`]).
    pub async fn cancel_call_completion(
        &self,
        line: LineHandle,
        completion: u32,
    ) -> Result<(), Error> {
        self.alive()?;
        let slot = self.open_line_slot(line)?;
        if !slot
            .caps
            .addresses
            .iter()
            .any(|a| a.call_features.contains(CallOperation::CompleteCall))
        {
            return Err(Error::OperationUnavailable {
                operation: CallOperation::CompleteCall.name(),
            });
        }
        self.provider(slot.provider)
            .cancel_call_completion(slot.local, completion)
            .await
    }

    /// Finds the call, checks the gate, and returns what is needed to hand the operation to the provider.
    fn authorize(
        &self,
        call: CallHandle,
        op: CallOperation,
        params: impl FnOnce(&LineCaps, &AddressCaps) -> Result<(), Error>,
    ) -> Result<Authorized, Error> {
        let entry = self.entry(call)?;
        {
            let rec = lock(&entry.rec);
            let holder = rec
                .holder(&self.inner, call)
                .ok_or(Error::InvalidCallHandle)?;
            let caps = &entry.line.caps;
            let (address_caps, ctx) = entry.gate_input(&rec)?;
            gate::check(
                op,
                holder.privilege,
                || params(caps, address_caps),
                address_caps,
                &ctx,
            )?;
        }
        Ok(Authorized {
            provider: self.provider(entry.key.0).clone(),
            leg: entry.key.1,
            entry,
        })
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
        run(&*a.provider, a.leg).instrument(a.entry.span()).await
    }

    /// Dials `digits` on a call in dial tone or dialing (a trailing `;` keeps dialing open; an empty
    /// string ends a partial dial).
    pub async fn dial(&self, call: CallHandle, digits: &str) -> Result<(), Error> {
        let mut parsed = None;
        let a = self.authorize(call, CallOperation::Dial, |caps, _| {
            let d = DialString::parse(digits)?;
            d.check(&caps.dial)?;
            parsed = Some(d);
            Ok(())
        })?;
        let Some(digits) = parsed else {
            return Err(Error::InvalidParameter {
                reason: "no dial string".into(),
            });
        };
        a.provider
            .dial(a.leg, &digits)
            .instrument(a.entry.span())
            .await
    }

    /// Claims an offered call so that it alerts.
    pub async fn accept(&self, call: CallHandle) -> Result<(), Error> {
        self.dispatch(call, CallOperation::Accept, no_params, |p, leg| {
            p.accept(leg)
        })
        .await
    }

    /// Answers an offered or accepted call. Returns when the call is connected.
    pub async fn answer(&self, call: CallHandle) -> Result<(), Error> {
        self.dispatch(call, CallOperation::Answer, no_params, |p, leg| {
            p.answer(leg)
        })
        .await
    }

    /// Refuses an offered call. Returns when it is idle.
    pub async fn reject(&self, call: CallHandle) -> Result<(), Error> {
        let a = self.authorize(call, CallOperation::Reject, no_params)?;
        let run = a.provider.reject(a.leg).instrument(a.entry.span());
        intending(&[&a.entry], Disposition::Rejected, run).await
    }

    /// Hangs up. Returns when the call is idle. The handle stays valid (for reading) until deallocated.
    pub async fn drop_call(&self, call: CallHandle) -> Result<(), Error> {
        self.dispatch(call, CallOperation::Drop, no_params, |p, leg| {
            p.drop_call(leg)
        })
        .await
    }

    /// Holds a connected call. Returns when it is on hold.
    pub async fn hold(&self, call: CallHandle) -> Result<(), Error> {
        self.dispatch(call, CallOperation::Hold, no_params, |p, leg| p.hold(leg))
            .await
    }

    /// Takes a held call off hold. Returns when it is connected again.
    pub async fn unhold(&self, call: CallHandle) -> Result<(), Error> {
        self.dispatch(call, CallOperation::Unhold, no_params, |p, leg| {
            p.unhold(leg)
        })
        .await
    }

    /// Holds `active` and takes `held` off hold, as one step. Both must be this session's calls on the
    /// same address; `active` must be the one not on hold.
    pub async fn swap_hold(&self, active: CallHandle, held: CallHandle) -> Result<(), Error> {
        let a = self.authorize(active, CallOperation::SwapHold, no_params)?;
        let h = self.authorize(held, CallOperation::SwapHold, no_params)?;
        if active == held
            || !Arc::ptr_eq(&a.entry.line, &h.entry.line)
            || a.entry.address != h.entry.address
        {
            return Err(Error::InvalidParameter {
                reason: "swap hold needs two different calls on the same address".into(),
            });
        }
        for (entry, want_held) in [(&a.entry, false), (&h.entry, true)] {
            let state = lock(&entry.rec).state.kind();
            if state.is_held() != want_held {
                return Err(Error::InvalidCallState { state });
            }
        }
        a.provider
            .swap_hold(a.leg, h.leg)
            .instrument(a.entry.span())
            .await
    }

    /// The line open through which this session holds `call`.
    fn line_of(&self, entry: &CallEntry, call: CallHandle) -> Result<LineHandle, Error> {
        lock(&entry.rec)
            .holder(&self.inner, call)
            .map(|h| h.line)
            .ok_or(Error::InvalidCallHandle)
    }

    /// A second call of this session taking part in an operation (a consultation call): it must be held
    /// by this session as owner, on the same address as `first`, and in a state `states` accepts.
    fn partner(
        &self,
        first: &CallEntry,
        call: CallHandle,
        states: impl Fn(CallStateKind) -> bool,
    ) -> Result<Arc<CallEntry>, Error> {
        let entry = self.entry(call)?;
        let rec = lock(&entry.rec);
        let holder = rec
            .holder(&self.inner, call)
            .ok_or(Error::InvalidCallHandle)?;
        if holder.privilege != CallPrivilege::Owner {
            return Err(Error::NotOwner);
        }
        if !Arc::ptr_eq(&entry.line, &first.line) || entry.address != first.address {
            return Err(Error::InvalidParameter {
                reason: "both calls must be on the same address".into(),
            });
        }
        if !states(rec.state.kind()) {
            return Err(Error::InvalidCallState {
                state: rec.state.kind(),
            });
        }
        drop(rec);
        Ok(entry)
    }

    /// Holds a connected call pending transfer and returns a new consultation call in dial tone; dial
    /// it, then [`complete_transfer`](Session::complete_transfer). Dropping the consultation call (or
    /// unholding the original) cancels.
    pub async fn setup_transfer(&self, call: CallHandle) -> Result<CallHandle, Error> {
        let a = self.authorize(call, CallOperation::SetupTransfer, no_params)?;
        let line = self.line_of(&a.entry, call)?;
        let (provider, leg) = (a.provider.clone(), a.leg);
        let consult = self
            .create(line, |request| async move {
                provider.setup_transfer(leg, request).await.map(|c| vec![c])
            })
            .instrument(a.entry.span())
            .await?
            .into_iter()
            .next()
            .ok_or(Error::OperationFailed {
                reason: "the provider created no consultation call".into(),
            })?;
        self.pair_consultation(&a.entry, consult, false);
        Ok(consult)
    }

    /// Completes a consultation transfer of `held` (on hold pending transfer) with `consultation`
    /// (connected, ringing back, busy or proceeding). As a [`TransferMode::Transfer`] both of this
    /// session's calls go idle and the other two parties are connected; as a
    /// [`TransferMode::Conference`] the three parties form a conference, whose new parent call is
    /// returned.
    pub async fn complete_transfer(
        &self,
        held: CallHandle,
        consultation: CallHandle,
        mode: TransferMode,
    ) -> Result<Option<CallHandle>, Error> {
        let a = self.authorize(held, CallOperation::CompleteTransfer, |_, address| {
            let modes = address.transfer_modes;
            let offered = match mode {
                TransferMode::Transfer => modes.transfer,
                TransferMode::Conference => modes.conference,
            };
            if (modes.transfer || modes.conference) && !offered {
                return Err(Error::InvalidParameter {
                    reason: format!("the address cannot complete a transfer as {mode:?}"),
                });
            }
            Ok(())
        })?;
        let address_caps = a.entry.address_caps()?;
        let c = self.partner(&a.entry, consultation, |k| {
            gate::completes_transfer(address_caps, k)
        })?;
        if Arc::ptr_eq(&a.entry, &c) {
            return Err(Error::InvalidParameter {
                reason: "a call cannot be transferred to itself".into(),
            });
        }
        let line = self.line_of(&a.entry, held)?;
        let (provider, leg, consult_leg) = (a.provider.clone(), a.leg, c.key.1);
        let run = self
            .create(line, |request| async move {
                provider
                    .complete_transfer(leg, consult_leg, mode, request)
                    .await
                    .map(|c| c.into_iter().collect())
            })
            .instrument(a.entry.span());
        let created = if mode == TransferMode::Transfer {
            // The two calls leave this line and become one: each record names the other.
            let ids = [&a.entry, &c].map(|e| lock(&e.rec).info.call_id);
            for (e, other) in [(&a.entry, ids[1]), (&c, ids[0])] {
                if let Some(d) = &mut lock(&e.rec).detail {
                    d.relate(other);
                }
            }
            intending(&[&a.entry, &c], Disposition::Transferred, run).await?
        } else {
            run.await?
        };
        let conference = created.into_iter().next();
        if let Some(parent) = conference {
            let parent = self.entry(parent)?;
            self.engine.join_conference(&parent, &a.entry);
            self.engine.join_conference(&parent, &c);
        }
        Ok(conference)
    }

    /// Turns a connected call into a conference: returns the conference's parent call (on hold pending
    /// a party) and a consultation call in dial tone; the original call becomes the first party. Dial the
    /// consultation call, then [`add_to_conference`](Session::add_to_conference).
    pub async fn setup_conference(
        &self,
        call: CallHandle,
    ) -> Result<(CallHandle, CallHandle), Error> {
        let a = self.authorize(call, CallOperation::SetupConference, no_params)?;
        let line = self.line_of(&a.entry, call)?;
        let origin = Origin {
            request: RequestId(0),
            line: a.entry.line.local,
            address: a.entry.address,
        };
        let (provider, leg) = (a.provider.clone(), a.leg);
        let created = self
            .create(line, |request| async move {
                provider
                    .setup_conference(Some(leg), Origin { request, ..origin })
                    .await
                    .map(|(conf, consult)| vec![conf, consult])
            })
            .instrument(a.entry.span())
            .await?;
        let [conference, consult] = created[..] else {
            return Err(Error::OperationFailed {
                reason: "the provider did not create a conference and a consultation call".into(),
            });
        };
        let parent = self.entry(conference)?;
        self.engine.join_conference(&parent, &a.entry);
        self.pair_consultation(&parent, consult, true);
        Ok((conference, consult))
    }

    /// Sets up a conference without an existing call, on providers whose address offers it
    /// ([`AddressOperation::SetupConference`]): returns the conference's parent call and a consultation
    /// call in dial tone.
    pub async fn setup_conference_on(
        &self,
        line: LineHandle,
    ) -> Result<(CallHandle, CallHandle), Error> {
        self.alive()?;
        let slot = self.open_line_slot(line)?;
        let address = AddressId(0);
        let caps = slot
            .caps
            .addresses
            .get(address.0 as usize)
            .ok_or(Error::InvalidAddressId)?;
        gate::check_address(
            AddressOperation::SetupConference,
            || Ok(()),
            caps,
            &slot.usage(address),
        )?;
        let provider = self.provider(slot.provider).clone();
        let local = slot.local;
        let created = self
            .create(line, |request| async move {
                provider
                    .setup_conference(
                        None,
                        Origin {
                            request,
                            line: local,
                            address,
                        },
                    )
                    .await
                    .map(|(conf, consult)| vec![conf, consult])
            })
            .await?;
        let [conference, consult] = created[..] else {
            return Err(Error::OperationFailed {
                reason: "the provider did not create a conference and a consultation call".into(),
            });
        };
        self.set_role(conference, CallRole::ConferenceParent { parties: 0 });
        let parent = self.entry(conference)?;
        self.pair_consultation(&parent, consult, true);
        Ok((conference, consult))
    }

    /// Holds a conference pending a new party and returns a consultation call in dial tone.
    pub async fn prepare_add_to_conference(
        &self,
        conference: CallHandle,
    ) -> Result<CallHandle, Error> {
        let a = self.authorize(conference, CallOperation::PrepareAddToConference, no_params)?;
        let line = self.line_of(&a.entry, conference)?;
        let (provider, leg) = (a.provider.clone(), a.leg);
        let consult = self
            .create(line, |request| async move {
                provider
                    .prepare_add_to_conference(leg, request)
                    .await
                    .map(|c| vec![c])
            })
            .instrument(a.entry.span())
            .await?
            .into_iter()
            .next()
            .ok_or(Error::OperationFailed {
                reason: "the provider created no consultation call".into(),
            })?;
        self.pair_consultation(&a.entry, consult, true);
        Ok(consult)
    }

    /// Adds a consultation call to the conference it was made for.
    pub async fn add_to_conference(
        &self,
        conference: CallHandle,
        consultation: CallHandle,
    ) -> Result<(), Error> {
        let a = self.authorize(conference, CallOperation::AddToConference, no_params)?;
        let address_caps = a.entry.address_caps()?;
        let c = self.partner(&a.entry, consultation, |k| {
            gate::joins_conference(address_caps, k)
        })?;
        if !matches!(lock(&c.rec).role, CallRole::Consultation { .. }) {
            return Err(Error::InvalidCallHandle);
        }
        let parties = lock(&a.entry.rec).parties.list().len() as u32;
        let max = a
            .entry
            .line
            .caps
            .addresses
            .get(a.entry.address.0 as usize)
            .map_or(0, |c| c.max_conference);
        if parties >= max {
            return Err(Error::ConferenceFull);
        }
        a.provider
            .add_to_conference(a.leg, c.key.1)
            .instrument(a.entry.span())
            .await?;
        self.engine.join_conference(&a.entry, &c);
        Ok(())
    }

    /// The calls of the conference `call` belongs to (or is the parent of) that this session holds: the
    /// parent first, then the parties in the order they joined.
    pub fn conference_calls(&self, call: CallHandle) -> Result<Vec<CallHandle>, Error> {
        let entry = self.entry(call)?;
        let parent = {
            let rec = lock(&entry.rec);
            rec.holder(&self.inner, call)
                .ok_or(Error::InvalidCallHandle)?;
            match (&rec.role, &rec.conference) {
                (CallRole::ConferenceParent { .. }, _) => entry.clone(),
                (CallRole::ConferenceParty { .. }, Some(p)) => {
                    p.upgrade().ok_or(Error::NoConference)?
                }
                _ => return Err(Error::NoConference),
            }
        };
        let members: Vec<Arc<CallEntry>> = std::iter::once(parent.clone())
            .chain(lock(&parent.rec).parties.list().iter().cloned())
            .collect();
        Ok(members
            .iter()
            .filter_map(|m| {
                lock(&m.rec)
                    .holders
                    .iter()
                    .find(|h| Arc::ptr_eq(&h.session, &self.inner))
                    .map(|h| h.handle)
            })
            .collect())
    }

    /// Makes `consult` the consultation call of `original` (a call held pending a transfer, or a
    /// conference waiting for a party): its role says so, and each names the other as its partner.
    fn pair_consultation(
        &self,
        original: &Arc<CallEntry>,
        consult: CallHandle,
        for_conference: bool,
    ) {
        let Ok(c) = self.entry(consult) else {
            return;
        };
        {
            let mut rec = lock(&c.rec);
            rec.role = CallRole::Consultation { for_conference };
            rec.partner = Some(Arc::downgrade(original));
        }
        lock(&original.rec).partner = Some(Arc::downgrade(&c));
    }

    fn set_role(&self, call: CallHandle, role: CallRole) {
        if let Ok(entry) = self.entry(call) {
            lock(&entry.rec).role = role;
        }
    }

    /// Transfers a connected call to `destination` without consultation. Returns when the call has left
    /// this line (it is idle here).
    pub async fn blind_transfer(&self, call: CallHandle, destination: &str) -> Result<(), Error> {
        let mut parsed = None;
        let a = self.authorize(call, CallOperation::BlindTransfer, |caps, _| {
            parsed = Some(parse_destination(destination, caps)?);
            Ok(())
        })?;
        let Some(d) = parsed else {
            return Err(missing_destination());
        };
        let run = a
            .provider
            .blind_transfer(a.leg, &d)
            .instrument(a.entry.span());
        intending(&[&a.entry], Disposition::Transferred, run).await
    }

    /// Deflects an offered call to `destination` before answering.
    pub async fn redirect(&self, call: CallHandle, destination: &str) -> Result<(), Error> {
        let mut parsed = None;
        let a = self.authorize(call, CallOperation::Redirect, |caps, _| {
            parsed = Some(parse_destination(destination, caps)?);
            Ok(())
        })?;
        let Some(d) = parsed else {
            return Err(missing_destination());
        };
        let run = a.provider.redirect(a.leg, &d).instrument(a.entry.span());
        intending(&[&a.entry], Disposition::Redirected, run).await
    }

    /// Parks a connected call; returns the orbit it was parked in.
    pub async fn park(&self, call: CallHandle, mode: ParkMode) -> Result<String, Error> {
        let a = self.authorize(call, CallOperation::Park, |_, address| {
            let modes = address.park_modes;
            // A mode the address lacks is a parameter error only where park exists at all; where it
            // does not, the capability step answers "never".
            let parks = modes.directed || modes.non_directed;
            match &mode {
                ParkMode::Directed(orbit) if orbit.is_empty() => Err(Error::InvalidParameter {
                    reason: "a directed park needs an orbit".into(),
                }),
                ParkMode::Directed(_) if parks && !modes.directed => Err(Error::InvalidParameter {
                    reason: "the address does not support directed park".into(),
                }),
                ParkMode::NonDirected if parks && !modes.non_directed => {
                    Err(Error::InvalidParameter {
                        reason: "the address does not support non-directed park".into(),
                    })
                }
                _ => Ok(()),
            }
        })?;
        let run = a.provider.park(a.leg, &mode).instrument(a.entry.span());
        intending(&[&a.entry], Disposition::Parked, run).await
    }

    /// Removes a party from its conference.
    pub async fn remove_from_conference(&self, call: CallHandle) -> Result<(), Error> {
        let entry = self.entry(call)?;
        self.dispatch(
            call,
            CallOperation::RemoveFromConference,
            no_params,
            |p, leg| p.remove_from_conference(leg),
        )
        .await?;
        self.engine.leave_conference(&entry);
        Ok(())
    }

    /// Asks the switch to complete a call to a busy or unanswered party later; returns a completion ID.
    pub async fn complete_call(
        &self,
        call: CallHandle,
        mode: CompletionMode,
    ) -> Result<u32, Error> {
        self.dispatch(call, CallOperation::CompleteCall, no_params, |p, leg| {
            p.complete_call(leg, mode)
        })
        .await
    }

    /// Sends `digits` (`0-9 A-D * #`, `,` pause, `!` flash) in-band on a connected call.
    pub async fn generate_digits(
        &self,
        call: CallHandle,
        digits: &str,
        mode: DigitMode,
    ) -> Result<(), Error> {
        let a = self.authorize(call, CallOperation::GenerateDigits, |_, _| {
            match digits
                .chars()
                .find(|c| !(tapir_core::dial::is_dtmf_digit(*c) || matches!(c, ',' | '!')))
            {
                Some(c) => Err(Error::InvalidParameter {
                    reason: format!("{c:?} cannot be generated as a digit"),
                }),
                None if digits.is_empty() => Err(Error::InvalidParameter {
                    reason: "no digits to generate".into(),
                }),
                None => Ok(()),
            }
        })?;
        a.provider
            .generate_digits(a.leg, digits, mode)
            .instrument(a.entry.span())
            .await
    }

    /// Starts (`Some`) or stops (`None`) reporting digits detected on the call to this session as
    /// [`Event::Digit`](crate::Event::Digit). Monitors may do this too; each session chooses for itself,
    /// and the provider listens while at least one session wants digits.
    pub async fn monitor_digits(
        &self,
        call: CallHandle,
        mode: Option<DigitMode>,
    ) -> Result<(), Error> {
        let a = self.authorize(call, CallOperation::MonitorDigits, no_params)?;
        let (previous, wanted) = {
            let mut rec = lock(&a.entry.rec);
            let before = rec.holders.iter().any(|h| h.digits);
            let h = rec
                .holders
                .iter_mut()
                .find(|h| h.is(&self.inner, call))
                .ok_or(Error::InvalidCallHandle)?;
            let previous = h.digits;
            h.digits = mode.is_some();
            (previous, before || mode.is_some())
        };
        let provider_mode = if wanted {
            mode.or(Some(DigitMode::Dtmf))
        } else {
            None
        };
        let r = a
            .provider
            .monitor_digits(a.leg, provider_mode)
            .instrument(a.entry.span())
            .await;
        if r.is_err() {
            // Nothing changed: undo this session's choice.
            let mut rec = lock(&a.entry.rec);
            if let Some(h) = rec.holders.iter_mut().find(|h| h.is(&self.inner, call)) {
                h.digits = previous;
            }
        }
        r
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
            .filter(|s| s.serves(app_name) && !Arc::ptr_eq(s.value(), &self.inner))
            .find_map(|s| {
                s.lines
                    .iter()
                    .find(|o| Arc::ptr_eq(&o.line, &a.entry.line))
                    .map(|o| (s.value().clone(), *o.key()))
            });
        let Some((target, line)) = target else {
            return Err(if self.inner.serves(app_name) {
                Error::TargetSelf
            } else {
                Error::TargetNotFound
            });
        };
        self.engine.make_owner(&a.entry, &target, line);
        Ok(())
    }

    /// Secures the call against interruption for the rest of its life.
    pub async fn secure_call(&self, call: CallHandle) -> Result<(), Error> {
        self.dispatch(call, CallOperation::SecureCall, no_params, |p, leg| {
            p.secure_call(leg)
        })
        .await
    }

    /// Releases this session's handle. The call itself is not changed.
    ///
    /// The sole owner of a call that is not idle cannot deallocate it (drop it first, or hand it to
    /// another owner): that would leave a live call nobody can control. It gets
    /// [`Error::InvalidCallState`].
    pub fn deallocate(&self, call: CallHandle) -> Result<(), Error> {
        let entry = self.entry(call)?;
        if Inner::sole_live_owner(&entry, &self.inner, call) {
            return Err(Error::InvalidCallState {
                state: lock(&entry.rec).state.kind(),
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
        let entry = self.entry(call)?;
        let mut rec = lock(&entry.rec);
        let owners = rec.owners();
        let state = rec.state;
        let h = rec
            .holders
            .iter_mut()
            .find(|h| h.is(&self.inner, call))
            .ok_or(Error::InvalidCallHandle)?;
        if h.privilege == privilege {
            return Ok(());
        }
        if privilege == CallPrivilege::Monitor && owners == 1 && !state.is_idle() {
            return Err(Error::InvalidCallState {
                state: state.kind(),
            });
        }
        h.privilege = privilege;
        if privilege == CallPrivilege::Owner
            && let Some(d) = &mut rec.detail
        {
            d.note_owner(&self.inner.app);
        }
        let changed = match privilege {
            CallPrivilege::Owner => InfoChange::NUM_OWNERS_INCREASED | InfoChange::NUM_MONITORS,
            CallPrivilege::Monitor => InfoChange::NUM_OWNERS_DECREASED | InfoChange::NUM_MONITORS,
        };
        rec.announce_privileges(call, changed);
        Ok(())
    }

    /// The call's status: state, this session's privilege, the features available to it now.
    pub fn call_status(&self, call: CallHandle) -> Result<CallStatus, Error> {
        let entry = self.entry(call)?;
        let rec = lock(&entry.rec);
        let holder = rec
            .holder(&self.inner, call)
            .ok_or(Error::InvalidCallHandle)?;
        let (address_caps, ctx) = entry.gate_input(&rec)?;
        let mut features = gate::features(address_caps, &ctx);
        if holder.privilege == CallPrivilege::Monitor {
            features = features
                .iter()
                .filter(|op| !op.requires_owner())
                .fold(FeatureSet::EMPTY, FeatureSet::with);
        }
        Ok(CallStatus {
            state: rec.state,
            privilege: holder.privilege,
            features,
            num_owners: rec.owners(),
            num_monitors: rec.monitors(),
        })
    }

    /// What the conformance walk reads of a call beyond the public API: the provider's leg, the
    /// engine line and address it is on, and the role the engine's own operations gave it.
    #[cfg(feature = "conformance")]
    pub(crate) fn inspect(&self, call: CallHandle) -> Result<Inspected, Error> {
        let entry = self.entry(call)?;
        let role = lock(&entry.rec).role;
        Ok(Inspected {
            leg: entry.key.1,
            line: entry.line.id,
            address: entry.address,
            role,
        })
    }

    /// The provider's own ID for engine line `line`.
    #[cfg(feature = "conformance")]
    pub(crate) fn provider_line(&self, line: LineId) -> Option<LineId> {
        self.engine.line(line).map(|l| l.local)
    }

    /// The call's information: call ID, parties, origin, reason, where it is.
    pub fn call_info(&self, call: CallHandle) -> Result<CallInfoView, Error> {
        let entry = self.entry(call)?;
        let rec = lock(&entry.rec);
        let holder = rec
            .holder(&self.inner, call)
            .ok_or(Error::InvalidCallHandle)?;
        let mut view = CallInfoView {
            info: CallInfo::clone(&rec.info),
            provider: entry.key.0,
            line: entry.line.id,
            address: entry.address,
            line_handle: holder.line,
            num_owners: rec.owners(),
            num_monitors: rec.monitors(),
            consultation_partner: None,
        };
        let partner = rec.partner.as_ref().and_then(Weak::upgrade);
        drop(rec);
        // The partner's lock is taken only once this call's is let go: one call lock at a time.
        if let Some(p) = partner {
            let p = lock(&p.rec);
            if !p.state.is_idle() {
                view.consultation_partner = Some(p.info.call_id);
            }
        }
        Ok(view)
    }

    /// The lines this session has open: each open's handle and the line.
    pub fn line_opens(&self) -> Vec<(LineHandle, LineId)> {
        self.inner
            .lines
            .iter()
            .map(|e| (*e.key(), e.value().line.id))
            .collect()
    }

    /// The call handles this session holds.
    pub fn calls(&self) -> Vec<CallHandle> {
        self.inner.calls.iter().map(|e| *e.key()).collect()
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
        let devices = self
            .provider(slot.provider)
            .line_devices(slot.local)
            .await?;
        let reason = lock(&self.engine.provider(slot.provider).status).line_unusable(slot.local);
        Ok(crate::LineStatus {
            devices,
            line: slot.id,
            in_service: reason.is_none(),
            reason,
            opens: lock(&slot.openers).len(),
            addresses: slot
                .caps
                .addresses
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let address = AddressId(i as u32);
                    crate::AddressStatus {
                        address,
                        number: a.address.clone(),
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
                let mut q = lock(&self.inner.queue);
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
        lock(&self.inner.queue).pop(self.reader.id)
    }

    /// Logs this application off. An individual session ends: calls it solely owns are dropped, every
    /// handle is released, every line closed. The shared session ends that way when its last
    /// application logs off; until then only this application's event stream ends.
    pub async fn logoff(self) {
        let last = {
            let mut q = lock(&self.inner.queue);
            if q.ended {
                return;
            }
            let remaining = q.remove_reader(self.reader.id);
            let mut apps = lock(&self.inner.apps);
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
            debug!(session = %self.inner.id, app = self.reader.app, "left the shared session");
        }
    }
}
