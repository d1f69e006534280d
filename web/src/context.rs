//! The page's TransportContext (what earlier races taught, see
//! `postsocket::context`) for JS: the package's `transportContext` object
//! wraps these. The page's Preconnections all race with it; it lives as long
//! as the page unless saved to `localStorage`.

use crate::convert::error_to_js;
use postsocket::context::DEFAULT_STORAGE_KEY;
use postsocket::TransportContext;
use wasm_bindgen::prelude::*;

fn key(key: Option<String>) -> String {
    key.unwrap_or_else(|| DEFAULT_STORAGE_KEY.to_string())
}

/// Save the page's context to `localStorage` under `key` (default
/// `postsocket.transportContext`). Throws an `InvalidConfiguration` Error
/// when `localStorage` refuses (disabled, full, or in a worker).
#[wasm_bindgen(js_name = contextSave)]
pub fn context_save(key_: Option<String>) -> Result<(), JsValue> {
    TransportContext::global()
        .save(&key(key_))
        .map_err(|e| error_to_js("InvalidConfiguration", &e))
}

/// Restore the page's context from `localStorage` under `key`: `false` when
/// nothing is stored there. A stored text this build cannot read throws an
/// `InvalidConfiguration` Error saying why, and leaves the context empty.
#[wasm_bindgen(js_name = contextRestore)]
pub fn context_restore(key_: Option<String>) -> Result<bool, JsValue> {
    TransportContext::global()
        .restore(&key(key_))
        .map_err(|e| error_to_js("InvalidConfiguration", &e))
}

/// Forget everything the page's context learned (what is saved in
/// `localStorage` stays until the next save).
#[wasm_bindgen(js_name = contextForget)]
pub fn context_forget() {
    TransportContext::global().forget();
}

/// The page's context as JSON text, in the documented saved format.
#[wasm_bindgen(js_name = contextJson)]
pub fn context_json() -> String {
    TransportContext::global().to_json()
}

/// The network changed (the browser's `online` event, a
/// `navigator.connection` change): forget what was learned on it.
#[wasm_bindgen(js_name = contextNetworkChanged)]
pub fn context_network_changed() {
    TransportContext::global().network_changed();
}
