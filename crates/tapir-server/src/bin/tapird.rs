//! `tapird`: runs the tapir service. With no arguments it uses the embedded default configuration
//! (simulated PBX and modems) and listens on 127.0.0.1:7878.
//!
//! ```text
//! tapird [--config FILE] [--listen ADDR:PORT]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    let filter = std::env::var("TAPIR_LOG").unwrap_or_else(|_| "info".into());
    let level: tracing::Level = filter.parse().unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();

    let mut config_path: Option<PathBuf> = None;
    let mut listen: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config_path = args.next().map(PathBuf::from),
            "--listen" => listen = args.next(),
            "-h" | "--help" => {
                println!("usage: tapird [--config FILE] [--listen ADDR:PORT]");
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
    // Every value is checked, and the providers started, before anything listens.
    let running = match config.start().await {
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
    let listener = match TcpListener::bind(&config.server.listen).await {
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
    match tapir_server::serve(&config, running, listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tapird: {e}");
            ExitCode::from(1)
        }
    }
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
