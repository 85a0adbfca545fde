//! Modems for tapir: a simulated Hayes AT modem, the simulated telephone network it plugs into, and a
//! service provider that drives **any** AT modem over any byte stream.
//!
//! Three parts meet at a byte stream:
//!
//! - [`SimModem`] — a Hayes/V.250 modem with voice extensions, byte-exact to the reference test matrix;
//! - [`Network`] — the telephone network: modems attach by number and call each other; scripted numbers
//!   ([`FarEnd`]) are busy, never answer, answer as a modem or a voice party; [`Network::ring_in`] makes
//!   a call arrive;
//! - [`ModemProvider`] — a tapir provider that drives a modem the way a Unimodem-style driver does:
//!   one line, one address, one call at a time.
//!
//! Everything runs on tokio's clock, so under `tokio::time::pause()` ring cadence, guard times and
//! carrier timeouts are exact and take no real time.

pub mod device;
pub mod host;
pub mod network;
pub mod provider;
#[cfg(unix)]
pub mod tty;

pub use device::{AttachError, ModemHandle, SimModem, SimModemConfig};
pub use network::{
    AfterAnswer, Answer, CallerId, CallerNumber, FarEnd, Network, PartyKind, RemoteCall, RingIn,
};
pub use provider::{LineStatus, ModemProvider, ModemProviderBuilder, ModemTiming};
