//! Scripted, virtual-time tests of the sans-IO racing engine.
//!
//! The same scripts run natively (`cargo test`) and compiled to wasm32 in
//! headless Chromium (`cargo test --target wasm32-unknown-unknown --test
//! racing_engine`, run by scripts/test.sh): there `#[test]` is
//! wasm-bindgen-test's. The proptest invariants run natively only.

#[cfg(web)]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(web)]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use postsocket::racing::*;
use postsocket::trace::*;
use postsocket::{ErrorReason, StackId};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

// ---- harness ------------------------------------------------------------

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn lit(s: &str) -> RemoteSpec {
    RemoteSpec::Address(addr(s))
}

fn host(name: &str, port: u16) -> RemoteSpec {
    RemoteSpec::Host {
        host: name.into(),
        port,
    }
}

fn default_path() -> Vec<PathSpec> {
    vec![PathSpec::default()]
}

/// A compact, comparable rendering of an action.
fn show(a: &Action) -> String {
    match a {
        Action::Resolve {
            query,
            host,
            family,
            path,
        } => format!(
            "resolve {query} {host} {family:?} {}",
            path.interface.as_deref().unwrap_or("default")
        ),
        Action::StartAttempt {
            node,
            stack,
            remote,
            ..
        } => format!("start {node} {stack} {remote}"),
        Action::CancelAttempt { node } => format!("cancel {node}"),
        Action::Won { node } => format!("won {node}"),
        Action::Failed(e) => format!("failed {}", e.reason),
    }
}

/// Owns a Racer and a virtual clock; collects every action with its time.
struct Sim {
    racer: Racer,
    now: Duration,
    log: Vec<(Duration, Action)>,
    /// Deadlines seen after each handle_timeout since the last input.
    deadlines: Vec<Duration>,
}

impl Sim {
    fn new(
        config: RacingConfig,
        paths: Vec<PathSpec>,
        stacks: Vec<StackId>,
        remotes: Vec<RemoteSpec>,
    ) -> Sim {
        let racer = Racer::new(config, paths, stacks, remotes, Duration::ZERO);
        let mut sim = Sim {
            racer,
            now: Duration::ZERO,
            log: Vec::new(),
            deadlines: Vec::new(),
        };
        sim.drain();
        sim
    }

    fn tcp(config: RacingConfig, remotes: Vec<RemoteSpec>) -> Sim {
        Sim::new(config, default_path(), vec![StackId::Tcp], remotes)
    }

    fn drain(&mut self) {
        while let Some(a) = self.racer.poll_action() {
            self.log.push((self.now, a));
        }
        if let Some(d) = self.racer.poll_timeout() {
            assert!(d >= self.now, "deadline {d:?} before now {:?}", self.now);
        }
    }

    /// Process every deadline up to and including `t`, in order.
    fn advance_to(&mut self, t: Duration) {
        let mut guard = 0;
        while let Some(d) = self.racer.poll_timeout() {
            if d > t {
                break;
            }
            assert!(
                d >= self.now,
                "deadline {d:?} is in the past (now {:?})",
                self.now
            );
            guard += 1;
            assert!(guard < 10_000, "timer loop does not progress at {d:?}");
            self.now = d;
            self.racer.handle_timeout(d);
            self.drain();
            // As time alone advances, deadlines only move forward.
            if let Some(next) = self.racer.poll_timeout() {
                assert!(next > d, "deadline {next:?} not after {d:?}");
                if let Some(&last) = self.deadlines.last() {
                    assert!(next >= last, "deadline went back: {last:?} -> {next:?}");
                }
                self.deadlines.push(next);
            }
        }
        if t > self.now {
            self.now = t;
        }
    }

    fn input(&mut self, t: Duration, input: Input) {
        self.advance_to(t);
        self.racer.handle_input(t, input);
        self.deadlines.clear();
        self.drain();
    }

    fn ok(&mut self, t: u64, node: &str) {
        self.input(ms(t), Input::AttemptSucceeded { node: node.into() });
    }

    fn fail(&mut self, t: u64, node: &str, message: &str) {
        self.input(
            ms(t),
            Input::AttemptFailed {
                node: node.into(),
                reason: ErrorReason::EstablishmentFailed,
                message: message.into(),
            },
        );
    }

    fn answer(&mut self, t: u64, query: QueryId, ips: &[&str]) {
        let result = Ok(ips.iter().map(|s| ip(s)).collect());
        self.input(ms(t), Input::Resolved { query, result });
    }

    fn nxdomain(&mut self, t: u64, query: QueryId) {
        let result = Err("NXDOMAIN".to_string());
        self.input(ms(t), Input::Resolved { query, result });
    }

    /// The timeline without the Resolve actions: `(ms, "start 1.1.1 tcp ...")`.
    fn timeline(&self) -> Vec<(u64, String)> {
        self.log
            .iter()
            .filter(|(_, a)| !matches!(a, Action::Resolve { .. }))
            .map(|(t, a)| (t.as_millis() as u64, show(a)))
            .collect()
    }

    fn resolves(&self) -> Vec<String> {
        self.log
            .iter()
            .filter(|(_, a)| matches!(a, Action::Resolve { .. }))
            .map(|(_, a)| show(a))
            .collect()
    }

    fn starts(&self) -> Vec<(u64, String)> {
        self.log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::StartAttempt { node, .. } => Some((t.as_millis() as u64, node.clone())),
                _ => None,
            })
            .collect()
    }

    fn error(&self) -> postsocket::Error {
        self.log
            .iter()
            .find_map(|(_, a)| match a {
                Action::Failed(e) => Some(e.clone()),
                _ => None,
            })
            .expect("the race failed")
    }

    fn trace(&self) -> &RacingTrace {
        self.racer.trace()
    }
}

fn tl(items: &[(u64, &str)]) -> Vec<(u64, String)> {
    items.iter().map(|(t, s)| (*t, s.to_string())).collect()
}

fn cfg() -> RacingConfig {
    RacingConfig::default()
}

fn ids<'a>(events: impl Iterator<Item = &'a TraceEvent>) -> Vec<String> {
    events.map(|e| e.id.clone()).collect()
}

/// Trace times are `secs_f64 * 1000`, so compare with a tolerance.
fn assert_ms(t_ms: f64, expected: f64) {
    assert!(
        (t_ms - expected).abs() < 1e-6,
        "{t_ms} ms, expected {expected} ms"
    );
}

fn assert_trace_sorted(trace: &RacingTrace) {
    for w in trace.events.windows(2) {
        assert!(w[0].t_ms <= w[1].t_ms, "trace out of order: {w:?}");
    }
}

// ---- 1. two literal addresses ---------------------------------------------

#[test]
fn literal_v6_then_v4_at_250_and_v4_wins() {
    let mut sim = Sim::tcp(cfg(), vec![lit("[::1]:80"), lit("127.0.0.1:80")]);
    sim.ok(260, "1.1.2");
    assert_eq!(
        sim.timeline(),
        tl(&[
            (0, "start 1.1.1 tcp [::1]:80"),
            (250, "start 1.1.2 tcp 127.0.0.1:80"),
            (260, "cancel 1.1.1"),
            (260, "won 1.1.2"),
        ])
    );
    let trace = sim.trace();
    assert_eq!(
        ids(trace.of_kind(TraceEventKind::Candidate)),
        ["1", "1.1", "1.1.1", "1.1.2"]
    );
    let path = trace.candidate("1").unwrap();
    assert_eq!(path.branch, Some(Branch::Path));
    assert_eq!(path.path.as_deref(), Some("default"));
    assert_eq!(path.parent, None);
    let proto = trace.candidate("1.1").unwrap();
    assert_eq!(proto.branch, Some(Branch::Protocol));
    assert_eq!(proto.stack.as_deref(), Some("tcp"));
    assert_eq!(proto.parent.as_deref(), Some("1"));
    let leaf = trace.candidate("1.1.1").unwrap();
    assert_eq!(leaf.branch, Some(Branch::Endpoint));
    assert_eq!(leaf.address.as_deref(), Some("[::1]:80"));
    assert_eq!(leaf.stack.as_deref(), Some("tcp"));
    assert_eq!(leaf.parent.as_deref(), Some("1.1"));
    assert_eq!(
        trace.candidate("1.1.2").unwrap().address.as_deref(),
        Some("127.0.0.1:80")
    );
    assert!(trace
        .find(TraceEventKind::AttemptCancelled, "1.1.1")
        .is_some());
    assert_eq!(trace.winner(), Some("1.1.2"));
    assert_eq!(sim.racer.winner(), Some("1.1.2"));
    let succ = trace
        .find(TraceEventKind::AttemptSucceeded, "1.1.2")
        .unwrap();
    assert_ms(succ.t_ms, 260.0);
    // attempt_succeeded, then won, then cancellations.
    let kinds: Vec<_> = trace.events.iter().rev().take(3).map(|e| e.event).collect();
    assert_eq!(
        kinds,
        [
            TraceEventKind::AttemptCancelled,
            TraceEventKind::Won,
            TraceEventKind::AttemptSucceeded
        ]
    );
    assert!(sim.racer.is_finished());
    assert_eq!(sim.racer.poll_timeout(), None);
    assert_trace_sorted(trace);
    // JSON lines round trip.
    let back = RacingTrace::from_json_lines(&trace.to_json_lines()).unwrap();
    assert_eq!(&back, trace);
}

#[test]
fn literal_order_is_v6_first_whatever_the_input_order() {
    let mut sim = Sim::tcp(cfg(), vec![lit("127.0.0.1:80"), lit("[::1]:80")]);
    sim.advance_to(ms(300));
    assert_eq!(
        sim.timeline(),
        tl(&[
            (0, "start 1.1.1 tcp [::1]:80"),
            (250, "start 1.1.2 tcp 127.0.0.1:80"),
        ])
    );
}

// ---- 2. a failure starts the next one at once --------------------------------

#[test]
fn v6_refused_starts_v4_at_once() {
    let mut sim = Sim::tcp(cfg(), vec![lit("[::1]:80"), lit("127.0.0.1:80")]);
    sim.fail(5, "1.1.1", "connection refused");
    sim.ok(20, "1.1.2");
    assert_eq!(
        sim.timeline(),
        tl(&[
            (0, "start 1.1.1 tcp [::1]:80"),
            (5, "start 1.1.2 tcp 127.0.0.1:80"),
            (20, "won 1.1.2"),
        ])
    );
    let failed = sim
        .trace()
        .find(TraceEventKind::AttemptFailed, "1.1.1")
        .unwrap();
    assert_eq!(
        failed.reason.as_deref(),
        Some("EstablishmentFailed: connection refused")
    );
    assert_ms(failed.t_ms, 5.0);
}

#[test]
fn failure_while_another_runs_starts_next_at_once_and_restarts_the_delay() {
    let remotes = vec![lit("[::1]:80"), lit("127.0.0.1:80"), lit("[::2]:80")];
    let mut sim = Sim::tcp(cfg(), remotes);
    // 1.1.1 [::1] at 0, 1.1.2 127.0.0.1 at 250; [::2] is 1.1.3 at 500 normally.
    sim.fail(300, "1.1.1", "refused"); // 1.1.2 still running
    sim.advance_to(ms(1000));
    assert_eq!(
        sim.starts(),
        tl(&[(0, "1.1.1"), (250, "1.1.2"), (300, "1.1.3")])
    );
}

#[test]
fn failure_credit_is_kept_until_a_leaf_becomes_startable() {
    // One literal leaf running, a host's answer arriving after a failure of
    // another leaf: the new leaf starts at once.
    let remotes = vec![
        lit("[::1]:80"),
        lit("127.0.0.1:80"),
        host("example.com", 80),
    ];
    let mut sim = Sim::tcp(cfg(), remotes);
    sim.fail(260, "1.1.1", "refused"); // nothing left to start right now
    sim.answer(270, 1, &["2001:db8::1"]);
    sim.nxdomain(270, 2);
    sim.advance_to(ms(2000));
    assert_eq!(
        sim.starts(),
        tl(&[(0, "1.1.1"), (250, "1.1.2"), (270, "1.1.3.1")])
    );
}

// ---- 3. every candidate fails ------------------------------------------------

#[test]
fn every_candidate_fails() {
    let mut sim = Sim::tcp(cfg(), vec![lit("[::1]:80"), lit("127.0.0.1:80")]);
    sim.fail(5, "1.1.1", "connection refused");
    sim.fail(9, "1.1.2", "no route to host");
    assert_eq!(
        sim.timeline(),
        tl(&[
            (0, "start 1.1.1 tcp [::1]:80"),
            (5, "start 1.1.2 tcp 127.0.0.1:80"),
            (9, "failed EstablishmentFailed"),
        ])
    );
    let e = sim.error();
    assert_eq!(e.reason, ErrorReason::EstablishmentFailed);
    assert_eq!(e.message, "all 2 candidates failed");
    let got: Vec<_> = e
        .candidates
        .iter()
        .map(|c| {
            (
                c.id.as_str(),
                c.stack.as_deref(),
                c.address.as_deref(),
                c.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("1.1.1", Some("tcp"), Some("[::1]:80"), "connection refused"),
            (
                "1.1.2",
                Some("tcp"),
                Some("127.0.0.1:80"),
                "no route to host"
            ),
        ]
    );
    let ev = sim
        .trace()
        .find(TraceEventKind::EstablishmentError, "0")
        .unwrap();
    assert_ms(ev.t_ms, 9.0);
    assert_eq!(
        ev.reason.as_deref(),
        Some("EstablishmentFailed: all 2 candidates failed")
    );
    assert!(sim.racer.is_finished());
    assert_eq!(sim.racer.poll_timeout(), None);
    // Further input is ignored.
    sim.ok(10, "1.1.1");
    sim.fail(10, "1.1.2", "again");
    assert_eq!(sim.timeline().len(), 3);
}

// ---- 4. host names and the Resolution Delay -----------------------------------

#[test]
fn host_resolves_aaaa_then_a_queries() {
    let sim = Sim::tcp(cfg(), vec![host("example.com", 443)]);
    assert_eq!(
        sim.resolves(),
        [
            "resolve 1 example.com V6 default",
            "resolve 2 example.com V4 default"
        ]
    );
    assert!(sim.starts().is_empty());
    let h = sim.trace().candidate("1.1.1").unwrap();
    assert_eq!(h.host.as_deref(), Some("example.com"));
    assert_eq!(h.address, None);
    assert_eq!(h.branch, Some(Branch::Endpoint));
    assert_eq!(sim.racer.poll_timeout(), None);
}

#[test]
fn host_aaaa_first_starts_v6_at_once() {
    let mut sim = Sim::tcp(cfg(), vec![host("example.com", 443)]);
    sim.answer(10, 1, &["2001:db8::1"]);
    sim.answer(12, 2, &["192.0.2.1"]);
    sim.advance_to(ms(1000));
    assert_eq!(
        sim.timeline(),
        tl(&[
            (10, "start 1.1.1.1 tcp [2001:db8::1]:443"),
            (260, "start 1.1.1.2 tcp 192.0.2.1:443"),
        ])
    );
    let c = sim.trace().candidate("1.1.1.1").unwrap();
    assert_ms(c.t_ms, 10.0);
    assert_eq!(c.parent.as_deref(), Some("1.1.1"));
    assert_eq!(c.stack.as_deref(), Some("tcp"));
    assert_eq!(c.address.as_deref(), Some("[2001:db8::1]:443"));
    assert_ms(sim.trace().candidate("1.1.1.2").unwrap().t_ms, 12.0);
}

#[test]
fn host_a_first_waits_for_aaaa() {
    let mut sim = Sim::tcp(cfg(), vec![host("example.com", 443)]);
    sim.answer(5, 2, &["192.0.2.1"]);
    sim.answer(30, 1, &["2001:db8::1"]);
    sim.advance_to(ms(1000));
    assert_eq!(
        sim.timeline(),
        tl(&[
            (30, "start 1.1.1.2 tcp [2001:db8::1]:443"),
            (280, "start 1.1.1.1 tcp 192.0.2.1:443"),
        ])
    );
}

#[test]
fn host_a_first_and_aaaa_never_uses_the_resolution_delay() {
    let mut sim = Sim::tcp(cfg(), vec![host("example.com", 443)]);
    sim.answer(5, 2, &["192.0.2.1"]);
    assert_eq!(sim.racer.poll_timeout(), Some(ms(55)));
    sim.advance_to(ms(1000));
    assert_eq!(
        sim.timeline(),
        tl(&[(55, "start 1.1.1.1 tcp 192.0.2.1:443")])
    );
}

#[test]
fn host_a_first_and_aaaa_fails_starts_v4_when_aaaa_fails() {
    let mut sim = Sim::tcp(cfg(), vec![host("example.com", 443)]);
    sim.answer(5, 2, &["192.0.2.1"]);
    sim.nxdomain(20, 1);
    assert_eq!(sim.starts(), tl(&[(20, "1.1.1.1")]));
}

#[test]
fn host_both_queries_fail() {
    let mut sim = Sim::tcp(cfg(), vec![host("nowhere.invalid", 443)]);
    sim.nxdomain(5, 1);
    sim.answer(7, 2, &[]);
    assert_eq!(sim.timeline(), tl(&[(7, "failed ResolutionFailed")]));
    let e = sim.error();
    assert_eq!(e.reason, ErrorReason::ResolutionFailed);
    assert_eq!(e.candidates.len(), 1);
    let c = &e.candidates[0];
    assert_eq!(c.id, "1.1.1");
    assert_eq!(c.address.as_deref(), Some("nowhere.invalid"));
    assert_eq!(c.reason, ErrorReason::ResolutionFailed);
    assert_eq!(c.message, "AAAA: NXDOMAIN; A: no addresses");
    let ev = sim
        .trace()
        .find(TraceEventKind::AttemptFailed, "1.1.1")
        .unwrap();
    assert_eq!(
        ev.reason.as_deref(),
        Some("ResolutionFailed: AAAA: NXDOMAIN; A: no addresses")
    );
}

#[test]
fn resolution_failure_plus_attempt_failure_is_establishment_failed() {
    let mut sim = Sim::tcp(cfg(), vec![host("nowhere.invalid", 80), lit("[::1]:80")]);
    sim.nxdomain(1, 1);
    sim.nxdomain(2, 2);
    sim.fail(3, "1.1.2", "refused");
    let e = sim.error();
    assert_eq!(e.reason, ErrorReason::EstablishmentFailed);
    let got: Vec<_> = e
        .candidates
        .iter()
        .map(|c| (c.id.as_str(), c.reason))
        .collect();
    assert_eq!(
        got,
        [
            ("1.1.1", ErrorReason::ResolutionFailed),
            ("1.1.2", ErrorReason::EstablishmentFailed)
        ]
    );
}

#[test]
fn failure_waits_for_pending_queries() {
    let mut sim = Sim::tcp(cfg(), vec![lit("[::1]:80"), host("example.com", 80)]);
    sim.fail(5, "1.1.1", "refused");
    assert!(!sim.racer.is_finished());
    sim.answer(40, 2, &["192.0.2.7"]);
    sim.advance_to(ms(100));
    // Started at once at the end of the resolution delay (nothing runs).
    assert_eq!(sim.starts(), tl(&[(0, "1.1.1"), (90, "1.1.2.1")]));
}

#[test]
fn same_host_under_two_stacks_is_resolved_once_and_fans_out() {
    let mut sim = Sim::new(
        cfg(),
        default_path(),
        vec![StackId::Quic, StackId::Tcp],
        vec![host("example.com", 443)],
    );
    assert_eq!(sim.resolves().len(), 2);
    sim.answer(10, 1, &["2001:db8::1"]);
    sim.answer(11, 2, &["192.0.2.1"]);
    sim.advance_to(ms(2000));
    assert_eq!(
        sim.timeline(),
        tl(&[
            (10, "start 1.1.1.1 quic [2001:db8::1]:443"),
            (260, "start 1.1.1.2 quic 192.0.2.1:443"),
            (510, "start 1.2.1.1 tcp [2001:db8::1]:443"),
            (760, "start 1.2.1.2 tcp 192.0.2.1:443"),
        ])
    );
}

#[test]
fn each_path_resolves_on_its_own() {
    let paths = vec![
        PathSpec {
            interface: Some("wlan0".into()),
        },
        PathSpec {
            interface: Some("eth0".into()),
        },
    ];
    let mut sim = Sim::new(
        cfg(),
        paths,
        vec![StackId::Tcp],
        vec![host("example.com", 80)],
    );
    assert_eq!(
        sim.resolves(),
        [
            "resolve 1 example.com V6 wlan0",
            "resolve 2 example.com V4 wlan0",
            "resolve 3 example.com V6 eth0",
            "resolve 4 example.com V4 eth0",
        ]
    );
    assert_eq!(
        sim.trace().candidate("2").unwrap().path.as_deref(),
        Some("eth0")
    );
    // The second path answers first: its leaf still waits for the first path's
    // leaves only if those are startable; they are not resolved yet.
    sim.answer(3, 3, &["2001:db8::2"]);
    sim.answer(8, 1, &["2001:db8::1"]);
    sim.advance_to(ms(600));
    assert_eq!(sim.starts(), tl(&[(3, "2.1.1.1"), (253, "1.1.1.1")]));
    match &sim
        .log
        .iter()
        .find(|(_, a)| matches!(a, Action::StartAttempt { .. }))
        .unwrap()
        .1
    {
        Action::StartAttempt { path, .. } => assert_eq!(path.interface.as_deref(), Some("eth0")),
        _ => unreachable!(),
    }
}

#[test]
fn same_host_with_two_ports_is_resolved_once() {
    let mut sim = Sim::tcp(
        cfg(),
        vec![host("example.com", 80), host("example.com", 8080)],
    );
    assert_eq!(
        sim.resolves(),
        [
            "resolve 1 example.com V6 default",
            "resolve 2 example.com V4 default"
        ]
    );
    sim.answer(10, 1, &["2001:db8::1"]);
    sim.nxdomain(11, 2);
    sim.advance_to(ms(1000));
    assert_eq!(
        sim.timeline(),
        tl(&[
            (10, "start 1.1.1.1 tcp [2001:db8::1]:80"),
            (260, "start 1.1.2.1 tcp [2001:db8::1]:8080"),
        ])
    );
    assert_eq!(sim.racer.running(), ["1.1.1.1", "1.1.2.1"]);
}

#[test]
fn times_are_relative_to_the_start_given_to_new() {
    let config = RacingConfig {
        timeout: Some(ms(1000)),
        ..cfg()
    };
    let start = ms(100);
    let remotes = vec![lit("[::1]:80"), lit("127.0.0.1:80")];
    let mut racer = Racer::new(config, default_path(), vec![StackId::Tcp], remotes, start);
    assert!(matches!(
        racer.poll_action(),
        Some(Action::StartAttempt { .. })
    ));
    assert_eq!(racer.poll_action(), None);
    assert_eq!(racer.poll_timeout(), Some(ms(350)));
    racer.handle_timeout(ms(350));
    assert!(matches!(
        racer.poll_action(),
        Some(Action::StartAttempt { .. })
    ));
    assert_eq!(racer.poll_timeout(), Some(ms(1100)));
    // A stale `now` is clamped: the trace never goes back in time.
    racer.handle_input(
        ms(50),
        Input::AttemptFailed {
            node: "1.1.1".into(),
            reason: ErrorReason::EstablishmentFailed,
            message: "refused".into(),
        },
    );
    assert_trace_sorted(racer.trace());
    racer.handle_timeout(ms(1100));
    assert_eq!(
        racer.poll_action(),
        Some(Action::CancelAttempt {
            node: "1.1.2".into()
        })
    );
    assert!(
        matches!(racer.poll_action(), Some(Action::Failed(e)) if e.reason == ErrorReason::Timeout)
    );
    assert!(racer.running().is_empty());
    let trace = racer.into_trace();
    assert_ms(trace.events.last().unwrap().t_ms, 1100.0);
}

// ---- 5. interleaving ----------------------------------------------------------

#[test]
fn resolved_answers_are_interleaved() {
    let mut sim = Sim::tcp(cfg(), vec![host("example.com", 80)]);
    sim.answer(0, 1, &["2001:db8::a", "2001:db8::b"]);
    sim.answer(0, 2, &["192.0.2.10", "192.0.2.11"]);
    sim.advance_to(ms(2000));
    assert_eq!(
        sim.timeline(),
        tl(&[
            (0, "start 1.1.1.1 tcp [2001:db8::a]:80"),
            (250, "start 1.1.1.3 tcp 192.0.2.10:80"),
            (500, "start 1.1.1.2 tcp [2001:db8::b]:80"),
            (750, "start 1.1.1.4 tcp 192.0.2.11:80"),
        ])
    );
}

#[test]
fn literal_addresses_are_interleaved() {
    let remotes = vec![
        lit("[2001:db8::a]:80"),
        lit("[2001:db8::b]:80"),
        lit("192.0.2.10:80"),
        lit("192.0.2.11:80"),
    ];
    let mut sim = Sim::tcp(cfg(), remotes);
    sim.advance_to(ms(2000));
    assert_eq!(
        sim.timeline(),
        tl(&[
            (0, "start 1.1.1 tcp [2001:db8::a]:80"),
            (250, "start 1.1.2 tcp 192.0.2.10:80"),
            (500, "start 1.1.3 tcp [2001:db8::b]:80"),
            (750, "start 1.1.4 tcp 192.0.2.11:80"),
        ])
    );
}

#[test]
fn host_keeps_its_slot_among_literals() {
    let remotes = vec![
        lit("192.0.2.1:80"),
        host("example.com", 80),
        lit("[2001:db8::1]:80"),
    ];
    let sim = Sim::tcp(cfg(), remotes);
    let c = sim.trace();
    assert_eq!(
        c.candidate("1.1.1").unwrap().address.as_deref(),
        Some("[2001:db8::1]:80")
    );
    assert_eq!(
        c.candidate("1.1.2").unwrap().host.as_deref(),
        Some("example.com")
    );
    assert_eq!(
        c.candidate("1.1.3").unwrap().address.as_deref(),
        Some("192.0.2.1:80")
    );
}

#[test]
fn late_answers_are_inserted_without_reordering_started_ones() {
    let mut sim = Sim::tcp(cfg(), vec![host("example.com", 80)]);
    sim.answer(0, 2, &["192.0.2.10", "192.0.2.11"]);
    // v4 starts at 50 (resolution delay), AAAA arrives at 100.
    sim.answer(100, 1, &["2001:db8::a", "2001:db8::b"]);
    sim.advance_to(ms(2000));
    assert_eq!(
        sim.starts(),
        tl(&[
            (50, "1.1.1.1"),  // 192.0.2.10
            (300, "1.1.1.3"), // 2001:db8::a
            (550, "1.1.1.2"), // 192.0.2.11
            (800, "1.1.1.4"), // 2001:db8::b
        ])
    );
}

#[test]
fn a_later_startable_leaf_may_go_first_but_the_earlier_one_is_next() {
    // Host first in tree order, literal second: the literal starts at once,
    // the host's leaf is next in line as soon as it exists.
    let mut sim = Sim::tcp(
        cfg(),
        vec![host("example.com", 80), lit("[::1]:80"), lit("[::2]:80")],
    );
    sim.answer(100, 1, &["2001:db8::1"]);
    sim.nxdomain(100, 2);
    sim.advance_to(ms(2000));
    assert_eq!(
        sim.starts(),
        tl(&[(0, "1.1.2"), (250, "1.1.1.1"), (500, "1.1.3")])
    );
}

// ---- 6. two stacks -------------------------------------------------------------

#[test]
fn quic_then_tcp() {
    let mut sim = Sim::new(
        cfg(),
        default_path(),
        vec![StackId::Quic, StackId::Tcp],
        vec![lit("[::1]:443")],
    );
    sim.advance_to(ms(1000));
    assert_eq!(
        sim.timeline(),
        tl(&[
            (0, "start 1.1.1 quic [::1]:443"),
            (250, "start 1.2.1 tcp [::1]:443"),
        ])
    );
    assert_eq!(
        ids(sim.trace().of_kind(TraceEventKind::Candidate)),
        ["1", "1.1", "1.1.1", "1.2", "1.2.1"]
    );
    assert_eq!(
        sim.trace().candidate("1.2").unwrap().stack.as_deref(),
        Some("tcp")
    );
}

#[test]
fn second_protocol_starts_after_all_leaves_of_the_first() {
    let mut sim = Sim::new(
        cfg(),
        default_path(),
        vec![StackId::Quic, StackId::Tcp],
        vec![lit("[::1]:443"), lit("127.0.0.1:443")],
    );
    sim.advance_to(ms(1000));
    assert_eq!(
        sim.starts(),
        tl(&[(0, "1.1.1"), (250, "1.1.2"), (500, "1.2.1"), (750, "1.2.2")])
    );
}

/// A name the stacks resolve themselves (the browser): one leaf per stack,
/// no Resolve action, staggered by the Connection Attempt Delay.
#[test]
fn names_passed_to_stacks_race_without_resolving() {
    let mut sim = Sim::new(
        cfg(),
        default_path(),
        vec![StackId::Wt, StackId::Wss],
        vec![RemoteSpec::Name {
            host: "example.test".into(),
            port: 4433,
        }],
    );
    sim.advance_to(ms(250));
    assert!(sim.resolves().is_empty(), "{:?}", sim.resolves());
    assert_eq!(
        sim.timeline(),
        tl(&[
            (0, "start 1.1.1 wt example.test:4433"),
            (250, "start 1.2.1 wss example.test:4433"),
        ])
    );
    let leaf = sim.trace().candidate("1.2.1").unwrap();
    assert_eq!(leaf.host.as_deref(), Some("example.test"));
    assert_eq!(leaf.address.as_deref(), Some("example.test:4433"));
    sim.fail(300, "1.1.1", "handshake failed");
    sim.ok(310, "1.2.1");
    assert_eq!(
        sim.timeline().last().unwrap(),
        &(310, "won 1.2.1".to_string())
    );
    match &sim.log[1].1 {
        Action::StartAttempt { remote, .. } => {
            assert_eq!(remote.addr(), None);
            assert_eq!(remote.host_text(), "example.test");
            assert_eq!(remote.port(), 4433);
        }
        other => panic!("expected a start, got {other:?}"),
    }
}

/// A failed name leaf is listed with the name as its address.
#[test]
fn failed_name_leaf_is_listed_by_name() {
    let mut sim = Sim::tcp(
        cfg(),
        vec![RemoteSpec::Name {
            host: "example.test".into(),
            port: 80,
        }],
    );
    sim.fail(5, "1.1.1", "refused");
    let e = sim.error();
    assert_eq!(e.reason, ErrorReason::EstablishmentFailed);
    assert_eq!(e.candidates.len(), 1);
    assert_eq!(e.candidates[0].address.as_deref(), Some("example.test:80"));
}

/// IPv6 literals are bracketed in URL authority text.
#[test]
fn target_host_text_brackets_ipv6() {
    assert_eq!(Target::Addr(addr("[::1]:443")).host_text(), "[::1]");
    assert_eq!(Target::Addr(addr("127.0.0.1:443")).host_text(), "127.0.0.1");
    assert_eq!(Target::Addr(addr("[::1]:443")).to_string(), "[::1]:443");
}

// ---- 7. racing modes -----------------------------------------------------------

#[test]
fn failover_waits_for_failure() {
    let config = RacingConfig {
        mode: RacingMode::Failover,
        ..cfg()
    };
    let mut sim = Sim::tcp(config, vec![lit("[::1]:80"), lit("127.0.0.1:80")]);
    assert_eq!(sim.racer.poll_timeout(), None);
    sim.advance_to(ms(5000));
    assert_eq!(sim.starts(), tl(&[(0, "1.1.1")]));
    sim.fail(5000, "1.1.1", "timed out");
    sim.ok(5100, "1.1.2");
    assert_eq!(
        sim.timeline(),
        tl(&[
            (0, "start 1.1.1 tcp [::1]:80"),
            (5000, "start 1.1.2 tcp 127.0.0.1:80"),
            (5100, "won 1.1.2"),
        ])
    );
}

#[test]
fn simultaneous_starts_everything_at_once() {
    let config = RacingConfig {
        mode: RacingMode::Simultaneous,
        ..cfg()
    };
    let remotes = vec![lit("[::1]:80"), lit("127.0.0.1:80"), lit("[::2]:80")];
    let mut sim = Sim::tcp(config, remotes);
    sim.ok(30, "1.1.3");
    assert_eq!(
        sim.timeline(),
        tl(&[
            (0, "start 1.1.1 tcp [::1]:80"),
            (0, "start 1.1.2 tcp 127.0.0.1:80"),
            (0, "start 1.1.3 tcp [::2]:80"),
            (30, "cancel 1.1.1"),
            (30, "cancel 1.1.2"),
            (30, "won 1.1.3"),
        ])
    );
}

#[test]
fn simultaneous_starts_resolved_leaves_when_they_arrive() {
    let config = RacingConfig {
        mode: RacingMode::Simultaneous,
        ..cfg()
    };
    let mut sim = Sim::tcp(config, vec![host("example.com", 80)]);
    sim.answer(5, 2, &["192.0.2.1"]);
    sim.answer(10, 1, &["2001:db8::1", "2001:db8::2"]);
    assert_eq!(
        sim.starts(),
        tl(&[(10, "1.1.1.2"), (10, "1.1.1.1"), (10, "1.1.1.3")])
    );
}

// ---- 8. attempt delay bounds ------------------------------------------------------

#[test]
fn attempt_delay_is_honoured() {
    for delay in [10, 100, 2000] {
        let config = RacingConfig {
            connection_attempt_delay: ms(delay),
            ..cfg()
        };
        config.validate().unwrap();
        let remotes = vec![lit("[::1]:80"), lit("127.0.0.1:80"), lit("[::2]:80")];
        let mut sim = Sim::tcp(config, remotes);
        sim.advance_to(ms(10_000));
        assert_eq!(
            sim.starts(),
            tl(&[(0, "1.1.1"), (delay, "1.1.2"), (2 * delay, "1.1.3")]),
            "delay {delay}"
        );
    }
}

#[test]
fn validate_rejects_out_of_range_delays() {
    for bad in [9, 2001] {
        let config = RacingConfig {
            connection_attempt_delay: ms(bad),
            ..cfg()
        };
        let e = config.validate().unwrap_err();
        assert_eq!(e.reason, ErrorReason::InvalidConfiguration);
        assert!(e.message.contains(&bad.to_string()), "{e}");
    }
    cfg().validate().unwrap();
}

// ---- 9. overall timeout -----------------------------------------------------------

#[test]
fn timeout_cancels_and_fails_at_the_deadline() {
    let config = RacingConfig {
        timeout: Some(Duration::from_secs(1)),
        ..cfg()
    };
    let mut sim = Sim::tcp(
        config,
        vec![lit("[::1]:80"), lit("127.0.0.1:80"), lit("[::2]:80")],
    );
    sim.fail(300, "1.1.2", "refused");
    sim.advance_to(ms(5000));
    assert_eq!(
        sim.timeline(),
        tl(&[
            (0, "start 1.1.1 tcp [::1]:80"),
            (250, "start 1.1.2 tcp 127.0.0.1:80"),
            (300, "start 1.1.3 tcp [::2]:80"),
            (1000, "cancel 1.1.1"),
            (1000, "cancel 1.1.3"),
            (1000, "failed Timeout"),
        ])
    );
    let e = sim.error();
    assert_eq!(e.reason, ErrorReason::Timeout);
    assert!(e.message.contains("1000 ms"), "{}", e.message);
    let got: Vec<_> = e
        .candidates
        .iter()
        .map(|c| (c.id.as_str(), c.reason))
        .collect();
    assert_eq!(
        got,
        [
            ("1.1.1", ErrorReason::Timeout),
            ("1.1.2", ErrorReason::EstablishmentFailed),
            ("1.1.3", ErrorReason::Timeout)
        ]
    );
    let t = sim.trace();
    assert_ms(
        t.find(TraceEventKind::AttemptCancelled, "1.1.1")
            .unwrap()
            .t_ms,
        1000.0,
    );
    assert_ms(
        t.find(TraceEventKind::EstablishmentError, "0")
            .unwrap()
            .t_ms,
        1000.0,
    );
    assert_eq!(sim.racer.poll_timeout(), None);
    assert_trace_sorted(t);
}

#[test]
fn a_timeout_of_duration_max_never_fires_and_never_panics() {
    // An application's "no limit in practice": the deadline saturates.
    let config = RacingConfig {
        timeout: Some(Duration::MAX),
        ..cfg()
    };
    let start = ms(100);
    let remotes = vec![lit("[::1]:80"), lit("127.0.0.1:80")];
    let mut racer = Racer::new(config, default_path(), vec![StackId::Tcp], remotes, start);
    assert!(matches!(
        racer.poll_action(),
        Some(Action::StartAttempt { .. })
    ));
    assert_eq!(
        racer.poll_timeout(),
        Some(ms(350)),
        "the attempt delay comes first"
    );
    racer.handle_timeout(ms(350));
    assert!(matches!(
        racer.poll_action(),
        Some(Action::StartAttempt { .. })
    ));
    assert_eq!(
        racer.poll_timeout(),
        Some(Duration::MAX),
        "the saturated deadline"
    );
    racer.handle_timeout(Duration::from_secs(1_000_000_000));
    assert_eq!(
        racer.poll_action(),
        None,
        "nothing fails a billion seconds in"
    );
}

#[test]
fn timeout_while_resolving_lists_the_host() {
    let config = RacingConfig {
        timeout: Some(ms(1500)),
        ..cfg()
    };
    let mut sim = Sim::tcp(config, vec![host("slow.example", 80)]);
    assert_eq!(sim.racer.poll_timeout(), Some(ms(1500)));
    sim.advance_to(ms(3000));
    assert_eq!(sim.timeline(), tl(&[(1500, "failed Timeout")]));
    let e = sim.error();
    assert_eq!(e.candidates.len(), 1);
    assert_eq!(e.candidates[0].address.as_deref(), Some("slow.example"));
    assert_eq!(e.candidates[0].reason, ErrorReason::Timeout);
    // Late answers are ignored.
    sim.answer(3001, 1, &["2001:db8::1"]);
    assert_eq!(sim.timeline().len(), 1);
}

#[test]
fn success_after_the_timeout_is_ignored() {
    let config = RacingConfig {
        timeout: Some(ms(100)),
        ..cfg()
    };
    let mut sim = Sim::tcp(config, vec![lit("[::1]:80")]);
    sim.ok(100, "1.1.1");
    assert_eq!(
        sim.timeline(),
        tl(&[
            (0, "start 1.1.1 tcp [::1]:80"),
            (100, "cancel 1.1.1"),
            (100, "failed Timeout"),
        ])
    );
}

// ---- 10. the leaf cap --------------------------------------------------------------

#[test]
fn max_leaves_caps_literal_and_resolved_leaves() {
    let config = RacingConfig {
        max_leaves: 3,
        ..cfg()
    };
    let mut sim = Sim::tcp(
        config,
        vec![
            lit("[::1]:80"),
            lit("127.0.0.1:80"),
            host("example.com", 80),
        ],
    );
    sim.answer(1, 1, &["2001:db8::1", "2001:db8::2", "2001:db8::3"]);
    sim.nxdomain(2, 2);
    let leaves: Vec<_> = sim
        .trace()
        .of_kind(TraceEventKind::Candidate)
        .filter(|e| e.address.is_some())
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(leaves, ["1.1.1", "1.1.2", "1.1.3.1"]);
    sim.advance_to(ms(5000));
    assert_eq!(sim.starts().len(), 3);

    let config = RacingConfig {
        max_leaves: 2,
        ..cfg()
    };
    let remotes = vec![lit("[::1]:80"), lit("127.0.0.1:80"), lit("[::2]:80")];
    let mut sim = Sim::tcp(config, remotes);
    sim.advance_to(ms(5000));
    assert_eq!(sim.starts(), tl(&[(0, "1.1.1"), (250, "1.1.2")]));
    assert!(sim.trace().candidate("1.1.3").is_none());
}

// ---- 11. no candidates ----------------------------------------------------------------

#[test]
fn no_stacks_or_no_remotes_fail_at_once() {
    let cases = [
        (default_path(), vec![], vec![lit("[::1]:80")], "protocol"),
        (default_path(), vec![StackId::Tcp], vec![], "remote"),
        (vec![], vec![StackId::Tcp], vec![lit("[::1]:80")], "path"),
        (
            default_path(),
            vec![],
            vec![host("example.com", 80)],
            "protocol",
        ),
    ];
    for (paths, stacks, remotes, word) in cases {
        let sim = Sim::new(cfg(), paths, stacks, remotes);
        assert_eq!(sim.timeline(), tl(&[(0, "failed NoCandidates")]));
        assert!(sim.resolves().is_empty());
        let e = sim.error();
        assert_eq!(e.reason, ErrorReason::NoCandidates);
        assert!(e.candidates.is_empty());
        assert!(e.message.contains(word), "{}", e.message);
        assert!(sim.racer.is_finished());
        assert_eq!(sim.racer.poll_timeout(), None);
        assert!(sim
            .trace()
            .find(TraceEventKind::EstablishmentError, "0")
            .is_some());
    }
}

// ---- robustness -------------------------------------------------------------------------

#[test]
fn unknown_and_stale_inputs_are_ignored() {
    let mut sim = Sim::tcp(cfg(), vec![lit("[::1]:80"), lit("127.0.0.1:80")]);
    sim.ok(1, "9.9.9");
    sim.fail(2, "1.1.2", "not started yet");
    sim.fail(3, "1", "not a leaf");
    sim.answer(4, 77, &["192.0.2.1"]);
    sim.fail(5, "1.1.1", "refused");
    sim.fail(6, "1.1.1", "refused twice");
    sim.ok(7, "1.1.1");
    sim.ok(8, "1.1.2");
    sim.ok(9, "1.1.2");
    assert_eq!(
        sim.timeline(),
        tl(&[
            (0, "start 1.1.1 tcp [::1]:80"),
            (5, "start 1.1.2 tcp 127.0.0.1:80"),
            (8, "won 1.1.2"),
        ])
    );
    assert_eq!(
        sim.trace().of_kind(TraceEventKind::AttemptFailed).count(),
        1
    );
}

#[test]
fn duplicate_answers_are_ignored() {
    let mut sim = Sim::tcp(cfg(), vec![host("example.com", 80)]);
    sim.answer(1, 1, &["2001:db8::1", "2001:db8::1"]);
    sim.answer(2, 1, &["2001:db8::2"]);
    sim.answer(3, 2, &[]);
    sim.advance_to(ms(1000));
    assert_eq!(sim.starts(), tl(&[(1, "1.1.1.1")]));
}

// ---- 12. properties (native only: proptest) -------------------------------------------------

#[cfg(not(web))]
mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Outcome {
        Succeed(u64),
        Fail(u64),
        Blackhole,
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            (0u64..3000).prop_map(Outcome::Succeed),
            (0u64..3000).prop_map(Outcome::Fail),
            Just(Outcome::Blackhole),
        ]
    }

    #[derive(Debug, Clone)]
    struct Script {
        mode: RacingMode,
        delay: u64,
        timeout: Option<u64>,
        literals: Vec<(bool, u8)>,
        stacks: usize,
        /// (AAAA answer time, A answer time, AAAA count, A count), if a host is used.
        host: Option<(Option<u64>, Option<u64>, u8, u8)>,
        /// Outcome per leaf, by the order in which leaves start (cycled).
        outcomes: Vec<Outcome>,
        max_leaves: usize,
    }

    fn script() -> impl Strategy<Value = Script> {
        (
            prop_oneof![
                Just(RacingMode::Staggered),
                Just(RacingMode::Failover),
                Just(RacingMode::Simultaneous)
            ],
            10u64..600,
            proptest::option::of(100u64..4000),
            proptest::collection::vec((any::<bool>(), 1u8..50), 0..5),
            1usize..3,
            proptest::option::of((
                proptest::option::of(0u64..500),
                proptest::option::of(0u64..500),
                0u8..3,
                0u8..3,
            )),
            proptest::collection::vec(outcome(), 1..8),
            1usize..12,
        )
            .prop_map(
                |(mode, delay, timeout, literals, stacks, host, outcomes, max_leaves)| Script {
                    mode,
                    delay,
                    timeout,
                    literals,
                    stacks,
                    host,
                    outcomes,
                    max_leaves,
                },
            )
    }

    /// Run a script to the end; outcomes are delivered `t` ms after each start.
    fn run_script(s: &Script, all_outcomes_given: bool) -> Sim {
        let config = RacingConfig {
            mode: s.mode,
            connection_attempt_delay: ms(s.delay),
            timeout: s.timeout.map(ms),
            max_leaves: s.max_leaves,
            ..cfg()
        };
        let mut remotes: Vec<RemoteSpec> = s
            .literals
            .iter()
            .map(|&(v6, n)| {
                if v6 {
                    lit(&format!("[2001:db8::{n}]:80"))
                } else {
                    lit(&format!("192.0.2.{n}:80"))
                }
            })
            .collect();
        if s.host.is_some() {
            remotes.push(host("example.com", 80));
        }
        let stacks = [StackId::Quic, StackId::Tcp][..s.stacks].to_vec();
        let mut sim = Sim::new(config, default_path(), stacks, remotes);

        // Pending inputs: (time, seq, input).
        let mut pending: Vec<(u64, usize, Input)> = Vec::new();
        let mut seq = 0;
        if let Some((aaaa, a, n6, n4)) = s.host {
            let v6: Vec<IpAddr> = (0..n6)
                .map(|i| ip(&format!("2001:db8:1::{}", i + 1)))
                .collect();
            let v4: Vec<IpAddr> = (0..n4)
                .map(|i| ip(&format!("198.51.100.{}", i + 1)))
                .collect();
            // Without outcomes for everything, unanswered queries stay unanswered.
            for (q, t, ips) in [(1, aaaa, v6), (2, a, v4)] {
                let t = match (t, all_outcomes_given) {
                    (Some(t), _) => t,
                    (None, true) => 600,
                    (None, false) => continue,
                };
                let result = if ips.is_empty() {
                    Err("NXDOMAIN".into())
                } else {
                    Ok(ips)
                };
                pending.push((t, seq, Input::Resolved { query: q, result }));
                seq += 1;
            }
        }
        let mut handled_starts = 0;
        let mut t = 0u64;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 10_000);
            // Schedule outcomes for attempts started since last time.
            let starts = sim.starts();
            for (start_t, node) in starts.iter().skip(handled_starts) {
                let k = handled_starts % s.outcomes.len();
                handled_starts += 1;
                let input = match (&s.outcomes[k], all_outcomes_given) {
                    (Outcome::Succeed(d), _) => {
                        Some((*d, Input::AttemptSucceeded { node: node.clone() }))
                    }
                    (Outcome::Fail(d), _) => Some((
                        *d,
                        Input::AttemptFailed {
                            node: node.clone(),
                            reason: ErrorReason::EstablishmentFailed,
                            message: "refused".into(),
                        },
                    )),
                    (Outcome::Blackhole, true) => Some((
                        5000,
                        Input::AttemptFailed {
                            node: node.clone(),
                            reason: ErrorReason::Timeout,
                            message: "no answer".into(),
                        },
                    )),
                    (Outcome::Blackhole, false) => None,
                };
                if let Some((d, input)) = input {
                    pending.push((start_t + d, seq, input));
                    seq += 1;
                }
            }
            pending.sort_by_key(|(t, s, _)| (*t, *s));
            let next_input = pending.first().map(|(t, _, _)| *t);
            let next_timer = sim.racer.poll_timeout().map(|d| d.as_millis() as u64);
            match (next_input, next_timer) {
                (None, None) => break,
                (Some(i), timer) if !matches!(timer, Some(d) if d <= i) => {
                    let (it, _, input) = pending.remove(0);
                    assert!(it >= t);
                    t = it;
                    sim.input(ms(t), input);
                }
                (_, Some(d)) => {
                    t = t.max(d);
                    sim.advance_to(ms(t));
                }
                (Some(_), None) => unreachable!("handled by the input arm"),
            }
            if sim.racer.is_finished() && pending.is_empty() {
                break;
            }
        }
        sim
    }

    fn check_invariants(s: &Script, sim: &Sim, all_outcomes_given: bool) {
        let trace = sim.trace();
        assert_trace_sorted(trace);
        let count = |kind, id: &str| trace.of_kind(kind).filter(|e| e.id == id).count();
        let won: Vec<_> = sim
            .log
            .iter()
            .filter(|(_, a)| matches!(a, Action::Won { .. }))
            .collect();
        let failed: Vec<_> = sim
            .log
            .iter()
            .filter(|(_, a)| matches!(a, Action::Failed(_)))
            .collect();
        assert!(won.len() <= 1);
        assert!(failed.len() <= 1);
        assert!(won.is_empty() || failed.is_empty(), "won and failed");
        if all_outcomes_given {
            assert_eq!(won.len() + failed.len(), 1, "exactly one of won/failed");
        }
        // No action after the end.
        let end = sim
            .log
            .iter()
            .position(|(_, a)| matches!(a, Action::Won { .. } | Action::Failed(_)));
        if let Some(end) = end {
            assert_eq!(end, sim.log.len() - 1, "actions after the end");
            assert_eq!(trace.of_kind(TraceEventKind::Won).count(), won.len());
            assert_eq!(
                trace.of_kind(TraceEventKind::EstablishmentError).count(),
                failed.len()
            );
        }
        // Every started attempt ends exactly once, unless the script left it hanging.
        for (_, node) in sim.starts() {
            assert_eq!(count(TraceEventKind::AttemptStarted, &node), 1);
            let ends = count(TraceEventKind::AttemptSucceeded, &node)
                + count(TraceEventKind::AttemptFailed, &node)
                + count(TraceEventKind::AttemptCancelled, &node);
            if sim.racer.is_finished() {
                assert_eq!(
                    ends,
                    1,
                    "node {node} ends {ends} times\n{}",
                    trace.timeline()
                );
            } else {
                assert!(ends <= 1);
            }
            let cancels = sim
                .log
                .iter()
                .filter(|(_, a)| matches!(a, Action::CancelAttempt { node: n } if *n == node))
                .count();
            assert_eq!(cancels, count(TraceEventKind::AttemptCancelled, &node));
        }
        // (Deadline monotonicity is checked by the harness as time advances.)
        // Never more leaves than the cap.
        let leaves = trace
            .of_kind(TraceEventKind::Candidate)
            .filter(|e| e.address.is_some())
            .count();
        assert!(leaves <= s.max_leaves);
        // Staggered: no two starts at one instant unless a failure happened then.
        if s.mode == RacingMode::Staggered {
            let starts = sim.starts();
            for w in starts.windows(2) {
                if w[0].0 == w[1].0 {
                    let t = w[0].0 as f64;
                    let failure_then = trace
                        .of_kind(TraceEventKind::AttemptFailed)
                        .any(|e| (e.t_ms - t).abs() < 1e-6);
                    assert!(failure_then, "two starts at {t} ms\n{}", trace.timeline());
                }
            }
        }
        // Failover: never two running at once.
        if s.mode == RacingMode::Failover {
            let mut running = 0i32;
            for e in &trace.events {
                match e.event {
                    TraceEventKind::AttemptStarted => running += 1,
                    TraceEventKind::AttemptSucceeded | TraceEventKind::AttemptCancelled => {
                        running -= 1
                    }
                    TraceEventKind::AttemptFailed
                        if e.address.is_none()
                            && trace.candidate(&e.id).is_some_and(|c| c.address.is_some()) =>
                    {
                        running -= 1
                    }
                    _ => {}
                }
                assert!(
                    running <= 1,
                    "failover ran two at once\n{}",
                    trace.timeline()
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            // PROPTEST_CASES=N overrides the default of 512 per property.
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn invariants_with_every_outcome_given(s in script()) {
            let sim = run_script(&s, true);
            check_invariants(&s, &sim, true);
        }

        #[test]
        fn invariants_with_blackholes(s in script()) {
            let sim = run_script(&s, false);
            check_invariants(&s, &sim, false);
        }
    }
}

/// Durations at the top of their range never panic the engine, which does
/// not validate its configuration itself: a Resolution Delay of
/// `Duration::MAX` with the A answer first means the IPv4 leaves wait for
/// AAAA (forever), and the AAAA answer then starts the race. It panicked
/// computing the deadline.
#[test]
fn a_resolution_delay_of_duration_max_does_not_panic() {
    let config = RacingConfig {
        resolution_delay: Duration::MAX,
        ..cfg()
    };
    let mut sim = Sim::tcp(config, vec![host("example.com", 443)]);
    sim.answer(5, 2, &["192.0.2.1"]);
    assert!(sim.starts().is_empty(), "IPv4 waits for AAAA");
    sim.answer(10, 1, &["2001:db8::1"]);
    assert!(!sim.starts().is_empty(), "the AAAA answer starts the race");
}
