//! Flows and races of the switch, driven with fed-in time and scripted SIP events: the switch is a
//! value, so a race is just an order of inputs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tapir_core::state::{BusyMode, CallState, CallStateKind, ConnectedMode, DisconnectReason};
use tapir_provider::{LineEvent, ProviderEvent};

use super::*;
use crate::digest::answer_to;
use crate::registrar::Contacts;
use crate::settings::{SipLine, SipSettings};

const TRUNK: u16 = 5080;

fn sdp(port: u16, dir: &str) -> Vec<u8> {
    format!(
        "v=0\r\no=- {port} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na={dir}\r\n"
    )
    .into_bytes()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A switch and what came out of it, sorted.
struct T {
    sw: Switch,
    now: Instant,
    next_tx: u64,
    next_op: u64,
    reports: Vec<ProviderEvent>,
    sip: Vec<SipAction>,
    done: Vec<(OpId, Result<Done, Error>)>,
}

impl T {
    fn new(settings: SipSettings) -> Self {
        let now = Instant::now();
        let mut sw = Switch::new(&settings, now).expect("settings are good");
        sw.start(now);
        let mut t = Self {
            sw,
            now,
            next_tx: 1,
            next_op: 1,
            reports: Vec::new(),
            sip: Vec::new(),
            done: Vec::new(),
        };
        t.drain();
        t
    }

    /// Alice and Bob register (2001, 2002), Lobby (2009) is a fixed device, and a trunk.
    fn office() -> Self {
        let settings = SipSettings::new(addr(5060))
            .line(SipLine::registered("2001", "Alice", "alice-secret").auto_answer())
            .line(SipLine::registered("2002", "Bob", "bob-secret"))
            .line(SipLine::fixed("2009", "Lobby", "sip:127.0.0.1:5099"))
            .trunk(format!("sip:127.0.0.1:{TRUNK}"));
        let mut t = Self::new(settings);
        t.register("2001", "alice-secret", 5071);
        t.register("2002", "bob-secret", 5072);
        t.reports.clear();
        t
    }

    fn drain(&mut self) {
        while let Some(o) = self.sw.poll() {
            match o {
                Output::Sip(a) => self.sip.push(a),
                Output::Report(r) => self.reports.push(r),
                Output::Done(op, r) => self.done.push((op, r)),
            }
        }
    }

    fn tx(&mut self) -> TxId {
        self.next_tx += 1;
        TxId(self.next_tx)
    }

    fn event(&mut self, e: SipEvent) {
        self.sw.sip_event(self.now, e);
        self.drain();
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.sw.timeout(self.now);
        self.drain();
    }

    fn cmd(&mut self, c: Command) -> OpId {
        self.next_op += 1;
        let op = OpId(self.next_op);
        self.sw.command(self.now, op, c);
        self.drain();
        op
    }

    fn result(&mut self, op: OpId) -> Option<Result<Done, Error>> {
        let i = self.done.iter().position(|(o, _)| *o == op)?;
        Some(self.done.remove(i).1)
    }

    fn take_sip(&mut self) -> Vec<SipAction> {
        std::mem::take(&mut self.sip)
    }

    fn register_request(&self, cseq: u32, port: u16, expires: u32) -> Register {
        Register {
            call_id: format!("reg-{port}"),
            cseq,
            contacts: Contacts::List(vec![(format!("sip:phone@127.0.0.1:{port}"), None)]),
            expires: Some(expires),
            source: addr(port),
            tcp: false,
        }
    }

    /// A phone registers, answering the challenge as a phone does.
    fn register(&mut self, user: &str, password: &str, port: u16) {
        let tx = self.tx();
        self.event(SipEvent::Register {
            tx,
            user: user.into(),
            auth: None,
            request: self.register_request(1, port, 600),
        });
        let challenge = self.challenge_of(tx);
        let tx = self.tx();
        let auth = answer_to(&challenge, user, password, "REGISTER", "sip:127.0.0.1:5060");
        self.event(SipEvent::Register {
            tx,
            user: user.into(),
            auth: Some(auth),
            request: self.register_request(2, port, 600),
        });
        assert_eq!(self.status_of(tx), 200, "{user} registers");
    }

    fn status_of(&mut self, tx: TxId) -> u16 {
        let sip = self.take_sip();
        sip.iter()
            .find_map(|a| match a {
                SipAction::Respond { tx: t, status, .. } if *t == tx => Some(*status),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no response to {tx:?} in {sip:#?}"))
    }

    fn challenge_of(&mut self, tx: TxId) -> String {
        let sip = self.take_sip();
        sip.into_iter()
            .find_map(|a| match a {
                SipAction::Respond {
                    tx: t,
                    status: 401,
                    challenge: Some(c),
                    ..
                } if t == tx => Some(c),
                _ => None,
            })
            .expect("a 401 with a challenge")
    }

    /// An INVITE arrives; returns the channel the switch adopted it as.
    fn invite(
        &mut self,
        from_user: &str,
        to_user: &str,
        source: u16,
        auth: Option<DigestResponse>,
    ) -> Option<ChannelId> {
        let tx = self.tx();
        self.event(SipEvent::Invite {
            tx,
            invite: Invite {
                from_user: from_user.into(),
                from_name: None,
                to_user: to_user.into(),
                source: addr(source),
                sdp: Some(sdp(source + 1000, "sendrecv")),
                auth,
            },
        });
        self.sip.iter().find_map(|a| match a {
            SipAction::Adopt { tx: t, ch } if *t == tx => Some(*ch),
            _ => None,
        })
    }

    /// A line's phone calls, answering the challenge.
    fn phone_calls(&mut self, user: &str, password: &str, port: u16, to: &str) -> ChannelId {
        let tx = self.tx();
        self.event(SipEvent::Invite {
            tx,
            invite: Invite {
                from_user: user.into(),
                from_name: None,
                to_user: to.into(),
                source: addr(port),
                sdp: Some(sdp(port + 1000, "sendrecv")),
                auth: None,
            },
        });
        let challenge = self.challenge_of(tx);
        let auth = answer_to(
            &challenge,
            user,
            password,
            "INVITE",
            &format!("sip:{to}@127.0.0.1:5060"),
        );
        self.invite(user, to, port, Some(auth))
            .expect("an authenticated call is taken")
    }

    /// The INVITEs the switch sent, by channel and destination port.
    fn invites(&self) -> Vec<(ChannelId, u16, bool, String)> {
        self.sip
            .iter()
            .filter_map(|a| match a {
                SipAction::Invite {
                    ch,
                    addr,
                    auto_answer,
                    sdp,
                    ..
                } => Some((*ch, addr.port(), *auto_answer, sdp.clone())),
                _ => None,
            })
            .collect()
    }

    fn new_calls(&self) -> Vec<NewCall> {
        self.reports
            .iter()
            .filter_map(|r| match r {
                ProviderEvent::NewCall(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    fn leg_on(&self, line: u32) -> CallLegId {
        self.new_calls()
            .iter()
            .rev()
            .find(|c| c.line == LineId(line))
            .map(|c| c.leg)
            .unwrap_or_else(|| panic!("no call reported on line {line}: {:#?}", self.reports))
    }

    fn states(&self, leg: CallLegId) -> Vec<CallStateKind> {
        self.reports
            .iter()
            .filter_map(|r| match r {
                ProviderEvent::NewCall(c) if c.leg == leg => Some(c.state.kind()),
                ProviderEvent::CallState { leg: l, state } if *l == leg => Some(state.kind()),
                _ => None,
            })
            .collect()
    }

    fn last_state(&self, leg: CallLegId) -> Option<CallState> {
        self.reports.iter().rev().find_map(|r| match r {
            ProviderEvent::NewCall(c) if c.leg == leg => Some(c.state),
            ProviderEvent::CallState { leg: l, state } if *l == leg => Some(*state),
            _ => None,
        })
    }

    fn answer(&mut self, ch: ChannelId, port: u16) {
        self.event(SipEvent::Answered {
            ch,
            sdp: Some(sdp(port, "sendrecv")),
        });
    }

    fn has(&self, f: impl Fn(&SipAction) -> bool) -> bool {
        self.sip.iter().any(f)
    }

    fn reoffers(&self) -> Vec<(ChannelId, String)> {
        self.sip
            .iter()
            .filter_map(|a| match a {
                SipAction::Reoffer { ch, sdp } => Some((*ch, sdp.clone())),
                _ => None,
            })
            .collect()
    }
}

use CallStateKind::*;

#[test]
fn a_phone_registers_with_a_digest_and_its_line_comes_into_service_then_lapses() {
    let settings = SipSettings::new(addr(5060)).line(SipLine::registered("2001", "Alice", "pw"));
    let mut t = T::new(settings);
    assert!(matches!(
        t.reports[..],
        [ProviderEvent::Line {
            event: LineEvent::OutOfService { .. },
            ..
        }]
    ));
    t.reports.clear();
    // No credentials: challenged, nothing bound.
    let tx = t.tx();
    let req = t.register_request(1, 5071, 60);
    t.event(SipEvent::Register {
        tx,
        user: "2001".into(),
        auth: None,
        request: req.clone(),
    });
    let challenge = t.challenge_of(tx);
    assert!(challenge.contains("realm=\"tapir\"") && challenge.contains("qop=\"auth\""));
    assert!(t.reports.is_empty());
    // The wrong password: refused, still nothing bound.
    let tx = t.tx();
    let wrong = answer_to(
        &challenge,
        "2001",
        "guess",
        "REGISTER",
        "sip:127.0.0.1:5060",
    );
    t.event(SipEvent::Register {
        tx,
        user: "2001".into(),
        auth: Some(wrong),
        request: req.clone(),
    });
    assert_eq!(t.status_of(tx), 403);
    assert!(t.reports.is_empty());
    // The right one: bound, and the line is in service.
    let tx = t.tx();
    let right = answer_to(&challenge, "2001", "pw", "REGISTER", "sip:127.0.0.1:5060");
    t.event(SipEvent::Register {
        tx,
        user: "2001".into(),
        auth: Some(right),
        request: t.register_request(2, 5071, 60),
    });
    let sip = t.take_sip();
    assert!(sip.iter().any(|a| matches!(a, SipAction::Respond { status: 200, contacts, .. } if contacts == &vec![("sip:phone@127.0.0.1:5071".to_owned(), 60)])), "{sip:#?}");
    assert!(matches!(
        t.reports[..],
        [
            ProviderEvent::Line {
                event: LineEvent::InService,
                ..
            },
            ProviderEvent::Line {
                event: LineEvent::DevicesChanged,
                ..
            }
        ]
    ));
    // The line reaches the phone, from where it registered, for the time granted.
    t.reports.clear();
    let at = t.now + Duration::from_secs(20);
    assert_eq!(
        t.sw.devices(at, LineId(0)),
        vec![LineDevice {
            contact: "sip:phone@127.0.0.1:5071".into(),
            source: Some("127.0.0.1:5071".into()),
            expires_in: Some(40),
        }]
    );
    // Refreshed from the same contact: nothing new to tell.
    let tx = t.tx();
    let again = answer_to(&challenge, "2001", "pw", "REGISTER", "sip:127.0.0.1:5060");
    t.event(SipEvent::Register {
        tx,
        user: "2001".into(),
        auth: Some(again),
        request: t.register_request(3, 5071, 60),
    });
    assert_eq!(t.status_of(tx), 200);
    assert!(t.reports.is_empty(), "{:?}", t.reports);
    // Not refreshed: the binding lapses and the line goes out of service, saying why, and reaches
    // no device.
    t.advance(Duration::from_secs(61));
    assert!(
        matches!(&t.reports[..], [ProviderEvent::Line { event: LineEvent::OutOfService { reason }, .. }, ProviderEvent::Line { event: LineEvent::DevicesChanged, .. }] if reason.contains("no phone")),
        "{:?}",
        t.reports
    );
    assert!(t.sw.devices(t.now, LineId(0)).is_empty());
}

#[test]
fn an_old_nonce_is_challenged_again_as_stale() {
    let settings = SipSettings::new(addr(5060)).line(SipLine::registered("2001", "Alice", "pw"));
    let mut t = T::new(settings);
    let tx = t.tx();
    t.event(SipEvent::Register {
        tx,
        user: "2001".into(),
        auth: None,
        request: t.register_request(1, 5071, 60),
    });
    let challenge = t.challenge_of(tx);
    t.now += Duration::from_secs(600);
    let tx = t.tx();
    let late = answer_to(&challenge, "2001", "pw", "REGISTER", "sip:127.0.0.1:5060");
    t.event(SipEvent::Register {
        tx,
        user: "2001".into(),
        auth: Some(late),
        request: t.register_request(2, 5071, 60),
    });
    assert!(t.challenge_of(tx).contains("stale=true"));
}

#[test]
fn requests_that_claim_no_line_or_cannot_be_carried_are_refused_and_create_nothing() {
    let mut t = T::office();
    // Someone who is no line and not the trunk.
    assert_eq!(t.invite("mallory", "2001", 6000, None), None);
    assert!(t.has(|a| matches!(a, SipAction::Respond { status: 403, .. })));
    // A line's number without its password: challenged.
    t.sip.clear();
    assert_eq!(t.invite("2001", "2002", 5071, None), None);
    assert!(t.has(|a| matches!(a, SipAction::Respond { status: 401, .. })));
    // The trunk calling a number that is no line.
    t.sip.clear();
    assert_eq!(t.invite("5551234", "7777", TRUNK, None), None);
    assert!(t.has(|a| matches!(a, SipAction::Respond { status: 404, .. })));
    // No offer, or one that is not SDP.
    for body in [None, Some(b"hello".to_vec())] {
        t.sip.clear();
        let tx = t.tx();
        t.event(SipEvent::Invite {
            tx,
            invite: Invite {
                from_user: "5551234".into(),
                from_name: None,
                to_user: "2001".into(),
                source: addr(TRUNK),
                sdp: body,
                auth: None,
            },
        });
        assert!(t.has(|a| matches!(a, SipAction::Respond { status: 488, .. })));
    }
    // A REGISTER for a line that does not exist.
    let tx = t.tx();
    t.event(SipEvent::Register {
        tx,
        user: "9999".into(),
        auth: None,
        request: t.register_request(1, 5090, 60),
    });
    assert_eq!(t.status_of(tx), 404);
    assert!(
        t.reports.is_empty(),
        "nothing was reported: {:#?}",
        t.reports
    );
    assert!(t.sw.is_quiet());
}

#[test]
fn a_trunk_call_rings_every_contact_and_the_first_to_answer_wins() {
    let mut t = T::office();
    t.register("2002", "bob-secret", 5073); // a second phone for Bob
    t.sip.clear();
    let trunk = t.invite("5551234", "2002", TRUNK, None).expect("taken");
    let leg = t.leg_on(1);
    let invites = t.invites();
    let ports: Vec<u16> = invites.iter().map(|i| i.1).collect();
    assert_eq!(ports, vec![5072, 5073], "both of Bob's phones ring");
    // Each is offered the caller's media (port 6080: the trunk's offer).
    assert!(
        invites
            .iter()
            .all(|i| i.3.contains("m=audio 6080 ") && !i.2)
    );
    t.event(SipEvent::Progress {
        ch: invites[0].0,
        status: 180,
        sdp: None,
    });
    assert!(t.has(|a| matches!(a, SipAction::Ring { ch, sdp: None } if *ch == trunk)));
    // The other phone rings too, and the first rings again (its 180 retransmitted): the caller
    // has heard ringing already and is told nothing twice.
    t.sip.clear();
    for ch in [invites[1].0, invites[0].0] {
        t.event(SipEvent::Progress {
            ch,
            status: 180,
            sdp: None,
        });
    }
    assert!(!t.has(|a| matches!(a, SipAction::Ring { .. })));
    t.answer(invites[1].0, 7073);
    // The other phone stops ringing; the caller is answered with the winner's media.
    assert!(t.has(|a| matches!(a, SipAction::Cancel { ch } if *ch == invites[0].0)));
    assert!(t.has(|a| matches!(a, SipAction::Answer { ch, sdp } if *ch == trunk && sdp.contains("m=audio 7073 "))));
    assert_eq!(t.states(leg), vec![Offering, Connected]);
    // A late 180 from the cancelled phone changes nothing, and no provisional follows the 200.
    t.sip.clear();
    t.event(SipEvent::Progress {
        ch: invites[0].0,
        status: 180,
        sdp: None,
    });
    assert!(t.sip.is_empty(), "{:#?}", t.sip);
    // The caller hangs up: the leg is disconnected and the phone is not left in a dead call.
    t.event(SipEvent::Ended { ch: trunk });
    assert_eq!(
        t.last_state(leg),
        Some(CallState::Disconnected(DisconnectReason::Normal))
    );
    assert!(t.has(|a| matches!(a, SipAction::Bye { ch } if *ch == invites[1].0)));
    let op = t.cmd(Command::Drop(leg));
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    assert_eq!(t.states(leg), vec![Offering, Connected, Disconnected, Idle]);
    assert!(t.sw.is_quiet());
}

#[test]
fn a_180_after_the_200_is_not_ringback() {
    let mut t = T::office();
    let phone = t.phone_calls("2001", "alice-secret", 5071, "5551234");
    let leg = t.leg_on(0);
    let out = t.invites()[0].0;
    t.answer(out, 9000);
    t.event(SipEvent::Progress {
        ch: out,
        status: 180,
        sdp: None,
    });
    assert_eq!(t.states(leg), vec![Dialing, Proceeding, Connected]);
    assert!(!t.has(|a| matches!(a, SipAction::Ring { ch, .. } if *ch == phone)));
}

#[test]
fn a_phone_calls_another_line_through_dialing_proceeding_ringback_connected() {
    let mut t = T::office();
    let alice = t.phone_calls("2001", "alice-secret", 5071, "2002");
    let (a, b) = (t.leg_on(0), t.leg_on(1));
    let bob = t.invites()[0].0;
    assert!(
        t.invites()[0].3.contains("m=audio 6071 "),
        "Bob's phone is offered Alice's media"
    );
    t.event(SipEvent::Progress {
        ch: bob,
        status: 180,
        sdp: None,
    });
    assert!(t.has(|x| matches!(x, SipAction::Ring { ch, .. } if *ch == alice)));
    t.answer(bob, 7072);
    assert!(t.has(|x| matches!(x, SipAction::Answer { ch, sdp } if *ch == alice && sdp.contains("m=audio 7072 "))));
    assert_eq!(t.states(a), vec![Dialing, Proceeding, Ringback, Connected]);
    assert_eq!(t.states(b), vec![Offering, Connected]);
    let info = t.new_calls()[1].info.clone();
    assert_eq!(info.origin, CallOrigin::Internal);
    assert_eq!(info.caller.number.as_deref(), Some("2001"));
    assert_eq!(
        t.new_calls()[0].info.call_id,
        info.call_id,
        "one call ID for both legs"
    );
    // Alice's phone hangs up: her leg goes idle, Bob's is disconnected and his phone hung up.
    t.event(SipEvent::Ended { ch: alice });
    assert_eq!(t.last_state(a), Some(CallState::Idle));
    assert_eq!(
        t.last_state(b),
        Some(CallState::Disconnected(DisconnectReason::Normal))
    );
    assert!(t.has(|x| matches!(x, SipAction::Bye { ch } if *ch == bob)));
}

#[test]
fn a_busy_destination_shows_busy_and_the_caller_hears_486() {
    let mut t = T::office();
    let alice = t.phone_calls("2001", "alice-secret", 5071, "5551234");
    let a = t.leg_on(0);
    let out = t.invites()[0].0;
    t.event(SipEvent::Failed {
        ch: out,
        status: 486,
    });
    assert_eq!(t.states(a), vec![Dialing, Proceeding, Busy, Idle]);
    assert!(t.has(|x| matches!(x, SipAction::Refuse { ch, status: 486 } if *ch == alice)));
    assert!(t.sw.is_quiet());
}

#[test]
fn each_failure_maps_to_its_disconnect_reason() {
    for (status, state) in [
        (480, CallState::Disconnected(DisconnectReason::NoAnswer)),
        (404, CallState::Disconnected(DisconnectReason::BadAddress)),
        (503, CallState::Disconnected(DisconnectReason::Unavailable)),
        (600, CallState::Busy(BusyMode::Station)),
    ] {
        let mut t = T::office();
        let op = t.cmd(Command::MakeCall(MakeCall {
            request: RequestId(1),
            line: LineId(0),
            address: AddressId(0),
            destination: Some(DialString::parse("5551234").expect("dialable")),
            media_mode: MediaModes::INTERACTIVE_VOICE,
        }));
        let phone = t.invites()[0].0;
        t.answer(phone, 7071);
        let leg = match t.result(op) {
            Some(Ok(Done::Leg(l))) => l,
            other => panic!("{other:?}"),
        };
        let out = t.invites()[1].0;
        t.event(SipEvent::Failed { ch: out, status });
        assert_eq!(t.last_state(leg), Some(state), "{status}");
    }
}

#[test]
fn making_a_call_rings_the_lines_phone_first_then_dials() {
    let mut t = T::office();
    let op = t.cmd(Command::MakeCall(MakeCall {
        request: RequestId(42),
        line: LineId(0),
        address: AddressId(0),
        destination: Some(DialString::parse("5551234").expect("dialable")),
        media_mode: MediaModes::INTERACTIVE_VOICE,
    }));
    // Alice's phone is asked to answer by itself, with a placeholder offer (audio to tapir's
    // discard port); nothing is reported until it answers.
    let invites = t.invites();
    assert_eq!(invites.len(), 1);
    assert_eq!((invites[0].1, invites[0].2), (5071, true));
    assert!(invites[0].3.contains("m=audio 9 ") && invites[0].3.contains("a=sendrecv"));
    assert!(t.reports.is_empty());
    assert!(t.result(op).is_none());
    t.answer(invites[0].0, 7071);
    let leg = match t.result(op) {
        Some(Ok(Done::Leg(l))) => l,
        other => panic!("make call: {other:?}"),
    };
    assert_eq!(t.new_calls()[0].request, Some(RequestId(42)));
    assert_eq!(t.states(leg), vec![DialTone, Dialing, Proceeding]);
    // The trunk is offered the phone's media, flowing both ways (not the placeholder's inactive).
    let trunk = t.invites()[1].clone();
    assert_eq!(trunk.1, TRUNK);
    assert!(
        trunk.3.contains("m=audio 7071 ") && trunk.3.contains("a=sendrecv"),
        "{}",
        trunk.3
    );
    t.event(SipEvent::Progress {
        ch: trunk.0,
        status: 180,
        sdp: None,
    });
    t.answer(trunk.0, 9000);
    assert_eq!(
        t.states(leg),
        vec![DialTone, Dialing, Proceeding, Ringback, Connected]
    );
    // The phone is re-offered the far end's media.
    let re = t.reoffers();
    assert_eq!(re.len(), 1);
    assert_eq!(re[0].0, invites[0].0);
    assert!(re[0].1.contains("m=audio 9000 ") && re[0].1.contains("a=sendrecv"));
}

#[test]
fn a_call_whose_phone_never_answers_fails_and_leaves_nothing() {
    let mut t = T::office();
    let op = t.cmd(Command::MakeCall(MakeCall {
        request: RequestId(1),
        line: LineId(1),
        address: AddressId(0),
        destination: None,
        media_mode: MediaModes::INTERACTIVE_VOICE,
    }));
    let phone = t.invites()[0].0;
    t.advance(Duration::from_secs(31));
    assert!(matches!(
        t.result(op),
        Some(Err(Error::OperationFailed { .. }))
    ));
    assert!(t.has(|a| matches!(a, SipAction::Cancel { ch } if *ch == phone)));
    assert!(t.reports.is_empty());
    assert!(t.sw.is_quiet());
    // A destination nobody can route is refused before anything rings.
    let settings =
        SipSettings::new(addr(5060)).line(SipLine::fixed("2009", "Lobby", "sip:127.0.0.1:5099"));
    let mut t = T::new(settings);
    t.sip.clear();
    let op = t.cmd(Command::MakeCall(MakeCall {
        request: RequestId(1),
        line: LineId(0),
        address: AddressId(0),
        destination: Some(DialString::parse("5551234").expect("dialable")),
        media_mode: MediaModes::INTERACTIVE_VOICE,
    }));
    assert!(matches!(
        t.result(op),
        Some(Err(Error::InvalidAddress { .. }))
    ));
    assert!(t.sip.is_empty());
}

/// A connected call from the trunk to Bob: (trunk channel, Bob's phone channel, Bob's leg).
fn connected(t: &mut T) -> (ChannelId, ChannelId, CallLegId) {
    t.sip.clear();
    let trunk = t.invite("5551234", "2002", TRUNK, None).expect("taken");
    let phone = t.invites()[0].0;
    t.answer(phone, 7072);
    let leg = t.leg_on(1);
    t.sip.clear();
    (trunk, phone, leg)
}

#[test]
fn a_held_call_is_not_taken_back_while_another_call_is_active_on_the_line() {
    let mut t = T::office();
    let (trunk, _phone, leg) = connected(&mut t);
    let op = t.cmd(Command::Hold(leg));
    for (ch, _) in t.reoffers() {
        let (port, dir) = if ch == trunk {
            (6080, "recvonly")
        } else {
            (7072, "inactive")
        };
        t.event(SipEvent::Reoffered {
            ch,
            result: Ok(Some(sdp(port, dir))),
        });
    }
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    assert_eq!(t.last_state(leg), Some(CallState::OnHold));
    // A second call rings on the same line: the line's one active appearance is taken.
    t.invite("5559876", "2002", TRUNK, None).expect("taken");
    let ringing = t.leg_on(1);
    assert_ne!(ringing, leg);
    let op = t.cmd(Command::Unhold(leg));
    assert!(
        matches!(t.result(op), Some(Err(Error::ResourceUnavailable { .. }))),
        "as the engine's gate counts it"
    );
    assert_eq!(t.last_state(leg), Some(CallState::OnHold));
}

#[test]
fn hold_re_invites_both_sides_and_completes_when_both_answered() {
    let mut t = T::office();
    let (trunk, phone, leg) = connected(&mut t);
    let op = t.cmd(Command::Hold(leg));
    let re = t.reoffers();
    // The held party may only listen; the holder's phone neither sends nor hears.
    assert_eq!(re.len(), 2, "{re:#?}");
    assert_eq!(re[0].0, trunk);
    assert!(re[0].1.contains("a=sendonly"));
    assert_eq!(re[1].0, phone);
    assert!(re[1].1.contains("a=inactive"));
    t.event(SipEvent::Reoffered {
        ch: trunk,
        result: Ok(Some(sdp(6080, "recvonly"))),
    });
    assert!(t.result(op).is_none(), "not done before both answered");
    assert_eq!(
        t.last_state(leg),
        Some(CallState::Connected(ConnectedMode::Active))
    );
    t.event(SipEvent::Reoffered {
        ch: phone,
        result: Ok(Some(sdp(7072, "inactive"))),
    });
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    assert_eq!(t.last_state(leg), Some(CallState::OnHold));
    // A second hold: not now.
    let again = t.cmd(Command::Hold(leg));
    assert!(matches!(
        t.result(again),
        Some(Err(Error::InvalidCallState { state: OnHold }))
    ));
    // Unhold: both back to sendrecv.
    t.sip.clear();
    let op = t.cmd(Command::Unhold(leg));
    let re = t.reoffers();
    assert!(
        re.iter().all(|(_, s)| s.contains("a=sendrecv")) && re.len() == 2,
        "{re:#?}"
    );
    for (ch, _) in re {
        let port = if ch == trunk { 6080 } else { 7072 };
        t.event(SipEvent::Reoffered {
            ch,
            result: Ok(Some(sdp(port, "sendrecv"))),
        });
    }
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    assert_eq!(t.states(leg), vec![Offering, Connected, OnHold, Connected]);
}

#[test]
fn a_refused_hold_fails_with_a_typed_error_and_the_call_stays_as_it_was() {
    let mut t = T::office();
    let (trunk, phone, leg) = connected(&mut t);
    let op = t.cmd(Command::Hold(leg));
    t.event(SipEvent::Reoffered {
        ch: trunk,
        result: Err(488),
    });
    t.sip.clear();
    t.event(SipEvent::Reoffered {
        ch: phone,
        result: Ok(Some(sdp(7072, "inactive"))),
    });
    // The side that took the hold is put back first...
    let back = t.reoffers();
    assert!(
        back.len() == 1 && back[0].0 == phone && back[0].1.contains("a=sendrecv"),
        "{back:#?}"
    );
    assert!(
        t.result(op).is_none(),
        "the error comes once the call is as it was"
    );
    t.event(SipEvent::Reoffered {
        ch: phone,
        result: Ok(Some(sdp(7072, "sendrecv"))),
    });
    // ...then the hold fails, typed, and the call was never reported held.
    assert!(
        matches!(t.result(op), Some(Err(Error::OperationFailed { reason })) if reason.contains("488"))
    );
    assert_eq!(t.states(leg), vec![Offering, Connected]);
}

#[test]
fn glare_answers_491_and_offers_again_after_the_back_off() {
    let mut t = T::office();
    let (trunk, phone, leg) = connected(&mut t);
    let op = t.cmd(Command::Hold(leg));
    // The trunk re-INVITEs while tapir's own offer is out: refused with 491.
    let tx = t.tx();
    t.event(SipEvent::Reoffer {
        ch: trunk,
        tx,
        sdp: Some(sdp(6080, "sendrecv")),
    });
    assert!(
        t.has(|a| matches!(a, SipAction::AnswerReoffer { tx: x, status: 491, .. } if *x == tx))
    );
    // tapir's own offer meets 491 from the other side: tried again after 0–2 s (the trunk owns
    // this dialog's Call-ID), and the hold waits for it.
    t.event(SipEvent::Reoffered {
        ch: trunk,
        result: Err(491),
    });
    t.event(SipEvent::Reoffered {
        ch: phone,
        result: Ok(Some(sdp(7072, "inactive"))),
    });
    assert!(t.result(op).is_none());
    t.sip.clear();
    t.advance(Duration::from_millis(2001));
    let re = t.reoffers();
    assert_eq!(re.len(), 1);
    assert!(re[0].0 == trunk && re[0].1.contains("a=sendonly"));
    t.event(SipEvent::Reoffered {
        ch: trunk,
        result: Ok(Some(sdp(6080, "recvonly"))),
    });
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    assert_eq!(t.last_state(leg), Some(CallState::OnHold));
}

#[test]
fn a_phone_that_holds_by_itself_shows_on_hold_and_its_partner_is_told() {
    let mut t = T::office();
    let (trunk, phone, leg) = connected(&mut t);
    let tx = t.tx();
    t.event(SipEvent::Reoffer {
        ch: phone,
        tx,
        sdp: Some(sdp(7072, "sendonly")),
    });
    // The phone's offer is answered recvonly, its leg is on hold, and the trunk is told to listen.
    assert!(t.has(|a| matches!(a, SipAction::AnswerReoffer { tx: x, status: 200, sdp: Some(s) } if *x == tx && s.contains("a=recvonly"))));
    assert_eq!(t.last_state(leg), Some(CallState::OnHold));
    assert!(
        t.reoffers()
            .iter()
            .any(|(ch, s)| *ch == trunk && s.contains("a=sendonly"))
    );
    // An application cannot take the phone's own hold off.
    let op = t.cmd(Command::Unhold(leg));
    assert!(matches!(
        t.result(op),
        Some(Err(Error::OperationFailed { .. }))
    ));
}

#[test]
fn a_caller_that_gives_up_stops_the_ringing() {
    let mut t = T::office();
    let trunk = t.invite("5551234", "2002", TRUNK, None).expect("taken");
    let leg = t.leg_on(1);
    let phone = t.invites()[0].0;
    t.event(SipEvent::Cancelled { ch: trunk });
    assert!(t.has(|a| matches!(a, SipAction::Cancel { ch } if *ch == phone)));
    assert_eq!(t.states(leg), vec![Offering, Disconnected, Idle]);
    assert!(t.sw.is_quiet());
}

#[test]
fn an_unanswered_call_ends_after_the_no_answer_time() {
    let mut t = T::office();
    let trunk = t.invite("5551234", "2002", TRUNK, None).expect("taken");
    let leg = t.leg_on(1);
    t.advance(Duration::from_secs(61));
    assert!(t.has(|a| matches!(a, SipAction::Refuse { ch, status: 480 } if *ch == trunk)));
    assert_eq!(t.last_state(leg), Some(CallState::Idle));
    assert!(t.sw.is_quiet());
}

#[test]
fn reject_answers_the_caller_603_and_accept_only_changes_state() {
    let mut t = T::office();
    let trunk = t.invite("5551234", "2002", TRUNK, None).expect("taken");
    let leg = t.leg_on(1);
    let op = t.cmd(Command::Accept(leg));
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    let op = t.cmd(Command::Reject(leg));
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    assert!(t.has(|a| matches!(a, SipAction::Refuse { ch, status: 603 } if *ch == trunk)));
    assert_eq!(t.states(leg), vec![Offering, Accepted, Idle]);
}

#[test]
fn answer_asks_an_auto_answer_phone_and_is_never_offered_for_others() {
    let mut t = T::office();
    // Bob's phone cannot be asked: answer is not in his line's capabilities.
    let caps = t.sw.caps();
    assert!(
        caps[0].addresses[0]
            .call_features
            .contains(CallOperation::Answer)
    );
    assert!(
        !caps[1].addresses[0]
            .call_features
            .contains(CallOperation::Answer)
    );
    t.invite("5551234", "2002", TRUNK, None).expect("taken");
    let bob = t.leg_on(1);
    let op = t.cmd(Command::Answer(bob));
    assert!(matches!(
        t.result(op),
        Some(Err(Error::OperationUnavailable { .. }))
    ));
    // Alice's can: it rings again with the request to answer, and answer returns once it has.
    let trunk = t.invite("5551234", "2001", TRUNK, None).expect("taken");
    let alice = t.leg_on(0);
    let first = t.invites().last().map(|i| i.0).expect("rings");
    t.sip.clear();
    let op = t.cmd(Command::Answer(alice));
    assert!(t.has(|a| matches!(a, SipAction::Cancel { ch } if *ch == first)));
    let again = t.invites();
    assert!(again.len() == 1 && again[0].2, "{again:#?}");
    assert!(t.result(op).is_none());
    t.answer(again[0].0, 7071);
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    assert!(t.has(|a| matches!(a, SipAction::Answer { ch, .. } if *ch == trunk)));
    assert_eq!(t.states(alice), vec![Offering, Connected]);
}

#[test]
fn digits_go_to_the_far_party_and_monitoring_legs_report_them() {
    let mut t = T::office();
    let alice_phone = t.phone_calls("2001", "alice-secret", 5071, "2002");
    let bob_phone = t.invites()[0].0;
    t.answer(bob_phone, 7072);
    let (a, b) = (t.leg_on(0), t.leg_on(1));
    let op = t.cmd(Command::MonitorDigits(b, true));
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    t.sip.clear();
    let op = t.cmd(Command::GenerateDigits(a, "19#".into(), DigitMode::Dtmf));
    assert!(t.has(
        |x| matches!(x, SipAction::Digits { ch, digits, .. } if *ch == bob_phone && digits == "19#")
    ));
    let heard: String = t
        .reports
        .iter()
        .filter_map(|r| match r {
            ProviderEvent::Digit { leg, digit, .. } if *leg == b => Some(*digit),
            _ => None,
        })
        .collect();
    assert_eq!(heard, "19#");
    assert!(t.result(op).is_none(), "done once delivered");
    t.event(SipEvent::DigitsSent { op, ok: true });
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    // A digit Alice's phone sends is relayed to Bob's and reported there too.
    t.sip.clear();
    t.event(SipEvent::Digit {
        ch: alice_phone,
        digit: '5',
    });
    assert!(t.has(|x| matches!(x, SipAction::Digits { ch, digits, op: None } if *ch == bob_phone && digits == "5")));
    // Bad digits change nothing.
    let op = t.cmd(Command::GenerateDigits(a, "1x".into(), DigitMode::Dtmf));
    assert!(matches!(
        t.result(op),
        Some(Err(Error::InvalidParameter { .. }))
    ));
    let op = t.cmd(Command::GenerateDigits(a, "1".into(), DigitMode::Pulse));
    assert!(matches!(
        t.result(op),
        Some(Err(Error::InvalidParameter { .. }))
    ));
}

#[test]
fn dropping_each_side_ends_the_other_as_the_model_says() {
    // Dropping the caller's leg of an internal call: the callee's leg is disconnected.
    let mut t = T::office();
    let alice = t.phone_calls("2001", "alice-secret", 5071, "2002");
    let bob = t.invites()[0].0;
    t.answer(bob, 7072);
    let (a, b) = (t.leg_on(0), t.leg_on(1));
    t.sip.clear();
    let op = t.cmd(Command::Drop(a));
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    assert!(t.has(|x| matches!(x, SipAction::Bye { ch } if *ch == alice)));
    assert!(t.has(|x| matches!(x, SipAction::Bye { ch } if *ch == bob)));
    assert_eq!(t.last_state(a), Some(CallState::Idle));
    assert_eq!(
        t.last_state(b),
        Some(CallState::Disconnected(DisconnectReason::Normal))
    );
    let op = t.cmd(Command::Drop(b));
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    assert!(t.sw.is_quiet());
    // Dropping a call still ringing out cancels it; dropping an idle one is not now.
    let mut t = T::office();
    t.phone_calls("2001", "alice-secret", 5071, "5551234");
    let a = t.leg_on(0);
    let out = t.invites()[0].0;
    let op = t.cmd(Command::Drop(a));
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    assert!(t.has(|x| matches!(x, SipAction::Cancel { ch } if *ch == out)));
    let op = t.cmd(Command::Drop(a));
    assert!(matches!(
        t.result(op),
        Some(Err(Error::InvalidCallState { state: Idle }))
    ));
    assert!(t.sw.is_quiet());
}

#[test]
fn a_call_to_a_line_with_no_phone_is_refused() {
    let settings = SipSettings::new(addr(5060))
        .line(SipLine::registered("2001", "Alice", "pw"))
        .trunk(format!("sip:127.0.0.1:{TRUNK}"));
    let mut t = T::new(settings);
    assert_eq!(t.invite("5551234", "2001", TRUNK, None), None);
    assert!(t.has(|a| matches!(a, SipAction::Respond { status: 480, .. })));
    let op = t.cmd(Command::MakeCall(MakeCall {
        request: RequestId(1),
        line: LineId(0),
        address: AddressId(0),
        destination: None,
        media_mode: MediaModes::INTERACTIVE_VOICE,
    }));
    assert!(matches!(
        t.result(op),
        Some(Err(Error::OperationFailed { .. }))
    ));
    assert!(t.sw.is_quiet());
}

// -------------------------------------------------------------------------------------------------
// Moving parties.

fn office_with_park() -> T {
    let settings = SipSettings::new(addr(5060))
        .line(SipLine::registered("2001", "Alice", "alice-secret").auto_answer())
        .line(SipLine::registered("2002", "Bob", "bob-secret"))
        .line(SipLine::fixed("2009", "Lobby", "sip:127.0.0.1:5099"))
        .trunk(format!("sip:127.0.0.1:{TRUNK}"))
        .park_orbits(["701"])
        .pickup_group("sales", ["2001", "2002"]);
    let mut t = T::new(settings);
    t.register("2001", "alice-secret", 5071);
    t.register("2002", "bob-secret", 5072);
    t.reports.clear();
    t
}

fn info_of(t: &T, leg: CallLegId) -> Arc<CallInfo> {
    t.reports
        .iter()
        .rev()
        .find_map(|r| match r {
            ProviderEvent::NewCall(c) if c.leg == leg => Some(c.info.clone()),
            ProviderEvent::CallInfo { leg: l, info } if *l == leg => Some(info.clone()),
            _ => None,
        })
        .expect("the call was reported")
}

fn dial(n: &str) -> DialString {
    DialString::parse(n).expect("dialable")
}

#[test]
fn blind_transfer_sends_the_caller_to_another_line_and_the_media_follows() {
    let mut t = T::office();
    let (trunk, bob_phone, bob) = connected(&mut t);
    let op = t.cmd(Command::BlindTransfer(bob, dial("2001")));
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    assert!(t.has(|a| matches!(a, SipAction::Bye { ch } if *ch == bob_phone)));
    assert_eq!(t.last_state(bob), Some(CallState::Idle));
    // Alice's phone rings with the caller's media; her leg says it was transferred by Bob.
    let alice = t.leg_on(0);
    let info = info_of(&t, alice);
    assert_eq!(info.reason, CallReason::Transfer);
    assert_eq!(info.caller.number.as_deref(), Some("5551234"));
    assert_eq!(info.redirecting().number.as_deref(), Some("2002"));
    let invite = t
        .invites()
        .last()
        .cloned()
        .expect("Alice's phone is called");
    assert!(invite.3.contains("m=audio 6080 "));
    t.sip.clear();
    t.answer(invite.0, 7071);
    // The caller, connected all along, is re-offered Alice's media.
    assert!(
        t.reoffers()
            .iter()
            .any(|(ch, s)| *ch == trunk && s.contains("m=audio 7071 "))
    );
    assert_eq!(t.states(alice), vec![Offering, Connected]);
}

#[test]
fn a_transfer_nowhere_changes_nothing() {
    let settings = SipSettings::new(addr(5060))
        .line(SipLine::registered("2001", "Alice", "alice-secret"))
        .line(SipLine::registered("2002", "Bob", "bob-secret"))
        .line(SipLine::registered("2003", "Carol", "carol-secret"));
    let mut t = T::new(settings);
    t.register("2001", "alice-secret", 5071);
    t.register("2002", "bob-secret", 5072);
    t.phone_calls("2001", "alice-secret", 5071, "2002");
    let bob_phone = t.invites()[0].0;
    t.answer(bob_phone, 7072);
    let alice = t.leg_on(0);
    t.sip.clear();
    let before = t.reports.len();
    for (to, expect) in [
        ("2001", "own line"),
        ("9999", "unknown"),
        ("2003", "no phone"),
    ] {
        let op = t.cmd(Command::BlindTransfer(alice, dial(to)));
        let r = t.result(op);
        assert!(
            matches!(
                r,
                Some(Err(
                    Error::InvalidAddress { .. } | Error::ResourceUnavailable { .. }
                ))
            ),
            "{expect}: {r:?}"
        );
    }
    assert!(t.sip.is_empty(), "{:#?}", t.sip);
    assert_eq!(t.reports.len(), before);
}

#[test]
fn a_redirect_out_through_the_trunk_answers_the_caller_when_the_far_end_does() {
    let mut t = T::office();
    let trunk = t.invite("5551234", "2002", TRUNK, None).expect("taken");
    let bob = t.leg_on(1);
    let bob_phone = t.invites()[0].0;
    t.sip.clear();
    let op = t.cmd(Command::Redirect(bob, dial("5559999")));
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    assert!(t.has(|a| matches!(a, SipAction::Cancel { ch } if *ch == bob_phone)));
    assert_eq!(t.states(bob), vec![Offering, Idle]);
    let out = t.invites();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, TRUNK);
    assert!(
        out[0].3.contains("m=audio 6080 "),
        "the far end is offered the caller's media"
    );
    t.event(SipEvent::Progress {
        ch: out[0].0,
        status: 180,
        sdp: None,
    });
    assert!(t.has(|a| matches!(a, SipAction::Ring { ch, .. } if *ch == trunk)));
    t.answer(out[0].0, 9000);
    assert!(t.has(|a| matches!(a, SipAction::Answer { ch, sdp } if *ch == trunk && sdp.contains("m=audio 9000 "))));
    // Either side hanging up ends the other.
    t.event(SipEvent::Ended { ch: trunk });
    assert!(t.has(|a| matches!(a, SipAction::Bye { ch } if *ch == out[0].0)));
    assert!(t.sw.is_quiet());
}

#[test]
fn a_consultation_transfer_connects_the_two_far_parties_and_frees_the_line() {
    let mut t = T::office();
    let (trunk, bob_phone, bob) = connected(&mut t);
    // Set up: the original is held, the phone's dialog serves the consultation in dial tone.
    let op = t.cmd(Command::SetupTransfer(bob, RequestId(7)));
    let consult = t.leg_on(1);
    assert_ne!(consult, bob);
    assert_eq!(
        t.new_calls().last().map(|c| c.request),
        Some(Some(RequestId(7)))
    );
    assert_eq!(
        info_of(&t, consult).related_call_id,
        Some(info_of(&t, bob).call_id)
    );
    let re = t.reoffers();
    assert!(
        re.iter()
            .any(|(ch, s)| *ch == trunk && s.contains("a=inactive")),
        "{re:#?}"
    );
    assert!(
        re.iter()
            .any(|(ch, s)| *ch == bob_phone && s.contains("a=inactive"))
    );
    for (ch, _) in re {
        t.event(SipEvent::Reoffered {
            ch,
            result: Ok(Some(sdp(if ch == trunk { 6080 } else { 7072 }, "inactive"))),
        });
    }
    assert_eq!(t.result(op), Some(Ok(Done::Leg(consult))));
    assert_eq!(t.last_state(bob), Some(CallState::OnHoldPendingTransfer));
    // Dial Alice from the consultation: her phone is offered Bob's phone's media.
    t.sip.clear();
    let op = t.cmd(Command::Dial(consult, dial("2001")));
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    let alice_phone = t.invites()[0].0;
    assert!(t.invites()[0].3.contains("m=audio 7072 "));
    t.answer(alice_phone, 7071);
    assert_eq!(
        t.last_state(consult),
        Some(CallState::Connected(ConnectedMode::Active))
    );
    assert!(
        t.reoffers()
            .iter()
            .any(|(ch, s)| *ch == bob_phone && s.contains("m=audio 7071 "))
    );
    let alice = t.leg_on(0);
    // Complete: the caller and Alice are re-offered each other's media; Bob's calls end.
    t.sip.clear();
    let op = t.cmd(Command::CompleteTransfer(
        bob,
        consult,
        TransferMode::Transfer,
    ));
    assert!(t.has(|a| matches!(a, SipAction::Bye { ch } if *ch == bob_phone)));
    assert_eq!(t.last_state(bob), Some(CallState::Idle));
    assert_eq!(t.last_state(consult), Some(CallState::Idle));
    let re = t.reoffers();
    assert!(
        re.iter()
            .any(|(ch, s)| *ch == trunk && s.contains("m=audio 7071 ") && s.contains("a=sendrecv")),
        "{re:#?}"
    );
    assert!(
        re.iter()
            .any(|(ch, s)| *ch == alice_phone && s.contains("m=audio 6080 "))
    );
    assert!(t.result(op).is_none(), "done when the new bridge is up");
    for (ch, _) in re {
        let port = if ch == trunk { 6080 } else { 7071 };
        t.event(SipEvent::Reoffered {
            ch,
            result: Ok(Some(sdp(port, "sendrecv"))),
        });
    }
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    assert_eq!(
        info_of(&t, alice).connected.number.as_deref(),
        Some("5551234")
    );
    assert_eq!(
        t.last_state(alice),
        Some(CallState::Connected(ConnectedMode::Active))
    );
}

#[test]
fn dropping_the_consultation_reconnects_the_original() {
    let mut t = T::office();
    let (trunk, bob_phone, bob) = connected(&mut t);
    let op = t.cmd(Command::SetupTransfer(bob, RequestId(7)));
    for (ch, _) in t.reoffers() {
        t.event(SipEvent::Reoffered {
            ch,
            result: Ok(Some(sdp(if ch == trunk { 6080 } else { 7072 }, "inactive"))),
        });
    }
    let consult = match t.result(op) {
        Some(Ok(Done::Leg(c))) => c,
        other => panic!("{other:?}"),
    };
    t.sip.clear();
    let op = t.cmd(Command::Drop(consult));
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    assert!(
        !t.has(|a| matches!(a, SipAction::Bye { ch } if *ch == bob_phone)),
        "the phone's dialog is the original's again"
    );
    assert_eq!(t.last_state(consult), Some(CallState::Idle));
    assert_eq!(
        t.last_state(bob),
        Some(CallState::Connected(ConnectedMode::Active))
    );
    let re = t.reoffers();
    assert!(
        re.iter()
            .any(|(ch, s)| *ch == trunk && s.contains("m=audio 7072 ") && s.contains("a=sendrecv")),
        "{re:#?}"
    );
    assert!(
        re.iter()
            .any(|(ch, s)| *ch == bob_phone && s.contains("m=audio 6080 "))
    );
}

#[test]
fn swap_hold_holds_one_and_takes_the_other_off_hold() {
    let mut t = T::office();
    let (trunk, phone_a, a) = connected(&mut t);
    let op = t.cmd(Command::Hold(a));
    for (ch, _) in t.reoffers() {
        t.event(SipEvent::Reoffered {
            ch,
            result: Ok(None),
        });
    }
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    // A second call to Bob.
    let trunk2 = t.tx();
    let _ = trunk2;
    let second = t.invite("5557777", "2002", TRUNK, None).expect("taken");
    let phone_b = t.invites().last().map(|i| i.0).expect("rings");
    t.answer(phone_b, 7073);
    let b = t.leg_on(1);
    t.sip.clear();
    let op = t.cmd(Command::SwapHold(b, a));
    let re = t.reoffers();
    assert_eq!(re.len(), 4, "{re:#?}");
    assert!(
        re.iter()
            .any(|(ch, s)| *ch == second && s.contains("a=sendonly"))
    );
    assert!(
        re.iter()
            .any(|(ch, s)| *ch == trunk && s.contains("a=sendrecv"))
    );
    let _ = phone_a;
    for (ch, _) in re {
        t.event(SipEvent::Reoffered {
            ch,
            result: Ok(None),
        });
    }
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    assert_eq!(t.last_state(b), Some(CallState::OnHold));
    assert_eq!(
        t.last_state(a),
        Some(CallState::Connected(ConnectedMode::Active))
    );
}

#[test]
fn park_unpark_and_the_recall_after_the_time_out() {
    let mut t = office_with_park();
    let (trunk, bob_phone, bob) = connected(&mut t);
    let op = t.cmd(Command::Park(bob, ParkMode::NonDirected));
    assert_eq!(t.result(op), Some(Ok(Done::Orbit("701".into()))));
    assert!(t.has(|a| matches!(a, SipAction::Bye { ch } if *ch == bob_phone)));
    assert!(t.reports.iter().any(|r| matches!(r, ProviderEvent::Line { line: LineId(1), event: LineEvent::Parked { orbit, .. } } if orbit == "701")));
    assert!(
        t.reoffers()
            .iter()
            .any(|(ch, s)| *ch == trunk && s.contains("a=inactive")),
        "the parked caller is held"
    );
    t.event(SipEvent::Reoffered {
        ch: trunk,
        result: Ok(Some(sdp(6080, "inactive"))),
    });
    // The lot is full now; an unknown orbit is no orbit.
    let (_, _, other) = connected(&mut t);
    let op = t.cmd(Command::Park(other, ParkMode::NonDirected));
    assert!(matches!(
        t.result(op),
        Some(Err(Error::ResourceUnavailable { .. }))
    ));
    let op = t.cmd(Command::Park(other, ParkMode::Directed("701".into())));
    assert_eq!(t.result(op), Some(Err(Error::InUse)));
    let op = t.cmd(Command::Drop(other));
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
    // Alice unparks: her phone is asked to answer with the caller's media; done when it has.
    t.sip.clear();
    let op = t.cmd(Command::Unpark(
        Origin {
            request: RequestId(9),
            line: LineId(0),
            address: AddressId(0),
        },
        "701".into(),
    ));
    let invite = t.invites()[0].clone();
    assert!(invite.2 && invite.3.contains("m=audio 6080 "));
    assert!(t.result(op).is_none());
    t.answer(invite.0, 7071);
    let alice = match t.result(op) {
        Some(Ok(Done::Leg(l))) => l,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        t.new_calls().last().map(|c| (c.state.kind(), c.request)),
        Some((Connected, Some(RequestId(9))))
    );
    assert_eq!(info_of(&t, alice).reason, CallReason::Unpark);
    assert!(t.reports.iter().any(|r| matches!(
        r,
        ProviderEvent::Line {
            event: LineEvent::Unparked { .. },
            ..
        }
    )));
    assert!(
        t.reoffers()
            .iter()
            .any(|(ch, s)| *ch == trunk && s.contains("m=audio 7071 "))
    );
    // Parked again and left: after the time-out it rings its parker, reason reminder.
    let op = t.cmd(Command::Park(alice, ParkMode::Directed("701".into())));
    assert_eq!(t.result(op), Some(Ok(Done::Orbit("701".into()))));
    t.reports.clear();
    t.advance(Duration::from_secs(61));
    let recall = t.new_calls();
    assert_eq!(recall.len(), 1);
    assert_eq!(
        (recall[0].line, recall[0].info.reason),
        (LineId(0), CallReason::Reminder)
    );
}

#[test]
fn a_parked_caller_that_hangs_up_frees_its_orbit() {
    let mut t = office_with_park();
    let (trunk, _, bob) = connected(&mut t);
    let op = t.cmd(Command::Park(bob, ParkMode::NonDirected));
    assert_eq!(t.result(op), Some(Ok(Done::Orbit("701".into()))));
    t.event(SipEvent::Ended { ch: trunk });
    assert!(t.reports.iter().any(|r| matches!(
        r,
        ProviderEvent::Line {
            event: LineEvent::Unparked { .. },
            ..
        }
    )));
    let op = t.cmd(Command::Unpark(
        Origin {
            request: RequestId(9),
            line: LineId(0),
            address: AddressId(0),
        },
        "701".into(),
    ));
    assert!(matches!(
        t.result(op),
        Some(Err(Error::InvalidAddress { .. }))
    ));
    assert!(t.sw.is_quiet());
}

#[test]
fn pickup_takes_the_ringing_call_once_the_pickers_phone_answers() {
    let mut t = office_with_park();
    let trunk = t.invite("5551234", "2002", TRUNK, None).expect("taken");
    let bob = t.leg_on(1);
    let bob_phone = t.invites()[0].0;
    t.sip.clear();
    let op = t.cmd(Command::Pickup(
        Origin {
            request: RequestId(5),
            line: LineId(0),
            address: AddressId(0),
        },
        PickupTarget::Group("sales".into()),
    ));
    // Bob's phone keeps ringing until Alice's has answered: a failed pickup loses nothing.
    assert!(!t.has(|a| matches!(a, SipAction::Cancel { ch } if *ch == bob_phone)));
    let alice_phone = t.invites()[0].0;
    t.answer(alice_phone, 7071);
    let alice = match t.result(op) {
        Some(Ok(Done::Leg(l))) => l,
        other => panic!("{other:?}"),
    };
    assert!(t.has(|a| matches!(a, SipAction::Cancel { ch } if *ch == bob_phone)));
    assert_eq!(t.states(bob), vec![Offering, Disconnected, Idle]);
    assert_eq!(
        t.last_state(alice),
        Some(CallState::Connected(ConnectedMode::Active))
    );
    assert_eq!(info_of(&t, alice).reason, CallReason::Pickup);
    assert!(t.has(|a| matches!(a, SipAction::Answer { ch, sdp } if *ch == trunk && sdp.contains("m=audio 7071 "))));
    // Nothing rings any more: a second pickup has nothing to take.
    let op = t.cmd(Command::Pickup(
        Origin {
            request: RequestId(6),
            line: LineId(0),
            address: AddressId(0),
        },
        PickupTarget::Directed("2002".into()),
    ));
    assert!(matches!(
        t.result(op),
        Some(Err(Error::InvalidAddress { .. }))
    ));
}

fn forward(t: &mut T, line: u32, fwd: Forwarding) -> Option<Result<Done, Error>> {
    let op = t.cmd(Command::Forward(LineId(line), AddressId(0), fwd));
    t.result(op)
}

#[test]
fn forwarding_do_not_disturb_unconditional_busy_and_no_answer() {
    let mut t = T::office();
    // Do not disturb: a caller from outside hears busy; nothing rings.
    let dnd = Forwarding {
        do_not_disturb: true,
        rules: vec![],
    };
    assert_eq!(forward(&mut t, 1, dnd), Some(Ok(Done::Unit)));
    assert!(t.reports.iter().any(|r| matches!(
        r,
        ProviderEvent::Line {
            event: LineEvent::ForwardingChanged { .. },
            ..
        }
    )));
    t.sip.clear();
    assert_eq!(t.invite("5551234", "2002", TRUNK, None), None);
    assert!(t.has(|a| matches!(a, SipAction::Respond { status: 486, .. })));
    // Unconditional: the call is offered at the destination instead, one hop.
    let fwd = Forwarding {
        do_not_disturb: false,
        rules: vec![(ForwardCondition::Unconditional, dial("2001"))],
    };
    assert_eq!(forward(&mut t, 1, fwd), Some(Ok(Done::Unit)));
    t.sip.clear();
    t.invite("5551234", "2002", TRUNK, None).expect("taken");
    let leg = t.leg_on(0);
    let info = info_of(&t, leg);
    assert_eq!(info.reason, CallReason::ForwardUnconditional);
    assert_eq!(info.redirecting().number.as_deref(), Some("2002"));
    assert!(
        t.invites().iter().all(|i| i.1 == 5071),
        "only Alice's phone rings"
    );
    // A bad destination changes nothing.
    let bad = Forwarding {
        do_not_disturb: false,
        rules: vec![(ForwardCondition::Busy, dial("2002"))],
    };
    assert!(matches!(
        forward(&mut t, 1, bad),
        Some(Err(Error::InvalidAddress { .. }))
    ));
    // Busy: every phone said 486.
    let mut t = T::office();
    let fwd = Forwarding {
        do_not_disturb: false,
        rules: vec![(ForwardCondition::Busy, dial("2001"))],
    };
    forward(&mut t, 1, fwd);
    t.invite("5551234", "2002", TRUNK, None).expect("taken");
    let bob = t.leg_on(1);
    let phone = t.invites()[0].0;
    t.event(SipEvent::Failed {
        ch: phone,
        status: 486,
    });
    assert_eq!(t.states(bob), vec![Offering, Disconnected, Idle]);
    assert_eq!(info_of(&t, t.leg_on(0)).reason, CallReason::ForwardBusy);
    // No answer after two rings.
    let mut t = T::office();
    let fwd = Forwarding {
        do_not_disturb: false,
        rules: vec![(ForwardCondition::NoAnswer { rings: 2 }, dial("2001"))],
    };
    forward(&mut t, 1, fwd);
    t.invite("5551234", "2002", TRUNK, None).expect("taken");
    let bob = t.leg_on(1);
    t.advance(Duration::from_secs(13));
    assert_eq!(
        t.reports
            .iter()
            .filter_map(|r| match r {
                ProviderEvent::CallState { leg, state } if *leg == bob => Some(*state),
                _ => None,
            })
            .collect::<Vec<_>>(),
        vec![
            CallState::Disconnected(DisconnectReason::Forwarded),
            CallState::Idle
        ]
    );
    assert_eq!(info_of(&t, t.leg_on(0)).reason, CallReason::ForwardNoAnswer);
}

#[test]
fn a_forwarding_loop_takes_one_hop_and_then_ends() {
    let mut t = T::office();
    let to = |n: &str| Forwarding {
        do_not_disturb: false,
        rules: vec![(ForwardCondition::NoAnswer { rings: 1 }, dial(n))],
    };
    forward(&mut t, 0, to("2002"));
    forward(&mut t, 1, to("2001"));
    let trunk = t.invite("5551234", "2001", TRUNK, None).expect("taken");
    t.advance(Duration::from_secs(7));
    t.advance(Duration::from_secs(7));
    t.advance(Duration::from_secs(7));
    // Forwarded once to Bob, never back; after the no-answer time it is over, and the caller told.
    let offered: Vec<u32> = t.new_calls().iter().map(|c| c.line.0).collect();
    assert_eq!(offered, vec![0, 1]);
    t.advance(Duration::from_secs(61));
    assert!(t.has(|a| matches!(a, SipAction::Refuse { ch, status: 480 } if *ch == trunk)));
    assert!(t.sw.is_quiet());
}

#[test]
fn a_phone_s_refer_is_carried_out_as_a_transfer() {
    let mut t = T::office();
    let (trunk, bob_phone, bob) = connected(&mut t);
    let tx = t.tx();
    t.event(SipEvent::Refer {
        ch: bob_phone,
        tx,
        to: "2001".into(),
        replaces: None,
    });
    assert!(t.has(|a| matches!(a, SipAction::AnswerRefer { tx: x, status: 202 } if *x == tx)));
    let notify = t
        .sip
        .iter()
        .position(|a| matches!(a, SipAction::Notify { ch, status: 200 } if *ch == bob_phone));
    let bye = t
        .sip
        .iter()
        .position(|a| matches!(a, SipAction::Bye { ch } if *ch == bob_phone));
    assert!(
        notify.is_some() && notify < bye,
        "the phone hears the transfer worked, then BYE"
    );
    assert_eq!(t.last_state(bob), Some(CallState::Idle));
    assert_eq!(info_of(&t, t.leg_on(0)).reason, CallReason::Transfer);
    // A REFER to nowhere is refused and changes nothing.
    let (_, phone2, leg2) = connected(&mut t);
    let tx = t.tx();
    // (to its own line: there is a trunk, so any other number would go out)
    t.event(SipEvent::Refer {
        ch: phone2,
        tx,
        to: "2002".into(),
        replaces: None,
    });
    let _ = trunk;
    assert!(t.has(|a| matches!(a, SipAction::AnswerRefer { tx: x, status: 404 } if *x == tx)));
    assert_eq!(
        t.last_state(leg2),
        Some(CallState::Connected(ConnectedMode::Active))
    );
}

#[test]
fn an_attended_refer_joins_the_parties_of_the_phone_s_two_calls() {
    let mut t = T::office();
    // Bob has a call from outside (held at his phone) and one with Alice.
    let (trunk, bob_phone_1, bob_1) = connected(&mut t);
    let bob_phone_2 = t.phone_calls("2002", "bob-secret", 5072, "2001");
    let bob_2 = t.leg_on(1);
    let alice_phone = t.invites().last().map(|i| i.0).expect("Alice rings");
    t.answer(alice_phone, 7071);
    let alice = t.leg_on(0);
    t.sip.clear();
    let tx = t.tx();
    t.event(SipEvent::Refer {
        ch: bob_phone_1,
        tx,
        to: "2001".into(),
        replaces: Some(bob_phone_2),
    });
    assert!(t.has(|a| matches!(a, SipAction::AnswerRefer { status: 202, .. })));
    assert_eq!(t.last_state(bob_1), Some(CallState::Idle));
    assert_eq!(t.last_state(bob_2), Some(CallState::Idle));
    let re = t.reoffers();
    assert!(
        re.iter()
            .any(|(ch, s)| *ch == trunk && s.contains("m=audio 7071 ")),
        "{re:#?}"
    );
    assert!(
        re.iter()
            .any(|(ch, s)| *ch == alice_phone && s.contains("m=audio 6080 "))
    );
    assert_eq!(
        info_of(&t, alice).connected.number.as_deref(),
        Some("5551234")
    );
}

#[test]
fn a_phone_that_vanishes_mid_call_ends_it_with_a_cause() {
    let mut t = T::office();
    let alice_phone = t.phone_calls("2001", "alice-secret", 5071, "2002");
    let bob_phone = t.invites()[0].0;
    t.answer(bob_phone, 7072);
    let (a, b) = (t.leg_on(0), t.leg_on(1));
    // The keep-alive goes out after its interval...
    t.sip.clear();
    t.advance(Duration::from_secs(31));
    assert!(t.has(|x| matches!(x, SipAction::Ping { ch } if *ch == bob_phone)));
    // ...and Bob's phone does not answer: his leg ends, Alice's is disconnected, unreachable.
    t.event(SipEvent::Alive {
        ch: bob_phone,
        alive: false,
    });
    assert_eq!(t.last_state(b), Some(CallState::Idle));
    assert_eq!(
        t.last_state(a),
        Some(CallState::Disconnected(DisconnectReason::Unreachable))
    );
    assert!(t.has(|x| matches!(x, SipAction::Bye { ch } if *ch == alice_phone)));
    // A phone that answers is asked again later.
    let mut t = T::office();
    let (_, phone, _) = connected(&mut t);
    t.advance(Duration::from_secs(31));
    t.event(SipEvent::Alive {
        ch: phone,
        alive: true,
    });
    t.sip.clear();
    t.advance(Duration::from_secs(31));
    assert!(t.has(|x| matches!(x, SipAction::Ping { ch } if *ch == phone)));
}

#[test]
fn dialling_on_a_connected_call_sends_digits() {
    let mut t = T::office();
    let (trunk, _, bob) = connected(&mut t);
    let op = t.cmd(Command::Dial(bob, dial("12#")));
    assert!(t.has(|a| matches!(a, SipAction::Digits { ch, digits, op: Some(_) } if *ch == trunk && digits == "12#")));
    t.event(SipEvent::DigitsSent { op, ok: true });
    assert_eq!(t.result(op), Some(Ok(Done::Unit)));
}
