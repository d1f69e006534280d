//! The establishment engine, sans-IO: gather (candidate tree) → select
//! (filter and rank stacks, in [`selection`]) → race (timers, in [`race`]).
//!
//! Nothing here opens a socket, reads a clock or spawns a task. Time is an
//! input: the driver passes `now` (time since the action started) and asks
//! [`Racer::poll_timeout`] for the next deadline, exactly as quinn-proto does.
//! Both targets run this same code; tests drive it with a virtual clock.

pub mod config;
pub mod history;
pub mod race;
pub mod selection;
mod trace_log;

pub(crate) use trace_log::LazyTrace;

pub use config::{RacingConfig, RacingMode};
pub use history::{AttemptOutcome, AttemptResult, Held, RaceHistory, TargetMemory, TargetVerdict};
pub use race::{Action, Family, Input, PathSpec, QueryId, Racer, RemoteSpec, Target};

/// Time since the action (initiate, listen, rendezvous) started.
pub type Time = std::time::Duration;

/// A node of the candidate tree, by its dotted id (`1.1.2`).
pub type NodeId = String;
