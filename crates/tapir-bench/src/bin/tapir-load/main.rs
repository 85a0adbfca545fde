//! `tapir-load`: drives the engine in-process with the simulated PBX and reports what it sustains.
//!
//! Lines are extensions of one simulated PBX; each line is opened by an owner application and by a
//! monitor application. Each call goes make → (ringback) → connected → [hold → unhold] → drop → idle →
//! deallocate, made by the owner to an outside number that answers at once; the monitor deallocates its
//! handle when the call is idle. Reported: complete lifecycles per second; operation-to-event latency
//! (from an operation being issued by the owner to the monitor's event for it: make → new call, drop →
//! idle) as percentiles; events delivered per second; peak RSS and, with `--hold N`, the memory per
//! established call (RSS and live heap, measured before the run on a fresh heap). At the end every session logs off and the engine and the switch must hold nothing (exit 1
//! otherwise). `docs/benchmarks.md` has the figures and the commands.
//!
//! With `--net` the same lifecycles go through `tapir-client` to a tapird over HTTP and WebSocket (see
//! [`net`]); with `--net --url URL --watch` it places no calls and monitors a running tapird's lines
//! while another tool places them (see [`watch`]).

mod net;
mod watch;

use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tapir::core::state::CallStateKind;
use tapir::{CallHandle, Engine, Event, LineHandle, OpenOptions, Session};
use tapir_simswitch::{FarEnd, SimSwitch};
use tokio::sync::oneshot;

/// The outside number every call goes to: it answers at once.
pub(crate) const DESTINATION: &str = "5550000";

/// Drive the tapir engine with the simulated PBX and report lifecycles/s, latency and memory.
#[derive(Parser, Debug, Clone)]
#[command(name = "tapir-load", version, about)]
pub(crate) struct Args {
    /// Owner applications (and as many monitor applications); lines are shared out among them.
    #[arg(long, default_value_t = 4)]
    apps: usize,
    /// Lines (extensions), each opened by one owner and one monitor.
    #[arg(long, default_value_t = 1000)]
    lines: usize,
    /// Complete call lifecycles to run.
    #[arg(long, default_value_t = 100_000)]
    calls: u64,
    /// Calls in progress at once (at most one per line; default: one per line).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Calls started per second; 0: as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Put each call on hold and take it off again before dropping it.
    #[arg(long)]
    hold_unhold: bool,
    /// Before the run, establish this many calls at once (one per line) and report the memory per call.
    #[arg(long, default_value_t = 0)]
    hold: usize,
    /// With `--hold`: exit as soon as the memory is measured, the calls still held — for a heap
    /// profiler, whose "live at exit" figures are then the held calls (see docs/benchmarks.md).
    #[arg(long, requires = "hold")]
    exit_holding: bool,
    /// Simulated PBXs the lines are shared out among (each one provider of the engine, with its own
    /// lock); one by default.
    #[arg(long, default_value_t = 1)]
    switches: usize,
    /// Record a call detail record for every call leg, into the embedded SQLite store (in memory), as
    /// tapird does by default; reports records written, and fails the run if any was lost. With
    /// `--net`, the tapird this starts (or `--print-config` prints) records them; over `--url`, the
    /// service's own setting decides (and is not checked).
    #[arg(long)]
    cdr: bool,
    /// Worker threads of the runtime (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Network mode: drive a tapird through the client (HTTP commands, WebSocket events) instead of
    /// the engine in-process. Without `--url`, one is started in this process on loopback.
    #[arg(long)]
    net: bool,
    /// Network mode: the tapird to drive (`http://HOST:PORT`); its calls go to `--destination`.
    #[arg(long, requires = "net")]
    url: Option<String>,
    /// Network mode: the application to log on as (with `--url`).
    #[arg(long, default_value = "load", requires = "url")]
    application: String,
    /// Network mode: the application's secret (with `--url`).
    #[arg(long, default_value = "load-secret", requires = "url")]
    secret: String,
    /// Network mode: the number every call goes to; it should answer at once.
    #[arg(long, default_value = DESTINATION)]
    destination: String,
    /// Network mode: log-ons, each with its own WebSocket event stream; lines are shared among them.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Network mode: send each client's commands over its command WebSocket (`/v1/commands`) instead
    /// of an HTTP request each.
    #[arg(long, requires = "net")]
    ws_commands: bool,
    /// Network mode with `--url`: place no calls; monitor every line the application may use and
    /// deallocate each call's handle once it is idle, until `--calls` calls have gone idle (see
    /// [`watch`]). For load placed by something else, such as sipp against a SIP service.
    #[arg(long, requires = "url")]
    watch: bool,
    /// Watch mode: stop after this many seconds without an event (once calls have started).
    #[arg(long, default_value_t = 10, requires = "watch")]
    watch_quiet_secs: u64,
    /// Print the configuration `--net` gives the tapird it starts (for `--lines`, listening on
    /// 127.0.0.1:7979), to run that tapird as a process of its own, and exit.
    #[arg(long)]
    print_config: bool,
    /// A JSON summary instead of text.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.print_config {
        print!(
            "{}",
            net::config(args.lines.max(1), "127.0.0.1:7979", args.cdr)
        );
        return std::process::ExitCode::SUCCESS;
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = args.threads {
        rt.worker_threads(t.max(1));
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tapir-load: cannot start the runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let outcome = if args.watch {
        rt.block_on(watch::run(args))
    } else if args.net {
        rt.block_on(net::run(args))
    } else {
        rt.block_on(run(args))
    };
    match outcome {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("tapir-load: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The allocator tapird uses (mimalloc), counting the bytes live on the heap while [`COUNTING`] is set
/// (the memory phase only: counting is one relaxed load per allocation otherwise).
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static HEAP_DELTA: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to `MiMalloc` unchanged; the counters do not touch the memory.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            HEAP_DELTA.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is `MiMalloc::alloc`'s.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            HEAP_DELTA.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            HEAP_DELTA.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        // SAFETY: as above.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Resident set size now and at its peak, in bytes, from `/proc/self/status` (0 elsewhere).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// What the owner's event reader knows about "connected" for a handle the worker may not wait on yet.
enum Slot {
    Reached,
    Waiting(oneshot::Sender<()>),
}

/// One line: its owner's and monitor's opens, and when the last operations on it were issued.
struct LineSlot {
    owner: Session,
    owner_line: LineHandle,
    made_at: AtomicU64,
    dropped_at: AtomicU64,
    /// The call `--hold` established on the line (kept here, in memory the generator had before the
    /// measurement, so that its bookkeeping is not counted as the calls').
    held: std::sync::Mutex<Option<CallHandle>>,
}

struct Shared {
    start: Instant,
    lines: Vec<LineSlot>,
    /// Per owner session: calls that reached connected, or a worker waiting for that.
    connected: Vec<Arc<DashMap<CallHandle, Slot>>>,
    events: AtomicU64,
    /// Events the engine had to discard because a reader fell behind (its queue was full).
    lost: AtomicU64,
    done: AtomicU64,
    /// Set by the watchdog once events were lost or nothing moved for [`STALL`]: from then on nobody
    /// waits for a `connected` event, so a discarded one cannot hang the run.
    stalled: AtomicBool,
    /// The `--hold` phase runs: the readers keep no per-call bookkeeping (no latency samples), so the
    /// memory measured per call is the engine's and the switch's, not the generator's.
    holding: AtomicBool,
}

/// Calls being set up at once while `--hold` establishes its calls.
const HOLD_IN_FLIGHT: usize = 10_000;

/// How long the run may make no progress at all before the watchdog gives up waiting.
const STALL: Duration = Duration::from_secs(60);

/// Watches the run once a second. When events were lost or nothing moved for [`STALL`], it marks the run
/// stalled and, from then on, every second, releases whoever waits for a `connected` event (they fail).
/// One timer for the whole run instead of one per call.
fn watchdog(shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let (mut last, mut since) = ((u64::MAX, u64::MAX), Instant::now());
        loop {
            tick.tick().await;
            let now = (
                shared.done.load(Ordering::Relaxed),
                shared.events.load(Ordering::Relaxed),
            );
            if now != last {
                (last, since) = (now, Instant::now());
            }
            if shared.lost.load(Ordering::Relaxed) > 0 || since.elapsed() >= STALL {
                shared.stalled.store(true, Ordering::Relaxed);
            }
            if shared.stalled.load(Ordering::Relaxed) {
                for waiting in &shared.connected {
                    waiting.retain(|_, slot| matches!(slot, Slot::Reached));
                }
            }
        }
    })
}

impl Shared {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// Reads an owner session's events: marks calls connected, counts events.
fn owner_reader(
    session: Session,
    connected: Arc<DashMap<CallHandle, Slot>>,
    shared: Arc<Shared>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(e) = session.next_event().await {
            shared.events.fetch_add(1, Ordering::Relaxed);
            if let Event::EventsLost { first, last } = e.event {
                shared.lost.fetch_add(last - first + 1, Ordering::Relaxed);
            }
            if let Event::CallState { call, state, .. } = e.event
                && state.kind() == CallStateKind::Connected
            {
                match connected.entry(call) {
                    Entry::Occupied(o) => {
                        if let Slot::Waiting(_) = o.get() {
                            if let Slot::Waiting(tx) = o.remove() {
                                let _ = tx.send(());
                            }
                        }
                    }
                    Entry::Vacant(v) => {
                        v.insert(Slot::Reached);
                    }
                }
            }
        }
    })
}

/// Reads a monitor session's events: latency of make (→ new call) and drop (→ idle), deallocates.
fn monitor_reader(
    session: Session,
    lines: HashMap<LineHandle, usize>,
    shared: Arc<Shared>,
) -> tokio::task::JoinHandle<Vec<u32>> {
    tokio::spawn(async move {
        let mut latencies = Vec::new();
        let mut calls: HashMap<CallHandle, usize> = HashMap::new();
        while let Some(e) = session.next_event().await {
            shared.events.fetch_add(1, Ordering::Relaxed);
            match e.event {
                Event::EventsLost { first, last } => {
                    shared.lost.fetch_add(last - first + 1, Ordering::Relaxed);
                }
                Event::NewCall { call, line, .. } if !shared.holding.load(Ordering::Relaxed) => {
                    if let Some(&i) = lines.get(&line) {
                        calls.insert(call, i);
                        let t0 = shared.lines[i].made_at.load(Ordering::Relaxed);
                        latencies.push(shared.now().saturating_sub(t0).min(u32::MAX as u64) as u32);
                    }
                }
                Event::CallState { call, state, .. } if state.kind() == CallStateKind::Idle => {
                    if let Some(i) = calls.remove(&call) {
                        let t0 = shared.lines[i].dropped_at.load(Ordering::Relaxed);
                        latencies.push(shared.now().saturating_sub(t0).min(u32::MAX as u64) as u32);
                    }
                    let _ = session.deallocate(call);
                }
                _ => {}
            }
        }
        latencies
    })
}

/// Makes a call on line `i` and waits until it is connected.
async fn establish(shared: &Shared, i: usize, owners: usize) -> Result<CallHandle, tapir::Error> {
    let line = &shared.lines[i];
    line.made_at.store(shared.now(), Ordering::Relaxed);
    let call = line
        .owner
        .make_call(line.owner_line, Some(DESTINATION))
        .await?;
    let connected = &shared.connected[i % owners];
    let wait = match connected.entry(call) {
        Entry::Occupied(o) => {
            o.remove();
            None
        }
        Entry::Vacant(v) => {
            let (tx, rx) = oneshot::channel();
            v.insert(Slot::Waiting(tx));
            Some(rx)
        }
    };
    // A connected event that was discarded (a reader too far behind) must not hang the run: the
    // watchdog drops the sender, and this call fails.
    if let Some(rx) = wait
        && rx.await.is_err()
    {
        return Err(tapir::Error::SessionEnded);
    }
    Ok(call)
}

/// Drops and deallocates an established call on line `i`.
async fn release(shared: &Shared, i: usize, call: CallHandle) -> Result<(), tapir::Error> {
    let line = &shared.lines[i];
    line.dropped_at.store(shared.now(), Ordering::Relaxed);
    line.owner.drop_call(call).await?;
    line.owner.deallocate(call)
}

async fn lifecycle(
    shared: &Shared,
    i: usize,
    owners: usize,
    hold: bool,
) -> Result<(), tapir::Error> {
    let call = establish(shared, i, owners).await?;
    if hold {
        let owner = &shared.lines[i].owner;
        owner.hold(call).await?;
        owner.unhold(call).await?;
    }
    release(shared, i, call).await
}

/// A progress bar over the calls, updated from `done` ten times a second.
/// Tickets that pace calls at `rate` a second (one per call, taken before it starts); `None` for
/// `rate` 0: as fast as the workers go.
pub(crate) type Tickets = Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<()>>>;

pub(crate) fn pacer(rate: u64, concurrency: usize) -> Option<Tickets> {
    (rate > 0).then(|| {
        let (tx, rx) = tokio::sync::mpsc::channel::<()>(concurrency.max(1));
        tokio::spawn(async move {
            let start = Instant::now();
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            loop {
                tick.tick().await;
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                while sent < due {
                    if tx.send(()).await.is_err() {
                        return;
                    }
                    sent += 1;
                }
            }
        });
        Arc::new(tokio::sync::Mutex::new(rx))
    })
}

/// Waits for the next ticket, if calls are paced; `false` once no more will come.
pub(crate) async fn ticket(tickets: &Option<Tickets>) -> bool {
    match tickets {
        Some(t) => t.lock().await.recv().await.is_some(),
        None => true,
    }
}

pub(crate) struct Progress {
    bar: indicatif::ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub(crate) fn start(total: u64, done: impl Fn() -> u64 + Send + 'static) -> Self {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} calls  {per_sec}  eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let shown = bar.clone();
        let ticker = tokio::spawn(async move {
            loop {
                shown.set_position(done());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { bar, ticker }
    }

    /// Stops updating and clears the bar.
    pub(crate) fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

/// Memory per established call, from the `--hold` phase.
struct PerCall {
    held: usize,
    rss: f64,
    heap: f64,
    engine_calls: usize,
}

/// Latency percentiles of nanosecond samples, in µs; both modes report them the same way.
pub(crate) struct Latency {
    samples: usize,
    p50: f64,
    p99: f64,
    p99_9: f64,
    max: f64,
}

impl Latency {
    /// Sorts `samples` (nanoseconds) and takes the percentiles.
    pub(crate) fn of(samples: &mut [u32]) -> Self {
        samples.sort_unstable();
        let at = |p: f64| match samples.len() {
            0 => 0.0,
            n => {
                let rank = ((p / 100.0) * (n - 1) as f64).round() as usize;
                samples[rank.min(n - 1)] as f64 / 1000.0
            }
        };
        Self {
            samples: samples.len(),
            p50: at(50.0),
            p99: at(99.0),
            p99_9: at(99.9),
            max: at(100.0),
        }
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "samples": self.samples,
            "p50": self.p50,
            "p99": self.p99,
            "p99_9": self.p99_9,
            "max": self.max,
        })
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs ({} samples)",
            self.p50, self.p99, self.p99_9, self.samples
        )
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let owners = args.apps.max(1);
    let lines = args.lines.max(1);
    if args.hold > lines {
        return Err(format!(
            "--hold {} needs as many lines (--lines {lines})",
            args.hold
        ));
    }
    let concurrency = args.concurrency.unwrap_or(lines).clamp(1, lines);

    let switch_count = args.switches.clamp(1, lines);
    let mut switches = Vec::new();
    let mut engine = Engine::builder().event_queue_capacity(1 << 20);
    for s in 0..switch_count {
        let mut builder = SimSwitch::builder().far_end(DESTINATION, FarEnd::answers_after_rings(0));
        for i in (s..lines).step_by(switch_count) {
            builder = builder.extension(format!("{}", 100_000 + i), format!("Line {i}"));
        }
        let switch = builder.build().map_err(|e| e.to_string())?;
        engine = engine.provider(switch.clone());
        switches.push(switch);
    }
    let recorder = if args.cdr {
        let store = tapir_cdr::SqliteStore::open(None).map_err(|e| e.to_string())?;
        let recorder =
            tapir_cdr::Recorder::start(Arc::new(store), tapir_cdr::RecorderOptions::default());
        engine = engine.cdr_sink(Arc::new(recorder.clone()));
        Some(recorder)
    } else {
        None
    };
    let engine = engine.build().await.map_err(|e| e.to_string())?;
    let live_legs = || switches.iter().map(|s| s.live_legs()).sum::<usize>();
    let infos = engine.lines();

    let mut owner_sessions = Vec::new();
    let mut monitor_sessions = Vec::new();
    for a in 0..owners {
        owner_sessions.push(
            engine
                .logon(&format!("owner-{a}"))
                .await
                .map_err(|e| e.to_string())?,
        );
        monitor_sessions.push(
            engine
                .logon(&format!("monitor-{a}"))
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let mut slots = Vec::with_capacity(lines);
    let mut monitor_lines: Vec<HashMap<LineHandle, usize>> = vec![HashMap::new(); owners];
    for (i, info) in infos.iter().enumerate().take(lines) {
        let owner = owner_sessions[i % owners].clone();
        let owner_line = owner
            .open_line(info.id, OpenOptions::owner())
            .await
            .map_err(|e| e.to_string())?;
        let monitor_line = monitor_sessions[i % owners]
            .open_line(info.id, OpenOptions::monitor())
            .await
            .map_err(|e| e.to_string())?;
        monitor_lines[i % owners].insert(monitor_line, i);
        slots.push(LineSlot {
            owner,
            owner_line,
            made_at: AtomicU64::new(0),
            dropped_at: AtomicU64::new(0),
            held: std::sync::Mutex::new(None),
        });
    }
    let in_flight = HOLD_IN_FLIGHT.max(concurrency).min(lines);
    let shared = Arc::new(Shared {
        start: Instant::now(),
        lines: slots,
        // Entries live only while a call is being set up: sized for what is in flight, not for every
        // line (a table sized for a million lines has its pages touched by the `--hold` phase's
        // comings and goings, and that memory would be counted as the calls').
        connected: (0..owners)
            .map(|_| Arc::new(DashMap::with_capacity(in_flight.div_ceil(owners))))
            .collect(),
        events: AtomicU64::new(0),
        lost: AtomicU64::new(0),
        done: AtomicU64::new(0),
        stalled: AtomicBool::new(false),
        holding: AtomicBool::new(false),
    });
    let watchdog = watchdog(shared.clone());
    let owner_readers: Vec<_> = owner_sessions
        .iter()
        .enumerate()
        .map(|(a, s)| owner_reader(s.clone(), shared.connected[a].clone(), shared.clone()))
        .collect();
    let monitor_readers: Vec<_> = monitor_sessions
        .iter()
        .zip(monitor_lines)
        .map(|(s, l)| monitor_reader(s.clone(), l, shared.clone()))
        .collect();
    let (rss_idle, _) = rss();

    let tickets = pacer(args.rate, concurrency);

    let progress = (!args.quiet && !args.json).then(|| {
        let shared = shared.clone();
        Progress::start(args.calls, move || shared.done.load(Ordering::Relaxed))
    });

    // Memory per established call, measured first, on a heap the run has not grown yet.
    let mut per_call = None;
    if args.hold > 0 {
        let mut held = 0;
        shared.holding.store(true, Ordering::Relaxed);
        let before = rss().0;
        HEAP_DELTA.store(0, Ordering::Relaxed);
        COUNTING.store(true, Ordering::Relaxed);
        // At most HOLD_IN_FLIGHT being set up at once: the generator's own tasks and the events in
        // flight are transient, and a million of them at once would leave the allocator holding
        // memory that is not the calls'.
        let mut tasks = tokio::task::JoinSet::new();
        let mut next = 0;
        while next < args.hold || !tasks.is_empty() {
            while next < args.hold && tasks.len() < HOLD_IN_FLIGHT {
                let (shared, i) = (shared.clone(), next);
                next += 1;
                tasks.spawn(async move { (i, establish(&shared, i, owners).await) });
            }
            if let Some(Ok((i, Ok(call)))) = tasks.join_next().await {
                *shared.lines[i]
                    .held
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(call);
                held += 1;
            }
        }
        // Measure once every reader has taken its events: queued events are not call state.
        for _ in 0..1000 {
            if engine.stats().queued_events == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let heap = HEAP_DELTA.load(Ordering::Relaxed);
        COUNTING.store(false, Ordering::Relaxed);
        let after = rss().0;
        let stats = engine.stats();
        let n = held.max(1) as f64;
        per_call = Some(PerCall {
            held,
            rss: after.saturating_sub(before) as f64 / n,
            heap: heap.max(0) as f64 / n,
            engine_calls: stats.calls,
        });
        if args.exit_holding {
            if let Some(p) = &per_call {
                println!(
                    "{} calls held at once: {:.0} bytes of RSS, {:.0} bytes of live heap per call; exiting with them held",
                    p.held, p.rss, p.heap
                );
            }
            std::process::exit(0);
        }
        shared.holding.store(false, Ordering::Relaxed);
        for (i, line) in shared.lines.iter().enumerate().take(args.hold) {
            let call = line
                .held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(call) = call {
                let _ = release(&shared, i, call).await;
            }
        }
    }

    let started = Instant::now();
    let events_before = shared.events.load(Ordering::Relaxed);
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let shared = shared.clone();
        let next = next.clone();
        let failures = failures.clone();
        let tickets = tickets.clone();
        let (total, hold) = (args.calls, args.hold_unhold);
        workers.push(tokio::spawn(async move {
            // Worker w uses lines w, w + concurrency, …, in turn.
            let mut turn = 0usize;
            while next.fetch_add(1, Ordering::Relaxed) < total {
                if !ticket(&tickets).await {
                    break;
                }
                let mine = (lines - w).div_ceil(concurrency);
                let i = w + (turn % mine) * concurrency;
                turn += 1;
                if lifecycle(&shared, i, owners, hold).await.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                shared.done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let elapsed = started.elapsed();
    let events_in_run = shared.events.load(Ordering::Relaxed) - events_before;
    if let Some(p) = progress {
        p.finish();
    }
    watchdog.abort();
    let completed = shared.done.load(Ordering::Relaxed);
    let failed = failures.load(Ordering::Relaxed);

    // Leak check: everything released, every session gone.
    for s in owner_sessions.into_iter().chain(monitor_sessions) {
        s.logoff().await;
    }
    for r in owner_readers {
        let _ = r.await;
    }
    let mut latencies: Vec<u32> = Vec::new();
    for r in monitor_readers {
        if let Ok(l) = r.await {
            latencies.extend(l);
        }
    }
    let mut settled = false;
    for _ in 0..500 {
        if engine.stats().holds_nothing() && live_legs() == 0 {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lost = shared.lost.load(Ordering::Relaxed);
    let leftover = engine.stats();
    let legs = live_legs();
    engine.shutdown().await;
    let records = match &recorder {
        Some(r) => {
            let _ = r.flush().await;
            Some(r.stats())
        }
        None => None,
    };
    let records_lost = records.map_or(0, |r| r.lost);
    let clean = settled && failed == 0 && lost == 0 && records_lost == 0;
    let latency = Latency::of(&mut latencies);
    let (_, peak) = rss();

    let secs = elapsed.as_secs_f64();
    let rate = completed as f64 / secs;
    let summary = serde_json::json!({
        "lines": lines,
        "switches": switch_count,
        "apps": owners,
        "concurrency": concurrency,
        "target_rate": args.rate,
        "hold_unhold": args.hold_unhold,
        "lifecycles": completed,
        "failed": failed,
        "seconds": secs,
        "lifecycles_per_sec": rate,
        "events_delivered": events_in_run,
        "events_per_sec": events_in_run as f64 / secs,
        "latency_us": latency.json(),
        "rss_idle_bytes": rss_idle,
        "rss_peak_bytes": peak,
        "held_calls": per_call.as_ref().map(|p| p.held),
        "held_engine_calls": per_call.as_ref().map(|p| p.engine_calls),
        "rss_per_held_call_bytes": per_call.as_ref().map(|p| p.rss),
        "heap_per_held_call_bytes": per_call.as_ref().map(|p| p.heap),
        "events_lost": lost,
        "cdr_written": records.map(|r| r.written),
        "cdr_lost": records.map(|r| r.lost),
        "leak_check": {
            "clean": clean,
            "engine": format!("{leftover:?}"),
            "switch_legs": legs,
        },
    });
    if args.json {
        println!("{summary:#}");
    } else {
        println!(
            "{completed} lifecycles in {secs:.2} s: {rate:.0}/s ({failed} failed), {} lines, {owners} owner + {owners} monitor apps, concurrency {concurrency}",
            lines
        );
        println!(
            "events delivered: {events_in_run} ({:.0}/s)",
            events_in_run as f64 / secs
        );
        println!("operation → monitor event latency: {latency}");
        println!(
            "RSS: {:.1} MiB with lines open, peak {:.1} MiB",
            rss_idle as f64 / 1048576.0,
            peak as f64 / 1048576.0
        );
        if let Some(p) = &per_call {
            println!(
                "{} calls held at once ({} engine call legs): {:.0} bytes of RSS, {:.0} bytes of live heap per call",
                p.held, p.engine_calls, p.rss, p.heap
            );
        }
        if let Some(r) = records {
            println!(
                "call detail records: {} written, {} lost (the recorder's queue was full or the store refused)",
                r.written, r.lost
            );
        }
        if lost > 0 {
            println!(
                "events lost: {lost} (a reader fell behind its queue; use more --apps for this many calls)"
            );
        }
        if clean {
            println!("leak check: clean (no calls, handles or sessions left; no switch legs)");
        } else {
            println!(
                "leak check: FAILED: engine {leftover:?}, switch legs {legs}, failed lifecycles {failed}, events lost {lost}, call detail records lost {records_lost}"
            );
        }
    }
    Ok(clean)
}
