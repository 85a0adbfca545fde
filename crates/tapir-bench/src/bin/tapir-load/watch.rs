//! Watch mode (`--net --url URL --watch`): one application monitoring every line of a running
//! tapird while something else — a SIP load generator, phones, another `tapir-load` — places the
//! calls.
//!
//! The watcher logs on, opens every line it may use with the monitor privilege, follows its event
//! stream and deallocates each call's handle once the call is idle, as a monitoring application
//! must. It stops when `--calls` calls have gone idle, or when no event has arrived for
//! `--watch-quiet-secs` after the first. It reports what it saw and whether anything was lost: the
//! run fails (exit 1) on fewer idle calls than asked for, a resync or an `events_lost` event (the
//! service told a slow consumer it fell behind), a failed deallocation, or a service that still
//! tracks calls, call handles or sessions after the watcher logged off.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tapir_api::{EventKind, LogonRequest};
use tapir_client::{Service, StreamItem};

use crate::Args;
use crate::net::leftovers;

/// What the watcher counted.
#[derive(Default)]
struct Seen {
    new_calls: u64,
    connected: u64,
    idle: u64,
    events: u64,
    gaps: u64,
}

/// Runs watch mode; `Ok(true)` when every call asked for was seen through to idle and nothing was
/// lost or left behind.
pub(crate) async fn run(args: Args) -> Result<bool, String> {
    let url = args.url.clone().ok_or("--watch needs --url")?;
    let service = Service::new(&url).map_err(|e| e.to_string())?;
    let request = LogonRequest {
        application: args.application.clone(),
        secret: args.secret.clone(),
        ..LogonRequest::default()
    };
    let mut client = service.logon(&request).await.map_err(|e| e.to_string())?;
    client.connect_commands().await.map_err(|e| e.to_string())?;
    let client = Arc::new(client);
    let lines = client.lines().await.map_err(|e| e.to_string())?;
    for line in &lines {
        client
            .open_line(line.id, "monitor")
            .await
            .map_err(|e| format!("cannot monitor line {}: {e}", line.id))?;
    }
    if !args.quiet {
        eprintln!("watching {} lines of {url}", lines.len());
    }

    let quiet_for = Duration::from_secs(args.watch_quiet_secs.max(1));
    let failed_deallocations = Arc::new(AtomicU64::new(0));
    let mut deallocations = tokio::task::JoinSet::new();
    let mut seen = Seen::default();
    let mut stream = client.events(0);
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    while seen.idle < args.calls {
        // Before the first call there is no time-out: the watcher waits for the load to start.
        let next = match first {
            None => stream.next().await,
            Some(_) => match tokio::time::timeout(quiet_for, stream.next()).await {
                Ok(item) => item,
                Err(_) => break,
            },
        };
        let Some(item) = next else { break };
        let event = match item {
            Ok(StreamItem::Event(e)) => e,
            Ok(StreamItem::Resync(_)) => {
                seen.gaps += 1;
                continue;
            }
            Err(e) => return Err(format!("event stream: {e}")),
        };
        seen.events += 1;
        last = Instant::now();
        match event.kind {
            EventKind::NewCall { .. } => {
                seen.new_calls += 1;
                first.get_or_insert(last);
            }
            EventKind::CallState { call, state, .. } => match state.as_str() {
                "connected" => seen.connected += 1,
                "idle" => {
                    seen.idle += 1;
                    let (client, failed) = (client.clone(), failed_deallocations.clone());
                    deallocations.spawn(async move {
                        if client.deallocate(&call).await.is_err() {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    // Reap finished deallocations as we go, so the set stays small.
                    while deallocations.try_join_next().is_some() {}
                }
                _ => {}
            },
            EventKind::EventsLost { .. } => seen.gaps += 1,
            _ => {}
        }
    }
    while deallocations.join_next().await.is_some() {}
    drop(stream);
    let elapsed = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    client.logoff().await.map_err(|e| e.to_string())?;
    let left = leftovers(&service).await?;

    let failed = failed_deallocations.load(Ordering::Relaxed);
    let clean = left.values().all(|v| *v == 0.0);
    let ok = seen.idle >= args.calls && seen.gaps == 0 && failed == 0 && clean;
    let rate = if elapsed > 0.0 {
        seen.idle as f64 / elapsed
    } else {
        0.0
    };
    if args.json {
        let summary = serde_json::json!({
            "mode": "watch",
            "url": url,
            "lines": lines.len(),
            "calls_wanted": args.calls,
            "new_calls": seen.new_calls,
            "connected": seen.connected,
            "idle": seen.idle,
            "events": seen.events,
            "gaps": seen.gaps,
            "failed_deallocations": failed,
            "seconds": elapsed,
            "calls_per_sec": rate,
            "leak_check": { "clean": clean, "left": left },
            "ok": ok,
        });
        println!("{summary:#}");
    } else {
        println!(
            "watched {} lines of {url}: {} calls new, {} connected, {} idle of {} wanted in {elapsed:.2} s ({rate:.0}/s); {} events, {} gaps, {failed} failed deallocations",
            lines.len(),
            seen.new_calls,
            seen.connected,
            seen.idle,
            args.calls,
            seen.events,
            seen.gaps,
        );
        if clean {
            println!("leak check: clean (the service tracks no calls, call handles or sessions)");
        } else {
            println!("leak check: FAILED: {left:?}");
        }
    }
    Ok(ok)
}
