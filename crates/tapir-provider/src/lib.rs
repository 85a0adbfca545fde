//! The tapir service-provider interface.
//!
//! A provider knows its switch — a PBX, a modem, a SIP stack — and nothing about applications, sessions or
//! handles. It implements [`Provider`]: start and stop, describe its lines, open and close them, and one
//! method per call operation. Each operation method returns when the switch **has done** the operation
//! (or with the [`Error`] saying why not), and the provider reports every state change it causes — and
//! every change the far end causes — through the [`EventSink`] it was given at start.
//!
//! Operations a provider does not implement keep their default body, which returns
//! [`Error::OperationUnavailable`]; the provider should then also leave them out of its
//! [`AddressCaps`](tapir_core::caps::AddressCaps), so applications can see in advance what is possible.
//!
//! ## Calls the engine asks for
//!
//! Requests that create a call (make call, setup transfer, unpark, pickup …) carry a
//! [`RequestId`]. The provider reports the new call with [`NewCall::request`] set to it — before or after
//! further state changes, but before the method returns — and returns the call's [`CallLegId`]. The engine
//! uses the request ID to give the requesting application its handle before any event names the call.
//!
//! ## When the switch is lost
//!
//! A line that cannot be used for a while (a phone unregistered, a modem unplugged) is reported out
//! of service with [`LineEvent::OutOfService`], and its calls end as the provider reports them. A
//! provider that loses its switch as a whole — the link to the PBX down, the transport failed, every
//! call gone with it — reports [`ProviderEvent::Failed`] instead: the engine ends every call of the
//! provider, takes its lines out of service and asks it nothing but life-cycle and line questions
//! until it reports [`ProviderEvent::Restored`]. A provider's panics and hangs are the engine's to
//! contain (each call is guarded); they do not make it failed.
//!
//! ## Testing a provider without the engine
//!
//! [`EventLog`] records what a provider reports, so a provider's own tests can drive it directly.

#[cfg(feature = "conformance")]
pub mod conformance;
mod events;
#[cfg(feature = "faults")]
pub mod faults;
mod intercept;

use async_trait::async_trait;
use tapir_core::Error;
use tapir_core::caps::LineCaps;
use tapir_core::dial::DialString;
use tapir_core::gate::{AddressOperation, CallOperation, SessionOperation};
use tapir_core::media::MediaModes;
use tapir_core::params::{
    CompletionMode, DigitMode, Forwarding, MakeCall, Origin, ParkMode, PickupTarget, RequestId,
    TransferMode,
};
use tapir_core::{AddressId, CallLegId, LineId};

pub use events::{
    EventHandler, EventLog, EventSink, LineDevice, LineEvent, NewCall, ProviderEvent,
};
pub use intercept::{Hook, Intercept, WITHOUT_SWITCH};

/// The result type of provider methods.
pub type Result<T> = std::result::Result<T, Error>;

fn unavailable<T>(operation: &'static str) -> Result<T> {
    Err(Error::OperationUnavailable { operation })
}

/// A service provider: the switch side of tapir.
///
/// Line IDs in this trait are the provider's own, from 0 to the number of lines it described minus one.
/// The engine maps them to engine-wide IDs.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// A short, stable name for logs and the status table, e.g. `"simswitch"`.
    fn name(&self) -> &str;

    /// Starts the provider. It keeps `sink` to report events, and returns the capabilities of each of
    /// its lines; the position in the list is the line's ID.
    async fn start(&self, sink: EventSink) -> Result<Vec<LineCaps>>;

    /// Stops the provider. Calls still live are dropped; no event follows the return.
    async fn stop(&self);

    /// How many application sessions the provider can serve at once (a hardware limit), or `None` for
    /// no limit. A log-on beyond it is refused with [`Error::SessionLimit`](tapir_core::Error).
    fn session_limit(&self) -> Option<u32> {
        None
    }

    /// An application session that uses this provider is logging on. Return an error if the provider
    /// cannot serve it now (its device is gone, say); the engine asks once more, then disables the
    /// provider's service for that session and says why. Called after [`start`](Provider::start).
    async fn session_logon(&self) -> Result<()> {
        Ok(())
    }

    /// The engine opened the line for at least one application: report its calls from now on.
    async fn open_line(&self, _line: LineId, _media_modes: MediaModes) -> Result<()> {
        Ok(())
    }

    /// The last application closed the line.
    async fn close_line(&self, _line: LineId) -> Result<()> {
        Ok(())
    }

    /// The devices the line reaches now (TAPI leaves a line's device status to its provider): the
    /// phones registered to it, a fixed contact. A provider whose lines are not reached through
    /// devices of their own (a simulated extension, a modem) has none to report — the default.
    /// Report [`LineEvent::DevicesChanged`] when the answer changes.
    async fn line_devices(&self, _line: LineId) -> Result<Vec<LineDevice>> {
        Ok(Vec::new())
    }

    /// Places a call. Returns once the call exists and its destination (if any) has been dialled — at the
    /// latest when it is proceeding — with the new call reported with `request.request` set.
    async fn make_call(&self, _request: MakeCall) -> Result<CallLegId> {
        unavailable(AddressOperation::MakeCall.name())
    }

    /// Dials more digits on a call in dial tone or dialing. An empty, non-partial string ends a partial
    /// dial.
    async fn dial(&self, _leg: CallLegId, _digits: &DialString) -> Result<()> {
        unavailable(CallOperation::Dial.name())
    }

    /// Claims an offered call so that it alerts.
    async fn accept(&self, _leg: CallLegId) -> Result<()> {
        unavailable(CallOperation::Accept.name())
    }

    /// Answers an offered or accepted call.
    async fn answer(&self, _leg: CallLegId) -> Result<()> {
        unavailable(CallOperation::Answer.name())
    }

    /// Refuses an offered call. By default the same as dropping it.
    async fn reject(&self, leg: CallLegId) -> Result<()> {
        self.drop_call(leg).await
    }

    /// Hangs up a call in any live state; it goes idle.
    async fn drop_call(&self, _leg: CallLegId) -> Result<()> {
        unavailable(CallOperation::Drop.name())
    }

    /// Deflects an offered call to `destination`; it goes idle here.
    async fn redirect(&self, _leg: CallLegId, _destination: &DialString) -> Result<()> {
        unavailable(CallOperation::Redirect.name())
    }

    /// Holds a connected call.
    async fn hold(&self, _leg: CallLegId) -> Result<()> {
        unavailable(CallOperation::Hold.name())
    }

    /// Takes a held call off hold.
    async fn unhold(&self, _leg: CallLegId) -> Result<()> {
        unavailable(CallOperation::Unhold.name())
    }

    /// Holds `active` and takes `held` off hold, as one step.
    async fn swap_hold(&self, _active: CallLegId, _held: CallLegId) -> Result<()> {
        unavailable(CallOperation::SwapHold.name())
    }

    /// Transfers a connected call to `destination` without consultation; the call goes idle here.
    async fn blind_transfer(&self, _leg: CallLegId, _destination: &DialString) -> Result<()> {
        unavailable(CallOperation::BlindTransfer.name())
    }

    /// Holds `leg` pending transfer and creates a consultation call in dial tone (reported with
    /// `request`), whose leg is returned.
    async fn setup_transfer(&self, _leg: CallLegId, _request: RequestId) -> Result<CallLegId> {
        unavailable(CallOperation::SetupTransfer.name())
    }

    /// Completes a consultation transfer of `held` with `consultation`. In conference mode the new
    /// conference call (reported with `request`) is returned.
    async fn complete_transfer(
        &self,
        _held: CallLegId,
        _consultation: CallLegId,
        _mode: TransferMode,
        _request: RequestId,
    ) -> Result<Option<CallLegId>> {
        unavailable(CallOperation::CompleteTransfer.name())
    }

    /// Turns `leg` (or, with `None`, nothing) into a conference: returns the conference call and a
    /// consultation call, both reported with `origin.request`.
    async fn setup_conference(
        &self,
        _leg: Option<CallLegId>,
        _origin: Origin,
    ) -> Result<(CallLegId, CallLegId)> {
        unavailable(CallOperation::SetupConference.name())
    }

    /// Holds the conference pending a new party and returns a consultation call reported with `request`.
    async fn prepare_add_to_conference(
        &self,
        _conference: CallLegId,
        _request: RequestId,
    ) -> Result<CallLegId> {
        unavailable(CallOperation::PrepareAddToConference.name())
    }

    /// Adds `consultation` to `conference`.
    async fn add_to_conference(
        &self,
        _conference: CallLegId,
        _consultation: CallLegId,
    ) -> Result<()> {
        unavailable(CallOperation::AddToConference.name())
    }

    /// Removes a party from its conference.
    async fn remove_from_conference(&self, _leg: CallLegId) -> Result<()> {
        unavailable(CallOperation::RemoveFromConference.name())
    }

    /// Parks a connected call; returns the orbit it is parked in.
    async fn park(&self, _leg: CallLegId, _mode: &ParkMode) -> Result<String> {
        unavailable(CallOperation::Park.name())
    }

    /// Retrieves the call parked in `orbit` to `origin`'s address; returns the new call.
    async fn unpark(&self, _origin: Origin, _orbit: &str) -> Result<CallLegId> {
        unavailable(AddressOperation::Unpark.name())
    }

    /// Picks up a ringing call to `origin`'s address; returns the new call.
    async fn pickup(&self, _origin: Origin, _target: &PickupTarget) -> Result<CallLegId> {
        unavailable(AddressOperation::Pickup.name())
    }

    /// Replaces the forwarding of an address (an empty [`Forwarding`] cancels it).
    async fn forward(
        &self,
        _line: LineId,
        _address: AddressId,
        _forwarding: &Forwarding,
    ) -> Result<()> {
        unavailable(AddressOperation::Forward.name())
    }

    /// Sends digits in-band on a connected call.
    async fn generate_digits(
        &self,
        _leg: CallLegId,
        _digits: &str,
        _mode: DigitMode,
    ) -> Result<()> {
        unavailable(CallOperation::GenerateDigits.name())
    }

    /// Starts (`Some`) or stops (`None`) reporting digits detected on the call.
    async fn monitor_digits(&self, _leg: CallLegId, _mode: Option<DigitMode>) -> Result<()> {
        unavailable(CallOperation::MonitorDigits.name())
    }

    /// Secures the call against interruption for the rest of its life.
    async fn secure_call(&self, _leg: CallLegId) -> Result<()> {
        unavailable(CallOperation::SecureCall.name())
    }

    /// Asks the switch to complete a call to a busy or unanswered party later; returns a completion ID.
    /// When the party is free the requester is offered a call with reason *call completion*.
    async fn complete_call(&self, _leg: CallLegId, _mode: CompletionMode) -> Result<u32> {
        unavailable(CallOperation::CompleteCall.name())
    }

    /// Cancels a call-completion request made from `line`.
    async fn cancel_call_completion(&self, _line: LineId, _completion: u32) -> Result<()> {
        unavailable(SessionOperation::CancelCallCompletion.name())
    }
}
