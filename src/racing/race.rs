//! The candidate tree and the racing state machine. (Specification stub: see the helper prompt.)
use super::{NodeId, RacingConfig, Time};
use crate::capability::StackId;
use crate::error::{Error, ErrorReason};
use crate::trace::RacingTrace;
use std::net::{IpAddr, SocketAddr};

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv6 (AAAA).
    V6,
    /// IPv4 (A).
    V4,
}

/// A network path to race on (top level of the tree).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PathSpec {
    /// Interface name; `None` is the system's default path (shown as `default`).
    pub interface: Option<String>,
}

/// A remote endpoint, as gathered from the RemoteEndpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteSpec {
    /// An IP address and port: a leaf right away.
    Address(SocketAddr),
    /// A host name that must be resolved, AAAA and A separately.
    Host {
        /// The name.
        host: String,
        /// The port.
        port: u16,
    },
}

/// Identifies one DNS query the driver runs for the engine.
pub type QueryId = u32;

/// What the driver tells the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A query finished.
    Resolved {
        /// The query (from [`Action::Resolve`]).
        query: QueryId,
        /// The addresses, or why resolution failed.
        result: Result<Vec<IpAddr>, String>,
    },
    /// A leaf's attempt is established (for TLS: after the handshake).
    AttemptSucceeded {
        /// The leaf.
        node: NodeId,
    },
    /// A leaf's attempt failed.
    AttemptFailed {
        /// The leaf.
        node: NodeId,
        /// Why.
        reason: ErrorReason,
        /// What happened.
        message: String,
    },
}

/// What the engine asks the driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Resolve `host` for one family and answer with [`Input::Resolved`].
    Resolve {
        /// Answer with this id.
        query: QueryId,
        /// The path to resolve on.
        path: PathSpec,
        /// The name.
        host: String,
        /// AAAA or A.
        family: Family,
    },
    /// Start a connection attempt and answer with AttemptSucceeded/AttemptFailed.
    StartAttempt {
        /// The leaf.
        node: NodeId,
        /// The path.
        path: PathSpec,
        /// The stack.
        stack: StackId,
        /// The remote address.
        remote: SocketAddr,
    },
    /// Stop this attempt and close whatever it opened. No input is expected for it afterwards.
    CancelAttempt {
        /// The leaf.
        node: NodeId,
    },
    /// This leaf won; hand its connection to the application.
    Won {
        /// The leaf.
        node: NodeId,
    },
    /// The establishment failed: every candidate's reason is in the error.
    Failed(Error),
}

/// The racing state machine for one establishment.
pub struct Racer {
    _private: (),
}

impl Racer {
    /// Build the tree (paths → protocols → remote endpoints) and start racing at `now`.
    pub fn new(
        _config: RacingConfig,
        _paths: Vec<PathSpec>,
        _stacks: Vec<StackId>,
        _remotes: Vec<RemoteSpec>,
        _now: Time,
    ) -> Racer {
        unimplemented!("racing engine")
    }
    /// Feed an outcome.
    pub fn handle_input(&mut self, _now: Time, _input: Input) {}
    /// Feed the clock when the deadline from [`poll_timeout`](Self::poll_timeout) passed.
    pub fn handle_timeout(&mut self, _now: Time) {}
    /// The next absolute deadline, if any timer runs.
    pub fn poll_timeout(&self) -> Option<Time> {
        None
    }
    /// The next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        None
    }
    /// The trace so far.
    pub fn trace(&self) -> &RacingTrace {
        unimplemented!()
    }
    /// True once Won or Failed has been emitted.
    pub fn is_finished(&self) -> bool {
        false
    }
}
