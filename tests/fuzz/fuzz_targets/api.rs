//! tapird's API fed any request bodies (and path parameters) on the endpoints that change
//! something, in-process: never a server error (a 5xx other than a typed "not now" or "the
//! switch failed it"), and a refused request changes nothing the engine
//! holds (sessions, calls, handles, opens, requests, routes).
//!
//! The first byte picks the endpoint; for those with a path parameter, the text up to the first
//! newline is the parameter (or, when it is empty, a real handle of the fixture's log-on).
#![no_main]

#[path = "shared/api_fixture.rs"]
mod fixture;

use axum::http::Method;
use fixture::{fixture, holding, is_server_fault, send, undo};
use libfuzzer_sys::fuzz_target;

const CALL_OPS: [&str; 8] = [
    "hold",
    "unhold",
    "dial",
    "redirect",
    "blind-transfer",
    "park",
    "generate-digits",
    "handoff",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let f = fixture();
    let (param, body) = text.split_once('\n').unwrap_or(("", text));
    let param: String = param
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .collect();
    let or = |real: &str| {
        if param.is_empty() {
            real.to_owned()
        } else {
            param.clone()
        }
    };
    let (method, path) = match pick % 10 {
        0 => (Method::POST, "/v1/sessions".to_owned()),
        1 => (Method::POST, "/v1/line-opens".to_owned()),
        2 => (Method::POST, "/v1/calls".to_owned()),
        3 => (Method::POST, "/v1/calls/unpark".to_owned()),
        4 => (Method::POST, "/v1/calls/pickup".to_owned()),
        5 => {
            let op = CALL_OPS[usize::from(pick / 10) % CALL_OPS.len()];
            let call = f.call.lock().expect("the call").clone();
            (Method::POST, format!("/v1/calls/{}/{op}", or(&call)))
        }
        6 => (
            Method::POST,
            format!("/v1/line-opens/{}/forward", or(&f.open)),
        ),
        7 => (Method::PUT, "/v1/routes/default".to_owned()),
        8 => (Method::PUT, format!("/v1/routes/{}", or("voice"))),
        _ => (Method::POST, "/v1/translate".to_owned()),
    };
    let before = holding(f);
    let (status, reply) = send(f, method, &path, body);
    assert!(
        !is_server_fault(status, &reply),
        "{path} {body:?}: {status} {reply}"
    );
    if status >= 400 {
        assert_eq!(
            before,
            holding(f),
            "{path} {body:?} was refused ({status}) but changed the engine"
        );
    } else {
        undo(f, pick, &reply);
    }
});
