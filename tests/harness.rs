//! Shared pieces of the scenario tests: a simulated PBX behind an engine, and a [`Watcher`] that reads a
//! session's events and checks the stream contracts on every one of them.
#![allow(missing_docs, clippy::unwrap_used)]

/// The README's Rust example, compiled as a doctest so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExample;

pub mod soak;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tapir::core::state::{CallState, CallStateKind};
use tapir::{
    CallHandle, CallId, Engine, EngineBuilder, Event, LineHandle, OpenOptions, Session,
    SessionEvent,
};
use tapir_core::LineId;
use tapir_simswitch::{FarEnd, ParkLot, SimSwitch, SimSwitchBuilder};

/// Outside numbers scripted in [`pbx`].
pub mod numbers {
    /// Answers after two rings, presents "Dave".
    pub const ANSWERS: &str = "5551000";
    /// Answers at once.
    pub const ANSWERS_AT_ONCE: &str = "5555000";
    /// Busy.
    pub const BUSY: &str = "5552000";
    /// Never answers.
    pub const NO_ANSWER: &str = "5553000";
    /// Cannot be reached.
    pub const UNREACHABLE: &str = "5554000";
}

pub struct Pbx {
    pub engine: Engine,
    pub switch: SimSwitch,
}

/// A switch with extensions 100 (Alice), 200 (Bob), 300 (Carol) and the scripted [`numbers`].
pub async fn pbx() -> Pbx {
    pbx_with(&["100", "200", "300"]).await
}

/// A switch with the given extensions and the scripted [`numbers`].
pub async fn pbx_with(extensions: &[&str]) -> Pbx {
    let mut b = scripted(SimSwitch::builder());
    for (i, n) in extensions.iter().enumerate() {
        b = b.extension(*n, format!("User {i}"));
    }
    pbx_from(b.build().unwrap()).await
}

/// An engine in front of the given switch.
pub async fn pbx_from(switch: SimSwitch) -> Pbx {
    pbx_built(switch, |b| b).await
}

/// An engine in front of the given switch, its builder finished by `more` (a record sink, say).
pub async fn pbx_built(
    switch: SimSwitch,
    more: impl FnOnce(EngineBuilder) -> EngineBuilder,
) -> Pbx {
    let engine = more(Engine::builder().provider(switch.clone()))
        .build()
        .await
        .unwrap();
    Pbx { engine, switch }
}

/// The office of the park, pickup and call-record scenarios: extensions 100 Alice, 200 Bob, 300
/// Carol and 400 Dave, the scripted [`numbers`], a park lot of `orbits` (calls come back after
/// 60 s), and the pickup group "sales" of 200 and 300.
pub fn office(orbits: &[&str]) -> SimSwitch {
    scripted(SimSwitch::builder())
        .extension("100", "Alice")
        .extension("200", "Bob")
        .extension("300", "Carol")
        .extension("400", "Dave")
        .park_lot(ParkLot {
            orbits: orbits.iter().map(|o| o.to_string()).collect(),
            timeout: Duration::from_secs(60),
        })
        .pickup_group("sales", ["200", "300"])
        .build()
        .unwrap()
}

/// `b` with the scripted [`numbers`].
fn scripted(b: SimSwitchBuilder) -> SimSwitchBuilder {
    b.far_end(
        numbers::ANSWERS,
        FarEnd::answers_after_rings(2).named("Dave"),
    )
    .far_end(numbers::ANSWERS_AT_ONCE, FarEnd::answers_after_rings(0))
    .far_end(numbers::BUSY, FarEnd::busy())
    .far_end(numbers::NO_ANSWER, FarEnd::never_answers())
    .far_end(numbers::UNREACHABLE, FarEnd::unreachable())
}

/// One application at one extension: its session, its line open as owner, and a [`Watcher`] on
/// its events.
pub struct Desk {
    pub session: Session,
    pub line: LineHandle,
    pub w: Watcher,
}

/// Logs every session off and asserts the engine and the switch hold nothing.
pub async fn close_all(pbx: &Pbx, sessions: impl IntoIterator<Item = Session>) {
    for s in sessions {
        s.logoff().await;
    }
    pbx.assert_empty();
    assert_eq!(pbx.switch.live_legs(), 0, "legs left in the switch");
}

impl Pbx {
    /// The engine line ID of extension `number`.
    pub fn line(&self, number: &str) -> LineId {
        self.engine
            .lines()
            .into_iter()
            .find(|l| l.caps.addresses[0].address == number)
            .map(|l| l.id)
            .unwrap()
    }

    /// Logs on and opens extension lines.
    pub async fn app(
        &self,
        name: &str,
        opens: &[(&str, OpenOptions)],
    ) -> (Session, Vec<LineHandle>) {
        let s = self.engine.logon(name).await.unwrap();
        let mut handles = Vec::new();
        for (number, opts) in opens {
            handles.push(s.open_line(self.line(number), *opts).await.unwrap());
        }
        (s, handles)
    }

    /// Logs `app` on with extension `ext` open as owner, and watches its events.
    pub async fn desk(&self, app: &str, ext: &str) -> Desk {
        let (session, lines) = self.app(app, &[(ext, OpenOptions::owner())]).await;
        let w = Watcher::new(&session);
        Desk {
            session,
            line: lines[0],
            w,
        }
    }

    /// Asserts the engine and the switch hold nothing.
    pub fn assert_empty(&self) {
        let stats = self.engine.stats();
        assert_eq!(stats.calls, 0, "calls left: {stats:?}");
        assert_eq!(stats.call_handles, 0, "call handles left: {stats:?}");
        assert_eq!(stats.pending_requests, 0, "requests left: {stats:?}");
    }
}

/// Reads one session's events and checks, for every event:
/// - sequence numbers start at 1 and have no gaps (an `EventsLost` accounts for exactly the numbers it
///   names);
/// - no event names a call handle before the `NewCall` that gave it, and no handle is given twice.
pub struct Watcher {
    pub session: Session,
    next_seq: u64,
    known: HashSet<CallHandle>,
    pub log: Vec<SessionEvent>,
}

impl Watcher {
    pub fn new(session: &Session) -> Self {
        Self {
            session: session.clone(),
            next_seq: 1,
            known: HashSet::new(),
            log: Vec::new(),
        }
    }

    fn check(&mut self, e: &SessionEvent) {
        assert_eq!(e.seq, self.next_seq, "sequence gap or repeat at {e:?}");
        match &e.event {
            Event::EventsLost { first, last } => {
                assert_eq!(*first, e.seq);
                self.next_seq = last + 1;
                return;
            }
            Event::NewCall { call, .. } => {
                assert!(self.known.insert(*call), "handle {call} given twice");
            }
            other => {
                if let Some(call) = other.call() {
                    assert!(self.known.contains(&call), "event before its handle: {e:?}");
                }
            }
        }
        self.next_seq += 1;
    }

    /// Reads every event queued now.
    pub fn drain(&mut self) {
        while let Some(e) = self.session.try_next_event() {
            self.check(&e);
            self.log.push(e);
        }
    }

    /// Reads events until one matches, and returns it. Fails after 10 minutes of (simulated) time.
    pub async fn until(&mut self, what: impl Fn(&Event) -> bool) -> Event {
        loop {
            let e = tokio::time::timeout(Duration::from_secs(600), self.session.next_event())
                .await
                .expect("timed out waiting for an event")
                .expect("session ended");
            self.check(&e);
            let hit = what(&e.event);
            let event = e.event.clone();
            self.log.push(e);
            if hit {
                return event;
            }
        }
    }

    /// Waits for a new call handle and returns it.
    pub async fn new_call(&mut self) -> CallHandle {
        match self.until(|e| matches!(e, Event::NewCall { .. })).await {
            Event::NewCall { call, .. } => call,
            _ => unreachable!(),
        }
    }

    /// Waits until `call` reaches a state of kind `kind`, and returns the state.
    pub async fn state(&mut self, call: CallHandle, kind: CallStateKind) -> CallState {
        if let Some(s) = self.states(call).last()
            && s.kind() == kind
        {
            return *s;
        }
        match self
            .until(|e| matches!(e, Event::CallState { call: c, state, .. } if *c == call && state.kind() == kind))
            .await
        {
            Event::CallState { state, .. } => state,
            _ => unreachable!(),
        }
    }

    /// Every state reported for `call` so far.
    pub fn states(&self, call: CallHandle) -> Vec<CallState> {
        self.log
            .iter()
            .filter_map(|e| match &e.event {
                Event::CallState { call: c, state, .. } if *c == call => Some(*state),
                _ => None,
            })
            .collect()
    }

    /// The handles given so far with their call IDs.
    pub fn handles(&self) -> HashMap<CallHandle, CallId> {
        self.log
            .iter()
            .filter_map(|e| match &e.event {
                Event::NewCall { call, call_id, .. } => Some((*call, *call_id)),
                _ => None,
            })
            .collect()
    }
}

/// Polls until `call` is in a state of kind `kind` (for tests that do not read the event stream).
pub async fn poll_state(session: &Session, call: CallHandle, kind: CallStateKind) {
    for _ in 0..100_000 {
        if session.call_status(call).map(|s| s.state.kind()) == Ok(kind) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{call} never reached {kind:?}");
}

/// Answers every call the session is offered as owner, drops calls the far end clears, and deallocates
/// calls that go idle. Runs until the session ends.
pub fn auto_answer(session: Session) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(e) = session.next_event().await {
            match e.event {
                Event::CallState {
                    call,
                    state,
                    privilege,
                } => match state.kind() {
                    CallStateKind::Offering
                        if privilege == tapir::core::privilege::CallPrivilege::Owner =>
                    {
                        let _ = session.answer(call).await;
                    }
                    CallStateKind::Disconnected => {
                        let _ = session.drop_call(call).await;
                    }
                    CallStateKind::Idle => {
                        let _ = session.deallocate(call);
                    }
                    _ => {}
                },
                Event::EventsLost { .. } => {}
                _ => {}
            }
        }
    })
}
