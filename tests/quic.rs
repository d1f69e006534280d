//! QUIC over loopback with real handshakes: a Connection is a stream, Clone is
//! a new stream on the same QUIC connection, datagrams keep boundaries, group
//! close and abort, and QUIC raced against TLS over TCP.
// Native only (sockets, tokio, proptest): the browser tests are tests/browser_*.rs.
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

mod common;

use common::{
    framed_listener_pre as listener_pre, pinned, received_connections, recv, self_signed,
    server_security, Cert,
};
use postsocket::framer::LengthPrefixFramer;
use postsocket::{
    Connection, ConnectionEvent, ErrorReason, ListenerEvent, MessageContext, Preconnection,
    ReceiveEvent, RemoteEndpoint, SecurityParameters, StackId, TraceEventKind as K,
    TransportContext, TransportProperties,
};
use std::net::SocketAddr;
use std::time::Duration;

fn client(addr: SocketAddr, sec: SecurityParameters) -> Preconnection {
    let remote = RemoteEndpoint::new().with_socket_addr(addr).unwrap();
    let mut pre = Preconnection::new(vec![], vec![remote], TransportProperties::new(), sec);
    pre.add_framer(LengthPrefixFramer::new());
    pre
}

/// A QUIC Listener that hands each received Connection to the test.
async fn quic_listener(c: &Cert) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Connection>) {
    let l = listener_pre(server_security(c), vec![StackId::Quic])
        .listen()
        .await
        .unwrap();
    (l.local_addr(), received_connections(l, true))
}

#[tokio::test]
async fn quic_echo_with_a_pinned_certificate() {
    let cert = self_signed();
    let (addr, mut incoming) = quic_listener(&cert).await;
    let conn = client(addr, pinned(&cert)).initiate().await.unwrap();
    assert_eq!(conn.stack(), StackId::Quic);
    conn.send_message("hello quic").await.unwrap();
    let server = incoming.recv().await.unwrap();
    assert_eq!(server.stack(), StackId::Quic);
    assert_eq!(recv(&server).await, b"hello quic");
    server.send_message(vec![9u8; 200_000]).await.unwrap();
    assert_eq!(recv(&conn).await, vec![9u8; 200_000]);
    conn.close().await.unwrap();
    // The peer sees the stream end.
    assert!(
        tokio::time::timeout(Duration::from_secs(5), server.receive())
            .await
            .unwrap()
            .is_err()
    );
}

#[tokio::test]
async fn clone_is_a_new_stream_on_the_same_quic_connection() {
    let cert = self_signed();
    let (addr, mut incoming) = quic_listener(&cert).await;
    let conn = client(addr, pinned(&cert)).initiate().await.unwrap();
    conn.send_message("first stream").await.unwrap();
    let s1 = incoming.recv().await.unwrap();
    assert_eq!(recv(&s1).await, b"first stream");
    let clone = conn.clone_in_group(None, None).await.unwrap();
    assert_eq!(clone.stack(), StackId::Quic);
    assert_eq!(conn.grouped_connections().len(), 2);
    clone.send_message("second stream").await.unwrap();
    let s2 = incoming.recv().await.unwrap();
    assert_eq!(recv(&s2).await, b"second stream");
    // The peer's view: the same QUIC connection (same client address), one group.
    assert_eq!(s1.remote_addr(), s2.remote_addr());
    assert_eq!(s2.grouped_connections().len(), 2);
    s2.send_message("reply on 2").await.unwrap();
    assert_eq!(recv(&clone).await, b"reply on 2");
    // CloseGroup: every stream finishes, then the QUIC connection closes.
    conn.close_group().await.unwrap();
    assert!(conn.grouped_connections().is_empty());
    for s in [&s1, &s2] {
        let r = tokio::time::timeout(Duration::from_secs(5), s.receive())
            .await
            .unwrap();
        assert!(r.is_err(), "{r:?}");
    }
}

#[tokio::test]
async fn unreliable_messages_go_as_datagrams_with_boundaries() {
    let cert = self_signed();
    let (addr, mut incoming) = quic_listener(&cert).await;
    let conn = client(addr, pinned(&cert)).initiate().await.unwrap();
    conn.send_message("open the stream").await.unwrap();
    let server = incoming.recv().await.unwrap();
    assert_eq!(recv(&server).await, b"open the stream");
    for m in [&b"dgram one"[..], b"two", b""] {
        let ctx = MessageContext::new().with("msgReliable", false).unwrap();
        conn.send(m.to_vec(), Some(ctx), true).await.unwrap();
        // Loopback does not lose these; each arrives whole, as its own Message.
        match tokio::time::timeout(Duration::from_secs(5), server.receive())
            .await
            .unwrap()
            .unwrap()
        {
            ReceiveEvent::Received { data, .. } => assert_eq!(data, m),
            other => panic!("expected a whole Message, got {other:?}"),
        }
    }
    // Too large for one datagram: MessageTooLarge, nothing silently split.
    let ctx = MessageContext::new().with("msgReliable", false).unwrap();
    let err = conn.send(vec![0; 5000], Some(ctx), true).await.unwrap_err();
    assert_eq!(err.reason(), ErrorReason::MessageTooLarge);
    // Over the receiver's recvMsgMaxLen: that datagram is dropped, saying
    // so, and the next one arrives (it was delivered whatever the bound).
    server.set_property("recvMsgMaxLen", 100u64).unwrap();
    for m in [vec![1u8; 1000], vec![2u8; 10]] {
        let ctx = MessageContext::new().with("msgReliable", false).unwrap();
        conn.send(m, Some(ctx), true).await.unwrap();
    }
    let e = tokio::time::timeout(Duration::from_secs(5), server.receive())
        .await
        .unwrap()
        .expect_err("over recvMsgMaxLen");
    assert_eq!(e.error.reason, ErrorReason::MessageTooLarge, "{e}");
    assert_eq!(recv(&server).await, vec![2u8; 10]);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn abort_group_closes_the_quic_connection_at_once() {
    let cert = self_signed();
    let (addr, mut incoming) = quic_listener(&cert).await;
    let conn = client(addr, pinned(&cert)).initiate().await.unwrap();
    conn.send_message("x").await.unwrap();
    let server = incoming.recv().await.unwrap();
    assert_eq!(recv(&server).await, b"x");
    conn.abort_group();
    assert!(matches!(
        conn.next_event().await,
        Some(ConnectionEvent::ConnectionError(_))
    ));
    let r = tokio::time::timeout(Duration::from_secs(5), server.receive())
        .await
        .unwrap();
    let e = r.unwrap_err();
    assert_eq!(e.error.reason, ErrorReason::ConnectionAborted, "{e}");
}

#[tokio::test]
async fn quic_is_raced_first_and_tls_wins_when_udp_is_blackholed() {
    let cert = self_signed();
    // TLS over TCP on port P, and a UDP socket on P that never answers.
    let (tls, udp) = loop {
        let l = listener_pre(server_security(&cert), vec![StackId::Tls])
            .listen()
            .await
            .unwrap();
        if let Ok(u) = std::net::UdpSocket::bind(l.local_addr()) {
            break (l, u);
        }
    };
    let addr = tls.local_addr();
    tokio::spawn(async move {
        while let Ok(c) = tls.accept().await {
            tokio::spawn(async move {
                while let Ok(m) = c.receive().await {
                    let _ = c.send(m.into_data(), None, true).await;
                }
            });
        }
    });
    let mut pre = client(addr, pinned(&cert));
    pre.set_connection_attempt_delay(Duration::from_millis(100));
    let conn = pre.initiate().await.unwrap();
    assert_eq!(conn.stack(), StackId::Tls);
    let t = conn.trace();
    assert_eq!(
        t.candidate("1.1").unwrap().stack.as_deref(),
        Some("quic"),
        "{}",
        t.timeline()
    );
    assert_eq!(
        t.candidate("1.2").unwrap().stack.as_deref(),
        Some("tls"),
        "{}",
        t.timeline()
    );
    let quic_start = t.find(K::AttemptStarted, "1.1.1").unwrap().t_ms;
    let tls_start = t.find(K::AttemptStarted, "1.2.1").unwrap().t_ms;
    assert!(quic_start < 50.0, "{}", t.timeline());
    assert!(
        (100.0..1000.0).contains(&tls_start),
        "one attempt delay later:\n{}",
        t.timeline()
    );
    assert!(
        t.find(K::AttemptCancelled, "1.1.1").is_some(),
        "{}",
        t.timeline()
    );
    conn.send_message("via tls").await.unwrap();
    assert_eq!(recv(&conn).await, b"via tls");
    conn.close().await.unwrap();
    drop(udp);
}

#[tokio::test]
async fn both_stacks_failing_report_both_reasons() {
    let cert = self_signed();
    let other = self_signed();
    let l = listener_pre(server_security(&cert), vec![StackId::Quic, StackId::Tls])
        .listen()
        .await
        .unwrap();
    let addr = l.local_addr();
    tokio::spawn(async move {
        loop {
            if let ListenerEvent::Stopped = l.next_event().await {
                return;
            }
        }
    });
    // Pinned to another certificate: both QUIC and TLS refuse the server.
    let err = client(addr, pinned(&other)).initiate().await.unwrap_err();
    assert_eq!(err.reason, ErrorReason::EstablishmentFailed, "{err}");
    let stacks: Vec<_> = err
        .candidates
        .iter()
        .map(|c| c.stack.clone().unwrap())
        .collect();
    assert_eq!(stacks, vec!["quic", "tls"], "{err}");
    for c in &err.candidates {
        assert!(c.message.to_lowercase().contains("pin"), "{c}");
        // The words, not a Debug dump of them.
        assert!(!c.message.contains("Msg("), "{c}");
        assert!(!c.message.contains("\\\""), "{c}");
    }
    // Each candidate's source chain reaches its stack's own error, typed:
    // quinn's for QUIC, rustls' for TLS.
    let quic = common::in_source_chain::<quinn::ConnectionError>(&err.candidates[0]);
    assert!(
        matches!(quic, Some(quinn::ConnectionError::TransportError(_))),
        "{quic:?}"
    );
    let tls = common::in_source_chain::<rustls::Error>(&err.candidates[1]);
    assert!(
        matches!(tls, Some(rustls::Error::InvalidCertificate(_))),
        "{tls:?}"
    );
}

#[tokio::test]
async fn quic_needs_tls13() {
    let mut sec = SecurityParameters::new();
    sec.set("allowedSecurityProtocols", &["tls1.2"]).unwrap();
    let mut pre = client("127.0.0.1:9".parse().unwrap(), sec);
    pre.set_protocols(vec![StackId::Quic]);
    let err = pre.initiate().await.unwrap_err();
    assert_eq!(err.reason, ErrorReason::NoCandidates);
    assert!(err.to_string().contains("TLS 1.3"), "{err}");
}

#[tokio::test]
async fn zero_rtt_with_a_ticket_and_a_full_handshake_without() {
    let cert = self_signed();
    let (addr, mut incoming) = quic_listener(&cert).await;
    let sec = pinned(&cert);
    // A first Connection: a full handshake, which leaves a session ticket.
    let first = client(addr, sec.clone()).initiate().await.unwrap();
    first.send_message("warm up").await.unwrap();
    let s1 = incoming.recv().await.unwrap();
    let m1 = s1.receive().await.unwrap();
    assert_eq!(m1.data(), b"warm up");
    assert!(!m1.context().is_early_data());
    // A reply read back means the tickets the server sent after the handshake arrived too.
    s1.send_message("ack").await.unwrap();
    assert_eq!(recv(&first).await, b"ack");
    first.close().await.unwrap();

    // With the ticket, a safelyReplayable first Message goes as 0-RTT.
    let ctx = MessageContext::new()
        .with("safelyReplayable", true)
        .unwrap();
    let (conn, sent) = client(addr, sec.clone())
        .initiate_with_send(b"early hello".to_vec(), Some(ctx))
        .await
        .unwrap();
    assert_eq!(sent.unwrap().sequence, 0);
    let s2 = incoming.recv().await.unwrap();
    let m2 = s2.receive().await.unwrap();
    assert_eq!(m2.data(), b"early hello");
    assert!(
        m2.context().is_early_data(),
        "the receiver sees the early-data flag"
    );
    assert_eq!(conn.send_message("after").await.unwrap().sequence, 1);
    assert_eq!(
        recv(&s2).await,
        b"after",
        "the early Message was delivered once"
    );
    conn.close().await.unwrap();

    // Without a ticket (no session cache): a full handshake, delivered once, not early.
    let mut no_cache = pinned(&cert);
    no_cache.max_cached_sessions = Some(0);
    let ctx = MessageContext::new()
        .with("safelyReplayable", true)
        .unwrap();
    let (conn, sent) = client(addr, no_cache)
        .initiate_with_send(b"late hello".to_vec(), Some(ctx))
        .await
        .unwrap();
    assert_eq!(sent.unwrap().sequence, 0);
    let s3 = incoming.recv().await.unwrap();
    let m3 = s3.receive().await.unwrap();
    assert_eq!(m3.data(), b"late hello");
    assert!(!m3.context().is_early_data());
    conn.send_message("next").await.unwrap();
    assert_eq!(
        recv(&s3).await,
        b"next",
        "no second copy of the first Message"
    );

    // Not safelyReplayable: never early, even with a ticket.
    let (conn, _) = client(addr, sec)
        .initiate_with_send(b"careful".to_vec(), None)
        .await
        .unwrap();
    let s4 = incoming.recv().await.unwrap();
    let m4 = s4.receive().await.unwrap();
    assert_eq!(m4.data(), b"careful");
    assert!(!m4.context().is_early_data());
    conn.close().await.unwrap();
}

/// A first Connection of `pre`: a full handshake whose tickets arrive
/// (the server's reply is read back).
async fn warm_up(
    pre: &Preconnection,
    incoming: &mut tokio::sync::mpsc::UnboundedReceiver<Connection>,
) {
    let first = pre.initiate().await.unwrap();
    first.send_message("warm up").await.unwrap();
    let s = incoming.recv().await.unwrap();
    assert!(!s.receive().await.unwrap().context().is_early_data());
    s.send_message("ack").await.unwrap();
    assert_eq!(recv(&first).await, b"ack");
    first.close().await.unwrap();
}

/// Whether `pre`'s safelyReplayable first Message arrives as 0-RTT.
async fn goes_early(
    pre: &Preconnection,
    incoming: &mut tokio::sync::mpsc::UnboundedReceiver<Connection>,
) -> bool {
    let ctx = MessageContext::new()
        .with("safelyReplayable", true)
        .unwrap();
    let (conn, _) = pre
        .initiate_with_send(b"early?".to_vec(), Some(ctx))
        .await
        .unwrap();
    let s = incoming.recv().await.unwrap();
    let m = s.receive().await.unwrap();
    assert_eq!(m.data(), b"early?");
    conn.close().await.unwrap();
    m.context().is_early_data()
}

#[tokio::test]
async fn session_tickets_belong_to_the_transport_context() {
    let cert = self_signed();
    let (addr, mut incoming) = quic_listener(&cert).await;
    let with = |ctx: &TransportContext, props: TransportProperties| {
        let mut p = client(addr, pinned(&cert));
        *p.transport_properties_mut() = props;
        p.set_transport_context(ctx.clone());
        p
    };
    let a = TransportContext::new();
    warm_up(&with(&a, TransportProperties::new()), &mut incoming).await;
    // The same context resumes, so its first Message goes as 0-RTT ...
    assert!(goes_early(&with(&a, TransportProperties::new()), &mut incoming).await);
    // ... another context has no ticket of this server ...
    let b = TransportContext::new();
    assert!(!goes_early(&with(&b, TransportProperties::new()), &mut incoming).await);
    // ... and isolateSession uses none, even within the same context.
    let mut isolated = TransportProperties::new();
    isolated.set("isolateSession", true).unwrap();
    assert!(!goes_early(&with(&a, isolated.clone()), &mut incoming).await);
    // Nor does one isolated Connection resume another's session.
    warm_up(&with(&a, isolated.clone()), &mut incoming).await;
    assert!(!goes_early(&with(&a, isolated), &mut incoming).await);
}

#[tokio::test]
async fn direction_selects_unidirectional_streams() {
    let cert = self_signed();
    let (addr, mut incoming) = quic_listener(&cert).await;
    let mut pre = client(addr, pinned(&cert));
    pre.transport_properties_mut()
        .set("direction", "unidirectionalSend")
        .unwrap();
    let conn = pre.initiate().await.unwrap();
    assert_eq!(conn.stack(), StackId::Quic);
    assert!(conn.can_send() && !conn.can_receive());
    conn.send_message("one way").await.unwrap();
    let server = incoming.recv().await.unwrap();
    assert!(
        server.can_receive() && !server.can_send(),
        "the peer's stream is receive-only here"
    );
    assert_eq!(recv(&server).await, b"one way");
    let err = server.send_message("back?").await.unwrap_err();
    assert_eq!(err.reason(), ErrorReason::InvalidConfiguration, "{err}");
    // Clone keeps the direction: another send-only stream.
    let clone = conn.clone_in_group(None, None).await.unwrap();
    assert!(!clone.can_receive());
    clone.send_message("two").await.unwrap();
    assert_eq!(recv(&incoming.recv().await.unwrap()).await, b"two");
    conn.close_group().await.unwrap();

    // A receive-only stream cannot be initiated: the peer opens those.
    let mut pre = client(addr, pinned(&cert));
    pre.set_protocols(vec![StackId::Quic]);
    pre.transport_properties_mut()
        .set("direction", "unidirectionalReceive")
        .unwrap();
    let err = pre.initiate().await.unwrap_err();
    assert!(err.to_string().contains("receive-only"), "{err}");
}

#[tokio::test]
async fn tls_early_data_with_a_ticket() {
    let cert = self_signed();
    let l = listener_pre(server_security(&cert), vec![StackId::Tls])
        .listen()
        .await
        .unwrap();
    let addr = l.local_addr();
    let (tx, mut incoming) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(c) = l.accept().await {
            if tx.send(c).is_err() {
                return;
            }
        }
    });
    let tls_client = |sec: SecurityParameters| {
        let mut pre = client(addr, sec);
        pre.set_protocols(vec![StackId::Tls]);
        pre
    };
    let sec = pinned(&cert);
    // A full handshake first; reading a reply makes sure its ticket arrived.
    let first = tls_client(sec.clone()).initiate().await.unwrap();
    first.send_message("warm up").await.unwrap();
    let s1 = incoming.recv().await.unwrap();
    let m1 = s1.receive().await.unwrap();
    assert!(!m1.context().is_early_data());
    s1.send_message("ack").await.unwrap();
    assert_eq!(recv(&first).await, b"ack");
    first.close().await.unwrap();
    // Resumed: the safelyReplayable first Message goes as TLS 1.3 early data.
    let ctx = MessageContext::new()
        .with("safelyReplayable", true)
        .unwrap();
    let (conn, sent) = tls_client(sec)
        .initiate_with_send(b"early over tls".to_vec(), Some(ctx))
        .await
        .unwrap();
    assert_eq!(conn.stack(), StackId::Tls);
    assert_eq!(sent.unwrap().sequence, 0);
    let s2 = incoming.recv().await.unwrap();
    let m2 = s2.receive().await.unwrap();
    assert_eq!(m2.data(), b"early over tls");
    assert!(
        m2.context().is_early_data(),
        "the receiver sees the early-data flag"
    );
    conn.send_message("after").await.unwrap();
    assert_eq!(recv(&s2).await, b"after", "delivered once");
    conn.close().await.unwrap();

    // A first Message over the application's sendMsgMaxLen is refused as a
    // send would refuse it, with or without a ticket (it went as early
    // data, past the bound).
    let mut pre = tls_client(pinned(&cert));
    pre.transport_properties_mut()
        .set("sendMsgMaxLen", 10u64)
        .unwrap();
    let ctx = MessageContext::new()
        .with("safelyReplayable", true)
        .unwrap();
    let (conn, sent) = pre
        .initiate_with_send(vec![7u8; 100], Some(ctx))
        .await
        .unwrap();
    let e = sent.expect_err("over sendMsgMaxLen");
    assert_eq!(e.reason(), ErrorReason::MessageTooLarge, "{e}");
    conn.send_message("within").await.unwrap();
    let s3 = incoming.recv().await.unwrap();
    assert_eq!(recv(&s3).await, b"within", "nothing went before it");
}

/// A UDP relay in front of a QUIC client: what the client sends goes to
/// `server` from the relay's own socket; what the server answers is counted
/// (its Retry packets: long header, type 3, first byte 0b1111xxxx) and, with
/// `answer`, passed back. Without `answer` the relay is a spoofed source: it
/// never sees the server's answers. Ends after 20 s.
async fn relay(
    server: SocketAddr,
    answer: bool,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::Ordering;
    let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    let retries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = retries.clone();
    tokio::spawn(async move {
        let (mut a, mut b) = ([0u8; 2048], [0u8; 2048]);
        let mut client = None;
        let end = tokio::time::sleep(Duration::from_secs(20));
        tokio::pin!(end);
        loop {
            tokio::select! {
                r = front.recv_from(&mut a) => {
                    let Ok((n, from)) = r else { return };
                    client = Some(from);
                    let _ = back.send_to(&a[..n], server).await;
                }
                r = back.recv_from(&mut b) => {
                    let Ok((n, _)) = r else { return };
                    if n > 0 && b[0] & 0xF0 == 0xF0 {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    if let (true, Some(c)) = (answer, client) {
                        let _ = front.send_to(&b[..n], c).await;
                    }
                }
                _ = &mut end => return,
            }
        }
    });
    (addr, retries)
}

/// `n` plain quinn clients behind relays that never pass the server's
/// answers back (spoofed sources), started 20 ms apart (so the first ones
/// are accepted first), each with its relay's count of Retries.
async fn spoofed_sources(
    server: SocketAddr,
    cert: &Cert,
    n: usize,
) -> Vec<(
    quinn::Endpoint,
    quinn::Connecting,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
)> {
    let mut spoofed = Vec::new();
    for _ in 0..n {
        let (addr, retries) = relay(server, false).await;
        let ep = common::quinn_client(&cert.pem);
        let connecting = ep.connect(addr, "localhost").unwrap();
        spoofed.push((ep, connecting, retries));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    spoofed
}

/// How many of `spoofed` were answered with a Retry, once `want` were or
/// after 2 s.
async fn retried(
    spoofed: &[(
        quinn::Endpoint,
        quinn::Connecting,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
    )],
    want: usize,
) -> usize {
    let count = || {
        spoofed
            .iter()
            .filter(|(_, _, r)| r.load(std::sync::atomic::Ordering::SeqCst) > 0)
            .count()
    };
    for _ in 0..100 {
        if count() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    count()
}

/// Address validation under load (RFC 9000 §8.1): with
/// `quic_retry_above(4)`, 12 spoofed sources (their handshakes never
/// complete) get handshake state for the first 4 only; the other 8 are
/// answered with a Retry they never see, which costs the Listener nothing.
/// A real client, answered with a Retry too, still connects. The peers are
/// plain quinn clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unvalidated_initials_past_the_threshold_get_a_retry() {
    use std::sync::atomic::Ordering;
    let cert = self_signed();
    let mut pre = listener_pre(server_security(&cert), vec![StackId::Quic]);
    pre.set_listener_limits(postsocket::ListenerLimits::default().with_quic_retry_above(4));
    let l = pre.listen().await.unwrap();
    let server = l.local_addr();
    let mut rx = received_connections(l, false);
    let spoofed = spoofed_sources(server, &cert, 12).await;
    assert_eq!(
        retried(&spoofed, 8).await,
        8,
        "12 spoofed sources, Retry past 4 unvalidated handshakes"
    );
    // A real client behind a relay that passes answers back.
    let (addr, retries) = relay(server, true).await;
    let ep = common::quinn_client(&cert.pem);
    let conn = tokio::time::timeout(
        Duration::from_secs(5),
        ep.connect(addr, "localhost").unwrap(),
    )
    .await
    .expect("a real client connects within 5 s")
    .expect("its handshake succeeds after the Retry");
    assert!(
        retries.load(Ordering::SeqCst) >= 1,
        "it was asked to validate its address"
    );
    says_hi(&conn, &mut rx).await;
}

/// `conn`, a plain quinn client's, opens a stream and sends one Message,
/// "hi": the Listener's next Connection (within 5 s) receives it.
async fn says_hi(
    conn: &quinn::Connection,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<postsocket::Connection>,
) {
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&[0, 0, 0, 2, b'h', b'i']).await.unwrap();
    let received = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a Connection within 5 s")
        .unwrap();
    assert_eq!(recv(&received).await, b"hi");
}

/// A handshake that never completes is ended at the Listener's handshake
/// timeout even though the Listener could use the connection in 0.5-RTT
/// before: a plain quinn client behind a relay that never passes the
/// server's answers back (a spoofed source) is closed after 300 ms and
/// reported as an EstablishmentError naming it and the time, while a real
/// client is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_never_completes_ends_at_the_handshake_timeout() {
    let cert = self_signed();
    let mut pre = listener_pre(server_security(&cert), vec![StackId::Quic]);
    pre.set_listener_limits(
        postsocket::ListenerLimits::default().with_handshake_timeout(Duration::from_millis(300)),
    );
    let l = pre.listen().await.unwrap();
    let server = l.local_addr();
    let (mut conns, mut errors) = common::listener_events(l);
    let (spoofed, _) = relay(server, false).await;
    let ep = common::quinn_client(&cert.pem);
    let _never = ep.connect(spoofed, "localhost").unwrap();
    // A real client is served meanwhile.
    let real = common::quinn_client(&cert.pem);
    let conn = real.connect(server, "localhost").unwrap().await.unwrap();
    says_hi(&conn, &mut conns).await;
    let e = tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .expect("a report within 5 s")
        .unwrap();
    assert!(
        e.contains("QUIC handshake from") && e.contains("not complete after 300 ms"),
        "{e}"
    );
}

/// QUIC address-validation tokens (NEW_TOKEN, RFC 9000 §8.1.3) are scoped
/// like session tickets. The peer is a plain quinn server that answers
/// every Initial without a valid token with a Retry, and counts them: a
/// second connect of the same TransportContext presents the token the first
/// one was given and is not retried; another context, and isolateSession
/// (twice: an isolated Connection keeps no token either), are.
#[tokio::test]
async fn quic_tokens_belong_to_the_transport_context() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let cert = self_signed();
    let ep = common::quinn_server(&cert.pem, &cert.key);
    let addr = ep.local_addr().unwrap();
    let retries = Arc::new(AtomicUsize::new(0));
    let counted = retries.clone();
    tokio::spawn(async move {
        while let Some(incoming) = ep.accept().await {
            if !incoming.remote_address_validated() {
                counted.fetch_add(1, Ordering::SeqCst);
                incoming.retry().unwrap();
                continue;
            }
            tokio::spawn(async move {
                let conn = incoming.await.unwrap();
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut recv, &mut send).await;
                        let _ = send.finish();
                    });
                }
            });
        }
    });
    // One Connection: a Message echoed (by then the server's NEW_TOKEN
    // frames, sent with its first 1-RTT packets, have arrived), then closed.
    let echo = |ctx: &TransportContext, isolated: bool| {
        let mut pre = client(addr, pinned(&cert));
        pre.set_protocols(vec![StackId::Quic]);
        pre.set_transport_context(ctx.clone());
        pre.transport_properties_mut()
            .set("isolateSession", isolated)
            .unwrap();
        async move {
            let conn = pre.initiate().await.unwrap();
            conn.send_message("ping").await.unwrap();
            assert_eq!(recv(&conn).await, b"ping");
            conn.close().await.unwrap();
        }
    };
    let a = TransportContext::new();
    echo(&a, false).await;
    assert_eq!(
        retries.load(Ordering::SeqCst),
        1,
        "a first connect is retried"
    );
    echo(&a, false).await;
    assert_eq!(
        retries.load(Ordering::SeqCst),
        1,
        "the same context presents its token"
    );
    echo(&TransportContext::new(), false).await;
    assert_eq!(
        retries.load(Ordering::SeqCst),
        2,
        "another context has none"
    );
    echo(&a, true).await;
    echo(&a, true).await;
    assert_eq!(
        retries.load(Ordering::SeqCst),
        4,
        "isolateSession neither uses nor keeps tokens"
    );
    echo(&a, false).await;
    assert_eq!(
        retries.load(Ordering::SeqCst),
        4,
        "the context still has a token"
    );
}

/// The Listener side of address-validation tokens: with
/// `quic_retry_above(0)` every unvalidated Initial gets a Retry (counted by
/// a relay in front of the Listener), but a client that connected once
/// presents a NEW_TOKEN token from the Listener next time and is not
/// retried.
#[tokio::test]
async fn a_listener_honours_its_own_tokens() {
    use std::sync::atomic::Ordering;
    let cert = self_signed();
    let mut pre = listener_pre(server_security(&cert), vec![StackId::Quic]);
    pre.set_listener_limits(postsocket::ListenerLimits::default().with_quic_retry_above(0));
    let l = pre.listen().await.unwrap();
    let (addr, retries) = relay(l.local_addr(), true).await;
    let mut rx = received_connections(l, true);
    let ctx = TransportContext::new();
    for (i, expected) in [1, 1, 1].into_iter().enumerate() {
        let mut pre = client(addr, pinned(&cert));
        pre.set_protocols(vec![StackId::Quic]);
        pre.set_transport_context(ctx.clone());
        let conn = pre.initiate().await.unwrap();
        conn.send_message("ping").await.unwrap();
        let server = rx.recv().await.unwrap();
        assert_eq!(recv(&server).await, b"ping");
        server.send_message("pong").await.unwrap();
        assert_eq!(recv(&conn).await, b"pong");
        assert_eq!(retries.load(Ordering::SeqCst), expected, "connect {i}");
        conn.close().await.unwrap();
    }
}

/// A QUIC Listener with `pending_incoming(4)` whose application takes
/// nothing: a QUIC connection keeps its place after its handshake (until
/// its first stream is taken), so of 16 plain quinn clients that each open
/// a stream and send, at most 4 are let in; the others' Initials wait. Then
/// the streams of one connection: each waits for a place before quinn hands
/// it over, so 12 streams opened while the application takes nothing hold
/// the 4 places (a new client is not let in), and all 12 arrive once it
/// takes them (backpressure, not loss). Before, every connection and every
/// stream was queued for the application without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_connections_and_streams_wait_for_places() {
    let cert = self_signed();
    let mut pre = listener_pre(server_security(&cert), vec![StackId::Quic]);
    pre.set_listener_limits(postsocket::ListenerLimits::default().with_pending_incoming(4));
    let l = pre.listen().await.unwrap();
    let server = l.local_addr();
    let ep = common::quinn_client(&cert.pem);
    let mut connected = Vec::new();
    for i in 0..16u8 {
        let Ok(Ok(conn)) = tokio::time::timeout(
            Duration::from_millis(500),
            ep.connect(server, "localhost").unwrap(),
        )
        .await
        else {
            continue;
        };
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(&[0, 0, 0, 1, i]).await.unwrap();
        connected.push((conn, send));
    }
    assert!(
        connected.len() <= 4,
        "{} QUIC connections were let in past 4 places",
        connected.len()
    );
    assert!(!connected.is_empty(), "the first ones are let in");
    // The application takes what is pending: one Connection per client let
    // in, each with its Message.
    let mut got = Vec::new();
    for _ in 0..connected.len() {
        match tokio::time::timeout(Duration::from_secs(5), l.next_event()).await {
            Ok(ListenerEvent::ConnectionReceived(c)) => got.push(recv(&c).await),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got.len(), connected.len());

    // Streams of one connection: 12 opened (each sends its number) while
    // the application takes nothing.
    let (conn, _) = connected.pop().unwrap();
    drop(connected); // the other clients' places come back as they close
    let mut sends = Vec::new();
    for i in 0..12u8 {
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(&[0, 0, 0, 1, 100 + i]).await.unwrap();
        sends.push((send, _recv));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The pending streams hold every place: a new client is not let in.
    let late = common::quinn_client(&cert.pem);
    let refused = tokio::time::timeout(
        Duration::from_millis(500),
        late.connect(server, "localhost").unwrap(),
    )
    .await;
    assert!(
        refused.is_err(),
        "a new QUIC connection was let in while 4 streams held the 4 places"
    );
    // Taken as they come now: all 12 arrive.
    let mut streams = Vec::new();
    while streams.len() < 12 {
        match tokio::time::timeout(Duration::from_secs(5), l.next_event()).await {
            Ok(ListenerEvent::ConnectionReceived(c)) => streams.push(c),
            other => panic!("after {} streams: {other:?}", streams.len()),
        }
    }
    let mut numbers = Vec::new();
    for c in &streams {
        numbers.push(recv(c).await[0]);
    }
    numbers.sort();
    assert_eq!(numbers, (100..112).collect::<Vec<u8>>());
}

/// A QUIC connection that opens no stream holds its place only for the
/// handshake timeout (300 ms here): it then gives the place back, so with
/// one place a real client is served after it; and past as many quiet
/// connections as there are places, one is closed and reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_connection_that_opens_no_stream_gives_its_place_back() {
    let cert = self_signed();
    let mut pre = listener_pre(server_security(&cert), vec![StackId::Quic]);
    pre.set_listener_limits(
        postsocket::ListenerLimits::default()
            .with_pending_incoming(1)
            .with_handshake_timeout(Duration::from_millis(300)),
    );
    let l = pre.listen().await.unwrap();
    let server = l.local_addr();
    let (mut conns, mut errors) = common::listener_events(l);
    let ep = common::quinn_client(&cert.pem);
    let quiet = ep.connect(server, "localhost").unwrap().await.unwrap();
    // The quiet one holds the only place: a second client waits, then is
    // let in once the quiet one gave the place back.
    let second = tokio::time::timeout(
        Duration::from_secs(5),
        ep.connect(server, "localhost").unwrap(),
    )
    .await
    .expect("let in after the quiet one's handshake timeout")
    .unwrap();
    // The second is quiet too: past one quiet connection (one place), it
    // is closed and reported.
    let e = tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .expect("a report within 5 s")
        .unwrap();
    assert!(
        e.contains("no stream opened within 300 ms") && e.contains("closed"),
        "{e}"
    );
    let closed = tokio::time::timeout(Duration::from_secs(5), second.closed())
        .await
        .expect("the second quiet connection is closed");
    assert!(format!("{closed}").contains("no stream opened"), "{closed}");
    // The first, quiet but within the bound, still opens a stream and is
    // served.
    says_hi(&quiet, &mut conns).await;
}

/// While every place is taken, an unvalidated Initial gets a Retry at once
/// (RFC 9000 §8.1), below the `quic_retry_above` threshold too: with one
/// place, held by a handshake that never completes (a spoofed source), 5
/// more spoofed sources are each answered with a Retry, which costs the
/// Listener nothing. Before, their Initials waited in quinn's queue (up to
/// 65,536 of them) until a place came free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_every_place_is_taken_unvalidated_initials_get_a_retry() {
    let cert = self_signed();
    let mut pre = listener_pre(server_security(&cert), vec![StackId::Quic]);
    pre.set_listener_limits(postsocket::ListenerLimits::default().with_pending_incoming(1));
    let l = pre.listen().await.unwrap();
    let server = l.local_addr();
    let _rx = received_connections(l, false);
    let spoofed = spoofed_sources(server, &cert, 6).await;
    assert_eq!(
        retried(&spoofed, 5).await,
        5,
        "one handshake holds the place; the other 5 get a Retry"
    );
}
