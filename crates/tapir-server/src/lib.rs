//! `tapird`: the tapir engine as a network service.
//!
//! An HTTP + JSON API for everything an application does with a session (log on, lines, calls, status,
//! routes, address translation), and a WebSocket per log-on that delivers the session's events,
//! numbered, and resumes after the last one a reconnecting client saw. `docs/api.md` describes it.
//!
//! [`serve`] runs the service on a listener until a shutdown signal; [`router`] is the API
//! alone, for embedding.

pub mod api;
pub mod console;
pub mod error;
mod extract;
mod idempotency;
pub mod journal;
mod metrics;
pub mod openapi;
mod ops;
mod reply;
mod routes;
mod state;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tapir_config::{Config, Running};
use tokio::net::TcpListener;
use tracing::info;

pub use extract::{Authed, Body, Token};
pub use routes::commands::answer_command;
pub use routes::router;
pub use state::{AppState, NetworkLogon};
pub use store::{Store, StoreError};

use tapir::core::cdr::CdrSink;
use tapir_cdr::{CdrStore, Recorder, RecorderOptions, Retention, SqliteStore};

/// The call detail record store (`cdr.db` in the data directory) and the recorder feeding it.
#[derive(Clone)]
pub struct Cdrs {
    /// Where records are kept and queried.
    pub store: Arc<dyn CdrStore>,
    /// The engine's record sink.
    pub recorder: Recorder,
}

/// Everything `tapird` keeps: the journal store and, unless `[cdr] enabled = false`, the call records.
pub struct Stores {
    /// Event journals, ended log-ons, route changes.
    pub journal: Store,
    /// Call detail records.
    pub cdrs: Option<Cdrs>,
}

impl Stores {
    /// Opens both stores in the configuration's data directory (in memory without one) and starts the
    /// record writer. Must run inside a tokio runtime.
    pub fn open(config: &Config) -> Result<Stores, StoreError> {
        let journal = open_store(config)?;
        let cdrs = if config.cdr.enabled {
            let path = config.server.data_dir.as_ref().map(|d| d.join("cdr.db"));
            let store = SqliteStore::open(path.as_deref())
                .map_err(|e| StoreError::new(format!("cdr.db: {e}")))?;
            let store: Arc<dyn CdrStore> = Arc::new(store);
            let days = Duration::from_secs(24 * 60 * 60);
            let recorder = Recorder::start(
                store.clone(),
                RecorderOptions {
                    batch: config.cdr.batch,
                    retention: Retention {
                        max_age: (config.cdr.max_age_days > 0)
                            .then(|| days * config.cdr.max_age_days as u32),
                        max_records: (config.cdr.max_records > 0).then_some(config.cdr.max_records),
                    },
                    ..RecorderOptions::default()
                },
            );
            Some(Cdrs { store, recorder })
        } else {
            None
        };
        Ok(Stores { journal, cdrs })
    }

    /// The sink to start the engine with ([`Config::start_with`]).
    pub fn cdr_sink(&self) -> Option<Arc<dyn CdrSink>> {
        self.cdrs
            .as_ref()
            .map(|c| Arc::new(c.recorder.clone()) as Arc<dyn CdrSink>)
    }
}

/// How often the store drops what is older than the journal's age limit.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Opens the store the configuration names (`server.data_dir`), or an in-memory one without a data
/// directory.
pub fn open_store(config: &Config) -> Result<Store, StoreError> {
    Store::open(
        config.server.data_dir.as_deref(),
        store::Limits {
            events_per_logon: config.server.journal_events,
            max_age: Duration::from_secs(config.server.journal_max_age_secs),
        },
    )
}

/// Opens the stores `config` names, starts its engine and serves the API on `listener` until
/// `shutdown` completes; see [`serve_with`].
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stores = Stores::open(config).map_err(std::io::Error::other)?;
    let running = config
        .start_with(stores.cdr_sink())
        .await
        .map_err(std::io::Error::other)?;
    serve_with(config, running, stores, listener, shutdown).await
}

/// Serves the API with open stores (start the engine with [`Stores::cdr_sink`] so that its call records
/// are kept): route changes stored by earlier runs are applied first; when `shutdown` completes every
/// client is logged off, their last events are written, the engine stops, and every call record is
/// written before this returns.
pub async fn serve_with(
    config: &Config,
    running: Running,
    stores: Stores,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cdrs = stores.cdrs.clone();
    let state = AppState::new(running.engine.clone(), config, stores.journal, stores.cdrs);
    state.restore_routes().await;
    let sweeper = tokio::spawn({
        let store = state.store().clone();
        async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            loop {
                every.tick().await;
                if let Err(e) = store.sweep().await {
                    tracing::warn!(error = %e, "the store's sweep failed");
                }
            }
        }
    });
    let app = router(state.clone(), config.server.body_limit);
    info!(address = ?listener.local_addr().ok(), store = ?state.store().path(), "tapird listening");
    // Replies and events are written whole, each as soon as it is ready: without Nagle's delay.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    info!("tapird stopping: logging clients off, stopping providers");
    sweeper.abort();
    state.logoff_all().await;
    running.engine.shutdown().await;
    if let Some(c) = cdrs {
        c.recorder.stop_sweeping();
        match c.recorder.flush().await {
            Ok(()) => info!(written = c.recorder.stats().written, "call records written"),
            Err(e) => tracing::error!(error = %e, "call records could not all be written"),
        }
    }
    served
}

/// A `tapird` serving in this process on a loopback port the system chooses, with an in-memory store
/// unless the configuration names a data directory: for test suites and examples that talk to the
/// service over the network.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let tapird = tapir_server::Spawned::start(tapir_config::Config::embedded()).await?;
/// println!("serving on {}", tapird.url());
/// tapird.stop().await
/// # }
/// ```
pub struct Spawned {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Pending connections the listening socket holds before the kernel drops new ones (capped by the
/// system's `net.core.somaxconn`).
const BACKLOG: u32 = 4096;

/// A listening socket on `address` (`HOST:PORT`; the first of its addresses that can be bound) with a
/// backlog for many clients connecting at once. The usual default of 128 overflows when a few hundred
/// clients (re)connect together, and each dropped connection attempt waits a second before trying
/// again (`docs/benchmarks.md`).
pub async fn listen(address: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(address).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{address} names no address"),
        )
    }))
}

impl Spawned {
    /// Starts the engine `config` describes and serves it on `127.0.0.1`.
    pub async fn start(config: Config) -> std::io::Result<Spawned> {
        let stores = Stores::open(&config).map_err(std::io::Error::other)?;
        let running = config
            .start_with(stores.cdr_sink())
            .await
            .map_err(std::io::Error::other)?;
        let listener = listen("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve_with(&config, running, stores, listener, async {
                let _ = stopped.await;
            })
            .await
        });
        Ok(Spawned { addr, stop, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it as a signal would: clients logged off, store written, engine stopped.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        self.task.await.map_err(std::io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use super::listen;

    #[tokio::test]
    async fn listen_binds_accepts_and_refuses_an_address_in_use_or_unreadable() {
        let listener = listen("127.0.0.1:0").await.expect("bound");
        let addr = listener.local_addr().expect("address");
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        client.expect("connects");
        accepted.expect("accepted");
        assert!(
            listen(&addr.to_string()).await.is_err(),
            "the address is in use"
        );
        assert!(listen("127.0.0.1:notaport").await.is_err());
        assert!(listen("").await.is_err());
    }
}
