//! The simulated modem fed any bytes from the host, with time passing between bursts (a 0xFE byte
//! lets 1.5 s pass, past the `+++` guard time): no panic, and a bounded reply to each command —
//! the modem answers a command line (ended by CR, or repeated by `A/`) and each passing of time
//! with at most a couple of kilobytes, never an unbounded stream.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tapir_modem::{Network, SimModem};
use tokio::time::Instant;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let _entered = runtime().enter();
    let network = Network::new();
    let mut modem = SimModem::builder()
        .device(&network, "5550100")
        .expect("a free number");
    let mut now = Instant::now();
    let mut out = 0usize;
    for burst in data.split(|b| *b == 0xFE) {
        modem.input(now, burst);
        modem.network(now);
        now += Duration::from_millis(1500);
        let mut turns = 0;
        while let Some(due) = modem.next_deadline().filter(|d| *d <= now) {
            modem.timer(due);
            turns += 1;
            assert!(
                turns < 10_000,
                "the modem keeps asking for the same instant"
            );
        }
        out += modem.take_output().len();
    }
    let commands = data.iter().filter(|b| matches!(b, b'\r' | b'/')).count();
    let bursts = data.iter().filter(|b| **b == 0xFE).count() + 1;
    assert!(
        out <= 2048 * (commands + bursts),
        "{out} bytes out for {commands} commands and {bursts} bursts"
    );
});
