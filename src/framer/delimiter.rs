//! A delimiter framer: each Message ends with a delimiter (a newline by default).

use super::{Frame, Framer, FramerError, Parse};
use crate::message::MessageContext;

/// Frames each Message by appending a delimiter; on receive, a Message is
/// everything up to the next delimiter. Messages must not contain it.
#[derive(Debug, Clone)]
pub struct DelimiterFramer {
    delimiter: Vec<u8>,
    scanned: usize,
}

impl DelimiterFramer {
    /// Lines ending in `\n`.
    pub fn line() -> Self {
        Self::new(b"\n".to_vec()).expect("non-empty")
    }

    /// Any non-empty delimiter.
    pub fn new(delimiter: Vec<u8>) -> Result<Self, crate::Error> {
        if delimiter.is_empty() {
            return Err(crate::Error::invalid_configuration(
                "a delimiter framer needs a non-empty delimiter",
            ));
        }
        Ok(DelimiterFramer {
            delimiter,
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
            None if buf.len() > max_len => Err(FramerError::new(format!(
                "no delimiter within recvMsgMaxLen ({max_len} bytes)"
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
