//! The operation gate and the per-state feature table.
//!
//! There is **one** table, [`state_features`], of which call operations a call's state allows. The gate
//! ([`check`]) and the feature set an application reads ([`features`]) are both computed from it, so they
//! cannot disagree.
//!
//! The gate answers in a fixed order — handle, privilege, parameters, capability, state, resources — so
//! that the error says the most fundamental reason first:
//!
//! | step | failing means | error |
//! |---|---|---|
//! | handle | the handle is unknown to this session (checked by the engine before the gate) | `InvalidCallHandle` |
//! | privilege | a monitor tried to change the call | `NotOwner` |
//! | parameters | the request itself is malformed | the parameter's own error |
//! | capability | the provider can **never** do this on this address | `OperationUnavailable` |
//! | state | it could, but **not now** in this state | `InvalidCallState` |
//! | resources | it could now, but a limit is reached | `ResourceUnavailable`, `ConferenceFull`, … |

use crate::caps::{AddressCaps, RemoveFromConference};
use crate::error::Error;
use crate::media::MediaModes;
pub use crate::ops::{
    AddressOperation, CallOperation, FeatureSet, SessionOperation, UnknownOperation,
};
use crate::privilege::CallPrivilege;
use crate::state::{CallState, CallStateKind};

/// What a call is in relation to other calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CallRole {
    /// An ordinary call.
    #[default]
    Plain,
    /// A consultation call made for a transfer (`for_conference == false`) or to add a conference party.
    Consultation {
        /// Whether a conference is waiting to add this call.
        for_conference: bool,
    },
    /// The parent call of a conference.
    ConferenceParent {
        /// Parties in the conference now.
        parties: u32,
    },
    /// A party of a conference.
    ConferenceParty {
        /// Whether it was the last party added.
        last_added: bool,
    },
}

/// How many calls an address has in each class, this call included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AddressUsage {
    /// Live calls that are not held (disconnected calls still occupy an appearance). A conference's
    /// parties are not counted: they are its call, and the conference's own call (its parent) is the
    /// appearance it holds — held with it, taken back with it.
    pub active: u32,
    /// Of the active calls, those connected: the ones that swap with a hard-held call.
    pub connected: u32,
    /// Calls on hard hold.
    pub on_hold: u32,
    /// Calls on hold pending a transfer.
    pub pending_transfer: u32,
    /// Calls on hold pending a conference.
    pub pending_conference: u32,
}

impl AddressUsage {
    /// Whether a call in `state` counts as active: live, not held, not a conference's party. The one
    /// rule for the `active` class, which the gate's "others" counts read too.
    pub const fn is_active(state: CallStateKind) -> bool {
        !state.is_held() && !matches!(state, CallStateKind::Idle | CallStateKind::Conferenced)
    }

    /// Adds `delta` to the count of the class `state` belongs to (idle calls and conference parties
    /// count nowhere).
    pub fn count(&mut self, state: CallStateKind, delta: i32) {
        if state == CallStateKind::Connected {
            self.connected = self.connected.saturating_add_signed(delta);
        }
        let slot = match state {
            CallStateKind::OnHold => &mut self.on_hold,
            CallStateKind::OnHoldPendingTransfer => &mut self.pending_transfer,
            CallStateKind::OnHoldPendingConference => &mut self.pending_conference,
            s if Self::is_active(s) => &mut self.active,
            _ => return,
        };
        *slot = slot.saturating_add_signed(delta);
    }
    /// All held calls (hard hold and pending).
    pub const fn held(&self) -> u32 {
        self.on_hold + self.pending_transfer + self.pending_conference
    }
}

/// Everything the feature table needs to know about one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallContext {
    /// The call's state.
    pub state: CallState,
    /// The call's relation to other calls.
    pub role: CallRole,
    /// Usage of the call's address, this call included.
    pub usage: AddressUsage,
    /// The state of the call this one is paired with by a consultation, where the engine made the
    /// pair: for a call held pending a transfer or conference, its consultation call; for a
    /// consultation call, the call it consults for. `None` when there is no such pair or it is not
    /// known (the gate then judges by the address's usage alone).
    pub partner: Option<CallStateKind>,
    /// The call's media mode, as its provider reports it.
    pub media: MediaModes,
}

impl CallContext {
    /// A plain call in `state`, alone on its address.
    pub fn new(state: CallState) -> Self {
        let mut usage = AddressUsage::default();
        usage.count(state.kind(), 1);
        Self {
            state,
            role: CallRole::Plain,
            usage,
            partner: None,
            media: MediaModes::UNKNOWN,
        }
    }

    /// Whether the call may carry voice, and so in-band tones: its media mode includes a voice mode
    /// or is not known yet. A data or fax call does not.
    pub fn carries_voice(&self) -> bool {
        let voice = MediaModes::INTERACTIVE_VOICE | MediaModes::AUTOMATED_VOICE;
        self.media.intersects(voice) || self.media.bits() & !MediaModes::UNKNOWN.bits() == 0
    }

    /// Other calls of the address that occupy an appearance (counted by [`AddressUsage`]: not idle,
    /// not a conference's party).
    fn occupying_others(&self) -> u32 {
        let kind = self.state.kind();
        let own = AddressUsage::is_active(kind) || kind.is_held();
        (self.usage.active + self.usage.held()).saturating_sub(u32::from(own))
    }

    fn held_others(&self) -> u32 {
        self.usage.held() - u32::from(self.state.kind().is_held())
    }
    fn hard_held_others(&self) -> u32 {
        self.usage.on_hold - u32::from(self.state.kind() == CallStateKind::OnHold)
    }
    fn pending_transfer_others(&self) -> u32 {
        self.usage.pending_transfer
            - u32::from(self.state.kind() == CallStateKind::OnHoldPendingTransfer)
    }
    fn active_others(&self) -> u32 {
        let this_active = AddressUsage::is_active(self.state.kind());
        self.usage.active.saturating_sub(u32::from(this_active))
    }
    fn connected_others(&self) -> u32 {
        self.usage.connected - u32::from(self.state.kind() == CallStateKind::Connected)
    }

    /// The call's role, as far as it still holds: a consultation call whose original (or conference)
    /// has ended is an ordinary call.
    pub fn effective_role(&self) -> CallRole {
        match (self.role, self.partner) {
            (
                CallRole::Consultation { .. },
                Some(CallStateKind::Idle | CallStateKind::Disconnected),
            ) => CallRole::Plain,
            (role, _) => role,
        }
    }

    /// Whether the call's consultation partner is in one of `states`; with no known partner, whether
    /// some other call on the address is active and so might be it.
    fn partner_in(&self, states: impl Fn(CallStateKind) -> bool) -> bool {
        match self.partner {
            Some(k) => states(k),
            None => self.active_others() > 0,
        }
    }
}

/// States of a consultation call in which a transfer completes to it: answered, or still ringing or
/// proceeding (an unattended transfer); busy too where the provider says so. The gate lists complete
/// transfer by it and the engine checks the consultation call a request names by it.
pub fn completes_transfer(caps: &AddressCaps, consultation: CallStateKind) -> bool {
    use CallStateKind as S;
    matches!(consultation, S::Connected | S::Ringback | S::Proceeding)
        || (consultation == S::Busy && caps.transfer_busy)
}

/// States of a consultation call in which it can be added to its conference: answered, ringing back
/// or proceeding; on hard hold too where the provider says so.
pub fn joins_conference(caps: &AddressCaps, consultation: CallStateKind) -> bool {
    use CallStateKind as S;
    matches!(consultation, S::Connected | S::Ringback | S::Proceeding)
        || (consultation == S::OnHold && caps.conference_held)
}

/// **The** per-state feature table: which operations the call's state allows, before capabilities and
/// resources are considered. Capability refinements that decide *whether now* (a hard-held call may be
/// transferred only if the address says so) are read from `caps` here; whether an operation exists at all
/// is not — that is [`check`]'s capability step.
pub fn state_features(caps: &AddressCaps, ctx: &CallContext) -> FeatureSet {
    use CallOperation as Op;
    use CallStateKind as S;
    let live = FeatureSet::EMPTY
        .with(Op::Drop)
        .with(Op::SecureCall)
        .with(Op::MonitorDigits)
        .with(Op::Handoff);
    let held_other = ctx.held_others() > 0;
    // A call not yet connected swaps with a held one only where the provider says it does.
    let early_swap = caps.swap_consultation && held_other;
    let role = ctx.effective_role();
    let consultation = matches!(role, CallRole::Consultation { .. });
    let conference_waits = matches!(
        role,
        CallRole::Consultation {
            for_conference: true
        }
    );
    // A consultation call for a transfer whose original waits for it: completing the transfer is
    // listed on it as on the original, in the states it completes in.
    let transfer_waits = matches!(
        role,
        CallRole::Consultation {
            for_conference: false
        }
    ) && ctx.partner == Some(S::OnHoldPendingTransfer)
        && completes_transfer(caps, ctx.state.kind());
    match ctx.state.kind() {
        S::Idle => FeatureSet::EMPTY,
        // A call the provider cannot describe can still be hung up, or handed to someone who can.
        S::Unknown | S::Disconnected => FeatureSet::EMPTY.with(Op::Drop).with(Op::Handoff),
        S::Offering => live
            .with(Op::Accept)
            .with(Op::Answer)
            .with(Op::Reject)
            .with(Op::Redirect),
        S::Accepted => live.with(Op::Answer).with(Op::Reject).with(Op::Redirect),
        S::DialTone | S::Dialing => live.with(Op::Dial).with_if(Op::SwapHold, early_swap),
        S::Proceeding => live
            .with(Op::Hold)
            .with(Op::BlindTransfer)
            .with_if(Op::AddToConference, conference_waits)
            .with_if(Op::CompleteTransfer, transfer_waits)
            .with_if(Op::SwapHold, early_swap),
        S::Ringback => live
            .with(Op::CompleteCall)
            .with_if(Op::AddToConference, conference_waits)
            .with_if(Op::CompleteTransfer, transfer_waits)
            .with_if(Op::SwapHold, early_swap),
        S::Busy => live
            .with(Op::CompleteCall)
            .with_if(Op::CompleteTransfer, transfer_waits)
            .with_if(Op::SwapHold, early_swap),
        S::SpecialInfo => live,
        S::Connected => {
            let conference_parent = matches!(role, CallRole::ConferenceParent { .. });
            let tones = ctx.carries_voice();
            live.with_if(Op::Dial, tones && caps.dial_connected)
                .with_if(Op::GenerateDigits, tones)
                .with(Op::Hold)
                .with(Op::BlindTransfer)
                .with(Op::Park)
                .with_if(Op::SetupTransfer, !consultation && !conference_parent)
                .with_if(Op::SetupConference, !consultation && !conference_parent)
                .with_if(Op::PrepareAddToConference, conference_parent)
                .with_if(Op::AddToConference, conference_waits)
                .with_if(
                    Op::SwapHold,
                    if caps.swap_consultation {
                        held_other
                    } else {
                        ctx.hard_held_others() > 0
                    },
                )
                .with_if(
                    Op::CompleteTransfer,
                    ctx.pending_transfer_others() > 0
                        || (caps.transfer_held && ctx.hard_held_others() > 0),
                )
        }
        S::OnHold => live
            .with(Op::Unhold)
            .with_if(
                Op::SwapHold,
                if caps.swap_consultation {
                    ctx.active_others() > 0
                } else {
                    ctx.connected_others() > 0
                },
            )
            .with_if(
                Op::AddToConference,
                caps.conference_held && conference_waits,
            )
            .with_if(Op::CompleteTransfer, caps.transfer_held),
        S::OnHoldPendingTransfer => live
            .with(Op::Unhold)
            .with_if(
                Op::SwapHold,
                caps.swap_consultation && ctx.active_others() > 0,
            )
            .with_if(
                Op::CompleteTransfer,
                ctx.partner_in(|k| completes_transfer(caps, k)),
            ),
        S::OnHoldPendingConference => live
            .with(Op::Unhold)
            .with_if(
                Op::SwapHold,
                caps.swap_consultation && ctx.active_others() > 0,
            )
            .with_if(
                Op::AddToConference,
                ctx.partner_in(|k| joins_conference(caps, k)),
            ),
        S::Conferenced => live.with_if(
            Op::RemoveFromConference,
            match caps.remove_from_conference {
                RemoveFromConference::None => false,
                RemoveFromConference::Last => {
                    matches!(ctx.role, CallRole::ConferenceParty { last_added: true })
                }
                RemoveFromConference::Any => true,
            },
        ),
    }
}

/// The resource step: limits that make an otherwise possible operation fail now.
fn resources(op: CallOperation, caps: &AddressCaps, ctx: &CallContext) -> Result<(), Error> {
    use CallOperation as Op;
    match op {
        Op::Hold if ctx.usage.on_hold >= caps.max_on_hold => Err(Error::ResourceUnavailable {
            what: "no free hold slot on the address",
        }),
        // Taking a hard-held call back needs a free active slot; unholding a call held for a transfer or
        // conference cancels the consultation call that occupies it.
        Op::Unhold
            if ctx.state.kind() == CallStateKind::OnHold
                && ctx.active_others() >= caps.max_active_calls =>
        {
            Err(Error::ResourceUnavailable {
                what: "another call is active on the address",
            })
        }
        // Unholding a call held pending a transfer or conference drops its consultation call, so
        // that one does not count; any other active call does.
        Op::Unhold
            if ctx.state.kind().is_held()
                && ctx.state.kind() != CallStateKind::OnHold
                && ctx
                    .active_others()
                    .saturating_sub(u32::from(ctx.partner.is_none_or(AddressUsage::is_active)))
                    >= caps.max_active_calls =>
        {
            Err(Error::ResourceUnavailable {
                what: "another call is active on the address",
            })
        }
        Op::SetupTransfer | Op::SetupConference | Op::PrepareAddToConference
            if ctx.usage.pending_transfer + ctx.usage.pending_conference
                >= caps.max_on_hold_pending =>
        {
            Err(Error::ResourceUnavailable {
                what: "no free pending-hold slot on the address",
            })
        }
        // The call and its consultation call each take an appearance.
        Op::SetupTransfer | Op::SetupConference | Op::PrepareAddToConference
            if caps
                .appearances
                .is_some_and(|n| ctx.occupying_others() + 2 > n) =>
        {
            Err(Error::CallUnavailable)
        }
        Op::PrepareAddToConference => match ctx.role {
            CallRole::ConferenceParent { parties } if parties >= caps.max_conference => {
                Err(Error::ConferenceFull)
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// The state a "not now" names: the call's own, or, where a held original waits on its consultation
/// call to complete a transfer or join a conference, the consultation call's — the one that has to
/// change.
fn refused_state(op: CallOperation, ctx: &CallContext) -> CallStateKind {
    use CallStateKind as S;
    match (op, ctx.state.kind(), ctx.partner) {
        (CallOperation::CompleteTransfer, S::OnHoldPendingTransfer, Some(partner))
        | (CallOperation::AddToConference, S::OnHoldPendingConference, Some(partner)) => partner,
        (_, own, _) => own,
    }
}

/// Capability, state and resource steps, for a caller whose privilege and parameters already passed.
fn permit(op: CallOperation, caps: &AddressCaps, ctx: &CallContext) -> Result<(), Error> {
    if !caps.call_features.contains(op) {
        return Err(Error::OperationUnavailable {
            operation: op.name(),
        });
    }
    if !state_features(caps, ctx).contains(op) {
        return Err(Error::InvalidCallState {
            state: refused_state(op, ctx),
        });
    }
    resources(op, caps, ctx)
}

/// Decides whether the holder of a call handle with `privilege` may perform `op` on the call described by
/// `ctx` on an address with `caps`, or which error says why not.
///
/// `params` validates the operation's own parameters (a dial string, a destination); it runs after the
/// privilege check and before the capability check, so a monitor sending garbage hears `NotOwner`, and an
/// owner sending garbage to a provider that cannot do the operation anyway hears about the garbage.
pub fn check(
    op: CallOperation,
    privilege: CallPrivilege,
    params: impl FnOnce() -> Result<(), Error>,
    caps: &AddressCaps,
    ctx: &CallContext,
) -> Result<(), Error> {
    if op.requires_owner() && privilege != CallPrivilege::Owner {
        return Err(Error::NotOwner);
    }
    params()?;
    permit(op, caps, ctx)
}

/// The operations available on the call now — what an application reads in a call's status. Computed
/// from the same steps as [`check`], so an operation is listed exactly when an owner's request with valid
/// parameters would pass the gate.
pub fn features(caps: &AddressCaps, ctx: &CallContext) -> FeatureSet {
    CallOperation::ALL
        .into_iter()
        .filter(|op| permit(*op, caps, ctx).is_ok())
        .fold(FeatureSet::EMPTY, FeatureSet::with)
}

/// Decides whether an address operation (make call, pickup …) is possible on an address with `caps` and
/// `usage`: parameters, then capability, then resources.
pub fn check_address(
    op: AddressOperation,
    params: impl FnOnce() -> Result<(), Error>,
    caps: &AddressCaps,
    usage: &AddressUsage,
) -> Result<(), Error> {
    params()?;
    if !caps.address_features.contains(op) {
        return Err(Error::OperationUnavailable {
            operation: op.name(),
        });
    }
    match op {
        AddressOperation::MakeCall | AddressOperation::Unpark | AddressOperation::Pickup
            if usage.active >= caps.max_active_calls =>
        {
            Err(Error::CallUnavailable)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_name_reads_back_as_its_operation_and_names_are_unique() {
        for op in CallOperation::ALL {
            assert_eq!(op.name().parse::<CallOperation>(), Ok(op));
        }
        for op in AddressOperation::ALL {
            assert_eq!(op.name().parse::<AddressOperation>(), Ok(op));
        }
        for op in SessionOperation::ALL {
            assert_eq!(op.name().parse::<SessionOperation>(), Ok(op));
        }
        assert!("hang-up".parse::<CallOperation>().is_err());
        let mut names: Vec<&str> = CallOperation::ALL.iter().map(|o| o.name()).collect();
        names.extend(SessionOperation::ALL.iter().map(|o| o.name()));
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "two operations share a name");
    }
    use crate::caps::{AddressFeatureSet, TransferModes};

    fn full_caps() -> AddressCaps {
        AddressCaps {
            call_features: FeatureSet::ALL,
            address_features: AddressFeatureSet::from_slice(&AddressOperation::ALL),
            max_active_calls: 4,
            max_on_hold: 2,
            max_on_hold_pending: 1,
            max_conference: 3,
            max_transfer_conference: 3,
            transfer_modes: TransferModes {
                transfer: true,
                conference: true,
            },
            remove_from_conference: RemoveFromConference::Any,
            transfer_held: true,
            conference_held: true,
            swap_consultation: true,
            dial_connected: true,
            transfer_busy: true,
            ..AddressCaps::basic("100")
        }
    }

    fn contexts() -> Vec<CallContext> {
        let roles = [
            CallRole::Plain,
            CallRole::Consultation {
                for_conference: false,
            },
            CallRole::Consultation {
                for_conference: true,
            },
            CallRole::ConferenceParent { parties: 2 },
            CallRole::ConferenceParent { parties: 3 },
            CallRole::ConferenceParty { last_added: true },
            CallRole::ConferenceParty { last_added: false },
        ];
        let partners = [
            None,
            Some(CallStateKind::OnHoldPendingTransfer),
            Some(CallStateKind::OnHoldPendingConference),
            Some(CallStateKind::Connected),
            Some(CallStateKind::DialTone),
            Some(CallStateKind::Idle),
        ];
        let mut out = Vec::new();
        for kind in CallStateKind::ALL {
            for role in roles {
                for (held, pending) in [(0, 0), (1, 0), (0, 1), (2, 1)] {
                    for partner in partners {
                        for media in [MediaModes::UNKNOWN, MediaModes::DATA_MODEM] {
                            let mut ctx = CallContext::new(kind.with_default_mode());
                            ctx.role = role;
                            ctx.usage.on_hold += held;
                            ctx.usage.pending_transfer += pending;
                            ctx.usage.active += 1;
                            ctx.partner = partner;
                            ctx.media = media;
                            out.push(ctx);
                        }
                    }
                }
            }
        }
        out
    }

    /// Exhaustive: for every state × role × usage × operation × privilege × capability set, the gate and
    /// the feature set agree, and the error is the right one of never / not now / not owner.
    #[test]
    fn gate_agrees_with_feature_table_everywhere() {
        let cap_sets = [full_caps(), AddressCaps::basic("200"), {
            let mut c = full_caps();
            c.call_features = FeatureSet::EMPTY;
            c
        }];
        for caps in &cap_sets {
            for ctx in contexts() {
                let available = features(caps, &ctx);
                let by_state = state_features(caps, &ctx);
                for op in CallOperation::ALL {
                    for privilege in [CallPrivilege::Owner, CallPrivilege::Monitor] {
                        let r = check(op, privilege, || Ok(()), caps, &ctx);
                        let owner_ok = privilege == CallPrivilege::Owner || !op.requires_owner();
                        assert_eq!(
                            r.is_ok(),
                            owner_ok && available.contains(op),
                            "{op:?} {privilege:?} {ctx:?}"
                        );
                        match r {
                            Ok(()) => {}
                            Err(Error::NotOwner) => assert!(!owner_ok),
                            Err(Error::OperationUnavailable { .. }) => {
                                assert!(owner_ok && !caps.call_features.contains(op))
                            }
                            Err(Error::InvalidCallState { state }) => {
                                assert!(owner_ok && caps.call_features.contains(op));
                                assert!(!by_state.contains(op));
                                assert_eq!(state, refused_state(op, &ctx));
                            }
                            Err(Error::ResourceUnavailable { .. } | Error::ConferenceFull) => {
                                assert!(owner_ok && by_state.contains(op));
                            }
                            Err(other) => panic!("unexpected {other:?}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn idle_allows_nothing_and_disconnected_only_drop() {
        let caps = full_caps();
        let idle = CallContext::new(CallState::Idle);
        assert!(features(&caps, &idle).is_empty());
        let disc = CallContext::new(CallStateKind::Disconnected.with_default_mode());
        assert!(features(&caps, &disc).contains(CallOperation::Drop));
        assert!(!features(&caps, &disc).contains(CallOperation::Answer));
    }

    #[test]
    fn hold_then_unhold_swaps_the_features() {
        let caps = full_caps();
        let connected = CallContext::new(CallStateKind::Connected.with_default_mode());
        let held = CallContext::new(CallState::OnHold);
        assert!(features(&caps, &connected).contains(CallOperation::Hold));
        assert!(!features(&caps, &connected).contains(CallOperation::Unhold));
        assert!(features(&caps, &held).contains(CallOperation::Unhold));
        assert!(!features(&caps, &held).contains(CallOperation::Hold));
    }

    #[test]
    fn check_order_is_privilege_then_params_then_capability_then_state() {
        let caps = AddressCaps::basic("100");
        let ctx = CallContext::new(CallStateKind::Connected.with_default_mode());
        let bad_params = || {
            Err(Error::InvalidParameter {
                reason: "bad".into(),
            })
        };
        // Monitor: privilege first, even with bad parameters.
        assert!(matches!(
            check(
                CallOperation::Hold,
                CallPrivilege::Monitor,
                bad_params,
                &caps,
                &ctx
            ),
            Err(Error::NotOwner)
        ));
        // Owner: parameters before capability.
        assert!(matches!(
            check(
                CallOperation::Hold,
                CallPrivilege::Owner,
                bad_params,
                &caps,
                &ctx
            ),
            Err(Error::InvalidParameter { .. })
        ));
        // Capability (never) before state (not now): basic caps have no hold.
        assert!(matches!(
            as_owner(CallOperation::Hold, &caps, &ctx),
            Err(Error::OperationUnavailable { .. })
        ));
        // Supported, wrong state.
        assert!(matches!(
            as_owner(CallOperation::Answer, &caps, &ctx),
            Err(Error::InvalidCallState {
                state: CallStateKind::Connected
            })
        ));
    }

    #[test]
    fn hold_limit_is_a_resource_error() {
        let caps = full_caps();
        let mut ctx = CallContext::new(CallStateKind::Connected.with_default_mode());
        ctx.usage.on_hold = caps.max_on_hold;
        assert!(matches!(
            as_owner(CallOperation::Hold, &caps, &ctx),
            Err(Error::ResourceUnavailable { .. })
        ));
        assert!(!features(&caps, &ctx).contains(CallOperation::Hold));
    }

    /// The gate's answer to an owner asking for `op` with valid parameters.
    fn as_owner(op: CallOperation, caps: &AddressCaps, ctx: &CallContext) -> Result<(), Error> {
        check(op, CallPrivilege::Owner, || Ok(()), caps, ctx)
    }

    /// A pending original and its consultation call: one call connected (the consultation) and one held
    /// pending a transfer (the original), with the consultation in `consultation`.
    fn pending_original(consultation: CallStateKind) -> CallContext {
        let mut ctx = CallContext::new(CallState::OnHoldPendingTransfer);
        ctx.usage.count(consultation, 1);
        ctx.partner = Some(consultation);
        ctx
    }

    #[test]
    fn complete_transfer_waits_for_a_consultation_call_that_can_take_it() {
        let mut caps = full_caps();
        caps.transfer_busy = false;
        let op = CallOperation::CompleteTransfer;
        for (consultation, listed) in [
            (CallStateKind::DialTone, false),
            (CallStateKind::Dialing, false),
            (CallStateKind::Proceeding, true),
            (CallStateKind::Ringback, true),
            (CallStateKind::Busy, false),
            (CallStateKind::Connected, true),
            (CallStateKind::Disconnected, false),
        ] {
            let ctx = pending_original(consultation);
            assert_eq!(
                features(&caps, &ctx).contains(op),
                listed,
                "{consultation:?}"
            );
            if !listed {
                // "Not now" names the call that has to change: the consultation call.
                assert_eq!(
                    as_owner(op, &caps, &ctx),
                    Err(Error::InvalidCallState {
                        state: consultation
                    })
                );
            }
        }
        caps.transfer_busy = true;
        assert!(features(&caps, &pending_original(CallStateKind::Busy)).contains(op));
    }

    #[test]
    fn a_hard_held_call_swaps_only_with_a_connected_one_unless_the_provider_swaps_more() {
        let mut caps = full_caps();
        caps.swap_consultation = false;
        let mut ctx = CallContext::new(CallState::OnHold);
        ctx.usage.count(CallStateKind::Offering, 1);
        assert!(!features(&caps, &ctx).contains(CallOperation::SwapHold));
        ctx.usage.count(CallStateKind::Connected, 1);
        assert!(features(&caps, &ctx).contains(CallOperation::SwapHold));
        let mut early = CallContext::new(CallState::OnHold);
        early.usage.count(CallStateKind::Ringback, 1);
        caps.swap_consultation = true;
        assert!(features(&caps, &early).contains(CallOperation::SwapHold));
    }

    #[test]
    fn tones_need_a_call_that_carries_voice_and_dial_on_a_connected_call_a_provider_that_sends_them()
     {
        let mut caps = full_caps();
        let mut ctx = CallContext::new(CallStateKind::Connected.with_default_mode());
        ctx.media = MediaModes::INTERACTIVE_VOICE;
        assert!(features(&caps, &ctx).contains(CallOperation::GenerateDigits));
        assert!(features(&caps, &ctx).contains(CallOperation::Dial));
        caps.dial_connected = false;
        assert!(!features(&caps, &ctx).contains(CallOperation::Dial));
        ctx.media = MediaModes::DATA_MODEM;
        assert!(!features(&caps, &ctx).contains(CallOperation::GenerateDigits));
        // A call in dial tone dials whatever it carries.
        let mut dialtone = CallContext::new(CallStateKind::DialTone.with_default_mode());
        dialtone.media = MediaModes::DATA_MODEM;
        assert!(features(&caps, &dialtone).contains(CallOperation::Dial));
    }

    #[test]
    fn a_consultation_call_whose_original_has_ended_is_an_ordinary_call() {
        let caps = full_caps();
        let mut ctx = CallContext::new(CallStateKind::Connected.with_default_mode());
        ctx.role = CallRole::Consultation {
            for_conference: true,
        };
        ctx.partner = Some(CallStateKind::OnHoldPendingConference);
        ctx.usage.count(CallStateKind::OnHoldPendingConference, 1);
        assert!(features(&caps, &ctx).contains(CallOperation::AddToConference));
        assert!(!features(&caps, &ctx).contains(CallOperation::SetupTransfer));
        ctx.partner = Some(CallStateKind::Idle);
        ctx.usage = AddressUsage::default();
        ctx.usage.count(CallStateKind::Connected, 1);
        assert!(!features(&caps, &ctx).contains(CallOperation::AddToConference));
        assert!(features(&caps, &ctx).contains(CallOperation::SetupTransfer));
    }

    #[test]
    fn unholding_a_pending_call_needs_no_active_call_but_its_consultation() {
        let mut caps = full_caps();
        caps.max_active_calls = 1;
        let ctx = pending_original(CallStateKind::Connected);
        assert!(features(&caps, &ctx).contains(CallOperation::Unhold));
        let mut other = ctx;
        other.usage.count(CallStateKind::Offering, 1);
        assert!(!features(&caps, &other).contains(CallOperation::Unhold));
        assert!(matches!(
            as_owner(CallOperation::Unhold, &caps, &other),
            Err(Error::ResourceUnavailable { .. })
        ));
    }

    #[test]
    fn make_call_is_limited_by_active_calls() {
        let caps = AddressCaps::basic("100");
        let mut usage = AddressUsage::default();
        assert!(check_address(AddressOperation::MakeCall, || Ok(()), &caps, &usage).is_ok());
        usage.active = 1;
        assert!(matches!(
            check_address(AddressOperation::MakeCall, || Ok(()), &caps, &usage),
            Err(Error::CallUnavailable)
        ));
        assert!(matches!(
            check_address(AddressOperation::Pickup, || Ok(()), &caps, &usage),
            Err(Error::OperationUnavailable { .. })
        ));
    }

    #[test]
    fn feature_set_basics() {
        let s = FeatureSet::from_slice(&[CallOperation::Drop, CallOperation::Hold]);
        assert!(s.contains(CallOperation::Drop));
        assert!(!s.contains(CallOperation::Answer));
        assert_eq!(s.iter().count(), 2);
        assert_eq!(s.without(CallOperation::Drop).iter().count(), 1);
        assert_eq!(FeatureSet::ALL.iter().count(), CallOperation::ALL.len());
        assert_eq!(format!("{s:?}"), r#"{"drop", "hold"}"#);
    }
}
