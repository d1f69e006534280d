//! Fuzz harnesses: not an API. Each function takes any bytes and must
//! neither panic nor break its invariants (a panic is the finding). They are
//! driven by libFuzzer through `fuzz/` (`cargo +nightly fuzz run TARGET`) and
//! replayed over the committed corpus by `tests/fuzz_corpus.rs`; both build
//! this crate with the `fuzzing` feature, which nothing else should enable.
//!
//! The parsers fuzzed, one harness each: the Message Framers (and their
//! round trip through the receive side's Parse), the first-bytes classifier
//! of a Listener's shared TCP port, the certificate DER read for errors
//! (validity dates and key type), the HTTP response of signaling, the
//! signaling JSON, the RacingTrace JSON lines, and the TransportContext's
//! saved format.

use crate::framer::{DelimiterFramer, Frame, Framer, LengthPrefixFramer, Parse};
use crate::message::MessageContext;

/// A harness: any bytes in, a panic on a finding.
pub type Harness = fn(&[u8]);

/// The harnesses by name, for the corpus replay test.
pub const TARGETS: &[(&str, Harness)] = &[
    ("framers", framers),
    ("first_bytes", first_bytes),
    ("certificate", certificate),
    ("http_response", http_response),
    ("signaling_json", signaling_json),
    ("trace_json", trace_json),
    ("context_json", context_json),
];

/// Split `data` into (control byte, rest).
fn split(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&c, rest)) => (c, rest),
        None => (0, &[]),
    }
}

fn framer(choice: u8) -> Box<dyn Framer> {
    match choice % 3 {
        0 => Box::new(LengthPrefixFramer::new()),
        1 => Box::new(DelimiterFramer::line()),
        _ => Box::new(DelimiterFramer::new(b"\r\n--".to_vec()).expect("a delimiter")),
    }
}

/// Parse `buf` as a receive side does, in pieces whose sizes come from
/// `cuts`: every Message found must lie inside what arrived, and the cursor
/// only moves forward. Returns the Messages found whole.
fn deframe(f: &mut dyn Framer, buf: &[u8], cuts: &[u8], max_len: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut arrived = 0usize;
    let mut cursor = 0usize;
    let mut cut = cuts.iter().cycle();
    loop {
        let step = cut.next().map_or(buf.len(), |&c| usize::from(c) + 1);
        arrived = (arrived + step).min(buf.len());
        let at_end = arrived == buf.len();
        // Take every whole Message in what arrived so far.
        loop {
            match f.parse(&buf[cursor..arrived], at_end, max_len) {
                Ok(Parse::NeedMore) => break,
                Ok(Parse::Message {
                    header,
                    len,
                    trailer,
                }) => {
                    assert!(len <= max_len, "a Message over max_len was announced");
                    let total = header
                        .checked_add(len)
                        .and_then(|n| n.checked_add(trailer))
                        .expect("the sizes of one Message overflow");
                    if cursor + total > arrived {
                        if at_end {
                            // The stream ends inside it: a receive reports it.
                            return out;
                        }
                        break; // wait for the body
                    }
                    assert!(total > 0, "a Message of no bytes at all would loop forever");
                    out.push(buf[cursor + header..cursor + header + len].to_vec());
                    cursor += total;
                }
                Err(_) => return out,
            }
            if cursor == arrived {
                break;
            }
        }
        if at_end {
            return out;
        }
    }
}

/// The framers: arbitrary bytes parse without panicking and never announce
/// more than arrived or than `max_len`; and Messages made from the input,
/// framed and then parsed in arbitrary pieces, come back as they were.
pub fn framers(data: &[u8]) {
    let (control, rest) = split(data);
    let max_len = [16usize, 1024, 1 << 20][usize::from(control >> 6) % 3];
    let mut f = framer(control);
    // Arbitrary bytes.
    deframe(f.as_mut(), rest, &rest[..rest.len().min(8)], max_len);
    // A round trip: the input split at 0xff bytes into Messages (those the
    // delimiter framers cannot carry, or over max_len, are skipped).
    let delim: &[u8] = match control % 3 {
        0 => b"",
        1 => b"\n",
        _ => b"\r\n--",
    };
    let messages: Vec<&[u8]> = rest
        .split(|&b| b == 0xff)
        .filter(|m| m.len() <= max_len)
        .filter(|m| delim.is_empty() || !m.windows(delim.len()).any(|w| w == delim))
        .filter(|m| delim.is_empty() || !m.ends_with(&delim[..1]))
        .collect();
    let mut wire = Vec::new();
    let ctx = MessageContext::new();
    let mut sender = framer(control);
    for m in &messages {
        let mut frame = Frame {
            data: bytes::Bytes::copy_from_slice(m),
            ..Frame::default()
        };
        sender
            .frame(&mut frame, &ctx, true)
            .expect("a Message within bounds frames");
        wire.extend_from_slice(&frame.concat());
    }
    let got = deframe(framer(control).as_mut(), &wire, rest, max_len);
    let want: Vec<Vec<u8>> = messages.iter().map(|m| m.to_vec()).collect();
    assert_eq!(got, want, "framed Messages did not come back as they were");
}

/// A Listener's first-bytes classifier on its shared TCP port.
pub fn first_bytes(data: &[u8]) {
    crate::backend::fuzz_first_bytes(data);
}

/// The certificate DER read for clear errors: validity dates and key type.
pub fn certificate(data: &[u8]) {
    crate::backend::fuzz_certificate(data);
}

/// The HTTP response of signaling (`HttpSignaling`), complete or not.
pub fn http_response(data: &[u8]) {
    crate::backend::fuzz_http_response(data);
}

/// Signaling messages (offer, answer) as JSON.
pub fn signaling_json(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = crate::rendezvous::SignalingMessage::from_json(text) {
            let again = crate::rendezvous::SignalingMessage::from_json(&m.to_json())
                .expect("what was written reads back");
            assert_eq!(again.to_json(), m.to_json());
        }
    }
}

/// RacingTrace JSON lines (`tapscat --trace`, the demo's import).
pub fn trace_json(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(t) = crate::RacingTrace::from_json_lines(text) {
            let back = crate::RacingTrace::from_json_lines(&t.to_json_lines())
                .expect("what was written reads back");
            assert_eq!(back.events.len(), t.events.len());
            let _ = t.timeline();
        }
    }
}

/// The TransportContext's saved format: a corrupt text is an error, a
/// valid one reads back what it wrote, and racing with it does not panic.
pub fn context_json(data: &[u8]) {
    use crate::context::memory::Memory;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut m) = Memory::from_json(text, "fuzz") else {
        return;
    };
    let again = Memory::from_json(&m.to_json(), "fuzz").expect("what was written reads back");
    assert_eq!(again.to_json(), m.to_json());
    let dests = ["127.0.0.1:443".to_string(), "example.com:443".to_string()];
    let caps = [crate::Capabilities::TCP, crate::Capabilities::QUIC];
    let now = 1_800_000_000_000u64;
    let h = m.history_for(&dests, &caps, true, now);
    let mut r = crate::racing::Racer::with_history(
        crate::racing::RacingConfig::default(),
        vec![crate::racing::PathSpec::default()],
        vec![crate::StackId::Tcp, crate::StackId::Quic],
        vec![crate::racing::RemoteSpec::Address(
            "127.0.0.1:443".parse().expect("an address"),
        )],
        h,
        std::time::Duration::ZERO,
    );
    while r.poll_action().is_some() {}
    r.handle_timeout(std::time::Duration::from_secs(60));
    while r.poll_action().is_some() {}
    m.learn(
        &r.outcomes(),
        |s| caps.iter().find(|c| c.stack == s).copied(),
        now,
    );
}
