//! The back-to-back user agent as a value: lines, their registrations, the calls on them, and the SIP
//! dialogs (channels) each call is made of. Changed through `&mut self` with the time fed in; what
//! it wants done comes out of [`Switch::poll`] — SIP to send (for the stack), reports for the engine,
//! and the results of the provider's operations. It does no I/O and reads no clock, so every flow and
//! every race is a unit test (`switch/tests.rs`).
//!
//! ## The model
//!
//! A **leg** is a call as seen on one line (the provider's `CallLegId`). It has a *phone side* — the
//! dialog(s) with its line's phone (several while the phone's contacts ring, one once answered) — and
//! a *far side*: another line's leg (an internal call), a dialog with the outside (the trunk), or
//! nothing yet (dial tone). Media is bridged between the leg's phone dialog and its far side's dialog:
//! each is told the other's media address, so RTP flows end to end and tapir never touches it.
//!
//! Every dialog's description is *derived*: what tapir sends on a dialog is its bridge partner's
//! media with a direction worked out from what each side wants and who holds whom. When a bridge or a
//! hold changes, [`Switch::sync`] re-offers wherever what a dialog should have differs from what it
//! was sent — one rule for hold, unhold, a phone's own hold and a call that comes together.

use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use tapir_core::caps::{AddressCaps, AddressFeatureSet, LineCaps};
use tapir_core::dial::DialString;
use tapir_core::gate::{AddressOperation, CallOperation, FeatureSet};
use tapir_core::info::{CallInfo, CallOrigin, PartyId};
use tapir_core::media::MediaModes;
use tapir_core::params::{DigitMode, MakeCall, RequestId};
use tapir_core::state::{
    CallState, CallStateKind, ConnectedMode, DialToneMode, DisconnectReason, OfferingMode,
    transition_allowed,
};
use tapir_core::{AddressId, CallId, CallLegId, Error, LineId};
use tapir_provider::{LineEvent, NewCall, ProviderEvent};

use crate::cause;
use crate::channel::{Channel, ChannelId, Phase, Reoffer, Way};
use crate::digest::{DigestResponse, NonceState, Nonces};
use crate::registrar::{Binding, Register, Registered, Registrar};
use crate::sdp::{Flow, Sdp};
use crate::settings::{SipSettings, SipTarget, SipTiming};

#[cfg(test)]
mod tests;

/// A server transaction waiting for the switch's answer (a REGISTER, an INVITE it refuses, a
/// re-INVITE). The stack numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TxId(pub(crate) u64);

/// A provider operation in progress. The provider numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct OpId(pub(crate) u64);

/// A new INVITE, as the switch reads it.
#[derive(Clone, Debug)]
pub(crate) struct Invite {
    /// The From user (who claims to call).
    pub(crate) from_user: String,
    /// The From display name.
    pub(crate) from_name: Option<String>,
    /// The Request-URI user (who is called).
    pub(crate) to_user: String,
    /// Where it came from.
    pub(crate) source: SocketAddr,
    /// The body, if it is a session description.
    pub(crate) sdp: Option<Vec<u8>>,
    /// The digest answer it carried.
    pub(crate) auth: Option<DigestResponse>,
}

/// What the stack tells the switch.
#[derive(Clone, Debug)]
pub(crate) enum SipEvent {
    /// A REGISTER for the user `user`, with the digest answer it carried.
    Register {
        tx: TxId,
        user: String,
        auth: Option<DigestResponse>,
        request: Register,
    },
    /// An INVITE that starts a dialog.
    Invite { tx: TxId, invite: Invite },
    /// A provisional response to tapir's INVITE on `ch` (100 is not reported).
    Progress {
        ch: ChannelId,
        status: u16,
        sdp: Option<Vec<u8>>,
    },
    /// A 2xx to tapir's INVITE on `ch` (the stack has acknowledged it).
    Answered { ch: ChannelId, sdp: Option<Vec<u8>> },
    /// A final failure to tapir's INVITE on `ch`, or its time-out (408) or transport failure (503).
    Failed { ch: ChannelId, status: u16 },
    /// The peer cancelled its INVITE on `ch` before tapir answered it.
    Cancelled { ch: ChannelId },
    /// The peer ended the dialog `ch` (BYE), or it ended under the stack (no ACK, transport).
    Ended { ch: ChannelId },
    /// The peer re-INVITEd on `ch`; the answer goes to `tx`.
    Reoffer {
        ch: ChannelId,
        tx: TxId,
        sdp: Option<Vec<u8>>,
    },
    /// The answer to tapir's re-INVITE on `ch`: a 2xx with the peer's description, or the status.
    Reoffered {
        ch: ChannelId,
        result: Result<Option<Vec<u8>>, u16>,
    },
    /// A digit the peer of `ch` sent (INFO).
    Digit { ch: ChannelId, digit: char },
    /// The digits tapir sent on `ch` for `op` were delivered (`true`) or refused.
    DigitsSent { op: OpId, ok: bool },
}

/// A provider operation, handed to the switch.
#[derive(Clone, Debug)]
pub(crate) enum Command {
    MakeCall(MakeCall),
    Dial(CallLegId, DialString),
    Accept(CallLegId),
    Answer(CallLegId),
    Reject(CallLegId),
    Drop(CallLegId),
    Hold(CallLegId),
    Unhold(CallLegId),
    GenerateDigits(CallLegId, String, DigitMode),
    MonitorDigits(CallLegId, bool),
}

/// What a finished operation returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Done {
    Unit,
    Leg(CallLegId),
}

/// A SIP party as headers name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Party {
    pub(crate) user: String,
    pub(crate) name: Option<String>,
}

/// What the switch wants the stack to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SipAction {
    /// Answer a transaction with `status`; `challenge` adds `WWW-Authenticate`, `contacts` the
    /// bindings of a REGISTER's 200, `min_expires` a 423's `Min-Expires`.
    Respond {
        tx: TxId,
        status: u16,
        challenge: Option<String>,
        contacts: Vec<(String, u32)>,
        min_expires: Option<u32>,
    },
    /// Take the INVITE `tx` as the dialog `ch` (the stack answers 100 and keeps it).
    Adopt { tx: TxId, ch: ChannelId },
    /// 180 on the inbound `ch`, or 183 with a description.
    Ring { ch: ChannelId, sdp: Option<String> },
    /// 200 with a description on the inbound `ch`.
    Answer { ch: ChannelId, sdp: String },
    /// A final failure on the inbound `ch`.
    Refuse { ch: ChannelId, status: u16 },
    /// Send an INVITE on the new dialog `ch`.
    Invite {
        ch: ChannelId,
        uri: String,
        addr: SocketAddr,
        tcp: bool,
        from: Party,
        to: Party,
        sdp: String,
        auto_answer: bool,
    },
    /// CANCEL the unanswered INVITE of `ch`.
    Cancel { ch: ChannelId },
    /// BYE on `ch`.
    Bye { ch: ChannelId },
    /// re-INVITE on `ch` with this offer.
    Reoffer { ch: ChannelId, sdp: String },
    /// Answer the peer's re-INVITE `tx`.
    AnswerReoffer {
        tx: TxId,
        status: u16,
        sdp: Option<String>,
    },
    /// Send these digits (INFO, one per digit, in order) on `ch`, then report `DigitsSent` for
    /// `op` (a relayed digit has none).
    Digits {
        ch: ChannelId,
        digits: String,
        op: Option<OpId>,
    },
}

/// Everything that comes out of the switch.
#[derive(Clone, Debug)]
pub(crate) enum Output {
    Sip(SipAction),
    Report(ProviderEvent),
    Done(OpId, Result<Done, Error>),
}

/// A line: a SIP account.
#[derive(Debug)]
struct Line {
    number: Arc<str>,
    name: Arc<str>,
    password: Option<String>,
    auto_answer: bool,
    /// The address of its fixed device, which is trusted without a password.
    fixed: Option<SocketAddr>,
    in_service: bool,
}

impl Line {
    fn party(&self) -> PartyId {
        PartyId::named(self.number.clone(), self.name.clone())
    }
    fn sip(&self) -> Party {
        Party {
            user: self.number.to_string(),
            name: Some(self.name.to_string()),
        }
    }
}

/// The far side of a leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Far {
    /// Nothing yet (dial tone), or gone.
    None,
    /// Another line's leg: an internal call.
    Leg(CallLegId),
    /// A dialog with the outside.
    Outside(ChannelId),
}

/// A call on a line.
#[derive(Debug)]
struct Leg {
    line: usize,
    state: CallState,
    info: Arc<CallInfo>,
    /// The dialogs with the line's phone: several while its contacts ring, one once it answered (or
    /// the one it called from); empty when it hung up.
    phone: Vec<ChannelId>,
    far: Far,
    /// Held by an application (tapir re-INVITEd both sides).
    held: bool,
    /// The phone itself holds (it re-INVITEd with `sendonly`/`inactive`).
    phone_holds: bool,
    /// Digits detected on the call are reported.
    digits: bool,
    /// Reported to the engine (a call tapir places is not until its phone answers).
    reported: bool,
    /// The request that created it, echoed in its new-call report.
    request: Option<RequestId>,
    /// A make-call waiting for the phone to answer.
    setup: Option<OpId>,
    /// Digits dialled so far in a partial dial.
    dialled: String,
}

/// A provider operation in progress.
#[derive(Debug)]
struct Op {
    kind: OpKind,
    /// Re-INVITEs it waits for.
    waiting: u32,
    /// The first failure of one of them.
    failure: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    /// Making a call from a line; done when its phone answers (and the destination is dialled).
    MakeCall(CallLegId),
    Hold(CallLegId),
    Unhold(CallLegId),
    /// Asking the phone to answer; done when it has.
    Answer(CallLegId),
    Digits,
}

/// Something set for later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// A registration may have lapsed.
    Registrations,
    /// The leg's phone has rung too long.
    NoAnswer(CallLegId),
    /// The phone of a call tapir places has not answered in time.
    PhoneAnswer(OpId),
    /// A re-INVITE that met glare may go again.
    Retry(ChannelId),
}

/// How a channel relates to a leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// It is (one of) the leg's phone dialogs.
    Phone,
    /// It is the leg's far side (the outside).
    Far,
}

/// The back-to-back user agent.
pub(crate) struct Switch {
    lines: Vec<Line>,
    by_number: HashMap<Arc<str>, usize>,
    trunk: Option<SipTarget>,
    realm: String,
    timing: SipTiming,
    local: IpAddr,
    registrar: Registrar,
    nonces: Nonces,
    channels: HashMap<ChannelId, Channel>,
    links: HashMap<ChannelId, (CallLegId, Role)>,
    legs: BTreeMap<CallLegId, Leg>,
    ops: HashMap<OpId, Op>,
    /// Operations waiting on each channel's re-INVITE.
    waiters: HashMap<ChannelId, Vec<OpId>>,
    timers: BinaryHeap<std::cmp::Reverse<(Instant, u64, Timer)>>,
    /// Where a call being placed goes once its phone answers.
    pending_dest: HashMap<OpId, DialString>,
    out: VecDeque<Output>,
    next: u64,
    /// The time of the latest input (for rules that run from a completion).
    last_now: Instant,
}

impl Switch {
    /// A switch for `settings` (already checked), started at `now`.
    pub(crate) fn new(settings: &SipSettings, now: Instant) -> Result<Self, Error> {
        settings.check().map_err(|e| Error::InvalidParameter {
            reason: e.to_string(),
        })?;
        let parse =
            |t: &str| SipTarget::parse(t).map_err(|reason| Error::InvalidParameter { reason });
        let trunk = settings.trunk.as_deref().map(parse).transpose()?;
        let mut lines = Vec::new();
        let mut fixed = Vec::new();
        let mut by_number = HashMap::new();
        for (i, l) in settings.lines.iter().enumerate() {
            let contact = l.contact.as_deref().map(parse).transpose()?;
            fixed.push(
                contact
                    .as_ref()
                    .map(|c| Binding::fixed(c.uri.clone(), c.addr, c.tcp)),
            );
            let number: Arc<str> = l.number.as_str().into();
            by_number.insert(number.clone(), i);
            lines.push(Line {
                number,
                name: l.name.as_str().into(),
                password: l.password.clone(),
                auto_answer: l.auto_answer,
                fixed: contact.map(|c| c.addr),
                // The engine takes a line to be in service until told otherwise.
                in_service: true,
            });
        }
        let local = match settings.listen.ip() {
            ip if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            ip => ip,
        };
        Ok(Self {
            lines,
            by_number,
            trunk,
            realm: settings.realm.clone(),
            timing: settings.timing,
            local,
            registrar: Registrar::new(fixed, settings.timing),
            nonces: Nonces::new(now, std::time::Duration::from_secs(300)),
            channels: HashMap::new(),
            links: HashMap::new(),
            legs: BTreeMap::new(),
            ops: HashMap::new(),
            waiters: HashMap::new(),
            timers: BinaryHeap::new(),
            pending_dest: HashMap::new(),
            out: VecDeque::new(),
            next: 1,
            last_now: now,
        })
    }

    /// The capabilities of each line.
    pub(crate) fn caps(&self) -> Vec<LineCaps> {
        self.lines
            .iter()
            .map(|l| {
                let mut ops = vec![
                    CallOperation::Accept,
                    CallOperation::Reject,
                    CallOperation::Drop,
                    CallOperation::Dial,
                    CallOperation::Hold,
                    CallOperation::Unhold,
                    CallOperation::GenerateDigits,
                    CallOperation::MonitorDigits,
                ];
                if l.auto_answer {
                    ops.push(CallOperation::Answer);
                }
                let mut address = AddressCaps::basic(l.number.to_string());
                address.call_features = FeatureSet::from_slice(&ops);
                address.address_features =
                    AddressFeatureSet::from_slice(&[AddressOperation::MakeCall]);
                address.max_active_calls = 1;
                address.max_on_hold = 1;
                LineCaps {
                    name: format!("{} ({})", l.name, l.number),
                    addresses: vec![address],
                    media_modes: MediaModes::INTERACTIVE_VOICE,
                    dial: Default::default(),
                    answer_mode: Default::default(),
                }
            })
            .collect()
    }

    /// Reports the lines' first service state; call once the engine listens.
    pub(crate) fn start(&mut self, now: Instant) {
        for i in 0..self.lines.len() {
            self.line_service(i);
        }
        if let Some(t) = self.registrar.next_expiry() {
            self.at(t, Timer::Registrations);
        }
        let _ = now;
    }

    /// The next thing that comes out, if any.
    pub(crate) fn poll(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Switch::timeout`] should next be called.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|t| t.0.0)
    }

    /// Whether the switch holds any call or dialog (for leak checks).
    pub(crate) fn is_quiet(&self) -> bool {
        self.legs.is_empty() && self.channels.is_empty() && self.ops.is_empty()
    }

    /// How many contacts each line has, by number.
    pub(crate) fn registrations(&self) -> Vec<(String, Vec<String>)> {
        self.lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                (
                    l.number.to_string(),
                    self.registrar
                        .contacts(i)
                        .iter()
                        .map(|b| b.contact.clone())
                        .collect(),
                )
            })
            .collect()
    }

    fn id(&mut self) -> u64 {
        let n = self.next;
        self.next += 1;
        n
    }

    fn at(&mut self, when: Instant, timer: Timer) {
        let seq = self.id();
        self.timers.push(std::cmp::Reverse((when, seq, timer)));
    }

    fn sip(&mut self, a: SipAction) {
        self.out.push_back(Output::Sip(a));
    }

    fn report(&mut self, e: ProviderEvent) {
        self.out.push_back(Output::Report(e));
    }

    fn done(&mut self, op: OpId, r: Result<Done, Error>) {
        self.ops.remove(&op);
        self.out.push_back(Output::Done(op, r));
    }

    fn respond(&mut self, tx: TxId, status: u16) {
        self.sip(SipAction::Respond {
            tx,
            status,
            challenge: None,
            contacts: Vec::new(),
            min_expires: None,
        });
    }

    // ---------------------------------------------------------------------------------------------
    // Time.

    /// Runs everything due by `now`.
    pub(crate) fn timeout(&mut self, now: Instant) {
        self.last_now = now;
        while let Some(std::cmp::Reverse((when, _, timer))) = self.timers.peek().copied() {
            if when > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Registrations => {
                    for line in self.registrar.expire(now) {
                        self.line_service(line);
                    }
                    if let Some(t) = self.registrar.next_expiry() {
                        self.at(t, Timer::Registrations);
                    }
                }
                Timer::NoAnswer(leg) => {
                    let ringing = self.legs.get(&leg).is_some_and(|l| {
                        matches!(
                            l.state.kind(),
                            CallStateKind::Offering | CallStateKind::Accepted
                        ) && l.setup.is_none()
                    });
                    if ringing {
                        self.unanswered(leg, CallState::Disconnected(DisconnectReason::NoAnswer));
                    }
                }
                Timer::PhoneAnswer(op) => {
                    if let Some(Op {
                        kind: OpKind::MakeCall(leg),
                        ..
                    }) = self.ops.get(&op)
                    {
                        let leg = *leg;
                        let line = self.legs.get(&leg).map(|l| l.line).unwrap_or_default();
                        let number = self.lines[line].number.clone();
                        self.end_phone(leg, 480);
                        self.forget_leg(leg);
                        self.done(
                            op,
                            Err(Error::OperationFailed {
                                reason: format!("the phone of line {number} did not answer"),
                            }),
                        );
                    }
                }
                Timer::Retry(ch) => {
                    if let Some(c) = self.channels.get_mut(&ch) {
                        c.retry_at = None;
                    }
                    self.sync(ch, now);
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Registrations.

    fn line_service(&mut self, line: usize) {
        let reachable = self.registrar.reachable(line);
        let l = &mut self.lines[line];
        if l.in_service == reachable {
            return;
        }
        l.in_service = reachable;
        let event = if reachable {
            LineEvent::InService
        } else {
            LineEvent::OutOfService {
                reason: format!("line {}: no phone is registered", l.number),
            }
        };
        self.report(ProviderEvent::Line {
            line: LineId(line as u32),
            event,
        });
    }

    /// Checks a request's digest answer for `line`. `Ok(())` when it proves the line's password;
    /// otherwise the response to send has been queued.
    fn authenticate(
        &mut self,
        now: Instant,
        tx: TxId,
        line: usize,
        method: &str,
        auth: Option<&DigestResponse>,
    ) -> Result<(), ()> {
        let Some(password) = self.lines[line].password.clone() else {
            self.respond(tx, 403);
            return Err(());
        };
        let stale = match auth {
            Some(a) if a.realm == self.realm && a.username == *self.lines[line].number => {
                match self.nonces.check(&a.nonce, now) {
                    NonceState::Fresh if a.verify(method, &password) => return Ok(()),
                    // A wrong password: refused, not challenged again (a phone with a wrong
                    // password would otherwise loop).
                    NonceState::Fresh => {
                        self.respond(tx, 403);
                        return Err(());
                    }
                    NonceState::Stale => true,
                    NonceState::Forged => false,
                }
            }
            _ => false,
        };
        let nonce = self.nonces.mint(now);
        let challenge = crate::digest::challenge(&self.realm, &nonce, stale);
        self.sip(SipAction::Respond {
            tx,
            status: 401,
            challenge: Some(challenge),
            contacts: Vec::new(),
            min_expires: None,
        });
        Err(())
    }

    fn on_register(
        &mut self,
        now: Instant,
        tx: TxId,
        user: &str,
        auth: Option<DigestResponse>,
        request: Register,
    ) {
        let Some(&line) = self.by_number.get(user) else {
            self.respond(tx, 404);
            return;
        };
        if self
            .authenticate(now, tx, line, "REGISTER", auth.as_ref())
            .is_err()
        {
            return;
        }
        match self.registrar.register(now, line, &request) {
            Registered::Ok(contacts) => {
                self.sip(SipAction::Respond {
                    tx,
                    status: 200,
                    challenge: None,
                    contacts,
                    min_expires: None,
                });
                self.line_service(line);
                if let Some(t) = self.registrar.next_expiry() {
                    self.at(t, Timer::Registrations);
                }
            }
            Registered::TooBrief(min) => self.sip(SipAction::Respond {
                tx,
                status: 423,
                challenge: None,
                contacts: Vec::new(),
                min_expires: Some(min),
            }),
            Registered::Bad(_) => self.respond(tx, 400),
            Registered::TooMany => self.respond(tx, 403),
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Events from the stack.

    /// Handles what the stack reports.
    pub(crate) fn sip_event(&mut self, now: Instant, event: SipEvent) {
        self.last_now = now;
        match event {
            SipEvent::Register {
                tx,
                user,
                auth,
                request,
            } => self.on_register(now, tx, &user, auth, request),
            SipEvent::Invite { tx, invite } => self.on_invite(now, tx, invite),
            SipEvent::Progress { ch, status, sdp } => self.on_progress(ch, status, sdp),
            SipEvent::Answered { ch, sdp } => self.on_answered(now, ch, sdp),
            SipEvent::Failed { ch, status } => self.on_failed(ch, status),
            SipEvent::Cancelled { ch } | SipEvent::Ended { ch } => self.on_ended(ch),
            SipEvent::Reoffer { ch, tx, sdp } => self.on_reoffer(now, ch, tx, sdp),
            SipEvent::Reoffered { ch, result } => self.on_reoffered(now, ch, result),
            SipEvent::Digit { ch, digit } => self.on_digit(ch, digit),
            SipEvent::DigitsSent { op, ok } => {
                if self.ops.contains_key(&op) {
                    let r = if ok {
                        Ok(Done::Unit)
                    } else {
                        Err(Error::OperationFailed {
                            reason: "the far end refused the digits".into(),
                        })
                    };
                    self.done(op, r);
                }
            }
        }
    }

    fn new_channel(&mut self, ch: Channel) -> ChannelId {
        let id = ChannelId(self.id());
        self.channels.insert(id, ch);
        id
    }

    fn origin_id(&mut self) -> u64 {
        // Origin session IDs only need to be unique per dialog; the switch's counter is.
        self.id()
    }

    fn on_invite(&mut self, now: Instant, tx: TxId, inv: Invite) {
        let from_trunk = self.trunk.as_ref().is_some_and(|t| t.addr == inv.source);
        let caller_line = if from_trunk {
            None
        } else {
            match self.by_number.get(inv.from_user.as_str()).copied() {
                Some(line) => {
                    let trusted = self.lines[line].fixed == Some(inv.source);
                    if !trusted
                        && self
                            .authenticate(now, tx, line, "INVITE", inv.auth.as_ref())
                            .is_err()
                    {
                        return;
                    }
                    Some(line)
                }
                None => {
                    // Only the trunk and the lines may place calls.
                    self.respond(tx, 403);
                    return;
                }
            }
        };
        let offer = match inv.sdp.as_deref().map(Sdp::parse) {
            Some(Ok(o)) => o,
            // A call without an offer (or with one tapir cannot read) cannot be bridged.
            _ => {
                self.respond(tx, 488);
                return;
            }
        };
        let target_line = self.by_number.get(inv.to_user.as_str()).copied();
        match (caller_line, target_line) {
            (None, None) => self.respond(tx, 404),
            (None, Some(line)) => {
                // From outside to a line.
                if !self.registrar.reachable(line) {
                    self.respond(tx, 480);
                    return;
                }
                let origin = self.origin_id();
                let ch = self.new_channel(Channel::inbound(offer, origin));
                self.sip(SipAction::Adopt { tx, ch });
                let caller = party_of(&inv);
                let call_id = CallId(self.id());
                let info = CallInfo {
                    call_id,
                    origin: CallOrigin::External,
                    media_mode: MediaModes::INTERACTIVE_VOICE,
                    caller,
                    called: self.lines[line].party(),
                    ..CallInfo::default()
                };
                let leg = self.offer_leg(now, line, info, Far::Outside(ch));
                self.links.insert(ch, (leg, Role::Far));
            }
            (Some(from), to) => {
                // From a line's phone: an internal call, or out through the trunk.
                if to.is_none() && self.trunk.is_none() {
                    self.respond(tx, 404);
                    return;
                }
                let origin = self.origin_id();
                let ch = self.new_channel(Channel::inbound(offer, origin));
                self.sip(SipAction::Adopt { tx, ch });
                let call_id = CallId(self.id());
                let info = CallInfo {
                    call_id,
                    origin: CallOrigin::Outbound,
                    media_mode: MediaModes::INTERACTIVE_VOICE,
                    caller: self.lines[from].party(),
                    called: PartyId::number(inv.to_user.as_str()),
                    ..CallInfo::default()
                };
                let leg = CallLegId(self.id());
                self.legs.insert(
                    leg,
                    Leg {
                        line: from,
                        state: CallState::Dialing,
                        info: Arc::new(info),
                        phone: vec![ch],
                        far: Far::None,
                        held: false,
                        phone_holds: false,
                        digits: false,
                        reported: false,
                        request: None,
                        setup: None,
                        dialled: String::new(),
                    },
                );
                self.links.insert(ch, (leg, Role::Phone));
                self.announce(leg);
                self.place(now, leg, &inv.to_user);
            }
        }
    }

    /// Creates a leg offered on `line` and rings its phone's contacts.
    fn offer_leg(&mut self, now: Instant, line: usize, info: CallInfo, far: Far) -> CallLegId {
        let leg = CallLegId(self.id());
        self.legs.insert(
            leg,
            Leg {
                line,
                state: CallState::Offering(OfferingMode::Active),
                info: Arc::new(info),
                phone: Vec::new(),
                far,
                held: false,
                phone_holds: false,
                digits: false,
                reported: false,
                request: None,
                setup: None,
                dialled: String::new(),
            },
        );
        self.announce(leg);
        self.ring(leg, false);
        self.at(now + self.timing.no_answer, Timer::NoAnswer(leg));
        leg
    }

    /// Sends INVITEs to every contact of the leg's line (the first to answer wins), offering the
    /// far side's media.
    fn ring(&mut self, leg: CallLegId, auto_answer: bool) {
        let Some(l) = self.legs.get(&leg) else { return };
        let line = l.line;
        let caller = l.info.caller.clone();
        let far_sdp = self.far_media(leg);
        let contacts = self.registrar.contacts(line).to_vec();
        let from = Party {
            user: caller.number.as_deref().unwrap_or("anonymous").to_owned(),
            name: caller.name.as_deref().map(str::to_owned),
        };
        let to = self.lines[line].sip();
        for b in contacts {
            let origin = self.origin_id();
            let mut c = Channel::outbound(origin);
            c.auto_answer = auto_answer;
            let rendered = match &far_sdp {
                Some((sdp, flow)) => c.local.relay(sdp, None, *flow),
                None => {
                    c.placeholder = true;
                    c.local.placeholder(self.local)
                }
            };
            let sdp = c.local.sent(rendered);
            let ch = self.new_channel(c);
            self.links.insert(ch, (leg, Role::Phone));
            if let Some(l) = self.legs.get_mut(&leg) {
                l.phone.push(ch);
            }
            self.sip(SipAction::Invite {
                ch,
                uri: b.contact.clone(),
                addr: b.addr,
                tcp: b.tcp,
                from: from.clone(),
                to: to.clone(),
                sdp,
                auto_answer,
            });
        }
    }

    /// The media of the far side of `leg` and the flow to offer with it, if the far side has any.
    fn far_media(&self, leg: CallLegId) -> Option<(Sdp, Flow)> {
        let l = self.legs.get(&leg)?;
        let ch = match l.far {
            Far::Outside(ch) => ch,
            Far::Leg(other) => *self.legs.get(&other)?.phone.first()?,
            Far::None => return None,
        };
        let c = self.channels.get(&ch)?;
        Some((c.remote.clone()?, c.wants))
    }

    /// Dials `number` for `leg` (whose phone is there): another line, or the trunk.
    fn place(&mut self, now: Instant, leg: CallLegId, number: &str) {
        let Some(l) = self.legs.get(&leg) else { return };
        let from_line = l.line;
        let call_id = l.info.call_id;
        if let Some(&to_line) = self.by_number.get(number) {
            if to_line == from_line {
                // A line calling itself hears busy.
                self.fail_setup(leg, CallState::Busy(tapir_core::state::BusyMode::Station));
                return;
            }
            if !self.registrar.reachable(to_line) {
                self.fail_setup(leg, CallState::Disconnected(DisconnectReason::Unavailable));
                return;
            }
            let info = CallInfo {
                call_id,
                origin: CallOrigin::Internal,
                media_mode: MediaModes::INTERACTIVE_VOICE,
                caller: self.lines[from_line].party(),
                called: self.lines[to_line].party(),
                ..CallInfo::default()
            };
            self.set_called(leg, self.lines[to_line].party());
            let other = self.offer_leg(now, to_line, info, Far::Leg(leg));
            if let Some(l) = self.legs.get_mut(&leg) {
                l.far = Far::Leg(other);
            }
            self.set_state(leg, CallState::Proceeding);
            return;
        }
        let Some(trunk) = self.trunk.clone() else {
            self.fail_setup(leg, CallState::Disconnected(DisconnectReason::BadAddress));
            return;
        };
        self.set_called(leg, PartyId::number(number));
        let (sdp, flow) = match self.legs.get(&leg).and_then(|l| l.phone.first()) {
            Some(p) => match self.channels.get(p) {
                Some(c) => match &c.remote {
                    Some(r) => (r.clone(), c.wants),
                    None => return,
                },
                None => return,
            },
            None => return,
        };
        let origin = self.origin_id();
        let mut c = Channel::outbound(origin);
        let rendered = c.local.relay(&sdp, None, flow);
        let sdp = c.local.sent(rendered);
        let ch = self.new_channel(c);
        self.links.insert(ch, (leg, Role::Far));
        if let Some(l) = self.legs.get_mut(&leg) {
            l.far = Far::Outside(ch);
        }
        let host = trunk.addr;
        self.sip(SipAction::Invite {
            ch,
            uri: format!("sip:{number}@{host}"),
            addr: trunk.addr,
            tcp: trunk.tcp,
            from: self.lines[from_line].sip(),
            to: Party {
                user: number.to_owned(),
                name: None,
            },
            sdp,
            auto_answer: false,
        });
        self.set_state(leg, CallState::Proceeding);
    }

    fn set_called(&mut self, leg: CallLegId, called: PartyId) {
        if let Some(l) = self.legs.get_mut(&leg) {
            let mut info = (*l.info).clone();
            info.called = called;
            self.update_info(leg, info);
        }
    }

    fn on_progress(&mut self, ch: ChannelId, status: u16, sdp: Option<Vec<u8>>) {
        let Some(&(leg, role)) = self.links.get(&ch) else {
            return;
        };
        if let Some(c) = self.channels.get_mut(&ch) {
            if c.phase == Phase::Setup {
                c.phase = Phase::Early;
            }
        }
        if status < 180 {
            return;
        }
        let early = sdp.as_deref().and_then(|b| Sdp::parse(b).ok());
        match role {
            Role::Phone => {
                // The leg's phone rings: tell its far side.
                let Some(l) = self.legs.get(&leg) else { return };
                if l.setup.is_some() {
                    // A call tapir places: its own phone rings; nothing to relay.
                    return;
                }
                match l.far {
                    Far::Leg(caller) => {
                        self.relay_ringing(caller, early.as_ref());
                    }
                    Far::Outside(t) => {
                        self.early_to(t, early.as_ref());
                    }
                    Far::None => {}
                }
            }
            Role::Far => {
                // The outside rings for this leg.
                self.set_state(leg, CallState::Ringback);
                let phone = self.legs.get(&leg).and_then(|l| l.phone.first().copied());
                if let Some(p) = phone {
                    self.early_to(p, early.as_ref());
                }
            }
        }
    }

    /// The caller's leg hears ringback; its phone (if it called in) is told.
    fn relay_ringing(&mut self, caller: CallLegId, early: Option<&Sdp>) {
        if self
            .legs
            .get(&caller)
            .is_some_and(|l| l.state.kind() == CallStateKind::Ringback)
        {
            return;
        }
        self.set_state(caller, CallState::Ringback);
        let phone = self
            .legs
            .get(&caller)
            .and_then(|l| l.phone.first().copied());
        if let Some(p) = phone {
            self.early_to(p, early);
        }
    }

    /// 180 (or 183 with early media) on an inbound dialog still waiting for its answer.
    fn early_to(&mut self, ch: ChannelId, early: Option<&Sdp>) {
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        if c.way != Way::In || c.is_up() || c.is_ended() {
            return;
        }
        c.phase = Phase::Early;
        let sdp = match (early, c.unanswered.as_ref()) {
            (Some(e), Some(offer)) => {
                let flow = c.wants.answer().and(e.direction());
                let r = c.local.relay(e, Some(offer), flow);
                Some(c.local.sent(r))
            }
            _ => None,
        };
        self.sip(SipAction::Ring { ch, sdp });
    }

    fn on_answered(&mut self, now: Instant, ch: ChannelId, sdp: Option<Vec<u8>>) {
        let Some(&(leg, role)) = self.links.get(&ch) else {
            return;
        };
        let answer = sdp.as_deref().and_then(|b| Sdp::parse(b).ok());
        let Some(answer) = answer else {
            // A 2xx without a usable answer: the dialog cannot carry media; end it.
            self.end_channel(ch, 488);
            self.on_failed(ch, 488);
            return;
        };
        if let Some(c) = self.channels.get_mut(&ch) {
            c.phase = Phase::Up;
            let offered = c.wants;
            c.answered(answer, offered);
        }
        match role {
            Role::Phone => self.phone_answered(now, leg, ch),
            Role::Far => {
                // The outside answered this leg's call.
                let mut info = self
                    .legs
                    .get(&leg)
                    .map(|l| (*l.info).clone())
                    .unwrap_or_default();
                info.connected = info.called.clone();
                self.update_info(leg, info);
                self.set_state(leg, CallState::Connected(ConnectedMode::Active));
                self.complete_far(now, leg);
            }
        }
    }

    /// The leg's far side answered: its phone gets the far side's media — as the answer to the
    /// phone's own INVITE, or (a call tapir placed) as a new offer.
    fn complete_far(&mut self, now: Instant, leg: CallLegId) {
        let Some(phone) = self.legs.get(&leg).and_then(|l| l.phone.first().copied()) else {
            return;
        };
        let inbound_unanswered = self
            .channels
            .get(&phone)
            .is_some_and(|c| c.way == Way::In && !c.is_up());
        if inbound_unanswered {
            self.answer_inbound(phone);
        } else {
            self.sync(phone, now);
        }
    }

    /// Answers the inbound dialog `ch` with its bridge partner's media.
    fn answer_inbound(&mut self, ch: ChannelId) {
        let partner = self.partner(ch);
        let media = partner.and_then(|p| {
            let c = self.channels.get(&p)?;
            Some((c.remote.clone()?, c.wants))
        });
        let hold = self.hold_flow(ch);
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        let (Some((sdp, wants)), Some(offer)) = (media, c.unanswered.take()) else {
            return;
        };
        let flow = offer.direction().answer().and(wants).and(hold);
        let r = c.local.relay(&sdp, Some(&offer), flow);
        let sdp = c.local.sent(r);
        c.phase = Phase::Up;
        self.sip(SipAction::Answer { ch, sdp });
    }

    /// The phone of `leg` answered on `ch`.
    fn phone_answered(&mut self, now: Instant, leg: CallLegId, ch: ChannelId) {
        // The first to answer wins; the other contacts stop ringing.
        let others: Vec<ChannelId> = match self.legs.get_mut(&leg) {
            Some(l) => {
                let others = l.phone.iter().copied().filter(|c| *c != ch).collect();
                l.phone = vec![ch];
                others
            }
            None => return,
        };
        for o in others {
            self.end_channel(o, 0);
        }
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        if let Some(op) = l.setup.take() {
            // A call tapir placed: the line's phone is off hook.
            l.state = CallState::DialTone(DialToneMode::Normal);
            self.announce(leg);
            if let Some(d) = self.pending_dest.remove(&op) {
                self.dial_number(now, leg, &d);
            }
            self.done(op, Ok(Done::Leg(leg)));
            return;
        }
        // An offered call answered at the phone.
        let mut info = (*l.info).clone();
        info.connected = info.caller.clone();
        let far = l.far;
        let line = l.line;
        self.update_info(leg, info);
        self.set_state(leg, CallState::Connected(ConnectedMode::Active));
        for (op, kind) in self.ops_of(leg) {
            if kind == OpKind::Answer(leg) {
                self.done(op, Ok(Done::Unit));
            }
        }
        match far {
            Far::Outside(t) => self.answer_inbound(t),
            Far::Leg(caller) => {
                let mut info = self
                    .legs
                    .get(&caller)
                    .map(|l| (*l.info).clone())
                    .unwrap_or_default();
                info.connected = self.lines[line].party();
                self.update_info(caller, info);
                self.set_state(caller, CallState::Connected(ConnectedMode::Active));
                self.complete_far(now, caller);
            }
            Far::None => {}
        }
    }

    fn ops_of(&self, leg: CallLegId) -> Vec<(OpId, OpKind)> {
        self.ops
            .iter()
            .filter(|(_, o)| match o.kind {
                OpKind::MakeCall(l) | OpKind::Hold(l) | OpKind::Unhold(l) | OpKind::Answer(l) => {
                    l == leg
                }
                OpKind::Digits => false,
            })
            .map(|(id, o)| (*id, o.kind))
            .collect()
    }

    fn on_failed(&mut self, ch: ChannelId, status: u16) {
        let Some(&(leg, role)) = self.links.get(&ch) else {
            self.channels.remove(&ch);
            return;
        };
        self.forget_channel(ch);
        match role {
            Role::Phone => {
                let Some(l) = self.legs.get_mut(&leg) else {
                    return;
                };
                l.phone.retain(|c| *c != ch);
                if !l.phone.is_empty() {
                    return; // other contacts still ring
                }
                if let Some(op) = l.setup {
                    let number = self.lines[l.line].number.clone();
                    self.forget_leg(leg);
                    self.done(
                        op,
                        Err(Error::OperationFailed {
                            reason: format!("the phone of line {number} did not answer ({status})"),
                        }),
                    );
                    return;
                }
                if self
                    .ops_of(leg)
                    .iter()
                    .any(|(_, k)| *k == OpKind::Answer(leg))
                {
                    // Asking the phone to answer failed: let it ring again as before.
                    for (op, kind) in self.ops_of(leg) {
                        if kind == OpKind::Answer(leg) {
                            self.done(
                                op,
                                Err(Error::OperationFailed {
                                    reason: format!(
                                        "the phone did not answer when asked ({status})"
                                    ),
                                }),
                            );
                        }
                    }
                    self.ring(leg, false);
                    return;
                }
                // Every contact refused or stopped: the call is not answered here.
                let outcome = match cause::outcome(status) {
                    CallState::Disconnected(DisconnectReason::Cancelled) => {
                        CallState::Disconnected(DisconnectReason::NoAnswer)
                    }
                    other => other,
                };
                self.unanswered(leg, outcome);
            }
            Role::Far => {
                // The outside did not take the leg's call.
                let outcome = cause::outcome(status);
                self.fail_setup(leg, outcome);
            }
        }
    }

    /// An offered leg was not answered (its phones refused, or it rang too long): it ends, and its
    /// caller learns why.
    fn unanswered(&mut self, leg: CallLegId, outcome: CallState) {
        self.end_phone(leg, 0);
        let far = match self.legs.get_mut(&leg) {
            Some(l) => std::mem::replace(&mut l.far, Far::None),
            None => return,
        };
        // The caller hears why first; then the leg ends (its own clean-up finds nothing left).
        match far {
            Far::Outside(t) => self.end_channel(t, cause::status(outcome)),
            Far::Leg(caller) => {
                if let Some(c) = self.legs.get_mut(&caller) {
                    c.far = Far::None;
                }
                self.fail_setup(caller, outcome);
            }
            Far::None => {}
        }
        self.set_state(leg, CallState::Idle);
    }

    /// The call `leg` was placing did not go through: it shows why; a phone that called in is told
    /// and the leg ends with it.
    fn fail_setup(&mut self, leg: CallLegId, outcome: CallState) {
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        l.far = Far::None;
        self.set_state(leg, outcome);
        let phone = self.legs.get(&leg).and_then(|l| l.phone.first().copied());
        let inbound = phone
            .and_then(|p| self.channels.get(&p))
            .is_some_and(|c| c.way == Way::In && !c.is_up());
        if inbound {
            // The phone dialled this call itself: it hears why, and its call is over.
            self.end_phone(leg, cause::status(outcome));
            self.set_state(leg, CallState::Idle);
        }
    }

    fn on_ended(&mut self, ch: ChannelId) {
        let Some(&(leg, role)) = self.links.get(&ch) else {
            self.channels.remove(&ch);
            return;
        };
        let ringing = self
            .channels
            .get(&ch)
            .is_some_and(|c| c.way == Way::Out && !c.is_up());
        if ringing {
            // An outbound INVITE that ended without an answer is a failure.
            return self.on_failed(ch, 487);
        }
        self.forget_channel(ch);
        match role {
            Role::Phone => {
                // The line's phone hung up: the station is on hook.
                if let Some(l) = self.legs.get_mut(&leg) {
                    l.phone.retain(|c| *c != ch);
                }
                self.hang_up_far(leg);
                if let Some(l) = self.legs.get(&leg) {
                    if let Some(op) = l.setup {
                        self.forget_leg(leg);
                        self.done(
                            op,
                            Err(Error::OperationFailed {
                                reason: "the phone hung up".into(),
                            }),
                        );
                        return;
                    }
                }
                self.set_state(leg, CallState::Idle);
            }
            Role::Far => {
                if let Some(l) = self.legs.get_mut(&leg) {
                    l.far = Far::None;
                }
                self.far_hung_up(leg);
            }
        }
    }

    /// The far side of `leg` hung up.
    fn far_hung_up(&mut self, leg: CallLegId) {
        let Some(l) = self.legs.get(&leg) else { return };
        match l.state.kind() {
            CallStateKind::Offering | CallStateKind::Accepted => {
                // The caller gave up before anyone answered.
                self.end_phone(leg, 0);
                self.set_state(leg, CallState::Disconnected(DisconnectReason::Normal));
                self.set_state(leg, CallState::Idle);
            }
            CallStateKind::Idle => {}
            _ => {
                self.set_state(leg, CallState::Disconnected(DisconnectReason::Normal));
                // The phone is not left in a dead call; the leg waits for its owner to drop it.
                self.end_phone(leg, 480);
            }
        }
    }

    /// Ends the far side of `leg` because its own phone hung up (or an application dropped it).
    fn hang_up_far(&mut self, leg: CallLegId) {
        let far = match self.legs.get_mut(&leg) {
            Some(l) => std::mem::replace(&mut l.far, Far::None),
            None => return,
        };
        match far {
            Far::None => {}
            Far::Outside(t) => {
                let status = if self.channels.get(&t).is_some_and(|c| c.way == Way::In) {
                    487
                } else {
                    0
                };
                self.end_channel(t, status);
                self.links.remove(&t);
            }
            Far::Leg(other) => {
                if let Some(o) = self.legs.get_mut(&other) {
                    o.far = Far::None;
                }
                self.far_hung_up(other);
            }
        }
    }

    /// Ends every dialog with the leg's phone: BYE, CANCEL, or the final `status` to its INVITE.
    fn end_phone(&mut self, leg: CallLegId, status: u16) {
        let phones = match self.legs.get_mut(&leg) {
            Some(l) => std::mem::take(&mut l.phone),
            None => return,
        };
        for p in phones {
            self.end_channel(p, status);
            self.links.remove(&p);
        }
    }

    /// Ends one dialog from tapir's side. `status` is what an unanswered inbound INVITE hears (0:
    /// 480).
    fn end_channel(&mut self, ch: ChannelId, status: u16) {
        let Some(c) = self.channels.get(&ch) else {
            return;
        };
        let action = match (c.way, c.phase) {
            (_, Phase::Ended) => None,
            (_, Phase::Up) => Some(SipAction::Bye { ch }),
            (Way::Out, _) => Some(SipAction::Cancel { ch }),
            (Way::In, _) => Some(SipAction::Refuse {
                ch,
                status: if status == 0 { 480 } else { status },
            }),
        };
        if let Some(a) = action {
            self.sip(a);
        }
        self.forget_channel(ch);
    }

    /// Removes a channel; operations waiting on its re-INVITE fail.
    fn forget_channel(&mut self, ch: ChannelId) {
        self.channels.remove(&ch);
        self.links.remove(&ch);
        if let Some(ops) = self.waiters.remove(&ch) {
            for op in ops {
                self.op_step(op, Some("the dialog ended".into()));
            }
        }
    }

    /// Removes a leg that was never reported (a call tapir placed whose phone did not answer).
    fn forget_leg(&mut self, leg: CallLegId) {
        self.end_phone(leg, 0);
        self.hang_up_far(leg);
        self.legs.remove(&leg);
        self.links.retain(|_, (l, _)| *l != leg);
    }

    // ---------------------------------------------------------------------------------------------
    // Re-INVITEs, both ways.

    fn on_reoffer(&mut self, now: Instant, ch: ChannelId, tx: TxId, sdp: Option<Vec<u8>>) {
        let Some(c) = self.channels.get(&ch) else {
            self.sip(SipAction::AnswerReoffer {
                tx,
                status: 481,
                sdp: None,
            });
            return;
        };
        if c.reoffer.is_some() {
            // Both sides offered at once (RFC 3261 §14.1): refuse theirs; ours is answered first.
            self.sip(SipAction::AnswerReoffer {
                tx,
                status: 491,
                sdp: None,
            });
            return;
        }
        let offer = match sdp.as_deref().map(Sdp::parse) {
            Some(Ok(o)) => o,
            None => {
                // A re-INVITE without an offer (a session refresh asking for one): offer what was
                // sent last.
                let sdp = c.local.last().map(str::to_owned);
                self.sip(SipAction::AnswerReoffer {
                    tx,
                    status: if sdp.is_some() { 200 } else { 488 },
                    sdp,
                });
                return;
            }
            Some(Err(_)) => {
                self.sip(SipAction::AnswerReoffer {
                    tx,
                    status: 488,
                    sdp: None,
                });
                return;
            }
        };
        let holds = offer.is_hold();
        if let Some(c) = self.channels.get_mut(&ch) {
            c.offered(offer);
        }
        // Answer now with what the partner has; the partner is then brought in line.
        let partner = self.partner(ch);
        let media = partner.and_then(|p| {
            let c = self.channels.get(&p)?;
            Some((c.remote.clone()?, c.wants))
        });
        let hold = self.hold_flow(ch);
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        let offer = c.unanswered.take();
        let sdp = match (media, offer) {
            (Some((sdp, wants)), Some(offer)) => {
                let flow = offer.direction().answer().and(wants).and(hold);
                let r = c.local.relay(&sdp, Some(&offer), flow);
                Some(c.local.sent(r))
            }
            // Nothing bridged (dial tone): answer with what was sent last, flows narrowed.
            _ => c.local.last().map(str::to_owned),
        };
        self.sip(SipAction::AnswerReoffer {
            tx,
            status: if sdp.is_some() { 200 } else { 488 },
            sdp,
        });
        // The phone's own hold or unhold shows on its leg.
        if let Some(&(leg, Role::Phone)) = self.links.get(&ch) {
            if let Some(l) = self.legs.get_mut(&leg) {
                let before = l.phone_holds;
                l.phone_holds = holds;
                if before != holds && !l.held {
                    let s = if holds {
                        CallState::OnHold
                    } else {
                        CallState::Connected(ConnectedMode::Active)
                    };
                    self.set_state(leg, s);
                }
            }
        }
        if let Some(p) = partner {
            self.sync(p, now);
        }
    }

    fn on_reoffered(&mut self, now: Instant, ch: ChannelId, result: Result<Option<Vec<u8>>, u16>) {
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        let Some(Reoffer { flow }) = c.reoffer.take() else {
            return;
        };
        let ops = self.waiters.remove(&ch).unwrap_or_default();
        match result {
            Ok(sdp) => {
                if let Some(answer) = sdp.as_deref().and_then(|b| Sdp::parse(b).ok()) {
                    c.answered(answer, flow);
                }
                let again = std::mem::take(&mut c.stale);
                if again {
                    // The bridge moved on meanwhile: those waiting wait for the next offer.
                    self.waiters.insert(ch, ops);
                    self.sync(ch, now);
                } else {
                    for op in ops {
                        self.op_step(op, None);
                    }
                }
            }
            Err(491) => {
                // Glare: offer again after the back-off (RFC 3261 §14.1), same waiters.
                c.local.refused();
                let roll = self.id();
                let Some(c) = self.channels.get_mut(&ch) else {
                    return;
                };
                let at = now + c.glare_backoff(roll);
                c.retry_at = Some(at);
                c.stale = true;
                self.waiters.insert(ch, ops);
                self.at(at, Timer::Retry(ch));
            }
            Err(status) => {
                // Refused: the session stays as it was before the offer (RFC 3261 §14.1).
                c.local.refused();
                c.stale = false;
                for op in ops {
                    self.op_step(
                        op,
                        Some(format!("the far end refused the change ({status})")),
                    );
                }
            }
        }
    }

    /// The channel the media of `ch` is bridged with.
    fn partner(&self, ch: ChannelId) -> Option<ChannelId> {
        let &(leg, role) = self.links.get(&ch)?;
        let l = self.legs.get(&leg)?;
        match role {
            Role::Far => l.phone.first().copied().filter(|_| l.phone.len() == 1),
            Role::Phone => match l.far {
                Far::Outside(t) => Some(t),
                Far::Leg(other) => {
                    let o = self.legs.get(&other)?;
                    (o.phone.len() == 1).then(|| o.phone[0])
                }
                Far::None => None,
            },
        }
    }

    /// Which ways media may flow towards and from `ch` because of holds: a holding leg's phone
    /// neither sends nor receives; the party it holds may only listen.
    fn hold_flow(&self, ch: ChannelId) -> Flow {
        let mut f = Flow::BOTH;
        let Some(&(leg, role)) = self.links.get(&ch) else {
            return f;
        };
        let Some(l) = self.legs.get(&leg) else {
            return f;
        };
        match role {
            Role::Phone => {
                if l.held {
                    f = Flow::NONE;
                }
                if let Far::Leg(other) = l.far {
                    if self.legs.get(&other).is_some_and(|o| o.held) {
                        f = f.and(Flow::SEND);
                    }
                }
            }
            Role::Far => {
                if l.held {
                    f = f.and(Flow::SEND);
                }
            }
        }
        f
    }

    /// Brings what `ch` was sent in line with its bridge: re-offers if it differs (or marks the
    /// channel to re-offer once it may). Returns whether an offer is (or will be) outstanding.
    fn sync(&mut self, ch: ChannelId, now: Instant) -> bool {
        let Some(partner) = self.partner(ch) else {
            return false;
        };
        let Some((media, wants)) = self
            .channels
            .get(&partner)
            .and_then(|p| Some((p.remote.clone()?, p.wants)))
        else {
            return false;
        };
        let flow = wants.and(self.hold_flow(ch));
        let Some(c) = self.channels.get_mut(&ch) else {
            return false;
        };
        if !c.is_up() {
            return false;
        }
        if !c.may_offer(now) {
            c.stale = true;
            return true;
        }
        let r = c.local.relay(&media, None, flow);
        if !r.changed {
            return false;
        }
        let sdp = c.local.sent(r);
        c.reoffer = Some(Reoffer { flow });
        c.stale = false;
        self.sip(SipAction::Reoffer { ch, sdp });
        true
    }

    /// Re-syncs `ch` on behalf of `op`, which then waits for it.
    fn sync_for(&mut self, ch: ChannelId, now: Instant, op: OpId) {
        if self.sync(ch, now) {
            self.waiters.entry(ch).or_default().push(op);
            if let Some(o) = self.ops.get_mut(&op) {
                o.waiting += 1;
            }
        }
    }

    /// One re-INVITE `op` waited for is over (`failure` says why if it failed).
    fn op_step(&mut self, op: OpId, failure: Option<String>) {
        let Some(o) = self.ops.get_mut(&op) else {
            return;
        };
        o.waiting = o.waiting.saturating_sub(1);
        if o.failure.is_none() {
            o.failure = failure;
        }
        if o.waiting == 0 {
            self.op_settled(op);
        }
    }

    /// Every re-INVITE of `op` is answered: finish it.
    fn op_settled(&mut self, op: OpId) {
        let Some(o) = self.ops.get(&op) else { return };
        let (kind, failure) = (o.kind, o.failure.clone());
        match (kind, failure) {
            (OpKind::Hold(leg), None) => {
                self.set_state(leg, CallState::OnHold);
                self.done(op, Ok(Done::Unit));
            }
            (OpKind::Unhold(leg), None) => {
                self.set_state(leg, CallState::Connected(ConnectedMode::Active));
                self.done(op, Ok(Done::Unit));
            }
            (OpKind::Hold(leg) | OpKind::Unhold(leg), Some(reason)) => {
                // Put back what was there: the side that took the change is offered the old
                // session again; the call's state never changed.
                if let Some(l) = self.legs.get_mut(&leg) {
                    l.held = kind != OpKind::Hold(leg);
                }
                self.done(op, Err(Error::OperationFailed { reason }));
                let chans: Vec<ChannelId> = self.bridge_channels(leg);
                let now = self.last_now;
                for c in chans {
                    self.sync(c, now);
                }
            }
            (_, Some(reason)) => self.done(op, Err(Error::OperationFailed { reason })),
            (_, None) => self.done(op, Ok(Done::Unit)),
        }
    }

    /// The leg's phone dialog and its far side's dialog.
    fn bridge_channels(&self, leg: CallLegId) -> Vec<ChannelId> {
        let mut out = Vec::new();
        if let Some(l) = self.legs.get(&leg) {
            if let [p] = l.phone[..] {
                out.push(p);
                if let Some(q) = self.partner(p) {
                    out.push(q);
                }
            }
        }
        out
    }

    fn on_digit(&mut self, ch: ChannelId, digit: char) {
        // The digit is heard at the bridge partner: relay it there, and report it on the leg whose
        // phone that is.
        let Some(p) = self.partner(ch) else { return };
        self.sip(SipAction::Digits {
            ch: p,
            digits: digit.to_string(),
            op: None,
        });
        self.digit_heard(p, digit);
    }

    /// `digit` reached the phone dialog `ch`: its leg reports it if it monitors digits.
    fn digit_heard(&mut self, ch: ChannelId, digit: char) {
        if let Some(&(leg, Role::Phone)) = self.links.get(&ch) {
            if self.legs.get(&leg).is_some_and(|l| l.digits) {
                self.report(ProviderEvent::Digit {
                    leg,
                    digit,
                    mode: DigitMode::Dtmf,
                });
            }
        }
    }
}

/// The caller a SIP INVITE names.
fn party_of(inv: &Invite) -> PartyId {
    if inv.from_user.eq_ignore_ascii_case("anonymous") || inv.from_user.is_empty() {
        return PartyId::blocked();
    }
    let mut p = PartyId::number(inv.from_user.as_str());
    p.name = inv
        .from_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .map(Into::into);
    p
}

// -------------------------------------------------------------------------------------------------
// Operations from the engine, and the leg's state and reports.

impl Switch {
    /// Starts the provider operation `op`; its result comes out as [`Output::Done`], now or later.
    pub(crate) fn command(&mut self, now: Instant, op: OpId, cmd: Command) {
        self.last_now = now;
        let r = match cmd {
            Command::MakeCall(m) => self.make_call(now, op, m),
            Command::Dial(leg, d) => self.dial(now, leg, &d),
            Command::Accept(leg) => self.accept(leg),
            Command::Answer(leg) => self.answer(op, leg),
            Command::Reject(leg) => self.reject(leg),
            Command::Drop(leg) => self.drop_leg(leg),
            Command::Hold(leg) => self.hold(now, op, leg, true),
            Command::Unhold(leg) => self.hold(now, op, leg, false),
            Command::GenerateDigits(leg, digits, mode) => self.generate(op, leg, &digits, mode),
            Command::MonitorDigits(leg, on) => self.live(leg).map(|l| {
                l.digits = on;
                Some(Done::Unit)
            }),
        };
        match r {
            Ok(Some(d)) => self.done(op, Ok(d)),
            Ok(None) => {} // finishes later
            Err(e) => {
                self.ops.remove(&op);
                self.out.push_back(Output::Done(op, Err(e)));
            }
        }
    }

    fn live(&mut self, leg: CallLegId) -> Result<&mut Leg, Error> {
        match self.legs.get_mut(&leg) {
            Some(l) if l.reported => Ok(l),
            // An unknown leg, or one the engine was never told of: it has gone idle.
            _ => Err(Error::InvalidCallState {
                state: CallStateKind::Idle,
            }),
        }
    }

    fn state_of(&self, leg: CallLegId) -> CallStateKind {
        self.legs
            .get(&leg)
            .filter(|l| l.reported)
            .map(|l| l.state.kind())
            .unwrap_or(CallStateKind::Idle)
    }

    fn busy_with_op(&self, leg: CallLegId) -> bool {
        !self.ops_of(leg).is_empty()
    }

    /// Whether `number` can be dialled at all: a line, or anything when there is a trunk.
    fn routable(&self, number: &str) -> Result<(), Error> {
        if number.is_empty() {
            return Err(Error::InvalidAddress {
                reason: "nothing to dial".into(),
            });
        }
        if self.by_number.contains_key(number) || self.trunk.is_some() {
            Ok(())
        } else {
            Err(Error::InvalidAddress {
                reason: format!("{number} is no line and there is no trunk"),
            })
        }
    }

    fn make_call(&mut self, now: Instant, op: OpId, m: MakeCall) -> Result<Option<Done>, Error> {
        let line = m.line.0 as usize;
        if line >= self.lines.len() {
            return Err(Error::InvalidLine(m.line));
        }
        if m.address != AddressId(0) {
            return Err(Error::InvalidAddressId);
        }
        if !m.media_mode.is_empty() && !m.media_mode.intersects(MediaModes::INTERACTIVE_VOICE) {
            return Err(Error::InvalidMediaMode);
        }
        if let Some(d) = &m.destination {
            if !d.is_partial() {
                self.routable(&d.digits())?;
            }
        }
        if !self.registrar.reachable(line) {
            return Err(Error::OperationFailed {
                reason: format!(
                    "no phone is registered for line {}",
                    self.lines[line].number
                ),
            });
        }
        let called = m
            .destination
            .as_ref()
            .map(|d| PartyId::number(d.digits()))
            .unwrap_or_default();
        let info = CallInfo {
            call_id: CallId(self.id()),
            origin: CallOrigin::Outbound,
            media_mode: MediaModes::INTERACTIVE_VOICE,
            caller: self.lines[line].party(),
            called,
            ..CallInfo::default()
        };
        let leg = CallLegId(self.id());
        self.legs.insert(
            leg,
            Leg {
                line,
                state: CallState::DialTone(DialToneMode::Normal),
                info: Arc::new(info),
                phone: Vec::new(),
                far: Far::None,
                held: false,
                phone_holds: false,
                digits: false,
                reported: false,
                request: Some(m.request),
                setup: Some(op),
                dialled: String::new(),
            },
        );
        self.ops.insert(
            op,
            Op {
                kind: OpKind::MakeCall(leg),
                waiting: 0,
                failure: None,
            },
        );
        if let Some(d) = m.destination {
            self.pending_dest.insert(op, d);
        }
        let auto = self.lines[line].auto_answer;
        self.ring(leg, auto);
        self.at(now + self.timing.phone_answer, Timer::PhoneAnswer(op));
        Ok(None)
    }

    /// Dials on a leg in dial tone (or one part-way through a partial dial).
    fn dial_number(&mut self, now: Instant, leg: CallLegId, d: &DialString) {
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        l.dialled.push_str(&d.digits());
        if d.is_partial() {
            self.set_state(leg, CallState::Dialing);
            return;
        }
        let number = std::mem::take(&mut l.dialled);
        if number.is_empty() {
            return;
        }
        self.set_state(leg, CallState::Dialing);
        self.place(now, leg, &number);
    }

    fn dial(
        &mut self,
        now: Instant,
        leg: CallLegId,
        d: &DialString,
    ) -> Result<Option<Done>, Error> {
        let l = self.live(leg)?;
        if !matches!(
            l.state.kind(),
            CallStateKind::DialTone | CallStateKind::Dialing
        ) {
            return Err(Error::InvalidCallState {
                state: l.state.kind(),
            });
        }
        if !d.is_partial() {
            let whole = format!("{}{}", l.dialled, d.digits());
            self.routable(&whole)?;
        }
        self.dial_number(now, leg, d);
        Ok(Some(Done::Unit))
    }

    fn accept(&mut self, leg: CallLegId) -> Result<Option<Done>, Error> {
        match self.state_of(leg) {
            CallStateKind::Offering => {
                self.set_state(leg, CallState::Accepted);
                Ok(Some(Done::Unit))
            }
            state => Err(Error::InvalidCallState { state }),
        }
    }

    fn answer(&mut self, op: OpId, leg: CallLegId) -> Result<Option<Done>, Error> {
        let state = self.state_of(leg);
        if !matches!(state, CallStateKind::Offering | CallStateKind::Accepted) {
            return Err(Error::InvalidCallState { state });
        }
        let line = self.legs.get(&leg).map(|l| l.line).unwrap_or_default();
        if !self.lines[line].auto_answer {
            return Err(Error::OperationUnavailable {
                operation: "answer",
            });
        }
        if self.busy_with_op(leg) {
            return Err(Error::InvalidCallState { state });
        }
        // Ask the phone again, this time to answer by itself.
        self.end_phone(leg, 0);
        self.ops.insert(
            op,
            Op {
                kind: OpKind::Answer(leg),
                waiting: 0,
                failure: None,
            },
        );
        self.ring(leg, true);
        Ok(None)
    }

    fn reject(&mut self, leg: CallLegId) -> Result<Option<Done>, Error> {
        match self.state_of(leg) {
            CallStateKind::Offering | CallStateKind::Accepted => {
                self.unanswered(leg, CallState::Disconnected(DisconnectReason::Reject));
                Ok(Some(Done::Unit))
            }
            CallStateKind::Idle => Err(Error::InvalidCallState {
                state: CallStateKind::Idle,
            }),
            _ => self.drop_leg(leg),
        }
    }

    fn drop_leg(&mut self, leg: CallLegId) -> Result<Option<Done>, Error> {
        match self.state_of(leg) {
            CallStateKind::Idle => Err(Error::InvalidCallState {
                state: CallStateKind::Idle,
            }),
            CallStateKind::Offering | CallStateKind::Accepted => {
                self.unanswered(leg, CallState::Disconnected(DisconnectReason::Reject));
                Ok(Some(Done::Unit))
            }
            _ => {
                self.end_phone(leg, 480);
                self.hang_up_far(leg);
                self.set_state(leg, CallState::Idle);
                Ok(Some(Done::Unit))
            }
        }
    }

    fn hold(
        &mut self,
        now: Instant,
        op: OpId,
        leg: CallLegId,
        hold: bool,
    ) -> Result<Option<Done>, Error> {
        let state = self.state_of(leg);
        let l = self.live(leg)?;
        let ok = if hold {
            state == CallStateKind::Connected && !l.held
        } else {
            state == CallStateKind::OnHold && l.held
        };
        if !ok {
            if !hold && state == CallStateKind::OnHold && l.phone_holds {
                return Err(Error::OperationFailed {
                    reason: "the phone holds the call itself; it takes it off hold".into(),
                });
            }
            return Err(Error::InvalidCallState { state });
        }
        if self.busy_with_op(leg) {
            return Err(Error::InvalidCallState { state });
        }
        let chans = self.bridge_channels(leg);
        if chans.len() < 2 {
            // Nothing to hold against (no far side yet).
            return Err(Error::InvalidCallState { state });
        }
        if let Some(l) = self.legs.get_mut(&leg) {
            l.held = hold;
        }
        self.ops.insert(
            op,
            Op {
                kind: if hold {
                    OpKind::Hold(leg)
                } else {
                    OpKind::Unhold(leg)
                },
                waiting: 0,
                failure: None,
            },
        );
        // The held party first: it is what a hold is for (RFC 3264 §8.4), then the holder's phone.
        for ch in chans.into_iter().rev() {
            self.sync_for(ch, now, op);
        }
        if self.ops.get(&op).is_some_and(|o| o.waiting == 0) {
            self.op_settled(op);
        }
        Ok(None)
    }

    fn generate(
        &mut self,
        op: OpId,
        leg: CallLegId,
        digits: &str,
        mode: DigitMode,
    ) -> Result<Option<Done>, Error> {
        if mode != DigitMode::Dtmf {
            return Err(Error::InvalidParameter {
                reason: "SIP lines send digits as DTMF only".into(),
            });
        }
        if let Some(c) = digits
            .chars()
            .find(|c| !matches!(c, '0'..='9' | 'A'..='D' | '*' | '#'))
        {
            return Err(Error::InvalidParameter {
                reason: format!("{c:?} is not a DTMF digit"),
            });
        }
        let state = self.state_of(leg);
        if state != CallStateKind::Connected {
            return Err(Error::InvalidCallState { state });
        }
        let phone = self.legs.get(&leg).and_then(|l| l.phone.first().copied());
        let Some(far) = phone.and_then(|p| self.partner(p)) else {
            return Err(Error::InvalidCallState { state });
        };
        if digits.is_empty() {
            return Ok(Some(Done::Unit));
        }
        for d in digits.chars() {
            self.digit_heard(far, d);
        }
        self.ops.insert(
            op,
            Op {
                kind: OpKind::Digits,
                waiting: 1,
                failure: None,
            },
        );
        self.sip(SipAction::Digits {
            ch: far,
            digits: digits.to_owned(),
            op: Some(op),
        });
        Ok(None)
    }

    /// Tells the engine of `leg`, once: the first state it is in.
    fn announce(&mut self, leg: CallLegId) {
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        if l.reported || l.setup.is_some() {
            return;
        }
        l.reported = true;
        let call = NewCall {
            leg,
            line: LineId(l.line as u32),
            address: AddressId(0),
            state: l.state,
            info: l.info.clone(),
            request: l.request,
        };
        self.report(ProviderEvent::NewCall(call));
    }

    fn update_info(&mut self, leg: CallLegId, info: CallInfo) {
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        if *l.info == info {
            return;
        }
        l.info = Arc::new(info);
        if l.reported {
            let info = l.info.clone();
            self.report(ProviderEvent::CallInfo { leg, info });
        }
    }

    /// Moves `leg` to `state`, and reports it. Idle ends the leg: whatever dialogs it still has
    /// are ended, operations waiting on it fail, and it is forgotten.
    fn set_state(&mut self, leg: CallLegId, state: CallState) {
        let Some(l) = self.legs.get_mut(&leg) else {
            return;
        };
        if l.state == state {
            return;
        }
        if !transition_allowed(l.state.kind(), state.kind()) {
            tracing::warn!(%leg, from = ?l.state, to = ?state, "a transition the model does not have; not applied");
            return;
        }
        l.state = state;
        if l.reported {
            self.report(ProviderEvent::CallState { leg, state });
        }
        if state.is_idle() {
            self.end_phone(leg, 480);
            self.hang_up_far(leg);
            for (op, _) in self.ops_of(leg) {
                self.ops.remove(&op);
                self.pending_dest.remove(&op);
                self.out.push_back(Output::Done(
                    op,
                    Err(Error::InvalidCallState {
                        state: CallStateKind::Idle,
                    }),
                ));
            }
            self.legs.remove(&leg);
            self.links.retain(|_, (l, _)| *l != leg);
        }
    }

    /// Stops: every call ends, every dialog is closed, nothing more is reported.
    pub(crate) fn stop(&mut self) {
        let legs: Vec<CallLegId> = self.legs.keys().copied().collect();
        for leg in legs {
            self.end_phone(leg, 503);
            self.hang_up_far(leg);
        }
        let rest: Vec<ChannelId> = self.channels.keys().copied().collect();
        for ch in rest {
            self.end_channel(ch, 503);
        }
        for op in self.ops.keys().copied().collect::<Vec<_>>() {
            self.out.push_back(Output::Done(
                op,
                Err(Error::OperationFailed {
                    reason: "the provider stopped".into(),
                }),
            ));
        }
        self.ops.clear();
        self.legs.clear();
        self.links.clear();
        self.waiters.clear();
        self.pending_dest.clear();
        self.timers.clear();
        // Reports are no longer wanted; SIP still goes out.
        self.out
            .retain(|o| matches!(o, Output::Sip(_) | Output::Done(..)));
    }
}
