//! `tapird`: the tapir engine as a network service.
//!
//! An HTTP + JSON API for everything an application does with a session (log on, lines, calls, status,
//! routes, address translation), and a WebSocket per log-on that delivers the session's events,
//! numbered, and resumes after the last one a reconnecting client saw. `docs/api.md` describes it.
//!
//! [`serve`] runs the service on a listener until a shutdown signal; [`server::router`] is the API
//! alone, for embedding.

pub mod api;
pub mod error;
pub mod journal;
pub mod openapi;
pub mod server;
pub mod store;

use std::future::Future;
use std::time::Duration;

use tapir_config::{Config, Running};
use tokio::net::TcpListener;
use tracing::info;

pub use server::AppState;
pub use store::{Store, StoreError};

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

/// Serves the API for the engine `running` (started from `config`) on `listener` until `shutdown`
/// completes, with the store `config` names; see [`serve_with`].
pub async fn serve(
    config: &Config,
    running: Running,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let store = open_store(config).map_err(std::io::Error::other)?;
    serve_with(config, running, store, listener, shutdown).await
}

/// Serves the API with an open store: route changes stored by earlier runs are applied first; when
/// `shutdown` completes every client is logged off, their last events are written, the engine stops.
pub async fn serve_with(
    config: &Config,
    running: Running,
    store: Store,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = AppState::new(running.engine.clone(), config, store);
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
    let app = server::router(state.clone(), config.server.body_limit);
    info!(address = ?listener.local_addr().ok(), store = ?state.store().path(), "tapird listening");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    info!("tapird stopping: logging clients off, stopping providers");
    sweeper.abort();
    state.logoff_all().await;
    running.engine.shutdown().await;
    served
}
