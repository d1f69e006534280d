//! The Connection (RFC 9622 §7–§11): send and receive Messages over the stack
//! that won the race, clone it into a group, close or abort it.
//!
//! Target-neutral: the stack behind it is a `backend::Transport`.
//!
//! # Guarantees (RFC 9622 §11)
//! - Exactly one outcome per `send` call: [`Sent`], or a [`SendFailure`]
//!   (`Expired` or `SendError`). Sent outcomes happen in send-call order:
//!   [`Sent::sequence`] grows with each call.
//! - One `receive` call yields exactly one receive event or a [`ReceiveError`].
//! - A Connection exists only after Ready, so nothing is received before it.
//! - `close` resolves after every queued Message got its outcome and every
//!   pending receive resolved; `Closed` is then the last event, and nothing
//!   follows it.
//!
//! # Cancel safety and drop
//! `send` queues the Message when it is called (not when first polled);
//! dropping its future does not withdraw the Message, only its outcome.
//! A send future dropped before its answer hands the work it leaves (its
//! Message and those queued behind it) to a task of its own, so everything
//! goes out, whole and once, without another call on the Connection; a
//! partly written Message is always finished, so framing never breaks. Dropping a `receive` future loses nothing: bytes already read
//! stay buffered for the next receive. Dropping the last handle of a
//! Connection without `close` closes the socket at once (queued, unwritten
//! Messages are dropped with it); call `close` for an orderly end.

// SendFailure carries the MessageContext back to the application, as the RFC's
// events do; the failure path is cold, so its size does not matter.
#![allow(clippy::result_large_err)]

use crate::backend::{Recv, Transport};
use crate::capability::{Capabilities, DataUnit, StackId, Support};
use crate::endpoint::{LocalEndpoint, RemoteEndpoint};
use crate::error::{Error, ErrorReason};
use crate::event::ConnectionEvent;
use crate::framer::{Frame, FramerStack, Parse};
use crate::message::{MessageContext, ReceiveEvent};
use crate::properties::{
    ChecksumCoverage, ConnState, ConnectionProperties, Preference, PropertyValue,
    SelectionProperty, TransportProperties,
};
use crate::runtime::{self, Instant};
use crate::trace::RacingTrace;
use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::future::FusedFuture;
use futures::future::{FutureExt, Shared};
use futures::task::AtomicWaker;
use futures::StreamExt;
use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The largest Message a framed Connection accepts (recvMsgMaxLen): bounds
/// the memory a peer can make us buffer with a length prefix.
pub const RECV_MSG_MAX_LEN: usize = 64 * 1024 * 1024;

/// Most unreliable Messages (QUIC or WebTransport datagrams) a byte
/// stream's Connection keeps for the application while it does not receive
/// them (for instance while a framed Message on the stream is incomplete).
/// Past it, or past [`DATAGRAM_QUEUE_MAX_BYTES`], arriving datagrams are
/// dropped (they are unreliable), counted, and reported as SoftErrors.
pub const DATAGRAM_QUEUE_MAX: usize = 1024;
/// Most bytes of unreliable Messages kept waiting; see [`DATAGRAM_QUEUE_MAX`].
pub const DATAGRAM_QUEUE_MAX_BYTES: usize = 4 * 1024 * 1024;

/// The bounded queue of unreliable Messages waiting for a receive.
#[derive(Default)]
struct DatagramQueue {
    queue: VecDeque<Bytes>,
    bytes: usize,
    /// Dropped since the last report of the count.
    dropped: u64,
}

impl DatagramQueue {
    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Keep `d`, or drop it when the queue is full: the first drop of a
    /// run is reported at once (a SoftError), the count when the
    /// application takes Messages again.
    fn push(&mut self, d: Bytes, events: &mpsc::UnboundedSender<ConnectionEvent>) {
        if self.queue.len() < DATAGRAM_QUEUE_MAX && self.bytes + d.len() <= DATAGRAM_QUEUE_MAX_BYTES
        {
            self.bytes += d.len();
            self.queue.push_back(d);
            return;
        }
        if self.dropped == 0 {
            let _ = events.unbounded_send(ConnectionEvent::SoftError(format!(
                "unreliable Messages are dropped: {DATAGRAM_QUEUE_MAX} or {DATAGRAM_QUEUE_MAX_BYTES} bytes wait for a receive already"
            )));
        }
        self.dropped += 1;
    }

    fn pop(&mut self, events: &mpsc::UnboundedSender<ConnectionEvent>) -> Option<Bytes> {
        let d = self.queue.pop_front()?;
        self.bytes -= d.len();
        if self.dropped > 0 {
            let _ = events.unbounded_send(ConnectionEvent::SoftError(format!(
                "{} unreliable Messages were dropped while the receive queue was full",
                self.dropped
            )));
            self.dropped = 0;
        }
        Some(d)
    }
}

/// How long [`Connection::close`] waits for the peer to take what was sent
/// (the queued Messages written, and where the stack can tell, acknowledged:
/// a QUIC stream's data; a TCP or TLS peer's end of stream read, so that no
/// reset discards the tail). Past it, close aborts the Connection and
/// reports a Timeout instead of waiting forever on a peer that stopped
/// reading.
pub const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long [`Connection::close`] keeps reading a TCP or TLS peer's side,
/// after finishing its own, for the peer's end of stream: closing a socket
/// with unread bytes resets the connection, and a reset can discard what
/// the peer has not read yet. A peer that keeps its side open longer sees
/// the socket close then.
pub const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Most frames handed to one vectored write.
const MAX_IOV: usize = 512;
/// Slices of one vectored write kept on the stack before spilling to the heap.
const STACK_IOV: usize = 24;
/// A Message body at least this large, most of it not yet buffered, is read
/// straight into its own Vec (`Inner::read_body_directly`) where the stack
/// gains by it (`Transport::reads_bodies_directly`). (A body that is mostly
/// buffered already would be copied out of the buffer either way.)
const DIRECT_READ_MIN: usize = 32 * 1024;

/// `Sent<messageContext>`: the Message was handed to the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The context the Message was sent with.
    pub context: MessageContext,
    /// Position of this send call among all send calls on the Connection (from 0).
    pub sequence: u64,
}

/// The outcome of one [`Connection::send`]: `Sent`, `Expired` or
/// `SendError`, exactly once. When `send` returned, the Message was already
/// checked, and either refused (the answer is here) or queued or handed to
/// the stack; dropping this future does not take it back.
#[must_use = "the Message is sent either way; await this to learn whether it went out"]
pub struct SendFuture {
    state: SendState,
}

enum SendState {
    /// Answered when `send` was called (the stack took the Message at once,
    /// or it was refused); `None` once the answer was taken.
    Done(Option<Result<Sent, SendFailure>>),
    /// Waiting for the stack.
    Waiting(runtime::BoxFuture<'static, Result<Sent, SendFailure>>),
}

impl SendFuture {
    /// The outcome, if it was known when `send` returned (the stack took
    /// the Message at once, or it was refused), without awaiting; else
    /// (`Err`) the future back, to await. Call it on a fresh future: once
    /// polled to completion, a future has given its answer away.
    pub fn answer_now(self) -> Result<Result<Sent, SendFailure>, SendFuture> {
        match self.state {
            SendState::Done(Some(r)) => Ok(r),
            state => Err(SendFuture { state }),
        }
    }
}

impl Future for SendFuture {
    type Output = Result<Sent, SendFailure>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match &mut self.state {
            SendState::Done(r) => {
                std::task::Poll::Ready(r.take().expect("SendFuture polled after it completed"))
            }
            SendState::Waiting(f) => f.as_mut().poll(cx),
        }
    }
}

impl std::fmt::Debug for SendFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.state {
            SendState::Done(Some(_)) => "SendFuture(answered)",
            SendState::Done(None) => "SendFuture(taken)",
            SendState::Waiting(_) => "SendFuture(waiting for the stack)",
        })
    }
}

/// `Expired<messageContext>` or `SendError<messageContext, reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendFailure {
    /// `Expired`: msgLifetime passed before the Message could be sent.
    #[error("Expired: the message's msgLifetime passed before it could be sent")]
    Expired {
        /// The context of the Message.
        context: MessageContext,
    },
    /// `SendError`: the Message could not be sent.
    #[error("SendError: {error}")]
    SendError {
        /// The context of the Message.
        context: MessageContext,
        /// Why.
        error: Error,
    },
}

impl SendFailure {
    /// The error reason (`Timeout` for Expired).
    pub fn reason(&self) -> ErrorReason {
        match self {
            SendFailure::Expired { .. } => ErrorReason::Timeout,
            SendFailure::SendError { error, .. } => error.reason,
        }
    }
}

/// `ReceiveError<messageContext, reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ReceiveError: {error}")]
pub struct ReceiveError {
    /// The context of the Message being received, if one had started.
    pub context: Option<MessageContext>,
    /// Why.
    pub error: Error,
}

type SendResult = Result<Sent, SendFailure>;

struct Queued {
    seq: u64,
    frame: Frame,
    deadline: Option<Instant>,
    context: MessageContext,
    reply: Option<oneshot::Sender<SendResult>>,
    final_: bool,
    /// Sent as an unreliable datagram (msgReliable false on a stack with
    /// perMsgReliability, e.g. QUIC), outside the stream.
    datagram: bool,
    /// The earlier parts of this Message (sent with end_of_message false)
    /// that a framer held back until this, the last part: they share its
    /// outcome, answered just before it.
    held: Option<Box<[HeldPart]>>,
}

/// A part of a Message a framer holds until the last part (a length prefix
/// needs the whole length): nothing of it is written yet, so it is answered
/// with the last part's outcome, or fails if the Message is never finished.
struct HeldPart {
    seq: u64,
    context: MessageContext,
    reply: oneshot::Sender<SendResult>,
}

impl HeldPart {
    fn answer(self, r: Result<(), SendFailureKind>) {
        let _ = self.reply.send(outcome_of(self.seq, self.context, r));
    }
}

/// The outcome of send call `seq` with `context`.
fn outcome_of(seq: u64, context: MessageContext, r: Result<(), SendFailureKind>) -> SendResult {
    match r {
        Ok(()) => Ok(Sent {
            context,
            sequence: seq,
        }),
        Err(SendFailureKind::Expired) => Err(SendFailure::Expired { context }),
        Err(SendFailureKind::Error(error)) => Err(SendFailure::SendError { context, error }),
    }
}

impl Queued {
    fn answer(&mut self, r: Result<(), SendFailureKind>) {
        if let Some(tx) = self.reply.take() {
            let _ = tx.send(self.outcome(r));
        } else {
            self.answer_held(&r);
        }
    }

    /// Answer the held earlier parts of this Message with its outcome.
    fn answer_held(&mut self, r: &Result<(), SendFailureKind>) {
        if let Some(held) = self.held.take() {
            for part in held.into_vec() {
                part.answer(r.clone());
            }
        }
    }

    /// The outcome for the sender (its held earlier parts answered first).
    /// Each Queued is answered once: its context goes back without a copy.
    fn outcome(&mut self, r: Result<(), SendFailureKind>) -> SendResult {
        self.answer_held(&r);
        let context = std::mem::replace(&mut self.context, MessageContext::placeholder());
        match r {
            Ok(()) => Ok(Sent {
                context,
                sequence: self.seq,
            }),
            Err(SendFailureKind::Expired) => Err(SendFailure::Expired { context }),
            Err(SendFailureKind::Error(error)) => Err(SendFailure::SendError { context, error }),
        }
    }
}

/// What `send` did with a Message.
enum Enqueued {
    /// The stack took it whole at once (or refused it): the outcome.
    Done(SendResult),
    /// Queued or partly written: the outcome comes later.
    Waiting(oneshot::Receiver<SendResult>),
    /// Held by a framer until the Message's last part: nothing to write
    /// for it, the outcome comes with the last part's.
    Held(oneshot::Receiver<SendResult>),
}

/// What `Inner::write_now` did.
enum WriteNow {
    Done(SendResult),
    /// Partly taken: the rest is in the writer state, answered by a later flush.
    Waiting(oneshot::Receiver<SendResult>),
    /// Not tried (the writer is busy, or the stack's writes cannot be
    /// dropped midway), or nothing taken: queue it.
    NotTried,
}

/// A datagram send's result as the Message's outcome.
fn datagram_outcome(r: std::io::Result<()>) -> Result<(), SendFailureKind> {
    r.map_err(|e| {
        SendFailureKind::Error(Error::new(
            ErrorReason::ProtocolFailed,
            format!("sending the datagram: {e}"),
        ))
    })
}

#[derive(Clone)]
enum SendFailureKind {
    Expired,
    Error(Error),
}

struct SendQueue {
    frames: VecDeque<Queued>,
    next_seq: u64,
    batch: Option<(oneshot::Sender<()>, Shared<oneshot::Receiver<()>>)>,
    open_partial: Option<u64>,
    /// The parts of the open Message a framer holds (see [`HeldPart`]).
    held: Vec<HeldPart>,
    final_sent: bool,
    /// Set when nothing more may be sent: why.
    shut: Option<Error>,
    framers: FramerStack,
}

struct WriterState {
    transport: Option<Transport>,
    inflight: VecDeque<Queued>,
    front_offset: usize,
    /// Messages the stack took whole but may still hold (TLS records that
    /// did not fit the socket yet): answered once `Transport::flush` is done.
    written: Vec<Queued>,
    /// A whole Message (a datagram, a WebSocket or data-channel message)
    /// being handed to a stack whose sends are not cancel-safe, with that
    /// send still running: it lives here, not in the flush, so a flush
    /// dropped midway (its send future dropped) leaves it to the next flush
    /// to finish, and the stack never gets the Message twice.
    sending: Option<(Queued, runtime::BoxFuture<'static, std::io::Result<()>>)>,
}

impl WriterState {
    /// Every Message the writer holds that has no answer yet, in send order.
    fn unanswered(&mut self) -> impl Iterator<Item = Queued> + '_ {
        self.front_offset = 0;
        let sending = self.sending.take().map(|(f, _)| f);
        self.written
            .drain(..)
            .chain(sending)
            .chain(self.inflight.drain(..))
    }
}

struct Current {
    remaining: usize,
    trailer: usize,
    context: MessageContext,
    delivered_any: bool,
}

struct RecvState {
    transport: Option<Transport>,
    buf: Vec<u8>,
    start: usize,
    framers: FramerStack,
    current: Option<Current>,
    eof: bool,
    /// Set when no more receive events can come: why.
    done: Option<Error>,
    stream_context: Option<MessageContext>,
    /// Unreliable Messages (QUIC and WebTransport datagrams) that arrived
    /// on a byte stream's Connection, waiting for a receive: at most
    /// [`DATAGRAM_QUEUE_MAX`] of them and [`DATAGRAM_QUEUE_MAX_BYTES`].
    datagrams: DatagramQueue,
    /// True while a large Message body is read straight into `body` (see
    /// `read_body_directly`); `buf` is empty then.
    direct: bool,
    /// The current Message's body so far, in direct mode.
    body: Vec<u8>,
}

pub(crate) struct Group {
    members: Mutex<Vec<Weak<Inner>>>,
    /// Entangled Connection Properties (all but connPriority).
    props: Mutex<ConnectionProperties>,
}

struct Status {
    state: ConnState,
    can_receive: bool,
    conn_priority: u32,
}

/// Everything a new Connection is made of.
pub(crate) struct Parts {
    pub(crate) transport: Transport,
    pub(crate) caps: Capabilities,
    pub(crate) framers: FramerStack,
    pub(crate) leftover: Vec<u8>,
    pub(crate) props: TransportProperties,
    pub(crate) trace: RacingTrace,
    pub(crate) remote: RemoteEndpoint,
    /// The remote address, when the caller knows it (saves a getpeername).
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) local: Option<LocalEndpoint>,
    pub(crate) reconnect: Option<crate::establish::Reconnect>,
    /// Client: InitiateWithSend's first Message already went out as 0-RTT.
    pub(crate) early_sent: bool,
    /// Server: the peer's data on this stream may be 0-RTT early data.
    pub(crate) peer_early_data: bool,
}

pub(crate) struct Inner {
    caps: Capabilities,
    props: TransportProperties,
    group: Arc<Group>,
    status: Mutex<Status>,
    send_q: Mutex<SendQueue>,
    writer: futures::lock::Mutex<WriterState>,
    recv: futures::lock::Mutex<RecvState>,
    abort_handle: Mutex<Option<Transport>>,
    stop_tx: Mutex<Option<oneshot::Sender<()>>>,
    stop_rx: Shared<oneshot::Receiver<()>>,
    /// Why receives end (unset while they may wait): set with `stop_tx` by
    /// Close, Abort or a failure underneath; the first reason stays.
    stopped: std::sync::OnceLock<Stopped>,
    /// The receive that holds `recv` and waits, woken at the stop. The
    /// receives queued behind it on `recv` see `stopped` when they get the
    /// lock, one after another: none of them need a waker here.
    recv_stop: AtomicWaker,
    receives: AtomicUsize,
    events_tx: mpsc::UnboundedSender<ConnectionEvent>,
    events_rx: futures::lock::Mutex<mpsc::UnboundedReceiver<ConnectionEvent>>,
    trace: RacingTrace,
    remote: Arc<RemoteEndpoint>,
    local: Option<Arc<LocalEndpoint>>,
    /// Read from the socket on first use (or at close), not on the way to Ready.
    local_addr: std::sync::OnceLock<Option<SocketAddr>>,
    remote_addr: Option<SocketAddr>,
    singular_max: Option<u64>,
    reconnect: Option<crate::establish::Reconnect>,
    peer_early_data: bool,
    early_sent: bool,
}

/// A Connection (RFC 9622 §7): one established protocol stack that sends and
/// receives Messages. Identical on every target.
pub struct Connection {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("stack", &self.inner.caps.stack)
            .field("remote", &self.inner.remote_addr)
            .field("state", &self.state())
            .finish()
    }
}

struct ReceiveGuard<'a>(&'a AtomicUsize);
impl Drop for ReceiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Connection {
    // In the browser, Inner is not Send: a stack's send in progress
    // (`WriterState::sending`) is a browser future, and the page has one thread.
    #[allow(clippy::arc_with_non_send_sync)]
    pub(crate) fn from_parts(p: Parts, group: Option<Arc<Group>>) -> Connection {
        let (stop_tx, stop_rx) = oneshot::channel();
        let (events_tx, events_rx) = mpsc::unbounded();
        let group = group.unwrap_or_else(|| {
            Arc::new(Group {
                members: Mutex::new(Vec::new()),
                props: Mutex::new(p.props.connection.clone()),
            })
        });
        let remote_addr = p.remote_addr.or_else(|| p.transport.remote_addr());
        let singular_max = p.transport.singular_transmission_max();
        let (stream_sends, stream_receives) = p.transport.directions();
        let can_receive = stream_receives
            && p.props.direction != crate::properties::Direction::UnidirectionalSend;
        let inner = Arc::new(Inner {
            caps: p.caps,
            group: group.clone(),
            status: Mutex::new(Status {
                state: ConnState::Established,
                can_receive,
                conn_priority: p.props.connection.conn_priority,
            }),
            send_q: Mutex::new(SendQueue {
                frames: VecDeque::new(),
                next_seq: 0,
                batch: None,
                open_partial: None,
                held: Vec::new(),
                final_sent: false,
                shut: (!stream_sends
                    || p.props.direction == crate::properties::Direction::UnidirectionalReceive)
                    .then(|| {
                        Error::new(
                            ErrorReason::InvalidConfiguration,
                            "this Connection is unidirectional receive",
                        )
                    }),
                framers: p.framers.clone(),
            }),
            writer: futures::lock::Mutex::new(WriterState {
                transport: Some(p.transport.clone()),
                inflight: VecDeque::new(),
                written: Vec::new(),
                sending: None,
                front_offset: 0,
            }),
            recv: futures::lock::Mutex::new(RecvState {
                transport: Some(p.transport.clone()),
                buf: p.leftover,
                start: 0,
                framers: p.framers,
                current: None,
                eof: false,
                done: None,
                stream_context: None,
                datagrams: DatagramQueue::default(),
                direct: false,
                body: Vec::new(),
            }),
            abort_handle: Mutex::new(Some(p.transport)),
            stop_tx: Mutex::new(Some(stop_tx)),
            stop_rx: stop_rx.shared(),
            stopped: std::sync::OnceLock::new(),
            recv_stop: AtomicWaker::new(),
            receives: AtomicUsize::new(0),
            events_tx,
            events_rx: futures::lock::Mutex::new(events_rx),
            trace: p.trace,
            remote: Arc::new(p.remote),
            local: p.local.map(Arc::new),
            local_addr: std::sync::OnceLock::new(),
            remote_addr,
            singular_max,
            reconnect: p.reconnect,
            peer_early_data: p.peer_early_data,
            early_sent: p.early_sent,
            props: p.props,
        });
        group.members.lock().unwrap().push(Arc::downgrade(&inner));
        Connection { inner }
    }

    pub(crate) fn group(&self) -> Arc<Group> {
        self.inner.group.clone()
    }

    // ----- introspection -------------------------------------------------

    /// The protocol stack that won the race.
    pub fn stack(&self) -> StackId {
        self.inner.caps.stack
    }

    /// The RacingTrace of the establishment that made this Connection
    /// (empty for a Connection a Listener received).
    pub fn trace(&self) -> &RacingTrace {
        &self.inner.trace
    }

    /// The local address in use.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr()
    }

    /// The remote address in use.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr
    }

    /// The RemoteEndpoint this Connection was made for.
    pub fn remote_endpoint(&self) -> &RemoteEndpoint {
        &self.inner.remote
    }

    /// The LocalEndpoint it was made from, if one was given.
    pub fn local_endpoint(&self) -> Option<&LocalEndpoint> {
        self.inner.local.as_deref()
    }

    /// `connState` (§8.1.11.1).
    pub fn state(&self) -> ConnState {
        self.inner.status.lock().unwrap().state
    }

    /// `canSend` (§8.1.11.2): false after a Message marked final, after
    /// close/abort, and for unidirectional-receive Connections.
    pub fn can_send(&self) -> bool {
        let q = self.inner.send_q.lock().unwrap();
        q.shut.is_none() && !q.final_sent
    }

    /// `canReceive` (§8.1.11.3): false once the peer's final Message was
    /// delivered, after close/abort, and for unidirectional-send Connections.
    pub fn can_receive(&self) -> bool {
        self.inner.status.lock().unwrap().can_receive
    }

    /// `singularTransmissionMsgMaxLen` (§8.1.11.4): `None` is Not applicable (TCP).
    pub fn singular_transmission_msg_max_len(&self) -> Option<u64> {
        self.inner.singular_max
    }

    /// `sendMsgMaxLen` (§8.1.11.5): `None` is unlimited (a byte stream without framer).
    pub fn send_msg_max_len(&self) -> Option<u64> {
        if self.inner.caps.data_unit == DataUnit::ByteStream {
            if self.inner.send_q.lock().unwrap().framers.is_empty() {
                None
            } else {
                Some(crate::framer::LengthPrefixFramer::MAX_LEN as u64)
            }
        } else {
            self.inner.caps.max_message_len
        }
    }

    /// `recvMsgMaxLen` (§8.1.11.6): `None` is unlimited (a byte stream without framer).
    pub fn recv_msg_max_len(&self) -> Option<u64> {
        match self.inner.caps.data_unit {
            DataUnit::ByteStream if self.inner.send_q.lock().unwrap().framers.is_empty() => None,
            DataUnit::ByteStream => Some(RECV_MSG_MAX_LEN as u64),
            DataUnit::Message => self.inner.caps.max_message_len,
        }
    }

    /// A selection property read back after establishment (§6.2): Require
    /// when the chosen stack provides it, Prohibit when it does not.
    pub fn selected(&self, property: SelectionProperty) -> Preference {
        match property.support(&self.inner.caps) {
            Some(Support::Always) => Preference::Require,
            Some(Support::Never) => Preference::Prohibit,
            Some(Support::Optional) | None => match self.inner.props.get(property) {
                Preference::Require | Preference::Prefer => Preference::Require,
                _ => Preference::Prohibit,
            },
        }
    }

    /// The settable Connection Properties (`GetProperties()`), shared with the group.
    pub fn properties(&self) -> ConnectionProperties {
        let mut p = self.inner.group.props.lock().unwrap().clone();
        p.conn_priority = self.inner.status.lock().unwrap().conn_priority;
        p
    }

    /// Read any Connection Property by RFC name, the read-only ones included,
    /// and the protocol-specific ones of the stack (RFC 9622 §4.1): on a
    /// WebRTC data channel `webrtc.ordered`, `webrtc.maxRetransmits`,
    /// `webrtc.maxPacketLifeTime` (`notApplicable` when not set) and
    /// `webrtc.label`, read from the channel itself.
    pub fn get(&self, name: &str) -> Result<PropertyValue, Error> {
        let n = crate::properties::norm_name(name);
        let int = |v: Option<u64>| match v {
            Some(v) => PropertyValue::Integer(v),
            None => PropertyValue::Text("notApplicable".into()),
        };
        Ok(match n.as_str() {
            "connstate" => PropertyValue::Text(format!("{:?}", self.state())),
            "cansend" => PropertyValue::Bool(self.can_send()),
            "canreceive" => PropertyValue::Bool(self.can_receive()),
            "singulartransmissionmsgmaxlen" => int(self.singular_transmission_msg_max_len()),
            "sendmsgmaxlen" => int(self.send_msg_max_len()),
            "recvmsgmaxlen" => int(self.recv_msg_max_len()),
            _ => {
                if let Some(p) = SelectionProperty::from_name(name) {
                    return Ok(PropertyValue::Preference(self.selected(p)));
                }
                let p = self.properties();
                match n.as_str() {
                    "connpriority" => PropertyValue::Integer(p.conn_priority.into()),
                    "conntimeout" => PropertyValue::Duration(p.conn_timeout),
                    "keepalivetimeout" => PropertyValue::Duration(p.keep_alive_timeout),
                    "conncapacityprofile" => {
                        PropertyValue::Text(format!("{:?}", p.conn_capacity_profile))
                    }
                    "connscheduler" => PropertyValue::Text(format!("{:?}", p.conn_scheduler)),
                    "multipathpolicy" => PropertyValue::Text(format!("{:?}", p.multipath_policy)),
                    "isolatesession" => PropertyValue::Bool(p.isolate_session),
                    "groupconnlimit" => int(p.group_conn_limit),
                    "minsendrate" => int(p.min_send_rate),
                    "minrecvrate" => int(p.min_recv_rate),
                    "maxsendrate" => int(p.max_send_rate),
                    "maxrecvrate" => int(p.max_recv_rate),
                    "recvchecksumlen" => match p.recv_checksum_len {
                        ChecksumCoverage::Full => PropertyValue::Text("fullCoverage".into()),
                        ChecksumCoverage::Bytes(b) => PropertyValue::Integer(b.into()),
                    },
                    "tcp.usertimeoutvalue" => PropertyValue::Duration(p.tcp.user_timeout_value),
                    "tcp.usertimeoutenabled" => PropertyValue::Bool(p.tcp.user_timeout_enabled),
                    "tcp.usertimeoutchangeable" => {
                        PropertyValue::Bool(p.tcp.user_timeout_changeable)
                    }
                    _ => {
                        let stack_specific = self
                            .inner
                            .abort_handle
                            .lock()
                            .unwrap()
                            .as_ref()
                            .and_then(|t| t.protocol_property(&n));
                        return stack_specific.ok_or_else(|| {
                            Error::invalid_configuration(format!(
                                "unknown Connection Property `{name}`"
                            ))
                        });
                    }
                }
            }
        })
    }

    /// `SetProperty(property, value)` (§8): a failure leaves the Connection
    /// as it was. Every property but connPriority is shared with the group
    /// (entangled, §7.4) and applied to each member's socket.
    pub fn set_property(&self, name: &str, value: impl Into<PropertyValue>) -> Result<(), Error> {
        let mut candidate = self.properties();
        candidate.set(name, value)?;
        let caps = &self.inner.caps;
        if candidate.recv_checksum_len != ChecksumCoverage::Full {
            return Err(Error::invalid_configuration(format!(
                "recvChecksumLen below full coverage needs UDP-Lite; this Connection runs {}",
                caps.stack
            )));
        }
        let current = self.properties();
        if caps.stack == StackId::Tcp
            && !current.tcp.user_timeout_changeable
            && (candidate.tcp.user_timeout_value != current.tcp.user_timeout_value
                || candidate.tcp.user_timeout_enabled != current.tcp.user_timeout_enabled)
        {
            return Err(Error::invalid_configuration(
                "tcp.userTimeoutChangeable is false: the TCP user timeout cannot change",
            ));
        }
        if candidate
            .group_conn_limit
            .is_some_and(|l| (self.grouped_count() as u64) > l)
        {
            return Err(Error::invalid_configuration(format!(
                "groupConnLimit {:?} is below the {} Connections already in the group",
                candidate.group_conn_limit,
                self.grouped_count()
            )));
        }
        // Apply to every member's socket before committing.
        let members = self.members();
        if candidate.conn_capacity_profile != current.conn_capacity_profile {
            for m in &members {
                if let Some(t) = m.abort_handle.lock().unwrap().as_ref() {
                    t.set_dscp(candidate.conn_capacity_profile.dscp())
                        .map_err(|e| {
                            Error::new(ErrorReason::ProtocolFailed, format!("setting DSCP: {e}"))
                        })?;
                }
            }
        }
        {
            let mut g = self.inner.group.props.lock().unwrap();
            let prio = candidate.conn_priority;
            *g = candidate;
            self.inner.status.lock().unwrap().conn_priority = prio;
        }
        if let Some(t) = self.inner.abort_handle.lock().unwrap().as_ref() {
            let opts =
                crate::establish::socket_options(&self.inner.props, &self.properties(), None, None);
            crate::establish::apply_live_options(t, &opts);
        }
        Ok(())
    }

    fn members(&self) -> Vec<Arc<Inner>> {
        self.inner
            .group
            .members
            .lock()
            .unwrap()
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    fn grouped_count(&self) -> usize {
        self.members()
            .iter()
            .filter(|m| m.status.lock().unwrap().state != ConnState::Closed)
            .count()
    }

    // ----- sending -------------------------------------------------------

    /// `Send(messageData, messageContext?, endOfMessage?)` (§9.2).
    ///
    /// The Message is checked, framed and queued when this is called (and,
    /// when nothing is queued ahead of it and the stack has room, handed to
    /// the stack right then); the returned future resolves with exactly one
    /// outcome: `Sent` once the stack took the bytes (backpressure: it waits
    /// for socket space), or `Expired` / `SendError`. Dropping the future
    /// does not take the Message back: it still goes out, whole and in order.
    /// With `end_of_message` false, later calls with the same context
    /// continue the Message.
    ///
    /// `data` is anything that becomes [`Bytes`]: a `Vec<u8>` or `String`
    /// (taken without a copy), a `&'static [u8]` or `&'static str`, or a
    /// `Bytes` shared with other Messages (sent without a copy each time).
    pub fn send(
        &self,
        data: impl Into<Bytes>,
        context: Option<MessageContext>,
        end_of_message: bool,
    ) -> SendFuture {
        let data = data.into();
        let context = context.unwrap_or_default();
        let state = match self.enqueue(data, context, end_of_message) {
            Err(e) => SendState::Done(Some(Err(e))),
            Ok(Enqueued::Done(r)) => SendState::Done(Some(r)),
            // On the heap: the waiting state is large, and the future moves
            // with every await of the caller (a Message the stack took at
            // once, the usual case, never gets here).
            Ok(Enqueued::Waiting(rx)) => {
                SendState::Waiting(Box::pin(Inner::await_outcome(self.inner.clone(), rx)))
            }
            Ok(Enqueued::Held(rx)) => {
                SendState::Waiting(Box::pin(rx.map(|r| r.unwrap_or_else(|_| Err(dropped())))))
            }
        };
        SendFuture { state }
    }

    /// Send one whole Message with the Connection's default properties.
    pub fn send_message(&self, data: impl Into<Bytes>) -> SendFuture {
        self.send(data, None, true)
    }

    fn enqueue(
        &self,
        data: Bytes,
        context: MessageContext,
        end_of_message: bool,
    ) -> Result<Enqueued, SendFailure> {
        let inner = &self.inner;
        let fail = |context: &MessageContext, reason, msg: String| SendFailure::SendError {
            context: context.clone(),
            error: Error::new(reason, msg),
        };
        let props = context.resolve(&inner.props.message_defaults);
        let caps = &inner.caps;
        let mut q = inner.send_q.lock().unwrap();
        if let Some(why) = &q.shut {
            return Err(SendFailure::SendError {
                context,
                error: why.clone(),
            });
        }
        if q.final_sent {
            return Err(fail(
                &context,
                ErrorReason::InvalidMessageProperties,
                "a Message marked final was already sent; nothing can follow it (RFC 9622 §9.1.3.5)".into(),
            ));
        }
        // Properties the stack cannot honour are errors, never silently ignored.
        if props.msg_reliable == Some(true) && caps.reliability == Support::Never {
            return Err(fail(
                &context,
                ErrorReason::InvalidMessageProperties,
                format!("msgReliable true: {} cannot deliver reliably", caps.stack),
            ));
        }
        if props.msg_ordered == Some(true) && caps.preserve_order == Support::Never {
            return Err(fail(
                &context,
                ErrorReason::InvalidMessageProperties,
                format!("msgOrdered true: {} does not preserve order", caps.stack),
            ));
        }
        // Stacks whose reliability and order are fixed per instance (a WebRTC
        // data channel's options): a Message cannot ask for more.
        if props.msg_reliable == Some(true) || props.msg_ordered == Some(true) {
            let delivery = inner
                .abort_handle
                .lock()
                .unwrap()
                .as_ref()
                .and_then(Transport::delivery);
            if let Some((reliable, ordered)) = delivery {
                if props.msg_reliable == Some(true) && !reliable {
                    return Err(fail(
                        &context,
                        ErrorReason::InvalidMessageProperties,
                        format!("msgReliable true: this {} channel was created unreliable (its reliability is fixed when the channel opens)", caps.stack),
                    ));
                }
                if props.msg_ordered == Some(true) && !ordered {
                    return Err(fail(
                        &context,
                        ErrorReason::InvalidMessageProperties,
                        format!("msgOrdered true: this {} channel was created unordered (its order is fixed when the channel opens)", caps.stack),
                    ));
                }
            }
        }
        if props.msg_checksum_len != ChecksumCoverage::Full {
            return Err(fail(
                &context,
                ErrorReason::InvalidMessageProperties,
                format!(
                    "msgChecksumLen below full coverage needs UDP-Lite; this Connection runs {}",
                    caps.stack
                ),
            ));
        }
        if props.no_segmentation && caps.data_unit == DataUnit::ByteStream {
            return Err(fail(
                &context,
                ErrorReason::InvalidMessageProperties,
                format!(
                    "noSegmentation: {} is a byte stream and cannot keep a Message in one segment",
                    caps.stack
                ),
            ));
        }
        let is_stream = caps.data_unit == DataUnit::ByteStream;
        if !is_stream && !end_of_message {
            return Err(fail(
                &context,
                ErrorReason::InvalidMessageProperties,
                format!(
                    "partial sends need a byte stream; {} sends each Message as one datagram",
                    caps.stack
                ),
            ));
        }
        let datagram = is_stream
            && props.msg_reliable == Some(false)
            && caps.per_msg_reliability != Support::Never;
        if datagram {
            // RFC 9221 datagram: one whole Message, boundaries kept, no framer.
            if !end_of_message {
                return Err(fail(&context, ErrorReason::InvalidMessageProperties,
                    "an unreliable Message (msgReliable false) goes as one datagram and cannot be sent in parts".into()));
            }
            let limit = inner
                .abort_handle
                .lock()
                .unwrap()
                .as_ref()
                .and_then(Transport::max_datagram);
            match limit {
                None => {
                    return Err(fail(&context, ErrorReason::InvalidMessageProperties, format!(
                        "msgReliable false: the peer did not enable datagrams on this {} connection", caps.stack)))
                }
                Some(max) if data.len() as u64 > max => {
                    return Err(fail(&context, ErrorReason::MessageTooLarge, format!(
                        "a {}-byte unreliable Message is over the {max}-byte datagram limit of this path", data.len())))
                }
                Some(_) => {}
            }
            let (tx, rx) = oneshot::channel();
            let seq = q.next_seq;
            q.next_seq += 1;
            q.frames.push_back(Queued {
                seq,
                frame: Frame {
                    data,
                    ..Frame::default()
                },
                deadline: props
                    .msg_lifetime
                    .map(|l| runtime::saturating_add(runtime::now(), l)),
                context,
                reply: Some(tx),
                final_: false,
                datagram: true,
                held: None,
            });
            return Ok(Enqueued::Waiting(rx));
        }
        if let Some(open) = q.open_partial {
            if open != context.id() {
                return Err(fail(&context, ErrorReason::InvalidMessageProperties,
                    "another Message is still open (sent with end_of_message false); finish it before starting a new one on a byte stream".into()));
            }
        }
        let max = if is_stream && q.framers.is_empty() {
            None
        } else if is_stream {
            Some(crate::framer::LengthPrefixFramer::MAX_LEN as u64)
        } else {
            caps.max_message_len
        };
        if let Some(max) = max {
            if data.len() as u64 > max {
                return Err(fail(
                    &context,
                    ErrorReason::MessageTooLarge,
                    format!(
                        "a {}-byte Message is over sendMsgMaxLen {max} of {}",
                        data.len(),
                        caps.stack
                    ),
                ));
            }
        }
        if (props.no_fragmentation || props.no_segmentation) && !is_stream {
            if let Some(single) = inner.singular_max {
                if data.len() as u64 > single {
                    return Err(fail(&context, ErrorReason::MessageTooLarge, format!(
                        "a {}-byte Message with noFragmentation is over singularTransmissionMsgMaxLen {single}", data.len())));
                }
            }
        }
        let mut frame = Frame {
            data,
            ..Frame::default()
        };
        if let Err(e) = q.framers.frame(&mut frame, &context, end_of_message) {
            return Err(fail(
                &context,
                ErrorReason::InvalidMessageProperties,
                format!("framer: {e}"),
            ));
        }
        if !is_stream && frame.len() as u64 > caps.max_message_len.unwrap_or(u64::MAX) {
            return Err(fail(
                &context,
                ErrorReason::MessageTooLarge,
                format!(
                    "the framed Message ({} bytes) is over {}'s datagram limit",
                    frame.len(),
                    caps.stack
                ),
            ));
        }
        q.open_partial = if end_of_message {
            None
        } else {
            Some(context.id())
        };
        if !end_of_message && frame.is_empty() {
            // A framer holds this part until the last one: nothing goes out
            // yet, and the last part's outcome will be its outcome too.
            let (tx, rx) = oneshot::channel();
            let seq = q.next_seq;
            q.next_seq += 1;
            q.held.push(HeldPart {
                seq,
                context,
                reply: tx,
            });
            return Ok(Enqueued::Held(rx));
        }
        let held = (end_of_message && !q.held.is_empty())
            .then(|| std::mem::take(&mut q.held).into_boxed_slice());
        let final_ = props.final_ && end_of_message;
        if final_ {
            q.final_sent = true;
        }
        let seq = q.next_seq;
        q.next_seq += 1;
        let deadline = props
            .msg_lifetime
            .map(|l| runtime::saturating_add(runtime::now(), l));
        let mut queued = Some(Queued {
            seq,
            frame,
            deadline,
            context,
            reply: None,
            final_,
            datagram: false,
            held,
        });
        // The fast path: nothing ahead of this Message. (A Message with a
        // lifetime, or a final one, whose stream ending may need the
        // runtime, takes the queue.)
        if deadline.is_none() && !final_ && q.frames.is_empty() && q.batch.is_none() {
            match Inner::write_now(inner, &mut queued) {
                WriteNow::Done(r) => return Ok(Enqueued::Done(r)),
                WriteNow::Waiting(rx) => return Ok(Enqueued::Waiting(rx)),
                WriteNow::NotTried => {}
            }
        }
        let mut queued = queued.expect("taken only by a write that answers");
        let (tx, rx) = oneshot::channel();
        queued.reply = Some(tx);
        q.frames.push_back(queued);
        Ok(Enqueued::Waiting(rx))
    }

    /// InitiateWithSend: if the first Message already went out as 0-RTT early
    /// data during the handshake, its `Sent` (the first send of this Connection).
    pub(crate) fn sent_as_early_data(&self, context: &MessageContext) -> Option<Sent> {
        if !self.inner.early_sent {
            return None;
        }
        let mut q = self.inner.send_q.lock().unwrap();
        let sequence = q.next_seq;
        q.next_seq += 1;
        Some(Sent {
            context: context.clone(),
            sequence,
        })
    }

    /// `StartBatch()` (§9.2.4): Messages sent until [`end_batch`](Self::end_batch)
    /// are held and then handed to the stack together (one vectored write on
    /// a byte stream). Do not await a send future inside the batch: it
    /// resolves only after `end_batch`.
    pub fn start_batch(&self) {
        let mut q = self.inner.send_q.lock().unwrap();
        if q.batch.is_none() {
            let (tx, rx) = oneshot::channel();
            q.batch = Some((tx, rx.shared()));
        }
    }

    /// `EndBatch()`: release the batch; the held Messages go out on the next poll of any of their futures.
    pub fn end_batch(&self) {
        if let Some((tx, _)) = self.inner.send_q.lock().unwrap().batch.take() {
            let _ = tx.send(());
        }
    }

    // ----- receiving -----------------------------------------------------

    /// `Receive()` with no limits: the next Message (or part of one, on a
    /// byte stream without framer).
    pub async fn receive(&self) -> Result<ReceiveEvent, ReceiveError> {
        self.receive_with(None, None).await
    }

    /// `Receive(minIncompleteLength?, maxLength?)` (§9.3.1): one call, one
    /// event. A Message longer than `max_length` arrives as ReceivedPartial
    /// pieces; a partial piece is delivered once `min_incomplete_length`
    /// bytes of it are available.
    pub async fn receive_with(
        &self,
        min_incomplete_length: Option<usize>,
        max_length: Option<usize>,
    ) -> Result<ReceiveEvent, ReceiveError> {
        let inner = &self.inner;
        inner.receives.fetch_add(1, Ordering::SeqCst);
        let _guard = ReceiveGuard(&inner.receives);
        if inner.stopped.get().is_some() {
            return Err(inner.stopped_error());
        }
        let min = min_incomplete_length.unwrap_or(usize::MAX).max(1);
        let max = max_length.unwrap_or(usize::MAX).max(1);
        // Fast path: a Message already buffered is delivered without waiting.
        if inner.caps.data_unit == DataUnit::ByteStream {
            if let Some(mut st) = inner.recv.try_lock() {
                if st.done.is_none() && inner.status.lock().unwrap().can_receive {
                    if let Some(r) = inner.step_stream(&mut st, min, max) {
                        Inner::note_failure(&mut st, &r);
                        return r;
                    }
                }
            }
        }
        // Receives take their turns on `recv`, in order. One that must wait
        // for its turn also watches the stop itself: the receive ahead of it
        // may not be polled again (a future kept but no longer awaited).
        let mut st = match inner.recv.try_lock() {
            Some(st) => st,
            None => {
                let stop = inner.stop_rx.clone();
                futures::select_biased! {
                    _ = stop.fuse() => return Err(inner.stopped_error()),
                    st = inner.recv.lock().fuse() => st,
                }
            }
        };
        // The holder of `recv` is woken at the stop through `recv_stop`; its
        // registration goes when it is done or dropped.
        let _registered = StopRegistration(&inner.recv_stop);
        // The waiting part lives on the heap, keeping the receive future small.
        let mut work = Box::pin(inner.receive_locked(&mut st, min, max));
        std::future::poll_fn(|cx| {
            use std::task::Poll;
            if inner.stopped.get().is_some() {
                return Poll::Ready(Err(inner.stopped_error()));
            }
            if let Poll::Ready(r) = work.as_mut().poll(cx) {
                return Poll::Ready(r);
            }
            // Waiting: registered, then checked again, so that a stop
            // before the registration is seen and one after it wakes us.
            inner.recv_stop.register(cx.waker());
            if inner.stopped.get().is_some() {
                return Poll::Ready(Err(inner.stopped_error()));
            }
            Poll::Pending
        })
        .await
    }

    // ----- events and termination ----------------------------------------

    /// The next unsolicited event (Closed, ConnectionError, SoftError,
    /// PathChange, CloneError); `None` after the last one.
    pub async fn next_event(&self) -> Option<ConnectionEvent> {
        self.inner.events_rx.lock().await.next().await
    }

    /// `Close()` (§10): send every queued Message, finish the stream (TCP
    /// FIN), and wait until the peer has what was sent where the stack can
    /// tell (QUIC: the stream's data acknowledged; TCP and TLS: the peer's
    /// end of stream read, for at most [`CLOSE_LINGER`], so that no reset
    /// discards the tail); then resolve pending receives and emit `Closed`.
    /// Idempotent. It never waits forever: past [`CLOSE_TIMEOUT`] it aborts
    /// the Connection and fails with `Timeout`, and an `abort()` meanwhile
    /// ends it at once (every unanswered send fails with SendError).
    pub async fn close(&self) -> Result<(), Error> {
        Inner::close(&self.inner).await
    }

    /// `Abort()` (§10): stop at once (TCP RST). Queued Messages fail with
    /// SendError, pending receives with ReceiveError, and the event stream
    /// gets `ConnectionError` ("local Abort").
    pub fn abort(&self) {
        self.inner
            .abort(Error::new(ErrorReason::ConnectionAborted, "local Abort"));
    }

    /// `GroupedConnections()` (§7.4): every live Connection of this group, this one included.
    pub fn grouped_connections(&self) -> Vec<Connection> {
        self.members()
            .into_iter()
            .filter(|m| m.status.lock().unwrap().state != ConnState::Closed)
            .map(|inner| Connection { inner })
            .collect()
    }

    /// `CloseGroup()`: close every Connection of the group.
    pub async fn close_group(&self) -> Result<(), Error> {
        let members = self.members();
        let shared = members
            .iter()
            .find_map(|m| m.abort_handle.lock().unwrap().clone());
        let mut first_err = None;
        for m in members {
            if let Err(e) = Inner::close(&m).await {
                first_err.get_or_insert(e);
            }
        }
        // A multiplexed stack (QUIC) closes its connection once every stream finished.
        if let Some(t) = shared {
            t.close_shared(false);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// `AbortGroup()`: abort every Connection of the group.
    pub fn abort_group(&self) {
        let members = self.members();
        if let Some(t) = members
            .iter()
            .find_map(|m| m.abort_handle.lock().unwrap().clone())
        {
            t.close_shared(true);
        }
        for m in members {
            m.abort(Error::new(
                ErrorReason::ConnectionAborted,
                "local AbortGroup",
            ));
        }
    }

    /// `Clone(framer?, connectionProperties?)` (§7.4): a new Connection in
    /// this one's group, to the same remote, with the same properties
    /// (entangled) unless given. For TCP it is a new TCP connection. Fails
    /// with CloneError reasons (NotCloneable, or the attempt's failure).
    #[allow(clippy::should_implement_trait)]
    pub async fn clone(
        &self,
        framers: Option<Vec<Box<dyn crate::framer::Framer>>>,
        properties: Option<ConnectionProperties>,
    ) -> Result<Connection, Error> {
        let inner = &self.inner;
        // A Rendezvous Connection (WebRTC) has no remote address to reconnect
        // to, but clones as a new channel on the same peer connection.
        let reconnect = inner.reconnect.clone();
        if reconnect.is_none() && inner.caps.stack != StackId::Webrtc {
            return Err(Error::new(
                ErrorReason::NotCloneable,
                "a Connection received by a Listener cannot be cloned from this side",
            ));
        }
        let props_now = self.properties();
        if let Some(limit) = props_now.group_conn_limit {
            if self.grouped_count() as u64 >= limit {
                return Err(Error::new(
                    ErrorReason::NotCloneable,
                    format!("groupConnLimit {limit} reached"),
                ));
            }
        }
        let mut props = inner.props.clone();
        props.connection = properties.unwrap_or(props_now);
        let framers = match framers {
            Some(f) => FramerStack { framers: f },
            None => inner.send_q.lock().unwrap().framers.fresh(),
        };
        let Some(t) = inner.abort_handle.lock().unwrap().clone() else {
            return Err(Error::new(
                ErrorReason::NotCloneable,
                "the Connection is closed",
            ));
        };
        // A multiplexed stack (QUIC) clones as a new stream on the same connection.
        if let Some(opened) = t.open_sibling(&props).await {
            let transport = opened.map_err(|e| {
                Error::new(
                    ErrorReason::NotCloneable,
                    format!("opening a new {} stream: {e}", inner.caps.stack),
                )
            })?;
            let parts = Parts {
                transport,
                caps: inner.caps,
                framers,
                leftover: Vec::new(),
                props,
                trace: RacingTrace::new(),
                remote: (*inner.remote).clone(),
                remote_addr: inner.remote_addr,
                local: inner.local.as_deref().cloned(),
                reconnect,
                early_sent: false,
                peer_early_data: false,
            };
            return Ok(Connection::from_parts(parts, Some(inner.group.clone())));
        }
        let Some(reconnect) = reconnect else {
            return Err(Error::new(
                ErrorReason::NotCloneable,
                format!(
                    "{} cannot open another connection from this side",
                    inner.caps.stack
                ),
            ));
        };
        let parts = crate::establish::reconnect(
            &reconnect,
            props,
            framers,
            (*inner.remote).clone(),
            inner.local.as_deref().cloned(),
        )
        .await?;
        let conn = Connection::from_parts(parts, Some(inner.group.clone()));
        Ok(conn)
    }
}

/// In a waiting send future: on drop, the writer's work left behind (the
/// Messages queued or half-written) is finished by a task of its own, so
/// that it makes progress without the application polling anything.
struct FinishOnDrop(Option<Arc<Inner>>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        let Some(inner) = self.0.take() else {
            return;
        };
        if inner.stopped.get().is_some() {
            return; // stopped: the stop answers everything
        }
        let idle = inner.send_q.lock().unwrap().frames.is_empty()
            && inner.writer.try_lock().is_some_and(|w| {
                w.inflight.is_empty() && w.written.is_empty() && w.sending.is_none()
            });
        if idle {
            return;
        }
        runtime::spawn(async move {
            let stop = inner.stop_rx.clone();
            let flush = async {
                let mut w = inner.writer.lock().await;
                Inner::flush(&inner, &mut w).await;
            };
            futures::select_biased! {
                _ = Box::pin(flush).fuse() => {},
                _ = stop.fuse() => {},
            }
        });
    }
}

/// The waker a receive holding `recv` registered for the stop, taken out
/// when that receive ends or is dropped (while it still holds `recv`): no
/// finished task is kept alive by it.
struct StopRegistration<'a>(&'a AtomicWaker);

impl Drop for StopRegistration<'_> {
    fn drop(&mut self) {
        drop(self.0.take());
    }
}

/// Why a Connection's receives ended (`Inner::stopped`).
enum Stopped {
    /// `Close()`.
    Closed,
    /// `Abort()`.
    Aborted,
    /// The stack failed underneath, with this error.
    Failed(Error),
}

impl Inner {
    fn local_addr(&self) -> Option<SocketAddr> {
        *self.local_addr.get_or_init(|| {
            self.abort_handle
                .lock()
                .unwrap()
                .as_ref()
                .and_then(Transport::local_addr)
        })
    }

    /// Stop: every pending and later receive ends (with [`Self::stopped_error`],
    /// which says `why`), and a send waiting for the writer stops waiting.
    /// The first reason given stays.
    fn stop(&self, why: Stopped) {
        let _ = self.stopped.set(why);
        if let Some(tx) = self.stop_tx.lock().unwrap().take() {
            let _ = tx.send(());
        }
        self.recv_stop.wake();
    }

    fn stopped_error(&self) -> ReceiveError {
        let why = match self.stopped.get() {
            Some(Stopped::Failed(e)) => format!("the Connection failed: {}", e.message),
            Some(Stopped::Aborted) => "the Connection was aborted".to_string(),
            Some(Stopped::Closed) | None => "the Connection was closed locally".to_string(),
        };
        ReceiveError {
            context: None,
            error: Error::new(ErrorReason::ConnectionAborted, why),
        }
    }

    /// The fast path of `send`: nothing is queued or in flight and the
    /// writer is free, so the frame goes to the stack at once, in one poll
    /// without a task context. A byte stream that takes only part of it
    /// keeps the rest in the writer state (the send future's flush finishes
    /// it and registers for socket space); one that takes nothing, or fails,
    /// leaves the Message to be queued as usual (the flush meets the error
    /// again and reports it). A message stack sends it whole or not at all;
    /// its error is the outcome, as in the flush.
    fn write_now(inner: &Arc<Inner>, slot: &mut Option<Queued>) -> WriteNow {
        let Some(f) = slot.as_mut() else {
            return WriteNow::NotTried;
        };
        let Some(mut w) = inner.writer.try_lock() else {
            return WriteNow::NotTried;
        };
        if !w.inflight.is_empty() || !w.written.is_empty() || w.sending.is_some() {
            return WriteNow::NotTried;
        }
        let Some(t) = w.transport.as_ref() else {
            return WriteNow::NotTried;
        };
        if inner.caps.data_unit != DataUnit::ByteStream {
            // One Message, one datagram (or WebSocket message), if the stack
            // has room right now.
            return match t.try_send_datagram(&f.frame.contiguous()) {
                None => WriteNow::NotTried,
                Some(r) => WriteNow::Done(f.outcome(datagram_outcome(r))),
            };
        }
        if !t.writes_cancel_safe() {
            return WriteNow::NotTried;
        }
        let len = f.frame.len();
        let polled = {
            let parts = [
                IoSlice::new(&f.frame.prefix),
                IoSlice::new(&f.frame.data),
                IoSlice::new(&f.frame.suffix),
            ];
            let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
            t.poll_write_vectored(&mut cx, &parts)
        };
        let n = match polled {
            std::task::Poll::Ready(Ok(n)) if n > 0 || len == 0 => n,
            _ => return WriteNow::NotTried,
        };
        if n == len && !t.holds_unsent() {
            return WriteNow::Done(f.outcome(Ok(())));
        }
        let (tx, rx) = oneshot::channel();
        let mut f = slot.take().expect("checked above");
        f.reply = Some(tx);
        if n == len {
            w.written.push(f);
        } else {
            w.front_offset = n;
            w.inflight.push_back(f);
        }
        WriteNow::Waiting(rx)
    }

    async fn await_outcome(inner: Arc<Inner>, rx: oneshot::Receiver<SendResult>) -> SendResult {
        // Dropped before its answer, this future leaves its Message (and
        // maybe others) queued or half-written: the guard hands that work
        // to a task of its own, so it goes out without a later send or close.
        let mut guard = FinishOnDrop(Some(inner));
        let r = Self::wait_for_outcome(guard.0.as_ref().expect("set"), rx).await;
        guard.0 = None; // answered: nothing left behind by this future
        r
    }

    async fn wait_for_outcome(
        inner: &Arc<Inner>,
        mut rx: oneshot::Receiver<SendResult>,
    ) -> SendResult {
        loop {
            if let Ok(Some(r)) = rx.try_recv() {
                return r;
            }
            let batch = inner
                .send_q
                .lock()
                .unwrap()
                .batch
                .as_ref()
                .map(|(_, r)| r.clone());
            if let Some(batch_end) = batch {
                futures::select_biased! {
                    r = (&mut rx).fuse() => return r.unwrap_or_else(|_| Err(dropped())),
                    _ = batch_end.fuse() => continue,
                }
            }
            // Fast path: the writer is free and the socket takes the bytes.
            // The flush runs on this poll's stack, so the send future does
            // not carry its (large) state; dropping it unfinished is safe,
            // as the write position lives in the writer state.
            let flushed = std::future::poll_fn(|cx| {
                let Some(mut w) = inner.writer.try_lock() else {
                    return std::task::Poll::Ready(false);
                };
                if !w
                    .transport
                    .as_ref()
                    .is_some_and(Transport::writes_cancel_safe)
                {
                    return std::task::Poll::Ready(false);
                }
                let flush = std::pin::pin!(Inner::flush(inner, &mut w));
                std::task::Poll::Ready(flush.poll(cx).is_ready())
            })
            .await;
            if flushed {
                continue;
            }
            let flush = async {
                let mut w = inner.writer.lock().await;
                Inner::flush(inner, &mut w).await;
            };
            // On the heap: the flush state is large, and a send future that
            // held it inline would be copied whole each time it moves.
            let mut flush = Box::pin(flush);
            let stop = inner.stop_rx.clone();
            futures::select_biased! {
                r = (&mut rx).fuse() => return r.unwrap_or_else(|_| Err(dropped())),
                _ = flush.as_mut().fuse() => {},
                _ = stop.fuse() => {
                    // Stopped (Abort, or a failure): the flush, which may be
                    // blocked on a peer that does not read, lets go of the
                    // writer, and every Message the writer still holds is
                    // answered (Abort answered the queued ones already).
                    drop(flush);
                    inner.answer_writes_after_stop();
                    return rx.await.unwrap_or_else(|_| Err(dropped()));
                }
            }
        }
    }

    /// Hand every queued Message to the stack, in order. Cancel-safe where
    /// the stack's writes are (`Transport::writes_cancel_safe`): the write
    /// position and the Messages waiting for their answer live in the writer
    /// state, so a flush dropped midway is resumed by the next one.
    async fn flush(inner: &Arc<Inner>, w: &mut WriterState) {
        {
            let mut q = inner.send_q.lock().unwrap();
            if q.batch.is_some() {
                return;
            }
            if w.inflight.is_empty() {
                // The usual case: take the queue whole instead of moving each Message.
                std::mem::swap(&mut w.inflight, &mut q.frames);
            } else {
                w.inflight.extend(q.frames.drain(..));
            }
        }
        let Some(transport) = w.transport.clone() else {
            for mut f in w.unanswered() {
                f.answer(Err(SendFailureKind::Error(Error::new(
                    ErrorReason::ConnectionAborted,
                    "the Connection is closed",
                ))));
            }
            return;
        };
        // A whole Message whose send an earlier flush left running goes first.
        if let Some((_, send)) = w.sending.as_mut() {
            let r = send.as_mut().await;
            let (f, _) = w.sending.take().expect("sending");
            Self::answer_whole(inner, &transport, f, r);
        }
        let is_stream = inner.caps.data_unit == DataUnit::ByteStream;
        while !w.inflight.is_empty() {
            // Drop expired Messages that have not started going out (the
            // clock is read only when some Message has a lifetime).
            let now = if w.inflight.iter().any(|q| q.deadline.is_some()) {
                Some(runtime::now())
            } else {
                None
            };
            let expired = |d: Option<Instant>| matches!((d, now), (Some(d), Some(n)) if n >= d);
            if w.front_offset == 0 {
                let front = w.inflight.front_mut().expect("non-empty");
                if expired(front.deadline) {
                    let mut f = w.inflight.pop_front().expect("non-empty");
                    f.answer(Err(SendFailureKind::Expired));
                    continue;
                }
            }
            if is_stream && w.front_offset == 0 && w.inflight.front().is_some_and(|f| f.datagram) {
                Self::send_whole(inner, w, &transport).await;
                continue;
            }
            if is_stream {
                let res = {
                    // Up to STACK_IOV slices live on the stack (the usual case:
                    // a few Messages); more spill into a Vec.
                    let mut on_stack = [IoSlice::new(&[]); STACK_IOV];
                    let mut used = 0;
                    let mut spilled: Vec<IoSlice<'_>> = Vec::new();
                    let mut skip = w.front_offset;
                    let mut any = false;
                    for q in w.inflight.iter().take(MAX_IOV) {
                        if (q.datagram || expired(q.deadline)) && any {
                            break; // a datagram, or expired: handled at the front next round
                        }
                        for part in [&q.frame.prefix[..], &q.frame.data[..], &q.frame.suffix[..]] {
                            if skip >= part.len() {
                                skip -= part.len();
                                continue;
                            }
                            let slice = IoSlice::new(&part[skip..]);
                            if used < STACK_IOV {
                                on_stack[used] = slice;
                                used += 1;
                            } else {
                                if spilled.is_empty() {
                                    spilled.extend_from_slice(&on_stack);
                                }
                                spilled.push(slice);
                            }
                            any = true;
                            skip = 0;
                        }
                    }
                    let slices: &[IoSlice<'_>] = if spilled.is_empty() {
                        &on_stack[..used]
                    } else {
                        &spilled
                    };
                    if slices.is_empty() {
                        Ok(0)
                    } else {
                        transport.write_vectored(slices).await
                    }
                };
                match res {
                    Ok(mut n) => {
                        // Messages the stack took whole are answered now, or
                        // (if it still holds bytes, as TLS may) once it has
                        // pushed them out.
                        let held = transport.holds_unsent() || !w.written.is_empty();
                        // Retire whole frames, keep the offset into a partial one.
                        while let Some(front) = w.inflight.front() {
                            let left = front.frame.len() - w.front_offset;
                            if n < left {
                                w.front_offset += n;
                                break;
                            }
                            n -= left;
                            w.front_offset = 0;
                            let mut f = w.inflight.pop_front().expect("front");
                            if held {
                                w.written.push(f);
                            } else {
                                Self::answer_sent(&transport, &mut f);
                            }
                        }
                    }
                    Err(e) => {
                        Self::fail_writes(
                            inner,
                            w,
                            format!("the stream failed while sending: {e}"),
                        );
                        return;
                    }
                }
                if !w.written.is_empty() && !Self::answer_written(inner, w, &transport).await {
                    return;
                }
            } else {
                Self::send_whole(inner, w, &transport).await;
            }
        }
        // A flush dropped while the stack pushed out its bytes left Messages
        // to answer.
        if !w.written.is_empty() {
            Self::answer_written(inner, w, &transport).await;
        }
    }

    /// Hand the front Message whole to the stack (one datagram, WebSocket or
    /// data-channel message) and answer it. A cancel-safe send is awaited in
    /// place, the Message leaving the queue only once taken; any other runs
    /// from `WriterState::sending`, so that a flush dropped midway resumes
    /// it instead of sending the Message again.
    async fn send_whole(inner: &Arc<Inner>, w: &mut WriterState, transport: &Transport) {
        let (f, r) = if transport.writes_cancel_safe() {
            let front = w.inflight.front().expect("non-empty");
            let r = transport.send_datagram(&front.frame.contiguous()).await;
            (w.inflight.pop_front().expect("front"), r)
        } else {
            let f = w.inflight.pop_front().expect("non-empty");
            // The data itself is shared, not copied, unless a framer added bytes.
            let data = if f.frame.prefix.is_empty() && f.frame.suffix.is_empty() {
                f.frame.data.clone()
            } else {
                Bytes::from(f.frame.concat())
            };
            let t = transport.clone();
            let send: runtime::BoxFuture<'static, std::io::Result<()>> =
                Box::pin(async move { t.send_datagram(&data).await });
            let (_, send) = w.sending.insert((f, send));
            let r = send.as_mut().await;
            (w.sending.take().expect("sending").0, r)
        };
        Self::answer_whole(inner, transport, f, r);
    }

    /// A whole Message went to the stack (or failed): its outcome. A final
    /// Message ends this direction (WebSocket: the Close frame) where the
    /// stack has a half-close; a WebRTC data channel has none
    /// (`Capabilities::final_ends_sending`).
    fn answer_whole(inner: &Inner, transport: &Transport, mut f: Queued, r: std::io::Result<()>) {
        match r {
            Ok(()) if f.final_ && inner.caps.final_ends_sending => {
                match transport.shutdown_write() {
                    Ok(()) => f.answer(Ok(())),
                    Err(e) => f.answer(Err(SendFailureKind::Error(Error::new(
                        ErrorReason::ProtocolFailed,
                        format!("ending the stream after the final Message: {e}"),
                    )))),
                }
            }
            r => f.answer(datagram_outcome(r)),
        }
    }

    /// Once the stack has pushed out what it holds, answer the Messages it
    /// took (and finish the stream after a final one). False when the stack failed.
    async fn answer_written(
        inner: &Arc<Inner>,
        w: &mut WriterState,
        transport: &Transport,
    ) -> bool {
        if let Err(e) = transport.flush().await {
            Self::fail_writes(inner, w, format!("the stream failed while sending: {e}"));
            return false;
        }
        for mut f in w.written.drain(..) {
            Self::answer_sent(transport, &mut f);
        }
        true
    }

    /// A stream Message is out: answer Sent, after finishing the stream if
    /// it was the final one.
    fn answer_sent(transport: &Transport, f: &mut Queued) {
        let finished = if f.final_ {
            transport.shutdown_write().map_err(|e| {
                SendFailureKind::Error(Error::new(
                    ErrorReason::ProtocolFailed,
                    format!("finishing the stream: {e}"),
                ))
            })
        } else {
            Ok(())
        };
        f.answer(finished);
    }

    /// The stream failed while sending: every Message not yet answered gets
    /// the error, and the Connection fails.
    fn fail_writes(inner: &Arc<Inner>, w: &mut WriterState, why: String) {
        let err = Error::new(ErrorReason::ConnectionAborted, why);
        for mut f in w.unanswered() {
            f.answer(Err(SendFailureKind::Error(err.clone())));
        }
        inner.fail(err);
    }

    /// The stack failed underneath: nothing more can be sent or received.
    fn fail(&self, err: Error) {
        let first = {
            let mut st = self.status.lock().unwrap();
            let first = st.state != ConnState::Closed;
            st.state = ConnState::Closed;
            st.can_receive = false;
            first
        };
        let held = {
            let mut q = self.send_q.lock().unwrap();
            q.shut.get_or_insert(err.clone());
            std::mem::take(&mut q.held)
        };
        for part in held {
            part.answer(Err(SendFailureKind::Error(err.clone())));
        }
        if first {
            self.stop(Stopped::Failed(err.clone()));
            let _ = self
                .events_tx
                .unbounded_send(ConnectionEvent::ConnectionError(err));
            self.events_tx.close_channel();
        }
    }

    /// Close ran out of time ([`CLOSE_TIMEOUT`]): abort, and the error that
    /// says so (every Message still unanswered fails with it).
    fn close_timed_out(&self) -> Error {
        let err = Error::new(
            ErrorReason::Timeout,
            format!(
                "close: the peer did not take what was sent within {} s; the Connection was aborted",
                CLOSE_TIMEOUT.as_secs()
            ),
        );
        self.abort(err.clone());
        self.answer_writes_after_stop();
        err
    }

    /// After the stop: if the writer is free (no flush holds it any more),
    /// answer every Message it still holds with the reason of the stop, and
    /// let go of the stack. A writer still held is answered by its holder,
    /// which sees the stop too.
    fn answer_writes_after_stop(&self) {
        let Some(mut w) = self.writer.try_lock() else {
            return;
        };
        let err = match self.stopped.get() {
            Some(Stopped::Failed(e)) => e.clone(),
            Some(Stopped::Aborted) => Error::new(ErrorReason::ConnectionAborted, "local Abort"),
            Some(Stopped::Closed) | None => {
                Error::new(ErrorReason::ConnectionAborted, "the Connection is closed")
            }
        };
        for mut f in w.unanswered() {
            f.answer(Err(SendFailureKind::Error(err.clone())));
        }
        w.transport = None;
    }

    fn abort(&self, err: Error) {
        {
            let mut st = self.status.lock().unwrap();
            if st.state == ConnState::Closed {
                return;
            }
            st.state = ConnState::Closed;
            st.can_receive = false;
        }
        let (queued, held): (Vec<Queued>, Vec<HeldPart>) = {
            let mut q = self.send_q.lock().unwrap();
            q.shut.get_or_insert(err.clone());
            q.batch = None;
            (q.frames.drain(..).collect(), std::mem::take(&mut q.held))
        };
        for part in held {
            part.answer(Err(SendFailureKind::Error(err.clone())));
        }
        for mut f in queued {
            f.answer(Err(SendFailureKind::Error(err.clone())));
        }
        self.local_addr();
        if let Some(t) = self.abort_handle.lock().unwrap().take() {
            t.abort();
        }
        self.stop(Stopped::Aborted);
        // In-flight Messages are answered by whoever holds the writer; take it
        // if free. Dropping the last handle of the socket closes it, and with
        // linger 0 that close is a reset.
        if let Some(mut w) = self.writer.try_lock() {
            for mut f in w.unanswered() {
                f.answer(Err(SendFailureKind::Error(err.clone())));
            }
            w.transport = None;
        }
        if let Some(mut r) = self.recv.try_lock() {
            r.transport = None;
            r.done.get_or_insert(err.clone());
        }
        let _ = self
            .events_tx
            .unbounded_send(ConnectionEvent::ConnectionError(err));
        self.events_tx.close_channel();
    }

    async fn close(inner: &Arc<Inner>) -> Result<(), Error> {
        {
            let mut st = inner.status.lock().unwrap();
            match st.state {
                ConnState::Closed => return Ok(()),
                ConnState::Closing => {}
                _ => st.state = ConnState::Closing,
            }
        }
        {
            let mut q = inner.send_q.lock().unwrap();
            if let Some((tx, _)) = q.batch.take() {
                let _ = tx.send(());
            }
            q.shut.get_or_insert(Error::new(
                ErrorReason::ConnectionAborted,
                "the Connection is closing",
            ));
            // A Message whose last part never came cannot go out.
            for part in std::mem::take(&mut q.held) {
                part.answer(Err(SendFailureKind::Error(Error::new(
                    ErrorReason::InvalidMessageProperties,
                    "the Connection closed before the last part of this Message (end_of_message true) was sent",
                ))));
            }
        }
        // Deliver everything queued, finish the stream, and wait until the
        // peer has it where the stack can tell (a QUIC stream's data
        // acknowledged), unless an Abort (or a failure) stops the Connection
        // meanwhile: then the writer, and the sends it holds, are answered at
        // once. All of it within CLOSE_TIMEOUT.
        let deadline = runtime::saturating_add(runtime::now(), CLOSE_TIMEOUT);
        let stop = inner.stop_rx.clone();
        let finish = async {
            let mut w = inner.writer.lock().await;
            Inner::flush(inner, &mut w).await;
            let t = w.transport.take();
            drop(w);
            if let Some(t) = t {
                if t.shutdown_write().is_ok() {
                    return t.delivered().await;
                }
            }
            Ok(())
        };
        let mut finish = Box::pin(finish);
        let mut timer = Box::pin(runtime::sleep_until(deadline).fuse());
        let ended = futures::select_biased! {
            r = finish.as_mut().fuse() => Some(r),
            _ = stop.fuse() => None,
            _ = &mut timer => Some(Err(std::io::Error::from(std::io::ErrorKind::TimedOut))),
        };
        drop(finish);
        if timer.is_terminated() {
            return Err(inner.close_timed_out());
        }
        if ended.is_none() {
            inner.answer_writes_after_stop();
        }
        // Resolve pending receives before Closed.
        inner.stop(Stopped::Closed);
        let mut st = inner.recv.lock().await;
        let reader = st.transport.take();
        drop(st);
        // TCP and TLS: read the peer's side to its end (and drop what
        // arrives), so that closing the socket with unread data does not
        // reset the connection and discard the tail of what we sent. A peer
        // that keeps its side open gets CLOSE_LINGER for that, then the
        // socket closes anyway.
        if let Some(t) = reader.filter(|_| ended.is_some()) {
            let linger = runtime::saturating_add(runtime::now(), CLOSE_LINGER);
            let linger = if linger < deadline { linger } else { deadline };
            futures::select_biased! {
                _ = Box::pin(t.drain_to_end()).fuse() => {},
                _ = Box::pin(runtime::sleep_until(linger)).fuse() => {},
            }
        }
        if let Some(Err(e)) = ended {
            // The stack reported that the peer did not take it all.
            let err = Error::new(
                ErrorReason::ConnectionAborted,
                format!("close: the peer did not take everything sent: {e}"),
            );
            inner.fail(err.clone());
            return Err(err);
        }
        for _ in 0..10_000 {
            if inner.receives.load(Ordering::SeqCst) == 0 {
                break;
            }
            futures::future::ready(()).await;
            runtime::sleep_until(runtime::now() + std::time::Duration::from_millis(1)).await;
        }
        inner.local_addr();
        inner.abort_handle.lock().unwrap().take();
        {
            let mut s = inner.status.lock().unwrap();
            if s.state == ConnState::Closed {
                return Ok(()); // aborted meanwhile: ConnectionError was the last event
            }
            s.state = ConnState::Closed;
            s.can_receive = false;
        }
        let _ = inner.events_tx.unbounded_send(ConnectionEvent::Closed);
        inner.events_tx.close_channel();
        Ok(())
    }

    async fn receive_locked(
        &self,
        st: &mut RecvState,
        min_incomplete: usize,
        max_len: usize,
    ) -> Result<ReceiveEvent, ReceiveError> {
        if let Some(e) = &st.done {
            return Err(ReceiveError {
                context: None,
                error: e.clone(),
            });
        }
        if !self.status.lock().unwrap().can_receive {
            return Err(ReceiveError {
                context: None,
                error: Error::new(ErrorReason::InvalidConfiguration, "this Connection cannot receive (unidirectional send, or the peer's final Message was delivered)"),
            });
        }
        let r = if self.caps.data_unit == DataUnit::ByteStream {
            self.receive_stream(st, min_incomplete, max_len).await
        } else {
            self.receive_datagram(st, max_len).await
        };
        Inner::note_failure(st, &r);
        r
    }

    /// The peer finished cleanly: nothing more can be received, which is
    /// not a failure (ReceiveError reason PeerFinished, no SoftError).
    fn peer_finished(&self, how: String) -> ReceiveError {
        self.status.lock().unwrap().can_receive = false;
        ReceiveError {
            context: None,
            error: Error::new(ErrorReason::PeerFinished, how),
        }
    }

    /// After a failure the receive side stays failed: a byte stream that lost
    /// its framing, or a broken or finished stack, yields nothing more.
    fn note_failure(st: &mut RecvState, r: &Result<ReceiveEvent, ReceiveError>) {
        if let Err(e) = r {
            if matches!(
                e.error.reason,
                ErrorReason::DeframingFailed
                    | ErrorReason::ConnectionAborted
                    | ErrorReason::ProtocolFailed
                    | ErrorReason::PeerFinished
            ) {
                st.done = Some(e.error.clone());
            }
        }
    }

    fn compact(st: &mut RecvState) {
        if st.start > 0 && (st.start == st.buf.len() || st.start > 64 * 1024) {
            st.buf.drain(..st.start);
            st.start = 0;
        }
    }

    async fn read_more(&self, st: &mut RecvState) -> Result<(), ReceiveError> {
        Self::compact(st);
        let Some(t) = st.transport.clone() else {
            return Err(ReceiveError {
                context: None,
                error: Error::new(ErrorReason::ConnectionAborted, "the Connection is closed"),
            });
        };
        match t.read(&mut st.buf).await {
            Ok(Recv::Bytes) => Ok(()),
            Ok(Recv::Eof) => {
                st.eof = true;
                Ok(())
            }
            Ok(Recv::Datagram(d)) => {
                st.datagrams.push(d, &self.events_tx);
                Ok(())
            }
            Err(e) => Err(Self::stream_failed(e)),
        }
    }

    /// The receive error of a stack that failed underneath.
    fn stream_failed(e: std::io::Error) -> ReceiveError {
        ReceiveError {
            context: None,
            error: Error::new(
                ErrorReason::ConnectionAborted,
                format!("the stream failed: {e}"),
            ),
        }
    }

    /// The next `n` buffered bytes, as a Message's data.
    fn take(st: &mut RecvState, n: usize) -> Bytes {
        Self::take_vec(st, n).into()
    }

    /// The next `n` buffered bytes.
    fn take_vec(st: &mut RecvState, n: usize) -> Vec<u8> {
        let v = st.buf[st.start..st.start + n].to_vec();
        st.start += n;
        v
    }

    fn received_context(&self, final_: bool) -> MessageContext {
        let mut c = MessageContext::received(Some(self.remote.clone()), self.local.clone(), final_);
        c.set_early_data(self.peer_early_data);
        c
    }

    async fn receive_stream(
        &self,
        st: &mut RecvState,
        min_incomplete: usize,
        max_len: usize,
    ) -> Result<ReceiveEvent, ReceiveError> {
        // A receive that cannot take the body whole (a smaller maxLength
        // than an earlier, cancelled receive had) goes back to the buffer.
        if st.direct && st.current.as_ref().is_some_and(|c| c.remaining > max_len) {
            Self::leave_direct(st);
        }
        loop {
            if let Some(r) = self.step_stream(st, min_incomplete, max_len) {
                return r;
            }
            if let Some(r) = self.read_body_directly(st, max_len).await {
                return r;
            }
            self.read_more(st).await?;
        }
    }

    /// A large Message body, most of it not buffered yet, is read straight
    /// into its own Vec, which becomes the received data: one copy fewer than
    /// reading into the buffer and copying it out (and no regrowing of the
    /// buffer for a body larger than a read). Cancel-safe: the body so
    /// far lives in the receive state. `None` when this does not apply (or
    /// the stream ended: the buffer path then reports the cut Message).
    async fn read_body_directly(
        &self,
        st: &mut RecvState,
        max_len: usize,
    ) -> Option<Result<ReceiveEvent, ReceiveError>> {
        if !st.direct {
            let cur = st.current.as_ref()?;
            let avail = st.buf.len() - st.start;
            if cur.delivered_any
                || cur.trailer != 0
                || cur.remaining < DIRECT_READ_MIN
                || cur.remaining > max_len
                || avail > cur.remaining / 2
                || st.framers.framers.len() != 1
                || st.eof
                || !st
                    .transport
                    .as_ref()
                    .is_some_and(Transport::reads_bodies_directly)
            {
                return None;
            }
            st.body = Vec::with_capacity(cur.remaining);
            st.body.extend_from_slice(&st.buf[st.start..]);
            st.start = st.buf.len();
            Self::compact(st);
            st.direct = true;
        }
        let Some(t) = st.transport.clone() else {
            Self::leave_direct(st);
            return None;
        };
        let need = st
            .current
            .as_ref()
            .expect("a Message in direct mode")
            .remaining;
        while st.body.len() < need {
            let want = need - st.body.len();
            match t.read_up_to(&mut st.body, want).await {
                Ok(Recv::Bytes) => {}
                Ok(Recv::Datagram(d)) => st.datagrams.push(d, &self.events_tx),
                Ok(Recv::Eof) => {
                    Self::leave_direct(st);
                    st.eof = true;
                    return None;
                }
                Err(e) => {
                    Self::leave_direct(st);
                    return Some(Err(Self::stream_failed(e)));
                }
            }
        }
        st.direct = false;
        let mut body = std::mem::take(&mut st.body);
        if body.len() > need {
            // The next Message's first bytes.
            st.buf.extend_from_slice(&body[need..]);
            body.truncate(need);
        }
        let cur = st.current.take().expect("a Message in direct mode");
        Some(Self::whole_message(st, body, cur.context))
    }

    /// A whole Message's body, through the framers' unwrapping, as received.
    fn whole_message(
        st: &mut RecvState,
        body: Vec<u8>,
        context: MessageContext,
    ) -> Result<ReceiveEvent, ReceiveError> {
        match st.framers.unwrap_inner(body, RECV_MSG_MAX_LEN) {
            Ok(data) => Ok(ReceiveEvent::Received {
                data: data.into(),
                context,
            }),
            Err(e) => Err(ReceiveError {
                context: Some(context),
                error: Error::new(ErrorReason::DeframingFailed, e.message),
            }),
        }
    }

    /// Back from direct mode: the body read so far goes in front of the buffer.
    fn leave_direct(st: &mut RecvState) {
        if !st.direct {
            return;
        }
        st.direct = false;
        let mut b = std::mem::take(&mut st.body);
        b.extend_from_slice(&st.buf[st.start..]);
        st.buf = b;
        st.start = 0;
    }

    /// Deliver from what is already buffered, without I/O; `None` when more
    /// bytes must be read first.
    fn step_stream(
        &self,
        st: &mut RecvState,
        min_incomplete: usize,
        max_len: usize,
    ) -> Option<Result<ReceiveEvent, ReceiveError>> {
        if st.direct {
            return None; // the body is being read straight into its own Vec
        }
        loop {
            // Datagrams are whole Messages; deliver them between stream Messages.
            if st.current.is_none() {
                if let Some(data) = st.datagrams.pop(&self.events_tx) {
                    // It came unreliably: say so (msgReliable false), so an
                    // echo can answer the same way.
                    let mut context = self.received_context(false);
                    context.properties.msg_reliable = Some(false);
                    return Some(Ok(ReceiveEvent::Received { data, context }));
                }
            }
            let avail = st.buf.len() - st.start;
            if st.framers.is_empty() {
                // No framer: the whole stream is one Message, delivered in parts (RFC 9623 §5).
                let ctx = st
                    .stream_context
                    .get_or_insert_with(|| self.received_context(false))
                    .clone();
                if st.eof {
                    let n = avail.min(max_len);
                    let data = Self::take(st, n);
                    let end = st.start == st.buf.len();
                    let mut ctx = ctx;
                    if end {
                        ctx.set_final(true);
                        self.status.lock().unwrap().can_receive = false;
                        st.done = Some(Error::new(
                            ErrorReason::PeerFinished,
                            "the peer finished sending; its final Message was delivered",
                        ));
                    }
                    return Some(Ok(ReceiveEvent::ReceivedPartial {
                        data,
                        context: ctx,
                        end_of_message: end,
                    }));
                }
                if avail > 0 && (avail >= min_incomplete || avail >= max_len) {
                    let data = Self::take(st, avail.min(max_len));
                    return Some(Ok(ReceiveEvent::ReceivedPartial {
                        data,
                        context: ctx,
                        end_of_message: false,
                    }));
                }
                return None;
            }
            if let Some(cur) = &mut st.current {
                let need = cur.remaining + cur.trailer;
                if avail >= need && cur.remaining <= max_len {
                    let cur = st.current.take().expect("current");
                    let data = Self::take_vec(st, cur.remaining);
                    st.start += cur.trailer;
                    if cur.delivered_any {
                        return Some(Ok(ReceiveEvent::ReceivedPartial {
                            data: data.into(),
                            context: cur.context,
                            end_of_message: true,
                        }));
                    }
                    let mut context = cur.context;
                    if st.eof && st.start == st.buf.len() && st.datagrams.is_empty() {
                        // The peer already finished: this is its final Message (§9.3.3).
                        context.set_final(true);
                    }
                    return Some(Self::whole_message(st, data, context));
                }
                let body = avail.min(cur.remaining);
                let partial_ok = st.framers.framers.len() == 1;
                if partial_ok && body > 0 && (body >= min_incomplete || body >= max_len) {
                    let n = body.min(max_len);
                    cur.remaining -= n;
                    cur.delivered_any = true;
                    let ctx = cur.context.clone();
                    let data = Self::take(st, n);
                    return Some(Ok(ReceiveEvent::ReceivedPartial {
                        data,
                        context: ctx,
                        end_of_message: false,
                    }));
                }
                if st.eof {
                    let ctx = st.current.take().map(|c| c.context);
                    return Some(Err(ReceiveError {
                        context: ctx,
                        error: Error::new(
                            ErrorReason::DeframingFailed,
                            format!(
                        "the stream ended inside a Message ({avail} of {need} bytes arrived)"),
                        ),
                    }));
                }
                return None;
            }
            match st
                .framers
                .parse(&st.buf[st.start..], st.eof, RECV_MSG_MAX_LEN)
            {
                Ok(Parse::NeedMore) if st.eof => {
                    if avail == 0 {
                        let e =
                            self.peer_finished("the peer finished sending (end of stream)".into());
                        st.done = Some(e.error.clone());
                        return Some(Err(e));
                    }
                    return Some(Err(ReceiveError {
                        context: None,
                        error: Error::new(
                            ErrorReason::DeframingFailed,
                            format!(
                                "the stream ended with {avail} bytes that are not a whole Message"
                            ),
                        ),
                    }));
                }
                Ok(Parse::NeedMore) => return None,
                Ok(Parse::Message {
                    header,
                    len,
                    trailer,
                }) => {
                    st.start += header;
                    st.current = Some(Current {
                        remaining: len,
                        trailer,
                        context: self.received_context(false),
                        delivered_any: false,
                    });
                }
                Err(e) => {
                    return Some(Err(ReceiveError {
                        context: None,
                        error: Error::new(
                            ErrorReason::DeframingFailed,
                            format!("framer `{}`: {}", st.framers.framers[0].name(), e.message),
                        ),
                    }));
                }
            }
        }
    }

    async fn receive_datagram(
        &self,
        st: &mut RecvState,
        max_len: usize,
    ) -> Result<ReceiveEvent, ReceiveError> {
        if let Some(cur) = &mut st.current {
            let n = cur.remaining.min(max_len);
            cur.remaining -= n;
            let end = cur.remaining == 0;
            let ctx = cur.context.clone();
            if end {
                st.current = None;
            }
            let data = Self::take(st, n);
            return Ok(ReceiveEvent::ReceivedPartial {
                data,
                context: ctx,
                end_of_message: end,
            });
        }
        let Some(t) = st.transport.clone() else {
            return Err(ReceiveError {
                context: None,
                error: Error::new(ErrorReason::ConnectionAborted, "the Connection is closed"),
            });
        };
        let datagram = match t.read(&mut st.buf).await {
            Ok(Recv::Datagram(d)) => d,
            Ok(Recv::Eof) => {
                return Err(self.peer_finished("the peer closed the connection".into()));
            }
            // A message stack's clean close (WebSocket code 1000 or 1001).
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(self.peer_finished(e.to_string()));
            }
            Ok(Recv::Bytes) => {
                return Err(ReceiveError {
                    context: None,
                    error: Error::new(
                        ErrorReason::ProtocolFailed,
                        format!(
                            "{} delivered stream bytes on a message stack",
                            self.caps.stack
                        ),
                    ),
                })
            }
            Err(e) => {
                return Err(ReceiveError {
                    context: None,
                    error: Error::new(ErrorReason::ProtocolFailed, format!("receiving: {e}")),
                })
            }
        };
        let context = self.received_context(false);
        let data = if st.framers.is_empty() {
            datagram
        } else {
            let max = self.caps.max_message_len.unwrap_or(u64::MAX) as usize;
            let parsed = st.framers.parse(&datagram, true, max);
            match parsed {
                Ok(Parse::Message {
                    header,
                    len,
                    trailer,
                }) if header + len + trailer == datagram.len() => {
                    let inner = datagram[header..header + len].to_vec();
                    st.framers
                        .unwrap_inner(inner, max)
                        .map_err(|e| ReceiveError {
                            context: Some(context.clone()),
                            error: Error::new(ErrorReason::DeframingFailed, e.message),
                        })?
                        .into()
                }
                Ok(_) => {
                    return Err(ReceiveError {
                        context: Some(context),
                        error: Error::new(
                            ErrorReason::DeframingFailed,
                            format!(
                                "a {}-byte datagram is not exactly one framed Message",
                                datagram.len()
                            ),
                        ),
                    })
                }
                Err(e) => {
                    return Err(ReceiveError {
                        context: Some(context),
                        error: Error::new(ErrorReason::DeframingFailed, e.message),
                    })
                }
            }
        };
        if data.len() <= max_len {
            return Ok(ReceiveEvent::Received { data, context });
        }
        // Longer than the receiver asked for: deliver in parts.
        st.buf.clear();
        st.start = 0;
        st.buf.extend_from_slice(&data[max_len..]);
        st.current = Some(Current {
            remaining: data.len() - max_len,
            trailer: 0,
            context: context.clone(),
            delivered_any: true,
        });
        let mut data = data;
        data.truncate(max_len);
        Ok(ReceiveEvent::ReceivedPartial {
            data,
            context,
            end_of_message: false,
        })
    }
}

fn dropped() -> SendFailure {
    SendFailure::SendError {
        context: MessageContext::new(),
        error: Error::new(
            ErrorReason::ConnectionAborted,
            "the Connection went away before the Message was sent",
        ),
    }
}
