//! The native path signal for PathChange: the machine's interface
//! addresses, watched with `if-watch` (rtnetlink on Linux, the System
//! Configuration framework on macOS and iOS, `NotifyIpInterfaceChange` on
//! Windows, a poll every 10 s elsewhere).
//!
//! One watcher per process, on a thread of its own (a small tokio runtime
//! of its own), started by the first race or Connection: it does not depend
//! on the application's runtimes being driven or kept, and there is never a
//! second one. It runs until the application stops watching the platform
//! ([`watch_platform_paths`](crate::watch_platform_paths)`(false)`; `true`
//! starts one again). If the platform's source cannot be opened, or fails,
//! there are no signals from then on (nothing is retried, at every
//! Connection or on `true`).
//!
//! Changes are reported once the addresses have stayed the same for
//! [`PATH_SETTLE`](crate::PATH_SETTLE), or [`SETTLE_CAP`] times that after
//! the first unreported change if they keep changing, against the
//! addresses at the previous report. The first settled set is the baseline,
//! not a change: it is taken once the platform has listed what is there
//! (its first event, loopback included), or [`SETTLE_CAP`] settle times
//! after the start if it lists nothing. A burst (an interface coming up with
//! several addresses) is one PathChange, and an address that comes and goes
//! within the settle time is none, and so is an IPv6 address coming or
//! going while another of its /64 stays (a privacy address rotating: the
//! network is the same). Loopback and link-local addresses
//! (`127.0.0.0/8`, `::1`, `169.254.0.0/16`, `fe80::/10`) are not a path to
//! a peer and are left out: a container's or a tunnel's interface coming up
//! with only a link-local address is no change.

use crate::connection::path_change::platform_watched;
use crate::PATH_SETTLE;
use futures::StreamExt;
use if_watch::{IfEvent, IpNet};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

/// The platform reports network changes: Connections are watched.
pub(crate) const PATH_SIGNALS: bool = true;

/// How many settle times a change that keeps changing waits at most.
pub(crate) const SETTLE_CAP: u32 = 4;

/// The watcher: none yet (or stopped), running, or ended for good because
/// the platform's source failed (then none is started again). Every start
/// and stop decides under this lock, reading [`platform_watched`] there: a
/// start and a stop that cross each other leave one watcher exactly when
/// watching is on.
#[derive(PartialEq)]
enum Watcher {
    Stopped,
    Running,
    Failed,
}

static WATCHER: std::sync::Mutex<Watcher> = std::sync::Mutex::new(Watcher::Stopped);

fn watcher() -> std::sync::MutexGuard<'static, Watcher> {
    WATCHER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wakes the watcher to look whether it is still wanted
/// ([`stop_watching_path_changes`]).
static STOP: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// The application stopped watching the platform
/// ([`watch_platform_paths`](crate::watch_platform_paths)): a running
/// watcher ends (and a later start makes a new one).
pub(crate) fn stop_watching_path_changes() {
    if *watcher() == Watcher::Running {
        STOP.notify_one();
    }
}

/// Woken by [`STOP`]: whether the watcher ends (the platform is still
/// unwatched; its place is given up), or goes on (watched again meanwhile).
fn stop_wanted() -> bool {
    let mut w = watcher();
    if platform_watched() {
        return false;
    }
    *w = Watcher::Stopped;
    true
}

/// Start the watcher's thread, unless one runs, the platform's source
/// failed, or the application does not want the platform watched.
pub(crate) fn watch_path_changes() {
    let mut w = watcher();
    if *w != Watcher::Stopped || !platform_watched() {
        return;
    }
    // A thread that cannot be made means no signals, as a source that
    // cannot be opened does.
    let made = std::thread::Builder::new()
        .name("postsocket-path-watch".into())
        .spawn(watch);
    *w = if made.is_ok() {
        Watcher::Running
    } else {
        Watcher::Failed
    };
}

/// The watcher ends for good: the platform's source failed.
fn source_failed() {
    *watcher() = Watcher::Failed;
}

/// The watcher's thread: the platform's address events through [`Settle`]
/// to [`path_changed`](crate::path_changed), until the application stops
/// watching or the source fails.
fn watch() {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    else {
        return source_failed();
    };
    rt.block_on(async {
        let Ok(mut watcher) = if_watch::tokio::IfWatcher::new() else {
            return source_failed();
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
                    // The source failed or ended: no more signals in this
                    // process (if-watch does not reopen it).
                    Some(Err(_)) | None => return source_failed(),
                },
                () = wait => {
                    if let Some(what) = settle.settled(start.elapsed()) {
                        crate::connection::platform_path_changed(&what);
                    }
                }
                () = STOP.notified() => {
                    if stop_wanted() {
                        return;
                    }
                    // Unwatched and watched again before this watcher saw
                    // it: what changed meanwhile is the new baseline, as
                    // for a new watcher.
                    settle.rebaseline();
                }
            }
        }
    });
}

/// Whether `ip` is an address a peer is reached from: not loopback, not
/// link-local.
fn on_a_path(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local(),
        IpAddr::V6(v6) => !v6.is_loopback() && (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}

/// What identifies the network an address puts the host on: an IPv4
/// address itself, and for IPv6 the /64 it is in. A host has several IPv6
/// addresses in one /64 (a stable one, and temporary privacy addresses,
/// RFC 8981, replaced about daily): one coming or going while its /64 stays
/// is no change of network.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Network {
    V4(std::net::Ipv4Addr),
    V6Prefix(u64),
}

/// The networks of `nets` ([`Network`]).
fn networks(nets: &BTreeSet<IpNet>) -> BTreeSet<Network> {
    nets.iter()
        .map(|n| match n.addr() {
            IpAddr::V4(v4) => Network::V4(v4),
            IpAddr::V6(v6) => Network::V6Prefix((u128::from(v6) >> 64) as u64),
        })
        .collect()
}

/// The sans-IO part: interface address events in, a report out once they
/// settle. Time is the watcher's age, an input.
#[derive(Debug, Default)]
pub(crate) struct Settle {
    /// The addresses at the last report (`None` until the baseline).
    reported: Option<BTreeSet<IpNet>>,
    /// The addresses now.
    now: BTreeSet<IpNet>,
    /// When the addresses last changed (before the baseline: when the
    /// platform last listed any address, loopback included).
    changed: Option<Duration>,
    /// When the first change not reported yet came.
    pending_since: Option<Duration>,
}

impl Settle {
    pub(crate) fn new() -> Settle {
        Settle::default()
    }

    /// An address came or went at `at`.
    pub(crate) fn event(&mut self, at: Duration, event: IfEvent) {
        let (net, up) = match event {
            IfEvent::Up(net) => (net, true),
            IfEvent::Down(net) => (net, false),
        };
        if self.reported.is_none() {
            // The platform is listing what is there.
            self.changed = Some(at);
        }
        if !on_a_path(net.addr()) {
            return;
        }
        let moved = if up {
            self.now.insert(net)
        } else {
            self.now.remove(&net)
        };
        if moved && self.reported.is_some() {
            self.changed = Some(at);
            self.pending_since.get_or_insert(at);
        }
    }

    /// Take the addresses now as the last report's, once there is a
    /// baseline: a change not reported yet is not reported.
    pub(crate) fn rebaseline(&mut self) {
        if self.reported.is_some() {
            self.reported = Some(self.now.clone());
            self.changed = None;
            self.pending_since = None;
        }
    }

    /// When to look again (`settled`): the baseline's time, or a change's.
    pub(crate) fn due(&self) -> Option<Duration> {
        if self.reported.is_none() {
            return Some(match self.changed {
                Some(listed) => listed.saturating_add(PATH_SETTLE),
                None => PATH_SETTLE * SETTLE_CAP,
            });
        }
        let settled = self.changed?.saturating_add(PATH_SETTLE);
        let cap = self.pending_since?.saturating_add(PATH_SETTLE * SETTLE_CAP);
        Some(settled.min(cap))
    }

    /// At `at`: what changed since the last report, once due (and if the
    /// addresses differ from the last report's).
    pub(crate) fn settled(&mut self, at: Duration) -> Option<String> {
        if self.due().is_none_or(|due| at < due) {
            return None;
        }
        self.changed = None;
        self.pending_since = None;
        // The first settled set is the baseline: nothing to report.
        let before = self.reported.replace(self.now.clone())?;
        let list = |nets: Vec<&IpNet>| {
            nets.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if networks(&before) == networks(&self.now) {
            // Addresses moved within the same networks (an IPv6 privacy
            // address rotated): the paths are the same.
            return None;
        }
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

    const SETTLE: u64 = PATH_SETTLE.as_millis() as u64;

    /// A Settle past its baseline: the platform listed `listed` at 1 ms.
    fn with_baseline(listed: &[&str]) -> Settle {
        let mut s = Settle::new();
        s.event(ms(1), IfEvent::Up(net("127.0.0.1/8")));
        for n in listed {
            s.event(ms(1), IfEvent::Up(net(n)));
        }
        assert_eq!(s.settled(ms(1 + SETTLE)), None, "the baseline is no change");
        assert_eq!(s.due(), None, "nothing waits");
        s
    }

    #[test]
    fn the_first_settled_addresses_are_the_baseline_then_changes_are_reported_once_settled() {
        let mut s = Settle::new();
        // Nothing listed yet: the baseline waits for the platform's list,
        // at most SETTLE_CAP settle times.
        assert_eq!(s.due(), Some(PATH_SETTLE * SETTLE_CAP));
        // The platform lists what is there at the start.
        s.event(ms(300), IfEvent::Up(net("192.0.2.7/24")));
        s.event(ms(302), IfEvent::Up(net("2001:db8::7/64")));
        assert_eq!(s.due(), Some(ms(302 + SETTLE)));
        assert_eq!(s.settled(ms(301 + SETTLE)), None, "not settled yet");
        assert_eq!(
            s.settled(ms(302 + SETTLE)),
            None,
            "the baseline is no change"
        );
        assert_eq!(s.due(), None, "nothing waits");
        // An address comes: reported once it has settled, not before.
        let t = 10_000;
        s.event(ms(t), IfEvent::Up(net("198.51.100.9/24")));
        assert_eq!(s.settled(ms(t + SETTLE - 1)), None);
        let what = s.settled(ms(t + SETTLE)).expect("a change");
        assert!(
            what.contains("came: 198.51.100.9/24") && !what.contains("went"),
            "{what}"
        );
        assert_eq!(s.settled(ms(t + 2 * SETTLE)), None, "reported once");
        // One goes and another comes in a burst: one report of both; the
        // settle time starts over with each event.
        let t = 20_000;
        s.event(ms(t), IfEvent::Down(net("192.0.2.7/24")));
        s.event(ms(t + SETTLE / 2), IfEvent::Up(net("203.0.113.1/24")));
        assert_eq!(s.settled(ms(t + SETTLE)), None, "the burst goes on");
        let what = s.settled(ms(t + SETTLE / 2 + SETTLE)).expect("a change");
        assert!(
            what.contains("came: 203.0.113.1/24") && what.contains("went: 192.0.2.7/24"),
            "{what}"
        );
    }

    #[test]
    fn a_platform_that_lists_nothing_still_gets_a_baseline() {
        let mut s = Settle::new();
        let cap = SETTLE * u64::from(SETTLE_CAP);
        assert_eq!(s.settled(ms(cap - 1)), None);
        assert_eq!(s.settled(ms(cap)), None, "the empty baseline");
        s.event(ms(cap + 100), IfEvent::Up(net("10.77.0.1/24")));
        assert!(s.settled(ms(cap + 100 + SETTLE)).is_some());
    }

    #[test]
    fn loopback_link_local_and_an_address_that_comes_and_goes_are_no_change() {
        let mut s = with_baseline(&[]);
        // Loopback and link-local addresses move nothing.
        for n in [
            "127.0.0.2/8",
            "::1/128",
            "169.254.3.4/16",
            "fe80::1/64",
            "febf::1/64",
        ] {
            s.event(ms(5_000), IfEvent::Up(net(n)));
        }
        assert_eq!(s.due(), None, "not a path to a peer");
        // The first address on a path is a change.
        s.event(ms(6_000), IfEvent::Up(net("10.77.0.1/24")));
        assert!(s.settled(ms(6_000 + SETTLE)).is_some());
        // Comes and goes before it settles: the same addresses as reported.
        s.event(ms(9_000), IfEvent::Up(net("10.88.0.1/24")));
        s.event(ms(9_100), IfEvent::Down(net("10.88.0.1/24")));
        assert_eq!(s.settled(ms(9_100 + SETTLE)), None);
        // A Down for an address never seen moves nothing.
        s.event(ms(12_000), IfEvent::Down(net("10.99.0.1/24")));
        assert_eq!(s.due(), None);
        // A unique-local IPv6 address is on a path.
        s.event(ms(13_000), IfEvent::Up(net("fd00::5/64")));
        assert!(s.settled(ms(13_000 + SETTLE)).is_some());
    }

    #[test]
    fn an_ipv6_privacy_address_rotating_in_its_64_is_no_change_a_new_64_is() {
        // A stable address and a temporary one (RFC 8981) in one /64.
        let mut s = with_baseline(&["2001:db8:5:6::7/64", "2001:db8:5:6:a1b2:c3d4:e5f6:1/64"]);
        // The temporary address is replaced: a new one comes, the old goes.
        s.event(
            ms(5_000),
            IfEvent::Up(net("2001:db8:5:6:9988:7766:5544:2/64")),
        );
        assert_eq!(s.settled(ms(5_000 + SETTLE)), None, "the same /64");
        s.event(
            ms(9_000),
            IfEvent::Down(net("2001:db8:5:6:a1b2:c3d4:e5f6:1/64")),
        );
        assert_eq!(s.settled(ms(9_000 + SETTLE)), None, "its /64 stays");
        // An address in another /64 is another network.
        s.event(ms(12_000), IfEvent::Up(net("2001:db8:5:7::7/64")));
        let what = s.settled(ms(12_000 + SETTLE)).expect("a new /64");
        assert!(what.contains("came: 2001:db8:5:7::7/64"), "{what}");
        // The last addresses of a /64 going is a change.
        s.event(ms(15_000), IfEvent::Down(net("2001:db8:5:6::7/64")));
        s.event(
            ms(15_000),
            IfEvent::Down(net("2001:db8:5:6:9988:7766:5544:2/64")),
        );
        let what = s.settled(ms(15_000 + SETTLE)).expect("a /64 gone");
        assert!(what.contains("went: 2001:db8:5:6::7/64"), "{what}");
        // Another IPv4 address is another network (DHCP gives one per network).
        s.event(ms(20_000), IfEvent::Up(net("192.0.2.8/24")));
        assert!(s.settled(ms(20_000 + SETTLE)).is_some());
    }

    #[test]
    fn a_rebaseline_takes_the_addresses_now_as_reported() {
        let mut s = Settle::new();
        s.rebaseline();
        assert_eq!(
            s.due(),
            Some(PATH_SETTLE * SETTLE_CAP),
            "no baseline yet: none made"
        );
        let mut s = with_baseline(&["192.0.2.7/24"]);
        s.event(ms(5_000), IfEvent::Up(net("198.51.100.9/24")));
        s.rebaseline();
        assert_eq!(s.due(), None, "nothing waits");
        assert_eq!(s.settled(ms(5_000 + SETTLE)), None, "not reported");
        // Later changes are against the new baseline.
        s.event(ms(9_000), IfEvent::Down(net("198.51.100.9/24")));
        let what = s.settled(ms(9_000 + SETTLE)).expect("a change");
        assert!(what.contains("went: 198.51.100.9/24"), "{what}");
    }

    #[test]
    fn addresses_that_keep_changing_are_reported_after_at_most_the_cap() {
        let mut s = with_baseline(&["192.0.2.7/24"]);
        // A flapping address, every 100 ms for 10 s: reported every
        // SETTLE_CAP settle times, not postponed for ever.
        let cap = SETTLE * u64::from(SETTLE_CAP);
        let mut reports = Vec::new();
        for i in 0..100u64 {
            let t = 20_000 + i * 100;
            let e = if i % 2 == 0 {
                IfEvent::Up(net("198.51.100.9/24"))
            } else {
                IfEvent::Down(net("198.51.100.9/24"))
            };
            s.event(ms(t), e);
            // The driver looks at each due time it reaches.
            let next = ms(t + 100);
            while let Some(due) = s.due().filter(|d| *d < next) {
                if let Some(what) = s.settled(due) {
                    reports.push((due, what));
                }
            }
        }
        assert!(!reports.is_empty(), "reported despite the churn");
        let first = reports[0].0;
        assert!(first <= ms(20_000 + cap), "first report at {first:?}");
    }
}
