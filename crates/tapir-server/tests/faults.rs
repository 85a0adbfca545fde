//! tapird in front of a provider that panics, hangs and reports nonsense: an API client gets the
//! typed errors, the service goes on serving, and the status table and metrics count what happened.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tapir_api::{EventKind, LineEvent};
use tapir_client::StreamItem;
use tapir_config::{Config, Running};
use tapir_provider::Intercept;
use tapir_provider::faults::{Fault, FaultPlan, Faults, Nonsense, faulty};
use tapir_simswitch::{FarEnd, SimSwitch};

const CONFIG: &str = r#"
[services.pbx]
kind = "simswitch"

[applications.alice]
secret = "a-secret"
"#;

/// tapird serving an engine whose only provider is the simulated PBX behind the fault injector,
/// with a one-second deadline.
async fn faulty_service(plan: FaultPlan) -> (String, tokio::sync::oneshot::Sender<()>) {
    let (url, stop, _) = faulty_service_with(plan).await;
    (url, stop)
}

/// [`faulty_service`], with the wrapped provider to make it fail.
async fn faulty_service_with(
    plan: FaultPlan,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    Arc<Intercept<Faults>>,
) {
    let config = Config::parse(CONFIG).expect("config");
    let switch = SimSwitch::builder()
        .extension("2001", "Alice")
        .far_end("5551000", FarEnd::answers_after_rings(0))
        .build()
        .expect("switch");
    let wrapped = Arc::new(faulty(Arc::new(switch.clone()), plan));
    let engine = tapir::Engine::builder()
        .provider_arc(wrapped.clone())
        .provider_deadline(Duration::from_secs(1))
        .build()
        .await
        .expect("engine");
    let running = Running {
        engine,
        switches: BTreeMap::from([("pbx".to_owned(), switch)]),
        networks: BTreeMap::new(),
        sip: BTreeMap::new(),
    };
    let stores = tapir_server::Stores::open(&config).expect("stores");
    let listener = tapir_server::listen("127.0.0.1:0").await.expect("listen");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tapir_server::serve_with(&config, running, stores, listener, async {
            let _ = stopped.await;
        })
        .await
    });
    (url, stop, wrapped)
}

/// Logs Alice on and opens her line as owner; the client and the line open's handle.
async fn alice_at(url: &str) -> (tapir_client::Client, String) {
    let alice = tapir_client::Client::logon(
        url,
        &tapir_api::LogonRequest {
            application: "alice".into(),
            secret: "a-secret".into(),
            ..Default::default()
        },
    )
    .await
    .expect("log on");
    let line = alice.lines().await.expect("lines")[0].id;
    let open = alice
        .open_line(line, "owner")
        .await
        .expect("open")
        .line_handle;
    (alice, open)
}

/// Reads `stream` until an event `what` picks, for up to ten seconds.
async fn read_until(
    stream: &mut tapir_client::EventStream,
    what: impl Fn(&EventKind) -> bool,
) -> EventKind {
    let reading = async {
        loop {
            match stream.next().await {
                Some(Ok(StreamItem::Event(e))) if what(&e.kind) => return e.kind,
                Some(Ok(_)) => {}
                other => panic!("the stream ended: {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .expect("the event in time")
}

/// Waits (up to ten seconds) for `call` to be connected.
async fn connected(client: &tapir_client::Client, call: &str) {
    for _ in 0..500 {
        if client.call(call).await.expect("call").state == "connected" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{call} never connected");
}

/// The value of metric `name` in an exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gets_typed_errors_and_the_service_keeps_serving() {
    let plan = FaultPlan::seeded(11)
        .on("hold", Fault::Panic)
        .on("unhold", Fault::Hang)
        .nonsense(1000, &Nonsense::ALL);
    let (url, stop) = faulty_service(plan).await;
    let (alice, open) = alice_at(&url).await;
    let call = alice.make_call(&open, "5551000").await.expect("call");
    connected(&alice, &call.call).await;

    let panicked = alice.hold(&call.call).await.expect_err("hold panics");
    assert_eq!(
        (panicked.status(), panicked.code()),
        (Some(502), Some("provider_fault"))
    );
    assert_eq!(
        alice.call(&call.call).await.expect("call").state,
        "connected"
    );

    // The service goes on: the call is dropped, and another made.
    alice.drop_call(&call.call).await.expect("drop");
    alice.deallocate(&call.call).await.expect("deallocate");
    let second = alice
        .make_call(&open, "5551000")
        .await
        .expect("second call");
    connected(&alice, &second.call).await;

    let status = alice.status().await.expect("status");
    let row = status.iter().find(|r| r.id == "simswitch").expect("row");
    assert_eq!(row.faults, 1);
    assert!(row.refused_reports > 0, "{row:?}");
    assert_eq!(row.state, "available");

    let text = tapir_client::Service::new(&url)
        .expect("service")
        .metrics()
        .await
        .expect("metrics");
    assert_eq!(
        metric(&text, "tapir_provider_faults_total"),
        Some(1.0),
        "{text}"
    );
    let refused = metric(&text, "tapir_provider_refused_reports_total").expect("refused");
    assert!(refused >= row.refused_reports as f64, "{text}");
    assert!(
        text.contains("tapir_operations_total{result=\"provider_fault\"} 1"),
        "{text}"
    );
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_the_provider_never_finishes_is_a_gateway_timeout() {
    let (url, stop) = faulty_service(FaultPlan::seeded(12).on("hold", Fault::Hang)).await;
    let (alice, open) = alice_at(&url).await;
    let call = alice.make_call(&open, "5551000").await.expect("call");
    connected(&alice, &call.call).await;
    let hung = alice.hold(&call.call).await.expect_err("hold hangs");
    assert_eq!(
        (hung.status(), hung.code()),
        (Some(504), Some("provider_timeout"))
    );
    // The service answered meanwhile and answers now; the call is as the switch left it.
    alice.service().health().await.expect("health");
    assert_eq!(
        alice.call(&call.call).await.expect("call").state,
        "connected"
    );
    alice.drop_call(&call.call).await.expect("drop");
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sees_a_failed_provider_end_its_calls_and_come_back() {
    let (url, stop, wrapped) = faulty_service_with(FaultPlan::seeded(13)).await;
    let (alice, open) = alice_at(&url).await;
    let mut events = alice.events(0);
    let call = alice.make_call(&open, "5551000").await.expect("call");
    connected(&alice, &call.call).await;

    wrapped.fail("the PBX link is down").await;
    let disconnected = read_until(
        &mut events,
        |e| matches!(e, EventKind::CallState { state, .. } if state == "disconnected"),
    )
    .await;
    assert!(
        matches!(&disconnected, EventKind::CallState { call: c, mode: Some(m), .. } if *c == call.call && m == "temporary_failure"),
        "{disconnected:?}"
    );
    read_until(
        &mut events,
        |e| matches!(e, EventKind::CallState { state, .. } if state == "idle"),
    )
    .await;
    let status = alice.status().await.expect("status");
    let row = status.iter().find(|r| r.id == "simswitch").expect("row");
    assert_eq!(
        (row.state.as_str(), row.reason.as_deref()),
        ("failed", Some("the PBX link is down"))
    );
    let refused = alice
        .make_call(&open, "5551000")
        .await
        .expect_err("the provider is down");
    assert_eq!(
        (refused.status(), refused.code()),
        (Some(503), Some("provider_unavailable"))
    );
    let line = alice.line_status(&open).await.expect("line status");
    assert!(!line.in_service, "{line:?}");

    wrapped.restore().await;
    read_until(&mut events, |e| {
        matches!(
            e,
            EventKind::Line {
                event: LineEvent::InService,
                ..
            }
        )
    })
    .await;
    // The snapshot after it: the line open, and only the ended call, idle until let go.
    let snapshot = alice.snapshot().await.expect("snapshot");
    assert_eq!(snapshot.lines.len(), 1);
    let states: Vec<&str> = snapshot.calls.iter().map(|c| c.state.as_str()).collect();
    assert_eq!(states, ["idle"]);
    alice.deallocate(&call.call).await.expect("deallocate");
    let again = alice.make_call(&open, "5551000").await.expect("call again");
    connected(&alice, &again.call).await;
    alice.drop_call(&again.call).await.expect("drop");
    let _ = stop.send(());
}
