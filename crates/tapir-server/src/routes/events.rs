//! `GET /v1/events`: a log-on's event stream over a WebSocket, from its journal while it lives and
//! from the store once it has ended; resumes after any sequence number the journal still holds.

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;
use serde::Deserialize;
use tapir_api as wire;

use crate::error::ApiError;
use crate::extract::{PROTOCOL, Token, WS_READ_BUFFER, ws_rejection};
use crate::state::{AppState, NetworkLogon};
use crate::store::Read;

/// Events sent to a WebSocket client per read of the journal.
const EVENT_BATCH: usize = 256;

#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    #[serde(default)]
    after: u64,
}

/// `GET /v1/events?after=N` (WebSocket): every event after N, then each new one, as JSON text
/// messages. If events after N have been trimmed, one message
/// `{"type":"trimmed","first_kept":M,"snapshot":"/v1/snapshot"}` and the connection closes.
///
/// A log-on that has ended (log-off, or the service stopped or restarted) keeps its events readable
/// from the store, within the journal's bounds; the stream then ends with `{"type":"end"}`.
pub(crate) async fn events(
    State(state): State<Arc<AppState>>,
    Token(token): Token,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // The token first: a wrong one is 401 whatever else is wrong with the request.
    enum Source {
        Live(Arc<NetworkLogon>),
        Stored(i64),
    }
    let live = state.logons.get(&token).map(|c| c.value().clone());
    let source = match live {
        Some(c) => Source::Live(c),
        None => match state.store.find(&token).await {
            Ok(Some(logon)) if logon.end_reason.is_some() => Source::Stored(logon.id),
            _ => return ApiError::unauthorized().into_response(),
        },
    };
    let Ok(Query(q)) = query else {
        return ApiError::bad_request("after must be a sequence number").into_response();
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(r) => return ws_rejection(r).into_response(),
    };
    let ws = ws.read_buffer_size(WS_READ_BUFFER).protocols([PROTOCOL]);
    match source {
        Source::Live(c) => ws.on_upgrade(move |socket| stream_events(socket, state, c, q.after)),
        Source::Stored(id) => {
            ws.on_upgrade(move |socket| stream_stored(socket, state, id, q.after))
        }
    }
}

/// The events of an ended log-on, from the store, then the end.
async fn stream_stored(mut socket: WebSocket, state: Arc<AppState>, logon: i64, after: u64) {
    let mut position = after;
    loop {
        match state.store.read_after(logon, position, EVENT_BATCH).await {
            Ok(Read::Trimmed { first_kept }) => {
                let msg = wire::StreamControl::Trimmed {
                    first_kept,
                    snapshot: "/v1/snapshot".to_owned(),
                };
                let _ = socket.send(control(&msg)).await;
                break;
            }
            Ok(Read::Events(batch)) if !batch.is_empty() => {
                for (seq, json) in batch {
                    if socket.send(Message::Text(json.into())).await.is_err() {
                        return;
                    }
                    state.metrics.events_delivered(1);
                    position = seq;
                }
            }
            Ok(Read::Events(_)) => {
                let _ = socket.send(control(&wire::StreamControl::End)).await;
                break;
            }
            Err(e) => {
                state.store_failed("(reading) a stored journal", &e);
                break;
            }
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

async fn stream_events(
    mut socket: WebSocket,
    state: Arc<AppState>,
    c: Arc<NetworkLogon>,
    after: u64,
) {
    let mut position = after;
    let mut tail = c.journal.subscribe();
    loop {
        match c.journal.read_after(position, EVENT_BATCH) {
            Err(t) => {
                let msg = wire::StreamControl::Trimmed {
                    first_kept: t.first_kept,
                    snapshot: "/v1/snapshot".to_owned(),
                };
                let _ = socket.send(control(&msg)).await;
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            Ok(batch) if !batch.is_empty() => {
                // The whole batch goes into the socket's buffer and out in one write: a busy stream
                // costs a system call per batch, not per event.
                let n = batch.len() as u64;
                for (seq, json) in batch {
                    if socket
                        .feed(Message::Text(json.as_ref().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    position = seq;
                }
                if socket.flush().await.is_err() {
                    return;
                }
                state.metrics.events_delivered(n);
                continue;
            }
            Ok(_) => {}
        }
        let (last, ended) = *tail.borrow_and_update();
        if last > position {
            continue;
        }
        if ended {
            let _ = socket.send(control(&wire::StreamControl::End)).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
        tokio::select! {
            changed = tail.changed() => if changed.is_err() { return; },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

fn control(msg: &wire::StreamControl) -> Message {
    Message::Text(serde_json::to_string(msg).unwrap_or_default().into())
}
