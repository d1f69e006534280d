//! A delimiter framer: each Message ends with a delimiter (a newline by default).

use super::{Frame, Framer, FramerError, Parse};
use crate::message::MessageContext;

/// Frames each Message by appending a delimiter; on receive, a Message is
/// everything up to the next delimiter. Messages must not contain it.
#[derive(Debug, Clone)]
pub struct DelimiterFramer {
    /// Shared by every instance made from this one (`boxed_clone` runs for
    /// each Connection and candidate): no copy, no allocation.
    delimiter: bytes::Bytes,
    scanned: usize,
}

impl DelimiterFramer {
    /// Lines ending in `\n`.
    pub fn line() -> Self {
        DelimiterFramer {
            delimiter: bytes::Bytes::from_static(b"\n"),
            scanned: 0,
        }
    }

    /// Any non-empty delimiter.
    pub fn new(delimiter: Vec<u8>) -> Result<Self, crate::Error> {
        if delimiter.is_empty() {
            return Err(crate::Error::invalid_configuration(
                "a delimiter framer needs a non-empty delimiter",
            ));
        }
        Ok(DelimiterFramer {
            delimiter: delimiter.into(),
            scanned: 0,
        })
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| &hay[i..i + needle.len()] == needle)
}

impl Framer for DelimiterFramer {
    fn name(&self) -> &str {
        "delimiter"
    }

    fn boxed_clone(&self) -> Box<dyn Framer> {
        Box::new(DelimiterFramer {
            delimiter: self.delimiter.clone(),
            scanned: 0,
        })
    }

    fn frame(
        &mut self,
        frame: &mut Frame,
        _context: &MessageContext,
        end_of_message: bool,
    ) -> Result<(), FramerError> {
        for part in [&frame.prefix[..], &frame.data[..], &frame.suffix[..]] {
            if find(part, &self.delimiter, 0).is_some() {
                return Err(FramerError::new(format!(
                    "the message contains the delimiter \"{}\"; use the length-prefix framer for binary data",
                    self.delimiter.escape_ascii()
                )));
            }
        }
        if end_of_message {
            frame.suffix.extend_from_slice(&self.delimiter);
        }
        Ok(())
    }

    fn parse(&mut self, buf: &[u8], at_end: bool, max_len: usize) -> Result<Parse, FramerError> {
        // Resume the search where the last call stopped (the cursor only grows
        // until a Message is found).
        let from = self.scanned.min(buf.len());
        match find(
            buf,
            &self.delimiter,
            from.saturating_sub(self.delimiter.len() - 1),
        ) {
            Some(i) => {
                self.scanned = 0;
                if i > max_len {
                    return Err(FramerError::new(format!(
                        "a {i}-byte message is over recvMsgMaxLen {max_len}"
                    )));
                }
                Ok(Parse::Message {
                    header: 0,
                    len: i,
                    trailer: self.delimiter.len(),
                })
            }
            // A delimiter may still start at any index up to max_len: only
            // once it could not fit any more is the Message too long (found
            // by fuzzing: a Message of max_len - 1 bytes whose multi-byte
            // delimiter had arrived in part was refused).
            None if buf.len() >= max_len.saturating_add(self.delimiter.len()) => {
                Err(FramerError::new(format!(
                    "no delimiter within recvMsgMaxLen ({max_len} bytes)"
                )))
            }
            None if at_end && buf.len() > max_len => Err(FramerError::new(format!(
                "the stream ended after {} bytes without a delimiter, over recvMsgMaxLen {max_len}",
                buf.len()
            ))),
            None if at_end && !buf.is_empty() => {
                // The last Message need not end with the delimiter (like a final line without newline).
                self.scanned = 0;
                Ok(Parse::Message {
                    header: 0,
                    len: buf.len(),
                    trailer: 0,
                })
            }
            None => {
                self.scanned = buf.len();
                Ok(Parse::NeedMore)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (fuzz/regressions/framers): a Message just under
    /// recvMsgMaxLen whose multi-byte delimiter has arrived only in part is
    /// not too long yet.
    #[test]
    fn a_message_within_the_limit_waits_for_the_rest_of_its_delimiter() {
        let mut f = DelimiterFramer::new(b"\r\n--".to_vec()).unwrap();
        let msg = [b'x'; 15];
        let mut wire = msg.to_vec();
        wire.extend_from_slice(b"\r\n--");
        // 15 bytes, then 2 of the 4 delimiter bytes: 17 > 16, but the
        // delimiter starts at 15 <= 16.
        assert_eq!(f.parse(&wire[..17], false, 16).unwrap(), Parse::NeedMore);
        assert_eq!(
            f.parse(&wire, false, 16).unwrap(),
            Parse::Message {
                header: 0,
                len: 15,
                trailer: 4
            }
        );
        // Past where a delimiter could start within the limit: too long.
        let mut f = DelimiterFramer::new(b"\r\n--".to_vec()).unwrap();
        assert!(f.parse(&[b'y'; 20], false, 16).is_err());
        assert_eq!(f.parse(&[b'y'; 19], false, 16).unwrap(), Parse::NeedMore);
        // And a last Message without a delimiter is bounded too (found by
        // fuzzing the first fix: 19 bytes at the end were one Message).
        let mut f = DelimiterFramer::new(b"\r\n--".to_vec()).unwrap();
        assert!(f.parse(&[b'y'; 19], true, 16).is_err());
        assert_eq!(
            f.parse(&[b'y'; 16], true, 16).unwrap(),
            Parse::Message {
                header: 0,
                len: 16,
                trailer: 0
            }
        );
    }
}
