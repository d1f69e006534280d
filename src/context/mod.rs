//! The TransportContext (the seed's root object; RFC 9623 §8 caching):
//! what earlier races taught, shared by the Preconnections that use it, so
//! the next race starts smarter.
//!
//! Every Preconnection uses [`TransportContext::global`] (one per process,
//! one per page in the browser) unless given its own with
//! [`Preconnection::set_transport_context`](crate::Preconnection::set_transport_context);
//! `isolateSession` (RFC 9622 §8.1.10) keeps a race out of any context.
//! What it remembers and how it decides is in [`memory`]; in short:
//! - a target that worked last time is tried first, one that failed or
//!   stayed silent last;
//! - the Connection Attempt Delay after an attempt follows that stack's
//!   measured handshake time to that target (1.5 × SRTT + 2 × RTTVAR, within
//!   10 ms ..= 2 s) instead of 250 ms, unless the application set a delay;
//! - a stack that failed to a destination while another stack connected is
//!   held back there (tried only if everything else fails) for 5 min,
//!   doubling with each further loss up to 48 h, then tried again;
//! - when none of the last attempts over IPv6 (or over UDP) answered on this
//!   network, that family (or the UDP stacks) goes last, except every
//!   5th race, which probes.
//!
//! Every such decision is an event in the RacingTrace, with its reason.
//! [`save`](TransportContext::save) and [`restore`](TransportContext::restore)
//! keep it across runs: natively in a file, in the browser in
//! `localStorage`.

pub mod memory;

use crate::capability::{Capabilities, StackId};
use crate::error::{Error, ErrorReason};
use crate::racing::{AttemptOutcome, RaceHistory, Racer, RemoteSpec};
use memory::{Memory, NetworkTag};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

/// The `localStorage` key the npm package and the demo save the page's
/// context under (any key works; this is the documented default).
pub const DEFAULT_STORAGE_KEY: &str = "postsocket.transportContext";

/// Shared memory of earlier races: a cheap handle; clones share it.
///
/// It also scopes the TLS session cache (session tickets for resumption
/// and 0-RTT, over TLS, QUIC, WebSocket over TLS and WebTransport): the
/// Connections of Preconnections that share a context resume each other's
/// sessions, those of another context do not, and isolateSession uses
/// none. Tickets are secrets: they stay in memory and are never saved.
/// QUIC address-validation tokens (NEW_TOKEN, which spare a later connect
/// the server's Retry) are scoped and kept the same way.
#[derive(Clone)]
pub struct TransportContext {
    inner: Arc<Mutex<Memory>>,
    id: u64,
}

// Every context alive, for a network change the platform reports (see
// `platform_network_changed`); pruned as the list doubles.
crate::runtime::process_wide!(CONTEXTS: Vec<Weak<Mutex<Memory>>> = Vec::new());

impl Default for TransportContext {
    fn default() -> TransportContext {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let inner: Arc<Mutex<Memory>> = Arc::default();
        CONTEXTS.with(|c| {
            let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
            if c.len() >= 16 && c.len().is_power_of_two() {
                c.retain(|m| m.strong_count() > 0);
            }
            c.push(Arc::downgrade(&inner));
        });
        TransportContext {
            inner,
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// The platform reports that the network changed (see
/// [`path_changed`](crate::path_changed)): every context still on
/// [`memory::DEFAULT_NETWORK`] forgets what it learned there. A context on
/// a network the application named ([`TransportContext::set_network`]) is
/// the application's to manage: it keeps its memory.
pub(crate) fn platform_network_changed() {
    // Taken out of the list first: no context's lock is taken under it.
    let live: Vec<Arc<Mutex<Memory>>> = CONTEXTS.with(|c| {
        let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
        c.retain(|m| m.strong_count() > 0);
        c.iter().filter_map(Weak::upgrade).collect()
    });
    for m in live {
        let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
        if m.network() == memory::DEFAULT_NETWORK {
            m.network_changed();
        }
    }
}

impl std::fmt::Debug for TransportContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.lock();
        f.debug_struct("TransportContext")
            .field("network", &m.network())
            .finish_non_exhaustive()
    }
}

impl TransportContext {
    /// A context that remembers nothing yet, shared with nobody.
    pub fn new() -> TransportContext {
        TransportContext::default()
    }

    /// The process-wide context (in the browser: the page's), which every
    /// Preconnection uses unless given another.
    pub fn global() -> TransportContext {
        static GLOBAL: OnceLock<TransportContext> = OnceLock::new();
        GLOBAL.get_or_init(TransportContext::new).clone()
    }

    /// This context's identity (what scopes its TLS session cache).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn lock(&self) -> MutexGuard<'_, Memory> {
        // The memory is plain data updated in place without panicking code
        // paths; a poisoned lock still holds consistent records.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget everything learned, on every network.
    pub fn forget(&self) {
        *self.lock() = Memory::default();
    }

    /// Races from now on run on network `id` (an application's name for
    /// it, e.g. a Wi-Fi SSID hash): what is learned there is kept apart
    /// from other networks, and kept for when it comes back. The first
    /// network is [`memory::DEFAULT_NETWORK`].
    pub fn set_network(&self, id: &str) {
        self.lock().set_network(id);
    }

    /// The current network changed in a way its id does not show (the
    /// browser's `online` event, a new default route): forget what was
    /// learned on it.
    pub fn network_changed(&self) {
        self.lock().network_changed();
    }

    /// The whole memory as JSON, in the documented saved format.
    pub fn to_json(&self) -> String {
        self.lock().to_json()
    }

    /// Replace the memory with a saved one. A foreign, newer or corrupt
    /// text is an InvalidConfiguration error saying what is wrong, and
    /// leaves the context empty (a fresh state, never half of one).
    pub fn restore_json(&self, text: &str) -> Result<(), Error> {
        self.restore_text(text, "the text")
    }

    fn restore_text(&self, text: &str, what: &str) -> Result<(), Error> {
        let restored = Memory::from_json(text, what);
        let mut m = self.lock();
        match restored {
            Ok(r) => {
                *m = r;
                Ok(())
            }
            Err(e) => {
                *m = Memory::default();
                Err(e)
            }
        }
    }

    /// Save the memory to `location`: natively a file path (written to a
    /// temporary file beside it, then renamed over it: atomic), in the
    /// browser a `localStorage` key (e.g. [`DEFAULT_STORAGE_KEY`]).
    pub fn save(&self, location: &str) -> Result<(), Error> {
        let text = self.to_json();
        crate::runtime::store(location, &text).map_err(|e| {
            Error::new(
                ErrorReason::InvalidConfiguration,
                format!("cannot save the TransportContext: {e}"),
            )
        })
    }

    /// Restore what [`save`](Self::save) stored at `location`. `Ok(false)`
    /// when nothing is stored there yet (a first run): the context is left
    /// as it is. A file or entry that cannot be read, or is not a
    /// TransportContext this build understands, is an error naming the
    /// location and the fault, and leaves the context empty.
    pub fn restore(&self, location: &str) -> Result<bool, Error> {
        match crate::runtime::load(location) {
            Ok(None) => Ok(false),
            Ok(Some(text)) => self.restore_text(&text, location).map(|()| true),
            Err(e) => {
                self.forget();
                Err(Error::new(
                    ErrorReason::InvalidConfiguration,
                    format!("cannot restore the TransportContext: {e}"),
                ))
            }
        }
    }

    /// The verdicts for a race to `remotes` over `stacks` (the engine's
    /// input), and the network the race starts on (where it is learned).
    pub(crate) fn history_for(
        &self,
        remotes: &[RemoteSpec],
        stacks: &[Capabilities],
        adaptive_delay: bool,
    ) -> (RaceHistory, NetworkTag) {
        let now = crate::runtime::unix_ms();
        let mut m = self.lock();
        let h = m.history_for_remotes(remotes, stacks, adaptive_delay, now);
        (h, m.tag(now))
    }

    /// Learn from a finished race that started on network `on`, reading
    /// its outcomes in place.
    pub(crate) fn learn_race(&self, race: &Racer, stacks: &[Capabilities], on: &NetworkTag) {
        let outcomes = race.outcome_views();
        if outcomes.is_empty() {
            return;
        }
        let now = crate::runtime::unix_ms();
        let caps = |s: StackId| stacks.iter().find(|c| c.stack == s).copied();
        self.lock().learn_from(&outcomes, caps, Some(on), now);
    }

    /// Learn from attempts of a race that started on network `on`.
    pub(crate) fn learn(
        &self,
        outcomes: &[AttemptOutcome],
        stacks: &[Capabilities],
        on: &NetworkTag,
    ) {
        if outcomes.is_empty() {
            return;
        }
        let now = crate::runtime::unix_ms();
        let caps = |s: StackId| stacks.iter().find(|c| c.stack == s).copied();
        self.lock().learn_from(outcomes, caps, Some(on), now);
    }
}
