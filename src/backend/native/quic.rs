//! QUIC (RFC 9000) over quinn, mapped as draft-taps-quic-mapping says: a
//! Connection is one stream; the QUIC connection is the Connection Group, so
//! Clone opens a new stream without a new handshake; Messages with
//! msgReliable false go as RFC 9221 datagrams.

use super::quinn_stream::{open, other, DatagramWait, Session, StreamTransport};
use crate::backend::{Incoming, SessionScope, SocketOptions};
use crate::capability::Capabilities;
use bytes::Bytes;
use futures::FutureExt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

#[cfg(feature = "wt")]
pub(crate) use super::wt::WtServer;

/// Without the `wt` feature no Listener serves WebTransport: its server
/// cannot exist, so `Option<WtServer>` is always `None`.
#[cfg(not(feature = "wt"))]
#[derive(Clone)]
pub(crate) enum WtServer {}

#[cfg(not(feature = "wt"))]
impl WtServer {
    async fn serve_connection(
        &self,
        _: quinn::Connection,
        _: super::IncomingTx,
        _: crate::backend::Room,
        _: Quiet,
    ) {
        match *self {}
    }
}

/// The QUIC connections (and WebTransport sessions) of one Listener that
/// opened no stream within the handshake timeout: the application cannot
/// see them yet (a peer's stream is known when its first bytes come), so
/// each gives its place among the pending connections back and waits here
/// for its first stream, up to as many as there are places; past that, one
/// is closed. Clones share the count.
#[derive(Clone, Default)]
pub(crate) struct Quiet(Arc<std::sync::atomic::AtomicUsize>);

/// One quiet connection, counted until dropped.
pub(crate) struct QuietOne(Arc<std::sync::atomic::AtomicUsize>);

impl Quiet {
    /// Count one more quiet connection, if fewer than `bound` are.
    pub(crate) fn admit(&self, bound: usize) -> Option<QuietOne> {
        use std::sync::atomic::Ordering::Relaxed;
        self.0
            .fetch_update(Relaxed, Relaxed, |n| (n < bound).then_some(n + 1))
            .ok()
            .map(|_| QuietOne(Arc::clone(&self.0)))
    }
}

impl Drop for QuietOne {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Where a QUIC connection (or WebTransport session) stands among its
/// Listener's pending places while it waits for the peer's streams (see
/// `ListenerLimits::with_pending_incoming`): the handshake's place is the
/// first stream's until the handshake timeout; past it the connection gives
/// the place back and counts among the [`Quiet`] ones (or, past as many as
/// there are places, is closed); each later stream waits for a place of its
/// own before it is taken.
pub(crate) struct StreamPlace {
    /// The place the next stream takes; `None` while one is waited for.
    place: Option<crate::backend::Room>,
    /// When the first stream is due; `None` once it came or was overdue.
    first_by: Option<tokio::time::Instant>,
    /// Counted among the quiet connections while the first is overdue.
    quiet: Option<QuietOne>,
    /// No stream was taken yet.
    first: bool,
}

impl StreamPlace {
    /// With the handshake's place, the first stream due within `timeout`.
    pub(crate) fn new(
        handshake: crate::backend::Room,
        timeout: std::time::Duration,
    ) -> StreamPlace {
        StreamPlace {
            place: Some(handshake),
            first_by: Some(crate::runtime::saturating_add(
                tokio::time::Instant::now(),
                timeout,
            )),
            quiet: None,
            first: true,
        }
    }

    /// Whether the next stream has a place (else one is waited for).
    pub(crate) fn has_place(&self) -> bool {
        self.place.is_some()
    }

    /// Whether the first stream is still due (see [`overdue`](Self::overdue)).
    pub(crate) fn first_due(&self) -> bool {
        self.first_by.is_some()
    }

    /// A place came for the next stream.
    pub(crate) fn give(&mut self, room: crate::backend::Room) {
        self.place = Some(room);
    }

    /// Resolves when the first stream is overdue (never once it came).
    pub(crate) fn overdue(&self) -> impl std::future::Future<Output = ()> + 'static {
        let at = self.first_by;
        async move {
            match at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        }
    }

    /// The first stream is overdue: the place goes back and the connection
    /// counts as quiet; past `places` quiet ones, the error to close it with
    /// and report instead. `what` and `remote` name it.
    pub(crate) fn go_quiet(
        &mut self,
        quiet: &Quiet,
        what: &str,
        remote: SocketAddr,
        timeout: std::time::Duration,
        places: usize,
    ) -> io::Result<()> {
        self.first_by = None;
        let counted = quiet.admit(places).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{what} from {remote}: no stream opened within {} (the Listener's handshake timeout) while {places} other connections were as quiet (ListenerLimits pending_incoming); closed",
                    crate::runtime::ms_text(timeout)
                ),
            )
        })?;
        self.quiet = Some(counted);
        self.place = None;
        Ok(())
    }

    /// A stream is taken: its place, and whether it is the first.
    pub(crate) fn take(&mut self) -> (crate::backend::Room, bool) {
        self.first_by = None;
        self.quiet = None;
        let first = std::mem::replace(&mut self.first, false);
        (self.place.take().flatten(), first)
    }
}

/// One QUIC stream (a Connection), with its QUIC connection (the group).
pub(crate) type QuicTransport = StreamTransport<quinn::Connection>;

impl Session for quinn::Connection {
    type Send = quinn::SendStream;
    type Recv = quinn::RecvStream;
    type Error = quinn::ConnectionError;
    const NAME: &'static str = "QUIC";

    async fn open_bi(&self) -> io::Result<(Self::Send, Self::Recv)> {
        quinn::Connection::open_bi(self).await.map_err(other)
    }

    async fn open_uni(&self) -> io::Result<Self::Send> {
        quinn::Connection::open_uni(self).await.map_err(other)
    }

    fn read_chunk(
        recv: &mut Self::Recv,
        max: usize,
    ) -> impl std::future::Future<Output = io::Result<Option<Bytes>>> + Send + '_ {
        recv.read_chunk(max, true).map(|r| match r {
            Ok(c) => Ok(c.map(|c| c.bytes)),
            Err(quinn::ReadError::Reset(code)) => Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("the peer reset the QUIC stream (code {code})"),
            )),
            Err(e) => Err(other(e)),
        })
    }

    fn read_datagram(&self) -> DatagramWait<Self::Error> {
        let conn = self.clone();
        Box::pin(async move { conn.read_datagram().await })
    }

    fn send_datagram(&self, data: Bytes) -> io::Result<()> {
        quinn::Connection::send_datagram(self, data)
            .map_err(|e| other(format!("QUIC datagram: {e}")))
    }

    fn finish(send: &mut Self::Send) {
        // An error means the stream already ended (reset or finished).
        let _ = send.finish();
    }

    async fn stopped(send: Self::Send) {
        let _ = send.stopped().await;
    }

    fn reset(send: &mut Self::Send) {
        let _ = send.reset(0u32.into());
    }

    fn stop(recv: &mut Self::Recv) {
        let _ = recv.stop(0u32.into());
    }

    fn close(&self, code: u32, why: &[u8]) {
        quinn::Connection::close(self, code.into(), why);
    }

    fn max_datagram(&self) -> Option<u64> {
        self.max_datagram_size().map(|n| n as u64)
    }

    fn stable_id(&self) -> usize {
        quinn::Connection::stable_id(self)
    }

    fn remote_address(&self) -> SocketAddr {
        quinn::Connection::remote_address(self)
    }
}

/// At most this many scopes (TransportContexts) keep QUIC tokens at once;
/// past it the oldest scopes' tokens are dropped (costing those servers one
/// Retry round trip, nothing else).
const MAX_TOKEN_SCOPES: usize = 64;

/// The store of QUIC address-validation tokens (NEW_TOKEN, RFC 9000 §8.1.3)
/// a client attempt in `scope` uses, as TLS session tickets are scoped: one
/// per TransportContext (so a server that asked for address validation
/// once does not send the next connect of the same context a Retry), one
/// for the process, none under isolateSession (a token links Connections).
/// quinn's [`quinn::TokenMemoryCache`] hands each token out once. Tokens
/// stay in memory and are never saved.
pub(crate) fn token_store(scope: SessionScope) -> Arc<dyn quinn::TokenStore> {
    use std::collections::VecDeque;
    use std::sync::{Mutex, OnceLock};
    type Stores = VecDeque<(SessionScope, Arc<quinn::TokenMemoryCache>)>;
    static STORES: OnceLock<Mutex<Stores>> = OnceLock::new();
    if scope == SessionScope::Isolated {
        return Arc::new(quinn::NoneTokenStore);
    }
    let mut stores = STORES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some((_, s)) = stores.iter().find(|(k, _)| *k == scope) {
        return s.clone();
    }
    if stores.len() >= MAX_TOKEN_SCOPES {
        stores.pop_front();
    }
    let store = Arc::new(quinn::TokenMemoryCache::default());
    stores.push_back((scope, store.clone()));
    store
}

impl StreamTransport<quinn::Connection> {
    /// Connect (one racing attempt): ready after the QUIC handshake, with the
    /// first stream open. With `early` data and a session ticket for the
    /// server, the data goes out as 0-RTT on the first stream before the
    /// handshake finishes (re-sent after it if the server rejects 0-RTT);
    /// the second value says whether `early` was sent.
    pub(crate) async fn connect(
        remote: SocketAddr,
        server_name: &str,
        tls: Arc<rustls::ClientConfig>,
        opts: &SocketOptions,
        early: Option<&[u8]>,
    ) -> io::Result<(Self, bool)> {
        let bind = match opts.local {
            Some(l) => l,
            None if remote.is_ipv6() => "[::]:0".parse().expect("addr"),
            None => "0.0.0.0:0".parse().expect("addr"),
        };
        let endpoint = quinn::Endpoint::client(bind)?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(other)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport_config(opts));
        config.token_store(token_store(opts.session_scope));
        let connecting = endpoint
            .connect_with(config, remote, server_name)
            .map_err(|e| other(format!("QUIC connect to {remote}: {e}")))?;
        let handshake = |e: quinn::ConnectionError| {
            let text = format!("QUIC handshake with {remote}: {e}");
            super::described::described_by(io::ErrorKind::Other, text, e)
        };
        let Some(data) = early else {
            let conn = connecting.await.map_err(handshake)?;
            let (send, recv) = open(&conn, opts.direction).await?;
            let t = StreamTransport::from_streams(conn, send, recv, true, Some(endpoint));
            return Ok((t, false));
        };
        match connecting.into_0rtt() {
            Ok((conn, accepted)) => {
                // A ticket was there (each is used once): send the data as 0-RTT.
                let (mut send, mut recv) = open(&conn, opts.direction).await?;
                let no_send = || other("early data needs a stream that sends");
                send.as_mut()
                    .ok_or_else(no_send)?
                    .write_all(data)
                    .await
                    .map_err(other)?;
                if !accepted.await {
                    // Rejected: the 0-RTT stream and its data are gone; send again.
                    (send, recv) = open(&conn, opts.direction).await?;
                    send.as_mut()
                        .ok_or_else(no_send)?
                        .write_all(data)
                        .await
                        .map_err(other)?;
                }
                conn.handshake_data()
                    .ok_or_else(|| other(format!("QUIC handshake with {remote} did not finish")))?;
                let mut t = StreamTransport::from_streams(conn, send, recv, true, Some(endpoint));
                t.set_early(true);
                Ok((t, true))
            }
            Err(connecting) => {
                let conn = connecting.await.map_err(handshake)?;
                let (send, recv) = open(&conn, opts.direction).await?;
                let t = StreamTransport::from_streams(conn, send, recv, true, Some(endpoint));
                Ok((t, false))
            }
        }
    }
}

/// The data a QUIC connection's peer may have sent and nobody read yet, all
/// streams together: four streams' worth of quinn's stream window (1.25 MB
/// each). quinn's default sets no such bound, so a peer that opens its 100
/// streams and fills each (streams the application has not taken yet, see
/// `serve_keeping`) would pin 125 MB.
const CONNECTION_RECEIVE_WINDOW: u32 = 4 * 1_250_000;

pub(crate) fn transport_config(opts: &SocketOptions) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.receive_window(quinn::VarInt::from_u32(CONNECTION_RECEIVE_WINDOW));
    if let Some(idle) = opts.keep_alive {
        t.keep_alive_interval(Some(idle.unwrap_or(std::time::Duration::from_secs(15))));
    }
    if let Some(timeout) = opts.user_timeout {
        if let Ok(v) = quinn::IdleTimeout::try_from(timeout) {
            t.max_idle_timeout(Some(v));
        }
    }
    Arc::new(t)
}

/// Listen for QUIC on `addr`: every stream a peer opens becomes an Incoming
/// Connection, grouped by its QUIC connection.
pub(crate) fn listen(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    opts: &SocketOptions,
    wt: Option<WtServer>,
    tx: super::IncomingTx,
) -> io::Result<(SocketAddr, tokio::task::AbortHandle)> {
    let endpoint = quinn::Endpoint::server(server_config(tls, opts)?, addr)?;
    serve(endpoint, accepts_0rtt(opts), wt, tx)
}

/// Whether a Listener accepts 0-RTT: quinn accepts it only with
/// max_early_data_size u32::MAX (RFC 9001 §4.6.1); not when client
/// certificates must be verified first.
pub(crate) fn accepts_0rtt(opts: &SocketOptions) -> bool {
    !opts
        .security
        .as_ref()
        .is_some_and(|s| s.require_client_certificate)
}

/// A Listener's QUIC server configuration. quinn's defaults for address
/// validation stand: each validated client gets 2 NEW_TOKEN tokens (valid
/// for 2 weeks, from its IP), and a token presented later validates that
/// client without a Retry once (the `bloom` feature's replay log; without
/// it quinn refuses every token).
/// The packets that follow an Initial not taken yet (0-RTT data), per
/// Initial and in all (quinn's defaults: 10 MiB and 100 MiB).
const INCOMING_BUFFER: u64 = 256 << 10;
const INCOMING_BUFFER_TOTAL: u64 = 8 << 20;

pub(crate) fn server_config(
    tls: Arc<rustls::ServerConfig>,
    opts: &SocketOptions,
) -> io::Result<quinn::ServerConfig> {
    // 0-RTT (unless client certificates come first): see `with_early_data`.
    let sec = opts.security.clone().unwrap_or_default();
    let tls = super::tls_config::with_early_data(&tls, &sec, u32::MAX);
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(other)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config(opts));
    // Initials not taken yet (while every place is taken and a validated
    // peer waits for one): quinn's defaults queue up to 65,536 of them and
    // 100 MiB of the packets that follow; past these, CONNECTION_REFUSED.
    let places = opts.limits.pending_incoming();
    config
        .max_incoming(places.saturating_mul(4).max(64))
        .incoming_buffer_size(INCOMING_BUFFER)
        .incoming_buffer_size_total(INCOMING_BUFFER_TOTAL);
    Ok(config)
}

/// An incoming QUIC handshake from `remote` that did not complete within
/// the Listener's handshake timeout.
fn handshake_timed_out(remote: SocketAddr, timeout: std::time::Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "QUIC handshake from {remote}: not complete after {}",
            crate::runtime::ms_text(timeout)
        ),
    )
}

/// Accept on a server `endpoint` (its own socket, or one shared with plain
/// UDP by `datagram_port.rs`): every stream a peer opens becomes an Incoming
/// Connection, grouped by its QUIC connection. `zero_rtt`: accept 0-RTT
/// (see [`accepts_0rtt`]). With `wt`, connections that negotiated ALPN
/// `h3` are WebTransport sessions, served by `wt` instead.
pub(crate) fn serve(
    endpoint: quinn::Endpoint,
    zero_rtt: bool,
    wt: Option<WtServer>,
    tx: super::IncomingTx,
) -> io::Result<(SocketAddr, tokio::task::AbortHandle)> {
    serve_keeping(endpoint, zero_rtt, wt, tx, None)
}

/// [`serve`], holding `keep` for as long as it accepts.
pub(crate) fn serve_keeping(
    endpoint: quinn::Endpoint,
    zero_rtt: bool,
    wt: Option<WtServer>,
    tx: super::IncomingTx,
    keep: Option<super::udp::Keepalive>,
) -> io::Result<(SocketAddr, tokio::task::AbortHandle)> {
    let local = endpoint.local_addr()?;
    let task = tokio::spawn(async move {
        let _keep = keep;
        // Each handshake in progress from an address not validated yet
        // holds a clone: the strong count less one is how many there are.
        let unvalidated = Arc::new(());
        let quiet = Quiet::default();
        loop {
            let Some(incoming) = endpoint.accept().await else {
                break;
            };
            if tx.refusing() {
                // The Listener's limit is 0: CONNECTION_REFUSED, no handshake.
                incoming.refuse();
                continue;
            }
            // Address validation under load (RFC 9000 §8.1): past the
            // threshold, or while every place is taken, an unvalidated
            // Initial gets a Retry, which a spoofed source cannot answer
            // and which costs the Listener no state.
            let validated = incoming.remote_address_validated();
            let in_progress = Arc::strong_count(&unvalidated) - 1;
            let may_retry = !validated && incoming.may_retry();
            if may_retry && in_progress >= tx.limits().quic_retry_above() {
                let _ = incoming.retry();
                continue;
            }
            let room = match tx.try_room() {
                Some(room) => room,
                None if may_retry => {
                    let _ = incoming.retry();
                    continue;
                }
                // A validated peer waits for a place; the Initials behind
                // it wait in quinn's queue (bounded: `server_config`).
                None => tx.room().await,
            };
            let counted = (!validated).then(|| unvalidated.clone());
            let timeout = tx.limits().handshake_timeout();
            let tx = tx.clone();
            let wt = wt.clone();
            let quiet = quiet.clone();
            tokio::spawn(async move {
                // Held for the handshake (streams come later, without one).
                let handshake_room = room;
                let handshake_counted = counted;
                let remote = incoming.remote_address();
                // The handshake, bounded by the Listener's handshake timeout.
                let handshake = async {
                    // Accept 0-RTT (and answer in 0.5-RTT) unless client
                    // certificates must be checked first.
                    let mut connecting = incoming.accept()?;
                    // With WebTransport on this endpoint: the ALPN (h3) tells a
                    // session from a QUIC connection. Wait for it: a ClientHello
                    // may span several packets, so it may not be known yet.
                    let h3 = match &wt {
                        None => false,
                        Some(_) => connecting
                            .handshake_data()
                            .await?
                            .downcast::<quinn::crypto::rustls::HandshakeData>()
                            .ok()
                            .and_then(|h| h.protocol)
                            .is_some_and(|p| p == super::H3_ALPN.as_bytes()),
                    };
                    // WebTransport has no 0-RTT (capability row): its sessions
                    // complete the handshake first.
                    // In 0.5-RTT the connection is usable before its
                    // handshake completes (`ZeroRttAccepted` resolves then).
                    let (conn, completed) = if zero_rtt && !h3 {
                        match connecting.into_0rtt() {
                            Ok((c, completed)) => (c, Some(completed)),
                            Err(connecting) => (connecting.await?, None),
                        }
                    } else {
                        (connecting.await?, None)
                    };
                    Ok::<_, quinn::ConnectionError>((conn, h3, completed))
                };
                // Boxed, as is a WebTransport session's service below: the
                // task lives as long as its connection (it takes the peer's
                // later streams), and its size is that of its largest state,
                // so the parts only some connections pass through for a
                // while go on the heap, freed when done (an idle QUIC
                // Connection's task: 3 KiB before).
                let handshake = Box::pin(handshake);
                let (conn, h3, completed) = match tokio::time::timeout(timeout, handshake).await {
                    Ok(Ok(done)) => done,
                    Ok(Err(e)) => {
                        let _ = tx.unbounded_send(Err(other(format!(
                            "QUIC handshake from {remote}: {e}"
                        ))));
                        return;
                    }
                    Err(_) => {
                        let _ = tx.unbounded_send(Err(handshake_timed_out(remote, timeout)));
                        return;
                    }
                };
                // Until the handshake completes (0.5-RTT: the connection is
                // usable before) the peer, unvalidated, counts towards Retry:
                // a spoofed source, which never completes it, is closed at
                // the handshake timeout. Waited for here, beside the peer's
                // streams, not by a task of its own (a spawn per connection,
                // which the accept rate felt).
                let mut completing = completed.map(|c| Box::pin(tokio::time::timeout(timeout, c)));
                let mut counted = completing.is_some().then_some(handshake_counted);
                if let (Some(wt), true) = (wt, h3) {
                    return Box::pin(wt.serve_connection(conn, tx, handshake_room, quiet)).await;
                }
                // The handshake's place is the first stream's: a connection
                // that opens none holds it until the handshake timeout, then
                // gives it back and waits among the quiet ones (see
                // `Quiet`). Each later stream waits for a place of its own
                // before it is taken from quinn (which holds the peer to its
                // stream limits meanwhile), so the streams and connections
                // the application does not take stay within `pending_incoming`.
                let mut place = StreamPlace::new(handshake_room, timeout);
                loop {
                    // Each stream the peer opens, bidirectional or
                    // unidirectional (a receive-only Connection here), once
                    // it has a place.
                    let (send, recv) = tokio::select! {
                        room = tx.room(), if !place.has_place() => {
                            place.give(room);
                            continue;
                        }
                        _ = conn.closed(), if !place.has_place() => return,
                        Some(done) = async {
                            match completing.as_mut() {
                                Some(c) => Some(c.await),
                                None => None,
                            }
                        }, if completing.is_some() => {
                            completing = None;
                            drop(counted.take());
                            if done.is_err() {
                                conn.close(0u32.into(), b"handshake timeout");
                                let _ = tx.unbounded_send(Err(handshake_timed_out(remote, timeout)));
                                return;
                            }
                            continue;
                        }
                        _ = place.overdue(), if place.first_due() => {
                            let places = tx.limits().pending_incoming();
                            if let Err(e) = place.go_quiet(&quiet, "QUIC connection", remote, timeout, places) {
                                conn.close(0u32.into(), b"no stream opened");
                                let _ = tx.unbounded_send(Err(e));
                                return;
                            }
                            continue;
                        }
                        bi = conn.accept_bi(), if place.has_place() => match bi {
                            Ok((s, r)) => (Some(s), r),
                            Err(_) => return, // the connection ended
                        },
                        uni = conn.accept_uni(), if place.has_place() => match uni {
                            Ok(r) => (None, r),
                            Err(_) => return,
                        },
                    };
                    let early = recv.is_0rtt();
                    let (room, first) = place.take();
                    let mut transport =
                        StreamTransport::from_streams(conn.clone(), send, Some(recv), first, None);
                    transport.set_early(early);
                    let group = Some(transport.group_id());
                    let item = Incoming {
                        transport: super::Transport::Quic(std::sync::Arc::new(transport)),
                        caps: &Capabilities::QUIC,
                        remote,
                        group,
                        room,
                    };
                    if tx.unbounded_send(Ok(item)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((local, task.abort_handle()))
}

#[cfg(test)]
mod tests {
    //! The QUIC stack on real loopback handshakes, below the Connection layer.
    use super::*;
    use crate::backend::Recv;
    use futures::StreamExt;

    fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        crate::backend::native::test_tls_configs(Some(b"taps"))
    }

    async fn read_exact(t: &QuicTransport, n: usize) -> bytes::BytesMut {
        let mut buf = bytes::BytesMut::new();
        while buf.len() < n {
            match t.read(&mut buf).await.unwrap() {
                Recv::Bytes => {}
                other => panic!("expected stream bytes, got {other:?}"),
            }
        }
        buf
    }

    /// A QUIC Listener's backend on loopback and a client connected to it:
    /// the client, the Listener's incoming connections, and its stop.
    async fn connected() -> (
        QuicTransport,
        futures::channel::mpsc::UnboundedReceiver<io::Result<crate::backend::Incoming>>,
        tokio::task::AbortHandle,
    ) {
        let (server_tls, client_tls) = configs();
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let opts = SocketOptions::default();
        let (addr, stop) = listen(
            "127.0.0.1:0".parse().unwrap(),
            server_tls,
            &opts,
            None,
            crate::backend::IncomingTx::new(tx, Default::default()),
        )
        .unwrap();
        let (client, _) = QuicTransport::connect(addr, "localhost", client_tls, &opts, None)
            .await
            .unwrap();
        (client, rx, stop)
    }

    #[tokio::test]
    async fn streams_datagrams_and_siblings_share_one_connection() {
        let (client, mut rx, stop) = connected().await;
        client
            .write_vectored(&[io::IoSlice::new(b"he"), io::IoSlice::new(b"llo")])
            .await
            .unwrap();
        let first = rx.next().await.unwrap().unwrap();
        let super::super::Transport::Quic(server) = first.transport else {
            panic!("quic")
        };
        assert_eq!(&read_exact(&server, 5).await[..], b"hello");
        assert_eq!(first.group, Some(server.group_id()));
        // A datagram reaches the first stream's reader.
        assert!(client.max_datagram().unwrap() > 1000);
        client.send_datagram(b"unreliable").await.unwrap();
        let mut buf = bytes::BytesMut::new();
        match server.read(&mut buf).await.unwrap() {
            Recv::Datagram(d) => assert_eq!(&d[..], b"unreliable"),
            other => panic!("expected a datagram, got {other:?}"),
        }
        // A sibling stream is a second Incoming in the same group, no new handshake.
        let sibling = client.open_sibling().await.unwrap();
        sibling
            .write_vectored(&[io::IoSlice::new(b"second")])
            .await
            .unwrap();
        let second = rx.next().await.unwrap().unwrap();
        assert_eq!(second.group, first.group);
        let super::super::Transport::Quic(server2) = second.transport else {
            panic!("quic")
        };
        assert_eq!(&read_exact(&server2, 6).await[..], b"second");
        // FIN ends the stream.
        sibling.shutdown_write().unwrap();
        let mut rest = bytes::BytesMut::new();
        assert!(matches!(server2.read(&mut rest).await.unwrap(), Recv::Eof));
        client.close_group(false);
        stop.abort();
    }

    /// What `t.poll_read` gives within `within`, polled as a receive does;
    /// `None` if nothing came.
    async fn poll_next(
        t: &QuicTransport,
        buf: &mut bytes::BytesMut,
        within: std::time::Duration,
    ) -> Option<io::Result<Recv>> {
        let read = std::future::poll_fn(|cx| t.poll_read(cx, buf).expect("polls"));
        tokio::time::timeout(within, read).await.ok()
    }

    /// `poll_read` holds no receive state while it waits: between polls the
    /// first stream keeps only its datagram wait. It reads the stream's
    /// bytes, the session's datagrams and the end of the stream, each woken
    /// by what the peer sends.
    #[tokio::test]
    async fn poll_read_reads_bytes_datagrams_and_the_end_without_a_future() {
        let (client, mut rx, stop) = connected().await;
        client
            .write_vectored(&[io::IoSlice::new(b"hi")])
            .await
            .unwrap();
        let first = rx.next().await.unwrap().unwrap();
        let super::super::Transport::Quic(server) = first.transport else {
            panic!("quic")
        };
        let mut buf = bytes::BytesMut::new();
        let five = std::time::Duration::from_secs(5);
        assert!(matches!(
            poll_next(&server, &mut buf, five).await,
            Some(Ok(Recv::Bytes))
        ));
        // Idle: nothing to read, nothing kept but the datagram wait.
        let short = std::time::Duration::from_millis(50);
        assert!(poll_next(&server, &mut buf, short).await.is_none());
        client.send_datagram(b"unreliable").await.unwrap();
        match poll_next(&server, &mut buf, five).await {
            Some(Ok(Recv::Datagram(d))) => assert_eq!(&d[..], b"unreliable"),
            other => panic!("expected a datagram, got {other:?}"),
        }
        client
            .write_vectored(&[io::IoSlice::new(b" there")])
            .await
            .unwrap();
        assert!(matches!(
            poll_next(&server, &mut buf, five).await,
            Some(Ok(Recv::Bytes))
        ));
        client.shutdown_write().unwrap();
        assert!(matches!(
            poll_next(&server, &mut buf, five).await,
            Some(Ok(Recv::Eof))
        ));
        assert_eq!(&buf[..], b"hi there");
        client.close_group(false);
        stop.abort();
    }
}
