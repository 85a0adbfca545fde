//! The JSON shapes of the API: requests (unknown fields refused), responses, and events.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tapir::core::info::PartyId;
use tapir::core::privilege::CallPrivilege;
use tapir::core::state::CallState;
use tapir::translate::Translated;
use tapir::{CallHandle, Event, LineEvent, LineHandle, SessionEvent, StatusRow};

use crate::error::ApiError;

/// `POST /v1/sessions`.
#[derive(Clone, Debug, Serialize, Deserialize)]
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

/// A service disabled for the session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisabledServiceDto {
    /// The service.
    pub service: String,
    /// Why.
    pub reason: String,
}

/// The answer to a log-on.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    pub disabled_services: Vec<DisabledServiceDto>,
}

/// A line the session may use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineDto {
    /// The engine's line ID (to open it).
    pub id: u32,
    /// Its name.
    pub name: String,
    /// The provider serving it.
    pub provider: String,
    /// Its addresses' numbers.
    pub addresses: Vec<String>,
}

/// `POST /v1/line-opens`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenLineRequest {
    /// The line's ID.
    pub line: u32,
    /// `owner`, `monitor`, `owner_monitor` or `none`.
    pub privilege: String,
    /// Owner priority (default 0).
    #[serde(default)]
    pub priority: u32,
}

/// A line open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineOpenDto {
    /// The handle.
    pub line_handle: String,
    /// The line's ID.
    pub line: u32,
}

/// `POST /v1/calls`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MakeCallRequest {
    /// The line open to call from.
    pub line_handle: String,
    /// Where to; absent leaves the call in dial tone.
    #[serde(default)]
    pub destination: Option<String>,
    /// Translate a canonical destination with the session's location first.
    #[serde(default)]
    pub translate: bool,
}

/// A body with digits or a destination.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigitsRequest {
    /// Digits (dial) or a destination (transfer, redirect).
    pub digits: String,
}

/// `POST /v1/calls/{call}/park`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParkRequest {
    /// The orbit; absent: the switch chooses.
    #[serde(default)]
    pub orbit: Option<String>,
}

/// `POST /v1/calls/unpark` and `POST /v1/calls/pickup`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrieveRequest {
    /// The line open to take the call on.
    pub line_handle: String,
    /// Unpark: the orbit.
    #[serde(default)]
    pub orbit: Option<String>,
    /// Pickup: the ringing station.
    #[serde(default)]
    pub station: Option<String>,
    /// Pickup: the pickup group.
    #[serde(default)]
    pub group: Option<String>,
}

/// `POST /v1/calls/{call}/swap-hold`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapRequest {
    /// The held call to swap with.
    pub held: String,
}

/// `PUT /v1/routes/{class}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRequest {
    /// The receiving application.
    pub application: String,
}

/// `POST /v1/translate`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
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
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TranslatedDto {
    /// What to dial.
    pub dialable: String,
    /// What to show.
    pub displayable: String,
    /// The location's country calling code.
    pub current_country: u16,
    /// The destination's.
    pub dest_country: u16,
    /// The result flags that are set.
    pub flags: Vec<String>,
}

impl From<Translated> for TranslatedDto {
    fn from(t: Translated) -> Self {
        let f = t.flags;
        let flags = [
            ("canonical", f.canonical),
            ("international", f.international),
            ("long_distance", f.long_distance),
            ("local", f.local),
            ("in_toll_list", f.in_toll_list),
            ("not_in_toll_list", f.not_in_toll_list),
            ("dial_billing", f.dial_billing),
            ("dial_quiet", f.dial_quiet),
            ("dial_dial_tone", f.dial_dial_tone),
            ("dial_prompt", f.dial_prompt),
            ("no_translation", f.no_translation),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(n, _)| n.to_owned())
        .collect();
        Self {
            dialable: t.dialable,
            displayable: t.displayable,
            current_country: t.current_country,
            dest_country: t.dest_country,
            flags,
        }
    }
}

/// A party of a call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyDto {
    /// The number, if known.
    pub number: Option<String>,
    /// The name, if known.
    pub name: Option<String>,
}

impl From<&PartyId> for PartyDto {
    fn from(p: &PartyId) -> Self {
        Self {
            number: p.number.clone(),
            name: p.name.clone(),
        }
    }
}

/// A call as the session sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallDto {
    /// The session's handle.
    pub call: String,
    /// The provider's call ID, the same for every session.
    pub call_id: String,
    /// The line open it is held through.
    pub line_handle: String,
    /// The line's ID.
    pub line: u32,
    /// The state (`offering`, `connected`, …).
    pub state: String,
    /// The state with its mode, e.g. `Connected(Active)`.
    pub state_detail: String,
    /// This session's privilege: `owner` or `monitor`.
    pub privilege: String,
    /// The operations this session can perform on it now.
    pub features: Vec<String>,
    /// The calling party.
    pub caller: PartyDto,
    /// The called party.
    pub called: PartyDto,
    /// The connected party.
    pub connected: PartyDto,
}

/// A row of the status table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRowDto {
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
    /// The last error it reported.
    pub last_error: Option<String>,
}

impl From<StatusRow> for StatusRowDto {
    fn from(r: StatusRow) -> Self {
        Self {
            id: r.id,
            service: r.service,
            display_name: r.display_name,
            state: snake(&format!("{:?}", r.state)),
            reason: r.reason,
            lines: r.lines,
            lines_out_of_service: r.lines_out_of_service,
            sessions: r.sessions,
            last_error: r.last_error,
        }
    }
}

/// A route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteDto {
    /// The call class.
    pub class: String,
    /// The receiving application.
    pub application: String,
    /// When it was set, in milliseconds since the Unix epoch.
    pub set_at_ms: u64,
}

/// The route table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutesDto {
    /// The routes, in class order.
    pub routes: Vec<RouteDto>,
    /// `first-owner`, `reject` or `app:NAME`.
    pub default: String,
}

/// What a session has, to continue from when events were trimmed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotDto {
    /// The last event sequence number the snapshot includes; resume the event stream after it.
    pub seq: u64,
    /// The line opens.
    pub lines: Vec<LineOpenDto>,
    /// The calls.
    pub calls: Vec<CallDto>,
}

/// `CamelCase` → `snake_case`.
pub(crate) fn snake(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn state_name(s: &CallState) -> String {
    snake(&format!("{:?}", s.kind()))
}

pub(crate) fn privilege_name(p: CallPrivilege) -> String {
    snake(&format!("{p:?}"))
}

/// Parses `call:0123456789abcdef`.
pub(crate) fn parse_call(s: &str) -> Result<CallHandle, ApiError> {
    parse_handle(s, "call:")
        .map(CallHandle::from_u64)
        .ok_or_else(|| ApiError::from(tapir::Error::InvalidCallHandle))
}

/// Parses `line:0123456789abcdef`.
pub(crate) fn parse_line(s: &str) -> Result<LineHandle, ApiError> {
    parse_handle(s, "line:")
        .map(LineHandle::from_u64)
        .ok_or_else(|| ApiError::from(tapir::Error::InvalidLineHandle))
}

fn parse_handle(s: &str, prefix: &str) -> Option<u64> {
    let hex = s.strip_prefix(prefix)?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// An event as JSON: `{"seq": n, "type": …, …}`.
pub fn event_json(e: &SessionEvent) -> Value {
    let mut v = match &e.event {
        Event::NewCall {
            call,
            line,
            address,
            call_id,
            privilege,
        } => json!({
            "type": "new_call", "call": call.to_string(), "line_handle": line.to_string(),
            "address": address.0, "call_id": call_id.to_string(), "privilege": privilege_name(*privilege),
        }),
        Event::CallState {
            call,
            state,
            privilege,
        } => json!({
            "type": "call_state", "call": call.to_string(), "state": state_name(state),
            "state_detail": format!("{state:?}"), "privilege": privilege_name(*privilege),
        }),
        Event::CallInfo { call, changed } => json!({
            "type": "call_info", "call": call.to_string(), "changed": format!("{changed:?}"),
        }),
        Event::Digit { call, digit, mode } => json!({
            "type": "digit", "call": call.to_string(), "digit": digit.to_string(),
            "mode": snake(&format!("{mode:?}")),
        }),
        Event::Line { line, event } => {
            let mut v = json!({ "type": "line", "line_handle": line.to_string() });
            let detail = match event {
                LineEvent::Ringing { address, count } => {
                    json!({ "kind": "ringing", "address": address.0, "count": count })
                }
                LineEvent::InService => json!({ "kind": "in_service" }),
                LineEvent::OutOfService { reason } => {
                    json!({ "kind": "out_of_service", "reason": reason })
                }
                other => json!({ "kind": "other", "detail": format!("{other:?}") }),
            };
            v["event"] = detail;
            v
        }
        Event::LineClosed { line } => {
            json!({ "type": "line_closed", "line_handle": line.to_string() })
        }
        Event::Status(row) => {
            json!({ "type": "status", "row": StatusRowDto::from(row.clone()) })
        }
        Event::EventsLost { first, last } => {
            json!({ "type": "events_lost", "first": first, "last": last })
        }
    };
    v["seq"] = json!(e.seq);
    v
}
