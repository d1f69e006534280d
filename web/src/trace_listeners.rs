//! The JS functions that receive a Preconnection's trace events.
//!
//! `Preconnection::on_trace` wants a `Send + Sync` observer; a
//! `js_sys::Function` is neither. The observer holds only a number, and the
//! functions live in a table on the page's thread (the only thread the
//! package runs on). A [`Registration`] removes its entry when the last
//! holder (the Preconnection, or an initiate still racing) drops it.

use crate::convert::to_js;
use postsocket::TraceEvent;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use wasm_bindgen::prelude::*;

thread_local! {
    static LISTENERS: RefCell<HashMap<u32, js_sys::Function>> = RefCell::new(HashMap::new());
    static NEXT_ID: Cell<u32> = const { Cell::new(1) };
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(message: &str, error: &JsValue);
}

/// One listener in the table; removed on drop.
pub(crate) struct Registration(u32);

impl Registration {
    /// Register `listener`.
    pub(crate) fn new(listener: js_sys::Function) -> Self {
        let id = NEXT_ID.with(|n| {
            let id = n.get();
            n.set(id.wrapping_add(1));
            id
        });
        LISTENERS.with(|l| l.borrow_mut().insert(id, listener));
        Registration(id)
    }

    /// The observer to hand to `Preconnection::on_trace`.
    pub(crate) fn observer(&self) -> impl Fn(&TraceEvent) + Send + Sync + 'static {
        let id = self.0;
        move |event: &TraceEvent| {
            // Clone the function out, so a listener that registers another one
            // does not find the table borrowed.
            let Some(f) = LISTENERS.with(|l| l.borrow().get(&id).cloned()) else {
                return;
            };
            let value = match to_js(event) {
                Ok(v) => v,
                Err(e) => {
                    return console_error("postsocket: a trace event could not be converted", &e)
                }
            };
            if let Err(e) = f.call1(&JsValue::UNDEFINED, &value) {
                console_error("postsocket: the trace listener threw", &e);
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        LISTENERS.with(|l| l.borrow_mut().remove(&self.0));
    }
}
