//! A SIP provider for tapir: tapir as the registrar and back-to-back user agent of SIP phones and a
//! trunk.
//!
//! Each configured line is a SIP account. Its phone registers with digest authentication (or sits at
//! a fixed contact); every call passes through tapir as two dialogs — the phone's and the far side's
//! — so tapir can hold, answer, drop or place any call without the phones' help. Numbers that are no
//! line go to the trunk. Media flows end to end between the phones (tapir carries the session
//! descriptions, never the RTP).
//!
//! The crate is three layers, each owning its state:
//! - the **switch** (`switch.rs`, with `channel.rs`, `registrar.rs`, `sdp.rs`, `digest.rs`) — the
//!   whole call model as a value: SIP events and provider operations in, SIP actions, reports and
//!   operation results out, time fed in. No I/O, no clock.
//! - the **stack** (`stack.rs`) — rsipstack's transport, transactions and dialogs, turned into the
//!   switch's events and back; nothing of rsipstack is visible outside it.
//! - the **provider** (`provider.rs`) — [`SipProvider`], the [`Provider`](tapir_provider::Provider)
//!   implementation: one task owns the switch and the stack; operations are messages to it.
//!
//! `docs/sip.md` in the repository says what each operation does in SIP terms.

mod cause;
mod channel;
mod digest;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod park;
mod registrar;
mod sdp;
mod settings;
mod switch;

pub use settings::{SettingsError, SipLine, SipSettings, SipTiming};
mod provider;
mod stack;

pub use provider::{Registration, SipProvider};
