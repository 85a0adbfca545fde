//! The embedded store: one SQLite file (WAL, `synchronous = NORMAL`), schema versioned by
//! `PRAGMA user_version`.
//!
//! Durability: a batch is one transaction. In WAL mode with `synchronous = NORMAL` a committed
//! transaction survives the process being killed (the WAL is in the operating system's hands); a power
//! loss may take back the last transactions before a checkpoint. `docs/cdr.md` has the details.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
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

fn insert_all(conn: &mut Connection, records: &[CallDetailRecord]) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    {
        let mut cdr = tx.prepare_cached(
            "INSERT INTO cdrs (call_id, line, line_name, address, origin, reason,
                caller_number, caller_name, called_number, called_name, connected_number,
                connected_name, redirecting_number, redirecting_name, started_ms, answered_ms,
                ended_ms, ringing_ms, talking_ms, on_hold_ms, disposition, disconnect, owners)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                ?18, ?19, ?20, ?21, ?22, ?23)",
        )?;
        let mut link = tx.prepare_cached("INSERT INTO cdr_links (cdr, call_id) VALUES (?1, ?2)")?;
        for r in records {
            let owners = serde_json::to_string(&r.owners).unwrap_or_else(|_| "[]".into());
            let values: [Value; 23] = [
                Value::Integer(r.call_id.0 as i64),
                Value::Integer(i64::from(r.line.0)),
                Value::Text(r.line_name.clone()),
                Value::Integer(i64::from(r.address.0)),
                Value::Text(r.origin.name().into()),
                Value::Text(r.reason.name().into()),
                text(&r.caller.number),
                text(&r.caller.name),
                text(&r.called.number),
                text(&r.called.name),
                text(&r.connected.number),
                text(&r.connected.name),
                text(&r.redirecting.number),
                text(&r.redirecting.name),
                Value::Integer(millis(r.started)),
                r.answered
                    .map_or(Value::Null, |a| Value::Integer(millis(a))),
                Value::Integer(millis(r.ended)),
                Value::Integer(r.ringing.as_millis() as i64),
                Value::Integer(r.talking.as_millis() as i64),
                Value::Integer(r.on_hold.as_millis() as i64),
                Value::Text(r.disposition.name().into()),
                r.disconnect
                    .map_or(Value::Null, |d| Value::Text(d.name().into())),
                Value::Text(owners),
            ];
            cdr.execute(params_from_iter(values))?;
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
    let bad = |i: usize, what: &str, v: String| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown {what} {v:?}").into(),
        )
    };
    let party = |n: usize| -> Result<CdrParty, rusqlite::Error> {
        Ok(CdrParty {
            number: row.get(n)?,
            name: row.get(n + 1)?,
        })
    };
    let ms = |n: usize| -> Result<Duration, rusqlite::Error> {
        Ok(Duration::from_millis(row.get::<_, i64>(n)?.max(0) as u64))
    };
    let origin: String = row.get(5)?;
    let reason: String = row.get(6)?;
    let disposition: String = row.get(21)?;
    let disconnect: Option<String> = row.get(22)?;
    let owners: String = row.get(23)?;
    Ok(StoredCdr {
        id: row.get::<_, i64>(0)? as u64,
        record: CallDetailRecord {
            call_id: CallId(row.get::<_, i64>(1)? as u64),
            related_call_ids: Vec::new(),
            line: LineId(row.get(2)?),
            line_name: row.get(3)?,
            address: AddressId(row.get(4)?),
            origin: CallOrigin::from_name(&origin)
                .ok_or_else(|| bad(5, "origin", origin.clone()))?,
            reason: CallReason::from_name(&reason)
                .ok_or_else(|| bad(6, "reason", reason.clone()))?,
            caller: party(7)?,
            called: party(9)?,
            connected: party(11)?,
            redirecting: party(13)?,
            started: from_millis(row.get(15)?),
            answered: row.get::<_, Option<i64>>(16)?.map(from_millis),
            ended: from_millis(row.get(17)?),
            ringing: ms(18)?,
            talking: ms(19)?,
            on_hold: ms(20)?,
            disposition: Disposition::from_name(&disposition)
                .ok_or_else(|| bad(21, "disposition", disposition.clone()))?,
            disconnect: disconnect
                .map(|d| {
                    DisconnectReason::from_name(&d).ok_or_else(|| bad(22, "disconnect reason", d))
                })
                .transpose()?,
            owners: serde_json::from_str(&owners).map_err(|e| bad(23, "owners", e.to_string()))?,
        },
    })
}

const COLUMNS: &str = "id, call_id, line, line_name, address, origin, reason, caller_number,
    caller_name, called_number, called_name, connected_number, connected_name, redirecting_number,
    redirecting_name, started_ms, answered_ms, ended_ms, ringing_ms, talking_ms, on_hold_ms,
    disposition, disconnect, owners";

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
        "SELECT {COLUMNS} FROM cdrs {filter} ORDER BY id DESC LIMIT ?{}",
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
}
