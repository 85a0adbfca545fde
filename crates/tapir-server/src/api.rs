//! Conversions between the engine's types and the wire types of `tapir-api`, and handle parsing.

use axum::body::Bytes;
use tapir::core::info::PartyId;
use tapir::core::privilege::CallPrivilege;
use tapir::core::state::CallState;
use tapir::{CallHandle, Event, LineEvent, LineHandle, Session, SessionEvent};
use tapir_api as wire;

use crate::error::ApiError;

/// The wire form of a translated address.
pub(crate) fn translated(t: tapir::translate::Translated) -> wire::Translated {
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
    wire::Translated {
        dialable: t.dialable,
        displayable: t.displayable,
        current_country: t.current_country,
        dest_country: t.dest_country,
        flags,
    }
}

/// `v` as JSON bytes.
pub(crate) fn to_json(v: &impl serde::Serialize) -> Bytes {
    match serde_json::to_vec(v) {
        Ok(b) => Bytes::from(b),
        Err(e) => Bytes::from(serde_json::json!({ "error": e.to_string() }).to_string()),
    }
}

/// A call as JSON, read from the session after the operation.
pub(crate) fn call_dto(s: &Session, call: CallHandle) -> Result<wire::Call, ApiError> {
    let st = s.call_status(call)?;
    let info = s.call_info(call)?;
    Ok(wire::Call {
        call: call.to_string(),
        call_id: info.call_id().to_string(),
        line_handle: info.line_handle.to_string(),
        line: info.line.0,
        state: state_name(&st.state),
        mode: st.state.mode_name().map(str::to_owned),
        state_detail: st.state.to_string(),
        privilege: privilege_name(st.privilege),
        features: st.features.iter().map(|f| f.name().to_owned()).collect(),
        caller: party(&info.info.caller),
        called: party(&info.info.called),
        connected: party(&info.info.connected),
        redirecting: someone(info.info.redirecting()),
        redirection: someone(info.info.redirection()),
        origin: info.info.origin.name().to_owned(),
        reason: info.info.reason.name().to_owned(),
        related_call_id: info.info.related_call_id.map(|c| c.to_string()),
        consultation_call_id: info.consultation_partner.map(|c| c.to_string()),
    })
}

/// A line open's status as JSON.
pub(crate) async fn line_status(
    s: &Session,
    line: LineHandle,
) -> Result<wire::LineStatus, ApiError> {
    let st = s.line_status(line).await?;
    Ok(wire::LineStatus {
        line_handle: line.to_string(),
        line: st.line.0,
        in_service: st.in_service,
        reason: st.reason,
        devices: st
            .devices
            .into_iter()
            .map(|d| wire::LineDevice {
                contact: d.contact,
                source: d.source,
                expires_in: d.expires_in,
            })
            .collect(),
        opens: st.opens,
        addresses: st
            .addresses
            .into_iter()
            .map(|a| wire::AddressStatus {
                address: a.address.0,
                number: a.number,
                active: a.usage.active,
                on_hold: a.usage.on_hold,
                pending_transfer: a.usage.pending_transfer,
                pending_conference: a.usage.pending_conference,
            })
            .collect(),
    })
}

/// The wire form of a party.
pub(crate) fn party(p: &PartyId) -> wire::Party {
    wire::Party {
        number: p.number.as_deref().map(str::to_owned),
        name: p.name.as_deref().map(str::to_owned),
    }
}

/// The wire form of a party that is someone; `None` for the empty identity of no one.
fn someone(p: &PartyId) -> Option<wire::Party> {
    (*p != PartyId::default()).then(|| party(p))
}

/// The wire form of a status row.
pub(crate) fn status_row(r: tapir::StatusRow) -> wire::StatusRow {
    wire::StatusRow {
        id: r.id,
        service: r.service,
        display_name: r.display_name,
        state: r.state.name().to_owned(),
        reason: r.reason,
        lines: r.lines,
        lines_out_of_service: r.lines_out_of_service,
        sessions: r.sessions,
        last_error: r.last_error,
        faults: r.faults,
        refused_reports: r.refused_reports,
    }
}

pub(crate) fn state_name(s: &CallState) -> String {
    s.kind().name().to_owned()
}

pub(crate) fn privilege_name(p: CallPrivilege) -> String {
    p.name().to_owned()
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

/// The wire form of an event of the session's stream.
pub fn event(e: &SessionEvent) -> wire::Event {
    use wire::EventKind as K;
    let kind = match &e.event {
        Event::NewCall {
            call,
            line,
            address,
            call_id,
            privilege,
        } => K::NewCall {
            call: call.to_string(),
            line_handle: line.to_string(),
            address: address.0,
            call_id: call_id.to_string(),
            privilege: privilege_name(*privilege),
        },
        Event::CallState {
            call,
            state,
            privilege,
        } => K::CallState {
            call: call.to_string(),
            state: state_name(state),
            mode: state.mode_name().map(str::to_owned),
            state_detail: state.to_string(),
            privilege: privilege_name(*privilege),
        },
        Event::CallInfo { call, changed } => K::CallInfo {
            call: call.to_string(),
            changed: changed.to_string(),
        },
        Event::Digit { call, digit, mode } => K::Digit {
            call: call.to_string(),
            digit: digit.to_string(),
            mode: mode.name().to_owned(),
        },
        Event::Line { line, event } => K::Line {
            line_handle: line.to_string(),
            event: match event {
                LineEvent::Ringing { address, count } => wire::LineEvent::Ringing {
                    address: address.0,
                    count: *count,
                },
                LineEvent::InService => wire::LineEvent::InService,
                LineEvent::OutOfService { reason } => wire::LineEvent::OutOfService {
                    reason: reason.clone(),
                },
                LineEvent::ForwardingChanged { address } => {
                    wire::LineEvent::ForwardingChanged { address: address.0 }
                }
                LineEvent::Parked { orbit, call_id } => wire::LineEvent::Parked {
                    orbit: orbit.clone(),
                    call_id: call_id.to_string(),
                },
                LineEvent::Unparked { orbit, call_id } => wire::LineEvent::Unparked {
                    orbit: orbit.clone(),
                    call_id: call_id.to_string(),
                },
                LineEvent::CapsChanged(_) => wire::LineEvent::CapsChanged,
                LineEvent::DevicesChanged => wire::LineEvent::DevicesChanged,
            },
        },
        Event::LineClosed { line } => K::LineClosed {
            line_handle: line.to_string(),
        },
        Event::Status(row) => K::Status {
            row: status_row((**row).clone()),
        },
        Event::EventsLost { first, last } => K::EventsLost {
            first: *first,
            last: *last,
        },
    };
    wire::Event { seq: e.seq, kind }
}
