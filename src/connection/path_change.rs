//! PathChange (RFC 9622 §8.3.2): where the platform says the network
//! changed, every open Connection gets a `PathChange` event saying what the
//! platform reported, and every TransportContext on the default network
//! (the global one, unless the application named its networks) forgets
//! what it learned on the old one.
//!
//! In the browser the signals are the window's `online` and `offline`
//! events and `navigator.connection`'s `change` (the backend installs the
//! listeners with the first Connection). Natively the signal is the
//! machine's interface addresses (loopback and link-local ones left out):
//! one came or went, and the set then stayed the same for [`PATH_SETTLE`]
//! (the backend's watcher starts, on a thread of its own, with the first
//! race or Connection). An application that learns of a change some other
//! way calls [`path_changed`] itself; one that does not want the platform
//! watched (no watcher thread natively, no events from the platform) says
//! so with [`watch_platform_paths`]`(false)`.

use super::Inner;
use crate::event::ConnectionEvent;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Natively, how long the interface addresses must stay the same after one
/// came or went before the change is reported as `PathChange`: a burst (an
/// interface coming up with several addresses, a move to another network
/// that replaces them) is one report, and an address that comes and goes
/// within it is none. Addresses that keep changing are reported 4 times
/// this after the first unreported change. (The browser's events are
/// reported as they come.)
pub const PATH_SETTLE: Duration = Duration::from_millis(500);

/// The Connections to tell: a slot per watched Connection, emptied as its
/// state goes ([`unwatch`]), the empty ones reused.
struct Watchers {
    slots: Vec<Option<Weak<Inner>>>,
    free: Vec<usize>,
}

crate::runtime::process_wide!(WATCHERS: Watchers = Watchers {
    slots: Vec::new(),
    free: Vec::new(),
});

/// No slot (the Connection is not watched).
pub(super) const UNWATCHED: usize = usize::MAX;

/// `f` with the list (nothing panics while it is held: a poisoned list is
/// still whole); `None` if a thread's own list is gone already (the thread
/// is ending).
fn with_watchers<R>(f: impl FnOnce(&mut Watchers) -> R) -> Option<R> {
    WATCHERS
        .try_with(|w| f(&mut w.lock().unwrap_or_else(|e| e.into_inner())))
        .ok()
}

/// Whether the platform's signals are watched and reported
/// ([`watch_platform_paths`]).
static PLATFORM_WATCH: AtomicBool = AtomicBool::new(true);

/// Whether postsocket watches the platform for network changes: on by
/// default. Natively that is a thread of its own watching the machine's
/// interface addresses (started by the first race or Connection); in the
/// browser, listeners on the global object's `online` and `offline` events
/// and `navigator.connection`'s `change`.
///
/// `false`: no watcher is started, one already running stops, and nothing
/// the platform signals reaches a Connection or a TransportContext from
/// then on; [`path_changed`] still reports what the application learns
/// itself. `true` watches again at once: natively a new watcher takes the
/// addresses as its baseline once they settle, and one that had not yet
/// stopped takes them as they are, so what changed while unwatched is not
/// reported. Natively, once the platform's source failed (it could not be
/// opened, or ended) it is not opened again. Process-wide (in the browser,
/// per page or worker).
pub fn watch_platform_paths(on: bool) {
    PLATFORM_WATCH.store(on, Ordering::SeqCst);
    if on {
        crate::backend::watch_path_changes();
    } else {
        crate::backend::stop_watching_path_changes();
    }
}

/// Whether the platform is to be watched ([`watch_platform_paths`]).
pub(crate) fn platform_watched() -> bool {
    PLATFORM_WATCH.load(Ordering::SeqCst)
}

/// The platform reported a change: [`path_changed`], unless the
/// application stopped watching it meanwhile.
pub(crate) fn platform_path_changed(what: &str) {
    if platform_watched() {
        path_changed(what);
    }
}

/// Tell `inner` of path changes, where the platform reports them.
pub(super) fn watch(inner: &Arc<Inner>) {
    if !crate::backend::PATH_SIGNALS {
        return;
    }
    crate::backend::watch_path_changes();
    let me = Some(Arc::downgrade(inner));
    let slot = with_watchers(|w| match w.free.pop() {
        Some(i) => {
            w.slots[i] = me;
            i
        }
        None => {
            w.slots.push(me);
            w.slots.len() - 1
        }
    });
    if let Some(slot) = slot {
        inner.path_slot.store(slot, Ordering::Relaxed);
    }
}

/// `inner` goes (its drop): its slot is free again.
pub(super) fn unwatch(inner: &Inner) {
    let slot = inner.path_slot.load(Ordering::Relaxed);
    if slot == UNWATCHED {
        return;
    }
    // Its Weak is dropped after the lock (it kept the Connection's
    // allocation, not its state).
    let weak = with_watchers(|w| {
        w.free.push(slot);
        w.slots[slot].take()
    });
    drop(weak);
}

/// The network path changed (`what` says how): every open Connection that
/// is watched gets a `PathChange(what)` event, and every
/// [`TransportContext`](crate::TransportContext) still on the default
/// network ([`TransportContext::global`](crate::TransportContext::global)
/// and those made with `new`, unless the application named a network with
/// [`set_network`](crate::TransportContext::set_network)) forgets what it
/// learned there. Returns how many Connections were told.
pub fn path_changed(what: &str) -> usize {
    crate::context::platform_network_changed();
    // Taken out of the list before they are told: dropping the last handle
    // of one (here, if the application dropped its own meanwhile) takes the
    // list's lock to free its slot.
    let open: Vec<Arc<Inner>> =
        with_watchers(|w| w.slots.iter().flatten().filter_map(Weak::upgrade).collect())
            .unwrap_or_default();
    let mut told = 0;
    for c in &open {
        if !c.events_ended() {
            c.emit(ConnectionEvent::PathChange(what.to_string()));
            told += 1;
        }
    }
    told
}
