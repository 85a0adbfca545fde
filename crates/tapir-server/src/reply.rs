//! Replies: a handler's typed value serialized once into JSON bytes (kept as is when a repeated
//! request asks again), and operations counted by result in the metrics.

use std::time::Instant;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::api::to_json;
use crate::error::ApiError;
use crate::ops;
use crate::state::AppState;

/// A reply: a status and a JSON body, or an API error.
pub(crate) type Reply = Result<(StatusCode, Bytes), ApiError>;

/// A JSON response from serialized bytes.
pub(crate) fn json_response(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

pub(crate) fn reply(r: Reply) -> Response {
    match r {
        Ok((status, _)) if status == StatusCode::NO_CONTENT => status.into_response(),
        Ok((status, v)) => json_response(status, v),
        Err(e) => e.into_response(),
    }
}

pub(crate) fn ok(v: impl serde::Serialize) -> Reply {
    Ok((StatusCode::OK, to_json(&v)))
}

pub(crate) fn created(v: impl serde::Serialize) -> Reply {
    Ok((StatusCode::CREATED, to_json(&v)))
}

pub(crate) fn no_content() -> Reply {
    Ok((StatusCode::NO_CONTENT, Bytes::new()))
}

pub(crate) fn counted<T>(state: &AppState, r: Result<T, tapir::Error>) -> Result<T, ApiError> {
    match r {
        Ok(v) => {
            state.metrics.operation("ok");
            Ok(v)
        }
        Err(e) => {
            state.metrics.operation(e.code());
            Err(e.into())
        }
    }
}

/// An operation's outcome as a reply, counted by result (as [`counted`] does) and its time since
/// `started` observed under its name, when the engine decided it; a request that was no operation
/// (an unknown name, a malformed body) is neither.
pub(crate) fn counted_op(state: &AppState, op: &str, started: Instant, done: ops::Done) -> Reply {
    if !matches!(done, Err(ops::Failure::Request(_))) {
        state.metrics.observe(op, started.elapsed());
    }
    match done {
        Ok(ok) => counted(state, Ok(ok)),
        Err(ops::Failure::Engine(e)) => counted(state, Err(e)),
        Err(ops::Failure::Request(e)) => Err(e),
    }
}
