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

use tapir_core::caps::{
    AddressCaps, AddressFeatureSet, ForwardModes, LineCaps, ParkModes, PickupModes, TransferModes,
};
use tapir_core::dial::DialString;
use tapir_core::gate::{AddressOperation, CallOperation, FeatureSet};
use tapir_core::info::{CallInfo, CallOrigin, CallReason, PartyId, Redirect};
use tapir_core::media::MediaModes;
use tapir_core::params::{
    DigitMode, ForwardCondition, Forwarding, MakeCall, Origin, ParkMode, PickupTarget, RequestId,
    TransferMode,
};
use tapir_core::state::{
    CallState, CallStateKind, ConnectedMode, DialToneMode, DisconnectReason, OfferingMode,
    transition_allowed,
};
use tapir_core::{AddressId, CallId, CallLegId, Error, LineId};
use tapir_provider::{LineDevice, LineEvent, NewCall, ProviderEvent};

use crate::cause;
use crate::channel::{Channel, ChannelId, Phase, Reoffer, Way};
use crate::digest::{DigestResponse, NonceState, Nonces};
use crate::park::{ParkLot, Parked};
use crate::registrar::{Binding, Register, Registered, Registrar};
use crate::sdp::{Flow, Sdp};
use crate::settings::{SipSettings, SipTarget, SipTiming};

mod calls;
mod media;
mod moves;
mod ops;
mod register;
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
    /// The peer of `ch` (a phone) asks for a transfer (REFER): to the number `to`, or — with
    /// `replaces` — to the party of another of its dialogs (an attended transfer, RFC 3891).
    Refer {
        ch: ChannelId,
        tx: TxId,
        to: String,
        replaces: Option<ChannelId>,
    },
    /// Whether the peer of `ch` answered tapir's keep-alive (OPTIONS in the dialog).
    Alive { ch: ChannelId, alive: bool },
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
    SwapHold(CallLegId, CallLegId),
    BlindTransfer(CallLegId, DialString),
    Redirect(CallLegId, DialString),
    SetupTransfer(CallLegId, RequestId),
    CompleteTransfer(CallLegId, CallLegId, TransferMode),
    Park(CallLegId, ParkMode),
    Unpark(Origin, String),
    Pickup(Origin, PickupTarget),
    Forward(LineId, AddressId, Forwarding),
}

/// What a finished operation returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Done {
    Unit,
    Leg(CallLegId),
    Orbit(String),
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
    /// Answer the peer's REFER `tx`.
    AnswerRefer { tx: TxId, status: u16 },
    /// Tell the peer of `ch` how the transfer it asked for went (NOTIFY, `message/sipfrag`).
    Notify { ch: ChannelId, status: u16 },
    /// Ask the peer of `ch` whether it is still there (OPTIONS in the dialog), then report `Alive`.
    Ping { ch: ChannelId },
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
    /// The contacts the engine was last told about (through `LineEvent::DevicesChanged`): its fixed
    /// contact from the start, registered ones as they come and go.
    devices: Vec<String>,
    /// Where its calls go instead, and whether it takes calls at all.
    forwarding: Forwarding,
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

/// A party a leg can be connected with, and that can be moved elsewhere (transferred, parked,
/// picked up): another line's leg, or a dialog with the outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PartyRef {
    Leg(CallLegId),
    Outside(ChannelId),
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
    /// This leg's party parked it: it waits in an orbit, connected to nothing.
    Parked,
}

impl Far {
    fn party(self) -> Option<PartyRef> {
        match self {
            Far::Leg(l) => Some(PartyRef::Leg(l)),
            Far::Outside(c) => Some(PartyRef::Outside(c)),
            Far::None | Far::Parked => None,
        }
    }
}

impl From<PartyRef> for Far {
    fn from(p: PartyRef) -> Self {
        match p {
            PartyRef::Leg(l) => Far::Leg(l),
            PartyRef::Outside(c) => Far::Outside(c),
        }
    }
}

/// A call on a line.
#[derive(Debug)]
struct Leg {
    line: usize,
    state: CallState,
    info: Arc<CallInfo>,
    /// The dialogs with the line's phone: several while its contacts ring, one once it answered (or
    /// the one it called from); empty when it hung up, or lent to a consultation call.
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
    /// The operation waiting for this leg's phone to answer (make call, unpark, pickup).
    setup: Option<OpId>,
    /// Digits dialled so far in a partial dial.
    dialled: String,
    /// Its phone dialog serves this consultation call for now.
    lent_to: Option<CallLegId>,
    /// The consultation call of this original, whose phone dialog it uses.
    borrowed_from: Option<CallLegId>,
    /// Sent here by forwarding: not forwarded again (one hop).
    forwarded: bool,
}

impl Leg {
    fn new(line: usize, state: CallState, info: CallInfo) -> Self {
        Self {
            line,
            state,
            info: Arc::new(info),
            phone: Vec::new(),
            far: Far::None,
            held: false,
            phone_holds: false,
            digits: false,
            reported: false,
            request: None,
            setup: None,
            dialled: String::new(),
            lent_to: None,
            borrowed_from: None,
            forwarded: false,
        }
    }
}

/// A provider operation in progress.
#[derive(Debug)]
struct Op {
    kind: OpKind,
    /// Re-INVITEs it waits for.
    waiting: u32,
    /// The first failure of one of them.
    failure: Option<String>,
    /// It failed, and what it changed is being put back; it returns its failure once that is done.
    undoing: bool,
}

impl Op {
    fn new(kind: OpKind) -> Self {
        Self {
            kind,
            waiting: 0,
            failure: None,
            undoing: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    /// Making a call from a line; done when its phone answers (and the destination is dialled).
    MakeCall(CallLegId),
    /// Retrieving the call parked in an orbit; done when the retriever's phone answers.
    Unpark {
        leg: CallLegId,
        orbit: usize,
    },
    /// Picking up a ringing call; done when the picker's phone answers.
    Pickup {
        leg: CallLegId,
        ringing: CallLegId,
    },
    Hold(CallLegId),
    Unhold(CallLegId),
    SwapHold {
        active: CallLegId,
        held: CallLegId,
    },
    /// Holding the original for a consultation; done once it is held.
    SetupTransfer {
        original: CallLegId,
        consult: CallLegId,
    },
    /// Connecting the two far parties; done once both are re-INVITEd.
    CompleteTransfer,
    /// Asking the phone to answer; done when it has.
    Answer(CallLegId),
    Digits,
}

impl OpKind {
    /// Whether the operation concerns `leg`.
    fn about(self, leg: CallLegId) -> bool {
        match self {
            OpKind::MakeCall(l) | OpKind::Hold(l) | OpKind::Unhold(l) | OpKind::Answer(l) => {
                l == leg
            }
            OpKind::Unpark { leg: l, .. } => l == leg,
            // Not the ringing leg: it goes idle as the pickup succeeds.
            OpKind::Pickup { leg: l, .. } => l == leg,
            OpKind::SwapHold { active, held } => active == leg || held == leg,
            OpKind::SetupTransfer { original, consult } => original == leg || consult == leg,
            OpKind::CompleteTransfer | OpKind::Digits => false,
        }
    }
}

/// Something set for later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// A registration may have lapsed.
    Registrations,
    /// The leg's phone has rung too long.
    NoAnswer(CallLegId),
    /// The leg's line forwards calls that ring this long.
    ForwardNoAnswer(CallLegId),
    /// The phone of a call tapir places has not answered in time.
    PhoneAnswer(OpId),
    /// A re-INVITE that met glare may go again.
    Retry(ChannelId),
    /// A parked call has waited long enough to ring its parker again.
    ParkRecall(usize),
    /// Time to ask the peer of an established dialog whether it is still there.
    Keepalive(ChannelId),
}

/// What a channel is to the calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// It is (one of) the leg's phone dialogs.
    Phone(CallLegId),
    /// It is the leg's far side (the outside).
    Far(CallLegId),
    /// It is one of two outside dialogs tapir connects with each other (a call from the trunk
    /// transferred back out); the other.
    Relay(ChannelId),
    /// It waits in a park orbit.
    Parked,
}

/// How long a ring lasts, for forwarding after so many rings (SIP phones ring on their own; the
/// count is the usual cadence).
const RING_PERIOD: std::time::Duration = std::time::Duration::from_secs(6);

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
    links: HashMap<ChannelId, Link>,
    park: ParkLot<PartyRef>,
    park_timeout: std::time::Duration,
    /// Pickup groups: the lines of each.
    groups: BTreeMap<String, Vec<usize>>,
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
                fixed: contact.as_ref().map(|c| c.addr),
                // The engine takes a line to be in service until told otherwise.
                in_service: true,
                devices: contact.map(|c| c.uri).into_iter().collect(),
                forwarding: Forwarding::default(),
            });
        }
        let groups = settings
            .pickup_groups
            .iter()
            .map(|(name, members)| {
                let lines = members
                    .iter()
                    .filter_map(|m| by_number.get(m.as_str()).copied())
                    .collect();
                (name.clone(), lines)
            })
            .collect();
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
            park: ParkLot::new(&settings.park_orbits),
            park_timeout: settings.park_timeout,
            groups,
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

    /// The capabilities of each line: exactly what the switch carries out.
    pub(crate) fn caps(&self) -> Vec<LineCaps> {
        let park = !self.park.is_empty();
        self.lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut ops = vec![
                    CallOperation::Accept,
                    CallOperation::Reject,
                    CallOperation::Drop,
                    CallOperation::Dial,
                    CallOperation::Hold,
                    CallOperation::Unhold,
                    CallOperation::SwapHold,
                    CallOperation::BlindTransfer,
                    CallOperation::Redirect,
                    CallOperation::SetupTransfer,
                    CallOperation::CompleteTransfer,
                    CallOperation::GenerateDigits,
                    CallOperation::MonitorDigits,
                ];
                if l.auto_answer {
                    ops.push(CallOperation::Answer);
                }
                let mut address_ops = vec![
                    AddressOperation::MakeCall,
                    AddressOperation::Pickup,
                    AddressOperation::Forward,
                ];
                if park {
                    ops.push(CallOperation::Park);
                    address_ops.push(AddressOperation::Unpark);
                }
                let mut a = AddressCaps::basic(l.number.to_string());
                a.call_features = FeatureSet::from_slice(&ops);
                a.address_features = AddressFeatureSet::from_slice(&address_ops);
                a.max_active_calls = 1;
                a.max_on_hold = 1;
                a.max_on_hold_pending = 1;
                a.transfer_modes = TransferModes {
                    transfer: true,
                    conference: false,
                };
                a.park_modes = ParkModes {
                    directed: park,
                    non_directed: park,
                };
                a.forward_modes = ForwardModes {
                    unconditional: true,
                    busy: true,
                    no_answer: true,
                    do_not_disturb: true,
                };
                a.pickup_modes = PickupModes {
                    directed: true,
                    group: self.groups.values().any(|g| g.contains(&i)),
                };
                a.auto_reconnect = true;
                // Dialling on a connected call sends the digits down it (SIP INFO).
                a.dial_connected = true;
                LineCaps {
                    name: if *l.name == *l.number {
                        l.number.to_string()
                    } else {
                        format!("{} ({})", l.name, l.number)
                    },
                    addresses: vec![a],
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
            self.line_changed(i);
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

    /// The devices `line` reaches now: each binding's contact, where it registered from, and how
    /// long it has left at `now`.
    pub(crate) fn devices(&self, now: Instant, line: LineId) -> Vec<LineDevice> {
        self.registrar
            .contacts(line.0 as usize)
            .iter()
            .map(|b| LineDevice {
                contact: b.contact.clone(),
                source: Some(b.addr.to_string()),
                expires_in: b.left(now),
            })
            .collect()
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
                        self.line_changed(line);
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
                    let leg = self.ops.get(&op).and_then(|o| match o.kind {
                        OpKind::MakeCall(l)
                        | OpKind::Unpark { leg: l, .. }
                        | OpKind::Pickup { leg: l, .. } => Some(l),
                        _ => None,
                    });
                    if let Some(leg) = leg {
                        self.setup_failed(leg, "did not answer".into());
                    }
                }
                Timer::Retry(ch) => {
                    if let Some(c) = self.channels.get_mut(&ch) {
                        c.retry_at = None;
                    }
                    self.sync(ch, now);
                }
                Timer::ForwardNoAnswer(leg) => self.forward_unanswered(now, leg),
                Timer::ParkRecall(orbit) => self.park_recall(now, orbit),
                Timer::Keepalive(ch) => {
                    if self.channels.get(&ch).is_some_and(|c| c.is_up()) {
                        self.sip(SipAction::Ping { ch });
                    }
                }
            }
        }
    }

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
            SipEvent::Refer {
                ch,
                tx,
                to,
                replaces,
            } => self.on_refer(now, ch, tx, &to, replaces),
            SipEvent::Alive { ch, alive } => {
                if alive {
                    if self.channels.get(&ch).is_some_and(|c| c.is_up()) {
                        self.at(now + self.timing.keepalive, Timer::Keepalive(ch));
                    }
                } else {
                    self.vanished(ch);
                }
            }
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

    // ---------------------------------------------------------------------------------------------
    // Re-INVITEs, both ways.
}

impl Switch {
    /// Stops: every call ends, every dialog is closed, nothing more is reported.
    pub(crate) fn stop(&mut self) {
        let legs: Vec<CallLegId> = self.legs.keys().copied().collect();
        for leg in legs {
            self.end_phone(leg, 503);
            self.hang_up_far(leg, DisconnectReason::Normal);
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
