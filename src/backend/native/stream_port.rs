//! One port number, every stack: a Listener whose properties allow several
//! stacks serves them all on the same port number (RFC 9622 §7.2, RFC 9623
//! §4.6: "accept every eligible protocol"). Each transport port has one socket,
//! and the first bytes of a peer tell which stack it speaks.
//!
//! # TCP port: TLS or plain TCP
//!
//! One listening TCP socket. For each accepted connection the Listener peeks
//! (nothing is consumed) at the first bytes. A TLS record starts with content
//! type 0x16 (handshake) and version major 0x03: such a peer gets the rustls
//! server handshake. Anything else is plain TCP, and the Connection reads the
//! peeked bytes as its first data. A TLS client always speaks first; a plain
//! TCP client may not (server-speaks-first protocols), so after
//! [`PLAIN_TCP_GRACE`] of silence the peer is taken as plain TCP: such
//! protocols see that delay before their ConnectionReceived.
//!
//! The plain path exists only when the Listener's security allows plaintext
//! (`SecurityParameters::opportunistic()` or `disabled()`, which is when
//! selection keeps the TCP stack). With the default (required) security a
//! peer that does not start a TLS handshake (within the Listener's
//! handshake timeout, `ListenerLimits::with_handshake_timeout`) is refused — reset — and reported as a
//! `ListenerEvent::EstablishmentError` naming it, never silently.
//! Limit: a plain TCP client whose first bytes are 0x16 0x03 is taken for
//! TLS and fails the handshake (reported the same way).

#[cfg(feature = "tls")]
use super::tls;
#[cfg(all(feature = "tls", feature = "ws"))]
use super::ws::Prefixed;
#[cfg(feature = "ws")]
use super::ws::WsServer;
use super::{tcp, Transport};
use crate::backend::{Incoming, SocketOptions};
use crate::capability::Capabilities;
use socket2::SockRef;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
#[cfg(all(feature = "tls", feature = "ws"))]
use tokio::io::AsyncReadExt;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// With plain TCP allowed: how long a silent peer may wait before it is
/// taken as plain TCP (a TLS client speaks first, at once).
pub(crate) const PLAIN_TCP_GRACE: Duration = Duration::from_secs(2);

/// What a peer on the TCP port said first.
#[derive(Debug, PartialEq)]
enum FirstBytes {
    /// A TLS handshake record.
    Tls,
    /// Something else (the bytes seen, still unread).
    Other(Vec<u8>),
    /// Nothing within the wait.
    Silent,
    /// The peer closed without sending anything.
    Eof,
}

/// Whether `b` starts like a TLS handshake record: content type 22, version 3.x.
fn looks_like_tls(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] == 0x16 && b[1] == 0x03
}

/// The fuzz harness: the classifier's decisions on any first bytes, as the
/// peek loop takes them (a prefix at a time): it settles on TLS only for a
/// TLS record start, and waits only while the bytes may still become one.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_first_bytes(data: &[u8]) {
    for n in 1..=data.len().min(8) {
        let b = &data[..n];
        if looks_like_tls(b) {
            assert!(b[0] == 0x16 && b[1] == 0x03);
        }
        if partial_get(b) {
            assert!(HTTP_GET.starts_with(b) && b.len() < HTTP_GET.len());
        }
    }
}

/// The request line of a WebSocket upgrade starts with this.
const HTTP_GET: &[u8] = b"GET ";

/// Whether `b` may still become the start of [`HTTP_GET`] (more bytes needed).
fn partial_get(b: &[u8]) -> bool {
    b.len() < HTTP_GET.len() && HTTP_GET.starts_with(b)
}

/// Peek (consuming nothing) at the first bytes of `stream`, waiting up to
/// `wait`; with `want_get`, for enough bytes to tell an HTTP `GET `.
///
/// A peer that sent only part of what tells (one byte 0x16, or `GE`) is
/// waited for on readiness, not by polling: each peek that finds nothing
/// new clears the socket's read readiness (tokio clears it only if no new
/// data arrived meanwhile, so nothing is missed), and the next arrival wakes
/// the wait.
async fn first_bytes(
    stream: &TcpStream,
    wait: Duration,
    want_get: bool,
    saw: impl Fn(usize),
) -> io::Result<FirstBytes> {
    let deadline = crate::runtime::saturating_add(tokio::time::Instant::now(), wait);
    let mut buf = [0u8; 8];
    let timed_out = |seen: usize, buf: &[u8]| {
        Ok(if seen == 0 {
            FirstBytes::Silent
        } else {
            FirstBytes::Other(buf[..seen].to_vec())
        })
    };
    // Most peers tell at once: one peek.
    let mut seen = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
        Err(_) => return timed_out(0, &buf),
        Ok(r) => r?,
    };
    saw(seen);
    // Only for a partial prefix: a synchronous peek on a duplicate of the
    // descriptor (tokio's own peek is async only).
    let mut dup: Option<std::net::TcpStream> = None;
    loop {
        if seen == 0 {
            return Ok(FirstBytes::Eof);
        }
        if looks_like_tls(&buf[..seen]) {
            return Ok(FirstBytes::Tls);
        }
        let maybe_tls = seen < 2 && buf[0] == 0x16;
        let maybe_get = want_get && partial_get(&buf[..seen]);
        if !(maybe_tls || maybe_get) {
            return Ok(FirstBytes::Other(buf[..seen].to_vec()));
        }
        let dup = match &dup {
            Some(d) => d,
            None => dup.insert(SockRef::from(stream).try_clone()?.into()),
        };
        let before = seen;
        loop {
            let ready =
                match tokio::time::timeout_at(deadline, stream.ready(Interest::READABLE)).await {
                    Err(_) => return timed_out(before, &buf),
                    Ok(r) => r?,
                };
            if ready.is_read_closed() {
                // The peer finished after its prefix: nothing more will come
                // (and readiness for a closed side is never cleared).
                let n = dup.peek(&mut buf)?;
                return Ok(FirstBytes::Other(buf[..n].to_vec()));
            }
            let peeked = stream.try_io(Interest::READABLE, || match dup.peek(&mut buf) {
                // Nothing new: wait for the next arrival.
                Ok(n) if n == before => Err(io::ErrorKind::WouldBlock.into()),
                other => other,
            });
            match peeked {
                Ok(n) => {
                    seen = n;
                    saw(seen);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn plain_tcp(stream: TcpStream, remote: SocketAddr) -> Incoming {
    Incoming {
        transport: Transport::Tcp(tcp::TcpTransport::from_stream(stream)),
        caps: &Capabilities::TCP,
        remote,
        group: None,
        room: Default::default(),
    }
}

/// The stacks a Listener's TCP port serves (at least one).
#[derive(Clone)]
pub(crate) struct StreamPort {
    /// The TLS server side, for `tls` and `wss`.
    #[cfg(feature = "tls")]
    pub(crate) acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// The TLS stack (TLS over TCP carrying the Connection's bytes).
    #[cfg_attr(not(all(feature = "tls", feature = "ws")), allow(dead_code))]
    pub(crate) tls: bool,
    /// Plain TCP.
    pub(crate) plain: bool,
    /// WebSocket over TCP (`ws`).
    #[cfg(feature = "ws")]
    pub(crate) ws: Option<WsServer>,
    /// WebSocket over TLS (`wss`).
    #[cfg(feature = "ws")]
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) wss: Option<WsServer>,
    /// How long a peer may take to start its TLS handshake (when TLS is
    /// required), and then to finish it: the Listener's handshake timeout.
    pub(crate) timeout: Duration,
}

impl StreamPort {
    /// Whether peers that start a TLS handshake are served (`tls`, `wss`).
    fn takes_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.acceptor.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Whether peers that start a WebSocket upgrade are served (`ws`).
    fn takes_ws(&self) -> bool {
        #[cfg(feature = "ws")]
        return self.ws.is_some();
        #[cfg(not(feature = "ws"))]
        false
    }

    /// What a peer must start with, in words.
    fn expected(&self) -> &'static str {
        match (self.takes_tls(), self.takes_ws()) {
            (true, true) => "a TLS handshake or a WebSocket upgrade (HTTP GET)",
            (true, false) => "a TLS handshake",
            _ => "a WebSocket upgrade (HTTP GET)",
        }
    }
}

/// Make closing `stream` reset the connection (RST) instead of finishing
/// it: a refused or dropped peer learns at once that it was.
fn reset_on_close(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Refuse a peer: reset the connection, and say why, naming it.
fn refuse(stream: TcpStream, remote: SocketAddr, why: String, port: &StreamPort) -> io::Error {
    reset_on_close(&stream);
    drop(stream);
    refusal(remote, why, port.takes_ws())
}

/// The error that reports refusing `remote` for `why`, on a port that
/// takes WebSocket (`ws`) or not.
fn refusal(remote: SocketAddr, why: String, ws: bool) -> io::Error {
    let hint = if ws {
        "this Listener accepts no plain TCP (its SecurityParameters or properties exclude it)"
    } else {
        "this Listener requires TLS (its SecurityParameters allow no plaintext: use opportunistic() or disabled() to accept plain TCP as well)"
    };
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("refused {remote}: {why}; {hint}"),
    )
}

/// Serve one accepted connection of the TCP port (see the module docs).
async fn accept_stream(
    stream: TcpStream,
    remote: SocketAddr,
    port: StreamPort,
    saw: impl Fn(usize),
    spoke: impl FnOnce(),
) -> io::Result<Incoming> {
    let wait = if port.plain {
        PLAIN_TCP_GRACE
    } else {
        port.timeout
    };
    let first = first_bytes(&stream, wait, port.takes_ws(), saw)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("reading from {remote}: {e}")))?;
    if !matches!(first, FirstBytes::Silent | FirstBytes::Eof) {
        spoke();
    }
    match first {
        #[cfg(feature = "tls")]
        FirstBytes::Tls if port.takes_tls() => serve_tls(stream, remote, &port).await,
        #[cfg(feature = "ws")]
        FirstBytes::Other(b) if port.takes_ws() && b.starts_with(HTTP_GET) => {
            let ws = port.ws.as_ref().expect("ws");
            ws.accept_tcp(stream, remote).await
        }
        _ if port.plain => Ok(plain_tcp(stream, remote)),
        FirstBytes::Tls => Err(refuse(
            stream,
            remote,
            format!("it started a TLS handshake, not {}", port.expected()),
            &port,
        )),
        FirstBytes::Other(b) => Err(refuse(
            stream,
            remote,
            format!("it sent {}, not {}", hex(&b), port.expected()),
            &port,
        )),
        FirstBytes::Silent => Err(refuse(
            stream,
            remote,
            format!(
                "it sent nothing within {} ({} expected)",
                crate::runtime::ms_text(port.timeout),
                port.expected()
            ),
            &port,
        )),
        FirstBytes::Eof => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{remote} closed the connection before sending anything ({} expected)",
                port.expected()
            ),
        )),
    }
}

/// A peer that started a TLS handshake: the TLS stack, `wss`, or both (told
/// apart after the handshake, [`inside_tls`]).
#[cfg(feature = "tls")]
async fn serve_tls(
    stream: TcpStream,
    remote: SocketAddr,
    port: &StreamPort,
) -> io::Result<Incoming> {
    let acceptor = port.acceptor.clone().expect("takes TLS");
    #[cfg(feature = "ws")]
    if let Some(wss) = &port.wss {
        let sock = super::ws::TcpFd::of(&stream);
        let (s, early) = tls::server_handshake(acceptor, stream, remote, port.timeout).await?;
        return if port.tls {
            inside_tls(s, early, sock, remote, wss).await
        } else {
            wss.accept(Box::new(Prefixed::new(early, s)), sock, remote, true)
                .await
        };
    }
    tls::accept(acceptor, stream, remote, port.timeout).await
}

/// TLS and `wss` on one port: after the TLS handshake, the first plaintext
/// bytes tell them apart (`GET ` is a WebSocket upgrade; anything else, or
/// silence for [`PLAIN_TCP_GRACE`], is the TLS stack). The bytes read are
/// read again by the stack that gets them.
#[cfg(all(feature = "tls", feature = "ws"))]
async fn inside_tls(
    mut s: tokio_rustls::server::TlsStream<TcpStream>,
    early: Vec<u8>,
    sock: super::ws::TcpFd,
    remote: SocketAddr,
    wss: &WsServer,
) -> io::Result<Incoming> {
    let was_early = !early.is_empty();
    let mut seen = early;
    let deadline = tokio::time::Instant::now() + PLAIN_TCP_GRACE;
    let mut chunk = [0u8; 8];
    while seen.is_empty() || partial_get(&seen) {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) | Ok(Ok(0)) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("reading from {remote} over TLS: {e}"),
                ))
            }
        }
    }
    if seen.starts_with(HTTP_GET) {
        wss.accept(Box::new(Prefixed::new(seen, s)), sock, remote, true)
            .await
    } else {
        tls::TlsTransport::new(tokio_rustls::TlsStream::from(s), seen, was_early).map(|t| {
            Incoming {
                transport: Transport::Tls(t),
                caps: &Capabilities::TLS,
                remote,
                group: None,
                room: Default::default(),
            }
        })
    }
}

/// The TCP port's connections still being sniffed or handshaking, oldest
/// first. Their pending places are the Listener's (`pending_incoming`), so
/// peers that connect and then stay silent, or stall mid-handshake
/// (slowloris), could hold them all until the handshake timeout while new
/// peers wait in the kernel's backlog. Instead, once every place is taken, a
/// new peer takes the place of the oldest connection that has been silent,
/// or handshaking, for longer than `ListenerLimits::give_way_after` allows:
/// that one is dropped and reported. A peer
/// that completes its handshake in time is never dropped; connections
/// waiting for the application are not in here.
///
/// Only a peer that keeps the Listener waiting gives way: one whose bytes
/// sit unread in its socket is waiting for this process (a server short of
/// CPU polls its handshakes late), not stalling, so it keeps its place and
/// is looked at again [`RECHECK_BUSY`] later; the Listener meanwhile pushes
/// back (new peers wait in the kernel's backlog).
///
/// Evictions are paced: at most one per `pace` (the shorter age over the
/// number of places; 200 ms / 256 = 0.78 ms by default), a few more at once
/// only to catch up ([`EVICTION_BURST`]). A place cannot give way more than
/// once per that age anyway, so the pace keeps the rate at which stalling
/// peers are replaced; what it removes is the burst. Without it, the places
/// taken together in one burst (a flood fills them all at once) all fall due
/// together one age later, and giving them away all at once fills them
/// together again: every 200 ms, hundreds of drops, accepts and the flood's
/// reconnects in a few milliseconds, which is when an established
/// Connection's round trips waited for the CPU (`cargo bench --bench
/// hostile`, its `HOSTILE_TRACE`).
struct InProgress {
    next: u64,
    conns: std::collections::BTreeMap<u64, Started>,
    /// `ListenerLimits::give_way_after`: silent, handshaking.
    ages: (Duration, Duration),
    /// The time between two evictions.
    pace: Duration,
    /// When the next eviction is due by the pace (`None`: none yet).
    next_eviction: Option<tokio::time::Instant>,
}

/// How many evictions beyond the pace may happen at once, to catch up
/// (the timer wakes the accept loop at most once a millisecond).
const EVICTION_BURST: u32 = 4;

/// One connection in progress: since when, whether its peer spoke, its
/// peer, how to drop it, and its socket (a duplicate of the descriptor,
/// held only while it is in progress) to see whether its peer's bytes wait
/// unread.
struct Started {
    since: tokio::time::Instant,
    spoke: bool,
    remote: SocketAddr,
    evict: tokio::sync::oneshot::Sender<()>,
    sock: Option<socket2::Socket>,
    /// How many of its first bytes the sniff has looked at (it peeks: they
    /// stay in the socket until a stack reads them).
    sniffed: usize,
}

/// How soon a connection that could give its place away, but whose peer's
/// bytes wait unread (see [`InProgress`]), is looked at again.
pub(crate) const RECHECK_BUSY: Duration = Duration::from_millis(50);

impl Started {
    /// Bytes from its peer wait in its socket that this process has not
    /// looked at (more than the sniff peeked): the Listener is behind, not
    /// the peer. A peer that sent part of a first message and stalls has
    /// only what the sniff saw there, and is not. (A closed or failed socket
    /// has none.)
    fn unread(&self) -> bool {
        let Some(sock) = &self.sock else {
            return false;
        };
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16];
        let want = (self.sniffed + 1).min(buf.len());
        matches!(sock.peek(&mut buf[..want]), Ok(n) if n > self.sniffed)
    }

    /// When it may give its place away, given the `(silent, handshaking)`
    /// ages; `None`: never.
    fn evictable_at(
        &self,
        (silent, handshaking): (Duration, Duration),
    ) -> Option<tokio::time::Instant> {
        self.since
            .checked_add(if self.spoke { handshaking } else { silent })
    }
}

impl InProgress {
    /// Nothing in progress yet; `ages` are `ListenerLimits::give_way_after`,
    /// `places` its `pending_incoming`.
    fn new(ages: (Duration, Duration), places: usize) -> Self {
        let places = u32::try_from(places.max(1)).unwrap_or(u32::MAX);
        InProgress {
            next: 0,
            conns: Default::default(),
            ages,
            pace: ages.0.min(ages.1) / places,
            next_eviction: None,
        }
    }

    /// Register a new connection on `stream`; its key, and what fires if it
    /// is evicted.
    fn start(
        &mut self,
        stream: &TcpStream,
        remote: SocketAddr,
    ) -> (u64, tokio::sync::oneshot::Receiver<()>) {
        let sock = SockRef::from(stream).try_clone().ok();
        // Non-blocking like the stream: on unix a duplicate shares its file
        // status flags, so it is already; elsewhere it is made so.
        #[cfg(not(unix))]
        let sock = sock.and_then(|s| s.set_nonblocking(true).map(|()| s).ok());
        let (evict, evicted) = tokio::sync::oneshot::channel();
        let id = self.next;
        self.next += 1;
        self.conns.insert(
            id,
            Started {
                since: tokio::time::Instant::now(),
                spoke: false,
                remote,
                evict,
                sock,
                sniffed: 0,
            },
        );
        (id, evicted)
    }

    /// The sniff has looked at `n` of its first bytes.
    fn saw(&mut self, id: u64, n: usize) {
        if let Some(s) = self.conns.get_mut(&id) {
            s.sniffed = s.sniffed.max(n);
        }
    }

    /// Its peer sent its first bytes: it is handshaking now.
    fn spoke(&mut self, id: u64) {
        if let Some(s) = self.conns.get_mut(&id) {
            s.spoke = true;
        }
    }

    /// The connection ended its sniff and handshake (either way).
    fn done(&mut self, id: u64) {
        self.conns.remove(&id);
    }

    /// Drop the oldest connection that may give its place away (old enough,
    /// and no bytes of its peer waiting unread): its peer and age.
    /// Otherwise, when to look again.
    fn evict_oldest(&mut self) -> Result<(SocketAddr, Duration), Option<tokio::time::Instant>> {
        let now = tokio::time::Instant::now();
        // The pace: the next eviction's time, or as far back as the burst
        // allows to catch up.
        let slack = self.pace.saturating_mul(EVICTION_BURST);
        let floor = now.checked_sub(slack).unwrap_or(now);
        let paced = self.next_eviction.map_or(floor, |at| at.max(floor));
        if paced > now {
            return Err(Some(paced));
        }
        let ages = self.ages;
        let due = |s: &Started| s.evictable_at(ages).is_some_and(|at| at <= now);
        loop {
            // Not one whose task has just finished its handshake (it no
            // longer listens for an eviction, and is about to be `done`).
            let Some(id) = self
                .conns
                .iter()
                .find(|(_, s)| due(s) && !s.evict.is_closed() && !s.unread())
                .map(|(id, _)| *id)
            else {
                let next = self
                    .conns
                    .values()
                    .filter_map(|s| s.evictable_at(ages))
                    .filter(|&at| at > now)
                    .min();
                // Any due now has its peer's bytes unread: look again soon.
                let recheck = self.conns.values().any(due).then(|| now + RECHECK_BUSY);
                return Err(next.into_iter().chain(recheck).min());
            };
            let started = self.conns.remove(&id).expect("found above");
            if started.evict.send(()).is_err() {
                // It finished meanwhile: nobody was dropped.
                continue;
            }
            self.next_eviction = paced.checked_add(self.pace);
            return Ok((started.remote, now.duration_since(started.since)));
        }
    }
}

/// What a peer accepted while every place was taken has sent, as it waits
/// outside the places (see [`Lobby`]).
#[derive(Debug, PartialEq)]
enum Arrival {
    /// It waits on us: a whole ClientHello, a whole HTTP request head (on a
    /// port that takes WebSocket), or bytes that are neither (plain TCP, or
    /// a peer the sniff will refuse and report).
    Ready,
    /// Nothing (`spoke` false) or part of a first message, and nothing new
    /// for `quiet`, by the kernel's clock (so counting its time in the
    /// backlog).
    Quiet { spoke: bool, quiet: Duration },
    /// It closed or failed.
    Gone,
    /// Not judged: silent on a port that takes plain TCP (a client of a
    /// protocol where the server speaks first has nothing to say), or no
    /// kernel clock on this platform. It waits for a place.
    Unjudged,
}

/// How much of a peer's first bytes the lobby looks at: the largest TLS
/// record and its header (a ClientHello fits). A peer that filled it waits
/// on us.
const PEEK_MAX: usize = 5 + 16 * 1024;

/// Whether `b` holds a whole TLS handshake message (the ClientHello) in its
/// first handshake records, which may split it.
fn whole_client_hello(b: &[u8]) -> bool {
    let mut at = 0;
    let mut header = [0u8; 4];
    let mut have = 0usize;
    while at + 5 <= b.len() {
        if b[at] != 0x16 {
            // Not a handshake record: the TLS stack refuses it at once.
            return true;
        }
        let len = usize::from(u16::from_be_bytes([b[at + 3], b[at + 4]]));
        let body = &b[at + 5..b.len().min(at + 5 + len)];
        for (i, &x) in body.iter().take(4usize.saturating_sub(have)).enumerate() {
            header[have + i] = x;
        }
        have += body.len();
        if have >= 4 {
            let hello = 4
                + (usize::from(header[1]) << 16
                    | usize::from(header[2]) << 8
                    | usize::from(header[3]));
            if have >= hello {
                return true;
            }
        }
        if body.len() < len {
            return false;
        }
        at += 5 + len;
    }
    false
}

/// Whether `b`, a peer's first bytes (at most [`PEEK_MAX`]), hold what it
/// must send before the Listener has to act: a whole ClientHello, a whole
/// HTTP request head on a port that takes WebSocket (`ws`), or bytes that
/// are neither (a stack refuses them at once). A peer that filled
/// [`PEEK_MAX`] waits on us too.
fn whole_first_message(b: &[u8], ws: bool) -> bool {
    let n = b.len();
    if n == 0 {
        false
    } else if n == PEEK_MAX {
        true
    } else if b[0] == 0x16 && (n == 1 || looks_like_tls(b)) {
        whole_client_hello(b)
    } else if ws && (b.starts_with(HTTP_GET) || partial_get(b)) {
        b.windows(4).any(|w| w == b"\r\n\r\n")
    } else {
        true
    }
}

/// What a port expects of a peer waiting outside its places ([`waiting`]),
/// copied out of its [`StreamPort`] (each waiting peer keeps this, not the
/// port).
#[derive(Clone, Copy)]
struct Expecting {
    /// Whether an HTTP request head is a first message (WebSocket).
    ws: bool,
    /// The first message, in words.
    expected: &'static str,
    /// The handshake timeout.
    timeout: Duration,
}

/// How long a peer from `remote` may wait outside the places for its
/// first message: the handshake `timeout`, and up to half of it more,
/// spread by its port number, so that a flood accepted together does not
/// time out (and reconnect) together: the burst that pacing keeps from
/// evictions.
fn spread(timeout: Duration, remote: SocketAddr) -> Duration {
    let share = f64::from(remote.port().wrapping_mul(40503)) / f64::from(u16::MAX);
    timeout.saturating_add((timeout / 2).mul_f64(share))
}

/// What a peer waiting outside the places has sent, at one look.
enum Seen {
    /// Its first message, whole.
    Whole,
    /// Part of it; more may come.
    Part,
    /// It closed before its first message was whole.
    Closed,
    /// Bytes that start neither a TLS record nor (where WebSocket is
    /// served) an HTTP GET: its first bytes, in hex.
    Neither(String),
}

/// How a peer waiting outside the places ([`waiting`]) stopped waiting.
enum Waited {
    /// Its first message is whole: it needs a place.
    Whole,
    /// It closed, failed, or sent no whole first message in time: dropped,
    /// and this reports it.
    Dropped(io::Error),
}

/// A peer accepted while every place was taken, on a port that takes no
/// plain TCP, watched for readiness until its first message is whole (see
/// `ListenerLimits::with_waiting_peers`), at most until `deadline`. Each
/// arrival is peeked (nothing is read); a peek that finds nothing new
/// clears the socket's read readiness, so the next arrival wakes it.
async fn waiting(
    stream: &TcpStream,
    remote: SocketAddr,
    port: Expecting,
    deadline: tokio::time::Instant,
) -> Waited {
    let ws = port.ws;
    let mut seen = 0usize;
    let watch = async {
        loop {
            // A side the peer closed stays readable (its readiness is never
            // cleared): look once more, then it is whole or it never will be.
            let closed = stream.ready(Interest::READABLE).await?.is_read_closed();
            let peeked = stream.try_io(Interest::READABLE, || {
                let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); PEEK_MAX];
                let n = SockRef::from(stream).peek(&mut buf)?;
                if n == 0 {
                    return Ok(Seen::Closed);
                }
                if n == seen && !closed {
                    // Nothing new: clear the readiness, wait for more.
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                seen = n;
                // SAFETY: `peek` initialised the first `n` bytes.
                let b = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
                let tls = b[0] == 0x16 && (n == 1 || looks_like_tls(b));
                let get = ws && (b.starts_with(HTTP_GET) || partial_get(b));
                Ok(if !(tls || get) {
                    Seen::Neither(hex(&b[..n.min(8)]))
                } else if whole_first_message(b, ws) {
                    Seen::Whole
                } else if closed {
                    Seen::Closed
                } else {
                    Seen::Part
                })
            });
            match peeked {
                Ok(Seen::Closed) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{remote} closed the connection before sending a whole first message ({} expected)",
                            port.expected
                        ),
                    ))
                }
                Ok(Seen::Neither(bytes)) => {
                    // Refused now, as the sniff would, without a place.
                    reset_on_close(stream);
                    let why = format!("it sent {bytes}, not {}", port.expected);
                    return Err(refusal(remote, why, ws));
                }
                Ok(Seen::Whole) => return Ok(()),
                Ok(Seen::Part) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(io::Error::new(e.kind(), format!("reading from {remote}: {e}"))),
            }
        }
    };
    match tokio::time::timeout_at(deadline, watch).await {
        Ok(Ok(())) => Waited::Whole,
        Ok(Err(e)) => Waited::Dropped(e),
        Err(_) => {
            reset_on_close(stream);
            Waited::Dropped(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "refused {remote}: it sent {} within {} ({} expected), waiting while every pending place was taken (ListenerLimits handshake_timeout, waiting_peers)",
                    if seen == 0 { "nothing" } else { "no whole first message" },
                    crate::runtime::ms_text(port.timeout),
                    port.expected
                ),
            ))
        }
    }
}

/// What the peer on `stream` has sent so far (peeked: nothing is read), on
/// a port that takes WebSocket (`ws`) and plain TCP (`plain`) or not.
fn arrival(stream: &TcpStream, ws: bool, plain: bool) -> Arrival {
    // On the stack: under a flood this runs for every peer in the backlog.
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); PEEK_MAX];
    let n = match SockRef::from(stream).peek(&mut buf) {
        Ok(0) => return Arrival::Gone,
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(_) => return Arrival::Gone,
    };
    // SAFETY: `peek` initialised the first `n` bytes.
    let b: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
    if whole_first_message(b, ws) {
        return Arrival::Ready;
    }
    if n == 0 && plain {
        return Arrival::Unjudged;
    }
    match super::sockopt::tcp_quiet_for(&SockRef::from(stream)) {
        Some(quiet) => Arrival::Quiet {
            spoke: n > 0,
            quiet,
        },
        None => Arrival::Unjudged,
    }
}

/// One peer accepted while every place was taken, waiting outside them for
/// one (at most one such peer: the next stay in the kernel's backlog).
/// Under a flood of silent or stalled connections the backlog is full of
/// peers that have been quiet for longer than a place holder may be: each
/// is dropped as soon as it is reached, instead of each waiting its turn
/// for a place to give way, so a peer that speaks (a whole ClientHello, an
/// HTTP request) reaches the places in the time the backlog takes to read,
/// not in the time the flood takes to give way. A peer that waits on us is
/// never dropped for its quiet; one that is neither whole nor quiet (it
/// trickles) is dropped once it has been in the lobby for its give-way age.
struct Lobby {
    stream: TcpStream,
    remote: SocketAddr,
    /// When it came in.
    entered: tokio::time::Instant,
    /// When to look at it again; `None`: never (it waits for a place).
    recheck: Option<tokio::time::Instant>,
}

impl Lobby {
    /// The peer looked at now: kept (with when to look at it again), or
    /// reset and the error that reports it, naming it, `places` being all
    /// taken.
    fn judged(
        mut self,
        takes: (bool, bool),
        ages: (Duration, Duration),
        places: usize,
    ) -> Result<Lobby, io::Error> {
        match triage(&self.stream, takes, ages, self.entered.elapsed()) {
            Ok(recheck) => {
                self.recheck = recheck;
                Ok(self)
            }
            Err((kind, why)) => {
                reset_on_close(&self.stream);
                Err(io::Error::new(
                    kind,
                    format!(
                        "dropped {}: {why}, while all {places} pending places were taken (ListenerLimits pending_incoming, give_way_after)",
                        self.remote
                    ),
                ))
            }
        }
    }
}

/// What to do with the peer on `stream`, in the lobby for `waited`, on a
/// port that takes WebSocket and plain TCP or not (`(ws, plain)`): drop it
/// now (the error to report), or let it wait (until when to look again).
fn triage(
    stream: &TcpStream,
    (ws, plain): (bool, bool),
    (silent, handshaking): (Duration, Duration),
    waited: Duration,
) -> Result<Option<tokio::time::Instant>, (io::ErrorKind, String)> {
    let now = tokio::time::Instant::now();
    match arrival(stream, ws, plain) {
        Arrival::Ready | Arrival::Unjudged => Ok(None),
        Arrival::Gone => Err((
            io::ErrorKind::UnexpectedEof,
            "it closed while waiting in the backlog".into(),
        )),
        Arrival::Quiet { spoke, quiet } => {
            let age = if spoke { handshaking } else { silent };
            let quiet = quiet.max(waited);
            match age.checked_sub(quiet) {
                Some(left) if !left.is_zero() => Ok(now.checked_add(left)),
                _ => Err((
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} for {} by the kernel's clock (it waited in the backlog)",
                        if spoke {
                            "part of a first message and no more of it"
                        } else {
                            "silent"
                        },
                        crate::runtime::ms_text(quiet)
                    ),
                )),
            }
        }
    }
}

/// Listen on the TCP port `addr` for the stacks of `port`, telling them
/// apart by the first bytes (see the module docs). Accepted Connections and
/// failures (naming the peer) go to `tx`.
pub(crate) fn listen_stream_port(
    addr: SocketAddr,
    opts: &SocketOptions,
    port: StreamPort,
    tx: super::IncomingTx,
) -> io::Result<(SocketAddr, tokio::task::AbortHandle)> {
    let listener = tcp::bind_listener(addr, opts)?;
    let local = listener.local_addr()?;
    let opts = opts.clone();
    let task = tokio::spawn(async move {
        let mut backoff = tcp::AcceptBackoff::new();
        let progress = Arc::new(Mutex::new(InProgress::new(
            tx.limits().give_way_after(),
            tx.limits().pending_incoming(),
        )));
        // A peer accepted while every place was taken (see `Lobby`).
        let mut lobby: Option<Lobby> = None;
        let ages = tx.limits().give_way_after();
        let places = tx.limits().pending_incoming();
        let takes = (port.takes_ws(), port.plain);
        // Peers waiting outside the places for their whole first message
        // (`ListenerLimits::with_waiting_peers`; not on a port that takes
        // plain TCP, where a silent peer may be a real client), and those
        // whose first message is whole, waiting for a place.
        let waiting_bound = if port.plain {
            0
        } else {
            tx.limits()
                .waiting_peers()
                .unwrap_or_else(|| super::sockopt::default_waiting_peers(places))
        };
        use futures::StreamExt as _;
        let mut waiters = futures::stream::FuturesUnordered::new();
        let mut whole: std::collections::VecDeque<(TcpStream, SocketAddr)> = Default::default();
        let expecting = Expecting {
            ws: port.takes_ws(),
            expected: port.expected(),
            timeout: port.timeout,
        };
        let wait_outside = |stream: TcpStream, remote: SocketAddr| {
            let deadline = crate::runtime::saturating_add(
                tokio::time::Instant::now(),
                spread(expecting.timeout, remote),
            );
            Box::pin(async move {
                let waited = waiting(&stream, remote, expecting, deadline).await;
                (stream, remote, waited)
            })
        };
        loop {
            // A place among the pending connections (being sniffed, in their
            // TLS or WebSocket handshake, or waiting for the Listener). With
            // none left, peers wait outside them for their first message
            // (up to `waiting_bound`); the oldest slow place holder gives way
            // to one whose first message is whole (or, with no peers waiting
            // outside, to the next peer); failing that, stop accepting until
            // the Listener takes one, except to look at the next peer in the
            // backlog (one at a time, in the lobby).
            let room = loop {
                if let Some(room) = tx.try_room() {
                    break room;
                }
                let wanted = waiting_bound == 0
                    || !whole.is_empty()
                    || lobby.as_ref().is_some_and(|l| l.recheck.is_none());
                let evicted = if wanted {
                    progress.lock().unwrap().evict_oldest()
                } else {
                    Err(None)
                };
                let allowed = match evicted {
                    Ok((remote, age)) => {
                        let why = format!(
                            "dropped {remote}: still sending its first bytes or handshaking after {}, with nothing of it unread, while all {places} pending places were taken (the slowest gives way to a new peer; ListenerLimits pending_incoming)",
                            crate::runtime::ms_text(age),
                        );
                        if tx
                            .unbounded_send(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
                            .is_err()
                        {
                            return;
                        }
                        // Its place comes back as its task ends.
                        break tx.room().await;
                    }
                    Err(allowed) => allowed,
                };
                let recheck = lobby.as_ref().and_then(|l| l.recheck);
                let until = |at: Option<tokio::time::Instant>| async move {
                    match at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                let may_wait_outside = waiters.len() + whole.len() < waiting_bound;
                // A peer to look at: the lobby's, due again, or the next
                // in the backlog (waiting outside the places while there is
                // room for it there).
                let look_at = tokio::select! {
                    room = tx.room() => break room,
                    _ = until(allowed) => None,
                    _ = until(recheck) => lobby.take(),
                    Some((stream, remote, waited)) = waiters.next(), if !waiters.is_empty() => {
                        match waited {
                            Waited::Whole if tx.refusing() => {
                                reset_on_close(&stream);
                            }
                            Waited::Whole => whole.push_back((stream, remote)),
                            Waited::Dropped(e) => {
                                if tx.unbounded_send(Err(e)).is_err() {
                                    return;
                                }
                            }
                        }
                        None
                    }
                    accepted = listener.accept(), if lobby.is_none() => match accepted {
                        Ok((stream, remote)) => {
                            backoff.succeeded();
                            if tx.refusing() {
                                // The Listener's limit is 0: reset at once.
                                reset_on_close(&stream);
                                None
                            } else if may_wait_outside {
                                waiters.push(wait_outside(stream, remote));
                                None
                            } else {
                                Some(Lobby {
                                    stream,
                                    remote,
                                    entered: tokio::time::Instant::now(),
                                    recheck: None,
                                })
                            }
                        }
                        Err(e) => {
                            if let Some(e) = backoff.failed(e).await {
                                if tx.unbounded_send(Err(e)).is_err() {
                                    return;
                                }
                            }
                            None
                        }
                    },
                };
                if let Some(l) = look_at {
                    match l.judged(takes, ages, places) {
                        Ok(l) => lobby = Some(l),
                        Err(e) => {
                            if tx.unbounded_send(Err(e)).is_err() {
                                return;
                            }
                        }
                    }
                }
            };
            // Who gets the place: a peer whose first message is whole,
            // the lobby's, or the next in the backlog (or a waiting peer
            // whose first message becomes whole first).
            let accepted = if let Some(peer) = whole.pop_front() {
                Ok(peer)
            } else if let Some(l) = lobby.take() {
                Ok((l.stream, l.remote))
            } else if waiters.is_empty() {
                listener.accept().await
            } else {
                loop {
                    tokio::select! {
                        accepted = listener.accept() => break accepted,
                        Some((stream, remote, waited)) = waiters.next() => match waited {
                            Waited::Whole => break Ok((stream, remote)),
                            Waited::Dropped(e) => {
                                if tx.unbounded_send(Err(e)).is_err() {
                                    return;
                                }
                            }
                        },
                    }
                }
            };
            let (stream, remote) = match accepted {
                Ok(x) => {
                    backoff.succeeded();
                    x
                }
                Err(e) => {
                    if let Some(e) = backoff.failed(e).await {
                        if tx.unbounded_send(Err(e)).is_err() {
                            break;
                        }
                    }
                    continue;
                }
            };
            if tx.refusing() {
                // The Listener's limit is 0: reset at once, before any sniff
                // or handshake.
                reset_on_close(&stream);
                continue;
            }
            if let Err(e) = tcp::apply_stream_options(&SockRef::from(&stream), &opts) {
                if tx.unbounded_send(Err(e)).is_err() {
                    break;
                }
                continue;
            }
            // Each peer on its own task: a silent one delays nobody else.
            let port = port.clone();
            let tx = tx.clone();
            let (id, evicted) = progress.lock().unwrap().start(&stream, remote);
            let progress = progress.clone();
            tokio::spawn(async move {
                let saw = |n| progress.lock().unwrap().saw(id, n);
                let spoke = || progress.lock().unwrap().spoke(id);
                let item = tokio::select! {
                    item = accept_stream(stream, remote, port, saw, spoke) => item,
                    // Evicted (reported by the accept loop): the stream and
                    // the place go with this task.
                    _ = evicted => return,
                };
                progress.lock().unwrap().done(id);
                let item = item.map(|mut i| {
                    i.room = room;
                    i
                });
                let _ = tx.unbounded_send(item);
            });
        }
    });
    Ok((local, task.abort_handle()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_records_are_recognised() {
        assert!(looks_like_tls(&[0x16, 0x03, 0x01, 0x02, 0x00]));
        assert!(!looks_like_tls(&[0x16]));
        assert!(!looks_like_tls(&[0x00, 0x00, 0x00, 0x05]));
        assert!(!looks_like_tls(b"GET / HTTP/1.1"));
    }

    /// A loopback pair: the accepted side, and the client side.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (server, client)
    }

    /// With every place taken, a peer whose bytes wait unread (the Listener
    /// fell behind: its handshake task was not polled) keeps its place past
    /// the eviction age, while one that sent nothing, or whose bytes were
    /// read and that then stalled, gives way. Real loopback sockets; the
    /// connections are made older by moving their start back.
    #[tokio::test]
    async fn only_a_peer_that_keeps_the_listener_waiting_gives_way() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt};
        let mut progress = InProgress::new(
            crate::ListenerLimits::default().give_way_after(),
            crate::ListenerLimits::default().pending_incoming(),
        );
        let (silent_age, handshaking_age) = progress.ages;
        let age = |p: &mut InProgress, by: Duration| {
            p.conns.values_mut().for_each(|s| s.since -= by);
        };
        // Spoke first, then a silent one; the speaker's bytes stay unread.
        let (talker, mut talker_peer) = pair().await;
        talker_peer.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        let (talker_id, _t) = progress.start(&talker, talker_peer.local_addr().unwrap());
        let (silent, silent_peer) = pair().await;
        let (_, _s) = progress.start(&silent, silent_peer.local_addr().unwrap());
        // The bytes are in the talker's socket.
        let mut b = [0u8; 1];
        assert_eq!(talker.peek(&mut b).await.unwrap(), 1);
        assert!(progress.evict_oldest().is_err(), "nobody is old enough yet");
        age(&mut progress, silent_age);
        // The talker is older, but its bytes wait unread: the silent one goes.
        let (gone, _) = progress.evict_oldest().expect("the silent peer gives way");
        assert_eq!(gone, silent_peer.local_addr().unwrap());
        // Only the busy talker is left: look again soon, evict nobody.
        let before = tokio::time::Instant::now();
        let again = progress.evict_oldest().expect_err("a busy peer stays");
        let again = again.expect("a time to look again");
        assert!(
            again >= before + RECHECK_BUSY && again <= tokio::time::Instant::now() + RECHECK_BUSY
        );
        // Its bytes read (the handshake took them) and it stalls: it goes
        // once it has been handshaking long enough.
        progress.spoke(talker_id);
        let mut talker = talker;
        let mut got = [0u8; 3];
        talker.read_exact(&mut got).await.unwrap();
        assert_eq!(
            progress.evict_oldest(),
            Err(progress.conns[&talker_id].evictable_at(progress.ages))
        );
        age(&mut progress, handshaking_age);
        let (gone, _) = progress.evict_oldest().expect("the stalled peer gives way");
        assert_eq!(gone, talker_peer.local_addr().unwrap());
        assert!(progress.conns.is_empty());
    }

    /// A ClientHello is whole once its handshake message is, in one record
    /// or split over several; a whole record that holds only part of it is
    /// not.
    #[test]
    fn a_client_hello_is_whole_when_its_handshake_message_is() {
        // Handshake type 1, length 6; the record holds all of it.
        let whole = [0x16, 3, 1, 0, 10, 1, 0, 0, 6, 9, 9, 9, 9, 9, 9];
        assert!(whole_client_hello(&whole));
        assert!(!whole_client_hello(&whole[..14]));
        // The same message in two records (6 and 4 bytes).
        let split = [
            0x16, 3, 1, 0, 6, 1, 0, 0, 6, 9, 9, 0x16, 3, 1, 0, 4, 9, 9, 9, 9,
        ];
        assert!(whole_client_hello(&split));
        assert!(!whole_client_hello(&split[..11]));
        assert!(!whole_client_hello(&split[..19]));
        // A whole but empty record, or one announcing a longer message.
        assert!(!whole_client_hello(&[0x16, 3, 1, 0, 0]));
        assert!(!whole_client_hello(&[0x16, 3, 1, 0, 4, 1, 0, 1, 0]));
        // Something other than a handshake record after it: let TLS refuse it.
        assert!(whole_client_hello(&[
            0x16, 3, 1, 0, 4, 1, 0, 1, 0, 0x15, 3, 3, 0, 2, 2, 40
        ]));
    }

    /// A peer waiting outside the places is judged by what it sent and,
    /// by the kernel's clock, how long ago: one that waits on us (a whole
    /// ClientHello, a whole HTTP request head on a WebSocket port, other
    /// bytes) is never dropped for its quiet; a silent one, or one that sent
    /// part of a first message, is once quiet for its give-way age (its
    /// time in the lobby counts too: a peer that trickles goes as well); a
    /// silent one on a plain-TCP port is not judged; one that closed goes.
    /// Ages of 1 s and 2 s keep a slow machine's delays out of the way.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_lobby_drops_quiet_peers_but_not_ones_waiting_on_us() {
        use tokio::io::AsyncWriteExt;
        let ages = (Duration::from_secs(1), Duration::from_secs(2));
        let tls_port = (false, false);
        let ws_port = (true, false);
        let plain_port = (false, true);
        let (silent, _silent_peer) = pair().await;
        let (partial, mut partial_peer) = pair().await;
        partial_peer
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 1, 2])
            .await
            .unwrap();
        let (record, mut record_peer) = pair().await;
        record_peer
            .write_all(&[0x16, 0x03, 0x01, 0x00, 0x06, 1, 0, 0, 2, 7, 7])
            .await
            .unwrap();
        let (get, mut get_peer) = pair().await;
        get_peer
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (half_get, mut half_get_peer) = pair().await;
        half_get_peer
            .write_all(b"GET / HTTP/1.1\r\n")
            .await
            .unwrap();
        let (closed, closed_peer) = pair().await;
        drop(closed_peer);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let quiet_of = |a: Arrival| match a {
            Arrival::Quiet { quiet, .. } => quiet,
            other => panic!("expected a quiet peer, got {other:?}"),
        };
        assert!(matches!(
            arrival(&silent, false, false),
            Arrival::Quiet { spoke: false, .. }
        ));
        assert!(matches!(
            arrival(&partial, false, false),
            Arrival::Quiet { spoke: true, .. }
        ));
        assert!(matches!(
            arrival(&half_get, true, false),
            Arrival::Quiet { spoke: true, .. }
        ));
        assert_eq!(arrival(&record, false, false), Arrival::Ready);
        assert_eq!(arrival(&get, true, false), Arrival::Ready);
        // An HTTP request head is judged only where WebSocket is served.
        assert_eq!(arrival(&half_get, false, true), Arrival::Ready);
        assert_eq!(arrival(&silent, false, true), Arrival::Unjudged);
        assert_eq!(arrival(&closed, false, false), Arrival::Gone);
        // Young: they wait, to be looked at again when their age is up,
        // counted from their quiet as the kernel tells it.
        let quiet = quiet_of(arrival(&silent, false, false));
        let now = tokio::time::Instant::now();
        let again = triage(&silent, tls_port, ages, Duration::ZERO)
            .unwrap()
            .expect("a time to look again");
        assert!(
            // The kernel counts in jiffies (4-10 ms): some slack.
            again >= now + ages.0 - quiet - Duration::from_millis(50),
            "{again:?}"
        );
        assert!(
            again <= tokio::time::Instant::now() + ages.0 - quiet,
            "{again:?}"
        );
        let again = triage(&partial, tls_port, ages, Duration::ZERO)
            .unwrap()
            .expect("a time to look again");
        assert!(
            again > now + ages.0,
            "judged by the handshaking age: {again:?}"
        );
        assert_eq!(triage(&silent, plain_port, ages, Duration::ZERO), Ok(None));
        assert_eq!(
            triage(&closed, tls_port, ages, Duration::ZERO)
                .unwrap_err()
                .0,
            io::ErrorKind::UnexpectedEof
        );
        // Time in the lobby counts, whatever the kernel says.
        assert!(triage(&partial, tls_port, ages, ages.1).is_err());
        // Past their ages.
        tokio::time::sleep(ages.1).await;
        let (kind, why) = triage(&silent, tls_port, ages, Duration::ZERO).unwrap_err();
        assert_eq!(kind, io::ErrorKind::TimedOut);
        assert!(
            why.contains("silent for") && why.contains("backlog"),
            "{why}"
        );
        let (_, why) = triage(&partial, tls_port, ages, Duration::ZERO).unwrap_err();
        assert!(why.contains("part of a first message"), "{why}");
        assert!(triage(&half_get, ws_port, ages, Duration::ZERO).is_err());
        // Waiting on us: never dropped for its quiet.
        assert_eq!(triage(&record, tls_port, ages, ages.1), Ok(None));
        assert_eq!(triage(&get, ws_port, ages, ages.1), Ok(None));
        assert_eq!(triage(&silent, plain_port, ages, ages.1), Ok(None));
    }

    /// Evictions are paced: with more places due than the burst allows,
    /// only the burst gives way at once, and the rest are told when they
    /// may; once the pace's time has passed, the next one goes. Real
    /// loopback sockets; a pace of 10 s (ages of 10 s, one place), and the
    /// time passing is the connections' start and the pace moved back.
    #[tokio::test]
    async fn evictions_are_paced() {
        let age = Duration::from_secs(10);
        let mut progress = InProgress::new((age, age), 1);
        let n = EVICTION_BURST as usize + 2;
        let mut kept = Vec::new();
        for _ in 0..n {
            let (server, client) = pair().await;
            let evicted = progress.start(&server, client.local_addr().unwrap()).1;
            kept.push((server, client, evicted));
        }
        progress.conns.values_mut().for_each(|s| s.since -= age);
        let mut gone = 0;
        let refused = loop {
            match progress.evict_oldest() {
                Ok(_) => gone += 1,
                Err(e) => break e,
            }
        };
        assert!(
            gone >= 1 && gone <= EVICTION_BURST as usize + 1,
            "{gone} went"
        );
        assert_eq!(progress.conns.len(), n - gone, "the rest are still due");
        let at = refused.expect("a time to evict again");
        assert!(at > tokio::time::Instant::now());
        // The pace's time has passed: the next due one goes.
        progress.next_eviction = progress.next_eviction.map(|t| t - age);
        assert!(progress.evict_oldest().is_ok());
        assert_eq!(progress.conns.len(), n - gone - 1);
    }

    /// A connection whose task has just finished its handshake (it no
    /// longer listens for an eviction) is not reported as dropped: the
    /// next due one gives way instead.
    #[tokio::test]
    async fn a_finished_handshake_is_not_reported_as_evicted() {
        let age = Duration::from_secs(10);
        let mut progress = InProgress::new((age, age), 1);
        let (a, a_peer) = pair().await;
        let (b, b_peer) = pair().await;
        let finished = progress.start(&a, a_peer.local_addr().unwrap()).1;
        let _listening = progress.start(&b, b_peer.local_addr().unwrap()).1;
        drop(finished);
        progress.conns.values_mut().for_each(|s| s.since -= age);
        let (gone, _) = progress.evict_oldest().expect("the second gives way");
        assert_eq!(gone, b_peer.local_addr().unwrap());
    }

    /// A peer that sends part of a first message and stalls (slowloris with
    /// a byte of a TLS record) still gives way: its byte counts as unread
    /// only until the sniff has looked at it.
    #[tokio::test]
    async fn a_stalled_partial_prefix_still_gives_way() {
        use tokio::io::AsyncWriteExt;
        let mut progress = InProgress::new(
            crate::ListenerLimits::default().give_way_after(),
            crate::ListenerLimits::default().pending_incoming(),
        );
        let (stalled, mut peer) = pair().await;
        peer.write_all(&[0x16]).await.unwrap();
        let (id, _e) = progress.start(&stalled, peer.local_addr().unwrap());
        let mut b = [0u8; 1];
        assert_eq!(stalled.peek(&mut b).await.unwrap(), 1);
        let silent_age = progress.ages.0;
        progress
            .conns
            .values_mut()
            .for_each(|s| s.since -= silent_age);
        // Not looked at yet: the Listener is behind.
        assert!(matches!(progress.evict_oldest(), Err(Some(_))));
        // The sniff saw it, and nothing more came: it goes.
        progress.saw(id, 1);
        let (gone, _) = progress.evict_oldest().expect("the stalled peer gives way");
        assert_eq!(gone, peer.local_addr().unwrap());
    }

    /// A prefix split over several segments is read on readiness, and what
    /// was peeked is still there, readable at once, for the stack that
    /// gets the peer.
    #[tokio::test]
    async fn a_split_prefix_is_waited_for_and_left_unread() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt};
        let wait = Duration::from_secs(10);
        // TLS: 0x16, then 0x03 0x01 a moment later.
        let (server, mut client) = pair().await;
        client.write_all(&[0x16]).await.unwrap();
        let sniff = tokio::spawn(async move {
            let r = first_bytes(&server, wait, false, |_| ()).await.unwrap();
            (r, server)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.write_all(&[0x03, 0x01]).await.unwrap();
        let (r, mut server) = sniff.await.unwrap();
        assert_eq!(r, FirstBytes::Tls);
        let mut got = [0u8; 3];
        tokio::time::timeout(Duration::from_secs(5), server.read_exact(&mut got))
            .await
            .expect("the peeked bytes are readable at once")
            .unwrap();
        assert_eq!(got, [0x16, 0x03, 0x01]);
        // An HTTP GET typed slowly.
        let (server, mut client) = pair().await;
        client.write_all(b"GE").await.unwrap();
        let sniff =
            tokio::spawn(async move { first_bytes(&server, wait, true, |_| ()).await.unwrap() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.write_all(b"T /x").await.unwrap();
        assert_eq!(sniff.await.unwrap(), FirstBytes::Other(b"GET /x".to_vec()));
    }

    /// A peer that sends a prefix and then closes, or goes silent, ends
    /// the wait: at once when it closed, at the deadline when silent.
    #[tokio::test]
    async fn a_prefix_then_close_or_silence_ends_the_wait() {
        use tokio::io::AsyncWriteExt;
        let (server, mut client) = pair().await;
        client.write_all(&[0x16]).await.unwrap();
        client.shutdown().await.unwrap();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            first_bytes(&server, Duration::from_secs(60), false, |_| ()),
        )
        .await
        .expect("a closed peer ends the wait before its deadline")
        .unwrap();
        assert_eq!(r, FirstBytes::Other(vec![0x16]));
        let (server, mut client) = pair().await;
        client.write_all(b"G").await.unwrap();
        let r = first_bytes(&server, Duration::from_millis(200), true, |_| ())
            .await
            .unwrap();
        assert_eq!(r, FirstBytes::Other(b"G".to_vec()));
        drop(client);
    }
}
