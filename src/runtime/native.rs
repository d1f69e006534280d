//! Native runtime: tokio.

use std::time::Duration;

/// A monotonic instant (tokio's, so paused test time applies).
pub(crate) type Instant = tokio::time::Instant;

/// Now.
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// `at + d`, or an instant decades away where that is past what the clock
/// can hold (a `Duration::MAX` lifetime or timeout from an application
/// means "never", not a panic).
pub(crate) fn saturating_add(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .unwrap_or_else(|| at + Duration::from_secs(30 * 365 * 24 * 3600))
}

/// Sleep until `deadline`.
pub(crate) async fn sleep_until(deadline: Instant) {
    tokio::time::sleep_until(deadline).await
}

/// Sleep for `d`.
#[allow(dead_code)]
pub(crate) async fn sleep(d: Duration) {
    tokio::time::sleep(d).await
}

/// Run `fut` in the background on the current tokio runtime; `false` (and
/// `fut` dropped) when there is none (a drop outside any runtime).
pub(crate) fn spawn(fut: impl std::future::Future<Output = ()> + Send + 'static) -> bool {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            h.spawn(fut);
            true
        }
        Err(_) => false,
    }
}
