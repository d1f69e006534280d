//! Unsolicited events (RFC 9622 §7–§10), delivered on one stream per object.
//! Action→event pairs (Ready, Sent, Received, ...) are the results of async calls instead.

use crate::connection::Connection;
use crate::error::Error;

/// An unsolicited Connection event.
///
/// At most 64 wait for the application at once. SoftErrors, PathChanges
/// and CloneErrors that come meanwhile are counted, and each kind is then
/// told as one event once the waiting ones were taken ("N more soft errors
/// while 64 events waited ... (the last: ...)"); `Closed` or
/// `ConnectionError`, the last event, always comes, after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// `Closed<>`: the Connection closed gracefully (locally, or the peer finished and so did we).
    Closed,
    /// `ConnectionError<reason>`: the Connection was aborted, locally or by the peer, or failed.
    ConnectionError(Error),
    /// `SoftError<>`: an ICMP-style soft error, with what happened.
    SoftError(String),
    /// `PathChange<>`: the path changed, with what changed.
    PathChange(String),
    /// `CloneError<reason>`: entanglement with the group failed.
    CloneError(Error),
}

/// An event of a Listener.
#[derive(Debug)]
pub enum ListenerEvent {
    /// `ConnectionReceived<Connection>`.
    ConnectionReceived(Connection),
    /// `EstablishmentError<reason>`: an incoming connection failed before it
    /// became a Connection. At most 64 wait for the application at once;
    /// those that fail meanwhile are counted, and reported as one once the
    /// waiting ones were taken ("N more incoming connections failed ...").
    EstablishmentError(Error),
    /// `Stopped<>`: the Listener stopped; no more events follow.
    Stopped,
}
