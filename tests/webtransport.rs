//! WebTransport (wt) over loopback with real QUIC + HTTP/3 handshakes: a
//! Connection is a stream, Clone is a new stream on the same session,
//! unreliable Messages go as datagrams, unidirectional streams, certificate
//! checks, WebSocket and WebTransport on one Listener port, and WebTransport
//! raced against WebSocket.
// Native only: the browser tests are tests/browser_*.rs.
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

use postsocket::framer::LengthPrefixFramer;
mod common;
use common::{
    framed_listener_pre as listener_pre, pinned, received_connections, recv, self_signed,
    server_security, Cert,
};
use postsocket::{
    Connection, ErrorReason, LocalEndpoint, MessageContext, Preconnection, ReceiveEvent,
    RemoteEndpoint, SecurityParameters, StackId, TraceEventKind as K, TransportProperties,
};
use std::net::SocketAddr;
use std::time::Duration;

fn client(addr: SocketAddr, sec: SecurityParameters, stacks: Vec<StackId>) -> Preconnection {
    let remote = RemoteEndpoint::new().with_socket_addr(addr).unwrap();
    let mut pre = Preconnection::new(vec![], vec![remote], TransportProperties::new(), sec);
    pre.add_framer(LengthPrefixFramer::new());
    pre.set_protocols(stacks);
    pre
}

/// A Listener for `stacks` that hands each received Connection to the test.
async fn listener(
    c: &Cert,
    stacks: Vec<StackId>,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Connection>) {
    let l = listener_pre(server_security(c), stacks)
        .listen()
        .await
        .unwrap();
    (l.local_addr(), received_connections(l, false))
}

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Connection>) -> Connection {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a Connection within 5 s")
        .expect("the listener runs")
}

#[tokio::test]
async fn wt_stream_echo_with_a_pinned_certificate() {
    let cert = self_signed();
    let (addr, mut incoming) = listener(&cert, vec![StackId::Wt]).await;
    let conn = client(addr, pinned(&cert), vec![StackId::Wt])
        .initiate()
        .await
        .unwrap();
    assert_eq!(conn.stack(), StackId::Wt);
    conn.send_message("hello webtransport").await.unwrap();
    let server = next(&mut incoming).await;
    assert_eq!(server.stack(), StackId::Wt);
    assert_eq!(recv(&server).await, b"hello webtransport");
    server.send_message(vec![7u8; 200_000]).await.unwrap();
    assert_eq!(recv(&conn).await, vec![7u8; 200_000]);
    conn.close().await.unwrap();
    // The peer sees the stream end.
    let r = tokio::time::timeout(Duration::from_secs(5), server.receive())
        .await
        .unwrap();
    assert!(r.is_err(), "{r:?}");
}

#[tokio::test]
async fn unreliable_messages_go_as_webtransport_datagrams() {
    let cert = self_signed();
    let (addr, mut incoming) = listener(&cert, vec![StackId::Wt]).await;
    let conn = client(addr, pinned(&cert), vec![StackId::Wt])
        .initiate()
        .await
        .unwrap();
    conn.send_message("open the stream").await.unwrap();
    let server = next(&mut incoming).await;
    assert_eq!(recv(&server).await, b"open the stream");
    for m in [&b"dgram one"[..], b"two"] {
        let ctx = MessageContext::new().with("msgReliable", false).unwrap();
        conn.send(m.to_vec(), Some(ctx), true).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), server.receive())
            .await
            .unwrap()
            .unwrap()
        {
            ReceiveEvent::Received { data, .. } => assert_eq!(data, m),
            other => panic!("expected a whole Message, got {other:?}"),
        }
        // And back: the server's datagram reaches the client's first stream.
        let ctx = MessageContext::new().with("msgReliable", false).unwrap();
        server.send(m.to_vec(), Some(ctx), true).await.unwrap();
        assert_eq!(recv(&conn).await, m);
    }
    let ctx = MessageContext::new().with("msgReliable", false).unwrap();
    let err = conn.send(vec![0; 5000], Some(ctx), true).await.unwrap_err();
    assert_eq!(err.reason(), ErrorReason::MessageTooLarge);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn clone_is_a_new_stream_on_the_same_session() {
    let cert = self_signed();
    let (addr, mut incoming) = listener(&cert, vec![StackId::Wt]).await;
    let conn = client(addr, pinned(&cert), vec![StackId::Wt])
        .initiate()
        .await
        .unwrap();
    conn.send_message("first stream").await.unwrap();
    let s1 = next(&mut incoming).await;
    assert_eq!(recv(&s1).await, b"first stream");
    let clone = conn.clone_in_group(None, None).await.unwrap();
    assert_eq!(clone.stack(), StackId::Wt);
    assert_eq!(conn.grouped_connections().len(), 2);
    clone.send_message("second stream").await.unwrap();
    let s2 = next(&mut incoming).await;
    assert_eq!(recv(&s2).await, b"second stream");
    // The server's view: one session (same client address), one group.
    assert_eq!(s1.remote_addr(), s2.remote_addr());
    assert_eq!(s2.grouped_connections().len(), 2);
    s2.send_message("reply on 2").await.unwrap();
    assert_eq!(recv(&clone).await, b"reply on 2");
    s1.send_message("reply on 1").await.unwrap();
    assert_eq!(recv(&conn).await, b"reply on 1");
    conn.close_group().await.unwrap();
    for s in [&s1, &s2] {
        let r = tokio::time::timeout(Duration::from_secs(5), s.receive())
            .await
            .unwrap();
        assert!(r.is_err(), "{r:?}");
    }
}

#[tokio::test]
async fn direction_selects_unidirectional_streams() {
    let cert = self_signed();
    let (addr, mut incoming) = listener(&cert, vec![StackId::Wt]).await;
    let mut pre = client(addr, pinned(&cert), vec![StackId::Wt]);
    pre.transport_properties_mut()
        .set("direction", "unidirectionalSend")
        .unwrap();
    let conn = pre.initiate().await.unwrap();
    assert_eq!(conn.stack(), StackId::Wt);
    assert!(conn.can_send() && !conn.can_receive());
    conn.send_message("one way").await.unwrap();
    let server = next(&mut incoming).await;
    assert!(server.can_receive() && !server.can_send());
    assert_eq!(recv(&server).await, b"one way");
    let err = server.send_message("back?").await.unwrap_err();
    assert_eq!(err.reason(), ErrorReason::InvalidConfiguration, "{err}");
    let clone = conn.clone_in_group(None, None).await.unwrap();
    assert!(!clone.can_receive());
    clone.send_message("two").await.unwrap();
    assert_eq!(recv(&next(&mut incoming).await).await, b"two");
    conn.close_group().await.unwrap();

    let mut pre = client(addr, pinned(&cert), vec![StackId::Wt]);
    pre.transport_properties_mut()
        .set("direction", "unidirectionalReceive")
        .unwrap();
    let err = pre.initiate().await.unwrap_err();
    assert!(err.to_string().contains("receive-only"), "{err}");
}

#[tokio::test]
async fn a_wrong_certificate_fails_with_a_security_reason() {
    let cert = self_signed();
    let other = self_signed();
    let (addr, _incoming) = listener(&cert, vec![StackId::Wt]).await;
    // Pinned to another certificate.
    let err = client(addr, pinned(&other), vec![StackId::Wt])
        .initiate()
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::EstablishmentFailed, "{err}");
    assert_eq!(err.candidates.len(), 1, "{err}");
    let c = &err.candidates[0];
    assert_eq!(c.stack.as_deref(), Some("wt"));
    assert!(c.message.to_lowercase().contains("pin"), "{c}");
    assert!(
        !c.message.contains("Msg("),
        "the words, not a Debug dump: {c}"
    );
    // No pins and an untrusted self-signed certificate: WebPKI refuses it.
    let err = client(addr, SecurityParameters::new(), vec![StackId::Wt])
        .initiate()
        .await
        .unwrap_err();
    let m = err.candidates[0].message.to_lowercase();
    assert!(m.contains("certificate"), "{err}");
}

#[tokio::test]
async fn wt_path_option_selects_the_session() {
    let cert = self_signed();
    let mut pre = listener_pre(server_security(&cert), vec![StackId::Wt]);
    pre.transport_properties_mut()
        .set("wt.path", "/echo")
        .unwrap();
    let l = pre.listen().await.unwrap();
    let addr = l.local_addr();
    let (mut conns, mut errors) = common::listener_events(l);
    let mut good = client(addr, pinned(&cert), vec![StackId::Wt]);
    good.transport_properties_mut()
        .set("wt.path", "/echo")
        .unwrap();
    let conn = good.initiate().await.unwrap();
    conn.send_message("at /echo").await.unwrap();
    assert_eq!(recv(&next(&mut conns).await).await, b"at /echo");

    let mut bad = client(addr, pinned(&cert), vec![StackId::Wt]);
    bad.transport_properties_mut()
        .set("wt.path", "/other")
        .unwrap();
    let err = bad.initiate().await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    let e = tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(e.contains("/other") && e.contains("/echo"), "{e}");
}

#[tokio::test]
async fn one_listener_serves_ws_wss_wt_and_quic_on_one_port_number() {
    let cert = self_signed();
    // Opportunistic security admits plain ws as well; the certificate serves
    // wss, wt and quic.
    let mut sec = SecurityParameters::opportunistic();
    sec.server_certificate = server_security(&cert).server_certificate;
    let l = listener_pre(
        sec,
        vec![StackId::Wt, StackId::Quic, StackId::Wss, StackId::Ws],
    )
    .listen()
    .await
    .unwrap();
    let addr = l.local_addr();
    for stack in [StackId::Wt, StackId::Quic, StackId::Wss, StackId::Ws] {
        let sec = if stack == StackId::Ws {
            SecurityParameters::disabled()
        } else {
            pinned(&cert)
        };
        let conn = client(addr, sec, vec![stack]).initiate().await.unwrap();
        assert_eq!(conn.stack(), stack);
        conn.send_message(format!("via {stack}")).await.unwrap();
        let server = tokio::time::timeout(Duration::from_secs(5), l.accept())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(server.stack(), stack);
        assert_eq!(recv(&server).await, format!("via {stack}").as_bytes());
        server.send_message("back").await.unwrap();
        assert_eq!(recv(&conn).await, b"back");
        conn.close().await.unwrap();
    }
}

/// A WSS echo Listener on port P and, on UDP port P, a socket that never
/// answers (WebTransport blackholed).
async fn wss_with_blackholed_udp(cert: &Cert) -> (SocketAddr, std::net::UdpSocket) {
    let (l, udp) = loop {
        let l = listener_pre(server_security(cert), vec![StackId::Wss])
            .listen()
            .await
            .unwrap();
        if let Ok(u) = std::net::UdpSocket::bind(l.local_addr()) {
            break (l, u);
        }
    };
    let addr = l.local_addr();
    tokio::spawn(async move {
        while let Ok(c) = l.accept().await {
            tokio::spawn(async move {
                while let Ok(m) = c.receive().await {
                    let _ = c.send(m.into_data(), None, true).await;
                }
            });
        }
    });
    (addr, udp)
}

#[tokio::test]
async fn wt_is_raced_first_and_wss_wins_when_udp_is_blackholed() {
    let cert = self_signed();
    let (addr, udp) = wss_with_blackholed_udp(&cert).await;
    let mut pre = client(addr, pinned(&cert), vec![StackId::Wt, StackId::Wss]);
    pre.set_connection_attempt_delay(Duration::from_millis(100));
    let conn = pre.initiate().await.unwrap();
    assert_eq!(conn.stack(), StackId::Wss);
    let t = conn.trace();
    let tl = t.timeline();
    assert_eq!(
        t.candidate("1.1").unwrap().stack.as_deref(),
        Some("wt"),
        "{tl}"
    );
    assert_eq!(
        t.candidate("1.2").unwrap().stack.as_deref(),
        Some("wss"),
        "{tl}"
    );
    let wt_start = t.find(K::AttemptStarted, "1.1.1").unwrap().t_ms;
    let wss_start = t.find(K::AttemptStarted, "1.2.1").unwrap().t_ms;
    assert!(wt_start < 50.0, "{tl}");
    assert!(
        (100.0..1000.0).contains(&wss_start),
        "one attempt delay later:\n{tl}"
    );
    assert!(t.find(K::AttemptCancelled, "1.1.1").is_some(), "{tl}");
    conn.send_message("via wss").await.unwrap();
    assert_eq!(recv(&conn).await, b"via wss");
    conn.close().await.unwrap();
    drop(udp);
}

#[tokio::test]
async fn wt_with_a_wrong_pin_fails_that_candidate_for_security() {
    let cert = self_signed();
    let other = self_signed();
    // WebTransport serves on UDP P with `cert`; WSS on TCP P with `other`.
    let mut tries = 0;
    let (addr, mut incoming, wss) = loop {
        let (addr, incoming) = listener(&cert, vec![StackId::Wt]).await;
        let local = LocalEndpoint::new().with_socket_addr(addr).unwrap();
        let mut pre = Preconnection::new(
            vec![local],
            vec![],
            TransportProperties::new(),
            server_security(&other),
        );
        pre.add_framer(LengthPrefixFramer::new());
        pre.set_protocols(vec![StackId::Wss]);
        match pre.listen().await {
            Ok(wss) => break (addr, incoming, wss),
            // TCP port P was taken: try another P.
            Err(e) if tries < 20 => {
                tries += 1;
                eprintln!("{e}; trying another port");
            }
            Err(e) => panic!("no port number free for UDP and TCP: {e}"),
        }
    };
    tokio::spawn(async move {
        while let Ok(c) = wss.accept().await {
            tokio::spawn(async move {
                while let Ok(m) = c.receive().await {
                    let _ = c.send(m.into_data(), None, true).await;
                }
            });
        }
    });
    // Pinned to the WSS certificate: the WebTransport candidate fails its
    // certificate check (fast, no timeout), and WSS wins.
    let conn = client(addr, pinned(&other), vec![StackId::Wt, StackId::Wss])
        .initiate()
        .await
        .unwrap();
    assert_eq!(conn.stack(), StackId::Wss);
    let t = conn.trace();
    let tl = t.timeline();
    let failed = t.find(K::AttemptFailed, "1.1.1").expect(&tl);
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap_or("")
            .to_lowercase()
            .contains("pin"),
        "the wt candidate fails for its certificate:\n{tl}"
    );
    conn.send_message("via wss").await.unwrap();
    assert_eq!(recv(&conn).await, b"via wss");
    assert!(incoming.try_recv().is_err());
}

/// The page's WebTransport budget is the browser's (Chromium throttles a
/// page's failed handshakes); natively nothing counts against it, so even a
/// budget of 0, which in the browser always holds WebTransport back, leaves
/// native races alone after failed WebTransport handshakes.
#[tokio::test]
async fn natively_the_webtransport_budget_holds_nothing_back() {
    let cert = self_signed();
    let other = self_signed();
    let (addr, _incoming) = listener(&cert, vec![StackId::Wt]).await;
    postsocket::set_webtransport_budget(0);
    for _ in 0..2 {
        let err = client(addr, pinned(&other), vec![StackId::Wt])
            .initiate()
            .await
            .unwrap_err();
        assert_eq!(err.candidates.len(), 1, "{err}");
    }
    assert_eq!(postsocket::webtransport_budget_spent(), 0);
    let conn = client(addr, pinned(&cert), vec![StackId::Wt])
        .initiate()
        .await
        .unwrap();
    assert_eq!(conn.stack(), StackId::Wt);
    assert!(
        conn.trace().of_kind(K::HeldBack).next().is_none(),
        "nothing held back: {:?}",
        conn.trace()
    );
    postsocket::set_webtransport_budget(postsocket::WEBTRANSPORT_BUDGET);
}

/// A plain web-transport-quinn session to `addr` that opens no stream.
#[cfg(feature = "wt")]
async fn quiet_session(addr: SocketAddr, cert: &Cert) -> web_transport_quinn::Session {
    let ep = common::quinn_client_with_alpn(&cert.pem, web_transport_quinn::ALPN.as_bytes());
    let conn = ep.connect(addr, "localhost").unwrap().await.unwrap();
    let url = url::Url::parse(&format!("https://localhost:{}/", addr.port())).unwrap();
    web_transport_quinn::Session::connect(conn, url)
        .await
        .unwrap()
}

/// A WebTransport session that opens no stream (a plain web-transport-quinn
/// client) holds its place only for the handshake timeout (300 ms here),
/// then gives it back: with one place, a second session is let in after it.
/// Past as many quiet sessions as there are places, one is closed and
/// reported; the first, quiet within the bound, is served when it sends.
#[cfg(feature = "wt")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webtransport_session_that_opens_no_stream_gives_its_place_back() {
    let cert = self_signed();
    let mut pre = listener_pre(server_security(&cert), vec![StackId::Wt]);
    pre.set_listener_limits(
        postsocket::ListenerLimits::default()
            .with_pending_incoming(1)
            .with_handshake_timeout(Duration::from_millis(300)),
    );
    let l = pre.listen().await.unwrap();
    let addr = l.local_addr();
    let (mut conns, mut errors) = common::listener_events(l);
    let quiet = quiet_session(addr, &cert).await;
    let second = tokio::time::timeout(Duration::from_secs(5), quiet_session(addr, &cert))
        .await
        .expect("let in after the quiet one's handshake timeout");
    let e = tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .expect("a report within 5 s")
        .unwrap();
    assert!(
        e.contains("WebTransport session from")
            && e.contains("no stream opened within 300 ms")
            && e.contains("closed"),
        "{e}"
    );
    tokio::time::timeout(Duration::from_secs(5), second.closed())
        .await
        .expect("the second quiet session is closed");
    let (mut send, _recv) = quiet.open_bi().await.unwrap();
    send.write_all(&[0, 0, 0, 2, b'h', b'i']).await.unwrap();
    let served = tokio::time::timeout(Duration::from_secs(5), conns.recv())
        .await
        .expect("a Connection within 5 s")
        .unwrap();
    assert_eq!(recv(&served).await, b"hi");
}
