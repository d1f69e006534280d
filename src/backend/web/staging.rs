//! The staging area: 64 KiB of wasm memory where JS code that has a
//! message in hand copies it before calling into wasm, which then takes the
//! bytes from there. This saves the call from wasm back into JS that copying
//! in from wasm would take, once per Message.
//!
//! One area serves the page's thread: the browser WebSocket's `onmessage`
//! handler (receiving) and the npm package's `send`. Each writes and then
//! calls into wasm, which takes the bytes at once; nothing runs in between,
//! and neither runs inside the other (browser events are never delivered
//! while wasm or a send runs).

use std::cell::UnsafeCell;

/// How many bytes the staging area holds; a larger message takes the
/// caller's other path.
pub const STAGING_LEN: usize = 64 * 1024;

thread_local! {
    /// The area; made once, never moved or freed.
    static STAGING: Box<[UnsafeCell<u8>]> = (0..STAGING_LEN).map(|_| UnsafeCell::new(0)).collect();
}

/// The staging area's address in wasm memory (the module's
/// `WebAssembly.Memory`) and its size, [`STAGING_LEN`].
pub fn staging_area() -> (*mut u8, usize) {
    (
        STAGING.with(|s| UnsafeCell::raw_get(s.as_ptr())),
        STAGING_LEN,
    )
}

/// The first `len` bytes of the staging area (at most [`STAGING_LEN`]),
/// which JS wrote just before this call.
pub fn take_staged(len: usize) -> Vec<u8> {
    let len = len.min(STAGING_LEN);
    // SAFETY: the area's bytes are `UnsafeCell`s, written by JS before this
    // call and read only here, on this thread.
    STAGING.with(|s| {
        unsafe { std::slice::from_raw_parts(UnsafeCell::raw_get(s.as_ptr()), len) }.to_vec()
    })
}
