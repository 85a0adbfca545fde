//! Supplementary call control through the engine against the simulated PBX: hold, swap, blind transfer,
//! redirect, digits, secure.
#![allow(missing_docs, clippy::unwrap_used)]

use tapir::core::gate::CallOperation;
use tapir::core::info::{CallReason, InfoChange, PartyId};
use tapir::core::params::{DigitMode, ParkMode};
use tapir::core::state::{CallState, CallStateKind as K, ConnectedMode, DisconnectReason};
use tapir::{Error, Event, OpenOptions};
use tapir_tests::{Watcher, numbers, pbx};

#[tokio::test(start_paused = true)]
async fn hold_unhold_and_swap_change_the_features() {
    let pbx = pbx().await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, _) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let (sup, _) = pbx.app("sup", &[("100", OpenOptions::monitor())]).await;
    let (mut wa, mut wb, mut ws) = (Watcher::new(&alice), Watcher::new(&bob), Watcher::new(&sup));
    let a = alice.make_call(l[0], Some("200")).await.unwrap();
    let b = wb.new_call().await;
    bob.answer(b).await.unwrap();

    let f = alice.call_status(a).unwrap().features;
    assert!(f.contains(CallOperation::Hold) && !f.contains(CallOperation::Unhold));
    alice.hold(a).await.unwrap();
    let st = alice.call_status(a).unwrap();
    assert_eq!(st.state, CallState::OnHold, "hold returns once held");
    assert!(
        st.features.contains(CallOperation::Unhold) && !st.features.contains(CallOperation::Hold)
    );
    assert_eq!(
        alice.hold(a).await,
        Err(Error::InvalidCallState { state: K::OnHold })
    );

    // A second call while the first is held; then swap between them.
    let c = alice
        .make_call(l[0], Some(numbers::ANSWERS_AT_ONCE))
        .await
        .unwrap();
    wa.state(c, K::Connected).await;
    assert!(
        alice
            .call_status(c)
            .unwrap()
            .features
            .contains(CallOperation::SwapHold)
    );
    assert!(
        !alice
            .call_status(c)
            .unwrap()
            .features
            .contains(CallOperation::Hold),
        "the hold slot is taken"
    );
    assert_eq!(
        alice.unhold(a).await,
        Err(Error::ResourceUnavailable {
            what: "another call is active on the address"
        })
    );
    assert_eq!(
        alice.swap_hold(a, c).await,
        Err(Error::InvalidCallState { state: K::OnHold }),
        "arguments swapped"
    );
    alice.swap_hold(c, a).await.unwrap();
    assert_eq!(alice.call_status(c).unwrap().state, CallState::OnHold);
    assert_eq!(alice.call_status(a).unwrap().state.kind(), K::Connected);

    // The monitor saw the same sequence for the first call.
    let s = ws.new_call().await;
    ws.state(s, K::Connected).await;
    ws.until(|e| matches!(e, Event::CallState { call, state: CallState::Connected(_), .. } if *call == s))
        .await;
    let kinds: Vec<K> = ws.states(s).iter().map(|s| s.kind()).collect();
    assert_eq!(
        &kinds[kinds.len() - 3..],
        &[K::Connected, K::OnHold, K::Connected]
    );

    for h in [a, c] {
        alice.drop_call(h).await.unwrap();
        alice.deallocate(h).unwrap();
    }
    wb.state(b, K::Disconnected).await;
    bob.drop_call(b).await.unwrap();
    bob.deallocate(b).unwrap();
    sup.logoff().await;
    pbx.assert_empty();
}

#[tokio::test(start_paused = true)]
async fn blind_transfer_hands_the_caller_to_another_extension() {
    let pbx = pbx().await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, _) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let (carol, _) = pbx.app("carol", &[("300", OpenOptions::owner())]).await;
    let (mut wa, mut wb, mut wc) = (
        Watcher::new(&alice),
        Watcher::new(&bob),
        Watcher::new(&carol),
    );
    let a = alice.make_call(l[0], Some("200")).await.unwrap();
    let b = wb.new_call().await;
    bob.answer(b).await.unwrap();

    // A destination that cannot take the call: the original call is not lost.
    assert!(matches!(
        bob.blind_transfer(b, numbers::UNREACHABLE).await,
        Err(Error::InvalidAddress { .. })
    ));
    assert_eq!(bob.call_status(b).unwrap().state.kind(), K::Connected);

    bob.blind_transfer(b, "300").await.unwrap();
    assert_eq!(
        bob.call_status(b).unwrap().state,
        CallState::Idle,
        "the transferring leg is gone"
    );
    let c = wc.new_call().await;
    let info = carol.call_info(c).unwrap();
    assert_eq!(info.info.reason, CallReason::Transfer);
    assert_eq!(info.info.caller, PartyId::named("100", "User 0"));
    assert_eq!(*info.info.redirecting(), PartyId::named("200", "User 1"));
    assert_eq!(
        info.call_id(),
        alice.call_info(a).unwrap().call_id(),
        "one call ID through the transfer"
    );
    carol.answer(c).await.unwrap();
    wa.until(|e| matches!(e, Event::CallInfo { call, changed } if *call == a && changed.contains(InfoChange::CONNECTED_ID)))
        .await;
    wa.until(|e| matches!(e, Event::CallInfo { call, changed } if *call == a && changed.contains(InfoChange::CONNECTED_ID)))
        .await;
    assert_eq!(
        alice.call_info(a).unwrap().info.connected,
        PartyId::named("300", "User 2")
    );
    alice.drop_call(a).await.unwrap();
    assert_eq!(
        wc.state(c, K::Disconnected).await,
        CallState::Disconnected(DisconnectReason::Normal)
    );
    tapir_tests::close_all(&pbx, [alice, bob, carol]).await;
}

#[tokio::test(start_paused = true)]
async fn redirect_and_digits() {
    let pbx = pbx().await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, _) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let (carol, _) = pbx.app("carol", &[("300", OpenOptions::owner())]).await;
    let (mut wb, mut wc) = (Watcher::new(&bob), Watcher::new(&carol));
    let a = alice.make_call(l[0], Some("200")).await.unwrap();
    let b = wb.new_call().await;
    assert!(
        bob.call_status(b)
            .unwrap()
            .features
            .contains(CallOperation::Redirect)
    );
    bob.redirect(b, "300").await.unwrap();
    assert_eq!(bob.call_status(b).unwrap().state, CallState::Idle);
    let c = wc.new_call().await;
    assert_eq!(
        carol.call_info(c).unwrap().info.reason,
        CallReason::Redirect
    );
    assert_eq!(alice.call_status(a).unwrap().state, CallState::Ringback);
    carol.answer(c).await.unwrap();
    assert_eq!(
        alice.call_status(a).unwrap().state,
        CallState::Connected(ConnectedMode::Active)
    );

    // Carol listens for digits; Alice sends some.
    carol
        .monitor_digits(c, Some(DigitMode::Dtmf))
        .await
        .unwrap();
    alice
        .generate_digits(a, "1*9", DigitMode::Dtmf)
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        if let Event::Digit { call, digit, .. } =
            wc.until(|e| matches!(e, Event::Digit { .. })).await
        {
            assert_eq!(call, c);
            got.push(digit);
        }
    }
    assert_eq!(got, vec!['1', '*', '9']);
    assert!(matches!(
        alice.generate_digits(a, "12x", DigitMode::Dtmf).await,
        Err(Error::InvalidParameter { .. })
    ));
    alice.secure_call(a).await.unwrap();
    assert!(alice.call_info(a).unwrap().info.secure);
    tapir_tests::close_all(&pbx, [alice, bob, carol]).await;
}

/// 100 (Alice) calls 200 (Bob), Bob answers. Returns the sessions, watchers and handles.
async fn alice_talks_to_bob(
    pbx: &tapir_tests::Pbx,
) -> (
    tapir::Session,
    tapir::Session,
    tapir::Session,
    Watcher,
    Watcher,
    Watcher,
    tapir::CallHandle,
    tapir::CallHandle,
) {
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, _) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let (carol, _) = pbx.app("carol", &[("300", OpenOptions::owner())]).await;
    let (wa, mut wb, wc) = (
        Watcher::new(&alice),
        Watcher::new(&bob),
        Watcher::new(&carol),
    );
    let a = alice.make_call(l[0], Some("200")).await.unwrap();
    let b = wb.new_call().await;
    bob.answer(b).await.unwrap();
    (alice, bob, carol, wa, wb, wc, a, b)
}

#[tokio::test(start_paused = true)]
async fn consultation_transfer_connects_the_other_two() {
    let pbx = pbx().await;
    let (alice, bob, carol, mut wa, _wb, mut wc, a, b) = alice_talks_to_bob(&pbx).await;

    let consult = bob.setup_transfer(b).await.unwrap();
    assert_eq!(
        bob.call_status(b).unwrap().state,
        CallState::OnHoldPendingTransfer
    );
    assert_eq!(bob.call_status(consult).unwrap().state.kind(), K::DialTone);
    let f = bob.call_status(consult).unwrap().features;
    assert!(f.contains(CallOperation::Dial) && !f.contains(CallOperation::SetupTransfer));
    bob.dial(consult, "300").await.unwrap();
    let c = wc.new_call().await;
    carol.answer(c).await.unwrap();
    assert!(
        bob.call_status(b)
            .unwrap()
            .features
            .contains(CallOperation::CompleteTransfer)
    );

    assert_eq!(
        bob.complete_transfer(b, consult, tapir::core::params::TransferMode::Transfer)
            .await,
        Ok(None)
    );
    assert_eq!(bob.call_status(b).unwrap().state, CallState::Idle);
    assert_eq!(bob.call_status(consult).unwrap().state, CallState::Idle);
    // Alice and Carol now talk to each other, and each knows who the other is.
    assert_eq!(alice.call_status(a).unwrap().state.kind(), K::Connected);
    assert_eq!(
        alice.call_info(a).unwrap().info.connected,
        PartyId::named("300", "User 2")
    );
    assert_eq!(
        carol.call_info(c).unwrap().info.connected,
        PartyId::named("100", "User 0")
    );
    alice.drop_call(a).await.unwrap();
    wc.state(c, K::Disconnected).await;
    wa.state(a, K::Idle).await;
    tapir_tests::close_all(&pbx, [alice, bob, carol]).await;
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_consultation_returns_to_the_original_call() {
    let pbx = pbx().await;
    let (alice, bob, carol, _wa, _wb, mut wc, _a, b) = alice_talks_to_bob(&pbx).await;

    // Cancel by dropping the consultation call.
    let consult = bob.setup_transfer(b).await.unwrap();
    bob.dial(consult, "300").await.unwrap();
    let c = wc.new_call().await;
    bob.drop_call(consult).await.unwrap();
    assert_eq!(
        bob.call_status(b).unwrap().state.kind(),
        K::Connected,
        "reconnected"
    );
    wc.state(c, K::Idle).await;

    // Cancel by unholding the original: the consultation call is dropped.
    let consult = bob.setup_transfer(b).await.unwrap();
    bob.unhold(b).await.unwrap();
    assert_eq!(bob.call_status(b).unwrap().state.kind(), K::Connected);
    assert_eq!(bob.call_status(consult).unwrap().state, CallState::Idle);

    // A consultation to an unreachable number fails; the original is not lost.
    let consult = bob.setup_transfer(b).await.unwrap();
    bob.dial(consult, numbers::UNREACHABLE).await.unwrap();
    assert_eq!(
        bob.call_status(consult).unwrap().state,
        CallState::Disconnected(DisconnectReason::Unreachable)
    );
    assert!(matches!(
        bob.complete_transfer(b, consult, tapir::core::params::TransferMode::Transfer)
            .await,
        Err(Error::InvalidCallState {
            state: K::Disconnected
        })
    ));
    bob.drop_call(consult).await.unwrap();
    assert_eq!(bob.call_status(b).unwrap().state.kind(), K::Connected);
    tapir_tests::close_all(&pbx, [alice, bob, carol]).await;
}

#[tokio::test(start_paused = true)]
async fn the_far_end_hangs_up_while_a_transfer_is_pending() {
    let pbx = pbx().await;
    let (alice, bob, carol, _wa, mut wb, mut wc, a, b) = alice_talks_to_bob(&pbx).await;
    let consult = bob.setup_transfer(b).await.unwrap();
    bob.dial(consult, "300").await.unwrap();
    let c = wc.new_call().await;
    carol.answer(c).await.unwrap();
    alice.drop_call(a).await.unwrap();
    assert_eq!(
        wb.state(b, K::Disconnected).await,
        CallState::Disconnected(DisconnectReason::Normal)
    );
    assert!(matches!(
        bob.complete_transfer(b, consult, tapir::core::params::TransferMode::Transfer)
            .await,
        Err(Error::InvalidCallState {
            state: K::Disconnected
        })
    ));
    // The consultation call carries on as an ordinary call.
    assert_eq!(bob.call_status(consult).unwrap().state.kind(), K::Connected);
    bob.drop_call(b).await.unwrap();
    bob.drop_call(consult).await.unwrap();
    wc.state(c, K::Disconnected).await;
    tapir_tests::close_all(&pbx, [alice, bob, carol]).await;
}

#[tokio::test(start_paused = true)]
async fn transfer_completed_as_a_conference_then_dropped() {
    let pbx = pbx().await;
    let (alice, bob, carol, mut wa, _wb, mut wc, a, b) = alice_talks_to_bob(&pbx).await;
    let consult = bob.setup_transfer(b).await.unwrap();
    bob.dial(consult, "300").await.unwrap();
    let c = wc.new_call().await;
    carol.answer(c).await.unwrap();
    let conf = bob
        .complete_transfer(b, consult, tapir::core::params::TransferMode::Conference)
        .await
        .unwrap()
        .expect("a conference call");
    assert_eq!(bob.call_status(conf).unwrap().state.kind(), K::Connected);
    for party in [b, consult] {
        assert_eq!(
            bob.call_status(party).unwrap().state,
            CallState::Conferenced
        );
        assert!(
            bob.call_status(party)
                .unwrap()
                .features
                .contains(CallOperation::RemoveFromConference)
        );
    }
    assert_eq!(bob.conference_calls(b).unwrap(), vec![conf, b, consult]);
    assert_eq!(bob.conference_calls(conf).unwrap(), vec![conf, b, consult]);
    assert!(
        bob.call_status(conf)
            .unwrap()
            .features
            .contains(CallOperation::PrepareAddToConference)
    );

    // Dropping the conference ends every party; the far ends hear the hang-up.
    bob.drop_call(conf).await.unwrap();
    for h in [conf, b, consult] {
        assert_eq!(bob.call_status(h).unwrap().state, CallState::Idle);
    }
    wa.state(a, K::Disconnected).await;
    wc.state(c, K::Disconnected).await;
    tapir_tests::close_all(&pbx, [alice, bob, carol]).await;
}

#[tokio::test(start_paused = true)]
async fn conference_set_up_grown_to_full_and_shrunk() {
    let pbx = tapir_tests::pbx_with(&["100", "200", "300", "400", "500"]).await;
    let (host, l) = pbx.app("host", &[("100", OpenOptions::owner())]).await;
    let (guests, _) = pbx
        .app(
            "guests",
            &[
                ("200", OpenOptions::owner()),
                ("300", OpenOptions::owner()),
                ("400", OpenOptions::owner()),
                ("500", OpenOptions::owner()),
            ],
        )
        .await;
    let mut wg = Watcher::new(&guests);
    let answer_next = async |wg: &mut Watcher| {
        let h = wg.new_call().await;
        guests.answer(h).await.unwrap();
        h
    };
    let first = host.make_call(l[0], Some("200")).await.unwrap();
    let g1 = answer_next(&mut wg).await;

    // This switch sets conferences up only from an existing call.
    assert_eq!(
        host.setup_conference_on(l[0]).await,
        Err(Error::OperationUnavailable {
            operation: "setup-conference"
        })
    );
    let (conf, consult) = host.setup_conference(first).await.unwrap();
    assert_eq!(
        host.call_status(conf).unwrap().state,
        CallState::OnHoldPendingConference
    );
    assert_eq!(
        host.call_status(first).unwrap().state,
        CallState::Conferenced
    );
    host.dial(consult, "300").await.unwrap();
    answer_next(&mut wg).await;
    host.add_to_conference(conf, consult).await.unwrap();
    assert_eq!(host.call_status(conf).unwrap().state.kind(), K::Connected);
    assert_eq!(
        host.conference_calls(conf).unwrap(),
        vec![conf, first, consult]
    );

    let third = host.prepare_add_to_conference(conf).await.unwrap();
    host.dial(third, "400").await.unwrap();
    answer_next(&mut wg).await;
    host.add_to_conference(conf, third).await.unwrap();

    // Three parties is the simulated switch's limit.
    assert!(
        !host
            .call_status(conf)
            .unwrap()
            .features
            .contains(CallOperation::PrepareAddToConference)
    );
    assert_eq!(
        host.prepare_add_to_conference(conf).await,
        Err(Error::ConferenceFull)
    );

    // Removing a party disconnects its far end and leaves the others.
    host.remove_from_conference(first).await.unwrap();
    assert_eq!(host.call_status(first).unwrap().state, CallState::Idle);
    wg.state(g1, K::Disconnected).await;
    assert_eq!(
        host.conference_calls(conf).unwrap(),
        vec![conf, consult, third]
    );
    assert_eq!(host.conference_calls(first), Err(Error::NoConference));
    let fourth = host.prepare_add_to_conference(conf).await.unwrap();
    host.dial(fourth, "500").await.unwrap();
    answer_next(&mut wg).await;
    host.add_to_conference(conf, fourth).await.unwrap();
    assert_eq!(host.conference_calls(conf).unwrap().len(), 4);
    tapir_tests::close_all(&pbx, [host, guests]).await;
}

#[tokio::test(start_paused = true)]
async fn handoff_and_digits_per_session() {
    let pbx = pbx().await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, _) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let (recorder, _) = pbx
        .app("recorder", &[("200", OpenOptions::monitor())])
        .await;
    let (ivr, _) = pbx.app("ivr", &[("200", OpenOptions::none())]).await;
    let (mut wb, mut wr, mut wi) = (
        Watcher::new(&bob),
        Watcher::new(&recorder),
        Watcher::new(&ivr),
    );
    let a = alice.make_call(l[0], Some("200")).await.unwrap();
    let b = wb.new_call().await;
    bob.answer(b).await.unwrap();
    let r = wr.new_call().await;

    assert_eq!(bob.handoff(b, "bob"), Err(Error::TargetSelf));
    assert_eq!(bob.handoff(b, "nobody"), Err(Error::TargetNotFound));
    assert_eq!(
        bob.handoff(b, "alice"),
        Err(Error::TargetNotFound),
        "alice has not opened 200"
    );
    assert_eq!(recorder.handoff(r, "ivr"), Err(Error::NotOwner));

    // The recorder holds a monitor handle: it is raised to owner and told so.
    bob.handoff(b, "recorder").unwrap();
    wr.until(|e| {
        matches!(
            e,
            Event::CallState { call, privilege: tapir::core::privilege::CallPrivilege::Owner, .. }
                if *call == r
        )
    })
    .await;
    assert_eq!(
        recorder.call_status(r).unwrap().privilege,
        tapir::core::privilege::CallPrivilege::Owner
    );
    assert_eq!(
        bob.call_status(b).unwrap().num_owners,
        2,
        "bob keeps his privilege"
    );
    // The IVR held nothing: it is given a new owner handle.
    bob.handoff(b, "ivr").unwrap();
    let i = wi.new_call().await;
    assert_eq!(ivr.call_status(i).unwrap().num_owners, 3);
    assert_eq!(
        ivr.call_info(i).unwrap().call_id(),
        bob.call_info(b).unwrap().call_id()
    );

    // Digits reach only the sessions that asked for them.
    recorder
        .monitor_digits(r, Some(DigitMode::Dtmf))
        .await
        .unwrap();
    alice
        .generate_digits(a, "59", DigitMode::Dtmf)
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        if let Event::Digit { digit, .. } = wr.until(|e| matches!(e, Event::Digit { .. })).await {
            got.push(digit);
        }
    }
    assert_eq!(got, vec!['5', '9']);
    wb.drain();
    wi.drain();
    assert!(
        !wb.log
            .iter()
            .any(|e| matches!(e.event, Event::Digit { .. }))
    );
    assert!(
        !wi.log
            .iter()
            .any(|e| matches!(e.event, Event::Digit { .. }))
    );
    // Once the recorder stops, nobody hears digits.
    recorder.monitor_digits(r, None).await.unwrap();
    alice
        .generate_digits(a, "1", DigitMode::Dtmf)
        .await
        .unwrap();
    wr.drain();
    assert_eq!(
        wr.log
            .iter()
            .filter(|e| matches!(e.event, Event::Digit { .. }))
            .count(),
        2
    );

    ivr.drop_call(i).await.unwrap();
    assert_eq!(alice.call_status(a).unwrap().state.kind(), K::Disconnected);
    tapir_tests::close_all(&pbx, [alice, bob, recorder, ivr]).await;
}

#[tokio::test(start_paused = true)]
async fn call_completion_calls_back_when_the_busy_party_is_free() {
    use tapir::core::params::CompletionMode;
    let pbx = pbx().await;
    let (alice, al) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, bl) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let (mut wa, mut wb) = (Watcher::new(&alice), Watcher::new(&bob));

    // Bob is on a call; Alice hears busy and asks to be called back.
    let busy = bob
        .make_call(bl[0], Some(numbers::ANSWERS_AT_ONCE))
        .await
        .unwrap();
    wb.state(busy, K::Connected).await;
    let a = alice.make_call(al[0], Some("200")).await.unwrap();
    assert_eq!(alice.call_status(a).unwrap().state.kind(), K::Busy);
    assert!(
        alice
            .call_status(a)
            .unwrap()
            .features
            .contains(CallOperation::CompleteCall)
    );
    assert!(matches!(
        alice.complete_call(a, CompletionMode::Message).await,
        Err(Error::InvalidParameter { .. })
    ));
    let id = alice
        .complete_call(a, CompletionMode::CampOn)
        .await
        .unwrap();
    assert_eq!(alice.call_status(a).unwrap().state, CallState::Idle);

    // Bob hangs up: Alice is offered a call, reason call completion; answering it calls Bob.
    assert!(id > 0);
    wa.drain();
    bob.drop_call(busy).await.unwrap();
    let back = wa.new_call().await;
    let info = alice.call_info(back).unwrap().info;
    assert_eq!(info.reason, CallReason::CallCompletion);
    assert_eq!(info.caller, PartyId::named("200", "User 1"));
    alice.answer(back).await.unwrap();
    let b = wb.new_call().await;
    assert_eq!(
        bob.call_info(b).unwrap().info.caller,
        PartyId::named("100", "User 0")
    );
    bob.answer(b).await.unwrap();
    assert_eq!(
        alice.call_info(back).unwrap().info.connected,
        PartyId::named("200", "User 1")
    );
    alice.drop_call(back).await.unwrap();
    bob.drop_call(b).await.unwrap();

    // A cancelled request calls nobody back.
    let busy = bob
        .make_call(bl[0], Some(numbers::ANSWERS_AT_ONCE))
        .await
        .unwrap();
    wb.state(busy, K::Connected).await;
    let a = alice.make_call(al[0], Some("200")).await.unwrap();
    let id = alice
        .complete_call(a, CompletionMode::Callback)
        .await
        .unwrap();
    alice.cancel_call_completion(al[0], id).await.unwrap();
    assert!(matches!(
        alice.cancel_call_completion(al[0], id).await,
        Err(Error::InvalidParameter { .. })
    ));
    bob.drop_call(busy).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    wa.drain();
    assert_eq!(
        wa.handles().len(),
        3,
        "a, the callback, and the second a — no second callback"
    );
    tapir_tests::close_all(&pbx, [alice, bob]).await;
}

#[tokio::test(start_paused = true)]
async fn dropping_the_original_during_a_consultation() {
    let pbx = pbx().await;
    let (alice, bob, carol, mut wa, _wb, mut wc, a, b) = alice_talks_to_bob(&pbx).await;
    let consult = bob.setup_transfer(b).await.unwrap();
    bob.dial(consult, "300").await.unwrap();
    let c = wc.new_call().await;
    carol.answer(c).await.unwrap();
    // Bob hangs up on Alice while consulting Carol: Alice is cleared, the consultation carries on.
    bob.drop_call(b).await.unwrap();
    assert_eq!(
        wa.state(a, K::Disconnected).await,
        CallState::Disconnected(DisconnectReason::Normal)
    );
    assert_eq!(bob.call_status(consult).unwrap().state.kind(), K::Connected);
    assert_eq!(
        bob.complete_transfer(b, consult, tapir::core::params::TransferMode::Transfer)
            .await,
        Err(Error::InvalidCallState { state: K::Idle })
    );
    bob.drop_call(consult).await.unwrap();
    wc.state(c, K::Disconnected).await;
    tapir_tests::close_all(&pbx, [alice, bob, carol]).await;
}

#[tokio::test(start_paused = true)]
async fn a_held_conference_comes_back_off_hold() {
    let pbx = pbx().await;
    let (host, l) = pbx.app("host", &[("100", OpenOptions::owner())]).await;
    let (guests, _) = pbx
        .app(
            "guests",
            &[("200", OpenOptions::owner()), ("300", OpenOptions::owner())],
        )
        .await;
    let mut wg = Watcher::new(&guests);
    let first = host.make_call(l[0], Some("200")).await.unwrap();
    let g1 = wg.new_call().await;
    guests.answer(g1).await.unwrap();
    let (conf, consult) = host.setup_conference(first).await.unwrap();
    host.dial(consult, "300").await.unwrap();
    let g2 = wg.new_call().await;
    guests.answer(g2).await.unwrap();
    host.add_to_conference(conf, consult).await.unwrap();

    host.hold(conf).await.unwrap();
    assert_eq!(host.call_status(conf).unwrap().state, CallState::OnHold);
    // Its parties are the conference, not calls of their own competing for the line's appearance:
    // the held conference lists unhold, and unhold works.
    assert!(
        host.call_status(conf)
            .unwrap()
            .features
            .contains(CallOperation::Unhold)
    );
    host.unhold(conf).await.unwrap();
    assert_eq!(host.call_status(conf).unwrap().state.kind(), K::Connected);
    assert_eq!(
        host.call_status(first).unwrap().state,
        CallState::Conferenced
    );
    host.drop_call(conf).await.unwrap();
    for h in [g1, g2] {
        wg.state(h, K::Disconnected).await;
        guests.drop_call(h).await.unwrap();
    }
    tapir_tests::close_all(&pbx, [host, guests]).await;
}

#[tokio::test(start_paused = true)]
async fn a_party_that_hangs_up_leaves_the_conference_and_frees_its_place() {
    let pbx = tapir_tests::pbx_with(&["100", "200", "300", "400", "500"]).await;
    let (host, l) = pbx.app("host", &[("100", OpenOptions::owner())]).await;
    let (guests, _) = pbx
        .app(
            "guests",
            &[
                ("200", OpenOptions::owner()),
                ("300", OpenOptions::owner()),
                ("400", OpenOptions::owner()),
                ("500", OpenOptions::owner()),
            ],
        )
        .await;
    let mut wg = Watcher::new(&guests);
    let answer_next = async |wg: &mut Watcher| {
        let h = wg.new_call().await;
        guests.answer(h).await.unwrap();
        h
    };
    let first = host.make_call(l[0], Some("200")).await.unwrap();
    answer_next(&mut wg).await;
    let (conf, second) = host.setup_conference(first).await.unwrap();
    host.dial(second, "300").await.unwrap();
    let g2 = answer_next(&mut wg).await;
    host.add_to_conference(conf, second).await.unwrap();
    let third = host.prepare_add_to_conference(conf).await.unwrap();
    host.dial(third, "400").await.unwrap();
    answer_next(&mut wg).await;
    host.add_to_conference(conf, third).await.unwrap();
    assert_eq!(
        host.prepare_add_to_conference(conf).await,
        Err(Error::ConferenceFull),
        "three parties: full"
    );

    // 300 hangs up: its party is no longer in the conference, and its place is free again.
    guests.drop_call(g2).await.unwrap();
    tapir_tests::poll_state(&host, second, K::Disconnected).await;
    assert_eq!(
        host.conference_calls(conf).unwrap(),
        vec![conf, first, third]
    );
    assert_eq!(host.conference_calls(second), Err(Error::NoConference));
    // The host drops what is left of it (a disconnected call holds its appearance until then), and
    // the conference takes a third party again.
    host.drop_call(second).await.unwrap();
    assert_eq!(host.conference_calls(conf).unwrap().len(), 3);
    assert!(
        host.call_status(conf)
            .unwrap()
            .features
            .contains(CallOperation::PrepareAddToConference)
    );
    let fourth = host.prepare_add_to_conference(conf).await.unwrap();
    host.dial(fourth, "500").await.unwrap();
    answer_next(&mut wg).await;
    host.add_to_conference(conf, fourth).await.unwrap();
    assert_eq!(
        host.conference_calls(conf).unwrap(),
        vec![conf, first, third, fourth]
    );
    tapir_tests::close_all(&pbx, [host, guests]).await;
}

#[tokio::test(start_paused = true)]
async fn an_original_comes_back_when_its_consultation_call_is_sent_or_parked_away() {
    let pbx = pbx().await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (others, _) = pbx
        .app(
            "others",
            &[("200", OpenOptions::owner()), ("300", OpenOptions::owner())],
        )
        .await;
    let mut wo = Watcher::new(&others);
    let original = alice.make_call(l[0], Some("200")).await.unwrap();
    let b = wo.new_call().await;
    others.answer(b).await.unwrap();

    // The consultation call is transferred on elsewhere, then parked: each time the held original
    // comes back, as it does when the consultation call is dropped.
    for away in ["blind-transfer", "park"] {
        let consult = alice.setup_transfer(original).await.unwrap();
        assert_eq!(
            alice.call_status(original).unwrap().state,
            CallState::OnHoldPendingTransfer
        );
        alice.dial(consult, "300").await.unwrap();
        let c = wo.new_call().await;
        others.answer(c).await.unwrap();
        match away {
            "blind-transfer" => alice
                .blind_transfer(consult, tapir_tests::numbers::ANSWERS_AT_ONCE)
                .await
                .unwrap(),
            _ => {
                alice.park(consult, ParkMode::NonDirected).await.unwrap();
            }
        }
        assert_eq!(
            alice.call_status(consult).unwrap().state,
            CallState::Idle,
            "{away}"
        );
        assert_eq!(
            alice.call_status(original).unwrap().state.kind(),
            K::Connected,
            "after {away} the original is back"
        );
        alice.deallocate(consult).unwrap();
        others.drop_call(c).await.unwrap();
        others.deallocate(c).unwrap();
    }
    alice.drop_call(original).await.unwrap();
    tapir_tests::close_all(&pbx, [alice, others]).await;
}

#[tokio::test(start_paused = true)]
async fn swap_hold_is_listed_only_for_the_pairs_the_switch_swaps() {
    let pbx = pbx().await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (others, _) = pbx
        .app(
            "others",
            &[("200", OpenOptions::owner()), ("300", OpenOptions::owner())],
        )
        .await;
    let mut wo = Watcher::new(&others);
    let swaps = |h| {
        alice
            .call_status(h)
            .unwrap()
            .features
            .contains(CallOperation::SwapHold)
    };
    let original = alice.make_call(l[0], Some("200")).await.unwrap();
    let b = wo.new_call().await;
    others.answer(b).await.unwrap();

    // A consultation call in dial tone with its original held pending the transfer: this switch
    // swaps neither, so neither lists it — and asking anyway is refused, changing nothing.
    let consult = alice.setup_transfer(original).await.unwrap();
    assert!(!swaps(consult) && !swaps(original));
    assert!(alice.swap_hold(consult, original).await.is_err());
    alice.dial(consult, "300").await.unwrap();
    let c = wo.new_call().await;
    others.answer(c).await.unwrap();
    assert!(
        !swaps(consult),
        "a connected call does not swap with one pending transfer here"
    );
    alice.drop_call(consult).await.unwrap();
    alice.deallocate(consult).unwrap();
    wo.state(c, K::Disconnected).await;
    others.drop_call(c).await.unwrap();
    others.deallocate(c).unwrap();

    // A connected call and a hard-held one: listed on both, and carried out.
    alice.hold(original).await.unwrap();
    let second = alice.make_call(l[0], Some("300")).await.unwrap();
    let c2 = wo.new_call().await;
    others.answer(c2).await.unwrap();
    assert!(swaps(second) && swaps(original));
    alice.swap_hold(second, original).await.unwrap();
    assert_eq!(alice.call_status(second).unwrap().state, CallState::OnHold);
    assert_eq!(
        alice.call_status(original).unwrap().state.kind(),
        K::Connected
    );
    for h in [original, second] {
        alice.drop_call(h).await.unwrap();
    }
    wo.drain();
    for h in [b, c2] {
        let _ = others.drop_call(h).await;
    }
    tapir_tests::close_all(&pbx, [alice, others]).await;
}

#[tokio::test(start_paused = true)]
async fn a_transfer_or_conference_is_not_listed_when_both_appearances_are_taken() {
    let pbx = pbx().await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (others, _) = pbx
        .app(
            "others",
            &[("200", OpenOptions::owner()), ("300", OpenOptions::owner())],
        )
        .await;
    let mut wo = Watcher::new(&others);
    let lists = |h, op| alice.call_status(h).unwrap().features.contains(op);
    let first = alice.make_call(l[0], Some("200")).await.unwrap();
    let b = wo.new_call().await;
    others.answer(b).await.unwrap();
    assert!(lists(first, CallOperation::SetupTransfer));
    alice.hold(first).await.unwrap();
    let second = alice.make_call(l[0], Some("300")).await.unwrap();
    let c = wo.new_call().await;
    others.answer(c).await.unwrap();

    // The extension's two appearances hold a held call and a connected one: no room for a
    // consultation call, so none of the operations that make one is listed, or let through.
    for op in [CallOperation::SetupTransfer, CallOperation::SetupConference] {
        assert!(
            !lists(second, op),
            "{op} listed with both appearances taken"
        );
    }
    assert_eq!(
        alice.setup_transfer(second).await,
        Err(Error::CallUnavailable)
    );
    assert_eq!(
        alice.call_status(second).unwrap().state.kind(),
        K::Connected
    );
    // One call gone, the room is back.
    alice.drop_call(first).await.unwrap();
    assert!(lists(second, CallOperation::SetupTransfer));
    alice.drop_call(second).await.unwrap();
    wo.drain();
    for h in [b, c] {
        let _ = others.drop_call(h).await;
    }
    tapir_tests::close_all(&pbx, [alice, others]).await;
}

/// Completing a transfer is listed on the waiting original, and on its consultation call, only while the
/// consultation call can take it (ringing back, proceeding or connected — the simulated PBX does not
/// transfer to a busy party); refused, "not now" names the consultation call's state. The consultation
/// call can be held while the original waits, and a held one is not transferred to.
#[tokio::test(start_paused = true)]
async fn complete_transfer_is_listed_only_while_the_consultation_call_can_take_it() {
    let pbx = pbx().await;
    let (alice, bob, carol, _wa, mut wb, mut wc, _a, b) = alice_talks_to_bob(&pbx).await;
    let complete = CallOperation::CompleteTransfer;
    let listed = |call| bob.call_status(call).unwrap().features.contains(complete);
    let transfer = tapir::core::params::TransferMode::Transfer;

    let consult = bob.setup_transfer(b).await.unwrap();
    assert!(
        !listed(b),
        "listed while the consultation call has dial tone"
    );
    assert_eq!(
        bob.complete_transfer(b, consult, transfer).await,
        Err(Error::InvalidCallState { state: K::DialTone })
    );
    bob.dial(consult, numbers::BUSY).await.unwrap();
    wb.state(consult, K::Busy).await;
    assert!(!listed(b) && !listed(consult), "listed to a busy party");
    assert_eq!(
        bob.complete_transfer(b, consult, transfer).await,
        Err(Error::InvalidCallState { state: K::Busy })
    );
    bob.drop_call(consult).await.unwrap();

    let consult = bob.setup_transfer(b).await.unwrap();
    bob.dial(consult, "300").await.unwrap();
    let c = wc.new_call().await;
    assert!(
        listed(b) && listed(consult),
        "not listed while it rings back"
    );
    carol.answer(c).await.unwrap();
    wb.state(consult, K::Connected).await;
    let hold = CallOperation::Hold;
    assert!(bob.call_status(consult).unwrap().features.contains(hold));
    bob.hold(consult).await.unwrap();
    assert!(!listed(b), "listed with the consultation call on hold");
    bob.unhold(consult).await.unwrap();
    assert!(listed(b));
    bob.complete_transfer(b, consult, transfer).await.unwrap();
    assert_eq!(bob.call_status(b).unwrap().state, CallState::Idle);
    tapir_tests::close_all(&pbx, [alice, bob, carol]).await;
}
