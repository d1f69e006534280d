//! TCP (RFC 9623 §9.1) over tokio and socket2. TCP_NODELAY is on by default:
//! postsocket already hands whole Messages (and batches) to the kernel.

use crate::backend::{Incoming, Recv, SocketOptions};
use crate::capability::Capabilities;
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Read in chunks of this size.
const READ_CHUNK: usize = 64 * 1024;

/// An established TCP connection, shared by the send and receive sides.
#[derive(Clone, Debug)]
pub(crate) struct TcpTransport {
    inner: Arc<Tcp>,
}

#[derive(Debug)]
struct Tcp {
    stream: tokio::net::TcpStream,
    /// The handshake finished inside `connect`, so the socket is writable
    /// but the reactor has not said so yet: tokio would hold the first
    /// write until it does. The first write that finds no readiness tries
    /// the socket itself once (see `poll_write_vectored`), then clears this.
    writable_unannounced: AtomicBool,
}

pub(crate) fn set_dscp(sock: &SockRef<'_>, dscp: u8) -> io::Result<()> {
    let ipv6 = matches!(sock.local_addr()?.as_socket(), Some(SocketAddr::V6(_)));
    super::sockopt::set_dscp(sock, ipv6, dscp)
}

fn socket_for(
    addr: &SocketAddr,
    ty: Type,
    proto: Protocol,
    opts: &SocketOptions,
) -> io::Result<Socket> {
    // Non-blocking from the start: one syscall fewer per attempt.
    let sock = super::sockopt::new_socket(Domain::for_address(*addr), ty, proto)?;
    if let Some(ifname) = &opts.interface {
        super::sockopt::bind_device(&sock, ifname)?;
    }
    if opts.dscp != 0 {
        super::sockopt::set_dscp(&SockRef::from(&sock), addr.is_ipv6(), opts.dscp)?;
    }
    Ok(sock)
}

pub(crate) fn apply_stream_options(sock: &SockRef<'_>, opts: &SocketOptions) -> io::Result<()> {
    sock.set_tcp_nodelay(true)?;
    if let Some(idle) = opts.keep_alive {
        sock.set_keepalive(true)?;
        if let Some(idle) = idle {
            sock.set_tcp_keepalive(&TcpKeepalive::new().with_time(idle))?;
        }
    }
    if let Some(t) = opts.user_timeout {
        super::sockopt::set_tcp_user_timeout(sock, Some(t))?;
    }
    Ok(())
}

/// Open a TCP connection with the attempt's socket options (TLS and
/// WebSocket run over it too).
#[cfg(any(feature = "tls", feature = "ws"))]
pub(crate) async fn connect_stream(
    remote: SocketAddr,
    opts: &SocketOptions,
) -> io::Result<tokio::net::TcpStream> {
    Ok(connect_stream_noting(remote, opts).await?.0)
}

/// [`connect_stream`], and whether the handshake finished inside `connect`
/// (then the reactor has yet to say that the socket is writable).
async fn connect_stream_noting(
    remote: SocketAddr,
    opts: &SocketOptions,
) -> io::Result<(tokio::net::TcpStream, bool)> {
    let sock = socket_for(&remote, Type::STREAM, Protocol::TCP, opts)?;
    if let Some(local) = opts.local {
        if local.is_ipv6() != remote.is_ipv6() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("local address {local} and remote {remote} are of different families"),
            ));
        }
        sock.bind(&local.into())?;
    }
    apply_stream_options(&SockRef::from(&sock), opts)?;
    // The handshake starts here rather than in tokio, so as to see whether
    // the kernel finished it inside `connect` (a peer on this host, over
    // loopback, answers before the call returns). Then the socket is ready
    // now, and waiting for the reactor to say so would only add two thread
    // wake-ups to the time to Ready (and the first write tries the socket
    // itself: see `poll_write_vectored`). Otherwise wait for it to turn
    // writable, then read its error, as tokio's own connect does.
    let in_progress = match sock.connect(&remote.into()) {
        Ok(()) => false,
        Err(e) if super::sockopt::connect_in_progress(&e) => true,
        Err(e) => return Err(e),
    };
    let pending = in_progress && sock.peer_addr().is_err();
    if pending {
        if let Some(e) = sock.take_error()? {
            return Err(e);
        }
    }
    let stream = tokio::net::TcpStream::from_std(sock.into())?;
    if pending {
        stream.writable().await?;
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
    }
    Ok((stream, !pending))
}

impl TcpTransport {
    /// Connect (one racing attempt): ready after the three-way handshake.
    pub(crate) async fn connect(remote: SocketAddr, opts: &SocketOptions) -> io::Result<Self> {
        let (stream, unannounced) = connect_stream_noting(remote, opts).await?;
        Ok(TcpTransport::wrap(stream, unannounced))
    }

    /// Wrap a connected stream.
    pub(crate) fn from_stream(stream: tokio::net::TcpStream) -> Self {
        TcpTransport::wrap(stream, false)
    }

    fn wrap(stream: tokio::net::TcpStream, writable_unannounced: bool) -> Self {
        TcpTransport {
            inner: Arc::new(Tcp {
                stream,
                writable_unannounced: AtomicBool::new(writable_unannounced),
            }),
        }
    }

    pub(crate) fn stream(&self) -> &tokio::net::TcpStream {
        &self.inner.stream
    }

    pub(crate) async fn read(&self, buf: &mut bytes::BytesMut) -> io::Result<Recv> {
        self.read_up_to(buf, READ_CHUNK).await
    }

    /// `read` as a poll: no state while it waits. Registers the socket's
    /// one reader waker: only the Connection's receive side, which reads
    /// one at a time, calls it.
    pub(crate) fn poll_read(
        &self,
        cx: &mut std::task::Context<'_>,
        buf: &mut bytes::BytesMut,
    ) -> std::task::Poll<io::Result<Recv>> {
        use std::task::Poll;
        loop {
            std::task::ready!(self.inner.stream.poll_read_ready(cx))?;
            buf.reserve(READ_CHUNK);
            match self.inner.stream.try_read_buf(buf) {
                Ok(0) => return Poll::Ready(Ok(Recv::Eof)),
                Ok(_) => return Poll::Ready(Ok(Recv::Bytes)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // As `read_up_to`: wait without the room just made.
                    if buf.is_empty() {
                        *buf = bytes::BytesMut::new();
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Read, making room for `want` more bytes (no more: a Message body read
    /// into its own buffer is not reallocated). The room is made once the
    /// socket is readable: a Connection waiting for data holds no buffer.
    pub(crate) async fn read_up_to(
        &self,
        buf: &mut bytes::BytesMut,
        want: usize,
    ) -> io::Result<Recv> {
        loop {
            self.inner.stream.readable().await?;
            buf.reserve(want);
            match self.inner.stream.try_read_buf(buf) {
                Ok(0) => return Ok(Recv::Eof),
                Ok(_) => return Ok(Recv::Bytes),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Nothing after all (readiness is cached until a read
                    // would block): wait without the room just made.
                    if buf.is_empty() {
                        *buf = bytes::BytesMut::new();
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) async fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_write_vectored(cx, bufs)).await
    }

    /// One poll of [`write_vectored`](Self::write_vectored) (the send fast
    /// path calls it directly, without building a future). tokio keeps one
    /// write waker per socket: this relies on the Connection's writer lock,
    /// which lets one writer at a time in.
    pub(crate) fn poll_write_vectored(
        &self,
        cx: &mut std::task::Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        use std::task::Poll;
        loop {
            let unannounced = &self.inner.writable_unannounced;
            match self.inner.stream.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => {
                    // The reactor has spoken: its word goes from now on.
                    if unannounced.load(Ordering::Relaxed) {
                        unannounced.store(false, Ordering::Relaxed);
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if unannounced.load(Ordering::Relaxed) => {
                    // Connected inside `connect`: write now rather than wait
                    // for the reactor to report what is already so. Once:
                    // after this the reactor's word is the one to go by.
                    unannounced.store(false, Ordering::Relaxed);
                    match SockRef::from(&self.inner.stream).send_vectored(bufs) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                        r => return Poll::Ready(written(r, bufs)),
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
            match self.inner.stream.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(written(r, bufs)),
            }
        }
    }

    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        SockRef::from(&self.inner.stream).shutdown(std::net::Shutdown::Write)
    }

    /// Linger 0 makes the close send RST instead of FIN; shutting down
    /// reading (which sends nothing) wakes every pending read.
    pub(crate) fn abort(&self) {
        let s = SockRef::from(&self.inner.stream);
        let _ = s.set_linger(Some(std::time::Duration::ZERO));
        let _ = s.shutdown(std::net::Shutdown::Read);
    }
}

/// A write's result: zero bytes written of something is `WriteZero`.
fn written(r: io::Result<usize>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    match r {
        Ok(0) if bufs.iter().any(|b| !b.is_empty()) => Err(io::ErrorKind::WriteZero.into()),
        r => r,
    }
}

/// A listening TCP socket on `addr` (TLS listens with it too).
pub(crate) fn bind_listener(
    addr: SocketAddr,
    opts: &SocketOptions,
) -> io::Result<tokio::net::TcpListener> {
    let sock = socket_for(&addr, Type::STREAM, Protocol::TCP, opts)?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    tokio::net::TcpListener::from_std(sock.into())
}

/// A listening socket's accept errors (EMFILE, ENFILE, ENOBUFS, ...): the
/// accept loop waits, doubling from 1 ms to 1 s, instead of spinning on a
/// connection it cannot take, and reports only the first error of a run.
pub(crate) struct AcceptBackoff {
    delay: std::time::Duration,
    failing: bool,
}

impl AcceptBackoff {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(1);
    const MAX: std::time::Duration = std::time::Duration::from_secs(1);

    pub(crate) fn new() -> Self {
        AcceptBackoff {
            delay: Self::FIRST,
            failing: false,
        }
    }

    /// An accept failed with `e`: the error to report (the first of a run;
    /// `None` after), once the wait is over.
    pub(crate) async fn failed(&mut self, e: io::Error) -> Option<io::Error> {
        let first = !self.failing;
        self.failing = true;
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Self::MAX);
        first.then(|| {
            io::Error::new(
                e.kind(),
                format!("{e} (accepting again with back-off, up to 1 s, until it succeeds)"),
            )
        })
    }

    /// An accept succeeded: the next error starts a new run.
    pub(crate) fn succeeded(&mut self) {
        self.delay = Self::FIRST;
        self.failing = false;
    }
}

/// Listen for TCP on `addr`; accepted connections go to `tx`.
pub(crate) fn listen(
    addr: SocketAddr,
    opts: &SocketOptions,
    tx: super::IncomingTx,
) -> io::Result<(SocketAddr, tokio::task::AbortHandle)> {
    let listener = bind_listener(addr, opts)?;
    let local = listener.local_addr()?;
    let opts = opts.clone();
    let task = tokio::spawn(async move {
        let mut backoff = AcceptBackoff::new();
        loop {
            // No room for another pending connection: stop accepting (peers
            // wait in the kernel's backlog) until the Listener takes one.
            let room = tx.room().await;
            let item = match listener.accept().await {
                Ok((stream, remote)) => {
                    backoff.succeeded();
                    if tx.refusing() {
                        // The Listener's limit is 0: reset at once.
                        let _ = SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
                        continue;
                    }
                    if let Err(e) = apply_stream_options(&SockRef::from(&stream), &opts) {
                        Err(e)
                    } else {
                        Ok(Incoming {
                            transport: super::Transport::Tcp(TcpTransport::from_stream(stream)),
                            caps: &Capabilities::TCP,
                            remote,
                            group: None,
                            room,
                        })
                    }
                }
                Err(e) => match backoff.failed(e).await {
                    Some(e) => Err(e),
                    None => continue,
                },
            };
            if tx.unbounded_send(item).is_err() {
                break;
            }
        }
    });
    Ok((local, task.abort_handle()))
}
