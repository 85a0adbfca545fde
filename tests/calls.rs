//! Whole call scenarios through the engine against the simulated PBX.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use tapir::core::dial::{DialModifier, DialStringError};
use tapir::core::gate::CallOperation;
use tapir::core::info::{CallOrigin, InfoChange, PartyId};
use tapir::core::media::MediaModes;
use tapir::core::params::{ParkMode, TransferMode};
use tapir::core::privilege::CallPrivilege;
use tapir::core::state::{
    BusyMode, CallState, CallStateKind as K, ConnectedMode, DisconnectReason,
};
use tapir::{CallHandle, Error, Event, LineEvent, MakeCallParams, OpenOptions};
use tapir_core::LineId;
use tapir_simswitch::{CallerId, CallerIdTiming, FarEnd, RingIn, SimSwitch};
use tapir_tests::{Watcher, numbers, pbx};

#[tokio::test(start_paused = true)]
async fn internal_call_with_owner_callee_and_monitor() {
    let pbx = pbx().await;
    let (alice, al) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, _) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let (sup, _) = pbx
        .app(
            "supervisor",
            &[
                ("100", OpenOptions::monitor()),
                ("200", OpenOptions::monitor()),
            ],
        )
        .await;
    let (mut wa, mut wb, mut ws) = (Watcher::new(&alice), Watcher::new(&bob), Watcher::new(&sup));

    let a = alice.make_call(al[0], Some("200")).await.unwrap();
    let b = wb.new_call().await;
    assert_eq!(wb.state(b, K::Offering).await.kind(), K::Offering);
    let status = bob.call_status(b).unwrap();
    assert_eq!(status.privilege, CallPrivilege::Owner);
    assert!(status.features.contains(CallOperation::Answer));
    assert_eq!(
        bob.call_info(b).unwrap().info.caller,
        PartyId::named("100", "User 0")
    );

    bob.answer(b).await.unwrap();
    // Completion means effect: answered is connected, on both legs, when answer returns.
    assert_eq!(
        bob.call_status(b).unwrap().state,
        CallState::Connected(ConnectedMode::Active)
    );
    assert_eq!(alice.call_status(a).unwrap().state.kind(), K::Connected);
    wa.state(a, K::Connected).await;

    // The supervisor holds both legs with handles of its own, as a monitor.
    let s1 = ws.new_call().await;
    let s2 = ws.new_call().await;
    let mine = [a, b];
    for s in [s1, s2] {
        assert!(!mine.contains(&s), "a session's handle is its own");
        assert_eq!(
            sup.call_status(s).unwrap().privilege,
            CallPrivilege::Monitor
        );
    }
    // Everybody sees the same call ID.
    let id = alice.call_info(a).unwrap().call_id();
    assert_eq!(bob.call_info(b).unwrap().call_id(), id);
    assert_eq!(sup.call_info(s1).unwrap().call_id(), id);
    assert_eq!(sup.call_info(s2).unwrap().call_id(), id);
    assert_eq!(alice.call_info(a).unwrap().num_monitors, 1);

    // The caller hangs up; every session sees its leg go idle.
    alice.drop_call(a).await.unwrap();
    wa.state(a, K::Idle).await;
    assert_eq!(
        wb.state(b, K::Disconnected).await,
        CallState::Disconnected(DisconnectReason::Normal)
    );
    bob.drop_call(b).await.unwrap();
    wb.state(b, K::Idle).await;
    ws.state(s1, K::Idle).await;
    ws.state(s2, K::Idle).await;

    // Idle handles stay readable until deallocated; then the engine holds nothing.
    assert_eq!(alice.call_status(a).unwrap().state, CallState::Idle);
    for (s, h) in [(&alice, a), (&bob, b), (&sup, s1), (&sup, s2)] {
        s.deallocate(h).unwrap();
        assert_eq!(s.call_status(h), Err(Error::InvalidCallHandle));
    }
    pbx.assert_empty();
    assert_eq!(pbx.switch.live_legs(), 0);
}

#[tokio::test(start_paused = true)]
async fn incoming_call_from_outside_with_caller_id() {
    let pbx = pbx().await;
    let (owner, _) = pbx.app("reception", &[("100", OpenOptions::owner())]).await;
    let (mon, _) = pbx
        .app("wallboard", &[("100", OpenOptions::monitor())])
        .await;
    let (mut wo, mut wm) = (Watcher::new(&owner), Watcher::new(&mon));

    let remote = pbx
        .switch
        .ring_in(RingIn::new("100", CallerId::named("+15551234", "Dave")))
        .unwrap();
    let h = wo.new_call().await;
    wo.state(h, K::Offering).await;
    let info = owner.call_info(h).unwrap();
    assert_eq!(info.info.caller, PartyId::named("+15551234", "Dave"));
    assert_eq!(info.info.origin, CallOrigin::External);
    wo.until(|e| {
        matches!(
            e,
            Event::Line {
                event: LineEvent::Ringing { count: 0, .. },
                ..
            }
        )
    })
    .await;

    let m = wm.new_call().await;
    assert_eq!(
        mon.call_status(m).unwrap().privilege,
        CallPrivilege::Monitor
    );
    assert_eq!(
        mon.call_info(m).unwrap().info.caller.number.as_deref(),
        Some("+15551234")
    );

    owner.answer(h).await.unwrap();
    wo.state(h, K::Connected).await;
    remote.hang_up();
    assert_eq!(
        wo.state(h, K::Disconnected).await,
        CallState::Disconnected(DisconnectReason::Normal)
    );
    owner.drop_call(h).await.unwrap();
    wo.state(h, K::Idle).await;
    wm.state(m, K::Idle).await;
    assert_eq!(
        wm.states(m).iter().map(|s| s.kind()).collect::<Vec<_>>(),
        vec![K::Offering, K::Connected, K::Disconnected, K::Idle]
    );
    owner.deallocate(h).unwrap();
    mon.deallocate(m).unwrap();
    pbx.assert_empty();
}

#[tokio::test(start_paused = true)]
async fn analogue_caller_id_arrives_as_an_info_change_after_the_first_ring() {
    let switch = SimSwitch::builder()
        .extension("100", "Alice")
        .caller_id_timing(CallerIdTiming::AfterFirstRing)
        .build()
        .unwrap();
    let engine = tapir::Engine::builder()
        .provider(switch.clone())
        .build()
        .await
        .unwrap();
    let s = engine.logon("phone").await.unwrap();
    s.open_line(LineId(0), OpenOptions::owner()).await.unwrap();
    let mut w = Watcher::new(&s);
    switch
        .ring_in(RingIn::new("100", CallerId::number("+442079460000")))
        .unwrap();
    let h = w.new_call().await;
    assert_eq!(s.call_info(h).unwrap().info.caller.number, None);
    let e = w.until(|e| matches!(e, Event::CallInfo { .. })).await;
    assert!(
        matches!(e, Event::CallInfo { call, changed } if call == h && changed.contains(InfoChange::CALLER_ID))
    );
    assert_eq!(
        s.call_info(h).unwrap().info.caller.number.as_deref(),
        Some("+442079460000")
    );
}

#[tokio::test(start_paused = true)]
async fn busy_and_unreachable_outside_numbers() {
    let pbx = pbx().await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let mut w = Watcher::new(&alice);
    for (number, kind, expected) in [
        (numbers::BUSY, K::Busy, CallState::Busy(BusyMode::Station)),
        (
            numbers::UNREACHABLE,
            K::Disconnected,
            CallState::Disconnected(DisconnectReason::Unreachable),
        ),
        (
            "999",
            K::Disconnected,
            CallState::Disconnected(DisconnectReason::BadAddress),
        ),
    ] {
        let a = alice.make_call(l[0], Some(number)).await.unwrap();
        assert_eq!(w.state(a, kind).await, expected, "{number}");
        alice.drop_call(a).await.unwrap();
        alice.deallocate(a).unwrap();
    }
    pbx.assert_empty();
}

#[tokio::test(start_paused = true)]
async fn no_answer_after_thirty_simulated_seconds() {
    let pbx = pbx().await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let mut w = Watcher::new(&alice);
    let start = tokio::time::Instant::now();
    let a = alice
        .make_call(l[0], Some(numbers::NO_ANSWER))
        .await
        .unwrap();
    w.state(a, K::Ringback).await;
    assert_eq!(
        w.state(a, K::Disconnected).await,
        CallState::Disconnected(DisconnectReason::NoAnswer)
    );
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    alice.drop_call(a).await.unwrap();
    alice.deallocate(a).unwrap();
    pbx.assert_empty();
}

#[tokio::test(start_paused = true)]
async fn internal_no_answer_clears_both_legs() {
    let pbx = pbx().await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, _) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let (mut wa, mut wb) = (Watcher::new(&alice), Watcher::new(&bob));
    let a = alice.make_call(l[0], Some("200")).await.unwrap();
    let b = wb.new_call().await;
    assert_eq!(
        wa.state(a, K::Disconnected).await,
        CallState::Disconnected(DisconnectReason::NoAnswer)
    );
    wb.state(b, K::Idle).await;
    let rings = wb
        .log
        .iter()
        .filter(|e| {
            matches!(
                e.event,
                Event::Line {
                    event: LineEvent::Ringing { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(rings, 5, "rings at 0, 6, 12, 18 and 24 s of a 30 s timeout");
    alice.drop_call(a).await.unwrap();
    alice.deallocate(a).unwrap();
    bob.deallocate(b).unwrap();
    pbx.assert_empty();
}

#[tokio::test(start_paused = true)]
async fn far_end_answers_after_rings_and_hangs_up() {
    let switch = SimSwitch::builder()
        .extension("100", "Alice")
        .far_end(
            "5551000",
            FarEnd::answers_after_rings(2)
                .named("Dave")
                .hangs_up_after(Duration::from_secs(3)),
        )
        .build()
        .unwrap();
    let engine = tapir::Engine::builder()
        .provider(switch)
        .build()
        .await
        .unwrap();
    let s = engine.logon("dialer").await.unwrap();
    let l = s.open_line(LineId(0), OpenOptions::owner()).await.unwrap();
    let mut w = Watcher::new(&s);
    let start = tokio::time::Instant::now();
    let a = s.make_call(l, Some("5551000")).await.unwrap();
    w.state(a, K::Connected).await;
    assert_eq!(start.elapsed(), Duration::from_secs(12));
    assert_eq!(
        s.call_info(a).unwrap().info.connected,
        PartyId::named("5551000", "Dave")
    );
    w.state(a, K::Disconnected).await;
    assert_eq!(start.elapsed(), Duration::from_secs(15));
    assert_eq!(
        w.states(a).iter().map(|s| s.kind()).collect::<Vec<_>>(),
        vec![
            K::DialTone,
            K::Dialing,
            K::Proceeding,
            K::Ringback,
            K::Connected,
            K::Disconnected
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn dial_tone_then_partial_dialling() {
    let pbx = pbx().await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, _) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let mut wb = Watcher::new(&bob);
    let a = alice.make_call(l[0], None).await.unwrap();
    assert_eq!(alice.call_status(a).unwrap().state.kind(), K::DialTone);
    assert!(
        alice
            .call_status(a)
            .unwrap()
            .features
            .contains(CallOperation::Dial)
    );
    alice.dial(a, "2;").await.unwrap();
    assert_eq!(alice.call_status(a).unwrap().state, CallState::Dialing);
    assert_eq!(
        alice.dial(a, "0x").await,
        Err(Error::InvalidDialString(
            DialStringError::InvalidCharacter {
                ch: 'x',
                position: 1
            }
        ))
    );
    assert_eq!(
        alice.call_status(a).unwrap().state,
        CallState::Dialing,
        "bad input changes nothing"
    );
    alice.dial(a, "00").await.unwrap();
    assert_eq!(alice.call_status(a).unwrap().state, CallState::Ringback);
    let b = wb.new_call().await;
    bob.accept(b).await.unwrap();
    assert_eq!(bob.call_status(b).unwrap().state, CallState::Accepted);
    bob.answer(b).await.unwrap();
    assert_eq!(alice.call_status(a).unwrap().state.kind(), K::Connected);
}

#[tokio::test(start_paused = true)]
async fn reject_tells_the_caller() {
    let pbx = pbx().await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, _) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let mut wb = Watcher::new(&bob);
    let a = alice.make_call(l[0], Some("200")).await.unwrap();
    let b = wb.new_call().await;
    bob.reject(b).await.unwrap();
    assert_eq!(bob.call_status(b).unwrap().state, CallState::Idle);
    assert_eq!(
        alice.call_status(a).unwrap().state,
        CallState::Disconnected(DisconnectReason::Reject)
    );
}

#[tokio::test(start_paused = true)]
async fn never_not_now_and_not_yours() {
    // A switch that cannot park.
    let pbx = tapir_tests::pbx_from(
        SimSwitch::builder()
            .extension("100", "Alice")
            .extension("200", "Bob")
            .disable(CallOperation::Park)
            .build()
            .unwrap(),
    )
    .await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, _) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let (sup, _) = pbx
        .app("supervisor", &[("100", OpenOptions::monitor())])
        .await;
    let (mut wb, mut ws) = (Watcher::new(&bob), Watcher::new(&sup));
    let a = alice.make_call(l[0], Some("200")).await.unwrap();
    let b = wb.new_call().await;
    bob.answer(b).await.unwrap();
    let s = ws.new_call().await;
    let before = alice.call_status(a).unwrap();

    // Not yours: a monitor may not change the call.
    assert_eq!(sup.drop_call(s).await, Err(Error::NotOwner));
    // A handle from another session is exactly as invalid as one that never existed.
    assert_eq!(bob.drop_call(a).await, Err(Error::InvalidCallHandle));
    assert_eq!(
        bob.drop_call(CallHandle::from_u64(0x1234)).await,
        Err(Error::InvalidCallHandle)
    );
    assert_eq!(bob.call_info(a), Err(Error::InvalidCallHandle));
    // Also as the second call of a two-call operation, whatever the first call's state: Bob's
    // connected call would be "not now" for swap hold, but the handle is checked first.
    assert_eq!(bob.swap_hold(b, a).await, Err(Error::InvalidCallHandle));
    assert_eq!(
        bob.complete_transfer(b, a, TransferMode::Transfer).await,
        Err(Error::InvalidCallHandle)
    );
    assert_eq!(
        bob.add_to_conference(b, a).await,
        Err(Error::InvalidCallHandle)
    );
    // Never: this switch cannot park — "never" wins over "not now" and "bad parameters".
    assert_eq!(
        alice.park(a, ParkMode::NonDirected).await,
        Err(Error::OperationUnavailable { operation: "park" })
    );
    assert!(!before.features.contains(CallOperation::Park));
    // Not now: answering a connected call.
    assert_eq!(
        bob.answer(b).await,
        Err(Error::InvalidCallState {
            state: K::Connected
        })
    );
    // A monitor hears "not yours" before "never".
    assert_eq!(
        sup.park(s, ParkMode::NonDirected).await,
        Err(Error::NotOwner)
    );
    // The sole owner may neither walk away from nor demote itself on a live call.
    assert_eq!(
        alice.deallocate(a),
        Err(Error::InvalidCallState {
            state: K::Connected
        })
    );
    assert_eq!(
        alice.set_call_privilege(a, CallPrivilege::Monitor),
        Err(Error::InvalidCallState {
            state: K::Connected
        })
    );
    // None of that changed anything.
    assert_eq!(alice.call_status(a).unwrap(), before);

    // A monitor that becomes an owner may act; the others are told the owner count grew.
    sup.set_call_privilege(s, CallPrivilege::Owner).unwrap();
    assert_eq!(alice.call_status(a).unwrap().num_owners, 2);
    let mut wa = Watcher::new(&alice);
    wa.until(|e| matches!(e, Event::CallInfo { changed, .. } if changed.contains(InfoChange::NUM_OWNERS_INCREASED)))
        .await;
    alice.set_call_privilege(a, CallPrivilege::Monitor).unwrap();
    sup.drop_call(s).await.unwrap();
    assert_eq!(alice.call_status(a).unwrap().state, CallState::Idle);
}

#[tokio::test(start_paused = true)]
async fn features_follow_the_state() {
    let pbx = pbx().await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, _) = pbx
        .app("bob", &[("200", OpenOptions::owner_monitor())])
        .await;
    let mut wb = Watcher::new(&bob);
    alice.make_call(l[0], Some("200")).await.unwrap();
    let b = wb.new_call().await;
    let offering = bob.call_status(b).unwrap().features;
    for op in [
        CallOperation::Accept,
        CallOperation::Answer,
        CallOperation::Reject,
        CallOperation::Drop,
    ] {
        assert!(offering.contains(op), "{op}");
    }
    bob.answer(b).await.unwrap();
    let connected = bob.call_status(b).unwrap().features;
    assert!(connected.contains(CallOperation::Drop));
    assert!(!connected.contains(CallOperation::Answer));
    assert!(!connected.contains(CallOperation::Accept));
}

#[tokio::test(start_paused = true)]
async fn bad_input_gets_a_typed_error_and_changes_nothing() {
    let pbx = pbx().await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let before = pbx.engine.stats();
    assert!(matches!(
        alice.make_call(l[0], Some("12x4")).await,
        Err(Error::InvalidDialString(
            DialStringError::InvalidCharacter { ch: 'x', .. }
        ))
    ));
    assert_eq!(
        alice.make_call(l[0], Some("9W5551000")).await,
        Err(Error::DialModifierUnsupported(
            DialModifier::WaitForDialTone
        ))
    );
    assert_eq!(
        alice.make_call(l[0], Some("")).await,
        Err(Error::InvalidDialString(DialStringError::Empty))
    );
    assert_eq!(
        alice
            .make_call_with(
                l[0],
                MakeCallParams {
                    media_mode: Some(MediaModes::DATA_MODEM),
                    ..MakeCallParams::to("200")
                }
            )
            .await,
        Err(Error::InvalidMediaMode)
    );
    assert_eq!(
        alice
            .make_call_with(
                l[0],
                MakeCallParams {
                    address: tapir_core::AddressId(3),
                    ..MakeCallParams::to("200")
                }
            )
            .await,
        Err(Error::InvalidAddressId)
    );
    assert_eq!(
        alice.open_line(LineId(99), OpenOptions::owner()).await,
        Err(Error::InvalidLine(LineId(99)))
    );
    assert_eq!(
        alice
            .open_line(
                LineId(0),
                OpenOptions::owner().media_modes(MediaModes::G3_FAX)
            )
            .await,
        Err(Error::InvalidMediaMode)
    );
    assert!(matches!(
        pbx.engine.logon("").await,
        Err(Error::InvalidParameter { .. })
    ));
    assert_eq!(pbx.engine.stats(), before);
    assert_eq!(pbx.switch.live_legs(), 0);
    assert!(alice.try_next_event().is_none());
    // A second call while the line's only appearance is in use: no free appearance.
    let a = alice.make_call(l[0], None).await.unwrap();
    assert_eq!(
        alice.make_call(l[0], Some("200")).await,
        Err(Error::CallUnavailable)
    );
    alice.drop_call(a).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn log_off_with_live_calls_releases_everything() {
    let pbx = pbx().await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, _) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let (sup, _) = pbx
        .app(
            "supervisor",
            &[
                ("100", OpenOptions::monitor()),
                ("200", OpenOptions::monitor()),
            ],
        )
        .await;
    let (mut wb, mut ws) = (Watcher::new(&bob), Watcher::new(&sup));
    alice.make_call(l[0], Some("200")).await.unwrap();
    let b = wb.new_call().await;
    bob.answer(b).await.unwrap();
    let s1 = ws.new_call().await;

    // Alice solely owns her leg: logging off drops it (the orphan policy), and Bob hears the hang-up.
    alice.logoff().await;
    assert_eq!(
        wb.state(b, K::Disconnected).await,
        CallState::Disconnected(DisconnectReason::Normal)
    );
    ws.state(s1, K::Idle).await;
    // Bob logs off with his leg still disconnected-but-live: it is dropped too.
    bob.logoff().await;
    assert_eq!(pbx.switch.live_legs(), 0);
    let stats = pbx.engine.stats();
    assert_eq!(stats.sessions, 1);
    assert_eq!(
        stats.call_handles, 2,
        "only the supervisor's two idle handles remain"
    );
    sup.logoff().await;
    pbx.assert_empty();
    assert_eq!(pbx.engine.stats().line_handles, 0);
    assert_eq!(pbx.engine.stats().sessions, 0);
}

#[tokio::test(start_paused = true)]
async fn an_offered_call_nobody_owns_rings_out_and_is_forgotten() {
    let pbx = pbx().await;
    let (mon, _) = pbx
        .app("wallboard", &[("300", OpenOptions::monitor())])
        .await;
    let mut w = Watcher::new(&mon);
    pbx.switch
        .ring_in(RingIn::new("300", CallerId::Withheld).give_up_after(Duration::from_secs(20)))
        .unwrap();
    let m = w.new_call().await;
    assert_eq!(mon.call_status(m).unwrap().num_owners, 0);
    assert_eq!(mon.call_info(m).unwrap().info.caller, PartyId::blocked());
    w.state(m, K::Idle).await;
    mon.deallocate(m).unwrap();
    pbx.assert_empty();
}

#[tokio::test(start_paused = true)]
async fn closing_a_line_drops_the_calls_solely_owned_through_it() {
    let pbx = pbx().await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let a = alice
        .make_call(l[0], Some(numbers::NO_ANSWER))
        .await
        .unwrap();
    alice.close_line(l[0]).await.unwrap();
    assert_eq!(alice.call_status(a), Err(Error::InvalidCallHandle));
    assert_eq!(alice.close_line(l[0]).await, Err(Error::InvalidLineHandle));
    assert_eq!(pbx.switch.live_legs(), 0);
    pbx.assert_empty();
}

#[tokio::test(start_paused = true)]
async fn owner_priority_decides_who_is_offered_the_call() {
    let pbx = pbx().await;
    let (first, _) = pbx.app("first", &[("100", OpenOptions::owner())]).await;
    let (urgent, _) = pbx
        .app("urgent", &[("100", OpenOptions::owner().priority(5))])
        .await;
    let mut wu = Watcher::new(&urgent);
    pbx.switch
        .ring_in(RingIn::new("100", CallerId::number("5550123")))
        .unwrap();
    let h = wu.new_call().await;
    assert_eq!(
        urgent.call_status(h).unwrap().privilege,
        CallPrivilege::Owner
    );
    let mut wf = Watcher::new(&first);
    wf.drain();
    assert!(
        wf.handles().is_empty(),
        "an owner-only opener that is not chosen gets no handle"
    );
    assert!(
        wf.log.iter().any(|e| matches!(
            e.event,
            Event::Line {
                event: LineEvent::Ringing { .. },
                ..
            }
        )),
        "but it hears its line ring"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_sessions_drops_calls_and_stops_providers() {
    let pbx = pbx().await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, _) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let mut wb = Watcher::new(&bob);
    alice.make_call(l[0], Some("200")).await.unwrap();
    let b = wb.new_call().await;
    bob.answer(b).await.unwrap();

    pbx.engine.shutdown().await;
    assert_eq!(pbx.switch.live_legs(), 0);
    assert_eq!(pbx.engine.stats(), Default::default());
    // Each stream ends once what was queued before the end has been read.
    while alice.next_event().await.is_some() {}
    assert_eq!(
        alice.make_call(l[0], Some("200")).await,
        Err(Error::SessionEnded)
    );
    assert_eq!(bob.call_status(b), Err(Error::InvalidCallHandle));
}

/// Counts the `call` spans a subscriber sees made and entered.
#[derive(Clone, Default)]
struct CallSpans {
    made: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    entered: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<S> tracing_subscriber::Layer<S> for CallSpans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().name() == "call" {
            self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn on_enter(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if ctx.span(id).is_some_and(|s| s.name() == "call") {
            self.entered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn with_tracing_on_each_call_leg_has_its_span_and_its_work_runs_in_it() {
    use tracing_subscriber::layer::SubscriberExt;
    let spans = CallSpans::default();
    // This test's thread only (a current-thread runtime runs every task here).
    let _on = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let pbx = pbx().await;
    let (alice, al) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, _) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let mut wb = Watcher::new(&bob);
    let a = alice.make_call(al[0], Some("200")).await.unwrap();
    let b = wb.new_call().await;
    bob.answer(b).await.unwrap();
    alice.drop_call(a).await.unwrap();
    let made = spans.made.load(std::sync::atomic::Ordering::Relaxed);
    let entered = spans.entered.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(made, 2, "one span per call leg (caller's and callee's)");
    assert!(
        entered >= 6,
        "state changes and operations run in the span: entered {entered} times"
    );
    alice.deallocate(a).unwrap();
    bob.drop_call(b).await.unwrap();
    bob.deallocate(b).unwrap();
    tapir_tests::close_all(&pbx, [alice, bob]).await;
}

#[tokio::test(start_paused = true)]
async fn a_monitor_that_opens_after_a_call_began_takes_it_up_and_follows_it_to_the_end() {
    let pbx = pbx().await;
    let (alice, al) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, _) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let (mut wa, mut wb) = (Watcher::new(&alice), Watcher::new(&bob));
    let a = alice.make_call(al[0], Some("200")).await.unwrap();
    let b = wb.new_call().await;
    bob.answer(b).await.unwrap();
    wa.state(a, K::Connected).await;
    let call_id = alice.call_info(a).unwrap().call_id();

    // The supervisor opens Alice's line while the call is up: the open alone announces nothing.
    let (sup, sl) = pbx
        .app("supervisor", &[("100", OpenOptions::monitor())])
        .await;
    let mut ws = Watcher::new(&sup);
    assert!(sup.calls().is_empty());
    assert!(sup.try_next_event().is_none());

    let taken = sup.new_calls(sl[0]).unwrap();
    assert_eq!(taken.len(), 1);
    let m = taken[0];
    // Announced before anything else names it, then its state as it is now.
    let first = ws.until(|_| true).await;
    assert!(
        matches!(first, Event::NewCall { call, privilege: CallPrivilege::Monitor, call_id: id, .. }
            if call == m && id == call_id),
        "{first:?}"
    );
    assert_eq!(ws.state(m, K::Connected).await.kind(), K::Connected);
    assert_eq!(
        sup.call_status(m).unwrap().privilege,
        CallPrivilege::Monitor
    );
    // Asking again gives nothing new: the session holds the call already.
    assert!(sup.new_calls(sl[0]).unwrap().is_empty());
    // A monitor may not change the call.
    assert!(matches!(sup.hold(m).await, Err(Error::NotOwner)));

    // The call's later events reach the new handle, in order, to the end.
    alice.drop_call(a).await.unwrap();
    ws.state(m, K::Idle).await;
    // Alice's leg is idle but still held: an idle call is nobody's to take up.
    let (late, ll) = pbx.app("late", &[("100", OpenOptions::monitor())]).await;
    assert!(late.new_calls(ll[0]).unwrap().is_empty());
    bob.drop_call(b).await.unwrap();
    for (s, h) in [(&alice, a), (&bob, b), (&sup, m)] {
        s.deallocate(h).unwrap();
    }
    wb.drain();
    tapir_tests::close_all(&pbx, [alice, bob, sup, late]).await;
}

#[tokio::test(start_paused = true)]
async fn line_status_counts_each_address_calls_and_says_whether_the_line_is_in_service() {
    let pbx = pbx().await;
    let (alice, al) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (sup, sl) = pbx
        .app("supervisor", &[("100", OpenOptions::monitor())])
        .await;
    let status = alice.line_status(al[0]).await.unwrap();
    assert!(status.in_service, "{status:?}");
    assert_eq!(status.opens, 2);
    assert_eq!(status.addresses[0].number, "100");
    assert_eq!(status.addresses[0].usage.active, 0);

    let a = alice
        .make_call(al[0], Some(numbers::ANSWERS_AT_ONCE))
        .await
        .unwrap();
    tapir_tests::poll_state(&alice, a, K::Connected).await;
    alice.hold(a).await.unwrap();
    let held = sup.line_status(sl[0]).await.unwrap().addresses[0].usage;
    assert_eq!((held.active, held.on_hold), (0, 1));
    assert!(
        matches!(
            alice.line_status(sl[0]).await,
            Err(Error::InvalidLineHandle)
        ),
        "another session's line handle is no handle here"
    );

    alice.drop_call(a).await.unwrap();
    alice.deallocate(a).unwrap();
    tapir_tests::close_all(&pbx, [alice, sup]).await;
}
