//! # postsocket
//!
//! The IETF Transport Services API (TAPS, RFC 9622) in Rust, for native
//! programs and the browser. An application says what it needs from the
//! transport ([`TransportProperties`]) and whom it talks to
//! ([`RemoteEndpoint`]); a [`Preconnection`] gathers candidate paths,
//! protocols and addresses, races them Happy-Eyeballs style (the sans-IO
//! engine in [`racing`]), and hands back one [`Connection`] that sends and
//! receives Messages. Every establishment records a [`RacingTrace`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), postsocket::Error> {
//! use postsocket::{framer::DelimiterFramer, Preconnection, RemoteEndpoint,
//!     SecurityParameters, TransportProperties};
//! let remote = RemoteEndpoint::new().with_host_name("localhost")?.with_port(7)?;
//! let props = TransportProperties::new().with("preserveOrder", "require")?;
//! let pre = Preconnection::new(vec![], vec![remote], props, SecurityParameters::disabled())
//!     .with_framer(DelimiterFramer::line());
//! let conn = pre.initiate().await?;
//! conn.send_message("hello").await.expect("sent");
//! let reply = conn.receive().await.expect("received");
//! println!("{}", String::from_utf8_lossy(reply.data()));
//! conn.close().await?;
//! # Ok(()) }
//! ```
//!
//! ## One builder style
//! Every configurable type builds the same way: `with_*` (or `with(name,
//! value)` for properties by RFC name) takes the value and returns it, to
//! chain; it returns a `Result` where a value can be refused (endpoints,
//! properties and security parameters by name). `set_*` (or `set`,
//! `add_*`) changes a value in place. [`ListenerLimits`] and the
//! endpoints, plain values, have only `with_*`.
#![warn(missing_docs)]

#[cfg(all(target_arch = "wasm32", not(target_os = "unknown")))]
compile_error!(
    "postsocket supports wasm32 only in the browser (wasm32-unknown-unknown); wasm32-wasi is not the browser"
);

mod attempt;
mod backend;
pub mod capability;
pub mod connection;
pub mod context;
pub mod endpoint;
pub mod error;
mod establish;
pub mod event;
pub mod framer;
#[cfg(all(feature = "fuzzing", native))]
#[doc(hidden)]
pub mod fuzzing;
pub mod listener;
pub mod message;
pub mod preconnection;
pub mod properties;
pub mod racing;
pub mod rendezvous;
pub mod resolver;
mod runtime;
pub mod security;
pub mod trace;
mod webtransport_budget;

/// Message data to send: `Vec<u8>` converts without a copy, and a `Bytes`
/// shared with other Messages goes out without one (re-exported from the
/// `bytes` crate).
pub use bytes::Bytes;
pub use capability::{Capabilities, StackId};
pub use connection::{
    path_changed, watch_platform_paths, Connection, ReceiveError, SendFailure, SendFuture, Sent,
    CLOSE_LINGER, CLOSE_TIMEOUT, DATAGRAM_QUEUE_MAX, DATAGRAM_QUEUE_MAX_BYTES, PATH_SETTLE,
    RECV_MSG_MAX_LEN,
};
pub use context::TransportContext;
pub use endpoint::{LocalEndpoint, RemoteEndpoint};
pub use error::{CandidateFailure, Error, ErrorReason};
pub use event::{ConnectionEvent, ListenerEvent};
pub use listener::{Listener, ListenerLimits};
pub use message::{MessageContext, ReceiveEvent};
pub use preconnection::{Preconnection, DEFAULT_ESTABLISHMENT_TIMEOUT};
pub use properties::{
    ConnState, ConnectionProperties, MessageProperties, Preference, PropertyValue,
    SelectionProperty, TransportProperties,
};
pub use rendezvous::{
    DataChannelOptions, HttpSignaling, RendezvousDone, Signaling, SignalingFuture,
    SignalingMessage, SignalingRole,
};
pub use resolver::{Resolver, StaticResolver, SystemResolver};
pub use security::{Identity, SecurityParameters, TrustContext};
pub use trace::{Branch, RacingTrace, TraceEvent, TraceEventKind};
pub use webtransport_budget::{
    set_webtransport_budget, webtransport_budget_spent, WEBTRANSPORT_BUDGET,
};

/// Not part of the API, and exempt from semver: what `postsocket-web` (the
/// npm package's bindings, in this repository) builds on in the browser.
/// Received Message data as the browser's own `Uint8Array` without a copy
/// out of wasm memory; the staging area, where JS copies a Message into
/// wasm memory itself; the hook where the browser stacks' event handlers
/// end.
#[cfg(web)]
#[doc(hidden)]
pub mod __web_bindings {
    pub use crate::backend::{
        keep_browser_bytes, staging_area, take_browser_bytes, take_staged, STAGING_LEN,
    };
    pub use crate::runtime::{inside_browser_event, set_browser_event_end};
}
