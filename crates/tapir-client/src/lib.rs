//! An async client for `tapird`, the tapir call-control service.
//!
//! [`Client::logon`] logs an application on and gives a client bound to that log-on; its methods are
//! the API's endpoints, with the request and response types of `tapir-api`, and every failure a
//! [`ClientError`] that keeps the service's stable error code. Call-control methods return when the
//! operation is done (the API completes on effect). Requests that change something carry a fresh
//! `Request-Id`, so when the connection breaks before the reply arrives the client sends the same
//! request again and the service applies it at most once.
//!
//! [`Client::connect_commands`] moves the client's requests onto one WebSocket (`/v1/commands`): the
//! same requests and replies without an HTTP exchange each, back to HTTP by itself if the socket breaks.
//!
//! [`Client::events`] opens the log-on's event stream. It reconnects by itself when the connection
//! drops and resumes after the last event it delivered — no event lost, none repeated; if the service
//! has trimmed that position it fetches the snapshot and hands it over ([`StreamItem::Resync`]) before
//! continuing.
//!
//! ```no_run
//! use tapir_client::{Client, StreamItem};
//! use tapir_api::LogonRequest;
//!
//! # async fn run() -> Result<(), tapir_client::ClientError> {
//! let client = Client::logon("http://127.0.0.1:7878", &LogonRequest {
//!     application: "cli".into(),
//!     secret: "tapir-dev".into(),
//!     ..LogonRequest::default()
//! })
//! .await?;
//! let line = client.lines().await?.into_iter().next().expect("a line");
//! let open = client.open_line(line.id, "owner").await?;
//! let mut events = client.events(0);
//! let call = client.make_call(&open.line_handle, "2002").await?;
//! println!("{} is {}", call.call_id, call.state);
//! while let Some(item) = events.next().await {
//!     if let StreamItem::Event(e) = item? {
//!         println!("{} {:?}", e.seq, e.kind);
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tapir_api::{
    Call, CallOpRequest, CallPrivilege, CompletionMode, CompletionRequested, ConferenceSetup,
    DefaultRouteRequest, DigitMode, ErrorBody, Event, ForwardRule, Line, LineOpRequest, LineOpen,
    LineStatus, LogonRequest, LogonResponse, MakeCallRequest, OpenLineRequest, Parked,
    RetrieveRequest, RouteRequest, Routes, SessionInfo, Snapshot, StatusRow, StreamControl,
    StreamMessage, TranslateRequest, Translated,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::debug;

pub use tapir_api as api;

/// How often a request that changes something is sent again after the connection broke.
const RETRIES: u32 = 2;

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The service refused or failed the request: its HTTP status and error body.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The stable error code (`invalid_call_state`, `unauthorized`, …).
        code: String,
        /// The service's message.
        message: String,
    },
    /// The service could not be reached, or the connection broke (after the retries).
    #[error("cannot reach tapird: {0}")]
    Transport(String),
    /// The service answered something this client does not understand.
    #[error("unexpected answer from tapird: {0}")]
    Protocol(String),
    /// The base URL is not `http://HOST:PORT`.
    #[error("bad service URL: {0}")]
    BadUrl(String),
}

impl ClientError {
    /// The service's error code, for [`ClientError::Api`].
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, for [`ClientError::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The connection to a service, without a log-on: health, and logging on.
#[derive(Clone)]
pub struct Service {
    /// `http://HOST:PORT`, without a trailing slash.
    base: String,
    /// `HOST:PORT`.
    authority: String,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service").field("base", &self.base).finish()
    }
}

impl Service {
    /// A service at `url` (`http://HOST:PORT`, or just `HOST:PORT`).
    pub fn new(url: &str) -> Result<Self, ClientError> {
        let trimmed = url.trim().trim_end_matches('/');
        let authority = trimmed.strip_prefix("http://").unwrap_or(trimmed);
        if authority.is_empty()
            || authority.contains('/')
            || authority.contains("://")
            || authority.parse::<hyper::http::uri::Authority>().is_err()
        {
            return Err(ClientError::BadUrl(format!(
                "{url:?}: expected http://HOST:PORT"
            )));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Ok(Self {
            base: format!("http://{authority}"),
            authority: authority.to_owned(),
            http: HttpClient::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// `GET /healthz`: whether the service answers.
    pub async fn health(&self) -> Result<tapir_api::Health, ClientError> {
        self.send(Method::GET, "/healthz", None, None, None).await
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let (status, body) = self
            .exchange(Method::GET, "/metrics", None, None, None)
            .await?;
        if status.is_success() {
            String::from_utf8(body.to_vec()).map_err(|e| ClientError::Protocol(e.to_string()))
        } else {
            Err(api_error(status, &body))
        }
    }

    /// `GET /openapi.json`: the OpenAPI document.
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.send(Method::GET, "/openapi.json", None, None, None)
            .await
    }

    /// Logs on.
    pub async fn logon(&self, request: &LogonRequest) -> Result<Client, ClientError> {
        let body = to_body(request)?;
        let logon: LogonResponse = self
            .send(Method::POST, "/v1/sessions", None, Some(body), None)
            .await?;
        Ok(Client {
            service: self.clone(),
            logon,
            commands: None,
        })
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Bytes>,
        request_id: Option<&str>,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.exchange(method, path, token, body, request_id).await?;
        decode(path, status, bytes)
    }

    /// One request; one that carries a request ID is sent again when the connection broke.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Bytes>,
        request_id: Option<&str>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let uri: Uri = format!("{}{path}", self.base)
            .parse()
            .map_err(|e| ClientError::BadUrl(format!("{path}: {e}")))?;
        let mut attempt = 0;
        loop {
            let mut req = Request::builder().method(method.clone()).uri(uri.clone());
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            if let Some(id) = request_id {
                req = req.header("request-id", id);
            }
            if body.is_some() {
                req = req.header("content-type", "application/json");
            }
            let req = req
                .body(Full::new(body.clone().unwrap_or_default()))
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            let result = async {
                let response = self
                    .http
                    .request(req)
                    .await
                    .map_err(|e| ClientError::Transport(error_chain(&e)))?;
                let status = response.status();
                let bytes = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| ClientError::Transport(error_chain(&e)))?
                    .to_bytes();
                Ok((status, bytes))
            }
            .await;
            match result {
                Err(ClientError::Transport(m)) if request_id.is_some() && attempt < RETRIES => {
                    attempt += 1;
                    debug!(path, attempt, error = m, "sending the request again");
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
                other => return other,
            }
        }
    }
}

/// A reply's body as `T`, or the API error it carries.
fn decode<T: DeserializeOwned>(
    path: &str,
    status: StatusCode,
    bytes: Bytes,
) -> Result<T, ClientError> {
    if !status.is_success() {
        return Err(api_error(status, &bytes));
    }
    let bytes = if bytes.is_empty() {
        Bytes::from_static(b"null")
    } else {
        bytes
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::Protocol(format!("{path}: {e} (HTTP {status})")))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => ClientError::Api {
            status: status.as_u16(),
            code: e.code,
            message: e.message,
        },
        Err(_) => ClientError::Api {
            status: status.as_u16(),
            code: "http_error".to_owned(),
            message: String::from_utf8_lossy(body).into_owned(),
        },
    }
}

fn to_body(v: &impl Serialize) -> Result<Bytes, ClientError> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| ClientError::Protocol(e.to_string()))
}

/// A fresh request ID: a random prefix drawn once per process and a counter — unique without asking the
/// system for random bytes per request.
fn request_id() -> String {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string());
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Percent-encodes a path segment (handles and classes are plain, but a class may hold anything).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query string of `GET /v1/cdrs` (empty, or `?a=b&c=d`).
fn cdr_query(p: &tapir_api::cdr::CdrQueryParams) -> String {
    let pairs: Vec<String> = [
        ("since", p.since.clone()),
        ("until", p.until.clone()),
        ("number", p.number.clone()),
        ("call_id", p.call_id.clone()),
        ("disposition", p.disposition.clone()),
        ("before", p.before.map(|b| b.to_string())),
        ("limit", p.limit.map(|l| l.to_string())),
        ("format", p.format.clone()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k}={}", segment(&v))))
    .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// A log-on to the service: every endpoint that needs a token.
#[derive(Clone, Debug)]
pub struct Client {
    service: Service,
    logon: LogonResponse,
    /// The command socket, once [`Client::connect_commands`] opened one.
    commands: Option<CommandSocket>,
}

impl Client {
    /// Logs on to the service at `url` (`http://HOST:PORT`).
    pub async fn logon(url: &str, request: &LogonRequest) -> Result<Client, ClientError> {
        Service::new(url)?.logon(request).await
    }

    /// A client for a log-on made elsewhere (the token of a log-on response). Only the token is known:
    /// [`Client::logon_info`] has empty fields; [`Client::session`] asks the service.
    pub fn with_token(url: &str, token: &str) -> Result<Client, ClientError> {
        Ok(Client {
            service: Service::new(url)?,
            logon: LogonResponse {
                session_id: String::new(),
                token: token.to_owned(),
                application: String::new(),
                profile: String::new(),
                shared: false,
                disabled_services: Vec::new(),
            },
            commands: None,
        })
    }

    /// The log-on's answer: session ID, token, profile, disabled services.
    pub fn logon_info(&self) -> &LogonResponse {
        &self.logon
    }

    /// The bearer token.
    pub fn token(&self) -> &str {
        &self.logon.token
    }

    /// The service.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Sends this client's requests (and its clones' made from now on) over one WebSocket,
    /// `/v1/commands`, instead of an HTTP exchange each: the same requests, replies and errors, for less
    /// work per request on both sides. Should the socket break, requests go over HTTP again (a request
    /// caught in the break is sent again with its request ID, so it is applied at most once); call this
    /// again to open a new one.
    pub async fn connect_commands(&mut self) -> Result<(), ClientError> {
        let socket = connect_socket(&self.service.authority, "/v1/commands", &self.logon.token)
            .await
            .map_err(|e| match e {
                Connect::Refused(e) | Connect::Failed(e) => e,
            })?;
        self.commands = Some(CommandSocket::start(socket));
        Ok(())
    }

    /// One request: over the command socket when there is one, else (or once it is gone) over HTTP.
    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        request_id: Option<&str>,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.exchange(method, path, body, request_id).await?;
        decode(path, status, bytes)
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        request_id: Option<&str>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        if let Some(socket) = &self.commands {
            match socket
                .exchange(&method, path, body.clone(), request_id)
                .await
            {
                Err(ClientError::Transport(e)) => {
                    debug!(
                        path,
                        error = e,
                        "command socket gone; the request goes over HTTP"
                    );
                }
                other => return other,
            }
        }
        self.service
            .exchange(method, path, Some(&self.logon.token), body, request_id)
            .await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(Method::GET, path, None, None).await
    }

    /// A request that changes something: sent with a fresh request ID.
    async fn change<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<T, ClientError> {
        let id = request_id();
        self.send(method, path, body, Some(&id)).await
    }

    /// `GET /v1/session`.
    pub async fn session(&self) -> Result<SessionInfo, ClientError> {
        self.get("/v1/session").await
    }

    /// `DELETE /v1/session`: logs off; the token is refused from then on.
    pub async fn logoff(&self) -> Result<(), ClientError> {
        self.change(Method::DELETE, "/v1/session", None).await
    }

    /// `GET /v1/lines`: the lines the session may use.
    pub async fn lines(&self) -> Result<Vec<Line>, ClientError> {
        self.get("/v1/lines").await
    }

    /// Opens a line with a privilege (`owner`, `monitor`, `owner_monitor`, `none`).
    pub async fn open_line(&self, line: u32, privilege: &str) -> Result<LineOpen, ClientError> {
        let body = to_body(&OpenLineRequest {
            line,
            privilege: privilege.to_owned(),
            priority: 0,
        })?;
        self.change(Method::POST, "/v1/line-opens", Some(body))
            .await
    }

    /// Closes a line open.
    pub async fn close_line(&self, line_handle: &str) -> Result<(), ClientError> {
        let path = format!("/v1/line-opens/{}", segment(line_handle));
        self.change(Method::DELETE, &path, None).await
    }

    /// The session's calls.
    pub async fn calls(&self) -> Result<Vec<Call>, ClientError> {
        self.get("/v1/calls").await
    }

    /// One call.
    pub async fn call(&self, call: &str) -> Result<Call, ClientError> {
        self.get(&format!("/v1/calls/{}", segment(call))).await
    }

    /// Makes a call from a line open to `destination`.
    pub async fn make_call(
        &self,
        line_handle: &str,
        destination: &str,
    ) -> Result<Call, ClientError> {
        self.make_call_with(&MakeCallRequest {
            line_handle: line_handle.to_owned(),
            destination: Some(destination.to_owned()),
            translate: false,
        })
        .await
    }

    /// Makes a call with every option.
    pub async fn make_call_with(&self, request: &MakeCallRequest) -> Result<Call, ClientError> {
        self.change(Method::POST, "/v1/calls", Some(to_body(request)?))
            .await
    }

    /// Deallocates a call handle.
    pub async fn deallocate(&self, call: &str) -> Result<(), ClientError> {
        let path = format!("/v1/calls/{}", segment(call));
        self.change(Method::DELETE, &path, None).await
    }

    /// `POST /v1/calls/{call}/{op}`: any call operation by its name, with its fields.
    pub async fn call_op(
        &self,
        call: &str,
        op: &str,
        request: &CallOpRequest,
    ) -> Result<Call, ClientError> {
        let path = format!("/v1/calls/{}/{}", segment(call), segment(op));
        self.change(Method::POST, &path, Some(to_body(request)?))
            .await
    }

    async fn op(&self, call: &str, op: &str) -> Result<Call, ClientError> {
        self.call_op(call, op, &CallOpRequest::default()).await
    }

    /// Answers an offered call; returns it connected.
    pub async fn answer(&self, call: &str) -> Result<Call, ClientError> {
        self.op(call, "answer").await
    }

    /// Accepts an offered call (this application will handle it).
    pub async fn accept(&self, call: &str) -> Result<Call, ClientError> {
        self.op(call, "accept").await
    }

    /// Rejects an offered call.
    pub async fn reject(&self, call: &str) -> Result<Call, ClientError> {
        self.op(call, "reject").await
    }

    /// Drops a call; returns it idle.
    pub async fn drop_call(&self, call: &str) -> Result<Call, ClientError> {
        self.op(call, "drop").await
    }

    /// Puts a call on hold.
    pub async fn hold(&self, call: &str) -> Result<Call, ClientError> {
        self.op(call, "hold").await
    }

    /// Takes a call off hold.
    pub async fn unhold(&self, call: &str) -> Result<Call, ClientError> {
        self.op(call, "unhold").await
    }

    /// Swaps the active call with a held one.
    pub async fn swap_hold(&self, active: &str, held: &str) -> Result<Call, ClientError> {
        self.call_op(active, "swap-hold", &CallOpRequest::held(held))
            .await
    }

    /// Dials more digits on a call.
    pub async fn dial(&self, call: &str, digits: &str) -> Result<Call, ClientError> {
        self.call_op(call, "dial", &CallOpRequest::digits(digits))
            .await
    }

    /// Sends DTMF digits on a connected call.
    pub async fn generate_digits(&self, call: &str, digits: &str) -> Result<Call, ClientError> {
        self.call_op(call, "generate-digits", &CallOpRequest::digits(digits))
            .await
    }

    /// Transfers a call to `destination` without consultation.
    pub async fn blind_transfer(&self, call: &str, destination: &str) -> Result<Call, ClientError> {
        self.call_op(
            call,
            "blind-transfer",
            &CallOpRequest::destination(destination),
        )
        .await
    }

    /// Redirects an offered call to `destination`.
    pub async fn redirect(&self, call: &str, destination: &str) -> Result<Call, ClientError> {
        self.call_op(call, "redirect", &CallOpRequest::destination(destination))
            .await
    }

    /// Holds a call for a consultation transfer; returns the consultation call (in dial tone).
    pub async fn setup_transfer(&self, call: &str) -> Result<Call, ClientError> {
        self.op(call, "setup-transfer").await
    }

    /// Completes a consultation transfer.
    pub async fn complete_transfer(
        &self,
        call: &str,
        consultation: &str,
    ) -> Result<Call, ClientError> {
        self.call_op(
            call,
            "complete-transfer",
            &CallOpRequest::consultation(consultation),
        )
        .await
    }

    /// Completes a consultation into a three-way conference; returns the conference call.
    pub async fn complete_conference(
        &self,
        call: &str,
        consultation: &str,
    ) -> Result<Call, ClientError> {
        self.call_op(
            call,
            "complete-conference",
            &CallOpRequest::consultation(consultation),
        )
        .await
    }

    /// Parks a call, in `orbit` or (without one) where the switch chooses.
    pub async fn park(&self, call: &str, orbit: Option<&str>) -> Result<Parked, ClientError> {
        let request = CallOpRequest {
            orbit: orbit.map(str::to_owned),
            ..CallOpRequest::default()
        };
        let path = format!("/v1/calls/{}/park", segment(call));
        self.change(Method::POST, &path, Some(to_body(&request)?))
            .await
    }

    /// Hands a call to another application.
    pub async fn handoff(&self, call: &str, application: &str) -> Result<Call, ClientError> {
        self.call_op(call, "handoff", &CallOpRequest::application(application))
            .await
    }

    /// Secures a call against interruption.
    pub async fn secure_call(&self, call: &str) -> Result<Call, ClientError> {
        self.op(call, "secure-call").await
    }

    /// Sends digits on a connected call, DTMF or pulse.
    pub async fn generate_digits_as(
        &self,
        call: &str,
        digits: &str,
        mode: DigitMode,
    ) -> Result<Call, ClientError> {
        let request = CallOpRequest {
            digit_mode: Some(mode),
            ..CallOpRequest::digits(digits)
        };
        self.call_op(call, "generate-digits", &request).await
    }

    /// Starts (`Some`) or stops (`None`) digit events for a call on this log-on's event stream.
    pub async fn monitor_digits(
        &self,
        call: &str,
        mode: Option<DigitMode>,
    ) -> Result<Call, ClientError> {
        let request = CallOpRequest {
            digit_mode: mode,
            enabled: Some(mode.is_some()),
            ..CallOpRequest::default()
        };
        self.call_op(call, "monitor-digits", &request).await
    }

    /// Changes this log-on's privilege on a call.
    pub async fn set_call_privilege(
        &self,
        call: &str,
        privilege: CallPrivilege,
    ) -> Result<Call, ClientError> {
        let request = CallOpRequest {
            privilege: Some(privilege),
            ..CallOpRequest::default()
        };
        self.call_op(call, "set-call-privilege", &request).await
    }

    /// Turns a connected call into a conference: the conference (on hold pending a party) and a
    /// consultation call in dial tone.
    pub async fn setup_conference(&self, call: &str) -> Result<ConferenceSetup, ClientError> {
        let path = format!("/v1/calls/{}/setup-conference", segment(call));
        self.change(Method::POST, &path, None).await
    }

    /// Sets up a conference from a line, without a call.
    pub async fn setup_conference_on(
        &self,
        line_handle: &str,
    ) -> Result<ConferenceSetup, ClientError> {
        self.line_op(line_handle, "setup-conference", &LineOpRequest::default())
            .await
    }

    /// Holds a conference pending a new party; returns the consultation call in dial tone.
    pub async fn prepare_add_to_conference(&self, conference: &str) -> Result<Call, ClientError> {
        self.op(conference, "prepare-add-to-conference").await
    }

    /// Adds a consultation call to its conference; returns the conference.
    pub async fn add_to_conference(
        &self,
        conference: &str,
        consultation: &str,
    ) -> Result<Call, ClientError> {
        self.call_op(
            conference,
            "add-to-conference",
            &CallOpRequest::consultation(consultation),
        )
        .await
    }

    /// Takes a party out of its conference.
    pub async fn remove_from_conference(&self, party: &str) -> Result<Call, ClientError> {
        self.op(party, "remove-from-conference").await
    }

    /// The calls of the conference `call` is the parent or a party of: the parent first.
    pub async fn conference_calls(&self, call: &str) -> Result<Vec<Call>, ClientError> {
        self.get(&format!("/v1/calls/{}/conference-calls", segment(call)))
            .await
    }

    /// Asks the switch to complete a call to a busy or unanswered party later.
    pub async fn complete_call(
        &self,
        call: &str,
        mode: CompletionMode,
    ) -> Result<CompletionRequested, ClientError> {
        let request = CallOpRequest {
            completion_mode: Some(mode),
            ..CallOpRequest::default()
        };
        let path = format!("/v1/calls/{}/complete-call", segment(call));
        self.change(Method::POST, &path, Some(to_body(&request)?))
            .await
    }

    /// Cancels a call-completion request of a line.
    pub async fn cancel_call_completion(
        &self,
        line_handle: &str,
        completion: u32,
    ) -> Result<(), ClientError> {
        let request = LineOpRequest {
            completion: Some(completion),
            ..LineOpRequest::default()
        };
        self.line_op(line_handle, "cancel-call-completion", &request)
            .await
    }

    /// Replaces a line's forwarding (do-not-disturb and rules; both empty cancel it); returns the
    /// line's status.
    pub async fn forward(
        &self,
        line_handle: &str,
        do_not_disturb: bool,
        rules: Vec<ForwardRule>,
    ) -> Result<LineStatus, ClientError> {
        let request = LineOpRequest {
            do_not_disturb,
            rules,
            ..LineOpRequest::default()
        };
        self.line_op(line_handle, "forward", &request).await
    }

    /// A line's status: in service or why not, its opens, each address's calls.
    pub async fn line_status(&self, line_handle: &str) -> Result<LineStatus, ClientError> {
        self.get(&format!("/v1/line-opens/{}", segment(line_handle)))
            .await
    }

    /// Takes up the calls already on a line that this log-on holds no handle for: a monitor
    /// handle each, announced on the event stream by `new_call` first.
    pub async fn new_calls(&self, line_handle: &str) -> Result<Vec<Call>, ClientError> {
        self.line_op(line_handle, "new-calls", &LineOpRequest::default())
            .await
    }

    /// `POST /v1/line-opens/{line_handle}/{op}`: any line operation by its name, with its fields.
    pub async fn line_op<T: DeserializeOwned>(
        &self,
        line_handle: &str,
        op: &str,
        request: &LineOpRequest,
    ) -> Result<T, ClientError> {
        let path = format!("/v1/line-opens/{}/{}", segment(line_handle), segment(op));
        self.change(Method::POST, &path, Some(to_body(request)?))
            .await
    }

    /// Takes a parked call from `orbit` onto a line open.
    pub async fn unpark(&self, line_handle: &str, orbit: &str) -> Result<Call, ClientError> {
        let request = RetrieveRequest {
            line_handle: line_handle.to_owned(),
            orbit: Some(orbit.to_owned()),
            ..RetrieveRequest::default()
        };
        self.change(Method::POST, "/v1/calls/unpark", Some(to_body(&request)?))
            .await
    }

    /// Picks up a call ringing at `station` (directed) or in `group`.
    pub async fn pickup(&self, line_handle: &str, target: Pickup<'_>) -> Result<Call, ClientError> {
        let (station, group) = match target {
            Pickup::Station(s) => (Some(s.to_owned()), None),
            Pickup::Group(g) => (None, Some(g.to_owned())),
        };
        let request = RetrieveRequest {
            line_handle: line_handle.to_owned(),
            station,
            group,
            ..RetrieveRequest::default()
        };
        self.change(Method::POST, "/v1/calls/pickup", Some(to_body(&request)?))
            .await
    }

    /// The status table.
    pub async fn status(&self) -> Result<Vec<StatusRow>, ClientError> {
        self.get("/v1/status").await
    }

    /// `GET /v1/cdrs`: a page of call detail records, newest first (`params.format` is ignored:
    /// this asks for JSON). Follow `next` by setting `params.before` to it.
    pub async fn cdrs(
        &self,
        params: &tapir_api::cdr::CdrQueryParams,
    ) -> Result<tapir_api::cdr::CdrPage, ClientError> {
        let params = tapir_api::cdr::CdrQueryParams {
            format: None,
            ..params.clone()
        };
        self.get(&format!("/v1/cdrs{}", cdr_query(&params))).await
    }

    /// `GET /v1/cdrs` as the service exports it: `format` `csv` or `jsonl`, the text as sent.
    pub async fn cdrs_export(
        &self,
        params: &tapir_api::cdr::CdrQueryParams,
    ) -> Result<String, ClientError> {
        let path = format!("/v1/cdrs{}", cdr_query(params));
        let (status, bytes) = self.exchange(Method::GET, &path, None, None).await?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        String::from_utf8(bytes.to_vec()).map_err(|e| ClientError::Protocol(format!("{path}: {e}")))
    }

    /// The route table.
    pub async fn routes(&self) -> Result<Routes, ClientError> {
        self.get("/v1/routes").await
    }

    /// Routes calls of `class` to `application`.
    pub async fn set_route(&self, class: &str, application: &str) -> Result<Routes, ClientError> {
        let body = to_body(&RouteRequest {
            application: application.to_owned(),
        })?;
        let path = format!("/v1/routes/{}", segment(class));
        self.change(Method::PUT, &path, Some(body)).await
    }

    /// Clears the route of `class`.
    pub async fn clear_route(&self, class: &str) -> Result<Routes, ClientError> {
        let path = format!("/v1/routes/{}", segment(class));
        self.change(Method::DELETE, &path, None).await
    }

    /// Sets the default route (`first-owner`, `reject`, `app:NAME`).
    pub async fn set_default_route(&self, default: &str) -> Result<Routes, ClientError> {
        let body = to_body(&DefaultRouteRequest {
            default: default.to_owned(),
        })?;
        self.change(Method::PUT, "/v1/routes/default", Some(body))
            .await
    }

    /// Translates an address with the session's location.
    pub async fn translate(&self, request: &TranslateRequest) -> Result<Translated, ClientError> {
        self.send(Method::POST, "/v1/translate", Some(to_body(request)?), None)
            .await
    }

    /// The session's line opens and calls, and the event sequence number they include.
    pub async fn snapshot(&self) -> Result<Snapshot, ClientError> {
        self.get("/v1/snapshot").await
    }

    /// The log-on's event stream, from the first event after `after` (0: from the start).
    pub fn events(&self, after: u64) -> EventStream {
        EventStream {
            client: self.clone(),
            last_seq: after,
            socket: None,
            ended: false,
            reconnect_for: Duration::from_secs(30),
        }
    }
}

/// Whom [`Client::pickup`] picks up from.
#[derive(Clone, Copy, Debug)]
pub enum Pickup<'a> {
    /// The call ringing at this station.
    Station(&'a str),
    /// A call ringing in this pickup group.
    Group(&'a str),
}

/// What the event stream delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamItem {
    /// The next event.
    Event(Event),
    /// The position the stream was at had been trimmed from the service's journal: here is the
    /// session's state now; the stream continues with the events after it.
    Resync(Snapshot),
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A log-on's events, in order, resuming by itself after a broken connection.
pub struct EventStream {
    client: Client,
    last_seq: u64,
    socket: Option<Socket>,
    ended: bool,
    reconnect_for: Duration,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("last_seq", &self.last_seq)
            .field("connected", &self.socket.is_some())
            .field("ended", &self.ended)
            .finish()
    }
}

impl EventStream {
    /// How long to keep trying to reconnect before giving up with an error (default 30 s).
    pub fn reconnect_for(mut self, limit: Duration) -> Self {
        self.reconnect_for = limit;
        self
    }

    /// The sequence number of the last event delivered.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Drops the connection (the next [`EventStream::next`] reconnects and resumes). For tests of the
    /// resume path and for callers that want to let go of the socket for a while.
    pub async fn disconnect(&mut self) {
        if let Some(mut s) = self.socket.take() {
            let _ = s.close(None).await;
        }
    }

    /// The next item; `None` once the log-on has ended. An error means the service stayed unreachable
    /// for the reconnect limit, or refused the stream (a token no longer valid); calling again retries.
    pub async fn next(&mut self) -> Option<Result<StreamItem, ClientError>> {
        loop {
            if self.ended {
                return None;
            }
            let socket = match self.socket.as_mut() {
                Some(s) => s,
                None => match self.connect().await {
                    Ok(s) => self.socket.insert(s),
                    Err(e) => return Some(Err(e)),
                },
            };
            let message = socket.next().await;
            let text = match message {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    debug!(after = self.last_seq, "event stream broke; resuming");
                    self.socket = None;
                    continue;
                }
                Some(Ok(_)) => continue,
            };
            match StreamMessage::from_json(text.as_str()) {
                Ok(StreamMessage::Event(e)) => {
                    if e.seq <= self.last_seq {
                        continue;
                    }
                    self.last_seq = e.seq;
                    return Some(Ok(StreamItem::Event(e)));
                }
                Ok(StreamMessage::Control(StreamControl::End)) => {
                    self.ended = true;
                    self.socket = None;
                    return None;
                }
                Ok(StreamMessage::Control(StreamControl::Trimmed { .. })) => {
                    self.socket = None;
                    let snapshot = match self.client.snapshot().await {
                        Ok(s) => s,
                        Err(e) => return Some(Err(e)),
                    };
                    self.last_seq = snapshot.seq;
                    return Some(Ok(StreamItem::Resync(snapshot)));
                }
                Err(e) => return Some(Err(ClientError::Protocol(e.to_string()))),
            }
        }
    }

    async fn connect(&mut self) -> Result<Socket, ClientError> {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(20);
        loop {
            let path = format!("/v1/events?after={}", self.last_seq);
            match connect_socket(
                &self.client.service.authority,
                &path,
                &self.client.logon.token,
            )
            .await
            {
                Ok(socket) => return Ok(socket),
                // Refusals (a token no longer valid) are final; a service starting up is not.
                Err(Connect::Refused(error)) => {
                    self.ended = error.status() == Some(StatusCode::UNAUTHORIZED.as_u16());
                    return Err(error);
                }
                Err(Connect::Failed(error)) => {
                    if started.elapsed() >= self.reconnect_for {
                        return Err(error);
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }
}

/// Why a WebSocket could not be opened.
enum Connect {
    /// The service refused it (a 4xx answer), or the request could not be made: final.
    Refused(ClientError),
    /// Not reachable, or a 5xx answer: worth another try.
    Failed(ClientError),
}

/// Opens the WebSocket at `path` of the service at `authority` as the log-on of `token`.
async fn connect_socket(authority: &str, path: &str, token: &str) -> Result<Socket, Connect> {
    let mut request = format!("ws://{authority}{path}")
        .into_client_request()
        .map_err(|e| Connect::Refused(ClientError::BadUrl(e.to_string())))?;
    let auth = format!("Bearer {token}").parse().map_err(|_| {
        Connect::Refused(ClientError::Protocol(
            "the token is not a header value".into(),
        ))
    })?;
    request.headers_mut().insert("authorization", auth);
    // The socket library zeroes its whole read buffer before every read; messages are small, so
    // 16 KiB holds many of them without paying for the 128 KiB default each time.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(16 * 1024);
    match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status();
            let body = response.body().clone().unwrap_or_default();
            let error = api_error(status, &body);
            if status.is_client_error() {
                Err(Connect::Refused(error))
            } else {
                Err(Connect::Failed(error))
            }
        }
        Err(e) => Err(Connect::Failed(ClientError::Transport(e.to_string()))),
    }
}

/// Where the reply to a request on the command socket goes.
type ReplyTo = oneshot::Sender<Result<(StatusCode, Bytes), ClientError>>;

/// A request waiting for its reply on the command socket.
struct Waiting {
    message: String,
    reply: ReplyTo,
}

/// The command socket of a client and its clones: requests go to the task that owns the socket, which
/// numbers them, writes every one that is waiting in one go, and hands each reply to its caller.
#[derive(Clone, Debug)]
struct CommandSocket {
    requests: mpsc::UnboundedSender<(u64, Waiting)>,
    next_id: Arc<AtomicU64>,
}

impl CommandSocket {
    fn start(socket: Socket) -> Self {
        let (requests, queue) = mpsc::unbounded_channel();
        tokio::spawn(drive_commands(socket, queue));
        Self {
            requests,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// One request and its reply; [`ClientError::Transport`] when the socket is (or goes) away.
    async fn exchange(
        &self,
        method: &Method,
        path: &str,
        body: Option<Bytes>,
        request_id: Option<&str>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message =
            String::with_capacity(64 + path.len() + body.as_ref().map_or(0, |b| b.len()));
        message.push_str("{\"id\":");
        message.push_str(&id.to_string());
        message.push_str(",\"method\":\"");
        message.push_str(method.as_str());
        message.push_str("\",\"path\":");
        message.push_str(&json_string(path)?);
        if let Some(r) = request_id {
            message.push_str(",\"request_id\":");
            message.push_str(&json_string(r)?);
        }
        if let Some(b) = &body {
            // Bodies are this client's own serialization: JSON text.
            let text = std::str::from_utf8(b).map_err(|e| ClientError::Protocol(e.to_string()))?;
            message.push_str(",\"body\":");
            message.push_str(text);
        }
        message.push('}');
        let (reply, answer) = oneshot::channel();
        let gone = || ClientError::Transport("the command socket closed".into());
        self.requests
            .send((id, Waiting { message, reply }))
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

fn json_string(s: &str) -> Result<String, ClientError> {
    serde_json::to_string(s).map_err(|e| ClientError::Protocol(e.to_string()))
}

/// A reply on the command socket: a JSON `body` as it was sent, or a `text` body (CSV, Prometheus).
#[derive(Deserialize)]
struct CommandReply<'a> {
    /// `None` only on the service's refusal of a message it could not read (never one of ours).
    id: Option<u64>,
    status: u16,
    #[serde(default, borrow)]
    body: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    text: Option<String>,
}

async fn drive_commands(mut socket: Socket, mut queue: mpsc::UnboundedReceiver<(u64, Waiting)>) {
    let mut waiting: HashMap<u64, ReplyTo> = HashMap::new();
    let broke = loop {
        tokio::select! {
            next = queue.recv() => {
                let Some(first) = next else {
                    // Every client using the socket is gone.
                    let _ = socket.close(None).await;
                    return;
                };
                let mut next = Some(first);
                let mut failed = None;
                while let Some((id, w)) = next.take().or_else(|| queue.try_recv().ok()) {
                    waiting.insert(id, w.reply);
                    if let Err(e) = socket.feed(Message::text(w.message)).await {
                        failed = Some(e.to_string());
                        break;
                    }
                }
                if let Some(e) = failed {
                    break e;
                }
                if let Err(e) = socket.flush().await {
                    break e.to_string();
                }
            }
            message = socket.next() => match message {
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<CommandReply>(text.as_str()) {
                    Ok(r) => match r.id.and_then(|id| waiting.remove(&id)) {
                        Some(reply) => {
                            let status = StatusCode::from_u16(r.status)
                                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                            let body = match (r.body, r.text) {
                                (Some(b), _) => Bytes::copy_from_slice(b.get().as_bytes()),
                                (None, Some(t)) => Bytes::from(t),
                                (None, None) => Bytes::new(),
                            };
                            let _ = reply.send(Ok((status, body)));
                        }
                        // A caller that gave up, or a refusal without an ID.
                        None => debug!(reply = text.as_str(), "command reply nobody waits for"),
                    },
                    Err(e) => break format!("not a reply: {e}"),
                },
                Some(Ok(Message::Close(_))) | None => break "closed by the service".to_owned(),
                Some(Err(e)) => break e.to_string(),
                Some(Ok(_)) => {}
            }
        }
    };
    debug!(
        error = broke,
        waiting = waiting.len(),
        "command socket gone"
    );
    for (_, reply) in waiting.drain() {
        let _ = reply.send(Err(ClientError::Transport(format!(
            "the command socket broke: {broke}"
        ))));
    }
}
