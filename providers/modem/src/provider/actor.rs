//! The provider's one task: it owns the modem's stream and the commands in flight, and drives the
//! line's call logic (`crate::host::line::Line`) with what the modem says, the requests and the clock.
//!
//! A command waits for its final result code while still reading rings and caller ID. A data dial or
//! `ATA` is not waited for: its result code arrives as an unsolicited final and finishes it, so a drop
//! during dialling can abort it. After every step the line's events go to the engine's sink, before
//! any reply: a call is reported before the request that made it returns.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tapir_core::dial::DialString;
use tapir_core::media::MediaModes;
use tapir_core::params::MakeCall;
use tapir_core::state::DisconnectReason;
use tapir_core::{CallLegId, Error};
use tapir_provider::{EventSink, LineEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep, sleep_until};
use tracing::{debug, info, warn};

use super::caps::line_caps;
use super::port::{Connector, DtrControl, Halves};
use super::status::LineStatus;
use super::timing::ModemTiming;
use crate::host::line::{CARRIER_WAIT, Dialled, HangUp, LINE, Line, failed};
use crate::host::{Final, Reader, Response};

pub(super) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// What a provider method asks the task.
pub(super) enum Request {
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

/// What a command waits for.
struct Pending {
    deadline: Instant,
    info: Vec<String>,
    done: oneshot::Sender<Result<Vec<String>, Final>>,
}

pub(super) struct Actor {
    number: String,
    connector: Connector,
    dtr: Option<DtrControl>,
    timing: ModemTiming,
    sink: EventSink,
    status: Arc<Mutex<LineStatus>>,
    io: Option<Halves>,
    reader: Reader,
    /// Commands written and waiting for their final result code, oldest first.
    pending: VecDeque<Pending>,
    /// The call logic.
    line: Line,
    /// An answer request waiting for its `ATA`'s result code.
    answering: Option<Reply<()>>,
    retry_at: Option<Instant>,
}

enum Wake {
    Request(Option<Request>),
    Read(io::Result<Vec<u8>>),
    Timer,
}

impl Actor {
    pub(super) fn new(
        number: String,
        connector: Connector,
        dtr: Option<DtrControl>,
        timing: ModemTiming,
        incoming: MediaModes,
        sink: EventSink,
        status: Arc<Mutex<LineStatus>>,
    ) -> Self {
        Self {
            line: Line::new(
                number.clone(),
                timing.ring_gone,
                timing.call_setup,
                incoming,
            ),
            number,
            connector,
            dtr,
            timing,
            sink,
            status,
            io: None,
            reader: Reader::default(),
            pending: VecDeque::new(),
            answering: None,
            retry_at: None,
        }
    }

    pub(super) async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<Request>,
        ready: oneshot::Sender<bool>,
    ) {
        self.bring_up().await;
        let _ = ready.send(self.line.voice_capable());
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
            self.flush();
        }
        self.shut_down().await;
    }

    /// Sends the line's events to the engine, and an attempt's outcome to the answer waiting for
    /// it.
    fn flush(&mut self) {
        for event in self.line.take_events() {
            self.sink.send(event);
        }
        if let Some(outcome) = self.line.take_attempt_outcome() {
            if let Some(reply) = self.answering.take() {
                let _ = reply.send(outcome);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.pending.front().map(|p| p.deadline),
            self.line.next_deadline(),
            self.retry_at,
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
        // What happened so far reaches the engine before the modem is told more.
        self.flush();
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
        let (done, mut rx) = oneshot::channel();
        self.pending.push_back(Pending {
            deadline: Instant::now() + limit,
            info: Vec::new(),
            done,
        });
        if !bytes.is_empty() && !self.write(bytes).await {
            self.pending.pop_back();
            return Err(Final::Error);
        }
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
            self.flush();
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
        self.line.end_call(DisconnectReason::OutOfOrder);
        self.flush();
        self.out_of_service(why.to_owned());
    }

    // ---- bringing the modem up ----

    async fn bring_up(&mut self) {
        self.retry_at = None;
        for attempt in 1..=2 {
            match self.initialise().await {
                Ok(()) => {
                    info!(number = %self.number, voice = self.line.voice_capable(), "modem in service");
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
        let voice = match self.command("AT+FCLASS=?", t).await {
            Ok(lines) => lines
                .iter()
                .any(|l| l.split(',').any(|c| c.trim().starts_with('8'))),
            Err(_) => false,
        };
        let caller_id =
            self.command("AT+VCID=1", t).await.is_ok() || self.command("AT#CID=1", t).await.is_ok();
        self.line.modem_found(voice, caller_id);
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
                    LineEvent::CapsChanged(Box::new(line_caps(
                        &self.number,
                        self.line.voice_capable(),
                    ))),
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
        if self.line.has_call() && self.io.is_some() {
            let how = self.line.hang_up();
            self.hang_up(how).await;
        }
        self.line.end_call(DisconnectReason::Normal);
        self.flush();
        if let Some((_, mut wr)) = self.io.take() {
            let _ = wr.shutdown().await;
        }
        self.set_status(LineStatus::Stopped);
    }

    // ---- what the modem says ----

    fn bytes(&mut self, bytes: &[u8]) {
        let now = Instant::now();
        for response in self.reader.feed(bytes) {
            self.response(now, response);
        }
        self.line.read_done();
    }

    fn response(&mut self, now: Instant, response: Response) {
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
                    self.line.unsolicited_final(now, f);
                }
            }
            Response::Info(text) => {
                // Information lines belong to the command being answered.
                if let Some(p) = self.pending.front_mut() {
                    p.info.push(text);
                }
            }
            Response::Ring => self.line.ring(now),
            Response::CallerId(tag, value) => self.line.caller_id_item(&tag, &value),
            Response::Dle(code) => self.line.dle(code),
        }
    }

    async fn timers(&mut self) {
        let now = Instant::now();
        self.expire_pending();
        if self.line.timer(now) {
            // Any byte aborts the call attempt; NO CARRIER follows.
            self.flush();
            let _ = self.exchange(b"\r", self.timing.command).await;
        }
        if self.retry_at.is_some_and(|d| d <= now) {
            self.bring_up().await;
        }
    }

    // ---- requests ----

    /// Handles one request; false once the provider has stopped.
    async fn request(&mut self, req: Request) -> bool {
        match req {
            Request::MakeCall(mc, reply) => {
                let r = self.make_call(mc).await;
                self.reply(reply, r);
            }
            Request::Dial(leg, digits, reply) => {
                let r = match self.line.dial(leg) {
                    Ok(()) => {
                        self.send_dial(&digits).await;
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                self.reply(reply, r);
            }
            Request::Accept(leg, reply) => {
                let r = self.line.accept(leg);
                self.reply(reply, r);
            }
            Request::Answer(leg, reply) => self.answer(leg, reply).await,
            Request::Drop(leg, reply) => {
                let r = self.drop_call(leg).await;
                self.reply(reply, r);
            }
            Request::Reject(leg, reply) => {
                let r = match self.line.rejectable(leg) {
                    Ok(()) => self.drop_call(leg).await,
                    Err(e) => Err(e),
                };
                self.reply(reply, r);
            }
            Request::Digits(leg, digits, reply) => {
                let r = self.digits(leg, &digits).await;
                self.reply(reply, r);
            }
            Request::Monitor(leg, on, reply) => {
                let r = self.line.monitor(leg, on);
                self.reply(reply, r);
            }
            Request::Probe(reply) => {
                let r = self.probe().await;
                self.reply(reply, r);
            }
            Request::Stop(done) => {
                self.shut_down().await;
                let _ = done.send(());
                return false;
            }
        }
        true
    }

    /// Answers a request once what it did has been reported.
    fn reply<T>(&mut self, reply: Reply<T>, result: Result<T, Error>) {
        self.flush();
        let _ = reply.send(result);
    }

    async fn set_class(&mut self, voice: bool) -> Result<(), Error> {
        if !self.line.voice_capable() {
            return Ok(());
        }
        let cmd = if voice { "AT+FCLASS=8" } else { "AT+FCLASS=0" };
        self.command(cmd, self.timing.command)
            .await
            .map(|_| ())
            .map_err(|f| failed(&format!("{cmd} answered {f:?}")))
    }

    async fn make_call(&mut self, mc: MakeCall) -> Result<CallLegId, Error> {
        self.line.usable(self.in_service())?;
        let voice = self.line.voice_for(mc.media_mode)?;
        self.set_class(voice).await?;
        let Some(destination) = mc.destination else {
            // Off hook with dial tone, for a later dial.
            self.command("ATD;", self.timing.call_setup)
                .await
                .map_err(|f| failed(&format!("going off hook answered {f:?}")))?;
            return Ok(self.line.place(mc.request, None, mc.media_mode, voice));
        };
        let leg = self
            .line
            .place(mc.request, Some(&destination), mc.media_mode, voice);
        self.send_dial(&destination).await;
        Ok(leg)
    }

    /// Dials on the call. Partial and voice dials end with `;` and wait for OK; a complete data dial
    /// runs on, and its result code (CONNECT, BUSY …) arrives later.
    async fn send_dial(&mut self, d: &DialString) {
        let partial = d.is_partial();
        let text = format!("ATD{}", d.dialable());
        if self.line.dial_waits(partial) {
            let result = match self
                .command(&format!("{text};"), self.timing.call_setup)
                .await
            {
                Ok(_) => Dialled::Ok,
                Err(f) => Dialled::Failed(f),
            };
            self.line.dialled(partial, result);
            return;
        }
        if self.write(format!("{text}\r").as_bytes()).await {
            self.line.data_dial_sent(Instant::now());
        }
    }

    async fn answer(&mut self, leg: CallLegId, reply: Reply<()>) {
        let voice = match self.line.answer(leg) {
            Ok(voice) => voice,
            Err(e) => return self.reply(reply, Err(e)),
        };
        if let Err(e) = self.set_class(voice).await {
            return self.reply(reply, Err(e));
        }
        if voice {
            let r = match self.command("AT+VLS=1", self.timing.command).await {
                Ok(_) => {
                    self.line.voice_answered();
                    Ok(())
                }
                Err(f) => Err(failed(&format!("AT+VLS=1 answered {f:?}"))),
            };
            return self.reply(reply, r);
        }
        if self.write(b"ATA\r").await {
            self.line.data_answer_sent(Instant::now());
            // Finished by the result code (or a drop, or the provider giving up).
            self.answering = Some(reply);
        } else {
            self.reply(reply, Err(failed("the modem's stream closed")));
        }
    }

    async fn drop_call(&mut self, leg: CallLegId) -> Result<(), Error> {
        let how = self.line.drop_call(Instant::now(), leg)?;
        self.hang_up(how).await;
        self.line.end_call(DisconnectReason::Normal);
        Ok(())
    }

    /// Puts the modem on hook the way the line says.
    async fn hang_up(&mut self, how: HangUp) {
        self.flush();
        let t = self.timing.command;
        match how {
            HangUp::Nothing => {}
            HangUp::Abort => {
                let _ = self.exchange(b"\r", t).await;
            }
            HangUp::Escape => {
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
            HangUp::Ath => {
                let _ = self.command("ATH", t).await;
            }
        }
    }

    async fn digits(&mut self, leg: CallLegId, digits: &str) -> Result<(), Error> {
        self.line.digits(leg, digits)?;
        let list: Vec<String> = digits.chars().map(String::from).collect();
        let limit = self.timing.command + Duration::from_millis(150) * digits.len() as u32;
        self.command(&format!("AT+VTS={}", list.join(",")), limit)
            .await
            .map(|_| ())
            .map_err(|f| failed(&format!("AT+VTS answered {f:?}")))
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
