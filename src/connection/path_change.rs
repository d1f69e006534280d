//! PathChange (RFC 9622 §8.3.2): where the platform says the network
//! changed, every open Connection gets a `PathChange` event saying what the
//! platform reported, and the process-wide TransportContext forgets what it
//! learned on the old network.
//!
//! In the browser the signals are the window's `online` and `offline`
//! events and `navigator.connection`'s `change` (the backend installs the
//! listeners with the first Connection). Natively there is no portable
//! signal: Connections are not registered and nothing is sent; an
//! application that learns of a change itself calls [`path_changed`].

use crate::event::ConnectionEvent;
use futures::channel::mpsc::UnboundedSender;
use std::sync::Mutex;

/// The event senders of the Connections to tell, pruned as they close.
static WATCHERS: Mutex<Vec<UnboundedSender<ConnectionEvent>>> = Mutex::new(Vec::new());

/// Tell `events` of path changes, where the platform reports them.
pub(super) fn watch(events: &UnboundedSender<ConnectionEvent>) {
    if !crate::backend::PATH_SIGNALS {
        return;
    }
    crate::backend::watch_path_changes();
    let mut w = WATCHERS.lock().unwrap_or_else(|e| e.into_inner());
    // Pruned when the list doubles: amortized O(1) per Connection.
    if w.len() >= 16 && w.len().is_power_of_two() {
        w.retain(|tx| !tx.is_closed());
    }
    w.push(events.clone());
}

/// The network path changed (`what` says how): every open Connection that
/// is watched gets a `PathChange(what)` event, and
/// [`TransportContext::global`](crate::TransportContext::global) forgets
/// what it learned on the current network. Returns how many Connections
/// were told.
pub fn path_changed(what: &str) -> usize {
    crate::TransportContext::global().network_changed();
    let mut w = WATCHERS.lock().unwrap_or_else(|e| e.into_inner());
    w.retain(|tx| {
        tx.unbounded_send(ConnectionEvent::PathChange(what.to_string()))
            .is_ok()
    });
    w.len()
}
