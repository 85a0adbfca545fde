//! A provider that runs every call of another provider through a [`Hook`]: the engine uses one to
//! keep a provider's panics and hangs to itself, the fault injector to make them happen.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use tapir_core::caps::LineCaps;
use tapir_core::dial::DialString;
use tapir_core::gate::{AddressOperation, CallOperation, SessionOperation};
use tapir_core::media::MediaModes;
use tapir_core::params::{
    CompletionMode, DigitMode, Forwarding, MakeCall, Origin, ParkMode, PickupTarget, RequestId,
    TransferMode,
};
use tapir_core::{AddressId, CallLegId, LineId};

use crate::{EventSink, LineDevice, Provider, Result};

/// The methods, as [`Hook::around`] names them, that need no switch: the provider's life cycle, the
/// log-on check, and opening and closing its lines. A provider that has lost its switch
/// ([`ProviderEvent::Failed`](crate::ProviderEvent::Failed)) is still asked these; the engine
/// refuses every other operation on it until it is restored, and the fault injector's failed
/// provider answers the same way.
pub const WITHOUT_SWITCH: [&str; 5] = ["start", "stop", "session-logon", "open-line", "close-line"];

/// What an [`Intercept`] does around each call of the provider it wraps.
pub trait Hook: Send + Sync + 'static {
    /// Runs `call` — the wrapped provider's `method`, named as the operation it carries out
    /// (`"hold"`, `"make-call"`; `"start"`, `"open-line"` … for the others) — and
    /// returns its result, or another: a hook may time the call out, catch its panic, delay it,
    /// refuse it, or never finish.
    fn around<'a, T: Send + 'a>(
        &'a self,
        method: &'static str,
        call: impl Future<Output = Result<T>> + Send + 'a,
    ) -> impl Future<Output = Result<T>> + Send + 'a;

    /// The sink the wrapped provider reports through, given the one passed to `start`. By default
    /// the same one; a hook may put itself between the provider and the engine.
    fn sink(&self, sink: EventSink) -> EventSink {
        sink
    }
}

/// A provider that is another provider with a [`Hook`] around each of its methods. Its name and
/// session limit are the wrapped provider's.
pub struct Intercept<H> {
    inner: Arc<dyn Provider>,
    hook: H,
}

impl<H: Hook> Intercept<H> {
    /// `inner`, with `hook` around each call.
    pub fn new(inner: Arc<dyn Provider>, hook: H) -> Self {
        Self { inner, hook }
    }

    /// The hook.
    pub fn hook(&self) -> &H {
        &self.hook
    }

    /// The wrapped provider.
    pub fn inner(&self) -> &Arc<dyn Provider> {
        &self.inner
    }
}

#[async_trait]
impl<H: Hook> Provider for Intercept<H> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn session_limit(&self) -> Option<u32> {
        self.inner.session_limit()
    }
    async fn start(&self, sink: EventSink) -> Result<Vec<LineCaps>> {
        let sink = self.hook.sink(sink);
        self.hook.around("start", self.inner.start(sink)).await
    }
    async fn stop(&self) {
        let stop = async {
            self.inner.stop().await;
            Ok(())
        };
        let _ = self.hook.around("stop", stop).await;
    }
    async fn session_logon(&self) -> Result<()> {
        self.hook
            .around("session-logon", self.inner.session_logon())
            .await
    }
    async fn open_line(&self, line: LineId, media_modes: MediaModes) -> Result<()> {
        let call = self.inner.open_line(line, media_modes);
        self.hook.around("open-line", call).await
    }
    async fn close_line(&self, line: LineId) -> Result<()> {
        self.hook
            .around("close-line", self.inner.close_line(line))
            .await
    }
    async fn line_devices(&self, line: LineId) -> Result<Vec<LineDevice>> {
        let call = self.inner.line_devices(line);
        self.hook.around("line-devices", call).await
    }
    async fn make_call(&self, request: MakeCall) -> Result<CallLegId> {
        let call = self.inner.make_call(request);
        self.hook
            .around(AddressOperation::MakeCall.name(), call)
            .await
    }
    async fn dial(&self, leg: CallLegId, digits: &DialString) -> Result<()> {
        self.hook
            .around(CallOperation::Dial.name(), self.inner.dial(leg, digits))
            .await
    }
    async fn accept(&self, leg: CallLegId) -> Result<()> {
        self.hook
            .around(CallOperation::Accept.name(), self.inner.accept(leg))
            .await
    }
    async fn answer(&self, leg: CallLegId) -> Result<()> {
        self.hook
            .around(CallOperation::Answer.name(), self.inner.answer(leg))
            .await
    }
    async fn reject(&self, leg: CallLegId) -> Result<()> {
        self.hook
            .around(CallOperation::Reject.name(), self.inner.reject(leg))
            .await
    }
    async fn drop_call(&self, leg: CallLegId) -> Result<()> {
        self.hook
            .around(CallOperation::Drop.name(), self.inner.drop_call(leg))
            .await
    }
    async fn redirect(&self, leg: CallLegId, destination: &DialString) -> Result<()> {
        let call = self.inner.redirect(leg, destination);
        self.hook.around(CallOperation::Redirect.name(), call).await
    }
    async fn hold(&self, leg: CallLegId) -> Result<()> {
        self.hook
            .around(CallOperation::Hold.name(), self.inner.hold(leg))
            .await
    }
    async fn unhold(&self, leg: CallLegId) -> Result<()> {
        self.hook
            .around(CallOperation::Unhold.name(), self.inner.unhold(leg))
            .await
    }
    async fn swap_hold(&self, active: CallLegId, held: CallLegId) -> Result<()> {
        let call = self.inner.swap_hold(active, held);
        self.hook.around(CallOperation::SwapHold.name(), call).await
    }
    async fn blind_transfer(&self, leg: CallLegId, destination: &DialString) -> Result<()> {
        let call = self.inner.blind_transfer(leg, destination);
        self.hook
            .around(CallOperation::BlindTransfer.name(), call)
            .await
    }
    async fn setup_transfer(&self, leg: CallLegId, request: RequestId) -> Result<CallLegId> {
        let call = self.inner.setup_transfer(leg, request);
        self.hook
            .around(CallOperation::SetupTransfer.name(), call)
            .await
    }
    async fn complete_transfer(
        &self,
        held: CallLegId,
        consultation: CallLegId,
        mode: TransferMode,
        request: RequestId,
    ) -> Result<Option<CallLegId>> {
        let call = self
            .inner
            .complete_transfer(held, consultation, mode, request);
        self.hook
            .around(CallOperation::CompleteTransfer.name(), call)
            .await
    }
    async fn setup_conference(
        &self,
        leg: Option<CallLegId>,
        origin: Origin,
    ) -> Result<(CallLegId, CallLegId)> {
        let call = self.inner.setup_conference(leg, origin);
        self.hook
            .around(CallOperation::SetupConference.name(), call)
            .await
    }
    async fn prepare_add_to_conference(
        &self,
        conference: CallLegId,
        request: RequestId,
    ) -> Result<CallLegId> {
        let call = self.inner.prepare_add_to_conference(conference, request);
        self.hook
            .around(CallOperation::PrepareAddToConference.name(), call)
            .await
    }
    async fn add_to_conference(
        &self,
        conference: CallLegId,
        consultation: CallLegId,
    ) -> Result<()> {
        let call = self.inner.add_to_conference(conference, consultation);
        self.hook
            .around(CallOperation::AddToConference.name(), call)
            .await
    }
    async fn remove_from_conference(&self, leg: CallLegId) -> Result<()> {
        let call = self.inner.remove_from_conference(leg);
        self.hook
            .around(CallOperation::RemoveFromConference.name(), call)
            .await
    }
    async fn park(&self, leg: CallLegId, mode: &ParkMode) -> Result<String> {
        self.hook
            .around(CallOperation::Park.name(), self.inner.park(leg, mode))
            .await
    }
    async fn unpark(&self, origin: Origin, orbit: &str) -> Result<CallLegId> {
        self.hook
            .around(
                AddressOperation::Unpark.name(),
                self.inner.unpark(origin, orbit),
            )
            .await
    }
    async fn pickup(&self, origin: Origin, target: &PickupTarget) -> Result<CallLegId> {
        self.hook
            .around(
                AddressOperation::Pickup.name(),
                self.inner.pickup(origin, target),
            )
            .await
    }
    async fn forward(
        &self,
        line: LineId,
        address: AddressId,
        forwarding: &Forwarding,
    ) -> Result<()> {
        let call = self.inner.forward(line, address, forwarding);
        self.hook
            .around(AddressOperation::Forward.name(), call)
            .await
    }
    async fn generate_digits(&self, leg: CallLegId, digits: &str, mode: DigitMode) -> Result<()> {
        let call = self.inner.generate_digits(leg, digits, mode);
        self.hook
            .around(CallOperation::GenerateDigits.name(), call)
            .await
    }
    async fn monitor_digits(&self, leg: CallLegId, mode: Option<DigitMode>) -> Result<()> {
        let call = self.inner.monitor_digits(leg, mode);
        self.hook
            .around(CallOperation::MonitorDigits.name(), call)
            .await
    }
    async fn secure_call(&self, leg: CallLegId) -> Result<()> {
        let call = self.inner.secure_call(leg);
        self.hook
            .around(CallOperation::SecureCall.name(), call)
            .await
    }
    async fn complete_call(&self, leg: CallLegId, mode: CompletionMode) -> Result<u32> {
        let call = self.inner.complete_call(leg, mode);
        self.hook
            .around(CallOperation::CompleteCall.name(), call)
            .await
    }
    async fn cancel_call_completion(&self, line: LineId, completion: u32) -> Result<()> {
        let call = self.inner.cancel_call_completion(line, completion);
        self.hook
            .around(SessionOperation::CancelCallCompletion.name(), call)
            .await
    }
}
