//! Faults on purpose: any provider, wrapped so that its methods panic, hang, take long or fail, and
//! its reports go wrong — by fixed rules or a seeded schedule — to show what the engine does with a
//! provider that misbehaves.
//!
//! ```
//! use std::sync::Arc;
//! use tapir_provider::faults::{Fault, FaultPlan, faulty};
//! # fn wrap(provider: Arc<dyn tapir_provider::Provider>) {
//! // Every hold panics; one call in twenty of anything else hangs or fails; one report in fifty
//! // comes with a nonsense report after it. The same seed makes the same faults.
//! let plan = FaultPlan::seeded(7)
//!     .on("hold", Fault::Panic)
//!     .faults(50, &[Fault::Hang, Fault::Fail])
//!     .nonsense(20, &tapir_provider::faults::Nonsense::ALL);
//! let provider = faulty(provider, plan);
//! # let _ = provider; }
//! ```
//!
//! A wrapped provider can also fail as a whole and come back ([`Intercept::fail`],
//! [`Intercept::restore`]): it reports [`ProviderEvent::Failed`], its calls are dropped at the
//! provider it wraps and nothing it reports reaches the engine until it is restored — a PBX link
//! that went down, with the switch's calls lost (and those the switch made meanwhile, once the
//! link is back).

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tapir_core::info::{CallInfo, PartyId};
use tapir_core::state::{CallStateKind, transition_allowed};
use tapir_core::{CallLegId, Error, LineId, ProviderId};

use crate::{EventHandler, EventSink, Hook, Intercept, LineEvent, Provider, ProviderEvent, Result};

/// What happens to one call of a provider method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// It panics before doing anything.
    Panic,
    /// It never returns, and does nothing.
    Hang,
    /// It does what it was asked, reports it, and then never returns.
    HangAfter,
    /// It waits this long, then does what it was asked.
    Delay(Duration),
    /// It fails with `OperationFailed` before doing anything.
    Fail,
}

/// A report that makes no sense, sent after a real one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Nonsense {
    /// A state for a call never announced.
    UnknownCall,
    /// After a call's state, a state the transition table does not allow from it.
    ForbiddenTransition,
    /// A call's announcement, again.
    NewCallTwice,
    /// After a call went idle, a state for it.
    AfterIdle,
    /// A line out of service that the provider does not have.
    UnknownLine,
    /// Call information with a caller's name of four megabytes.
    HugeText,
    /// A digit that is not a DTMF digit.
    BadDigit,
}

impl Nonsense {
    /// Every kind.
    pub const ALL: [Nonsense; 7] = [
        Nonsense::UnknownCall,
        Nonsense::ForbiddenTransition,
        Nonsense::NewCallTwice,
        Nonsense::AfterIdle,
        Nonsense::UnknownLine,
        Nonsense::HugeText,
        Nonsense::BadDigit,
    ];
}

/// Which faults to inject: rules for named methods first, then the seeded schedule.
#[derive(Clone, Debug)]
pub struct FaultPlan {
    seed: u64,
    /// Every call of the method gets the fault.
    rules: Vec<(&'static str, Fault)>,
    /// Per thousand calls of any method without a rule, one of `faults` at random.
    fault_rate: u32,
    faults: Vec<Fault>,
    /// Per thousand reports, one of `nonsense` after it.
    nonsense_rate: u32,
    nonsense: Vec<Nonsense>,
}

impl FaultPlan {
    /// No faults yet; random ones, once asked for, drawn from `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self {
            seed,
            rules: Vec::new(),
            fault_rate: 0,
            faults: Vec::new(),
            nonsense_rate: 0,
            nonsense: Vec::new(),
        }
    }

    /// Every call of `method` (named as the operation: `"hold"`, `"make-call"`, `"start"` …) gets
    /// `fault`.
    pub fn on(mut self, method: &'static str, fault: Fault) -> Self {
        self.rules.push((method, fault));
        self
    }

    /// `per_mille` of the calls of methods without a rule get one of `faults`. `start` and `stop`
    /// are spared: a provider that never starts tells nothing about the engine's operations.
    pub fn faults(mut self, per_mille: u32, faults: &[Fault]) -> Self {
        self.fault_rate = per_mille;
        self.faults = faults.to_vec();
        self
    }

    /// `per_mille` of the provider's reports are followed by one of `kinds`.
    pub fn nonsense(mut self, per_mille: u32, kinds: &[Nonsense]) -> Self {
        self.nonsense_rate = per_mille;
        self.nonsense = kinds.to_vec();
        self
    }
}

/// How many faults and nonsense reports were injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    /// Calls that panicked.
    pub panics: u64,
    /// Calls that never returned (either kind of hang).
    pub hangs: u64,
    /// Calls delayed.
    pub delays: u64,
    /// Calls that failed.
    pub failures: u64,
    /// Nonsense reports sent.
    pub nonsense: u64,
}

/// The hook that injects a [`FaultPlan`]; [`faulty`] wraps a provider in one.
pub struct Faults {
    plan: FaultPlan,
    state: Arc<Mutex<Drawn>>,
    /// The engine's sink, once the provider has started: where a failure is reported.
    engine: OnceLock<EventSink>,
}

/// The seeded generator and the tally, shared with the sink in front of the engine.
struct Drawn {
    rng: fastrand::Rng,
    injected: Injected,
    /// Off: the provider behaves (to wind a test down cleanly).
    paused: bool,
    /// The provider has failed as a whole ([`Intercept::fail`]): its reports go nowhere.
    failed: bool,
    /// The calls it has announced (or made while failed) and not yet reported idle: those a
    /// failure, or a restore, loses.
    live: HashSet<CallLegId>,
}

impl Drawn {
    fn new(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            injected: Injected::default(),
            paused: false,
            failed: false,
            live: HashSet::new(),
        }
    }
}

impl Faults {
    /// What was injected so far.
    pub fn injected(&self) -> Injected {
        lock(&self.state).injected
    }

    /// Stops (`false`) or resumes (`true`) injecting: a test winds down with a provider that
    /// behaves.
    pub fn set_active(&self, active: bool) {
        lock(&self.state).paused = !active;
    }

    /// Whether the provider has failed as a whole and is not yet restored.
    pub fn is_failed(&self) -> bool {
        lock(&self.state).failed
    }

    /// The fault for this call of `method`, if it gets one.
    fn draw(&self, method: &'static str) -> Option<Fault> {
        if lock(&self.state).paused {
            return None;
        }
        if let Some((_, fault)) = self.plan.rules.iter().find(|(m, _)| *m == method) {
            return Some(*fault);
        }
        if self.plan.faults.is_empty() || matches!(method, "start" | "stop") {
            return None;
        }
        let mut drawn = lock(&self.state);
        (drawn.rng.u32(..1000) < self.plan.fault_rate).then(|| {
            let i = drawn.rng.usize(..self.plan.faults.len());
            self.plan.faults[i]
        })
    }

    fn count(&self, fault: Fault) {
        let injected = &mut lock(&self.state).injected;
        match fault {
            Fault::Panic => injected.panics += 1,
            Fault::Hang | Fault::HangAfter => injected.hangs += 1,
            Fault::Delay(_) => injected.delays += 1,
            Fault::Fail => injected.failures += 1,
        }
    }
}

/// `provider` with the faults of `plan`.
pub fn faulty(provider: Arc<dyn Provider>, plan: FaultPlan) -> Intercept<Faults> {
    let state = Arc::new(Mutex::new(Drawn::new(plan.seed)));
    let faults = Faults {
        plan,
        state,
        engine: OnceLock::new(),
    };
    Intercept::new(provider, faults)
}

impl Intercept<Faults> {
    /// The provider fails as a whole: it reports [`ProviderEvent::Failed`] with `reason`, every
    /// call it has is dropped at the provider it wraps, and from now on its reports are lost and
    /// its operations fail, until [`restore`](Self::restore). Nothing if it has not started or
    /// has already failed.
    pub async fn fail(&self, reason: &str) {
        let Some(engine) = self.hook().engine.get() else {
            return;
        };
        let lost = {
            let mut drawn = lock(&self.hook().state);
            if drawn.failed {
                return;
            }
            drawn.failed = true;
            std::mem::take(&mut drawn.live)
        };
        engine.send(ProviderEvent::Failed {
            reason: reason.to_owned(),
        });
        self.drop_lost(lost).await;
    }

    /// The provider is back after [`fail`](Self::fail): the calls its switch made while it was
    /// down, which the engine never heard of, are dropped; then it reports
    /// [`ProviderEvent::Restored`], and its reports and operations go through again.
    pub async fn restore(&self) {
        let Some(engine) = self.hook().engine.get() else {
            return;
        };
        loop {
            let lost = {
                let mut drawn = lock(&self.hook().state);
                if !drawn.failed {
                    return;
                }
                if drawn.live.is_empty() {
                    // Under the same lock as the reports: none slips through between the last
                    // drop and the restore.
                    drawn.failed = false;
                    break;
                }
                std::mem::take(&mut drawn.live)
            };
            self.drop_lost(lost).await;
        }
        engine.send(ProviderEvent::Restored);
    }

    /// Drops `legs` at the wrapped provider, in leg order (so that a seed replays the same way).
    async fn drop_lost(&self, legs: HashSet<CallLegId>) {
        let mut legs: Vec<CallLegId> = legs.into_iter().collect();
        legs.sort();
        for leg in legs {
            // What the switch says of the calls it drops goes nowhere: the provider is down.
            let _ = self.inner().drop_call(leg).await;
        }
    }
}

impl Hook for Faults {
    fn around<'a, T: Send + 'a>(
        &'a self,
        method: &'static str,
        call: impl Future<Output = Result<T>> + Send + 'a,
    ) -> impl Future<Output = Result<T>> + Send + 'a {
        let fault = self.draw(method);
        if let Some(fault) = fault {
            self.count(fault);
        }
        let down = self.is_failed() && !crate::WITHOUT_SWITCH.contains(&method);
        async move {
            if down {
                return Err(Error::OperationFailed {
                    reason: format!("{method}: the provider is down (an injected failure)"),
                });
            }
            match fault {
                None => call.await,
                Some(Fault::Panic) => panic!("an injected fault in {method}"),
                Some(Fault::Hang) => std::future::pending().await,
                Some(Fault::HangAfter) => {
                    let _ = call.await;
                    std::future::pending().await
                }
                Some(Fault::Delay(d)) => {
                    tokio::time::sleep(d).await;
                    call.await
                }
                Some(Fault::Fail) => Err(Error::OperationFailed {
                    reason: format!("an injected fault in {method}"),
                }),
            }
        }
    }

    fn sink(&self, sink: EventSink) -> EventSink {
        let _ = self.engine.set(sink.clone());
        let provider = sink.provider();
        EventSink::new(
            provider,
            Arc::new(Front {
                next: sink,
                kinds: self.plan.nonsense.clone(),
                rate: self.plan.nonsense_rate,
                state: self.state.clone(),
            }),
        )
    }
}

/// Stands between the provider and the engine: keeps the live calls, loses every report while the
/// provider has failed, and otherwise passes each report on, now and then with a nonsense one after
/// it.
struct Front {
    next: EventSink,
    kinds: Vec<Nonsense>,
    rate: u32,
    state: Arc<Mutex<Drawn>>,
}

impl EventHandler for Front {
    fn on_event(&self, _provider: ProviderId, event: ProviderEvent) {
        let extra = {
            let mut drawn = lock(&self.state);
            match &event {
                ProviderEvent::NewCall(c) => {
                    drawn.live.insert(c.leg);
                }
                ProviderEvent::CallState { leg, state } if state.is_idle() => {
                    drawn.live.remove(leg);
                }
                _ => {}
            }
            // The switch's calls go on while the provider is down (those it makes are dropped
            // when it is restored); the engine hears nothing of them.
            if drawn.failed {
                return;
            }
            let kind =
                (!self.kinds.is_empty() && !drawn.paused && drawn.rng.u32(..1000) < self.rate)
                    .then(|| self.kinds[drawn.rng.usize(..self.kinds.len())]);
            let extra = kind.and_then(|k| nonsense_after(k, &event));
            if extra.is_some() {
                drawn.injected.nonsense += 1;
            }
            extra
        };
        self.next.send(event);
        if let Some(extra) = extra {
            self.next.send(extra);
        }
    }
}

/// The nonsense report of `kind` to send after `real`, where `real` gives it something to be about.
fn nonsense_after(kind: Nonsense, real: &ProviderEvent) -> Option<ProviderEvent> {
    let leg_of = |e: &ProviderEvent| match e {
        ProviderEvent::NewCall(c) => Some(c.leg),
        ProviderEvent::CallState { leg, .. }
        | ProviderEvent::CallInfo { leg, .. }
        | ProviderEvent::Digit { leg, .. } => Some(*leg),
        _ => None,
    };
    match kind {
        Nonsense::UnknownCall => Some(ProviderEvent::CallState {
            leg: CallLegId(u64::MAX - 7),
            state: CallStateKind::Connected.with_default_mode(),
        }),
        Nonsense::ForbiddenTransition => match real {
            ProviderEvent::CallState { leg, state } if !state.is_idle() => {
                let from = state.kind();
                CallStateKind::ALL
                    .into_iter()
                    .find(|to| *to != from && !transition_allowed(from, *to))
                    .map(|to| ProviderEvent::CallState {
                        leg: *leg,
                        state: to.with_default_mode(),
                    })
            }
            _ => None,
        },
        Nonsense::NewCallTwice => match real {
            ProviderEvent::NewCall(c) => Some(ProviderEvent::NewCall(c.clone())),
            _ => None,
        },
        Nonsense::AfterIdle => match real {
            ProviderEvent::CallState { leg, state } if state.is_idle() => {
                Some(ProviderEvent::CallState {
                    leg: *leg,
                    state: CallStateKind::Connected.with_default_mode(),
                })
            }
            _ => None,
        },
        Nonsense::UnknownLine => Some(ProviderEvent::Line {
            line: LineId(u32::MAX - 7),
            event: LineEvent::OutOfService {
                reason: "a line that does not exist".into(),
            },
        }),
        Nonsense::HugeText => leg_of(real).map(|leg| ProviderEvent::CallInfo {
            leg,
            info: Arc::new(CallInfo {
                caller: PartyId::named("5550100", "x".repeat(4 << 20)),
                ..CallInfo::default()
            }),
        }),
        Nonsense::BadDigit => leg_of(real).map(|leg| ProviderEvent::Digit {
            leg,
            digit: 'x',
            mode: tapir_core::params::DigitMode::Dtmf,
        }),
    }
}

/// The shared draw, even if a panicking caller held it.
fn lock(state: &Mutex<Drawn>) -> std::sync::MutexGuard<'_, Drawn> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use tapir_core::state::CallState;

    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        let draws = |seed| {
            let plan = FaultPlan::seeded(seed).faults(300, &[Fault::Hang, Fault::Fail]);
            let hook = Faults {
                state: Arc::new(Mutex::new(Drawn::new(plan.seed))),
                plan,
                engine: OnceLock::new(),
            };
            (0..200).map(|_| hook.draw("hold")).collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
        let some = draws(3).iter().filter(|f| f.is_some()).count();
        assert!((30..90).contains(&some), "about 30% of 200: {some}");
    }

    #[test]
    fn each_kind_of_nonsense_breaks_the_model() {
        let leg = CallLegId(1);
        let connected = ProviderEvent::CallState {
            leg,
            state: CallStateKind::Connected.with_default_mode(),
        };
        let Some(ProviderEvent::CallState { state, .. }) =
            nonsense_after(Nonsense::ForbiddenTransition, &connected)
        else {
            panic!("a forbidden state after a real one");
        };
        assert!(!transition_allowed(CallStateKind::Connected, state.kind()));
        let idle = ProviderEvent::CallState {
            leg,
            state: CallState::Idle,
        };
        assert!(matches!(
            nonsense_after(Nonsense::AfterIdle, &idle),
            Some(ProviderEvent::CallState { leg: l, .. }) if l == leg
        ));
        let Some(ProviderEvent::CallInfo { info, .. }) =
            nonsense_after(Nonsense::HugeText, &connected)
        else {
            panic!("huge text for the call");
        };
        assert!(!info.text_fits());
    }
}
