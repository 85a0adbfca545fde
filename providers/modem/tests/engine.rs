//! The engine with modem providers: applications place and answer modem calls through sessions, a
//! monitor sees them too, features follow the modem's capabilities, and nothing is left afterwards.

use std::time::Duration;

use tapir::core::gate::CallOperation;
use tapir::core::media::MediaModes;
use tapir::core::state::{CallStateKind, DisconnectReason};
use tapir::{CallHandle, Engine, Error, Event, MakeCallParams, OpenOptions, Session};
use tapir_modem::{CallerId, ModemProvider, Network, RingIn, SimModem};
use tokio::time::sleep;

async fn state_of(s: &Session, call: CallHandle) -> CallStateKind {
    s.call_status(call).expect("status").state.kind()
}

/// The first call handle the session is given.
async fn first_call(s: &Session) -> CallHandle {
    loop {
        match s.next_event().await.expect("event").event {
            Event::NewCall { call, .. } => return call,
            _ => continue,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn apps_dial_and_answer_through_modems_and_nothing_is_left() {
    let net = Network::new();
    let (a, _ma) = SimModem::builder().attach(&net, "5550100").expect("a");
    let (b, _mb) = SimModem::builder().attach(&net, "5550200").expect("b");
    let engine = Engine::builder()
        .provider(ModemProvider::over(a).number("5550100").build())
        .provider(ModemProvider::over(b).number("5550200").build())
        .build()
        .await
        .expect("engine");
    let (line_a, line_b) = (engine.lines()[0].id, engine.lines()[1].id);

    let dialer = engine.logon("dialer").await.expect("logon");
    let answerer = engine.logon("answerer").await.expect("logon");
    let watcher = engine.logon("watcher").await.expect("logon");
    let out = dialer
        .open_line(line_a, OpenOptions::none())
        .await
        .expect("open");
    answerer
        .open_line(line_b, OpenOptions::owner())
        .await
        .expect("open");
    watcher
        .open_line(line_b, OpenOptions::monitor())
        .await
        .expect("open");

    let call = dialer
        .make_call_with(
            out,
            MakeCallParams {
                media_mode: Some(MediaModes::DATA_MODEM),
                ..MakeCallParams::to("5550200")
            },
        )
        .await
        .expect("make call");
    let offered = first_call(&answerer).await;
    let watched = first_call(&watcher).await;
    assert_eq!(state_of(&answerer, offered).await, CallStateKind::Offering);
    assert_eq!(
        answerer.call_info(offered).expect("info").call_id(),
        watcher.call_info(watched).expect("info").call_id(),
        "owner and monitor share the provider's call ID"
    );
    // A modem cannot hold; the feature table says so before anyone tries.
    let features = answerer.call_status(offered).expect("status").features;
    assert!(features.contains(CallOperation::Answer));
    assert!(!features.contains(CallOperation::Hold));

    answerer.answer(offered).await.expect("answer");
    assert_eq!(state_of(&answerer, offered).await, CallStateKind::Connected);
    sleep(Duration::from_secs(3)).await;
    assert_eq!(state_of(&dialer, call).await, CallStateKind::Connected);
    assert!(matches!(
        dialer.hold(call).await,
        Err(Error::OperationUnavailable { .. })
    ));

    dialer.drop_call(call).await.expect("drop");
    dialer.deallocate(call).expect("deallocate");
    sleep(Duration::from_millis(100)).await;
    let status = answerer.call_status(offered).expect("status");
    assert_eq!(
        status.state,
        tapir::core::state::CallState::Disconnected(DisconnectReason::Normal)
    );
    answerer.drop_call(offered).await.expect("drop");
    answerer.deallocate(offered).expect("deallocate");
    watcher.deallocate(watched).expect("deallocate");

    // An incoming call from outside, with caller ID, that the caller abandons.
    let _caller = net
        .ring_in(
            "5550200",
            RingIn::modem(CallerId::named("4155550123", "ALICE"))
                .gives_up_after(Duration::from_secs(8)),
        )
        .expect("ring in");
    let incoming = first_call(&answerer).await;
    sleep(Duration::from_secs(4)).await;
    let caller = answerer.call_info(incoming).expect("info").info.caller;
    assert_eq!(caller.number.as_deref(), Some("4155550123"));
    assert_eq!(caller.name.as_deref(), Some("ALICE"));
    sleep(Duration::from_secs(15)).await;
    assert_eq!(state_of(&answerer, incoming).await, CallStateKind::Idle);
    answerer.deallocate(incoming).expect("deallocate");

    for s in [dialer, answerer, watcher] {
        s.logoff().await;
    }
    let stats = engine.stats();
    assert_eq!(
        (
            stats.calls,
            stats.call_handles,
            stats.line_handles,
            stats.pending_requests
        ),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    engine.shutdown().await;
    assert_eq!(net.live_calls(), 0);
}

/// A provider whose device is missing: it never starts.
struct Missing {
    attempts: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl tapir::provider::Provider for Missing {
    fn name(&self) -> &str {
        "missing-modem"
    }
    async fn start(
        &self,
        _sink: tapir::provider::EventSink,
    ) -> Result<Vec<tapir::core::caps::LineCaps>, Error> {
        self.attempts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(Error::OperationFailed {
            reason: "cannot open /dev/ttyUSB9: no such device".into(),
        })
    }
    async fn stop(&self) {}
}

#[tokio::test(start_paused = true)]
async fn the_status_table_shows_disabled_failed_and_recovered_services() {
    use std::sync::{Arc, Mutex};
    use tapir::{ServiceState, StatusRow};
    use tapir_modem::provider::{Connector, Port};

    let net = Network::new();
    // A modem that is not plugged in yet: the port is there but nothing answers.
    let plugged: Arc<Mutex<Option<tokio::io::DuplexStream>>> = Arc::new(Mutex::new(None));
    let connector: Connector = {
        let plugged = plugged.clone();
        Arc::new(move || {
            let stream = plugged.lock().expect("lock").take();
            Box::pin(async move {
                Ok::<Box<dyn Port>, std::io::Error>(match stream {
                    Some(s) => Box::new(s),
                    None => {
                        let (ours, theirs) = tokio::io::duplex(64);
                        std::mem::forget(theirs);
                        Box::new(ours)
                    }
                })
            })
        })
    };
    let missing = Arc::new(Missing {
        attempts: Default::default(),
    });
    let (good, _m) = SimModem::builder().attach(&net, "5550100").expect("attach");
    let engine = Engine::builder()
        .provider(
            ModemProvider::over(good)
                .name("modem-a")
                .number("5550100")
                .build(),
        )
        .provider(
            ModemProvider::builder(connector)
                .name("modem-b")
                .number("5550200")
                .build(),
        )
        .provider_arc(missing.clone())
        .build()
        .await
        .expect("the engine comes up with what works");
    assert_eq!(
        missing.attempts.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "retried once"
    );

    let app = engine.logon("watcher").await.expect("logon");
    // The session comes up with modem-a; modem-b (silent) and the missing modem are disabled for it.
    let disabled: Vec<&str> = app
        .disabled_services()
        .iter()
        .map(|d| d.service.as_str())
        .collect();
    assert_eq!(disabled, ["modem-b", "missing-modem"]);
    assert!(
        app.disabled_services()[0].reason.contains("out of service"),
        "{:?}",
        app.disabled_services()
    );
    assert_eq!(app.lines().len(), 1);
    app.open_line(engine.lines()[0].id, OpenOptions::monitor())
        .await
        .expect("open");
    let row =
        |id: &str| -> StatusRow { app.status().into_iter().find(|r| r.id == id).expect("row") };
    let table = app.status();
    assert_eq!(table.len(), 4);
    assert_eq!(table[0].id, "engine");
    assert_eq!(
        (table[0].state, table[0].lines, table[0].sessions),
        (ServiceState::Available, 2, 1)
    );
    let a = row("modem-a");
    assert_eq!(
        (a.state, a.lines, a.sessions),
        (ServiceState::Available, 1, 1)
    );
    let b = row("modem-b");
    assert_eq!(
        (b.state, b.lines, b.lines_out_of_service, b.sessions),
        (ServiceState::Failed, 1, 1, 0)
    );
    assert!(
        b.reason
            .as_deref()
            .is_some_and(|r| r.contains("did not answer AT")),
        "{b:?}"
    );
    let m = row("missing-modem");
    assert_eq!((m.state, m.lines), (ServiceState::Disabled, 0));
    assert!(
        m.reason
            .as_deref()
            .is_some_and(|r| r.contains("no such device")),
        "{m:?}"
    );

    // The modem is plugged in; the provider's retry finds it and the session is told.
    let (stream, _mb) = SimModem::builder().attach(&net, "5550200").expect("attach");
    *plugged.lock().expect("lock") = Some(stream);
    sleep(Duration::from_secs(35)).await;
    let mut told = None;
    while let Some(e) = app.try_next_event() {
        if let Event::Status(r) = e.event {
            told = Some(r);
        }
    }
    let told = told.expect("a status event");
    assert_eq!(
        (told.id.as_str(), told.state),
        ("modem-b", ServiceState::Available)
    );
    assert!(told.last_error.is_some(), "the last error is kept");
    assert_eq!(row("modem-b").state, ServiceState::Available);
    // A session logging on now gets modem-b too.
    let later = engine.logon("later").await.expect("logon");
    assert_eq!(later.disabled_services().len(), 1);
    assert_eq!(later.lines().len(), 2);
    assert_eq!(row("modem-b").sessions, 1);
    later.logoff().await;

    app.logoff().await;
    engine.shutdown().await;
    assert!(
        engine
            .status()
            .iter()
            .all(|r| r.state == ServiceState::Stopped),
        "{:?}",
        engine.status()
    );
}
