//! Session descriptions, as the back-to-back user agent carries them.
//!
//! tapir does not touch RTP: each side of a bridge is told the other side's media address, so RTP
//! flows end to end. What it sends on a dialog is therefore the *other* side's description, re-wrapped:
//! tapir's own origin line for that dialog (session version bumped on every change, RFC 3264 §5), the
//! media lines laid out as the dialog's offer requires (RFC 3264 §6), and the direction narrowed when a
//! side is held. [`Sdp`] is a description a peer sent; [`LocalSession`] renders what tapir sends.

use std::fmt;
use std::net::IpAddr;

use bytesstr::BytesStr;
use ezk_sdp_types::{Direction, MediaDescription, MediaType, SessionDescription, TaggedAddress};

/// A session description a peer sent, parsed.
#[derive(Clone, Debug)]
pub(crate) struct Sdp {
    // Boxed: a parsed description is about half a kilobyte, and every channel keeps up to two
    // (the last offer and the last answer) in the switch's table.
    desc: Box<SessionDescription>,
}

/// A body that is not a session description tapir can carry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unusable session description: {0}")]
pub(crate) struct SdpError(String);

impl Sdp {
    /// Parses a body. A description without any media line is refused: there would be nothing to
    /// carry.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError("not UTF-8".into()))?;
        let desc = SessionDescription::parse(&BytesStr::from(text))
            .map_err(|e| SdpError(e.to_string()))?;
        if desc.media_descriptions.is_empty() {
            return Err(SdpError("no media line".into()));
        }
        Ok(Self {
            desc: Box::new(desc),
        })
    }

    /// Whether this description (an offer) puts the sender's peer on hold: every live stream is
    /// `sendonly` or `inactive`, or the old RFC 2543 way, a connection address of 0.0.0.0.
    pub(crate) fn is_hold(&self) -> bool {
        let zero = |c: &Option<ezk_sdp_types::Connection>| matches!(c, Some(c) if matches!(c.address, TaggedAddress::IP4(ip) if ip.is_unspecified()));
        let live: Vec<&MediaDescription> = self
            .desc
            .media_descriptions
            .iter()
            .filter(|m| m.media.port != 0)
            .collect();
        !live.is_empty()
            && live.iter().all(|m| {
                matches!(m.direction, Direction::SendOnly | Direction::Inactive)
                    || zero(&m.connection)
                    || (m.connection.is_none() && zero(&self.desc.connection))
            })
    }

    /// The direction of the first live stream (what the sender does), `inactive` if none is live.
    pub(crate) fn direction(&self) -> Flow {
        self.desc
            .media_descriptions
            .iter()
            .find(|m| m.media.port != 0)
            .map(|m| Flow::of(m.direction))
            .unwrap_or(Flow::NONE)
    }

    /// The media types of the lines, in order: the layout an answer must keep.
    fn layout(&self) -> Vec<MediaType> {
        self.desc
            .media_descriptions
            .iter()
            .map(|m| m.media.media_type)
            .collect()
    }
}

/// Which ways media may flow, from the point of view of the side a description describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Flow {
    /// It sends.
    pub(crate) send: bool,
    /// It receives.
    pub(crate) recv: bool,
}

impl Flow {
    /// Both ways.
    pub(crate) const BOTH: Flow = Flow {
        send: true,
        recv: true,
    };
    /// Neither way.
    pub(crate) const NONE: Flow = Flow {
        send: false,
        recv: false,
    };
    /// Sending only: what a side that holds its peer offers (RFC 3264 §8.4).
    pub(crate) const SEND: Flow = Flow {
        send: true,
        recv: false,
    };

    fn of(d: Direction) -> Self {
        match d {
            Direction::SendRecv => Self::BOTH,
            Direction::SendOnly => Self::SEND,
            Direction::RecvOnly => Flow {
                send: false,
                recv: true,
            },
            Direction::Inactive => Self::NONE,
        }
    }

    fn direction(self) -> Direction {
        match (self.send, self.recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// The flow of an answer to an offer with this flow (RFC 3264 §6.1): what the offerer sends,
    /// the answerer receives, and the other way round.
    pub(crate) fn answer(self) -> Flow {
        Flow {
            send: self.recv,
            recv: self.send,
        }
    }

    /// Both restrictions at once.
    pub(crate) fn and(self, other: Flow) -> Flow {
        Flow {
            send: self.send && other.send,
            recv: self.recv && other.recv,
        }
    }
}

/// tapir's side of one dialog's session: the origin it puts in everything it sends there, and what
/// it sent last.
#[derive(Clone, Debug)]
pub(crate) struct LocalSession {
    id: u64,
    version: u64,
    /// What is in effect: the last description sent (without its version, and as sent).
    last: Option<(String, String)>,
    /// What was in effect before the last offer, should the peer refuse it.
    before: Option<(String, String)>,
    /// Whether anything was sent yet (the first description has version 0).
    sent_any: bool,
    /// The media layout tapir's offers or answers on this dialog have had; later ones keep it.
    layout: Vec<MediaType>,
}

impl LocalSession {
    /// A session with the given origin ID (unique per dialog).
    pub(crate) fn new(id: u64) -> Self {
        Self {
            id,
            version: 0,
            last: None,
            before: None,
            sent_any: false,
            layout: Vec::new(),
        }
    }

    /// What to send on this dialog for a bridge to `peer`: the peer's media, re-wrapped, every
    /// stream with direction `flow` (the switch works it out from what each side wants and who is
    /// held). `answering` is the offer being answered, whose media layout the answer must follow;
    /// without one the layout of earlier exchanges is kept (a re-offer may not drop media lines).
    pub(crate) fn relay(&self, peer: &Sdp, answering: Option<&Sdp>, flow: Flow) -> Rendered {
        let layout = match answering {
            Some(offer) => offer.layout(),
            None if self.layout.is_empty() => peer.layout(),
            None => {
                let mut l = self.layout.clone();
                // New lines the peer has beyond the earlier layout may be added at the end.
                l.extend(peer.layout().into_iter().skip(self.layout.len()));
                l
            }
        };
        let mut desc = peer.desc.clone();
        let mut media = Vec::with_capacity(layout.len());
        for (i, kind) in layout.iter().enumerate() {
            match peer.desc.media_descriptions.get(i) {
                Some(m) if m.media.media_type == *kind => {
                    let mut m = m.clone();
                    m.direction = flow.direction();
                    media.push(m);
                }
                _ => media.push(MediaDescription::rejected(*kind)),
            }
        }
        desc.media_descriptions = media;
        desc.direction = Direction::SendRecv;
        desc.name = BytesStr::from_static("tapir");
        self.render(*desc, layout)
    }

    /// A description for a dialog bridged with nothing: audio at tapir's address on the discard
    /// port. With `flow` both ways it is the first offer of a call tapir places (the answer tells
    /// where the phone's media is, and the phone starts its audio — some phones do not start it
    /// later for a session that began `inactive`); with no flow it holds a dialog whose partner is
    /// gone for now (a held original, a parked party), so no media goes to a party no longer there.
    pub(crate) fn placeholder(&self, ip: IpAddr, flow: Flow) -> Rendered {
        let text = format!(
            "v=0\r\no=tapir 0 0 IN {fam} {ip}\r\ns=tapir\r\nc=IN {fam} {ip}\r\nt=0 0\r\n\
             m=audio 9 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na={}\r\n",
            flow.direction(),
            fam = if ip.is_ipv4() { "IP4" } else { "IP6" },
        );
        match SessionDescription::parse(&BytesStr::from(text.as_str())) {
            Ok(desc) => self.render(desc, vec![MediaType::Audio]),
            // The text above is a constant shape; a parser that refuses it is a build defect.
            Err(e) => unreachable!("the placeholder offer parses: {e}"),
        }
    }

    /// What tapir last sent on the dialog (and is in effect).
    pub(crate) fn last(&self) -> Option<&str> {
        self.last.as_ref().map(|(_, text)| text.as_str())
    }

    fn render(&self, mut desc: SessionDescription, layout: Vec<MediaType>) -> Rendered {
        desc.origin.username = BytesStr::from_static("tapir");
        desc.origin.session_id = BytesStr::from(self.id.to_string());
        // Content is compared without the version, which changes only when the content does
        // (RFC 3264 §8: an offer that changes nothing keeps it).
        desc.origin.session_version = BytesStr::from_static("0");
        let key = desc.to_string();
        if let Some((last_key, last)) = &self.last {
            if *last_key == key {
                return Rendered {
                    text: last.clone(),
                    key,
                    version: self.version,
                    layout,
                    changed: false,
                };
            }
        }
        let version = self.version + u64::from(self.sent_any);
        desc.origin.session_version = BytesStr::from(version.to_string());
        Rendered {
            text: desc.to_string(),
            key,
            version,
            layout,
            changed: true,
        }
    }

    /// Records that `r` was sent; returns its text.
    pub(crate) fn sent(&mut self, r: Rendered) -> String {
        self.version = r.version;
        self.layout = r.layout;
        self.sent_any = true;
        self.before = self.last.replace((r.key, r.text.clone()));
        r.text
    }

    /// The peer refused the offer sent last: the session is what it was before (RFC 3261 §14.1).
    /// The version is not taken back, so the next offer is newer than the refused one.
    pub(crate) fn refused(&mut self) {
        self.last = self.before.take();
    }
}

/// A description rendered for a dialog, not yet sent.
#[derive(Clone, Debug)]
pub(crate) struct Rendered {
    text: String,
    key: String,
    version: u64,
    layout: Vec<MediaType>,
    /// Whether it differs from what was sent last.
    pub(crate) changed: bool,
}

impl fmt::Display for Sdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.desc.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHONE: &str = "v=0\r\no=- 100 200 IN IP4 127.0.0.1\r\ns=phone\r\nc=IN IP4 127.0.0.1\r\n\
        t=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

    fn phone() -> Sdp {
        Sdp::parse(PHONE.as_bytes()).expect("a phone's offer parses")
    }

    #[test]
    fn a_relayed_description_carries_the_peers_media_under_tapirs_origin() {
        let mut s = LocalSession::new(7);
        let first = s.relay(&phone(), None, Flow::BOTH);
        assert!(first.changed);
        let out = s.sent(first);
        assert!(out.contains("o=tapir 7 0 IN IP4 127.0.0.1"), "{out}");
        assert!(out.contains("m=audio 40000 RTP/AVP 0 101"), "{out}");
        assert!(out.contains("a=sendrecv"), "{out}");
        // The same content again keeps the version and is no change; a change bumps it.
        let again = s.relay(&phone(), None, Flow::BOTH);
        assert!(!again.changed);
        let held = s.relay(&phone(), None, Flow::SEND);
        assert!(held.changed);
        // Rendering twice before sending gives the same version.
        assert_eq!(s.relay(&phone(), None, Flow::SEND).text, held.text);
        let held = s.sent(held);
        assert!(held.contains("o=tapir 7 1 "), "{held}");
        assert!(held.contains("a=sendonly"), "{held}");
        assert_eq!(s.last(), Some(held.as_str()));
        // Refused: what is in effect is what was before, and the next offer is newer still.
        s.refused();
        assert!(!s.relay(&phone(), None, Flow::BOTH).changed);
        let again = s.relay(&phone(), None, Flow::SEND);
        assert!(s.sent(again).contains("o=tapir 7 2 "));
    }

    #[test]
    fn flows_combine_as_offer_and_answer_need() {
        let recvonly = Flow {
            send: false,
            recv: true,
        };
        // A peer that only receives, held: nothing flows (RFC 3264 §8.4: inactive, not sendonly).
        assert_eq!(recvonly.and(Flow::SEND), Flow::NONE);
        assert_eq!(Flow::SEND.answer(), recvonly);
        assert_eq!(Flow::BOTH.answer(), Flow::BOTH);
        let s = LocalSession::new(1);
        assert!(
            s.relay(&phone(), None, Flow::NONE)
                .text
                .contains("a=inactive")
        );
        assert!(
            s.relay(&phone(), None, recvonly)
                .text
                .contains("a=recvonly")
        );
    }

    #[test]
    fn an_answer_keeps_the_offers_media_lines() {
        let offer = PHONE.replace(
            "a=sendrecv\r\n",
            "a=sendrecv\r\nm=video 40002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
        );
        let offer = Sdp::parse(offer.as_bytes()).expect("parses");
        let s = LocalSession::new(1);
        // The peer answered audio only: the video line is refused with port 0, not left out.
        let out = s.relay(&phone(), Some(&offer), Flow::BOTH).text;
        assert!(out.contains("m=audio 40000"), "{out}");
        assert!(out.contains("m=video 0 "), "{out}");
    }

    #[test]
    fn hold_offers_are_recognised_old_and_new() {
        assert!(!phone().is_hold());
        for hold in [
            PHONE.replace("a=sendrecv", "a=sendonly"),
            PHONE.replace("a=sendrecv", "a=inactive"),
            PHONE.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"),
        ] {
            assert!(
                Sdp::parse(hold.as_bytes()).expect("parses").is_hold(),
                "{hold}"
            );
        }
    }

    #[test]
    fn the_placeholder_is_audio_to_the_discard_port_flowing_as_asked() {
        let s = LocalSession::new(3);
        let ip = "127.0.0.1".parse().expect("ip");
        for flow in [Flow::BOTH, Flow::NONE] {
            let p = s.placeholder(ip, flow).text;
            let parsed = Sdp::parse(p.as_bytes()).expect("the placeholder parses");
            assert_eq!(parsed.direction(), flow);
            assert!(p.contains("m=audio 9 ") && p.contains("PCMU/8000"), "{p}");
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Sdp::parse(b"hello").is_err());
        assert!(Sdp::parse(&[0xff, 0xfe]).is_err());
        assert!(Sdp::parse(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n").is_err());
    }
}
