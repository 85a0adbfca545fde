//! The kit's scenarios: one function each, and the table that says what each needs.

use std::future::Future;
use std::pin::Pin;

use tapir_core::dial::DialString;
use tapir_core::gate::{AddressOperation, CallOperation};
use tapir_core::media::MediaModes;
use tapir_core::params::{
    DigitMode, ForwardCondition, Forwarding, MakeCall, ParkMode, PickupTarget, RequestId,
    TransferMode,
};
use tapir_core::state::CallStateKind as S;
use tapir_core::{AddressId, CallLegId, Error, LineId};

use super::case::Case;
use super::finding::{CapsFlaw, Problem, Scenario};
use super::harness::Harness;
use super::invoke::{Arguments, invoke};
use crate::ProviderEvent;
use CallOperation as Op;

/// A scenario's steps, given a started provider.
type Steps =
    for<'a> fn(&'a mut Case, &'a dyn Harness) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What a scenario needs of the provider; without it the scenario is skipped, not failed.
struct Needs {
    /// Lines, each with at least one address.
    lines: usize,
    /// Line 0's first address makes calls.
    makes_calls: bool,
    /// Call operations line 0's first address advertises.
    ops: &'static [CallOperation],
}

/// One row of [`SCENARIOS`].
pub(super) struct Row {
    pub(super) scenario: Scenario,
    needs: Needs,
    steps: Steps,
}

impl Row {
    /// Whether the provider `case` started has what this scenario needs.
    pub(super) fn applies(&self, case: &Case) -> bool {
        let n = &self.needs;
        case.caps.len() >= n.lines
            && case.caps.iter().all(|l| !l.addresses.is_empty())
            && (n.lines == 0 || !n.makes_calls || case.makes_calls())
            && (n.lines == 0 || n.ops.iter().all(|op| case.has(*op)))
    }

    /// Runs the scenario's steps on `case`.
    pub(super) async fn steps(&self, case: &mut Case, h: &dyn Harness) {
        (self.steps)(case, h).await;
    }
}

const fn needs(lines: usize, makes_calls: bool, ops: &'static [CallOperation]) -> Needs {
    Needs {
        lines,
        makes_calls,
        ops,
    }
}

/// Every scenario, in the order the kit runs them (the order of [`Scenario::ALL`]).
pub(super) const SCENARIOS: &[Row] = &[
    Row {
        scenario: Scenario::Capabilities,
        needs: needs(0, false, &[]),
        steps: |c, _| Box::pin(capabilities(c)),
    },
    Row {
        scenario: Scenario::Unadvertised,
        needs: needs(1, false, &[]),
        steps: |c, _| Box::pin(unadvertised(c)),
    },
    Row {
        scenario: Scenario::OutgoingCall,
        needs: needs(1, true, &[]),
        steps: |c, h| Box::pin(outgoing_call(c, h)),
    },
    Row {
        scenario: Scenario::IncomingCall,
        needs: needs(1, false, &[]),
        steps: |c, h| Box::pin(incoming_call(c, h)),
    },
    Row {
        scenario: Scenario::Hold,
        needs: needs(1, true, &[Op::Hold]),
        steps: |c, h| Box::pin(hold(c, h)),
    },
    Row {
        scenario: Scenario::BlindTransfer,
        needs: needs(2, true, &[Op::BlindTransfer]),
        steps: |c, h| Box::pin(blind_transfer(c, h)),
    },
    Row {
        scenario: Scenario::Redirect,
        needs: needs(2, true, &[Op::Redirect]),
        steps: |c, h| Box::pin(redirect(c, h)),
    },
    Row {
        scenario: Scenario::ConsultationTransfer,
        needs: needs(
            2,
            true,
            &[Op::SetupTransfer, Op::CompleteTransfer, Op::Dial],
        ),
        steps: |c, h| Box::pin(consultation_transfer(c, h)),
    },
    Row {
        scenario: Scenario::Conference,
        needs: needs(
            2,
            true,
            &[Op::SetupConference, Op::AddToConference, Op::Dial],
        ),
        steps: |c, h| Box::pin(conference(c, h)),
    },
    Row {
        scenario: Scenario::Park,
        needs: needs(2, true, &[Op::Park]),
        steps: |c, h| Box::pin(park(c, h)),
    },
    Row {
        scenario: Scenario::Pickup,
        needs: needs(2, true, &[]),
        steps: |c, h| Box::pin(pickup(c, h)),
    },
    Row {
        scenario: Scenario::Forward,
        needs: needs(2, true, &[]),
        steps: |c, h| Box::pin(forward(c, h)),
    },
    Row {
        scenario: Scenario::SwapHold,
        needs: needs(2, true, &[Op::Hold, Op::SwapHold]),
        steps: |c, h| Box::pin(swap_hold(c, h)),
    },
    Row {
        scenario: Scenario::Secure,
        needs: needs(2, true, &[Op::SecureCall]),
        steps: |c, h| Box::pin(secure(c, h)),
    },
    Row {
        scenario: Scenario::Digits,
        needs: needs(
            2,
            true,
            &[Op::GenerateDigits, Op::MonitorDigits, Op::Answer],
        ),
        steps: |c, _| Box::pin(digits(c)),
    },
];

/// The capabilities are well formed: lines with addresses and media modes, and no operation
/// advertised without the slot or mode it needs.
async fn capabilities(c: &mut Case) {
    if c.caps.is_empty() {
        c.fail(Problem::NoLine);
    }
    let mut flaws = Vec::new();
    for (line, caps) in c.caps.iter().enumerate() {
        if caps.addresses.is_empty() {
            flaws.push((line, CapsFlaw::NoAddress));
        }
        if caps.media_modes.is_empty() {
            flaws.push((line, CapsFlaw::NoMediaMode));
        }
        for a in &caps.addresses {
            let f = a.call_features;
            if a.max_active_calls == 0 && a.address_features.contains(AddressOperation::MakeCall) {
                flaws.push((line, CapsFlaw::MakeCallWithoutSlot));
            }
            if f.contains(Op::Hold) && a.max_on_hold == 0 {
                flaws.push((line, CapsFlaw::HoldWithoutSlot));
            }
            if f.contains(Op::Park) && !(a.park_modes.directed || a.park_modes.non_directed) {
                flaws.push((line, CapsFlaw::ParkWithoutMode));
            }
            if f.contains(Op::CompleteTransfer)
                && !(a.transfer_modes.transfer || a.transfer_modes.conference)
            {
                flaws.push((line, CapsFlaw::CompleteTransferWithoutMode));
            }
        }
    }
    for (line, flaw) in flaws {
        c.fail(Problem::Capabilities { line, flaw });
    }
}

/// Every operation line 0 does not advertise answers `OperationUnavailable` — before the provider
/// looks the call up — and reports nothing.
async fn unadvertised(c: &mut Case) {
    // A made-up call: a provider must say "never" before it looks the call up.
    let leg = CallLegId(u64::MAX - 1);
    let digits = DialString::parse("1").unwrap_or_else(|_| unreachable!("a valid dial string"));
    let ops = c.call_ops();
    let address = c.caps[0].addresses[0].address_features;
    let origin = c.origin(LineId(0), 99);
    let before = c.checker.event_count();
    let args = Arguments {
        digits: digits.clone(),
        destination: digits,
        park: ParkMode::NonDirected,
        origin,
        request: RequestId(98),
    };
    for op in CallOperation::ALL {
        // Hand-off is the engine's; reject defaults to drop.
        if ops.contains(op) || op == Op::Handoff || op == Op::Reject {
            continue;
        }
        let answer = invoke(&*c.provider, op, leg, leg, &args).await;
        if !matches!(answer, Err(Error::OperationUnavailable { .. })) {
            c.fail(Problem::UnadvertisedAnswered {
                operation: op.name(),
                answer,
            });
        }
    }
    for op in AddressOperation::ALL {
        if address.contains(op) {
            continue;
        }
        let p = &c.provider;
        let answer: Result<(), Error> = match op {
            AddressOperation::MakeCall => p
                .make_call(MakeCall {
                    request: RequestId(95),
                    line: LineId(0),
                    address: AddressId(0),
                    destination: None,
                    media_mode: MediaModes::INTERACTIVE_VOICE,
                })
                .await
                .map(drop),
            AddressOperation::Unpark => p.unpark(origin, "1").await.map(drop),
            AddressOperation::Pickup => p
                .pickup(origin, &PickupTarget::Directed("1".into()))
                .await
                .map(drop),
            AddressOperation::Forward => {
                p.forward(LineId(0), AddressId(0), &Forwarding::default())
                    .await
            }
            AddressOperation::SetupConference => p.setup_conference(None, origin).await.map(drop),
        };
        if !matches!(answer, Err(Error::OperationUnavailable { .. })) {
            c.fail(Problem::UnadvertisedAnswered {
                operation: op.name(),
                answer,
            });
        }
    }
    if c.checker.event_count() != before {
        c.fail(Problem::RefusedButReported);
    }
}

/// A call from line 0 reaches the answering number (dial tone then dial, where the provider dials
/// on an existing call), connects, and is idle when `drop_call` returns.
async fn outgoing_call(c: &mut Case, h: &dyn Harness) {
    let number = h.answering_number();
    let leg = if c.has(Op::Dial) {
        let Some(leg) = c.make_call(None).await else {
            return;
        };
        if let Some(d) = c.dial_string(&number) {
            let r = c.provider.dial(leg, &d).await;
            c.expect("dial", r);
        }
        leg
    } else {
        match c.make_call(Some(&number)).await {
            Some(leg) => leg,
            None => return,
        }
    };
    if c.wait_for(leg, S::Connected, "outgoing call").await {
        let r = c.provider.drop_call(leg).await;
        if c.expect("drop", r) {
            c.expect_state(leg, S::Idle, "when drop returned");
        }
    }
}

/// A call from outside is offered without a request ID; accepted and answered where advertised;
/// disconnected when the far end hangs up; a second one rejected.
async fn incoming_call(c: &mut Case, h: &dyn Harness) {
    if !c.ring_in(h, "ring in").await {
        return;
    }
    let Some((leg, state)) = c.checker.newest_unrequested_call() else {
        c.fail(Problem::NotOffered {
            what: "a call from outside",
            line: c.last_line(),
        });
        return;
    };
    if state.kind() != S::Offering {
        c.fail(Problem::OfferedAs(state));
    }
    if c.has(Op::Accept) {
        let r = c.provider.accept(leg).await;
        if c.expect("accept", r) {
            c.expect_state(leg, S::Accepted, "when accept returned");
        }
    }
    if c.has(Op::Answer) {
        let r = c.provider.answer(leg).await;
        if c.expect("answer", r) && c.expect_state(leg, S::Connected, "when answer returned") {
            h.far_end_hangs_up(leg).await;
            if c.wait_for(leg, S::Disconnected, "far-end hang-up").await {
                let r = c.provider.drop_call(leg).await;
                if c.expect("drop of a disconnected call", r) {
                    c.expect_state(leg, S::Idle, "when drop returned");
                }
            }
        }
    }
    if c.has(Op::Reject) || c.has(Op::Drop) {
        if !c.ring_in(h, "ring in a second time").await {
            return;
        }
        match c.checker.newest_unrequested_call() {
            Some((second, _)) if second != leg => {
                let r = c.provider.reject(second).await;
                if c.expect("reject", r) {
                    c.expect_state(second, S::Idle, "when reject returned");
                }
            }
            _ => c.fail(Problem::NotOffered {
                what: "a second call from outside",
                line: c.last_line(),
            }),
        }
    }
}

/// A connected call is held (and cannot be held again) and unheld.
async fn hold(c: &mut Case, h: &dyn Harness) {
    let Some(leg) = c.connected_call(h).await else {
        return;
    };
    let r = c.provider.hold(leg).await;
    if c.expect("hold", r) && c.expect_state(leg, S::OnHold, "when hold returned") {
        let answer = c.provider.hold(leg).await;
        if !matches!(answer, Err(Error::InvalidCallState { .. })) {
            c.fail(Problem::WrongAnswer {
                operation: "hold of a held call",
                answer,
                expected: "InvalidCallState",
            });
        }
        if c.has(Op::Unhold) {
            let r = c.provider.unhold(leg).await;
            if c.expect("unhold", r) {
                c.expect_state(leg, S::Connected, "when unhold returned");
            }
        }
    }
    let r = c.provider.drop_call(leg).await;
    c.expect("drop", r);
}

/// A connected call sent to line 1: the sender's leg is idle, line 1 is offered the call.
async fn blind_transfer(c: &mut Case, h: &dyn Harness) {
    let target = c.address_of(1);
    let (Some(leg), Some(to)) = (c.connected_call(h).await, c.dial_string(&target)) else {
        return;
    };
    let r = c.provider.blind_transfer(leg, &to).await;
    if c.expect("blind transfer", r) {
        c.expect_state(leg, S::Idle, "when blind transfer returned");
        if let Some(t) = c.offered_on(LineId(1), "blind transfer").await {
            c.expect_state(t, S::Offering, "at the transfer target");
        }
    }
}

/// A call ringing on the last line sent to line 0.
async fn redirect(c: &mut Case, h: &dyn Harness) {
    let last = c.last_line();
    if !c.ring_in(h, "ring in").await {
        return;
    }
    let Some(leg) = c.offered_on(last, "ring in").await else {
        return;
    };
    let target = c.address_of(0);
    if let Some(to) = c.dial_string(&target) {
        let r = c.provider.redirect(leg, &to).await;
        if c.expect("redirect", r) {
            c.expect_state(leg, S::Idle, "when redirect returned");
            c.offered_on(LineId(0), "redirect").await;
        }
    }
}

/// A consultation cancelled by unholding (where the provider unholds), then set up again, dialled
/// to line 1 and completed as a transfer.
async fn consultation_transfer(c: &mut Case, h: &dyn Harness) {
    let Some(leg) = c.connected_call(h).await else {
        return;
    };
    if c.has(Op::Unhold) {
        match c.provider.setup_transfer(leg, RequestId(11)).await {
            Ok(consult) => {
                c.expect_state(leg, S::OnHoldPendingTransfer, "after setup transfer");
                c.expect_state(consult, S::DialTone, "the consultation call");
                let r = c.provider.unhold(leg).await;
                if c.expect("unhold to cancel a transfer", r) {
                    c.expect_state(leg, S::Connected, "after cancelling");
                    c.expect_state(consult, S::Idle, "the cancelled consultation call");
                }
            }
            Err(error) => c.fail(Problem::Failed {
                operation: "setup transfer",
                error,
            }),
        }
    }
    let consult = match c.provider.setup_transfer(leg, RequestId(12)).await {
        Ok(consult) => consult,
        Err(error) => {
            c.fail(Problem::Failed {
                operation: "setup transfer",
                error,
            });
            return;
        }
    };
    if !c.checker.reported_with(RequestId(12)).contains(&consult) {
        c.fail(Problem::NotReportedWithRequest {
            what: "the consultation call",
            leg: consult,
        });
    }
    let target = c.address_of(1);
    if let Some(to) = c.dial_string(&target) {
        let r = c.provider.dial(consult, &to).await;
        c.expect("dial the consultation call", r);
    }
    let r = c
        .provider
        .complete_transfer(leg, consult, TransferMode::Transfer, RequestId(13))
        .await;
    match r {
        Ok(None) => {
            c.expect_state(leg, S::Idle, "the transferred call");
            c.expect_state(consult, S::Idle, "the consultation call after transfer");
        }
        Ok(Some(conference)) => c.fail(Problem::TransferMadeConference(conference)),
        Err(error) => c.fail(Problem::Failed {
            operation: "complete transfer",
            error,
        }),
    }
}

/// A conference set up from a connected call, a second party dialled and added, removed where the
/// provider removes parties, and the conference dropped.
async fn conference(c: &mut Case, h: &dyn Harness) {
    let Some(leg) = c.connected_call(h).await else {
        return;
    };
    let origin = c.origin(LineId(0), 21);
    let (parent, consult) = match c.provider.setup_conference(Some(leg), origin).await {
        Ok(p) => p,
        Err(error) => {
            c.fail(Problem::Failed {
                operation: "setup conference",
                error,
            });
            return;
        }
    };
    c.expect_state(
        parent,
        S::OnHoldPendingConference,
        "the conference after setup",
    );
    c.expect_state(leg, S::Conferenced, "the first party after setup");
    c.expect_state(consult, S::DialTone, "the consultation call");
    let number = h.answering_number();
    if let Some(to) = c.dial_string(&number) {
        let r = c.provider.dial(consult, &to).await;
        c.expect("dial the consultation call", r);
    }
    if !c.wait_for(consult, S::Connected, "consultation call").await {
        return;
    }
    let r = c.provider.add_to_conference(parent, consult).await;
    if c.expect("add to conference", r) {
        c.expect_state(consult, S::Conferenced, "the added party");
        c.expect_state(parent, S::Connected, "the conference after adding");
    }
    if c.has(Op::RemoveFromConference) {
        let r = c.provider.remove_from_conference(consult).await;
        if c.expect("remove from conference", r) {
            let s = c.checker.state(consult).map(|s| s.kind());
            if !matches!(s, Some(S::Idle | S::Connected | S::OnHold)) {
                c.fail(Problem::RemovedPartyIs(s));
            }
        }
    }
    let r = c.provider.drop_call(parent).await;
    if c.expect("drop the conference", r) {
        c.expect_state(parent, S::Idle, "the dropped conference");
        if c.caps[0].addresses[0].conference_drop {
            c.expect_state(leg, S::Idle, "a party of a dropped conference");
        }
    }
}

/// A connected call parked in a free orbit (the parking leg idle) and retrieved on line 1 as a
/// connected call reported with the request's ID.
async fn park(c: &mut Case, h: &dyn Harness) {
    if !c.caps[0].addresses[0].park_modes.non_directed {
        c.fail(Problem::DirectedParkOnly);
        return;
    }
    let Some(leg) = c.connected_call(h).await else {
        return;
    };
    let orbit = match c.provider.park(leg, &ParkMode::NonDirected).await {
        Ok(o) => o,
        Err(error) => {
            c.fail(Problem::Failed {
                operation: "park",
                error,
            });
            return;
        }
    };
    c.expect_state(leg, S::Idle, "the parked call's leg");
    if orbit.is_empty() {
        c.fail(Problem::NoOrbit);
    }
    if !c.caps[1].addresses[0]
        .address_features
        .contains(AddressOperation::Unpark)
    {
        return;
    }
    let origin = c.origin(LineId(1), 31);
    match c.provider.unpark(origin, &orbit).await {
        Ok(u) => {
            c.expect_state(u, S::Connected, "the unparked call");
            if !c.checker.reported_with(RequestId(31)).contains(&u) {
                c.fail(Problem::NotReportedWithRequest {
                    what: "the unparked call",
                    leg: u,
                });
            }
        }
        Err(error) => c.fail(Problem::Failed {
            operation: "unpark",
            error,
        }),
    }
}

/// A call ringing on the last line picked up from line 0: the picked-up call connected, the ringing
/// one idle.
async fn pickup(c: &mut Case, h: &dyn Harness) {
    let a = &c.caps[0].addresses[0];
    if !a.address_features.contains(AddressOperation::Pickup) || !a.pickup_modes.directed {
        return;
    }
    let last = c.last_line();
    if !c.ring_in(h, "ring in").await {
        return;
    }
    let Some(ringing) = c.offered_on(last, "ring in").await else {
        return;
    };
    let target = c.address_of(last.0 as usize);
    let origin = c.origin(LineId(0), 41);
    match c
        .provider
        .pickup(origin, &PickupTarget::Directed(target))
        .await
    {
        Ok(p) => {
            c.expect_state(p, S::Connected, "the picked-up call");
            c.expect_state(ringing, S::Idle, "the call that was ringing");
        }
        Err(error) => c.fail(Problem::Failed {
            operation: "pickup",
            error,
        }),
    }
}

/// The last line forwarded to line 0: a call from outside rings line 0; forwarding cancelled, the
/// next rings the last line again.
async fn forward(c: &mut Case, h: &dyn Harness) {
    let last = c.last_line();
    let a = &c.caps[last.0 as usize].addresses[0];
    if !a.address_features.contains(AddressOperation::Forward) || !a.forward_modes.unconditional {
        return;
    }
    let target = c.address_of(0);
    let Some(to) = c.dial_string(&target) else {
        return;
    };
    let forwarding = Forwarding {
        do_not_disturb: false,
        rules: vec![(ForwardCondition::Unconditional, to)],
    };
    let r = c.provider.forward(last, AddressId(0), &forwarding).await;
    if !c.expect("forward", r) || !c.ring_in(h, "ring a forwarded line").await {
        return;
    }
    let first = c.offered_on(LineId(0), "a forwarded call").await;
    let r = c
        .provider
        .forward(last, AddressId(0), &Forwarding::default())
        .await;
    if !c.expect("cancel forwarding", r) {
        return;
    }
    if let Some(f) = first {
        let r = c.provider.drop_call(f).await;
        c.expect("drop the forwarded call", r);
    }
    if c.ring_in(h, "ring in after cancelling forwarding").await {
        c.offered_on(last, "a call after cancelling forwarding")
            .await;
    }
}

/// Two calls on line 0: the first held, the second connected; swapping holds the second and
/// connects the first.
async fn swap_hold(c: &mut Case, h: &dyn Harness) {
    let Some(a) = c.connected_call(h).await else {
        return;
    };
    let r = c.provider.hold(a).await;
    if !c.expect("hold", r) {
        return;
    }
    let Some(b) = c.connected_call(h).await else {
        return;
    };
    let r = c.provider.swap_hold(b, a).await;
    if c.expect("swap hold", r) {
        c.expect_state(b, S::OnHold, "the call swapped to hold");
        c.expect_state(a, S::Connected, "the call swapped back");
    }
}

/// Securing a connected call reports call information with `secure` set.
async fn secure(c: &mut Case, h: &dyn Harness) {
    let Some(leg) = c.connected_call(h).await else {
        return;
    };
    let r = c.provider.secure_call(leg).await;
    if c.expect("secure call", r) {
        let secured = c.checker.with(|s| {
            s.events.iter().any(
                |e| matches!(e, ProviderEvent::CallInfo { leg: l, info } if *l == leg && info.secure),
            )
        });
        if !secured {
            c.fail(Problem::NotSecured);
        }
    }
}

/// Line 0 calls line 1, which answers and monitors digits; the digits line 0 generates reach it.
async fn digits(c: &mut Case) {
    const SENT: &str = "19#";
    let target = c.address_of(1);
    let Some(a) = c.make_call(Some(&target)).await else {
        return;
    };
    let Some(b) = c.offered_on(LineId(1), "internal call").await else {
        return;
    };
    let r = c.provider.answer(b).await;
    if !c.expect("answer", r) || !c.wait_for(a, S::Connected, "internal call").await {
        return;
    }
    let r = c.provider.monitor_digits(b, Some(DigitMode::Dtmf)).await;
    c.expect("monitor digits", r);
    let r = c.provider.generate_digits(a, SENT, DigitMode::Dtmf).await;
    c.expect("generate digits", r);
    let got: String = c.checker.with(|s| {
        s.events
            .iter()
            .filter_map(|e| match e {
                ProviderEvent::Digit { leg, digit, .. } if *leg == b => Some(*digit),
                _ => None,
            })
            .collect()
    });
    if got != SENT {
        c.fail(Problem::Digits { got, sent: SENT });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_runs_every_scenario_once_in_order() {
        let order: Vec<Scenario> = SCENARIOS.iter().map(|r| r.scenario).collect();
        assert_eq!(order, Scenario::ALL);
    }
}
