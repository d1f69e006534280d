//! Browser stacks: WebTransport (`wt`, `webtransport.rs`) and WebSocket
//! (`ws`, `wss`, `websocket.rs`); WebRTC data channels come next.
//!
//! There is no DNS API in a browser. Until host names are handed to the
//! browser stacks as names, a RemoteEndpoint in the browser must be an IP
//! address; a host name fails with ResolutionFailed (see [`system_resolve`]).

mod websocket;
mod webtransport;

use super::{Incoming, Recv, SocketOptions};
use crate::capability::{Capabilities, StackId};
use crate::racing::Family;
use crate::runtime::BoxFuture;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};

pub(crate) use websocket::WsTransport;
pub(crate) use webtransport::WtTransport;

/// The stacks this target has, in default preference order: secure first,
/// and WebTransport (over QUIC) before WebSocket, as QUIC before TLS natively.
pub(crate) fn registry() -> &'static [Capabilities] {
    &[Capabilities::WT, Capabilities::WSS, Capabilities::WS]
}

/// An established stack instance. Not `Send`: it holds browser objects,
/// which live on the page's thread.
#[derive(Clone, Debug)]
pub(crate) enum Transport {
    /// A browser WebSocket (`ws` or `wss`).
    Ws(WsTransport),
    /// One stream of a browser WebTransport session.
    Wt(WtTransport),
}

impl Transport {
    /// Read one message (WebSocket), or stream bytes or a datagram (WebTransport).
    pub(crate) async fn read(&self, buf: &mut Vec<u8>) -> io::Result<Recv> {
        match self {
            Transport::Ws(w) => w.read().await,
            Transport::Wt(w) => w.read(buf).await,
        }
    }
    /// Write stream bytes (WebTransport); WebSocket has no byte stream.
    pub(crate) async fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Ws(_) => Err(io::Error::other(
                "a WebSocket carries Messages, not a byte stream",
            )),
            Transport::Wt(w) => w.write_vectored(bufs).await,
        }
    }
    /// Send one message (WebSocket) or datagram (WebTransport).
    pub(crate) async fn send_datagram(&self, data: &[u8]) -> io::Result<()> {
        match self {
            Transport::Ws(w) => w.send(data).await,
            Transport::Wt(w) => w.send_datagram(data).await,
        }
    }
    /// Close (WebSocket: close frame with code 1000; WebTransport: FIN).
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Transport::Ws(w) => w.shutdown_write(),
            Transport::Wt(w) => w.shutdown_write(),
        }
    }
    /// Abort. A page cannot reset a connection: WebSocket closes with 1000
    /// and ends pending reads at once; a WebTransport stream is reset.
    pub(crate) fn abort(&self) {
        match self {
            Transport::Ws(w) => w.abort(),
            Transport::Wt(w) => w.abort(),
        }
    }
    /// A page cannot set DSCP.
    pub(crate) fn set_dscp(&self, _dscp: u8) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a browser does not let a page set DSCP",
        ))
    }
    /// A page does not learn its local address.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        None
    }
    pub(crate) fn remote_addr(&self) -> Option<SocketAddr> {
        match self {
            Transport::Ws(w) => Some(w.remote()),
            Transport::Wt(w) => Some(w.remote()),
        }
    }
    pub(crate) fn singular_transmission_max(&self) -> Option<u64> {
        None
    }
    pub(crate) fn max_datagram(&self) -> Option<u64> {
        match self {
            Transport::Ws(_) => None,
            Transport::Wt(w) => w.max_datagram(),
        }
    }
    pub(crate) fn early_data(&self) -> bool {
        false
    }
    pub(crate) fn directions(&self) -> (bool, bool) {
        match self {
            Transport::Ws(_) => (true, true),
            Transport::Wt(w) => (w.can_send(), w.can_receive()),
        }
    }
    /// WebSocket Clone is a new socket (establish reconnects); WebTransport
    /// Clone is a new stream on the same session.
    pub(crate) async fn open_sibling(&self) -> Option<io::Result<Transport>> {
        match self {
            Transport::Ws(_) => None,
            Transport::Wt(w) => Some(w.open_sibling().await.map(Transport::Wt)),
        }
    }
    /// CloseGroup/AbortGroup: close a WebTransport session.
    pub(crate) fn close_shared(&self, _abort: bool) {
        if let Transport::Wt(w) = self {
            w.close_session();
        }
    }
}

/// One racing attempt: open `stack` to `remote`.
pub(crate) async fn connect(
    stack: StackId,
    remote: SocketAddr,
    opts: &SocketOptions,
) -> io::Result<Transport> {
    match stack {
        StackId::Ws | StackId::Wss => Ok(Transport::Ws(
            WsTransport::connect(stack, remote, opts).await?,
        )),
        StackId::Wt => Ok(Transport::Wt(WtTransport::connect(remote, opts).await?)),
        other => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the {other} stack is not available in the browser"),
        )),
    }
}

/// Browsers cannot listen for TCP or UDP.
pub(crate) struct BackendListener {
    local: SocketAddr,
}

impl BackendListener {
    pub(crate) async fn bind(
        _stacks: &[StackId],
        addr: SocketAddr,
        _opts: &SocketOptions,
    ) -> io::Result<BackendListener> {
        let _ = BackendListener { local: addr };
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a browser cannot listen; use Rendezvous over a signaling channel",
        ))
    }
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }
    pub(crate) async fn accept(&mut self) -> Option<io::Result<Incoming>> {
        None
    }
    pub(crate) fn stop(&mut self) {}
}

pub(crate) fn system_resolve(
    host: String,
    _family: Family,
) -> BoxFuture<'static, Result<Vec<IpAddr>, String>> {
    Box::pin(async move {
        Err(format!(
            "the browser has no DNS API, and handing {host} to the browser stacks as a name \
             is not implemented yet; use an IP address in the browser for now"
        ))
    })
}

pub(crate) fn apply_live_options(_t: &Transport, _opts: &SocketOptions) {}
