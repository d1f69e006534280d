//! `RawPreconnection`: a postsocket `Preconnection` built from a JS options
//! object, whose `initiate` returns a Promise of a [`RawConnection`].

use crate::connection::RawConnection;
use crate::convert::{error_to_js, option_error, value, whole_number};
use crate::options;
use crate::trace_listeners::Registration;
use postsocket::Preconnection;
use std::rc::Rc;
use std::time::Duration;
use wasm_bindgen::prelude::*;

/// A Preconnection (RFC 9622 §6). See `index.d.ts` for the options.
#[wasm_bindgen]
pub struct RawPreconnection {
    pre: Preconnection,
    // Kept by every initiate still racing, so its trace events still arrive.
    listener: Option<Rc<Registration>>,
}

#[wasm_bindgen]
impl RawPreconnection {
    /// `NewPreconnection(...)` from an options object; `on_trace` receives
    /// every trace event (a plain object) while racing. Throws an `Error`
    /// (name `InvalidConfiguration`) saying what was wrong with the options.
    #[wasm_bindgen(constructor)]
    pub fn new(
        options: JsValue,
        on_trace: Option<js_sys::Function>,
    ) -> Result<RawPreconnection, JsValue> {
        let mut pre = options::preconnection(&value(&options)?).map_err(option_error)?;
        // Received Messages go to JS as the browser's own buffers.
        postsocket::__web_bindings::keep_browser_bytes(true);
        let listener = on_trace.map(|f| Rc::new(Registration::new(f)));
        if let Some(l) = &listener {
            pre.on_trace(l.observer());
        }
        Ok(RawPreconnection { pre, listener })
    }

    /// `Initiate(timeout?)` (§7.1): a Promise of the Connection, rejected
    /// with an `EstablishmentError` that lists every candidate's failure.
    /// `timeout_ms` bounds the whole establishment. With `signal` (an
    /// AbortSignal), aborting it ends the race (every attempt is dropped)
    /// and rejects with the signal's reason.
    pub fn initiate(
        &self,
        timeout_ms: Option<f64>,
        signal: JsValue,
    ) -> Result<js_sys::Promise, JsValue> {
        let timeout = match timeout_ms {
            Some(t) => Some(Duration::from_millis(whole_number(t, "timeout")?)),
            None => None,
        };
        let fut = match timeout {
            Some(t) => futures::future::Either::Left(self.pre.initiate_with_timeout(t)),
            None => futures::future::Either::Right(self.pre.initiate()),
        };
        self.racing(fut, &signal, |conn| RawConnection::new(conn).into())
    }
}

impl RawPreconnection {
    /// A race (`fut`) as a Promise: what `ready` makes of its outcome, or
    /// an `EstablishmentError`. With `signal` (an AbortSignal), aborting it
    /// drops the race and rejects with the signal's reason; one aborted
    /// already rejects at once. The trace listener is kept until the end.
    fn racing<T: 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T, postsocket::Error>> + 'static,
        signal: &JsValue,
        ready: impl FnOnce(T) -> JsValue + 'static,
    ) -> Result<js_sys::Promise, JsValue> {
        let (fut, on_abort) = match AbortOn::signal(signal)? {
            Ok((on_abort, registration)) => {
                (futures::future::Abortable::new(fut, registration), on_abort)
            }
            Err(reason) => return Ok(js_sys::Promise::reject(&reason)),
        };
        let listener = self.listener.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let result = fut.await;
            drop(listener);
            match (result, on_abort.done()) {
                (Ok(Ok(v)), _) => Ok(ready(v)),
                (Ok(Err(e)), _) => Err(error_to_js("EstablishmentError", &e)),
                (Err(futures::future::Aborted), reason) => Err(reason),
            }
        }))
    }
}

#[wasm_bindgen]
impl RawPreconnection {
    /// `InitiateWithSend(messageData, messageContext?)` (§7.1): race as
    /// `initiate` does, sending `data` as the first Message (as 0-RTT data
    /// where a stack can and `safelyReplayable` is set; the browser's stacks
    /// send it right after the handshake). A Promise of
    /// `{ connection, sent, sendError }`, resolved at Ready once the Message
    /// went to the stack: `sent` is `{ sequence }` and `sendError` null, or
    /// `sent` is null and `sendError` the `SendError` / `Expired` (no Promise
    /// inside, so nothing rejects unseen). Rejected with an
    /// `EstablishmentError`. `properties` are Message Properties by RFC
    /// name; a bad one throws at once. With `signal` (an AbortSignal),
    /// aborting it ends the race and rejects with the signal's reason.
    #[wasm_bindgen(js_name = initiateWithSend)]
    pub fn initiate_with_send(
        &self,
        data: Vec<u8>,
        properties: JsValue,
        signal: JsValue,
    ) -> Result<js_sys::Promise, JsValue> {
        let context = crate::connection::message_context(&properties)?;
        let fut = self.pre.initiate_with_send(data, context);
        self.racing(fut, &signal, |(conn, sent)| {
            let (sent, error) = match crate::connection::sent_outcome(sent) {
                Ok(v) => (v, JsValue::NULL),
                Err(e) => (JsValue::NULL, e),
            };
            initiated_with_send(RawConnection::new(conn).into(), sent, error)
        })
    }

    /// `Rendezvous()` (§7.3) over WebRTC, signaling by HTTP: the page's
    /// offer is POSTed to `signaling_url` and the answer comes back in the
    /// response (`postsocket::HttpSignaling`). A Promise of the Connection
    /// on the first data channel, rejected with an `EstablishmentError`.
    /// Channels the peer opens later (its Clones) are not exposed to JS yet.
    /// With `signal` (an AbortSignal), aborting it ends the Rendezvous (the
    /// signaling request and the peer connection are dropped) and rejects
    /// with the signal's reason.
    pub fn rendezvous(
        &self,
        signaling_url: String,
        signal: JsValue,
    ) -> Result<js_sys::Promise, JsValue> {
        let fut = self
            .pre
            .rendezvous(postsocket::HttpSignaling::new(signaling_url));
        self.racing(fut, &signal, |done| {
            RawConnection::new(done.connection).into()
        })
    }
}

#[wasm_bindgen(module = "/src/glue.js")]
extern "C" {
    fn initiated_with_send(connection: JsValue, sent: JsValue, send_error: JsValue) -> JsValue;
}

/// An AbortSignal's hold on a future: its `abort` event aborts it. The
/// listener is removed when the future is done.
struct AbortOn {
    signal: JsValue,
    callback: Option<Closure<dyn FnMut()>>,
}

impl AbortOn {
    /// For `signal` (`undefined` for none): the hold, and the registration
    /// to make the future abortable with; `Err` with the signal's reason if
    /// it is aborted already.
    #[allow(clippy::type_complexity)]
    fn signal(
        signal: &JsValue,
    ) -> Result<Result<(AbortOn, futures::future::AbortRegistration), JsValue>, JsValue> {
        let (handle, registration) = futures::future::AbortHandle::new_pair();
        let mut on = AbortOn {
            signal: signal.clone(),
            callback: None,
        };
        if signal.is_undefined() || signal.is_null() {
            return Ok(Ok((on, registration)));
        }
        if js_sys::Reflect::get(signal, &"aborted".into())?.as_bool() == Some(true) {
            return Ok(Err(on.reason()));
        }
        let cb = Closure::<dyn FnMut()>::new(move || handle.abort());
        on.call("addEventListener", cb.as_ref())?;
        on.callback = Some(cb);
        Ok(Ok((on, registration)))
    }

    fn call(&self, method: &str, cb: &JsValue) -> Result<(), JsValue> {
        let f: js_sys::Function = js_sys::Reflect::get(&self.signal, &method.into())?.into();
        f.call2(&self.signal, &"abort".into(), cb)?;
        Ok(())
    }

    fn reason(&self) -> JsValue {
        js_sys::Reflect::get(&self.signal, &"reason".into()).unwrap_or(JsValue::UNDEFINED)
    }

    /// The future is done: stop listening; the signal's reason (for a
    /// future that was aborted).
    fn done(self) -> JsValue {
        if let Some(cb) = &self.callback {
            let _ = self.call("removeEventListener", cb.as_ref());
        }
        self.reason()
    }
}
