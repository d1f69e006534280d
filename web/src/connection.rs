//! `RawConnection`: a postsocket `Connection` for JS. Each action returns a
//! Promise with exactly one outcome, as in the Rust API.

use crate::convert::{
    error_to_js, option_error, property_to_js, property_value, to_js, value, whole_number,
};
use crate::executor::Started;
use crate::options;
use postsocket::{
    ConnState, Connection, ConnectionEvent, MessageContext, ReceiveError, ReceiveEvent,
    SendFailure, Sent,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

/// A Connection (RFC 9622 §7). See `index.d.ts` for the JS shape.
#[wasm_bindgen]
pub struct RawConnection {
    conn: Rc<Connection>,
}

impl RawConnection {
    pub(crate) fn new(conn: Connection) -> Self {
        RawConnection {
            conn: Rc::new(conn),
        }
    }

    /// `send` and `sendStaged`: check the properties, send, and answer at
    /// once when the outcome is known (the usual case: no task).
    fn send_data(
        &self,
        data: Vec<u8>,
        properties: &JsValue,
        end_of_message: Option<bool>,
    ) -> SendAnswer {
        let context = match message_context(properties) {
            Ok(c) => c,
            Err(e) => return SendAnswer::Later(js_sys::Promise::reject(&e)),
        };
        let sending = self
            .conn
            .send(data, context, end_of_message.unwrap_or(true));
        match sending.answer_now() {
            Ok(Ok(sent)) => SendAnswer::Sent(sent.sequence),
            Ok(failed) => SendAnswer::Later(crate::executor::settled_promise(sent_outcome(failed))),
            Err(fut) => {
                SendAnswer::Later(crate::executor::promise(
                    async move { sent_outcome(fut.await) },
                ))
            }
        }
    }
}

// The per-Message results are built in JS with object literals, in one call:
// building them from wasm key by key (Reflect.set) crossed into JS for each
// key and made V8 take its slow, generic path for every object.
// A waiting receive's Promise is made by index.js, which puts its resolve and
// reject here at the task's slot (see `receive_resolvers`); the Message is
// built in the same call that settles it.
#[wasm_bindgen(module = "/src/glue.js")]
extern "C" {
    /// The Message object: `{ data, endOfMessage, partial, messageContext:
    /// { id, final, earlyData } }`, the flags as [`received_parts`] packs them.
    fn received_message(data: js_sys::Uint8Array, id: f64, flags: u32) -> JsValue;
    /// The two arrays where index.js puts a waiting receive's resolve and
    /// reject, at its task slot, for [`settle_received`] or
    /// [`reject_receive`].
    #[wasm_bindgen(js_name = receive_resolvers)]
    fn inline_receive_resolvers() -> JsValue;
    /// Resolve the Promise at `slot` with the Message
    /// [`received_message`] builds from the same arguments.
    fn settle_received(slot: usize, data: js_sys::Uint8Array, id: f64, flags: u32);
    /// Reject the Promise at `slot` with `error`.
    fn reject_receive(slot: usize, error: JsValue);
    fn sent_message(sequence: f64) -> JsValue;
    /// A Promise resolved with `{ sequence }` (one call where two were).
    fn sent_promise(sequence: f64) -> js_sys::Promise;
}

thread_local! {
    // Property names as JS strings, made once: decoding a key from wasm
    // memory for every Message was a visible part of the per-Message cost.
    static KEYS: RefCell<HashMap<&'static str, JsValue>> = RefCell::new(HashMap::new());
    /// The Promise of the last `sendStaged` whose outcome was not known at
    /// once, for [`RawConnection::take_promise`].
    static LATER: RefCell<Option<js_sys::Promise>> = const { RefCell::new(None) };
}

/// The address in wasm memory of the staging area (the core's, shared with
/// its WebSocket receive path), where `index.js` copies a Message
/// of at most [`staging_capacity`] bytes before it calls `sendStaged`: a
/// send then makes no call to allocate its bytes first, and its answer,
/// known at once, is a number rather than a Promise.
#[wasm_bindgen(js_name = stagingArea)]
pub fn staging_area() -> u32 {
    postsocket::__web_bindings::staging_area().0 as u32
}

/// The size of the staging area (see [`staging_area`]).
#[wasm_bindgen(js_name = stagingCapacity)]
pub fn staging_capacity() -> u32 {
    postsocket::__web_bindings::STAGING_LEN as u32
}

/// What a send answers at once: `Sent` with its sequence number, or the
/// Promise of any other outcome (refused, or still to come).
enum SendAnswer {
    Sent(u64),
    Later(js_sys::Promise),
}

/// `obj[key] = value`, with `key` a cached JS string.
fn set(obj: &js_sys::Object, key: &'static str, value: &JsValue) {
    KEYS.with(|keys| {
        let mut keys = keys.borrow_mut();
        let key = keys.entry(key).or_insert_with(|| JsValue::from_str(key));
        let _ = js_sys::Reflect::set(obj, key, value);
    });
}

#[wasm_bindgen]
impl RawConnection {
    /// `Send(messageData, messageContext?, endOfMessage?)` (§9.2): the
    /// Promise resolves at `Sent` with `{ sequence }`, or rejects with an
    /// `Error` named `SendError` or `Expired`. `properties` are Message
    /// Properties by RFC name (`msgLifetime` in ms, `final`, ...); a bad one
    /// rejects at once (`InvalidMessageProperties`).
    ///
    /// Per-Message calls return a Promise, never a `Result`: wasm-bindgen
    /// returns a `Result` through memory, which costs every call more.
    pub fn send(
        &self,
        data: Vec<u8>,
        properties: JsValue,
        end_of_message: Option<bool>,
    ) -> js_sys::Promise {
        match self.send_data(data, &properties, end_of_message) {
            SendAnswer::Sent(sequence) => sent_promise(sequence as f64),
            SendAnswer::Later(p) => p,
        }
    }

    /// `send` of the first `length` bytes of the staging area (see
    /// `staging_area`), which `index.js` filled just before. Returns the
    /// Message's `sequence` when it was `Sent` at once; otherwise -1, and
    /// [`Self::take_promise`] gives the Promise of its outcome.
    #[wasm_bindgen(js_name = sendStaged)]
    pub fn send_staged(
        &self,
        length: u32,
        properties: JsValue,
        end_of_message: Option<bool>,
    ) -> f64 {
        let data = postsocket::__web_bindings::take_staged(length as usize);
        match self.send_data(data, &properties, end_of_message) {
            SendAnswer::Sent(sequence) => sequence as f64,
            SendAnswer::Later(p) => {
                LATER.with(|l| *l.borrow_mut() = Some(p));
                -1.0
            }
        }
    }

    /// The Promise of the last `sendStaged` that returned -1 (once).
    #[wasm_bindgen(js_name = takePromise)]
    pub fn take_promise(&self) -> Option<js_sys::Promise> {
        LATER.with(|l| l.borrow_mut().take())
    }

    /// `Clone(connectionProperties?)` (§7.4): a Promise of a new Connection
    /// in this one's group, to the same remote (a new WebSocket, a new
    /// WebTransport stream, a new data channel). `properties` are
    /// Connection Properties by RFC name to change on the clone; the others
    /// are this Connection's. Rejects with an `Error` named `CloneError`; a
    /// bad property throws at once.
    #[wasm_bindgen(js_name = clone)]
    pub fn clone_connection(&self, properties: JsValue) -> Result<js_sys::Promise, JsValue> {
        let props = if properties.is_undefined() || properties.is_null() {
            None
        } else {
            let props =
                options::connection_properties(self.conn.properties(), &value(&properties)?);
            Some(props.map_err(option_error)?)
        };
        let conn = self.conn.clone();
        Ok(crate::executor::promise(async move {
            match Connection::clone_in_group(&conn, None, props).await {
                Ok(c) => Ok(RawConnection::new(c).into()),
                Err(e) => Err(error_to_js("CloneError", &e)),
            }
        }))
    }

    /// Cancel the receive waiting at `slot` (from [`receive_start`]): its
    /// future is dropped (a receive loses nothing by that: what was read
    /// stays buffered for the next one). True if it was still waiting; its
    /// Promise is then the caller's to reject.
    ///
    /// [`receive_start`]: Self::receive_start
    #[wasm_bindgen(js_name = receiveCancel)]
    pub fn receive_cancel(&self, slot: u32) -> bool {
        crate::executor::cancel(slot as usize)
    }

    /// `Receive(minIncompleteLength?, maxLength?)` (§9.3), index.js's
    /// half of its `receive`: a Promise when the outcome is known at once
    /// (a Message already buffered, a stopped Connection, a bad limit),
    /// else the receive's slot number, where the caller must put the
    /// resolve and reject of the Promise it makes (see
    /// `receive_resolvers`) before it returns or awaits. The Promise
    /// resolves with `{ data, endOfMessage, partial, messageContext }` or
    /// rejects with an `Error` named `ReceiveError` (or
    /// `InvalidConfiguration` for a limit that is not a whole number).
    #[wasm_bindgen(js_name = receiveStart)]
    pub fn receive_start(
        &self,
        min_incomplete_length: Option<f64>,
        max_length: Option<f64>,
    ) -> JsValue {
        let limit = |v: Option<f64>, what: &str| -> Result<Option<usize>, JsValue> {
            // Past the address space (2^32 on wasm32): no limit at all, as
            // the core saturates it (a cast kept the low bits: 2^32 was 0).
            v.map(|n| whole_number(n, what).map(|n| usize::try_from(n).unwrap_or(usize::MAX)))
                .transpose()
        };
        let (min, max) = match (
            limit(min_incomplete_length, "minIncompleteLength"),
            limit(max_length, "maxLength"),
        ) {
            (Ok(min), Ok(max)) => (min, max),
            (Err(e), _) | (_, Err(e)) => return js_sys::Promise::reject(&e).into(),
        };
        let conn = self.conn.clone();
        let fut = async move { conn.receive_with(min, max).await };
        match crate::executor::start(fut, settle_receive) {
            Started::Ready(outcome) => crate::executor::settled_promise(match outcome {
                Ok(event) => Ok(received(event)),
                Err(e) => Err(error_to_js("ReceiveError", &e.error)),
            })
            .into(),
            // One call from wasm into JS fewer than making the Promise here.
            Started::Waiting(slot) => JsValue::from(slot as u32),
        }
    }

    /// `Close()` (§10): resolves once queued Messages were sent and the
    /// Connection closed.
    pub fn close(&self) -> js_sys::Promise {
        let conn = self.conn.clone();
        crate::executor::promise(async move {
            conn.close()
                .await
                .map(|_| JsValue::UNDEFINED)
                .map_err(|e| error_to_js("ConnectionError", &e))
        })
    }

    /// `Abort()` (§10): stop at once.
    pub fn abort(&self) {
        self.conn.abort();
    }

    /// The next unsolicited event as `{ type, error?, detail? }` (`type`:
    /// `closed`, `connectionError`, `softError`, `pathChange`, `cloneError`),
    /// or `null` after the last one.
    #[wasm_bindgen(js_name = nextEvent)]
    pub fn next_event(&self) -> js_sys::Promise {
        let conn = self.conn.clone();
        crate::executor::promise(async move {
            let Some(event) = conn.next_event().await else {
                return Ok(JsValue::NULL);
            };
            let out = js_sys::Object::new();
            let (kind, error, detail) = match event {
                ConnectionEvent::Closed => ("closed", None, None),
                ConnectionEvent::ConnectionError(e) => (
                    "connectionError",
                    Some(error_to_js("ConnectionError", &e)),
                    None,
                ),
                ConnectionEvent::SoftError(s) => ("softError", None, Some(s)),
                ConnectionEvent::PathChange(s) => ("pathChange", None, Some(s)),
                ConnectionEvent::CloneError(e) => {
                    ("cloneError", Some(error_to_js("CloneError", &e)), None)
                }
            };
            set(&out, "type", &kind.into());
            if let Some(e) = error {
                set(&out, "error", &e);
            }
            if let Some(d) = detail {
                set(&out, "detail", &d.into());
            }
            Ok(out.into())
        })
    }

    /// The protocol stack that won the race (`ws`, `wss`, ...).
    #[wasm_bindgen(getter)]
    pub fn stack(&self) -> String {
        self.conn.stack().as_str().to_string()
    }

    /// `connState`: `establishing`, `established`, `closing` or `closed`.
    #[wasm_bindgen(getter)]
    pub fn state(&self) -> String {
        match self.conn.state() {
            ConnState::Establishing => "establishing",
            ConnState::Established => "established",
            ConnState::Closing => "closing",
            ConnState::Closed => "closed",
        }
        .to_string()
    }

    /// The remote address (`ip:port`), if known.
    #[wasm_bindgen(getter, js_name = remoteAddress)]
    pub fn remote_address(&self) -> Option<String> {
        self.conn.remote_addr().map(|a| a.to_string())
    }

    /// The RacingTrace of the establishment: an array of trace events.
    pub fn trace(&self) -> Result<JsValue, JsValue> {
        to_js(&self.conn.trace().events)
    }

    /// `GetProperty(name)`: a Connection Property by RFC name.
    #[wasm_bindgen(js_name = getProperty)]
    pub fn get_property(&self, name: &str) -> Result<JsValue, JsValue> {
        self.conn
            .get(name)
            .map(|v| property_to_js(&v))
            .map_err(|e| error_to_js("InvalidConfiguration", &e))
    }

    /// `SetProperty(name, value)` (§8).
    #[wasm_bindgen(js_name = setProperty)]
    pub fn set_property(&self, name: &str, value: JsValue) -> Result<(), JsValue> {
        let v = property_value(name, &value)?;
        self.conn
            .set_property(name, v)
            .map_err(|e| error_to_js("InvalidConfiguration", &e))
    }
}

/// A MessageContext from JS Message Properties by RFC name (`undefined` or
/// `null`: none); a bad one is an `InvalidMessageProperties` Error.
pub(crate) fn message_context(properties: &JsValue) -> Result<Option<MessageContext>, JsValue> {
    if properties.is_undefined() || properties.is_null() {
        return Ok(None);
    }
    options::message_context(&value(properties)?).map_err(option_error)
}

/// A send's outcome for JS: `{ sequence }`, or an `Error` named `Expired`
/// or `SendError`.
pub(crate) fn sent_outcome(outcome: Result<Sent, SendFailure>) -> Result<JsValue, JsValue> {
    match outcome {
        Ok(sent) => Ok(sent_message(sent.sequence as f64)),
        Err(SendFailure::Expired { .. }) => Err(error_to_js(
            "Expired",
            &postsocket::Error::new(
                postsocket::ErrorReason::Timeout,
                "the message's msgLifetime passed before it could be sent",
            ),
        )),
        Err(SendFailure::SendError { error, .. }) => Err(error_to_js("SendError", &error)),
    }
}

/// Settle the Promise of the receive waiting at `slot` (see
/// [`RawConnection::receive_start`]): the Message is built in the call
/// into JS that resolves it.
fn settle_receive(slot: usize, outcome: Result<ReceiveEvent, ReceiveError>) {
    match outcome {
        Ok(event) => {
            let (data, id, flags) = received_parts(&event);
            settle_received(slot, data, id, flags)
        }
        Err(e) => reject_receive(slot, error_to_js("ReceiveError", &e.error)),
    }
}

/// The arrays where `index.js` puts a waiting receive's resolve and reject
/// at its slot (see [`RawConnection::receive_start`]): `[resolvers,
/// rejecters]`.
#[wasm_bindgen(js_name = receiveResolvers)]
pub fn receive_resolvers() -> JsValue {
    inline_receive_resolvers()
}

/// A received Message's data (the browser's own buffer when the data is a
/// message exactly as the browser delivered it: no second allocation and
/// copy), its context's id, and its flags for [`received_message`]: 1 it
/// ends its Message, 2 it is a part, 4 final, 8 early data.
fn received_parts(event: &ReceiveEvent) -> (js_sys::Uint8Array, f64, u32) {
    let data = match event {
        ReceiveEvent::Received { data, .. } | ReceiveEvent::ReceivedPartial { data, .. } => {
            postsocket::__web_bindings::take_browser_bytes(data)
                .unwrap_or_else(|| js_sys::Uint8Array::from(&data[..]))
        }
    };
    let c = event.context();
    let flags = u32::from(event.is_end_of_message())
        | u32::from(matches!(event, ReceiveEvent::ReceivedPartial { .. })) << 1
        | u32::from(c.is_final()) << 2
        | u32::from(c.is_early_data()) << 3;
    (data, c.id() as f64, flags)
}

/// `{ data, endOfMessage, partial, messageContext: { id, final, earlyData } }`.
fn received(event: ReceiveEvent) -> JsValue {
    let (data, id, flags) = received_parts(&event);
    received_message(data, id, flags)
}
