//! The sans-IO core of Receiving (RFC 9622 §9.3): the receive buffer,
//! deframing and reassembly, partial receives, datagrams beside a stream,
//! and the peer's clean finish, as plain state. The driver in `receive`
//! reads from the stack into it and asks it for the next event; nothing
//! here touches the stack, a clock or a task.
//!
//! Property-tested below: whatever pieces the stream arrives in and
//! whatever `minIncompleteLength` and `maxLength` the receives ask for, the
//! Messages come out whole, in order, each once, with their boundaries,
//! and datagrams come out whole between them.

#![allow(clippy::result_large_err)]

use super::*;
use crate::message::Endpoints;
use bytes::{Buf, BytesMut};

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

/// The bounded queue of unreliable Messages waiting for a receive: made
/// with the first one (only QUIC and WebTransport streams get any).
#[derive(Default)]
pub(super) struct DatagramQueue(Option<Box<Datagrams>>);

#[derive(Default)]
pub(super) struct Datagrams {
    pub(super) queue: VecDeque<Bytes>,
    pub(super) bytes: usize,
    /// Dropped since the last report of the count.
    pub(super) dropped: u64,
    /// A drop report not yet handed to the application.
    pub(super) report: Option<String>,
}

impl DatagramQueue {
    pub(super) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|d| d.queue.is_empty())
    }

    /// Queue `d`, or drop it when the queue is full.
    pub(super) fn push(&mut self, d: Bytes) {
        self.0.get_or_insert_with(Default::default).push(d)
    }

    pub(super) fn pop(&mut self) -> Option<Bytes> {
        self.0.as_mut()?.pop()
    }

    /// What the application should hear about drops (a SoftError), once.
    pub(super) fn take_report(&mut self) -> Option<String> {
        self.0.as_mut()?.report.take()
    }
}

impl Datagrams {
    /// Keep `d`, or drop it when the queue is full: the first drop of a
    /// run is reported at once (a SoftError), the count when the
    /// application takes Messages again.
    pub(super) fn push(&mut self, d: Bytes) {
        if self.queue.len() < DATAGRAM_QUEUE_MAX && self.bytes + d.len() <= DATAGRAM_QUEUE_MAX_BYTES
        {
            self.bytes += d.len();
            self.queue.push_back(d);
            return;
        }
        if self.dropped == 0 {
            self.report = Some(format!(
                "unreliable Messages are dropped: {DATAGRAM_QUEUE_MAX} or {DATAGRAM_QUEUE_MAX_BYTES} bytes wait for a receive already"
            ));
        }
        self.dropped += 1;
    }

    pub(super) fn pop(&mut self) -> Option<Bytes> {
        let d = self.queue.pop_front()?;
        self.bytes -= d.len();
        if self.dropped > 0 {
            self.report = Some(format!(
                "{} unreliable Messages were dropped while the receive queue was full",
                self.dropped
            ));
            self.dropped = 0;
        }
        Some(d)
    }
}

/// A Message body at least this large, most of it not yet buffered, is read
/// straight into its own buffer (`Inner::read_body_directly`) where the stack
/// gains by it (`Transport::reads_bodies_directly`). (A body that is mostly
/// buffered already would be copied out of the buffer either way.)
pub(super) const DIRECT_READ_MIN: usize = 32 * 1024;

/// The most a body read directly reserves before its bytes come: the body's
/// buffer starts at this (or the body's length, if smaller) and grows as
/// bytes arrive ([`direct_body_growth`]), so that a length prefix alone
/// cannot make the receiver reserve all it declares (up to recvMsgMaxLen,
/// 64 MiB by default) for a peer that then sends nothing more.
pub(super) const DIRECT_FIRST_RESERVE: usize = 1024 * 1024;

/// The capacity a body read directly (`need` bytes in all, `len` of them in
/// a buffer of `cap`) grows to before its next read, or `None` while it has
/// room for as much as came (at least [`DIRECT_FIRST_RESERVE`], at most the
/// rest of the body): twice its capacity, as `Vec` grows, or more if that
/// room needs it, but never past the body. So the buffer holds a few times
/// what the peer sent at most, grows while it holds little (what a `realloc`
/// may copy), and the Message keeps exactly its length.
pub(super) fn direct_body_growth(len: usize, cap: usize, need: usize) -> Option<usize> {
    let want = need.saturating_sub(len).min(len.max(DIRECT_FIRST_RESERVE));
    if cap.saturating_sub(len) >= want {
        return None;
    }
    Some(need.min(cap.saturating_mul(2).max(len + want)))
}

/// Messages split off the receive buffer share its allocation, which grows
/// to hold the largest Message being assembled. After a Message (or part)
/// of at least this size is taken, what follows it is copied to an
/// allocation of its own, so that a small Message received next does not
/// keep a large one's allocation alive: a Message shares an allocation only
/// with its neighbours of a few reads (and the parts of one Message with
/// that Message). The copy is no longer than what was taken, so never more
/// than one extra copy of the bytes delivered.
pub(super) const SHARE_MAX: usize = 64 * 1024;

/// The Message being received: its bytes not yet delivered.
pub(super) struct Current {
    pub(super) remaining: usize,
    pub(super) trailer: usize,
    /// Its context, once a part of it was delivered (every later part
    /// shares it). A Message delivered whole gets its context then: it is
    /// not made ahead and moved along. (Boxed: most Messages are
    /// delivered whole.)
    pub(super) context: Option<Box<MessageContext>>,
}

impl Current {
    /// True once a part of the Message was delivered.
    pub(super) fn delivered_any(&self) -> bool {
        self.context.is_some()
    }
}

pub(super) struct RecvState {
    pub(super) transport: Option<Transport>,
    /// The bytes read and not yet taken. A Message taken from the front is
    /// split off, not copied: its data shares this allocation (up to a
    /// read's chunk, 64 KiB), which is reused once the Messages taken from
    /// it are dropped, or left to them when the stack needs room meanwhile.
    pub(super) buf: BytesMut,
    pub(super) framers: FramerStack,
    pub(super) current: Option<Current>,
    pub(super) eof: bool,
    /// Set when no more receive events can come: why.
    /// (Boxed: few Connections ever get one.)
    pub(super) done: Option<Box<Error>>,
    /// (Boxed: only a byte stream without framer has one.)
    pub(super) stream_context: Option<Box<MessageContext>>,
    /// Unreliable Messages (QUIC and WebTransport datagrams) that arrived
    /// on a byte stream's Connection, waiting for a receive: at most
    /// [`DATAGRAM_QUEUE_MAX`] of them and [`DATAGRAM_QUEUE_MAX_BYTES`].
    pub(super) datagrams: DatagramQueue,
    /// True while a large Message body is read straight into `body` (see
    /// `read_body_directly`); `buf` is empty then.
    pub(super) direct: bool,
    /// The current Message's body so far, in direct mode.
    pub(super) body: BytesMut,
    /// What the contexts of received Messages say about the peer.
    pub(super) peer: PeerContext,
    /// recvMsgMaxLen: a framed Message longer than this is refused.
    pub(super) msg_max: usize,
}

/// What every received Message's context says about where it came from.
pub(super) struct PeerContext {
    pub(super) endpoints: Arc<Endpoints>,
    /// The peer's data may be 0-RTT early data.
    pub(super) early_data: bool,
}

impl PeerContext {
    /// A received Message's context.
    pub(super) fn context(&self, final_: bool) -> MessageContext {
        let mut c = MessageContext::received(self.endpoints.clone(), final_);
        c.set_early_data(self.early_data);
        c
    }
}

impl RecvState {
    /// A receive side reading from `transport`, with `leftover` bytes
    /// already read (during establishment) first.
    pub(super) fn new(
        transport: Option<Transport>,
        leftover: Vec<u8>,
        framers: FramerStack,
        peer: PeerContext,
    ) -> RecvState {
        RecvState {
            transport,
            buf: if leftover.is_empty() {
                BytesMut::new()
            } else {
                Bytes::from(leftover).into()
            },
            framers,
            current: None,
            eof: false,
            done: None,
            stream_context: None,
            datagrams: DatagramQueue::default(),
            direct: false,
            body: BytesMut::new(),
            peer,
            msg_max: RECV_MSG_MAX_LEN,
        }
    }

    /// Once every buffered byte is taken, let go of the buffer itself, so
    /// that a Connection waiting for data holds none (a burst's buffer,
    /// grown to the largest Message, would otherwise stay with every idle
    /// Connection; the Messages taken from it keep what they share). The
    /// stacks reserve room again when data is there to read.
    pub(super) fn compact(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
    }

    /// The next `n` buffered bytes, as a Message's data: split off the
    /// buffer, not copied. After a large Message the bytes that follow move
    /// to an allocation of their own (see [`SHARE_MAX`]).
    pub(super) fn take(&mut self, n: usize) -> Bytes {
        let data = self.buf.split_to(n).freeze();
        // (More than was taken is the rest of the same Message, delivered
        // in parts: it stays, and it is copied as it gets shorter.)
        if n >= SHARE_MAX && !self.buf.is_empty() && self.buf.len() <= n {
            self.buf = BytesMut::from(&self.buf[..]);
        }
        data
    }

    /// A whole Message's body, through the framers' unwrapping, as received.
    pub(super) fn whole_message(
        &mut self,
        body: Bytes,
        context: MessageContext,
    ) -> Result<ReceiveEvent, ReceiveError> {
        // One framer (the usual case) has nothing inside to unwrap.
        let data = if self.framers.framers.len() > 1 {
            self.framers.unwrap_inner(body, self.msg_max)
        } else {
            Ok(body)
        };
        match data {
            Ok(data) => Ok(ReceiveEvent::Received { data, context }),
            Err(e) => Err(ReceiveError {
                context: Some(context),
                error: Error::new(ErrorReason::DeframingFailed, e.message),
            }),
        }
    }

    /// The current Message, whole in the buffer and longer than `max_len`,
    /// through several framers: unwrapped whole, its first `max_len` bytes
    /// delivered as a part and the rest put back in front of the buffer as
    /// the current Message's, which later receives deliver in parts.
    fn unwrapped_in_parts(&mut self, max_len: usize) -> Result<ReceiveEvent, ReceiveError> {
        let cur = self.current.take().expect("a current Message");
        let body = self.take(cur.remaining);
        self.buf.advance(cur.trailer);
        let mut context = self.peer.context(false);
        if self.eof && self.buf.is_empty() && self.datagrams.is_empty() {
            // The peer already finished: this is its final Message (§9.3.3).
            context.set_final(true);
        }
        match self.whole_message(body, context)? {
            ReceiveEvent::Received { data, context } => Ok(self.in_parts(data, context, max_len)),
            other => Ok(other),
        }
    }

    /// `data`, a whole Message, within `max_len`: whole, or its first
    /// `max_len` bytes as a part, the rest put in front of the buffer as the
    /// current Message's (later receives deliver it in parts).
    pub(super) fn in_parts(
        &mut self,
        data: Bytes,
        context: MessageContext,
        max_len: usize,
    ) -> ReceiveEvent {
        if data.len() <= max_len {
            return ReceiveEvent::Received { data, context };
        }
        let mut rest = BytesMut::with_capacity(data.len() - max_len + self.buf.len());
        rest.extend_from_slice(&data[max_len..]);
        rest.extend_from_slice(&self.buf);
        self.buf = rest;
        self.current = Some(Current {
            remaining: data.len() - max_len,
            trailer: 0,
            context: Some(Box::new(context.clone())),
        });
        ReceiveEvent::ReceivedPartial {
            data: data.slice(..max_len),
            context,
            end_of_message: false,
        }
    }

    /// Give the body read directly room for its next read, to the
    /// capacity [`direct_body_growth`] says.
    pub(super) fn grow_direct_body(&mut self, need: usize) {
        let cap = self.body.capacity();
        let Some(target) = direct_body_growth(self.body.len(), cap, need) else {
            return;
        };
        if target >= cap.saturating_mul(2) {
            // `Vec` grows to twice its capacity or what is asked, if more:
            // here, exactly `target`.
            self.body.reserve(target - self.body.len());
        } else {
            // The last growth, cut to the body: to the byte, which
            // `BytesMut::reserve` cannot do. Neither conversion copies (the
            // body is one buffer, never split or advanced in direct mode).
            let mut v: Vec<u8> = std::mem::take(&mut self.body).into();
            v.reserve_exact(target - v.len());
            self.body = BytesMut::from(Bytes::from(v));
        }
    }

    /// Back from direct mode: the body read so far goes in front of the buffer.
    pub(super) fn leave_direct(&mut self) {
        if !self.direct {
            return;
        }
        self.direct = false;
        let mut b = std::mem::take(&mut self.body);
        b.extend_from_slice(&self.buf);
        self.buf = b;
    }

    /// Deliver from what is already buffered, without I/O; `None` when more
    /// bytes must be read first.
    pub(super) fn step(
        &mut self,
        min_incomplete: usize,
        max_len: usize,
    ) -> Option<Result<ReceiveEvent, ReceiveError>> {
        if self.direct {
            return None; // the body is being read straight into its own buffer
        }
        loop {
            // Datagrams are whole Messages; deliver them between stream Messages.
            if self.current.is_none() {
                if let Some(data) = self.datagrams.pop() {
                    // It came unreliably: say so (msgReliable false), so an
                    // echo can answer the same way.
                    let mut context = self.peer.context(false);
                    context.properties.msg_reliable = Some(false);
                    if data.len() > self.msg_max {
                        // Dropped, as on a datagram stack; the stream goes on.
                        return Some(Err(ReceiveError {
                            error: Error::new(
                                ErrorReason::MessageTooLarge,
                                format!(
                                    "a {}-byte datagram arrived, over recvMsgMaxLen {}; it was dropped",
                                    data.len(),
                                    self.msg_max
                                ),
                            ),
                            context: Some(context),
                        }));
                    }
                    return Some(Ok(ReceiveEvent::Received { data, context }));
                }
            }
            let avail = self.buf.len();
            if self.framers.is_empty() {
                // No framer: the whole stream is one Message, delivered in parts (RFC 9623 §5).
                let ctx = MessageContext::clone(
                    self.stream_context
                        .get_or_insert_with(|| Box::new(self.peer.context(false))),
                );
                if self.eof {
                    let n = avail.min(max_len);
                    let data = self.take(n);
                    let end = self.buf.is_empty();
                    let mut ctx = ctx;
                    if end {
                        ctx.set_final(true);
                        self.done = Some(Box::new(Error::new(
                            ErrorReason::PeerFinished,
                            "the peer finished sending; its final Message was delivered",
                        )));
                    }
                    return Some(Ok(ReceiveEvent::ReceivedPartial {
                        data,
                        context: ctx,
                        end_of_message: end,
                    }));
                }
                if avail > 0 && (avail >= min_incomplete || avail >= max_len) {
                    let data = self.take(avail.min(max_len));
                    return Some(Ok(ReceiveEvent::ReceivedPartial {
                        data,
                        context: ctx,
                        end_of_message: false,
                    }));
                }
                return None;
            }
            if let Some(cur) = &mut self.current {
                let need = cur.remaining + cur.trailer;
                if avail >= need && cur.remaining <= max_len {
                    let cur = self.current.take().expect("current");
                    let data = self.take(cur.remaining);
                    self.buf.advance(cur.trailer);
                    if let Some(context) = cur.context {
                        return Some(Ok(ReceiveEvent::ReceivedPartial {
                            data,
                            context: *context,
                            end_of_message: true,
                        }));
                    }
                    let mut context = self.peer.context(false);
                    if self.eof && self.buf.is_empty() && self.datagrams.is_empty() {
                        // The peer already finished: this is its final Message (§9.3.3).
                        context.set_final(true);
                    }
                    return Some(self.whole_message(data, context));
                }
                if avail >= need && self.framers.framers.len() > 1 && !cur.delivered_any() {
                    // Longer than the receiver asked for, through more than
                    // one framer: unwrapped whole (the inner framers need
                    // the whole body), then delivered in parts.
                    return Some(self.unwrapped_in_parts(max_len));
                }
                let body = avail.min(cur.remaining);
                // (Through several framers, the parts after the first are of
                // a body already unwrapped.)
                let partial_ok = self.framers.framers.len() == 1 || cur.delivered_any();
                if partial_ok && body > 0 && (body >= min_incomplete || body >= max_len) {
                    let n = body.min(max_len);
                    cur.remaining -= n;
                    let ctx = MessageContext::clone(
                        cur.context
                            .get_or_insert_with(|| Box::new(self.peer.context(false))),
                    );
                    let data = self.take(n);
                    return Some(Ok(ReceiveEvent::ReceivedPartial {
                        data,
                        context: ctx,
                        end_of_message: false,
                    }));
                }
                if self.eof {
                    let ctx = self
                        .current
                        .take()
                        .map(|c| c.context.map_or_else(|| self.peer.context(false), |c| *c));
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
            match self.framers.parse(&self.buf, self.eof, self.msg_max) {
                Ok(Parse::NeedMore) if self.eof => {
                    if avail == 0 {
                        let e = Error::new(
                            ErrorReason::PeerFinished,
                            "the peer finished sending (end of stream)",
                        );
                        self.done = Some(Box::new(e.clone()));
                        return Some(Err(ReceiveError {
                            context: None,
                            error: e,
                        }));
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
                }) if crate::framer::frame_len(header, len, trailer).is_none()
                    || header > avail =>
                {
                    // A framer's count no buffer can hold (a length near
                    // usize::MAX, 32 bits in the browser), or a header it
                    // has not seen: the stream's framing is lost.
                    return Some(Err(ReceiveError {
                        context: None,
                        error: Error::new(
                            ErrorReason::DeframingFailed,
                            format!(
                                "the framer reported a {header}-byte header, a {len}-byte Message and a {trailer}-byte trailer in {avail} bytes: more than can be counted or read"
                            ),
                        ),
                    }));
                }
                Ok(Parse::Message {
                    header,
                    len,
                    trailer,
                }) => {
                    self.buf.advance(header);
                    self.current = Some(Current {
                        remaining: len,
                        trailer,
                        context: None,
                    });
                }
                Err(e) => {
                    return Some(Err(ReceiveError {
                        context: None,
                        error: Error::new(
                            ErrorReason::DeframingFailed,
                            format!("framer `{}`: {}", self.framers.framers[0].name(), e.message),
                        ),
                    }));
                }
            }
        }
    }
}

// proptest is a native dev-dependency; the core is the same on both targets.
#[cfg(all(test, native))]
mod tests {
    //! The core fed a stream in random pieces, with datagrams between
    //! them, and asked for events by receives with random
    //! `minIncompleteLength` and `maxLength`, as the driver does.

    use super::*;
    use proptest::prelude::*;

    /// A body read directly grows by doubling (from 1 MiB), never past its
    /// length, so that it ends at exactly its length, holding at most a few
    /// times what came; a peer that declares a large body and stalls costs
    /// 2 MiB.
    #[test]
    fn a_body_read_directly_grows_with_what_came_and_ends_at_its_length() {
        for need in [
            40 * 1024,
            DIRECT_FIRST_RESERVE,
            33 * 1024 * 1024 + 7,
            64 * 1024 * 1024,
        ] {
            let mut len = (40 * 1024).min(need);
            let mut cap = need.min(DIRECT_FIRST_RESERVE);
            let mut grown = 0;
            while len < need {
                if let Some(to) = direct_body_growth(len, cap, need) {
                    assert!(to > cap && to <= need, "{need}: {cap} -> {to}");
                    assert!(
                        to <= 4 * len.max(DIRECT_FIRST_RESERVE),
                        "{need}: {len} in {to}"
                    );
                    cap = to;
                    grown += 1;
                }
                let room = cap - len;
                assert!(
                    room >= (need - len).min(DIRECT_READ_MIN),
                    "{need}: room {room}"
                );
                // The worst case for memory: every read fills the room.
                len += room.min(need - len);
            }
            assert_eq!(cap, need, "the Message keeps exactly its length");
            assert!(grown <= 7, "{need}: grew {grown} times");
        }
        // A stalled peer: 40 KiB of a declared 60 MiB, 2 MiB.
        assert_eq!(
            direct_body_growth(40 * 1024, DIRECT_FIRST_RESERVE, 60 << 20),
            Some(2 * DIRECT_FIRST_RESERVE)
        );
        assert_eq!(
            direct_body_growth(40 * 1024, 2 * DIRECT_FIRST_RESERVE, 60 << 20),
            None
        );
    }

    fn state(framed: bool) -> RecvState {
        let framers = if framed {
            FramerStack {
                framers: smallvec::smallvec![Box::new(crate::framer::LengthPrefixFramer::new())
                    as Box<dyn crate::framer::Framer>],
            }
        } else {
            FramerStack::default()
        };
        RecvState::new(
            None,
            Vec::new(),
            framers,
            PeerContext {
                endpoints: Arc::new(Endpoints {
                    remote: Some(RemoteEndpoint::new()),
                    local: None,
                }),
                early_data: false,
            },
        )
    }

    /// A buffer whose bytes were all taken is let go of: an idle
    /// Connection holds none, whatever a burst grew it to; one that still
    /// holds bytes keeps them.
    #[test]
    fn a_drained_buffer_is_let_go_of() {
        let mut st = state(true);
        st.buf = BytesMut::with_capacity(2 << 20);
        st.buf.extend_from_slice(&[0, 0, 0, 3, 1, 2, 3, 0, 0]);
        let Some(Ok(ReceiveEvent::Received { data, .. })) = st.step(usize::MAX, usize::MAX) else {
            panic!("one whole Message buffered");
        };
        assert_eq!(&data[..], [1, 2, 3]);
        st.compact();
        assert_eq!(&st.buf[..], [0, 0], "the rest stays");
        assert!(st.buf.capacity() >= (2 << 20) - 7);
        st.buf.advance(2);
        st.compact();
        assert_eq!((st.buf.len(), st.buf.capacity()), (0, 0));
    }

    /// After a large Message, what follows goes to an allocation of its own:
    /// a small Message received next does not keep the large one's alive.
    #[test]
    fn a_small_message_does_not_share_a_large_ones_allocation() {
        let mut st = state(true);
        let big = SHARE_MAX + 10;
        st.buf.extend_from_slice(&(big as u32).to_be_bytes());
        st.buf.extend_from_slice(&vec![1; big]);
        st.buf.extend_from_slice(&[0, 0, 0, 2, 7, 7]);
        let Some(Ok(ReceiveEvent::Received { data: large, .. })) = st.step(usize::MAX, usize::MAX)
        else {
            panic!("the large Message");
        };
        let Some(Ok(ReceiveEvent::Received { data: small, .. })) = st.step(usize::MAX, usize::MAX)
        else {
            panic!("the small Message");
        };
        assert_eq!((large.len(), &small[..]), (big, &[7, 7][..]));
        let after_large = large.as_ptr() as usize + big;
        assert_ne!(
            small.as_ptr() as usize,
            after_large + 4,
            "the small Message sits in the large one's allocation"
        );
    }

    /// A Message taken from the buffer is split off it, not copied, and
    /// keeps its bytes while the buffer takes more.
    #[test]
    fn messages_are_split_off_the_buffer() {
        let mut st = state(true);
        st.buf = BytesMut::with_capacity(64);
        st.buf.extend_from_slice(&[0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 2]);
        let at = st.buf.as_ptr() as usize;
        let Some(Ok(ReceiveEvent::Received { data, .. })) = st.step(usize::MAX, usize::MAX) else {
            panic!("one whole Message buffered");
        };
        assert_eq!(data.as_ptr() as usize, at + 4, "split off, not copied");
        // The buffer needs more room than it has: it moves, the Message stays.
        st.buf.extend_from_slice(&[7; 100]);
        assert_eq!(&data[..], [1, 2, 3]);
        let Some(Ok(ReceiveEvent::Received { data, .. })) = st.step(usize::MAX, usize::MAX) else {
            panic!("the second Message");
        };
        assert_eq!(&data[..], [7, 7]);
        assert_eq!(st.buf.len(), 98);
    }

    /// What the receives saw.
    #[derive(Default, Debug)]
    struct Seen {
        /// Whole stream Messages, reassembled from their parts.
        messages: Vec<Vec<u8>>,
        /// Unreliable Messages.
        datagrams: Vec<Vec<u8>>,
        /// The index of the Message marked final, if any.
        final_at: Option<usize>,
        /// How the receiving ended.
        end: Option<ErrorReason>,
    }

    /// Feed `stream` in `pieces` (a datagram after some of them), asking
    /// for events with the receive limits in `asks` (cycled).
    fn run(
        framed: bool,
        stream: &[u8],
        pieces: &[usize],
        datagrams: &[(usize, Vec<u8>)],
        asks: &[(Option<usize>, Option<usize>)],
    ) -> Seen {
        let mut st = state(framed);
        let mut seen = Seen::default();
        let mut open: Option<(u64, Vec<u8>)> = None;
        let (mut fed, mut piece, mut ask) = (0, 0, 0);
        for _ in 0..100_000 {
            let (min, max) = asks[ask % asks.len()];
            let (min, max) = (
                min.unwrap_or(usize::MAX).max(1),
                max.unwrap_or(usize::MAX).max(1),
            );
            // As the driver does: once done, every receive gets why.
            if let Some(e) = &st.done {
                seen.end = Some(e.reason);
                assert!(open.is_none(), "done inside a Message: {e:?}");
                return seen;
            }
            match st.step(min, max) {
                None => {
                    // The driver reads: the next piece, maybe a datagram, or the end.
                    if fed < stream.len() {
                        let n = pieces[piece % pieces.len()].clamp(1, stream.len() - fed);
                        st.compact();
                        st.buf.extend_from_slice(&stream[fed..fed + n]);
                        fed += n;
                        for (_, d) in datagrams.iter().filter(|(at, _)| *at == piece) {
                            st.datagrams.push(Bytes::from(d.clone()));
                        }
                        piece += 1;
                    } else {
                        assert!(!st.eof, "the core asked for more after the end");
                        st.eof = true;
                    }
                }
                Some(Err(e)) => {
                    seen.end = Some(e.error.reason);
                    assert!(open.is_none(), "the stream ended inside a Message: {e:?}");
                    return seen;
                }
                Some(Ok(ev)) => {
                    ask += 1;
                    let (data, context, end) = match ev {
                        ReceiveEvent::Received { data, context } => (data, context, true),
                        ReceiveEvent::ReceivedPartial {
                            data,
                            context,
                            end_of_message,
                        } => (data, context, end_of_message),
                    };
                    if framed || context.properties.msg_reliable == Some(false) {
                        assert!(
                            data.len() <= max || context.properties.msg_reliable == Some(false),
                            "{} bytes for a receive of at most {max}",
                            data.len()
                        );
                    }
                    if !end && data.len() < max {
                        assert!(
                            data.len() >= min,
                            "a part of {} bytes, under minIncompleteLength {min}",
                            data.len()
                        );
                    }
                    if context.properties.msg_reliable == Some(false) {
                        assert!(open.is_none(), "a datagram inside a stream Message's parts");
                        assert!(end, "a datagram in parts");
                        seen.datagrams.push(data.to_vec());
                        continue;
                    }
                    let (id, mut body) = open.take().unwrap_or((context.id(), Vec::new()));
                    assert_eq!(
                        id,
                        context.id(),
                        "the parts of one Message share its context"
                    );
                    body.extend_from_slice(&data);
                    if end {
                        if context.is_final() {
                            assert!(seen.final_at.is_none(), "two final Messages");
                            seen.final_at = Some(seen.messages.len());
                        }
                        seen.messages.push(body);
                    } else {
                        open = Some((id, body));
                    }
                }
            }
        }
        panic!("no end after 100,000 steps");
    }

    fn framed(messages: &[Vec<u8>]) -> Vec<u8> {
        let mut s = Vec::new();
        for m in messages {
            s.extend_from_slice(&(m.len() as u32).to_be_bytes());
            s.extend_from_slice(m);
        }
        s
    }

    fn asks() -> impl Strategy<Value = Vec<(Option<usize>, Option<usize>)>> {
        proptest::collection::vec(
            (
                proptest::option::weighted(0.4, 1usize..300),
                proptest::option::weighted(0.4, 1usize..400),
            ),
            1..8,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn framed_messages_come_out_whole_in_order_once_however_they_arrive(
            messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..900), 0..12),
            pieces in proptest::collection::vec(1usize..700, 1..10),
            datagrams in proptest::collection::vec((0usize..12, proptest::collection::vec(any::<u8>(), 0..50)), 0..4),
            asks in asks(),
        ) {
            // Each datagram told apart by its first byte.
            let datagrams: Vec<(usize, Vec<u8>)> = datagrams
                .into_iter()
                .enumerate()
                .map(|(i, (at, mut d))| {
                    d.insert(0, i as u8);
                    (at, d)
                })
                .collect();
            let seen = run(true, &framed(&messages), &pieces, &datagrams, &asks);
            prop_assert_eq!(&seen.messages, &messages);
            prop_assert_eq!(seen.end, Some(ErrorReason::PeerFinished));
            // Datagrams whole, in their order (those pushed before the end).
            let mut arrival = datagrams.clone();
            arrival.sort_by_key(|(at, _)| *at); // stable: same piece, list order
            let fed: Vec<Vec<u8>> = arrival.into_iter().map(|(_, d)| d).collect();
            prop_assert!(seen.datagrams.iter().all(|d| fed.contains(d)));
            let mut it = fed.iter();
            for d in &seen.datagrams {
                prop_assert!(it.any(|f| f == d), "datagrams out of order");
            }
            // Only the last Message can be final.
            if let Some(i) = seen.final_at {
                prop_assert_eq!(i + 1, messages.len());
            }
        }

        #[test]
        fn an_unframed_stream_comes_out_as_one_message_in_parts(
            stream in proptest::collection::vec(any::<u8>(), 0..3000),
            pieces in proptest::collection::vec(1usize..700, 1..10),
            asks in asks(),
        ) {
            let seen = run(false, &stream, &pieces, &[], &asks);
            prop_assert_eq!(seen.messages.len(), 1);
            prop_assert_eq!(&seen.messages[0], &stream);
            prop_assert_eq!(seen.final_at, Some(0), "the stream's end is its final part");
        }
    }

    #[test]
    fn a_stream_cut_inside_a_message_is_a_deframing_failure() {
        let mut st = state(true);
        st.buf.extend_from_slice(&[0, 0, 0, 10, 1, 2, 3]);
        assert!(st.step(usize::MAX, usize::MAX).is_none());
        st.eof = true;
        let e = st.step(usize::MAX, usize::MAX).unwrap().unwrap_err();
        assert_eq!(e.error.reason, ErrorReason::DeframingFailed);
        assert!(e.error.message.contains("3 of 10"), "{}", e.error.message);
    }

    #[test]
    fn a_length_over_recv_msg_max_len_is_refused_before_buffering() {
        let mut st = state(true);
        let too_long = (RECV_MSG_MAX_LEN as u32 + 1).to_be_bytes();
        st.buf.extend_from_slice(&too_long);
        let e = st.step(usize::MAX, usize::MAX).unwrap().unwrap_err();
        assert_eq!(e.error.reason, ErrorReason::DeframingFailed);
    }
}
