//! Browser stacks: WebTransport (`wt`, `webtransport.rs`), WebSocket (`ws`,
//! `wss`, `websocket.rs`) and WebRTC data channels (`webrtc`, `webrtc.rs`,
//! established by Rendezvous only).
//!
//! There is no DNS API in a browser: a RemoteEndpoint's host name goes to
//! the browser stacks as it is (`RemoteSpec::Name`, one leaf per stack) and
//! the browser resolves it. Only `Preconnection::resolve` needs addresses,
//! and it fails with a message saying why (see [`system_resolve`]).

mod budget;
mod path_signals;
mod received_bytes;
mod staging;
mod webrtc;
mod websocket;
mod webtransport;

/// How many bytes of received Messages may wait for the application to
/// read them on one browser WebSocket or data channel (a page cannot push
/// back on their peers): past it the Connection fails, saying so, and the
/// socket or channel is closed. One Message is always taken when none
/// waits, whatever its size (recvMsgMaxLen bounds it when it is read).
pub(crate) const UNREAD_MAX: usize = crate::RECV_MSG_MAX_LEN;

/// The bytes of received Messages waiting for a read (see [`UNREAD_MAX`]).
#[derive(Default)]
pub(crate) struct Unread {
    bytes: std::sync::atomic::AtomicUsize,
    overflowed: std::sync::atomic::AtomicBool,
}

/// What [`Unread::admit`] says of a new Message.
pub(crate) enum Admit {
    /// Queue it.
    Yes,
    /// It passes the bound, with this many bytes: fail the Connection
    /// (once).
    Overflow(usize),
    /// The bound was passed before: drop it.
    Dropped,
}

impl Unread {
    /// A Message of `len` bytes arrived (counted if admitted).
    pub(crate) fn admit(&self, len: usize) -> Admit {
        use std::sync::atomic::Ordering::SeqCst;
        if self.overflowed.load(SeqCst) {
            return Admit::Dropped;
        }
        let queued = self.bytes.load(SeqCst);
        if queued > 0 && queued.saturating_add(len) > UNREAD_MAX {
            self.overflowed.store(true, SeqCst);
            return Admit::Overflow(queued.saturating_add(len));
        }
        self.bytes.fetch_add(len, SeqCst);
        Admit::Yes
    }

    /// A Message of `len` bytes was read.
    pub(crate) fn taken(&self, len: usize) {
        self.bytes
            .fetch_sub(len, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the bound was passed.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The error of a Connection whose unread Messages passed [`UNREAD_MAX`].
pub(crate) fn unread_overflow(what: &str, queued: usize, closed: &str) -> String {
    format!(
        "{what} received {queued} bytes that the application did not read, past the page's bound of {} MiB: {closed}, and what came after was not kept",
        UNREAD_MAX >> 20
    )
}

use super::{Incoming, Recv, SocketOptions};
use crate::capability::{Capabilities, StackId};
use crate::racing::{Family, Target};
use crate::runtime::BoxFuture;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};

pub(crate) use budget::{
    held_by_browser, note_outcomes, refund, webtransport_handshakes_spent, CHARGES_ATTEMPTS,
};
pub(crate) use path_signals::{stop_watching_path_changes, watch_path_changes, PATH_SIGNALS};
pub use received_bytes::{keep_browser_bytes, take_browser_bytes};
pub use staging::{staging_area, take_staged, STAGING_LEN};
pub(crate) use webrtc::{http_post_json, WebrtcOffer, WebrtcPeer, WebrtcTransport};
pub(crate) use websocket::WsTransport;
pub(crate) use webtransport::WtTransport;

/// Hashes a table's integer key (a handle id, a Vec address) with one
/// multiplication. The tables of the page's thread are looked up for every
/// Message, and the default SipHash costs more than the rest of a lookup.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing, with the high half folded into the low bits
        // (hashbrown picks the bucket from those; an address's own low bits
        // are zero, by alignment).
        let h = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A table of the page's thread keyed by an integer (see [`IdHasher`]).
pub(crate) type IdMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// The stacks this target has, in default preference order: secure first,
/// Rendezvous (WebRTC data channels) is always there: the browser has it.
pub(crate) const RENDEZVOUS: bool = true;

/// and WebTransport (over QUIC) before WebSocket, as QUIC before TLS natively.
pub(crate) fn registry() -> &'static [Capabilities] {
    // A WebTransport attempt still running when another candidate wins is
    // left to finish rather than cancelled (`Capabilities::finish_when_losing`):
    // a cancelled handshake counts against the page for about 5 minutes
    // while a completed one frees its slot at once. Measured in headless
    // Chromium, 8 races where WebTransport merely loses to WebSocket: 8
    // handshakes charged to the page when they are cancelled, 0 when they
    // are left to finish.
    const WT: Capabilities = Capabilities {
        finish_when_losing: true,
        ..Capabilities::WT
    };
    &[WT, Capabilities::WSS, Capabilities::WS]
}

/// The SecurityParameters of a client a page cannot honour, refused by
/// name (InvalidConfiguration) instead of dropped: the browser verifies
/// servers with its own roots and rules, picks client certificates itself,
/// and negotiates TLS versions, ALPN, server names and session caches on
/// its own. (Certificate pins are honoured by WebTransport, and WebSocket
/// refuses them per candidate.)
pub(crate) fn check_security(s: &crate::security::SecurityParameters) -> Result<(), crate::Error> {
    let mut refused: Vec<&str> = Vec::new();
    if !s.client_certificate.is_empty() {
        refused.push("clientCertificate (the browser chooses client certificates itself)");
    }
    if !s.trusted_ca.is_empty() {
        refused.push("trusted_ca (a page cannot add trusted roots)");
    }
    if !s.use_system_roots {
        refused.push("use_system_roots = false (a page cannot turn off the browser's roots)");
    }
    if s.trust_verification_callback().is_some() {
        refused.push("the trust verification callback (the browser verifies servers)");
    }
    if s.identity_challenge_callback().is_some() {
        refused.push("the identity challenge callback (the browser holds client keys)");
    }
    if !s.alpn.is_empty() {
        refused.push("alpn (the browser negotiates the application protocol)");
    }
    if !s.allowed_security_protocols.is_empty() {
        refused.push("allowedSecurityProtocols (the browser chooses the TLS version)");
    }
    if s.server_name.is_some() {
        refused.push("server_name (the browser uses the URL's host name)");
    }
    if s.max_cached_sessions.is_some() || s.cached_session_lifetime_seconds.is_some() {
        refused.push("maxCachedSessions / cachedSessionLifetimeSeconds (the browser keeps its own session cache)");
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(crate::Error::invalid_configuration(format!(
        "SecurityParameters a page cannot honour: {}",
        refused.join("; ")
    )))
}

/// An established stack instance. Not `Send`: it holds browser objects,
/// which live on the page's thread.
#[derive(Clone, Debug)]
pub(crate) enum Transport {
    /// A browser WebSocket (`ws` or `wss`).
    Ws(WsTransport),
    /// A browser WebRTC data channel.
    Webrtc(WebrtcTransport),
    /// One stream of a browser WebTransport session.
    Wt(WtTransport),
}

impl super::StackInstance for Transport {
    /// Read one message (WebSocket, WebRTC), or stream bytes or a datagram (WebTransport).
    async fn read(&self, buf: &mut bytes::BytesMut) -> io::Result<Recv> {
        match self {
            Transport::Ws(w) => w.read().await,
            Transport::Webrtc(w) => w.read().await,
            Transport::Wt(w) => w.read(buf).await,
        }
    }
    /// The browser hands over its own chunks: a body is not read any
    /// differently.
    fn reads_bodies_directly(&self) -> bool {
        false
    }
    /// Read as `read` does (the browser hands over its own chunks; `want`
    /// is only a hint natively).
    async fn read_up_to(&self, buf: &mut bytes::BytesMut, _want: usize) -> io::Result<Recv> {
        self.read(buf).await
    }
    /// Write stream bytes (WebTransport); WebSocket and WebRTC data channels
    /// have no byte stream.
    async fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Ws(_) => Err(io::Error::other(
                "a WebSocket carries Messages, not a byte stream",
            )),
            Transport::Webrtc(_) => Err(io::Error::other(
                "a WebRTC data channel carries Messages, not a byte stream",
            )),
            Transport::Wt(w) => w.write_vectored(bufs).await,
        }
    }
    /// A stream write that owns its bytes (copied into the browser's
    /// memory now): the caller keeps it until it is done, because a browser
    /// write cannot be taken back once it started.
    fn start_write(
        &self,
        bufs: &[IoSlice<'_>],
    ) -> crate::runtime::BoxFuture<'static, io::Result<usize>> {
        match self {
            Transport::Wt(w) => w.start_write(bufs),
            _ => {
                let e = self.clone();
                Box::pin(async move { e.write_vectored(&[]).await })
            }
        }
    }
    /// One poll of `write_vectored` (the send fast path; not reached in the
    /// browser, whose writes are not cancel-safe).
    fn poll_write_vectored(
        &self,
        cx: &mut std::task::Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::future::Future::poll(std::pin::pin!(self.write_vectored(bufs)), cx)
    }
    /// Nothing to push: the browser holds what was written.
    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    /// Send one message now, without waiting: `None` when the stack has no
    /// room (or cannot send without waiting), so the Message is queued.
    fn try_send_datagram(&self, data: &[u8]) -> Option<io::Result<()>> {
        match self {
            Transport::Ws(w) => w.try_send(data),
            Transport::Webrtc(w) => w.try_send(data),
            Transport::Wt(_) => None,
        }
    }
    /// The browser holds nothing for postsocket to push out.
    fn holds_unsent(&self) -> bool {
        false
    }
    /// Browser writes wait on Promises that cannot be taken back: a send
    /// dropped midway may have sent, so it is never dropped.
    fn writes_cancel_safe(&self) -> bool {
        false
    }
    /// Send one message.
    async fn send_datagram(&self, data: &[u8]) -> io::Result<()> {
        match self {
            Transport::Ws(w) => w.send(data).await,
            Transport::Webrtc(w) => w.send(data).await,
            Transport::Wt(w) => w.send_datagram(data).await,
        }
    }
    /// After `shutdown_write`: wait until the peer took everything sent,
    /// where the stack can tell. A WebRTC data channel: until the browser
    /// closed it, which follows the data sent before the close. A
    /// WebTransport stream: until the browser committed all its data (its
    /// writer's `close()` resolved), before the session may close. A
    /// WebSocket: at once (a page cannot see acknowledgements).
    async fn delivered(&self) -> io::Result<()> {
        match self {
            Transport::Webrtc(w) => w.closed().await,
            Transport::Wt(w) => w.delivered().await,
            Transport::Ws(_) => Ok(()),
        }
    }

    /// Read the peer's side to its end after `shutdown_write` (the native
    /// TCP and TLS need it; a browser stack closes cleanly): at once.
    async fn drain_to_end(&self) -> io::Result<()> {
        Ok(())
    }

    /// Close (WebSocket: close frame with code 1000).
    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Transport::Ws(w) => w.shutdown_write(),
            Transport::Webrtc(w) => w.shutdown_write(),
            Transport::Wt(w) => w.shutdown_write(),
        }
    }
    /// Abort. A page cannot reset a connection: WebSocket closes with code
    /// 4000 (`aborted`; a peer reads it as a failure) and ends pending reads
    /// at once.
    fn abort(&self) {
        match self {
            Transport::Ws(w) => w.abort(),
            Transport::Webrtc(w) => w.abort(),
            Transport::Wt(w) => w.abort(),
        }
    }
    /// A page cannot set DSCP.
    fn set_dscp(&self, _dscp: u8) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a browser does not let a page set DSCP",
        ))
    }
    /// A page does not learn its local address.
    fn local_addr(&self) -> Option<SocketAddr> {
        None
    }
    fn remote_addr(&self) -> Option<SocketAddr> {
        match self {
            Transport::Ws(w) => w.remote(),
            // A page is not told its peer's address.
            Transport::Webrtc(_) => None,
            Transport::Wt(w) => w.remote(),
        }
    }
    fn singular_transmission_max(&self) -> Option<u64> {
        None
    }
    fn max_datagram(&self) -> Option<u64> {
        match self {
            Transport::Wt(w) => w.max_datagram(),
            _ => None,
        }
    }
    fn early_data(&self) -> bool {
        false
    }
    fn directions(&self) -> (bool, bool) {
        match self {
            Transport::Wt(w) => (w.can_send(), w.can_receive()),
            _ => (true, true),
        }
    }
    /// WebSocket Clone is a new socket (establish reconnects); WebRTC Clone
    /// is a new data channel on the same peer connection, with the options
    /// of `props`.
    async fn open_sibling(
        &self,
        props: &crate::properties::TransportProperties,
    ) -> Option<io::Result<Transport>> {
        match self {
            Transport::Ws(_) => None,
            Transport::Webrtc(w) => Some(w.open_sibling(props).await),
            Transport::Wt(w) => Some(w.open_sibling().await.map(Transport::Wt)),
        }
    }
    /// CloseGroup/AbortGroup: WebRTC closes the peer connection, WebTransport the session.
    fn close_shared(&self, abort: bool) {
        match self {
            Transport::Webrtc(w) => w.close_peer(),
            Transport::Wt(w) => w.close_session(abort),
            Transport::Ws(_) => {}
        }
    }
    /// Reliability and order fixed per stack instance, if they are:
    /// (reliable, ordered) of a WebRTC data channel.
    fn delivery(&self) -> Option<(bool, bool)> {
        match self {
            Transport::Ws(_) | Transport::Wt(_) => None,
            Transport::Webrtc(w) => w.delivery(),
        }
    }
    /// A protocol-specific property (RFC 9622 §4.1) by normalized name,
    /// e.g. `webrtc.ordered` read from the browser's RTCDataChannel.
    fn protocol_property(&self, name: &str) -> Option<crate::properties::PropertyValue> {
        match self {
            Transport::Ws(_) | Transport::Wt(_) => None,
            Transport::Webrtc(w) => w.protocol_property(name),
        }
    }
}

/// One racing attempt: open `stack` to `remote`.
pub(crate) async fn connect(
    stack: StackId,
    remote: &Target,
    opts: &SocketOptions,
) -> io::Result<Transport> {
    match stack {
        StackId::Ws | StackId::Wss => Ok(Transport::Ws(
            WsTransport::connect(stack, remote, opts).await?,
        )),
        StackId::Wt => Ok(Transport::Wt(WtTransport::connect(remote, opts).await?)),
        other => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the {other} stack is not available in the browser"),
        )),
    }
}

/// Browsers cannot listen for TCP or UDP; the only Listener in a page is a
/// WebRTC peer's, yielding the data channels the peer opens.
pub(crate) struct BackendListener {
    local: SocketAddr,
    rx: Option<futures::channel::mpsc::UnboundedReceiver<io::Result<Incoming>>>,
}

impl BackendListener {
    pub(crate) async fn bind(
        _stacks: &[StackId],
        addr: SocketAddr,
        _opts: &SocketOptions,
    ) -> io::Result<BackendListener> {
        let _ = BackendListener {
            local: addr,
            rx: None,
        };
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a browser cannot listen; use Rendezvous over a signaling channel",
        ))
    }
    /// A listener over the data channels a WebRTC peer opens. A page does not
    /// learn its own address: the local address reads 0.0.0.0:0.
    pub(crate) fn from_channel(
        rx: futures::channel::mpsc::UnboundedReceiver<io::Result<Incoming>>,
    ) -> BackendListener {
        BackendListener {
            local: SocketAddr::from(([0, 0, 0, 0], 0)),
            rx: Some(rx),
        }
    }
    /// A page's Listener (a WebRTC peer's channels) has no handshake to
    /// spare: nothing reads this.
    pub(crate) fn refusal(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        Default::default()
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }
    pub(crate) async fn accept(&mut self) -> Option<io::Result<Incoming>> {
        use futures::StreamExt;
        self.rx.as_mut()?.next().await
    }
    pub(crate) fn stop(&mut self) {
        self.rx = None;
    }
}

pub(crate) fn system_resolve(
    host: String,
    _family: Family,
) -> BoxFuture<'static, Result<Vec<IpAddr>, String>> {
    Box::pin(async move {
        Err(format!(
            "the browser has no DNS API, so {host} cannot be resolved to addresses here; \
             initiate with the name as it is and the browser resolves it"
        ))
    })
}

pub(crate) fn apply_live_options(_t: &Transport, _opts: &SocketOptions) {}
