//! The edge where SIP meets the switch: rsipstack's transport, transactions and dialogs, turned into
//! [`SipEvent`]s, and the switch's [`SipAction`]s carried out with them. Nothing of rsipstack leaves
//! this module.
//!
//! rsipstack drives each transaction and dialog from tasks of its own; every dialog reports its state
//! changes on one shared channel to the provider's task, which owns this [`Stack`] (and the switch),
//! is the only one to change either, and files each change under the switch's channel by the
//! dialog's Call-ID and local tag.
//! In-dialog requests (BYE, re-INVITE, INFO) are matched to their dialog right where they arrive and
//! come back as that dialog's state changes; requests that start something (REGISTER, INVITE) come to
//! the provider's task as they are.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rsipstack::EndpointBuilder;
use rsipstack::dialog::dialog::{
    Dialog, DialogState, DialogStateSender, TerminatedReason, TransactionHandle,
};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::platform::CancellationToken;
use rsipstack::sip::headers::typed::Tokenize;
use rsipstack::sip::headers::typed::tokenizers::AuthTokenizer;
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Header, Method, Param, Request, StatusCode, Transport, Uri};
use rsipstack::transaction::endpoint::EndpointInner;
use rsipstack::transaction::transaction::{Transaction, TransactionEvent};
use rsipstack::transport::connection::SipConnection;
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, TransportLayer};
use tapir_core::Error;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::channel::ChannelId;
use crate::digest::DigestResponse;
use crate::registrar::{Contacts, Register};
use crate::switch::{Invite, OpId, Party, SipAction, SipEvent, TxId};

/// What reaches the provider's task from the SIP side.
pub(crate) enum StackMsg {
    /// A request that starts something (REGISTER, INVITE).
    Request(Box<Transaction>),
    /// A dialog's state changed (every dialog reports on one channel).
    Dialog(DialogState),
    /// Something the stack did on the switch's behalf finished.
    Event(SipEvent),
}

/// A transaction waiting for the switch's answer.
enum Pending {
    /// A REGISTER or INVITE.
    Request(Box<Transaction>),
    /// A re-INVITE inside a dialog.
    Reoffer(TransactionHandle),
    /// A REFER inside the dialog of a channel.
    Refer(TransactionHandle, ChannelId),
}

struct Chan {
    dialog: InviteDialog,
    outbound: bool,
    answered: bool,
    /// The last of the dialog's messages that must leave in order (a NOTIFY, then a BYE): the next
    /// waits for it.
    tail: Option<tokio::task::JoinHandle<()>>,
    /// A REFER's response is on its way: what must follow it (its NOTIFY, a BYE) waits until the
    /// dialog is confirmed again, which rsipstack reports once the response is sent.
    after_refer: Option<Vec<Job>>,
}

type Job = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl Chan {
    /// Queues `job` in order: behind the REFER's response if one is going out, else behind the
    /// dialog's previous ordered message.
    fn in_order(&mut self, job: impl std::future::Future<Output = ()> + Send + 'static) {
        match self.after_refer.as_mut() {
            Some(held) => held.push(Box::pin(job)),
            None => self.ordered(job),
        }
    }

    /// Runs `job` once the dialog's previous ordered message has gone.
    fn ordered(&mut self, job: impl std::future::Future<Output = ()> + Send + 'static) {
        let before = self.tail.take();
        self.tail = Some(tokio::spawn(async move {
            if let Some(b) = before {
                let _ = b.await;
            }
            job.await;
        }));
    }
}

/// The SIP endpoint, its dialogs, and what waits for the switch.
pub(crate) struct Stack {
    endpoint: Arc<EndpointInner>,
    layer: Arc<DialogLayer>,
    cancel: CancellationToken,
    out: mpsc::UnboundedSender<StackMsg>,
    /// Where tapir listens: the host of its Contact and From URIs.
    local: SocketAddr,
    contact: Uri,
    channels: HashMap<ChannelId, Chan>,
    /// Each dialog's channel, by its Call-ID and local tag (the part of its ID that never changes:
    /// the remote tag of a dialog tapir starts arrives with the answer).
    by_dialog: HashMap<(String, String), ChannelId>,
    /// Where every dialog reports its state changes. One channel for all rather than one each: the
    /// stack's channels allocate their first block of slots up front, kilobytes per dialog.
    states: DialogStateSender,
    pending: HashMap<TxId, Pending>,
    next_tx: u64,
}

/// What the UDP socket asks of the kernel for each of its buffers. A burst of calls arrives faster
/// than one task parses it; the system's default receive buffer (about 200 KiB on Linux, a few
/// hundred datagrams) then overflows and the peers' retransmissions have to recover calls that a
/// larger buffer would simply have queued. The kernel caps the request at `net.core.rmem_max`
/// (`wmem_max` for sending).
const UDP_BUFFER_BYTES: usize = 8 << 20;

/// The UDP socket on `listen`, with buffers sized for bursts.
fn udp_socket(listen: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    // Best effort: a smaller buffer than asked for is not a reason not to serve.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(UDP_BUFFER_BYTES);
    let got = socket.recv_buffer_size().unwrap_or(0);
    if got < UDP_BUFFER_BYTES {
        info!(
            bytes = got,
            "the SIP socket's receive buffer is smaller than asked for; raise net.core.rmem_max \
             for bursts of calls"
        );
    }
    socket.set_nonblocking(true)?;
    socket.bind(&listen.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// Binds UDP and TCP on `listen` and starts serving.
pub(crate) async fn bind(
    listen: SocketAddr,
) -> Result<(Stack, mpsc::UnboundedReceiver<StackMsg>), Error> {
    let failed = |e: &dyn std::fmt::Display| Error::OperationFailed {
        reason: format!("cannot listen for SIP on {listen}: {e}"),
    };
    let cancel = CancellationToken::new();
    let transport = TransportLayer::new(cancel.child_token());
    let socket = udp_socket(listen).map_err(|e| failed(&e))?;
    let udp = UdpConnection::from_socket(Arc::new(socket), None, Some(cancel.child_token()))
        .await
        .map_err(|e| failed(&e))?;
    // The TCP listener binds when the endpoint starts serving; try the port first so that a port
    // in use is an error now, not a line in a log later.
    std::net::TcpListener::bind(listen).map_err(|e| failed(&e))?;
    let tcp = TcpListenerConnection::new(listen, None)
        .await
        .map_err(|e| failed(&e))?;
    transport.add_transport(udp.into());
    transport.add_transport(tcp.into());
    let endpoint = EndpointBuilder::new()
        .with_user_agent(concat!("tapir/", env!("CARGO_PKG_VERSION")))
        .with_cancel_token(cancel.clone())
        .with_transport_layer(transport)
        .build();
    let incoming = endpoint.incoming_transactions().map_err(|e| failed(&e))?;
    let inner = endpoint.inner.clone();
    let layer = Arc::new(DialogLayer::new(inner.clone()));
    let (out, rx) = mpsc::unbounded_channel();
    let serving = inner.clone();
    tokio::spawn(async move {
        if let Err(e) = serving.serve().await {
            warn!(error = %e, "the SIP endpoint stopped");
        }
    });
    tokio::spawn(route_incoming(incoming, layer.clone(), out.clone()));
    let (states, mut states_rx) = layer.new_dialog_state_channel();
    let forward = out.clone();
    tokio::spawn(async move {
        while let Some(state) = states_rx.recv().await {
            if forward.send(StackMsg::Dialog(state)).is_err() {
                break;
            }
        }
    });
    let contact = Uri::try_from(format!("sip:{listen}").as_str()).map_err(|e| failed(&e))?;
    Ok((
        Stack {
            endpoint: inner,
            layer,
            cancel,
            out,
            local: listen,
            contact,
            channels: HashMap::new(),
            by_dialog: HashMap::new(),
            states,
            pending: HashMap::new(),
            next_tx: 1,
        },
        rx,
    ))
}

/// Sorts what arrives: requests inside a dialog go to that dialog (its state changes reach the
/// provider's task on the one state channel); requests that start something go to the
/// provider's task; the rest is answered here.
async fn route_incoming(
    mut incoming: rsipstack::transaction::TransactionReceiver,
    layer: Arc<DialogLayer>,
    out: mpsc::UnboundedSender<StackMsg>,
) {
    while let Some(mut tx) = incoming.recv().await {
        let answer = match route(&tx.original) {
            Route::InDialog => None,
            Route::Switch => {
                if out.send(StackMsg::Request(Box::new(tx))).is_err() {
                    return;
                }
                continue;
            }
            Route::Answer(status) => Some(status),
        };
        if let Some(status) = answer {
            tokio::spawn(reply(tx, status));
        } else {
            match layer.match_dialog(&tx) {
                Some(Dialog::Invite(mut d)) => {
                    tokio::spawn(async move {
                        if tx.original.method == Method::Invite && !settled(&d).await {
                            // RFC 3261 §14.2: a re-INVITE while the last one is not finished.
                            let retry = Header::RetryAfter("1".into());
                            reply_with(&mut tx, 500, vec![retry]).await;
                            return;
                        }
                        if let Err(e) = d.handle(&mut tx).await {
                            debug!(error = %e, "in-dialog request");
                        }
                    });
                }
                _ => {
                    tokio::spawn(reply(tx, 481));
                }
            }
        }
    }
}

/// The dialog a REFER's `Replaces` names: its Call-ID and the tags given with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Replaces {
    pub(crate) call_id: String,
    pub(crate) tags: Vec<String>,
}

/// What a REFER asks for: the user of its `Refer-To`, and the dialog its `Replaces` names, if any.
/// `None` when there is no readable `Refer-To` (or `Replaces`).
pub(crate) fn refer_target(req: &Request) -> Option<(String, Option<Replaces>)> {
    let value = req.refer_to_header()?.value().trim().to_owned();
    let inner = value
        .strip_prefix('<')
        .and_then(|v| v.split('>').next())
        .unwrap_or(&value);
    let uri = Uri::try_from(inner).ok()?;
    let to = user_of(&uri);
    let replaces = uri
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("replaces"))
        .map(|(_, v)| percent_decode(v));
    let replaces = match replaces {
        None => None,
        Some(r) => {
            let mut parts = r.split(';');
            let call_id = parts.next()?.trim().to_owned();
            let tags = parts
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    matches!(
                        k.trim().to_ascii_lowercase().as_str(),
                        "to-tag" | "from-tag"
                    )
                    .then(|| v.trim().to_owned())
                })
                .collect();
            Some(Replaces { call_id, tags })
        }
    };
    Some((to, replaces))
}

/// Where a request that arrived goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Inside a dialog (its To has a tag): to that dialog, or 481 when there is none.
    InDialog,
    /// It starts something (REGISTER, INVITE): to the switch.
    Switch,
    /// Answered by the stack with this status: OPTIONS 200, a dialog's request outside one 481,
    /// anything else 405.
    Answer(u16),
}

/// Where `req` goes.
pub(crate) fn route(req: &Request) -> Route {
    let in_dialog = req
        .to_header()
        .ok()
        .and_then(|t| t.tag().ok().flatten())
        .is_some();
    if in_dialog {
        return Route::InDialog;
    }
    match req.method {
        Method::Register | Method::Invite => Route::Switch,
        Method::Options => Route::Answer(200),
        Method::Bye | Method::Info | Method::Update | Method::Refer | Method::Notify => {
            Route::Answer(481)
        }
        _ => Route::Answer(405),
    }
}

/// Waits (briefly) until `dialog` is confirmed again after an earlier re-INVITE, or over.
///
/// rsipstack confirms a dialog again when the task of the previous re-INVITE has taken its ACK; a
/// re-INVITE that arrives right behind that ACK, handled by another task a moment earlier, would
/// find the dialog unconfirmed, be taken for a first INVITE and never be answered. Waiting for the
/// dialog to settle first keeps the second one answered. Returns whether it did.
pub(crate) async fn settled(dialog: &InviteDialog) -> bool {
    for _ in 0..100 {
        let state = dialog.state();
        if state.is_confirmed() || state.is_terminated() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Answers a transaction with `status` and keeps it until it ends (an INVITE's final response
/// waits for its ACK and is retransmitted meanwhile).
async fn reply(mut tx: Transaction, status: u16) {
    reply_with(&mut tx, status, Vec::new()).await;
}

async fn reply_with(tx: &mut Transaction, status: u16, headers: Vec<Header>) {
    if let Err(e) = tx.reply_with(StatusCode::from(status), headers, None).await {
        debug!(error = %e, status, "could not answer a request");
        return;
    }
    if tx.original.method == Method::Invite {
        while tx.receive().await.is_some() {}
    }
}

fn sdp_header() -> Header {
    Header::ContentType("application/sdp".into())
}

/// The address a request came from: its top Via with `received` and `rport` (RFC 3581), or the
/// connection's far end.
pub(crate) fn source(req: &Request, conn: Option<&SipConnection>) -> Option<SocketAddr> {
    let from_via = req
        .via_header()
        .ok()
        .and_then(|v| SipConnection::parse_target_from_via(v).ok())
        .and_then(|(_, hp)| SocketAddr::try_from(hp).ok());
    from_via.or_else(|| {
        conn.and_then(|c| c.get_remote_addr())
            .and_then(|a| SocketAddr::try_from(a.addr.clone()).ok())
    })
}

fn digest_of(req: &Request) -> Option<DigestResponse> {
    let value = req.headers.iter().find_map(|h| match h {
        Header::Authorization(a) => Some(a.value().to_owned()),
        Header::ProxyAuthorization(a) => Some(a.value().to_owned()),
        _ => None,
    })?;
    let tok = AuthTokenizer::tokenize(&value).ok()?;
    DigestResponse::from_params(tok.scheme, tok.params.iter().copied())
}

fn user_of(uri: &Uri) -> String {
    uri.auth
        .as_ref()
        .map(|a| a.user.clone())
        .unwrap_or_default()
}

fn body_sdp(body: &[u8]) -> Option<Vec<u8>> {
    (!body.is_empty()).then(|| body.to_vec())
}

/// The digit of an INFO with `application/dtmf-relay` (`Signal=5`) or `application/dtmf` (`5`).
pub(crate) fn digit_of(req: &Request) -> Option<char> {
    let text = std::str::from_utf8(&req.body).ok()?;
    let value = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim())
        })
        .unwrap_or(text.trim());
    let mut chars = value.chars();
    let d = chars.next()?.to_ascii_uppercase();
    let d = match (d, value) {
        (_, "10") => '*',
        (_, "11") => '#',
        (d, v) if tapir_core::dial::is_dtmf_digit(d) && v.len() == 1 => d,
        _ => return None,
    };
    Some(d)
}

impl Stack {
    fn tx_id(&mut self) -> TxId {
        let id = TxId(self.next_tx);
        self.next_tx += 1;
        id
    }

    /// Whether nothing is left: no dialog, no transaction waiting for the switch.
    pub(crate) fn is_quiet(&self) -> bool {
        self.channels.is_empty() && self.pending.is_empty() && self.layer.is_empty()
    }

    /// Reads what arrived; what the switch must hear of it comes back.
    pub(crate) fn receive(&mut self, msg: StackMsg) -> Option<SipEvent> {
        match msg {
            StackMsg::Event(e) => Some(e),
            StackMsg::Request(tx) => self.request(tx),
            StackMsg::Dialog(state) => {
                let id = state.id();
                let key = (id.call_id.clone(), id.local_tag.clone());
                let ch = *self.by_dialog.get(&key)?;
                if let DialogState::Terminated(id, _) = &state {
                    self.layer.remove_dialog(id);
                    self.by_dialog.remove(&key);
                }
                self.dialog_state(ch, state)
            }
        }
    }

    fn request(&mut self, mut tx: Box<Transaction>) -> Option<SipEvent> {
        let src = source(&tx.original, tx.connection.as_ref());
        let tcp = tx.connection.as_ref().is_some_and(|c| c.is_reliable());
        match read_request(&tx.original, src, tcp) {
            Err(reason) => {
                // A request tapir cannot read changes nothing: 400, and it is forgotten.
                debug!(%reason, "a malformed request refused");
                tokio::spawn(async move { reply_with(&mut tx, 400, Vec::new()).await });
                None
            }
            Ok(read) => {
                let id = self.tx_id();
                self.pending.insert(id, Pending::Request(tx));
                Some(read.into_event(id))
            }
        }
    }
}

/// A request that starts something (REGISTER, INVITE), read into what the switch understands.
pub(crate) enum Read {
    Register {
        user: String,
        auth: Option<DigestResponse>,
        request: Register,
    },
    Invite(Invite),
}

impl Read {
    /// What the switch hears of it, answered through `tx`.
    pub(crate) fn into_event(self, tx: TxId) -> SipEvent {
        match self {
            Read::Register {
                user,
                auth,
                request,
            } => SipEvent::Register {
                tx,
                user,
                auth,
                request,
            },
            Read::Invite(invite) => SipEvent::Invite { tx, invite },
        }
    }
}

/// Reads a REGISTER or an INVITE that came from `src` (`None`: nowhere to answer to); the error
/// says what is wrong with it.
pub(crate) fn read_request(
    req: &Request,
    src: Option<SocketAddr>,
    tcp: bool,
) -> Result<Read, String> {
    match (src, &req.method) {
        (None, _) => Err("no address to answer to".to_owned()),
        (Some(src), Method::Register) => {
            read_register(req, src, tcp).map(|(user, request)| Read::Register {
                user,
                auth: digest_of(req),
                request,
            })
        }
        (Some(src), _) => read_invite(req, src).map(Read::Invite),
    }
}

fn read_register(
    req: &Request,
    source: SocketAddr,
    tcp: bool,
) -> Result<(String, Register), String> {
    let to = req.to_header().map_err(|e| e.to_string())?;
    let to = to.typed().map_err(|e| e.to_string())?;
    let call_id = req
        .call_id_header()
        .map_err(|e| e.to_string())?
        .value()
        .to_owned();
    let cseq = req
        .cseq_header()
        .and_then(|c| c.seq())
        .map_err(|e| e.to_string())?;
    let expires = match req.expires_header() {
        Some(e) => Some(
            e.value()
                .trim()
                .parse::<u32>()
                .map_err(|_| "a malformed Expires header".to_owned())?,
        ),
        None => None,
    };
    let raw = req.contact_headers();
    let contacts = if raw.is_empty() {
        Contacts::Query
    } else if raw.iter().any(|c| c.value().trim() == "*") {
        Contacts::All
    } else {
        let typed = req.typed_contact_headers().map_err(|e| e.to_string())?;
        Contacts::List(
            typed
                .iter()
                .map(|c| {
                    let own = c.params.iter().find_map(|p| match p {
                        Param::Expires(e) => e.value().trim().parse::<u32>().ok(),
                        _ => None,
                    });
                    (c.uri.to_string(), own)
                })
                .collect(),
        )
    };
    Ok((
        user_of(&to.uri),
        Register {
            call_id,
            cseq,
            contacts,
            expires,
            source,
            tcp,
        },
    ))
}

impl Stack {
    fn dialog_state(&mut self, ch: ChannelId, state: DialogState) -> Option<SipEvent> {
        let known = self.channels.contains_key(&ch);
        match state {
            DialogState::Calling(_) | DialogState::Trying(_) | DialogState::WaitAck(..) => None,
            DialogState::Early(_, resp) => Some(SipEvent::Progress {
                ch,
                status: u16::from(resp.status_code),
                sdp: body_sdp(&resp.body),
            }),
            DialogState::Confirmed(_, resp) => {
                let c = self.channels.get_mut(&ch)?;
                if let Some(held) = c.after_refer.take() {
                    // The REFER's response has gone: what waited for it may go now.
                    for job in held {
                        c.ordered(job);
                    }
                    return None;
                }
                if !c.outbound || c.answered {
                    // An inbound dialog's ACK, or the return to Confirmed after an in-dialog request.
                    return None;
                }
                c.answered = true;
                Some(SipEvent::Answered {
                    ch,
                    sdp: body_sdp(&resp.body),
                })
            }
            DialogState::Terminated(_, reason) => {
                let c = self.channels.remove(&ch)?;
                if c.outbound && !c.answered {
                    let status = match reason {
                        TerminatedReason::UasBusy => 486,
                        TerminatedReason::UasDecline => 603,
                        TerminatedReason::Timeout => 408,
                        TerminatedReason::ProxyAuthRequired => 407,
                        TerminatedReason::UasOther(s) | TerminatedReason::ProxyError(s) => {
                            u16::from(s)
                        }
                        _ => 487,
                    };
                    Some(SipEvent::Failed { ch, status })
                } else if !c.outbound && matches!(reason, TerminatedReason::UacCancel) {
                    Some(SipEvent::Cancelled { ch })
                } else {
                    Some(SipEvent::Ended { ch })
                }
            }
            DialogState::Updated(_, req, handle) => {
                if !known {
                    tokio::spawn(async move {
                        handle.reply(StatusCode::CallTransactionDoesNotExist).await
                    });
                    return None;
                }
                let tx = self.tx_id();
                self.pending.insert(tx, Pending::Reoffer(handle));
                Some(SipEvent::Reoffer {
                    ch,
                    tx,
                    sdp: body_sdp(&req.body),
                })
            }
            DialogState::Info(_, req, handle) => {
                let digit = digit_of(&req);
                let status = if digit.is_some() {
                    StatusCode::OK
                } else {
                    StatusCode::UnsupportedMediaType
                };
                tokio::spawn(async move { handle.reply(status).await });
                digit
                    .filter(|_| known)
                    .map(|digit| SipEvent::Digit { ch, digit })
            }
            DialogState::Options(_, _, handle) => {
                tokio::spawn(async move { handle.reply(StatusCode::OK).await });
                None
            }
            DialogState::Refer(_, req, handle) => {
                let Some((to, replaces)) = known.then(|| self.read_refer(&req)).flatten() else {
                    tokio::spawn(async move { handle.reply(StatusCode::BadRequest).await });
                    return None;
                };
                let tx = self.tx_id();
                self.pending.insert(tx, Pending::Refer(handle, ch));
                Some(SipEvent::Refer {
                    ch,
                    tx,
                    to,
                    replaces,
                })
            }
            DialogState::Notify(_, _, handle)
            | DialogState::Message(_, _, handle)
            | DialogState::Publish(_, _, handle) => {
                tokio::spawn(async move { handle.reply(StatusCode::NotImplemented).await });
                None
            }
        }
    }

    /// The target of a REFER: the user of its `Refer-To`, and the channel its `Replaces` names
    /// (by Call-ID and tags, whichever way round they are given), if any.
    fn read_refer(&self, req: &Request) -> Option<(String, Option<ChannelId>)> {
        let (to, replaces) = refer_target(req)?;
        let replaces = match replaces {
            None => None,
            Some(r) => {
                let found = self.channels.iter().find(|(_, c)| {
                    let id = c.dialog.id();
                    id.call_id == r.call_id
                        && r.tags
                            .iter()
                            .all(|t| *t == id.local_tag || *t == id.remote_tag)
                });
                Some(*found?.0)
            }
        };
        Some((to, replaces))
    }

    /// Files `dialog`'s state changes under `ch`.
    fn watch(&mut self, ch: ChannelId, dialog: &InviteDialog) {
        let id = dialog.id();
        self.by_dialog.insert((id.call_id, id.local_tag), ch);
    }

    fn event_later(&self, e: SipEvent) {
        let _ = self.out.send(StackMsg::Event(e));
    }

    fn uri(&self, user: &str) -> Uri {
        Uri::try_from(format!("sip:{user}@{}", self.local).as_str())
            .or_else(|_| Uri::try_from(format!("sip:anonymous@{}", self.local).as_str()))
            .unwrap_or_else(|_| self.contact.clone())
    }

    /// Carries out what the switch asked for.
    pub(crate) fn perform(&mut self, action: SipAction) {
        match action {
            SipAction::Respond {
                tx,
                status,
                challenge,
                contacts,
                min_expires,
            } => {
                let Some(Pending::Request(mut t)) = self.pending.remove(&tx) else {
                    return;
                };
                let mut headers = Vec::new();
                if let Some(c) = challenge {
                    headers.push(Header::WwwAuthenticate(c.into()));
                }
                for (uri, secs) in contacts {
                    headers.push(Header::Contact(format!("<{uri}>;expires={secs}").into()));
                }
                if let Some(m) = min_expires {
                    headers.push(Header::MinExpires(m.to_string().into()));
                }
                tokio::spawn(async move { reply_with(&mut t, status, headers).await });
            }
            SipAction::Adopt { tx, ch } => {
                let Some(Pending::Request(mut t)) = self.pending.remove(&tx) else {
                    return;
                };
                match self.layer.get_or_create_server_invite(
                    &t,
                    self.states.clone(),
                    None,
                    Some(self.contact.clone()),
                ) {
                    Ok(dialog) => {
                        let mut driver = dialog.clone();
                        tokio::spawn(async move {
                            if let Err(e) = driver.handle(&mut t).await {
                                debug!(error = %e, "inbound INVITE");
                            }
                        });
                        self.watch(ch, &dialog);
                        self.channels.insert(
                            ch,
                            Chan {
                                dialog,
                                outbound: false,
                                answered: false,
                                tail: None,
                                after_refer: None,
                            },
                        );
                    }
                    Err(e) => {
                        warn!(error = %e, "could not take an INVITE as a dialog");
                        tokio::spawn(async move { reply_with(&mut t, 500, Vec::new()).await });
                        self.event_later(SipEvent::Ended { ch });
                    }
                }
            }
            SipAction::Ring { ch, sdp } => {
                if let Some(c) = self.channels.get(&ch) {
                    let headers = sdp.as_ref().map(|_| vec![sdp_header()]);
                    let _ = c.dialog.ringing(headers, sdp.map(String::into_bytes));
                }
            }
            SipAction::Answer { ch, sdp } => {
                if let Some(c) = self.channels.get_mut(&ch) {
                    c.answered = true;
                    let _ = c
                        .dialog
                        .accept(Some(vec![sdp_header()]), Some(sdp.into_bytes()));
                }
            }
            SipAction::Refuse { ch, status } => {
                if let Some(c) = self.channels.get(&ch) {
                    let _ = c.dialog.reject(Some(StatusCode::from(status)), None);
                }
            }
            SipAction::Invite {
                ch,
                uri,
                addr,
                tcp,
                from,
                to: _,
                sdp,
                auto_answer,
            } => self.invite(ch, &uri, addr, tcp, &from, sdp, auto_answer),
            SipAction::Cancel { ch } => {
                if let Some(c) = self.channels.get(&ch) {
                    let d = c.dialog.clone();
                    tokio::spawn(async move {
                        if let Err(e) = d.cancel().await {
                            debug!(error = %e, "CANCEL");
                        }
                    });
                }
            }
            SipAction::Bye { ch } => {
                if let Some(c) = self.channels.get_mut(&ch) {
                    let d = c.dialog.clone();
                    c.in_order(async move {
                        if let Err(e) = d.bye().await {
                            debug!(error = %e, "BYE");
                        }
                    });
                }
            }
            SipAction::AnswerRefer { tx, status } => {
                if let Some(Pending::Refer(handle, ch)) = self.pending.remove(&tx) {
                    if let Some(c) = self.channels.get_mut(&ch) {
                        c.after_refer.get_or_insert_with(Vec::new);
                    }
                    tokio::spawn(async move {
                        let _ = handle.reply(StatusCode::from(status)).await;
                    });
                }
            }
            SipAction::Notify { ch, status } => {
                if let Some(c) = self.channels.get_mut(&ch) {
                    let d = c.dialog.clone();
                    c.in_order(async move {
                        // RFC 3515: the implicit subscription ends with the final result.
                        let state = if status >= 200 {
                            "terminated;reason=noresource"
                        } else {
                            "active;expires=60"
                        };
                        if let Err(e) = d.notify_refer(StatusCode::from(status), state).await {
                            debug!(error = %e, "NOTIFY");
                        }
                    });
                }
            }
            SipAction::Ping { ch } => {
                if let Some(c) = self.channels.get(&ch) {
                    let d = c.dialog.clone();
                    let out = self.out.clone();
                    tokio::spawn(async move {
                        let alive = match d.request(Method::Options, None, None).await {
                            // Any answer but "no such dialog" means the peer is there (a 405 to an
                            // OPTIONS in a dialog is an answer too).
                            Ok(Some(r)) => !matches!(u16::from(r.status_code), 481 | 408),
                            Ok(None) => true,
                            Err(_) => false,
                        };
                        let _ = out.send(StackMsg::Event(SipEvent::Alive { ch, alive }));
                    });
                }
            }
            SipAction::Reoffer { ch, sdp } => {
                let Some(c) = self.channels.get_mut(&ch) else {
                    return;
                };
                let d = c.dialog.clone();
                let out = self.out.clone();
                // In order with the dialog's other messages: a BYE for a call hung up while its
                // re-INVITE is out leaves after the re-INVITE's answer and ACK, as peers expect.
                c.in_order(async move {
                    let result = match d
                        .reinvite(Some(vec![sdp_header()]), Some(sdp.into_bytes()))
                        .await
                    {
                        Ok(Some(resp))
                            if resp.status_code.kind()
                                == rsipstack::sip::StatusCodeKind::Successful =>
                        {
                            Ok(body_sdp(&resp.body))
                        }
                        Ok(Some(resp)) => Err(u16::from(resp.status_code)),
                        Ok(None) => Err(481),
                        Err(_) => Err(408),
                    };
                    let _ = out.send(StackMsg::Event(SipEvent::Reoffered { ch, result }));
                });
            }
            SipAction::AnswerReoffer { tx, status, sdp } => {
                let Some(Pending::Reoffer(handle)) = self.pending.remove(&tx) else {
                    return;
                };
                tokio::spawn(async move {
                    let headers = sdp.as_ref().map(|_| vec![sdp_header()]);
                    let _ = handle
                        .respond(
                            StatusCode::from(status),
                            headers,
                            sdp.map(String::into_bytes),
                        )
                        .await;
                });
            }
            SipAction::Digits { ch, digits, op } => {
                let Some(c) = self.channels.get(&ch) else {
                    if let Some(op) = op {
                        self.event_later(SipEvent::DigitsSent { op, ok: false });
                    }
                    return;
                };
                let d = c.dialog.clone();
                let out = self.out.clone();
                tokio::spawn(send_digits(d, digits, op, out));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn invite(
        &mut self,
        ch: ChannelId,
        uri: &str,
        addr: SocketAddr,
        tcp: bool,
        from: &Party,
        sdp: String,
        auto_answer: bool,
    ) {
        let callee = match Uri::try_from(uri) {
            Ok(u) => u,
            Err(e) => {
                warn!(%uri, error = %e, "a contact that is not a URI");
                self.event_later(SipEvent::Failed { ch, status: 416 });
                return;
            }
        };
        let mut headers = Vec::new();
        if auto_answer {
            // Both ways phones are asked to answer by themselves: the Call-Info answer-after of
            // draft-ietf-sipcore-callinfo-answermode, and the Alert-Info many desk phones read.
            headers.push(Header::Other(
                "Call-Info".into(),
                format!("<{uri}>;answer-after=0"),
            ));
            headers.push(Header::Other(
                "Alert-Info".into(),
                "<http://127.0.0.1/>;info=alert-autoanswer".into(),
            ));
        }
        let option = InviteOption {
            caller_display_name: from.name.clone(),
            caller: self.uri(&from.user),
            callee,
            destination: Some(SipAddr {
                r#type: Some(if tcp { Transport::Tcp } else { Transport::Udp }),
                addr: addr.into(),
            }),
            content_type: Some("application/sdp".into()),
            offer: Some(sdp.into_bytes()),
            contact: self.contact.clone(),
            headers: (!headers.is_empty()).then_some(headers),
            ..Default::default()
        };
        match self.layer.do_invite_async(option, self.states.clone()) {
            Ok((dialog, _done)) => {
                self.watch(ch, &dialog);
                self.channels.insert(
                    ch,
                    Chan {
                        dialog,
                        outbound: true,
                        answered: false,
                        tail: None,
                        after_refer: None,
                    },
                );
            }
            Err(e) => {
                warn!(error = %e, "could not send an INVITE");
                self.event_later(SipEvent::Failed { ch, status: 500 });
            }
        }
    }

    /// Ends everything: dialogs, transactions, the endpoint and its sockets.
    pub(crate) async fn shutdown(mut self) {
        // Give the BYEs and CANCELs the switch sent a moment to leave.
        for _ in 0..20 {
            if self.layer.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for d in self.channels.values() {
            self.layer.remove_dialog(&d.dialog.id());
        }
        for id in self.layer.all_dialog_ids() {
            if let Some(Dialog::Invite(d)) = self.layer.get_dialog_with(&id) {
                self.layer.remove_dialog(&d.id());
            }
        }
        self.channels.clear();
        self.by_dialog.clear();
        self.pending.clear();
        // Transactions wait on timers that stop with the endpoint: end them now, so that nothing
        // holds the sockets.
        let keys: Vec<_> = self
            .endpoint
            .transactions
            .with(|m| m.iter().map(|(k, s)| (k.clone(), s.clone())).collect());
        for (key, sender) in keys {
            let _ = sender.send(TransactionEvent::Terminate(key));
        }
        self.endpoint.transactions.retain(|_, _| false);
        self.cancel.cancel();
    }
}

async fn send_digits(
    dialog: InviteDialog,
    digits: String,
    op: Option<OpId>,
    out: mpsc::UnboundedSender<StackMsg>,
) {
    let mut ok = true;
    for d in digits.chars() {
        let body = format!("Signal={d}\r\nDuration=160\r\n");
        let r = dialog
            .info(
                Some(vec![Header::ContentType("application/dtmf-relay".into())]),
                Some(body.into_bytes()),
            )
            .await;
        if !matches!(r, Ok(Some(resp)) if resp.status_code.kind() == rsipstack::sip::StatusCodeKind::Successful)
        {
            ok = false;
            break;
        }
    }
    if let Some(op) = op {
        let _ = out.send(StackMsg::Event(SipEvent::DigitsSent { op, ok }));
    }
}

/// `%40` → `@` and so on (URI headers carry a Replaces value escaped).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_invite(req: &Request, source: SocketAddr) -> Result<Invite, String> {
    let from = req
        .from_header()
        .and_then(|f| f.typed())
        .map_err(|e| e.to_string())?;
    Ok(Invite {
        from_user: user_of(&from.uri),
        from_name: from.display_name.clone(),
        to_user: user_of(&req.uri),
        source,
        sdp: body_sdp(&req.body),
        auth: digest_of(req),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_replaces_values_are_decoded_and_bad_escapes_kept() {
        assert_eq!(
            percent_decode("abc%40host%3Bto-tag%3D12%3Bfrom-tag%3D34"),
            "abc@host;to-tag=12;from-tag=34"
        );
        assert_eq!(percent_decode("50%"), "50%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn digits_are_read_from_both_info_bodies() {
        let info = |body: &str| {
            let text = format!(
                "INFO sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n\
                 From: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>;tag=2\r\nCall-ID: c\r\n\
                 CSeq: 2 INFO\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let r = Request::try_from(text.as_str()).expect("a request");
            digit_of(&r)
        };
        assert_eq!(info("Signal=5\r\nDuration=160\r\n"), Some('5'));
        assert_eq!(info("Signal=#\r\n"), Some('#'));
        assert_eq!(info("Signal=10\r\n"), Some('*'));
        assert_eq!(info("7"), Some('7'));
        assert_eq!(info("Signal=x"), None);
        assert_eq!(info(""), None);
    }
}
