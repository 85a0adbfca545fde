//! Calls: a log-on's calls, one call, making a call, and the operations on a call by name
//! (`ops::call_op`), each returning when done with the call as it is then.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use tapir::core::gate::{AddressOperation, SessionOperation};
use tapir_api as wire;
use tapir_api::{CallOpRequest, LineOpRequest, MakeCallRequest};

use super::lines::run_line_op;
use crate::api::{call_dto, parse_call};
use crate::extract::{Authed, Body, op_body};
use crate::ops;
use crate::reply::{counted, counted_op, no_content, ok, reply};
use crate::state::AppState;

/// `GET /v1/calls`.
pub(crate) async fn calls(Authed(c): Authed) -> Response {
    let calls: Vec<wire::Call> = c
        .session
        .calls()
        .into_iter()
        .filter_map(|h| call_dto(&c.session, h).ok())
        .collect();
    reply(ok(calls))
}

/// `GET /v1/calls/{call}`.
pub(crate) async fn call(Authed(c): Authed, Path(call): Path<String>) -> Response {
    reply(
        parse_call(&call)
            .and_then(|h| call_dto(&c.session, h))
            .and_then(ok),
    )
}

/// `DELETE /v1/calls/{call}`: deallocate the handle.
pub(crate) async fn deallocate(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    Path(call): Path<String>,
) -> Response {
    let r = parse_call(&call).and_then(|h| counted(&state, c.session.deallocate(h)));
    reply(r.and_then(|()| no_content()))
}

/// `POST /v1/calls`: make a call on the request's line open.
pub(crate) async fn make_call(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    Body(req): Body<MakeCallRequest>,
) -> Response {
    let body = LineOpRequest {
        destination: req.destination,
        translate: req.translate,
        ..LineOpRequest::default()
    };
    let op = AddressOperation::MakeCall.name();
    run_line_op(&state, &c, &req.line_handle, op, body).await
}

/// `POST /v1/calls/{call}/{op}`: the operations on one call (`ops::call_op`). Each returns when
/// done, with the call as it is then (or what the operation made).
pub(crate) async fn call_op(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    Path((call, op)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let r = async {
        let h = parse_call(&call)?;
        let body: CallOpRequest = op_body(&op, &body)?;
        let done = ops::call_op(&c.session, h, &op, body).await;
        counted_op(&state, &op, started, done)
    };
    reply(r.await)
}

/// `GET /v1/calls/{call}/conference-calls`: the calls of its conference.
pub(crate) async fn conference_calls(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    Path(call): Path<String>,
) -> Response {
    let started = Instant::now();
    let op = SessionOperation::ConferenceCalls.name();
    let r = parse_call(&call)
        .and_then(|h| counted_op(&state, op, started, ops::conference_calls(&c.session, h)));
    reply(r)
}
