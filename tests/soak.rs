//! The seeded soak: applications doing everything at random — on their own calls, and on handles
//! that are stale, another application's or made up — against the simulated PBX behind the fault
//! injector, on the paused clock, with the contracts checked after every step.
//!
//! After every step:
//! - an operation a call did not list was refused by the engine (it never reached the provider);
//!   one it listed was not refused for a reason the features could have shown (never, not yours, or
//!   not now while the call stayed in the state it was listed in);
//! - a handle the application does not hold (stale, another's, made up) is `InvalidCallHandle`
//!   and changes nothing the engine holds;
//! - every stream's sequence numbers are gap-free (losses announced), no event names a handle
//!   before its `NewCall`, no handle is given twice, and none is named after it was deallocated.
//!
//! At the end, with the injector stopped, every application hangs up and logs off, and nothing may
//! be held: sessions, calls, handles, requests, the switch's legs.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tapir::core::gate::CallOperation as Op;
use tapir::core::params::{CompletionMode, DigitMode, ParkMode, PickupTarget, TransferMode};
use tapir::{CallHandle, Engine, Error, Event, LineHandle, OpenOptions, Session, SessionEvent};
use tapir_provider::Intercept;
use tapir_provider::faults::{Fault, FaultPlan, Faults, Injected, Nonsense, faulty};
use tapir_simswitch::{CallerId, RingIn, SimSwitch};

use crate::{numbers, office};

/// How a soak runs.
#[derive(Clone, Copy, Debug)]
pub struct SoakOptions {
    /// The seed of every choice, and of the injector's.
    pub seed: u64,
    /// Steps to take.
    pub steps: usize,
    /// Per thousand provider calls, a fault (panic, hang, hang after the work, delay, failure).
    pub faults_per_mille: u32,
    /// Per thousand provider reports, a nonsense one after it.
    pub nonsense_per_mille: u32,
}

impl SoakOptions {
    /// `steps` steps from `seed`, with 2 % faults and 2 % nonsense.
    pub fn seeded(seed: u64, steps: usize) -> Self {
        Self {
            seed,
            steps,
            faults_per_mille: 20,
            nonsense_per_mille: 20,
        }
    }
}

/// What a soak did.
#[derive(Clone, Debug, Default)]
pub struct SoakReport {
    /// Steps taken.
    pub steps: usize,
    /// Operations on the applications' own calls, by name: (carried out, refused as not listed,
    /// failed by the provider or the world).
    pub ops: BTreeMap<&'static str, (u64, u64, u64)>,
    /// Operations on handles the application did not hold, all refused.
    pub foreign: u64,
    /// Events read, all checked.
    pub events: u64,
    /// What the injector did.
    pub injected: Injected,
    /// Provider reports the engine refused.
    pub refused_reports: u64,
    /// Times the provider failed as a whole (and came back).
    pub outages: u64,
}

impl SoakReport {
    /// Adds another soak's counts.
    pub fn merge(&mut self, other: &SoakReport) {
        self.steps += other.steps;
        for (op, (a, b, c)) in &other.ops {
            let mine = self.ops.entry(op).or_default();
            mine.0 += a;
            mine.1 += b;
            mine.2 += c;
        }
        self.foreign += other.foreign;
        self.events += other.events;
        let (i, o) = (&mut self.injected, &other.injected);
        i.panics += o.panics;
        i.hangs += o.hangs;
        i.delays += o.delays;
        i.failures += o.failures;
        i.nonsense += o.nonsense;
        self.refused_reports += other.refused_reports;
        self.outages += other.outages;
    }
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.injected;
        writeln!(
            f,
            "{} steps, {} events checked, {} operations on handles not held (all refused)",
            self.steps, self.events, self.foreign
        )?;
        writeln!(
            f,
            "injected: {} panics, {} hangs, {} delays, {} failures, {} nonsense reports ({} refused), {} outages",
            i.panics, i.hangs, i.delays, i.failures, i.nonsense, self.refused_reports, self.outages
        )?;
        writeln!(
            f,
            "{:<26} {:>8} {:>9} {:>8}",
            "operation", "done", "unlisted", "failed"
        )?;
        for (op, (done, unlisted, failed)) in &self.ops {
            writeln!(f, "{op:<26} {done:>8} {unlisted:>9} {failed:>8}")?;
        }
        Ok(())
    }
}

/// A broken contract: where, and what.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The soak's seed.
    pub seed: u64,
    /// The step.
    pub step: usize,
    /// What.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seed {} step {}: {}", self.seed, self.step, self.what)
    }
}

/// One application's event stream, checked event by event.
#[derive(Default)]
struct Stream {
    next_seq: u64,
    given: HashSet<CallHandle>,
    /// The handles in the order they were given: handle values are random per engine, and the
    /// soak's choices must not depend on them.
    order: Vec<CallHandle>,
    gone: HashSet<CallHandle>,
}

impl Stream {
    fn check(&mut self, e: &SessionEvent) -> Result<(), String> {
        if self.next_seq == 0 {
            self.next_seq = 1;
        }
        if e.seq != self.next_seq {
            return Err(format!(
                "sequence {} where {} was due",
                e.seq, self.next_seq
            ));
        }
        if let Event::EventsLost { last, .. } = e.event {
            self.next_seq = last + 1;
            return Ok(());
        }
        self.next_seq += 1;
        if let Event::NewCall { call, .. } = e.event {
            if !self.given.insert(call) {
                return Err(format!("{call:?} given twice"));
            }
            self.order.push(call);
            return Ok(());
        }
        match e.event.call() {
            Some(call) if !self.given.contains(&call) => {
                Err(format!("{:?} names a handle before its NewCall", e.event))
            }
            Some(call) if self.gone.contains(&call) => {
                Err(format!("{:?} names a deallocated handle", e.event))
            }
            _ => Ok(()),
        }
    }
}

/// One application at one extension (or, for the supervisor, monitoring them all).
struct App {
    name: &'static str,
    session: Session,
    /// Its line opens: (handle, the extension's number).
    lines: Vec<(LineHandle, &'static str)>,
    stream: Stream,
    /// Handles it deallocated.
    stale: Vec<CallHandle>,
}

/// Operations that take a second call of the same application.
const TWO_CALLS: [Op; 3] = [Op::SwapHold, Op::CompleteTransfer, Op::AddToConference];

/// Whether refusing a listed operation with `e` is the features' fault: a refusal they could have
/// shown (never, not yours, not now, no such call). The rest is the world's answer (a busy or
/// unknown number, the park lot full) or the provider's faults.
fn foreseeable(e: &Error) -> bool {
    matches!(
        e,
        Error::OperationUnavailable { .. }
            | Error::NotOwner
            | Error::InvalidCallHandle
            | Error::InvalidCallState { .. }
    )
}

struct Soak {
    options: SoakOptions,
    rng: fastrand::Rng,
    engine: Engine,
    switch: SimSwitch,
    injector: Arc<Intercept<Faults>>,
    apps: Vec<App>,
    orbits: Vec<String>,
    report: SoakReport,
    step: usize,
    /// The provider has failed and is not yet restored.
    down: bool,
}

/// Runs a soak; the first broken contract ends it.
pub async fn soak(options: SoakOptions) -> Result<SoakReport, Violation> {
    let switch = office(&["801", "802", "803"]);
    let plan = FaultPlan::seeded(options.seed)
        .faults(
            options.faults_per_mille,
            &[
                Fault::Panic,
                Fault::Hang,
                Fault::HangAfter,
                Fault::Fail,
                Fault::Delay(Duration::from_secs(2)),
            ],
        )
        .nonsense(options.nonsense_per_mille, &Nonsense::ALL);
    let injector = Arc::new(faulty(Arc::new(switch.clone()), plan));
    quiet_injected_panics();
    // The applications set up with a provider that behaves; the faults start with the first step.
    injector.hook().set_active(false);
    let engine = Engine::builder()
        .provider_arc(injector.clone())
        .provider_deadline(Duration::from_secs(5))
        .build()
        .await
        .map_err(|e| violation(options.seed, 0, format!("the engine did not start: {e}")))?;
    let mut apps = Vec::new();
    for (name, ext) in [
        ("alice", "100"),
        ("bob", "200"),
        ("carol", "300"),
        ("dave", "400"),
    ] {
        apps.push(open_app(&engine, name, &[(ext, OpenOptions::owner())]).await);
    }
    let everything = [
        ("100", OpenOptions::monitor()),
        ("200", OpenOptions::monitor()),
        ("300", OpenOptions::monitor()),
        ("400", OpenOptions::monitor()),
    ];
    apps.push(open_app(&engine, "supervisor", &everything).await);
    injector.hook().set_active(true);
    let mut soak = Soak {
        rng: fastrand::Rng::with_seed(options.seed),
        options,
        engine,
        switch,
        injector,
        apps,
        orbits: Vec::new(),
        report: SoakReport::default(),
        step: 0,
        down: false,
    };
    for step in 0..options.steps {
        soak.step = step;
        soak.one_step().await?;
        soak.read_events()?;
    }
    soak.report.steps = options.steps;
    soak.finish().await
}

/// Panics the injector causes are caught by the engine's guard and logged there; the default hook
/// would print each one as if something had gone wrong. Any other panic is printed as usual.
fn quiet_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let usual = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let injected = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|m| m.starts_with("an injected fault"));
            if !injected {
                usual(info);
            }
        }));
    });
}

fn violation(seed: u64, step: usize, what: String) -> Violation {
    Violation { seed, step, what }
}

async fn open_app(
    engine: &Engine,
    name: &'static str,
    opens: &[(&'static str, OpenOptions)],
) -> App {
    let session = engine.logon(name).await.expect("log on");
    let mut lines = Vec::new();
    for (number, options) in opens {
        let line = engine
            .lines()
            .into_iter()
            .find(|l| l.caps.addresses[0].address == *number)
            .expect("an extension")
            .id;
        let handle = session.open_line(line, *options).await.expect("open");
        lines.push((handle, *number));
    }
    App {
        name,
        session,
        lines,
        stream: Stream::default(),
        stale: Vec::new(),
    }
}

impl App {
    /// The calls it holds, in the order they were given (those it has read the `NewCall` of).
    fn calls(&self) -> Vec<CallHandle> {
        let held: HashSet<CallHandle> = self.session.calls().into_iter().collect();
        self.stream
            .order
            .iter()
            .filter(|h| held.contains(h))
            .copied()
            .collect()
    }
}

impl Soak {
    fn fail(&self, what: String) -> Violation {
        violation(self.options.seed, self.step, what)
    }

    fn read_events(&mut self) -> Result<(), Violation> {
        for i in 0..self.apps.len() {
            while let Some(e) = self.apps[i].session.try_next_event() {
                self.report.events += 1;
                if let Err(what) = self.apps[i].stream.check(&e) {
                    return Err(self.fail(format!("{}: {what}", self.apps[i].name)));
                }
            }
        }
        Ok(())
    }

    /// A number to call: an extension, a scripted outside number, or something that is no number.
    fn destination(&mut self) -> &'static str {
        const ALL: [&str; 9] = [
            "100",
            "200",
            "300",
            "400",
            numbers::ANSWERS,
            numbers::ANSWERS_AT_ONCE,
            numbers::BUSY,
            numbers::NO_ANSWER,
            "12x#",
        ];
        ALL[self.rng.usize(..ALL.len())]
    }

    async fn one_step(&mut self) -> Result<(), Violation> {
        // Now and then the PBX link goes down for a few steps.
        if self.down {
            if self.rng.u32(..8) == 0 {
                self.injector.restore().await;
                self.down = false;
            }
        } else if self.rng.u32(..400) == 0 {
            return self.outage().await;
        }
        match self.rng.u32(..100) {
            0..10 => {
                let secs = self.rng.u64(..12);
                tokio::time::sleep(Duration::from_secs(secs)).await;
            }
            10..15 => {
                let to = ["100", "200", "300", "400"][self.rng.usize(..4)];
                let _ = self
                    .switch
                    .ring_in(RingIn::new(to, CallerId::number("5550199")));
            }
            15..27 => {
                let a = self.rng.usize(..self.apps.len() - 1);
                let to = self.destination();
                let line = self.apps[a].lines[0].0;
                let _ = self.apps[a].session.make_call(line, Some(to)).await;
            }
            27..32 => self.address_operation().await,
            32..37 => self.deallocate()?,
            37..47 => self.handle_not_held().await?,
            _ => self.own_call_operation().await?,
        }
        Ok(())
    }

    /// The provider fails with whatever calls are up: afterwards every call any application holds
    /// is idle.
    async fn outage(&mut self) -> Result<(), Violation> {
        self.injector.fail("soak: the PBX link is down").await;
        self.down = true;
        self.report.outages += 1;
        self.read_events()?;
        for app in &self.apps {
            for call in app.calls() {
                if let Ok(status) = app.session.call_status(call)
                    && !status.state.is_idle()
                {
                    return Err(self.fail(format!(
                        "{}'s call is {} after its provider failed",
                        app.name,
                        status.state.kind().name()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Unpark an orbit, pick up a ringing extension, or set forwarding and take it off.
    async fn address_operation(&mut self) {
        let a = self.rng.usize(..self.apps.len() - 1);
        let line = self.apps[a].lines[0].0;
        let session = self.apps[a].session.clone();
        match self.rng.u32(..3) {
            0 if !self.orbits.is_empty() => {
                let orbit = self.orbits.swap_remove(self.rng.usize(..self.orbits.len()));
                let _ = session.unpark(line, &orbit).await;
            }
            1 => {
                let at = ["100", "200", "300", "400"][self.rng.usize(..4)];
                let _ = session
                    .pickup(line, PickupTarget::Directed(at.to_owned()))
                    .await;
            }
            _ => {
                let forwarding = if self.rng.bool() {
                    tapir::core::params::Forwarding::default()
                } else {
                    let to = self.destination();
                    match tapir::core::dial::DialString::parse_destination(to) {
                        Ok(d) => tapir::core::params::Forwarding {
                            do_not_disturb: false,
                            rules: vec![(
                                tapir::core::params::ForwardCondition::NoAnswer { rings: 2 },
                                d,
                            )],
                        },
                        Err(_) => tapir::core::params::Forwarding::default(),
                    }
                };
                let _ = session.forward(line, forwarding).await;
            }
        }
    }

    /// Deallocates one of an application's handles, having read every event before: a later event
    /// naming it would break the contract. A live call its session solely owns is refused.
    fn deallocate(&mut self) -> Result<(), Violation> {
        self.read_events()?;
        let a = self.rng.usize(..self.apps.len());
        let calls = self.apps[a].calls();
        if calls.is_empty() {
            return Ok(());
        }
        let call = calls[self.rng.usize(..calls.len())];
        if self.apps[a].session.deallocate(call).is_ok() {
            self.apps[a].stream.gone.insert(call);
            self.apps[a].stale.push(call);
        }
        Ok(())
    }

    /// An operation on a handle the application does not hold: stale, another's, or made up. It
    /// must be refused as an invalid handle and change nothing the engine holds.
    async fn handle_not_held(&mut self) -> Result<(), Violation> {
        let a = self.rng.usize(..self.apps.len());
        let other = (a + 1 + self.rng.usize(..self.apps.len() - 1)) % self.apps.len();
        let handle = match self.rng.u32(..3) {
            0 if !self.apps[a].stale.is_empty() => {
                self.apps[a].stale[self.rng.usize(..self.apps[a].stale.len())]
            }
            1 => match self.apps[other].calls().first() {
                Some(h) if !self.apps[a].session.calls().contains(h) => *h,
                _ => CallHandle::from_u64(self.rng.u64(..)),
            },
            _ => CallHandle::from_u64(self.rng.u64(..)),
        };
        if self.apps[a].session.calls().contains(&handle) {
            return Ok(());
        }
        let op = Op::ALL[self.rng.usize(..Op::ALL.len())];
        let before = self.engine.stats();
        let result = self.run(a, op, handle).await;
        let after = self.engine.stats();
        self.report.foreign += 1;
        match result {
            Err(Error::InvalidCallHandle) => {}
            other => {
                return Err(self.fail(format!(
                    "{} {op} on {handle:?}, a handle it does not hold, answered {other:?}",
                    self.apps[a].name
                )));
            }
        }
        let held = |s: &tapir::EngineStats| {
            (
                s.calls,
                s.call_handles,
                s.line_handles,
                s.pending_requests,
                s.sessions,
            )
        };
        if held(&before) != held(&after) {
            return Err(self.fail(format!(
                "refusing {op} on a handle not held changed the engine: {before:?} → {after:?}"
            )));
        }
        Ok(())
    }

    /// An operation on one of the application's own calls: listed or not, checked against what
    /// the call listed the moment before.
    async fn own_call_operation(&mut self) -> Result<(), Violation> {
        let a = self.rng.usize(..self.apps.len());
        let calls = self.apps[a].calls();
        let Some(&call) = calls.get(self.rng.usize(..calls.len().max(1))) else {
            return Ok(());
        };
        let Ok(status) = self.apps[a].session.call_status(call) else {
            return Ok(());
        };
        // Mostly what the call lists, so calls go somewhere; often anything at all.
        let listed_ops: Vec<Op> = status.features.iter().collect();
        let op = if !listed_ops.is_empty() && self.rng.u32(..3) != 0 {
            listed_ops[self.rng.usize(..listed_ops.len())]
        } else {
            Op::ALL[self.rng.usize(..Op::ALL.len())]
        };
        let listed = status.features.contains(op);
        let result = self.run(a, op, call).await;
        let now = self.apps[a]
            .session
            .call_status(call)
            .map(|s| s.state.kind())
            .ok();
        let tally = self.report.ops.entry(op.name()).or_default();
        match (&result, listed) {
            (Ok(()), true) => tally.0 += 1,
            (Ok(()), false) => {
                return Err(self.fail(format!(
                    "{} {op} not listed on a {} call, but it was carried out",
                    self.apps[a].name,
                    status.state.kind().name()
                )));
            }
            (Err(e), false) => {
                tally.1 += 1;
                if matches!(
                    e,
                    Error::ProviderFault { .. }
                        | Error::ProviderTimeout { .. }
                        | Error::OperationFailed { .. }
                ) {
                    return Err(self.fail(format!(
                        "{} {op} not listed on a {} call reached the provider: {e}",
                        self.apps[a].name,
                        status.state.kind().name()
                    )));
                }
            }
            (Err(e), true) => {
                tally.2 += 1;
                // Refused after the call moved on by itself (while a delayed provider worked, say):
                // the features were true when read.
                let now_privilege = self.apps[a]
                    .session
                    .call_status(call)
                    .map(|s| s.privilege)
                    .ok();
                let unchanged =
                    now == Some(status.state.kind()) && now_privilege == Some(status.privilege);
                if !TWO_CALLS.contains(&op) && foreseeable(e) && unchanged {
                    return Err(self.fail(format!(
                        "{} {op} listed on a {} call was refused: {e}",
                        self.apps[a].name,
                        status.state.kind().name()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Carries out `op` on `call` for application `a`, with arguments that make sense most of the
    /// time; a second call, where the operation takes one, is another of its calls.
    async fn run(&mut self, a: usize, op: Op, call: CallHandle) -> Result<(), Error> {
        let s = self.apps[a].session.clone();
        let others: Vec<CallHandle> = self.apps[a]
            .calls()
            .into_iter()
            .filter(|c| *c != call)
            .collect();
        let other = others
            .get(self.rng.usize(..others.len().max(1)))
            .copied()
            .unwrap_or(call);
        let to = self.destination();
        match op {
            Op::Accept => s.accept(call).await,
            Op::Answer => s.answer(call).await,
            Op::Reject => s.reject(call).await,
            Op::Drop => s.drop_call(call).await,
            Op::Hold => s.hold(call).await,
            Op::Unhold => s.unhold(call).await,
            Op::Dial => s.dial(call, to).await,
            Op::Redirect => s.redirect(call, to).await,
            Op::BlindTransfer => s.blind_transfer(call, to).await,
            Op::SwapHold => {
                let held = s
                    .call_status(other)
                    .is_ok_and(|st| st.state.kind().is_held());
                if held {
                    s.swap_hold(call, other).await
                } else {
                    s.swap_hold(other, call).await
                }
            }
            Op::SetupTransfer => s.setup_transfer(call).await.map(drop),
            Op::CompleteTransfer => {
                let mode = if self.rng.bool() {
                    TransferMode::Transfer
                } else {
                    TransferMode::Conference
                };
                s.complete_transfer(call, other, mode).await.map(drop)
            }
            Op::SetupConference => s.setup_conference(call).await.map(drop),
            Op::PrepareAddToConference => s.prepare_add_to_conference(call).await.map(drop),
            Op::AddToConference => s.add_to_conference(call, other).await,
            Op::RemoveFromConference => s.remove_from_conference(call).await,
            Op::Park => {
                let orbit = s.park(call, ParkMode::NonDirected).await?;
                self.orbits.push(orbit);
                Ok(())
            }
            Op::CompleteCall => s
                .complete_call(call, CompletionMode::CampOn)
                .await
                .map(drop),
            Op::GenerateDigits => s.generate_digits(call, "1#", DigitMode::Dtmf).await,
            Op::MonitorDigits => s.monitor_digits(call, Some(DigitMode::Dtmf)).await,
            Op::SecureCall => s.secure_call(call).await,
            Op::Handoff => {
                let to = ["alice", "bob", "carol", "dave", "supervisor"][self.rng.usize(..5)];
                s.handoff(call, to)
            }
        }
    }

    /// Stops the injector, hangs everything up, logs everyone off, and checks nothing is held.
    async fn finish(mut self) -> Result<SoakReport, Violation> {
        self.injector.hook().set_active(false);
        self.injector.restore().await;
        for _ in 0..10 {
            self.read_events()?;
            let mut live = 0;
            for app in &self.apps {
                for call in app.calls() {
                    let _ = app.session.drop_call(call).await;
                    let _ = app.session.deallocate(call);
                    live += 1;
                }
            }
            if live == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_secs(70)).await;
        }
        self.read_events()?;
        self.report.injected = self.injector.hook().injected();
        self.report.refused_reports = self.engine.stats().refused_reports;
        for app in std::mem::take(&mut self.apps) {
            app.session.logoff().await;
        }
        tokio::time::sleep(Duration::from_secs(70)).await;
        let stats = self.engine.stats();
        let legs = self.switch.live_legs();
        if !stats.holds_nothing() || legs != 0 {
            return Err(self.fail(format!(
                "after every log-off the engine holds {stats:?} and the switch {legs} legs"
            )));
        }
        Ok(self.report)
    }
}
