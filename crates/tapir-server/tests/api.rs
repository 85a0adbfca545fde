//! tapird over real loopback sockets: two applications call each other, the event stream resumes after
//! a reconnect with nothing lost or repeated, trimmed journals send the client to a snapshot, bad
//! requests get the documented errors and change nothing, retried requests are applied once.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tapir_config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const CONFIG: &str = r#"
[services.pbx]
kind = "simswitch"
ring_period_secs = 1
extensions = [{ number = "2001", name = "Alice" }, { number = "2002", name = "Bob" }, { number = "2003", name = "Carol" }]
outside = [{ number = "5551000", script = "answers", after_rings = 0 }]

[locations.home]
country = "US"
area_code = "425"

[profiles.default]
services = ["pbx"]
location = "home"

[profiles.bob]
services = ["pbx"]
lines = ["2002"]

[server]
journal_events = JOURNAL

[applications.alice]
secret = "a-secret"

[applications.bob]
secret = "b-secret"
profiles = ["bob"]
"#;

struct Service {
    addr: SocketAddr,
    tapird: tapir_server::Spawned,
}

impl Service {
    async fn start(journal: usize) -> Self {
        let config =
            Config::parse(&CONFIG.replace("JOURNAL", &journal.to_string())).expect("config");
        let tapird = tapir_server::Spawned::start(config).await.expect("tapird");
        Self {
            addr: tapird.addr(),
            tapird,
        }
    }

    async fn stop(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.tapird.stop()).await;
    }

    /// One HTTP/1.1 request over a fresh connection: (status, JSON body or Null).
    async fn raw(&self, request: Vec<u8>) -> (u16, Value) {
        let mut tcp = TcpStream::connect(self.addr).await.expect("connect");
        tcp.write_all(&request).await.expect("write");
        let mut buf = Vec::new();
        tcp.read_to_end(&mut buf).await.expect("read");
        let text = String::from_utf8_lossy(&buf);
        let status: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or("");
        if !body.is_empty() || method != "GET" {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.raw(req.into_bytes()).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(token), &[], Some(&body.to_string()))
            .await
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, Some(token), &[], None).await
    }

    /// The Prometheus text of `/metrics` (no token needed).
    async fn metrics(&self) -> String {
        let mut tcp = TcpStream::connect(self.addr).await.expect("connect");
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut buf = String::new();
        tcp.read_to_string(&mut buf).await.expect("read");
        buf.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    }

    async fn logon(&self, app: &str, secret: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/v1/sessions",
                None,
                &[],
                Some(&json!({ "application": app, "secret": secret }).to_string()),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Opens the line with address `number` as owner; returns the line handle.
    async fn open(&self, token: &str, number: &str) -> String {
        self.open_as(token, number, "owner").await
    }

    /// Opens the line with address `number` with `privilege`; returns the line handle.
    async fn open_as(&self, token: &str, number: &str, privilege: &str) -> String {
        let (_, lines) = self.get("/v1/lines", token).await;
        let id = lines
            .as_array()
            .expect("lines")
            .iter()
            .find(|l| l["addresses"][0] == number)
            .expect("line")["id"]
            .clone();
        let (status, body) = self
            .post(
                "/v1/line-opens",
                token,
                json!({ "line": id, "privilege": privilege }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["line_handle"].as_str().expect("handle").to_owned()
    }

    /// Calls `destination` from the line open; the new call's handle.
    async fn place_call(&self, token: &str, line: &str, destination: &str) -> String {
        let (status, call) = self
            .post(
                "/v1/calls",
                token,
                json!({ "line_handle": line, "destination": destination }),
            )
            .await;
        assert_eq!(status, 201, "{call}");
        call["call"].as_str().expect("handle").to_owned()
    }

    /// Calls `destination` from the line open and waits until the call is connected; the call handle.
    async fn connected_call(&self, token: &str, line: &str, destination: &str) -> String {
        let call = self.place_call(token, line, destination).await;
        self.until_state(token, &call, "connected").await;
        call
    }

    /// `caller` calls `number` from its line open; `callee`, reading `events`, is offered the call
    /// and answers it (the answer returns the call connected). (caller's handle, callee's handle)
    async fn answered_call(
        &self,
        caller: &str,
        line: &str,
        number: &str,
        callee: &str,
        events: &mut Events,
    ) -> (String, String) {
        let caller_call = self.place_call(caller, line, number).await;
        let new_call = events.until(|e| e["type"] == "new_call").await;
        let callee_call = new_call.last().expect("event")["call"]
            .as_str()
            .expect("handle")
            .to_owned();
        events.until(is_state(&callee_call, "offering")).await;
        let (status, answered) = self
            .post(
                &format!("/v1/calls/{callee_call}/answer"),
                callee,
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{answered}");
        assert_eq!(answered["state"], "connected", "answer returns on effect");
        (caller_call, callee_call)
    }

    /// Polls the call until it is in `state`.
    async fn until_state(&self, token: &str, call: &str, state: &str) {
        for _ in 0..500 {
            let (_, c) = self.get(&format!("/v1/calls/{call}"), token).await;
            if c["state"] == state {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{call} never became {state}");
    }

    /// Opens the WebSocket at `path` with `token`; the service's refusal as an error.
    async fn socket(
        &self,
        path: &str,
        token: &str,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let mut req = format!("ws://{}{path}", self.addr)
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        tokio_tungstenite::connect_async(req)
            .await
            .map(|(ws, _)| ws)
    }

    async fn events(&self, token: &str, after: u64) -> Events {
        let ws = self
            .socket(&format!("/v1/events?after={after}"), token)
            .await
            .expect("websocket");
        Events { ws }
    }
}

/// The next text message of a socket as JSON, within a few seconds.
async fn next_json(ws: &mut Ws) -> Value {
    use futures_util::StreamExt;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("message");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).expect("json");
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

struct Events {
    ws: Ws,
}

/// The command socket of a log-on.
struct Commands {
    ws: Ws,
}

impl Commands {
    async fn open(svc: &Service, token: &str) -> Self {
        let ws = svc.socket("/v1/commands", token).await.expect("websocket");
        Self { ws }
    }

    async fn send(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .expect("send");
    }

    /// The next reply, within a few seconds.
    async fn reply(&mut self) -> Value {
        next_json(&mut self.ws).await
    }

    /// One request and its reply: (status, body or Null).
    async fn request(
        &mut self,
        id: u64,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut msg = json!({ "id": id, "method": method, "path": path });
        if let Some(b) = body {
            msg["body"] = b;
        }
        self.send(&msg.to_string()).await;
        let reply = self.reply().await;
        assert_eq!(reply["id"], id, "{reply}");
        let status = reply["status"].as_u64().expect("status") as u16;
        (status, reply.get("body").cloned().unwrap_or(Value::Null))
    }
}

impl Events {
    /// The next event, within a few seconds.
    async fn next(&mut self) -> Value {
        next_json(&mut self.ws).await
    }

    /// Reads events until one matches.
    async fn until(&mut self, what: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let e = self.next().await;
            let done = what(&e);
            seen.push(e);
            if done {
                return seen;
            }
        }
    }
}

fn is_state(call: &str, state: &str) -> impl Fn(&Value) -> bool {
    let (call, state) = (call.to_owned(), state.to_owned());
    move |e: &Value| e["type"] == "call_state" && e["call"] == call && e["state"] == state
}

#[tokio::test]
async fn two_applications_call_each_other_with_their_own_handles_and_one_call_id() {
    let svc = Service::start(1000).await;
    let alice = svc.logon("alice", "a-secret").await;
    let bob = svc.logon("bob", "b-secret").await;
    let (_, lines) = svc.get("/v1/lines", &bob).await;
    assert_eq!(
        lines.as_array().map(Vec::len),
        Some(1),
        "bob's profile: one line"
    );
    let alice_line = svc.open(&alice, "2001").await;
    svc.open(&bob, "2002").await;
    let mut bob_events = svc.events(&bob, 0).await;

    let (alice_call, bob_call) = svc
        .answered_call(&alice, &alice_line, "2002", &bob, &mut bob_events)
        .await;

    let (_, a) = svc.get(&format!("/v1/calls/{alice_call}"), &alice).await;
    let (_, b) = svc.get(&format!("/v1/calls/{bob_call}"), &bob).await;
    assert_ne!(a["call"], b["call"], "each session has its own handle");
    assert_eq!(a["call_id"], b["call_id"], "one call ID for both");
    assert_eq!(
        (&a["called"], &b["called"]),
        (
            &json!({ "number": "2002", "name": "Bob" }),
            &json!({ "number": "2002", "name": "Bob" })
        ),
        "both ends name the called party as the switch knows it"
    );
    assert!(
        a["features"]
            .as_array()
            .expect("features")
            .contains(&json!("drop"))
    );

    let metrics = svc.metrics().await;
    assert!(
        metrics.contains("tapir_calls_by_state{state=\"connected\"} 2\n"),
        "both legs are counted connected:\n{metrics}"
    );
    assert!(metrics.contains("tapir_calls_by_state{state=\"offering\"} 0\n"));
    assert!(metrics.contains("tapir_event_queue_depth "));

    let (status, dropped) = svc
        .post(&format!("/v1/calls/{alice_call}/drop"), &alice, json!({}))
        .await;
    assert_eq!((status, dropped["state"].as_str()), (200, Some("idle")));
    bob_events.until(is_state(&bob_call, "disconnected")).await;
    let (status, _) = svc
        .post(&format!("/v1/calls/{bob_call}/drop"), &bob, json!({}))
        .await;
    assert_eq!(status, 200);
    // Each operation's time is a histogram by its name: two drops, one make-call; a name that is no
    // operation is no label.
    svc.post(&format!("/v1/calls/{bob_call}/no-such-op"), &bob, json!({}))
        .await;
    let metrics = svc.metrics().await;
    for (op, n) in [("drop", 2), ("make-call", 1)] {
        assert!(
            metrics.contains(&format!(
                "tapir_operation_duration_seconds_count{{operation=\"{op}\"}} {n}\n"
            )),
            "{op} timed {n} times:\n{metrics}"
        );
    }
    assert!(!metrics.contains("no-such-op"), "{metrics}");
    for (token, call) in [(&alice, &alice_call), (&bob, &bob_call)] {
        let (status, _) = svc
            .call(
                "DELETE",
                &format!("/v1/calls/{call}"),
                Some(token),
                &[],
                None,
            )
            .await;
        assert_eq!(status, 204);
    }
    let (_, calls) = svc.get("/v1/calls", &alice).await;
    assert_eq!(calls, json!([]));
    svc.stop().await;
}

#[tokio::test]
async fn a_client_that_reconnects_gets_every_missed_event_once_in_order() {
    let svc = Service::start(1000).await;
    let alice = svc.logon("alice", "a-secret").await;
    let line = svc.open(&alice, "2001").await;
    let mut events = svc.events(&alice, 0).await;
    let (_, call) = svc
        .post(
            "/v1/calls",
            &alice,
            json!({ "line_handle": line, "destination": "5551000" }),
        )
        .await;
    let call = call["call"].as_str().expect("handle").to_owned();
    let seen = events.until(is_state(&call, "connected")).await;
    let last_seen = seen.last().expect("event")["seq"].as_u64().expect("seq");
    // The connection goes away mid-call; more happens meanwhile.
    drop(events);
    for op in ["hold", "unhold", "hold", "unhold"] {
        let (status, body) = svc
            .post(&format!("/v1/calls/{call}/{op}"), &alice, json!({}))
            .await;
        assert_eq!(status, 200, "{op}: {body}");
    }
    let (status, _) = svc
        .post(&format!("/v1/calls/{call}/drop"), &alice, json!({}))
        .await;
    assert_eq!(status, 200);

    let mut resumed = svc.events(&alice, last_seen).await;
    let missed = resumed.until(is_state(&call, "idle")).await;
    let seqs: Vec<u64> = missed.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let expected: Vec<u64> = (last_seen + 1..=last_seen + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "every missed event, once, in order");
    let states: Vec<&str> = missed
        .iter()
        .filter(|e| e["type"] == "call_state")
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert_eq!(
        states,
        ["on_hold", "connected", "on_hold", "connected", "idle"]
    );
    svc.stop().await;
}

#[tokio::test]
async fn a_trimmed_journal_sends_the_client_to_a_snapshot() {
    let svc = Service::start(3).await;
    let alice = svc.logon("alice", "a-secret").await;
    let line = svc.open(&alice, "2001").await;
    let call = svc.connected_call(&alice, &line, "5551000").await;
    for op in ["hold", "unhold", "hold"] {
        let (status, body) = svc
            .post(&format!("/v1/calls/{call}/{op}"), &alice, json!({}))
            .await;
        assert_eq!(status, 200, "{op}: {body}");
    }
    let mut events = svc.events(&alice, 0).await;
    let told = events.next().await;
    assert_eq!(told["type"], "trimmed", "{told}");
    let first_kept = told["first_kept"].as_u64().expect("first kept");
    assert!(first_kept > 1);

    let (status, snap) = svc.get("/v1/snapshot", &alice).await;
    assert_eq!(status, 200);
    assert_eq!(snap["lines"][0]["line_handle"], line);
    assert_eq!(snap["calls"][0]["call"], call);
    assert_eq!(snap["calls"][0]["state"], "on_hold");
    let seq = snap["seq"].as_u64().expect("seq");
    let mut events = svc.events(&alice, seq).await;
    svc.post(&format!("/v1/calls/{call}/unhold"), &alice, json!({}))
        .await;
    let next = events.next().await;
    assert_eq!(next["seq"].as_u64(), Some(seq + 1));
    assert_eq!(next["state"], "connected");
    svc.stop().await;
}

#[tokio::test]
async fn bad_requests_get_the_documented_errors_and_change_nothing() {
    let svc = Service::start(1000).await;
    let alice = svc.logon("alice", "a-secret").await;
    let bob = svc.logon("bob", "b-secret").await;
    let line = svc.open(&alice, "2001").await;
    let call = svc.connected_call(&alice, &line, "5551000").await;
    let before = svc.get("/v1/calls", &alice).await;

    let long = "x".repeat(200_000);
    let drop_path = format!("/v1/calls/{call}/drop");
    let read_path = format!("/v1/calls/{call}");
    let answer_path = format!("/v1/calls/{call}/answer");
    let dial_path = format!("/v1/calls/{call}/dial");
    let fly_path = format!("/v1/calls/{call}/fly");
    let digits_path = format!("/v1/calls/{call}/generate-digits");
    let forward_path = format!("/v1/line-opens/{line}/forward");
    let fly_line_path = format!("/v1/line-opens/{line}/fly");
    /// (what, expected status, expected code, (method, path, token, body))
    type Case<'a> = (
        &'a str,
        u16,
        &'a str,
        (&'a str, &'a str, Option<&'a str>, Option<String>),
    );
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            400,
            "bad_request",
            ("POST", "/v1/calls", Some(&alice), Some("{".into())),
        ),
        (
            "wrong type",
            422,
            "invalid_body",
            (
                "POST",
                "/v1/calls",
                Some(&alice),
                Some(json!({ "line_handle": 5 }).to_string()),
            ),
        ),
        (
            "an operation's body that is an array, not an object",
            422,
            "invalid_body",
            (
                "POST",
                "/v1/calls/call:0123456789abcdef/monitor-digits",
                Some(&alice),
                Some("[]".into()),
            ),
        ),
        (
            "unknown field",
            422,
            "invalid_body",
            (
                "POST",
                "/v1/calls",
                Some(&alice),
                Some(json!({ "line_handle": line, "colour": "red" }).to_string()),
            ),
        ),
        (
            "huge body",
            413,
            "payload_too_large",
            (
                "POST",
                "/v1/calls",
                Some(&alice),
                Some(format!("{{\"destination\":\"{long}\"}}")),
            ),
        ),
        (
            "no token",
            401,
            "unauthorized",
            ("GET", "/v1/calls", None, None),
        ),
        (
            "forged token",
            401,
            "unauthorized",
            (
                "GET",
                "/v1/calls",
                Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
                None,
            ),
        ),
        (
            "wrong secret",
            401,
            "unauthorized",
            (
                "POST",
                "/v1/sessions",
                None,
                Some(json!({ "application": "alice", "secret": "guess" }).to_string()),
            ),
        ),
        (
            "profile not allowed",
            403,
            "forbidden",
            (
                "POST",
                "/v1/sessions",
                None,
                Some(
                    json!({ "application": "bob", "secret": "b-secret", "profile": "default" })
                        .to_string(),
                ),
            ),
        ),
        (
            "foreign call handle",
            404,
            "invalid_call_handle",
            ("POST", &drop_path, Some(&bob), Some("{}".into())),
        ),
        (
            "foreign call handle read",
            404,
            "invalid_call_handle",
            ("GET", &read_path, Some(&bob), None),
        ),
        (
            "made-up call handle",
            404,
            "invalid_call_handle",
            ("GET", "/v1/calls/call:0000000000000001", Some(&alice), None),
        ),
        (
            "not a handle",
            404,
            "invalid_call_handle",
            ("GET", "/v1/calls/42", Some(&alice), None),
        ),
        (
            "foreign line handle",
            404,
            "invalid_line_handle",
            (
                "POST",
                "/v1/calls",
                Some(&bob),
                Some(json!({ "line_handle": line, "destination": "2002" }).to_string()),
            ),
        ),
        (
            "line outside the profile",
            404,
            "invalid_line",
            (
                "POST",
                "/v1/line-opens",
                Some(&bob),
                Some(json!({ "line": 0, "privilege": "owner" }).to_string()),
            ),
        ),
        (
            "bad privilege",
            400,
            "invalid_privilege",
            (
                "POST",
                "/v1/line-opens",
                Some(&alice),
                Some(json!({ "line": 0, "privilege": "boss" }).to_string()),
            ),
        ),
        (
            "wrong state",
            409,
            "invalid_call_state",
            ("POST", &answer_path, Some(&alice), Some("{}".into())),
        ),
        (
            "bad dial string",
            400,
            "invalid_dial_string",
            (
                "POST",
                &dial_path,
                Some(&alice),
                Some(json!({ "digits": "12<>" }).to_string()),
            ),
        ),
        (
            "unknown operation",
            404,
            "not_found",
            ("POST", &fly_path, Some(&alice), Some("{}".into())),
        ),
        (
            "routes by a limited application",
            403,
            "forbidden",
            (
                "PUT",
                "/v1/routes/voice",
                Some(&bob),
                Some(json!({ "application": "bob" }).to_string()),
            ),
        ),
        (
            "bad route class",
            400,
            "invalid_parameter",
            (
                "PUT",
                "/v1/routes/voice..1",
                Some(&alice),
                Some(json!({ "application": "bob" }).to_string()),
            ),
        ),
        (
            "a wrong token on the event stream, without upgrade headers",
            401,
            "unauthorized",
            ("GET", "/v1/events", Some("not-a-token"), None),
        ),
        (
            "the command socket without upgrade headers",
            400,
            "bad_request",
            ("GET", "/v1/commands", Some(&alice), None),
        ),
        (
            "a method the endpoint does not take",
            405,
            "method_not_allowed",
            ("DELETE", "/v1/lines", Some(&alice), None),
        ),
        (
            "a bad digit mode",
            422,
            "invalid_body",
            (
                "POST",
                &digits_path,
                Some(&alice),
                Some(json!({ "digits": "1", "digit_mode": "ring" }).to_string()),
            ),
        ),
        (
            "a bad forwarding condition",
            422,
            "invalid_body",
            (
                "POST",
                &forward_path,
                Some(&alice),
                Some(
                    json!({ "rules": [{ "condition": "sometimes", "destination": "2002" }] })
                        .to_string(),
                ),
            ),
        ),
        (
            "a forwarding destination that is no dial string",
            400,
            "invalid_dial_string",
            (
                "POST",
                &forward_path,
                Some(&alice),
                Some(
                    json!({ "rules": [{ "condition": "busy", "destination": "20x2" }] })
                        .to_string(),
                ),
            ),
        ),
        (
            "no line operation of that name",
            404,
            "not_found",
            ("POST", &fly_line_path, Some(&alice), None),
        ),
        (
            "bad address",
            400,
            "invalid_address",
            (
                "POST",
                "/v1/translate",
                Some(&alice),
                Some(json!({ "address": "+1 (425 555-0100" }).to_string()),
            ),
        ),
    ];
    for (what, status, code, (method, path, token, body)) in cases {
        let (got, err) = svc.call(method, path, token, &[], body.as_deref()).await;
        assert_eq!(
            (got, err["code"].as_str()),
            (status, Some(code)),
            "{what}: {err}"
        );
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    // A field of the wrong type is named, for the operations' bodies as for the others.
    for (path, body, field) in [
        (&dial_path, json!({ "digits": 5 }), "digits"),
        (
            &forward_path,
            json!({ "do_not_disturb": "yes" }),
            "do_not_disturb",
        ),
        (
            &"/v1/calls".to_owned(),
            json!({ "line_handle": 5 }),
            "line_handle",
        ),
    ] {
        let (got, err) = svc.post(path, &alice, body).await;
        assert_eq!(got, 422, "{err}");
        let message = err["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{path}: {message}");
    }
    assert_eq!(
        svc.get("/v1/calls", &alice).await,
        before,
        "nothing changed"
    );

    let metrics = svc.metrics().await;
    assert!(
        metrics.contains("tapir_operations_total{result=\"invalid_call_state\"} "),
        "refusals are counted by code:\n{metrics}"
    );
    // Health and metrics need no token; a logged-off token is told its log-on ended.
    assert_eq!(svc.call("GET", "/healthz", None, &[], None).await.0, 200);
    let (status, _) = svc.call("GET", "/metrics", None, &[], None).await;
    assert_eq!(status, 200);
    let (status, _) = svc
        .call("DELETE", "/v1/session", Some(&bob), &[], None)
        .await;
    assert_eq!(status, 204);
    let (status, err) = svc.get("/v1/lines", &bob).await;
    assert_eq!((status, err["code"].as_str()), (410, Some("session_ended")));
    svc.stop().await;
}

#[tokio::test]
async fn a_retried_request_with_the_same_id_is_applied_once() {
    let svc = Service::start(1000).await;
    let alice = svc.logon("alice", "a-secret").await;
    let line = svc.open(&alice, "2001").await;
    let body = json!({ "line_handle": line, "destination": "5551000" }).to_string();
    let first = svc
        .call(
            "POST",
            "/v1/calls",
            Some(&alice),
            &[("Request-Id", "r-1")],
            Some(&body),
        )
        .await;
    let again = svc
        .call(
            "POST",
            "/v1/calls",
            Some(&alice),
            &[("Request-Id", "r-1")],
            Some(&body),
        )
        .await;
    assert_eq!(first.0, 201);
    assert_eq!(first, again, "the same reply");
    let (_, calls) = svc.get("/v1/calls", &alice).await;
    assert_eq!(calls.as_array().map(Vec::len), Some(1), "one call made");
    // A failure is remembered too: the retry does not try again.
    let call = first.1["call"].as_str().expect("handle").to_owned();
    let drop1 = svc
        .call(
            "POST",
            &format!("/v1/calls/{call}/answer"),
            Some(&alice),
            &[("Request-Id", "r-2")],
            Some("{}"),
        )
        .await;
    let drop2 = svc
        .call(
            "POST",
            &format!("/v1/calls/{call}/answer"),
            Some(&alice),
            &[("Request-Id", "r-2")],
            Some("{}"),
        )
        .await;
    assert_eq!(drop1.0, 409);
    assert_eq!(drop1, drop2);
    svc.stop().await;
}

#[tokio::test]
async fn the_openapi_document_is_served_without_a_token_and_every_route_it_lists_exists() {
    let svc = Service::start(1000).await;
    let (status, doc) = svc.call("GET", "/openapi.json", None, &[], None).await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    for schema in [
        "Call",
        "LogonRequest",
        "EventKind",
        "StreamControl",
        "ErrorBody",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} generated from the wire types"
        );
    }
    assert_eq!(
        doc["components"]["schemas"]["CallOpRequest"]["properties"]["digits"]["type"],
        json!(["string", "null"]),
        "the schema follows the Rust type"
    );
    // Each enum of the wire lists its values, as the service spells them.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["ForwardCondition"]["enum"],
        json!(tapir_api::ForwardCondition::NAMES)
    );
    assert_eq!(
        schemas["LinePrivilege"]["enum"],
        json!(tapir_api::LinePrivilege::NAMES)
    );
    assert_eq!(
        schemas["CompletionMode"]["enum"],
        json!(tapir_api::CompletionMode::NAMES)
    );
    assert_eq!(
        schemas["Call"]["properties"]["state"]["enum"],
        json!(tapir::core::state::CallStateKind::NAMES),
        "the states, from the engine's table"
    );
    assert_eq!(
        schemas["StatusRow"]["properties"]["state"]["enum"],
        json!(tapir::ServiceState::NAMES)
    );
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        for (method, _) in item.as_object().expect("path item") {
            operations += 1;
            let concrete = path
                .replace("{call}", "call:0123456789abcdef")
                .replace("{op}", "hold")
                .replace("{handle}", "line:0123456789abcdef")
                .replace("{class}", "voice.9999");
            // A fresh log-on each time: one of them is the log-off.
            let token = svc.logon("alice", "a-secret").await;
            let (status, body) = svc
                .call(
                    &method.to_uppercase(),
                    &concrete,
                    Some(&token),
                    &[],
                    Some("{}"),
                )
                .await;
            assert_ne!(status, 405, "{method} {path} is routed");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(
                !(status == 404
                    && (message == "no such endpoint" || message.contains(" operation \""))),
                "{method} {path} is routed: {body}"
            );
        }
    }
    assert_eq!(operations, tapir_server::openapi::endpoints().len());
    svc.stop().await;
}

#[tokio::test]
async fn the_command_socket_answers_as_http_does_and_refuses_what_is_not_a_request() {
    let svc = Service::start(1000).await;
    let alice = svc.logon("alice", "a-secret").await;
    let line = svc.open(&alice, "2001").await;
    let mut cmd = Commands::open(&svc, &alice).await;

    // A call made over the socket is the log-on's own: HTTP sees it with the same handle.
    let (status, call) = cmd
        .request(
            1,
            "POST",
            "/v1/calls",
            Some(json!({ "line_handle": line, "destination": "5551000" })),
        )
        .await;
    assert_eq!(status, 201, "{call}");
    let handle = call["call"].as_str().expect("handle").to_owned();
    svc.until_state(&alice, &handle, "connected").await;
    let (status, over_socket) = cmd
        .request(2, "GET", &format!("/v1/calls/{handle}"), None)
        .await;
    let (_, over_http) = svc.get(&format!("/v1/calls/{handle}"), &alice).await;
    assert_eq!(status, 200);
    assert_eq!(over_socket, over_http, "the same body either way");

    // Errors are the API's: same status, same code.
    let (status, err) = cmd
        .request(
            3,
            "POST",
            &format!("/v1/calls/{handle}/answer"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (409, Some("invalid_call_state")),
        "{err}"
    );
    // A body that is not JSON comes as text.
    cmd.send(r#"{"id":"m","method":"GET","path":"/metrics"}"#)
        .await;
    let r = cmd.reply().await;
    assert_eq!(r["status"], 200, "{r}");
    let text = r["text"].as_str().expect("metrics as text");
    assert!(text.contains("tapir_socket_commands_total"), "{text}");
    assert!(r.get("body").is_none());
    let (status, err) = cmd.request(4, "GET", "/v1/nowhere", None).await;
    assert_eq!((status, err["code"].as_str()), (404, Some("not_found")));
    let (status, _) = cmd
        .request(5, "POST", "/v1/calls", Some(json!({ "line_handle": 7 })))
        .await;
    assert_eq!(status, 422, "a body of the wrong shape, as over HTTP");

    // Messages that are not requests: 400, with the ID when one could be read; nothing changes.
    cmd.send("not json").await;
    let r = cmd.reply().await;
    assert_eq!(
        (r["id"].clone(), r["status"].as_u64()),
        (Value::Null, Some(400)),
        "{r}"
    );
    assert_eq!(r["body"]["code"], "bad_request");
    cmd.send(r#"{"id":"x","method":"PATCH","path":"/v1/calls"}"#)
        .await;
    let r = cmd.reply().await;
    assert_eq!(
        (r["id"].as_str(), r["status"].as_u64()),
        (Some("x"), Some(400)),
        "{r}"
    );
    cmd.send(r#"{"id":9,"path":"/v1/calls"}"#).await;
    let r = cmd.reply().await;
    assert_eq!(
        (r["id"].as_u64(), r["status"].as_u64()),
        (Some(9), Some(400)),
        "no method: {r}"
    );
    cmd.send(r#"{"id":[1],"method":"GET","path":"/v1/calls"}"#)
        .await;
    let r = cmd.reply().await;
    assert_eq!(
        r["status"].as_u64(),
        Some(400),
        "an ID that is not a number or string: {r}"
    );
    let (_, calls) = svc.get("/v1/calls", &alice).await;
    assert_eq!(
        calls.as_array().map(Vec::len),
        Some(1),
        "still the one call"
    );

    // A request ID makes a repeated request over the socket a repeat, as over HTTP.
    let drop = json!({"id": 10, "method": "POST", "path": format!("/v1/calls/{handle}/drop"),
        "request_id": "d-1", "body": {}});
    cmd.send(&drop.to_string()).await;
    let first = cmd.reply().await;
    assert_eq!(first["status"], 200, "{first}");
    cmd.send(&drop.to_string()).await;
    let again = cmd.reply().await;
    assert_eq!(
        first, again,
        "the first reply again, not a second drop (which would be 409)"
    );

    // Requests run concurrently and every one is answered.
    for id in 100..120 {
        cmd.send(&json!({"id": id, "method": "GET", "path": "/v1/session"}).to_string())
            .await;
    }
    let mut ids: Vec<u64> = Vec::new();
    for _ in 100..120 {
        let r = cmd.reply().await;
        assert_eq!(r["status"], 200);
        ids.push(r["id"].as_u64().expect("id"));
    }
    ids.sort_unstable();
    assert_eq!(ids, (100..120).collect::<Vec<_>>());

    // The socket needs a live log-on.
    match svc.socket("/v1/commands", "nobody").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    svc.stop().await;
}

/// A second log-on of `app` that opens the line of `number` as monitor and takes up its calls: the
/// token, the line handle and the monitor handles.
async fn monitor_taking_up(
    svc: &Service,
    app: &str,
    secret: &str,
    number: &str,
) -> (String, String, Vec<String>) {
    let token = svc.logon(app, secret).await;
    let line = svc.open_as(&token, number, "monitor").await;
    let (_, before) = svc.get("/v1/calls", &token).await;
    assert_eq!(before, json!([]), "opening announces nothing by itself");
    let (status, taken) = svc
        .post(
            &format!("/v1/line-opens/{line}/new-calls"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{taken}");
    let handles = taken
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| c["call"].as_str().expect("handle").to_owned())
        .collect();
    (token, line, handles)
}

#[tokio::test]
async fn a_monitor_opening_a_busy_line_takes_up_its_call_over_http_and_follows_it() {
    let svc = Service::start(1000).await;
    let alice = svc.logon("alice", "a-secret").await;
    let line = svc.open(&alice, "2001").await;
    let call = svc.connected_call(&alice, &line, "5551000").await;
    let (_, mine) = svc.get(&format!("/v1/calls/{call}"), &alice).await;

    let (sup, _, taken) = monitor_taking_up(&svc, "alice", "a-secret", "2001").await;
    assert_eq!(taken.len(), 1, "the call in progress");
    let m = &taken[0];
    let (_, theirs) = svc.get(&format!("/v1/calls/{m}"), &sup).await;
    assert_eq!(theirs["call_id"], mine["call_id"], "the same call");
    assert_eq!(theirs["state"], "connected");
    assert_eq!(theirs["privilege"], "monitor");
    assert_eq!(theirs["features"], json!(["monitor-digits"]), "a monitor's");

    // On the stream: new_call before anything else names the handle, then its state now, then
    // what happens to the call afterwards.
    let mut events = svc.events(&sup, 0).await;
    let first = events.next().await;
    assert_eq!(
        (&first["type"], &first["call"]),
        (&json!("new_call"), &json!(m)),
        "{first}"
    );
    assert_eq!(first["privilege"], "monitor");
    events.until(is_state(m, "connected")).await;
    let (status, _) = svc
        .post(&format!("/v1/calls/{call}/drop"), &alice, json!({}))
        .await;
    assert_eq!(status, 200);
    events.until(is_state(m, "idle")).await;

    // A monitor may become an owner of its call, and an owner a monitor once nobody needs it.
    let (status, raised) = svc
        .post(
            &format!("/v1/calls/{m}/set-call-privilege"),
            &sup,
            json!({ "privilege": "owner" }),
        )
        .await;
    assert_eq!(
        (status, raised["privilege"].as_str()),
        (200, Some("owner")),
        "{raised}"
    );
    svc.stop().await;
}

#[tokio::test]
async fn every_operation_of_the_gates_tables_is_reachable_over_http_and_the_command_socket() {
    use tapir::core::gate::{AddressOperation, CallOperation, SessionOperation};

    let svc = Service::start(1000).await;
    let alice = svc.logon("alice", "a-secret").await;
    let line = svc.open(&alice, "2001").await;
    svc.connected_call(&alice, &line, "5551000").await;
    // A monitor's handles: every owner's operation reaches the gate and is refused there, so none
    // changes the call while each is shown to be routed.
    let (sup, sup_line, taken) = monitor_taking_up(&svc, "alice", "a-secret", "2001").await;
    let m = &taken[0];
    let mut cmd = Commands::open(&svc, &sup).await;
    let mut id = 0;
    let mut both = async |method: &str, path: String, body: Value| {
        let over_http = svc
            .call(method, &path, Some(&sup), &[], Some(&body.to_string()))
            .await;
        id += 1;
        let over_socket = cmd.request(id, method, &path, Some(body)).await;
        assert_eq!(over_http.0, over_socket.0, "{path}: one answer either way");
        let message = over_http.1["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            !(over_http.0 == 404 && over_http.1["code"] == "not_found"),
            "{method} {path} is no operation: {message}"
        );
        over_http
    };

    for op in CallOperation::ALL {
        let (status, body) = both("POST", format!("/v1/calls/{m}/{}", op.name()), json!({})).await;
        if op.requires_owner() {
            // Refused for what it is: the body's missing field, or the monitor's privilege.
            assert!(
                (status, body["code"].as_str()) == (403, Some("not_owner"))
                    || (status, body["code"].as_str()) == (400, Some("bad_request")),
                "{op}: {status} {body}"
            );
        } else {
            assert_eq!(status, 200, "{op}: {body}");
        }
    }
    for op in AddressOperation::ALL {
        // Bodies that fail their own check, so nothing is made: the answer shows the route.
        let (body, expected) = match op {
            AddressOperation::MakeCall => (json!({ "destination": "20x1" }), "invalid_dial_string"),
            AddressOperation::Unpark | AddressOperation::Pickup => (json!({}), "bad_request"),
            AddressOperation::Forward => (
                json!({ "rules": [{ "condition": "busy", "destination": "20x1" }] }),
                "invalid_dial_string",
            ),
            AddressOperation::SetupConference => (json!({ "orbit": 5 }), "invalid_body"),
        };
        let path = format!("/v1/line-opens/{sup_line}/{}", op.name());
        let (status, answer) = both("POST", path, body).await;
        assert_eq!(answer["code"], expected, "{op}: {status} {answer}");
    }
    for op in SessionOperation::ALL {
        let (method, path, body) = match op {
            SessionOperation::CancelCallCompletion => (
                "POST",
                format!("/v1/line-opens/{sup_line}/{}", op.name()),
                json!({}),
            ),
            SessionOperation::NewCalls => (
                "POST",
                format!("/v1/line-opens/{sup_line}/{}", op.name()),
                json!({}),
            ),
            SessionOperation::SetCallPrivilege => (
                "POST",
                format!("/v1/calls/{m}/{}", op.name()),
                json!({ "privilege": 7 }),
            ),
            SessionOperation::ConferenceCalls => {
                ("GET", format!("/v1/calls/{m}/{}", op.name()), json!({}))
            }
            SessionOperation::LineStatus => {
                ("GET", format!("/v1/line-opens/{sup_line}"), json!({}))
            }
            SessionOperation::Deallocate => (
                "DELETE",
                "/v1/calls/call:0123456789abcdef".to_owned(),
                json!({}),
            ),
        };
        let (status, answer) = both(method, path, body).await;
        assert!(status < 500, "{op}: {status} {answer}");
    }
    // Nothing above changed the call.
    let (_, calls) = svc.get("/v1/calls", &alice).await;
    assert_eq!(calls[0]["state"], "connected", "{calls}");
    svc.stop().await;
}

#[tokio::test]
async fn a_three_way_conference_over_http_then_a_party_hangs_up() {
    let svc = Service::start(1000).await;
    let alice = svc.logon("alice", "a-secret").await;
    let bob = svc.logon("bob", "b-secret").await;
    let line = svc.open(&alice, "2001").await;
    svc.open(&bob, "2002").await;
    let call = svc.connected_call(&alice, &line, "5551000").await;

    let (status, setup) = svc
        .post(
            &format!("/v1/calls/{call}/setup-conference"),
            &alice,
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{setup}");
    let conference = setup["conference"]["call"]
        .as_str()
        .expect("conference")
        .to_owned();
    let consultation = setup["consultation"]["call"]
        .as_str()
        .expect("consultation")
        .to_owned();
    assert_eq!(setup["consultation"]["state"], "dial_tone", "{setup}");
    // The conference waiting for its party and the consultation call name each other.
    let call_id = |v: &Value| v["call_id"].as_str().expect("call ID").to_owned();
    let (_, waiting) = svc.get(&format!("/v1/calls/{conference}"), &alice).await;
    let (_, consulting) = svc.get(&format!("/v1/calls/{consultation}"), &alice).await;
    assert_eq!(
        waiting["consultation_call_id"],
        json!(call_id(&consulting)),
        "{waiting}"
    );
    assert_eq!(
        consulting["consultation_call_id"],
        json!(call_id(&waiting)),
        "{consulting}"
    );
    assert_eq!(waiting["origin"], "conference", "{waiting}");
    let (status, dialled) = svc
        .post(
            &format!("/v1/calls/{consultation}/dial"),
            &alice,
            json!({ "digits": "2002" }),
        )
        .await;
    assert_eq!(status, 200, "{dialled}");
    // Bob answers the consultation call.
    let mut offered = None;
    for _ in 0..500 {
        let (_, calls) = svc.get("/v1/calls", &bob).await;
        if let Some(c) = calls.as_array().and_then(|c| c.first()) {
            offered = c["call"].as_str().map(str::to_owned);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bob_call = offered.expect("bob is offered the consultation call");
    svc.until_state(&bob, &bob_call, "offering").await;
    let (status, _) = svc
        .post(&format!("/v1/calls/{bob_call}/answer"), &bob, json!({}))
        .await;
    assert_eq!(status, 200);
    svc.until_state(&alice, &consultation, "connected").await;

    let (status, joined) = svc
        .post(
            &format!("/v1/calls/{conference}/add-to-conference"),
            &alice,
            json!({ "consultation": consultation }),
        )
        .await;
    assert_eq!(status, 200, "{joined}");
    let (status, parties) = svc
        .get(&format!("/v1/calls/{conference}/conference-calls"), &alice)
        .await;
    assert_eq!(status, 200, "{parties}");
    let handles: Vec<&str> = parties
        .as_array()
        .expect("calls")
        .iter()
        .filter_map(|c| c["call"].as_str())
        .collect();
    assert_eq!(
        handles,
        [conference.as_str(), call.as_str(), consultation.as_str()]
    );
    assert_eq!(parties[0]["state"], "connected", "{parties}");
    assert_eq!(parties[1]["state"], "conferenced");
    assert_eq!(parties[2]["state"], "conferenced");
    // Joined, the consultation is over; each party names its conference as its related call.
    assert_eq!(parties[2]["consultation_call_id"], Value::Null, "{parties}");
    for party in &parties.as_array().expect("calls")[1..] {
        assert_eq!(party["related_call_id"], parties[0]["call_id"], "{parties}");
    }

    // Bob hangs up: his party of the conference is disconnected; Alice's outside party stays.
    let (status, _) = svc
        .post(&format!("/v1/calls/{bob_call}/drop"), &bob, json!({}))
        .await;
    assert_eq!(status, 200);
    svc.until_state(&alice, &consultation, "disconnected").await;
    let (_, first) = svc.get(&format!("/v1/calls/{call}"), &alice).await;
    assert_eq!(first["state"], "conferenced", "{first}");

    let (status, dropped) = svc
        .post(&format!("/v1/calls/{conference}/drop"), &alice, json!({}))
        .await;
    assert_eq!(
        (status, dropped["state"].as_str()),
        (200, Some("idle")),
        "{dropped}"
    );
    svc.stop().await;
}

#[tokio::test]
async fn do_not_disturb_and_forwarding_over_http() {
    let svc = Service::start(1000).await;
    let alice = svc.logon("alice", "a-secret").await;
    let bob = svc.logon("bob", "b-secret").await;
    let line = svc.open(&alice, "2001").await;
    let bob_line = svc.open(&bob, "2002").await;

    let (status, st) = svc
        .post(
            &format!("/v1/line-opens/{bob_line}/forward"),
            &bob,
            json!({ "do_not_disturb": true }),
        )
        .await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["in_service"], true, "{st}");
    let (status, call) = svc
        .post(
            "/v1/calls",
            &alice,
            json!({ "line_handle": line, "destination": "2002" }),
        )
        .await;
    assert_eq!(status, 201, "{call}");
    let c = call["call"].as_str().expect("handle");
    svc.until_state(&alice, c, "disconnected").await;
    let (_, refused) = svc.get(&format!("/v1/calls/{c}"), &alice).await;
    assert_eq!(
        (&refused["mode"], &refused["state_detail"]),
        (
            &json!("do_not_disturb"),
            &json!("disconnected (do_not_disturb)")
        ),
        "{refused}"
    );
    svc.post(&format!("/v1/calls/{c}/drop"), &alice, json!({}))
        .await;
    let (_, offered) = svc.get("/v1/calls", &bob).await;
    assert_eq!(offered, json!([]), "bob was not offered the call");

    // Forward everything to the outside number: Alice's call to Bob is answered there.
    let (status, st) = svc
        .post(
            &format!("/v1/line-opens/{bob_line}/forward"),
            &bob,
            json!({ "rules": [{ "condition": "unconditional", "destination": "5551000" }] }),
        )
        .await;
    assert_eq!(status, 200, "{st}");
    let forwarded = svc.connected_call(&alice, &line, "2002").await;
    let (_, c) = svc.get(&format!("/v1/calls/{forwarded}"), &alice).await;
    assert_eq!(c["connected"]["number"], "5551000", "{c}");
    // The caller learns where the call went (the simulated PBX names the forwarding extension as
    // redirecting party to the destination, which here is outside).
    assert_eq!(c["redirection"]["number"], "5551000", "{c}");
    assert_eq!(c["redirecting"], Value::Null, "{c}");
    let (_, offered) = svc.get("/v1/calls", &bob).await;
    assert_eq!(offered, json!([]), "bob's phone never rang");
    svc.post(&format!("/v1/calls/{forwarded}/drop"), &alice, json!({}))
        .await;

    // Forwarded to an extension: the call offered there names Bob as who redirected it, and why.
    let (status, body) = svc
        .post(
            &format!("/v1/line-opens/{bob_line}/forward"),
            &bob,
            json!({ "rules": [{ "condition": "unconditional", "destination": "2003" }] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let carol_line = svc.open(&alice, "2003").await;
    svc.place_call(&alice, &line, "2002").await;
    let mut at_carol = None;
    for _ in 0..500 {
        let (_, calls) = svc.get("/v1/calls", &alice).await;
        at_carol = calls
            .as_array()
            .and_then(|c| c.iter().find(|c| c["line_handle"] == json!(carol_line)))
            .cloned();
        if at_carol.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let at_carol = at_carol.expect("the call is offered on 2003");
    assert_eq!(at_carol["redirecting"]["number"], "2002", "{at_carol}");
    assert_eq!(at_carol["reason"], "forward_unconditional", "{at_carol}");
    // An empty body cancels forwarding.
    let (status, _) = svc
        .post(
            &format!("/v1/line-opens/{bob_line}/forward"),
            &bob,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    svc.stop().await;
}

#[test]
fn every_operation_is_in_docs_api_md_and_every_row_there_is_an_operation() {
    use tapir::core::gate::{AddressOperation, CallOperation, SessionOperation};

    let doc = include_str!("../../../docs/api.md");
    let section = doc
        .split("## Operations")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/api.md has an Operations section");
    let rows: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .collect();
    let names: Vec<&str> = CallOperation::ALL
        .iter()
        .map(|o| o.name())
        .chain(AddressOperation::ALL.iter().map(|o| o.name()))
        .chain(SessionOperation::ALL.iter().map(|o| o.name()))
        .collect();
    for name in &names {
        assert!(rows.contains(name), "docs/api.md has no row for {name}");
    }
    for row in &rows {
        assert!(
            names.contains(row) || *row == "complete-conference",
            "docs/api.md lists {row}, which is no operation"
        );
    }
}

#[tokio::test]
async fn digits_sent_on_one_end_reach_the_other_ends_stream_once_it_monitors_them() {
    let svc = Service::start(1000).await;
    let alice = svc.logon("alice", "a-secret").await;
    let bob = svc.logon("bob", "b-secret").await;
    let line = svc.open(&alice, "2001").await;
    svc.open(&bob, "2002").await;
    let mut bob_events = svc.events(&bob, 0).await;
    let (alice_call, bob_call) = svc
        .answered_call(&alice, &line, "2002", &bob, &mut bob_events)
        .await;

    let (status, _) = svc
        .post(
            &format!("/v1/calls/{bob_call}/monitor-digits"),
            &bob,
            json!({ "digit_mode": "dtmf" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, sent) = svc
        .post(
            &format!("/v1/calls/{alice_call}/generate-digits"),
            &alice,
            json!({ "digits": "4#", "digit_mode": "dtmf" }),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    let mut digits = Vec::new();
    while digits.len() < 2 {
        let e = bob_events.next().await;
        if e["type"] == "digit" {
            assert_eq!((&e["call"], &e["mode"]), (&json!(bob_call), &json!("dtmf")));
            digits.push(e["digit"].as_str().expect("digit").to_owned());
        }
    }
    assert_eq!(digits, ["4", "#"]);

    // Stopped: digits sent afterwards are not reported.
    svc.post(
        &format!("/v1/calls/{bob_call}/monitor-digits"),
        &bob,
        json!({ "enabled": false }),
    )
    .await;
    svc.post(
        &format!("/v1/calls/{alice_call}/generate-digits"),
        &alice,
        json!({ "digits": "9" }),
    )
    .await;
    svc.post(&format!("/v1/calls/{alice_call}/drop"), &alice, json!({}))
        .await;
    let seen = bob_events.until(is_state(&bob_call, "disconnected")).await;
    assert!(
        seen.iter().all(|e| e["type"] != "digit"),
        "no digit after monitoring stopped: {seen:?}"
    );
    svc.stop().await;
}

#[tokio::test]
async fn every_guarded_path_answers_a_wrong_or_missing_token_with_401_before_anything_else() {
    let svc = Service::start(1000).await;
    for e in tapir_server::openapi::endpoints()
        .iter()
        .filter(|e| e.token)
    {
        let concrete = e
            .path
            .replace("{call}", "not-a-handle")
            .replace("{handle}", "not-a-handle")
            .replace("{class}", "voice");
        for token in [Some("wrong"), None] {
            // A body that is no JSON, a handle that is none: the token is still what is answered.
            let (status, body) = svc.call(e.method, &concrete, token, &[], Some("{")).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (401, Some("unauthorized")),
                "{} {} with token {token:?}: {body}",
                e.method,
                e.path
            );
        }
    }
    svc.stop().await;
}

#[test]
fn the_request_words_are_the_words_the_service_answers_with() {
    // tapir-api does not depend on the engine, so the words a request may say are a second list;
    // it must say what the engine's tables say (the order may differ).
    let sorted = |names: &[&'static str]| {
        let mut v = names.to_vec();
        v.sort_unstable();
        v
    };
    assert_eq!(
        sorted(tapir_api::CallPrivilege::NAMES),
        sorted(tapir::core::privilege::CallPrivilege::NAMES)
    );
    assert_eq!(
        sorted(tapir_api::LinePrivilege::NAMES),
        sorted(tapir::core::privilege::LinePrivileges::NAMES)
    );
    assert_eq!(
        sorted(tapir_api::DigitMode::NAMES),
        sorted(tapir::core::params::DigitMode::NAMES)
    );
}

/// The web console is served by tapird itself at `/`, its files under `/console/`, each with a
/// Content-Security-Policy that allows scripts from the service only (the page has none inline); the
/// event socket takes the token as a WebSocket sub-protocol, so the page never puts it in a URL.
#[tokio::test]
async fn the_console_is_served_with_a_strict_policy_and_its_socket_takes_the_token_as_a_sub_protocol()
 {
    let s = Service::start(100).await;
    let fetch = |path: &'static str| {
        let addr = s.addr;
        async move {
            let mut tcp = TcpStream::connect(addr).await.expect("connect");
            let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            tcp.write_all(req.as_bytes()).await.expect("write");
            let mut buf = Vec::new();
            tcp.read_to_end(&mut buf).await.expect("read");
            let text = String::from_utf8_lossy(&buf).into_owned();
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            (head.to_ascii_lowercase(), body.to_owned())
        }
    };
    let (head, page) = fetch("/").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self';"),
        "{head}"
    );
    assert!(page.contains(r#"<script type="module" src="/console/app.js"></script>"#));
    assert_eq!(
        page.matches("<script").count(),
        1,
        "a script inline in the page"
    );
    for path in ["/console/app.js", "/console/model.js"] {
        let (head, body) = fetch(path).await;
        assert!(
            head.contains("content-type: text/javascript"),
            "{path}: {head}"
        );
        assert!(head.contains("content-security-policy"), "{path}");
        assert!(!body.is_empty());
    }
    let (head, _) = fetch("/console/style.css").await;
    assert!(head.contains("content-type: text/css"), "{head}");
    let (head, body) = fetch("/console/secrets.toml").await;
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert!(body.contains("not_found"));

    let token = s.logon("alice", "a-secret").await;
    let socket = |protocols: String| {
        let addr = s.addr;
        async move {
            let mut req = format!("ws://{addr}/v1/events?after=0")
                .into_client_request()
                .expect("request");
            req.headers_mut()
                .insert("sec-websocket-protocol", protocols.parse().expect("header"));
            tokio_tungstenite::connect_async(req).await
        }
    };
    let (_ws, response) = socket(format!("tapir, tapir.token.{token}"))
        .await
        .expect("the token as a sub-protocol is accepted");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap_or("")),
        Some("tapir"),
        "the service answers with the protocol it speaks, never the token"
    );
    match socket("tapir, tapir.token.0123".into()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("a wrong token was not refused: {:?}", other.map(|_| ())),
    }
    s.stop().await;
}

#[tokio::test]
async fn a_command_message_is_answered_without_a_socket_as_the_socket_answers_it() {
    let config = Config::parse(&CONFIG.replace("JOURNAL", "1000")).expect("config");
    let running = config.start().await.expect("engine");
    let store = tapir_server::open_store(&config).expect("store");
    let state = tapir_server::AppState::new(running.engine.clone(), &config, store, None);
    let api = tapir_server::router(state, config.server.body_limit);
    let answer = |token: String, text: &'static str| {
        let api = api.clone();
        async move {
            let reply = tapir_server::answer_command(&api, &token, text).await;
            serde_json::from_str::<Value>(&reply).expect("a JSON reply")
        }
    };
    let logon = answer(
        String::new(),
        r#"{"id":"on","method":"POST","path":"/v1/sessions","body":{"application":"alice","secret":"a-secret"}}"#,
    )
    .await;
    assert_eq!(
        (logon["id"].as_str(), logon["status"].as_u64()),
        (Some("on"), Some(201))
    );
    let token = logon["body"]["token"].as_str().expect("a token").to_owned();
    let lines = answer(
        token.clone(),
        r#"{"id":7,"method":"GET","path":"/v1/lines"}"#,
    )
    .await;
    assert_eq!(
        (lines["id"].as_u64(), lines["status"].as_u64()),
        (Some(7), Some(200))
    );
    assert_eq!(lines["body"].as_array().map(Vec::len), Some(3));
    // Not a request: refused with the id echoed when it can be read, and nothing else.
    let refused = answer(
        token.clone(),
        r#"{"id":8,"method":"PATCH","path":"/v1/lines"}"#,
    )
    .await;
    assert_eq!(
        (refused["id"].as_u64(), refused["status"].as_u64()),
        (Some(8), Some(400))
    );
    let garbage = answer(token, "not json").await;
    assert!(garbage["id"].is_null(), "{garbage}");
    assert_eq!(garbage["status"].as_u64(), Some(400));
    assert_eq!(running.engine.stats().sessions, 1);
}
