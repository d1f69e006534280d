//! Message Framers (RFC 9622 §9.1.2, RFC 9623 §6).
//!
//! A framer turns Messages into bytes on a byte-stream stack and back, or adds
//! a header inside a datagram. Framers form a stack on the Preconnection: the
//! last one added runs first on send and last on receive.
//!
//! The trait follows the RFC 9623 §6 event model in a cursor shape: `start`
//! (Start), `handshake` (HandleReceivedData before Ready; failing it fails the
//! candidate, so racing moves on), `frame` (NewSentMessage), and `parse`
//! (HandleReceivedData: look at the receive cursor and say where the next
//! Message lies, like `Parse` + `DeliverAndAdvanceReceiveCursor`).

mod delimiter;
mod length_prefix;

pub use delimiter::DelimiterFramer;
pub use length_prefix::LengthPrefixFramer;

use crate::capability::DataUnit;
use crate::message::MessageContext;
use crate::properties::{Preference, SelectionProperty, TransportProperties};
use std::fmt;

/// A framer failed: the data or the message could not be framed or parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramerError {
    /// What was wrong.
    pub message: String,
}

impl FramerError {
    /// A framer error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        FramerError {
            message: message.into(),
        }
    }
}

impl fmt::Display for FramerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// One Message on its way out: a framer adds bytes before and after the data,
/// or replaces the data. Keeping the parts apart lets the stack write them with
/// one vectored write and no copy of the data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    /// Bytes before the data.
    pub prefix: FrameBytes,
    /// The data (shared, not copied: a framer that changes it sets a new one).
    pub data: bytes::Bytes,
    /// Bytes after the data.
    pub suffix: FrameBytes,
}

impl Frame {
    /// The total length in bytes.
    pub fn len(&self) -> usize {
        self.prefix.len() + self.data.len() + self.suffix.len()
    }
    /// True when the frame carries no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// All parts as one slice: the data itself when there is no prefix or
    /// suffix (the usual case for a message stack), else a copy.
    pub(crate) fn contiguous(&self) -> std::borrow::Cow<'_, [u8]> {
        if self.prefix.is_empty() && self.suffix.is_empty() {
            std::borrow::Cow::Borrowed(&self.data)
        } else {
            std::borrow::Cow::Owned(self.concat())
        }
    }
    /// All parts in one buffer.
    pub fn concat(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        v.extend_from_slice(&self.prefix);
        v.extend_from_slice(&self.data);
        v.extend_from_slice(&self.suffix);
        v
    }
}

/// A frame's prefix or suffix: a growable byte buffer that keeps up to
/// [`FrameBytes::INLINE`] bytes in place, so a short header or trailer (a
/// length prefix, a delimiter) costs no allocation per Message; longer
/// contents move to the heap. It reads as a `[u8]`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FrameBytes(smallvec::SmallVec<[u8; INLINE]>);

/// See [`FrameBytes::INLINE`].
const INLINE: usize = 16;

impl FrameBytes {
    /// Bytes kept in place before the buffer allocates.
    pub const INLINE: usize = INLINE;

    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }
    /// Append `bytes` at the end.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    /// Insert `bytes` at the front (a framer wrapping what an inner framer put there).
    #[inline]
    pub fn prepend(&mut self, bytes: &[u8]) {
        if self.0.is_empty() && bytes.len() <= INLINE {
            // The usual case, a header on an empty prefix: a few moves once
            // inlined with a known length.
            let mut buf = [0u8; INLINE];
            buf[..bytes.len()].copy_from_slice(bytes);
            self.0 = smallvec::SmallVec::from_buf_and_len(buf, bytes.len());
        } else {
            self.0.insert_from_slice(0, bytes);
        }
    }
    /// Append one byte.
    pub fn push(&mut self, byte: u8) {
        self.0.push(byte);
    }
    /// Remove every byte.
    pub fn clear(&mut self) {
        self.0.clear();
    }
    /// The bytes as a `Vec`.
    pub fn into_vec(self) -> Vec<u8> {
        self.0.into_vec()
    }
}

impl std::ops::Deref for FrameBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for FrameBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl fmt::Debug for FrameBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0[..], f)
    }
}

impl From<&[u8]> for FrameBytes {
    fn from(bytes: &[u8]) -> Self {
        FrameBytes(smallvec::SmallVec::from_slice(bytes))
    }
}

impl<const N: usize> From<&[u8; N]> for FrameBytes {
    fn from(bytes: &[u8; N]) -> Self {
        Self::from(&bytes[..])
    }
}

impl From<Vec<u8>> for FrameBytes {
    /// Takes the Vec's allocation when it is longer than what fits in
    /// place (a short Vec is copied in and freed).
    fn from(bytes: Vec<u8>) -> Self {
        FrameBytes(smallvec::SmallVec::from_vec(bytes))
    }
}

impl Extend<u8> for FrameBytes {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

/// What `parse` found at the receive cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// Not enough bytes to know where the next Message lies.
    NeedMore,
    /// The next Message: skip `header` bytes, then `len` bytes of Message,
    /// then `trailer` bytes. The framer may answer as soon as the length is
    /// known, before the body has arrived; the stack then waits for it (or
    /// delivers it in parts as ReceivedPartial).
    Message {
        /// Bytes of framing before the Message.
        header: usize,
        /// Length of the Message.
        len: usize,
        /// Bytes of framing after the Message.
        trailer: usize,
    },
}

/// What `start` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The framer is ready at once; send these bytes first (may be empty).
    Ready(Vec<u8>),
    /// Send these bytes, then call `handshake` with received data until it says done.
    AwaitHandshake(Vec<u8>),
}

/// A Message Framer. Each Connection (and each racing candidate) gets its own
/// instances through [`Framer::boxed_clone`].
pub trait Framer: Send + Sync + 'static {
    /// A short name, used in errors and framer metadata.
    fn name(&self) -> &str;

    /// A fresh instance with the same configuration.
    fn boxed_clone(&self) -> Box<dyn Framer>;

    /// `Start<connection>`: called once the candidate's transport is up, before Ready.
    fn start(&mut self) -> Result<Start, FramerError> {
        Ok(Start::Ready(Vec::new()))
    }

    /// Received bytes during a handshake (before Ready). Return
    /// `Ok(Some(consumed))` when done, `Ok(None)` for more data, or an error
    /// to fail this candidate (racing then moves on to the next one).
    fn handshake(&mut self, _received: &[u8]) -> Result<Option<usize>, FramerError> {
        Ok(Some(0))
    }

    /// `NewSentMessage`: frame (part of) a Message. With `end_of_message`
    /// false the framer may hold the data back until the last part.
    fn frame(
        &mut self,
        frame: &mut Frame,
        context: &MessageContext,
        end_of_message: bool,
    ) -> Result<(), FramerError>;

    /// `HandleReceivedData`: find the next Message at the start of `buf`.
    /// `at_end` is true when no more bytes will come (end of stream, or one
    /// whole datagram). `max_len` is recvMsgMaxLen: a longer Message is an error.
    fn parse(&mut self, buf: &[u8], at_end: bool, max_len: usize) -> Result<Parse, FramerError>;

    /// The Message being sent in parts was given up before its last part,
    /// none of it having been written (a part was refused: too long, or by
    /// a framer): forget what was kept of it, so that the next part
    /// starts a new Message. The default keeps nothing to forget.
    fn message_abandoned(&mut self) {}
}

impl Clone for Box<dyn Framer> {
    fn clone(&self) -> Self {
        self.boxed_clone()
    }
}

impl fmt::Debug for dyn Framer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Framer({})", self.name())
    }
}

/// A stack of framers: index 0 was added first (closest to the wire).
#[derive(Clone, Default, Debug)]
pub(crate) struct FramerStack {
    /// Inline for one (the usual case): a Connection holds two stacks (its
    /// send and receive sides'), and no allocation for either list.
    pub(crate) framers: smallvec::SmallVec<[Box<dyn Framer>; 1]>,
}

impl FramerStack {
    pub(crate) fn is_empty(&self) -> bool {
        self.framers.is_empty()
    }

    /// Whether Connections made with these framers and `props` carry
    /// Messages on every stack: the application added a framer, or it
    /// requires `preserveMsgBoundaries` (§6.2.2), and then a byte-stream
    /// stack gets a [`LengthPrefixFramer`] (see [`Self::for_data_unit`]).
    pub(crate) fn frames_messages(&self, props: &TransportProperties) -> bool {
        !self.is_empty()
            || props.get(SelectionProperty::PreserveMsgBoundaries) == Preference::Require
    }

    /// The framers one Connection over a stack that carries `unit` runs: a
    /// fresh copy of the application's; or, when it added none but requires
    /// `preserveMsgBoundaries`, a [`LengthPrefixFramer`] on a byte stream
    /// (TCP, TLS, QUIC and WebTransport streams), so that a Message stays one
    /// Message whichever stack wins the race. A Listener with the same
    /// properties frames the same way, so both ends agree.
    pub(crate) fn for_data_unit(&self, unit: DataUnit, props: &TransportProperties) -> FramerStack {
        if self.is_empty() && unit == DataUnit::ByteStream && self.frames_messages(props) {
            FramerStack {
                framers: smallvec::smallvec![Box::new(LengthPrefixFramer::new()) as Box<dyn Framer>],
            }
        } else {
            self.fresh()
        }
    }

    /// New instances of the same framers (for another Connection or candidate).
    pub(crate) fn fresh(&self) -> FramerStack {
        FramerStack {
            framers: self.framers.iter().map(|f| f.boxed_clone()).collect(),
        }
    }

    /// Tell every framer the open Message was given up
    /// ([`Framer::message_abandoned`]).
    pub(crate) fn message_abandoned(&mut self) {
        for f in self.framers.iter_mut() {
            f.message_abandoned();
        }
    }

    /// Frame through every framer: the last added runs first.
    pub(crate) fn frame(
        &mut self,
        frame: &mut Frame,
        context: &MessageContext,
        end_of_message: bool,
    ) -> Result<(), FramerError> {
        for f in self.framers.iter_mut().rev() {
            f.frame(frame, context, end_of_message)?;
        }
        Ok(())
    }

    /// Parse with the wire-most framer.
    pub(crate) fn parse(
        &mut self,
        buf: &[u8],
        at_end: bool,
        max_len: usize,
    ) -> Result<Parse, FramerError> {
        self.framers[0].parse(buf, at_end, max_len)
    }

    /// Unwrap one Message through the framers above the wire-most one: each
    /// must find exactly one whole Message in its input. The result shares
    /// `msg`'s memory (a slice of it, no copy).
    pub(crate) fn unwrap_inner(
        &mut self,
        mut msg: bytes::Bytes,
        max_len: usize,
    ) -> Result<bytes::Bytes, FramerError> {
        for f in self.framers.iter_mut().skip(1) {
            match f.parse(&msg, true, max_len)? {
                Parse::Message {
                    header,
                    len,
                    trailer,
                } if frame_len(header, len, trailer) == Some(msg.len()) => {
                    msg = msg.slice(header..header + len);
                }
                Parse::Message {
                    header,
                    len,
                    trailer,
                } => {
                    return Err(FramerError::new(format!(
                    "framer `{}` found a {}-byte message in a {}-byte frame of the framer below",
                    f.name(),
                    header.saturating_add(len).saturating_add(trailer),
                    msg.len()
                )))
                }
                Parse::NeedMore => {
                    return Err(FramerError::new(format!(
                        "framer `{}` found an incomplete message in a whole frame",
                        f.name()
                    )))
                }
            }
        }
        Ok(msg)
    }
}

/// The bytes a [`Parse::Message`] spans, if they can be counted: a peer's
/// declared length (or a framer's arithmetic) may not fit a `usize`, which
/// is 32 bits in the browser.
pub(crate) fn frame_len(header: usize, len: usize, trailer: usize) -> Option<usize> {
    header.checked_add(len)?.checked_add(trailer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A framer whose Message spans more bytes than a `usize` counts.
    struct Huge;

    impl Framer for Huge {
        fn name(&self) -> &str {
            "huge"
        }
        fn boxed_clone(&self) -> Box<dyn Framer> {
            Box::new(Huge)
        }
        fn frame(&mut self, _: &mut Frame, _: &MessageContext, _: bool) -> Result<(), FramerError> {
            Ok(())
        }
        fn parse(&mut self, _: &[u8], _: bool, _: usize) -> Result<Parse, FramerError> {
            Ok(Parse::Message {
                header: 4,
                len: usize::MAX - 1,
                trailer: 0,
            })
        }
    }

    /// A frame whose parts add up past `usize::MAX` (a length prefix of
    /// 2^32 - 1 in the browser's 32 bits) is refused, not an overflow.
    #[test]
    fn a_frame_longer_than_a_usize_counts_is_refused() {
        assert_eq!(frame_len(1, 2, 3), Some(6));
        assert_eq!(frame_len(4, usize::MAX - 1, 0), None);
        let mut stack = FramerStack {
            framers: vec![
                Box::new(LengthPrefixFramer::new()) as Box<dyn Framer>,
                Box::new(Huge),
            ]
            .into(),
        };
        let e = stack
            .unwrap_inner(bytes::Bytes::from_static(b"abcdef"), usize::MAX)
            .unwrap_err();
        assert!(e.message.contains("framer `huge` found a"), "{e:?}");
    }
}
