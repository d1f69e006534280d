//! The browser's path signals for PathChange: the global object's `online`
//! and `offline` events (a window's or a worker's) and
//! `navigator.connection`'s `change` where the browser has it (Chromium).

use std::cell::Cell;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

/// The browser reports network changes: Connections are watched.
pub(crate) const PATH_SIGNALS: bool = true;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
}

fn get(target: &JsValue, name: &str) -> Option<JsValue> {
    js_sys::Reflect::get(target, &JsValue::from_str(name))
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

/// `target.addEventListener(name, f)`, for the page's lifetime.
fn listen(target: &JsValue, name: &str, f: impl FnMut(JsValue) + 'static) {
    let Some(add) =
        get(target, "addEventListener").and_then(|f| f.dyn_into::<js_sys::Function>().ok())
    else {
        return;
    };
    let cb = Closure::<dyn FnMut(JsValue)>::new(f);
    if add
        .call2(target, &JsValue::from_str(name), cb.as_ref())
        .is_ok()
    {
        // Listens as long as the page lives: the closure must too.
        cb.forget();
    }
}

/// Nothing to stop: the listeners stay, and report nothing while the
/// application has the platform unwatched
/// ([`platform_path_changed`](crate::connection::platform_path_changed)).
pub(crate) fn stop_watching_path_changes() {}

/// Install the listeners once (with the first Connection), whether or not
/// the platform is watched now: what they hear is reported only while it
/// is.
pub(crate) fn watch_path_changes() {
    if WATCHING.with(|w| w.replace(true)) {
        return;
    }
    let global: JsValue = js_sys::global().into();
    listen(&global, "online", |_| {
        crate::connection::platform_path_changed("the browser reports the network online again");
    });
    listen(&global, "offline", |_| {
        crate::connection::platform_path_changed("the browser reports the network offline");
    });
    if let Some(conn) = get(&global, "navigator").and_then(|n| get(&n, "connection")) {
        let info = conn.clone();
        listen(&conn, "change", move |_| {
            let field = |n: &str| get(&info, n).and_then(|v| v.as_string());
            let what = format!(
                "navigator.connection reports a change (type {}, effectiveType {})",
                field("type").unwrap_or_else(|| "unknown".into()),
                field("effectiveType").unwrap_or_else(|| "unknown".into()),
            );
            crate::connection::platform_path_changed(&what);
        });
    }
}
