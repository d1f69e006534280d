//! What a race takes from the [`TransportContext`](crate::TransportContext)
//! and what it gives back (RFC 9623 §8 caching; Happy Eyeballs v3 history).
//!
//! Both are plain data, so the engine stays sans-IO: history is an input
//! like time. [`RaceHistory`] says, at the race's start, which candidates
//! worked or failed before, how long their handshakes took, and which are
//! held back; [`AttemptOutcome`]s say what each attempt of the race did,
//! for the context to learn from. The policy (when a stack counts as broken,
//! when a family counts as blackholed) lives in the context; the engine only
//! applies its verdicts, and writes each one into the RacingTrace.

use super::Family;
use crate::capability::StackId;
use crate::error::ErrorReason;
use std::time::Duration;

/// What is remembered about one target (an address, or in the browser a
/// name the stack resolves) reached with one stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetMemory {
    /// The target as [`Target`](super::Target) prints it (`127.0.0.1:443`, `[::1]:443`, `example.com:443`).
    pub target: String,
    /// The stack.
    pub stack: StackId,
    /// Smoothed handshake time of this stack to this target.
    pub handshake: Duration,
    /// Its mean deviation (RFC 6298's RTTVAR, over handshake times).
    pub handshake_var: Duration,
    /// How many handshakes were measured.
    pub samples: u32,
}

/// How a target fared last time, for ordering (any stack).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetVerdict {
    /// The target, as in [`TargetMemory::target`].
    pub target: String,
    /// True: its last attempt succeeded; false: it failed or stayed silent.
    pub worked: bool,
    /// How long ago.
    pub ago: Duration,
}

/// A (destination, stack) pair held back: its leaves start only when
/// nothing else is left to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The remote endpoint as the application named it (`example.com:443`,
    /// `127.0.0.1:443`); `None` holds the stack back for every destination.
    pub destination: Option<String>,
    /// The stack.
    pub stack: StackId,
    /// Why, for the trace.
    pub why: String,
}

/// The context's verdicts for one race, taken when it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaceHistory {
    /// Handshake times per target and stack (the adaptive attempt delay).
    pub handshakes: Vec<TargetMemory>,
    /// How targets fared last time (recent winners first, failures last).
    pub verdicts: Vec<TargetVerdict>,
    /// Held back: broken stacks per destination, or a stack the browser
    /// would throttle.
    pub held: Vec<Held>,
    /// Address families this network seems to blackhole: their leaves go
    /// after the other family's (still tried, after an attempt delay).
    pub demoted_families: Vec<(Family, String)>,
    /// Stacks moved after the others on every path (UDP seems blackholed).
    pub demoted_stacks: Vec<(StackId, String)>,
    /// Notes for the trace: a verdict that would have applied but is
    /// probed this time instead.
    pub probes: Vec<String>,
    /// Whether the attempt delay follows measured handshake times (false
    /// when the application set the delay itself).
    pub adaptive_delay: bool,
}

impl RaceHistory {
    /// No history: the race runs exactly as a fresh one.
    pub fn none() -> RaceHistory {
        RaceHistory::default()
    }

    /// The remembered handshake of `stack` to `target`.
    pub fn handshake(&self, target: &str, stack: StackId) -> Option<&TargetMemory> {
        self.handshakes
            .iter()
            .find(|m| m.stack == stack && m.target == target)
    }

    /// How `target` fared last time.
    pub fn verdict(&self, target: &str) -> Option<&TargetVerdict> {
        self.verdicts.iter().find(|v| v.target == target)
    }

    /// Why (`destination`, `stack`) is held back, if it is.
    pub fn held(&self, destination: &str, stack: StackId) -> Option<&Held> {
        self.held
            .iter()
            .find(|h| h.stack == stack && h.destination.as_deref().is_none_or(|d| d == destination))
    }
}

/// The attempt delay after starting an attempt whose handshake usually
/// takes `srtt` ± `var`: 1.5 × SRTT plus twice the deviation (so a jittery
/// path is not overtaken by its own variance), within RFC 8305's 10 ms ..= 2 s.
pub fn adaptive_delay(srtt: Duration, var: Duration) -> Duration {
    (srtt.saturating_mul(3) / 2)
        .saturating_add(var.saturating_mul(2))
        .clamp(
            super::RacingConfig::MIN_ATTEMPT_DELAY,
            super::RacingConfig::MAX_ATTEMPT_DELAY,
        )
}

/// How one attempt of a race ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// It succeeded and won.
    Won,
    /// It failed; an answer came back (refused, a TLS alert, ...) unless the
    /// reason is Timeout.
    Failed(ErrorReason, String),
    /// Cancelled after it had its full turn (the attempt delay that followed
    /// its start) without any answer: as good as silent.
    Silent,
    /// Cancelled before its turn was over: no evidence either way.
    Cut,
}

/// One attempt of a finished race, for the context to learn from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// The leaf.
    pub node: super::NodeId,
    /// The remote endpoint it came from, as the application named it.
    pub destination: String,
    /// The stack.
    pub stack: StackId,
    /// The target, as [`Target`](super::Target) prints it.
    pub target: String,
    /// Its address family, when the target is an address.
    pub family: Option<Family>,
    /// How long it ran.
    pub ran: Duration,
    /// How it ended.
    pub result: AttemptResult,
}

/// How one attempt ended, borrowed from an [`AttemptResult`] or from the
/// engine (see [`Outcome`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultRef<'a> {
    /// [`AttemptResult::Won`].
    Won,
    /// [`AttemptResult::Failed`].
    Failed(ErrorReason, &'a str),
    /// [`AttemptResult::Silent`].
    Silent,
    /// [`AttemptResult::Cut`].
    Cut,
}

/// One attempt of a finished race as the TransportContext reads it: an
/// [`AttemptOutcome`], or the engine's own record of it, read in place
/// (the crate's driver teaches the context without copying any text).
pub(crate) trait Outcome {
    /// [`AttemptOutcome::destination`].
    fn destination(&self) -> &str;
    /// [`AttemptOutcome::stack`].
    fn stack(&self) -> StackId;
    /// [`AttemptOutcome::target`].
    fn target(&self) -> &str;
    /// [`AttemptOutcome::family`].
    fn family(&self) -> Option<Family>;
    /// [`AttemptOutcome::ran`].
    fn ran(&self) -> Duration;
    /// [`AttemptOutcome::result`].
    fn result(&self) -> ResultRef<'_>;
    /// The port of `target` (and of `destination`, which names the same
    /// port) when it is known without reading the text.
    fn port(&self) -> Option<u16> {
        None
    }
}

impl Outcome for AttemptOutcome {
    fn destination(&self) -> &str {
        &self.destination
    }
    fn stack(&self) -> StackId {
        self.stack
    }
    fn target(&self) -> &str {
        &self.target
    }
    fn family(&self) -> Option<Family> {
        self.family
    }
    fn ran(&self) -> Duration {
        self.ran
    }
    fn result(&self) -> ResultRef<'_> {
        match &self.result {
            AttemptResult::Won => ResultRef::Won,
            AttemptResult::Failed(reason, message) => ResultRef::Failed(*reason, message),
            AttemptResult::Silent => ResultRef::Silent,
            AttemptResult::Cut => ResultRef::Cut,
        }
    }
}

/// A duration for people: `120 ms`, `4.2 s`, `5 min`, `3 h`.
pub(crate) fn span_text(d: Duration) -> String {
    let s = d.as_secs();
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if s < 120 {
        format!("{:.1} s", d.as_secs_f64())
    } else if s < 120 * 60 {
        format!("{} min", (s + 30) / 60)
    } else {
        format!("{} h", (s + 1800) / 3600)
    }
}
