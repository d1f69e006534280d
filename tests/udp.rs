//! UDP: message boundaries, and a Listener demultiplexing peers into Connections.
// Native only (sockets, tokio, proptest): the browser tests are tests/browser_*.rs.
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

mod common;
use common::*;
use postsocket::{
    ErrorReason, MessageContext, Preconnection, ReceiveEvent, SecurityParameters, StackId,
    TransportProperties,
};

fn udp_pre(remote_addr: std::net::SocketAddr) -> Preconnection {
    Preconnection::new(
        vec![],
        vec![remote(remote_addr)],
        TransportProperties::unreliable_datagram(),
        SecurityParameters::disabled(),
    )
}

async fn udp_echo_listener() -> std::net::SocketAddr {
    let l = listener_pre(TransportProperties::unreliable_datagram())
        .listen()
        .await
        .unwrap();
    let addr = l.local_addr();
    tokio::spawn(async move {
        while let Ok(c) = l.accept().await {
            assert_eq!(c.stack(), StackId::Udp);
            spawn_echo(c);
        }
    });
    addr
}

#[tokio::test]
async fn udp_echo_keeps_message_boundaries() {
    let addr = udp_echo_listener().await;
    let conn = udp_pre(addr).initiate().await.unwrap();
    assert_eq!(conn.stack(), StackId::Udp);
    let msgs = [
        b"one".to_vec(),
        b"two two".to_vec(),
        vec![1u8; 1200],
        Vec::new(),
    ];
    for m in &msgs {
        conn.send(m.clone(), None, true).await.unwrap();
        // Loopback does not drop or reorder here; await each echo in turn.
        let got = tokio::time::timeout(std::time::Duration::from_secs(2), conn.receive())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got,
            ReceiveEvent::Received {
                data: m.clone().into(),
                context: got.context().clone()
            }
        );
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn udp_listener_serves_two_peers_as_two_connections() {
    let l = listener_pre(TransportProperties::unreliable_datagram())
        .listen()
        .await
        .unwrap();
    let addr = l.local_addr();
    let a = udp_pre(addr).initiate().await.unwrap();
    let b = udp_pre(addr).initiate().await.unwrap();
    a.send_message("from a").await.unwrap();
    b.send_message("from b").await.unwrap();
    a.send_message("a again").await.unwrap();
    let ca = l.accept().await.unwrap();
    let cb = l.accept().await.unwrap();
    assert_eq!(
        ca.remote_addr(),
        a.local_addr()
            .map(|x| std::net::SocketAddr::new("127.0.0.1".parse().unwrap(), x.port()))
    );
    assert_eq!(ca.receive().await.unwrap().data(), b"from a");
    assert_eq!(ca.receive().await.unwrap().data(), b"a again");
    assert_eq!(cb.receive().await.unwrap().data(), b"from b");
    cb.send_message("to b").await.unwrap();
    assert_eq!(b.receive().await.unwrap().data(), b"to b");
    ca.close().await.unwrap();
    cb.close().await.unwrap();
}

#[tokio::test]
async fn udp_rejects_what_it_cannot_do() {
    let addr = udp_echo_listener().await;
    let conn = udp_pre(addr).initiate().await.unwrap();
    assert_eq!(conn.send_msg_max_len(), Some(65_507));
    let too_big = conn.send(vec![0; 70_000], None, true).await.unwrap_err();
    assert_eq!(too_big.reason(), ErrorReason::MessageTooLarge);
    let ctx = MessageContext::new().with("msgReliable", true).unwrap();
    let unreliable = conn.send(b"x".to_vec(), Some(ctx), true).await.unwrap_err();
    assert_eq!(unreliable.reason(), ErrorReason::InvalidMessageProperties);
    let ctx = MessageContext::new().with("noFragmentation", true).unwrap();
    let frag = conn.send(vec![0; 3000], Some(ctx), true).await.unwrap_err();
    assert_eq!(frag.reason(), ErrorReason::MessageTooLarge);
    let partial = conn.send(b"x".to_vec(), None, false).await.unwrap_err();
    assert_eq!(partial.reason(), ErrorReason::InvalidMessageProperties);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn udp_datagram_longer_than_max_length_arrives_in_parts() {
    let addr = udp_echo_listener().await;
    let conn = udp_pre(addr).initiate().await.unwrap();
    conn.send(b"0123456789".to_vec(), None, true).await.unwrap();
    let p1 = conn.receive_with(None, Some(4)).await.unwrap();
    let p2 = conn.receive_with(None, Some(4)).await.unwrap();
    let p3 = conn.receive_with(None, Some(4)).await.unwrap();
    assert_eq!([p1.data(), p2.data(), p3.data()].concat(), b"0123456789");
    assert!(!p1.is_end_of_message() && !p2.is_end_of_message() && p3.is_end_of_message());
    conn.close().await.unwrap();
}

#[tokio::test]
async fn default_properties_exclude_udp_with_a_reason() {
    let pre = Preconnection::new(
        vec![],
        vec![remote("127.0.0.1:9".parse().unwrap())],
        TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    let mut pre = pre;
    pre.set_protocols(vec![StackId::Udp]);
    let err = pre.initiate().await.unwrap_err();
    assert_eq!(err.reason, ErrorReason::NoCandidates);
    assert!(err.to_string().contains("Require reliability"), "{err}");
}

/// Several receives waiting at once (one holds the receive side, the others
/// queue behind it) all end when the Connection stops: on Close with a
/// "closed locally" error, on Abort with "aborted"; none is left hanging.
#[tokio::test]
async fn every_waiting_receive_ends_on_close_and_on_abort() {
    let addr = udp_echo_listener().await;
    for abort in [false, true] {
        let conn = std::sync::Arc::new(udp_pre(addr).initiate().await.unwrap());
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let c = conn.clone();
                tokio::spawn(async move { c.receive().await })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(waiting.iter().all(|w| !w.is_finished()), "nothing arrived");
        if abort {
            conn.abort();
        } else {
            tokio::time::timeout(std::time::Duration::from_secs(5), conn.close())
                .await
                .expect("Close waited for a receive that never ended")
                .unwrap();
        }
        for w in waiting {
            let r = tokio::time::timeout(std::time::Duration::from_secs(2), w)
                .await
                .expect("a waiting receive did not end")
                .unwrap();
            let e = r.unwrap_err().error;
            assert_eq!(e.reason, ErrorReason::ConnectionAborted);
            let want = if abort { "aborted" } else { "closed locally" };
            assert!(e.message.contains(want), "{abort}: {e}");
        }
        assert!(conn.receive().await.is_err(), "a receive after the stop");
    }
}

/// A receive that waits for its turn behind another ends at the stop even
/// when the one ahead of it is never polled again (a future kept, no
/// longer awaited).
#[tokio::test]
async fn a_receive_queued_behind_an_unpolled_one_ends_on_abort() {
    let addr = udp_echo_listener().await;
    let conn = std::sync::Arc::new(udp_pre(addr).initiate().await.unwrap());
    let c1 = conn.clone();
    let mut ahead = Box::pin(async move { c1.receive().await });
    assert!(futures::poll!(&mut ahead).is_pending(), "nothing arrived");
    let c2 = conn.clone();
    let behind = tokio::spawn(async move { c2.receive().await });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!behind.is_finished());
    conn.abort();
    let r = tokio::time::timeout(std::time::Duration::from_secs(2), behind)
        .await
        .expect("the queued receive did not end")
        .unwrap();
    let e = r.unwrap_err().error;
    assert!(e.message.contains("aborted"), "{e}");
    drop(ahead);
}

/// The next Listener events until none comes for `idle`: how many
/// Connections were received (kept in `keep`), and the error reports.
async fn drain_events(
    l: &postsocket::Listener,
    idle: std::time::Duration,
    keep: &mut Vec<postsocket::Connection>,
) -> Vec<String> {
    let mut errors = Vec::new();
    for _ in 0..100_000 {
        match tokio::time::timeout(idle, l.next_event()).await {
            Ok(postsocket::ListenerEvent::ConnectionReceived(c)) => keep.push(c),
            Ok(postsocket::ListenerEvent::EstablishmentError(e)) => errors.push(e.to_string()),
            Ok(postsocket::ListenerEvent::Stopped) | Err(_) => break,
        }
    }
    errors
}

/// The Connections `l` receives, kept, while `sending` runs, until none
/// comes for `idle`.
async fn keep_while(
    l: &std::sync::Arc<postsocket::Listener>,
    idle: std::time::Duration,
    sending: impl std::future::Future<Output = ()>,
) -> Vec<postsocket::Connection> {
    let taker = {
        let l = l.clone();
        tokio::spawn(async move {
            let mut kept = Vec::new();
            drain_events(&l, idle, &mut kept).await;
            kept
        })
    };
    sending.await;
    taker.await.unwrap()
}

/// Send one datagram from each of `n` new sources (a new UDP socket each,
/// as spoofed or real peers would be) to `addr`.
async fn from_new_sources(addr: std::net::SocketAddr, n: u32) {
    for i in 0..n {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(&i.to_be_bytes(), addr).unwrap();
        if i % 50 == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
}

/// Thousands of sources against one UDP Listener: while its application
/// does not accept, at most 256 connections wait for it; while it accepts
/// and keeps every Connection, at most 1,024 flows exist. The rest are
/// refused, and that is reported; once the application dropped its
/// Connections, a new source is served again.
#[tokio::test]
async fn thousands_of_sources_cannot_grow_a_udp_listener() {
    let l = std::sync::Arc::new(
        listener_pre(TransportProperties::unreliable_datagram())
            .listen()
            .await
            .unwrap(),
    );
    let addr = l.local_addr();
    let idle = std::time::Duration::from_millis(300);
    // Not accepting: the pending bound.
    from_new_sources(addr, 600).await;
    let mut received = Vec::new();
    let errors = drain_events(&l, idle, &mut received).await;
    assert!(
        (200..=256).contains(&received.len()),
        "{} connections waited for the application (bound 256)",
        received.len()
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("datagrams from new sources are refused")),
        "the refusals are reported: {errors:?}"
    );
    // Accepting and keeping every Connection: the flow bound.
    let kept = keep_while(
        &l,
        std::time::Duration::from_secs(2),
        from_new_sources(addr, 2000),
    )
    .await;
    assert!(
        received.len() + kept.len() <= 1024,
        "{} flows alive at once (bound 1,024)",
        received.len() + kept.len()
    );
    assert!(
        received.len() + kept.len() >= 1000,
        "{} flows served",
        received.len() + kept.len()
    );
    drop((received, kept));
    let late = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut again = Vec::new();
    for _ in 0..20 {
        late.send_to(b"late", addr).unwrap();
        drain_events(&l, std::time::Duration::from_millis(100), &mut again).await;
        if !again.is_empty() {
            break;
        }
    }
    assert_eq!(
        again.len(),
        1,
        "a new source is served once the flows are gone"
    );
}

/// The same bounds, set by the application (`ListenerLimits`): 16
/// pending, 40 flows, 8 datagrams per flow. A limit of 0 is refused at
/// `listen`, naming it.
#[tokio::test]
async fn a_udp_listeners_bounds_are_settable() {
    let mut pre = listener_pre(TransportProperties::unreliable_datagram());
    pre.set_listener_limits(postsocket::ListenerLimits::default().with_udp_flows(0));
    let e = pre.listen().await.unwrap_err();
    assert_eq!(e.reason, ErrorReason::InvalidConfiguration);
    assert!(e.message.contains("udp_flows is 0"), "{e}");
    pre.set_listener_limits(
        postsocket::ListenerLimits::default()
            .with_pending_incoming(16)
            .with_udp_flows(40)
            .with_udp_flow_datagrams(8),
    );
    let l = std::sync::Arc::new(pre.listen().await.unwrap());
    assert_eq!(l.limits().udp_flows(), 40);
    let addr = l.local_addr();
    let idle = std::time::Duration::from_millis(300);
    // Not accepting: 16 wait.
    from_new_sources(addr, 100).await;
    let mut received = Vec::new();
    let errors = drain_events(&l, idle, &mut received).await;
    assert!(
        (12..=16).contains(&received.len()),
        "{} connections waited for the application (bound 16)",
        received.len()
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("40 flows, or 16 connections")),
        "the refusals are reported with the bounds: {errors:?}"
    );
    // Accepting and keeping every Connection: 40 flows at most.
    let kept = keep_while(
        &l,
        std::time::Duration::from_secs(1),
        from_new_sources(addr, 200),
    )
    .await;
    let flows = received.len() + kept.len();
    assert!((36..=40).contains(&flows), "{flows} flows alive (bound 40)");
    drop((received, kept));
    // One flow not read: 8 datagrams kept.
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut conn = None;
    for _ in 0..20 {
        peer.send_to(b"first", addr).unwrap();
        if let Ok(Ok(c)) = tokio::time::timeout(idle, l.accept()).await {
            conn = Some(c);
            break;
        }
    }
    let conn = conn.expect("a new source is served once the flows are gone");
    for i in 0..50u8 {
        peer.send_to(&[i; 100], addr).unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut kept = 0;
    while let Ok(Ok(_)) =
        tokio::time::timeout(std::time::Duration::from_millis(200), conn.receive()).await
    {
        kept += 1;
    }
    assert!(
        (2..=8).contains(&kept),
        "{kept} datagrams kept for the unread flow (bound 8)"
    );
}

/// One source floods a flow its application does not read: the Listener
/// keeps at most its 4 MiB buffer, drops the rest and says so; what the
/// application then reads is within the bound and intact.
#[tokio::test]
async fn a_flow_that_is_not_read_keeps_at_most_the_listener_buffer() {
    let l = listener_pre(TransportProperties::unreliable_datagram())
        .listen()
        .await
        .unwrap();
    let addr = l.local_addr();
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.send_to(&[0u8; 10], addr).unwrap();
    let conn = l.accept().await.unwrap();
    for i in 0..200u8 {
        peer.send_to(&vec![i; 60_000], addr).unwrap();
        tokio::time::sleep(std::time::Duration::from_micros(300)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut total = 0;
    while let Ok(Ok(m)) =
        tokio::time::timeout(std::time::Duration::from_millis(200), conn.receive()).await
    {
        assert!(
            m.data().iter().all(|b| *b == m.data()[0]),
            "each datagram intact"
        );
        total += m.data().len();
    }
    assert!(
        total <= 4 * 1024 * 1024 + 10,
        "{total} bytes kept, over the 4 MiB bound"
    );
    assert!(
        total >= 2 * 1024 * 1024,
        "{total} bytes kept: the bound, not less"
    );
    let mut none = Vec::new();
    let errors = drain_events(&l, std::time::Duration::from_millis(300), &mut none).await;
    assert!(
        errors.iter().any(|e| e.contains("datagrams are dropped")),
        "the drops are reported: {errors:?}"
    );
}

/// A UDP peer's flow on `l`, received; then `l` is stopped, and the flow
/// must still receive and send. The flow's Connection.
async fn a_flow_outlives_the_stop_of(l: &postsocket::Listener) -> postsocket::Connection {
    let addr = l.local_addr();
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    peer.send_to(b"first", addr).await.unwrap();
    let conn = tokio::time::timeout(std::time::Duration::from_secs(5), l.accept())
        .await
        .expect("the UDP flow is received")
        .unwrap();
    assert_eq!(conn.stack(), postsocket::StackId::Udp);
    assert_eq!(conn.receive().await.unwrap().data(), b"first");
    l.stop();
    assert!(matches!(
        l.next_event().await,
        postsocket::ListenerEvent::Stopped
    ));
    peer.send_to(b"after stop", addr).await.unwrap();
    let m = tokio::time::timeout(std::time::Duration::from_secs(5), conn.receive())
        .await
        .expect("the flow still receives")
        .unwrap();
    assert_eq!(m.data(), b"after stop");
    conn.send_message("answer").await.unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = tokio::time::timeout(std::time::Duration::from_secs(5), peer.recv_from(&mut buf))
        .await
        .expect("the flow still sends")
        .unwrap();
    assert_eq!(&buf[..n], b"answer");
    conn
}

/// Listener::stop ends the Listener, not the Connections it handed out: a
/// received UDP flow still receives and sends after it.
#[tokio::test]
async fn stopping_a_udp_listener_keeps_the_connections_it_handed_out() {
    let l = listener_pre(TransportProperties::unreliable_datagram())
        .listen()
        .await
        .unwrap();
    let conn = a_flow_outlives_the_stop_of(&l).await;
    conn.close().await.unwrap();
}

/// The same on a port shared with QUIC (the demultiplexer): the UDP flows
/// handed out keep the endpoint that drives the socket alive; once they and
/// the Listener are gone, the port is released.
#[tokio::test]
async fn stopping_a_udp_and_quic_listener_keeps_the_udp_flows_it_handed_out() {
    let l = udp_and_quic_listener().await;
    let addr = l.local_addr();
    let conn = a_flow_outlives_the_stop_of(&l).await;
    // Once the flow and the Listener are gone, so is the socket.
    drop((conn, l));
    let mut free = false;
    for _ in 0..100 {
        if std::net::UdpSocket::bind(addr).is_ok() {
            free = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(free, "the port is released once nothing uses it");
}

/// A Listener for QUIC and plain UDP on one port (the demultiplexer):
/// opportunistic security, QUIC with a certificate and plain UDP beside it.
async fn udp_and_quic_listener() -> postsocket::Listener {
    let cert = self_signed();
    let mut props = TransportProperties::new();
    for p in [
        postsocket::SelectionProperty::Reliability,
        postsocket::SelectionProperty::PreserveOrder,
        postsocket::SelectionProperty::CongestionControl,
    ] {
        props.set_preference(p, postsocket::Preference::NoPreference);
    }
    let mut pre = listener_pre(props);
    *pre.security_parameters_mut() =
        with_certificate(postsocket::SecurityParameters::opportunistic(), &cert);
    pre.set_protocols(vec![postsocket::StackId::Quic, postsocket::StackId::Udp]);
    pre.listen().await.unwrap()
}

/// An empty datagram is a Message too, on a UDP-only port and on one
/// shared with QUIC: a plain peer sends an empty one, then "x", and both
/// arrive, in order. (On the shared port the empty one was lost.)
#[tokio::test]
async fn an_empty_datagram_arrives_as_an_empty_message() {
    let udp_only = listener_pre(TransportProperties::unreliable_datagram())
        .listen()
        .await
        .unwrap();
    for l in [udp_only, udp_and_quic_listener().await] {
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"", l.local_addr()).unwrap();
        peer.send_to(b"x", l.local_addr()).unwrap();
        let conn = tokio::time::timeout(std::time::Duration::from_secs(5), l.accept())
            .await
            .expect("a Connection for the empty datagram's source")
            .unwrap();
        for want in [&b""[..], b"x"] {
            let m = tokio::time::timeout(std::time::Duration::from_secs(5), conn.receive())
                .await
                .expect("a Message")
                .unwrap();
            assert_eq!(m.data(), want);
        }
    }
}

/// Small datagrams are bounded as large ones are: each counts 64 bytes
/// more than its payload against `udp_buffer_bytes`, so 3,000 empty
/// datagrams to a flow nobody reads, with a 64 KiB buffer, keep at most
/// 1,024 (and the drops are reported). Before, empty ones counted nothing.
#[tokio::test]
async fn empty_datagrams_count_against_the_listener_buffer() {
    let mut pre = listener_pre(TransportProperties::unreliable_datagram());
    pre.set_listener_limits(
        postsocket::ListenerLimits::default()
            .with_udp_buffer_bytes(64 * 1024)
            .with_udp_flow_datagrams(100_000),
    );
    let l = pre.listen().await.unwrap();
    let addr = l.local_addr();
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.send_to(b"first", addr).unwrap();
    let conn = l.accept().await.unwrap();
    for i in 0..3_000 {
        peer.send_to(b"", addr).unwrap();
        if i % 50 == 49 {
            // Paced, so that the kernel's socket buffer drops none.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut kept = 0;
    while let Ok(Ok(_)) =
        tokio::time::timeout(std::time::Duration::from_millis(200), conn.receive()).await
    {
        kept += 1;
    }
    assert!(kept <= 1 + 1024, "{kept} datagrams kept in a 64 KiB buffer");
    assert!(kept >= 512, "{kept} datagrams kept: the bound, not less");
    let mut none = Vec::new();
    let errors = drain_events(&l, std::time::Duration::from_millis(300), &mut none).await;
    assert!(
        errors.iter().any(|e| e.contains("datagrams are dropped")),
        "the drops are reported: {errors:?}"
    );
}

/// Idle UDP flows expire (ListenerLimits::udp_flow_idle_timeout): with 4
/// flows at most, 4 sources that sent once fill the table while the
/// application keeps their Connections, and a 5th is refused. After the
/// idle timeout (400 ms here) the two flows with no datagram either way are
/// forgotten: their Connections' receives fail naming the bound, the 5th
/// source is served, and a silent source that sends again starts a new
/// Connection. A flow the peer keeps sending on, and one the application
/// keeps sending on, stay. The peers are plain std UDP sockets.
#[tokio::test]
async fn idle_udp_flows_expire_and_make_room() {
    use std::time::Duration;
    let mut pre = listener_pre(TransportProperties::unreliable_datagram());
    pre.set_listener_limits(
        postsocket::ListenerLimits::default()
            .with_udp_flows(4)
            .with_udp_flow_idle_timeout(Duration::from_millis(400)),
    );
    let l = pre.listen().await.unwrap();
    let addr = l.local_addr();
    let sock = || std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let peers: Vec<_> = (0..4).map(|_| sock()).collect();
    let mut conns = Vec::new();
    for p in &peers {
        p.send_to(b"hello", addr).unwrap();
        let c = tokio::time::timeout(Duration::from_secs(5), l.accept())
            .await
            .expect("a flow within 5 s")
            .unwrap();
        assert_eq!(recv(&c).await, b"hello");
        conns.push(c);
    }
    let fifth = sock();
    fifth.send_to(b"me too", addr).unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), l.accept())
            .await
            .is_err(),
        "the table is full: a 5th source is refused"
    );
    // Peer 0 keeps sending, the application keeps sending to peer 1, for
    // 3 idle timeouts; peers 2 and 3 stay silent.
    for _ in 0..12 {
        peers[0].send_to(b"ping", addr).unwrap();
        conns[1].send_message("pong").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for c in &conns[2..] {
        let e = tokio::time::timeout(Duration::from_secs(2), c.receive())
            .await
            .expect("an idle flow's receive ends")
            .expect_err("with an error");
        assert!(
            e.error.message.contains("udp_flow_idle_timeout"),
            "{}",
            e.error
        );
    }
    for _ in 0..12 {
        assert_eq!(
            recv(&conns[0]).await,
            b"ping",
            "the busy flow still delivers"
        );
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(100), conns[1].receive())
            .await
            .is_err(),
        "the flow the application sends on is still open (nothing to receive)"
    );
    // Room for the 5th source now, and a new Connection for silent peer 2.
    fifth.send_to(b"me too", addr).unwrap();
    let c5 = tokio::time::timeout(Duration::from_secs(2), l.accept())
        .await
        .expect("the 5th source is served once idle flows expired")
        .unwrap();
    assert_eq!(recv(&c5).await, b"me too");
    peers[2].send_to(b"back", addr).unwrap();
    let again = tokio::time::timeout(Duration::from_secs(2), l.accept())
        .await
        .expect("a silent source that sends again starts a new Connection")
        .unwrap();
    assert_eq!(recv(&again).await, b"back");
    // A bound of 0 is refused.
    let mut pre = listener_pre(TransportProperties::unreliable_datagram());
    pre.set_listener_limits(
        postsocket::ListenerLimits::default().with_udp_flow_idle_timeout(Duration::ZERO),
    );
    let e = pre.listen().await.unwrap_err();
    assert!(e.message.contains("udp_flow_idle_timeout is 0"), "{e}");
}

/// On a datagram stack each Message is framed on its own: a datagram that
/// is not one framed Message (an empty keepalive, a torn length prefix,
/// a length that does not match) fails that receive with DeframingFailed,
/// saying it was dropped, and the next datagram is received as usual.
#[tokio::test]
async fn a_malformed_datagram_is_lost_alone() {
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut pre = udp_pre(peer.local_addr().unwrap());
    pre.add_framer(postsocket::framer::LengthPrefixFramer::new());
    let conn = pre.initiate().await.unwrap();
    conn.send(&b"hello"[..], None, true).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, client) = peer.recv_from(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"\0\0\0\x05hello");
    for bad in [&b""[..], b"\0\0\x02", b"\0\0\0\x09short"] {
        peer.send_to(bad, client).await.unwrap();
        peer.send_to(b"\0\0\0\x02hi", client).await.unwrap();
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), conn.receive())
            .await
            .expect("the malformed datagram is reported");
        let e = r.expect_err("a malformed datagram is an error");
        assert_eq!(e.error.reason, ErrorReason::DeframingFailed, "{e:?}");
        assert!(e.error.message.contains("dropped"), "{e:?}");
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), conn.receive())
            .await
            .expect("the next datagram arrives")
            .expect("and is received");
        assert_eq!(next.data(), b"hi", "after {bad:?}");
    }
}

/// An ICMP port unreachable for a datagram sent before the peer listened
/// comes back on the client's connected socket as an error: it is a
/// SoftError, and receiving goes on (it ended the Connection's receive side
/// before).
#[tokio::test]
async fn an_icmp_port_unreachable_is_a_soft_error_and_receiving_goes_on() {
    // A port with nobody on it (for now).
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let conn = udp_pre(port).initiate().await.unwrap();
    conn.send(&b"anybody?"[..], None, true).await.unwrap();
    // Loopback answers with the ICMP at once; give it a moment.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let peer = tokio::net::UdpSocket::bind(port).await.unwrap();
    let client = conn.local_addr().expect("the client's address");
    peer.send_to(b"here", client).await.unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), conn.receive())
        .await
        .expect("the peer's datagram arrives")
        .expect("receiving went on past the ICMP report");
    assert_eq!(got.data(), b"here");
    let ev = tokio::time::timeout(std::time::Duration::from_secs(1), conn.next_event())
        .await
        .expect("the report is an event");
    match ev {
        Some(postsocket::ConnectionEvent::SoftError(s)) => {
            assert!(s.contains("ICMP"), "{s}")
        }
        other => panic!("a SoftError, not {other:?}"),
    }
}

/// A peer can make a SoftError per receive (here an ICMP port unreachable
/// before each of its datagrams). An application that reads Messages but
/// never events keeps at most 64 of them waiting: the rest are counted and
/// told as one SoftError once the waiting ones were taken.
#[tokio::test]
async fn soft_errors_an_application_does_not_read_wait_in_a_bounded_queue() {
    const ROUNDS: usize = 100;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let conn = udp_pre(port).initiate().await.unwrap();
    let client = conn.local_addr().expect("the client's address");
    for i in 0..ROUNDS {
        // Nobody on the port: the kernel answers with an ICMP report
        // (over loopback inside the send, unless its softirq work was put
        // off: a moment for that).
        conn.send(&b"anybody?"[..], None, true).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let peer = tokio::net::UdpSocket::bind(port).await.unwrap();
        peer.send_to(format!("here {i}").as_bytes(), client)
            .await
            .unwrap();
        drop(peer);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), conn.receive())
            .await
            .expect("the peer's datagram arrives")
            .expect("receiving goes on past the ICMP report");
        assert_eq!(got.data(), format!("here {i}").as_bytes());
    }
    let mut events = Vec::new();
    while let Ok(ev) =
        tokio::time::timeout(std::time::Duration::from_millis(200), conn.next_event()).await
    {
        match ev {
            Some(postsocket::ConnectionEvent::SoftError(s)) => events.push(s),
            other => panic!("only SoftErrors, not {other:?}"),
        }
        assert!(events.len() <= ROUNDS, "{events:?}");
    }
    assert_eq!(
        events.len(),
        65,
        "64 waiting, then one count; the last: {:?}",
        events.last()
    );
    assert!(
        events[..64].iter().all(|s| s.contains("ICMP")),
        "{events:?}"
    );
    // One report per round, or (were an ICMP report ever late, so that the
    // new peer took the datagram instead) a few fewer: all counted.
    let counted: usize = events[64]
        .split(" more soft errors")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count: {}", events[64]));
    assert!(
        (ROUNDS - 64 - 5..=ROUNDS - 64).contains(&counted),
        "{}",
        events[64]
    );
}
