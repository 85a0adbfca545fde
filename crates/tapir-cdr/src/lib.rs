//! Call detail records for tapir: where the engine's records go, how they are kept, found and exported.
//!
//! - [`CdrStore`] — the store trait. [`SqliteStore`] (embedded, the default) and [`MemoryStore`] (for
//!   tests and embedded use without a disk) implement it; another backend (PostgreSQL, say) is one more
//!   implementation, and the engine does not change: it only knows
//!   [`CdrSink`](tapir_core::cdr::CdrSink).
//! - [`Recorder`] — the sink the engine is given: it queues records off the call's hot path and writes
//!   them in batches, sweeps old records away ([`Retention`]), and can be flushed.
//! - [`CdrQuery`] — time range, party number, call ID (with the calls linked to it), disposition,
//!   paging; [`CdrQuery::from_params`] reads the network API's query string and refuses bad input with
//!   a [`QueryError`].
//! - [`to_wire`], [`write_csv`], [`write_jsonl`] — export in the network API's shape.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use tapir_cdr::{CdrQuery, CdrStore, Recorder, RecorderOptions, SqliteStore};
//!
//! let store = Arc::new(SqliteStore::open(None)?); // None: in memory; Some(path): a file
//! let recorder = Recorder::start(store.clone(), RecorderOptions::default());
//! // engine = tapir::Engine::builder().cdr_sink(Arc::new(recorder.clone())) …
//! recorder.flush().await?;
//! let page = store.query(&CdrQuery::default()).await?;
//! assert!(page.records.is_empty());
//! # Ok(()) }
//! ```

mod memory;
mod recorder;
mod sqlite;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tapir_api::Party;
use tapir_api::cdr::{Cdr, CdrQueryParams, format_time, parse_time};
use tapir_core::cdr::{CallDetailRecord, CdrParty, Disposition};
use tapir_core::{CallId, LineId};

pub use memory::MemoryStore;
pub use recorder::{Recorder, RecorderOptions, RecorderStats};
pub use sqlite::SqliteStore;

/// A record as a store keeps it: with the store's number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCdr {
    /// Increasing in the order records were written; never reused.
    pub id: u64,
    /// The record.
    pub record: CallDetailRecord,
}

/// A page of records, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The records.
    pub records: Vec<StoredCdr>,
    /// The `before` of the next (older) page; `None` on the last page.
    pub next: Option<u64>,
}

/// The largest page.
pub const MAX_LIMIT: u32 = 1000;
/// The page size when none is asked for.
pub const DEFAULT_LIMIT: u32 = 100;

/// Which records to find. Every set field must match; the default finds the newest
/// [`DEFAULT_LIMIT`] records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdrQuery {
    /// Calls that started at or after this time.
    pub since: Option<SystemTime>,
    /// Calls that started before this time.
    pub until: Option<SystemTime>,
    /// Part of the caller's, called or connected party's number.
    pub number: Option<String>,
    /// Records of this call, and records linked to it (its related call IDs).
    pub call_id: Option<CallId>,
    /// One disposition.
    pub disposition: Option<Disposition>,
    /// Only records of these lines (the network API sets it to the lines an application may see).
    pub lines: Option<Vec<LineId>>,
    /// Records with a smaller ID than this (paging).
    pub before: Option<u64>,
    /// At most this many records (1..=[`MAX_LIMIT`]).
    pub limit: u32,
}

impl Default for CdrQuery {
    fn default() -> Self {
        Self {
            since: None,
            until: None,
            number: None,
            call_id: None,
            disposition: None,
            lines: None,
            before: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// The dispositions' names, for a refusal that lists them.
fn disposition_names() -> String {
    Disposition::ALL
        .iter()
        .map(|d| d.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A query that cannot be run, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// `since` or `until` is not an RFC 3339 time.
    #[error("{field} must be an RFC 3339 time such as 2026-11-21T10:00:00Z, not {value:?}")]
    BadTime {
        /// Which parameter.
        field: &'static str,
        /// What was given.
        value: String,
    },
    /// `until` is not after `since`.
    #[error("until must be later than since")]
    EmptyRange,
    /// The call ID is neither `call-N` nor `N`.
    #[error("call_id must look like call-7 or 7, not {0:?}")]
    BadCallId(String),
    /// Not one of the dispositions.
    #[error("disposition must be one of {names}, not {0:?}", names = disposition_names())]
    BadDisposition(String),
    /// The number filter is empty or has characters no number has.
    #[error("number must be 1 to 64 of the characters 0-9 A-D * # + -, not {0:?}")]
    BadNumber(String),
    /// The limit is outside 1..=1000.
    #[error("limit must be 1 to {MAX_LIMIT}, not {0}")]
    BadLimit(u32),
    /// `format` is not `json`, `csv` or `jsonl`.
    #[error("format must be json, csv or jsonl, not {0:?}")]
    BadFormat(String),
}

/// An export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// A JSON page (records and the paging cursor).
    #[default]
    Json,
    /// CSV with a header line.
    Csv,
    /// JSON Lines, one record per line.
    Jsonl,
}

impl CdrQuery {
    /// Reads the network API's query string. Checks everything before anything runs.
    pub fn from_params(p: &CdrQueryParams) -> Result<(Self, Format), QueryError> {
        let time = |field: &'static str, v: &Option<String>| -> Result<_, QueryError> {
            v.as_deref()
                .map(|s| {
                    parse_time(s).ok_or_else(|| QueryError::BadTime {
                        field,
                        value: s.to_owned(),
                    })
                })
                .transpose()
        };
        let since = time("since", &p.since)?;
        let until = time("until", &p.until)?;
        if let (Some(s), Some(u)) = (since, until)
            && u <= s
        {
            return Err(QueryError::EmptyRange);
        }
        let number = p
            .number
            .as_deref()
            .map(|n| {
                let ok = !n.is_empty()
                    && n.len() <= 64
                    && n.chars().all(|c| {
                        c.is_ascii_digit() || matches!(c, 'A'..='D' | '*' | '#' | '+' | '-')
                    });
                if ok {
                    Ok(n.to_owned())
                } else {
                    Err(QueryError::BadNumber(n.to_owned()))
                }
            })
            .transpose()?;
        let call_id = p
            .call_id
            .as_deref()
            .map(|c| {
                c.strip_prefix("call-")
                    .unwrap_or(c)
                    .parse::<u64>()
                    .map(CallId)
                    .map_err(|_| QueryError::BadCallId(c.to_owned()))
            })
            .transpose()?;
        let disposition = p
            .disposition
            .as_deref()
            .map(|d| Disposition::from_name(d).ok_or_else(|| QueryError::BadDisposition(d.into())))
            .transpose()?;
        let limit = match p.limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(n) => return Err(QueryError::BadLimit(n)),
        };
        let format = match p.format.as_deref() {
            None | Some("json") => Format::Json,
            Some("csv") => Format::Csv,
            Some("jsonl") => Format::Jsonl,
            Some(other) => return Err(QueryError::BadFormat(other.to_owned())),
        };
        Ok((
            Self {
                since,
                until,
                number,
                call_id,
                disposition,
                lines: None,
                before: p.before,
                limit,
            },
            format,
        ))
    }

    /// Whether `r` matches every filter (paging aside). Every store answers as this does.
    pub fn matches(&self, r: &StoredCdr) -> bool {
        let rec = &r.record;
        self.since.is_none_or(|s| rec.started >= s)
            && self.until.is_none_or(|u| rec.started < u)
            && self.number.as_deref().is_none_or(|n| {
                [&rec.caller, &rec.called, &rec.connected]
                    .iter()
                    .any(|p| p.number.as_deref().is_some_and(|x| x.contains(n)))
            })
            && self
                .call_id
                .is_none_or(|c| rec.call_id == c || rec.related_call_ids.contains(&c))
            && self.disposition.is_none_or(|d| rec.disposition == d)
            && self.lines.as_ref().is_none_or(|l| l.contains(&rec.line))
            && self.before.is_none_or(|b| r.id < b)
    }
}

/// How long records are kept. Enforced in the background by the [`Recorder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Retention {
    /// Records of calls that started longer ago than this are deleted.
    pub max_age: Option<Duration>,
    /// Beyond this many records, the oldest are deleted.
    pub max_records: Option<u64>,
}

/// A store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no (the text is SQLite's, or the backend's).
    #[error("call record store: {0}")]
    Database(String),
    /// The database was written by a newer tapir (its schema version is higher than this one knows).
    #[error(
        "call record store has schema version {found}; this tapir knows up to {known} (written by a newer tapir?)"
    )]
    NewerSchema {
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// The recorder has stopped.
    #[error("call record recorder has stopped")]
    Closed,
}

/// Where call detail records are kept. Implement it for another database; give it to a [`Recorder`].
#[async_trait::async_trait]
pub trait CdrStore: Send + Sync + 'static {
    /// Writes records, all or none, numbering them in order.
    async fn insert(&self, records: Vec<CallDetailRecord>) -> Result<(), StoreError>;
    /// Finds records, newest first, as [`CdrQuery::matches`] says.
    async fn query(&self, query: &CdrQuery) -> Result<Page, StoreError>;
    /// Deletes what `retention` says is too old or too many, as of `now`; returns how many went.
    async fn purge(&self, retention: Retention, now: SystemTime) -> Result<u64, StoreError>;
    /// How many records are kept.
    async fn count(&self) -> Result<u64, StoreError>;
}

/// Milliseconds since the Unix epoch (negative before it).
pub(crate) fn millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// The inverse of [`millis`].
pub(crate) fn from_millis(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

fn party(p: &CdrParty) -> Party {
    Party {
        number: p.number.clone(),
        name: p.name.clone(),
    }
}

/// A stored record in the network API's shape (what `GET /v1/cdrs` returns and the exports write).
pub fn to_wire(r: &StoredCdr) -> Cdr {
    let rec = &r.record;
    Cdr {
        id: r.id,
        call_id: rec.call_id.to_string(),
        related_call_ids: rec.related_call_ids.iter().map(|c| c.to_string()).collect(),
        line: rec.line.0,
        line_name: rec.line_name.clone(),
        address: rec.address.0,
        origin: rec.origin.name().to_owned(),
        reason: rec.reason.name().to_owned(),
        caller: party(&rec.caller),
        called: party(&rec.called),
        connected: party(&rec.connected),
        redirecting: party(&rec.redirecting),
        started: format_time(rec.started),
        answered: rec.answered.map(format_time),
        ended: format_time(rec.ended),
        ringing_ms: rec.ringing.as_millis() as u64,
        talking_ms: rec.talking.as_millis() as u64,
        on_hold_ms: rec.on_hold.as_millis() as u64,
        disposition: rec.disposition.name().to_owned(),
        disconnect: rec.disconnect.map(|d| d.name().to_owned()),
        owners: rec.owners.clone(),
    }
}

/// Writes records as CSV, header first.
pub fn write_csv(records: &[StoredCdr], out: &mut impl std::io::Write) -> std::io::Result<()> {
    out.write_all(tapir_api::cdr::csv_header().as_bytes())?;
    for r in records {
        out.write_all(tapir_api::cdr::csv_row(&to_wire(r)).as_bytes())?;
    }
    Ok(())
}

/// Writes records as JSON Lines.
pub fn write_jsonl(records: &[StoredCdr], out: &mut impl std::io::Write) -> std::io::Result<()> {
    for r in records {
        out.write_all(tapir_api::cdr::jsonl_line(&to_wire(r)).as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(f: impl FnOnce(&mut CdrQueryParams)) -> CdrQueryParams {
        let mut p = CdrQueryParams::default();
        f(&mut p);
        p
    }

    #[test]
    fn bad_query_parameters_are_typed_errors() {
        let cases: Vec<(CdrQueryParams, QueryError)> = vec![
            (
                params(|p| p.since = Some("an hour ago".into())),
                QueryError::BadTime {
                    field: "since",
                    value: "an hour ago".into(),
                },
            ),
            (
                params(|p| p.until = Some("2026-02-30T00:00:00Z".into())),
                QueryError::BadTime {
                    field: "until",
                    value: "2026-02-30T00:00:00Z".into(),
                },
            ),
            (
                params(|p| {
                    p.since = Some("2026-11-21T10:00:00Z".into());
                    p.until = Some("2026-11-21T10:00:00Z".into());
                }),
                QueryError::EmptyRange,
            ),
            (
                params(|p| p.call_id = Some("leg-4".into())),
                QueryError::BadCallId("leg-4".into()),
            ),
            (
                params(|p| p.disposition = Some("Answered".into())),
                QueryError::BadDisposition("Answered".into()),
            ),
            (
                params(|p| p.number = Some("555'; DROP TABLE cdrs".into())),
                QueryError::BadNumber("555'; DROP TABLE cdrs".into()),
            ),
            (
                params(|p| p.number = Some(String::new())),
                QueryError::BadNumber(String::new()),
            ),
            (params(|p| p.limit = Some(0)), QueryError::BadLimit(0)),
            (params(|p| p.limit = Some(1001)), QueryError::BadLimit(1001)),
            (
                params(|p| p.format = Some("xml".into())),
                QueryError::BadFormat("xml".into()),
            ),
        ];
        for (p, want) in cases {
            assert_eq!(CdrQuery::from_params(&p), Err(want.clone()), "{p:?}");
            assert!(!want.to_string().is_empty());
        }
        let (q, f) = CdrQuery::from_params(&params(|p| {
            p.call_id = Some("call-7".into());
            p.number = Some("+1555".into());
            p.disposition = Some("no_answer".into());
            p.limit = Some(1000);
            p.format = Some("csv".into());
        }))
        .expect("a good query");
        assert_eq!(q.call_id, Some(CallId(7)));
        assert_eq!(q.disposition, Some(Disposition::NoAnswer));
        assert_eq!((q.limit, f), (1000, Format::Csv));
        assert_eq!(
            CdrQuery::from_params(&params(|p| p.call_id = Some("7".into())))
                .expect("plain number")
                .0
                .call_id,
            Some(CallId(7))
        );
    }
}
