//! [`ModemProvider`]: a tapir provider that drives any AT modem over any byte stream, the way a
//! Unimodem-style driver does — one line, one address, one call at a time.
//!
//! One task owns the stream. Provider methods send it requests and wait for the answer; the task
//! writes commands, reads what the modem sends, and turns result codes, rings, caller ID and `<DLE>`
//! events into call states. Long operations (dialling a data call, answering) do not hold the task:
//! their result code arrives later and finishes them, so a drop can still interrupt them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tapir_core::caps::{AddressCaps, AnswerMode, DialCaps, LineCaps};
use tapir_core::dial::{DialString, is_dtmf_digit};
use tapir_core::gate::{CallOperation, FeatureSet};
use tapir_core::info::{CallInfo, CallOrigin, PartyId, Presentation};
use tapir_core::media::MediaModes;
use tapir_core::params::{DigitMode, MakeCall, RequestId};
use tapir_core::state::{CallState, ConnectedMode, DialToneMode, DisconnectReason, OfferingMode};
use tapir_core::{AddressId, CallId, CallLegId, Error, LineId};
use tapir_provider::{EventSink, LineEvent, NewCall, Provider};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep, sleep_until};
use tracing::{debug, info, warn};

use crate::host::{Final, Reader, Response};

/// A byte stream to a modem.
pub trait Port: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Port for T {}

/// Opens the stream to the modem; called at start and again when an out-of-service line is retried.
pub type Connector =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = io::Result<Box<dyn Port>>> + Send>> + Send + Sync>;

/// Lowers (`false`) or raises (`true`) DTR, where the stream has one.
pub type DtrControl = Arc<dyn Fn(bool) + Send + Sync>;

/// Timing of the provider's conversation with the modem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModemTiming {
    /// How long a command may take to answer (Unimodem allows about 2 s).
    pub command: Duration,
    /// How long dialling or answering may take before the provider gives up (beyond the modem's own
    /// S7, which it sets to 60 s).
    pub call_setup: Duration,
    /// An offered call is gone when no `RING` came for this long.
    pub ring_gone: Duration,
    /// How often an out-of-service modem is tried again.
    pub retry: Duration,
}

impl Default for ModemTiming {
    fn default() -> Self {
        Self {
            command: Duration::from_secs(2),
            call_setup: Duration::from_secs(75),
            ring_gone: Duration::from_secs(10),
            retry: Duration::from_secs(30),
        }
    }
}

/// Whether the modem line can be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineStatus {
    /// Not started yet, or initialising.
    Starting,
    /// Initialised; calls can be made and answered.
    InService,
    /// The modem did not initialise; why, in words. The provider keeps retrying.
    OutOfService(String),
    /// Stopped.
    Stopped,
}

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

/// The two halves of the modem's stream.
type Halves = (ReadHalf<Box<dyn Port>>, WriteHalf<Box<dyn Port>>);

type Reply<T> = oneshot::Sender<Result<T, Error>>;

enum Request {
    MakeCall(MakeCall, Reply<CallLegId>),
    Dial(CallLegId, DialString, Reply<()>),
    Accept(CallLegId, Reply<()>),
    Answer(CallLegId, Reply<()>),
    Drop(CallLegId, Reply<()>),
    Reject(CallLegId, Reply<()>),
    Digits(CallLegId, String, Reply<()>),
    Monitor(CallLegId, bool, Reply<()>),
    Probe(Reply<()>),
    Stop(oneshot::Sender<()>),
}

#[async_trait]
impl Provider for ModemProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn start(&self, sink: EventSink) -> Result<Vec<LineCaps>, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let actor = Actor {
            number: self.number.clone(),
            connector: self.connector.clone(),
            dtr: self.dtr.clone(),
            timing: self.timing,
            sink,
            status: self.status.clone(),
            io: None,
            reader: Reader::default(),
            pending: std::collections::VecDeque::new(),
            voice_capable: false,
            caller_id: false,
            call: None,
            next_leg: 1,
            next_call_id: 1,
            ignore_rings_until: None,
            incoming: self.incoming,
            dial_waiting: None,
            retry_at: None,
            dial_started: None,
            caller_id_changed: false,
        };
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

/// The capabilities of a modem line: basic call control; voice modems add digits.
fn line_caps(number: &str, voice: bool) -> LineCaps {
    let mut address = AddressCaps::basic(number);
    let mut ops = vec![
        CallOperation::Accept,
        CallOperation::Answer,
        CallOperation::Reject,
        CallOperation::Drop,
        CallOperation::Dial,
    ];
    if voice {
        ops.extend([CallOperation::GenerateDigits, CallOperation::MonitorDigits]);
    }
    address.call_features = FeatureSet::from_slice(&ops);
    let media = if voice {
        MediaModes::DATA_MODEM | MediaModes::INTERACTIVE_VOICE | MediaModes::AUTOMATED_VOICE
    } else {
        MediaModes::DATA_MODEM
    };
    LineCaps {
        name: format!("Modem {number}"),
        addresses: vec![address],
        media_modes: media,
        dial: DialCaps {
            partial_dial: true,
            wait_for_dial_tone: true,
            wait_for_quiet: true,
            wait_for_billing: true,
            flash: true,
            pulse: true,
        },
        answer_mode: AnswerMode::None,
    }
}

const LINE: LineId = LineId(0);
/// The carrier wait (S7) the provider sets.
const CARRIER_WAIT: Duration = Duration::from_secs(60);
const ADDRESS: AddressId = AddressId(0);

/// What the modem is doing for the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Ringing; the modem is on hook.
    Offered,
    /// Off hook in command state (dial tone, partial dial, voice call).
    OffHook,
    /// A data dial is running; its result code decides.
    Dialing,
    /// `ATA` is running.
    Answering,
    /// Connected as data; the modem is online.
    Online,
    /// The far end or the network ended it; the modem is on hook.
    Ended,
}

struct ActiveCall {
    leg: CallLegId,
    state: CallState,
    info: CallInfo,
    phase: Phase,
    voice: bool,
    monitor_digits: bool,
    rings: u32,
    ring_deadline: Option<Instant>,
}

/// What a command waits for.
struct Pending {
    deadline: Instant,
    info: Vec<String>,
    done: oneshot::Sender<Result<Vec<String>, Final>>,
}

struct Actor {
    number: String,
    connector: Connector,
    dtr: Option<DtrControl>,
    timing: ModemTiming,
    sink: EventSink,
    status: Arc<Mutex<LineStatus>>,
    io: Option<Halves>,
    reader: Reader,
    /// Commands written and waiting for their final result code, oldest first.
    pending: std::collections::VecDeque<Pending>,
    voice_capable: bool,
    caller_id: bool,
    call: Option<ActiveCall>,
    next_leg: u64,
    next_call_id: u64,
    /// A dropped offered call keeps ringing at the modem; its rings are ignored until they stop.
    ignore_rings_until: Option<Instant>,
    /// The media mode incoming calls are offered and answered with.
    incoming: MediaModes,
    /// A data dial or answer waiting for its result code, with the request waiting for it (answer).
    dial_waiting: Option<(Instant, Option<Reply<()>>)>,
    retry_at: Option<Instant>,
    /// When the running data dial was sent.
    dial_started: Option<Instant>,
    /// Caller ID changed while reading; reported once the bytes read so far are handled.
    caller_id_changed: bool,
}

enum Wake {
    Request(Option<Request>),
    Read(io::Result<Vec<u8>>),
    Timer,
}

impl Actor {
    async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<Request>,
        ready: oneshot::Sender<bool>,
    ) {
        self.bring_up().await;
        let _ = ready.send(self.voice_capable);
        loop {
            match self.wait(&mut requests).await {
                Wake::Request(None) => break,
                Wake::Request(Some(req)) => {
                    if !self.request(req).await {
                        return;
                    }
                }
                Wake::Read(Ok(bytes)) => self.bytes(&bytes),
                Wake::Read(Err(e)) => self.lost(&format!("the modem's stream failed: {e}")),
                Wake::Timer => self.timers().await,
            }
        }
        self.shut_down().await;
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.pending.front().map(|p| p.deadline),
            self.call.as_ref().and_then(|c| c.ring_deadline),
            self.dial_waiting.as_ref().map(|(d, _)| *d),
            self.retry_at,
            self.ignore_rings_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Waits for a request, bytes from the modem, or a timer.
    async fn wait(&mut self, requests: &mut mpsc::UnboundedReceiver<Request>) -> Wake {
        let deadline = self.next_deadline();
        tokio::select! {
            r = requests.recv() => Wake::Request(r),
            r = read_some(&mut self.io) => Wake::Read(r),
            () = sleep_opt(deadline) => Wake::Timer,
        }
    }

    // ---- the stream ----

    async fn write(&mut self, bytes: &[u8]) -> bool {
        debug!(number = %self.number, tx = %String::from_utf8_lossy(bytes).trim_end(), "to modem");
        let Some((_, wr)) = self.io.as_mut() else {
            return false;
        };
        if wr.write_all(bytes).await.is_err() || wr.flush().await.is_err() {
            self.lost("the modem's stream closed");
            return false;
        }
        true
    }

    /// Sends a command and waits for its final result code; OK gives the information lines.
    async fn command(&mut self, cmd: &str, limit: Duration) -> Result<Vec<String>, Final> {
        self.exchange(format!("{cmd}\r").as_bytes(), limit).await
    }

    /// Writes `bytes` (a command, a byte that aborts a dial, `+++`, or nothing) and waits for the next
    /// final result code.
    async fn exchange(&mut self, bytes: &[u8], limit: Duration) -> Result<Vec<String>, Final> {
        let (done, rx) = oneshot::channel();
        self.pending.push_back(Pending {
            deadline: Instant::now() + limit,
            info: Vec::new(),
            done,
        });
        if !bytes.is_empty() && !self.write(bytes).await {
            self.pending.pop_back();
            return Err(Final::Error);
        }
        let mut rx = rx;
        loop {
            // Keep reading (rings and caller ID may arrive meanwhile) until this command is answered.
            if let Ok(result) = rx.try_recv() {
                return result;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                r = read_some(&mut self.io) => match r {
                    Err(_) => {
                        self.lost("the modem's stream closed");
                        return Err(Final::Error);
                    }
                    Ok(bytes) => self.bytes(&bytes),
                },
                () = sleep_opt(deadline) => self.expire_pending(),
            }
            if self.io.is_none() {
                return rx.try_recv().unwrap_or(Err(Final::Error));
            }
        }
    }

    fn expire_pending(&mut self) {
        let now = Instant::now();
        while self.pending.front().is_some_and(|p| p.deadline <= now) {
            if let Some(p) = self.pending.pop_front() {
                warn!(number = %self.number, "the modem did not answer a command in time");
                let _ = p.done.send(Err(Final::Error));
            }
        }
    }

    fn lost(&mut self, why: &str) {
        if self.io.take().is_some() {
            warn!(number = %self.number, why, "modem lost");
        }
        for p in self.pending.drain(..) {
            let _ = p.done.send(Err(Final::Error));
        }
        self.end_call(DisconnectReason::OutOfOrder);
        self.out_of_service(why.to_owned());
    }

    // ---- bringing the modem up ----

    async fn bring_up(&mut self) {
        self.retry_at = None;
        for attempt in 1..=2 {
            match self.initialise().await {
                Ok(()) => {
                    info!(number = %self.number, voice = self.voice_capable, "modem in service");
                    self.set_status(LineStatus::InService);
                    return;
                }
                Err(why) => {
                    warn!(number = %self.number, attempt, %why, "modem initialisation failed");
                    if attempt == 2 {
                        self.io = None;
                        self.out_of_service(why);
                    }
                }
            }
        }
    }

    /// A session is logging on: a modem in service is fine; one out of service is tried once now
    /// rather than at its next retry.
    async fn probe(&mut self) -> Result<(), Error> {
        let status = self
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match status {
            LineStatus::InService => Ok(()),
            LineStatus::Stopped => Err(failed("the provider has stopped")),
            LineStatus::Starting | LineStatus::OutOfService(_) => match self.initialise().await {
                Ok(()) => {
                    info!(number = %self.number, "modem in service (probed for a session)");
                    self.retry_at = None;
                    self.set_status(LineStatus::InService);
                    Ok(())
                }
                Err(why) => {
                    self.io = None;
                    self.out_of_service(why.clone());
                    Err(Error::OperationFailed {
                        reason: format!("the modem is out of service: {why}"),
                    })
                }
            },
        }
    }

    async fn initialise(&mut self) -> Result<(), String> {
        if self.io.is_none() {
            let port = (self.connector)()
                .await
                .map_err(|e| format!("cannot open the modem's port: {e}"))?;
            self.io = Some(tokio::io::split(port));
            self.reader = Reader::default();
        }
        let t = self.timing.command;
        let no_ok = |cmd: &str| format!("the modem did not answer {cmd} with OK within {t:?}");
        // A modem left online or in voice mode would not hear commands; hang it up first.
        self.command("AT", t).await.map_err(|_| no_ok("AT"))?;
        self.command("ATZ", t).await.map_err(|_| no_ok("ATZ"))?;
        let init = format!("ATE0V1Q0X4&C1&D2S0=0S7={}", CARRIER_WAIT.as_secs());
        let init = init.as_str();
        self.command(init, t).await.map_err(|_| no_ok(init))?;
        self.voice_capable = match self.command("AT+FCLASS=?", t).await {
            Ok(lines) => lines
                .iter()
                .any(|l| l.split(',').any(|c| c.trim().starts_with('8'))),
            Err(_) => false,
        };
        self.caller_id =
            self.command("AT+VCID=1", t).await.is_ok() || self.command("AT#CID=1", t).await.is_ok();
        Ok(())
    }

    fn set_status(&self, status: LineStatus) {
        let was = std::mem::replace(
            &mut *self.status.lock().unwrap_or_else(PoisonError::into_inner),
            status.clone(),
        );
        match (&was, &status) {
            (LineStatus::OutOfService(_), LineStatus::InService) => {
                self.sink.line(LINE, LineEvent::InService);
                self.sink.line(
                    LINE,
                    LineEvent::CapsChanged(Box::new(line_caps(&self.number, self.voice_capable))),
                );
            }
            (LineStatus::InService | LineStatus::Starting, LineStatus::OutOfService(reason)) => {
                self.sink.line(
                    LINE,
                    LineEvent::OutOfService {
                        reason: reason.clone(),
                    },
                );
            }
            _ => {}
        }
    }

    fn out_of_service(&mut self, reason: String) {
        if matches!(
            *self.status.lock().unwrap_or_else(PoisonError::into_inner),
            LineStatus::Stopped
        ) {
            return;
        }
        self.set_status(LineStatus::OutOfService(reason));
        self.retry_at = Some(Instant::now() + self.timing.retry);
    }

    fn in_service(&self) -> bool {
        matches!(
            *self.status.lock().unwrap_or_else(PoisonError::into_inner),
            LineStatus::InService
        )
    }

    async fn shut_down(&mut self) {
        if self.call.is_some() && self.io.is_some() {
            self.hang_up().await;
        }
        self.end_call(DisconnectReason::Normal);
        if let Some((_, mut wr)) = self.io.take() {
            let _ = wr.shutdown().await;
        }
        self.set_status(LineStatus::Stopped);
    }

    // ---- what the modem says ----

    fn bytes(&mut self, bytes: &[u8]) {
        for response in self.reader.feed(bytes) {
            self.response(response);
        }
        // Caller-ID items come as a block of lines; report the block as one change.
        if std::mem::take(&mut self.caller_id_changed) {
            if let Some(c) = &self.call {
                self.sink.call_info(c.leg, c.info.clone());
            }
        }
    }

    fn response(&mut self, response: Response) {
        match response {
            Response::Echo(_) => {}
            Response::Final(f) => {
                if let Some(p) = self.pending.pop_front() {
                    let result = match f {
                        Final::Ok | Final::Vcon => Ok(p.info),
                        other => Err(other),
                    };
                    let _ = p.done.send(result);
                } else {
                    self.unsolicited_final(f);
                }
            }
            Response::Info(text) => {
                // Information lines belong to the command being answered.
                if let Some(p) = self.pending.front_mut() {
                    p.info.push(text);
                }
            }
            Response::Ring => self.ring(),
            Response::CallerId(tag, value) => self.caller_id_item(&tag, &value),
            Response::Dle(code) => self.dle(code),
        }
    }
}

impl Actor {
    fn leg(&mut self, leg: CallLegId) -> Result<&mut ActiveCall, Error> {
        self.call
            .as_mut()
            .filter(|c| c.leg == leg)
            .ok_or(Error::CallUnavailable)
    }

    fn state(&mut self, state: CallState) {
        let Some(c) = self.call.as_mut() else {
            return;
        };
        if c.state != state {
            c.state = state;
            self.sink.call_state(c.leg, state);
        }
        if state == CallState::Idle {
            self.call = None;
        }
    }

    /// The call is over: disconnected (if it was not already), then idle.
    fn end_call(&mut self, reason: DisconnectReason) {
        if let Some((_, Some(reply))) = self.dial_waiting.take() {
            let _ = reply.send(Err(failed("the call ended")));
        }
        if self
            .call
            .as_ref()
            .is_some_and(|c| !matches!(c.state, CallState::Disconnected(_)))
        {
            self.state(CallState::Disconnected(reason));
        }
        self.state(CallState::Idle);
    }

    /// The far end or the network ended the call; it stays disconnected until dropped.
    fn disconnected(&mut self, reason: DisconnectReason) {
        if let Some(c) = self.call.as_mut() {
            c.phase = Phase::Ended;
            c.ring_deadline = None;
        }
        self.state(CallState::Disconnected(reason));
    }

    fn unsolicited_final(&mut self, f: Final) {
        let Some(phase) = self.call.as_ref().map(|c| c.phase) else {
            debug!(number = %self.number, ?f, "result code without a call");
            return;
        };
        match phase {
            Phase::Dialing | Phase::Answering => {
                let reply = self.dial_waiting.take().and_then(|(_, r)| r);
                let outcome = match f {
                    Final::Connect(_) => {
                        if let Some(c) = self.call.as_mut() {
                            c.phase = Phase::Online;
                        }
                        self.state(CallState::Connected(ConnectedMode::Active));
                        Ok(())
                    }
                    Final::Vcon | Final::Ok => {
                        if let Some(c) = self.call.as_mut() {
                            c.phase = Phase::OffHook;
                        }
                        self.state(CallState::Connected(ConnectedMode::Active));
                        Ok(())
                    }
                    other => {
                        let rang_out = self.rang_out();
                        let answering = phase == Phase::Answering;
                        self.disconnected(failure_reason(other, answering, rang_out));
                        Err(failed(&format!("the modem answered {other:?}")))
                    }
                };
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
            Phase::Online if f == Final::NoCarrier => self.disconnected(DisconnectReason::Normal),
            _ => debug!(number = %self.number, ?f, ?phase, "result code ignored"),
        }
    }

    /// Whether the data dial that just ended lasted as long as the modem waits for a carrier (S7).
    fn rang_out(&mut self) -> bool {
        self.dial_started
            .take()
            .is_some_and(|t| t.elapsed() + Duration::from_secs(1) >= CARRIER_WAIT)
    }

    fn ring(&mut self) {
        let now = Instant::now();
        if self.ignore_rings_until.is_some() {
            self.ignore_rings_until = Some(now + self.timing.ring_gone);
            return;
        }
        let ring_gone = self.timing.ring_gone;
        if let Some(c) = self.call.as_mut() {
            if c.phase == Phase::Offered {
                c.rings += 1;
                c.ring_deadline = Some(now + ring_gone);
                let count = c.rings;
                self.sink.line(
                    LINE,
                    LineEvent::Ringing {
                        address: ADDRESS,
                        count,
                    },
                );
            }
            return;
        }
        let leg = self.new_leg();
        let voice = self.voice_capable && self.incoming != MediaModes::DATA_MODEM;
        let info = CallInfo {
            call_id: self.new_call_id(),
            origin: CallOrigin::External,
            media_mode: if voice {
                self.incoming
            } else {
                MediaModes::DATA_MODEM
            },
            caller: PartyId {
                presentation: if self.caller_id {
                    Presentation::Unknown
                } else {
                    Presentation::Unavailable
                },
                ..PartyId::default()
            },
            called: PartyId::number(self.number.clone()),
            ..CallInfo::default()
        };
        let state = CallState::Offering(OfferingMode::Active);
        self.call = Some(ActiveCall {
            leg,
            state,
            info: info.clone(),
            phase: Phase::Offered,
            voice,
            monitor_digits: false,
            rings: 0,
            ring_deadline: Some(now + ring_gone),
        });
        self.sink.new_call(NewCall {
            leg,
            line: LINE,
            address: ADDRESS,
            state,
            info: info.into(),
            request: None,
        });
        self.sink.line(
            LINE,
            LineEvent::Ringing {
                address: ADDRESS,
                count: 0,
            },
        );
    }

    fn caller_id_item(&mut self, tag: &str, value: &str) {
        let Some(c) = self.call.as_mut().filter(|c| c.phase == Phase::Offered) else {
            return;
        };
        let caller = &mut c.info.caller;
        match (tag, value) {
            ("NMBR", "P") => *caller = PartyId::blocked(),
            ("NMBR", "O") => *caller = PartyId::out_of_area(),
            ("NMBR", n) => {
                caller.number = Some(n.into());
                caller.presentation = Presentation::Allowed;
            }
            ("NAME", n) if caller.presentation != Presentation::Blocked => {
                caller.name = Some(n.into());
            }
            _ => return,
        }
        self.caller_id_changed = true;
    }

    fn dle(&mut self, code: u8) {
        let Some(c) = self
            .call
            .as_ref()
            .filter(|c| c.voice && c.phase == Phase::OffHook)
        else {
            return;
        };
        let digit = char::from(code);
        match digit {
            d if is_dtmf_digit(d) && c.monitor_digits => {
                self.sink.send(tapir_provider::ProviderEvent::Digit {
                    leg: c.leg,
                    digit,
                    mode: DigitMode::Dtmf,
                });
            }
            // Busy (reorder) tone or loop-current break: the far end hung up.
            'b' | 'K' | 'l' => self.disconnected(DisconnectReason::Normal),
            _ => {}
        }
    }

    fn new_leg(&mut self) -> CallLegId {
        let leg = CallLegId(self.next_leg);
        self.next_leg += 1;
        leg
    }

    fn new_call_id(&mut self) -> CallId {
        let id = CallId(self.next_call_id);
        self.next_call_id += 1;
        id
    }

    async fn timers(&mut self) {
        let now = Instant::now();
        self.expire_pending();
        if self
            .call
            .as_ref()
            .and_then(|c| c.ring_deadline)
            .is_some_and(|d| d <= now)
        {
            debug!(number = %self.number, "rings stopped: the caller gave up");
            self.disconnected(DisconnectReason::Normal);
            self.state(CallState::Idle);
        }
        if self.dial_waiting.as_ref().is_some_and(|(d, _)| *d <= now) {
            warn!(number = %self.number, "no result code for the call attempt; hanging up");
            let reply = self.dial_waiting.take().and_then(|(_, r)| r);
            let _ = self.exchange(b"\r", self.timing.command).await;
            self.disconnected(DisconnectReason::NoAnswer);
            if let Some(reply) = reply {
                let _ = reply.send(Err(failed("the modem gave no result code")));
            }
        }
        if self.ignore_rings_until.is_some_and(|d| d <= now) {
            self.ignore_rings_until = None;
        }
        if self.retry_at.is_some_and(|d| d <= now) {
            self.bring_up().await;
        }
    }

    /// Handles one request; false once the provider has stopped.
    async fn request(&mut self, req: Request) -> bool {
        match req {
            Request::MakeCall(mc, reply) => {
                let r = self.make_call(mc).await;
                let _ = reply.send(r);
            }
            Request::Dial(leg, digits, reply) => {
                let r = self.dial(leg, &digits).await;
                let _ = reply.send(r);
            }
            Request::Accept(leg, reply) => {
                let r = match self.leg(leg) {
                    Ok(c)
                        if c.phase == Phase::Offered
                            && matches!(c.state, CallState::Offering(_)) =>
                    {
                        self.state(CallState::Accepted);
                        Ok(())
                    }
                    Ok(c) => Err(wrong_state(c.state)),
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            Request::Answer(leg, reply) => self.answer(leg, reply).await,
            Request::Drop(leg, reply) => {
                let r = self.drop_call(leg).await;
                let _ = reply.send(r);
            }
            Request::Reject(leg, reply) => {
                // Refusing is for a call still ringing; an answered one is dropped, not refused.
                let r = match self.leg(leg) {
                    Ok(c) if c.phase == Phase::Offered => self.drop_call(leg).await,
                    Ok(c) => Err(wrong_state(c.state)),
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            Request::Digits(leg, digits, reply) => {
                let r = self.digits(leg, &digits).await;
                let _ = reply.send(r);
            }
            Request::Monitor(leg, on, reply) => {
                // A call that has ended carries no more digits.
                let r = match self.leg(leg) {
                    Ok(c) if matches!(c.state, CallState::Disconnected(_)) => {
                        Err(wrong_state(c.state))
                    }
                    Ok(c) => {
                        c.monitor_digits = on;
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            Request::Probe(reply) => {
                let r = self.probe().await;
                let _ = reply.send(r);
            }
            Request::Stop(done) => {
                self.shut_down().await;
                let _ = done.send(());
                return false;
            }
        }
        true
    }

    fn usable(&self) -> Result<(), Error> {
        if !self.in_service() {
            return Err(Error::ResourceUnavailable {
                what: "the modem line, which is out of service",
            });
        }
        if self.call.is_some() || self.ignore_rings_until.is_some() {
            return Err(Error::ResourceUnavailable {
                what: "the modem's only call",
            });
        }
        Ok(())
    }

    async fn set_class(&mut self, voice: bool) -> Result<(), Error> {
        if !self.voice_capable {
            return Ok(());
        }
        let cmd = if voice { "AT+FCLASS=8" } else { "AT+FCLASS=0" };
        self.command(cmd, self.timing.command)
            .await
            .map(|_| ())
            .map_err(|f| failed(&format!("{cmd} answered {f:?}")))
    }

    async fn make_call(&mut self, mc: MakeCall) -> Result<CallLegId, Error> {
        self.usable()?;
        let voice = if mc.media_mode == MediaModes::DATA_MODEM {
            false
        } else if self.voice_capable
            && (mc.media_mode == MediaModes::INTERACTIVE_VOICE
                || mc.media_mode == MediaModes::AUTOMATED_VOICE)
        {
            true
        } else {
            return Err(Error::InvalidMediaMode);
        };
        self.set_class(voice).await?;
        let leg = self.new_leg();
        let info = CallInfo {
            call_id: self.new_call_id(),
            origin: CallOrigin::Outbound,
            media_mode: mc.media_mode,
            caller: PartyId::number(self.number.clone()),
            called: mc
                .destination
                .as_ref()
                .map(|d| PartyId::number(d.digits()))
                .unwrap_or_default(),
            ..CallInfo::default()
        };
        let Some(destination) = mc.destination else {
            // Off hook with dial tone, for a later dial.
            self.command("ATD;", self.timing.call_setup)
                .await
                .map_err(|f| failed(&format!("going off hook answered {f:?}")))?;
            self.report_new(
                leg,
                info,
                CallState::DialTone(DialToneMode::Normal),
                mc.request,
                voice,
            );
            return Ok(leg);
        };
        self.report_new(leg, info, CallState::Dialing, mc.request, voice);
        self.send_dial(&destination).await;
        Ok(leg)
    }

    fn report_new(
        &mut self,
        leg: CallLegId,
        info: CallInfo,
        state: CallState,
        request: RequestId,
        voice: bool,
    ) {
        self.call = Some(ActiveCall {
            leg,
            state,
            info: info.clone(),
            phase: Phase::OffHook,
            voice,
            monitor_digits: false,
            rings: 0,
            ring_deadline: None,
        });
        self.sink.new_call(NewCall {
            leg,
            line: LINE,
            address: ADDRESS,
            state,
            info: info.into(),
            request: Some(request),
        });
    }

    /// Dials on the call. Partial and voice dials end with `;` and wait for OK; a complete data dial
    /// runs on, and its result code (CONNECT, BUSY …) arrives later.
    async fn send_dial(&mut self, d: &DialString) {
        let voice = self.call.as_ref().is_some_and(|c| c.voice);
        let partial = d.is_partial();
        let text = format!("ATD{}", d.dialable());
        if partial || voice {
            match self
                .command(&format!("{text};"), self.timing.call_setup)
                .await
            {
                Ok(_) if partial => self.state(CallState::Dialing),
                Ok(_) => {
                    // A voice modem cannot tell when the far end answers: connected once dialled.
                    self.state(CallState::Proceeding);
                    self.state(CallState::Connected(ConnectedMode::Active));
                }
                Err(f) => self.disconnected(failure_reason(f, false, false)),
            }
            return;
        }
        if let Some(c) = self.call.as_mut() {
            c.phase = Phase::Dialing;
        }
        if self.write(format!("{text}\r").as_bytes()).await {
            self.dial_waiting = Some((Instant::now() + self.timing.call_setup, None));
            self.dial_started = Some(Instant::now());
            self.state(CallState::Proceeding);
        }
    }

    async fn dial(&mut self, leg: CallLegId, digits: &DialString) -> Result<(), Error> {
        let c = self.leg(leg)?;
        if c.phase != Phase::OffHook
            || !matches!(c.state, CallState::DialTone(_) | CallState::Dialing)
        {
            return Err(wrong_state(c.state));
        }
        if c.state != CallState::Dialing {
            self.state(CallState::Dialing);
        }
        self.send_dial(digits).await;
        Ok(())
    }

    async fn answer(&mut self, leg: CallLegId, reply: Reply<()>) {
        let c = match self.leg(leg) {
            Ok(c) if c.phase == Phase::Offered => c,
            Ok(c) => {
                let _ = reply.send(Err(wrong_state(c.state)));
                return;
            }
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        c.ring_deadline = None;
        let voice = c.voice;
        if let Err(e) = self.set_class(voice).await {
            let _ = reply.send(Err(e));
            return;
        }
        if voice {
            let r = match self.command("AT+VLS=1", self.timing.command).await {
                Ok(_) => {
                    if let Some(c) = self.call.as_mut() {
                        c.phase = Phase::OffHook;
                    }
                    self.state(CallState::Connected(ConnectedMode::Active));
                    Ok(())
                }
                Err(f) => Err(failed(&format!("AT+VLS=1 answered {f:?}"))),
            };
            let _ = reply.send(r);
            return;
        }
        if let Some(c) = self.call.as_mut() {
            c.phase = Phase::Answering;
        }
        if self.write(b"ATA\r").await {
            self.dial_waiting = Some((Instant::now() + self.timing.call_setup, Some(reply)));
        } else {
            let _ = reply.send(Err(failed("the modem's stream closed")));
        }
    }

    async fn drop_call(&mut self, leg: CallLegId) -> Result<(), Error> {
        let c = self.leg(leg)?;
        match c.phase {
            Phase::Offered => {
                // The modem keeps ringing until the caller gives up; those rings are not a new call.
                self.ignore_rings_until = Some(Instant::now() + self.timing.ring_gone);
            }
            Phase::Ended if !c.voice => {}
            _ => self.hang_up().await,
        }
        self.end_call(DisconnectReason::Normal);
        Ok(())
    }

    /// Puts the modem on hook, whatever it is doing.
    async fn hang_up(&mut self) {
        let phase = self.call.as_ref().map(|c| c.phase);
        let t = self.timing.command;
        match phase {
            Some(Phase::Dialing | Phase::Answering) => {
                // Any byte aborts a call attempt; NO CARRIER follows.
                if let Some((_, Some(reply))) = self.dial_waiting.take() {
                    let _ = reply.send(Err(failed("dropped while answering")));
                }
                let _ = self.exchange(b"\r", t).await;
            }
            Some(Phase::Online) => {
                if let Some(dtr) = self.dtr.clone() {
                    dtr(false);
                    let _ = self.exchange(b"", t).await;
                    dtr(true);
                } else {
                    // Guard time, escape, guard time: the modem answers OK in online command state.
                    sleep(Duration::from_millis(1200)).await;
                    let _ = self.exchange(b"+++", t + Duration::from_millis(1200)).await;
                }
                let _ = self.command("ATH", t).await;
            }
            _ => {
                let _ = self.command("ATH", t).await;
            }
        }
    }

    async fn digits(&mut self, leg: CallLegId, digits: &str) -> Result<(), Error> {
        let c = self.leg(leg)?;
        if !c.voice || c.phase != Phase::OffHook || !matches!(c.state, CallState::Connected(_)) {
            return Err(wrong_state(c.state));
        }
        if digits.is_empty() || !digits.chars().all(is_dtmf_digit) {
            return Err(Error::InvalidParameter {
                reason: format!("{digits:?} is not a string of DTMF digits"),
            });
        }
        let list: Vec<String> = digits.chars().map(String::from).collect();
        let limit = self.timing.command + Duration::from_millis(150) * digits.len() as u32;
        self.command(&format!("AT+VTS={}", list.join(",")), limit)
            .await
            .map(|_| ())
            .map_err(|f| failed(&format!("AT+VTS answered {f:?}")))
    }
}

/// The one mapping from the result code that ended a call attempt to the reason it was disconnected.
/// `rang_out`: a data dial that ended with NO CARRIER after ringing for the whole S7 was not answered;
/// sooner, the number could not be reached.
fn failure_reason(f: Final, answering: bool, rang_out: bool) -> DisconnectReason {
    match f {
        Final::Busy => DisconnectReason::Busy,
        Final::NoDialTone => DisconnectReason::NoDialTone,
        Final::NoAnswer => DisconnectReason::NoAnswer,
        Final::NoCarrier if answering => DisconnectReason::Unavailable,
        Final::NoCarrier if rang_out => DisconnectReason::NoAnswer,
        Final::NoCarrier => DisconnectReason::Unreachable,
        _ => DisconnectReason::Unknown,
    }
}

fn failed(reason: &str) -> Error {
    Error::OperationFailed {
        reason: reason.to_owned(),
    }
}

fn wrong_state(state: CallState) -> Error {
    Error::InvalidCallState {
        state: state.kind(),
    }
}

/// Reads what the modem sent (end of stream is an error); never finishes while there is no stream.
async fn read_some(io: &mut Option<Halves>) -> io::Result<Vec<u8>> {
    let Some((rd, _)) = io.as_mut() else {
        return std::future::pending().await;
    };
    let mut buf = [0u8; 512];
    match rd.read(&mut buf).await? {
        0 => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed")),
        n => Ok(buf[..n].to_vec()),
    }
}

async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => sleep_until(d).await,
        None => std::future::pending().await,
    }
}
