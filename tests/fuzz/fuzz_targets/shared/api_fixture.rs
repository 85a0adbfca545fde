//! The API fuzz targets' fixture: tapird's router in-process with the office PBX, one log-on with
//! its line open and a connected call, and how to undo what an accepted request changed.

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use tower::ServiceExt;

pub const CONFIG: &str = r#"
[services.pbx]
kind = "simswitch"
extensions = [{ number = "100", name = "Alice" }, { number = "200", name = "Bob" }]
outside = [{ number = "5551000", script = "answers", after_rings = 0 }]

[applications.alice]
secret = "a-secret"
"#;

pub struct Fixture {
    pub runtime: tokio::runtime::Runtime,
    pub engine: tapir::Engine,
    pub app: axum::Router,
    pub token: String,
    pub open: String,
    /// A connected call of the log-on's, made again whenever an operation ends it.
    pub call: std::sync::Mutex<String>,
    /// The routes as configured, put back after a request changes them.
    pub routes: (
        Vec<tapir::core::route::Route>,
        tapir::core::route::DefaultRoute,
    ),
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (engine, app) = runtime.block_on(async {
            let config = tapir_config::Config::parse(CONFIG).expect("config");
            let running = config.start().await.expect("engine");
            let store = tapir_server::open_store(&config).expect("store");
            let state = tapir_server::AppState::new(running.engine.clone(), &config, store, None);
            let app = tapir_server::router(state, config.server.body_limit);
            (running.engine, app)
        });
        let routes = engine.routes();
        let mut f = Fixture {
            runtime,
            engine,
            app,
            token: String::new(),
            open: String::new(),
            call: std::sync::Mutex::new(String::new()),
            routes,
        };
        let logon = send(
            &f,
            Method::POST,
            "/v1/sessions",
            r#"{"application":"alice","secret":"a-secret"}"#,
        )
        .1;
        f.token = logon["token"].as_str().expect("a token").to_owned();
        let lines = send(&f, Method::GET, "/v1/lines", "").1;
        let line = lines[0]["id"].as_u64().expect("a line");
        let open = send(
            &f,
            Method::POST,
            "/v1/line-opens",
            &format!(r#"{{"line":{line},"privilege":"owner"}}"#),
        )
        .1;
        f.open = open["line_handle"].as_str().expect("an open").to_owned();
        renew_call(&f);
        f
    })
}

/// Hangs up the log-on's calls and makes a new connected one.
pub fn renew_call(f: &Fixture) {
    let calls = send(f, Method::GET, "/v1/calls", "").1;
    for c in calls.as_array().into_iter().flatten() {
        if let Some(id) = c["call"].as_str() {
            send(f, Method::POST, &format!("/v1/calls/{id}/drop"), "{}");
            send(f, Method::DELETE, &format!("/v1/calls/{id}"), "");
        }
    }
    let body = format!(r#"{{"line_handle":"{}","destination":"5551000"}}"#, f.open);
    let call = send(f, Method::POST, "/v1/calls", &body).1;
    let id = call["call"].as_str().expect("a call").to_owned();
    *f.call.lock().expect("the call") = id;
}

/// Undoes what an accepted request changed, so that the fuzzer's state stays the same size:
/// another log-on logged off, another open closed, the routes put back, the call made again.
pub fn undo(f: &Fixture, pick: u8, reply: &serde_json::Value) {
    match pick % 10 {
        0 => {
            if let Some(token) = reply["token"].as_str() {
                let request = Request::builder()
                    .method(Method::DELETE)
                    .uri("/v1/session")
                    .header("authorization", format!("Bearer {token}"))
                    .body(Body::empty())
                    .expect("a request");
                f.runtime.block_on(async {
                    let _ = f.app.clone().oneshot(request).await;
                });
            }
        }
        1 => {
            if let Some(open) = reply["line_handle"].as_str() {
                send(f, Method::DELETE, &format!("/v1/line-opens/{open}"), "");
            }
        }
        // A translation changes nothing.
        9 => {}
        7 | 8 => {
            let (routes, default) = &f.routes;
            for r in f.engine.routes().0 {
                f.engine.clear_route(&r.class);
            }
            for r in routes {
                let _ = f.engine.set_route(&r.class, &r.application);
            }
            f.engine.set_default_route(default.clone());
        }
        _ => renew_call(f),
    }
}

/// One request as the fixture's log-on: its status and JSON body (null when it has none).
pub fn send(f: &Fixture, method: Method, path: &str, body: &str) -> (u16, serde_json::Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {}", f.token))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("a request");
    f.runtime.block_on(async {
        let response = f.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    })
}

/// What the engine holds, to compare before and after a refused request.
pub fn holding(f: &Fixture) -> (usize, usize, usize, usize, usize, String) {
    let s = f.engine.stats();
    (
        s.sessions,
        s.calls,
        s.call_handles,
        s.line_handles,
        s.pending_requests,
        format!("{:?}", f.engine.routes()),
    )
}

/// Whether a reply is the service's own failure rather than an answer: a 500, or a 5xx without
/// one of the typed "not now" or "the switch failed it" codes (the park lot full, a provider
/// down, the switch refusing) that a well-formed request may meet.
pub fn is_server_fault(status: u16, reply: &serde_json::Value) -> bool {
    const ANSWERS: [&str; 5] = [
        "resource_unavailable",
        "provider_unavailable",
        "operation_failed",
        "session_limit",
        "no_service_available",
    ];
    status >= 500
        && !(matches!(status, 502 | 503)
            && reply["code"].as_str().is_some_and(|c| ANSWERS.contains(&c)))
}
