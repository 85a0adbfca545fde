//! Smoke: a call from the trunk (sipp UAC) through tapir to a fixed-contact line (sipp UAS).
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use tapir_core::ProviderId;
use tapir_provider::{EventLog, EventSink, Provider};
use tapir_sip::{SipLine, SipProvider, SipSettings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_call_reaches_a_fixed_line_and_ends() {
    if !peer("sipp") {
        return;
    }
    let (tapir, uas, uac) = (free_port(), free_port(), free_port());
    let dir = Scratch::new("smoke");
    let settings = SipSettings::new(addr(tapir))
        .line(SipLine::fixed(
            "2009",
            "Lobby",
            format!("sip:127.0.0.1:{uas}"),
        ))
        .trunk(format!("sip:127.0.0.1:{uac}"));
    let provider = SipProvider::new(settings).unwrap();
    let log = Arc::new(EventLog::default());
    provider
        .start(EventSink::new(ProviderId(0), log.clone()))
        .await
        .unwrap();
    let mut uas_p = Sipp::spawn(
        &dir,
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &uas.to_string(),
            "-bind_local",
            "-m",
            "1",
        ],
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut uac_p = Sipp::spawn(
        &dir,
        &[
            "-sn",
            "uac",
            &format!("127.0.0.1:{tapir}"),
            "-s",
            "2009",
            "-i",
            "127.0.0.1",
            "-p",
            &uac.to_string(),
            "-bind_local",
            "-m",
            "1",
        ],
    );
    let rc = uac_p.finish(20).await;
    let rc2 = uas_p.finish(20).await;
    assert_eq!((rc, rc2), (0, 0), "both sipp ends saw a whole call");
    let leg = log.new_calls()[0].leg;
    use tapir_core::state::{CallStateKind::*, DisconnectReason};
    let kinds: Vec<_> = log.states_of(leg).iter().map(|s| s.kind()).collect();
    assert_eq!(kinds, vec![Offering, Connected, Disconnected]);
    assert_eq!(
        log.states_of(leg).last(),
        Some(&tapir_core::state::CallState::Disconnected(
            DisconnectReason::Normal
        ))
    );
    provider.drop_call(leg).await.unwrap();
    assert_eq!(log.states_of(leg).last().map(|s| s.kind()), Some(Idle));
    let mut quiet = false;
    for _ in 0..100 {
        if provider.is_quiet().await {
            quiet = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        quiet,
        "the provider still holds a call, dialog or transaction"
    );
    provider.stop().await;
}
