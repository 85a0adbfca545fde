//! What the kit needs from a provider author's test.

use std::sync::Arc;

use async_trait::async_trait;
use tapir_core::{CallLegId, Error};

use crate::Provider;

/// What the kit needs from a provider author's test. The kit runs its scenarios one after another,
/// each on a fresh provider from [`Harness::provider`]; the other methods act on the one created last.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A new, not yet started instance of the provider under test.
    async fn provider(&self) -> Arc<dyn Provider>;
    /// A number that a call from line 0 can reach and that answers within a minute.
    fn answering_number(&self) -> String;
    /// Makes a call from outside ring the provider's **last** line; returns once it has been offered.
    async fn ring_in(&self) -> Result<(), Error>;
    /// Makes the far end of the call on `leg` hang up.
    async fn far_end_hangs_up(&self, leg: CallLegId);
}
