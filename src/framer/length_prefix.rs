//! A length-prefix (TLV-style) framer: each Message is preceded by its length
//! as a 4-byte big-endian integer.

use super::{Frame, Framer, FramerError, Parse};
use crate::message::MessageContext;

/// Frames each Message as a 32-bit big-endian length followed by the bytes.
#[derive(Debug, Clone, Default)]
pub struct LengthPrefixFramer {
    pending: Vec<u8>,
}

impl LengthPrefixFramer {
    /// The largest Message this framer can carry (the 4-byte length field).
    pub const MAX_LEN: usize = u32::MAX as usize;

    /// A new length-prefix framer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Framer for LengthPrefixFramer {
    fn name(&self) -> &str {
        "length-prefix"
    }

    fn boxed_clone(&self) -> Box<dyn Framer> {
        Box::new(LengthPrefixFramer::new())
    }

    fn frame(
        &mut self,
        frame: &mut Frame,
        _context: &MessageContext,
        end_of_message: bool,
    ) -> Result<(), FramerError> {
        // The length must be known up front, so parts of a Message wait here
        // until the last part arrives.
        let inner = frame.len();
        if !end_of_message {
            self.pending.extend_from_slice(&frame.concat());
            *frame = Frame::default();
            return Ok(());
        }
        let total = self.pending.len() + inner;
        let len = u32::try_from(total).map_err(|_| {
            FramerError::new(format!(
                "a {total}-byte message does not fit the 4-byte length prefix"
            ))
        })?;
        if self.pending.is_empty() {
            // The usual case: four bytes, in place.
            frame.prefix.prepend(&len.to_be_bytes());
        } else {
            let mut prefix = Vec::with_capacity(4 + self.pending.len() + frame.prefix.len());
            prefix.extend_from_slice(&len.to_be_bytes());
            prefix.append(&mut self.pending);
            prefix.extend_from_slice(&frame.prefix);
            frame.prefix = prefix.into();
        }
        Ok(())
    }

    fn message_abandoned(&mut self) {
        self.pending = Vec::new();
    }

    fn parse(&mut self, buf: &[u8], at_end: bool, max_len: usize) -> Result<Parse, FramerError> {
        if buf.len() < 4 {
            if at_end && !buf.is_empty() {
                return Err(FramerError::new(format!(
                    "stream ended inside a length prefix ({} of 4 bytes)",
                    buf.len()
                )));
            }
            return Ok(Parse::NeedMore);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > max_len {
            return Err(FramerError::new(format!(
                "length prefix announces {len} bytes, over recvMsgMaxLen {max_len}"
            )));
        }
        Ok(Parse::Message {
            header: 4,
            len,
            trailer: 0,
        })
    }
}
