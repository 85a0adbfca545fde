//! End to end through tapird, with real phones: two baresip phones register with digest
//! authentication; an application makes a call from 2001 to 2002 over the API; both phones answer
//! by themselves and report the call established with RTP flowing; hold and unhold reach the held
//! phone as SDP direction changes; drop ends both; a call dialled on a phone appears on its line for
//! the application; a call to the trunk reaches a sipp UAS; and afterwards the service holds no
//! call, dialog or handle.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::baresip::Baresip;
use common::*;
use tapir_api::{EventKind, LogonRequest};
use tapir_client::{Client, StreamItem};

/// Waits for the next event `f` picks.
async fn next<T>(
    events: &mut tapir_client::EventStream,
    what: &str,
    mut f: impl FnMut(&EventKind) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, events.next()).await {
            Ok(Some(Ok(StreamItem::Event(e)))) => {
                if let Some(t) = f(&e.kind) {
                    return t;
                }
            }
            Ok(Some(Ok(StreamItem::Resync(_)))) => {}
            Ok(Some(Err(e))) => panic!("event stream: {e}"),
            Ok(None) => panic!("the event stream ended waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

fn state_of<'a>(call: &'a str, state: &'a str) -> impl FnMut(&EventKind) -> Option<()> + 'a {
    move |k| match k {
        EventKind::CallState {
            call: c, state: s, ..
        } if c == call && s == state => Some(()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_phones_through_tapird() {
    if !peer("baresip") || !peer("sipp") {
        return;
    }
    let dir = Scratch::new("tapird");
    let (sip, trunk) = (free_port(), free_port());
    let data = dir.0.join("data");
    let text = format!(
        r#"
[services.office]
kind = "sip"
listen = "127.0.0.1:{sip}"
lines = [
  {{ number = "2001", name = "Alice", password = "alice-secret", auto_answer = true }},
  {{ number = "2002", name = "Bob",   password = "bob-secret",   auto_answer = true }},
]
trunk = "sip:127.0.0.1:{trunk}"

[profiles.default]
services = ["office"]

[applications.e2e]
secret = "e2e-secret"

[server]
data_dir = "{}"
"#,
        data.display()
    );
    let config = tapir_config::Config::parse(&text).unwrap();
    let stores = tapir_server::Stores::open(&config).unwrap();
    let running = config.start_with(stores.cdr_sink()).await.unwrap();
    let provider = running.sip["office"].clone();
    let listener = tapir_server::listen("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        tapir_server::serve_with(&config, running, stores, listener, async {
            let _ = stopped.await;
        })
        .await
    });

    // Two phones register with digest authentication; the status table shows their lines in
    // service (before they do, both are out of service).
    let app = Client::logon(
        &url,
        &LogonRequest {
            application: "e2e".into(),
            secret: "e2e-secret".into(),
            profile: None,
            shared: false,
        },
    )
    .await
    .unwrap();
    let out_of_service = |rows: &[tapir_api::StatusRow]| {
        rows.iter()
            .find(|r| r.id == "office")
            .map(|r| r.lines_out_of_service)
    };
    assert_eq!(out_of_service(&app.status().await.unwrap()), Some(2));
    let account = |n: &str, pw: &str| {
        format!(
            "<sip:{n}@127.0.0.1:{sip}>;auth_pass={pw};regint=60;answermode=auto;audio_codecs=PCMU"
        )
    };
    let alice = Baresip::start(&dir, "alice", &account("2001", "alice-secret")).await;
    let bob = Baresip::start(&dir, "bob", &account("2002", "bob-secret")).await;
    let mut registered = false;
    for _ in 0..100 {
        if out_of_service(&app.status().await.unwrap()) == Some(0) {
            registered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        registered,
        "both lines in service once their phones registered"
    );
    let regs = provider.registrations().await;
    assert!(regs.iter().all(|r| r.contacts.len() == 1), "{regs:?}");

    let lines = app.lines().await.unwrap();
    let line = |n: &str| lines.iter().find(|l| l.addresses[0] == n).unwrap().id;
    let alice_line = app
        .open_line(line("2001"), "owner")
        .await
        .unwrap()
        .line_handle;
    app.open_line(line("2002"), "owner").await.unwrap();
    let mut events = app.events(0);

    // The line's status names the phone registered to it: where it registered from and for how long.
    let status = app.line_status(&alice_line).await.unwrap();
    assert!(status.in_service, "{status:?}");
    match &status.devices[..] {
        [phone] => {
            assert!(phone.contact.starts_with("sip:"), "{phone:?}");
            assert!(
                phone
                    .source
                    .as_deref()
                    .is_some_and(|s| s.starts_with("127.0.0.1:")),
                "{phone:?}"
            );
            assert!(
                phone.expires_in.is_some_and(|e| (1..=60).contains(&e)),
                "{phone:?}"
            );
        }
        other => panic!("one phone registered to 2001, not {other:?}"),
    }

    // The application calls 2002 from 2001: both phones answer by themselves, RTP flows.
    let call = app.make_call(&alice_line, "2002").await.unwrap().call;
    for phone in [&alice, &bob] {
        phone.wait_for("CALL_ESTABLISHED", 1, 15).await;
        phone.wait_for("CALL_RTPESTAB", 1, 15).await;
    }
    next(
        &mut events,
        "the call connected",
        state_of(&call, "connected"),
    )
    .await;
    let bob_call = app
        .calls()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.call != call)
        .expect("Bob's leg")
        .call;

    // Hold reaches the held phone as a re-INVITE with a=sendonly, Alice's own phone goes inactive;
    // unhold brings both back to sendrecv.
    let sendrecv_before = bob.trace().matches("a=sendrecv").count();
    let held = app.hold(&call).await.unwrap();
    assert_eq!(held.state, "on_hold");
    bob.wait_trace("a=sendonly", 1, 10).await;
    alice.wait_trace("a=inactive", 1, 10).await;
    let unheld = app.unhold(&call).await.unwrap();
    assert_eq!(unheld.state, "connected");
    bob.wait_trace("a=sendrecv", sendrecv_before + 1, 10).await;

    // Drop ends both phones' calls.
    app.drop_call(&call).await.unwrap();
    alice.wait_for("CALL_CLOSED", 1, 10).await;
    bob.wait_for("CALL_CLOSED", 1, 10).await;
    next(
        &mut events,
        "Bob's leg disconnected",
        state_of(&bob_call, "disconnected"),
    )
    .await;
    app.drop_call(&bob_call).await.unwrap();
    for c in app.calls().await.unwrap() {
        app.deallocate(&c.call).await.unwrap();
    }

    // A call dialled on Alice's phone shows on her line for the application.
    alice
        .command("dial", &format!("sip:2002@127.0.0.1:{sip}"))
        .await;
    let dialled = next(&mut events, "a call dialled on the phone", |k| match k {
        EventKind::NewCall {
            call, line_handle, ..
        } if *line_handle == alice_line => Some(call.clone()),
        _ => None,
    })
    .await;
    next(
        &mut events,
        "the dialled call connected",
        state_of(&dialled, "connected"),
    )
    .await;
    alice.wait_for("CALL_ESTABLISHED", 2, 10).await;
    alice.command("hangup", "").await;
    next(
        &mut events,
        "the dialled call idle",
        state_of(&dialled, "idle"),
    )
    .await;
    bob.wait_for("CALL_CLOSED", 2, 10).await;

    // A number that is no line goes to the trunk: a sipp UAS answers it.
    let mut uas = Sipp::spawn(
        &dir,
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &trunk.to_string(),
            "-bind_local",
            "-m",
            "1",
        ],
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice
        .command("dial", &format!("sip:5551234@127.0.0.1:{sip}"))
        .await;
    alice.wait_for("CALL_ESTABLISHED", 3, 10).await;
    alice.command("hangup", "").await;
    assert_eq!(uas.finish(15).await, 0, "the trunk's UAS saw a whole call");

    // Afterwards: no call, no handle, no dialog or transaction in the provider.
    let mut idle = false;
    for _ in 0..100 {
        for c in app.calls().await.unwrap() {
            if c.state == "idle" {
                let _ = app.deallocate(&c.call).await;
            } else if c.state == "disconnected" {
                let _ = app.drop_call(&c.call).await;
            }
        }
        if app.calls().await.unwrap().is_empty() && provider.is_quiet().await {
            idle = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(idle, "calls left: {:?}", app.calls().await.unwrap());
    app.logoff().await.unwrap();
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
