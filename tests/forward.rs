//! Forwarding through the engine against the simulated PBX.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use tapir::core::dial::DialString;
use tapir::core::info::{CallReason, PartyId};
use tapir::core::params::{ForwardCondition, Forwarding};
use tapir::core::state::{CallState, CallStateKind as K, DisconnectReason};
use tapir::{Error, Event, LineEvent, OpenOptions};
use tapir_simswitch::{CallerId, RingIn};
use tapir_tests::{Watcher, close_all, pbx};

fn to(rule: ForwardCondition, number: &str) -> Forwarding {
    Forwarding {
        do_not_disturb: false,
        rules: vec![(rule, DialString::parse(number).unwrap())],
    }
}

#[tokio::test(start_paused = true)]
async fn unconditional_busy_no_answer_dnd_and_cancel() {
    let pbx = pbx().await;
    let (alice, al) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, bl) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let (carol, _) = pbx.app("carol", &[("300", OpenOptions::owner())]).await;
    let (mut wa, mut wb, mut wc) = (
        Watcher::new(&alice),
        Watcher::new(&bob),
        Watcher::new(&carol),
    );

    // Unconditional: Bob's calls go to Carol.
    bob.forward(bl[0], to(ForwardCondition::Unconditional, "300"))
        .await
        .unwrap();
    wb.until(|e| {
        matches!(
            e,
            Event::Line {
                event: LineEvent::ForwardingChanged { .. },
                ..
            }
        )
    })
    .await;
    let a = alice.make_call(al[0], Some("200")).await.unwrap();
    let c = wc.new_call().await;
    let info = carol.call_info(c).unwrap().info;
    assert_eq!(info.reason, CallReason::ForwardUnconditional);
    assert_eq!(*info.redirecting(), PartyId::named("200", "User 1"));
    assert_eq!(
        alice
            .call_info(a)
            .unwrap()
            .info
            .redirection()
            .number
            .as_deref(),
        Some("300")
    );
    alice.drop_call(a).await.unwrap();
    wc.state(c, K::Idle).await;

    // Incoming calls from outside follow it as well.
    pbx.switch
        .ring_in(RingIn::new("200", CallerId::number("5550123")))
        .unwrap();
    let c2 = wc.new_call().await;
    assert_eq!(
        carol.call_info(c2).unwrap().info.reason,
        CallReason::ForwardUnconditional
    );
    carol.reject(c2).await.unwrap();

    // On no answer after two rings (12 s): Bob's leg ends "forwarded" and Carol is offered the call.
    bob.forward(bl[0], to(ForwardCondition::NoAnswer { rings: 2 }, "300"))
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    let a = alice.make_call(al[0], Some("200")).await.unwrap();
    let b = wb.new_call().await;
    let c3 = wc.new_call().await;
    assert_eq!(start.elapsed(), Duration::from_secs(12));
    assert_eq!(
        carol.call_info(c3).unwrap().info.reason,
        CallReason::ForwardNoAnswer
    );
    assert_eq!(
        wb.state(b, K::Disconnected).await,
        CallState::Disconnected(DisconnectReason::Forwarded)
    );
    carol.answer(c3).await.unwrap();
    assert_eq!(alice.call_status(a).unwrap().state.kind(), K::Connected);
    alice.drop_call(a).await.unwrap();
    wc.state(c3, K::Disconnected).await;
    carol.drop_call(c3).await.unwrap();

    // On busy: while Bob talks to Dave outside, Alice's call goes to Carol.
    bob.forward(bl[0], to(ForwardCondition::Busy, "300"))
        .await
        .unwrap();
    let busy = bob
        .make_call(bl[0], Some(tapir_tests::numbers::ANSWERS_AT_ONCE))
        .await
        .unwrap();
    wb.state(busy, K::Connected).await;
    let a4 = alice.make_call(al[0], Some("200")).await.unwrap();
    let c4 = wc.new_call().await;
    assert_eq!(
        carol.call_info(c4).unwrap().info.reason,
        CallReason::ForwardBusy
    );
    carol.drop_call(c4).await.unwrap();
    alice.drop_call(a4).await.unwrap();
    bob.drop_call(busy).await.unwrap();

    // Do not disturb: the caller is refused.
    bob.forward(
        bl[0],
        Forwarding {
            do_not_disturb: true,
            rules: vec![],
        },
    )
    .await
    .unwrap();
    let a = alice.make_call(al[0], Some("200")).await.unwrap();
    assert_eq!(
        wa.state(a, K::Disconnected).await,
        CallState::Disconnected(DisconnectReason::DoNotDisturb)
    );
    alice.drop_call(a).await.unwrap();

    // Bad forwarding is refused and changes nothing; cancelling restores ringing at Bob.
    assert!(matches!(
        bob.forward(bl[0], to(ForwardCondition::Unconditional, "999"))
            .await,
        Err(Error::InvalidAddress { .. })
    ));
    let a = alice.make_call(al[0], Some("200")).await.unwrap();
    assert_eq!(
        alice.call_status(a).unwrap().state.kind(),
        K::Disconnected,
        "still do-not-disturb"
    );
    alice.drop_call(a).await.unwrap();
    bob.forward(bl[0], Forwarding::default()).await.unwrap();
    alice.make_call(al[0], Some("200")).await.unwrap();
    let b = wb.new_call().await;
    assert_eq!(bob.call_info(b).unwrap().info.reason, CallReason::Direct);
    wa.drain();
    close_all(&pbx, [alice, bob, carol]).await;
}

#[tokio::test(start_paused = true)]
async fn a_forwarding_loop_ends_after_a_few_hops_in_no_answer_and_never_rings_forever() {
    let pbx = pbx().await;
    let (bob, bl) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let (carol, cl) = pbx.app("carol", &[("300", OpenOptions::owner())]).await;
    // Bob forwards to Carol on no answer, Carol back to Bob: a loop.
    bob.forward(bl[0], to(ForwardCondition::NoAnswer { rings: 1 }, "300"))
        .await
        .unwrap();
    carol
        .forward(cl[0], to(ForwardCondition::NoAnswer { rings: 1 }, "200"))
        .await
        .unwrap();
    // A supervisor watches both lines; nobody answers.
    let (sup, _) = pbx
        .app(
            "supervisor",
            &[
                ("200", OpenOptions::monitor()),
                ("300", OpenOptions::monitor()),
            ],
        )
        .await;
    let mut ws = Watcher::new(&sup);
    bob.logoff().await;
    carol.logoff().await;

    pbx.switch
        .ring_in(RingIn::new("200", CallerId::number("5550123")))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    ws.drain();
    let legs: Vec<_> = ws
        .log
        .iter()
        .filter_map(|e| match e.event {
            Event::NewCall { call, .. } => Some(call),
            _ => None,
        })
        .collect();
    // The first leg and at most five forwards; the last one ends unanswered.
    assert!(
        (2..=6).contains(&legs.len()),
        "{} legs for one call",
        legs.len()
    );
    let last = *legs.last().unwrap();
    assert_eq!(
        ws.states(last).last().copied(),
        Some(CallState::Idle),
        "the last hop ends: {:?}",
        ws.states(last)
    );
    assert!(
        ws.states(last)
            .contains(&CallState::Disconnected(DisconnectReason::NoAnswer)),
        "in the call's no-answer outcome: {:?}",
        ws.states(last)
    );
    assert_eq!(pbx.switch.live_legs(), 0, "nothing rings any more");
    for h in legs {
        sup.deallocate(h).unwrap();
    }
    close_all(&pbx, [sup]).await;
}
