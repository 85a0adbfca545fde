//! [`SipProvider`]: the tapir provider. One task owns the [`Switch`] and the [`Stack`]; provider
//! methods send it their operation and wait for the result, which the switch gives once the
//! operation has taken effect (a hold once the re-INVITEs are answered).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use tapir_core::caps::LineCaps;
use tapir_core::dial::DialString;
use tapir_core::params::{
    DigitMode, Forwarding, MakeCall, Origin, ParkMode, PickupTarget, RequestId, TransferMode,
};
use tapir_core::{AddressId, CallLegId, Error, LineId};
use tapir_provider::{EventSink, LineDevice, Provider};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::settings::SipSettings;
use crate::stack::{self, Stack, StackMsg};
use crate::switch::{Command, Done, OpId, Output, Switch};

/// A line's registrations, as [`SipProvider::registrations`] reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The line's number.
    pub number: String,
    /// The contacts its phones can be reached at (a fixed contact included).
    pub contacts: Vec<String>,
}

/// What the provider's task is asked.
enum Msg {
    Op(Command, oneshot::Sender<Result<Done, Error>>),
    Registrations(oneshot::Sender<Vec<Registration>>),
    Devices(LineId, oneshot::Sender<Vec<LineDevice>>),
    Quiet(oneshot::Sender<bool>),
    Stop(oneshot::Sender<()>),
}

struct Running {
    tx: mpsc::UnboundedSender<Msg>,
    task: JoinHandle<()>,
}

/// tapir as the registrar and back-to-back user agent of SIP phones and a trunk.
///
/// ```no_run
/// use tapir_sip::{SipLine, SipProvider, SipSettings};
///
/// let settings = SipSettings::new("127.0.0.1:5060".parse().unwrap())
///     .line(SipLine::registered("2001", "Alice", "alice-secret"))
///     .line(SipLine::registered("2002", "Bob", "bob-secret"))
///     .trunk("sip:127.0.0.1:5080");
/// let provider = SipProvider::new(settings).expect("good settings");
/// ```
pub struct SipProvider {
    settings: SipSettings,
    running: Mutex<Option<Running>>,
}

impl SipProvider {
    /// A provider for `settings`; a bad value is refused here, naming its key.
    pub fn new(settings: SipSettings) -> Result<Self, crate::SettingsError> {
        settings.check()?;
        Ok(Self {
            settings,
            running: Mutex::new(None),
        })
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &SipSettings {
        &self.settings
    }

    fn sender(&self) -> Result<mpsc::UnboundedSender<Msg>, Error> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|r| r.tx.clone())
            .ok_or_else(|| Error::OperationFailed {
                reason: "the SIP provider is not running".into(),
            })
    }

    async fn op(&self, cmd: Command) -> Result<Done, Error> {
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(Msg::Op(cmd, reply))
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    async fn unit(&self, cmd: Command) -> Result<(), Error> {
        self.op(cmd).await.map(|_| ())
    }

    /// Each line's registered contacts.
    pub async fn registrations(&self) -> Vec<Registration> {
        let (reply, rx) = oneshot::channel();
        match self.sender() {
            Ok(tx) if tx.send(Msg::Registrations(reply)).is_ok() => rx.await.unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Whether the provider holds no call, dialog or transaction (for leak checks in tests).
    pub async fn is_quiet(&self) -> bool {
        let (reply, rx) = oneshot::channel();
        match self.sender() {
            Ok(tx) if tx.send(Msg::Quiet(reply)).is_ok() => rx.await.unwrap_or(false),
            _ => true,
        }
    }
}

fn leg_of(done: Done) -> Result<CallLegId, Error> {
    match done {
        Done::Leg(leg) => Ok(leg),
        _ => Err(Error::OperationFailed {
            reason: "no call was made".into(),
        }),
    }
}

fn stopped() -> Error {
    Error::OperationFailed {
        reason: "the SIP provider stopped".into(),
    }
}

#[async_trait]
impl Provider for SipProvider {
    fn name(&self) -> &str {
        &self.settings.name
    }

    async fn start(&self, sink: EventSink) -> Result<Vec<LineCaps>, Error> {
        if self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
        {
            return Err(Error::OperationFailed {
                reason: "the SIP provider is already running".into(),
            });
        }
        let now = Instant::now().into_std();
        let mut switch = Switch::new(&self.settings, now)?;
        let caps = switch.caps();
        let (stack, from_stack) = stack::bind(self.settings.listen).await?;
        // Lines with no phone are out of service from the start; the engine takes that while the
        // provider starts.
        switch.start(now);
        while let Some(out) = switch.poll() {
            if let Output::Report(e) = out {
                sink.send(e);
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(switch, stack, from_stack, rx, sink));
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) = Some(Running { tx, task });
        Ok(caps)
    }

    async fn line_devices(&self, line: LineId) -> Result<Vec<LineDevice>, Error> {
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(Msg::Devices(line, reply))
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())
    }

    async fn stop(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(r) = running {
            let (ack, done) = oneshot::channel();
            if r.tx.send(Msg::Stop(ack)).is_ok() {
                let _ = done.await;
            }
            let _ = r.task.await;
        }
    }

    async fn make_call(&self, request: MakeCall) -> Result<CallLegId, Error> {
        leg_of(self.op(Command::MakeCall(request)).await?)
    }

    async fn dial(&self, leg: CallLegId, digits: &DialString) -> Result<(), Error> {
        self.unit(Command::Dial(leg, digits.clone())).await
    }

    async fn accept(&self, leg: CallLegId) -> Result<(), Error> {
        self.unit(Command::Accept(leg)).await
    }

    async fn answer(&self, leg: CallLegId) -> Result<(), Error> {
        self.unit(Command::Answer(leg)).await
    }

    async fn reject(&self, leg: CallLegId) -> Result<(), Error> {
        self.unit(Command::Reject(leg)).await
    }

    async fn drop_call(&self, leg: CallLegId) -> Result<(), Error> {
        self.unit(Command::Drop(leg)).await
    }

    async fn hold(&self, leg: CallLegId) -> Result<(), Error> {
        self.unit(Command::Hold(leg)).await
    }

    async fn unhold(&self, leg: CallLegId) -> Result<(), Error> {
        self.unit(Command::Unhold(leg)).await
    }

    async fn generate_digits(
        &self,
        leg: CallLegId,
        digits: &str,
        mode: DigitMode,
    ) -> Result<(), Error> {
        self.unit(Command::GenerateDigits(leg, digits.to_owned(), mode))
            .await
    }

    async fn monitor_digits(&self, leg: CallLegId, mode: Option<DigitMode>) -> Result<(), Error> {
        self.unit(Command::MonitorDigits(leg, mode.is_some())).await
    }

    async fn swap_hold(&self, active: CallLegId, held: CallLegId) -> Result<(), Error> {
        self.unit(Command::SwapHold(active, held)).await
    }

    async fn blind_transfer(&self, leg: CallLegId, destination: &DialString) -> Result<(), Error> {
        self.unit(Command::BlindTransfer(leg, destination.clone()))
            .await
    }

    async fn redirect(&self, leg: CallLegId, destination: &DialString) -> Result<(), Error> {
        self.unit(Command::Redirect(leg, destination.clone())).await
    }

    async fn setup_transfer(&self, leg: CallLegId, request: RequestId) -> Result<CallLegId, Error> {
        leg_of(self.op(Command::SetupTransfer(leg, request)).await?)
    }

    async fn complete_transfer(
        &self,
        held: CallLegId,
        consultation: CallLegId,
        mode: TransferMode,
        _request: RequestId,
    ) -> Result<Option<CallLegId>, Error> {
        self.unit(Command::CompleteTransfer(held, consultation, mode))
            .await
            .map(|()| None)
    }

    async fn park(&self, leg: CallLegId, mode: &ParkMode) -> Result<String, Error> {
        match self.op(Command::Park(leg, mode.clone())).await? {
            Done::Orbit(o) => Ok(o),
            _ => Err(Error::OperationFailed {
                reason: "the call was not parked".into(),
            }),
        }
    }

    async fn unpark(&self, origin: Origin, orbit: &str) -> Result<CallLegId, Error> {
        leg_of(self.op(Command::Unpark(origin, orbit.to_owned())).await?)
    }

    async fn pickup(&self, origin: Origin, target: &PickupTarget) -> Result<CallLegId, Error> {
        leg_of(self.op(Command::Pickup(origin, target.clone())).await?)
    }

    async fn forward(
        &self,
        line: LineId,
        address: AddressId,
        forwarding: &Forwarding,
    ) -> Result<(), Error> {
        self.unit(Command::Forward(line, address, forwarding.clone()))
            .await
    }
}

/// The provider's task.
async fn run(
    mut switch: Switch,
    mut stack: Stack,
    mut from_stack: mpsc::UnboundedReceiver<StackMsg>,
    mut requests: mpsc::UnboundedReceiver<Msg>,
    sink: EventSink,
) {
    let mut replies: HashMap<OpId, oneshot::Sender<Result<Done, Error>>> = HashMap::new();
    let mut next_op = 1u64;
    let stop_ack = loop {
        flush(&mut switch, &mut stack, &sink, &mut replies);
        let deadline = switch.next_deadline().map(Instant::from_std);
        tokio::select! {
            biased;
            msg = requests.recv() => match msg {
                Some(Msg::Op(cmd, reply)) => {
                    let op = OpId(next_op);
                    next_op += 1;
                    replies.insert(op, reply);
                    switch.command(Instant::now().into_std(), op, cmd);
                }
                Some(Msg::Registrations(reply)) => {
                    let regs = switch
                        .registrations()
                        .into_iter()
                        .map(|(number, contacts)| Registration { number, contacts })
                        .collect();
                    let _ = reply.send(regs);
                }
                Some(Msg::Devices(line, reply)) => {
                    let _ = reply.send(switch.devices(Instant::now().into_std(), line));
                }
                Some(Msg::Quiet(reply)) => {
                    let _ = reply.send(switch.is_quiet() && stack.is_quiet());
                }
                Some(Msg::Stop(ack)) => break Some(ack),
                None => break None,
            },
            msg = from_stack.recv() => match msg {
                Some(msg) => {
                    if let Some(event) = stack.receive(msg) {
                        switch.sip_event(Instant::now().into_std(), event);
                    }
                }
                None => break None,
            },
            _ = sleep_until(deadline), if deadline.is_some() => {
                switch.timeout(Instant::now().into_std());
            }
        }
    };
    switch.stop();
    flush_sip(&mut switch, &mut stack, &mut replies);
    stack.shutdown().await;
    if let Some(ack) = stop_ack {
        let _ = ack.send(());
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Carries out everything the switch has queued: SIP to the stack, reports to the engine, results
/// to the waiting operations, in the order the switch queued them.
fn flush(
    switch: &mut Switch,
    stack: &mut Stack,
    sink: &EventSink,
    replies: &mut HashMap<OpId, oneshot::Sender<Result<Done, Error>>>,
) {
    while let Some(out) = switch.poll() {
        match out {
            Output::Sip(a) => stack.perform(a),
            Output::Report(e) => sink.send(e),
            Output::Done(op, r) => {
                if let Some(reply) = replies.remove(&op) {
                    let _ = reply.send(r);
                }
            }
        }
    }
}

/// As [`flush`] after the switch stopped: nothing more is reported.
fn flush_sip(
    switch: &mut Switch,
    stack: &mut Stack,
    replies: &mut HashMap<OpId, oneshot::Sender<Result<Done, Error>>>,
) {
    while let Some(out) = switch.poll() {
        match out {
            Output::Sip(a) => stack.perform(a),
            Output::Report(_) => {}
            Output::Done(op, r) => {
                if let Some(reply) = replies.remove(&op) {
                    let _ = reply.send(r);
                }
            }
        }
    }
}
