//! Shared helpers for the browser tests (wasm32 in headless Chromium).
#![allow(dead_code)]

/// Milliseconds of a JS timer (lets background work in the page run).
pub async fn pause(ms: i32) {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        let set = js_sys::Function::new_with_args("f, ms", "setTimeout(f, ms)");
        let _ = set.call2(&wasm_bindgen::JsValue::NULL, &resolve, &ms.into());
    });
    let _ = wasm_bindgen_futures::JsFuture::from(p).await;
}
