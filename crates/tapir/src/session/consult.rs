//! Operations of more than one call, or that take a call off its line: consultation transfer,
//! conferences, blind transfer, redirect, park. The engine ties the calls it creates for them to
//! each other (`call/relations.rs`) so the gate can judge what each may do next.

use std::sync::Arc;

use tapir_core::Error;
use tapir_core::cdr::Disposition;
use tapir_core::gate::{self, AddressOperation, CallOperation, CallRole};
use tapir_core::params::{Origin, ParkMode, RequestId, TransferMode};
use tapir_core::state::CallStateKind;

use super::{
    Authorized, OnCall, Session, intending, line_address, missing_destination, no_params,
    parse_destination,
};
use crate::call::CallEntry;
use crate::handles::{CallHandle, LineHandle};

impl Session {
    /// A second call of this session taking part in an operation (a consultation call): it must be held
    /// by this session as owner, on the same address as `first`, and in a state `states` accepts.
    fn partner(
        &self,
        first: &CallEntry,
        call: CallHandle,
        states: impl Fn(CallStateKind) -> bool,
    ) -> Result<Arc<CallEntry>, Error> {
        let entry = self.entry(call)?;
        entry.owned_by(&self.inner.inbox, call)?;
        if !Arc::ptr_eq(&entry.line, &first.line) || entry.address != first.address {
            return Err(Error::InvalidParameter {
                reason: "both calls must be on the same address".into(),
            });
        }
        let state = entry.kind();
        if !states(state) {
            return Err(Error::InvalidCallState { state });
        }
        Ok(entry)
    }

    /// Holds a connected call pending transfer and returns a new consultation call in dial tone; dial
    /// it, then [`complete_transfer`](Session::complete_transfer). Dropping the consultation call (or
    /// unholding the original) cancels.
    pub async fn setup_transfer(&self, call: CallHandle) -> Result<CallHandle, Error> {
        let a = self.authorize(call, CallOperation::SetupTransfer, no_params)?;
        let line = self.line_of(&a.entry, call)?;
        let (provider, leg) = (a.provider.clone(), a.leg);
        self.consult(&a, line, false, |request| async move {
            provider.setup_transfer(leg, request).await
        })
        .await
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
        self.both_held(held, consultation)?;
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
            .on_call(&a);
        let created = if mode == TransferMode::Transfer {
            // The two calls leave this line and become one: each record names the other.
            let ids = [&a.entry, &c].map(|e| e.call_id());
            a.entry.relate(ids[1]);
            c.relate(ids[0]);
            intending(&[&a.entry, &c], Disposition::Transferred, run).await?
        } else {
            run.await?
        };
        let conference = created.into_iter().next();
        if let Some(parent) = conference {
            let parent = self.entry(parent)?;
            CallEntry::join_conference(&parent, &a.entry);
            CallEntry::join_conference(&parent, &c);
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
            .on_call(&a)
            .await?;
        let [conference, consult] = created[..] else {
            return Err(Error::OperationFailed {
                reason: "the provider did not create a conference and a consultation call".into(),
            });
        };
        let parent = self.entry(conference)?;
        CallEntry::join_conference(&parent, &a.entry);
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
        let (address, caps) = line_address(&slot)?;
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
        self.consult(&a, line, true, |request| async move {
            provider.prepare_add_to_conference(leg, request).await
        })
        .await
    }

    /// Adds a consultation call to the conference it was made for.
    pub async fn add_to_conference(
        &self,
        conference: CallHandle,
        consultation: CallHandle,
    ) -> Result<(), Error> {
        self.both_held(conference, consultation)?;
        let a = self.authorize(conference, CallOperation::AddToConference, no_params)?;
        let address_caps = a.entry.address_caps()?;
        let c = self.partner(&a.entry, consultation, |k| {
            gate::joins_conference(address_caps, k)
        })?;
        if !c.is_consultation() {
            return Err(Error::InvalidCallHandle);
        }
        if a.entry.party_count() >= address_caps.max_conference {
            return Err(Error::ConferenceFull);
        }
        a.provider
            .add_to_conference(a.leg, c.key.1)
            .on_call(&a)
            .await?;
        CallEntry::join_conference(&a.entry, &c);
        Ok(())
    }

    /// The calls of the conference `call` belongs to (or is the parent of) that this session holds: the
    /// parent first, then the parties in the order they joined.
    pub fn conference_calls(&self, call: CallHandle) -> Result<Vec<CallHandle>, Error> {
        let members = self
            .entry(call)?
            .conference_members(&self.inner.inbox, call)?;
        Ok(members
            .iter()
            .filter_map(|m| m.handle_of(&self.inner.inbox))
            .collect())
    }

    /// Runs `run`, a request that creates one consultation call for the call `a` through line open
    /// `line`, and pairs the two (for a conference waiting for a party, or for a transfer).
    async fn consult<F, Fut>(
        &self,
        a: &Authorized,
        line: LineHandle,
        for_conference: bool,
        run: F,
    ) -> Result<CallHandle, Error>
    where
        F: FnOnce(RequestId) -> Fut,
        Fut: Future<Output = Result<tapir_core::CallLegId, Error>>,
    {
        let consult = self
            .create(line, |request| async move {
                run(request).await.map(|c| vec![c])
            })
            .on_call(a)
            .await?
            .into_iter()
            .next()
            .ok_or(Error::OperationFailed {
                reason: "the provider created no consultation call".into(),
            })?;
        self.pair_consultation(&a.entry, consult, for_conference);
        Ok(consult)
    }

    /// Makes `consult` the consultation call of `original` (a call held pending a transfer, or a
    /// conference waiting for a party): its role says so, and each names the other as its partner.
    fn pair_consultation(
        &self,
        original: &Arc<CallEntry>,
        consult: CallHandle,
        for_conference: bool,
    ) {
        if let Ok(c) = self.entry(consult) {
            CallEntry::pair_consultation(original, &c, for_conference);
        }
    }

    fn set_role(&self, call: CallHandle, role: CallRole) {
        if let Ok(entry) = self.entry(call) {
            entry.set_role(role);
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
        let run = a.provider.blind_transfer(a.leg, &d).on_call(&a);
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
        let run = a.provider.redirect(a.leg, &d).on_call(&a);
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
        let run = a.provider.park(a.leg, &mode).on_call(&a);
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
        entry.leave_conference();
        Ok(())
    }
}
