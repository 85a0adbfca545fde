//! `tapird`: runs the tapir service. With no arguments it uses the embedded default configuration
//! (simulated PBX and modems) and listens on 127.0.0.1:7878.
//!
//! ```text
//! tapird [--config FILE] [--listen ADDR:PORT] [--data-dir DIR]
//! ```
//!
//! The stores (`tapird.db`: event journals, route changes; `cdr.db`: call detail records) are kept in
//! `--data-dir`, else the configuration's `server.data_dir`, else `$XDG_DATA_HOME/tapir`
//! (`~/.local/share/tapir`).

use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc rather than the system allocator: the API's work is many small short-lived allocations
/// (requests, replies, events as JSON), where it costs markedly less (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let filter = std::env::var("TAPIR_LOG").unwrap_or_else(|_| "info".into());
    let level: tracing::Level = filter.parse().unwrap_or(tracing::Level::INFO);
    // The SIP stack logs every message it sends and receives at INFO: that is debugging detail
    // here, shown from TAPIR_LOG=debug on.
    let sip_stack = if level >= tracing::Level::DEBUG {
        level
    } else {
        tracing::Level::WARN.min(level)
    };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(
            tracing_subscriber::filter::Targets::new()
                .with_default(level)
                .with_target("rsipstack", sip_stack),
        )
        .init();

    let mut config_path: Option<PathBuf> = None;
    let mut listen: Option<String> = None;
    let mut data_dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config_path = args.next().map(PathBuf::from),
            "--listen" => listen = args.next(),
            "--data-dir" => data_dir = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("usage: tapird [--config FILE] [--listen ADDR:PORT] [--data-dir DIR]");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("tapird: unknown argument {other:?} (try --help)");
                return ExitCode::from(2);
            }
        }
    }
    let mut config = match tapir_config::load_or_embedded(config_path.as_deref()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tapird: {e}");
            return ExitCode::from(2);
        }
    };
    if config_path.is_none() {
        tracing::warn!(
            "no --config: running on the embedded default (simulated providers, development secrets)"
        );
    }
    if let Some(l) = listen {
        config.server.listen = l;
    }
    if let Some(d) = data_dir
        .or_else(|| config.server.data_dir.clone())
        .or_else(default_data_dir)
    {
        config.server.data_dir = Some(d);
    }
    let stores = match tapir_server::Stores::open(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tapird: cannot open the store: {e}");
            return ExitCode::from(1);
        }
    };
    // Every value is checked, and the providers started, before anything listens.
    let running = match config.start_with(stores.cdr_sink()).await {
        Ok(r) => r,
        Err(e @ tapir_config::ConfigError::Engine(_)) => {
            eprintln!("tapird: {e}");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("tapird: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tapir_server::listen(&config.server.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tapird: cannot listen on {}: {e}", config.server.listen);
            return ExitCode::from(1);
        }
    };
    match listener.local_addr() {
        Ok(a) => println!("tapird listening on http://{a}"),
        Err(_) => println!("tapird listening on http://{}", config.server.listen),
    }
    match tapir_server::serve_with(&config, running, stores, listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tapird: {e}");
            ExitCode::from(1)
        }
    }
}

/// `$XDG_DATA_HOME/tapir`, or `~/.local/share/tapir`.
fn default_data_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map(|d| d.join("tapir"))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
