//! What a request carries, read for the handlers: its log-on (by token), its JSON body, an
//! operation's body, and whether it upgrades to a WebSocket — each failure the API's JSON error.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::{AppState, NetworkLogon};

/// The authenticated log-on of a request: `Authorization: Bearer TOKEN` (or `?access_token=TOKEN` for
/// WebSocket clients that cannot set headers).
pub struct Authed(pub Arc<NetworkLogon>);

impl FromRequestParts<Arc<AppState>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token = token_of(parts).ok_or_else(ApiError::unauthorized)?;
        if let Some(c) = state.logons.get(&token) {
            return Ok(Authed(c.value().clone()));
        }
        Err(ended_or_unknown(state, &token).await)
    }
}

/// The request's token: `Authorization: Bearer TOKEN`; for WebSocket clients, which cannot set that
/// header, the sub-protocol `tapir.token.TOKEN` (offered beside `tapir`, which the service accepts) or
/// `?access_token=TOKEN`.
pub(crate) fn token_of(parts: &Parts) -> Option<String> {
    bearer(&parts.headers)
        .or_else(|| {
            parts
                .headers
                .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .find_map(|p| p.trim().strip_prefix(TOKEN_PROTOCOL_PREFIX))
                .map(str::to_owned)
        })
        .or_else(|| {
            parts.uri.query().and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("access_token="))
                    .map(str::to_owned)
            })
        })
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
}

/// The WebSocket sub-protocol the service speaks on its sockets, and the prefix of the one that
/// carries a token.
pub(crate) const PROTOCOL: &str = "tapir";
const TOKEN_PROTOCOL_PREFIX: &str = "tapir.token.";

/// The read buffer of a socket's connection (bytes). Clients send nothing but requests, the odd
/// ping and close, and the socket library zeroes the whole buffer before every read, so a large one
/// costs every read (docs/benchmarks.md).
pub(crate) const WS_READ_BUFFER: usize = 4 * 1024;

/// The request's token, whether or not its log-on is live (for the event stream, which stays
/// readable after the log-on ended).
pub struct Token(pub String);

impl FromRequestParts<Arc<AppState>> for Token {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        token_of(parts)
            .map(Token)
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The answer to a token that is not a live log-on's: 410 if it was one that has ended (log-off, or
/// the service stopped), 401 otherwise.
pub(crate) async fn ended_or_unknown(state: &AppState, token: &str) -> ApiError {
    match state.store.find(token).await {
        Ok(Some(logon)) => ApiError::new(
            StatusCode::GONE,
            "session_ended",
            format!(
                "this log-on of {} ended ({}); log on again (its events stay readable at /v1/events)",
                logon.application,
                logon.end_reason.as_deref().unwrap_or("ended")
            ),
        ),
        _ => ApiError::unauthorized(),
    }
}

/// A JSON body whose failures are API errors: 400 for malformed JSON, 422 for the wrong shape
/// (missing or unknown fields, wrong types), 415 without a JSON content type, 413 when too large.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let status = r.status();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        _ => "bad_request",
    };
    ApiError::new(status, code, r.body_text())
}

/// An operation's body: empty is the default; otherwise JSON of the operation's shape, a field of
/// the wrong type named in the error.
pub(crate) fn op_body<T: DeserializeOwned + Default>(op: &str, body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    // Serde reads a struct from a JSON array too (its fields in order), and every field of an
    // operation's body is optional, so `[]` would pass as `{}`: only an object is a body here.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("{op}: the body must be a JSON object"),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let (status, code) = if inner.is_data() {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
        } else {
            (StatusCode::BAD_REQUEST, "bad_request")
        };
        let message = if path == "." || !inner.is_data() {
            format!("{op}: {inner}")
        } else {
            format!("{op}: {path}: {inner}")
        };
        ApiError::new(status, code, message)
    })
}

/// A request to a WebSocket endpoint that is no WebSocket upgrade, as the API's JSON error.
pub(crate) fn ws_rejection(r: WebSocketUpgradeRejection) -> ApiError {
    let status = r.status();
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UPGRADE_REQUIRED => "upgrade_required",
        _ => "bad_request",
    };
    ApiError::new(
        status,
        code,
        format!("this endpoint is a WebSocket: {}", r.body_text()),
    )
}
