//! The candidate tree and the racing state machine (RFC 9623 §4, RFC 8305 / Happy Eyeballs v3).
//!
//! The tree is built root to leaf as paths → protocol stacks → derived
//! endpoints, with dotted ids (`1`, `1.1`, `1.1.2`). Leaves are raced in
//! depth-first order; host names are resolved (AAAA, then A) by the driver.
//! Everything is a pure function of the inputs and the `now` passed in.
use super::history::{adaptive_delay, AttemptOutcome, AttemptResult, RaceHistory, ResultRef};
use super::trace_log::{event, Note, What};
use super::{NodeId, RacingConfig, RacingMode, Time};
use crate::capability::StackId;
use crate::error::{CandidateFailure, Error, ErrorReason};
use crate::trace::{Branch, RacingTrace, TraceEvent, TraceEventKind};
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv6 (AAAA).
    V6,
    /// IPv4 (A).
    V4,
}

/// A network path to race on (top level of the tree).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PathSpec {
    /// Interface name; `None` is the system's default path (shown as `default`).
    pub interface: Option<String>,
}

/// A remote endpoint, as gathered from the RemoteEndpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteSpec {
    /// An IP address and port: a leaf right away.
    Address(SocketAddr),
    /// A host name that must be resolved, AAAA and A separately.
    Host {
        /// The name.
        host: String,
        /// The port.
        port: u16,
    },
    /// A host name handed to the protocol stacks as it is: a leaf right away,
    /// with no resolution. The browser has no DNS API, so its stacks
    /// (WebSocket, WebTransport) take the name and the browser resolves it.
    Name {
        /// The name.
        host: String,
        /// The port.
        port: u16,
    },
}

/// What a leaf connects to: an address, or a name the stack resolves itself
/// ([`RemoteSpec::Name`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An IP address and port.
    Addr(SocketAddr),
    /// A host name and port, resolved by the stack (the browser).
    Name {
        /// The name.
        host: String,
        /// The port.
        port: u16,
    },
}

impl Target {
    /// The address, when this is one.
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            Target::Addr(a) => Some(*a),
            Target::Name { .. } => None,
        }
    }
    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Target::Addr(a) => a.port(),
            Target::Name { port, .. } => *port,
        }
    }
    /// The host as URL authority text: a name, an IPv4 address, or a
    /// bracketed IPv6 address (`[::1]`).
    pub fn host_text(&self) -> String {
        match self {
            Target::Addr(SocketAddr::V6(a)) => format!("[{}]", a.ip()),
            Target::Addr(SocketAddr::V4(a)) => a.ip().to_string(),
            Target::Name { host, .. } => host.clone(),
        }
    }
}

impl RemoteSpec {
    /// The remote endpoint as the application named it, the key under which
    /// a TransportContext remembers it: `host:port`, `ip:port` or `[ip6]:port`.
    pub fn destination(&self) -> String {
        match self {
            RemoteSpec::Address(a) => addr_text(a),
            RemoteSpec::Host { host, port } | RemoteSpec::Name { host, port } => {
                host_port(host, *port)
            }
        }
    }
}

/// A leaf's target as text, the key under which history remembers it:
/// an address's written on the stack, a name's (`host:port`) kept.
#[derive(Debug, Clone)]
enum LeafKey {
    /// An address and port.
    Addr(AddrText),
    /// A name and port.
    Name(String),
}

impl LeafKey {
    fn of(addr: &Target) -> LeafKey {
        match addr {
            Target::Addr(a) => LeafKey::Addr(AddrText::of(a)),
            Target::Name { .. } => LeafKey::Name(addr.to_string()),
        }
    }

    /// Whether the text is `s` (compared as bytes).
    fn is(&self, s: &str) -> bool {
        match self {
            LeafKey::Addr(a) => a.is(s),
            LeafKey::Name(n) => n == s,
        }
    }

    /// The text.
    fn as_str(&self) -> &str {
        match self {
            LeafKey::Addr(a) => a.as_str(),
            LeafKey::Name(n) => n,
        }
    }
}

/// One attempt of a finished race, read in place (see [`Racer::outcome_views`]).
#[derive(Debug)]
pub(crate) struct OutcomeView<'a> {
    destination: &'a str,
    stack: StackId,
    target: &'a str,
    port: u16,
    family: Option<Family>,
    ran: Duration,
    result: ResultRef<'a>,
}

impl super::history::Outcome for OutcomeView<'_> {
    fn destination(&self) -> &str {
        self.destination
    }
    fn stack(&self) -> StackId {
        self.stack
    }
    fn target(&self) -> &str {
        self.target
    }
    fn family(&self) -> Option<Family> {
        self.family
    }
    fn ran(&self) -> Duration {
        self.ran
    }
    fn result(&self) -> ResultRef<'_> {
        self.result
    }
    fn port(&self) -> Option<u16> {
        Some(self.port)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Addr(a) => write!(f, "{a}"),
            Target::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl From<SocketAddr> for Target {
    fn from(a: SocketAddr) -> Target {
        Target::Addr(a)
    }
}

/// Identifies one DNS query the driver runs for the engine.
pub type QueryId = u32;

/// What the driver tells the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A query finished.
    Resolved {
        /// The query (from [`Action::Resolve`]).
        query: QueryId,
        /// The addresses, or why resolution failed.
        result: Result<Vec<IpAddr>, String>,
    },
    /// A leaf's attempt is established (for TLS: after the handshake).
    AttemptSucceeded {
        /// The leaf.
        node: NodeId,
    },
    /// A leaf's attempt failed.
    AttemptFailed {
        /// The leaf.
        node: NodeId,
        /// Why.
        reason: ErrorReason,
        /// What happened.
        message: String,
    },
}

/// What the engine asks the driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Resolve `host` for one family and answer with [`Input::Resolved`].
    Resolve {
        /// Answer with this id.
        query: QueryId,
        /// The path to resolve on.
        path: PathSpec,
        /// The name.
        host: String,
        /// AAAA or A.
        family: Family,
    },
    /// Start a connection attempt and answer with AttemptSucceeded/AttemptFailed.
    StartAttempt {
        /// The leaf.
        node: NodeId,
        /// The path.
        path: PathSpec,
        /// The stack.
        stack: StackId,
        /// The remote address (or, in the browser, name).
        remote: Target,
    },
    /// Stop this attempt and close whatever it opened. No input is expected for it afterwards.
    CancelAttempt {
        /// The leaf.
        node: NodeId,
    },
    /// This leaf won; hand its connection to the application.
    Won {
        /// The leaf.
        node: NodeId,
    },
    /// The establishment failed: every candidate's reason is in the error.
    Failed(Error),
}

/// An action as the engine queues it: leaves by index into the tree,
/// written out as an [`Action`] (ids as text) only by
/// [`Racer::poll_action`]; the crate's own driver takes it as it is
/// ([`Racer::poll_step`]), reading what it names in place
/// ([`Racer::query_host`], [`Racer::leaf_start`]; a leaf's id is
/// [`Racer::leaf_id`]). Every node, path and group it names never changes
/// once made, so the Action reads the same whenever it is written.
#[derive(Debug)]
pub(crate) enum Step {
    /// [`Action::Resolve`].
    Resolve {
        query: QueryId,
        group: usize,
        family: Family,
    },
    /// [`Action::StartAttempt`].
    Start { leaf: usize },
    /// [`Action::CancelAttempt`].
    Cancel { leaf: usize },
    /// [`Action::Won`].
    Won { leaf: usize },
    /// [`Action::Failed`]; boxed: the other actions stay small.
    Failed(Box<Error>),
}

/// Why history ranked a leaf, formatted only when it is traced.
#[derive(Debug, Clone, Copy)]
pub(super) enum RankWhy {
    /// It worked this long ago.
    Worked(Time),
    /// It failed or stayed silent this long ago.
    Failed(Time),
    /// Its family is demoted (index into `RaceHistory::demoted_families`).
    Family(usize),
}

impl RankWhy {
    /// The rank: 0 worked last time, 2 failed or demoted (1: no opinion).
    fn rank(why: Option<RankWhy>) -> u8 {
        match why {
            Some(RankWhy::Worked(_)) => 0,
            None => 1,
            Some(RankWhy::Failed(_) | RankWhy::Family(_)) => 2,
        }
    }
}

/// The state of one leaf's connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeafState {
    /// Not started yet (maybe not startable yet either, see `ready_at`).
    Idle,
    /// The driver runs its attempt.
    Running,
    /// It won.
    Succeeded,
    /// The driver reported a failure.
    Failed,
    /// Cancelled: another leaf won, or the overall timeout expired.
    Cancelled,
}

/// What a node of the candidate tree is.
#[derive(Debug)]
enum Kind {
    /// A network path (level 1).
    Path,
    /// A protocol stack under a path (level 2).
    Protocol,
    /// A host name to resolve (inner endpoint node).
    Host {
        host: String,
        port: u16,
        /// Index into `Racer::groups`.
        group: usize,
        /// Some answer carried at least one address (even if it was capped).
        got_addresses: bool,
        /// Set when resolution failed for this node.
        failed: Option<String>,
        /// `host:port`: the remote endpoint as the application named it,
        /// the destination of the leaves resolved from it.
        destination: String,
    },
    /// An address to connect to (a leaf).
    Leaf {
        addr: Target,
        state: LeafState,
        /// Not startable before this time (the Resolution Delay gate).
        ready_at: Time,
        /// Why it failed (or was cancelled by the timeout).
        failure: Option<(ErrorReason, String)>,
        /// `addr` as text, the key under which history remembers it. The
        /// remote endpoint it came from, as the application named it, is
        /// its parent's (a host name) or this.
        key: LeafKey,
        /// History holds it back: it starts only when nothing else is left.
        held: bool,
        /// Why history ranks it first or last (`None`: no opinion), written
        /// to the trace once the race has more than one leaf (`noted`).
        rank_why: Option<RankWhy>,
        noted: bool,
        /// When it started and ended, and the attempt delay that followed its start.
        started: Option<Time>,
        ended: Option<Time>,
        turn: Time,
    },
}

/// A node's children (or the roots), by index into `Racer::nodes`.
///
/// Inline up to two: a path has one protocol node per stack, a protocol
/// node one child per remote, a host name two addresses, so the usual tree
/// (one stack, one remote) allocates nothing for them. It takes the 24
/// bytes a `Vec` does.
type Children = smallvec::SmallVec<[usize; 2]>;

/// One node of the candidate tree.
#[derive(Debug)]
struct Node {
    /// Its number among its parent's children (or among the roots), from 1:
    /// the last part of its dotted id.
    seq: usize,
    parent: Option<usize>,
    children: Children,
    /// Index into `Racer::paths`.
    path: usize,
    stack: Option<StackId>,
    kind: Kind,
    /// The last number handed to a child (ids stay stable when siblings reorder).
    child_seq: usize,
}

/// One DNS query's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryState {
    Pending,
    Done,
}

/// One (path, host name) pair: resolved once, fanned out to every Host node.
#[derive(Debug)]
struct Group {
    path: usize,
    host: String,
    aaaa: QueryState,
    a: QueryState,
    /// When the A answer arrived while AAAA was still pending.
    a_arrived: Option<Time>,
    /// The Host nodes (one per protocol node and port) this group feeds.
    hosts: Children,
    /// What went wrong, per query (`AAAA: ...`, `A: ...`).
    errors: Vec<String>,
}

impl Group {
    fn pending(&self) -> bool {
        self.aaaa == QueryState::Pending || self.a == QueryState::Pending
    }
}

fn family_of(ip: &IpAddr) -> Family {
    match ip {
        IpAddr::V6(_) => Family::V6,
        IpAddr::V4(_) => Family::V4,
    }
}

fn other(f: Family) -> Family {
    match f {
        Family::V6 => Family::V4,
        Family::V4 => Family::V6,
    }
}

/// Interleave address families (RFC 8305 §4): `first`, other, `first`, ...,
/// keeping the relative order within each family; the rest of the longer
/// family goes at the end.
///
/// Inline for the usual few (a name's two addresses, a few literals).
fn interleave<T>(
    items: impl IntoIterator<Item = T>,
    first: Family,
    family: impl Fn(&T) -> Family,
) -> smallvec::SmallVec<[T; 4]> {
    let (mut a, mut b): (smallvec::SmallVec<[T; 4]>, smallvec::SmallVec<[T; 4]>) =
        Default::default();
    for item in items {
        if family(&item) == first {
            a.push(item);
        } else {
            b.push(item);
        }
    }
    let mut out = smallvec::SmallVec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter(), b.into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
    out
}

/// A stable sort of a few node or stack indexes by a small rank: an
/// insertion sort, far smaller in the browser's .wasm than the standard
/// library's stable sort (a race has a handful of leaves).
fn sort_by_rank(items: &mut [usize], rank: impl Fn(&usize) -> u8) {
    for i in 1..items.len() {
        let mut j = i;
        while j > 0 && rank(&items[j - 1]) > rank(&items[j]) {
            items.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// `seq` in decimal at the end of `id`: one digit by hand, else `to_string`
/// (node ids are made for every leaf of every race, and the formatting
/// machinery costs more).
fn push_seq(id: &mut String, seq: usize) {
    match u8::try_from(seq) {
        Ok(d @ 0..=9) => id.push(char::from(b'0' + d)),
        _ => id.push_str(&seq.to_string()),
    }
}

/// `a` as its `Display` writes it (`127.0.0.1:443`, `[::1]:443`), the key
/// under which history remembers a target (see [`AddrText`]).
fn addr_text(a: &SocketAddr) -> String {
    String::from(AddrText::of(a).as_str())
}

/// A socket address (or a port) as text, written on the stack: the key
/// under which history remembers a target, compared without a String
/// being made for it. The longest, `[ipv6%scope]:port`, is 58 bytes.
#[derive(Clone, Copy)]
pub(crate) struct AddrText {
    buf: [u8; 64],
    len: usize,
}

impl std::fmt::Debug for AddrText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl AddrText {
    fn empty() -> AddrText {
        AddrText {
            buf: [0; 64],
            len: 0,
        }
    }

    /// `a` as its `Display` writes it, by hand: this runs for every leaf
    /// and destination of every race, and `Display` through the formatting
    /// machinery costs several times as much.
    pub(crate) fn of(a: &SocketAddr) -> AddrText {
        let mut t = AddrText::empty();
        match a {
            SocketAddr::V4(v4) => {
                t.push_ipv4(*v4.ip());
                t.push(b':');
                t.push_decimal(v4.port());
            }
            SocketAddr::V6(v6) => {
                t.push(b'[');
                t.push_ipv6(v6.ip());
                if v6.scope_id() != 0 {
                    t.push(b'%');
                    t.push_decimal_u32(v6.scope_id());
                }
                t.push_str("]:");
                t.push_decimal(v6.port());
            }
        }
        t
    }

    /// `port` in decimal, as `to_string` writes it.
    pub(crate) fn port(port: u16) -> AddrText {
        let mut t = AddrText::empty();
        t.push_decimal(port);
        t
    }

    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("ASCII digits and punctuation")
    }

    /// Whether the text is `s` (compared as bytes: no check that they
    /// are text).
    pub(crate) fn is(&self, s: &str) -> bool {
        &self.buf[..self.len] == s.as_bytes()
    }

    /// Whether `s` ends with the text.
    fn ends(&self, s: &str) -> bool {
        s.as_bytes().ends_with(&self.buf[..self.len])
    }

    #[inline(always)]
    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn push_str(&mut self, s: &str) {
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
    }

    fn push_ipv4(&mut self, ip: std::net::Ipv4Addr) {
        let [a, b, c, d] = ip.octets();
        self.push_u8(a);
        self.push(b'.');
        self.push_u8(b);
        self.push(b'.');
        self.push_u8(c);
        self.push(b'.');
        self.push_u8(d);
    }

    /// `n` in decimal.
    #[inline(always)]
    fn push_u8(&mut self, n: u8) {
        if n >= 100 {
            self.push(b'0' + n / 100);
            self.push(b'0' + n / 10 % 10);
        } else if n >= 10 {
            self.push(b'0' + n / 10);
        }
        self.push(b'0' + n % 10);
    }

    /// `ip` as its `Display` writes it (RFC 5952: lowercase hex, the
    /// longest run of two or more zero groups, the first of equals, as
    /// `::`; an IPv4-mapped address as `::ffff:a.b.c.d`).
    fn push_ipv6(&mut self, ip: &std::net::Ipv6Addr) {
        if let Some(v4) = ip.to_ipv4_mapped() {
            self.push_str("::ffff:");
            self.push_ipv4(v4);
            return;
        }
        let groups = ip.segments();
        // The longest run of zero groups (the first of equals).
        let (mut best, mut best_len, mut run, mut run_len) = (0, 0, 0, 0);
        for (i, &g) in groups.iter().enumerate() {
            if g == 0 {
                if run_len == 0 {
                    run = i;
                }
                run_len += 1;
                if run_len > best_len {
                    (best, best_len) = (run, run_len);
                }
            } else {
                run_len = 0;
            }
        }
        let push_groups = |t: &mut AddrText, groups: &[u16]| {
            for (i, &g) in groups.iter().enumerate() {
                if i > 0 {
                    t.push(b':');
                }
                t.push_hex(g);
            }
        };
        if best_len > 1 {
            push_groups(self, &groups[..best]);
            self.push_str("::");
            push_groups(self, &groups[best + best_len..]);
        } else {
            push_groups(self, &groups);
        }
    }

    /// `n` in lowercase hex without leading zeros.
    fn push_hex(&mut self, n: u16) {
        let mut started = false;
        for shift in [12, 8, 4, 0] {
            let d = ((n >> shift) & 0xf) as u8;
            if d != 0 || started || shift == 0 {
                started = true;
                self.push(if d < 10 { b'0' + d } else { b'a' + d - 10 });
            }
        }
    }

    /// `n` in decimal (a scope id).
    fn push_decimal_u32(&mut self, n: u32) {
        match u16::try_from(n) {
            Ok(n) => self.push_decimal(n),
            Err(_) => self.push_str(&n.to_string()),
        }
    }

    /// `n` in decimal (digit by digit: a division by a constant is a
    /// multiplication).
    #[inline(always)]
    fn push_decimal(&mut self, n: u16) {
        if n >= 10_000 {
            self.push(b'0' + (n / 10_000) as u8);
        }
        if n >= 1_000 {
            self.push(b'0' + (n / 1_000 % 10) as u8);
        }
        if n >= 100 {
            self.push(b'0' + (n / 100 % 10) as u8);
        }
        if n >= 10 {
            self.push(b'0' + (n / 10 % 10) as u8);
        }
        self.push(b'0' + (n % 10) as u8);
    }
}

/// `host:port`, as `format!("{host}:{port}")` writes it (by hand: this
/// runs for every host name of every race).
fn host_port(host: &str, port: u16) -> String {
    let mut s = String::with_capacity(host.len() + 6);
    s.push_str(host);
    s.push(':');
    s.push_str(AddrText::port(port).as_str());
    s
}

/// The paths a race runs on: inline while there is one (the usual race).
pub(crate) type Paths = smallvec::SmallVec<[PathSpec; 1]>;

/// The actions decided and not yet polled, oldest first: inline for the
/// usual few (they are polled after every input).
type Actions = smallvec::SmallVec<[Step; 2]>;

/// The racing state machine for one establishment.
///
/// Build it with [`Racer::new`], then after every call to `new`,
/// [`handle_input`](Self::handle_input) or [`handle_timeout`](Self::handle_timeout)
/// drain [`poll_action`](Self::poll_action) and re-arm the timer from
/// [`poll_timeout`](Self::poll_timeout). It never blocks, never reads a clock
/// and never panics on unexpected input: stale or unknown inputs are ignored.
///
/// The tree is paths → protocol stacks → remote endpoints (host names have
/// their resolved addresses as children). Leaves are raced in depth-first
/// tree order; the next leaf is always the first one that is startable and
/// not started yet.
///
/// Details the RFCs leave open, as decided here:
/// - Literal addresses are interleaved by family (v6 first) in the slots the
///   addresses had among the remotes; host names keep their slots. Answers
///   that arrive mid-race are interleaved with the siblings that have not
///   started yet, beginning with the family opposite to the last started
///   sibling (v6 if none started); started siblings keep their places.
///   Node ids are given at creation and never change when siblings reorder.
/// - Leaves beyond [`RacingConfig::max_leaves`] (literal or resolved, in
///   creation order) are dropped silently: no node, no trace event. A host
///   whose addresses were all dropped does not count as a failed candidate.
/// - Staggered: a failure lets the next leaf start at once, even when other
///   attempts still run. If no leaf is startable at that moment, the next
///   leaf to become startable starts at once.
/// - The overall timeout runs from the `now` given to [`Racer::new`]. On
///   timeout the error lists the failures so far, the cancelled attempts and
///   the hosts still waiting for their first answer (all as `Timeout`).
/// - An input whose `now` is at or past the overall timeout is ignored: the
///   timeout is handled first. A `now` older than one already seen is
///   treated as the latest one, so the trace never goes back in time.
#[derive(Debug)]
pub struct Racer {
    config: RacingConfig,
    paths: Paths,
    nodes: Vec<Node>,
    roots: Children,
    groups: Vec<Group>,
    /// `QueryId - 1` indexes this: (group, family).
    queries: Vec<(usize, Family)>,
    actions: Actions,
    /// The trace as recorded, written out as TraceEvents when read.
    notes: Vec<Note>,
    /// The trace written from `notes` (cleared by each new note).
    pub(super) written: OnceLock<RacingTrace>,
    /// The latest time seen (inputs with an older `now` are clamped to it).
    now: Time,
    /// The overall timeout deadline.
    deadline: Option<Time>,
    /// When the most recent attempt started.
    last_start: Option<Time>,
    /// A failure happened and no leaf could start then: the next startable leaf
    /// starts at once (Staggered).
    credit: bool,
    leaves: usize,
    finished: bool,
    winner: Option<usize>,
    /// The winner's id as text, written when [`winner`](Self::winner) is
    /// first asked.
    winner_id: OnceLock<NodeId>,
    /// Why the tree is empty, for the NoCandidates message.
    empty_reason: &'static str,
    /// What the TransportContext remembered when the race started.
    history: RaceHistory,
    /// The attempt delay after the most recent start.
    turn: Time,
}

impl Racer {
    /// Build the tree (paths → protocols → remote endpoints) and start racing at `now`.
    ///
    /// Emits a `candidate` trace event per node, one [`Action::Resolve`] per
    /// family (AAAA first, then A) for each distinct host name per path, and
    /// starts the first startable leaf. With no paths, stacks or remotes the
    /// race fails at once with [`ErrorReason::NoCandidates`].
    pub fn new(
        config: RacingConfig,
        paths: Vec<PathSpec>,
        stacks: Vec<StackId>,
        remotes: Vec<RemoteSpec>,
        now: Time,
    ) -> Racer {
        Racer::with_history(config, paths, stacks, remotes, RaceHistory::none(), now)
    }

    /// [`Racer::new`], applying what a TransportContext remembered:
    /// - stacks in `demoted_stacks` go after the others on every path;
    /// - leaves are ranked within their siblings (after the family
    ///   interleaving): targets that worked last time first, targets that
    ///   failed or stayed silent and demoted families last, keeping the
    ///   order within a rank;
    /// - held-back (destination, stack) leaves start only once no other
    ///   leaf is left to start or running and no name is still resolving;
    /// - with `adaptive_delay`, the delay after a start is
    ///   [`adaptive_delay`] of that stack's remembered handshake time to
    ///   that target, where one is known.
    ///
    /// Every such decision is a trace event (`reordered`, `held_back`,
    /// `attempt_delay`, `probe`) whose reason says what was remembered.
    pub fn with_history(
        config: RacingConfig,
        paths: Vec<PathSpec>,
        stacks: Vec<StackId>,
        remotes: Vec<RemoteSpec>,
        history: RaceHistory,
        now: Time,
    ) -> Racer {
        *Racer::boxed(
            config,
            Paths::from_vec(paths),
            &stacks,
            &remotes,
            history,
            now,
        )
    }

    /// [`Racer::with_history`] for the crate's driver: built in place on
    /// the heap, where it stays (a Connection keeps it for its trace), with
    /// the stacks and remotes read where they are.
    pub(crate) fn boxed(
        config: RacingConfig,
        paths: Paths,
        stacks: &[StackId],
        remotes: &[RemoteSpec],
        history: RaceHistory,
        now: Time,
    ) -> Box<Racer> {
        let empty_reason = if paths.is_empty() {
            "no network path to race on"
        } else if stacks.is_empty() {
            "no protocol stack to race"
        } else if remotes.is_empty() {
            "no remote endpoint to connect to"
        } else {
            "no candidate to race"
        };
        let deadline = config.timeout.map(|t| now.saturating_add(t));
        // Room for the usual tree (a host name brings two addresses), made
        // once rather than grown node by node.
        let per_stack: usize = remotes
            .iter()
            .map(|r| match r {
                RemoteSpec::Host { .. } => 3,
                RemoteSpec::Address(_) | RemoteSpec::Name { .. } => 1,
            })
            .sum();
        let tree = (paths.len() * (1 + stacks.len() * (1 + per_stack))).min(256);
        let mut r = Box::new(Racer {
            config,
            paths,
            nodes: Vec::with_capacity(tree),
            roots: Children::new(),
            groups: Vec::new(),
            queries: Vec::new(),
            actions: Actions::new(),
            notes: Vec::with_capacity(tree + 8),
            written: OnceLock::new(),
            now,
            deadline,
            last_start: None,
            credit: false,
            leaves: 0,
            finished: false,
            winner: None,
            winner_id: OnceLock::new(),
            empty_reason,
            turn: Duration::ZERO,
            history,
        });
        for i in 0..r.history.probes.len() {
            r.note(now, TraceEventKind::Probe, None, What::Probe(i));
        }
        // Stacks that history demotes (UDP blackholed) go last, stably.
        let stacks: smallvec::SmallVec<[StackId; 4]> = if r.history.demoted_stacks.is_empty() {
            stacks.iter().copied().collect()
        } else {
            let demoted: Vec<bool> = stacks.iter().map(|s| r.demotion(*s).is_some()).collect();
            let mut order: Vec<usize> = (0..stacks.len()).collect();
            sort_by_rank(&mut order, |&i| u8::from(demoted[i]));
            order.into_iter().map(|i| stacks[i]).collect()
        };

        // Level-3 order: literal addresses interleaved v6-first in their
        // slots; host names keep their positions.
        // (With one literal address at most, that is the order given.)
        let interleaved: Vec<RemoteSpec>;
        let literals = remotes
            .iter()
            .filter(|r| matches!(r, RemoteSpec::Address(_)))
            .count();
        let ordered: &[RemoteSpec] = if literals <= 1 {
            remotes
        } else {
            let literal: Vec<SocketAddr> = remotes
                .iter()
                .filter_map(|r| match r {
                    RemoteSpec::Address(a) => Some(*a),
                    RemoteSpec::Host { .. } | RemoteSpec::Name { .. } => None,
                })
                .collect();
            let mut literal = interleave(literal, Family::V6, |a| family_of(&a.ip())).into_iter();
            interleaved = remotes
                .iter()
                .map(|r| match r {
                    RemoteSpec::Address(_) => {
                        RemoteSpec::Address(literal.next().expect("same number of addresses"))
                    }
                    host => host.clone(),
                })
                .collect();
            &interleaved
        };

        for p in 0..r.paths.len() {
            let path_node = r.add_node(None, p, None, Kind::Path);
            r.candidate(path_node, Branch::Path);
            for &stack in &stacks {
                let proto = r.add_node(Some(path_node), p, Some(stack), Kind::Protocol);
                r.candidate(proto, Branch::Protocol);
                if r.demotion(stack).is_some() {
                    r.note(now, TraceEventKind::Reordered, Some(proto), What::Demoted);
                }
                for remote in ordered {
                    match remote {
                        RemoteSpec::Address(addr) => {
                            r.add_leaf(proto, Target::Addr(*addr), now);
                        }
                        RemoteSpec::Name { host, port } => {
                            let target = Target::Name {
                                host: host.clone(),
                                port: *port,
                            };
                            r.add_leaf(proto, target, now);
                        }
                        RemoteSpec::Host { host, port } => {
                            let group = r.group_for(p, host);
                            let node = r.add_node(
                                Some(proto),
                                p,
                                Some(stack),
                                Kind::Host {
                                    host: host.clone(),
                                    port: *port,
                                    group,
                                    got_addresses: false,
                                    failed: None,
                                    destination: host_port(host, *port),
                                },
                            );
                            r.groups[group].hosts.push(node);
                            r.candidate(node, Branch::Endpoint);
                        }
                    }
                }
                r.rank_children(proto);
            }
        }

        r.note_ranks();

        // AAAA then A for every (path, host) pair, back to back.
        for g in 0..r.groups.len() {
            for family in [Family::V6, Family::V4] {
                r.queries.push((g, family));
                let query = r.queries.len() as QueryId;
                r.actions.push(Step::Resolve {
                    query,
                    group: g,
                    family,
                });
            }
        }

        r.drive(now);
        r
    }

    /// Feed an outcome: a DNS answer or an attempt's success or failure.
    ///
    /// Inputs for unknown queries or nodes, for leaves that are not running,
    /// and anything after the race finished are ignored. If `now` is at or
    /// past the overall timeout, the timeout is handled first and the input
    /// is ignored.
    pub fn handle_input(&mut self, now: Time, input: Input) {
        let Some(now) = self.input_time(now) else {
            return;
        };
        match input {
            Input::Resolved { query, result } => self.on_resolved(now, query, result),
            Input::AttemptSucceeded { node } => {
                if let Some(leaf) = self.running_leaf(&node) {
                    self.win(now, leaf);
                    return;
                }
            }
            Input::AttemptFailed {
                node,
                reason,
                message,
            } => {
                if let Some(leaf) = self.running_leaf(&node) {
                    self.leaf_failed(now, leaf, reason, message);
                }
            }
        }
        self.drive(now);
    }

    /// [`Input::AttemptSucceeded`] for the leaf at index `leaf` (from a
    /// [`Step`]): no id is written for the input.
    pub(crate) fn attempt_succeeded(&mut self, now: Time, leaf: usize) {
        let Some(now) = self.input_time(now) else {
            return;
        };
        if self.leaf_state(leaf) == Some(LeafState::Running) {
            self.win(now, leaf);
            return;
        }
        self.drive(now);
    }

    /// [`Input::AttemptFailed`] for the leaf at index `leaf` (from a [`Step`]).
    pub(crate) fn attempt_failed(
        &mut self,
        now: Time,
        leaf: usize,
        reason: ErrorReason,
        message: String,
    ) {
        let Some(now) = self.input_time(now) else {
            return;
        };
        if self.leaf_state(leaf) == Some(LeafState::Running) {
            self.leaf_failed(now, leaf, reason, message);
        }
        self.drive(now);
    }

    /// Record that running leaf `leaf` failed.
    fn leaf_failed(&mut self, now: Time, leaf: usize, reason: ErrorReason, message: String) {
        let why = What::Reason(format!("{reason}: {message}"));
        self.note(now, TraceEventKind::AttemptFailed, Some(leaf), why);
        if let Kind::Leaf {
            state,
            failure,
            ended,
            ..
        } = &mut self.nodes[leaf].kind
        {
            *state = LeafState::Failed;
            *failure = Some((reason, message));
            *ended = Some(now);
        }
        // A failed attempt lets the next one start right away.
        self.credit = true;
    }

    /// The time to handle an input at (a `now` older than one already seen
    /// is the latest one), or `None` when the input is ignored: the race
    /// finished, or `now` is at or past the overall timeout (handled here).
    fn input_time(&mut self, now: Time) -> Option<Time> {
        if self.finished {
            return None;
        }
        let now = self.advance(now);
        if self.deadline.is_some_and(|d| now >= d) {
            self.time_out(now);
            return None;
        }
        Some(now)
    }

    /// Feed the clock when the deadline from [`poll_timeout`](Self::poll_timeout) passed.
    ///
    /// Starts whatever is due (stagger, resolution delay) or, at the overall
    /// timeout, cancels every running attempt and fails with
    /// [`ErrorReason::Timeout`]. Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.finished {
            return;
        }
        let now = self.advance(now);
        if self.deadline.is_some_and(|d| now >= d) {
            self.time_out(now);
            return;
        }
        self.drive(now);
    }

    /// The next absolute deadline, if any timer runs: the earliest of the
    /// next start (the later of the stagger delay and the earliest
    /// resolution-delay gate, only when a leaf waits to start) and the
    /// overall timeout. `None` once the race finished. In Failover mode no
    /// start deadline exists while an attempt runs (only an input moves the
    /// race on), so only the overall timeout, if any, is returned.
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.finished {
            return None;
        }
        let mut best = self.deadline;
        let held_ok = self.only_held_left();
        let min_ready = self
            .nodes
            .iter()
            .filter_map(|n| match n.kind {
                Kind::Leaf {
                    state: LeafState::Idle,
                    ready_at,
                    held,
                    ..
                } if !held || held_ok => Some(ready_at),
                _ => None,
            })
            .min();
        if let Some(ready) = min_ready {
            if let Some(allowed) = self.allowed_at() {
                let at = ready.max(allowed);
                best = Some(best.map_or(at, |b| b.min(at)));
            }
        }
        best
    }

    /// The next action for the driver, in the order they were decided.
    pub fn poll_action(&mut self) -> Option<Action> {
        let act = self.poll_step()?;
        Some(match act {
            Step::Resolve {
                query,
                group,
                family,
            } => Action::Resolve {
                query,
                path: self.paths[self.groups[group].path].clone(),
                host: self.groups[group].host.clone(),
                family,
            },
            Step::Start { leaf } => {
                let (path, stack, remote) = self.leaf_start(leaf);
                Action::StartAttempt {
                    node: self.leaf_id(leaf),
                    path,
                    stack,
                    remote,
                }
            }
            Step::Cancel { leaf } => Action::CancelAttempt {
                node: self.leaf_id(leaf),
            },
            Step::Won { leaf } => Action::Won {
                node: self.leaf_id(leaf),
            },
            Step::Failed(e) => Action::Failed(*e),
        })
    }

    /// The host name that the resolution group `group` of a
    /// [`Step::Resolve`] asks for.
    pub(crate) fn query_host(&self, group: usize) -> &str {
        &self.groups[group].host
    }

    /// [`poll_action`](Self::poll_action) for the crate's driver: the
    /// oldest action not yet polled, leaves by index, no id written.
    pub(crate) fn poll_step(&mut self) -> Option<Step> {
        (!self.actions.is_empty()).then(|| self.actions.remove(0))
    }

    /// What starting leaf `leaf` takes: its path, stack and target.
    pub(crate) fn leaf_start(&self, leaf: usize) -> (PathSpec, StackId, Target) {
        let node = &self.nodes[leaf];
        let remote = match &node.kind {
            Kind::Leaf { addr, .. } => addr.clone(),
            _ => unreachable!("only leaves start"),
        };
        (
            self.paths[node.path].clone(),
            node.stack.expect("leaves have a stack"),
            remote,
        )
    }

    /// The dotted id of node `leaf` (the `node` of its Actions and outcomes).
    pub(crate) fn leaf_id(&self, leaf: usize) -> NodeId {
        self.id_text(leaf).into_owned()
    }

    /// The trace so far: every candidate and every attempt, in time order.
    pub fn trace(&self) -> &RacingTrace {
        self.written.get_or_init(|| self.written_trace())
    }

    /// How many events the trace has so far.
    pub(crate) fn trace_len(&self) -> usize {
        self.notes.len()
    }

    /// The trace's events from the `from`th on (those a live observer has
    /// not seen yet), written out one by one.
    pub(crate) fn trace_from(&self, from: usize) -> impl Iterator<Item = TraceEvent> + '_ {
        self.notes.iter().skip(from).map(|n| self.write(n))
    }

    /// The host name of the RemoteEndpoint `node` was derived from: that of
    /// the nearest node up the tree that has one (its candidate event's `host`).
    pub(crate) fn host_of(&self, leaf: usize) -> Option<String> {
        let mut n = Some(leaf);
        while let Some(i) = n {
            match &self.nodes[i].kind {
                Kind::Host { host, .. }
                | Kind::Leaf {
                    addr: Target::Name { host, .. },
                    ..
                } => return Some(host.clone()),
                _ => n = self.nodes[i].parent,
            }
        }
        None
    }

    /// True once Won or Failed has been emitted.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The winning leaf, once [`Action::Won`] was emitted.
    pub fn winner(&self) -> Option<&str> {
        self.winner
            .map(|n| self.winner_id.get_or_init(|| self.leaf_id(n)).as_str())
    }

    /// The leaves whose attempts are running now, in tree order (for a
    /// driver that must close them when it drops the race early).
    pub fn running(&self) -> Vec<NodeId> {
        self.dfs()
            .into_iter()
            .filter(|&n| self.leaf_state(n) == Some(LeafState::Running))
            .map(|n| self.id_text(n).into_owned())
            .collect()
    }

    /// What each started attempt did, in tree order, for the
    /// TransportContext to learn from (meaningful once the race finished;
    /// an attempt still running is left out).
    pub fn outcomes(&self) -> Vec<AttemptOutcome> {
        // At most one per leaf: room for the usual few made once, not grown.
        let mut out = Vec::with_capacity(self.leaves.min(16));
        self.each_in_tree(&mut |n| out.extend(self.outcome(n)));
        out
    }

    /// What node `n`'s attempt did, if it is a leaf whose attempt ended.
    fn outcome(&self, n: usize) -> Option<AttemptOutcome> {
        let v = self.outcome_view(n)?;
        let result = match v.result {
            ResultRef::Won => AttemptResult::Won,
            ResultRef::Failed(reason, message) => {
                AttemptResult::Failed(reason, message.to_string())
            }
            ResultRef::Silent => AttemptResult::Silent,
            ResultRef::Cut => AttemptResult::Cut,
        };
        Some(AttemptOutcome {
            node: self.id_text(n).into_owned(),
            destination: v.destination.to_string(),
            stack: v.stack,
            target: v.target.to_string(),
            family: v.family,
            ran: v.ran,
            result,
        })
    }

    /// [`outcomes`](Self::outcomes), read in place (no text copied), for
    /// the crate's driver to teach the TransportContext.
    pub(crate) fn outcome_views(&self) -> smallvec::SmallVec<[OutcomeView<'_>; 4]> {
        // In the order of the nodes first: with one attempt (the usual
        // race) that is the tree order too, and no walk is needed.
        let mut out: smallvec::SmallVec<[OutcomeView<'_>; 4]> = smallvec::SmallVec::new();
        for n in 0..self.nodes.len() {
            if let Some(v) = self.outcome_view(n) {
                out.push(v);
            }
        }
        if out.len() > 1 {
            out.clear();
            self.each_in_tree(&mut |n| out.extend(self.outcome_view(n)));
        }
        out
    }

    /// What node `n`'s attempt did, if it is a leaf whose attempt ended.
    fn outcome_view(&self, n: usize) -> Option<OutcomeView<'_>> {
        let Kind::Leaf {
            addr,
            state,
            failure,
            started: Some(started),
            ended: Some(ended),
            turn,
            ..
        } = &self.nodes[n].kind
        else {
            return None;
        };
        let ran = ended.saturating_sub(*started);
        let result = match (state, failure) {
            (LeafState::Succeeded, _) => ResultRef::Won,
            (LeafState::Failed, Some((reason, message))) => ResultRef::Failed(*reason, message),
            (LeafState::Cancelled, _) if ran >= *turn => ResultRef::Silent,
            (LeafState::Cancelled, _) => ResultRef::Cut,
            _ => return None,
        };
        let (target, destination) = self.leaf_texts(n)?;
        Some(OutcomeView {
            destination,
            stack: self.nodes[n].stack.expect("leaves have a stack"),
            target,
            port: match addr {
                Target::Addr(a) => a.port(),
                Target::Name { port, .. } => *port,
            },
            family: addr.addr().map(|a| family_of(&a.ip())),
            ran,
            result,
        })
    }

    /// Take the trace out of a (usually finished) race.
    pub fn into_trace(mut self) -> RacingTrace {
        self.written.take().unwrap_or_else(|| self.written_trace())
    }

    /// The trace of a finished race, to be written when first read (a
    /// Connection's: most are never read).
    pub(crate) fn into_lazy_trace(mut self: Box<Self>) -> super::trace_log::LazyTrace {
        // What only racing needed.
        self.actions = Actions::new();
        self.queries = Vec::new();
        self.written = OnceLock::new();
        super::trace_log::LazyTrace::of(self)
    }

    // ---- the trace -----------------------------------------------------

    /// Record one trace event.
    fn note(&mut self, at: Time, kind: TraceEventKind, node: Option<usize>, what: What) {
        self.notes.push(Note {
            at,
            kind,
            node,
            what,
        });
        // A trace written before is out of date (usually none was).
        if self.written.get().is_some() {
            self.written.take();
        }
    }

    /// The whole trace, written out.
    pub(super) fn written_trace(&self) -> RacingTrace {
        RacingTrace {
            events: self.notes.iter().map(|n| self.write(n)).collect(),
        }
    }

    /// One recorded event, written out: the nodes it names never change
    /// once made, nor does the history or the configuration, so it reads
    /// the same whenever it is written.
    fn write(&self, note: &Note) -> TraceEvent {
        let id = note.node.map_or(Cow::Borrowed("0"), |n| self.id_text(n));
        let mut ev = event(note.at, note.kind, &id);
        let node = note.node.map(|n| &self.nodes[n]);
        let text = || match node.map(|n| &n.kind) {
            Some(Kind::Leaf { addr, .. }) => addr.to_string(),
            _ => String::new(),
        };
        let stack = || node.and_then(|n| n.stack).expect("a node with a stack");
        ev.reason = match &note.what {
            What::Plain => None,
            What::Candidate(branch) => {
                let n = node.expect("a candidate is a node");
                ev.parent = n.parent.map(|p| self.id_text(p).into_owned());
                ev.branch = Some(*branch);
                ev.stack = n.stack.map(|s| s.as_str().to_string());
                match &n.kind {
                    Kind::Path => {
                        ev.path = Some(
                            self.paths[n.path]
                                .interface
                                .clone()
                                .unwrap_or_else(|| "default".to_string()),
                        )
                    }
                    Kind::Protocol => {}
                    Kind::Host { host, .. } => ev.host = Some(host.clone()),
                    Kind::Leaf { addr, .. } => {
                        if let Target::Name { host, .. } = addr {
                            ev.host = Some(host.clone());
                        }
                        ev.address = Some(addr.to_string());
                    }
                }
                None
            }
            What::Reason(r) => Some(r.clone()),
            What::Probe(i) => Some(self.history.probes[*i].clone()),
            What::Demoted => {
                let stack = stack();
                let why = self.demotion(stack).unwrap_or_default();
                Some(format!("{stack} after the other stacks: {why}"))
            }
            What::Rank(why) => Some(match *why {
                RankWhy::Worked(ago) => format!(
                    "{} first: it worked {} ago",
                    text(),
                    super::history::span_text(ago)
                ),
                RankWhy::Failed(ago) => format!(
                    "{} later: it failed or stayed silent {} ago",
                    text(),
                    super::history::span_text(ago)
                ),
                RankWhy::Family(i) => {
                    format!("{} later: {}", text(), self.history.demoted_families[i].1)
                }
            }),
            What::Gated(v) => Some(format!(
                "{} waits up to {} for the other family's answer: {} worked last time",
                text(),
                crate::runtime::ms_text(self.config.resolution_delay),
                self.history.verdicts[*v].target,
            )),
            What::Held(i) => Some(self.history.held[*i].why.clone()),
            What::Delay(turn, i) => {
                let m = &self.history.handshakes[*i];
                Some(format!(
                    "next attempt after {} (configured: {}): 1.5 × the smoothed handshake time {} + 2 × its deviation {} of {} to {} over {} handshake{}, within 10 ms ..= 2 s",
                    crate::runtime::ms_text(*turn),
                    crate::runtime::ms_text(self.config.connection_attempt_delay),
                    crate::runtime::ms_text(m.handshake),
                    crate::runtime::ms_text(m.handshake_var),
                    stack(),
                    m.target,
                    m.samples,
                    if m.samples == 1 { "" } else { "s" },
                ))
            }
        };
        ev
    }

    // ---- tree building -------------------------------------------------

    fn add_node(
        &mut self,
        parent: Option<usize>,
        path: usize,
        stack: Option<StackId>,
        kind: Kind,
    ) -> usize {
        let idx = self.nodes.len();
        let seq = match parent {
            None => {
                self.roots.push(idx);
                self.roots.len()
            }
            Some(p) => {
                self.nodes[p].child_seq += 1;
                self.nodes[p].children.push(idx);
                self.nodes[p].child_seq
            }
        };
        self.nodes.push(Node {
            seq,
            parent,
            children: Children::new(),
            path,
            stack,
            kind,
            child_seq: 0,
        });
        idx
    }

    /// Add a leaf under `parent` unless the cap is reached; emits its
    /// candidate event, and the history's verdicts on it. Its destination
    /// is `parent`'s if that is a host name, else the target itself.
    fn add_leaf(&mut self, parent: usize, addr: Target, ready_at: Time) -> Option<usize> {
        let key = LeafKey::of(&addr);
        self.add_leaf_as(parent, addr, key, ready_at)
    }

    /// [`add_leaf`](Self::add_leaf), with `addr` as text already made.
    fn add_leaf_as(
        &mut self,
        parent: usize,
        addr: Target,
        key: LeafKey,
        ready_at: Time,
    ) -> Option<usize> {
        if self.leaves >= self.config.max_leaves {
            // Dropped: RFC 9623 §11 asks to cap the tree. No node, no event.
            return None;
        }
        self.leaves += 1;
        let (path, stack) = (self.nodes[parent].path, self.nodes[parent].stack);
        let stack_id = stack.expect("leaves sit under a protocol node");
        let host_destination = match &self.nodes[parent].kind {
            Kind::Host { destination, .. } => Some(destination.as_str()),
            _ => None,
        };
        // As `RaceHistory::held` finds it, with the texts compared in place.
        let held = self.history.held.iter().position(|h| {
            h.stack == stack_id
                && h.destination
                    .as_deref()
                    .is_none_or(|d| match host_destination {
                        Some(dest) => dest == d,
                        None => key.is(d),
                    })
        });
        let rank_why = self.rank_of(&addr, &key);
        let noted = false;
        let leaf = self.add_node(
            Some(parent),
            path,
            stack,
            Kind::Leaf {
                addr,
                state: LeafState::Idle,
                ready_at,
                failure: None,
                key,
                held: held.is_some(),
                rank_why,
                noted,
                started: None,
                ended: None,
                turn: Duration::ZERO,
            },
        );
        self.candidate(leaf, Branch::Endpoint);
        if let Some(i) = held {
            self.note(
                self.now,
                TraceEventKind::HeldBack,
                Some(leaf),
                What::Held(i),
            );
        }
        Some(leaf)
    }

    /// Leaf `n`'s target as text and its destination (the remote endpoint
    /// it came from, as the application named it).
    fn leaf_texts(&self, n: usize) -> Option<(&str, &str)> {
        let Kind::Leaf { key, .. } = &self.nodes[n].kind else {
            return None;
        };
        let key = key.as_str();
        let parent = self.nodes[n].parent.map(|p| &self.nodes[p].kind);
        let destination = match parent {
            Some(Kind::Host { destination, .. }) => destination.as_str(),
            _ => key,
        };
        Some((key, destination))
    }

    /// Why history ranks a target first or last, if it does.
    fn rank_of(&self, addr: &Target, key: &LeafKey) -> Option<RankWhy> {
        // As `RaceHistory::verdict` finds it, with the texts compared in place.
        if let Some(v) = self.history.verdicts.iter().find(|v| key.is(&v.target)) {
            return Some(if v.worked {
                RankWhy::Worked(v.ago)
            } else {
                RankWhy::Failed(v.ago)
            });
        }
        if let Some(a) = addr.addr() {
            let family = family_of(&a.ip());
            if let Some(i) = self
                .history
                .demoted_families
                .iter()
                .position(|(f, _)| *f == family)
            {
                return Some(RankWhy::Family(i));
            }
        }
        None
    }

    /// Trace why leaves were ranked as they were, once there is more than
    /// one leaf to order (a race with one candidate has nothing to order).
    fn note_ranks(&mut self) {
        if self.leaves < 2 {
            return;
        }
        for n in 0..self.nodes.len() {
            let why = match &mut self.nodes[n].kind {
                Kind::Leaf {
                    rank_why: Some(why),
                    noted,
                    ..
                } if !*noted => {
                    *noted = true;
                    *why
                }
                _ => continue,
            };
            self.note(
                self.now,
                TraceEventKind::Reordered,
                Some(n),
                What::Rank(why),
            );
        }
    }

    /// Why history demotes `stack` on every path, if it does.
    fn demotion(&self, stack: StackId) -> Option<String> {
        self.history
            .demoted_stacks
            .iter()
            .find(|(s, _)| *s == stack)
            .map(|(_, why)| why.clone())
    }

    fn rank(&self, node: usize) -> u8 {
        match self.nodes[node].kind {
            Kind::Leaf { rank_why, .. } => RankWhy::rank(rank_why),
            _ => 1,
        }
    }

    /// Order the leaves among `parent`'s children by history's rank,
    /// stably; other children (host names) keep their slots, and leaves
    /// that started keep theirs.
    fn rank_children(&mut self, parent: usize) {
        let children = &self.nodes[parent].children;
        // Inline for the usual few children: this runs for every protocol
        // node of every race.
        let slots: Children = (0..children.len())
            .filter(|&i| self.leaf_state(children[i]) == Some(LeafState::Idle))
            .collect();
        let mut leaves: Children = slots.iter().map(|&i| children[i]).collect();
        sort_by_rank(&mut leaves, |&c| self.rank(c));
        for (slot, leaf) in slots.into_iter().zip(leaves) {
            self.nodes[parent].children[slot] = leaf;
        }
    }

    /// Record `node`'s candidate event.
    fn candidate(&mut self, node: usize, branch: Branch) {
        self.note(
            self.now,
            TraceEventKind::Candidate,
            Some(node),
            What::Candidate(branch),
        );
    }

    fn group_for(&mut self, path: usize, host: &str) -> usize {
        if let Some(g) = self
            .groups
            .iter()
            .position(|g| g.path == path && g.host == host)
        {
            return g;
        }
        self.groups.push(Group {
            path,
            host: host.to_string(),
            aaaa: QueryState::Pending,
            a: QueryState::Pending,
            a_arrived: None,
            hosts: Children::new(),
            errors: Vec::new(),
        });
        self.groups.len() - 1
    }

    /// Node `n`'s dotted id (`1.1.2`): its parent's id, a dot and its
    /// number, written when read (the trace, an Action, an outcome, a
    /// failure): the crate's driver names leaves by index, so a race that
    /// nobody reads the trace of writes none.
    fn id_text(&self, n: usize) -> Cow<'static, str> {
        let mut id = String::with_capacity(12);
        self.write_id(n, &mut id);
        Cow::Owned(id)
    }

    /// Write node `n`'s dotted id at the end of `out`.
    fn write_id(&self, n: usize, out: &mut String) {
        if let Some(p) = self.nodes[n].parent {
            self.write_id(p, out);
            out.push('.');
        }
        push_seq(out, self.nodes[n].seq);
    }

    /// Every node in depth-first tree order.
    fn dfs(&self) -> Vec<usize> {
        fn visit(nodes: &[Node], n: usize, out: &mut Vec<usize>) {
            out.push(n);
            for &c in &nodes[n].children {
                visit(nodes, c, out);
            }
        }
        // One allocation; the tree is a few levels deep.
        let mut out = Vec::with_capacity(self.nodes.len());
        for &r in &self.roots {
            visit(&self.nodes, r, &mut out);
        }
        out
    }

    /// Call `f` on every node in depth-first tree order (as
    /// [`dfs`](Self::dfs), without collecting the order).
    fn each_in_tree(&self, f: &mut dyn FnMut(usize)) {
        fn visit(nodes: &[Node], n: usize, f: &mut dyn FnMut(usize)) {
            f(n);
            for &c in &nodes[n].children {
                visit(nodes, c, f);
            }
        }
        for &r in &self.roots {
            visit(&self.nodes, r, f);
        }
    }

    /// The first node in depth-first tree order that `pick` picks (as
    /// [`dfs`](Self::dfs), without collecting the order).
    fn first_in_tree(&self, pick: impl Fn(&Node) -> bool) -> Option<usize> {
        fn visit(nodes: &[Node], n: usize, pick: &dyn Fn(&Node) -> bool) -> Option<usize> {
            if pick(&nodes[n]) {
                return Some(n);
            }
            nodes[n]
                .children
                .iter()
                .find_map(|&c| visit(nodes, c, pick))
        }
        self.roots
            .iter()
            .find_map(|&r| visit(&self.nodes, r, &pick))
    }

    fn leaf_state(&self, node: usize) -> Option<LeafState> {
        match self.nodes[node].kind {
            Kind::Leaf { state, .. } => Some(state),
            _ => None,
        }
    }

    fn running_leaf(&self, id: &str) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|&n| self.leaf_state(n) == Some(LeafState::Running))
            .find(|&n| self.id_text(n) == id)
    }

    fn count_running(&self) -> usize {
        (0..self.nodes.len())
            .filter(|&n| self.leaf_state(n) == Some(LeafState::Running))
            .count()
    }

    // ---- resolution ----------------------------------------------------

    fn on_resolved(&mut self, now: Time, query: QueryId, result: Result<Vec<IpAddr>, String>) {
        let Some(&(g, family)) = (query as usize)
            .checked_sub(1)
            .and_then(|i| self.queries.get(i))
        else {
            return;
        };
        let label = match family {
            Family::V6 => "AAAA",
            Family::V4 => "A",
        };
        {
            let group = &mut self.groups[g];
            let state = match family {
                Family::V6 => &mut group.aaaa,
                Family::V4 => &mut group.a,
            };
            if *state == QueryState::Done {
                return;
            }
            *state = QueryState::Done;
            if family == Family::V4 && group.aaaa == QueryState::Pending {
                group.a_arrived = Some(now);
            }
        }
        let addrs = match result {
            Ok(addrs) if addrs.is_empty() => {
                self.groups[g].errors.push(format!("{label}: no addresses"));
                Vec::new()
            }
            Ok(addrs) => addrs,
            Err(msg) => {
                self.groups[g].errors.push(format!("{label}: {msg}"));
                Vec::new()
            }
        };
        // Resolution Delay (RFC 8305 §3): IPv4 leaves wait for AAAA a little.
        let v4_ready = match self.groups[g].a_arrived {
            Some(t) if self.groups[g].aaaa == QueryState::Pending => {
                t.saturating_add(self.config.resolution_delay)
            }
            _ => now,
        };
        // History's Resolution Delay: while the other family's answer is
        // pending, a target of that family worked last time and none of
        // these did, these wait for that answer (up to the Resolution
        // Delay), as RFC 8305 §3 makes A wait for AAAA.
        let waits_for = match family {
            Family::V6 if self.groups[g].a == QueryState::Pending => Some(Family::V4),
            Family::V4 if self.groups[g].aaaa == QueryState::Pending => Some(Family::V6),
            _ => None,
        };
        let hosts = self.groups[g].hosts.clone();
        for &h in &hosts {
            let port = match &mut self.nodes[h].kind {
                Kind::Host {
                    port,
                    got_addresses,
                    ..
                } => {
                    *got_addresses |= !addrs.is_empty();
                    *port
                }
                _ => continue,
            };
            let mut added = false;
            // `:port`, the end of every target text on this port.
            let mut port_suffix = AddrText::empty();
            port_suffix.push(b':');
            port_suffix.push_decimal(port);
            for ip in &addrs {
                let dup = self.nodes[h].children.iter().any(
                    |&c| matches!(&self.nodes[c].kind, Kind::Leaf { addr, .. } if addr.addr().map(|a| a.ip()) == Some(*ip)),
                );
                if dup {
                    continue;
                }
                let mut ready = match family_of(ip) {
                    Family::V6 => now,
                    Family::V4 => v4_ready,
                };
                let target = AddrText::of(&SocketAddr::new(*ip, port));
                let worked_here = self
                    .history
                    .verdicts
                    .iter()
                    .find(|v| target.is(&v.target))
                    .is_some_and(|v| v.worked);
                let worked_there = waits_for.and_then(|other| {
                    self.history.verdicts.iter().position(|v| {
                        v.worked
                            && port_suffix.ends(&v.target)
                            && v.target.starts_with('[') == (other == Family::V6)
                    })
                });
                let mut gated = None;
                if let (false, Some(v)) = (worked_here, worked_there) {
                    ready = ready.max(now.saturating_add(self.config.resolution_delay));
                    gated = Some(v);
                }
                let addr = Target::Addr(SocketAddr::new(*ip, port));
                let leaf = self.add_leaf_as(h, addr, LeafKey::Addr(target), ready);
                if let (Some(leaf), Some(other)) = (leaf, gated) {
                    self.note(
                        now,
                        TraceEventKind::Reordered,
                        Some(leaf),
                        What::Gated(other),
                    );
                }
                added |= leaf.is_some();
            }
            if added {
                self.reorder_children(h);
            }
            self.note_ranks();
        }
        // AAAA is in (answer or error): the Resolution Delay gate of the
        // IPv4 leaves opens; once both are in, history's gate too.
        let complete = !self.groups[g].pending();
        if family == Family::V6 || complete {
            for &h in &hosts {
                for c in self.nodes[h].children.clone() {
                    if let Kind::Leaf {
                        state: LeafState::Idle,
                        ready_at,
                        addr,
                        ..
                    } = &mut self.nodes[c].kind
                    {
                        let v4 = addr.addr().is_some_and(|a| a.is_ipv4());
                        if *ready_at > now && (complete || v4) {
                            *ready_at = now;
                        }
                    }
                }
            }
        }
        if !self.groups[g].pending() {
            let message = self.groups[g].errors.join("; ");
            for &h in &hosts {
                let fail = match &mut self.nodes[h].kind {
                    Kind::Host {
                        got_addresses: false,
                        failed,
                        ..
                    } if failed.is_none() => {
                        *failed = Some(message.clone());
                        true
                    }
                    _ => false,
                };
                if fail {
                    let why = What::Reason(format!("{}: {message}", ErrorReason::ResolutionFailed));
                    self.note(now, TraceEventKind::AttemptFailed, Some(h), why);
                }
            }
        }
    }

    /// Re-sort a Host node's children after new answers: started ones keep
    /// their place at the front; the others are interleaved by family,
    /// starting with the family opposite to the last started one (v6 when
    /// none started), keeping the order within each family.
    fn reorder_children(&mut self, h: usize) {
        let children = std::mem::take(&mut self.nodes[h].children);
        // Inline for the usual few children (a name's two addresses).
        let (mut started, idle): (Children, Children) = children
            .into_iter()
            .partition(|&c| self.leaf_state(c) != Some(LeafState::Idle));
        let fam = |c: &usize| match &self.nodes[*c].kind {
            Kind::Leaf {
                addr: Target::Addr(a),
                ..
            } => family_of(&a.ip()),
            _ => Family::V6,
        };
        let first = started.last().map_or(Family::V6, |c| other(fam(c)));
        let mut idle = interleave(idle, first, fam);
        sort_by_rank(&mut idle, |&c| self.rank(c));
        started.extend(idle);
        self.nodes[h].children = started;
    }

    // ---- racing --------------------------------------------------------

    fn advance(&mut self, now: Time) -> Time {
        if now > self.now {
            self.now = now;
        }
        self.now
    }

    /// When the racing mode lets the next leaf start (ignoring readiness).
    fn allowed_at(&self) -> Option<Time> {
        let running = self.count_running();
        match self.config.mode {
            RacingMode::Simultaneous => Some(self.now),
            RacingMode::Failover => (running == 0).then_some(self.now),
            RacingMode::Staggered => {
                if running == 0 || self.credit {
                    Some(self.now)
                } else {
                    Some(
                        self.last_start
                            .map_or(self.now, |t| t.saturating_add(self.turn)),
                    )
                }
            }
        }
    }

    /// The first startable, not yet started leaf in tree order. Held-back
    /// leaves are startable only when [`only_held_left`](Self::only_held_left).
    fn next_startable(&self, now: Time) -> Option<usize> {
        let held_ok = self.only_held_left();
        self.first_in_tree(|n| {
            matches!(n.kind, Kind::Leaf { state: LeafState::Idle, ready_at, held, .. } if ready_at <= now && (!held || held_ok))
        })
    }

    /// No leaf that is not held back is waiting or running, and no name is
    /// still resolving (it could bring more): the held-back leaves may go.
    fn only_held_left(&self) -> bool {
        !self.groups.iter().any(Group::pending)
            && !self.nodes.iter().any(|n| {
                matches!(
                    n.kind,
                    Kind::Leaf {
                        state: LeafState::Idle | LeafState::Running,
                        held: false,
                        ..
                    }
                )
            })
    }

    /// Start whatever may start now, then check whether the race is lost.
    fn drive(&mut self, now: Time) {
        while !self.finished {
            if self.allowed_at().is_none_or(|t| t > now) {
                break;
            }
            let Some(leaf) = self.next_startable(now) else {
                break;
            };
            self.start(now, leaf);
        }
        self.check_lost(now);
    }

    fn start(&mut self, now: Time, leaf: usize) {
        let stack = self.nodes[leaf].stack.expect("leaves have a stack");
        let remembered = match &self.nodes[leaf].kind {
            Kind::Leaf { key, .. } if self.history.adaptive_delay => self
                .history
                .handshakes
                .iter()
                .position(|m| m.stack == stack && key.is(&m.target)),
            _ => None,
        };
        let turn = match remembered {
            Some(i) => {
                let m = &self.history.handshakes[i];
                adaptive_delay(m.handshake, m.handshake_var)
            }
            None => self.config.connection_attempt_delay,
        };
        let node = &mut self.nodes[leaf];
        let Kind::Leaf {
            state,
            started,
            turn: leaf_turn,
            ..
        } = &mut node.kind
        else {
            return;
        };
        *state = LeafState::Running;
        *started = Some(now);
        *leaf_turn = turn;
        self.credit = false;
        self.last_start = Some(now);
        self.turn = turn;
        self.note(now, TraceEventKind::AttemptStarted, Some(leaf), What::Plain);
        // The delay matters (and is traced) only if something may start after it.
        let waiting = self.groups.iter().any(Group::pending)
            || self.nodes.iter().any(|n| {
                matches!(
                    n.kind,
                    Kind::Leaf {
                        state: LeafState::Idle,
                        ..
                    }
                )
            });
        if let (Some(i), RacingMode::Staggered, true) = (remembered, self.config.mode, waiting) {
            self.note(
                now,
                TraceEventKind::AttemptDelay,
                Some(leaf),
                What::Delay(turn, i),
            );
        }
        self.actions.push(Step::Start { leaf });
    }

    fn cancel_running(&mut self, now: Time, except: Option<usize>, why: Option<String>) {
        let others = (0..self.nodes.len())
            .any(|n| Some(n) != except && self.leaf_state(n) == Some(LeafState::Running));
        if !others {
            return; // nothing to cancel (the usual win: the only attempt)
        }
        for n in self.dfs() {
            if Some(n) == except || self.leaf_state(n) != Some(LeafState::Running) {
                continue;
            }
            if let Kind::Leaf {
                state,
                failure,
                ended,
                ..
            } = &mut self.nodes[n].kind
            {
                *state = LeafState::Cancelled;
                *failure = why.clone().map(|m| (ErrorReason::Timeout, m));
                *ended = Some(now);
            }
            let what = match &why {
                Some(m) => What::Reason(format!("{}: {m}", ErrorReason::Timeout)),
                None => What::Plain,
            };
            self.note(now, TraceEventKind::AttemptCancelled, Some(n), what);
            self.actions.push(Step::Cancel { leaf: n });
        }
    }

    fn win(&mut self, now: Time, leaf: usize) {
        if let Kind::Leaf { state, ended, .. } = &mut self.nodes[leaf].kind {
            *state = LeafState::Succeeded;
            *ended = Some(now);
        }
        self.note(
            now,
            TraceEventKind::AttemptSucceeded,
            Some(leaf),
            What::Plain,
        );
        self.note(now, TraceEventKind::Won, Some(leaf), What::Plain);
        self.cancel_running(now, Some(leaf), None);
        self.actions.push(Step::Won { leaf });
        self.winner = Some(leaf);
        self.finished = true;
    }

    /// Fail when nothing is running, nothing is left to start and no query is pending.
    fn check_lost(&mut self, now: Time) {
        if self.finished || self.groups.iter().any(Group::pending) {
            return;
        }
        let open = (0..self.nodes.len()).any(|n| {
            matches!(
                self.leaf_state(n),
                Some(LeafState::Idle | LeafState::Running)
            )
        });
        if open {
            return;
        }
        let candidates = self.failures(false);
        let n = candidates.len();
        let (reason, message) = if n == 0 {
            (ErrorReason::NoCandidates, self.empty_reason.to_string())
        } else if candidates
            .iter()
            .all(|c| c.reason == ErrorReason::ResolutionFailed)
        {
            (
                ErrorReason::ResolutionFailed,
                format!("all {n} candidates failed"),
            )
        } else {
            (
                ErrorReason::EstablishmentFailed,
                format!("all {n} candidates failed"),
            )
        };
        self.fail(now, Error::new(reason, message).with_candidates(candidates));
    }

    fn time_out(&mut self, now: Time) {
        let limit = self.config.timeout.unwrap_or_default();
        let why = format!(
            "no candidate succeeded within {}",
            crate::runtime::ms_text(limit)
        );
        self.cancel_running(now, None, Some(why.clone()));
        let candidates = self.failures(true);
        self.fail(
            now,
            Error::new(
                ErrorReason::Timeout,
                format!(
                    "establishment timed out after {}",
                    crate::runtime::ms_text(limit)
                ),
            )
            .with_candidates(candidates),
        );
    }

    /// Failed nodes in tree order. With `timed_out`, Host nodes still
    /// waiting for their first answer are listed too (reason Timeout).
    fn failures(&self, timed_out: bool) -> Vec<CandidateFailure> {
        let mut out = Vec::new();
        for n in self.dfs() {
            let node = &self.nodes[n];
            let stack = node.stack.map(|s| s.as_str().to_string());
            match &node.kind {
                Kind::Leaf {
                    addr,
                    failure: Some((reason, message)),
                    ..
                } => out.push(CandidateFailure::new(
                    self.id_text(n).into_owned(),
                    stack,
                    Some(addr.to_string()),
                    *reason,
                    message.clone(),
                )),
                Kind::Host {
                    host,
                    failed,
                    group,
                    got_addresses,
                    ..
                } => {
                    let failure = match failed {
                        Some(m) => Some((ErrorReason::ResolutionFailed, m.clone())),
                        None if timed_out && !got_addresses && self.groups[*group].pending() => {
                            Some((
                                ErrorReason::Timeout,
                                "resolution did not finish".to_string(),
                            ))
                        }
                        None => None,
                    };
                    if let Some((reason, message)) = failure {
                        out.push(CandidateFailure::new(
                            self.id_text(n).into_owned(),
                            stack,
                            Some(host.clone()),
                            reason,
                            message,
                        ));
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn fail(&mut self, now: Time, error: Error) {
        let why = What::Reason(format!("{}: {}", error.reason, error.message));
        self.note(now, TraceEventKind::EstablishmentError, None, why);
        self.actions.push(Step::Failed(Box::new(error)));
        self.finished = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for a in [
            "0.0.0.0:0",
            "127.0.0.1:443",
            "10.20.255.9:65535",
            "1.2.3.4:80",
            "100.99.10.9:10000",
            "9.90.199.200:1000",
            "[::1]:443",
            "[fe80::1%2]:8080",
            "[::ffff:1.2.3.4]:9",
            "[::]:1",
            "[2001:db8::1]:443",
            "[2001:db8:0:0:1:0:0:1]:80",
            "[fe80::1%4294967295]:8080",
            "[1:0:1:0:1:0:1:0]:65535",
            "[::ffff:0:1.2.3.4]:9",
            "[0:0:0:0:0:0:1.2.3.4]:9",
        ] {
            let a: std::net::SocketAddr = a.parse().unwrap();
            assert_eq!(super::addr_text(&a), a.to_string());
        }
    }

    #[test]
    fn ipv6_addresses_are_written_as_display_writes_them() {
        // Every pattern of zero and non-zero groups, with values of every
        // hex length, and a spread of scope ids and ports.
        let values = [0u16, 0x1, 0xa, 0x1f, 0xabc, 0xffff, 0x100, 0x1000];
        let mut seed = 1u32;
        for zeros in 0u32..256 {
            for v in 0..4 {
                let mut groups = [0u16; 8];
                for (i, g) in groups.iter_mut().enumerate() {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    if zeros & (1 << i) == 0 {
                        *g = values[1 + (seed >> 16) as usize % (values.len() - 1)];
                    }
                }
                if v == 3 {
                    groups[..6].copy_from_slice(&[0, 0, 0, 0, 0, 0xffff]);
                }
                let ip = std::net::Ipv6Addr::from(groups);
                let scope = [0, 1, 65_535, 65_536, u32::MAX][v % 5 + (zeros as usize % 2)];
                let port = [0, 9, 443, 65_535][v];
                let a = std::net::SocketAddr::V6(std::net::SocketAddrV6::new(ip, port, 0, scope));
                assert_eq!(super::addr_text(&a), a.to_string());
            }
        }
    }

    #[test]
    fn numbers_are_written_as_to_string_writes_them() {
        for seq in [0, 1, 9, 10, 12, 300, usize::MAX] {
            let mut id = String::from("1.");
            push_seq(&mut id, seq);
            assert_eq!(id, format!("1.{seq}"));
        }
    }

    #[test]
    fn ids_are_the_parent_id_dot_the_number() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:1".parse().unwrap();
        let r = Racer::new(
            RacingConfig::default(),
            vec![PathSpec::default()],
            vec![StackId::Tcp, StackId::Quic],
            vec![
                RemoteSpec::Address(a),
                RemoteSpec::Host {
                    host: "example.test".into(),
                    port: 1,
                },
                RemoteSpec::Address(b),
            ],
            Time::ZERO,
        );
        let ids: Vec<(String, bool)> = (0..r.nodes.len())
            .map(|n| (r.id_text(n).into_owned(), r.leaf_state(n).is_some()))
            .collect();
        let leaf = |id: &str| ids.iter().find(|(i, _)| i == id).expect(id).1;
        for id in ["1", "1.1", "1.2", "1.1.2", "1.2.2"] {
            assert!(!leaf(id), "{id} is not a leaf");
        }
        for id in ["1.1.1", "1.1.3", "1.2.1", "1.2.3"] {
            assert!(leaf(id), "{id} is a leaf");
        }
        assert_eq!(ids.len(), 9);
        // The trace names nodes and their parents by the same ids.
        let t = r.trace();
        let e = t.events.iter().find(|e| e.id == "1.2.3").expect("1.2.3");
        assert_eq!(e.parent.as_deref(), Some("1.2"));
    }
}
