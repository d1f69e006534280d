//! The demo's echo: every Message goes back on its Connection, a datagram
//! (msgReliable false) as a datagram.

use postsocket::{Connection, MessageContext, ReceiveEvent, RendezvousDone};

/// Send every Message back until the Connection ends, then close it.
pub async fn echo(conn: Connection) {
    loop {
        let (data, context, end) = match conn.receive().await {
            Ok(ReceiveEvent::Received { data, context }) => (data, context, true),
            Ok(ReceiveEvent::ReceivedPartial {
                data,
                context,
                end_of_message,
            }) => (data, context, end_of_message),
            Err(_) => break,
        };
        let reply = (context.properties.msg_reliable == Some(false)).then(|| {
            let mut c = MessageContext::new();
            c.properties.msg_reliable = Some(false);
            c
        });
        if conn.send(data, reply, end).await.is_err() {
            break;
        }
    }
    let _ = conn.close().await;
}

/// Echo a rendezvous' first data channel and every channel the peer opens later.
pub fn echo_rendezvous(done: RendezvousDone) {
    tokio::spawn(echo(done.connection));
    let listener = done.listener;
    tokio::spawn(async move {
        while let Ok(c) = listener.accept().await {
            tokio::spawn(echo(c));
        }
    });
}
