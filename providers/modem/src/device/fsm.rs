//! The modem itself, without I/O: bytes, network signals, DTR and the clock go in; bytes for the host
//! come out. The task in [`super`] drives it; everything here is synchronous and deterministic.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use super::SimModemConfig;
use super::parse::{Command, ExtOp, parse};
use super::profile::{Code, Profile, reg};
use crate::network::{CallerId, CallerNumber, NetCallId, Network, Refusal, Signal};

/// Longest command body kept (after `AT`); a longer line is discarded with `ERROR`.
const MAX_LINE: usize = 255;
/// Ringing stops counting (S1 returns to 0) this long after the last ring.
const RING_COUNT_RESET: Duration = Duration::from_secs(8);
/// Caller ID arrives this long after the start of the first ring (in the silence before the second).
const CALLER_ID_DELAY: Duration = Duration::from_secs(3);
/// Time to recognise dial tone when waiting for it.
const DIAL_TONE_DETECT: Duration = Duration::from_millis(500);
/// Silence that counts as a quiet answer (`@`).
const QUIET_ANSWER: Duration = Duration::from_secs(5);
/// `<DLE>`.
pub(crate) const DLE: u8 = 0x10;

/// Where the modem is (reference §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// On hook, reading commands (an incoming call may be ringing).
    Command,
    /// Off hook, reading commands: after `ATD…;`, `ATH1`, `AT+VLS=1`, or with a voice call up.
    OffHook,
    /// Dialling; any byte from the host aborts.
    Dialing,
    /// Waiting for the far end to answer and train, at most S7; any byte aborts.
    Handshake,
    /// Answering, at most S7; any byte aborts.
    Answering,
    /// Connected; bytes go to the far end.
    Online,
    /// Connected, reading commands (after `+++` or DTR with `&D1`).
    OnlineCommand,
}

/// Which caller-ID format is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallerIdFormat {
    Off,
    /// `+VCID=1`: `NMBR=5551234`.
    Compact,
    /// `#CID=1`: `NMBR = 5551234`.
    Spaced,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Wait for dial tone (or blind-dial after S6).
    DialTone,
    /// Send one digit.
    Digit(char, bool),
    /// `,`.
    Pause,
    /// `W`: wait for a second dial tone.
    WaitTone,
    /// `@`: wait for a quiet answer.
    Quiet,
    /// `!`: hook flash.
    Flash,
    /// `$`: wait for the billing tone.
    Billing,
}

struct Dialing {
    steps: VecDeque<Step>,
    /// The step whose time is running.
    current: Option<Step>,
    partial: bool,
    /// Waiting for the far end to answer before the quiet period of `@` can start.
    awaiting_quiet: bool,
}

/// The call this modem's line is part of.
#[derive(Clone, Copy, Debug)]
struct Call {
    id: NetCallId,
    answered: bool,
    /// The far end is a data modem (known once answered).
    peer_modem: bool,
}

struct Ringing {
    call: NetCallId,
    caller: CallerId,
}

#[derive(Default)]
struct Timers {
    dial: Option<Instant>,
    carrier: Option<Instant>,
    train: Option<Instant>,
    ring: Option<Instant>,
    caller_id: Option<Instant>,
    ring_count_reset: Option<Instant>,
    escape: Option<Instant>,
    dtr: Option<Instant>,
    tones: Option<Instant>,
}

impl Timers {
    fn next(&self) -> Option<Instant> {
        [
            self.dial,
            self.carrier,
            self.train,
            self.ring,
            self.caller_id,
            self.ring_count_reset,
            self.escape,
            self.dtr,
            self.tones,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Turns host bytes into command lines (reference §1.1).
#[derive(Default)]
struct Framer {
    state: FrameState,
    buf: Vec<u8>,
    overflow: bool,
    last: Vec<u8>,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum FrameState {
    #[default]
    Idle,
    /// Saw `A` (`false`) or `a` (`true`).
    SawA(bool),
    Line,
}

enum Framed {
    Line(Vec<u8>),
    Overflow,
}

impl Framer {
    fn push(&mut self, b: u8, cr: u8, bs: u8) -> Option<Framed> {
        match self.state {
            FrameState::Idle | FrameState::SawA(_) if b == b'A' || b == b'a' => {
                self.state = FrameState::SawA(b == b'a');
                None
            }
            FrameState::SawA(lower) if b == if lower { b't' } else { b'T' } => {
                self.state = FrameState::Line;
                self.buf.clear();
                self.overflow = false;
                None
            }
            FrameState::SawA(_) if b == b'/' => {
                self.state = FrameState::Idle;
                Some(Framed::Line(self.last.clone()))
            }
            FrameState::Idle | FrameState::SawA(_) => {
                self.state = FrameState::Idle;
                None
            }
            FrameState::Line if b == cr => {
                self.state = FrameState::Idle;
                if self.overflow {
                    return Some(Framed::Overflow);
                }
                self.last = self.buf.clone();
                Some(Framed::Line(std::mem::take(&mut self.buf)))
            }
            FrameState::Line if b == bs => {
                self.buf.pop();
                None
            }
            FrameState::Line if !(0x20..0x7f).contains(&b) => None,
            FrameState::Line => {
                if self.buf.len() >= MAX_LINE {
                    self.overflow = true;
                } else {
                    self.buf.push(b);
                }
                None
            }
        }
    }
}

/// What one command did.
enum Outcome {
    /// Go on with the next command.
    Next,
    /// Stop with `ERROR`.
    Error,
    /// Stop; the result comes later (dial, answer, tones) or was already sent.
    Stop,
}

/// The simulated modem's state.
pub(crate) struct Machine {
    config: SimModemConfig,
    number: String,
    net: Network,
    factory: Profile,
    stored: Profile,
    active: Profile,
    framer: Framer,
    mode: Mode,
    off_hook: bool,
    voice: bool,
    caller_id: CallerIdFormat,
    tone_duration: u32,
    settings: HashMap<String, String>,
    stored_numbers: [String; 4],
    last_dial: String,
    call: Option<Call>,
    ringing: Option<Ringing>,
    dialing: Option<Dialing>,
    dialed: String,
    timers: Timers,
    dtr: bool,
    dcd: bool,
    plus_count: u8,
    last_data_byte: Instant,
    out: Vec<u8>,
}

impl Machine {
    pub(crate) fn new(config: SimModemConfig, number: String, net: Network, now: Instant) -> Self {
        Self {
            config,
            number,
            net,
            factory: Profile::default(),
            stored: Profile::default(),
            active: Profile::default(),
            framer: Framer::default(),
            mode: Mode::Command,
            off_hook: false,
            voice: false,
            caller_id: CallerIdFormat::Off,
            tone_duration: 10,
            settings: HashMap::new(),
            stored_numbers: Default::default(),
            last_dial: String::new(),
            call: None,
            ringing: None,
            dialing: None,
            dialed: String::new(),
            timers: Timers::default(),
            dtr: true,
            dcd: false,
            plus_count: 0,
            last_data_byte: now,
            out: Vec::new(),
        }
    }

    pub(crate) fn number(&self) -> &str {
        &self.number
    }
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }
    pub(crate) fn off_hook(&self) -> bool {
        self.off_hook
    }
    /// The DCD line as the host sees it.
    pub(crate) fn dcd(&self) -> bool {
        self.dcd || !self.active.dcd_follows_carrier
    }
    pub(crate) fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    // ---- output ----

    fn result(&mut self, code: Code) {
        let code = match code {
            Code::Connect(_) if self.active.x == 0 => Code::Connect(None),
            c => c,
        };
        debug!(number = %self.number, ?code, "result");
        self.active
            .frame_result(code, &self.config.no_dialtone_text, &mut self.out);
    }
    fn info(&mut self, text: &str) {
        self.active.frame_info(text, &mut self.out);
    }
    fn connect_code(&self) -> Code {
        Code::Connect(Some(self.config.connect_rate))
    }

    // ---- host bytes ----

    pub(crate) fn input(&mut self, now: Instant, bytes: &[u8]) {
        let mut data = Vec::new();
        for &b in bytes {
            match self.mode {
                Mode::Online => {
                    self.data_byte(now, b);
                    data.push(b);
                }
                Mode::Dialing | Mode::Handshake | Mode::Answering => {
                    debug!(number = %self.number, "host byte aborts the call attempt");
                    self.hang_up();
                    self.result(Code::NoCarrier);
                }
                Mode::Command | Mode::OffHook | Mode::OnlineCommand => self.command_byte(now, b),
            }
        }
        if let (false, Some(call)) = (data.is_empty(), self.call) {
            self.net.send_data(call.id, &self.number, &data);
        }
    }

    fn command_byte(&mut self, now: Instant, b: u8) {
        if self.active.echo {
            self.out.push(b);
        }
        let (cr, bs) = (self.active.s[reg::CR], self.active.s[reg::BS]);
        match self.framer.push(b, cr, bs) {
            None => {}
            Some(Framed::Overflow) => self.result(Code::Error),
            Some(Framed::Line(body)) => self.execute(now, &body),
        }
    }

    /// `+++` detection (reference §1.6); every byte still goes to the far end.
    fn data_byte(&mut self, now: Instant, b: u8) {
        let guard = self.guard();
        let gap = now.saturating_duration_since(self.last_data_byte);
        self.last_data_byte = now;
        let Some(guard) = guard.filter(|_| b == self.active.s[reg::ESCAPE]) else {
            self.plus_count = 0;
            self.timers.escape = None;
            return;
        };
        self.plus_count = match self.plus_count {
            0 if gap >= guard => 1,
            0 => 0,
            n @ 1..=2 if gap < guard => n + 1,
            _ if gap >= guard => 1,
            _ => 0,
        };
        self.timers.escape = (self.plus_count == 3).then(|| now + guard);
    }

    /// The escape guard time, or `None` when escape is disabled.
    fn guard(&self) -> Option<Duration> {
        let s12 = self.active.s[reg::GUARD];
        (s12 != 0 && self.active.s[reg::ESCAPE] <= 127)
            .then(|| Duration::from_millis(u64::from(s12) * 20))
    }

    // ---- command execution ----

    fn execute(&mut self, now: Instant, body: &[u8]) {
        debug!(number = %self.number, line = %String::from_utf8_lossy(body), "command");
        for cmd in parse(body) {
            match self.run(now, cmd) {
                Outcome::Next => {}
                Outcome::Error => {
                    self.result(Code::Error);
                    return;
                }
                Outcome::Stop => return,
            }
        }
        self.result(Code::Ok);
    }

    fn run(&mut self, now: Instant, cmd: Command) -> Outcome {
        match cmd {
            Command::Invalid => Outcome::Error,
            Command::Basic {
                prefix,
                letter,
                value,
            } => self.basic(prefix, letter, value),
            Command::SetRegister(r, v) => {
                let (Ok(r), Ok(v)) = (usize::try_from(r), u8::try_from(v)) else {
                    return Outcome::Error;
                };
                if r > 255 || r == reg::RING_COUNT {
                    return Outcome::Error;
                }
                self.active.s[r] = v;
                Outcome::Next
            }
            Command::ReadRegister(r) => match usize::try_from(r).ok().filter(|r| *r <= 255) {
                Some(r) => {
                    let v = self.active.s[r];
                    self.info(&format!("{v:03}"));
                    Outcome::Next
                }
                None => Outcome::Error,
            },
            Command::StoreNumber(slot, number) => {
                match self.stored_numbers.get_mut(slot as usize) {
                    Some(s) => {
                        *s = number;
                        Outcome::Next
                    }
                    None => Outcome::Error,
                }
            }
            Command::Reset => {
                self.hang_up();
                self.active = self.stored.clone();
                Outcome::Next
            }
            Command::Dial(s) => self.dial(now, &s),
            Command::Answer => self.answer(now),
            Command::Online => {
                if self.mode == Mode::OnlineCommand {
                    self.mode = Mode::Online;
                    self.last_data_byte = now;
                    self.plus_count = 0;
                    let code = self.connect_code();
                    self.result(code);
                } else {
                    self.result(Code::NoCarrier);
                }
                Outcome::Stop
            }
            Command::Extended { prefix, name, op } => self.extended(now, prefix, &name, op),
        }
    }

    fn basic(&mut self, prefix: Option<char>, letter: char, value: Option<u32>) -> Outcome {
        let v = value.unwrap_or(0);
        let ok = |cond: bool| if cond { Outcome::Next } else { Outcome::Error };
        let bit = |p: &mut bool| {
            if v <= 1 {
                *p = v == 1;
                Outcome::Next
            } else {
                Outcome::Error
            }
        };
        match (prefix, letter) {
            (None, 'E') => bit(&mut self.active.echo),
            (None, 'Q') => bit(&mut self.active.quiet),
            (None, 'V') => bit(&mut self.active.verbose),
            (None, 'X') if v <= 4 => {
                self.active.x = v as u8;
                Outcome::Next
            }
            (None, 'H') => match v {
                0 => {
                    if self.ringing.is_none() || self.off_hook {
                        self.hang_up();
                    }
                    Outcome::Next
                }
                1 => {
                    self.go_off_hook_idle();
                    Outcome::Next
                }
                _ => Outcome::Error,
            },
            (None, 'I') => self.identify(v),
            (None, 'T') | (None, 'P') if value.is_none() => {
                self.active.pulse = letter == 'P';
                Outcome::Next
            }
            (None, 'L' | 'M') => ok(v <= 3),
            (None, 'B' | 'N' | 'Y') => ok(v <= 1),
            (None, 'W') => ok(v <= 2),
            (None, 'S') => Outcome::Next,
            (Some('&'), 'C') => bit(&mut self.active.dcd_follows_carrier),
            (Some('&'), 'D') if v <= 3 => {
                self.active.dtr_mode = v as u8;
                Outcome::Next
            }
            (Some('&'), 'F') if v == 0 => {
                self.active = self.factory.clone();
                Outcome::Next
            }
            (Some('&'), 'W') if v <= 1 => {
                self.stored = self.active.clone();
                Outcome::Next
            }
            (Some('&'), 'V') => {
                let p = &self.active;
                let text = format!(
                    "E{} Q{} V{} X{} &C{} &D{} S00:{:03} S07:{:03} S12:{:03}",
                    u8::from(p.echo),
                    u8::from(p.quiet),
                    u8::from(p.verbose),
                    p.x,
                    u8::from(p.dcd_follows_carrier),
                    p.dtr_mode,
                    p.s[0],
                    p.s[7],
                    p.s[12]
                );
                self.info("ACTIVE PROFILE:");
                self.info(&text);
                Outcome::Next
            }
            (Some('&'), 'K') => ok(matches!(v, 0 | 3 | 4)),
            (Some('&'), 'Q') => ok(v <= 9),
            (Some('&'), 'S' | 'Y') => ok(v <= 1),
            (Some('\\'), 'N') => ok(v <= 7),
            (Some('%'), 'C') => ok(v <= 3),
            _ => Outcome::Error,
        }
    }

    fn identify(&mut self, n: u32) -> Outcome {
        let text = match n {
            0 => self.config.product_code.clone(),
            1 => "000".to_owned(),
            2 => return Outcome::Next,
            3 => self.config.revision.clone(),
            4 => format!("{} {}", self.config.manufacturer, self.config.model),
            5..=9 => self.config.model.clone(),
            _ => return Outcome::Error,
        };
        self.info(&text);
        Outcome::Next
    }

    fn extended(&mut self, now: Instant, prefix: char, name: &str, op: ExtOp) -> Outcome {
        match (prefix, name, op) {
            ('+', "GMI", ExtOp::Execute) => self.info_next(self.config.manufacturer.clone()),
            ('+', "GMM", ExtOp::Execute) => self.info_next(self.config.model.clone()),
            ('+', "GMR", ExtOp::Execute) => self.info_next(self.config.revision.clone()),
            ('+', "GSN", ExtOp::Execute) => self.info_next(self.config.serial.clone()),
            ('+', "GCAP", ExtOp::Execute) => self.info_next("+GCAP: +FCLASS,+MS,+ES,+DS".into()),
            ('+', "FCLASS", ExtOp::Test) => {
                let classes = if self.config.voice { "0,8" } else { "0" };
                self.info_next(classes.into())
            }
            ('+', "FCLASS", ExtOp::Read) => {
                self.info_next(if self.voice { "8" } else { "0" }.into())
            }
            ('+', "FCLASS", ExtOp::Set(v)) => match v.as_str() {
                "0" | "0.0" => {
                    self.voice = false;
                    Outcome::Next
                }
                "8" | "8.0" if self.config.voice => {
                    self.voice = true;
                    Outcome::Next
                }
                _ => Outcome::Error,
            },
            ('+', "VCID", op) | ('#', "CID", op) => {
                let format = if prefix == '+' {
                    CallerIdFormat::Compact
                } else {
                    CallerIdFormat::Spaced
                };
                match op {
                    ExtOp::Set(v) if v == "0" => {
                        self.caller_id = CallerIdFormat::Off;
                        Outcome::Next
                    }
                    ExtOp::Set(v) if v == "1" => {
                        self.caller_id = format;
                        Outcome::Next
                    }
                    ExtOp::Read => {
                        let on = self.caller_id == format;
                        self.info_next(if on { "1" } else { "0" }.into())
                    }
                    ExtOp::Test => self.info_next("(0-1)".into()),
                    _ => Outcome::Error,
                }
            }
            ('+', "VLS", ExtOp::Set(v)) if self.voice => match v.as_str() {
                "0" => {
                    self.hang_up();
                    Outcome::Next
                }
                "1" | "5" | "7" => {
                    self.go_off_hook_idle();
                    Outcome::Next
                }
                _ => Outcome::Error,
            },
            ('+', "VTD", ExtOp::Set(v)) => match v.parse::<u32>() {
                Ok(d @ 1..=255) => {
                    self.tone_duration = d;
                    Outcome::Next
                }
                _ => Outcome::Error,
            },
            ('+', "VTD", ExtOp::Read) => self.info_next(self.tone_duration.to_string()),
            ('+', "VTS", ExtOp::Set(v)) if self.voice && self.off_hook => self.tones(now, &v),
            (
                '+',
                "VSM" | "VSD" | "VGT" | "VGR" | "VRA" | "VRN" | "VIT" | "VNH" | "VDR" | "IFC"
                | "MR" | "DR" | "ER" | "ES" | "DS" | "MS",
                op,
            ) => match op {
                ExtOp::Set(v) => {
                    self.settings.insert(name.to_owned(), v);
                    Outcome::Next
                }
                ExtOp::Read => {
                    let v = self
                        .settings
                        .get(name)
                        .cloned()
                        .unwrap_or_else(|| "0".into());
                    self.info_next(v)
                }
                ExtOp::Test | ExtOp::Execute => Outcome::Next,
            },
            _ => Outcome::Error,
        }
    }

    fn info_next(&mut self, text: String) -> Outcome {
        self.info(&text);
        Outcome::Next
    }

    /// `+VTS`: each element plays for its duration; the digits reach the far end; OK at the end.
    fn tones(&mut self, now: Instant, list: &str) -> Outcome {
        let unit = Duration::from_millis(10);
        let mut total = Duration::ZERO;
        let mut digits = Vec::new();
        let mut rest = list;
        while !rest.is_empty() {
            let (element, tail) = match rest.as_bytes()[0] {
                b'[' | b'{' => {
                    let close = if rest.starts_with('[') { ']' } else { '}' };
                    let Some(end) = rest.find(close) else {
                        return Outcome::Error;
                    };
                    (&rest[..=end], &rest[end + 1..])
                }
                _ => match rest.find(',') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, ""),
                },
            };
            rest = tail.strip_prefix(',').unwrap_or(tail);
            match element.as_bytes() {
                [c] if is_dtmf(char::from(*c)) => {
                    digits.push(char::from(*c).to_ascii_uppercase());
                    total += unit * self.tone_duration;
                }
                [b'[', ..] => {
                    let parts: Vec<&str> = element[1..element.len() - 1].split(',').collect();
                    let Some(d) = parts.get(2).and_then(|d| d.trim().parse::<u32>().ok()) else {
                        return Outcome::Error;
                    };
                    total += unit * d;
                }
                [b'{', ..] => {
                    let parts: Vec<&str> = element[1..element.len() - 1].split(',').collect();
                    match (parts.first().map(|c| c.trim()), parts.get(1)) {
                        (Some(c), Some(d)) if c.len() == 1 && c.chars().all(is_dtmf) => {
                            let Ok(d) = d.trim().parse::<u32>() else {
                                return Outcome::Error;
                            };
                            digits.extend(c.chars().map(|c| c.to_ascii_uppercase()));
                            total += unit * d;
                        }
                        _ => return Outcome::Error,
                    }
                }
                _ => return Outcome::Error,
            }
        }
        if let Some(call) = self.call {
            for d in digits {
                self.net.send_digit(call.id, &self.number, d);
            }
        }
        self.timers.tones = Some(now + total);
        Outcome::Stop
    }

    // ---- hook and calls ----

    fn set_off_hook(&mut self, off: bool) {
        if self.off_hook != off {
            self.off_hook = off;
            self.net.set_off_hook(&self.number, off);
        }
    }

    /// `ATH1` / `AT+VLS=1`: off hook. A ringing call is answered at the exchange (as voice in voice mode;
    /// in data mode the caller is connected to nothing).
    fn go_off_hook_idle(&mut self) {
        if let Some(r) = self.ringing.take() {
            self.stop_ringing();
            let peer_modem = self.net.answer(r.call, false);
            if let Some(peer_modem) = peer_modem {
                self.call = Some(Call {
                    id: r.call,
                    answered: true,
                    peer_modem,
                });
            }
        }
        self.set_off_hook(true);
        if matches!(self.mode, Mode::Command) {
            self.mode = Mode::OffHook;
        }
    }

    fn stop_ringing(&mut self) {
        self.timers.ring = None;
        self.timers.caller_id = None;
    }

    /// Ends whatever call or attempt there is and goes on hook (an unanswered incoming call keeps
    /// ringing).
    fn hang_up(&mut self) {
        if let Some(call) = self.call.take() {
            self.net.hang_up(call.id, &self.number);
        }
        self.dialing = None;
        self.dialed.clear();
        self.set_off_hook(false);
        self.dcd = false;
        self.mode = Mode::Command;
        self.timers.dial = None;
        self.timers.carrier = None;
        self.timers.train = None;
        self.timers.escape = None;
        self.timers.tones = None;
    }

    fn refuse_off_hook(&self) -> bool {
        !self.dtr && self.active.dtr_mode >= 2
    }

    fn dial(&mut self, now: Instant, s: &str) -> Outcome {
        if !matches!(self.mode, Mode::Command | Mode::OffHook)
            || self.ringing.is_some()
            || self.refuse_off_hook()
        {
            return Outcome::Error;
        }
        let upper = s.to_ascii_uppercase();
        let mut s = upper.as_str();
        let stored;
        if let Some(rest) = s.strip_prefix('L') {
            if self.last_dial.is_empty() || !rest.trim().is_empty() {
                return Outcome::Error;
            }
            stored = self.last_dial.clone();
            s = stored.as_str();
        } else if let Some(slot) = s.strip_prefix("S=") {
            let Some(n) = slot
                .trim_end_matches(';')
                .parse::<usize>()
                .ok()
                .and_then(|i| self.stored_numbers.get(i))
            else {
                return Outcome::Error;
            };
            stored = format!("{n}{}", if slot.ends_with(';') { ";" } else { "" });
            s = stored.as_str();
        }
        let partial = s.ends_with(';');
        let body = s.strip_suffix(';').unwrap_or(s);
        let mut pulse = self.active.pulse;
        let mut steps = VecDeque::new();
        if !self.off_hook {
            steps.push_back(Step::DialTone);
        }
        for c in body.chars() {
            match c {
                '0'..='9' => steps.push_back(Step::Digit(c, pulse)),
                '*' | '#' | 'A'..='D' if !pulse => steps.push_back(Step::Digit(c, false)),
                'T' => pulse = false,
                'P' => pulse = true,
                ',' => steps.push_back(Step::Pause),
                'W' => steps.push_back(Step::WaitTone),
                '@' => steps.push_back(Step::Quiet),
                '!' => steps.push_back(Step::Flash),
                '$' => steps.push_back(Step::Billing),
                ' ' | '-' | '(' | ')' | 'R' | '^' => {}
                _ => return Outcome::Error,
            }
        }
        self.last_dial = s.to_owned();
        debug!(number = %self.number, dial = %s, "dialling");
        self.set_off_hook(true);
        self.mode = Mode::Dialing;
        self.dialing = Some(Dialing {
            steps,
            current: None,
            partial,
            awaiting_quiet: false,
        });
        self.advance_dial(now);
        Outcome::Stop
    }

    /// Starts the next dial step, or finishes dialling.
    fn advance_dial(&mut self, now: Instant) {
        let Some(d) = self.dialing.as_mut() else {
            return;
        };
        let Some(step) = d.steps.pop_front() else {
            self.dial_done(now);
            return;
        };
        d.current = Some(step);
        let s = self.active.s;
        let secs = |r: usize| Duration::from_secs(u64::from(s[r]));
        let waits_for_tone = matches!(self.active.x, 2 | 4);
        let duration = match step {
            Step::DialTone if waits_for_tone && self.net.dial_tone(&self.number) => {
                DIAL_TONE_DETECT
            }
            Step::DialTone => secs(reg::BLIND_WAIT),
            Step::WaitTone => DIAL_TONE_DETECT,
            Step::Digit(_, false) => Duration::from_millis(2 * u64::from(s[reg::DTMF])),
            Step::Digit(c, true) => {
                let pulses = c.to_digit(10).map_or(10, |d| if d == 0 { 10 } else { d });
                Duration::from_millis(100 * u64::from(pulses) + 700)
            }
            Step::Pause => secs(reg::COMMA),
            Step::Flash => Duration::from_millis(10 * u64::from(s[reg::FLASH])),
            Step::Billing => Duration::from_secs(2),
            Step::Quiet => {
                // Place the call with the digits so far, then wait for it to be answered and go quiet.
                if self.call.is_none() && !self.place(now) {
                    return;
                }
                if let Some(d) = self.dialing.as_mut() {
                    d.awaiting_quiet = true;
                }
                let s7 = secs(reg::CARRIER_WAIT);
                self.timers.carrier = Some(now + s7);
                if self.call.is_some_and(|c| c.answered) {
                    self.quiet_answer(now);
                }
                return;
            }
        };
        self.timers.dial = Some(now + duration);
    }

    /// The far end answered while waiting for a quiet answer: silence must follow.
    fn quiet_answer(&mut self, now: Instant) {
        if let Some(d) = self.dialing.as_mut() {
            d.awaiting_quiet = false;
        }
        self.timers.carrier = None;
        self.timers.dial = Some(now + QUIET_ANSWER);
    }

    /// The running dial step's time is up.
    fn dial_step_done(&mut self, now: Instant) {
        let Some(step) = self.dialing.as_mut().and_then(|d| d.current.take()) else {
            return;
        };
        let waits_for_tone = matches!(self.active.x, 2 | 4);
        match step {
            Step::DialTone | Step::WaitTone
                if waits_for_tone && !self.net.dial_tone(&self.number) =>
            {
                self.hang_up();
                self.result(Code::NoDialTone);
                return;
            }
            Step::Digit(c, _) => match self.call {
                Some(call) => self.net.send_digit(call.id, &self.number, c),
                None => self.dialed.push(c),
            },
            _ => {}
        }
        self.advance_dial(now);
    }

    /// Places the call with the digits dialled so far; on refusal ends the attempt with the result code.
    fn place(&mut self, _now: Instant) -> bool {
        let data = !self.voice;
        let digits = self.dialed.clone();
        match self.net.place(&self.number, &digits, data) {
            Ok(id) => {
                self.call = Some(Call {
                    id,
                    answered: false,
                    peer_modem: false,
                });
                true
            }
            Err(refusal) => {
                self.hang_up();
                let code = match refusal {
                    Refusal::Busy if matches!(self.active.x, 3 | 4) => Code::Busy,
                    Refusal::Busy | Refusal::Unreachable => Code::NoCarrier,
                };
                self.result(code);
                false
            }
        }
    }

    fn dial_done(&mut self, now: Instant) {
        let partial = self.dialing.take().is_some_and(|d| d.partial);
        self.timers.dial = None;
        if partial {
            if self.call.is_none() && self.net.routable(&self.dialed) && !self.place(now) {
                return;
            }
            self.mode = Mode::OffHook;
            self.result(Code::Ok);
            return;
        }
        if self.call.is_none() && !self.place(now) {
            return;
        }
        self.mode = Mode::Handshake;
        self.timers.carrier = Some(now + self.carrier_wait());
        if let Some(call) = self.call {
            if call.answered {
                self.answered(now, call.peer_modem);
            }
        }
    }

    fn carrier_wait(&self) -> Duration {
        Duration::from_secs(u64::from(self.active.s[reg::CARRIER_WAIT]))
    }

    /// The far end of the call this modem placed answered.
    fn answered(&mut self, now: Instant, peer_modem: bool) {
        if let Some(call) = self.call.as_mut() {
            call.answered = true;
            call.peer_modem = peer_modem;
        }
        if self.dialing.as_ref().is_some_and(|d| d.awaiting_quiet) {
            self.quiet_answer(now);
            return;
        }
        if self.mode != Mode::Handshake {
            return;
        }
        if self.voice {
            self.timers.carrier = None;
            self.mode = Mode::OffHook;
            self.result(Code::Vcon);
        } else if peer_modem {
            self.timers.train = Some(now + self.config.training);
        }
    }

    fn answer(&mut self, now: Instant) -> Outcome {
        if self.mode != Mode::Command || self.refuse_off_hook() {
            return Outcome::Error;
        }
        let ringing = self.ringing.take();
        self.stop_ringing();
        if self.voice {
            let Some(r) = ringing else {
                return Outcome::Error;
            };
            self.set_off_hook(true);
            let peer_modem = self.net.answer(r.call, false);
            self.call = peer_modem.map(|peer_modem| Call {
                id: r.call,
                answered: true,
                peer_modem,
            });
            self.mode = Mode::OffHook;
            self.result(Code::Vcon);
            return Outcome::Stop;
        }
        self.set_off_hook(true);
        self.mode = Mode::Answering;
        self.timers.carrier = Some(now + self.carrier_wait());
        if let Some(r) = ringing {
            if let Some(peer_modem) = self.net.answer(r.call, true) {
                self.call = Some(Call {
                    id: r.call,
                    answered: true,
                    peer_modem,
                });
                if peer_modem {
                    self.timers.train = Some(now + self.config.training);
                }
            }
        }
        Outcome::Stop
    }

    // ---- the line ----

    pub(crate) fn signal(&mut self, now: Instant, signal: Signal) {
        match signal {
            Signal::Incoming { call, caller } => {
                if self.ringing.is_some() || self.call.is_some() || self.off_hook {
                    // The network only rings an idle line; a race with our own off-hook loses.
                    self.net.hang_up(call, &self.number);
                    return;
                }
                self.ringing = Some(Ringing { call, caller });
                self.timers.caller_id = Some(now + CALLER_ID_DELAY);
                self.ring(now);
            }
            Signal::Answered { call, modem } => {
                if self.call.is_some_and(|c| c.id == call) {
                    self.answered(now, modem);
                }
            }
            Signal::Data { call, bytes } => {
                if self.mode == Mode::Online && self.call.is_some_and(|c| c.id == call) {
                    self.out.extend_from_slice(&bytes);
                }
            }
            Signal::Digit { call, digit } => {
                if self.voice && self.off_hook && self.call.is_some_and(|c| c.id == call) {
                    self.out.push(DLE);
                    self.out.push(digit as u8);
                }
            }
            Signal::HungUp { call } => self.far_end_hung_up(call),
        }
    }

    fn far_end_hung_up(&mut self, call: NetCallId) {
        if self.ringing.as_ref().is_some_and(|r| r.call == call) {
            debug!(number = %self.number, "caller gave up");
            self.ringing = None;
            self.stop_ringing();
            return;
        }
        if !self.call.is_some_and(|c| c.id == call) {
            return;
        }
        match self.mode {
            Mode::OffHook => {
                self.call = None;
                if self.voice {
                    // Busy (reorder) tone after the far end hangs up.
                    self.out.extend_from_slice(&[DLE, b'b']);
                }
            }
            Mode::Command => self.call = None,
            _ => {
                self.call = None;
                self.hang_up();
                self.result(Code::NoCarrier);
            }
        }
    }

    fn ring(&mut self, now: Instant) {
        self.result(Code::Ring);
        let count = self.active.s[reg::RING_COUNT].saturating_add(1);
        self.active.s[reg::RING_COUNT] = count;
        self.timers.ring = Some(now + self.config.ring_period);
        self.timers.ring_count_reset = Some(now + RING_COUNT_RESET);
        let auto = self.active.s[reg::AUTO_ANSWER];
        if auto > 0 && count >= auto && self.dtr {
            let _ = self.answer(now);
        }
    }

    fn caller_id(&mut self) {
        let (Some(r), sep) = (
            self.ringing.as_ref(),
            match self.caller_id {
                CallerIdFormat::Off => return,
                CallerIdFormat::Compact => "=",
                CallerIdFormat::Spaced => " = ",
            },
        ) else {
            return;
        };
        let (month, day, hour, minute) = r.caller.when.unwrap_or_else(utc_now);
        let mut lines = vec![
            format!("DATE{sep}{month:02}{day:02}"),
            format!("TIME{sep}{hour:02}{minute:02}"),
        ];
        let named = match &r.caller.number {
            CallerNumber::Number(n) => {
                lines.push(format!("NMBR{sep}{n}"));
                true
            }
            CallerNumber::Withheld => {
                lines.push(format!("NMBR{sep}P"));
                false
            }
            CallerNumber::OutOfArea => {
                lines.push(format!("NMBR{sep}O"));
                false
            }
        };
        if let (true, Some(name)) = (named, &r.caller.name) {
            lines.push(format!("NAME{sep}{name}"));
        }
        for line in lines {
            self.info(&line);
        }
    }

    // ---- DTR and the clock ----

    pub(crate) fn set_dtr(&mut self, now: Instant, high: bool) {
        self.dtr = high;
        self.timers.dtr = if high || self.active.dtr_mode == 0 {
            None
        } else {
            Some(now + Duration::from_millis(10 * u64::from(self.active.s[reg::DTR_LOW])))
        };
    }

    pub(crate) fn timer(&mut self, now: Instant) {
        let due = |t: &mut Option<Instant>| {
            if t.is_some_and(|t| t <= now) {
                *t = None;
                true
            } else {
                false
            }
        };
        if due(&mut self.timers.dial) {
            self.dial_step_done(now);
        }
        if due(&mut self.timers.carrier) {
            let quiet = self.dialing.as_ref().is_some_and(|d| d.awaiting_quiet);
            self.hang_up();
            self.result(if quiet {
                Code::NoAnswer
            } else {
                Code::NoCarrier
            });
        }
        if due(&mut self.timers.train) {
            self.timers.carrier = None;
            self.mode = Mode::Online;
            self.dcd = true;
            self.last_data_byte = now;
            self.plus_count = 0;
            let code = self.connect_code();
            self.result(code);
        }
        if due(&mut self.timers.ring) && self.ringing.is_some() {
            self.ring(now);
        }
        if due(&mut self.timers.caller_id) {
            self.caller_id();
        }
        if due(&mut self.timers.ring_count_reset) {
            self.active.s[reg::RING_COUNT] = 0;
        }
        if due(&mut self.timers.escape) && self.plus_count == 3 && self.mode == Mode::Online {
            self.plus_count = 0;
            self.mode = Mode::OnlineCommand;
            self.result(Code::Ok);
        }
        if due(&mut self.timers.tones) {
            self.result(Code::Ok);
        }
        if due(&mut self.timers.dtr) && !self.dtr {
            self.dtr_dropped();
        }
    }

    fn dtr_dropped(&mut self) {
        let in_call = matches!(self.mode, Mode::Online | Mode::OnlineCommand);
        match self.active.dtr_mode {
            1 if self.mode == Mode::Online => {
                self.mode = Mode::OnlineCommand;
                self.plus_count = 0;
                self.result(Code::Ok);
            }
            2 | 3 if self.off_hook => {
                let reset = self.active.dtr_mode == 3;
                self.hang_up();
                if reset {
                    self.active = self.stored.clone();
                }
                if in_call {
                    self.result(Code::NoCarrier);
                }
            }
            3 => self.active = self.stored.clone(),
            _ => {}
        }
    }

    /// The modem is going away: leave the network.
    pub(crate) fn detach(&mut self) {
        self.hang_up();
        if let Some(r) = self.ringing.take() {
            self.net.hang_up(r.call, &self.number);
        }
        self.net.detach(&self.number);
    }
}

/// Modems take DTMF digits in either case.
fn is_dtmf(c: char) -> bool {
    tapir_core::dial::is_dtmf_digit(c.to_ascii_uppercase())
}

/// Month, day, hour and minute in UTC, for caller ID when the call does not fix them.
fn utc_now() -> (u8, u8, u8, u8) {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    // Each is in range for a u8 (month 1–12, day 1–31, hour 0–23, minute 0–59).
    let field = |v: i8| u8::try_from(v).unwrap_or(0);
    (
        field(now.month()),
        field(now.day()),
        field(now.hour()),
        field(now.minute()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn device() -> Machine {
        let net = Network::new();
        let rx = net.attach("100", Default::default());
        std::mem::forget(rx);
        Machine::new(SimModemConfig::default(), "100".into(), net, Instant::now())
    }

    proptest! {
        /// Whatever the host sends, the modem neither panics nor ends up with DCD on without a call.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut d = device();
            let now = Instant::now();
            d.input(now, &bytes);
            d.timer(now + Duration::from_secs(3600));
            d.input(now + Duration::from_secs(3601), b"\rAT\r");
            prop_assert!(d.call.is_none() || d.off_hook);
            prop_assert!(!(d.dcd && d.call.is_none()));
        }

        /// A line whose first command is not a command draws ERROR and changes nothing.
        #[test]
        fn a_rejected_line_changes_nothing(
            first in "[!-/:-@\\[-`{-~]",
            rest in "[ -~]{0,80}",
        ) {
            let mut d = device();
            let now = Instant::now();
            d.input(now, b"ATE0\r");
            d.take_output();
            let before = (d.active.clone(), d.stored.clone(), d.mode, d.off_hook, d.voice);
            let line = format!("AT{first}{rest}\r");
            // `+`, `#`, `&`, `\`, `%` and `;` may start a valid command; the rest never do.
            prop_assume!(!matches!(first.as_str(), "+" | "#" | "&" | "\\" | "%" | ";"));
            d.input(now, line.as_bytes());
            prop_assert_eq!(d.take_output(), b"\r\nERROR\r\n".to_vec());
            prop_assert_eq!((d.active.clone(), d.stored.clone(), d.mode, d.off_hook, d.voice), before);
        }
    }
}
