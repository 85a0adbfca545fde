//! Dial strings and address translation from any text: no panic, and a dial string that parses
//! prints back to one that parses to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapir::translate::{Location, TranslateOptions, translate_address};
use tapir_core::dial::DialString;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = DialString::parse(text) {
        let again = DialString::parse(&d.to_string()).expect("a printed dial string parses");
        assert_eq!(
            (again.dialable(), again.is_partial()),
            (d.dialable(), d.is_partial())
        );
        let _ = d.check(&Default::default());
        let _ = d.modifiers();
    }
    let _ = DialString::parse_destination(text);
    let home = Location {
        country: "US".into(),
        area_code: "425".into(),
        local_access: "9".into(),
        ..Location::default()
    };
    if let Ok(t) = translate_address(text, &home, TranslateOptions::default()) {
        // What translation makes is something to dial.
        assert!(
            DialString::parse(&t.dialable).is_ok(),
            "{text:?} translated to {:?}",
            t.dialable
        );
    }
});
