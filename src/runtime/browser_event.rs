//! Where a browser stack's event handlers end: the hook a JS binding's
//! executor runs there.
//!
//! The npm package's bindings (postsocket-web) turn futures into Promises on
//! an executor of their own. A task woken by a browser event (a message
//! arrived) would run from the next microtask; run as the handler ends
//! instead, with nothing else on the stack, a `receive()` settles one hop
//! sooner. The browser stacks here wrap their handlers in
//! [`in_browser_event`]; the executor asks [`inside_browser_event`] whether
//! a wake can wait for the end, and installs what runs there with
//! [`set_browser_event_end`]. Without a hook nothing runs at the end.

use std::cell::Cell;

thread_local! {
    /// How many browser event handlers ([`in_browser_event`]) are running.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// What runs as the outermost handler ends.
    static AT_END: Cell<Option<fn()>> = const { Cell::new(None) };
}

/// Run `f`, a browser stack's event handler (a message arrived, a channel
/// opened), then the installed end hook if it is the outermost one. Only
/// for code the browser calls directly, with no lock or borrow of ours held
/// around it.
pub(crate) fn in_browser_event<R>(f: impl FnOnce() -> R) -> R {
    DEPTH.with(|n| n.set(n.get() + 1));
    let r = f();
    let outermost = DEPTH.with(|n| {
        n.set(n.get() - 1);
        n.get() == 0
    });
    if outermost {
        if let Some(hook) = AT_END.with(Cell::get) {
            hook();
        }
    }
    r
}

/// Whether a browser stack's event handler is running now: a task woken
/// now may wait for the end hook instead of a microtask.
pub fn inside_browser_event() -> bool {
    DEPTH.with(|n| n.get() > 0)
}

/// Install `hook`, run on the page's thread each time the outermost browser
/// event handler of postsocket's stacks ends (`None` removes it). It must
/// not panic or throw; it may start and wake tasks.
pub fn set_browser_event_end(hook: Option<fn()>) {
    AT_END.with(|h| h.set(hook));
}
