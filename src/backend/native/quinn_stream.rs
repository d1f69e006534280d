//! One stream of a quinn connection, or of a WebTransport session over
//! one: the transport under both the QUIC and the WebTransport stacks. As
//! draft-taps-quic-mapping says, a Connection is one stream and the QUIC
//! connection (or the WebTransport session) is its Connection Group, so
//! Clone opens a sibling stream; the group's first stream also receives its
//! datagrams (Messages with msgReliable false). [`Session`] holds what
//! differs between the two: how streams open, read and end, and what the
//! errors say.

use crate::backend::Recv;
use crate::properties::Direction;
use bytes::Bytes;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// Read at most this much per stream read.
const READ_CHUNK: usize = 64 * 1024;
/// Slices adding up to at most this much are copied into one quinn write.
const COALESCE_MAX: usize = 64 * 1024;

pub(crate) fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// A pending wait for the next datagram of a session, whose error type is `E`.
pub(crate) type DatagramWait<E> = Pin<Box<dyn Future<Output = Result<Bytes, E>> + Send>>;

/// A QUIC connection or a WebTransport session: what a stream of it needs.
pub(crate) trait Session: Clone + Send + Sync + 'static {
    /// A send stream.
    type Send: AsyncWrite + Unpin + Send + 'static;
    /// A receive stream.
    type Recv: Send + 'static;
    /// What waiting for a datagram fails with.
    type Error: std::fmt::Display + Send + 'static;
    /// The stack's name in errors (`QUIC`, `WebTransport`).
    const NAME: &'static str;

    /// Open a bidirectional stream.
    fn open_bi(&self) -> impl Future<Output = io::Result<(Self::Send, Self::Recv)>> + Send;
    /// Open a unidirectional (send-only) stream.
    fn open_uni(&self) -> impl Future<Output = io::Result<Self::Send>> + Send;
    /// The next chunk of at most `max` bytes, in order; `None` at the end.
    fn read_chunk(
        recv: &mut Self::Recv,
        max: usize,
    ) -> impl Future<Output = io::Result<Option<Bytes>>> + Send + '_;
    /// Wait for the next datagram (a future of its own, kept across reads).
    fn read_datagram(&self) -> DatagramWait<Self::Error>;
    /// Send one datagram.
    fn send_datagram(&self, data: Bytes) -> io::Result<()>;
    /// Finish the stream (FIN).
    fn finish(send: &mut Self::Send);
    /// Resolves once the peer acknowledged everything sent on `send`, or
    /// ended it its own way (STOP_SENDING, or the connection closed).
    fn stopped(send: Self::Send) -> impl Future<Output = ()> + Send;
    /// Reset the stream (RESET_STREAM).
    fn reset(send: &mut Self::Send);
    /// Stop receiving (STOP_SENDING).
    fn stop(recv: &mut Self::Recv);
    /// Close the whole connection or session.
    fn close(&self, code: u32, why: &[u8]);
    /// Largest datagram payload now; `None` if the peer takes none.
    fn max_datagram(&self) -> Option<u64>;
    /// The connection's id, the same for each of its streams.
    fn stable_id(&self) -> usize;
    /// The peer's address.
    fn remote_address(&self) -> SocketAddr;
}

/// A send stream, taken out (`None`) once Close waits for its
/// acknowledgement or Abort reset it: later writes fail.
pub(crate) struct SendHalf<S>(Option<S>);

impl<S: AsyncWrite + Unpin> AsyncWrite for SendHalf<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.0.as_mut() {
            Some(s) => Pin::new(s).poll_write(cx, buf),
            None => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the stream was ended (Close or Abort)",
            ))),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.0.as_mut() {
            Some(s) => Pin::new(s).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.0.as_mut() {
            Some(s) => Pin::new(s).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// A send stream, locked for one poll at a time and never across an await.
pub(crate) type SendSide<S> = Arc<std::sync::Mutex<SendHalf<S>>>;

/// Lock a send stream (a poisoned lock still holds a usable stream: quinn
/// reports its own broken state).
fn lock_send<S>(send: &std::sync::Mutex<S>) -> std::sync::MutexGuard<'_, S> {
    send.lock().unwrap_or_else(|e| e.into_inner())
}

/// The receiving half of a stream, and (first stream only) a pending wait
/// for the session's next datagram.
struct RecvSide<S: Session> {
    stream: S::Recv,
    datagram: Option<DatagramWait<S::Error>>,
}

/// One stream (a Connection) with its session (the group).
pub(crate) struct StreamTransport<S: Session> {
    session: S,
    /// `None` on a receive-only (unidirectional) stream.
    send: Option<SendSide<S::Send>>,
    /// `None` on a send-only (unidirectional) stream.
    recv: Option<Arc<futures::lock::Mutex<RecvSide<S>>>>,
    /// The first stream of a session also receives its datagrams.
    takes_datagrams: bool,
    /// A client keeps its endpoint (socket and driver) alive.
    endpoint: Option<quinn::Endpoint>,
    /// Client: the attempt's early data went out (as 0-RTT). Server: the
    /// peer opened this stream in 0-RTT, so its data may be a replay.
    early: bool,
}

impl<S: Session> Clone for StreamTransport<S> {
    fn clone(&self) -> Self {
        StreamTransport {
            session: self.session.clone(),
            send: self.send.clone(),
            recv: self.recv.clone(),
            takes_datagrams: self.takes_datagrams,
            endpoint: self.endpoint.clone(),
            early: self.early,
        }
    }
}

impl<S: Session> std::fmt::Debug for StreamTransport<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTransport")
            .field("stack", &S::NAME)
            .field("remote", &self.session.remote_address())
            .field("group", &self.session.stable_id())
            .finish()
    }
}

/// Open this side's stream of `session` for `direction`
/// (draft-taps-quic-mapping): bidirectional, or send-only; a receive-only
/// stream is opened by the peer, so Initiate cannot make one.
pub(crate) async fn open<S: Session>(
    session: &S,
    direction: Direction,
) -> io::Result<(Option<S::Send>, Option<S::Recv>)> {
    match direction {
        Direction::Bidirectional => {
            let (s, r) = session.open_bi().await?;
            Ok((Some(s), Some(r)))
        }
        Direction::UnidirectionalSend => Ok((Some(session.open_uni().await?), None)),
        Direction::UnidirectionalReceive => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a receive-only {} stream is opened by the peer; Initiate cannot open one",
                S::NAME
            ),
        )),
    }
}

impl<S: Session> StreamTransport<S> {
    /// A stream of `session`; `takes_datagrams` for the group's first one;
    /// a client's `endpoint`.
    pub(crate) fn from_streams(
        session: S,
        send: Option<S::Send>,
        recv: Option<S::Recv>,
        takes_datagrams: bool,
        endpoint: Option<quinn::Endpoint>,
    ) -> Self {
        StreamTransport {
            session,
            send: send.map(|s| Arc::new(std::sync::Mutex::new(SendHalf(Some(s))))),
            recv: recv.map(|stream| {
                Arc::new(futures::lock::Mutex::new(RecvSide {
                    stream,
                    datagram: None,
                }))
            }),
            takes_datagrams,
            endpoint,
            early: false,
        }
    }

    /// Mark the stream's data as early (see the `early` field).
    pub(crate) fn set_early(&mut self, early: bool) {
        self.early = early;
    }

    /// See the `early` field.
    pub(crate) fn early(&self) -> bool {
        self.early
    }

    /// This side can send on the stream (false for a peer's unidirectional stream).
    pub(crate) fn can_send(&self) -> bool {
        self.send.is_some()
    }

    /// This side can receive on the stream (false for our unidirectional stream).
    pub(crate) fn can_receive(&self) -> bool {
        self.recv.is_some()
    }

    /// Clone: a new stream on the same session, in the same direction.
    pub(crate) async fn open_sibling(&self) -> io::Result<Self> {
        let direction = match (&self.send, &self.recv) {
            (Some(_), None) => Direction::UnidirectionalSend,
            _ => Direction::Bidirectional,
        };
        let (send, recv) = open(&self.session, direction).await?;
        Ok(StreamTransport::from_streams(
            self.session.clone(),
            send,
            recv,
            false,
            self.endpoint.clone(),
        ))
    }

    /// The session's id, shared by every stream of the group.
    pub(crate) fn group_id(&self) -> usize {
        self.session.stable_id()
    }

    pub(crate) fn remote(&self) -> SocketAddr {
        self.session.remote_address()
    }

    pub(crate) fn local(&self) -> Option<SocketAddr> {
        self.endpoint.as_ref().and_then(|e| e.local_addr().ok())
    }

    /// Append stream bytes, or return one datagram (first stream only).
    pub(crate) async fn read(&self, buf: &mut bytes::BytesMut) -> io::Result<Recv> {
        self.read_up_to(buf, READ_CHUNK).await
    }

    /// `read` as a poll, holding no receive future while it waits: the
    /// stream's chunk read (cancel-safe) is made anew on each poll; the
    /// first stream's wait for a datagram is kept in its receive side, as
    /// for `read`. `None` where `read` must answer (a send-only stream) or
    /// another read holds the stream.
    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut bytes::BytesMut,
    ) -> Option<Poll<io::Result<Recv>>> {
        let mut side = self.recv.as_ref()?.try_lock()?;
        let RecvSide { stream, datagram } = &mut *side;
        let chunk = S::read_chunk(stream, READ_CHUNK);
        futures::pin_mut!(chunk);
        if let Poll::Ready(r) = chunk.poll(cx) {
            return Some(Poll::Ready(r.map(|c| took_chunk(c, buf))));
        }
        if self.takes_datagrams {
            let wait = datagram.get_or_insert_with(|| self.session.read_datagram());
            if let Poll::Ready(d) = wait.as_mut().poll(cx) {
                *datagram = None;
                return Some(Poll::Ready(d.map(Recv::Datagram).map_err(other)));
            }
        }
        Some(Poll::Pending)
    }

    /// Append at most `want` stream bytes, or return one datagram.
    pub(crate) async fn read_up_to(
        &self,
        buf: &mut bytes::BytesMut,
        want: usize,
    ) -> io::Result<Recv> {
        let Some(recv) = &self.recv else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("this {} stream is send-only", S::NAME),
            ));
        };
        let mut side = recv.lock().await;
        let RecvSide { stream, datagram } = &mut *side;
        let datagrams = self
            .takes_datagrams
            .then_some(|| self.session.read_datagram());
        let chunk = S::read_chunk(stream, want.max(1));
        read_chunk_or_datagram(chunk, datagram, datagrams, buf).await
    }

    pub(crate) async fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let Some(send) = &self.send else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("this {} stream is receive-only", S::NAME),
            ));
        };
        write_slices(send, bufs).await
    }

    pub(crate) async fn send_datagram(&self, data: &[u8]) -> io::Result<()> {
        self.session.send_datagram(Bytes::copy_from_slice(data))
    }

    /// Finish the stream (FIN).
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        if let Some(send) = &self.send {
            if let Some(stream) = lock_send(send).0.as_mut() {
                S::finish(stream);
            }
        }
        Ok(())
    }

    /// After `shutdown_write`: resolves once the peer acknowledged all the
    /// stream's data, or ended it its own way first (STOP_SENDING, or the
    /// session closed): either way nothing more is in flight, so dropping
    /// the last handle (which closes the session at once) loses nothing
    /// the peer would still take. The stream is taken out of the Connection
    /// for the wait (nothing is written after the end).
    pub(crate) async fn delivered(&self) -> io::Result<()> {
        let Some(send) = &self.send else {
            return Ok(());
        };
        let stream = lock_send(send).0.take();
        if let Some(stream) = stream {
            S::stopped(stream).await;
        }
        Ok(())
    }

    /// Reset the stream in both directions (RESET_STREAM, STOP_SENDING).
    pub(crate) fn abort(&self) {
        if let Some(mut s) = self.send.as_ref().and_then(|s| lock_send(s).0.take()) {
            S::reset(&mut s);
        }
        if let Some(mut r) = self.recv.as_ref().and_then(|r| r.try_lock()) {
            S::stop(&mut r.stream);
        }
    }

    /// CloseGroup / AbortGroup: close the whole connection or session.
    pub(crate) fn close_group(&self, abort: bool) {
        let (code, why): (u32, &[u8]) = if abort {
            (1, b"AbortGroup")
        } else {
            (0, b"CloseGroup")
        };
        self.session.close(code, why);
    }

    /// Largest datagram payload now, if datagrams are enabled.
    pub(crate) fn max_datagram(&self) -> Option<u64> {
        self.session.max_datagram()
    }
}

/// Append the stream read `chunk` (its bytes, `None` at the end) to `buf`,
/// or, where `datagrams` makes a datagram wait (the first stream only),
/// return the next datagram if it comes first. The wait lives across reads
/// in `pending`: re-creating it per read costs a waker each time.
async fn read_chunk_or_datagram<E: std::fmt::Display>(
    chunk: impl Future<Output = io::Result<Option<Bytes>>>,
    pending: &mut Option<DatagramWait<E>>,
    datagrams: Option<impl FnOnce() -> DatagramWait<E>>,
    buf: &mut bytes::BytesMut,
) -> io::Result<Recv> {
    use futures::future::Either;
    let chunk = match datagrams {
        None => chunk.await,
        Some(wait) => {
            let dgram = pending.get_or_insert_with(wait);
            futures::pin_mut!(chunk);
            match futures::future::select(chunk, dgram.as_mut()).await {
                Either::Left((r, _)) => r,
                Either::Right((d, _)) => {
                    *pending = None;
                    return d.map(Recv::Datagram).map_err(other);
                }
            }
        }
    };
    Ok(took_chunk(chunk?, buf))
}

/// A stream read's chunk appended to `buf` (`None`: the end of the stream).
fn took_chunk(chunk: Option<Bytes>, buf: &mut bytes::BytesMut) -> Recv {
    match chunk {
        Some(bytes) => {
            buf.extend_from_slice(&bytes);
            Recv::Bytes
        }
        None => Recv::Eof,
    }
}

/// Write some of `bufs` to a send stream. quinn copies into its own
/// buffers, locking the connection and waking its driver per write: small
/// frames (prefix, body, suffix, and several Messages) go in one write.
/// Otherwise the slices go in turn, and the count taken is returned (the
/// caller resumes at the right offset).
///
/// Cancel-safe: all progress happens within one poll, so a future dropped
/// before it completes took nothing.
async fn write_slices<S: AsyncWrite + Unpin>(
    send: &std::sync::Mutex<S>,
    bufs: &[io::IoSlice<'_>],
) -> io::Result<usize> {
    let len: usize = bufs.iter().map(|b| b.len()).sum();
    let coalesce = len <= COALESCE_MAX && bufs.iter().filter(|b| !b.is_empty()).count() > 1;
    let one: Vec<u8> = if coalesce {
        let mut one = Vec::with_capacity(len);
        for b in bufs {
            one.extend_from_slice(b);
        }
        one
    } else {
        Vec::new()
    };
    std::future::poll_fn(|cx| {
        let mut s = lock_send(send);
        if coalesce {
            return Pin::new(&mut *s).poll_write(cx, &one);
        }
        let mut total = 0;
        for b in bufs.iter().filter(|b| !b.is_empty()) {
            match Pin::new(&mut *s).poll_write(cx, b) {
                Poll::Ready(Ok(n)) => {
                    total += n;
                    if n < b.len() {
                        break;
                    }
                }
                Poll::Ready(Err(e)) if total == 0 => return Poll::Ready(Err(e)),
                // What went out so far counts; the error comes back on the next write.
                Poll::Ready(Err(_)) => break,
                Poll::Pending if total == 0 => return Poll::Pending,
                Poll::Pending => break,
            }
        }
        Poll::Ready(Ok(total))
    })
    .await
}
