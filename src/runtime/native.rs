//! Native runtime: tokio.

use std::time::Duration;

/// A monotonic instant (tokio's, so paused test time applies).
pub(crate) type Instant = tokio::time::Instant;

/// Now.
pub(crate) fn now() -> Instant {
    Instant::now()
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
