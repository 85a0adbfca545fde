//! The modem provider driving a simulated modem over an in-memory serial line: initialisation,
//! outgoing and incoming calls, caller ID, drops, voice digits, and a modem that never answers.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tapir_core::dial::DialString;
use tapir_core::info::Presentation;
use tapir_core::media::MediaModes;
use tapir_core::params::{DigitMode, MakeCall, RequestId};
use tapir_core::state::{CallState, ConnectedMode, DialToneMode, DisconnectReason, OfferingMode};
use tapir_core::{AddressId, CallLegId, Error, LineId, ProviderId};
use tapir_modem::provider::{Connector, Port};
use tapir_modem::{
    CallerId, FarEnd, LineStatus, ModemHandle, ModemProvider, Network, RemoteCall, RingIn, SimModem,
};
use tapir_provider::{EventLog, EventSink, LineEvent, Provider, ProviderEvent};
use tokio::time::sleep;

const OURS: &str = "5550100";

struct Rig {
    net: Network,
    provider: Arc<ModemProvider>,
    log: Arc<EventLog>,
    modem: ModemHandle,
}

async fn rig_with(net: Network, modem: SimModem, dtr: bool) -> Rig {
    rig_full(net, modem, dtr, MediaModes::DATA_MODEM).await
}

async fn rig_full(net: Network, modem: SimModem, dtr: bool, incoming: MediaModes) -> Rig {
    let (stream, handle) = modem.attach(&net, OURS).expect("attach");
    let mut builder = ModemProvider::over(stream)
        .number(OURS)
        .incoming_media(incoming);
    if dtr {
        let h = handle.clone();
        builder = builder.dtr(Arc::new(move |high| h.set_dtr(high)));
    }
    let provider = Arc::new(builder.build());
    let log = Arc::new(EventLog::default());
    let caps = provider
        .start(EventSink::new(ProviderId(1), log.clone()))
        .await
        .expect("start");
    assert_eq!(caps.len(), 1);
    assert_eq!(provider.status(), LineStatus::InService);
    Rig {
        net,
        provider,
        log,
        modem: handle,
    }
}

async fn rig(net: Network) -> Rig {
    rig_with(net, SimModem::builder(), false).await
}

fn make(to: Option<&str>, media: MediaModes) -> MakeCall {
    MakeCall {
        request: RequestId(7),
        line: LineId(0),
        address: AddressId(0),
        destination: to.map(|t| DialString::parse_destination(t).expect("dial string")),
        media_mode: media,
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

impl Rig {
    async fn call_out(&self, to: &str) -> CallLegId {
        let leg = self
            .provider
            .make_call(make(Some(to), MediaModes::DATA_MODEM))
            .await
            .expect("make call");
        assert_eq!(self.log.new_calls()[0].request, Some(RequestId(7)));
        leg
    }
    fn last_state(&self, leg: CallLegId) -> Option<CallState> {
        self.log.states_of(leg).last().copied()
    }
    async fn ring_in(&self, ring: RingIn) -> (RemoteCall, CallLegId) {
        let remote = self.net.ring_in(OURS, ring).expect("ring in");
        sleep(Duration::from_millis(100)).await;
        let leg = self.log.new_calls().last().expect("offered").leg;
        (remote, leg)
    }
    async fn finish(&self) {
        self.provider.stop().await;
        assert_eq!(self.net.live_calls(), 0, "no call is left in the network");
        assert!(!self.modem.off_hook());
    }
}

#[tokio::test(start_paused = true)]
async fn outgoing_data_call_connects_and_a_local_drop_hangs_up_online() {
    let net = Network::new();
    net.far_end("5551234", FarEnd::modem_after_rings(1));
    let r = rig(net).await;
    let leg = r.call_out("5551234").await;
    assert_eq!(
        r.log.states_of(leg),
        vec![CallState::Dialing, CallState::Proceeding]
    );
    sleep(secs(15)).await;
    assert_eq!(
        r.last_state(leg),
        Some(CallState::Connected(ConnectedMode::Active))
    );
    assert!(r.modem.dcd());
    r.provider.drop_call(leg).await.expect("drop");
    assert_eq!(r.last_state(leg), Some(CallState::Idle));
    assert!(!r.modem.dcd());
    assert_eq!(r.net.live_calls(), 0);
    r.finish().await;
}

#[tokio::test(start_paused = true)]
async fn dtr_drop_hangs_up_where_the_stream_has_dtr() {
    let net = Network::new();
    net.far_end("5551234", FarEnd::modem_after_rings(1));
    let r = rig_with(net, SimModem::builder(), true).await;
    let leg = r.call_out("5551234").await;
    sleep(secs(15)).await;
    assert!(r.modem.dcd());
    r.provider.drop_call(leg).await.expect("drop");
    assert_eq!(r.last_state(leg), Some(CallState::Idle));
    assert!(!r.modem.dcd());
    r.finish().await;
}

#[tokio::test(start_paused = true)]
async fn outgoing_failures_carry_the_reason_from_the_result_code() {
    let net = Network::new();
    net.far_end("5550001", FarEnd::busy());
    net.far_end("5550002", FarEnd::no_answer());
    let r = rig(net).await;
    for (to, wait, reason) in [
        ("5550001", 5, DisconnectReason::Busy),
        ("5550002", 70, DisconnectReason::NoAnswer),
        ("5550003", 5, DisconnectReason::Unreachable),
    ] {
        let leg = r.call_out(to).await;
        sleep(secs(wait)).await;
        assert_eq!(
            r.last_state(leg),
            Some(CallState::Disconnected(reason)),
            "{to}"
        );
        r.provider.drop_call(leg).await.expect("drop");
        assert_eq!(r.last_state(leg), Some(CallState::Idle));
        r.log.take();
    }
    r.finish().await;
}

#[tokio::test(start_paused = true)]
async fn a_dead_line_is_no_dial_tone() {
    let net = Network::new();
    net.far_end("5551234", FarEnd::modem_after_rings(1));
    let r = rig_with(net, SimModem::builder().no_dial_tone(), false).await;
    let leg = r.call_out("5551234").await;
    sleep(secs(5)).await;
    assert_eq!(
        r.last_state(leg),
        Some(CallState::Disconnected(DisconnectReason::NoDialTone))
    );
    r.provider.drop_call(leg).await.expect("drop");
    r.finish().await;
}

#[tokio::test(start_paused = true)]
async fn partial_dialling_from_dial_tone() {
    let net = Network::new();
    net.far_end("5551234", FarEnd::modem_after_rings(1));
    let r = rig(net).await;
    let leg = r
        .provider
        .make_call(make(None, MediaModes::DATA_MODEM))
        .await
        .expect("make call");
    assert_eq!(
        r.log.states_of(leg),
        vec![CallState::DialTone(DialToneMode::Normal)]
    );
    assert!(r.modem.off_hook());
    let part = DialString::parse("555;").expect("partial");
    r.provider.dial(leg, &part).await.expect("dial");
    assert_eq!(r.last_state(leg), Some(CallState::Dialing));
    let rest = DialString::parse("1234").expect("rest");
    r.provider.dial(leg, &rest).await.expect("dial");
    sleep(secs(15)).await;
    assert_eq!(
        r.last_state(leg),
        Some(CallState::Connected(ConnectedMode::Active))
    );
    r.provider.drop_call(leg).await.expect("drop");
    r.finish().await;
}

#[tokio::test(start_paused = true)]
async fn incoming_call_with_caller_id_is_answered_and_the_far_end_hangs_up() {
    let r = rig(Network::new()).await;
    let (remote, leg) = r
        .ring_in(RingIn::modem(CallerId::named("5551234567", "DOE JOHN")))
        .await;
    assert_eq!(
        r.log.states_of(leg),
        vec![CallState::Offering(OfferingMode::Active)]
    );
    sleep(secs(7)).await;
    let events = r.log.take();
    let info = events.iter().rev().find_map(|e| match e {
        ProviderEvent::CallInfo { info, .. } => Some(info.clone()),
        _ => None,
    });
    let info = info.expect("caller ID arrived");
    assert_eq!(info.caller.number.as_deref(), Some("5551234567"));
    assert_eq!(info.caller.name.as_deref(), Some("DOE JOHN"));
    let rings: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            ProviderEvent::Line {
                event: LineEvent::Ringing { count, .. },
                ..
            } => Some(*count),
            _ => None,
        })
        .collect();
    assert_eq!(rings, vec![0, 1]);

    r.provider.accept(leg).await.expect("accept");
    r.provider.answer(leg).await.expect("answer");
    assert_eq!(
        r.last_state(leg),
        Some(CallState::Connected(ConnectedMode::Active))
    );
    assert!(remote.is_answered());
    remote.hang_up();
    sleep(Duration::from_millis(100)).await;
    assert_eq!(
        r.last_state(leg),
        Some(CallState::Disconnected(DisconnectReason::Normal))
    );
    r.provider.drop_call(leg).await.expect("drop");
    assert_eq!(r.last_state(leg), Some(CallState::Idle));
    r.finish().await;
}

#[tokio::test(start_paused = true)]
async fn withheld_caller_and_a_caller_who_gives_up() {
    let r = rig(Network::new()).await;
    let (_remote, leg) = r
        .ring_in(RingIn::modem(CallerId::withheld()).gives_up_after(secs(8)))
        .await;
    sleep(secs(4)).await;
    let info = r.log.take().into_iter().find_map(|e| match e {
        ProviderEvent::CallInfo { info, .. } => Some(info),
        _ => None,
    });
    assert_eq!(
        info.expect("caller ID").caller.presentation,
        Presentation::Blocked
    );
    // Last ring at 6 s; after 10 s without one the call is gone.
    sleep(secs(13)).await;
    assert_eq!(
        r.log.states_of(leg),
        vec![
            CallState::Disconnected(DisconnectReason::Normal),
            CallState::Idle
        ]
    );
    r.finish().await;
}

#[tokio::test(start_paused = true)]
async fn a_dropped_offered_call_does_not_come_back_with_the_next_ring() {
    let r = rig(Network::new()).await;
    let (remote, leg) = r.ring_in(RingIn::modem(CallerId::number("5551234"))).await;
    r.provider.drop_call(leg).await.expect("drop");
    assert_eq!(r.last_state(leg), Some(CallState::Idle));
    sleep(secs(20)).await;
    assert_eq!(r.log.new_calls().len(), 1, "later rings are the same call");
    remote.hang_up();
    sleep(secs(11)).await;
    let (_again, second) = r.ring_in(RingIn::modem(CallerId::number("5551234"))).await;
    assert_ne!(
        second, leg,
        "a new caller is a new call once the rings stopped"
    );
    r.provider.drop_call(second).await.expect("drop");
    r.finish().await;
}

#[tokio::test(start_paused = true)]
async fn voice_call_with_digits_both_ways() {
    let r = rig_full(
        Network::new(),
        SimModem::builder(),
        false,
        MediaModes::INTERACTIVE_VOICE,
    )
    .await;
    let (remote, leg) = r
        .ring_in(RingIn::voice(CallerId::number("5551234")).presses("5#"))
        .await;
    r.provider.answer(leg).await.expect("answer");
    r.provider
        .monitor_digits(leg, Some(DigitMode::Dtmf))
        .await
        .expect("monitor");
    sleep(secs(1)).await;
    let digits: String = r
        .log
        .take()
        .into_iter()
        .filter_map(|e| match e {
            ProviderEvent::Digit { digit, .. } => Some(digit),
            _ => None,
        })
        .collect();
    assert_eq!(digits, "5#");
    r.provider
        .generate_digits(leg, "12", DigitMode::Dtmf)
        .await
        .expect("digits");
    assert_eq!(remote.heard(), "12");
    assert!(matches!(
        r.provider.generate_digits(leg, "1x", DigitMode::Dtmf).await,
        Err(Error::InvalidParameter { .. })
    ));
    remote.hang_up();
    sleep(Duration::from_millis(100)).await;
    assert_eq!(
        r.last_state(leg),
        Some(CallState::Disconnected(DisconnectReason::Normal))
    );
    r.provider.drop_call(leg).await.expect("drop");
    r.finish().await;
}

#[tokio::test(start_paused = true)]
async fn outgoing_voice_call_is_connected_once_dialled() {
    let net = Network::new();
    net.far_end("5551234", FarEnd::voice_after_rings(1));
    let r = rig(net).await;
    let leg = r
        .provider
        .make_call(make(Some("5551234"), MediaModes::INTERACTIVE_VOICE))
        .await
        .expect("make call");
    assert_eq!(
        r.log.states_of(leg),
        vec![
            CallState::Dialing,
            CallState::Proceeding,
            CallState::Connected(ConnectedMode::Active)
        ]
    );
    r.provider.drop_call(leg).await.expect("drop");
    r.finish().await;
}

#[tokio::test(start_paused = true)]
async fn one_call_at_a_time_and_unimplemented_operations_are_unavailable() {
    let net = Network::new();
    net.far_end("5551234", FarEnd::no_answer());
    let r = rig(net).await;
    let leg = r.call_out("5551234").await;
    assert!(matches!(
        r.provider
            .make_call(make(Some("5551234"), MediaModes::DATA_MODEM))
            .await,
        Err(Error::ResourceUnavailable { .. })
    ));
    assert!(matches!(
        r.provider.hold(leg).await,
        Err(Error::OperationUnavailable { .. })
    ));
    assert!(matches!(
        r.provider
            .make_call(make(Some("5551234"), MediaModes::G3_FAX))
            .await,
        Err(Error::ResourceUnavailable { .. } | Error::InvalidMediaMode)
    ));
    r.provider.drop_call(leg).await.expect("drop");
    r.finish().await;
}

/// A stream to nothing: the modem never answers.
fn silent_port() -> Box<dyn Port> {
    let (ours, theirs) = tokio::io::duplex(1024);
    std::mem::forget(theirs);
    Box::new(ours)
}

#[tokio::test(start_paused = true)]
async fn a_modem_that_never_answers_is_out_of_service_and_recovers_when_it_does() {
    let net = Network::new();
    let attempts = Arc::new(AtomicUsize::new(0));
    let plugged: Arc<Mutex<Option<tokio::io::DuplexStream>>> = Arc::new(Mutex::new(None));
    let connector: Connector = {
        let attempts = attempts.clone();
        let plugged = plugged.clone();
        Arc::new(move || {
            attempts.fetch_add(1, Ordering::SeqCst);
            let stream = plugged.lock().expect("lock").take();
            Box::pin(async move {
                Ok::<Box<dyn Port>, io::Error>(match stream {
                    Some(s) => Box::new(s),
                    None => silent_port(),
                })
            })
        })
    };
    let provider = ModemProvider::builder(connector).number(OURS).build();
    let log = Arc::new(EventLog::default());
    let started = tokio::time::Instant::now();
    let caps = provider
        .start(EventSink::new(ProviderId(1), log.clone()))
        .await
        .expect("start still succeeds");
    assert_eq!(caps.len(), 1);
    assert!(
        started.elapsed() <= secs(5),
        "init gives up, it does not hang"
    );
    let LineStatus::OutOfService(reason) = provider.status() else {
        panic!("expected out of service, got {:?}", provider.status());
    };
    assert!(reason.contains("did not answer AT"), "{reason}");
    assert!(log.take().iter().any(|e| matches!(
        e,
        ProviderEvent::Line {
            event: LineEvent::OutOfService { .. },
            ..
        }
    )));
    assert!(matches!(
        provider
            .make_call(make(Some("5551234"), MediaModes::DATA_MODEM))
            .await,
        Err(Error::ResourceUnavailable { .. })
    ));

    // The modem is plugged in; the next retry finds it.
    let (stream, _modem) = SimModem::builder().attach(&net, OURS).expect("attach");
    *plugged.lock().expect("lock") = Some(stream);
    sleep(secs(35)).await;
    assert_eq!(provider.status(), LineStatus::InService);
    assert!(log.take().iter().any(|e| matches!(
        e,
        ProviderEvent::Line {
            event: LineEvent::InService,
            ..
        }
    )));
    assert!(attempts.load(Ordering::SeqCst) >= 2);
    provider.stop().await;
    assert_eq!(provider.status(), LineStatus::Stopped);
}
