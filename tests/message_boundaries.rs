//! Messages stay Messages whichever stack wins (RFC 9622 §6.2.2, §9.1.2): an
//! application that requires `preserveMsgBoundaries` and adds no framer gets
//! a length-prefix framer on every byte-stream stack (TCP, TLS, QUIC,
//! WebTransport streams) instead of losing those stacks from the race, and a
//! Listener with the same properties frames the same way.
// Native only: the browser tests are tests/browser_*.rs.
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

mod common;
use common::{local, pinned, received_connections, self_signed, server_security};
use postsocket::{
    Connection, Preconnection, Preference, ReceiveEvent, RemoteEndpoint, SecurityParameters,
    SelectionProperty, StackId, TransportProperties,
};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The RFC defaults, plus: the application wants Messages.
fn messages() -> TransportProperties {
    let mut p = TransportProperties::new();
    p.set_preference(
        SelectionProperty::PreserveMsgBoundaries,
        Preference::Require,
    );
    p
}

/// Sizes that cross a read, a TLS record and a QUIC packet, and an empty Message.
const SIZES: [usize; 6] = [1, 0, 1_000, 70_000, 3, 300_000];

fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|b| (b * 7 + i) as u8).collect()
}

/// Send every size, then receive each back as one whole Message.
async fn round_trip(conn: &Connection) {
    for (i, len) in SIZES.iter().enumerate() {
        conn.send_message(payload(i, *len)).await.expect("Sent");
    }
    for (i, len) in SIZES.iter().enumerate() {
        let ev = tokio::time::timeout(Duration::from_secs(10), conn.receive())
            .await
            .expect("a Message within 10 s")
            .expect("received");
        match ev {
            ReceiveEvent::Received { data, .. } => {
                assert_eq!(data.len(), *len, "Message {i} on {}", conn.stack());
                assert!(data[..] == payload(i, *len)[..], "Message {i} intact");
            }
            other => panic!(
                "Message {i} on {}: {other:?}, not one whole Message",
                conn.stack()
            ),
        }
    }
}

#[tokio::test]
async fn a_raw_tcp_peer_sees_one_length_prefix_per_message() {
    // The peer is plain tokio: it reads a 4-byte big-endian length and the
    // body, checks it, and answers the same frame back a few bytes at a time.
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (mut s, _) = server.accept().await.unwrap();
        for (i, len) in SIZES.iter().enumerate() {
            let mut head = [0u8; 4];
            s.read_exact(&mut head).await.unwrap();
            assert_eq!(
                u32::from_be_bytes(head) as usize,
                *len,
                "length of Message {i}"
            );
            let mut body = vec![0u8; *len];
            s.read_exact(&mut body).await.unwrap();
            assert!(body == payload(i, *len), "body of Message {i}");
            let mut frame = head.to_vec();
            frame.extend_from_slice(&body);
            for chunk in frame.chunks(5_000) {
                s.write_all(chunk).await.unwrap();
                s.flush().await.unwrap();
            }
        }
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        rest
    });
    let remote = RemoteEndpoint::new().with_socket_addr(addr).unwrap();
    let pre = Preconnection::new(
        vec![],
        vec![remote],
        messages(),
        SecurityParameters::disabled(),
    );
    let conn = pre
        .initiate()
        .await
        .expect("TCP is a candidate once it frames");
    assert_eq!(conn.stack(), StackId::Tcp);
    assert_eq!(conn.send_msg_max_len(), Some(u32::MAX as u64));
    round_trip(&conn).await;
    conn.close().await.unwrap();
    assert!(
        peer.await.unwrap().is_empty(),
        "nothing after the last frame"
    );
}

#[tokio::test]
async fn without_preserve_msg_boundaries_tcp_stays_a_byte_stream() {
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (mut s, _) = server.accept().await.unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        all
    });
    let remote = RemoteEndpoint::new().with_socket_addr(addr).unwrap();
    let pre = Preconnection::new(
        vec![],
        vec![remote],
        TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    let conn = pre.initiate().await.unwrap();
    conn.send_message("abc").await.unwrap();
    conn.close().await.unwrap();
    assert_eq!(peer.await.unwrap(), b"abc", "no framing added");
}

/// A Listener for `stacks` that requires preserveMsgBoundaries and adds no framer.
async fn listener(sec: SecurityParameters, stacks: Vec<StackId>) -> SocketAddr {
    let mut pre = Preconnection::new(vec![local("127.0.0.1:0")], vec![], messages(), sec);
    pre.set_protocols(stacks);
    let l = pre.listen().await.expect("listen");
    let addr = l.local_addr();
    let mut incoming = received_connections(l, true);
    tokio::spawn(async move {
        while let Some(c) = incoming.recv().await {
            tokio::spawn(async move {
                while let Ok(ReceiveEvent::Received { data, .. }) = c.receive().await {
                    if c.send_message(data).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn every_stack_that_wins_carries_the_same_messages() {
    let cert = self_signed();
    let plain = listener(
        SecurityParameters::disabled(),
        vec![StackId::Tcp, StackId::Ws],
    )
    .await;
    let secure = listener(
        server_security(&cert),
        vec![StackId::Tls, StackId::Quic, StackId::Wss, StackId::Wt],
    )
    .await;
    let cases = [
        (StackId::Tcp, plain, SecurityParameters::disabled()),
        (StackId::Ws, plain, SecurityParameters::disabled()),
        (StackId::Tls, secure, pinned(&cert)),
        (StackId::Quic, secure, pinned(&cert)),
        (StackId::Wss, secure, pinned(&cert)),
        (StackId::Wt, secure, pinned(&cert)),
    ];
    for (stack, addr, sec) in cases {
        let remote = RemoteEndpoint::new().with_socket_addr(addr).unwrap();
        let mut pre = Preconnection::new(vec![], vec![remote], messages(), sec);
        pre.set_protocols(vec![stack]);
        let conn = pre
            .initiate()
            .await
            .unwrap_or_else(|e| panic!("{stack}: {e}"));
        assert_eq!(conn.stack(), stack);
        assert_eq!(
            conn.selected(SelectionProperty::PreserveMsgBoundaries),
            Preference::Require,
            "{stack} reports that it keeps boundaries"
        );
        round_trip(&conn).await;
        conn.close().await.unwrap();
    }
}
