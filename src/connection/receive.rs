//! Receiving (RFC 9622 §9.3): reading from the stack, deframing and
//! reassembly, partial receives, datagrams on a stream's Connection, and the
//! peer's clean finish.

#![allow(clippy::result_large_err)]

use super::*;
use crate::backend::StackInstance;
use bytes::BytesMut;

/// Counts a receive in progress; the last one to end wakes a Close that
/// waits for the receives to end (only once one does: a wake costs atomic
/// updates, and every receive but those during a Close ends with none).
pub(super) struct ReceiveGuard<'a>(&'a Inner);

impl Drop for ReceiveGuard<'_> {
    fn drop(&mut self) {
        // SeqCst with Close's own pair (`close_waits` set, then `receives`
        // read): either Close sees no receive left, or this sees Close.
        if self.0.receives.fetch_sub(1, Ordering::SeqCst) == 1
            && self.0.close_waits.load(Ordering::SeqCst)
        {
            self.0.wake_waiters();
        }
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
        let _guard = ReceiveGuard(inner);
        if inner.stopped.get().is_some() {
            return Err(inner.stopped_error());
        }
        let min = min_incomplete_length.unwrap_or(usize::MAX).max(1);
        let max = max_length.unwrap_or(usize::MAX).max(1);
        let mut held = inner.recv.try_lock();
        // Fast path: a Message already buffered is delivered without waiting.
        if inner.caps.data_unit == DataUnit::ByteStream {
            if let Some(st) = held.as_mut() {
                if st.done.is_none() && inner.can_receive.load(Ordering::Acquire) {
                    st.msg_max = inner.recv_max.load(Ordering::Relaxed);
                    if let Some(r) = st.step(min, max) {
                        inner.settle(st, &r);
                        return r;
                    }
                }
            }
        }
        // Receives take their turns on `recv`, in order (one that got it
        // above keeps it). One that must wait for its turn also watches the
        // stop itself: the receive ahead of it may not be polled again (a
        // future kept but no longer awaited).
        let mut st = match held {
            Some(st) => st,
            None => {
                let stop = inner.stop_wait();
                futures::select_biased! {
                    _ = stop.fuse() => return Err(inner.stopped_error()),
                    st = inner.recv.lock().fuse() => st,
                }
            }
        };
        // The holder of `recv` is woken at the stop through `recv_stop`; its
        // registration, if it made one (it waited), goes when it is done or
        // dropped.
        // (An atomic only for the future to be Send: one task uses it.)
        let registered = std::sync::atomic::AtomicBool::new(false);
        let _registered = StopRegistration(&inner.recv_stop, &registered);
        // Idle between Messages: read here where the stack reads by polling
        // (TCP, TLS, QUIC and WebTransport streams, WebSocket), so that an
        // idle Connection holds no receive state on the heap while it waits.
        // What a message stack read (a Message, or its end) is delivered
        // as its own read's would be.
        let mut polled = None;
        if st.buf.is_empty()
            && st.current.is_none()
            && st.datagrams.is_empty()
            && !st.eof
            && st.done.is_none()
            && inner.can_receive.load(Ordering::Acquire)
        {
            st.compact();
            let read = std::future::poll_fn(|cx| {
                use std::task::Poll;
                if inner.stopped.get().is_some() {
                    return Poll::Ready(Err(inner.stopped_error()));
                }
                let RecvState { transport, buf, .. } = &mut *st;
                let Some(t) = transport.as_ref() else {
                    return Poll::Ready(Ok(None));
                };
                match t.poll_read(cx, buf) {
                    None => return Poll::Ready(Ok(None)),
                    Some(Poll::Ready(r)) => return Poll::Ready(Ok(Some(r))),
                    Some(Poll::Pending) => {}
                }
                registered.store(true, Ordering::Relaxed);
                inner.recv_stop.register(cx.waker());
                if inner.stopped.get().is_some() {
                    return Poll::Ready(Err(inner.stopped_error()));
                }
                Poll::Pending
            })
            .await?;
            match read {
                Some(r) if inner.caps.data_unit != DataUnit::ByteStream => polled = Some(r),
                Some(r) => {
                    if let Err(e) = inner.took(&mut st, r) {
                        let r = Err(e);
                        inner.settle(&mut st, &r);
                        return r;
                    }
                }
                None => {}
            }
        }
        // The waiting part lives on the heap, keeping the receive future small.
        let mut work = Box::pin(inner.receive_locked(&mut st, min, max, polled));
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
            registered.store(true, Ordering::Relaxed);
            inner.recv_stop.register(cx.waker());
            if inner.stopped.get().is_some() {
                return Poll::Ready(Err(inner.stopped_error()));
            }
            Poll::Pending
        })
        .await
    }
}

/// The waker a receive holding `recv` registered for the stop (if it
/// did: the flag), taken out when that receive ends or is dropped (while it
/// still holds `recv`): no finished task is kept alive by it. A receive
/// that never waited registered nothing and takes nothing out (an earlier
/// holder took its own).
pub(super) struct StopRegistration<'a>(&'a AtomicWaker, &'a std::sync::atomic::AtomicBool);

impl Drop for StopRegistration<'_> {
    fn drop(&mut self) {
        if self.1.load(Ordering::Relaxed) {
            drop(self.0.take());
        }
    }
}

impl Inner {
    /// `polled`: what a message stack's read already gave (the receive's
    /// idle poll), delivered before reading again.
    pub(super) async fn receive_locked(
        &self,
        st: &mut RecvState,
        min_incomplete: usize,
        max_len: usize,
        polled: Option<std::io::Result<Recv>>,
    ) -> Result<ReceiveEvent, ReceiveError> {
        if let Some(e) = &st.done {
            return Err(ReceiveError {
                context: None,
                error: Error::clone(e),
            });
        }
        if !self.can_receive.load(Ordering::Acquire) {
            return Err(ReceiveError {
                context: None,
                error: Error::new(ErrorReason::InvalidConfiguration, "this Connection cannot receive (unidirectional send, or the peer's final Message was delivered)"),
            });
        }
        st.msg_max = self.recv_max.load(Ordering::Relaxed);
        let r = if self.caps.data_unit == DataUnit::ByteStream {
            self.receive_stream(st, min_incomplete, max_len).await
        } else {
            self.receive_datagram(st, max_len, polled).await
        };
        self.settle(st, &r);
        r
    }

    /// The peer finished cleanly: nothing more can be received, which is
    /// not a failure (ReceiveError reason PeerFinished, no SoftError).
    pub(super) fn peer_finished(&self, how: String) -> ReceiveError {
        self.can_receive.store(false, Ordering::Release);
        ReceiveError {
            context: None,
            error: Error::new(ErrorReason::PeerFinished, how),
        }
    }

    /// Unreliable Messages were dropped (the queue was full), or a receive
    /// took one again after drops: tell the application now (a SoftError).
    pub(super) fn report_drops(&self, st: &mut RecvState) {
        if let Some(report) = st.datagrams.take_report() {
            self.emit(ConnectionEvent::SoftError(report));
        }
    }

    /// After each receive: a drop of unreliable Messages is reported (a
    /// SoftError); once the peer finished, nothing more can be received;
    /// after a failure the receive side stays failed (a byte stream that
    /// lost its framing, or a broken or finished stack, yields nothing more).
    pub(super) fn settle(&self, st: &mut RecvState, r: &Result<ReceiveEvent, ReceiveError>) {
        self.report_drops(st);
        let finished = |e: &Error| e.reason == ErrorReason::PeerFinished;
        if st.done.as_deref().is_some_and(finished) || r.as_ref().is_err_and(|e| finished(&e.error))
        {
            self.can_receive.store(false, Ordering::Release);
        }
        if let Err(e) = r {
            // On a message stack each Message comes framed on its own: one
            // that fails to deframe is lost alone (the error says so), and
            // the next one is read as any other.
            let lost_framing = e.error.reason == ErrorReason::DeframingFailed
                && self.caps.data_unit == DataUnit::ByteStream;
            if lost_framing
                || matches!(
                    e.error.reason,
                    ErrorReason::ConnectionAborted
                        | ErrorReason::ProtocolFailed
                        | ErrorReason::PeerFinished
                )
            {
                st.done = Some(Box::new(e.error.clone()));
            }
        }
    }

    pub(super) async fn read_more(&self, st: &mut RecvState) -> Result<(), ReceiveError> {
        st.compact();
        // Borrowed, not cloned: a clone per read costs an atomic count
        // update on each of the stack's shared parts.
        let RecvState { transport, buf, .. } = st;
        let Some(t) = transport.as_ref() else {
            return Err(ReceiveError {
                context: None,
                error: Error::new(ErrorReason::ConnectionAborted, "the Connection is closed"),
            });
        };
        let r = t.read(buf).await;
        self.took(st, r)
    }

    /// Take what one read of the stack gave: bytes (already in the
    /// buffer), the end of the stream, or a datagram beside it.
    fn took(&self, st: &mut RecvState, r: std::io::Result<Recv>) -> Result<(), ReceiveError> {
        match r {
            Ok(Recv::Bytes) => Ok(()),
            Ok(Recv::Eof) => {
                st.eof = true;
                Ok(())
            }
            Ok(Recv::Datagram(d)) => {
                st.datagrams.push(d);
                self.report_drops(st);
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
            )
            .with_source(e),
        }
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
            st.leave_direct();
        }
        loop {
            if let Some(r) = st.step(min_incomplete, max_len) {
                return r;
            }
            if let Some(r) = self.read_body_directly(st, max_len).await {
                return r;
            }
            self.read_more(st).await?;
        }
    }

    /// A large Message body, most of it not buffered yet, is read straight
    /// into its own buffer, which becomes the received data (no regrowing
    /// of the receive buffer for a body larger than a read, and no moving
    /// of what it holds). Cancel-safe: the body so
    /// far lives in the receive state. `None` when this does not apply (or
    /// the stream ended: the buffer path then reports the cut Message).
    pub(super) async fn read_body_directly(
        &self,
        st: &mut RecvState,
        max_len: usize,
    ) -> Option<Result<ReceiveEvent, ReceiveError>> {
        if !st.direct {
            let cur = st.current.as_ref()?;
            let avail = st.buf.len();
            if cur.delivered_any()
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
            st.body = BytesMut::with_capacity(cur.remaining.min(DIRECT_FIRST_RESERVE));
            st.body.extend_from_slice(&st.buf);
            st.buf.clear();
            st.compact();
            st.direct = true;
        }
        let Some(t) = st.transport.clone() else {
            st.leave_direct();
            return None;
        };
        let need = st
            .current
            .as_ref()
            .expect("a Message in direct mode")
            .remaining;
        while st.body.len() < need {
            // Room as the body arrives, never past it; a read fills only
            // the room there is (the backend's `reserve` then does nothing).
            st.grow_direct_body(need);
            let room = st.body.capacity() - st.body.len();
            let want = (need - st.body.len()).min(room);
            match t.read_up_to(&mut st.body, want).await {
                Ok(Recv::Bytes) => {}
                Ok(Recv::Datagram(d)) => {
                    st.datagrams.push(d);
                    self.report_drops(st);
                }
                Ok(Recv::Eof) => {
                    st.leave_direct();
                    st.eof = true;
                    return None;
                }
                Err(e) => {
                    st.leave_direct();
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
        let context = cur.context.map_or_else(|| st.peer.context(false), |c| *c);
        Some(st.whole_message(body.freeze(), context))
    }

    pub(super) async fn receive_datagram(
        &self,
        st: &mut RecvState,
        max_len: usize,
        polled: Option<std::io::Result<Recv>>,
    ) -> Result<ReceiveEvent, ReceiveError> {
        if let Some(cur) = &mut st.current {
            let n = cur.remaining.min(max_len);
            cur.remaining -= n;
            let end = cur.remaining == 0;
            let ctx = MessageContext::clone(
                cur.context
                    .get_or_insert_with(|| Box::new(st.peer.context(false))),
            );
            if end {
                st.current = None;
            }
            let data = st.take(n);
            return Ok(ReceiveEvent::ReceivedPartial {
                data,
                context: ctx,
                end_of_message: end,
            });
        }
        // What a framer handshake left of the datagram it read (the
        // greeting's datagram went on with a Message): that Message.
        let left = (!st.buf.is_empty()).then(|| st.buf.split().freeze());
        let RecvState { transport, buf, .. } = st;
        let Some(t) = transport.as_ref() else {
            return Err(ReceiveError {
                context: None,
                error: Error::new(ErrorReason::ConnectionAborted, "the Connection is closed"),
            });
        };
        let mut read = match (left, polled) {
            (Some(left), polled) => {
                debug_assert!(polled.is_none(), "nothing is polled while bytes wait");
                Ok(Recv::Datagram(left))
            }
            (None, Some(r)) => r,
            (None, None) => t.read(buf).await,
        };
        // An ICMP report about an earlier datagram is a SoftError; the
        // Connection reads on. The first of a run is reported at once, the
        // rest counted into one more report when the run ends (a closed
        // port, or spoofed ICMP, must not queue an event each).
        let mut more = 0u64;
        while let Err(e) = read.as_ref() {
            if !t.is_soft_error(e) {
                break;
            }
            if more == 0 {
                self.emit(ConnectionEvent::SoftError(format!(
                    "{}: {e} (an ICMP report about an earlier datagram; receiving goes on)",
                    self.caps.stack
                )));
            }
            more += 1;
            read = t.read(buf).await;
        }
        if more > 1 {
            self.emit(ConnectionEvent::SoftError(format!(
                "{}: {} more ICMP reports about earlier datagrams",
                self.caps.stack,
                more - 1
            )));
        }
        let datagram = match read {
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
        let context = st.peer.context(false);
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
                }) if crate::framer::frame_len(header, len, trailer) == Some(datagram.len()) => {
                    let inner = datagram.slice(header..header + len);
                    st.framers
                        .unwrap_inner(inner, max)
                        .map_err(|e| ReceiveError {
                            context: Some(context.clone()),
                            error: Error::new(ErrorReason::DeframingFailed, dropped(e.message)),
                        })?
                }
                Ok(_) => {
                    return Err(ReceiveError {
                        context: Some(context),
                        error: Error::new(
                            ErrorReason::DeframingFailed,
                            dropped(format!(
                                "a {}-byte datagram is not exactly one framed Message",
                                datagram.len()
                            )),
                        ),
                    })
                }
                Err(e) => {
                    return Err(ReceiveError {
                        context: Some(context),
                        error: Error::new(ErrorReason::DeframingFailed, dropped(e.message)),
                    })
                }
            }
        };
        if data.len() > st.msg_max {
            // Dropped; the Connection goes on with the next Message.
            return Err(ReceiveError {
                context: Some(context),
                error: Error::new(
                    ErrorReason::MessageTooLarge,
                    format!(
                        "a {}-byte Message arrived, over recvMsgMaxLen {}; it was dropped",
                        data.len(),
                        st.msg_max
                    ),
                ),
            });
        }
        // Longer than the receiver asked for: delivered in parts.
        Ok(st.in_parts(data, context, max_len))
    }
}

/// A datagram's deframing error, saying what became of it.
fn dropped(why: String) -> String {
    format!("{why}; the datagram was dropped, and the next one is received as usual")
}
