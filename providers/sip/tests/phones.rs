//! The SIP provider with test phones where timing matters more than sipp can script: a phone's
//! requests back to back, with nothing in between.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::phone::{Answering, Phone};
use common::*;
use tapir_core::state::CallStateKind;
use tapir_core::{LineId, ProviderId};
use tapir_provider::{EventLog, EventSink, Provider};
use tapir_sip::{SipLine, SipProvider, SipSettings};

/// A phone that holds and resumes with no pause at all (its second re-INVITE leaves right behind
/// the first one's ACK) is answered both times, again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_re_invites_from_a_phone_are_all_answered() {
    log();
    let (alice, bob) = (
        Phone::new(free_port(), Answering::Auto).await,
        Phone::new(free_port(), Answering::Auto).await,
    );
    let tapir = free_port();
    let settings = SipSettings::new(addr(tapir))
        .line(SipLine::fixed(
            "2001",
            "Alice",
            format!("sip:127.0.0.1:{}", alice.port()),
        ))
        .line(SipLine::fixed(
            "2002",
            "Bob",
            format!("sip:127.0.0.1:{}", bob.port()),
        ));
    let provider = SipProvider::new(settings).unwrap();
    let log = Arc::new(EventLog::default());
    provider
        .start(EventSink::new(ProviderId(0), log.clone()))
        .await
        .unwrap();
    let call = alice.dial(addr(tapir), "2001", "", "2002").await;
    alice
        .wait(10, "the call", |s| {
            (*s == common::phone::Seen::Established(call)).then_some(())
        })
        .await;
    for round in 0..20 {
        let held = alice.hold(call, "sendonly").await;
        let resumed = alice.hold(call, "sendrecv").await;
        assert_eq!((held, resumed), (200, 200), "round {round}");
    }
    let leg = log
        .new_calls()
        .into_iter()
        .find(|c| c.line == LineId(0))
        .unwrap()
        .leg;
    assert_eq!(
        log.states_of(leg).last().map(|s| s.kind()),
        Some(CallStateKind::Connected)
    );
    // Alice hangs up: Bob's leg is disconnected and waits to be dropped; then nothing is left.
    alice.hang_up(call).await;
    let bob_leg = log
        .new_calls()
        .into_iter()
        .find(|c| c.line == LineId(1))
        .unwrap()
        .leg;
    let l = log.clone();
    until(10, "Bob's leg disconnected", move || {
        l.states_of(bob_leg).last().map(|s| s.kind()) == Some(CallStateKind::Disconnected)
    })
    .await;
    provider.drop_call(bob_leg).await.unwrap();
    assert_quiet(&provider).await;
    provider.stop().await;
}
