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
pub mod server;

use std::future::Future;
use tapir_config::{Config, Running};
use tokio::net::TcpListener;
use tracing::info;

pub use server::AppState;

/// Serves the API for the engine `running` (started from `config`) on `listener` until `shutdown`
/// completes; then logs every client off and stops the engine.
pub async fn serve(
    config: &Config,
    running: Running,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = AppState::new(running.engine.clone(), config);
    let app = server::router(state.clone(), config.server.body_limit);
    info!(address = ?listener.local_addr().ok(), "tapird listening");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    info!("tapird stopping: logging clients off, stopping providers");
    state.logoff_all().await;
    running.engine.shutdown().await;
    served
}
