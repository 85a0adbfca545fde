//! A provider that panics, hangs or reports nonsense hurts nothing but its own operation: the
//! simulated PBX behind the fault injector (`tapir_provider::faults`), through the engine.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use tapir::LineEvent;
use tapir::core::state::CallStateKind as K;
use tapir::core::state::DisconnectReason;
use tapir::{CallHandle, Engine, Error, Event, ServiceState, StatusRow};
use tapir_provider::faults::{Fault, FaultPlan, Faults, Nonsense, faulty};
use tapir_provider::{Intercept, Provider};
use tapir_simswitch::{FarEnd, SimSwitch};
use tapir_tests::{Desk, Pbx, close_all, numbers, office};

const DEADLINE: Duration = Duration::from_secs(5);

/// The office behind the fault injector with `plan`, an engine with a five-second deadline.
async fn faulty_office(plan: FaultPlan) -> (Pbx, Arc<Intercept<Faults>>) {
    let switch = office(&["801"]);
    let wrapped = Arc::new(faulty(Arc::new(switch.clone()), plan));
    let engine = Engine::builder()
        .provider_arc(wrapped.clone())
        .provider_deadline(DEADLINE)
        .build()
        .await
        .unwrap();
    (Pbx { engine, switch }, wrapped)
}

fn row(pbx: &Pbx) -> StatusRow {
    pbx.engine
        .status()
        .into_iter()
        .find(|r| r.id == "simswitch")
        .unwrap()
}

/// Alice (100) calls Bob (200), Bob answers; their handles.
async fn connected(alice: &mut Desk, bob: &mut Desk) -> (CallHandle, CallHandle) {
    let a = alice
        .session
        .make_call(alice.line, Some("200"))
        .await
        .unwrap();
    let b = bob.w.new_call().await;
    bob.session.answer(b).await.unwrap();
    alice.w.state(a, K::Connected).await;
    (a, b)
}

/// Alice hangs up the call she made to Bob, Bob hangs up when he sees it, and both let their
/// handles go.
async fn hang_up(alice: &Desk, a: CallHandle, bob: &mut Desk, b: CallHandle) {
    alice.session.drop_call(a).await.unwrap();
    bob.w.state(b, K::Disconnected).await;
    bob.session.drop_call(b).await.unwrap();
    alice.session.deallocate(a).unwrap();
    bob.session.deallocate(b).unwrap();
}

/// `desk` hangs up `call` and lets it go.
async fn drop_own(desk: &Desk, call: CallHandle) {
    desk.session.drop_call(call).await.unwrap();
    desk.session.deallocate(call).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_panicking_provider_fails_the_operation_and_nothing_else() {
    let (pbx, _) = faulty_office(FaultPlan::seeded(1).on("hold", Fault::Panic)).await;
    let mut alice = pbx.desk("alice", "100").await;
    let mut bob = pbx.desk("bob", "200").await;
    let mut carol = pbx.desk("carol", "300").await;
    let (a, b) = connected(&mut alice, &mut bob).await;

    let err = alice.session.hold(a).await.unwrap_err();
    assert!(
        matches!(&err, Error::ProviderFault { operation: "hold", name, .. } if name == "simswitch"),
        "{err:?}"
    );
    assert_eq!(err.code(), "provider_fault");
    // Nothing happened: the call is as its provider last reported it, on both sides.
    assert_eq!(
        alice.session.call_status(a).unwrap().state.kind(),
        K::Connected
    );
    assert_eq!(
        bob.session.call_status(b).unwrap().state.kind(),
        K::Connected
    );
    // The provider's row says so, and every session was told.
    let r = row(&pbx);
    assert_eq!((r.state, r.faults), (ServiceState::Available, 1));
    assert!(r.last_error.unwrap().contains("panicked in hold"));
    let told = carol
        .w
        .until(|e| matches!(e, Event::Status(r) if r.faults == 1))
        .await;
    assert!(matches!(told, Event::Status(_)));

    // Everything else carries on: the same call, another session's calls.
    let c = carol
        .session
        .make_call(carol.line, Some(numbers::ANSWERS_AT_ONCE))
        .await
        .unwrap();
    carol.w.state(c, K::Connected).await;
    hang_up(&alice, a, &mut bob, b).await;
    drop_own(&carol, c).await;
    close_all(&pbx, [alice.session, bob.session, carol.session]).await;
}

#[tokio::test(start_paused = true)]
async fn a_provider_that_never_answers_times_out_while_others_go_on() {
    let (pbx, _) = faulty_office(FaultPlan::seeded(2).on("unhold", Fault::Hang)).await;
    let mut alice = pbx.desk("alice", "100").await;
    let mut bob = pbx.desk("bob", "200").await;
    let mut carol = pbx.desk("carol", "300").await;
    let (a, b) = connected(&mut alice, &mut bob).await;
    alice.session.hold(a).await.unwrap();

    let started = tokio::time::Instant::now();
    let (unheld, carols) = tokio::join!(alice.session.unhold(a), async {
        // While Alice's unhold waits, Carol's call is made and connects.
        let c = carol
            .session
            .make_call(carol.line, Some(numbers::ANSWERS_AT_ONCE))
            .await
            .unwrap();
        carol.w.state(c, K::Connected).await;
        (c, tokio::time::Instant::now())
    });
    let err = unheld.unwrap_err();
    assert_eq!(
        err,
        Error::ProviderTimeout {
            provider: tapir::core::ProviderId(0),
            name: "simswitch".into(),
            operation: "unhold",
            after_ms: 5_000,
        }
    );
    assert_eq!(err.code(), "provider_timeout");
    assert_eq!(started.elapsed(), DEADLINE);
    assert!(
        carols.1 < started + DEADLINE,
        "Carol did not wait for Alice"
    );
    // The call keeps the state its provider reported: still on hold, and can be dropped.
    assert_eq!(
        alice.session.call_status(a).unwrap().state.kind(),
        K::OnHold
    );
    assert_eq!(row(&pbx).faults, 1);
    hang_up(&alice, a, &mut bob, b).await;
    drop_own(&carol, carols.0).await;
    close_all(&pbx, [alice.session, bob.session, carol.session]).await;
}

#[tokio::test(start_paused = true)]
async fn a_call_made_by_an_operation_that_then_hangs_is_not_left_behind() {
    let (pbx, _) = faulty_office(FaultPlan::seeded(3).on("make-call", Fault::HangAfter)).await;
    let mut alice = pbx.desk("alice", "100").await;
    let mut bob = pbx.desk("bob", "200").await;
    // The switch places the call and reports it, then the method never returns.
    let err = alice
        .session
        .make_call(alice.line, Some("200"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ProviderTimeout {
                operation: "make-call",
                ..
            }
        ),
        "{err:?}"
    );
    // Bob was offered the call, and saw it go when the engine dropped it: nobody asked for it any
    // more. Alice never got a handle for it.
    let b = bob.w.new_call().await;
    bob.w.state(b, K::Idle).await;
    bob.session.deallocate(b).unwrap();
    alice.w.drain();
    assert!(
        !alice
            .w
            .log
            .iter()
            .any(|e| matches!(e.event, Event::NewCall { .. })),
        "{:?}",
        alice.w.log
    );
    close_all(&pbx, [alice.session, bob.session]).await;
}

#[tokio::test(start_paused = true)]
async fn a_provider_that_panics_at_start_is_disabled_and_the_others_serve() {
    let healthy = SimSwitch::builder()
        .extension("900", "Nine")
        .build()
        .unwrap();
    let broken: Arc<dyn Provider> = Arc::new(faulty(
        Arc::new(office(&["801"])),
        FaultPlan::seeded(4).on("start", Fault::Panic),
    ));
    let engine = Engine::builder()
        .provider_arc(broken)
        .provider(healthy)
        .build()
        .await
        .unwrap();
    let rows = engine.status();
    let broken = &rows[1];
    assert_eq!(broken.state, ServiceState::Disabled);
    assert_eq!(broken.faults, 2, "tried twice");
    assert!(
        broken.reason.as_ref().unwrap().contains("panicked"),
        "{broken:?}"
    );
    assert_eq!(rows[2].state, ServiceState::Available);
    assert_eq!(engine.lines().len(), 1);
}

/// Alice calls Bob, Bob answers, Alice holds and takes the call back, Bob hangs up; what each
/// application saw, as (state or event name) in order.
async fn ordinary_calls(pbx: &Pbx) -> Vec<String> {
    let mut alice = pbx.desk("alice", "100").await;
    let mut bob = pbx.desk("bob", "200").await;
    let (a, b) = connected(&mut alice, &mut bob).await;
    alice.session.hold(a).await.unwrap();
    alice.session.unhold(a).await.unwrap();
    alice
        .session
        .generate_digits(a, "12#", tapir::core::params::DigitMode::Dtmf)
        .await
        .unwrap();
    bob.session.drop_call(b).await.unwrap();
    alice.w.state(a, K::Disconnected).await;
    alice.session.drop_call(a).await.unwrap();
    alice.w.state(a, K::Idle).await;
    bob.w.state(b, K::Idle).await;
    alice.session.deallocate(a).unwrap();
    bob.session.deallocate(b).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    alice.w.drain();
    bob.w.drain();
    let seen: Vec<String> = alice
        .w
        .log
        .iter()
        .chain(&bob.w.log)
        .filter(|e| !matches!(e.event, Event::Status(_)))
        .map(|e| format!("{:?}", e.event))
        .collect();
    let seen = handles_numbered(&seen);
    close_all(pbx, [alice.session, bob.session]).await;
    seen
}

/// `lines` with every handle (`call:…`, `line:…`, random per engine) replaced by its number in
/// order of first appearance, so that two runs compare.
fn handles_numbered(lines: &[String]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    lines
        .iter()
        .map(|line| {
            let mut out = String::new();
            let mut rest = line.as_str();
            while let Some(at) = ["call:", "line:"]
                .iter()
                .filter_map(|p| rest.find(p).map(|i| (i, p.len())))
                .min()
            {
                let (i, len) = at;
                out.push_str(&rest[..i + len]);
                rest = &rest[i + len..];
                let end = rest
                    .find(|c: char| !c.is_ascii_hexdigit())
                    .unwrap_or(rest.len());
                let handle = rest[..end].to_owned();
                let n = match seen.iter().position(|h| *h == handle) {
                    Some(n) => n,
                    None => {
                        seen.push(handle);
                        seen.len() - 1
                    }
                };
                out.push_str(&format!("#{n}"));
                rest = &rest[end..];
            }
            out.push_str(rest);
            out
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn nonsense_reports_are_refused_counted_and_never_delivered() {
    let (clean, _) = faulty_office(FaultPlan::seeded(5)).await;
    let expected = ordinary_calls(&clean).await;
    assert_eq!(row(&clean).refused_reports, 0);

    for seed in 1..=8 {
        let plan = FaultPlan::seeded(seed).nonsense(1000, &Nonsense::ALL);
        let (pbx, injector) = faulty_office(plan).await;
        let seen = ordinary_calls(&pbx).await;
        assert_eq!(
            seen, expected,
            "seed {seed}: the applications saw something else"
        );
        let injected = injector.hook().injected().nonsense;
        assert!(injected > 5, "seed {seed}: only {injected} injected");
        let r = row(&pbx);
        assert_eq!(
            r.refused_reports, injected,
            "seed {seed}: each nonsense refused once"
        );
        assert_eq!(pbx.engine.stats().refused_reports, injected);
        // A line that does not exist going out of service changes no row.
        assert_eq!(
            (r.state, r.lines_out_of_service),
            (ServiceState::Available, 0)
        );
    }
}

/// A provider of one line whose test can report anything through its sink, and that records the
/// calls it is asked to drop.
#[derive(Default)]
struct Puppet {
    sink: std::sync::Mutex<Option<tapir_provider::EventSink>>,
    dropped: std::sync::Mutex<Vec<tapir::core::CallLegId>>,
}

#[async_trait::async_trait]
impl Provider for Puppet {
    fn name(&self) -> &str {
        "puppet"
    }
    async fn start(
        &self,
        sink: tapir_provider::EventSink,
    ) -> Result<Vec<tapir::core::caps::LineCaps>, Error> {
        *self.sink.lock().unwrap() = Some(sink);
        Ok(vec![tapir::core::caps::LineCaps {
            name: "Puppet 100".into(),
            addresses: vec![tapir::core::caps::AddressCaps::basic("100")],
            media_modes: tapir::core::media::MediaModes::INTERACTIVE_VOICE,
            dial: Default::default(),
            answer_mode: Default::default(),
        }])
    }
    async fn stop(&self) {}
    async fn drop_call(&self, leg: tapir::core::CallLegId) -> Result<(), Error> {
        self.dropped.lock().unwrap().push(leg);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_reported_for_a_request_that_has_ended_is_dropped_at_the_provider() {
    let puppet = Arc::new(Puppet::default());
    let engine = Engine::builder()
        .provider_arc(puppet.clone())
        .build()
        .await
        .unwrap();
    let session = engine.logon("app").await.unwrap();
    let line = engine.lines()[0].id;
    session
        .open_line(line, tapir::OpenOptions::owner())
        .await
        .unwrap();
    let leg = tapir::core::CallLegId(5);
    let sink = puppet.sink.lock().unwrap().clone().unwrap();
    sink.new_call(tapir_provider::NewCall {
        leg,
        line: tapir::core::LineId(0),
        address: tapir::core::AddressId(0),
        state: tapir::core::state::CallState::Dialing,
        info: Default::default(),
        request: Some(tapir::core::params::RequestId(424_242)),
    });
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(*puppet.dropped.lock().unwrap(), [leg]);
    assert!(session.try_next_event().is_none(), "nobody was told of it");
    let stats = engine.stats();
    assert_eq!((stats.calls, stats.refused_reports), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_provider_that_fails_with_calls_up_ends_them_and_comes_back() {
    let switch = office(&["801"]);
    let wrapped = Arc::new(faulty(Arc::new(switch.clone()), FaultPlan::seeded(6)));
    let other = SimSwitch::builder()
        .extension("900", "Nine")
        .far_end(numbers::ANSWERS_AT_ONCE, FarEnd::answers_after_rings(0))
        .build()
        .unwrap();
    let engine = Engine::builder()
        .provider_arc(wrapped.clone())
        .provider(other.clone())
        .build()
        .await
        .unwrap();
    let pbx = Pbx { engine, switch };
    let mut alice = pbx.desk("alice", "100").await;
    let mut bob = pbx.desk("bob", "200").await;
    let mut nine = pbx.desk("nine", "900").await;
    let (a, b) = connected(&mut alice, &mut bob).await;
    let n = nine
        .session
        .make_call(nine.line, Some(numbers::ANSWERS_AT_ONCE))
        .await
        .unwrap();
    nine.w.state(n, K::Connected).await;

    // The PBX link goes down: the switch's calls are lost with it.
    wrapped.fail("the PBX link is down").await;
    for (desk, call) in [(&mut alice, a), (&mut bob, b)] {
        let ended = desk.w.state(call, K::Disconnected).await;
        assert_eq!(
            ended,
            tapir::core::state::CallState::Disconnected(DisconnectReason::TemporaryFailure)
        );
        desk.w.state(call, K::Idle).await;
        // Told in this order: the provider's row, the line out of service, then the call.
        let told: Vec<&str> = desk
            .w
            .log
            .iter()
            .rev()
            .take(4)
            .rev()
            .map(|e| match &e.event {
                Event::Status(r) if r.state == ServiceState::Failed => "failed",
                Event::Line {
                    event: LineEvent::OutOfService { reason },
                    ..
                } if reason == "the PBX link is down" => "out of service",
                Event::CallState { state, .. } if state.kind() == K::Disconnected => "disconnected",
                Event::CallState { state, .. } if state.is_idle() => "idle",
                _ => "other",
            })
            .collect();
        assert_eq!(told, ["failed", "out of service", "disconnected", "idle"]);
    }
    assert_eq!(
        pbx.switch.live_legs(),
        0,
        "the failure lost the switch's calls"
    );
    let r = row(&pbx);
    assert_eq!(r.state, ServiceState::Failed);
    assert_eq!(r.reason.as_deref(), Some("the PBX link is down"));
    assert_eq!(r.lines_out_of_service, r.lines);

    // While it is down its lines refuse calls, "not now", and say why.
    let err = alice
        .session
        .make_call(alice.line, Some("200"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ProviderUnavailable { reason, .. } if reason == "the PBX link is down"),
        "{err:?}"
    );
    let status = alice.session.line_status(alice.line).await.unwrap();
    assert!(!status.in_service);
    assert_eq!(status.reason.as_deref(), Some("the PBX link is down"));
    // The other provider's call never noticed.
    nine.session.hold(n).await.unwrap();
    nine.w.state(n, K::OnHold).await;
    assert_eq!(other.live_legs(), 1);

    // It comes back: in service again, and a snapshot shows only the ended calls, still held
    // until their holders let them go.
    wrapped.restore().await;
    alice
        .w
        .until(|e| {
            matches!(
                e,
                Event::Line {
                    event: LineEvent::InService,
                    ..
                }
            )
        })
        .await;
    assert_eq!(row(&pbx).state, ServiceState::Available);
    assert!(
        alice
            .session
            .line_status(alice.line)
            .await
            .unwrap()
            .in_service
    );
    assert_eq!(alice.session.calls(), vec![a]);
    assert!(alice.session.call_status(a).unwrap().state.is_idle());
    alice.session.deallocate(a).unwrap();
    bob.session.deallocate(b).unwrap();
    let (a, b) = connected(&mut alice, &mut bob).await;
    hang_up(&alice, a, &mut bob, b).await;
    drop_own(&nine, n).await;
    assert_eq!(row(&pbx).refused_reports, 0);
    close_all(&pbx, [alice.session, bob.session, nine.session]).await;
    assert_eq!(other.live_legs(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_call_that_ends_while_its_provider_works_is_not_now_and_not_a_bad_handle() {
    let (pbx, _) =
        faulty_office(FaultPlan::seeded(7).on("answer", Fault::Delay(Duration::from_secs(2))))
            .await;
    let alice = pbx.desk("alice", "100").await;
    let mut bob = pbx.desk("bob", "200").await;
    let a = alice
        .session
        .make_call(alice.line, Some("200"))
        .await
        .unwrap();
    let b = bob.w.new_call().await;
    // Bob answers; while the switch takes its time, Alice gives up and the call is gone.
    let (answered, dropped) = tokio::join!(bob.session.answer(b), alice.session.drop_call(a));
    dropped.unwrap();
    assert!(
        matches!(answered, Err(Error::InvalidCallState { state: K::Idle })),
        "{answered:?}"
    );
    // Bob's handle is still his, to read and let go.
    bob.w.state(b, K::Idle).await;
    bob.session.deallocate(b).unwrap();
    alice.session.deallocate(a).unwrap();
    close_all(&pbx, [alice.session, bob.session]).await;
}
