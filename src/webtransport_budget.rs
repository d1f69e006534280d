//! The page's WebTransport budget.
//!
//! Chromium throttles WebTransport per page: a handshake that fails, or is
//! cancelled after it started, counts as pending for about 5 minutes, and
//! each new handshake waits about 10 ms × 2^(pending − 1) (randomized, up
//! to 60 s; a success frees its slot at once). Races that keep starting
//! WebTransport to a blackholed server would poison the page's
//! WebTransport for the application itself, so in the browser postsocket
//! counts such handshakes and, past the budget, holds WebTransport back
//! (tried only when everything else failed, with a trace event saying why)
//! until enough of them age out.
//!
//! Natively nothing throttles WebTransport, so nothing is counted: the
//! budget can be set on every target, and natively it never holds
//! WebTransport back.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Failed or cancelled WebTransport handshakes a page may have counting
/// against it before races hold WebTransport back: with 3 pending, Chromium
/// delays the next handshake, the application's own included, by about
/// 40 ms (measured: 94.7 ms to ready with 4 pending against about 20 ms in a
/// fresh page).
pub const WEBTRANSPORT_BUDGET: usize = 3;

/// The budget in force ([`WEBTRANSPORT_BUDGET`] unless set).
static LIMIT: AtomicUsize = AtomicUsize::new(WEBTRANSPORT_BUDGET);

/// Set the page's WebTransport budget: how many failed or cancelled
/// handshakes of the last 5 minutes hold WebTransport back
/// ([`WEBTRANSPORT_BUDGET`] by default; `usize::MAX` never holds it back, 0
/// always does). For a page that knows its WebTransport servers, or a test
/// of the stack itself.
///
/// Why there is a budget: Chromium throttles WebTransport per page. A
/// handshake that fails, or is cancelled after it started, counts as
/// pending for about 5 minutes, and each new handshake waits about
/// 10 ms × 2^(pending − 1), the application's own included. So in the
/// browser postsocket counts such handshakes of its races and, past the
/// budget, holds WebTransport back (tried only when everything else failed,
/// with a trace event saying why) until enough of them age out. Natively
/// nothing throttles WebTransport and nothing is counted, so the budget
/// never holds it back.
pub fn set_webtransport_budget(limit: usize) {
    LIMIT.store(limit, Ordering::Relaxed);
}

/// How many of the page's WebTransport handshakes failed or were cancelled
/// in the last 5 minutes (what the budget counts): always 0 natively.
pub fn webtransport_budget_spent() -> usize {
    crate::backend::webtransport_handshakes_spent()
}

/// The budget in force. Read by the browser's backend only: natively
/// nothing is counted against it.
#[allow(dead_code)]
pub(crate) fn limit() -> usize {
    LIMIT.load(Ordering::Relaxed)
}
