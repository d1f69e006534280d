//! Sending (RFC 9622 §9.2): the send queue with its Message Properties,
//! framing, the fast path straight to the stack, the flush that hands queued
//! Messages over in order, and the bookkeeping that answers each send once.

#![allow(clippy::result_large_err)]

use super::*;

/// Most frames handed to one vectored write.
pub(super) const MAX_IOV: usize = 512;

/// Slices of one vectored write kept on the stack before spilling to the heap.
pub(super) const STACK_IOV: usize = 24;

pub(super) struct Queued {
    pub(super) seq: u64,
    pub(super) frame: Frame,
    pub(super) deadline: Option<Instant>,
    pub(super) context: MessageContext,
    pub(super) reply: Option<oneshot::Sender<SendResult>>,
    pub(super) final_: bool,
    /// Sent as an unreliable datagram (msgReliable false on a stack with
    /// perMsgReliability, e.g. QUIC), outside the stream.
    pub(super) datagram: bool,
    /// The earlier parts of this Message (sent with end_of_message false)
    /// that a framer held back until this, the last part: they share its
    /// outcome, answered just before it.
    pub(super) held: Option<Box<[HeldPart]>>,
}

/// A part of a Message a framer holds until the last part (a length prefix
/// needs the whole length): nothing of it is written yet, so it is answered
/// with the last part's outcome, or fails if the Message is never finished.
pub(super) struct HeldPart {
    pub(super) seq: u64,
    pub(super) context: MessageContext,
    pub(super) reply: oneshot::Sender<SendResult>,
}

impl HeldPart {
    pub(super) fn answer(self, r: Result<(), SendFailureKind>) {
        let _ = self.reply.send(outcome_of(self.seq, self.context, r));
    }
}

impl Queued {
    pub(super) fn answer(&mut self, r: Result<(), SendFailureKind>) {
        if let Some(tx) = self.reply.take() {
            let _ = tx.send(self.outcome(r));
        } else {
            self.answer_held(&r);
        }
    }

    /// Answer the held earlier parts of this Message with its outcome.
    pub(super) fn answer_held(&mut self, r: &Result<(), SendFailureKind>) {
        if let Some(held) = self.held.take() {
            for part in held.into_vec() {
                part.answer(r.clone());
            }
        }
    }

    /// The outcome for the sender (its held earlier parts answered first).
    /// Each Queued is answered once: its context goes back without a copy.
    pub(super) fn outcome(&mut self, r: Result<(), SendFailureKind>) -> SendResult {
        self.answer_held(&r);
        let context = std::mem::replace(&mut self.context, MessageContext::placeholder());
        match r {
            Ok(()) => Ok(Sent {
                context,
                sequence: self.seq,
            }),
            Err(SendFailureKind::Expired) => Err(SendFailure::Expired { context }),
            Err(SendFailureKind::Error(error)) => Err(SendFailure::SendError { context, error }),
        }
    }
}

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

pub(super) struct SendQueue {
    pub(super) frames: VecDeque<Queued>,
    pub(super) next_seq: u64,
    pub(super) batch: Option<(oneshot::Sender<()>, Shared<oneshot::Receiver<()>>)>,
    pub(super) open_partial: Option<u64>,
    /// The parts of the open Message a framer holds (see [`HeldPart`]).
    pub(super) held: Vec<HeldPart>,
    pub(super) final_sent: bool,
    /// Set when nothing more may be sent: why.
    pub(super) shut: Option<Error>,
    pub(super) framers: FramerStack,
}

pub(super) struct WriterState {
    pub(super) transport: Option<Transport>,
    pub(super) inflight: VecDeque<Queued>,
    pub(super) front_offset: usize,
    /// Messages the stack took whole but may still hold (TLS records that
    /// did not fit the socket yet): answered once `Transport::flush` is done.
    pub(super) written: Vec<Queued>,
    /// A whole Message (a datagram, a WebSocket or data-channel message)
    /// being handed to a stack whose sends are not cancel-safe, with that
    /// send still running: it lives here, not in the flush, so a flush
    /// dropped midway (its send future dropped) leaves it to the next flush
    /// to finish, and the stack never gets the Message twice.
    pub(super) sending: Option<(Queued, runtime::BoxFuture<'static, std::io::Result<()>>)>,
}

impl WriterState {
    /// Every Message the writer holds that has no answer yet, in send order.
    pub(super) fn unanswered(&mut self) -> impl Iterator<Item = Queued> + '_ {
        self.front_offset = 0;
        let sending = self.sending.take().map(|(f, _)| f);
        self.written
            .drain(..)
            .chain(sending)
            .chain(self.inflight.drain(..))
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
        if let Some(why) = &q.shut {
            return Err(SendFailure::SendError {
                context,
                error: why.clone(),
            });
        }
        if q.final_sent {
            return Err(fail(
                &context,
                ErrorReason::InvalidMessageProperties,
                "a Message marked final was already sent; nothing can follow it (RFC 9622 §9.1.3.5)".into(),
            ));
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
            let (tx, rx) = oneshot::channel();
            let seq = q.next_seq;
            q.next_seq += 1;
            q.frames.push_back(Queued {
                seq,
                frame: Frame {
                    data,
                    ..Frame::default()
                },
                deadline: props
                    .msg_lifetime
                    .map(|l| runtime::saturating_add(runtime::now(), l)),
                context,
                reply: Some(tx),
                final_: false,
                datagram: true,
                held: None,
            });
            return Ok(Enqueued::Waiting(rx));
        }
        if let Some(open) = q.open_partial {
            if open != context.id() {
                return Err(fail(&context, ErrorReason::InvalidMessageProperties,
                    "another Message is still open (sent with end_of_message false); finish it before starting a new one on a byte stream".into()));
            }
        }
        let max = if is_stream && q.framers.is_empty() {
            None
        } else if is_stream {
            Some(crate::framer::LengthPrefixFramer::MAX_LEN as u64)
        } else {
            caps.max_message_len
        };
        if let Some(max) = max {
            if data.len() as u64 > max {
                return Err(fail(
                    &context,
                    ErrorReason::MessageTooLarge,
                    format!(
                        "a {}-byte Message is over sendMsgMaxLen {max} of {}",
                        data.len(),
                        caps.stack
                    ),
                ));
            }
        }
        if (props.no_fragmentation || props.no_segmentation) && !is_stream {
            if let Some(single) = inner.singular_max {
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
            return Err(fail(
                &context,
                ErrorReason::InvalidMessageProperties,
                format!("framer: {e}"),
            ));
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
        q.open_partial = if end_of_message {
            None
        } else {
            Some(context.id())
        };
        if !end_of_message && frame.is_empty() {
            // A framer holds this part until the last one: nothing goes out
            // yet, and the last part's outcome will be its outcome too.
            let (tx, rx) = oneshot::channel();
            let seq = q.next_seq;
            q.next_seq += 1;
            q.held.push(HeldPart {
                seq,
                context,
                reply: tx,
            });
            return Ok(Enqueued::Held(rx));
        }
        let held = (end_of_message && !q.held.is_empty())
            .then(|| std::mem::take(&mut q.held).into_boxed_slice());
        let final_ = props.final_ && end_of_message;
        if final_ {
            q.final_sent = true;
        }
        let seq = q.next_seq;
        q.next_seq += 1;
        let deadline = props
            .msg_lifetime
            .map(|l| runtime::saturating_add(runtime::now(), l));
        let mut queued = Some(Queued {
            seq,
            frame,
            deadline,
            context,
            reply: None,
            final_,
            datagram: false,
            held,
        });
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
        let (tx, rx) = oneshot::channel();
        queued.reply = Some(tx);
        q.frames.push_back(queued);
        Ok(Enqueued::Waiting(rx))
    }

    /// InitiateWithSend: if the first Message already went out as 0-RTT early
    /// data during the handshake, its `Sent` (the first send of this Connection).
    pub(crate) fn sent_as_early_data(&self, context: &MessageContext) -> Option<Sent> {
        if !self.inner.early_sent {
            return None;
        }
        let mut q = self.inner.send_q.lock().unwrap();
        let sequence = q.next_seq;
        q.next_seq += 1;
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
            q.batch = Some((tx, rx.shared()));
        }
    }

    /// `EndBatch()`: release the batch; the held Messages go out on the next poll of any of their futures.
    pub fn end_batch(&self) {
        if let Some((tx, _)) = self.inner.send_q.lock().unwrap().batch.take() {
            let _ = tx.send(());
        }
    }
}

/// In a waiting send future: on drop, the writer's work left behind (the
/// Messages queued or half-written) is finished by a task of its own, so
/// that it makes progress without the application polling anything.
pub(super) struct FinishOnDrop(Option<Arc<Inner>>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        let Some(inner) = self.0.take() else {
            return;
        };
        if inner.stopped.get().is_some() {
            return; // stopped: the stop answers everything
        }
        let idle = inner.send_q.lock().unwrap().frames.is_empty()
            && inner.writer.try_lock().is_some_and(|w| {
                w.inflight.is_empty() && w.written.is_empty() && w.sending.is_none()
            });
        if idle {
            return;
        }
        runtime::spawn(async move {
            let mut flush = Inner::lock_and_flush(&inner);
            inner.until(flush.as_mut(), true, None).await;
        });
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
        if !w.inflight.is_empty() || !w.written.is_empty() || w.sending.is_some() {
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
        let (tx, rx) = oneshot::channel();
        let mut f = slot.take().expect("checked above");
        f.reply = Some(tx);
        if n == len {
            w.written.push(f);
        } else {
            w.front_offset = n;
            w.inflight.push_back(f);
        }
        WriteNow::Waiting(rx)
    }

    pub(super) async fn await_outcome(
        inner: Arc<Inner>,
        rx: oneshot::Receiver<SendResult>,
    ) -> SendResult {
        // Dropped before its answer, this future leaves its Message (and
        // maybe others) queued or half-written: the guard hands that work
        // to a task of its own, so it goes out without a later send or close.
        let mut guard = FinishOnDrop(Some(inner));
        let r = Self::wait_for_outcome(guard.0.as_ref().expect("set"), rx).await;
        guard.0 = None; // answered: nothing left behind by this future
        r
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
                .map(|(_, r)| r.clone());
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
            let stop = inner.stop_rx.clone();
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
            if w.inflight.is_empty() {
                // The usual case: take the queue whole instead of moving each Message.
                std::mem::swap(&mut w.inflight, &mut q.frames);
            } else {
                w.inflight.extend(q.frames.drain(..));
            }
        }
        let Some(transport) = w.transport.clone() else {
            for mut f in w.unanswered() {
                f.answer(Err(SendFailureKind::Error(Error::new(
                    ErrorReason::ConnectionAborted,
                    "the Connection is closed",
                ))));
            }
            return;
        };
        // A whole Message whose send an earlier flush left running goes first.
        if let Some((_, send)) = w.sending.as_mut() {
            let r = send.as_mut().await;
            let (f, _) = w.sending.take().expect("sending");
            Self::answer_whole(inner, &transport, f, r);
        }
        let is_stream = inner.caps.data_unit == DataUnit::ByteStream;
        while !w.inflight.is_empty() {
            // Drop expired Messages that have not started going out (the
            // clock is read only when some Message has a lifetime).
            let now = if w.inflight.iter().any(|q| q.deadline.is_some()) {
                Some(runtime::now())
            } else {
                None
            };
            let expired = |d: Option<Instant>| matches!((d, now), (Some(d), Some(n)) if n >= d);
            if w.front_offset == 0 {
                let front = w.inflight.front_mut().expect("non-empty");
                if expired(front.deadline) {
                    let mut f = w.inflight.pop_front().expect("non-empty");
                    f.answer(Err(SendFailureKind::Expired));
                    continue;
                }
            }
            if is_stream && w.front_offset == 0 && w.inflight.front().is_some_and(|f| f.datagram) {
                Self::send_whole(inner, w, &transport).await;
                continue;
            }
            if is_stream {
                let res = {
                    // Up to STACK_IOV slices live on the stack (the usual case:
                    // a few Messages); more spill into a Vec.
                    let mut on_stack = [IoSlice::new(&[]); STACK_IOV];
                    let mut used = 0;
                    let mut spilled: Vec<IoSlice<'_>> = Vec::new();
                    let mut skip = w.front_offset;
                    let mut any = false;
                    for q in w.inflight.iter().take(MAX_IOV) {
                        if (q.datagram || expired(q.deadline)) && any {
                            break; // a datagram, or expired: handled at the front next round
                        }
                        for part in [&q.frame.prefix[..], &q.frame.data[..], &q.frame.suffix[..]] {
                            if skip >= part.len() {
                                skip -= part.len();
                                continue;
                            }
                            let slice = IoSlice::new(&part[skip..]);
                            if used < STACK_IOV {
                                on_stack[used] = slice;
                                used += 1;
                            } else {
                                if spilled.is_empty() {
                                    spilled.extend_from_slice(&on_stack);
                                }
                                spilled.push(slice);
                            }
                            any = true;
                            skip = 0;
                        }
                    }
                    let slices: &[IoSlice<'_>] = if spilled.is_empty() {
                        &on_stack[..used]
                    } else {
                        &spilled
                    };
                    if slices.is_empty() {
                        Ok(0)
                    } else {
                        transport.write_vectored(slices).await
                    }
                };
                match res {
                    Ok(mut n) => {
                        // Messages the stack took whole are answered now, or
                        // (if it still holds bytes, as TLS may) once it has
                        // pushed them out.
                        let held = transport.holds_unsent() || !w.written.is_empty();
                        // Retire whole frames, keep the offset into a partial one.
                        while let Some(front) = w.inflight.front() {
                            let left = front.frame.len() - w.front_offset;
                            if n < left {
                                w.front_offset += n;
                                break;
                            }
                            n -= left;
                            w.front_offset = 0;
                            let mut f = w.inflight.pop_front().expect("front");
                            if held {
                                w.written.push(f);
                            } else {
                                Self::answer_sent(&transport, &mut f);
                            }
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
                if !w.written.is_empty() && !Self::answer_written(inner, w, &transport).await {
                    return;
                }
            } else {
                Self::send_whole(inner, w, &transport).await;
            }
        }
        // A flush dropped while the stack pushed out its bytes left Messages
        // to answer.
        if !w.written.is_empty() {
            Self::answer_written(inner, w, &transport).await;
        }
    }

    /// Hand the front Message whole to the stack (one datagram, WebSocket or
    /// data-channel message) and answer it. The send runs from
    /// `WriterState::sending`, so that a flush dropped midway resumes it
    /// instead of starting it again (a stack whose sends are not cancel-safe
    /// would get the Message twice; one whose are would lose none either way).
    pub(super) async fn send_whole(inner: &Arc<Inner>, w: &mut WriterState, transport: &Transport) {
        let f = w.inflight.pop_front().expect("non-empty");
        // The data itself is shared, not copied, unless a framer added bytes.
        let data = if f.frame.prefix.is_empty() && f.frame.suffix.is_empty() {
            f.frame.data.clone()
        } else {
            Bytes::from(f.frame.concat())
        };
        let t = transport.clone();
        let send: runtime::BoxFuture<'static, std::io::Result<()>> =
            Box::pin(async move { t.send_datagram(&data).await });
        let (_, send) = w.sending.insert((f, send));
        let r = send.as_mut().await;
        let f = w.sending.take().expect("sending").0;
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
                match transport.shutdown_write() {
                    Ok(()) => f.answer(Ok(())),
                    Err(e) => f.answer(Err(SendFailureKind::Error(Error::new(
                        ErrorReason::ProtocolFailed,
                        format!("ending the stream after the final Message: {e}"),
                    )))),
                }
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
        for mut f in w.written.drain(..) {
            Self::answer_sent(transport, &mut f);
        }
        true
    }

    /// A stream Message is out: answer Sent, after finishing the stream if
    /// it was the final one.
    pub(super) fn answer_sent(transport: &Transport, f: &mut Queued) {
        let finished = if f.final_ {
            transport.shutdown_write().map_err(|e| {
                SendFailureKind::Error(Error::new(
                    ErrorReason::ProtocolFailed,
                    format!("finishing the stream: {e}"),
                ))
            })
        } else {
            Ok(())
        };
        f.answer(finished);
    }

    /// The stream failed while sending: every Message not yet answered gets
    /// the error, and the Connection fails.
    pub(super) fn fail_writes(inner: &Arc<Inner>, w: &mut WriterState, why: String) {
        let err = Error::new(ErrorReason::ConnectionAborted, why);
        for mut f in w.unanswered() {
            f.answer(Err(SendFailureKind::Error(err.clone())));
        }
        inner.fail(err);
    }
}
