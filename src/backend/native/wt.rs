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

use super::quinn_stream::{open, other, DatagramWait, Session, StreamTransport};
use crate::backend::{Incoming, SocketOptions};
use crate::capability::Capabilities;
use bytes::Bytes;
use futures::FutureExt;
use std::io;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;
use web_transport_quinn as wtq;

/// The ALPN of HTTP/3, which WebTransport runs over.
pub(crate) const ALPN: &str = wtq::ALPN;

/// One WebTransport stream (a Connection), with its session (the group).
pub(crate) type WtTransport = StreamTransport<Arc<wtq::Session>>;

/// A WebTransport session (shared: a session handle is large).
impl Session for Arc<wtq::Session> {
    type Send = wtq::SendStream;
    type Recv = wtq::RecvStream;
    type Error = wtq::SessionError;
    const NAME: &'static str = "WebTransport";

    async fn open_bi(&self) -> io::Result<(Self::Send, Self::Recv)> {
        wtq::Session::open_bi(self).await.map_err(other)
    }

    async fn open_uni(&self) -> io::Result<Self::Send> {
        wtq::Session::open_uni(self).await.map_err(other)
    }

    fn read_chunk(
        recv: &mut Self::Recv,
        max: usize,
    ) -> impl std::future::Future<Output = io::Result<Option<Bytes>>> + Send + '_ {
        recv.read_chunk(max, true).map(|r| match r {
            Ok(c) => Ok(c.map(|c| c.bytes)),
            Err(wtq::ReadError::Reset(code)) => Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("the peer reset the WebTransport stream (code {code})"),
            )),
            Err(e) => Err(other(e)),
        })
    }

    fn read_datagram(&self) -> DatagramWait<Self::Error> {
        let s = self.clone();
        Box::pin(async move { wtq::Session::read_datagram(&s).await })
    }

    fn send_datagram(&self, data: Bytes) -> io::Result<()> {
        wtq::Session::send_datagram(self, data)
            .map_err(|e| other(format!("WebTransport datagram: {e}")))
    }

    fn finish(send: &mut Self::Send) {
        let _ = send.finish();
    }

    async fn stopped(send: Self::Send) {
        let _ = send.stopped().await;
    }

    fn reset(send: &mut Self::Send) {
        let _ = send.reset(0);
    }

    fn stop(recv: &mut Self::Recv) {
        let _ = recv.stop(0);
    }

    fn close(&self, code: u32, why: &[u8]) {
        wtq::Session::close(self, code, why);
    }

    fn max_datagram(&self) -> Option<u64> {
        match self.max_datagram_size() {
            0 => None,
            n => Some(n as u64),
        }
    }

    fn stable_id(&self) -> usize {
        self.deref().stable_id()
    }

    fn remote_address(&self) -> SocketAddr {
        self.deref().remote_address()
    }
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

impl StreamTransport<Arc<wtq::Session>> {
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
        let session = Arc::new(session);
        let (send, recv) = open(&session, opts.direction).await?;
        Ok(StreamTransport::from_streams(
            session,
            send,
            recv,
            true,
            Some(endpoint),
        ))
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
    /// `place` is the handshake's place among the Listener's pending
    /// connections: the session's first stream takes it; each later stream
    /// waits for one of its own before it is taken from the session, and a
    /// session that opens no stream within the handshake timeout is closed.
    pub(crate) async fn serve_connection(
        &self,
        conn: quinn::Connection,
        tx: super::IncomingTx,
        place: super::super::Room,
        quiet: super::quic::Quiet,
    ) {
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
        let mut place = super::quic::StreamPlace::new(place, self.timeout);
        loop {
            let (send, recv) = tokio::select! {
                room = tx.room(), if !place.has_place() => {
                    place.give(room);
                    continue;
                }
                _ = session.closed(), if !place.has_place() => return,
                _ = place.overdue(), if place.first_due() => {
                    let places = tx.limits().pending_incoming();
                    if let Err(e) = place.go_quiet(&quiet, "WebTransport session", remote, self.timeout, places) {
                        session.close(0, b"no stream opened");
                        let _ = tx.unbounded_send(Err(e));
                        return;
                    }
                    continue;
                }
                bi = session.accept_bi(), if place.has_place() => match bi {
                    Ok((s, r)) => (Some(s), r),
                    Err(_) => return,
                },
                uni = session.accept_uni(), if place.has_place() => match uni {
                    Ok(r) => (None, r),
                    Err(_) => return,
                },
            };
            let (room, first) = place.take();
            let transport =
                StreamTransport::from_streams(session.clone(), send, Some(recv), first, None);
            let group = Some(transport.group_id());
            let item = Incoming {
                transport: super::Transport::Wt(std::sync::Arc::new(transport)),
                caps: &Capabilities::WT,
                remote,
                group,
                room,
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
