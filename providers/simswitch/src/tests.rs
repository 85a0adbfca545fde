use std::sync::Arc;
use std::time::Duration;

use tapir_core::ProviderId;
use tapir_core::params::RequestId;
use tapir_provider::{EventLog, ProviderEvent};

use super::*;
use tapir_core::LineId;
use tapir_core::gate::CallOperation;
use tapir_core::state::{BusyMode, CallStateKind, ConnectedMode, OfferingMode};
use tapir_provider::LineEvent;

fn switch() -> SimSwitch {
    SimSwitch::builder()
        .extension("100", "Alice")
        .extension("200", "Bob")
        .far_end("5551234", FarEnd::answers_after_rings(2).named("Carol"))
        .far_end("5550000", FarEnd::busy())
        .far_end("5550001", FarEnd::never_answers())
        .far_end("5550002", FarEnd::unreachable())
        .far_end("5550003", FarEnd::rejects())
        .build()
        .unwrap()
}

async fn started(s: &SimSwitch) -> Arc<EventLog> {
    let log = Arc::new(EventLog::default());
    let caps = s
        .start(EventSink::new(ProviderId(0), log.clone()))
        .await
        .unwrap();
    assert_eq!(caps.len(), 2);
    log
}

fn call(line: u32, to: Option<&str>) -> MakeCall {
    MakeCall {
        request: RequestId(7),
        line: LineId(line),
        address: AddressId(0),
        destination: to.map(|d| DialString::parse_destination(d).unwrap()),
        media_mode: MediaModes::INTERACTIVE_VOICE,
    }
}

use CallState as S;

#[tokio::test(start_paused = true)]
async fn internal_call_goes_through_the_real_sequence() {
    let s = switch();
    let log = started(&s).await;
    let a = s.make_call(call(0, Some("200"))).await.unwrap();
    let new_calls = log.new_calls();
    assert_eq!(new_calls.len(), 2);
    assert_eq!(new_calls[0].request, Some(RequestId(7)));
    assert_eq!(new_calls[1].request, None);
    assert_eq!(
        new_calls[0].info.call_id, new_calls[1].info.call_id,
        "both legs share the call ID"
    );
    let b = new_calls[1].leg;
    assert_eq!(new_calls[1].info.caller, PartyId::named("100", "Alice"));
    s.answer(b).await.unwrap();
    assert_eq!(
        log.states_of(a),
        vec![
            S::DialTone(DialToneMode::Internal),
            S::Dialing,
            S::Proceeding,
            S::Ringback,
            S::Connected(ConnectedMode::Active)
        ]
    );
    s.drop_call(a).await.unwrap();
    assert_eq!(
        log.states_of(b).last(),
        Some(&S::Disconnected(DisconnectReason::Normal))
    );
    s.drop_call(b).await.unwrap();
    assert_eq!(log.states_of(b).last(), Some(&S::Idle));
    assert_eq!(s.live_legs(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_called_line_rings_with_cadence_until_answered() {
    let s = switch();
    let log = started(&s).await;
    s.make_call(call(0, Some("200"))).await.unwrap();
    tokio::time::sleep(Duration::from_secs(13)).await;
    let rings: Vec<u32> = log
        .take()
        .into_iter()
        .filter_map(|e| match e {
            ProviderEvent::Line {
                line: LineId(1),
                event: LineEvent::Ringing { count, .. },
            } => Some(count),
            _ => None,
        })
        .collect();
    assert_eq!(rings, vec![0, 1, 2], "rings at 0 s, 6 s and 12 s");
}

#[tokio::test(start_paused = true)]
async fn no_answer_after_the_timeout() {
    let s = switch();
    let log = started(&s).await;
    let a = s.make_call(call(0, Some("5550001"))).await.unwrap();
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(log.states_of(a).last(), Some(&S::Ringback));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        log.states_of(a).last(),
        Some(&S::Disconnected(DisconnectReason::NoAnswer))
    );
}

#[tokio::test(start_paused = true)]
async fn scripted_far_ends() {
    let s = switch();
    let log = started(&s).await;
    let cases = [
        ("5550000", S::Busy(BusyMode::Station)),
        ("5550002", S::Disconnected(DisconnectReason::Unreachable)),
        ("5550003", S::Disconnected(DisconnectReason::Reject)),
        ("999", S::Disconnected(DisconnectReason::BadAddress)),
        ("100", S::Busy(BusyMode::Station)),
    ];
    for (number, expected) in cases {
        let a = s.make_call(call(0, Some(number))).await.unwrap();
        assert_eq!(log.states_of(a).last(), Some(&expected), "{number}");
        s.drop_call(a).await.unwrap();
    }
    let a = s.make_call(call(0, Some("5551234"))).await.unwrap();
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(log.states_of(a).last(), Some(&S::Ringback));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        log.states_of(a).last(),
        Some(&S::Connected(ConnectedMode::Active))
    );
}

#[tokio::test(start_paused = true)]
async fn partial_dialling_waits_for_the_rest() {
    let s = switch();
    let log = started(&s).await;
    let a = s.make_call(call(0, None)).await.unwrap();
    s.dial(a, &DialString::parse("2;").unwrap()).await.unwrap();
    assert_eq!(log.states_of(a).last(), Some(&S::Dialing));
    s.dial(a, &DialString::parse("00").unwrap()).await.unwrap();
    assert_eq!(log.states_of(a).last(), Some(&S::Ringback));
}

#[tokio::test(start_paused = true)]
async fn late_caller_id_arrives_between_first_and_second_ring() {
    let s = SimSwitch::builder()
        .extension("100", "Alice")
        .caller_id_timing(CallerIdTiming::AfterFirstRing)
        .build()
        .unwrap();
    let log = Arc::new(EventLog::default());
    s.start(EventSink::new(ProviderId(0), log.clone()))
        .await
        .unwrap();
    let remote = s
        .ring_in(RingIn::new("100", CallerId::named("+15551234", "Dave")))
        .unwrap();
    let offered = &log.new_calls()[0];
    assert_eq!(offered.info.caller.number, None);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let infos: Vec<Arc<CallInfo>> = log
        .take()
        .into_iter()
        .filter_map(|e| match e {
            ProviderEvent::CallInfo { info, .. } => Some(info),
            _ => None,
        })
        .collect();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].caller, PartyId::named("+15551234", "Dave"));
    let leg = remote.leg().unwrap();
    remote.hang_up();
    assert_eq!(
        log.states_of(leg),
        vec![S::Disconnected(DisconnectReason::Normal), S::Idle]
    );
}

#[tokio::test(start_paused = true)]
async fn unsupported_operations_say_never_and_change_nothing() {
    let s = SimSwitch::builder()
        .extension("100", "Alice")
        .extension("200", "Bob")
        .disable(CallOperation::Park)
        .disable(CallOperation::CompleteCall)
        .build()
        .unwrap();
    let log = Arc::new(EventLog::default());
    let caps = s
        .start(EventSink::new(ProviderId(0), log.clone()))
        .await
        .unwrap();
    let features = caps[0].addresses[0].call_features;
    assert!(!features.contains(CallOperation::Park) && features.contains(CallOperation::Hold));
    let a = s.make_call(call(0, Some("200"))).await.unwrap();
    log.take();
    assert!(matches!(
        s.park(a, &tapir_core::params::ParkMode::NonDirected).await,
        Err(Error::OperationUnavailable { .. })
    ));
    assert!(matches!(
        s.complete_call(a, tapir_core::params::CompletionMode::CampOn)
            .await,
        Err(Error::OperationUnavailable { .. })
    ));
    assert!(log.take().is_empty());
}

/// 100 calls 200 and 200 answers; returns (100's leg, 200's leg).
async fn connected(s: &SimSwitch, log: &EventLog) -> (CallLegId, CallLegId) {
    let a = s.make_call(call(0, Some("200"))).await.unwrap();
    let b = log.new_calls().last().unwrap().leg;
    s.answer(b).await.unwrap();
    (a, b)
}

#[tokio::test(start_paused = true)]
async fn hold_unhold_and_swap() {
    let s = switch();
    let log = started(&s).await;
    let (a, _) = connected(&s, &log).await;
    s.hold(a).await.unwrap();
    assert!(matches!(
        s.hold(a).await,
        Err(Error::InvalidCallState {
            state: CallStateKind::OnHold
        })
    ));
    // With one call held, 100 can make another and swap between them.
    let c = s.make_call(call(0, Some("5551234"))).await.unwrap();
    assert!(matches!(
        s.make_call(call(0, Some("5551234"))).await,
        Err(Error::CallUnavailable)
    ));
    assert!(matches!(
        s.unhold(a).await,
        Err(Error::ResourceUnavailable { .. })
    ));
    tokio::time::sleep(Duration::from_secs(13)).await;
    assert_eq!(
        log.states_of(c).last(),
        Some(&S::Connected(ConnectedMode::Active))
    );
    assert!(
        matches!(s.hold(c).await, Err(Error::ResourceUnavailable { .. })),
        "one hold slot"
    );
    s.swap_hold(c, a).await.unwrap();
    assert_eq!(log.states_of(c).last(), Some(&S::OnHold));
    assert_eq!(
        log.states_of(a).last(),
        Some(&S::Connected(ConnectedMode::Active))
    );
    s.drop_call(a).await.unwrap();
    s.unhold(c).await.unwrap();
    assert_eq!(
        log.states_of(c).last(),
        Some(&S::Connected(ConnectedMode::Active))
    );
}

#[tokio::test(start_paused = true)]
async fn blind_transfer_to_an_extension_and_outside() {
    let s = SimSwitch::builder()
        .extension("100", "Alice")
        .extension("200", "Bob")
        .extension("300", "Carol")
        .far_end("5551234", FarEnd::answers_after_rings(1).named("Dave"))
        .far_end("5550002", FarEnd::unreachable())
        .far_end("5550000", FarEnd::busy())
        .build()
        .unwrap();
    let log = Arc::new(EventLog::default());
    s.start(EventSink::new(ProviderId(0), log.clone()))
        .await
        .unwrap();
    let (a, b) = connected(&s, &log).await;
    // Destinations that cannot take the call leave it where it is.
    for (to, err) in [
        ("5550002", "address"),
        ("5550000", "in use"),
        ("999", "address"),
        ("200", "address"),
    ] {
        let r = s.blind_transfer(b, &DialString::parse(to).unwrap()).await;
        assert!(
            matches!(
                (&r, err),
                (Err(Error::InvalidAddress { .. }), "address") | (Err(Error::InUse), "in use")
            ),
            "{to}: {r:?}"
        );
    }
    assert_eq!(
        log.states_of(b).last(),
        Some(&S::Connected(ConnectedMode::Active))
    );
    // Bob sends Alice to Carol: Bob's leg goes idle, Carol is offered the call with reason transfer.
    s.blind_transfer(b, &DialString::parse("300").unwrap())
        .await
        .unwrap();
    assert_eq!(log.states_of(b).last(), Some(&S::Idle));
    let c = log.new_calls().last().unwrap().clone();
    assert_eq!(c.line, LineId(2));
    assert_eq!(c.info.reason, CallReason::Transfer);
    assert_eq!(c.info.caller, PartyId::named("100", "Alice"));
    assert_eq!(*c.info.redirecting(), PartyId::named("200", "Bob"));
    s.answer(c.leg).await.unwrap();
    // Carol sends Alice outside; Dave answers after a ring and Alice sees him as connected party.
    s.blind_transfer(c.leg, &DialString::parse("5551234").unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let infos: Vec<Arc<CallInfo>> = log
        .take()
        .into_iter()
        .filter_map(|e| match e {
            ProviderEvent::CallInfo { leg, info } if leg == a => Some(info),
            _ => None,
        })
        .collect();
    assert_eq!(
        infos.last().unwrap().connected,
        PartyId::named("5551234", "Dave")
    );
    assert_eq!(s.live_legs(), 1, "only Alice's leg is left in the switch");
}

#[tokio::test(start_paused = true)]
async fn redirect_deflects_an_offered_call() {
    let s = SimSwitch::builder()
        .extension("100", "Alice")
        .extension("200", "Bob")
        .extension("300", "Carol")
        .build()
        .unwrap();
    let log = Arc::new(EventLog::default());
    s.start(EventSink::new(ProviderId(0), log.clone()))
        .await
        .unwrap();
    let a = s.make_call(call(0, Some("200"))).await.unwrap();
    let b = log.new_calls().last().unwrap().leg;
    s.redirect(b, &DialString::parse("300").unwrap())
        .await
        .unwrap();
    assert_eq!(
        log.states_of(b),
        vec![S::Offering(OfferingMode::Active), S::Idle]
    );
    let c = log.new_calls().last().unwrap().clone();
    assert_eq!(c.info.reason, CallReason::Redirect);
    assert_eq!(
        log.states_of(a).last(),
        Some(&S::Ringback),
        "the caller keeps ringing"
    );
    s.answer(c.leg).await.unwrap();
    assert_eq!(
        log.states_of(a).last(),
        Some(&S::Connected(ConnectedMode::Active))
    );
}

#[tokio::test(start_paused = true)]
async fn digits_cross_to_a_monitoring_party() {
    let s = switch();
    let log = started(&s).await;
    let (a, b) = connected(&s, &log).await;
    s.generate_digits(a, "12", DigitMode::Dtmf).await.unwrap();
    s.monitor_digits(b, Some(DigitMode::Dtmf)).await.unwrap();
    log.take();
    s.generate_digits(a, "4#", DigitMode::Dtmf).await.unwrap();
    s.dial(a, &DialString::parse("7").unwrap()).await.unwrap();
    let digits: Vec<char> = log
        .take()
        .into_iter()
        .filter_map(|e| match e {
            ProviderEvent::Digit { leg, digit, .. } if leg == b => Some(digit),
            _ => None,
        })
        .collect();
    assert_eq!(
        digits,
        vec!['4', '#', '7'],
        "only digits sent while monitoring"
    );
    s.secure_call(a).await.unwrap();
    assert!(matches!(log.take().as_slice(), [ProviderEvent::CallInfo { info, .. }] if info.secure));
}

#[tokio::test(start_paused = true)]
async fn wrong_state_is_refused_without_change() {
    let s = switch();
    let log = started(&s).await;
    let a = s.make_call(call(0, Some("200"))).await.unwrap();
    log.take();
    assert!(matches!(
        s.answer(a).await,
        Err(Error::InvalidCallState { .. })
    ));
    assert!(matches!(
        s.make_call(call(0, Some("200"))).await,
        Err(Error::CallUnavailable)
    ));
    assert!(log.take().is_empty());
}

#[test]
fn bad_configuration_is_a_typed_error() {
    let cases = [
        SimSwitch::builder(),
        SimSwitch::builder().extension("1a", "x"),
        SimSwitch::builder()
            .extension("100", "x")
            .extension("100", "y"),
        SimSwitch::builder()
            .extension("100", "x")
            .far_end("100", FarEnd::busy()),
        SimSwitch::builder()
            .extension("100", "x")
            .ring_period(Duration::ZERO),
    ];
    for b in cases {
        assert!(matches!(b.build(), Err(Error::InvalidParameter { .. })));
    }
}

#[tokio::test]
async fn operations_before_start_fail_cleanly() {
    let s = switch();
    assert!(matches!(
        s.make_call(call(0, Some("200"))).await,
        Err(Error::OperationFailed { .. })
    ));
    assert!(s.ring_in(RingIn::new("100", CallerId::Withheld)).is_err());
}

#[tokio::test(start_paused = true)]
async fn answered_calls_leave_no_timers_piling_up() {
    // Every call to the outside sets a no-answer timer; answering makes it stale. However many calls the
    // switch carries, stale timers are pruned, and timers still fire afterwards.
    let s = switch();
    s.set_far_end("5559999", FarEnd::answers_after_rings(0));
    let log = started(&s).await;
    for _ in 0..10_000 {
        let a = s.make_call(call(0, Some("5559999"))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(
            log.states_of(a).last(),
            Some(&S::Connected(ConnectedMode::Active))
        );
        s.drop_call(a).await.unwrap();
        log.take();
    }
    let queued = s.shared.lock().agenda.len();
    assert!(queued <= 2048, "{queued} timers queued after 10,000 calls");

    let a = s.make_call(call(0, Some("5550001"))).await.unwrap();
    tokio::time::sleep(s.timing().no_answer_timeout - Duration::from_millis(1)).await;
    assert_eq!(log.states_of(a).last(), Some(&S::Ringback));
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(
        log.states_of(a).last(),
        Some(&S::Disconnected(DisconnectReason::NoAnswer))
    );
}
