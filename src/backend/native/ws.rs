//! WebSocket (RFC 6455) with tokio-tungstenite: `ws` over TCP, `wss` over
//! TLS over TCP (the TLS is postsocket's own, `tls_config`, so security
//! settings, pins and verification are those of the TLS stack).
//!
//! A Connection is one WebSocket; each Message is one binary WebSocket
//! message (a text message received is delivered as its UTF-8 bytes). Ready
//! comes after the HTTP upgrade (for `wss`, after TLS and then the upgrade).
//! Close sends a WebSocket Close frame, then TCP FIN; Abort resets the TCP
//! connection. The request URL is `ws://HOST:PORT/PATH` (`wss://…`), HOST the
//! RemoteEndpoint's host name when there is one, else the IP, and PATH the
//! protocol option `ws.path` (`wss.path`, falling back to `ws.path`), default
//! `/`. A Listener accepts an upgrade on any path unless that option is set;
//! then other paths get 404 and an EstablishmentError naming the path.
//!
//! Message size: tungstenite's limits (message and frame) are
//! [`crate::RECV_MSG_MAX_LEN`]: larger input fails the receive with an
//! error, never a panic.
//!
//! The peer's Close frame ends the Connection's receive side: code 1000
//! (normal) or 1001 (going away) as a clean finish (ReceiveError reason
//! PeerFinished), any other code as an error naming it.

use super::tcp;
#[cfg(feature = "tls")]
use super::tls;
use crate::backend::{Incoming, Recv, SocketOptions};
use crate::capability::Capabilities;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use socket2::SockRef;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data as OpData, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// Any byte stream a WebSocket runs over (TCP, TLS).
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type Stream = WebSocketStream<Box<dyn Io>>;

struct Inner {
    rd: futures::lock::Mutex<SplitStream<Stream>>,
    wr: futures::lock::Mutex<SplitSink<Stream, Message>>,
    /// The TCP socket's descriptor (owned by the stream in `rd`/`wr`):
    /// options, addresses, abort.
    sock: TcpFd,
    secure: bool,
    /// The runtime the WebSocket was made in: what a receive cannot push
    /// out at once (the reply to the peer's Close) is finished by a task
    /// there, even when the receive is polled from outside it.
    rt: Option<tokio::runtime::Handle>,
}

/// What one item of the WebSocket stream delivers to a read.
enum Delivered {
    /// A Message, or the read's error.
    Recv(io::Result<Recv>),
    /// The peer's Close (the read's error): its reply is queued.
    Closed(io::Error),
}

/// What a read delivers for the WebSocket stream's next item: a Message,
/// the end (the peer's Close, whose reply tungstenite queued), or nothing (a
/// Ping, Pong or raw frame: tungstenite queued any Pong).
fn delivered(next: Option<Result<Message, tungstenite::Error>>) -> Option<Delivered> {
    let r = match next {
        Some(Ok(Message::Binary(b))) => Ok(Recv::Datagram(b)),
        Some(Ok(Message::Text(t))) => Ok(Recv::Datagram(t.into())),
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => return None,
        Some(Ok(Message::Close(frame))) => {
            // Normal closure, going away, or no code: a clean end
            // (UnexpectedEof); any other code is an error.
            let clean = frame
                .as_ref()
                .is_none_or(|f| matches!(f.code, CloseCode::Normal | CloseCode::Away));
            let why = match frame {
                Some(f) if f.reason.is_empty() => format!(" (code {})", f.code),
                Some(f) => format!(" (code {}: {})", f.code, f.reason),
                None => " (no close code)".to_string(),
            };
            let kind = if clean {
                io::ErrorKind::UnexpectedEof
            } else {
                io::ErrorKind::ConnectionReset
            };
            return Some(Delivered::Closed(io::Error::new(
                kind,
                format!("the peer closed the WebSocket{why}"),
            )));
        }
        Some(Err(tungstenite::Error::ConnectionClosed)) | None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the WebSocket is closed",
        )),
        Some(Err(e)) => Err(to_io(e)),
    };
    Some(Delivered::Recv(r))
}

/// The descriptor of the TCP socket under a WebSocket, kept without a
/// duplicate (one descriptor per Connection, as for plain TCP). The
/// WebSocket stream owns the socket; tokio-tungstenite keeps it where
/// postsocket cannot reach it without the stream's lock (a pending read
/// holds that), so the socket is reached through this instead.
///
/// Taken from the TCP stream before the stream moves into TLS and the
/// WebSocket; used only once it sits beside that WebSocket in [`Inner`],
/// which drops them together, so the descriptor is open whenever this is
/// used.
pub(crate) struct TcpFd(RawSock);

#[cfg(unix)]
type RawSock = std::os::fd::RawFd;
#[cfg(windows)]
type RawSock = std::os::windows::io::RawSocket;

impl TcpFd {
    /// The descriptor of `stream`'s socket.
    pub(crate) fn of(stream: &TcpStream) -> TcpFd {
        #[cfg(unix)]
        use std::os::fd::AsRawFd as _;
        #[cfg(windows)]
        use std::os::windows::io::AsRawSocket as _;
        #[cfg(unix)]
        return TcpFd(stream.as_raw_fd());
        #[cfg(windows)]
        return TcpFd(stream.as_raw_socket());
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for TcpFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the stream that owns the descriptor lives beside this in
        // `Inner` and is dropped with it (see the type's doc).
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.0) }
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsSocket for TcpFd {
    fn as_socket(&self) -> std::os::windows::io::BorrowedSocket<'_> {
        // SAFETY: as for unix, above.
        unsafe { std::os::windows::io::BorrowedSocket::borrow_raw(self.0) }
    }
}

/// An established WebSocket, shared by the send and receive sides.
#[derive(Clone)]
pub(crate) struct WsTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsTransport")
            .field(
                "peer",
                &self.socket().peer_addr().ok().and_then(|a| a.as_socket()),
            )
            .field("secure", &self.inner.secure)
            .finish()
    }
}

/// tungstenite's read buffer per WebSocket: allocated with the WebSocket
/// and held for its life, filled to its size by each read. tungstenite's
/// default, 128 KiB, made an idle WebSocket Connection about 135 KB; with
/// 16 KiB it is about 21 KB. A frame larger than this is still read into a
/// buffer reserved for it whole; what costs is the number of reads when
/// many small Messages arrive together (1 KiB Messages through one
/// WebSocket: about 8% less throughput; 64 KiB Messages: the same).
const READ_BUFFER: usize = 16 * 1024;

/// The largest frame a WebSocket sends: a larger Message goes out as
/// several frames (RFC 6455 §5.4). tungstenite's write buffer keeps its
/// largest size for the WebSocket's life; whole, a 1 MiB Message left 1 MiB
/// in it, and a 1 MiB Message each way left a pair of Connections 4.2 MB
/// (of heap, against 42 KB idle); in frames of 64 KiB, 0.3 MB. Messages of
/// 64 KiB or less go as before, in one frame; larger ones go faster (the
/// write buffer is not shifted down after each partial write of a large
/// frame).
const SEND_FRAME: usize = 64 * 1024;

/// tungstenite's limits: Messages up to recvMsgMaxLen, in one frame or many.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        // Each frame is written as it is made (the send flushes each
        // Message anyway): the write buffer holds one frame at most.
        .write_buffer_size(0)
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(crate::RECV_MSG_MAX_LEN))
        .max_frame_size(Some(crate::RECV_MSG_MAX_LEN))
}

/// The HTTP path for `secure` (wss) or not, from the protocol options.
pub(crate) fn path(opts: &SocketOptions, secure: bool) -> Option<String> {
    let get = |k: &str| opts.protocol_options.get(k).cloned();
    if secure {
        get("wss.path").or_else(|| get("ws.path"))
    } else {
        get("ws.path")
    }
}

fn to_io(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        tungstenite::Error::Capacity(c) => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{c} (recvMsgMaxLen is {} bytes)", crate::RECV_MSG_MAX_LEN),
        ),
        tungstenite::Error::Http(r) => {
            let body = r
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).trim().to_string())
                .filter(|b| !b.is_empty())
                .map(|b| format!(": {b}"))
                .unwrap_or_default();
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("the server answered HTTP {}{body}", r.status()),
            )
        }
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

impl WsTransport {
    fn new(ws: Stream, sock: TcpFd, secure: bool) -> Self {
        let (wr, rd) = ws.split();
        WsTransport {
            inner: Arc::new(Inner {
                rd: futures::lock::Mutex::new(rd),
                wr: futures::lock::Mutex::new(wr),
                sock,
                secure,
                rt: tokio::runtime::Handle::try_current().ok(),
            }),
        }
    }

    /// Connect (one racing attempt): TCP, TLS if `secure`, then the HTTP
    /// upgrade. Ready once the server accepted the upgrade.
    pub(crate) async fn connect(
        remote: SocketAddr,
        opts: &SocketOptions,
        secure: bool,
    ) -> io::Result<Self> {
        let host = opts
            .server_name
            .clone()
            .unwrap_or_else(|| match remote.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            });
        let scheme = if secure { "wss" } else { "ws" };
        let path = path(opts, secure).unwrap_or_else(|| "/".to_string());
        let url = format!("{scheme}://{host}:{}{path}", remote.port());
        let tcp = tcp::connect_stream(remote, opts).await?;
        let sock = TcpFd::of(&tcp);
        let io: Box<dyn Io> = if secure {
            #[cfg(feature = "tls")]
            {
                Box::new(tls_connect(tcp, remote, opts).await?)
            }
            // wss is in the registry only with TLS.
            #[cfg(not(feature = "tls"))]
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "wss needs TLS, which is not in this build (postsocket's cargo feature `tls`)",
            ));
        } else {
            Box::new(tcp)
        };
        // `url` is the request URL: the client sends it in the request line
        // and Host header (the scheme only says which port is the default).
        let (ws, _response) =
            tokio_tungstenite::client_async_with_config(url.as_str(), io, Some(config()))
                .await
                .map_err(|e| {
                    let e = to_io(e);
                    let text = format!("WebSocket upgrade with {remote} ({url}): {e}");
                    super::described::described(e, text)
                })?;
        Ok(WsTransport::new(ws, sock, secure))
    }

    /// The TCP socket underneath.
    pub(crate) fn socket(&self) -> SockRef<'_> {
        SockRef::from(&self.inner.sock)
    }

    /// Read one Message: a binary or text WebSocket message. Pings are
    /// answered by tungstenite. Cancel safe: tungstenite keeps a partly read
    /// message buffered.
    pub(crate) async fn read(&self) -> io::Result<Recv> {
        let mut rd = self.inner.rd.lock().await;
        loop {
            let next = rd.next().await;
            match delivered(next) {
                Some(Delivered::Recv(r)) => return r,
                Some(Delivered::Closed(e)) => {
                    // tungstenite queued the Close reply: send it.
                    drop(rd);
                    let _ = self.inner.wr.lock().await.flush().await;
                    return Err(e);
                }
                None => {
                    // tungstenite queued the Pong; send it now.
                    if let Some(mut wr) = self.inner.wr.try_lock() {
                        let _ = wr.flush().await;
                    }
                }
            }
        }
    }

    /// `read` as a poll, holding no state while it waits (what
    /// tungstenite has of a partly read message stays in the stream).
    /// `None` while another read holds the stream. tungstenite flushes a
    /// Pong it queued at its next read; the reply to the peer's Close is
    /// flushed here as far as the socket takes it now, and by a task if
    /// the socket is full.
    pub(crate) fn poll_read(&self, cx: &mut Context<'_>) -> Option<Poll<io::Result<Recv>>> {
        let mut rd = self.inner.rd.try_lock()?;
        loop {
            let next = match rd.poll_next_unpin(cx) {
                Poll::Ready(next) => next,
                Poll::Pending => return Some(Poll::Pending),
            };
            match delivered(next) {
                Some(Delivered::Recv(r)) => return Some(Poll::Ready(r)),
                Some(Delivered::Closed(e)) => {
                    drop(rd);
                    let flushed = self
                        .inner
                        .wr
                        .try_lock()
                        .is_some_and(|mut wr| wr.poll_flush_unpin(cx).is_ready());
                    if !flushed {
                        if let Some(rt) = &self.inner.rt {
                            let inner = self.inner.clone();
                            rt.spawn(async move {
                                let _ = inner.wr.lock().await.flush().await;
                            });
                        }
                    }
                    return Some(Poll::Ready(Err(e)));
                }
                // tungstenite flushes a queued Pong at the start of its
                // next read: the loop's.
                None => {}
            }
        }
    }

    /// Send one binary WebSocket message; resolves once it is flushed to
    /// the socket. A Message larger than [`SEND_FRAME`] goes out as frames
    /// of at most that size (RFC 6455 §5.4), so that tungstenite's write
    /// buffer, which keeps its largest size for the WebSocket's life, never
    /// grows past about one frame.
    pub(crate) async fn send(&self, data: &[u8]) -> io::Result<()> {
        let mut wr = self.inner.wr.lock().await;
        if data.len() <= SEND_FRAME {
            return wr.send(Message::binary(data.to_vec())).await.map_err(to_io);
        }
        let mut parts = data.chunks(SEND_FRAME).peekable();
        let mut opcode = OpCode::Data(OpData::Binary);
        while let Some(part) = parts.next() {
            let last = parts.peek().is_none();
            let f = Frame::message(part.to_vec(), opcode, last);
            wr.feed(Message::Frame(f)).await.map_err(to_io)?;
            opcode = OpCode::Data(OpData::Continue);
        }
        wr.flush().await.map_err(to_io)
    }

    /// Finish sending: a WebSocket Close frame (normal closure), then TCP
    /// FIN. Written by a task, which keeps the connection open until done.
    /// Over TLS the FIN goes without a TLS close_notify: the Close frame
    /// already marks the clean end.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        let inner = self.inner.clone();
        let handle = match &self.inner.rt {
            Some(rt) => rt.clone(),
            None => tokio::runtime::Handle::try_current().map_err(|e| {
                io::Error::other(format!("WebSocket close needs the tokio runtime: {e}"))
            })?,
        };
        handle.spawn(async move {
            let mut wr = inner.wr.lock().await;
            let normal = CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            };
            let _ = wr.send(Message::Close(Some(normal))).await;
            let _ = wr.close().await;
            let _ = SockRef::from(&inner.sock).shutdown(std::net::Shutdown::Write);
        });
        Ok(())
    }

    /// Linger 0 makes the close send RST; shutting down reading wakes every
    /// pending read.
    pub(crate) fn abort(&self) {
        let s = self.socket();
        let _ = s.set_linger(Some(Duration::ZERO));
        let _ = s.shutdown(std::net::Shutdown::Read);
    }
}

/// The client's TLS handshake for `wss`, as the TLS stack does it (same
/// configuration, name and error text); ALPN `http/1.1` unless set.
#[cfg(feature = "tls")]
async fn tls_connect(
    tcp: TcpStream,
    remote: SocketAddr,
    opts: &SocketOptions,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let sec = opts.security.clone().unwrap_or_default();
    let name = sec
        .server_name
        .clone()
        .or_else(|| opts.server_name.clone())
        .unwrap_or_else(|| remote.ip().to_string());
    let who = format!("{remote} ({name})");
    tls::connect_http1(tcp, &sec, name, opts.session_scope, &who).await
}

/// What a WebSocket Listener accepts: the path (any when `None`), and how
/// long an upgrade may take (the Listener's handshake timeout).
#[derive(Clone, Debug)]
pub(crate) struct WsServer {
    pub(crate) path: Option<String>,
    pub(crate) timeout: Duration,
}

impl WsServer {
    /// The server's HTTP upgrade on an accepted stream (TCP, or TLS for
    /// `secure`) from `remote`. A wrong path gets 404 and an error naming
    /// it; no result within its timeout is an error too.
    pub(crate) async fn accept(
        &self,
        io: Box<dyn Io>,
        sock: TcpFd,
        remote: SocketAddr,
        secure: bool,
    ) -> io::Result<Incoming> {
        let asked: Arc<Mutex<Option<String>>> = Arc::default();
        let want = self.path.clone();
        let seen = asked.clone();
        // The error type is tungstenite's (an HTTP response).
        #[allow(clippy::result_large_err)]
        let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
            let p = req.uri().path().to_string();
            *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
            match &want {
                Some(w) if *w != p => {
                    let mut r = ErrorResponse::new(Some(format!(
                        "no WebSocket at {p}; this server serves {w}"
                    )));
                    *r.status_mut() = tungstenite::http::StatusCode::NOT_FOUND;
                    Err(r)
                }
                _ => Ok(resp),
            }
        };
        let scheme = if secure { "wss" } else { "ws" };
        let up = tokio::time::timeout(
            self.timeout,
            tokio_tungstenite::accept_hdr_async_with_config(io, callback, Some(config())),
        )
        .await;
        let ws = match up {
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{scheme} upgrade from {remote}: no result after {}",
                        crate::runtime::ms_text(self.timeout)
                    ),
                ))
            }
            Ok(Err(e)) => {
                let asked = asked.lock().unwrap_or_else(|e| e.into_inner()).take();
                let msg = match (&asked, &self.path) {
                    (Some(p), Some(w)) if p != w => format!(
                        "{scheme} upgrade from {remote}: path {p} requested, this Listener serves only {w} (answered 404 Not Found)"
                    ),
                    _ => format!("{scheme} upgrade from {remote}: {}", to_io(e)),
                };
                return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
            }
            Ok(Ok(ws)) => ws,
        };
        Ok(Incoming {
            transport: super::Transport::Ws(WsTransport::new(ws, sock, secure)),
            caps: if secure {
                &Capabilities::WSS
            } else {
                &Capabilities::WS
            },
            remote,
            group: None,
            room: None,
        })
    }

    /// A plain `ws` peer on an accepted TCP connection.
    pub(crate) async fn accept_tcp(
        &self,
        stream: TcpStream,
        remote: SocketAddr,
    ) -> io::Result<Incoming> {
        let sock = TcpFd::of(&stream);
        self.accept(Box::new(stream), sock, remote, false).await
    }
}

/// A stream whose first bytes were already read: they are read again first
/// (`wss` after the Listener looked inside TLS).
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

#[cfg_attr(not(feature = "tls"), allow(dead_code))]
impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `t.poll_read` gives within `within`, polled as a receive does;
    /// `None` if nothing came.
    async fn poll_next(t: &WsTransport, within: Duration) -> Option<io::Result<Recv>> {
        let read = std::future::poll_fn(|cx| t.poll_read(cx).expect("polls"));
        tokio::time::timeout(within, read).await.ok()
    }

    /// A Message larger than one frame goes out as frames of at most
    /// `SEND_FRAME` bytes: a plain tokio-tungstenite peer that refuses
    /// larger frames (but not larger Messages) receives it whole, and
    /// Messages around it as they were.
    #[tokio::test]
    async fn a_large_message_goes_in_frames_a_plain_peer_reassembles() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let cfg = WebSocketConfig::default()
                .max_frame_size(Some(SEND_FRAME))
                .max_message_size(Some(4 << 20));
            let mut ws = tokio_tungstenite::accept_async_with_config(s, Some(cfg))
                .await
                .unwrap();
            let mut got = Vec::new();
            for _ in 0..4 {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => got.push(b),
                    other => panic!("expected a Message, got {other:?}"),
                }
            }
            got
        });
        let client = WsTransport::connect(addr, &SocketOptions::default(), false)
            .await
            .unwrap();
        let big: Vec<u8> = (0..(1 << 20) + 1).map(|i| (i % 251) as u8).collect();
        let exact = vec![9u8; SEND_FRAME];
        for m in [&b"before"[..], &big, &exact, b"after"] {
            client.send(m).await.unwrap();
        }
        let got = tokio::time::timeout(Duration::from_secs(10), peer)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(&got[0][..], b"before");
        assert!(got[1][..] == big[..], "the large Message arrived whole");
        assert!(got[2][..] == exact[..]);
        assert_eq!(&got[3][..], b"after");
    }

    /// `poll_read` holds no receive state while it waits, and still does
    /// what tungstenite does inside a read: it answers the peer's Ping (the
    /// Pong goes out while the Connection only polls) and its Close (the
    /// reply goes out, and a normal closure is a clean end). The peer is a
    /// plain tokio-tungstenite server.
    #[tokio::test]
    async fn poll_read_answers_pings_and_close_and_reads_messages_without_a_future() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (to_peer, mut peer_cmds) = tokio::sync::mpsc::unbounded_channel::<Message>();
        let (from_peer, mut peer_saw) = tokio::sync::mpsc::unbounded_channel::<Message>();
        let peer = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
            loop {
                tokio::select! {
                    cmd = peer_cmds.recv() => match cmd {
                        Some(m) => ws.send(m).await.unwrap(),
                        None => break,
                    },
                    got = ws.next() => match got {
                        Some(Ok(m)) => {
                            let close = matches!(m, Message::Close(_));
                            from_peer.send(m).unwrap();
                            if close {
                                break;
                            }
                        }
                        _ => break,
                    },
                }
            }
        });
        let client = WsTransport::connect(addr, &SocketOptions::default(), false)
            .await
            .unwrap();
        let five = Duration::from_secs(5);
        // Idle: nothing to read, nothing kept.
        assert!(poll_next(&client, Duration::from_millis(50))
            .await
            .is_none());
        // A Ping is answered while a receive only polls for Messages: in a
        // task of its own, polled only when woken, so the Pong goes out
        // only if the poll that read the Ping went on to flush it.
        let reader = client.clone();
        let read = tokio::spawn(async move { poll_next(&reader, Duration::from_secs(10)).await });
        to_peer
            .send(Message::Ping(b"are you there".to_vec().into()))
            .unwrap();
        match tokio::time::timeout(five, peer_saw.recv()).await {
            Ok(Some(Message::Pong(p))) => assert_eq!(&p[..], b"are you there"),
            other => panic!("expected the Pong, got {other:?}"),
        }
        to_peer.send(Message::binary(b"one".to_vec())).unwrap();
        match read.await.unwrap() {
            Some(Ok(Recv::Datagram(d))) => assert_eq!(&d[..], b"one"),
            other => panic!("expected a Message, got {other:?}"),
        }
        to_peer
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            })))
            .unwrap();
        match poll_next(&client, five).await {
            Some(Err(e)) => {
                assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
                assert!(e.to_string().contains("code 1000: bye"), "{e}");
            }
            other => panic!("expected the peer's clean close, got {other:?}"),
        }
        // The Close reply reached the peer.
        match tokio::time::timeout(five, peer_saw.recv()).await {
            Ok(Some(Message::Close(_))) => {}
            other => panic!("expected the Close reply, got {other:?}"),
        }
        tokio::time::timeout(five, peer).await.unwrap().unwrap();
    }
}
