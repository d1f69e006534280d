//! WebTransport (`wt`) over HTTP/3: the CONNECT handshake and stream framing
//! of `web-transport-quinn`, over postsocket's own quinn endpoints and rustls
//! configuration (`tls_config`, so pins, trusted CAs and the rest of the
//! SecurityParameters verify the server exactly as for QUIC).
//!
//! Mapped like QUIC (its row in `capability.rs`): a Connection is one
//! WebTransport stream (a byte stream: Messages need a framer), the
//! WebTransport session is the Connection Group, so Clone opens a new stream
//! on the same session; Messages with msgReliable false go as WebTransport
//! datagrams, delivered to the session's first stream. `direction`
//! unidirectional-send opens a unidirectional stream.
//!
//! The request URL is `https://HOST:PORT/PATH`: HOST the RemoteEndpoint's
//! host name when there is one, else the IP address, PATH the protocol option
//! `wt.path` (default `/`). ALPN is always `h3`. A Listener accepts a session
//! on any path unless `wt.path` is set; then other paths get 404 and an
//! EstablishmentError naming the path. On a Listener's UDP port WebTransport
//! shares quinn's endpoint with the QUIC stack: the negotiated ALPN (`h3`)
//! tells them apart.

use super::quic::{read_chunk_or_datagram, DatagramWait};
use crate::backend::{Incoming, Recv, SocketOptions};
use crate::capability::Capabilities;
use crate::properties::Direction;
use bytes::Bytes;
use futures::FutureExt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use web_transport_quinn as wtq;

/// A WebTransport send stream, taken out (`None`) once Close waits for its
/// acknowledgement or Abort reset it: later writes fail.
pub(crate) struct WtSend(Option<wtq::SendStream>);

impl tokio::io::AsyncWrite for WtSend {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.0.as_mut() {
            Some(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            None => std::task::Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the WebTransport stream was ended",
            ))),
        }
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.0.as_mut() {
            Some(s) => std::pin::Pin::new(s).poll_flush(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.0.as_mut() {
            Some(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
}

/// The ALPN of HTTP/3, which WebTransport runs over.
pub(crate) const ALPN: &str = wtq::ALPN;

/// Read at most this much per stream read.
const READ_CHUNK: usize = 64 * 1024;

struct RecvSide {
    stream: wtq::RecvStream,
    datagram: Option<DatagramWait<wtq::SessionError>>,
}

/// One WebTransport stream (a Connection), with its session (the group).
#[derive(Clone)]
pub(crate) struct WtTransport {
    /// Shared (a session handle is large).
    session: Arc<wtq::Session>,
    /// `None` on a receive-only (unidirectional) stream.
    send: Option<super::quic::SendSide<WtSend>>,
    /// `None` on a send-only (unidirectional) stream.
    recv: Option<Arc<futures::lock::Mutex<RecvSide>>>,
    /// The first stream of a session also receives its datagrams.
    takes_datagrams: bool,
    /// A client keeps its endpoint (socket and driver) alive.
    endpoint: Option<quinn::Endpoint>,
}

impl std::fmt::Debug for WtTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WtTransport")
            .field("remote", &self.session.remote_address())
            .field("session", &self.session.stable_id())
            .finish()
    }
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// The path of the session (`wt.path`), if set.
pub(crate) fn path(opts: &SocketOptions) -> Option<String> {
    opts.protocol_options.get("wt.path").cloned()
}

/// The request URL of an attempt: `https://HOST:PORT/PATH`.
pub(crate) fn url(remote: SocketAddr, opts: &SocketOptions) -> String {
    let host = opts
        .server_name
        .clone()
        .unwrap_or_else(|| match remote.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        });
    let path = path(opts).unwrap_or_else(|| "/".to_string());
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    format!("https://{host}:{}{path}", remote.port())
}

impl WtTransport {
    /// Connect (one racing attempt): QUIC with ALPN `h3` and the
    /// SecurityParameters' verification, the HTTP/3 SETTINGS exchange and
    /// the extended CONNECT; ready once the server accepted the session, with
    /// the first stream open.
    pub(crate) async fn connect(remote: SocketAddr, opts: &SocketOptions) -> io::Result<Self> {
        let sec = opts.security.clone().unwrap_or_default();
        let tls = super::tls_config::client_config(&sec, &[ALPN], opts.session_scope)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.message))?;
        // ALPN is h3 whatever the application set for other stacks.
        let mut tls = (*tls).clone();
        tls.alpn_protocols = vec![ALPN.as_bytes().to_vec()];
        let name = sec
            .server_name
            .clone()
            .or_else(|| opts.server_name.clone())
            .unwrap_or_else(|| remote.ip().to_string());
        let url = url(remote, opts);
        let parsed = url::Url::parse(&url).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("WebTransport URL {url}: {e}"),
            )
        })?;
        let bind = match opts.local {
            Some(l) => l,
            None if remote.is_ipv6() => "[::]:0".parse().expect("addr"),
            None => "0.0.0.0:0".parse().expect("addr"),
        };
        let endpoint = quinn::Endpoint::client(bind)?;
        let crypto =
            quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).map_err(other)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(super::quic::transport_config(opts));
        config.token_store(super::quic::token_store(opts.session_scope));
        let conn = endpoint
            .connect_with(config, remote, &name)
            .map_err(|e| other(format!("WebTransport (QUIC) connect to {remote}: {e}")))?
            .await
            .map_err(|e| {
                let text = format!("QUIC handshake with {remote} ({name}): {e}");
                super::described::described_by(io::ErrorKind::Other, text, e)
            })?;
        let session = wtq::Session::connect(conn, parsed)
            .await
            .map_err(|e| describe_client_error(e, &url))?;
        let (send, recv) = open(&session, opts.direction).await?;
        Ok(WtTransport::from_streams(
            Arc::new(session),
            send,
            recv,
            true,
            Some(endpoint),
        ))
    }

    fn from_streams(
        session: Arc<wtq::Session>,
        send: Option<wtq::SendStream>,
        recv: Option<wtq::RecvStream>,
        takes_datagrams: bool,
        endpoint: Option<quinn::Endpoint>,
    ) -> Self {
        WtTransport {
            session,
            send: send.map(|s| Arc::new(std::sync::Mutex::new(WtSend(Some(s))))),
            recv: recv.map(|stream| {
                Arc::new(futures::lock::Mutex::new(RecvSide {
                    stream,
                    datagram: None,
                }))
            }),
            takes_datagrams,
            endpoint,
        }
    }

    /// This side can send on the stream.
    pub(crate) fn can_send(&self) -> bool {
        self.send.is_some()
    }

    /// This side can receive on the stream.
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
        Ok(WtTransport::from_streams(
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
    pub(crate) async fn read(&self, buf: &mut Vec<u8>) -> io::Result<Recv> {
        self.read_up_to(buf, READ_CHUNK).await
    }

    /// Append at most `want` stream bytes, or return one datagram.
    pub(crate) async fn read_up_to(&self, buf: &mut Vec<u8>, want: usize) -> io::Result<Recv> {
        let Some(recv) = &self.recv else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this WebTransport stream is send-only",
            ));
        };
        let mut side = recv.lock().await;
        let RecvSide { stream, datagram } = &mut *side;
        let datagrams = self.takes_datagrams.then_some(|| {
            let s = self.session.clone();
            Box::pin(async move { s.read_datagram().await }) as DatagramWait<_>
        });
        let chunk = stream.read_chunk(want.max(1), true).map(|r| match r {
            Ok(c) => Ok(c.map(|c| c.bytes)),
            Err(wtq::ReadError::Reset(code)) => Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("the peer reset the WebTransport stream (code {code})"),
            )),
            Err(e) => Err(other(e)),
        });
        read_chunk_or_datagram(chunk, datagram, datagrams, buf).await
    }

    pub(crate) async fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let Some(send) = &self.send else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this WebTransport stream is receive-only",
            ));
        };
        super::quic::write_slices(send, bufs).await
    }

    /// Send one WebTransport datagram.
    pub(crate) async fn send_datagram(&self, data: &[u8]) -> io::Result<()> {
        self.session
            .send_datagram(Bytes::copy_from_slice(data))
            .map_err(|e| other(format!("WebTransport datagram: {e}")))
    }

    /// Finish the stream (FIN).
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        let Some(send) = &self.send else {
            return Ok(());
        };
        if let Some(s) = super::quic::lock_send(send).0.as_mut() {
            let _ = s.finish();
        }
        Ok(())
    }

    /// After `shutdown_write`: resolves once the peer acknowledged all the
    /// stream's data, or ended it its own way first (STOP_SENDING, or the
    /// session closed), as for QUIC: then dropping the last handle, which
    /// closes the session, loses nothing. The stream is taken out of the
    /// Connection for the wait (nothing is written after the end).
    pub(crate) async fn delivered(&self) -> io::Result<()> {
        let Some(send) = &self.send else {
            return Ok(());
        };
        let stream = super::quic::lock_send(send).0.take();
        if let Some(stream) = stream {
            let _ = stream.stopped().await;
        }
        Ok(())
    }

    /// Reset the stream in both directions.
    pub(crate) fn abort(&self) {
        if let Some(s) = self
            .send
            .as_ref()
            .and_then(|s| super::quic::lock_send(s).0.take())
        {
            let mut s = s;
            let _ = s.reset(0);
        }
        if let Some(mut r) = self.recv.as_ref().and_then(|r| r.try_lock()) {
            let _ = r.stream.stop(0);
        }
    }

    /// CloseGroup / AbortGroup: close the whole session.
    pub(crate) fn close_session(&self, abort: bool) {
        let (code, why): (u32, &[u8]) = if abort {
            (1, b"AbortGroup")
        } else {
            (0, b"CloseGroup")
        };
        self.session.close(code, why);
    }

    /// Largest datagram payload now; `None` if the peer takes no datagrams.
    pub(crate) fn max_datagram(&self) -> Option<u64> {
        match self.session.max_datagram_size() {
            0 => None,
            n => Some(n as u64),
        }
    }
}

/// Open this side's stream for `direction`: bidirectional or send-only; a
/// receive-only stream is opened by the peer.
async fn open(
    session: &wtq::Session,
    direction: Direction,
) -> io::Result<(Option<wtq::SendStream>, Option<wtq::RecvStream>)> {
    match direction {
        Direction::Bidirectional => {
            let (s, r) = session.open_bi().await.map_err(other)?;
            Ok((Some(s), Some(r)))
        }
        Direction::UnidirectionalSend => Ok((Some(session.open_uni().await.map_err(other)?), None)),
        Direction::UnidirectionalReceive => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a receive-only WebTransport stream is opened by the peer; Initiate cannot open one",
        )),
    }
}

fn describe_client_error(e: wtq::ClientError, url: &str) -> io::Error {
    let kind = match &e {
        wtq::ClientError::HttpError(_) => io::ErrorKind::ConnectionRefused,
        _ => io::ErrorKind::Other,
    };
    let text = format!("WebTransport CONNECT {url}: {}", chain(&e));
    super::described::described_by(kind, text, e)
}

/// An error with its sources: `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// What a WebTransport Listener accepts: the path (any when `None`), and
/// how long a session's HTTP/3 CONNECT may take (the Listener's handshake
/// timeout).
#[derive(Clone, Debug)]
pub(crate) struct WtServer {
    pub(crate) path: Option<String>,
    pub(crate) timeout: Duration,
}

impl WtServer {
    /// Serve one QUIC connection that negotiated `h3`: accept the session
    /// (or refuse a wrong path with 404), then every stream the peer opens
    /// becomes an Incoming Connection, grouped by the session.
    pub(crate) async fn serve_connection(&self, conn: quinn::Connection, tx: super::IncomingTx) {
        let remote = conn.remote_address();
        let request =
            match tokio::time::timeout(self.timeout, wtq::Request::accept(conn.clone())).await {
                Err(_) => {
                    conn.close(0u32.into(), b"no WebTransport CONNECT");
                    let _ = tx.unbounded_send(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "WebTransport from {remote}: no CONNECT after {}",
                            crate::runtime::ms_text(self.timeout)
                        ),
                    )));
                    return;
                }
                Ok(Err(e)) => {
                    let _ = tx.unbounded_send(Err(other(format!(
                        "WebTransport from {remote}: {}",
                        chain(&e)
                    ))));
                    return;
                }
                Ok(Ok(r)) => r,
            };
        let asked = request.url.path().to_string();
        if let Some(want) = &self.path {
            if *want != asked {
                let conn = request.conn().clone();
                let _ = request.reject(http_not_found()).await;
                let _ = tx.unbounded_send(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "WebTransport from {remote}: path {asked} requested, this Listener serves only {want} (answered 404 Not Found)"
                    ),
                )));
                // Keep the connection until the client has read the answer
                // (closing now would discard it), bounded.
                let _ = tokio::time::timeout(self.timeout, conn.closed()).await;
                return;
            }
        }
        let session = match request.ok().await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                let _ = tx.unbounded_send(Err(other(format!(
                    "WebTransport from {remote}: answering the CONNECT: {e}"
                ))));
                return;
            }
        };
        let mut first = true;
        loop {
            let (send, recv) = tokio::select! {
                bi = session.accept_bi() => match bi {
                    Ok((s, r)) => (Some(s), r),
                    Err(_) => return,
                },
                uni = session.accept_uni() => match uni {
                    Ok(r) => (None, r),
                    Err(_) => return,
                },
            };
            let transport =
                WtTransport::from_streams(session.clone(), send, Some(recv), first, None);
            first = false;
            let group = Some(transport.group_id());
            let item = Incoming {
                transport: super::Transport::Wt(transport),
                caps: &Capabilities::WT,
                remote,
                group,
                room: None,
            };
            if tx.unbounded_send(Ok(item)).is_err() {
                return;
            }
        }
    }
}

fn http_not_found() -> wtq::http::StatusCode {
    wtq::http::StatusCode::NOT_FOUND
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_urls() {
        let mut opts = SocketOptions::default();
        let v4: SocketAddr = "127.0.0.1:4433".parse().unwrap();
        let v6: SocketAddr = "[::1]:4433".parse().unwrap();
        assert_eq!(url(v4, &opts), "https://127.0.0.1:4433/");
        assert_eq!(url(v6, &opts), "https://[::1]:4433/");
        opts.protocol_options
            .insert("wt.path".into(), "/echo".into());
        opts.server_name = Some("localhost".into());
        assert_eq!(url(v6, &opts), "https://localhost:4433/echo");
    }
}
