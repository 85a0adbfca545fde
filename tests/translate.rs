//! Address translation through the engine: a session's location, make call with a canonical number,
//! dial modifiers the line cannot honour refused before anything is dialled, and bad input.

use tapir::core::dial::DialModifier;
use tapir::core::state::CallStateKind;
use tapir::translate::{Location, TranslateOptions};
use tapir::{Error, MakeCallParams, OpenOptions};
use tapir_tests::{close_all, pbx, poll_state};

#[tokio::test(start_paused = true)]
async fn make_call_translates_a_canonical_number_with_the_sessions_location() {
    let pbx = pbx().await;
    let (app, lines) = pbx.app("dialer", &[("100", OpenOptions::owner())]).await;
    let canonical = MakeCallParams {
        translate: true,
        ..MakeCallParams::to("+1 (425) 555-1000")
    };

    // No location yet: a typed error, and nothing is dialled.
    assert!(matches!(
        app.make_call_with(lines[0], canonical.clone()).await,
        Err(Error::InvalidParameter { .. })
    ));
    assert!(matches!(
        app.set_location(Location::new("XX", "1")),
        Err(Error::InvalidAddress { .. })
    ));

    app.set_location(Location::new("US", "425"))
        .expect("location");
    let out = app
        .translate_address("+1 (206) 555-0100", TranslateOptions::default())
        .expect("translate");
    assert_eq!(out.dialable, "12065550100");
    assert!(out.flags.long_distance);

    // Local from area 425: dialled as 5551000, which the simulated PBX's far end answers.
    let call = app
        .make_call_with(lines[0], canonical)
        .await
        .expect("make call");
    assert_eq!(
        app.call_info(call)
            .expect("info")
            .info
            .called
            .number
            .as_deref(),
        Some("5551000")
    );
    poll_state(&app, call, CallStateKind::Connected).await;
    app.drop_call(call).await.expect("drop");
    app.deallocate(call).expect("deallocate");

    // A modifier the line cannot honour is refused before anything is dialled.
    let before = pbx.engine.stats();
    let r = app
        .make_call_with(
            lines[0],
            MakeCallParams {
                translate: true,
                ..MakeCallParams::to("+1 (425) 555-1000@")
            },
        )
        .await;
    assert!(
        matches!(
            r,
            Err(Error::DialModifierUnsupported(DialModifier::WaitForQuiet))
        ),
        "{r:?}"
    );
    assert_eq!(pbx.engine.stats(), before);

    // Bad canonical input.
    for bad in ["+1 (425 555-1000", "+1 (425) CALL-NOW", "+999 (1) 2345"] {
        let r = app
            .make_call_with(
                lines[0],
                MakeCallParams {
                    translate: true,
                    ..MakeCallParams::to(bad)
                },
            )
            .await;
        assert!(
            matches!(r, Err(Error::InvalidAddress { .. })),
            "{bad}: {r:?}"
        );
    }
    close_all(&pbx, [app]).await;
}
