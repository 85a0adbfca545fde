//! The simulated modem device: a Hayes/V.250 AT command interpreter attached to the simulated network.
//!
//! A [`SimModem`] serves one byte stream — the host side of the modem, what a serial port would carry.
//! Give it one end of an in-memory duplex ([`SimModem::attach`]), a pseudo-terminal, or a socket
//! ([`SimModem::serve`]). The modem behaves as the reference's test matrix says, byte for byte: echo,
//! verbose and numeric result codes, S-registers, dialling with its modifiers, ring cadence and caller
//! ID, auto-answer, `+++` with guard times, DTR handling, voice mode with `<DLE>` digit events.
//!
//! ```
//! use tapir_modem::{Network, SimModem};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let network = Network::new();
//! let (mut host, _modem) = SimModem::builder().attach(&network, "5551000").unwrap();
//! host.write_all(b"AT\r").await.unwrap();
//! let mut reply = [0u8; 9];
//! host.read_exact(&mut reply).await.unwrap();
//! assert_eq!(&reply, b"AT\r\r\nOK\r\n");
//! # }
//! ```

mod fsm;
pub mod parse;
pub mod profile;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::debug;

pub use fsm::Mode;

use crate::network::{LineOptions, Network, RING_PERIOD, Signal};
use fsm::Machine;

/// How a simulated modem identifies itself and the vendor choices it makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimModemConfig {
    /// `+GMI`, and the first word of `ATI4`.
    pub manufacturer: String,
    /// `+GMM`.
    pub model: String,
    /// `+GMR` and `ATI3` (the firmware revision).
    pub revision: String,
    /// `+GSN`.
    pub serial: String,
    /// `ATI0`.
    pub product_code: String,
    /// The rate reported in `CONNECT <rate>`.
    pub connect_rate: u32,
    /// A voice modem (`+FCLASS=8`, `+VTS`, `<DLE>` events).
    pub voice: bool,
    /// Time from answer to `CONNECT` (carrier training).
    pub training: Duration,
    /// Time between ring bursts.
    pub ring_period: Duration,
    /// The verbose text of result 6: `NO DIALTONE`, or `NO DIAL TONE` on some firmware.
    pub no_dialtone_text: String,
    /// The line the modem is plugged into.
    pub line: LineOptions,
}

impl Default for SimModemConfig {
    fn default() -> Self {
        Self {
            manufacturer: "tapir".into(),
            model: "SimModem 336 Voice".into(),
            revision: "tapir-simmodem 1.0".into(),
            serial: "0000001".into(),
            product_code: "336".into(),
            connect_rate: 33600,
            voice: true,
            training: Duration::from_secs(2),
            ring_period: RING_PERIOD,
            no_dialtone_text: "NO DIALTONE".into(),
            line: LineOptions::default(),
        }
    }
}

/// Why a modem could not be attached.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// Another line already has that number.
    #[error("number {0} is already attached to the network")]
    NumberInUse(String),
}

/// Builds simulated modems.
#[derive(Clone, Debug, Default)]
pub struct SimModem {
    config: SimModemConfig,
}

impl SimModem {
    /// A modem with the default identity: a 33.6k data/voice modem.
    pub fn builder() -> Self {
        Self::default()
    }
    /// Replaces the whole configuration.
    pub fn config(mut self, config: SimModemConfig) -> Self {
        self.config = config;
        self
    }
    /// A data-only modem (no `+FCLASS=8`).
    pub fn data_only(mut self) -> Self {
        self.config.voice = false;
        self
    }
    /// The line has no dial tone (a dead line).
    pub fn no_dial_tone(mut self) -> Self {
        self.config.line.dial_tone = false;
        self
    }

    /// Attaches a modem at `number` and returns the host's end of an in-memory serial line to it, and a
    /// handle for its control lines.
    pub fn attach(
        self,
        network: &Network,
        number: &str,
    ) -> Result<(DuplexStream, ModemHandle), AttachError> {
        let (host, device) = tokio::io::duplex(4096);
        let handle = self.serve(network, number, device)?;
        Ok((host, handle))
    }

    /// Attaches a modem at `number` as a value the caller drives itself (see [`Device`]).
    pub fn device(self, network: &Network, number: &str) -> Result<Device, AttachError> {
        let signals = network
            .attach(number, self.config.line)
            .ok_or_else(|| AttachError::NumberInUse(number.to_owned()))?;
        let machine = Machine::new(
            self.config,
            number.to_owned(),
            network.clone(),
            Instant::now(),
        );
        Ok(Device {
            machine,
            signals,
            held: VecDeque::new(),
        })
    }

    /// Attaches a modem at `number` that serves the host on `stream` (a pseudo-terminal, a socket …)
    /// until the stream ends.
    pub fn serve<S>(
        self,
        network: &Network,
        number: &str,
        stream: S,
    ) -> Result<ModemHandle, AttachError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let device = self.device(network, number)?;
        let (dtr_tx, dtr_rx) = watch::channel(true);
        let status = Arc::new(Mutex::new(Status {
            mode: Mode::Command,
            off_hook: false,
            dcd: false,
        }));
        let handle = ModemHandle {
            number: number.to_owned(),
            dtr: Arc::new(dtr_tx),
            status: status.clone(),
        };
        tokio::spawn(run(device, stream, dtr_rx, status));
        Ok(handle)
    }
}

/// A simulated modem as a value: nothing runs by itself. The host's bytes, DTR and the time go in
/// ([`input`](Self::input), [`set_dtr`](Self::set_dtr), [`timer`](Self::timer)); what the modem
/// sends the host comes out ([`take_output`](Self::take_output)); [`next_deadline`](Self::next_deadline)
/// says when it next needs the time. What the network tells it (a call ringing in, the far end
/// answering or hanging up, data) queues until [`network`](Self::network) hands it over;
/// [`network_ready`](Self::network_ready) waits for some.
///
/// [`SimModem::serve`] drives one from a byte stream; a test can drive one directly and read exactly
/// what the modem has sent by an instant, with no stream and no read time-outs.
pub struct Device {
    machine: Machine,
    signals: mpsc::UnboundedReceiver<Signal>,
    /// Signals taken off the channel by `network_ready`, not yet handed over.
    held: VecDeque<Signal>,
}

impl Device {
    /// The modem's number on the network.
    pub fn number(&self) -> &str {
        self.machine.number()
    }
    /// The host sent `bytes` at `now`.
    pub fn input(&mut self, now: Instant, bytes: &[u8]) {
        self.machine.input(now, bytes);
    }
    /// The host raised or lowered DTR at `now`.
    pub fn set_dtr(&mut self, now: Instant, high: bool) {
        self.machine.set_dtr(now, high);
    }
    /// Runs what is due at `now` (ring cadence, guard times, dialling steps, carrier time-outs).
    pub fn timer(&mut self, now: Instant) {
        self.machine.timer(now);
    }
    /// When the modem next needs [`timer`](Self::timer), if it has anything set.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.machine.next_deadline()
    }
    /// Hands the modem, at `now`, what the network has told it so far; whether there was anything.
    pub fn network(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(signal) = self
            .held
            .pop_front()
            .or_else(|| self.signals.try_recv().ok())
        {
            self.machine.signal(now, signal);
            any = true;
        }
        any
    }
    /// Waits until the network has something for the modem (then [`network`](Self::network) hands
    /// it over); false once the network has dropped the modem's line. Safe to cancel.
    pub async fn network_ready(&mut self) -> bool {
        if self.held.is_empty() {
            match self.signals.recv().await {
                Some(signal) => self.held.push_back(signal),
                None => return false,
            }
        }
        true
    }
    /// Everything the modem has sent the host since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        self.machine.take_output()
    }
    /// The modem's state.
    pub fn mode(&self) -> Mode {
        self.machine.mode()
    }
    /// Whether the modem is off hook.
    pub fn off_hook(&self) -> bool {
        self.machine.off_hook()
    }
    /// DCD as the host sees it.
    pub fn dcd(&self) -> bool {
        self.machine.dcd()
    }
}

impl Drop for Device {
    /// The modem is unplugged: it hangs up and leaves the network, freeing its number.
    fn drop(&mut self) {
        self.machine.detach();
    }
}

#[derive(Clone, Copy, Debug)]
struct Status {
    mode: Mode,
    off_hook: bool,
    dcd: bool,
}

/// The modem's control lines and status, as a host would see them on a serial port.
#[derive(Clone, Debug)]
pub struct ModemHandle {
    number: String,
    dtr: Arc<watch::Sender<bool>>,
    status: Arc<Mutex<Status>>,
}

impl ModemHandle {
    /// The modem's number on the network.
    pub fn number(&self) -> &str {
        &self.number
    }
    /// Raises or lowers DTR (Data Terminal Ready). What lowering it does depends on `&D`.
    pub fn set_dtr(&self, high: bool) {
        self.dtr.send_replace(high);
    }
    /// DCD (Data Carrier Detect): on while a carrier is up (always on with `&C0`).
    pub fn dcd(&self) -> bool {
        self.status().dcd
    }
    /// Whether the modem is off hook.
    pub fn off_hook(&self) -> bool {
        self.status().off_hook
    }
    /// The modem's state.
    pub fn mode(&self) -> Mode {
        self.status().mode
    }
    fn status(&self) -> Status {
        *self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn run<S>(
    mut device: Device,
    stream: S,
    mut dtr: watch::Receiver<bool>,
    status: Arc<Mutex<Status>>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = [0u8; 1024];
    let mut dtr_open = true;
    let mut network_open = true;
    loop {
        let out = device.take_output();
        if !out.is_empty() && (wr.write_all(&out).await.is_err() || wr.flush().await.is_err()) {
            break;
        }
        *status.lock().unwrap_or_else(PoisonError::into_inner) = Status {
            mode: device.mode(),
            off_hook: device.off_hook(),
            dcd: device.dcd(),
        };
        let deadline = device.next_deadline();
        tokio::select! {
            read = rd.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => device.input(Instant::now(), &buf[..n]),
            },
            ready = device.network_ready(), if network_open => {
                network_open = ready;
                device.network(Instant::now());
            }
            changed = dtr.changed(), if dtr_open => match changed {
                Ok(()) => {
                    let high = *dtr.borrow_and_update();
                    device.set_dtr(Instant::now(), high);
                }
                Err(_) => dtr_open = false,
            },
            () = sleep_until(deadline), if deadline.is_some() => device.timer(Instant::now()),
        }
    }
    debug!(number = %device.number(), "host side closed; modem detaches");
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d).await;
    }
}
