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
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
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

/// tungstenite's limits: Messages up to recvMsgMaxLen, in one frame or many.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
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
            match rd.next().await {
                Some(Ok(Message::Binary(b))) => return Ok(Recv::Datagram(b)),
                Some(Ok(Message::Text(t))) => return Ok(Recv::Datagram(t.into())),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                    // tungstenite queued the Pong; send it now.
                    if let Some(mut wr) = self.inner.wr.try_lock() {
                        let _ = wr.flush().await;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    // tungstenite queued the Close reply: send it.
                    drop(rd);
                    let _ = self.inner.wr.lock().await.flush().await;
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
                    return Err(io::Error::new(
                        kind,
                        format!("the peer closed the WebSocket{why}"),
                    ));
                }
                Some(Err(tungstenite::Error::ConnectionClosed)) | None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the WebSocket is closed",
                    ))
                }
                Some(Err(e)) => return Err(to_io(e)),
            }
        }
    }

    /// Send one binary WebSocket message; resolves once it is flushed to the socket.
    pub(crate) async fn send(&self, data: &[u8]) -> io::Result<()> {
        let mut wr = self.inner.wr.lock().await;
        wr.send(Message::binary(data.to_vec())).await.map_err(to_io)
    }

    /// Finish sending: a WebSocket Close frame (normal closure), then TCP
    /// FIN. Written by a task, which keeps the connection open until done.
    /// Over TLS the FIN goes without a TLS close_notify: the Close frame
    /// already marks the clean end.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        let inner = self.inner.clone();
        let handle = tokio::runtime::Handle::try_current().map_err(|e| {
            io::Error::other(format!("WebSocket close needs the tokio runtime: {e}"))
        })?;
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
