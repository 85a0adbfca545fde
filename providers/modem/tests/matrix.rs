//! The reference's 40-case test matrix (`../shared/reference/modem.md` §5), byte for byte, under paused
//! time. Each test is one row; the row number is in the test name.

use std::time::Duration;

use tapir_modem::device::{Device, Mode};
use tapir_modem::{CallerId, FarEnd, Network, RemoteCall, RingIn, SimModem};
use tokio::time::Instant;

const FW: &str = "tapir-simmodem 1.0";
const OUTSIDE: &str = "5551234";
const OURS: &str = "5550100";

/// The host's side of the serial line: it drives the modem value itself, so what it reads is exactly
/// what the modem has sent by the current instant, and time passes only when a test lets it.
struct Host {
    device: Device,
}

impl Host {
    fn new(network: &Network) -> Self {
        Self::with(network, SimModem::builder())
    }
    fn with(network: &Network, modem: SimModem) -> Self {
        let device = modem.device(network, OURS).expect("attach");
        Self { device }
    }
    /// Lets the network's tasks run, and hands the modem what they said and what is due, until
    /// nothing more happens at this instant.
    async fn settle(&mut self) {
        let mut quiet = 0;
        while quiet < 3 {
            tokio::task::yield_now().await;
            let now = Instant::now();
            let heard = self.device.network(now);
            let due = self.device.next_deadline().is_some_and(|d| d <= now);
            if due {
                self.device.timer(now);
            }
            quiet = if heard || due { 0 } else { quiet + 1 };
        }
    }
    async fn send(&mut self, bytes: &[u8]) {
        self.settle().await;
        self.device.input(Instant::now(), bytes);
    }
    /// Everything the modem has sent by now.
    async fn read(&mut self) -> Vec<u8> {
        self.settle().await;
        self.device.take_output()
    }
    /// Sends a line and returns the modem's reply.
    async fn cmd(&mut self, line: &str) -> Vec<u8> {
        self.send(line.as_bytes()).await;
        self.read().await
    }
    /// Lets `d` pass: the modem's timers and the network's signals run at their instants.
    async fn wait(&mut self, d: Duration) {
        let end = Instant::now() + d;
        loop {
            self.settle().await;
            if Instant::now() >= end {
                return;
            }
            let wake = self.device.next_deadline().map_or(end, |t| t.min(end));
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                ready = self.device.network_ready() => if !ready {
                    tokio::time::sleep_until(wake).await;
                }
            }
        }
    }
    /// Lets `d` pass and returns what the modem sent meanwhile.
    async fn after(&mut self, d: Duration) -> Vec<u8> {
        self.wait(d).await;
        self.read().await
    }
    fn set_dtr(&mut self, high: bool) {
        self.device.set_dtr(Instant::now(), high);
    }
    async fn echo_off(&mut self) {
        assert_eq!(self.cmd("ATE0\r").await, b"ATE0\r\r\nOK\r\n");
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

macro_rules! expect {
    ($got:expr, $want:expr) => {
        assert_eq!(text(&$got), text($want))
    };
}

/// A modem online with a data modem that rang in; returns the host and the caller.
async fn online(network: &Network, setup: &str) -> (Host, RemoteCall) {
    let mut host = Host::new(network);
    host.echo_off().await;
    if !setup.is_empty() {
        expect!(host.cmd(setup).await, b"\r\nOK\r\n");
    }
    let caller = network
        .ring_in(OURS, RingIn::modem(CallerId::number("5559999")))
        .expect("ring in");
    expect!(host.read().await, b"\r\nRING\r\n");
    host.send(b"ATA\r").await;
    expect!(host.after(secs(3.0)).await, b"\r\nCONNECT 33600\r\n");
    assert!(host.device.dcd());
    (host, caller)
}

#[tokio::test(start_paused = true)]
async fn row01_at_prefix_in_either_case() {
    let mut h = Host::new(&Network::new());
    expect!(h.cmd("AT\r").await, b"AT\r\r\nOK\r\n");
    expect!(h.cmd("at\r").await, b"at\r\r\nOK\r\n");
}

#[tokio::test(start_paused = true)]
async fn row02_mixed_case_is_not_a_prefix() {
    let mut h = Host::new(&Network::new());
    expect!(h.cmd("aT\r").await, b"aT\r");
}

#[tokio::test(start_paused = true)]
async fn row03_bare_cr_is_only_echoed() {
    let mut h = Host::new(&Network::new());
    expect!(h.cmd("\r").await, b"\r");
}

#[tokio::test(start_paused = true)]
async fn row04_echo_off_is_itself_echoed() {
    let mut h = Host::new(&Network::new());
    expect!(h.cmd("ATE0\r").await, b"ATE0\r\r\nOK\r\n");
    expect!(h.cmd("AT\r").await, b"\r\nOK\r\n");
}

#[tokio::test(start_paused = true)]
async fn row05_numeric_result_codes() {
    let mut h = Host::new(&Network::new());
    h.echo_off().await;
    expect!(h.cmd("ATV0\r").await, b"0\r");
    expect!(h.cmd("AT\r").await, b"0\r");
    expect!(h.cmd("ATJ\r").await, b"4\r");
}

#[tokio::test(start_paused = true)]
async fn row06_unknown_extended_command_is_an_error() {
    let mut h = Host::new(&Network::new());
    h.echo_off().await;
    expect!(h.cmd("AT+ZZZ\r").await, b"\r\nERROR\r\n");
}

#[tokio::test(start_paused = true)]
async fn row07_spaces_are_ignored_and_registers_read_back_in_three_digits() {
    let mut h = Host::new(&Network::new());
    h.echo_off().await;
    expect!(h.cmd("AT S7=45 L1 &c1\r").await, b"\r\nOK\r\n");
    expect!(h.cmd("ATS7?\r").await, b"\r\n045\r\n\r\nOK\r\n");
}

#[tokio::test(start_paused = true)]
async fn row08_register_value_out_of_range_changes_nothing() {
    let mut h = Host::new(&Network::new());
    h.echo_off().await;
    expect!(h.cmd("ATS7=300\r").await, b"\r\nERROR\r\n");
    expect!(h.cmd("ATS7?\r").await, b"\r\n050\r\n\r\nOK\r\n");
}

#[tokio::test(start_paused = true)]
async fn row09_commands_before_the_error_stay_in_effect() {
    let mut h = Host::new(&Network::new());
    h.echo_off().await;
    expect!(h.cmd("ATV0E7\r").await, b"4\r");
}

#[tokio::test(start_paused = true)]
async fn row10_an_over_long_line_is_discarded() {
    let mut h = Host::new(&Network::new());
    h.echo_off().await;
    let long = format!("AT{}\r", "E0".repeat(300));
    expect!(h.cmd(&long).await, b"\r\nERROR\r\n");
    expect!(h.cmd("AT\r").await, b"\r\nOK\r\n");
}

#[tokio::test(start_paused = true)]
async fn row11_backspace_edits_the_line_and_is_echoed() {
    let mut h = Host::new(&Network::new());
    expect!(h.cmd("ATQ9\x080\r").await, b"ATQ9\x080\r\r\nOK\r\n");
}

#[tokio::test(start_paused = true)]
async fn row12_a_slash_repeats_the_last_line_without_cr() {
    let mut h = Host::new(&Network::new());
    h.echo_off().await;
    let reply = format!("\r\n{FW}\r\n\r\nOK\r\n");
    expect!(h.cmd("ATI3\r").await, reply.as_bytes());
    expect!(h.cmd("A/").await, reply.as_bytes());
}

#[tokio::test(start_paused = true)]
async fn row13_quiet_mode_sends_information_but_no_result_codes() {
    let mut h = Host::new(&Network::new());
    h.echo_off().await;
    expect!(h.cmd("ATQ1\r").await, b"");
    expect!(h.cmd("ATI3\r").await, format!("\r\n{FW}\r\n").as_bytes());
    expect!(h.cmd("ATJ\r").await, b"");
}

#[tokio::test(start_paused = true)]
async fn row14_manufacturer() {
    let mut h = Host::new(&Network::new());
    h.echo_off().await;
    expect!(h.cmd("AT+GMI\r").await, b"\r\ntapir\r\n\r\nOK\r\n");
}

#[tokio::test(start_paused = true)]
async fn row15_service_classes_data_and_voice_only() {
    let mut h = Host::new(&Network::new());
    h.echo_off().await;
    expect!(h.cmd("AT+FCLASS=?\r").await, b"\r\n0,8\r\n\r\nOK\r\n");
    expect!(h.cmd("AT+FCLASS=2\r").await, b"\r\nERROR\r\n");
}

#[tokio::test(start_paused = true)]
async fn row16_dial_a_modem_that_answers() {
    let net = Network::new();
    net.far_end(OUTSIDE, FarEnd::modem_after_rings(1));
    let mut h = Host::new(&net);
    h.echo_off().await;
    expect!(h.cmd("ATDT5551234\r").await, b"");
    expect!(h.after(secs(20.0)).await, b"\r\nCONNECT 33600\r\n");
    assert!(h.device.dcd());
    assert_eq!(h.device.mode(), Mode::Online);
}

#[tokio::test(start_paused = true)]
async fn row17_busy_at_x4() {
    let net = Network::new();
    net.far_end(OUTSIDE, FarEnd::busy());
    let mut h = Host::new(&net);
    h.echo_off().await;
    h.send(b"ATX4DT5551234\r").await;
    expect!(h.after(secs(10.0)).await, b"\r\nBUSY\r\n");
    assert!(!h.device.off_hook());
}

#[tokio::test(start_paused = true)]
async fn row18_busy_at_x0_is_no_carrier() {
    let net = Network::new();
    net.far_end(OUTSIDE, FarEnd::busy());
    let mut h = Host::new(&net);
    h.echo_off().await;
    expect!(h.cmd("ATX0\r").await, b"\r\nOK\r\n");
    h.send(b"ATDT5551234\r").await;
    expect!(h.after(secs(10.0)).await, b"\r\nNO CARRIER\r\n");
}

#[tokio::test(start_paused = true)]
async fn row19_dead_line_at_x4() {
    let net = Network::new();
    net.far_end(OUTSIDE, FarEnd::modem_after_rings(1));
    let mut h = Host::with(&net, SimModem::builder().no_dial_tone());
    h.echo_off().await;
    h.send(b"ATX4DT5551234\r").await;
    expect!(h.after(secs(10.0)).await, b"\r\nNO DIALTONE\r\n");
    assert!(!h.device.off_hook());
}

#[tokio::test(start_paused = true)]
async fn row20_ringing_past_s7_is_no_carrier() {
    let net = Network::new();
    net.far_end(OUTSIDE, FarEnd::no_answer());
    let mut h = Host::new(&net);
    h.echo_off().await;
    expect!(h.cmd("ATX4S7=5\r").await, b"\r\nOK\r\n");
    h.send(b"ATDT5551234\r").await;
    // Dialling takes about 2 s (dial tone, seven tones); S7 runs from then.
    expect!(h.after(secs(5.0)).await, b"");
    expect!(h.after(secs(3.0)).await, b"\r\nNO CARRIER\r\n");
    assert!(!h.device.off_hook());
    assert_eq!(net.live_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn row21_no_quiet_answer_is_no_answer() {
    let net = Network::new();
    net.far_end(OUTSIDE, FarEnd::no_answer());
    let mut h = Host::new(&net);
    h.echo_off().await;
    h.send(b"ATDT5551234@\r").await;
    expect!(h.after(secs(40.0)).await, b"");
    expect!(h.after(secs(20.0)).await, b"\r\nNO ANSWER\r\n");
}

#[tokio::test(start_paused = true)]
async fn row22_semicolon_returns_to_command_state_off_hook() {
    let net = Network::new();
    net.far_end(OUTSIDE, FarEnd::voice_after_rings(1));
    let mut h = Host::new(&net);
    h.echo_off().await;
    h.send(b"ATDT5551234;\r").await;
    expect!(h.after(secs(5.0)).await, b"\r\nOK\r\n");
    assert!(h.device.off_hook());
    expect!(h.cmd("ATH\r").await, b"\r\nOK\r\n");
    assert!(!h.device.off_hook());
    assert_eq!(net.live_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn row23_a_byte_while_dialling_aborts() {
    let net = Network::new();
    net.far_end(OUTSIDE, FarEnd::modem_after_rings(3));
    let mut h = Host::new(&net);
    h.echo_off().await;
    h.send(b"ATDT5551234\r").await;
    expect!(h.after(secs(4.0)).await, b"");
    expect!(h.cmd("x").await, b"\r\nNO CARRIER\r\n");
    assert!(!h.device.off_hook());
    assert_eq!(net.live_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn row24_answer_without_a_call_waits_s7() {
    let mut h = Host::new(&Network::new());
    h.echo_off().await;
    expect!(h.cmd("ATS7=3\r").await, b"\r\nOK\r\n");
    expect!(h.cmd("ATA\r").await, b"");
    expect!(h.after(secs(2.9)).await, b"");
    expect!(h.after(secs(0.2)).await, b"\r\nNO CARRIER\r\n");
}

#[tokio::test(start_paused = true)]
async fn row25_caller_id_between_first_and_second_ring() {
    let net = Network::new();
    let mut h = Host::new(&net);
    h.echo_off().await;
    expect!(h.cmd("AT+VCID=1\r").await, b"\r\nOK\r\n");
    let caller = CallerId::named("5551234567", "DOE JOHN").at(3, 21, 14, 5);
    net.ring_in(OURS, RingIn::modem(caller)).expect("ring in");
    expect!(h.read().await, b"\r\nRING\r\n");
    expect!(h.after(secs(2.5)).await, b"");
    expect!(
        h.after(secs(1.0)).await,
        b"\r\nDATE=0321\r\n\r\nTIME=1405\r\n\r\nNMBR=5551234567\r\n\r\nNAME=DOE JOHN\r\n"
    );
    expect!(h.after(secs(2.4)).await, b"");
    expect!(h.after(secs(0.2)).await, b"\r\nRING\r\n");
}

#[tokio::test(start_paused = true)]
async fn row26_rockwell_caller_id_withheld() {
    let net = Network::new();
    let mut h = Host::new(&net);
    h.echo_off().await;
    expect!(h.cmd("AT#CID=1\r").await, b"\r\nOK\r\n");
    let caller = CallerId::withheld().at(3, 21, 14, 5);
    net.ring_in(OURS, RingIn::modem(caller)).expect("ring in");
    expect!(
        h.after(secs(4.0)).await,
        b"\r\nRING\r\n\r\nDATE = 0321\r\n\r\nTIME = 1405\r\n\r\nNMBR = P\r\n"
    );
}

#[tokio::test(start_paused = true)]
async fn row27_auto_answer_on_the_second_ring() {
    let net = Network::new();
    let mut h = Host::new(&net);
    h.echo_off().await;
    expect!(h.cmd("ATS0=2\r").await, b"\r\nOK\r\n");
    net.ring_in(OURS, RingIn::modem(CallerId::number("5559999")))
        .expect("ring in");
    expect!(h.read().await, b"\r\nRING\r\n");
    expect!(h.after(secs(5.9)).await, b"");
    expect!(
        h.after(secs(20.0)).await,
        b"\r\nRING\r\n\r\nCONNECT 33600\r\n"
    );
}

#[tokio::test(start_paused = true)]
async fn row28_on_hook_while_ringing_lets_it_ring() {
    let net = Network::new();
    let mut h = Host::new(&net);
    h.echo_off().await;
    net.ring_in(OURS, RingIn::modem(CallerId::number("5559999")))
        .expect("ring in");
    expect!(h.read().await, b"\r\nRING\r\n");
    h.wait(secs(1.0)).await;
    expect!(h.cmd("ATH\r").await, b"\r\nOK\r\n");
    expect!(h.after(secs(4.9)).await, b"");
    expect!(h.after(secs(0.2)).await, b"\r\nRING\r\n");
}

#[tokio::test(start_paused = true)]
async fn row29_off_hook_while_ringing_stops_the_ringing() {
    let net = Network::new();
    let mut h = Host::new(&net);
    h.echo_off().await;
    let caller = net
        .ring_in(OURS, RingIn::modem(CallerId::number("5559999")))
        .expect("ring in");
    expect!(h.read().await, b"\r\nRING\r\n");
    expect!(h.cmd("ATH1\r").await, b"\r\nOK\r\n");
    expect!(h.after(secs(30.0)).await, b"");
    assert!(caller.is_answered(), "the caller is connected to nothing");
    assert!(caller.received().is_empty());
}

#[tokio::test(start_paused = true)]
async fn row30_ring_count_clears_after_the_caller_gives_up() {
    let net = Network::new();
    let mut h = Host::new(&net);
    h.echo_off().await;
    net.ring_in(
        OURS,
        RingIn::modem(CallerId::number("5559999")).gives_up_after(secs(3.0)),
    )
    .expect("ring in");
    expect!(h.read().await, b"\r\nRING\r\n");
    expect!(h.cmd("ATS1?\r").await, b"\r\n001\r\n\r\nOK\r\n");
    expect!(h.after(secs(10.0)).await, b"");
    expect!(h.cmd("ATS1?\r").await, b"\r\n000\r\n\r\nOK\r\n");
}

#[tokio::test(start_paused = true)]
async fn row31_escape_with_guard_times() {
    let net = Network::new();
    let (mut h, caller) = online(&net, "").await;
    h.wait(secs(1.2)).await;
    h.send(b"+++").await;
    expect!(h.after(secs(1.2)).await, b"\r\nOK\r\n");
    assert!(h.device.dcd());
    assert_eq!(h.device.mode(), Mode::OnlineCommand);
    assert_eq!(caller.received(), b"+++");
}

#[tokio::test(start_paused = true)]
async fn row32a_escape_needs_a_leading_guard() {
    let net = Network::new();
    let (mut h, caller) = online(&net, "").await;
    h.send(b"abc+++").await;
    expect!(h.after(secs(2.0)).await, b"");
    assert_eq!(caller.received(), b"abc+++");
    assert_eq!(h.device.mode(), Mode::Online);
}

#[tokio::test(start_paused = true)]
async fn row32b_escape_characters_must_come_together() {
    let net = Network::new();
    let (mut h, caller) = online(&net, "").await;
    h.wait(secs(1.2)).await;
    h.send(b"++").await;
    h.wait(secs(1.2)).await;
    h.send(b"+").await;
    expect!(h.after(secs(1.2)).await, b"");
    assert_eq!(caller.received(), b"+++");
    assert_eq!(h.device.mode(), Mode::Online);
}

#[tokio::test(start_paused = true)]
async fn row32c_four_escape_characters_are_data() {
    let net = Network::new();
    let (mut h, caller) = online(&net, "").await;
    h.wait(secs(1.2)).await;
    h.send(b"++++").await;
    expect!(h.after(secs(1.2)).await, b"");
    assert_eq!(caller.received(), b"++++");
    assert_eq!(h.device.mode(), Mode::Online);
}

#[tokio::test(start_paused = true)]
async fn row33_back_online_and_hang_up_from_online_command() {
    let net = Network::new();
    let (mut h, caller) = online(&net, "").await;
    h.wait(secs(1.2)).await;
    h.send(b"+++").await;
    expect!(h.after(secs(1.2)).await, b"\r\nOK\r\n");
    expect!(h.cmd("ATO\r").await, b"\r\nCONNECT 33600\r\n");
    assert_eq!(h.device.mode(), Mode::Online);
    h.send(b"hi").await;
    h.wait(secs(1.2)).await;
    h.send(b"+++").await;
    expect!(h.after(secs(1.2)).await, b"\r\nOK\r\n");
    expect!(h.cmd("ATH\r").await, b"\r\nOK\r\n");
    assert!(!h.device.dcd());
    assert!(caller.is_over());
    assert_eq!(caller.received(), b"+++hi+++");
}

#[tokio::test(start_paused = true)]
async fn row34_far_end_hangs_up_online() {
    let net = Network::new();
    let (mut h, caller) = online(&net, "").await;
    caller.send(b"hello");
    expect!(h.read().await, b"hello");
    caller.hang_up();
    expect!(h.read().await, b"\r\nNO CARRIER\r\n");
    assert!(!h.device.dcd());
    assert_eq!(h.device.mode(), Mode::Command);
    assert!(!h.device.off_hook());
}

#[tokio::test(start_paused = true)]
async fn row35_dtr_drop_with_d2_hangs_up() {
    let net = Network::new();
    let (mut h, caller) = online(&net, "").await;
    h.set_dtr(false);
    expect!(h.after(secs(0.02)).await, b"");
    expect!(h.after(secs(0.1)).await, b"\r\nNO CARRIER\r\n");
    assert!(!h.device.dcd());
    assert!(caller.is_over());
    h.set_dtr(true);
    expect!(h.cmd("ATH\r").await, b"\r\nOK\r\n");
}

#[tokio::test(start_paused = true)]
async fn row36_dtr_drop_with_d1_escapes() {
    let net = Network::new();
    let (mut h, caller) = online(&net, "AT&D1\r").await;
    h.set_dtr(false);
    expect!(h.after(secs(0.1)).await, b"\r\nOK\r\n");
    assert_eq!(h.device.mode(), Mode::OnlineCommand);
    assert!(h.device.dcd());
    assert!(!caller.is_over());
}

#[tokio::test(start_paused = true)]
async fn row37_online_without_a_call() {
    let mut h = Host::new(&Network::new());
    h.echo_off().await;
    expect!(h.cmd("ATO\r").await, b"\r\nNO CARRIER\r\n");
}

#[tokio::test(start_paused = true)]
async fn row38_reset_restores_the_stored_profile_and_ignores_the_rest() {
    let mut h = Host::new(&Network::new());
    expect!(h.cmd("ATE0V0\r").await, b"ATE0V0\r0\r");
    expect!(h.cmd("ATZE0\r").await, b"\r\nOK\r\n");
    expect!(h.cmd("AT\r").await, b"AT\r\r\nOK\r\n");
}

/// A voice call rung in and answered in voice mode.
async fn voice_call(net: &Network, caller: RingIn) -> (Host, RemoteCall) {
    let mut h = Host::new(net);
    h.echo_off().await;
    expect!(h.cmd("AT+FCLASS=8\r").await, b"\r\nOK\r\n");
    let remote = net.ring_in(OURS, caller).expect("ring in");
    expect!(h.read().await, b"\r\nRING\r\n");
    expect!(h.cmd("AT+VLS=1\r").await, b"\r\nOK\r\n");
    assert!(remote.is_answered());
    (h, remote)
}

#[tokio::test(start_paused = true)]
async fn row39_voice_digit_then_hang_up_as_dle_events() {
    let net = Network::new();
    let caller = RingIn::voice(CallerId::number("5559999"))
        .presses("5")
        .hangs_up_after(secs(1.0));
    let (mut h, _remote) = voice_call(&net, caller).await;
    assert_eq!(h.after(secs(0.5)).await, [0x10, 0x35]);
    assert_eq!(h.after(secs(1.0)).await, [0x10, 0x62]);
}

#[tokio::test(start_paused = true)]
async fn row40_voice_tones_end_with_ok_after_they_play() {
    let net = Network::new();
    let (mut h, remote) = voice_call(&net, RingIn::voice(CallerId::number("5559999"))).await;
    expect!(h.cmd("AT+VTS=1,2,3\r").await, b"");
    expect!(h.after(secs(0.25)).await, b"");
    expect!(h.after(secs(0.1)).await, b"\r\nOK\r\n");
    assert_eq!(remote.heard(), "123");
}
