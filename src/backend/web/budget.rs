//! The page's WebTransport budget. Chromium throttles WebTransport per page:
//! a handshake that fails, or is cancelled after it started, counts as
//! pending for about 5 minutes, and each new handshake waits about
//! 10 ms × 2^(pending − 1) (randomized, up to 60 s; a success frees its slot
//! at once). Races that keep starting WebTransport to a blackholed server
//! would poison the page's WebTransport for the application itself, so
//! this counts such handshakes and, past the budget
//! ([`crate::webtransport_budget`]), holds WebTransport back (tried only when
//! everything else failed) until enough of them age out.

use crate::capability::StackId;
use crate::racing::{AttemptOutcome, AttemptResult, Held};
use std::cell::RefCell;
use std::time::Duration;

/// The browser charges for WebTransport attempts (see [`note_outcomes`]).
pub(crate) const CHARGES_ATTEMPTS: bool = true;

/// How long Chromium counts one (about 5 minutes).
pub const WINDOW: Duration = Duration::from_secs(5 * 60);

thread_local! {
    /// When each costly handshake ended, in milliseconds of the page's
    /// monotonic clock (`performance.now()`: a wall clock stepped back would
    /// keep the charges counted that much longer).
    static SPENT: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// How many of the page's WebTransport handshakes failed or were cancelled
/// in the last 5 minutes (what the budget counts).
pub(crate) fn webtransport_handshakes_spent() -> usize {
    with_spent(crate::runtime::monotonic_ms(), <[u64]>::len)
}

/// Forget costs that aged out; `f` of the rest, oldest first.
fn with_spent<R>(now: u64, f: impl FnOnce(&[u64]) -> R) -> R {
    let window = WINDOW.as_millis() as u64;
    SPENT.with(|s| {
        let mut s = s.borrow_mut();
        s.retain(|&t| now.saturating_sub(t) < window);
        f(&s)
    })
}

/// WebTransport held back while the budget is spent.
pub(crate) fn held_by_browser() -> Vec<Held> {
    let now = crate::runtime::monotonic_ms();
    let limit = crate::webtransport_budget::limit();
    // How many count, and when the one that would lift the hold ages out
    // (none with a budget of 0: held back for good).
    let (spent, lifting) = with_spent(now, |s| {
        (
            s.len(),
            s.len().checked_sub(limit).and_then(|i| s.get(i).copied()),
        )
    });
    if spent < limit {
        return Vec::new();
    }
    let frees_in = lifting.map_or(0, |t| (t + WINDOW.as_millis() as u64).saturating_sub(now));
    vec![Held {
        destination: None,
        stack: StackId::Wt,
        why: format!(
            "wt held back: {} WebTransport handshakes of this page failed or were cancelled in the last 5 min, and Chromium delays each new one by about 10 ms × 2^(that many − 1) while they count (the budget is {limit}; one frees in {})",
            spent,
            crate::racing::history::span_text(Duration::from_millis(frees_in)),
        ),
    }]
}

/// A WebTransport handshake charged as cancelled connected after all (it
/// was left to finish): its charge is taken back, as Chromium frees a
/// completed handshake's slot.
pub(crate) fn refund(outcome: &AttemptOutcome) {
    if outcome.stack == StackId::Wt {
        SPENT.with(|s| {
            s.borrow_mut().pop();
        });
    }
}

/// Count a race's WebTransport handshakes that failed or were cancelled.
pub(crate) fn note_outcomes(outcomes: &[AttemptOutcome]) {
    let now = crate::runtime::monotonic_ms();
    let costly = outcomes
        .iter()
        .filter(|o| o.stack == StackId::Wt && o.result != AttemptResult::Won)
        .count();
    if costly > 0 {
        SPENT.with(|s| s.borrow_mut().extend(std::iter::repeat_n(now, costly)));
    }
}
