//! Browser stacks (WebSocket, WebTransport, WebRTC) arrive with the browser
//! target issue. Until then the registry is empty, so selection in the
//! browser ends in a NoCandidates EstablishmentError that says so.

use super::{Incoming, Recv, SocketOptions};
use crate::capability::{Capabilities, StackId};
use crate::racing::Family;
use crate::runtime::BoxFuture;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};

/// The stacks this target has.
pub(crate) fn registry() -> &'static [Capabilities] {
    &[]
}

/// An established stack instance. No browser stack exists yet, so none is
/// ever constructed; the methods report that plainly rather than panic.
#[derive(Clone, Debug)]
pub(crate) struct Transport {
    _none: (),
}

fn none() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "no browser stack in this build")
}

impl Transport {
    pub(crate) async fn read(&self, _buf: &mut Vec<u8>) -> io::Result<Recv> {
        Err(none())
    }
    pub(crate) async fn write_vectored(&self, _bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Err(none())
    }
    pub(crate) async fn send_datagram(&self, _data: &[u8]) -> io::Result<()> {
        Err(none())
    }
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        Err(none())
    }
    pub(crate) fn abort(&self) {}
    pub(crate) fn set_dscp(&self, _dscp: u8) -> io::Result<()> {
        Err(none())
    }
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        None
    }
    pub(crate) fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }
    pub(crate) fn singular_transmission_max(&self) -> Option<u64> {
        None
    }
    pub(crate) fn max_datagram(&self) -> Option<u64> {
        None
    }
    pub(crate) fn early_data(&self) -> bool {
        false
    }
    pub(crate) fn directions(&self) -> (bool, bool) {
        (true, true)
    }
    pub(crate) async fn open_sibling(&self) -> Option<io::Result<Transport>> {
        None
    }
    pub(crate) fn close_shared(&self, _abort: bool) {}
}

pub(crate) async fn connect(
    stack: StackId,
    _remote: SocketAddr,
    _opts: &SocketOptions,
) -> io::Result<Transport> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("the {stack} stack is not available in the browser"),
    ))
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
            "the browser has no DNS API; {host} is passed to the browser stacks as a name"
        ))
    })
}

pub(crate) fn apply_live_options(_t: &Transport, _opts: &SocketOptions) {}
