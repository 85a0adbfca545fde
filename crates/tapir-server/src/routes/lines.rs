//! Lines: the lines a log-on may use, opening and closing them, a line open's status, and the
//! operations on a line open by name (`ops::line_op`: make call, unpark, pickup, forward, …).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use tapir::OpenOptions;
use tapir::core::LineId;
use tapir::core::gate::AddressOperation;
use tapir_api as wire;
use tapir_api::{LineOpRequest, OpenLineRequest, RetrieveRequest};

use crate::api::parse_line;
use crate::error::ApiError;
use crate::extract::{Authed, Body, op_body};
use crate::ops;
use crate::reply::{counted, counted_op, created, no_content, ok, reply};
use crate::state::{AppState, NetworkLogon};

/// `GET /v1/lines`.
pub(crate) async fn lines(Authed(c): Authed) -> Response {
    let lines: Vec<wire::Line> = c
        .session
        .lines()
        .into_iter()
        .map(|l| wire::Line {
            id: l.id.0,
            name: l.caps.name.clone(),
            provider: l.provider_name.clone(),
            addresses: l.caps.addresses.iter().map(|a| a.address.clone()).collect(),
        })
        .collect();
    reply(ok(lines))
}

/// `POST /v1/line-opens`.
pub(crate) async fn open_line(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    Body(req): Body<OpenLineRequest>,
) -> Response {
    let r = async {
        let privilege: wire::LinePrivilege = req.privilege.parse().map_err(|e| {
            let status = crate::error::status_of(&tapir::Error::InvalidPrivilege);
            ApiError::new(
                status,
                tapir::Error::InvalidPrivilege.code(),
                format!("{e}"),
            )
        })?;
        let options = match privilege {
            wire::LinePrivilege::Owner => OpenOptions::owner(),
            wire::LinePrivilege::Monitor => OpenOptions::monitor(),
            wire::LinePrivilege::OwnerMonitor => OpenOptions::owner_monitor(),
            wire::LinePrivilege::None => OpenOptions::none(),
        }
        .priority(req.priority);
        let h = counted(&state, c.session.open_line(LineId(req.line), options).await)?;
        created(wire::LineOpen {
            line_handle: h.to_string(),
            line: req.line,
        })
    };
    reply(r.await)
}

/// `DELETE /v1/line-opens/{line_handle}`.
pub(crate) async fn close_line(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    Path(handle): Path<String>,
) -> Response {
    let r = async {
        let h = parse_line(&handle)?;
        counted(&state, c.session.close_line(h).await)?;
        no_content()
    };
    reply(r.await)
}

/// `GET /v1/line-opens/{line_handle}`: the line's status.
pub(crate) async fn line_status(Authed(c): Authed, Path(line): Path<String>) -> Response {
    let status = match parse_line(&line) {
        Ok(h) => crate::api::line_status(&c.session, h).await,
        Err(e) => Err(e),
    };
    reply(status.and_then(ok))
}

/// `POST /v1/line-opens/{line_handle}/{op}`: the operations on a line open (`ops::line_op`).
pub(crate) async fn line_op(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    Path((line, op)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    match op_body::<LineOpRequest>(&op, &body) {
        Ok(body) => run_line_op(&state, &c, &line, &op, body).await,
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/calls/unpark`: unpark on the request's line open.
pub(crate) async fn unpark(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    Body(req): Body<RetrieveRequest>,
) -> Response {
    let body = LineOpRequest {
        orbit: req.orbit,
        ..LineOpRequest::default()
    };
    let op = AddressOperation::Unpark.name();
    run_line_op(&state, &c, &req.line_handle, op, body).await
}

/// `POST /v1/calls/pickup`: pickup on the request's line open.
pub(crate) async fn pickup(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    Body(req): Body<RetrieveRequest>,
) -> Response {
    let body = LineOpRequest {
        station: req.station,
        group: req.group,
        ..LineOpRequest::default()
    };
    let op = AddressOperation::Pickup.name();
    run_line_op(&state, &c, &req.line_handle, op, body).await
}

/// Runs line operation `op` on line open `line` with `body`; counted and timed.
pub(crate) async fn run_line_op(
    state: &AppState,
    c: &NetworkLogon,
    line: &str,
    op: &str,
    body: LineOpRequest,
) -> Response {
    let started = Instant::now();
    let r = async {
        let line = parse_line(line)?;
        let done = ops::line_op(&c.session, line, op, body).await;
        counted_op(state, op, started, done)
    };
    reply(r.await)
}
