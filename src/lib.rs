//! # postsocket
//!
//! The IETF Transport Services API (TAPS, RFC 9622) in Rust, for native programs and the browser.
#![warn(missing_docs)]

#[cfg(all(target_arch = "wasm32", not(target_os = "unknown")))]
compile_error!(
    "postsocket supports wasm32 only in the browser (wasm32-unknown-unknown); wasm32-wasi is not the browser"
);

pub mod capability;
pub mod error;
pub mod racing;
pub mod trace;

pub use capability::{Capabilities, StackId};
pub use error::{CandidateFailure, Error, ErrorReason};
pub use trace::{Branch, RacingTrace, TraceEvent, TraceEventKind};
