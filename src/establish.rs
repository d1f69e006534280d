//! The establishment driver: runs the sans-IO [`Racer`](crate::racing::Racer)
//! against real resolvers, stacks and timers. Target-neutral: it reaches the
//! network only through `backend` and time only through `runtime`.

use crate::attempt::{attempt_keeping, socket_options, Reconnect};
use crate::backend::StackInstance;
use crate::backend::{self, Transport};
use crate::capability::{Capabilities, StackId};
use crate::connection::Parts;
use crate::endpoint::{LocalEndpoint, RemoteEndpoint};
use crate::error::{Error, ErrorReason};
use crate::framer::FramerStack;
use crate::properties::TransportProperties;
use crate::racing::race::{Paths, Step};
use crate::racing::{PathSpec, RaceHistory, Racer, RacingConfig, RemoteSpec, Target};
use crate::resolver::Resolver;
use crate::runtime::{self, BoxFuture};
use crate::security::SecurityParameters;
use crate::trace::{RacingTrace, TraceEvent, TraceEventKind};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// A live observer of trace events.
pub type TraceObserver = Arc<dyn Fn(&TraceEvent) + Send + Sync>;

/// The part of a Preconnection an action reads as it was when the action
/// started: shared behind an `Arc` by the Preconnection, its clones and its
/// snapshots, and copied by the Preconnection on its next change
/// (`Arc::make_mut`), so a snapshot never sees a later change.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) locals: Vec<LocalEndpoint>,
    pub(crate) remotes: Vec<RemoteEndpoint>,
    /// Shared with the Connections made from it: a change goes to a copy
    /// (`Arc::make_mut`), so one Initiate costs no copy of the properties.
    pub(crate) props: Arc<TransportProperties>,
    pub(crate) security: SecurityParameters,
    pub(crate) resolver: Arc<dyn Resolver>,
    pub(crate) racing: RacingConfig,
    pub(crate) protocols: Option<Vec<StackId>>,
    pub(crate) observer: Option<TraceObserver>,
}

/// An immutable copy of a Preconnection, taken when an action starts. Its
/// [`Config`]'s fields read through it (`snap.props`).
#[derive(Clone)]
pub(crate) struct Snapshot {
    /// Endpoints, properties, resolver, racing settings (shared, not copied).
    pub(crate) config: Arc<Config>,
    /// The framers as they were when the action started: templates, of
    /// which each attempt and Connection takes fresh instances (shared, not
    /// copied, so an action copies them once per attempt, not once more).
    pub(crate) framers: Arc<FramerStack>,
    /// InitiateWithSend's framed first Message, if safely replayable (0-RTT).
    pub(crate) early_data: Option<Arc<[u8]>>,
    /// What earlier races taught; `None` under isolateSession.
    pub(crate) context: Option<crate::TransportContext>,
    /// Selection's result for the fields above, once computed (it is the
    /// same for every Initiate until the Preconnection changes them).
    pub(crate) selection: crate::preconnection::Selection,
}

impl std::ops::Deref for Snapshot {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

/// A race's remote specs: inline while there is one (the usual race).
type RemoteSpecs = smallvec::SmallVec<[RemoteSpec; 1]>;

/// Turn RemoteEndpoints into the engine's remote specs. With `pass_names`,
/// host names become [`RemoteSpec::Name`] leaves for stacks that resolve
/// them (the browser), else [`RemoteSpec::Host`] for the engine to resolve.
fn remote_specs(remotes: &[RemoteEndpoint], pass_names: bool) -> Result<RemoteSpecs, Error> {
    let mut out = RemoteSpecs::with_capacity(remotes.len());
    for r in remotes {
        if let Some(p) = r.protocol() {
            return Err(Error::invalid_configuration(format!(
                "remote endpoint {r} is specific to {p}; protocol-specific endpoints are raced once a second stack family (QUIC, WebTransport) can share a name"
            )));
        }
        let port = r.port().ok_or_else(|| {
            Error::invalid_configuration(format!("remote endpoint {r} has no port or service"))
        })?;
        match (r.ip_address(), r.host_name()) {
            (Some(ip), _) => out.push(RemoteSpec::Address(SocketAddr::new(ip, port))),
            (None, Some(h)) if pass_names => out.push(RemoteSpec::Name {
                host: h.to_string(),
                port,
            }),
            (None, Some(h)) => out.push(RemoteSpec::Host {
                host: h.to_string(),
                port,
            }),
            (None, None) => {
                return Err(Error::invalid_configuration(format!(
                    "remote endpoint {r} has neither a host name nor an IP address"
                )))
            }
        }
    }
    Ok(out)
}

/// The local address to bind for a remote of this family, if locals were
/// given. A remote by name (the browser's stacks resolve it) takes none.
fn local_for(locals: &[LocalEndpoint], remote: &Target) -> Result<Option<SocketAddr>, String> {
    let remote = match remote {
        Target::Addr(a) => a,
        Target::Name { .. } if locals.is_empty() => return Ok(None),
        Target::Name { host, .. } => {
            return Err(format!(
                "a local endpoint cannot be applied to {host}: the browser resolves the name and \
                 chooses the local address itself"
            ))
        }
    };
    let with_ip: Vec<&LocalEndpoint> = locals.iter().filter(|l| l.ip_address().is_some()).collect();
    if with_ip.is_empty() {
        let port = locals.iter().find_map(|l| l.port());
        return Ok(port.map(|p| {
            let ip: IpAddr = if remote.is_ipv6() {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            };
            SocketAddr::new(ip, p)
        }));
    }
    with_ip
        .iter()
        .find(|l| {
            l.ip_address()
                .is_some_and(|ip| ip.is_ipv6() == remote.is_ipv6())
        })
        .map(|l| {
            Some(SocketAddr::new(
                l.ip_address().expect("ip"),
                l.port().unwrap_or(0),
            ))
        })
        .ok_or_else(|| format!("no local endpoint of the same family as {remote}"))
}

/// The host name of the RemoteEndpoint that gave the address `remote`
/// together with one (a host name and an IP address in one endpoint): the
/// name a certificate is verified for and sent as SNI.
fn named_with(remotes: &[RemoteEndpoint], remote: &Target) -> Option<String> {
    let Target::Addr(a) = remote else {
        return None;
    };
    remotes
        .iter()
        .find(|r| r.ip_address() == Some(a.ip()) && r.port() == Some(a.port()))?
        .host_name()
        .map(str::to_string)
}

struct Emitter {
    observer: Option<TraceObserver>,
    sent: usize,
}

impl Emitter {
    /// Show the observer the race's new events (written out only for it).
    fn flush(&mut self, racer: &Racer) {
        if let Some(o) = &self.observer {
            for e in racer.trace_from(self.sent) {
                o(&e);
            }
        }
        self.sent = racer.trace_len();
    }

    /// Show the observer a trace made outside a race.
    fn flush_trace(&mut self, trace: &RacingTrace) {
        if let Some(o) = &self.observer {
            for e in &trace.events[self.sent..] {
                o(e);
            }
        }
        self.sent = trace.events.len();
    }
}

/// A running resolve: its query and the resolver's answer to come.
type Resolve = (u32, BoxFuture<'static, Result<Vec<IpAddr>, String>>);

/// An attempt's result, and what a Clone needs (handed back by the
/// attempt, which read it).
type AttemptOutput = (
    Result<(Transport, FramerStack, Vec<u8>), crate::attempt::AttemptError>,
    Option<Box<Reconnect>>,
);

/// An attempt's result, tagged with its index among the race's attempts
/// (see [`Slot`]).
type AttemptResult = (usize, AttemptOutput);

/// One started attempt, at its index in the order attempts started: what
/// the driver keeps for it until the race ends. Indexes, rather than the
/// node ids the engine names leaves with, tag the attempts' results, so no
/// id is written for an attempt nobody reads the trace of.
struct Slot {
    /// The leaf (its index in the engine's tree; [`Racer::leaf_id`] names it).
    node: usize,
    /// The attempt, until it ended or was cancelled (dropping it cancels
    /// it: its socket is closed).
    attempt: Option<BoxFuture<'static, AttemptOutput>>,
    /// Polled as it started, in this turn: the turn's wait need not poll
    /// it again (it is woken as any other).
    fresh: bool,
    /// Its stack's cancellation costs more than its completion (see
    /// `finish_losers`); false for an attempt that could not start.
    finish_when_losing: bool,
    /// The attempt connected: its stack, framers, bytes read beyond the
    /// framers' handshake, and what Clone needs.
    done: Option<(Transport, FramerStack, Vec<u8>, Box<Reconnect>)>,
}

/// The race's attempts, by index; inline while there is one (the usual
/// race of a known destination).
type Slots = smallvec::SmallVec<[Slot; 1]>;

/// The slot of the attempt at leaf `node`.
fn slot_of(slots: &mut Slots, node: usize) -> Option<&mut Slot> {
    slots.iter_mut().find(|s| s.node == node)
}

/// Tell the engine how the attempt in slot `i` ended, at `now`: a success
/// keeps what it connected in the slot; a failure's own error is kept as a
/// source for the EstablishmentError.
fn tell_ended(
    racer: &mut Racer,
    slots: &mut Slots,
    sources: &mut Vec<(usize, crate::error::Source)>,
    (i, r): AttemptResult,
    now: Duration,
) {
    let slot = &mut slots[i];
    match r {
        (Ok((t, f, left)), rc) => {
            let rc = rc.expect("a started attempt hands back what Clone needs");
            slot.done = Some((t, f, left, rc));
            racer.attempt_succeeded(now, slot.node);
        }
        (Err((reason, message, source)), _) => {
            if let Some(source) = source {
                sources.retain(|(s, _)| *s != i);
                sources.push((i, source));
            }
            racer.attempt_failed(now, slot.node, reason, message);
        }
    }
}

/// The bound of one establishment: Initiate's timeout, else connTimeout,
/// else the racing configuration's, else
/// [`DEFAULT_ESTABLISHMENT_TIMEOUT`](crate::DEFAULT_ESTABLISHMENT_TIMEOUT).
fn establishment_timeout(
    initiate: Option<Duration>,
    conn_timeout: Option<Duration>,
    racing: Option<Duration>,
) -> Duration {
    initiate
        .or(conn_timeout)
        .or(racing)
        .unwrap_or(crate::preconnection::DEFAULT_ESTABLISHMENT_TIMEOUT)
}

/// How long an attempt left to finish after losing may take before it is
/// cancelled after all.
const FINISH_LIMIT: Duration = Duration::from_secs(10);

/// Let the attempts in `losers` (still running when another candidate won)
/// finish in the background instead of cancelling them, where the
/// platform charges for a cancelled handshake more than for a completed
/// one (Chromium's WebTransport throttle frees a completed handshake's slot
/// at once; a cancelled one counts for about 5 minutes). Each was charged
/// as cancelled when the race ended; one that connects is refunded (its
/// slot is free again) and closed at once, and the context learns that it
/// worked and how long it took (a loser that was merely slower is not held
/// back as broken); one that fails, or is still running after
/// [`FINISH_LIMIT`], stays charged.
fn finish_losers(
    mut attempts: FuturesUnordered<BoxFuture<'static, AttemptResult>>,
    nodes: Vec<String>,
    losers: Vec<crate::racing::AttemptOutcome>,
    context: Option<(crate::TransportContext, crate::context::memory::NetworkTag)>,
    chosen: Vec<Capabilities>,
) {
    let since = runtime::now();
    runtime::spawn(async move {
        let mut pending = losers;
        let deadline = runtime::saturating_add(since, FINISH_LIMIT);
        let mut sleep = Box::pin(runtime::sleep_until(deadline).fuse());
        while !pending.is_empty() {
            let (slot, result) = futures::select! {
                r = attempts.select_next_some() => r,
                _ = sleep => break,
            };
            let node = &nodes[slot];
            let Some(i) = pending.iter().position(|o| o.node == *node) else {
                continue;
            };
            let mut outcome = pending.swap_remove(i);
            // Failed: it stays charged.
            if let (Ok((transport, ..)), _) = result {
                outcome.ran += runtime::now() - since;
                outcome.result = crate::racing::AttemptResult::Won;
                if let Some((c, on)) = &context {
                    c.learn(std::slice::from_ref(&outcome), &chosen, on);
                }
                backend::refund(&outcome);
                // Closed: the page's handshake slot is freed.
                drop(transport);
            }
        }
        // Still running at the limit: cancelled now (dropped), and charged.
    });
}

/// Gather, select and race; return the winner's parts or an EstablishmentError
/// that lists every candidate's failure.
pub(crate) async fn establish(s: &Snapshot, timeout: Option<Duration>) -> Result<Parts, Error> {
    let mut emitter = Emitter {
        observer: s.observer.clone(),
        sent: 0,
    };
    let fail_early = |e: Error, emitter: &mut Emitter| {
        let mut t = RacingTrace::new();
        let mut ev = TraceEvent::new(0.0, TraceEventKind::EstablishmentError, "0");
        ev.reason = Some(format!("{}: {}", e.reason, e.message));
        t.push(ev);
        emitter.flush_trace(&t);
        e
    };
    // Where the platform reports network changes, listen from the first race on.
    backend::watch_path_changes();
    if let Err(e) = backend::check_security(&s.security) {
        return Err(fail_early(e, &mut emitter));
    }
    let chosen: &[Capabilities] = match s.selection.get() {
        Some(c) => c,
        None => match crate::racing::selection::select(
            backend::registry(),
            &s.props,
            &s.security,
            s.framers.frames_messages(&s.props),
            s.protocols.as_deref(),
        ) {
            Ok(c) => s.selection.get_or_init(|| c),
            Err(e) => return Err(fail_early(e, &mut emitter)),
        },
    };
    let mut config = s.racing.clone();
    config.timeout = Some(establishment_timeout(
        timeout,
        s.props.connection.conn_timeout,
        config.timeout,
    ));
    if let Err(e) = config.validate() {
        return Err(fail_early(e, &mut emitter));
    }
    let remotes = match remote_specs(&s.remotes, s.resolver.passes_names_to_stacks()) {
        Ok(r) => r,
        Err(e) => return Err(fail_early(e, &mut emitter)),
    };
    let mut paths: Paths = s
        .locals
        .iter()
        .filter_map(|l| l.interface())
        .map(|i| PathSpec {
            interface: Some(i.to_string()),
        })
        .collect();
    paths.dedup();
    if paths.is_empty() {
        paths.push(PathSpec::default());
    }
    let caps_of = |stack: StackId| -> Capabilities {
        *chosen
            .iter()
            .find(|c| c.stack == stack)
            .expect("the engine races chosen stacks")
    };
    let start = runtime::now();
    let elapsed = || runtime::now() - start;
    // The history, and the network the race starts on (where it is learned).
    let (mut history, learn_on) = match &s.context {
        Some(c) => {
            let (h, on) = c.history_for(&remotes, chosen, config.adaptive_delay);
            (h, Some((c, on)))
        }
        None => (RaceHistory::none(), None),
    };
    history.held.extend(backend::held_by_browser());
    // What a race taught: the context learns every outcome, and the
    // platform is charged for the attempts that cost it (one left to finish
    // is refunded if it connects after all, see `finish_losers`).
    let learn = |racer: &Racer| {
        if backend::CHARGES_ATTEMPTS {
            backend::note_outcomes(&racer.outcomes());
        }
        if let Some((c, on)) = &learn_on {
            c.learn_race(racer, chosen, on);
        }
    };
    // Attempts of a stack whose cancellation costs more than its completion
    // (the browser's WebTransport), still running when another won.
    let mut finishing: Vec<usize> = Vec::new();
    let stacks: smallvec::SmallVec<[StackId; 4]> = chosen.iter().map(|c| c.stack).collect();
    let mut racer = Racer::boxed(config, paths, &stacks, &remotes, history, elapsed());
    drop(remotes);
    // The resolves still running, in the order they started, each with its
    // query (a race of addresses has none; a name has two, AAAA and A).
    let mut resolves: smallvec::SmallVec<[Resolve; 2]> = smallvec::SmallVec::new();
    // A race has a handful of leaves: a small Vec beats a hash map here.
    let mut slots = Slots::new();
    // The stacks' own errors of failed attempts, in the order they failed:
    // the engine keeps reasons in words; these become the candidates'
    // sources if the race fails.
    let mut sources: Vec<(usize, crate::error::Source)> = Vec::new();
    // The engine's next deadline and its timer, kept across turns of the
    // loop and made anew only when the deadline moves (the establishment
    // timeout is a deadline from the start: one timer, not one per turn).
    // Pinned in place (replaced with `set`), not boxed.
    let mut timer_at: Option<Duration> = None;
    let mut timer = std::pin::pin!(Some(runtime::sleep_until(start)).filter(|_| false));
    loop {
        while let Some(step) = racer.poll_step() {
            match step {
                Step::Resolve {
                    query,
                    group,
                    family,
                } => {
                    let host = racer.query_host(group);
                    let mut answer = s.resolver.resolve(host, family);
                    // An answer at hand (a literal, a cache, a static
                    // table) goes to the engine in this turn: the leaves
                    // it brings start now, not a turn of the loop later.
                    match futures::poll!(answer.as_mut()) {
                        std::task::Poll::Ready(result) => racer.handle_input(
                            elapsed(),
                            crate::racing::Input::Resolved { query, result },
                        ),
                        std::task::Poll::Pending => resolves.push((query, answer)),
                    }
                }
                Step::Start { leaf: node } => {
                    let (path, stack, remote) = racer.leaf_start(node);
                    let caps = caps_of(stack);
                    let local = local_for(&s.locals, &remote);
                    let mut finish_when_losing = false;
                    // The attempt, polled once now, so that its first packet
                    // (the SYN, the QUIC Initial) goes out before the rest
                    // of this turn's bookkeeping, which then overlaps the
                    // round trip; or what it ended with at once, which the
                    // engine is told now, as a ready resolve's answer is.
                    let (attempt, ended) = match local {
                        Ok(local) => {
                            let mut opts = socket_options(
                                &s.props,
                                &s.props.connection,
                                local,
                                path.interface.clone(),
                            );
                            if caps.security != crate::capability::SecurityProtocol::None {
                                opts.security = Some(s.security.clone());
                                // The name resolved, else the host name the
                                // application gave with this address.
                                // (Not where the stacks resolve names
                                // themselves, the browser: a name there is
                                // where they connect, not only what they
                                // verify, and the address given would be lost.)
                                opts.server_name = racer.host_of(node).or_else(|| {
                                    (!s.resolver.passes_names_to_stacks())
                                        .then(|| named_with(&s.remotes, &remote))
                                        .flatten()
                                });
                            }
                            // Every 0-RTT-capable leaf gets its own copy (RFC 9623 §5.3).
                            opts.early_data = s.early_data.clone();
                            // TLS sessions are the context's; none when isolated.
                            opts.session_scope = match &s.context {
                                Some(c) => backend::SessionScope::Context(c.id()),
                                None => backend::SessionScope::Isolated,
                            };
                            finish_when_losing = caps.finish_when_losing;
                            // Boxed: the attempt reads it and hands it back
                            // for the Connection's Parts (what Clone needs).
                            let rc = Box::new(Reconnect { caps, remote, opts });
                            let framers = s.framers.for_data_unit(caps.data_unit, &s.props);
                            let mut attempt: BoxFuture<'static, AttemptOutput> =
                                Box::pin(attempt_keeping(rc, framers));
                            match futures::poll!(attempt.as_mut()) {
                                std::task::Poll::Ready(r) => (None, Some(r)),
                                std::task::Poll::Pending => (Some(attempt), None),
                            }
                        }
                        Err(msg) => (
                            None,
                            Some((Err((ErrorReason::EstablishmentFailed, msg, None)), None)),
                        ),
                    };
                    slots.push(Slot {
                        node,
                        fresh: attempt.is_some(),
                        attempt,
                        finish_when_losing,
                        done: None,
                    });
                    if let Some(r) = ended {
                        let i = slots.len() - 1;
                        tell_ended(&mut racer, &mut slots, &mut sources, (i, r), elapsed());
                    }
                }
                Step::Cancel { leaf: node } => {
                    // Still running, of a stack whose cancellation costs
                    // more than its completion, and losing to a winner (not
                    // cut by the timeout).
                    let winner = racer.winner().is_some();
                    if let Some(slot) = slot_of(&mut slots, node) {
                        let finish = winner && slot.attempt.is_some() && slot.finish_when_losing;
                        if finish {
                            // Left to finish in the background (see `finish_losers`).
                            finishing.push(node);
                        } else {
                            // Dropped: cancelled.
                            slot.attempt = None;
                        }
                        // A loser that had already connected is closed by dropping it.
                        slot.done = None;
                    }
                }
                Step::Won { leaf: node } => {
                    emitter.flush(&racer);
                    learn(&racer);
                    let (transport, framers, leftover, reconnect) = slot_of(&mut slots, node)
                        .and_then(|slot| slot.done.take())
                        .expect("the winner connected");
                    for slot in &mut slots {
                        if !finishing.contains(&slot.node) {
                            slot.attempt = None;
                        }
                    }
                    if !finishing.is_empty() {
                        let finishing: Vec<String> =
                            finishing.iter().map(|&n| racer.leaf_id(n)).collect();
                        // What the context and the platform learned from
                        // (nothing, when nobody is taught).
                        let outcomes = if s.context.is_none() && !backend::CHARGES_ATTEMPTS {
                            Vec::new()
                        } else {
                            racer.outcomes()
                        };
                        let losers = outcomes
                            .into_iter()
                            .filter(|o| finishing.contains(&o.node))
                            .collect();
                        // The attempts left to finish (the others were dropped).
                        let attempts: FuturesUnordered<BoxFuture<'static, AttemptResult>> = slots
                            .iter_mut()
                            .enumerate()
                            .filter_map(|(i, slot)| {
                                let fut = slot.attempt.take()?;
                                Some(Box::pin(fut.map(move |r| (i, r))) as BoxFuture<'static, _>)
                            })
                            .collect();
                        finish_losers(
                            attempts,
                            slots
                                .drain(..)
                                .map(|slot| racer.leaf_id(slot.node))
                                .collect(),
                            losers,
                            learn_on.as_ref().map(|(c, on)| ((*c).clone(), on.clone())),
                            chosen.to_vec(),
                        );
                    }
                    // The RemoteEndpoint the winner came from, else the first.
                    let remote = s
                        .remotes
                        .iter()
                        .find(|r| match &reconnect.remote {
                            Target::Addr(a) => r.ip_address() == Some(a.ip()),
                            Target::Name { host, .. } => r.host_name() == Some(host.as_str()),
                        })
                        .or(s.remotes.first())
                        .cloned()
                        .unwrap_or_default();
                    let transport_early = s.early_data.is_some() && transport.early_data();
                    return Ok(Parts {
                        transport,
                        caps: reconnect.caps,
                        framers,
                        leftover,
                        props: Arc::clone(&s.props),
                        trace: racer.into_lazy_trace(),
                        remote,
                        remote_addr: reconnect.remote.addr(),
                        local: s.locals.first().cloned().map(Arc::new),
                        early_sent: transport_early,
                        peer_early_data: false,
                        reconnect: Some(reconnect),
                    });
                }
                Step::Failed(e) => {
                    let mut e = *e;
                    emitter.flush(&racer);
                    learn(&racer);
                    for (slot, source) in sources.drain(..) {
                        e.attach_candidate_source(&racer.leaf_id(slots[slot].node), source);
                    }
                    e.source_from_candidates();
                    return Err(e);
                }
            }
        }
        emitter.flush(&racer);
        let deadline = racer.poll_timeout();
        if timer_at != deadline {
            timer_at = deadline;
            timer.set(deadline.map(|d| runtime::sleep_until(runtime::saturating_add(start, d))));
        }
        let mut fired = false;
        let sleep = async {
            match timer.as_mut().as_pin_mut() {
                Some(t) => t.await,
                None => futures::future::pending::<()>().await,
            }
        };
        // Inputs first, the timer last: the timer is polled, and so
        // registered with the runtime (which may have to wake its driver
        // thread for it), only on a turn when no answer is ready. The order
        // of branches that are ready together was random before (select!)
        // and the engine takes either: an input at or past the overall
        // timeout is ignored for the timeout, which it handles first.
        // The first resolve that answered, in the order they started (none
        // running: never ready).
        let resolved = futures::future::poll_fn(|cx| {
            for i in 0..resolves.len() {
                if let std::task::Poll::Ready(r) = resolves[i].1.as_mut().poll(cx) {
                    let (query, _) = resolves.remove(i);
                    return std::task::Poll::Ready((query, r));
                }
            }
            std::task::Poll::Pending
        });
        // The first attempt that ended, in the order they started (a race
        // has a handful: each is polled in turn, as a set of them would
        // poll the woken ones, without one's allocations per race).
        let attempt_ended = futures::future::poll_fn(|cx| {
            for (i, slot) in slots.iter_mut().enumerate() {
                if std::mem::take(&mut slot.fresh) {
                    continue;
                }
                if let Some(fut) = slot.attempt.as_mut() {
                    if let std::task::Poll::Ready(r) = fut.as_mut().poll(cx) {
                        slot.attempt = None;
                        return std::task::Poll::Ready((i, r));
                    }
                }
            }
            std::task::Poll::Pending
        });
        let mut ended: Option<AttemptResult> = None;
        futures::select_biased! {
            r = resolved.fuse() => {
                racer.handle_input(elapsed(), crate::racing::Input::Resolved { query: r.0, result: r.1 });
            }
            r = attempt_ended.fuse() => ended = Some(r),
            _ = sleep.fuse() => {
                racer.handle_timeout(elapsed());
                fired = true;
            }
        }
        if let Some(ended) = ended {
            tell_ended(&mut racer, &mut slots, &mut sources, ended, elapsed());
        }
        if fired {
            // Done: the next deadline gets a timer of its own.
            timer_at = None;
            timer.set(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn establishment_is_always_bounded_initiate_first_then_conn_timeout() {
        let s = Duration::from_secs;
        assert_eq!(
            establishment_timeout(None, None, None),
            crate::DEFAULT_ESTABLISHMENT_TIMEOUT
        );
        assert_eq!(establishment_timeout(None, None, Some(s(7))), s(7));
        assert_eq!(establishment_timeout(None, Some(s(5)), Some(s(7))), s(5));
        assert_eq!(
            establishment_timeout(Some(s(2)), Some(s(5)), Some(s(7))),
            s(2)
        );
    }
}
