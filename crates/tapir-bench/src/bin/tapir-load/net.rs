//! Network mode: the same call lifecycles, driven through `tapir-client` against a tapird on loopback.
//!
//! Each client is one log-on with its own WebSocket event stream; the lines are shared out among the
//! clients and each client opens its lines as owner. A lifecycle is three commands (make, drop,
//! deallocate); the latency measured is from issuing make (drop) to the client's stream delivering the
//! call's `connected` (`idle`) event. Without `--url` a tapird is started in this process on an ephemeral
//! loopback port, with a simulated PBX of `--lines` extensions and an application `load`. At the end
//! every client logs off and the service's own metrics must show no calls, call handles or sessions
//! left.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tapir_api::{EventKind, LogonRequest};
use tapir_client::{Client, Service, StreamItem};
use tokio::sync::oneshot;

use crate::{Args, DESTINATION, Latency, Progress, pacer, ticket};

/// The application the self-hosted tapird knows, and its secret.
const APPLICATION: &str = "load";
const SECRET: &str = "load-secret";

/// What a worker waits for on a call: the stream's `connected` or `idle` event.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Wanted {
    Connected,
    Idle,
}

/// An event that arrived before anyone waited for it, or a worker waiting.
enum Slot {
    Reached,
    Waiting(oneshot::Sender<()>),
}

/// One log-on and what its stream has seen.
struct NetClient {
    client: Client,
    seen: DashMap<(String, Wanted), Slot>,
}

impl NetClient {
    /// Records that `call` reached `wanted`, waking a worker that waits for it.
    fn reached(&self, call: String, wanted: Wanted) {
        match self.seen.entry((call, wanted)) {
            Entry::Occupied(o) => {
                if let Slot::Waiting(_) = o.get()
                    && let Slot::Waiting(tx) = o.remove()
                {
                    let _ = tx.send(());
                }
            }
            Entry::Vacant(v) => {
                v.insert(Slot::Reached);
            }
        }
    }

    /// Waits until the stream has delivered `wanted` for `call`.
    async fn wait(&self, call: &str, wanted: Wanted) -> Result<(), String> {
        let rx = match self.seen.entry((call.to_owned(), wanted)) {
            Entry::Occupied(o) => {
                o.remove();
                return Ok(());
            }
            Entry::Vacant(v) => {
                let (tx, rx) = oneshot::channel();
                v.insert(Slot::Waiting(tx));
                rx
            }
        };
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(format!("no {wanted:?} event for {call} within 30 s")),
        }
    }
}

/// A line, the client that owns it, and its open.
struct NetLine {
    client: usize,
    line_handle: String,
}

/// The self-hosted tapird's configuration: `lines` extensions, the destination answering at once,
/// listening on `listen`, call detail records on or off.
pub(crate) fn config(lines: usize, listen: &str, cdr: bool) -> String {
    let extensions: Vec<String> = (0..lines)
        .map(|i| format!("{{ number = \"{}\", name = \"Line {i}\" }}", 100_000 + i))
        .collect();
    format!(
        r#"
[engine]
event_queue_capacity = 65536

[services.pbx]
kind = "simswitch"
extensions = [{}]
outside = [{{ number = "{DESTINATION}", script = "answers", after_rings = 0 }}]

[profiles.default]
services = ["pbx"]

[server]
listen = "{listen}"

[cdr]
enabled = {cdr}

[applications.{APPLICATION}]
secret = "{SECRET}"
"#,
        extensions.join(", ")
    )
}

/// What the service still tracks (calls, call handles, sessions) by its own metrics, waiting up to
/// two seconds for it to reach nothing after the last log-off.
pub(crate) async fn leftovers(service: &Service) -> Result<HashMap<&'static str, f64>, String> {
    let mut left = HashMap::new();
    for _ in 0..200 {
        let text = service.metrics().await.map_err(|e| e.to_string())?;
        left = ["tapir_calls", "tapir_call_handles", "tapir_sessions"]
            .into_iter()
            .map(|m| (m, metric(&text, m)))
            .collect();
        if left.values().all(|v| *v == 0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(left)
}

/// A value of the service's Prometheus text (`name value` with no labels), 0 when absent.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// Runs the network mode; `Ok(true)` when every lifecycle completed and nothing was left behind.
pub(crate) async fn run(args: Args) -> Result<bool, String> {
    let lines_wanted = args.lines.max(1);
    let (server, url, application, secret) = match &args.url {
        Some(url) => (
            None,
            url.clone(),
            args.application.clone(),
            args.secret.clone(),
        ),
        None => {
            let config =
                tapir_config::Config::parse(&config(lines_wanted, "127.0.0.1:0", args.cdr))
                    .map_err(|e| e.to_string())?;
            let server = tapir_server::Spawned::start(config)
                .await
                .map_err(|e| format!("cannot start tapird: {e}"))?;
            let url = server.url();
            (Some(server), url, APPLICATION.to_owned(), SECRET.to_owned())
        }
    };
    let service = Service::new(&url).map_err(|e| e.to_string())?;

    // Log on the clients, share out the lines, open them, start every stream.
    let request = LogonRequest {
        application,
        secret,
        ..LogonRequest::default()
    };
    let first = service.logon(&request).await.map_err(|e| e.to_string())?;
    let available = first.lines().await.map_err(|e| e.to_string())?;
    let lines = available.len().min(lines_wanted);
    if lines == 0 {
        return Err("the application may use no lines".into());
    }
    let client_count = args.clients.clamp(1, lines);
    let mut clients = vec![first];
    while clients.len() < client_count {
        clients.push(service.logon(&request).await.map_err(|e| e.to_string())?);
    }
    if args.ws_commands {
        for c in &mut clients {
            c.connect_commands().await.map_err(|e| e.to_string())?;
        }
    }
    let clients: Vec<Arc<NetClient>> = clients
        .into_iter()
        .map(|client| {
            Arc::new(NetClient {
                client,
                seen: DashMap::new(),
            })
        })
        .collect();
    let mut net_lines = Vec::with_capacity(lines);
    for (i, line) in available.iter().take(lines).enumerate() {
        let c = i % client_count;
        let open = clients[c]
            .client
            .open_line(line.id, "owner")
            .await
            .map_err(|e| e.to_string())?;
        net_lines.push(NetLine {
            client: c,
            line_handle: open.line_handle,
        });
    }
    let events = Arc::new(AtomicU64::new(0));
    let streaming = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for c in &clients {
        let c = c.clone();
        let events = events.clone();
        let streaming = streaming.clone();
        readers.push(tokio::spawn(async move {
            let mut stream = c.client.events(0);
            let mut counted = false;
            while let Some(item) = stream.next().await {
                let Ok(StreamItem::Event(e)) = item else {
                    continue;
                };
                if !counted {
                    counted = true;
                    streaming.fetch_add(1, Ordering::Relaxed);
                }
                events.fetch_add(1, Ordering::Relaxed);
                if let EventKind::CallState { call, state, .. } = e.kind {
                    match state.as_str() {
                        "connected" => c.reached(call, Wanted::Connected),
                        "idle" => c.reached(call, Wanted::Idle),
                        _ => {}
                    }
                }
            }
        }));
    }

    let concurrency = args.concurrency.unwrap_or(lines).clamp(1, lines);
    let net_lines = Arc::new(net_lines);
    // (make → connected, drop → idle) of each lifecycle, in nanoseconds.
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<(u32, u32)>::new()));
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let progress = (!args.quiet && !args.json).then(|| {
        let done = done.clone();
        Progress::start(args.calls, move || done.load(Ordering::Relaxed))
    });

    let events_before = events.load(Ordering::Relaxed);
    let started = Instant::now();
    let tickets = pacer(args.rate, concurrency);
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let tickets = tickets.clone();
        let (clients, net_lines, latencies) =
            (clients.clone(), net_lines.clone(), latencies.clone());
        let (next, done, failures, first_error) = (
            next.clone(),
            done.clone(),
            failures.clone(),
            first_error.clone(),
        );
        let (total, destination) = (args.calls, args.destination.clone());
        workers.push(tokio::spawn(async move {
            let mine = (lines - w).div_ceil(concurrency);
            let mut turn = 0usize;
            let mut own = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                if !ticket(&tickets).await {
                    break;
                }
                let line = &net_lines[w + (turn % mine) * concurrency];
                turn += 1;
                let c = &clients[line.client];
                match lifecycle(c, &line.line_handle, &destination, &mut own).await {
                    Ok(()) => {}
                    Err(e) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .get_or_insert(e);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            latencies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(own);
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let events_in_run = events.load(Ordering::Relaxed) - events_before;
    if let Some(p) = progress {
        p.finish();
    }
    let completed = done.load(Ordering::Relaxed);
    let failed = failures.load(Ordering::Relaxed);
    let streams = streaming.load(Ordering::Relaxed);

    // Leak check: everyone logs off; the service must track nothing.
    for c in &clients {
        let _ = c.client.logoff().await;
    }
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
    }
    let left = leftovers(&service).await?;
    // With records on, wait for the store to take the queue, then count: every lifecycle is one
    // record (one engine call leg), none may be lost.
    let mut records = None;
    if args.cdr && args.url.is_none() {
        let mut counts = (0.0, 0.0);
        for _ in 0..1000 {
            let text = service.metrics().await.map_err(|e| e.to_string())?;
            counts = (
                metric(&text, "tapir_cdr_written_total"),
                metric(&text, "tapir_cdr_lost_total"),
            );
            if metric(&text, "tapir_cdr_queue_depth") == 0.0
                && counts.0 + counts.1 >= completed as f64
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        records = Some((counts.0 as u64, counts.1 as u64));
    }
    let records_ok = records.is_none_or(|(written, lost)| lost == 0 && written >= completed);
    let clean = failed == 0 && left.values().all(|v| *v == 0.0) && records_ok;
    if let Some(server) = server {
        let _ = server.stop().await;
    }

    let pairs = std::mem::take(
        &mut *latencies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let mut makes: Vec<u32> = pairs.iter().map(|p| p.0).collect();
    let mut drops: Vec<u32> = pairs.iter().map(|p| p.1).collect();
    let mut both: Vec<u32> = makes.iter().chain(&drops).copied().collect();
    let latency = Latency::of(&mut both);
    let (make_latency, drop_latency) = (Latency::of(&mut makes), Latency::of(&mut drops));
    let rate = completed as f64 / elapsed;
    let commands = completed as f64 * 3.0 / elapsed;
    let first_error = first_error
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if args.json {
        let summary = serde_json::json!({
            "mode": "network",
            "url": url,
            "self_hosted": args.url.is_none(),
            "lines": lines,
            "clients": client_count,
            "commands_over": if args.ws_commands { "websocket" } else { "http" },
            "streams_receiving": streams,
            "concurrency": concurrency,
            "target_rate": args.rate,
            "lifecycles": completed,
            "failed": failed,
            "first_error": first_error,
            "seconds": elapsed,
            "lifecycles_per_sec": rate,
            "commands_per_sec": commands,
            "events_received": events_in_run,
            "events_per_sec": events_in_run as f64 / elapsed,
            "latency_us": latency.json(),
            "make_to_connected_us": make_latency.json(),
            "drop_to_idle_us": drop_latency.json(),
            "leak_check": { "clean": clean, "left": left },
            "cdr_written": records.map(|r| r.0),
            "cdr_lost": records.map(|r| r.1),
        });
        println!("{summary:#}");
    } else {
        let over = if args.ws_commands {
            "WebSocket"
        } else {
            "HTTP"
        };
        println!(
            "network ({url}): {completed} lifecycles in {elapsed:.2} s: {rate:.0}/s, {commands:.0} commands/s over {over} ({failed} failed), {lines} lines, {client_count} clients ({streams} streams received events), concurrency {concurrency}"
        );
        if let Some(e) = &first_error {
            println!("first failure: {e}");
        }
        println!(
            "events received over WebSocket: {events_in_run} ({:.0}/s)",
            events_in_run as f64 / elapsed
        );
        println!("command → event latency over WebSocket: {latency}");
        println!("  make → connected: {make_latency}");
        println!("  drop → idle: {drop_latency}");
        if let Some((written, lost)) = records {
            println!("call detail records: {written} written, {lost} lost");
        }
        if clean {
            println!("leak check: clean (the service tracks no calls, call handles or sessions)");
        } else {
            println!(
                "leak check: FAILED: {left:?}, failed lifecycles {failed}, records (written, lost) {records:?}"
            );
        }
    }
    Ok(clean)
}

/// make → connected event → drop → idle event → deallocate; the two latencies in nanoseconds into
/// `out`.
async fn lifecycle(
    c: &NetClient,
    line_handle: &str,
    destination: &str,
    out: &mut Vec<(u32, u32)>,
) -> Result<(), String> {
    let since = |t: Instant| t.elapsed().as_nanos().min(u32::MAX as u128) as u32;
    let t0 = Instant::now();
    let call = c
        .client
        .make_call(line_handle, destination)
        .await
        .map_err(|e| format!("make: {e}"))?
        .call;
    c.wait(&call, Wanted::Connected).await?;
    let made = since(t0);
    let t1 = Instant::now();
    c.client
        .drop_call(&call)
        .await
        .map_err(|e| format!("drop: {e}"))?;
    c.wait(&call, Wanted::Idle).await?;
    out.push((made, since(t1)));
    c.client
        .deallocate(&call)
        .await
        .map_err(|e| format!("deallocate: {e}"))
}
