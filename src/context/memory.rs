//! What a TransportContext remembers, and the rules by which it learns and
//! advises: plain data and pure functions. Time is an input, in wall-clock
//! milliseconds since the Unix epoch, so the memory persists across runs
//! and is tested with a virtual clock.
//!
//! Per network (see [`Memory::set_network`]) it keeps:
//! - per target (an address, or a name the browser resolves) and stack: the
//!   smoothed handshake time (RFC 6298's SRTT/RTTVAR over handshake times)
//!   and when an attempt last worked or failed;
//! - per destination (the remote endpoint as the application named it) and
//!   stack: the last win, and consecutive races lost by failing while
//!   another candidate connected, which hold it back with exponential
//!   backoff (5 min, doubling, at most 48 h; like Chromium's broken QUIC);
//! - two blackhole detectors, for IPv6 and for UDP: a sliding window of the
//!   last attempts that either got an answer or stayed silent (go-libp2p's
//!   and rust-libp2p's idea, with a smaller window).
//!
//! The JSON written by [`Memory::to_json`] is the saved format; it is
//! documented in the README ("TransportContext file format").

use crate::capability::{Capabilities, StackId};
use crate::error::{Error, ErrorReason};
use crate::racing::history::{span_text, Outcome, ResultRef};
use crate::racing::{AttemptOutcome, Family, Held, RaceHistory, RemoteSpec};
use crate::racing::{TargetMemory, TargetVerdict};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The `format` field of a saved TransportContext.
pub const FORMAT: &str = "postsocket-transport-context";
/// The version this build writes and reads.
pub const VERSION: u32 = 1;
/// Networks remembered at most (the least recently used goes first).
pub const MAX_NETWORKS: usize = 8;
/// Target and destination records per network, each (least recently used goes first).
pub const MAX_RECORDS: usize = 512;
/// A record not used for this long is forgotten.
pub const RECORD_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a (destination, stack) is held back after its first lost race.
pub const HELD_BASE: Duration = Duration::from_secs(5 * 60);
/// The longest hold (the backoff doubles up to this).
pub const HELD_MAX: Duration = Duration::from_secs(48 * 3600);
/// Attempts a blackhole detector remembers.
pub const DETECTOR_WINDOW: usize = 20;
/// Silent attempts, with no answered one among the remembered, that make a
/// family or UDP count as blackholed.
pub const DETECTOR_SILENT: usize = 5;
/// While blackholed, every this-many-th race probes instead of demoting.
pub const PROBE_EVERY: u32 = 5;
/// The network a context starts on, until the application names one.
pub const DEFAULT_NETWORK: &str = "default";

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One blackhole detector: the last attempts, oldest first (`a`: answered,
/// `s`: silent), and how many races it has demoted since its last probe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Detector {
    #[serde(default)]
    window: String,
    #[serde(default)]
    demoted_races: u32,
}

impl Detector {
    fn push(&mut self, answered: bool) {
        self.window.push(if answered { 'a' } else { 's' });
        let excess = self.window.len().saturating_sub(DETECTOR_WINDOW);
        self.window.drain(..excess);
    }

    fn blackholed(&self) -> bool {
        !self.window.contains('a')
            && self.window.chars().filter(|&c| c == 's').count() >= DETECTOR_SILENT
    }

    /// At a race's start: `Ok(why)` demotes, `Err(why)` probes, `None`: no verdict.
    fn verdict(&mut self, what: &str) -> Option<Result<String, String>> {
        if !self.blackholed() {
            self.demoted_races = 0;
            return None;
        }
        let silent = self.window.len();
        self.demoted_races = self.demoted_races.wrapping_add(1);
        if self.demoted_races % PROBE_EVERY == 0 {
            return Some(Err(format!(
                "{what} seems blackholed on this network (none of its last {silent} attempts answered), but every {PROBE_EVERY}th race probes it: ordered as if it worked"
            )));
        }
        Some(Ok(format!(
            "{what} seems blackholed on this network (none of its last {silent} attempts answered)"
        )))
    }
}

/// What is known of one target reached with one stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TargetRecord {
    target: String,
    stack: StackId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    handshake_us: Option<u64>,
    #[serde(default)]
    handshake_var_us: u64,
    #[serde(default)]
    samples: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_ok_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_bad_ms: Option<u64>,
    last_used_ms: u64,
    /// `target`'s port, parsed once (not saved).
    #[serde(skip)]
    port: PortCache,
}

/// What is known of one destination reached with one stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StackRecord {
    destination: String,
    stack: StackId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_win_ms: Option<u64>,
    /// Races in a row it lost by failing while another candidate connected.
    #[serde(default)]
    failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    held_until_ms: Option<u64>,
    last_used_ms: u64,
    /// `destination`'s port, parsed once (not saved).
    #[serde(skip)]
    port: PortCache,
}

/// A record's port number, parsed from its text the first time it is
/// needed (0: not yet, or none), so that a race compares numbers, not
/// text, with every record of the network it runs on. Equal to any other:
/// a cache never makes two records differ.
#[derive(Debug, Clone, Copy, Default)]
struct PortCache(u16);

impl PartialEq for PortCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for PortCache {}

impl PortCache {
    /// The port of `text` (`ip:port`, `[v6]:port`, `host:port`); 0 if none.
    fn of(text: &str) -> u16 {
        port_of(text).parse().unwrap_or(0)
    }

    /// The port of `text`, its record's, kept.
    fn get(&mut self, text: &str) -> u16 {
        if self.0 == 0 {
            self.0 = Self::of(text);
        }
        self.0
    }

    /// The port of `text`, its record's, kept or parsed now.
    fn peek(&self, text: &str) -> u16 {
        if self.0 != 0 {
            self.0
        } else {
            Self::of(text)
        }
    }
}

/// Everything remembered on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NetworkMemory {
    id: String,
    last_used_ms: u64,
    #[serde(default)]
    ipv6: Detector,
    #[serde(default)]
    udp: Detector,
    #[serde(default)]
    targets: Vec<TargetRecord>,
    #[serde(default)]
    stacks: Vec<StackRecord>,
    /// Which memory of this network this is: a network forgotten
    /// (`Memory::network_changed`) and met again is a new one (not saved).
    #[serde(skip)]
    epoch: u64,
}

impl NetworkMemory {
    fn new(id: &str, now_ms: u64, epoch: u64) -> NetworkMemory {
        NetworkMemory {
            id: id.to_string(),
            last_used_ms: now_ms,
            ipv6: Detector::default(),
            udp: Detector::default(),
            targets: Vec::new(),
            stacks: Vec::new(),
            epoch,
        }
    }

    /// The record of `target` with `stack` (made if there is none);
    /// `port`, when the caller knows it, saves reading it from the text.
    fn target(
        &mut self,
        target: &str,
        port: Option<u16>,
        stack: StackId,
        now_ms: u64,
    ) -> &mut TargetRecord {
        debug_assert!(port.is_none_or(|p| p == PortCache::of(target)), "{target}");
        let port = port.unwrap_or_else(|| PortCache::of(target));
        find_or_insert(
            &mut self.targets,
            MAX_RECORDS,
            now_ms,
            |t| t.stack == stack && t.port.peek(&t.target) == port && t.target == target,
            || TargetRecord {
                target: target.to_string(),
                stack,
                handshake_us: None,
                handshake_var_us: 0,
                samples: 0,
                last_ok_ms: None,
                last_bad_ms: None,
                last_used_ms: now_ms,
                port: PortCache(port),
            },
        )
    }

    /// The record of `stack` to `destination` (made if there is none);
    /// `port` as for [`target`](Self::target).
    fn stack(
        &mut self,
        destination: &str,
        port: Option<u16>,
        stack: StackId,
        now_ms: u64,
    ) -> &mut StackRecord {
        debug_assert!(
            port.is_none_or(|p| p == PortCache::of(destination)),
            "{destination}"
        );
        let port = port.unwrap_or_else(|| PortCache::of(destination));
        find_or_insert(
            &mut self.stacks,
            MAX_RECORDS,
            now_ms,
            |s| {
                s.stack == stack
                    && s.port.peek(&s.destination) == port
                    && s.destination == destination
            },
            || StackRecord {
                destination: destination.to_string(),
                stack,
                last_win_ms: None,
                failures: 0,
                last_failure: None,
                held_until_ms: None,
                last_used_ms: now_ms,
                port: PortCache(port),
            },
        )
    }

    /// Forget the records unused for RECORD_TTL. Times after `now_ms` (a
    /// clock that stepped back since they were saved, or a file written so)
    /// are taken as `now_ms` first, and a hold as at most HELD_MAX from
    /// now: a record is never kept, nor a stack held back, longer than the
    /// bounds say.
    fn expire(&mut self, now_ms: u64) {
        let ttl = ms(RECORD_TTL);
        let clamp = |t: &mut u64| *t = (*t).min(now_ms);
        let clamp_some = |t: &mut Option<u64>| {
            if let Some(t) = t {
                *t = (*t).min(now_ms);
            }
        };
        self.targets.retain_mut(|t| {
            clamp(&mut t.last_used_ms);
            clamp_some(&mut t.last_ok_ms);
            clamp_some(&mut t.last_bad_ms);
            now_ms - t.last_used_ms < ttl
        });
        let held_max = now_ms.saturating_add(ms(HELD_MAX));
        self.stacks.retain_mut(|s| {
            clamp(&mut s.last_used_ms);
            clamp_some(&mut s.last_win_ms);
            if let Some(until) = &mut s.held_until_ms {
                *until = (*until).min(held_max);
            }
            now_ms - s.last_used_ms < ttl
        });
    }
}

/// A record kept while it is used: networks, targets, destinations.
trait Recent {
    fn last_used(&self) -> u64;
    fn touch(&mut self, now_ms: u64);
}

macro_rules! recent {
    ($($t:ty),*) => {$(
        impl Recent for $t {
            fn last_used(&self) -> u64 {
                self.last_used_ms
            }
            fn touch(&mut self, now_ms: u64) {
                self.last_used_ms = now_ms;
            }
        }
    )*};
}
recent!(NetworkMemory, TargetRecord, StackRecord);

/// The record `matches` picks, or a new one from `make` (the least recently
/// used ones making room first, at most `max` kept); marked used at `now_ms`.
fn find_or_insert<T: Recent>(
    records: &mut Vec<T>,
    max: usize,
    now_ms: u64,
    matches: impl Fn(&T) -> bool,
    make: impl FnOnce() -> T,
) -> &mut T {
    let i = match records.iter().position(matches) {
        Some(i) => i,
        None => {
            evict_lru(records, max);
            records.push(make());
            records.len() - 1
        }
    };
    let r = &mut records[i];
    r.touch(now_ms);
    r
}

/// Make room for one more record: drop the least recently used while
/// there are `max` or more.
fn evict_lru<T: Recent>(records: &mut Vec<T>, max: usize) {
    while records.len() >= max.max(1) {
        let oldest = (0..records.len())
            .min_by_key(|&i| records[i].last_used())
            .expect("not empty");
        records.swap_remove(oldest);
    }
}

/// Keep at most `max` records, the most recently used (order kept).
fn keep_recent<T: Recent>(records: &mut Vec<T>, max: usize) {
    if records.len() <= max {
        return;
    }
    let mut times: Vec<u64> = records.iter().map(Recent::last_used).collect();
    times.sort_unstable();
    let threshold = times[times.len() - max];
    records.retain(|r| r.last_used() >= threshold);
    // Ties at the threshold may leave a few more: drop the oldest of them.
    evict_lru(records, max + 1);
}

/// The port at the end of `host:port` text.
fn port_of(text: &str) -> &str {
    text.rsplit_once(':').map_or("", |(_, p)| p)
}

/// Everything a TransportContext remembers, in the saved format: the
/// sans-IO core of [`TransportContext`](crate::TransportContext), which
/// wraps one behind a lock and feeds it the wall clock. Public for those who
/// drive the [`Racer`](crate::racing::Racer) themselves, and for tests with
/// a virtual clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    format: String,
    version: u32,
    /// The network races run on now.
    network: String,
    #[serde(default)]
    networks: Vec<NetworkMemory>,
    /// The last network memory's epoch (see `NetworkMemory::epoch`).
    #[serde(skip)]
    epochs: u64,
}

impl Default for Memory {
    fn default() -> Memory {
        Memory {
            format: FORMAT.to_string(),
            version: VERSION,
            network: DEFAULT_NETWORK.to_string(),
            networks: Vec::new(),
            epochs: 0,
        }
    }
}

/// The network a race started on: its results are learned there, even if
/// the application moved to another meanwhile, and not at all if that
/// network was forgotten meanwhile (they would describe the old one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetworkTag {
    id: String,
    epoch: u64,
}

impl Memory {
    /// Nothing remembered, on the default network.
    pub fn new() -> Memory {
        Memory::default()
    }

    fn current(&mut self, now_ms: u64) -> &mut NetworkMemory {
        // (A network last used "in the future" would never be the least
        // recently used: see `NetworkMemory::expire`.)
        for n in &mut self.networks {
            n.last_used_ms = n.last_used_ms.min(now_ms);
        }
        let id = &self.network;
        let next = self.epochs + 1;
        let net = find_or_insert(
            &mut self.networks,
            MAX_NETWORKS,
            now_ms,
            |n| n.id == *id,
            || NetworkMemory::new(id, now_ms, next),
        );
        if net.epoch == next {
            self.epochs = next;
        }
        net
    }

    /// The network races start on now (made if it is new).
    pub(crate) fn tag(&mut self, now_ms: u64) -> NetworkTag {
        let net = self.current(now_ms);
        NetworkTag {
            id: net.id.clone(),
            epoch: net.epoch,
        }
    }

    /// Races from now on run on network `id`: its memory is kept apart
    /// from the others' (and kept, for when it comes back).
    pub fn set_network(&mut self, id: &str) {
        self.network = id.to_string();
    }

    /// The current network's id.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The current network changed under the same id: forget what was
    /// learned on it.
    pub fn network_changed(&mut self) {
        let id = self.network.clone();
        self.networks.retain(|n| n.id != id);
    }

    /// The verdicts for a race to `destinations` with `stacks`, at `now_ms`.
    /// Counts the race for the blackhole detectors' probing.
    pub fn history_for(
        &mut self,
        destinations: &[String],
        stacks: &[Capabilities],
        adaptive_delay: bool,
        now_ms: u64,
    ) -> RaceHistory {
        // An IPv4 literal cannot use IPv6; a name may.
        let may_use_ipv6 = destinations
            .iter()
            .any(|d| !d.parse::<std::net::SocketAddr>().is_ok_and(|a| a.is_ipv4()));
        self.history_where(
            |d| destinations.iter().any(|x| x == d),
            |port| destinations.iter().any(|d| PortCache::of(d) == port),
            may_use_ipv6,
            stacks,
            adaptive_delay,
            now_ms,
        )
    }

    /// [`history_for`](Self::history_for) the destinations `remotes` name
    /// (as [`RemoteSpec::destination`] writes them), without writing them.
    pub(crate) fn history_for_remotes(
        &mut self,
        remotes: &[RemoteSpec],
        stacks: &[Capabilities],
        adaptive_delay: bool,
        now_ms: u64,
    ) -> RaceHistory {
        use crate::racing::race::AddrText;
        // Written once per remote (on the stack), compared with every record
        // as bytes: an address's text (its port is what follows the last
        // `:`), or a host name and its port's text.
        type Texts<'a> = (Option<&'a str>, AddrText);
        fn texts(r: &RemoteSpec) -> Texts<'_> {
            match r {
                RemoteSpec::Address(a) => (None, AddrText::of(a)),
                RemoteSpec::Host { host, port } | RemoteSpec::Name { host, port } => {
                    (Some(host.as_str()), AddrText::port(*port))
                }
            }
        }
        // As `RemoteSpec::destination` writes them: `ip:port`, `host:port`.
        fn is_destination((host, text): &Texts<'_>, d: &str) -> bool {
            match host {
                None => text.is(d),
                Some(host) => d
                    .strip_prefix(host)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .is_some_and(|p| text.is(p)),
            }
        }
        fn port(r: &RemoteSpec) -> u16 {
            match r {
                RemoteSpec::Address(a) => a.port(),
                RemoteSpec::Host { port, .. } | RemoteSpec::Name { port, .. } => *port,
            }
        }
        // An IPv4 literal cannot use IPv6; a name may.
        let may_use_ipv6 = remotes
            .iter()
            .any(|r| !matches!(r, RemoteSpec::Address(a) if a.is_ipv4()));
        if let [one] = remotes {
            let t = texts(one);
            let p = port(one);
            return self.history_where(
                |d| is_destination(&t, d),
                |q| q == p,
                may_use_ipv6,
                stacks,
                adaptive_delay,
                now_ms,
            );
        }
        let texts: Vec<Texts<'_>> = remotes.iter().map(texts).collect();
        self.history_where(
            |d| texts.iter().any(|t| is_destination(t, d)),
            |q| remotes.iter().any(|r| port(r) == q),
            may_use_ipv6,
            stacks,
            adaptive_delay,
            now_ms,
        )
    }

    /// The verdicts for a race to the destinations `is_destination` picks,
    /// whose ports `on_port` picks (a destination it picks is on such a
    /// port: records on other ports are passed over by their number).
    fn history_where(
        &mut self,
        is_destination: impl Fn(&str) -> bool,
        on_port: impl Fn(u16) -> bool,
        may_use_ipv6: bool,
        stacks: &[Capabilities],
        adaptive_delay: bool,
        now_ms: u64,
    ) -> RaceHistory {
        let net = self.current(now_ms);
        net.expire(now_ms);
        let mut h = RaceHistory {
            adaptive_delay,
            ..RaceHistory::default()
        };
        let ago = |at: u64| Duration::from_millis(now_ms.saturating_sub(at));
        for t in net.targets.iter_mut() {
            if !on_port(t.port.get(&t.target)) {
                continue;
            }
            let t = &*t;
            if let Some(us) = t.handshake_us {
                h.handshakes.push(TargetMemory {
                    target: t.target.clone(),
                    stack: t.stack,
                    handshake: Duration::from_micros(us),
                    handshake_var: Duration::from_micros(t.handshake_var_us),
                    samples: t.samples,
                });
            }
            // A target's verdict: its latest outcome with any stack.
            let last = match (t.last_ok_ms, t.last_bad_ms) {
                (Some(ok), Some(bad)) => Some((ok >= bad, ok.max(bad))),
                (Some(ok), None) => Some((true, ok)),
                (None, Some(bad)) => Some((false, bad)),
                (None, None) => None,
            };
            if let Some((worked, at)) = last {
                // The latest outcome with any stack; at the same moment, a
                // success (the address answered) wins.
                match h.verdicts.iter_mut().find(|v| v.target == t.target) {
                    Some(v) if ago(at) < v.ago || (ago(at) == v.ago && worked) => {
                        v.worked = worked;
                        v.ago = ago(at);
                    }
                    Some(_) => {}
                    None => h.verdicts.push(TargetVerdict {
                        target: t.target.clone(),
                        worked,
                        ago: ago(at),
                    }),
                }
            }
        }
        for s in net.stacks.iter_mut() {
            if !on_port(s.port.get(&s.destination)) || !is_destination(&s.destination) {
                continue;
            }
            let s = &*s;
            let last = s.last_failure.as_deref().unwrap_or("no answer");
            match s.held_until_ms {
                Some(until) if until > now_ms => h.held.push(Held {
                    destination: Some(s.destination.clone()),
                    stack: s.stack,
                    why: format!(
                        "{} to {} held back for {} more: it lost {} race{} in a row by failing while another candidate connected (last: {last})",
                        s.stack,
                        s.destination,
                        span_text(Duration::from_millis(until - now_ms)),
                        s.failures,
                        if s.failures == 1 { "" } else { "s" },
                    ),
                }),
                Some(until) => h.probes.push(format!(
                    "{} to {}: held back until {} ago after {} lost race{}; tried again",
                    s.stack,
                    s.destination,
                    span_text(Duration::from_millis(now_ms - until)),
                    s.failures,
                    if s.failures == 1 { "" } else { "s" },
                )),
                None => {}
            }
        }
        // Counted (for the probe every PROBE_EVERY races) only by a race
        // that could probe IPv6: races to IPv4 literals in between must not
        // keep landing the probe on them.
        if may_use_ipv6 {
            match net.ipv6.verdict("IPv6") {
                Some(Ok(why)) => h.demoted_families.push((Family::V6, why)),
                Some(Err(probe)) => h.probes.push(probe),
                None => {}
            }
        }
        let udp_stacks: Vec<StackId> = stacks
            .iter()
            .filter(|c| c.over_udp)
            .map(|c| c.stack)
            .collect();
        if !udp_stacks.is_empty() {
            match net.udp.verdict("UDP") {
                Some(Ok(why)) => h
                    .demoted_stacks
                    .extend(udp_stacks.into_iter().map(|s| (s, why.clone()))),
                Some(Err(probe)) => h.probes.push(probe),
                None => {}
            }
        }
        h
    }

    /// Learn from a finished race: its attempts' `outcomes`, with `caps`
    /// giving each stack's row.
    pub fn learn(
        &mut self,
        outcomes: &[AttemptOutcome],
        caps: impl Fn(StackId) -> Option<Capabilities>,
        now_ms: u64,
    ) {
        self.learn_from(outcomes, caps, None, now_ms);
    }

    /// [`learn`](Self::learn) from outcomes read in place, on the network
    /// `on` (see [`NetworkTag`]; `None`: the current one).
    pub(crate) fn learn_from<O: Outcome>(
        &mut self,
        outcomes: &[O],
        caps: impl Fn(StackId) -> Option<Capabilities>,
        on: Option<&NetworkTag>,
        now_ms: u64,
    ) {
        let net = match on {
            None => self.current(now_ms),
            Some(tag) => match self
                .networks
                .iter_mut()
                .find(|n| n.id == tag.id && n.epoch == tag.epoch)
            {
                Some(net) => {
                    net.last_used_ms = now_ms;
                    net
                }
                // Forgotten (or evicted) since the race started.
                None => return,
            },
        };
        let won = outcomes.iter().any(|o| o.result() == ResultRef::Won);
        for o in outcomes {
            // Whether the path answered: a success, or silence. Other
            // failures (refused, a TLS alert) say nothing about blackholes.
            let answered = match o.result() {
                ResultRef::Won => Some(true),
                ResultRef::Silent | ResultRef::Failed(ErrorReason::Timeout, _) => Some(false),
                ResultRef::Failed(..) | ResultRef::Cut => None,
            };
            if let Some(answered) = answered {
                if o.family() == Some(Family::V6) {
                    net.ipv6.push(answered);
                }
                let c = caps(o.stack());
                if c.is_some_and(|c| c.over_udp && c.handshake_round_trips > 0) {
                    net.udp.push(answered);
                }
            }
            let t = net.target(o.target(), o.port(), o.stack(), now_ms);
            match o.result() {
                ResultRef::Won => {
                    let r = o.ran().as_micros().min(u64::MAX as u128) as u64;
                    // RFC 6298 §2, over handshake times.
                    match t.handshake_us {
                        None => {
                            t.handshake_us = Some(r);
                            t.handshake_var_us = r / 2;
                        }
                        Some(srtt) => {
                            // Saturating: a restored file may hold any u64.
                            t.handshake_var_us = t
                                .handshake_var_us
                                .saturating_mul(3)
                                .saturating_add(srtt.abs_diff(r))
                                / 4;
                            t.handshake_us = Some(srtt.saturating_mul(7).saturating_add(r) / 8);
                        }
                    }
                    t.samples = t.samples.saturating_add(1);
                    t.last_ok_ms = Some(now_ms);
                }
                // Only silence says the address is unreachable; a refusal
                // or a TLS alert came from it (the stack is to blame, and
                // the stack records below hold it back).
                ResultRef::Silent | ResultRef::Failed(ErrorReason::Timeout, _) => {
                    t.last_bad_ms = Some(now_ms)
                }
                ResultRef::Failed(..) | ResultRef::Cut => {}
            }
        }
        if !won {
            // Nothing connected: the peer may be down; no stack is to blame.
            return;
        }
        // Inline for the usual few (destination, stack) pairs.
        let mut pairs: smallvec::SmallVec<[(&str, StackId, Option<u16>); 2]> =
            smallvec::SmallVec::new();
        for o in outcomes {
            if !pairs
                .iter()
                .any(|(d, s, _)| (*d, *s) == (o.destination(), o.stack()))
            {
                pairs.push((o.destination(), o.stack(), o.port()));
            }
        }
        for (dest, stack, port) in pairs {
            let mine = || {
                outcomes
                    .iter()
                    .filter(move |o| o.destination() == dest && o.stack() == stack)
            };
            let s = net.stack(dest, port, stack, now_ms);
            if mine().any(|o| o.result() == ResultRef::Won) {
                s.last_win_ms = Some(now_ms);
                s.failures = 0;
                s.last_failure = None;
                s.held_until_ms = None;
                continue;
            }
            let failure = mine().find_map(|o| match o.result() {
                ResultRef::Failed(reason, msg) => Some(format!("{reason}: {msg}")),
                ResultRef::Silent => Some(format!(
                    "no answer from {} within {}",
                    o.target(),
                    span_text(o.ran())
                )),
                _ => None,
            });
            if let Some(failure) = failure {
                s.failures = s.failures.saturating_add(1);
                let hold = HELD_BASE
                    .saturating_mul(1 << (s.failures - 1).min(16))
                    .min(HELD_MAX);
                s.held_until_ms = Some(now_ms.saturating_add(ms(hold)));
                s.last_failure = Some(failure);
            }
        }
    }

    /// The saved form: JSON of the format documented in the README.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serializes")
    }

    /// Read a saved form; `what` names where it came from in errors. A
    /// foreign, newer or corrupt text is an error, never a panic; records
    /// beyond the bounds are dropped (least recently used first).
    pub fn from_json(text: &str, what: &str) -> Result<Memory, Error> {
        let bad = |why: String| {
            Error::new(
                ErrorReason::InvalidConfiguration,
                format!("{what} is not a TransportContext this build can read: {why}"),
            )
        };
        // The header first (other fields ignored), so a foreign or newer
        // file is named as such rather than as a parse error deep inside.
        #[derive(Deserialize)]
        struct Header {
            format: Option<String>,
            version: Option<u64>,
        }
        let header: Header =
            serde_json::from_str(text).map_err(|e| bad(format!("not JSON of an object ({e})")))?;
        match header.format.as_deref() {
            Some(FORMAT) => {}
            Some(other) => return Err(bad(format!("its format is `{other}`, not `{FORMAT}`"))),
            None => {
                return Err(bad(format!(
                    "it has no `format` field (expected `{FORMAT}`)"
                )))
            }
        }
        match header.version {
            Some(v) if v == u64::from(VERSION) => {}
            Some(v) => {
                return Err(bad(format!(
                    "it is version {v}; this build reads version {VERSION}"
                )))
            }
            None => return Err(bad("it has no numeric `version` field".into())),
        }
        let mut m: Memory = serde_json::from_str(text).map_err(|e| bad(format!("{e}")))?;
        keep_recent(&mut m.networks, MAX_NETWORKS);
        for n in &mut m.networks {
            m.epochs += 1;
            n.epoch = m.epochs;
        }
        for n in &mut m.networks {
            for d in [&mut n.ipv6, &mut n.udp] {
                d.window.retain(|c| c == 'a' || c == 's');
                let excess = d.window.len().saturating_sub(DETECTOR_WINDOW);
                d.window.drain(..excess);
            }
            keep_recent(&mut n.targets, MAX_RECORDS);
            keep_recent(&mut n.stacks, MAX_RECORDS);
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::racing::{Action, Input, PathSpec, Racer, RacingConfig, RacingMode};
    use std::net::SocketAddr;

    /// A finished race to an IPv4 and an IPv6 address and a name (which
    /// resolves to both): one attempt failed, one stayed silent (the
    /// timeout), one won.
    fn race() -> Racer {
        let config = RacingConfig {
            mode: RacingMode::Simultaneous,
            ..RacingConfig::default()
        };
        let a: SocketAddr = "127.0.0.1:443".parse().unwrap();
        let b: SocketAddr = "[::1]:443".parse().unwrap();
        let mut r = Racer::new(
            config,
            vec![PathSpec::default()],
            vec![StackId::Tcp],
            vec![
                RemoteSpec::Address(a),
                RemoteSpec::Address(b),
                RemoteSpec::Host {
                    host: "example.test".into(),
                    port: 8443,
                },
            ],
            Duration::ZERO,
        );
        let ms = Duration::from_millis;
        let mut started = Vec::new();
        let drain = |r: &mut Racer, started: &mut Vec<String>| {
            while let Some(a) = r.poll_action() {
                if let Action::StartAttempt { node, .. } = a {
                    started.push(node);
                }
            }
        };
        drain(&mut r, &mut started);
        for query in [1, 2] {
            let ip = if query == 1 { "::2" } else { "10.0.0.2" };
            let result = Ok(vec![ip.parse().unwrap()]);
            r.handle_input(ms(5), Input::Resolved { query, result });
            drain(&mut r, &mut started);
        }
        assert_eq!(started.len(), 4, "{started:?}");
        r.handle_input(
            ms(300),
            Input::AttemptFailed {
                node: started[0].clone(),
                reason: ErrorReason::EstablishmentFailed,
                message: "refused".into(),
            },
        );
        r.handle_input(
            ms(400),
            Input::AttemptSucceeded {
                node: started[3].clone(),
            },
        );
        drain(&mut r, &mut started);
        assert!(r.is_finished());
        r
    }

    #[test]
    fn outcomes_read_in_place_teach_what_outcomes_teach() {
        let r = race();
        let outcomes = r.outcomes();
        let views = r.outcome_views();
        assert_eq!(outcomes.len(), 4);
        assert_eq!(views.len(), outcomes.len());
        for (o, v) in outcomes.iter().zip(&views) {
            assert_eq!(o.destination(), v.destination());
            assert_eq!(o.target(), v.target());
            assert_eq!(o.stack(), v.stack());
            assert_eq!(o.family(), v.family());
            assert_eq!(o.ran(), v.ran());
            assert_eq!(o.result(), v.result());
        }
        let caps = |_| Some(Capabilities::TCP);
        let (mut a, mut b) = (Memory::new(), Memory::new());
        a.learn(&outcomes, caps, 1_000);
        b.learn_from(&views, caps, None, 1_000);
        assert_eq!(a, b);
        assert!(a.to_json().contains("example.test:8443"));
    }

    /// Records are matched by port number: a race to port 443 sees the
    /// verdicts of the targets on 443 (of any address), none on 8443 or 44;
    /// a name on 8443 those on 8443; and a restored memory (ports not
    /// parsed yet) answers the same.
    #[test]
    fn records_are_matched_by_their_port_number() {
        let mut m = Memory::new();
        m.learn(&race().outcomes(), |_| Some(Capabilities::TCP), 1_000);
        let targets = |m: &mut Memory, remote: RemoteSpec| -> Vec<String> {
            let h = m.history_for_remotes(&[remote], &[Capabilities::TCP], true, 2_000);
            let mut t: Vec<String> = h.verdicts.into_iter().map(|v| v.target).collect();
            t.sort();
            t
        };
        let at = |s: &str| RemoteSpec::Address(s.parse().unwrap());
        let mut restored = Memory::from_json(&m.to_json(), "test").unwrap();
        for m in [&mut m, &mut restored] {
            // ([::1]:443 stayed silent until the race ended: no verdict.)
            assert_eq!(targets(m, at("127.0.0.1:443")), ["127.0.0.1:443"]);
            assert_eq!(targets(m, at("[::1]:443")), ["127.0.0.1:443"]);
            assert!(targets(m, at("127.0.0.1:44")).is_empty());
            let name = RemoteSpec::Host {
                host: "example.test".into(),
                port: 8443,
            };
            assert_eq!(targets(m, name), ["10.0.0.2:8443", "[::2]:8443"]);
        }
    }

    #[test]
    fn history_for_remotes_is_history_for_their_destinations() {
        let mut m = Memory::new();
        let r = race();
        m.learn(&r.outcomes(), |_| Some(Capabilities::TCP), 1_000);
        let remotes = |specs: &[&str]| -> Vec<RemoteSpec> {
            specs
                .iter()
                .map(|s| match s.parse::<SocketAddr>() {
                    Ok(a) => RemoteSpec::Address(a),
                    Err(_) => {
                        let (host, port) = s.rsplit_once(':').unwrap();
                        RemoteSpec::Host {
                            host: host.into(),
                            port: port.parse().unwrap(),
                        }
                    }
                })
                .collect()
        };
        for specs in [
            &["127.0.0.1:443"][..],
            &["[::1]:443"],
            &["example.test:8443"],
            &["example.test:443"],
            &["example.tes:8443", "127.0.0.1:8443"],
            &["127.0.0.1:44", "[::1]:4433"],
            &["[::1]:443", "example.test:8443", "127.0.0.1:443"],
            &[],
        ] {
            let remotes = remotes(specs);
            let dests: Vec<String> = remotes.iter().map(RemoteSpec::destination).collect();
            let caps = [Capabilities::TCP];
            let (mut a, mut b) = (m.clone(), m.clone());
            let by_text = a.history_for(&dests, &caps, true, 2_000);
            let by_spec = b.history_for_remotes(&remotes, &caps, true, 2_000);
            assert_eq!(by_text, by_spec, "{specs:?}");
            assert_eq!(a, b);
        }
    }

    /// A memory restored from `json`'s network "default" (records only).
    fn restored(network: &str) -> Memory {
        let text = format!(
            r#"{{"format":"{FORMAT}","version":{VERSION},"network":"default","networks":[{network}]}}"#
        );
        Memory::from_json(&text, "test").unwrap()
    }

    /// Times after now (a clock stepped back since the save, or a file
    /// written so) count as now: a stack held back "until u64::MAX" is held
    /// at most HELD_MAX from its first use, and a record last used "at
    /// u64::MAX" expires RECORD_TTL after it; both stayed forever before.
    #[test]
    fn times_in_the_future_count_as_now() {
        let max = u64::MAX;
        let mut m = restored(&format!(
            r#"{{"id":"default","last_used_ms":{max},
                "stacks":[{{"destination":"example.com:443","stack":"quic","failures":1,"held_until_ms":{max},"last_used_ms":{max}}}],
                "targets":[{{"target":"192.0.2.1:443","stack":"tcp","last_ok_ms":{max},"last_used_ms":{max}}}]}}"#
        ));
        let dest = ["example.com:443".to_string()];
        let quic = [Capabilities::QUIC];
        let t0 = 1_000_000;
        let h = m.history_for(&dest, &quic, true, t0);
        assert_eq!(h.held.len(), 1, "held, for now");
        let later = t0 + ms(HELD_MAX) + 1;
        let h = m.history_for(&dest, &quic, true, later);
        assert!(h.held.is_empty(), "held past HELD_MAX: {:?}", h.held);
        let gone = later + ms(RECORD_TTL);
        m.history_for(&dest, &quic, true, gone);
        let json = m.to_json();
        assert!(
            !json.contains("example.com:443") && !json.contains("192.0.2.1:443"),
            "records kept past RECORD_TTL: {json}"
        );
    }

    /// Numbers at the top of their range in a restored file do not panic a
    /// race (debug builds check overflow) nor make it misbehave.
    #[test]
    fn numbers_at_their_limits_in_a_restored_file_do_not_panic() {
        let max = u64::MAX;
        let mut m = restored(&format!(
            r#"{{"id":"default","last_used_ms":0,
                "ipv6":{{"window":"sssss","demoted_races":{}}},
                "targets":[{{"target":"127.0.0.1:443","stack":"tcp","handshake_us":{max},"handshake_var_us":{max},"samples":{},"last_used_ms":0}}]}}"#,
            u32::MAX,
            u32::MAX
        ));
        let h = m.history_for(
            &["example.test:443".into()],
            &[Capabilities::TCP],
            true,
            1_000,
        );
        assert_eq!(
            h.demoted_families.len() + h.probes.len(),
            1,
            "a verdict or a probe"
        );
        let d = crate::racing::history::adaptive_delay(Duration::MAX, Duration::MAX);
        assert_eq!(d, crate::racing::RacingConfig::MAX_ATTEMPT_DELAY);
        let won = AttemptOutcome {
            node: "0".into(),
            destination: "127.0.0.1:443".into(),
            target: "127.0.0.1:443".into(),
            stack: StackId::Tcp,
            family: Some(Family::V4),
            ran: Duration::MAX,
            result: crate::racing::AttemptResult::Won,
        };
        m.learn(
            std::slice::from_ref(&won),
            |_| Some(Capabilities::TCP),
            2_000,
        );
        m.learn(&[won], |_| Some(Capabilities::TCP), 3_000);
    }

    /// Races that cannot use IPv6 (to IPv4 literals) do not count towards
    /// the IPv6 detector's probe: with one race to a name among every 5,
    /// IPv6 is still probed now and then. Before, each race counted, and
    /// the name's race always landed on a demoting turn.
    #[test]
    fn races_that_cannot_use_ipv6_do_not_starve_its_probe() {
        let mut m = restored(
            r#"{"id":"default","last_used_ms":0,"ipv6":{"window":"sssss","demoted_races":0}}"#,
        );
        let caps = [Capabilities::TCP];
        let mut probed = 0;
        for i in 0..20u64 {
            let h = m.history_for(&["example.test:443".into()], &caps, true, 1_000 + i);
            if h.demoted_families.is_empty() {
                probed += 1;
            }
            for _ in 0..4 {
                m.history_for(&["192.0.2.1:443".into()], &caps, true, 1_000 + i);
            }
        }
        assert_eq!(
            probed,
            20 / PROBE_EVERY as usize,
            "every {PROBE_EVERY}th race to the name probes"
        );
    }

    /// A race's results are learned on the network it started on: with
    /// the application moved to "b" meanwhile, its silent IPv6 attempt
    /// counts on "a"; with "a" forgotten meanwhile (its network changed),
    /// nowhere. Before, both went to the network current when it ended.
    #[test]
    fn a_race_is_learned_on_the_network_it_started_on() {
        let silent_v6 = AttemptOutcome {
            node: "0".into(),
            destination: "example.test:443".into(),
            target: "[2001:db8::1]:443".into(),
            stack: StackId::Tcp,
            family: Some(Family::V6),
            ran: Duration::from_millis(250),
            result: crate::racing::AttemptResult::Silent,
        };
        let window = |m: &Memory, id: &str| -> Option<String> {
            m.networks
                .iter()
                .find(|n| n.id == id)
                .map(|n| n.ipv6.window.clone())
        };
        let caps = |_| Some(Capabilities::TCP);
        let mut m = Memory::new();
        m.set_network("a");
        let on_a = m.tag(1_000);
        m.set_network("b");
        m.tag(1_100);
        m.learn_from(std::slice::from_ref(&silent_v6), caps, Some(&on_a), 1_200);
        assert_eq!(window(&m, "a").as_deref(), Some("s"));
        assert_eq!(window(&m, "b").as_deref(), Some(""));

        m.set_network("a");
        let on_old_a = m.tag(2_000);
        m.network_changed();
        m.tag(2_100);
        m.learn_from(
            std::slice::from_ref(&silent_v6),
            caps,
            Some(&on_old_a),
            2_200,
        );
        assert_eq!(
            window(&m, "a").as_deref(),
            Some(""),
            "the new network a learned nothing"
        );
        // A race that started on the new "a" is learned there.
        let on_new_a = m.tag(2_300);
        m.learn_from(
            std::slice::from_ref(&silent_v6),
            caps,
            Some(&on_new_a),
            2_400,
        );
        assert_eq!(window(&m, "a").as_deref(), Some("s"));
    }
}
