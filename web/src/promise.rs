//! Futures to Promises without a task for what is already done.
//!
//! Most sends complete on their first poll (the browser took the bytes at
//! once), and most receives find a Message already buffered. Spawning a task
//! for each (what `future_to_promise` does) costs a queued microtask and a
//! task allocation per Message; polling once first and answering with an
//! already-settled Promise keeps the per-Message cost near the raw
//! WebSocket's. A future still pending goes to `future_to_promise`, which
//! polls it again with a real waker.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use wasm_bindgen::prelude::*;

/// A Promise of `fut`: settled at once if `fut` is ready on its first poll.
pub(crate) fn promise<F>(fut: F) -> js_sys::Promise
where
    F: Future<Output = Result<JsValue, JsValue>> + 'static,
{
    let mut fut: Pin<Box<F>> = Box::pin(fut);
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(v)) => js_sys::Promise::resolve(&v),
        Poll::Ready(Err(e)) => js_sys::Promise::reject(&e),
        Poll::Pending => wasm_bindgen_futures::future_to_promise(fut),
    }
}
