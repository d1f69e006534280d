//! A send future dropped before it resolves (a timeout around `send`, a
//! `select!` that picked another branch) must not corrupt the stream: the
//! Message was queued when `send` was called, so it still goes out, once,
//! whole and in order. Run over real loopback TCP, TLS, QUIC and WebSocket, with the
//! receiver stalled so that the sends block on a full socket or on QUIC flow
//! control and the timeouts drop them midway.
// Native only (sockets, tokio).
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

mod common;

use common::{local, pinned, remote, self_signed, with_certificate};
use postsocket::framer::LengthPrefixFramer;
use postsocket::{Preconnection, SecurityParameters, StackId, TransportProperties};
use std::time::Duration;

/// Messages sent while the receiver is stalled.
const STALLED: usize = 40;
/// Each Message's size: a few of them fill the socket buffers.
const SIZE: usize = 256 * 1024;

fn message(i: usize) -> Vec<u8> {
    vec![i as u8; SIZE]
}

/// A length-prefixed Listener on `stack` and a Connection to it.
async fn connect(
    stack: StackId,
    server_sec: SecurityParameters,
    client_sec: SecurityParameters,
) -> (postsocket::Listener, postsocket::Connection) {
    let mut lp = Preconnection::new(
        vec![local("127.0.0.1:0")],
        vec![],
        TransportProperties::new(),
        server_sec,
    );
    lp.set_protocols(vec![stack]);
    lp.add_framer(LengthPrefixFramer::new());
    let listener = lp.listen().await.expect("listen");
    let mut cp = Preconnection::new(
        vec![],
        vec![remote(listener.local_addr())],
        TransportProperties::new(),
        client_sec,
    );
    cp.set_protocols(vec![stack]);
    cp.add_framer(LengthPrefixFramer::new());
    let client = cp.initiate().await.expect("initiate");
    assert_eq!(client.stack(), stack);
    (listener, client)
}

async fn dropped_sends_keep_the_stream_whole(stack: StackId) {
    let cert = self_signed();
    let (server_sec, client_sec) = match stack {
        StackId::Tcp | StackId::Ws => (
            SecurityParameters::disabled(),
            SecurityParameters::disabled(),
        ),
        _ => (
            with_certificate(SecurityParameters::new(), &cert),
            pinned(&cert),
        ),
    };
    let (listener, client) = connect(stack, server_sec, client_sec).await;

    // The receiver does not read yet: sooner or later each send blocks and
    // its timeout drops it.
    let mut dropped = 0;
    for i in 0..STALLED {
        let send = client.send_message(message(i));
        if tokio::time::timeout(Duration::from_millis(20), send)
            .await
            .is_err()
        {
            dropped += 1;
        }
    }
    assert!(
        dropped > 0,
        "{stack}: no send ever blocked, so none was dropped midway; the test needs bigger Messages"
    );

    // Now read everything; one last awaited send drives out what the
    // dropped ones left queued.
    let reader = tokio::spawn(async move {
        // QUIC opens the peer's stream when its first bytes arrive.
        let server = listener.accept().await.expect("accept");
        let mut got = Vec::new();
        for _ in 0..=STALLED {
            let m = server.receive().await.expect("receive");
            assert!(m.is_end_of_message());
            got.push(m.into_data());
        }
        got
    });
    tokio::time::timeout(
        Duration::from_secs(20),
        client.send_message(message(STALLED)),
    )
    .await
    .expect("the last send finished")
    .expect("the last send succeeded");
    let got = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the receiver got every Message")
        .expect("reader task");
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.len(), SIZE, "{stack}: Message {i} has the wrong length");
        assert!(
            m.iter().all(|&b| b == i as u8),
            "{stack}: Message {i} arrived with bytes of another Message (dropped sends: {dropped})"
        );
    }
}

#[tokio::test]
async fn dropped_tcp_sends_keep_the_stream_whole() {
    dropped_sends_keep_the_stream_whole(StackId::Tcp).await;
}

#[tokio::test]
async fn dropped_tls_sends_keep_the_stream_whole() {
    dropped_sends_keep_the_stream_whole(StackId::Tls).await;
}

#[tokio::test]
async fn dropped_quic_sends_keep_the_stream_whole() {
    dropped_sends_keep_the_stream_whole(StackId::Quic).await;
}

/// A WebSocket's writes are not cancel safe, and a 256 KiB Message goes
/// out in several frames: a send dropped midway still sends every frame.
#[tokio::test]
async fn dropped_websocket_sends_keep_every_message_whole() {
    dropped_sends_keep_the_stream_whole(StackId::Ws).await;
}

/// `SendFuture::answer_now`: the outcome when it was known at `send` (the
/// stack took the Message, or refused it), else the future back, which
/// still resolves once the stack takes the Message.
#[tokio::test]
async fn answer_now_gives_the_outcome_known_at_send() {
    let (listener, client) = connect(
        StackId::Tcp,
        SecurityParameters::disabled(),
        SecurityParameters::disabled(),
    )
    .await;

    // Taken at once.
    let sent = match client.send_message(b"small".to_vec()).answer_now() {
        Ok(outcome) => outcome.expect("sent"),
        Err(_) => panic!("an empty socket buffer takes 9 bytes at once"),
    };
    assert_eq!(sent.sequence, 0);
    // Refused at once, with its reason.
    let ctx = postsocket::MessageContext::new()
        .with("msgChecksumLen", 4u64)
        .unwrap();
    match client.send(b"x".to_vec(), Some(ctx), true).answer_now() {
        Ok(Err(e)) => assert!(e.to_string().contains("msgChecksumLen"), "{e}"),
        other => panic!("expected a refusal now, got {other:?}"),
    }

    // With the receiver stalled the socket fills: a send then has to wait.
    let mut waiting = Vec::new();
    for i in 1..=STALLED {
        match client.send_message(message(i)).answer_now() {
            Ok(outcome) => {
                outcome.expect("sent");
            }
            Err(fut) => waiting.push(fut),
        }
    }
    assert!(!waiting.is_empty(), "no send had to wait for the socket");
    let reader = tokio::spawn(async move {
        let server = listener.accept().await.expect("accept");
        for _ in 0..=STALLED {
            server.receive().await.expect("receive");
        }
    });
    for fut in waiting {
        tokio::time::timeout(Duration::from_secs(20), fut)
            .await
            .expect("a waiting send finished")
            .expect("a waiting send succeeded");
    }
    tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the receiver got every Message")
        .expect("reader task");
}
