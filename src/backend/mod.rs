//! Backends: the protocol stacks of each target, behind one internal shape.
//! This is the only place (with `runtime`) that selects code by target.
//!
//! Each target module provides: `registry()` (the capability rows of the
//! stacks it has), `connect()` (one racing attempt), `Transport` (an
//! established stack, which implements [`StackInstance`], the contract the
//! Connection layer is written against), `BackendListener`, and
//! `system_resolve()`.

cfg_if::cfg_if! {
    if #[cfg(web)] {
        mod web;
        pub(crate) use web::*;
        pub use web::{keep_browser_bytes, staging_area, take_browser_bytes, take_staged, STAGING_LEN};
    } else {
        mod native;
        pub(crate) use native::*;
    }
}

use crate::capability::Capabilities;
use bytes::BytesMut;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;

/// An established stack instance, as every backend provides it (its
/// `Transport`): what the Connection layer (send, receive, close, Clone)
/// may do with the stack that won. Each target implements all of it, so a
/// method one backend lacks, or has with another shape, fails that
/// backend's build at its `impl`. Futures are `Send` natively (the concrete
/// type's, through the impl) and need not be in the browser.
pub(crate) trait StackInstance: Clone + std::fmt::Debug + Sized {
    /// Read: append bytes (streams) or return one datagram or message.
    /// The Connection's receive buffer is a `BytesMut`: received Messages
    /// are split off it without a copy.
    fn read(&self, buf: &mut BytesMut) -> impl Future<Output = io::Result<Recv>>;
    /// `read` as a poll, on stacks that read without holding any state
    /// while they wait (TCP, TLS, QUIC and WebTransport streams, native
    /// WebSocket); `None` on
    /// the others, or when the stack cannot read by polling just now. A
    /// Connection waiting for data between Messages reads through this,
    /// before it makes its (larger) receive state.
    fn poll_read(
        &self,
        cx: &mut std::task::Context<'_>,
        buf: &mut BytesMut,
    ) -> Option<std::task::Poll<io::Result<Recv>>> {
        let _ = (cx, buf);
        None
    }
    /// True when reading a large Message body straight into its own buffer
    /// saves a copy.
    fn reads_bodies_directly(&self) -> bool;
    /// Read as `read` does, but take at most about `want` more stream bytes
    /// (reading a Message body of known size straight into its own buffer).
    fn read_up_to(&self, buf: &mut BytesMut, want: usize)
        -> impl Future<Output = io::Result<Recv>>;
    /// Write some of `bufs` (streams), returning how many bytes went out.
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> impl Future<Output = io::Result<usize>>;
    /// A stream write that owns its bytes, for stacks whose writes are not
    /// cancel-safe (`writes_cancel_safe`): the caller keeps it until it is
    /// done, so it is never started twice.
    fn start_write(
        &self,
        bufs: &[IoSlice<'_>],
    ) -> crate::runtime::BoxFuture<'static, io::Result<usize>>;
    /// One poll of `write_vectored`, for the send fast path.
    fn poll_write_vectored(
        &self,
        cx: &mut std::task::Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>>;
    /// Push out bytes the stack itself still holds after `write_vectored`.
    fn flush(&self) -> impl Future<Output = io::Result<()>>;
    /// Send one datagram now, without waiting: `None` when the stack has no
    /// room (or cannot send without waiting), so the Message is queued.
    fn try_send_datagram(&self, data: &[u8]) -> Option<io::Result<()>>;
    /// True when the stack still holds bytes that `flush` must push out.
    fn holds_unsent(&self) -> bool;
    /// True when `e`, an error `read` returned, is a report the stack
    /// passes on without failing: on a connected UDP socket, an ICMP port
    /// unreachable for an earlier datagram (RFC 1122 §4.1.3.3 leaves such
    /// errors to the application). The Connection reports it as a
    /// SoftError and reads on.
    fn is_soft_error(&self, e: &io::Error) -> bool {
        let _ = e;
        false
    }
    /// True when a send dropped before it completes has sent nothing.
    fn writes_cancel_safe(&self) -> bool;
    /// Send one datagram or message.
    fn send_datagram(&self, data: &[u8]) -> impl Future<Output = io::Result<()>>;
    /// Finish sending (FIN, close_notify, a stream's end).
    fn shutdown_write(&self) -> io::Result<()>;
    /// After `shutdown_write`: wait until the peer has taken everything
    /// sent, where the stack can tell.
    fn delivered(&self) -> impl Future<Output = io::Result<()>>;
    /// After `shutdown_write`: read the peer's side to its end where
    /// closing with unread bytes would reset the connection (TCP, TLS).
    fn drain_to_end(&self) -> impl Future<Output = io::Result<()>>;
    /// Abort: reset, and wake every pending read.
    fn abort(&self);
    /// Set the DSCP of outgoing packets, where the stack can.
    fn set_dscp(&self, dscp: u8) -> io::Result<()>;
    /// The local address, if known.
    fn local_addr(&self) -> Option<SocketAddr>;
    /// The remote address, if known.
    fn remote_addr(&self) -> Option<SocketAddr>;
    /// Largest payload for one transmission (singularTransmissionMsgMaxLen).
    fn singular_transmission_max(&self) -> Option<u64>;
    /// Client: the attempt's early data went out as 0-RTT. Server: the
    /// peer's data on this stream may be early data (a replay risk).
    fn early_data(&self) -> bool;
    /// The directions this instance can carry: (send, receive).
    fn directions(&self) -> (bool, bool);
    /// Largest unreliable Message (datagram) it can send now, if it has datagrams.
    fn max_datagram(&self) -> Option<u64>;
    /// Clone on a multiplexed stack: a sibling (stream, channel) on the same
    /// connection; `None` when the stack needs a new connection instead.
    fn open_sibling(
        &self,
        props: &crate::properties::TransportProperties,
    ) -> impl Future<Output = Option<io::Result<Self>>>;
    /// CloseGroup / AbortGroup on a multiplexed stack: end the shared connection.
    fn close_shared(&self, abort: bool);
    /// Reliability and order fixed per instance, if they are: (reliable, ordered).
    fn delivery(&self) -> Option<(bool, bool)>;
    /// A protocol-specific property (RFC 9622 §4.1) of this instance, by
    /// normalized name.
    fn protocol_property(&self, name: &str) -> Option<crate::properties::PropertyValue>;
}

/// Whether the stacks take host names and resolve them themselves (the
/// browser's, which has no DNS API for a page), so the engine races a name
/// as one leaf; natively the engine resolves, AAAA and A apart.
#[cfg(web)]
pub(crate) const STACKS_RESOLVE_NAMES: bool = true;
/// See the browser's definition.
#[cfg(not(web))]
pub(crate) const STACKS_RESOLVE_NAMES: bool = false;

/// The first reason a message transport ended (closed, aborted, failed):
/// every later read and send returns the same error.
#[derive(Debug, Default)]
#[cfg_attr(all(native, not(feature = "webrtc")), allow(dead_code))] // natively WebRTC's
pub(crate) struct Ended(std::sync::Mutex<Option<(std::io::ErrorKind, String)>>);

#[cfg_attr(all(native, not(feature = "webrtc")), allow(dead_code))]
impl Ended {
    /// The error, once ended.
    pub(crate) fn get(&self) -> Option<std::io::Error> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(k, m)| std::io::Error::new(*k, m.clone()))
    }

    /// End with this reason, unless already ended; the error in force.
    pub(crate) fn set(&self, kind: std::io::ErrorKind, msg: String) -> std::io::Error {
        let mut ended = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (k, m) = ended.get_or_insert((kind, msg));
        std::io::Error::new(*k, m.clone())
    }
}

/// What a read returned.
#[derive(Debug)]
#[cfg_attr(web, allow(dead_code))] // browser stacks come with the browser issue
pub(crate) enum Recv {
    /// Bytes were appended to the buffer (byte streams).
    Bytes,
    /// One whole datagram (Bytes: the stacks that have their own buffer,
    /// quinn's, tungstenite's, the browser's, hand it on without a copy).
    Datagram(bytes::Bytes),
    /// The peer finished sending.
    Eof,
}

/// A connection a Listener accepted.
pub(crate) struct Incoming {
    pub(crate) transport: Transport,
    pub(crate) caps: &'static Capabilities,
    pub(crate) remote: SocketAddr,
    /// Streams of one multiplexed connection (QUIC) share a group key.
    pub(crate) group: Option<usize>,
    /// Its place among the Listener's pending connections, given back when
    /// the Listener hands it over (or drops it).
    pub(crate) room: Room,
}

/// A place among a Listener's pending incoming connections (natively a
/// semaphore permit; nothing in the browser).
#[cfg(native)]
pub(crate) type Room = Option<tokio::sync::OwnedSemaphorePermit>;
/// A place among a Listener's pending incoming connections (natively a
/// semaphore permit; nothing in the browser).
#[cfg(web)]
pub(crate) type Room = ();

/// Socket options for one attempt or listener, derived from the properties.
#[derive(Debug, Clone, Default)]
#[cfg_attr(web, allow(dead_code))]
pub(crate) struct SocketOptions {
    /// Local address to bind (port 0 = ephemeral).
    pub(crate) local: Option<SocketAddr>,
    /// Interface to bind to (SO_BINDTODEVICE).
    pub(crate) interface: Option<String>,
    /// TCP keep-alive: `Some(None)` on with system timers, `Some(Some(t))` with idle time t.
    pub(crate) keep_alive: Option<Option<std::time::Duration>>,
    /// TCP_USER_TIMEOUT.
    pub(crate) user_timeout: Option<std::time::Duration>,
    /// DSCP code point (connCapacityProfile).
    pub(crate) dscp: u8,
    /// The SecurityParameters, for stacks with a security protocol.
    pub(crate) security: Option<crate::security::SecurityParameters>,
    /// The name a secure stack verifies the server for (and sends as SNI):
    /// the host name of the RemoteEndpoint the attempt's address came from.
    pub(crate) server_name: Option<String>,
    /// The framed first Message of InitiateWithSend, when it is safely
    /// replayable: stacks with 0-RTT send it early (RFC 9623 §5.3).
    pub(crate) early_data: Option<std::sync::Arc<[u8]>>,
    /// `direction` (RFC 9622 §6.2.16): QUIC opens a unidirectional stream for it.
    #[cfg_attr(all(native, not(feature = "quic")), allow(dead_code))]
    pub(crate) direction: crate::properties::Direction,
    /// Protocol-specific options (RFC 9622 §4.1), e.g. `ws.path`: the
    /// Preconnection's `TransportProperties::protocol_options`.
    #[cfg_attr(
        all(native, not(any(feature = "ws", feature = "wt"))),
        allow(dead_code)
    )]
    pub(crate) protocol_options: std::collections::BTreeMap<String, String>,
    /// Whose TLS session cache (tickets for resumption and 0-RTT, TLS and
    /// QUIC alike) and QUIC address-validation tokens the attempt uses.
    pub(crate) session_scope: SessionScope,
    /// A Listener's bounds, its handshake timeout already connTimeout when
    /// that is set (listening only).
    pub(crate) limits: crate::listener::ListenerLimits,
}

/// Whose TLS session cache and QUIC address-validation tokens (NEW_TOKEN)
/// an attempt uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(web, allow(dead_code))]
pub(crate) enum SessionScope {
    /// The process-wide cache (Listeners' own Clones, WebRTC's peers).
    #[default]
    Process,
    /// The cache of the TransportContext with this id: Preconnections that
    /// share a context share their sessions, and no others.
    Context(u64),
    /// isolateSession: no cache, no resumption (RFC 9622 §8.1.10).
    Isolated,
}
