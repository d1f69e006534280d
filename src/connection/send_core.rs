//! The sans-IO core of Sending (RFC 9622 §9.2): the send queue with its
//! Message Properties (sequence, partial sends, final, lifetime) and the
//! writer's bookkeeping (what the stack took, what it still holds, what is
//! answered), as plain state. It takes the time and what the stack did as
//! inputs and answers each send exactly once; it never touches a socket, a
//! clock or a task. The driver in `send` does the I/O around it, as quinn
//! does around quinn-proto and `establish` around the racing engine.
//!
//! Its promises, property-tested below against a model stack:
//! - every Message admitted gets exactly one outcome;
//! - `Sent` outcomes come in send order (an unreliable Message that goes as
//!   a datagram beside a stream is outside that order: it may be `Sent`
//!   before a stream Message sent earlier), and a Message is `Sent` only once
//!   every byte of it was taken by the stack (and pushed out, when the
//!   stack said it held some back);
//! - the bytes the stack takes are the admitted Messages' frames, in order,
//!   each once, never those of a Message that expired;
//! - a Message that has not started going out when its lifetime ends is
//!   answered `Expired` at the next [`Outbox::expire`], even while the
//!   stack is blocked on the Message ahead of it.

#![allow(clippy::result_large_err)]

use super::*;

/// Most frames handed to one vectored write.
pub(super) const MAX_IOV: usize = 512;

/// Slices of one vectored write kept on the stack before spilling to the heap.
pub(super) const STACK_IOV: usize = 24;

/// One Message on its way to the stack.
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

    /// Queue it: the outcome comes through the returned receiver.
    pub(super) fn waiting(&mut self) -> oneshot::Receiver<SendResult> {
        let (tx, rx) = oneshot::channel();
        self.reply = Some(tx);
        rx
    }
}

/// What [`SendQueue::admit`] made of a Message. (Returned and taken apart
/// at once, never stored: the size of `Ready` costs nothing, a box would.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Admitted {
    /// A framer holds this part until the Message's last part: nothing to
    /// write, the outcome comes with the last part's.
    Held(oneshot::Receiver<SendResult>),
    /// Ready to go to the stack (or the queue).
    Ready(Queued),
}

/// The Message still open on a byte stream (sent with end_of_message false).
pub(super) struct OpenMessage {
    /// Its id (its context's).
    id: u64,
    /// The bytes of its parts so far (its length bounds hold for the whole
    /// Message, not for each part).
    len: u64,
    /// A part of it went to the stack (or the queue), so it can no longer
    /// be taken back: it must be finished, or the Connection ended.
    written: bool,
}

/// The Messages sent but not yet taken by the writer, and what the send
/// call order decides: sequence numbers, the open partial Message, the
/// final Message, and whether anything may still be sent.
pub(super) struct SendQueue {
    pub(super) frames: VecDeque<Queued>,
    pub(super) next_seq: u64,
    /// A batch under way (StartBatch), and its end. (Boxed: rarely used.)
    #[allow(clippy::type_complexity)]
    pub(super) batch: Option<Box<(oneshot::Sender<()>, Shared<oneshot::Receiver<()>>)>>,
    /// The Message still open (sent with end_of_message false). (Boxed:
    /// made with a Message's first part; few Messages go in parts, and the
    /// field stays one pointer wide.)
    pub(super) open_partial: Option<Box<OpenMessage>>,
    /// The parts of the open Message a framer holds (see [`HeldPart`]).
    /// (Boxed: made with the first such part; few Messages have any. The
    /// Box keeps the field one pointer wide, not a Vec's three words.)
    #[allow(clippy::box_collection)]
    pub(super) held: Option<Box<Vec<HeldPart>>>,
    pub(super) final_sent: bool,
    /// A send future was dropped during the batch, its Message queued:
    /// `end_batch` finishes the work it left (see `FinishOnDrop`).
    pub(super) left_in_batch: bool,
    /// Set when nothing more may be sent: why.
    /// (Boxed: few Connections are ever shut while they run.)
    pub(super) shut: Option<Box<Error>>,
    pub(super) framers: FramerStack,
}

impl SendQueue {
    /// An empty queue; `shut` says why nothing may be sent at all (a
    /// unidirectional-receive Connection).
    pub(super) fn new(framers: FramerStack, shut: Option<Error>) -> SendQueue {
        SendQueue {
            frames: VecDeque::new(),
            next_seq: 0,
            batch: None,
            open_partial: None,
            held: None,
            final_sent: false,
            left_in_batch: false,
            shut: shut.map(Box::new),
            framers,
        }
    }

    /// Why no Message may be sent any more, if so: the Connection is
    /// closing or closed, or a Message marked final went.
    pub(super) fn refusal(&self) -> Option<Error> {
        if let Some(why) = &self.shut {
            return Some(Error::clone(why));
        }
        self.final_sent.then(|| {
            Error::new(
                ErrorReason::InvalidMessageProperties,
                "a Message marked final was already sent; nothing can follow it (RFC 9622 §9.1.3.5)",
            )
        })
    }

    /// On a byte stream, one Message at a time: a part of Message `id`
    /// may follow only the parts of that same Message.
    pub(super) fn check_part(&self, id: u64) -> Result<(), Error> {
        match &self.open_partial {
            Some(open) if open.id != id => Err(Error::new(
                ErrorReason::InvalidMessageProperties,
                "another Message is still open (sent with end_of_message false); finish it before starting a new one on a byte stream",
            )),
            _ => Ok(()),
        }
    }

    /// The length Message `id` reaches with a part of `len` more bytes.
    pub(super) fn message_len(&self, id: u64, len: usize) -> u64 {
        let so_far = match &self.open_partial {
            Some(open) if open.id == id => open.len,
            _ => 0,
        };
        so_far.saturating_add(len as u64)
    }

    /// The part of a Message sent with `context` is refused for `error`,
    /// the send's failure. If none of that Message went to the stack yet
    /// (its earlier parts are held by a framer, as the length prefix holds
    /// them until the last), the Message is abandoned: its held parts fail
    /// with `error` and the framers forget it, so the next send starts a
    /// new Message. Otherwise it stays open (its bytes are on the stream):
    /// finish it, or end the Connection.
    pub(super) fn refuse_part(&mut self, context: MessageContext, error: Error) -> SendFailure {
        let id = context.id();
        if self
            .open_partial
            .as_ref()
            .is_some_and(|o| o.id == id && !o.written)
        {
            for part in self.held.take().into_iter().flat_map(|h| *h) {
                part.answer(Err(SendFailureKind::Error(error.clone())));
            }
            self.open_partial = None;
            self.framers.message_abandoned();
        }
        SendFailure::SendError { context, error }
    }

    /// The next sequence number (the position of a send call).
    pub(super) fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Admit a checked and framed Message (or part of one): its sequence
    /// number, and the bookkeeping of partial and final Messages.
    pub(super) fn admit(
        &mut self,
        frame: Frame,
        context: MessageContext,
        end_of_message: bool,
        final_: bool,
        deadline: Option<Instant>,
        message_len: u64,
    ) -> Admitted {
        if end_of_message {
            self.open_partial = None;
        } else {
            let open = match &mut self.open_partial {
                Some(open) if open.id == context.id() => open,
                other => other.insert(Box::new(OpenMessage {
                    id: context.id(),
                    len: 0,
                    written: false,
                })),
            };
            open.len = message_len;
            open.written |= !frame.is_empty();
        }
        let seq = self.take_seq();
        if !end_of_message && frame.is_empty() {
            let (tx, rx) = oneshot::channel();
            self.held
                .get_or_insert_with(Default::default)
                .push(HeldPart {
                    seq,
                    context,
                    reply: tx,
                });
            return Admitted::Held(rx);
        }
        let held = if end_of_message {
            self.held
                .take()
                .filter(|h| !h.is_empty())
                .map(|h| h.into_boxed_slice())
        } else {
            None
        };
        let final_ = final_ && end_of_message;
        if final_ {
            self.final_sent = true;
        }
        Admitted::Ready(Queued {
            seq,
            frame,
            deadline,
            context,
            reply: None,
            final_,
            datagram: false,
            held,
        })
    }

    /// Shut the queue (nothing more may be sent, for `why`); the held parts
    /// of an unfinished Message fail with `held_error`.
    pub(super) fn shut(&mut self, why: Error, held_error: &Error) {
        self.shut.get_or_insert_with(|| Box::new(why));
        for part in self.held.take().into_iter().flat_map(|h| *h) {
            part.answer(Err(SendFailureKind::Error(held_error.clone())));
        }
    }

    /// Abort: shut, and answer every queued Message (and held part) with `err`.
    pub(super) fn abort(&mut self, err: &Error) {
        self.shut(err.clone(), err);
        self.batch = None;
        for mut f in self.frames.drain(..) {
            f.answer(Err(SendFailureKind::Error(err.clone())));
        }
    }
}

/// The writer's side: the Messages taken from the queue, in order, until
/// each is answered.
#[derive(Default)]
pub(super) struct Outbox {
    /// Not yet taken by the stack whole; the front may be partly taken
    /// (`front_offset` bytes of it).
    inflight: VecDeque<Queued>,
    front_offset: usize,
    /// Taken whole by a stack that may still hold some of the bytes (TLS
    /// records that did not fit the socket yet): answered at [`Self::flushed`].
    written: Vec<Queued>,
    /// A whole Message (a datagram, a WebSocket or data-channel message)
    /// the stack is sending right now, with a send that may not be dropped
    /// midway: answered at [`Self::whole_done`], never handed over twice.
    /// Its place is made with the first one and kept (a stream's
    /// Connection sends none, unless a datagram beside the stream).
    whole: Option<Box<Option<Queued>>>,
}

/// What [`Outbox::wrote`] or [`Outbox::flushed`] leaves to the driver.
pub(super) type FinalLeft = Option<Queued>;

impl Outbox {
    /// Nothing to write and nothing unanswered.
    pub(super) fn is_idle(&self) -> bool {
        self.inflight.is_empty()
            && self.written.is_empty()
            && self.whole.as_ref().is_none_or(|w| w.is_none())
    }

    /// Something is left to hand to the stack.
    pub(super) fn has_unwritten(&self) -> bool {
        !self.inflight.is_empty()
    }

    /// Something was taken by the stack and waits for [`Self::flushed`].
    pub(super) fn has_written(&self) -> bool {
        !self.written.is_empty()
    }

    /// Take every queued Message, after those already here.
    pub(super) fn take_queue(&mut self, queue: &mut VecDeque<Queued>) {
        if self.inflight.is_empty() {
            // The usual case: take the queue whole instead of moving each Message.
            std::mem::swap(&mut self.inflight, queue);
        } else {
            self.inflight.extend(queue.drain(..));
        }
    }

    /// The Messages that have not started going out (their lifetime still
    /// applies): all but a partly taken front.
    fn not_started(&self) -> impl Iterator<Item = &Queued> {
        self.inflight
            .iter()
            .skip(usize::from(self.front_offset > 0))
    }

    /// When the next Message that has not started going out expires.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        // (The browser's Instant is a float: ordered, but not `Ord`.)
        self.not_started()
            .filter_map(|q| q.deadline)
            .reduce(|a, b| if b < a { b } else { a })
    }

    /// Answer `Expired` for every Message that has not started going out
    /// and whose lifetime ended by `now`, wherever it waits in the queue.
    pub(super) fn expire(&mut self, now: Instant) {
        if self
            .not_started()
            .all(|q| q.deadline.is_none_or(|d| now < d))
        {
            return;
        }
        let keep_front = usize::from(self.front_offset > 0);
        let mut kept = VecDeque::with_capacity(self.inflight.len());
        for (i, mut f) in self.inflight.drain(..).enumerate() {
            if i >= keep_front && f.deadline.is_some_and(|d| now >= d) {
                f.answer(Err(SendFailureKind::Expired));
            } else {
                kept.push_back(f);
            }
        }
        self.inflight = kept;
    }

    /// The front Message goes to the stack whole (a datagram beside a byte
    /// stream, or any Message on a message stack), not as bytes of a stream.
    pub(super) fn front_goes_whole(&self, is_stream: bool) -> bool {
        self.front_offset == 0
            && self
                .inflight
                .front()
                .is_some_and(|f| !is_stream || f.datagram)
    }

    /// Start handing the front Message to the stack whole: its bytes.
    pub(super) fn start_whole(&mut self) -> Bytes {
        let f = self.inflight.pop_front().expect("front_goes_whole");
        // The data itself is shared, not copied, unless a framer added bytes.
        let data = if f.frame.prefix.is_empty() && f.frame.suffix.is_empty() {
            f.frame.data.clone()
        } else {
            Bytes::from(f.frame.concat())
        };
        **self.whole.get_or_insert_with(Default::default) = Some(f);
        data
    }

    /// The stack finished (or failed) sending the whole Message: it, to be
    /// answered by the driver (a final one may end the stream first).
    pub(super) fn whole_done(&mut self) -> Queued {
        self.whole
            .as_mut()
            .and_then(|w| w.take())
            .expect("start_whole")
    }

    /// The next bytes of the stream, in order, as slices for one vectored
    /// write: at most `MAX_IOV` Messages, stopping before a datagram. The
    /// first `STACK_IOV` slices go to `on_stack`; when there are more, all
    /// of them are in `spilled`. Returns how many `on_stack` holds.
    pub(super) fn gather<'a>(
        &'a self,
        on_stack: &mut [IoSlice<'a>; STACK_IOV],
        spilled: &mut Vec<IoSlice<'a>>,
    ) -> usize {
        let mut used = 0;
        let mut skip = self.front_offset;
        for (i, q) in self.inflight.iter().take(MAX_IOV).enumerate() {
            if q.datagram && i > 0 {
                break; // it goes whole, at the front, next round
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
                        spilled.extend_from_slice(&on_stack[..]);
                    }
                    spilled.push(slice);
                }
                skip = 0;
            }
        }
        used
    }

    /// The stack took `n` more bytes of the stream. Messages now taken
    /// whole are answered `Sent`, or, when the stack `holds` bytes back (or
    /// earlier ones wait already), kept until [`Self::flushed`]. A final
    /// Message taken and not held is left to the driver, which ends the
    /// stream before answering it.
    pub(super) fn wrote(&mut self, mut n: usize, holds: bool) -> FinalLeft {
        let held = holds || !self.written.is_empty();
        let mut final_left = None;
        while let Some(front) = self.inflight.front() {
            let left = front.frame.len() - self.front_offset;
            if n < left {
                self.front_offset += n;
                break;
            }
            n -= left;
            self.front_offset = 0;
            let mut f = self.inflight.pop_front().expect("front");
            if held {
                self.written.push(f);
            } else if f.final_ {
                final_left = Some(f);
            } else {
                f.answer(Ok(()));
            }
        }
        final_left
    }

    /// A Message the stack took (in part or whole) outside a flush, when
    /// nothing was here: `n` of its bytes are taken.
    pub(super) fn started(&mut self, f: Queued, n: usize) {
        debug_assert!(self.is_idle());
        if n == f.frame.len() {
            self.written.push(f);
        } else {
            self.front_offset = n;
            self.inflight.push_back(f);
        }
    }

    /// The stack pushed out everything it held: the Messages it took are
    /// answered `Sent`; a final one is left to the driver.
    pub(super) fn flushed(&mut self) -> FinalLeft {
        let mut final_left = None;
        for mut f in self.written.drain(..) {
            if f.final_ {
                final_left = Some(f);
            } else {
                f.answer(Ok(()));
            }
        }
        final_left
    }

    /// The stack failed, or the Connection stopped: every Message not yet
    /// answered fails with `err`, in send order.
    pub(super) fn fail(&mut self, err: &Error) {
        self.front_offset = 0;
        let whole = self.whole.as_mut().and_then(|w| w.take());
        for mut f in self
            .written
            .drain(..)
            .chain(whole)
            .chain(self.inflight.drain(..))
        {
            f.answer(Err(SendFailureKind::Error(err.clone())));
        }
    }
}

// proptest is a native dev-dependency; the core is the same on both targets.
#[cfg(all(test, native))]
mod tests {
    //! The core against a model stack that takes any number of bytes,
    //! holds some back or fails, under a virtual clock, driven the way the
    //! driver in `send` drives it: random interleavings must keep the
    //! promises in the module's doc.

    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[derive(Debug, Clone)]
    enum Op {
        /// A send: length, lifetime in ms, final, end of Message.
        Send(usize, Option<u64>, bool, bool),
        /// An unreliable Message beside the stream (a datagram).
        Datagram(usize),
        /// The stack takes at most this many bytes, and may hold some of
        /// them back until a flush.
        Take(usize, bool),
        /// The stack pushes out what it held.
        Flush,
        /// The virtual clock moves on (the driver's lifetime timer fires).
        Advance(u64),
        /// The stack fails.
        StackError,
        /// Abort.
        Abort,
        /// Close: the queue shuts, and the driver writes everything.
        Close,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (
                0usize..40,
                proptest::option::weighted(0.3, 0u64..50),
                proptest::bool::weighted(0.05),
                proptest::bool::weighted(0.8)
            )
                .prop_map(|(l, t, f, e)| Op::Send(l, t, f, e)),
            1 => (1usize..20).prop_map(Op::Datagram),
            5 => (0usize..120, proptest::bool::weighted(0.3)).prop_map(|(n, h)| Op::Take(n, h)),
            2 => Just(Op::Flush),
            2 => (0u64..40).prop_map(Op::Advance),
            1 => prop_oneof![Just(Op::StackError), Just(Op::Abort), Just(Op::Close)],
        ]
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Seen {
        Sent(u64),
        Expired,
        Error,
    }

    struct Model {
        now: Instant,
        q: SendQueue,
        out: Outbox,
        /// The stream's bytes the stack took, in order.
        stream: Vec<u8>,
        /// How much of `stream` the stack has pushed out (not held back).
        pushed: usize,
        /// The datagrams the stack took, by sequence.
        datagrams: Vec<u64>,
        /// Every stream Message admitted ready to go: its send's index, its
        /// sequence, its bytes.
        frames: Vec<(usize, u64, Vec<u8>)>,
        /// Each send's outcome receiver, until it answered.
        pending: Vec<Option<oneshot::Receiver<SendResult>>>,
        /// Each send's outcome, once seen.
        seen: Vec<Option<Seen>>,
        /// Sent sequences in the order they were answered.
        sent_order: Vec<u64>,
        /// The open Message's context (its parts share it).
        open: Option<MessageContext>,
        /// The stack failed, or the Connection was aborted: why.
        failed: Option<Error>,
        next_byte: u8,
    }

    impl Model {
        fn new() -> Model {
            let framers = FramerStack {
                framers: smallvec::smallvec![Box::new(crate::framer::LengthPrefixFramer::new())
                    as Box<dyn crate::framer::Framer>],
            };
            Model {
                now: Instant::now(),
                q: SendQueue::new(framers, None),
                out: Outbox::default(),
                stream: Vec::new(),
                pushed: 0,
                datagrams: Vec::new(),
                frames: Vec::new(),
                pending: Vec::new(),
                seen: Vec::new(),
                sent_order: Vec::new(),
                open: None,
                failed: None,
                next_byte: 0,
            }
        }

        fn refused(&mut self) {
            self.pending.push(None);
            self.seen.push(Some(Seen::Error));
        }

        fn bytes(&mut self, len: usize) -> Bytes {
            (0..len)
                .map(|_| {
                    self.next_byte = self.next_byte.wrapping_add(1);
                    self.next_byte
                })
                .collect::<Vec<u8>>()
                .into()
        }

        fn send(&mut self, len: usize, lifetime: Option<u64>, final_: bool, eom: bool) {
            let context = self.open.clone().unwrap_or_default();
            if self.q.refusal().is_some() || self.q.check_part(context.id()).is_err() {
                return self.refused();
            }
            let mut frame = Frame {
                data: self.bytes(len),
                ..Frame::default()
            };
            self.q
                .framers
                .frame(&mut frame, &context, eom)
                .expect("small frames fit the prefix");
            self.open = (!eom).then(|| context.clone());
            let deadline = lifetime.map(|ms| self.now + Duration::from_millis(ms));
            let message_len = self.q.message_len(context.id(), len);
            match self
                .q
                .admit(frame, context, eom, final_, deadline, message_len)
            {
                Admitted::Held(rx) => self.pending.push(Some(rx)),
                Admitted::Ready(mut f) => {
                    self.frames
                        .push((self.pending.len(), f.seq, f.frame.concat()));
                    self.pending.push(Some(f.waiting()));
                    self.q.frames.push_back(f);
                }
            }
            self.seen.push(None);
        }

        fn datagram(&mut self, len: usize) {
            if self.q.refusal().is_some() {
                return self.refused();
            }
            let seq = self.q.take_seq();
            let mut f = Queued {
                seq,
                frame: Frame {
                    data: self.bytes(len),
                    ..Frame::default()
                },
                deadline: None,
                context: MessageContext::new(),
                reply: None,
                final_: false,
                datagram: true,
                held: None,
            };
            self.pending.push(Some(f.waiting()));
            self.seen.push(None);
            self.q.frames.push_back(f);
        }

        /// What the driver does when it runs: take the queue, expire, send
        /// the datagrams at the front (those sends always succeed here).
        fn drive(&mut self) {
            self.out.take_queue(&mut self.q.frames);
            if let Some(err) = &self.failed {
                self.out.fail(err);
                return;
            }
            self.out.expire(self.now);
            while !self.out.has_written() && self.out.front_goes_whole(true) {
                self.out.start_whole();
                let mut f = self.out.whole_done();
                self.datagrams.push(f.seq);
                f.answer(Ok(()));
            }
        }

        /// The driver's write: while the stack holds bytes back, it waits
        /// for the flush and writes nothing more.
        fn take(&mut self, n: usize, holds: bool) {
            self.drive();
            if self.failed.is_some() || self.out.has_written() {
                return;
            }
            let mut on_stack = [IoSlice::new(&[]); STACK_IOV];
            let mut spilled = Vec::new();
            let used = self.out.gather(&mut on_stack, &mut spilled);
            let slices = if spilled.is_empty() {
                &on_stack[..used]
            } else {
                &spilled[..]
            };
            let mut taken = 0;
            for s in slices {
                let k = s.len().min(n - taken);
                self.stream.extend_from_slice(&s[..k]);
                taken += k;
            }
            if !holds {
                self.pushed = self.stream.len();
            }
            if let Some(mut f) = self.out.wrote(taken, holds) {
                assert!(f.final_);
                f.answer(Ok(())); // the stream ended: a final Message is Sent
            }
            self.drive();
        }

        fn flush(&mut self) {
            self.pushed = self.stream.len();
            if let Some(mut f) = self.out.flushed() {
                f.answer(Ok(()));
            }
            self.drive();
        }

        fn fail(&mut self, why: &str) {
            let err = Error::new(ErrorReason::ConnectionAborted, why);
            self.q.abort(&err);
            self.out.fail(&err);
            self.failed.get_or_insert(err);
        }

        fn close(&mut self) {
            let err = Error::new(ErrorReason::ConnectionAborted, "closing");
            self.q.shut(err.clone(), &err);
            self.open = None;
            for _ in 0..10_000 {
                if self.failed.is_some() || self.out.is_idle() && self.q.frames.is_empty() {
                    break;
                }
                self.take(usize::MAX / 2, false);
                self.flush();
            }
        }

        fn apply(&mut self, op: &Op) {
            match *op {
                Op::Send(len, t, f, eom) => self.send(len, t, f, eom),
                Op::Datagram(len) => self.datagram(len),
                Op::Take(n, holds) => self.take(n, holds),
                Op::Flush => self.flush(),
                Op::Advance(ms) => {
                    self.now += Duration::from_millis(ms);
                    self.drive();
                }
                Op::StackError => self.fail("the stack failed"),
                Op::Abort => self.fail("local Abort"),
                Op::Close => self.close(),
            }
        }

        /// Collect the outcomes that arrived, in the order they did.
        fn observe(&mut self) {
            for (i, slot) in self.pending.iter_mut().enumerate() {
                let Some(rx) = slot else { continue };
                match rx.try_recv() {
                    Ok(None) => {}
                    Ok(Some(r)) => {
                        assert!(self.seen[i].is_none(), "send {i} answered twice");
                        self.seen[i] = Some(match r {
                            Ok(sent) => {
                                self.sent_order.push(sent.sequence);
                                Seen::Sent(sent.sequence)
                            }
                            Err(SendFailure::Expired { .. }) => Seen::Expired,
                            Err(SendFailure::SendError { .. }) => Seen::Error,
                        });
                        *slot = None;
                    }
                    Err(oneshot::Canceled) => panic!("send {i} lost its outcome"),
                }
            }
        }

        fn check(&self) {
            // Sent in send order, datagrams aside (they go outside the stream).
            let on_stream: Vec<u64> = self
                .sent_order
                .iter()
                .copied()
                .filter(|s| !self.datagrams.contains(s))
                .collect();
            assert!(
                on_stream.windows(2).all(|w| w[0] < w[1]),
                "Sent out of order: {:?}",
                self.sent_order
            );
            // The stream is the frames of the Messages that did not expire,
            // in order, each once; what is Sent was taken whole and pushed out.
            let sent: std::collections::HashSet<u64> = self.sent_order.iter().copied().collect();
            let mut at = 0;
            for (i, seq, bytes) in &self.frames {
                if self.seen[*i] == Some(Seen::Expired) {
                    // Never written: had it been, the frames after it would
                    // not line up with the stream below.
                    continue;
                }
                let rest = &self.stream[at..];
                if !rest.is_empty() && rest.len() >= bytes.len() && rest[..bytes.len()] == bytes[..]
                {
                    at += bytes.len();
                    if sent.contains(seq) {
                        assert!(
                            at <= self.pushed,
                            "Message {seq} Sent while the stack held it"
                        );
                    }
                } else if !rest.is_empty() && bytes.starts_with(rest) {
                    // Partly written: the last thing on the stream.
                    assert!(!sent.contains(seq), "Message {seq} Sent but partly written");
                    at = self.stream.len();
                } else if rest.is_empty() {
                    assert!(
                        !sent.contains(seq) || bytes.is_empty(),
                        "Message {seq} Sent but never written"
                    );
                } else {
                    panic!("Message {seq} is not on the stream in its place");
                }
            }
            assert_eq!(
                at,
                self.stream.len(),
                "bytes on the stream that no Message explains"
            );
            // Datagrams once each.
            let mut d = self.datagrams.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), self.datagrams.len(), "a datagram went twice");
            // Nothing left to expire past its deadline once the driver ran.
            if self.failed.is_none() {
                assert!(
                    self.out.next_deadline().is_none_or(|d| d > self.now),
                    "a Message outlived its msgLifetime without being answered Expired"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn every_send_is_answered_once_in_order_and_nothing_is_lost_or_doubled(
            ops in proptest::collection::vec(op(), 1..80)
        ) {
            let mut m = Model::new();
            for op in &ops {
                m.apply(op);
                m.observe();
                m.check();
            }
            // The end: Close, then Abort; every send has its outcome.
            m.close();
            m.fail("local Abort");
            m.observe();
            m.check();
            for (i, s) in m.seen.iter().enumerate() {
                prop_assert!(s.is_some(), "send {} never answered", i);
            }
            // A clean run (no failure before the close) loses nothing: every
            // Message that did not expire is Sent, and on the stream.
            let clean = !ops.iter().any(|o| matches!(o, Op::StackError | Op::Abort));
            if clean {
                for (i, seq, _) in &m.frames {
                    prop_assert!(
                        matches!(m.seen[*i], Some(Seen::Sent(_) | Seen::Expired)),
                        "Message {} ended {:?} in a clean run", seq, m.seen[*i]
                    );
                }
            }
        }
    }

    /// A Message behind one the stack is blocked on expires at its
    /// deadline, not when the blocked one finally goes.
    #[test]
    fn a_message_behind_a_blocked_one_expires_on_time() {
        let mut m = Model::new();
        m.send(1000, None, false, true);
        m.take(10, false); // blocked: 10 of 1004 bytes taken
        m.send(5, Some(100), false, true);
        m.send(5, None, false, true);
        m.drive();
        assert_eq!(
            m.out.next_deadline(),
            Some(m.now + Duration::from_millis(100))
        );
        m.apply(&Op::Advance(99));
        m.observe();
        assert_eq!(m.seen[1], None, "not yet");
        m.apply(&Op::Advance(1));
        m.observe();
        assert_eq!(m.seen[1], Some(Seen::Expired), "expired at its deadline");
        assert_eq!(m.seen[0], None, "the blocked one still goes");
        m.take(usize::MAX / 2, false);
        m.observe();
        assert_eq!(m.seen[0], Some(Seen::Sent(0)));
        assert_eq!(m.seen[2], Some(Seen::Sent(2)));
        m.check();
    }

    /// A partly written Message no longer expires: its lifetime ends only
    /// Messages that have not started going out.
    #[test]
    fn a_started_message_does_not_expire() {
        let mut m = Model::new();
        m.send(100, Some(10), false, true);
        m.take(50, false);
        m.apply(&Op::Advance(20));
        m.take(1000, false);
        m.observe();
        assert_eq!(m.seen[0], Some(Seen::Sent(0)));
        m.check();
    }
}
