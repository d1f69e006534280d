//! RacingTrace: what happened during one establishment, as the candidate tree
//! plus a timeline. One serde JSON schema on both targets: the www demo draws
//! it, `tapscat --trace` writes it as JSON lines.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// What a trace event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TraceEventKind {
    /// A node of the candidate tree was gathered.
    Candidate,
    /// A leaf's connection attempt started.
    AttemptStarted,
    /// A leaf's attempt succeeded (the first success wins).
    AttemptSucceeded,
    /// A node failed; `reason` says why.
    AttemptFailed,
    /// A leaf's attempt was cancelled (another one won, or the race ended).
    AttemptCancelled,
    /// This leaf won the race: its stack becomes the Connection.
    Won,
    /// The whole establishment failed; `reason` says why.
    EstablishmentError,
    /// History moved a candidate earlier or later (`reason` says what the
    /// TransportContext remembered: a recent success, a failure, a
    /// blackholed family or UDP).
    Reordered,
    /// A candidate is held back (a stack broken for this destination, or
    /// one the browser would throttle): it starts only when everything
    /// else has failed. `reason` says why and until when.
    HeldBack,
    /// The Connection Attempt Delay after this attempt came from its
    /// measured handshake time rather than the configured value (`reason`
    /// gives the figures).
    AttemptDelay,
    /// A verdict of the TransportContext is set aside this once to see
    /// whether it still holds (`reason` says which).
    Probe,
}

/// The kind of branch a candidate node is (RFC 9623 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Branch {
    /// A network path (interface).
    Path,
    /// A protocol stack option.
    Protocol,
    /// A derived endpoint (a host name, or an address it resolved to).
    Endpoint,
}

/// One event of a [`RacingTrace`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Milliseconds since the action (initiate, listen) started.
    pub t_ms: f64,
    /// What happened.
    pub event: TraceEventKind,
    /// Dotted node id (`1.1.2`); `0` stands for the establishment as a whole.
    pub id: String,
    /// The parent node id (candidates only; absent for top-level paths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The branch type (candidates only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<Branch>,
    /// The protocol stack (`tcp`, `udp`, ...), for protocol nodes and below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// `ip:port` where known, for endpoint nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The host name of an unresolved endpoint node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The path (interface name, or `default`) for path nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Why a node failed or the establishment ended in error (`Reason: message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl TraceEvent {
    /// An event with only the required fields set.
    pub fn new(t_ms: f64, event: TraceEventKind, id: impl Into<String>) -> Self {
        TraceEvent {
            t_ms,
            event,
            id: id.into(),
            parent: None,
            branch: None,
            stack: None,
            address: None,
            host: None,
            path: None,
            reason: None,
        }
    }
}

/// The record of one establishment: every candidate and every attempt, in time order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RacingTrace {
    /// Events in the order they happened (`t_ms` never decreases).
    pub events: Vec<TraceEvent>,
}

impl RacingTrace {
    /// An empty trace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append an event.
    pub fn push(&mut self, event: TraceEvent) {
        self.events.push(event);
    }

    /// The events of one kind.
    pub fn of_kind(&self, kind: TraceEventKind) -> impl Iterator<Item = &TraceEvent> {
        self.events.iter().filter(move |e| e.event == kind)
    }

    /// The first event of `kind` for node `id`.
    pub fn find(&self, kind: TraceEventKind, id: &str) -> Option<&TraceEvent> {
        self.events.iter().find(|e| e.event == kind && e.id == id)
    }

    /// The candidate event (the node description) for `id`.
    pub fn candidate(&self, id: &str) -> Option<&TraceEvent> {
        self.find(TraceEventKind::Candidate, id)
    }

    /// The id of the winning leaf, if any.
    pub fn winner(&self) -> Option<&str> {
        self.of_kind(TraceEventKind::Won)
            .map(|e| e.id.as_str())
            .next()
    }

    /// One JSON object per line.
    pub fn to_json_lines(&self) -> String {
        let mut out = String::new();
        for e in &self.events {
            // Serializing these plain structs cannot fail.
            out.push_str(&serde_json::to_string(e).expect("trace event serializes"));
            out.push('\n');
        }
        out
    }

    /// Parse JSON lines written by [`to_json_lines`](Self::to_json_lines).
    pub fn from_json_lines(text: &str) -> Result<Self, crate::Error> {
        let mut trace = RacingTrace::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let e = serde_json::from_str(line).map_err(|e| {
                crate::Error::invalid_configuration(format!("trace line {}: {e}", n + 1))
            })?;
            trace.push(e);
        }
        Ok(trace)
    }

    /// A human-readable timeline: the candidate tree, then one line per event.
    pub fn timeline(&self) -> String {
        let mut out = String::from("candidate tree:\n");
        for c in self.of_kind(TraceEventKind::Candidate) {
            let depth = c.id.matches('.').count();
            let _ = write!(out, "  {}{}", "  ".repeat(depth), c.id);
            if let Some(b) = c.branch {
                let _ = write!(out, " [{}]", format!("{b:?}").to_lowercase());
            }
            for v in [&c.path, &c.stack, &c.host, &c.address]
                .into_iter()
                .flatten()
            {
                let _ = write!(out, " {v}");
            }
            out.push('\n');
        }
        out.push_str("timeline:\n");
        for e in &self.events {
            if e.event == TraceEventKind::Candidate {
                continue;
            }
            let what = match e.event {
                TraceEventKind::AttemptStarted => "attempt started",
                TraceEventKind::AttemptSucceeded => "attempt succeeded",
                TraceEventKind::AttemptFailed => "failed",
                TraceEventKind::AttemptCancelled => "cancelled",
                TraceEventKind::Won => "WON",
                TraceEventKind::EstablishmentError => "establishment error",
                TraceEventKind::Reordered => "reordered",
                TraceEventKind::HeldBack => "held back",
                TraceEventKind::AttemptDelay => "attempt delay",
                TraceEventKind::Probe => "probe",
                TraceEventKind::Candidate => unreachable!(),
            };
            let label = self
                .candidate(&e.id)
                .map(|c| {
                    [&c.stack, &c.address, &c.host]
                        .into_iter()
                        .flatten()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let _ = write!(
                out,
                "  {:>9.1} ms  {:<8} {:<18} {what}",
                e.t_ms, e.id, label
            );
            if let Some(r) = &e.reason {
                let _ = write!(out, ": {r}");
            }
            out.push('\n');
        }
        out
    }
}
