//! TLS over TCP with rustls (tokio-rustls). An attempt is Ready only after
//! the TLS handshake completes (RFC 9623 §4.2.1).
//!
//! Reads and writes run from different tasks but share one rustls session,
//! so the stream sits behind one mutex that is held only for a single poll
//! (never across an await): a read and a write each lock it, make what
//! progress they can, and unlock. The Connection already lets one receive
//! and one writer in at a time, so this lock is the only one on the path.

use super::tcp;
use super::tls_config;
use crate::backend::{Incoming, Recv, SocketOptions};
use crate::capability::Capabilities;
use socket2::SockRef;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

/// Read in chunks of this size.
const READ_CHUNK: usize = 64 * 1024;
/// The first read into an empty buffer makes room for this much (one
/// TLS record's plaintext at most): a Connection waiting for data then
/// holds a small buffer, not a chunk. rustls buffers what it decrypts, so a
/// larger burst continues at once with a full chunk.
const FIRST_READ: usize = 4 * 1024;
/// A write of several slices up to this long is gathered into one buffer
/// first: rustls takes one slice as it is, but collects several into a new
/// Vec on every call, which costs more than copying a small frame.
const GATHER_MAX: usize = 4 * 1024;
/// TLS 1.3 early data a Listener accepts per connection.
const MAX_EARLY_DATA: u32 = 64 * 1024;

struct Inner {
    /// The session; locked for one poll at a time (see the module docs).
    stream: Mutex<Session>,
    /// The TCP socket's addresses, read once (its options and abort go
    /// through the session's lock: no second descriptor per Connection).
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
    /// Plaintext that arrived before the attempt finished (on a server:
    /// the client's TLS 1.3 early data).
    pending: std::sync::Mutex<Vec<u8>>,
    /// `pending` may hold bytes (false once they were taken): reads look
    /// here, not at the lock, once it is empty for good.
    has_pending: std::sync::atomic::AtomicBool,
    /// rustls holds records the socket did not take yet (set under the
    /// session lock after each write and flush; read without it).
    unsent: std::sync::atomic::AtomicBool,
    /// Client: InitiateWithSend's first Message went as early data. Server:
    /// the peer sent early data (0-RTT, which an attacker can replay).
    early: bool,
    alpn: Option<Vec<u8>>,
}

/// The rustls session and the buffer small writes are gathered in.
struct Session {
    tls: TlsStream<TcpStream>,
    gather: Vec<u8>,
}

impl std::ops::Deref for Session {
    type Target = TlsStream<TcpStream>;
    fn deref(&self) -> &Self::Target {
        &self.tls
    }
}

impl std::ops::DerefMut for Session {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tls
    }
}

/// An established TLS connection, shared by the send and receive sides.
#[derive(Clone)]
pub(crate) struct TlsTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport")
            .field("peer", &self.inner.peer)
            .field(
                "alpn",
                &self
                    .inner
                    .alpn
                    .as_ref()
                    .map(|a| String::from_utf8_lossy(a).into_owned()),
            )
            .finish()
    }
}

/// One read of plaintext from `s` into `buf`'s spare room (made by the
/// caller): `Eof` when the peer has closed.
fn poll_into(
    s: &mut Session,
    cx: &mut std::task::Context<'_>,
    buf: &mut bytes::BytesMut,
) -> Poll<io::Result<Recv>> {
    let mut rb = ReadBuf::uninit(buf.spare_capacity_mut());
    std::task::ready!(Pin::new(&mut s.tls).poll_read(cx, &mut rb))?;
    let n = rb.filled().len();
    // SAFETY: poll_read initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Poll::Ready(Ok(if n == 0 { Recv::Eof } else { Recv::Bytes }))
}

fn to_io(e: crate::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.message)
}

impl TlsTransport {
    pub(crate) fn new(
        stream: TlsStream<TcpStream>,
        pending: Vec<u8>,
        early: bool,
    ) -> io::Result<Self> {
        let (local, peer) = (
            stream.get_ref().0.local_addr().ok(),
            stream.get_ref().0.peer_addr().ok(),
        );
        let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        Ok(TlsTransport {
            inner: Arc::new(Inner {
                stream: Mutex::new(Session {
                    tls: stream,
                    gather: Vec::new(),
                }),
                unsent: Default::default(),
                local,
                peer,
                has_pending: std::sync::atomic::AtomicBool::new(!pending.is_empty()),
                pending: std::sync::Mutex::new(pending),
                early,
                alpn,
            }),
        })
    }

    /// Connect (one racing attempt): TCP, then the TLS handshake. Ready only
    /// once the handshake is complete; a failure names the peer and the
    /// rustls reason.
    pub(crate) async fn connect(remote: SocketAddr, opts: &SocketOptions) -> io::Result<Self> {
        tls_config::CLIENT_CERT_ASKED
            .scope(
                std::cell::Cell::new(false),
                Self::connect_inner(remote, opts),
            )
            .await
    }

    async fn connect_inner(remote: SocketAddr, opts: &SocketOptions) -> io::Result<Self> {
        let sec = opts.security.clone().unwrap_or_default();
        let parts =
            tls_config::client_config_parts(&sec, &[], opts.session_scope).map_err(to_io)?;
        // The cached configuration as it is: rustls resumes a session only
        // with the same configuration objects.
        let config = parts.0.clone();
        // Name: the explicit override, else the RemoteEndpoint's host name, else the IP.
        let name = sec
            .server_name
            .clone()
            .or_else(|| opts.server_name.clone())
            .unwrap_or_else(|| remote.ip().to_string());
        let server_name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TLS server name `{name}`: {e}"),
            )
        })?;
        let has_identity = !sec.client_certificate.is_empty();
        let start = Instant::now();
        let tcp = tcp::connect_stream(remote, opts).await?;
        let was_asked = || tls_config::CLIENT_CERT_ASKED.with(|a| a.get());
        let handshake_error = |e: io::Error| {
            let hint = if was_asked() && !has_identity {
                " (the server asked for a client certificate and none is configured)"
            } else {
                ""
            };
            let text = format!(
                "TLS handshake with {remote} ({name}): {}{hint}",
                describe(&e)
            );
            super::described::described(e, text)
        };
        let mut stream = tokio_rustls::TlsConnector::from(config)
            .early_data(opts.early_data.is_some())
            .connect(server_name, tcp)
            .await
            .map_err(handshake_error)?;
        // With a session ticket the handshake is still going: the first
        // Message goes as TLS 1.3 early data, and flushing finishes the
        // handshake (tokio-rustls sends the data again if the server rejects it).
        let mut sent_early = false;
        if let Some(data) = opts.early_data.as_deref() {
            if stream.get_ref().1.is_handshaking() {
                stream.write_all(data).await.map_err(handshake_error)?;
                stream.flush().await.map_err(handshake_error)?;
                sent_early = true;
            }
        }
        alpn_chosen(&sec, stream.get_ref().1, &format!("{remote} ({name})"))?;
        let mut pending = Vec::new();
        if was_asked() && !has_identity {
            // TLS 1.3: the client's handshake ends before the server judged the
            // empty certificate; a server that requires one answers with an
            // alert right away. Wait briefly for it so that the attempt fails
            // (rather than the first Receive); keep any data that arrives.
            let wait = (start.elapsed() + Duration::from_millis(50)).min(Duration::from_secs(1));
            if let Ok(Err(e)) = tokio::time::timeout(wait, stream.read_buf(&mut pending)).await {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "TLS handshake with {remote} ({name}): the server requires a client certificate and none is configured (SecurityParameters::client_certificate): {e}"
                    ),
                ));
            }
        }
        TlsTransport::new(TlsStream::from(stream), pending, sent_early)
    }

    /// See the `early` field.
    pub(crate) fn early(&self) -> bool {
        self.inner.early
    }

    /// `f` with the TCP socket underneath (under the session's lock, held
    /// only for one poll by reads and writes).
    pub(crate) fn with_socket<R>(&self, f: impl FnOnce(SockRef<'_>) -> R) -> R {
        let session = self.stream();
        f(SockRef::from(session.get_ref().0))
    }

    /// The local address.
    pub(crate) fn local(&self) -> Option<SocketAddr> {
        self.inner.local
    }

    /// The peer's address.
    pub(crate) fn peer(&self) -> Option<SocketAddr> {
        self.inner.peer
    }

    /// The session, for one poll (a poisoned lock still holds a usable
    /// stream: rustls reports its own broken state).
    fn stream(&self) -> MutexGuard<'_, Session> {
        self.inner.stream.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Read: append plaintext to `buf`.
    pub(crate) async fn read(&self, buf: &mut bytes::BytesMut) -> io::Result<Recv> {
        let want = if buf.is_empty() {
            FIRST_READ
        } else {
            READ_CHUNK
        };
        self.read_up_to(buf, want).await
    }

    /// Move plaintext that arrived before the attempt finished into `buf`;
    /// false when there is none (any more).
    fn take_pending(&self, buf: &mut bytes::BytesMut) -> bool {
        if !self
            .inner
            .has_pending
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return false;
        }
        let mut p = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        self.inner
            .has_pending
            .store(false, std::sync::atomic::Ordering::Release);
        if p.is_empty() {
            return false;
        }
        buf.extend_from_slice(&p);
        *p = Vec::new();
        true
    }

    /// `read` as a poll, holding no room while it waits: a Connection idle
    /// between Messages keeps neither a receive future nor a buffer. Room
    /// is made once there is something to read: plaintext rustls already
    /// holds (a record larger than the last read's room) or the peer's
    /// close, which `wants_read` false says, else a readable socket.
    /// Registers the socket's one reader waker: only the Connection's
    /// receive side, which reads one at a time, calls it.
    pub(crate) fn poll_read(
        &self,
        cx: &mut std::task::Context<'_>,
        buf: &mut bytes::BytesMut,
    ) -> Poll<io::Result<Recv>> {
        if self.take_pending(buf) {
            return Poll::Ready(Ok(Recv::Bytes));
        }
        let want = if buf.is_empty() {
            FIRST_READ
        } else {
            READ_CHUNK
        };
        let mut s = self.stream();
        let (io, session) = s.tls.get_ref();
        if session.wants_read() {
            std::task::ready!(io.poll_read_ready(cx))?;
        }
        buf.reserve(want);
        let r = poll_into(&mut s, cx, buf);
        if r.is_pending() && buf.is_empty() {
            // Part of a record, or a readiness the socket no longer had:
            // the read registered the waker; wait without the room just
            // made.
            *buf = bytes::BytesMut::new();
        }
        r
    }

    /// Read, making room for `want` more bytes (no more: a Message body read
    /// into its own buffer is not reallocated).
    pub(crate) async fn read_up_to(
        &self,
        buf: &mut bytes::BytesMut,
        want: usize,
    ) -> io::Result<Recv> {
        if self.take_pending(buf) {
            return Ok(Recv::Bytes);
        }
        buf.reserve(want);
        poll_fn(|cx| poll_into(&mut self.stream(), cx, buf)).await
    }

    /// Encrypt some of `bufs` and start sending the records.
    ///
    /// Cancel-safe: everything happens within one poll. Records left over
    /// from an earlier call go out first; if the socket then takes only
    /// part of the new records, the rest waits in rustls for the next write
    /// or [`flush`](Self::flush).
    pub(crate) async fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_write_vectored(cx, bufs)).await
    }

    /// One poll of [`write_vectored`](Self::write_vectored) (the send fast
    /// path calls it directly, without building a future).
    pub(crate) fn poll_write_vectored(
        &self,
        cx: &mut std::task::Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut session = self.stream();
        let Session { tls, gather } = &mut *session;
        let mut s = Pin::new(tls);
        if s.as_mut().get_mut().get_ref().1.wants_write() {
            match s.as_mut().poll_flush(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other.map(|r| r.map(|()| 0)),
            }
        }
        // rustls writes as many records as the socket takes; the rest
        // waits in rustls.
        let mut parts = bufs.iter().filter(|b| !b.is_empty());
        let r = match (parts.next(), parts.next()) {
            (None, _) => Poll::Ready(Ok(0)),
            (Some(one), None) => s.as_mut().poll_write(cx, one),
            _ if bufs.iter().map(|b| b.len()).sum::<usize>() <= GATHER_MAX => {
                gather.clear();
                for b in bufs {
                    gather.extend_from_slice(b);
                }
                s.as_mut().poll_write(cx, gather)
            }
            _ => s.as_mut().poll_write_vectored(cx, bufs),
        };
        self.note_unsent(s.get_mut().get_ref().1.wants_write());
        match r {
            Poll::Ready(Ok(0)) if bufs.iter().any(|b| !b.is_empty()) => {
                Poll::Ready(Err(io::ErrorKind::WriteZero.into()))
            }
            r => r,
        }
    }

    /// True when rustls holds records the socket did not take yet.
    pub(crate) fn holds_unsent(&self) -> bool {
        self.inner.unsent.load(std::sync::atomic::Ordering::Acquire)
    }

    fn note_unsent(&self, unsent: bool) {
        self.inner
            .unsent
            .store(unsent, std::sync::atomic::Ordering::Release);
    }

    /// Send the records rustls still holds; done when they are all on the socket.
    pub(crate) async fn flush(&self) -> io::Result<()> {
        poll_fn(|cx| {
            let mut s = self.stream();
            if !s.get_ref().1.wants_write() {
                self.note_unsent(false);
                return Poll::Ready(Ok(()));
            }
            let r = Pin::new(&mut **s).poll_flush(cx);
            self.note_unsent(s.get_ref().1.wants_write());
            r
        })
        .await
    }

    /// Finish sending: TLS close_notify, then TCP FIN. The close_notify is
    /// written by a task (it may have to wait for the socket), which keeps
    /// the connection open until it is done.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        let this = self.clone();
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("TLS shutdown needs the tokio runtime: {e}")))?;
        handle.spawn(async move {
            let _ = poll_fn(|cx| Pin::new(&mut **this.stream()).poll_shutdown(cx)).await;
        });
        Ok(())
    }

    /// Linger 0 makes the close send RST; shutting down reading wakes every
    /// pending read.
    pub(crate) fn abort(&self) {
        self.with_socket(|s| {
            let _ = s.set_linger(Some(Duration::ZERO));
            let _ = s.shutdown(std::net::Shutdown::Read);
        });
    }
}

/// The text of a handshake error: rustls' own words, with certificate
/// details spelled out.
pub(crate) fn describe(e: &io::Error) -> String {
    use rustls::CertificateError as C;
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(C::Other(o))) => {
            format!("invalid peer certificate: {o}")
        }
        Some(rustls::Error::InvalidCertificate(C::ExpiredContext { not_after, .. })) => format!(
            "{e} (not valid after {})",
            tls_config::format_unix(not_after.as_secs() as i64)
        ),
        Some(rustls::Error::InvalidCertificate(C::NotValidYetContext { not_before, .. })) => {
            format!(
                "{e} (not valid before {})",
                tls_config::format_unix(not_before.as_secs() as i64)
            )
        }
        _ if e.kind() == io::ErrorKind::UnexpectedEof => {
            format!("{e}: the peer closed the connection during the handshake (does it speak TLS?)")
        }
        _ => e.to_string(),
    }
}

/// A Listener's TLS server side for `opts.security` (its server certificate).
pub(crate) fn acceptor(opts: &SocketOptions) -> io::Result<tokio_rustls::TlsAcceptor> {
    let sec = opts.security.clone().unwrap_or_default();
    let config = tls_config::server_config(&sec, &[]).map_err(to_io)?;
    let config = tls_config::with_early_data(&config, &sec, MAX_EARLY_DATA);
    Ok(tokio_rustls::TlsAcceptor::from(config))
}

/// A Listener's server handshake on one accepted TCP connection from
/// `remote`; a failure (or no result within the handshake timeout) names the
/// peer.
pub(crate) async fn accept(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    remote: SocketAddr,
    timeout: Duration,
) -> io::Result<Incoming> {
    let (s, early) = server_handshake(acceptor, stream, remote, timeout).await?;
    let was_early = !early.is_empty();
    TlsTransport::new(TlsStream::from(s), early, was_early).map(|t| Incoming {
        transport: super::Transport::Tls(t),
        caps: &Capabilities::TLS,
        remote,
        group: None,
        room: Default::default(),
    })
}

/// A client TLS handshake over `tcp` for HTTP/1.1 (`wss`, `https://`
/// signaling), as the TLS stack does it: `sec`'s configuration, ALPN
/// `http/1.1` unless set, the server verified for `name`; errors name `who`.
#[cfg_attr(not(any(feature = "ws", feature = "webrtc")), allow(dead_code))]
pub(crate) async fn connect_http1(
    tcp: TcpStream,
    sec: &crate::security::SecurityParameters,
    name: String,
    scope: crate::backend::SessionScope,
    who: &str,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = super::tls_config::client_config(sec, &["http/1.1"], scope)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.message))?;
    let server_name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TLS server name `{name}`: {e}"),
        )
    })?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("TLS handshake with {who}: {}", describe(&e)),
            )
        })?;
    // The default `http/1.1` need not be chosen; the application's `alpn` must.
    alpn_chosen(sec, stream.get_ref().1, who)?;
    Ok(stream)
}

/// The application's `alpn` holds also against a server that speaks no
/// ALPN: rustls over TCP refuses only when both sides offer ALPN and none
/// matches, and a server without it answers with none.
fn alpn_chosen(
    sec: &crate::security::SecurityParameters,
    conn: &rustls::ClientConnection,
    who: &str,
) -> io::Result<()> {
    if sec.alpn.is_empty() || conn.alpn_protocol().is_some() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "TLS handshake with {who}: the server chose no application protocol (ALPN), and SecurityParameters::alpn asks for one of {:?}",
            sec.alpn
        ),
    ))
}

/// The server handshake of [`accept`] (also run before a `wss` upgrade):
/// the TLS stream and the client's early data (empty if none). Bounded by
/// `timeout` (the Listener's handshake timeout).
pub(crate) async fn server_handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    remote: SocketAddr,
    timeout: Duration,
) -> io::Result<(tokio_rustls::server::TlsStream<TcpStream>, Vec<u8>)> {
    let wanted = acceptor.config().alpn_protocols.clone();
    let hs = tokio::time::timeout(timeout, acceptor.accept(stream)).await;
    match hs {
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "TLS handshake with {remote}: no result after {}",
                crate::runtime::ms_text(timeout)
            ),
        )),
        Ok(Err(e)) => Err(io::Error::new(
            e.kind(),
            format!("TLS handshake with {remote}: {}", describe(&e)),
        )),
        // As the client side: a client that offered no ALPN is not one of
        // the protocols this Listener's `alpn` accepts.
        Ok(Ok(s)) if !wanted.is_empty() && s.get_ref().1.alpn_protocol().is_none() => {
            let wanted: Vec<_> = wanted
                .iter()
                .map(|a| a.escape_ascii().to_string())
                .collect();
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "TLS handshake with {remote}: the client offered no application protocol (ALPN), and this Listener's SecurityParameters::alpn accepts only {wanted:?}"
                ),
            ))
        }
        Ok(Ok(mut s)) => {
            // Early data stays with rustls after the handshake: take it first.
            let mut early = Vec::new();
            if let Some(mut e) = s.get_mut().1.early_data() {
                let _ = std::io::Read::read_to_end(&mut e, &mut early);
            }
            Ok((s, early))
        }
    }
}

#[cfg(test)]
mod tests {
    //! The TLS stack's reads on a real loopback handshake, below the
    //! Connection layer; the peer is a plain tokio-rustls server.
    use super::*;

    /// A postsocket TLS client and the plain tokio-rustls server it reached.
    async fn pair() -> (
        TlsTransport,
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    ) {
        let (server, client) = crate::backend::native::test_tls_configs(None);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            tokio_rustls::TlsAcceptor::from(server)
                .accept(s)
                .await
                .unwrap()
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .unwrap();
        let t = TlsTransport::new(TlsStream::Client(tls), Vec::new(), false).unwrap();
        (t, accept.await.unwrap())
    }

    /// Polls `poll_read` once, with a no-op waker.
    fn poll_once(t: &TlsTransport, buf: &mut bytes::BytesMut) -> Poll<io::Result<Recv>> {
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        t.poll_read(&mut cx, buf)
    }

    /// An idle read holds no room; once the peer writes one record larger
    /// than the first read's room, the rest of its plaintext (which rustls
    /// holds, with nothing more on the socket) is read at once, not after
    /// socket readiness that would never come.
    #[tokio::test]
    async fn an_idle_read_holds_no_room_and_takes_what_rustls_holds() {
        let (t, mut server) = pair().await;
        let mut buf = bytes::BytesMut::new();
        assert!(poll_once(&t, &mut buf).is_pending());
        assert_eq!(buf.capacity(), 0, "an idle read made room");

        // One record of 12,000 bytes: more than FIRST_READ.
        let sent: Vec<u8> = (0..12_000u32).map(|i| (i % 251) as u8).collect();
        server.write_all(&sent).await.unwrap();
        server.flush().await.unwrap();
        let read = std::future::poll_fn(|cx| t.poll_read(cx, &mut buf));
        let r = tokio::time::timeout(Duration::from_secs(5), read).await;
        assert!(matches!(r, Ok(Ok(Recv::Bytes))), "{r:?}");
        let first = buf.len();
        assert!(first < sent.len(), "the first read took {first} bytes");

        // The Connection hands those bytes on and reads again with an
        // empty buffer: the rest is in rustls, none on the socket.
        let mut got = buf.split().to_vec();
        while got.len() < sent.len() {
            match poll_once(&t, &mut buf) {
                Poll::Ready(Ok(Recv::Bytes)) => got.extend_from_slice(&buf.split()),
                other => panic!("after {} of {} bytes: {other:?}", got.len(), sent.len()),
            }
        }
        assert_eq!(got, sent);
        // Idle again (the Connection drops an empty buffer's leftover room).
        let mut buf = bytes::BytesMut::new();
        assert!(poll_once(&t, &mut buf).is_pending());
        assert_eq!(buf.capacity(), 0, "an idle read made room");

        // The peer's close_notify is read at once too: the end of stream.
        server.shutdown().await.unwrap();
        let read = std::future::poll_fn(|cx| t.poll_read(cx, &mut buf));
        let r = tokio::time::timeout(Duration::from_secs(5), read).await;
        assert!(matches!(r, Ok(Ok(Recv::Eof))), "{r:?}");
    }
}
