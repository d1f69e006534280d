//! Helpers shared by the postsocket example programs (`tapscat`, `racing-demo`,
//! `readme-example`): loopback fault injection for racing demonstrations.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A TCP port that silently drops SYNs, like a blackholed path, built on
/// loopback without root: a listener with `listen(0)` whose accept queue is
/// filled by connections nobody accepts. Keep the value alive as long as the
/// blackhole is needed.
pub struct TcpBlackhole {
    addr: SocketAddr,
    _listener: Socket,
    _fillers: Vec<TcpStream>,
}

impl TcpBlackhole {
    /// Make a blackhole on `ip:0` (an ephemeral port). Verifies that a further
    /// connect really hangs (probing with a `probe` timeout) before returning.
    pub fn new(bind: SocketAddr, probe: Duration) -> io::Result<Self> {
        let domain = Domain::for_address(bind);
        let listener = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        if bind.is_ipv6() {
            listener.set_only_v6(true)?;
        }
        listener.bind(&bind.into())?;
        listener.listen(0)?;
        let addr = listener
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("listener has no socket address"))?;
        let mut fillers = Vec::new();
        // Linux admits backlog+1 connections into the accept queue; the next SYN is dropped.
        for _ in 0..4 {
            match TcpStream::connect_timeout(&addr, probe) {
                Ok(s) => fillers.push(s),
                Err(e)
                    if e.kind() == io::ErrorKind::TimedOut
                        || e.kind() == io::ErrorKind::WouldBlock =>
                {
                    return Ok(TcpBlackhole {
                        addr,
                        _listener: listener,
                        _fillers: fillers,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "could not fill the accept queue of {addr}: connects keep succeeding"
        )))
    }

    /// The blackholed address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Whether IPv6 loopback (`::1`) can be bound on this machine; the error says why not.
pub fn ipv6_loopback_available() -> Result<(), io::Error> {
    std::net::TcpListener::bind("[::1]:0").map(|_| ())
}

pub mod demo;

pub mod http_server;
pub mod signaling;
