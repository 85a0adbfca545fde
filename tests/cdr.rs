//! Call detail records of every call shape, against the simulated PBX under a paused clock: durations
//! are exact, dispositions and reasons are right, and transfer, conference, park and pickup chains are
//! linked by call IDs.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use tapir::core::cdr::{CallDetailRecord, Disposition};
use tapir::core::dial::DialString;
use tapir::core::info::{CallOrigin, CallReason};
use tapir::core::params::{ForwardCondition, Forwarding, ParkMode, PickupTarget, TransferMode};
use tapir::core::state::{CallStateKind as K, DisconnectReason};
use tapir::{CallId, OpenOptions};
use tapir_cdr::{MemoryStore, Recorder, RecorderOptions};
use tapir_simswitch::{CallerId, RingIn};
use tapir_tests::{Desk, Pbx, close_all, numbers, pbx_built};

const S: fn(u64) -> Duration = Duration::from_secs;

struct Office {
    pbx: Pbx,
    store: Arc<MemoryStore>,
    recorder: Recorder,
}

async fn office() -> Office {
    let store = Arc::new(MemoryStore::new());
    let recorder = Recorder::start(store.clone(), RecorderOptions::default());
    let sink = Arc::new(recorder.clone());
    let pbx = pbx_built(tapir_tests::office(&["701"]), |b| b.cdr_sink(sink)).await;
    Office {
        pbx,
        store,
        recorder,
    }
}

impl Office {
    async fn desk(&self, app: &str, ext: &str) -> Desk {
        self.pbx.desk(app, ext).await
    }

    /// Every record written so far, in the order the calls ended.
    async fn records(&self) -> Vec<CallDetailRecord> {
        self.recorder.flush().await.unwrap();
        self.store.all().into_iter().map(|r| r.record).collect()
    }

    /// The records of extension `ext`'s line.
    async fn on(&self, ext: &str) -> Vec<CallDetailRecord> {
        let line = self.pbx.line(ext);
        self.records()
            .await
            .into_iter()
            .filter(|r| r.line == line)
            .collect()
    }

    async fn close(self, desks: Vec<Desk>) {
        close_all(&self.pbx, desks.into_iter().map(|d| d.session)).await;
    }
}

fn only(records: Vec<CallDetailRecord>) -> CallDetailRecord {
    assert_eq!(records.len(), 1, "{records:#?}");
    records.into_iter().next().unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_answered_call_has_exact_durations_on_both_lines() {
    let o = office().await;
    let (alice, mut bob) = (o.desk("alice", "100").await, o.desk("bob", "200").await);
    let a = alice
        .session
        .make_call(alice.line, Some("200"))
        .await
        .unwrap();
    let b = bob.w.new_call().await;
    tokio::time::sleep(S(12)).await;
    bob.session.answer(b).await.unwrap();
    tokio::time::sleep(S(30)).await;
    alice.session.hold(a).await.unwrap();
    tokio::time::sleep(S(10)).await;
    alice.session.unhold(a).await.unwrap();
    tokio::time::sleep(S(20)).await;
    alice.session.drop_call(a).await.unwrap();
    bob.w.state(b, K::Disconnected).await;
    tokio::time::sleep(S(2)).await;
    bob.session.drop_call(b).await.unwrap();

    let ra = only(o.on("100").await);
    let rb = only(o.on("200").await);
    assert_eq!(
        ra.call_id, rb.call_id,
        "both legs carry the switch's call ID"
    );
    assert_eq!(ra.call_id, alice.session.call_info(a).unwrap().call_id());
    assert_eq!(
        (ra.origin, rb.origin),
        (CallOrigin::Outbound, CallOrigin::Internal)
    );
    assert_eq!(
        (ra.reason, rb.reason),
        (CallReason::Direct, CallReason::Direct)
    );
    assert_eq!(
        (ra.disposition, rb.disposition),
        (Disposition::Answered, Disposition::Answered)
    );
    assert_eq!(ra.caller.number.as_deref(), Some("100"));
    assert_eq!(ra.called.number.as_deref(), Some("200"));
    assert_eq!(ra.connected.number.as_deref(), Some("200"));
    assert_eq!(rb.caller.name.as_deref(), Some("Alice"));
    // Alice: rang 12 s, held 10 s of the 60 s after the answer.
    assert_eq!((ra.ringing, ra.talking, ra.on_hold), (S(12), S(50), S(10)));
    assert_eq!(ra.ended.duration_since(ra.started).unwrap(), S(72));
    assert_eq!(
        ra.answered.unwrap().duration_since(ra.started).unwrap(),
        S(12)
    );
    assert_eq!(
        ra.disconnect, None,
        "Alice hung up: her call went idle directly"
    );
    // Bob: the call ended for him when Alice hung up, not when he put the handset down 2 s later.
    assert_eq!((rb.ringing, rb.talking, rb.on_hold), (S(12), S(60), S(0)));
    assert_eq!(rb.disconnect, Some(DisconnectReason::Normal));
    assert_eq!(
        (ra.owners.clone(), rb.owners.clone()),
        (vec!["alice".to_string()], vec!["bob".to_string()])
    );
    assert_eq!(ra.line_name, "Extension 100 (Alice)");
    o.close(vec![alice, bob]).await;
}

#[tokio::test(start_paused = true)]
async fn busy_no_answer_rejected_and_failed_calls() {
    let o = office().await;
    let (mut alice, mut bob) = (o.desk("alice", "100").await, o.desk("bob", "200").await);

    let c = alice
        .session
        .make_call(alice.line, Some(numbers::BUSY))
        .await
        .unwrap();
    alice.w.state(c, K::Busy).await;
    alice.session.drop_call(c).await.unwrap();
    alice.session.deallocate(c).unwrap();
    let busy = only(o.on("100").await);
    assert_eq!(busy.disposition, Disposition::Busy);
    assert_eq!((busy.talking, busy.answered), (S(0), None));

    // Outside: the switch gives up after its 30 s no-answer timeout.
    let c = alice
        .session
        .make_call(alice.line, Some(numbers::NO_ANSWER))
        .await
        .unwrap();
    alice.w.state(c, K::Disconnected).await;
    alice.session.drop_call(c).await.unwrap();
    alice.session.deallocate(c).unwrap();
    let r = o.on("100").await.pop().unwrap();
    assert_eq!(
        (r.disposition, r.disconnect),
        (Disposition::NoAnswer, Some(DisconnectReason::NoAnswer))
    );
    assert_eq!(r.ringing, S(30));

    // Inside: Bob lets it ring; Alice gives up after 8 s.
    let c = alice
        .session
        .make_call(alice.line, Some("200"))
        .await
        .unwrap();
    let b = bob.w.new_call().await;
    tokio::time::sleep(S(8)).await;
    alice.session.drop_call(c).await.unwrap();
    alice.session.deallocate(c).unwrap();
    bob.w.state(b, K::Idle).await;
    bob.session.deallocate(b).unwrap();
    let (ra, rb) = (o.on("100").await.pop().unwrap(), only(o.on("200").await));
    assert_eq!(
        (ra.disposition, rb.disposition),
        (Disposition::NoAnswer, Disposition::NoAnswer)
    );
    assert_eq!((ra.ringing, rb.ringing), (S(8), S(8)));

    // Bob rejects: his record says rejected; Alice's says she was refused.
    let c = alice
        .session
        .make_call(alice.line, Some("200"))
        .await
        .unwrap();
    let b = bob.w.new_call().await;
    bob.session.reject(b).await.unwrap();
    bob.session.deallocate(b).unwrap();
    alice.w.state(c, K::Disconnected).await;
    alice.session.drop_call(c).await.unwrap();
    alice.session.deallocate(c).unwrap();
    assert_eq!(
        o.on("200").await.pop().unwrap().disposition,
        Disposition::Rejected
    );
    let ra = o.on("100").await.pop().unwrap();
    assert_eq!(ra.disposition, Disposition::Rejected, "{ra:?}");

    let c = alice
        .session
        .make_call(alice.line, Some(numbers::UNREACHABLE))
        .await
        .unwrap();
    alice.w.state(c, K::Disconnected).await;
    alice.session.drop_call(c).await.unwrap();
    alice.session.deallocate(c).unwrap();
    assert_eq!(
        o.on("100").await.pop().unwrap().disposition,
        Disposition::Failed
    );
    o.close(vec![alice, bob]).await;
}

/// An outside caller rings Alice, who answers after `after`.
async fn outside_call_to(
    o: &Office,
    desk: &mut Desk,
    after: Duration,
) -> (tapir::CallHandle, CallId) {
    o.pbx
        .switch
        .ring_in(RingIn::new(
            o.pbx.switch.extensions()[0].number.clone(),
            CallerId::Number {
                number: "+15550123".into(),
                name: Some("Erin".into()),
            },
        ))
        .unwrap();
    let c = desk.w.new_call().await;
    tokio::time::sleep(after).await;
    desk.session.answer(c).await.unwrap();
    let id = desk.session.call_info(c).unwrap().call_id();
    (c, id)
}

#[tokio::test(start_paused = true)]
async fn a_blind_transfer_links_the_two_lines_records() {
    let o = office().await;
    let (mut alice, mut bob) = (o.desk("alice", "100").await, o.desk("bob", "200").await);
    let (a, id) = outside_call_to(&o, &mut alice, S(6)).await;
    tokio::time::sleep(S(20)).await;
    alice.session.blind_transfer(a, "200").await.unwrap();
    alice.session.deallocate(a).unwrap();
    let b = bob.w.new_call().await;
    tokio::time::sleep(S(6)).await;
    bob.session.answer(b).await.unwrap();
    tokio::time::sleep(S(40)).await;
    bob.session.drop_call(b).await.unwrap();

    let ra = only(o.on("100").await);
    assert_eq!(
        (ra.disposition, ra.origin),
        (Disposition::Transferred, CallOrigin::External)
    );
    assert_eq!((ra.ringing, ra.talking), (S(6), S(20)));
    assert_eq!(ra.caller.number.as_deref(), Some("+15550123"));
    let rb = only(o.on("200").await);
    assert_eq!(
        (rb.reason, rb.disposition),
        (CallReason::Transfer, Disposition::Answered)
    );
    assert_eq!((rb.ringing, rb.talking), (S(6), S(40)));
    assert_eq!(
        rb.caller.number.as_deref(),
        Some("+15550123"),
        "Bob sees who is calling"
    );
    assert_eq!(
        rb.redirecting.number.as_deref(),
        Some("100"),
        "and who sent it"
    );
    assert!(
        rb.call_id == id || rb.related_call_ids.contains(&id),
        "the chain is linked: {id:?} vs {rb:?}"
    );
    o.close(vec![alice, bob]).await;
}

#[tokio::test(start_paused = true)]
async fn a_consultation_transfer_links_original_and_consultation() {
    let o = office().await;
    let (mut alice, mut bob) = (o.desk("alice", "100").await, o.desk("bob", "200").await);
    let (a, original) = outside_call_to(&o, &mut alice, S(0)).await;
    tokio::time::sleep(S(10)).await;
    let consult = alice.session.setup_transfer(a).await.unwrap();
    let consult_id = alice.session.call_info(consult).unwrap().call_id();
    alice.session.dial(consult, "200").await.unwrap();
    let b = bob.w.new_call().await;
    tokio::time::sleep(S(6)).await;
    bob.session.answer(b).await.unwrap();
    tokio::time::sleep(S(15)).await;
    alice
        .session
        .complete_transfer(a, consult, TransferMode::Transfer)
        .await
        .unwrap();
    for c in [a, consult] {
        alice.session.deallocate(c).unwrap();
    }
    tokio::time::sleep(S(30)).await;
    bob.session.drop_call(b).await.unwrap();

    let mut ra = o.on("100").await;
    ra.sort_by_key(|r| r.call_id);
    assert_eq!(ra.len(), 2, "{ra:#?}");
    let (held, consultation) = (&ra[0], &ra[1]);
    assert_eq!((held.call_id, consultation.call_id), (original, consult_id));
    assert_eq!(held.disposition, Disposition::Transferred);
    assert_eq!(consultation.disposition, Disposition::Transferred);
    assert_eq!(
        held.related_call_ids,
        vec![consult_id],
        "each names the other"
    );
    assert_eq!(consultation.related_call_ids, vec![original]);
    // The original was talked on for 10 s, then held for the 21 s of the consultation.
    assert_eq!((held.talking, held.on_hold), (S(10), S(21)));
    assert_eq!((consultation.ringing, consultation.talking), (S(6), S(15)));
    let rb = only(o.on("200").await);
    assert_eq!(rb.call_id, consult_id);
    assert_eq!(rb.talking, S(45), "Bob talked to Alice, then to the caller");
    assert_eq!(
        rb.connected.number.as_deref(),
        Some("+15550123"),
        "and ended connected to the caller"
    );
    o.close(vec![alice, bob]).await;
}

#[tokio::test(start_paused = true)]
async fn a_conference_links_its_parties_to_the_conference_call() {
    let o = office().await;
    let (mut alice, mut bob, mut carol) = (
        o.desk("alice", "100").await,
        o.desk("bob", "200").await,
        o.desk("carol", "300").await,
    );
    let first = alice
        .session
        .make_call(alice.line, Some("200"))
        .await
        .unwrap();
    let b = bob.w.new_call().await;
    bob.session.answer(b).await.unwrap();
    let (conf, consult) = alice.session.setup_conference(first).await.unwrap();
    alice.session.dial(consult, "300").await.unwrap();
    let c = carol.w.new_call().await;
    carol.session.answer(c).await.unwrap();
    alice
        .session
        .add_to_conference(conf, consult)
        .await
        .unwrap();
    tokio::time::sleep(S(60)).await;
    alice.session.drop_call(conf).await.unwrap();
    for h in [first, consult, conf] {
        alice.w.state(h, K::Idle).await;
        alice.session.deallocate(h).unwrap();
    }
    for d in [&mut bob, &mut carol] {
        let h = d.session.calls()[0];
        d.w.state(h, K::Disconnected).await;
        d.session.drop_call(h).await.unwrap();
    }

    let conf_id = alice.session.call_info(conf).map(|i| i.call_id()).ok();
    let ra = o.on("100").await;
    assert_eq!(ra.len(), 3, "{ra:#?}");
    let parent = ra
        .iter()
        .find(|r| r.origin == CallOrigin::Conference)
        .unwrap();
    assert!(conf_id.is_none() || conf_id == Some(parent.call_id));
    for party in ra.iter().filter(|r| r.origin != CallOrigin::Conference) {
        assert!(
            party.related_call_ids.contains(&parent.call_id),
            "{party:?}"
        );
        assert_eq!(party.disposition, Disposition::Answered);
    }
    assert_eq!(parent.disposition, Disposition::Answered);
    assert_eq!(parent.talking, S(60));
    o.close(vec![alice, bob, carol]).await;
}

#[tokio::test(start_paused = true)]
async fn a_parked_call_that_times_out_comes_back_as_a_reminder_with_its_call_id() {
    let o = office().await;
    let (mut alice, mut bob) = (o.desk("alice", "100").await, o.desk("bob", "200").await);
    let a = alice
        .session
        .make_call(alice.line, Some("200"))
        .await
        .unwrap();
    let b = bob.w.new_call().await;
    bob.session.answer(b).await.unwrap();
    let id = bob.session.call_info(b).unwrap().call_id();
    tokio::time::sleep(S(5)).await;
    bob.session.park(b, ParkMode::NonDirected).await.unwrap();
    bob.session.deallocate(b).unwrap();
    // Nobody retrieves it: after the 60 s park timeout it rings Bob again.
    let recall = bob.w.new_call().await;
    tokio::time::sleep(S(6)).await;
    bob.session.answer(recall).await.unwrap();
    tokio::time::sleep(S(10)).await;
    bob.session.drop_call(recall).await.unwrap();
    alice.w.state(a, K::Disconnected).await;
    alice.session.drop_call(a).await.unwrap();

    let rb = o.on("200").await;
    assert_eq!(rb.len(), 2, "{rb:#?}");
    assert_eq!(
        (rb[0].disposition, rb[0].talking),
        (Disposition::Parked, S(5))
    );
    assert_eq!(
        (rb[1].reason, rb[1].disposition),
        (CallReason::Reminder, Disposition::Answered)
    );
    assert_eq!((rb[1].ringing, rb[1].talking), (S(6), S(10)));
    assert_eq!(
        (rb[0].call_id, rb[1].call_id),
        (id, id),
        "one call ID through park and recall"
    );
    let ra = only(o.on("100").await);
    assert_eq!((ra.call_id, ra.disposition), (id, Disposition::Answered));
    assert_eq!(
        ra.talking,
        S(5 + 60 + 6 + 10),
        "Alice waited on the line the whole time"
    );
    o.close(vec![alice, bob]).await;
}

#[tokio::test(start_paused = true)]
async fn a_pickup_ends_the_ringing_leg_and_starts_one_at_the_picker() {
    let o = office().await;
    let (mut alice, mut bob, carol) = (
        o.desk("alice", "100").await,
        o.desk("bob", "200").await,
        o.desk("carol", "300").await,
    );
    let a = alice
        .session
        .make_call(alice.line, Some("200"))
        .await
        .unwrap();
    let b = bob.w.new_call().await;
    tokio::time::sleep(S(4)).await;
    let c = carol
        .session
        .pickup(carol.line, PickupTarget::Group("sales".into()))
        .await
        .unwrap();
    bob.w.state(b, K::Idle).await;
    bob.session.deallocate(b).unwrap();
    tokio::time::sleep(S(25)).await;
    carol.session.drop_call(c).await.unwrap();
    alice.w.state(a, K::Disconnected).await;
    alice.session.drop_call(a).await.unwrap();

    let rb = only(o.on("200").await);
    assert_eq!(
        (rb.disposition, rb.ringing),
        (Disposition::PickedUpElsewhere, S(4))
    );
    let rc = only(o.on("300").await);
    assert_eq!(
        (rc.reason, rc.disposition),
        (CallReason::Pickup, Disposition::Answered)
    );
    assert_eq!((rc.ringing, rc.talking), (S(0), S(25)));
    assert_eq!(
        rc.call_id, rb.call_id,
        "the picked-up call keeps its call ID"
    );
    assert_eq!(rc.caller.number.as_deref(), Some("100"));
    o.close(vec![alice, bob, carol]).await;
}

#[tokio::test(start_paused = true)]
async fn forwarded_calls_name_who_forwarded_them() {
    let o = office().await;
    let (mut alice, bob, mut carol) = (
        o.desk("alice", "100").await,
        o.desk("bob", "200").await,
        o.desk("carol", "300").await,
    );
    let rule = |condition| Forwarding {
        do_not_disturb: false,
        rules: vec![(condition, DialString::parse("300").unwrap())],
    };
    bob.session
        .forward(bob.line, rule(ForwardCondition::Unconditional))
        .await
        .unwrap();
    let a = alice
        .session
        .make_call(alice.line, Some("200"))
        .await
        .unwrap();
    let c = carol.w.new_call().await;
    carol.session.answer(c).await.unwrap();
    tokio::time::sleep(S(9)).await;
    carol.session.drop_call(c).await.unwrap();
    carol.session.deallocate(c).unwrap();
    alice.w.state(a, K::Disconnected).await;
    alice.session.drop_call(a).await.unwrap();
    alice.session.deallocate(a).unwrap();
    assert!(
        o.on("200").await.is_empty(),
        "unconditional: Bob's line never saw the call"
    );
    let rc = only(o.on("300").await);
    assert_eq!(rc.reason, CallReason::ForwardUnconditional);
    assert_eq!(rc.redirecting.number.as_deref(), Some("200"));
    assert_eq!((rc.disposition, rc.talking), (Disposition::Answered, S(9)));

    // On no answer: Bob's line rings twice, then the call moves on and his record says so.
    bob.session
        .forward(bob.line, rule(ForwardCondition::NoAnswer { rings: 2 }))
        .await
        .unwrap();
    let a = alice
        .session
        .make_call(alice.line, Some("200"))
        .await
        .unwrap();
    let c = carol.w.new_call().await;
    carol.session.answer(c).await.unwrap();
    carol.session.drop_call(c).await.unwrap();
    carol.session.deallocate(c).unwrap();
    alice.w.state(a, K::Disconnected).await;
    alice.session.drop_call(a).await.unwrap();
    let rb = only(o.on("200").await);
    assert_eq!(rb.disposition, Disposition::Forwarded);
    assert_eq!(rb.disconnect, Some(DisconnectReason::Forwarded));
    let rc = o.on("300").await.pop().unwrap();
    assert_eq!(rc.reason, CallReason::ForwardNoAnswer);
    assert_eq!(
        rc.call_id, rb.call_id,
        "the forwarded call keeps its call ID"
    );
    o.close(vec![alice, bob, carol]).await;
}

#[tokio::test(start_paused = true)]
async fn a_handoff_names_the_new_owner_too() {
    let o = office().await;
    let (mut alice, bob) = (o.desk("alice", "100").await, o.desk("bob", "200").await);
    let (crm, _) = o.pbx.app("crm", &[("100", OpenOptions::monitor())]).await;
    let a = alice
        .session
        .make_call(alice.line, Some(numbers::ANSWERS))
        .await
        .unwrap();
    alice.w.state(a, K::Connected).await;
    alice.session.handoff(a, "crm").unwrap();
    alice.session.drop_call(a).await.unwrap();
    let r = only(o.on("100").await);
    assert_eq!(r.owners, vec!["alice".to_string(), "crm".to_string()]);
    assert_eq!(r.connected.name.as_deref(), Some("Dave"));
    crm.logoff().await;
    o.close(vec![alice, bob]).await;
}

#[tokio::test(start_paused = true)]
async fn a_redirect_and_an_unpark_say_so() {
    let o = office().await;
    let (mut alice, mut bob, mut carol) = (
        o.desk("alice", "100").await,
        o.desk("bob", "200").await,
        o.desk("carol", "300").await,
    );
    // Bob deflects Alice's call to Carol before answering.
    let a = alice
        .session
        .make_call(alice.line, Some("200"))
        .await
        .unwrap();
    let b = bob.w.new_call().await;
    tokio::time::sleep(S(3)).await;
    bob.session.redirect(b, "300").await.unwrap();
    bob.session.deallocate(b).unwrap();
    let c = carol.w.new_call().await;
    carol.session.answer(c).await.unwrap();
    // Carol parks it; Bob takes it back from the orbit 7 s later and talks for 20 s.
    let orbit = carol.session.park(c, ParkMode::NonDirected).await.unwrap();
    carol.session.deallocate(c).unwrap();
    tokio::time::sleep(S(7)).await;
    let u = bob.session.unpark(bob.line, &orbit).await.unwrap();
    tokio::time::sleep(S(20)).await;
    bob.session.drop_call(u).await.unwrap();
    alice.w.state(a, K::Disconnected).await;
    alice.session.drop_call(a).await.unwrap();

    let rb = o.on("200").await;
    assert_eq!(rb.len(), 2, "{rb:#?}");
    assert_eq!(
        (rb[0].disposition, rb[0].ringing),
        (Disposition::Redirected, S(3))
    );
    assert_eq!(
        (rb[1].reason, rb[1].disposition),
        (CallReason::Unpark, Disposition::Answered)
    );
    assert_eq!(rb[1].talking, S(20));
    let rc = only(o.on("300").await);
    assert_eq!(
        (rc.reason, rc.disposition),
        (CallReason::Redirect, Disposition::Parked)
    );
    let ra = only(o.on("100").await);
    let ids = [ra.call_id, rb[0].call_id, rb[1].call_id, rc.call_id];
    assert!(
        ids.iter().all(|id| *id == ra.call_id),
        "one call ID all the way: {ids:?}"
    );
    o.close(vec![alice, bob, carol]).await;
}
