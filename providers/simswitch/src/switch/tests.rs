//! The switch as a value: inputs with made-up instants, reports read from the outbox. No runtime,
//! no engine: what each operation reports, and what time alone does.

use std::collections::HashMap;
use std::time::Duration;

use tapir_core::dial::DialString;
use tapir_core::info::CallInfo;
use tapir_core::state::{CallState, CallStateKind, DialToneMode, DisconnectReason};
use tapir_core::{CallLegId, LineId};
use tapir_provider::{LineEvent, ProviderEvent};
use tokio::time::Instant;

use super::*;

const S: fn(u64) -> Duration = Duration::from_secs;

/// Extensions 100 (Alice) and 200 (Bob); 5551000 answers after two rings; the default timing
/// (a ring every 6 s, given up after 30 s).
fn office(now: Instant) -> State {
    let ext = |number: &str, name: &str| Extension {
        number: number.into(),
        name: name.into(),
    };
    State::new(
        vec![ext("100", "Alice"), ext("200", "Bob")],
        HashMap::from([("5551000".to_owned(), FarEnd::answers_after_rings(2))]),
        ParkLot::default(),
        HashMap::new(),
        Timing::default(),
        now,
    )
}

/// A call from 100 in dial tone, made at `now`.
fn call_from_100(st: &mut State, now: Instant) -> CallLegId {
    st.now = now;
    let info = CallInfo {
        caller: st.party(0),
        ..CallInfo::default()
    };
    st.new_leg(
        0,
        CallState::DialTone(DialToneMode::Internal),
        info,
        Peer::None,
        None,
    )
}

fn states_of(events: &[ProviderEvent], leg: CallLegId) -> Vec<CallStateKind> {
    events
        .iter()
        .filter_map(|e| match e {
            ProviderEvent::NewCall(c) if c.leg == leg => Some(c.state.kind()),
            ProviderEvent::CallState { leg: l, state } if *l == leg => Some(state.kind()),
            _ => None,
        })
        .collect()
}

fn rings(events: &[ProviderEvent], line: u32) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            ProviderEvent::Line {
                line: l,
                event: LineEvent::Ringing { count, .. },
            } if *l == LineId(line) => Some(*count),
            _ => None,
        })
        .collect()
}

/// The leg a call made on `line` (its NewCall in `events`).
fn new_leg_on(events: &[ProviderEvent], line: u32) -> CallLegId {
    events
        .iter()
        .find_map(|e| match e {
            ProviderEvent::NewCall(c) if c.line == LineId(line) => Some(c.leg),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no new call on line {line} in {events:#?}"))
}

#[test]
fn an_internal_call_rings_on_the_cadence_and_is_given_up_at_the_no_answer_timeout() {
    let t0 = Instant::now();
    let mut st = office(t0);
    let alice = call_from_100(&mut st, t0);
    st.dial(alice, &DialString::parse("200").expect("digits"))
        .expect("dialled");
    let first = st.out.take();
    let bob = new_leg_on(&first, 1);
    assert_eq!(states_of(&first, bob), [CallStateKind::Offering]);
    assert_eq!(rings(&first, 1), [0], "the first ring comes at once");
    assert_eq!(
        st.next_deadline(),
        Some(t0 + S(6)),
        "the next thing due is the next ring"
    );

    // Time that has not come yet changes nothing.
    st.run_due(t0 + S(5));
    assert!(st.out.take().is_empty());
    // Each ring period, one more ring.
    for (i, at) in [6, 12, 18, 24].into_iter().enumerate() {
        st.run_due(t0 + S(at));
        assert_eq!(rings(&st.out.take(), 1), [i as u32 + 1], "at {at} s");
    }
    // At the no-answer timeout, both ends hear it.
    st.run_due(t0 + S(30));
    let end = st.out.take();
    assert_eq!(
        states_of(&end, bob),
        [CallStateKind::Disconnected, CallStateKind::Idle]
    );
    assert!(
        end.iter().any(|e| matches!(e, ProviderEvent::CallState { leg, state: CallState::Disconnected(DisconnectReason::NoAnswer) } if *leg == alice)),
        "{end:#?}"
    );
}

#[test]
fn an_outside_number_answers_on_its_scripted_ring_and_not_before() {
    let t0 = Instant::now();
    let mut st = office(t0);
    let alice = call_from_100(&mut st, t0);
    st.dial(alice, &DialString::parse("5551000").expect("digits"))
        .expect("dialled");
    st.out.take();
    st.run_due(t0 + S(11));
    assert!(
        !states_of(&st.out.take(), alice).contains(&CallStateKind::Connected),
        "one ring is not two"
    );
    st.run_due(t0 + S(12));
    assert_eq!(states_of(&st.out.take(), alice), [CallStateKind::Connected]);
    // Hanging up is reported at once, with nothing left set for later that could ring again.
    st.drop_leg(alice, DisconnectReason::Normal)
        .expect("dropped");
    assert_eq!(
        states_of(&st.out.take(), alice).last(),
        Some(&CallStateKind::Idle)
    );
    st.run_due(t0 + S(3600));
    assert!(
        st.out.take().is_empty(),
        "timers of an ended call do nothing"
    );
    assert!(st.legs.is_empty());
}

#[test]
fn a_busy_extension_is_busy_to_a_second_caller_and_nothing_rings() {
    let t0 = Instant::now();
    let mut st = office(t0);
    // 200 calls out and is connected: it is busy.
    st.now = t0;
    let info = CallInfo {
        caller: st.party(1),
        ..CallInfo::default()
    };
    let bob = st.new_leg(
        1,
        CallState::DialTone(DialToneMode::Internal),
        info,
        Peer::None,
        None,
    );
    st.dial(bob, &DialString::parse("5551000").expect("digits"))
        .expect("dialled");
    st.run_due(t0 + S(12));
    st.out.take();
    let alice = call_from_100(&mut st, t0 + S(13));
    st.dial(alice, &DialString::parse("200").expect("digits"))
        .expect("dialled");
    let events = st.out.take();
    assert_eq!(states_of(&events, alice).last(), Some(&CallStateKind::Busy));
    assert!(rings(&events, 1).is_empty(), "{events:#?}");
}
