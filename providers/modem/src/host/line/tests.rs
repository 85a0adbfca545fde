//! The modem line's call logic with made-up instants: no runtime, no modem, no stream.

use std::time::Duration;

use tapir_core::dial::DialString;
use tapir_core::info::Presentation;
use tapir_core::media::MediaModes;
use tapir_core::params::RequestId;
use tapir_core::state::{CallState, ConnectedMode, DisconnectReason, OfferingMode};
use tapir_core::{CallLegId, Error};
use tapir_provider::{LineEvent, ProviderEvent};
use tokio::time::Instant;

use super::{CARRIER_WAIT, Dialled, HangUp, Line};
use crate::host::Final;

const RING_GONE: Duration = Duration::from_secs(8);
const CALL_SETUP: Duration = Duration::from_secs(90);

fn line(voice: bool, incoming: MediaModes) -> Line {
    let mut l = Line::new("5550100".into(), RING_GONE, CALL_SETUP, incoming);
    l.modem_found(voice, true);
    l
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The call states reported for `leg` among `events`.
fn states(events: &[ProviderEvent], leg: CallLegId) -> Vec<CallState> {
    events
        .iter()
        .filter_map(|e| match e {
            ProviderEvent::CallState { leg: l, state } if *l == leg => Some(*state),
            _ => None,
        })
        .collect()
}

fn rings(events: &[ProviderEvent]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            ProviderEvent::Line {
                event: LineEvent::Ringing { count, .. },
                ..
            } => Some(*count),
            _ => None,
        })
        .collect()
}

/// An offered call from a first `RING` at `t0`; its leg.
fn offered(l: &mut Line, t0: Instant) -> CallLegId {
    l.ring(t0);
    let events = l.take_events();
    match events.first() {
        Some(ProviderEvent::NewCall(c)) => {
            assert_eq!(c.state, CallState::Offering(OfferingMode::Active));
            assert_eq!(c.request, None);
            c.leg
        }
        other => panic!("a first ring reports a new call, not {other:?}"),
    }
}

#[test]
fn rings_offer_one_call_and_count_until_they_stop() {
    let t0 = Instant::now();
    let mut l = line(false, MediaModes::DATA_MODEM);
    let leg = offered(&mut l, t0);
    l.ring(t0 + secs(6));
    l.ring(t0 + secs(12));
    let events = l.take_events();
    assert_eq!(
        rings(&events),
        [1, 2],
        "each further ring counted, no new call"
    );
    // The caller gives up: no ring for the ring-gone time after the last one.
    assert_eq!(l.next_deadline(), Some(t0 + secs(12) + RING_GONE));
    assert!(!l.timer(t0 + secs(19)));
    assert!(l.take_events().is_empty(), "not yet gone");
    l.timer(t0 + secs(20));
    assert_eq!(
        states(&l.take_events(), leg),
        [
            CallState::Disconnected(DisconnectReason::Normal),
            CallState::Idle
        ]
    );
    assert!(!l.has_call());
}

#[test]
fn a_caller_id_block_is_reported_once_after_the_read() {
    let t0 = Instant::now();
    let mut l = line(false, MediaModes::DATA_MODEM);
    let leg = offered(&mut l, t0);
    l.caller_id_item("DATE", "1207");
    l.caller_id_item("NMBR", "5551234");
    l.caller_id_item("NAME", "DOE JOHN");
    assert!(
        l.take_events().is_empty(),
        "nothing until the read is handled"
    );
    l.read_done();
    let events = l.take_events();
    let [ProviderEvent::CallInfo { leg: l2, info }] = events.as_slice() else {
        panic!("one information change, not {events:?}");
    };
    assert_eq!(*l2, leg);
    assert_eq!(info.caller.number.as_deref(), Some("5551234"));
    assert_eq!(info.caller.name.as_deref(), Some("DOE JOHN"));
    assert_eq!(info.caller.presentation, Presentation::Allowed);
    l.read_done();
    assert!(l.take_events().is_empty(), "reported once");
}

#[test]
fn a_private_caller_keeps_no_name() {
    let mut l = line(false, MediaModes::DATA_MODEM);
    offered(&mut l, Instant::now());
    l.caller_id_item("NMBR", "P");
    l.caller_id_item("NAME", "SOMEONE");
    l.read_done();
    let events = l.take_events();
    let [ProviderEvent::CallInfo { info, .. }] = events.as_slice() else {
        panic!("one information change, not {events:?}");
    };
    assert_eq!(info.caller.presentation, Presentation::Blocked);
    assert_eq!(info.caller.name, None);
}

#[test]
fn a_dropped_offered_call_keeps_ringing_without_a_new_call() {
    let t0 = Instant::now();
    let mut l = line(false, MediaModes::DATA_MODEM);
    let leg = offered(&mut l, t0);
    assert_eq!(l.drop_call(t0 + secs(1), leg), Ok(HangUp::Nothing));
    l.end_call(DisconnectReason::Normal);
    l.take_events();
    // The caller's rings go on; they are not a new call, and the line is busy meanwhile.
    l.ring(t0 + secs(6));
    assert!(l.take_events().is_empty());
    assert!(matches!(
        l.usable(true),
        Err(Error::ResourceUnavailable { .. })
    ));
    // Once they stop, the next ring is a new call.
    l.timer(t0 + secs(6) + RING_GONE);
    assert_eq!(l.usable(true), Ok(()));
    let second = offered(&mut l, t0 + secs(30));
    assert_ne!(second, leg);
}

/// A data dial made and sent at `t0`; its leg.
fn data_dial(l: &mut Line, t0: Instant) -> CallLegId {
    let to = DialString::parse_destination("5551234").expect("a dial string");
    let leg = l.place(RequestId(1), Some(&to), MediaModes::DATA_MODEM, false);
    l.data_dial_sent(t0);
    leg
}

/// A data dial to a far end whose result code is `code` after `after`; the states of the call.
fn data_dial_ending(code: Final, after: Duration) -> (Vec<CallState>, Option<Result<(), Error>>) {
    let t0 = Instant::now();
    let mut l = line(false, MediaModes::DATA_MODEM);
    let leg = data_dial(&mut l, t0);
    assert!(!l.dial_waits(false), "a data dial runs on");
    l.unsolicited_final(t0 + after, code);
    (states(&l.take_events(), leg), l.take_attempt_outcome())
}

#[test]
fn result_codes_end_a_data_dial_with_their_reasons() {
    let proceeding = CallState::Proceeding;
    let (s, outcome) = data_dial_ending(Final::Connect(Some(33600)), secs(20));
    assert_eq!(s, [proceeding, CallState::Connected(ConnectedMode::Active)]);
    assert_eq!(outcome, Some(Ok(())));
    for (code, after, reason) in [
        (Final::Busy, secs(5), DisconnectReason::Busy),
        (Final::NoDialTone, secs(5), DisconnectReason::NoDialTone),
        (Final::NoAnswer, secs(30), DisconnectReason::NoAnswer),
        // NO CARRIER soon: the number could not be reached; after the whole S7: nobody answered.
        (Final::NoCarrier, secs(5), DisconnectReason::Unreachable),
        (Final::NoCarrier, CARRIER_WAIT, DisconnectReason::NoAnswer),
        (Final::Error, secs(1), DisconnectReason::Unknown),
    ] {
        let (s, outcome) = data_dial_ending(code, after);
        assert_eq!(
            s,
            [proceeding, CallState::Disconnected(reason)],
            "{code:?} after {after:?}"
        );
        assert!(matches!(outcome, Some(Err(Error::OperationFailed { .. }))));
    }
}

#[test]
fn an_answer_that_gets_no_carrier_is_unavailable() {
    let t0 = Instant::now();
    let mut l = line(false, MediaModes::DATA_MODEM);
    let leg = offered(&mut l, t0);
    assert_eq!(l.answer(leg), Ok(false));
    l.data_answer_sent(t0 + secs(1));
    assert_eq!(l.next_deadline(), Some(t0 + secs(1) + CALL_SETUP));
    l.unsolicited_final(t0 + secs(61), Final::NoCarrier);
    assert_eq!(
        states(&l.take_events(), leg),
        [CallState::Disconnected(DisconnectReason::Unavailable)]
    );
    assert!(matches!(l.take_attempt_outcome(), Some(Err(_))));
}

#[test]
fn an_attempt_without_a_result_code_is_given_up_and_the_modem_told() {
    let t0 = Instant::now();
    let mut l = line(false, MediaModes::DATA_MODEM);
    let leg = data_dial(&mut l, t0);
    assert!(!l.timer(t0 + CALL_SETUP - secs(1)));
    assert!(l.timer(t0 + CALL_SETUP), "the modem must abort the dial");
    let s = states(&l.take_events(), leg);
    assert_eq!(
        s.last(),
        Some(&CallState::Disconnected(DisconnectReason::NoAnswer))
    );
    assert!(matches!(l.take_attempt_outcome(), Some(Err(_))));
    assert_eq!(l.next_deadline(), None, "nothing left to time");
}

#[test]
fn online_no_carrier_is_the_far_end_hanging_up() {
    let t0 = Instant::now();
    let mut l = line(false, MediaModes::DATA_MODEM);
    let leg = data_dial(&mut l, t0);
    l.unsolicited_final(t0 + secs(20), Final::Connect(None));
    l.take_events();
    assert_eq!(l.hang_up(), HangUp::Escape, "online: escape before ATH");
    l.unsolicited_final(t0 + secs(80), Final::NoCarrier);
    assert_eq!(
        states(&l.take_events(), leg),
        [CallState::Disconnected(DisconnectReason::Normal)]
    );
    // A disconnected data call is already on hook: dropping it tells the modem nothing.
    assert_eq!(l.drop_call(t0 + secs(81), leg), Ok(HangUp::Nothing));
}

#[test]
fn dropping_a_dial_in_progress_aborts_it_and_ends_the_attempt() {
    let t0 = Instant::now();
    let mut l = line(false, MediaModes::DATA_MODEM);
    let leg = data_dial(&mut l, t0);
    assert_eq!(l.drop_call(t0 + secs(2), leg), Ok(HangUp::Abort));
    assert!(matches!(l.take_attempt_outcome(), Some(Err(_))));
    l.end_call(DisconnectReason::Normal);
    assert_eq!(states(&l.take_events(), leg).last(), Some(&CallState::Idle));
    assert_eq!(l.drop_call(t0 + secs(3), leg), Err(Error::CallUnavailable));
}

#[test]
fn voice_calls_take_digits_and_report_monitored_ones() {
    let t0 = Instant::now();
    let mut l = line(true, MediaModes::INTERACTIVE_VOICE);
    let leg = offered(&mut l, t0);
    assert_eq!(l.answer(leg), Ok(true), "a voice call on a voice modem");
    l.voice_answered();
    l.take_events();
    // Digits arrive as <DLE> events; only reported while monitored.
    l.dle(b'5');
    assert!(l.take_events().is_empty());
    l.monitor(leg, true).expect("monitor");
    l.dle(b'5');
    l.dle(b'#');
    let digits: String = l
        .take_events()
        .iter()
        .filter_map(|e| match e {
            ProviderEvent::Digit { digit, .. } => Some(*digit),
            _ => None,
        })
        .collect();
    assert_eq!(digits, "5#");
    assert_eq!(l.digits(leg, "12#"), Ok(()));
    assert!(matches!(
        l.digits(leg, "12x"),
        Err(Error::InvalidParameter { .. })
    ));
    // Busy tone: the far end hung up; no more digits then.
    l.dle(b'b');
    assert_eq!(
        states(&l.take_events(), leg),
        [CallState::Disconnected(DisconnectReason::Normal)]
    );
    assert!(matches!(
        l.monitor(leg, true),
        Err(Error::InvalidCallState { .. })
    ));
}

#[test]
fn a_voice_dial_is_connected_once_dialled() {
    let mut l = line(true, MediaModes::DATA_MODEM);
    assert_eq!(l.voice_for(MediaModes::INTERACTIVE_VOICE), Ok(true));
    let leg = l.place(RequestId(3), None, MediaModes::INTERACTIVE_VOICE, true);
    assert_eq!(l.dial(leg), Ok(()));
    assert!(l.dial_waits(false), "a voice dial waits for OK");
    l.dialled(false, Dialled::Ok);
    assert_eq!(
        states(&l.take_events(), leg),
        [
            CallState::Dialing,
            CallState::Proceeding,
            CallState::Connected(ConnectedMode::Active)
        ]
    );
    assert!(matches!(l.dial(leg), Err(Error::InvalidCallState { .. })));
}

#[test]
fn a_data_modem_refuses_voice_and_a_busy_line_refuses_calls() {
    let mut l = line(false, MediaModes::DATA_MODEM);
    assert_eq!(
        l.voice_for(MediaModes::INTERACTIVE_VOICE),
        Err(Error::InvalidMediaMode)
    );
    assert!(matches!(
        l.usable(false),
        Err(Error::ResourceUnavailable { .. })
    ));
    offered(&mut l, Instant::now());
    assert!(matches!(
        l.usable(true),
        Err(Error::ResourceUnavailable { .. })
    ));
}
