//! Native stacks: TCP and UDP over tokio and socket2, TLS over TCP with
//! rustls, QUIC with quinn, WebSocket (ws, wss) with tokio-tungstenite,
//! WebTransport (wt) with web-transport-quinn over quinn, WebRTC data
//! channels with str0m.
//!
//! Each stack but TCP and UDP is a cargo feature of the same name (`tls`,
//! `quic`, `ws`, `wt`, `webrtc`; all on by default). A stack left out is
//! not in [`registry`], so selection never picks it and a Listener never
//! serves it, and asking for it by name says it is not in this build.

#[cfg(feature = "quic")]
mod datagram_port;
#[cfg(any(feature = "tls", feature = "ws"))]
mod described;
#[cfg(feature = "webrtc")]
mod http;
#[cfg(feature = "quic")]
mod quic;
#[cfg(feature = "quic")]
mod quinn_stream;
mod sockopt;
#[cfg(any(feature = "tls", feature = "ws"))]
mod stream_port;
mod tcp;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tls")]
pub(crate) mod tls_config;
mod udp;
#[cfg(feature = "webrtc")]
mod webrtc;
#[cfg(not(feature = "webrtc"))]
#[path = "webrtc_absent.rs"]
mod webrtc;
#[cfg(feature = "ws")]
mod ws;
#[cfg(feature = "wt")]
mod wt;

use super::{Incoming, Recv, SocketOptions};
use crate::capability::{Capabilities, StackId};
use crate::racing::{Family, Target};
use crate::runtime::BoxFuture;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

#[cfg(feature = "webrtc")]
pub(crate) use http::http_post_json;
#[cfg(feature = "quic")]
pub(crate) use quic::QuicTransport;
pub(crate) use tcp::TcpTransport;
#[cfg(feature = "tls")]
pub(crate) use tls::TlsTransport;
pub(crate) use udp::UdpTransport;
#[cfg(not(feature = "webrtc"))]
pub(crate) use webrtc::http_post_json;
#[cfg(feature = "webrtc")]
pub(crate) use webrtc::WebrtcTransport;
pub(crate) use webrtc::{WebrtcOffer, WebrtcPeer};
#[cfg(feature = "ws")]
pub(crate) use ws::WsTransport;
#[cfg(feature = "wt")]
pub(crate) use wt::WtTransport;

/// Whether Rendezvous (the WebRTC stack) is in this build: its cargo
/// feature `webrtc`.
pub(crate) const RENDEZVOUS: bool = cfg!(feature = "webrtc");

/// Natively every SecurityParameter is honoured (see the browser's).
pub(crate) fn check_security(_: &crate::security::SecurityParameters) -> Result<(), crate::Error> {
    Ok(())
}

/// Stacks held back by the platform rather than by history: none natively
/// (in the browser, WebTransport past the page's budget).
pub(crate) fn held_by_browser() -> Vec<crate::racing::Held> {
    Vec::new()
}

/// Whether the platform charges for attempts (`note_outcomes` counts them):
/// not natively.
pub(crate) const CHARGES_ATTEMPTS: bool = false;

/// Count what a race's attempts cost the platform: nothing natively.
pub(crate) fn note_outcomes(_: &[crate::racing::AttemptOutcome]) {}

/// WebTransport handshakes counting against the page's budget: none
/// natively, where nothing throttles them.
pub(crate) fn webtransport_handshakes_spent() -> usize {
    0
}

/// The fuzz harnesses of native parsers (see `crate::fuzzing`); fuzzing
/// builds every stack.
#[cfg(all(feature = "fuzzing", feature = "webrtc", feature = "tls"))]
pub(crate) use http::fuzz_response as fuzz_http_response;
#[cfg(all(feature = "fuzzing", any(feature = "tls", feature = "ws")))]
pub(crate) use stream_port::fuzz_first_bytes;
#[cfg(all(feature = "fuzzing", feature = "tls"))]
pub(crate) use tls_config::fuzz_certificate;

/// Take back a charge: nothing is charged natively.
pub(crate) fn refund(_: &crate::racing::AttemptOutcome) {}

mod path_signals;
pub(crate) use path_signals::{stop_watching_path_changes, watch_path_changes, PATH_SIGNALS};

/// The stacks this target has, in default preference order.
pub(crate) fn registry() -> &'static [Capabilities] {
    // WebSocket and WebTransport only when named (see `Capabilities::opt_in`).
    #[allow(dead_code)] // without ws and wt
    const fn opt_in(c: Capabilities) -> Capabilities {
        Capabilities { opt_in: true, ..c }
    }
    // The stacks compiled in (cargo features), in preference order.
    const REGISTRY: &[Capabilities] = &[
        #[cfg(feature = "quic")]
        Capabilities::QUIC,
        #[cfg(feature = "wt")]
        opt_in(Capabilities::WT),
        #[cfg(feature = "tls")]
        Capabilities::TLS,
        #[cfg(all(feature = "ws", feature = "tls"))]
        opt_in(Capabilities::WSS),
        Capabilities::TCP,
        #[cfg(feature = "ws")]
        opt_in(Capabilities::WS),
        Capabilities::UDP,
    ];
    REGISTRY
}

/// The ALPN a QUIC Connection offers when the application set none (QUIC
/// requires one, RFC 9001 §8.1).
#[cfg(feature = "quic")]
pub(crate) const QUIC_DEFAULT_ALPN: &[&str] = &["taps"];

#[cfg(feature = "quic")]
fn quic_security(opts: &SocketOptions) -> crate::security::SecurityParameters {
    opts.security.clone().unwrap_or_default()
}

/// An established stack instance.
#[derive(Clone, Debug)]
pub(crate) enum Transport {
    /// A TCP connection.
    Tcp(TcpTransport),
    /// A UDP flow (connected socket, or one peer of a UDP listener).
    /// Behind an `Arc`, as QUIC and WebTransport are: their handles are
    /// larger than the others', and a Connection holds three clones of its
    /// Transport, so inline they would make every Connection larger.
    Udp(Arc<UdpTransport>),
    /// One QUIC stream.
    #[cfg(feature = "quic")]
    Quic(Arc<QuicTransport>),
    /// A TLS connection over TCP.
    #[cfg(feature = "tls")]
    Tls(TlsTransport),
    /// A WebSocket (ws over TCP, wss over TLS).
    #[cfg(feature = "ws")]
    Ws(WsTransport),
    /// One WebTransport stream.
    #[cfg(feature = "wt")]
    Wt(Arc<WtTransport>),
    /// A WebRTC data channel.
    #[cfg(feature = "webrtc")]
    Webrtc(WebrtcTransport),
}

impl super::StackInstance for Transport {
    fn is_soft_error(&self, e: &io::Error) -> bool {
        matches!(self, Transport::Udp(_)) && udp::is_icmp_report(e)
    }

    /// Read: append bytes (streams) or return one datagram.
    async fn read(&self, buf: &mut bytes::BytesMut) -> io::Result<Recv> {
        match self {
            Transport::Tcp(t) => t.read(buf).await,
            Transport::Udp(u) => u.read().await,
            #[cfg(feature = "quic")]
            Transport::Quic(q) => q.read(buf).await,
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.read(buf).await,
            #[cfg(feature = "ws")]
            Transport::Ws(w) => w.read().await,
            #[cfg(feature = "wt")]
            Transport::Wt(w) => w.read(buf).await,
            #[cfg(feature = "webrtc")]
            Transport::Webrtc(w) => w.read().await,
        }
    }

    fn poll_read(
        &self,
        cx: &mut std::task::Context<'_>,
        buf: &mut bytes::BytesMut,
    ) -> Option<std::task::Poll<io::Result<Recv>>> {
        match self {
            Transport::Tcp(t) => Some(t.poll_read(cx, buf)),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => Some(t.poll_read(cx, buf)),
            #[cfg(feature = "quic")]
            Transport::Quic(q) => q.poll_read(cx, buf),
            #[cfg(feature = "wt")]
            Transport::Wt(w) => w.poll_read(cx, buf),
            #[cfg(feature = "ws")]
            Transport::Ws(w) => w.poll_read(cx),
            _ => None,
        }
    }

    /// True when reading a large Message body straight into its own buffer
    /// saves a copy. Not for TLS: fed short reads, rustls moves its record
    /// buffers around more than the copy saved (measured with perf on the
    /// secure_throughput bench: twice the memmove).
    fn reads_bodies_directly(&self) -> bool {
        match self {
            Transport::Tcp(_) => true,
            #[cfg(feature = "quic")]
            #[cfg(feature = "quic")]
            Transport::Quic(_) => true,
            #[cfg(feature = "wt")]
            #[cfg(feature = "wt")]
            Transport::Wt(_) => true,
            _ => false,
        }
    }

    /// Read as `read` does, but take at most about `want` more stream bytes
    /// (reading a Message body of known size straight into its own buffer).
    async fn read_up_to(&self, buf: &mut bytes::BytesMut, want: usize) -> io::Result<Recv> {
        match self {
            Transport::Tcp(t) => t.read_up_to(buf, want).await,
            #[cfg(feature = "quic")]
            Transport::Quic(q) => q.read_up_to(buf, want).await,
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.read_up_to(buf, want).await,
            #[cfg(feature = "wt")]
            Transport::Wt(w) => w.read_up_to(buf, want).await,
            _ => self.read(buf).await,
        }
    }

    /// Write some of `bufs` (streams), returning how many bytes went out.
    async fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Tcp(t) => t.write_vectored(bufs).await,
            Transport::Udp(_) => Err(io::Error::other("UDP has no byte stream")),
            #[cfg(feature = "quic")]
            Transport::Quic(q) => q.write_vectored(bufs).await,
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.write_vectored(bufs).await,
            #[cfg(feature = "ws")]
            Transport::Ws(_) => Err(io::Error::other("WebSocket has no byte stream")),
            #[cfg(feature = "wt")]
            Transport::Wt(w) => w.write_vectored(bufs).await,
            #[cfg(feature = "webrtc")]
            Transport::Webrtc(_) => {
                Err(io::Error::other("a WebRTC data channel has no byte stream"))
            }
        }
    }

    /// A stream write that owns its bytes, for stacks whose writes are not
    /// cancel-safe (`writes_cancel_safe`): the caller keeps it until it is
    /// done, so it is never started twice. Every native byte stream's
    /// writes are cancel-safe, so this is a copy and `write_vectored`.
    fn start_write(
        &self,
        bufs: &[IoSlice<'_>],
    ) -> crate::runtime::BoxFuture<'static, io::Result<usize>> {
        let data: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        let t = self.clone();
        Box::pin(async move { t.write_vectored(&[IoSlice::new(&data)]).await })
    }

    /// One poll of `write_vectored`, for the send fast path: TCP and TLS
    /// poll the socket directly; the other stacks poll their write future
    /// once (their writes make all their progress within a poll).
    fn poll_write_vectored(
        &self,
        cx: &mut std::task::Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        match self {
            Transport::Tcp(t) => t.poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.poll_write_vectored(cx, bufs),
            _ => std::future::Future::poll(std::pin::pin!(self.write_vectored(bufs)), cx),
        }
    }

    /// Push out bytes the stack itself still holds after `write_vectored`
    /// (TLS records that did not fit the socket); done when they are all out.
    async fn flush(&self) -> io::Result<()> {
        match self {
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.flush().await,
            _ => Ok(()),
        }
    }

    /// Send one datagram now, without waiting: `None` when the stack has no
    /// room (or cannot send without waiting), so the Message is queued.
    fn try_send_datagram(&self, data: &[u8]) -> Option<io::Result<()>> {
        match self {
            Transport::Udp(u) => u.try_send(data),
            _ => None,
        }
    }

    /// True when the stack still holds bytes that `flush` must push out.
    fn holds_unsent(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.holds_unsent(),
            _ => false,
        }
    }

    /// True when a send dropped before it completes has sent nothing:
    /// `write_vectored`, `flush` and `send_datagram` make all their progress
    /// within one poll (the WebSocket and WebRTC sinks do not).
    fn writes_cancel_safe(&self) -> bool {
        match self {
            #[cfg(feature = "ws")]
            #[cfg(feature = "ws")]
            Transport::Ws(_) => false,
            #[cfg(feature = "webrtc")]
            #[cfg(feature = "webrtc")]
            Transport::Webrtc(_) => false,
            _ => true,
        }
    }

    /// Send one datagram.
    async fn send_datagram(&self, data: &[u8]) -> io::Result<()> {
        match self {
            Transport::Tcp(_) => Err(io::Error::other("TCP has no datagrams")),
            #[cfg(feature = "tls")]
            Transport::Tls(_) => Err(io::Error::other("TLS over TCP has no datagrams")),
            Transport::Udp(u) => u.send(data).await,
            #[cfg(feature = "quic")]
            Transport::Quic(q) => q.send_datagram(data).await,
            #[cfg(feature = "ws")]
            Transport::Ws(w) => w.send(data).await,
            #[cfg(feature = "wt")]
            Transport::Wt(w) => w.send_datagram(data).await,
            #[cfg(feature = "webrtc")]
            Transport::Webrtc(w) => w.send(data).await,
        }
    }

    /// Finish sending (TCP FIN; TLS close_notify then FIN).
    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Transport::Tcp(t) => t.shutdown_write(),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.shutdown_write(),
            Transport::Udp(_) => Ok(()),
            #[cfg(feature = "quic")]
            Transport::Quic(q) => q.shutdown_write(),
            #[cfg(feature = "ws")]
            Transport::Ws(w) => w.shutdown_write(),
            #[cfg(feature = "wt")]
            Transport::Wt(w) => w.shutdown_write(),
            #[cfg(feature = "webrtc")]
            Transport::Webrtc(w) => w.shutdown_write(),
        }
    }

    /// After `shutdown_write`: wait until the peer has taken everything
    /// sent, where the stack can tell. QUIC: the peer acknowledged all of
    /// the stream's data (an error if it stopped the stream instead); the
    /// same for a WebTransport stream. WebRTC: the channel closed once SCTP had its data acknowledged. Other
    /// stacks: at once (TCP and TLS use [`Self::drain_to_end`]).
    async fn delivered(&self) -> io::Result<()> {
        match self {
            #[cfg(feature = "quic")]
            Transport::Quic(q) => q.delivered().await,
            #[cfg(feature = "webrtc")]
            Transport::Webrtc(w) => w.delivered().await,
            #[cfg(feature = "wt")]
            Transport::Wt(w) => w.delivered().await,
            _ => Ok(()),
        }
    }

    /// TCP and TLS, after `shutdown_write`: read the peer's side to its end,
    /// dropping what arrives, so that closing the socket with unread bytes
    /// does not reset the connection (which would discard what the peer has
    /// not read yet). Other stacks: at once.
    async fn drain_to_end(&self) -> io::Result<()> {
        let over_tcp = match self {
            Transport::Tcp(_) => true,
            #[cfg(feature = "tls")]
            #[cfg(feature = "tls")]
            Transport::Tls(_) => true,
            _ => false,
        };
        if !over_tcp {
            return Ok(());
        }
        // Cleared before each read, so it stays one read's room.
        let mut scratch = bytes::BytesMut::new();
        loop {
            scratch.clear();
            if let Recv::Eof = self.read(&mut scratch).await? {
                return Ok(());
            }
        }
    }

    /// Abort: TCP RST on close; wake every pending read.
    fn abort(&self) {
        match self {
            Transport::Tcp(t) => t.abort(),
            Transport::Udp(u) => u.abort(),
            #[cfg(feature = "quic")]
            Transport::Quic(q) => q.abort(),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.abort(),
            #[cfg(feature = "ws")]
            Transport::Ws(w) => w.abort(),
            #[cfg(feature = "wt")]
            Transport::Wt(w) => w.abort(),
            #[cfg(feature = "webrtc")]
            Transport::Webrtc(w) => w.abort(),
        }
    }

    /// Set the DSCP of outgoing packets.
    fn set_dscp(&self, dscp: u8) -> io::Result<()> {
        match self {
            Transport::Tcp(t) => tcp::set_dscp(&socket2::SockRef::from(t.stream()), dscp),
            Transport::Udp(u) => tcp::set_dscp(&socket2::SockRef::from(u.socket()), dscp),
            #[cfg(feature = "quic")]
            Transport::Quic(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "quinn owns the QUIC socket; its DSCP cannot be changed per Connection",
            )),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.with_socket(|s| tcp::set_dscp(&s, dscp)),
            #[cfg(feature = "ws")]
            Transport::Ws(w) => tcp::set_dscp(&w.socket(), dscp),
            #[cfg(feature = "wt")]
            Transport::Wt(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "quinn owns the WebTransport socket; its DSCP cannot be changed per Connection",
            )),
            #[cfg(feature = "webrtc")]
            Transport::Webrtc(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the WebRTC peer's socket is shared by its channels; DSCP is not set per channel",
            )),
        }
    }

    /// The local address.
    fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Transport::Tcp(t) => t.stream().local_addr().ok(),
            Transport::Udp(u) => u.socket().local_addr().ok(),
            #[cfg(feature = "quic")]
            Transport::Quic(q) => q.local(),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.local(),
            #[cfg(feature = "ws")]
            Transport::Ws(w) => w.socket().local_addr().ok().and_then(|a| a.as_socket()),
            #[cfg(feature = "wt")]
            Transport::Wt(w) => w.local(),
            #[cfg(feature = "webrtc")]
            Transport::Webrtc(w) => w.local_addr(),
        }
    }

    /// The remote address.
    fn remote_addr(&self) -> Option<SocketAddr> {
        match self {
            Transport::Tcp(t) => t.stream().peer_addr().ok(),
            Transport::Udp(u) => Some(u.peer()),
            #[cfg(feature = "quic")]
            Transport::Quic(q) => Some(q.remote()),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.peer(),
            #[cfg(feature = "ws")]
            Transport::Ws(w) => w.socket().peer_addr().ok().and_then(|a| a.as_socket()),
            #[cfg(feature = "wt")]
            Transport::Wt(w) => Some(w.remote()),
            #[cfg(feature = "webrtc")]
            Transport::Webrtc(w) => w.remote_addr(),
        }
    }

    /// Largest datagram payload for one transmission (singularTransmissionMsgMaxLen).
    fn singular_transmission_max(&self) -> Option<u64> {
        match self {
            Transport::Udp(u) => Some(u.path_max_payload()),
            // Streams and message stacks: no single transmission to bound.
            _ => None,
        }
    }

    /// Client: whether the attempt's early data (`SocketOptions::early_data`)
    /// went out as 0-RTT. Server: whether the peer's data on this stream may be
    /// 0-RTT early data (a replay risk).
    fn early_data(&self) -> bool {
        match self {
            #[cfg(feature = "quic")]
            Transport::Quic(q) => q.early(),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.early(),
            _ => false,
        }
    }

    /// The directions this instance can carry: (send, receive). Only a QUIC
    /// unidirectional stream has one of them false.
    fn directions(&self) -> (bool, bool) {
        match self {
            #[cfg(feature = "quic")]
            Transport::Quic(q) => (q.can_send(), q.can_receive()),
            #[cfg(feature = "wt")]
            Transport::Wt(w) => (w.can_send(), w.can_receive()),
            _ => (true, true),
        }
    }

    /// Largest unreliable Message (datagram) this stack can send now, if it has datagrams.
    fn max_datagram(&self) -> Option<u64> {
        match self {
            #[cfg(feature = "quic")]
            Transport::Quic(q) => q.max_datagram(),
            #[cfg(feature = "wt")]
            Transport::Wt(w) => w.max_datagram(),
            _ => None,
        }
    }

    /// Clone on a multiplexed stack: a sibling stream on the same connection.
    /// `None` when the stack needs a new connection instead.
    /// `props` are the clone's properties (WebRTC: the new channel's options).
    #[cfg_attr(not(feature = "webrtc"), allow(unused_variables))]
    async fn open_sibling(
        &self,
        props: &crate::properties::TransportProperties,
    ) -> Option<io::Result<Transport>> {
        match self {
            #[cfg(feature = "quic")]
            Transport::Quic(q) => {
                Some(q.open_sibling().await.map(|q| Transport::Quic(Arc::new(q))))
            }
            #[cfg(feature = "wt")]
            Transport::Wt(w) => Some(w.open_sibling().await.map(|w| Transport::Wt(Arc::new(w)))),
            #[cfg(feature = "webrtc")]
            Transport::Webrtc(w) => Some(w.open_sibling(props).await),
            _ => None,
        }
    }

    /// CloseGroup/AbortGroup on a multiplexed stack: end the shared connection.
    #[cfg_attr(not(feature = "quic"), allow(unused_variables))]
    fn close_shared(&self, abort: bool) {
        match self {
            #[cfg(feature = "quic")]
            Transport::Quic(q) => q.close_group(abort),
            #[cfg(feature = "wt")]
            Transport::Wt(w) => w.close_group(abort),
            #[cfg(feature = "webrtc")]
            Transport::Webrtc(w) => w.close_peer(),
            _ => {}
        }
    }

    /// Reliability and order fixed per stack instance, if they are:
    /// (reliable, ordered) of a WebRTC data channel.
    fn delivery(&self) -> Option<(bool, bool)> {
        match self {
            #[cfg(feature = "webrtc")]
            Transport::Webrtc(w) => Some(w.delivery()),
            _ => None,
        }
    }

    /// A protocol-specific property (RFC 9622 §4.1) of this stack instance,
    /// by normalized name (e.g. `webrtc.ordered`).
    #[cfg_attr(not(feature = "webrtc"), allow(unused_variables))]
    fn protocol_property(&self, name: &str) -> Option<crate::properties::PropertyValue> {
        match self {
            #[cfg(feature = "webrtc")]
            Transport::Webrtc(w) => w.protocol_property(name),
            _ => None,
        }
    }
}

/// One racing attempt: open `stack` to `remote`.
pub(crate) async fn connect(
    stack: StackId,
    remote: &Target,
    opts: &SocketOptions,
) -> io::Result<Transport> {
    // The engine resolves names natively, so every leaf is an address.
    let Some(remote) = remote.addr() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{remote} is a name; native stacks connect to resolved addresses"),
        ));
    };
    // The other stacks' handshakes are boxed: inline, the largest of them
    // would make every attempt's future (TCP's too) kilobytes long, to be
    // copied as it is boxed; their handshakes cost far more than the box.
    match stack {
        StackId::Tcp => Ok(Transport::Tcp(TcpTransport::connect(remote, opts).await?)),
        StackId::Udp => Ok(Transport::Udp(Arc::new(UdpTransport::connect(
            remote, opts,
        )?))),
        #[cfg(feature = "tls")]
        StackId::Tls => Ok(Transport::Tls(
            Box::pin(TlsTransport::connect(remote, opts)).await?,
        )),
        #[cfg(feature = "ws")]
        StackId::Ws => Ok(Transport::Ws(
            Box::pin(WsTransport::connect(remote, opts, false)).await?,
        )),
        #[cfg(all(feature = "ws", feature = "tls"))]
        StackId::Wss => Ok(Transport::Ws(
            Box::pin(WsTransport::connect(remote, opts, true)).await?,
        )),
        #[cfg(feature = "wt")]
        StackId::Wt => Ok(Transport::Wt(Arc::new(
            Box::pin(WtTransport::connect(remote, opts)).await?,
        ))),
        #[cfg(feature = "quic")]
        StackId::Quic => {
            let tls = tls_config::client_config(
                &quic_security(opts),
                QUIC_DEFAULT_ALPN,
                opts.session_scope,
            )
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.message))?;
            // As TLS: the explicit override, else the RemoteEndpoint's host
            // name, else the IP.
            let name = opts
                .security
                .as_ref()
                .and_then(|s| s.server_name.clone())
                .or_else(|| opts.server_name.clone())
                .unwrap_or_else(|| remote.ip().to_string());
            let early = opts.early_data.as_deref();
            let (t, _) = Box::pin(QuicTransport::connect(remote, &name, tls, opts, early)).await?;
            Ok(Transport::Quic(Arc::new(t)))
        }
        other => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the {other} stack is not in this build"),
        )),
    }
}

/// How many reports of failed incoming connections may wait for the
/// application at once; past it they are counted, and the count is reported
/// once the waiting ones were taken (see [`Reports`]).
pub(crate) const REPORTS_WAITING_MAX: usize = 64;

/// The reports (failed incoming connections) waiting in a Listener's queue,
/// and those that came while [`REPORTS_WAITING_MAX`] were: a peer that fails
/// on purpose (refused, evicted, timed out) costs the Listener a count, not
/// a queued error, while the application takes nothing.
#[derive(Default)]
pub(crate) struct Reports {
    waiting: std::sync::atomic::AtomicUsize,
    /// How many came past the bound, and the last of them.
    past: std::sync::Mutex<(usize, Option<String>)>,
}

impl Reports {
    /// Whether a new report may be queued; if not, it is counted.
    fn admit(&self, e: &io::Error) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        if self
            .waiting
            .fetch_update(SeqCst, SeqCst, |n| {
                (n < REPORTS_WAITING_MAX).then_some(n + 1)
            })
            .is_ok()
        {
            return true;
        }
        let mut past = self.past.lock().unwrap();
        past.0 += 1;
        past.1 = Some(e.to_string());
        false
    }

    /// A queued report was taken (a listener over a channel of its own, a
    /// WebRTC one, counts none: never below 0).
    fn taken(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        let _ = self
            .waiting
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
    }

    /// Once every queued report was taken: those that came past the bound,
    /// as one report.
    fn summary(&self) -> Option<io::Error> {
        if self.waiting.load(std::sync::atomic::Ordering::SeqCst) != 0 {
            return None;
        }
        let (n, last) = std::mem::take(&mut *self.past.lock().unwrap());
        (n > 0).then(|| {
            io::Error::other(format!(
                "{n} more incoming connections failed while {REPORTS_WAITING_MAX} reports waited for the application to take them (the last: {})",
                last.unwrap_or_default()
            ))
        })
    }
}

/// Where a Listener's stacks deliver incoming connections, the room for
/// more, and the Listener's other bounds.
///
/// The room: how many incoming connections a Listener keeps pending at once
/// (`ListenerLimits::pending_incoming`): being accepted or handshaking in
/// the stack (TCP, TLS, WebSocket; a QUIC or WebTransport handshake), or
/// waiting for the Listener to take them. Past it the Listener stops
/// accepting: TCP peers wait in the kernel's backlog (and past that their
/// SYNs are dropped), QUIC peers in quinn's queue, and datagrams from new
/// UDP sources are refused (reported).
#[derive(Clone)]
pub(crate) struct IncomingTx {
    tx: futures::channel::mpsc::UnboundedSender<io::Result<Incoming>>,
    reports: std::sync::Arc<Reports>,
    room: std::sync::Arc<tokio::sync::Semaphore>,
    limits: std::sync::Arc<crate::listener::ListenerLimits>,
    /// Set while the Listener's connection limit is 0: peers are refused
    /// before any handshake.
    refusing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl IncomingTx {
    /// Deliveries to `tx`, within `limits` (room for its `pending_incoming`
    /// pending connections).
    pub(crate) fn new(
        tx: futures::channel::mpsc::UnboundedSender<io::Result<Incoming>>,
        limits: crate::listener::ListenerLimits,
    ) -> Self {
        IncomingTx {
            tx,
            reports: Default::default(),
            room: std::sync::Arc::new(tokio::sync::Semaphore::new(limits.pending_incoming())),
            limits: std::sync::Arc::new(limits),
            refusing: Default::default(),
        }
    }

    /// The Listener's bounds.
    pub(crate) fn limits(&self) -> &crate::listener::ListenerLimits {
        &self.limits
    }

    /// The Listener takes no more connections (its limit is 0): refuse a
    /// new peer at once, before any handshake.
    pub(crate) fn refusing(&self) -> bool {
        self.refusing.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Deliver a connection (or an error that names the peer: past
    /// [`REPORTS_WAITING_MAX`] waiting, counted and reported later as one);
    /// `Err` once the Listener is gone (the item is dropped).
    pub(crate) fn unbounded_send(&self, item: io::Result<Incoming>) -> Result<(), ()> {
        if let Err(e) = &item {
            if self.tx.is_closed() {
                return Err(());
            }
            if !self.reports.admit(e) {
                return Ok(());
            }
        }
        self.tx.unbounded_send(item).map_err(drop)
    }

    /// The Listener is gone or stopped: nothing can be delivered any more.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Wait for room for one more pending connection: held by it until the
    /// Listener takes it, or until it fails.
    pub(crate) async fn room(&self) -> super::Room {
        self.room.clone().acquire_owned().await.ok()
    }

    /// Room for one more pending connection now, if there is.
    pub(crate) fn try_room(&self) -> Option<super::Room> {
        self.room.clone().try_acquire_owned().ok().map(Some)
    }
}

pub(crate) struct BackendListener {
    rx: futures::channel::mpsc::UnboundedReceiver<io::Result<Incoming>>,
    reports: std::sync::Arc<Reports>,
    local: SocketAddr,
    stop: Vec<tokio::task::AbortHandle>,
    refusing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl BackendListener {
    /// Listen on `addr` with every stack in `stacks`, on the same port number
    /// (TCP and UDP ports). Stacks sharing a transport port share its socket:
    /// TLS, TCP, ws and wss on the TCP port, QUIC, WebTransport and UDP on the UDP port, told apart
    /// per peer (`stream_port.rs`, `datagram_port.rs`). With port 0 the first socket picks the number;
    /// if it is taken for the other transport, all are retried on a new number.
    pub(crate) async fn bind(
        stacks: &[StackId],
        addr: SocketAddr,
        opts: &SocketOptions,
    ) -> io::Result<BackendListener> {
        let mut tries = 0;
        loop {
            match Self::bind_once(stacks, addr, opts) {
                Err(e)
                    if addr.port() == 0 && e.kind() == io::ErrorKind::AddrInUse && tries < 16 =>
                {
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    fn bind_once(
        stacks: &[StackId],
        addr: SocketAddr,
        opts: &SocketOptions,
    ) -> io::Result<BackendListener> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let tx = IncomingTx::new(tx, opts.limits.clone());
        let refusing = tx.refusing.clone();
        let mut listener = BackendListener {
            rx,
            reports: tx.reports.clone(),
            local: addr,
            stop: Vec::new(),
            refusing,
        };
        let has = |s: StackId| stacks.contains(&s);
        let mut stream_port = false;
        let mut datagram_port = false;
        // In rank order: the best-ranked stack's port is bound first.
        for stack in stacks {
            let a = SocketAddr::new(addr.ip(), listener.local.port());
            let (bound, handle) = match stack {
                StackId::Tcp | StackId::Tls | StackId::Ws | StackId::Wss if !stream_port => {
                    stream_port = true;
                    listen_stream_port(stacks, a, opts, &tx)?
                }
                StackId::Udp | StackId::Quic | StackId::Wt if !datagram_port => {
                    datagram_port = true;
                    listen_datagram_port(stacks, a, opts, &tx)?
                }
                StackId::Tcp
                | StackId::Tls
                | StackId::Ws
                | StackId::Wss
                | StackId::Udp
                | StackId::Quic
                | StackId::Wt => continue,
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!("the {other} stack cannot listen in this build"),
                    ))
                }
            };
            listener.local = bound;
            // A UDP-only Listener's task is not aborted at stop: the flows it
            // handed out go on after it (it ends once they all ended).
            let udp_only =
                matches!(stack, StackId::Udp) && !has(StackId::Quic) && !has(StackId::Wt);
            if !udp_only {
                listener.stop.push(handle);
            }
        }
        Ok(listener)
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Set while the Listener takes no more connections (limit 0): its
    /// stacks then refuse new peers before any handshake.
    pub(crate) fn refusal(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.refusing.clone()
    }

    /// The next accepted connection; `None` once stopped.
    pub(crate) async fn accept(&mut self) -> Option<io::Result<Incoming>> {
        use futures::StreamExt;
        if let Some(e) = self.reports.summary() {
            return Some(Err(e));
        }
        let item = self.rx.next().await;
        if let Some(Err(_)) = &item {
            self.reports.taken();
        }
        item
    }

    /// Stop listening: close the listening sockets.
    pub(crate) fn stop(&mut self) {
        for h in self.stop.drain(..) {
            h.abort();
        }
        self.rx.close();
    }
}

impl BackendListener {
    /// A listener over a queue of incoming stack instances (the data
    /// channels a WebRTC peer opens).
    #[cfg_attr(not(feature = "webrtc"), allow(dead_code))]
    pub(crate) fn from_channel(
        rx: futures::channel::mpsc::UnboundedReceiver<io::Result<Incoming>>,
        local: SocketAddr,
    ) -> BackendListener {
        BackendListener {
            rx,
            reports: Default::default(),
            local,
            stop: Vec::new(),
            refusing: Default::default(),
        }
    }
}

impl Drop for BackendListener {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Listener's TCP port for the stream stacks among `stacks` (TCP, TLS,
/// ws, wss): plain TCP alone, or every one of them on one socket, told
/// apart by their first bytes (`stream_port.rs`).
fn listen_stream_port(
    stacks: &[StackId],
    addr: SocketAddr,
    opts: &SocketOptions,
    tx: &IncomingTx,
) -> io::Result<(SocketAddr, tokio::task::AbortHandle)> {
    let has = |s: StackId| stacks.contains(&s);
    if !(has(StackId::Tls) || has(StackId::Ws) || has(StackId::Wss)) {
        return tcp::listen(addr, opts, tx.clone());
    }
    // The registry holds only stacks compiled in, so a build without TLS
    // and WebSocket has returned above.
    #[cfg(any(feature = "tls", feature = "ws"))]
    {
        let timeout = opts.limits.handshake_timeout();
        let port = stream_port::StreamPort {
            #[cfg(feature = "tls")]
            acceptor: if has(StackId::Tls) || has(StackId::Wss) {
                Some(tls::acceptor(opts)?)
            } else {
                None
            },
            tls: has(StackId::Tls),
            plain: has(StackId::Tcp),
            #[cfg(feature = "ws")]
            ws: has(StackId::Ws).then(|| ws::WsServer {
                path: ws::path(opts, false),
                timeout,
            }),
            #[cfg(feature = "ws")]
            wss: has(StackId::Wss).then(|| ws::WsServer {
                path: ws::path(opts, true),
                timeout,
            }),
            timeout,
        };
        stream_port::listen_stream_port(addr, opts, port, tx.clone())
    }
    #[cfg(not(any(feature = "tls", feature = "ws")))]
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the tls and ws stacks are not in this build (postsocket's cargo features `tls`, `ws`)",
    ))
}

/// A Listener's UDP port for the datagram stacks among `stacks` (UDP,
/// QUIC, WebTransport): plain UDP alone, QUIC (and WebTransport) alone, or
/// both on one socket (`datagram_port.rs`).
fn listen_datagram_port(
    stacks: &[StackId],
    addr: SocketAddr,
    opts: &SocketOptions,
    tx: &IncomingTx,
) -> io::Result<(SocketAddr, tokio::task::AbortHandle)> {
    let has = |s: StackId| stacks.contains(&s);
    if !(has(StackId::Quic) || has(StackId::Wt)) {
        return udp::listen(addr, opts, tx.clone());
    }
    // As for the TCP port: QUIC and WebTransport are here only when built.
    #[cfg(feature = "quic")]
    {
        let tls = datagram_port_tls(opts, has(StackId::Quic), has(StackId::Wt))?;
        #[cfg(feature = "wt")]
        let wt = has(StackId::Wt).then(|| wt::WtServer {
            path: wt::path(opts),
            timeout: opts.limits.handshake_timeout(),
        });
        #[cfg(not(feature = "wt"))]
        let wt = None;
        if has(StackId::Udp) {
            datagram_port::listen_datagram_port(addr, tls, opts, wt, tx.clone())
        } else {
            quic::listen(addr, tls, opts, wt, tx.clone())
        }
    }
    #[cfg(not(feature = "quic"))]
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the quic and wt stacks are not in this build (postsocket's cargo features `quic`, `wt`)",
    ))
}

/// HTTP/3's ALPN, which WebTransport runs over (web-transport-quinn's `ALPN`).
#[cfg(feature = "quic")]
const H3_ALPN: &str = "h3";

#[cfg(feature = "quic")]
/// The TLS server configuration of a Listener's QUIC endpoint: ALPN the
/// QUIC stack's (the application's, else `taps`) and/or `h3` for WebTransport
/// (the negotiated ALPN then tells them apart).
fn datagram_port_tls(
    opts: &SocketOptions,
    quic: bool,
    wt: bool,
) -> io::Result<std::sync::Arc<rustls::ServerConfig>> {
    let tls = tls_config::server_config(&quic_security(opts), QUIC_DEFAULT_ALPN)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.message))?;
    if !wt {
        return Ok(tls);
    }
    let mut cfg = (*tls).clone();
    let h3 = H3_ALPN.as_bytes().to_vec();
    if !quic {
        cfg.alpn_protocols.clear();
    }
    if !cfg.alpn_protocols.contains(&h3) {
        cfg.alpn_protocols.push(h3);
    }
    Ok(std::sync::Arc::new(cfg))
}

/// getaddrinfo for one family, off the async threads.
pub(crate) fn system_resolve(
    host: String,
    family: Family,
) -> BoxFuture<'static, Result<Vec<IpAddr>, String>> {
    Box::pin(async move {
        let h = host.clone();
        let res = tokio::task::spawn_blocking(move || {
            let hints = dns_lookup::AddrInfoHints {
                address: match family {
                    Family::V6 => socket2::Domain::IPV6.into(),
                    Family::V4 => socket2::Domain::IPV4.into(),
                },
                socktype: socket2::Type::STREAM.into(),
                ..Default::default()
            };
            dns_lookup::getaddrinfo(Some(&h), None, Some(hints))
                .map_err(|e| format!("{e:?}"))
                .map(|iter| {
                    let mut out: Vec<IpAddr> = Vec::new();
                    for a in iter.flatten() {
                        if !out.contains(&a.sockaddr.ip()) {
                            out.push(a.sockaddr.ip());
                        }
                    }
                    out
                })
        })
        .await
        .map_err(|e| format!("resolver task failed: {e}"))?;
        match res {
            Ok(v) if v.is_empty() => Err(format!("no {} address for {host}", fam(family))),
            Ok(v) => Ok(v),
            Err(e) => Err(format!("no {} address for {host}: {e}", fam(family))),
        }
    })
}

fn fam(f: Family) -> &'static str {
    match f {
        Family::V6 => "IPv6",
        Family::V4 => "IPv4",
    }
}

/// Apply keep-alive and user timeout to an open socket.
pub(crate) fn apply_live_options(t: &Transport, opts: &SocketOptions) {
    let apply = |s: socket2::SockRef<'_>| {
        if let Some(idle) = opts.keep_alive {
            let _ = s.set_keepalive(true);
            if let Some(idle) = idle {
                let _ = s.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle));
            }
        }
        let _ = sockopt::set_tcp_user_timeout(&s, opts.user_timeout);
    };
    match t {
        Transport::Tcp(t) => apply(socket2::SockRef::from(t.stream())),
        #[cfg(feature = "tls")]
        Transport::Tls(t) => t.with_socket(apply),
        #[cfg(feature = "ws")]
        Transport::Ws(w) => apply(w.socket()),
        _ => {}
    }
}

/// rustls configurations for tests below the Connection layer: a server
/// with a fresh self-signed certificate for `localhost`, and a client that
/// trusts only it; TLS 1.3, ring, ALPN `alpn` on both when given.
#[cfg(all(test, any(feature = "tls", feature = "quic")))]
pub(crate) fn test_tls_configs(
    alpn: Option<&[u8]>,
) -> (
    std::sync::Arc<rustls::ServerConfig>,
    std::sync::Arc<rustls::ClientConfig>,
) {
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key.into())
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if let Some(alpn) = alpn {
        server.alpn_protocols = vec![alpn.to_vec()];
        client.alpn_protocols = vec![alpn.to_vec()];
    }
    (Arc::new(server), Arc::new(client))
}
