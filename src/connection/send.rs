//! Sending (RFC 9622 §9.2): the send queue with its Message Properties,
//! framing, the fast path straight to the stack, the flush that hands queued
//! Messages over in order, and the bookkeeping that answers each send once.

#![allow(clippy::result_large_err)]

use super::*;
use crate::backend::StackInstance;

/// What `send` did with a Message.
pub(super) enum Enqueued {
    /// The stack took it whole at once (or refused it): the outcome.
    Done(SendResult),
    /// Queued or partly written: the outcome comes later.
    Waiting(oneshot::Receiver<SendResult>),
    /// Held by a framer until the Message's last part: nothing to write
    /// for it, the outcome comes with the last part's.
    Held(oneshot::Receiver<SendResult>),
}

/// What `Inner::write_now` did.
pub(super) enum WriteNow {
    Done(SendResult),
    /// Partly taken: the rest is in the writer state, answered by a later flush.
    Waiting(oneshot::Receiver<SendResult>),
    /// Not tried (the writer is busy, or the stack's writes cannot be
    /// dropped midway), or nothing taken: queue it.
    NotTried,
}

/// A datagram send's result as the Message's outcome.
pub(super) fn datagram_outcome(r: std::io::Result<()>) -> Result<(), SendFailureKind> {
    r.map_err(|e| {
        SendFailureKind::Error(Error::new(
            ErrorReason::ProtocolFailed,
            format!("sending the datagram: {e}"),
        ))
    })
}

/// The writer: the stack handle the driver writes to, and the core's
/// bookkeeping of what it wrote.
pub(super) struct WriterState {
    pub(super) transport: Option<Transport>,
    pub(super) outbox: Outbox,
    /// The send of the whole Message in `Outbox` (a datagram, a WebSocket
    /// or data-channel message) still running, on a stack whose sends are
    /// not cancel-safe: it lives here, not in the flush, so a flush dropped
    /// midway (its send future dropped) leaves it to the next flush to
    /// finish, and the stack never gets the Message twice.
    pub(super) sending: Option<runtime::BoxFuture<'static, std::io::Result<()>>>,
    /// The same for a byte stream whose writes are not cancel-safe (the
    /// browser's WebTransport streams): the write in progress, which owns
    /// its bytes, kept until done so that no byte goes out twice.
    pub(super) writing: Option<runtime::BoxFuture<'static, std::io::Result<usize>>>,
}

impl WriterState {
    /// The stack failed, or the Connection stopped: drop the sends in
    /// progress and answer every Message not yet answered with `err`.
    pub(super) fn fail(&mut self, err: &Error) {
        self.sending = None;
        self.writing = None;
        self.outbox.fail(err);
    }
}

impl Connection {
    /// `Send(messageData, messageContext?, endOfMessage?)` (§9.2).
    ///
    /// The Message is checked, framed and queued when this is called (and,
    /// when nothing is queued ahead of it and the stack has room, handed to
    /// the stack right then); the returned future resolves with exactly one
    /// outcome: `Sent` once the stack took the bytes (backpressure: it waits
    /// for socket space), or `Expired` / `SendError`. Dropping the future
    /// does not take the Message back: it still goes out, whole and in order.
    /// With `end_of_message` false, later calls with the same context
    /// continue the Message. A part that a framer holds back until the last
    /// part (the length-prefix framer needs the whole length) is `Sent`
    /// together with that last part, so await it only after sending the
    /// last part; Close or Abort before the last part fails it.
    ///
    /// `data` is anything that becomes [`Bytes`]: a `Vec<u8>` or `String`
    /// (taken without a copy), a `&'static [u8]` or `&'static str`, or a
    /// `Bytes` shared with other Messages (sent without a copy each time).
    pub fn send(
        &self,
        data: impl Into<Bytes>,
        context: Option<MessageContext>,
        end_of_message: bool,
    ) -> SendFuture {
        let data = data.into();
        let context = context.unwrap_or_default();
        let state = match self.enqueue(data, context, end_of_message) {
            Err(e) => SendState::Done(Some(Err(e))),
            Ok(Enqueued::Done(r)) => SendState::Done(Some(r)),
            // On the heap: the waiting state is large, and the future moves
            // with every await of the caller (a Message the stack took at
            // once, the usual case, never gets here).
            Ok(Enqueued::Waiting(rx)) => {
                SendState::Waiting(Box::pin(Inner::await_outcome(self.inner.clone(), rx)))
            }
            Ok(Enqueued::Held(rx)) => {
                SendState::Waiting(Box::pin(rx.map(|r| r.unwrap_or_else(|_| Err(dropped())))))
            }
        };
        SendFuture { state }
    }

    /// Send one whole Message with the Connection's default properties.
    pub fn send_message(&self, data: impl Into<Bytes>) -> SendFuture {
        self.send(data, None, true)
    }

    pub(super) fn enqueue(
        &self,
        data: Bytes,
        context: MessageContext,
        end_of_message: bool,
    ) -> Result<Enqueued, SendFailure> {
        let inner = &self.inner;
        let fail = |context: &MessageContext, reason, msg: String| SendFailure::SendError {
            context: context.clone(),
            error: Error::new(reason, msg),
        };
        let props = context.resolve(&inner.props.message_defaults);
        let caps = &inner.caps;
        let mut q = inner.send_q.lock().unwrap();
        if let Some(error) = q.refusal() {
            return Err(SendFailure::SendError { context, error });
        }
        let set_max = inner.send_max.load(Ordering::Relaxed);
        if data.len() as u64 > set_max {
            let error = Error::new(
                ErrorReason::MessageTooLarge,
                format!(
                    "a {}-byte Message is over sendMsgMaxLen {set_max}, which the application set",
                    data.len()
                ),
            );
            // A part of an open Message: as any refused part.
            return Err(q.refuse_part(context, error));
        }
        // Properties the stack cannot honour are errors, never silently ignored.
        if props.msg_reliable == Some(true) && caps.reliability == Support::Never {
            return Err(fail(
                &context,
                ErrorReason::InvalidMessageProperties,
                format!("msgReliable true: {} cannot deliver reliably", caps.stack),
            ));
        }
        if props.msg_ordered == Some(true) && caps.preserve_order == Support::Never {
            return Err(fail(
                &context,
                ErrorReason::InvalidMessageProperties,
                format!("msgOrdered true: {} does not preserve order", caps.stack),
            ));
        }
        // Stacks whose reliability and order are fixed per instance (a WebRTC
        // data channel's options): a Message cannot ask for more.
        if props.msg_reliable == Some(true) || props.msg_ordered == Some(true) {
            let delivery = inner
                .abort_handle
                .lock()
                .unwrap()
                .as_ref()
                .and_then(Transport::delivery);
            if let Some((reliable, ordered)) = delivery {
                if props.msg_reliable == Some(true) && !reliable {
                    return Err(fail(
                        &context,
                        ErrorReason::InvalidMessageProperties,
                        format!("msgReliable true: this {} channel was created unreliable (its reliability is fixed when the channel opens)", caps.stack),
                    ));
                }
                if props.msg_ordered == Some(true) && !ordered {
                    return Err(fail(
                        &context,
                        ErrorReason::InvalidMessageProperties,
                        format!("msgOrdered true: this {} channel was created unordered (its order is fixed when the channel opens)", caps.stack),
                    ));
                }
            }
        }
        if props.msg_checksum_len != ChecksumCoverage::Full {
            return Err(fail(
                &context,
                ErrorReason::InvalidMessageProperties,
                format!(
                    "msgChecksumLen below full coverage needs UDP-Lite; this Connection runs {}",
                    caps.stack
                ),
            ));
        }
        if props.no_segmentation && caps.data_unit == DataUnit::ByteStream {
            return Err(fail(
                &context,
                ErrorReason::InvalidMessageProperties,
                format!(
                    "noSegmentation: {} is a byte stream and cannot keep a Message in one segment",
                    caps.stack
                ),
            ));
        }
        let is_stream = caps.data_unit == DataUnit::ByteStream;
        if !is_stream && !end_of_message {
            return Err(fail(
                &context,
                ErrorReason::InvalidMessageProperties,
                format!(
                    "partial sends need a byte stream; {} sends each Message as one datagram",
                    caps.stack
                ),
            ));
        }
        let datagram = is_stream
            && props.msg_reliable == Some(false)
            && caps.per_msg_reliability != Support::Never;
        if datagram {
            // RFC 9221 datagram: one whole Message, boundaries kept, no framer.
            if !end_of_message {
                return Err(fail(&context, ErrorReason::InvalidMessageProperties,
                    "an unreliable Message (msgReliable false) goes as one datagram and cannot be sent in parts".into()));
            }
            let limit = inner
                .abort_handle
                .lock()
                .unwrap()
                .as_ref()
                .and_then(Transport::max_datagram);
            match limit {
                None => {
                    return Err(fail(&context, ErrorReason::InvalidMessageProperties, format!(
                        "msgReliable false: the peer did not enable datagrams on this {} connection", caps.stack)))
                }
                Some(max) if data.len() as u64 > max => {
                    return Err(fail(&context, ErrorReason::MessageTooLarge, format!(
                        "a {}-byte unreliable Message is over the {max}-byte datagram limit of this path", data.len())))
                }
                Some(_) => {}
            }
            let mut f = Queued {
                seq: q.take_seq(),
                frame: Frame {
                    data,
                    ..Frame::default()
                },
                deadline: props
                    .msg_lifetime
                    .map(|l| runtime::saturating_add(runtime::now(), l)),
                context,
                reply: None,
                final_: false,
                datagram: true,
                held: None,
            };
            let rx = f.waiting();
            q.frames.push_back(f);
            return Ok(Enqueued::Waiting(rx));
        }
        if let Err(error) = q.check_part(context.id()) {
            return Err(SendFailure::SendError { context, error });
        }
        // The bounds hold for the whole Message: its parts so far and this one.
        let message_len = q.message_len(context.id(), data.len());
        let stack_max = inner.stack_send_max(!q.framers.is_empty());
        let over = if message_len > set_max {
            Some((set_max, None))
        } else {
            stack_max
                .filter(|&m| message_len > m)
                .map(|m| (m, Some(caps.stack)))
        };
        if let Some((max, stack)) = over {
            let whose = match stack {
                None => ", which the application set".to_string(),
                Some(stack) => format!(" of {stack}"),
            };
            let error = Error::new(
                ErrorReason::MessageTooLarge,
                if message_len == data.len() as u64 {
                    format!("a {message_len}-byte Message is over sendMsgMaxLen {max}{whose}")
                } else {
                    format!(
                        "this part makes its Message {message_len} bytes, over sendMsgMaxLen {max}{whose}"
                    )
                },
            );
            return Err(q.refuse_part(context, error));
        }
        if (props.no_fragmentation || props.no_segmentation) && !is_stream {
            if let Some(single) = Some(inner.singular_max).filter(|&m| m != u64::MAX) {
                if data.len() as u64 > single {
                    return Err(fail(&context, ErrorReason::MessageTooLarge, format!(
                        "a {}-byte Message with noFragmentation is over singularTransmissionMsgMaxLen {single}", data.len())));
                }
            }
        }
        let mut frame = Frame {
            data,
            ..Frame::default()
        };
        if let Err(e) = q.framers.frame(&mut frame, &context, end_of_message) {
            let error = Error::new(
                ErrorReason::InvalidMessageProperties,
                format!("framer: {e}"),
            );
            return Err(q.refuse_part(context, error));
        }
        if !is_stream && frame.len() as u64 > caps.max_message_len.unwrap_or(u64::MAX) {
            return Err(fail(
                &context,
                ErrorReason::MessageTooLarge,
                format!(
                    "the framed Message ({} bytes) is over {}'s datagram limit",
                    frame.len(),
                    caps.stack
                ),
            ));
        }
        let deadline = props
            .msg_lifetime
            .map(|l| runtime::saturating_add(runtime::now(), l));
        let queued = match q.admit(
            frame,
            context,
            end_of_message,
            props.final_,
            deadline,
            message_len,
        ) {
            Admitted::Held(rx) => return Ok(Enqueued::Held(rx)),
            Admitted::Ready(f) => f,
        };
        let final_ = queued.final_;
        let mut queued = Some(queued);
        // The fast path: nothing ahead of this Message. (A Message with a
        // lifetime, or a final one, whose stream ending may need the
        // runtime, takes the queue.)
        if deadline.is_none() && !final_ && q.frames.is_empty() && q.batch.is_none() {
            match Inner::write_now(inner, &mut queued) {
                WriteNow::Done(r) => return Ok(Enqueued::Done(r)),
                WriteNow::Waiting(rx) => return Ok(Enqueued::Waiting(rx)),
                WriteNow::NotTried => {}
            }
        }
        let mut queued = queued.expect("taken only by a write that answers");
        let rx = queued.waiting();
        q.frames.push_back(queued);
        Ok(Enqueued::Waiting(rx))
    }

    /// InitiateWithSend: if the first Message already went out as 0-RTT early
    /// data during the handshake, its `Sent` (the first send of this Connection).
    pub(crate) fn sent_as_early_data(&self, context: &MessageContext) -> Option<Sent> {
        if !self.inner.early_sent {
            return None;
        }
        let sequence = self.inner.send_q.lock().unwrap().take_seq();
        Some(Sent {
            context: context.clone(),
            sequence,
        })
    }

    /// `StartBatch()` (§9.2.4): Messages sent until [`end_batch`](Self::end_batch)
    /// are held and then handed to the stack together (one vectored write on
    /// a byte stream). Do not await a send future inside the batch: it
    /// resolves only after `end_batch`.
    pub fn start_batch(&self) {
        let mut q = self.inner.send_q.lock().unwrap();
        if q.batch.is_none() {
            let (tx, rx) = oneshot::channel();
            q.batch = Some(Box::new((tx, rx.shared())));
        }
    }

    /// `EndBatch()`: release the batch; the held Messages go out on the
    /// next poll of any of their futures (or, where a send future was
    /// dropped during the batch, by a task of their own).
    pub fn end_batch(&self) {
        let left = {
            let mut q = self.inner.send_q.lock().unwrap();
            let Some(batch) = q.batch.take() else {
                return;
            };
            let _ = batch.0.send(());
            std::mem::take(&mut q.left_in_batch)
        };
        if left {
            FinishOnDrop::finish_in_task(Arc::clone(&self.inner));
        }
    }
}

/// In a waiting send future: on drop, the writer's work left behind (the
/// Messages queued or half-written) is finished by a task of its own, so
/// that it makes progress without the application polling anything.
pub(super) struct FinishOnDrop(Option<Arc<Inner>>);

impl FinishOnDrop {
    /// The future got its answer: its drop leaves nothing behind.
    fn disarm(&mut self) {
        self.0 = None;
    }

    /// Finish, in a task of its own, the writer's work that a dropped send
    /// future left behind.
    fn finish_in_task(inner: Arc<Inner>) {
        runtime::spawn(async move {
            let mut flush = Inner::lock_and_flush(&inner);
            let ended = inner.until(flush.as_mut(), true, None).await;
            drop(flush);
            if matches!(ended, super::lifecycle::Until::Stopped) {
                // The stop could not answer what this task's flush held
                // (the writer was ours): the kept send futures behind it
                // are answered now, and the stack's handle let go of.
                inner.answer_writes_after_stop();
            }
        });
    }
}

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        let Some(inner) = self.0.take() else {
            return;
        };
        if inner.stopped.get().is_some() {
            return; // stopped: the stop answers everything
        }
        {
            let mut q = inner.send_q.lock().unwrap();
            if q.batch.is_some() {
                // Nothing goes out during a batch: `end_batch` finishes it.
                q.left_in_batch = true;
                return;
            }
            let idle =
                q.frames.is_empty() && inner.writer.try_lock().is_some_and(|w| w.outbox.is_idle());
            if idle {
                return;
            }
        }
        Self::finish_in_task(inner);
    }
}

impl Inner {
    /// The fast path of `send`: nothing is queued or in flight and the
    /// writer is free, so the frame goes to the stack at once, in one poll
    /// without a task context. A byte stream that takes only part of it
    /// keeps the rest in the writer state (the send future's flush finishes
    /// it and registers for socket space); one that takes nothing, or fails,
    /// leaves the Message to be queued as usual (the flush meets the error
    /// again and reports it). A message stack sends it whole or not at all;
    /// its error is the outcome, as in the flush.
    pub(super) fn write_now(inner: &Arc<Inner>, slot: &mut Option<Queued>) -> WriteNow {
        let Some(f) = slot.as_mut() else {
            return WriteNow::NotTried;
        };
        let Some(mut w) = inner.writer.try_lock() else {
            return WriteNow::NotTried;
        };
        if !w.outbox.is_idle() {
            return WriteNow::NotTried;
        }
        let Some(t) = w.transport.as_ref() else {
            return WriteNow::NotTried;
        };
        if inner.caps.data_unit != DataUnit::ByteStream {
            // One Message, one datagram (or WebSocket message), if the stack
            // has room right now.
            return match t.try_send_datagram(&f.frame.contiguous()) {
                None => WriteNow::NotTried,
                Some(r) => WriteNow::Done(f.outcome(datagram_outcome(r))),
            };
        }
        if !t.writes_cancel_safe() {
            return WriteNow::NotTried;
        }
        let len = f.frame.len();
        let polled = {
            let parts = [
                IoSlice::new(&f.frame.prefix),
                IoSlice::new(&f.frame.data),
                IoSlice::new(&f.frame.suffix),
            ];
            let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
            t.poll_write_vectored(&mut cx, &parts)
        };
        let n = match polled {
            std::task::Poll::Ready(Ok(n)) if n > 0 || len == 0 => n,
            _ => return WriteNow::NotTried,
        };
        if n == len && !t.holds_unsent() {
            return WriteNow::Done(f.outcome(Ok(())));
        }
        let mut f = slot.take().expect("checked above");
        let rx = f.waiting();
        w.outbox.started(f, n);
        WriteNow::Waiting(rx)
    }

    pub(super) fn await_outcome(
        inner: Arc<Inner>,
        rx: oneshot::Receiver<SendResult>,
    ) -> impl Future<Output = SendResult> {
        // Dropped before its answer, this future leaves its Message (and
        // maybe others) queued or half-written: the guard hands that work
        // to a task of its own, so it goes out without a later send or close.
        // Made here, not in the async block, so that a future dropped
        // without ever being polled has it too.
        let mut guard = FinishOnDrop(Some(inner));
        async move {
            let r = Self::wait_for_outcome(guard.0.as_ref().expect("set"), rx).await;
            guard.disarm(); // answered: nothing left behind by this future
            r
        }
    }

    pub(super) async fn wait_for_outcome(
        inner: &Arc<Inner>,
        mut rx: oneshot::Receiver<SendResult>,
    ) -> SendResult {
        loop {
            if let Ok(Some(r)) = rx.try_recv() {
                return r;
            }
            let batch = inner
                .send_q
                .lock()
                .unwrap()
                .batch
                .as_ref()
                .map(|b| b.1.clone());
            if let Some(batch_end) = batch {
                futures::select_biased! {
                    r = (&mut rx).fuse() => return r.unwrap_or_else(|_| Err(dropped())),
                    _ = batch_end.fuse() => continue,
                }
            }
            // Fast path: the writer is free and the socket takes the bytes.
            // The flush runs on this poll's stack, so the send future does
            // not carry its (large) state; dropping it unfinished is safe,
            // as the write position lives in the writer state.
            let flushed = std::future::poll_fn(|cx| {
                let Some(mut w) = inner.writer.try_lock() else {
                    return std::task::Poll::Ready(false);
                };
                if !w
                    .transport
                    .as_ref()
                    .is_some_and(Transport::writes_cancel_safe)
                {
                    return std::task::Poll::Ready(false);
                }
                let mut flush = Inner::flush(inner, &mut w);
                std::task::Poll::Ready(flush.as_mut().poll(cx).is_ready())
            })
            .await;
            if flushed {
                continue;
            }
            // On the heap: the flush state is large, and a send future that
            // held it inline would be copied whole each time it moves.
            let mut flush = Inner::lock_and_flush(inner);
            let stop = inner.stop_wait();
            futures::select_biased! {
                r = (&mut rx).fuse() => return r.unwrap_or_else(|_| Err(dropped())),
                _ = flush.as_mut().fuse() => {},
                _ = stop.fuse() => {
                    // Stopped (Abort, or a failure): the flush, which may be
                    // blocked on a peer that does not read, lets go of the
                    // writer, and every Message the writer still holds is
                    // answered (Abort answered the queued ones already).
                    drop(flush);
                    inner.answer_writes_after_stop();
                    return rx.await.unwrap_or_else(|_| Err(dropped()));
                }
            }
        }
    }

    /// Hand every queued Message to the stack, in order. Cancel-safe where
    /// the stack's writes are (`Transport::writes_cancel_safe`): the write
    /// position and the Messages waiting for their answer live in the writer
    /// state, so a flush dropped midway is resumed by the next one.
    ///
    /// Boxed, so that its large state machine exists once in the program
    /// rather than inlined into each caller (the browser's .wasm size); the
    /// send fast paths do not come here.
    pub(super) fn flush<'a>(
        inner: &'a Arc<Inner>,
        w: &'a mut WriterState,
    ) -> runtime::BoxFuture<'a, ()> {
        Box::pin(Self::flush_queued(inner, w))
    }

    async fn flush_queued(inner: &Arc<Inner>, w: &mut WriterState) {
        {
            let mut q = inner.send_q.lock().unwrap();
            if q.batch.is_some() {
                return;
            }
            w.outbox.take_queue(&mut q.frames);
        }
        let Some(transport) = w.transport.clone() else {
            w.outbox.fail(&Error::new(
                ErrorReason::ConnectionAborted,
                "the Connection is closed",
            ));
            return;
        };
        // A whole Message whose send an earlier flush left running goes first.
        if w.sending.is_some() {
            Self::finish_whole(inner, w, &transport).await;
        }
        let is_stream = inner.caps.data_unit == DataUnit::ByteStream;
        while w.outbox.has_unwritten() {
            // A stream write an earlier flush left running finishes first
            // (the Messages in it have started going out: none expires).
            if let Some(write) = w.writing.as_mut() {
                let r = write.as_mut().await;
                w.writing = None;
                match r {
                    Ok(n) => {
                        if let Some(mut f) = w.outbox.wrote(n, transport.holds_unsent()) {
                            Self::answer_final(&transport, &mut f);
                        }
                    }
                    Err(e) => {
                        Self::fail_writes(
                            inner,
                            w,
                            format!("the stream failed while sending: {e}"),
                        );
                        return;
                    }
                }
                continue;
            }
            // Bytes the stack took but holds (a flush dropped while it pushed
            // them out) go first: the Messages after them are answered after them.
            if w.outbox.has_written() && !Self::answer_written(inner, w, &transport).await {
                return;
            }
            // Messages that have not started going out and whose msgLifetime
            // ended are answered Expired (the clock is read only when some
            // Message has a lifetime).
            let mut deadline = w.outbox.next_deadline();
            if let Some(d) = deadline {
                let now = runtime::now();
                if now >= d {
                    w.outbox.expire(now);
                    if !w.outbox.has_unwritten() {
                        break;
                    }
                    deadline = w.outbox.next_deadline();
                }
            }
            if w.outbox.front_goes_whole(is_stream) {
                let data = w.outbox.start_whole();
                let t = transport.clone();
                w.sending = Some(Box::pin(async move { t.send_datagram(&data).await }));
                Self::finish_whole(inner, w, &transport).await;
                continue;
            }
            // A write blocked on the peer is raced against the next
            // msgLifetime deadline, where dropping the write midway is safe:
            // the Messages behind it expire on time.
            let deadline = deadline.filter(|_| transport.writes_cancel_safe());
            let res = {
                // Up to STACK_IOV slices live on the stack (the usual case:
                // a few Messages); more spill into a Vec.
                let mut on_stack = [IoSlice::new(&[]); STACK_IOV];
                let mut spilled: Vec<IoSlice<'_>> = Vec::new();
                let used = w.outbox.gather(&mut on_stack, &mut spilled);
                let slices: &[IoSlice<'_>] = if spilled.is_empty() {
                    &on_stack[..used]
                } else {
                    &spilled
                };
                if slices.is_empty() {
                    Ok(Some(0))
                } else if !transport.writes_cancel_safe() {
                    // Kept in the writer state until done (see `writing`).
                    w.writing = Some(transport.start_write(slices));
                    continue;
                } else if let Some(deadline) = deadline {
                    let write = transport.write_vectored(slices);
                    let timer = runtime::sleep_until(deadline);
                    futures::pin_mut!(write, timer);
                    match futures::future::select(write, timer).await {
                        futures::future::Either::Left((r, _)) => r.map(Some),
                        futures::future::Either::Right(_) => Ok(None),
                    }
                } else {
                    transport.write_vectored(slices).await.map(Some)
                }
            };
            match res {
                Ok(None) => continue, // a lifetime ended: expire, then write on
                Ok(Some(n)) => {
                    // Messages the stack took whole are answered now, or (if
                    // it still holds bytes, as TLS may) once it pushed them out.
                    if let Some(mut f) = w.outbox.wrote(n, transport.holds_unsent()) {
                        Self::answer_final(&transport, &mut f);
                    }
                }
                Err(e) => {
                    Self::fail_writes(inner, w, format!("the stream failed while sending: {e}"));
                    return;
                }
            }
            if w.outbox.has_written() && !Self::answer_written(inner, w, &transport).await {
                return;
            }
        }
        // A flush dropped while the stack pushed out its bytes left Messages
        // to answer.
        if w.outbox.has_written() {
            Self::answer_written(inner, w, &transport).await;
        }
    }

    /// Finish handing a whole Message to the stack (one datagram, WebSocket
    /// or data-channel message) and answer it. The send runs from
    /// `WriterState::sending`, so that a flush dropped midway resumes it
    /// instead of starting it again (a stack whose sends are not cancel-safe
    /// would get the Message twice; one whose are would lose none either
    /// way). Messages behind it whose lifetime ends meanwhile expire on time.
    async fn finish_whole(inner: &Arc<Inner>, w: &mut WriterState, transport: &Transport) {
        let r = loop {
            let send = w.sending.as_mut().expect("a whole Message is being sent");
            let Some(deadline) = w.outbox.next_deadline() else {
                break send.as_mut().await;
            };
            let timer = runtime::sleep_until(deadline);
            futures::pin_mut!(timer);
            match futures::future::select(send.as_mut(), timer).await {
                futures::future::Either::Left((r, _)) => break r,
                futures::future::Either::Right(_) => w.outbox.expire(runtime::now()),
            }
        };
        w.sending = None;
        let f = w.outbox.whole_done();
        Self::answer_whole(inner, transport, f, r);
    }

    /// Take the writer, then hand every queued Message to the stack: one
    /// future for every caller that flushes from outside the writer (a
    /// waiting send, Close, the task that finishes a dropped send's work).
    pub(super) fn lock_and_flush(inner: &Arc<Inner>) -> runtime::BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut w = inner.writer.lock().await;
            Inner::flush(inner, &mut w).await;
        })
    }

    /// A whole Message went to the stack (or failed): its outcome. A final
    /// Message ends this direction (WebSocket: the Close frame) where the
    /// stack has a half-close; a WebRTC data channel has none
    /// (`Capabilities::final_ends_sending`).
    pub(super) fn answer_whole(
        inner: &Inner,
        transport: &Transport,
        mut f: Queued,
        r: std::io::Result<()>,
    ) {
        match r {
            Ok(()) if f.final_ && inner.caps.final_ends_sending => {
                Self::answer_final(transport, &mut f)
            }
            r => f.answer(datagram_outcome(r)),
        }
    }

    /// Once the stack has pushed out what it holds, answer the Messages it
    /// took (and finish the stream after a final one). False when the stack failed.
    pub(super) async fn answer_written(
        inner: &Arc<Inner>,
        w: &mut WriterState,
        transport: &Transport,
    ) -> bool {
        if let Err(e) = transport.flush().await {
            Self::fail_writes(inner, w, format!("the stream failed while sending: {e}"));
            return false;
        }
        if let Some(mut f) = w.outbox.flushed() {
            Self::answer_final(transport, &mut f);
        }
        true
    }

    /// The final Message is out: finish the stream (or this direction),
    /// then answer it.
    pub(super) fn answer_final(transport: &Transport, f: &mut Queued) {
        let finished = transport.shutdown_write().map_err(|e| {
            SendFailureKind::Error(Error::new(
                ErrorReason::ProtocolFailed,
                format!("finishing the stream: {e}"),
            ))
        });
        f.answer(finished);
    }

    /// The stream failed while sending: every Message not yet answered gets
    /// the error, and the Connection fails.
    pub(super) fn fail_writes(inner: &Arc<Inner>, w: &mut WriterState, why: String) {
        // A stream that failed because the Connection was aborted (its
        // reset ends the write in progress) fails its sends with the Abort.
        let err = inner
            .stop_error()
            .unwrap_or_else(|| Error::new(ErrorReason::ConnectionAborted, why));
        w.fail(&err);
        inner.fail(err);
    }
}
