//! Per-session handles, unguessable and meaningless outside the session that holds them, and the
//! sessions' own identities.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A session's handle to one call. Another session's handle to the same call is a different value;
/// presenting a handle in a session that does not hold it is [`Error::InvalidCallHandle`](crate::Error).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle(pub(crate) u64);

/// A session's handle to one open of a line.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LineHandle(pub(crate) u64);

impl CallHandle {
    /// The handle as a number, e.g. to put in a log line or a network message.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
    /// A handle from a number (as received over the network). Whether it means anything is up to the
    /// session it is presented to.
    pub const fn from_u64(raw: u64) -> Self {
        Self(raw)
    }
}

impl LineHandle {
    /// The handle as a number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
    /// A handle from a number.
    pub const fn from_u64(raw: u64) -> Self {
        Self(raw)
    }
}

impl fmt::Debug for CallHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call:{:016x}", self.0)
    }
}
impl fmt::Display for CallHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
impl fmt::Debug for LineHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line:{:016x}", self.0)
    }
}
impl fmt::Display for LineHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The identity of an application session: a random UUID, unguessable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(uuid::Uuid);

impl SessionId {
    pub(crate) fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }
    /// The UUID.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Mints handle values: a keyed hash (SipHash with a per-engine random key) of a counter. Without the key
/// the next value cannot be predicted from earlier ones, and minting costs no system call.
pub(crate) struct HandleMint {
    key: std::collections::hash_map::RandomState,
    counter: AtomicU64,
}

impl HandleMint {
    pub(crate) fn new() -> Self {
        Self {
            key: std::collections::hash_map::RandomState::new(),
            counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn next(&self) -> u64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut h = self.key.build_hasher();
        h.write_u64(n);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_values_are_distinct_and_not_sequential() {
        let mint = HandleMint::new();
        let values: Vec<u64> = (0..10_000).map(|_| mint.next()).collect();
        let unique: std::collections::HashSet<_> = values.iter().collect();
        assert_eq!(unique.len(), values.len());
        // Consecutive values do not differ by a constant step.
        let steps: std::collections::HashSet<_> =
            values.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
        assert!(steps.len() > 9_000);
    }

    #[test]
    fn two_engines_mint_different_sequences() {
        let a = HandleMint::new();
        let b = HandleMint::new();
        assert_ne!(a.next(), b.next());
    }
}
