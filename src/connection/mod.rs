//! The Connection (RFC 9622 §7–§11): send and receive Messages over the stack
//! that won the race, clone it into a group, close or abort it.
//!
//! Target-neutral: the stack behind it is a `backend::Transport`.
//!
//! # Guarantees (RFC 9622 §11)
//! - Exactly one outcome per `send` call: [`Sent`], or a [`SendFailure`]
//!   (`Expired` or `SendError`). Sent outcomes happen in send-call order:
//!   [`Sent::sequence`] grows with each call. (An unreliable Message sent as
//!   a datagram beside a stream, msgReliable false on QUIC or WebTransport,
//!   is outside that order: it can be Sent before a stream Message sent
//!   earlier, for instance one whose last part has not been sent yet.)
//! - A Message that has not started going out when its msgLifetime ends is
//!   answered `Expired` then, even while the stack is blocked on a Message
//!   ahead of it (on stacks whose writes can be interrupted: all but the
//!   browser's WebTransport streams; there, when the write returns).
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
//! partly written Message is always finished, so framing never breaks.
//! Dropping a `receive` future loses nothing: bytes already read stay
//! buffered for the next receive. Dropping the last handle of a Connection
//! without `close` closes it once nothing refers to it any more (a send
//! future still held, or the task finishing a dropped one's work, keeps it
//! open until done); call `close` for an orderly end.
//!
//! # Sans-IO cores and their driver
//! As `racing` does for establishment, the bookkeeping that keeps these
//! promises is plain state with no I/O, tested on its own with a virtual
//! clock and property tests: `send_core` (the send queue with its Message
//! Properties, and the `Outbox` of what the stack took, holds, and is
//! sending whole; one outcome per Message, lifetime expiry) and
//! `receive_core` (the receive buffer, deframing, reassembly, partial
//! receives, datagrams beside a stream, the peer's finish).
//!
//! The driver around them (`send`'s flush, `receive`'s reads) runs in the
//! caller's task: a `send` whose stack takes the Message at once writes it
//! in that call, and a waiting send or receive future drives the stack
//! while it is polled, with no task hop per Message. Work nobody waits for
//! any more (a send future dropped before its answer, polled or not) is
//! finished by a task spawned for it (`runtime::spawn`: tokio natively,
//! `spawn_local` in the browser), with the lifetime timers still running.
//! Receiving reads from the stack only when the application receives, so
//! an application that stops receiving stops the stack's flow (TCP and
//! QUIC flow control, the native WebRTC peer's bounded queue) instead of
//! buffering. (A page cannot: the browser queues what arrives on a
//! WebSocket or data channel without bound, and has no API to pause it.)
//!
//! # Layout
//! This module holds the handle, its state and its properties;
//! `outcome` the §11 outcome types, `send_core` and `receive_core` the
//! sans-IO cores, `send` the driver of sending (the checks of `send`, the
//! fast path, the flush), `receive` that of receiving, `lifecycle` Close,
//! Abort and failures, `group` Clone and the Connection Group, `signal`
//! the stop and the event queue, kept in the Connection's own state.

// SendFailure carries the MessageContext back to the application, as the RFC's
// events do; the failure path is cold, so its size does not matter.
#![allow(clippy::result_large_err)]

use crate::backend::StackInstance;
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
use futures::channel::oneshot;
use futures::future::{FutureExt, Shared};
use futures::task::AtomicWaker;
use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

mod group;
mod lifecycle;
mod outcome;
pub(crate) mod path_change;
mod receive;
mod receive_core;
mod send;
mod send_core;
mod signal;

pub(crate) use group::Group;
use lifecycle::Stopped;
pub use lifecycle::{CLOSE_LINGER, CLOSE_TIMEOUT};
use outcome::{dropped, outcome_of, SendFailureKind, SendResult, SendState};
pub use outcome::{ReceiveError, SendFailure, SendFuture, Sent};
pub(crate) use path_change::platform_path_changed;
pub use path_change::{path_changed, watch_platform_paths, PATH_SETTLE};
use receive_core::{PeerContext, RecvState, DIRECT_FIRST_RESERVE, DIRECT_READ_MIN};
pub use receive_core::{DATAGRAM_QUEUE_MAX, DATAGRAM_QUEUE_MAX_BYTES, RECV_MSG_MAX_LEN};
use send::WriterState;
use send_core::{Admitted, Outbox, Queued, SendQueue, STACK_IOV};

struct Status {
    state: ConnState,
    conn_priority: u32,
    /// A Close finished the stream and waits for the stack's word on
    /// delivery: a second Close waits for it too (see `Inner::close`).
    delivering: bool,
}

/// Everything a new Connection is made of.
pub(crate) struct Parts {
    pub(crate) transport: Transport,
    pub(crate) caps: Capabilities,
    pub(crate) framers: FramerStack,
    pub(crate) leftover: Vec<u8>,
    pub(crate) props: Arc<TransportProperties>,
    pub(crate) trace: crate::racing::LazyTrace,
    pub(crate) remote: RemoteEndpoint,
    /// The remote address, when the caller knows it (saves a getpeername).
    pub(crate) remote_addr: Option<SocketAddr>,
    /// Shared: a Listener's Connections all have its LocalEndpoint.
    pub(crate) local: Option<Arc<LocalEndpoint>>,
    /// Boxed from the start (it is 584 bytes): the race, its result and the
    /// Connection move a pointer instead of copying it at every step.
    pub(crate) reconnect: Option<Box<crate::attempt::Reconnect>>,
    /// Client: InitiateWithSend's first Message already went out as 0-RTT.
    pub(crate) early_sent: bool,
    /// Server: the peer's data on this stream may be 0-RTT early data.
    pub(crate) peer_early_data: bool,
}

pub(crate) struct Inner {
    caps: Capabilities,
    /// Shared: a Listener's Connections all have its properties.
    props: Arc<TransportProperties>,
    /// Its Connection Group, made when first needed (Clone, a shared
    /// property set, a Listener's QUIC streams): most Connections are never
    /// cloned, and until then the group's properties are `props`'.
    group: std::sync::OnceLock<Arc<Group>>,
    status: Mutex<Status>,
    /// Receives may still come (RFC 9622 §9.3): false once the peer's final
    /// Message was delivered, the Connection closed, or it cannot receive
    /// at all. Apart from `status`: every receive reads it.
    can_receive: std::sync::atomic::AtomicBool,
    send_q: Mutex<SendQueue>,
    writer: futures::lock::Mutex<WriterState>,
    recv: futures::lock::Mutex<RecvState>,
    abort_handle: Mutex<Option<Transport>>,
    /// Why receives end (unset while they may wait): set by
    /// Close, Abort or a failure underneath; the first reason stays.
    stopped: std::sync::OnceLock<Stopped>,
    /// The receive that holds `recv` and waits, woken at the stop. The
    /// receives queued behind it on `recv` see `stopped` when they get the
    /// lock, one after another: none of them need a waker here.
    recv_stop: AtomicWaker,
    receives: AtomicUsize,
    /// recvMsgMaxLen in force (the receive side reads it at each receive).
    recv_max: AtomicUsize,
    /// The application's sendMsgMaxLen, `u64::MAX` when it set none.
    send_max: std::sync::atomic::AtomicU64,
    /// Set once a Close waits for the receives in progress to end (in the
    /// events' waiter list): until then a receive ending need not wake it.
    close_waits: std::sync::atomic::AtomicBool,
    /// The unsolicited events not yet taken, and the futures waiting for
    /// one, for the stop, or (Close) for the receives to end.
    events: Mutex<signal::Events>,
    /// Written out when first read.
    trace: crate::racing::LazyTrace,
    /// The RemoteEndpoint it was made for (always `Some`) and the
    /// LocalEndpoint it was made from: one allocation, shared with the
    /// contexts of the Messages it receives.
    endpoints: Arc<crate::message::Endpoints>,
    /// Read from the socket on first use (or at close), not on the way to Ready.
    local_addr: std::sync::OnceLock<Option<SocketAddr>>,
    /// Its slot among the Connections told of path changes
    /// (`path_change::UNWATCHED`: none).
    path_slot: AtomicUsize,
    remote_addr: Option<SocketAddr>,
    /// singularTransmissionMsgMaxLen, `u64::MAX` when Not applicable.
    singular_max: u64,
    /// How Clone opens another connection to the same peer (boxed: large,
    /// and none for a Connection a Listener received).
    reconnect: Option<Box<crate::attempt::Reconnect>>,
    early_sent: bool,
}

/// A Connection (RFC 9622 §7): one established protocol stack that sends and
/// receives Messages. Identical on every target.
///
/// A cheap handle: [`Clone::clone`] gives another handle to the same
/// Connection (to send from one task and receive in another, say); the
/// Connection is dropped with its last handle. The RFC's Clone, a new
/// Connection in the group, is [`clone_in_group`](Self::clone_in_group).
#[derive(Clone)]
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

impl Connection {
    // In the browser, Inner is not Send: a stack's send in progress
    // (`WriterState::sending`) is a browser future, and the page has one thread.
    #[allow(clippy::arc_with_non_send_sync)]
    pub(crate) fn from_parts(p: Parts, group: Option<Arc<Group>>) -> Connection {
        let remote_addr = p.remote_addr.or_else(|| p.transport.remote_addr());
        let singular_max = p.transport.singular_transmission_max();
        let (stream_sends, stream_receives) = p.transport.directions();
        let can_receive = stream_receives
            && p.props.direction != crate::properties::Direction::UnidirectionalSend;
        let endpoints = Arc::new(crate::message::Endpoints {
            remote: Some(p.remote),
            local: p.local,
        });
        let inner = Arc::new(Inner {
            caps: p.caps,
            group: match &group {
                Some(g) => Arc::clone(g).into(),
                None => std::sync::OnceLock::new(),
            },
            status: Mutex::new(Status {
                state: ConnState::Established,
                conn_priority: p.props.connection.conn_priority,
                delivering: false,
            }),
            can_receive: std::sync::atomic::AtomicBool::new(can_receive),
            send_q: Mutex::new(SendQueue::new(
                p.framers.clone(),
                (!stream_sends
                    || p.props.direction == crate::properties::Direction::UnidirectionalReceive)
                    .then(|| {
                        Error::new(
                            ErrorReason::InvalidConfiguration,
                            "this Connection is unidirectional receive",
                        )
                    }),
            )),
            writer: futures::lock::Mutex::new(WriterState {
                transport: Some(p.transport.clone()),
                outbox: Outbox::default(),
                sending: None,
                writing: None,
            }),
            recv: futures::lock::Mutex::new(RecvState::new(
                Some(p.transport.clone()),
                p.leftover,
                p.framers,
                PeerContext {
                    endpoints: Arc::clone(&endpoints),
                    early_data: p.peer_early_data,
                },
            )),
            abort_handle: Mutex::new(Some(p.transport)),
            stopped: std::sync::OnceLock::new(),
            recv_stop: AtomicWaker::new(),
            receives: AtomicUsize::new(0),
            recv_max: AtomicUsize::new(recv_max_of(&p.props.connection)),
            send_max: std::sync::atomic::AtomicU64::new(
                p.props.connection.send_msg_max_len.unwrap_or(u64::MAX),
            ),
            close_waits: Default::default(),
            events: Default::default(),
            trace: p.trace,
            endpoints,
            local_addr: std::sync::OnceLock::new(),
            path_slot: AtomicUsize::new(path_change::UNWATCHED),
            remote_addr,
            singular_max: singular_max.unwrap_or(u64::MAX),
            reconnect: p.reconnect,
            early_sent: p.early_sent,
            props: p.props,
        });
        if let Some(group) = group {
            group.members.lock().unwrap().push(Arc::downgrade(&inner));
        }
        path_change::watch(&inner);
        Connection { inner }
    }

    /// The protocol stack that won the race.
    pub fn stack(&self) -> StackId {
        self.inner.caps.stack
    }

    /// The RacingTrace of the establishment that made this Connection
    /// (empty for a Connection a Listener received).
    pub fn trace(&self) -> &RacingTrace {
        self.inner.trace.get()
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
        self.inner.remote()
    }

    /// The LocalEndpoint it was made from, if one was given.
    pub fn local_endpoint(&self) -> Option<&LocalEndpoint> {
        self.inner.endpoints.local.as_deref()
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
        self.inner.can_receive.load(Ordering::Acquire)
    }

    /// `singularTransmissionMsgMaxLen` (§8.1.11.4): `None` is Not applicable (TCP).
    pub fn singular_transmission_msg_max_len(&self) -> Option<u64> {
        let max = self.inner.singular_max;
        (max != u64::MAX).then_some(max)
    }

    /// `sendMsgMaxLen` (§8.1.11.5): the largest Message `send` takes, the
    /// stack's bound or a lower one the application set; `None` is
    /// unlimited (a byte stream without framer, with no bound set).
    pub fn send_msg_max_len(&self) -> Option<u64> {
        let set = self.inner.send_max.load(Ordering::Relaxed);
        let set = (set != u64::MAX).then_some(set);
        match (self.stack_send_max(), set) {
            (Some(stack), Some(set)) => Some(stack.min(set)),
            (stack, set) => stack.or(set),
        }
    }

    /// The stack's own sendMsgMaxLen (its framer's, or its Message limit).
    fn stack_send_max(&self) -> Option<u64> {
        let framed = !self.inner.send_q.lock().unwrap().framers.is_empty();
        self.inner.stack_send_max(framed)
    }

    /// `recvMsgMaxLen` (§8.1.11.6): the largest Message a receive accepts
    /// ([`RECV_MSG_MAX_LEN`] on a framed byte stream unless the application
    /// set another bound); `None` is unlimited (a byte stream without framer).
    pub fn recv_msg_max_len(&self) -> Option<u64> {
        let set = self.inner.recv_max.load(Ordering::Relaxed) as u64;
        match self.inner.caps.data_unit {
            DataUnit::ByteStream if self.inner.send_q.lock().unwrap().framers.is_empty() => None,
            DataUnit::ByteStream => Some(set),
            DataUnit::Message => Some(self.inner.caps.max_message_len.map_or(set, |m| m.min(set))),
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
        let mut p = match self.inner.group.get() {
            Some(g) => g.props.lock().unwrap().clone(),
            None => self.inner.props.connection.clone(),
        };
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
        self.set_property_value(name, value.into())
    }

    // One copy in the program, whatever the callers' value types.
    fn set_property_value(&self, name: &str, value: PropertyValue) -> Result<(), Error> {
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
        if candidate.send_msg_max_len != current.send_msg_max_len {
            if let (Some(set), Some(stack)) = (candidate.send_msg_max_len, self.stack_send_max()) {
                if set > stack {
                    return Err(Error::invalid_configuration(format!(
                        "sendMsgMaxLen {set} is over the {stack}-byte bound of {}",
                        caps.stack
                    )));
                }
            }
        }
        if candidate.recv_msg_max_len != current.recv_msg_max_len {
            if let Some(set) = candidate.recv_msg_max_len {
                if self.recv_msg_max_len().is_none() {
                    return Err(Error::invalid_configuration(format!(
                        "recvMsgMaxLen does not apply to this {} Connection: without a framer its whole stream is one Message, delivered in parts",
                        caps.stack
                    )));
                }
                if set > crate::framer::LengthPrefixFramer::MAX_LEN as u64 {
                    return Err(Error::invalid_configuration(format!(
                        "recvMsgMaxLen {set} is over the {}-byte length a framed Message can have",
                        crate::framer::LengthPrefixFramer::MAX_LEN
                    )));
                }
            }
        }
        if caps.over_tcp
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
        for m in &members {
            m.recv_max.store(recv_max_of(&candidate), Ordering::Relaxed);
            m.send_max.store(
                candidate.send_msg_max_len.unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
        {
            let mut g = Inner::group(&self.inner).props.lock().unwrap();
            let prio = candidate.conn_priority;
            *g = candidate;
            self.inner.status.lock().unwrap().conn_priority = prio;
        }
        if let Some(t) = self.inner.abort_handle.lock().unwrap().as_ref() {
            let opts =
                crate::attempt::socket_options(&self.inner.props, &self.properties(), None, None);
            crate::attempt::apply_live_options(t, &opts);
        }
        Ok(())
    }
}

/// The recvMsgMaxLen in force for `props`: the application's bound, or
/// [`RECV_MSG_MAX_LEN`].
fn recv_max_of(props: &ConnectionProperties) -> usize {
    props.recv_msg_max_len.map_or(RECV_MSG_MAX_LEN, |n| {
        usize::try_from(n).unwrap_or(usize::MAX)
    })
}

impl Inner {
    /// The stack's own sendMsgMaxLen: its Message limit, or on a byte
    /// stream the length prefix's when `framed` (else unlimited).
    pub(super) fn stack_send_max(&self, framed: bool) -> Option<u64> {
        match self.caps.data_unit {
            DataUnit::ByteStream if framed => {
                Some(crate::framer::LengthPrefixFramer::MAX_LEN as u64)
            }
            DataUnit::ByteStream => None,
            DataUnit::Message => self.caps.max_message_len,
        }
    }

    /// The RemoteEndpoint it was made for.
    fn remote(&self) -> &RemoteEndpoint {
        self.endpoints
            .remote
            .as_ref()
            .expect("a Connection's endpoints name its remote")
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        *self.local_addr.get_or_init(|| {
            self.abort_handle
                .lock()
                .unwrap()
                .as_ref()
                .and_then(Transport::local_addr)
        })
    }
}
impl Drop for Inner {
    fn drop(&mut self) {
        path_change::unwatch(self);
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// Every Connection, idle or not, pays for its `Inner` and the three
    /// clones of its Transport in it (the writer's, the reader's, Abort's);
    /// the scale bench measures the whole (`SCALE_HEAP_PROFILE=1` shows
    /// `Inner` as the largest block per connection). Large or rarely used
    /// parts go behind a pointer: the QUIC, WebTransport and UDP handles,
    /// the Reconnect of Clone, a failure's Error, the shared properties.
    /// (896: 888, and the slot among the Connections told of path changes.)
    #[test]
    fn a_connection_stays_small() {
        use std::mem::size_of;
        assert!(
            size_of::<Transport>() <= 16,
            "Transport: {} B",
            size_of::<Transport>()
        );
        assert!(size_of::<Inner>() <= 880, "Inner: {} B", size_of::<Inner>());
        assert!(
            size_of::<crate::racing::LazyTrace>() <= 8,
            "LazyTrace: {} B",
            size_of::<crate::racing::LazyTrace>()
        );
    }
}
