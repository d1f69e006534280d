//! WebSocket in the browser (`web_sys::WebSocket`, RFC 6455): the `ws` and
//! `wss` stacks. Each WebSocket message is one TAPS Message.
//!
//! - **Establishment**: Ready when `open` fires. An `error` or `close` before
//!   that fails the attempt; browsers do not say why (refused, TLS failure,
//!   HTTP error all look the same to a page), so the message says so.
//! - **Receive**: the browser delivers every message as an event whether or
//!   not anyone reads (a WebSocket has no receive flow control a page can
//!   apply), so the event handlers feed an [`Inbox`] that `read` drains. Binary
//!   messages arrive as ArrayBuffer (their bytes stay tied to it, see
//!   `received_bytes`); text messages as their UTF-8 bytes. A small JS
//!   handler hands wasm the message's bytes or text directly: one call into
//!   wasm per message.
//! - **Send**: `send()` copies the bytes into the browser's buffer and returns
//!   at once. Backpressure: before sending, wait while `bufferedAmount` is
//!   above [`HIGH_WATER`], polling with a short bounded backoff (the browser
//!   has no event for "drained").
//! - **Close and abort**: close sends code 1000 (normal closure). A page
//!   cannot reset a connection, so abort closes with [`ABORTED`] (4000,
//!   reason `aborted`), which a peer reads as a failure, not a clean finish
//!   (postsocket's native WebSocket does); it also ends pending and later
//!   reads at once instead of waiting for the peer's close frame.
//! - **Security**: wss uses the browser's own certificate check. With
//!   pinnedServerCertificate set, a wss attempt fails at once: a page cannot
//!   check a WebSocket's certificate against a pin.
//! - **Drop**: dropping the last handle (e.g. a losing racing attempt)
//!   detaches the handlers and closes the socket.
//! - **Threads**: the WebSocket object stays in a table of the page's thread;
//!   the handle is `Send + Sync` (like a native Transport), and used from
//!   another thread it reports an error.

use super::received_bytes;
use crate::backend::{Recv, SocketOptions};
use crate::capability::StackId;
use crate::racing::Target;
use crate::runtime::in_browser_event;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BinaryType, CloseEvent, Event, WebSocket};

#[wasm_bindgen(inline_js = "
export function set_message_handler(ws, id, exports, text, mem, staging, capacity) {
  const binary = exports.__postsocket_ws_binary;
  let bytes = new Uint8Array(mem.buffer);
  ws.onmessage = (e) => {
    const d = e.data;
    if (typeof d === 'string') return text(d);
    const view = new Uint8Array(d);
    const n = d.byteLength;
    if (n > capacity) return binary(id, view, n, 0);
    // A view of memory that grew since is detached (length 0; the memory
    // is not shared, whose views stay attached).
    if (bytes.byteLength === 0) bytes = new Uint8Array(mem.buffer);
    bytes.set(view, staging);
    binary(id, view, n, 1);
  };
}
export function try_send(ws, data, high_water) {
  if (ws.readyState !== WebSocket.OPEN) return 2;
  if (ws.bufferedAmount > high_water) return 1;
  ws.send(data);
  return 0;
}
")]
extern "C" {
    /// `ws.onmessage`: binary messages to [`ws_binary`] (called straight
    /// from the handler as the module's export, for socket `id`) as a
    /// Uint8Array over the browser's ArrayBuffer with its length, and
    /// whether the handler already copied them into the staging area
    /// (`staging`, `capacity` bytes of `mem`; see
    /// [`received_bytes::staging`]); text messages to `text`.
    fn set_message_handler(
        ws: &WebSocket,
        id: f64,
        exports: &JsValue,
        text: &Closure<dyn FnMut(String)>,
        mem: &JsValue,
        staging: *mut u8,
        capacity: u32,
    );
    /// Send `data` if `ws` is open and holds at most `high_water` unsent
    /// bytes: 0 sent, 1 no room, 2 not open (a closing WebSocket's `send`
    /// would drop the data without an error). Throws what `send` throws.
    /// One call where three (readyState, bufferedAmount, send) were.
    #[wasm_bindgen(catch, js_name = try_send)]
    fn ws_try_send(ws: &WebSocket, data: &[u8], high_water: u32) -> Result<u8, JsValue>;
}

/// `send` waits while the browser holds more than this many unsent bytes.
pub(crate) const HIGH_WATER: u32 = 1 << 20;

/// Longest pause between two `bufferedAmount` polls while waiting to send.
const MAX_POLL: Duration = Duration::from_millis(16);

/// The close code of a normal closure (RFC 6455 §7.4.1).
const NORMAL: u16 = 1000;

/// The close code of Abort: a page cannot reset the connection, and a
/// normal closure would read as a clean finish to the peer. 4000 is the
/// first of the private-use codes (RFC 6455 §7.4.2), the range a page may
/// send besides 1000.
pub(crate) const ABORTED: u16 = 4000;

/// What the browser's event handlers report.
enum WsEvent {
    Open,
    Error,
    Message(bytes::Bytes),
    Close {
        code: u16,
        reason: String,
        clean: bool,
    },
    /// Abort was called: end pending reads.
    Aborted,
    /// The peer sent more than [`super::UNREAD_MAX`] bytes that no read
    /// took: the socket is closed, the Connection fails with this many
    /// bytes named.
    Overflow(usize),
}

/// The close code for a receive queue past [`super::UNREAD_MAX`] (RFC 6455: 1009).
const TOO_BIG: u16 = 1009;

/// Close `ws`: its received Messages passed [`super::UNREAD_MAX`].
fn close_too_big(ws: &WebSocket) {
    let _ = ws.close_with_code_and_reason(TOO_BIG, "receive queue full");
}

/// The browser side of one socket: the WebSocket and its event handlers.
/// It lives in a table of the page's thread ([`SOCKETS`]), so the handle the
/// rest of the crate holds ([`WsTransport`]) stays `Send + Sync` like a native
/// Transport, with no unsafe code: the Connection types are the same on both
/// targets.
struct Browser {
    ws: WebSocket,
    _onopen: Closure<dyn FnMut(Event)>,
    _onerror: Closure<dyn FnMut(Event)>,
    /// Where [`ws_binary`] puts this socket's binary messages.
    inbox: Arc<Inbox>,
    _ontext: Closure<dyn FnMut(String)>,
    _onclose: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Detach first: the closures are freed with `self`, and the browser
        // must not call them afterwards.
        self.ws.set_onopen(None);
        self.ws.set_onerror(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close_with_code(NORMAL);
    }
}

thread_local! {
    /// The page's open WebSockets, by handle id.
    static SOCKETS: RefCell<super::IdMap<u64, Browser>> = RefCell::default();
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

// The handler passes the message's Uint8Array to the raw export as it is:
// an `externref` parameter, which needs the reference-types feature (on by
// default since Rust 1.82; without it wasm-bindgen's raw ABI takes a heap
// index instead, and the handler would hand it a JS object).
#[cfg(not(target_feature = "reference-types"))]
compile_error!(
    "postsocket's browser WebSocket needs wasm reference types \
     (-C target-feature=+reference-types; the default since Rust 1.82)"
);

/// A binary message of WebSocket `id`, from its `onmessage` handler (see
/// [`set_message_handler`]), which calls this export directly: no closure
/// glue between the browser's event and wasm. `view` is the message
/// (`len` bytes); `staged`: the handler already copied it into the staging
/// area. A waiting receive finishes as the handler returns (no microtask
/// hop). Not for other callers (the raw bindings list it; `index.js` does
/// not re-export it).
#[doc(hidden)]
#[wasm_bindgen(js_name = __postsocket_ws_binary)]
pub fn ws_binary(id: f64, view: js_sys::Uint8Array, len: u32, staged: bool) {
    in_browser_event(|| {
        // A socket that was dropped meanwhile detached its handler first.
        let Some(inbox) = SOCKETS.with(|s| s.borrow().get(&(id as u64)).map(|b| b.inbox.clone()))
        else {
            return;
        };
        if inbox.unread.overflowed() {
            return; // failed already (see UNREAD_MAX)
        }
        let data = if staged {
            received_bytes::received_staged(view, len)
        } else {
            received_bytes::received_sized(view, len)
        };
        if !inbox.push_message(data) {
            SOCKETS.with(|s| {
                if let Some(b) = s.borrow().get(&(id as u64)) {
                    close_too_big(&b.ws);
                }
            });
        }
    })
}

/// What the handlers reported and no read took yet, and who waits for it.
/// The handlers and the transport share it; it holds no browser object.
#[derive(Default)]
struct Inbox {
    events: Mutex<VecDeque<WsEvent>>,
    /// Bytes of the Messages in `events` (see [`super::UNREAD_MAX`]).
    unread: super::Unread,
    /// Reads waiting for an event (one, from the Connection's receive lock;
    /// every one is woken, so none is ever left behind).
    readers: Mutex<Vec<Waker>>,
}

impl Inbox {
    /// Queue a received Message, within [`super::UNREAD_MAX`]; `false`
    /// once past it (the Message is dropped, the reader told, the socket
    /// to close).
    fn push_message(&self, data: bytes::Bytes) -> bool {
        match self.unread.admit(data.len()) {
            super::Admit::Yes => {
                self.push(WsEvent::Message(data));
                true
            }
            super::Admit::Overflow(queued) => {
                self.push(WsEvent::Overflow(queued));
                false
            }
            super::Admit::Dropped => false,
        }
    }

    fn push(&self, event: WsEvent) {
        lock(&self.events).push_back(event);
        // Woken with no lock held (a waker may poll its reader at once);
        // the list's allocation is kept for the next wait.
        let mut readers = std::mem::take(&mut *lock(&self.readers));
        for w in readers.drain(..) {
            w.wake();
        }
        let mut slot = lock(&self.readers);
        if slot.is_empty() {
            *slot = readers;
        }
    }

    /// The next event, in order.
    async fn next(&self) -> WsEvent {
        std::future::poll_fn(|cx| {
            if let Some(e) = lock(&self.events).pop_front() {
                if let WsEvent::Message(d) = &e {
                    self.unread.taken(d.len());
                }
                return Poll::Ready(e);
            }
            let mut readers = lock(&self.readers);
            if !readers.iter().any(|w| w.will_wake(cx.waker())) {
                readers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

/// A lock that a panic elsewhere does not poison for good.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Inner {
    id: u64,
    url: String,
    remote: Target,
    inbox: Arc<Inbox>,
    /// Once the socket closed (or was aborted): the error every later read
    /// and send returns.
    ended: crate::backend::Ended,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone (a Connection, or a losing racing attempt):
        // close the socket and free its handlers.
        let browser = SOCKETS.with(|s| s.borrow_mut().remove(&self.id));
        drop(browser);
    }
}

/// One browser WebSocket. Clones share it.
#[derive(Clone)]
pub(crate) struct WsTransport {
    inner: Arc<Inner>,
}

impl fmt::Debug for WsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsTransport")
            .field("url", &self.inner.url)
            .finish()
    }
}

/// The URL an attempt opens: `ws://HOST:PORT/PATH` (`wss://` for wss).
/// HOST is the RemoteEndpoint's host name when the attempt has one (the
/// browser resolves it; a secure stack verifies the certificate for it),
/// else the IP address (IPv6 in brackets).
pub(crate) fn url(stack: StackId, remote: &Target, opts: &SocketOptions) -> String {
    let scheme = if stack == StackId::Wss { "wss" } else { "ws" };
    let host = opts
        .server_name
        .clone()
        .unwrap_or_else(|| remote.host_text());
    let path = ws_path(stack, opts);
    format!("{scheme}://{host}:{}{path}", remote.port())
}

/// The HTTP path of the WebSocket (`wss.path`, else `ws.path`), default `/`,
/// as the native stack reads it.
fn ws_path(stack: StackId, opts: &SocketOptions) -> String {
    let get = |k: &str| opts.protocol_options.get(k).cloned();
    let path = if stack == StackId::Wss {
        get("wss.path").or_else(|| get("ws.path"))
    } else {
        get("ws.path")
    };
    path.unwrap_or_else(|| "/".to_string())
}

/// A JavaScript exception as text (never keep a JsValue in an error).
fn js_text(v: &JsValue) -> String {
    if let Some(e) = v.dyn_ref::<js_sys::Error>() {
        return String::from(e.to_string());
    }
    v.as_string().unwrap_or_else(|| format!("{v:?}"))
}

/// The close code's meaning, for messages (RFC 6455 §7.4.1).
fn close_text(code: u16, reason: &str) -> String {
    let meaning = match code {
        1000 => "normal closure",
        1001 => "going away",
        1002 => "protocol error",
        1003 => "unsupported data",
        1005 => "no status code",
        1006 => "abnormal closure, no close frame",
        1007 => "invalid payload data",
        1008 => "policy violation",
        1009 => "message too big",
        1010 => "mandatory extension missing",
        1011 => "internal server error",
        1015 => "TLS handshake failure",
        _ => "",
    };
    let mut s = format!("code {code}");
    if !meaning.is_empty() {
        s.push_str(&format!(", {meaning}"));
    }
    if !reason.is_empty() {
        s.push_str(&format!(", reason {reason:?}"));
    }
    s
}

impl WsTransport {
    /// Open `stack` (ws or wss) to `remote`; resolves when the socket is open.
    pub(crate) async fn connect(
        stack: StackId,
        remote: &Target,
        opts: &SocketOptions,
    ) -> io::Result<WsTransport> {
        // A page cannot see or check a WebSocket's certificate: a pin would
        // silently become "any certificate the browser trusts".
        let pinned = opts
            .security
            .as_ref()
            .is_some_and(|s| !s.pinned_server_certificate.is_empty());
        if stack == StackId::Wss && pinned {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "security: the browser's WebSocket cannot check pinnedServerCertificate \
                 (only WebTransport can, via serverCertificateHashes); wss is not tried",
            ));
        }
        let url = url(stack, remote, opts);
        let ws = WebSocket::new(&url).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the browser refused to open {url}: {}", js_text(&e)),
            )
        })?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let inbox = Arc::new(Inbox::default());
        let i = inbox.clone();
        let onopen = Closure::<dyn FnMut(Event)>::new(move |_: Event| i.push(WsEvent::Open));
        let i = inbox.clone();
        let onerror = Closure::<dyn FnMut(Event)>::new(move |_: Event| i.push(WsEvent::Error));
        let i = inbox.clone();
        let ontext = Closure::<dyn FnMut(String)>::new(move |t: String| {
            in_browser_event(|| {
                // Past the bound, the reader closes the socket (see Overflow).
                i.push_message(t.into_bytes().into());
            })
        });
        let i = inbox.clone();
        let onclose = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            i.push(WsEvent::Close {
                code: e.code(),
                reason: e.reason(),
                clean: e.was_clean(),
            });
        });
        ws.set_onopen(Some(onopen.as_ref().unchecked_ref()));
        ws.set_onerror(Some(onerror.as_ref().unchecked_ref()));
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (mem, staging, capacity) = received_bytes::staging();
        let exports = wasm_bindgen::exports();
        set_message_handler(&ws, id as f64, &exports, &ontext, &mem, staging, capacity);
        ws.set_onclose(Some(onclose.as_ref().unchecked_ref()));

        // From here on, dropping `transport` (a cancelled attempt) closes the socket.
        let browser = Browser {
            ws,
            _onopen: onopen,
            _onerror: onerror,
            inbox: inbox.clone(),
            _ontext: ontext,
            _onclose: onclose,
        };
        SOCKETS.with(|s| s.borrow_mut().insert(id, browser));
        let transport = WsTransport {
            inner: Arc::new(Inner {
                id,
                url,
                remote: remote.clone(),
                inbox,
                ended: Default::default(),
            }),
        };
        {
            let url = &transport.inner.url;
            let mut saw_error = false;
            loop {
                match transport.inner.inbox.next().await {
                    WsEvent::Open => break,
                    WsEvent::Error => saw_error = true,
                    WsEvent::Close { code, reason, .. } => {
                        let what = if saw_error {
                            format!("the browser refused or could not open {url}")
                        } else {
                            format!("the server closed {url} during the opening handshake")
                        };
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionRefused,
                            format!(
                                "{what} ({}); browsers do not tell a page why \
                                 (refused, unreachable, TLS or HTTP failure)",
                                close_text(code, &reason)
                            ),
                        ));
                    }
                    // (No Message comes before Open.)
                    WsEvent::Message(_) | WsEvent::Overflow(_) => {}
                    WsEvent::Aborted => {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            format!("opening {url} was aborted"),
                        ))
                    }
                }
            }
        }
        Ok(transport)
    }

    /// Run `f` on the browser's WebSocket. It exists on the page's thread
    /// only; from any other thread this is an error, not a crash.
    fn with_ws<R>(&self, f: impl FnOnce(&WebSocket) -> R) -> io::Result<R> {
        SOCKETS
            .with(|s| s.borrow().get(&self.inner.id).map(|b| f(&b.ws)))
            .ok_or_else(|| {
                io::Error::other(format!(
                    "the WebSocket {} belongs to another thread (browser objects stay on their thread)",
                    self.inner.url
                ))
            })
    }

    fn ended(&self) -> Option<io::Error> {
        self.inner.ended.get()
    }

    fn end(&self, kind: io::ErrorKind, msg: String) -> io::Error {
        self.inner.ended.set(kind, msg)
    }

    /// The next message. A close ends the stream with an error that says
    /// whether it was normal and gives the close code and reason.
    pub(crate) async fn read(&self) -> io::Result<Recv> {
        if let Some(e) = self.ended() {
            return Err(e);
        }
        loop {
            if let Some(e) = self.ended() {
                return Err(e);
            }
            match self.inner.inbox.next().await {
                // An abort while this read waited ends it too.
                WsEvent::Message(_) if self.ended().is_some() => {}
                WsEvent::Message(d) => return Ok(Recv::Datagram(d)),
                WsEvent::Open | WsEvent::Error => {}
                WsEvent::Close {
                    code,
                    reason,
                    clean,
                } => {
                    let (kind, what) = if clean && (code == NORMAL || code == 1001) {
                        (io::ErrorKind::UnexpectedEof, "closed")
                    } else if clean {
                        (io::ErrorKind::ConnectionReset, "was closed with an error")
                    } else {
                        (
                            io::ErrorKind::ConnectionReset,
                            "closed abnormally (no closing handshake)",
                        )
                    };
                    let msg = format!(
                        "the WebSocket {} {what}: {}",
                        self.inner.url,
                        close_text(code, &reason)
                    );
                    return Err(self.end(kind, msg));
                }
                WsEvent::Aborted => {
                    return Err(self.end(
                        io::ErrorKind::ConnectionAborted,
                        format!("the WebSocket {} was aborted", self.inner.url),
                    ))
                }
                WsEvent::Overflow(queued) => {
                    let _ = self.with_ws(close_too_big);
                    return Err(self.end(
                        io::ErrorKind::OutOfMemory,
                        super::unread_overflow(
                            &format!("the WebSocket {}", self.inner.url),
                            queued,
                            &format!("it was closed ({TOO_BIG})"),
                        ),
                    ));
                }
            }
        }
    }

    /// Send one message now if the socket is open and the browser's send
    /// buffer is at most [`HIGH_WATER`]; `None` when it must wait for room.
    pub(crate) fn try_send(&self, data: &[u8]) -> Option<io::Result<()>> {
        if let Some(e) = self.ended() {
            return Some(Err(e));
        }
        let sent = self.with_ws(|ws| match ws_try_send(ws, data, HIGH_WATER) {
            Ok(0) => Some(Ok(())),
            Ok(1) => None,
            Ok(_) => Some(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("the WebSocket {} is closing or closed", self.inner.url),
            ))),
            Err(e) => Some(Err(io::Error::other(format!(
                "sending on the WebSocket {}: {}",
                self.inner.url,
                js_text(&e)
            )))),
        });
        match sent {
            Ok(r) => r,
            Err(e) => Some(Err(e)),
        }
    }

    /// Send one message, after waiting while the browser's send buffer is
    /// above [`HIGH_WATER`].
    pub(crate) async fn send(&self, data: &[u8]) -> io::Result<()> {
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(r) = self.try_send(data) {
                return r;
            }
            crate::runtime::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// Close with code 1000: the peer answers with its close frame, then
    /// reads end.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        self.with_ws(|ws| ws.close_with_code(NORMAL))?.map_err(|e| {
            io::Error::other(format!(
                "closing the WebSocket {}: {}",
                self.inner.url,
                js_text(&e)
            ))
        })
    }

    /// A browser cannot reset a WebSocket: close with [`ABORTED`], so the
    /// peer does not take it for a clean finish, and end every pending and
    /// later read at once.
    pub(crate) fn abort(&self) {
        let _ = self.with_ws(|ws| ws.close_with_code_and_reason(ABORTED, "aborted"));
        self.end(
            io::ErrorKind::ConnectionAborted,
            format!("the WebSocket {} was aborted", self.inner.url),
        );
        self.inner.inbox.push(WsEvent::Aborted);
    }

    pub(crate) fn remote(&self) -> Option<SocketAddr> {
        self.inner.remote.addr()
    }
}
