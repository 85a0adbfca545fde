//! The switch's shell: the switch value behind its lock, and what it needs of the runtime — the
//! engine's sink, the outbox its reports wait in, and the one timer that runs its agenda. Every
//! operation is a [`Turn`]: the lock taken and the clock read once; when the turn ends the lock is
//! let go, the timer hears of anything set for earlier, and the reports go to the engine in order.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tapir_core::gate::FeatureSet;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::outbox::Outbox;
use crate::script::Timing;
use crate::switch::State;

/// The switch (a value, `switch.rs`) behind its lock, and what it needs of the runtime: the engine's
/// sink, the outbox its reports wait in, and the one timer that runs its agenda.
pub(crate) struct Shared {
    pub(crate) timing: Timing,
    /// Operations switched off in this switch's configuration.
    pub(crate) disabled: FeatureSet,
    pub(crate) state: Mutex<State>,
    pub(crate) outbox: Outbox,
    /// Wakes the timer: something was set for earlier than it sleeps until.
    pub(crate) wake: Arc<Notify>,
    /// The timer's task, once started.
    pub(crate) timer: Mutex<Option<AbortHandle>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// The switch, for reading: nothing it reports, nothing it sets for later.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// A turn of the switch: locked, its clock set to now.
    pub(crate) fn turn(self: &Arc<Self>) -> Turn<'_> {
        let mut st = lock(&self.state);
        st.now = Instant::now();
        Turn {
            shared: self,
            st: Some(st),
        }
    }

    /// Starts the timer's task if it is not running (a switch can outlive the runtime it began in).
    fn start_timer(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut timer = lock(&self.timer);
        if timer.as_ref().is_none_or(AbortHandle::is_finished) {
            let task = runtime.spawn(run_agenda(Arc::downgrade(self), self.wake.clone()));
            *timer = Some(task.abort_handle());
        }
    }
}

impl Drop for Shared {
    /// The switch is gone, and so is its timer.
    fn drop(&mut self) {
        if let Some(task) = lock(&self.timer).as_ref() {
            task.abort();
        }
    }
}

/// One turn of the switch: its lock held, its clock read once. When it ends the lock is let go
/// first; then the timer hears of anything set for earlier than it sleeps, and the turn's reports
/// go to the engine.
pub(crate) struct Turn<'a> {
    shared: &'a Arc<Shared>,
    st: Option<MutexGuard<'a, State>>,
}

impl Deref for Turn<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.st
            .as_deref()
            .unwrap_or_else(|| unreachable!("a turn holds the switch until it ends"))
    }
}

impl DerefMut for Turn<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.st
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("a turn holds the switch until it ends"))
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let Some(mut st) = self.st.take() else {
            return;
        };
        // Collected while the switch is held, sent once it is let go: reports keep switch order.
        let sender = self.shared.outbox.collect(&mut st.out);
        let earlier = st.agenda.take_earlier();
        drop(st);
        if earlier {
            self.shared.start_timer();
            self.shared.wake.notify_one();
        }
        sender.send();
    }
}

/// The switch's timer: runs what is due, then sleeps until the next entry is due or an earlier one is
/// added. It holds the switch only while running, and ends with it.
///
/// One timer serves every sleep: it is set again only when the earliest entry changes, which is seldom
/// (the earliest is usually a no-answer timer set long ago), not on every wake-up.
async fn run_agenda(switch: Weak<Shared>, wake: Arc<Notify>) {
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    // The deadline the timer is set to, while it has not fired.
    let mut set_for = None;
    loop {
        let next = {
            let Some(shared) = switch.upgrade() else {
                return;
            };
            let mut turn = shared.turn();
            let now = turn.now;
            turn.run_due(now);
            turn.next_deadline()
        };
        match next {
            Some(at) => {
                if set_for != Some(at) {
                    timer.as_mut().reset(at);
                    set_for = Some(at);
                }
                tokio::select! {
                    biased;
                    () = wake.notified() => {}
                    () = &mut timer => set_for = None,
                }
            }
            None => wake.notified().await,
        }
    }
}
