//! Racing with memory: the TransportContext's sans-IO core
//! ([`Memory`]) feeding the sans-IO engine ([`Racer`]), both on virtual
//! clocks (race time from 0, wall time in Unix milliseconds), rule by rule:
//! ordering, the adaptive attempt delay and its bounds, holding back with
//! backoff and probes, blackhole detection, networks, expiry and the saved
//! format.
//!
//! Runs natively and compiled to wasm32 in headless Chromium (scripts/test.sh).

#[cfg(web)]
use wasm_bindgen_test::wasm_bindgen_test as test;
#[cfg(web)]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use postsocket::context::memory::{self, Memory};
use postsocket::racing::*;
use postsocket::trace::TraceEventKind;
use postsocket::{Capabilities, ErrorReason, StackId};
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const MIN: u64 = 60_000;
/// Wall-clock start of every scenario (Unix ms).
const T0: u64 = 1_800_000_000_000;

fn lit(s: &str) -> RemoteSpec {
    RemoteSpec::Address(s.parse().unwrap())
}

fn caps(stacks: &[StackId]) -> Vec<Capabilities> {
    stacks
        .iter()
        .map(|s| match s {
            StackId::Tcp => Capabilities::TCP,
            StackId::Tls => Capabilities::TLS,
            StackId::Quic => Capabilities::QUIC,
            StackId::Ws => Capabilities::WS,
            StackId::Wt => Capabilities::WT,
            other => panic!("no row for {other} in these tests"),
        })
        .collect()
}

fn caps_of(s: StackId) -> Option<Capabilities> {
    caps(&[s]).first().copied()
}

/// One race on a virtual clock, with what `mem` remembers at `wall` ms.
struct Race {
    racer: Racer,
    now: Duration,
    /// (time, node, stack, target) of every start.
    starts: Vec<(Duration, String, StackId, String)>,
    done: bool,
}

impl Race {
    fn new(
        mem: &mut Memory,
        wall: u64,
        config: RacingConfig,
        stacks: &[StackId],
        remotes: Vec<RemoteSpec>,
    ) -> Race {
        let dests: Vec<String> = remotes.iter().map(RemoteSpec::destination).collect();
        let history = mem.history_for(&dests, &caps(stacks), config.adaptive_delay, wall);
        let racer = Racer::with_history(
            config,
            vec![PathSpec::default()],
            stacks.to_vec(),
            remotes,
            history,
            Duration::ZERO,
        );
        let mut r = Race {
            racer,
            now: Duration::ZERO,
            starts: Vec::new(),
            done: false,
        };
        r.drain();
        r
    }

    fn drain(&mut self) {
        while let Some(a) = self.racer.poll_action() {
            match a {
                Action::StartAttempt {
                    node,
                    stack,
                    remote,
                    ..
                } => self
                    .starts
                    .push((self.now, node, stack, remote.to_string())),
                Action::Won { .. } | Action::Failed(_) => self.done = true,
                _ => {}
            }
        }
    }

    /// Let timers fire up to `t`.
    fn advance_to(&mut self, t: Duration) {
        let mut guard = 0;
        while let Some(d) = self.racer.poll_timeout() {
            if d > t {
                break;
            }
            guard += 1;
            assert!(guard < 1000, "timer loop does not progress at {d:?}");
            self.now = d;
            self.racer.handle_timeout(d);
            self.drain();
        }
        self.now = self.now.max(t);
    }

    #[track_caller]
    fn node_of(&self, target: &str, stack: StackId) -> String {
        self.starts
            .iter()
            .find(|s| s.3 == target && s.2 == stack)
            .unwrap_or_else(|| panic!("{stack} to {target} never started: {:?}", self.starts))
            .1
            .clone()
    }

    #[track_caller]
    fn succeed(&mut self, at: Duration, target: &str, stack: StackId) {
        self.advance_to(at);
        let node = self.node_of(target, stack);
        self.racer
            .handle_input(at, Input::AttemptSucceeded { node });
        self.drain();
        assert!(self.done, "a success ends the race");
    }

    fn fail(&mut self, at: Duration, target: &str, stack: StackId, reason: ErrorReason) {
        self.advance_to(at);
        let node = self.node_of(target, stack);
        self.racer.handle_input(
            at,
            Input::AttemptFailed {
                node,
                reason,
                message: "test".into(),
            },
        );
        self.drain();
    }

    fn started(&self) -> Vec<(u64, StackId, &str)> {
        self.starts
            .iter()
            .map(|(t, _, s, a)| (t.as_millis() as u64, *s, a.as_str()))
            .collect()
    }

    fn reasons(&self, kind: TraceEventKind) -> Vec<String> {
        self.racer
            .trace()
            .of_kind(kind)
            .filter_map(|e| e.reason.clone())
            .collect()
    }

    fn learn(&self, mem: &mut Memory, wall: u64) {
        mem.learn(&self.racer.outcomes(), caps_of, wall);
    }
}

const V6: &str = "[::1]:443";
const V4: &str = "127.0.0.1:443";

/// A TCP race to `[::1]:443` and `127.0.0.1:443`, in that order.
fn v6_then_v4(mem: &mut Memory, wall: u64) -> Race {
    Race::new(
        mem,
        wall,
        RacingConfig::default(),
        &[StackId::Tcp],
        vec![lit(V6), lit(V4)],
    )
}

/// The Happy Eyeballs case: IPv6 silent, IPv4 wins after the delay.
fn v6_blackholed_race(mem: &mut Memory, wall: u64) -> Race {
    let mut r = v6_then_v4(mem, wall);
    r.succeed(ms(251), V4, StackId::Tcp);
    r
}

#[test]
fn a_fresh_memory_changes_nothing() {
    let mut mem = Memory::new();
    let r = v6_blackholed_race(&mut mem, T0);
    assert_eq!(
        r.started(),
        [(0, StackId::Tcp, V6), (250, StackId::Tcp, V4)]
    );
    for kind in [
        TraceEventKind::Reordered,
        TraceEventKind::HeldBack,
        TraceEventKind::AttemptDelay,
        TraceEventKind::Probe,
    ] {
        assert!(r.reasons(kind).is_empty(), "{kind:?} in a fresh race");
    }
    let o = r.racer.outcomes();
    assert_eq!(o.len(), 2);
    assert_eq!(o[0].result, AttemptResult::Silent, "ran its full turn");
    assert_eq!(o[1].result, AttemptResult::Won);
    assert_eq!(o[1].ran, ms(1));
}

#[test]
fn the_target_that_worked_goes_first_and_the_silent_one_is_held_back() {
    let mut mem = Memory::new();
    v6_blackholed_race(&mut mem, T0).learn(&mut mem, T0);

    let mut r = v6_then_v4(&mut mem, T0 + 1000);
    // IPv4 first, at once; IPv6 is held back, so nothing else is due.
    assert_eq!(r.started(), [(0, StackId::Tcp, V4)]);
    assert_eq!(
        r.racer.poll_timeout(),
        None,
        "no stagger timer for a held leaf"
    );
    let reordered = r.reasons(TraceEventKind::Reordered);
    assert!(
        reordered
            .iter()
            .any(|m| m.contains("127.0.0.1:443 first: it worked 1.0 s ago")),
        "{reordered:?}"
    );
    assert!(reordered
        .iter()
        .any(|m| m.contains("[::1]:443 later: it failed or stayed silent")));
    let held = r.reasons(TraceEventKind::HeldBack);
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(
        held[0].starts_with("tcp to [::1]:443 held back for 5 min more: it lost 1 race in a row")
            && held[0].contains("no answer from [::1]:443 within 251 ms"),
        "{}",
        held[0]
    );
    r.succeed(ms(1), V4, StackId::Tcp);
    assert_eq!(r.started().len(), 1, "the held leaf never started");
}

#[test]
fn a_held_back_leaf_starts_at_once_when_everything_else_failed() {
    let mut mem = Memory::new();
    v6_blackholed_race(&mut mem, T0).learn(&mut mem, T0);
    let mut r = v6_then_v4(&mut mem, T0 + 1000);
    r.fail(ms(3), V4, StackId::Tcp, ErrorReason::EstablishmentFailed);
    assert_eq!(
        r.started(),
        [(0, StackId::Tcp, V4), (3, StackId::Tcp, V6)],
        "held, not excluded"
    );
    r.succeed(ms(4), V6, StackId::Tcp);
    r.learn(&mut mem, T0 + 1000);
    // It won: no longer held, and first; IPv4 failed while it connected,
    // so now IPv4 is held back.
    let r = v6_then_v4(&mut mem, T0 + 2000);
    assert_eq!(r.started(), [(0, StackId::Tcp, V6)]);
    let held = r.reasons(TraceEventKind::HeldBack);
    assert!(
        held.len() == 1 && held[0].starts_with("tcp to 127.0.0.1:443 held back"),
        "{held:?}"
    );
}

#[test]
fn the_attempt_delay_follows_the_handshake_time_within_10_ms_and_2_s() {
    for (handshake, expected) in [(40, 100), (1, 10), (5000, 2000)] {
        let mut mem = Memory::new();
        // One remembered handshake of `handshake` ms: SRTT = h, RTTVAR = h/2,
        // so the delay is 1.5 h + h = 2.5 h, clamped to 10 ms ..= 2 s.
        let mut r = Race::new(
            &mut mem,
            T0,
            RacingConfig::default(),
            &[StackId::Tcp],
            vec![lit(V4)],
        );
        r.succeed(ms(handshake), V4, StackId::Tcp);
        r.learn(&mut mem, T0);

        let mut r = Race::new(
            &mut mem,
            T0 + 10,
            RacingConfig::default(),
            &[StackId::Tcp, StackId::Tls],
            vec![lit(V4)],
        );
        r.advance_to(ms(3000));
        let starts = r.started();
        assert_eq!(
            starts[1],
            (expected, StackId::Tls, V4),
            "after a {handshake} ms handshake: {starts:?}"
        );
        let why = r.reasons(TraceEventKind::AttemptDelay);
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(
            why[0].starts_with(&format!(
                "next attempt after {expected} ms (configured: 250 ms)"
            )),
            "{}",
            why[0]
        );
    }
}

#[test]
fn a_delay_the_application_set_is_used_as_is() {
    let mut mem = Memory::new();
    let mut r = Race::new(
        &mut mem,
        T0,
        RacingConfig::default(),
        &[StackId::Tcp],
        vec![lit(V4)],
    );
    r.succeed(ms(40), V4, StackId::Tcp);
    r.learn(&mut mem, T0);
    let config = RacingConfig {
        connection_attempt_delay: ms(300),
        adaptive_delay: false,
        ..RacingConfig::default()
    };
    let mut r = Race::new(
        &mut mem,
        T0 + 10,
        config,
        &[StackId::Tcp, StackId::Tls],
        vec![lit(V4)],
    );
    r.advance_to(ms(3000));
    assert_eq!(r.started()[1].0, 300);
    assert!(r.reasons(TraceEventKind::AttemptDelay).is_empty());
}

/// QUIC silent, TCP connects after the attempt delay: QUIC lost a race.
fn quic_loses(mem: &mut Memory, wall: u64) -> Race {
    loses(mem, wall, StackId::Quic)
}

/// `stack` silent, TCP connects after the attempt delay: `stack` lost a race.
fn loses(mem: &mut Memory, wall: u64, stack: StackId) -> Race {
    let mut r = Race::new(
        mem,
        wall,
        RacingConfig::default(),
        &[stack, StackId::Tcp],
        vec![lit(V4)],
    );
    r.advance_to(ms(250));
    let next = r.started().last().map(|s| s.1);
    if next == Some(StackId::Tcp) {
        r.succeed(ms(252), V4, StackId::Tcp);
    } else {
        // Held back: TCP went first.
        r.succeed(ms(2), V4, StackId::Tcp);
    }
    r.learn(mem, wall);
    r
}

#[test]
fn a_stack_that_lost_is_held_back_with_backoff_then_probed() {
    let mut mem = Memory::new();
    let r = quic_loses(&mut mem, T0);
    assert_eq!(r.started()[0].1, StackId::Quic, "first race: QUIC first");

    // Within 5 min: QUIC held, TCP at once.
    let r = quic_loses(&mut mem, T0 + 4 * MIN);
    assert_eq!(r.started(), [(0, StackId::Tcp, V4)]);
    assert_eq!(r.reasons(TraceEventKind::HeldBack).len(), 1);

    // After 5 min: probed (QUIC first again), and it loses again.
    let r = quic_loses(&mut mem, T0 + 5 * MIN + 1);
    assert_eq!(r.started()[0].1, StackId::Quic);
    let probes = r.reasons(TraceEventKind::Probe);
    assert!(
        probes.len() == 1 && probes[0].starts_with("quic to 127.0.0.1:443: held back until"),
        "{probes:?}"
    );

    // Second loss: held for 10 min from then.
    let t1 = T0 + 5 * MIN + 1;
    let r = quic_loses(&mut mem, t1 + 9 * MIN);
    assert_eq!(r.started(), [(0, StackId::Tcp, V4)]);
    let held = r.reasons(TraceEventKind::HeldBack);
    assert!(held[0].contains("lost 2 races in a row"), "{held:?}");
    let r = quic_loses(&mut mem, t1 + 10 * MIN + 1);
    assert_eq!(r.started()[0].1, StackId::Quic, "probed after 10 min");

    // A win clears it.
    let mut r = Race::new(
        &mut mem,
        t1 + 11 * MIN,
        RacingConfig::default(),
        &[StackId::Quic, StackId::Tcp],
        vec![lit(V4)],
    );
    // Held again (third loss, 20 min): nothing but TCP starts; TCP fails.
    assert_eq!(r.started(), [(0, StackId::Tcp, V4)]);
    r.fail(ms(1), V4, StackId::Tcp, ErrorReason::EstablishmentFailed);
    r.succeed(ms(5), V4, StackId::Quic);
    r.learn(&mut mem, t1 + 11 * MIN);
    let r = Race::new(
        &mut mem,
        t1 + 12 * MIN,
        RacingConfig::default(),
        &[StackId::Quic, StackId::Tcp],
        vec![lit(V4)],
    );
    // QUIC is not held after its win; TCP, which failed while QUIC
    // connected, now is.
    assert_eq!(r.started(), [(0, StackId::Quic, V4)]);
    let held = r.reasons(TraceEventKind::HeldBack);
    assert!(held.len() == 1 && held[0].starts_with("tcp to"), "{held:?}");
}

#[test]
fn the_hold_is_capped_at_48_hours() {
    let mut mem = Memory::new();
    let mut wall = T0;
    // WebSocket (over TCP, so no UDP detector interferes) loses 13 times,
    // each time once its hold is over.
    for _ in 0..13 {
        let r = loses(&mut mem, wall, StackId::Ws);
        assert_eq!(r.started()[0].1, StackId::Ws);
        wall += 49 * 3600 * 1000;
    }
    wall -= 49 * 3600 * 1000;
    // Held for at most 48 h after a loss, however many.
    let r = loses(&mut mem, wall + 48 * 3600 * 1000 - 60_000, StackId::Ws);
    let held = r.reasons(TraceEventKind::HeldBack);
    assert!(
        held[0].contains("held back for 60.0 s more: it lost 13 races in a row"),
        "{held:?}"
    );
    let r = loses(&mut mem, wall + 48 * 3600 * 1000 + 1, StackId::Ws);
    assert!(r.reasons(TraceEventKind::HeldBack).is_empty());
    assert!(r.reasons(TraceEventKind::Probe)[0].contains("after 13 lost races"));
}

#[test]
fn a_race_nobody_won_blames_no_stack() {
    let mut mem = Memory::new();
    let mut r = Race::new(
        &mut mem,
        T0,
        RacingConfig::default(),
        &[StackId::Quic, StackId::Tcp],
        vec![lit(V4)],
    );
    r.fail(ms(1), V4, StackId::Quic, ErrorReason::Timeout);
    r.fail(ms(2), V4, StackId::Tcp, ErrorReason::EstablishmentFailed);
    assert!(r.done);
    r.learn(&mut mem, T0);
    let r = Race::new(
        &mut mem,
        T0 + 1000,
        RacingConfig::default(),
        &[StackId::Quic, StackId::Tcp],
        vec![lit(V4)],
    );
    assert!(r.reasons(TraceEventKind::HeldBack).is_empty());
    assert_eq!(r.started()[0].1, StackId::Quic);
}

/// A race to a fresh name per call (so per-target verdicts do not
/// interfere): IPv6 silent, IPv4 wins.
fn v6_silent_to(mem: &mut Memory, wall: u64, n: u16) -> Race {
    let v6 = format!("[2001:db8::1]:{n}");
    let v4 = format!("192.0.2.1:{n}");
    let mut r = Race::new(
        mem,
        wall,
        RacingConfig::default(),
        &[StackId::Tcp],
        vec![lit(&v6), lit(&v4)],
    );
    r.advance_to(ms(250));
    let first = r.started()[0].2.to_string();
    if first == v6 {
        r.succeed(ms(251), &v4, StackId::Tcp);
    } else {
        r.succeed(ms(1), &v4, StackId::Tcp);
    }
    r.learn(mem, wall);
    r
}

#[test]
fn ipv6_that_never_answers_goes_last_on_this_network_and_is_probed() {
    let mut mem = Memory::new();
    for n in 0..memory::DETECTOR_SILENT as u16 {
        let r = v6_silent_to(&mut mem, T0 + u64::from(n), 1000 + n);
        assert!(r.started()[0].2.starts_with("[2001"), "not yet demoted");
    }
    // From now on IPv6 goes after IPv4, even to a new destination, except
    // every PROBE_EVERY-th race.
    let mut probes = 0;
    for n in 0..2 * memory::PROBE_EVERY as u16 {
        let r = v6_silent_to(&mut mem, T0 + 100 + u64::from(n), 2000 + n);
        let first = r.started()[0].2.to_string();
        if r.reasons(TraceEventKind::Probe).is_empty() {
            assert!(first.starts_with("192.0.2.1"), "race {n}: {first}");
            let why = r.reasons(TraceEventKind::Reordered);
            assert!(
                why.iter()
                    .any(|m| m.contains("IPv6 seems blackholed on this network")),
                "{why:?}"
            );
        } else {
            probes += 1;
            assert!(first.starts_with("[2001"), "a probe orders as if it worked");
        }
    }
    assert_eq!(probes, 2);
    // One answer over IPv6 ends it.
    let mut r = Race::new(
        &mut mem,
        T0 + 200,
        RacingConfig::default(),
        &[StackId::Tcp],
        vec![lit("[2001:db8::2]:3000"), lit("192.0.2.2:3000")],
    );
    r.fail(
        ms(2),
        "192.0.2.2:3000",
        StackId::Tcp,
        ErrorReason::EstablishmentFailed,
    );
    r.succeed(ms(3), "[2001:db8::2]:3000", StackId::Tcp);
    r.learn(&mut mem, T0 + 200);
    let r = v6_silent_to(&mut mem, T0 + 300, 4000);
    assert!(r.started()[0].2.starts_with("[2001"));
}

#[test]
fn udp_that_never_answers_moves_quic_after_tcp() {
    let mut mem = Memory::new();
    for n in 0..memory::DETECTOR_SILENT as u16 {
        let dest = format!("192.0.2.7:{}", 1000 + n);
        let mut r = Race::new(
            &mut mem,
            T0 + u64::from(n),
            RacingConfig::default(),
            &[StackId::Quic, StackId::Tcp],
            vec![lit(&dest)],
        );
        assert_eq!(r.started()[0].1, StackId::Quic);
        r.succeed(ms(251), &dest, StackId::Tcp);
        r.learn(&mut mem, T0 + u64::from(n));
    }
    let r = Race::new(
        &mut mem,
        T0 + 100,
        RacingConfig::default(),
        &[StackId::Quic, StackId::Tcp],
        vec![lit("192.0.2.7:5000")],
    );
    assert_eq!(r.started()[0].1, StackId::Tcp);
    let why = r.reasons(TraceEventKind::Reordered);
    assert!(
        why.iter()
            .any(|m| m.starts_with("quic after the other stacks: UDP seems blackholed")),
        "{why:?}"
    );
}

#[test]
fn networks_are_kept_apart_and_a_change_forgets() {
    let mut mem = Memory::new();
    v6_blackholed_race(&mut mem, T0).learn(&mut mem, T0);
    let first = |mem: &mut Memory, wall| v6_then_v4(mem, wall).started()[0].2.to_string();
    assert_eq!(first(&mut mem, T0 + 1), V4);
    mem.set_network("cafe");
    assert_eq!(first(&mut mem, T0 + 2), V6, "another network: fresh");
    mem.set_network(memory::DEFAULT_NETWORK);
    assert_eq!(first(&mut mem, T0 + 3), V4, "kept for when it comes back");
    mem.network_changed();
    assert_eq!(first(&mut mem, T0 + 4), V6, "changed: forgotten");
}

#[test]
fn records_expire_after_a_week() {
    let mut mem = Memory::new();
    v6_blackholed_race(&mut mem, T0).learn(&mut mem, T0);
    let week = memory::RECORD_TTL.as_millis() as u64;
    let r = v6_then_v4(&mut mem, T0 + week + 1);
    assert_eq!(r.started()[0].2, V6);
    assert!(r.reasons(TraceEventKind::Reordered).is_empty());
}

#[test]
fn memory_is_bounded() {
    let mut mem = Memory::new();
    for n in 0..(memory::MAX_RECORDS as u64 + 100) {
        let dest = format!("192.0.2.9:{}", 1 + n);
        let mut r = Race::new(
            &mut mem,
            T0 + n,
            RacingConfig::default(),
            &[StackId::Tcp],
            vec![lit(&dest)],
        );
        r.succeed(ms(1), &dest, StackId::Tcp);
        r.learn(&mut mem, T0 + n);
    }
    let json: serde_json::Value = serde_json::from_str(&mem.to_json()).unwrap();
    let net = &json["networks"][0];
    assert_eq!(
        net["targets"].as_array().unwrap().len(),
        memory::MAX_RECORDS
    );
    assert_eq!(net["stacks"].as_array().unwrap().len(), memory::MAX_RECORDS);
    // The oldest went first.
    assert!(!mem.to_json().contains("\"192.0.2.9:1\""));
    for n in 0..20 {
        mem.set_network(&format!("net{n}"));
        v6_blackholed_race(&mut mem, T0 + 10_000 + n).learn(&mut mem, T0 + 10_000 + n);
    }
    let json: serde_json::Value = serde_json::from_str(&mem.to_json()).unwrap();
    assert_eq!(
        json["networks"].as_array().unwrap().len(),
        memory::MAX_NETWORKS
    );
}

#[test]
fn the_saved_format_round_trips_and_foreign_or_corrupt_text_is_a_clear_error() {
    let mut mem = Memory::new();
    v6_blackholed_race(&mut mem, T0).learn(&mut mem, T0);
    quic_loses(&mut mem, T0);
    let text = mem.to_json();
    assert!(text.contains("\"format\":\"postsocket-transport-context\""));
    assert!(text.contains("\"version\":1"));
    let back = Memory::from_json(&text, "ctx.json").unwrap();
    assert_eq!(back, mem);

    let err = |t: &str| Memory::from_json(t, "ctx.json").unwrap_err().to_string();
    let e = err("{\"format\": \"something-else\", \"version\": 1}");
    assert!(e.contains("ctx.json is not a TransportContext this build can read: its format is `something-else`"), "{e}");
    let e = err(&text.replace("\"version\":1", "\"version\":2"));
    assert!(
        e.contains("it is version 2; this build reads version 1"),
        "{e}"
    );
    let e = err(&text[..text.len() / 2]);
    assert!(e.contains("not JSON"), "{e}");
    let e = err("[1, 2, 3]");
    assert!(e.contains("not JSON of an object"), "{e}");
    let e = err("{\"version\": 1}");
    assert!(e.contains("no `format` field"), "{e}");
    let e = err(&text.replace("\"tcp\"", "\"carrier-pigeon\""));
    assert!(e.contains("carrier-pigeon"), "{e}");
    // Every prefix of a valid file is an error or a memory, never a panic.
    for cut in 0..text.len() {
        if text.is_char_boundary(cut) {
            let _ = Memory::from_json(&text[..cut], "ctx.json");
        }
    }
}

#[test]
fn an_answer_of_the_family_that_failed_waits_for_the_one_that_worked() {
    let name = || RemoteSpec::Host {
        host: "server.test".into(),
        port: 443,
    };
    let resolve = |r: &mut Race, at: u64, family: Family, ip: &str| {
        r.advance_to(ms(at));
        // Queries are numbered AAAA = 1, A = 2.
        let query = if family == Family::V6 { 1 } else { 2 };
        r.racer.handle_input(
            ms(at),
            Input::Resolved {
                query,
                result: Ok(vec![ip.parse().unwrap()]),
            },
        );
        r.drain();
    };
    let mut mem = Memory::new();
    // First race: AAAA first, IPv6 silent, IPv4 wins after 250 ms.
    let mut r = Race::new(
        &mut mem,
        T0,
        RacingConfig::default(),
        &[StackId::Tcp],
        vec![name()],
    );
    resolve(&mut r, 0, Family::V6, "::1");
    resolve(&mut r, 1, Family::V4, "127.0.0.1");
    assert_eq!(r.started()[0].2, V6);
    r.succeed(ms(251), V4, StackId::Tcp);
    r.learn(&mut mem, T0);

    // AAAA answers first again: IPv6 waits for A, which comes at 5 ms.
    let mut r = Race::new(
        &mut mem,
        T0 + 1,
        RacingConfig::default(),
        &[StackId::Tcp],
        vec![name()],
    );
    resolve(&mut r, 0, Family::V6, "::1");
    assert!(r.started().is_empty(), "{:?}", r.started());
    assert_eq!(r.racer.poll_timeout(), Some(ms(50)), "the Resolution Delay");
    resolve(&mut r, 5, Family::V4, "127.0.0.1");
    assert_eq!(r.started(), [(5, StackId::Tcp, V4)]);
    let why = r.reasons(TraceEventKind::Reordered);
    assert!(
        why.iter().any(|m| m
            == "[::1]:443 waits up to 50 ms for the other family's answer: 127.0.0.1:443 worked last time"),
        "{why:?}"
    );

    // If A is slow, IPv6 goes at the end of the Resolution Delay.
    let mut r = Race::new(
        &mut mem,
        T0 + 2,
        RacingConfig::default(),
        &[StackId::Tcp],
        vec![name()],
    );
    resolve(&mut r, 0, Family::V6, "::1");
    r.advance_to(ms(60));
    assert_eq!(r.started(), [(50, StackId::Tcp, V6)]);
}
