//! The native path signal for PathChange: the machine's interface
//! addresses, watched with `if-watch` (rtnetlink on Linux, the System
//! Configuration framework on macOS and iOS, `NotifyIpInterfaceChange` on
//! Windows, a periodic poll elsewhere).
//!
//! One watcher per process, started by the first race or Connection on a
//! tokio runtime, on that runtime (started again on the next one if that
//! runtime ends). Changes are reported once the addresses have stayed the
//! same for [`PATH_SETTLE`](crate::PATH_SETTLE), against the addresses at
//! the previous report (the first settled set is the baseline, not a
//! change): a burst (an interface coming up with several addresses, a
//! DHCP renewal) is one PathChange, and an address that comes and goes
//! within the settle time is none. Loopback addresses are not the network
//! path and are left out.

use crate::PATH_SETTLE;
use futures::StreamExt;
use if_watch::{IfEvent, IpNet};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The platform reports network changes: Connections are watched.
pub(crate) const PATH_SIGNALS: bool = true;

/// A watcher runs, or could not be made (then none is tried again).
static WATCHING: AtomicBool = AtomicBool::new(false);

/// Clears [`WATCHING`] when the watcher's task ends with its runtime, so the
/// next race starts one on a runtime that lives.
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        WATCHING.store(false, Ordering::Release);
    }
}

/// Start the watcher, once, on the current tokio runtime (none outside
/// one: a Connection is always made inside one).
pub(crate) fn watch_path_changes() {
    if WATCHING.load(Ordering::Acquire) {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if WATCHING.swap(true, Ordering::AcqRel) {
        return;
    }
    let running = Running;
    rt.spawn(async move {
        let mut watcher = match if_watch::tokio::IfWatcher::new() {
            Ok(w) => w,
            Err(_) => {
                // No signal here (a sandbox without netlink, say): stay
                // "watching" rather than try again at every race.
                std::mem::forget(running);
                return;
            }
        };
        let start = tokio::time::Instant::now();
        let mut settle = Settle::new();
        loop {
            let due = settle.due().map(|d| start + d);
            let wait = async move {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = watcher.next() => match event {
                    Some(Ok(event)) => settle.event(start.elapsed(), event),
                    // The platform's source ended: no more signals.
                    Some(Err(_)) | None => break,
                },
                () = wait => {
                    if let Some(what) = settle.settled(start.elapsed()) {
                        crate::connection::path_changed(&what);
                    }
                }
            }
        }
        drop(running);
    });
}

/// The sans-IO part: interface address events in, a report out once they
/// settle. Time is the watcher's age, an input.
#[derive(Debug)]
pub(crate) struct Settle {
    /// The addresses at the last report (`None` until the first settle).
    reported: Option<BTreeSet<IpNet>>,
    /// The addresses now.
    now: BTreeSet<IpNet>,
    /// When the addresses last changed (the watcher's start counts as a
    /// change, so that a machine with no address but loopback has a
    /// baseline too).
    changed: Option<Duration>,
}

impl Settle {
    pub(crate) fn new() -> Settle {
        Settle {
            reported: None,
            now: BTreeSet::new(),
            changed: Some(Duration::ZERO),
        }
    }

    /// An address came or went at `at`.
    pub(crate) fn event(&mut self, at: Duration, event: IfEvent) {
        let (net, up) = match event {
            IfEvent::Up(net) => (net, true),
            IfEvent::Down(net) => (net, false),
        };
        if net.addr().is_loopback() {
            return;
        }
        let moved = if up {
            self.now.insert(net)
        } else {
            self.now.remove(&net)
        };
        if moved {
            self.changed = Some(at);
        }
    }

    /// When to look again (`settled`), if a change waits to settle.
    pub(crate) fn due(&self) -> Option<Duration> {
        self.changed.map(|c| c.saturating_add(PATH_SETTLE))
    }

    /// At `at`: what changed since the last report, once the addresses
    /// have stayed the same for [`PATH_SETTLE`](crate::PATH_SETTLE) (and
    /// differ from the last report's).
    pub(crate) fn settled(&mut self, at: Duration) -> Option<String> {
        if self.due().is_none_or(|due| at < due) {
            return None;
        }
        self.changed = None;
        // The first settled set is the baseline: nothing to report.
        let before = self.reported.replace(self.now.clone())?;
        let list = |nets: Vec<&IpNet>| {
            nets.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let came: Vec<&IpNet> = self.now.difference(&before).collect();
        let went: Vec<&IpNet> = before.difference(&self.now).collect();
        let what = match (came.is_empty(), went.is_empty()) {
            (true, true) => return None,
            (false, true) => format!("interface addresses came: {}", list(came)),
            (true, false) => format!("interface addresses went: {}", list(went)),
            (false, false) => format!(
                "interface addresses came: {}; went: {}",
                list(came),
                list(went)
            ),
        };
        Some(format!("{what} (the platform's interface watcher)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_first_settled_addresses_are_the_baseline_then_changes_are_reported_once_settled() {
        let settle = PATH_SETTLE.as_millis() as u64;
        let mut s = Settle::new();
        // The platform lists what is there at the start.
        s.event(ms(1), IfEvent::Up(net("192.0.2.7/24")));
        s.event(ms(2), IfEvent::Up(net("2001:db8::7/64")));
        assert_eq!(s.due(), Some(ms(2 + settle)));
        assert_eq!(s.settled(ms(1 + settle)), None, "not settled yet");
        assert_eq!(s.settled(ms(2 + settle)), None, "the baseline is no change");
        assert_eq!(s.due(), None, "nothing waits");
        // An address comes: reported once it has settled, not before.
        let t = 10_000;
        s.event(ms(t), IfEvent::Up(net("198.51.100.9/24")));
        assert_eq!(s.settled(ms(t + settle - 1)), None);
        let what = s.settled(ms(t + settle)).expect("a change");
        assert!(
            what.contains("came: 198.51.100.9/24") && !what.contains("went"),
            "{what}"
        );
        assert_eq!(s.settled(ms(t + 2 * settle)), None, "reported once");
        // One goes and another comes in a burst: one report of both; the
        // settle time starts over with each event.
        let t = 20_000;
        s.event(ms(t), IfEvent::Down(net("192.0.2.7/24")));
        s.event(ms(t + settle / 2), IfEvent::Up(net("203.0.113.1/24")));
        assert_eq!(s.settled(ms(t + settle)), None, "the burst goes on");
        let what = s.settled(ms(t + settle / 2 + settle)).expect("a change");
        assert!(
            what.contains("came: 203.0.113.1/24") && what.contains("went: 192.0.2.7/24"),
            "{what}"
        );
    }

    #[test]
    fn loopback_and_an_address_that_comes_and_goes_within_the_settle_time_are_no_change() {
        let settle = PATH_SETTLE.as_millis() as u64;
        let mut s = Settle::new();
        // A machine with loopback only still gets its (empty) baseline.
        s.event(ms(1), IfEvent::Up(net("127.0.0.1/8")));
        s.event(ms(1), IfEvent::Up(net("::1/128")));
        assert_eq!(s.due(), Some(ms(settle)), "loopback moves nothing");
        assert_eq!(s.settled(ms(settle)), None);
        // The first real address after that is a change.
        s.event(ms(5_000), IfEvent::Up(net("10.77.0.1/24")));
        assert!(s.settled(ms(5_000 + settle)).is_some());
        // Comes and goes before it settles: the same addresses as reported.
        s.event(ms(9_000), IfEvent::Up(net("10.88.0.1/24")));
        s.event(ms(9_100), IfEvent::Down(net("10.88.0.1/24")));
        assert_eq!(s.settled(ms(9_100 + settle)), None);
        // A Down for an address never seen moves nothing.
        s.event(ms(12_000), IfEvent::Down(net("10.99.0.1/24")));
        assert_eq!(s.due(), None);
    }
}
