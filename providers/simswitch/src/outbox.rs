//! What the switch reports, in switch order: queued by the switch itself ([`Reports`], a value),
//! handed to the shell's [`Outbox`] at the end of each turn while the switch's lock is held, and sent
//! to the engine once it is let go.
//!
//! The switch never calls the engine. Whoever ends a turn sends what is queued, one sender at a
//! time, so two threads' reports cannot overtake each other; a sender that finds another one sending
//! waits for it, so when an operation returns every report it made has reached the engine (a call
//! the engine asked for is reported before the request returns).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tapir_core::info::CallInfo;
use tapir_core::state::CallState;
use tapir_core::{CallLegId, LineId};
use tapir_provider::{EventSink, LineEvent, NewCall, ProviderEvent};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The reports of the switch's current turn, in the order it made them.
#[derive(Default)]
pub(crate) struct Reports(Vec<ProviderEvent>);

impl Reports {
    pub(crate) fn send(&mut self, event: ProviderEvent) {
        self.0.push(event);
    }

    pub(crate) fn new_call(&mut self, call: NewCall) {
        self.send(ProviderEvent::NewCall(call));
    }

    pub(crate) fn call_state(&mut self, leg: CallLegId, state: CallState) {
        self.send(ProviderEvent::CallState { leg, state });
    }

    pub(crate) fn call_info(&mut self, leg: CallLegId, info: Arc<CallInfo>) {
        self.send(ProviderEvent::CallInfo { leg, info });
    }

    pub(crate) fn line(&mut self, line: LineId, event: LineEvent) {
        self.send(ProviderEvent::Line { line, event });
    }

    /// Everything reported so far, taken (for tests that drive the switch directly).
    #[cfg(test)]
    pub(crate) fn take(&mut self) -> Vec<ProviderEvent> {
        std::mem::take(&mut self.0)
    }
}

/// Where a turn's reports go: the engine's sink (while the switch is started), and the right to send.
///
/// A turn ends by taking this lock while it still holds the switch's lock, moving its reports into
/// the batch, letting go of the switch, and only then sending. The next turn to end waits here for
/// the sending before it, so reports reach the engine in switch order, and an operation returns
/// after its reports have.
#[derive(Default)]
pub(crate) struct Outbox(Mutex<Sending>);

#[derive(Default)]
struct Sending {
    sink: Option<EventSink>,
    /// The batch being sent; its memory is kept for the next.
    batch: Vec<ProviderEvent>,
}

impl Outbox {
    /// Sets (or, with `None`, takes away) the engine's sink.
    pub(crate) fn attach(&self, sink: Option<EventSink>) {
        lock(&self.0).sink = sink;
    }

    /// Whether a sink is attached (the switch is started).
    pub(crate) fn is_attached(&self) -> bool {
        lock(&self.0).sink.is_some()
    }

    /// Takes a turn's reports and the right to send them. Call it with the switch's lock held; send
    /// after letting go of it.
    pub(crate) fn collect(&self, reports: &mut Reports) -> Sender<'_> {
        let mut sending = lock(&self.0);
        std::mem::swap(&mut sending.batch, &mut reports.0);
        Sender(sending)
    }
}

/// A turn's reports with the right to send them.
pub(crate) struct Sender<'a>(MutexGuard<'a, Sending>);

impl Sender<'_> {
    /// Sends the reports to the engine, in order (to nowhere, if the switch has been stopped).
    pub(crate) fn send(mut self) {
        let Sending { sink, batch } = &mut *self.0;
        match sink {
            Some(sink) => batch.drain(..).for_each(|e| sink.send(e)),
            None => batch.clear(),
        }
    }
}
