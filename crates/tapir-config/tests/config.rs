//! The configuration file: the embedded default runs; profiles, locations and routes from the file
//! take effect; bad files are refused with the key that is wrong.

use std::time::Duration;

use tapir::core::route::DefaultRoute;
use tapir::core::state::CallStateKind;
use tapir::profile::LogonOptions;
use tapir::translate::TranslateOptions;
use tapir::{OpenOptions, ServiceState};
use tapir_config::{Config, ConfigError};
use tapir_simswitch::{CallerId, RingIn};

#[tokio::test(start_paused = true)]
async fn the_embedded_default_starts_the_simulated_pbx_and_modems() {
    let running = Config::embedded().start().await.expect("start");
    let engine = &running.engine;
    // Four extensions and two modems.
    assert_eq!(engine.lines().len(), 6);
    let status = engine.status();
    assert!(
        status.iter().all(|r| r.state == ServiceState::Available),
        "{status:?}"
    );
    let services: Vec<&str> = status.iter().map(|r| r.service.as_str()).collect();
    assert_eq!(
        services,
        ["engine", "modems", "modems", "pbx"],
        "services in name order"
    );
    assert_eq!(
        engine.routes().1,
        DefaultRoute::FirstOwner,
        "the default route"
    );
    assert_eq!(engine.routes().0[0].class, "voice.2004");

    // The default profile: everything, dialling from Seattle.
    let app = engine.logon("app").await.expect("logon");
    assert_eq!(app.lines().len(), 6);
    assert!(app.disabled_services().is_empty());
    let t = app
        .translate_address("+1 (206) 555-0100", TranslateOptions::default())
        .expect("translate");
    assert_eq!(t.dialable, "912065550100");

    // The front desk sees its three extensions and calls out through the PBX.
    let desk = engine
        .logon_with(LogonOptions::new("desk").profile("front-desk"))
        .await
        .expect("logon");
    let numbers: Vec<String> = desk
        .lines()
        .into_iter()
        .map(|l| l.caps.addresses[0].address.clone())
        .collect();
    assert_eq!(numbers, ["2001", "2002", "2004"]);
    let line = desk
        .open_line(desk.lines()[0].id, OpenOptions::owner())
        .await
        .expect("open");
    let call = desk.make_call(line, Some("5551000")).await.expect("call");
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(
        desk.call_status(call).expect("status").state.kind(),
        CallStateKind::Connected
    );
    desk.drop_call(call).await.expect("drop");
    desk.deallocate(call).expect("deallocate");

    // The configured route: calls to 2004 go to "reception", not to the first owner.
    let reception = engine.logon("reception").await.expect("logon");
    let line_2004 = desk.lines()[2].id;
    desk.open_line(line_2004, OpenOptions::owner())
        .await
        .expect("open");
    reception
        .open_line(line_2004, OpenOptions::owner())
        .await
        .expect("open");
    running.switches["pbx"]
        .ring_in(RingIn::new("2004", CallerId::number("5550123")))
        .expect("ring");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(reception.calls().len(), 1);
    assert_eq!(desk.calls().len(), 0);
    let offered = reception.calls()[0];
    reception.reject(offered).await.expect("reject");
    reception.deallocate(offered).expect("deallocate");

    // The modems-only profile.
    let modems = engine
        .logon_with(LogonOptions::new("fax").profile("modems"))
        .await
        .expect("logon");
    assert_eq!(modems.lines().len(), 2);
    for s in [app, desk, reception, modems] {
        s.logoff().await;
    }
    assert_eq!(engine.stats(), tapir::EngineStats::default());
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_modem_on_a_missing_port_is_disabled_and_the_rest_comes_up() {
    let config = Config::parse(
        r#"
        [services.pbx]
        kind = "simswitch"
        extensions = [{ number = "100", name = "Alice" }]

        [services.office-modem]
        kind = "modem"
        port = "/nonexistent/ttyUSB9"
        max_sessions = 1

        [profiles.default]
        services = ["pbx", "office-modem"]
        "#,
    )
    .expect("parse");
    let running = config.start().await.expect("start");
    let s = running.engine.logon("app").await.expect("logon");
    assert_eq!(s.lines().len(), 1);
    let disabled = s.disabled_services();
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0].service, "office-modem");
    assert!(
        disabled[0].reason.contains("/nonexistent/ttyUSB9"),
        "{disabled:?}"
    );
    s.logoff().await;
}

/// Parses and starts `text`; the error's message.
async fn refused(text: &str) -> String {
    let parsed = Config::parse(text);
    let err = match parsed {
        Err(e) => e,
        Ok(c) => match c.start().await {
            Err(e) => e,
            Ok(_) => panic!("accepted:\n{text}"),
        },
    };
    err.to_string()
}

const PBX: &str = r#"
[services.pbx]
kind = "simswitch"
extensions = [{ number = "100", name = "Alice" }]
"#;

#[tokio::test(start_paused = true)]
async fn bad_files_are_refused_with_the_key_that_is_wrong() {
    let cases: &[(&str, String, &str)] = &[
        ("not TOML", "services = [".into(), "configuration"),
        ("unknown top-level key", "colour = 1".into(), "colour"),
        (
            "missing kind",
            "[services.pbx]\nextensions = []".into(),
            "services.pbx.kind",
        ),
        (
            "unknown kind",
            "[services.pbx]\nkind = \"isdn\"".into(),
            "unknown kind \"isdn\"",
        ),
        (
            "misspelt setting",
            "[services.pbx]\nkind = \"simswitch\"\nextentions = []".into(),
            "extentions",
        ),
        (
            "unknown script",
            format!("{PBX}outside = [{{ number = \"555\", script = \"sings\" }}]"),
            "sings",
        ),
        (
            "duplicate extension",
            "[services.pbx]\nkind = \"simswitch\"\nextensions = [{ number = \"1\", name = \"a\" }, { number = \"1\", name = \"b\" }]".into(),
            "services.pbx",
        ),
        (
            "letters in a number",
            "[services.pbx]\nkind = \"simswitch\"\nextensions = [{ number = \"1a\", name = \"a\" }]".into(),
            "services.pbx",
        ),
        (
            "zero sessions",
            format!("{PBX}max_sessions = 0"),
            "services.pbx.max_sessions",
        ),
        (
            "profile of an unknown service",
            format!("{PBX}[profiles.default]\nservices = [\"fax\"]"),
            "\"fax\"",
        ),
        (
            "profile of an unknown location",
            format!("{PBX}[profiles.default]\nservices = [\"pbx\"]\nlocation = \"mars\""),
            "profiles.default.location",
        ),
        (
            "no default profile",
            format!("{PBX}[profiles.desk]\nservices = [\"pbx\"]"),
            "default profile",
        ),
        (
            "unknown country",
            format!("{PBX}[locations.x]\ncountry = \"XX\""),
            "locations.x",
        ),
        (
            "letters in an area code",
            format!("{PBX}[locations.x]\ncountry = \"US\"\narea_code = \"4a5\""),
            "locations.x",
        ),
        (
            "bad default route",
            format!("{PBX}[routes]\ndefault = \"everyone\""),
            "routes.default",
        ),
        (
            "bad route class",
            format!("{PBX}[routes.classes]\n\"voice..1\" = \"x\""),
            "routes.classes",
        ),
        (
            "duplicate modem number",
            "[services.m]\nkind = \"modem-sim\"\nmodems = [{ number = \"1\" }, { number = \"1\" }]"
                .into(),
            "services.m.modems[1]",
        ),
        (
            "wrong type",
            format!("{PBX}ring_period_secs = \"six\""),
            "ring_period_secs",
        ),
        (
            "zero record batch",
            format!("{PBX}[cdr]\nbatch = 0"),
            "cdr.batch",
        ),
        (
            "a provider deadline of nothing",
            format!("{PBX}[engine]\nprovider_deadline_secs = 0"),
            "engine.provider_deadline_secs",
        ),
        (
            "unknown record setting",
            format!("{PBX}[cdr]\nkeep_forever = true"),
            "keep_forever",
        ),
    ];
    for (what, text, expect) in cases {
        let message = refused(text).await;
        assert!(
            message.contains(expect),
            "{what}: {message:?} does not name {expect:?}"
        );
    }
}

#[tokio::test]
async fn a_missing_file_is_an_io_error_naming_it() {
    match Config::load("/nonexistent/tapir.toml").await {
        Err(ConfigError::Io { path, .. }) => {
            assert_eq!(path.to_str(), Some("/nonexistent/tapir.toml"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_configuration_page_shows_the_embedded_default_as_it_is() {
    let page = include_str!("../../../docs/configuration.md");
    assert!(
        page.contains(tapir_config::EMBEDDED),
        "docs/configuration.md must quote crates/tapir-config/src/default.toml verbatim"
    );
}

/// The SIP service of the issue that asked for it, on a free port.
fn office(port: u16) -> String {
    format!(
        r#"
[services.office]
kind = "sip"
listen = "127.0.0.1:{port}"
lines = [
  {{ number = "2001", name = "Alice", password = "alice-secret" }},
  {{ number = "2002", name = "Bob",   password = "bob-secret" }},
  {{ number = "2009", name = "Lobby", contact = "sip:127.0.0.1:5099" }},
  {{ number = "2010", contact = "sip:127.0.0.1:5098" }},
]
trunk = "sip:127.0.0.1:5080"

[profiles.default]
services = ["office"]
"#
    )
}

fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("a free port");
    s.local_addr().expect("bound").port()
}

#[tokio::test]
async fn a_sip_service_starts_its_lines_and_those_with_no_phone_are_out_of_service() {
    let running = Config::parse(&office(free_port()))
        .expect("parses")
        .start()
        .await
        .expect("starts");
    let (names, row) = office_lines(&running.engine);
    // A line that names no name goes by its number.
    assert_eq!(
        names,
        ["Alice (2001)", "Bob (2002)", "Lobby (2009)", "2010"]
    );
    // Alice and Bob have not registered; the fixed devices are always there.
    assert_eq!((row.lines, row.lines_out_of_service), (4, 2), "{row:?}");
    assert_eq!(row.state, ServiceState::Available);
    assert!(
        row.last_error
            .as_deref()
            .is_some_and(|e| e.contains("no phone is registered")),
        "{row:?}"
    );
    running.engine.shutdown().await;
}

/// The names of the lines, and the SIP service's row of the status table.
fn office_lines(engine: &tapir::Engine) -> (Vec<String>, tapir::StatusRow) {
    let names = engine.lines().iter().map(|l| l.caps.name.clone()).collect();
    let row = engine
        .status()
        .into_iter()
        .find(|r| r.service == "office")
        .expect("a row for the SIP service");
    (names, row)
}

#[tokio::test]
async fn bad_sip_settings_are_refused_with_their_key_and_nothing_starts() {
    let port = free_port();
    let good = office(port);
    let cases = [
        (
            "an unparsable trunk",
            good.replace("sip:127.0.0.1:5080", "sip:127.0.0.1:notaport"),
            "services.office.trunk",
        ),
        (
            "a duplicate number",
            good.replace("\"2002\"", "\"2001\""),
            "services.office.lines[1].number",
        ),
        (
            "neither password nor contact",
            good.replace(",   password = \"bob-secret\"", ""),
            "services.office.lines[1].password",
        ),
        (
            "a contact that is no URI",
            good.replace("sip:127.0.0.1:5099", "lobby phone"),
            "services.office.lines[2].contact",
        ),
        (
            "a listen address without a port",
            good.replace(&format!("127.0.0.1:{port}\""), "127.0.0.1\""),
            "services.office.listen",
        ),
        (
            "an unknown line key",
            good.replace("name = \"Alice\"", "name = \"Alice\", colour = \"red\""),
            "colour",
        ),
    ];
    for (what, text, expect) in cases {
        let message = refused(&text).await;
        assert!(
            message.contains(expect),
            "{what}: {message:?} does not name {expect:?}"
        );
    }
    // Nothing was left listening: the port is free again.
    std::net::UdpSocket::bind(("127.0.0.1", port)).expect("the port was not taken");
}

/// The README's SIP quick start runs tapird on `examples/sip/office.toml`: it loads and starts as
/// written (on a free port here, so that it cannot meet another SIP service of the machine).
#[tokio::test]
async fn the_sip_example_configuration_starts() {
    let text = include_str!("../../../examples/sip/office.toml");
    let text = text.replace("127.0.0.1:5060", &format!("127.0.0.1:{}", free_port()));
    let running = Config::parse(&text)
        .expect("parses")
        .start()
        .await
        .expect("starts");
    let (names, row) = office_lines(&running.engine);
    assert_eq!(names, ["Alice (2001)", "Bob (2002)", "Lobby (2009)"]);
    assert_eq!(row.display_name, "Office SIP phones");
    assert_eq!((row.lines, row.lines_out_of_service), (3, 2), "{row:?}");
    running.engine.shutdown().await;
}
