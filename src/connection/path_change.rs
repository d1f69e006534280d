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

use super::Inner;
use crate::event::ConnectionEvent;
use std::cell::RefCell;
use std::sync::{Arc, Weak};

thread_local! {
    /// The Connections to tell, pruned as they close. Per thread: only the
    /// browser registers Connections, and a page has one thread.
    static WATCHERS: RefCell<Vec<Weak<Inner>>> = const { RefCell::new(Vec::new()) };
}

/// Tell `inner` of path changes, where the platform reports them.
pub(super) fn watch(inner: &Arc<Inner>) {
    if !crate::backend::PATH_SIGNALS {
        return;
    }
    crate::backend::watch_path_changes();
    WATCHERS.with_borrow_mut(|w| {
        // Pruned when the list doubles: amortized O(1) per Connection.
        if w.len() >= 16 && w.len().is_power_of_two() {
            w.retain(|c| c.upgrade().is_some_and(|c| !c.events_ended()));
        }
        w.push(Arc::downgrade(inner));
    });
}

/// The network path changed (`what` says how): every open Connection that
/// is watched gets a `PathChange(what)` event, and
/// [`TransportContext::global`](crate::TransportContext::global) forgets
/// what it learned on the current network. Returns how many Connections
/// were told.
pub fn path_changed(what: &str) -> usize {
    crate::TransportContext::global().network_changed();
    // Taken out while the events are queued (nothing of it runs code that
    // could register a Connection, but a borrow held across it need not be).
    let mut w = WATCHERS.with_borrow_mut(std::mem::take);
    w.retain(|c| {
        let Some(c) = c.upgrade() else {
            return false;
        };
        if c.events_ended() {
            return false;
        }
        c.emit(ConnectionEvent::PathChange(what.to_string()));
        true
    });
    let told = w.len();
    WATCHERS.with_borrow_mut(|now| {
        // Any registered meanwhile go after the others.
        w.append(now);
        *now = w;
    });
    told
}
