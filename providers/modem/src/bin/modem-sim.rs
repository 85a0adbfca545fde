//! `modem-sim`: serves simulated modems on pseudo-terminals, all attached to one simulated telephone
//! network, so that real host software (mgetty, chat, minicom, a tapir modem provider) can drive them.
//!
//! ```text
//! modem-sim --pty /dev/ttyV0 --number 5550100 [--pty PATH --number N …]
//!           [--far-end 5551234=modem|voice|busy|no-answer|unreachable …]
//!           [--ring-in 5550100 --from 5551234567 [--name "DOE JOHN"] [--after SECONDS]]
//!           [--verbose]
//! ```
//!
//! Commands on standard input, one per line:
//! `ring NUMBER CALLER [NAME…]` rings a modem from outside (a data modem calling),
//! `hangup` hangs up every caller rung in so far, `quit` stops.
//! What happens to callers is printed on standard output (`ring-in 5550100: answered`, `… received "…"`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tapir_modem::tty::Pty;
use tapir_modem::{CallerId, FarEnd, Network, RemoteCall, RingIn, SimModem};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Debug, Default)]
struct Args {
    modems: Vec<(PathBuf, String)>,
    far_ends: Vec<(String, FarEnd)>,
    ring_in: Option<(String, String, Option<String>, Duration)>,
    verbose: bool,
}

fn usage() -> &'static str {
    "usage: modem-sim --pty PATH --number N [--pty PATH --number N ...] \
     [--far-end NUMBER=modem|voice|busy|no-answer|unreachable ...] \
     [--ring-in NUMBER --from CALLER [--name NAME] [--after SECONDS]] [--verbose]"
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args::default();
    let mut pending_pty: Option<PathBuf> = None;
    let mut ring: Option<String> = None;
    let (mut from, mut name, mut after) = (None, None, Duration::ZERO);
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} needs a value"));
        match a.as_str() {
            "--pty" => {
                if pending_pty.is_some() {
                    return Err("each --pty needs its --number".into());
                }
                pending_pty = Some(PathBuf::from(value("--pty")?));
            }
            "--number" => {
                let number = value("--number")?;
                if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
                    return Err(format!("--number {number:?}: digits only"));
                }
                let pty = pending_pty.take().ok_or("--number must follow a --pty")?;
                args.modems.push((pty, number));
            }
            "--far-end" => {
                let spec = value("--far-end")?;
                let (number, kind) = spec
                    .split_once('=')
                    .ok_or_else(|| format!("--far-end {spec:?}: expected NUMBER=KIND"))?;
                let far_end = match kind {
                    "modem" => FarEnd::modem_after_rings(1),
                    "voice" => FarEnd::voice_after_rings(1),
                    "busy" => FarEnd::busy(),
                    "no-answer" => FarEnd::no_answer(),
                    "unreachable" => FarEnd::unreachable(),
                    other => return Err(format!("--far-end: unknown kind {other:?}")),
                };
                args.far_ends.push((number.to_owned(), far_end));
            }
            "--ring-in" => ring = Some(value("--ring-in")?),
            "--from" => from = Some(value("--from")?),
            "--name" => name = Some(value("--name")?),
            "--after" => {
                let v = value("--after")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0 && *s < 86_400.0)
                    .ok_or_else(|| format!("--after {v:?}: a number of seconds"))?;
                after = Duration::from_secs_f64(secs);
            }
            "--verbose" | "-v" => args.verbose = true,
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if pending_pty.is_some() {
        return Err("each --pty needs its --number".into());
    }
    if args.modems.is_empty() {
        return Err("at least one --pty PATH --number N is needed".into());
    }
    match (ring, from) {
        (Some(n), Some(f)) => args.ring_in = Some((n, f, name, after)),
        (None, None) => {}
        _ => return Err("--ring-in and --from go together".into()),
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("modem-sim: {e}");
            }
            eprintln!("{}", usage());
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(if args.verbose {
            tracing::Level::DEBUG
        } else {
            tracing::Level::INFO
        })
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("modem-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("modem-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let network = Network::new();
    for (number, far_end) in args.far_ends {
        network.far_end(number, far_end);
    }
    let mut links = Vec::new();
    let mut slaves = Vec::new();
    for (path, number) in &args.modems {
        let pty = Pty::new().map_err(|e| format!("cannot create a pseudo-terminal: {e}"))?;
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            let _ = std::fs::remove_file(path);
        }
        std::os::unix::fs::symlink(&pty.path, path).map_err(|e| {
            format!(
                "cannot link {} to {}: {e}",
                path.display(),
                pty.path.display()
            )
        })?;
        links.push(path.clone());
        SimModem::builder()
            .serve(&network, number, pty.master)
            .map_err(|e| e.to_string())?;
        println!(
            "modem {number} on {} ({})",
            path.display(),
            pty.path.display()
        );
        slaves.push(pty.slave);
    }
    let mut callers: Vec<RemoteCall> = Vec::new();
    if let Some((number, from, name, after)) = args.ring_in {
        tokio::time::sleep(after).await;
        callers.extend(ring(&network, &number, &from, name));
    }
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let result = loop {
        tokio::select! {
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    match words.as_slice() {
                        ["ring", number, from, name @ ..] => {
                            let name = (!name.is_empty()).then(|| name.join(" "));
                            callers.extend(ring(&network, number, from, name));
                        }
                        ["hangup"] => callers.drain(..).for_each(|c| c.hang_up()),
                        ["quit"] => break Ok(()),
                        [] => {}
                        _ => println!("error: unknown command {line:?} (ring NUMBER CALLER [NAME], hangup, quit)"),
                    }
                }
                Ok(None) | Err(_) => stdin_open = false,
            },
            () = shutdown_signal() => break Ok(()),
        }
    };
    for link in links {
        let _ = std::fs::remove_file(link);
    }
    drop(slaves);
    result
}

/// Rings `number` from outside and reports on standard output what happens to the caller.
fn ring(network: &Network, number: &str, from: &str, name: Option<String>) -> Option<RemoteCall> {
    let caller = match name {
        Some(n) => CallerId::named(from, n),
        None => CallerId::number(from),
    };
    match network.ring_in(number, RingIn::modem(caller)) {
        Ok(call) => {
            println!("ring-in {number}: ringing");
            let watched = call.clone();
            let number = number.to_owned();
            tokio::spawn(async move { watch(number, watched).await });
            Some(call)
        }
        Err(e) => {
            println!("ring-in {number}: failed: {e}");
            None
        }
    }
}

async fn watch(number: String, call: RemoteCall) {
    let mut answered = false;
    let mut seen = 0;
    loop {
        if call.is_answered() && !answered {
            answered = true;
            println!("ring-in {number}: answered");
        }
        let received = call.received();
        if received.len() > seen {
            println!(
                "ring-in {number}: received {:?}",
                String::from_utf8_lossy(&received[seen..])
            );
            seen = received.len();
        }
        if call.is_over() {
            println!("ring-in {number}: over");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
