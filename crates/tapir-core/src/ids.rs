//! Identifiers shared by the engine and providers.
//!
//! Two identities matter for a call (see `docs/ARCHITECTURE.md`):
//! - the **call ID** ([`CallId`]) is assigned by the provider's switch and is the same for every
//!   application and for every leg of one switched call — it is how applications, logs and records
//!   correlate a call;
//! - the **call leg** ([`CallLegId`]) is the provider's object for one call as seen on one of its lines
//!   (an internal call from 100 to 200 has two legs, one on each line, sharing one call ID).
//!
//! Session handles — what an application holds — live in the engine crate, never here: they are per
//! application session and mean nothing to a provider.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// A provider registered with the engine, numbered in registration order.
    ProviderId(u16),
    "provider-"
);
id_type!(
    /// A line device. Inside the engine it is unique across all providers (like a TAPI device ID);
    /// inside a provider it is the provider's own line index, starting at 0.
    LineId(u32),
    "line-"
);
id_type!(
    /// An address (directory number / appearance) on a line, starting at 0.
    AddressId(u32),
    "address-"
);
id_type!(
    /// The provider-assigned call identity shared by every application and every leg of one call.
    CallId(u64),
    "call-"
);
id_type!(
    /// The provider's object for one call on one of its lines. Unique within its provider and never reused.
    CallLegId(u64),
    "leg-"
);
