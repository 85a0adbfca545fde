//! Log-on with profiles: which services and lines a session gets, the shared session, session limits,
//! and providers that cannot serve a session.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tapir::core::caps::LineCaps;
use tapir::core::state::CallStateKind;
use tapir::profile::{LogonOptions, Profile, Service};
use tapir::translate::{Location, TranslateOptions};
use tapir::{Engine, Error, Event, OpenOptions, ServiceState};
use tapir_provider::{EventSink, Provider};
use tapir_simswitch::{CallerId, RingIn, SimSwitch};
use tapir_tests::numbers;

/// A provider without lines that refuses the first `refusals` session log-ons and declares a limit.
struct Picky {
    name: &'static str,
    refusals: u32,
    limit: Option<u32>,
    started: AtomicU32,
    asked: AtomicU32,
}

impl Picky {
    fn new(name: &'static str, refusals: u32, limit: Option<u32>) -> Arc<Self> {
        Arc::new(Self {
            name,
            refusals,
            limit,
            started: AtomicU32::new(0),
            asked: AtomicU32::new(0),
        })
    }
}

#[async_trait]
impl Provider for Picky {
    fn name(&self) -> &str {
        self.name
    }
    async fn start(&self, _sink: EventSink) -> Result<Vec<LineCaps>, Error> {
        self.started.fetch_add(1, Ordering::SeqCst);
        Ok(vec![])
    }
    async fn stop(&self) {}
    fn session_limit(&self) -> Option<u32> {
        self.limit
    }
    async fn session_logon(&self) -> Result<(), Error> {
        if self.asked.fetch_add(1, Ordering::SeqCst) < self.refusals {
            Err(Error::OperationFailed {
                reason: "the device does not answer".into(),
            })
        } else {
            Ok(())
        }
    }
}

fn switch() -> SimSwitch {
    SimSwitch::builder()
        .extension("2001", "Front desk 1")
        .extension("2002", "Front desk 2")
        .extension("3001", "Back office")
        .far_end(
            numbers::ANSWERS,
            tapir_simswitch::FarEnd::answers_after_rings(2),
        )
        .build()
        .expect("switch")
}

fn seattle() -> Location {
    Location {
        name: "Seattle".into(),
        country: "US".into(),
        area_code: "425".into(),
        ..Location::default()
    }
}

async fn engine(switch: &SimSwitch) -> Engine {
    Engine::builder()
        .service(
            Service::new("pbx")
                .display_name("Simulated PBX")
                .provider_arc(Arc::new(switch.clone())),
        )
        .profile("default", Profile::new(["pbx"]).location(seattle()))
        .profile(
            "front-desk",
            Profile::new(["pbx"]).lines(["2001", "Extension 2002 (Front desk 2)"]),
        )
        .profile("office", Profile::new(["pbx"]).lines(["3*"]))
        .build()
        .await
        .expect("engine")
}

#[tokio::test(start_paused = true)]
async fn a_profile_decides_which_lines_a_session_sees_and_opens() {
    let switch = switch();
    let engine = engine(&switch).await;
    let all = engine.lines();
    assert_eq!(all.len(), 3);

    let desk = engine
        .logon_with(LogonOptions::new("desk").profile("front-desk"))
        .await
        .expect("logon");
    assert_eq!(desk.profile(), "front-desk");
    let seen: Vec<String> = desk
        .lines()
        .into_iter()
        .map(|l| l.caps.addresses[0].address.clone())
        .collect();
    assert_eq!(seen, ["2001", "2002"]);
    // The back-office line is as unknown to this session as a line that does not exist.
    assert_eq!(
        desk.open_line(all[2].id, OpenOptions::owner()).await,
        Err(Error::InvalidLine(all[2].id))
    );
    desk.open_line(all[0].id, OpenOptions::owner())
        .await
        .expect("an allowed line opens");

    let office = engine
        .logon_with(LogonOptions::new("office").profile("office"))
        .await
        .expect("logon");
    assert_eq!(office.lines().len(), 1);
    assert_eq!(office.lines()[0].caps.addresses[0].address, "3001");

    // The default profile: every line, and the profile's location for translation.
    let any = engine.logon("any").await.expect("logon");
    assert_eq!(any.profile(), "default");
    assert_eq!(any.lines().len(), 3);
    let t = any
        .translate_address("+1 (425) 555-0100", TranslateOptions::default())
        .expect("translate with the profile's location");
    assert_eq!(t.dialable, "5550100");

    let before = engine.stats();
    assert_eq!(
        engine
            .logon_with(LogonOptions::new("x").profile("nope"))
            .await
            .err(),
        Some(Error::UnknownProfile {
            name: "nope".into()
        })
    );
    assert_eq!(engine.stats(), before, "a refused log-on changes nothing");
    for s in [desk, office, any] {
        s.logoff().await;
    }
    assert_eq!(engine.stats().line_handles, 0);
}

#[tokio::test(start_paused = true)]
async fn the_shared_session_is_one_session_for_every_application_that_joins() {
    let switch = switch();
    let engine = engine(&switch).await;
    let dialer = engine
        .logon_with(LogonOptions::new("dialer").shared())
        .await
        .expect("establish");
    let monitor = engine
        .logon_with(LogonOptions::new("wallboard").shared())
        .await
        .expect("join");
    assert_eq!(dialer.id(), monitor.id());
    assert!(dialer.is_shared() && monitor.is_shared());
    assert_eq!(monitor.app_name(), "wallboard");
    assert_eq!(dialer.applications(), ["dialer", "wallboard"]);
    assert_eq!(engine.stats().sessions, 1);
    // Naming another profile when joining is refused.
    assert!(matches!(
        engine
            .logon_with(LogonOptions::new("x").profile("office").shared())
            .await,
        Err(Error::InvalidParameter { .. })
    ));
    // An individual session stays apart.
    let own = engine.logon("dialer").await.expect("individual");
    assert_ne!(own.id(), dialer.id());
    own.logoff().await;

    // Handles are the session's: one application opens and calls, the other drops the call.
    let line = dialer
        .open_line(engine.lines()[0].id, OpenOptions::owner())
        .await
        .expect("open");
    let call = dialer
        .make_call(line, Some(numbers::ANSWERS))
        .await
        .expect("make call");
    // Each application reads the whole stream, with the same numbers.
    let first_dialer = dialer.next_event().await.expect("event");
    let first_monitor = monitor.next_event().await.expect("event");
    assert_eq!(first_dialer, first_monitor);
    assert!(matches!(first_dialer.event, Event::NewCall { call: c, .. } if c == call));
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        monitor.call_status(call).expect("status").state.kind(),
        CallStateKind::Connected
    );
    monitor
        .drop_call(call)
        .await
        .expect("drop through the other application");
    monitor.deallocate(call).expect("deallocate");

    // The first application logs off: the session and its line stay for the other.
    dialer.logoff().await;
    assert_eq!(engine.stats().sessions, 1);
    assert_eq!(engine.stats().line_handles, 1);
    assert_eq!(monitor.applications(), ["wallboard"]);
    while monitor.try_next_event().is_some() {}
    let rejoined = engine
        .logon_with(LogonOptions::new("dialer").shared())
        .await
        .expect("rejoin");
    assert_eq!(rejoined.id(), monitor.id());
    rejoined.logoff().await;

    // The last one ends it: its lines close, and the next shared log-on establishes a new session.
    let id = monitor.id();
    let ended = monitor.clone();
    monitor.logoff().await;
    assert_eq!(ended.next_event().await, None);
    assert_eq!(engine.stats().sessions, 0);
    assert_eq!(engine.stats().line_handles, 0);
    let again = engine
        .logon_with(LogonOptions::new("dialer").shared())
        .await
        .expect("new shared session");
    assert_ne!(again.id(), id);
    again.logoff().await;
    assert_eq!(switch.live_legs(), 0);
}

#[tokio::test(start_paused = true)]
async fn routes_reach_an_application_through_the_shared_session() {
    let switch = switch();
    let engine = engine(&switch).await;
    let first = engine
        .logon_with(LogonOptions::new("reception").shared())
        .await
        .expect("establish");
    let sales = engine
        .logon_with(LogonOptions::new("sales").shared())
        .await
        .expect("join");
    let other = engine.logon("other").await.expect("individual");
    let line = engine.lines()[0].id;
    other
        .open_line(line, OpenOptions::owner())
        .await
        .expect("open");
    sales
        .open_line(line, OpenOptions::owner())
        .await
        .expect("open");
    engine.set_route("voice", "sales").expect("route");
    switch
        .ring_in(RingIn::new("2001", CallerId::number("5550123")))
        .expect("ring");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(other.calls().len(), 0, "the first opener is passed over");
    assert_eq!(
        first.calls().len(),
        1,
        "the shared session, where sales is, owns it"
    );
    let call = first.calls()[0];
    first.reject(call).await.expect("reject");
    first.deallocate(call).expect("deallocate");

    // Routes follow who is in the session now: once the establishing application has left, a route
    // to it no longer reaches the shared session.
    engine.set_route("voice", "reception").expect("route");
    first.logoff().await;
    switch
        .ring_in(RingIn::new("2001", CallerId::number("5550124")))
        .expect("ring");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        sales.calls().len(),
        0,
        "reception has left the shared session"
    );
    assert_eq!(other.calls().len(), 1, "the default route: the first owner");
    let call = other.calls()[0];
    other.reject(call).await.expect("reject");
    other.deallocate(call).expect("deallocate");
    for s in [sales, other] {
        s.logoff().await;
    }
    assert_eq!(engine.stats(), tapir::EngineStats::default());
}

#[tokio::test(start_paused = true)]
async fn session_limits_refuse_the_log_on_and_change_nothing() {
    let switch = switch();
    let limited = Picky::new("dongle", 0, Some(2));
    let engine = Engine::builder()
        .service(Service::new("pbx").provider_arc(Arc::new(switch.clone())))
        .service(Service::new("dongles").provider_arc(limited.clone()))
        .service(
            Service::new("card")
                .provider_arc(Picky::new("card", 0, None))
                .max_sessions(1),
        )
        .profile("default", Profile::new(["pbx", "dongles"]))
        .profile("card", Profile::new(["pbx", "card"]))
        .build()
        .await
        .expect("engine");
    let a = engine.logon("a").await.expect("first");
    let b = engine.logon("b").await.expect("second");
    let before = (engine.stats(), engine.status());
    assert_eq!(
        engine.logon("c").await.err(),
        Some(Error::SessionLimit {
            provider: tapir::core::ProviderId(1),
            name: "dongle".into(),
            limit: 2
        })
    );
    assert_eq!((engine.stats(), engine.status()), before);
    let row = |name: &str| {
        engine
            .status()
            .into_iter()
            .find(|r| r.id == name)
            .expect("row")
    };
    assert_eq!(row("dongle").sessions, 2);
    assert_eq!(row("simswitch").sessions, 2);
    b.logoff().await;
    let c = engine.logon("c").await.expect("room again after a log-off");

    // The service's own limit.
    let card = engine
        .logon_with(LogonOptions::new("d").profile("card"))
        .await
        .expect("first on the card");
    match engine
        .logon_with(LogonOptions::new("e").profile("card"))
        .await
    {
        Err(Error::SessionLimit { name, limit, .. }) => {
            assert_eq!((name.as_str(), limit), ("card", 1))
        }
        other => panic!("{other:?}"),
    }
    for s in [a, c, card] {
        s.logoff().await;
    }
    assert_eq!(row("dongle").sessions, 0);
    assert_eq!(row("card").sessions, 0);
}

#[tokio::test(start_paused = true)]
async fn a_provider_that_cannot_serve_the_session_disables_its_service_for_it() {
    let switch = switch();
    let flaky = Picky::new("flaky", 1, None);
    let dead = Picky::new("dead", u32::MAX, None);
    let engine = Engine::builder()
        .service(Service::new("pbx").provider_arc(Arc::new(switch.clone())))
        .service(Service::new("flaky").provider_arc(flaky.clone()))
        .service(
            Service::new("modems")
                .provider_arc(Picky::new("good-modem", 0, None))
                .provider_arc(dead.clone()),
        )
        .profile("default", Profile::new(["pbx", "flaky", "modems"]))
        .profile("modems-only", Profile::new(["modems"]))
        .build()
        .await
        .expect("engine");

    let s = engine.logon("app").await.expect("the session comes up");
    // Refused once, asked again, accepted.
    assert_eq!(flaky.asked.load(Ordering::SeqCst), 2);
    // Refused twice: the whole service is off for this session, with the reason.
    assert_eq!(dead.asked.load(Ordering::SeqCst), 2);
    let disabled = s.disabled_services();
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0].service, "modems");
    assert!(
        disabled[0].reason.contains("dead") && disabled[0].reason.contains("does not answer"),
        "{disabled:?}"
    );
    assert_eq!(s.lines().len(), 3, "the PBX lines are there");
    let row = |name: &str| {
        engine
            .status()
            .into_iter()
            .find(|r| r.id == name)
            .expect("row")
    };
    assert_eq!(
        row("good-modem").sessions,
        0,
        "not counted: its service is off"
    );
    assert_eq!(row("dead").state, ServiceState::Available);
    assert!(row("dead").last_error.is_some());

    // Nothing usable: a clear error, and no session.
    let before = engine.stats();
    match engine
        .logon_with(LogonOptions::new("app").profile("modems-only"))
        .await
    {
        Err(Error::NoServiceAvailable { reason }) => {
            assert!(reason.contains("modems"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(engine.stats(), before);
    assert_eq!(row("good-modem").sessions, 0);
    s.logoff().await;
}

#[tokio::test(start_paused = true)]
async fn services_and_profiles_that_do_not_fit_are_refused_before_anything_starts() {
    let cases: Vec<(&str, tapir::EngineBuilder)> = vec![
        (
            "unknown service",
            Engine::builder()
                .service(Service::new("pbx").provider_arc(Arc::new(switch())))
                .profile("default", Profile::new(["pbx", "fax"])),
        ),
        (
            "two services of one name",
            Engine::builder()
                .service(Service::new("pbx").provider_arc(Arc::new(switch())))
                .service(Service::new("pbx").provider_arc(Arc::new(switch()))),
        ),
        (
            "empty service",
            Engine::builder().service(Service::new("pbx")),
        ),
        (
            "bad line pattern",
            Engine::builder()
                .service(Service::new("pbx").provider_arc(Arc::new(switch())))
                .profile("default", Profile::new(["pbx"]).lines(["2*0"])),
        ),
        (
            "no default profile",
            Engine::builder()
                .service(Service::new("pbx").provider_arc(Arc::new(switch())))
                .profile("desk", Profile::new(["pbx"])),
        ),
        (
            "bad location",
            Engine::builder()
                .service(Service::new("pbx").provider_arc(Arc::new(switch())))
                .profile(
                    "default",
                    Profile::new(["pbx"]).location(Location {
                        country: "XX".into(),
                        ..seattle()
                    }),
                ),
        ),
    ];
    for (what, builder) in cases {
        let started = Picky::new("probe", 0, None);
        match builder
            .service(Service::new("probe").provider_arc(started.clone()))
            .build()
            .await
        {
            Err(Error::InvalidParameter { .. }) | Err(Error::InvalidAddress { .. }) => {}
            Err(e) => panic!("{what}: {e:?}"),
            Ok(_) => panic!("{what}: accepted"),
        }
        assert_eq!(started.started.load(Ordering::SeqCst), 0, "{what}");
    }
}
