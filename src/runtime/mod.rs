//! The runtime shim: a clock, timers and task spawning for each target.
//! The rest of the crate calls these and never names tokio or the browser.

cfg_if::cfg_if! {
    if #[cfg(web)] {
        mod web;
        mod browser_event;
        pub(crate) use web::*;
        pub use browser_event::{inside_browser_event, set_browser_event_end};
        pub(crate) use browser_event::in_browser_event;
    } else {
        mod native;
        pub(crate) use native::*;
    }
}

/// A duration for a message, in milliseconds ("250 ms", "0.125 ms"),
/// formatted with integers: Rust's float formatting (`{:.3}`, a
/// `Duration`'s `{:?}`) would add about 10 KB to the browser's .wasm.
pub(crate) fn ms_text(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    match d.subsec_nanos() % 1_000_000 {
        0 => format!("{ms} ms"),
        frac => format!("{ms}.{:03} ms", frac / 1000),
    }
}

/// A boxed future: `Send` natively, not in the browser.
#[cfg(native)]
pub type BoxFuture<'a, T> = futures::future::BoxFuture<'a, T>;
/// A boxed future: `Send` natively, not in the browser.
#[cfg(web)]
pub type BoxFuture<'a, T> = futures::future::LocalBoxFuture<'a, T>;

/// A future behind `dyn`, for waits written once for every caller: `Send`
/// natively, not in the browser.
#[cfg(native)]
pub type DynFuture<'a> = dyn std::future::Future<Output = ()> + Send + 'a;
/// A future behind `dyn`, for waits written once for every caller: `Send`
/// natively, not in the browser.
#[cfg(web)]
pub type DynFuture<'a> = dyn std::future::Future<Output = ()> + 'a;
