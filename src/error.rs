//! Errors, with the reasons of RFC 9623 Appendix B.
//!
//! Every error says which reason applies and what exactly was wrong. An
//! establishment error also carries each candidate's own failure, so "all
//! candidates failed" says why each one did.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an action failed (RFC 9623 Appendix B, informative list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorReason {
    /// The properties or parameters contradict each other or name something unknown.
    InvalidConfiguration,
    /// No protocol stack satisfies the required properties.
    NoCandidates,
    /// A name could not be resolved to any address.
    ResolutionFailed,
    /// Candidates were tried and none could be established.
    EstablishmentFailed,
    /// Policy forbids the requested communication.
    PolicyProhibited,
    /// The Connection cannot be cloned.
    NotCloneable,
    /// The Message is larger than the Connection can carry.
    MessageTooLarge,
    /// The protocol stack failed.
    ProtocolFailed,
    /// Message properties are invalid or cannot be honoured by the chosen stack.
    InvalidMessageProperties,
    /// A framer could not parse received data.
    DeframingFailed,
    /// The Connection was aborted, locally or by the peer.
    ConnectionAborted,
    /// A timeout expired.
    Timeout,
    /// The peer finished cleanly (a TCP or QUIC stream's end, a WebSocket
    /// Close with code 1000 or 1001): nothing more will arrive, and that is
    /// not a failure. A receive gets it after the peer's final Message.
    PeerFinished,
}

impl ErrorReason {
    /// The RFC name of this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::InvalidConfiguration => "InvalidConfiguration",
            ErrorReason::NoCandidates => "NoCandidates",
            ErrorReason::ResolutionFailed => "ResolutionFailed",
            ErrorReason::EstablishmentFailed => "EstablishmentFailed",
            ErrorReason::PolicyProhibited => "PolicyProhibited",
            ErrorReason::NotCloneable => "NotCloneable",
            ErrorReason::MessageTooLarge => "MessageTooLarge",
            ErrorReason::ProtocolFailed => "ProtocolFailed",
            ErrorReason::InvalidMessageProperties => "InvalidMessageProperties",
            ErrorReason::DeframingFailed => "DeframingFailed",
            ErrorReason::ConnectionAborted => "ConnectionAborted",
            ErrorReason::Timeout => "Timeout",
            ErrorReason::PeerFinished => "PeerFinished",
        }
    }
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The failure of one candidate in an establishment race.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CandidateFailure {
    /// Dotted candidate id in the candidate tree (`1.1.2`).
    pub id: String,
    /// The protocol stack of the candidate (`tcp`, `udp`, ...), if it had one.
    pub stack: Option<String>,
    /// The remote address (`ip:port`) or host name of the candidate.
    pub address: Option<String>,
    /// Why it failed.
    pub reason: ErrorReason,
    /// What happened, in words.
    pub message: String,
}

impl fmt::Display for CandidateFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)?;
        if let Some(stack) = &self.stack {
            write!(f, " {stack}")?;
        }
        if let Some(address) = &self.address {
            write!(f, " {address}")?;
        }
        write!(f, ": {}: {}", self.reason, self.message)
    }
}

/// An error of any postsocket action: the RFC reason, a message that says what
/// was wrong, and for establishment every candidate's own failure.
///
/// It is `Send + Sync` and identical on every target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Error {
    /// The RFC 9623 Appendix B reason.
    pub reason: ErrorReason,
    /// What was wrong.
    pub message: String,
    /// For an EstablishmentError: each candidate and why it failed, in tree order.
    pub candidates: Vec<CandidateFailure>,
}

impl Error {
    /// An error with a reason and a message.
    pub fn new(reason: ErrorReason, message: impl Into<String>) -> Self {
        Error {
            reason,
            message: message.into(),
            candidates: Vec::new(),
        }
    }

    /// Shorthand for [`ErrorReason::InvalidConfiguration`].
    pub fn invalid_configuration(message: impl Into<String>) -> Self {
        Error::new(ErrorReason::InvalidConfiguration, message)
    }

    /// Attach per-candidate failures.
    pub fn with_candidates(mut self, candidates: Vec<CandidateFailure>) -> Self {
        self.candidates = candidates;
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)?;
        for c in &self.candidates {
            write!(f, "\n  candidate {c}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Shorthand result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
