//! Browser runtime: `performance.now()`, `setTimeout` and `spawn_local`.
//! Never `std::time::Instant` or tokio, which panic on wasm32-unknown-unknown.

use std::ops::{Add, Sub};
use std::time::Duration;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(closure: &js_sys::Function, millis: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
}

/// A monotonic instant: milliseconds from `performance.now()`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub(crate) struct Instant(f64);

impl Instant {
    /// Time since `earlier`, zero if negative.
    pub(crate) fn duration_since(&self, earlier: Instant) -> Duration {
        Duration::from_secs_f64(((self.0 - earlier.0).max(0.0)) / 1000.0)
    }
    /// Time since this instant.
    #[allow(dead_code)]
    pub(crate) fn elapsed(&self) -> Duration {
        now().duration_since(*self)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0 + d.as_secs_f64() * 1000.0)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, other: Instant) -> Duration {
        self.duration_since(other)
    }
}

/// Milliseconds on the page's monotonic clock (`performance.now()`), for
/// counting ages that must not move with the wall clock.
pub(crate) fn monotonic_ms() -> u64 {
    performance_now() as u64
}

/// Now.
pub(crate) fn now() -> Instant {
    Instant(performance_now())
}

/// Sleep for `d` with `setTimeout` (rounded up to whole milliseconds, so a
/// deadline is never reported early). Works in a window and in a worker.
pub(crate) fn sleep(d: Duration) -> Sleep {
    let ms = d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    let state: std::rc::Rc<std::cell::RefCell<Fired>> = Default::default();
    let fire = {
        let state = state.clone();
        Closure::<dyn FnMut()>::new(move || {
            let mut s = state.borrow_mut();
            s.fired = true;
            if let Some(w) = s.waker.take() {
                drop(s);
                w.wake();
            }
        })
    };
    let id = set_timeout(fire.as_ref().unchecked_ref(), ms);
    Sleep {
        state,
        id,
        _fire: fire,
    }
}

/// Whether a [`Sleep`]'s timer fired, and who waits for it.
#[derive(Default)]
struct Fired {
    fired: bool,
    waker: Option<std::task::Waker>,
}

/// A pending `setTimeout`. Dropped, it clears the timer, then frees its
/// callback: nothing of it is left behind (a sleep awaited through a
/// Promise would keep its callbacks for good if dropped before it fired,
/// and the racing loop and Close drop many).
pub(crate) struct Sleep {
    state: std::rc::Rc<std::cell::RefCell<Fired>>,
    id: JsValue,
    _fire: Closure<dyn FnMut()>,
}

impl std::future::Future for Sleep {
    type Output = ();
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let mut s = self.state.borrow_mut();
        if s.fired {
            return std::task::Poll::Ready(());
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        std::task::Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        // Before the callback is freed: a cleared timer never calls it.
        clear_timeout(&self.id);
    }
}

/// `at + d` (a float clock: a `Duration::MAX` stays far away, never panics).
pub(crate) fn saturating_add(at: Instant, d: Duration) -> Instant {
    at + d
}

/// Sleep until `deadline` (one `setTimeout` reaches at most about 24.8 days
/// ahead, so a later deadline takes several).
pub(crate) async fn sleep_until(deadline: Instant) {
    loop {
        let n = now();
        if deadline <= n {
            return;
        }
        sleep(deadline.duration_since(n)).await;
    }
}

/// Run `fut` in the background on the page's event loop (`spawn_local`).
pub(crate) fn spawn(fut: impl std::future::Future<Output = ()> + 'static) -> bool {
    wasm_bindgen_futures::spawn_local(fut);
    true
}

/// Wall-clock milliseconds since the Unix epoch (`Date.now()`).
pub(crate) fn unix_ms() -> u64 {
    js_sys::Date::now().max(0.0) as u64
}

/// The page's `localStorage` (a window's; workers have none).
fn local_storage() -> Result<web_sys::Storage, String> {
    web_sys::window()
        .ok_or("localStorage exists only in a window, not in a worker")?
        .local_storage()
        .ok()
        .flatten()
        .ok_or_else(|| "localStorage is not available in this page".to_string())
}

/// Store `text` under `location`, a `localStorage` key (one `setItem`:
/// atomic).
pub(crate) fn store(location: &str, text: &str) -> Result<(), String> {
    local_storage()?
        .set_item(location, text)
        .map_err(|e| format!("localStorage.setItem({location}): {e:?}"))
}

/// The text stored under `location`, a `localStorage` key; `Ok(None)` when
/// there is none.
pub(crate) fn load(location: &str) -> Result<Option<String>, String> {
    local_storage()?
        .get_item(location)
        .map_err(|e| format!("localStorage.getItem({location}): {e:?}"))
}
