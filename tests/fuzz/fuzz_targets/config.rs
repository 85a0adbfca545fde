//! Configuration files from any text: a typed error or a configuration, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = tapir_config::Config::parse(text) {
        // The message names what is wrong.
        assert!(!e.to_string().is_empty());
    }
});
