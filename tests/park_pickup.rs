//! Park, unpark and pickup through the engine against the simulated PBX, with their races.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use tapir::core::gate::CallOperation;
use tapir::core::info::{CallReason, PartyId};
use tapir::core::params::{ParkMode, PickupTarget};
use tapir::core::state::{CallState, CallStateKind as K, DisconnectReason};
use tapir::{Error, Event, LineEvent};
use tapir_simswitch::{CallerId, RingIn};
use tapir_tests::{Desk, Pbx, close_all, pbx_from};

async fn office(orbits: &[&str]) -> Pbx {
    pbx_from(tapir_tests::office(orbits)).await
}

async fn desk(pbx: &Pbx, name: &str, ext: &str) -> Desk {
    pbx.desk(name, ext).await
}

/// Alice calls Bob, Bob answers. Returns Alice's and Bob's handles.
async fn call_bob(alice: &mut Desk, bob: &mut Desk) -> (tapir::CallHandle, tapir::CallHandle) {
    let a = alice
        .session
        .make_call(alice.line, Some("200"))
        .await
        .unwrap();
    let b = bob.w.new_call().await;
    bob.session.answer(b).await.unwrap();
    (a, b)
}

#[tokio::test(start_paused = true)]
async fn directed_park_then_unpark_elsewhere() {
    let pbx = office(&["701", "702"]).await;
    let (mut alice, mut bob, mut carol) = (
        desk(&pbx, "alice", "100").await,
        desk(&pbx, "bob", "200").await,
        desk(&pbx, "carol", "300").await,
    );
    let (a, b) = call_bob(&mut alice, &mut bob).await;
    let call_id = bob.session.call_info(b).unwrap().call_id();
    assert!(
        bob.session
            .call_status(b)
            .unwrap()
            .features
            .contains(CallOperation::Park)
    );

    let orbit = bob
        .session
        .park(b, ParkMode::Directed("702".into()))
        .await
        .unwrap();
    assert_eq!(orbit, "702");
    assert_eq!(bob.session.call_status(b).unwrap().state, CallState::Idle);
    let parked = bob
        .w
        .until(|e| {
            matches!(
                e,
                Event::Line {
                    event: LineEvent::Parked { .. },
                    ..
                }
            )
        })
        .await;
    assert!(
        matches!(parked, Event::Line { event: LineEvent::Parked { orbit, call_id: id }, .. } if orbit == "702" && id == call_id)
    );
    assert_eq!(
        alice.session.call_status(a).unwrap().state.kind(),
        K::Connected,
        "Alice waits, connected"
    );

    let c = carol.session.unpark(carol.line, "702").await.unwrap();
    let info = carol.session.call_info(c).unwrap();
    assert_eq!(info.info.reason, CallReason::Unpark);
    assert_eq!(info.call_id(), call_id);
    assert_eq!(
        carol.session.call_status(c).unwrap().state.kind(),
        K::Connected
    );
    assert_eq!(
        alice.session.call_info(a).unwrap().info.connected,
        PartyId::named("300", "Carol")
    );
    bob.w
        .until(|e| {
            matches!(
                e,
                Event::Line {
                    event: LineEvent::Unparked { .. },
                    ..
                }
            )
        })
        .await;
    // With a call active, Carol has no free appearance: refused before the switch is asked.
    assert_eq!(
        carol.session.unpark(carol.line, "701").await,
        Err(Error::CallUnavailable)
    );
    carol.session.drop_call(c).await.unwrap();
    assert!(matches!(
        carol.session.unpark(carol.line, "702").await,
        Err(Error::InvalidAddress { .. })
    ));
    assert!(matches!(
        carol.session.unpark(carol.line, "7x").await,
        Err(Error::InvalidDialString(_))
    ));
    carol.w.drain();
    close_all(&pbx, [alice.session, bob.session, carol.session]).await;
}

#[tokio::test(start_paused = true)]
async fn non_directed_park_returns_the_orbit_and_a_full_lot_changes_nothing() {
    let pbx = office(&["701"]).await;
    let (mut alice, mut bob, mut carol, mut dave) = (
        desk(&pbx, "alice", "100").await,
        desk(&pbx, "bob", "200").await,
        desk(&pbx, "carol", "300").await,
        desk(&pbx, "dave", "400").await,
    );
    let (_, b) = call_bob(&mut alice, &mut bob).await;
    assert_eq!(
        bob.session.park(b, ParkMode::NonDirected).await.unwrap(),
        "701"
    );
    // Carol calls Dave and tries to park too: the one-orbit lot is full.
    let c = carol
        .session
        .make_call(carol.line, Some("400"))
        .await
        .unwrap();
    let d = dave.w.new_call().await;
    dave.session.answer(d).await.unwrap();
    assert_eq!(
        carol.session.park(c, ParkMode::NonDirected).await,
        Err(Error::ResourceUnavailable {
            what: "every park orbit is taken"
        })
    );
    assert_eq!(
        carol
            .session
            .park(c, ParkMode::Directed("701".into()))
            .await,
        Err(Error::InUse)
    );
    assert!(matches!(
        carol
            .session
            .park(c, ParkMode::Directed("999".into()))
            .await,
        Err(Error::InvalidAddress { .. })
    ));
    assert_eq!(
        carol.session.call_status(c).unwrap().state.kind(),
        K::Connected,
        "unchanged"
    );
    carol.w.drain();
    close_all(
        &pbx,
        [alice.session, bob.session, carol.session, dave.session],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn two_calls_parked_to_one_orbit_at_once() {
    let pbx = office(&["701", "702"]).await;
    let (mut alice, mut bob, carol, mut dave) = (
        desk(&pbx, "alice", "100").await,
        desk(&pbx, "bob", "200").await,
        desk(&pbx, "carol", "300").await,
        desk(&pbx, "dave", "400").await,
    );
    let (_, b) = call_bob(&mut alice, &mut bob).await;
    let c = carol
        .session
        .make_call(carol.line, Some("400"))
        .await
        .unwrap();
    let d = dave.w.new_call().await;
    dave.session.answer(d).await.unwrap();
    let (r1, r2) = tokio::join!(
        bob.session.park(b, ParkMode::Directed("701".into())),
        carol.session.park(c, ParkMode::Directed("701".into()))
    );
    let outcomes = [r1.is_ok(), r2.is_ok()];
    assert_eq!(
        outcomes.iter().filter(|ok| **ok).count(),
        1,
        "{r1:?} {r2:?}"
    );
    let (loser_session, loser_call, loss) = if r1.is_ok() {
        (&carol.session, c, r2)
    } else {
        (&bob.session, b, r1)
    };
    assert_eq!(loss, Err(Error::InUse));
    assert_eq!(
        loser_session.call_status(loser_call).unwrap().state.kind(),
        K::Connected
    );
    close_all(
        &pbx,
        [alice.session, bob.session, carol.session, dave.session],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_parked_call_comes_back_after_the_timeout_unless_retrieved_first() {
    let pbx = office(&["701", "702"]).await;
    let (mut alice, mut bob, carol) = (
        desk(&pbx, "alice", "100").await,
        desk(&pbx, "bob", "200").await,
        desk(&pbx, "carol", "300").await,
    );
    let (a, b) = call_bob(&mut alice, &mut bob).await;
    let start = tokio::time::Instant::now();
    bob.session
        .park(b, ParkMode::Directed("701".into()))
        .await
        .unwrap();
    // Nobody retrieves it: after 60 s it rings Bob again, reason reminder.
    let r = bob.w.new_call().await;
    assert_eq!(start.elapsed(), Duration::from_secs(60));
    assert_eq!(
        bob.session.call_info(r).unwrap().info.reason,
        CallReason::Reminder
    );
    assert_eq!(
        bob.session.call_status(r).unwrap().state.kind(),
        K::Offering
    );
    assert!(matches!(
        carol.session.unpark(carol.line, "701").await,
        Err(Error::InvalidAddress { .. })
    ));
    bob.session.answer(r).await.unwrap();
    assert_eq!(
        alice.session.call_info(a).unwrap().info.connected,
        PartyId::named("200", "Bob")
    );

    // Parked again and retrieved a moment before the timeout: no reminder follows.
    bob.session
        .park(r, ParkMode::Directed("701".into()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(59_999)).await;
    let c = carol.session.unpark(carol.line, "701").await.unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
    bob.w.drain();
    assert_eq!(bob.w.handles().len(), 2, "no third call for Bob");
    assert_eq!(
        carol.session.call_status(c).unwrap().state.kind(),
        K::Connected
    );
    close_all(&pbx, [alice.session, bob.session, carol.session]).await;
}

#[tokio::test(start_paused = true)]
async fn the_far_end_hangs_up_while_parked() {
    let pbx = office(&["701"]).await;
    let (mut bob, carol) = (
        desk(&pbx, "bob", "200").await,
        desk(&pbx, "carol", "300").await,
    );
    let remote = pbx
        .switch
        .ring_in(RingIn::new("200", CallerId::number("5550123")))
        .unwrap();
    let b = bob.w.new_call().await;
    bob.session.answer(b).await.unwrap();
    bob.session.park(b, ParkMode::NonDirected).await.unwrap();
    remote.hang_up();
    bob.w
        .until(|e| {
            matches!(
                e,
                Event::Line {
                    event: LineEvent::Unparked { .. },
                    ..
                }
            )
        })
        .await;
    assert!(matches!(
        carol.session.unpark(carol.line, "701").await,
        Err(Error::InvalidAddress { .. })
    ));
    close_all(&pbx, [bob.session, carol.session]).await;
}

#[tokio::test(start_paused = true)]
async fn directed_and_group_pickup() {
    let pbx = office(&["701"]).await;
    let (alice, mut bob, mut carol, dave) = (
        desk(&pbx, "alice", "100").await,
        desk(&pbx, "bob", "200").await,
        desk(&pbx, "carol", "300").await,
        desk(&pbx, "dave", "400").await,
    );
    // Directed: Dave picks up the call ringing at Bob.
    let a = alice
        .session
        .make_call(alice.line, Some("200"))
        .await
        .unwrap();
    let b = bob.w.new_call().await;
    let d = dave
        .session
        .pickup(dave.line, PickupTarget::Directed("200".into()))
        .await
        .unwrap();
    assert_eq!(
        dave.session.call_info(d).unwrap().info.reason,
        CallReason::Pickup
    );
    assert_eq!(
        dave.session.call_status(d).unwrap().state.kind(),
        K::Connected
    );
    assert_eq!(
        bob.w.state(b, K::Disconnected).await,
        CallState::Disconnected(DisconnectReason::PickedUp)
    );
    bob.w.state(b, K::Idle).await;
    assert_eq!(
        alice.session.call_status(a).unwrap().state.kind(),
        K::Connected
    );
    assert_eq!(
        alice.session.call_info(a).unwrap().info.connected,
        PartyId::named("400", "Dave")
    );
    alice.session.drop_call(a).await.unwrap();
    dave.session.drop_call(d).await.unwrap();

    // Group: Carol, in Bob's pickup group, picks up without naming him; Dave is not in the group.
    let a2 = alice
        .session
        .make_call(alice.line, Some("200"))
        .await
        .unwrap();
    bob.w.new_call().await;
    assert!(matches!(
        dave.session
            .pickup(dave.line, PickupTarget::Group("sales".into()))
            .await,
        Err(Error::InvalidParameter { .. })
    ));
    let c = carol
        .session
        .pickup(carol.line, PickupTarget::Group("sales".into()))
        .await
        .unwrap();
    assert_eq!(
        carol.session.call_status(c).unwrap().state.kind(),
        K::Connected
    );
    assert_eq!(
        alice.session.call_status(a2).unwrap().state.kind(),
        K::Connected
    );
    // Nothing is ringing any more.
    assert!(matches!(
        dave.session
            .pickup(dave.line, PickupTarget::Directed("200".into()))
            .await,
        Err(Error::InvalidAddress { .. })
    ));
    carol.w.drain();
    close_all(
        &pbx,
        [alice.session, bob.session, carol.session, dave.session],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn two_pickers_race_for_one_ringing_call() {
    let pbx = office(&["701"]).await;
    let (mut alice, mut bob, carol, dave) = (
        desk(&pbx, "alice", "100").await,
        desk(&pbx, "bob", "200").await,
        desk(&pbx, "carol", "300").await,
        desk(&pbx, "dave", "400").await,
    );
    alice
        .session
        .make_call(alice.line, Some("200"))
        .await
        .unwrap();
    bob.w.new_call().await;
    let (r1, r2) = tokio::join!(
        carol
            .session
            .pickup(carol.line, PickupTarget::Directed("200".into())),
        dave.session
            .pickup(dave.line, PickupTarget::Directed("200".into()))
    );
    assert_eq!(
        [r1.is_ok(), r2.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "{r1:?} {r2:?}"
    );
    let loss = if r1.is_ok() { r2 } else { r1 };
    assert!(matches!(loss, Err(Error::InvalidAddress { .. })));
    alice.w.drain();
    close_all(
        &pbx,
        [alice.session, bob.session, carol.session, dave.session],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_caller_gives_up_just_before_a_pickup() {
    let pbx = office(&["701"]).await;
    let (mut bob, carol) = (
        desk(&pbx, "bob", "200").await,
        desk(&pbx, "carol", "300").await,
    );
    let remote = pbx
        .switch
        .ring_in(RingIn::new("200", CallerId::number("5550123")))
        .unwrap();
    let b = bob.w.new_call().await;
    remote.hang_up();
    assert!(matches!(
        carol
            .session
            .pickup(carol.line, PickupTarget::Group("sales".into()))
            .await,
        Err(Error::InvalidAddress { .. })
    ));
    bob.w.state(b, K::Idle).await;
    assert!(carol.session.calls().is_empty());
    close_all(&pbx, [bob.session, carol.session]).await;
}
