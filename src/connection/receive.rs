//! Receiving (RFC 9622 §9.3): reading from the stack, deframing and
//! reassembly, partial receives, datagrams on a stream's Connection, and the
//! peer's clean finish.

#![allow(clippy::result_large_err)]

use super::*;

/// The largest Message a framed Connection accepts (recvMsgMaxLen): bounds
/// the memory a peer can make us buffer with a length prefix.
pub const RECV_MSG_MAX_LEN: usize = 64 * 1024 * 1024;

/// Most unreliable Messages (QUIC or WebTransport datagrams) a byte
/// stream's Connection keeps for the application while it does not receive
/// them (for instance while a framed Message on the stream is incomplete).
/// Past it, or past [`DATAGRAM_QUEUE_MAX_BYTES`], arriving datagrams are
/// dropped (they are unreliable), counted, and reported as SoftErrors.
pub const DATAGRAM_QUEUE_MAX: usize = 1024;

/// Most bytes of unreliable Messages kept waiting; see [`DATAGRAM_QUEUE_MAX`].
pub const DATAGRAM_QUEUE_MAX_BYTES: usize = 4 * 1024 * 1024;

/// The bounded queue of unreliable Messages waiting for a receive.
#[derive(Default)]
pub(super) struct DatagramQueue {
    pub(super) queue: VecDeque<Bytes>,
    pub(super) bytes: usize,
    /// Dropped since the last report of the count.
    pub(super) dropped: u64,
}

impl DatagramQueue {
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Keep `d`, or drop it when the queue is full: the first drop of a
    /// run is reported at once (a SoftError), the count when the
    /// application takes Messages again.
    pub(super) fn push(&mut self, d: Bytes, events: &mpsc::UnboundedSender<ConnectionEvent>) {
        if self.queue.len() < DATAGRAM_QUEUE_MAX && self.bytes + d.len() <= DATAGRAM_QUEUE_MAX_BYTES
        {
            self.bytes += d.len();
            self.queue.push_back(d);
            return;
        }
        if self.dropped == 0 {
            let _ = events.unbounded_send(ConnectionEvent::SoftError(format!(
                "unreliable Messages are dropped: {DATAGRAM_QUEUE_MAX} or {DATAGRAM_QUEUE_MAX_BYTES} bytes wait for a receive already"
            )));
        }
        self.dropped += 1;
    }

    pub(super) fn pop(&mut self, events: &mpsc::UnboundedSender<ConnectionEvent>) -> Option<Bytes> {
        let d = self.queue.pop_front()?;
        self.bytes -= d.len();
        if self.dropped > 0 {
            let _ = events.unbounded_send(ConnectionEvent::SoftError(format!(
                "{} unreliable Messages were dropped while the receive queue was full",
                self.dropped
            )));
            self.dropped = 0;
        }
        Some(d)
    }
}

/// A Message body at least this large, most of it not yet buffered, is read
/// straight into its own Vec (`Inner::read_body_directly`) where the stack
/// gains by it (`Transport::reads_bodies_directly`). (A body that is mostly
/// buffered already would be copied out of the buffer either way.)
pub(super) const DIRECT_READ_MIN: usize = 32 * 1024;

pub(super) struct Current {
    pub(super) remaining: usize,
    pub(super) trailer: usize,
    pub(super) context: MessageContext,
    pub(super) delivered_any: bool,
}

pub(super) struct RecvState {
    pub(super) transport: Option<Transport>,
    pub(super) buf: Vec<u8>,
    pub(super) start: usize,
    pub(super) framers: FramerStack,
    pub(super) current: Option<Current>,
    pub(super) eof: bool,
    /// Set when no more receive events can come: why.
    pub(super) done: Option<Error>,
    pub(super) stream_context: Option<MessageContext>,
    /// Unreliable Messages (QUIC and WebTransport datagrams) that arrived
    /// on a byte stream's Connection, waiting for a receive: at most
    /// [`DATAGRAM_QUEUE_MAX`] of them and [`DATAGRAM_QUEUE_MAX_BYTES`].
    pub(super) datagrams: DatagramQueue,
    /// True while a large Message body is read straight into `body` (see
    /// `read_body_directly`); `buf` is empty then.
    pub(super) direct: bool,
    /// The current Message's body so far, in direct mode.
    pub(super) body: Vec<u8>,
}

pub(super) struct ReceiveGuard<'a>(&'a AtomicUsize);

impl Drop for ReceiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Connection {
    /// `Receive()` with no limits: the next Message (or part of one, on a
    /// byte stream without framer).
    pub async fn receive(&self) -> Result<ReceiveEvent, ReceiveError> {
        self.receive_with(None, None).await
    }

    /// `Receive(minIncompleteLength?, maxLength?)` (§9.3.1): one call, one
    /// event. A Message longer than `max_length` arrives as ReceivedPartial
    /// pieces; a partial piece is delivered once `min_incomplete_length`
    /// bytes of it are available.
    pub async fn receive_with(
        &self,
        min_incomplete_length: Option<usize>,
        max_length: Option<usize>,
    ) -> Result<ReceiveEvent, ReceiveError> {
        let inner = &self.inner;
        inner.receives.fetch_add(1, Ordering::SeqCst);
        let _guard = ReceiveGuard(&inner.receives);
        if inner.stopped.get().is_some() {
            return Err(inner.stopped_error());
        }
        let min = min_incomplete_length.unwrap_or(usize::MAX).max(1);
        let max = max_length.unwrap_or(usize::MAX).max(1);
        // Fast path: a Message already buffered is delivered without waiting.
        if inner.caps.data_unit == DataUnit::ByteStream {
            if let Some(mut st) = inner.recv.try_lock() {
                if st.done.is_none() && inner.status.lock().unwrap().can_receive {
                    if let Some(r) = inner.step_stream(&mut st, min, max) {
                        Inner::note_failure(&mut st, &r);
                        return r;
                    }
                }
            }
        }
        // Receives take their turns on `recv`, in order. One that must wait
        // for its turn also watches the stop itself: the receive ahead of it
        // may not be polled again (a future kept but no longer awaited).
        let mut st = match inner.recv.try_lock() {
            Some(st) => st,
            None => {
                let stop = inner.stop_rx.clone();
                futures::select_biased! {
                    _ = stop.fuse() => return Err(inner.stopped_error()),
                    st = inner.recv.lock().fuse() => st,
                }
            }
        };
        // The holder of `recv` is woken at the stop through `recv_stop`; its
        // registration goes when it is done or dropped.
        let _registered = StopRegistration(&inner.recv_stop);
        // The waiting part lives on the heap, keeping the receive future small.
        let mut work = Box::pin(inner.receive_locked(&mut st, min, max));
        std::future::poll_fn(|cx| {
            use std::task::Poll;
            if inner.stopped.get().is_some() {
                return Poll::Ready(Err(inner.stopped_error()));
            }
            if let Poll::Ready(r) = work.as_mut().poll(cx) {
                return Poll::Ready(r);
            }
            // Waiting: registered, then checked again, so that a stop
            // before the registration is seen and one after it wakes us.
            inner.recv_stop.register(cx.waker());
            if inner.stopped.get().is_some() {
                return Poll::Ready(Err(inner.stopped_error()));
            }
            Poll::Pending
        })
        .await
    }
}

/// The waker a receive holding `recv` registered for the stop, taken out
/// when that receive ends or is dropped (while it still holds `recv`): no
/// finished task is kept alive by it.
pub(super) struct StopRegistration<'a>(&'a AtomicWaker);

impl Drop for StopRegistration<'_> {
    fn drop(&mut self) {
        drop(self.0.take());
    }
}

impl Inner {
    pub(super) async fn receive_locked(
        &self,
        st: &mut RecvState,
        min_incomplete: usize,
        max_len: usize,
    ) -> Result<ReceiveEvent, ReceiveError> {
        if let Some(e) = &st.done {
            return Err(ReceiveError {
                context: None,
                error: e.clone(),
            });
        }
        if !self.status.lock().unwrap().can_receive {
            return Err(ReceiveError {
                context: None,
                error: Error::new(ErrorReason::InvalidConfiguration, "this Connection cannot receive (unidirectional send, or the peer's final Message was delivered)"),
            });
        }
        let r = if self.caps.data_unit == DataUnit::ByteStream {
            self.receive_stream(st, min_incomplete, max_len).await
        } else {
            self.receive_datagram(st, max_len).await
        };
        Inner::note_failure(st, &r);
        r
    }

    /// The peer finished cleanly: nothing more can be received, which is
    /// not a failure (ReceiveError reason PeerFinished, no SoftError).
    pub(super) fn peer_finished(&self, how: String) -> ReceiveError {
        self.status.lock().unwrap().can_receive = false;
        ReceiveError {
            context: None,
            error: Error::new(ErrorReason::PeerFinished, how),
        }
    }

    /// After a failure the receive side stays failed: a byte stream that lost
    /// its framing, or a broken or finished stack, yields nothing more.
    pub(super) fn note_failure(st: &mut RecvState, r: &Result<ReceiveEvent, ReceiveError>) {
        if let Err(e) = r {
            if matches!(
                e.error.reason,
                ErrorReason::DeframingFailed
                    | ErrorReason::ConnectionAborted
                    | ErrorReason::ProtocolFailed
                    | ErrorReason::PeerFinished
            ) {
                st.done = Some(e.error.clone());
            }
        }
    }

    pub(super) fn compact(st: &mut RecvState) {
        if st.start > 0 && (st.start == st.buf.len() || st.start > 64 * 1024) {
            st.buf.drain(..st.start);
            st.start = 0;
        }
    }

    pub(super) async fn read_more(&self, st: &mut RecvState) -> Result<(), ReceiveError> {
        Self::compact(st);
        let Some(t) = st.transport.clone() else {
            return Err(ReceiveError {
                context: None,
                error: Error::new(ErrorReason::ConnectionAborted, "the Connection is closed"),
            });
        };
        match t.read(&mut st.buf).await {
            Ok(Recv::Bytes) => Ok(()),
            Ok(Recv::Eof) => {
                st.eof = true;
                Ok(())
            }
            Ok(Recv::Datagram(d)) => {
                st.datagrams.push(d, &self.events_tx);
                Ok(())
            }
            Err(e) => Err(Self::stream_failed(e)),
        }
    }

    /// The receive error of a stack that failed underneath.
    pub(super) fn stream_failed(e: std::io::Error) -> ReceiveError {
        ReceiveError {
            context: None,
            error: Error::new(
                ErrorReason::ConnectionAborted,
                format!("the stream failed: {e}"),
            ),
        }
    }

    /// The next `n` buffered bytes, as a Message's data.
    pub(super) fn take(st: &mut RecvState, n: usize) -> Bytes {
        Self::take_vec(st, n).into()
    }

    /// The next `n` buffered bytes.
    pub(super) fn take_vec(st: &mut RecvState, n: usize) -> Vec<u8> {
        let v = st.buf[st.start..st.start + n].to_vec();
        st.start += n;
        v
    }

    pub(super) fn received_context(&self, final_: bool) -> MessageContext {
        let mut c = MessageContext::received(Some(self.remote.clone()), self.local.clone(), final_);
        c.set_early_data(self.peer_early_data);
        c
    }

    pub(super) async fn receive_stream(
        &self,
        st: &mut RecvState,
        min_incomplete: usize,
        max_len: usize,
    ) -> Result<ReceiveEvent, ReceiveError> {
        // A receive that cannot take the body whole (a smaller maxLength
        // than an earlier, cancelled receive had) goes back to the buffer.
        if st.direct && st.current.as_ref().is_some_and(|c| c.remaining > max_len) {
            Self::leave_direct(st);
        }
        loop {
            if let Some(r) = self.step_stream(st, min_incomplete, max_len) {
                return r;
            }
            if let Some(r) = self.read_body_directly(st, max_len).await {
                return r;
            }
            self.read_more(st).await?;
        }
    }

    /// A large Message body, most of it not buffered yet, is read straight
    /// into its own Vec, which becomes the received data: one copy fewer than
    /// reading into the buffer and copying it out (and no regrowing of the
    /// buffer for a body larger than a read). Cancel-safe: the body so
    /// far lives in the receive state. `None` when this does not apply (or
    /// the stream ended: the buffer path then reports the cut Message).
    pub(super) async fn read_body_directly(
        &self,
        st: &mut RecvState,
        max_len: usize,
    ) -> Option<Result<ReceiveEvent, ReceiveError>> {
        if !st.direct {
            let cur = st.current.as_ref()?;
            let avail = st.buf.len() - st.start;
            if cur.delivered_any
                || cur.trailer != 0
                || cur.remaining < DIRECT_READ_MIN
                || cur.remaining > max_len
                || avail > cur.remaining / 2
                || st.framers.framers.len() != 1
                || st.eof
                || !st
                    .transport
                    .as_ref()
                    .is_some_and(Transport::reads_bodies_directly)
            {
                return None;
            }
            st.body = Vec::with_capacity(cur.remaining);
            st.body.extend_from_slice(&st.buf[st.start..]);
            st.start = st.buf.len();
            Self::compact(st);
            st.direct = true;
        }
        let Some(t) = st.transport.clone() else {
            Self::leave_direct(st);
            return None;
        };
        let need = st
            .current
            .as_ref()
            .expect("a Message in direct mode")
            .remaining;
        while st.body.len() < need {
            let want = need - st.body.len();
            match t.read_up_to(&mut st.body, want).await {
                Ok(Recv::Bytes) => {}
                Ok(Recv::Datagram(d)) => st.datagrams.push(d, &self.events_tx),
                Ok(Recv::Eof) => {
                    Self::leave_direct(st);
                    st.eof = true;
                    return None;
                }
                Err(e) => {
                    Self::leave_direct(st);
                    return Some(Err(Self::stream_failed(e)));
                }
            }
        }
        st.direct = false;
        let mut body = std::mem::take(&mut st.body);
        if body.len() > need {
            // The next Message's first bytes.
            st.buf.extend_from_slice(&body[need..]);
            body.truncate(need);
        }
        let cur = st.current.take().expect("a Message in direct mode");
        Some(Self::whole_message(st, body, cur.context))
    }

    /// A whole Message's body, through the framers' unwrapping, as received.
    pub(super) fn whole_message(
        st: &mut RecvState,
        body: Vec<u8>,
        context: MessageContext,
    ) -> Result<ReceiveEvent, ReceiveError> {
        match st.framers.unwrap_inner(body, RECV_MSG_MAX_LEN) {
            Ok(data) => Ok(ReceiveEvent::Received {
                data: data.into(),
                context,
            }),
            Err(e) => Err(ReceiveError {
                context: Some(context),
                error: Error::new(ErrorReason::DeframingFailed, e.message),
            }),
        }
    }

    /// Back from direct mode: the body read so far goes in front of the buffer.
    pub(super) fn leave_direct(st: &mut RecvState) {
        if !st.direct {
            return;
        }
        st.direct = false;
        let mut b = std::mem::take(&mut st.body);
        b.extend_from_slice(&st.buf[st.start..]);
        st.buf = b;
        st.start = 0;
    }

    /// Deliver from what is already buffered, without I/O; `None` when more
    /// bytes must be read first.
    pub(super) fn step_stream(
        &self,
        st: &mut RecvState,
        min_incomplete: usize,
        max_len: usize,
    ) -> Option<Result<ReceiveEvent, ReceiveError>> {
        if st.direct {
            return None; // the body is being read straight into its own Vec
        }
        loop {
            // Datagrams are whole Messages; deliver them between stream Messages.
            if st.current.is_none() {
                if let Some(data) = st.datagrams.pop(&self.events_tx) {
                    // It came unreliably: say so (msgReliable false), so an
                    // echo can answer the same way.
                    let mut context = self.received_context(false);
                    context.properties.msg_reliable = Some(false);
                    return Some(Ok(ReceiveEvent::Received { data, context }));
                }
            }
            let avail = st.buf.len() - st.start;
            if st.framers.is_empty() {
                // No framer: the whole stream is one Message, delivered in parts (RFC 9623 §5).
                let ctx = st
                    .stream_context
                    .get_or_insert_with(|| self.received_context(false))
                    .clone();
                if st.eof {
                    let n = avail.min(max_len);
                    let data = Self::take(st, n);
                    let end = st.start == st.buf.len();
                    let mut ctx = ctx;
                    if end {
                        ctx.set_final(true);
                        self.status.lock().unwrap().can_receive = false;
                        st.done = Some(Error::new(
                            ErrorReason::PeerFinished,
                            "the peer finished sending; its final Message was delivered",
                        ));
                    }
                    return Some(Ok(ReceiveEvent::ReceivedPartial {
                        data,
                        context: ctx,
                        end_of_message: end,
                    }));
                }
                if avail > 0 && (avail >= min_incomplete || avail >= max_len) {
                    let data = Self::take(st, avail.min(max_len));
                    return Some(Ok(ReceiveEvent::ReceivedPartial {
                        data,
                        context: ctx,
                        end_of_message: false,
                    }));
                }
                return None;
            }
            if let Some(cur) = &mut st.current {
                let need = cur.remaining + cur.trailer;
                if avail >= need && cur.remaining <= max_len {
                    let cur = st.current.take().expect("current");
                    let data = Self::take_vec(st, cur.remaining);
                    st.start += cur.trailer;
                    if cur.delivered_any {
                        return Some(Ok(ReceiveEvent::ReceivedPartial {
                            data: data.into(),
                            context: cur.context,
                            end_of_message: true,
                        }));
                    }
                    let mut context = cur.context;
                    if st.eof && st.start == st.buf.len() && st.datagrams.is_empty() {
                        // The peer already finished: this is its final Message (§9.3.3).
                        context.set_final(true);
                    }
                    return Some(Self::whole_message(st, data, context));
                }
                let body = avail.min(cur.remaining);
                let partial_ok = st.framers.framers.len() == 1;
                if partial_ok && body > 0 && (body >= min_incomplete || body >= max_len) {
                    let n = body.min(max_len);
                    cur.remaining -= n;
                    cur.delivered_any = true;
                    let ctx = cur.context.clone();
                    let data = Self::take(st, n);
                    return Some(Ok(ReceiveEvent::ReceivedPartial {
                        data,
                        context: ctx,
                        end_of_message: false,
                    }));
                }
                if st.eof {
                    let ctx = st.current.take().map(|c| c.context);
                    return Some(Err(ReceiveError {
                        context: ctx,
                        error: Error::new(
                            ErrorReason::DeframingFailed,
                            format!(
                        "the stream ended inside a Message ({avail} of {need} bytes arrived)"),
                        ),
                    }));
                }
                return None;
            }
            match st
                .framers
                .parse(&st.buf[st.start..], st.eof, RECV_MSG_MAX_LEN)
            {
                Ok(Parse::NeedMore) if st.eof => {
                    if avail == 0 {
                        let e =
                            self.peer_finished("the peer finished sending (end of stream)".into());
                        st.done = Some(e.error.clone());
                        return Some(Err(e));
                    }
                    return Some(Err(ReceiveError {
                        context: None,
                        error: Error::new(
                            ErrorReason::DeframingFailed,
                            format!(
                                "the stream ended with {avail} bytes that are not a whole Message"
                            ),
                        ),
                    }));
                }
                Ok(Parse::NeedMore) => return None,
                Ok(Parse::Message {
                    header,
                    len,
                    trailer,
                }) => {
                    st.start += header;
                    st.current = Some(Current {
                        remaining: len,
                        trailer,
                        context: self.received_context(false),
                        delivered_any: false,
                    });
                }
                Err(e) => {
                    return Some(Err(ReceiveError {
                        context: None,
                        error: Error::new(
                            ErrorReason::DeframingFailed,
                            format!("framer `{}`: {}", st.framers.framers[0].name(), e.message),
                        ),
                    }));
                }
            }
        }
    }

    pub(super) async fn receive_datagram(
        &self,
        st: &mut RecvState,
        max_len: usize,
    ) -> Result<ReceiveEvent, ReceiveError> {
        if let Some(cur) = &mut st.current {
            let n = cur.remaining.min(max_len);
            cur.remaining -= n;
            let end = cur.remaining == 0;
            let ctx = cur.context.clone();
            if end {
                st.current = None;
            }
            let data = Self::take(st, n);
            return Ok(ReceiveEvent::ReceivedPartial {
                data,
                context: ctx,
                end_of_message: end,
            });
        }
        let Some(t) = st.transport.clone() else {
            return Err(ReceiveError {
                context: None,
                error: Error::new(ErrorReason::ConnectionAborted, "the Connection is closed"),
            });
        };
        let datagram = match t.read(&mut st.buf).await {
            Ok(Recv::Datagram(d)) => d,
            Ok(Recv::Eof) => {
                return Err(self.peer_finished("the peer closed the connection".into()));
            }
            // A message stack's clean close (WebSocket code 1000 or 1001).
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(self.peer_finished(e.to_string()));
            }
            Ok(Recv::Bytes) => {
                return Err(ReceiveError {
                    context: None,
                    error: Error::new(
                        ErrorReason::ProtocolFailed,
                        format!(
                            "{} delivered stream bytes on a message stack",
                            self.caps.stack
                        ),
                    ),
                })
            }
            Err(e) => {
                return Err(ReceiveError {
                    context: None,
                    error: Error::new(ErrorReason::ProtocolFailed, format!("receiving: {e}")),
                })
            }
        };
        let context = self.received_context(false);
        let data = if st.framers.is_empty() {
            datagram
        } else {
            let max = self.caps.max_message_len.unwrap_or(u64::MAX) as usize;
            let parsed = st.framers.parse(&datagram, true, max);
            match parsed {
                Ok(Parse::Message {
                    header,
                    len,
                    trailer,
                }) if header + len + trailer == datagram.len() => {
                    let inner = datagram[header..header + len].to_vec();
                    st.framers
                        .unwrap_inner(inner, max)
                        .map_err(|e| ReceiveError {
                            context: Some(context.clone()),
                            error: Error::new(ErrorReason::DeframingFailed, e.message),
                        })?
                        .into()
                }
                Ok(_) => {
                    return Err(ReceiveError {
                        context: Some(context),
                        error: Error::new(
                            ErrorReason::DeframingFailed,
                            format!(
                                "a {}-byte datagram is not exactly one framed Message",
                                datagram.len()
                            ),
                        ),
                    })
                }
                Err(e) => {
                    return Err(ReceiveError {
                        context: Some(context),
                        error: Error::new(ErrorReason::DeframingFailed, e.message),
                    })
                }
            }
        };
        if data.len() <= max_len {
            return Ok(ReceiveEvent::Received { data, context });
        }
        // Longer than the receiver asked for: deliver in parts.
        st.buf.clear();
        st.start = 0;
        st.buf.extend_from_slice(&data[max_len..]);
        st.current = Some(Current {
            remaining: data.len() - max_len,
            trailer: 0,
            context: context.clone(),
            delivered_any: true,
        });
        let mut data = data;
        data.truncate(max_len);
        Ok(ReceiveEvent::ReceivedPartial {
            data,
            context,
            end_of_message: false,
        })
    }
}
