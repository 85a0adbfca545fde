//! What the network can send, fed to the provider's own code without a network: for fuzz targets
//! (`tests/fuzz`, target `sip`) and their replays. Behind the `fuzzing` feature; not for
//! applications.
//!
//! A datagram goes the way a real one goes: the stack's parser, then `stack::route` and
//! `stack::read_request` (the code the provider's task runs), then the switch; a request inside a
//! dialog (none exists here) is read as the provider would read it there (an INFO's digit, a
//! REFER's target) and goes no further. The switch is a fresh office each time, its phones played by [`Harness`] (they never answer, and vanish when asked if
//! they are there) and the engine played too (a disconnected call is dropped, as nobody owns it).
//! Each step checks what must hold for any input, and says what broke.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rsipstack::sip::SipMessage;
use rsipstack::sip::Transport;
use rsipstack::transport::connection::SipConnection;
use tapir_core::state::CallState;
use tapir_provider::ProviderEvent;
use tapir_provider::conformance::ReportModel;

use crate::registrar::{Contacts, Register};
use crate::settings::{SipLine, SipSettings};
use crate::stack::{self, Route};
use crate::switch::{Command, Output, SipAction, SipEvent, Switch, TxId};

/// How a phone's INVITE transaction gives up when nobody answers (RFC 3261 Timer B).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(32);

/// What became of a datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fed {
    /// The stack's parser refused it; the transport drops it.
    Unparsed,
    /// A response, or a request inside a dialog (none exists here: the stack answers 481).
    NotForTheSwitch,
    /// A request the stack answers itself with this status (OPTIONS, a dialog's request outside
    /// one, an unknown method).
    Answered(u16),
    /// A REGISTER or INVITE tapir could not read: 400, and nothing changed.
    Unreadable(String),
    /// The switch answered the request with these statuses (provisional and final), or took it
    /// as a call (`adopted`).
    Switched {
        /// The statuses it answered with, in order.
        statuses: Vec<u16>,
        /// Whether it took an INVITE as a call.
        adopted: bool,
    },
}

/// The office the datagrams reach: lines 2001 (Alice, registered from 127.0.0.1:5071, answering
/// automatically) and 2002 (Bob, not registered), both with passwords; 2009 a fixed device; a
/// trunk at 127.0.0.1:5080. Tapir listens at 127.0.0.1:5060.
pub struct Harness {
    sw: Switch,
    now: Instant,
    next_tx: u64,
    /// The switch's reports so far, held to the call model.
    model: ReportModel,
    /// What the played phones and stack will say, and when.
    later: BTreeMap<(Instant, u64), SipEvent>,
    next_later: u64,
    /// The switch's SIP actions since the last datagram.
    actions: Vec<SipAction>,
    /// Reports since the last datagram.
    reports: usize,
}

impl Harness {
    /// A fresh office at a made-up instant.
    pub fn office() -> Result<Self, String> {
        let settings = SipSettings::new(addr(5060))
            .line(SipLine::registered("2001", "Alice", "alice-secret").auto_answer())
            .line(SipLine::registered("2002", "Bob", "bob-secret"))
            .line(SipLine::fixed("2009", "Lobby", "sip:127.0.0.1:5099"))
            .trunk("sip:127.0.0.1:5080");
        let now = Instant::now();
        let mut sw = Switch::new(&settings, now).map_err(|e| e.to_string())?;
        sw.start(now);
        let mut h = Self {
            sw,
            now,
            next_tx: 0,
            model: ReportModel::default(),
            later: BTreeMap::new(),
            next_later: 0,
            actions: Vec::new(),
            reports: 0,
        };
        h.drain()?;
        h.register_alice()?;
        Ok(h)
    }

    /// Alice's phone registers, answering the challenge as a phone does.
    fn register_alice(&mut self) -> Result<(), String> {
        let request = |cseq| Register {
            call_id: "alice-registers".into(),
            cseq,
            contacts: Contacts::List(vec![("sip:alice@127.0.0.1:5071".into(), None)]),
            expires: Some(3600),
            source: addr(5071),
            tcp: false,
        };
        let tx = self.tx();
        self.switch(SipEvent::Register {
            tx,
            user: "2001".into(),
            auth: None,
            request: request(1),
        })?;
        let challenge = self
            .actions
            .iter()
            .find_map(|a| match a {
                SipAction::Respond {
                    challenge: Some(c), ..
                } => Some(c.clone()),
                _ => None,
            })
            .ok_or("no challenge to a registration")?;
        let auth = crate::digest::answer_to(
            &challenge,
            "2001",
            "alice-secret",
            "REGISTER",
            "sip:127.0.0.1:5060",
        );
        let tx = self.tx();
        self.switch(SipEvent::Register {
            tx,
            user: "2001".into(),
            auth: Some(auth),
            request: request(2),
        })?;
        match self.final_status(tx) {
            Some(200) => Ok(()),
            other => Err(format!("Alice could not register: {other:?}")),
        }
    }

    /// Feeds `datagram` as if it arrived over UDP from `from`; `Err` says which property broke.
    pub fn feed(&mut self, datagram: &[u8], from: SocketAddr) -> Result<Fed, String> {
        self.actions.clear();
        self.reports = 0;
        let Ok(msg) = SipMessage::try_from(datagram) else {
            return Ok(Fed::Unparsed);
        };
        let Ok(SipMessage::Request(req)) =
            SipConnection::update_msg_received(msg, from, Transport::Udp)
        else {
            return Ok(Fed::NotForTheSwitch);
        };
        match stack::route(&req) {
            Route::InDialog => {
                // What the provider reads of a dialog's requests, were there a dialog: an INFO's
                // digit, a REFER's target.
                if let Some(d) = stack::digit_of(&req)
                    && !tapir_core::dial::is_dtmf_digit(d)
                {
                    return Err(format!("read {d:?} as a digit"));
                }
                let _ = stack::refer_target(&req);
                return Ok(Fed::NotForTheSwitch);
            }
            Route::Answer(status) => return Ok(Fed::Answered(status)),
            Route::Switch => {}
        }
        let read = match stack::read_request(&req, stack::source(&req, None), false) {
            Ok(read) => read,
            Err(why) => return Ok(Fed::Unreadable(why)),
        };
        let before = self.sw.registrations();
        let was_quiet = self.sw.is_quiet();
        let tx = self.tx();
        self.switch(read.into_event(tx))?;
        let statuses: Vec<u16> = self
            .actions
            .iter()
            .filter_map(|a| match a {
                SipAction::Respond { tx: t, status, .. } if *t == tx => Some(*status),
                _ => None,
            })
            .collect();
        let adopted = self
            .actions
            .iter()
            .any(|a| matches!(a, SipAction::Adopt { tx: t, .. } if *t == tx));
        if let Some(bad) = statuses.iter().find(|s| !(100..=699).contains(*s)) {
            return Err(format!("answered with status {bad}"));
        }
        let finals = statuses.iter().filter(|s| **s >= 200).count();
        if usize::from(adopted) + finals != 1 {
            return Err(format!(
                "a request must get one final answer or become a call: {statuses:?}, adopted {adopted}"
            ));
        }
        let refused = !adopted && statuses.iter().any(|s| *s >= 300);
        if refused
            && (self.sw.registrations() != before
                || self.sw.is_quiet() != was_quiet
                || self.reports != 0)
        {
            return Err(format!(
                "a refused request ({statuses:?}) changed the switch"
            ));
        }
        Ok(Fed::Switched { statuses, adopted })
    }

    /// Lets `by` pass: the switch's timers fire, the played phones' transactions time out and they
    /// vanish when asked whether they are there, disconnected calls are dropped.
    pub fn advance(&mut self, by: Duration) -> Result<(), String> {
        let until = self.now + by;
        loop {
            let timer = self.sw.next_deadline();
            let played = self.later.keys().next().map(|k| k.0);
            let next = match (timer, played) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if timer.is_some_and(|t| t <= self.now) {
                self.sw.timeout(self.now);
                self.drain()?;
                if self.sw.next_deadline().is_some_and(|t| t <= self.now) {
                    return Err("a timer asks for the instant it was just given".into());
                }
            }
            while let Some(entry) = self.later.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let event = entry.remove();
                self.switch(event)?;
            }
        }
        self.now = until;
        Ok(())
    }

    /// Whether the switch holds no call, dialog or operation.
    pub fn is_quiet(&self) -> bool {
        self.sw.is_quiet()
    }

    fn tx(&mut self) -> TxId {
        self.next_tx += 1;
        TxId(self.next_tx)
    }

    fn switch(&mut self, event: SipEvent) -> Result<(), String> {
        self.sw.sip_event(self.now, event);
        self.drain()
    }

    fn final_status(&self, tx: TxId) -> Option<u16> {
        self.actions.iter().find_map(|a| match a {
            SipAction::Respond { tx: t, status, .. } if *t == tx && *status >= 200 => Some(*status),
            _ => None,
        })
    }

    fn play_later(&mut self, event: SipEvent) {
        self.next_later += 1;
        self.later
            .insert((self.now + TRANSACTION_TIMEOUT, self.next_later), event);
    }

    /// Takes what the switch put out: checks its reports, plays the phones and the engine.
    fn drain(&mut self) -> Result<(), String> {
        while let Some(out) = self.sw.poll() {
            match out {
                Output::Report(r) => {
                    self.reports += 1;
                    if let Some(flaw) = self.model.check(&r) {
                        return Err(flaw.to_string());
                    }
                    // Nobody owns the call: the engine drops it, as its orphan policy does. (The
                    // harness takes no operation's result, so any unused ID will do.)
                    if let ProviderEvent::CallState {
                        leg,
                        state: CallState::Disconnected(_),
                    } = r
                    {
                        let op = crate::switch::OpId(u64::MAX - leg.0);
                        self.sw.command(self.now, op, Command::Drop(leg));
                    }
                }
                Output::Sip(a) => {
                    match &a {
                        SipAction::Invite { ch, .. } => self.play_later(SipEvent::Failed {
                            ch: *ch,
                            status: 408,
                        }),
                        SipAction::Ping { ch } => self.play_later(SipEvent::Alive {
                            ch: *ch,
                            alive: false,
                        }),
                        SipAction::Reoffer { ch, .. } => self.play_later(SipEvent::Reoffered {
                            ch: *ch,
                            result: Err(408),
                        }),
                        SipAction::Digits { op: Some(op), .. } => {
                            self.play_later(SipEvent::DigitsSent { op: *op, ok: false });
                        }
                        _ => {}
                    }
                    self.actions.push(a);
                }
                Output::Done(..) => {}
            }
        }
        Ok(())
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &str = "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bK-1\r\n\
        From: <sip:2002@127.0.0.1>;tag=a1\r\n\
        To: <sip:2002@127.0.0.1>\r\n\
        Call-ID: reg-1\r\n\
        CSeq: 1 REGISTER\r\n\
        Contact: <sip:bob@127.0.0.1:5072>\r\n\
        Expires: 600\r\n\
        Content-Length: 0\r\n\r\n";

    const INVITE: &str = "INVITE sip:2001@127.0.0.1:5060 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-2\r\n\
        From: \"Carrier\" <sip:5551234@127.0.0.1:5080>;tag=b1\r\n\
        To: <sip:2001@127.0.0.1>\r\n\
        Call-ID: call-1\r\n\
        CSeq: 1 INVITE\r\n\
        Contact: <sip:5551234@127.0.0.1:5080>\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 129\r\n\r\n\
        v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
        m=audio 6080 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";

    #[test]
    fn a_registration_without_credentials_is_challenged_and_changes_nothing() {
        let mut h = Harness::office().expect("office");
        let fed = h.feed(REGISTER.as_bytes(), addr(5072)).expect("holds");
        assert_eq!(
            fed,
            Fed::Switched {
                statuses: vec![401],
                adopted: false
            }
        );
    }

    #[test]
    fn a_trunk_call_to_a_registered_line_rings_and_ends_when_nobody_answers() {
        let mut h = Harness::office().expect("office");
        let fed = h.feed(INVITE.as_bytes(), addr(5080)).expect("holds");
        assert!(
            matches!(fed, Fed::Switched { adopted: true, .. }),
            "{fed:?}"
        );
        assert!(!h.is_quiet());
        h.advance(Duration::from_secs(3600)).expect("holds");
        assert!(h.is_quiet(), "the unanswered call is gone");
    }

    #[test]
    fn what_the_parser_refuses_or_the_stack_answers_never_reaches_the_switch() {
        let mut h = Harness::office().expect("office");
        assert_eq!(h.feed(b"\x00garbage", addr(5072)), Ok(Fed::Unparsed));
        let options = REGISTER
            .replace("REGISTER sip", "OPTIONS sip")
            .replace("1 REGISTER", "1 OPTIONS");
        assert_eq!(
            h.feed(options.as_bytes(), addr(5072)),
            Ok(Fed::Answered(200))
        );
        let no_cseq = REGISTER.replace("CSeq: 1 REGISTER\r\n", "CSeq: x REGISTER\r\n");
        assert!(matches!(
            h.feed(no_cseq.as_bytes(), addr(5072)),
            Ok(Fed::Unreadable(_) | Fed::Unparsed)
        ));
    }
}
