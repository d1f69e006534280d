//! The engine's record of a race, written as [`TraceEvent`]s only when
//! someone reads the trace: the text of an event (node ids, addresses,
//! reasons) costs more than the race itself on a fast path, and most
//! Connections never show their trace.
//!
//! A [`Note`] keeps what an event needs beyond the candidate tree, which the
//! engine keeps anyway and never changes once a node is made; the trace
//! written from the notes is the same, event for event, as one written
//! while racing.

use super::race::Racer;
use super::Time;
use crate::trace::{Branch, RacingTrace, TraceEvent, TraceEventKind};

/// One trace event, as recorded.
#[derive(Debug)]
pub(super) struct Note {
    /// When (the event's `t_ms`).
    pub(super) at: Time,
    /// What happened.
    pub(super) kind: TraceEventKind,
    /// The node (index into the tree); `None` is the establishment as a whole (`0`).
    pub(super) node: Option<usize>,
    /// The rest of the event.
    pub(super) what: What,
}

/// What an event carries besides its kind, time and node.
#[derive(Debug)]
pub(super) enum What {
    /// Nothing more.
    Plain,
    /// The node's description (parent, branch, stack, path, host, address).
    Candidate(Branch),
    /// A reason worded when it was recorded (failures, the end).
    Reason(String),
    /// A verdict probed this once (the note at this index of `RaceHistory::probes`).
    Probe(usize),
    /// Its stack goes after the others (`RaceHistory::demoted_stacks`).
    Demoted,
    /// History ranked the leaf first or last.
    Rank(super::race::RankWhy),
    /// The leaf waits for the other family's answer: the target at this
    /// index of `RaceHistory::verdicts` worked last time.
    Gated(usize),
    /// Held back (the entry at this index of `RaceHistory::held`).
    Held(usize),
    /// The attempt delay `turn` came from the handshake at this index of
    /// `RaceHistory::handshakes`.
    Delay(Time, usize),
}

/// A Connection's RacingTrace: the finished race's record, written out
/// the first time it is read (into the race's own `written`); none for a
/// Connection no race made. One pointer, since every Connection holds one.
pub(crate) struct LazyTrace(Option<Box<Racer>>);

/// The trace of a Connection no race made.
static EMPTY: RacingTrace = RacingTrace { events: Vec::new() };

impl LazyTrace {
    /// No trace (a Connection no race made).
    pub(crate) fn empty() -> LazyTrace {
        LazyTrace(None)
    }

    /// The trace of a finished race, written when first read.
    pub(crate) fn of(race: Box<Racer>) -> LazyTrace {
        LazyTrace(Some(race))
    }

    /// The trace.
    pub(crate) fn get(&self) -> &RacingTrace {
        match &self.0 {
            Some(r) => r.written.get_or_init(|| r.written_trace()),
            None => &EMPTY,
        }
    }
}

impl Default for LazyTrace {
    fn default() -> LazyTrace {
        LazyTrace::empty()
    }
}

impl std::fmt::Debug for LazyTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// An event with only the required fields set.
pub(super) fn event(at: Time, kind: TraceEventKind, id: &str) -> TraceEvent {
    TraceEvent::new(at.as_secs_f64() * 1000.0, kind, id)
}
