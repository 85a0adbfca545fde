//! The client against a real tapird on loopback: typed calls between two applications, the event
//! stream resuming by itself with nothing lost or repeated, resync from a snapshot after trimming, and
//! typed errors.

use std::time::Duration;

use tapir_api::{EventKind, LogonRequest};
use tapir_client::{Client, ClientError, EventStream, Service, StreamItem};
use tapir_config::Config;
use tokio::net::TcpListener;

const CONFIG: &str = r#"
[services.pbx]
kind = "simswitch"
extensions = [{ number = "2001", name = "Alice" }, { number = "2002", name = "Bob" }]
outside = [{ number = "5551000", script = "answers", after_rings = 0 }]

[profiles.default]
services = ["pbx"]

[server]
journal_events = JOURNAL

[applications.alice]
secret = "a-secret"

[applications.bob]
secret = "b-secret"

[profiles.desk]
services = ["pbx"]
lines = ["2001"]

[applications.desk]
secret = "d-secret"
profiles = ["desk"]
"#;

struct Tapird(tapir_server::Spawned);

impl Tapird {
    async fn start(journal: usize) -> Self {
        let config =
            Config::parse(&CONFIG.replace("JOURNAL", &journal.to_string())).expect("config");
        Self(tapir_server::Spawned::start(config).await.expect("tapird"))
    }

    fn url(&self) -> String {
        self.0.url()
    }

    async fn logon(&self, app: &str, secret: &str) -> Client {
        Client::logon(
            &self.url(),
            &LogonRequest {
                application: app.into(),
                secret: secret.into(),
                ..LogonRequest::default()
            },
        )
        .await
        .expect("log on")
    }

    async fn stop(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.0.stop()).await;
    }
}

/// Opens the line whose first address is `number` as owner.
async fn open(client: &Client, number: &str) -> String {
    let line = client
        .lines()
        .await
        .expect("lines")
        .into_iter()
        .find(|l| l.addresses.first().map(String::as_str) == Some(number))
        .expect("the line");
    client
        .open_line(line.id, "owner")
        .await
        .expect("open")
        .line_handle
}

/// Polls the call until it is connected.
async fn connected(client: &Client, call: &str) {
    for _ in 0..500 {
        if client.call(call).await.expect("the call").state == "connected" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{call} never connected");
}

/// The next event, within a few seconds.
async fn next_event(events: &mut EventStream) -> tapir_api::Event {
    match tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event in time")
    {
        Some(Ok(StreamItem::Event(e))) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Reads events until `call` reaches `state`; returns every event read.
async fn until_state(events: &mut EventStream, call: &str, state: &str) -> Vec<tapir_api::Event> {
    let mut seen = Vec::new();
    loop {
        let e = next_event(events).await;
        let done = matches!(&e.kind, EventKind::CallState { call: c, state: s, .. } if c == call && s == state);
        seen.push(e);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_applications_call_each_other_through_the_client() {
    let svc = Tapird::start(1000).await;
    let alice = svc.logon("alice", "a-secret").await;
    let bob = svc.logon("bob", "b-secret").await;
    let alice_line = open(&alice, "2001").await;
    open(&bob, "2002").await;
    let mut bob_events = bob.events(0);

    let alice_call = alice.make_call(&alice_line, "2002").await.expect("make");
    let bob_call = loop {
        if let EventKind::NewCall { call, .. } = next_event(&mut bob_events).await.kind {
            break call;
        }
    };
    until_state(&mut bob_events, &bob_call, "offering").await;
    let answered = bob.answer(&bob_call).await.expect("answer");
    assert_eq!(answered.state, "connected", "answer returns on effect");

    let a = alice.call(&alice_call.call).await.expect("alice's call");
    assert_ne!(a.call, answered.call, "each log-on has its own handle");
    assert_eq!(a.call_id, answered.call_id, "one call ID");
    assert!(a.features.iter().any(|f| f == "hold"));

    let held = alice.hold(&a.call).await.expect("hold");
    assert_eq!(held.state, "on_hold");
    let dropped = alice.drop_call(&a.call).await.expect("drop");
    assert_eq!(dropped.state, "idle");
    until_state(&mut bob_events, &bob_call, "disconnected").await;
    bob.drop_call(&bob_call).await.expect("bob drops");
    alice.deallocate(&a.call).await.expect("deallocate");
    bob.deallocate(&bob_call).await.expect("deallocate");
    assert!(alice.calls().await.expect("calls").is_empty());

    bob.logoff().await.expect("log off");
    // The stream ends after the log-off's last events.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(item) = bob_events.next().await {
            item.expect("events until the end");
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream ends with the log-on");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_resumes_by_itself_with_nothing_lost_or_repeated() {
    let svc = Tapird::start(1000).await;
    let alice = svc.logon("alice", "a-secret").await;
    let line = open(&alice, "2001").await;
    let mut events = alice.events(0);
    let call = alice.make_call(&line, "5551000").await.expect("make");
    let mut seen = until_state(&mut events, &call.call, "connected").await;

    events.disconnect().await;
    alice.hold(&call.call).await.expect("hold");
    alice.unhold(&call.call).await.expect("unhold");
    alice.drop_call(&call.call).await.expect("drop");
    seen.extend(until_state(&mut events, &call.call, "idle").await);

    let seqs: Vec<u64> = seen.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(
        seqs, expected,
        "every event once, in order, across the reconnect"
    );
    let states: Vec<&str> = seen
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::CallState { state, .. } => Some(state.as_str()),
            _ => None,
        })
        .collect();
    let after_reconnect = states
        .iter()
        .skip_while(|s| **s != "connected")
        .copied()
        .collect::<Vec<_>>();
    assert_eq!(
        after_reconnect,
        ["connected", "on_hold", "connected", "idle"],
        "the changes made while disconnected arrive"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trimmed_position_resyncs_from_the_snapshot() {
    let svc = Tapird::start(2).await;
    let alice = svc.logon("alice", "a-secret").await;
    let line = open(&alice, "2001").await;
    let call = alice.make_call(&line, "5551000").await.expect("make");
    connected(&alice, &call.call).await;
    for _ in 0..3 {
        alice.hold(&call.call).await.expect("hold");
        alice.unhold(&call.call).await.expect("unhold");
    }
    let mut events = alice.events(0);
    let snapshot = match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
        Ok(Some(Ok(StreamItem::Resync(s)))) => s,
        other => panic!("expected a resync, got {other:?}"),
    };
    assert_eq!(snapshot.calls.len(), 1);
    assert_eq!(snapshot.calls[0].state, "connected");
    assert_eq!(events.last_seq(), snapshot.seq);
    alice.drop_call(&call.call).await.expect("drop");
    let after = until_state(&mut events, &call.call, "idle").await;
    assert!(after.iter().all(|e| e.seq > snapshot.seq));
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_typed_with_the_services_codes() {
    let svc = Tapird::start(1000).await;
    let alice = svc.logon("alice", "a-secret").await;
    let bob = svc.logon("bob", "b-secret").await;
    let line = open(&alice, "2001").await;
    let call = alice.make_call(&line, "5551000").await.expect("make");
    connected(&alice, &call.call).await;

    let foreign = bob.drop_call(&call.call).await.expect_err("not bob's");
    assert_eq!(
        (foreign.status(), foreign.code()),
        (Some(404), Some("invalid_call_handle"))
    );
    let wrong_state = alice.answer(&call.call).await.expect_err("not offering");
    assert_eq!(wrong_state.code(), Some("invalid_call_state"));
    assert_eq!(
        alice.call(&call.call).await.expect("still there").state,
        "connected",
        "a refused request changes nothing"
    );

    let refused = Client::logon(
        &svc.url(),
        &LogonRequest {
            application: "alice".into(),
            secret: "wrong".into(),
            ..LogonRequest::default()
        },
    )
    .await
    .expect_err("wrong secret");
    assert_eq!(refused.code(), Some("unauthorized"));

    let forged = Client::with_token(&svc.url(), "forged").expect("client");
    assert_eq!(
        forged.lines().await.expect_err("forged").status(),
        Some(401)
    );
    let mut forged_events = forged.events(0);
    let refused = forged_events.next().await.expect("an answer");
    assert!(matches!(refused, Err(ClientError::Api { status: 401, .. })));
    assert!(
        forged_events.next().await.is_none(),
        "a refused stream ends"
    );

    assert!(matches!(
        Service::new("ftp://x/y"),
        Err(ClientError::BadUrl(_))
    ));
    let nobody = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let closed = nobody.local_addr().expect("addr");
    drop(nobody);
    let unreachable = Service::new(&closed.to_string())
        .expect("url")
        .health()
        .await
        .expect_err("nothing listens");
    assert!(matches!(unreachable, ClientError::Transport(_)));
    assert_eq!(
        Service::new(&svc.url())
            .expect("url")
            .health()
            .await
            .expect("up")
            .status,
        "ok"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_records_are_queryable_and_exportable_over_the_api() {
    use tapir_api::cdr::CdrQueryParams;
    let svc = Tapird::start(1000).await;
    let alice = svc.logon("alice", "a-secret").await;
    let bob = svc.logon("bob", "b-secret").await;
    let alice_line = open(&alice, "2001").await;
    open(&bob, "2002").await;
    let mut bob_events = bob.events(0);
    let call = alice.make_call(&alice_line, "2002").await.expect("make");
    let bob_call = loop {
        if let EventKind::NewCall { call, .. } = next_event(&mut bob_events).await.kind {
            break call;
        }
    };
    until_state(&mut bob_events, &bob_call, "offering").await;
    bob.answer(&bob_call).await.expect("answer");
    alice.drop_call(&call.call).await.expect("drop");
    until_state(&mut bob_events, &bob_call, "disconnected").await;
    bob.drop_call(&bob_call).await.expect("bob drops");

    // Records are written off the call's path: wait for both.
    let all = CdrQueryParams::default();
    let mut page = alice.cdrs(&all).await.expect("cdrs");
    for _ in 0..500 {
        if page.records.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        page = alice.cdrs(&all).await.expect("cdrs");
    }
    assert_eq!(page.records.len(), 2, "{page:?}");
    assert_eq!(page.next, None);
    let (bobs, alices) = (&page.records[0], &page.records[1]);
    assert_eq!(alices.call_id, bobs.call_id);
    assert_eq!(
        alices.call_id, call.call_id,
        "the record carries the call ID the API gave"
    );
    assert_eq!(
        (alices.owners.clone(), bobs.owners.clone()),
        (vec!["alice".to_string()], vec!["bob".to_string()])
    );
    assert_eq!(
        (alices.disposition.as_str(), bobs.disposition.as_str()),
        ("answered", "answered")
    );
    assert_eq!(
        (alices.origin.as_str(), alices.called.number.as_deref()),
        ("outbound", Some("2002"))
    );
    assert!(alices.answered.is_some() && bobs.id > alices.id);

    let query = |f: &dyn Fn(&mut CdrQueryParams)| {
        let mut p = CdrQueryParams::default();
        f(&mut p);
        p
    };
    let by_id = alice
        .cdrs(&query(&|p| p.call_id = Some(call.call_id.clone())))
        .await
        .expect("by call");
    assert_eq!(by_id.records.len(), 2);
    let busy = alice
        .cdrs(&query(&|p| p.disposition = Some("busy".into())))
        .await
        .expect("busy");
    assert!(busy.records.is_empty());
    let paged = alice
        .cdrs(&query(&|p| p.limit = Some(1)))
        .await
        .expect("page");
    assert_eq!((paged.records.len(), paged.next), (1, Some(bobs.id)));
    let rest = alice
        .cdrs(&query(&|p| {
            p.limit = Some(1);
            p.before = paged.next;
        }))
        .await
        .expect("next page");
    assert_eq!((rest.records[0].id, rest.next), (alices.id, None));

    let csv = alice
        .cdrs_export(&query(&|p| p.format = Some("csv".into())))
        .await
        .expect("csv");
    let lines: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert_eq!(
        lines[0],
        tapir_api::cdr::csv_columns().collect::<Vec<_>>().join(",")
    );
    assert!(lines[2].starts_with(&format!("{},{},", alices.id, alices.call_id)));
    let jsonl = alice
        .cdrs_export(&query(&|p| p.format = Some("jsonl".into())))
        .await
        .expect("jsonl");
    let parsed: Vec<tapir_api::cdr::Cdr> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record per line"))
        .collect();
    assert_eq!(parsed, page.records);
    // The same exports over the command socket: text bodies arrive as sent.
    let mut over_socket = alice.clone();
    over_socket
        .connect_commands()
        .await
        .expect("command socket");
    assert_eq!(
        over_socket
            .cdrs_export(&query(&|p| p.format = Some("csv".into())))
            .await
            .expect("csv"),
        csv
    );
    assert_eq!(
        over_socket
            .cdrs_export(&query(&|p| p.format = Some("jsonl".into())))
            .await
            .expect("jsonl"),
        jsonl
    );
    assert_eq!(over_socket.cdrs(&all).await.expect("records"), page);

    // Bad parameters: a typed 400 naming the problem, and nothing else happens.
    for bad in [
        query(&|p| p.since = Some("yesterday".into())),
        query(&|p| p.limit = Some(5000)),
        query(&|p| p.disposition = Some("hung_up".into())),
        query(&|p| p.number = Some("555 OR 1=1".into())),
    ] {
        match alice.cdrs(&bad).await {
            Err(ClientError::Api {
                status: 400,
                code,
                message,
            }) => {
                assert_eq!(code, "invalid_query");
                assert!(!message.is_empty());
            }
            other => panic!("{bad:?}: expected a 400, got {other:?}"),
        }
    }

    // An application limited to some profiles sees only its lines' records.
    let desk = Client::logon(
        &svc.url(),
        &LogonRequest {
            application: "desk".into(),
            secret: "d-secret".into(),
            profile: Some("desk".into()),
            ..LogonRequest::default()
        },
    )
    .await
    .expect("desk logs on");
    let seen = desk.cdrs(&all).await.expect("desk's records");
    assert_eq!(seen.records.len(), 1);
    assert_eq!(seen.records[0].id, alices.id);
    svc.stop().await;
}

/// The service's count of requests received over command sockets.
async fn socket_commands(client: &Client) -> u64 {
    let text = client.service().metrics().await.expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("tapir_socket_commands_total "))
        .and_then(|n| n.parse().ok())
        .expect("the counter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_over_the_command_socket_and_back_over_http_when_it_breaks() {
    let svc = Tapird::start(1000).await;
    let mut alice = svc.logon("alice", "a-secret").await;
    let line = open(&alice, "2001").await;
    assert_eq!(socket_commands(&alice).await, 0, "so far over HTTP");

    alice.connect_commands().await.expect("command socket");
    let mut events = alice.events(0);
    let call = alice.make_call(&line, "5551000").await.expect("make");
    until_state(&mut events, &call.call, "connected").await;
    alice.drop_call(&call.call).await.expect("drop");
    until_state(&mut events, &call.call, "idle").await;
    alice.deallocate(&call.call).await.expect("deallocate");
    let gone = alice.answer(&call.call).await.expect_err("deallocated");
    assert_eq!(
        (gone.status(), gone.code()),
        (Some(404), Some("invalid_call_handle")),
        "errors typed as over HTTP"
    );
    assert_eq!(socket_commands(&alice).await, 4, "all four over the socket");

    // A request bigger than the service takes breaks the socket: it is sent again over HTTP, which
    // answers it as it always does, and the client carries on over HTTP.
    let huge = "9".repeat(2 * 1024 * 1024);
    let too_big = alice.make_call(&line, &huge).await.expect_err("too big");
    assert_eq!(too_big.status(), Some(413), "{too_big}");
    let call = alice.make_call(&line, "5551000").await.expect("over HTTP");
    until_state(&mut events, &call.call, "connected").await;
    assert_eq!(
        socket_commands(&alice).await,
        4,
        "nothing more over the socket"
    );
    assert!(
        alice
            .calls()
            .await
            .expect("calls")
            .iter()
            .any(|c| c.call == call.call)
    );

    // A new socket can be opened.
    alice
        .connect_commands()
        .await
        .expect("a new command socket");
    alice.drop_call(&call.call).await.expect("drop");
    assert_eq!(socket_commands(&alice).await, 5);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conference_forwarding_digits_and_a_monitor_taking_up_calls_through_the_client() {
    use tapir_api::{CallPrivilege, DigitMode, ForwardCondition, ForwardRule};

    let svc = Tapird::start(1000).await;
    let alice = svc.logon("alice", "a-secret").await;
    let bob = svc.logon("bob", "b-secret").await;
    let alice_line = open(&alice, "2001").await;
    let bob_line = open(&bob, "2002").await;

    // Alice calls outside, then makes it a three-way conference with Bob.
    let first = alice.make_call(&alice_line, "5551000").await.expect("make");
    connected(&alice, &first.call).await;
    let setup = alice.setup_conference(&first.call).await.expect("setup");
    assert_eq!(setup.consultation.state, "dial_tone");
    alice
        .dial(&setup.consultation.call, "2002")
        .await
        .expect("dial Bob");
    let bob_call = loop {
        if let Some(c) = bob.calls().await.expect("calls").into_iter().next() {
            break c.call;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut answered = bob.answer(&bob_call).await;
    for _ in 0..100 {
        if answered.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        answered = bob.answer(&bob_call).await;
    }
    answered.expect("bob answers");
    connected(&alice, &setup.consultation.call).await;
    alice
        .add_to_conference(&setup.conference.call, &setup.consultation.call)
        .await
        .expect("add");
    let calls = alice
        .conference_calls(&first.call)
        .await
        .expect("the conference's calls");
    let handles: Vec<&str> = calls.iter().map(|c| c.call.as_str()).collect();
    assert_eq!(
        handles,
        [
            setup.conference.call.as_str(),
            first.call.as_str(),
            setup.consultation.call.as_str()
        ]
    );

    // A second log-on of Alice's application opens her line as monitor and takes up the calls on
    // it; it may listen for digits, and raise its privilege.
    let sup = svc.logon("alice", "a-secret").await;
    let lines = sup.lines().await.expect("lines");
    let id = lines
        .iter()
        .find(|l| l.addresses[0] == "2001")
        .expect("line")
        .id;
    let sup_line = sup
        .open_line(id, "monitor")
        .await
        .expect("open")
        .line_handle;
    let taken = sup.new_calls(&sup_line).await.expect("new calls");
    assert_eq!(
        taken.len(),
        3,
        "the conference and its two parties on Alice's line"
    );
    assert!(taken.iter().all(|c| c.privilege == "monitor"));
    let party = taken
        .iter()
        .find(|c| c.call_id == first.call_id)
        .expect("the first party");
    let listening = sup
        .monitor_digits(&party.call, Some(DigitMode::Dtmf))
        .await
        .expect("monitor digits");
    assert_eq!(listening.call, party.call);
    let status = sup.line_status(&sup_line).await.expect("status");
    assert!(status.in_service);
    assert_eq!(status.opens, 2);
    let raised = sup
        .set_call_privilege(&party.call, CallPrivilege::Owner)
        .await
        .expect("raise");
    assert_eq!(raised.privilege, "owner");

    alice
        .drop_call(&setup.conference.call)
        .await
        .expect("drop the conference");

    // Bob forwards on busy, then cancels: the line's status comes back each time.
    let rule = ForwardRule {
        condition: ForwardCondition::Busy,
        destination: "5551000".into(),
        rings: None,
    };
    let st = bob
        .forward(&bob_line, false, vec![rule])
        .await
        .expect("forward");
    assert_eq!(st.line_handle, bob_line);
    bob.forward(&bob_line, false, Vec::new())
        .await
        .expect("cancel forwarding");
    for c in [&alice, &bob, &sup] {
        c.logoff().await.expect("log off");
    }
    svc.stop().await;
}
