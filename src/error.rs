//! Errors, with the reasons of RFC 9623 Appendix B.
//!
//! Every error says which reason applies and what exactly was wrong. An
//! establishment error also carries each candidate's own failure, so "all
//! candidates failed" says why each one did.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The lower-level error behind a postsocket error (an `io::Error` with the
/// OS error, a rustls or quinn error, ...), shared so that [`Error`] stays
/// `Clone`. In the browser, JavaScript errors are not `Send`: there, errors
/// carry their text only.
pub(crate) type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

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
///
/// Its [`source`](std::error::Error::source) is the stack's own error where
/// there is one (natively: the `io::Error` of the attempt, whose source in
/// turn is, for example, the `rustls::Error` of a failed TLS handshake or
/// the `quinn::ConnectionError` of a QUIC one). Equality and the serialized
/// form leave the source out.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    #[serde(skip)]
    source: Option<Source>,
}

impl CandidateFailure {
    /// A candidate's failure (the racing engine's; sources are attached by
    /// the driver that ran the attempt).
    pub(crate) fn new(
        id: String,
        stack: Option<String>,
        address: Option<String>,
        reason: ErrorReason,
        message: String,
    ) -> Self {
        CandidateFailure {
            id,
            stack,
            address,
            reason,
            message,
            source: None,
        }
    }
}

impl PartialEq for CandidateFailure {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.id,
            &self.stack,
            &self.address,
            self.reason,
            &self.message,
        ) == (
            &other.id,
            &other.stack,
            &other.address,
            other.reason,
            &other.message,
        )
    }
}

impl Eq for CandidateFailure {}

impl std::error::Error for CandidateFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
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
///
/// Its [`source`](std::error::Error::source) leads to the error underneath
/// where there is one: for an EstablishmentError, the first candidate
/// whose stack failed with an error of its own (then that error, e.g. a
/// `rustls::Error` or an `io::Error` with its OS error code); for a stack
/// that failed under an open Connection, its `io::Error`. Equality and the
/// serialized form leave the source out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Error {
    /// The RFC 9623 Appendix B reason.
    pub reason: ErrorReason,
    /// What was wrong.
    pub message: String,
    /// For an EstablishmentError: each candidate and why it failed, in tree order.
    pub candidates: Vec<CandidateFailure>,
    #[serde(skip)]
    source: Option<Source>,
}

impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        (self.reason, &self.message, &self.candidates)
            == (other.reason, &other.message, &other.candidates)
    }
}

impl Eq for Error {}

impl Error {
    /// An error with a reason and a message.
    pub fn new(reason: ErrorReason, message: impl Into<String>) -> Self {
        Error {
            reason,
            message: message.into(),
            candidates: Vec::new(),
            source: None,
        }
    }

    /// The same error with `source` as the error underneath it (what
    /// [`std::error::Error::source`] returns).
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(Arc::from(source.into()));
        self
    }

    /// Shorthand for [`ErrorReason::InvalidConfiguration`].
    pub fn invalid_configuration(message: impl Into<String>) -> Self {
        Error::new(ErrorReason::InvalidConfiguration, message)
    }

    /// [`with_source`](Self::with_source) with a source already shared.
    pub(crate) fn with_shared_source(mut self, source: Source) -> Self {
        self.source = Some(source);
        self
    }

    /// Attach per-candidate failures. Without a source of its own, the
    /// error's source becomes the first candidate that has one.
    pub fn with_candidates(mut self, candidates: Vec<CandidateFailure>) -> Self {
        self.candidates = candidates;
        self.source_from_candidates();
        self
    }

    /// Where no source is set, the first candidate with a source of its
    /// own becomes the source (after sources were attached to candidates).
    pub(crate) fn source_from_candidates(&mut self) {
        if self.source.is_none() {
            self.source = self
                .candidates
                .iter()
                .find(|c| c.source.is_some())
                .map(|c| Arc::new(c.clone()) as Source);
        }
    }

    /// Attach `source` to the candidate with this id, if it is listed.
    pub(crate) fn attach_candidate_source(&mut self, id: &str, source: Source) {
        if let Some(c) = self.candidates.iter_mut().find(|c| c.id == id) {
            c.source = Some(source);
        }
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

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

// Send + Sync on every target, the browser's too (checked by the compiler).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Error>();
    send_sync::<CandidateFailure>();
};

/// Shorthand result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
