//! The wire types of `tapird`'s network API.
//!
//! Every request body, response body, event and error of the HTTP + JSON API and its WebSocket event
//! stream, as plain serde types. `tapird` (crate `tapir-server`) serializes them and `tapir-client`
//! reads them, so the two cannot drift apart; programs in other languages can use the OpenAPI document
//! `tapird` serves at `/openapi.json`, generated from these same types (feature `openapi`).
//!
//! Handles are strings — `line:0123456789abcdef`, `call:0123456789abcdef` — valid only with the token of
//! the log-on they were given to; `call_id` is the provider's identity of a call, the same for every
//! application. `docs/api.md` describes the API as a whole.
//!
//! ```
//! use tapir_api::{StreamMessage, EventKind};
//!
//! let text = r#"{"seq":7,"type":"call_state","call":"call:0000000000000001",
//!                "state":"connected","mode":"active","state_detail":"connected (active)",
//!                "privilege":"owner"}"#;
//! let StreamMessage::Event(event) = StreamMessage::from_json(text)? else { panic!("an event") };
//! assert_eq!(event.seq, 7);
//! assert!(matches!(event.kind, EventKind::CallState { ref state, .. } if state == "connected"));
//! # Ok::<(), serde_json::Error>(())
//! ```

use serde::{Deserialize, Serialize};

pub mod cdr;
pub mod vocab;

pub use vocab::{
    CallPrivilege, CompletionMode, DigitMode, ForwardCondition, LinePrivilege, TransferMode,
};

/// `POST /v1/sessions`: log on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LogonRequest {
    /// The application's configured name.
    pub application: String,
    /// Its secret.
    pub secret: String,
    /// The profile; the configured default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Join the shared session instead of establishing an individual one.
    #[serde(default)]
    pub shared: bool,
}

/// A service of the session's profile that is disabled for the session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DisabledService {
    /// The service.
    pub service: String,
    /// Why.
    pub reason: String,
}

/// The answer to a log-on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogonResponse {
    /// The session's identifier (the same for every application of the shared session).
    pub session_id: String,
    /// The bearer token for every later request of this log-on.
    pub token: String,
    /// The application.
    pub application: String,
    /// The profile.
    pub profile: String,
    /// Whether this is the shared session.
    pub shared: bool,
    /// Services of the profile disabled for the session, and why.
    pub disabled_services: Vec<DisabledService>,
}

/// `GET /v1/session`: the log-on's session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    /// The session's identifier.
    pub session_id: String,
    /// The application of this log-on.
    pub application: String,
    /// The profile.
    pub profile: String,
    /// Whether this is the shared session.
    pub shared: bool,
    /// The applications using the session now.
    pub applications: Vec<String>,
    /// Services of the profile disabled for the session, and why.
    pub disabled_services: Vec<DisabledService>,
}

/// A line the session may use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Line {
    /// The engine's line ID (to open it).
    pub id: u32,
    /// Its name.
    pub name: String,
    /// The provider serving it.
    pub provider: String,
    /// Its addresses' numbers.
    pub addresses: Vec<String>,
}

/// `POST /v1/line-opens`: open a line.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OpenLineRequest {
    /// The line's ID.
    pub line: u32,
    /// `owner`, `monitor`, `owner_monitor` or `none` (anything else: 400 `invalid_privilege`).
    #[cfg_attr(feature = "openapi", schema(value_type = LinePrivilege))]
    pub privilege: String,
    /// Owner priority (default 0).
    #[serde(default)]
    pub priority: u32,
}

/// A line open: the session's handle for a line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LineOpen {
    /// The handle.
    pub line_handle: String,
    /// The line's ID.
    pub line: u32,
}

/// `POST /v1/calls`: make a call.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MakeCallRequest {
    /// The line open to call from.
    pub line_handle: String,
    /// Where to; absent leaves the call in dial tone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Translate a canonical destination with the session's location first.
    #[serde(default)]
    pub translate: bool,
}

/// The body of `POST /v1/calls/{call}/{op}`: the fields the operation needs, none for most.
///
/// `dial` takes `digits`; `generate-digits` `digits` and an optional `digit_mode` (DTMF by default);
/// `monitor-digits` an optional `digit_mode` (`enabled: false` stops); `blind-transfer` and
/// `redirect` `destination`; `swap-hold` `held`; `complete-transfer` `consultation` and an optional
/// `transfer_mode` (`complete-conference` is `complete-transfer` as a conference);
/// `add-to-conference` `consultation`; `park` an optional `orbit`; `complete-call` a
/// `completion_mode`; `handoff` `application`; `set-call-privilege` `privilege`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CallOpRequest {
    /// Digits to dial or to send as DTMF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digits: Option<String>,
    /// Where to transfer or redirect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The held call to swap with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// The consultation call to complete a transfer or conference with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consultation: Option<String>,
    /// The orbit to park in; absent: the switch chooses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orbit: Option<String>,
    /// The application to hand the call to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// How digits are sent or listened for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digit_mode: Option<DigitMode>,
    /// `monitor-digits`: `false` stops reporting digits (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `complete-transfer`: as a transfer (default) or a conference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_mode: Option<TransferMode>,
    /// `complete-call`: how the switch should complete it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_mode: Option<CompletionMode>,
    /// `set-call-privilege`: the session's new privilege on the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privilege: Option<CallPrivilege>,
}

impl CallOpRequest {
    /// A body with `digits`.
    pub fn digits(digits: &str) -> Self {
        Self {
            digits: Some(digits.to_owned()),
            ..Self::default()
        }
    }

    /// A body with `destination`.
    pub fn destination(destination: &str) -> Self {
        Self {
            destination: Some(destination.to_owned()),
            ..Self::default()
        }
    }

    /// A body with `held`.
    pub fn held(held: &str) -> Self {
        Self {
            held: Some(held.to_owned()),
            ..Self::default()
        }
    }

    /// A body with `consultation`.
    pub fn consultation(consultation: &str) -> Self {
        Self {
            consultation: Some(consultation.to_owned()),
            ..Self::default()
        }
    }

    /// A body with `application`.
    pub fn application(application: &str) -> Self {
        Self {
            application: Some(application.to_owned()),
            ..Self::default()
        }
    }
}

/// `POST /v1/calls/unpark` (with `orbit`) and `POST /v1/calls/pickup` (with `station` or `group`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RetrieveRequest {
    /// The line open to take the call on.
    pub line_handle: String,
    /// Unpark: the orbit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orbit: Option<String>,
    /// Pickup: the ringing station.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    /// Pickup: the pickup group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// The body of `POST /v1/line-opens/{line_handle}/{op}`: the fields the operation needs.
///
/// `make-call` takes an optional `destination` and `translate`; `unpark` `orbit`; `pickup` `station`
/// or `group`; `forward` `do_not_disturb` and `rules` (both empty: cancel forwarding);
/// `cancel-call-completion` `completion`; `setup-conference` and `new-calls` nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LineOpRequest {
    /// `make-call`: where to; absent leaves the call in dial tone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// `make-call`: translate a canonical destination with the session's location first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub translate: bool,
    /// `unpark`: the orbit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orbit: Option<String>,
    /// `pickup`: the ringing station.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    /// `pickup`: the pickup group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `forward`: refuse every call (do not disturb); takes precedence over the rules.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub do_not_disturb: bool,
    /// `forward`: the rules, replacing any before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<ForwardRule>,
    /// `cancel-call-completion`: the completion ID `complete-call` returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<u32>,
}

/// A forwarding rule: when, and where to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ForwardRule {
    /// When it applies.
    pub condition: ForwardCondition,
    /// Where calls go.
    pub destination: String,
    /// `no_answer`: rings before forwarding (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rings: Option<u32>,
}

/// The answer to `setup-conference`: the conference's parent call (on hold pending a party) and the
/// consultation call in dial tone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConferenceSetup {
    /// The conference.
    pub conference: Call,
    /// The consultation call: dial it, then `add-to-conference`.
    pub consultation: Call,
}

/// The answer to `complete-call`: the request's ID (for `cancel-call-completion`) and the call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompletionRequested {
    /// The completion request's ID.
    pub completion: u32,
    /// The call, as it is now (absent when the handle is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<Call>,
}

/// `GET /v1/line-opens/{line_handle}`: the line's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LineStatus {
    /// The line open.
    pub line_handle: String,
    /// The line's ID.
    pub line: u32,
    /// Whether calls can be made and received on it now.
    pub in_service: bool,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The devices the line reaches, as its provider reports them: the phones registered to a SIP
    /// line, its fixed contact. Empty for lines without devices of their own (simulated
    /// extensions, modems).
    #[serde(default)]
    pub devices: Vec<LineDevice>,
    /// Opens of the line, by every session.
    pub opens: usize,
    /// Each address's calls.
    pub addresses: Vec<AddressStatus>,
}

/// A device a line reaches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LineDevice {
    /// How the provider reaches it (a SIP contact URI).
    pub contact: String,
    /// Where it registered from, or where a fixed device is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Seconds until its registration lapses unless refreshed; absent for a fixed device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u32>,
}

/// An address's live calls by class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddressStatus {
    /// The address's index on the line.
    pub address: u32,
    /// Its number.
    pub number: String,
    /// Calls that are not held.
    pub active: u32,
    /// Calls on hold.
    pub on_hold: u32,
    /// Calls on hold pending a transfer.
    pub pending_transfer: u32,
    /// Calls on hold pending a conference.
    pub pending_conference: u32,
}

/// The answer to `park`: the orbit the call is parked in, and the parking call as it is now (absent
/// when the handle is gone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Parked {
    /// The orbit.
    pub orbit: String,
    /// The call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<Call>,
}

/// `PUT /v1/routes/{class}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RouteRequest {
    /// The receiving application.
    pub application: String,
}

/// `PUT /v1/routes/default`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DefaultRouteRequest {
    /// `first-owner`, `reject` or `app:NAME`.
    pub default: String,
}

/// `POST /v1/translate`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TranslateRequest {
    /// The address, canonical (`+1 (425) 555-0100`) or dialable.
    pub address: String,
    /// Prefix the location's cancel-call-waiting string.
    #[serde(default)]
    pub cancel_call_waiting: bool,
    /// Treat as local.
    #[serde(default)]
    pub force_local: bool,
    /// Treat as long distance.
    #[serde(default)]
    pub force_long_distance: bool,
}

/// A translated address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Translated {
    /// What to dial.
    pub dialable: String,
    /// What to show.
    pub displayable: String,
    /// The location's country calling code.
    pub current_country: u16,
    /// The destination's.
    pub dest_country: u16,
    /// The result flags that are set (`canonical`, `local`, `long_distance`, …).
    pub flags: Vec<String>,
}

/// A party of a call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Party {
    /// The number, if known.
    pub number: Option<String>,
    /// The name, if known.
    pub name: Option<String>,
}

/// A call as the session sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Call {
    /// The session's handle.
    pub call: String,
    /// The provider's call ID, the same for every session.
    pub call_id: String,
    /// The line open it is held through.
    pub line_handle: String,
    /// The line's ID.
    pub line: u32,
    /// The state (`offering`, `ringback`, `connected`, `on_hold`, `disconnected`, `idle`, …).
    pub state: String,
    /// The state's mode (`active`, `station`, …; for `disconnected` the cause: `busy`,
    /// `no_answer`, `do_not_disturb`, …), when the state has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The state with its mode, for people: `connected (active)`.
    pub state_detail: String,
    /// This session's privilege: `owner` or `monitor`.
    pub privilege: String,
    /// The operations this session can perform on it now (`drop`, `blind-transfer`, …).
    pub features: Vec<String>,
    /// The calling party.
    pub caller: Party,
    /// The called party.
    pub called: Party,
    /// The connected party.
    pub connected: Party,
    /// Who redirected the call here (forwarded, transferred or redirected it), when someone did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirecting: Option<Party>,
    /// Where the call was redirected to, when the provider says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirection: Option<Party>,
    /// Where the call came from: `outbound`, `internal`, `external`, `conference`, …
    #[serde(default)]
    pub origin: String,
    /// Why it arrived here: `direct`, `transfer`, `forward_no_answer`, `pickup`, …
    #[serde(default)]
    pub reason: String,
    /// The call ID of a related call, as the provider reports it (a conference party names its
    /// conference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related_call_id: Option<String>,
    /// The call ID of the other call of a consultation, while both last: for the held original (or
    /// the conference waiting for a party) its consultation call, for the consultation call its
    /// original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consultation_call_id: Option<String>,
}

/// A row of the status table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusRow {
    /// `engine` or the provider's name.
    pub id: String,
    /// Its service.
    pub service: String,
    /// For people.
    pub display_name: String,
    /// `starting`, `available`, `disabled`, `failed`, `stopped`.
    pub state: String,
    /// Why it is disabled or failed.
    pub reason: Option<String>,
    /// Lines.
    pub lines: usize,
    /// Lines out of service.
    pub lines_out_of_service: usize,
    /// Sessions using it.
    pub sessions: usize,
    /// The last error it reported, or its last fault.
    pub last_error: Option<String>,
    /// Operations it panicked in or did not finish within the engine's deadline since the service
    /// started.
    #[serde(default)]
    pub faults: u64,
    /// Reports of its the engine refused (a call it never announced, a state change the transition
    /// table forbids, text too long …) since the service started.
    #[serde(default)]
    pub refused_reports: u64,
}

/// A route: calls of a class go to an application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Route {
    /// The call class (`voice`, `voice.2004`, …).
    pub class: String,
    /// The receiving application.
    pub application: String,
    /// When it was set, in milliseconds since the Unix epoch.
    pub set_at_ms: u64,
}

/// The route table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Routes {
    /// The routes, in class order.
    pub routes: Vec<Route>,
    /// `first-owner`, `reject` or `app:NAME`.
    pub default: String,
}

/// `GET /v1/snapshot`: what a session has, to continue from when its events were trimmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Snapshot {
    /// The last event sequence number the snapshot includes; resume the event stream after it.
    pub seq: u64,
    /// The line opens.
    pub lines: Vec<LineOpen>,
    /// The calls.
    pub calls: Vec<Call>,
}

/// `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// A stable, machine-readable code: the engine's error variant (`invalid_call_state`, …) or one of
    /// the API's own (`unauthorized`, `bad_request`, `not_found`, `payload_too_large`, …).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

/// One event of a session's stream: its sequence number and what happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// The session's sequence number: from 1, without gaps.
    pub seq: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What an event says; the JSON field `type` names the kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A call handle new to the session; always the first event naming it.
    NewCall {
        /// The session's handle.
        call: String,
        /// The line open it arrived on.
        line_handle: String,
        /// The address (index on the line).
        address: u32,
        /// The provider's call ID.
        call_id: String,
        /// `owner` or `monitor`.
        privilege: String,
    },
    /// A call changed state.
    CallState {
        /// The session's handle.
        call: String,
        /// The state.
        state: String,
        /// The state's mode or disconnect cause, when it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<String>,
        /// The state with its mode, for people.
        state_detail: String,
        /// The session's privilege.
        privilege: String,
    },
    /// Call information changed.
    CallInfo {
        /// The session's handle.
        call: String,
        /// Which fields, by name, joined by `|`: `caller-id`, `called-id`, `connected-id`,
        /// `redirecting-id`, `redirection-id`, `related-call-id`, `call-id`, `origin`, `reason`,
        /// `media-mode`, `owners+`, `owners-`, `monitors`, `secure`.
        changed: String,
    },
    /// A digit was detected on a call.
    Digit {
        /// The session's handle.
        call: String,
        /// The digit.
        digit: String,
        /// How it was detected (`dtmf`, `pulse`).
        mode: String,
    },
    /// Something happened on a line.
    Line {
        /// The line open.
        line_handle: String,
        /// What.
        event: LineEvent,
    },
    /// A line open was closed (by the application or because the line went away).
    LineClosed {
        /// The line open.
        line_handle: String,
    },
    /// A row of the status table changed.
    Status {
        /// The row as it is now.
        row: StatusRow,
    },
    /// The engine had to discard events because the service itself fell behind.
    EventsLost {
        /// The first sequence number lost.
        first: u64,
        /// The last.
        last: u64,
    },
    /// A kind this version of the types does not know (sent by a newer service).
    #[serde(other)]
    Unknown,
}

/// What happened on a line; the JSON field `kind` names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LineEvent {
    /// An address is ringing.
    Ringing {
        /// The address.
        address: u32,
        /// Which ring this is, from 0.
        count: u32,
    },
    /// The line is back in service.
    InService,
    /// The line went out of service.
    OutOfService {
        /// Why.
        reason: String,
    },
    /// An address's forwarding changed (`forward`).
    ForwardingChanged {
        /// The address.
        address: u32,
    },
    /// A call from this line was parked in `orbit`.
    Parked {
        /// The orbit.
        orbit: String,
        /// The parked call's ID.
        call_id: String,
    },
    /// The call this line parked left its orbit: retrieved, recalled or abandoned.
    Unparked {
        /// The orbit.
        orbit: String,
        /// The call's ID.
        call_id: String,
    },
    /// The line's capabilities changed.
    CapsChanged,
    /// The devices the line reaches changed (a phone registered or its registration ended); read
    /// the line's status for them.
    DevicesChanged,
    /// A kind this version of the types does not know (sent by a newer service).
    #[serde(other)]
    Other,
}

/// A message of the event stream that is not an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamControl {
    /// The position asked for has been trimmed from the journal; fetch the snapshot and resume after
    /// its `seq`. The connection closes after this message.
    Trimmed {
        /// The first sequence number still kept.
        first_kept: u64,
        /// Where to fetch the snapshot.
        snapshot: String,
    },
    /// The log-on ended (log-off, or the service stopped); no more events will come.
    End,
}

/// One message of the event stream, as a client reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamMessage {
    /// An event.
    Event(Event),
    /// A control message.
    Control(StreamControl),
}

impl StreamMessage {
    /// Reads one text message of the stream.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        // One pass into the fields of the call events (nearly every message of a stream), without
        // the buffering the derived reader of the flattened, internally tagged `Event` needs; other
        // kinds are read again by that reader. A message the flat record cannot hold (a kind from a
        // newer service with a field of the same name and another type) only needs its `type`.
        let kind = match serde_json::from_str::<CallEventWire>(text) {
            Ok(wire) => match wire.into_call_event()? {
                Ok(event) => return Ok(StreamMessage::Event(event)),
                Err(kind) => kind,
            },
            Err(_) => {
                #[derive(Deserialize)]
                struct Peek {
                    #[serde(rename = "type")]
                    kind: String,
                }
                serde_json::from_str::<Peek>(text)?.kind
            }
        };
        match kind.as_str() {
            "trimmed" | "end" => serde_json::from_str(text).map(StreamMessage::Control),
            _ => serde_json::from_str(text).map(StreamMessage::Event),
        }
    }
}

/// The fields of the call events (`new_call`, `call_state`, `call_info`, `digit`) as one flat record;
/// any other field of any other kind is skipped.
#[derive(Deserialize)]
struct CallEventWire {
    #[serde(default)]
    seq: Option<u64>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    call: Option<String>,
    #[serde(default)]
    line_handle: Option<String>,
    #[serde(default)]
    address: Option<u32>,
    #[serde(default)]
    call_id: Option<String>,
    #[serde(default)]
    privilege: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    state_detail: Option<String>,
    #[serde(default)]
    changed: Option<String>,
    #[serde(default)]
    digit: Option<String>,
    #[serde(default)]
    mode: Option<String>,
}

impl CallEventWire {
    /// The call event this is, or (`Err`) the `type` of any other kind; a call event without one of
    /// its fields is the error the derived reader gives.
    fn into_call_event(self) -> Result<Result<Event, String>, serde_json::Error> {
        fn need<T>(v: Option<T>, field: &'static str) -> Result<T, serde_json::Error> {
            v.ok_or_else(|| <serde_json::Error as serde::de::Error>::missing_field(field))
        }
        let kind = match self.kind.as_str() {
            "new_call" => EventKind::NewCall {
                call: need(self.call, "call")?,
                line_handle: need(self.line_handle, "line_handle")?,
                address: need(self.address, "address")?,
                call_id: need(self.call_id, "call_id")?,
                privilege: need(self.privilege, "privilege")?,
            },
            "call_state" => EventKind::CallState {
                call: need(self.call, "call")?,
                state: need(self.state, "state")?,
                mode: self.mode,
                state_detail: need(self.state_detail, "state_detail")?,
                privilege: need(self.privilege, "privilege")?,
            },
            "call_info" => EventKind::CallInfo {
                call: need(self.call, "call")?,
                changed: need(self.changed, "changed")?,
            },
            "digit" => EventKind::Digit {
                call: need(self.call, "call")?,
                digit: need(self.digit, "digit")?,
                mode: need(self.mode, "mode")?,
            },
            _ => return Ok(Err(self.kind)),
        };
        Ok(Ok(Event {
            seq: need(self.seq, "seq")?,
            kind,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_keep_their_shape_and_unknown_kinds_are_tolerated() {
        let e = Event {
            seq: 3,
            kind: EventKind::Line {
                line_handle: "line:0000000000000002".into(),
                event: LineEvent::Ringing {
                    address: 0,
                    count: 2,
                },
            },
        };
        let text = serde_json::to_string(&e).expect("serializes");
        assert_eq!(
            text,
            r#"{"seq":3,"type":"line","line_handle":"line:0000000000000002","event":{"kind":"ringing","address":0,"count":2}}"#
        );
        assert_eq!(
            StreamMessage::from_json(&text).expect("reads"),
            StreamMessage::Event(e)
        );
        for newer in [
            r#"{"seq":9,"type":"from_the_future","x":1}"#,
            r#"{"seq":9,"type":"from_the_future","address":"somewhere","call":7}"#,
        ] {
            assert_eq!(
                StreamMessage::from_json(newer).expect("an unknown kind is still an event"),
                StreamMessage::Event(Event {
                    seq: 9,
                    kind: EventKind::Unknown
                }),
                "{newer}"
            );
        }
        assert_eq!(
            StreamMessage::from_json(r#"{"type":"end"}"#).expect("reads"),
            StreamMessage::Control(StreamControl::End)
        );
        assert!(StreamMessage::from_json(r#"{"seq":"x","type":"end"#).is_err());
    }

    #[test]
    fn every_kind_reads_back_as_written_and_a_missing_field_is_an_error() {
        let s = |v: &str| v.to_owned();
        let kinds = [
            EventKind::NewCall {
                call: s("call:1"),
                line_handle: s("line:2"),
                address: 1,
                call_id: s("42"),
                privilege: s("owner"),
            },
            EventKind::CallState {
                call: s("call:1"),
                state: s("connected"),
                mode: Some(s("active")),
                state_detail: s("connected (active)"),
                privilege: s("monitor"),
            },
            EventKind::CallState {
                call: s("call:1"),
                state: s("ringback"),
                mode: None,
                state_detail: s("ringback"),
                privilege: s("owner"),
            },
            EventKind::CallInfo {
                call: s("call:1"),
                changed: s("caller_id"),
            },
            EventKind::Digit {
                call: s("call:1"),
                digit: s("#"),
                mode: s("dtmf"),
            },
            EventKind::Line {
                line_handle: s("line:2"),
                event: LineEvent::OutOfService { reason: s("cable") },
            },
            EventKind::LineClosed {
                line_handle: s("line:2"),
            },
            EventKind::EventsLost { first: 3, last: 9 },
        ];
        for (seq, kind) in kinds.into_iter().enumerate() {
            let e = Event {
                seq: seq as u64 + 1,
                kind,
            };
            let text = serde_json::to_string(&e).expect("serializes");
            assert_eq!(
                StreamMessage::from_json(&text).expect("reads"),
                StreamMessage::Event(e),
                "{text}"
            );
        }
        for broken in [
            r#"{"seq":1,"type":"call_state","call":"call:1","state":"idle","privilege":"owner"}"#,
            r#"{"type":"new_call","call":"c","line_handle":"l","address":0,"call_id":"1","privilege":"owner"}"#,
            r#"{"seq":1,"type":"digit","call":"c","digit":"1","mode":7}"#,
        ] {
            assert!(StreamMessage::from_json(broken).is_err(), "{broken}");
        }
    }
}
