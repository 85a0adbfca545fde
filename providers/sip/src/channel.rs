//! One SIP dialog as the back-to-back user agent holds it: a *channel*. It knows which way it was set
//! up, how far, what the peer's media is and which ways the peer itself wants media to flow, what
//! tapir last sent, and the one offer tapir may have outstanding on it (RFC 3264 allows one at a
//! time; RFC 3261 §14.1 resolves the glare when both sides offer at once).
//!
//! A channel does not know about calls: the switch decides what it is bridged to and what flow it
//! may have, and asks the channel what to send.

use std::time::{Duration, Instant};

use tapir_core::info::PartyId;

use crate::sdp::{Flow, LocalSession, Sdp};

/// A channel: tapir's side of one SIP dialog.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ChannelId(pub(crate) u64);

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ch-{}", self.0)
    }
}

/// Which side started the dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Way {
    /// The peer sent the INVITE.
    In,
    /// tapir sent the INVITE.
    Out,
}

/// How far the dialog is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// INVITE sent or received, no provisional response yet.
    Setup,
    /// A provisional response with a tag: ringing.
    Early,
    /// Answered (2xx).
    Up,
    /// Over: BYE, CANCEL, a failure. Nothing more is sent.
    Ended,
}

/// An offer tapir sent on an established dialog (a re-INVITE), waiting for its answer.
#[derive(Clone, Debug)]
pub(crate) struct Reoffer {
    /// The flow the offer asked for (to read the answer against).
    pub(crate) flow: Flow,
}

/// One SIP dialog's state.
#[derive(Clone, Debug)]
pub(crate) struct Channel {
    pub(crate) way: Way,
    pub(crate) phase: Phase,
    /// Who the peer is, as far as tapir knows (the caller of an INVITE it got, the number it
    /// called), for the parties a transfer or pickup connects it with.
    pub(crate) who: PartyId,
    /// The peer's media as last described (its offer or its answer).
    pub(crate) remote: Option<Sdp>,
    /// Which ways the peer itself wants media to flow (from its own offers; an answer only narrows
    /// what tapir offered). A phone that puts a call on hold offers `sendonly`: this says so.
    pub(crate) wants: Flow,
    /// An offer from the peer not answered yet (the INVITE's, or a re-INVITE's).
    pub(crate) unanswered: Option<Sdp>,
    /// What tapir sends on this dialog.
    pub(crate) local: LocalSession,
    /// tapir's re-INVITE in flight, if any.
    pub(crate) reoffer: Option<Reoffer>,
    /// The bridge changed while a re-INVITE was in flight: offer again when it is answered.
    pub(crate) stale: bool,
    /// After a 491 (glare), when to offer again.
    pub(crate) retry_at: Option<Instant>,
    /// The peer's re-INVITE is being answered (tapir holds back its own offers meanwhile).
    pub(crate) answering: bool,
    /// The offer tapir sent on a dialog it placed was only a placeholder (a call from a line's own
    /// phone): the peer's answer tells where its media is, not which ways it wants it to flow.
    pub(crate) placeholder: bool,
    /// The INVITE asked the phone to answer by itself.
    pub(crate) auto_answer: bool,
}

impl Channel {
    /// A channel for an INVITE the peer sent with `offer`.
    pub(crate) fn inbound(offer: Sdp, origin: u64) -> Self {
        let wants = offer.direction();
        Self {
            way: Way::In,
            phase: Phase::Setup,
            who: PartyId::default(),
            remote: Some(offer.clone()),
            wants,
            unanswered: Some(offer),
            local: LocalSession::new(origin),
            reoffer: None,
            stale: false,
            retry_at: None,
            answering: false,
            placeholder: false,
            auto_answer: false,
        }
    }

    /// A channel for an INVITE tapir sends.
    pub(crate) fn outbound(origin: u64) -> Self {
        Self {
            way: Way::Out,
            phase: Phase::Setup,
            who: PartyId::default(),
            remote: None,
            wants: Flow::BOTH,
            unanswered: None,
            local: LocalSession::new(origin),
            reoffer: None,
            stale: false,
            retry_at: None,
            answering: false,
            placeholder: false,
            auto_answer: false,
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.phase == Phase::Up
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// The peer answered tapir's offer, which asked for `offered`.
    pub(crate) fn answered(&mut self, answer: Sdp, offered: Flow) {
        if self.placeholder {
            // The placeholder asked for nothing; the phone's answer says nothing of its wishes.
            self.placeholder = false;
        } else {
            let got = answer.direction();
            // Where tapir offered to receive, the answer says whether the peer sends; where tapir
            // offered to send, whether it receives. What tapir did not offer stays as it was.
            if offered.recv {
                self.wants.send = got.send;
            }
            if offered.send {
                self.wants.recv = got.recv;
            }
        }
        self.remote = Some(answer);
    }

    /// The peer made an offer (a re-INVITE): its wishes are what it offers.
    pub(crate) fn offered(&mut self, offer: Sdp) {
        self.wants = if offer.is_hold() && offer.direction() == Flow::BOTH {
            // c=0.0.0.0 with no direction attribute: the old way of holding.
            Flow::NONE
        } else {
            offer.direction()
        };
        self.remote = Some(offer.clone());
        self.unanswered = Some(offer);
    }

    /// Whether tapir may send an offer now: established, nothing of its own outstanding, not in the
    /// middle of answering the peer's, not waiting out a glare back-off.
    pub(crate) fn may_offer(&self, now: Instant) -> bool {
        self.is_up()
            && self.reoffer.is_none()
            && !self.answering
            && self.retry_at.is_none_or(|t| t <= now)
    }

    /// How long to wait after a 491 (RFC 3261 §14.1): the side that owns the Call-ID (sent the
    /// first INVITE) waits 2.1–4 s, the other 0–2 s, in 10 ms steps. `roll` is any number; the
    /// switch feeds its own sequence so tests are repeatable.
    pub(crate) fn glare_backoff(&self, roll: u64) -> Duration {
        let steps = roll % 200;
        match self.way {
            Way::Out => Duration::from_millis(2100 + (steps * 10).min(1900)),
            Way::In => Duration::from_millis(steps * 10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n";

    fn sdp(dir: &str) -> Sdp {
        Sdp::parse(SDP.replace("sendrecv", dir).as_bytes()).expect("parses")
    }

    #[test]
    fn an_answer_only_narrows_what_tapir_offered() {
        let mut c = Channel::outbound(1);
        // tapir offered sendonly (holding the peer): the peer's recvonly answer says nothing of
        // whether it wants to send.
        c.answered(sdp("recvonly"), Flow::SEND);
        assert_eq!(c.wants, Flow::BOTH);
        // An answer to sendrecv that says sendonly: the peer does not want to receive.
        c.answered(sdp("sendonly"), Flow::BOTH);
        assert_eq!(c.wants, Flow::SEND);
    }

    #[test]
    fn a_hold_offer_is_the_peers_wish() {
        let mut c = Channel::inbound(sdp("sendrecv"), 1);
        c.offered(sdp("sendonly"));
        assert_eq!(c.wants, Flow::SEND);
        let old = SDP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
        c.offered(Sdp::parse(old.as_bytes()).expect("parses"));
        assert_eq!(c.wants, Flow::NONE);
    }

    #[test]
    fn glare_back_off_depends_on_who_owns_the_call_id() {
        let out = Channel::outbound(1);
        let inn = Channel::inbound(sdp("sendrecv"), 1);
        for roll in [0, 1, 199, 200, 12345] {
            let o = out.glare_backoff(roll);
            assert!(
                o >= Duration::from_millis(2100) && o <= Duration::from_secs(4),
                "{o:?}"
            );
            assert!(inn.glare_backoff(roll) <= Duration::from_secs(2));
        }
    }
}
