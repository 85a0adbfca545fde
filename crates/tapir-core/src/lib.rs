//! The tapir call model as plain data and rules.
//!
//! This crate is the sans-IO heart of tapir: it knows what a call state is, which state may follow which,
//! what a provider's capabilities say, and — through **one** feature table — which operation is allowed on
//! a call right now, or which error explains why not. It has no async runtime, no I/O and no clock, so every
//! rule can be called from a unit test.
//!
//! Where to start reading:
//! - [`state`] — the sixteen call states, their modes, and the transition table.
//! - [`gate`] — the operation gate and the per-state feature table ([`gate::check`], [`gate::features`]).
//! - [`caps`] — line and address capabilities a provider advertises.
//! - [`error::Error`] — the one error enum of the public boundary.
//!
//! ```
//! use tapir_core::caps::AddressCaps;
//! use tapir_core::gate::{self, CallContext, CallOperation};
//! use tapir_core::privilege::CallPrivilege;
//! use tapir_core::state::{CallState, ConnectedMode};
//! use tapir_core::Error;
//!
//! let caps = AddressCaps::basic("100");
//! let ctx = CallContext::new(CallState::Connected(ConnectedMode::Active));
//! // A connected call can be dropped by its owner…
//! assert!(gate::check(CallOperation::Drop, CallPrivilege::Owner, || Ok(()), &caps, &ctx).is_ok());
//! // …but not by a monitor, and it cannot be answered again.
//! assert!(matches!(
//!     gate::check(CallOperation::Drop, CallPrivilege::Monitor, || Ok(()), &caps, &ctx),
//!     Err(Error::NotOwner)
//! ));
//! assert!(matches!(
//!     gate::check(CallOperation::Answer, CallPrivilege::Owner, || Ok(()), &caps, &ctx),
//!     Err(Error::InvalidCallState { .. })
//! ));
//! ```

/// Gives a plain enum its wire names, written once: `NAMES` in declaration order and `name()`.
/// The names are what every client reads (the network API's `state`, `mode`, `privilege`), so they
/// are spelled here, not taken from the Rust identifiers: renaming a variant cannot change them.
macro_rules! wire_names {
    ($t:ty { $($v:ident = $n:literal),+ $(,)? }) => {
        impl $t {
            /// Every value, in declaration order.
            pub const VALUES: &'static [$t] = &[$(<$t>::$v),+];
            /// Every value's wire name, in the same order.
            pub const NAMES: &'static [&'static str] = &[$($n),+];

            /// The wire name (snake case).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$v => $n),+
                }
            }

            /// The value of a wire name made by [`name`](Self::name).
            pub fn from_name(name: &str) -> Option<Self> {
                Self::NAMES
                    .iter()
                    .position(|n| *n == name)
                    .map(|i| Self::VALUES[i])
            }
        }
    };
}

pub mod caps;
pub mod cdr;
pub mod dial;
pub mod error;
pub mod gate;
pub mod ids;
pub mod info;
pub mod media;
pub mod ops;
pub mod params;
pub mod privilege;
pub mod route;
pub mod state;

pub use error::Error;
pub use ids::{AddressId, CallId, CallLegId, LineId, ProviderId};
