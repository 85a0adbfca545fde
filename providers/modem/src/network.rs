//! The simulated telephone network that modems attach to.
//!
//! Modems attach by number (done by
//! [`SimModem::attach`](crate::SimModem::attach)). A modem that dials another attached number rings it; a
//! modem that dials a **scripted** number ([`Network::far_end`]) meets the behaviour the script gives
//! (busy, unreachable, rings forever, answers as a modem or as a voice party after N rings, presses
//! digits, hangs up after a while). A test makes a call arrive at a modem with [`Network::ring_in`] and
//! plays the far end through the returned [`RemoteCall`].
//!
//! Every delay runs on tokio's clock, so under `tokio::time::pause()` a test is exact and takes no time.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;

/// The time from one ring burst to the next: 2 s of ring, 4 s of silence (North American cadence).
pub const RING_PERIOD: Duration = Duration::from_secs(6);

/// Identifies one call in the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct NetCallId(u64);

/// What the network tells an attached modem.
#[derive(Clone, Debug)]
pub(crate) enum Signal {
    /// A call is ringing the line.
    Incoming { call: NetCallId, caller: CallerId },
    /// The far end answered the call this line placed; `modem` if it answered as a data modem.
    Answered { call: NetCallId, modem: bool },
    /// Bytes from the far end of a data call.
    Data { call: NetCallId, bytes: Vec<u8> },
    /// The far end of a voice call pressed a key.
    Digit { call: NetCallId, digit: char },
    /// The far end hung up (before or after answer).
    HungUp { call: NetCallId },
}

/// Why the network refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The called line is in use.
    Busy,
    /// No such number, or it cannot be reached (reorder / intercept tone).
    Unreachable,
}

/// How a caller presents itself; what a modem with caller ID on shows between the first and second ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerId {
    /// What the network says about the caller's number.
    pub number: CallerNumber,
    /// The caller's name, if the network delivers one.
    pub name: Option<String>,
    /// Month, day, hour and minute of the call as the exchange reports them (`DATE=MMDD`, `TIME=HHMM`).
    /// `None` uses the current UTC time.
    pub when: Option<(u8, u8, u8, u8)>,
}

/// The caller's number as caller ID reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallerNumber {
    /// The number (`NMBR=5551234567`).
    Number(String),
    /// Withheld by the caller (`NMBR=P`).
    Withheld,
    /// Not available: out of area, or the exchange sends none (`NMBR=O`).
    OutOfArea,
}

impl CallerId {
    /// A caller presenting `number`.
    pub fn number(number: impl Into<String>) -> Self {
        Self {
            number: CallerNumber::Number(number.into()),
            name: None,
            when: None,
        }
    }
    /// A caller presenting `number` and `name`.
    pub fn named(number: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::number(number)
        }
    }
    /// A caller who withheld their identity.
    pub fn withheld() -> Self {
        Self {
            number: CallerNumber::Withheld,
            name: None,
            when: None,
        }
    }
    /// A caller whose identity the network cannot deliver.
    pub fn out_of_area() -> Self {
        Self {
            number: CallerNumber::OutOfArea,
            name: None,
            when: None,
        }
    }
    /// Fixes the date and time the exchange reports (month 1–12, day 1–31, hour 0–23, minute 0–59).
    pub fn at(mut self, month: u8, day: u8, hour: u8, minute: u8) -> Self {
        self.when = Some((month, day, hour, minute));
        self
    }
}

/// What a far end is: a data modem that trains and connects, or a voice party.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartyKind {
    /// A data modem: a data call to or from it connects with `CONNECT`.
    Modem,
    /// A person (or a fax-less answering machine): it answers, presses keys, hangs up — no carrier.
    Voice,
}

/// How a scripted number answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Answers after this many rings (of [`RING_PERIOD`]).
    AfterRings(u32, PartyKind),
    /// Rings forever.
    Never,
    /// The line is busy.
    Busy,
    /// The number cannot be reached.
    Unreachable,
}

/// A scripted number on the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FarEnd {
    /// How it answers.
    pub answer: Answer,
    /// What it does once answered.
    pub then: AfterAnswer,
}

/// What a far end does once its call is answered.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AfterAnswer {
    /// Keys it presses, one every 200 ms (heard in voice mode as `<DLE>` digits).
    pub presses: String,
    /// Hangs up this long after the answer.
    pub hang_up_after: Option<Duration>,
}

impl FarEnd {
    /// A data modem that answers after `rings` rings.
    pub fn modem_after_rings(rings: u32) -> Self {
        Self::with(Answer::AfterRings(rings, PartyKind::Modem))
    }
    /// A voice party that answers after `rings` rings.
    pub fn voice_after_rings(rings: u32) -> Self {
        Self::with(Answer::AfterRings(rings, PartyKind::Voice))
    }
    /// A busy line.
    pub fn busy() -> Self {
        Self::with(Answer::Busy)
    }
    /// A line that rings and is never answered.
    pub fn no_answer() -> Self {
        Self::with(Answer::Never)
    }
    /// A number that cannot be reached.
    pub fn unreachable() -> Self {
        Self::with(Answer::Unreachable)
    }
    /// Presses `keys` once answered.
    pub fn presses(mut self, keys: impl Into<String>) -> Self {
        self.then.presses = keys.into();
        self
    }
    /// Hangs up `after` answering (after pressing its keys, if any).
    pub fn hangs_up_after(mut self, after: Duration) -> Self {
        self.then.hang_up_after = Some(after);
        self
    }
    fn with(answer: Answer) -> Self {
        Self {
            answer,
            then: AfterAnswer::default(),
        }
    }
}

/// A call made to a modem from outside ([`Network::ring_in`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingIn {
    /// Who is calling.
    pub caller: CallerId,
    /// A modem (the call connects as data when answered as data) or a voice party.
    pub kind: PartyKind,
    /// The caller gives up this long after the call starts ringing, if not answered.
    pub gives_up_after: Option<Duration>,
    /// What the caller does once answered.
    pub then: AfterAnswer,
}

impl RingIn {
    /// A data modem calling with `caller`'s identity, ringing until answered.
    pub fn modem(caller: CallerId) -> Self {
        Self {
            caller,
            kind: PartyKind::Modem,
            gives_up_after: None,
            then: AfterAnswer::default(),
        }
    }
    /// A voice party calling with `caller`'s identity, ringing until answered.
    pub fn voice(caller: CallerId) -> Self {
        Self {
            kind: PartyKind::Voice,
            ..Self::modem(caller)
        }
    }
    /// The caller gives up `after` the call starts ringing.
    pub fn gives_up_after(mut self, after: Duration) -> Self {
        self.gives_up_after = Some(after);
        self
    }
    /// Keys the caller presses once answered.
    pub fn presses(mut self, keys: impl Into<String>) -> Self {
        self.then.presses = keys.into();
        self
    }
    /// The caller hangs up `after` the call is answered.
    pub fn hangs_up_after(mut self, after: Duration) -> Self {
        self.then.hang_up_after = Some(after);
        self
    }
}

/// Why a call could not be rung in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingInError {
    /// No modem is attached at that number.
    #[error("no modem is attached at number {0}")]
    NoSuchNumber(String),
    /// The modem's line is in use (off hook or in a call).
    #[error("the line at number {0} is busy")]
    Busy(String),
}

/// Options of a line a modem attaches with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineOptions {
    /// The exchange gives dial tone. A line without it is dead: dialling fails with `NO DIALTONE`.
    pub dial_tone: bool,
}

impl Default for LineOptions {
    fn default() -> Self {
        Self { dial_tone: true }
    }
}

/// The simulated telephone network. Cheap to clone; every clone is the same network.
#[derive(Clone, Default)]
pub struct Network {
    inner: Arc<Mutex<Net>>,
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let net = self.lock();
        f.debug_struct("Network")
            .field("lines", &net.lines.keys().collect::<Vec<_>>())
            .field("far_ends", &net.far_ends.keys().collect::<Vec<_>>())
            .field("calls", &net.calls.len())
            .finish()
    }
}

#[derive(Default)]
struct Net {
    lines: HashMap<String, Line>,
    far_ends: HashMap<String, FarEnd>,
    calls: HashMap<NetCallId, NetCall>,
    next_call: u64,
}

struct Line {
    tx: mpsc::UnboundedSender<Signal>,
    options: LineOptions,
    off_hook: bool,
    call: Option<NetCallId>,
}

struct NetCall {
    caller: End,
    callee: End,
    /// The caller placed a data call (else voice).
    data: bool,
    answered: bool,
}

#[derive(Clone)]
enum End {
    Line(String),
    Remote(Arc<Remote>),
}

/// The state of a far end that is not a modem on this network: a scripted number or a caller from
/// outside.
struct Remote {
    kind: PartyKind,
    /// The scripted number it answers at (none for callers from outside).
    number: Option<String>,
    /// What it does once answered.
    then: AfterAnswer,
    inner: Mutex<RemoteState>,
}

#[derive(Default)]
struct RemoteState {
    received: Vec<u8>,
    heard: String,
    answered: bool,
    over: bool,
}

impl Remote {
    fn state(&self) -> MutexGuard<'_, RemoteState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Network {
    /// A network with no lines and no scripted numbers.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Net> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Scripts `number`: a call to it meets `far_end`. Replaces an earlier script.
    pub fn far_end(&self, number: impl Into<String>, far_end: FarEnd) {
        self.lock().far_ends.insert(number.into(), far_end);
    }

    /// Numbers of the attached lines.
    pub fn numbers(&self) -> Vec<String> {
        let mut numbers: Vec<String> = self.lock().lines.keys().cloned().collect();
        numbers.sort();
        numbers
    }

    /// Calls in progress (ringing or connected), for leak checks.
    pub fn live_calls(&self) -> usize {
        self.lock().calls.len()
    }

    /// Attaches a line at `number`; signals for it arrive on the returned receiver. Fails if the number is
    /// taken.
    pub(crate) fn attach(
        &self,
        number: &str,
        options: LineOptions,
    ) -> Option<mpsc::UnboundedReceiver<Signal>> {
        let mut net = self.lock();
        if net.lines.contains_key(number) {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        net.lines.insert(
            number.to_owned(),
            Line {
                tx,
                options,
                off_hook: false,
                call: None,
            },
        );
        Some(rx)
    }

    /// Removes a line; its call, if any, ends.
    pub(crate) fn detach(&self, number: &str) {
        let call = self.lock().lines.get(number).and_then(|l| l.call);
        if let Some(call) = call {
            self.hang_up(call, number);
        }
        self.lock().lines.remove(number);
    }

    /// Whether the line at `number` has dial tone.
    pub(crate) fn dial_tone(&self, number: &str) -> bool {
        self.lock()
            .lines
            .get(number)
            .is_some_and(|l| l.options.dial_tone)
    }

    /// Whether `digits` reaches something (an attached line or a script).
    pub(crate) fn routable(&self, digits: &str) -> bool {
        let net = self.lock();
        net.lines.contains_key(digits) || net.far_ends.contains_key(digits)
    }

    /// The line went off or on hook (an off-hook line is busy to callers).
    pub(crate) fn set_off_hook(&self, number: &str, off_hook: bool) {
        if let Some(line) = self.lock().lines.get_mut(number) {
            line.off_hook = off_hook;
        }
    }

    /// Places a call from the line at `from` to `digits`.
    pub(crate) fn place(&self, from: &str, digits: &str, data: bool) -> Result<NetCallId, Refusal> {
        let mut net = self.lock();
        let id = NetCallId(net.next_call);
        if let Some(line) = net.lines.get(digits) {
            if digits == from || line.off_hook || line.call.is_some() {
                return Err(Refusal::Busy);
            }
            let caller = CallerId::number(from);
            let _ = line.tx.send(Signal::Incoming { call: id, caller });
            net.next_call += 1;
            net.calls.insert(
                id,
                NetCall {
                    caller: End::Line(from.to_owned()),
                    callee: End::Line(digits.to_owned()),
                    data,
                    answered: false,
                },
            );
            for n in [from, digits] {
                if let Some(l) = net.lines.get_mut(n) {
                    l.call = Some(id);
                }
            }
            return Ok(id);
        }
        let Some(script) = net.far_ends.get(digits).cloned() else {
            return Err(Refusal::Unreachable);
        };
        let (rings, kind) = match script.answer {
            Answer::Busy => return Err(Refusal::Busy),
            Answer::Unreachable => return Err(Refusal::Unreachable),
            Answer::Never => (None, PartyKind::Voice),
            Answer::AfterRings(n, kind) => (Some(n), kind),
        };
        net.next_call += 1;
        let remote = Arc::new(Remote {
            kind,
            number: Some(digits.to_owned()),
            then: script.then,
            inner: Mutex::default(),
        });
        net.calls.insert(
            id,
            NetCall {
                caller: End::Line(from.to_owned()),
                callee: End::Remote(remote.clone()),
                data,
                answered: false,
            },
        );
        if let Some(l) = net.lines.get_mut(from) {
            l.call = Some(id);
        }
        drop(net);
        if let Some(rings) = rings {
            let network = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(RING_PERIOD * rings).await;
                if network.answer_remote(id, &remote) {
                    network.play(id, remote).await;
                }
            });
        }
        Ok(id)
    }

    /// A remote end answers `call`; false if the call is gone.
    fn answer_remote(&self, call: NetCallId, remote: &Remote) -> bool {
        let mut net = self.lock();
        let Some(c) = net.calls.get_mut(&call) else {
            return false;
        };
        c.answered = true;
        remote.state().answered = true;
        let modem = remote.kind == PartyKind::Modem;
        let caller = c.caller.clone();
        if let End::Line(n) = &caller {
            if let Some(l) = net.lines.get(n) {
                let _ = l.tx.send(Signal::Answered { call, modem });
            }
        }
        true
    }

    /// After answer: presses keys, then hangs up if told to.
    async fn play(&self, call: NetCallId, remote: Arc<Remote>) {
        let start = tokio::time::Instant::now();
        for key in remote.then.presses.chars() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if !self.deliver_from_remote(call, &remote, |call| Signal::Digit { call, digit: key }) {
                return;
            }
        }
        if let Some(after) = remote.then.hang_up_after {
            tokio::time::sleep_until(start + after).await;
            self.remote_hang_up(call, &remote);
        }
    }

    /// Delivers a signal from a remote end to the line at the other end of `call`; false if the call
    /// is gone.
    fn deliver_from_remote(
        &self,
        call: NetCallId,
        remote: &Remote,
        signal: impl FnOnce(NetCallId) -> Signal,
    ) -> bool {
        let net = self.lock();
        if remote.state().over {
            return false;
        }
        let Some(c) = net.calls.get(&call) else {
            return false;
        };
        if let End::Line(n) = other_end(c, None) {
            if let Some(l) = net.lines.get(n) {
                let _ = l.tx.send(signal(call));
            }
        }
        true
    }

    fn remote_hang_up(&self, call: NetCallId, remote: &Remote) {
        let mut net = self.lock();
        remote.state().over = true;
        let Some(c) = net.calls.remove(&call) else {
            return;
        };
        for end in [&c.caller, &c.callee] {
            if let End::Line(n) = end {
                if let Some(l) = net.lines.get_mut(n) {
                    l.call = None;
                    let _ = l.tx.send(Signal::HungUp { call });
                }
            }
        }
    }

    /// The scripted far end at `number` hangs up every call it is in (ringing or answered); returns
    /// whether there was one.
    pub fn hang_up_far_end(&self, number: &str) -> bool {
        let remotes: Vec<(NetCallId, Arc<Remote>)> = self
            .lock()
            .calls
            .iter()
            .filter_map(|(id, c)| match &c.callee {
                End::Remote(r) if r.number.as_deref() == Some(number) => Some((*id, r.clone())),
                _ => None,
            })
            .collect();
        for (id, r) in &remotes {
            self.remote_hang_up(*id, r);
        }
        !remotes.is_empty()
    }

    /// Rings the modem at `number` with a call from outside.
    pub fn ring_in(&self, number: &str, ring_in: RingIn) -> Result<RemoteCall, RingInError> {
        let mut net = self.lock();
        let id = NetCallId(net.next_call);
        let Some(line) = net.lines.get_mut(number) else {
            return Err(RingInError::NoSuchNumber(number.to_owned()));
        };
        if line.off_hook || line.call.is_some() {
            return Err(RingInError::Busy(number.to_owned()));
        }
        line.call = Some(id);
        let _ = line.tx.send(Signal::Incoming {
            call: id,
            caller: ring_in.caller.clone(),
        });
        net.next_call += 1;
        let remote = Arc::new(Remote {
            kind: ring_in.kind,
            number: None,
            then: ring_in.then,
            inner: Mutex::default(),
        });
        net.calls.insert(
            id,
            NetCall {
                caller: End::Remote(remote.clone()),
                callee: End::Line(number.to_owned()),
                data: ring_in.kind == PartyKind::Modem,
                answered: false,
            },
        );
        drop(net);
        if let Some(after) = ring_in.gives_up_after {
            let network = self.clone();
            let remote = remote.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                if !remote.state().answered {
                    network.remote_hang_up(id, &remote);
                }
            });
        }
        Ok(RemoteCall {
            network: self.clone(),
            call: id,
            remote,
        })
    }

    /// The called line answers `call`. Returns whether the other end is a data modem (so the two can
    /// train), or `None` if the call is gone.
    pub(crate) fn answer(&self, call: NetCallId, as_modem: bool) -> Option<bool> {
        let mut net = self.lock();
        let c = net.calls.get_mut(&call)?;
        c.answered = true;
        let data = c.data;
        let caller = c.caller.clone();
        match caller {
            End::Line(n) => {
                if let Some(l) = net.lines.get(&n) {
                    let _ = l.tx.send(Signal::Answered {
                        call,
                        modem: as_modem,
                    });
                }
                Some(data)
            }
            End::Remote(remote) => {
                remote.state().answered = true;
                let modem = remote.kind == PartyKind::Modem;
                drop(net);
                let network = self.clone();
                tokio::spawn(async move { network.play(call, remote).await });
                Some(modem)
            }
        }
    }

    /// The line at `from` hung up `call`.
    pub(crate) fn hang_up(&self, call: NetCallId, from: &str) {
        let mut net = self.lock();
        let Some(c) = net.calls.remove(&call) else {
            return;
        };
        for end in [&c.caller, &c.callee] {
            match end {
                End::Line(n) => {
                    if let Some(l) = net.lines.get_mut(n) {
                        l.call = None;
                        if n != from {
                            let _ = l.tx.send(Signal::HungUp { call });
                        }
                    }
                }
                End::Remote(r) => r.state().over = true,
            }
        }
    }

    /// Bytes from the line at `from` on a data call.
    pub(crate) fn send_data(&self, call: NetCallId, from: &str, bytes: &[u8]) {
        self.to_other(
            call,
            from,
            |call| Signal::Data {
                call,
                bytes: bytes.to_vec(),
            },
            |r| r.received.extend_from_slice(bytes),
        );
    }

    /// A key pressed (a tone sent) by the line at `from`.
    pub(crate) fn send_digit(&self, call: NetCallId, from: &str, digit: char) {
        self.to_other(
            call,
            from,
            |call| Signal::Digit { call, digit },
            |r| {
                r.heard.push(digit);
            },
        );
    }

    fn to_other(
        &self,
        call: NetCallId,
        from: &str,
        signal: impl FnOnce(NetCallId) -> Signal,
        remote: impl FnOnce(&mut RemoteState),
    ) {
        let net = self.lock();
        let Some(c) = net.calls.get(&call) else {
            return;
        };
        match other_end(c, Some(from)) {
            End::Line(n) => {
                if let Some(l) = net.lines.get(n) {
                    let _ = l.tx.send(signal(call));
                }
            }
            End::Remote(r) => remote(&mut r.state()),
        }
    }
}

/// The end of `call` that is not the line `from` (with `None`: the line end of a call with one remote
/// end).
fn other_end<'a>(c: &'a NetCall, from: Option<&str>) -> &'a End {
    let caller_is = |f: Option<&str>| match (&c.caller, f) {
        (End::Line(n), Some(f)) => n == f,
        (End::Remote(_), None) => true,
        _ => false,
    };
    if caller_is(from) {
        &c.callee
    } else {
        &c.caller
    }
}

/// The far end of a call rung in from outside: hang it up, press keys, send data, see what it received.
#[derive(Clone)]
pub struct RemoteCall {
    network: Network,
    call: NetCallId,
    remote: Arc<Remote>,
}

impl fmt::Debug for RemoteCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteCall")
            .field("call", &self.call)
            .field("answered", &self.is_answered())
            .field("over", &self.is_over())
            .finish()
    }
}

impl RemoteCall {
    /// Hangs up (gives up ringing, or ends the answered call).
    pub fn hang_up(&self) {
        self.network.remote_hang_up(self.call, &self.remote);
    }
    /// Presses a key (voice calls: the modem reports it as `<DLE><key>` in voice mode).
    pub fn press(&self, key: char) {
        self.network
            .deliver_from_remote(self.call, &self.remote, |call| Signal::Digit {
                call,
                digit: key,
            });
    }
    /// Sends bytes over an answered data call.
    pub fn send(&self, bytes: &[u8]) {
        let bytes = bytes.to_vec();
        self.network
            .deliver_from_remote(self.call, &self.remote, |call| Signal::Data { call, bytes });
    }
    /// Every byte received over the data call so far.
    pub fn received(&self) -> Vec<u8> {
        self.remote.state().received.clone()
    }
    /// Every key (tone) heard from the modem so far.
    pub fn heard(&self) -> String {
        self.remote.state().heard.clone()
    }
    /// Whether the modem answered.
    pub fn is_answered(&self) -> bool {
        self.remote.state().answered
    }
    /// Whether the call is over.
    pub fn is_over(&self) -> bool {
        self.remote.state().over
    }
}
