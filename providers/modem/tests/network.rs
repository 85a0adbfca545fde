//! The simulated telephone network: modems calling modems, voice calls with digits, scripted far ends.

use std::time::Duration;

use tapir_modem::{FarEnd, ModemHandle, Network, SimModem};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::{sleep, timeout};

struct Host {
    io: DuplexStream,
    modem: ModemHandle,
}

impl Host {
    async fn attach(net: &Network, number: &str) -> Self {
        let (io, modem) = SimModem::builder().attach(net, number).expect("attach");
        let mut h = Self { io, modem };
        assert_eq!(h.cmd("ATE0\r").await, "ATE0\r\r\nOK\r\n");
        h
    }
    async fn read(&mut self) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(Ok(n)) = timeout(Duration::from_millis(1), self.io.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    async fn send(&mut self, s: &str) {
        self.io.write_all(s.as_bytes()).await.expect("write");
    }
    async fn cmd(&mut self, s: &str) -> String {
        self.send(s).await;
        self.read().await
    }
    async fn after(&mut self, secs: f64) -> String {
        sleep(Duration::from_secs_f64(secs)).await;
        self.read().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_data_call_between_two_modems_connects_both_and_carries_bytes() {
    let net = Network::new();
    let mut a = Host::attach(&net, "100").await;
    let mut b = Host::attach(&net, "200").await;
    assert_eq!(b.cmd("ATS0=1+VCID=1\r").await, "\r\nOK\r\n");
    a.send("ATDT200\r").await;
    let rang = b.after(2.0).await;
    assert_eq!(rang, "\r\nRING\r\n");
    assert_eq!(a.after(10.0).await, "\r\nCONNECT 33600\r\n");
    assert_eq!(b.read().await, "\r\nCONNECT 33600\r\n");
    assert!(a.modem.dcd() && b.modem.dcd());

    a.send("hello B").await;
    assert_eq!(b.read().await, "hello B");
    b.send("hello A").await;
    assert_eq!(a.read().await, "hello A");

    sleep(Duration::from_millis(1100)).await;
    a.send("+++").await;
    assert_eq!(a.after(1.1).await, "\r\nOK\r\n");
    assert_eq!(b.read().await, "+++");
    assert_eq!(a.cmd("ATH\r").await, "\r\nOK\r\n");
    assert_eq!(b.read().await, "\r\nNO CARRIER\r\n");
    assert!(!a.modem.dcd() && !b.modem.dcd());
    assert_eq!(net.live_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_modem_off_hook_is_busy_to_callers() {
    let net = Network::new();
    let mut a = Host::attach(&net, "100").await;
    let mut b = Host::attach(&net, "200").await;
    assert_eq!(b.cmd("ATH1\r").await, "\r\nOK\r\n");
    a.send("ATDT200\r").await;
    assert_eq!(a.after(5.0).await, "\r\nBUSY\r\n");
    assert_eq!(b.read().await, "");
}

#[tokio::test(start_paused = true)]
async fn digits_cross_a_voice_call_between_modems() {
    let net = Network::new();
    let mut a = Host::attach(&net, "100").await;
    let mut b = Host::attach(&net, "200").await;
    assert_eq!(a.cmd("AT+FCLASS=8\r").await, "\r\nOK\r\n");
    assert_eq!(b.cmd("AT+FCLASS=8\r").await, "\r\nOK\r\n");
    a.send("ATDT200;\r").await;
    assert_eq!(a.after(2.0).await, "\r\nOK\r\n");
    assert_eq!(b.read().await, "\r\nRING\r\n");
    assert_eq!(b.cmd("AT+VLS=1\r").await, "\r\nOK\r\n");
    a.send("AT+VTS=4,2\r").await;
    assert_eq!(a.after(0.5).await, "\r\nOK\r\n");
    assert_eq!(b.read().await, "\u{10}4\u{10}2");
    b.send("AT+VTS=#\r").await;
    assert_eq!(b.after(0.5).await, "\r\nOK\r\n");
    assert_eq!(a.read().await, "\u{10}#");
    assert_eq!(b.cmd("ATH\r").await, "\r\nOK\r\n");
    assert_eq!(a.read().await, "\u{10}b");
    assert_eq!(net.live_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_scripted_voice_party_answers_presses_keys_and_hangs_up() {
    let net = Network::new();
    net.far_end(
        "5551234",
        FarEnd::voice_after_rings(2)
            .presses("12")
            .hangs_up_after(Duration::from_secs(10)),
    );
    let mut a = Host::attach(&net, "100").await;
    assert_eq!(a.cmd("AT+FCLASS=8\r").await, "\r\nOK\r\n");
    a.send("ATDT5551234\r").await;
    // About 2 s of dialling, then two rings of 6 s.
    assert_eq!(a.after(13.0).await, "");
    assert_eq!(a.after(1.0).await, "\r\nVCON\r\n");
    assert_eq!(a.after(1.0).await, "\u{10}1\u{10}2");
    assert_eq!(a.after(10.0).await, "\u{10}b");
    assert_eq!(net.live_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_data_call_to_a_voice_party_never_gets_a_carrier() {
    let net = Network::new();
    net.far_end("5551234", FarEnd::voice_after_rings(1));
    let mut a = Host::attach(&net, "100").await;
    assert_eq!(a.cmd("ATS7=30\r").await, "\r\nOK\r\n");
    a.send("ATDT5551234\r").await;
    assert_eq!(a.after(25.0).await, "");
    assert_eq!(a.after(10.0).await, "\r\nNO CARRIER\r\n");
    assert_eq!(net.live_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn partial_dialling_routes_once_the_number_is_complete() {
    let net = Network::new();
    net.far_end("5551234", FarEnd::modem_after_rings(1));
    let mut a = Host::attach(&net, "100").await;
    a.send("ATDT555;\r").await;
    assert_eq!(a.after(2.0).await, "\r\nOK\r\n");
    assert_eq!(net.live_calls(), 0, "555 reaches nothing yet");
    a.send("ATD1234\r").await;
    assert_eq!(a.after(15.0).await, "\r\nCONNECT 33600\r\n");
}

#[tokio::test(start_paused = true)]
async fn an_unknown_number_is_no_carrier_and_ring_in_to_a_busy_line_fails() {
    let net = Network::new();
    let mut a = Host::attach(&net, "100").await;
    a.send("ATDT999\r").await;
    assert_eq!(a.after(3.0).await, "\r\nNO CARRIER\r\n");
    assert_eq!(a.cmd("ATH1\r").await, "\r\nOK\r\n");
    let err = net
        .ring_in(
            "100",
            tapir_modem::RingIn::voice(tapir_modem::CallerId::withheld()),
        )
        .expect_err("busy");
    assert_eq!(err.to_string(), "the line at number 100 is busy");
    assert!(
        net.ring_in(
            "300",
            tapir_modem::RingIn::voice(tapir_modem::CallerId::withheld())
        )
        .is_err()
    );
}
