//! Routing offered calls to applications by call class: longest prefix wins, clearing falls back,
//! routes to absent applications are skipped, no route with the default cleared rejects, monitors see
//! every call, and a call already offered is not moved.

use std::time::Duration;

use tapir::core::privilege::CallPrivilege;
use tapir::core::route::DefaultRoute;
use tapir::core::state::CallStateKind;
use tapir::{Error, OpenOptions, Session};
use tapir_simswitch::{CallerId, RingIn};
use tapir_tests::{Pbx, close_all, pbx};

/// Rings extension 200 from outside and returns which of `apps` was given the call as owner
/// (and checks the monitor was given it too). The call is then rejected and released everywhere.
async fn who_gets_it(pbx: &Pbx, apps: &[(&str, &Session)], monitor: &Session) -> Option<String> {
    pbx.switch
        .ring_in(RingIn::new("200", CallerId::number("5550123")))
        .expect("ring in");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut owner = None;
    for (name, s) in apps {
        for call in s.calls() {
            let status = s.call_status(call).expect("status");
            assert_eq!(status.privilege, CallPrivilege::Owner);
            assert!(owner.is_none(), "two owners");
            owner = Some((name.to_string(), (*s).clone(), call));
        }
    }
    let watched = monitor.calls();
    assert_eq!(watched.len(), 1, "the monitor sees every call");
    match &owner {
        Some((_, s, call)) => {
            s.reject(*call).await.expect("reject");
            s.deallocate(*call).expect("deallocate");
        }
        None => {
            // Nobody owns it: rejected by the engine (or ringing); wait until it is idle.
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(
                monitor
                    .call_status(watched[0])
                    .expect("status")
                    .state
                    .kind(),
                CallStateKind::Idle
            );
        }
    }
    monitor.deallocate(watched[0]).expect("deallocate");
    while monitor.try_next_event().is_some() {}
    for (_, s) in apps {
        while s.try_next_event().is_some() {}
    }
    owner.map(|(name, _, _)| name)
}

#[tokio::test(start_paused = true)]
async fn longest_prefix_routes_clear_falls_back_and_no_route_rejects() {
    let pbx = pbx().await;
    let owner = OpenOptions::owner();
    let (general, _) = pbx.app("general", &[("200", owner)]).await;
    let (sales, _) = pbx.app("sales", &[("200", owner)]).await;
    let (support, _) = pbx.app("support", &[("200", owner)]).await;
    let (switchboard, _) = pbx
        .app("switchboard", &[("200", OpenOptions::monitor())])
        .await;
    let apps = [
        ("general", &general),
        ("sales", &sales),
        ("support", &support),
    ];

    // A new engine: the first owner-privileged opener.
    assert_eq!(pbx.engine.routes(), (vec![], DefaultRoute::FirstOwner));
    assert_eq!(
        who_gets_it(&pbx, &apps, &switchboard).await.as_deref(),
        Some("general")
    );

    pbx.engine.set_route("voice", "sales").expect("route");
    pbx.engine.set_route("voice.2", "support").expect("route");
    pbx.engine.set_route("voice.20", "general").expect("route");
    // A route to an application that is not running is skipped.
    pbx.engine
        .set_route("voice.200", "night-service")
        .expect("route");
    let (routes, _) = pbx.engine.routes();
    let listed: Vec<(&str, &str)> = routes
        .iter()
        .map(|r| (r.class.as_str(), r.application.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("voice", "sales"),
            ("voice.2", "support"),
            ("voice.20", "general"),
            ("voice.200", "night-service")
        ]
    );
    assert_eq!(
        who_gets_it(&pbx, &apps, &switchboard).await.as_deref(),
        Some("general")
    );

    // Setting a class again replaces its route.
    pbx.engine.set_route("voice.20", "sales").expect("route");
    assert_eq!(
        who_gets_it(&pbx, &apps, &switchboard).await.as_deref(),
        Some("sales")
    );

    // Clearing falls back to the next-longest prefix, then to the default.
    assert!(pbx.engine.clear_route("voice.20"));
    assert_eq!(
        who_gets_it(&pbx, &apps, &switchboard).await.as_deref(),
        Some("support")
    );
    assert!(pbx.engine.clear_route("voice.2"));
    assert!(!pbx.engine.clear_route("voice.2"), "already gone");
    assert_eq!(
        who_gets_it(&pbx, &apps, &switchboard).await.as_deref(),
        Some("sales")
    );
    assert!(pbx.engine.clear_route("voice"));
    pbx.engine
        .set_default_route(DefaultRoute::Application("support".into()));
    assert_eq!(
        who_gets_it(&pbx, &apps, &switchboard).await.as_deref(),
        Some("support")
    );

    // No route and the default cleared: the call is rejected; only the monitor saw it.
    pbx.engine.set_default_route(DefaultRoute::Reject);
    assert_eq!(who_gets_it(&pbx, &apps, &switchboard).await, None);

    // Bad classes are refused and change nothing.
    for bad in ["", "Voice", "voice..2", "voice 2"] {
        assert!(matches!(
            pbx.engine.set_route(bad, "sales"),
            Err(Error::InvalidParameter { .. })
        ));
    }
    assert_eq!(
        pbx.engine.routes().0.len(),
        1,
        "only night-service's route is left"
    );

    close_all(&pbx, [general, sales, support, switchboard]).await;
}

#[tokio::test(start_paused = true)]
async fn a_route_change_does_not_move_a_call_already_offered() {
    let pbx = pbx().await;
    let owner = OpenOptions::owner();
    let (a, _) = pbx.app("a", &[("200", owner)]).await;
    let (b, _) = pbx.app("b", &[("200", owner)]).await;
    pbx.engine.set_route("voice", "a").expect("route");
    pbx.switch
        .ring_in(RingIn::new("200", CallerId::number("5550123")))
        .expect("ring in");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(a.calls().len(), 1);
    pbx.engine.set_route("voice", "b").expect("route");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(a.calls().len(), 1, "still a's");
    assert!(b.calls().is_empty());
    let call = a.calls()[0];
    a.answer(call).await.expect("answer");
    a.drop_call(call).await.expect("drop");
    a.deallocate(call).expect("deallocate");
    close_all(&pbx, [a, b]).await;
}
