//! The Connection keeps its promises (RFC 9622 §10, §11) against peers this
//! project did not write (plain tokio sockets, tokio-tungstenite): Abort
//! answers every send at once, even one blocked behind a peer that does not
//! read, and Close then resolves; a send future dropped midway never makes a
//! Message go out twice; durations from the application never panic.
// Native only: the browser tests are tests/browser_*.rs.
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

mod common;
use common::client;
use futures::StreamExt;
use postsocket::{
    ErrorReason, MessageContext, Preconnection, SecurityParameters, SendFailure, StackId,
    TransportProperties,
};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

/// How long an outcome that is due "at once" may take before the test calls
/// it a hang (generous: a loaded CI machine).
const AT_ONCE: Duration = Duration::from_secs(5);

/// A Message far larger than the socket buffers of both ends together.
const HUGE: usize = 64 * 1024 * 1024;

/// A plain TCP peer that accepts every connection and never reads; it
/// holds the sockets until the test ends.
async fn deaf_tcp_peer() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

/// A TCP Connection to a peer that never reads (and the peer's task).
async fn deaf_tcp_connection() -> (postsocket::Connection, tokio::task::JoinHandle<()>) {
    let (addr, peer) = deaf_tcp_peer().await;
    let conn = tcp_client(addr, TransportProperties::new())
        .initiate()
        .await
        .unwrap();
    (conn, peer)
}

fn tcp_client(addr: SocketAddr, props: TransportProperties) -> Preconnection {
    client(addr, StackId::Tcp, props, SecurityParameters::disabled())
}

/// A huge send blocked on `conn`'s peer, which reads nothing, and a send
/// queued behind it: `abort()` answers both with SendError at once, and
/// `close()` then resolves.
async fn abort_answers_blocked_sends(conn: postsocket::Connection) {
    let blocked = tokio::spawn(conn.send_message(vec![1u8; HUGE]));
    let queued = tokio::spawn(conn.send_message("behind it"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !blocked.is_finished(),
        "the peer reads nothing: the send waits"
    );
    conn.abort();
    for (what, task) in [("blocked", blocked), ("queued", queued)] {
        let outcome = tokio::time::timeout(AT_ONCE, task)
            .await
            .unwrap_or_else(|_| panic!("the {what} send has no outcome after abort()"))
            .unwrap();
        match outcome {
            Err(SendFailure::SendError { error, .. }) => {
                assert_eq!(
                    error.reason,
                    ErrorReason::ConnectionAborted,
                    "{what}: {error}"
                );
                assert!(error.message.contains("Abort"), "{what}: {error}");
            }
            other => panic!("the {what} send: {other:?}, not SendError"),
        }
    }
    tokio::time::timeout(AT_ONCE, conn.close())
        .await
        .expect("close() after abort() resolves")
        .unwrap();
}

#[tokio::test]
async fn abort_answers_a_send_blocked_on_a_peer_that_does_not_read() {
    let (conn, _peer) = deaf_tcp_connection().await;
    abort_answers_blocked_sends(conn).await;
}

/// A Connection to `addr` over `stack`, trusting exactly `cert`.
async fn secure_client(
    addr: SocketAddr,
    stack: StackId,
    cert: &common::Cert,
) -> postsocket::Connection {
    client(
        addr,
        stack,
        TransportProperties::new(),
        common::pinned(cert),
    )
    .initiate()
    .await
    .unwrap()
}

/// The same over TLS, against a plain tokio-rustls server that completes
/// the handshake and then reads nothing.
#[tokio::test]
async fn abort_answers_a_tls_send_blocked_on_a_peer_that_does_not_read() {
    let cert = common::self_signed();
    let config = common::rustls_server_config(&cert.pem, &cert.key);
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let _peer = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let _tls = acceptor.accept(s).await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    abort_answers_blocked_sends(secure_client(addr, StackId::Tls, &cert).await).await;
}

/// The same over QUIC, against a plain quinn server that takes the stream
/// and reads nothing (its flow control blocks the send).
#[tokio::test]
async fn abort_answers_a_quic_send_blocked_on_a_peer_that_does_not_read() {
    let cert = common::self_signed();
    let ep = common::quinn_server(&cert.pem, &cert.key);
    let addr = ep.local_addr().unwrap();
    let _peer = tokio::spawn(async move {
        let conn = ep.accept().await.unwrap().await.unwrap();
        let _stream = conn.accept_bi().await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    abort_answers_blocked_sends(secure_client(addr, StackId::Quic, &cert).await).await;
}

/// A WebTransport Listener (length-prefix framed) with a fresh certificate:
/// the certificate, its address, and the Connections it receives.
async fn wt_listener() -> (
    common::Cert,
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<postsocket::Connection>,
) {
    let cert = common::self_signed();
    let l = common::framed_listener_pre(common::server_security(&cert), vec![StackId::Wt])
        .listen()
        .await
        .unwrap();
    let addr = l.local_addr();
    (cert, addr, common::received_connections(l, true))
}

/// A WebTransport Connection (length-prefix framed) to `addr`, trusting `cert`.
async fn wt_client(addr: SocketAddr, cert: &common::Cert) -> postsocket::Connection {
    let mut pre = client(
        addr,
        StackId::Wt,
        TransportProperties::new(),
        common::pinned(cert),
    );
    pre.add_framer(postsocket::framer::LengthPrefixFramer::new());
    pre.initiate().await.unwrap()
}

/// The same over WebTransport, against a Listener whose application takes
/// the Connection and reads nothing.
#[tokio::test]
async fn abort_answers_a_webtransport_send_blocked_on_a_peer_that_does_not_read() {
    let (cert, addr, mut incoming) = wt_listener().await;
    let _peer = tokio::spawn(async move {
        let _c = incoming.recv().await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    abort_answers_blocked_sends(wt_client(addr, &cert).await).await;
}

#[tokio::test]
async fn abort_during_a_blocked_close_ends_the_close() {
    let (conn, _peer) = deaf_tcp_connection().await;
    let send = conn.send_message(vec![2u8; HUGE]);
    let conn = std::sync::Arc::new(conn);
    let closing = {
        let c = conn.clone();
        (conn, tokio::spawn(async move { c.close().await }))
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !closing.1.is_finished(),
        "close waits for the blocked Message"
    );
    closing.0.abort();
    tokio::time::timeout(AT_ONCE, closing.1)
        .await
        .expect("close() pending after abort()")
        .unwrap()
        .unwrap();
    let outcome = tokio::time::timeout(AT_ONCE, send)
        .await
        .expect("the send has an outcome");
    assert!(
        matches!(outcome, Err(SendFailure::SendError { .. })),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_lifetime_of_duration_max_is_no_lifetime_at_all() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        all
    });
    let mut props = TransportProperties::new();
    props.message_defaults.msg_lifetime = Some(Duration::MAX);
    let conn = tcp_client(addr, props)
        .initiate_with_timeout(Duration::MAX)
        .await
        .unwrap();
    let mut ctx = MessageContext::new();
    ctx.properties.msg_lifetime = Some(Duration::MAX);
    conn.send(&b"one "[..], Some(ctx), true).await.unwrap();
    conn.send_message(&b"two"[..]).await.unwrap();
    conn.close().await.unwrap();
    assert_eq!(peer.await.unwrap(), b"one two");
}

/// A Message queued behind one that is blocked on the peer expires when its
/// msgLifetime ends (RFC 9622 §9.1.3.1), not when the blocked one finally
/// goes; the one sent after it, without a lifetime, still goes, in order.
#[tokio::test]
async fn a_message_behind_a_blocked_tcp_send_expires_when_its_lifetime_ends() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let peer = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let _ = go_rx.await; // reads nothing until told
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        all
    });
    let conn = tcp_client(addr, TransportProperties::new())
        .initiate()
        .await
        .unwrap();
    let big = 32 * 1024 * 1024;
    let blocked = tokio::spawn(conn.send_message(vec![7u8; big]));
    let mut ctx = MessageContext::new();
    ctx.properties.msg_lifetime = Some(Duration::from_millis(300));
    let expiring = tokio::spawn(conn.send(&b"too late"[..], Some(ctx), true));
    let after = tokio::spawn(conn.send_message(&b"after"[..]));
    let outcome = tokio::time::timeout(AT_ONCE, expiring)
        .await
        .expect("the Message behind the blocked one has an outcome once its lifetime ends")
        .unwrap();
    assert!(
        matches!(outcome, Err(SendFailure::Expired { .. })),
        "{outcome:?}"
    );
    assert!(!blocked.is_finished(), "the peer still reads nothing");
    go_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), blocked)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    after.await.unwrap().unwrap();
    conn.close().await.unwrap();
    let all = peer.await.unwrap();
    assert_eq!(
        all.len(),
        big + 5,
        "the big one and `after`, not the expired one"
    );
    assert!(all.ends_with(b"after"));
}

/// The same on a stack whose sends go whole and cannot be dropped midway
/// (native WebSocket): the Message behind expires while the one ahead is
/// still being sent, and the one ahead still goes out once.
#[tokio::test]
async fn a_message_behind_a_blocked_websocket_send_expires_when_its_lifetime_ends() {
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, peer) = gated_ws_peer(async move {
        let _ = go_rx.await; // reads nothing until told
    })
    .await;
    let conn = ws_client(addr).initiate().await.unwrap();
    let mut ahead = Vec::new();
    for i in 0..8u8 {
        ahead.push(tokio::spawn(conn.send_message(vec![i; 4 * 1024 * 1024])));
    }
    let mut ctx = MessageContext::new();
    ctx.properties.msg_lifetime = Some(Duration::from_millis(300));
    let expiring = tokio::spawn(conn.send(&b"too late"[..], Some(ctx), true));
    let outcome = tokio::time::timeout(AT_ONCE, expiring)
        .await
        .expect("the Message behind the blocked ones has an outcome once its lifetime ends")
        .unwrap();
    assert!(
        matches!(outcome, Err(SendFailure::Expired { .. })),
        "{outcome:?}"
    );
    assert!(
        ahead.iter().any(|t| !t.is_finished()),
        "the peer reads nothing yet: sends ahead still wait"
    );
    go_tx.send(()).unwrap();
    for t in ahead {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    conn.close().await.unwrap();
    let got = peer.await.unwrap();
    let order: Vec<u8> = got.iter().map(|m| m[0]).collect();
    assert_eq!(
        order,
        (0..8).collect::<Vec<_>>(),
        "each once, in order, and not the expired one"
    );
}

/// A receive future polled once and then kept without being polled again
/// (left in a `select!` branch, say) holds the receive side: Close still
/// resolves, and that receive, polled later, reports the close.
#[tokio::test]
async fn close_resolves_while_a_receive_future_is_kept_but_not_polled() {
    let (conn, _peer) = deaf_tcp_connection().await;
    let mut kept = Box::pin(conn.receive());
    assert!(
        futures::poll!(&mut kept).is_pending(),
        "the peer sends nothing"
    );
    tokio::time::timeout(Duration::from_secs(10), conn.close())
        .await
        .expect("close() resolves though a receive future is kept")
        .unwrap();
    let r = tokio::time::timeout(AT_ONCE, kept)
        .await
        .expect("the kept receive ends once polled");
    let e = r.expect_err("no Message came");
    assert_eq!(e.error.reason, ErrorReason::ConnectionAborted, "{e:?}");
    assert!(e.error.message.contains("closed locally"), "{e:?}");
}

/// A WebSocket peer (tokio-tungstenite) that reads nothing for `wait`, then
/// returns every binary message it receives until the Close.
async fn slow_ws_peer(wait: Duration) -> (SocketAddr, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
    gated_ws_peer(tokio::time::sleep(wait)).await
}

/// A WebSocket peer (tokio-tungstenite) that reads nothing until `gate`
/// resolves, then returns every binary message it receives until the Close.
async fn gated_ws_peer(
    gate: impl std::future::Future<Output = ()> + Send + 'static,
) -> (SocketAddr, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
        gate.await;
        let mut got = Vec::new();
        while let Some(Ok(m)) = ws.next().await {
            match m {
                Message::Binary(b) => got.push(b.to_vec()),
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = ws.close(None).await;
        got
    });
    (addr, task)
}

fn ws_client(addr: SocketAddr) -> Preconnection {
    client(
        addr,
        StackId::Ws,
        TransportProperties::new(),
        SecurityParameters::disabled(),
    )
}

#[tokio::test]
async fn websocket_send_futures_dropped_midway_send_each_message_once() {
    let (addr, peer) = slow_ws_peer(Duration::from_millis(500)).await;
    let conn = ws_client(addr).initiate().await.unwrap();
    // Messages of 1 MiB, numbered: the socket fills after a few, and then
    // each send future is polled once, mid-send, and dropped.
    let n = 24u8;
    let mut dropped_midway = 0;
    for i in 0..n {
        let mut fut = conn.send_message(vec![i; 1024 * 1024]);
        match futures::poll!(&mut fut) {
            std::task::Poll::Ready(r) => {
                r.unwrap();
            }
            std::task::Poll::Pending => dropped_midway += 1,
        }
        drop(fut);
    }
    assert!(dropped_midway > 0, "the peer's pause left sends waiting");
    tokio::time::timeout(Duration::from_secs(30), conn.close())
        .await
        .expect("close delivers the rest")
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), peer)
        .await
        .unwrap()
        .unwrap();
    let order: Vec<u8> = got.iter().map(|m| m[0]).collect();
    assert_eq!(
        order,
        (0..n).collect::<Vec<_>>(),
        "each Message once, in order ({dropped_midway} send futures dropped midway)"
    );
    assert!(got
        .iter()
        .all(|m| m.len() == 1024 * 1024 && m.iter().all(|b| *b == m[0])));
}

#[tokio::test]
async fn abort_answers_a_websocket_send_blocked_on_a_peer_that_does_not_read() {
    let (addr, _peer) = slow_ws_peer(Duration::from_secs(60)).await;
    let conn = ws_client(addr).initiate().await.unwrap();
    let mut sends = Vec::new();
    for _ in 0..16 {
        sends.push(tokio::spawn(conn.send_message(vec![3u8; 4 * 1024 * 1024])));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.abort();
    let mut failed = 0;
    for s in sends {
        let outcome = tokio::time::timeout(AT_ONCE, s)
            .await
            .expect("every send has an outcome after abort()")
            .unwrap();
        if outcome.is_err() {
            failed += 1;
        }
    }
    assert!(
        failed > 0,
        "the peer read nothing: some sends could not go out"
    );
    tokio::time::timeout(AT_ONCE, conn.close())
        .await
        .expect("close() after abort() resolves")
        .unwrap();
}

/// A plain quinn server (ALPN `taps`, the client's default) that reads its
/// first bidirectional stream to the end, slowly, and returns its length.
async fn slow_quinn_reader(
    streams: usize,
) -> (
    SocketAddr,
    common::Cert,
    tokio::task::JoinHandle<Vec<usize>>,
) {
    let cert = common::self_signed();
    let ep = common::quinn_server(&cert.pem, &cert.key);
    let addr = ep.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let conn = ep.accept().await.unwrap().await.unwrap();
        let mut readers = Vec::new();
        for _ in 0..streams {
            let (_send, mut recv) = conn.accept_bi().await.unwrap();
            readers.push(tokio::spawn(async move {
                let _send = _send;
                let mut total = 0;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match recv.read(&mut buf).await {
                        Ok(Some(n)) => {
                            total += n;
                            // A reader slower than the sender: most of the
                            // Message is still in flight when the client closes.
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        Ok(None) => break,
                        Err(e) => panic!("after {total} bytes: {e}"),
                    }
                }
                total
            }));
        }
        let mut totals = Vec::new();
        for r in readers {
            totals.push(r.await.unwrap());
        }
        totals
    });
    (addr, cert, task)
}

/// Send a Message on each of `streams` QUIC streams of one group (the
/// Connection and its clones) to a slow plain quinn reader, close (Close
/// with one stream, CloseGroup with more), drop every handle (quinn closes
/// the connection then), and check that every byte reported Sent arrived.
async fn quic_close_loses_nothing(streams: usize) {
    let (addr, cert, server) = slow_quinn_reader(streams).await;
    let pre = client(
        addr,
        StackId::Quic,
        TransportProperties::new(),
        common::pinned(&cert),
    );
    send_close_and_count(pre.initiate().await.unwrap(), streams, server).await;
}

#[tokio::test]
async fn quic_close_resolves_after_the_peer_has_every_byte() {
    quic_close_loses_nothing(1).await;
}

/// CloseGroup over QUIC: every stream of the group finishes and has its
/// data acknowledged before the shared QUIC connection closes, so nothing
/// reported Sent on any of them is lost.
#[tokio::test]
async fn quic_close_group_loses_nothing_sent_on_any_stream() {
    quic_close_loses_nothing(2).await;
}

/// Close over WebTransport (native, on a postsocket WT Listener that reads
/// slowly, 64 KiB at a time): Close waits until the peer acknowledged the
/// stream's data, so dropping the last handle (which closes the session)
/// loses nothing reported Sent.
#[tokio::test]
async fn webtransport_close_resolves_after_the_peer_has_every_byte() {
    wt_close_loses_nothing(1).await;
}

/// CloseGroup over native WebTransport: every stream of the session (the
/// Connection and its clone) has its data acknowledged before the session
/// closes.
#[tokio::test]
async fn webtransport_close_group_loses_nothing_sent_on_any_stream() {
    wt_close_loses_nothing(2).await;
}

/// Send on `streams` WebTransport streams of one session (a Connection and
/// its clones) to a Listener that reads each slowly, 64 KiB at a time;
/// close (Close with one, CloseGroup with more), drop every handle, and
/// check every byte reported Sent arrived.
async fn wt_close_loses_nothing(streams: usize) {
    let (cert, addr, mut incoming) = wt_listener().await;
    let server = tokio::spawn(async move {
        let mut readers = Vec::new();
        for _ in 0..streams {
            let c = incoming.recv().await.unwrap();
            readers.push(tokio::spawn(async move {
                let mut total = 0;
                while let Ok(Ok(part)) =
                    tokio::time::timeout(AT_ONCE, c.receive_with(None, Some(64 * 1024))).await
                {
                    total += part.data().len();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    if part.is_end_of_message() {
                        break;
                    }
                }
                total
            }));
        }
        let mut totals = Vec::new();
        for r in readers {
            totals.push(r.await.unwrap());
        }
        totals
    });
    send_close_and_count(wt_client(addr, &cert).await, streams, server).await;
}

/// The client side of the close tests: clone `first` into `streams`
/// Connections of one group, send 4 MiB on each (the server reads slowly),
/// close (Close with one, CloseGroup with more), drop every handle (the
/// shared connection closes then), and check with `server`'s byte counts
/// that every byte reported Sent arrived.
async fn send_close_and_count(
    first: postsocket::Connection,
    streams: usize,
    server: tokio::task::JoinHandle<Vec<usize>>,
) {
    let mut conns = vec![first];
    for _ in 1..streams {
        conns.push(conns[0].clone_in_group(None, None).await.unwrap());
    }
    let len = 4 * 1024 * 1024;
    for (i, c) in conns.iter().enumerate() {
        c.send_message(vec![i as u8; len]).await.expect("Sent");
    }
    let closed = if streams == 1 {
        tokio::time::timeout(Duration::from_secs(30), conns[0].close()).await
    } else {
        tokio::time::timeout(Duration::from_secs(30), conns[0].close_group()).await
    };
    closed.expect("closed within 30 s").expect("close succeeds");
    drop(conns); // the last handles: the shared connection closes now
    let got = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, vec![len; streams], "every byte reported Sent arrived");
}

/// CloseGroup closes its members together: three TCP Connections of one
/// group, each with a send blocked on a peer that never reads, so each
/// member's Close runs out its whole `CLOSE_TIMEOUT`: the group is closed
/// one `CLOSE_TIMEOUT` later (30 s of this test's time), not three. (Real
/// time: tokio's paused clock needs its `test-util` feature, which the
/// benchmarks would then be built with too, and it makes every
/// `Instant::now` of the library dearer.)
#[tokio::test]
async fn close_group_closes_its_members_together_within_one_close_timeout() {
    let (addr, _peer) = deaf_tcp_peer().await;
    let first = tcp_client(addr, TransportProperties::new())
        .initiate()
        .await
        .unwrap();
    let mut conns = vec![first];
    for _ in 1..3 {
        conns.push(conns[0].clone_in_group(None, None).await.unwrap());
    }
    let sends: Vec<_> = conns
        .iter()
        .map(|c| tokio::spawn(c.send_message(vec![3u8; HUGE])))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        sends.iter().all(|s| !s.is_finished()),
        "the peer reads nothing: every send waits"
    );
    let start = tokio::time::Instant::now();
    let closed = conns[0].close_group().await;
    let took = start.elapsed();
    let err = closed.expect_err("the blocked Messages never went out: CloseGroup reports it");
    assert_eq!(err.reason, ErrorReason::Timeout, "{err}");
    assert!(
        took >= postsocket::CLOSE_TIMEOUT && took < 2 * postsocket::CLOSE_TIMEOUT,
        "CloseGroup took {took:?} for three members, not about one CLOSE_TIMEOUT ({:?})",
        postsocket::CLOSE_TIMEOUT
    );
    for s in sends {
        assert!(
            matches!(s.await.unwrap(), Err(SendFailure::SendError { .. })),
            "every blocked send has its failure"
        );
    }
}

#[tokio::test]
async fn tcp_close_with_unread_data_does_not_reset_the_tail() {
    use tokio::io::AsyncWriteExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        // Data the client never receives: unread at its close.
        s.write_all(&[7u8; 100_000]).await.unwrap();
        let mut total = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    total += n;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => panic!("after {total} bytes: {e}"),
            }
        }
        total
    });
    let conn = tcp_client(addr, TransportProperties::new())
        .initiate()
        .await
        .unwrap();
    let len = 8 * 1024 * 1024;
    conn.send_message(vec![1u8; len]).await.expect("Sent");
    tokio::time::timeout(Duration::from_secs(30), conn.close())
        .await
        .expect("close within 30 s")
        .expect("close succeeds");
    drop(conn);
    let got = tokio::time::timeout(Duration::from_secs(30), peer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, len, "every byte reported Sent arrived, no reset");
}

/// After the peer's last Message, a receive ends with PeerFinished (not a
/// failure), no SoftError is reported, and Close ends with `Closed`.
async fn expect_clean_finish(conn: &postsocket::Connection, last: &[u8]) {
    let m = tokio::time::timeout(AT_ONCE, conn.receive())
        .await
        .expect("the last Message")
        .expect("received");
    assert_eq!(m.data(), last);
    let e = tokio::time::timeout(AT_ONCE, conn.receive())
        .await
        .expect("the receive after the last Message ends")
        .unwrap_err();
    assert_eq!(e.error.reason, ErrorReason::PeerFinished, "{e}");
    assert!(!conn.can_receive());
    tokio::time::timeout(Duration::from_secs(10), conn.close())
        .await
        .expect("close")
        .unwrap();
    assert_eq!(
        conn.next_event().await,
        Some(postsocket::ConnectionEvent::Closed),
        "Closed, and no SoftError before it"
    );
}

#[tokio::test]
async fn a_tcp_peer_that_finishes_cleanly_is_not_a_failure() {
    use tokio::io::AsyncWriteExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"last line\n").await.unwrap();
        s.shutdown().await.unwrap(); // FIN
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    });
    let mut pre = tcp_client(addr, TransportProperties::new());
    pre.add_framer(postsocket::framer::DelimiterFramer::line());
    let conn = pre.initiate().await.unwrap();
    expect_clean_finish(&conn, b"last line").await;
}

/// A tokio-tungstenite peer that sends one message, then closes with `code`.
async fn closing_ws_peer(code: u16) -> SocketAddr {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
        ws.send(Message::binary(b"goodbye".to_vec())).await.unwrap();
        let frame = CloseFrame {
            code: code.into(),
            reason: "".into(),
        };
        ws.close(Some(frame)).await.unwrap();
        while ws.next().await.is_some() {}
    });
    addr
}

#[tokio::test]
async fn a_websocket_closed_with_1000_is_a_clean_finish() {
    let conn = ws_client(closing_ws_peer(1000).await)
        .initiate()
        .await
        .unwrap();
    expect_clean_finish(&conn, b"goodbye").await;
}

#[tokio::test]
async fn a_websocket_closed_with_an_error_code_is_a_failure() {
    let conn = ws_client(closing_ws_peer(1011).await)
        .initiate()
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(AT_ONCE, conn.receive())
            .await
            .unwrap()
            .unwrap()
            .data(),
        b"goodbye"
    );
    let e = tokio::time::timeout(AT_ONCE, conn.receive())
        .await
        .unwrap()
        .unwrap_err();
    assert_ne!(e.error.reason, ErrorReason::PeerFinished, "{e}");
    assert!(e.error.message.contains("1011"), "{e}");
}

#[tokio::test]
async fn datagrams_during_an_incomplete_framed_message_are_bounded_and_reported() {
    let cert = common::self_signed();
    let l = common::framed_listener_pre(common::server_security(&cert), vec![StackId::Quic])
        .listen()
        .await
        .unwrap();
    let addr = l.local_addr();
    let mut incoming = common::received_connections(l, true);
    // The sending peer writes the stream's bytes itself (no framer): a
    // 4-byte length of 1000 and 10 bytes of the body, then a flood of
    // datagrams, then the rest of the body.
    let pre = client(
        addr,
        StackId::Quic,
        TransportProperties::new(),
        common::pinned(&cert),
    );
    let peer = pre.initiate().await.unwrap();
    let mut head = 1000u32.to_be_bytes().to_vec();
    head.extend_from_slice(&[4u8; 10]);
    peer.send_message(head).await.unwrap();
    let server = std::sync::Arc::new(incoming.recv().await.unwrap());
    let first = tokio::spawn({
        let server = server.clone();
        async move { server.receive().await }
    });
    let flood = 3 * postsocket::DATAGRAM_QUEUE_MAX;
    let mut unreliable = MessageContext::new();
    unreliable.properties.msg_reliable = Some(false);
    for i in 0..flood {
        let _ = peer
            .send(vec![(i % 251) as u8; 1000], Some(unreliable.clone()), true)
            .await;
        if i % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await; // let them through
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    peer.send_message(vec![4u8; 990]).await.unwrap();
    let m = tokio::time::timeout(AT_ONCE, first)
        .await
        .expect("the framed Message completes")
        .unwrap()
        .unwrap();
    assert_eq!(m.data().len(), 1000);
    let mut datagrams = 0;
    while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(300), server.receive()).await {
        assert_eq!(m.data().len(), 1000);
        datagrams += 1;
    }
    assert!(
        datagrams <= postsocket::DATAGRAM_QUEUE_MAX,
        "{datagrams} datagrams were kept, over the bound"
    );
    let mut reports = Vec::new();
    while let Ok(Some(postsocket::ConnectionEvent::SoftError(s))) =
        tokio::time::timeout(Duration::from_millis(100), server.next_event()).await
    {
        reports.push(s);
    }
    assert!(
        reports.iter().any(|r| r.contains("dropped")),
        "the drops were reported ({datagrams} delivered): {reports:?}"
    );
}

#[tokio::test]
async fn messages_left_by_dropped_send_futures_go_out_without_another_call() {
    messages_left_by_dropped_send_futures_go_out(true).await;
}

/// The same with send futures dropped without ever being polled (`send`
/// queued the Message when it was called).
#[tokio::test]
async fn messages_left_by_send_futures_never_polled_go_out_without_another_call() {
    messages_left_by_dropped_send_futures_go_out(false).await;
}

async fn messages_left_by_dropped_send_futures_go_out(poll_once: bool) {
    // A plain TCP peer that reads nothing for a while, then everything.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = 16usize;
    let len = 1024 * 1024;
    let peer = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut got = vec![0u8; n * len];
        s.read_exact(&mut got).await.unwrap();
        got
    });
    let conn = tcp_client(addr, TransportProperties::new())
        .initiate()
        .await
        .unwrap();
    let mut dropped_midway = 0;
    for i in 0..n {
        let mut fut = conn.send_message(vec![i as u8; len]);
        if !poll_once || futures::poll!(&mut fut).is_pending() {
            dropped_midway += 1;
        }
        drop(fut);
    }
    assert!(dropped_midway > 0, "the peer's pause left sends waiting");
    // No further send, no close: the Connection still delivers everything.
    let got = tokio::time::timeout(Duration::from_secs(20), peer)
        .await
        .expect("every Message arrives without another call on the Connection")
        .unwrap();
    for (i, chunk) in got.chunks(len).enumerate() {
        assert!(
            chunk.iter().all(|b| *b == i as u8),
            "Message {i} intact, in order"
        );
    }
    drop(conn);
}

#[tokio::test]
async fn parts_a_framer_holds_are_sent_with_the_last_part_or_fail_at_close() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let mut all = Vec::new();
        for _ in 0..2 {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            all.push(got);
        }
        all
    });
    let mut pre = tcp_client(addr, TransportProperties::new());
    pre.add_framer(postsocket::framer::LengthPrefixFramer::new());

    // Finished: the held parts are Sent with the last one, in order.
    let conn = pre.initiate().await.unwrap();
    let ctx = MessageContext::new();
    let mut first = conn.send(&b"one "[..], Some(ctx.clone()), false);
    let mut second = conn.send(&b"two "[..], Some(ctx.clone()), false);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        futures::poll!(&mut first).is_pending(),
        "nothing of it is written yet"
    );
    assert!(futures::poll!(&mut second).is_pending());
    let last = conn
        .send(&b"three"[..], Some(ctx.clone()), true)
        .await
        .unwrap();
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!((first.sequence, second.sequence, last.sequence), (0, 1, 2));
    conn.close().await.unwrap();

    // Never finished: Close fails the held parts, and nothing goes out.
    let conn = pre.initiate().await.unwrap();
    let ctx = MessageContext::new();
    let part = conn.send(&b"never finished"[..], Some(ctx), false);
    conn.close().await.unwrap();
    match tokio::time::timeout(AT_ONCE, part)
        .await
        .expect("an outcome")
    {
        Err(SendFailure::SendError { error, .. }) => {
            assert!(error.message.contains("last part"), "{error}")
        }
        other => panic!("{other:?}"),
    }
    let got = tokio::time::timeout(AT_ONCE, peer).await.unwrap().unwrap();
    let mut one = 13u32.to_be_bytes().to_vec();
    one.extend_from_slice(b"one two three");
    assert_eq!(got, vec![one, Vec::new()]);
}

/// A send future dropped while its Message is half written leaves a task to
/// finish it; a send kept behind it is then in that task's hands. Abort
/// answers it at once all the same (the task answers what its flush held
/// when it sees the stop), and the socket is let go of (the peer sees the
/// reset).
#[tokio::test]
async fn abort_answers_a_send_behind_a_dropped_one() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    // Reads nothing until told, then to the end (or the reset).
    let (go, gate) = tokio::sync::oneshot::channel::<()>();
    let peer = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let _ = gate.await;
        let mut sink = vec![0u8; 1 << 20];
        loop {
            match s.read(&mut sink).await {
                Ok(0) => return "end",
                Ok(_) => {}
                Err(_) => return "reset",
            }
        }
    });
    let conn = tcp_client(addr, TransportProperties::new())
        .initiate()
        .await
        .unwrap();
    let mut first = conn.send_message(vec![1u8; HUGE]);
    assert!(
        futures::poll!(&mut first).is_pending(),
        "the peer reads nothing"
    );
    let behind = conn.send_message("behind it");
    drop(first);
    // The task finishing the dropped send holds the writer, and `behind`
    // (queued when it was called) with it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    conn.abort();
    match tokio::time::timeout(AT_ONCE, behind)
        .await
        .expect("the send kept behind a dropped one is answered after abort()")
    {
        Err(SendFailure::SendError { error, .. }) => {
            assert_eq!(error.reason, ErrorReason::ConnectionAborted, "{error}")
        }
        other => panic!("{other:?}, not SendError"),
    }
    let _ = go.send(());
    let end = tokio::time::timeout(AT_ONCE, peer)
        .await
        .expect("the socket is let go of after abort()")
        .unwrap();
    assert_eq!(end, "reset", "Abort resets the connection");
    drop(conn);
}

/// A UDP relay on loopback that delays every datagram by `delay` each way
/// (one client): a path with a round trip of twice that. Returns the
/// address to send to.
async fn delaying_udp_relay(to: SocketAddr, delay: Duration) -> SocketAddr {
    use std::sync::Arc;
    let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let at = front.local_addr().unwrap();
    let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Default::default();
    let (f, b, c) = (front.clone(), back.clone(), client.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = f.recv_from(&mut buf).await {
            *c.lock().unwrap() = Some(from);
            let (b, d) = (b.clone(), buf[..n].to_vec());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = b.send_to(&d, to).await;
            });
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, _)) = back.recv_from(&mut buf).await {
            let Some(to) = *client.lock().unwrap() else {
                continue;
            };
            let (f, d) = (front.clone(), buf[..n].to_vec());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = f.send_to(&d, to).await;
            });
        }
    });
    at
}

/// Two Closes at once over QUIC, on a path with a 100 ms round trip: the
/// second waits for the first's word on delivery instead of stopping the
/// Connection under it, so every byte reported Sent still reaches a plain
/// quinn reader after the last handle is dropped.
#[tokio::test]
async fn concurrent_closes_still_wait_for_quic_acknowledgement() {
    let cert = common::self_signed();
    let ep = common::quinn_server(&cert.pem, &cert.key);
    let server_addr = ep.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let conn = ep.accept().await.unwrap().await.unwrap();
        let (_send, mut recv) = conn.accept_bi().await.unwrap();
        let mut total = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match recv.read(&mut buf).await {
                Ok(Some(n)) => total += n,
                Ok(None) => return total,
                Err(e) => panic!("after {total} bytes: {e}"),
            }
        }
    });
    let addr = delaying_udp_relay(server_addr, Duration::from_millis(50)).await;
    let conn = client(
        addr,
        StackId::Quic,
        TransportProperties::new(),
        common::pinned(&cert),
    )
    .initiate()
    .await
    .unwrap();
    // Within the reader's flow-control window, so Sent at once; a few
    // round trips of congestion window before it is all acknowledged.
    let len = 1024 * 1024;
    conn.send_message(vec![7u8; len]).await.expect("Sent");
    let other = conn.clone();
    let first = tokio::spawn(async move { conn.close().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    if first.is_finished() {
        panic!(
            "the first Close ended within a round trip: {:?}",
            first.await
        );
    }
    tokio::time::timeout(Duration::from_secs(30), other.close())
        .await
        .expect("the second Close ends")
        .expect("the second Close succeeds");
    drop(other); // the last handle: the QUIC connection closes now
    tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .expect("the first Close ends")
        .unwrap()
        .expect("the first Close succeeds");
    let got = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the reader ends")
        .unwrap();
    assert_eq!(got, len, "every byte reported Sent arrived");
}

/// A send future dropped during a batch: `end_batch` sends its Message
/// without another call on the Connection.
#[tokio::test]
async fn a_send_dropped_during_a_batch_goes_out_after_end_batch() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = [0u8; 11];
        s.read_exact(&mut got).await.map(|_| got)
    });
    let conn = tcp_client(addr, TransportProperties::new())
        .initiate()
        .await
        .unwrap();
    conn.start_batch();
    drop(conn.send_message("first, "));
    let mut second = conn.send_message("next");
    assert!(
        futures::poll!(&mut second).is_pending(),
        "held by the batch"
    );
    drop(second);
    conn.end_batch();
    let got = tokio::time::timeout(AT_ONCE, peer)
        .await
        .expect("the batch's Messages go out after end_batch()")
        .unwrap()
        .expect("both Messages");
    assert_eq!(&got, b"first, next");
    drop(conn);
}
