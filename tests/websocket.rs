//! WebSocket (ws, wss) over loopback: message boundaries, the path option,
//! wss with pinned and untrusted certificates, interop with plain
//! tokio-tungstenite peers, and TCP and WebSocket on one Listener port.

#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

mod common;
use common::*;
use futures::{SinkExt, StreamExt};
use postsocket::{
    Connection, ErrorReason, ListenerEvent, Preconnection, ReceiveEvent, SecurityParameters,
    StackId, TransportProperties,
};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(10);

fn props_with_path(path: Option<&str>) -> TransportProperties {
    let mut p = TransportProperties::new();
    if let Some(path) = path {
        p.set("ws.path", path).unwrap();
    }
    p
}

/// A Listener on 127.0.0.1:0 for `stacks`, echoing every Connection; it
/// reports its EstablishmentErrors on the returned channel.
async fn echo_listener(
    props: TransportProperties,
    sec: SecurityParameters,
    stacks: Vec<StackId>,
) -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<postsocket::Error>,
) {
    let mut pre = Preconnection::new(vec![local("127.0.0.1:0")], vec![], props, sec);
    pre.set_protocols(stacks);
    let l = pre.listen().await.unwrap();
    let addr = l.local_addr();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match l.next_event().await {
                ListenerEvent::ConnectionReceived(c) => spawn_echo(c),
                ListenerEvent::EstablishmentError(e) => {
                    let _ = tx.send(e);
                }
                ListenerEvent::Stopped => break,
            }
        }
    });
    (addr, rx)
}

fn client(
    addr: SocketAddr,
    props: TransportProperties,
    sec: SecurityParameters,
    stacks: Vec<StackId>,
) -> Preconnection {
    let mut pre = Preconnection::new(vec![], vec![remote(addr)], props, sec);
    pre.set_protocols(stacks);
    pre
}

async fn recv(conn: &Connection) -> Vec<u8> {
    match tokio::time::timeout(T, conn.receive())
        .await
        .unwrap()
        .unwrap()
    {
        ReceiveEvent::Received { data, .. } => data.into(),
        other => panic!("expected a whole Message, got {other:?}"),
    }
}

fn assert_names(text: &str, what: &[&str]) {
    for w in what {
        assert!(text.contains(w), "error does not name `{w}`: {text}");
    }
}

#[tokio::test]
async fn ws_echo_keeps_message_boundaries() {
    let (addr, _) = echo_listener(
        TransportProperties::new(),
        SecurityParameters::disabled(),
        vec![StackId::Ws],
    )
    .await;
    let conn = client(
        addr,
        TransportProperties::new(),
        SecurityParameters::disabled(),
        vec![StackId::Ws],
    )
    .initiate()
    .await
    .unwrap();
    assert_eq!(conn.stack(), StackId::Ws);
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let msgs = [b"one".to_vec(), Vec::new(), big, b"two two".to_vec()];
    for m in &msgs {
        conn.send(m.clone(), None, true).await.unwrap();
    }
    for m in &msgs {
        let got = recv(&conn).await;
        assert_eq!(got.len(), m.len());
        assert!(got == *m);
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn ws_path_option_selects_the_resource() {
    let (addr, mut errors) = echo_listener(
        props_with_path(Some("/echo")),
        SecurityParameters::disabled(),
        vec![StackId::Ws],
    )
    .await;
    let conn = client(
        addr,
        props_with_path(Some("/echo")),
        SecurityParameters::disabled(),
        vec![StackId::Ws],
    )
    .initiate()
    .await
    .unwrap();
    conn.send_message("at /echo").await.unwrap();
    assert_eq!(recv(&conn).await, b"at /echo");

    let e = client(
        addr,
        props_with_path(Some("/other")),
        SecurityParameters::disabled(),
        vec![StackId::Ws],
    )
    .initiate()
    .await
    .unwrap_err();
    assert_eq!(e.reason, ErrorReason::EstablishmentFailed);
    assert_names(&format!("{e} {:?}", e.candidates), &["/other", "404"]);
    let le = tokio::time::timeout(T, errors.recv())
        .await
        .unwrap()
        .unwrap();
    assert_names(&le.to_string(), &["/other", "/echo", "404"]);

    // The default path is `/`, which this Listener does not serve either.
    let e = client(
        addr,
        TransportProperties::new(),
        SecurityParameters::disabled(),
        vec![StackId::Ws],
    )
    .initiate()
    .await
    .unwrap_err();
    assert_names(
        &format!("{e} {:?}", e.candidates),
        &["ws://127.0.0.1", "404"],
    );
}

#[tokio::test]
async fn wss_with_a_pinned_self_signed_certificate() {
    let cert = self_signed();
    let (addr, _) = echo_listener(
        TransportProperties::new(),
        with_certificate(SecurityParameters::new(), &cert),
        vec![StackId::Wss],
    )
    .await;
    let conn = client(
        addr,
        TransportProperties::new(),
        pinned(&cert),
        vec![StackId::Wss],
    )
    .initiate()
    .await
    .unwrap();
    assert_eq!(conn.stack(), StackId::Wss);
    for m in [b"secure".to_vec(), Vec::new(), vec![7u8; 200_000]] {
        conn.send(m.clone(), None, true).await.unwrap();
        assert!(recv(&conn).await == m);
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn wss_untrusted_fails_and_never_falls_back_to_ws() {
    // One port serving wss (with a certificate the client does not trust)
    // and plain ws: opportunistic security on the Listener.
    let cert = self_signed();
    let (addr, _) = echo_listener(
        TransportProperties::new(),
        with_certificate(SecurityParameters::opportunistic(), &cert),
        vec![StackId::Wss, StackId::Ws],
    )
    .await;
    // Default security: only wss is raced, and it fails verification.
    let e = client(
        addr,
        TransportProperties::new(),
        SecurityParameters::new(),
        vec![StackId::Wss, StackId::Ws],
    )
    .initiate()
    .await
    .unwrap_err();
    assert_eq!(e.reason, ErrorReason::EstablishmentFailed);
    assert!(!e.candidates.is_empty());
    for c in &e.candidates {
        assert_eq!(c.stack.as_deref(), Some("wss"), "{c}");
    }
    assert_names(&format!("{e} {:?}", e.candidates), &["UnknownIssuer"]);
    // Disabled security reaches the same port over plain ws.
    let conn = client(
        addr,
        TransportProperties::new(),
        SecurityParameters::disabled(),
        vec![StackId::Wss, StackId::Ws],
    )
    .initiate()
    .await
    .unwrap();
    assert_eq!(conn.stack(), StackId::Ws);
    conn.send_message("plain").await.unwrap();
    assert_eq!(recv(&conn).await, b"plain");
    // And the pinned certificate reaches it over wss.
    let conn = client(
        addr,
        TransportProperties::new(),
        pinned(&cert),
        vec![StackId::Wss, StackId::Ws],
    )
    .initiate()
    .await
    .unwrap();
    assert_eq!(conn.stack(), StackId::Wss);
    conn.send_message("secure").await.unwrap();
    assert_eq!(recv(&conn).await, b"secure");
}

#[tokio::test]
async fn interop_postsocket_client_with_a_tungstenite_server() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (path_tx, mut path_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        #[allow(clippy::result_large_err)] // tungstenite's error type
        let cb = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
            let _ = path_tx.send(req.uri().path().to_string());
            Ok(resp)
        };
        let mut ws = tokio_tungstenite::accept_hdr_async(s, cb).await.unwrap();
        while let Some(Ok(m)) = ws.next().await {
            match m {
                Message::Binary(b) if &b[..] == b"text please" => {
                    ws.send(Message::text("héllo")).await.unwrap()
                }
                Message::Binary(_) | Message::Text(_) => ws.send(m).await.unwrap(),
                _ => {}
            }
        }
    });
    let conn = client(
        addr,
        props_with_path(Some("/chat")),
        SecurityParameters::disabled(),
        vec![StackId::Ws],
    )
    .initiate()
    .await
    .unwrap();
    assert_eq!(path_rx.recv().await.unwrap(), "/chat");
    conn.send_message("hi").await.unwrap();
    assert_eq!(recv(&conn).await, b"hi");
    conn.send(Vec::new(), None, true).await.unwrap();
    assert_eq!(recv(&conn).await, b"");
    conn.send_message("text please").await.unwrap();
    assert_eq!(recv(&conn).await, "héllo".as_bytes());
    conn.close().await.unwrap();
}

#[tokio::test]
async fn interop_tungstenite_client_with_a_postsocket_listener() {
    let (addr, _) = echo_listener(
        TransportProperties::new(),
        SecurityParameters::disabled(),
        vec![StackId::Ws],
    )
    .await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut ws, resp) =
        tokio_tungstenite::client_async(format!("ws://127.0.0.1:{}/any/path", addr.port()), tcp)
            .await
            .unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::binary(b"bin".to_vec())).await.unwrap();
    ws.send(Message::text("txt")).await.unwrap();
    let a = tokio::time::timeout(T, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let b = tokio::time::timeout(T, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(a, Message::binary(b"bin".to_vec()));
    // Text arrives as its UTF-8 bytes and is echoed as a binary message.
    assert_eq!(b, Message::binary(b"txt".to_vec()));
    ws.close(None).await.unwrap();
    // The postsocket side answers the Close frame.
    loop {
        match tokio::time::timeout(T, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn one_listener_serves_tcp_and_ws_on_one_port() {
    let (addr, _) = echo_listener(
        TransportProperties::new(),
        SecurityParameters::opportunistic(),
        vec![StackId::Tcp, StackId::Ws],
    )
    .await;
    // Plain TCP: bytes through.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"hello tcp").await.unwrap();
    // Without a framer the Message ends with the stream.
    tcp.shutdown().await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(T, tcp.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"hello tcp");
    // WebSocket on the same port.
    let conn = client(
        addr,
        TransportProperties::new(),
        SecurityParameters::disabled(),
        vec![StackId::Ws],
    )
    .initiate()
    .await
    .unwrap();
    assert_eq!(conn.stack(), StackId::Ws);
    conn.send_message("hello ws").await.unwrap();
    assert_eq!(recv(&conn).await, b"hello ws");
}

#[tokio::test]
async fn peer_close_ends_the_receive_side_with_its_code() {
    let mut pre = Preconnection::new(
        vec![local("127.0.0.1:0")],
        vec![],
        TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    pre.set_protocols(vec![StackId::Ws]);
    let l = pre.listen().await.unwrap();
    let addr = l.local_addr();
    let conn = client(
        addr,
        TransportProperties::new(),
        SecurityParameters::disabled(),
        vec![StackId::Ws],
    )
    .initiate()
    .await
    .unwrap();
    let server = tokio::time::timeout(T, l.accept()).await.unwrap().unwrap();
    assert_eq!(server.stack(), StackId::Ws);
    conn.send_message("last").await.unwrap();
    conn.close().await.unwrap();
    assert_eq!(recv(&server).await, b"last");
    let e = tokio::time::timeout(T, server.receive())
        .await
        .unwrap()
        .unwrap_err();
    assert_names(&e.error.to_string(), &["closed the WebSocket", "1000"]);
}

#[tokio::test]
async fn a_final_message_closes_the_websocket_after_it() {
    let mut pre = Preconnection::new(
        vec![local("127.0.0.1:0")],
        vec![],
        TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    pre.set_protocols(vec![StackId::Ws]);
    let l = pre.listen().await.unwrap();
    let conn = client(
        l.local_addr(),
        TransportProperties::new(),
        SecurityParameters::disabled(),
        vec![StackId::Ws],
    )
    .initiate()
    .await
    .unwrap();
    let server = tokio::time::timeout(T, l.accept()).await.unwrap().unwrap();
    let ctx = postsocket::MessageContext::new()
        .with("final", true)
        .unwrap();
    conn.send(b"bye".to_vec(), Some(ctx), true).await.unwrap();
    assert!(!conn.can_send());
    assert_eq!(recv(&server).await, b"bye");
    // The Close frame followed the final Message.
    let e = tokio::time::timeout(T, server.receive())
        .await
        .unwrap()
        .unwrap_err();
    assert_names(&e.error.to_string(), &["closed the WebSocket", "1000"]);
}

/// How many of this process's descriptors refer to the TCP socket from
/// local port `local` to remote port `peer` (found by its inode in
/// /proc/net/tcp and /proc/net/tcp6).
///
/// The kernel writes those tables a hash bucket at a time, so a read taken
/// while other tests open and close sockets may show a row twice or miss
/// it: the inodes are deduplicated, and the tables read again (at most 20
/// times) until the row is there.
#[cfg(target_os = "linux")]
fn descriptors_of(local: u16, peer: u16) -> usize {
    let port = |field: &str| u16::from_str_radix(field.rsplit(':').next().unwrap(), 16).unwrap();
    let mut inodes = std::collections::BTreeSet::new();
    for _ in 0..20 {
        inodes.clear();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text = std::fs::read_to_string(table).unwrap_or_default();
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() > 9 && port(f[1]) == local && port(f[2]) == peer {
                    inodes.insert(format!("socket:[{}]", f[9]));
                }
            }
        }
        if !inodes.is_empty() {
            break;
        }
    }
    assert_eq!(
        inodes.len(),
        1,
        "one socket from port {local} to {peer}: {inodes:?}"
    );
    let inode = inodes.pop_first().unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_str() == Some(inode.as_str()))
        .count()
}

/// A WebSocket Connection holds its socket's one descriptor, no duplicate,
/// on both sides, over ws and wss (a duplicate doubles the descriptors a
/// Listener with many Connections needs).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_websocket_holds_one_descriptor_per_side() {
    let cert = self_signed();
    for (stack, server_sec, client_sec) in [
        (
            StackId::Ws,
            SecurityParameters::disabled(),
            SecurityParameters::disabled(),
        ),
        (
            StackId::Wss,
            with_certificate(SecurityParameters::new(), &cert),
            pinned(&cert),
        ),
    ] {
        let (addr, _) = echo_listener(TransportProperties::new(), server_sec, vec![stack]).await;
        let conn = client(addr, TransportProperties::new(), client_sec, vec![stack])
            .initiate()
            .await
            .unwrap();
        // One round trip: the server's side exists and was handed over.
        conn.send(b"ping".to_vec(), None, true).await.unwrap();
        assert_eq!(recv(&conn).await, b"ping");
        let me = conn.local_addr().unwrap().port();
        assert_eq!(descriptors_of(me, addr.port()), 1, "{stack:?} client");
        assert_eq!(descriptors_of(addr.port(), me), 1, "{stack:?} server");
        // Options and addresses still reach the socket through it.
        assert_eq!(conn.remote_addr(), Some(addr));
        conn.set_property("connCapacityProfile", "lowLatencyInteractive")
            .unwrap();
        conn.close().await.unwrap();
    }
}
