//! Call detail records on the wire (`GET /v1/cdrs`), and their two export formats: CSV and JSON Lines.
//!
//! The service, the Rust store (`tapir-cdr`) and the CLI all export through [`csv_header`],
//! [`csv_row`] and [`jsonl_line`], so a file looks the same whichever of them wrote it.
//!
//! ```
//! use tapir_api::cdr::{csv_header, parse_time, format_time};
//! assert!(csv_header().starts_with("id,call_id,"));
//! let t = parse_time("2026-11-21T10:00:00Z").unwrap();
//! assert_eq!(format_time(t), "2026-11-21T10:00:00.000Z");
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::Party;

/// One call leg's detail record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cdr {
    /// The store's number for the record: increasing in the order records were written. Paging cursor.
    pub id: u64,
    /// The switch's call ID (`call-7`), shared by the legs of one call.
    pub call_id: String,
    /// Linked calls: consultation ↔ original, conference, the other call of a completed transfer.
    pub related_call_ids: Vec<String>,
    /// The engine's line number.
    pub line: u32,
    /// The line's display name.
    pub line_name: String,
    /// The address on the line.
    pub address: u32,
    /// Where the call came from: `outbound`, `internal`, `external`, `inbound`, `conference`, …
    pub origin: String,
    /// Why it arrived here: `direct`, `transfer`, `pickup`, `unpark`, `forward_busy`, `reminder`, …
    pub reason: String,
    /// Who originated it.
    pub caller: Party,
    /// Who was dialled.
    pub called: Party,
    /// Who was reached.
    pub connected: Party,
    /// Who redirected or forwarded it here.
    pub redirecting: Party,
    /// When it appeared on the line (RFC 3339, UTC, milliseconds).
    pub started: String,
    /// When it was first connected.
    pub answered: Option<String>,
    /// When it was first disconnected or went idle.
    pub ended: String,
    /// Milliseconds from start to answer (or to the end, if unanswered).
    pub ringing_ms: u64,
    /// Milliseconds connected after the answer, hold excluded.
    pub talking_ms: u64,
    /// Milliseconds on hold.
    pub on_hold_ms: u64,
    /// How it ended: `answered`, `busy`, `no_answer`, `rejected`, `failed`, `picked_up_elsewhere`,
    /// `forwarded`, `redirected`, `transferred`, `parked`.
    pub disposition: String,
    /// The switch's disconnect reason, if the call passed through the disconnected state.
    pub disconnect: Option<String>,
    /// The applications that owned it.
    pub owners: Vec<String>,
}

/// A page of records, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CdrPage {
    /// The records.
    pub records: Vec<Cdr>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next: Option<u64>,
}

/// The query string of `GET /v1/cdrs`. Every field is optional; all given ones must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CdrQueryParams {
    /// Records of calls that started at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Records of calls that started before this time (RFC 3339).
    pub until: Option<String>,
    /// A number (or part of one) of the caller, called or connected party.
    pub number: Option<String>,
    /// A call ID (`call-7` or `7`): its records and those linked to it.
    pub call_id: Option<String>,
    /// One disposition.
    pub disposition: Option<String>,
    /// Records older than this record ID (the `next` of the previous page).
    pub before: Option<u64>,
    /// At most this many records (1–1000, default 100).
    pub limit: Option<u32>,
    /// `json` (default, a page), `csv` or `jsonl` (the records only, no paging cursor).
    pub format: Option<String>,
}

/// How one CSV column is written from a record.
type CsvField = fn(&Cdr) -> String;

/// The CSV export, one column a row of this table: its name and how a record's field is written.
/// The header and every line read it, so they cannot fall out of step. Lists (related calls,
/// owners) are separated by `;`; an absent value is empty.
const CSV: [(&str, CsvField); 25] = [
    ("id", |r| r.id.to_string()),
    ("call_id", |r| r.call_id.clone()),
    ("related_call_ids", |r| r.related_call_ids.join(";")),
    ("line", |r| r.line.to_string()),
    ("line_name", |r| r.line_name.clone()),
    ("address", |r| r.address.to_string()),
    ("origin", |r| r.origin.clone()),
    ("reason", |r| r.reason.clone()),
    ("caller_number", |r| opt(&r.caller.number)),
    ("caller_name", |r| opt(&r.caller.name)),
    ("called_number", |r| opt(&r.called.number)),
    ("called_name", |r| opt(&r.called.name)),
    ("connected_number", |r| opt(&r.connected.number)),
    ("connected_name", |r| opt(&r.connected.name)),
    ("redirecting_number", |r| opt(&r.redirecting.number)),
    ("redirecting_name", |r| opt(&r.redirecting.name)),
    ("started", |r| r.started.clone()),
    ("answered", |r| opt(&r.answered)),
    ("ended", |r| r.ended.clone()),
    ("ringing_ms", |r| r.ringing_ms.to_string()),
    ("talking_ms", |r| r.talking_ms.to_string()),
    ("on_hold_ms", |r| r.on_hold_ms.to_string()),
    ("disposition", |r| r.disposition.clone()),
    ("disconnect", |r| opt(&r.disconnect)),
    ("owners", |r| r.owners.join(";")),
];

fn opt(o: &Option<String>) -> String {
    o.clone().unwrap_or_default()
}

/// The CSV columns, in order.
pub fn csv_columns() -> impl Iterator<Item = &'static str> {
    CSV.iter().map(|(name, _)| *name)
}

/// The CSV header line (with its line ending, `\r\n` as RFC 4180 has it).
pub fn csv_header() -> String {
    let mut s = csv_columns().collect::<Vec<_>>().join(",");
    s.push_str("\r\n");
    s
}

/// One record as a CSV line (with its `\r\n`), quoted where a field needs it.
pub fn csv_row(r: &Cdr) -> String {
    let fields = CSV.iter().map(|(_, field)| field(r));
    let mut line = String::new();
    for (i, f) in fields.enumerate() {
        if i > 0 {
            line.push(',');
        }
        if f.contains([',', '"', '\n', '\r']) {
            line.push('"');
            line.push_str(&f.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(&f);
        }
    }
    line.push_str("\r\n");
    line
}

/// One record as a JSON Lines line (with its `\n`).
pub fn jsonl_line(r: &Cdr) -> String {
    // A struct of strings and numbers always serializes.
    let mut s = serde_json::to_string(r).unwrap_or_default();
    s.push('\n');
    s
}

/// A time as RFC 3339 in UTC with milliseconds: `2026-11-21T10:00:00.250Z`.
pub fn format_time(t: SystemTime) -> String {
    // Outside years -9999..=9999 (no call record is) the nearest representable time is written.
    let ts = jiff::Timestamp::try_from(t).unwrap_or(if t > UNIX_EPOCH {
        jiff::Timestamp::MAX
    } else {
        jiff::Timestamp::MIN
    });
    let ms = jiff::Timestamp::from_millisecond(ts.as_millisecond()).unwrap_or(ts);
    format!("{ms:.3}")
}

/// Parses an RFC 3339 time with its offset (`2026-11-21T10:00:00Z`, `2026-11-21 12:00:00.5+02:00`;
/// fractions allowed). Returns `None` for anything else, a time without an offset included.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    s.parse::<jiff::Timestamp>().ok().map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn times_round_trip_and_bad_times_are_refused() {
        for s in [
            "1970-01-01T00:00:00.000Z",
            "2000-02-29T23:59:59.999Z",
            "2026-11-21T10:00:00.250Z",
            "1969-12-31T23:59:59.000Z",
            "2100-03-01T00:00:00.000Z",
        ] {
            let t = parse_time(s).unwrap_or_else(|| panic!("{s} parses"));
            assert_eq!(format_time(t), s);
        }
        for same in [
            "2026-11-21T12:00:00+02:00",
            "2026-11-21T12:00:00+0200",
            "2026-11-21 10:00:00Z",
            "2026-11-21t10:00:00z",
        ] {
            assert_eq!(
                parse_time(same),
                parse_time("2026-11-21T10:00:00Z"),
                "{same}"
            );
        }
        assert_eq!(
            parse_time("1970-01-01T00:00:01Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1))
        );
        for bad in [
            "",
            "2026-11-21",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-21T24:00:00Z",
            "2026-11-21T10:00:00",
            "2026-11-21T10:00:00.Z",
            "2026-1a-21T10:00:00Z",
            "yesterday at noon please",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let r = Cdr {
            id: 1,
            call_id: "call-1".into(),
            related_call_ids: vec!["call-2".into(), "call-3".into()],
            line: 0,
            line_name: "Reception, front \"desk\"".into(),
            address: 0,
            origin: "internal".into(),
            reason: "direct".into(),
            caller: Party {
                number: Some("100".into()),
                name: None,
            },
            called: Party::default(),
            connected: Party::default(),
            redirecting: Party::default(),
            started: "2026-11-21T10:00:00.000Z".into(),
            answered: None,
            ended: "2026-11-21T10:00:05.000Z".into(),
            ringing_ms: 5000,
            talking_ms: 0,
            on_hold_ms: 0,
            disposition: "no_answer".into(),
            disconnect: None,
            owners: vec!["desk".into()],
        };
        let row = csv_row(&r);
        assert!(row.starts_with("1,call-1,call-2;call-3,0,\"Reception, front \"\"desk\"\"\",0,"));
        assert!(row.ends_with(",no_answer,,desk\r\n"));
        assert_eq!(row.matches(',').count() - 1, csv_columns().count() - 1);
        let back: Cdr = serde_json::from_str(jsonl_line(&r).trim_end()).expect("reads back");
        assert_eq!(back, r);
    }
}
