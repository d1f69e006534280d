//! Received data that the browser also still holds.
//!
//! A browser stack receives each message as a JS buffer (a WebSocket or
//! data channel `ArrayBuffer`, a WebTransport datagram's `Uint8Array`). The
//! Connection needs the bytes in wasm memory, so they are copied once, into
//! [`Bytes`]. A JS caller that wants the message as a `Uint8Array` again
//! would pay a second allocation and copy to get back what the browser
//! already had; [`take_browser_bytes`] hands it the browser's own buffer
//! instead.
//!
//! How the two are tied: the [`Bytes`] owns its Vec through [`Owned`], and a
//! table of the page's thread maps the Vec's address to the JS buffer while
//! the Vec lives. The address identifies the bytes exactly: no other live
//! allocation has it, the Bytes are immutable, and [`Owned`]'s drop removes
//! the entry before the memory can be reused. Data a framer cut or copied
//! has another address or length and is not found; the caller copies then.
//!
//! Keeping the browser's buffer costs its memory for as long as the data
//! lives, so it is off until something that will take the buffers (the npm
//! package's bindings) turns it on with [`keep_browser_bytes`].

use bytes::Bytes;
use std::cell::{Cell, RefCell};

/// The browser's copies of received data still in wasm memory: Vec
/// address → (length, the browser's copy of the same bytes). Usually one
/// at a time (a Message is taken as it is received), so one entry stands
/// apart and the map is hashed only when more are kept.
#[derive(Default)]
struct BrowserCopies {
    one: Option<(usize, usize, js_sys::Uint8Array)>,
    more: super::IdMap<usize, (usize, js_sys::Uint8Array)>,
}

impl BrowserCopies {
    fn insert(&mut self, key: usize, len: usize, view: js_sys::Uint8Array) {
        if self.one.is_none() {
            self.one = Some((key, len, view));
        } else {
            self.more.insert(key, (len, view));
        }
    }

    /// The copy of exactly `len` bytes at `key`, taken out.
    fn take(&mut self, key: usize, len: usize) -> Option<js_sys::Uint8Array> {
        if matches!(self.one, Some((k, l, _)) if k == key && l == len) {
            return self.one.take().map(|(_, _, v)| v);
        }
        if self.more.is_empty() {
            return None;
        }
        match self.more.get(&key) {
            Some((l, _)) if *l == len => self.more.remove(&key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Forget the copy at `key`, if any.
    fn forget(&mut self, key: usize) {
        if matches!(self.one, Some((k, _, _)) if k == key) {
            self.one = None;
        } else if !self.more.is_empty() {
            self.more.remove(&key);
        }
    }
}

thread_local! {
    /// The browser's copies of received data, by the Vec's address.
    static BROWSER_COPIES: RefCell<BrowserCopies> = RefCell::default();
    /// Whether received buffers are kept (see [`keep_browser_bytes`]).
    static KEEP: Cell<bool> = const { Cell::new(false) };
}

/// Keep (true) or stop keeping each received message's browser buffer
/// beside its wasm copy, for [`take_browser_bytes`]. Off by default: a
/// program that never takes the buffers would hold every received message
/// twice. Applies to messages received from then on, on the page's thread.
pub fn keep_browser_bytes(on: bool) {
    KEEP.with(|k| k.set(on));
}

/// The wasm copy of a received buffer; dropping it forgets the browser's.
struct Owned(Vec<u8>);

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        let key = self.0.as_ptr() as usize;
        // `try_with`: at thread exit the table may already be gone.
        let _ = BROWSER_COPIES.try_with(|t| t.borrow_mut().forget(key));
    }
}

/// The bytes of `view` (a received message), copied into wasm memory and,
/// when [`keep_browser_bytes`] is on, tied to `view` for
/// [`take_browser_bytes`].
pub(crate) fn received(view: js_sys::Uint8Array) -> Bytes {
    let len = view.length();
    received_sized(view, len)
}

#[wasm_bindgen::prelude::wasm_bindgen(inline_js = "
let bytes = null;
export function copy_in(mem, ptr, len, src) {
  if (src.length !== len) return false;
  // Detached (length 0) once the memory grew; it is not shared memory.
  if (bytes === null || bytes.byteLength === 0) bytes = new Uint8Array(mem.buffer);
  bytes.set(src, ptr);
  return true;
}
")]
extern "C" {
    /// Copy `src` into wasm memory `mem` at `ptr` if it holds exactly
    /// `len` bytes (else false, and nothing is written), through one view
    /// of the whole memory kept between calls (js-sys's `copy_to` makes a
    /// view per call, and asks the length). The view is module state: one
    /// wasm instance per JS module, as wasm-bindgen's own glue assumes.
    fn copy_in(
        mem: &wasm_bindgen::JsValue,
        ptr: *mut u8,
        len: u32,
        src: &js_sys::Uint8Array,
    ) -> bool;
}

thread_local! {
    /// This module's `WebAssembly.Memory`, for [`copy_in`].
    static MEMORY: wasm_bindgen::JsValue = wasm_bindgen::memory();
}

/// Where a browser event handler may copy a message before it calls into
/// wasm: this module's `WebAssembly.Memory`, and the staging area's address
/// in it and size (see [`super::staging`]). A message staged there is
/// taken by [`received_staged`].
pub(crate) fn staging() -> (wasm_bindgen::JsValue, *mut u8, u32) {
    let (at, len) = super::staging::staging_area();
    (MEMORY.with(Clone::clone), at, len as u32)
}

/// [`received_sized`] for a message the JS handler already copied into
/// the staging area: its first `len` bytes. A `len` the area cannot hold
/// was not staged: it is copied in from `view`.
pub(crate) fn received_staged(view: js_sys::Uint8Array, len: u32) -> Bytes {
    if len as usize > super::staging::STAGING_LEN {
        return received_sized(view, len);
    }
    kept(view, super::staging::take_staged(len as usize))
}

/// [`received`] for a caller that knows `view`'s length (the browser's own
/// `byteLength`): one call into JS fewer. A wrong `len` costs the call back.
pub(crate) fn received_sized(view: js_sys::Uint8Array, len: u32) -> Bytes {
    let mut data = Vec::<u8>::with_capacity(len as usize);
    if MEMORY.with(|m| copy_in(m, data.as_mut_ptr(), len, &view)) {
        // SAFETY: `copy_in` wrote exactly `len` bytes at the start of the
        // spare capacity (it writes nothing when `view` holds another length).
        unsafe { data.set_len(len as usize) };
    } else {
        data = view.to_vec();
    }
    kept(view, data)
}

/// `data` as [`Bytes`], tied to `view` (the browser's copy of the same
/// bytes) when [`keep_browser_bytes`] is on.
fn kept(view: js_sys::Uint8Array, data: Vec<u8>) -> Bytes {
    if !KEEP.with(Cell::get) {
        return data.into();
    }
    if data.is_empty() {
        return Bytes::new(); // no allocation, so no address to key by
    }
    let key = data.as_ptr() as usize;
    BROWSER_COPIES.with(|t| t.borrow_mut().insert(key, data.len(), view));
    Bytes::from_owner(Owned(data))
}

/// The browser's own buffer holding exactly `data`, if `data` is a message
/// a browser stack received as it arrived (not cut or reassembled by a
/// framer) while [`keep_browser_bytes`] was on, and nobody took the buffer
/// before: a `Uint8Array` to hand to JS
/// instead of copying `data` out of wasm memory. Each buffer is handed out
/// once (JS may change it); afterwards, and for any other data, `None`.
///
/// Until the data is dropped or its buffer taken, the browser's copy stays
/// alive beside the wasm one.
pub fn take_browser_bytes(data: &Bytes) -> Option<js_sys::Uint8Array> {
    BROWSER_COPIES.with(|t| t.borrow_mut().take(data.as_ptr() as usize, data.len()))
}
