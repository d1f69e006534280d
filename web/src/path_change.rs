//! PathChange for JS (RFC 9622 §8.3.2): the package's `pathChanged` and
//! `watchPlatformPaths` wrap these (see `postsocket::path_changed` and
//! `postsocket::watch_platform_paths`).

use wasm_bindgen::prelude::*;

/// The network path changed (`what` says how): every open Connection of the
/// page gets a `pathChange` event with `what`, and the page's
/// TransportContext forgets what it learned on the old network. Returns how
/// many Connections were told.
#[wasm_bindgen(js_name = pathChanged)]
pub fn path_changed(what: &str) -> u32 {
    u32::try_from(postsocket::path_changed(what)).unwrap_or(u32::MAX)
}

/// Whether the browser's `online`, `offline` and `navigator.connection`
/// `change` events are reported as path changes (on by default).
#[wasm_bindgen(js_name = watchPlatformPaths)]
pub fn watch_platform_paths(on: bool) {
    postsocket::watch_platform_paths(on);
}
