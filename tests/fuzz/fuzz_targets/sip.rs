//! Any datagram, as the SIP provider would receive it from the network: the stack's parser, the
//! provider's routing and reading of REGISTER and INVITE, then the switch (a fresh office each
//! time; `tapir_sip::fuzzing`). Every request that reaches the switch gets exactly one final
//! answer or becomes a call, with statuses that exist; a refused one changes nothing; the switch's
//! reports follow the call model; and an hour later, with nobody answering, no call or dialog is
//! left.
//!
//! The first byte picks where the datagram comes from: the trunk, Alice's registered phone, or a
//! stranger.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tapir_sip::fuzzing::Harness;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, datagram)) = data.split_first() else {
        return;
    };
    let port = [5080, 5071, 5099, 40000][usize::from(pick % 4)];
    let from = SocketAddr::from(([127, 0, 0, 1], port));
    let mut h = Harness::office().expect("the office starts");
    if let Err(broken) = h.feed(datagram, from) {
        panic!("{broken}: {:?}", String::from_utf8_lossy(datagram));
    }
    if let Err(broken) = h.advance(Duration::from_secs(3600)) {
        panic!("{broken} (later): {:?}", String::from_utf8_lossy(datagram));
    }
    assert!(
        h.is_quiet(),
        "a call or dialog is left an hour later: {:?}",
        String::from_utf8_lossy(datagram)
    );
});
