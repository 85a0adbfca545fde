//! Keeps a provider's faults to itself. Every call of a provider runs with its panic caught and
//! under the engine's deadline; a fault becomes the operation's typed error, one line in the log and
//! a count in the provider's status row, and nothing else — no other call, session or provider —
//! notices.

use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::Poll;
use std::time::Duration;

use futures_util::FutureExt;
use tapir_core::{Error, ProviderId};
use tapir_provider::Hook;

use crate::inner::Inner;

/// How long the engine waits for a provider method before it gives up, unless
/// [`EngineBuilder::provider_deadline`](crate::EngineBuilder::provider_deadline) says otherwise:
/// longer than any built-in provider's own limits (a SIP transaction gives up after 32 s, a modem's
/// call set-up after 75 s), so it fires only for a provider that has stopped answering.
pub const DEFAULT_PROVIDER_DEADLINE: Duration = Duration::from_secs(90);

/// The hook around one provider.
pub(crate) struct Guard {
    provider: ProviderId,
    name: String,
    deadline: Duration,
    /// Set while the provider has reported itself failed ([`ProviderEvent::Failed`]); kept here as
    /// well as in its status row so that the check costs no lock.
    ///
    /// [`ProviderEvent::Failed`]: tapir_provider::ProviderEvent::Failed
    down: Arc<AtomicBool>,
    /// The engine the faults are reported to, once it exists.
    engine: OnceLock<Weak<Inner>>,
}

impl Guard {
    pub(crate) fn new(provider: ProviderId, name: String, deadline: Duration) -> Self {
        Self {
            provider,
            name,
            deadline,
            down: Arc::new(AtomicBool::new(false)),
            engine: OnceLock::new(),
        }
    }

    /// The flag the engine sets while the provider has failed.
    pub(crate) fn down_flag(&self) -> Arc<AtomicBool> {
        self.down.clone()
    }

    /// The refusal of an operation while the provider has failed, with the reason it gave.
    #[cold]
    fn unavailable(&self) -> Error {
        let reason = self
            .engine
            .get()
            .and_then(Weak::upgrade)
            .and_then(|engine| {
                crate::sync::lock(&engine.provider(self.provider).status)
                    .down
                    .clone()
            })
            .unwrap_or_else(|| "failed".to_owned());
        Error::ProviderUnavailable {
            provider: self.provider,
            reason,
        }
    }

    /// From now on faults are reported to `engine`'s status table.
    pub(crate) fn report_to(&self, engine: Weak<Inner>) {
        let _ = self.engine.set(engine);
    }

    fn fault(&self, what: String) {
        if let Some(engine) = self.engine.get().and_then(Weak::upgrade) {
            engine.provider_fault(self.provider, what);
        }
    }
}

impl Hook for Guard {
    async fn around<'a, T: Send + 'a>(
        &'a self,
        method: &'static str,
        call: impl Future<Output = Result<T, Error>> + Send + 'a,
    ) -> Result<T, Error> {
        if self.down.load(Ordering::Acquire) && !tapir_provider::WITHOUT_SWITCH.contains(&method) {
            return Err(self.unavailable());
        }
        // The provider's future alone runs inside the catch: no engine state is touched while it
        // runs, so a panic leaves nothing of the engine's half-changed.
        let mut caught = pin!(AssertUnwindSafe(call).catch_unwind());
        // Most provider methods finish at their first poll: the deadline's timer is set up only
        // for one that has to wait, and counts from then.
        let first = poll_fn(|cx| Poll::Ready(caught.as_mut().poll(cx))).await;
        let outcome = match first {
            Poll::Ready(done) => Ok(done),
            Poll::Pending => tokio::time::timeout(self.deadline, caught).await,
        };
        match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => {
                let why = panic_text(panic.as_ref());
                tracing::error!(provider = %self.name, operation = method, panic = %why, "the provider panicked; the operation failed");
                self.fault(format!("panicked in {method}: {why}"));
                Err(Error::ProviderFault {
                    provider: self.provider,
                    name: self.name.clone(),
                    operation: method,
                })
            }
            Err(_) => {
                let after_ms = u64::try_from(self.deadline.as_millis()).unwrap_or(u64::MAX);
                tracing::error!(provider = %self.name, operation = method, after_ms, "the provider did not finish in time; the operation failed");
                self.fault(format!("did not finish {method} within {after_ms} ms"));
                Err(Error::ProviderTimeout {
                    provider: self.provider,
                    name: self.name.clone(),
                    operation: method,
                    after_ms,
                })
            }
        }
    }
}

/// What a panic said, when it said it with a string.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
