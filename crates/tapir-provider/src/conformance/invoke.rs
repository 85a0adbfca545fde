//! Asking a provider for any call operation the way the engine would.

use tapir_core::dial::DialString;
use tapir_core::gate::CallOperation;
use tapir_core::params::{CompletionMode, DigitMode, Origin, ParkMode, RequestId, TransferMode};
use tapir_core::{CallLegId, Error};

use crate::Provider;

/// What [`invoke`] passes to the operations that take more than a call.
#[derive(Clone, Debug)]
pub struct Arguments {
    /// Digits to dial or send.
    pub digits: DialString,
    /// Where a redirect or blind transfer sends the call.
    pub destination: DialString,
    /// How to park.
    pub park: ParkMode,
    /// Where a call set up from nothing (a conference) lives.
    pub origin: Origin,
    /// The request ID for operations that create calls.
    pub request: RequestId,
}

/// Asks `provider` for call operation `op` on `leg`, the way the engine would: `with` is the second
/// call of the operations that take two (the held call of swap hold, the consultation call of complete
/// transfer and add to conference). Calls an operation creates are reported by the provider; only
/// success or the error is returned. Hand-off is the engine's own and always succeeds here.
pub async fn invoke(
    provider: &dyn Provider,
    op: CallOperation,
    leg: CallLegId,
    with: CallLegId,
    args: &Arguments,
) -> Result<(), Error> {
    let p = provider;
    match op {
        CallOperation::Accept => p.accept(leg).await,
        CallOperation::Answer => p.answer(leg).await,
        CallOperation::Reject => p.reject(leg).await,
        CallOperation::Redirect => p.redirect(leg, &args.destination).await,
        CallOperation::Drop => p.drop_call(leg).await,
        CallOperation::Dial => p.dial(leg, &args.digits).await,
        CallOperation::Hold => p.hold(leg).await,
        CallOperation::Unhold => p.unhold(leg).await,
        CallOperation::SwapHold => p.swap_hold(leg, with).await,
        CallOperation::BlindTransfer => p.blind_transfer(leg, &args.destination).await,
        CallOperation::SetupTransfer => p.setup_transfer(leg, args.request).await.map(|_| ()),
        CallOperation::CompleteTransfer => p
            .complete_transfer(leg, with, TransferMode::Transfer, args.request)
            .await
            .map(|_| ()),
        CallOperation::SetupConference => {
            p.setup_conference(Some(leg), args.origin).await.map(|_| ())
        }
        CallOperation::PrepareAddToConference => p
            .prepare_add_to_conference(leg, args.request)
            .await
            .map(|_| ()),
        CallOperation::AddToConference => p.add_to_conference(leg, with).await,
        CallOperation::RemoveFromConference => p.remove_from_conference(leg).await,
        CallOperation::Park => p.park(leg, &args.park).await.map(|_| ()),
        CallOperation::CompleteCall => p
            .complete_call(leg, CompletionMode::CampOn)
            .await
            .map(|_| ()),
        CallOperation::GenerateDigits => p.generate_digits(leg, "1", DigitMode::Dtmf).await,
        CallOperation::MonitorDigits => p.monitor_digits(leg, Some(DigitMode::Dtmf)).await,
        CallOperation::SecureCall => p.secure_call(leg).await,
        CallOperation::Handoff => Ok(()),
    }
}
