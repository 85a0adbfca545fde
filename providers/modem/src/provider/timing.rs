//! How long the provider waits for the modem.

use std::time::Duration;

/// Timing of the provider's conversation with the modem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModemTiming {
    /// How long a command may take to answer (Unimodem allows about 2 s).
    pub command: Duration,
    /// How long dialling or answering may take before the provider gives up (beyond the modem's own
    /// S7, which it sets to 60 s).
    pub call_setup: Duration,
    /// An offered call is gone when no `RING` came for this long.
    pub ring_gone: Duration,
    /// How often an out-of-service modem is tried again.
    pub retry: Duration,
}

impl Default for ModemTiming {
    fn default() -> Self {
        Self {
            command: Duration::from_secs(2),
            call_setup: Duration::from_secs(75),
            ring_gone: Duration::from_secs(10),
            retry: Duration::from_secs(30),
        }
    }
}
