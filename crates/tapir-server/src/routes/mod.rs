//! The routes of the HTTP API, by resource. [`router`] lists every endpoint; the routes that change
//! something go through the request-ID layer (`idempotency.rs`), so a repeated request is applied
//! once.

mod calls;
pub(crate) mod commands;
mod events;
mod history;
mod lines;
mod service;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};

use crate::error::ApiError;
use crate::extract::token_of;
use crate::idempotency::{REQUEST_ID, answer_once};
use crate::state::AppState;

/// The router of the whole API, its request bodies limited to `body_limit` bytes.
pub fn router(state: Arc<AppState>, body_limit: usize) -> Router {
    // Requests that change something: once per request ID.
    let changes = Router::new()
        .route("/v1/line-opens", post(lines::open_line))
        .route("/v1/line-opens/{handle}/{op}", post(lines::line_op))
        .route("/v1/calls", post(calls::make_call))
        .route("/v1/calls/unpark", post(lines::unpark))
        .route("/v1/calls/pickup", post(lines::pickup))
        .route("/v1/calls/{call}/{op}", post(calls::call_op))
        .route_layer(middleware::from_fn_with_state(state.clone(), once));
    Router::new()
        .route("/healthz", get(service::healthz))
        .route("/metrics", get(service::metrics))
        .route("/openapi.json", get(service::openapi_json))
        .route("/v1/sessions", post(session::logon))
        .route(
            "/v1/session",
            get(session::session_info).delete(session::logoff),
        )
        .route("/v1/lines", get(lines::lines))
        .route(
            "/v1/line-opens/{handle}",
            get(lines::line_status).delete(lines::close_line),
        )
        .route("/v1/calls", get(calls::calls))
        .route(
            "/v1/calls/{call}",
            get(calls::call).delete(calls::deallocate),
        )
        .route(
            "/v1/calls/{call}/conference-calls",
            get(calls::conference_calls),
        )
        .merge(changes)
        .route("/v1/status", get(service::status))
        .route("/v1/routes", get(service::routes))
        .route("/v1/routes/default", put(service::set_default_route))
        .route(
            "/v1/routes/{class}",
            put(service::set_route).delete(service::clear_route),
        )
        .route("/v1/translate", post(service::translate))
        .route("/v1/snapshot", get(service::snapshot))
        .route("/v1/events", get(events::events))
        .route(
            "/v1/commands",
            get(move |state, authed, ws| commands::commands(state, authed, ws, body_limit, router)),
        )
        .route("/v1/cdrs", get(history::cdrs))
        .merge(crate::console::routes())
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the endpoint does not take this method",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The request-ID layer: a request with a request ID from a live log-on runs once and its repeats
/// get its reply (`idempotency.rs`); anything else (no ID; no log-on, which the handler answers
/// 401) goes straight through.
async fn once(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let id = parts
        .headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let logon = id
        .as_ref()
        .and_then(|_| token_of(&parts))
        .and_then(|t| state.logons.get(&t).map(|l| l.value().clone()));
    let request = Request::from_parts(parts, body);
    match (id, logon) {
        (Some(id), Some(logon)) => answer_once(&logon.replies, &id, next.run(request)).await,
        _ => next.run(request).await,
    }
}
