//! The Message size bounds (RFC 9622 §8.1.11.5–6) an application sets:
//! `recvMsgMaxLen` and `sendMsgMaxLen`, with their defaults, enforced with
//! a clear error, against peers this project did not write (plain tokio
//! TCP and UDP sockets).
// Native only (sockets, tokio): the browser tests are tests/browser_*.rs.
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

mod common;
use common::*;
use postsocket::{ErrorReason, PropertyValue, TransportProperties};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(5);

/// A plain TCP peer: writes `out`, then returns everything it reads.
async fn tcp_peer(out: Vec<u8>) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(&out).await.unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all).await;
        all
    });
    (addr, task)
}

fn framed(len: u32, body: &[u8]) -> Vec<u8> {
    let mut v = len.to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

#[tokio::test]
async fn a_framed_message_over_the_recv_msg_max_len_set_fails_its_receive() {
    // One 1,000-byte Message, then one announcing 2,000 bytes.
    let mut out = framed(1000, &[1; 1000]);
    out.extend(framed(2000, &[2; 16]));
    let (addr, _peer) = tcp_peer(out).await;
    let conn = tcp_length(vec![remote(addr)]).initiate().await.unwrap();
    assert_eq!(
        conn.get("recvMsgMaxLen").unwrap(),
        PropertyValue::Integer(postsocket::RECV_MSG_MAX_LEN as u64),
        "the default"
    );
    conn.set_property("recvMsgMaxLen", 1500u64).unwrap();
    assert_eq!(conn.recv_msg_max_len(), Some(1500));
    let m = tokio::time::timeout(T, conn.receive())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.data().len(), 1000);
    let e = tokio::time::timeout(T, conn.receive())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.error.reason, ErrorReason::DeframingFailed, "{e:?}");
    assert!(
        e.error.message.contains("2000") && e.error.message.contains("recvMsgMaxLen 1500"),
        "{e:?}"
    );
}

#[tokio::test]
async fn send_msg_max_len_set_before_initiate_refuses_longer_messages() {
    let (addr, peer) = tcp_peer(Vec::new()).await;
    let mut props = TransportProperties::new();
    props.connection.set("sendMsgMaxLen", 100u64).unwrap();
    let mut pre = tcp_length(vec![remote(addr)]);
    *pre.transport_properties_mut() = props;
    let conn = pre.initiate().await.unwrap();
    assert_eq!(conn.send_msg_max_len(), Some(100));
    let e = conn.send_message(vec![0u8; 101]).await.unwrap_err();
    assert_eq!(e.reason(), ErrorReason::MessageTooLarge);
    assert!(e.to_string().contains("sendMsgMaxLen 100"), "{e}");
    conn.send_message(vec![7u8; 100]).await.unwrap();
    // `default` goes back to the stack's bound.
    conn.set_property("sendMsgMaxLen", "default").unwrap();
    assert_eq!(conn.send_msg_max_len(), Some(u32::MAX as u64));
    conn.send_message(vec![8u8; 101]).await.unwrap();
    conn.close().await.unwrap();
    let got = tokio::time::timeout(T, peer).await.unwrap().unwrap();
    assert_eq!(
        got,
        [framed(100, &[7; 100]), framed(101, &[8; 101])].concat()
    );
}

#[tokio::test]
async fn bounds_that_cannot_hold_are_refused_and_change_nothing() {
    let (addr, _peer) = tcp_peer(Vec::new()).await;
    // A byte stream without framer: its whole stream is one Message.
    let conn = postsocket::Preconnection::new(
        vec![],
        vec![remote(addr)],
        TransportProperties::new(),
        postsocket::SecurityParameters::disabled(),
    )
    .initiate()
    .await
    .unwrap();
    let e = conn.set_property("recvMsgMaxLen", 10u64).unwrap_err();
    assert_eq!(e.reason, ErrorReason::InvalidConfiguration);
    assert!(e.message.contains("does not apply"), "{e}");
    assert_eq!(conn.recv_msg_max_len(), None);
    let e = conn.set_property("sendMsgMaxLen", 0u64).unwrap_err();
    assert!(e.message.contains("at least 1"), "{e}");
    let e = conn.set_property("sendMsgMaxLen", true).unwrap_err();
    assert_eq!(e.reason, ErrorReason::InvalidConfiguration);
    let e = conn
        .set_property("singularTransmissionMsgMaxLen", 5u64)
        .unwrap_err();
    assert!(e.message.contains("read-only"), "{e}");
}

#[tokio::test]
async fn a_datagram_over_the_recv_msg_max_len_set_is_dropped_with_an_error() {
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = peer.local_addr().unwrap();
    let conn = postsocket::Preconnection::new(
        vec![],
        vec![remote(addr)],
        TransportProperties::unreliable_datagram(),
        postsocket::SecurityParameters::disabled(),
    )
    .initiate()
    .await
    .unwrap();
    // Over UDP's own bound: refused, and nothing changes.
    let e = conn.set_property("sendMsgMaxLen", 70_000u64).unwrap_err();
    assert!(e.message.contains("65507"), "{e}");
    assert_eq!(conn.send_msg_max_len(), Some(65_507));
    conn.set_property("recvMsgMaxLen", 100u64).unwrap();
    conn.send_message("hello").await.unwrap();
    let mut buf = [0u8; 64];
    let (_, me) = peer.recv_from(&mut buf).await.unwrap();
    peer.send_to(&[1; 200], me).await.unwrap();
    peer.send_to(&[2; 50], me).await.unwrap();
    let e = tokio::time::timeout(T, conn.receive())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.error.reason, ErrorReason::MessageTooLarge, "{e:?}");
    assert!(e.error.message.contains("200-byte"), "{e:?}");
    let m = tokio::time::timeout(T, conn.receive())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.data(), &[2; 50][..], "the Connection goes on");
}

/// sendMsgMaxLen bounds a Message sent in parts as a whole, not each part
/// (parts of 900 bytes each went under a bound of 1,000). Behind the length
/// prefix, which holds the parts until the last, nothing of the refused
/// Message went out: it is given up, its held part fails too, and the next
/// Message goes as usual. Behind a delimiter its first part is on the wire
/// already: the Message stays open, to be finished.
#[tokio::test]
async fn send_msg_max_len_bounds_a_message_sent_in_parts() {
    use postsocket::MessageContext;
    let (addr, peer) = tcp_peer(Vec::new()).await;
    let conn = tcp_length(vec![remote(addr)]).initiate().await.unwrap();
    conn.set_property("sendMsgMaxLen", 1000u64).unwrap();
    let ctx = MessageContext::new();
    let held = conn.send(vec![1u8; 900], Some(ctx.clone()), false);
    let e = tokio::time::timeout(T, conn.send(vec![2u8; 900], Some(ctx.clone()), false))
        .await
        .expect("refused at once, not held")
        .unwrap_err();
    assert_eq!(e.reason(), ErrorReason::MessageTooLarge, "{e}");
    assert!(e.to_string().contains("1800 bytes"), "{e}");
    let e = tokio::time::timeout(T, held).await.unwrap().unwrap_err();
    assert_eq!(
        e.reason(),
        ErrorReason::MessageTooLarge,
        "the held part: {e}"
    );
    // A single part over the bound gives its Message up the same way.
    let ctx = MessageContext::new();
    let held = conn.send(vec![4u8; 60], Some(ctx.clone()), false);
    let e = tokio::time::timeout(T, conn.send(vec![5u8; 1500], Some(ctx), true))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.reason(), ErrorReason::MessageTooLarge, "{e}");
    let e = tokio::time::timeout(T, held).await.unwrap().unwrap_err();
    assert_eq!(
        e.reason(),
        ErrorReason::MessageTooLarge,
        "the held part: {e}"
    );
    conn.send_message(vec![3u8; 10]).await.unwrap();
    conn.close().await.unwrap();
    let got = tokio::time::timeout(T, peer).await.unwrap().unwrap();
    assert_eq!(got, framed(10, &[3; 10]), "nothing of the refused Messages");

    let (addr, peer) = tcp_peer(Vec::new()).await;
    let conn = tcp_lines(vec![remote(addr)]).initiate().await.unwrap();
    conn.set_property("sendMsgMaxLen", 1000u64).unwrap();
    let ctx = MessageContext::new();
    conn.send(vec![b'a'; 900], Some(ctx.clone()), false)
        .await
        .unwrap();
    let e = tokio::time::timeout(T, conn.send(vec![b'b'; 900], Some(ctx.clone()), false))
        .await
        .expect("refused at once")
        .unwrap_err();
    assert_eq!(e.reason(), ErrorReason::MessageTooLarge, "{e}");
    let e = conn.send_message(&b"other"[..]).await.unwrap_err();
    assert!(e.to_string().contains("still open"), "{e}");
    // A part refused by the framer leaves the Message as it was: `a…a`
    // then `\n…` is refused, and again when tried again.
    for _ in 0..2 {
        let e = conn
            .send(&b"\nb"[..], Some(ctx.clone()), true)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("delimiter"), "{e}");
    }
    conn.send(&b"z"[..], Some(ctx), true).await.unwrap();
    conn.close().await.unwrap();
    let got = tokio::time::timeout(T, peer).await.unwrap().unwrap();
    assert_eq!(got, [vec![b'a'; 900], b"z\n".to_vec()].concat());
}

/// /proc readers (Linux), shared with the benches that measure memory.
#[cfg(target_os = "linux")]
#[allow(dead_code)]
#[path = "../benches/common/process.rs"]
mod process;

/// A peer's length prefix alone does not make a Listener reserve the body it
/// declares: 100 plain TCP peers each announce a 60 MiB Message (under the
/// default recvMsgMaxLen of 64 MiB), send 40 KiB of it and stall. Reserved
/// up front, that was 6 GiB of address space; now each body's buffer starts
/// at 1 MiB and grows as bytes come. A Message that does come whole
/// (9 MiB and 7 bytes) arrives intact through the growth.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_declared_length_alone_does_not_reserve_the_body() {
    use postsocket::framer::LengthPrefixFramer;
    const PEERS: usize = 100;
    const DECLARED: u32 = 60 * 1024 * 1024;
    let mut pre = listener_pre(TransportProperties::new());
    pre.add_framer(LengthPrefixFramer::new());
    let listener = pre.listen().await.expect("listen");
    let addr = listener.local_addr();
    let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok(c) = listener.accept().await {
            let c = std::sync::Arc::new(c);
            let got_tx = got_tx.clone();
            let r = c.clone();
            tokio::spawn(async move {
                let _ = got_tx.send(r.receive().await.map(|m| m.data().to_vec()));
            });
            conns.push(c);
        }
    });
    let before = process::virtual_size();
    let mut stalled = Vec::new();
    for _ in 0..PEERS {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&framed(DECLARED, &[7; 40 * 1024]))
            .await
            .unwrap();
        stalled.push(s);
    }
    // Every receive has read its 40 KiB and waits for the rest.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = process::virtual_size().saturating_sub(before);
    assert!(
        grown < 2 << 30,
        "{PEERS} declared bodies of {DECLARED} bytes grew the address space by {} MiB",
        grown >> 20
    );
    // A whole Message of 9 MiB and 7 bytes comes through intact.
    let body: Vec<u8> = (0..(9 << 20) + 7).map(|i: u32| (i % 251) as u8).collect();
    let mut whole = tokio::net::TcpStream::connect(addr).await.unwrap();
    whole
        .write_all(&framed(body.len() as u32, &body))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), got_rx.recv())
        .await
        .expect("the whole Message within 30 s")
        .expect("a receive ended")
        .expect("received");
    assert!(got == body, "the 9 MiB Message arrived changed");
    drop(stalled);
    server.abort();
}
