//! The crate with no stack features, TCP and UDP only:
//! `cargo test --no-default-features --test minimal_build` (the test
//! command runs it). Secure defaults find no stack and say why; a stack
//! asked for by name that is not built says so; Rendezvous is refused
//! naming its feature; plain TCP and UDP work, as clients against plain
//! tokio and std peers and as a Listener. In a build with stacks (the
//! default) this file is empty.
#![cfg(not(any(
    all(target_arch = "wasm32", target_os = "unknown"),
    feature = "tls",
    feature = "ws",
    feature = "webrtc"
)))]

use postsocket::framer::DelimiterFramer;
use postsocket::{
    ErrorReason, HttpSignaling, LocalEndpoint, Preconnection, RemoteEndpoint, SecurityParameters,
    StackId, TransportProperties,
};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn remote(addr: SocketAddr) -> RemoteEndpoint {
    RemoteEndpoint::new().with_socket_addr(addr).unwrap()
}

#[tokio::test]
async fn secure_defaults_find_no_stack_and_say_so() {
    let pre = Preconnection::new(
        vec![],
        vec![remote("127.0.0.1:9".parse().unwrap())],
        TransportProperties::new(),
        SecurityParameters::new(),
    );
    let e = pre.initiate().await.unwrap_err();
    assert_eq!(e.reason, ErrorReason::NoCandidates, "{e}");
    let text = e.to_string();
    assert!(text.contains("tcp") && text.contains("udp"), "{text}");
    assert!(text.contains("cargo features `tls` and `quic`"), "{text}");
}

#[tokio::test]
async fn a_stack_not_built_is_named() {
    let mut pre = Preconnection::new(
        vec![],
        vec![remote("127.0.0.1:9".parse().unwrap())],
        TransportProperties::new(),
        SecurityParameters::new(),
    );
    pre.set_protocols(vec![StackId::Quic]);
    let e = pre.initiate().await.unwrap_err();
    assert_eq!(e.reason, ErrorReason::NoCandidates, "{e}");
    assert!(
        e.to_string().contains("quic stack is not in this build"),
        "{e}"
    );
    let e = pre
        .rendezvous(HttpSignaling::new("http://127.0.0.1:9/offer"))
        .await
        .unwrap_err();
    assert_eq!(e.reason, ErrorReason::NoCandidates, "{e}");
    assert!(e.message.contains("cargo feature `webrtc`"), "{e}");
}

#[tokio::test]
async fn plain_tcp_and_udp_work() {
    // TCP against a plain tokio echo server.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 64];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let mut pre = Preconnection::new(
        vec![],
        vec![remote(addr)],
        TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    pre.add_framer(DelimiterFramer::line());
    let conn = pre.initiate().await.unwrap();
    assert_eq!(conn.stack(), StackId::Tcp);
    conn.send_message("hello").await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), conn.receive())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.into_data()[..], b"hello");
    conn.close().await.unwrap();

    // A Listener on TCP and UDP; a std UDP socket is one of its peers.
    let mut lp = Preconnection::new(
        vec![LocalEndpoint::new()
            .with_socket_addr("127.0.0.1:0".parse().unwrap())
            .unwrap()],
        vec![],
        TransportProperties::unreliable_datagram(),
        SecurityParameters::disabled(),
    );
    lp.set_protocols(vec![StackId::Udp]);
    let listener = lp.listen().await.unwrap();
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.send_to(b"ping", listener.local_addr()).unwrap();
    let c = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.stack(), StackId::Udp);
    let m = c.receive().await.unwrap();
    assert_eq!(&m.into_data()[..], b"ping");
    c.send_message("pong").await.unwrap();
    let mut buf = [0u8; 16];
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (n, _) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"pong");
}
