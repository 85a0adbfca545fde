//! Placing and steering one call at a time — make call, dial, accept, answer, reject, drop, hold,
//! unhold, swap hold, digits, secure, call completion — and the operations of a line's address that
//! create a call (unpark, pickup) or change the address (forwarding).

use std::sync::Arc;

use tapir_core::caps::AddressCaps;
use tapir_core::cdr::Disposition;
use tapir_core::dial::DialString;
use tapir_core::gate::{self, AddressOperation, CallOperation};
use tapir_core::media::MediaModes;
use tapir_core::params::{
    CompletionMode, DigitMode, ForwardCondition, Forwarding, MakeCall, Origin, PickupTarget,
};
use tapir_core::{CallLegId, Error};
use tapir_provider::Provider;

use super::{MakeCallParams, OnCall, Session, intending, line_address, no_params};
use crate::handles::{CallHandle, LineHandle};
use crate::sync::lock;
use crate::translate::{TranslateOptions, translate_address};

impl Session {
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
        let address_caps = slot.address(params.address)?;
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
        let (address, caps) = line_address(&slot)?;
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
        let (address, caps) = line_address(&slot)?;
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
        a.provider.dial(a.leg, &digits).on_call(&a).await
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
        let run = a.provider.reject(a.leg).on_call(&a);
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
        self.both_held(active, held)?;
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
            let state = entry.kind();
            if state.is_held() != want_held {
                return Err(Error::InvalidCallState { state });
            }
        }
        a.provider.swap_hold(a.leg, h.leg).on_call(&a).await
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
            .on_call(&a)
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
        let (previous, wanted) = a
            .entry
            .want_digits(&self.inner.inbox, call, mode.is_some())?;
        let provider_mode = if wanted {
            mode.or(Some(DigitMode::Dtmf))
        } else {
            None
        };
        let r = a
            .provider
            .monitor_digits(a.leg, provider_mode)
            .on_call(&a)
            .await;
        if r.is_err() {
            // Nothing changed: undo this session's choice.
            let _ = a.entry.want_digits(&self.inner.inbox, call, previous);
        }
        r
    }

    /// Secures the call against interruption for the rest of its life.
    pub async fn secure_call(&self, call: CallHandle) -> Result<(), Error> {
        self.dispatch(call, CallOperation::SecureCall, no_params, |p, leg| {
            p.secure_call(leg)
        })
        .await
    }
}
