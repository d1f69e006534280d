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

/// Wall-clock milliseconds since the Unix epoch (what a TransportContext
/// persists; 0 if the clock is before 1970).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Store `text` at `location`, a file path, atomically: it is written to a
/// new file beside it and renamed over it, so a reader (or a crash) sees
/// the old text or the new one, never half of one.
pub(crate) fn store(location: &str, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let path = std::path::Path::new(location);
    let name = path
        .file_name()
        .ok_or_else(|| format!("{location} names no file"))?
        .to_string_lossy();
    // A temporary file of this call's own (threads of one process may save
    // to the same place at once), renamed over `location` when whole.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.{}.{seq}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("writing {location}: {e}")
    })
}

/// The text stored at `location` (a file path); `Ok(None)` when there is
/// no such file yet.
pub(crate) fn load(location: &str) -> Result<Option<String>, String> {
    use std::io::Read as _;
    let file = match std::fs::File::open(location) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {location}: {e}")),
    };
    // Read no more than a stored text can be (a larger file is not one).
    let mut bytes = Vec::new();
    file.take(LOAD_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading {location}: {e}"))?;
    if bytes.len() as u64 > LOAD_MAX {
        return Err(format!(
            "{location} is larger than {} MiB, more than a stored TransportContext can be",
            LOAD_MAX >> 20
        ));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| format!("{location} is not UTF-8 text"))
}

/// The largest text [`load`] reads: a TransportContext at its bounds (8
/// networks of 512 records of each kind) is a few MiB.
const LOAD_MAX: u64 = 16 << 20;
