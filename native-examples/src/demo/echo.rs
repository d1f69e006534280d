//! The demo's echo: every Message goes back on its Connection, a datagram
//! (msgReliable false) as a datagram.

use postsocket::{Connection, MessageContext, ReceiveEvent, RendezvousDone};

/// Send every Message back until the Connection ends, then close it.
pub async fn echo(conn: Connection) {
    echo_until_the_end(conn).await;
}

/// How an echoed Connection ended: the first data it carried (the first
/// Message, or its first part if it came in parts: its text if short
/// UTF-8, else its length), how many whole Messages it echoed, and why it
/// ended (the receive's error: `PeerFinished` for the peer's clean finish;
/// or the send's).
#[derive(Debug)]
pub struct Ended {
    /// The first data received, as text or as `N bytes`.
    pub first: Option<String>,
    /// How many whole Messages were echoed.
    pub messages: u64,
    /// Why the echo ended (`reason: message`).
    pub why: String,
}

/// [`echo`], and how it ended.
pub async fn echo_until_the_end(conn: Connection) -> Ended {
    let mut first = None;
    let mut messages = 0;
    let why = loop {
        let (data, context, end) = match conn.receive().await {
            Ok(ReceiveEvent::Received { data, context }) => (data, context, true),
            Ok(ReceiveEvent::ReceivedPartial {
                data,
                context,
                end_of_message,
            }) => (data, context, end_of_message),
            Err(e) => break format!("{}: {}", e.error.reason, e.error.message),
        };
        if first.is_none() {
            first = Some(match std::str::from_utf8(&data) {
                Ok(t) if t.len() <= 64 => t.to_string(),
                _ => format!("{} bytes", data.len()),
            });
        }
        let reply = (context.properties.msg_reliable == Some(false)).then(|| {
            let mut c = MessageContext::new();
            c.properties.msg_reliable = Some(false);
            c
        });
        if let Err(e) = conn.send(data, reply, end).await {
            break format!("the echo's send failed: {e:?}");
        }
        messages += u64::from(end);
    };
    let _ = conn.close().await;
    Ended {
        first,
        messages,
        why,
    }
}

/// Echo a rendezvous' first data channel and every channel the peer opens later.
pub fn echo_rendezvous(done: RendezvousDone) {
    echo_rendezvous_then(done, |_| {});
}

/// [`echo_rendezvous`], calling `ended` as each data channel's echo ends.
pub fn echo_rendezvous_then(done: RendezvousDone, ended: fn(Ended)) {
    let each = move |c: Connection| async move { ended(echo_until_the_end(c).await) };
    tokio::spawn(each(done.connection));
    let listener = done.listener;
    tokio::spawn(async move {
        while let Ok(c) = listener.accept().await {
            tokio::spawn(each(c));
        }
    });
}
