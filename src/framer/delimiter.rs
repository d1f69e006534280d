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
    /// The last bytes (up to the delimiter's length less one) of the
    /// Message being sent in parts: a delimiter may straddle two parts.
    sent_tail: Vec<u8>,
}

impl DelimiterFramer {
    /// Lines ending in `\n`.
    pub fn line() -> Self {
        DelimiterFramer {
            delimiter: bytes::Bytes::from_static(b"\n"),
            scanned: 0,
            sent_tail: Vec::new(),
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
            sent_tail: Vec::new(),
        })
    }
}

impl DelimiterFramer {
    fn contains_delimiter(&self) -> FramerError {
        FramerError::new(format!(
            "the message contains the delimiter \"{}\"; use the length-prefix framer for binary data",
            self.delimiter.escape_ascii()
        ))
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
            sent_tail: Vec::new(),
        })
    }

    fn frame(
        &mut self,
        frame: &mut Frame,
        _context: &MessageContext,
        end_of_message: bool,
    ) -> Result<(), FramerError> {
        let parts = [&frame.prefix[..], &frame.data[..], &frame.suffix[..]];
        let keep = self.delimiter.len() - 1;
        let joins = keep > 0
            && (!self.sent_tail.is_empty() || parts.iter().filter(|p| !p.is_empty()).count() > 1);
        if !joins && end_of_message {
            // The usual whole Message in one part (or a one-byte delimiter,
            // which no join can split): no join to look across.
            if parts.iter().any(|p| find(p, &self.delimiter, 0).is_some()) {
                return Err(self.contains_delimiter());
            }
            frame.suffix.extend_from_slice(&self.delimiter);
            return Ok(());
        }
        // The delimiter, within one part or across the joins between
        // parts and with the Message's earlier parts (`sent_tail`).
        // (A copy: a refused part leaves the Message as it was, open with
        // its earlier parts; at most the delimiter's length less one.)
        let mut tail = self.sent_tail.clone();
        let mut found = false;
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let start = tail.len();
            tail.extend_from_slice(&part[..part.len().min(keep)]);
            found |= find(&tail, &self.delimiter, 0).is_some()
                || find(part, &self.delimiter, 0).is_some();
            if found {
                break;
            }
            // The last `keep` bytes of everything so far.
            tail.truncate(start);
            tail.extend_from_slice(&part[part.len().saturating_sub(keep)..]);
            let over = tail.len().saturating_sub(keep);
            tail.drain(..over);
        }
        if found {
            return Err(self.contains_delimiter());
        }
        if end_of_message {
            frame.suffix.extend_from_slice(&self.delimiter);
            self.sent_tail.clear();
        } else {
            self.sent_tail = tail;
        }
        Ok(())
    }

    fn message_abandoned(&mut self) {
        self.sent_tail.clear();
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

    /// A Message sent in parts may not carry its delimiter across a join:
    /// the end of one part and the start of the next, or the parts of one
    /// frame. (Each part was checked alone before, so `abc\r` then `\ndef`
    /// went out and arrived as two Messages.) A delimiter-free Message in
    /// parts goes out whole; a refused part leaves the Message open as it
    /// was, until it is given up.
    #[test]
    fn a_delimiter_across_the_parts_of_a_message_is_refused() {
        let ctx = MessageContext::default();
        let part = |f: &mut DelimiterFramer, data: &'static [u8], end: bool| {
            let mut frame = Frame {
                data: bytes::Bytes::from_static(data),
                ..Frame::default()
            };
            f.frame(&mut frame, &ctx, end).map(|()| frame.concat())
        };
        let mut f = DelimiterFramer::new(b"\r\n".to_vec()).unwrap();
        assert_eq!(part(&mut f, b"abc\r", false).unwrap(), b"abc\r");
        assert!(part(&mut f, b"\ndef", true).is_err(), "across two parts");
        // The refused part changed nothing: the Message is still open
        // after `abc\r`, and the same part is refused again.
        assert!(part(&mut f, b"\nxyz", true).is_err(), "still after `\\r`");
        // Given up, the next Message starts afresh: a lone `\n` is fine.
        f.message_abandoned();
        assert_eq!(part(&mut f, b"\nxyz", true).unwrap(), b"\nxyz\r\n");
        // Across one-byte parts, three deep.
        let mut f = DelimiterFramer::new(b"<->".to_vec()).unwrap();
        assert!(part(&mut f, b"a<", false).is_ok());
        assert!(part(&mut f, b"-", false).is_ok());
        assert!(part(&mut f, b">b", true).is_err(), "across three parts");
        // A prefix and the data of one frame.
        let mut f = DelimiterFramer::new(b"\r\n".to_vec()).unwrap();
        let mut frame = Frame {
            data: bytes::Bytes::from_static(b"\nrest"),
            ..Frame::default()
        };
        frame.prefix.extend_from_slice(b"head\r");
        assert!(f.frame(&mut frame, &ctx, true).is_err(), "prefix and data");
        // Near misses go out.
        let mut f = DelimiterFramer::new(b"\r\n".to_vec()).unwrap();
        assert!(part(&mut f, b"a\r", false).is_ok());
        assert!(part(&mut f, b"\r", false).is_ok());
        assert_eq!(part(&mut f, b"b\n", true).unwrap(), b"b\n\r\n");
    }

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
