//! [`ModemProvider`]: a tapir provider that drives any AT modem over any byte stream, the way a
//! Unimodem-style driver does — one line, one address, one call at a time.
//!
//! One task (`actor.rs`) owns the stream. Provider methods send it requests and wait for the
//! answer; the task writes commands, reads what the modem sends, and hands result codes, rings,
//! caller ID and `<DLE>` events to the line's call logic (`crate::host::line`), which turns them
//! into call states. Long operations (dialling a data call, answering) do not hold the task: their
//! result code arrives later and finishes them, so a drop can still interrupt them.

mod actor;
mod caps;
mod port;
mod status;
mod timing;

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tapir_core::caps::LineCaps;
use tapir_core::dial::DialString;
use tapir_core::media::MediaModes;
use tapir_core::params::{DigitMode, MakeCall};
use tapir_core::{CallLegId, Error};
use tapir_provider::{EventSink, Provider};
use tokio::sync::{mpsc, oneshot};

pub use self::port::{Connector, DtrControl, Port};
pub use self::status::LineStatus;
pub use self::timing::ModemTiming;

use self::actor::{Actor, Request};
use self::caps::line_caps;

/// Builds a [`ModemProvider`].
pub struct ModemProviderBuilder {
    name: String,
    number: String,
    connector: Connector,
    dtr: Option<DtrControl>,
    timing: ModemTiming,
    incoming: MediaModes,
}

impl ModemProviderBuilder {
    /// The provider's name for logs and the status table (default `"modem"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// The line's own directory number (its address).
    pub fn number(mut self, number: impl Into<String>) -> Self {
        self.number = number.into();
        self
    }
    /// Lets the provider hang up by lowering DTR (as Unimodem does) instead of `+++` and `ATH`.
    pub fn dtr(mut self, control: DtrControl) -> Self {
        self.dtr = Some(control);
        self
    }
    /// How incoming calls are answered, and the media mode they are offered with: `DATA_MODEM` (the
    /// default: `ATA`, the call connects on `CONNECT`) or `INTERACTIVE_VOICE` / `AUTOMATED_VOICE`
    /// (voice mode: `AT+FCLASS=8`, `AT+VLS=1`; digits can be monitored). A modem cannot tell before
    /// answering what a caller is, so the line is set up for one kind, as a Unimodem line is.
    pub fn incoming_media(mut self, media: MediaModes) -> Self {
        self.incoming = media;
        self
    }
    /// Changes the timing.
    pub fn timing(mut self, timing: ModemTiming) -> Self {
        self.timing = timing;
        self
    }
    /// Builds the provider.
    pub fn build(self) -> ModemProvider {
        ModemProvider {
            name: self.name,
            number: self.number,
            connector: self.connector,
            dtr: self.dtr,
            timing: self.timing,
            incoming: self.incoming,
            status: Arc::new(Mutex::new(LineStatus::Starting)),
            requests: Mutex::new(None),
        }
    }
}

/// A tapir provider for one AT modem.
///
/// ```
/// use tapir_modem::{ModemProvider, Network, SimModem};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let network = Network::new();
/// let (stream, _modem) = SimModem::builder().attach(&network, "5550100").unwrap();
/// let provider = ModemProvider::over(stream).number("5550100").build();
/// # let _ = provider;
/// # }
/// ```
pub struct ModemProvider {
    name: String,
    number: String,
    connector: Connector,
    dtr: Option<DtrControl>,
    timing: ModemTiming,
    incoming: MediaModes,
    status: Arc<Mutex<LineStatus>>,
    requests: Mutex<Option<mpsc::UnboundedSender<Request>>>,
}

impl std::fmt::Debug for ModemProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModemProvider")
            .field("name", &self.name)
            .field("number", &self.number)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl ModemProvider {
    /// A provider that opens its stream with `connector` (at start, and again on each retry).
    pub fn builder(connector: Connector) -> ModemProviderBuilder {
        ModemProviderBuilder {
            name: "modem".into(),
            number: String::new(),
            connector,
            dtr: None,
            timing: ModemTiming::default(),
            incoming: MediaModes::DATA_MODEM,
        }
    }

    /// A provider over a stream that is already open (an in-memory line to a [`SimModem`](crate::SimModem),
    /// a socket). It can be used once: after it ends, retries find no stream.
    pub fn over(stream: impl Port) -> ModemProviderBuilder {
        let slot: Arc<Mutex<Option<Box<dyn Port>>>> = Arc::new(Mutex::new(Some(Box::new(stream))));
        Self::builder(Arc::new(move || {
            let taken = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            Box::pin(async move {
                taken.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the stream was used"))
            })
        }))
    }

    /// A provider for a modem on a serial device (`/dev/ttyS0`, `/dev/ttyUSB0`, a pseudo-terminal).
    /// The device is opened raw at 115200 bit/s at start, and opened again when an out-of-service
    /// line is retried (a modem unplugged and plugged back in).
    #[cfg(unix)]
    pub fn serial(path: impl Into<std::path::PathBuf>) -> ModemProviderBuilder {
        let path = path.into();
        Self::builder(Arc::new(move || {
            let path = path.clone();
            Box::pin(async move {
                crate::tty::Tty::open(&path)
                    .map(|t| Box::new(t) as Box<dyn Port>)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
            })
        }))
    }

    /// Whether the line is in service, and if not why.
    pub fn status(&self) -> LineStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Request,
    ) -> Result<T, Error> {
        let tx = self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(Error::ResourceUnavailable {
                what: "the modem provider (not started)",
            })?;
        let (reply, rx) = oneshot::channel();
        tx.send(make(reply)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::ResourceUnavailable {
        what: "the modem provider (stopped)",
    }
}

#[async_trait]
impl Provider for ModemProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn start(&self, sink: EventSink) -> Result<Vec<LineCaps>, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let actor = Actor::new(
            self.number.clone(),
            self.connector.clone(),
            self.dtr.clone(),
            self.timing,
            self.incoming,
            sink,
            self.status.clone(),
        );
        tokio::spawn(actor.run(rx, ready_tx));
        *self.requests.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
        let voice = ready_rx.await.unwrap_or(false);
        Ok(vec![line_caps(&self.number, voice)])
    }

    /// Checks the modem answers; one that is out of service is tried at once.
    async fn session_logon(&self) -> Result<(), Error> {
        self.ask(Request::Probe).await
    }

    async fn stop(&self) {
        let tx = self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(tx) = tx {
            let (done, wait) = oneshot::channel();
            if tx.send(Request::Stop(done)).is_ok() {
                let _ = wait.await;
            }
        }
    }

    async fn make_call(&self, request: MakeCall) -> Result<CallLegId, Error> {
        self.ask(|r| Request::MakeCall(request, r)).await
    }
    async fn dial(&self, leg: CallLegId, digits: &DialString) -> Result<(), Error> {
        let digits = digits.clone();
        self.ask(|r| Request::Dial(leg, digits, r)).await
    }
    async fn accept(&self, leg: CallLegId) -> Result<(), Error> {
        self.ask(|r| Request::Accept(leg, r)).await
    }
    async fn answer(&self, leg: CallLegId) -> Result<(), Error> {
        self.ask(|r| Request::Answer(leg, r)).await
    }
    async fn drop_call(&self, leg: CallLegId) -> Result<(), Error> {
        self.ask(|r| Request::Drop(leg, r)).await
    }
    async fn reject(&self, leg: CallLegId) -> Result<(), Error> {
        self.ask(|r| Request::Reject(leg, r)).await
    }
    async fn generate_digits(
        &self,
        leg: CallLegId,
        digits: &str,
        _mode: DigitMode,
    ) -> Result<(), Error> {
        let digits = digits.to_owned();
        self.ask(|r| Request::Digits(leg, digits, r)).await
    }
    async fn monitor_digits(&self, leg: CallLegId, mode: Option<DigitMode>) -> Result<(), Error> {
        self.ask(|r| Request::Monitor(leg, mode.is_some(), r)).await
    }
}
