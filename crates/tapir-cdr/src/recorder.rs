//! The recorder: the engine's record sink, writing to a store in batches off the call's hot path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tapir_core::cdr::{CallDetailRecord, CdrSink};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::{CdrStore, Retention, StoreError};

/// How a [`Recorder`] batches, queues and sweeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecorderOptions {
    /// At most this many records per transaction. Default 1024.
    pub batch: usize,
    /// Records waiting to be written beyond this many are counted as lost (the engine is never held
    /// up by the store). Default 65,536.
    pub queue: usize,
    /// What the background sweep deletes. Default: nothing.
    pub retention: Retention,
    /// How often the sweep runs. Default 60 s.
    pub sweep_every: Duration,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        Self {
            batch: 1024,
            queue: 65_536,
            retention: Retention::default(),
            sweep_every: Duration::from_secs(60),
        }
    }
}

/// What a recorder has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Records written to the store.
    pub written: u64,
    /// Records lost: the queue was full, or the store refused their batch.
    pub lost: u64,
    /// Batches the store refused.
    pub failed_batches: u64,
    /// Records deleted by the retention sweep.
    pub purged: u64,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    lost: AtomicU64,
    failed_batches: AtomicU64,
    purged: AtomicU64,
}

// Records are nearly every message; boxing them would cost an allocation each to shrink the rare flush.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Record(CallDetailRecord),
    Flush(oneshot::Sender<Result<(), StoreError>>),
}

/// Takes finished records from the engine and writes them to a [`CdrStore`].
///
/// [`record`](CdrSink::record) only queues; one task writes whatever has queued as one transaction (up to
/// [`RecorderOptions::batch`]), so under load records are written in large batches and when quiet
/// each is written at once. [`flush`](Recorder::flush) returns once everything recorded before it is
/// written — call it before shutting down. Cheap to clone; clones feed the same writer.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Msg>,
    counters: Arc<Counters>,
    sweeper: Arc<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Starts the writer and the retention sweep on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(store: Arc<dyn CdrStore>, options: RecorderOptions) -> Self {
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let counters = Arc::new(Counters::default());
        tokio::spawn(write(
            store.clone(),
            rx,
            options.batch.max(1),
            counters.clone(),
        ));
        let sweeper = tokio::spawn(sweep(store, options, counters.clone()));
        Self {
            tx,
            counters,
            sweeper: Arc::new(sweeper),
        }
    }

    /// Waits until every record recorded before this call is written (or its batch failed: then the
    /// error). [`StoreError::Closed`] if the writer has stopped.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Msg::Flush(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        done.await.map_err(|_| StoreError::Closed)?
    }

    /// Counts so far.
    pub fn stats(&self) -> RecorderStats {
        RecorderStats {
            written: self.counters.written.load(Ordering::Relaxed),
            lost: self.counters.lost.load(Ordering::Relaxed),
            failed_batches: self.counters.failed_batches.load(Ordering::Relaxed),
            purged: self.counters.purged.load(Ordering::Relaxed),
        }
    }

    /// Records waiting to be written.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Stops the retention sweep. The writer stops by itself once every clone is dropped (after
    /// writing what is queued).
    pub fn stop_sweeping(&self) {
        self.sweeper.abort();
    }
}

impl CdrSink for Recorder {
    fn record(&self, record: CallDetailRecord) {
        if let Err(e) = self.tx.try_send(Msg::Record(record)) {
            let n = self.counters.lost.fetch_add(1, Ordering::Relaxed) + 1;
            // Said once per power of two, so a long overload does not flood the log.
            if n.is_power_of_two() {
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "the write queue is full",
                    mpsc::error::TrySendError::Closed(_) => "the writer has stopped",
                };
                warn!(lost = n, "call detail record lost: {why}");
            }
        }
    }
}

async fn write(
    store: Arc<dyn CdrStore>,
    mut rx: mpsc::Receiver<Msg>,
    batch: usize,
    counters: Arc<Counters>,
) {
    let mut records = Vec::with_capacity(batch);
    let mut waiting: Vec<oneshot::Sender<Result<(), StoreError>>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Take what has queued, up to a batch; a flush waits for the batch it came after.
        while let Some(msg) = next {
            match msg {
                Msg::Record(r) => records.push(r),
                Msg::Flush(reply) => waiting.push(reply),
            }
            if records.len() >= batch {
                break;
            }
            next = rx.try_recv().ok();
        }
        let mut result = Ok(());
        if !records.is_empty() {
            let n = records.len() as u64;
            match store.insert(std::mem::take(&mut records)).await {
                Ok(()) => {
                    counters.written.fetch_add(n, Ordering::Relaxed);
                    debug!(records = n, "call detail records written");
                }
                Err(e) => {
                    counters.lost.fetch_add(n, Ordering::Relaxed);
                    counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                    warn!(records = n, error = %e, "call detail records could not be written");
                    result = Err(e);
                }
            }
        }
        for reply in waiting.drain(..) {
            let _ = reply.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Database(e.to_string())),
            });
        }
    }
}

async fn sweep(store: Arc<dyn CdrStore>, options: RecorderOptions, counters: Arc<Counters>) {
    let r = options.retention;
    if r.max_age.is_none() && r.max_records.is_none() {
        return;
    }
    let mut tick = tokio::time::interval(options.sweep_every.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.purge(r, SystemTime::now()).await {
            Ok(0) => {}
            Ok(n) => {
                counters.purged.fetch_add(n, Ordering::Relaxed);
                debug!(records = n, "old call detail records deleted");
            }
            Err(e) => warn!(error = %e, "call detail record retention sweep failed"),
        }
    }
}
