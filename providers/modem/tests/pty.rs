//! The modem provider driving a simulated modem through a real pseudo-terminal (kernel tty layer, raw
//! mode, non-blocking I/O) instead of an in-memory pipe. Real I/O cannot run on paused time, so the
//! simulated modem is configured to train fast and the test waits for conditions, not for fixed times.
#![cfg(unix)]

use std::sync::Arc;
use std::time::Duration;

use tapir_core::dial::DialString;
use tapir_core::media::MediaModes;
use tapir_core::params::{MakeCall, RequestId};
use tapir_core::state::{CallState, ConnectedMode, DisconnectReason};
use tapir_core::{AddressId, CallLegId, LineId, ProviderId};
use tapir_modem::tty::Pty;
use tapir_modem::{
    CallerId, FarEnd, LineStatus, ModemProvider, Network, RingIn, SimModem, SimModemConfig,
};
use tapir_provider::{EventLog, EventSink, Provider};

const OURS: &str = "5550100";

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn last(log: &EventLog, leg: CallLegId) -> Option<CallState> {
    log.states_of(leg).last().copied()
}

#[tokio::test]
async fn the_provider_drives_a_simulated_modem_through_a_pseudo_terminal() {
    let net = Network::new();
    net.far_end("5551234", FarEnd::modem_after_rings(0));
    let pty = Pty::new().expect("pseudo-terminal");
    let config = SimModemConfig {
        training: Duration::from_millis(100),
        ..SimModemConfig::default()
    };
    let modem = SimModem::builder()
        .config(config)
        .serve(&net, OURS, pty.master)
        .expect("serve");
    let provider = ModemProvider::serial(pty.path.clone()).number(OURS).build();
    let log = Arc::new(EventLog::default());
    provider
        .start(EventSink::new(ProviderId(1), log.clone()))
        .await
        .expect("start");
    assert_eq!(provider.status(), LineStatus::InService);

    // Outgoing data call, connected, dropped while online (escape + ATH through the pty).
    let leg = provider
        .make_call(MakeCall {
            request: RequestId(1),
            line: LineId(0),
            address: AddressId(0),
            destination: Some(DialString::parse_destination("5551234").expect("dial")),
            media_mode: MediaModes::DATA_MODEM,
        })
        .await
        .expect("make call");
    until("connected", || {
        last(&log, leg) == Some(CallState::Connected(ConnectedMode::Active))
    })
    .await;
    assert!(modem.dcd());
    provider.drop_call(leg).await.expect("drop");
    assert_eq!(last(&log, leg), Some(CallState::Idle));
    assert!(!modem.off_hook());

    // Incoming data call, answered, ended by the caller.
    let caller = net
        .ring_in(OURS, RingIn::modem(CallerId::number("5559999")))
        .expect("ring in");
    until("offered", || log.new_calls().len() == 2).await;
    let incoming = log.new_calls()[1].leg;
    provider.answer(incoming).await.expect("answer");
    assert_eq!(
        last(&log, incoming),
        Some(CallState::Connected(ConnectedMode::Active))
    );
    caller.hang_up();
    until("disconnected", || {
        last(&log, incoming) == Some(CallState::Disconnected(DisconnectReason::Normal))
    })
    .await;
    provider.drop_call(incoming).await.expect("drop");
    provider.stop().await;
    assert_eq!(net.live_calls(), 0);
    drop(pty.slave);
}
