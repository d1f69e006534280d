//! Backends: the protocol stacks of each target, behind one internal shape.
//! This is the only place (with `runtime`) that selects code by target.
//!
//! Each target module provides: `registry()` (the capability rows of the
//! stacks it has), `connect()` (one racing attempt), `Transport` (an
//! established stack: read, write, shut down, abort), `BackendListener`, and
//! `system_resolve()`.

cfg_if::cfg_if! {
    if #[cfg(web)] {
        mod web;
        pub(crate) use web::*;
        pub use web::{
            keep_browser_bytes, set_webtransport_budget, staging_area, take_browser_bytes, take_staged,
            webtransport_budget_spent, STAGING_LEN, WEBTRANSPORT_BUDGET,
        };
    } else {
        mod native;
        pub(crate) use native::*;
    }
}

use crate::capability::Capabilities;
use std::net::SocketAddr;

/// Whether the stacks take host names and resolve them themselves (the
/// browser's, which has no DNS API for a page), so the engine races a name
/// as one leaf; natively the engine resolves, AAAA and A apart.
#[cfg(web)]
pub(crate) const STACKS_RESOLVE_NAMES: bool = true;
/// See the browser's definition.
#[cfg(not(web))]
pub(crate) const STACKS_RESOLVE_NAMES: bool = false;

/// The first reason a message transport ended (closed, aborted, failed):
/// every later read and send returns the same error.
#[derive(Debug, Default)]
#[cfg_attr(all(native, not(feature = "webrtc")), allow(dead_code))] // natively WebRTC's
pub(crate) struct Ended(std::sync::Mutex<Option<(std::io::ErrorKind, String)>>);

#[cfg_attr(all(native, not(feature = "webrtc")), allow(dead_code))]
impl Ended {
    /// The error, once ended.
    pub(crate) fn get(&self) -> Option<std::io::Error> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(k, m)| std::io::Error::new(*k, m.clone()))
    }

    /// End with this reason, unless already ended; the error in force.
    pub(crate) fn set(&self, kind: std::io::ErrorKind, msg: String) -> std::io::Error {
        let mut ended = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (k, m) = ended.get_or_insert((kind, msg));
        std::io::Error::new(*k, m.clone())
    }
}

/// What a read returned.
#[derive(Debug)]
#[cfg_attr(web, allow(dead_code))] // browser stacks come with the browser issue
pub(crate) enum Recv {
    /// Bytes were appended to the buffer (byte streams).
    Bytes,
    /// One whole datagram (Bytes: the stacks that have their own buffer,
    /// quinn's, tungstenite's, the browser's, hand it on without a copy).
    Datagram(bytes::Bytes),
    /// The peer finished sending.
    Eof,
}

/// A connection a Listener accepted.
pub(crate) struct Incoming {
    pub(crate) transport: Transport,
    pub(crate) caps: &'static Capabilities,
    pub(crate) remote: SocketAddr,
    /// Streams of one multiplexed connection (QUIC) share a group key.
    pub(crate) group: Option<usize>,
    /// Its place among the Listener's pending connections, given back when
    /// the Listener hands it over (or drops it).
    pub(crate) room: Room,
}

/// A place among a Listener's pending incoming connections (natively a
/// semaphore permit; nothing in the browser).
#[cfg(native)]
pub(crate) type Room = Option<tokio::sync::OwnedSemaphorePermit>;
/// A place among a Listener's pending incoming connections (natively a
/// semaphore permit; nothing in the browser).
#[cfg(web)]
pub(crate) type Room = ();

/// Socket options for one attempt or listener, derived from the properties.
#[derive(Debug, Clone, Default)]
#[cfg_attr(web, allow(dead_code))]
pub(crate) struct SocketOptions {
    /// Local address to bind (port 0 = ephemeral).
    pub(crate) local: Option<SocketAddr>,
    /// Interface to bind to (SO_BINDTODEVICE).
    pub(crate) interface: Option<String>,
    /// TCP keep-alive: `Some(None)` on with system timers, `Some(Some(t))` with idle time t.
    pub(crate) keep_alive: Option<Option<std::time::Duration>>,
    /// TCP_USER_TIMEOUT.
    pub(crate) user_timeout: Option<std::time::Duration>,
    /// DSCP code point (connCapacityProfile).
    pub(crate) dscp: u8,
    /// The SecurityParameters, for stacks with a security protocol.
    pub(crate) security: Option<crate::security::SecurityParameters>,
    /// The name a secure stack verifies the server for (and sends as SNI):
    /// the host name of the RemoteEndpoint the attempt's address came from.
    pub(crate) server_name: Option<String>,
    /// The framed first Message of InitiateWithSend, when it is safely
    /// replayable: stacks with 0-RTT send it early (RFC 9623 §5.3).
    pub(crate) early_data: Option<std::sync::Arc<[u8]>>,
    /// `direction` (RFC 9622 §6.2.16): QUIC opens a unidirectional stream for it.
    #[cfg_attr(all(native, not(feature = "quic")), allow(dead_code))]
    pub(crate) direction: crate::properties::Direction,
    /// Protocol-specific options (RFC 9622 §4.1), e.g. `ws.path`: the
    /// Preconnection's `TransportProperties::protocol_options`.
    #[cfg_attr(
        all(native, not(any(feature = "ws", feature = "wt"))),
        allow(dead_code)
    )]
    pub(crate) protocol_options: std::collections::BTreeMap<String, String>,
    /// Whose TLS session cache (tickets for resumption and 0-RTT, TLS and
    /// QUIC alike) and QUIC address-validation tokens the attempt uses.
    pub(crate) session_scope: SessionScope,
    /// A Listener's bounds, its handshake timeout already connTimeout when
    /// that is set (listening only).
    pub(crate) limits: crate::listener::ListenerLimits,
}

/// Whose TLS session cache and QUIC address-validation tokens (NEW_TOKEN)
/// an attempt uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(web, allow(dead_code))]
pub(crate) enum SessionScope {
    /// The process-wide cache (Listeners' own Clones, WebRTC's peers).
    #[default]
    Process,
    /// The cache of the TransportContext with this id: Preconnections that
    /// share a context share their sessions, and no others.
    Context(u64),
    /// isolateSession: no cache, no resumption (RFC 9622 §8.1.10).
    Isolated,
}
