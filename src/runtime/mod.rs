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

/// `process_wide!(NAME: T = init)`: a value for the whole program behind a
/// lock, read with `NAME.with(|lock| ..)`. Natively a `static`, where
/// Connections live on many threads; in the browser a `thread_local`,
/// where a page has one thread and what it holds need not be `Send`.
#[cfg(native)]
macro_rules! process_wide {
    ($name:ident: $t:ty = $init:expr) => {
        static $name: $crate::runtime::ProcessWide<$t> =
            $crate::runtime::ProcessWide(std::sync::Mutex::new($init));
    };
}
/// `process_wide!(NAME: T = init)`: a value for the whole program behind a
/// lock, read with `NAME.with(|lock| ..)`. Natively a `static`, where
/// Connections live on many threads; in the browser a `thread_local`,
/// where a page has one thread and what it holds need not be `Send`.
#[cfg(web)]
macro_rules! process_wide {
    ($name:ident: $t:ty = $init:expr) => {
        thread_local! {
            static $name: std::sync::Mutex<$t> = const { std::sync::Mutex::new($init) };
        }
    };
}
pub(crate) use process_wide;

/// What [`process_wide!`] makes natively: a lock with a `thread_local`'s
/// `with`, so that both targets read it alike.
#[cfg(native)]
pub(crate) struct ProcessWide<T>(pub(crate) std::sync::Mutex<T>);

#[cfg(native)]
impl<T> ProcessWide<T> {
    /// `f` with the lock (as `LocalKey::with` gives a thread's own).
    pub(crate) fn with<R>(&'static self, f: impl FnOnce(&std::sync::Mutex<T>) -> R) -> R {
        f(&self.0)
    }

    /// `f` with the lock (as `LocalKey::try_with`; a static never fails).
    pub(crate) fn try_with<R>(
        &'static self,
        f: impl FnOnce(&std::sync::Mutex<T>) -> R,
    ) -> Result<R, std::convert::Infallible> {
        Ok(f(&self.0))
    }
}

/// `fut`, or a Timeout error saying `what` had no result within `timeout`.
pub(crate) async fn with_timeout<T>(
    timeout: std::time::Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, crate::Error>>,
) -> Result<T, crate::Error> {
    use futures::FutureExt;
    let sleep = sleep(timeout).fuse();
    let fut = fut.fuse();
    futures::pin_mut!(sleep, fut);
    futures::select! {
        r = fut => r,
        _ = sleep => Err(crate::Error::new(
            crate::ErrorReason::Timeout,
            format!("{what}: no result within {}", ms_text(timeout)),
        )),
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
