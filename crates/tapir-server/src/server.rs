//! The service: log-ons and their tokens, the routes of the HTTP API, and the event stream.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::UNIX_EPOCH;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use dashmap::DashMap;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use serde_json::value::RawValue;
use tapir::core::LineId;
use tapir::core::gate::AddressOperation;
use tapir::core::route::DefaultRoute;
use tapir::profile::LogonOptions;
use tapir::translate::TranslateOptions;
use tapir::{Engine, OpenOptions, Session};
use tapir_config::{ApplicationSettings, Config};
use tokio::sync::OnceCell;
use tower::ServiceExt;
use tracing::{debug, info};

use crate::api::{call_dto, event, parse_call, parse_line, status_row, to_json, translated};
use crate::error::ApiError;
use crate::journal::Journal;
use crate::ops;
use crate::store::{Read, RouteChange, Store};
use tapir_api as wire;
use tapir_api::{
    CallOpRequest, DefaultRouteRequest, LineOpRequest, LogonRequest, LogonResponse,
    MakeCallRequest, OpenLineRequest, RetrieveRequest, RouteRequest, TranslateRequest,
};

/// How many request IDs a log-on remembers for retried requests.
const REMEMBERED_REQUESTS: usize = 1024;
/// Events sent to a WebSocket client per read of the journal.
const EVENT_BATCH: usize = 256;
/// Most events a log-on's pump takes from its session at once.
const PUMP_BATCH: usize = 64;

/// The service's state, shared by every request.
pub struct AppState {
    engine: Engine,
    applications: std::collections::BTreeMap<String, ApplicationSettings>,
    journal_events: usize,
    clients: DashMap<String, Arc<Client>>,
    metrics: Metrics,
    store: Store,
    cdrs: Option<crate::Cdrs>,
}

#[derive(Default)]
struct Metrics {
    /// Operations by result: `ok` or the error code.
    operations: DashMap<&'static str, AtomicU64>,
    events_delivered: AtomicU64,
    store_errors: AtomicU64,
    /// Requests received over command sockets.
    socket_commands: AtomicU64,
}

impl Metrics {
    fn operation(&self, result: &'static str) {
        if let Some(c) = self.operations.get(result) {
            c.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.operations
            .entry(result)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// One log-on: its session, its token, its journal.
pub struct Client {
    token: String,
    app: String,
    session: Session,
    journal: Arc<Journal>,
    requests: Mutex<Requests>,
    admin: bool,
    /// The log-on's ID in the store.
    stored: i64,
    /// The task writing the session's events to the journal and the store.
    pump: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Default)]
struct Requests {
    replies: HashMap<String, Arc<OnceCell<CachedReply>>>,
    order: VecDeque<String>,
}

/// A reply body, serialized once: straight from the typed value, and shared as is by a repeated request.
type CachedReply = (StatusCode, Bytes);
type Reply = Result<(StatusCode, Bytes), ApiError>;

/// A JSON response from serialized bytes.
fn json_response(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

impl AppState {
    /// The service's state for a running engine, its configuration, its store and (unless switched off)
    /// its call records; without them `GET /v1/cdrs` answers 404 `cdrs_disabled`.
    pub fn new(
        engine: Engine,
        config: &Config,
        store: Store,
        cdrs: Option<crate::Cdrs>,
    ) -> Arc<Self> {
        Arc::new(Self {
            engine,
            applications: config.applications.clone(),
            journal_events: config.server.journal_events,
            clients: DashMap::new(),
            metrics: Metrics::default(),
            store,
            cdrs,
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Applies the route changes made through the API in earlier runs, over the configured table.
    pub async fn restore_routes(&self) {
        let (changes, default) = match self.store.routes().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored route changes");
                return;
            }
        };
        for change in changes {
            let r = match &change.application {
                Some(app) => self.engine.set_route(&change.class, app),
                None => {
                    self.engine.clear_route(&change.class);
                    Ok(())
                }
            };
            if let Err(e) = r {
                tracing::warn!(class = change.class, error = %e, "a stored route change no longer applies");
            }
        }
        if let Some(d) = default {
            match d.parse::<DefaultRoute>() {
                Ok(d) => self.engine.set_default_route(d),
                Err(e) => {
                    tracing::warn!(default = d, error = %e, "the stored default route no longer applies")
                }
            }
        }
    }

    /// Records a route change so that it survives a restart (the running table has it already).
    async fn remember_route(&self, change: RouteChange) {
        if let Err(e) = self.store.route_changed(change).await {
            self.store_failed("a route change", &e);
        }
    }

    fn store_failed(&self, what: &str, e: &crate::store::StoreError) {
        self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %e, "the store could not record {what}");
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Logs every client off (each session told by its stream ending), and writes what the store has
    /// queued.
    pub async fn logoff_all(&self) {
        let clients: Vec<Arc<Client>> = self.clients.iter().map(|c| c.value().clone()).collect();
        self.clients.clear();
        for c in clients {
            self.finish(&c, "shutdown").await;
        }
        self.store.flush().await;
    }

    /// Ends a log-on: the session logged off, its last events journaled, the store told.
    async fn finish(&self, c: &Client, reason: &'static str) {
        c.session.clone().logoff().await;
        let pump = c.pump.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(p) = pump {
            let _ = p.await;
        }
        if let Err(e) = self.store.ended(c.stored, reason).await {
            self.store_failed("the end of a log-on", &e);
        }
    }
}

/// The router of the whole API.
pub fn router(state: Arc<AppState>, body_limit: usize) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .route("/v1/sessions", post(logon))
        .route("/v1/session", get(session_info).delete(logoff))
        .route("/v1/lines", get(lines))
        .route("/v1/line-opens", post(open_line))
        .route(
            "/v1/line-opens/{handle}",
            get(line_status).delete(close_line),
        )
        .route("/v1/line-opens/{handle}/{op}", post(line_op))
        .route("/v1/calls", get(calls).post(make_call))
        .route("/v1/calls/unpark", post(unpark))
        .route("/v1/calls/pickup", post(pickup))
        .route("/v1/calls/{call}", get(call).delete(deallocate))
        .route("/v1/calls/{call}/{op}", post(call_op))
        .route("/v1/calls/{call}/conference-calls", get(conference_calls))
        .route("/v1/status", get(status))
        .route("/v1/routes", get(routes))
        .route("/v1/routes/default", put(set_default_route))
        .route("/v1/routes/{class}", put(set_route).delete(clear_route))
        .route("/v1/translate", post(translate))
        .route("/v1/snapshot", get(snapshot))
        .route("/v1/events", get(events))
        .route(
            "/v1/commands",
            get(move |state, authed, ws| commands(state, authed, ws, body_limit)),
        )
        .route("/v1/cdrs", get(cdrs))
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

/// The authenticated log-on of a request: `Authorization: Bearer TOKEN` (or `?access_token=TOKEN` for
/// WebSocket clients that cannot set headers).
pub struct Authed(pub Arc<Client>);

impl FromRequestParts<Arc<AppState>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token = token_of(parts).ok_or_else(ApiError::unauthorized)?;
        if let Some(c) = state.clients.get(&token) {
            return Ok(Authed(c.value().clone()));
        }
        Err(ended_or_unknown(state, &token).await)
    }
}

/// The request's token: `Authorization: Bearer TOKEN`; for WebSocket clients, which cannot set that
/// header, the sub-protocol `tapir.token.TOKEN` (offered beside `tapir`, which the service accepts) or
/// `?access_token=TOKEN`.
fn token_of(parts: &Parts) -> Option<String> {
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

/// The WebSocket sub-protocol the service speaks on its sockets, and the prefix of the one that
/// carries a token.
const PROTOCOL: &str = "tapir";
const TOKEN_PROTOCOL_PREFIX: &str = "tapir.token.";

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
async fn ended_or_unknown(state: &AppState, token: &str) -> ApiError {
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

/// The request ID header: a retried request with the same ID gets the first one's reply and is not
/// applied twice.
const REQUEST_ID: &str = "request-id";

impl Client {
    /// Runs `f` once per request ID; without one, always.
    async fn once<F, Fut>(&self, headers: &HeaderMap, f: F) -> Response
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Reply>,
    {
        let Some(id) = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()) else {
            return reply(f().await);
        };
        let cell = {
            let mut r = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(c) = r.replies.get(id) {
                c.clone()
            } else {
                let c = Arc::new(OnceCell::new());
                r.replies.insert(id.to_owned(), c.clone());
                r.order.push_back(id.to_owned());
                if r.order.len() > REMEMBERED_REQUESTS
                    && let Some(old) = r.order.pop_front()
                {
                    r.replies.remove(&old);
                }
                c
            }
        };
        let mut ran = false;
        let cached = cell
            .get_or_init(|| async {
                ran = true;
                match f().await {
                    Ok(ok) => ok,
                    Err(e) => (e.status, to_json(&e.body)),
                }
            })
            .await
            .clone();
        if !ran {
            debug!(
                app = self.app,
                request = id,
                "repeated request answered from its first reply"
            );
        }
        json_response(cached.0, cached.1)
    }
}

fn reply(r: Reply) -> Response {
    match r {
        Ok((status, _)) if status == StatusCode::NO_CONTENT => status.into_response(),
        Ok((status, v)) => json_response(status, v),
        Err(e) => e.into_response(),
    }
}

fn ok(v: impl serde::Serialize) -> Reply {
    Ok((StatusCode::OK, to_json(&v)))
}

fn created(v: impl serde::Serialize) -> Reply {
    Ok((StatusCode::CREATED, to_json(&v)))
}

fn no_content() -> Reply {
    Ok((StatusCode::NO_CONTENT, Bytes::new()))
}

/// The OpenAPI document, built once.
async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| {
        crate::openapi::document()
            .to_json()
            .unwrap_or_else(|e| json!({ "error": e.to_string() }).to_string())
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc.clone(),
    )
        .into_response()
}

async fn healthz() -> Json<wire::Health> {
    Json(wire::Health {
        status: "ok".to_owned(),
    })
}

async fn metrics(State(state): State<Arc<AppState>>) -> String {
    use std::fmt::Write as _;
    let stats = state.engine.stats();
    let m = &state.metrics;
    let mut out = String::new();
    let head = |out: &mut String, name: &str, help: &str, kind: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let gauges = [
        ("tapir_sessions", "Application sessions.", stats.sessions),
        ("tapir_calls", "Calls the engine tracks.", stats.calls),
        (
            "tapir_call_handles",
            "Call handles held.",
            stats.call_handles,
        ),
        ("tapir_line_handles", "Line opens held.", stats.line_handles),
        (
            "tapir_pending_requests",
            "Make-call requests waiting for their provider.",
            stats.pending_requests,
        ),
        ("tapir_clients", "Network log-ons.", state.clients.len()),
        (
            "tapir_event_queue_depth",
            "Events waiting in sessions' queues.",
            stats.queued_events,
        ),
        (
            "tapir_event_queue_longest",
            "The longest backlog of one event reader.",
            stats.longest_queue,
        ),
        (
            "tapir_store_queue_depth",
            "Journal events waiting to be written to the store.",
            state.store.queued(),
        ),
        (
            "tapir_cdr_queue_depth",
            "Call detail records waiting to be written.",
            state.cdrs.as_ref().map_or(0, |c| c.recorder.queued()),
        ),
    ];
    for (name, help, value) in gauges {
        head(&mut out, name, help, "gauge");
        let _ = writeln!(out, "{name} {value}");
    }
    head(&mut out, "tapir_calls_by_state", "Calls by state.", "gauge");
    for kind in tapir::core::state::CallStateKind::ALL {
        let n = stats
            .calls_by_state
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "tapir_calls_by_state{{state=\"{}\"}} {n}", kind.name());
    }
    head(
        &mut out,
        "tapir_operations_total",
        "API operations by result: ok, or the error code.",
        "counter",
    );
    let mut results: Vec<(&str, u64)> = m
        .operations
        .iter()
        .map(|e| (*e.key(), e.value().load(Ordering::Relaxed)))
        .collect();
    results.sort_unstable();
    for (result, n) in results {
        let _ = writeln!(out, "tapir_operations_total{{result=\"{result}\"}} {n}");
    }
    let counters = [
        (
            "tapir_events_delivered_total",
            "Events sent to WebSocket clients.",
            &m.events_delivered,
        ),
        (
            "tapir_store_errors_total",
            "Writes the store could not make.",
            &m.store_errors,
        ),
        (
            "tapir_socket_commands_total",
            "Requests received over command sockets (/v1/commands).",
            &m.socket_commands,
        ),
    ];
    for (name, help, value) in counters {
        head(&mut out, name, help, "counter");
        let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
    }
    let cdr = state
        .cdrs
        .as_ref()
        .map(|c| c.recorder.stats())
        .unwrap_or_default();
    let cdr_counters = [
        (
            "tapir_cdr_written_total",
            "Call detail records written to the store.",
            cdr.written,
        ),
        (
            "tapir_cdr_lost_total",
            "Call detail records lost (write queue full, or the store refused their batch).",
            cdr.lost,
        ),
    ];
    for (name, help, value) in cdr_counters {
        head(&mut out, name, help, "counter");
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

async fn logon(State(state): State<Arc<AppState>>, Body(req): Body<LogonRequest>) -> Response {
    let app = match state.applications.get(&req.application) {
        Some(a) if a.secret == req.secret => a,
        _ => {
            info!(
                app = req.application,
                "network log-on refused: unknown application or wrong secret"
            );
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown application or wrong secret",
            )
            .into_response();
        }
    };
    if let Some(p) = &req.profile
        && !app.profiles.is_empty()
        && !app.profiles.contains(p)
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("application {} may not use profile {p:?}", req.application),
        )
        .into_response();
    }
    let mut options = LogonOptions::new(req.application.clone());
    if let Some(p) = &req.profile {
        options = options.profile(p.clone());
    } else if let Some(first) = app.profiles.first() {
        options = options.profile(first.clone());
    }
    if req.shared {
        options = options.shared();
    }
    let session = match state.engine.logon_with(options).await {
        Ok(s) => s,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let stored = match state
        .store
        .logon(&token, &req.application, &session.id().to_string())
        .await
    {
        Ok(id) => id,
        Err(e) => {
            state.store_failed("a log-on", &e);
            session.logoff().await;
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the service cannot record the log-on; try again later",
            )
            .into_response();
        }
    };
    let journal = Arc::new(Journal::new(state.journal_events));
    // The pump: the session's events, in order, into the journal and the store.
    let pump = tokio::spawn({
        let session = session.clone();
        let journal = journal.clone();
        let store = state.store.clone();
        async move {
            // Every event queued when the pump wakes goes on as one batch: one journal lock and one
            // wake-up of the log-on's event sockets, one entry in the store's queue.
            while let Some(first) = session.next_event().await {
                let mut events = Vec::new();
                let mut next = Some(first);
                while let Some(e) = next {
                    let json: Arc<str> =
                        serde_json::to_string(&event(&e)).unwrap_or_default().into();
                    events.push((e.seq, json));
                    next = if events.len() < PUMP_BATCH {
                        session.try_next_event()
                    } else {
                        None
                    };
                }
                journal.append(&events);
                store.append(stored, events).await;
            }
            journal.end();
        }
    });
    let client = Arc::new(Client {
        token: token.clone(),
        app: req.application.clone(),
        session: session.clone(),
        journal,
        requests: Mutex::new(Requests::default()),
        admin: app.profiles.is_empty(),
        stored,
        pump: Mutex::new(Some(pump)),
    });
    state.clients.insert(token.clone(), client);
    info!(app = req.application, session = %session.id(), "network log-on");
    let body = LogonResponse {
        session_id: session.id().to_string(),
        token,
        application: req.application,
        profile: session.profile().to_owned(),
        shared: session.is_shared(),
        disabled_services: disabled(&session),
    };
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn session_info(Authed(c): Authed) -> Response {
    let s = &c.session;
    reply(ok(wire::SessionInfo {
        session_id: s.id().to_string(),
        application: c.app.clone(),
        profile: s.profile().to_owned(),
        shared: s.is_shared(),
        applications: s.applications(),
        disabled_services: disabled(s),
    }))
}

async fn logoff(State(state): State<Arc<AppState>>, Authed(c): Authed) -> Response {
    state.clients.remove(&c.token);
    state.finish(&c, "logoff").await;
    reply(no_content())
}

fn disabled(s: &Session) -> Vec<wire::DisabledService> {
    s.disabled_services()
        .iter()
        .map(|d| wire::DisabledService {
            service: d.service.clone(),
            reason: d.reason.clone(),
        })
        .collect()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
}

async fn lines(Authed(c): Authed) -> Response {
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

async fn open_line(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Authed(c): Authed,
    Body(req): Body<OpenLineRequest>,
) -> Response {
    let c2 = c.clone();
    c.once(&headers, || async move {
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
        let h = counted(
            &state,
            c2.session.open_line(LineId(req.line), options).await,
        )?;
        created(wire::LineOpen {
            line_handle: h.to_string(),
            line: req.line,
        })
    })
    .await
}

fn counted<T>(state: &AppState, r: Result<T, tapir::Error>) -> Result<T, ApiError> {
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

async fn close_line(
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

async fn calls(Authed(c): Authed) -> Response {
    let calls: Vec<wire::Call> = c
        .session
        .calls()
        .into_iter()
        .filter_map(|h| call_dto(&c.session, h).ok())
        .collect();
    reply(ok(calls))
}

async fn call(Authed(c): Authed, Path(call): Path<String>) -> Response {
    reply(
        parse_call(&call)
            .and_then(|h| call_dto(&c.session, h))
            .and_then(ok),
    )
}

async fn deallocate(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    Path(call): Path<String>,
) -> Response {
    let r = parse_call(&call).and_then(|h| counted(&state, c.session.deallocate(h)));
    reply(r.and_then(|()| no_content()))
}

async fn make_call(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Authed(c): Authed,
    Body(req): Body<MakeCallRequest>,
) -> Response {
    let body = LineOpRequest {
        destination: req.destination,
        translate: req.translate,
        ..LineOpRequest::default()
    };
    let op = AddressOperation::MakeCall.name();
    run_line_op(&state, &headers, c, &req.line_handle, op, body).await
}

/// `POST /v1/calls/{call}/{op}`: the operations on one call (`ops::call_op`). Each returns when
/// done, with the call as it is then (or what the operation made).
async fn call_op(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Authed(c): Authed,
    Path((call, op)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let c2 = c.clone();
    c.once(&headers, || async move {
        let h = parse_call(&call)?;
        let body: CallOpRequest = op_body(&op, &body)?;
        counted_op(&state, ops::call_op(&c2.session, h, &op, body).await)
    })
    .await
}

/// `GET /v1/calls/{call}/conference-calls`: the calls of its conference.
async fn conference_calls(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    Path(call): Path<String>,
) -> Response {
    let r =
        parse_call(&call).and_then(|h| counted_op(&state, ops::conference_calls(&c.session, h)));
    reply(r)
}

/// `POST /v1/line-opens/{line_handle}/{op}`: the operations on a line open (`ops::line_op`).
async fn line_op(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Authed(c): Authed,
    Path((line, op)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    match op_body::<LineOpRequest>(&op, &body) {
        Ok(body) => run_line_op(&state, &headers, c, &line, &op, body).await,
        Err(e) => e.into_response(),
    }
}

async fn run_line_op(
    state: &AppState,
    headers: &HeaderMap,
    c: Arc<Client>,
    line: &str,
    op: &str,
    body: LineOpRequest,
) -> Response {
    let c2 = c.clone();
    c.once(headers, || async move {
        let line = parse_line(line)?;
        counted_op(state, ops::line_op(&c2.session, line, op, body).await)
    })
    .await
}

/// `GET /v1/line-opens/{line_handle}`: the line's status.
async fn line_status(Authed(c): Authed, Path(line): Path<String>) -> Response {
    let status = match parse_line(&line) {
        Ok(h) => crate::api::line_status(&c.session, h).await,
        Err(e) => Err(e),
    };
    reply(status.and_then(ok))
}

/// An operation's body: empty is the default; otherwise JSON of the operation's shape, a field of
/// the wrong type named in the error.
fn op_body<T: DeserializeOwned + Default>(op: &str, body: &[u8]) -> Result<T, ApiError> {
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

/// An operation's outcome as a reply, counted in the metrics (as [`counted`] does) when the engine
/// decided it; a request that was no operation is not counted.
fn counted_op(state: &AppState, done: ops::Done) -> Reply {
    match done {
        Ok(ok) => counted(state, Ok(ok)),
        Err(ops::Failure::Engine(e)) => counted(state, Err(e)),
        Err(ops::Failure::Request(e)) => Err(e),
    }
}

async fn unpark(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Authed(c): Authed,
    Body(req): Body<RetrieveRequest>,
) -> Response {
    let body = LineOpRequest {
        orbit: req.orbit,
        ..LineOpRequest::default()
    };
    let op = AddressOperation::Unpark.name();
    run_line_op(&state, &headers, c, &req.line_handle, op, body).await
}

async fn pickup(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Authed(c): Authed,
    Body(req): Body<RetrieveRequest>,
) -> Response {
    let body = LineOpRequest {
        station: req.station,
        group: req.group,
        ..LineOpRequest::default()
    };
    let op = AddressOperation::Pickup.name();
    run_line_op(&state, &headers, c, &req.line_handle, op, body).await
}

async fn status(Authed(c): Authed) -> Response {
    let rows: Vec<wire::StatusRow> = c.session.status().into_iter().map(status_row).collect();
    reply(ok(rows))
}

fn routes_dto(engine: &Engine) -> wire::Routes {
    let (routes, default) = engine.routes();
    wire::Routes {
        routes: routes
            .into_iter()
            .map(|r| wire::Route {
                class: r.class,
                application: r.application,
                set_at_ms: r
                    .set_at
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
            })
            .collect(),
        default: default.to_string(),
    }
}

async fn routes(State(state): State<Arc<AppState>>, Authed(_): Authed) -> Response {
    reply(ok(routes_dto(&state.engine)))
}

fn admin(c: &Client) -> Result<(), ApiError> {
    if c.admin {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "application {} is limited to some profiles and may not change routes",
                c.app
            ),
        ))
    }
}

async fn set_route(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    Path(class): Path<String>,
    Body(req): Body<RouteRequest>,
) -> Response {
    if let Err(e) =
        admin(&c).and_then(|()| counted(&state, state.engine.set_route(&class, &req.application)))
    {
        return e.into_response();
    }
    state
        .remember_route(RouteChange {
            class,
            application: Some(req.application),
        })
        .await;
    reply(ok(routes_dto(&state.engine)))
}

async fn clear_route(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    Path(class): Path<String>,
) -> Response {
    if let Err(e) = admin(&c) {
        return e.into_response();
    }
    if !state.engine.clear_route(&class) {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for class {class:?}"),
        )
        .into_response();
    }
    state
        .remember_route(RouteChange {
            class,
            application: None,
        })
        .await;
    reply(ok(routes_dto(&state.engine)))
}

async fn set_default_route(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    Body(req): Body<DefaultRouteRequest>,
) -> Response {
    let d = match admin(&c).and_then(|()| Ok(req.default.parse::<DefaultRoute>()?)) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    state.engine.set_default_route(d.clone());
    if let Err(e) = state.store.default_route_changed(&d.to_string()).await {
        state.store_failed("a default route change", &e);
    }
    reply(ok(routes_dto(&state.engine)))
}

async fn translate(Authed(c): Authed, Body(req): Body<TranslateRequest>) -> Response {
    let options = TranslateOptions {
        cancel_call_waiting: req.cancel_call_waiting,
        force_local: req.force_local,
        force_long_distance: req.force_long_distance,
    };
    let r = c
        .session
        .translate_address(&req.address, options)
        .map_err(ApiError::from)
        .and_then(|t| ok(translated(t)));
    reply(r)
}

async fn snapshot(Authed(c): Authed) -> Response {
    // The sequence number first: every change after it is in an event after it.
    let seq = c.journal.last_seq();
    let calls = c
        .session
        .calls()
        .into_iter()
        .filter_map(|h| call_dto(&c.session, h).ok())
        .collect();
    let lines = c
        .session
        .line_opens()
        .into_iter()
        .map(|(h, l)| wire::LineOpen {
            line_handle: h.to_string(),
            line: l.0,
        })
        .collect();
    reply(ok(wire::Snapshot { seq, lines, calls }))
}

/// `GET /v1/cdrs`: call detail records (see [`tapir_api::cdr::CdrQueryParams`]). An application
/// limited to some profiles sees only the records of lines it may use.
async fn cdrs(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    query: Result<Query<tapir_api::cdr::CdrQueryParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(cdrs) = &state.cdrs else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "cdrs_disabled",
            "call detail records are switched off in this service's configuration ([cdr] enabled)",
        )
        .into_response();
    };
    let params = match query {
        Ok(Query(p)) => p,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
                .into_response();
        }
    };
    let (mut q, format) = match tapir_cdr::CdrQuery::from_params(&params) {
        Ok(q) => q,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.to_string())
                .into_response();
        }
    };
    if !c.admin {
        q.lines = Some(c.session.lines().into_iter().map(|l| l.id).collect());
    }
    let page = match cdrs.store.query(&q).await {
        Ok(p) => p,
        Err(e) => {
            state.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_failed",
                e.to_string(),
            )
            .into_response();
        }
    };
    let records: Vec<tapir_api::cdr::Cdr> = page.records.iter().map(tapir_cdr::to_wire).collect();
    let text = |content_type: &'static str, body: String| {
        ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
    };
    match format {
        tapir_cdr::Format::Json => reply(ok(tapir_api::cdr::CdrPage {
            records,
            next: page.next,
        })),
        tapir_cdr::Format::Csv => {
            let mut body = tapir_api::cdr::csv_header();
            records
                .iter()
                .for_each(|r| body.push_str(&tapir_api::cdr::csv_row(r)));
            text("text/csv; charset=utf-8", body)
        }
        tapir_cdr::Format::Jsonl => {
            let body: String = records.iter().map(tapir_api::cdr::jsonl_line).collect();
            text("application/jsonl", body)
        }
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: u64,
}

/// `GET /v1/events?after=N` (WebSocket): every event after N, then each new one, as JSON text
/// messages. If events after N have been trimmed, one message
/// `{"type":"trimmed","first_kept":M,"snapshot":"/v1/snapshot"}` and the connection closes.
///
/// A log-on that has ended (log-off, or the service stopped or restarted) keeps its events readable
/// from the store, within the journal's bounds; the stream then ends with `{"type":"end"}`.
async fn events(
    State(state): State<Arc<AppState>>,
    Token(token): Token,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // The token first: a wrong one is 401 whatever else is wrong with the request.
    enum Source {
        Live(Arc<Client>),
        Stored(i64),
    }
    let live = state.clients.get(&token).map(|c| c.value().clone());
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
    // Clients send nothing but the odd ping and close: a small read buffer, because the socket library
    // zeroes the whole buffer before every read (at its 128 KiB default that was the largest single
    // cost of a busy stream; docs/benchmarks.md).
    let ws = ws.read_buffer_size(WS_READ_BUFFER).protocols([PROTOCOL]);
    match source {
        Source::Live(c) => ws.on_upgrade(move |socket| stream_events(socket, state, c, q.after)),
        Source::Stored(id) => {
            ws.on_upgrade(move |socket| stream_stored(socket, state, id, q.after))
        }
    }
}

/// A request to a WebSocket endpoint that is no WebSocket upgrade, as the API's JSON error.
fn ws_rejection(r: WebSocketUpgradeRejection) -> ApiError {
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

/// The read buffer of an event stream's socket (bytes).
const WS_READ_BUFFER: usize = 4 * 1024;

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
                    state
                        .metrics
                        .events_delivered
                        .fetch_add(1, Ordering::Relaxed);
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

async fn stream_events(mut socket: WebSocket, state: Arc<AppState>, c: Arc<Client>, after: u64) {
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
                state
                    .metrics
                    .events_delivered
                    .fetch_add(n, Ordering::Relaxed);
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

/// Requests of one command socket running at once; the socket is not read while this many run.
const COMMANDS_IN_FLIGHT: usize = 256;

/// `GET /v1/commands` (WebSocket): the API's requests over one socket instead of one HTTP exchange
/// each. A request is a JSON text message `{"id":ID,"method":"POST","path":"/v1/calls","body":{…},
/// "request_id":"…"}` (`body` and `request_id` optional; `ID` a number or string of the client's
/// choosing); its reply is `{"id":ID,"status":201,"body":{…}}` — the status and body the same request
/// over HTTP gets, `body` absent when there is none, and a body that is not JSON (CSV, Prometheus
/// text) as the string `text` instead. Requests run concurrently, like parallel HTTP
/// requests, so replies can come in another order; the socket is bound to the log-on that opened it.
async fn commands(
    State(state): State<Arc<AppState>>,
    Authed(c): Authed,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    body_limit: usize,
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
    ws.on_upgrade(move |socket| serve_commands(socket, state, token, body_limit))
}

async fn serve_commands(mut socket: WebSocket, state: Arc<AppState>, token: String, limit: usize) {
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
                    state.metrics.socket_commands.fetch_add(1, Ordering::Relaxed);
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
