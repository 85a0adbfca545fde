//! The service's durable store: an SQLite database (`tapird.db` in the data directory) holding each
//! log-on's event journal and the route changes made through the API.
//!
//! One thread owns the connection. Journal appends reach it over a bounded channel and are written in
//! batches, one transaction per batch, off the request path: when only appends are waiting, the thread
//! lets them gather for 2 ms first, so a busy journal costs a transaction per batch rather than per
//! event. Everything else (log-ons, route changes, reads, flushes) is a request answered after its
//! transaction commits. The schema is versioned with
//! `PRAGMA user_version` and migrated forward on open. Bounds: `server.journal_events` events per log-on
//! and `server.journal_max_age_secs` for every event and ended log-on, enforced as events are written and
//! by a sweep each minute.
//!
//! Durability: WAL with `synchronous = NORMAL` — a committed batch survives a crash of the process (a
//! crash loses the events of the last few milliseconds that were not yet written); a power loss may take
//! the last batches. A clean stop writes everything queued before it closes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

/// Queue entries (requests, or a log-on's batch of journal events) waiting for the store's thread
/// before the journal's writers wait.
const QUEUE: usize = 16 * 1024;
/// About the most events written in one transaction.
const BATCH: usize = 4096;
/// How long journal events may gather before they are written (when no request is waiting).
const LINGER: Duration = Duration::from_millis(2);

/// The schema, one migration per version; `PRAGMA user_version` says how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: log-ons, their events, route changes.
    "CREATE TABLE logons (
        id INTEGER PRIMARY KEY,
        token TEXT NOT NULL UNIQUE,
        application TEXT NOT NULL,
        session_id TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER,
        end_reason TEXT
    );
    CREATE TABLE events (
        logon INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        json TEXT NOT NULL,
        PRIMARY KEY (logon, seq)
    ) WITHOUT ROWID;
    CREATE INDEX events_by_age ON events (at_ms);
    CREATE TABLE route_changes (
        class TEXT PRIMARY KEY,
        application TEXT,
        changed_ms INTEGER NOT NULL
    );
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 2: events in a table ordered by insertion (so by age) and found by (log-on, sequence) through a
    // small index. Version 1 kept each whole event in the key's B-tree, where a row of a few hundred
    // bytes makes every insert shift large cells, and in a second index by age.
    "CREATE TABLE events_v2 (
        id INTEGER PRIMARY KEY,
        logon INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        json TEXT NOT NULL
    );
    INSERT INTO events_v2 (logon, seq, at_ms, json)
        SELECT logon, seq, at_ms, json FROM events ORDER BY at_ms, logon, seq;
    DROP TABLE events;
    ALTER TABLE events_v2 RENAME TO events;
    CREATE UNIQUE INDEX events_by_logon ON events (logon, seq);",
];

/// A store that could not be opened or used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(String);

impl StoreError {
    /// An error with this text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// A log-on as the store knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLogon {
    /// The store's ID for it.
    pub id: i64,
    /// The application.
    pub application: String,
    /// Whether (and why) it ended: `logoff`, `shutdown`, `restart`.
    pub end_reason: Option<String>,
}

/// A route change made through the API: `application` `None` means the class's route was cleared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteChange {
    /// The call class.
    pub class: String,
    /// The application, or `None` for a cleared route.
    pub application: Option<String>,
}

/// The store's limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Events kept per log-on.
    pub events_per_logon: usize,
    /// How long events and ended log-ons are kept.
    pub max_age: Duration,
}

/// The route changes made through the API, and the default route's written form if it was changed.
pub type StoredRoutes = (Vec<RouteChange>, Option<String>);

enum Op {
    /// Journal events of one log-on, in order.
    Append {
        logon: i64,
        events: Vec<(u64, Arc<str>)>,
    },
    Logon {
        token: String,
        application: String,
        session_id: String,
        reply: oneshot::Sender<Result<i64, StoreError>>,
    },
    Ended {
        logon: i64,
        reason: &'static str,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Find {
        token: String,
        reply: oneshot::Sender<Result<Option<StoredLogon>, StoreError>>,
    },
    Read {
        logon: i64,
        after: u64,
        limit: usize,
        reply: oneshot::Sender<Result<Read, StoreError>>,
    },
    Route {
        change: RouteChange,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    DefaultRoute {
        value: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Routes {
        reply: oneshot::Sender<Result<StoredRoutes, StoreError>>,
    },
    Sweep {
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
    Flush {
        reply: oneshot::Sender<()>,
    },
}

/// Events read from a stored journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// The events after the position (possibly none), in order.
    Events(Vec<(u64, String)>),
    /// The position has been trimmed; the first event kept.
    Trimmed {
        /// The first sequence number kept.
        first_kept: u64,
    },
}

/// A handle to the store (cheap to clone).
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Op>,
    path: Option<PathBuf>,
    /// Journal events queued and not yet written.
    waiting: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating and migrating as needed) the store in `data_dir`, or an in-memory one without.
    /// Log-ons left open by the previous run are marked ended (`restart`).
    pub fn open(data_dir: Option<&Path>, limits: Limits) -> Result<Store, StoreError> {
        let (conn, path) = match data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError(format!(
                        "cannot create data directory {}: {e}",
                        dir.display()
                    ))
                })?;
                let path = dir.join("tapird.db");
                let conn = Connection::open(&path)
                    .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
                (conn, Some(path))
            }
            None => (Connection::open_in_memory()?, None),
        };
        let mut conn = conn;
        prepare(&mut conn).map_err(|e| match &path {
            Some(p) => StoreError(format!("{}: {e}", p.display())),
            None => e,
        })?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let waiting = Arc::new(AtomicUsize::new(0));
        std::thread::Builder::new()
            .name("tapird-store".into())
            .spawn({
                let waiting = waiting.clone();
                move || run(conn, rx, limits, &waiting)
            })
            .map_err(|e| StoreError(format!("cannot start the store's thread: {e}")))?;
        Ok(Store { tx, path, waiting })
    }

    /// Journal events waiting for the store's thread.
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The database file (none for an in-memory store).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    async fn ask<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(op(reply))
            .await
            .map_err(|_| StoreError("the store is closed".into()))?;
        answer
            .await
            .map_err(|_| StoreError("the store is closed".into()))?
    }

    /// Queues events of a log-on's journal, in order, as one entry of the queue; waits only while the
    /// queue is full.
    pub async fn append(&self, logon: i64, events: Vec<(u64, Arc<str>)>) {
        let n = events.len();
        if n == 0 {
            return;
        }
        self.waiting.fetch_add(n, Ordering::Relaxed);
        if self.tx.send(Op::Append { logon, events }).await.is_err() {
            self.waiting.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Records a new log-on; its store ID.
    pub async fn logon(
        &self,
        token: &str,
        application: &str,
        session_id: &str,
    ) -> Result<i64, StoreError> {
        self.ask(|reply| Op::Logon {
            token: token.to_owned(),
            application: application.to_owned(),
            session_id: session_id.to_owned(),
            reply,
        })
        .await
    }

    /// Records that a log-on ended, after every event queued before.
    pub async fn ended(&self, logon: i64, reason: &'static str) -> Result<(), StoreError> {
        self.ask(|reply| Op::Ended {
            logon,
            reason,
            reply,
        })
        .await
    }

    /// The log-on a token belonged to.
    pub async fn find(&self, token: &str) -> Result<Option<StoredLogon>, StoreError> {
        self.ask(|reply| Op::Find {
            token: token.to_owned(),
            reply,
        })
        .await
    }

    /// Up to `limit` events of a log-on after `after`.
    pub async fn read_after(
        &self,
        logon: i64,
        after: u64,
        limit: usize,
    ) -> Result<Read, StoreError> {
        self.ask(|reply| Op::Read {
            logon,
            after,
            limit,
            reply,
        })
        .await
    }

    /// Records a route change (durable when this returns).
    pub async fn route_changed(&self, change: RouteChange) -> Result<(), StoreError> {
        self.ask(|reply| Op::Route { change, reply }).await
    }

    /// Records the default route's new written form.
    pub async fn default_route_changed(&self, value: &str) -> Result<(), StoreError> {
        self.ask(|reply| Op::DefaultRoute {
            value: value.to_owned(),
            reply,
        })
        .await
    }

    /// The route changes made through the API, in the order of their classes, and the default route.
    pub async fn routes(&self) -> Result<StoredRoutes, StoreError> {
        self.ask(|reply| Op::Routes { reply }).await
    }

    /// Removes what is older than the age limit; the number of events removed.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        self.ask(|reply| Op::Sweep { reply }).await
    }

    /// Returns once everything queued before has been written.
    pub async fn flush(&self) {
        let (reply, done) = oneshot::channel();
        if self.tx.send(Op::Flush { reply }).await.is_ok() {
            let _ = done.await;
        }
    }
}

fn prepare(conn: &mut Connection) -> Result<(), StoreError> {
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > MIGRATIONS.len() {
        return Err(StoreError(format!(
            "the database has schema version {version}, newer than this tapird knows ({}); \
             use a newer tapird or another data directory",
            MIGRATIONS.len()
        )));
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    let restarted = conn.execute(
        "UPDATE logons SET ended_ms = ?1, end_reason = 'restart' WHERE ended_ms IS NULL",
        params![now_ms()],
    )?;
    if restarted > 0 {
        debug!(restarted, "log-ons of the previous run marked ended");
    }
    Ok(())
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Op>, limits: Limits, waiting: &AtomicUsize) {
    let mut batch = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut events = weight(&first);
        batch.push(first);
        take_waiting(&mut rx, &mut batch, &mut events);
        // Only journal events so far, and room for more: let more gather for a moment, so that a busy
        // journal is written in few large transactions rather than one per event. Nobody waits on an
        // append; a request (log-on, read, flush) is answered without the pause.
        if events < BATCH && batch.iter().all(|op| matches!(op, Op::Append { .. })) {
            std::thread::sleep(LINGER);
            take_waiting(&mut rx, &mut batch, &mut events);
        }
        apply(&mut conn, &mut batch, limits, waiting);
        batch.clear();
    }
    debug!("store closed");
}

/// How much of a batch an operation takes: its events, or one.
fn weight(op: &Op) -> usize {
    match op {
        Op::Append { events, .. } => events.len().max(1),
        _ => 1,
    }
}

/// Moves what is waiting in the queue into the batch, until the batch holds about a batch's worth.
fn take_waiting(rx: &mut mpsc::Receiver<Op>, batch: &mut Vec<Op>, size: &mut usize) {
    while *size < BATCH {
        match rx.try_recv() {
            Ok(op) => {
                *size += weight(&op);
                batch.push(op);
            }
            Err(_) => break,
        }
    }
}

/// Writes the appends of a batch in one transaction, then answers the requests in order (so a flush
/// answered here has every event queued before it written, and counted as no longer waiting).
fn apply(conn: &mut Connection, batch: &mut Vec<Op>, limits: Limits, waiting: &AtomicUsize) {
    let at = now_ms();
    let appended: usize = batch
        .iter()
        .map(|op| match op {
            Op::Append { events, .. } => events.len(),
            _ => 0,
        })
        .sum();
    if appended > 0 {
        if let Err(e) = append(conn, batch, limits, at) {
            warn!(error = %e, "the store could not write a batch");
        }
        waiting.fetch_sub(appended, Ordering::Relaxed);
    }
    for op in batch.drain(..) {
        answer(conn, op, limits, at);
    }
}

/// The appends of a batch, in one transaction.
fn append(conn: &mut Connection, batch: &[Op], limits: Limits, at: i64) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO events (logon, seq, at_ms, json) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut trim = tx.prepare_cached("DELETE FROM events WHERE logon = ?1 AND seq <= ?2")?;
        let mut last: Vec<(i64, u64)> = Vec::new();
        for op in batch.iter() {
            if let Op::Append { logon, events } = op {
                for (seq, json) in events {
                    insert.execute(params![logon, *seq as i64, at, json.as_ref()])?;
                }
                if let Some((seq, _)) = events.last() {
                    match last.iter_mut().find(|(l, _)| l == logon) {
                        Some(entry) => entry.1 = *seq,
                        None => last.push((*logon, *seq)),
                    }
                }
            }
        }
        let keep = limits.events_per_logon as u64;
        for (logon, seq) in last {
            if seq > keep {
                trim.execute(params![logon, (seq - keep) as i64])?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

fn answer(conn: &mut Connection, op: Op, limits: Limits, at: i64) {
    match op {
        Op::Append { .. } => {}
        Op::Logon {
            token,
            application,
            session_id,
            reply,
        } => {
            let r = conn
                .execute(
                    "INSERT INTO logons (token, application, session_id, started_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![token, application, session_id, at],
                )
                .map(|_| conn.last_insert_rowid())
                .map_err(StoreError::from);
            let _ = reply.send(r);
        }
        Op::Ended {
            logon,
            reason,
            reply,
        } => {
            let r = conn
                .execute(
                    "UPDATE logons SET ended_ms = ?2, end_reason = ?3 WHERE id = ?1 AND ended_ms IS NULL",
                    params![logon, at, reason],
                )
                .map(|_| ())
                .map_err(StoreError::from);
            let _ = reply.send(r);
        }
        Op::Find { token, reply } => {
            let r = conn
                .query_row(
                    "SELECT id, application, end_reason FROM logons WHERE token = ?1",
                    params![token],
                    |r| {
                        Ok(StoredLogon {
                            id: r.get(0)?,
                            application: r.get(1)?,
                            end_reason: r.get(2)?,
                        })
                    },
                )
                .optional()
                .map_err(StoreError::from);
            let _ = reply.send(r);
        }
        Op::Read {
            logon,
            after,
            limit,
            reply,
        } => {
            let _ = reply.send(read(conn, logon, after, limit));
        }
        Op::Route { change, reply } => {
            let r = conn
                .execute(
                    "INSERT OR REPLACE INTO route_changes (class, application, changed_ms) VALUES (?1, ?2, ?3)",
                    params![change.class, change.application, at],
                )
                .map(|_| ())
                .map_err(StoreError::from);
            let _ = reply.send(r);
        }
        Op::DefaultRoute { value, reply } => {
            let r = conn
                .execute(
                    "INSERT OR REPLACE INTO settings (key, value) VALUES ('default_route', ?1)",
                    params![value],
                )
                .map(|_| ())
                .map_err(StoreError::from);
            let _ = reply.send(r);
        }
        Op::Routes { reply } => {
            let _ = reply.send(routes(conn));
        }
        Op::Sweep { reply } => {
            let cutoff = at - limits.max_age.as_millis() as i64;
            let r = (|| -> Result<usize, StoreError> {
                // Events are stored in the order they were written, so the old ones are a prefix:
                // find where it ends (reading only the rows that go), then delete up to there.
                let first_kept: Option<i64> = conn
                    .query_row(
                        "SELECT id FROM events WHERE at_ms >= ?1 ORDER BY id LIMIT 1",
                        params![cutoff],
                        |r| r.get(0),
                    )
                    .optional()?;
                let removed = match first_kept {
                    Some(id) => conn.execute("DELETE FROM events WHERE id < ?1", params![id])?,
                    None => conn.execute("DELETE FROM events", [])?,
                };
                conn.execute(
                    "DELETE FROM logons WHERE ended_ms IS NOT NULL AND ended_ms < ?1
                     AND NOT EXISTS (SELECT 1 FROM events WHERE events.logon = logons.id)",
                    params![cutoff],
                )?;
                Ok(removed)
            })();
            let _ = reply.send(r);
        }
        Op::Flush { reply } => {
            let _ = reply.send(());
        }
    }
}

fn read(conn: &Connection, logon: i64, after: u64, limit: usize) -> Result<Read, StoreError> {
    let first: Option<i64> = conn.query_row(
        "SELECT MIN(seq) FROM events WHERE logon = ?1",
        params![logon],
        |r| r.get(0),
    )?;
    let first = first.map(|f| f as u64);
    // Trimmed: events after the position were written and the first one after it is gone.
    if let Some(f) = first
        && f > after + 1
    {
        return Ok(Read::Trimmed { first_kept: f });
    }
    let mut stmt = conn.prepare_cached(
        "SELECT seq, json FROM events WHERE logon = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt
        .query_map(params![logon, after as i64, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Read::Events(rows))
}

fn routes(conn: &Connection) -> Result<StoredRoutes, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT class, application FROM route_changes ORDER BY class")?;
    let changes = stmt
        .query_map([], |r| {
            Ok(RouteChange {
                class: r.get(0)?,
                application: r.get(1)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let default = conn
        .query_row(
            "SELECT value FROM settings WHERE key = 'default_route'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok((changes, default))
}

#[cfg(test)]
mod tests;
