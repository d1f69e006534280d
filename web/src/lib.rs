//! # postsocket-web
//!
//! The JavaScript surface of [postsocket](../postsocket/index.html) (TAPS,
//! RFC 9622) for the browser, built into the npm package `postsocket` by
//! `scripts/build-npm.sh`. The `#[wasm_bindgen]` classes here are the raw
//! bindings (`RawPreconnection`, `RawConnection`); the package's `index.js`
//! wraps them into `EventTarget` classes with RFC 9622 names in JS case.
//!
//! Natively only [`options`] is built (the option parser, target-neutral, so
//! it is unit-tested and fuzzed natively); the workspace builds on every
//! target.
#![warn(missing_docs)]

#[cfg(web)]
mod connection;
#[cfg(web)]
mod context;
#[cfg(web)]
mod convert;
#[cfg(web)]
pub mod executor;
pub mod options;
#[cfg(web)]
mod path_change;
#[cfg(web)]
mod preconnection;
#[cfg(web)]
mod trace_listeners;

#[cfg(web)]
pub use connection::RawConnection;
#[cfg(web)]
pub use context::{
    context_forget, context_json, context_network_changed, context_restore, context_save,
};
#[cfg(web)]
pub use convert::set_error_class;
#[cfg(web)]
pub use preconnection::RawPreconnection;
