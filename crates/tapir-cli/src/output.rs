//! What the commands print: JSON for scripts, or tables and lines for people.

use serde::Serialize;
use tapir_api::{Call, EventKind, LineEvent};

use crate::cli::Global;
use crate::failure::{Exit, Failure, Outcome, usage};

/// Prints JSON or the human form.
pub(crate) fn print<T: Serialize>(
    g: &Global,
    value: &T,
    human: impl FnOnce() -> String,
) -> Outcome {
    if g.json() {
        let text = serde_json::to_string_pretty(value).map_err(|e| Failure {
            exit: Exit::Unreachable,
            message: e.to_string(),
        })?;
        println!("{text}");
    } else {
        print!("{}", human());
    }
    Ok(())
}

/// An event for people.
pub(crate) fn describe(k: &EventKind) -> String {
    match k {
        EventKind::NewCall {
            call,
            line_handle,
            call_id,
            privilege,
            ..
        } => format!(
            "new call {} on {} (call ID {call_id}, {privilege})",
            short(call),
            line_handle
        ),
        EventKind::CallState { call, state, .. } => format!("call {} {state}", short(call)),
        EventKind::CallInfo { call, changed } => format!("call {} info {changed}", short(call)),
        EventKind::Digit { call, digit, mode } => {
            format!("call {} digit {digit} ({mode})", short(call))
        }
        EventKind::Line { line_handle, event } => match event {
            LineEvent::Ringing { count, .. } => format!("line {line_handle} ringing ({count})"),
            LineEvent::InService => format!("line {line_handle} in service"),
            LineEvent::OutOfService { reason } => {
                format!("line {line_handle} out of service: {reason}")
            }
            LineEvent::ForwardingChanged { address } => {
                format!("line {line_handle} forwarding changed (address {address})")
            }
            LineEvent::Parked { orbit, call_id } => {
                format!("line {line_handle} parked {call_id} in orbit {orbit}")
            }
            LineEvent::Unparked { orbit, call_id } => {
                format!("line {line_handle} {call_id} left orbit {orbit}")
            }
            LineEvent::CapsChanged => format!("line {line_handle} capabilities changed"),
            LineEvent::DevicesChanged => format!("line {line_handle} devices changed"),
            LineEvent::Other => format!("line {line_handle}: an event this tool does not know"),
        },
        EventKind::LineClosed { line_handle } => format!("line {line_handle} closed"),
        EventKind::Status { row } => format!("status {} {}", row.id, row.state),
        EventKind::EventsLost { first, last } => format!("events {first}..={last} lost"),
        EventKind::Unknown => "an event of a kind this tool does not know".to_owned(),
    }
}

/// A `--since`/`--until` value: `90s`, `15m`, `1h`, `7d` back from `now`, or an RFC 3339 time.
pub(crate) fn when(text: &str, now: std::time::SystemTime) -> Result<String, Failure> {
    if tapir_api::cdr::parse_time(text).is_some() {
        return Ok(text.to_owned());
    }
    let bad = || {
        usage(format!(
            "{text:?} is neither a time back from now (90s, 15m, 1h, 7d) nor an RFC 3339 time"
        ))
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let back = std::time::Duration::from_secs(n.checked_mul(secs).ok_or_else(bad)?);
    let then = now.checked_sub(back).ok_or_else(bad)?;
    Ok(tapir_api::cdr::format_time(then))
}

/// A party as people read it: `2002 (Bob)`, or what is known of it.
pub(crate) fn party(p: &tapir_api::Party) -> String {
    match (&p.number, &p.name) {
        (Some(n), Some(name)) => format!("{n} ({name})"),
        (Some(n), None) => n.clone(),
        (None, Some(name)) => name.clone(),
        (None, None) => "-".into(),
    }
}

/// Call detail records as a table. TO is the called party; when the call was answered by someone
/// else (forwarded, transferred, picked up), `→` and who.
pub(crate) fn cdrs_table(records: &[tapir_api::cdr::Cdr]) -> String {
    let secs = |ms: u64| format!("{}s", (ms + 500) / 1000);
    table(
        &[
            "STARTED (UTC)",
            "LINE",
            "FROM",
            "TO",
            "DISPOSITION",
            "RING",
            "TALK",
            "HOLD",
            "REASON",
            "CALL ID",
        ],
        records.iter().map(|r| {
            let known = |p: &tapir_api::Party| p.number.is_some() || p.name.is_some();
            let same = |a: &tapir_api::Party, b: &tapir_api::Party| {
                a.number.is_some() && a.number == b.number
            };
            let to = if known(&r.connected)
                && !same(&r.connected, &r.called)
                && !same(&r.connected, &r.caller)
            {
                format!("{} → {}", party(&r.called), party(&r.connected))
            } else {
                party(&r.called)
            };
            vec![
                r.started.get(..19).unwrap_or(&r.started).replace('T', " "),
                r.line_name.clone(),
                party(&r.caller),
                to,
                r.disposition.clone(),
                secs(r.ringing_ms),
                secs(r.talking_ms),
                secs(r.on_hold_ms),
                r.reason.clone(),
                r.call_id.clone(),
            ]
        }),
    )
}

/// A call handle as people read it: the first 8 hex digits (any unique start is accepted back).
pub(crate) fn short(handle: &str) -> String {
    let hex = handle.strip_prefix("call:").unwrap_or(handle);
    hex.chars().take(8).collect()
}

/// Calls as a table.
pub(crate) fn calls_table(calls: &[Call]) -> String {
    table(
        &[
            "CALL",
            "CALL ID",
            "LINE",
            "STATE",
            "PRIVILEGE",
            "FROM",
            "TO",
            "CAN",
        ],
        calls.iter().map(|c| {
            vec![
                short(&c.call),
                c.call_id.clone(),
                c.line.to_string(),
                c.state.clone(),
                c.privilege.clone(),
                party(&c.caller),
                party(&c.called),
                c.features.join(","),
            ]
        }),
    )
}

/// Columns padded to their widest cell.
pub(crate) fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

/// A line open's status for people.
pub(crate) fn line_status_text(st: &tapir_api::LineStatus) -> String {
    let mut out = format!(
        "line {} ({}): {}, {} open{}\n",
        st.line,
        st.line_handle,
        if st.in_service {
            "in service".to_owned()
        } else {
            format!(
                "out of service ({})",
                st.reason.as_deref().unwrap_or("no reason given")
            )
        },
        st.opens,
        if st.opens == 1 { "" } else { "s" }
    );
    out.push_str(&table(
        &[
            "ADDRESS",
            "NUMBER",
            "ACTIVE",
            "ON HOLD",
            "PENDING TRANSFER",
            "PENDING CONFERENCE",
        ],
        st.addresses.iter().map(|a| {
            vec![
                a.address.to_string(),
                a.number.clone(),
                a.active.to_string(),
                a.on_hold.to_string(),
                a.pending_transfer.to_string(),
                a.pending_conference.to_string(),
            ]
        }),
    ));
    for d in &st.devices {
        out.push_str(&format!(
            "device {}{}{}\n",
            d.contact,
            d.source
                .as_deref()
                .map(|s| format!(" from {s}"))
                .unwrap_or_default(),
            d.expires_in
                .map(|e| format!(", registered for {e} s more"))
                .unwrap_or_else(|| ", fixed".to_owned()),
        ));
    }
    out
}
