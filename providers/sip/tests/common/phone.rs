//! A scriptable SIP phone for tests, on the same SIP stack as tapir: it registers, rings, answers
//! (by itself, when told, or when tapir asks it to), holds, sends digits and hangs up on cue, and
//! records what it saw. Real phones (baresip) are used end to end; this one is for what a real
//! phone cannot be told to do at a chosen moment.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rsipstack::EndpointBuilder;
use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{Dialog, DialogState, DialogStateReceiver};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::dialog::registration::Registration;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode, Uri};
use rsipstack::transport::TransportLayer;
use rsipstack::transport::udp::UdpConnection;

/// How the phone answers calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answering {
    /// At once.
    Auto,
    /// Only when the test says so.
    Manual,
    /// At once when the INVITE asks it to (`Call-Info: answer-after=0`), else it rings.
    WhenAsked,
}

/// What the phone saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A call came in, from this user.
    Incoming(usize, String),
    /// A call is established.
    Established(usize),
    /// The other side re-INVITEd with this direction (`sendrecv`, `sendonly`, …).
    Reoffer(usize, String),
    /// A digit by INFO.
    Digit(usize, char),
    /// A call ended.
    Closed(usize),
}

struct Call {
    dialog: InviteDialog,
}

struct Inner {
    layer: Arc<DialogLayer>,
    calls: Mutex<Vec<Option<Call>>>,
    seen: Mutex<Vec<Seen>>,
    answering: Answering,
    port: u16,
    /// How it answers re-INVITEs: 200, or the status to refuse with (491, 488).
    reoffer_status: Mutex<Vec<u16>>,
    cancel: rsipstack::platform::CancellationToken,
}

/// A test phone on 127.0.0.1.
#[derive(Clone)]
pub struct Phone(Arc<Inner>);

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The phone's session description: audio on `port + 1000`, in `dir`.
pub fn sdp(port: u16, dir: &str) -> String {
    format!(
        "v=0\r\no=phone {port} 1 IN IP4 127.0.0.1\r\ns=phone\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a={dir}\r\n",
        port + 1000
    )
}

fn direction_of(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    for d in ["sendonly", "recvonly", "inactive", "sendrecv"] {
        if text.contains(&format!("a={d}")) {
            return d.into();
        }
    }
    "sendrecv".into()
}

fn answer_for(offer: &[u8]) -> &'static str {
    match direction_of(offer).as_str() {
        "sendonly" => "recvonly",
        "recvonly" => "sendonly",
        "inactive" => "inactive",
        _ => "sendrecv",
    }
}

impl Phone {
    /// A phone listening on `port`.
    pub async fn new(port: u16, answering: Answering) -> Self {
        let cancel = rsipstack::platform::CancellationToken::new();
        let transport = TransportLayer::new(cancel.child_token());
        let udp = UdpConnection::create_connection(
            SocketAddr::from(([127, 0, 0, 1], port)),
            None,
            Some(cancel.child_token()),
        )
        .await
        .expect("the phone's port is free");
        transport.add_transport(udp.into());
        let endpoint = EndpointBuilder::new()
            .with_user_agent("tapir-test-phone")
            .with_cancel_token(cancel.clone())
            .with_transport_layer(transport)
            .build();
        let mut incoming = endpoint.incoming_transactions().expect("incoming");
        let layer = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let inner = Arc::new(Inner {
            layer: layer.clone(),
            calls: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            answering,
            port,
            reoffer_status: Mutex::new(Vec::new()),
            cancel,
        });
        let serving = endpoint.inner.clone();
        tokio::spawn(async move {
            let _ = serving.serve().await;
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while let Some(mut tx) = incoming.recv().await {
                let Some(inner) = weak.upgrade() else { return };
                let phone = Phone(inner);
                let in_dialog = tx
                    .original
                    .to_header()
                    .ok()
                    .and_then(|t| t.tag().ok().flatten())
                    .is_some();
                if in_dialog {
                    if let Some(Dialog::Invite(mut d)) = phone.0.layer.match_dialog(&tx) {
                        tokio::spawn(async move {
                            // As tapir's stack does: a re-INVITE right behind the last one's ACK
                            // waits for the dialog to be confirmed again (rsipstack would take it
                            // for a first INVITE and never answer it).
                            if tx.original.method == Method::Invite {
                                for _ in 0..100 {
                                    let s = d.state();
                                    if s.is_confirmed() || s.is_terminated() {
                                        break;
                                    }
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                }
                            }
                            let _ = d.handle(&mut tx).await;
                        });
                    } else {
                        tokio::spawn(async move {
                            let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
                        });
                    }
                    continue;
                }
                match tx.original.method {
                    Method::Invite => phone.incoming(tx),
                    _ => {
                        tokio::spawn(async move {
                            let _ = tx.reply(StatusCode::OK).await;
                        });
                    }
                }
            }
        });
        Phone(inner)
    }

    pub fn port(&self) -> u16 {
        self.0.port
    }

    fn contact(&self, user: &str) -> Uri {
        Uri::try_from(format!("sip:{user}@127.0.0.1:{}", self.0.port).as_str()).expect("a URI")
    }

    fn record(&self, s: Seen) {
        self.0.seen.lock().unwrap().push(s);
    }

    /// Everything seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.0.seen.lock().unwrap().clone()
    }

    /// The next re-INVITEs are refused with these statuses, in order, before 200s again.
    pub fn refuse_reoffers(&self, statuses: &[u16]) {
        *self.0.reoffer_status.lock().unwrap() = statuses.to_vec();
    }

    fn add_call(&self, dialog: InviteDialog) -> usize {
        let mut calls = self.0.calls.lock().unwrap();
        calls.push(Some(Call { dialog }));
        calls.len() - 1
    }

    fn dialog(&self, call: usize) -> Option<InviteDialog> {
        self.0
            .calls
            .lock()
            .unwrap()
            .get(call)
            .and_then(|c| c.as_ref().map(|c| c.dialog.clone()))
    }

    fn incoming(&self, mut tx: rsipstack::transaction::transaction::Transaction) {
        let (sender, states) = self.0.layer.new_dialog_state_channel();
        let Ok(dialog) = self.0.layer.get_or_create_server_invite(
            &tx,
            sender,
            None,
            Some(self.contact("phone")),
        ) else {
            return;
        };
        let asked = tx.original.headers.iter().any(|h| {
            h.to_string()
                .to_ascii_lowercase()
                .contains("answer-after=0")
        });
        let offer = tx.original.body.clone();
        let from = tx
            .original
            .from_header()
            .ok()
            .and_then(|f| f.uri().ok())
            .and_then(|u| u.auth.map(|a| a.user))
            .unwrap_or_default();
        let call = self.add_call(dialog.clone());
        self.record(Seen::Incoming(call, from));
        self.watch(call, states);
        let mut driver = dialog.clone();
        tokio::spawn(async move {
            let _ = driver.handle(&mut tx).await;
        });
        let _ = dialog.ringing(None, None);
        let now = match self.0.answering {
            Answering::Auto => true,
            Answering::Manual => false,
            Answering::WhenAsked => asked,
        };
        if now {
            let dir = answer_for(&offer);
            let _ = dialog.accept(
                Some(vec![Header::ContentType("application/sdp".into())]),
                Some(sdp(self.0.port, dir).into_bytes()),
            );
        }
    }

    fn watch(&self, call: usize, mut states: DialogStateReceiver) {
        let phone = self.clone();
        tokio::spawn(async move {
            while let Some(state) = states.recv().await {
                match state {
                    DialogState::Confirmed(..) => {
                        let first = !phone.seen().contains(&Seen::Established(call));
                        if first {
                            phone.record(Seen::Established(call));
                        }
                    }
                    DialogState::Updated(_, req, handle) => {
                        let dir = direction_of(&req.body);
                        phone.record(Seen::Reoffer(call, dir));
                        let refuse = {
                            let mut r = phone.0.reoffer_status.lock().unwrap();
                            (!r.is_empty()).then(|| r.remove(0))
                        };
                        let port = phone.0.port;
                        tokio::spawn(async move {
                            match refuse {
                                Some(status) => {
                                    let _ = handle.reply(StatusCode::from(status)).await;
                                }
                                None => {
                                    let _ = handle
                                        .respond(
                                            StatusCode::OK,
                                            Some(vec![Header::ContentType(
                                                "application/sdp".into(),
                                            )]),
                                            Some(sdp(port, answer_for(&req.body)).into_bytes()),
                                        )
                                        .await;
                                }
                            }
                        });
                    }
                    DialogState::Info(_, req, handle) => {
                        let text = String::from_utf8_lossy(&req.body).to_string();
                        if let Some(d) = text
                            .lines()
                            .find_map(|l| l.strip_prefix("Signal="))
                            .and_then(|v| v.trim().chars().next())
                        {
                            phone.record(Seen::Digit(call, d));
                        }
                        tokio::spawn(async move {
                            let _ = handle.reply(StatusCode::OK).await;
                        });
                    }
                    DialogState::Options(_, _, handle) => {
                        tokio::spawn(async move {
                            let _ = handle.reply(StatusCode::OK).await;
                        });
                    }
                    DialogState::Terminated(id, _) => {
                        phone.0.layer.remove_dialog(&id);
                        phone.record(Seen::Closed(call));
                        if let Some(c) = phone.0.calls.lock().unwrap().get_mut(call) {
                            *c = None;
                        }
                        break;
                    }
                    _ => {}
                }
            }
        });
    }

    /// Registers as `user` with tapir at `registrar`; the status of the final answer.
    pub async fn register(
        &self,
        registrar: SocketAddr,
        user: &str,
        password: &str,
        expires: u32,
    ) -> u16 {
        let mut r = Registration::new(
            self.0.layer.endpoint.clone(),
            Some(Credential {
                username: user.into(),
                password: password.into(),
                realm: None,
                auth_username: None,
            }),
        );
        let server = Uri::try_from(format!("sip:{registrar}").as_str()).expect("a URI");
        match r.register(server, Some(expires)).await {
            Ok(resp) => u16::from(resp.status_code),
            Err(_) => 0,
        }
    }

    /// Calls `to` through tapir as line `user`; returns the call once the INVITE is out.
    pub async fn dial(&self, tapir: SocketAddr, user: &str, password: &str, to: &str) -> usize {
        let option = InviteOption {
            caller: self.contact(user),
            callee: Uri::try_from(format!("sip:{to}@{tapir}").as_str()).expect("a URI"),
            destination: Some(tapir.into()),
            content_type: Some("application/sdp".into()),
            offer: Some(sdp(self.0.port, "sendrecv").into_bytes()),
            contact: self.contact(user),
            credential: Some(Credential {
                username: user.into(),
                password: password.into(),
                realm: None,
                auth_username: None,
            }),
            ..Default::default()
        };
        let (sender, states) = self.0.layer.new_dialog_state_channel();
        let (dialog, _done) = self
            .0
            .layer
            .do_invite_async(option, sender)
            .expect("the INVITE goes out");
        let call = self.add_call(dialog);
        self.watch(call, states);
        call
    }

    /// Answers a ringing call.
    pub fn answer(&self, call: usize) {
        if let Some(d) = self.dialog(call) {
            let _ = d.accept(
                Some(vec![Header::ContentType("application/sdp".into())]),
                Some(sdp(self.0.port, "sendrecv").into_bytes()),
            );
        }
    }

    /// Hangs up (BYE, or CANCEL for a call still ringing out; a ringing call in is refused 486).
    pub async fn hang_up(&self, call: usize) {
        if let Some(d) = self.dialog(call) {
            if d.role() == rsipstack::transaction::key::TransactionRole::Server
                && !d.state().is_confirmed()
            {
                let _ = d.reject(Some(StatusCode::BusyHere), None);
            } else {
                let _ = d.hangup().await;
            }
        }
    }

    /// Holds the call from the phone (re-INVITE `sendonly`); the status of the answer.
    pub async fn hold(&self, call: usize, dir: &str) -> u16 {
        let Some(d) = self.dialog(call) else { return 0 };
        match d
            .reinvite(
                Some(vec![Header::ContentType("application/sdp".into())]),
                Some(sdp(self.0.port, dir).into_bytes()),
            )
            .await
        {
            Ok(Some(r)) => u16::from(r.status_code),
            _ => 0,
        }
    }

    /// Sends a digit by INFO.
    pub async fn digit(&self, call: usize, digit: char) {
        if let Some(d) = self.dialog(call) {
            let _ = d
                .info(
                    Some(vec![Header::ContentType("application/dtmf-relay".into())]),
                    Some(format!("Signal={digit}\r\nDuration=160\r\n").into_bytes()),
                )
                .await;
        }
    }

    /// The calls still up.
    pub fn live_calls(&self) -> Vec<usize> {
        self.0
            .calls
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|_| i))
            .collect()
    }

    /// Waits (up to `secs`) until the phone has seen something that `f` picks.
    pub async fn wait<T>(&self, secs: u64, what: &str, f: impl Fn(&Seen) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(t) = self.seen().iter().find_map(&f) {
                return t;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "the phone on {} never saw {what}: {:?}",
                    self.0.port,
                    self.seen()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
