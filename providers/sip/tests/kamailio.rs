//! The SIP provider behind a real proxy: the trunk is kamailio, a transaction-stateful proxy that
//! record-routes, as a carrier's or a PBX's edge does. Calls from outside reach a line through it,
//! and calls to the trunk leave through it; every in-dialog request on the trunk side (ACK, BYE)
//! must follow the route set the proxy recorded, whichever end sends it.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tapir_core::dial::DialString;
use tapir_core::media::MediaModes;
use tapir_core::params::{MakeCall, RequestId};
use tapir_core::state::CallStateKind::{self, *};
use tapir_core::{AddressId, LineId, ProviderId};
use tapir_provider::{EventLog, EventSink, Provider};
use tapir_sip::{SipLine, SipProvider, SipSettings};

fn scenario(name: &str) -> String {
    format!("{}/tests/scenarios/{name}.xml", env!("CARGO_MANIFEST_DIR"))
}

/// kamailio on `proxy`: requests from tapir (`tapir`) go to `outside`; all others go to tapir.
/// Every in-dialog request it routes is logged as `routed METHOD`.
fn kamailio_cfg(proxy: u16, tapir: u16, outside: u16) -> String {
    format!(
        r#"#!KAMAILIO
debug=1
log_stderror=yes
children=2
auto_aliases=no
listen=udp:127.0.0.1:{proxy}

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "xlog.so"

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            xlog("L_ERR", "routed $rm\n");
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    t_check_trans();
    record_route();
    if ($sp == {tapir}) {{
        $du = "sip:127.0.0.1:{outside}";
    }} else {{
        $du = "sip:127.0.0.1:{tapir}";
    }}
    t_relay();
}}
"#
    )
}

/// tapir (line 2009 with a fixed contact on `device`), its trunk kamailio, and beyond kamailio
/// sipp on `outside`.
struct Rig {
    provider: SipProvider,
    log: Arc<EventLog>,
    dir: Scratch,
    proxy: u16,
    device: u16,
    outside: u16,
    kamailio: tokio::process::Child,
}

impl Rig {
    async fn new(name: &str) -> Self {
        log();
        let (tapir, proxy, device, outside) = (free_port(), free_port(), free_port(), free_port());
        let dir = Scratch::new(name);
        let cfg = dir.0.join("kamailio.cfg");
        std::fs::write(&cfg, kamailio_cfg(proxy, tapir, outside)).unwrap();
        let kamailio = tokio::process::Command::new("kamailio")
            .arg("-f")
            .arg(&cfg)
            .args(["-m", "64", "-E", "-DD", "-w"])
            .arg(&dir.0)
            .arg("-P")
            .arg(dir.0.join("kamailio.pid"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("kamailio.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("kamailio starts");
        let settings = SipSettings::new(addr(tapir))
            .line(SipLine::fixed(
                "2009",
                "Lobby",
                format!("sip:127.0.0.1:{device}"),
            ))
            .trunk(format!("sip:127.0.0.1:{proxy}"));
        let provider = SipProvider::new(settings).unwrap();
        let log = Arc::new(EventLog::default());
        provider
            .start(EventSink::new(ProviderId(0), log.clone()))
            .await
            .unwrap();
        let rig = Self {
            provider,
            log,
            dir,
            proxy,
            device,
            outside,
            kamailio,
        };
        // kamailio answers OPTIONS statelessly once it listens.
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let options = format!(
            "OPTIONS sip:127.0.0.1:{proxy} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKprobe\r\n\
             From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1:{proxy}>\r\nCall-ID: probe\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 0\r\nContent-Length: 0\r\n\r\n",
            local = probe.local_addr().unwrap()
        );
        let mut buf = [0u8; 2048];
        let mut up = false;
        for _ in 0..50 {
            let _ = probe.send_to(options.as_bytes(), addr(proxy));
            if probe.recv_from(&mut buf).is_ok() {
                up = true;
                break;
            }
        }
        assert!(up, "kamailio did not start: {}", rig.kamailio_log());
        rig
    }

    fn kamailio_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("kamailio.log")).unwrap_or_default()
    }

    fn sipp(&self, scenario_name: &str, port: u16, calls: &str, extra: &[&str]) -> Sipp {
        let port = port.to_string();
        let file = scenario(scenario_name);
        let mut args = vec![
            "-sf",
            file.as_str(),
            "-i",
            "127.0.0.1",
            "-p",
            port.as_str(),
            "-bind_local",
            "-m",
            calls,
        ];
        args.extend_from_slice(extra);
        Sipp::spawn(&self.dir, &args)
    }

    fn kinds(&self, line: u32) -> Vec<Vec<CallStateKind>> {
        self.log
            .new_calls()
            .iter()
            .filter(|c| c.line == LineId(line))
            .map(|c| self.log.states_of(c.leg).iter().map(|s| s.kind()).collect())
            .collect()
    }

    /// Drops what the far end hung up (a disconnected call waits for its application), then
    /// checks that nothing is left.
    async fn finish(mut self) {
        for c in self.log.new_calls() {
            if self
                .log
                .states_of(c.leg)
                .last()
                .is_some_and(|s| !s.is_idle())
            {
                let _ = self.provider.drop_call(c.leg).await;
            }
        }
        assert_quiet(&self.provider).await;
        self.provider.stop().await;
        let _ = self.kamailio.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_from_outside_through_a_record_routing_proxy_ring_the_line_and_hang_up_through_it() {
    if !peer("sipp") || !peer("kamailio") {
        return;
    }
    let rig = Rig::new("proxy-in").await;
    let mut device = rig.sipp("callee_copies_routes", rig.device, "3", &[]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The caller sends its ACK and BYE along the route set of the 200: through kamailio to tapir.
    let target = format!("127.0.0.1:{}", rig.proxy);
    let mut caller = rig.sipp(
        "caller_follows_routes",
        rig.outside,
        "3",
        &[&target, "-s", "2009", "-r", "5", "-d", "300"],
    );
    let rcs = (caller.finish(30).await, device.finish(30).await);
    assert_eq!(rcs, (0, 0), "{}\n{}", rig.dir.logs(), rig.kamailio_log());
    let calls = rig.kinds(0);
    assert_eq!(calls.len(), 3, "{calls:?}");
    for c in &calls {
        assert_eq!(c[..2], [Offering, Connected], "{calls:?}");
        assert!(c.contains(&Disconnected), "{calls:?}");
    }
    // Each call's ACK and BYE came along the recorded route.
    let log = rig.kamailio_log();
    assert_eq!(log.matches("routed ACK").count(), 3, "{log}");
    assert_eq!(log.matches("routed BYE").count(), 3, "{log}");
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_the_trunk_leaves_through_the_proxy_and_tapirs_bye_follows_the_route() {
    if !peer("sipp") || !peer("kamailio") {
        return;
    }
    let rig = Rig::new("proxy-out").await;
    // The line's device answers tapir's call (and the re-INVITE that gives it the far side's
    // media); beyond the proxy a callee that copies the Record-Route into its answer.
    let mut device = rig.sipp("phone_answers_everything", rig.device, "1", &[]);
    let mut far = rig.sipp("callee_copies_routes", rig.outside, "1", &[]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let leg = rig
        .provider
        .make_call(MakeCall {
            request: RequestId(1),
            line: LineId(0),
            address: AddressId(0),
            destination: Some(DialString::parse_destination("5551234").unwrap()),
            media_mode: MediaModes::INTERACTIVE_VOICE,
        })
        .await
        .unwrap();
    let log = rig.log.clone();
    until(10, "the call to be connected", move || {
        log.states_of(leg).last().map(|s| s.kind()) == Some(Connected)
    })
    .await;
    rig.provider.drop_call(leg).await.unwrap();
    let rcs = (far.finish(20).await, device.finish(20).await);
    assert_eq!(rcs, (0, 0), "{}\n{}", rig.dir.logs(), rig.kamailio_log());
    let log = rig.kamailio_log();
    // tapir's ACK for the far side's 200 and its BYE went along the route the proxy recorded.
    assert_eq!(log.matches("routed ACK").count(), 1, "{log}");
    assert_eq!(log.matches("routed BYE").count(), 1, "{log}");
    let kinds: Vec<CallStateKind> = rig.log.states_of(leg).iter().map(|s| s.kind()).collect();
    assert_eq!(kinds.last(), Some(&Idle), "{kinds:?}");
    assert!(kinds.contains(&Connected), "{kinds:?}");
    rig.finish().await;
}
