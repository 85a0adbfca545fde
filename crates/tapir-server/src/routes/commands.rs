//! `GET /v1/commands`: the API's requests over one WebSocket instead of one HTTP exchange each, run
//! through a copy of the API's own router.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tower::ServiceExt;

use crate::api::to_json;
use crate::error::ApiError;
use crate::extract::{Authed, PROTOCOL, WS_READ_BUFFER, ws_rejection};
use crate::idempotency::REQUEST_ID;
use crate::state::AppState;

/// Builds the API's router for a command socket (the router of `routes/mod.rs`, handed in: the
/// socket is one of its routes).
pub(crate) type MakeRouter = fn(Arc<AppState>, usize) -> Router;

/// Requests of one command socket running at once; the socket is not read while this many run.
const COMMANDS_IN_FLIGHT: usize = 256;

/// `GET /v1/commands` (WebSocket): the API's requests over one socket instead of one HTTP exchange
/// each. A request is a JSON text message `{"id":ID,"method":"POST","path":"/v1/calls","body":{…},
/// "request_id":"…"}` (`body` and `request_id` optional; `ID` a number or string of the client's
/// choosing); its reply is `{"id":ID,"status":201,"body":{…}}` — the status and body the same request
/// over HTTP gets, `body` absent when there is none, and a body that is not JSON (CSV, Prometheus
/// text) as the string `text` instead. Requests run concurrently, like parallel HTTP
/// requests, so replies can come in another order; the socket is bound to the log-on that opened it.
pub(crate) async fn commands(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    body_limit: usize,
    router: MakeRouter,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(r) => return ws_rejection(r).into_response(),
    };
    // A request carries at most a body; the frame may be somewhat larger for the envelope.
    let ws = ws
        .read_buffer_size(WS_READ_BUFFER)
        .protocols([PROTOCOL])
        .max_message_size(body_limit.saturating_add(4096));
    let token = c.token.clone();
    drop(c);
    ws.on_upgrade(move |socket| serve_commands(socket, state, token, body_limit, router))
}

async fn serve_commands(
    mut socket: WebSocket,
    state: Arc<AppState>,
    token: String,
    limit: usize,
    router: MakeRouter,
) {
    let Ok(bearer) = axum::http::HeaderValue::from_str(&format!("Bearer {token}")) else {
        return;
    };
    // The socket's requests go through the API's own router: the same routes, checks, errors and
    // request-ID handling as over HTTP. Its own copy, so it goes with the socket.
    let api = router(state.clone(), limit);
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            incoming = socket.recv(), if running.len() < COMMANDS_IN_FLIGHT => match incoming {
                Some(Ok(Message::Text(text))) => {
                    state.metrics.socket_command();
                    match command(text.as_str(), &bearer) {
                        Ok((id, request)) => running.push(run_command(api.clone(), id, request)),
                        Err(refusal) => {
                            if socket.send(Message::Text(refusal.into())).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let refusal = command_refused(None, "a request is a JSON text message");
                    if socket.send(Message::Text(refusal.into())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            Some(first) = running.next(), if !running.is_empty() => {
                // Every reply that is ready goes out in one write.
                if socket.feed(Message::Text(first.into())).await.is_err() {
                    return;
                }
                while let Some(Some(more)) = running.next().now_or_never() {
                    if socket.feed(Message::Text(more.into())).await.is_err() {
                        return;
                    }
                }
                if socket.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// What a command socket of the log-on `token` answers to the text message `text`, without a
/// socket: the refusal of a message that is not a request, or the reply of the request run through
/// `api` (the API's [`router`](crate::router)). For carrying the command protocol over another
/// transport, and for fuzz targets.
pub async fn answer_command(api: &Router, token: &str, text: &str) -> String {
    let Ok(bearer) = axum::http::HeaderValue::from_str(&format!("Bearer {token}")) else {
        return command_refused(None, "not a token");
    };
    match command(text, &bearer) {
        Ok((id, request)) => run_command(api.clone(), id, request).await,
        Err(refusal) => refusal,
    }
}

/// A command socket's request message.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandRequest<'a> {
    id: Box<RawValue>,
    method: String,
    path: String,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default, borrow)]
    body: Option<&'a RawValue>,
}

/// The HTTP request a command message stands for, or the reply refusing it.
fn command(
    text: &str,
    bearer: &axum::http::HeaderValue,
) -> Result<(Box<RawValue>, Request), String> {
    let msg: CommandRequest = serde_json::from_str(text).map_err(|e| {
        // Echo the ID when there is a readable one, so the client can match the refusal.
        #[derive(Deserialize)]
        struct IdOnly {
            id: Box<RawValue>,
        }
        let id = serde_json::from_str::<IdOnly>(text).ok().map(|m| m.id);
        command_refused(id.as_deref(), &format!("not a request: {e}"))
    })?;
    let first = msg.id.get().as_bytes().first().copied();
    if !matches!(first, Some(b'"' | b'-' | b'0'..=b'9')) {
        return Err(command_refused(None, "id must be a number or a string"));
    }
    let refuse = |why: &str| command_refused(Some(&msg.id), why);
    let method = match msg.method.as_str() {
        "GET" => axum::http::Method::GET,
        "POST" => axum::http::Method::POST,
        "PUT" => axum::http::Method::PUT,
        "DELETE" => axum::http::Method::DELETE,
        other => {
            return Err(refuse(&format!(
                "method {other:?}: expected GET, POST, PUT or DELETE"
            )));
        }
    };
    if !msg.path.starts_with('/') {
        return Err(refuse("path must start with /"));
    }
    let mut request = Request::builder()
        .method(method)
        .uri(msg.path.as_str())
        .header(axum::http::header::AUTHORIZATION, bearer.clone());
    if let Some(id) = &msg.request_id {
        request = request.header(REQUEST_ID, id.as_str());
    }
    let body = match msg.body {
        Some(b) => {
            request = request.header(axum::http::header::CONTENT_TYPE, "application/json");
            axum::body::Body::from(b.get().to_owned())
        }
        None => axum::body::Body::empty(),
    };
    match request.body(body) {
        Ok(r) => Ok((msg.id, r)),
        Err(e) => Err(refuse(&format!("not a request: {e}"))),
    }
}

/// The reply to a message that is not a request: status 400, `id` echoed when there was one.
fn command_refused(id: Option<&RawValue>, why: &str) -> String {
    let body = ApiError::bad_request(why.to_owned()).body;
    command_reply(id, StatusCode::BAD_REQUEST, Some(&to_json(&body)), true)
}

async fn run_command(api: Router, id: Box<RawValue>, request: Request) -> String {
    let response = match api.oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = response.status();
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    command_reply(Some(&id), status, (!body.is_empty()).then_some(&body), json)
}

/// `{"id":ID,"status":S,"body":B}` with a JSON body as it is, or `{"id":ID,"status":S,"text":"…"}`
/// with any other body (CSV, Prometheus text) as a JSON string.
fn command_reply(
    id: Option<&RawValue>,
    status: StatusCode,
    body: Option<&Bytes>,
    json: bool,
) -> String {
    let id = id.map_or("null", RawValue::get);
    let mut out = String::with_capacity(32 + id.len() + body.map_or(0, |b| b.len()));
    out.push_str("{\"id\":");
    out.push_str(id);
    out.push_str(",\"status\":");
    out.push_str(status.as_str());
    if let Some(body) = body {
        match std::str::from_utf8(body) {
            Ok(text) if json => {
                out.push_str(",\"body\":");
                out.push_str(text);
            }
            _ => {
                out.push_str(",\"text\":");
                out.push_str(
                    &serde_json::to_string(&String::from_utf8_lossy(body)).unwrap_or_default(),
                );
            }
        }
    }
    out.push('}');
    out
}
