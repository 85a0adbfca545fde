//! Requests that change something are applied at most once per request ID: a client that resends a
//! request with the same `Request-Id` header (after a broken connection, say) gets the first one's
//! reply, and nothing is done twice: one layer on the routes that change things (`routes/mod.rs`)
//! finds the log-on and asks [`answer_once`]; each log-on remembers the replies of its last [`REMEMBERED`] request IDs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tokio::sync::OnceCell;
use tracing::debug;

/// The request ID header.
pub(crate) const REQUEST_ID: &str = "request-id";

/// How many request IDs a log-on remembers.
pub(crate) const REMEMBERED: usize = 1024;

/// A reply as it was sent: status, content type and body.
type Sent = (StatusCode, Option<HeaderValue>, Bytes);

/// The replies a log-on remembers, by request ID, oldest first out.
#[derive(Default)]
pub(crate) struct Replies(Mutex<Remembered>);

#[derive(Default)]
struct Remembered {
    by_id: HashMap<String, Arc<OnceCell<Sent>>>,
    order: VecDeque<String>,
}

impl Replies {
    /// The slot of request `id`'s reply: filled by its first request, read by its repeats.
    fn slot(&self, id: &str) -> Arc<OnceCell<Sent>> {
        let mut r = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = r.by_id.get(id) {
            return c.clone();
        }
        let c = Arc::new(OnceCell::new());
        r.by_id.insert(id.to_owned(), c.clone());
        r.order.push_back(id.to_owned());
        if r.order.len() > REMEMBERED
            && let Some(old) = r.order.pop_front()
        {
            r.by_id.remove(&old);
        }
        c
    }
}

/// Answers request `id` of a log-on whose replies are `replies`: the first time by running `run`
/// and keeping its reply, every later time with that reply, without running anything.
pub(crate) async fn answer_once(
    replies: &Replies,
    id: &str,
    run: impl Future<Output = Response>,
) -> Response {
    let slot = replies.slot(id);
    let mut ran = false;
    let (status, content_type, body) = slot
        .get_or_init(|| async {
            ran = true;
            let response = run.await;
            let status = response.status();
            let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
            // The API's replies are small JSON documents, whole in memory already.
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            (status, content_type, body)
        })
        .await
        .clone();
    if !ran {
        debug!(
            request = id,
            "repeated request answered from its first reply"
        );
    }
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    if let Some(t) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, t);
    }
    response
}
