//! One Listener, every stack, one port number: TCP, TLS over TCP, QUIC and
//! UDP clients all reach the same `listener.local_addr()` at once, each served
//! by the stack it speaks; with required security a plaintext client is
//! refused and reported, naming it.
// Native only (sockets, tokio, proptest): the browser tests are tests/browser_*.rs.
#![cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]

mod common;
use common::{pinned, self_signed, with_certificate};
use postsocket::framer::LengthPrefixFramer;
use postsocket::{
    Connection, ListenerEvent, LocalEndpoint, Preconnection, Preference, ReceiveEvent,
    SecurityParameters, SelectionProperty, StackId, TransportProperties,
};
use std::net::SocketAddr;
use std::time::Duration;

/// Properties every stack satisfies (with a framer for the byte streams).
fn any_stack() -> TransportProperties {
    let mut p = TransportProperties::new();
    p.set_preference(SelectionProperty::Reliability, Preference::NoPreference);
    p.set_preference(SelectionProperty::PreserveOrder, Preference::NoPreference);
    p.set_preference(
        SelectionProperty::CongestionControl,
        Preference::NoPreference,
    );
    p
}

/// A client of `stack` to `addr` that trusts `cert` by its pin.
fn pinned_client(addr: SocketAddr, stack: StackId, cert: &common::Cert) -> Preconnection {
    client(addr, stack, TransportProperties::new(), pinned(cert))
}

/// A length-prefixed Listener Preconnection on 127.0.0.1:0 for `stacks`,
/// with required security and `cert`.
fn secure_listener_pre(cert: &common::Cert, stacks: Vec<StackId>) -> Preconnection {
    let mut pre = local_pre(
        TransportProperties::new(),
        with_certificate(SecurityParameters::new(), cert),
    );
    pre.set_protocols(stacks);
    pre
}

/// A length-prefixed Listener Preconnection on 127.0.0.1:0.
fn local_pre(props: TransportProperties, sec: SecurityParameters) -> Preconnection {
    let local = LocalEndpoint::new()
        .with_socket_addr("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let mut pre = Preconnection::new(vec![local], vec![], props, sec);
    pre.add_framer(LengthPrefixFramer::new());
    pre
}

/// A Listener on 127.0.0.1:0 echoing every Message prefixed with the stack of
/// the server-side Connection (`"quic:hello"`); its establishment errors go
/// to the returned receiver.
async fn echo_listener(
    props: TransportProperties,
    sec: SecurityParameters,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    serve_echo(local_pre(props, sec)).await
}

/// [`echo_listener`] for a Preconnection made by the test.
async fn serve_echo(
    pre: Preconnection,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let l = pre.listen().await.expect("listen");
    let addr = l.local_addr();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match l.next_event().await {
                ListenerEvent::ConnectionReceived(c) => {
                    tokio::spawn(echo(c));
                }
                ListenerEvent::EstablishmentError(e) => {
                    let _ = tx.send(e.to_string());
                }
                ListenerEvent::Stopped => break,
            }
        }
    });
    (addr, rx)
}

async fn echo(c: Connection) {
    let stack = c.stack();
    while let Ok(ReceiveEvent::Received { data, .. }) = c.receive().await {
        let mut reply = format!("{stack}:").into_bytes();
        reply.extend_from_slice(&data);
        if c.send(reply, None, true).await.is_err() {
            break;
        }
    }
}

/// A length-prefixed client to `addr` that races only `stack`.
fn client(
    addr: SocketAddr,
    stack: StackId,
    props: TransportProperties,
    sec: SecurityParameters,
) -> Preconnection {
    let mut pre = common::client(addr, stack, props, sec);
    pre.add_framer(LengthPrefixFramer::new());
    pre
}

async fn receive(conn: &Connection) -> Vec<u8> {
    match tokio::time::timeout(Duration::from_secs(10), conn.receive())
        .await
        .expect("a reply in time")
        .expect("a reply")
    {
        ReceiveEvent::Received { data, .. } => data.into(),
        other => panic!("expected a whole Message, got {other:?}"),
    }
}

/// Connect with `pre`, check the stack, and get two echoes back, each
/// naming the server-side Connection's stack.
async fn echo_through(pre: Preconnection, stack: StackId) {
    let conn = tokio::time::timeout(Duration::from_secs(10), pre.initiate())
        .await
        .expect("initiate in time")
        .unwrap_or_else(|e| panic!("{stack} client: {e}"));
    assert_eq!(conn.stack(), stack);
    for m in [format!("hello over {stack}"), "second".to_string()] {
        conn.send(m.clone().into_bytes(), None, true).await.unwrap();
        let got = String::from_utf8(receive(&conn).await).unwrap();
        assert_eq!(got, format!("{stack}:{m}"), "{stack} client");
    }
    conn.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_tls_quic_and_udp_on_one_port_at_once() {
    let cert = self_signed();
    let (addr, mut errors) = echo_listener(
        any_stack(),
        with_certificate(SecurityParameters::opportunistic(), &cert),
    )
    .await;
    let tcp = client(
        addr,
        StackId::Tcp,
        TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    let udp = client(
        addr,
        StackId::Udp,
        TransportProperties::unreliable_datagram(),
        SecurityParameters::disabled(),
    );
    let tls = pinned_client(addr, StackId::Tls, &cert);
    let quic = pinned_client(addr, StackId::Quic, &cert);
    // All four at once.
    tokio::join!(
        echo_through(tcp, StackId::Tcp),
        echo_through(udp, StackId::Udp),
        echo_through(tls, StackId::Tls),
        echo_through(quic, StackId::Quic),
    );
    assert!(errors.try_recv().is_err(), "no establishment error");
}

#[tokio::test]
async fn required_security_refuses_plaintext_and_names_the_peer() {
    let cert = self_signed();
    // Default security: QUIC and TLS only; plaintext is never accepted.
    let (addr, mut errors) = echo_listener(
        TransportProperties::new(),
        with_certificate(SecurityParameters::new(), &cert),
    )
    .await;
    let plain = client(
        addr,
        StackId::Tcp,
        TransportProperties::new(),
        SecurityParameters::disabled(),
    )
    .initiate()
    .await
    .expect("the TCP handshake itself completes");
    let me = plain.local_addr().expect("a local address");
    plain.send(b"plaintext".to_vec(), None, true).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .expect("the Listener reports the refusal")
        .unwrap();
    assert!(e.contains(&me.to_string()), "names the peer {me}: {e}");
    assert!(e.contains("not a TLS handshake"), "{e}");
    assert!(e.contains("requires TLS"), "{e}");
    // The plaintext client sees its connection end (reset), not an echo.
    let r = tokio::time::timeout(Duration::from_secs(5), plain.receive())
        .await
        .expect("the refusal reaches the client");
    assert!(r.is_err(), "refused, not echoed: {r:?}");
    // TLS and QUIC on the same port number still work.
    echo_through(pinned_client(addr, StackId::Tls, &cert), StackId::Tls).await;
    echo_through(pinned_client(addr, StackId::Quic, &cert), StackId::Quic).await;
    assert!(errors.try_recv().is_err(), "one error only");
}

#[tokio::test]
async fn silent_plain_tcp_peer_is_plain_tcp_after_the_grace() {
    // A server-speaks-first protocol: the client sends nothing until it has
    // heard from the server. With plaintext allowed it is taken as TCP once
    // the grace period (2 s) passes without a TLS ClientHello.
    let cert = self_signed();
    let pre = local_pre(
        TransportProperties::new(),
        with_certificate(SecurityParameters::opportunistic(), &cert),
    );
    let l = pre.listen().await.unwrap();
    let addr = l.local_addr();
    let conn = client(
        addr,
        StackId::Tcp,
        TransportProperties::new(),
        SecurityParameters::disabled(),
    )
    .initiate()
    .await
    .unwrap();
    let start = std::time::Instant::now();
    let server = tokio::time::timeout(Duration::from_secs(10), l.accept())
        .await
        .expect("accepted in time")
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(1500));
    assert_eq!(server.stack(), StackId::Tcp);
    server
        .send(b"220 greetings".to_vec(), None, true)
        .await
        .unwrap();
    assert_eq!(receive(&conn).await, b"220 greetings");
}

#[tokio::test]
async fn opportunistic_without_certificate_listens_on_plain_tcp_and_udp() {
    let (addr, _) = echo_listener(any_stack(), SecurityParameters::opportunistic()).await;
    tokio::join!(
        echo_through(
            client(
                addr,
                StackId::Tcp,
                TransportProperties::new(),
                SecurityParameters::disabled()
            ),
            StackId::Tcp
        ),
        echo_through(
            client(
                addr,
                StackId::Udp,
                TransportProperties::unreliable_datagram(),
                SecurityParameters::disabled()
            ),
            StackId::Udp
        ),
    );
}

/// `ListenerLimits::with_handshake_timeout` bounds every step of an
/// incoming connection: a raw TCP peer that stays silent and one that sends
/// half a TLS ClientHello each fail after 300 ms (an EstablishmentError
/// naming the peer and the time, not the 10 s default), while a TLS client
/// is served meanwhile.
#[tokio::test]
async fn the_handshake_timeout_bounds_silent_and_stalled_peers() {
    use tokio::io::AsyncWriteExt;
    let cert = self_signed();
    let mut pre = secure_listener_pre(&cert, vec![StackId::Tls, StackId::Wss]);
    pre.set_listener_limits(
        postsocket::ListenerLimits::default().with_handshake_timeout(Duration::from_millis(300)),
    );
    let (addr, mut errors) = serve_echo(pre).await;
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A TLS record header announcing 512 bytes, and 10 of them.
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    half.write_all(&[1u8; 10]).await.unwrap();
    echo_through(pinned_client(addr, StackId::Tls, &cert), StackId::Tls).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let e = tokio::time::timeout(Duration::from_secs(5), errors.recv())
            .await
            .expect("a report within 5 s")
            .unwrap();
        seen.push(e);
    }
    let silent_addr = silent.local_addr().unwrap().to_string();
    let half_addr = half.local_addr().unwrap().to_string();
    assert!(
        seen.iter()
            .any(|e| e.contains(&silent_addr) && e.contains("sent nothing within 300 ms")),
        "the silent peer, named, with the time: {seen:?}"
    );
    assert!(
        seen.iter().any(|e| e.contains(&half_addr)
            && e.contains("TLS handshake")
            && e.contains("no result after 300 ms")),
        "the stalled handshake, named, with the time: {seen:?}"
    );
}

/// Slowloris: with every pending place (8 here) taken by raw TCP peers that
/// connect and stay silent, a TLS client is still served at once: the
/// oldest silent peer gives its place to it (dropped after 200 ms of
/// silence, and reported, naming it), instead of everyone waiting for the
/// silent ones' 10 s handshake timeout.
#[tokio::test]
async fn silent_peers_give_their_places_to_new_ones() {
    let cert = self_signed();
    let mut pre = secure_listener_pre(&cert, vec![StackId::Tls]);
    pre.set_listener_limits(postsocket::ListenerLimits::default().with_pending_incoming(8));
    let (addr, mut errors) = serve_echo(pre).await;
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let tls = pinned_client(addr, StackId::Tls, &cert);
    let served =
        tokio::time::timeout(Duration::from_secs(5), echo_through(tls, StackId::Tls)).await;
    assert!(
        served.is_ok(),
        "the TLS client is served while 8 silent peers hold every place"
    );
    let e = tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .expect("the dropped silent peer is reported")
        .unwrap();
    let names_one = silent
        .iter()
        .any(|s| e.contains(&s.local_addr().unwrap().to_string()));
    assert!(
        names_one && e.contains("all 8 pending places were taken"),
        "{e}"
    );
}

/// While every place is taken, the Listener still reads its backlog: a peer
/// that has been quiet there for longer than a place holder may be (by the
/// kernel's clock) is dropped as soon as it is reached, and reported; a
/// peer whose whole ClientHello waits is not dropped for its quiet, however
/// long it waits. Here the places are held by two TLS Connections that the
/// application has not taken yet, which never give way: before, both peers
/// waited in the backlog for as long as that lasted. This is the Listener
/// past its `waiting_peers` (0 here: no peer waits outside the places).
/// Linux only: elsewhere there is no kernel clock, and both wait.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_peer_quiet_too_long_in_the_backlog_is_dropped_when_reached() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cert = self_signed();
    let mut pre = secure_listener_pre(&cert, vec![StackId::Tls]);
    let age = Duration::from_millis(300);
    pre.set_listener_limits(
        postsocket::ListenerLimits::default()
            .with_pending_incoming(2)
            .with_give_way_after(age, age)
            .with_waiting_peers(0),
    );
    let l = pre.listen().await.expect("listen");
    let addr = l.local_addr();
    // Two TLS clients connect; their Connections wait for the application,
    // which takes none yet: every place is held, and none may give way.
    let held = [
        pinned_client(addr, StackId::Tls, &cert)
            .initiate()
            .await
            .unwrap(),
        pinned_client(addr, StackId::Tls, &cert)
            .initiate()
            .await
            .unwrap(),
    ];
    // A silent peer, then one whose whole ClientHello (a handshake message
    // of 2 bytes, in one record) waits.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut whole = tokio::net::TcpStream::connect(addr).await.unwrap();
    whole
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x06, 1, 0, 0, 2, 7, 7])
        .await
        .unwrap();
    let mut b = [0u8; 1];
    let dropped = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut b))
        .await
        .expect("the silent peer is dropped while every place is still held");
    assert!(matches!(dropped, Ok(0) | Err(_)), "{dropped:?}");
    assert!(
        tokio::time::timeout(Duration::from_secs(1), whole.read(&mut b))
            .await
            .is_err(),
        "the peer whose ClientHello waits is kept, well past the 300 ms ages"
    );
    // The application takes its Connections: the report names the silent
    // peer, its quiet and the backlog.
    let silent_addr = silent.local_addr().unwrap().to_string();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.iter().any(|e: &String| e.contains(&silent_addr)) {
        match tokio::time::timeout_at(deadline, l.next_event()).await {
            Ok(ListenerEvent::EstablishmentError(e)) => seen.push(e.to_string()),
            Ok(ListenerEvent::ConnectionReceived(_)) => {}
            Ok(ListenerEvent::Stopped) | Err(_) => break,
        }
    }
    let e = seen
        .iter()
        .find(|e| e.contains(&silent_addr))
        .unwrap_or_else(|| panic!("the silent peer is reported: {seen:?}"));
    assert!(e.contains("silent for") && e.contains("backlog"), "{e}");
    let whole_addr = whole.local_addr().unwrap().to_string();
    assert!(
        !seen
            .iter()
            .any(|e| e.contains(&whole_addr) && e.contains("backlog")),
        "{seen:?}"
    );
    drop(held);
}

/// A length-prefixed TLS Listener on 127.0.0.1:0 with `limits`, echoing
/// (see [`serve_echo`]).
async fn tls_listener(
    cert: &common::Cert,
    limits: postsocket::ListenerLimits,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let mut pre = secure_listener_pre(cert, vec![StackId::Tls]);
    pre.set_listener_limits(limits);
    serve_echo(pre).await
}

/// A TLS client to `addr` echoes through within `secs` seconds (`what`
/// says which, when it does not).
async fn tls_echo_within(addr: SocketAddr, cert: &common::Cert, secs: u64, what: &str) {
    tokio::time::timeout(
        Duration::from_secs(secs),
        echo_through(pinned_client(addr, StackId::Tls, cert), StackId::Tls),
    )
    .await
    .expect(what);
}

/// A relay on 127.0.0.1 to `to` that forwards the first 3 bytes a client
/// sends, holds the rest back for 300 ms, then relays both ways (one
/// client).
async fn piecewise_relay(to: SocketAddr) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut client, _) = l.accept().await.unwrap();
        let mut server = tokio::net::TcpStream::connect(to).await.unwrap();
        let mut first = [0u8; 3];
        client.read_exact(&mut first).await.unwrap();
        server.write_all(&first).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    });
    at
}

/// Whether the Listener dropped the peer of `s` (it reads the end of the
/// stream or a reset, without waiting); `false` while it holds it.
fn dropped(s: &tokio::net::TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.try_read(&mut b) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// A flood of silent peers larger than the pending places is held, not
/// churned: with 8 places taken by silent peers, 40 more wait outside the
/// places for their first message (`ListenerLimits::waiting_peers`), so
/// the backlog stays empty; a TLS client connecting then is taken at once,
/// and exactly one silent place holder gives way to it (200 ms), none
/// before a peer needs its place; so does a client whose ClientHello
/// arrives in pieces, once it is whole. Before, the Listener read the
/// backlog one peer at a time and dropped each silent one there
/// (`with_waiting_peers(0)` still does: checked below).
#[tokio::test]
async fn a_flood_of_silent_peers_is_held_while_a_client_is_served() {
    let cert = self_signed();
    for waiting in [64, 0] {
        let (addr, mut errors) = tls_listener(
            &cert,
            postsocket::ListenerLimits::default()
                .with_pending_incoming(8)
                .with_waiting_peers(waiting)
                .with_handshake_timeout(Duration::from_secs(60)),
        )
        .await;
        let mut silent = Vec::new();
        for _ in 0..48 {
            silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        if waiting > 0 {
            // No peer needs a place yet: none gave way.
            assert!(errors.try_recv().is_err());
            assert!(!silent.iter().any(dropped));
        }
        tls_echo_within(
            addr,
            &cert,
            10,
            "the TLS client is served while 48 silent peers are connected",
        )
        .await;
        if waiting > 0 {
            // A client whose ClientHello arrives in pieces, through a
            // relay that holds all but its first 3 bytes back for 300 ms:
            // it waits outside the places until it is whole. (The place the
            // first client's Connection left when the application took it
            // goes to one more silent peer first.)
            silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
            tokio::time::sleep(Duration::from_millis(100)).await;
            let relay = piecewise_relay(addr).await;
            tls_echo_within(relay, &cert, 10, "the piecewise client is served").await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let gone = silent.iter().filter(|s| dropped(s)).count();
        let mut reports = Vec::new();
        while let Ok(e) = errors.try_recv() {
            reports.push(e);
        }
        if waiting > 0 {
            assert_eq!(gone, 2, "one place holder gave way to each: {reports:?}");
            assert_eq!(reports.len(), 2, "{reports:?}");
            assert!(
                reports
                    .iter()
                    .all(|r| r.contains("all 8 pending places were taken")),
                "{reports:?}"
            );
        } else {
            // Without peers waiting outside the places, the silent ones in
            // the backlog were dropped (Linux: by the kernel's clock;
            // elsewhere they give way in their places).
            assert!(gone > 1, "{gone} dropped: {reports:?}");
        }
    }
}

/// A peer waiting outside the places is dropped, and reported naming it,
/// when it has not sent a whole first message within the handshake
/// timeout (3 s here, and up to half of it more: the drops of a flood are
/// spread), as one in a place is; one that closes, or finishes after part
/// of a ClientHello, is reported at once, and one that sends neither TLS
/// nor HTTP is refused at once, as the sniff refuses it in a place.
#[tokio::test]
async fn a_peer_waiting_outside_the_places_times_out_or_gets_one() {
    use tokio::io::AsyncWriteExt;
    let cert = self_signed();
    let (addr, mut errors) = tls_listener(
        &cert,
        postsocket::ListenerLimits::default()
            .with_pending_incoming(2)
            .with_give_way_after(Duration::MAX, Duration::MAX)
            .with_handshake_timeout(Duration::from_secs(3)),
    )
    .await;
    // Two silent peers take both places (and never give way).
    let holders = [
        tokio::net::TcpStream::connect(addr).await.unwrap(),
        tokio::net::TcpStream::connect(addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiter = tokio::net::TcpStream::connect(addr).await.unwrap();
    let closer = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut partial = tokio::net::TcpStream::connect(addr).await.unwrap();
    partial.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let mut finished = tokio::net::TcpStream::connect(addr).await.unwrap();
    finished.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // One closes silent, one finishes after part of a ClientHello (its
    // side stays readable: it must not keep the Listener spinning).
    let gone = [closer.local_addr(), finished.local_addr()].map(|a| a.unwrap().to_string());
    drop(closer);
    finished.shutdown().await.unwrap();
    for _ in 0..2 {
        let e = tokio::time::timeout(Duration::from_secs(1), errors.recv())
            .await
            .expect("a closed peer is reported at once")
            .unwrap();
        assert!(
            gone.iter().any(|a| e.contains(a)) && e.contains("closed the connection"),
            "{e}"
        );
    }
    // One sends something that is not TLS: refused at once, as the sniff
    // would, without a place (none gives way: the ages are MAX anyway).
    let mut neither = tokio::net::TcpStream::connect(addr).await.unwrap();
    neither.write_all(b"hello").await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(1), errors.recv())
        .await
        .expect("a peer sending neither TLS nor HTTP is refused at once")
        .unwrap();
    let neither_addr = neither.local_addr().unwrap().to_string();
    assert!(
        e.contains(&neither_addr) && e.contains("it sent 68 65 6c 6c 6f, not a TLS handshake"),
        "{e}"
    );
    assert!(!dropped(&waiter) && !dropped(&partial));
    // The handshake timeout: the places' holders, the silent waiter and
    // the partial one all go, each reported with what it sent.
    let mut seen = Vec::new();
    while seen.len() < 4 {
        match tokio::time::timeout(Duration::from_secs(10), errors.recv()).await {
            Ok(Some(e)) => seen.push(e),
            _ => break,
        }
    }
    let waiter_addr = waiter.local_addr().unwrap().to_string();
    let partial_addr = partial.local_addr().unwrap().to_string();
    assert!(
        seen.iter().any(|e| e.contains(&waiter_addr)
            && e.contains("sent nothing within 3000 ms")
            && e.contains("waiting_peers")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| e.contains(&partial_addr) && e.contains("no whole first message")),
        "{seen:?}"
    );
    assert!(dropped(&waiter) && dropped(&partial));
    drop(holders);
    // With both places free again, a client is served at once.
    tls_echo_within(addr, &cert, 5, "served").await;
}

/// A handshake timeout of `Duration::MAX` means "never", not a panic: a
/// TLS client is served, also while it waits outside the places.
#[tokio::test]
async fn a_handshake_timeout_of_duration_max_means_never() {
    let cert = self_signed();
    let (addr, _errors) = tls_listener(
        &cert,
        postsocket::ListenerLimits::default()
            .with_pending_incoming(1)
            .with_handshake_timeout(Duration::MAX),
    )
    .await;
    tls_echo_within(addr, &cert, 10, "served").await;
    // The place is taken by a silent peer: the next client waits outside
    // it, and the silent one gives way to it.
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    tls_echo_within(addr, &cert, 10, "served while a silent peer held the place").await;
}

/// The give-way ages are the application's: with
/// `with_give_way_after(Duration::MAX, Duration::MAX)` silent peers keep
/// their places (pure backpressure), so a TLS client waits (outside the
/// places, its ClientHello whole) while 8 of them hold every place, and is
/// served once they leave; none of them is dropped for a new peer.
#[tokio::test]
async fn the_give_way_ages_are_settable() {
    let cert = self_signed();
    let (addr, mut errors) = tls_listener(
        &cert,
        postsocket::ListenerLimits::default()
            .with_pending_incoming(8)
            .with_give_way_after(Duration::MAX, Duration::MAX),
    )
    .await;
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let tls = tokio::spawn(echo_through(
        pinned_client(addr, StackId::Tls, &cert),
        StackId::Tls,
    ));
    // Well past the default 200 ms: nobody gave way.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !tls.is_finished(),
        "the TLS client waits while every place is held"
    );
    drop(silent);
    tokio::time::timeout(Duration::from_secs(5), tls)
        .await
        .expect("served once the silent peers left")
        .unwrap();
    while let Ok(e) = errors.try_recv() {
        assert!(!e.contains("pending places were taken"), "{e}");
    }
}

/// `Listener::incoming()` is a Stream that surfaces establishment errors
/// instead of skipping them: a raw TCP peer sending plaintext to a
/// TLS-only Listener comes out as an `Err` naming it, a TLS client as an
/// `Ok` Connection, and the Stream ends once the Listener stops; the
/// Connection's `events()` Stream then yields its `Closed`.
#[tokio::test]
async fn incoming_is_a_stream_that_surfaces_errors() {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let cert = self_signed();
    let pre = secure_listener_pre(&cert, vec![StackId::Tls]);
    let l = pre.listen().await.expect("listen");
    let addr = l.local_addr();
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"plaintext, not TLS").await.unwrap();
    let me = plain.local_addr().unwrap().to_string();
    let mut incoming = Box::pin(l.incoming());
    let first = tokio::time::timeout(Duration::from_secs(5), incoming.next())
        .await
        .expect("an item within 5 s")
        .expect("the Stream goes on");
    let e = first.expect_err("the plaintext peer is an error");
    assert!(e.message.contains(&me), "names the peer {me}: {e}");
    let client =
        tokio::spawn(async move { pinned_client(addr, StackId::Tls, &cert).initiate().await });
    let conn = tokio::time::timeout(Duration::from_secs(5), incoming.next())
        .await
        .expect("an item within 5 s")
        .expect("the Stream goes on")
        .expect("the TLS client is a Connection");
    assert_eq!(conn.stack(), StackId::Tls);
    let _client = client.await.unwrap().expect("the client's side");
    l.stop();
    let end = tokio::time::timeout(Duration::from_secs(5), incoming.next())
        .await
        .expect("the end within 5 s");
    assert!(end.is_none(), "the Stream ends once the Listener stopped");
    conn.close().await.unwrap();
    let events: Vec<_> = tokio::time::timeout(Duration::from_secs(5), conn.events().collect())
        .await
        .expect("the events end within 5 s");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, postsocket::ConnectionEvent::Closed)),
        "Closed among {events:?}"
    );
}

/// While the application takes nothing, peers that fail on purpose cost
/// the Listener a count, not a queued report: 300 peers that each send
/// `hello` to a TLS port (refused at once) leave at most 64 reports
/// waiting, then one that counts the rest; every peer is accounted for.
/// Before, each refused peer queued its own report, without bound.
#[tokio::test]
async fn reports_of_failed_peers_wait_bounded_and_none_is_lost() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cert = self_signed();
    let mut pre = secure_listener_pre(&cert, vec![StackId::Tls]);
    pre.set_listener_limits(postsocket::ListenerLimits::default().with_pending_incoming(2));
    let l = pre.listen().await.unwrap();
    let addr = l.local_addr();
    let peers = 300;
    for _ in 0..peers {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"hello\r\n").await.unwrap();
        let mut b = [0u8; 16];
        // Refused: reset or closed, not answered.
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            other => panic!("a peer sending hello was not refused: {other:?}"),
        }
    }
    let (mut each, mut counted, mut events) = (0, 0, 0);
    while let Ok(event) = tokio::time::timeout(Duration::from_millis(500), l.next_event()).await {
        events += 1;
        match event {
            postsocket::ListenerEvent::EstablishmentError(e) => {
                let text = e.to_string();
                assert!(text.contains("not a TLS handshake"), "{text}");
                match text.split_once(" more incoming connections failed while 64 reports waited") {
                    Some((head, _)) => {
                        counted += head.rsplit(' ').next().unwrap().parse::<usize>().unwrap()
                    }
                    None => each += 1,
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(events <= 64 + 1, "{events} reports were queued");
    assert_eq!(
        each + counted,
        peers,
        "{each} reported one by one, {counted} counted"
    );
}
