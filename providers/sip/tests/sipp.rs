//! The SIP provider against sipp: registration with digest, and each race from the field as a
//! scripted scenario (`tests/scenarios/`). A sipp end exits 0 only when everything it expected came,
//! in order, and nothing else did.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::phone::{Answering, Phone};
use common::*;
use tapir_core::info::CallReason;
use tapir_core::state::{CallState, CallStateKind, DisconnectReason};
use tapir_core::{CallLegId, Error, LineId, ProviderId};
use tapir_provider::{EventLog, EventSink, LineEvent, Provider, ProviderEvent};
use tapir_sip::{SipLine, SipProvider, SipSettings};

fn scenario(name: &str) -> String {
    format!("{}/tests/scenarios/{name}.xml", env!("CARGO_MANIFEST_DIR"))
}

/// tapir with a fixed-contact line 2009 (whose device is a sipp UAS), and a trunk (a sipp UAC).
struct Rig {
    provider: SipProvider,
    log: Arc<EventLog>,
    dir: Scratch,
    tapir: u16,
    device: u16,
    trunk: u16,
}

impl Rig {
    async fn new(name: &str, settings: impl FnOnce(SipSettings) -> SipSettings) -> Self {
        log();
        let (tapir, device, trunk) = (free_port(), free_port(), free_port());
        let base = SipSettings::new(addr(tapir))
            .line(SipLine::fixed(
                "2009",
                "Lobby",
                format!("sip:127.0.0.1:{device}"),
            ))
            .trunk(format!("sip:127.0.0.1:{trunk}"));
        let provider = SipProvider::new(settings(base)).unwrap();
        let log = Arc::new(EventLog::default());
        provider
            .start(EventSink::new(ProviderId(0), log.clone()))
            .await
            .unwrap();
        Self {
            provider,
            log,
            dir: Scratch::new(name),
            tapir,
            device,
            trunk,
        }
    }

    /// The line's device runs `scenario` (one call).
    async fn device(&self, name: &str) -> Sipp {
        let p = Sipp::spawn(
            &self.dir,
            &[
                "-sf",
                &scenario(name),
                "-i",
                "127.0.0.1",
                "-p",
                &self.device.to_string(),
                "-bind_local",
                "-m",
                "1",
                "-trace_msg",
            ],
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        p
    }

    /// The trunk calls 2009 with `args` (a built-in `-sn uac`, or `-sf` a scenario).
    fn caller(&self, args: &[&str]) -> Sipp {
        let target = format!("127.0.0.1:{}", self.tapir);
        let trunk = self.trunk.to_string();
        let mut all = vec![
            target.as_str(),
            "-s",
            "2009",
            "-i",
            "127.0.0.1",
            "-p",
            &trunk,
            "-bind_local",
            "-m",
            "1",
        ];
        all.extend_from_slice(args);
        Sipp::spawn(&self.dir, &all)
    }

    fn leg_on(&self, line: u32) -> CallLegId {
        self.log
            .new_calls()
            .iter()
            .rev()
            .find(|c| c.line == LineId(line))
            .map(|c| c.leg)
            .unwrap_or_else(|| panic!("no call on line {line}"))
    }

    async fn wait_leg(&self, line: u32, secs: u64) -> CallLegId {
        let log = self.log.clone();
        until(secs, "a call on the line", move || {
            log.new_calls().iter().any(|c| c.line == LineId(line))
        })
        .await;
        self.leg_on(line)
    }

    async fn wait_state(&self, leg: CallLegId, kind: CallStateKind, secs: u64) {
        let log = self.log.clone();
        until(secs, &format!("{leg} to be {kind:?}"), move || {
            log.states_of(leg).last().map(|s| s.kind()) == Some(kind)
        })
        .await;
    }

    /// Ends `leg` if it still is there, and checks that nothing is left.
    async fn finish(self, leg: CallLegId) {
        if self.log.states_of(leg).last().is_some_and(|s| !s.is_idle()) {
            let _ = self.provider.drop_call(leg).await;
        }
        assert_quiet(&self.provider).await;
        self.provider.stop().await;
    }
}

fn kinds(log: &EventLog, leg: CallLegId) -> Vec<CallStateKind> {
    log.states_of(leg).iter().map(|s| s.kind()).collect()
}

use CallStateKind::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_call_reaches_a_fixed_line_and_ends() {
    if !peer("sipp") {
        return;
    }
    let rig = Rig::new("trunk-call", |s| s).await;
    let mut device = Sipp::spawn(
        &rig.dir,
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &rig.device.to_string(),
            "-bind_local",
            "-m",
            "1",
        ],
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut caller = rig.caller(&["-sn", "uac"]);
    let rcs = (caller.finish(20).await, device.finish(20).await);
    assert_eq!(rcs, (0, 0), "{}", rig.dir.logs());
    let leg = rig.leg_on(0);
    assert_eq!(
        kinds(&rig.log, leg),
        vec![Offering, Connected, Disconnected]
    );
    assert_eq!(
        rig.log.states_of(leg).last(),
        Some(&CallState::Disconnected(DisconnectReason::Normal))
    );
    rig.finish(leg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_180_after_the_200_never_reaches_the_caller() {
    if !peer("sipp") {
        return;
    }
    let rig = Rig::new("late-180", |s| s).await;
    let mut device = rig.device("phone_200_then_180").await;
    // sipp's own uac fails the call if a 180 follows the 200.
    let mut caller = rig.caller(&["-sn", "uac"]);
    let rcs = (caller.finish(20).await, device.finish(20).await);
    assert_eq!(rcs, (0, 0), "{}", rig.dir.logs());
    let leg = rig.leg_on(0);
    assert!(!kinds(&rig.log, leg).contains(&Ringback));
    rig.finish(leg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_retransmitted_200_is_acknowledged() {
    if !peer("sipp") {
        return;
    }
    let rig = Rig::new("retransmitted-200", |s| s).await;
    let mut device = rig.device("phone_retransmits_200").await;
    let mut caller = rig.caller(&["-sn", "uac", "-d", "2000"]);
    let rcs = (caller.finish(20).await, device.finish(20).await);
    assert_eq!(rcs, (0, 0), "{}", rig.dir.logs());
    // The first 200 and its retransmission were each acknowledged.
    let acks = rig.dir.traced("ACK sip:");
    assert!(acks >= 2, "{acks} ACKs reached the phone");
    let leg = rig.leg_on(0);
    rig.finish(leg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_that_crosses_tapirs_cancel_is_acknowledged_and_then_ended() {
    if !peer("sipp") {
        return;
    }
    let rig = Rig::new("cancel-200", |s| s).await;
    let mut device = rig.device("phone_answers_a_cancelled_call").await;
    let mut caller = rig.caller(&["-sf", &scenario("caller_gives_up")]);
    // The device exits 0 only if its 200 was ACKed and then BYE'd.
    let rcs = (caller.finish(20).await, device.finish(20).await);
    assert_eq!(rcs, (0, 0), "{}", rig.dir.logs());
    let leg = rig.leg_on(0);
    assert_eq!(kinds(&rig.log, leg), vec![Offering, Disconnected, Idle]);
    rig.finish(leg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_that_meets_glare_is_offered_again_after_the_back_off() {
    if !peer("sipp") {
        return;
    }
    let rig = Rig::new("glare", |s| s).await;
    let mut device = rig.device("phone_glare_491").await;
    let mut caller = rig.caller(&["-sf", &scenario("caller_held_then_hung_up_on")]);
    let leg = rig.wait_leg(0, 10).await;
    rig.wait_state(leg, Connected, 10).await;
    let t0 = Instant::now();
    rig.provider.hold(leg).await.unwrap();
    // Completion means effect: the hold returned once the retried re-INVITE was answered, after
    // the owner-of-the-Call-ID back-off of 2.1 to 4 s.
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(2100), "{took:?}");
    assert_eq!(rig.log.states_of(leg).last(), Some(&CallState::OnHold));
    rig.provider.drop_call(leg).await.unwrap();
    let rcs = (caller.finish(20).await, device.finish(20).await);
    assert_eq!(rcs, (0, 0), "{}", rig.dir.logs());
    rig.finish(leg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_hold_fails_with_a_typed_error_and_the_call_stays_as_it_was() {
    if !peer("sipp") {
        return;
    }
    let rig = Rig::new("hold-488", |s| s).await;
    let mut device = rig.device("phone_answers_reinvites").await;
    let mut caller = rig.caller(&["-sf", &scenario("caller_refuses_hold")]);
    let leg = rig.wait_leg(0, 10).await;
    rig.wait_state(leg, Connected, 10).await;
    match rig.provider.hold(leg).await {
        Err(Error::OperationFailed { reason }) => assert!(reason.contains("488"), "{reason}"),
        other => panic!("hold answered {other:?}"),
    }
    assert_eq!(
        kinds(&rig.log, leg),
        vec![Offering, Connected],
        "never reported held"
    );
    // The phone, which had taken the hold, was taken back to sendrecv: its scenario saw both.
    rig.provider.drop_call(leg).await.unwrap();
    let rcs = (caller.finish(20).await, device.finish(20).await);
    assert_eq!(rcs, (0, 0), "{}", rig.dir.logs());
    rig.finish(leg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_that_forgets_its_call_ends_it_with_a_cause() {
    if !peer("sipp") {
        return;
    }
    let rig = Rig::new("vanished", |mut s| {
        s.timing.keepalive = Duration::from_secs(1);
        s
    })
    .await;
    let mut device = rig.device("phone_forgets_the_call").await;
    let mut caller = rig.caller(&["-sf", &scenario("caller_hung_up_on")]);
    let leg = rig.wait_leg(0, 10).await;
    rig.wait_state(leg, Idle, 15).await;
    // The caller was hung up on, and the phone's scenario saw the OPTIONS and the BYE.
    let rcs = (caller.finish(20).await, device.finish(20).await);
    assert_eq!(rcs, (0, 0), "{}", rig.dir.logs());
    assert_eq!(kinds(&rig.log, leg), vec![Offering, Connected, Idle]);
    rig.finish(leg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phones_refer_moves_its_caller_and_is_reported_as_a_transfer() {
    if !peer("sipp") {
        return;
    }
    let alice = Phone::new(free_port(), Answering::Auto).await;
    let port = alice.port();
    let rig = Rig::new("refer", |s| {
        s.line(SipLine::fixed(
            "2001",
            "Alice",
            format!("sip:127.0.0.1:{port}"),
        ))
    })
    .await;
    let mut device = rig.device("phone_refers").await;
    let mut caller = rig.caller(&["-sf", &scenario("caller_held_then_hung_up_on")]);
    let lobby = rig.wait_leg(0, 10).await;
    let moved = rig.wait_leg(1, 10).await;
    rig.wait_state(moved, Connected, 10).await;
    rig.wait_state(lobby, Idle, 10).await;
    let info = rig
        .log
        .new_calls()
        .into_iter()
        .find(|c| c.leg == moved)
        .unwrap()
        .info;
    assert_eq!(info.reason, CallReason::Transfer);
    assert_eq!(info.redirecting().number.as_deref(), Some("2009"));
    rig.provider.drop_call(moved).await.unwrap();
    let rcs = (caller.finish(20).await, device.finish(20).await);
    assert_eq!(rcs, (0, 0), "{}", rig.dir.logs());
    rig.finish(moved).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_registers_with_digest_and_unregisters() {
    if !peer("sipp") {
        return;
    }
    let rig = Rig::new("register", |s| {
        s.line(SipLine::registered("2001", "Alice", "alice-secret"))
    })
    .await;
    let phone = free_port().to_string();
    let target = format!("127.0.0.1:{}", rig.tapir);
    let run = |file: &str, password: &str| {
        Sipp::spawn(
            &rig.dir,
            &[
                &target,
                "-sf",
                &scenario(file),
                "-s",
                "2001",
                "-au",
                "2001",
                "-ap",
                password,
                "-i",
                "127.0.0.1",
                "-p",
                &phone,
                "-bind_local",
                "-m",
                "1",
            ],
        )
    };
    let contacts = |regs: Vec<tapir_sip::Registration>| {
        regs.into_iter()
            .find(|r| r.number == "2001")
            .map(|r| r.contacts.len())
    };
    // A wrong password binds nothing.
    assert_ne!(run("register", "guess").finish(15).await, 0);
    assert_eq!(contacts(rig.provider.registrations().await), Some(0));
    assert_eq!(run("register", "alice-secret").finish(15).await, 0);
    assert_eq!(contacts(rig.provider.registrations().await), Some(1));
    assert_eq!(run("unregister", "alice-secret").finish(15).await, 0);
    assert_eq!(contacts(rig.provider.registrations().await), Some(0));
    // The line went out of service (it had no phone), in, and out again.
    let service: Vec<bool> = rig
        .log
        .take()
        .into_iter()
        .filter_map(|e| match e {
            ProviderEvent::Line {
                line: LineId(1),
                event,
            } => match event {
                LineEvent::InService => Some(true),
                LineEvent::OutOfService { .. } => Some(false),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(service, vec![false, true, false]);
    rig.provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_that_holds_and_resumes_at_once_is_answered_both_times() {
    if !peer("sipp") {
        return;
    }
    let rig = Rig::new("hold-resume", |s| s).await;
    let mut device = rig.device("phone_holds_and_resumes").await;
    let mut caller = rig.caller(&["-sf", &scenario("caller_held_resumed_then_hung_up_on")]);
    let leg = rig.wait_leg(0, 10).await;
    let log = rig.log.clone();
    until(10, "the phone's hold and resume to show", move || {
        kinds(&log, leg) == vec![Offering, Connected, OnHold, Connected]
    })
    .await;
    rig.provider.drop_call(leg).await.unwrap();
    let rcs = (caller.finish(20).await, device.finish(20).await);
    assert_eq!(rcs, (0, 0), "{}", rig.dir.logs());
    rig.finish(leg).await;
}
