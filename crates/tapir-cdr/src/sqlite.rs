//! The embedded store: one SQLite file (WAL, `synchronous = NORMAL`), schema versioned by
//! `PRAGMA user_version`.
//!
//! Durability: a batch is one transaction. In WAL mode with `synchronous = NORMAL` a committed
//! transaction survives the process being killed (the WAL is in the operating system's hands); a power
//! loss may take back the last transactions before a checkpoint. `docs/cdr.md` has the details.

use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rusqlite::types::Value;
use rusqlite::{Connection, Row, params, params_from_iter};
use tapir_core::cdr::{CallDetailRecord, CdrParty, Disposition};
use tapir_core::info::{CallOrigin, CallReason};
use tapir_core::state::DisconnectReason;
use tapir_core::{AddressId, CallId, LineId};

use crate::{CdrQuery, CdrStore, Page, Retention, StoreError, StoredCdr, from_millis, millis};

/// The schema, one migration per version; `PRAGMA user_version` says how many have run.
const MIGRATIONS: &[&str] = &["
CREATE TABLE cdrs (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id            INTEGER NOT NULL,
    line               INTEGER NOT NULL,
    line_name          TEXT    NOT NULL,
    address            INTEGER NOT NULL,
    origin             TEXT    NOT NULL,
    reason             TEXT    NOT NULL,
    caller_number      TEXT,
    caller_name        TEXT,
    called_number      TEXT,
    called_name        TEXT,
    connected_number   TEXT,
    connected_name     TEXT,
    redirecting_number TEXT,
    redirecting_name   TEXT,
    started_ms         INTEGER NOT NULL,
    answered_ms        INTEGER,
    ended_ms           INTEGER NOT NULL,
    ringing_ms         INTEGER NOT NULL,
    talking_ms         INTEGER NOT NULL,
    on_hold_ms         INTEGER NOT NULL,
    disposition        TEXT    NOT NULL,
    disconnect         TEXT,
    owners             TEXT    NOT NULL
);
CREATE INDEX cdrs_started ON cdrs (started_ms);
CREATE INDEX cdrs_call ON cdrs (call_id);
CREATE TABLE cdr_links (
    cdr     INTEGER NOT NULL REFERENCES cdrs (id) ON DELETE CASCADE,
    call_id INTEGER NOT NULL,
    PRIMARY KEY (cdr, call_id)
) WITHOUT ROWID;
CREATE INDEX cdr_links_call ON cdr_links (call_id);
"];

/// Call detail records in SQLite.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

impl SqliteStore {
    /// Opens (creating, migrating) the database at `path`, or an in-memory one for `None`. Refuses a
    /// database written by a newer tapir. Blocks: call it before serving, or from a blocking task.
    pub fn open(path: Option<&Path>) -> Result<Self, StoreError> {
        let mut conn = match path {
            Some(p) => Connection::open(p),
            None => Connection::open_in_memory(),
        }
        .map_err(db)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db)?;
        if path.is_some() {
            conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
                .map_err(db)?;
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(db)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::NewerSchema {
                found: version,
                known,
            });
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let tx = conn.transaction().map_err(db)?;
            tx.execute_batch(migration).map_err(db)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(db)?;
            tx.commit().map_err(db)?;
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut c).map_err(db)
        })
        .await
        .map_err(|e| StoreError::Database(format!("store task failed: {e}")))?
    }

    /// Whether SQLite's own check finds the database intact (`PRAGMA integrity_check` says `ok`).
    pub async fn integrity_ok(&self) -> Result<bool, StoreError> {
        self.with(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0)))
            .await
            .map(|s| s == "ok")
    }
}

fn text(o: &Option<String>) -> Value {
    o.clone().map_or(Value::Null, Value::Text)
}

/// How one column's value is taken from a record.
type FieldValue = fn(&CallDetailRecord) -> Value;

/// The columns of `cdrs` a record fills, one row of this table each: its name and its value for a
/// record. The insert and the select are written from it; a test holds the schema to it.
const FIELDS: [(&str, FieldValue); 23] = [
    ("call_id", |r| Value::Integer(r.call_id.0 as i64)),
    ("line", |r| Value::Integer(i64::from(r.line.0))),
    ("line_name", |r| Value::Text(r.line_name.clone())),
    ("address", |r| Value::Integer(i64::from(r.address.0))),
    ("origin", |r| Value::Text(r.origin.name().into())),
    ("reason", |r| Value::Text(r.reason.name().into())),
    ("caller_number", |r| text(&r.caller.number)),
    ("caller_name", |r| text(&r.caller.name)),
    ("called_number", |r| text(&r.called.number)),
    ("called_name", |r| text(&r.called.name)),
    ("connected_number", |r| text(&r.connected.number)),
    ("connected_name", |r| text(&r.connected.name)),
    ("redirecting_number", |r| text(&r.redirecting.number)),
    ("redirecting_name", |r| text(&r.redirecting.name)),
    ("started_ms", |r| Value::Integer(millis(r.started))),
    ("answered_ms", |r| {
        r.answered
            .map_or(Value::Null, |a| Value::Integer(millis(a)))
    }),
    ("ended_ms", |r| Value::Integer(millis(r.ended))),
    ("ringing_ms", |r| {
        Value::Integer(r.ringing.as_millis() as i64)
    }),
    ("talking_ms", |r| {
        Value::Integer(r.talking.as_millis() as i64)
    }),
    ("on_hold_ms", |r| {
        Value::Integer(r.on_hold.as_millis() as i64)
    }),
    ("disposition", |r| Value::Text(r.disposition.name().into())),
    ("disconnect", |r| {
        r.disconnect
            .map_or(Value::Null, |d| Value::Text(d.name().into()))
    }),
    ("owners", |r| {
        Value::Text(serde_json::to_string(&r.owners).unwrap_or_else(|_| "[]".into()))
    }),
];

/// The columns a query selects: the record's number, then [`FIELDS`] in order.
static COLUMNS: LazyLock<String> = LazyLock::new(|| {
    std::iter::once("id")
        .chain(FIELDS.iter().map(|(name, _)| *name))
        .collect::<Vec<_>>()
        .join(", ")
});

/// The insert of one record's [`FIELDS`].
static INSERT: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<&str> = FIELDS.iter().map(|(name, _)| *name).collect();
    let marks: Vec<String> = (1..=FIELDS.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO cdrs ({}) VALUES ({})",
        names.join(", "),
        marks.join(", ")
    )
});

/// Where field `name` is in a row selected with [`COLUMNS`] (past the end for no field, which
/// reading then refuses as a bad column).
fn at(name: &str) -> usize {
    1 + FIELDS
        .iter()
        .position(|(n, _)| *n == name)
        .unwrap_or(FIELDS.len())
}

fn insert_all(conn: &mut Connection, records: &[CallDetailRecord]) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    {
        let mut cdr = tx.prepare_cached(&INSERT)?;
        let mut link = tx.prepare_cached("INSERT INTO cdr_links (cdr, call_id) VALUES (?1, ?2)")?;
        for r in records {
            cdr.execute(params_from_iter(FIELDS.iter().map(|(_, value)| value(r))))?;
            let id = tx.last_insert_rowid();
            for related in &r.related_call_ids {
                link.execute(params![id, related.0 as i64])?;
            }
        }
    }
    tx.commit()
}

/// Reads a row selected with [`COLUMNS`]; the related call IDs come separately.
fn read_row(row: &Row<'_>) -> Result<StoredCdr, rusqlite::Error> {
    let bad = |name: &str, what: &str, v: String| {
        rusqlite::Error::FromSqlConversionFailure(
            at(name),
            rusqlite::types::Type::Text,
            format!("unknown {what} {v:?}").into(),
        )
    };
    let party = |number: &str, name: &str| -> Result<CdrParty, rusqlite::Error> {
        Ok(CdrParty {
            number: row.get(at(number))?,
            name: row.get(at(name))?,
        })
    };
    let ms = |name: &str| -> Result<Duration, rusqlite::Error> {
        Ok(Duration::from_millis(
            row.get::<_, i64>(at(name))?.max(0) as u64
        ))
    };
    let origin: String = row.get(at("origin"))?;
    let reason: String = row.get(at("reason"))?;
    let disposition: String = row.get(at("disposition"))?;
    let disconnect: Option<String> = row.get(at("disconnect"))?;
    let owners: String = row.get(at("owners"))?;
    Ok(StoredCdr {
        id: row.get::<_, i64>(0)? as u64,
        record: CallDetailRecord {
            call_id: CallId(row.get::<_, i64>(at("call_id"))? as u64),
            related_call_ids: Vec::new(),
            line: LineId(row.get(at("line"))?),
            line_name: row.get(at("line_name"))?,
            address: AddressId(row.get(at("address"))?),
            origin: CallOrigin::from_name(&origin)
                .ok_or_else(|| bad("origin", "origin", origin.clone()))?,
            reason: CallReason::from_name(&reason)
                .ok_or_else(|| bad("reason", "reason", reason.clone()))?,
            caller: party("caller_number", "caller_name")?,
            called: party("called_number", "called_name")?,
            connected: party("connected_number", "connected_name")?,
            redirecting: party("redirecting_number", "redirecting_name")?,
            started: from_millis(row.get(at("started_ms"))?),
            answered: row
                .get::<_, Option<i64>>(at("answered_ms"))?
                .map(from_millis),
            ended: from_millis(row.get(at("ended_ms"))?),
            ringing: ms("ringing_ms")?,
            talking: ms("talking_ms")?,
            on_hold: ms("on_hold_ms")?,
            disposition: Disposition::from_name(&disposition)
                .ok_or_else(|| bad("disposition", "disposition", disposition.clone()))?,
            disconnect: disconnect
                .map(|d| {
                    DisconnectReason::from_name(&d)
                        .ok_or_else(|| bad("disconnect", "disconnect reason", d))
                })
                .transpose()?,
            owners: serde_json::from_str(&owners)
                .map_err(|e| bad("owners", "owners", e.to_string()))?,
        },
    })
}

fn run_query(conn: &mut Connection, q: &CdrQuery) -> Result<Page, rusqlite::Error> {
    let mut clauses: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    // Each clause binds one value, used wherever the clause says `?`.
    fn bind(clauses: &mut Vec<String>, values: &mut Vec<Value>, clause: &str, v: Value) {
        values.push(v);
        clauses.push(clause.replace('?', &format!("?{}", values.len())));
    }
    if let Some(s) = q.since {
        bind(
            &mut clauses,
            &mut values,
            "started_ms >= ?",
            Value::Integer(millis(s)),
        );
    }
    if let Some(u) = q.until {
        bind(
            &mut clauses,
            &mut values,
            "started_ms < ?",
            Value::Integer(millis(u)),
        );
    }
    if let Some(n) = &q.number {
        bind(
            &mut clauses,
            &mut values,
            "(instr(caller_number, ?) > 0 OR instr(called_number, ?) > 0 \
              OR instr(connected_number, ?) > 0)",
            Value::Text(n.clone()),
        );
    }
    if let Some(c) = q.call_id {
        bind(
            &mut clauses,
            &mut values,
            "(call_id = ? OR id IN (SELECT cdr FROM cdr_links WHERE call_id = ?))",
            Value::Integer(c.0 as i64),
        );
    }
    if let Some(d) = q.disposition {
        bind(
            &mut clauses,
            &mut values,
            "disposition = ?",
            Value::Text(d.name().into()),
        );
    }
    if let Some(lines) = &q.lines {
        let mut marks = Vec::new();
        for l in lines {
            values.push(Value::Integer(i64::from(l.0)));
            marks.push(format!("?{}", values.len()));
        }
        clauses.push(format!("line IN ({})", marks.join(", ")));
    }
    if let Some(b) = q.before {
        bind(
            &mut clauses,
            &mut values,
            "id < ?",
            Value::Integer(i64::try_from(b).unwrap_or(i64::MAX)),
        );
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    values.push(Value::Integer(i64::from(q.limit) + 1));
    let sql = format!(
        "SELECT {} FROM cdrs {filter} ORDER BY id DESC LIMIT ?{}",
        *COLUMNS,
        values.len()
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut records = stmt
        .query_map(params_from_iter(values), read_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let next = if records.len() > q.limit as usize {
        records.truncate(q.limit as usize);
        records.last().map(|r| r.id)
    } else {
        None
    };
    let mut links =
        conn.prepare_cached("SELECT call_id FROM cdr_links WHERE cdr = ?1 ORDER BY call_id")?;
    for r in &mut records {
        r.record.related_call_ids = links
            .query_map(params![r.id as i64], |row| {
                Ok(CallId(row.get::<_, i64>(0)? as u64))
            })?
            .collect::<Result<_, _>>()?;
    }
    Ok(Page { records, next })
}

fn purge(
    conn: &mut Connection,
    retention: Retention,
    now: SystemTime,
) -> Result<u64, rusqlite::Error> {
    let tx = conn.transaction()?;
    let mut gone = 0;
    if let Some(age) = retention.max_age
        && let Some(cutoff) = now.checked_sub(age)
    {
        gone += tx.execute(
            "DELETE FROM cdrs WHERE started_ms < ?1",
            params![millis(cutoff)],
        )?;
    }
    if let Some(max) = retention.max_records {
        // The newest `max` stay: everything up to the (max+1)-th newest goes (nothing if there are fewer).
        gone += tx.execute(
            "DELETE FROM cdrs WHERE id <= (SELECT id FROM cdrs ORDER BY id DESC LIMIT 1 OFFSET ?1)",
            params![i64::try_from(max).unwrap_or(i64::MAX)],
        )?;
    }
    tx.commit()?;
    Ok(gone as u64)
}

#[async_trait::async_trait]
impl CdrStore for SqliteStore {
    async fn insert(&self, records: Vec<CallDetailRecord>) -> Result<(), StoreError> {
        self.with(move |c| insert_all(c, &records)).await
    }

    async fn query(&self, query: &CdrQuery) -> Result<Page, StoreError> {
        let q = query.clone();
        self.with(move |c| run_query(c, &q)).await
    }

    async fn purge(&self, retention: Retention, now: SystemTime) -> Result<u64, StoreError> {
        self.with(move |c| purge(c, retention, now)).await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.with(|c| c.query_row("SELECT count(*) FROM cdrs", [], |r| r.get::<_, i64>(0)))
            .await
            .map(|n| n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_database_from_a_newer_tapir_is_refused() {
        let dir = std::env::temp_dir().join(format!("tapir-cdr-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("cdr.db");
        {
            let store = SqliteStore::open(Some(&path)).expect("opens");
            assert_eq!(store.count().await.expect("counts"), 0);
        }
        {
            let conn = Connection::open(&path).expect("raw open");
            conn.pragma_update(None, "user_version", 99).expect("bump");
        }
        match SqliteStore::open(Some(&path)) {
            Err(StoreError::NewerSchema {
                found: 99,
                known: 1,
            }) => {}
            other => panic!("expected NewerSchema, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_schema_has_exactly_the_fields_the_store_writes_and_reads() {
        let store = SqliteStore::open(None).expect("opens");
        let conn = store.conn.lock().expect("lock");
        let mut info = conn
            .prepare("SELECT name FROM pragma_table_info('cdrs') ORDER BY cid")
            .expect("pragma");
        let columns: Vec<String> = info
            .query_map([], |r| r.get(0))
            .expect("columns")
            .collect::<Result<_, _>>()
            .expect("names");
        let fields: Vec<String> = std::iter::once("id")
            .chain(FIELDS.iter().map(|(n, _)| *n))
            .map(str::to_owned)
            .collect();
        assert_eq!(columns, fields);
        assert_eq!(at("owners"), fields.len() - 1);
        assert_eq!(
            at("no such field"),
            fields.len(),
            "past the end: refused when read"
        );
    }
}
