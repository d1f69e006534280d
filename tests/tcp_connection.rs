//! TCP Connections end to end over loopback: postsocket on both sides.
// Native only (sockets, tokio, proptest): the browser tests are tests/browser_*.rs.
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

mod common;
use common::*;
use postsocket::framer::LengthPrefixFramer;
use postsocket::{
    ConnState, ConnectionEvent, ErrorReason, MessageContext, Preconnection, ReceiveEvent,
    SecurityParameters, SendFailure, TransportProperties,
};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn length_listener() -> (postsocket::Listener, std::net::SocketAddr) {
    let mut pre = listener_pre(TransportProperties::new());
    pre.add_framer(LengthPrefixFramer::new());
    let l = pre.listen().await.expect("listen");
    let a = l.local_addr();
    (l, a)
}

/// A length-prefixed Connection to a postsocket Listener that echoes.
async fn echo_connection() -> postsocket::Connection {
    let (l, addr) = length_listener().await;
    tokio::spawn(async move {
        while let Ok(c) = l.accept().await {
            spawn_echo(c);
        }
    });
    tcp_length(vec![remote(addr)]).initiate().await.unwrap()
}

#[tokio::test]
async fn echo_through_postsocket_listener_keeps_messages() {
    let conn = echo_connection().await;
    assert_eq!(conn.state(), ConnState::Established);
    let msgs: Vec<Vec<u8>> = vec![b"a".to_vec(), vec![], vec![7u8; 100_000], b"last".to_vec()];
    for m in &msgs {
        conn.send(m.clone(), None, true).await.unwrap();
    }
    for m in &msgs {
        match conn.receive().await.unwrap() {
            ReceiveEvent::Received { data, context } => {
                assert_eq!(&data, m);
                assert!(context.remote_endpoint().is_some());
            }
            other => panic!("expected a whole Message, got {other:?}"),
        }
    }
    conn.close().await.unwrap();
    assert_eq!(conn.state(), ConnState::Closed);
}

#[tokio::test]
async fn one_shared_buffer_goes_out_as_many_messages() {
    let conn = echo_connection().await;
    // A Bytes is shared, not copied, by each send; a Vec is taken whole;
    // a static slice needs no allocation.
    let shared = postsocket::Bytes::from((0..=255u8).cycle().take(70_000).collect::<Vec<u8>>());
    for _ in 0..3 {
        conn.send_message(shared.clone()).await.unwrap();
    }
    conn.send_message(b"static".as_slice()).await.unwrap();
    for _ in 0..3 {
        assert_eq!(conn.receive().await.unwrap().data(), &shared[..]);
    }
    assert_eq!(conn.receive().await.unwrap().data(), b"static");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn sent_outcomes_in_send_order_exactly_once() {
    let conn = echo_connection().await;
    // Call send 200 times before awaiting any; outcomes carry their order.
    let futs: Vec<_> = (0..200u32)
        .map(|i| conn.send(i.to_be_bytes().to_vec(), None, true))
        .collect();
    let results = futures::future::join_all(futs).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap().sequence, i as u64);
    }
    for i in 0..200u32 {
        assert_eq!(conn.receive().await.unwrap().data(), i.to_be_bytes());
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn partial_sends_make_one_message_and_partial_receives_split_it() {
    let (l, addr) = length_listener().await;
    let server = tokio::spawn(async move {
        let c = l.accept().await.unwrap();
        // Receive in pieces of at most 4 bytes.
        let mut pieces = Vec::new();
        loop {
            let ev = c.receive_with(None, Some(4)).await.unwrap();
            let end = ev.is_end_of_message();
            pieces.push(ev);
            if end {
                break;
            }
        }
        let whole = c.receive().await.unwrap();
        (pieces, whole)
    });
    let conn = tcp_length(vec![remote(addr)]).initiate().await.unwrap();
    let ctx = MessageContext::new();
    // The length-prefix framer holds the first part until the last one
    // (it needs the whole length): that part is Sent with the last.
    let first = conn.send(b"hello ".to_vec(), Some(ctx.clone()), false);
    // Another Message while one is open is refused, not interleaved.
    let err = conn.send(b"x".to_vec(), None, true).await.unwrap_err();
    assert_eq!(err.reason(), ErrorReason::InvalidMessageProperties);
    conn.send(b"world".to_vec(), Some(ctx.clone()), true)
        .await
        .unwrap();
    first.await.unwrap();
    conn.send(b"second".to_vec(), None, true).await.unwrap();
    let (pieces, whole) = server.await.unwrap();
    let joined: Vec<u8> = pieces.iter().flat_map(|p| p.data().to_vec()).collect();
    assert_eq!(joined, b"hello world");
    assert!(pieces.len() >= 3, "split into ≤4-byte parts: {pieces:?}");
    assert!(pieces
        .iter()
        .all(|p| matches!(p, ReceiveEvent::ReceivedPartial { .. })));
    let id = pieces[0].context().id();
    assert!(
        pieces.iter().all(|p| p.context().id() == id),
        "one context per Message"
    );
    assert_eq!(
        whole,
        ReceiveEvent::Received {
            data: b"second".to_vec().into(),
            context: whole.context().clone()
        }
    );
    conn.close().await.unwrap();
}

#[tokio::test]
async fn no_framer_stream_is_partial_then_final_at_eof() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"some bytes").await.unwrap();
        s.shutdown().await.unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink).await;
    });
    let pre = Preconnection::new(
        vec![],
        vec![remote(addr)],
        TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    let conn = pre.initiate().await.unwrap();
    let mut got = Vec::new();
    loop {
        match conn.receive().await.unwrap() {
            ReceiveEvent::ReceivedPartial {
                data,
                context,
                end_of_message,
            } => {
                got.extend(data);
                if end_of_message {
                    assert!(context.is_final());
                    break;
                }
            }
            other => panic!("a stream without framer gives partial Messages, got {other:?}"),
        }
    }
    assert_eq!(got, b"some bytes");
    assert!(!conn.can_receive());
    assert!(
        conn.receive().await.is_err(),
        "nothing after the final Message"
    );
    conn.close().await.unwrap();
}

#[tokio::test]
async fn final_message_sends_fin_and_blocks_later_sends() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap(); // ends only at our FIN
        all
    });
    let conn = tcp_length(vec![remote(addr)]).initiate().await.unwrap();
    let ctx = MessageContext::new().with("final", true).unwrap();
    conn.send(b"bye".to_vec(), Some(ctx), true).await.unwrap();
    assert!(!conn.can_send());
    let err = conn.send_message("more").await.unwrap_err();
    assert_eq!(err.reason(), ErrorReason::InvalidMessageProperties);
    assert_eq!(server.await.unwrap(), b"\0\0\0\x03bye");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn close_resolves_pending_receive_then_emits_closed_last() {
    let (l, addr) = length_listener().await;
    tokio::spawn(async move {
        let c = l.accept().await.unwrap();
        let _ = c.receive().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let conn = std::sync::Arc::new(tcp_length(vec![remote(addr)]).initiate().await.unwrap());
    let c2 = conn.clone();
    let pending = tokio::spawn(async move { c2.receive().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let sent = conn.send_message("x");
    conn.close().await.unwrap();
    // The queued send got its outcome before Closed, the receive resolved with an error.
    assert!(sent.await.is_ok());
    let r = pending.await.unwrap();
    assert_eq!(r.unwrap_err().error.reason, ErrorReason::ConnectionAborted);
    assert_eq!(conn.next_event().await, Some(ConnectionEvent::Closed));
    assert_eq!(conn.next_event().await, None, "nothing after Closed");
    assert!(conn.send_message("late").await.is_err());
}

/// A TCP handshake the kernel does not finish inside `connect` (this
/// listener's accept queue is full, so the first SYN is dropped and the
/// retransmitted one, about a second later, gets through) still reaches
/// Ready, after the peer took it, and carries bytes both ways. Over
/// loopback the handshake usually completes inside `connect`, and
/// postsocket then skips waiting for the reactor: this covers the other
/// path, which every real network takes.
#[tokio::test]
async fn a_handshake_finished_after_connect_returns_reaches_ready() {
    use std::io::{BufRead, Write};
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .expect("bind");
    listener.listen(0).expect("listen");
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue (backlog 0 holds one connection on Linux).
    let mut fillers = Vec::new();
    for _ in 0..2 {
        if let Ok(c) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(c);
        }
    }
    let pre = tcp_lines(vec![remote(addr)]);
    let initiate = tokio::spawn(async move { pre.initiate().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !initiate.is_finished(),
        "the handshake cannot finish while the peer's accept queue is full"
    );
    // A plain blocking peer: take the fillers, then postsocket's connection
    // (its SYN retransmitted), and echo one line back.
    let peer = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
        listener.set_nonblocking(true)?;
        let start = std::time::Instant::now();
        let mut taken = 0;
        let conn = loop {
            match listener.accept() {
                Ok(_) if taken < fillers.len() => taken += 1,
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if start.elapsed() > Duration::from_secs(10) {
                        return Err(std::io::Error::other("no retransmitted SYN in 10 s"));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        };
        drop(fillers);
        let mut conn: std::net::TcpStream = conn.into();
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut line = Vec::new();
        std::io::BufReader::new(conn.try_clone()?).read_until(b'\n', &mut line)?;
        conn.write_all(&line)?;
        Ok(line)
    });
    let conn = tokio::time::timeout(Duration::from_secs(15), initiate)
        .await
        .expect("Ready within 15 s")
        .unwrap()
        .expect("initiate");
    conn.send(b"after the retransmitted SYN".to_vec(), None, true)
        .await
        .expect("send");
    let echoed = tokio::time::timeout(Duration::from_secs(10), conn.receive())
        .await
        .expect("an echo within 10 s")
        .expect("receive");
    assert_eq!(echoed.data(), b"after the retransmitted SYN");
    let seen = peer.join().unwrap().expect("the plain peer");
    assert_eq!(seen, b"after the retransmitted SYN\n");
}

#[tokio::test]
async fn abort_resets_and_reports_connection_error() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 16];
        s.read(&mut buf).await
    });
    let conn = tcp_length(vec![remote(addr)]).initiate().await.unwrap();
    conn.abort();
    match conn.next_event().await {
        Some(ConnectionEvent::ConnectionError(e)) => {
            assert_eq!(e.reason, ErrorReason::ConnectionAborted)
        }
        other => panic!("expected ConnectionError, got {other:?}"),
    }
    assert_eq!(conn.next_event().await, None);
    let r = server.await.unwrap();
    assert!(r.is_err(), "the peer sees a reset, got {r:?}");
    assert!(conn.receive().await.is_err());
}

#[tokio::test]
async fn batch_goes_out_together_and_expired_messages_are_reported() {
    let (l, addr) = length_listener().await;
    let server = tokio::spawn(async move {
        let c = l.accept().await.unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(c.receive().await.unwrap().into_data());
        }
        got
    });
    let conn = tcp_length(vec![remote(addr)]).initiate().await.unwrap();
    conn.start_batch();
    let a = conn.send_message("one");
    let short = MessageContext::new()
        .with("msgLifetime", Duration::from_millis(20))
        .unwrap();
    let b = conn.send(b"expires".to_vec(), Some(short), true);
    let c = conn.send_message("two");
    tokio::time::sleep(Duration::from_millis(60)).await;
    conn.end_batch();
    let (a, b, c) = futures::join!(a, b, c);
    assert_eq!(a.unwrap().sequence, 0);
    assert!(matches!(b, Err(SendFailure::Expired { .. })), "{b:?}");
    assert_eq!(c.unwrap().sequence, 2);
    assert_eq!(
        server.await.unwrap(),
        vec![b"one".to_vec(), b"two".to_vec()]
    );
    conn.close().await.unwrap();
}

#[tokio::test]
async fn clone_makes_a_second_tcp_connection_in_the_group() {
    let (l, addr) = length_listener().await;
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = accepted.clone();
    tokio::spawn(async move {
        while let Ok(c) = l.accept().await {
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            spawn_echo(c);
        }
    });
    let conn = tcp_length(vec![remote(addr)]).initiate().await.unwrap();
    conn.set_property("connTimeout", Duration::from_secs(30))
        .unwrap();
    let clone = conn.clone_in_group(None, None).await.unwrap();
    assert_ne!(
        clone.local_addr(),
        conn.local_addr(),
        "a new TCP connection"
    );
    assert_eq!(conn.grouped_connections().len(), 2);
    // Entangled: the property set before cloning, and one set after, are shared.
    assert_eq!(
        clone.properties().conn_timeout,
        Some(Duration::from_secs(30))
    );
    clone.set_property("connPriority", 5u64).unwrap();
    clone
        .set_property("keepAliveTimeout", Duration::from_secs(9))
        .unwrap();
    assert_eq!(
        conn.properties().keep_alive_timeout,
        Some(Duration::from_secs(9))
    );
    assert_eq!(
        conn.properties().conn_priority,
        100,
        "connPriority is not entangled"
    );
    clone.send_message("via clone").await.unwrap();
    assert_eq!(clone.receive().await.unwrap().data(), b"via clone");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    conn.close_group().await.unwrap();
    assert_eq!(conn.state(), ConnState::Closed);
    assert_eq!(clone.state(), ConnState::Closed);
    assert!(conn.grouped_connections().is_empty());
}

#[tokio::test]
async fn group_conn_limit_bounds_clone() {
    let conn = echo_connection().await;
    conn.set_property("groupConnLimit", 1u64).unwrap();
    let err = conn.clone_in_group(None, None).await.unwrap_err();
    assert_eq!(err.reason, ErrorReason::NotCloneable);
    conn.abort_group();
    assert_eq!(conn.state(), ConnState::Closed);
}

#[tokio::test]
async fn listener_connection_limit_and_stop() {
    let (l, addr) = length_listener().await;
    l.set_new_connection_limit(Some(1));
    let l = std::sync::Arc::new(l);
    let l2 = l.clone();
    let server = tokio::spawn(async move {
        let c = l2.accept().await.unwrap();
        spawn_echo(c);
        // The second peer is refused: no second ConnectionReceived.
        tokio::time::timeout(Duration::from_millis(400), l2.accept())
            .await
            .is_err()
    });
    let first = tcp_length(vec![remote(addr)]).initiate().await.unwrap();
    first.send_message("hi").await.unwrap();
    assert_eq!(first.receive().await.unwrap().data(), b"hi");
    let second = tcp_length(vec![remote(addr)]).initiate().await.unwrap();
    // The second connection is reset by the listener.
    let r = tokio::time::timeout(Duration::from_secs(2), second.receive())
        .await
        .unwrap();
    assert!(r.is_err(), "over the limit: {r:?}");
    assert!(
        server.await.unwrap(),
        "no ConnectionReceived over the limit"
    );
    l.stop();
    assert!(l.accept().await.is_err(), "Stopped");
    first.close().await.unwrap();
}

#[tokio::test]
async fn initiate_with_send_delivers_the_first_message() {
    let (l, addr) = length_listener().await;
    let server = tokio::spawn(async move {
        l.accept()
            .await
            .unwrap()
            .receive()
            .await
            .unwrap()
            .into_data()
    });
    let (conn, sent) = tcp_length(vec![remote(addr)])
        .initiate_with_send(b"first".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(sent.unwrap().sequence, 0);
    assert_eq!(&server.await.unwrap()[..], b"first");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn read_only_properties_report_true_values() {
    let (l, addr) = length_listener().await;
    tokio::spawn(async move {
        let _c = l.accept().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    });
    let conn = tcp_length(vec![remote(addr)]).initiate().await.unwrap();
    assert_eq!(
        conn.get("connState").unwrap(),
        postsocket::PropertyValue::Text("Established".into())
    );
    assert_eq!(conn.get("canSend").unwrap(), true.into());
    assert_eq!(conn.singular_transmission_msg_max_len(), None);
    assert_eq!(conn.send_msg_max_len(), Some(u32::MAX as u64));
    assert_eq!(
        conn.recv_msg_max_len(),
        Some(postsocket::RECV_MSG_MAX_LEN as u64)
    );
    assert_eq!(
        conn.selected(postsocket::SelectionProperty::Reliability),
        postsocket::Preference::Require
    );
    assert_eq!(
        conn.selected(postsocket::SelectionProperty::Multistreaming),
        postsocket::Preference::Prohibit
    );
    assert!(conn.set_property("canSend", false).is_err(), "read-only");
    assert!(
        conn.set_property("recvChecksumLen", 8u64).is_err(),
        "needs UDP-Lite"
    );
    assert!(conn.set_property("noSuchProperty", 1u64).is_err());
    // A message property TCP cannot honour is a SendError, not silently ignored.
    let ctx = MessageContext::new().with("noSegmentation", true).unwrap();
    let err = conn.send(b"x".to_vec(), Some(ctx), true).await.unwrap_err();
    assert_eq!(err.reason(), ErrorReason::InvalidMessageProperties);
    conn.set_property("connCapacityProfile", "lowLatencyInteractive")
        .unwrap();
    conn.close().await.unwrap();
    assert_eq!(
        conn.get("connState").unwrap(),
        postsocket::PropertyValue::Text("Closed".into())
    );
}

#[tokio::test]
async fn stop_ends_a_pending_accept() {
    let (l, _addr) = length_listener().await;
    let l = std::sync::Arc::new(l);
    let l2 = l.clone();
    let pending = tokio::spawn(async move { l2.next_event().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    l.stop();
    let ev = tokio::time::timeout(Duration::from_secs(2), pending)
        .await
        .expect("Stopped arrives at once")
        .unwrap();
    assert!(matches!(ev, postsocket::ListenerEvent::Stopped));
}

/// The connections waiting in a listening socket's accept queue, as the
/// kernel counts them (`rx_queue` of its LISTEN row in /proc/net/tcp).
///
/// The kernel writes that table a hash bucket at a time, so a read taken
/// while other tests open and close sockets may miss the row: the table is
/// read again, at most 20 times, until it is there.
fn accept_queue(port: u16) -> usize {
    let local = format!(":{port:04X}");
    (0..20)
        .find_map(|_| {
            let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
            table
                .lines()
                .skip(1)
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|f| f[1].ends_with(&local) && f[3] == "0A") // 0A: LISTEN
                .map(|f| usize::from_str_radix(f[4].split(':').nth(1).unwrap(), 16).unwrap())
        })
        .expect("the Listener's LISTEN row")
}

/// A Listener whose application does not take Connections stops accepting
/// after 256 pending ones: the rest wait in the kernel's backlog (so a
/// flood cannot grow the process), and are served once the application
/// takes Connections again.
#[tokio::test]
async fn a_listener_not_taking_connections_stops_accepting_at_its_bound() {
    let mut pre = listener_pre(TransportProperties::new());
    pre.set_protocols(vec![postsocket::StackId::Tcp]);
    let l = pre.listen().await.unwrap();
    let addr = l.local_addr();
    let mut clients = Vec::new();
    for _ in 0..400 {
        clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = accept_queue(addr.port());
    assert!(
        (140..=144).contains(&waiting),
        "{waiting} connections left in the kernel's queue: the Listener took {} (bound 256)",
        400 - waiting
    );
    let mut served = 0;
    while served < 400 {
        tokio::time::timeout(Duration::from_secs(5), l.accept())
            .await
            .expect("every peer is served once the application takes Connections")
            .unwrap();
        served += 1;
    }
    assert_eq!(accept_queue(addr.port()), 0);
}

/// A Listener that serves plain TCP only hands a peer over as soon as it
/// connects, silent or not (a server-speaks-first protocol: the client
/// waits for the server's greeting). There is nothing to tell apart by the
/// first bytes, so there is no wait for them, unlike a TCP port shared with
/// TLS, where a silent peer is taken as plain TCP after a 2 s grace. The
/// peer is a raw tokio socket.
#[tokio::test]
async fn a_tcp_only_listener_hands_a_silent_peer_over_at_once() {
    let mut pre = listener_pre(TransportProperties::new());
    pre.set_protocols(vec![postsocket::StackId::Tcp]);
    let l = pre.listen().await.expect("listen");
    let addr = l.local_addr();
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let conn = tokio::time::timeout(Duration::from_secs(1), l.accept())
        .await
        .expect("the silent peer handed over well within the 2 s grace")
        .unwrap();
    conn.send(bytes::Bytes::from_static(b"220 hello\r\n"), None, true)
        .await
        .unwrap();
    let mut greeting = [0u8; 11];
    tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut greeting))
        .await
        .expect("the greeting within 5 s")
        .unwrap();
    assert_eq!(&greeting, b"220 hello\r\n");
}
